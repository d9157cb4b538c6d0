#include "config.h"

#include "http/proxy.h"

#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/wsdl.h"
#include "core/str.h"
#include "http/answer.h"
#include "runtime/convert.h"

typedef enum { REQ_REST, REQ_SOAP11, REQ_SOAP12 } req_kind_t;

static const h2o_header_t *header(h2o_req_t *req, const h2o_token_t *token, const char *name, size_t nlen)
{
    ssize_t i = token ? h2o_find_header(&req->headers, token, -1)
                      : h2o_find_header_by_str(&req->headers, name, nlen, -1);
    return i < 0 ? NULL : &req->headers.entries[i];
}

/* As Axis2 tells them: application/soap+xml is SOAP 1.2, text/xml with a
 * SOAPAction SOAP 1.1, anything else REST (POX, JSON, forms, none). */
static req_kind_t request_kind(h2o_req_t *req)
{
    const h2o_header_t *ct = header(req, H2O_TOKEN_CONTENT_TYPE, NULL, 0);
    size_t n = 0; /* the media type: up to a parameter (the value is not NUL-terminated) */
    while (ct != NULL && n < ct->value.len && strchr(";, ", ct->value.base[n]) == NULL)
        n++;
    if (n == 20 && strncasecmp(ct->value.base, "application/soap+xml", 20) == 0)
        return REQ_SOAP12;
    if (n == 8 && strncasecmp(ct->value.base, "text/xml", 8) == 0 && header(req, NULL, H2O_STRLIT("soapaction")))
        return REQ_SOAP11;
    return REQ_REST;
}

/* A SOAP fault in the request's SOAP version (1.1 for REST clients), as
 * Axis2 answers what it refuses before mediation: HTTP 500. */
static int soap_fault(h2o_req_t *req, const char *reason)
{
    int v12 = request_kind(req) == REQ_SOAP12;
    cmi_arena_t *tmp = cmi_arena_create(512);
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, tmp, 512);
    cmi_strbuf_printf(&b, "<soapenv:Envelope xmlns:soapenv=\"%s\"><soapenv:Body><soapenv:Fault>",
                      v12 ? CMI_SOAP12_NS : CMI_SOAP11_NS);
    if (v12)
        cmi_strbuf_puts(&b, "<soapenv:Code><soapenv:Value>soapenv:Receiver</soapenv:Value></soapenv:Code>"
                            "<soapenv:Reason><soapenv:Text xml:lang=\"en-US\">");
    else
        cmi_strbuf_puts(&b, "<faultcode>soapenv:Server</faultcode><faultstring>");
    cmi_strbuf_xml_escaped(&b, reason, strlen(reason));
    cmi_strbuf_puts(&b, v12 ? "</soapenv:Text></soapenv:Reason>" : "</faultstring><detail/>");
    cmi_strbuf_puts(&b, "</soapenv:Fault></soapenv:Body></soapenv:Envelope>");
    cmi_http_answer(req, 500, v12 ? "application/soap+xml; charset=UTF-8" : "text/xml; charset=UTF-8", b.data,
                    b.len);
    cmi_arena_destroy(tmp);
    return 1;
}

/* The scheme, host and port of the addresses in a served WSDL: this
 * machine's host name and the listener's port, as MI writes them (not the
 * request's Host, which a client chooses). */
static const char *wsdl_base(h2o_req_t *req, int tls, int port)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    char *base = h2o_mem_alloc_pool(&req->pool, strlen(host) + 24);
    sprintf(base, "%s://%s:%d", tls ? "https" : "http", host, port);
    return base;
}

static int serve_wsdl(h2o_req_t *req, const cmi_proxy_t *p, int tls, int port)
{
    if (p->flags & CMI_PROXY_NO_METADATA) {
        static const char body[] = "<h4>Access to the metadata of this service is not allowed</h4>";
        return cmi_http_answer(req, 403, "text/html", body, sizeof(body) - 1), 1;
    }
    size_t len;
    char *text = cmi_wsdl_render(p->wsdl, wsdl_base(req, tls, port), p->api.name, &len);
    cmi_http_answer(req, 200, "text/xml; charset=UTF-8", text, len);
    free(text);
    return 1;
}

static int is_wsdl_query(h2o_req_t *req, const char *query, size_t qlen)
{
    int get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
              h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    return get && qlen == 4 && strncasecmp(query, "wsdl", 4) == 0;
}

static int binding_disabled(h2o_req_t *req, const cmi_proxy_t *p)
{
    static const unsigned flag[] = {[REQ_REST] = CMI_PROXY_NO_REST, [REQ_SOAP11] = CMI_PROXY_NO_SOAP11,
                                    [REQ_SOAP12] = CMI_PROXY_NO_SOAP12};
    return (p->flags & flag[request_kind(req)]) != 0;
}

int cmi_proxy_http_early(h2o_req_t *req, const cmi_proxy_t *p, const char *query, size_t qlen, int tls, int port)
{
    char why[512];
    const char *name = p->api.name;
    if (!p->started) {
        if (is_wsdl_query(req, query, qlen)) {
            snprintf(why, sizeof(why), "<h4>Service %s is inactive. Cannot display WSDL document.</h4>", name);
            return cmi_http_answer(req, 200, "text/html", why, strlen(why)), 1;
        }
        snprintf(why, sizeof(why), "The system is attempting to access an inactive service: %s", name);
        return soap_fault(req, why);
    }
    if (!(p->transports & (tls ? CMI_PROXY_HTTPS : CMI_PROXY_HTTP))) {
        snprintf(why, sizeof(why), "The service cannot be found for the endpoint reference (EPR) /services/%s", name);
        return soap_fault(req, why);
    }
    if (is_wsdl_query(req, query, qlen))
        return serve_wsdl(req, p, tls, port);
    if (binding_disabled(req, p)) {
        snprintf(why, sizeof(why), "The %s binding of service %s is disabled",
                 (const char *[]){"REST", "SOAP 1.1", "SOAP 1.2"}[request_kind(req)], name);
        return soap_fault(req, why);
    }
    if (p->flags & CMI_PROXY_INBOUND_ONLY) /* MI answers 202 and runs nothing */
        return cmi_http_answer(req, 202, NULL, "", 0), 1;
    return 0;
}

int cmi_proxy_http_service_list(h2o_req_t *req, const char *path, size_t len)
{
    if (!h2o_memis(path, len, H2O_STRLIT("/services")) && !h2o_memis(path, len, H2O_STRLIT("/services/")))
        return 0;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return 0;
    static const char body[] = "{\"error\":{\"code\":403,\"message\":\"the list of services is not served\"}}";
    return cmi_http_answer(req, 403, "application/json", body, sizeof(body) - 1), 1;
}

/* The first segment after the service ("/getQuote/x" -> "getQuote"). */
static const char *path_operation(cmi_msg_t *msg)
{
    const char *s = msg->sub_path;
    if (s == NULL || *s != '/' || s[1] == '\0')
        return NULL;
    return cmi_arena_strndup(msg->arena, s + 1, strcspn(s + 1, "/"));
}

static const cmi_wsdl_op_t *op_named(const cmi_wsdl_t *w, const char *name)
{
    for (size_t i = 0; name != NULL && i < w->nops; i++)
        if (strcmp(w->ops[i].name, name) == 0)
            return &w->ops[i];
    return NULL;
}

/* The Body's first element of a SOAP request (parsing it, as Axis2's
 * body-based dispatch does), by namespace and name. */
static const cmi_wsdl_op_t *op_of_body(const cmi_wsdl_t *w, cmi_msg_t *msg)
{
    xmlDocPtr doc = msg->payload.kind == CMI_PAYLOAD_XML ? cmi_msg_payload_xml(msg, NULL) : NULL;
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    xmlNodePtr first = cmi_soap_is_envelope(root) ? cmi_soap_body_child(root) : root;
    if (first == NULL)
        return NULL;
    return cmi_wsdl_find_op(w, NULL, first->ns ? (const char *)first->ns->href : "", (const char *)first->name);
}

int cmi_proxy_http_operation(h2o_req_t *req, const cmi_proxy_t *p, cmi_msg_t *msg)
{
    const cmi_wsdl_t *w = p->wsdl;
    if (w == NULL || !w->published) {
        msg->operation = "mediate";
        return 0;
    }
    const char *action = cmi_msg_soap_action(msg);
    const cmi_wsdl_op_t *op = cmi_wsdl_find_op(w, action, NULL, NULL);
    if (op == NULL)
        op = op_named(w, path_operation(msg));
    if (op == NULL)
        op = op_of_body(w, msg);
    if (op == NULL && (p->flags & CMI_PROXY_SINGLE_OPERATION) && w->nops == 1)
        op = &w->ops[0];
    if (op != NULL || (p->flags & CMI_PROXY_ANY_OPERATION)) {
        msg->operation = op ? op->name : "mediate";
        return 0;
    }
    char why[1024];
    snprintf(why, sizeof(why), "The endpoint reference (EPR) for the Operation not found is /services/%s and the WSA "
             "Action = %.400s. If this EPR was previously reachable, please contact the server administrator.",
             p->api.name, action ? action : "null");
    soap_fault(req, why);
    return -1;
}
