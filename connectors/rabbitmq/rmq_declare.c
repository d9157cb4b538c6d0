/* Declarations on a connection: what a target needs before its first
 * publish or receiver (exchange, queue, binding), once per connection
 * (until it reconnects), shared by everything that waits for it.
 *
 * Declarations are cluster-wide, so the pool has at most one of a key
 * under way: a connection that needs one while another connection's is
 * under way follows it and takes its answer (RabbitMQ 4.0.5 ends sessions
 * when two connections declare one queue at once; and one request is
 * cheaper than several).  Should that connection drop first, one follower
 * declares itself.
 *
 * RabbitMQ 3.x: through the HTTP management API (rmq_mgmt.c, its own
 * thread; answers come back through the pool's inbox).  RabbitMQ 4.x:
 * over the /management node: a link pair of one name, both ends addressed
 * /management, both with the link property paired=true; requests go
 * pre-settled, one at a time per declaration, and answers come back on the
 * receiver with the request's message-id as their correlation-id
 * (rmq_v2mgmt.c encodes and decodes).
 *
 * Whoever waits (publishes, receivers) hears of the end through
 * pool->declared. */
#include "config.h"

#include <proton/codec.h>
#include <proton/condition.h>
#include <proton/terminus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_core.h"

#define DECLARE_TIMEOUT_MS 30000 /* a declaration's answer, at most */
#define MAX_DECLS 1024           /* declarations remembered per connection */

int rmq_target_needs_declaring(const rmq_target_t *t, int format)
{
    for (size_t i = 0; i < t->ndeclare; i++)
        if (format == RMQ_FORMAT_V2 || t->declare[i].on_v1)
            return 1;
    return 0;
}

/* peer_status: the connection whose declaration was followed dropped. */
#define PEER_GONE (-1)

static void decl_free(rmq_decl_t *d)
{
    rmq_declare_free(d->ops, d->nops);
    rmq_declare_free(d->plan, d->nplan);
    free(d->peer_detail);
    free(d->key);
    free(d);
}

static rmq_decl_t *find(rmq_conn_t *c, const char *key)
{
    rmq_decl_t *d;
    SLIST_FOREACH(d, &c->decls, entry)
        if (strcmp(d->key, key) == 0)
            return d;
    return NULL;
}

/* Another connection's declaration of key that is under way, if any. */
static rmq_decl_t *under_way_elsewhere(rmq_pool_t *pool, const rmq_conn_t *c, const char *key)
{
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *o = &pool->conns[i];
        if (o == c || o->pn == NULL)
            continue;
        rmq_decl_t *d = find(o, key);
        if (d != NULL && d->state == RMQ_DECL_RUNNING && !d->follows)
            return d;
    }
    return NULL;
}

/* The connections that follow d hear of its end in their own events. */
static void tell_followers(rmq_pool_t *pool, const rmq_conn_t *c, const rmq_decl_t *d, int status,
                           const char *detail)
{
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *o = &pool->conns[i];
        if (o == c || o->pn == NULL)
            continue;
        rmq_decl_t *f = find(o, d->key);
        if (f == NULL || !f->follows || f->peer_ended)
            continue;
        f->peer_ended = 1;
        f->peer_status = status;
        f->peer_detail = rmq_dup_or_null(detail);
        o->decls_peer_ended = 1;
        pn_connection_wake(o->pn);
    }
}

/* A declaration is over: whoever waits for it goes on (or fails), on this
 * connection and on those that follow it, and a failed one is forgotten
 * (a later publish tries again). */
static void decl_finish(rmq_pool_t *pool, rmq_conn_t *c, rmq_decl_t *d, int status, const char *detail)
{
    if (!d->follows)
        tell_followers(pool, c, d, status, detail);
    pool->declared(pool, c, d, status, detail);
    if (status == 0) {
        d->state = RMQ_DECL_DONE;
        return;
    }
    SLIST_REMOVE(&c->decls, d, rmq_decl, entry);
    c->ndecls--;
    decl_free(d);
}

/* ---- 4.x: the /management link pair ------------------------------------------------- */

static void set_paired(pn_link_t *l)
{
    pn_data_t *props = pn_link_properties(l);
    pn_data_put_map(props);
    pn_data_enter(props);
    pn_data_put_symbol(props, pn_bytes(6, "paired"));
    pn_data_put_bool(props, true);
    pn_data_exit(props);
}

static void mgmt_links(rmq_conn_t *c)
{
    if (c->mgmt_out != NULL)
        return;
    c->mgmt_out = pn_sender(c->ssn, "management-link-pair");
    c->mgmt_in = pn_receiver(c->ssn, "management-link-pair");
    c->mgmt_request_tag.role = RMQ_ROLE_MGMT_REQUEST;
    c->mgmt_response_tag.role = RMQ_ROLE_MGMT_RESPONSE;
    pn_link_set_context(c->mgmt_out, &c->mgmt_request_tag);
    pn_link_set_context(c->mgmt_in, &c->mgmt_response_tag);
    pn_link_t *both[] = {c->mgmt_out, c->mgmt_in};
    for (int i = 0; i < 2; i++) {
        pn_terminus_set_address(pn_link_source(both[i]), "/management");
        pn_terminus_set_address(pn_link_target(both[i]), "/management");
        pn_link_set_snd_settle_mode(both[i], PN_SND_SETTLED);
        pn_link_set_rcv_settle_mode(both[i], PN_RCV_FIRST);
        set_paired(both[i]);
        pn_link_open(both[i]);
    }
    pn_link_flow(c->mgmt_in, 16);
}

void rmq_declare_flush(rmq_pool_t *pool, rmq_conn_t *c)
{
    if (!c->mgmt_ready)
        return;
    rmq_decl_t *d, *next;
    SLIST_FOREACH_SAFE(d, &c->decls, entry, next) {
        if (d->ops == NULL || d->state != RMQ_DECL_RUNNING || d->request_id[0] != '\0')
            continue;
        if (pn_link_credit(c->mgmt_out) <= 0)
            return;
        snprintf(d->request_id, sizeof(d->request_id), "cmi-decl-%llu", (unsigned long long)++c->tag);
        size_t len;
        char err[256];
        char *bytes = rmq_v2_request_encode(&d->ops[d->next_op], d->request_id, &len, err, sizeof(err));
        if (bytes == NULL) {
            decl_finish(pool, c, d, RMQ_ERR_GENERAL, err);
            continue;
        }
        uint64_t tag = ++c->tag;
        pn_delivery_t *dl = pn_delivery(c->mgmt_out, pn_dtag((const char *)&tag, sizeof(tag)));
        pn_link_send(c->mgmt_out, bytes, len);
        pn_link_advance(c->mgmt_out);
        pn_delivery_settle(dl); /* the node wants requests pre-settled */
        free(bytes);
    }
}

static void mgmt_answer(rmq_pool_t *pool, rmq_conn_t *c, pn_delivery_t *dl)
{
    if (!pn_delivery_readable(dl) || pn_delivery_partial(dl))
        return;
    size_t size = pn_delivery_pending(dl);
    char *buf = rmq_xmalloc(size);
    ssize_t n = pn_link_recv(c->mgmt_in, buf, size);
    pn_link_advance(c->mgmt_in);
    pn_delivery_settle(dl);
    pn_link_flow(c->mgmt_in, 1);
    char corr[64] = "", detail[400] = "undecodable answer from /management";
    int rc = n < 0 ? -1 : rmq_v2_response_status(buf, (size_t)n, corr, sizeof(corr), detail, sizeof(detail));
    free(buf);
    rmq_decl_t *d, *next;
    if (corr[0] == '\0') {
        /* An answer that names no request: whatever waits for one cannot
         * be told apart, so all of them fail (and may be tried again). */
        SLIST_FOREACH_SAFE(d, &c->decls, entry, next)
            if (d->ops != NULL && d->request_id[0] != '\0')
                decl_finish(pool, c, d, RMQ_ERR_AMQP, detail);
        return;
    }
    SLIST_FOREACH(d, &c->decls, entry) {
        if (d->ops == NULL || d->request_id[0] == '\0' || strcmp(d->request_id, corr) != 0)
            continue;
        d->request_id[0] = '\0';
        /* An if_missing GET: "exists" skips the declaration after it, 404 runs it. */
        int if_missing = d->ops[d->next_op].if_missing;
        if (rc == 404 && if_missing)
            rc = 0;
        else if (rc == 0 && if_missing)
            d->next_op++;
        if (rc != 0)
            decl_finish(pool, c, d, rc == 404 ? RMQ_DECL_NOT_FOUND : rmq_declare_refusal_code(rc, detail), detail);
        else if (++d->next_op >= d->nops)
            decl_finish(pool, c, d, 0, NULL);
        break;
    }
    rmq_declare_flush(pool, c);
}

/* The node refused the pair (permissions, say): declarations on this
 * connection fail; a later publish makes a new pair. */
static void mgmt_closed(rmq_pool_t *pool, rmq_conn_t *c, pn_link_t *pl)
{
    char why[400], detail[500];
    rmq_condition_text(pn_link_remote_condition(pl), why, sizeof(why));
    snprintf(detail, sizeof(detail), "the /management node closed the link: %s", why);
    pn_link_close(c->mgmt_out);
    pn_link_close(c->mgmt_in);
    pn_link_free(c->mgmt_out);
    pn_link_free(c->mgmt_in);
    c->mgmt_out = c->mgmt_in = NULL;
    c->mgmt_ready = 0;
    rmq_decl_t *d, *next;
    SLIST_FOREACH_SAFE(d, &c->decls, entry, next)
        if (d->ops != NULL && d->state == RMQ_DECL_RUNNING)
            decl_finish(pool, c, d, RMQ_ERR_AMQP, detail);
}

void rmq_declare_on_link(rmq_pool_t *pool, rmq_conn_t *c, pn_event_t *e, rmq_link_tag_t *tag)
{
    switch (pn_event_type(e)) {
    case PN_LINK_REMOTE_OPEN:
        c->mgmt_ready = pn_link_state(c->mgmt_out) & PN_REMOTE_ACTIVE && pn_link_state(c->mgmt_in) & PN_REMOTE_ACTIVE;
        rmq_declare_flush(pool, c);
        break;
    case PN_LINK_FLOW:
        if (tag->role == RMQ_ROLE_MGMT_REQUEST)
            rmq_declare_flush(pool, c);
        break;
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH:
        mgmt_closed(pool, c, pn_event_link(e));
        break;
    case PN_DELIVERY:
        if (tag->role == RMQ_ROLE_MGMT_RESPONSE)
            mgmt_answer(pool, c, pn_event_delivery(e));
        break; /* requests are pre-settled */
    default:
        break;
    }
}

/* ---- starting one ---------------------------------------------------------------------- */

/* Past MAX_DECLS, the oldest finished declaration is forgotten: a later
 * publish to it declares it again (harmless: declarations are idempotent). */
static void forget_done_decl(rmq_conn_t *c)
{
    rmq_decl_t *d, *victim = NULL;
    SLIST_FOREACH(d, &c->decls, entry)
        if (d->state == RMQ_DECL_DONE)
            victim = d; /* the list is newest first: the last is the oldest */
    if (victim == NULL)
        return;
    SLIST_REMOVE(&c->decls, victim, rmq_decl, entry);
    c->ndecls--;
    decl_free(victim);
}

/* The 3.x management API's callback (its thread): to the pool's inbox. */
static void mgmt_done(void *arg, int status, const char *detail)
{
    rmq_mgmt_result_t *r = arg;
    r->status = status;
    snprintf(r->detail, sizeof(r->detail), "%s", detail ? detail : "");
    rmq_pool_t *pool = r->pool;
    pthread_mutex_lock(&pool->lock);
    r->next = pool->results;
    pool->results = r;
    pthread_mutex_unlock(&pool->lock);
    rmq_pool_interrupt(pool);
}

/* Sends d's requests: over /management on 4.x (from rmq_declare_flush,
 * called once the caller has recorded what waits), through the HTTP
 * management API on 3.x. */
static void start(rmq_pool_t *pool, rmq_conn_t *c, rmq_decl_t *d, const rmq_declare_t *ops, size_t nops)
{
    d->follows = 0;
    if (c->format == RMQ_FORMAT_V2) {
        d->ops = rmq_xcalloc(nops, sizeof(*d->ops));
        rmq_declare_copy(d->ops, ops, nops);
        d->nops = nops;
        mgmt_links(c);
        return;
    }
    rmq_mgmt_result_t *r = rmq_xcalloc(1, sizeof(*r));
    r->pool = pool;
    r->conn = c->index;
    r->generation = c->generation;
    r->key = rmq_xstrdup(d->key);
    rmq_mgmt_submit(pool->mgmt, ops, nops, mgmt_done, r);
}

rmq_decl_t *rmq_declare(rmq_pool_t *pool, rmq_conn_t *c, const rmq_target_t *t)
{
    rmq_decl_t *d = find(c, t->key);
    if (d != NULL)
        return d;
    d = rmq_xcalloc(1, sizeof(*d));
    d->conn = c;
    d->key = rmq_xstrdup(t->key);
    d->state = RMQ_DECL_RUNNING;
    rmq_pub_list_init(&d->waiting);
    d->deadline = rmq_now() + DECLARE_TIMEOUT_MS;
    SLIST_INSERT_HEAD(&c->decls, d, entry);
    c->ndecls++;
    if (c->ndecls > MAX_DECLS)
        forget_done_decl(c);
    rmq_pool_timer_changed(pool);
    if (under_way_elsewhere(pool, c, d->key) != NULL) {
        d->follows = 1;
        d->plan = rmq_xcalloc(t->ndeclare, sizeof(*d->plan));
        rmq_declare_copy(d->plan, t->declare, t->ndeclare);
        d->nplan = t->ndeclare;
        return d;
    }
    start(pool, c, d, t->declare, t->ndeclare);
    return d;
}

void rmq_declare_forget(rmq_pool_t *pool, const char *key)
{
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *c = &pool->conns[i];
        rmq_decl_t *d = find(c, key);
        if (d == NULL || d->state != RMQ_DECL_DONE)
            continue;
        SLIST_REMOVE(&c->decls, d, rmq_decl, entry);
        c->ndecls--;
        decl_free(d);
    }
}

/* The declaration d followed ended: its answer is d's, unless its
 * connection dropped first; then d declares itself, unless another
 * follower already does. */
static void follow_up(rmq_pool_t *pool, rmq_conn_t *c, rmq_decl_t *d)
{
    int status = d->peer_status;
    char *detail = d->peer_detail;
    d->peer_detail = NULL;
    d->peer_ended = 0;
    if (status != PEER_GONE)
        decl_finish(pool, c, d, status, detail);
    else if (under_way_elsewhere(pool, c, d->key) == NULL)
        start(pool, c, d, d->plan, d->nplan);
    free(detail);
}

/* ---- 3.x: answers of the management API ----------------------------------------------- */

void rmq_declare_free_results(rmq_mgmt_result_t *r)
{
    while (r != NULL) {
        rmq_mgmt_result_t *next = r->next;
        free(r->key);
        free(r);
        r = next;
    }
}

/* Each answer goes to its connection, which deals with it in its own
 * events (their order does not matter). */
void rmq_declare_take_results(rmq_pool_t *pool, rmq_mgmt_result_t *results)
{
    while (results != NULL) {
        rmq_mgmt_result_t *r = results;
        results = r->next;
        rmq_conn_t *c = &pool->conns[r->conn];
        if (c->pn == NULL || c->generation != r->generation) {
            r->next = NULL;
            rmq_declare_free_results(r);
            continue;
        }
        r->next = c->results;
        c->results = r;
        pn_connection_wake(c->pn);
    }
}

static void on_result(rmq_pool_t *pool, rmq_conn_t *c, rmq_mgmt_result_t *r)
{
    rmq_decl_t *d = find(c, r->key);
    if (c->generation != r->generation || c->state != RMQ_CONN_UP || d == NULL)
        return; /* the connection dropped meanwhile: its publishes moved on */
    decl_finish(pool, c, d, r->status, r->detail);
}

void rmq_declare_on_wake(rmq_pool_t *pool, rmq_conn_t *c)
{
    if (c->decls_peer_ended) {
        c->decls_peer_ended = 0;
        rmq_decl_t *d, *next;
        SLIST_FOREACH_SAFE(d, &c->decls, entry, next)
            if (d->follows && d->peer_ended)
                follow_up(pool, c, d);
        rmq_declare_flush(pool, c);
    }
    if (c->decls_expired) {
        c->decls_expired = 0;
        int64_t now = rmq_now();
        rmq_decl_t *d, *next;
        SLIST_FOREACH_SAFE(d, &c->decls, entry, next)
            if (d->state == RMQ_DECL_RUNNING && d->deadline <= now)
                decl_finish(pool, c, d, RMQ_ERR_GENERAL, "no answer to the declaration within 30 s");
    }
    while (c->results != NULL) {
        rmq_mgmt_result_t *r = c->results;
        c->results = r->next;
        r->next = NULL;
        on_result(pool, c, r);
        rmq_declare_free_results(r);
    }
}

/* ---- deadlines and losing the connection ---------------------------------------------- */

int64_t rmq_declare_next_deadline(const rmq_conn_t *c)
{
    int64_t next = 0;
    const rmq_decl_t *d;
    SLIST_FOREACH(d, &c->decls, entry)
        if (d->state == RMQ_DECL_RUNNING && (next == 0 || d->deadline < next))
            next = d->deadline;
    return next;
}

/* Overdue answers are dealt with in c's own events. */
void rmq_declare_on_timeout(rmq_conn_t *c, int64_t now)
{
    int expired = 0;
    const rmq_decl_t *d;
    SLIST_FOREACH(d, &c->decls, entry)
        expired |= d->state == RMQ_DECL_RUNNING && d->deadline <= now;
    if (expired && c->pn != NULL) {
        c->decls_expired = 1;
        pn_connection_wake(c->pn);
    }
}

void rmq_declare_on_closed(rmq_conn_t *c, rmq_pub_list_t *again)
{
    rmq_decl_t *d;
    SLIST_FOREACH(d, &c->decls, entry)
        if (d->state == RMQ_DECL_RUNNING && !d->follows)
            tell_followers(c->pool, c, d, PEER_GONE, NULL);
    while ((d = SLIST_FIRST(&c->decls)) != NULL) {
        SLIST_REMOVE_HEAD(&c->decls, entry);
        rmq_pub_list_splice(again, &d->waiting);
        decl_free(d);
    }
    c->ndecls = 0;
    rmq_declare_free_results(c->results);
    c->results = NULL;
    c->mgmt_out = c->mgmt_in = NULL; /* gone with the connection */
    c->mgmt_ready = 0;
}
