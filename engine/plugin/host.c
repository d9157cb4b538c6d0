/* The host API table (cmi/host.h) and what stands behind it: connector
 * calls that suspend and resume, host timers (inbound messages injected
 * by listeners: inject.c). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "engine.h"
#include "plugin/plugin.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"
#include "runtime/worker.h"

/* A message is touched only on its worker: a connector that calls a msg_*
 * function from its own thread is stopped here, not left to corrupt it. */
#define CHECK_MSG(msg)                                                                                     \
    do {                                                                                                   \
        CHECK_OBJ(msg, CMI_MSG_MAGIC);                                                                     \
        if ((msg)->worker != NULL && cmi_worker_current() != (msg)->worker) {                              \
            cmi_log_write(CMI_LOG_FATAL, "connectors", "%s: a message used off its worker thread", __func__); \
            abort();                                                                                       \
        }                                                                                                  \
    } while (0)

/* ---- logging ------------------------------------------------------------ */

static int host_log_enabled(cmi_log_level_t level)
{
    return cmi_log_enabled(level);
}

static void host_vlog(cmi_log_level_t level, const char *component, const char *fmt, va_list ap)
{
    if (cmi_log_enabled(level))
        cmi_log_vwrite(level, component ? component : "connector", fmt, ap);
}

static void host_log(cmi_log_level_t level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    host_vlog(level, component, fmt, ap);
    va_end(ap);
}

/* ---- the message -------------------------------------------------------- */

static const char *host_msg_id(cmi_msg_t *msg)
{
    CHECK_MSG(msg);
    return msg->id;
}

static void *host_msg_alloc(cmi_msg_t *msg, size_t size)
{
    CHECK_MSG(msg);
    return cmi_arena_alloc(msg->arena, size);
}

static char *host_msg_strdup(cmi_msg_t *msg, const char *s)
{
    CHECK_MSG(msg);
    return cmi_arena_strdup(msg->arena, s);
}

static void host_msg_cleanup(cmi_msg_t *msg, void (*fn)(void *data), void *data)
{
    CHECK_MSG(msg);
    cmi_arena_cleanup_add(msg->arena, fn, data);
}

static const char *host_msg_payload(cmi_msg_t *msg, size_t *len, const char **content_type)
{
    CHECK_MSG(msg);
    size_t n = 0;
    const char *bytes = cmi_msg_payload_bytes(msg, &n);
    if (len != NULL)
        *len = n;
    if (content_type != NULL)
        *content_type = msg->payload.content_type;
    return bytes;
}

static json_t *host_msg_payload_json(cmi_msg_t *msg)
{
    CHECK_MSG(msg);
    const char *err = NULL;
    return cmi_msg_payload_json(msg, &err);
}

static void host_msg_set_payload(cmi_msg_t *msg, const void *bytes, size_t len, const char *content_type)
{
    CHECK_MSG(msg);
    char *copy = cmi_arena_alloc(msg->arena, len + 1);
    if (len > 0)
        memcpy(copy, bytes, len);
    copy[len] = '\0';
    cmi_msg_set_payload(msg, copy, len,
                        content_type ? cmi_arena_strdup(msg->arena, content_type) : "application/octet-stream");
}

static void host_msg_set_payload_json(cmi_msg_t *msg, json_t *json)
{
    CHECK_MSG(msg);
    cmi_msg_set_payload_json(msg, json);
}

static const char *host_msg_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name)
{
    CHECK_MSG(msg);
    const cmi_value_t *v = cmi_msg_prop_get(msg, scope, name);
    if (v == NULL || v->type == CMI_VAL_NULL)
        return NULL;
    return cmi_value_to_text(msg->arena, v, NULL);
}

static void host_msg_set_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name, const char *value)
{
    CHECK_MSG(msg);
    const char *n = cmi_arena_strdup(msg->arena, name);
    if (value == NULL)
        cmi_msg_prop_remove(msg, scope, n);
    else
        cmi_msg_prop_set(msg, scope, n, cmi_value_cstring(cmi_arena_strdup(msg->arena, value)));
}

static json_t *value_to_json(cmi_msg_t *msg, const cmi_value_t *v)
{
    switch (v->type) {
    case CMI_VAL_NULL: return json_null();
    case CMI_VAL_BOOL: return json_boolean(v->u.b);
    case CMI_VAL_INT: return json_integer(v->u.i);
    case CMI_VAL_NUMBER: return json_real(v->u.d);
    case CMI_VAL_JSON: return json_incref(v->u.json);
    case CMI_VAL_STRING:
    case CMI_VAL_XML: return cmi_json_text(msg->arena, v->u.s.ptr, v->u.s.len);
    }
    return json_null();
}

static json_t *host_msg_variable(cmi_msg_t *msg, const char *name)
{
    CHECK_MSG(msg);
    const cmi_value_t *v = cmi_msg_var_get(msg, name);
    return v ? value_to_json(msg, v) : NULL;
}

static void host_msg_set_variable(cmi_msg_t *msg, const char *name, json_t *value)
{
    CHECK_MSG(msg);
    if (value == NULL) {
        cmi_msg_var_remove(msg, name);
        return;
    }
    const char *n = cmi_arena_strdup(msg->arena, name);
    cmi_value_t v;
    switch (json_typeof(value)) {
    case JSON_OBJECT:
    case JSON_ARRAY: v.type = CMI_VAL_JSON; v.u.json = cmi_msg_own_json(msg, value); break;
    case JSON_STRING:
        v = cmi_value_string(cmi_arena_strndup(msg->arena, json_string_value(value), json_string_length(value)),
                             json_string_length(value));
        json_decref(value);
        break;
    case JSON_INTEGER: v = cmi_value_int(json_integer_value(value)); json_decref(value); break;
    case JSON_REAL: v = cmi_value_number(json_real_value(value)); json_decref(value); break;
    case JSON_TRUE:
    case JSON_FALSE: v = cmi_value_bool(json_is_true(value)); json_decref(value); break;
    default: v = cmi_value_null(); json_decref(value); break;
    }
    cmi_msg_var_set(msg, n, v);
}

static const char *host_msg_header(cmi_msg_t *msg, const char *name, size_t *len)
{
    CHECK_MSG(msg);
    return cmi_msg_header_get(msg, name, len);
}

static void host_msg_set_header(cmi_msg_t *msg, const char *name, const char *value)
{
    CHECK_MSG(msg);
    if (value == NULL)
        cmi_msg_header_remove(msg, name, strlen(name));
    else
        cmi_msg_header_set(msg, name, strlen(name), value, strlen(value), 1);
}

static size_t host_msg_headers(cmi_msg_t *msg,
                               int (*fn)(void *arg, const char *name, size_t name_len, const char *value,
                                         size_t value_len),
                               void *arg)
{
    CHECK_MSG(msg);
    size_t i = 0;
    while (i < msg->headers.count) {
        const cmi_header_t *h = &msg->headers.items[i++];
        if (fn(arg, h->name, h->name_len, h->value, h->value_len) != 0)
            break;
    }
    return i;
}

/* ---- calls ----------------------------------------------------------------
 *
 * A call is malloc'd and reference-counted rather than arena-owned: when a
 * deadline ends it, the message may be long gone by the time the connector
 * resumes it, and the connector's reference keeps the call (not the
 * message) valid until then.  State changes are atomic because a deadline
 * on the worker and a resume from a connector thread may race; whoever
 * moves the state out of SUSPENDED first wins. */

/* SUSPENDED -> RESUMING (a resume won) or -> CANCELLING -> TIMED_OUT (the
 * deadline won; CANCELLING while the connector's cancel hook runs, so that
 * a racing resume is answered STALE only once the hook has returned: the
 * connector frees what the hook may still be looking at on STALE).  Such a
 * resume sleeps on cancel_done until the worker leaves CANCELLING (it used
 * to poll); the race is rare and the hook short, so one condition serves
 * every call. */
enum { CALL_RUNNING, CALL_SUSPENDED, CALL_RESUMING, CALL_CANCELLING, CALL_TIMED_OUT };

static pthread_mutex_t cancel_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cancel_done = PTHREAD_COND_INITIALIZER;

typedef struct {
    cmi_call_t pub;
    cmi_binding_impl_t *b;
    atomic_int state;
    atomic_uint refs;
    /* Worker-only: set by call_suspend during the run or continuation in
     * progress.  The worker decides "did it suspend?" from this, never from
     * state, which a resume on another thread may already have moved on. */
    int suspended_here;
    int in_cancel; /* worker-only: the cancel hook is running */
    int failed;    /* call_fail was called */
    cmi_worker_t *worker;
    json_t *result;
    cmi_resume_fn fn;
    void *arg;
    void (*cancel_fn)(cmi_call_t *call, void *arg);
    void *cancel_arg;
    cmi_timer_t deadline;
    uint64_t deadline_ms;
    int timeout_code;
    char *timeout_message;
} call_t;

static call_t *call_of(cmi_call_t *pub)
{
    CHECK_OBJ(pub, CMI_CALL_MAGIC);
    return (call_t *)pub;
}

static void call_release(call_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    json_decref(c->result);
    free(c->timeout_message);
    c->pub.magic = 0;
    free(c);
}

static void apply_result(call_t *c)
{
    cmi_msg_t *msg = c->pub.msg;
    json_t *r = c->result;
    c->result = NULL;
    if (r == NULL)
        return;
    if (c->b->response_variable != NULL) {
        json_t *wrapped = json_pack("{s:O}", "payload", r);
        cmi_value_t v = {.type = CMI_VAL_JSON};
        v.u.json = cmi_msg_own_json(msg, wrapped);
        cmi_msg_var_set(msg, c->b->response_variable, v);
    }
    if (c->b->overwrite_body)
        cmi_msg_set_payload_json(msg, json_incref(r));
    json_decref(r);
}

/* The end of a call's run or continuation, on the worker. */
static int call_finish(call_t *c, int rc)
{
    cmi_msg_t *msg = c->pub.msg;
    if (rc == CMI_FLOW_CONTINUE && !c->failed) {
        apply_result(c);
        return rc;
    }
    json_decref(c->result);
    c->result = NULL;
    if (rc != CMI_FLOW_ERROR)
        cmi_log_error("connectors", "%s at %s returned %d%s; taken as an error", c->b->params.what, c->b->pub.where,
                      rc, c->failed ? " after call_fail()" : ", which an operation may not return");
    if (!c->failed)
        cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "%s failed without saying why", c->b->params.what);
    return CMI_FLOW_ERROR;
}

static int call_continue(cmi_msg_t *msg, void *data)
{
    call_t *c = data;
    (void)msg;
    cmi_worker_timer_stop(&c->deadline);
    atomic_store(&c->state, CALL_RUNNING);
    c->suspended_here = 0;
    c->cancel_fn = NULL;
    int rc = c->fn != NULL ? c->fn(&c->pub, c->arg) : CMI_FLOW_CONTINUE;
    /* The connector's reference of the suspension that just ended. */
    call_release(c);
    if (c->suspended_here)
        return CMI_FLOW_SUSPENDED; /* suspended again: a new reference */
    rc = call_finish(c, rc);
    call_release(c); /* the host's */
    return rc;
}

static void on_deadline(cmi_timer_t *t)
{
    call_t *c = t->data;
    int expected = CALL_SUSPENDED;
    if (!atomic_compare_exchange_strong(&c->state, &expected, CALL_CANCELLING))
        return; /* a resume is on its way */
    cmi_msg_t *msg = c->pub.msg;
    msg->resume_fn = NULL;
    json_decref(c->result);
    c->result = NULL;
    /* The connector hears of it first, with the message still there: it
     * may forget the call (its late call_resume, even from inside the hook,
     * is answered STALE) and may replace the timeout error with call_fail. */
    if (c->cancel_fn != NULL) {
        c->in_cancel = 1;
        c->cancel_fn(&c->pub, c->cancel_arg);
        c->in_cancel = 0;
    }
    if (!c->failed)
        cmi_msg_set_error(msg, c->timeout_code, c->timeout_message, "%s at %s: no result within %llu ms",
                          c->b->params.what, c->b->pub.where, (unsigned long long)c->deadline_ms);
    c->pub.msg = NULL;
    c->pub.params = NULL;
    pthread_mutex_lock(&cancel_lock); /* a resume may be waiting for this */
    atomic_store(&c->state, CALL_TIMED_OUT);
    pthread_cond_broadcast(&cancel_done);
    pthread_mutex_unlock(&cancel_lock);
    call_release(c); /* the host's; the connector's goes with its late resume */
    cmi_flow_resume(msg, CMI_FLOW_ERROR);
}

int cmi_host_op_run(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    cmi_binding_impl_t *b = ((const cmi_op_mediator_t *)m)->binding;
    void *params;
    if (cmi_pset_resolve(&b->params, msg, &params) != 0)
        return CMI_FLOW_ERROR;
    call_t *c = cmi_xcalloc(1, sizeof(*c));
    c->pub.magic = CMI_CALL_MAGIC;
    c->pub.host = &cmi_host_api;
    c->pub.binding = &b->pub;
    c->pub.msg = msg;
    c->pub.params = params;
    c->b = b;
    c->worker = msg->worker;
    atomic_init(&c->state, CALL_RUNNING);
    atomic_init(&c->refs, 1);
    int rc = b->op->run(&c->pub);
    if (c->suspended_here) {
        if (rc != CMI_FLOW_SUSPENDED)
            cmi_log_error("connectors", "%s at %s suspended the message but returned %d; waiting for its resume",
                          b->params.what, b->pub.where, rc);
        return CMI_FLOW_SUSPENDED;
    }
    if (rc == CMI_FLOW_SUSPENDED) {
        cmi_log_error("connectors", "%s at %s returned CMI_FLOW_SUSPENDED without call_suspend()", b->params.what,
                      b->pub.where);
        rc = CMI_FLOW_ERROR;
    }
    rc = call_finish(c, rc);
    call_release(c);
    return rc;
}

static int host_call_eval_param(cmi_call_t *pub, unsigned row)
{
    call_t *c = call_of(pub);
    if (c->pub.params == c->b->params.statics)
        return 0; /* nothing dynamic in this binding */
    return cmi_pset_eval_row(&c->b->params, c->pub.msg, (void *)c->pub.params, row);
}

static void host_call_set_result(cmi_call_t *pub, json_t *result)
{
    call_t *c = call_of(pub);
    json_decref(c->result);
    c->result = result;
}

static int host_call_fail(cmi_call_t *pub, int code, const char *message, const char *detail_fmt, ...)
{
    call_t *c = call_of(pub);
    char *detail = NULL;
    if (detail_fmt != NULL) {
        va_list ap;
        va_start(ap, detail_fmt);
        if (vasprintf(&detail, detail_fmt, ap) < 0)
            detail = NULL;
        va_end(ap);
    }
    cmi_msg_set_error(c->pub.msg, code, message, detail ? "%s" : NULL, detail);
    free(detail);
    c->failed = 1;
    return CMI_FLOW_ERROR;
}

static int host_call_suspend(cmi_call_t *pub, uint64_t deadline_ms, int timeout_code, const char *timeout_message)
{
    call_t *c = call_of(pub);
    cmi_msg_t *msg = c->pub.msg;
    int expected = CALL_RUNNING;
    if (!atomic_compare_exchange_strong(&c->state, &expected, CALL_SUSPENDED)) {
        cmi_log_error("connectors", "%s at %s: call_suspend() on a call that is not running", c->b->params.what,
                      c->b->pub.where);
        abort();
    }
    atomic_fetch_add(&c->refs, 1); /* the connector's, until call_resume() */
    c->suspended_here = 1;
    msg->resume_fn = call_continue;
    msg->resume_data = c;
    c->deadline_ms = deadline_ms;
    if (deadline_ms > 0 && msg->worker != NULL) {
        free(c->timeout_message);
        c->timeout_message = timeout_message ? cmi_xstrdup(timeout_message) : NULL;
        c->timeout_code = timeout_code ? timeout_code : CMI_ERR_MEDIATION;
        c->deadline.cb = on_deadline;
        c->deadline.data = c;
        cmi_worker_timer_start(msg->worker, &c->deadline, deadline_ms);
    }
    return cmi_flow_suspend(msg);
}

static int host_call_resume(cmi_call_t *pub, cmi_resume_fn fn, void *arg)
{
    call_t *c = call_of(pub);
    int expected = CALL_SUSPENDED;
    if (!atomic_compare_exchange_strong(&c->state, &expected, CALL_RESUMING)) {
        /* in_cancel is the worker's: read only on the worker (TSan). */
        if (expected == CALL_CANCELLING && !(cmi_worker_current() == c->worker && c->in_cancel)) {
            /* The cancel hook is running on the worker: STALE only after it. */
            pthread_mutex_lock(&cancel_lock);
            while (atomic_load(&c->state) == CALL_CANCELLING)
                pthread_cond_wait(&cancel_done, &cancel_lock);
            pthread_mutex_unlock(&cancel_lock);
            expected = CALL_TIMED_OUT;
        }
        if (expected != CALL_TIMED_OUT && expected != CALL_CANCELLING) {
            /* Not suspended, or resumed twice: the reference count would
             * go wrong from here, so stop with the culprit named. */
            cmi_log_write(CMI_LOG_FATAL, "connectors", "%s at %s: call_resume() on a call that is not suspended",
                          c->b->params.what, c->b->pub.where);
            abort();
        }
        call_release(c);
        return CMI_CALL_STALE;
    }
    c->fn = fn;
    c->arg = arg;
    cmi_flow_post_resume(c->pub.msg);
    return 0;
}

static void host_call_on_cancel(cmi_call_t *pub, void (*fn)(cmi_call_t *call, void *arg), void *arg)
{
    call_t *c = call_of(pub);
    c->cancel_fn = fn;
    c->cancel_arg = arg;
}

static const char *host_call_response_variable(cmi_call_t *pub)
{
    return call_of(pub)->b->response_variable;
}

static void *host_call_delivery(cmi_call_t *pub)
{
    call_t *c = call_of(pub);
    return cmi_inject_delivery(c->pub.msg, c->b->mod);
}

/* ---- timers -------------------------------------------------------------- */

struct cmi_host_timer {
    cmi_timer_t t;
    cmi_worker_t *w;
    void (*cb)(void *arg);
    void *arg;
};

static void host_timer_fire(cmi_timer_t *t)
{
    cmi_host_timer_t *ht = t->data;
    ht->cb(ht->arg);
}

static cmi_host_timer_t *host_timer_create(void (*cb)(void *arg), void *arg)
{
    cmi_worker_t *w = cmi_worker_current();
    if (w == NULL || cb == NULL)
        return NULL;
    cmi_host_timer_t *ht = cmi_xcalloc(1, sizeof(*ht));
    ht->w = w;
    ht->cb = cb;
    ht->arg = arg;
    ht->t.cb = host_timer_fire;
    ht->t.data = ht;
    return ht;
}

static int timer_on_own_thread(cmi_host_timer_t *t, const char *fn)
{
    if (t != NULL && cmi_worker_current() == t->w)
        return 1;
    cmi_log_error("connectors", "%s: a timer used off the thread that created it; ignored", fn);
    return 0;
}

static void host_timer_start(cmi_host_timer_t *t, uint64_t delay_ms)
{
    if (timer_on_own_thread(t, __func__))
        cmi_worker_timer_start(t->w, &t->t, delay_ms);
}

static void host_timer_stop(cmi_host_timer_t *t)
{
    if (timer_on_own_thread(t, __func__))
        cmi_worker_timer_stop(&t->t);
}

static void host_timer_destroy(cmi_host_timer_t *t)
{
    if (t == NULL || !timer_on_own_thread(t, __func__))
        return;
    cmi_worker_timer_stop(&t->t);
    free(t);
}

static int host_defer(void (*fn)(void *arg), void *arg)
{
    cmi_worker_t *w = cmi_worker_current();
    if (w == NULL || fn == NULL)
        return -1;
    return cmi_worker_defer(w, fn, arg);
}

const cmi_host_t cmi_host_api = {
    .abi_major = CMI_CONNECTOR_ABI_MAJOR,
    .abi_minor = CMI_CONNECTOR_ABI_MINOR,
    .struct_size = sizeof(cmi_host_t),
    .log_enabled = host_log_enabled,
    .log = host_log,
    .vlog = host_vlog,
    .msg_id = host_msg_id,
    .msg_alloc = host_msg_alloc,
    .msg_strdup = host_msg_strdup,
    .msg_cleanup = host_msg_cleanup,
    .msg_payload = host_msg_payload,
    .msg_payload_json = host_msg_payload_json,
    .msg_set_payload = host_msg_set_payload,
    .msg_set_payload_json = host_msg_set_payload_json,
    .msg_property = host_msg_property,
    .msg_set_property = host_msg_set_property,
    .msg_variable = host_msg_variable,
    .msg_set_variable = host_msg_set_variable,
    .msg_header = host_msg_header,
    .msg_set_header = host_msg_set_header,
    .msg_headers = host_msg_headers,
    .call_eval_param = host_call_eval_param,
    .call_set_result = host_call_set_result,
    .call_fail = host_call_fail,
    .call_suspend = host_call_suspend,
    .call_resume = host_call_resume,
    .call_on_cancel = host_call_on_cancel,
    .call_delivery = host_call_delivery,
    .timer_create = host_timer_create,
    .timer_start = host_timer_start,
    .timer_stop = host_timer_stop,
    .timer_destroy = host_timer_destroy,
    .inject = cmi_host_inject,
    .call_response_variable = host_call_response_variable,
    .defer = host_defer,
    .payload_readable = cmi_host_payload_readable,
    .inject_checked = cmi_host_inject_checked,
    .inject_hold = cmi_host_inject_hold,
    .inject_release = cmi_host_inject_release,
    .report_not_ready = cmi_host_report_not_ready,
    .report_value = cmi_host_report_value,
    .report_histogram = cmi_host_report_histogram,
};
