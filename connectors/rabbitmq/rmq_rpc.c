/* sendRpc (docs/rabbitmq.md, "sendRpc: request-reply"): a request with a fresh correlation-id and a reply-to,
 * and the reply matched back to the waiting message.
 *
 * Each connection config (pool) consumes its reply queues from start-up:
 * the queue named by replyToQueue, or one of this cmi instance's own
 * (`cmi-rpc-HOST-PID-RANDOM`, deleted by the broker REPLY_EXPIRES_MS after
 * the instance is gone), so that instances never take each other's
 * replies.  One receiver per connection serves every request in flight.
 *
 * A request is an rmq_rpc_t in the pool's table, keyed by correlation-id.
 * Whoever takes it out of the table under the lock owns the resume: the
 * reply (pool thread), the request's failed publish (pool thread), or the
 * deadline (worker, via the cancel hook; the host answers 701204 itself).
 * A reply that finds nothing in the table came too late: it is accepted,
 * dropped and counted. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "rmq_consume.h"
#include "rmq_ops.h"

#define LOG(rs, level, ...) RMQ_LOG((rs)->pool, level, __VA_ARGS__)
#define RPC_SLOTS 1024
/* A reply queue of the instance's own is deleted by the broker this long
 * after its last consumer went (the instance stopped or died). */
#define REPLY_EXPIRES_MS 600000
#define REPLY_CREDIT 256

typedef struct rmq_rpc rmq_rpc_t;

/* A queue replies are consumed from. */
typedef struct reply_queue {
    struct reply_queue *next;
    char *name;
    char *key; /* its declarations: a second sendRpc must not declare it otherwise */
} reply_queue_t;

/* Request-reply of one connection config: requests waiting for their
 * reply, by correlation-id, and the reply queues consumed; under lock. */
struct rmq_rpcs {
    rmq_pool_t *pool;
    pthread_mutex_t lock;
    rmq_rpc_t *table[RPC_SLOTS];
    reply_queue_t *reply_queues;
    char prefix[24]; /* random: correlation-ids and reply queues unique to this pool */
    atomic_ullong seq;
    atomic_ulong late;        /* replies that found no request */
    atomic_llong late_logged; /* when that was last logged */
};

struct rmq_rpc {
    rmq_rpc_t *hnext; /* rs->table chain (under lock) */
    int in_table;     /* under lock */
    char corr[96];
    cmi_call_t *call;
    rmq_pub_t *pub; /* under lock: the request while the pool holds it */
    rmq_rpcs_t *rs;
    atomic_int refs; /* the table's (then the resume's) and the request's */
    /* The reply (or the failure), filled by the pool thread before the resume. */
    char *body;
    size_t len;
    char *content_type;
    char *charset;
    char *correlation_id;
    char *message_id;
    cmi_nv_t *props;
    char *prop_strings;
    size_t nprops;
    int err_code;
    char err_detail[512];
};

typedef struct {
    rmq_target_t reply;       /* the reply queue: its declaration and addresses */
    rmq_name_policy_t policy; /* what a request may choose as the request queue */
} rpc_binding_t;

/* ---- the table ----------------------------------------------------------------------- */

static size_t slot_of(const char *corr)
{
    size_t h = 5381;
    for (const unsigned char *p = (const unsigned char *)corr; *p; p++)
        h = h * 33 + *p;
    return h % RPC_SLOTS;
}

static void rpc_unref(rmq_rpc_t *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    free(r->body);
    free(r->content_type);
    free(r->charset);
    free(r->correlation_id);
    free(r->message_id);
    free(r->props);
    free(r->prop_strings);
    free(r);
}

static void table_add(rmq_rpcs_t *rs, rmq_rpc_t *r)
{
    size_t s = slot_of(r->corr);
    pthread_mutex_lock(&rs->lock);
    r->hnext = rs->table[s];
    rs->table[s] = r;
    r->in_table = 1;
    pthread_mutex_unlock(&rs->lock);
}

/* Caller holds rs->lock. */
static void table_unlink(rmq_rpcs_t *rs, rmq_rpc_t *r)
{
    rmq_rpc_t **at = &rs->table[slot_of(r->corr)];
    while (*at != NULL && *at != r)
        at = &(*at)->hnext;
    if (*at == r)
        *at = r->hnext;
    r->hnext = NULL;
    r->in_table = 0;
}

/* Takes the request waiting for corr out of the table; NULL: none. */
static rmq_rpc_t *table_take(rmq_rpcs_t *rs, const char *corr)
{
    pthread_mutex_lock(&rs->lock);
    rmq_rpc_t *r = rs->table[slot_of(corr)];
    while (r != NULL && strcmp(r->corr, corr) != 0)
        r = r->hnext;
    if (r != NULL)
        table_unlink(rs, r);
    pthread_mutex_unlock(&rs->lock);
    return r;
}

/* Takes r out when it is still in (1), else 0: someone else owns the resume. */
static int table_take_this(rmq_rpcs_t *rs, rmq_rpc_t *r)
{
    pthread_mutex_lock(&rs->lock);
    int had = r->in_table;
    if (had)
        table_unlink(rs, r);
    pthread_mutex_unlock(&rs->lock);
    return had;
}

/* ---- on the worker: applying the reply --------------------------------------------------- */

static int is_json_type(const char *t)
{
    return t != NULL && (strncasecmp(t, "application/json", 16) == 0 || strstr(t, "+json") != NULL);
}

/* The reply's content type: its own, else responseBodyType, else JSON when
 * it parses as JSON, else text. */
static void reply_type(const rmq_rpc_params_t *p, const rmq_rpc_t *r, char *out, size_t n)
{
    static const char *const types[] = {"application/json", "application/xml", "text/plain"};
    const char *type = r->content_type;
    if (type == NULL && CMI_PARAM_GIVEN(p, RMQ_R_RESPONSE_BODY_TYPE))
        type = types[p->response_body_type];
    if (type == NULL) {
        json_t *j = json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL);
        type = j != NULL ? "application/json" : "text/plain";
        json_decref(j);
    }
    const char *charset = r->charset ? r->charset : p->response_charset;
    if (charset != NULL && strstr(type, "charset=") == NULL)
        snprintf(out, n, "%s; charset=%s", type, charset);
    else
        snprintf(out, n, "%s", type);
}

static int collect_name(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
    (void)value;
    (void)vl;
    json_t *names = arg;
    json_array_append_new(names, json_stringn(name, nl));
    return 0;
}

/* As MI: the reply's application-properties are the transport headers. */
static void replace_headers(const cmi_host_t *h, cmi_msg_t *msg, const rmq_rpc_t *r)
{
    json_t *names = json_array();
    h->msg_headers(msg, collect_name, names);
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) h->msg_set_header(msg, json_string_value(v), NULL);
    json_decref(names);
    for (size_t k = 0; k < r->nprops; k++)
        h->msg_set_header(msg, r->props[k].name, r->props[k].value);
}

static json_t *reply_result(const rmq_rpc_t *r, const char *type)
{
    if (is_json_type(type)) {
        json_t *j = json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL);
        if (j != NULL)
            return j;
    }
    return json_stringn(r->body, r->len);
}

static int rpc_continue(cmi_call_t *call, void *arg)
{
    rmq_rpc_t *r = arg;
    const cmi_host_t *h = call->host;
    const rmq_rpc_params_t *p = call->params;
    int rc = CMI_FLOW_CONTINUE;
    if (r->err_code != 0) {
        rc = h->call_fail(call, r->err_code, NULL, "%s", r->err_detail);
    } else {
        char type[256];
        reply_type(p, r, type, sizeof(type));
        if (r->correlation_id != NULL)
            h->msg_set_property(call->msg, CMI_SCOPE_AXIS2, "rabbitmq.message.correlation.id", r->correlation_id);
        if (h->call_response_variable(call) == NULL) {
            /* MI: the reply replaces the payload and the headers. */
            h->msg_set_payload(call->msg, r->body, r->len, type);
            replace_headers(h, call->msg, r);
        } else {
            h->call_set_result(call, reply_result(r, type));
        }
    }
    rpc_unref(r);
    return rc;
}

/* ---- on the worker: the deadline -------------------------------------------------------- */

static void rpc_cancel(cmi_call_t *call, void *arg)
{
    rmq_rpc_t *r = arg;
    rmq_rpcs_t *rs = r->rs;
    int owned = 0, unsent = 0;
    pthread_mutex_lock(&rs->lock);
    if (r->in_table) {
        table_unlink(rs, r);
        owned = 1;
    }
    if (r->pub != NULL) {
        atomic_store(&r->pub->cancelled, 1);
        int stage = atomic_load(&r->pub->stage);
        unsent = stage == RMQ_PUB_QUEUED || stage == RMQ_PUB_WAITING;
    }
    pthread_mutex_unlock(&rs->lock);
    if (unsent)
        call->host->call_fail(call, RMQ_ERR_CONNECTION, RMQ_MSG_CONNECTION,
                              "sendRpc: no connection to RabbitMQ could be had within requestTimeout");
    rmq_pool_reap_soon(rs->pool);
    if (owned) {
        /* The resume this suspension owes the host, made here (STALE). */
        call->host->call_resume(call, NULL, NULL);
        rpc_unref(r); /* the table's */
    }
}

/* ---- on the pool thread ------------------------------------------------------------------ */

static void resume(rmq_rpc_t *r)
{
    if (r->call->host->call_resume(r->call, rpc_continue, r) == CMI_CALL_STALE)
        rpc_unref(r);
}

/* The request's publish is over: a failure ends the call now (no reply
 * will come for a request the broker did not take); else the reply, not
 * the outcome, resumes it. */
static void request_done(rmq_pub_t *pub)
{
    rmq_rpc_t *r = pub->arg;
    rmq_rpcs_t *rs = r->rs;
    pthread_mutex_lock(&rs->lock);
    r->pub = NULL;
    pthread_mutex_unlock(&rs->lock);
    if (pub->outcome != RMQ_OUT_ACCEPTED && table_take_this(rs, r)) {
        if (pub->outcome == RMQ_OUT_REJECTED || pub->outcome == RMQ_OUT_RELEASED || pub->outcome == RMQ_OUT_MODIFIED) {
            r->err_code = RMQ_ERR_OPERATION;
            snprintf(r->err_detail, sizeof(r->err_detail), "sendRpc: the broker %s the request to %s",
                     pub->outcome == RMQ_OUT_REJECTED   ? "rejected"
                     : pub->outcome == RMQ_OUT_RELEASED ? "released"
                                                        : "modified",
                     pub->target.describe);
        } else {
            r->err_code = pub->err_code ? pub->err_code : RMQ_ERR_GENERAL;
            snprintf(r->err_detail, sizeof(r->err_detail), "sendRpc: %.400s", pub->err_detail);
        }
        resume(r);
    }
    rpc_unref(r); /* the request's */
    rmq_pub_free(pub);
}

static void late(rmq_rpcs_t *rs, const char *corr)
{
    unsigned long n = atomic_fetch_add(&rs->late, 1) + 1;
    int64_t now = rmq_now(), last = atomic_load(&rs->late_logged);
    int level = CMI_LOG_DEBUG;
    if (now - last >= 10000 && atomic_compare_exchange_strong(&rs->late_logged, &last, now))
        level = CMI_LOG_WARN;
    LOG(rs, level, "a reply (correlation-id %s) came after its request ended or belongs to no request of this "
        "instance: accepted and dropped (%lu so far; logged at most every 10 s)", corr[0] ? corr : "none", n);
}

/* The reply consumer's deliver callback: every reply is accepted at once. */
static rmq_deliver_result_t on_reply(void *arg, rmq_delivery_t *d, const rmq_incoming_t *m)
{
    (void)d;
    rmq_rpcs_t *rs = arg;
    rmq_rpc_t *r = table_take(rs, m->correlation_id);
    if (r == NULL) {
        late(rs, m->correlation_id);
        return RMQ_DELIVER_DONE;
    }
    r->body = rmq_xmalloc(m->len + 1);
    memcpy(r->body, m->body, m->len);
    r->body[m->len] = '\0';
    r->len = m->len;
    r->content_type = rmq_dup_or_null(m->content_type);
    r->charset = rmq_dup_or_null(m->content_encoding);
    r->correlation_id = rmq_dup_or_null(m->correlation_id);
    r->message_id = rmq_dup_or_null(m->message_id);
    if (m->nprops > 0) {
        size_t bytes = 0;
        for (size_t i = 0; i < m->nprops; i++)
            bytes += strlen(m->props[i].name) + strlen(m->props[i].value) + 2;
        r->props = rmq_xcalloc(m->nprops, sizeof(*r->props));
        char *s = r->prop_strings = rmq_xmalloc(bytes);
        for (size_t i = 0; i < m->nprops; i++) {
            size_t nl = strlen(m->props[i].name) + 1, vl = strlen(m->props[i].value) + 1;
            memcpy(s, m->props[i].name, nl);
            memcpy(s + nl, m->props[i].value, vl);
            r->props[i] = (cmi_nv_t){s, s + nl};
            s += nl + vl;
        }
        r->nprops = m->nprops;
    }
    if (r->call->host->call_resume(r->call, rpc_continue, r) == CMI_CALL_STALE) {
        late(rs, m->correlation_id); /* its deadline won by a hair */
        rpc_unref(r);
    }
    return RMQ_DELIVER_DONE;
}

/* ---- the state -------------------------------------------------------------------------- */

rmq_rpcs_t *rmq_rpcs_create(rmq_pool_t *pool)
{
    rmq_rpcs_t *rs = rmq_xcalloc(1, sizeof(*rs));
    rs->pool = pool;
    pthread_mutex_init(&rs->lock, NULL);
    /* Unique even should getrandom fail: the pid and the time mixed in. */
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = 0x9e3779b97f4a7c15ull;
    snprintf(rs->prefix, sizeof(rs->prefix), "%016llx",
             (unsigned long long)(rnd ^ ((uint64_t)getpid() << 32) ^ (uint64_t)rmq_now()));
    return rs;
}

/* Shutdown, the pool gone.  The engine stops connection configs after the
 * workers, once every message is over: a request still in the table has no
 * call left to resume (it cannot happen; freed all the same). */
void rmq_rpcs_destroy(rmq_rpcs_t *rs)
{
    if (rs == NULL)
        return;
    for (size_t s = 0; s < RPC_SLOTS; s++) {
        rmq_rpc_t *r;
        while ((r = rs->table[s]) != NULL) {
            table_unlink(rs, r);
            rpc_unref(r);
        }
    }
    while (rs->reply_queues != NULL) {
        reply_queue_t *q = rs->reply_queues;
        rs->reply_queues = q->next;
        free(q->name);
        free(q->key);
        free(q);
    }
    pthread_mutex_destroy(&rs->lock);
    free(rs);
}

/* ---- reply queues ------------------------------------------------------------------------- */

/* The instance's own reply queue: unique to this process (host, pid and a
 * random part: a container's pid is often 1), gone REPLY_EXPIRES_MS after
 * it is no longer consumed. */
static void own_reply_queue(const rmq_rpcs_t *rs, char *name, size_t n)
{
    char host[64] = "host";
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    for (char *c = host; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-'))
            *c = '-';
    snprintf(name, n, "cmi-rpc-%s-%ld-%s", host, (long)getpid(), rs->prefix);
}

/* Consumes the reply queue (once per pool and queue name).  Returns -1
 * when another sendRpc of this config declares the same queue otherwise. */
static int consume_replies(rmq_rpcs_t *rs, const rmq_target_t *t, const char *name, char *err, size_t n)
{
    pthread_mutex_lock(&rs->lock);
    reply_queue_t *q = rs->reply_queues;
    while (q != NULL && strcmp(q->name, name) != 0)
        q = q->next;
    int known = q != NULL;
    const char *key = t->key ? t->key : "";
    int clash = known && strcmp(q->key, key) != 0;
    if (!known) {
        q = rmq_xcalloc(1, sizeof(*q));
        q->name = rmq_xstrdup(name);
        q->key = rmq_xstrdup(key);
        q->next = rs->reply_queues;
        rs->reply_queues = q;
    }
    pthread_mutex_unlock(&rs->lock);
    if (clash) {
        snprintf(err, n, "replyToQueue '%s' is declared with other replyToQueue* options by another sendRpc of this "
                 "connection config (at a reload: by the running deployment, whose queue exists with them): give them "
                 "the same options, or another queue name", name);
        return -1;
    }
    if (known)
        return 0; /* another sendRpc of this config consumes it already */
    rmq_consumer_spec_t spec;
    memset(&spec, 0, sizeof(spec));
    rmq_target_copy(&spec.target, t);
    spec.links = 1;
    spec.credit = REPLY_CREDIT;
    spec.ack_wait_ms = 60000;
    spec.requeue_delay_ms = 1000;
    spec.deliver = on_reply;
    spec.arg = rs;
    rmq_pool_consume(rs->pool, &spec);
    LOG(rs, CMI_LOG_INFO, "replies to sendRpc come to %s", t->describe);
    return 0;
}

int rmq_rpc_prepare(cmi_binding_t *b, char *err, size_t n)
{
    const rmq_rpc_params_t *p = b->params;
    const rmq_init_params_t *ip = b->instance->params;
    rmq_rpcs_t *rs = ((rmq_instance_t *)b->instance->data)->rpcs;
    rpc_binding_t *rb = rmq_xcalloc(1, sizeof(*rb));
    if (rmq_name_policy_init(&rb->policy, p->allow_address, p->target_pattern, err, n) != 0) {
        free(rb);
        return -1;
    }
    rmq_target_spec_t q;
    rmq_target_spec_read(&q, p, RMQ_R_REPLY, &p->reply, 0, NULL);
    if (p->reply.name != NULL && p->reply.name[0] != '/' && !q.queue.auto_declare) {
        /* MI's sendRpc declares its reply queue whatever replyToQueueAutoDeclare
         * says (MI's own request-response example relies on it): declared
         * when missing, left as it is when it exists (docs/rabbitmq.md). */
        q.queue.auto_declare = RMQ_DECLARE_IF_MISSING;
        LOG(rs, CMI_LOG_INFO, "sendRpc: replyToQueueAutoDeclare is false, but MI declares the reply queue whatever it "
            "says: replyToQueue '%s' is declared if it does not exist", p->reply.name);
    }
    char own[200];
    char *args = NULL;
    if (p->reply.name == NULL) {
        own_reply_queue(rs, own, sizeof(own));
        q.queue.name = own;
        rmq_target_spec_set_queue(&q, RMQ_Q_NAME);
        /* Declared with an expiry: the broker deletes it once the instance
         * is gone (3.x has no exclusive queues through the management API). */
        args = rmq_xasprintf("x-expires=%d%s%s", REPLY_EXPIRES_MS, p->reply.arguments ? "," : "",
                             p->reply.arguments ? p->reply.arguments : "");
        q.queue.arguments = args;
        rmq_target_spec_set_queue(&q, RMQ_Q_ARGUMENTS);
    }
    int rc = rmq_target_build(&rb->reply, &q, ip->vhost, err, n);
    free(args);
    if (rc != 0) {
        rmq_name_policy_dispose(&rb->policy);
        free(rb);
        return -1;
    }
    char own_name[256];
    snprintf(own_name, sizeof(own_name), "%s", q.queue.name);
    if (consume_replies(rs, &rb->reply, own_name, err, n) != 0) {
        rmq_target_dispose(&rb->reply);
        rmq_name_policy_dispose(&rb->policy);
        free(rb);
        return -1;
    }
    b->data = rb;
    return 0;
}

void rmq_rpc_release(cmi_binding_t *b)
{
    rpc_binding_t *rb = b->data;
    if (rb != NULL) {
        rmq_target_dispose(&rb->reply);
        rmq_name_policy_dispose(&rb->policy);
        free(rb);
    }
    b->data = NULL;
}

/* ---- the call ------------------------------------------------------------------------------- */

int rmq_rpc_run(cmi_call_t *call)
{
    const cmi_host_t *h = call->host;
    const rmq_rpc_params_t *p = call->params;
    const rpc_binding_t *rb = call->binding->data;
    const rmq_init_params_t *ip = call->binding->instance->params;
    rmq_rpcs_t *rs = ((rmq_instance_t *)call->binding->instance->data)->rpcs;
    char err[512];
    rmq_target_spec_t q;
    rmq_target_spec_read(&q, p, RMQ_R_QUEUE, &p->request, 0, NULL);
    q.policy = &rb->policy;
    rmq_pub_t *pub = rmq_xcalloc(1, sizeof(*pub));
    rmq_rpc_t *r = rmq_xcalloc(1, sizeof(*r));
    if (q.queue.name == NULL || rmq_target_build(&pub->target, &q, ip->vhost, err, sizeof(err)) != 0) {
        free(pub);
        free(r);
        return h->call_fail(call, RMQ_ERR_CONFIG, RMQ_MSG_CONFIG, "sendRpc: %s",
                            q.queue.name == NULL ? "the queue is empty" : err);
    }
    /* The reply queue is declared (on each connection, cached) before the
     * request goes: a reply to a queue that does not exist yet is dropped
     * by the broker (the instance's own queue needs the management API on
     * 3.x, and expires after a long outage). */
    rmq_target_t reply;
    rmq_target_copy(&reply, &rb->reply);
    rmq_target_prepend(&pub->target, &reply);
    snprintf(r->corr, sizeof(r->corr), "%s-%llu", rs->prefix, (unsigned long long)atomic_fetch_add(&rs->seq, 1) + 1);
    rmq_outgoing_t out = {
        .body_type = CMI_PARAM_GIVEN(p, RMQ_R_BODY_TYPE) ? p->body_type : RMQ_BODY_NONE,
        .body_rows = {RMQ_R_BODY_JSON, RMQ_R_BODY_XML, RMQ_R_BODY_TEXT},
        .bodies = {&p->body_json, &p->body_xml, &p->body_text},
        .charset = p->charset,
        .headers = p->headers,
        .correlation_id = r->corr,
        .reply_to = rmq_target_address(&rb->reply, rmq_pool_format(rs->pool)),
        .priority = -1,
    };
    int rc = rmq_pub_build_message(call, &out, pub, err, sizeof(err));
    if (rc != 0) {
        rmq_pub_free(pub);
        free(r);
        return rc == -2 ? CMI_FLOW_ERROR : h->call_fail(call, RMQ_ERR_CONFIG, RMQ_MSG_CONFIG, "sendRpc: %s", err);
    }
    r->call = call;
    r->rs = rs;
    r->pub = pub;
    atomic_init(&r->refs, 2); /* the table's and the request's */
    pub->done = request_done;
    pub->arg = r;
    pub->confirm = 1; /* a refused request fails now, not at the timeout */
    h->call_suspend(call, p->request_timeout_ms, RMQ_ERR_TIMEOUT, RMQ_MSG_TIMEOUT);
    h->call_on_cancel(call, rpc_cancel, r);
    table_add(rs, r); /* after the suspend: a reply may resume it from now on */
    rmq_pool_submit(rs->pool, pub);
    return CMI_FLOW_SUSPENDED;
}
