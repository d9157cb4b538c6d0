/* <enrich><source .../><target .../></enrich>: put a part of the message
 * (or an inline value) into another part (docs/mediators.md, "enrich").
 *
 * Sources: custom (an expression: XPath, json-eval() or ${...}), envelope,
 * body, property, variable, inline (XML or JSON, or a local entry by key).
 * Targets: custom (a JSON path or an XPath into the payload; $ctx:NAME is
 * the property NAME), envelope, body, property, variable, key (renames the
 * JSON fields a path names).  Actions: replace, child, sibling, remove (the
 * source's comma-separated JSON paths taken out of the target; JSON only,
 * as in MI).  The payload is edited on a copy and set again, so a value
 * taken from it earlier never changes under whoever holds it; clone="false"
 * therefore behaves as clone="true". */
#include "config.h"

#include <libxml/xpath.h>
#include <string.h>

#include "expr/expr.h"
#include "mediators/enrich.h"
#include "mediators/registry.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

typedef enum { PART_CUSTOM, PART_ENVELOPE, PART_BODY, PART_PROPERTY, PART_VARIABLE, PART_INLINE, PART_KEY } part_t;

static const char *const part_names[] = {"custom", "envelope", "body", "property", "variable", "inline", "key", NULL};
static const char *const action_names[] = {"replace", "child", "sibling", "remove", NULL};

/* Where replaced nodes wait to be freed, after whatever still points at
 * them: a node of their document, so that freeing them knows their names
 * live in its dictionary (a parsed document's do). */
static xmlNodePtr replaced_holder(xmlDocPtr doc)
{
    return xmlNewDocNode(doc, NULL, (const xmlChar *)"replaced", NULL);
}

typedef struct {
    cmi_mediator_t base;
    part_t src, dst;
    cmi_enrich_action_t action;
    const cmi_expr_t *src_expr;    /* custom source */
    const cmi_expr_t **removed;    /* remove: the source's JSON paths */
    size_t nremoved;
    const char *src_name;          /* property or variable source */
    cmi_value_t inline_value;      /* inline source (JSON owned by the configuration) */
    const cmi_expr_t *dst_expr;    /* custom or key target */
    const char *dst_name;          /* property or variable target ($ctx:NAME too) */
} enrich_mediator_t;

/* ---- the source ------------------------------------------------------------------ */

static int body_value(cmi_msg_t *msg, cmi_value_t *out)
{
    const char *err = NULL;
    switch (msg->payload.kind) {
    case CMI_PAYLOAD_NONE:
        *out = cmi_value_null();
        return 0;
    case CMI_PAYLOAD_JSON: {
        json_t *j = cmi_msg_payload_json(msg, &err);
        if (j == NULL)
            return cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "enrich: the body: %s", err);
        out->type = CMI_VAL_JSON;
        out->u.json = j;
        if (!json_is_object(j) && !json_is_array(j)) /* a scalar document */
            *out = cmi_value_cstring(cmi_value_to_text(msg->arena, &(cmi_value_t){.type = CMI_VAL_JSON, .u.json = j},
                                                       NULL));
        return 0;
    }
    case CMI_PAYLOAD_XML: {
        xmlDocPtr doc = cmi_msg_payload_xml(msg, &err);
        if (doc == NULL)
            return cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "enrich: the body: %s", err);
        xmlNodePtr root = xmlDocGetRootElement(doc);
        if (cmi_soap_is_envelope(root))
            root = cmi_soap_body_child(root);
        if (root == NULL) {
            *out = cmi_value_null();
            return 0;
        }
        size_t len;
        const char *markup = cmi_enrich_markup(msg, root, &len);
        *out = cmi_value_string(markup, len);
        out->type = CMI_VAL_XML;
        return 0;
    }
    default: {
        size_t len;
        const char *bytes = cmi_msg_payload_bytes(msg, &len);
        *out = cmi_value_string(cmi_arena_strndup(msg->arena, bytes, len), len); /* values end in a NUL */
        return 0;
    }
    }
}

static int envelope_value(cmi_msg_t *msg, cmi_value_t *out)
{
    const char *bytes;
    size_t len;
    if (cmi_payload_render_as(msg, "text/xml", &bytes, &len) != 0)
        return CMI_FLOW_ERROR;
    *out = cmi_value_string(cmi_arena_strndup(msg->arena, bytes, len), len); /* values end in a NUL */
    out->type = CMI_VAL_XML;
    return 0;
}

static int source_value(const enrich_mediator_t *e, cmi_msg_t *msg, cmi_value_t *out)
{
    const cmi_value_t *v;
    switch (e->src) {
    case PART_CUSTOM:
        return cmi_expr_eval(e->src_expr, msg, out);
    case PART_ENVELOPE:
        return envelope_value(msg, out);
    case PART_BODY:
        return body_value(msg, out);
    case PART_PROPERTY:
    case PART_VARIABLE:
        v = e->src == PART_PROPERTY ? cmi_msg_prop_get(msg, CMI_SCOPE_DEFAULT, e->src_name)
                                    : cmi_msg_var_get(msg, e->src_name);
        if (v == NULL)
            return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: the source %s '%s' is not set",
                                     part_names[e->src], e->src_name);
        *out = *v;
        return 0;
    default:
        *out = e->inline_value;
        return 0;
    }
}

/* ---- targets --------------------------------------------------------------------- */

/* The places of a JSON edit in doc: the target's path, or the source's
 * paths for a remove, or the whole document. */
static int json_places(const enrich_mediator_t *e, cmi_msg_t *msg, json_t *doc, cmi_json_place_t **places,
                       size_t *n)
{
    if (e->action == CMI_ENRICH_REMOVE) {
        cmi_json_place_t *all = NULL;
        size_t count = 0, cap = 0;
        for (size_t i = 0; i < e->nremoved; i++) {
            cmi_json_place_t *p;
            size_t k;
            if (cmi_expr_json_places(e->removed[i], msg, doc, &p, &k) != 0)
                return CMI_FLOW_ERROR;
            for (size_t j = 0; j < k; j++) {
                all = cmi_arena_grow(msg->arena, all, count, &cap, sizeof(*all), 8);
                all[count++] = p[j];
            }
        }
        *places = all;
        *n = count;
        return 0;
    }
    if ((e->dst == PART_CUSTOM || e->dst == PART_KEY) && e->dst_name == NULL)
        return cmi_expr_json_places(e->dst_expr, msg, doc, places, n);
    static cmi_json_place_t whole = {0};
    *places = &whole;
    *n = 1;
    return 0;
}

/* Edits a copy of a JSON document; *doc becomes the edited copy (a
 * reference the caller owns). */
static int edit_json(const enrich_mediator_t *e, cmi_msg_t *msg, json_t **doc, const cmi_value_t *src)
{
    *doc = json_deep_copy(*doc);
    cmi_json_place_t *places;
    size_t n;
    if (json_places(e, msg, *doc, &places, &n) != 0)
        goto fail;
    if (e->action == CMI_ENRICH_REMOVE) {
        cmi_enrich_json_remove(doc, places, n, msg);
        return 0;
    }
    if (e->dst == PART_CUSTOM && e->dst_name == NULL && n == 0)
        return 0; /* the path reaches nothing: nothing to enrich, as MI */
    if (cmi_enrich_json_at(msg, doc, places, n, e->action, src) == 0)
        return 0;
fail:
    json_decref(*doc);
    *doc = NULL;
    return CMI_FLOW_ERROR;
}

/* Edits XML markup (a property's value): its root element gets the child
 * or the sibling; a replace is the source itself. */
static int edit_markup(const enrich_mediator_t *e, cmi_msg_t *msg, const cmi_value_t *held, const cmi_value_t *src,
                       cmi_value_t *out)
{
    const char *why = NULL;
    xmlDocPtr doc = cmi_xml_read(msg->arena, held->u.s.ptr, held->u.s.len, &why);
    if (doc == NULL)
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: the target's XML: %s", why);
    size_t len;
    if (e->action == CMI_ENRICH_SIBLING) {
        /* A fragment: the value then the source, as MI's OM list reads. */
        xmlNodePtr node = cmi_enrich_as_xml(msg, src, doc);
        const char *tail = cmi_enrich_markup(msg, node, &len);
        xmlFreeNode(node);
        cmi_strbuf_t b;
        cmi_strbuf_init(&b, msg->arena, held->u.s.len + len);
        cmi_strbuf_append(&b, held->u.s.ptr, held->u.s.len);
        cmi_strbuf_append(&b, tail, len);
        xmlFreeDoc(doc);
        *out = cmi_value_string(b.data, b.len);
        out->type = CMI_VAL_XML;
        return 0;
    }
    xmlNodePtr replaced = replaced_holder(doc);
    int rc = cmi_enrich_xml_at(msg, xmlDocGetRootElement(doc), e->action, src, replaced);
    if (rc == 0) {
        const char *markup = cmi_enrich_markup(msg, xmlDocGetRootElement(doc), &len);
        *out = cmi_value_string(markup, len);
        out->type = CMI_VAL_XML;
    }
    xmlFreeNode(replaced);
    xmlFreeDoc(doc);
    return rc;
}

static int markup_like(const cmi_value_t *v)
{
    if (v->type == CMI_VAL_XML)
        return 1;
    if (v->type != CMI_VAL_STRING)
        return 0;
    size_t i = 0;
    while (i < v->u.s.len && (v->u.s.ptr[i] == ' ' || v->u.s.ptr[i] == '\n' || v->u.s.ptr[i] == '\t' ||
                              v->u.s.ptr[i] == '\r'))
        i++;
    return i < v->u.s.len && v->u.s.ptr[i] == '<';
}

static void store(const enrich_mediator_t *e, cmi_msg_t *msg, cmi_value_t v)
{
    if (e->dst == PART_VARIABLE)
        cmi_msg_var_set(msg, e->dst_name, v);
    else
        cmi_msg_prop_set(msg, CMI_SCOPE_DEFAULT, e->dst_name, v);
}

static int to_holder(const enrich_mediator_t *e, cmi_msg_t *msg, const cmi_value_t *src)
{
    const cmi_value_t *held = e->dst == PART_VARIABLE ? cmi_msg_var_get(msg, e->dst_name)
                                                      : cmi_msg_prop_get(msg, CMI_SCOPE_DEFAULT, e->dst_name);
    /* A child or sibling of nothing is the source itself, as in MI. */
    if (e->action == CMI_ENRICH_REPLACE || (held == NULL && e->action != CMI_ENRICH_REMOVE)) {
        cmi_value_t v = *src;
        if (v.type == CMI_VAL_JSON)
            v.u.json = cmi_msg_own_json(msg, json_deep_copy(v.u.json));
        store(e, msg, v);
        return 0;
    }
    if (held == NULL)
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: the target %s '%s' is not set",
                                 part_names[e->dst], e->dst_name);
    cmi_value_t v;
    if (markup_like(held) && e->action != CMI_ENRICH_REMOVE) {
        if (edit_markup(e, msg, held, src, &v) != 0)
            return CMI_FLOW_ERROR;
    } else {
        json_t *doc = cmi_enrich_as_json(msg, held);
        json_t *copy = doc;
        int rc = edit_json(e, msg, &copy, src);
        json_decref(doc);
        if (rc != 0)
            return CMI_FLOW_ERROR;
        v.type = CMI_VAL_JSON;
        v.u.json = cmi_msg_own_json(msg, copy);
    }
    store(e, msg, v);
    return 0;
}

/* A new XML payload from an edited document that holds it in an envelope:
 * the envelope when the payload was SOAP, else the body's element, or
 * that element's JSON form when the payload was JSON (as MI writes a JSON
 * message out again). */
static int set_from_doc(cmi_msg_t *msg, xmlDocPtr doc, int was_soap, int was_json)
{
    xmlNodePtr env = xmlDocGetRootElement(doc);
    xmlNodePtr node = was_soap ? env : cmi_soap_body_child(env);
    if (node == NULL) {
        cmi_msg_set_payload(msg, "", 0, msg->payload.content_type);
        return 0;
    }
    if (was_json) {
        json_t *j = cmi_xml_to_json_tree(msg->arena, node, cmi_msg_view_limit());
        if (j == NULL)
            return cmi_msg_set_error(msg, CMI_ERR_PAYLOAD_TOO_LARGE, NULL, "enrich: the payload's JSON form would "
                                     "take more than %zu bytes", cmi_msg_view_limit());
        cmi_msg_set_payload_json(msg, j);
        return 0;
    }
    size_t len;
    const char *markup = cmi_enrich_markup(msg, node, &len);
    cmi_msg_set_payload(msg, markup, len, msg->payload.content_type ? msg->payload.content_type : "application/xml");
    return 0;
}

static int payload_is_soap(cmi_msg_t *msg)
{
    const char *err;
    xmlDocPtr doc = msg->payload.kind == CMI_PAYLOAD_XML ? cmi_msg_payload_xml(msg, &err) : NULL;
    return doc != NULL && cmi_soap_is_envelope(xmlDocGetRootElement(doc));
}

/* The XML edit: at the nodes an XPath selects, or at the body's element. */
static int to_xml_payload(const enrich_mediator_t *e, cmi_msg_t *msg, const cmi_value_t *src)
{
    int was_soap = payload_is_soap(msg), was_json = msg->payload.kind == CMI_PAYLOAD_JSON;
    const cmi_expr_t *name_for_errors = e->dst_expr ? e->dst_expr : e->src_expr;
    xmlDocPtr doc = cmi_expr_payload_doc(name_for_errors, msg);
    if (doc == NULL)
        return CMI_FLOW_ERROR;
    int rc = 0;
    xmlNodePtr replaced = replaced_holder(doc);
    if (e->dst == PART_CUSTOM) {
        xmlXPathObjectPtr r = cmi_expr_xpath_select(e->dst_expr, msg, doc);
        if (r == NULL) {
            rc = CMI_FLOW_ERROR;
        } else if (r->type != XPATH_NODESET) {
            rc = cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: the target %s selects no node",
                                   cmi_expr_text(e->dst_expr));
        } else if (r->nodesetval != NULL &&
                   (rc = cmi_enrich_within_limit(msg, src, (size_t)r->nodesetval->nodeNr)) == 0) {
            for (int i = 0; rc == 0 && i < r->nodesetval->nodeNr; i++)
                rc = cmi_enrich_xml_at(msg, r->nodesetval->nodeTab[i], e->action, src, replaced);
        }
        xmlXPathFreeObject(r);
    } else { /* the body: its element gets the child, or the sibling */
        xmlNodePtr elem = cmi_soap_body_child(xmlDocGetRootElement(doc));
        if (e->action == CMI_ENRICH_SIBLING && !was_soap)
            rc = cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL,
                                   "enrich: a sibling of the body's element needs a SOAP payload (a plain XML document has one root)");
        else if (elem == NULL)
            rc = cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: the body is empty");
        else
            rc = cmi_enrich_xml_at(msg, elem, e->action, src, replaced);
    }
    xmlFreeNode(replaced);
    if (rc == 0)
        rc = set_from_doc(msg, doc, was_soap, was_json);
    xmlFreeDoc(doc);
    return rc;
}

/* The body replaced by the source: JSON stays JSON; XML goes into the
 * SOAP Body when the payload is SOAP, else becomes the document. */
static int replace_body(cmi_msg_t *msg, const cmi_value_t *src)
{
    if (src->type == CMI_VAL_JSON || (src->type == CMI_VAL_STRING && !markup_like(src) &&
                                      msg->payload.kind == CMI_PAYLOAD_JSON)) {
        cmi_msg_set_payload_json(msg, cmi_enrich_as_json(msg, src));
        return 0;
    }
    if (!markup_like(src))
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL,
                                 "enrich: the source is neither JSON nor XML and cannot become the body");
    if (payload_is_soap(msg)) {
        const char *err;
        xmlDocPtr doc = cmi_msg_payload_xml(msg, &err);
        xmlNodePtr elem = cmi_soap_body_child(xmlDocGetRootElement(doc));
        if (elem != NULL) {
            xmlNodePtr replaced = replaced_holder(doc);
            int rc = cmi_enrich_xml_at(msg, elem, CMI_ENRICH_REPLACE, src, replaced);
            xmlFreeNode(replaced);
            if (rc != 0)
                return CMI_FLOW_ERROR;
            cmi_msg_payload_xml_changed(msg);
            return 0;
        }
    }
    size_t len;
    const char *text = cmi_value_to_text(msg->arena, src, &len);
    const char *ct = msg->payload.kind == CMI_PAYLOAD_XML ? msg->payload.content_type : "application/xml";
    cmi_msg_set_payload(msg, text, len, ct);
    return 0;
}

static int to_envelope(cmi_msg_t *msg, const cmi_value_t *src)
{
    const char *why = NULL;
    xmlDocPtr doc = markup_like(src) ? cmi_xml_read(msg->arena, src->u.s.ptr, src->u.s.len, &why) : NULL;
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!cmi_soap_is_envelope(root)) {
        xmlFreeDoc(doc);
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: an envelope target needs a SOAP envelope");
    }
    int soap12 = root->ns && strcmp((const char *)root->ns->href, CMI_SOAP12_NS) == 0;
    xmlFreeDoc(doc);
    cmi_msg_set_payload(msg, src->u.s.ptr, src->u.s.len, soap12 ? "application/soap+xml" : "text/xml");
    return 0;
}

static int to_payload(const enrich_mediator_t *e, cmi_msg_t *msg, const cmi_value_t *src)
{
    int json_path = (e->dst == PART_CUSTOM || e->dst == PART_KEY) && !cmi_expr_is_xpath(e->dst_expr);
    if (e->dst == PART_BODY && e->action == CMI_ENRICH_REPLACE)
        return replace_body(msg, src);
    if (json_path || e->action == CMI_ENRICH_REMOVE ||
        (e->dst == PART_BODY && msg->payload.kind == CMI_PAYLOAD_JSON)) {
        const char *err = NULL;
        json_t *j = cmi_msg_payload_json(msg, &err);
        if (j == NULL)
            return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: %s needs a JSON payload (%s)",
                                     e->action == CMI_ENRICH_REMOVE ? "remove" : cmi_expr_text(e->dst_expr),
                                     err ? err : "there is none");
        if (edit_json(e, msg, &j, src) != 0)
            return CMI_FLOW_ERROR;
        cmi_msg_set_payload_json(msg, j);
        return 0;
    }
    return to_xml_payload(e, msg, src);
}

static int run_enrich(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const enrich_mediator_t *e = (const enrich_mediator_t *)m;
    cmi_value_t src = cmi_value_null();
    if (e->action != CMI_ENRICH_REMOVE && source_value(e, msg, &src) != 0)
        return CMI_FLOW_ERROR;
    int rc;
    switch (e->dst) {
    case PART_PROPERTY:
    case PART_VARIABLE:
        rc = to_holder(e, msg, &src);
        break;
    case PART_CUSTOM:
        rc = e->dst_name != NULL ? to_holder(e, msg, &src) : to_payload(e, msg, &src);
        break;
    case PART_ENVELOPE:
        rc = to_envelope(msg, &src);
        break;
    default:
        rc = to_payload(e, msg, &src);
    }
    return rc == 0 ? CMI_FLOW_CONTINUE : CMI_FLOW_ERROR;
}

/* ---- configuration ---------------------------------------------------------------- */

static int find_name(const char *const *names, const char *s)
{
    for (int i = 0; names[i] != NULL; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static const cmi_attr_rule_t part_attrs[] = {
    {"type", CMI_ATTR_OK},   {"xpath", CMI_ATTR_OK},    {"property", CMI_ATTR_OK}, {"variable", CMI_ATTR_OK},
    {"clone", CMI_ATTR_OK},  {"action", CMI_ATTR_OK},   {"key", CMI_ATTR_OK},      {NULL, 0},
};

static void json_free_cb(void *j)
{
    json_decref(j);
}

/* The remove action's source: JSON paths separated by commas outside
 * brackets and parentheses, in json-eval(...) or bare. */
static int compile_removed(cmi_compile_t *cc, xmlNodePtr node, enrich_mediator_t *e, const char *text)
{
    size_t n = strlen(text);
    if (n > 11 && strncmp(text, "json-eval(", 10) == 0 && text[n - 1] == ')')
        text = cmi_arena_strndup(cc->arena, text + 10, n - 11), n -= 11;
    e->removed = cmi_arena_calloc(cc->arena, n / 2 + 1, sizeof(*e->removed));
    int depth = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? text[i] : ',';
        depth += (c == '[' || c == '(') - (c == ']' || c == ')');
        if (c != ',' || depth != 0)
            continue;
        const char *one = cmi_arena_strndup(cc->arena, text + start, i - start);
        const char *wrapped = cmi_arena_sprintf(cc->arena, "json-eval(%s)", cmi_compile_trim(cc, one, NULL));
        const cmi_expr_t *x = cmi_compile_expr(cc, node, "xpath", wrapped);
        if (x == NULL)
            return -1;
        if (!cmi_expr_is_json_path(x)) {
            cmi_compile_error(cc, node, "<enrich>: remove takes JSON paths, and '%s' is not one", one);
            return -1;
        }
        e->removed[e->nremoved++] = x;
        start = i + 1;
    }
    return 0;
}

static int compile_inline(cmi_compile_t *cc, xmlNodePtr src, enrich_mediator_t *e)
{
    xmlNodePtr elem = NULL;
    for (xmlNodePtr c = src->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE) {
            if (elem != NULL) {
                cmi_compile_error(cc, c, "<enrich>: an inline source holds one element");
                return -1;
            }
            elem = c;
        }
    size_t len;
    if (elem != NULL) {
        const char *markup = cmi_compile_element_markup(cc, elem, &len);
        e->inline_value = cmi_value_string(markup, len);
        e->inline_value.type = CMI_VAL_XML;
        return 0;
    }
    const char *text = cmi_compile_trim(cc, cmi_xml_text(cc, src), &len);
    if (len > 0 && (text[0] == '{' || text[0] == '[' || text[0] == '"')) {
        json_error_t je;
        json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &je);
        if (j == NULL) {
            cmi_compile_error(cc, src, "<enrich>: the inline source is not valid JSON: %s", je.text);
            return -1;
        }
        cmi_arena_cleanup_add(cc->arena, json_free_cb, j);
        if (json_is_object(j) || json_is_array(j)) {
            e->inline_value.type = CMI_VAL_JSON;
            e->inline_value.u.json = j;
        } else {
            e->inline_value = cmi_value_cstring(json_string_value(j) ? json_string_value(j) : text);
        }
        return 0;
    }
    e->inline_value = cmi_value_string(text, len);
    return 0;
}

/* <source type="inline" key="entry">: a local entry's XML or text (local
 * entries load first). */
static int compile_inline_key(cmi_compile_t *cc, xmlNodePtr src, enrich_mediator_t *e, const char *key)
{
    if (strncmp(key, "conf:", 5) == 0 || strncmp(key, "gov:", 4) == 0) {
        cmi_compile_error(cc, src, "<enrich>: <source key=\"%s\">: registry resources are not supported by cmi yet "
                                   "(use a local entry)", key);
        return -1;
    }
    const cmi_local_entry_t *le = cmi_htab_gets(&cc->config->local_entries, key);
    if (le == NULL || (le->markup == NULL && le->text == NULL)) {
        cmi_compile_error(cc, src, "<enrich>: <source key=\"%s\">: %s", key,
                          le == NULL ? "no local entry of that key is deployed" : "that local entry holds no XML or text");
        return -1;
    }
    e->inline_value = cmi_value_cstring(le->markup ? le->markup : le->text);
    if (le->markup != NULL)
        e->inline_value.type = CMI_VAL_XML;
    return 0;
}

static int compile_source(cmi_compile_t *cc, xmlNodePtr src, enrich_mediator_t *e)
{
    const char *type = cmi_xml_attr(cc, src, "type");
    int t = type ? find_name(part_names, type) : PART_CUSTOM;
    if (t < 0 || t == PART_KEY) {
        cmi_compile_error(cc, src, "<enrich>: unknown source type '%s' (custom, envelope, body, property, variable "
                                   "or inline)", type);
        return -1;
    }
    e->src = (part_t)t;
    const char *clone = cmi_xml_attr(cc, src, "clone");
    if (clone != NULL && strcmp(clone, "true") != 0 && strcmp(clone, "false") != 0) {
        cmi_compile_error(cc, src, "<enrich>: clone must be true or false, not '%s'", clone);
        return -1;
    }
    const char *xpath = cmi_xml_attr(cc, src, "xpath");
    switch (e->src) {
    case PART_CUSTOM:
        if (xpath == NULL) {
            cmi_compile_error(cc, src, "<enrich>: a custom source needs an xpath (an XPath, json-eval() or ${...})");
            return -1;
        }
        if (e->action == CMI_ENRICH_REMOVE)
            return compile_removed(cc, src, e, xpath);
        return (e->src_expr = cmi_compile_expr(cc, src, "xpath", xpath)) ? 0 : -1;
    case PART_PROPERTY:
    case PART_VARIABLE:
        e->src_name = cmi_xml_attr(cc, src, e->src == PART_PROPERTY ? "property" : "variable");
        if (e->src_name == NULL && e->src == PART_VARIABLE)
            e->src_name = cmi_xml_attr(cc, src, "property");
        if (e->src_name == NULL || *e->src_name == '\0') {
            cmi_compile_error(cc, src, "<enrich>: a %s source needs its name (%s=\"...\")", type,
                              e->src == PART_PROPERTY ? "property" : "variable");
            return -1;
        }
        return 0;
    case PART_INLINE:
        if (cmi_xml_attr(cc, src, "key") != NULL)
            return compile_inline_key(cc, src, e, cmi_xml_attr(cc, src, "key"));
        return compile_inline(cc, src, e);
    default:
        return 0;
    }
}

static int compile_target(cmi_compile_t *cc, xmlNodePtr dst, enrich_mediator_t *e)
{
    const char *type = cmi_xml_attr(cc, dst, "type");
    const char *action = cmi_xml_attr(cc, dst, "action");
    int t = type ? find_name(part_names, type) : PART_CUSTOM;
    int a = action ? find_name(action_names, action) : CMI_ENRICH_REPLACE;
    if (t < 0 || t == PART_INLINE) {
        cmi_compile_error(cc, dst, "<enrich>: unknown target type '%s' (custom, envelope, body, property, variable "
                                   "or key)", type);
        return -1;
    }
    if (a < 0) {
        cmi_compile_error(cc, dst, "<enrich>: unknown action '%s' (replace, child, sibling or remove)", action);
        return -1;
    }
    e->dst = (part_t)t;
    e->action = t == PART_KEY ? CMI_ENRICH_RENAME : (cmi_enrich_action_t)a;
    if (t == PART_ENVELOPE && a != CMI_ENRICH_REPLACE) {
        cmi_compile_error(cc, dst, "<enrich>: an envelope target takes action=\"replace\" only");
        return -1;
    }
    if (a == CMI_ENRICH_REMOVE && t != PART_BODY && t != PART_PROPERTY && t != PART_VARIABLE) {
        cmi_compile_error(cc, dst, "<enrich>: remove works on the body, a property or a variable");
        return -1;
    }
    const char *xpath = cmi_xml_attr(cc, dst, "xpath");
    if (t == PART_PROPERTY || t == PART_VARIABLE) {
        e->dst_name = cmi_xml_attr(cc, dst, t == PART_PROPERTY ? "property" : "variable");
        if (e->dst_name == NULL && t == PART_VARIABLE)
            e->dst_name = cmi_xml_attr(cc, dst, "property");
        if (e->dst_name == NULL || *e->dst_name == '\0') {
            cmi_compile_error(cc, dst, "<enrich>: a %s target needs its name", type);
            return -1;
        }
        return 0;
    }
    if (t != PART_CUSTOM && t != PART_KEY)
        return 0;
    if (xpath == NULL) {
        cmi_compile_error(cc, dst, "<enrich>: a %s target needs an xpath", t == PART_KEY ? "key" : "custom");
        return -1;
    }
    if (t == PART_CUSTOM && strncmp(xpath, "$ctx:", 5) == 0 && xpath[5] != '\0' && !strpbrk(xpath + 5, "/[(")) {
        e->dst_name = xpath + 5; /* MI's way of naming a property as a custom target */
        return 0;
    }
    if ((e->dst_expr = cmi_compile_expr(cc, dst, "xpath", xpath)) == NULL)
        return -1;
    if (!cmi_expr_is_xpath(e->dst_expr) && !cmi_expr_is_json_path(e->dst_expr)) {
        cmi_compile_error(cc, dst, "<enrich>: the target '%s' is not a place in the payload (a JSON path or an XPath)",
                          xpath);
        return -1;
    }
    if (t == PART_KEY && cmi_expr_is_xpath(e->dst_expr)) {
        cmi_compile_error(cc, dst, "<enrich>: a key target renames JSON fields and takes a JSON path");
        return -1;
    }
    return 0;
}

cmi_mediator_t *cmi_compile_enrich(cmi_compile_t *cc, xmlNodePtr node)
{
    int errors = cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, NULL);
    enrich_mediator_t *e = cmi_mediator_new(cc, node, sizeof(*e), run_enrich);
    xmlNodePtr src = NULL, dst = NULL;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || cmi_xml_is(c, "description"))
            continue;
        if (cmi_xml_is(c, "source") && src == NULL)
            src = c;
        else if (cmi_xml_is(c, "target") && dst == NULL)
            dst = c;
        else {
            cmi_compile_error(cc, c, "<enrich>: unexpected <%s> (one <source> and one <target>)", (const char *)c->name);
            errors++;
        }
    }
    if (src == NULL || dst == NULL) {
        cmi_compile_error(cc, node, "<enrich>: needs a <source> and a <target>");
        return NULL;
    }
    errors += cmi_xml_check_attrs(cc, src, part_attrs, NULL) + cmi_xml_check_attrs(cc, dst, part_attrs, NULL);
    if (errors || compile_target(cc, dst, e) != 0 || compile_source(cc, src, e) != 0)
        return NULL;
    if (e->action == CMI_ENRICH_REMOVE && e->src != PART_CUSTOM) {
        cmi_compile_error(cc, src, "<enrich>: remove takes a custom source naming what to remove (JSON paths)");
        return NULL;
    }
    return &e->base;
}
