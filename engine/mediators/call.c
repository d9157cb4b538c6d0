/* <call [blocking]> with <endpoint key="name"/> or an inline <endpoint>
 * holding <http method uri-template> or <address uri>: an HTTP call to a
 * backend that holds no thread.  The message is suspended, the request goes
 * to the engine's curl thread (http/client.c), and the completion is posted
 * back to the message's worker, where the response replaces the payload,
 * HTTP_SC holds the backend's status and the response headers become the
 * transport headers.  As in MI, an answer of any status is a response;
 * only failing to get one is a fault: 101503 (connection failed), 101504
 * (timed out), 101505 (connection closed), 101500 (anything else).
 *
 * Endpoint groups (loadbalance, failover) and suspension rules are not
 * there yet: they are reported at load. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/str.h"
#include "engine.h"
#include "expr/expr.h"
#include "http/client.h"
#include "mediators/call.h"
#include "mediators/registry.h"
#include "runtime/errors.h"
#include "runtime/msg.h"
#include "runtime/worker.h"

enum {
    CMI_ERR_SENDING = 101500,
    CMI_ERR_CONNECT_FAILED = 101503,
    CMI_ERR_CONNECT_TIMEOUT = 101504,
    CMI_ERR_CONNECTION_CLOSED = 101505,
};

typedef struct {
    cmi_mediator_t base;
    const cmi_endpoint_t *endpoint; /* named: resolved at load (endpoints load first) */
} call_mediator_t;

/* ---- endpoints ------------------------------------------------------------------------ */

static const cmi_attr_rule_t endpoint_attrs[] = {
    {"name", CMI_ATTR_OK},
    {"key", CMI_ATTR_OK},
    {"xmlns", CMI_ATTR_OK},
    {"onError", CMI_ATTR_UNSUPPORTED},
    {"template", CMI_ATTR_UNSUPPORTED},
    {"uri", CMI_ATTR_UNSUPPORTED},
    {NULL, 0},
};

static const cmi_attr_rule_t http_attrs[] = {
    {"method", CMI_ATTR_OK},
    {"uri-template", CMI_ATTR_OK},
    {"statistics", CMI_ATTR_COSMETIC},
    {"trace", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

static const cmi_attr_rule_t address_attrs[] = {
    {"uri", CMI_ATTR_OK},
    {"format", CMI_ATTR_UNSUPPORTED},
    {"optimize", CMI_ATTR_UNSUPPORTED},
    {"encoding", CMI_ATTR_UNSUPPORTED},
    {"statistics", CMI_ATTR_COSMETIC},
    {"trace", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

/* <timeout><duration>ms</duration><responseAction>fault|discard|never</responseAction></timeout> */
static int compile_timeout(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *text = cmi_xml_text(cc, c);
        if (cmi_xml_is(c, "duration")) {
            if (text == NULL || cmi_parse_uint(text, 86400000, &ep->timeout_ms) != 0) {
                cmi_compile_error(cc, c, "<timeout><duration>: expected milliseconds, got '%s'", text ? text : "");
                return -1;
            }
        } else if (cmi_xml_is(c, "responseAction")) {
            if (text == NULL || strcmp(text, "fault") != 0) {
                cmi_compile_error(cc, c, "<timeout><responseAction>%s: only 'fault' is supported by cmi yet",
                                  text ? text : "");
                return -1;
            }
        } else {
            cmi_compile_error(cc, c, "<timeout>: unexpected element <%s>", c->name);
            return -1;
        }
    }
    return 0;
}

static int compile_target(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    int http = cmi_xml_is(node, "http");
    if (cmi_xml_check_attrs(cc, node, http ? http_attrs : address_attrs, NULL))
        return -1;
    const char *uri = cmi_xml_attr(cc, node, http ? "uri-template" : "uri");
    if (uri == NULL || *uri == '\0') {
        cmi_compile_error(cc, node, "<%s>: the %s attribute is required", node->name, http ? "uri-template" : "uri");
        return -1;
    }
    if (strncmp(uri, "http://", 7) != 0 && strncmp(uri, "https://", 8) != 0 && strncmp(uri, "{", 1) != 0 &&
        strncmp(uri, "$", 1) != 0) {
        cmi_compile_error(cc, node, "<%s>: '%s' is not an http:// or https:// URL", node->name, uri);
        return -1;
    }
    cmi_expr_error_t e;
    ep->uri = cmi_template_compile(cc->arena, uri, CMI_TEMPLATE_TEXT, 0, &e);
    if (ep->uri == NULL) {
        cmi_compile_report_expr_error(cc, node, http ? "uri-template" : "uri", uri, &e);
        return -1;
    }
    if (http) {
        const char *method = cmi_xml_attr(cc, node, "method");
        if (method != NULL && *method != '\0') {
            static const char *const methods[] = {"get", "post", "put", "delete", "patch", "head", "options", NULL};
            const char *const *m = methods;
            while (*m != NULL && strcasecmp(*m, method) != 0)
                m++;
            if (*m == NULL) {
                cmi_compile_error(cc, node, "<http>: method '%s' is not one of GET, POST, PUT, DELETE, PATCH, HEAD, "
                                  "OPTIONS", method);
                return -1;
            }
            char *up = cmi_arena_strdup(cc->arena, method);
            for (char *p = up; *p; p++)
                *p = (char)toupper((unsigned char)*p);
            ep->method = up;
        }
    }
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "timeout")) {
            if (compile_timeout(cc, c, ep) != 0)
                return -1;
        } else if (cmi_xml_is(c, "suspendOnFailure") || cmi_xml_is(c, "markForSuspension") ||
                   cmi_xml_is(c, "enableSec") || cmi_xml_is(c, "enableAddressing") ||
                   cmi_xml_is(c, "enableRM") || cmi_xml_is(c, "retryConfig") || cmi_xml_is(c, "authentication")) {
            cmi_compile_error(cc, c, "<%s><%s>: not supported by cmi yet", node->name, c->name);
            return -1;
        } else {
            cmi_compile_error(cc, c, "<%s>: unexpected element <%s>", node->name, c->name);
            return -1;
        }
    }
    return 0;
}

cmi_endpoint_t *cmi_compile_endpoint(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, endpoint_attrs, NULL))
        return NULL;
    cmi_endpoint_t *ep = cmi_arena_calloc(cc->arena, 1, sizeof(*ep));
    ep->name = cmi_xml_attr(cc, node, "name");
    ep->where = cmi_arena_sprintf(cc->arena, "%s:%d", cc->file, cmi_xml_line(node));
    int targets = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "http") || cmi_xml_is(c, "address")) {
            if (targets++ > 0) {
                cmi_compile_error(cc, c, "<endpoint>: more than one target");
                return NULL;
            }
            if (compile_target(cc, c, ep) != 0)
                return NULL;
        } else if (cmi_xml_is(c, "loadbalance") || cmi_xml_is(c, "failover") || cmi_xml_is(c, "wsdl") ||
                   cmi_xml_is(c, "default") || cmi_xml_is(c, "recipientlist") || cmi_xml_is(c, "property") ||
                   cmi_xml_is(c, "parameter") || cmi_xml_is(c, "description")) {
            if (cmi_xml_is(c, "description"))
                continue;
            cmi_compile_error(cc, c, "<endpoint><%s>: not supported by cmi yet", c->name);
            return NULL;
        } else {
            cmi_compile_error(cc, c, "<endpoint>: unexpected element <%s>", c->name);
            return NULL;
        }
    }
    if (targets == 0) {
        cmi_compile_error(cc, node, "<endpoint%s%s%s>: give an <http> or <address> target", ep->name ? " name=\"" : "",
                          ep->name ? ep->name : "", ep->name ? "\"" : "");
        return NULL;
    }
    return ep;
}

/* ---- the URL ------------------------------------------------------------------------------ */

static void percent_encode(cmi_strbuf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            cmi_strbuf_putc(out, (char)ch);
        } else {
            cmi_strbuf_putc(out, '%');
            cmi_strbuf_putc(out, hex[ch >> 4]);
            cmi_strbuf_putc(out, hex[ch & 15]);
        }
    }
}

/* MI's {uri.var.NAME} (percent-encoded) and {+uri.var.NAME} (as it is):
 * the property uri.var.NAME of the message; anything else in braces stays. */
static const char *expand_uri_vars(cmi_msg_t *msg, const char *in, size_t len)
{
    cmi_strbuf_t out;
    cmi_strbuf_init(&out, msg->arena, len + 32);
    for (size_t i = 0; i < len;) {
        const char *close = in[i] == '{' ? memchr(in + i, '}', len - i) : NULL;
        if (close != NULL) {
            const char *name = in + i + 1;
            int raw = *name == '+';
            name += raw;
            size_t nl = (size_t)(close - name);
            if (nl > 8 && strncmp(name, "uri.var.", 8) == 0) {
                char *prop = cmi_arena_strndup(msg->arena, name, nl);
                const char *v = cmi_msg_prop_text(msg, CMI_SCOPE_DEFAULT, prop);
                if (v != NULL) {
                    if (raw)
                        cmi_strbuf_puts(&out, v);
                    else
                        percent_encode(&out, v, strlen(v));
                }
                i = (size_t)(close - in) + 1;
                continue;
            }
        }
        cmi_strbuf_putc(&out, in[i++]);
    }
    cmi_strbuf_putc(&out, '\0');
    return out.data;
}

/* ---- the call ------------------------------------------------------------------------------ */

typedef struct {
    cmi_http_request_t req;
    cmi_msg_t *msg;
    const cmi_endpoint_t *ep;
} call_state_t;

static int is_hop_by_hop(const char *name, size_t len)
{
    static const char *const names[] = {"Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection",
                                        "Keep-Alive", "TE", "Upgrade", "Proxy-Connection", "Expect", NULL};
    for (const char *const *n = names; *n != NULL; n++)
        if (strlen(*n) == len && strncasecmp(*n, name, len) == 0)
            return 1;
    return 0;
}

/* curl thread */
static void on_done(cmi_http_request_t *req)
{
    call_state_t *st = req->data;
    cmi_msg_resume(st->msg); /* the result is read on the worker */
}

/* The response headers become the transport headers (the request's go). */
static void take_headers(cmi_msg_t *msg, const char *raw, size_t len)
{
    msg->headers.count = 0;
    const char *p = raw, *end = raw + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        size_t ln = n > 0 && p[n - 1] == '\r' ? n - 1 : n;
        const char *colon = memchr(p, ':', ln);
        if (colon != NULL) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < p + ln && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(p + ln - v);
            if (!cmi_header_is_framing(p, nl) && nl > 0 && cmi_header_valid(p, nl, v, vl)) {
                cmi_msg_header_add_inbound(msg, cmi_arena_strndup(msg->arena, p, nl), nl,
                                           cmi_arena_strndup(msg->arena, v, vl), vl);
                msg->headers.items[msg->headers.count - 1].outbound = 1; /* goes back to the caller */
            }
        }
        p += n + 1;
    }
}

static const char *header_value(cmi_msg_t *msg, const char *raw, size_t len, const char *name)
{
    size_t want = strlen(name);
    for (const char *p = raw; p < raw + len;) {
        const char *eol = memchr(p, '\n', (size_t)(raw + len - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(raw + len - p);
        if (n > want && p[want] == ':' && strncasecmp(p, name, want) == 0) {
            const char *v = p + want + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(p + n - v);
            while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            return cmi_arena_strndup(msg->arena, v, vl);
        }
        p += n + 1;
    }
    return NULL;
}

/* On the worker, once the curl thread is done with the request. */
static int call_continue(cmi_msg_t *msg, void *data)
{
    call_state_t *st = data;
    cmi_http_request_t *req = &st->req;
    int rc = CMI_FLOW_CONTINUE;
    if (req->result == CMI_HTTP_OK) {
        char *body = cmi_arena_alloc(msg->arena, req->response_len + 1);
        memcpy(body, req->response, req->response_len + 1);
        const char *ct = header_value(msg, req->response_headers, req->response_headers_len, "Content-Type");
        take_headers(msg, req->response_headers, req->response_headers_len);
        cmi_msg_set_payload(msg, body, req->response_len, ct ? ct : "");
        cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "HTTP_SC", cmi_value_int(req->status));
        cmi_log_debug("call", "%s %s -> %ld (%zu bytes) (message %s)", req->method, req->url, req->status,
                      req->response_len, msg->id);
    } else {
        static const struct {
            int code;
            const char *message;
        } errs[] = {
            [CMI_HTTP_CONNECT_FAILED] = {CMI_ERR_CONNECT_FAILED, "Error connecting to the back end"},
            [CMI_HTTP_TIMEOUT] = {CMI_ERR_CONNECT_TIMEOUT, "Connection timed out"},
            [CMI_HTTP_CLOSED] = {CMI_ERR_CONNECTION_CLOSED, "Connection closed"},
            [CMI_HTTP_FAILED] = {CMI_ERR_SENDING, "Error in Sender"},
        };
        rc = cmi_msg_set_error(msg, errs[req->result].code, errs[req->result].message, "%s %s: %s", req->method,
                               req->url, req->error);
    }
    cmi_http_request_dispose(req);
    return rc;
}

static int run_call(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const call_mediator_t *c = (const call_mediator_t *)m;
    const cmi_endpoint_t *ep = c->endpoint;
    cmi_http_client_t *client = msg->worker != NULL ? msg->worker->engine->http_client : NULL;
    if (client == NULL)
        return cmi_msg_set_error(msg, CMI_ERR_SENDING, "Error in Sender", "no HTTP client in this context");
    cmi_strbuf_t url;
    cmi_strbuf_init(&url, msg->arena, 128);
    if (cmi_template_render(ep->uri, msg, NULL, 0, &url) != 0)
        return CMI_FLOW_ERROR;
    call_state_t *st = cmi_arena_calloc(msg->arena, 1, sizeof(*st));
    st->msg = msg;
    st->ep = ep;
    cmi_http_request_t *req = &st->req;
    req->url = expand_uri_vars(msg, url.data, url.len);
    req->method = ep->method ? ep->method : msg->method ? msg->method : "POST";
    int with_body = strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
                    strcmp(req->method, "PATCH") == 0;
    /* The request: the transport headers (but those of the connection and
     * the body's framing), the payload and its type. */
    size_t nh = 0;
    const char **lines = cmi_arena_calloc(msg->arena, msg->headers.count + 2, sizeof(*lines));
    for (size_t i = 0; i < msg->headers.count; i++) {
        const cmi_header_t *h = &msg->headers.items[i];
        if (is_hop_by_hop(h->name, h->name_len))
            continue;
        lines[nh++] = cmi_arena_sprintf(msg->arena, "%.*s: %.*s", (int)h->name_len, h->name, (int)h->value_len,
                                        h->value);
    }
    if (with_body) {
        req->body = cmi_msg_payload_bytes(msg, &req->body_len);
        const char *ct = msg->payload.content_type;
        if (ct != NULL && *ct != '\0')
            lines[nh++] = cmi_arena_sprintf(msg->arena, "Content-Type: %s", ct);
    }
    req->headers = lines;
    req->nheaders = nh;
    req->timeout_ms = ep->timeout_ms ? ep->timeout_ms : 60000;
    req->done = on_done;
    req->data = st;
    msg->resume_fn = call_continue;
    msg->resume_data = st;
    int rc = cmi_msg_suspend(msg);
    cmi_http_client_submit(client, req);
    return rc;
}

static const cmi_attr_rule_t call_attrs[] = {
    {"blocking", CMI_ATTR_OK}, /* same result for the caller: nothing blocks in cmi */
    {NULL, 0},
};

cmi_mediator_t *cmi_compile_call(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, call_attrs))
        return NULL;
    call_mediator_t *c = cmi_mediator_new(cc, node, sizeof(*c), run_call);
    xmlNodePtr ep = NULL;
    for (xmlNodePtr ch = node->children; ch != NULL; ch = ch->next) {
        if (ch->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(ch, "endpoint") && ep == NULL) {
            ep = ch;
        } else if (cmi_xml_is(ch, "source") || cmi_xml_is(ch, "target")) {
            cmi_compile_error(cc, ch, "<call><%s>: not supported by cmi yet", ch->name);
            return NULL;
        } else {
            cmi_compile_error(cc, ch, "<call>: unexpected element <%s>", ch->name);
            return NULL;
        }
    }
    if (ep == NULL) {
        cmi_compile_error(cc, node, "<call>: give an <endpoint> (key=\"name\" or inline)");
        return NULL;
    }
    const char *key = cmi_xml_attr(cc, ep, "key");
    if (key != NULL && *key != '\0') {
        c->endpoint = cmi_htab_gets(&cc->config->endpoints, key);
        if (c->endpoint == NULL) {
            cmi_compile_error(cc, ep, "<endpoint key=\"%s\">: no endpoint of that name in endpoints/", key);
            return NULL;
        }
    } else {
        c->endpoint = cmi_compile_endpoint(cc, ep);
        if (c->endpoint == NULL)
            return NULL;
    }
    return &c->base;
}
