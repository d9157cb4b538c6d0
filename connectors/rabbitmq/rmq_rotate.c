/* Renewing connections under OAuth2 (docs/rabbitmq.md, "OAuth2"; WORK IN
 * PROGRESS).  RabbitMQ 4.0 closes an AMQP 1.0 connection when its token
 * expires (renewing the token of an open connection came in 4.1), and 3.x
 * refuses new links on it: so each connection on an older token is
 * replaced, make before break, once a new token is there (the token thread
 * fetches one at 60% of the old one's life).  The replacement opens in one
 * of the pool's spare slots (an OAuth2 pool has twice connectionPoolSize);
 * once it is up the old one retires: no new publish goes to it, its
 * receivers are given no more credit (what they hold goes back to the
 * queue), and it closes as soon as nothing of it is in flight or in
 * mediation, or at the latest two seconds before its token expires.  What
 * is still in flight then is sent again on the others, as after any lost
 * connection. */
#include "config.h"

#include <stdio.h>

#include "rmq_core.h"
#include "rmq_oauth2.h"

#define RETIRE_MARGIN_MS 2000 /* closed this long before its token expires, at the latest */

static rmq_conn_t *free_slot(rmq_pool_t *pool)
{
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *c = &pool->conns[i];
        if (!c->active && c->pn == NULL && c->state == RMQ_CONN_CLOSED)
            return c;
    }
    return NULL;
}

static int being_replaced(rmq_pool_t *pool, const rmq_conn_t *c)
{
    for (size_t i = 0; i < pool->nconns; i++)
        if (pool->conns[i].active && pool->conns[i].replaces == c->index)
            return 1;
    return 0;
}

void rmq_rotate_start(rmq_pool_t *pool)
{
    unsigned gen = rmq_oauth2_gen(pool->oauth2);
    for (size_t i = 0; i < pool->nconns && !pool->stopping; i++) {
        rmq_conn_t *c = &pool->conns[i];
        if (!c->active || c->state != RMQ_CONN_UP || c->retiring || c->token_gen >= gen || being_replaced(pool, c))
            continue;
        rmq_conn_t *r = free_slot(pool);
        if (r == NULL)
            return; /* every spare slot is in use: the next token tries again */
        r->active = 1;
        r->replaces = c->index;
        r->url = c->url; /* the same server */
        r->failures = 0;
        r->ever_up = 1; /* recovery's back-off if it fails, not the first connect's */
        r->logged_state = -1;
        r->state = RMQ_CONN_DOWN;
        RMQ_LOG(pool, CMI_LOG_INFO, "connection %d: opening connection %d on a new OAuth2 token to take its place",
                c->index, r->index);
        rmq_conn_connect(pool, r);
    }
}

void rmq_rotate_up(rmq_pool_t *pool, rmq_conn_t *c)
{
    if (c->replaces < 0)
        return;
    rmq_conn_t *old = &pool->conns[c->replaces];
    c->replaces = -1;
    if (!old->active)
        return;
    if (old->state != RMQ_CONN_UP) { /* lost meanwhile: it does not come back, c has its place */
        if (old->pn == NULL) {
            old->active = 0;
            old->state = RMQ_CONN_CLOSED;
            old->retry_at = 0;
        } else {
            old->retiring = 1; /* connecting: closed at once (rmq_rotate_check) */
            old->retire_deadline = rmq_now();
        }
        return;
    }
    old->retiring = 1;
    int64_t deadline = old->token_expires_at - RETIRE_MARGIN_MS;
    old->retire_deadline = deadline > rmq_now() ? deadline : rmq_now();
    RMQ_LOG(pool, CMI_LOG_INFO, "connection %d retires: connection %d takes its work", old->index, c->index);
    pn_connection_wake(old->pn); /* its receivers give back what they hold; closed when idle */
    rmq_pool_timer_changed(pool);
}

static size_t busy(rmq_pool_t *pool, rmq_conn_t *c)
{
    size_t n = c->inflight.n + c->queued + c->held.n;
    for (size_t i = 0; i < pool->nfeatures; i++)
        if (pool->features[i]->busy != NULL)
            n += pool->features[i]->busy(pool->feature_state[i], c);
    return n;
}

void rmq_rotate_check(rmq_pool_t *pool, rmq_conn_t *c, int64_t now)
{
    if (!c->retiring || c->close_requested || c->pn == NULL)
        return;
    if (busy(pool, c) > 0 && now < c->retire_deadline)
        return;
    c->close_requested = 1;
    pn_connection_wake(c->pn);
}

int rmq_rotate_closed(rmq_pool_t *pool, rmq_conn_t *c)
{
    if (c->retiring) {
        RMQ_LOG(pool, CMI_LOG_INFO, "connection %d retired", c->index);
    } else {
        /* Gone before its replacement came up (its token expired, the
         * broker went): the replacement takes its place as it is. */
        int replaced = 0;
        for (size_t i = 0; i < pool->nconns; i++)
            if (pool->conns[i].active && pool->conns[i].replaces == c->index) {
                pool->conns[i].replaces = -1;
                replaced = 1;
            }
        if (!replaced)
            return 0;
    }
    c->retiring = 0;
    c->active = 0;
    c->state = RMQ_CONN_CLOSED;
    c->retry_at = 0;
    return 1;
}
