/* cmi connector SDK: a fake host for a connector's unit tests
 * (libcmi-testhost; docs/connector-testing.md).
 *
 *   cc test.c my_connector.c $(pkg-config --cflags --libs cmi-connector-test)
 *
 * A connector calls the engine only through its host table (cmi/host.h),
 * so a test can run its operations, instances and listeners without an
 * engine: cmi_test_host() is a host table whose functions record what the
 * connector does (log lines, results, errors, suspensions and resumes,
 * payload, properties and headers read and written, injected messages,
 * timers), and cmi_test_bind() fills a parameter struct from name/value
 * pairs with the engine's own parsers, as a deployment's elements would.
 *
 * There is one fake host per process: call cmi_test_reset() at the start of
 * each test.  Messages, calls and timers are the test's to free (a leak
 * checker then points at the connector's own leaks).  To make one host
 * function answer otherwise, copy the table, replace the function and hand
 * out the copy (the records below still work: they hang off the objects).
 *
 * Thread rules are the engine's: the thread that called cmi_test_reset()
 * stands for the worker, and a msg_* call on another thread stops the
 * process with a message, as the engine does; call_resume() and inject()
 * may come from any thread. */
#ifndef CMI_TESTHOST_H
#define CMI_TESTHOST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <cmi/connector.h>

/* Exported even when a test is built with -fvisibility=hidden. */
#define CMI_TEST_API __attribute__((visibility("default")))

/* ---- the host ------------------------------------------------------------ */

/* The table to hand to the module's init and to every object; its ABI
 * version is the SDK's (CMI_CONNECTOR_ABI_MAJOR/MINOR). */
CMI_TEST_API const cmi_host_t *cmi_test_host(void);

/* Forgets the log, the trace, the injected messages (freed) and deferred
 * functions; every log level is kept again and inject() accepts again.  The
 * calling thread becomes the worker. */
CMI_TEST_API void cmi_test_reset(void);

/* Every log line since the reset, each "LEVEL [component] text\n" (with
 * CMI_TEST_LOG=1 in the environment they also go to stderr).  The pointer
 * is valid until the next line: read it when the connector's threads are
 * quiet, or use cmi_test_logged(). */
CMI_TEST_API const char *cmi_test_log(void);
/* 1 when a log line holds text. */
CMI_TEST_API int cmi_test_logged(const char *text);
/* log_enabled(level) answers level >= min (default CMI_LOG_TRACE: every
 * line is kept, so that the connector's debug lines run too). */
CMI_TEST_API void cmi_test_set_log_level(cmi_log_level_t min);

/* One line per host function the connector called, with what it named:
 * "msg_property default ECHO_DECISION", "call_suspend 500", "inject". */
CMI_TEST_API const char *cmi_test_trace(void);
/* 1 when a trace line holds text. */
CMI_TEST_API int cmi_test_traced(const char *text);

/* ---- objects as the engine fills them --------------------------------------- */

/* Magic numbers, the host table and the given fields; data is NULL.  The
 * strings are not copied. */
CMI_TEST_API void cmi_test_instance_init(cmi_instance_t *inst, const char *name, const char *component,
                                         const void *params);
/* inst NULL: an operation without configKey.  where is "test". */
CMI_TEST_API void cmi_test_binding_init(cmi_binding_t *b, cmi_instance_t *inst, const void *params);
CMI_TEST_API void cmi_test_listener_init(cmi_listener_t *l, const char *name, const char *component,
                                         const void *params);

/* ---- parameters ------------------------------------------------------------ */

/* Fills a parameter struct of struct_size bytes from name/value pairs
 * (kv: "name", "value", ..., NULL) as the engine fills one from an
 * element's children, with the engine's code: the table is checked as the
 * loader checks it, defaults are set, and each value is trimmed (a
 * template's is not), resolved ($SYSTEM:NAME, $FILE:PATH for a secret
 * row), parsed, checked and marked given.  A blank value is an absent
 * parameter; an IGNORED row takes any value without effect; a value written
 * as an expression ({${...}}, {legacy}) on a dynamic row marks the row
 * dynamic and keeps its default (what prepare and validate see).  A
 * template row takes the text it would have rendered.
 * Returns the struct (free it with cmi_test_params_free; its strings, lists
 * and JSON go with it), or NULL with the reason in err, as the engine words
 * it without the file:line: "parameter repeat: '200' is out of range
 * (1..100)", "the parameter name is required", "unknown parameter 'x'". */
CMI_TEST_API void *cmi_test_bind(const cmi_param_def_t *rows, size_t struct_size, const char *const kv[], char *err,
                                 size_t err_size);
CMI_TEST_API void cmi_test_params_free(void *params);

/* ---- messages -------------------------------------------------------------- */

/* A message with no payload, properties, variables or headers.  id NULL:
 * "urn:uuid:test-N". */
CMI_TEST_API cmi_msg_t *cmi_test_msg_new(const char *id);
/* Runs the msg_cleanup functions, then frees the message and what
 * msg_alloc gave out. */
CMI_TEST_API void cmi_test_msg_free(cmi_msg_t *msg);
/* What the host's msg_* functions read and change, for the test to set up
 * and to check (not traced).  Strings are copied in and borrowed out; the
 * payload is NUL-terminated; content_type NULL: application/octet-stream. */
CMI_TEST_API void cmi_test_msg_set_payload(cmi_msg_t *msg, const char *text, const char *content_type);
CMI_TEST_API const char *cmi_test_msg_payload(cmi_msg_t *msg, size_t *len, const char **content_type);
/* value NULL removes.  CMI_SCOPE_TRANSPORT is the transport headers, as in
 * the engine. */
CMI_TEST_API void cmi_test_msg_set_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name, const char *value);
CMI_TEST_API const char *cmi_test_msg_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name);
CMI_TEST_API void cmi_test_msg_set_header(cmi_msg_t *msg, const char *name, const char *value);
CMI_TEST_API const char *cmi_test_msg_header(cmi_msg_t *msg, const char *name);
/* Borrowed; NULL when unset. */
CMI_TEST_API json_t *cmi_test_msg_variable(cmi_msg_t *msg, const char *name);

/* ---- calls ----------------------------------------------------------------- */

/* A call and what the connector did with it: hand &c->call to an
 * operation's run.  The host finds the record from the call. */
typedef struct {
    cmi_call_t call;

    /* Set by the test (cmi_test_call_init zeroes them). */
    void *delivery;                /* what call_delivery() answers */
    const char *response_variable; /* what call_response_variable() answers */
    /* What call_resume() answers: 0, or CMI_CALL_STALE as if the deadline
     * had come first without the cancel hook seeing the call (a resume
     * that lost the race); cmi_test_call_expire() is the deadline itself. */
    int resume_answer;

    /* Records: read them after run, and after cmi_test_call_wait() when
     * another thread resumes. */
    json_t *result;          /* call_set_result's, owned (cmi_test_call_clear) */
    unsigned fails;          /* call_fail() calls; the last one's error: */
    int fail_code;           /* (the message also gets the ERROR_CODE, */
    char fail_message[128];  /* ERROR_MESSAGE and ERROR_DETAIL properties */
    char fail_detail[512];   /* a fault sequence would read) */
    unsigned suspends;       /* call_suspend() calls */
    uint64_t deadline_ms;    /* of the last call_suspend() */
    int timeout_code;
    char timeout_message[128];
    unsigned resumes;        /* call_resume() calls, STALE ones included */
    pthread_t resumer;       /* the thread of the last one */
    cmi_resume_fn resume_fn; /* and what it passed */
    void *resume_arg;
    void (*cancel_fn)(cmi_call_t *call, void *arg); /* call_on_cancel's */
    void *cancel_arg;

    int state; /* the host's */
} cmi_test_call_t;

CMI_TEST_API void cmi_test_call_init(cmi_test_call_t *c, cmi_binding_t *b, cmi_msg_t *msg, const void *params);
/* Frees the result. */
CMI_TEST_API void cmi_test_call_clear(cmi_test_call_t *c);
/* Waits up to timeout_ms until c->resumes reaches n; 1 when it did. */
CMI_TEST_API int cmi_test_call_wait(cmi_test_call_t *c, unsigned n, unsigned timeout_ms);
/* Runs the continuation the last call_resume() passed, here, as the
 * engine runs it on the worker (fn NULL: CMI_FLOW_CONTINUE), and returns
 * its flow code; CMI_FLOW_ERROR, with a trace line, when no resume is
 * pending. */
CMI_TEST_API int cmi_test_call_continue(cmi_test_call_t *c);
/* The suspended call's deadline passes, as in the engine: the cancel hook
 * runs here (a call_resume() from it answers STALE at once, one from
 * another thread once it has returned), and unless the hook called
 * call_fail() the call fails with the timeout's code and message.  Every
 * later call_resume() answers STALE.  Returns CMI_FLOW_ERROR, or
 * CMI_FLOW_CONTINUE when the call was not suspended (its resume came
 * first: nothing happens). */
CMI_TEST_API int cmi_test_call_expire(cmi_test_call_t *c);

/* ---- listeners, timers, defer ------------------------------------------------ */

/* What inject() accepted: a message made as the engine makes one (payload,
 * content type, headers and a Content-Type header, properties), freed by
 * cmi_test_reset(), and the delivery handle. */
typedef struct {
    cmi_listener_t *listener;
    cmi_msg_t *msg;
    void *delivery;
} cmi_test_injection_t;

/* Injections since the reset, and the i-th of them (NULL past the end). */
CMI_TEST_API size_t cmi_test_injected(void);
CMI_TEST_API const cmi_test_injection_t *cmi_test_injection(size_t i);
/* With refuse, inject() answers -1, as for a listener that is stopping. */
CMI_TEST_API void cmi_test_refuse_injections(int refuse);

/* A timer of the fake host: nothing fires by itself, the test fires it.
 * timer_destroy() frees it. */
struct cmi_host_timer {
    void (*cb)(void *arg);
    void *arg;
    uint64_t delay_ms; /* of the last timer_start() */
    unsigned starts;   /* timer_start() calls */
    int running;       /* started, and neither stopped nor fired since */
};
/* The timer created last and not destroyed yet, or NULL. */
CMI_TEST_API cmi_host_timer_t *cmi_test_timer(void);
/* Fires a running timer as its thread would once the delay is over (it
 * stops running, then its callback runs): 1, or 0 when it was not running. */
CMI_TEST_API int cmi_test_timer_fire(cmi_host_timer_t *t);

/* Runs the functions defer() queued, once each, as the worker does before
 * it waits for events; returns how many ran. */
CMI_TEST_API size_t cmi_test_run_deferred(void);

/* payload_readable() checks JSON with jansson and takes every other type,
 * XML included, as readable: the engine's XML reader is not linked.
 * inject_checked() makes that check, then inject(). */

#endif
