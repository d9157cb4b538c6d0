#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "config/artifacts.h"
#include "config/endpoint.h"
#include "config/uri.h"
#include "plugin/plugin.h"
#include "runtime/convert.h"

static const cmi_attr_rule_t sequence_attrs[] = {
    {"name", CMI_ATTR_OK},          {"onError", CMI_ATTR_OK},
    {"description", CMI_ATTR_OK},   {"trace", CMI_ATTR_COSMETIC},
    {"statistics", CMI_ATTR_COSMETIC}, {"key", CMI_ATTR_UNSUPPORTED},
    {NULL, 0},
};

/* A named sequence: a file of sequences/, or a local entry's <sequence>
 * under the entry's key. */
static void define_sequence(cmi_compile_t *cc, xmlNodePtr root, const char *name)
{
    const cmi_sequence_t *prev = cmi_htab_gets(&cc->config->sequences, name);
    if (prev != NULL) {
        cmi_compile_error(cc, root, "<sequence name=\"%s\">: a sequence of that name is already deployed (%s:%d)",
                          name, prev->file, prev->line);
        return;
    }
    /* Registered before its body compiles so that the cycle check sees the
     * body's references as edges from this sequence. */
    cmi_sequence_t *shell = cmi_arena_calloc(cc->arena, 1, sizeof(*shell));
    shell->name = name;
    shell->file = cc->file;
    shell->line = cmi_xml_line(root);
    cmi_htab_put(&cc->config->sequences, name, strlen(name), shell);
    cc->owner = shell;
    cmi_sequence_t *body = cmi_compile_mediators(cc, root, name);
    cc->owner = NULL;
    shell->items = body->items;
    shell->count = body->count;
    const char *on_error = cmi_xml_attr(cc, root, "onError");
    if (on_error != NULL && *on_error != '\0')
        cmi_compile_ref_sequence(cc, on_error, &shell->on_error, shell->line,
                                 cmi_arena_sprintf(cc->arena, "<sequence name=\"%s\" onError=\"%s\">", name,
                                                   on_error));
}

void cmi_artifact_sequence(cmi_compile_t *cc, xmlNodePtr root)
{
    cmi_xml_check_attrs(cc, root, sequence_attrs, NULL);
    const char *name = cmi_xml_attr(cc, root, "name");
    if (name == NULL || *name == '\0') {
        cmi_compile_error(cc, root, "<sequence>: the name attribute is required");
        return;
    }
    define_sequence(cc, root, name);
}

static const cmi_attr_rule_t local_entry_attrs[] = {
    {"key", CMI_ATTR_OK},
    {"src", CMI_ATTR_OK},
    {"description", CMI_ATTR_OK},
    {NULL, 0},
};

/* The largest local entry read from src. */
#define LOCAL_ENTRY_MAX_BYTES (4u << 20)

/* The <sequence> or <endpoint> of a local entry (root, in the deferred
 * copy): its element (description aside). */
static xmlNodePtr entry_element(xmlNodePtr root)
{
    xmlNodePtr c = root->children;
    while (c->type != XML_ELEMENT_NODE || cmi_xml_is(c, "description"))
        c = c->next;
    return c;
}

/* After sequences/ (its body may name anything): the sequence, named by
 * the entry's key, as <sequence key="KEY"/> finds it in MI. */
static void define_entry_sequence(cmi_compile_t *cc, xmlNodePtr root, void *data)
{
    xmlNodePtr seq = entry_element(root);
    cmi_xml_check_attrs(cc, seq, sequence_attrs, NULL);
    define_sequence(cc, seq, data);
}

/* Before endpoints/ (after templates/): the endpoint, named by the key. */
static void define_entry_endpoint(cmi_compile_t *cc, xmlNodePtr root, void *data)
{
    const char *key = data;
    cmi_endpoint_t *ep = cmi_compile_endpoint(cc, entry_element(root));
    if (ep == NULL)
        return;
    ep->name = key;
    if (cmi_htab_put(&cc->config->endpoints, key, strlen(key), ep) != NULL)
        cmi_compile_error(cc, root, "<localEntry key=\"%s\">: another endpoint has this name", key);
}

/* <localEntry src="URI">: the content read now (Synapse reads it once, at
 * deploy): XML, or else text.  Returns 0, or -1 after reporting. */
static int read_src(cmi_compile_t *cc, xmlNodePtr root, const char *src, cmi_local_entry_t *le)
{
    char err[512] = "";
    size_t len = 0;
    src = cmi_compile_trim(cc, src, NULL);
    if (!cmi_uri_readable(src)) {
        cmi_compile_error(cc, root, "<localEntry src=\"%s\">: cmi reads file:, http: and https: URIs (not a "
                          "registry path)", src);
        return -1;
    }
    char *text = cmi_uri_read(cc, src, LOCAL_ENTRY_MAX_BYTES, &len, err, sizeof(err));
    if (text == NULL) {
        /* `cmi check` runs where the file or the server may be missing. */
        if (cc->config->connectors->check_only) {
            cmi_compile_warn(cc, root, "<localEntry src=\"%s\">: cannot read it here (%s)", src, err);
            le->text = "";
            return 0;
        }
        cmi_compile_error(cc, root, "<localEntry src=\"%s\">: cannot read it: %s", src, err);
        return -1;
    }
    const char *why = NULL;
    xmlDocPtr doc = strspn(text, " \t\r\n") < len && text[strspn(text, " \t\r\n")] == '<'
                        ? cmi_xml_read(cc->arena, text, len, &why)
                        : NULL;
    if (doc != NULL && xmlDocGetRootElement(doc) != NULL) {
        size_t mlen;
        le->markup = cmi_compile_element_markup(cc, xmlDocGetRootElement(doc), &mlen);
        xmlFreeDoc(doc);
    } else {
        le->text = cmi_arena_strndup(cc->arena, text, len); /* not XML: its text, as it is */
    }
    free(text);
    return 0;
}

void cmi_artifact_local_entry(cmi_compile_t *cc, xmlNodePtr root)
{
    cmi_xml_check_attrs(cc, root, local_entry_attrs, NULL);
    const char *key = cmi_xml_attr(cc, root, "key");
    if (key == NULL || *key == '\0') {
        cmi_compile_error(cc, root, "<localEntry>: the key attribute is required");
        return;
    }
    xmlNodePtr elem = NULL;
    for (xmlNodePtr c = root->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !cmi_xml_is(c, "description")) {
            if (elem != NULL) {
                cmi_compile_error(cc, c, "<localEntry key=\"%s\">: more than one element inside", key);
                return;
            }
            elem = c;
        }
    cmi_local_entry_t *le = cmi_arena_calloc(cc->arena, 1, sizeof(*le));
    le->key = key;
    le->file = cc->file;
    le->line = cmi_xml_line(root);
    const char *src = cmi_xml_attr(cc, root, "src");
    if (src != NULL) {
        if (elem != NULL) {
            cmi_compile_error(cc, elem, "<localEntry key=\"%s\">: give src or content, not both", key);
            return;
        }
        if (read_src(cc, root, src, le) != 0)
            return;
    } else if (elem != NULL) {
        const char *name = (const char *)elem->name;
        const char *dot = strchr(name, '.');
        if (dot != NULL && strcmp(dot, ".init") == 0 && cmi_xml_is_synapse(elem)) {
            le->instance = cmi_bind_instance(cc, elem, key);
            if (le->instance == NULL)
                return;
        } else if (cmi_xml_is(elem, "sequence")) {
            cmi_compile_defer(cc, CMI_DEFER_SEQUENCES, root, define_entry_sequence, (void *)key);
        } else if (cmi_xml_is(elem, "endpoint")) {
            cmi_compile_defer(cc, CMI_DEFER_ENDPOINTS, root, define_entry_endpoint, (void *)key);
        } else if (cmi_xml_is(elem, "template")) {
            cmi_compile_error(cc, elem, "<localEntry key=\"%s\">: a <template> in a local entry is not supported by "
                              "cmi yet (deploy it under templates/)", key);
            return;
        }
        size_t len;
        if (le->instance == NULL)
            le->markup = cmi_compile_element_markup(cc, elem, &len); /* XML a mediator takes (enrich, XSLT, WSDL) */
    } else {
        le->text = cmi_compile_trim(cc, cmi_xml_text(cc, root), NULL); /* Synapse trims an inline text */
    }
    const cmi_local_entry_t *prev = cmi_htab_put(&cc->config->local_entries, key, strlen(key), le);
    if (prev != NULL)
        cmi_compile_error(cc, root, "<localEntry key=\"%s\">: a local entry with that key is already deployed (%s:%d)",
                          key, prev->file, prev->line);
}

static const cmi_attr_rule_t inbound_attrs[] = {
    {"name", CMI_ATTR_OK},           {"protocol", CMI_ATTR_OK},    {"class", CMI_ATTR_OK},
    {"sequence", CMI_ATTR_OK},       {"onError", CMI_ATTR_OK},     {"suspend", CMI_ATTR_OK},
    {"description", CMI_ATTR_OK},    {"trace", CMI_ATTR_COSMETIC}, {"statistics", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

static void compile_params(cmi_compile_t *cc, cmi_inbound_t *ib, xmlNodePtr params)
{
    size_t n = 0;
    for (xmlNodePtr c = params->children; c != NULL; c = c->next)
        n += c->type == XML_ELEMENT_NODE;
    ib->params = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*ib->params));
    for (xmlNodePtr c = params->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (!cmi_xml_is(c, "parameter")) {
            cmi_compile_error(cc, c, "<parameters>: unexpected element <%s>", c->name);
            continue;
        }
        const char *name = cmi_xml_attr(cc, c, "name");
        if (name == NULL || *name == '\0') {
            cmi_compile_error(cc, c, "<parameter>: the name attribute is required");
            continue;
        }
        const char *key = cmi_xml_attr(cc, c, "key");
        if (key != NULL) {
            cmi_compile_error(cc, c, "<parameter name=\"%s\">: registry keys are not supported by cmi yet", name);
            continue;
        }
        cmi_param_t *p = &ib->params[ib->nparams++];
        p->name = name;
        p->value = cmi_xml_text(cc, c);
        p->line = cmi_xml_line(c);
    }
}

void cmi_artifact_inbound(cmi_compile_t *cc, xmlNodePtr root)
{
    cmi_xml_check_attrs(cc, root, inbound_attrs, NULL);
    const char *name = cmi_xml_attr(cc, root, "name");
    if (name == NULL || *name == '\0') {
        cmi_compile_error(cc, root, "<inboundEndpoint>: the name attribute is required");
        return;
    }
    cmi_inbound_t *ib = cmi_arena_calloc(cc->arena, 1, sizeof(*ib));
    ib->name = name;
    ib->file = cc->file;
    ib->line = cmi_xml_line(root);
    ib->protocol = cmi_xml_attr(cc, root, "protocol");
    ib->class_name = cmi_xml_attr(cc, root, "class");
    if ((ib->protocol == NULL) == (ib->class_name == NULL))
        cmi_compile_error(cc, root, "<inboundEndpoint name=\"%s\">: give exactly one of protocol and class", name);
    const char *seq = cmi_xml_attr(cc, root, "sequence");
    const char *on_error = cmi_xml_attr(cc, root, "onError");
    if (seq == NULL || *seq == '\0')
        cmi_compile_error(cc, root, "<inboundEndpoint name=\"%s\">: the sequence attribute is required", name);
    else
        cmi_compile_ref_sequence(cc, seq, &ib->sequence, ib->line,
                                 cmi_arena_sprintf(cc->arena, "<inboundEndpoint sequence=\"%s\">", seq));
    if (on_error != NULL && *on_error != '\0')
        cmi_compile_ref_sequence(cc, on_error, &ib->on_error, ib->line,
                                 cmi_arena_sprintf(cc->arena, "<inboundEndpoint onError=\"%s\">", on_error));
    for (xmlNodePtr c = root->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "parameters"))
            compile_params(cc, ib, c);
        else
            cmi_compile_error(cc, c, "<inboundEndpoint>: unexpected element <%s>", c->name);
    }
    /* Listeners come from connector modules. */
    if (ib->class_name != NULL || ib->protocol != NULL)
        cmi_bind_listener(cc, root, ib);
    cmi_config_t *cfg = cc->config;
    cfg->inbounds = cmi_xrealloc(cfg->inbounds, (cfg->ninbounds + 1) * sizeof(*cfg->inbounds));
    cfg->inbounds[cfg->ninbounds++] = ib;
}

/* endpoints/NAME.xml: <endpoint name="NAME"> with its target. */
void cmi_artifact_endpoint(cmi_compile_t *cc, xmlNodePtr root)
{
    const char *name = cmi_xml_attr(cc, root, "name");
    if (name == NULL || *name == '\0') {
        cmi_compile_error(cc, root, "<endpoint>: the name attribute is required");
        return;
    }
    cmi_endpoint_t *ep = cmi_compile_endpoint(cc, root);
    if (ep == NULL)
        return;
    if (cmi_htab_put(&cc->config->endpoints, name, strlen(name), ep) != NULL)
        cmi_compile_error(cc, root, "<endpoint name=\"%s\">: another endpoint has this name", name);
}

void cmi_artifact_unsupported(cmi_compile_t *cc, xmlNodePtr root, const char *what, int is_error)
{
    const char *name = cmi_xml_attr(cc, root, "name");
    if (is_error)
        cmi_compile_error(cc, root, "<%s%s%s%s>: %s are not supported by cmi yet", root->name,
                          name ? " name=\"" : "", name ? name : "", name ? "\"" : "", what);
    else
        cmi_compile_warn(cc, root, "<%s%s%s%s>: %s are not supported by cmi yet (ignored)", root->name,
                         name ? " name=\"" : "", name ? name : "", name ? "\"" : "", what);
}

/* An inSequence/outSequence/faultSequence of owner (a <resource>, a proxy's
 * <target>) given as an attribute (a key) or as a child element (inline);
 * both at once is an error. */
void cmi_compile_handler(cmi_compile_t *cc, xmlNodePtr owner, const char *which, const cmi_sequence_t **slot)
{
    const char *key = cmi_xml_attr(cc, owner, which);
    xmlNodePtr inline_seq = NULL;
    for (xmlNodePtr c = owner->children; c != NULL; c = c->next)
        if (cmi_xml_is(c, which))
            inline_seq = c;
    if (key != NULL && inline_seq != NULL) {
        cmi_compile_error(cc, inline_seq, "<%s>: %s is given both as an attribute and as an element", owner->name,
                          which);
        return;
    }
    if (key != NULL) {
        if (*key == '\0')
            cmi_compile_error(cc, owner, "<%s>: %s is empty", owner->name, which);
        else
            cmi_compile_ref_sequence(cc, key, slot, cmi_xml_line(owner),
                                     cmi_arena_sprintf(cc->arena, "<%s %s=\"%s\">", owner->name, which, key));
        return;
    }
    if (inline_seq != NULL) {
        static const cmi_attr_rule_t inline_attrs[] = {{"onError", CMI_ATTR_OK}, {NULL, 0}};
        cmi_xml_check_attrs(cc, inline_seq, cmi_common_mediator_attrs, inline_attrs);
        cmi_sequence_t *seq = cmi_compile_mediators(cc, inline_seq, NULL);
        const char *on_error = cmi_xml_attr(cc, inline_seq, "onError");
        if (on_error != NULL && *on_error != '\0')
            cmi_compile_ref_sequence(cc, on_error, &seq->on_error, cmi_xml_line(inline_seq),
                                     cmi_arena_sprintf(cc->arena, "<%s onError=\"%s\">", which, on_error));
        *slot = seq;
    }
}
