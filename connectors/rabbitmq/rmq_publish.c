/* publishMessage (docs/rabbitmq.md, "publishMessage").  On the worker: the target, the body, the
 * application-properties and the encoded message; then the message waits
 * (suspended, no thread held) for the pool to report the broker's outcome,
 * at most publishTimeout. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_ops.h"

typedef struct {
    rmq_name_policy_t policy; /* what a request may choose */
    rmq_target_t target;      /* when every target parameter is static */
    int is_static;
} publish_binding_t;

static rmq_pool_t *pool_of(const cmi_instance_t *inst)
{
    return ((const rmq_instance_t *)inst->data)->pool;
}

/* The target's rows: the queue's and the exchange's options. */
static int target_is_static(const rmq_publish_params_t *p)
{
    for (unsigned row = RMQ_P_QUEUE; row < RMQ_P_EXCHANGE + RMQ_X_COUNT; row++)
        if (CMI_PARAM_IS_DYNAMIC(p, row))
            return 0;
    return 1;
}

static int build_target(rmq_target_t *t, const rmq_publish_params_t *p, const publish_binding_t *pb,
                        const char *vhost, char *err, size_t n)
{
    rmq_target_spec_t spec;
    rmq_target_spec_read(&spec, p, RMQ_P_QUEUE, &p->queue, RMQ_P_EXCHANGE, &p->exchange);
    spec.policy = &pb->policy;
    return rmq_target_build(t, &spec, vhost, err, n);
}

/* Static targets are worked out once and declared when connections come
 * up, before the first message needs them. */
int rmq_publish_prepare(cmi_binding_t *b, char *err, size_t n)
{
    const rmq_publish_params_t *p = b->params;
    const rmq_init_params_t *ip = b->instance->params;
    publish_binding_t *pb = rmq_xcalloc(1, sizeof(*pb));
    if (rmq_name_policy_init(&pb->policy, p->allow_address, p->target_pattern, err, n) != 0) {
        free(pb);
        return -1;
    }
    if (target_is_static(p)) {
        if (build_target(&pb->target, p, pb, ip->vhost, err, n) != 0) {
            rmq_name_policy_dispose(&pb->policy);
            free(pb);
            return -1;
        }
        pb->is_static = 1;
        rmq_pool_add_static_target(pool_of(b->instance), &pb->target);
    }
    b->data = pb;
    return 0;
}

void rmq_publish_release(cmi_binding_t *b)
{
    publish_binding_t *pb = b->data;
    if (pb != NULL) {
        if (pb->is_static)
            rmq_target_dispose(&pb->target);
        rmq_name_policy_dispose(&pb->policy);
        free(pb);
    }
    b->data = NULL;
}

/* ---- the message ---------------------------------------------------------------- */

typedef struct {
    json_t *props;
} header_walk_t;

static int add_header(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
    header_walk_t *w = arg;
    if (rmq_header_is_filtered(name, nl))
        return 0;
    char key[256];
    if (nl >= sizeof(key))
        return 0;
    memcpy(key, name, nl);
    key[nl] = '\0';
    json_object_set_new(w->props, key, json_stringn(value, vl));
    return 0;
}

static json_t *as_text(json_t *v)
{
    if (json_is_string(v))
        return json_incref(v);
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *t = json_string(s ? s : "");
    free(s);
    return t;
}

/* The headers parameter: [["name","value"], ...], [{"name":"value"}, ...]
 * or {"name":"value"}.  Named headers are sent even when filtered. */
static int add_param_headers(json_t *props, json_t *h, char *err, size_t n)
{
    if (h == NULL)
        return 0;
    const char *k;
    json_t *v;
    if (json_is_object(h)) {
        json_object_foreach(h, k, v) json_object_set_new(props, k, as_text(v));
        return 0;
    }
    if (!json_is_array(h)) {
        snprintf(err, n, "headers must be a JSON array or object");
        return -1;
    }
    size_t i;
    json_t *e;
    json_array_foreach(h, i, e) {
        if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0))) {
            json_object_set_new(props, json_string_value(json_array_get(e, 0)), as_text(json_array_get(e, 1)));
        } else if (json_is_object(e)) {
            json_object_foreach(e, k, v) json_object_set_new(props, k, as_text(v));
        } else {
            snprintf(err, n, "headers item %zu is neither [name, value] nor {name: value}", i);
            return -1;
        }
    }
    return 0;
}

/* "application/json; charset=UTF-8" -> "application/json" and "UTF-8". */
static void split_content_type(const char *ct, char *type, size_t tn, char *charset, size_t cn)
{
    snprintf(type, tn, "%s", ct ? ct : "application/octet-stream");
    char *semi = strchr(type, ';');
    charset[0] = '\0';
    if (semi == NULL)
        return;
    const char *cs = strstr(semi, "charset=");
    if (cs != NULL) {
        cs += 8;
        size_t len = strcspn(cs, "; ");
        snprintf(charset, cn, "%.*s", (int)(len < cn ? len : cn - 1), cs);
        if (charset[0] == '"')
            memmove(charset, charset + 1, strlen(charset));
        size_t cl = strlen(charset);
        if (cl > 0 && charset[cl - 1] == '"')
            charset[cl - 1] = '\0';
    }
    while (semi > type && semi[-1] == ' ')
        semi--;
    *semi = '\0';
}

int rmq_pub_build_message(cmi_call_t *call, const rmq_outgoing_t *p, rmq_pub_t *pub, char *err, size_t n)
{
    const cmi_host_t *h = call->host;
    rmq_message_spec_t spec = {.priority = -1};
    char type[128], charset[64];
    if (p->body_type != RMQ_BODY_NONE) {
        static const char *const types[] = {"application/json", "application/xml", "text/plain"};
        if (h->call_eval_param(call, p->body_rows[p->body_type]) != 0)
            return -2; /* the host set the error */
        const char *body = *p->bodies[p->body_type];
        spec.body = body ? body : "";
        spec.body_len = body ? strlen(body) : 0;
        snprintf(type, sizeof(type), "%s", types[p->body_type]);
        snprintf(charset, sizeof(charset), "%s", p->charset);
    } else {
        const char *ct = NULL;
        spec.body = h->msg_payload(call->msg, &spec.body_len, &ct);
        split_content_type(ct, type, sizeof(type), charset, sizeof(charset));
        if (charset[0] == '\0' && strncmp(type, "text/", 5) == 0)
            snprintf(charset, sizeof(charset), "%s", p->charset);
    }
    spec.content_type = type;
    spec.content_encoding = charset[0] ? charset : NULL;
    const char *mid = p->message_id ? p->message_id : h->msg_id(call->msg);
    const char *cid = p->correlation_id;
    if (cid == NULL)
        cid = h->msg_property(call->msg, CMI_SCOPE_AXIS2, "rabbitmq.message.correlation.id");
    if (cid == NULL)
        cid = h->msg_property(call->msg, CMI_SCOPE_DEFAULT, "rabbitmq.message.correlation.id");
    spec.message_id = mid;
    spec.correlation_id = cid ? cid : mid;
    spec.reply_to = p->reply_to;
    spec.priority = p->priority;
    spec.ttl_ms = p->ttl_ms;
    header_walk_t w = {json_object()};
    h->msg_headers(call->msg, add_header, &w);
    int rc = add_param_headers(w.props, p->headers, err, n);
    spec.app_props = w.props;
    if (rc == 0) {
        pub->bytes = rmq_message_encode(&spec, &pub->len, err, n);
        rc = pub->bytes ? 0 : -1;
    }
    json_decref(w.props);
    pub->message_id = rmq_xstrdup(mid);
    return rc;
}

/* ---- the call ---------------------------------------------------------------------- */

/* On the worker when the deadline passed: waiting for a connection is
 * 701201; on a connection (declaration, credit, outcome) it stays 701204.
 * The pool takes the publish out of its queues soon. */
static void on_cancel(cmi_call_t *call, void *arg)
{
    rmq_pub_t *pub = arg;
    atomic_store(&pub->cancelled, 1);
    int stage = atomic_load(&pub->stage);
    if (stage == RMQ_PUB_QUEUED || stage == RMQ_PUB_WAITING)
        call->host->call_fail(call, RMQ_ERR_CONNECTION, RMQ_MSG_CONNECTION,
                              "%s: no connection to RabbitMQ could be had within publishTimeout",
                              pub->target.describe);
    rmq_pool_reap_soon(pool_of(call->binding->instance));
}

/* On the worker, with the outcome the pool found. */
static int publish_continue(cmi_call_t *call, void *arg)
{
    rmq_pub_t *pub = arg;
    int rc = CMI_FLOW_CONTINUE;
    switch (pub->outcome) {
    case RMQ_OUT_ACCEPTED:
    case RMQ_OUT_REJECTED:
    case RMQ_OUT_RELEASED:
    case RMQ_OUT_MODIFIED:
        /* A "no" from the broker is a result too: the flow decides (as MI). */
        call->host->call_set_result(call, rmq_publish_result(pub));
        break;
    default:
        rc = call->host->call_fail(call, pub->err_code ? pub->err_code : RMQ_ERR_GENERAL, NULL, "%s",
                                   pub->err_detail);
        break;
    }
    rmq_pub_free(pub);
    return rc;
}

/* Pool thread: the outcome resumes the call. */
static void publish_done(rmq_pub_t *pub)
{
    cmi_call_t *call = pub->arg;
    if (call->host->call_resume(call, publish_continue, pub) == CMI_CALL_STALE)
        rmq_pub_free(pub); /* the deadline answered the caller already */
}

int rmq_publish_run(cmi_call_t *call)
{
    const cmi_host_t *h = call->host;
    const rmq_publish_params_t *p = call->params;
    const publish_binding_t *pb = call->binding->data;
    const rmq_init_params_t *ip = call->binding->instance->params;
    rmq_pub_t *pub = rmq_xcalloc(1, sizeof(*pub));
    char err[512];
    if (pb->is_static) {
        rmq_target_copy(&pub->target, &pb->target);
    } else if (build_target(&pub->target, p, pb, ip->vhost, err, sizeof(err)) != 0) {
        free(pub);
        return h->call_fail(call, RMQ_ERR_CONFIG, RMQ_MSG_CONFIG, "publishMessage: %s", err);
    }
    rmq_outgoing_t out = {
        .body_type = CMI_PARAM_GIVEN(p, RMQ_P_BODY_TYPE) ? p->body_type : RMQ_BODY_NONE,
        .body_rows = {RMQ_P_BODY_JSON, RMQ_P_BODY_XML, RMQ_P_BODY_TEXT},
        .bodies = {&p->body_json, &p->body_xml, &p->body_text},
        .charset = p->charset,
        .headers = p->headers,
        .message_id = p->message_id,
        .correlation_id = p->correlation_id,
        .reply_to = p->reply_to,
        .priority = CMI_PARAM_GIVEN(p, RMQ_P_PRIORITY) ? p->priority : -1,
        .ttl_ms = p->ttl_ms,
    };
    int rc = rmq_pub_build_message(call, &out, pub, err, sizeof(err));
    if (rc != 0) {
        rmq_pub_free(pub);
        return rc == -2 ? CMI_FLOW_ERROR
                        : h->call_fail(call, RMQ_ERR_CONFIG, RMQ_MSG_CONFIG, "publishMessage: %s", err);
    }
    pub->done = publish_done;
    pub->arg = call;
    pub->confirm = p->confirms;
    h->call_suspend(call, p->publish_timeout_ms, RMQ_ERR_TIMEOUT, RMQ_MSG_TIMEOUT);
    h->call_on_cancel(call, on_cancel, pub);
    rmq_pool_submit(pool_of(call->binding->instance), pub);
    return CMI_FLOW_SUSPENDED;
}
