/* Publishing, on the pool's thread: a publish goes to the connection with
 * the fewest messages in flight and room under maxInFlight (with none up
 * it waits: the host's deadline turns that into 701201), its target is
 * declared there if it needs to be, and it goes out on the sender of its
 * address.  A connection that drops is out at once: what was in flight on
 * it is sent again elsewhere (at-least-once; the message-id is kept),
 * except a message that was in flight on MAX_ATTEMPTS connections that
 * dropped, which fails (a poison message must not become a reconnect
 * storm).
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

#define MAX_ATTEMPTS 3   /* connections a message may be in flight on */
#define MAX_LINKS 256    /* senders kept per connection (dynamic targets) */
#define REFUSED_MS 10000 /* an address that ended the session is not attached again for this long */
#define MISSING_FIRST_MS 25   /* a publish whose queue was not found asks again after this, */
#define MISSING_MAX_MS 400    /* doubling up to this, */
#define MISSING_GRACE_MS 2000 /* and fails when it still is not found after this */

/* ---- refused addresses ------------------------------------------------------------------
 *
 * An address whose attach made the broker end the session (RabbitMQ 3.x,
 * for a queue that exists with other arguments): for REFUSED_MS, publishes
 * to it fail at once with the broker's reason and it is not attached, rather
 * than each attempt taking a connection (and everything in flight on it)
 * down.  Then one attach tries again: the operator may have fixed it. */
struct rmq_refused {
    struct rmq_refused *next;
    char *address;
    char why[700];
    int64_t until;
};

/* On every publish: the list is almost always empty, the clock read only
 * for an address in it. */
static const rmq_refused_t *refused_now(const rmq_pool_t *pool, const char *address)
{
    for (const rmq_refused_t *r = pool->refused; r != NULL; r = r->next)
        if (strcmp(r->address, address) == 0)
            return r->until > rmq_now() ? r : NULL;
    return NULL;
}

static void refuse(rmq_pool_t *pool, const char *address, const char *why, int64_t now)
{
    rmq_refused_t *r = pool->refused;
    while (r != NULL && strcmp(r->address, address) != 0)
        r = r->next;
    if (r == NULL) {
        r = rmq_xcalloc(1, sizeof(*r));
        r->address = rmq_xstrdup(address);
        r->next = pool->refused;
        pool->refused = r;
    }
    snprintf(r->why, sizeof(r->why), "%s", why);
    r->until = now + REFUSED_MS;
}

/* RabbitMQ names what it refused ("... for queue 'q' in vhost '/'"): the
 * name, when there is one, as a path segment of an address. */
static int blamed(const char *why, const char *address)
{
    const char *at = strstr(why, "queue '");
    size_t skip = 7;
    if (at == NULL) {
        at = strstr(why, "exchange '");
        skip = 10;
    }
    if (at == NULL)
        return -1; /* no name given */
    at += skip;
    const char *end = strchr(at, '\'');
    if (end == NULL)
        return -1;
    size_t n = (size_t)(end - at);
    for (const char *seg = address; seg != NULL; seg = strchr(seg, '/')) {
        if (*seg == '/')
            seg++;
        if (strncmp(seg, at, n) == 0 && (seg[n] == '\0' || seg[n] == '/'))
            return 1;
    }
    return 0;
}

/* ---- senders ------------------------------------------------------------------------------ */

static void link_free(rmq_link_t *l)
{
    free(l->address);
    free(l);
}

static void link_unlink(rmq_conn_t *c, rmq_link_t *l)
{
    SLIST_REMOVE(&c->links, l, rmq_link, entry);
    c->nlinks--;
    pn_link_set_context(l->pn, NULL);
}

/* Senders for dynamic targets must not pile up: past MAX_LINKS, an idle one
 * (nothing pending or in flight) is closed, the least recently made first. */
static void evict_idle_link(rmq_conn_t *c)
{
    rmq_link_t *l, *victim = NULL;
    SLIST_FOREACH(l, &c->links, entry)
        if (l->pending.n == 0 && l->inflight == 0)
            victim = l; /* the list is newest first: keep the last one */
    if (victim == NULL)
        return;
    link_unlink(c, victim);
    pn_link_close(victim->pn);
    link_free(victim);
}

static rmq_link_t *link_for(rmq_conn_t *c, const char *address)
{
    rmq_link_t *l;
    SLIST_FOREACH(l, &c->links, entry)
        if (strcmp(l->address, address) == 0)
            return l;
    if (c->nlinks >= MAX_LINKS)
        evict_idle_link(c);
    l = rmq_xcalloc(1, sizeof(*l));
    l->tag.role = RMQ_ROLE_SENDER;
    l->conn = c;
    l->address = rmq_xstrdup(address);
    rmq_pub_list_init(&l->pending);
    char name[64];
    snprintf(name, sizeof(name), "sender-%llu", (unsigned long long)++c->tag);
    l->pn = pn_sender(c->ssn, name);
    pn_terminus_set_address(pn_link_target(l->pn), address);
    /* The 3.x plugin declares /queue/NAME with the target's durability:
     * without this the queue is transient and a broker restart empties it
     * (everything cmi declares is durable). */
    pn_terminus_set_durability(pn_link_target(l->pn), PN_CONFIGURATION);
    pn_link_set_context(l->pn, &l->tag);
    pn_link_open(l->pn);
    SLIST_INSERT_HEAD(&c->links, l, entry);
    c->nlinks++;
    return l;
}

static void send_pub(rmq_link_t *l, rmq_pub_t *pub)
{
    rmq_conn_t *c = l->conn;
    uint64_t tag = ++c->tag;
    pn_delivery_t *d = pn_delivery(l->pn, pn_dtag((const char *)&tag, sizeof(tag)));
    pn_link_send(l->pn, pub->bytes, pub->len);
    pn_link_advance(l->pn);
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
    const rmq_refused_t *r = refused_now(pool, address);
    if (r != NULL) {
        rmq_pub_fail(pub, RMQ_ERR_AMQP, "%s", r->why);
        return;
    }
    atomic_store(&pub->stage, RMQ_PUB_ROUTED);
    rmq_link_t *l = link_for(c, address);
    pub->link = l;
    rmq_pub_list_push(&l->pending, pub);
    c->queued++;
    pump_link(l);
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
    return pool->parked_next;
}

void rmq_send_on_timeout(rmq_pool_t *pool, int64_t now)
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
        if (c->state != RMQ_CONN_UP || load >= (size_t)pool->p->max_in_flight)
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
    if (refused_now(pool, address) == NULL)
        link_for(c, address);
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
    if (pub->outcome != RMQ_OUT_ACCEPTED) {
        char why[300];
        rmq_condition_text(pn_disposition_condition(pn_delivery_remote(d)), why, sizeof(why));
        snprintf(pub->err_detail, sizeof(pub->err_detail), "%s: the broker answered %s (%s)", pub->target.describe,
                 state == PN_REJECTED ? "rejected" : state == PN_MODIFIED ? "modified" : "released", why);
    }
    pn_delivery_set_context(d, NULL);
    pn_delivery_settle(d);
    rmq_pub_list_remove(&c->inflight, pub);
    rmq_pub_complete(pub);
    rmq_send_pump_waiting(pool);
}

/* The broker closed a sender: what is pending on it fails, and what was
 * in flight on it will not get an outcome (its deliveries are settled and
 * forget their publishes, which fail). */
static void on_sender_closed(rmq_pool_t *pool, rmq_link_t *l, pn_link_t *pl)
{
    rmq_conn_t *c = l->conn;
    char why[400];
    rmq_condition_text(pn_link_remote_condition(pl), why, sizeof(why));
    RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: the broker closed the sender to %s: %s", c->index, l->address, why);
    char detail[600];
    snprintf(detail, sizeof(detail), "the broker refused the address %s: %s", l->address, why);
    c->queued -= l->pending.n;
    rmq_pub_fail_list(&l->pending, RMQ_ERR_AMQP, detail);
    for (pn_delivery_t *dl = pn_unsettled_head(pl), *nx; dl != NULL; dl = nx) {
        nx = pn_unsettled_next(dl);
        pn_delivery_set_context(dl, NULL);
        pn_delivery_settle(dl);
    }
    rmq_pub_t *p, *next;
    TAILQ_FOREACH_SAFE(p, &c->inflight.q, entry, next) {
        if (p->link == l) {
            rmq_pub_list_remove(&c->inflight, p);
            rmq_pub_fail(p, RMQ_ERR_AMQP, "%s", detail);
        }
    }
    link_unlink(c, l);
    pn_link_close(pl);
    pn_link_free(pl);
    link_free(l);
    rmq_send_pump_waiting(pool);
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
            c->failures = 0;
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
        break;
    default:
        break;
    }
}

/* On 4.x, whether every publish waiting for an attach on c has its target
 * declared or asked for over /management before the attach (all queue
 * targets; not an exchange that must exist, which 4.0.5 cannot be asked
 * for).  Only then is an attach that found nothing worth another try. */
static int all_asked_first(rmq_conn_t *c)
{
    if (c->format != RMQ_FORMAT_V2)
        return 0;
    rmq_link_t *l;
    SLIST_FOREACH(l, &c->links, entry) {
        rmq_pub_t *p;
        if (!l->ready)
            TAILQ_FOREACH(p, &l->pending.q, entry)
                if (p->target.key == NULL || !rmq_target_needs_declaring(&p->target, RMQ_FORMAT_V2))
                    return 0;
    }
    return 1;
}

/* The broker ended the session.  RabbitMQ 3.x does when the declaration an
 * attach asks for fails (a queue that exists with other arguments:
 * PRECONDITION_FAILED) instead of refusing the link.  The publishes
 * waiting for an attach fail now with the broker's reason; sent again,
 * they would take every next connection down the same way until
 * publishTimeout, and the log would only say "closed".  The culprit is a
 * sender still attaching: the one the reason names, or, when it names none
 * of them, each of them.
 *
 * An internal error is the broker's own failure, not a refusal of the
 * address (RabbitMQ 4.0.5 ends a session so when two connections declare
 * one queue at once): nothing is held against it, and what waits for the
 * attach is sent again on the next connection, as after any loss.  So is
 * 4.x's amqp:not-found: every 4.x target is asked for or declared over
 * /management before its attach (rmq_address.c), so a queue missing at the
 * attach was deleted in between; on the next connection the declaration
 * is made again (or the publishes wait for the queue, "missing queues"). */
void rmq_send_on_session_closed(rmq_pool_t *pool, rmq_conn_t *c, const char *condition, const char *why)
{
    int named = 0;
    rmq_link_t *l;
    int internal = condition != NULL && strcmp(condition, "amqp:internal-error") == 0;
    int not_found = condition != NULL && strcmp(condition, "amqp:not-found") == 0;
    if (internal || (not_found && all_asked_first(c))) {
        SLIST_FOREACH(l, &c->links, entry) {
            if (l->ready)
                continue;
            /* Made again before the next attach; a link's publishes mostly
             * share one target: each run of one key is forgotten once. */
            const char *last = NULL;
            rmq_pub_t *p;
            TAILQ_FOREACH(p, &l->pending.q, entry) {
                if (p->target.key != NULL && (last == NULL || strcmp(last, p->target.key) != 0))
                    rmq_declare_forget(pool, p->target.key);
                last = p->target.key;
            }
            RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: the broker ended the session (%s) while the sender to "
                        "%s was attaching; its %zu publish(es) are sent again on the next connection", c->index, why,
                        l->address, l->pending.n);
        }
        return;
    }
    SLIST_FOREACH(l, &c->links, entry)
        named |= !l->ready && blamed(why, l->address) == 1;
    int64_t now = rmq_now();
    SLIST_FOREACH(l, &c->links, entry) {
        if (l->ready || (named && blamed(why, l->address) != 1))
            continue;
        char detail[700];
        snprintf(detail, sizeof(detail), "the broker ended the session while the sender to %s was attaching: %s",
                 l->address, why);
        RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: %s; publishes to it fail for the next %d s (%zu now)", c->index,
                detail, REFUSED_MS / 1000, l->pending.n);
        refuse(pool, l->address, detail, now);
        c->queued -= l->pending.n;
        rmq_pub_fail_list(&l->pending, RMQ_ERR_AMQP, detail);
    }
}

/* ---- losing a connection -------------------------------------------------------------------- */

void rmq_send_on_closed(rmq_conn_t *c, rmq_pub_list_t *again, const char *why)
{
    rmq_pub_t *p;
    while ((p = rmq_pub_list_pop(&c->inflight)) != NULL) {
        if (++p->attempts >= MAX_ATTEMPTS)
            rmq_pub_fail(p, RMQ_ERR_OPERATION,
                         "%s: the connection dropped %d times with this message in flight (last: %s); not sent "
                         "again (a full reject-publish queue makes RabbitMQ 3.x drop the connection)",
                         p->target.describe, p->attempts, why);
        else
            rmq_pub_list_push(again, p);
    }
    rmq_link_t *l;
    while ((l = SLIST_FIRST(&c->links)) != NULL) {
        link_unlink(c, l);
        rmq_pub_list_splice(again, &l->pending);
        link_free(l);
    }
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
        rmq_link_t *l;
        SLIST_FOREACH(l, &c->links, entry)
            reap_list(&l->pending, c);
    }
}

void rmq_send_dispose(rmq_pool_t *pool)
{
    while (pool->refused != NULL) {
        rmq_refused_t *r = pool->refused;
        pool->refused = r->next;
        free(r->address);
        free(r);
    }
}
