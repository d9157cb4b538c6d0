/* The echo connector module against a fake host: dlopen the built .so and
 * drive its descriptor, instance, operations and listener with a host table
 * written here, no engine linked in.  This is how a connector author tests
 * a module's logic without a deployment, as with Redis modules
 * (docs/connector-sdk.md, "Testing a connector"). */
#define _GNU_SOURCE /* clock_gettime, pthread_condattr_setclock */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../unit/cu_main.h"
#include "echo.h"

/* ---- the fake host ------------------------------------------------------- */

struct cmi_msg {
    const char *id;
    json_t *props;   /* name -> string */
    json_t *headers; /* name -> string */
    char *payload;
    size_t len;
};

struct cmi_host_timer {
    void (*cb)(void *arg);
    void *arg;
    uint64_t last_delay;
    int starts, running;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char log[16384];
    size_t log_len;
    /* the current call */
    json_t *result;
    int fail_code;
    char fail_detail[256];
    int suspended;
    uint64_t deadline_ms;
    int resumed;
    pthread_t resumer;
    cmi_resume_fn resume_fn;
    void *resume_arg;
    int resume_returns; /* what call_resume answers (0 or CMI_CALL_STALE) */
    void (*cancel_fn)(cmi_call_t *call, void *arg);
    void *cancel_arg;
    void *delivery;
    /* the listener */
    struct cmi_host_timer timer;
    int injects;
    char inject_payload[256];
    char inject_header[64];
    void *inject_delivery[8];
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int f_log_enabled(cmi_log_level_t level)
{
    (void)level;
    return 1;
}

static void f_vlog(cmi_log_level_t level, const char *component, const char *fmt, va_list ap)
{
    (void)level;
    pthread_mutex_lock(&fake.lock);
    size_t room = sizeof(fake.log) - fake.log_len;
    int n = snprintf(fake.log + fake.log_len, room, "[%s] ", component);
    if (n > 0 && (size_t)n < room)
        fake.log_len += (size_t)n;
    room = sizeof(fake.log) - fake.log_len;
    n = vsnprintf(fake.log + fake.log_len, room, fmt, ap);
    if (n > 0 && (size_t)n < room)
        fake.log_len += (size_t)n;
    if (fake.log_len + 1 < sizeof(fake.log))
        fake.log[fake.log_len++] = '\n';
    fake.log[fake.log_len] = '\0';
    pthread_mutex_unlock(&fake.lock);
}

static void f_log(cmi_log_level_t level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    f_vlog(level, component, fmt, ap);
    va_end(ap);
}

static const char *f_msg_id(cmi_msg_t *msg)
{
    return msg->id;
}

static const char *f_msg_payload(cmi_msg_t *msg, size_t *len, const char **ct)
{
    *len = msg->len;
    if (ct)
        *ct = "application/json";
    return msg->payload ? msg->payload : "";
}

static const char *f_msg_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name)
{
    (void)scope;
    return json_string_value(json_object_get(msg->props, name));
}

static const char *f_msg_header(cmi_msg_t *msg, const char *name, size_t *len)
{
    const char *v = json_string_value(json_object_get(msg->headers, name));
    if (v && len)
        *len = strlen(v);
    return v;
}

static int f_call_eval_param(cmi_call_t *call, unsigned row)
{
    (void)call;
    (void)row;
    return 0;
}

static void f_call_set_result(cmi_call_t *call, json_t *result)
{
    (void)call;
    json_decref(fake.result);
    fake.result = result;
}

static int f_call_fail(cmi_call_t *call, int code, const char *message, const char *fmt, ...)
{
    (void)call;
    (void)message;
    fake.fail_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fake.fail_detail, sizeof(fake.fail_detail), fmt, ap);
    va_end(ap);
    return CMI_FLOW_ERROR;
}

static int f_call_suspend(cmi_call_t *call, uint64_t deadline_ms, int code, const char *message)
{
    (void)call;
    (void)code;
    (void)message;
    fake.suspended = 1;
    fake.deadline_ms = deadline_ms;
    return CMI_FLOW_SUSPENDED;
}

static int f_call_resume(cmi_call_t *call, cmi_resume_fn fn, void *arg)
{
    (void)call;
    pthread_mutex_lock(&fake.lock);
    fake.resumed = 1;
    fake.resumer = pthread_self();
    fake.resume_fn = fn;
    fake.resume_arg = arg;
    int rc = fake.resume_returns;
    pthread_cond_broadcast(&fake.cond);
    pthread_mutex_unlock(&fake.lock);
    return rc;
}

static void f_call_on_cancel(cmi_call_t *call, void (*fn)(cmi_call_t *, void *), void *arg)
{
    (void)call;
    fake.cancel_fn = fn;
    fake.cancel_arg = arg;
}

static void *f_call_delivery(cmi_call_t *call)
{
    (void)call;
    return fake.delivery;
}

static cmi_host_timer_t *f_timer_create(void (*cb)(void *), void *arg)
{
    fake.timer.cb = cb;
    fake.timer.arg = arg;
    return &fake.timer;
}

static void f_timer_start(cmi_host_timer_t *t, uint64_t ms)
{
    t->last_delay = ms;
    t->starts++;
    t->running = 1;
}

static void f_timer_stop(cmi_host_timer_t *t)
{
    t->running = 0;
}

static void f_timer_destroy(cmi_host_timer_t *t)
{
    t->running = 0;
}

static int f_inject(cmi_listener_t *l, const cmi_injection_t *in)
{
    (void)l;
    snprintf(fake.inject_payload, sizeof(fake.inject_payload), "%.*s", (int)in->len, (const char *)in->payload);
    snprintf(fake.inject_header, sizeof(fake.inject_header), "%s=%s", in->headers[0].name, in->headers[0].value);
    if (fake.injects < 8)
        fake.inject_delivery[fake.injects] = in->delivery;
    fake.injects++;
    return 0;
}

static const cmi_host_t host = {
    .abi_major = CMI_CONNECTOR_ABI_MAJOR,
    .abi_minor = CMI_CONNECTOR_ABI_MINOR,
    .struct_size = sizeof(cmi_host_t),
    .log_enabled = f_log_enabled,
    .log = f_log,
    .vlog = f_vlog,
    .msg_id = f_msg_id,
    .msg_payload = f_msg_payload,
    .msg_property = f_msg_property,
    .msg_header = f_msg_header,
    .call_eval_param = f_call_eval_param,
    .call_set_result = f_call_set_result,
    .call_fail = f_call_fail,
    .call_suspend = f_call_suspend,
    .call_resume = f_call_resume,
    .call_on_cancel = f_call_on_cancel,
    .call_delivery = f_call_delivery,
    .timer_create = f_timer_create,
    .timer_start = f_timer_start,
    .timer_stop = f_timer_stop,
    .timer_destroy = f_timer_destroy,
    .inject = f_inject,
};

static void fake_reset(void)
{
    json_decref(fake.result);
    fake.result = NULL;
    fake.fail_code = 0;
    fake.fail_detail[0] = '\0';
    fake.suspended = fake.resumed = 0;
    fake.resume_fn = NULL;
    fake.resume_arg = NULL;
    fake.resume_returns = 0;
    fake.cancel_fn = NULL;
    fake.cancel_arg = NULL;
    fake.delivery = NULL;
    fake.log_len = 0;
    fake.log[0] = '\0';
}

/* ---- the module ---------------------------------------------------------- */

static void *handle;
static const cmi_connector_t *desc;

static int suite_init(void)
{
    handle = dlopen(ECHO_MODULE, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", ECHO_MODULE, dlerror());
        return 1;
    }
    desc = dlsym(handle, CMI_CONNECTOR_SYMBOL);
    return desc == NULL;
}

static int suite_clean(void)
{
    fake_reset();
    return handle ? dlclose(handle) : 0;
}

static const cmi_op_def_t *op(const char *name)
{
    for (const cmi_op_def_t *o = desc->ops; o->name != NULL; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static void test_descriptor(void)
{
    CU_ASSERT_EQUAL(desc->abi_major, CMI_CONNECTOR_ABI_MAJOR);
    CU_ASSERT_EQUAL(desc->abi_minor, CMI_CONNECTOR_ABI_MINOR);
    CU_ASSERT_EQUAL(desc->struct_size, sizeof(cmi_connector_t));
    CU_ASSERT_EQUAL(desc->magic, CMI_CONNECTOR_MAGIC);
    CU_ASSERT_STRING_EQUAL(desc->name, "echo");
    CU_ASSERT_PTR_NOT_NULL(op("echo"));
    CU_ASSERT_PTR_NOT_NULL(op("fail"));
    CU_ASSERT_PTR_NOT_NULL(op("decide"));
    CU_ASSERT_PTR_NULL(op("init"));
    CU_ASSERT_STRING_EQUAL(desc->listeners[0].classes[0], "org.example.cmi.EchoTimer");
    CU_ASSERT_EQUAL(desc->param_error_code, ECHO_ERR_CONFIG);
    char err[128] = "";
    CU_ASSERT_EQUAL(desc->init(&host, err, sizeof(err)), 0);
    /* A host table older than the module's headers is refused. */
    cmi_host_t old = host;
    old.struct_size = offsetof(cmi_host_t, inject);
    CU_ASSERT_EQUAL(desc->init(&old, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "older"));
}

/* An instance as the engine would fill it. */
typedef struct {
    echo_init_params_t p;
    cmi_instance_t inst;
    cmi_binding_t binding;
} fixture_t;

static const char *servers[] = {"a:1", "b:2"};

static void fixture_start(fixture_t *f, int mode)
{
    memset(f, 0, sizeof(*f));
    f->p.name = "conn";
    f->p.prefix = ">";
    f->p.mode = mode;
    f->p.servers = (cmi_param_list_t){servers, 2};
    f->p.token = "s3cr3t-token";
    f->p.max_delay_ms = 1000;
    f->inst = (cmi_instance_t){CMI_INSTANCE_MAGIC, &host, "EchoConn", "echo:EchoConn", &f->p, NULL};
    f->binding = (cmi_binding_t){CMI_BINDING_MAGIC, &host, &f->inst, "test.xml:1", NULL, NULL};
    char err[128];
    CU_ASSERT_FATAL(desc->config->start(&f->inst, err, sizeof(err)) == 0);
}

static void fixture_stop(fixture_t *f)
{
    desc->config->stop(&f->inst);
    CU_ASSERT_PTR_NULL(f->inst.data);
}

static cmi_call_t make_call(fixture_t *f, cmi_msg_t *msg, const void *params)
{
    return (cmi_call_t){CMI_CALL_MAGIC, &host, &f->binding, msg, params};
}

static void test_echo_now(void)
{
    fake_reset();
    fixture_t f;
    fixture_start(&f, ECHO_MODE_UPPER);
    CU_ASSERT_PTR_NOT_NULL(strstr(fake.log, "[echo:EchoConn] connection conn started: 2 server(s), mode UPPER"));
    CU_ASSERT_PTR_NULL(strstr(fake.log, "s3cr3t")); /* secrets never reach a log */
    struct cmi_msg msg = {.id = "urn:uuid:1"};
    echo_op_params_t p = {.message = "hi", .repeat = 2, .hops = 1};
    cmi_call_t call = make_call(&f, &msg, &p);
    CU_ASSERT_EQUAL(op("echo")->run(&call), CMI_FLOW_CONTINUE);
    CU_ASSERT_FATAL(fake.result != NULL);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(fake.result, "echo")), ">HI HI");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(fake.result, "thread")), "worker");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(fake.result, "messageId")), "urn:uuid:1");
    CU_ASSERT_TRUE(json_is_true(json_object_get(fake.result, "tokenSet")));
    CU_ASSERT_FALSE(fake.suspended);
    fixture_stop(&f);
}

/* Waits (bounded) for the module's thread to resume the call. */
static int wait_resumed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    pthread_mutex_lock(&fake.lock);
    int rc = 0;
    while (!fake.resumed && rc == 0)
        rc = pthread_cond_timedwait(&fake.cond, &fake.lock, &ts);
    int ok = fake.resumed;
    pthread_mutex_unlock(&fake.lock);
    return ok;
}

static void test_echo_delayed_resumes_from_its_thread(void)
{
    fake_reset();
    fixture_t f;
    fixture_start(&f, ECHO_MODE_KEEP);
    struct cmi_msg msg = {.id = "urn:uuid:2"};
    echo_op_params_t p = {.message = "later", .repeat = 1, .delay_ms = 30, .timeout_ms = 500, .hops = 1};
    cmi_call_t call = make_call(&f, &msg, &p);
    CU_ASSERT_EQUAL(op("echo")->run(&call), CMI_FLOW_SUSPENDED);
    CU_ASSERT_TRUE(fake.suspended);
    CU_ASSERT_EQUAL(fake.deadline_ms, 500);
    CU_ASSERT_FATAL(wait_resumed());
    CU_ASSERT_FALSE(pthread_equal(fake.resumer, pthread_self()));
    /* The continuation runs where the engine would run it: here. */
    CU_ASSERT_FATAL(fake.resume_fn != NULL);
    CU_ASSERT_EQUAL(fake.resume_fn(&call, fake.resume_arg), CMI_FLOW_CONTINUE);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(fake.result, "echo")), ">later");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(fake.result, "thread")), "echo");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(fake.result, "delayedMs")), 30);
    fixture_stop(&f);
}

static void test_echo_late_resume_is_dropped(void)
{
    fake_reset();
    fake.resume_returns = CMI_CALL_STALE; /* the deadline came first */
    fixture_t f;
    fixture_start(&f, ECHO_MODE_KEEP);
    struct cmi_msg msg = {.id = "urn:uuid:3"};
    echo_op_params_t p = {.message = "x", .repeat = 1, .delay_ms = 10, .timeout_ms = 1, .hops = 1};
    cmi_call_t call = make_call(&f, &msg, &p);
    CU_ASSERT_EQUAL(op("echo")->run(&call), CMI_FLOW_SUSPENDED);
    CU_ASSERT_FATAL(wait_resumed());
    fixture_stop(&f); /* joins the thread: its log line is written by then */
    CU_ASSERT_PTR_NOT_NULL(strstr(fake.log, "arrived after its deadline"));
    CU_ASSERT_PTR_NULL(fake.result); /* and the job's memory went with it (LeakSanitizer) */
}

static void test_echo_cancel_takes_the_job_back(void)
{
    fake_reset();
    fixture_t f;
    fixture_start(&f, ECHO_MODE_KEEP);
    struct cmi_msg msg = {.id = "urn:uuid:7"};
    echo_op_params_t p = {.message = "x", .repeat = 1, .delay_ms = 900, .timeout_ms = 5, .hops = 1};
    cmi_call_t call = make_call(&f, &msg, &p);
    CU_ASSERT_EQUAL(op("echo")->run(&call), CMI_FLOW_SUSPENDED);
    CU_ASSERT_FATAL(fake.cancel_fn != NULL);
    /* The host's deadline: the hook runs on the worker (here) and settles
     * the resume it owes, which the host answers STALE. */
    fake.resume_returns = CMI_CALL_STALE;
    fake.cancel_fn(&call, fake.cancel_arg);
    CU_ASSERT_TRUE(fake.resumed);
    CU_ASSERT_PTR_NULL(fake.resume_fn);
    CU_ASSERT_PTR_NOT_NULL(strstr(fake.log, "an echo call was cancelled by its deadline"));
    fixture_stop(&f); /* the queue is empty: nothing left for the thread (LeakSanitizer checks the job) */
}

static void test_echo_delay_over_max_fails(void)
{
    fake_reset();
    fixture_t f;
    fixture_start(&f, ECHO_MODE_KEEP);
    struct cmi_msg msg = {.id = "urn:uuid:4"};
    echo_op_params_t p = {.message = "x", .repeat = 1, .delay_ms = 5000, .hops = 1};
    cmi_call_t call = make_call(&f, &msg, &p);
    CU_ASSERT_EQUAL(op("echo")->run(&call), CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(fake.fail_code, ECHO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(fake.fail_detail, "exceeds maxDelay 1000 ms"));
    fixture_stop(&f);
}

static void test_fail(void)
{
    fake_reset();
    struct cmi_msg msg = {.id = "urn:uuid:5"};
    echo_fail_params_t p = {.code = 123456, .reason = "because"};
    cmi_binding_t b = {CMI_BINDING_MAGIC, &host, NULL, "t.xml:2", &p, NULL};
    cmi_call_t call = {CMI_CALL_MAGIC, &host, &b, &msg, &p};
    CU_ASSERT_EQUAL(op("fail")->run(&call), CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(fake.fail_code, 123456);
    CU_ASSERT_STRING_EQUAL(fake.fail_detail, "because");
}

static void test_listener_ticks_and_decisions(void)
{
    fake_reset();
    memset(&fake.timer, 0, sizeof(fake.timer));
    fake.injects = 0;
    const cmi_listener_def_t *def = &desc->listeners[0];
    echo_timer_params_t p = {.interval_ms = 25, .count = 2, .message = "m", .content_type = "application/json"};
    cmi_listener_t l = {CMI_LISTENER_MAGIC, &host, "Ticker", "echo:Ticker", &p, NULL};
    char err[128];
    CU_ASSERT_FATAL(def->start(&l, err, sizeof(err)) == 0);
    CU_ASSERT_EQUAL(fake.timer.starts, 1);
    CU_ASSERT_EQUAL(fake.timer.last_delay, 25);
    fake.timer.cb(fake.timer.arg); /* tick 1 */
    CU_ASSERT_EQUAL(fake.injects, 1);
    CU_ASSERT_STRING_EQUAL(fake.inject_payload, "{\"tick\":1,\"message\":\"m\",\"listener\":\"Ticker\"}");
    CU_ASSERT_STRING_EQUAL(fake.inject_header, "X-Echo-Tick=1");
    CU_ASSERT_EQUAL(fake.timer.starts, 2); /* re-armed for tick 2 */
    fake.timer.cb(fake.timer.arg); /* tick 2, the last */
    CU_ASSERT_EQUAL(fake.injects, 2);
    CU_ASSERT_EQUAL(fake.timer.starts, 2);

    /* decide on tick 1: the first decision wins */
    struct cmi_msg msg = {.id = "urn:uuid:6", .props = json_object(), .headers = json_object()};
    echo_decide_params_t dp = {.decision = 2 /* REQUEUE */};
    cmi_binding_t b = {CMI_BINDING_MAGIC, &host, NULL, "t.xml:3", &dp, NULL};
    cmi_call_t call = {CMI_CALL_MAGIC, &host, &b, &msg, &dp};
    CU_ASSERT_EQUAL(op("decide")->run(&call), CMI_FLOW_ERROR); /* not from a listener */
    CU_ASSERT_EQUAL(fake.fail_code, ECHO_ERR_NO_DELIVERY);
    fake.delivery = fake.inject_delivery[0];
    CU_ASSERT_EQUAL(op("decide")->run(&call), CMI_FLOW_CONTINUE);
    CU_ASSERT_TRUE(json_is_true(json_object_get(fake.result, "first")));
    dp.decision = 0;
    CU_ASSERT_EQUAL(op("decide")->run(&call), CMI_FLOW_CONTINUE);
    CU_ASSERT_TRUE(json_is_false(json_object_get(fake.result, "first")));

    json_object_set_new(msg.headers, "X-Echo-Tick", json_string("2"));
    msg.payload = "{\"ok\":true}";
    msg.len = strlen(msg.payload);
    def->respond(&l, fake.inject_delivery[1], &msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(fake.log, "[echo:Ticker] tick 2 answered: {\"ok\":true}"));
    def->done(&l, fake.inject_delivery[0], &msg, CMI_FLOW_CONTINUE);
    CU_ASSERT_PTR_NOT_NULL(strstr(fake.log, "tick 1 done: ok, decision REQUEUE"));
    json_object_set_new(msg.props, "ECHO_DECISION", json_string("from-property"));
    def->done(&l, fake.inject_delivery[1], &msg, CMI_FLOW_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(fake.log, "tick 2 done: error, decision from-property"));
    CU_ASSERT_PTR_NOT_NULL(strstr(fake.log, "all 2 ticks done"));
    def->stop(&l);
    CU_ASSERT_FALSE(fake.timer.running);
    def->destroy(&l);
    CU_ASSERT_PTR_NULL(l.data);
    json_decref(msg.props);
    json_decref(msg.headers);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"descriptor", test_descriptor},
        {"echo now", test_echo_now},
        {"echo delayed resumes from its thread", test_echo_delayed_resumes_from_its_thread},
        {"late resume is dropped", test_echo_late_resume_is_dropped},
        {"cancel takes the job back", test_echo_cancel_takes_the_job_back},
        {"delay over max fails", test_echo_delay_over_max_fails},
        {"fail", test_fail},
        {"listener ticks and decisions", test_listener_ticks_and_decisions},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"echo module (fake host)", suite_init, suite_clean, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return cu_run(suites);
}
