/* cmi connector SDK: the host API.
 *
 * The engine hands every connector object (instance, binding, call,
 * listener) a pointer to this table; a connector calls the engine only
 * through it and never links against engine symbols (Redis modules,
 * Mosquitto plugins).  A unit test can therefore run a connector module
 * against a fake host.
 *
 * Threads.  cmi runs messages on worker threads, one event loop each, and
 * connector housekeeping on one service thread:
 *   - lifecycle hooks (instance start/stop, prepare/release, listener
 *     start/stop/destroy) and timers created there run on the service thread;
 *   - an operation's run, its continuation, a listener's done and respond
 *     run on the worker that owns the message, and only there may the
 *     message be read or changed (the msg_* functions);
 *   - call_resume() and inject() may be called from any thread, including
 *     the connector's own (a proton proactor, say).
 *
 * Memory.  Every function says what it does with what it is given:
 * "copies" (the caller keeps its own), "steals" (a jansson reference
 * passes to the host) or "borrowed" (valid until the stated point).
 * Message allocations come from the message's arena and go with it, and
 * so do call->msg and call->params: they are valid in run and in
 * continuations only.  What a connector's own thread needs later (a
 * routing key, a correlation id) it copies before call_suspend().  JSON the
 * host hands out (payload views, variables, JSON parameters) may be shared
 * with other messages or the deployment: read it, never change it
 * (json_deep_copy first). */
#ifndef CMI_HOST_H
#define CMI_HOST_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmi/types.h>

typedef struct cmi_host cmi_host_t;
typedef struct cmi_msg cmi_msg_t;           /* a message context (opaque) */
typedef struct cmi_instance cmi_instance_t; /* one connection config */
typedef struct cmi_binding cmi_binding_t;   /* one operation element in the deployment */
typedef struct cmi_call cmi_call_t;         /* one operation run for one message */
typedef struct cmi_listener cmi_listener_t; /* one inbound endpoint */
typedef struct cmi_host_timer cmi_host_timer_t;
typedef struct cmi_report cmi_report_t;     /* what a report hook writes into (opaque) */

/* A metric family a connector reports (since 1.6): static data, one per
 * name, shared by its instances (the host writes HELP and TYPE once). */
typedef enum {
    CMI_METRIC_COUNTER = 0,
    CMI_METRIC_GAUGE,
    CMI_METRIC_HISTOGRAM,
} cmi_metric_type_t;

typedef struct {
    const char *name; /* Prometheus's [a-zA-Z_:][a-zA-Z0-9_:]*: cmi_NAME_..., counters end in _total */
    cmi_metric_type_t type;
    const char *help;
    const double *buckets; /* histograms: upper bounds, ascending (+Inf is implied) */
    size_t nbuckets;
} cmi_metric_def_t;

/* A continuation: runs on the message's worker after call_resume(); the
 * same contract as an operation's run (set a result or fail, return
 * CMI_FLOW_CONTINUE or CMI_FLOW_ERROR).  arg is the connector's. */
typedef int (*cmi_resume_fn)(cmi_call_t *call, void *arg);

typedef struct {
    const char *name;
    const char *value;
} cmi_nv_t;

typedef struct {
    cmi_scope_t scope;
    const char *name;
    const char *value;
} cmi_prop_t;

/* What a listener hands to inject(): all of it is copied before inject()
 * returns, except delivery, which comes back to the listener's done. */
typedef struct {
    const void *payload;
    size_t len;
    const char *content_type; /* NULL: application/octet-stream */
    const cmi_nv_t *headers;  /* transport headers of the new message */
    size_t nheaders;
    const cmi_prop_t *props;
    size_t nprops;
    void *delivery; /* the listener's handle for this message */
} cmi_injection_t;

/* Returned by call_resume() when the call had already ended (its deadline
 * passed): the continuation is not run and arg stays the caller's. */
#define CMI_CALL_STALE 1

struct cmi_host {
    uint32_t abi_major, abi_minor; /* of the engine */
    size_t struct_size;            /* sizeof(cmi_host_t) in the engine */

    /* ---- logging: one line per event, "[component] message" ----------- */
    /* component names the connector and the instance, as in
     * "rabbitmq:RabbitMQConnection".  Never pass a secret. */
    int (*log_enabled)(cmi_log_level_t level);
    void (*log)(cmi_log_level_t level, const char *component, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    void (*vlog)(cmi_log_level_t level, const char *component, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

    /* ---- the message (owner worker only) -------------------------------- */
    const char *(*msg_id)(cmi_msg_t *msg);
    /* Arena memory that lives as long as the message. */
    void *(*msg_alloc)(cmi_msg_t *msg, size_t size);
    char *(*msg_strdup)(cmi_msg_t *msg, const char *s);
    /* fn(data) runs when the message is freed (for foreign objects). */
    void (*msg_cleanup)(cmi_msg_t *msg, void (*fn)(void *data), void *data);

    /* The payload as bytes (serialised from a JSON or XML view when needed;
     * borrowed until the payload changes); *content_type may be NULL. */
    const char *(*msg_payload)(cmi_msg_t *msg, size_t *len, const char **content_type);
    /* The payload parsed as JSON (borrowed until the payload changes), or
     * NULL when it is not JSON. */
    json_t *(*msg_payload_json)(cmi_msg_t *msg);
    /* Replaces the payload: bytes are copied; json is stolen. */
    void (*msg_set_payload)(cmi_msg_t *msg, const void *bytes, size_t len, const char *content_type);
    void (*msg_set_payload_json)(cmi_msg_t *msg, json_t *json);

    /* A property as text (borrowed, message lifetime), NULL when unset. */
    const char *(*msg_property)(cmi_msg_t *msg, cmi_scope_t scope, const char *name);
    /* Sets (copies) or, with value NULL, removes a property. */
    void (*msg_set_property)(cmi_msg_t *msg, cmi_scope_t scope, const char *name, const char *value);
    /* A variable as JSON (a new reference to a shared value: do not change
     * it), NULL when unset. */
    json_t *(*msg_variable)(cmi_msg_t *msg, const char *name);
    /* Sets (steals) or, with value NULL, removes a variable. */
    void (*msg_set_variable)(cmi_msg_t *msg, const char *name, json_t *value);

    /* A transport header (first of that name, any case): borrowed, NULL
     * when absent. */
    const char *(*msg_header)(cmi_msg_t *msg, const char *name, size_t *len);
    /* Sets (copies) or, with value NULL, removes a transport header. */
    void (*msg_set_header)(cmi_msg_t *msg, const char *name, const char *value);
    /* Calls fn for each transport header until it returns non-zero;
     * returns the number visited. */
    size_t (*msg_headers)(cmi_msg_t *msg,
                          int (*fn)(void *arg, const char *name, size_t name_len, const char *value,
                                    size_t value_len),
                          void *arg);

    /* ---- calls (run, continuations: owner worker) ---------------------- */
    /* Evaluates a CMI_PARAM_LAZY row into call->params.  Returns 0, or
     * CMI_FLOW_ERROR with the connector's parameter error set. */
    int (*call_eval_param)(cmi_call_t *call, unsigned row);
    /* The operation's result (steals): the engine stores it in the
     * responseVariable ({"payload": result}) and, with overwriteBody, makes
     * it the payload. */
    void (*call_set_result)(cmi_call_t *call, json_t *result);
    /* Sets the message's error (ERROR_CODE, ERROR_MESSAGE, ERROR_DETAIL);
     * returns CMI_FLOW_ERROR.  The detail is formatted and copied. */
    int (*call_fail)(cmi_call_t *call, int code, const char *message, const char *detail_fmt, ...)
        __attribute__((format(printf, 4, 5)));
    /* The message waits for this call: returns CMI_FLOW_SUSPENDED for run to
     * return.  The connector must then call call_resume() exactly once.
     * With deadline_ms > 0 the host ends the call itself if no resume came
     * by then, failing it with timeout_code/timeout_message; the
     * connector's later call_resume() then returns CMI_CALL_STALE. */
    int (*call_suspend)(cmi_call_t *call, uint64_t deadline_ms, int timeout_code, const char *timeout_message);
    /* Any thread, once per suspension: fn(call, arg) runs on the message's
     * worker (fn may be NULL: continue).  Returns 0, or CMI_CALL_STALE when
     * the deadline came first (fn is not called; arg stays the caller's).
     * The call must not be used after this returns. */
    int (*call_resume)(cmi_call_t *call, cmi_resume_fn fn, void *arg);
    /* Owner worker, while suspending: fn(call, arg) runs on the worker if
     * the deadline ends the call, before the flow goes on, with call->msg
     * still valid: it may forget the call (the call_resume() still owed may
     * be made from fn and returns CMI_CALL_STALE; one made elsewhere returns
     * STALE only after fn has returned), and may call call_fail() to raise
     * another error than the timeout.  Keep it short.  Cleared at each
     * resume. */
    void (*call_on_cancel)(cmi_call_t *call, void (*fn)(cmi_call_t *call, void *arg), void *arg);
    /* The listener's delivery handle when the call's message was injected
     * by a listener of the same connector, else NULL. */
    void *(*call_delivery)(cmi_call_t *call);

    /* ---- timers (a host thread: the service thread or a worker) -------- */
    /* The timer runs cb on the thread that created it; start, stop and
     * destroy on that thread only.  NULL on any other thread. */
    cmi_host_timer_t *(*timer_create)(void (*cb)(void *arg), void *arg);
    void (*timer_start)(cmi_host_timer_t *t, uint64_t delay_ms);
    void (*timer_stop)(cmi_host_timer_t *t);
    void (*timer_destroy)(cmi_host_timer_t *t);

    /* ---- listeners ------------------------------------------------------ */
    /* Any thread: a new message for the listener's sequence, run on one of
     * the workers.  Returns 0, or -1 when the listener is stopping (the
     * caller still owns delivery). */
    int (*inject)(cmi_listener_t *listener, const cmi_injection_t *in);

    /* ---- since 1.1 ------------------------------------------------------- */
    /* Owner worker: the call's responseVariable, NULL when it has none (an
     * operation that, by MI's rules, replaces the payload unless it has
     * one: sendRpc). */
    const char *(*call_response_variable)(cmi_call_t *call);

    /* ---- since 1.2 ------------------------------------------------------- */
    /* Worker thread: runs fn(arg) on this worker once it has handled the
     * events at hand, before it waits for more (Redis's beforeSleep), so
     * that what many messages of one batch produce leaves together (the
     * RabbitMQ connector hands its publishes to its AMQP thread there: one
     * wake-up and one TCP write for many).  fn(arg) is run once however
     * often it is deferred within a batch.  Returns 0, or -1 off a worker
     * thread or when too much is deferred: then do the work now. */
    int (*defer)(void (*fn)(void *arg), void *arg);

    /* ---- since 1.3 ------------------------------------------------------- */
    /* Any thread: whether a flow can read bytes as content_type, checked
     * by the readers its payload views use (JSON: any value; XML:
     * well-formed, no DOCTYPE, at most 1,000 attributes an element; other
     * types: always).  Returns 1, or 0 with the reason in why (size
     * bytes, NUL-terminated). */
    int (*payload_readable)(const char *content_type, const void *bytes, size_t len, char *why, size_t size);

    /* ---- since 1.4 ------------------------------------------------------- */
    /* Any thread: inject() of a payload checked as payload_readable()
     * checks it, on the calling thread, before it takes a worker; the tree
     * the check builds (JSON) goes with the message, so that its flow does
     * not read the bytes again.  Returns 0; -1 when the listener is
     * stopping; -2 when the payload is not readable, with the reason in why
     * (size bytes, NUL-terminated).  On -1 and -2 the caller still owns
     * delivery. */
    int (*inject_checked)(cmi_listener_t *listener, const cmi_injection_t *in, char *why, size_t size);

    /* ---- since 1.5 ------------------------------------------------------- */
    /* Any thread but a worker: from inject_hold() to inject_release(), the
     * messages this thread injects are handed to the workers together at
     * the release (at the latest every 64 messages for one worker): one
     * wake-up of a worker for a burst, not one per message.  inject() and
     * inject_checked() answer as without the hold; a held message counts
     * as an injection under way, so a listener's stop waits for the
     * release: hold for one batch of work, never across a wait.  Returns 0,
     * or -1 on a worker or while already holding (then messages go at
     * once). */
    int (*inject_hold)(void);
    void (*inject_release)(void);

    /* ---- since 1.6 ------------------------------------------------------- */
    /* In a report hook only (cmi/connector.h).  A reason the instance or
     * inbound endpoint is not ready ("no connection up: ..."), one call
     * each; /healthz answers 503 with them (copies; never a secret). */
    void (*report_not_ready)(cmi_report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    /* A counter's or gauge's sample.  labels: nlabels name/value pairs
     * (copied, escaped by the host) after the one the host puts first:
     * connection="KEY" for an instance, inbound_endpoint="NAME" for a
     * listener. */
    void (*report_value)(cmi_report_t *r, const cmi_metric_def_t *def, const cmi_nv_t *labels, size_t nlabels,
                         double value);
    /* A histogram's sample: counts holds def->nbuckets + 1 numbers, each
     * bucket's own (not cumulative), the last the ones above the highest
     * bound; sum: of the observed values, in the def's unit. */
    void (*report_histogram)(cmi_report_t *r, const cmi_metric_def_t *def, const cmi_nv_t *labels, size_t nlabels,
                             const uint64_t *counts, double sum);
};

#endif
