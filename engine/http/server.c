#include "config.h"

#include "http/server.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "http/answer.h"
#include "http/basic_auth.h"
#include "http/client_cert.h"
#include "http/jwt_auth.h"
#include "http/proxy.h"
#include "core/log.h"
#include "core/str.h"
#include "engine.h"
#include "http/dispatch.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/metrics.h"
#include "runtime/msg.h"
#include "runtime/worker.h"

typedef struct {
    h2o_handler_t super;
    cmi_engine_t *engine;
} http_handler_t;

/* Lives in the request's pool; h2o disposes of it with the request, which
 * tells the message that its caller is gone (docs/design.md, "Threads"). */
typedef struct {
    h2o_req_t *req;
    cmi_msg_t *msg;
} http_link_t;

static h2o_generator_t final_generator = {NULL, NULL};

/* Starts the response and sends the whole body.  A HEAD request gets the
 * headers a GET would (Content-Length included) and no body: h2o 2.2 does
 * not drop it, and a body there would corrupt the keep-alive stream. */
static void send_final(h2o_req_t *req, const char *body, size_t len)
{
    /* 204 and 304 carry no body and no Content-Length (RFC 9110 8.6). */
    int bodiless = req->res.status == 204 || req->res.status == 304;
    req->res.content_length = bodiless ? SIZE_MAX : len;
    if (bodiless)
        len = 0;
    h2o_start_response(req, &final_generator);
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    h2o_iovec_t buf = h2o_iovec_init(body ? body : "", len);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

/* ---- answers that need no message ------------------------------------ */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default:
        return status < 200 ? "Informational" : status < 300 ? "OK" : status < 400 ? "Redirection"
             : status < 500 ? "Client Error" : "Server Error";
    }
}

const char *cmi_http_peer(h2o_req_t *req, char *buf, size_t size)
{
    struct sockaddr_storage sa;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&sa);
    snprintf(buf, size, "?");
    if (len != 0 && size >= NI_MAXHOST)
        h2o_socket_getnumerichost((struct sockaddr *)&sa, len, buf);
    return buf;
}

int cmi_http_answer(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    if (ctype != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    char *copy = h2o_mem_alloc_pool(&req->pool, len + 1);
    memcpy(copy, body, len);
    send_final(req, copy, len);
    return 0;
}

/* {"error":{"code":...,"message":...}} straight from the handler. */
static int send_json_error(h2o_req_t *req, int status, const char *message, const char *allow)
{
    json_t *body = json_pack("{s:{s:i, s:s}}", "error", "code", status, "message", message);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    size_t len = strlen(text);
    char *copy = h2o_mem_alloc_pool(&req->pool, len);
    memcpy(copy, text, len);
    free(text);
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    if (allow != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("allow"), 1, "Allow", allow, strlen(allow));
    send_final(req, copy, len);
    return 0;
}

/* ---- the HTTP origin of a message --------------------------------------- */

static int status_of(cmi_msg_t *msg)
{
    const cmi_value_t *sc = cmi_msg_prop_get(msg, CMI_SCOPE_AXIS2, "HTTP_SC");
    if (sc == NULL)
        return 200;
    int64_t v = 0;
    if (sc->type == CMI_VAL_INT)
        v = sc->u.i;
    else if (sc->type == CMI_VAL_NUMBER && sc->u.d >= 0 && sc->u.d < 1000 && sc->u.d == (double)(int)sc->u.d)
        v = (int64_t)sc->u.d;
    else if (sc->type == CMI_VAL_STRING && cmi_parse_int64(sc->u.s.ptr, &v) != 0)
        v = 0;
    /* 1xx are interim answers, not something a flow can end with. */
    if (v < 200 || v > 599) {
        cmi_log_warn("http", "HTTP_SC '%s' is not an HTTP status; answering 500 (message %s)",
                     cmi_value_to_text(msg->arena, sc, NULL), msg->id);
        return 500;
    }
    return (int)v;
}

/* The response's Content-Type: the axis2 ContentType property, else a
 * Content-Type header the flow set, else messageType, else the payload's. */
static const char *content_type_of(cmi_msg_t *msg, size_t body_len)
{
    const char *ct = cmi_msg_prop_text(msg, CMI_SCOPE_AXIS2, "ContentType");
    for (size_t i = 0; ct == NULL && i < msg->headers.count; i++) {
        const cmi_header_t *h = &msg->headers.items[i];
        if (h->outbound && cmi_str_caseeqn(h->name, h->name_len, "content-type", 12) &&
            cmi_header_valid(h->name, h->name_len, h->value, h->value_len))
            ct = h->value;
    }
    if (ct == NULL)
        ct = cmi_msg_prop_text(msg, CMI_SCOPE_AXIS2, "messageType");
    if (ct == NULL && body_len > 0)
        ct = msg->payload.content_type;
    return ct;
}

static void add_response_headers(h2o_req_t *req, cmi_msg_t *msg)
{
    for (size_t i = 0; i < msg->headers.count; i++) {
        const cmi_header_t *h = &msg->headers.items[i];
        if (!h->outbound || cmi_header_is_framing(h->name, h->name_len))
            continue;
        /* The last line of defence against response splitting: mediators
         * refuse such values, but a header must never carry CR or LF. */
        if (!cmi_header_valid(h->name, h->name_len, h->value, h->value_len)) {
            cmi_log_warn("http", "response header '%.*s' dropped: invalid name or value (message %s)",
                         (int)h->name_len, h->name, msg->id);
            continue;
        }
        /* h2o wants lower-case names (HTTP/2 requires them); HTTP/1 keeps
         * the case the flow used through orig_name. */
        char *lower = h2o_mem_alloc_pool(&req->pool, h->name_len);
        for (size_t k = 0; k < h->name_len; k++)
            lower[k] = (char)tolower((unsigned char)h->name[k]);
        h2o_add_header_by_str(&req->pool, &req->res.headers, lower, h->name_len, 1, h->name, h->value, h->value_len);
    }
}

static void http_respond(cmi_msg_t *msg)
{
    http_link_t *link = msg->origin_data;
    if (link == NULL) {
        cmi_log_debug("http", "client went away before the response to message %s", msg->id);
        return;
    }
    h2o_req_t *req = link->req;
    int status = status_of(msg);
    size_t len = 0;
    const char *body = NULL;
    const char *message_type = cmi_msg_prop_text(msg, CMI_SCOPE_AXIS2, "messageType");
    if (!cmi_msg_prop_true(msg, CMI_SCOPE_AXIS2, "NO_ENTITY_BODY") && status != 204 && status != 304) {
        /* A messageType the flow chose is a format to write, as MI's
         * formatters do: XML and JSON convert into each other, SOAP types
         * get an envelope.  Without one the payload goes out as it is. */
        if (message_type == NULL) {
            body = cmi_msg_payload_bytes(msg, &len);
        } else if (cmi_payload_render_as(msg, message_type, &body, &len) != 0) {
            cmi_log_warn("http", "message %s: %s", msg->id, msg->error_detail);
            status = cmi_error_status(msg->error_code);
            body = cmi_arena_sprintf(msg->arena, "{\"error\":{\"code\":%d,\"message\":\"%s\"}}", msg->error_code,
                                     msg->error_message);
            len = strlen(body);
            cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "ContentType", cmi_value_cstring("application/json"));
        }
    }
    const char *ct = content_type_of(msg, len);
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    if (ct != NULL && len > 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct, strlen(ct));
    add_response_headers(req, msg);
    /* The body lives in the message's arena, and the message lives until
     * h2o disposes of the request (the link holds a reference). */
    send_final(req, body, len);
}

static void http_finish(cmi_msg_t *msg)
{
    if (msg->responded)
        return;
    int status;
    if (msg->dropped) {
        status = 202;
    } else if (msg->in_fault) {
        status = 500; /* a fault sequence that did not answer */
    } else {
        status = 202;
        cmi_resource_t *res = (cmi_resource_t *)msg->resource;
        if (res != NULL && !atomic_flag_test_and_set(&res->warned_no_response))
            cmi_log_warn("http", "flows of %s '%s'%s%s (%s:%d) end without <respond>, <send> or <drop>: the caller "
                         "gets 202 with no body (logged once)", msg->api->proxy ? "proxy service" : "API",
                         msg->api->name, msg->api->proxy ? "" : " resource ",
                         msg->api->proxy ? "" : res->pattern ? res->pattern : "(default)", res->file, res->line);
    }
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "HTTP_SC", cmi_value_int(status));
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "NO_ENTITY_BODY", cmi_value_bool(1));
    cmi_flow_respond(msg);
}

static const cmi_msg_origin_t http_origin = {"http", http_respond, http_finish};

static h2o_socket_t *socket_of(h2o_conn_t *conn)
{
    return conn->callbacks->get_socket != NULL ? conn->callbacks->get_socket(conn) : NULL;
}

/* From the socket, not the request's scheme: an HTTP/2 client writes
 * :scheme itself. */
static int over_tls(h2o_req_t *req)
{
    h2o_socket_t *sock = socket_of(req->conn);
    return sock != NULL && sock->ssl != NULL;
}

/* An HTTP/2 request h2o lets go before its response while it reads the
 * connection: the client reset the stream (a rapid reset, CVE-2023-44487,
 * sends thousands a second).  When the client closes the connection, h2o
 * stops reading first, so its open requests do not count; on a protocol
 * error or an idle timeout they do, at most the 100 streams a connection
 * may have open, on a connection that is closing anyway. */
static void count_reset(http_link_t *link)
{
    h2o_req_t *req = link->req;
    cmi_worker_t *w = link->msg->worker;
    if (req == NULL || link->msg->responded || req->version < 0x200)
        return;
    h2o_socket_t *sock = socket_of(req->conn);
    if (sock != NULL && h2o_socket_is_reading(sock))
        cmi_worker_conn_account(w, sock, CMI_CONN_RESET, w->engine->settings.http2_reset_rate);
}

static void on_req_dispose(void *p)
{
    http_link_t *link = p;
    cmi_msg_t *msg = link->msg;
    count_reset(link);
    link->req = NULL;
    msg->origin_data = NULL;
    cmi_msg_release(msg);
}

/* ---- request -> message ------------------------------------------------- */

static int bind_params(cmi_msg_t *msg, const cmi_dispatch_result_t *r, const char *query, size_t qlen)
{
    for (size_t i = 0; i < r->nbindings; i++) {
        char *v;
        size_t vlen;
        if (cmi_url_decode(msg->arena, r->bindings[i].value, r->bindings[i].value_len, r->bindings[i].from_query,
                           &v, &vlen) != 0)
            return -1;
        cmi_kvlist_add(msg->arena, &msg->path_params, r->bindings[i].name, cmi_value_string(v, vlen));
    }
    size_t i = 0;
    while (i < qlen) {
        const char *amp = memchr(query + i, '&', qlen - i);
        size_t end = amp ? (size_t)(amp - query) : qlen;
        const char *eq = memchr(query + i, '=', end - i);
        size_t klen = eq ? (size_t)(eq - (query + i)) : end - i;
        if (klen > 0) {
            char *k, *v;
            size_t vlen;
            const char *vs = eq ? eq + 1 : query + end;
            if (cmi_url_decode(msg->arena, query + i, klen, 1, &k, NULL) != 0 ||
                cmi_url_decode(msg->arena, vs, (size_t)(query + end - vs), 1, &v, &vlen) != 0)
                return -1;
            /* The first value wins, as MI's query.param.X does: lookups
             * return the first of a name (no check here, which would make
             * n parameters cost n^2). */
            cmi_kvlist_add(msg->arena, &msg->query_params, k, cmi_value_string(v, vlen));
        }
        i = end + 1;
    }
    return 0;
}

static void copy_request(cmi_msg_t *msg, h2o_req_t *req)
{
    msg->method = cmi_arena_strndup(msg->arena, req->method.base, req->method.len);
    msg->request_uri = cmi_arena_strndup(msg->arena, req->path.base, req->path.len);
    const char *ct = NULL;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        const char *name = h->orig_name ? h->orig_name : h->name->base;
        char *n = cmi_arena_strndup(msg->arena, name, h->name->len);
        char *v = cmi_arena_strndup(msg->arena, h->value.base, h->value.len);
        cmi_msg_header_add_inbound(msg, n, h->name->len, v, h->value.len);
        if (h->name == &H2O_TOKEN_CONTENT_TYPE->buf)
            ct = v;
    }
    if (req->entity.base != NULL)
        cmi_msg_set_payload(msg, cmi_arena_memdup(msg->arena, req->entity.base, req->entity.len), req->entity.len,
                            ct);
    else
        cmi_msg_set_payload(msg, "", 0, ct);
    /* As MI's transport: only when the listener asks for certificates. */
    h2o_socket_t *sock = socket_of(req->conn);
    if (sock != NULL && sock->ssl != NULL && msg->worker->engine->settings.tls.verify_client != CMI_TLS_VERIFY_NONE)
        cmi_client_cert_to_msg(msg, sock);
}

/* One debug line per request: what matched and what got bound, so that an
 * operator can see why a request went where it went. */
static void log_dispatch(cmi_msg_t *msg)
{
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, msg->arena, 256);
    if (msg->api->proxy != NULL)
        cmi_strbuf_printf(&b, "%s %s -> proxy:%s", msg->method, msg->request_uri, msg->api->name);
    else
        cmi_strbuf_printf(&b, "%s %s -> api:%s resource %s", msg->method, msg->request_uri, msg->api->name,
                          msg->resource->pattern ? msg->resource->pattern : "(default)");
    for (size_t i = 0; i < msg->path_params.count; i++)
        cmi_strbuf_printf(&b, " uri.var.%s=\"%s\"", msg->path_params.items[i].name,
                          msg->path_params.items[i].value.u.s.ptr);
    for (size_t i = 0; i < msg->query_params.count; i++)
        cmi_strbuf_printf(&b, " query.param.%s=\"%s\"", msg->query_params.items[i].name,
                          msg->query_params.items[i].value.u.s.ptr);
    cmi_log_write(CMI_LOG_DEBUG, "http", "%s (message %s)", b.data, msg->id);
}

/* The path as the client sent it, up to the query, with "." and ".."
 * segments resolved and nothing decoded.  (h2o's path_normalized decodes
 * every %XX, so a bound variable would be decoded twice and an encoded '/'
 * would split a segment.)  Variables are decoded once, when they bind. */
static h2o_iovec_t dispatch_path(h2o_req_t *req)
{
    size_t len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    const char *p = req->path.base;
    if (len == 0 || p[0] != '/')
        return req->path_normalized; /* "*" or an odd form: h2o's reading */
    char *out = h2o_mem_alloc_pool(&req->pool, len + 1);
    size_t o = 0, i = 0;
    while (i < len) {
        size_t j = i + 1; /* p[i] == '/' */
        while (j < len && p[j] != '/')
            j++;
        size_t seg = j - i - 1;
        if (seg == 1 && p[i + 1] == '.') {
            /* "." : nothing */
        } else if (seg == 2 && p[i + 1] == '.' && p[i + 2] == '.') {
            while (o > 0 && out[--o] != '/')
                ;
        } else {
            memcpy(out + o, p + i, j - i);
            o += j - i;
        }
        i = j;
    }
    if (o == 0 || (len > 0 && p[len - 1] == '/' && out[o - 1] != '/'))
        out[o++] = '/';
    return h2o_iovec_init(out, o);
}

static const cmi_sequence_t empty_sequence = {0};

/* Starts a message for a request, in the deployment the worker serves:
 * the link that tells it when h2o is done with the request, the request
 * copied in, and the flow. */
static cmi_msg_t *start_message(cmi_worker_t *w, h2o_req_t *req)
{
    http_link_t *link = h2o_mem_alloc_shared(&req->pool, sizeof(*link), on_req_dispose);
    cmi_config_retain(w->config);
    cmi_msg_t *msg = cmi_worker_msg_create(w, &http_origin, link, w->config);
    link->req = req;
    link->msg = msg;
    cmi_msg_retain(msg); /* released by on_req_dispose */
    /* The access log's request id: the message id that MI's
     * logMessageID="true" and cmi's own lines about the message carry. */
    if (w->engine->settings.access_log != NULL)
        *h2o_req_getenv(req, H2O_STRLIT(CMI_ACCESS_LOG_ID), 1) = h2o_strdup(&req->pool, msg->id, SIZE_MAX);
    return msg;
}

/* A request no resource takes, run by a deployment's sequence, as in MI:
 * main for a request no API claims (its response path is main again, for
 * <out>), _resource_mismatch_handler_ for one whose API matched but none
 * of its resources (api: that API; its response goes back).  Without
 * them: 404. */
/* MI's REST_URL_POSTFIX: the path after the API's context, with the query. */
static const char *rest_postfix(cmi_msg_t *msg, const h2o_req_t *req, h2o_iovec_t path, size_t ctx_len,
                                const char *query, size_t qlen)
{
    if (req->query_at == SIZE_MAX)
        return cmi_arena_strndup(msg->arena, path.base + ctx_len, path.len - ctx_len);
    return cmi_arena_sprintf(msg->arena, "%.*s?%.*s", (int)(path.len - ctx_len), path.base + ctx_len, (int)qlen, query);
}

static int run_unmatched(cmi_worker_t *w, h2o_req_t *req, const cmi_config_t *cfg, const cmi_dispatch_result_t *r,
                         h2o_iovec_t path, const char *query, size_t qlen)
{
    int main = r->api == NULL;
    const cmi_sequence_t *seq = main ? cfg->main_seq : cfg->mismatch_seq;
    cmi_msg_t *msg = start_message(w, req);
    cmi_dispatch_result_t none = {0};
    if (bind_params(msg, &none, query, qlen) != 0) {
        msg->responded = 1;
        send_json_error(req, 400, "malformed percent-encoding in the request URI", NULL);
        cmi_msg_release(msg);
        return 0;
    }
    msg->fault_seq = cfg->fault_seq;
    msg->out_seq = main ? cfg->main_seq : NULL;
    msg->has_out_seq = main;
    copy_request(msg, req);
    msg->api = r->api;
    msg->sub_path = main ? msg->request_uri : cmi_arena_strndup(msg->arena, r->sub_path, r->sub_len);
    msg->rest_postfix = main ? msg->request_uri : rest_postfix(msg, req, path, r->ctx_len, query, qlen);
    if (cmi_log_enabled(CMI_LOG_DEBUG))
        cmi_log_write(CMI_LOG_DEBUG, "http", "%s %s -> %s sequence (message %s)", msg->method, msg->request_uri,
                      main ? "main" : "_resource_mismatch_handler_", msg->id);
    cmi_flow_start(msg, seq);
    return 0;
}

/* picohttpparser, inside libh2o: exported, but Debian's package does not
 * install its header (h2o 2.2.5's deps/picohttpparser/picohttpparser.h). */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version, struct phr_header *headers, size_t *num_headers,
                      size_t last_len);

/* Why the framing of an HTTP/1 request with a body is ambiguous, or NULL.
 * h2o 2.2 takes the first of two Content-Lengths and lets
 * Transfer-Encoding win over Content-Length, and keeps the connection:
 * the building blocks of request smuggling.  Its reading of the head is
 * gone by now, but the head itself is still at the start of the socket's
 * input (the body follows it), so it is parsed again, with h2o's own
 * parser. */
static const char *ambiguous_framing(h2o_req_t *req)
{
    h2o_socket_t *sock = socket_of(req->conn);
    if (sock == NULL || sock->input == NULL || req->entity.base < sock->input->bytes ||
        req->entity.base > sock->input->bytes + sock->input->size)
        return NULL;
    struct phr_header headers[H2O_MAX_HEADERS];
    size_t nheaders = H2O_MAX_HEADERS, mlen, plen;
    const char *method, *path;
    int minor;
    size_t head = (size_t)(req->entity.base - sock->input->bytes);
    if (phr_parse_request(sock->input->bytes, head, &method, &mlen, &path, &plen, &minor, headers, &nheaders, 0) <= 0)
        return NULL;
    const struct phr_header *cl = NULL;
    unsigned te = 0;
    for (size_t i = 0; i < nheaders; i++) {
        const struct phr_header *h = &headers[i];
        if (h->name == NULL) /* a value folded onto this line would extend a framing header unseen */
            return "a folded header line (obs-fold)";
        if (cmi_str_caseeqn(h->name, h->name_len, "transfer-encoding", 17)) {
            te++;
        } else if (cmi_str_caseeqn(h->name, h->name_len, "content-length", 14)) {
            if (cl != NULL && (cl->value_len != h->value_len || memcmp(cl->value, h->value, h->value_len) != 0))
                return "two different Content-Length headers";
            cl = h;
        }
    }
    if (te > 0 && cl != NULL)
        return "Content-Length together with Transfer-Encoding";
    if (te > 1)
        return "more than one Transfer-Encoding header";
    if (te > 0 && minor == 0)
        return "Transfer-Encoding in an HTTP/1.0 request";
    return NULL;
}

/* Checks that come before dispatch: the connection's HTTP/2 budget and
 * HTTP/1 framing.  Returns 1 when the request was answered here. */
static int refused_at_the_door(cmi_engine_t *engine, cmi_worker_t *w, h2o_req_t *req)
{
    if (req->version >= 0x200) {
        if (!cmi_worker_conn_account(w, socket_of(req->conn), CMI_CONN_REQUEST, engine->settings.http2_request_rate))
            return 0;
        send_json_error(req, 429, "too many requests on this connection: it is being closed", NULL);
        return 1;
    }
    const char *why = req->entity.base != NULL ? ambiguous_framing(req) : NULL;
    if (why == NULL)
        return 0;
    /* RFC 9112 6.3: answer 400 and close, so that no byte after this
     * request is read as another one. */
    req->http1_is_persistent = 0;
    cmi_log_debug("http", "refused a request: %s (connection closed)", why);
    send_json_error(req, 400, why, NULL);
    return 1;
}

static int route(h2o_handler_t *self, h2o_req_t *req);
static void proceed_authenticated(h2o_req_t *req, void *self);

/* The API's handlers, in a fixed order: the client certificate (no cost),
 * the JWT (its verified claims in *claims), then basic authentication
 * (may wait for the credential check).  Returns 1 when the request was
 * answered or is waiting. */
static int refused_by_handlers(h2o_handler_t *self, cmi_worker_t *w, h2o_req_t *req, const cmi_api_t *api,
                               const cmi_jwt_claims_t **claims)
{
    cmi_engine_t *engine = ((http_handler_t *)self)->engine;
    if ((api->auth & CMI_API_AUTH_CLIENT_CERT) && cmi_client_cert_check(req, socket_of(req->conn), api) != 0)
        return 1;
    if ((api->auth & CMI_API_AUTH_JWT) && cmi_jwt_auth_check(w->config->jwt_auth, w, req, api, claims) != 0)
        return 1;
    return (api->auth & CMI_API_AUTH_BASIC) &&
           cmi_basic_auth_check(engine->basic_auth, w, req, api->name, proceed_authenticated, self) != CMI_AUTH_PASS;
}

/* The credentials were good: the request is dispatched again, handlers and
 * all, in the deployment its worker serves now (a reload meanwhile may
 * have changed its API's handlers); the verdict is cached, so the basic
 * authentication passes at once this time. */
static void proceed_authenticated(h2o_req_t *req, void *self)
{
    route(self, req);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    cmi_engine_t *engine = ((http_handler_t *)self)->engine;
    if (refused_at_the_door(engine, cmi_worker_of_ctx(req->conn->ctx), req))
        return 0;
    return route(self, req);
}

/* Dispatch, the API's handlers (before the resource is chosen, as
 * Synapse), then the flow; again when the credential check lets a request
 * through (proceed_authenticated). */
static int route(h2o_handler_t *self, h2o_req_t *req)
{
    cmi_engine_t *engine = ((http_handler_t *)self)->engine;
    cmi_worker_t *w = cmi_worker_of_ctx(req->conn->ctx);
    const cmi_config_t *cfg = w->config;

    const char *query = "";
    size_t qlen = 0;
    if (req->query_at != SIZE_MAX) {
        query = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    unsigned mbit = cmi_method_bit(req->method.base, req->method.len);
    h2o_iovec_t path = dispatch_path(req);
    cmi_dispatch_result_t r;
    int rc = cmi_dispatch_find(cfg->dispatch, mbit, path.base, path.len, query, qlen, &r);
    if (rc == CMI_DISPATCH_NO_API && r.api == NULL && cmi_proxy_http_service_list(req, path.base, path.len))
        return 0;
    const cmi_jwt_claims_t *claims = NULL; /* borrowed: the message takes a reference below */
    if (r.api != NULL && r.api->auth != 0 && refused_by_handlers(self, w, req, r.api, &claims))
        return 0;
    if (rc == CMI_DISPATCH_NO_API && (r.api == NULL ? cfg->main_seq : cfg->mismatch_seq) != NULL)
        return run_unmatched(w, req, cfg, &r, path, query, qlen);
    if (rc == CMI_DISPATCH_NO_API)
        return send_json_error(req, 404, r.api ? "no resource of this API matches the request"
                                               : "no API matches the request path", NULL);
    if (rc == CMI_DISPATCH_NO_METHOD) {
        h2o_mem_pool_t *pool = &req->pool;
        cmi_arena_t *tmp = cmi_arena_create(256);
        const char *allow = cmi_methods_format(tmp, r.allow);
        size_t alen = strlen(allow);
        char *copy = h2o_mem_alloc_pool(pool, alen + 1);
        memcpy(copy, allow, alen + 1);
        cmi_arena_destroy(tmp);
        return send_json_error(req, 405, "the resource does not accept this method", copy);
    }

    if (claims != NULL && cmi_jwt_auth_scopes(req, r.api, r.resource->pattern, claims) != 0)
        return 0;
    int tls = over_tls(req);
    if (r.api->proxy != NULL &&
        cmi_proxy_http_early(req, r.api->proxy, query, qlen, tls, tls ? engine->https_port : engine->http_port))
        return 0;
    cmi_msg_t *msg = start_message(w, req);
    if (bind_params(msg, &r, query, qlen) != 0) {
        msg->responded = 1; /* answered here, not by the flow */
        send_json_error(req, 400, "malformed percent-encoding in the request URI", NULL);
        cmi_msg_release(msg);
        return 0;
    }
    msg->api = r.api;
    msg->resource = r.resource;
    msg->metric_service = r.api->metric_slot;
    msg->metric_url = cmi_worker_conn_url(socket_of(req->conn));
    msg->sub_path = cmi_arena_strndup(msg->arena, r.sub_path, r.sub_len);
    msg->rest_postfix = rest_postfix(msg, req, path, r.ctx_len, query, qlen);
    msg->fault_seq = r.resource->fault_seq ? r.resource->fault_seq : cfg->fault_seq;
    msg->out_seq = r.resource->out_seq;
    msg->has_out_seq = r.resource->has_out_seq != 0;
    copy_request(msg, req);
    if (claims != NULL)
        cmi_jwt_auth_to_msg(msg, claims);
    if (r.api->proxy != NULL && cmi_proxy_http_operation(req, r.api->proxy, msg) != 0) {
        msg->responded = 1; /* refused before mediation, as Axis2 does */
        cmi_msg_release(msg);
        return 0;
    }
    if (cmi_log_enabled(CMI_LOG_DEBUG))
        log_dispatch(msg);
    cmi_flow_start(msg, r.resource->in_seq ? r.resource->in_seq : &empty_sequence);
    return 0;
}

/* ---- set-up -------------------------------------------------------------- */

void cmi_http_configure(cmi_engine_t *engine)
{
    h2o_globalconf_t *g = &engine->h2o;
    h2o_config_init(g);
    g->server_name = h2o_iovec_init(H2O_STRLIT("cmi/" PACKAGE_VERSION));
    g->max_request_entity_size = engine->settings.max_body;
    g->http1.req_timeout = engine->settings.idle_timeout_ms;
    g->http2.idle_timeout = engine->settings.idle_timeout_ms;
    /* HTTP/2 is opt-in: libh2o 2.2.5 has no defence of its own against
     * the rapid reset (docs/http-layer.md); HTTP/1.1 is MI's default
     * listener too. */
    g->http1.upgrade_to_http2 = engine->settings.http2;
    h2o_hostconf_t *host = h2o_config_register_host(g, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    http_handler_t *h = (http_handler_t *)h2o_create_handler(path, sizeof(*h));
    h->super.on_req = on_req;
    h->engine = engine;
    engine->h2o_path = path;
}

/* The first socket binds without SO_REUSEPORT and takes it only once
 * bound: it fails if anything holds the port, and from then on another
 * process's exclusive bind fails too.  The others join it with
 * SO_REUSEPORT, one per worker (the kernel spreads connections). */
static int open_one(const struct addrinfo *ai, const char *host, int port, int first, char *err, size_t errlen)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)); /* a restart need not wait for TIME_WAIT */
    if (!first)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    struct sockaddr_storage sa;
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
    if (sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&sa, ai->ai_addrlen) != 0) {
        if (errno == EADDRINUSE)
            snprintf(err, errlen, "cannot listen on %s port %d: the port is in use (another cmi, or another "
                     "program, listens on it; stop it or choose another port)", host, port);
        else
            snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(errno));
        close(fd);
        return -1;
    }
    if (first)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (listen(fd, SOMAXCONN) != 0) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int cmi_http_listen(const char *host, int port, int *fds, unsigned n, int *bound_port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int gai = getaddrinfo(host, NULL, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", host, gai_strerror(gai));
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        fds[i] = open_one(ai, host, port, i == 0, err, errlen);
        if (fds[i] < 0) {
            while (i-- > 0)
                close(fds[i]);
            freeaddrinfo(ai);
            return -1;
        }
        if (port == 0) { /* the first socket picks the port; the others share it */
            struct sockaddr_storage sa;
            socklen_t sl = sizeof(sa);
            getsockname(fds[0], (struct sockaddr *)&sa, &sl);
            port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                                 : ((struct sockaddr_in6 *)&sa)->sin6_port);
        }
    }
    freeaddrinfo(ai);
    *bound_port = port;
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err);

static void on_accept_resume(cmi_timer_t *t)
{
    cmi_acceptor_t *a = t->data;
    if (a->sock != NULL)
        h2o_socket_read_start(a->sock, on_accept);
}

/* The invocation URL a connection's requests are counted under
 * (MI's: the scheme, the local address it arrived at, the port). */
static unsigned url_slot(cmi_worker_t *w, const cmi_acceptor_t *a, int fd)
{
    struct cmi_metrics *m = w->engine->metrics;
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    if (m == NULL || w->metrics == NULL || getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return 0;
    return cmi_metrics_url_slot(m, a->ctx.ssl_ctx != NULL, (struct sockaddr *)&sa, len);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    cmi_acceptor_t *a = listener->data;
    cmi_worker_t *w = a->worker;
    /* A few per wake-up: fair to the connections already being served.
     * cmi accepts itself (rather than h2o_evloop_socket_accept) to know each
     * connection's descriptor for the drain. */
    for (int i = 0; i < 16; i++) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: the listener would wake us in a
                 * tight loop.  Pause accepting for a moment instead. */
                cmi_log_warn("http", "cannot accept connections: %s; pausing 100 ms", strerror(errno));
                h2o_socket_read_stop(listener);
                a->pause.cb = on_accept_resume;
                a->pause.data = a;
                cmi_worker_timer_start(w, &a->pause, 100);
            }
            break;
        }
        h2o_socket_t *sock = h2o_evloop_socket_create(w->loop, fd, H2O_SOCKET_FLAG_IS_ACCEPTED_CONNECTION);
        cmi_worker_conn_opened(w, sock, fd, url_slot(w, a, fd));
        /* With a TLS context libh2o runs the handshake first, then picks
         * HTTP/1.1 or HTTP/2 by ALPN. */
        h2o_accept(&a->ctx, sock);
    }
}

void cmi_http_worker_accept(cmi_worker_t *w)
{
    for (unsigned i = 0; i < w->nacceptors; i++) {
        cmi_acceptor_t *a = &w->acceptors[i];
        a->sock = h2o_evloop_socket_create(w->loop, a->fd, H2O_SOCKET_FLAG_DONT_READ);
        a->sock->data = a;
        h2o_socket_read_start(a->sock, on_accept);
    }
}
