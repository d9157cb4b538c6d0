/* <payloadFactory media-type="json|xml|text"><format>...</format>
 * [<args><arg .../></args>]: replace the payload with the format.
 *
 * The format is prepared once at load: an XML format is serialised with its
 * namespaces, then compiled as a template; ${...} placeholders and the
 * legacy $1..$N (filled from <args>) are the only work left per message.  A
 * format without placeholders costs nothing per message: the payload points
 * at the configuration's bytes. */
#include "config.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "core/str.h"
#include "expr/expr.h"
#include "mediators/freemarker.h"
#include "mediators/registry.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

typedef struct {
    const cmi_expr_t *expr; /* expression="..." */
    cmi_value_t literal;    /* or value="..." */
} pf_arg_t;

typedef struct {
    cmi_mediator_t base;
    const char *bytes; /* a format without placeholders */
    size_t len;
    const cmi_template_t *tmpl; /* or a template */
    pf_arg_t *args;
    size_t nargs;
    const char *content_type;
    int xml; /* media-type="xml" */
} payload_mediator_t;

/* The SOAP Body of the message when it is a SOAP envelope, else NULL. */
static xmlNodePtr soap_body_of(cmi_msg_t *msg)
{
    const char *ct = msg->payload.content_type;
    size_t n = ct ? strcspn(ct, "; ") : 0;
    if (msg->payload.kind != CMI_PAYLOAD_XML ||
        !((n == 8 && strncasecmp(ct, "text/xml", 8) == 0) || (n == 20 && strncasecmp(ct, "application/soap+xml", 20) == 0)))
        return NULL;
    xmlDocPtr doc = cmi_msg_payload_xml(msg, NULL);
    xmlNodePtr env = doc ? xmlDocGetRootElement(doc) : NULL;
    return cmi_soap_is_envelope(env) ? cmi_soap_body(env) : NULL;
}

/* An XML payload goes in the Body of a SOAP message, whose envelope,
 * headers and content type stay (MI's payloadFactory replaces the Body's
 * content); any other message takes it as its whole payload. */
static int set_payload(const payload_mediator_t *p, cmi_msg_t *msg, const char *bytes, size_t len)
{
    xmlNodePtr body = p->xml ? soap_body_of(msg) : NULL;
    if (body == NULL) {
        cmi_msg_set_payload(msg, bytes, len, p->content_type);
        return CMI_FLOW_CONTINUE;
    }
    const char *why = NULL;
    xmlDocPtr made = cmi_xml_read(msg->arena, bytes, len, &why);
    if (made == NULL)
        return cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "<payloadFactory>: the result is not XML: %s", why);
    xmlNodePtr old = body->children; /* every child: white space around the element too */
    body->children = body->last = NULL;
    xmlFreeNodeList(old);
    cmi_xml_clone(xmlDocGetRootElement(made), body->doc, body);
    xmlFreeDoc(made);
    cmi_msg_payload_xml_changed(msg);
    return CMI_FLOW_CONTINUE;
}

static int run_payload(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const payload_mediator_t *p = (const payload_mediator_t *)m;
    if (p->tmpl == NULL)
        return set_payload(p, msg, p->bytes, p->len);
    cmi_value_t *values = NULL;
    if (p->nargs > 0) {
        values = cmi_arena_alloc(msg->arena, p->nargs * sizeof(*values));
        for (size_t i = 0; i < p->nargs; i++) {
            values[i] = p->args[i].literal;
            if (p->args[i].expr != NULL && cmi_expr_eval(p->args[i].expr, msg, &values[i]) != 0)
                return CMI_FLOW_ERROR;
        }
    }
    cmi_strbuf_t out;
    cmi_strbuf_init(&out, msg->arena, p->len + 256);
    if (cmi_template_render(p->tmpl, msg, values, p->nargs, &out) != 0)
        return CMI_FLOW_ERROR;
    return set_payload(p, msg, out.data, out.len);
}

static const cmi_attr_rule_t attrs[] = {
    {"media-type", CMI_ATTR_OK},
    {"template-type", CMI_ATTR_OK},
    {NULL, 0},
};

static const cmi_attr_rule_t arg_attrs[] = {
    {"value", CMI_ATTR_OK},
    {"expression", CMI_ATTR_OK},
    {"evaluator", CMI_ATTR_OK},
    {"literal", CMI_ATTR_OK},
    {NULL, 0},
};

/* <arg value="..."/> or <arg expression="..." evaluator="xml|json"/>: with
 * the json evaluator a bare "$.a.b" is a JSON path, as in MI. */
static int compile_args(cmi_compile_t *cc, xmlNodePtr args, payload_mediator_t *p)
{
    size_t n = 0;
    for (xmlNodePtr a = args->children; a != NULL; a = a->next)
        n += a->type == XML_ELEMENT_NODE;
    p->args = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*p->args));
    for (xmlNodePtr a = args->children; a != NULL; a = a->next) {
        if (a->type != XML_ELEMENT_NODE)
            continue;
        if (!cmi_xml_is(a, "arg")) {
            cmi_compile_error(cc, a, "<args>: unexpected element <%s>", a->name);
            return -1;
        }
        if (cmi_xml_check_attrs(cc, a, arg_attrs, NULL))
            return -1;
        pf_arg_t *arg = &p->args[p->nargs++];
        const char *value = cmi_xml_attr(cc, a, "value");
        const char *expression = cmi_xml_attr(cc, a, "expression");
        const char *evaluator = cmi_xml_attr(cc, a, "evaluator");
        if ((value == NULL) == (expression == NULL)) {
            cmi_compile_error(cc, a, "<arg>: give a value or an expression");
            return -1;
        }
        if (evaluator != NULL && strcmp(evaluator, "xml") != 0 && strcmp(evaluator, "json") != 0) {
            cmi_compile_error(cc, a, "<arg>: evaluator must be 'xml' or 'json', not '%s'", evaluator);
            return -1;
        }
        if (value != NULL) {
            arg->literal = cmi_value_cstring(value);
            continue;
        }
        const char *text = expression;
        if (evaluator != NULL && strcmp(evaluator, "json") == 0 && strncmp(text, "${", 2) != 0 &&
            strncmp(text, "json-eval(", 10) != 0)
            text = cmi_arena_sprintf(cc->arena, "json-eval(%s)", expression);
        arg->expr = cmi_compile_expr(cc, a, "expression", text);
        if (arg->expr == NULL)
            return -1;
    }
    return 0;
}

static int has_placeholders(const char *s)
{
    for (; *s; s++)
        if (s[0] == '$' && (isdigit((unsigned char)s[1]) || s[1] == '{'))
            return 1;
    return 0;
}

static int compile_json(cmi_compile_t *cc, xmlNodePtr format, payload_mediator_t *p)
{
    p->bytes = cmi_compile_trim(cc, cmi_xml_text(cc, format), &p->len);
    p->content_type = "application/json";
    if (has_placeholders(p->bytes)) {
        p->tmpl = cmi_compile_template(cc, format, NULL, p->bytes, CMI_TEMPLATE_JSON, p->nargs);
        return p->tmpl ? 0 : -1;
    }
    json_error_t je;
    json_t *j = json_loadb(p->bytes, p->len, JSON_DECODE_ANY, &je);
    if (j == NULL) {
        cmi_compile_error(cc, format, "<payloadFactory media-type=\"json\">: the format is not valid JSON: %s "
                                      "(line %d, column %d of the format)", je.text, je.line, je.column);
        return -1;
    }
    json_decref(j);
    return 0;
}

static int compile_xml(cmi_compile_t *cc, xmlNodePtr format, payload_mediator_t *p)
{
    xmlNodePtr elem = NULL;
    for (xmlNodePtr c = format->children; c != NULL; c = c->next) {
        if (c->type == XML_ELEMENT_NODE) {
            if (elem != NULL) {
                cmi_compile_error(cc, c, "<payloadFactory media-type=\"xml\">: the format must hold one root element");
                return -1;
            }
            elem = c;
        }
    }
    if (elem == NULL) {
        cmi_compile_error(cc, format, "<payloadFactory media-type=\"xml\">: the format holds no element");
        return -1;
    }
    p->bytes = cmi_compile_element_markup(cc, elem, &p->len);
    p->content_type = "application/xml";
    p->xml = 1;
    if (has_placeholders(p->bytes)) {
        p->tmpl = cmi_compile_template(cc, format, NULL, p->bytes, CMI_TEMPLATE_XML, p->nargs);
        return p->tmpl ? 0 : -1;
    }
    return 0;
}

cmi_mediator_t *cmi_compile_payload_factory(cmi_compile_t *cc, xmlNodePtr node)
{
    int errors = cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs);
    payload_mediator_t *p = cmi_mediator_new(cc, node, sizeof(*p), run_payload);
    const char *media = cmi_xml_attr(cc, node, "media-type");
    const char *ttype = cmi_xml_attr(cc, node, "template-type");
    int freemarker = ttype != NULL && strcmp(ttype, "freemarker") == 0;
    if (ttype != NULL && strcmp(ttype, "default") != 0 && !freemarker) {
        cmi_compile_error(cc, node, "<payloadFactory>: unknown template-type '%s' (default or freemarker)", ttype);
        return NULL;
    }
    xmlNodePtr format = NULL;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "format") && format == NULL) {
            format = c;
        } else if (cmi_xml_is(c, "args")) {
            if (compile_args(cc, c, p) != 0)
                return NULL;
        } else {
            cmi_compile_error(cc, c, "<payloadFactory>: unexpected element <%s>", c->name);
            errors++;
        }
    }
    if (format == NULL) {
        cmi_compile_error(cc, node, "<payloadFactory>: a <format> is required");
        return NULL;
    }
    if (cmi_xml_attr(cc, format, "key") != NULL) {
        cmi_compile_error(cc, format, "<payloadFactory>: <format key=...> (a registry resource) is not supported by cmi yet");
        return NULL;
    }
    if (errors)
        return NULL;
    if (freemarker && (p->nargs > 0 || cmi_freemarker_rewrite_tree(cc, format) != 0)) {
        if (p->nargs > 0) /* FreeMarker reads them as ${args.arg1}: not among the forms cmi rewrites */
            cmi_compile_error(cc, node, "<payloadFactory template-type=\"freemarker\">: <args> are not supported by "
                              "cmi (read the values with ${payload...}, ${ctx...} or ${vars...})");
        return NULL;
    }
    int rc;
    if (media == NULL || strcmp(media, "xml") == 0) {
        rc = compile_xml(cc, format, p);
    } else if (strcmp(media, "json") == 0) {
        rc = compile_json(cc, format, p);
    } else if (strcmp(media, "text") == 0) {
        p->bytes = cmi_xml_text(cc, format);
        p->len = strlen(p->bytes);
        p->content_type = "text/plain";
        rc = 0;
        if (has_placeholders(p->bytes)) {
            p->tmpl = cmi_compile_template(cc, format, NULL, p->bytes, CMI_TEMPLATE_TEXT, p->nargs);
            rc = p->tmpl ? 0 : -1;
        }
    } else {
        cmi_compile_error(cc, node, "<payloadFactory>: media-type must be json, xml or text, not '%s'", media);
        rc = -1;
    }
    return rc == 0 ? &p->base : NULL;
}
