/* The test host's calls: what an operation did with its call (result,
 * failure, suspensions, resumes), with the engine's rules on the order of
 * suspend, resume and deadline; a rule broken stops the process, as the
 * engine stops it. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "plugin/testhost_int.h"

/* RUNNING -> SUSPENDED -> RESUMED (continue: RUNNING again), or
 * SUSPENDED -> CANCELLING (the hook runs) -> EXPIRED; a resume answered
 * STALE by resume_answer also ends at EXPIRED. */
enum { CALL_RUNNING, CALL_SUSPENDED, CALL_RESUMED, CALL_CANCELLING, CALL_EXPIRED };

/* The thread running a cancel hook: its own resume is answered at once. */
static pthread_t canceller;

static cmi_test_call_t *call_of(cmi_call_t *call, const char *fn)
{
    if (call == NULL || call->magic != CMI_CALL_MAGIC)
        cmi_th_fatal(fn, "bad object passed to the host API (not a call of cmi_test_call_init)");
    return (cmi_test_call_t *)call;
}

static void copy_text(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

/* Records a failure; the message gets the properties a fault sequence reads. */
static void record_fail(cmi_test_call_t *c, int code, const char *message, const char *detail)
{
    c->fails++;
    c->fail_code = code;
    copy_text(c->fail_message, sizeof(c->fail_message), message);
    copy_text(c->fail_detail, sizeof(c->fail_detail), detail);
    cmi_msg_t *msg = c->call.msg;
    if (msg == NULL)
        return;
    char text[32];
    snprintf(text, sizeof(text), "%d", code);
    cmi_test_msg_set_property(msg, CMI_SCOPE_DEFAULT, "ERROR_CODE", text);
    cmi_test_msg_set_property(msg, CMI_SCOPE_DEFAULT, "ERROR_MESSAGE", message);
    cmi_test_msg_set_property(msg, CMI_SCOPE_DEFAULT, "ERROR_DETAIL", detail);
}

/* ---- the test's side ---------------------------------------------------------- */

void cmi_test_call_init(cmi_test_call_t *c, cmi_binding_t *b, cmi_msg_t *msg, const void *params)
{
    memset(c, 0, sizeof(*c));
    c->call = (cmi_call_t){CMI_CALL_MAGIC, cmi_test_host(), b, msg, params};
    c->state = CALL_RUNNING;
}

void cmi_test_call_clear(cmi_test_call_t *c)
{
    json_decref(c->result);
    c->result = NULL;
}

int cmi_test_call_wait(cmi_test_call_t *c, unsigned n, unsigned timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&cmi_th_lock);
    int rc = 0;
    while (c->resumes < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&cmi_th_cond, &cmi_th_lock, &ts);
    int ok = c->resumes >= n;
    pthread_mutex_unlock(&cmi_th_lock);
    return ok;
}

int cmi_test_call_continue(cmi_test_call_t *c)
{
    pthread_mutex_lock(&cmi_th_lock);
    int pending = c->state == CALL_RESUMED;
    if (pending)
        c->state = CALL_RUNNING;
    cmi_resume_fn fn = c->resume_fn;
    void *arg = c->resume_arg;
    pthread_mutex_unlock(&cmi_th_lock);
    if (!pending) {
        cmi_th_trace("cmi_test_call_continue: no resume is pending");
        return CMI_FLOW_ERROR;
    }
    c->cancel_fn = NULL; /* the engine clears the hook at each resume */
    c->cancel_arg = NULL;
    return fn != NULL ? fn(&c->call, arg) : CMI_FLOW_CONTINUE;
}

int cmi_test_call_expire(cmi_test_call_t *c)
{
    pthread_mutex_lock(&cmi_th_lock);
    if (c->state != CALL_SUSPENDED) {
        pthread_mutex_unlock(&cmi_th_lock);
        return CMI_FLOW_CONTINUE; /* the resume came first */
    }
    c->state = CALL_CANCELLING;
    canceller = pthread_self();
    unsigned fails = c->fails;
    pthread_mutex_unlock(&cmi_th_lock);
    if (c->cancel_fn != NULL)
        c->cancel_fn(&c->call, c->cancel_arg);
    pthread_mutex_lock(&cmi_th_lock);
    c->state = CALL_EXPIRED;
    pthread_cond_broadcast(&cmi_th_cond);
    pthread_mutex_unlock(&cmi_th_lock);
    if (c->fails == fails) {
        char detail[128];
        snprintf(detail, sizeof(detail), "no result within %llu ms", (unsigned long long)c->deadline_ms);
        record_fail(c, c->timeout_code, c->timeout_message, detail);
    }
    return CMI_FLOW_ERROR;
}

/* ---- the host functions -------------------------------------------------------- */

int cmi_th_call_eval_param(cmi_call_t *call, unsigned row)
{
    call_of(call, __func__);
    cmi_th_trace("call_eval_param %u", row);
    return 0; /* the test's struct holds the values already */
}

void cmi_th_call_set_result(cmi_call_t *call, json_t *result)
{
    cmi_test_call_t *c = call_of(call, __func__);
    cmi_th_trace("call_set_result");
    json_decref(c->result);
    c->result = result;
}

int cmi_th_call_fail(cmi_call_t *call, int code, const char *message, const char *detail_fmt, ...)
{
    cmi_test_call_t *c = call_of(call, __func__);
    char detail[512] = "";
    if (detail_fmt != NULL) {
        va_list ap;
        va_start(ap, detail_fmt);
        vsnprintf(detail, sizeof(detail), detail_fmt, ap);
        va_end(ap);
    }
    cmi_th_trace("call_fail %d %s", code, message ? message : "");
    record_fail(c, code, message, detail);
    return CMI_FLOW_ERROR;
}

int cmi_th_call_suspend(cmi_call_t *call, uint64_t deadline_ms, int timeout_code, const char *timeout_message)
{
    cmi_test_call_t *c = call_of(call, __func__);
    pthread_mutex_lock(&cmi_th_lock);
    if (c->state != CALL_RUNNING)
        cmi_th_fatal(__func__, "call_suspend() on a call that is not running");
    c->state = CALL_SUSPENDED;
    c->suspends++;
    pthread_mutex_unlock(&cmi_th_lock);
    c->deadline_ms = deadline_ms;
    c->timeout_code = timeout_code ? timeout_code : 300001; /* the engine's mediation error */
    copy_text(c->timeout_message, sizeof(c->timeout_message), timeout_message);
    cmi_th_trace("call_suspend %llu", (unsigned long long)deadline_ms);
    return CMI_FLOW_SUSPENDED;
}

int cmi_th_call_resume(cmi_call_t *call, cmi_resume_fn fn, void *arg)
{
    cmi_test_call_t *c = call_of(call, __func__);
    pthread_mutex_lock(&cmi_th_lock);
    /* STALE only once the cancel hook has returned, unless it is the hook
     * itself that resumes. */
    while (c->state == CALL_CANCELLING && !pthread_equal(canceller, pthread_self()))
        pthread_cond_wait(&cmi_th_cond, &cmi_th_lock);
    int answer;
    if (c->state == CALL_SUSPENDED) {
        answer = c->resume_answer;
        c->state = answer == CMI_CALL_STALE ? CALL_EXPIRED : CALL_RESUMED;
    } else if (c->state == CALL_EXPIRED || c->state == CALL_CANCELLING) {
        answer = CMI_CALL_STALE;
    } else {
        cmi_th_fatal(__func__, "call_resume() on a call that is not suspended");
    }
    c->resumes++;
    c->resumer = pthread_self();
    c->resume_fn = fn;
    c->resume_arg = arg;
    pthread_cond_broadcast(&cmi_th_cond);
    pthread_mutex_unlock(&cmi_th_lock);
    cmi_th_trace("call_resume%s", answer == CMI_CALL_STALE ? " (stale)" : "");
    return answer;
}

void cmi_th_call_on_cancel(cmi_call_t *call, void (*fn)(cmi_call_t *call, void *arg), void *arg)
{
    cmi_test_call_t *c = call_of(call, __func__);
    cmi_th_trace("call_on_cancel");
    c->cancel_fn = fn;
    c->cancel_arg = arg;
}

void *cmi_th_call_delivery(cmi_call_t *call)
{
    cmi_test_call_t *c = call_of(call, __func__);
    cmi_th_trace("call_delivery");
    return c->delivery;
}

const char *cmi_th_call_response_variable(cmi_call_t *call)
{
    cmi_test_call_t *c = call_of(call, __func__);
    cmi_th_trace("call_response_variable");
    return c->response_variable;
}
