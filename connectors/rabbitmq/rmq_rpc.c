/* sendRpc (spec §4): a request with a fresh correlation-id and a reply-to,
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
#include <unistd.h>

#include "rmq_pool.h"

#define LOG(pool, level, ...) (pool)->host->log((level), (pool)->component, __VA_ARGS__)
/* A reply queue of the instance's own is deleted by the broker this long
 * after its last consumer went (the instance stopped or died). */
#define REPLY_EXPIRES_MS 600000
#define REPLY_CREDIT 256

struct rmq_rpc {
    rmq_rpc_t *hnext; /* pool->rpc_table chain (under rpc_lock) */
    int in_table;     /* under rpc_lock */
    char corr[96];
    cmi_call_t *call;
    rmq_pub_t *pub; /* under rpc_lock: the request while the pool holds it */
    rmq_pool_t *pool;
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
    rmq_target_t reply; /* the reply queue: its declaration and addresses */
} rpc_binding_t;

/* ---- the table ----------------------------------------------------------------------- */

static size_t slot_of(const char *corr)
{
    size_t h = 5381;
    for (const unsigned char *p = (const unsigned char *)corr; *p; p++)
        h = h * 33 + *p;
    return h % RMQ_RPC_SLOTS;
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

static void table_add(rmq_pool_t *pool, rmq_rpc_t *r)
{
    size_t s = slot_of(r->corr);
    pthread_mutex_lock(&pool->rpc_lock);
    r->hnext = pool->rpc_table[s];
    pool->rpc_table[s] = r;
    r->in_table = 1;
    pthread_mutex_unlock(&pool->rpc_lock);
}

/* Caller holds rpc_lock. */
static void table_unlink(rmq_pool_t *pool, rmq_rpc_t *r)
{
    rmq_rpc_t **at = &pool->rpc_table[slot_of(r->corr)];
    while (*at != NULL && *at != r)
        at = &(*at)->hnext;
    if (*at == r)
        *at = r->hnext;
    r->hnext = NULL;
    r->in_table = 0;
}

/* Takes the request waiting for corr out of the table; NULL: none. */
static rmq_rpc_t *table_take(rmq_pool_t *pool, const char *corr)
{
    pthread_mutex_lock(&pool->rpc_lock);
    rmq_rpc_t *r = pool->rpc_table[slot_of(corr)];
    while (r != NULL && strcmp(r->corr, corr) != 0)
        r = r->hnext;
    if (r != NULL)
        table_unlink(pool, r);
    pthread_mutex_unlock(&pool->rpc_lock);
    return r;
}

/* Takes r out when it is still in (1), else 0: someone else owns the resume. */
static int table_take_this(rmq_pool_t *pool, rmq_rpc_t *r)
{
    pthread_mutex_lock(&pool->rpc_lock);
    int had = r->in_table;
    if (had)
        table_unlink(pool, r);
    pthread_mutex_unlock(&pool->rpc_lock);
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
    rmq_pool_t *pool = r->pool;
    int owned = 0, unsent = 0;
    pthread_mutex_lock(&pool->rpc_lock);
    if (r->in_table) {
        table_unlink(pool, r);
        owned = 1;
    }
    if (r->pub != NULL) {
        atomic_store(&r->pub->cancelled, 1);
        int stage = atomic_load(&r->pub->stage);
        unsent = stage == RMQ_PUB_QUEUED || stage == RMQ_PUB_WAITING;
    }
    pthread_mutex_unlock(&pool->rpc_lock);
    if (unsent)
        call->host->call_fail(call, RMQ_ERR_CONNECTION, RMQ_MSG_CONNECTION,
                              "sendRpc: no connection to RabbitMQ could be had within requestTimeout");
    rmq_pool_reap_soon(pool);
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

void rmq_rpc_request_done(rmq_pool_t *pool, rmq_pub_t *pub)
{
    rmq_rpc_t *r = pub->rpc;
    pthread_mutex_lock(&pool->rpc_lock);
    r->pub = NULL;
    pthread_mutex_unlock(&pool->rpc_lock);
    if (pub->outcome != RMQ_OUT_ACCEPTED && table_take_this(pool, r)) {
        /* No reply will come for a request the broker did not take. */
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

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static void late(rmq_pool_t *pool, const char *corr)
{
    unsigned long n = atomic_fetch_add(&pool->rpc_late, 1) + 1;
    int64_t now = rmq_pool_now(), last = atomic_load(&pool->rpc_late_logged);
    int level = CMI_LOG_DEBUG;
    if (now - last >= 10000 && atomic_compare_exchange_strong(&pool->rpc_late_logged, &last, now))
        level = CMI_LOG_WARN;
    LOG(pool, level, "a reply (correlation-id %s) came after its request ended or belongs to no request of this "
        "instance: accepted and dropped (%lu so far; logged at most every 10 s)", corr[0] ? corr : "none", n);
}

/* The reply consumer's deliver callback: always 1 (accept it now). */
static int on_reply(void *arg, rmq_delivery_t *d, const rmq_incoming_t *m)
{
    (void)d;
    rmq_pool_t *pool = arg;
    rmq_rpc_t *r = table_take(pool, m->correlation_id);
    if (r == NULL) {
        late(pool, m->correlation_id);
        return 1;
    }
    r->body = malloc(m->len + 1);
    if (r->body == NULL)
        abort();
    memcpy(r->body, m->body, m->len);
    r->body[m->len] = '\0';
    r->len = m->len;
    r->content_type = dup_or_null(m->content_type);
    r->charset = dup_or_null(m->content_encoding);
    r->correlation_id = dup_or_null(m->correlation_id);
    r->message_id = dup_or_null(m->message_id);
    if (m->nprops > 0) {
        size_t bytes = 0;
        for (size_t i = 0; i < m->nprops; i++)
            bytes += strlen(m->props[i].name) + strlen(m->props[i].value) + 2;
        r->props = calloc(m->nprops, sizeof(*r->props));
        char *s = r->prop_strings = malloc(bytes);
        if (r->props == NULL || s == NULL)
            abort();
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
        late(pool, m->correlation_id); /* its deadline won by a hair */
        rpc_unref(r);
    }
    return 1;
}

/* Shutdown, the pool thread gone.  The engine stops connection configs
 * after the workers, once every message is over: a request still in the
 * table has no call left to resume (it cannot happen; freed all the same). */
void rmq_rpc_dispose(rmq_pool_t *pool)
{
    for (size_t s = 0; s < RMQ_RPC_SLOTS; s++) {
        rmq_rpc_t *r;
        while ((r = pool->rpc_table[s]) != NULL) {
            table_unlink(pool, r);
            rpc_unref(r);
        }
    }
    while (pool->reply_queues != NULL) {
        rmq_reply_queue_t *q = pool->reply_queues;
        pool->reply_queues = q->next;
        free(q->name);
        free(q->key);
        free(q);
    }
}

/* ---- reply queues ------------------------------------------------------------------------- */

void rmq_queue_opts_to_publish(const void *params, unsigned base, const rmq_queue_opts_t *o, rmq_publish_params_t *q)
{
    memset(q, 0, sizeof(*q));
    q->queue = o->queue;
    q->queue_auto_declare = o->queue_auto_declare;
    q->queue_type = o->queue_type;
    q->queue_arguments = o->queue_arguments;
    q->max_priority = o->max_priority;
    q->initial_member_count = o->initial_member_count;
    q->delivery_limit = o->delivery_limit;
    q->dead_letter_strategy = o->dead_letter_strategy;
    q->max_age = o->max_age;
    q->max_segment_size = o->max_segment_size;
    q->queue_exclusive = o->queue_exclusive;
    q->queue_auto_delete = o->queue_auto_delete;
    q->queue_overflow = o->queue_overflow;
    q->body_type = RMQ_BODY_NONE;
    for (unsigned i = 0; i < RMQ_QUEUE_ROWS; i++) {
        if (CMI_PARAM_GIVEN(params, base + i))
            q->head.given[i / 64] |= 1ull << (i % 64);
        if (CMI_PARAM_IS_DYNAMIC(params, base + i))
            q->head.dynamic[i / 64] |= 1ull << (i % 64);
    }
}

/* The instance's own reply queue: unique to this process (host, pid and a
 * random part: a container's pid is often 1), gone REPLY_EXPIRES_MS after
 * it is no longer consumed. */
static void own_reply_queue(rmq_pool_t *pool, char *name, size_t n)
{
    char host[64] = "host";
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    for (char *c = host; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-'))
            *c = '-';
    snprintf(name, n, "cmi-rpc-%s-%ld-%s", host, (long)getpid(), pool->rpc_prefix);
}

/* Consumes the reply queue (once per pool and queue name).  Returns -1
 * when another sendRpc of this config declares the same queue otherwise. */
static int consume_replies(rmq_pool_t *pool, const rmq_target_t *t, const char *name, char *err, size_t n)
{
    pthread_mutex_lock(&pool->rpc_lock);
    rmq_reply_queue_t *q = pool->reply_queues;
    while (q != NULL && strcmp(q->name, name) != 0)
        q = q->next;
    int known = q != NULL;
    const char *key = t->key ? t->key : "";
    int clash = known && strcmp(q->key, key) != 0;
    if (!known) {
        q = calloc(1, sizeof(*q));
        if (q == NULL || (q->name = strdup(name)) == NULL || (q->key = strdup(key)) == NULL)
            abort();
        q->next = pool->reply_queues;
        pool->reply_queues = q;
    }
    pthread_mutex_unlock(&pool->rpc_lock);
    if (clash) {
        snprintf(err, n, "replyToQueue '%s' is declared with other replyToQueue* options by another sendRpc of this "
                 "connection config: give them the same options", name);
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
    spec.arg = pool;
    rmq_pool_consume(pool, &spec);
    LOG(pool, CMI_LOG_INFO, "replies to sendRpc come to %s", t->describe);
    return 0;
}

int rmq_rpc_prepare(cmi_binding_t *b, char *err, size_t n)
{
    const rmq_rpc_params_t *p = b->params;
    const rmq_init_params_t *ip = b->instance->params;
    rmq_pool_t *pool = b->instance->data;
    rpc_binding_t *rb = calloc(1, sizeof(*rb));
    if (rb == NULL) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    rmq_publish_params_t q;
    rmq_queue_opts_to_publish(p, RMQ_R_REPLY, &p->reply, &q);
    char own[200];
    if (p->reply.queue == NULL) {
        own_reply_queue(pool, own, sizeof(own));
        q.queue = own;
        q.head.given[RMQ_P_QUEUE / 64] |= 1ull << (RMQ_P_QUEUE % 64);
        /* Declared with an expiry: the broker deletes it once the instance
         * is gone (3.x has no exclusive queues through the management API). */
        char *args = NULL;
        if (asprintf(&args, "x-expires=%d%s%s", REPLY_EXPIRES_MS, p->reply.queue_arguments ? "," : "",
                     p->reply.queue_arguments ? p->reply.queue_arguments : "") < 0)
            abort();
        q.queue_arguments = args;
        q.head.given[RMQ_P_QUEUE_ARGUMENTS / 64] |= 1ull << (RMQ_P_QUEUE_ARGUMENTS % 64);
    }
    int rc = rmq_target_build(&rb->reply, &q, ip->vhost, err, n);
    if (p->reply.queue == NULL)
        free((char *)q.queue_arguments);
    if (rc != 0) {
        free(rb);
        return -1;
    }
    char own_name[256];
    snprintf(own_name, sizeof(own_name), "%s", q.queue);
    if (consume_replies(pool, &rb->reply, own_name, err, n) != 0) {
        rmq_target_dispose(&rb->reply);
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
    rmq_pool_t *pool = call->binding->instance->data;
    char err[512];
    rmq_publish_params_t q;
    rmq_queue_opts_to_publish(p, RMQ_R_QUEUE, &p->request, &q);
    rmq_pub_t *pub = calloc(1, sizeof(*pub));
    rmq_rpc_t *r = calloc(1, sizeof(*r));
    if (pub == NULL || r == NULL)
        abort();
    if (q.queue == NULL || rmq_target_build(&pub->target, &q, ip->vhost, err, sizeof(err)) != 0) {
        free(pub);
        free(r);
        return h->call_fail(call, RMQ_ERR_CONFIG, RMQ_MSG_CONFIG, "sendRpc: %s",
                            q.queue == NULL ? "the queue is empty" : err);
    }
    /* The reply queue is declared (on each connection, cached) before the
     * request goes: a reply to a queue that does not exist yet is dropped
     * by the broker (the instance's own queue needs the management API on
     * 3.x, and expires after a long outage). */
    rmq_target_t reply;
    rmq_target_copy(&reply, &rb->reply);
    rmq_target_prepend(&pub->target, &reply);
    snprintf(r->corr, sizeof(r->corr), "%s-%llu", pool->rpc_prefix,
             (unsigned long long)atomic_fetch_add(&pool->rpc_seq, 1) + 1);
    rmq_outgoing_t out = {
        .body_type = CMI_PARAM_GIVEN(p, RMQ_R_BODY_TYPE) ? p->body_type : RMQ_BODY_NONE,
        .body_rows = {RMQ_R_BODY_JSON, RMQ_R_BODY_XML, RMQ_R_BODY_TEXT},
        .bodies = {&p->body_json, &p->body_xml, &p->body_text},
        .charset = p->charset,
        .headers = p->headers,
        .correlation_id = r->corr,
        .reply_to = rmq_target_address(&rb->reply, atomic_load(&pool->format)),
        .priority = -1,
    };
    int rc = rmq_pub_build_message(call, &out, pub, err, sizeof(err));
    if (rc != 0) {
        rmq_pub_free(pub);
        free(r);
        return rc == -2 ? CMI_FLOW_ERROR : h->call_fail(call, RMQ_ERR_CONFIG, RMQ_MSG_CONFIG, "sendRpc: %s", err);
    }
    r->call = call;
    r->pool = pool;
    r->pub = pub;
    atomic_init(&r->refs, 2); /* the table's and the request's */
    pub->call = call;
    pub->confirm = 1; /* a refused request fails now, not at the timeout */
    pub->rpc = r;
    h->call_suspend(call, p->request_timeout_ms, RMQ_ERR_TIMEOUT, RMQ_MSG_TIMEOUT);
    h->call_on_cancel(call, rpc_cancel, r);
    table_add(pool, r); /* after the suspend: a reply may resume it from now on */
    rmq_pool_submit(pool, pub);
    return CMI_FLOW_SUSPENDED;
}
