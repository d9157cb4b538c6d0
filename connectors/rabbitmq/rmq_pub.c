/* Publishes as the pool core holds them: lists (<sys/queue.h>, with a
 * count: the pool weighs connections by what they hold), failing, freeing. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "rmq_core.h"

void rmq_pub_list_init(rmq_pub_list_t *l)
{
    TAILQ_INIT(&l->q);
    l->n = 0;
}

void rmq_pub_list_push(rmq_pub_list_t *l, rmq_pub_t *p)
{
    TAILQ_INSERT_TAIL(&l->q, p, entry);
    l->n++;
}

void rmq_pub_list_remove(rmq_pub_list_t *l, rmq_pub_t *p)
{
    TAILQ_REMOVE(&l->q, p, entry);
    l->n--;
}

rmq_pub_t *rmq_pub_list_pop(rmq_pub_list_t *l)
{
    rmq_pub_t *p = TAILQ_FIRST(&l->q);
    if (p != NULL)
        rmq_pub_list_remove(l, p);
    return p;
}

void rmq_pub_list_splice(rmq_pub_list_t *to, rmq_pub_list_t *from)
{
    TAILQ_CONCAT(&to->q, &from->q, entry);
    to->n += from->n;
    from->n = 0;
}

/* On the pool's thread (or once it has ended): the counters' one writer. */
void rmq_pub_complete(rmq_pub_t *pub)
{
    if (pub->stats != NULL) {
        int kind = pub->outcome == RMQ_OUT_ACCEPTED && !pub->confirm ? RMQ_PUBLISHED_UNCONFIRMED : (int)pub->outcome;
        rmq_stat_add(&pub->stats->published[kind], 1);
    }
    pub->done(pub);
}

void rmq_pub_fail(rmq_pub_t *pub, int code, const char *fmt, ...)
{
    pub->outcome = RMQ_OUT_ERROR;
    pub->err_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pub->err_detail, sizeof(pub->err_detail), fmt, ap);
    va_end(ap);
    rmq_pub_complete(pub);
}

void rmq_pub_fail_list(rmq_pub_list_t *l, int code, const char *detail)
{
    rmq_pub_t *p;
    while ((p = rmq_pub_list_pop(l)) != NULL)
        rmq_pub_fail(p, code, "%s", detail);
}

void rmq_pub_free(rmq_pub_t *pub)
{
    rmq_target_dispose(&pub->target);
    free(pub->bytes);
    free(pub->message_id);
    free(pub);
}
