/* MI's inbound throttling (docs/rabbitmq.md, "Throttling") as a count of
 * messages that may start now: the consumer grants the broker credit only
 * up to it, so a throttled endpoint holds nothing back in cmi and no thread
 * waits.  The clocks come from the caller (the pool's monotonic ms and the
 * wall clock in ms), which keeps this testable without sleeping. */
#include "config.h"

#include <time.h>

#include "rmq.h"

static const int64_t unit_ms[] = {60000, 3600000, 86400000};

/* Milliseconds from wall_ms to the next minute, hour or local midnight:
 * MI's docs put BATCH windows on those boundaries, midnight in the
 * system's time zone. */
static int64_t to_boundary(int unit, int64_t wall_ms)
{
    time_t now = (time_t)(wall_ms / 1000);
    struct tm tm;
    localtime_r(&now, &tm);
    tm.tm_sec = 0;
    if (unit == RMQ_THROTTLE_MINUTE) {
        tm.tm_min++;
    } else {
        tm.tm_min = 0;
        if (unit == RMQ_THROTTLE_HOUR) {
            tm.tm_hour++;
        } else {
            tm.tm_hour = 0;
            tm.tm_mday++;
        }
    }
    tm.tm_isdst = -1; /* mktime works out a day with a DST change */
    time_t next = mktime(&tm);
    int64_t left = (int64_t)next * 1000 - wall_ms;
    /* A clock stepped back, or a DST hour skipped: never a window of
     * nothing, never one longer than the unit. */
    if (left <= 0 || left > unit_ms[unit])
        left = unit_ms[unit];
    return left;
}

void rmq_throttle_init(rmq_throttle_t *t, int mode, int unit, int64_t count)
{
    *t = (rmq_throttle_t){.enabled = 1, .mode = mode, .unit = unit, .count = count};
}

int64_t rmq_throttle_allowance(rmq_throttle_t *t, int64_t now, int64_t wall_ms)
{
    if (!t->enabled)
        return INT64_MAX;
    if (t->mode == RMQ_THROTTLE_FIXED_INTERVAL)
        return now >= t->next_at ? 1 : 0;
    if (now >= t->window_end) { /* a new window: it ends at the next boundary */
        t->used = 0;
        t->window_end = now + to_boundary(t->unit, wall_ms);
    }
    return t->count - t->used;
}

void rmq_throttle_take(rmq_throttle_t *t, int64_t now)
{
    if (!t->enabled)
        return;
    if (t->mode == RMQ_THROTTLE_FIXED_INTERVAL)
        t->next_at = now + unit_ms[t->unit] / t->count;
    else
        t->used++;
}

int64_t rmq_throttle_next(const rmq_throttle_t *t)
{
    if (!t->enabled)
        return 0;
    return t->mode == RMQ_THROTTLE_FIXED_INTERVAL ? t->next_at : t->window_end;
}
