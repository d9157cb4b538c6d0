/* Consuming (docs/rabbitmq.md, "The inbound endpoint"), a feature of the
 * pool core on the pool's thread: receivers with credit on every
 * connection, each message handed to mediation (rmq_delivery.c settles it
 * with the flow's decision).  "Credit" is the number of messages in
 * mediation at once, per receiver, whatever the broker sends. */
#include "config.h"

#include <proton/condition.h>
#include <proton/terminus.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rmq_consume_int.h"

#define REATTACH_MS 2000 /* a receiver the broker closed is attached again after this */

static void refill(rmq_consume_t *cs, rmq_rlink_t *r);

/* Whether the receiver consumes (attached, with its source): the pool
 * counts them for readiness (rmq_pool_receiving). */
static void set_ready(rmq_consume_t *cs, rmq_rlink_t *r, int ready)
{
    if (r->ready != ready)
        atomic_fetch_add(&cs->pool->receiving, ready ? 1 : -1);
    r->ready = ready;
}

/* ---- receivers ------------------------------------------------------------------------ */

/* A consumer cannot consume: logged at level the first time for a given
 * reason, at debug while it repeats (every retry would otherwise log). */
__attribute__((format(printf, 4, 5))) static void consume_failed(rmq_consume_t *cs, rmq_consumer_t *k, int level,
                                                                  const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    /* The reason without the connection index, which changes. */
    const char *reason = strstr(text, ": ") ? strstr(text, ": ") + 2 : text;
    int again = strncmp(k->last_error, reason, sizeof(k->last_error) - 1) == 0;
    if (!again)
        snprintf(k->last_error, sizeof(k->last_error), "%.*s", (int)sizeof(k->last_error) - 1, reason);
    LOG(cs, again ? CMI_LOG_DEBUG : level, "%s%s", text, again ? " (again)" : "");
}

static void attach(rmq_consume_t *cs, rmq_conn_t *c, rmq_rlink_t *r)
{
    /* Declared (a stream's arguments reach 3.x too), but not consumed. */
    char why[400];
    if (rmq_stream_usable(r->consumer, c, why, sizeof(why)) != 0) {
        consume_failed(cs, r->consumer, CMI_LOG_ERROR, "connection %d: cannot consume from %s: %s (trying again "
                       "every %d ms)", c->index, r->consumer->spec.target.describe, why, REATTACH_MS);
        r->retry_at = rmq_now() + REATTACH_MS;
        rmq_pool_timer_changed(cs->pool);
        return;
    }
    const char *address = rmq_target_address(&r->consumer->spec.target, c->format);
    /* A session of its own while the broker's sessions allow (one left
     * for a sender at least); past that, the main one. */
    if (r->ssn == NULL && c->nreceivers + 1 < c->max_links) {
        r->ssn = pn_session(c->pn);
        pn_session_set_context(r->ssn, &r->tag);
        pn_session_open(r->ssn);
        c->nreceivers++;
    }
    r->pn = pn_receiver(r->ssn != NULL ? r->ssn : c->ssn, r->name);
    pn_terminus_set_address(pn_link_source(r->pn), address);
    /* /queue/NAME is declared with the source's durability on 3.x. */
    pn_terminus_set_durability(pn_link_source(r->pn), PN_CONFIGURATION);
    rmq_stream_source(r->consumer, r->pn);
    if (r->consumer->spec.auto_ack) {
        /* Auto-ack: the broker sends settled; the message counts as
         * delivered when it arrives (docs/rabbitmq.md, "The inbound
         * endpoint"). */
        pn_link_set_snd_settle_mode(r->pn, PN_SND_SETTLED);
    }
    pn_link_set_context(r->pn, &r->tag);
    pn_link_open(r->pn);
    set_ready(cs, r, 0);
    r->retry_at = 0;
    LOG(cs, CMI_LOG_DEBUG, "connection %d: consuming from %s", c->index, address);
}

/* Its queue first, when it needs declaring on this connection; then the
 * receiver. */
static void open_rlink(rmq_consume_t *cs, rmq_conn_t *c, rmq_rlink_t *r)
{
    const rmq_target_t *t = &r->consumer->spec.target;
    if (t->key != NULL && rmq_target_needs_declaring(t, c->format)) {
        rmq_decl_t *d = rmq_declare(cs->pool, c, t);
        if (d->state != RMQ_DECL_DONE) {
            r->waiting_decl = 1;
            rmq_declare_flush(cs->pool, c); /* 4.x: the request goes out now */
            return;
        }
    }
    attach(cs, c, r);
}

static void start_consumer(rmq_consume_t *cs, rmq_conn_t *c, rmq_consumer_t *k)
{
    rmq_final_on_start(cs, c, &k->spec);
    for (int i = 0; i < k->spec.links; i++) {
        rmq_rlink_t *r = rmq_xcalloc(1, sizeof(*r));
        r->tag.role = RMQ_ROLE_RECEIVER;
        STAILQ_INIT(&r->parked);
        r->conn = c;
        r->consumer = k;
        r->slot = i;
        snprintf(r->name, sizeof(r->name), "receiver-%d-%d-%p", c->index, i, (void *)r);
        SLIST_INSERT_HEAD(&cc_of(cs, c)->rlinks, r, entry);
        open_rlink(cs, c, r);
    }
}

static void on_up(void *st, rmq_conn_t *c)
{
    rmq_consume_t *cs = st;
    if (cs->consuming_stopped)
        return;
    rmq_consumer_t *k;
    SLIST_FOREACH(k, &cs->consumers, entry)
        start_consumer(cs, c, k);
}

static void on_declared(void *st, rmq_conn_t *c, const char *key, int status, const char *detail)
{
    rmq_consume_t *cs = st;
    rmq_rlink_t *r;
    SLIST_FOREACH(r, &cc_of(cs, c)->rlinks, entry) {
        if (!r->waiting_decl || r->consumer->spec.target.key == NULL ||
            strcmp(r->consumer->spec.target.key, key) != 0)
            continue;
        r->waiting_decl = 0;
        if (status == 0) {
            attach(cs, c, r);
        } else {
            consume_failed(cs, r->consumer, CMI_LOG_ERROR, "cannot consume from %s: %s (trying again every %d ms)",
                           r->consumer->spec.target.describe, detail ? detail : "declaration failed", REATTACH_MS);
            r->retry_at = rmq_now() + REATTACH_MS;
            rmq_pool_timer_changed(cs->pool);
        }
    }
}

/* ---- deliveries ---------------------------------------------------------------------- */

/* Decodes d's message and hands it to mediation (or settles it when it
 * cannot be mediated).  r is NULL for an auto-acknowledged message whose
 * receiver went: the broker will not send it again, so it is mediated
 * all the same, outside the credit. */
static void mediate(rmq_consume_t *cs, rmq_consumer_t *k, rmq_rlink_t *r, rmq_delivery_t *d)
{
    const rmq_consumer_spec_t *spec = &k->spec;
    if (k->spec.throttle.enabled) {
        rmq_throttle_take(&k->spec.throttle, rmq_now());
        rmq_pool_timer_changed(cs->pool); /* its next deadline moved */
    }
    rmq_decoded_t dm;
    const char *why = NULL;
    rmq_deliver_result_t rc = RMQ_DELIVER_UNUSABLE;
    int delivered = 0;
    if (rmq_message_decode(&dm, cs->scratch, d->raw, d->raw_len, &why) == 0) {
        snprintf(d->message_id, sizeof(d->message_id), "%s", dm.in.message_id);
        delivered = 1; /* deliver() logs what it refuses */
        if (spec->stream.enabled)
            d->stream_offset = dm.in.stream_offset;
        if (rmq_stream_skip(k, &dm.in)) {
            rc = RMQ_DELIVER_DONE; /* not a filter value asked for: accepted unseen */
        } else {
            rmq_final_prepare(d, dm.m, d->raw_len);
            atomic_fetch_add(&d->refs, 1); /* the flow's, if it starts */
            rc = spec->deliver(spec->arg, d, &dm.in);
            if (rc != RMQ_DELIVER_MEDIATING)
                atomic_fetch_sub(&d->refs, 1);
        }
    }
    rmq_decoded_dispose(&dm);
    free(d->raw);
    d->raw = NULL;
    if (rc == RMQ_DELIVER_MEDIATING) {
        if (r != NULL) {
            d->mediating = 1;
            r->in_mediation++;
            k->mediating++;
            rmq_stat_gauge(&cs->pool->stats.mediating, 1);
        }
        return;
    }
    rmq_decision_t decision = RMQ_DECIDE_ACCEPT; /* dealt with at once (a sendRpc reply) */
    if (rc == RMQ_DELIVER_UNUSABLE) {
        if (!delivered)
            LOG(cs, CMI_LOG_WARN, "a message from %s was discarded: %s (the consumer goes on)", spec->target.describe,
                why);
        decision = RMQ_DECIDE_DISCARD;
    } else if (rc == RMQ_DELIVER_REFUSED) {
        /* The engine is stopping: no more credit for this consumer. */
        k->refused = 1;
        if (d->auto_acked)
            LOG(cs, CMI_LOG_WARN, "an auto-acknowledged message%s%s from %s was dropped: the engine is stopping (with "
                "auto-ack the broker does not keep what it sent)", d->message_id[0] ? " " : "", d->message_id,
                spec->target.describe);
        decision = RMQ_DECIDE_RELEASE;
    }
    int none = RMQ_DECIDE_NONE;
    atomic_compare_exchange_strong(&d->decision, &none, decision);
    d->flow_done = 1;
    if (d->settled)
        rmq_delivery_finish(cs, d);
    else
        rmq_delivery_settle(cs, d, atomic_load(&d->decision));
}

static rmq_delivery_t *unpark(rmq_rlink_t *r);

/* The receiver is gone: its parked messages go back to the queue with it
 * (they were never mediated), except auto-acknowledged ones, which the
 * broker considers delivered: those are mediated now. */
static void drop_parked(rmq_consume_t *cs, rmq_rlink_t *r)
{
    rmq_delivery_t *d;
    while ((d = unpark(r)) != NULL) {
        rmq_delivery_detach(d);
        if (d->auto_acked && d->raw != NULL) {
            mediate(cs, r->consumer, NULL, d);
            continue;
        }
        free(d->raw);
        d->raw = NULL;
        d->flow_done = 1; /* never mediated */
        rmq_delivery_finish(cs, d);
    }
}

static void park(rmq_rlink_t *r, rmq_delivery_t *d)
{
    STAILQ_INSERT_TAIL(&r->parked, d, park_entry);
    r->nparked++;
}

static rmq_delivery_t *unpark(rmq_rlink_t *r)
{
    rmq_delivery_t *d = STAILQ_FIRST(&r->parked);
    if (d != NULL) {
        STAILQ_REMOVE_HEAD(&r->parked, park_entry);
        r->nparked--;
    }
    return d;
}

/* A slot in mediation is free: the next parked message takes it, or the
 * broker is asked for more, up to the credit (counting what is on its way). */
static int busy(const rmq_rlink_t *r)
{
    return r->in_mediation + r->consumer->orphans[r->slot];
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The messages the consumer's throttle lets start now (INT64_MAX without). */
static int64_t allowance(rmq_consumer_t *k)
{
    return k->spec.throttle.enabled ? rmq_throttle_allowance(&k->spec.throttle, rmq_now(), wall_ms()) : INT64_MAX;
}

/* No slot: the receiver's credit is in use, the consumer's mediation limit
 * over all its receivers, or its throttle. */
static int full(const rmq_rlink_t *r)
{
    rmq_consumer_t *k = r->consumer;
    return busy(r) >= k->spec.credit || (k->spec.max_mediating > 0 && k->mediating >= k->spec.max_mediating) ||
           allowance(k) <= 0;
}

/* What a throttled consumer may still be sent: its allowance less the
 * credit its receivers hold and the messages parked with them. */
static int64_t throttle_room(rmq_consume_t *cs, rmq_consumer_t *k)
{
    int64_t room = allowance(k);
    for (size_t i = 0; i < cs->pool->nconns; i++) {
        const rmq_rlink_t *r;
        SLIST_FOREACH(r, &cs->conns[i].rlinks, entry)
            if (r->consumer == k)
                room -= (r->pn != NULL && pn_link_credit(r->pn) > 0 ? pn_link_credit(r->pn) : 0) + (int64_t)r->nparked;
    }
    return room;
}

static void refill(rmq_consume_t *cs, rmq_rlink_t *r)
{
    rmq_consumer_t *k = r->consumer;
    int closing = cs->consuming_stopped || cs->pool->stopping || k->refused || r->conn->retiring;
    while ((closing || !full(r)) && !STAILQ_EMPTY(&r->parked)) {
        rmq_delivery_t *d = unpark(r);
        if (!d->auto_acked && (d->settled || closing)) {
            /* Its ack wait ran out while it waited, or consuming stops:
             * back to the queue, never mediated. */
            free(d->raw);
            d->raw = NULL;
            d->flow_done = 1;
            if (!d->settled)
                rmq_delivery_settle(cs, d, RMQ_DECIDE_RELEASE);
            else
                rmq_delivery_finish(cs, d);
            continue;
        }
        mediate(cs, k, r, d);
    }
    if (r->pn == NULL || !r->ready || closing)
        return;
    /* The credit the broker should hold: what the flows in mediation and
     * the parked messages leave of it.  RabbitMQ 3.x sends beyond the
     * credit (messages already on their way when a flow frame arrives),
     * which takes proton's count below zero; a flow frame then must set it
     * to the target, never to a negative count, which goes on the wire as
     * a huge unsigned link-credit and lets the broker send the whole queue
     * (seen: 78,000 messages parked in cmi for a credit of 100). */
    int target = k->spec.credit - busy(r) - (int)r->nparked;
    int batch = k->spec.credit >= 4 ? k->spec.credit / 4 : 1;
    if (k->spec.throttle.enabled) { /* only what may start: the rest stays in the broker */
        int64_t room = throttle_room(cs, k);
        int held = pn_link_credit(r->pn) > 0 ? pn_link_credit(r->pn) : 0;
        if (room + held < target)
            target = (int)(room + held);
        batch = 1;
    }
    if (target <= 0)
        return;
    /* Credit goes back in batches of a quarter of it: RabbitMQ 3.x turns
     * every flow frame into a basic.credit, and one per message keeps its
     * CPU busy.  No stall: below a batch the broker still holds most of
     * the credit, or flows in mediation refill when they end. */
    int want = target - pn_link_credit(r->pn);
    if (want >= batch)
        pn_link_flow(r->pn, want);
}

/* A flow orphaned by a lost receiver ended: its slot is free again (slot
 * -1: a place under the consumer's limit, for receivers with parked
 * messages).  This
 * runs outside the events of the receivers' connections, and proton sends
 * a flow frame only for the connection whose events it handles: each is
 * woken and refills its receivers then (rmq_consume_on_wake). */
static void refill_slot(rmq_consume_t *cs, rmq_consumer_t *k, int slot)
{
    for (size_t i = 0; i < cs->pool->nconns; i++) {
        rmq_conn_t *c = &cs->pool->conns[i];
        rmq_rlink_t *r;
        SLIST_FOREACH(r, &cc_of(cs, c)->rlinks, entry) {
            if (r->consumer != k || r->pn == NULL)
                continue;
            if (slot >= 0 ? r->slot != slot : STAILQ_EMPTY(&r->parked))
                continue;
            if (c->pn == cs->pool->cur)
                refill(cs, r);
            else if (c->pn != NULL)
                pn_connection_wake(c->pn);
        }
    }
}

static void credit_freed(rmq_consume_t *cs, rmq_rlink_t *r, rmq_consumer_t *orphan_of, int slot)
{
    rmq_consumer_t *k = orphan_of != NULL ? orphan_of : r->consumer;
    if (orphan_of != NULL)
        refill_slot(cs, orphan_of, slot);
    else
        refill(cs, r);
    if (k->spec.max_mediating > 0)
        refill_slot(cs, k, -1); /* a message parked by another receiver under the limit may take the place */
}

/* A flow frame carries proton's credit as it is when the frame is written,
 * and more transfers may have come in by then: the proactor reads again
 * while a batch of events is handled and writes only once every event is
 * handled.  RabbitMQ 3.x's overshoot can so take the credit below zero
 * after refill() set it, and below zero goes on the wire as a huge unsigned
 * link-credit: the broker sent cmi the rest of the queue (seen under load:
 * 1,792 messages out for a credit of 10).  Every transfer is seen here
 * before that write: the credit goes back to zero (a flow frame of 0 stops
 * the broker), and refill() grants again as slots free. */
static void clamp_credit(rmq_rlink_t *r)
{
    int credit = pn_link_credit(r->pn);
    if (credit < 0)
        pn_link_flow(r->pn, -credit);
}

static void on_message(rmq_consume_t *cs, rmq_rlink_t *r, pn_delivery_t *pd)
{
    rmq_conn_t *c = r->conn;
    size_t size = pn_delivery_pending(pd);
    rmq_delivery_t *d = rmq_xcalloc(1, sizeof(*d));
    char *raw = rmq_xmalloc(size);
    ssize_t got = pn_link_recv(r->pn, raw, size);
    pn_link_advance(r->pn);
    clamp_credit(r);
    d->cs = cs;
    d->conn = c;
    d->rlink = r;
    d->pd = pd;
    d->raw = raw;
    d->raw_len = got > 0 ? (size_t)got : 0;
    d->requeue_as_discard = r->consumer->spec.requeue_as_discard;
    d->stream_offset = -1;
    atomic_init(&d->refs, 1); /* the pool's; the flow's is added when it starts */
    pn_delivery_set_context(pd, d);
    rmq_delivery_track(d);
    const rmq_consumer_spec_t *spec = &r->consumer->spec;
    if (spec->auto_ack || pn_delivery_settled(pd)) {
        /* Auto-ack: delivered on arrival, whatever the flow decides. */
        atomic_store(&d->decision, RMQ_DECIDE_ACCEPT);
        if (!pn_delivery_settled(pd))
            pn_delivery_update(pd, PN_ACCEPTED);
        pn_delivery_settle(pd);
        d->pd = NULL;
        d->settled = 1;
        d->auto_acked = 1;
    } else {
        d->ack_deadline = rmq_now() + (int64_t)spec->ack_wait_ms;
        if (rmq_delivery_await(d))
            rmq_pool_timer_changed(cs->pool); /* the earliest ack deadline now */
    }
    if (full(r))
        park(r, d); /* beyond the credit or the limit: waits for a slot */
    else
        mediate(cs, r->consumer, r, d);
}

/* The broker closed a receiver: its unsettled deliveries went back to the
 * queue with it; it is attached again after REATTACH_MS. */
/* The broker took r away (its link, or its session): its unsettled
 * deliveries went back to the queue with it; it is attached again after
 * REATTACH_MS, the failure said once while it repeats. */
static void receiver_lost(rmq_consume_t *cs, rmq_conn_t *c, rmq_rlink_t *r, const char *what, const char *why)
{
    if (!cs->pool->stopping && !cs->consuming_stopped) {
        consume_failed(cs, r->consumer, CMI_LOG_WARN, "connection %d: the broker %s on %s: %s; attaching again every "
                       "%d ms", c->index, what, r->consumer->spec.target.describe, why, REATTACH_MS);
        r->retry_at = rmq_now() + REATTACH_MS;
        rmq_pool_timer_changed(cs->pool);
    }
    set_ready(cs, r, 0);
    drop_parked(cs, r);
    rmq_delivery_t *d, *nx;
    TAILQ_FOREACH_SAFE(d, &cc_of(cs, c)->live, live_entry, nx) {
        if (d->rlink == r) {
            rmq_delivery_detach(d);
            rmq_delivery_finish(cs, d);
        }
    }
    if (r->pn != NULL) {
        pn_link_set_context(r->pn, NULL);
        pn_link_close(r->pn);
        pn_link_free(r->pn);
        r->pn = NULL;
    }
}

static void on_receiver_closed(rmq_consume_t *cs, rmq_conn_t *c, rmq_rlink_t *r, pn_link_t *pl)
{
    char why[300];
    rmq_condition_text(pn_link_remote_condition(pl), why, sizeof(why));
    receiver_lost(cs, c, r, "closed the receiver", why);
}

/* The broker ended r's session: the session goes too (a new one with the
 * next attach; the broker ended first, so its channel is free at once). */
static void on_session_ended(rmq_consume_t *cs, rmq_conn_t *c, rmq_rlink_t *r, pn_session_t *ssn)
{
    char why[300];
    rmq_condition_text(pn_session_remote_condition(ssn), why, sizeof(why));
    if (r->pn != NULL) /* else its detach came first and said it */
        receiver_lost(cs, c, r, "ended the session of the receiver", why);
    pn_session_set_context(ssn, NULL);
    pn_session_close(ssn);
    pn_session_free(ssn);
    if (r->ssn == ssn) {
        r->ssn = NULL;
        c->nreceivers--;
    }
}

static void on_link(void *st, rmq_conn_t *c, pn_event_t *e, rmq_link_tag_t *tag)
{
    rmq_consume_t *cs = st;
    rmq_rlink_t *r = (rmq_rlink_t *)tag;
    pn_link_t *pl = pn_event_link(e);
    switch (pn_event_type(e)) {
    case PN_LINK_REMOTE_OPEN:
        if (pn_terminus_get_address(pn_link_remote_source(pl)) != NULL && !r->ready) {
            set_ready(cs, r, 1);
            c->failures = 0;
            refill(cs, r); /* the credit, less what orphaned flows still hold */
            LOG(cs, CMI_LOG_INFO, "connection %d: consuming from %s (credit %d)", c->index,
                r->consumer->spec.target.describe, r->consumer->spec.credit);
            r->consumer->last_error[0] = '\0';
        }
        break;
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH:
        on_receiver_closed(cs, c, r, pl);
        break;
    case PN_SESSION_REMOTE_CLOSE:
        on_session_ended(cs, c, r, pn_event_session(e));
        break;
    case PN_DELIVERY: {
        pn_delivery_t *pd = pn_event_delivery(e);
        if (pn_delivery_get_context(pd) == NULL && pn_delivery_readable(pd) && !pn_delivery_partial(pd))
            on_message(cs, r, pd);
        break;
    }
    default:
        break;
    }
}


static void wake_up_conns(rmq_consume_t *cs)
{
    for (size_t i = 0; i < cs->pool->nconns; i++)
        if (cs->pool->conns[i].state == RMQ_CONN_UP)
            pn_connection_wake(cs->pool->conns[i].pn);
}

static void on_interrupt(void *st)
{
    rmq_consume_t *cs = st;
    pthread_mutex_lock(&cs->lock);
    struct dwork_list work = cs->dwork_inbox;
    SLIST_INIT(&cs->dwork_inbox);
    struct consumer_list ks = cs->new_consumers;
    SLIST_INIT(&cs->new_consumers);
    int stop = cs->stop_consuming;
    pthread_mutex_unlock(&cs->lock);
    rmq_consumer_t *k;
    int added = 0;
    while ((k = SLIST_FIRST(&ks)) != NULL) {
        SLIST_REMOVE_HEAD(&ks, entry);
        rmq_stream_init(cs, k);
        SLIST_INSERT_HEAD(&cs->consumers, k, entry);
        added = 1;
    }
    if (added)
        wake_up_conns(cs); /* their receivers are attached in each connection's own events */
    if (stop)
        cs->consuming_stopped = 1; /* refill() grants no more credit */
    rmq_delivery_take_work(cs, &work);
}

static void on_wake(void *st, rmq_conn_t *c)
{
    rmq_consume_t *cs = st;
    rmq_delivery_apply_all(cs, c);
    if (c->state != RMQ_CONN_UP)
        return;
    /* Consuming stopped: no credit is granted again, and what the broker
     * still sends on the credit it has is refused by the engine and
     * released.  (Not a drain: RabbitMQ 3.10 closes the connection on a
     * flow with drain set, losing the decisions still on their way.) */
    if (cs->consuming_stopped)
        return;
    /* Receivers of consumers added since the connection came up, and
     * receivers the broker closed whose wait is over. */
    cconn_t *cc = cc_of(cs, c);
    rmq_consumer_t *k;
    rmq_rlink_t *r;
    SLIST_FOREACH(k, &cs->consumers, entry) {
        int has = 0;
        SLIST_FOREACH(r, &cc->rlinks, entry)
            has |= r->consumer == k;
        if (!has)
            start_consumer(cs, c, k);
    }
    SLIST_FOREACH(r, &cc->rlinks, entry) {
        if (r->pn == NULL && !r->waiting_decl && r->retry_at == 0)
            open_rlink(cs, c, r);
        else
            refill(cs, r); /* slots freed elsewhere (refill_slot) */
    }
}

/* ---- timers ----------------------------------------------------------------------------- */

static int64_t next_deadline(void *st)
{
    rmq_consume_t *cs = st;
    int64_t next = 0;
    for (size_t i = 0; i < cs->pool->nconns; i++) {
        const cconn_t *cc = &cs->conns[i];
        int64_t t = rmq_delivery_next_deadline(cc);
        if (t > 0 && (next == 0 || t < next))
            next = t;
        t = rmq_final_next_deadline(cc);
        if (t > 0 && (next == 0 || t < next))
            next = t;
        const rmq_rlink_t *r;
        SLIST_FOREACH(r, &cc->rlinks, entry)
            if (r->retry_at > 0 && (next == 0 || r->retry_at < next))
                next = r->retry_at;
    }
    int64_t flush = rmq_stream_next_deadline(cs);
    if (flush > 0 && (next == 0 || flush < next))
        next = flush;
    /* A throttle that lets more start later: its receivers are refilled then. */
    int64_t now = rmq_now();
    const rmq_consumer_t *k;
    SLIST_FOREACH(k, &cs->consumers, entry) {
        int64_t t = rmq_throttle_next(&k->spec.throttle);
        if (t > now && t != k->throttle_woken && (next == 0 || t < next))
            next = t;
    }
    return next;
}

/* Throttles whose deadline passed: their receivers' connections are woken
 * (on_wake refills every receiver). */
static void throttles_due(rmq_consume_t *cs, int64_t now)
{
    rmq_consumer_t *k;
    SLIST_FOREACH(k, &cs->consumers, entry) {
        int64_t t = rmq_throttle_next(&k->spec.throttle);
        if (t == 0 || t > now || t == k->throttle_woken)
            continue;
        k->throttle_woken = t;
        for (size_t i = 0; i < cs->pool->nconns; i++) {
            rmq_rlink_t *r;
            SLIST_FOREACH(r, &cs->conns[i].rlinks, entry)
                if (r->consumer == k && cs->pool->conns[i].pn != NULL) {
                    pn_connection_wake(cs->pool->conns[i].pn);
                    break;
                }
        }
    }
}

/* Requeue delays and ack waits that ran out, receivers to attach again:
 * the dispositions and attaches are made in the connection's own events. */
static int timeouts_of(rmq_consume_t *cs, rmq_conn_t *c, int64_t now)
{
    int touched = rmq_delivery_timeouts(cs, c, now);
    touched |= rmq_final_timeouts(cs, c, now);
    rmq_rlink_t *r;
    SLIST_FOREACH(r, &cc_of(cs, c)->rlinks, entry)
        if (r->retry_at > 0 && r->retry_at <= now && r->pn == NULL && c->state == RMQ_CONN_UP) {
            r->retry_at = 0;
            touched = 1;
        }
    return touched;
}

static void on_timeout(void *st, int64_t now)
{
    rmq_consume_t *cs = st;
    for (size_t i = 0; i < cs->pool->nconns; i++) {
        rmq_conn_t *c = &cs->pool->conns[i];
        if (timeouts_of(cs, c, now) && c->pn != NULL)
            pn_connection_wake(c->pn);
    }
    throttles_due(cs, now);
    rmq_stream_on_timeout(cs, now);
}

/* ---- losing and closing ------------------------------------------------------------------- */

/* Streams: what the connection's unsettled deliveries hold back is counted
 * before they go (they are read again). */
static void stream_checkpoints(rmq_consume_t *cs)
{
    rmq_consumer_t *k;
    SLIST_FOREACH(k, &cs->consumers, entry)
        rmq_stream_checkpoint(cs, k);
}

static void on_closed(void *st, rmq_conn_t *c)
{
    rmq_consume_t *cs = st;
    cconn_t *cc = cc_of(cs, c);
    stream_checkpoints(cs);
    rmq_rlink_t *r;
    SLIST_FOREACH(r, &cc->rlinks, entry) {
        r->pn = NULL; /* gone with the connection, and its session */
        r->ssn = NULL;
        set_ready(cs, r, 0);
    }
    c->nreceivers = 0;
    SLIST_FOREACH(r, &cc->rlinks, entry)
        drop_parked(cs, r);
    rmq_delivery_conn_closed(cs, c);
    while ((r = SLIST_FIRST(&cc->rlinks)) != NULL) {
        SLIST_REMOVE_HEAD(&cc->rlinks, entry);
        free(r);
    }
}

/* What c's receivers have in mediation (a retiring connection waits for it). */
static size_t conn_busy(void *st, rmq_conn_t *c)
{
    size_t n = 0;
    const rmq_rlink_t *r;
    SLIST_FOREACH(r, &cc_of(st, c)->rlinks, entry)
        n += (size_t)r->in_mediation + r->nparked;
    return n;
}

/* Shutdown: nothing is left hanging. */
static void on_closing(void *st, rmq_conn_t *c)
{
    rmq_delivery_apply_all(st, c); /* decisions that came with the stop count */
    stream_checkpoints(st);
    rmq_delivery_release_all(st, c);
}

/* ---- the feature ------------------------------------------------------------------------ */

static void consumer_free(rmq_consumer_t *k)
{
    rmq_target_dispose(&k->spec.target);
    free(k->orphans);
    free(k);
}

static void *create(rmq_pool_t *pool)
{
    rmq_consume_t *cs = rmq_xcalloc(1, sizeof(*cs));
    cs->pool = pool;
    cs->credit_freed = credit_freed;
    cs->final_take = rmq_final_take;
    cs->final_detach = rmq_final_detach;
    cs->final_free = rmq_final_free;
    pthread_mutex_init(&cs->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* rmq_pool_wait_finals' deadline */
    pthread_cond_init(&cs->finals_cv, &ca);
    pthread_condattr_destroy(&ca);
    SLIST_INIT(&cs->new_consumers);
    SLIST_INIT(&cs->dwork_inbox);
    SLIST_INIT(&cs->consumers);
    cs->scratch = pn_message();
    cs->conns = rmq_xcalloc(pool->nconns, sizeof(*cs->conns));
    for (size_t i = 0; i < pool->nconns; i++) {
        cconn_t *cc = &cs->conns[i];
        SLIST_INIT(&cc->rlinks);
        TAILQ_INIT(&cc->out);
        TAILQ_INIT(&cc->rq);
        TAILQ_INIT(&cc->live);
        SLIST_INIT(&cc->dwork);
        TAILQ_INIT(&cc->finals);
    }
    return cs;
}

/* The pool's thread is gone (every connection closed first). */
static void destroy(void *st)
{
    rmq_consume_t *cs = st;
    rmq_consumer_t *k;
    while ((k = SLIST_FIRST(&cs->consumers)) != NULL) {
        SLIST_REMOVE_HEAD(&cs->consumers, entry);
        rmq_stream_save(cs, k); /* the last checkpoint, taken as the connections closed */
        consumer_free(k);
    }
    while ((k = SLIST_FIRST(&cs->new_consumers)) != NULL) {
        SLIST_REMOVE_HEAD(&cs->new_consumers, entry);
        consumer_free(k);
    }
    struct rmq_dwork *w;
    while ((w = SLIST_FIRST(&cs->dwork_inbox)) != NULL) {
        SLIST_REMOVE_HEAD(&cs->dwork_inbox, entry);
        rmq_delivery_unref(w->d);
        free(w);
    }
    free(cs->conns);
    pn_message_free(cs->scratch);
    pthread_cond_destroy(&cs->finals_cv);
    pthread_mutex_destroy(&cs->lock);
    free(cs);
}

const rmq_feature_t rmq_consume_feature = {
    .name = "consume",
    .role = RMQ_ROLE_RECEIVER,
    .create = create,
    .destroy = destroy,
    .on_up = on_up,
    .on_interrupt = on_interrupt,
    .on_wake = on_wake,
    .on_link = on_link,
    .on_declared = on_declared,
    .on_closing = on_closing,
    .busy = conn_busy,
    .on_closed = on_closed,
    .next_deadline = next_deadline,
    .on_timeout = on_timeout,
};

/* ---- the public side ------------------------------------------------------------------------ */

void rmq_pool_consume(rmq_pool_t *pool, rmq_consumer_spec_t *spec)
{
    rmq_consume_t *cs = rmq_pool_feature_state(pool, &rmq_consume_feature);
    rmq_consumer_t *k = rmq_xcalloc(1, sizeof(*k));
    k->orphans = rmq_xcalloc((size_t)(spec->links > 0 ? spec->links : 1), sizeof(int));
    k->spec = *spec;
    memset(&spec->target, 0, sizeof(spec->target)); /* now the pool's */
    pthread_mutex_lock(&cs->lock);
    SLIST_INSERT_HEAD(&cs->new_consumers, k, entry);
    pthread_mutex_unlock(&cs->lock);
    rmq_pool_interrupt(pool);
}

void rmq_pool_stop_consuming(rmq_pool_t *pool)
{
    rmq_consume_t *cs = rmq_pool_feature_state(pool, &rmq_consume_feature);
    pthread_mutex_lock(&cs->lock);
    cs->stop_consuming = 1;
    pthread_mutex_unlock(&cs->lock);
    rmq_pool_interrupt(pool);
}

/* Dead-letter retries (rmq_final.c): the shutdown waits for them. */
int rmq_pool_wait_finals(rmq_pool_t *pool, uint64_t timeout_ms)
{
    rmq_consume_t *cs = rmq_pool_feature_state(pool, &rmq_consume_feature);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(timeout_ms / 1000);
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&cs->lock);
    int pending = cs->nfinals;
    pthread_mutex_unlock(&cs->lock);
    if (pending == 0)
        return 0;
    LOG(cs, CMI_LOG_INFO, "waiting up to %llu ms for %d message(s) on their way to the final dead-letter target "
        "(rabbitmq.dead.letter.publisher.shutdown.timeout)", (unsigned long long)timeout_ms, pending);
    pthread_mutex_lock(&cs->lock);
    while (cs->nfinals > 0 && pthread_cond_timedwait(&cs->finals_cv, &cs->lock, &until) == 0)
        ;
    int left = cs->nfinals;
    pthread_mutex_unlock(&cs->lock);
    return left;
}
