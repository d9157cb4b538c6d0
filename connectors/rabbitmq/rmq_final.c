/* The final dead-letter target (docs/rabbitmq.md, "Dead-letter retries"):
 * MI's FIXED_DELAY_RETRYABLE_DISCARD with rabbitmq.max.dead.lettered.count,
 * on the pool's thread.
 *
 * A message whose x-opt-deaths entry for the consumed queue (RabbitMQ 4.x)
 * says the broker dead-lettered it max_dl times already is a candidate when
 * it arrives: its bytes for the final target are kept beside it.  Should its
 * flow discard it (which would dead-letter it once more), it is published to
 * the final exchange or queue instead, with a confirm, and the original is
 * accepted only once the broker confirmed the copy: nothing is lost between
 * the two.  A failed attempt (refused, unroutable, no confirm within the ack
 * wait, the connection lost) is tried again after retry_interval *
 * factor^(n-1), up to retry_count times; after the last, the original goes
 * back to its queue (released, after a pause) and comes round again: MI
 * would accept it, losing it.  While an attempt may still land, no other
 * starts: the copy is not sent twice (but for a lost connection's
 * redelivery: at least once).
 *
 * A job belongs to its delivery (d->final) from its arrival; once taken it
 * is counted in cs->nfinals (the shutdown waits for them) and, while an
 * attempt is in flight, the publish holds a reference to the delivery. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_consume_int.h"

/* After the last attempt the original goes back after this at least: a
 * final target that refuses at once must not spin the message. */
#define GIVE_BACK_MIN_MS 1000

typedef enum {
    JOB_CANDIDATE, /* kept in case the flow discards */
    JOB_WAITING,   /* the next attempt at `at` */
    JOB_SENDING,   /* an attempt in flight; its ack wait ends at `at` */
    JOB_GIVING_BACK /* the original is released at `at` */
} job_state_t;

struct rmq_final_job {
    TAILQ_ENTRY(rmq_final_job) entry; /* its connection's finals while it has a deadline */
    int listed;
    rmq_delivery_t *d;
    job_state_t state;
    char *bytes; /* the message as the final target gets it */
    size_t len;
    char key[256]; /* the message's routing key ("" without) */
    int64_t deaths;
    int attempts;
    int64_t at;
    rmq_pub_t *pub;     /* the attempt in flight */
    int overdue_logged; /* its ack wait ran out */
};

/* "message 'id'" for the log lines, or "a message without id". */
static const char *label(const rmq_delivery_t *d, char *buf, size_t n)
{
    if (d->message_id[0] == '\0')
        return "a message without id";
    snprintf(buf, n, "message '%s'", d->message_id);
    return buf;
}

static const rmq_final_spec_t *spec_of(const rmq_delivery_t *d)
{
    return &d->rlink->consumer->spec.final;
}

/* ---- a delivery's job ---------------------------------------------------------------- */

void rmq_final_prepare(rmq_delivery_t *d, pn_message_t *m, size_t raw_len)
{
    if (d->rlink == NULL || d->conn == NULL || d->auto_acked)
        return;
    const rmq_final_spec_t *f = spec_of(d);
    if (!f->enabled || d->conn->format != RMQ_FORMAT_V2)
        return;
    int64_t deaths = rmq_message_death_count(m, f->queue);
    if (deaths < 0)
        deaths = 0;
    if (deaths < f->max_dl)
        return;
    rmq_final_job_t *job = rmq_xcalloc(1, sizeof(*job));
    job->bytes = rmq_message_for_final(m, raw_len, &job->len, job->key, sizeof(job->key));
    if (job->bytes == NULL) {
        char lb[160];
        LOG(d->cs, CMI_LOG_ERROR, "%s cannot be re-encoded for the final dead-letter target: a discard dead-letters it as "
            "usual", label(d, lb, sizeof(lb)));
        free(job);
        return;
    }
    job->d = d;
    job->deaths = deaths;
    d->final = job;
}

static void unlist(rmq_consume_t *cs, rmq_final_job_t *job)
{
    if (!job->listed)
        return;
    TAILQ_REMOVE(&cc_of(cs, job->d->conn)->finals, job, entry);
    job->listed = 0;
}

static void list_at(rmq_consume_t *cs, rmq_final_job_t *job, job_state_t state, int64_t at)
{
    unlist(cs, job);
    job->state = state;
    job->at = at;
    TAILQ_INSERT_TAIL(&cc_of(cs, job->d->conn)->finals, job, entry);
    job->listed = 1;
    rmq_pool_timer_changed(cs->pool);
}

/* The job ends (its delivery may go on: settled by the caller). */
static void job_end(rmq_consume_t *cs, rmq_final_job_t *job)
{
    if (job->d->conn != NULL)
        unlist(cs, job);
    job->d->final = NULL;
    if (job->state != JOB_CANDIDATE) {
        pthread_mutex_lock(&cs->lock);
        cs->nfinals--;
        pthread_cond_broadcast(&cs->finals_cv);
        pthread_mutex_unlock(&cs->lock);
    }
    free(job->bytes);
    free(job);
}

void rmq_final_free(rmq_final_job_t *job)
{
    free(job->bytes);
    free(job);
}

/* ---- attempts ---------------------------------------------------------------------------- */

static void attempt_done(rmq_pub_t *pub);

static int build_target(const rmq_final_job_t *job, rmq_target_t *t, char *err, size_t n)
{
    const rmq_final_spec_t *f = spec_of(job->d);
    rmq_target_spec_t s;
    memset(&s, 0, sizeof(s));
    if (f->exchange != NULL) {
        s.exchange.name = f->exchange;
        s.exchange.routing_key = f->routing_key ? f->routing_key : job->key[0] ? job->key : f->queue;
    } else {
        s.queue.name = f->final_queue;
    }
    return rmq_target_build(t, &s, f->vhost, err, n);
}

static void attempt(rmq_consume_t *cs, rmq_final_job_t *job)
{
    rmq_delivery_t *d = job->d;
    rmq_pub_t *pub = rmq_xcalloc(1, sizeof(*pub));
    char err[256];
    if (build_target(job, &pub->target, err, sizeof(err)) != 0) {
        /* Checked at load: only a routing key from the message can fail. */
        free(pub);
        char lb[160];
        LOG(cs, CMI_LOG_ERROR, "%s cannot go to the final dead-letter target: %s", label(d, lb, sizeof(lb)), err);
        job->attempts++;
        list_at(cs, job, JOB_GIVING_BACK, rmq_now() + GIVE_BACK_MIN_MS);
        return;
    }
    pub->bytes = rmq_xmalloc(job->len);
    memcpy(pub->bytes, job->bytes, job->len);
    pub->len = job->len;
    pub->message_id = rmq_xstrdup(d->message_id);
    pub->confirm = 1;
    pub->done = attempt_done;
    pub->arg = job;
    job->pub = pub;
    job->attempts++;
    job->overdue_logged = 0;
    atomic_fetch_add(&d->refs, 1); /* the attempt's */
    list_at(cs, job, JOB_SENDING, rmq_now() + (int64_t)spec_of(d)->ack_wait_ms);
    rmq_pool_submit(cs->pool, pub);
}

int rmq_final_take(rmq_consume_t *cs, rmq_delivery_t *d, int decision)
{
    rmq_final_job_t *job = d->final;
    if (job == NULL)
        return 0;
    if (job->state != JOB_CANDIDATE)
        return 1; /* on its way already: the job settles it */
    if (decision != RMQ_DECIDE_DISCARD || d->pd == NULL || d->conn == NULL || d->conn->format != RMQ_FORMAT_V2)
        return 0;
    pthread_mutex_lock(&cs->lock);
    cs->nfinals++;
    pthread_mutex_unlock(&cs->lock);
    job->state = JOB_WAITING;
    const rmq_final_spec_t *f = spec_of(d);
    char lb[160];
    LOG(cs, CMI_LOG_INFO, "%s from %s was dead-lettered %lld times (rabbitmq.max.dead.lettered.count %lld): "
        "discarded once more, it goes to the final dead-letter %s '%s' instead", label(d, lb, sizeof(lb)),
        d->rlink->consumer->spec.target.describe, (long long)job->deaths, (long long)f->max_dl,
        f->exchange ? "exchange" : "queue", f->exchange ? f->exchange : f->final_queue);
    attempt(cs, job);
    return 1;
}

static int64_t backoff_ms(const rmq_final_spec_t *f, int retry)
{
    double ms = (double)f->retry_interval_ms * pow(f->factor, retry - 1);
    return ms > 86400000.0 ? 86400000 : (int64_t)ms;
}

static void failed(rmq_consume_t *cs, rmq_final_job_t *job, const char *why)
{
    const rmq_final_spec_t *f = spec_of(job->d);
    int retry = job->attempts; /* the retry that comes next */
    char lb[160];
    if (retry <= f->retry_count) {
        int64_t wait = backoff_ms(f, retry);
        LOG(cs, CMI_LOG_WARN, "%s: attempt %d to publish it to the final dead-letter target failed (%s); again "
            "in %lld ms", label(job->d, lb, sizeof(lb)), job->attempts, why, (long long)wait);
        list_at(cs, job, JOB_WAITING, rmq_now() + wait);
        return;
    }
    int64_t wait = backoff_ms(f, retry);
    if (wait < GIVE_BACK_MIN_MS)
        wait = GIVE_BACK_MIN_MS;
    LOG(cs, CMI_LOG_ERROR, "%s could not be published to the final dead-letter target in %d attempts (last: %s): "
        "it goes back to %s in %lld ms, to be tried again when it comes round (nothing is lost)",
        label(job->d, lb, sizeof(lb)), job->attempts, why, job->d->rlink->consumer->spec.target.describe, (long long)wait);
    list_at(cs, job, JOB_GIVING_BACK, rmq_now() + wait);
}

static const char *outcome_text(const rmq_pub_t *pub, char *buf, size_t n)
{
    switch (pub->outcome) {
    case RMQ_OUT_REJECTED: return "the broker rejected it";
    case RMQ_OUT_RELEASED: return "the broker released it: nothing bound to route it";
    case RMQ_OUT_MODIFIED: return "the broker returned it (modified)";
    default:
        snprintf(buf, n, "%s", pub->err_detail[0] ? pub->err_detail : "no outcome");
        return buf;
    }
}

/* Pool thread (or the destroying thread, once every connection is gone). */
static void attempt_done(rmq_pub_t *pub)
{
    rmq_final_job_t *job = pub->arg;
    rmq_delivery_t *d = job->d;
    rmq_consume_t *cs = d->cs;
    int accepted = pub->outcome == RMQ_OUT_ACCEPTED;
    char buf[400], lb[160];
    const char *why = outcome_text(pub, buf, sizeof(buf));
    job->pub = NULL;
    rmq_pub_free(pub);
    if (d->conn == NULL || cs->pool->stopping) {
        /* Its connection went (the broker has the original back) or the
         * pool is stopping (the original is released with it). */
        if (accepted && d->conn == NULL)
            LOG(cs, CMI_LOG_WARN, "%s reached the final dead-letter target, but the connection that delivered "
                "it was lost first: the broker delivers it again, and it may reach the final target twice",
                label(d, lb, sizeof(lb)));
        job_end(cs, job);
        if (d->conn != NULL) {
            rmq_delivery_settle(cs, d, accepted ? RMQ_DECIDE_ACCEPT : RMQ_DECIDE_RELEASE);
            if (d->conn != NULL && d->conn->pn != NULL)
                pn_connection_wake(d->conn->pn);
        }
        rmq_delivery_unref(d); /* the attempt's */
        return;
    }
    if (!accepted) {
        failed(cs, job, why);
        rmq_delivery_unref(d);
        return;
    }
    LOG(cs, CMI_LOG_INFO, "%s is in the final dead-letter target (attempt %d): the original is accepted",
        label(d, lb, sizeof(lb)), job->attempts);
    rmq_conn_t *c = d->conn;
    job_end(cs, job);
    rmq_delivery_settle(cs, d, RMQ_DECIDE_ACCEPT);
    if (c->pn != NULL)
        pn_connection_wake(c->pn); /* the disposition goes out in its events */
    rmq_delivery_unref(d);
}

/* ---- deadlines -------------------------------------------------------------------------- */

int64_t rmq_final_next_deadline(const cconn_t *cc)
{
    int64_t next = 0;
    const rmq_final_job_t *job;
    TAILQ_FOREACH(job, &cc->finals, entry)
        if (next == 0 || job->at < next)
            next = job->at;
    return next;
}

int rmq_final_timeouts(rmq_consume_t *cs, rmq_conn_t *c, int64_t now)
{
    cconn_t *cc = cc_of(cs, c);
    int touched = 0;
    rmq_final_job_t *job, *next;
    for (job = TAILQ_FIRST(&cc->finals); job != NULL; job = next) {
        next = TAILQ_NEXT(job, entry); /* job may move to the tail, or end */
        if (job->at > now)
            continue;
        rmq_delivery_t *d = job->d;
        switch (job->state) {
        case JOB_WAITING:
            attempt(cs, job);
            break;
        case JOB_SENDING:
            /* No confirm yet: the attempt counts as failed once the pool
             * gives it up (or the broker answers after all); a second copy
             * is not sent while the first may still land. */
            unlist(cs, job);
            if (!job->overdue_logged) {
                char lb[160];
                job->overdue_logged = 1;
                LOG(cs, CMI_LOG_WARN, "%s: no confirm from the final dead-letter target within %llu ms "
                    "(rabbitmq.dead.letter.publisher.ack.wait.time)", label(d, lb, sizeof(lb)),
                    (unsigned long long)spec_of(d)->ack_wait_ms);
            }
            atomic_store(&job->pub->cancelled, 1);
            rmq_pool_reap_soon(cs->pool);
            break;
        case JOB_GIVING_BACK:
            job_end(cs, job);
            rmq_delivery_settle(cs, d, RMQ_DECIDE_RELEASE);
            touched = 1;
            break;
        default:
            unlist(cs, job);
            break;
        }
    }
    return touched;
}

/* The delivery's connection is going: the job ends unless an attempt is
 * in flight (attempt_done ends it). */
void rmq_final_detach(rmq_consume_t *cs, rmq_delivery_t *d)
{
    rmq_final_job_t *job = d->final;
    if (job == NULL)
        return;
    unlist(cs, job);
    if (job->pub == NULL && job->state != JOB_CANDIDATE)
        job_end(cs, job);
}

void rmq_final_on_start(rmq_consume_t *cs, rmq_conn_t *c, const rmq_consumer_spec_t *spec)
{
    if (!spec->final.enabled || c->format == RMQ_FORMAT_V2)
        return;
    LOG(cs, CMI_LOG_WARN, "connection %d: %s is on %s, which gives AMQP 1.0 consumers no dead-letter "
        "history (x-opt-deaths): rabbitmq.max.dead.lettered.count cannot be enforced, and a message that keeps "
        "failing cycles through the dead-letter queue without end (use RabbitMQ 4.x, or a quorum queue's delivery "
        "limit: docs/rabbitmq.md, \"Dead-letter retries\")", c->index, spec->target.describe,
        c->broker[0] ? c->broker : "RabbitMQ 3.x");
}
