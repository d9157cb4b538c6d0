/* <testSuspend millis="N" from="timer|thread" fail="false"/>: a test-only
 * mediator (known only with CMI_TEST_MEDIATORS=1) that suspends the message
 * and has it resumed after N ms, either by a timer on its own worker or by
 * another thread through cmi_flow_post_resume(), the path connectors take.  With
 * fail="true" the message resumes with an error. */
#include "config.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "core/str.h"
#include "mediators/registry.h"
#include "runtime/errors.h"
#include "runtime/msg.h"
#include "runtime/worker.h"

typedef struct {
    cmi_mediator_t base;
    uint64_t millis;
    int from_thread;
    int fail;
} suspend_mediator_t;

typedef struct {
    cmi_timer_t timer;
    cmi_msg_t *msg;
    const suspend_mediator_t *m;
} suspend_state_t;

/* Resumes as a connector would: from whatever thread finished the work,
 * through cmi_flow_post_resume / cmi_flow_post_error only. */
static void resume(suspend_state_t *st)
{
    if (st->m->fail)
        cmi_flow_post_error(st->msg, CMI_ERR_MEDIATION, "TEST_FAILURE", "testSuspend was asked to fail");
    else
        cmi_flow_post_resume(st->msg);
}

static void on_timer(cmi_timer_t *t)
{
    resume(t->data);
}

static void *resume_thread(void *arg)
{
    suspend_state_t *st = arg;
    struct timespec ts = {(time_t)(st->m->millis / 1000), (long)(st->m->millis % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    resume(st);
    return NULL;
}

static int run_suspend(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const suspend_mediator_t *s = (const suspend_mediator_t *)m;
    suspend_state_t *st = cmi_arena_calloc(msg->arena, 1, sizeof(*st));
    st->msg = msg;
    st->m = s;
    if (s->from_thread || msg->worker == NULL) {
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&tid, &attr, resume_thread, st);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "cannot start a thread: %s", strerror(rc));
    } else {
        st->timer.cb = on_timer;
        st->timer.data = st;
        cmi_worker_timer_start(msg->worker, &st->timer, s->millis);
    }
    return cmi_flow_suspend(msg);
}

static const cmi_attr_rule_t attrs[] = {
    {"millis", CMI_ATTR_OK},
    {"from", CMI_ATTR_OK},
    {"fail", CMI_ATTR_OK},
    {NULL, 0},
};

cmi_mediator_t *cmi_compile_test_suspend(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs))
        return NULL;
    suspend_mediator_t *s = cmi_mediator_new(cc, node, sizeof(*s), run_suspend);
    const char *millis = cmi_xml_attr(cc, node, "millis");
    const char *from = cmi_xml_attr(cc, node, "from");
    const char *fail = cmi_xml_attr(cc, node, "fail");
    if (millis == NULL || cmi_parse_uint(millis, 600000, &s->millis) != 0) {
        cmi_compile_error(cc, node, "<testSuspend>: millis must be 0..600000");
        return NULL;
    }
    if (from != NULL && strcmp(from, "timer") != 0 && strcmp(from, "thread") != 0) {
        cmi_compile_error(cc, node, "<testSuspend>: from must be 'timer' or 'thread'");
        return NULL;
    }
    s->from_thread = from != NULL && strcmp(from, "thread") == 0;
    s->fail = fail != NULL && cmi_parse_bool(fail, &s->fail) == 0 && s->fail;
    return &s->base;
}
