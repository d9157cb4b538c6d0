#include "config.h"

#include <string.h>

#include "config/artifacts.h"
#include "core/regex.h"
#include "http/pathmatch.h"

static const struct {
    const char *name;
    unsigned bit;
} methods[] = {
    {"GET", CMI_METHOD_GET},       {"POST", CMI_METHOD_POST}, {"PUT", CMI_METHOD_PUT},
    {"DELETE", CMI_METHOD_DELETE}, {"PATCH", CMI_METHOD_PATCH}, {"HEAD", CMI_METHOD_HEAD},
    {"OPTIONS", CMI_METHOD_OPTIONS},
};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

unsigned cmi_method_bit(const char *name, size_t len)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (strlen(methods[i].name) == len && memcmp(methods[i].name, name, len) == 0)
            return methods[i].bit;
    return 0;
}

const char *cmi_methods_format(cmi_arena_t *arena, unsigned set)
{
    char buf[64] = "";
    for (size_t i = 0; i < NMETHODS; i++) {
        if (!(set & methods[i].bit))
            continue;
        if (buf[0])
            strcat(buf, ", ");
        strcat(buf, methods[i].name);
    }
    return cmi_arena_strdup(arena, buf);
}

static const cmi_attr_rule_t api_attrs[] = {
    {"name", CMI_ATTR_OK},
    {"context", CMI_ATTR_OK},
    {"version", CMI_ATTR_OK},
    {"version-type", CMI_ATTR_OK},
    {"hostname", CMI_ATTR_UNSUPPORTED},
    {"port", CMI_ATTR_UNSUPPORTED},
    {"binds-to", CMI_ATTR_UNSUPPORTED},
    {"transports", CMI_ATTR_UNSUPPORTED},
    {"publishSwagger", CMI_ATTR_COSMETIC},
    {"statistics", CMI_ATTR_COSMETIC},
    {"trace", CMI_ATTR_COSMETIC},
    {"description", CMI_ATTR_OK},
    {NULL, 0},
};

static const cmi_attr_rule_t resource_attrs[] = {
    {"methods", CMI_ATTR_OK},
    {"uri-template", CMI_ATTR_OK},
    {"url-mapping", CMI_ATTR_OK},
    {"inSequence", CMI_ATTR_OK},
    {"outSequence", CMI_ATTR_OK},
    {"faultSequence", CMI_ATTR_OK},
    {"protocol", CMI_ATTR_OK},
    {"content-type", CMI_ATTR_UNSUPPORTED},
    {"user-agent", CMI_ATTR_UNSUPPORTED},
    {"description", CMI_ATTR_OK},
    {NULL, 0},
};

static unsigned parse_methods(cmi_compile_t *cc, xmlNodePtr node, const char *text)
{
    unsigned set = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        size_t n = strcspn(p, " ,\t");
        if (n == 0)
            break;
        unsigned bit = cmi_method_bit(p, n);
        if (bit == 0) {
            cmi_compile_error(cc, node, "<resource>: unknown HTTP method '%.*s' in methods", (int)n, p);
            return 0;
        }
        set |= bit;
        p += n;
    }
    if (set == 0)
        cmi_compile_error(cc, node, "<resource>: methods is empty");
    return set;
}

static cmi_resource_t *compile_resource(cmi_compile_t *cc, cmi_api_t *api, xmlNodePtr node)
{
    cmi_xml_check_attrs(cc, node, resource_attrs, NULL);
    cmi_resource_t *res = cmi_arena_calloc(cc->arena, 1, sizeof(*res));
    res->api = api;
    res->file = cc->file;
    res->line = cmi_xml_line(node);
    atomic_flag_clear(&res->warned_no_response);
    const char *m = cmi_xml_attr(cc, node, "methods");
    res->methods = m ? parse_methods(cc, node, m) : CMI_METHOD_ALL;
    const char *tmpl = cmi_xml_attr(cc, node, "uri-template");
    const char *map = cmi_xml_attr(cc, node, "url-mapping");
    const char *err = NULL;
    if (tmpl != NULL && map != NULL) {
        cmi_compile_error(cc, node, "<resource>: give uri-template or url-mapping, not both");
    } else if (tmpl != NULL) {
        res->pattern = tmpl;
        if ((res->match = cmi_pathmatch_compile_template(cc->arena, tmpl, &err)) == NULL)
            cmi_compile_error(cc, node, "<resource>: bad uri-template '%s': %s", tmpl, err);
    } else if (map != NULL) {
        res->pattern = map;
        if ((res->match = cmi_pathmatch_compile_mapping(cc->arena, map, &err)) == NULL)
            cmi_compile_error(cc, node, "<resource>: bad url-mapping '%s': %s", map, err);
    }
    const char *protocol = cmi_xml_attr(cc, node, "protocol");
    if (protocol != NULL && strcmp(protocol, "http") != 0 && strcmp(protocol, "http https") != 0 &&
        strcmp(protocol, "https http") != 0)
        cmi_compile_error(cc, node, "<resource>: protocol '%s' is not supported by cmi yet (HTTPS arrives "
                                    "with the TLS listener)", protocol);
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (!cmi_xml_is(c, "inSequence") && !cmi_xml_is(c, "outSequence") && !cmi_xml_is(c, "faultSequence") &&
            !cmi_xml_is(c, "description"))
            cmi_compile_error(cc, c, "<resource>: unexpected element <%s>", c->name);
    }
    cmi_compile_handler(cc, node, "inSequence", &res->in_seq);
    cmi_compile_handler(cc, node, "faultSequence", &res->fault_seq);
    cmi_compile_handler(cc, node, "outSequence", &res->out_seq);
    res->has_out_seq = res->out_seq != NULL || cmi_xml_attr(cc, node, "outSequence") != NULL;
    return res;
}

/* The context a request must start with, version folded in as Synapse's
 * version strategies do: "url" puts it after the context, "context"
 * replaces a {version} placeholder (none: the context as written). */
static const char *effective_context(cmi_compile_t *cc, xmlNodePtr node, const char *context,
                                     const char *version, const char *vtype)
{
    if (version != NULL && *version != '\0' && vtype == NULL) {
        cmi_compile_warn(cc, node, "<api>: version '%s' without version-type is ignored (as MI does)", version);
        version = NULL;
    }
    const char *ctx = context;
    if (version != NULL && *version != '\0') {
        if (strcmp(vtype, "url") == 0) {
            ctx = cmi_arena_sprintf(cc->arena, "%s/%s", context, version);
        } else if (strcmp(vtype, "context") == 0) {
            const char *ph = strstr(context, "{version}");
            /* Without the placeholder Synapse's ContextVersionStrategy
             * leaves the context as written: requests match it with no
             * version in the path (MI's endpoint template example relies
             * on it). */
            if (ph == NULL)
                cmi_compile_warn(cc, node,
                                 "<api>: version-type=\"context\" without '{version}' in the context '%s': the "
                                 "version is not part of the path (as MI)",
                                 context);
            else
                ctx = cmi_arena_sprintf(cc->arena, "%.*s%s%s", (int)(ph - context), context, version, ph + 9);
        } else {
            cmi_compile_error(cc, node, "<api>: version-type must be 'url' or 'context', not '%s'", vtype);
            return NULL;
        }
    }
    size_t n = strlen(ctx);
    while (n > 0 && ctx[n - 1] == '/')
        n--;
    if (memchr(ctx, '{', n) != NULL || memchr(ctx, '?', n) != NULL) {
        cmi_compile_error(cc, node, "<api>: context '%s' may not contain '{' or '?'", context);
        return NULL;
    }
    return cmi_arena_strndup(cc->arena, ctx, n);
}

/* cmi's handler: <property name="subjectPattern" value="REGEX"/>, a Java
 * regular expression the whole RFC 2253 subject must match. */
static void compile_client_cert_handler(cmi_compile_t *cc, cmi_api_t *api, xmlNodePtr h)
{
    for (xmlNodePtr p = h->children; p != NULL; p = p->next) {
        if (p->type != XML_ELEMENT_NODE)
            continue;
        const char *name = cmi_xml_is(p, "property") ? cmi_xml_attr(cc, p, "name") : NULL;
        const char *value = name != NULL ? cmi_xml_attr(cc, p, "value") : NULL;
        if (name == NULL || strcmp(name, "subjectPattern") != 0 || value == NULL) {
            cmi_compile_error(cc, p, "<handler class=\"%s\">: takes one <property name=\"subjectPattern\" "
                              "value=\"...\"/>", CMI_CLIENT_CERT_HANDLER);
            continue;
        }
        cmi_regex_t *re = cmi_arena_calloc(cc->arena, 1, sizeof(*re));
        const char *err;
        if (cmi_regex_compile(cc->arena, re, value, &err) != 0)
            cmi_compile_error(cc, p, "subjectPattern \"%s\": %s", value, err);
        else
            api->client_subject = re;
    }
}

/* <handlers><handler class="..."/>...</handlers>: the ones cmi has run
 * before the resource is chosen, as Synapse's API runs its handlers. */
static void compile_handlers(cmi_compile_t *cc, cmi_api_t *api, xmlNodePtr handlers)
{
    static const char basic[] = "org.wso2.micro.integrator.security.handler.RESTBasicAuthHandler";
    for (xmlNodePtr h = handlers->children; h != NULL; h = h->next) {
        if (h->type != XML_ELEMENT_NODE)
            continue;
        const char *cls = cmi_xml_is(h, "handler") ? cmi_xml_attr(cc, h, "class") : NULL;
        if (cls == NULL) {
            cmi_compile_error(cc, h, "<handlers>: expected <handler class=\"...\">, not <%s>", h->name);
        } else if (strcmp(cls, basic) == 0) {
            api->auth |= CMI_API_AUTH_BASIC;
            if (h->children != NULL && xmlFirstElementChild(h) != NULL)
                cmi_compile_warn(cc, h, "<handler class=\"%s\">: its properties are ignored (as MI ignores them)",
                                 cls);
        } else if (strcmp(cls, CMI_CLIENT_CERT_HANDLER) == 0) {
            api->auth |= CMI_API_AUTH_CLIENT_CERT;
            compile_client_cert_handler(cc, api, h);
        } else if (strcmp(cls, CMI_JWT_HANDLER) == 0 || strcmp(cls, CMI_INTEGON_JWT_HANDLER) == 0) {
            cmi_compile_jwt_handler(cc, api, h);
        } else {
            cmi_compile_error(cc, h, "<handler class=\"%s\">: not a handler cmi has (it has %s, %s, %s and %s)", cls,
                              basic, CMI_CLIENT_CERT_HANDLER, CMI_JWT_HANDLER, CMI_INTEGON_JWT_HANDLER);
        }
    }
    /* The basic authentication check may resume the request later; the
     * JWT handler's claims are kept for the request's flow only when it
     * goes on at once. */
    if ((api->auth & CMI_API_AUTH_BASIC) && (api->auth & CMI_API_AUTH_JWT))
        cmi_compile_error(cc, handlers, "<handlers>: an API takes basic authentication or a JWT handler, not both");
}

void cmi_artifact_api(cmi_compile_t *cc, xmlNodePtr root)
{
    cmi_xml_check_attrs(cc, root, api_attrs, NULL);
    const char *name = cmi_xml_attr(cc, root, "name");
    const char *context = cmi_xml_attr(cc, root, "context");
    if (name == NULL || *name == '\0') {
        cmi_compile_error(cc, root, "<api>: the name attribute is required");
        return;
    }
    if (context == NULL || context[0] != '/') {
        cmi_compile_error(cc, root, "<api name=\"%s\">: context is required and must start with '/'", name);
        return;
    }
    cmi_api_t *api = cmi_arena_calloc(cc->arena, 1, sizeof(*api));
    api->name = name;
    api->file = cc->file;
    api->line = cmi_xml_line(root);
    api->version = cmi_xml_attr(cc, root, "version");
    api->context = effective_context(cc, root, context, api->version, cmi_xml_attr(cc, root, "version-type"));
    if (api->context == NULL)
        return;
    size_t n = 0;
    for (xmlNodePtr c = root->children; c != NULL; c = c->next)
        n += c->type == XML_ELEMENT_NODE;
    api->resources = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*api->resources));
    for (xmlNodePtr c = root->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "resource"))
            api->resources[api->count++] = compile_resource(cc, api, c);
        else if (cmi_xml_is(c, "description"))
            continue; /* a note */
        else if (cmi_xml_is(c, "handlers"))
            compile_handlers(cc, api, c);
        else
            cmi_compile_error(cc, c, "<api>: unexpected element <%s>", c->name);
    }
    if (api->count == 0)
        cmi_compile_warn(cc, root, "<api name=\"%s\">: no resources: every request to it gets 404", name);
    cmi_compile_jwt_scopes(cc, root, api);
    cmi_config_t *cfg = cc->config;
    cfg->apis = cmi_xrealloc(cfg->apis, (cfg->napis + 1) * sizeof(*cfg->apis));
    cfg->apis[cfg->napis++] = api;
}
