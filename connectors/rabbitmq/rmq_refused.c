/* Refused addresses (rmq.h, "refused addresses"): a short list, walked
 * only while it is not empty.  Each entry keeps its back-off after its
 * hold ends, so an address refused again is held twice as long; a hold
 * that ended longer ago than the longest hold starts afresh. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "rmq.h"

typedef struct refusal {
    TAILQ_ENTRY(refusal) entry; /* most recently refused first */
    char *address;
    char *why;
    int64_t hold_ms;
    int64_t until;
} refusal_t;

struct rmq_refusals {
    TAILQ_HEAD(refusal_list, refusal) list;
    size_t n;
};

rmq_refusals_t *rmq_refusals_create(void)
{
    rmq_refusals_t *rs = rmq_xcalloc(1, sizeof(*rs));
    TAILQ_INIT(&rs->list);
    return rs;
}

static void refusal_free(rmq_refusals_t *rs, refusal_t *r)
{
    TAILQ_REMOVE(&rs->list, r, entry);
    rs->n--;
    free(r->address);
    free(r->why);
    free(r);
}

void rmq_refusals_destroy(rmq_refusals_t *rs)
{
    if (rs == NULL)
        return;
    while (!TAILQ_EMPTY(&rs->list))
        refusal_free(rs, TAILQ_FIRST(&rs->list));
    free(rs);
}

static refusal_t *find(rmq_refusals_t *rs, const char *address)
{
    refusal_t *r;
    TAILQ_FOREACH(r, &rs->list, entry)
        if (strcmp(r->address, address) == 0)
            return r;
    return NULL;
}

const char *rmq_refusals_check(rmq_refusals_t *rs, const char *address, int64_t (*now)(void))
{
    if (rs->n == 0)
        return NULL;
    refusal_t *r = find(rs, address);
    return r != NULL && r->until > now() ? r->why : NULL;
}

int64_t rmq_refusals_add(rmq_refusals_t *rs, const char *address, const char *why, int64_t now)
{
    refusal_t *r = find(rs, address);
    if (r != NULL) {
        TAILQ_REMOVE(&rs->list, r, entry);
        free(r->why);
        int fresh = now - r->until > RMQ_REFUSED_MAX_MS;
        r->hold_ms = fresh ? RMQ_REFUSED_FIRST_MS
                           : r->hold_ms * 2 > RMQ_REFUSED_MAX_MS ? RMQ_REFUSED_MAX_MS : r->hold_ms * 2;
    } else {
        if (rs->n >= RMQ_REFUSED_MAX)
            refusal_free(rs, TAILQ_LAST(&rs->list, refusal_list)); /* refused longest ago */
        r = rmq_xcalloc(1, sizeof(*r));
        r->address = rmq_xstrdup(address);
        r->hold_ms = RMQ_REFUSED_FIRST_MS;
        rs->n++;
    }
    r->why = rmq_xstrdup(why);
    r->until = now + r->hold_ms;
    TAILQ_INSERT_HEAD(&rs->list, r, entry);
    return r->hold_ms;
}

void rmq_refusals_clear(rmq_refusals_t *rs, const char *address)
{
    if (rs->n == 0)
        return;
    refusal_t *r = find(rs, address);
    if (r != NULL)
        refusal_free(rs, r);
}

size_t rmq_refusals_count(const rmq_refusals_t *rs)
{
    return rs->n;
}
