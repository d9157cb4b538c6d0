/* payloadFactory template-type="freemarker": the part of FreeMarker that
 * MI's documentation uses, interpolations of a value by its path
 * (${payload.a.b}, ${ctx.NAME}, ${axis2.NAME}, ${trp.NAME}, ${vars.NAME}),
 * rewritten once, at load, into the Synapse expressions of a default
 * template, which read the same values (payload of XML through its JSON
 * form, as FreeMarker's DOM model is read by element names).  Anything else
 * FreeMarker has (directives, built-ins, defaults, arithmetic) is a load
 * error that names it. */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include "core/str.h"
#include "mediators/freemarker.h"

static const struct {
    const char *fm;  /* FreeMarker's root, as MI injects it */
    const char *cmi; /* the Synapse expression's */
} roots[] = {
    {"payload", "payload"}, {"vars", "vars"}, {"ctx", "props.synapse"}, {"axis2", "props.axis2"}, {"trp", "headers"},
};

/* The rewritten inside of ${...} (from, len), or NULL when it is not a
 * root and names. */
static const char *rewrite_path(cmi_compile_t *cc, const char *from, size_t len)
{
    for (size_t r = 0; r < sizeof(roots) / sizeof(roots[0]); r++) {
        size_t n = strlen(roots[r].fm);
        if (len <= n + 1 || memcmp(from, roots[r].fm, n) != 0 || from[n] != '.')
            continue;
        for (size_t i = n; i < len; i++) {
            char ch = from[i];
            int start = from[i - 1] == '.';
            if (ch == '.' ? start || i + 1 == len : !(isalpha((unsigned char)ch) || ch == '_' ||
                                                      (!start && isdigit((unsigned char)ch))))
                return NULL;
        }
        return cmi_arena_sprintf(cc->arena, "%s%.*s", roots[r].cmi, (int)(len - n), from + n);
    }
    return NULL;
}

const char *cmi_freemarker_rewrite(cmi_compile_t *cc, xmlNodePtr node, const char *text)
{
    static const char *const directives[] = {"<#", "</#", "<@", "</@", "[#", "[/#", "#{", NULL};
    for (const char *const *d = directives; *d != NULL; d++) {
        const char *at = strstr(text, *d);
        if (at != NULL) {
            cmi_compile_error(cc, node, "<payloadFactory template-type=\"freemarker\">: '%.24s' is not supported by "
                              "cmi (only ${payload.a.b}, ${ctx.X}, ${axis2.X}, ${trp.X}, ${vars.X} interpolations)",
                              at);
            return NULL;
        }
    }
    cmi_strbuf_t out;
    cmi_strbuf_init(&out, cc->arena, strlen(text) + 16);
    const char *p = text;
    for (const char *at; (at = strstr(p, "${")) != NULL; p = strchr(at, '}') + 1) {
        const char *end = strchr(at, '}');
        const char *path = end ? rewrite_path(cc, at + 2, (size_t)(end - at - 2)) : NULL;
        if (path == NULL) {
            cmi_compile_error(cc, node, "<payloadFactory template-type=\"freemarker\">: '%.*s' is not supported by cmi "
                              "(only ${payload.a.b}, ${ctx.X}, ${axis2.X}, ${trp.X}, ${vars.X} interpolations)",
                              end ? (int)(end - at + 1) : 24, at);
            return NULL;
        }
        cmi_strbuf_append(&out, p, (size_t)(at - p));
        cmi_strbuf_puts(&out, "${");
        cmi_strbuf_puts(&out, path);
        cmi_strbuf_putc(&out, '}');
    }
    cmi_strbuf_puts(&out, p);
    return out.data;
}

/* Every text and attribute value under node, rewritten in place. */
int cmi_freemarker_rewrite_tree(cmi_compile_t *cc, xmlNodePtr node)
{
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
            const char *t = cmi_freemarker_rewrite(cc, node, (const char *)c->content);
            if (t == NULL)
                return -1;
            xmlNodeSetContentLen(c, NULL, 0);
            xmlNodeAddContent(c, (const xmlChar *)t);
        } else if (c->type == XML_ELEMENT_NODE) {
            for (xmlAttrPtr a = c->properties; a != NULL; a = a->next) {
                xmlChar *v = xmlNodeGetContent((xmlNodePtr)a);
                const char *t = cmi_freemarker_rewrite(cc, c, (const char *)v);
                xmlFree(v);
                if (t == NULL)
                    return -1;
                xmlSetNsProp(c, a->ns, a->name, (const xmlChar *)t);
            }
            if (cmi_freemarker_rewrite_tree(cc, c) != 0)
                return -1;
        }
    }
    return 0;
}
