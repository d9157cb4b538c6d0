/* Endpoints at run time (config/endpoint.h): a leaf's health, shared by
 * every worker (MI's states: active, timeout after a failure marked for
 * suspension, suspended), and the choice of the leaf a call tries next. */
#include "config.h"

#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "runtime/endpoint.h"

static int64_t now_ms(void)
{
    return (int64_t)cmi_monotonic_ms();
}

const char *cmi_endpoint_name(const cmi_endpoint_t *ep)
{
    return ep->name ? ep->name : ep->where;
}

static int leaf_ready(const cmi_endpoint_t *leaf, int64_t now)
{
    pthread_mutex_lock(&leaf->state->lock);
    int ready = now >= leaf->state->until;
    pthread_mutex_unlock(&leaf->state->lock);
    return ready;
}

/* Under the state's lock. */
static void count_call(cmi_endpoint_counts_t *c, int status_class, uint64_t latency_ns)
{
    static const uint64_t bounds_us[CMI_EP_BUCKETS] = {5000, 10000, 25000, 50000, 100000, 250000, 500000,
                                                       1000000, 2500000, 5000000};
    uint64_t us = latency_ns / 1000;
    unsigned b = 0;
    while (b < CMI_EP_BUCKETS && us > bounds_us[b])
        b++;
    c->calls[status_class]++;
    c->latency[b]++;
    c->latency_us += us;
}

void cmi_endpoint_ok(const cmi_endpoint_t *leaf, long status, uint64_t latency_ns)
{
    cmi_endpoint_state_t *s = leaf->state;
    pthread_mutex_lock(&s->lock);
    count_call(&s->counts, status >= 200 && status < 600 ? (int)(status / 100) - 2 : 4, latency_ns);
    int was = s->suspended;
    s->until = 0;
    s->next_ms = leaf->initial_ms;
    s->retries_left = leaf->retries_before;
    s->suspended = 0;
    pthread_mutex_unlock(&s->lock);
    if (was)
        cmi_log_info("call", "endpoint %s answers again: active", cmi_endpoint_name(leaf));
}

static int has_code(const int *codes, size_t n, int code)
{
    for (size_t i = 0; i < n; i++)
        if (codes[i] == code)
            return 1;
    return 0;
}

/* MI's rules: a code marked for suspension is tolerated
 * retriesBeforeSuspension times (retryDelay apart); then, or on a code of
 * suspendOnFailure (all codes when it lists none), the leaf is suspended
 * for a duration that grows by progressionFactor up to maximumDuration. */
void cmi_endpoint_failed(const cmi_endpoint_t *leaf, int code, uint64_t latency_ns)
{
    cmi_endpoint_state_t *s = leaf->state;
    int64_t now = now_ms();
    uint64_t for_ms = 0;
    pthread_mutex_lock(&s->lock);
    count_call(&s->counts, 4, latency_ns);
    if (s->suspended && now < s->until) {
        /* Calls that were in flight when it was suspended fail too: one
         * suspension, not one per call (nor a duration grown by each). */
        pthread_mutex_unlock(&s->lock);
        return;
    }
    int suspend = 0;
    if (has_code(leaf->mark_codes, leaf->nmark_codes, code)) {
        if (s->retries_left-- > 0)
            s->until = now + (int64_t)leaf->retry_delay_ms;
        else
            suspend = 1;
    } else if (leaf->suspend_on && (leaf->nsuspend_codes == 0 || has_code(leaf->suspend_codes, leaf->nsuspend_codes,
                                                                           code))) {
        suspend = 1;
    }
    if (suspend) {
        for_ms = leaf->suspend_on ? (s->next_ms < leaf->max_ms ? s->next_ms : leaf->max_ms) : 30000;
        suspend = for_ms > 0; /* a suspension of no time is none (initialDuration 0): nothing to say */
    }
    if (suspend) {
        s->until = now + (int64_t)for_ms;
        double next = (double)s->next_ms * leaf->factor;
        s->next_ms = next > (double)leaf->max_ms ? leaf->max_ms : (uint64_t)next;
        s->retries_left = leaf->retries_before;
        s->suspended = 1;
        s->counts.suspensions++;
    }
    pthread_mutex_unlock(&s->lock);
    if (suspend)
        cmi_log_warn("call", "endpoint %s suspended for %llu ms after error %d", cmi_endpoint_name(leaf),
                     (unsigned long long)for_ms, code);
}

int cmi_endpoint_retries(const cmi_endpoint_t *leaf, int code)
{
    if (has_code(leaf->retry_disabled, leaf->nretry_disabled, code))
        return 0;
    return leaf->nretry_enabled == 0 || has_code(leaf->retry_enabled, leaf->nretry_enabled, code);
}

/* A client ID's leaf: FNV-1a of the ID, so that every worker (and every
 * restart) sends a client to the same leaf while it is ready. */
static size_t session_slot(const char *id, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % n);
}

static const cmi_endpoint_t *pick_leaf(const cmi_endpoint_t *top, cmi_endpoint_cursor_t *st)
{
    int64_t now = now_ms();
    if (top->kind == CMI_EP_LEAF)
        return st->attempts == 0 && leaf_ready(top, now) ? top : NULL;
    size_t n = top->nchildren;
    if (top->kind == CMI_EP_LOADBALANCE) {
        if (st->attempts == 0 && st->session != NULL)
            st->first = st->next = session_slot(st->session, n); /* the same client, the same leaf */
        else if (st->attempts == 0)
            st->first = st->next = atomic_fetch_add(top->next_child, 1) % n;
        else if (!top->lb_failover)
            return NULL;
        /* One round from where this call started. */
        for (; st->next < st->first + n; st->next++) {
            const cmi_endpoint_t *c = top->children[st->next % n];
            if (leaf_ready(c, now)) {
                st->next++;
                return c;
            }
        }
        return NULL;
    }
    for (; st->next < n; st->next++) { /* failover: in order, the first ready */
        const cmi_endpoint_t *c = top->children[st->next];
        if (leaf_ready(c, now)) {
            st->next++;
            return c;
        }
    }
    return NULL;
}

const cmi_endpoint_t *cmi_endpoint_pick(const cmi_endpoint_t *top, cmi_endpoint_cursor_t *cursor)
{
    const cmi_endpoint_t *leaf = pick_leaf(top, cursor);
    if (leaf != NULL)
        cursor->attempts++;
    return leaf;
}
