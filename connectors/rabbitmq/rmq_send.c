/* Publishing, on the pool's thread: a publish goes to the connection with
 * the fewest messages in flight and room under maxInFlight (with none up
 * it waits: the host's deadline turns that into 701201), its target is
 * declared there if it needs to be, and it goes out on the sender of its
 * address (each sender on a session of its own, "senders").  A connection
 * that drops is out at once: what was in flight on it is sent again
 * elsewhere (at-least-once; the message-id is kept), except a message that
 * was in flight on MAX_ATTEMPTS connections or sessions that dropped,
 * which fails (a poison message must not become a reconnect storm).
 *
 * proton flushes a connection's output only for the connection whose
 * events it is handling: a publish picked for another connection is
 * queued on it (todo) and routed in its PN_CONNECTION_WAKE. */
#include "config.h"

#include <proton/condition.h>
#include <proton/disposition.h>
#include <proton/terminus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_core.h"

#define MAX_ATTEMPTS 3   /* connections or sessions a message may be in flight on */
#define MISSING_FIRST_MS 25   /* a publish whose queue was not found asks again after this, */
#define MISSING_MAX_MS 400    /* doubling up to this, */
#define MISSING_GRACE_MS 2000 /* and fails when it still is not found after this */
#define ATTACH_TIMEOUT_MS 5000 /* a sender whose attach is not answered in this time ends */

/* ---- senders -------------------------------------------------------------------------------
 *
 * Each sender has an AMQP session of its own.  RabbitMQ answers some
 * attaches it refuses by ending the session (3.x, when the queue the
 * attach declares exists with other arguments; 4.x, for a queue that does
 * not exist): on a shared session that took every other target's messages
 * in flight with it, and the connection.  Now it costs the one sender.
 *
 * Sessions are few (RabbitMQ 4.0 allows 64 per connection), so a
 * connection has at most as many senders as the broker allows sessions
 * beside the main one, and at most RMQ_MAX_SENDERS.  Past that, the least
 * recently used idle sender is moved to the new address on its own
 * session (detach, then attach: the broker's session handles both in
 * order).  Its session is not ended and begun again: RabbitMQ 4.0.5 drops
 * a begin on a channel it has not let go of yet, and with every other
 * channel in use the one just ended is the one proton picks (measured: the
 * begin is never answered).  A sender the broker detached keeps its
 * session, empty (no address), for the next address.  With no sender idle,
 * a publish for a new address waits on the connection (held) until one
 * is.  A session the broker ended is gone; its channel counts as used
 * until it is free (PN_SESSION_FINAL). */

/* The context of a sender session that ended, until its channel is free. */
static rmq_link_tag_t ending_session = {RMQ_ROLE_SENDER}; /* an identity: no sender's */

static void link_free(rmq_link_t *l)
{
    free(l->address);
    free(l);
}

/* Lets go of l's proton link (proton frees it once the detach is
 * answered; its late events find no sender). */
static void link_detach(rmq_link_t *l)
{
    pn_link_set_context(l->pn, NULL);
    pn_link_close(l->pn);
    pn_link_free(l->pn);
    l->pn = NULL;
    l->ready = 0;
    free(l->address);
    l->address = NULL;
}

/* Ends l and its session (the broker ended it). */
static void link_end(rmq_conn_t *c, rmq_link_t *l)
{
    TAILQ_REMOVE(&c->links, l, entry);
    c->nlinks--;
    if (l->pn != NULL)
        link_detach(l);
    pn_session_close(l->ssn);
    pn_session_set_context(l->ssn, &ending_session);
    pn_session_free(l->ssn);
    c->nending++;
    link_free(l);
}

static int link_idle(const rmq_link_t *l)
{
    return l->pending.n == 0 && l->inflight == 0;
}

static rmq_link_t *least_recently_used_idle(rmq_conn_t *c)
{
    rmq_link_t *l;
    TAILQ_FOREACH_REVERSE(l, &c->links, rmq_link_list, entry)
        if (link_idle(l))
            return l;
    return NULL;
}

static int session_free(const rmq_conn_t *c)
{
    return c->nlinks + c->nending + c->nreceivers < c->max_links;
}

static void link_attach(rmq_conn_t *c, rmq_link_t *l, const char *address)
{
    rmq_pool_t *pool = c->pool;
    l->attach_deadline = rmq_now() + ATTACH_TIMEOUT_MS;
    if (pool->attach_next == 0) {
        pool->attach_next = l->attach_deadline; /* the earliest: they only grow */
        rmq_pool_timer_changed(pool);
    }
    l->address = rmq_xstrdup(address);
    char name[64];
    snprintf(name, sizeof(name), "sender-%llu", (unsigned long long)++c->tag);
    l->pn = pn_sender(l->ssn, name);
    pn_terminus_set_address(pn_link_target(l->pn), address);
    /* The 3.x plugin declares /queue/NAME with the target's durability:
     * without this the queue is transient and a broker restart empties it
     * (everything cmi declares is durable). */
    pn_terminus_set_durability(pn_link_target(l->pn), PN_CONFIGURATION);
    pn_link_set_context(l->pn, &l->tag);
    pn_link_open(l->pn);
}

static rmq_link_t *link_open(rmq_conn_t *c)
{
    rmq_link_t *l = rmq_xcalloc(1, sizeof(*l));
    l->tag.role = RMQ_ROLE_SENDER;
    l->conn = c;
    rmq_pub_list_init(&l->pending);
    l->ssn = pn_session(c->pn);
    pn_session_set_context(l->ssn, l);
    pn_session_open(l->ssn);
    TAILQ_INSERT_HEAD(&c->links, l, entry);
    c->nlinks++;
    return l;
}

static void most_recently_used(rmq_conn_t *c, rmq_link_t *l)
{
    if (l != TAILQ_FIRST(&c->links)) {
        TAILQ_REMOVE(&c->links, l, entry);
        TAILQ_INSERT_HEAD(&c->links, l, entry);
    }
}

/* The sender of address on c: the one it has, a new one, or the least
 * recently used idle one moved to it; NULL when every sender is busy. */
static rmq_link_t *link_for(rmq_conn_t *c, const char *address)
{
    rmq_link_t *l;
    TAILQ_FOREACH(l, &c->links, entry) {
        if (l->address != NULL && strcmp(l->address, address) == 0) {
            most_recently_used(c, l);
            return l;
        }
    }
    if (session_free(c)) {
        l = link_open(c);
    } else {
        l = least_recently_used_idle(c);
        if (l == NULL)
            return NULL;
        if (l->pn != NULL)
            link_detach(l);
        most_recently_used(c, l);
    }
    link_attach(c, l, address);
    return l;
}

static void send_pub(rmq_link_t *l, rmq_pub_t *pub)
{
    rmq_conn_t *c = l->conn;
    uint64_t tag = ++c->tag;
    pn_delivery_t *d = pn_delivery(l->pn, pn_dtag((const char *)&tag, sizeof(tag)));
    pn_link_send(l->pn, pub->bytes, pub->len);
    pn_link_advance(l->pn);
    pub->sent_ns = rmq_now_ns();
    if (!pub->confirm) {
        /* publisherConfirms=false: settled as it is sent (at-most-once). */
        pn_delivery_settle(d);
        pub->outcome = RMQ_OUT_ACCEPTED;
        rmq_pub_complete(pub);
        return;
    }
    pn_delivery_set_context(d, pub);
    pub->conn = c;
    pub->link = l;
    l->inflight++;
    atomic_store(&pub->stage, RMQ_PUB_SENT);
    rmq_pub_list_push(&c->inflight, pub);
    rmq_stat_gauge(&c->pool->stats.inflight, 1);
}

static void pump_link(rmq_link_t *l)
{
    while (l->ready && l->pending.n > 0 && pn_link_credit(l->pn) > 0) {
        rmq_pub_t *pub = rmq_pub_list_pop(&l->pending);
        l->conn->queued--;
        if (atomic_load(&pub->cancelled))
            rmq_pub_complete(pub); /* its deadline passed before it could go */
        else
            send_pub(l, pub);
    }
}

static void route_to_link(rmq_pool_t *pool, rmq_conn_t *c, rmq_pub_t *pub)
{
    const char *address = rmq_target_address(&pub->target, c->format);
    const char *why = rmq_refusals_check(pool->refused, address, rmq_now);
    if (why != NULL) {
        rmq_pub_fail(pub, RMQ_ERR_AMQP, "%s", why);
        return;
    }
    atomic_store(&pub->stage, RMQ_PUB_ROUTED);
    c->queued++;
    rmq_link_t *l = link_for(c, address);
    if (l == NULL) {
        rmq_pub_list_push(&c->held, pub);
        return;
    }
    pub->link = l;
    rmq_pub_list_push(&l->pending, pub);
    pump_link(l);
}

/* A sender went idle, or a session is free: held publishes go, in order,
 * while each can get a sender. */
static void serve_held(rmq_pool_t *pool, rmq_conn_t *c)
{
    rmq_pub_t *pub;
    while ((pub = TAILQ_FIRST(&c->held.q)) != NULL && (session_free(c) || least_recently_used_idle(c) != NULL)) {
        rmq_pub_list_remove(&c->held, pub);
        c->queued--;
        if (atomic_load(&pub->cancelled))
            rmq_pub_complete(pub);
        else
            route_to_link(pool, c, pub);
    }
}

/* A publish on a connection that is up: declare its target first when this
 * connection has not (since it last connected), then send. */
static void route(rmq_pool_t *pool, rmq_conn_t *c, rmq_pub_t *pub)
{
    if (pub->target.key == NULL || !rmq_target_needs_declaring(&pub->target, c->format)) {
        route_to_link(pool, c, pub);
        return;
    }
    rmq_decl_t *d = rmq_declare(pool, c, &pub->target);
    if (d->state == RMQ_DECL_DONE) {
        route_to_link(pool, c, pub);
        return;
    }
    atomic_store(&pub->stage, RMQ_PUB_ROUTED);
    rmq_pub_list_push(&d->waiting, pub);
    c->queued++;
    rmq_declare_flush(pool, c); /* 4.x: its request goes out now, if the pair is ready */
}

/* ---- missing queues ------------------------------------------------------------------------
 *
 * RabbitMQ 4.x says 404 when asked for a queue that must exist and does not
 * (and ends the session on an attach to one, which cmi therefore never
 * makes unasked).  Often the queue is a moment away: an inbound endpoint of
 * this cmi declares it at start-up, another application at its own.  So a
 * publish does not fail at the first 404: it waits off its connection and
 * asks again after 25 ms, doubling to 400 ms, and fails with the broker's
 * answer (701206) only when the queue is still missing after 2 s.  Each ask
 * is one /management request per connection, shared by every publish that
 * waits for the same target (rmq_declare.c); nothing is remembered against
 * the queue, so a publish never fails for a queue that exists now. */

static void park(rmq_pool_t *pool, rmq_pub_t *pub, const char *detail, int64_t now)
{
    if (pub->missing_until == 0) {
        pub->missing_until = now + MISSING_GRACE_MS;
        pub->backoff_ms = MISSING_FIRST_MS;
    } else if (pub->backoff_ms < MISSING_MAX_MS) {
        pub->backoff_ms *= 2;
    }
    if (now >= pub->missing_until) {
        rmq_pub_fail(pub, RMQ_ERR_AMQP, "%s (asked for %d s)", detail ? detail : "not found", MISSING_GRACE_MS / 1000);
        return;
    }
    /* On a 25 ms tick: however many wait, the timer walks them at most
     * 40 times a second. */
    pub->retry_at = (now + pub->backoff_ms + MISSING_FIRST_MS - 1) / MISSING_FIRST_MS * MISSING_FIRST_MS;
    if (pool->parked_next == 0 || pub->retry_at < pool->parked_next)
        pool->parked_next = pub->retry_at;
    atomic_store(&pub->stage, RMQ_PUB_WAITING);
    rmq_pub_list_push(&pool->parked, pub);
    rmq_pool_timer_changed(pool);
}

int64_t rmq_send_next_deadline(const rmq_pool_t *pool)
{
    int64_t a = pool->parked_next, b = pool->attach_next;
    return a == 0 ? b : b == 0 || a < b ? a : b;
}

static void retry_parked(rmq_pool_t *pool, int64_t now)
{
    if (pool->parked_next == 0 || pool->parked_next > now)
        return;
    pool->parked_next = 0;
    rmq_pub_list_t due;
    rmq_pub_list_init(&due);
    rmq_pub_t *p, *next;
    TAILQ_FOREACH_SAFE(p, &pool->parked.q, entry, next) {
        if (p->retry_at <= now) {
            rmq_pub_list_remove(&pool->parked, p);
            rmq_pub_list_push(&due, p);
        } else if (pool->parked_next == 0 || p->retry_at < pool->parked_next) {
            pool->parked_next = p->retry_at;
        }
    }
    while ((p = rmq_pub_list_pop(&due)) != NULL)
        rmq_send_dispatch(pool, p);
}

static void end_unanswered(rmq_pool_t *pool, rmq_link_t *l);

/* Senders whose attach (or their session's begin) the broker has not
 * answered in ATTACH_TIMEOUT_MS end, rather than holding their address's
 * publishes until each times out.  Walked only when the earliest deadline
 * is due. */
static void check_attaches(rmq_pool_t *pool, int64_t now)
{
    if (pool->attach_next == 0 || pool->attach_next > now)
        return;
    pool->attach_next = 0;
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *c = &pool->conns[i];
        rmq_link_t *l, *next;
        if (c->state != RMQ_CONN_UP)
            continue;
        TAILQ_FOREACH_SAFE(l, &c->links, entry, next) {
            if (l->ready || l->pn == NULL || l->attach_deadline == 0)
                continue;
            if (l->attach_deadline <= now)
                end_unanswered(pool, l);
            else if (pool->attach_next == 0 || l->attach_deadline < pool->attach_next)
                pool->attach_next = l->attach_deadline;
        }
    }
}

void rmq_send_on_timeout(rmq_pool_t *pool, int64_t now)
{
    retry_parked(pool, now);
    check_attaches(pool, now);
}

void rmq_send_fail_held(rmq_pool_t *pool, int code, const char *detail)
{
    rmq_pub_fail_list(&pool->waiting, code, detail);
    rmq_pub_fail_list(&pool->parked, code, detail);
    pool->parked_next = 0;
}

void rmq_send_declared(rmq_pool_t *pool, rmq_conn_t *c, rmq_decl_t *d, int status, const char *detail)
{
    c->queued -= d->waiting.n;
    if (status == RMQ_DECL_NOT_FOUND) {
        int64_t now = rmq_now();
        rmq_pub_t *p;
        while ((p = rmq_pub_list_pop(&d->waiting)) != NULL)
            park(pool, p, detail, now);
        return;
    }
    if (status == 0) {
        rmq_pub_t *p;
        while ((p = rmq_pub_list_pop(&d->waiting)) != NULL)
            route_to_link(pool, c, p);
        return;
    }
    /* Consumers log their own failures (once per distinct reason, they
     * retry on a timer). */
    if (d->waiting.n > 0)
        RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: declaration failed (%zu publish(es) fail with it): %s", c->index,
                d->waiting.n, detail ? detail : "no reason given");
    rmq_pub_fail_list(&d->waiting, status, detail);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static rmq_conn_t *pick(rmq_pool_t *pool)
{
    rmq_conn_t *best = NULL;
    size_t best_load = 0;
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *c = &pool->conns[i];
        size_t load = c->inflight.n + c->queued;
        if (c->state != RMQ_CONN_UP || c->retiring || load >= (size_t)pool->p->max_in_flight)
            continue;
        if (best == NULL || load < best_load) {
            best = c;
            best_load = load;
        }
    }
    return best;
}

/* To c now when its events are being handled, else in its own events. */
static void hand_to(rmq_pool_t *pool, rmq_conn_t *c, rmq_pub_t *pub)
{
    if (c->pn == pool->cur) {
        route(pool, c, pub);
        return;
    }
    rmq_pub_list_push(&c->todo, pub);
    c->queued++;
    pn_connection_wake(c->pn);
}

void rmq_send_dispatch(rmq_pool_t *pool, rmq_pub_t *pub)
{
    if (atomic_load(&pub->cancelled)) {
        rmq_pub_complete(pub);
        return;
    }
    if (pool->stopping) {
        rmq_pub_fail(pub, RMQ_ERR_CONNECTION, "the connection config is stopping");
        return;
    }
    rmq_conn_t *c = pool->waiting.n > 0 && TAILQ_FIRST(&pool->waiting.q) != pub ? NULL : pick(pool);
    if (c == NULL) {
        /* No room (or older publishes wait): in line, in order. */
        atomic_store(&pub->stage, RMQ_PUB_WAITING);
        rmq_pub_list_push(&pool->waiting, pub);
        return;
    }
    hand_to(pool, c, pub);
}

void rmq_send_pump_waiting(rmq_pool_t *pool)
{
    rmq_pub_t *pub;
    while ((pub = TAILQ_FIRST(&pool->waiting.q)) != NULL) {
        if (!atomic_load(&pub->cancelled) && pick(pool) == NULL)
            return;
        rmq_pub_list_remove(&pool->waiting, pub);
        if (atomic_load(&pub->cancelled)) {
            rmq_pub_complete(pub);
            continue;
        }
        hand_to(pool, pick(pool), pub);
    }
}

/* Publishes handed to c from outside its events. */
void rmq_send_on_wake(rmq_pool_t *pool, rmq_conn_t *c)
{
    rmq_pub_t *pub;
    while ((pub = rmq_pub_list_pop(&c->todo)) != NULL) {
        c->queued--;
        if (atomic_load(&pub->cancelled))
            rmq_pub_complete(pub);
        else if (c->state != RMQ_CONN_UP || pool->stopping)
            rmq_send_dispatch(pool, pub); /* it went down meanwhile: elsewhere, or wait */
        else
            route(pool, c, pub);
    }
}

/* ---- targets known at load --------------------------------------------------------------- */

static void declare_static(rmq_pool_t *pool, rmq_conn_t *c, const rmq_target_t *t)
{
    if (t->key != NULL && rmq_target_needs_declaring(t, c->format)) {
        rmq_declare(pool, c, t);
        return;
    }
    const char *address = rmq_target_address(t, c->format);
    if (rmq_refusals_check(pool->refused, address, rmq_now) == NULL)
        link_for(c, address); /* NULL: every session busy; it attaches at its first publish */
}

/* Declared (or attached) on every connection as it comes up. */
void rmq_send_statics(rmq_pool_t *pool, rmq_conn_t *c)
{
    c->statics_pending = 0;
    for (static_target_t *s = pool->statics; s != NULL; s = s->next)
        declare_static(pool, c, &s->target);
}

/* ---- sender events -------------------------------------------------------------------------- */

static void on_delivery(rmq_pool_t *pool, pn_delivery_t *d)
{
    rmq_pub_t *pub = pn_delivery_get_context(d);
    if (pub == NULL || !pn_delivery_updated(d))
        return;
    uint64_t state = pn_delivery_remote_state(d);
    int terminal = state == PN_ACCEPTED || state == PN_REJECTED || state == PN_RELEASED || state == PN_MODIFIED;
    if (!terminal && !pn_delivery_settled(d))
        return; /* PN_RECEIVED and the like: not an outcome yet */
    if (!terminal)
        state = PN_RELEASED; /* settled by the broker without an outcome */
    rmq_conn_t *c = pub->conn;
    c->failures = 0; /* the broker works: its back-off starts afresh next time */
    pub->link->inflight--;
    switch (state) {
    case PN_ACCEPTED: pub->outcome = RMQ_OUT_ACCEPTED; break;
    case PN_REJECTED: pub->outcome = RMQ_OUT_REJECTED; break;
    case PN_MODIFIED: pub->outcome = RMQ_OUT_MODIFIED; break;
    default: pub->outcome = RMQ_OUT_RELEASED; break;
    }
    rmq_stats_confirmed(&pool->stats, pub->sent_ns);
    if (pub->outcome != RMQ_OUT_ACCEPTED) {
        char why[300];
        rmq_condition_text(pn_disposition_condition(pn_delivery_remote(d)), why, sizeof(why));
        snprintf(pub->err_detail, sizeof(pub->err_detail), "%s: the broker answered %s (%s)", pub->target.describe,
                 state == PN_REJECTED ? "rejected" : state == PN_MODIFIED ? "modified" : "released", why);
    }
    pn_delivery_set_context(d, NULL);
    pn_delivery_settle(d);
    rmq_pub_list_remove(&c->inflight, pub);
    rmq_stat_gauge(&pool->stats.inflight, -1);
    rmq_pub_complete(pub);
    rmq_send_pump_waiting(pool);
}

/* A message in flight on a connection or session that ended: sent again,
 * unless it was in flight on MAX_ATTEMPTS of them (a poison message must
 * not become a reconnect storm; a full reject-publish queue makes RabbitMQ
 * 3.x drop the connection). */
static void again_or_fail(rmq_pub_t *p, rmq_pub_list_t *again, const char *why)
{
    if (++p->attempts >= MAX_ATTEMPTS)
        rmq_pub_fail(p, RMQ_ERR_OPERATION,
                     "%s: the connection or session dropped %d times with this message in flight (last: %s); not "
                     "sent again (a full reject-publish queue makes RabbitMQ 3.x drop the connection)",
                     p->target.describe, p->attempts, why);
    else
        rmq_pub_list_push(again, p);
}

/* What was in flight on l: its deliveries forget their publishes, which go
 * to again (or fail, again_or_fail). */
static void take_inflight(rmq_link_t *l, rmq_pub_list_t *again, const char *why)
{
    rmq_conn_t *c = l->conn;
    if (l->pn == NULL)
        return; /* an empty sender: nothing in flight */
    for (pn_delivery_t *dl = pn_unsettled_head(l->pn), *nx; dl != NULL; dl = nx) {
        nx = pn_unsettled_next(dl);
        pn_delivery_set_context(dl, NULL);
        pn_delivery_settle(dl);
    }
    rmq_pub_t *p, *next;
    TAILQ_FOREACH_SAFE(p, &c->inflight.q, entry, next) {
        if (p->link == l) {
            rmq_pub_list_remove(&c->inflight, p);
            rmq_stat_gauge(&c->pool->stats.inflight, -1);
            l->inflight--;
            again_or_fail(p, again, why);
        }
    }
}

/* What l held went elsewhere (again) or failed, and l went with its
 * session or was emptied: its place goes to held publishes, then to what
 * waits for a connection. */
static void sender_gone(rmq_pool_t *pool, rmq_conn_t *c, rmq_pub_list_t *again)
{
    rmq_send_again(pool, again);
    serve_held(pool, c);
    rmq_send_pump_waiting(pool);
}

/* The broker closed a sender.  An attach it refused (no target, then a
 * detach) is remembered against the address, and what waits on the sender
 * fails with the broker's reason.  What was in flight will get no outcome:
 * it is sent again, and fails with that reason should the address be held
 * by then. */
/* An address the broker refused is held only when the refusal met
 * publishes: a sender opened ahead of any (a static target at start-up,
 * before another artifact declared its exchange) is tried again by the
 * first publish.  npubs: the publishes it met.  Returns the hold, 0 when
 * none. */
static int64_t hold_refused(rmq_pool_t *pool, const rmq_link_t *l, const char *detail, size_t npubs)
{
    if (npubs == 0)
        return 0;
    return rmq_refusals_add(pool->refused, l->address, detail, rmq_now());
}

static void on_sender_closed(rmq_pool_t *pool, rmq_link_t *l, pn_link_t *pl)
{
    rmq_conn_t *c = l->conn;
    char why[400];
    rmq_condition_text(pn_link_remote_condition(pl), why, sizeof(why));
    char detail[600];
    snprintf(detail, sizeof(detail), "the broker refused the address %s: %s", l->address, why);
    if (!l->ready && pn_condition_is_set(pn_link_remote_condition(pl))) {
        int64_t hold = hold_refused(pool, l, detail, l->pending.n + l->inflight);
        RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: the broker refused the sender to %s: %s; publishes to it fail "
                "for the next %lld ms (%zu now)", c->index, l->address, why, (long long)hold, l->pending.n);
    } else {
        RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: the broker closed the sender to %s: %s", c->index, l->address,
                why);
    }
    c->queued -= l->pending.n;
    rmq_pub_fail_list(&l->pending, RMQ_ERR_AMQP, detail);
    rmq_pub_list_t again;
    rmq_pub_list_init(&again);
    take_inflight(l, &again, detail);
    /* Empty, on its session, first in line for the next address. */
    link_detach(l);
    TAILQ_REMOVE(&c->links, l, entry);
    TAILQ_INSERT_TAIL(&c->links, l, entry);
    sender_gone(pool, c, &again);
}

void rmq_send_on_link(rmq_pool_t *pool, rmq_conn_t *c, pn_event_t *e, rmq_link_tag_t *tag)
{
    rmq_link_t *l = (rmq_link_t *)tag;
    pn_link_t *pl = pn_event_link(e);
    switch (pn_event_type(e)) {
    case PN_LINK_REMOTE_OPEN:
        /* A refused attach comes back with no target, then a detach. */
        if (pn_terminus_get_address(pn_link_remote_target(pl)) != NULL) {
            l->ready = 1;
            l->attach_deadline = 0;
            c->failures = 0;
            rmq_refusals_clear(pool->refused, l->address);
            pump_link(l);
        }
        break;
    case PN_LINK_FLOW:
        pump_link(l);
        break;
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH:
        on_sender_closed(pool, l, pl);
        break;
    case PN_DELIVERY:
        on_delivery(pool, pn_event_delivery(e));
        if (c->held.n > 0 && link_idle(l))
            serve_held(pool, c);
        break;
    default:
        break;
    }
}

/* On 4.x, whether every publish waiting for l's attach has its target
 * declared or asked for over /management before the attach (all queue
 * targets; not an exchange that must exist, which 4.0.5 cannot be asked
 * for).  Only then is an attach that found nothing worth another try. */
static int asked_first(const rmq_link_t *l)
{
    if (l->conn->format != RMQ_FORMAT_V2)
        return 0;
    rmq_pub_t *p;
    TAILQ_FOREACH(p, &l->pending.q, entry)
        if (p->target.key == NULL || !rmq_target_needs_declaring(&p->target, RMQ_FORMAT_V2))
            return 0;
    return 1;
}

/* Made again before the next attach.  A sender's publishes mostly share
 * one target: each run of one key is forgotten once. */
static void forget_declarations(rmq_pool_t *pool, const rmq_pub_list_t *pubs)
{
    const char *last = NULL;
    rmq_pub_t *p;
    TAILQ_FOREACH(p, &pubs->q, entry) {
        if (p->target.key != NULL && (last == NULL || strcmp(last, p->target.key) != 0))
            rmq_declare_forget(pool, p->target.key);
        last = p->target.key;
    }
}

/* The broker ended sender l's session (only l's: the connection and every
 * other sender carry on).  RabbitMQ 3.x does when the declaration an
 * attach asks for fails (a queue that exists with other arguments:
 * PRECONDITION_FAILED) instead of refusing the link: the address is
 * remembered as refused (rmq_refused.c) and what waits for the attach
 * fails now with the broker's reason; sent again, it would only end the
 * next session the same way.
 *
 * An internal error is the broker's own failure, not a refusal of the
 * address (RabbitMQ 4.0.5 ends a session so when two connections declare
 * one queue at once), nor is an end without an error: nothing is held
 * against it, and what waited is sent again.  So is 4.x's amqp:not-found
 * when every 4.x target of the sender was asked for or declared over
 * /management before its attach (rmq_address.c): the queue was deleted in
 * between; the declaration is made again (or the publishes wait for the
 * queue, "missing queues").  Each message sent again counts an attempt
 * (again_or_fail), so a session that keeps ending costs each message at
 * most MAX_ATTEMPTS attaches. */
void rmq_send_on_session_closed(rmq_pool_t *pool, pn_session_t *ssn, const char *condition, const char *why)
{
    rmq_link_t *l = pn_session_get_context(ssn);
    if (l == NULL || (void *)l == &ending_session)
        return; /* cmi ended it */
    rmq_conn_t *c = l->conn;
    rmq_pub_list_t again;
    rmq_pub_list_init(&again);
    if (l->address == NULL) {
        /* An empty sender (its link detached earlier): nothing to do but
         * let go of it. */
        RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: the broker ended an idle sender's session: %s", c->index, why);
        link_end(c, l);
        sender_gone(pool, c, &again);
        return;
    }
    int internal = condition == NULL || strcmp(condition, "amqp:internal-error") == 0;
    int not_found = condition != NULL && strcmp(condition, "amqp:not-found") == 0;
    char detail[700];
    snprintf(detail, sizeof(detail), "the broker ended the session of the sender to %s: %s", l->address, why);
    take_inflight(l, &again, detail);
    c->queued -= l->pending.n;
    if (internal || (not_found && (l->ready || asked_first(l)))) {
        forget_declarations(pool, &l->pending);
        RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: %s; its %zu publish(es) are sent again", c->index, detail,
                l->pending.n + again.n);
        rmq_pub_t *p;
        while ((p = rmq_pub_list_pop(&l->pending)) != NULL)
            again_or_fail(p, &again, detail);
    } else {
        int64_t hold = hold_refused(pool, l, detail, l->pending.n + again.n);
        RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: %s; publishes to it fail for the next %lld ms (%zu now)",
                c->index, detail, (long long)hold, l->pending.n);
        rmq_pub_fail_list(&l->pending, RMQ_ERR_AMQP, detail);
    }
    link_end(c, l);
    sender_gone(pool, c, &again);
}

/* Should a broker leave an attach (or its session's begin) unanswered
 * (RabbitMQ 4.0.5 loses a begin on a channel it has not let go of; see
 * "senders"), the connection closes and what it held is sent again on the
 * next one: only a new connection has channels both sides agree are free
 * (proton reuses a channel as soon as cmi's end is written, before the
 * broker's).  The sender's publishes count an attempt each, so an address
 * whose attach is always lost costs each of them at most MAX_ATTEMPTS. */
static void end_unanswered(rmq_pool_t *pool, rmq_link_t *l)
{
    rmq_conn_t *c = l->conn;
    char detail[600];
    snprintf(detail, sizeof(detail), "the broker did not answer the attach of the sender to %s within %d ms",
             l->address, ATTACH_TIMEOUT_MS);
    RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: %s; the connection is closed and its %zu publish(es) sent again",
            c->index, detail, l->pending.n);
    l->attach_deadline = 0;
    rmq_pub_t *p, *next;
    TAILQ_FOREACH_SAFE(p, &l->pending.q, entry, next) {
        if (++p->attempts < MAX_ATTEMPTS)
            continue;
        rmq_pub_list_remove(&l->pending, p);
        c->queued--;
        rmq_pub_fail(p, RMQ_ERR_OPERATION, "%s: %s, %d times; not sent again", p->target.describe, detail,
                     p->attempts);
    }
    snprintf(c->close_why, sizeof(c->close_why), "%.*s", (int)sizeof(c->close_why) - 1, detail);
    c->close_requested = 1;
    pn_connection_wake(c->pn);
}

/* The channel of a session cmi ended is free. */
void rmq_send_on_session_final(rmq_pool_t *pool, rmq_conn_t *c, pn_session_t *ssn)
{
    if (pn_session_get_context(ssn) != &ending_session)
        return;
    pn_session_set_context(ssn, NULL);
    c->nending--;
    serve_held(pool, c);
}

/* ---- losing a connection -------------------------------------------------------------------- */

void rmq_send_on_closed(rmq_conn_t *c, rmq_pub_list_t *again, const char *why)
{
    rmq_pub_t *p;
    while ((p = rmq_pub_list_pop(&c->inflight)) != NULL) {
        rmq_stat_gauge(&c->pool->stats.inflight, -1);
        again_or_fail(p, again, why);
    }
    rmq_link_t *l;
    while ((l = TAILQ_FIRST(&c->links)) != NULL) {
        TAILQ_REMOVE(&c->links, l, entry); /* its pn_* objects go with the connection */
        c->nlinks--;
        rmq_pub_list_splice(again, &l->pending);
        link_free(l);
    }
    rmq_pub_list_splice(again, &c->held);
    c->nending = 0;
}

void rmq_send_again(rmq_pool_t *pool, rmq_pub_list_t *again)
{
    /* Resent before anything newer, in their order; while they wait they
     * wait for a connection (701201 if none comes in time). */
    rmq_pub_t *p;
    TAILQ_FOREACH(p, &again->q, entry)
        atomic_store(&p->stage, RMQ_PUB_WAITING);
    rmq_pub_list_splice(again, &pool->waiting);
    rmq_pub_list_splice(&pool->waiting, again);
    rmq_send_pump_waiting(pool);
}

/* Publishes whose deadline passed leave every queue (they are answered
 * already; completing them frees them). */
static void reap_list(rmq_pub_list_t *l, rmq_conn_t *c)
{
    rmq_pub_t *p, *next;
    TAILQ_FOREACH_SAFE(p, &l->q, entry, next) {
        if (!atomic_load(&p->cancelled))
            continue;
        rmq_pub_list_remove(l, p);
        if (c != NULL)
            c->queued--;
        rmq_pub_complete(p);
    }
}

void rmq_send_reap_cancelled(rmq_pool_t *pool)
{
    reap_list(&pool->waiting, NULL);
    reap_list(&pool->parked, NULL);
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *c = &pool->conns[i];
        reap_list(&c->todo, c);
        rmq_decl_t *d;
        SLIST_FOREACH(d, &c->decls, entry)
            reap_list(&d->waiting, c);
        reap_list(&c->held, c);
        rmq_link_t *l;
        TAILQ_FOREACH(l, &c->links, entry)
            reap_list(&l->pending, c);
    }
}

void rmq_send_dispose(rmq_pool_t *pool)
{
    rmq_refusals_destroy(pool->refused);
    pool->refused = NULL;
}
