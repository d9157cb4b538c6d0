/* <makefault version="soap11|soap12|pox" [response="true"]> with <code
 * value="prefix:Name"/>, <reason value|expression/>, <node/>, <role/> and
 * <detail> (text, inline XML or an expression): the payload becomes a
 * fault, as MI's fault mediator makes it (docs/mediators.md).  It sends
 * nothing: a <send/> or <respond/> after it does, with status 500 unless
 * the flow sets HTTP_SC afterwards.  response="true" turns the message to
 * its response path, so that a <send/> answers the caller. */
#include "config.h"

#include <string.h>

#include "core/str.h"
#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

enum { FAULT_POX, FAULT_SOAP11, FAULT_SOAP12 };

/* A text given as a value or as an expression. */
typedef struct {
    const char *value;
    const cmi_expr_t *expr;
} text_source_t;

typedef struct {
    cmi_mediator_t base;
    int version;
    int response;
    const char *code_local;  /* the code's local name */
    const char *code_prefix; /* its prefix as written, when not the envelope's namespace */
    const char *code_ns;
    text_source_t reason, detail;
    const char *detail_markup; /* inline XML detail */
    const char *node_uri, *role;
} makefault_mediator_t;

static int text_of(cmi_msg_t *msg, const text_source_t *t, const char **out)
{
    size_t len;
    *out = t->value;
    return t->expr != NULL ? cmi_expr_eval_text(t->expr, msg, out, &len) : 0;
}

/* A child in namespace ns (NULL: none; xmlNewChild would inherit the
 * parent's, and SOAP 1.1's faultcode and friends have none). */
static xmlNodePtr add(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *text)
{
    xmlNodePtr n = xmlAddChild(parent, xmlNewDocNode(parent->doc, ns, (const xmlChar *)name, NULL));
    if (text != NULL)
        xmlNodeAddContent(n, (const xmlChar *)text);
    return n;
}

/* The detail's content: inline XML (parsed again per message: it is the
 * configuration's) or text. */
static void add_detail(cmi_msg_t *msg, const makefault_mediator_t *f, xmlNodePtr detail, const char *text)
{
    if (f->detail_markup == NULL) {
        xmlNodeAddContent(detail, (const xmlChar *)text);
        return;
    }
    const char *why;
    xmlDocPtr d = cmi_xml_read(msg->arena, f->detail_markup, strlen(f->detail_markup), &why);
    if (d != NULL && xmlDocGetRootElement(d) != NULL)
        xmlAddChild(detail, xmlDocCopyNode(xmlDocGetRootElement(d), detail->doc, 1));
    xmlFreeDoc(d);
}

static const char *code_text(const makefault_mediator_t *f, xmlNodePtr holder, const char *soap_ns, int v12)
{
    const char *local = f->code_local ? f->code_local : v12 ? "Receiver" : "Server";
    if (f->code_ns == NULL || strcmp(f->code_ns, soap_ns) == 0)
        return local; /* prefixed with the envelope's below */
    xmlNewNs(holder, (const xmlChar *)f->code_ns, (const xmlChar *)f->code_prefix);
    return NULL;
}

static void build_soap(cmi_msg_t *msg, const makefault_mediator_t *f, xmlDocPtr doc, const char *reason,
                       const char *detail)
{
    int v12 = f->version == FAULT_SOAP12;
    const char *soap_ns = v12 ? CMI_SOAP12_NS : CMI_SOAP11_NS;
    xmlNodePtr body = cmi_soap_envelope_in(doc, soap_ns);
    xmlNsPtr ns = xmlDocGetRootElement(doc)->ns;
    xmlNodePtr fault = add(body, ns, "Fault", NULL);
    xmlNodePtr code_holder = v12 ? add(add(fault, ns, "Code", NULL), ns, "Value", NULL) : add(fault, NULL, "faultcode", NULL);
    const char *local = code_text(f, code_holder, soap_ns, v12);
    const char *qname = local ? cmi_arena_sprintf(msg->arena, "%s:%s", (const char *)ns->prefix, local)
                              : cmi_arena_sprintf(msg->arena, "%s:%s", f->code_prefix, f->code_local);
    xmlNodeAddContent(code_holder, (const xmlChar *)qname);
    if (v12) {
        xmlNodePtr text = add(add(fault, ns, "Reason", NULL), ns, "Text", reason ? reason : "");
        xmlNodeSetLang(text, (const xmlChar *)"en");
        if (f->node_uri != NULL)
            add(fault, ns, "Node", f->node_uri);
        if (f->role != NULL)
            add(fault, ns, "Role", f->role);
    } else {
        add(fault, NULL, "faultstring", reason ? reason : "");
        if (f->role != NULL)
            add(fault, NULL, "faultactor", f->role);
    }
    if (detail != NULL || f->detail_markup != NULL)
        add_detail(msg, f, add(fault, v12 ? ns : NULL, v12 ? "Detail" : "detail", NULL), detail);
}

static int run_makefault(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const makefault_mediator_t *f = (const makefault_mediator_t *)m;
    const char *reason, *detail;
    if (text_of(msg, &f->reason, &reason) != 0 || text_of(msg, &f->detail, &detail) != 0)
        return CMI_FLOW_ERROR;
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    const char *ct;
    if (f->version == FAULT_POX) {
        /* MI's POX fault: <Exception> holding the detail, else the reason. */
        xmlNodePtr e = xmlNewDocNode(doc, NULL, (const xmlChar *)"Exception", NULL);
        xmlDocSetRootElement(doc, e);
        xmlNodeAddContent(e, (const xmlChar *)(detail ? detail : reason ? reason : ""));
        ct = "application/xml";
    } else {
        build_soap(msg, f, doc, reason, detail);
        ct = f->version == FAULT_SOAP12 ? "application/soap+xml" : "text/xml";
    }
    xmlBufferPtr buf = xmlBufferCreate();
    xmlNodeDump(buf, doc, xmlDocGetRootElement(doc), 0, 0);
    size_t len = (size_t)xmlBufferLength(buf);
    cmi_msg_set_payload(msg, cmi_arena_strndup(msg->arena, (const char *)xmlBufferContent(buf), len), len, ct);
    xmlBufferFree(buf);
    xmlFreeDoc(doc);
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "HTTP_SC", cmi_value_int(500));
    if (f->response)
        msg->out_path = 1;
    return CMI_FLOW_CONTINUE;
}

/* ---- configuration ------------------------------------------------------------ */

static const cmi_attr_rule_t attrs[] = {
    {"version", CMI_ATTR_OK},
    {"response", CMI_ATTR_OK},
    {"serializeResponse", CMI_ATTR_OK},
    {NULL, 0},
};

static const cmi_attr_rule_t text_attrs[] = {
    {"value", CMI_ATTR_OK},
    {"expression", CMI_ATTR_OK},
    {NULL, 0},
};

static int compile_text(cmi_compile_t *cc, xmlNodePtr node, text_source_t *t)
{
    if (cmi_xml_check_attrs(cc, node, text_attrs, NULL))
        return -1;
    const char *expr = cmi_xml_attr(cc, node, "expression");
    t->value = cmi_xml_attr(cc, node, "value");
    if (expr != NULL && t->value != NULL) {
        cmi_compile_error(cc, node, "<makefault>: <%s> takes a value or an expression, not both", node->name);
        return -1;
    }
    if (expr != NULL)
        return (t->expr = cmi_compile_expr(cc, node, "expression", expr)) ? 0 : -1;
    if (t->value == NULL) /* <detail>text</detail> */
        t->value = cmi_compile_trim(cc, cmi_xml_text(cc, node), NULL);
    return 0;
}

static int compile_code(cmi_compile_t *cc, xmlNodePtr node, makefault_mediator_t *f)
{
    if (cmi_xml_check_attrs(cc, node, text_attrs, NULL))
        return -1;
    const char *value = cmi_xml_attr(cc, node, "value");
    if (cmi_xml_attr(cc, node, "expression") != NULL || value == NULL || *value == '\0') {
        cmi_compile_error(cc, node, "<makefault>: <code> takes a value, a qualified name such as soap11Env:Client");
        return -1;
    }
    const char *colon = strchr(value, ':');
    f->code_local = colon ? colon + 1 : value;
    if (colon != NULL) {
        f->code_prefix = cmi_arena_strndup(cc->arena, value, (size_t)(colon - value));
        xmlNsPtr ns = xmlSearchNs(node->doc, node, (const xmlChar *)f->code_prefix);
        if (ns == NULL) {
            cmi_compile_error(cc, node, "<makefault>: <code value=\"%s\">: the prefix '%s' is not declared", value,
                              f->code_prefix);
            return -1;
        }
        f->code_ns = cmi_arena_strdup(cc->arena, (const char *)ns->href);
    }
    return 0;
}

static int compile_part(cmi_compile_t *cc, xmlNodePtr c, makefault_mediator_t *f)
{
    if (cmi_xml_is(c, "code"))
        return compile_code(cc, c, f);
    if (cmi_xml_is(c, "reason"))
        return compile_text(cc, c, &f->reason);
    if (cmi_xml_is(c, "node") || cmi_xml_is(c, "role")) {
        const char *t = cmi_compile_trim(cc, cmi_xml_text(cc, c), NULL);
        if (t != NULL && *t != '\0')
            *(cmi_xml_is(c, "node") ? &f->node_uri : &f->role) = t;
        return 0;
    }
    if (cmi_xml_is(c, "detail")) {
        for (xmlNodePtr k = c->children; k != NULL; k = k->next)
            if (k->type == XML_ELEMENT_NODE) {
                size_t len;
                f->detail_markup = cmi_compile_element_markup(cc, k, &len);
                return 0;
            }
        return compile_text(cc, c, &f->detail);
    }
    cmi_compile_error(cc, c, "<makefault>: unexpected <%s> (code, reason, node, role, detail)", c->name);
    return -1;
}

cmi_mediator_t *cmi_compile_makefault(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs))
        return NULL;
    makefault_mediator_t *f = cmi_mediator_new(cc, node, sizeof(*f), run_makefault);
    const char *version = cmi_xml_attr(cc, node, "version");
    if (version == NULL || strcmp(version, "soap11") == 0)
        f->version = FAULT_SOAP11;
    else if (strcmp(version, "soap12") == 0)
        f->version = FAULT_SOAP12;
    else if (strcmp(version, "pox") == 0)
        f->version = FAULT_POX;
    else {
        cmi_compile_error(cc, node, "<makefault>: version must be soap11, soap12 or pox, not '%s'", version);
        return NULL;
    }
    const char *response = cmi_xml_attr(cc, node, "response");
    f->response = response != NULL && strcmp(response, "true") == 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !cmi_xml_is(c, "description") && compile_part(cc, c, f) != 0)
            return NULL;
    if (f->detail.value != NULL && *f->detail.value == '\0')
        f->detail.value = NULL;
    return &f->base;
}
