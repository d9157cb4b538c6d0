/* Deliveries (docs/rabbitmq.md, "The inbound endpoint"), on the pool's
 * thread but for the decisions and flow ends the workers post: a delivery is
 * shared by the pool thread and the flow mediating it (one reference each).
 * Decisions (accept, discard, requeue) and the flow's end come from workers
 * through a locked inbox; like any work for a connection they are applied in
 * its PN_CONNECTION_WAKE so that proton sends the disposition.  Credit comes
 * back only when a delivery is both settled and its flow over.
 *
 * A connection that drops takes its unsettled deliveries with it (the
 * broker requeues them); decisions that come later are answered, and
 * forgotten.  A requeue, decided or for want of a decision by the end of
 * the flow, goes back after requeue_delay (MI's
 * rabbitmq.message.requeue.delay; at once, a flow that fails every time
 * spins its message through the broker: measured, about 800 deliveries a
 * second); a flow still running after ack_wait: requeued then, and its
 * later decision ignored. */
#include "config.h"

#include <proton/disposition.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_consume_int.h"

/* ---- references ----------------------------------------------------------------- */

void rmq_delivery_unref(rmq_delivery_t *d)
{
    if (atomic_fetch_sub(&d->refs, 1) == 1) {
        if (d->final != NULL)
            d->cs->final_free(d->final); /* a candidate its flow did not discard */
        free(d);
    }
}

/* ---- the lists of a connection ------------------------------------------------------ */

static void out_remove(rmq_delivery_t *d)
{
    if (!d->in_out)
        return;
    TAILQ_REMOVE(&cc_of(d->cs, d->conn)->out, d, out_entry);
    d->in_out = 0;
}

static void out_push(rmq_delivery_t *d)
{
    TAILQ_INSERT_TAIL(&cc_of(d->cs, d->conn)->out, d, out_entry);
    d->in_out = 1;
}

static void rq_remove(rmq_delivery_t *d)
{
    if (!d->queued_rq)
        return;
    TAILQ_REMOVE(&cc_of(d->cs, d->conn)->rq, d, rq_entry);
    d->queued_rq = 0;
}

static void rq_push(rmq_delivery_t *d)
{
    TAILQ_INSERT_TAIL(&cc_of(d->cs, d->conn)->rq, d, rq_entry);
    d->queued_rq = 1;
}

static void live_remove(rmq_delivery_t *d)
{
    if (d->conn != NULL)
        TAILQ_REMOVE(&cc_of(d->cs, d->conn)->live, d, live_entry);
}

/* ---- settling ----------------------------------------------------------------------- */

_Static_assert(RMQ_DECIDE_RELEASE + 1 == RMQ_DECISIONS, "rmq_stats_t counts every decision");

static void set_outcome(pn_delivery_t *pd, int decision, int format)
{
    switch (decision) {
    case RMQ_DECIDE_ACCEPT: pn_delivery_update(pd, PN_ACCEPTED); return;
    case RMQ_DECIDE_DISCARD: pn_delivery_update(pd, PN_REJECTED); return; /* dead-lettered where there is a DLX */
    case RMQ_DECIDE_RELEASE: rmq_requeue_outcome(pd, 0, format); return;
    default: rmq_requeue_outcome(pd, 1, format); return; /* the flow's requeue, or its ack wait ran out */
    }
}


/* The delivery no longer belongs to a connection or a receiver (they are
 * going): later work on it touches neither. */
void rmq_delivery_detach(rmq_delivery_t *d)
{
    if (d->conn != NULL) {
        d->cs->final_detach(d->cs, d);
        out_remove(d);
        rq_remove(d);
        live_remove(d);
    }
    if (d->pd != NULL)
        pn_delivery_set_context(d->pd, NULL);
    if (d->mediating && d->rlink != NULL) {
        /* Its flow goes on while the broker redelivers the message: it
         * still takes a slot of the credit until it ends. */
        rmq_rlink_t *r = d->rlink;
        r->in_mediation--;
        d->orphan_of = r->consumer;
        d->slot = r->slot;
        r->consumer->orphans[r->slot]++;
    }
    d->pd = NULL;
    d->conn = NULL;
    d->rlink = NULL;
    d->mediating = 0;
    d->settled = 1; /* the broker takes it back with the link or connection */
}

/* Pool side of d is over when it is settled; the flow side when the flow
 * ended.  Both: a credit goes back to its receiver. */
void rmq_delivery_finish(rmq_consume_t *cs, rmq_delivery_t *d)
{
    if (!d->settled || !d->flow_done)
        return;
    live_remove(d);
    rmq_rlink_t *r = d->rlink;
    if (d->mediating && r != NULL) {
        d->mediating = 0;
        r->in_mediation--;
        r->consumer->mediating--;
        rmq_stat_gauge(&cs->pool->stats.mediating, -1);
    }
    rmq_consumer_t *orphan_of = d->orphan_of;
    int slot = d->slot;
    rmq_delivery_unref(d); /* the pool's reference */
    if (orphan_of != NULL) {
        orphan_of->orphans[slot]--;
        orphan_of->mediating--;
        rmq_stat_gauge(&cs->pool->stats.mediating, -1);
        LOG(cs, CMI_LOG_DEBUG, "a flow of a message from a lost receiver ended (%d more on receiver %d)",
            orphan_of->orphans[slot], slot);
    }
    if (orphan_of != NULL || r != NULL)
        cs->credit_freed(cs, orphan_of != NULL ? NULL : r, orphan_of, slot);
}

void rmq_delivery_settle(rmq_consume_t *cs, rmq_delivery_t *d, int decision)
{
    if (d->settled)
        return;
    if (d->final != NULL && cs->final_take(cs, d, decision)) {
        /* Published to the final target first: settled by its job. */
        if (d->conn != NULL) {
            out_remove(d);
            rq_remove(d);
        }
        return;
    }
    if (d->stream_offset >= 0)
        decision = rmq_stream_settling(cs, d, decision);
    if (d->pd != NULL) {
        rmq_stat_add(&d->cs->pool->stats.decided[decision >= 0 && decision < RMQ_DECISIONS ? decision : 0], 1);
        set_outcome(d->pd, decision, d->conn != NULL ? d->conn->format : RMQ_FORMAT_V1);
        pn_delivery_settle(d->pd);
        d->pd = NULL;
    }
    d->settled = 1;
    if (d->conn != NULL) {
        out_remove(d);
        rq_remove(d);
    }
    rmq_delivery_finish(cs, d);
}

void rmq_delivery_track(rmq_delivery_t *d)
{
    TAILQ_INSERT_HEAD(&cc_of(d->cs, d->conn)->live, d, live_entry);
}

int rmq_delivery_await(rmq_delivery_t *d)
{
    out_push(d);
    return TAILQ_FIRST(&cc_of(d->cs, d->conn)->out) == d;
}

/* ---- work from the workers ------------------------------------------------------------- */

static void post(rmq_delivery_t *d, rmq_work_kind_t kind)
{
    rmq_consume_t *cs = d->cs;
    struct rmq_dwork *w = rmq_xcalloc(1, sizeof(*w));
    w->d = d;
    w->kind = kind;
    pthread_mutex_lock(&cs->lock);
    int first = SLIST_EMPTY(&cs->dwork_inbox);
    SLIST_INSERT_HEAD(&cs->dwork_inbox, w, entry);
    pthread_mutex_unlock(&cs->lock);
    /* The pool's thread takes the whole inbox at once: only the first item
     * of a batch needs to wake it (the others ride along), which saves a
     * wake-up and a context switch for nearly every decision and flow end
     * when messages come fast. */
    if (first)
        rmq_pool_interrupt(cs->pool);
}

int rmq_delivery_decide(rmq_delivery_t *d, int decision)
{
    if (decision == RMQ_DECIDE_REQUEUE && d->requeue_as_discard)
        decision = RMQ_DECIDE_DISCARD; /* at once, not after the requeue delay */
    int none = RMQ_DECIDE_NONE;
    if (!atomic_compare_exchange_strong(&d->decision, &none, decision))
        return 0;
    atomic_fetch_add(&d->refs, 1); /* the work item's */
    post(d, RMQ_WORK_DECIDE);
    return 1;
}

void rmq_delivery_flow_done(rmq_delivery_t *d)
{
    post(d, RMQ_WORK_DONE); /* carries the flow's reference */
}

const char *rmq_delivery_message_id(const rmq_delivery_t *d)
{
    return d->message_id;
}

/* Work on a delivery whose connection is gone (no pn_* needed). */
static void apply_detached(rmq_consume_t *cs, struct rmq_dwork *w)
{
    rmq_delivery_t *d = w->d;
    d->settled = 1;
    if (w->kind == RMQ_WORK_DONE && !d->flow_done) {
        d->flow_done = 1;
        rmq_delivery_finish(cs, d);
        rmq_delivery_unref(d); /* the flow's */
    } else if (w->kind == RMQ_WORK_DECIDE) {
        rmq_delivery_unref(d); /* the work item's */
    }
    free(w);
}


void rmq_delivery_take_work(rmq_consume_t *cs, struct dwork_list *work)
{
    struct rmq_dwork *w;
    while ((w = SLIST_FIRST(work)) != NULL) {
        SLIST_REMOVE_HEAD(work, entry);
        rmq_conn_t *c = w->d->conn;
        if (c != NULL && c->pn != NULL) {
            SLIST_INSERT_HEAD(&cc_of(cs, c)->dwork, w, entry);
            pn_connection_wake(c->pn);
        } else {
            apply_detached(cs, w);
        }
    }
}

/* A requeue waits requeue_delay on the connection's requeue list
 * (rmq_delivery_timeouts sends it); its credit comes back after. */
static void requeue_later(rmq_consume_t *cs, rmq_delivery_t *d)
{
    d->requeue_at = rmq_now() + (int64_t)d->rlink->consumer->spec.requeue_delay_ms;
    rq_push(d);
    rmq_pool_timer_changed(cs->pool);
}

static void apply(rmq_consume_t *cs, struct rmq_dwork *w)
{
    rmq_delivery_t *d = w->d;
    if (w->kind == RMQ_WORK_DECIDE) {
        int decision = atomic_load(&d->decision);
        if (!d->settled && decision == RMQ_DECIDE_REQUEUE && d->rlink != NULL && !d->queued_rq &&
            d->rlink->consumer->spec.requeue_delay_ms > 0)
            requeue_later(cs, d);
        else if (!d->settled)
            rmq_delivery_settle(cs, d, decision);
        rmq_delivery_unref(d); /* the work item's */
        return;
    }
    /* The flow is over. */
    d->flow_done = 1;
    if (!d->settled && atomic_load(&d->decision) == RMQ_DECIDE_NONE && d->rlink != NULL) {
        /* No decision: requeued after a delay, not at once (a flow that
         * never decides would spin the message through the broker). */
        rmq_consumer_t *k = d->rlink->consumer;
        int64_t now = rmq_now();
        if (now - k->last_no_decision_log > 10000) {
            k->last_no_decision_log = now;
            if (d->requeue_as_discard)
                LOG(cs, CMI_LOG_WARN, "a flow of %s ended without accept, discard or requeue: the message is "
                    "discarded (rabbitmq.classic.override.requeue.with.discard; logged at most every 10 s)",
                    k->spec.target.describe);
            else
                LOG(cs, CMI_LOG_WARN, "a flow of %s ended without accept, discard or requeue: the message is requeued "
                    "in %llu ms (logged at most every 10 s)", k->spec.target.describe,
                    (unsigned long long)k->spec.requeue_delay_ms);
        }
        /* Only the flow's own requeues become discards: never what cmi
         * releases itself (a stop, an ack wait run out). */
        int none = RMQ_DECIDE_NONE;
        if (d->requeue_as_discard && atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_DISCARD)) {
            rmq_delivery_settle(cs, d, RMQ_DECIDE_DISCARD); /* settled and over: finished by it */
            rmq_delivery_unref(d); /* the flow's */
            return;
        }
        requeue_later(cs, d);
    }
    rmq_delivery_finish(cs, d);
    rmq_delivery_unref(d); /* the flow's */
}

void rmq_delivery_apply_all(rmq_consume_t *cs, rmq_conn_t *c)
{
    cconn_t *cc = cc_of(cs, c);
    struct rmq_dwork *w;
    while ((w = SLIST_FIRST(&cc->dwork)) != NULL) {
        SLIST_REMOVE_HEAD(&cc->dwork, entry);
        apply(cs, w);
        free(w);
    }
}


/* ---- deadlines ------------------------------------------------------------------------------ */

int64_t rmq_delivery_next_deadline(const cconn_t *cc)
{
    int64_t next = 0;
    const rmq_delivery_t *out = TAILQ_FIRST(&cc->out), *rq = TAILQ_FIRST(&cc->rq);
    if (out != NULL)
        next = out->ack_deadline;
    if (rq != NULL && (next == 0 || rq->requeue_at < next))
        next = rq->requeue_at;
    return next;
}

int rmq_delivery_timeouts(rmq_consume_t *cs, rmq_conn_t *c, int64_t now)
{
    cconn_t *cc = cc_of(cs, c);
    int touched = 0;
    rmq_delivery_t *d;
    while ((d = TAILQ_FIRST(&cc->rq)) != NULL && d->requeue_at <= now) {
        rq_remove(d);
        int none = RMQ_DECIDE_NONE;
        atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_REQUEUE);
        rmq_delivery_settle(cs, d, RMQ_DECIDE_REQUEUE);
        touched = 1;
    }
    /* Flows still running after the ack wait: requeued, their later
     * decision is ignored. */
    while ((d = TAILQ_FIRST(&cc->out)) != NULL && d->ack_deadline <= now) {
        int none = RMQ_DECIDE_NONE;
        /* Only a flow still running is worth a warning: a parked message
         * never started, and one whose flow ended without a decision was
         * logged then. */
        int running = d->mediating && !d->flow_done;
        if (atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_TIMEOUT))
            LOG(cs, running ? CMI_LOG_WARN : CMI_LOG_DEBUG,
                "a message from %s was %s after the ack wait time: requeued",
                d->rlink ? d->rlink->consumer->spec.target.describe : "a queue",
                running ? "still in mediation" : "still waiting");
        rmq_delivery_settle(cs, d, atomic_load(&d->decision));
        touched = 1;
    }
    return touched;
}

/* ---- losing and closing ----------------------------------------------------------------------- */

void rmq_delivery_conn_closed(rmq_consume_t *cs, rmq_conn_t *c)
{
    cconn_t *cc = cc_of(cs, c);
    /* Unsettled deliveries go back to the queue with the connection: the
     * flows still mediating them may decide, and nothing happens. */
    rmq_delivery_t *d;
    while ((d = TAILQ_FIRST(&cc->live)) != NULL) {
        rmq_delivery_detach(d);
        rmq_delivery_finish(cs, d);
    }
    struct rmq_dwork *w;
    while ((w = SLIST_FIRST(&cc->dwork)) != NULL) {
        SLIST_REMOVE_HEAD(&cc->dwork, entry);
        apply_detached(cs, w);
    }
}

/* Decisions that arrived with the stop are sent first: an accepted message
 * is not released. */
void rmq_delivery_release_all(rmq_consume_t *cs, rmq_conn_t *c)
{
    rmq_delivery_apply_all(cs, c);
    rmq_delivery_t *d;
    while ((d = TAILQ_FIRST(&cc_of(cs, c)->out)) != NULL) { /* settling takes d off the list */
        int none = RMQ_DECIDE_NONE;
        atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_RELEASE);
        rmq_delivery_settle(cs, d, atomic_load(&d->decision));
    }
}
