/* Legacy expressions: XPath 1.0 (libxml2) with Synapse's extension
 * functions and variables, and json-eval().
 *
 * As in MI, XPath sees the payload inside a SOAP envelope: "//order/id",
 * "$body/order/id" and "/soapenv:Envelope/soapenv:Body/order" all reach the
 * same element.  A JSON payload is seen through MI's JSON-to-XML mapping
 * (<jsonObject> at the top, one element per key, an array as repeated
 * elements), so legacy XPaths written for JSON APIs keep working.
 *
 * Synapse's additions:
 *   get-property('NAME'), get-property('SCOPE', 'NAME')   scopes: default,
 *       synapse, axis2, transport, operation, env, func
 *   base64Encode(s), base64Decode(s), url-encode(s)
 *   wso2:vault-lookup('alias'[, 'TYPE', 'false'])   MI's secure vault: cmi's
 *       secret store (core/secrets.h)
 *   $ctx:NAME  $axis2:NAME  $trp:NAME  $url:NAME  $env:NAME  $func:NAME
 *   $body  $header  $env */
#include "config.h"

#include <libxml/xpathInternals.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/secrets.h"
#include "core/str.h"
#include "expr/ast.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

#define NS_CTX "urn:cmi:xpath:ctx"
#define NS_AXIS2 "urn:cmi:xpath:axis2"
#define NS_TRP "urn:cmi:xpath:trp"
#define NS_URL "urn:cmi:xpath:url"
#define NS_ENV "urn:cmi:xpath:env"
#define NS_FUNC "urn:cmi:xpath:func"
#define NS_WSO2 "urn:cmi:xpath:wso2"

/* An XPath that runs for ever is cut off (libxml2 counts operations). */
#define XPATH_OP_LIMIT 50000000ul

typedef struct {
    ex_ctx_t *c;     /* NULL during the load-time check */
    char error[256]; /* the first error libxml2 reported */
} xpath_run_t;

/* ---- the document XPath sees --------------------------------------------- */

/* The payload under a SOAP envelope in doc (MI's XPath sees one).  Returns
 * 0, or -1 with the message's error set. */
static int fill_doc(ex_ctx_t *c, xmlDocPtr doc)
{
    cmi_msg_t *msg = c->msg;
    cmi_payload_t *p = &msg->payload;
    const char *err = NULL;
    if (p->kind == CMI_PAYLOAD_XML && p->bytes_valid && p->len == 0) {
        cmi_soap_envelope(doc); /* no body (a GET with an XML type): MI's empty envelope */
        return 0;
    }
    if (p->kind == CMI_PAYLOAD_XML) {
        xmlDocPtr src = cmi_msg_payload_xml(msg, &err);
        if (src == NULL) {
            cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "%s: %s", c->expr->text, err);
            return -1;
        }
        xmlNodePtr root = xmlDocGetRootElement(src);
        if (cmi_soap_is_envelope(root))
            xmlDocSetRootElement(doc, xmlDocCopyNode(root, doc, 1));
        else if (root != NULL)
            xmlAddChild(cmi_soap_envelope(doc), xmlDocCopyNode(root, doc, 1));
        return 0;
    }
    xmlNodePtr body = cmi_soap_envelope(doc);
    if (p->kind != CMI_PAYLOAD_JSON)
        return 0;
    json_t *j = cmi_msg_payload_json(msg, &err);
    size_t len = 0;
    if (j == NULL)
        cmi_msg_payload_bytes(msg, &len);
    if (j == NULL && len > 0) {
        cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "%s: %s", c->expr->text, err);
        return -1;
    }
    if (j != NULL && (p->xpath_too_large || cmi_json_to_xml_document(body, j, cmi_msg_view_limit()) != 0)) {
        p->xpath_too_large = 1; /* not built again for the next expression */
        cmi_msg_set_error(msg, CMI_ERR_PAYLOAD_TOO_LARGE, NULL, "%s: the JSON payload as XML would take more than %zu bytes",
                          c->expr->text, cmi_msg_view_limit());
        return -1;
    }
    return 0;
}

static xmlDocPtr xpath_doc(ex_ctx_t *c, int *failed)
{
    cmi_payload_t *p = &c->msg->payload;
    *failed = 0;
    if (p->xpath_doc != NULL)
        return p->xpath_doc;
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    if (fill_doc(c, doc) != 0) {
        xmlFreeDoc(doc); /* a tree cut short at the limit goes at once */
        *failed = 1;
        return NULL;
    }
    p->xpath_doc = cmi_msg_own_xml(c->msg, doc);
    return doc;
}

/* ---- extension functions ----------------------------------------------------- */

static xpath_run_t *run_of(xmlXPathParserContextPtr ctxt)
{
    return ctxt->context->userData;
}

/* get-property('KEY') without a property KEY reads the local entry KEY, as
 * Synapse falls back to its registry: the entry, or NULL. */
static const cmi_local_entry_t *local_entry(cmi_msg_t *msg, const char *key)
{
    return msg->local_entries ? cmi_htab_gets(msg->local_entries, key) : NULL;
}

/* A property as get-property() and $ctx: see it: text, "" when absent. */
static const char *property_text(ex_ctx_t *c, const char *scope, const char *name)
{
    cmi_msg_t *msg = c->msg;
    if (strcasecmp(scope, "env") == 0 || strcasecmp(scope, "system") == 0) {
        const char *v = getenv(name);
        return v ? v : "";
    }
    int s = cmi_scope_parse(scope);
    if (s < 0)
        return NULL;
    const char *v = cmi_msg_prop_text(msg, (cmi_scope_t)s, name);
    const cmi_local_entry_t *le = v == NULL && s == CMI_SCOPE_DEFAULT && strcasecmp(scope, "default") == 0
                                      ? local_entry(msg, name)
                                      : NULL;
    if (le != NULL)
        v = le->text ? le->text : le->markup;
    return v ? v : "";
}

/* A value as XPath sees it: one that holds XML (a property of type OM, a
 * template parameter bound to an element) is the element itself, so that a
 * path can go on from it ($func:order/id) and its string value is its text,
 * as Synapse's OMElement; anything else its text. */
static xmlXPathObjectPtr value_object(ex_ctx_t *c, const cmi_value_t *v)
{
    if (v->type == CMI_VAL_XML) {
        xmlDocPtr doc = xmlReadMemory(v->u.s.ptr, (int)v->u.s.len, NULL, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (doc != NULL && xmlDocGetRootElement(doc) != NULL)
            return xmlXPathNewNodeSet(xmlDocGetRootElement(cmi_msg_own_xml(c->msg, doc)));
        xmlFreeDoc(doc);
    }
    size_t len;
    return xmlXPathNewCString(ex_text(c, v, &len));
}

/* $func:NAME and get-property('func', NAME). */
static xmlXPathObjectPtr func_param_object(xpath_run_t *run, const char *name)
{
    cmi_value_t v;
    if (ex_func_param(run->c, name, &v) != 0) {
        /* The reason the inner evaluation gave, not a vaguer one. */
        const char *why = run->c->msg->error_detail ? run->c->msg->error_detail : run->c->msg->error_message;
        snprintf(run->error, sizeof(run->error), "template parameter '%s': %s", name, why ? why : "failed");
        return xmlXPathNewCString("");
    }
    return value_object(run->c, &v);
}

/* A property of the default or axis2 scope that holds XML, as an element
 * (value_object); with registry, for the default scope, a local entry of
 * XML when there is no property of that name.  NULL for any other. */
static xmlXPathObjectPtr xml_property_object(ex_ctx_t *c, int scope, const char *name, int registry)
{
    if (scope != CMI_SCOPE_DEFAULT && scope != CMI_SCOPE_AXIS2)
        return NULL;
    const cmi_value_t *v = cmi_msg_prop_get(c->msg, (cmi_scope_t)scope, name);
    if (v != NULL)
        return v->type == CMI_VAL_XML ? value_object(c, v) : NULL;
    const cmi_local_entry_t *le = registry && scope == CMI_SCOPE_DEFAULT ? local_entry(c->msg, name) : NULL;
    if (le == NULL || le->markup == NULL)
        return NULL;
    cmi_value_t xml = cmi_value_cstring(le->markup);
    xml.type = CMI_VAL_XML;
    return value_object(c, &xml);
}

static void fn_get_property(xmlXPathParserContextPtr ctxt, int nargs)
{
    if (nargs < 1 || nargs > 2) {
        xmlXPathSetArityError(ctxt);
        return;
    }
    xmlChar *second = nargs == 2 ? xmlXPathPopString(ctxt) : NULL;
    xmlChar *first = xmlXPathPopString(ctxt);
    xpath_run_t *run = run_of(ctxt);
    const char *scope = nargs == 2 ? (const char *)first : "default";
    const char *name = nargs == 2 ? (const char *)second : (const char *)first;
    if (nargs == 2 && strcmp((const char *)first, "SYSTEM_DATE") == 0) {
        scope = "default"; /* get-property('SYSTEM_DATE', format): the format is not applied */
        name = "SYSTEM_DATE";
    }
    xmlXPathObjectPtr obj = NULL;
    if (run->c == NULL) /* the load-time trial: it may be an element, a path may go on from it */
        obj = xmlXPathNewNodeSet(NULL);
    else if (strcmp(scope, "func") == 0)
        obj = func_param_object(run, name);
    else if (cmi_scope_parse(scope) >= 0)
        obj = xml_property_object(run->c, cmi_scope_parse(scope), name, strcasecmp(scope, "default") == 0);
    if (obj == NULL) {
        const char *value = property_text(run->c, scope, name);
        if (value == NULL) {
            snprintf(run->error, sizeof(run->error), "get-property(): unknown scope '%s'", scope);
            value = "";
        }
        obj = xmlXPathNewCString(value);
    }
    valuePush(ctxt, obj);
    xmlFree(first);
    xmlFree(second);
}

/* The text a helper wrote in a scratch arena, as an XPath string. */
static void return_text(xmlXPathParserContextPtr ctxt, const char *s, size_t len)
{
    xmlXPathReturnString(ctxt, xmlStrndup((const xmlChar *)s, (int)len));
}

static void fn_base64_encode(xmlXPathParserContextPtr ctxt, int nargs)
{
    if (nargs < 1 || nargs > 2) {
        xmlXPathSetArityError(ctxt);
        return;
    }
    if (nargs == 2)
        xmlFree(xmlXPathPopString(ctxt)); /* charset: strings are UTF-8 */
    xmlChar *s = xmlXPathPopString(ctxt);
    cmi_arena_t *a = cmi_arena_create(0);
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, a, 64);
    cmi_base64_encode(&b, s, (size_t)xmlStrlen(s));
    return_text(ctxt, b.data, b.len);
    cmi_arena_destroy(a);
    xmlFree(s);
}

/* Input that is not base64 gives "" (MI's commons-codec decoder skips what
 * is not base64 and never fails; ${base64decode()} fails instead). */
static void fn_base64_decode(xmlXPathParserContextPtr ctxt, int nargs)
{
    if (nargs < 1 || nargs > 2) {
        xmlXPathSetArityError(ctxt);
        return;
    }
    if (nargs == 2)
        xmlFree(xmlXPathPopString(ctxt));
    xmlChar *s = xmlXPathPopString(ctxt);
    cmi_arena_t *a = cmi_arena_create(0);
    char *bytes;
    const char *text = cmi_base64_decode(a, (const char *)s, (size_t)xmlStrlen(s), &bytes, NULL) == 0 ? bytes : "";
    return_text(ctxt, text, strlen(text)); /* an XPath string ends at a NUL */
    cmi_arena_destroy(a);
    xmlFree(s);
}

/* As MI's (commons-httpclient's URIUtil.encodePathQuery()): the text as a
 * path, and after its first '?' as a query. */
static void fn_url_encode(xmlXPathParserContextPtr ctxt, int nargs)
{
    if (nargs != 1) {
        xmlXPathSetArityError(ctxt);
        return;
    }
    xmlChar *s = xmlXPathPopString(ctxt);
    size_t len = (size_t)xmlStrlen(s);
    const char *q = memchr(s, '?', len);
    size_t path = q ? (size_t)(q - (const char *)s) : len;
    cmi_arena_t *a = cmi_arena_create(0);
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, a, len * 3 + 1);
    cmi_url_encode(&b, (const char *)s, path, CMI_URL_SAFE_RFC2396_PATH);
    if (q != NULL) {
        cmi_strbuf_putc(&b, '?');
        cmi_url_encode(&b, q + 1, len - path - 1, CMI_URL_SAFE_RFC2396_QUERY);
    }
    return_text(ctxt, b.data, b.len);
    cmi_arena_destroy(a);
    xmlFree(s);
}

/* MI's secure vault lookup, from cmi's secret store.  An unknown alias
 * fails the evaluation (MI gives back the alias itself, which then goes on
 * as a password). */
static void fn_vault_lookup(xmlXPathParserContextPtr ctxt, int nargs)
{
    if (nargs != 1 && nargs != 3) {
        xmlXPathSetArityError(ctxt);
        return;
    }
    xmlChar *args[3] = {NULL, NULL, NULL};
    for (int i = nargs - 1; i >= 0; i--)
        args[i] = xmlXPathPopString(ctxt);
    xpath_run_t *run = ctxt->context->userData;
    const char *value = "";
    char err[256];
    if (run->c != NULL && cmi_secret_lookup(run->c->msg->arena, (const char *)args[0], (const char *)args[1],
                                            (const char *)args[2], &value, err, sizeof(err)) != 0) {
        snprintf(run->error, sizeof(run->error), "wso2:vault-lookup(): %.200s", err);
        value = "";
    }
    valuePush(ctxt, xmlXPathNewCString(value));
    for (int i = 0; i < 3; i++)
        xmlFree(args[i]);
}

/* $ctx:NAME and friends. */
static xmlXPathObjectPtr lookup_variable(void *data, const xmlChar *name, const xmlChar *ns_uri)
{
    xpath_run_t *run = data;
    const char *n = (const char *)name, *uri = (const char *)ns_uri;
    if (uri == NULL) {
        if (strcmp(n, "body") == 0 || strcmp(n, "header") == 0 || strcmp(n, "env") == 0) {
            if (run->c == NULL)
                return xmlXPathNewNodeSet(NULL);
            int failed;
            xmlDocPtr doc = xpath_doc(run->c, &failed);
            xmlNodePtr env = doc ? xmlDocGetRootElement(doc) : NULL;
            if (n[0] == 'e') /* $env: the SOAP envelope */
                return xmlXPathNewNodeSet(env);
            for (xmlNodePtr k = env ? env->children : NULL; k != NULL; k = k->next)
                if (k->type == XML_ELEMENT_NODE && strcasecmp((const char *)k->name, n) == 0)
                    return xmlXPathNewNodeSet(k);
            return xmlXPathNewNodeSet(NULL);
        }
        return NULL; /* unknown: libxml2 reports an undefined variable */
    }
    if (run->c == NULL) /* the load-time trial: $func: and $ctx: may hold an element, a path may go on from it */
        return xmlXPathNewNodeSet(NULL);
    if (strcmp(uri, NS_FUNC) == 0)
        return func_param_object(run, n);
    xmlXPathObjectPtr obj = NULL;
    if (strcmp(uri, NS_CTX) == 0)
        obj = xml_property_object(run->c, CMI_SCOPE_DEFAULT, n, 0);
    else if (strcmp(uri, NS_AXIS2) == 0)
        obj = xml_property_object(run->c, CMI_SCOPE_AXIS2, n, 0);
    if (obj != NULL)
        return obj;
    cmi_msg_t *msg = run->c->msg;
    const char *v = NULL;
    if (strcmp(uri, NS_CTX) == 0)
        v = cmi_msg_prop_text(msg, CMI_SCOPE_DEFAULT, n);
    else if (strcmp(uri, NS_AXIS2) == 0)
        v = cmi_msg_prop_text(msg, CMI_SCOPE_AXIS2, n);
    else if (strcmp(uri, NS_TRP) == 0)
        v = cmi_msg_header_get(msg, n, NULL);
    else if (strcmp(uri, NS_URL) == 0) {
        const cmi_value_t *q = cmi_kvlist_get(&msg->query_params, n);
        v = q ? q->u.s.ptr : NULL;
    } else if (strcmp(uri, NS_ENV) == 0)
        v = getenv(n);
    else
        return NULL;
    return xmlXPathNewCString(v ? v : "");
}

/* libxml2 also reports some XPath errors through its generic (printf
 * style) channel; they are caught per thread while cmi evaluates. */
static void on_generic_error(void *data, const char *fmt, ...)
{
    xpath_run_t *run = data;
    if (run->error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->error, sizeof(run->error), fmt, ap);
    va_end(ap);
    size_t n = strlen(run->error);
    while (n > 0 && (run->error[n - 1] == '\n' || run->error[n - 1] == ' '))
        run->error[--n] = '\0';
}

static void on_xpath_error(void *data, xmlErrorPtr e)
{
    xpath_run_t *run = data;
    if (run->error[0] != '\0' || e == NULL)
        return;
    snprintf(run->error, sizeof(run->error), "%s", e->message ? e->message : "XPath error");
    size_t n = strlen(run->error);
    while (n > 0 && (run->error[n - 1] == '\n' || run->error[n - 1] == ' '))
        run->error[--n] = '\0';
}

/* XPath 2.0's fn: names of the XPath 1.0 functions, which MI's XPaths use
 * (fn:concat(...)): bound to libxml2's own implementations. */
#define NS_FN "http://www.w3.org/2005/xpath-functions"

static void fn_case(xmlXPathParserContextPtr ctxt, int nargs, int upper)
{
    if (nargs != 1) {
        xmlXPathSetArityError(ctxt);
        return;
    }
    xmlChar *s = xmlXPathPopString(ctxt);
    for (xmlChar *p = s; p && *p; p++) /* ASCII letters; other characters stay as they are */
        if (upper ? (*p >= 'a' && *p <= 'z') : (*p >= 'A' && *p <= 'Z'))
            *p ^= 0x20;
    xmlXPathReturnString(ctxt, s);
}

static void fn_upper_case(xmlXPathParserContextPtr ctxt, int nargs)
{
    fn_case(ctxt, nargs, 1);
}

static void fn_lower_case(xmlXPathParserContextPtr ctxt, int nargs)
{
    fn_case(ctxt, nargs, 0);
}

static void register_fn_namespace(xmlXPathContextPtr ctx)
{
    static const struct {
        const char *name;
        xmlXPathFunction f;
    } fns[] = {
        {"concat", xmlXPathConcatFunction}, {"contains", xmlXPathContainsFunction},
        {"starts-with", xmlXPathStartsWithFunction}, {"substring", xmlXPathSubstringFunction},
        {"substring-before", xmlXPathSubstringBeforeFunction}, {"substring-after", xmlXPathSubstringAfterFunction},
        {"string-length", xmlXPathStringLengthFunction}, {"normalize-space", xmlXPathNormalizeFunction},
        {"translate", xmlXPathTranslateFunction}, {"count", xmlXPathCountFunction}, {"sum", xmlXPathSumFunction},
        {"round", xmlXPathRoundFunction}, {"floor", xmlXPathFloorFunction}, {"ceiling", xmlXPathCeilingFunction},
        {"not", xmlXPathNotFunction}, {"true", xmlXPathTrueFunction}, {"false", xmlXPathFalseFunction},
        {"boolean", xmlXPathBooleanFunction}, {"number", xmlXPathNumberFunction}, {"string", xmlXPathStringFunction},
        {"local-name", xmlXPathLocalNameFunction},
        {"upper-case", fn_upper_case}, {"lower-case", fn_lower_case},
    };
    xmlXPathRegisterNs(ctx, (const xmlChar *)"fn", (const xmlChar *)NS_FN);
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
        xmlXPathRegisterFuncNS(ctx, (const xmlChar *)fns[i].name, (const xmlChar *)NS_FN, fns[i].f);
}

static xmlXPathContextPtr new_context(xmlDocPtr doc, const ex_node_t *n, xpath_run_t *run)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    ctx->userData = run;
    ctx->error = on_xpath_error;
    ctx->opLimit = XPATH_OP_LIMIT;
    xmlXPathRegisterNs(ctx, (const xmlChar *)"ctx", (const xmlChar *)NS_CTX);
    xmlXPathRegisterNs(ctx, (const xmlChar *)"axis2", (const xmlChar *)NS_AXIS2);
    xmlXPathRegisterNs(ctx, (const xmlChar *)"trp", (const xmlChar *)NS_TRP);
    xmlXPathRegisterNs(ctx, (const xmlChar *)"url", (const xmlChar *)NS_URL);
    xmlXPathRegisterNs(ctx, (const xmlChar *)"env", (const xmlChar *)NS_ENV);
    xmlXPathRegisterNs(ctx, (const xmlChar *)"func", (const xmlChar *)NS_FUNC);
    xmlXPathRegisterNs(ctx, (const xmlChar *)"soapenv", (const xmlChar *)CMI_SOAP11_NS);
    register_fn_namespace(ctx);
    for (size_t i = 0; i < n->u.xpath.nns; i++)
        xmlXPathRegisterNs(ctx, (const xmlChar *)n->u.xpath.ns[i].prefix, (const xmlChar *)n->u.xpath.ns[i].href);
    xmlXPathRegisterFunc(ctx, (const xmlChar *)"get-property", fn_get_property);
    xmlXPathRegisterFunc(ctx, (const xmlChar *)"base64Encode", fn_base64_encode);
    xmlXPathRegisterFunc(ctx, (const xmlChar *)"base64Decode", fn_base64_decode);
    xmlXPathRegisterFunc(ctx, (const xmlChar *)"url-encode", fn_url_encode);
    xmlXPathRegisterNs(ctx, (const xmlChar *)"wso2", (const xmlChar *)NS_WSO2);
    xmlXPathRegisterFuncNS(ctx, (const xmlChar *)"vault-lookup", (const xmlChar *)NS_WSO2, fn_vault_lookup);
    xmlXPathRegisterVariableLookup(ctx, lookup_variable, run);
    return ctx;
}

/* ---- compiling --------------------------------------------------------------- */

static void comp_free(void *p)
{
    xmlXPathFreeCompExpr(p);
}

static void collect_namespaces(cmi_arena_t *arena, xmlNodePtr scope, ex_node_t *n)
{
    if (scope == NULL || scope->doc == NULL)
        return;
    xmlNsPtr *list = xmlGetNsList(scope->doc, scope);
    if (list == NULL)
        return;
    size_t count = 0;
    while (list[count] != NULL)
        count++;
    n->u.xpath.ns = cmi_arena_calloc(arena, count, sizeof(ex_ns_t));
    for (size_t i = 0; i < count; i++) {
        if (list[i]->prefix == NULL) /* XPath 1.0 has no default namespace */
            continue;
        ex_ns_t *ns = &n->u.xpath.ns[n->u.xpath.nns++];
        ns->prefix = cmi_arena_strdup(arena, (const char *)list[i]->prefix);
        ns->href = cmi_arena_strdup(arena, (const char *)list[i]->href);
    }
    xmlFree(list);
}

int ex_xpath_compile(cmi_arena_t *arena, const char *text, xmlNodePtr ns_scope, ex_node_t **out,
                     cmi_expr_error_t *err)
{
    xpath_run_t run = {0};
    xmlSetStructuredErrorFunc(&run, on_xpath_error);
    xmlXPathCompExprPtr comp = xmlXPathCompile((const xmlChar *)text);
    xmlSetStructuredErrorFunc(NULL, NULL);
    if (comp == NULL) {
        err->message = cmi_arena_sprintf(arena, "invalid XPath: %s", run.error[0] ? run.error : "syntax error");
        err->offset = 0;
        return -1;
    }
    cmi_arena_cleanup_add(arena, comp_free, comp);
    ex_node_t *n = cmi_arena_calloc(arena, 1, sizeof(*n));
    n->kind = EX_XPATH;
    n->u.xpath.comp = comp;
    collect_namespaces(arena, ns_scope, n);
    /* A trial run on an empty document finds what compiling does not:
     * unknown functions, undeclared prefixes, unknown variables. */
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    cmi_soap_envelope(doc);
    xmlXPathContextPtr ctx = new_context(doc, n, &run);
    xmlSetGenericErrorFunc(&run, on_generic_error);
    xmlXPathObjectPtr res = xmlXPathCompiledEval(comp, ctx);
    xmlSetGenericErrorFunc(NULL, NULL);
    xmlXPathFreeObject(res);
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    if (res == NULL) {
        err->message = cmi_arena_sprintf(arena, "invalid XPath: %s", run.error[0] ? run.error : "cannot be evaluated");
        err->offset = 0;
        return -1;
    }
    *out = n;
    return 0;
}

/* ---- results ------------------------------------------------------------------- */

static int has_element_children(xmlNodePtr n)
{
    for (xmlNodePtr k = n->children; k != NULL; k = k->next)
        if (k->type == XML_ELEMENT_NODE)
            return 1;
    return 0;
}

/* Whether an element without element children has no text but white space
 * (an empty element reads as its markup in MI: SynapseXPath.stringValueOf).
 * Its own text nodes are read in place: nothing is copied. */
static int is_blank_element(xmlNodePtr n)
{
    if (n->type != XML_ELEMENT_NODE)
        return 0;
    for (xmlNodePtr k = n->children; k != NULL; k = k->next) {
        if (k->type != XML_TEXT_NODE && k->type != XML_CDATA_SECTION_NODE)
            continue;
        for (const xmlChar *p = k->content; p != NULL && *p; p++)
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
                return 0;
    }
    return 1;
}

/* A node as MI's XPath results read: text for text, attributes and simple
 * elements, the element's XML for elements with elements inside and for
 * empty ones. */
static void append_node(cmi_strbuf_t *b, xmlNodePtr node)
{
    if (node->type == XML_ELEMENT_NODE && (has_element_children(node) || is_blank_element(node))) {
        /* Serialised from a copy of its own, so that namespaces declared on
         * its ancestors are declared on it: the fragment stands alone. */
        xmlDocPtr tmp = xmlNewDoc((const xmlChar *)"1.0");
        xmlNodePtr copy = cmi_xml_clone(node, tmp, NULL);
        xmlBufferPtr buf = xmlBufferCreate();
        xmlNodeDump(buf, tmp, copy, 0, 0);
        cmi_strbuf_append(b, (const char *)xmlBufferContent(buf), (size_t)xmlBufferLength(buf));
        xmlBufferFree(buf);
        xmlFreeDoc(tmp);
        return;
    }
    xmlChar *t = xmlNodeGetContent(node);
    if (t != NULL) {
        cmi_strbuf_puts(b, (const char *)t);
        xmlFree(t);
    }
}

static void convert(ex_ctx_t *c, xmlXPathObjectPtr r, cmi_value_t *out)
{
    switch (r->type) {
    case XPATH_BOOLEAN:
        *out = cmi_value_bool(r->boolval);
        return;
    case XPATH_NUMBER:
        if (isfinite(r->floatval) && r->floatval == floor(r->floatval) && fabs(r->floatval) < 9e15)
            *out = cmi_value_int((int64_t)r->floatval);
        else
            *out = cmi_value_number(r->floatval);
        return;
    case XPATH_STRING: {
        const char *s = cmi_arena_strdup(c->msg->arena, (const char *)r->stringval);
        *out = cmi_value_cstring(s);
        return;
    }
    case XPATH_NODESET: {
        if (r->nodesetval == NULL || r->nodesetval->nodeNr == 0) {
            *out = cmi_value_null();
            return;
        }
        cmi_strbuf_t b;
        cmi_strbuf_init(&b, c->msg->arena, 64);
        int markup = 0;
        for (int i = 0; i < r->nodesetval->nodeNr; i++) {
            xmlNodePtr node = r->nodesetval->nodeTab[i];
            markup |= node->type == XML_ELEMENT_NODE && (has_element_children(node) || is_blank_element(node));
            append_node(&b, node);
        }
        *out = cmi_value_string(b.data, b.len);
        if (markup) /* inserted as XML, not as text, by XML templates */
            out->type = CMI_VAL_XML;
        return;
    }
    default:
        *out = cmi_value_null();
    }
}

/* Runs n's XPath over doc: the result (the caller frees it), or NULL with
 * the error slot set. */
static xmlXPathObjectPtr run_xpath(ex_ctx_t *c, const ex_node_t *n, xmlDocPtr doc)
{
    xpath_run_t run = {.c = c};
    xmlXPathContextPtr ctx = new_context(doc, n, &run);
    /* Restored after: a {{...}} template parameter is evaluated inside the
     * XPath that reads it. */
    xmlGenericErrorFunc outer = xmlGenericError;
    void *outer_ctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(&run, on_generic_error);
    xmlXPathObjectPtr r = xmlXPathCompiledEval(n->u.xpath.comp, ctx);
    xmlSetGenericErrorFunc(outer_ctx, outer);
    xmlXPathFreeContext(ctx);
    if (r == NULL || run.error[0] != '\0') {
        xmlXPathFreeObject(r);
        ex_fail(c, "XPath evaluation failed: %s", run.error[0] ? run.error : "unknown error");
        return NULL;
    }
    return r;
}

int ex_xpath_eval(ex_ctx_t *c, const ex_node_t *n, cmi_value_t *out)
{
    int failed;
    xmlDocPtr doc = xpath_doc(c, &failed);
    if (doc == NULL)
        return CMI_FLOW_ERROR;
    xmlXPathObjectPtr r = run_xpath(c, n, doc);
    if (r == NULL)
        return CMI_FLOW_ERROR;
    convert(c, r, out);
    xmlXPathFreeObject(r);
    return 0;
}

/* ---- selecting nodes to edit (enrich) ------------------------------------------ */

int cmi_expr_is_xpath(const cmi_expr_t *e)
{
    return e->root->kind == EX_XPATH;
}

xmlDocPtr cmi_expr_payload_doc(const cmi_expr_t *e, cmi_msg_t *msg)
{
    static const cmi_expr_t unnamed = {.text = "the payload"};
    ex_ctx_t c = {.expr = e ? e : &unnamed, .msg = msg};
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    if (fill_doc(&c, doc) != 0) {
        xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}

xmlXPathObjectPtr cmi_expr_xpath_select(const cmi_expr_t *e, cmi_msg_t *msg, xmlDocPtr doc)
{
    ex_ctx_t c = {.expr = e, .msg = msg};
    return run_xpath(&c, e->root, doc);
}
