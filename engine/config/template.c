/* templates/: sequence templates (a <template> with <parameter>s and a
 * <sequence>, run by <call-template>, mediators/call_template.c) and
 * endpoint templates (a <template> with an <endpoint>, instantiated by
 * <endpoint template="NAME">), read as Synapse's TemplateMediatorFactory
 * and TemplateFactory read them (docs/mi-compatibility.md, "Templates").
 *
 * Templates are read before endpoints, so that endpoints/ can instantiate
 * them; a sequence template's body is compiled after sequences/, so that
 * it can name endpoints (its calls are resolved at the end, as sequence
 * references are). */
#include "config.h"

#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/artifacts.h"
#include "config/endpoint.h"
#include "runtime/convert.h"

static const cmi_attr_rule_t template_attrs[] = {
    {"name", CMI_ATTR_OK},           {"onError", CMI_ATTR_OK},
    {"description", CMI_ATTR_OK},    {"trace", CMI_ATTR_COSMETIC},
    {"statistics", CMI_ATTR_COSMETIC}, {NULL, 0},
};

static const cmi_attr_rule_t param_attrs[] = {
    {"name", CMI_ATTR_OK},
    {"defaultValue", CMI_ATTR_OK},
    {"isMandatory", CMI_ATTR_OK},
    {"description", CMI_ATTR_OK},
    {NULL, 0},
};

static void free_doc(void *doc)
{
    xmlFreeDoc(doc);
}

/* The <parameter>s of a template, in order; -1 after reporting. */
static int read_params(cmi_compile_t *cc, xmlNodePtr root, const char *name, cmi_template_params_t *out)
{
    size_t n = 0;
    for (xmlNodePtr c = root->children; c != NULL; c = c->next)
        n += cmi_xml_is(c, "parameter");
    out->items = cmi_arena_calloc(cc->arena, n + 2, sizeof(*out->items)); /* + name and uri (endpoints) */
    out->count = 0;
    for (xmlNodePtr c = root->children; c != NULL; c = c->next) {
        if (!cmi_xml_is(c, "parameter"))
            continue;
        if (cmi_xml_check_attrs(cc, c, param_attrs, NULL))
            return -1;
        const char *pname = cmi_xml_attr(cc, c, "name");
        if (pname == NULL || *pname == '\0') {
            cmi_compile_error(cc, c, "<template name=\"%s\"><parameter>: the name attribute is required", name);
            return -1;
        }
        pname = cmi_compile_trim(cc, pname, NULL);
        for (size_t i = 0; i < out->count; i++)
            if (strcmp(out->items[i].name, pname) == 0) {
                cmi_compile_error(cc, c, "<template name=\"%s\">: parameter '%s' is declared twice", name, pname);
                return -1;
            }
        cmi_template_param_t *p = &out->items[out->count++];
        p->name = pname;
        p->default_value = cmi_xml_attr(cc, c, "defaultValue");
        const char *mandatory = cmi_xml_attr(cc, c, "isMandatory");
        p->mandatory = mandatory != NULL && strcasecmp(mandatory, "true") == 0; /* Java's parseBoolean */
        cmi_xml_no_children(cc, c);
    }
    return 0;
}

static void add_param(cmi_template_params_t *ps, const char *name)
{
    for (size_t i = 0; i < ps->count; i++)
        if (strcmp(ps->items[i].name, name) == 0)
            return;
    ps->items[ps->count++].name = name;
}

static void define_endpoint_template(cmi_compile_t *cc, xmlNodePtr root, const char *name, xmlNodePtr endpoint,
                                     cmi_template_params_t *params)
{
    cmi_endpoint_template_t *t = cmi_arena_calloc(cc->arena, 1, sizeof(*t));
    t->name = name;
    t->file = cc->file;
    t->line = cmi_xml_line(root);
    /* Synapse declares name and uri whether the template does or not. */
    add_param(params, "name");
    add_param(params, "uri");
    t->params = cmi_arena_calloc(cc->arena, params->count, sizeof(*t->params));
    for (size_t i = 0; i < params->count; i++)
        t->params[t->nparams++] = params->items[i].name;
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    cmi_arena_cleanup_add(cc->arena, free_doc, doc);
    t->endpoint = cmi_xml_clone(endpoint, doc, NULL);
    const cmi_endpoint_template_t *prev = cmi_htab_put(&cc->config->endpoint_templates, name, strlen(name), t);
    if (prev != NULL)
        cmi_compile_error(cc, root, "<template name=\"%s\">: an endpoint template of that name is already deployed "
                          "(%s:%d)", name, prev->file, prev->line);
}

/* After sequences/: the mediators of the template's <sequence>. */
static void compile_body(cmi_compile_t *cc, xmlNodePtr root, void *data)
{
    cmi_sequence_t *shell = data;
    xmlNodePtr seq = NULL;
    for (xmlNodePtr c = root->children; c != NULL && seq == NULL; c = c->next)
        if (cmi_xml_is(c, "sequence"))
            seq = c;
    /* Synapse reads only the mediators of the inner <sequence>: an
     * attribute there would be silently lost, so it is refused. */
    cmi_xml_check_attrs(cc, seq, cmi_common_mediator_attrs, NULL);
    cc->owner = shell;
    cmi_sequence_t *body = cmi_compile_mediators(cc, seq, shell->name);
    cc->owner = NULL;
    shell->items = body->items;
    shell->count = body->count;
    const char *on_error = cmi_xml_attr(cc, root, "onError");
    if (on_error != NULL && *on_error != '\0')
        cmi_compile_ref_sequence(cc, on_error, &shell->on_error, cmi_xml_line(root),
                                 cmi_arena_sprintf(cc->arena, "<template name=\"%s\" onError=\"%s\">", shell->name,
                                                   on_error));
}

static void define_sequence_template(cmi_compile_t *cc, xmlNodePtr root, const char *name,
                                     const cmi_template_params_t *params)
{
    const cmi_sequence_t *prev = cmi_htab_gets(&cc->config->templates, name);
    if (prev != NULL) {
        cmi_compile_error(cc, root, "<template name=\"%s\">: a sequence template of that name is already deployed "
                          "(%s:%d)", name, prev->file, prev->line);
        return;
    }
    cmi_sequence_t *shell = cmi_arena_calloc(cc->arena, 1, sizeof(*shell));
    shell->name = name;
    shell->file = cc->file;
    shell->line = cmi_xml_line(root);
    cmi_template_params_t *tp = cmi_arena_memdup(cc->arena, params, sizeof(*params));
    shell->tparams = tp;
    cmi_htab_put(&cc->config->templates, name, strlen(name), shell);
    cmi_compile_defer(cc, CMI_DEFER_SEQUENCES, root, compile_body, shell);
}

void cmi_artifact_template(cmi_compile_t *cc, xmlNodePtr root)
{
    if (cmi_xml_check_attrs(cc, root, template_attrs, NULL))
        return;
    const char *name = cmi_xml_attr(cc, root, "name");
    if (name == NULL || *name == '\0') {
        cmi_compile_error(cc, root, "<template>: the name attribute is required");
        return;
    }
    xmlNodePtr seq = NULL, endpoint = NULL;
    for (xmlNodePtr c = root->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || cmi_xml_is(c, "parameter") || cmi_xml_is(c, "description"))
            continue;
        if (cmi_xml_is(c, "sequence") && seq == NULL) {
            seq = c;
        } else if (cmi_xml_is(c, "endpoint") && endpoint == NULL) {
            endpoint = c;
        } else {
            cmi_compile_error(cc, c, "<template name=\"%s\">: unexpected element <%s>", name, c->name);
            return;
        }
    }
    if (seq == NULL && endpoint == NULL) {
        cmi_compile_error(cc, root, "<template name=\"%s\">: give a <sequence> or an <endpoint>", name);
        return;
    }
    cmi_template_params_t params;
    if (read_params(cc, root, name, &params) != 0)
        return;
    if (seq != NULL)
        define_sequence_template(cc, root, name, &params);
    if (endpoint != NULL)
        define_endpoint_template(cc, root, name, endpoint, &params);
}

/* ---- endpoint templates --------------------------------------------------- */

typedef struct {
    const char *name;
    const char *value;
} ep_arg_t;

/* Synapse's Template.replace(): a value is replaced only when it is a
 * whole "$NAME" of a parameter both declared and given ("http://$host/x"
 * stays as it is). */
static const char *replacement(const cmi_endpoint_template_t *t, const ep_arg_t *args, size_t nargs,
                               const char *value)
{
    if (value == NULL || value[0] != '$')
        return NULL;
    int declared = 0;
    for (size_t i = 0; i < t->nparams && !declared; i++)
        declared = strcmp(t->params[i], value + 1) == 0;
    for (size_t i = 0; declared && i < nargs; i++)
        if (strcmp(args[i].name, value + 1) == 0)
            return args[i].value;
    return NULL;
}

static void substitute(const cmi_endpoint_template_t *t, const ep_arg_t *args, size_t nargs, xmlNodePtr elem)
{
    for (xmlAttrPtr a = elem->properties; a != NULL; a = a->next) {
        xmlChar *v = xmlNodeGetContent((xmlNodePtr)a);
        const char *r = replacement(t, args, nargs, (const char *)v);
        if (r != NULL)
            xmlSetNsProp(elem, a->ns, a->name, (const xmlChar *)r);
        xmlFree(v);
    }
    int has_elements = 0;
    for (xmlNodePtr c = elem->children; c != NULL; c = c->next)
        has_elements |= c->type == XML_ELEMENT_NODE;
    if (!has_elements) {
        /* Synapse compares the element's text as it is (not trimmed). */
        xmlChar *v = xmlNodeGetContent(elem);
        const char *r = replacement(t, args, nargs, (const char *)v);
        if (r != NULL) {
            xmlNodeSetContent(elem, NULL);
            xmlNodeAddContent(elem, (const xmlChar *)r); /* as text: no entity parsing */
        }
        xmlFree(v);
        return;
    }
    for (xmlNodePtr c = elem->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            substitute(t, args, nargs, c);
}

static const cmi_attr_rule_t instance_attrs[] = {
    {"name", CMI_ATTR_OK}, {"template", CMI_ATTR_OK}, {"uri", CMI_ATTR_OK}, {"key", CMI_ATTR_OK},
    {"statistics", CMI_ATTR_COSMETIC}, {"trace", CMI_ATTR_COSMETIC}, {NULL, 0},
};

/* The instance's arguments: name, uri and each <parameter name value>;
 * -1 after reporting. */
static int instance_args(cmi_compile_t *cc, xmlNodePtr node, ep_arg_t **out, size_t *n)
{
    size_t cap = 2;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        cap += c->type == XML_ELEMENT_NODE;
    ep_arg_t *args = cmi_arena_calloc(cc->arena, cap, sizeof(*args));
    size_t count = 0;
    const char *name = cmi_xml_attr(cc, node, "name"), *uri = cmi_xml_attr(cc, node, "uri");
    if (name != NULL)
        args[count++] = (ep_arg_t){"name", name};
    if (uri != NULL)
        args[count++] = (ep_arg_t){"uri", uri};
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || cmi_xml_is(c, "description"))
            continue;
        if (!cmi_xml_is(c, "parameter")) {
            cmi_compile_error(cc, c, "<endpoint template>: unexpected element <%s> (give <parameter name value>)",
                              c->name);
            return -1;
        }
        static const cmi_attr_rule_t attrs[] = {{"name", CMI_ATTR_OK}, {"value", CMI_ATTR_OK}, {NULL, 0}};
        if (cmi_xml_check_attrs(cc, c, attrs, NULL))
            return -1;
        const char *pname = cmi_xml_attr(cc, c, "name"), *value = cmi_xml_attr(cc, c, "value");
        if (pname == NULL || value == NULL) {
            cmi_compile_error(cc, c, "<endpoint template><parameter>: both name and value are required");
            return -1;
        }
        args[count++] = (ep_arg_t){cmi_compile_trim(cc, pname, NULL), value};
    }
    *out = args;
    *n = count;
    return 0;
}

/* Endpoint templates inside endpoint templates: deeper than this is a cycle. */
#define MAX_ENDPOINT_NESTING 8

cmi_endpoint_t *cmi_compile_template_endpoint(cmi_compile_t *cc, xmlNodePtr node, const char *tname)
{
    if (cmi_xml_check_attrs(cc, node, instance_attrs, NULL))
        return NULL;
    const cmi_endpoint_template_t *t = cmi_htab_gets(&cc->config->endpoint_templates, tname);
    if (t == NULL) {
        cmi_compile_error(cc, node, "<endpoint template=\"%s\">: no endpoint template of that name in templates/",
                          tname);
        return NULL;
    }
    if (cc->endpoint_depth >= MAX_ENDPOINT_NESTING) {
        cmi_compile_error(cc, node, "<endpoint template=\"%s\">: endpoint templates nested more than %d deep (a "
                          "template that instantiates itself?)", tname, MAX_ENDPOINT_NESTING);
        return NULL;
    }
    ep_arg_t *args;
    size_t nargs;
    if (instance_args(cc, node, &args, &nargs) != 0)
        return NULL;
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    xmlNodePtr copy = xmlDocCopyNode(t->endpoint, doc, 1);
    xmlDocSetRootElement(doc, copy);
    substitute(t, args, nargs, copy);
    /* Problems inside are reported at the template's lines, in its file. */
    const char *file = cc->file, *source = cc->source;
    size_t source_len = cc->source_len;
    cc->file = t->file;
    cc->source = NULL;
    cc->source_len = 0;
    cc->endpoint_depth++;
    cmi_endpoint_t *ep = cmi_compile_endpoint(cc, copy);
    cc->endpoint_depth--;
    cc->file = file;
    cc->source = source;
    cc->source_len = source_len;
    xmlFreeDoc(doc);
    if (ep == NULL && cc->endpoint_depth == 0) {
        cmi_compile_error(cc, node, "<endpoint template=\"%s\">: the template's endpoint does not compile with "
                          "these parameters (see above)", tname);
        return NULL;
    }
    if (ep == NULL)
        return NULL;
    ep->name = cmi_xml_attr(cc, node, "name"); /* NULL inline, as any inline endpoint */
    ep->where = cmi_arena_sprintf(cc->arena, "%s:%d", cc->file, cmi_xml_line(node));
    return ep;
}
