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
 * Endpoints are MI's: a leaf (<http>/<address>) with suspendOnFailure and
 * markForSuspension, or a <failover> / <loadbalance> group of leaves.  A
 * failure moves a group to its next leaf that is not suspended; a leaf's
 * health is shared by every worker. */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/str.h"
#include "engine.h"
#include "expr/expr.h"
#include "http/client.h"
#include "mediators/call.h"
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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum { SRC_BODY, SRC_PROPERTY, SRC_INLINE, SRC_CUSTOM };
enum { TGT_BODY, TGT_PROPERTY, TGT_VARIABLE };

typedef struct {
    cmi_mediator_t base;
    const cmi_endpoint_t *endpoint; /* named: resolved at load (endpoints load first) */
    /* <source type>: what is sent (the payload by default). */
    int source;
    const char *source_text;        /* property name, or inline content */
    const cmi_expr_t *source_expr;  /* custom */
    const char *source_type;        /* contentType */
    /* <target type>: where the response goes (the payload by default). */
    int target;
    const char *target_name;
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

/* "101503, 101504": error codes; -1 means none. */
static int parse_codes(cmi_compile_t *cc, xmlNodePtr node, const char *text, int *codes, size_t *n)
{
    *n = 0;
    for (const char *p = text; p != NULL && *p;) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',' && *end != ' ' && *end != '\n' && *end != '\t')) {
            cmi_compile_error(cc, node, "<errorCodes>: '%s' is not a comma-separated list of error codes", text);
            return -1;
        }
        if (v != -1) {
            if (*n == 16) {
                cmi_compile_error(cc, node, "<errorCodes>: at most 16 codes");
                return -1;
            }
            codes[(*n)++] = (int)v;
        }
        p = end;
    }
    return 0;
}

static int uint_child(cmi_compile_t *cc, xmlNodePtr c, uint64_t max, uint64_t *out)
{
    const char *text = cmi_xml_text(cc, c);
    if (text == NULL || cmi_parse_uint(text, max, out) != 0) {
        cmi_compile_error(cc, c, "<%s>: expected a whole number, got '%s'", c->name, text ? text : "");
        return -1;
    }
    return 0;
}

static int compile_suspension(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    int suspend = cmi_xml_is(node, "suspendOnFailure");
    if (suspend) {
        ep->suspend_on = 1;
        ep->initial_ms = 30000; /* Synapse's default */
        ep->factor = 1.0;
        ep->max_ms = 86400000;
    }
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *text = cmi_xml_text(cc, c);
        if (cmi_xml_is(c, "errorCodes")) {
            if (parse_codes(cc, c, text, suspend ? ep->suspend_codes : ep->mark_codes,
                            suspend ? &ep->nsuspend_codes : &ep->nmark_codes) != 0)
                return -1;
        } else if (suspend && cmi_xml_is(c, "initialDuration")) {
            if (text != NULL && strcmp(text, "-1") == 0)
                ep->suspend_on = 0; /* MI: no suspension */
            else if (uint_child(cc, c, 86400000, &ep->initial_ms) != 0)
                return -1;
        } else if (suspend && cmi_xml_is(c, "maximumDuration")) {
            if (uint_child(cc, c, 86400000000ull, &ep->max_ms) != 0)
                return -1;
        } else if (suspend && cmi_xml_is(c, "progressionFactor")) {
            char *end;
            ep->factor = text ? strtod(text, &end) : 0;
            if (text == NULL || *end != '\0' || !(ep->factor >= 1.0) || ep->factor > 100) {
                cmi_compile_error(cc, c, "<progressionFactor>: expected a number from 1 to 100, got '%s'",
                                  text ? text : "");
                return -1;
            }
        } else if (!suspend && cmi_xml_is(c, "retriesBeforeSuspension")) {
            uint64_t v;
            if (uint_child(cc, c, 1000000, &v) != 0)
                return -1;
            ep->retries_before = (int64_t)v;
        } else if (!suspend && cmi_xml_is(c, "retryDelay")) {
            if (uint_child(cc, c, 86400000, &ep->retry_delay_ms) != 0)
                return -1;
        } else {
            cmi_compile_error(cc, c, "<%s>: unexpected element <%s>", node->name, c->name);
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
        } else if (cmi_xml_is(c, "suspendOnFailure") || cmi_xml_is(c, "markForSuspension")) {
            if (compile_suspension(cc, c, ep) != 0)
                return -1;
        } else if (cmi_xml_is(c, "enableSec") || cmi_xml_is(c, "enableAddressing") ||
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

static const cmi_attr_rule_t group_attrs[] = {
    {"algorithm", CMI_ATTR_OK},
    {"failover", CMI_ATTR_OK},
    {"policy", CMI_ATTR_UNSUPPORTED},
    {"dynamic", CMI_ATTR_UNSUPPORTED},
    {"buildMessage", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

/* <failover> or <loadbalance>: leaves, inline or by key. */
static int compile_group(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    if (cmi_xml_check_attrs(cc, node, group_attrs, NULL))
        return -1;
    ep->kind = cmi_xml_is(node, "failover") ? CMI_EP_FAILOVER : CMI_EP_LOADBALANCE;
    const char *alg = cmi_xml_attr(cc, node, "algorithm");
    if (alg != NULL && strcmp(alg, "org.apache.synapse.endpoints.algorithms.RoundRobin") != 0) {
        cmi_compile_error(cc, node, "<loadbalance algorithm=\"%s\">: only RoundRobin is supported by cmi yet", alg);
        return -1;
    }
    const char *fo = cmi_xml_attr(cc, node, "failover");
    ep->lb_failover = fo == NULL || strcmp(fo, "false") != 0;
    ep->next_child = cmi_arena_calloc(cc->arena, 1, sizeof(*ep->next_child));
    size_t n = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        n += c->type == XML_ELEMENT_NODE;
    ep->children = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*ep->children));
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (!cmi_xml_is(c, "endpoint")) {
            cmi_compile_error(cc, c, "<%s>: unexpected element <%s>", node->name, c->name);
            return -1;
        }
        const char *key = cmi_xml_attr(cc, c, "key");
        cmi_endpoint_t *child = NULL;
        if (key != NULL && *key != '\0') {
            child = cmi_htab_gets(&cc->config->endpoints, key);
            if (child == NULL) {
                cmi_compile_error(cc, c, "<endpoint key=\"%s\">: no endpoint of that name in endpoints/ (a group "
                                  "names endpoints of files that sort before its own)", key);
                return -1;
            }
        } else if ((child = cmi_compile_endpoint(cc, c)) == NULL) {
            return -1;
        }
        if (child->kind != CMI_EP_LEAF) {
            cmi_compile_error(cc, c, "<%s>: a group inside a group is not supported by cmi yet", node->name);
            return -1;
        }
        ep->children[ep->nchildren++] = child;
    }
    if (ep->nchildren == 0) {
        cmi_compile_error(cc, node, "<%s>: give at least one <endpoint>", node->name);
        return -1;
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
        } else if (cmi_xml_is(c, "loadbalance") || cmi_xml_is(c, "failover")) {
            if (targets++ > 0) {
                cmi_compile_error(cc, c, "<endpoint>: more than one target");
                return NULL;
            }
            if (compile_group(cc, c, ep) != 0)
                return NULL;
        } else if (cmi_xml_is(c, "wsdl") ||
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
    if (ep->kind == CMI_EP_LEAF) {
        ep->state = cmi_arena_calloc(cc->arena, 1, sizeof(*ep->state));
        pthread_mutex_init(&ep->state->lock, NULL);
        ep->state->next_ms = ep->initial_ms;
        ep->state->retries_left = ep->retries_before;
    }
    return ep;
}

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
    size_t attempts;            /* leaves tried */
    size_t next;                /* group: the next child to consider */
    size_t first;               /* loadbalance: where the round started */
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
} call_state_t;

/* ---- a leaf's health ---------------------------------------------------------------------- */

static const char *ep_name(const cmi_endpoint_t *ep)
{
    return ep->name ? ep->name : ep->where;
}

static int leaf_ready(const cmi_endpoint_t *leaf, int64_t now)
{
    pthread_mutex_lock(&leaf->state->lock);
    int ready = now >= leaf->state->until;
    pthread_mutex_unlock(&leaf->state->lock);
    return ready;
}

static void leaf_ok(const cmi_endpoint_t *leaf)
{
    cmi_endpoint_state_t *s = leaf->state;
    pthread_mutex_lock(&s->lock);
    int was = s->suspended;
    s->until = 0;
    s->next_ms = leaf->initial_ms;
    s->retries_left = leaf->retries_before;
    s->suspended = 0;
    pthread_mutex_unlock(&s->lock);
    if (was)
        cmi_log_info("call", "endpoint %s answers again: active", ep_name(leaf));
}

static int has_code(const int *codes, size_t n, int code)
{
    for (size_t i = 0; i < n; i++)
        if (codes[i] == code)
            return 1;
    return 0;
}

/* MI's rules: a code marked for suspension is tolerated
 * retriesBeforeSuspension times (retryDelay apart); then, or on a code of
 * suspendOnFailure (all codes when it lists none), the leaf is suspended
 * for a duration that grows by progressionFactor up to maximumDuration. */
static void leaf_failed(const cmi_endpoint_t *leaf, int code)
{
    cmi_endpoint_state_t *s = leaf->state;
    int64_t now = now_ms();
    uint64_t for_ms = 0;
    pthread_mutex_lock(&s->lock);
    if (s->suspended && now < s->until) {
        /* Calls that were in flight when it was suspended fail too: one
         * suspension, not one per call (nor a duration grown by each). */
        pthread_mutex_unlock(&s->lock);
        return;
    }
    int suspend = 0;
    if (has_code(leaf->mark_codes, leaf->nmark_codes, code)) {
        if (s->retries_left-- > 0)
            s->until = now + (int64_t)leaf->retry_delay_ms;
        else
            suspend = 1;
    } else if (leaf->suspend_on && (leaf->nsuspend_codes == 0 || has_code(leaf->suspend_codes, leaf->nsuspend_codes,
                                                                           code))) {
        suspend = 1;
    }
    if (suspend) {
        for_ms = leaf->suspend_on ? (s->next_ms < leaf->max_ms ? s->next_ms : leaf->max_ms) : 30000;
        s->until = now + (int64_t)for_ms;
        double next = (double)s->next_ms * leaf->factor;
        s->next_ms = next > (double)leaf->max_ms ? leaf->max_ms : (uint64_t)next;
        s->retries_left = leaf->retries_before;
        s->suspended = 1;
    }
    pthread_mutex_unlock(&s->lock);
    if (suspend)
        cmi_log_warn("call", "endpoint %s suspended for %llu ms after error %d", ep_name(leaf),
                     (unsigned long long)for_ms, code);
}

/* The next leaf to try, or NULL when none is left (or none is ready). */
static const cmi_endpoint_t *pick(call_state_t *st)
{
    const cmi_endpoint_t *top = st->top;
    int64_t now = now_ms();
    if (top->kind == CMI_EP_LEAF)
        return st->attempts == 0 && leaf_ready(top, now) ? top : NULL;
    size_t n = top->nchildren;
    if (top->kind == CMI_EP_LOADBALANCE) {
        if (st->attempts == 0)
            st->first = st->next = atomic_fetch_add(top->next_child, 1) % n;
        else if (!top->lb_failover)
            return NULL;
        /* One round from where this call started. */
        for (; st->next < st->first + n; st->next++) {
            const cmi_endpoint_t *c = top->children[st->next % n];
            if (leaf_ready(c, now)) {
                st->next++;
                return c;
            }
        }
        return NULL;
    }
    for (; st->next < n; st->next++) { /* failover: in order, the first ready */
        const cmi_endpoint_t *c = top->children[st->next];
        if (leaf_ready(c, now)) {
            st->next++;
            return c;
        }
    }
    return NULL;
}

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
    cmi_msg_resume(st->msg); /* the result is read on the worker */
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
        leaf_ok(st->leaf);
        char *body = cmi_arena_alloc(msg->arena, req->response_len + 1);
        memcpy(body, req->response, req->response_len + 1);
        const char *ct = cmi_http_response_header(req, "Content-Type");
        if (ct != NULL)
            ct = cmi_arena_strdup(msg->arena, ct); /* the request's buffers go below */
        const call_mediator_t *c = st->call;
        if (c->target == TGT_BODY) {
            take_headers(msg, req);
            cmi_msg_set_payload(msg, body, req->response_len, ct ? ct : "");
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
        return CMI_FLOW_CONTINUE;
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
    leaf_failed(st->leaf, st->last_code);
    cmi_http_request_dispose(req);
    if (st->top->kind != CMI_EP_LEAF)
        cmi_log_debug("call", "endpoint %s failed (%d): trying the next of %s (message %s)", ep_name(st->leaf),
                      st->last_code, ep_name(st->top), msg->id);
    return start_attempt(msg, st); /* the next leaf of a group, or the fault */
}

/* Picks a leaf and sends the request to it. */
static int start_attempt(cmi_msg_t *msg, call_state_t *st)
{
    const cmi_endpoint_t *ep = pick(st);
    if (ep == NULL) {
        if (st->last_code != 0)
            return cmi_msg_set_error(msg, st->last_code, st->last_message, "%s", st->last_detail);
        if (st->top->kind == CMI_EP_LEAF)
            return cmi_msg_set_error(msg, CMI_ERR_SUSPENDED, "Endpoint suspended",
                                     "endpoint %s is suspended", ep_name(st->top));
        return cmi_msg_set_error(msg, CMI_ERR_NONE_READY, "No endpoint ready",
                                 "no endpoint of %s is ready (all suspended)", ep_name(st->top));
    }
    st->leaf = ep;
    st->attempts++;
    cmi_http_client_t *client = msg->worker != NULL ? msg->worker->engine->http_client : NULL;
    if (client == NULL)
        return cmi_msg_set_error(msg, CMI_ERR_SENDING, "Error in Sender", "no HTTP client in this context");
    cmi_strbuf_t url;
    cmi_strbuf_init(&url, msg->arena, 128);
    if (cmi_template_render(ep->uri, msg, NULL, 0, &url) != 0)
        return CMI_FLOW_ERROR;
    cmi_http_request_t *req = &st->req;
    memset(req, 0, sizeof(*req));
    req->url = expand_uri_vars(msg, url.data, url.len);
    req->method = ep->method ? ep->method : msg->method ? msg->method : "POST";
    int with_body = strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
                    strcmp(req->method, "PATCH") == 0;
    if (st->lines == NULL) {
        /* The request: the transport headers (but those of the connection
         * and the body's framing), the payload and its type. */
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
    }
    st->lines[st->nlines] = st->ct_line;
    req->headers = st->lines;
    req->nheaders = st->nlines + (with_body && st->ct_line != NULL);
    req->body = with_body ? st->body : NULL;
    req->body_len = with_body ? st->body_len : 0;
    req->timeout_ms = ep->timeout_ms ? ep->timeout_ms : 60000;
    req->done = on_done;
    req->data = st;
    msg->resume_fn = call_continue;
    msg->resume_data = st;
    int rc = cmi_msg_suspend(msg);
    cmi_http_client_submit(client, req);
    return rc;
}

static int run_call(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const call_mediator_t *c = (const call_mediator_t *)m;
    call_state_t *st = cmi_arena_calloc(msg->arena, 1, sizeof(*st));
    st->msg = msg;
    st->top = c->endpoint;
    st->call = c;
    return start_attempt(msg, st);
}

static const cmi_attr_rule_t call_attrs[] = {
    {"blocking", CMI_ATTR_OK}, /* same result for the caller: nothing blocks in cmi */
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
