/* libcmi-testhost's own parts (<cmi/testhost.h> is what a test sees):
 *
 *   testhost.c         the table, the log and trace, reset, object set-up
 *   testhost_msg.c     the fake message and the msg_* functions
 *   testhost_call.c    call records: results, failures, suspend and resume
 *   testhost_listen.c  injections, timers, defer
 *   testhost_bind.c    cmi_test_bind over pvalue.c, the engine's parsers
 *
 * Only cmi_test_* leaves the shared object (-export-symbols-regex). */
#ifndef CMI_PLUGIN_TESTHOST_INT_H
#define CMI_PLUGIN_TESTHOST_INT_H

#include <stdarg.h>

#include <cmi/testhost.h>

/* One lock for every record a connector's thread may write (log, trace,
 * resumes, injections, defer); cond is signalled at each resume. */
extern pthread_mutex_t cmi_th_lock;
extern pthread_cond_t cmi_th_cond;

/* A trace line (takes the lock). */
void cmi_th_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A connector bug the engine would stop on: stops the process, saying why. */
_Noreturn void cmi_th_fatal(const char *fn, const char *why);
/* Whether the caller is the worker (the thread of the last
 * cmi_test_reset(); any thread before the first). */
int cmi_th_is_worker(void);
/* Stops the process when the caller is not the worker. */
void cmi_th_on_worker(const char *fn);

/* ---- the host functions, by file -------------------------------------------- */

const char *cmi_th_msg_id(cmi_msg_t *msg);
void *cmi_th_msg_alloc(cmi_msg_t *msg, size_t size);
char *cmi_th_msg_strdup(cmi_msg_t *msg, const char *s);
void cmi_th_msg_cleanup(cmi_msg_t *msg, void (*fn)(void *data), void *data);
const char *cmi_th_msg_payload(cmi_msg_t *msg, size_t *len, const char **content_type);
json_t *cmi_th_msg_payload_json(cmi_msg_t *msg);
void cmi_th_msg_set_payload(cmi_msg_t *msg, const void *bytes, size_t len, const char *content_type);
void cmi_th_msg_set_payload_json(cmi_msg_t *msg, json_t *json);
const char *cmi_th_msg_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name);
void cmi_th_msg_set_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name, const char *value);
json_t *cmi_th_msg_variable(cmi_msg_t *msg, const char *name);
void cmi_th_msg_set_variable(cmi_msg_t *msg, const char *name, json_t *value);
const char *cmi_th_msg_header(cmi_msg_t *msg, const char *name, size_t *len);
void cmi_th_msg_set_header(cmi_msg_t *msg, const char *name, const char *value);
size_t cmi_th_msg_headers(cmi_msg_t *msg,
                          int (*fn)(void *arg, const char *name, size_t name_len, const char *value, size_t value_len),
                          void *arg);
int cmi_th_payload_readable(const char *content_type, const void *bytes, size_t len, char *why, size_t size);
/* A message built from an injection (no trace, any thread). */
cmi_msg_t *cmi_th_msg_injected(const cmi_injection_t *in);

int cmi_th_call_eval_param(cmi_call_t *call, unsigned row);
void cmi_th_call_set_result(cmi_call_t *call, json_t *result);
int cmi_th_call_fail(cmi_call_t *call, int code, const char *message, const char *detail_fmt, ...)
    __attribute__((format(printf, 4, 5)));
int cmi_th_call_suspend(cmi_call_t *call, uint64_t deadline_ms, int timeout_code, const char *timeout_message);
int cmi_th_call_resume(cmi_call_t *call, cmi_resume_fn fn, void *arg);
void cmi_th_call_on_cancel(cmi_call_t *call, void (*fn)(cmi_call_t *call, void *arg), void *arg);
void *cmi_th_call_delivery(cmi_call_t *call);
const char *cmi_th_call_response_variable(cmi_call_t *call);

cmi_host_timer_t *cmi_th_timer_create(void (*cb)(void *arg), void *arg);
void cmi_th_timer_start(cmi_host_timer_t *t, uint64_t delay_ms);
void cmi_th_timer_stop(cmi_host_timer_t *t);
void cmi_th_timer_destroy(cmi_host_timer_t *t);
int cmi_th_inject(cmi_listener_t *listener, const cmi_injection_t *in);
int cmi_th_inject_checked(cmi_listener_t *listener, const cmi_injection_t *in, char *why, size_t size);
int cmi_th_defer(void (*fn)(void *arg), void *arg);
int cmi_th_inject_hold(void);
void cmi_th_inject_release(void);
/* Frees the injections and forgets deferred functions (takes the lock;
 * message cleanups run without it). */
void cmi_th_listen_reset(void);

#endif
