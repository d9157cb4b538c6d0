/* echo: the example connector of the SDK (docs/connector-sdk.md).
 *
 *   <localEntry key="EchoConn"><echo.init>...</echo.init></localEntry>
 *   <echo.echo configKey="EchoConn"><message>hi ${payload.name}</message></echo.echo>
 *   <echo.fail><code>709001</code></echo.fail>
 *   <echo.decide><decision>ACCEPT</decision></echo.decide>
 *   <inboundEndpoint class="org.example.cmi.EchoTimer" sequence="onTick">
 *
 * It shows each part of the SDK: typed tables with every parameter type,
 * an instance that owns a thread (as a broker connection's I/O thread
 * would), an operation that suspends the message and resumes it from that
 * thread (with an optional deadline), a listener that injects a message per
 * timer tick and hears how each flow ended, and per-message decisions
 * through call_delivery (as accept/discard/requeue do for RabbitMQ). */
#define _GNU_SOURCE /* clock_gettime, pthread_condattr_setclock */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "echo.h"

/* ---- parameter tables ----------------------------------------------------- */

static const char *const mode_names[] = {"KEEP", "UPPER", "LOWER", NULL};
static const char *const decision_names[] = {"ACCEPT", "DISCARD", "REQUEUE", NULL};

static int check_host_port(const cmi_param_def_t *def, const char *v, char *err, size_t n)
{
    (void)def;
    const char *colon = strrchr(v, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (colon == NULL || colon == v || end == colon + 1 || *end != '\0' || port < 1 || port > 65535) {
        snprintf(err, n, "expected host:port");
        return -1;
    }
    return 0;
}

#define I echo_init_params_t
static const cmi_param_def_t init_params[] = {
    [ECHO_INIT_NAME] = CMI_PARAM("name", CMI_PARAM_STRING, CMI_PARAM_REQUIRED, I, name, NULL, "connection name"),
    [ECHO_INIT_PREFIX] = CMI_PARAM("prefix", CMI_PARAM_STRING, 0, I, prefix, "", "text put before every echo"),
    [ECHO_INIT_MODE] = CMI_PARAM_CHOICE("mode", 0, I, mode, "KEEP", "letter case of echoes", mode_names),
    [ECHO_INIT_SERVERS] = {.name = "serverUrls", .type = CMI_PARAM_LIST, .offset = offsetof(I, servers),
                           .description = "host:port,... (checked, not contacted)", .check = check_host_port},
    [ECHO_INIT_TOKEN] = CMI_PARAM("token", CMI_PARAM_STRING, CMI_PARAM_SECRET, I, token, NULL,
                                  "a secret: $SYSTEM:NAME or $FILE:PATH; never logged"),
    [ECHO_INIT_MAX_DELAY] = CMI_PARAM_RANGE("maxDelay", CMI_PARAM_DURATION, 0, I, max_delay_ms, "10s",
                                            "longest delay an echo may ask for", 1, 3600000),
    [ECHO_INIT_CONNECTION_TYPE] = CMI_PARAM("connectionType", CMI_PARAM_STRING, CMI_PARAM_IGNORED, I,
                                            connection_type, NULL, "written by MI tooling; ignored"),
    [ECHO_INIT_KEYSTORE] = CMI_PARAM("keyStoreLocation", CMI_PARAM_STRING, CMI_PARAM_UNSUPPORTED, I, keystore, NULL,
                                     "client certificates (not supported)"),
    [ECHO_INIT_UNREADY] = CMI_PARAM("echo.unready", CMI_PARAM_STRING, 0, I, unready, NULL,
                                    "report the connection not ready, with this reason"),
    [ECHO_INIT_CERT] = CMI_PARAM("certificate", CMI_PARAM_STRING, CMI_PARAM_FILE, I, cert, NULL,
                                 "a file: a reload that finds it changed starts the connection anew"),
    [ECHO_INIT_COUNT] = CMI_PARAM_END,
};
#undef I

#define O echo_op_params_t
#define DYN CMI_PARAM_DYNAMIC
static const cmi_param_def_t echo_params[] = {
    [ECHO_OP_MESSAGE] = CMI_PARAM("message", CMI_PARAM_EXPR, CMI_PARAM_REQUIRED, O, message, NULL,
                                  "the text to echo, with ${...} inside"),
    [ECHO_OP_DELAY] = CMI_PARAM("delay", CMI_PARAM_DURATION, DYN, O, delay_ms, "0",
                                "answer from the connector's thread after this long"),
    [ECHO_OP_TIMEOUT] = CMI_PARAM("timeout", CMI_PARAM_DURATION, DYN, O, timeout_ms, "0",
                                  "fail with 709004 when the answer takes longer (0: never)"),
    [ECHO_OP_REPEAT] = CMI_PARAM_RANGE("repeat", CMI_PARAM_INT, DYN, O, repeat, "1", "how many times to repeat the text",
                                       1, 100),
    [ECHO_OP_TAGS] = CMI_PARAM("tags", CMI_PARAM_LIST, DYN, O, tags, NULL, "comma-separated tags copied to the result"),
    /* LAZY: evaluated only when run asks (call_eval_param). */
    [ECHO_OP_ATTRIBUTES] = CMI_PARAM("attributes", CMI_PARAM_JSON, DYN | CMI_PARAM_LAZY, O, attributes, NULL,
                                     "JSON copied to the result"),
    [ECHO_OP_UPPER] = CMI_PARAM("upper", CMI_PARAM_BOOL, DYN, O, upper, "false", "upper-case this echo"),
    [ECHO_OP_HOPS] = CMI_PARAM_RANGE("hops", CMI_PARAM_INT, DYN, O, hops, "1",
                                     "delayed answers: suspend this many times in a row", 1, 10),
    [ECHO_OP_INLINE] = CMI_PARAM("resumeInline", CMI_PARAM_BOOL, DYN, O, resume_inline, "false",
                                 "resume from inside run, before it returns (no delay)"),
    [ECHO_OP_CANCEL_LINGER] = CMI_PARAM("cancelLinger", CMI_PARAM_DURATION, DYN, O, cancel_linger_ms, "0",
                                        "test: when the deadline ends the call, the cancel hook has the echo thread "
                                        "resume it at once and lingers this long (a resume racing the hook)"),
    [ECHO_OP_COUNT] = CMI_PARAM_END,
};
#undef O

static const cmi_param_def_t fail_params[] = {
    [ECHO_FAIL_CODE] = CMI_PARAM("code", CMI_PARAM_INT, CMI_PARAM_REQUIRED | DYN, echo_fail_params_t, code, NULL,
                                 "the ERROR_CODE to raise"),
    [ECHO_FAIL_REASON] = CMI_PARAM("reason", CMI_PARAM_STRING, DYN, echo_fail_params_t, reason, "asked to fail",
                                   "ERROR_DETAIL"),
    [ECHO_FAIL_COUNT] = CMI_PARAM_END,
};
#undef DYN

static const cmi_param_def_t decide_params[] = {
    [ECHO_DECIDE_DECISION] = CMI_PARAM_CHOICE("decision", CMI_PARAM_REQUIRED, echo_decide_params_t, decision, NULL,
                                              "what the listener should do with this message", decision_names),
    [ECHO_DECIDE_COUNT] = CMI_PARAM_END,
};

#define T echo_timer_params_t
static const cmi_param_def_t timer_params[] = {
    [ECHO_TIMER_INTERVAL] = CMI_PARAM_RANGE("echo.interval", CMI_PARAM_DURATION, 0, T, interval_ms, "100",
                                            "time between ticks", 1, 3600000),
    [ECHO_TIMER_COUNT] = CMI_PARAM_RANGE("echo.count", CMI_PARAM_INT, 0, T, count, "3", "ticks to inject, then stop",
                                         1, 100000),
    [ECHO_TIMER_MESSAGE] = CMI_PARAM("echo.message", CMI_PARAM_STRING, 0, T, message, "tick",
                                     "the message field of each tick's payload"),
    [ECHO_TIMER_CONTENT_TYPE] = CMI_PARAM("echo.content.type", CMI_PARAM_STRING, 0, T, content_type,
                                          "application/json", "content type of the payload"),
    [ECHO_TIMER_BURST] = CMI_PARAM_RANGE("echo.burst", CMI_PARAM_INT, 0, T, burst, "0",
                                         "0: a message per tick from a host timer; N: N messages per tick from the "
                                         "listener's own thread, held together (host inject_hold)", 0, 1000),
    [ECHO_TIMER_ROWS] = CMI_PARAM_END,
};
#undef T

/* ---- the instance: a thread that answers delayed echoes --------------------- */

typedef struct job {
    struct job *next;
    struct echo_instance *ei;
    cmi_call_t *call;
    uint64_t due_ms;
    uint64_t delay_ms;
    int64_t hops_left;
    int64_t hops;
    uint64_t cancel_linger_ms;
    json_t *result;
} job_t;

typedef struct echo_instance {
    const cmi_host_t *host;
    const char *component;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_t *jobs; /* sorted by due time */
    int stopping;
    unsigned resumes_begun, resumes_stale; /* cancelLinger's witnesses */
} echo_instance_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void job_free(job_t *job)
{
    json_decref(job->result);
    free(job);
}

/* Whoever takes a job off the queue owns it: the echo thread when it is
 * due, or the cancel hook when the host's deadline came first. */
static void queue_job(echo_instance_t *ei, job_t *job)
{
    job->due_ms = now_ms() + job->delay_ms;
    pthread_mutex_lock(&ei->lock);
    job_t **at = &ei->jobs;
    while (*at != NULL && (*at)->due_ms <= job->due_ms)
        at = &(*at)->next;
    job->next = *at;
    *at = job;
    pthread_cond_signal(&ei->cond);
    pthread_mutex_unlock(&ei->lock);
}

static int take_job(echo_instance_t *ei, job_t *job)
{
    pthread_mutex_lock(&ei->lock);
    job_t **at = &ei->jobs;
    while (*at != NULL && *at != job)
        at = &(*at)->next;
    int found = *at != NULL;
    if (found)
        *at = job->next;
    pthread_mutex_unlock(&ei->lock);
    return found;
}

/* On the worker, when the deadline ends the call: take the job back and
 * settle the resume still owed (the host answers it STALE). */
/* cancelLinger: the job is made due now and the hook lingers, so that the
 * echo thread's call_resume() lands while the hook runs; the host answers
 * it STALE once the hook has returned (and the echo thread frees the job). */
static void linger_in_cancel(job_t *job)
{
    echo_instance_t *ei = job->ei;
    uint64_t linger = job->cancel_linger_ms;
    if (!take_job(ei, job))
        return; /* the echo thread has it already */
    ei->host->log(CMI_LOG_INFO, ei->component, "the cancel hook lingers %llu ms while the echo thread resumes",
                  (unsigned long long)linger);
    job->delay_ms = 0;
    pthread_mutex_lock(&ei->lock);
    unsigned begun = ei->resumes_begun, stale = ei->resumes_stale;
    pthread_mutex_unlock(&ei->lock);
    queue_job(ei, job); /* the job is the echo thread's from here on */
    struct timespec ts = {(time_t)(linger / 1000), (long)(linger % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&ei->lock);
    int raced = ei->resumes_begun != begun, answered = ei->resumes_stale != stale;
    pthread_mutex_unlock(&ei->lock);
    ei->host->log(CMI_LOG_INFO, ei->component, "the cancel hook returns: %s, %s",
                  raced ? "a resume came while it ran" : "no resume came while it ran",
                  answered ? "and was answered before the hook was done" : "none answered yet");
}

static void on_cancel(cmi_call_t *call, void *arg)
{
    job_t *job = arg;
    if (job->cancel_linger_ms > 0) {
        linger_in_cancel(job);
        return;
    }
    if (!take_job(job->ei, job))
        return; /* the echo thread has it and is resuming */
    call->host->log(CMI_LOG_INFO, job->ei->component, "an echo call was cancelled by its deadline");
    if (call->host->call_resume(call, NULL, NULL) == CMI_CALL_STALE)
        job_free(job);
}

static void suspend_job(cmi_call_t *call, job_t *job, uint64_t deadline_ms)
{
    call->host->call_suspend(call, deadline_ms, ECHO_ERR_TIMEOUT, "ECHO:TIMEOUT");
    call->host->call_on_cancel(call, on_cancel, job);
}

/* On the worker, after the echo thread resumed the call: one more hop
 * (suspending again from a continuation), or the result. */
static int finish_delayed(cmi_call_t *call, void *arg)
{
    job_t *job = arg;
    if (--job->hops_left > 0) {
        suspend_job(call, job, 0);
        queue_job(job->ei, job);
        return CMI_FLOW_SUSPENDED;
    }
    json_object_set_new(job->result, "thread", json_string(job->delay_ms ? "echo" : "inline"));
    json_object_set_new(job->result, "delayedMs", json_integer((json_int_t)(job->delay_ms * job->hops)));
    json_object_set_new(job->result, "hops", json_integer((json_int_t)job->hops));
    call->host->call_set_result(call, job->result);
    job->result = NULL;
    job_free(job);
    return CMI_FLOW_CONTINUE;
}

static int finish_stopping(cmi_call_t *call, void *arg)
{
    job_free(arg);
    return call->host->call_fail(call, ECHO_ERR_FAILED, "ECHO:FAILED", "the echo connection is stopping");
}

static void resume_job(echo_instance_t *ei, job_t *job, cmi_resume_fn fn)
{
    pthread_mutex_lock(&ei->lock);
    ei->resumes_begun++;
    pthread_mutex_unlock(&ei->lock);
    if (ei->host->call_resume(job->call, fn, job) == CMI_CALL_STALE) {
        pthread_mutex_lock(&ei->lock);
        ei->resumes_stale++;
        pthread_mutex_unlock(&ei->lock);
        /* The deadline came first; the message has moved on. */
        ei->host->log(CMI_LOG_INFO, ei->component, "a delayed echo arrived after its deadline; dropped");
        job_free(job);
    }
}

static void *echo_thread(void *arg)
{
    echo_instance_t *ei = arg;
    pthread_mutex_lock(&ei->lock);
    for (;;) {
        while (!ei->stopping && ei->jobs == NULL)
            pthread_cond_wait(&ei->cond, &ei->lock);
        if (ei->stopping)
            break;
        uint64_t now = now_ms();
        if (ei->jobs->due_ms > now) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t wait = ei->jobs->due_ms - now;
            ts.tv_sec += (time_t)(wait / 1000);
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&ei->cond, &ei->lock, &ts);
            continue;
        }
        job_t *job = ei->jobs;
        ei->jobs = job->next;
        pthread_mutex_unlock(&ei->lock);
        resume_job(ei, job, finish_delayed);
        pthread_mutex_lock(&ei->lock);
    }
    /* Stopping: whatever is left is answered with an error at once. */
    job_t *left = ei->jobs;
    ei->jobs = NULL;
    pthread_mutex_unlock(&ei->lock);
    while (left != NULL) {
        job_t *next = left->next;
        resume_job(ei, left, finish_stopping);
        left = next;
    }
    return NULL;
}

static int instance_start(cmi_instance_t *inst, char *err, size_t n)
{
    const echo_init_params_t *p = inst->params;
    echo_instance_t *ei = calloc(1, sizeof(*ei));
    if (ei == NULL) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    ei->host = inst->host;
    ei->component = inst->component;
    pthread_mutex_init(&ei->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ei->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&ei->thread, NULL, echo_thread, ei) != 0) {
        snprintf(err, n, "cannot start the echo thread");
        pthread_cond_destroy(&ei->cond);
        pthread_mutex_destroy(&ei->lock);
        free(ei);
        return -1;
    }
    inst->data = ei;
    inst->host->log(CMI_LOG_INFO, inst->component, "connection %s started: %zu server(s), mode %s, token %s", p->name,
                    p->servers.count, mode_names[p->mode], p->token ? "set" : "not set");
    return 0;
}

static void instance_stop(cmi_instance_t *inst)
{
    echo_instance_t *ei = inst->data;
    pthread_mutex_lock(&ei->lock);
    ei->stopping = 1;
    pthread_cond_signal(&ei->cond);
    pthread_mutex_unlock(&ei->lock);
    pthread_join(ei->thread, NULL);
    pthread_cond_destroy(&ei->cond);
    pthread_mutex_destroy(&ei->lock);
    inst->host->log(CMI_LOG_INFO, inst->component, "connection stopped");
    free(ei);
    inst->data = NULL;
}

/* ---- operations ------------------------------------------------------------- */

static json_t *list_json(const cmi_param_list_t *l)
{
    json_t *a = json_array();
    for (size_t i = 0; i < l->count; i++)
        json_array_append_new(a, json_string(l->items[i]));
    return a;
}

static char *echo_text(const echo_init_params_t *ip, const echo_op_params_t *p)
{
    size_t mlen = strlen(p->message), plen = strlen(ip->prefix);
    size_t n = plen + (size_t)p->repeat * (mlen + 1) + 1;
    char *s = malloc(n), *w = s;
    if (s == NULL)
        return NULL;
    memcpy(w, ip->prefix, plen);
    w += plen;
    for (int64_t i = 0; i < p->repeat; i++) {
        if (i > 0)
            *w++ = ' ';
        memcpy(w, p->message, mlen);
        w += mlen;
    }
    *w = '\0';
    int mode = p->upper ? ECHO_MODE_UPPER : ip->mode;
    for (char *c = s + plen; *c; c++)
        *c = (char)(mode == ECHO_MODE_UPPER ? toupper((unsigned char)*c)
                    : mode == ECHO_MODE_LOWER ? tolower((unsigned char)*c)
                                              : *c);
    return s;
}

static int op_echo(cmi_call_t *call)
{
    const cmi_host_t *h = call->host;
    const echo_op_params_t *p = call->params;
    const echo_init_params_t *ip = call->binding->instance->params;
    echo_instance_t *ei = call->binding->instance->data;
    /* attributes is LAZY: evaluated only when this echo uses it. */
    if (CMI_PARAM_IS_DYNAMIC(p, ECHO_OP_ATTRIBUTES) && h->call_eval_param(call, ECHO_OP_ATTRIBUTES) != 0)
        return CMI_FLOW_ERROR;
    if (p->delay_ms > ip->max_delay_ms)
        return h->call_fail(call, ECHO_ERR_CONFIG, "ECHO:INVALID_CONFIGURATION", "delay %llu ms exceeds maxDelay %llu ms",
                            (unsigned long long)p->delay_ms, (unsigned long long)ip->max_delay_ms);
    char *text = echo_text(ip, p);
    if (text == NULL)
        return h->call_fail(call, ECHO_ERR_FAILED, "ECHO:FAILED", "out of memory");
    json_t *r = json_pack("{s:s, s:s, s:s, s:o, s:b, s:I}", "echo", text, "instance", ip->name, "messageId",
                          h->msg_id(call->msg), "tags", list_json(&p->tags), "tokenSet", ip->token != NULL, "servers",
                          (json_int_t)ip->servers.count);
    free(text);
    if (CMI_PARAM_GIVEN(p, ECHO_OP_ATTRIBUTES))
        json_object_set(r, "attributes", p->attributes);
    if (p->delay_ms == 0 && !p->resume_inline) {
        json_object_set_new(r, "thread", json_string("worker"));
        h->call_set_result(call, r);
        return CMI_FLOW_CONTINUE;
    }
    job_t *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        json_decref(r);
        return h->call_fail(call, ECHO_ERR_FAILED, "ECHO:FAILED", "out of memory");
    }
    job->ei = ei;
    job->call = call;
    job->delay_ms = p->resume_inline ? 0 : p->delay_ms;
    job->hops = job->hops_left = p->resume_inline ? 1 : p->hops;
    job->result = r;
    job->cancel_linger_ms = p->cancel_linger_ms;
    /* Suspend before handing the job over: from then on it may be resumed
     * at any moment, even before run returns. */
    suspend_job(call, job, p->timeout_ms);
    if (p->resume_inline)
        resume_job(ei, job, finish_delayed);
    else
        queue_job(ei, job);
    return CMI_FLOW_SUSPENDED;
}

/* A rule across parameters, checked at load when both values are static. */
static int validate_echo(const void *params, char *err, size_t n)
{
    const echo_op_params_t *p = params;
    if (CMI_PARAM_IS_DYNAMIC(p, ECHO_OP_DELAY) || CMI_PARAM_IS_DYNAMIC(p, ECHO_OP_TIMEOUT))
        return 0;
    if (p->timeout_ms > 0 && p->timeout_ms <= p->delay_ms) {
        snprintf(err, n, "timeout (%llu ms) is not longer than delay (%llu ms): every echo would time out",
                 (unsigned long long)p->timeout_ms, (unsigned long long)p->delay_ms);
        return -1;
    }
    return 0;
}

static int op_fail(cmi_call_t *call)
{
    const echo_fail_params_t *p = call->params;
    return call->host->call_fail(call, (int)p->code, "ECHO:FAILED", "%s", p->reason);
}

typedef struct {
    int tick;
    atomic_int decision; /* 0: none yet, else 1 + index in decision_names */
} delivery_t;

static int op_decide(cmi_call_t *call)
{
    const cmi_host_t *h = call->host;
    const echo_decide_params_t *p = call->params;
    delivery_t *d = h->call_delivery(call);
    if (d == NULL)
        return h->call_fail(call, ECHO_ERR_NO_DELIVERY, "ECHO:NO_DELIVERY",
                            "the message did not come from an echo listener");
    int none = 0;
    int first = atomic_compare_exchange_strong(&d->decision, &none, p->decision + 1);
    h->call_set_result(call, json_pack("{s:s, s:s, s:b}", "success", "true", "decision", decision_names[p->decision],
                                       "first", first));
    return CMI_FLOW_CONTINUE;
}

static const cmi_op_def_t ops[] = {
    {.name = "echo", .description = "echoes a text, now or later from the connector's thread",
     .flags = CMI_OP_NEEDS_CONFIG, .params = echo_params, .params_size = sizeof(echo_op_params_t), .run = op_echo,
     .validate = validate_echo},
    {"fail", "fails with the given code (for fault handling tests)", CMI_OP_NO_CONFIG, fail_params,
     sizeof(echo_fail_params_t), NULL, NULL, op_fail},
    {"decide", "records a decision for a message an echo listener injected", CMI_OP_NO_CONFIG, decide_params,
     sizeof(echo_decide_params_t), NULL, NULL, op_decide},
    {NULL},
};

/* ---- the listener: a message per timer tick --------------------------------- */

typedef struct {
    const cmi_host_t *host;
    cmi_listener_t *l;
    cmi_host_timer_t *timer; /* echo.burst 0 */
    pthread_t thread;        /* echo.burst N */
    int threaded;
    pthread_mutex_t lock; /* stopped, for the thread */
    pthread_cond_t cond;
    int ticks;
    atomic_int done;
    int stopped;
} echo_timer_t;

/* Injects message number `tick`; 0, or -1 when it was not injected. */
static int inject_tick(echo_timer_t *t, int tick)
{
    const echo_timer_params_t *p = t->l->params;
    delivery_t *d = calloc(1, sizeof(*d));
    if (d != NULL)
        d->tick = tick;
    json_t *payload = json_pack("{s:i, s:s, s:s}", "tick", tick, "message", p->message, "listener", t->l->name);
    char *body = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    char tick_text[16];
    snprintf(tick_text, sizeof(tick_text), "%d", tick);
    cmi_nv_t headers[] = {{"X-Echo-Tick", tick_text}};
    cmi_prop_t props[] = {{CMI_SCOPE_AXIS2, "echo.tick", tick_text}};
    cmi_injection_t in = {body, body ? strlen(body) : 0, p->content_type, headers, 1, props, 1, d};
    int rc = 0;
    if (d == NULL || body == NULL || t->host->inject(t->l, &in) != 0) {
        t->host->log(CMI_LOG_WARN, t->l->component, "tick %d not injected", tick);
        free(d);
        rc = -1;
    }
    free(body);
    return rc;
}

static void on_tick(void *arg)
{
    echo_timer_t *t = arg;
    const echo_timer_params_t *p = t->l->params;
    if (t->stopped)
        return;
    int tick = ++t->ticks;
    inject_tick(t, tick);
    if (tick < p->count)
        t->host->timer_start(t->timer, p->interval_ms);
}

static int stopped(echo_timer_t *t)
{
    pthread_mutex_lock(&t->lock);
    int s = t->stopped;
    pthread_mutex_unlock(&t->lock);
    return s;
}

/* echo.burst: the listener's own thread injects each burst under
 * inject_hold; none of it may run before the release, which the log says
 * (it waits up to 100 ms for a flow to end before it lets go). */
static void *burst_thread(void *arg)
{
    echo_timer_t *t = arg;
    const echo_timer_params_t *p = t->l->params;
    int injected = 0;
    for (int b = 1; b <= p->count; b++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(p->interval_ms / 1000);
        until.tv_nsec += (long)(p->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&t->lock);
        while (!t->stopped && pthread_cond_timedwait(&t->cond, &t->lock, &until) == 0)
            ;
        int stop = t->stopped;
        pthread_mutex_unlock(&t->lock);
        if (stop)
            break;
        /* The flows of the bursts before this one end first (a slow
         * worker, valgrind's, may still run them), so that what ends
         * during the hold can only be this burst's. */
        for (int waited = 0; atomic_load(&t->done) < injected && waited < 60000 && !stopped(t); waited += 5)
            nanosleep(&(struct timespec){0, 5000000L}, NULL);
        int before = atomic_load(&t->done), held = 0;
        int holding = t->host->inject_hold() == 0;
        for (int i = 0; i < p->burst; i++)
            held += inject_tick(t, ++t->ticks) == 0;
        injected += held;
        for (int waited = 0; holding && waited < 100 && atomic_load(&t->done) == before && !stopped(t); waited += 5)
            nanosleep(&(struct timespec){0, 5000000L}, NULL);
        int early = atomic_load(&t->done) - before;
        if (holding)
            t->host->inject_release();
        t->host->log(CMI_LOG_INFO, t->l->component, "burst %d: %d %s, %d done before the release", b, held,
                     holding ? "held" : "injected (no hold)", early);
    }
    return NULL;
}

static int listener_start(cmi_listener_t *l, char *err, size_t n)
{
    const echo_timer_params_t *p = l->params;
    echo_timer_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    t->host = l->host;
    t->l = l;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    l->data = t;
    if (p->burst > 0) {
        if (pthread_create(&t->thread, NULL, burst_thread, t) != 0) {
            snprintf(err, n, "cannot start the listener's thread");
            l->data = NULL;
            free(t);
            return -1;
        }
        t->threaded = 1;
        return 0;
    }
    t->timer = l->host->timer_create(on_tick, t);
    if (t->timer == NULL) {
        snprintf(err, n, "no timer (not on a host thread?)");
        l->data = NULL;
        free(t);
        return -1;
    }
    l->host->timer_start(t->timer, p->interval_ms);
    return 0;
}

static void listener_stop(cmi_listener_t *l)
{
    echo_timer_t *t = l->data;
    pthread_mutex_lock(&t->lock);
    t->stopped = 1;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (t->threaded)
        pthread_join(t->thread, NULL); /* its last inject was refused or went in */
    else
        t->host->timer_stop(t->timer);
}

static void listener_destroy(cmi_listener_t *l)
{
    echo_timer_t *t = l->data;
    if (!t->threaded)
        t->host->timer_destroy(t->timer);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    free(t);
    l->data = NULL;
}

static void listener_done(cmi_listener_t *l, void *delivery, cmi_msg_t *msg, int outcome)
{
    echo_timer_t *t = l->data;
    delivery_t *d = delivery;
    const echo_timer_params_t *p = l->params;
    int decision = atomic_load(&d->decision);
    const char *prop = l->host->msg_property(msg, CMI_SCOPE_DEFAULT, "ECHO_DECISION");
    l->host->log(CMI_LOG_INFO, l->component, "tick %d done: %s, decision %s", d->tick,
                 outcome == CMI_FLOW_CONTINUE ? "ok" : "error",
                 decision ? decision_names[decision - 1] : prop ? prop : "none");
    free(d);
    long long total = (long long)p->count * (p->burst > 0 ? p->burst : 1);
    if (atomic_fetch_add(&t->done, 1) + 1 == total)
        l->host->log(CMI_LOG_INFO, l->component, "all %lld ticks done", total);
}

static void listener_respond(cmi_listener_t *l, void *delivery, cmi_msg_t *msg)
{
    (void)delivery;
    size_t len = 0;
    const char *body = l->host->msg_payload(msg, &len, NULL);
    const char *tick = l->host->msg_header(msg, "X-Echo-Tick", NULL);
    l->host->log(CMI_LOG_INFO, l->component, "tick %s answered: %.*s", tick ? tick : "?", (int)len, body);
}

/* ---- readiness and metrics (ABI 1.6) ------------------------------------------ */

static const cmi_metric_def_t instance_up = {"cmi_echo_instance_up", CMI_METRIC_GAUGE, "1 for a started echo config."};
static const cmi_metric_def_t ticks_done = {"cmi_echo_ticks_done_total", CMI_METRIC_COUNTER,
                                            "Ticks whose flow ended."};
static const double tick_bounds[] = {1, 10};
static const cmi_metric_def_t tick_numbers = {"cmi_echo_tick_numbers", CMI_METRIC_HISTOGRAM,
                                              "The numbers of the ticks done (1, 2, ...).", tick_bounds, 2};

static void instance_report(cmi_instance_t *inst, cmi_report_t *r)
{
    const echo_init_params_t *p = inst->params;
    cmi_nv_t mode = {"mode", mode_names[p->mode]};
    inst->host->report_value(r, &instance_up, &mode, 1, 1);
    if (p->unready != NULL)
        inst->host->report_not_ready(r, "%s", p->unready);
}

static void listener_report(cmi_listener_t *l, cmi_report_t *r)
{
    const echo_timer_t *t = l->data;
    uint64_t n = (uint64_t)atomic_load(&t->done);
    l->host->report_value(r, &ticks_done, NULL, 0, (double)n);
    uint64_t counts[3] = {n < 1 ? n : 1, n < 10 ? (n > 1 ? n - 1 : 0) : 9, n > 10 ? n - 10 : 0};
    l->host->report_histogram(r, &tick_numbers, NULL, 0, counts, (double)(n * (n + 1) / 2));
    if (n == 0)
        l->host->report_not_ready(r, "no tick done yet");
}

static const char *const timer_classes[] = {"org.example.cmi.EchoTimer", NULL};

static const cmi_listener_def_t listeners[] = {
    {timer_classes, "echo-timer", "injects a JSON message per tick into the sequence", timer_params,
     sizeof(echo_timer_params_t), listener_start, listener_stop, listener_destroy, listener_done, listener_respond,
     .report = listener_report},
    {NULL},
};

/* ---- the descriptor ---------------------------------------------------------- */

static const cmi_config_def_t config = {
    "a pretend connection: a thread that answers delayed echoes",
    init_params,
    sizeof(echo_init_params_t),
    instance_start,
    instance_stop,
    .report = instance_report,
};

static const cmi_error_def_t errors[] = {
    {ECHO_ERR_FAILED, 502, "ECHO:FAILED"},
    {ECHO_ERR_CONFIG, 500, "ECHO:INVALID_CONFIGURATION"},
    {ECHO_ERR_NO_DELIVERY, 409, "ECHO:NO_DELIVERY"},
    {ECHO_ERR_TIMEOUT, 504, "ECHO:TIMEOUT"},
    {0},
};

static int echo_init(const cmi_host_t *host, char *err, size_t n)
{
    /* A host older than these headers would lack functions we call. */
    if (host->abi_major != CMI_CONNECTOR_ABI_MAJOR || host->struct_size < sizeof(cmi_host_t)) {
        snprintf(err, n, "host API %u.%u is older than this module's %d.%d", (unsigned)host->abi_major,
                 (unsigned)host->abi_minor, CMI_CONNECTOR_ABI_MAJOR, CMI_CONNECTOR_ABI_MINOR);
        return -1;
    }
    return 0;
}

CMI_CONNECTOR_EXPORT const cmi_connector_t cmi_connector = {
    CMI_CONNECTOR_HEADER,
    .name = "echo",
    .version = "1.0.0",
    .description = "The SDK's example connector: echoes, failures, delays from its own thread, timer messages.",
    .config = &config,
    .ops = ops,
    .listeners = listeners,
    .errors = errors,
    .param_error_code = ECHO_ERR_CONFIG,
    .init = echo_init,
};
