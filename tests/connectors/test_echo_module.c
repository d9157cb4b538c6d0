/* The echo connector module against the SDK's test host (libcmi-testhost,
 * <cmi/testhost.h>): dlopen the built .so and drive its descriptor,
 * instance, operations and listener, with parameter structs bound from
 * name/value pairs by the engine's own parsers.  No engine is linked in:
 * this is how a connector author tests a module's logic
 * (docs/connector-testing.md). */
#define _GNU_SOURCE /* setenv */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmi/testhost.h>

#include "../unit/cu_main.h"
#include "echo.h"

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
    cmi_test_reset();
    return handle ? dlclose(handle) : 0;
}

static const cmi_op_def_t *op(const char *name)
{
    for (const cmi_op_def_t *o = desc->ops; o->name != NULL; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

/* A parameter struct as the engine would bind it from the element's
 * children; NULL (and the reason on stderr) when it would not load. */
static void *bind_params(const cmi_param_def_t *rows, size_t size, const char *const kv[])
{
    char err[256];
    void *p = cmi_test_bind(rows, size, kv, err, sizeof(err));
    if (p == NULL)
        fprintf(stderr, "bind: %s\n", err);
    return p;
}

static void *bind_op(const char *name, const char *const kv[])
{
    return bind_params(op(name)->params, op(name)->params_size, kv);
}

static void test_descriptor(void)
{
    cmi_test_reset();
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
    CU_ASSERT_EQUAL(desc->init(cmi_test_host(), err, sizeof(err)), 0);
    /* A host table older than the module's headers is refused. */
    cmi_host_t old = *cmi_test_host();
    old.struct_size = offsetof(cmi_host_t, inject);
    CU_ASSERT_EQUAL(desc->init(&old, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "older"));
}

/* The module's tables through the engine's parsers: what a deployment
 * would be told, without one. */
static void expect_refused(const cmi_param_def_t *rows, size_t size, const char *const kv[], const char *reason)
{
    char err[256] = "";
    void *p = cmi_test_bind(rows, size, kv, err, sizeof(err));
    CU_ASSERT_PTR_NULL(p);
    if (strstr(err, reason) == NULL)
        fprintf(stderr, "expected '%s', got '%s'\n", reason, err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, reason));
    cmi_test_params_free(p);
}

static void test_bind_parameters(void)
{
    const cmi_param_def_t *init = desc->config->params;
    size_t isize = desc->config->params_size;
    expect_refused(init, isize, (const char *const[]){"prefix", ">", NULL}, "the parameter name is required");
    expect_refused(init, isize, (const char *const[]){"name", "c", "mode", "LOUD", NULL},
                   "parameter mode: 'LOUD' is not one of KEEP, UPPER, LOWER");
    expect_refused(init, isize, (const char *const[]){"name", "c", "serverUrls", "a:1, b", NULL},
                   "parameter serverUrls: 'a:1, b' is not valid: item 'b': expected host:port");
    expect_refused(init, isize, (const char *const[]){"name", "c", "keyStoreLocation", "/k.jks", NULL},
                   "parameter keyStoreLocation is not supported by cmi yet");
    expect_refused(init, isize, (const char *const[]){"name", "c", "token", "$SYSTEM:CMI_TEST_UNSET_VAR", NULL},
                   "parameter token: the environment variable CMI_TEST_UNSET_VAR is not set");
    expect_refused(init, isize, (const char *const[]){"name", "c", "color", "red", NULL}, "unknown parameter 'color'");
    expect_refused(init, isize, (const char *const[]){"name", "{$ctx:n}", NULL}, "parameter name cannot be dynamic");
    expect_refused(op("echo")->params, op("echo")->params_size,
                   (const char *const[]){"message", "x", "repeat", "200", NULL},
                   "parameter repeat: '200' is out of range (1..100)");

    /* Defaults, given bits, ignored rows, blank values. */
    echo_init_params_t *p = bind_params(init, isize,
                                 (const char *const[]){"name", " conn ", "maxDelay", "2s", "connectionType", "x",
                                                       "prefix", "  ", NULL});
    CU_ASSERT_FATAL(p != NULL);
    CU_ASSERT_STRING_EQUAL(p->name, "conn");
    CU_ASSERT_EQUAL(p->max_delay_ms, 2000);
    CU_ASSERT_STRING_EQUAL(p->prefix, ""); /* the default */
    CU_ASSERT_EQUAL(p->mode, ECHO_MODE_KEEP);
    CU_ASSERT_TRUE(CMI_PARAM_GIVEN(p, ECHO_INIT_MAX_DELAY));
    CU_ASSERT_FALSE(CMI_PARAM_GIVEN(p, ECHO_INIT_PREFIX));
    CU_ASSERT_FALSE(CMI_PARAM_GIVEN(p, ECHO_INIT_CONNECTION_TYPE));
    cmi_test_params_free(p);

    /* What validate sees: a dynamic row keeps its default and is marked. */
    const cmi_op_def_t *echo = op("echo");
    char err[256] = "";
    echo_op_params_t *o = bind_op("echo", (const char *const[]){"message", "m", "delay", "1s", "timeout", "1s", NULL});
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(echo->validate(o, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "every echo would time out"));
    cmi_test_params_free(o);
    o = bind_op("echo", (const char *const[]){"message", "m", "delay", "{${payload.d}}", "timeout", "1s", NULL});
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_TRUE(CMI_PARAM_IS_DYNAMIC(o, ECHO_OP_DELAY));
    CU_ASSERT_FALSE(CMI_PARAM_GIVEN(o, ECHO_OP_DELAY));
    CU_ASSERT_EQUAL(o->delay_ms, 0);
    CU_ASSERT_EQUAL(echo->validate(o, err, sizeof(err)), 0);
    cmi_test_params_free(o);
}

/* An instance as the engine would start it. */
typedef struct {
    echo_init_params_t *p;
    cmi_instance_t inst;
    cmi_binding_t binding;
    cmi_msg_t *msg;
    echo_op_params_t *op;
    cmi_test_call_t call;
} fixture_t;

static void fixture_start(fixture_t *f, const char *mode, const char *const op_kv[])
{
    cmi_test_reset();
    memset(f, 0, sizeof(*f));
    setenv("CMI_TEST_ECHO_TOKEN", "s3cr3t-token", 1);
    f->p = bind_params(desc->config->params, desc->config->params_size,
                (const char *const[]){"name", "conn", "prefix", ">", "mode", mode, "serverUrls", "a:1, b:2", "token",
                                      "$SYSTEM:CMI_TEST_ECHO_TOKEN", "maxDelay", "1s", NULL});
    CU_ASSERT_FATAL(f->p != NULL);
    CU_ASSERT_STRING_EQUAL(f->p->token, "s3cr3t-token");
    cmi_test_instance_init(&f->inst, "EchoConn", "echo:EchoConn", f->p);
    char err[128];
    CU_ASSERT_FATAL(desc->config->start(&f->inst, err, sizeof(err)) == 0);
    f->op = bind_op("echo", op_kv);
    CU_ASSERT_FATAL(f->op != NULL);
    cmi_test_binding_init(&f->binding, &f->inst, f->op);
    f->msg = cmi_test_msg_new("urn:uuid:1");
    cmi_test_call_init(&f->call, &f->binding, f->msg, f->op);
}

static void fixture_stop(fixture_t *f)
{
    desc->config->stop(&f->inst);
    CU_ASSERT_PTR_NULL(f->inst.data);
    cmi_test_call_clear(&f->call);
    cmi_test_msg_free(f->msg);
    cmi_test_params_free(f->op);
    cmi_test_params_free(f->p);
}

static const char *result_text(const cmi_test_call_t *c, const char *key)
{
    return json_string_value(json_object_get(c->result, key));
}

static void test_echo_now(void)
{
    fixture_t f;
    fixture_start(&f, "UPPER", (const char *const[]){"message", "hi", "repeat", "2", NULL});
    CU_ASSERT_TRUE(cmi_test_logged("[echo:EchoConn] connection conn started: 2 server(s), mode UPPER"));
    CU_ASSERT_FALSE(cmi_test_logged("s3cr3t")); /* secrets never reach a log */
    CU_ASSERT_EQUAL(op("echo")->run(&f.call.call), CMI_FLOW_CONTINUE);
    CU_ASSERT_FATAL(f.call.result != NULL);
    CU_ASSERT_STRING_EQUAL(result_text(&f.call, "echo"), ">HI HI");
    CU_ASSERT_STRING_EQUAL(result_text(&f.call, "thread"), "worker");
    CU_ASSERT_STRING_EQUAL(result_text(&f.call, "messageId"), "urn:uuid:1");
    CU_ASSERT_TRUE(json_is_true(json_object_get(f.call.result, "tokenSet")));
    CU_ASSERT_EQUAL(f.call.suspends, 0);
    CU_ASSERT_EQUAL(f.call.fails, 0);
    CU_ASSERT_TRUE(cmi_test_traced("msg_id"));
    fixture_stop(&f);
}

/* The config's report hook through the test host: its lines in the log. */
static void test_report_hook(void)
{
    fixture_t f;
    fixture_start(&f, "LOWER", (const char *const[]){"message", "hi", NULL});
    CU_ASSERT_FATAL(desc->config->report != NULL);
    desc->config->report(&f.inst, NULL);
    CU_ASSERT_TRUE(cmi_test_logged("[report] cmi_echo_instance_up{mode=\"LOWER\"} 1"));
    CU_ASSERT_FALSE(cmi_test_logged("not ready")); /* echo.unready not set */
    fixture_stop(&f);
}

static void test_echo_delayed_resumes_from_its_thread(void)
{
    fixture_t f;
    fixture_start(&f, "KEEP", (const char *const[]){"message", "later", "delay", "30ms", "timeout", "500", NULL});
    CU_ASSERT_EQUAL(op("echo")->run(&f.call.call), CMI_FLOW_SUSPENDED);
    CU_ASSERT_EQUAL(f.call.suspends, 1);
    CU_ASSERT_EQUAL(f.call.deadline_ms, 500);
    CU_ASSERT_EQUAL(f.call.timeout_code, ECHO_ERR_TIMEOUT);
    CU_ASSERT_FATAL(cmi_test_call_wait(&f.call, 1, 5000));
    CU_ASSERT_FALSE(pthread_equal(f.call.resumer, pthread_self()));
    /* The continuation runs where the engine would run it: here. */
    CU_ASSERT_EQUAL(cmi_test_call_continue(&f.call), CMI_FLOW_CONTINUE);
    CU_ASSERT_STRING_EQUAL(result_text(&f.call, "echo"), ">later");
    CU_ASSERT_STRING_EQUAL(result_text(&f.call, "thread"), "echo");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(f.call.result, "delayedMs")), 30);
    fixture_stop(&f);
}

static void test_echo_hops_suspend_again(void)
{
    fixture_t f;
    fixture_start(&f, "KEEP", (const char *const[]){"message", "x", "delay", "5ms", "hops", "2", NULL});
    CU_ASSERT_EQUAL(op("echo")->run(&f.call.call), CMI_FLOW_SUSPENDED);
    CU_ASSERT_FATAL(cmi_test_call_wait(&f.call, 1, 5000));
    CU_ASSERT_EQUAL(cmi_test_call_continue(&f.call), CMI_FLOW_SUSPENDED); /* from the continuation */
    CU_ASSERT_EQUAL(f.call.suspends, 2);
    CU_ASSERT_FATAL(cmi_test_call_wait(&f.call, 2, 5000));
    CU_ASSERT_EQUAL(cmi_test_call_continue(&f.call), CMI_FLOW_CONTINUE);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(f.call.result, "hops")), 2);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(f.call.result, "delayedMs")), 10);
    /* Nothing pending any more. */
    CU_ASSERT_EQUAL(cmi_test_call_continue(&f.call), CMI_FLOW_ERROR);
    fixture_stop(&f);
}

static void test_echo_late_resume_is_dropped(void)
{
    fixture_t f;
    fixture_start(&f, "KEEP", (const char *const[]){"message", "x", "delay", "10", "timeout", "11", NULL});
    f.call.resume_answer = CMI_CALL_STALE; /* the deadline came first */
    CU_ASSERT_EQUAL(op("echo")->run(&f.call.call), CMI_FLOW_SUSPENDED);
    CU_ASSERT_FATAL(cmi_test_call_wait(&f.call, 1, 5000));
    desc->config->stop(&f.inst); /* joins the thread: its log line is written by then */
    CU_ASSERT_TRUE(cmi_test_logged("arrived after its deadline"));
    CU_ASSERT_PTR_NULL(f.call.result); /* and the job's memory went with it (LeakSanitizer) */
    CU_ASSERT_EQUAL(cmi_test_call_continue(&f.call), CMI_FLOW_ERROR);
    cmi_test_msg_free(f.msg);
    cmi_test_params_free(f.op);
    cmi_test_params_free(f.p);
}

static void test_echo_deadline_takes_the_job_back(void)
{
    fixture_t f;
    fixture_start(&f, "KEEP", (const char *const[]){"message", "x", "delay", "900", "timeout", "950", NULL});
    CU_ASSERT_EQUAL(op("echo")->run(&f.call.call), CMI_FLOW_SUSPENDED);
    CU_ASSERT_FATAL(f.call.cancel_fn != NULL);
    /* The host's deadline: the hook runs on the worker (here) and settles
     * the resume it owes, which the host answers STALE. */
    CU_ASSERT_EQUAL(cmi_test_call_expire(&f.call), CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(f.call.resumes, 1);
    CU_ASSERT_PTR_NULL(f.call.resume_fn);
    CU_ASSERT_TRUE(cmi_test_logged("an echo call was cancelled by its deadline"));
    CU_ASSERT_EQUAL(f.call.fail_code, ECHO_ERR_TIMEOUT);
    CU_ASSERT_STRING_EQUAL(f.call.fail_message, "ECHO:TIMEOUT");
    CU_ASSERT_STRING_EQUAL(cmi_test_msg_property(f.msg, CMI_SCOPE_DEFAULT, "ERROR_CODE"), "709004");
    fixture_stop(&f); /* the queue is empty: nothing left for the thread (LeakSanitizer checks the job) */
}

static void test_echo_delay_over_max_fails(void)
{
    fixture_t f;
    fixture_start(&f, "KEEP", (const char *const[]){"message", "x", "delay", "5s", NULL});
    CU_ASSERT_EQUAL(op("echo")->run(&f.call.call), CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(f.call.fail_code, ECHO_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.call.fail_detail, "exceeds maxDelay 1000 ms"));
    CU_ASSERT_STRING_EQUAL(cmi_test_msg_property(f.msg, CMI_SCOPE_DEFAULT, "ERROR_MESSAGE"),
                           "ECHO:INVALID_CONFIGURATION");
    fixture_stop(&f);
}

static void test_fail(void)
{
    cmi_test_reset();
    echo_fail_params_t *p = bind_op("fail", (const char *const[]){"code", "123456", "reason", "because", NULL});
    CU_ASSERT_FATAL(p != NULL);
    cmi_binding_t b;
    cmi_test_binding_init(&b, NULL, p);
    cmi_msg_t *msg = cmi_test_msg_new(NULL);
    cmi_test_call_t c;
    cmi_test_call_init(&c, &b, msg, p);
    CU_ASSERT_EQUAL(op("fail")->run(&c.call), CMI_FLOW_ERROR);
    CU_ASSERT_EQUAL(c.fail_code, 123456);
    CU_ASSERT_STRING_EQUAL(c.fail_detail, "because");
    CU_ASSERT_TRUE(cmi_test_traced("call_fail 123456 ECHO:FAILED"));
    cmi_test_msg_free(msg);
    cmi_test_params_free(p);
}

/* decide on the message of an injection: the first decision wins. */
static void check_decisions(const cmi_test_injection_t *tick1)
{
    echo_decide_params_t *dp = bind_op("decide", (const char *const[]){"decision", "requeue", NULL});
    CU_ASSERT_FATAL(dp != NULL);
    cmi_binding_t b;
    cmi_test_binding_init(&b, NULL, dp);
    cmi_msg_t *msg = cmi_test_msg_new(NULL);
    cmi_test_call_t c;
    cmi_test_call_init(&c, &b, msg, dp);
    CU_ASSERT_EQUAL(op("decide")->run(&c.call), CMI_FLOW_ERROR); /* not from a listener */
    CU_ASSERT_EQUAL(c.fail_code, ECHO_ERR_NO_DELIVERY);
    c.delivery = tick1->delivery;
    CU_ASSERT_EQUAL(op("decide")->run(&c.call), CMI_FLOW_CONTINUE);
    CU_ASSERT_TRUE(json_is_true(json_object_get(c.result, "first")));
    dp->decision = 0;
    CU_ASSERT_EQUAL(op("decide")->run(&c.call), CMI_FLOW_CONTINUE);
    CU_ASSERT_TRUE(json_is_false(json_object_get(c.result, "first")));
    cmi_test_call_clear(&c);
    cmi_test_msg_free(msg);
    cmi_test_params_free(dp);
}

static void test_listener_ticks_and_decisions(void)
{
    cmi_test_reset();
    const cmi_listener_def_t *def = &desc->listeners[0];
    echo_timer_params_t *p = bind_params(def->params, def->params_size,
                                  (const char *const[]){"echo.interval", "25ms", "echo.count", "2", "echo.message", "m",
                                                        NULL});
    CU_ASSERT_FATAL(p != NULL);
    cmi_listener_t l;
    cmi_test_listener_init(&l, "Ticker", "echo:Ticker", p);
    char err[128];
    CU_ASSERT_FATAL(def->start(&l, err, sizeof(err)) == 0);
    cmi_host_timer_t *t = cmi_test_timer();
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT_EQUAL(t->starts, 1);
    CU_ASSERT_EQUAL(t->delay_ms, 25);
    CU_ASSERT_TRUE(cmi_test_timer_fire(t)); /* tick 1 */
    CU_ASSERT_EQUAL_FATAL(cmi_test_injected(), 1);
    const cmi_test_injection_t *tick1 = cmi_test_injection(0);
    CU_ASSERT_STRING_EQUAL(cmi_test_msg_payload(tick1->msg, NULL, NULL),
                           "{\"tick\":1,\"message\":\"m\",\"listener\":\"Ticker\"}");
    CU_ASSERT_STRING_EQUAL(cmi_test_msg_header(tick1->msg, "X-Echo-Tick"), "1");
    CU_ASSERT_STRING_EQUAL(cmi_test_msg_header(tick1->msg, "content-type"), "application/json");
    CU_ASSERT_STRING_EQUAL(cmi_test_msg_property(tick1->msg, CMI_SCOPE_AXIS2, "echo.tick"), "1");
    CU_ASSERT_EQUAL(t->starts, 2); /* re-armed for tick 2 */
    CU_ASSERT_TRUE(cmi_test_timer_fire(t)); /* tick 2, the last */
    CU_ASSERT_EQUAL_FATAL(cmi_test_injected(), 2);
    CU_ASSERT_EQUAL(t->starts, 2);
    CU_ASSERT_FALSE(cmi_test_timer_fire(t)); /* not re-armed */
    const cmi_test_injection_t *tick2 = cmi_test_injection(1);

    check_decisions(tick1);

    cmi_test_msg_set_payload(tick2->msg, "{\"ok\":true}", "application/json");
    def->respond(&l, tick2->delivery, tick2->msg);
    CU_ASSERT_TRUE(cmi_test_logged("[echo:Ticker] tick 2 answered: {\"ok\":true}"));
    def->done(&l, tick1->delivery, tick1->msg, CMI_FLOW_CONTINUE);
    CU_ASSERT_TRUE(cmi_test_logged("tick 1 done: ok, decision REQUEUE"));
    cmi_test_msg_set_property(tick2->msg, CMI_SCOPE_DEFAULT, "ECHO_DECISION", "from-property");
    def->done(&l, tick2->delivery, tick2->msg, CMI_FLOW_ERROR);
    CU_ASSERT_TRUE(cmi_test_logged("tick 2 done: error, decision from-property"));
    CU_ASSERT_TRUE(cmi_test_logged("all 2 ticks done"));
    CU_ASSERT_TRUE(cmi_test_traced("msg_property default ECHO_DECISION"));
    def->stop(&l);
    CU_ASSERT_FALSE(t->running);
    def->destroy(&l);
    CU_ASSERT_PTR_NULL(l.data);
    CU_ASSERT_PTR_NULL(cmi_test_timer());
    cmi_test_params_free(p);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"descriptor", test_descriptor},
        {"parameters bound by the engine's parsers", test_bind_parameters},
        {"echo now", test_echo_now},
        {"report hook", test_report_hook},
        {"echo delayed resumes from its thread", test_echo_delayed_resumes_from_its_thread},
        {"echo hops suspend again", test_echo_hops_suspend_again},
        {"late resume is dropped", test_echo_late_resume_is_dropped},
        {"deadline takes the job back", test_echo_deadline_takes_the_job_back},
        {"delay over max fails", test_echo_delay_over_max_fails},
        {"fail", test_fail},
        {"listener ticks and decisions", test_listener_ticks_and_decisions},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"echo module (test host)", suite_init, suite_clean, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return cu_run(suites);
}
