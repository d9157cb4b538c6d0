/* The test host's listener side: injected messages, timers the test
 * fires, and functions deferred until the test runs them. */
#include "config.h"

#include <stdlib.h>

#include "plugin/testhost_int.h"

#define DEFER_MAX 64 /* the engine, too, refuses past a bound */

typedef struct {
    void (*fn)(void *arg);
    void *arg;
} deferred_t;

/* Under cmi_th_lock: inject() and defer() may come from any thread. */
static cmi_test_injection_t **injections;
static size_t ninjections;
static int refuse;
static deferred_t deferred[DEFER_MAX];
static size_t ndeferred;
/* The worker's: timers are used on the thread that made them. */
static cmi_host_timer_t *last_timer;

void cmi_th_listen_reset(void)
{
    pthread_mutex_lock(&cmi_th_lock);
    cmi_test_injection_t **old = injections;
    size_t n = ninjections;
    injections = NULL;
    ninjections = 0;
    refuse = 0;
    ndeferred = 0;
    pthread_mutex_unlock(&cmi_th_lock);
    for (size_t i = 0; i < n; i++) {
        cmi_test_msg_free(old[i]->msg);
        free(old[i]);
    }
    free(old);
}

/* ---- injections ------------------------------------------------------------------ */

int cmi_th_inject(cmi_listener_t *listener, const cmi_injection_t *in)
{
    if (listener == NULL || listener->magic != CMI_LISTENER_MAGIC)
        cmi_th_fatal(__func__, "bad object passed to the host API (not a listener)");
    cmi_th_trace("inject");
    pthread_mutex_lock(&cmi_th_lock);
    if (refuse) {
        pthread_mutex_unlock(&cmi_th_lock);
        return -1;
    }
    cmi_test_injection_t *rec = malloc(sizeof(*rec));
    cmi_test_injection_t **grown = realloc(injections, (ninjections + 1) * sizeof(*grown));
    if (rec == NULL || grown == NULL)
        cmi_th_fatal(__func__, "out of memory");
    injections = grown;
    *rec = (cmi_test_injection_t){listener, cmi_th_msg_injected(in), in->delivery};
    injections[ninjections++] = rec;
    pthread_mutex_unlock(&cmi_th_lock);
    return 0;
}

/* The check payload_readable() makes, then inject(): what the engine does,
 * but for handing the JSON tree over (the test host's messages read their
 * payload themselves). */
int cmi_th_inject_checked(cmi_listener_t *listener, const cmi_injection_t *in, char *why, size_t size)
{
    if (!cmi_th_payload_readable(in->content_type, in->payload, in->len, why, size))
        return -2;
    return cmi_th_inject(listener, in);
}

/* The test host records an injection at once: nothing to hold. */
int cmi_th_inject_hold(void)
{
    return -1;
}

void cmi_th_inject_release(void)
{
}

size_t cmi_test_injected(void)
{
    pthread_mutex_lock(&cmi_th_lock);
    size_t n = ninjections;
    pthread_mutex_unlock(&cmi_th_lock);
    return n;
}

const cmi_test_injection_t *cmi_test_injection(size_t i)
{
    pthread_mutex_lock(&cmi_th_lock);
    const cmi_test_injection_t *rec = i < ninjections ? injections[i] : NULL;
    pthread_mutex_unlock(&cmi_th_lock);
    return rec;
}

void cmi_test_refuse_injections(int on)
{
    pthread_mutex_lock(&cmi_th_lock);
    refuse = on;
    pthread_mutex_unlock(&cmi_th_lock);
}

/* ---- timers ------------------------------------------------------------------------ */

cmi_host_timer_t *cmi_th_timer_create(void (*cb)(void *arg), void *arg)
{
    cmi_th_trace("timer_create");
    if (cb == NULL || !cmi_th_is_worker())
        return NULL; /* the engine's timers belong to a host thread */
    cmi_host_timer_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        cmi_th_fatal(__func__, "out of memory");
    t->cb = cb;
    t->arg = arg;
    last_timer = t;
    return t;
}

void cmi_th_timer_start(cmi_host_timer_t *t, uint64_t delay_ms)
{
    cmi_th_trace("timer_start %llu", (unsigned long long)delay_ms);
    t->delay_ms = delay_ms;
    t->starts++;
    t->running = 1;
}

void cmi_th_timer_stop(cmi_host_timer_t *t)
{
    cmi_th_trace("timer_stop");
    t->running = 0;
}

void cmi_th_timer_destroy(cmi_host_timer_t *t)
{
    cmi_th_trace("timer_destroy");
    if (t == last_timer)
        last_timer = NULL;
    free(t);
}

cmi_host_timer_t *cmi_test_timer(void)
{
    return last_timer;
}

int cmi_test_timer_fire(cmi_host_timer_t *t)
{
    if (t == NULL || !t->running)
        return 0;
    t->running = 0;
    t->cb(t->arg);
    return 1;
}

/* ---- defer ------------------------------------------------------------------------- */

int cmi_th_defer(void (*fn)(void *arg), void *arg)
{
    cmi_th_trace("defer");
    if (fn == NULL || !cmi_th_is_worker())
        return -1;
    pthread_mutex_lock(&cmi_th_lock);
    int rc = 0;
    size_t i = 0;
    while (i < ndeferred && !(deferred[i].fn == fn && deferred[i].arg == arg))
        i++;
    if (i == ndeferred && ndeferred < DEFER_MAX)
        deferred[ndeferred++] = (deferred_t){fn, arg};
    else if (i == ndeferred)
        rc = -1;
    pthread_mutex_unlock(&cmi_th_lock);
    return rc;
}

size_t cmi_test_run_deferred(void)
{
    pthread_mutex_lock(&cmi_th_lock);
    deferred_t batch[DEFER_MAX];
    size_t n = ndeferred;
    for (size_t i = 0; i < n; i++)
        batch[i] = deferred[i];
    ndeferred = 0;
    pthread_mutex_unlock(&cmi_th_lock);
    /* What these defer again waits for the next round, as on the worker. */
    for (size_t i = 0; i < n; i++)
        batch[i].fn(batch[i].arg);
    return n;
}
