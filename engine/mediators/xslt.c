/* <xslt key="entry" [source="xpath"]> with <property name value|expression>
 * (XSLT parameters) and <feature>: applies a stylesheet held by a local
 * entry (inline, or read from its src) to the element source selects,
 * else to the payload's element (the SOAP Body's first child; a JSON
 * payload's MI XML form), and puts the result in its place, as Synapse's
 * XSLTMediator (docs/mediators.md).
 *
 * The stylesheet is compiled once, at load, and shared by every worker
 * (libxslt transforms read a compiled stylesheet without changing it; each
 * transform has a context of its own).  A stylesheet cannot reach outside:
 * xsl:import and xsl:include are refused at load, and document() or
 * writing files is refused by libxslt's security preferences. */
#include "config.h"

#include <libxml/xpath.h>
#include <libxslt/security.h>
#include <libxslt/transform.h>
#include <libxslt/variables.h>
#include <libxslt/xsltInternals.h>
#include <libxslt/xsltutils.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "expr/expr.h"
#include "mediators/enrich.h"
#include "mediators/registry.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

#define XSLT_NS "http://www.w3.org/1999/XSL/Transform"
/* Where Synapse puts a text result (an output method of text). */
#define TEXT_WRAPPER_NS "http://ws.apache.org/commons/ns/payload"

typedef struct {
    const char *name;
    const char *value;      /* literal */
    const cmi_expr_t *expr; /* or an expression */
} xslt_param_t;

typedef struct {
    cmi_mediator_t base;
    xsltStylesheetPtr sheet;
    const char *key;
    const cmi_expr_t *source; /* NULL: the payload's element */
    xslt_param_t *params;
    size_t nparams;
} xslt_mediator_t;

/* ---- running ----------------------------------------------------------------- */

static xsltSecurityPrefsPtr closed_prefs;
static pthread_once_t closed_once = PTHREAD_ONCE_INIT;

/* The preferences every transform runs with: no file, no directory, no
 * network. */
static void make_closed_prefs(void)
{
    closed_prefs = xsltNewSecurityPrefs();
    xsltSetSecurityPrefs(closed_prefs, XSLT_SECPREF_READ_FILE, xsltSecurityForbid);
    xsltSetSecurityPrefs(closed_prefs, XSLT_SECPREF_WRITE_FILE, xsltSecurityForbid);
    xsltSetSecurityPrefs(closed_prefs, XSLT_SECPREF_CREATE_DIRECTORY, xsltSecurityForbid);
    xsltSetSecurityPrefs(closed_prefs, XSLT_SECPREF_READ_NETWORK, xsltSecurityForbid);
    xsltSetSecurityPrefs(closed_prefs, XSLT_SECPREF_WRITE_NETWORK, xsltSecurityForbid);
}

typedef struct {
    char message[256];
} xslt_errors_t;

/* The first message explains the rest: e gets fmt's unless it has one. */
static void keep_first(xslt_errors_t *e, const char *fmt, va_list ap)
{
    if (e->message[0] != '\0')
        return;
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    size_t n = strlen(e->message);
    while (n > 0 && (e->message[n - 1] == '\n' || e->message[n - 1] == ' '))
        e->message[--n] = '\0';
}

/* libxslt's error callback for a transform. */
static void on_xslt_error(void *data, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    keep_first(data, fmt, ap);
    va_end(ap);
}

/* libxslt's generic error handler is one for the process, not per thread:
 * it is set once to write into the calling thread's own buffer, so that a
 * reload compiling a stylesheet while workers transform keeps its errors
 * (and theirs) apart. */
static _Thread_local xslt_errors_t thread_errs;

static void on_generic_error(void *unused, const char *fmt, ...)
{
    (void)unused;
    va_list ap;
    va_start(ap, fmt);
    keep_first(&thread_errs, fmt, ap);
    va_end(ap);
}

static void set_generic_handler(void)
{
    xsltSetGenericErrorFunc(NULL, on_generic_error);
}

/* The element to transform in doc (the payload as XPath sees it). */
static xmlNodePtr source_node(const xslt_mediator_t *x, cmi_msg_t *msg, xmlDocPtr doc, int *failed)
{
    *failed = 0;
    if (x->source == NULL)
        return cmi_soap_body_child(xmlDocGetRootElement(doc));
    xmlXPathObjectPtr r = cmi_expr_xpath_select(x->source, msg, doc);
    if (r == NULL) {
        *failed = 1;
        return NULL;
    }
    xmlNodePtr node = NULL;
    if (r->type == XPATH_NODESET && r->nodesetval != NULL)
        for (int i = 0; i < r->nodesetval->nodeNr && node == NULL; i++)
            if (r->nodesetval->nodeTab[i]->type == XML_ELEMENT_NODE)
                node = r->nodesetval->nodeTab[i];
    xmlXPathFreeObject(r);
    return node;
}

/* The transform's result as one element of res: its root, or a text
 * result wrapped as Synapse wraps it; NULL for an empty result. */
static xmlNodePtr result_element(xmlDocPtr res)
{
    xmlNodePtr root = xmlDocGetRootElement(res);
    if (root != NULL)
        return root;
    xmlChar *text = xmlNodeGetContent((xmlNodePtr)res);
    if (text == NULL || *text == '\0') {
        xmlFree(text);
        return NULL;
    }
    for (xmlNodePtr c = res->children, next; c != NULL; c = next) {
        next = c->next;
        xmlUnlinkNode(c);
        xmlFreeNode(c);
    }
    xmlNodePtr wrap = xmlNewDocNode(res, NULL, (const xmlChar *)"text", NULL);
    xmlSetNs(wrap, xmlNewNs(wrap, (const xmlChar *)TEXT_WRAPPER_NS, NULL));
    xmlNodeAddContent(wrap, text);
    xmlFree(text);
    xmlDocSetRootElement(res, wrap);
    return wrap;
}

/* Applies the stylesheet to a copy of node: *out gets the result document
 * (the caller frees it).  Returns 0 or CMI_FLOW_ERROR with the error slot
 * set. */
static int transform(const xslt_mediator_t *x, cmi_msg_t *msg, xmlNodePtr node, const char **values, xmlDocPtr *out)
{
    pthread_once(&closed_once, make_closed_prefs);
    xmlDocPtr in = xmlNewDoc((const xmlChar *)"1.0");
    cmi_xml_clone(node, in, NULL);
    xslt_errors_t errs = {""};
    xsltTransformContextPtr ctxt = xsltNewTransformContext(x->sheet, in);
    xmlDocPtr res = NULL;
    if (ctxt != NULL) {
        xsltSetCtxtSecurityPrefs(closed_prefs, ctxt);
        xsltSetTransformErrorFunc(ctxt, &errs, on_xslt_error);
        for (size_t i = 0; i < x->nparams; i++)
            xsltQuoteOneUserParam(ctxt, (const xmlChar *)x->params[i].name, (const xmlChar *)values[i]);
        res = xsltApplyStylesheetUser(x->sheet, in, NULL, NULL, NULL, ctxt);
        if (ctxt->state != XSLT_STATE_OK && errs.message[0] == '\0')
            snprintf(errs.message, sizeof(errs.message), "the transformation stopped");
        xsltFreeTransformContext(ctxt);
    }
    if (res == NULL && errs.message[0] == '\0')
        snprintf(errs.message, sizeof(errs.message), "the transformation failed");
    xmlFreeDoc(in);
    if (errs.message[0] != '\0') {
        xmlFreeDoc(res);
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "xslt %s: %s", x->key, errs.message);
    }
    *out = res;
    return 0;
}

/* The edited document back as the payload: a SOAP envelope stays one, a
 * plain document is its element; a JSON payload becomes the XML result (its
 * messageType stays JSON, so it is written as JSON unless the flow
 * changes it, as in MI). */
static void store(cmi_msg_t *msg, xmlDocPtr doc, int was_soap, int was_json)
{
    xmlNodePtr env = xmlDocGetRootElement(doc);
    xmlNodePtr node = was_soap ? env : cmi_soap_body_child(env);
    size_t len = 0;
    const char *markup = node ? cmi_enrich_markup(msg, node, &len) : "";
    const char *ctype = msg->payload.content_type;
    if (was_json) {
        if (cmi_msg_prop_get(msg, CMI_SCOPE_AXIS2, "messageType") == NULL)
            cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "messageType", cmi_value_cstring(ctype ? ctype : "application/json"));
        ctype = "application/xml";
    }
    cmi_msg_set_payload(msg, markup, len, ctype ? ctype : "application/xml");
}

static int run_xslt(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const xslt_mediator_t *x = (const xslt_mediator_t *)m;
    const char **values = cmi_arena_calloc(msg->arena, x->nparams + 1, sizeof(*values));
    for (size_t i = 0; i < x->nparams; i++) {
        size_t len;
        values[i] = x->params[i].value;
        if (x->params[i].expr != NULL && cmi_expr_eval_text(x->params[i].expr, msg, &values[i], &len) != 0)
            return CMI_FLOW_ERROR;
    }
    int was_json = msg->payload.kind == CMI_PAYLOAD_JSON;
    const char *err;
    xmlDocPtr cur = msg->payload.kind == CMI_PAYLOAD_XML ? cmi_msg_payload_xml(msg, &err) : NULL;
    int was_soap = cur != NULL && cmi_soap_is_envelope(xmlDocGetRootElement(cur));
    xmlDocPtr doc = cmi_expr_payload_doc(x->source, msg);
    if (doc == NULL)
        return CMI_FLOW_ERROR;
    int failed;
    xmlNodePtr node = source_node(x, msg, doc, &failed);
    xmlDocPtr res = NULL;
    int rc = 0;
    if (failed)
        rc = CMI_FLOW_ERROR;
    else if (node == NULL)
        rc = cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "xslt %s: %s selects no element", x->key,
                               x->source ? cmi_expr_text(x->source) : "the payload (an empty body)");
    else
        rc = transform(x, msg, node, values, &res);
    if (rc == 0) {
        xmlNodePtr result = result_element(res);
        /* Cloned where the element was, its namespaces declared there. */
        xmlNodePtr copy = result ? cmi_xml_clone(result, doc, node->parent) : NULL;
        if (copy != NULL)
            xmlReplaceNode(node, copy);
        else
            xmlUnlinkNode(node); /* an empty result: the element goes */
        xmlFreeNode(node);
        store(msg, doc, was_soap, was_json);
    }
    xmlFreeDoc(res);
    xmlFreeDoc(doc);
    return rc;
}

/* ---- compiling ------------------------------------------------------------------ */

static void free_sheet(void *sheet)
{
    xsltFreeStylesheet(sheet);
}

/* Whether the stylesheet reaches for other documents at load. */
static xmlNodePtr find_import(xmlNodePtr n)
{
    for (xmlNodePtr c = n->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (c->ns != NULL && strcmp((const char *)c->ns->href, XSLT_NS) == 0 &&
            (strcmp((const char *)c->name, "import") == 0 || strcmp((const char *)c->name, "include") == 0))
            return c;
        xmlNodePtr deeper = find_import(c);
        if (deeper != NULL)
            return deeper;
    }
    return NULL;
}

/* The local entry's stylesheet, compiled; NULL after reporting. */
static xsltStylesheetPtr compile_sheet(cmi_compile_t *cc, xmlNodePtr node, const char *key)
{
    const cmi_local_entry_t *le = cmi_htab_gets(&cc->config->local_entries, key);
    if (le == NULL || le->markup == NULL) {
        cmi_compile_error(cc, node, "<xslt key=\"%s\">: %s", key,
                          le ? "the local entry holds no XML" : "no local entry of that key (registry keys such as "
                                                                "conf:/... are not supported by cmi yet)");
        return NULL;
    }
    xmlDocPtr doc = xmlReadMemory(le->markup, (int)strlen(le->markup), NULL, NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNodePtr imp = doc ? find_import(xmlDocGetRootElement(doc)) : NULL;
    if (imp != NULL) {
        cmi_compile_error(cc, node, "<xslt key=\"%s\">: xsl:%s is not supported by cmi yet (put the stylesheet in "
                          "one local entry)", key, imp->name);
        xmlFreeDoc(doc);
        return NULL;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, set_generic_handler);
    thread_errs.message[0] = '\0';
    xsltStylesheetPtr sheet = doc ? xsltParseStylesheetDoc(doc) : NULL;
    xslt_errors_t errs = thread_errs;
    if (sheet == NULL || sheet->errors > 0) {
        cmi_compile_error(cc, node, "<xslt key=\"%s\">: not a stylesheet libxslt compiles: %s", key,
                          errs.message[0] ? errs.message : "no XSLT found");
        if (sheet != NULL)
            xsltFreeStylesheet(sheet); /* it owns doc */
        else
            xmlFreeDoc(doc);
        return NULL;
    }
    cmi_arena_cleanup_add(cc->arena, free_sheet, sheet);
    return sheet;
}

static const cmi_attr_rule_t attrs[] = {
    {"key", CMI_ATTR_OK},
    {"source", CMI_ATTR_OK},
    {NULL, 0},
};

static int compile_children(cmi_compile_t *cc, xmlNodePtr node, xslt_mediator_t *x)
{
    size_t n = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        n += c->type == XML_ELEMENT_NODE;
    x->params = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*x->params));
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || cmi_xml_is(c, "description"))
            continue;
        if (cmi_xml_is(c, "feature")) {
            cmi_compile_warn(cc, c, "<xslt><feature>: Xalan's features do not apply to libxslt (ignored)");
            continue;
        }
        if (!cmi_xml_is(c, "property")) {
            cmi_compile_error(cc, c, "<xslt><%s>: %s", c->name, cmi_xml_is(c, "resource")
                              ? "not supported by cmi yet (put the stylesheet in one local entry)"
                              : "unexpected element");
            return -1;
        }
        static const cmi_attr_rule_t pattrs[] = {{"name", CMI_ATTR_OK}, {"value", CMI_ATTR_OK},
                                                 {"expression", CMI_ATTR_OK}, {NULL, 0}};
        if (cmi_xml_check_attrs(cc, c, pattrs, NULL))
            return -1;
        xslt_param_t *p = &x->params[x->nparams];
        p->name = cmi_xml_attr(cc, c, "name");
        p->value = cmi_xml_attr(cc, c, "value");
        const char *expr = cmi_xml_attr(cc, c, "expression");
        if (p->name == NULL || *p->name == '\0' || (p->value == NULL) == (expr == NULL)) {
            cmi_compile_error(cc, c, "<xslt><property>: give a name and one of value or expression");
            return -1;
        }
        if (expr != NULL && (p->expr = cmi_compile_expr(cc, c, "expression", expr)) == NULL)
            return -1;
        x->nparams++;
    }
    return 0;
}

cmi_mediator_t *cmi_compile_xslt(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs))
        return NULL;
    xslt_mediator_t *x = cmi_mediator_new(cc, node, sizeof(*x), run_xslt);
    x->key = cmi_xml_attr(cc, node, "key");
    if (x->key == NULL || *x->key == '\0') {
        cmi_compile_error(cc, node, "<xslt>: the key attribute is required");
        return NULL;
    }
    if (x->key[0] == '{') {
        cmi_compile_error(cc, node, "<xslt key=\"%s\">: a computed key is not supported by cmi yet", x->key);
        return NULL;
    }
    const char *source = cmi_xml_attr(cc, node, "source");
    if (source != NULL) {
        x->source = cmi_compile_expr(cc, node, "source", source);
        if (x->source == NULL)
            return NULL;
        if (!cmi_expr_is_xpath(x->source)) {
            cmi_compile_error(cc, node, "<xslt source=\"%s\">: the source is an XPath", source);
            return NULL;
        }
    }
    if (compile_children(cc, node, x) != 0)
        return NULL;
    x->sheet = compile_sheet(cc, node, x->key);
    return x->sheet != NULL ? &x->base : NULL;
}
