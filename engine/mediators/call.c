/* <call [blocking]> with <endpoint key="name"/> or an inline <endpoint>
 * (config/endpoint.c; their health: runtime/endpoint.c) holding <http
 * method uri-template> or <address uri>: an HTTP call to a backend that
 * holds no thread.  The message is suspended, the request goes
 * to the engine's curl thread (http/client.c), and the completion is posted
 * back to the message's worker, where the response replaces the payload,
 * HTTP_SC holds the backend's status and the response headers become the
 * transport headers.  As in MI, an answer of any status is a response;
 * only failing to get one is a fault: 101503 (connection failed), 101504
 * (timed out), 101505 (connection closed), 101500 (anything else).
 * A failure moves a group to its next leaf that is not suspended. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/str.h"
#include "engine.h"
#include "expr/expr.h"
#include "http/client.h"
#include "mediators/call.h"
#include "runtime/endpoint.h"
#include "mediators/registry.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"
#include "runtime/worker.h"

enum {
    CMI_ERR_SENDING = 101500,
    CMI_ERR_CONNECT_FAILED = 101503,
    CMI_ERR_CONNECT_TIMEOUT = 101504,
    CMI_ERR_CONNECTION_CLOSED = 101505,
    CMI_ERR_NONE_READY = 303000,    /* no leaf of a group can be tried */
    CMI_ERR_SUSPENDED = 303001,     /* the endpoint is suspended */
};

enum { SRC_BODY, SRC_PROPERTY, SRC_INLINE, SRC_CUSTOM };
enum { TGT_BODY, TGT_PROPERTY, TGT_VARIABLE };

typedef struct {
    cmi_mediator_t base;
    const cmi_endpoint_t *endpoint; /* named: resolved at load (endpoints load first) */
    /* <endpoint key-expression>: the name, computed per message, of a
     * deployed endpoint (nothing but those can be reached this way). */
    const cmi_expr_t *key_expr;
    const cmi_htab_t *endpoints;
    /* <source type>: what is sent (the payload by default). */
    int source;
    const char *source_text;        /* property name, or inline content */
    const cmi_expr_t *source_expr;  /* custom */
    const char *source_type;        /* contentType */
    /* <target type>: where the response goes (the payload by default). */
    int target;
    const char *target_name;
    /* <send>: the request goes when the in path ends, the response runs
     * the out path (the `receive` sequence, else the out sequence). */
    int send;
    const cmi_sequence_t *receive;
    int blocking;    /* <call blocking="true">: the in sequence goes on, as in MI */
    int proxy_target; /* a proxy's target endpoint (config/proxy.c) */
} call_mediator_t;

/* ---- the URL ------------------------------------------------------------------------------ */

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
                    else if (strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
                        /* a dot segment would move up the backend's path (curl
                         * and servers resolve "/x/.."): its dots are encoded */
                        cmi_url_encode(&out, v, strlen(v), "-_~");
                    else
                        cmi_url_encode(&out, v, strlen(v), CMI_URL_SAFE_UNRESERVED);
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
    const cmi_endpoint_t *top;  /* what <call> names */
    const cmi_endpoint_t *leaf; /* being tried */
    uint64_t attempt_ns;        /* when it was tried (monotonic) */
    cmi_endpoint_cursor_t cursor; /* which leaves were tried */
    int last_code;              /* the last failure, for when no leaf is left */
    const char *last_message, *last_detail;
    /* Built once per call: the request headers (room for a Content-Type
     * after them), the payload. */
    const char **lines;
    size_t nlines;
    const char *ct_line;
    const char *body;
    size_t body_len;
    const call_mediator_t *call;
    const char *fixed_url; /* <send/> to the flow's To address */
    int request_soap;      /* the request was a SOAP message (see call_continue) */
} call_state_t;

static int is_hop_by_hop(const char *name, size_t len)
{
    /* Accept-Encoding too: curl does not decode, and a compressed answer
     * would become the payload as it is. */
    static const char *const names[] = {"Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection",
                                        "Keep-Alive", "TE", "Upgrade", "Proxy-Connection", "Expect",
                                        "Accept-Encoding", NULL};
    for (const char *const *n = names; *n != NULL; n++)
        if (strlen(*n) == len && strncasecmp(*n, name, len) == 0)
            return 1;
    return 0;
}

/* curl thread */
static void on_done(cmi_http_request_t *req)
{
    call_state_t *st = req->data;
    cmi_flow_post_resume(st->msg); /* the result is read on the worker */
}

/* The response headers become the transport headers (the request's go). */
static void take_headers(cmi_msg_t *msg, const cmi_http_request_t *req)
{
    msg->headers.count = 0;
    for (size_t i = 0; i < req->nresponse_headers; i++) {
        const char *n = req->response_headers[i].name, *v = req->response_headers[i].value;
        size_t nl = strlen(n), vl = strlen(v);
        if (!cmi_header_is_framing(n, nl) && nl > 0 && cmi_header_valid(n, nl, v, vl)) {
            cmi_msg_header_add_inbound(msg, cmi_arena_strndup(msg->arena, n, nl), nl,
                                       cmi_arena_strndup(msg->arena, v, vl), vl);
            msg->headers.items[msg->headers.count - 1].outbound = 1; /* goes back to the caller */
        }
    }
}

static int start_attempt(cmi_msg_t *msg, call_state_t *st);

/* On the worker, once the curl thread is done with the request. */
static int call_continue(cmi_msg_t *msg, void *data)
{
    call_state_t *st = data;
    cmi_http_request_t *req = &st->req;
    if (req->result == CMI_HTTP_OK) {
        cmi_endpoint_ok(st->leaf, req->status, cmi_monotonic_ns() - st->attempt_ns);
        char *body = cmi_arena_alloc(msg->arena, req->response_len + 1);
        memcpy(body, req->response, req->response_len + 1);
        const char *ct = cmi_http_response_header(req, "Content-Type");
        if (ct != NULL)
            ct = cmi_arena_strdup(msg->arena, ct); /* the request's buffers go below */
        const call_mediator_t *c = st->call;
        if (c->target == TGT_BODY) {
            take_headers(msg, req);
            cmi_msg_set_payload(msg, body, req->response_len, ct ? ct : "");
            /* MI's docs print a <call>'s SOAP answer written as JSON from
             * its Body when the request was not SOAP (json-to-soap), whole,
             * envelope and all, when it was (the routing examples). */
            msg->payload.built = !c->send && !st->request_soap;
        } else if (c->target == TGT_PROPERTY) {
            cmi_msg_prop_set(msg, CMI_SCOPE_DEFAULT, c->target_name, cmi_value_string(body, req->response_len));
        } else {
            /* A variable: JSON when the response is JSON, else its text. */
            json_error_t je;
            json_t *j = ct != NULL && strstr(ct, "json") != NULL ? cmi_json_read(msg->arena, body, req->response_len, &je)
                                                                   : NULL;
            cmi_value_t v = cmi_value_string(body, req->response_len);
            if (j != NULL) {
                v.type = CMI_VAL_JSON;
                v.u.json = cmi_msg_own_json(msg, j);
            }
            cmi_msg_var_set(msg, c->target_name, v);
        }
        cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "HTTP_SC", cmi_value_int(req->status));
        cmi_log_debug("call", "%s %s -> %ld (%zu bytes) (message %s)", req->method, req->url, req->status,
                      req->response_len, msg->id);
        cmi_http_request_dispose(req);
        if (!c->send)
            return CMI_FLOW_CONTINUE;
        if (cmi_msg_prop_true(msg, CMI_SCOPE_DEFAULT, "OUT_ONLY")) {
            msg->nframes = 0; /* OUT_ONLY: nothing waits for the response (the caller has its 202) */
            return CMI_FLOW_DONE;
        }
        if (c->receive == NULL)
            return cmi_flow_enter_out_path(msg);
        msg->nframes = 0; /* <send receive="seq">: that sequence takes the response */
        msg->out_path = 1;
        return cmi_flow_push(msg, c->receive);
    }
    static const struct {
        int code;
        const char *message;
    } errs[] = {
        [CMI_HTTP_CONNECT_FAILED] = {CMI_ERR_CONNECT_FAILED, "Error connecting to the back end"},
        [CMI_HTTP_TIMEOUT] = {CMI_ERR_CONNECT_TIMEOUT, "Connection timed out"},
        [CMI_HTTP_CLOSED] = {CMI_ERR_CONNECTION_CLOSED, "Connection closed"},
        [CMI_HTTP_FAILED] = {CMI_ERR_SENDING, "Error in Sender"},
    };
    st->last_code = errs[req->result].code;
    st->last_message = errs[req->result].message;
    st->last_detail = cmi_arena_sprintf(msg->arena, "%s %s: %s", req->method, req->url, req->error);
    cmi_endpoint_failed(st->leaf, st->last_code, cmi_monotonic_ns() - st->attempt_ns);
    int timed_out = req->result == CMI_HTTP_TIMEOUT;
    cmi_http_request_dispose(req);
    if (timed_out && st->leaf->discard_on_timeout) {
        /* MI's responseAction discard: no fault handling; the flow ends as
         * with <drop/> (an HTTP caller gets 202 rather than waiting on). */
        cmi_log_debug("call", "endpoint %s timed out; its responseAction discards the message %s",
                      cmi_endpoint_name(st->leaf), msg->id);
        msg->dropped = 1;
        return CMI_FLOW_DONE;
    }
    if (st->top->kind != CMI_EP_LEAF && !cmi_endpoint_retries(st->leaf, st->last_code))
        /* As Synapse's failover and loadbalance on a non-retry error. */
        return cmi_msg_set_error(msg, CMI_ERR_NONE_READY, "No endpoint ready",
                                 "endpoint %s failed with %d, which its retryConfig does not retry: no other endpoint "
                                 "of %s is tried (%s)", cmi_endpoint_name(st->leaf), st->last_code,
                                 cmi_endpoint_name(st->top), st->last_detail);
    if (st->top->kind != CMI_EP_LEAF)
        cmi_log_debug("call", "endpoint %s failed (%d): trying the next of %s (message %s)", cmi_endpoint_name(st->leaf),
                      st->last_code, cmi_endpoint_name(st->top), msg->id);
    return start_attempt(msg, st); /* the next leaf of a group, or the fault */
}

/* The request as the message holds it now: the transport headers (but
 * those of the connection and the body's framing), the payload and its
 * type.  Built once per call (a <send> builds it where it stands). */
static int build_request(cmi_msg_t *msg, call_state_t *st)
{
    st->lines = cmi_arena_calloc(msg->arena, msg->headers.count + 2, sizeof(*st->lines));
    for (size_t i = 0; i < msg->headers.count; i++) {
        const cmi_header_t *h = &msg->headers.items[i];
        if (is_hop_by_hop(h->name, h->name_len))
            continue;
        /* A name or value that could not be on the wire (CR, LF: a
         * header set from a property or a broker message) is not sent:
         * curl would write it as it is. */
        if (!cmi_header_valid(h->name, h->name_len, h->value, h->value_len)) {
            cmi_log_warn("call", "header %.*s not sent to the backend: not a valid HTTP header (message %s)",
                         (int)h->name_len, h->name, msg->id);
            continue;
        }
        st->lines[st->nlines++] = cmi_arena_sprintf(msg->arena, "%.*s: %.*s", (int)h->name_len, h->name,
                                                    (int)h->value_len, h->value);
    }
    const call_mediator_t *c = st->call;
    const char *ct = c->source == SRC_BODY ? msg->payload.content_type : c->source_type;
    if (ct != NULL && *ct != '\0' && cmi_header_valid("Content-Type", 12, ct, strlen(ct)))
        st->ct_line = cmi_arena_sprintf(msg->arena, "Content-Type: %s", ct);
    else
        st->ct_line = "Content-Type:"; /* none, rather than curl's form-urlencoded */
    if (c->source == SRC_BODY) {
        st->body = cmi_msg_payload_bytes(msg, &st->body_len);
    } else if (c->source == SRC_INLINE) {
        st->body = c->source_text;
        st->body_len = strlen(c->source_text);
    } else if (c->source == SRC_PROPERTY) {
        st->body = cmi_msg_prop_text(msg, CMI_SCOPE_DEFAULT, c->source_text);
        if (st->body == NULL)
            st->body = "";
        st->body_len = strlen(st->body);
    } else if (cmi_expr_eval_text(c->source_expr, msg, &st->body, &st->body_len) != 0) {
        return CMI_FLOW_ERROR;
    }
    return 0;
}

/* An <address> is a service: a SOAP format is always a POST (as MI's SOAP
 * sender), and a payload the flow built on a request that has none (a GET
 * turned into a getQuote, as MI's REST-to-SOAP examples do) goes with POST
 * rather than being dropped; with no payload the request's method stays
 * (a GET proxied as a GET). */
static int posts_payload(cmi_msg_t *msg, const cmi_endpoint_t *ep, const char *method)
{
    if (ep->format_type != NULL &&
        (strcmp(ep->format_type, "text/xml") == 0 || strcmp(ep->format_type, "application/soap+xml") == 0))
        return 1;
    if (strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0 && strcmp(method, "HEAD") != 0 &&
        strcmp(method, "OPTIONS") != 0)
        return 0;
    size_t len = 0;
    cmi_msg_payload_bytes(msg, &len);
    return len > 0;
}

/* <duration>{xpath}</duration>, per call: whole milliseconds, at most the
 * default (MI caps it at its global timeout); anything else the default,
 * with a line in the log, as MI warns. */
static uint64_t dynamic_timeout(cmi_msg_t *msg, const cmi_endpoint_t *ep)
{
    const char *text;
    size_t len;
    uint64_t ms = 0;
    int code = msg->error_code;
    const char *message = msg->error_message, *detail = msg->error_detail;
    if (cmi_expr_eval_text(ep->timeout_expr, msg, &text, &len) != 0) {
        /* The default applies: not a failure of the call. */
        msg->error_code = code;
        msg->error_message = message;
        msg->error_detail = detail;
        text = "";
        len = 0;
    }
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*text)) {
        text++;
        len--;
    }
    text = cmi_arena_strndup(msg->arena, text, len);
    if (cmi_parse_uint(text, UINT32_MAX, &ms) != 0 || ms == 0) {
        /* Once per endpoint at WARN: a misconfigured timeout must not
         * write a line per message. */
        int first = !atomic_flag_test_and_set(ep->timeout_warned);
        cmi_log_write(first ? CMI_LOG_WARN : CMI_LOG_DEBUG, "call",
                      "endpoint %s: timeout %s is '%.64s', not milliseconds: 60000 ms used (message %s)",
                      cmi_endpoint_name(ep), cmi_expr_text(ep->timeout_expr), text, msg->id);
        return 60000;
    }
    return ms < 60000 ? ms : 60000;
}

/* Synapse's simple client session: the <syn:ClientID> SOAP header's text,
 * or NULL. */
static const char *client_id(cmi_msg_t *msg)
{
    if (msg->payload.kind != CMI_PAYLOAD_XML)
        return NULL;
    xmlDocPtr doc = cmi_msg_payload_xml(msg, NULL);
    xmlNodePtr env = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!cmi_soap_is_envelope(env))
        return NULL;
    for (xmlNodePtr h = env->children; h != NULL; h = h->next) {
        if (h->type != XML_ELEMENT_NODE || strcmp((const char *)h->name, "Header") != 0)
            continue;
        for (xmlNodePtr c = h->children; c != NULL; c = c->next)
            if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, "ClientID") == 0 && c->ns != NULL &&
                strcmp((const char *)c->ns->href, CMI_SYNAPSE_NS) == 0) {
                xmlChar *t = xmlNodeGetContent(c);
                const char *id = t && *t ? cmi_arena_strdup(msg->arena, (const char *)t) : NULL;
                xmlFree(t);
                return id;
            }
    }
    return NULL;
}

/* Picks a leaf and sends the request to it. */
static int start_attempt(cmi_msg_t *msg, call_state_t *st)
{
    if (st->cursor.attempts == 0 && st->top->client_session)
        st->cursor.session = client_id(msg);
    const cmi_endpoint_t *ep = cmi_endpoint_pick(st->top, &st->cursor);
    if (ep == NULL) {
        if (st->last_code != 0)
            return cmi_msg_set_error(msg, st->last_code, st->last_message, "%s", st->last_detail);
        if (st->top->kind == CMI_EP_LEAF)
            return cmi_msg_set_error(msg, CMI_ERR_SUSPENDED, "Endpoint suspended",
                                     "endpoint %s is suspended", cmi_endpoint_name(st->top));
        return cmi_msg_set_error(msg, CMI_ERR_NONE_READY, "No endpoint ready",
                                 "no endpoint of %s is ready (all suspended)", cmi_endpoint_name(st->top));
    }
    st->leaf = ep;
    st->attempt_ns = cmi_monotonic_ns();
    cmi_http_client_t *client = msg->worker != NULL ? msg->worker->engine->http_client : NULL;
    if (client == NULL)
        return cmi_msg_set_error(msg, CMI_ERR_SENDING, "Error in Sender", "no HTTP client in this context");
    cmi_http_request_t *req = &st->req;
    memset(req, 0, sizeof(*req));
    if (st->fixed_url != NULL) {
        req->url = st->fixed_url; /* a To address is used as it is: nothing in it is expanded */
    } else {
        cmi_strbuf_t url;
        cmi_strbuf_init(&url, msg->arena, 128);
        if (cmi_template_render(ep->uri, msg, NULL, 0, &url) != 0)
            return CMI_FLOW_ERROR;
        req->url = expand_uri_vars(msg, url.data, url.len);
    }
    req->method = ep->method ? ep->method : msg->method ? msg->method : "POST";
    if (ep->address && posts_payload(msg, ep, req->method))
        req->method = "POST";
    int with_body = strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
                    strcmp(req->method, "PATCH") == 0;
    if (st->lines == NULL && build_request(msg, st) != 0)
        return CMI_FLOW_ERROR;
    st->lines[st->nlines] = st->ct_line;
    req->body = with_body ? st->body : NULL;
    req->body_len = with_body ? st->body_len : 0;
    if (ep->format_type != NULL && st->call->source == SRC_BODY && with_body) {
        /* <address format>: the payload as it is now, written as that type. */
        if (cmi_payload_render_as(msg, ep->format_type, &req->body, &req->body_len) != 0)
            return CMI_FLOW_ERROR;
        st->lines[st->nlines] = cmi_arena_sprintf(msg->arena, "Content-Type: %s", ep->format_type);
    }
    req->headers = st->lines;
    req->nheaders = st->nlines + (with_body && st->ct_line != NULL);
    req->timeout_ms = ep->timeout_expr ? dynamic_timeout(msg, ep) : ep->timeout_ms ? ep->timeout_ms : 60000;
    req->http10 = cmi_msg_prop_true(msg, CMI_SCOPE_AXIS2, "FORCE_HTTP_1.0");
    req->done = on_done;
    req->data = st;
    msg->resume_fn = call_continue;
    msg->resume_data = st;
    int rc = cmi_flow_suspend(msg);
    cmi_http_client_submit(client, req);
    return rc;
}

static int send_at_end(cmi_msg_t *msg, void *data)
{
    call_state_t *st = data;
    msg->suspended_by = &st->call->base; /* names it if the attempt fails */
    return start_attempt(msg, st);
}

/* The To address the flow set (a header or property mediator), never one
 * a client sent: cmi is not an open proxy.  MI's built-in To (the
 * request's own path) is not a target.  what names the mediator or
 * endpoint for the error. */
static int flow_to_address(cmi_msg_t *msg, const char *what, const char **url_out)
{
    const cmi_value_t *to = cmi_kvlist_get(&msg->props[CMI_SCOPE_DEFAULT], "To");
    const char *url = to ? cmi_value_to_text(msg->arena, to, NULL) : NULL;
    if (url == NULL || *url == '\0')
        return cmi_msg_set_error(msg, CMI_ERR_SENDING, "Error in Sender",
                                 "%s needs a To address set by the flow (<header name=\"To\"> or a To property); cmi "
                                 "never sends to an address from the request", what);
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return cmi_msg_set_error(msg, CMI_ERR_SENDING, "Error in Sender",
                                 "%s: the To address '%s' is not an http:// or https:// URL", what, url);
    *url_out = url;
    return 0;
}

/* <send/> without an endpoint, in the in path: the flow's To address. */
static int implicit_target(cmi_msg_t *msg, call_state_t *st)
{
    static cmi_endpoint_state_t state = {.lock = PTHREAD_MUTEX_INITIALIZER};
    static const cmi_endpoint_t to_address = {.where = "the To address", .kind = CMI_EP_LEAF, .state = &state};
    if (flow_to_address(msg, "<send/> without an endpoint", &st->fixed_url) != 0)
        return CMI_FLOW_ERROR;
    st->top = &to_address;
    return 0;
}

/* The endpoint of this call: as compiled; by key-expression, the deployed
 * endpoint the message names; a <default/> endpoint goes to the flow's To
 * address.  Returns 0 or CMI_FLOW_ERROR. */
static int choose_endpoint(const call_mediator_t *c, cmi_msg_t *msg, call_state_t *st)
{
    st->top = c->endpoint;
    if (c->key_expr != NULL) {
        const char *name;
        size_t len;
        if (cmi_expr_eval_text(c->key_expr, msg, &name, &len) != 0)
            return CMI_FLOW_ERROR;
        st->top = cmi_htab_get(c->endpoints, name, len);
        if (st->top == NULL)
            return cmi_msg_set_error(msg, CMI_ERR_SENDING, "Error in Sender",
                                     "endpoint key-expression %s: no endpoint named '%.*s' is deployed",
                                     cmi_expr_text(c->key_expr), (int)(len < 200 ? len : 200), name);
    }
    if (st->top != NULL && st->top->to_address)
        return flow_to_address(msg, "a <default/> endpoint", &st->fixed_url);
    return 0;
}

/* <send>: in the out path (or with the RESPONSE property true, or after
 * the flow removed the To header), without an endpoint, the message goes
 * back to the caller; else the request is built here, as the message is now, and
 * goes when the in path ends (mediators after <send> run first, as MI's
 * asynchronous send lets them). */
static int run_send(cmi_msg_t *msg, call_state_t *st)
{
    if (st->top == NULL &&
        (msg->out_path || msg->to_anonymous || cmi_msg_prop_true(msg, CMI_SCOPE_DEFAULT, "RESPONSE"))) {
        cmi_flow_respond(msg);
        return CMI_FLOW_DONE;
    }
    if (st->top == NULL && implicit_target(msg, st) != 0)
        return CMI_FLOW_ERROR;
    if (msg->at_end != NULL)
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "a second <send> in one path: cmi sends one request per path");
    if (++msg->sends > CMI_FLOW_MAX_DEPTH) /* each response path sending again: a loop, not a chain */
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "more than %d <send>s for one message: a response path "
                                 "that sends again for ever?", CMI_FLOW_MAX_DEPTH);
    if (build_request(msg, st) != 0)
        return CMI_FLOW_ERROR;
    msg->at_end = send_at_end;
    msg->at_end_data = st;
    return CMI_FLOW_CONTINUE;
}

static int run_call(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const call_mediator_t *c = (const call_mediator_t *)m;
    /* Synapse sends to a proxy's target endpoint only when the in sequence
     * returned true: not after a <send> or a non-blocking <call> (whose
     * mediate() returns false; a <respond> or <drop> ends the flow). */
    if (c->proxy_target && msg->handed_on)
        return CMI_FLOW_CONTINUE;
    if (c->send || !c->blocking)
        msg->handed_on = 1;
    call_state_t *st = cmi_arena_calloc(msg->arena, 1, sizeof(*st));
    st->msg = msg;
    st->call = c;
    st->request_soap = cmi_payload_is_soap_type(msg);
    if ((c->endpoint != NULL || c->key_expr != NULL) && choose_endpoint(c, msg, st) != 0)
        return CMI_FLOW_ERROR;
    if (c->send)
        return run_send(msg, st);
    return start_attempt(msg, st);
}

static const cmi_attr_rule_t call_attrs[] = {
    {"blocking", CMI_ATTR_OK}, /* nothing blocks in cmi; it only decides a proxy's target send */
    {NULL, 0},
};

static const cmi_attr_rule_t source_attrs[] = {
    {"type", CMI_ATTR_OK},
    {"contentType", CMI_ATTR_OK},
    {NULL, 0},
};

/* <source type="body|property|inline|custom" contentType="...">. */
static int compile_source(cmi_compile_t *cc, xmlNodePtr node, call_mediator_t *c)
{
    if (cmi_xml_check_attrs(cc, node, source_attrs, NULL))
        return -1;
    const char *type = cmi_xml_attr(cc, node, "type");
    c->source_type = cmi_xml_attr(cc, node, "contentType");
    const char *text = cmi_xml_text(cc, node);
    if (type == NULL || strcmp(type, "body") == 0) {
        c->source = SRC_BODY;
        return 0;
    }
    if (strcmp(type, "inline") == 0) {
        /* Inline XML children, else the text. */
        xmlNodePtr el = node->children;
        while (el != NULL && el->type != XML_ELEMENT_NODE)
            el = el->next;
        if (el != NULL) {
            xmlBufferPtr buf = xmlBufferCreate();
            xmlNodeDump(buf, node->doc, el, 0, 0);
            c->source_text = cmi_arena_strdup(cc->arena, (const char *)xmlBufferContent(buf));
            xmlBufferFree(buf);
            if (c->source_type == NULL)
                c->source_type = "application/xml";
        } else {
            c->source_text = text ? text : "";
        }
        c->source = SRC_INLINE;
        return 0;
    }
    if (text == NULL || *text == '\0') {
        cmi_compile_error(cc, node, "<source type=\"%s\">: give the %s", type,
                          strcmp(type, "property") == 0 ? "property name" : "expression");
        return -1;
    }
    if (strcmp(type, "property") == 0) {
        c->source = SRC_PROPERTY;
        c->source_text = text;
        return 0;
    }
    if (strcmp(type, "custom") == 0) {
        c->source = SRC_CUSTOM;
        c->source_expr = cmi_compile_expr(cc, node, NULL, text);
        return c->source_expr != NULL ? 0 : -1;
    }
    cmi_compile_error(cc, node, "<source type=\"%s\">: expected body, property, inline or custom", type);
    return -1;
}

static const cmi_attr_rule_t target_attrs[] = {
    {"type", CMI_ATTR_OK},
    {NULL, 0},
};

/* <target type="body|property|variable">name</target>. */
static int compile_target_of_call(cmi_compile_t *cc, xmlNodePtr node, call_mediator_t *c)
{
    if (cmi_xml_check_attrs(cc, node, target_attrs, NULL))
        return -1;
    const char *type = cmi_xml_attr(cc, node, "type");
    const char *text = cmi_xml_text(cc, node);
    if (type == NULL || strcmp(type, "body") == 0) {
        c->target = TGT_BODY;
        return 0;
    }
    if (strcmp(type, "property") != 0 && strcmp(type, "variable") != 0) {
        cmi_compile_error(cc, node, "<target type=\"%s\">: expected body, property or variable", type);
        return -1;
    }
    if (text == NULL || *text == '\0') {
        cmi_compile_error(cc, node, "<target type=\"%s\">: give the %s name", type, type);
        return -1;
    }
    c->target = strcmp(type, "property") == 0 ? TGT_PROPERTY : TGT_VARIABLE;
    c->target_name = text;
    return 0;
}

/* <endpoint key="name"/> (resolved now: endpoints load first),
 * key-expression="expr" (per message), or inline. */
static int resolve_endpoint(cmi_compile_t *cc, xmlNodePtr ep, call_mediator_t *c)
{
    const char *key = cmi_xml_attr(cc, ep, "key");
    const char *key_expr = cmi_xml_attr(cc, ep, "key-expression");
    if (key_expr != NULL) {
        static const cmi_attr_rule_t attrs[] = {{"key-expression", CMI_ATTR_OK}, {NULL, 0}};
        if (cmi_xml_check_attrs(cc, ep, attrs, NULL) || cmi_xml_no_children(cc, ep))
            return -1;
        c->endpoints = &cc->config->endpoints;
        c->key_expr = cmi_compile_expr(cc, ep, "key-expression", key_expr);
        return c->key_expr != NULL ? 0 : -1;
    }
    if (key != NULL && *key != '\0') {
        c->endpoint = cmi_htab_gets(&cc->config->endpoints, key);
        if (c->endpoint == NULL)
            cmi_compile_error(cc, ep, "<endpoint key=\"%s\">: no endpoint of that name in endpoints/", key);
    } else {
        c->endpoint = cmi_compile_endpoint(cc, ep);
    }
    return c->endpoint != NULL ? 0 : -1;
}

cmi_mediator_t *cmi_compile_call(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, call_attrs))
        return NULL;
    call_mediator_t *c = cmi_mediator_new(cc, node, sizeof(*c), run_call);
    const char *blocking = cmi_xml_attr(cc, node, "blocking");
    c->blocking = blocking != NULL && strcmp(blocking, "true") == 0;
    xmlNodePtr ep = NULL;
    for (xmlNodePtr ch = node->children; ch != NULL; ch = ch->next) {
        if (ch->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(ch, "endpoint") && ep == NULL) {
            ep = ch;
        } else if (cmi_xml_is(ch, "source")) {
            if (compile_source(cc, ch, c) != 0)
                return NULL;
        } else if (cmi_xml_is(ch, "target")) {
            if (compile_target_of_call(cc, ch, c) != 0)
                return NULL;
        } else {
            cmi_compile_error(cc, ch, "<call>: unexpected element <%s>", ch->name);
            return NULL;
        }
    }
    if (ep == NULL) {
        cmi_compile_error(cc, node, "<call>: give an <endpoint> (key=\"name\", key-expression or inline)");
        return NULL;
    }
    return resolve_endpoint(cc, ep, c) == 0 ? &c->base : NULL;
}

static const cmi_attr_rule_t send_attrs[] = {
    {"receive", CMI_ATTR_OK},
    {"buildmessage", CMI_ATTR_OK}, /* cmi builds what it reads, when it reads it */
    {NULL, 0},
};

/* <send [receive="seq"]> with an <endpoint> (key or inline), or none (the
 * flow's To address in the in path; back to the caller in the out path). */
cmi_mediator_t *cmi_compile_send(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, send_attrs))
        return NULL;
    call_mediator_t *c = cmi_mediator_new(cc, node, sizeof(*c), run_call);
    c->send = 1;
    xmlNodePtr ep = NULL;
    for (xmlNodePtr ch = node->children; ch != NULL; ch = ch->next) {
        if (ch->type != XML_ELEMENT_NODE || cmi_xml_is(ch, "description"))
            continue;
        if (!cmi_xml_is(ch, "endpoint") || ep != NULL) {
            cmi_compile_error(cc, ch, "<send>: unexpected element <%s> (one <endpoint>)", ch->name);
            return NULL;
        }
        ep = ch;
    }
    const char *receive = cmi_xml_attr(cc, node, "receive");
    if (receive != NULL && *receive != '\0')
        cmi_compile_ref_sequence(cc, receive, &c->receive, cmi_xml_line(node),
                                 cmi_arena_sprintf(cc->arena, "<send receive=\"%s\">", receive));
    return ep == NULL || resolve_endpoint(cc, ep, c) == 0 ? &c->base : NULL;
}

cmi_mediator_t *cmi_compile_proxy_target(cmi_compile_t *cc, xmlNodePtr send)
{
    call_mediator_t *c = (call_mediator_t *)cmi_compile_send(cc, send);
    if (c == NULL)
        return NULL;
    c->proxy_target = 1;
    return &c->base;
}
