/* The connector test host: the host table, its log and trace, and the
 * engine objects a test hands to a connector (<cmi/testhost.h>). */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/testhost_int.h"

pthread_mutex_t cmi_th_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t cmi_th_cond = PTHREAD_COND_INITIALIZER;

/* A growing text of lines; NUL-terminated once anything is in it. */
typedef struct {
    char *data;
    size_t len, cap;
} text_t;

static text_t log_text, trace_text;
static _Atomic cmi_log_level_t log_min = CMI_LOG_TRACE; /* read by any thread */
static pthread_t worker;
static int worker_set;

static void text_vappend(text_t *t, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, again);
    va_end(again);
    if (n < 0)
        return;
    size_t need = t->len + (size_t)n + 2;
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < need)
            cap *= 2;
        char *data = realloc(t->data, cap);
        if (data == NULL)
            cmi_th_fatal(__func__, "out of memory");
        t->data = data;
        t->cap = cap;
    }
    vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
    t->len += (size_t)n;
    t->data[t->len++] = '\n';
    t->data[t->len] = '\0';
}

static void text_append(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_append(text_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    text_vappend(t, fmt, ap);
    va_end(ap);
}

static int text_has(const text_t *t, const char *s)
{
    pthread_mutex_lock(&cmi_th_lock);
    int found = t->data != NULL && strstr(t->data, s) != NULL;
    pthread_mutex_unlock(&cmi_th_lock);
    return found;
}

void cmi_th_trace(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&cmi_th_lock);
    text_vappend(&trace_text, fmt, ap);
    pthread_mutex_unlock(&cmi_th_lock);
    va_end(ap);
}

_Noreturn void cmi_th_fatal(const char *fn, const char *why)
{
    fprintf(stderr, "cmi test host: %s: %s\n", fn, why);
    abort();
}

int cmi_th_is_worker(void)
{
    pthread_mutex_lock(&cmi_th_lock);
    int yes = !worker_set || pthread_equal(worker, pthread_self());
    pthread_mutex_unlock(&cmi_th_lock);
    return yes;
}

void cmi_th_on_worker(const char *fn)
{
    if (!cmi_th_is_worker())
        cmi_th_fatal(fn, "a message used off its worker thread (the thread of cmi_test_reset)");
}

/* ---- logging --------------------------------------------------------------- */

static const char *const level_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"};

static int th_log_enabled(cmi_log_level_t level)
{
    return level >= log_min && level < CMI_LOG_OFF;
}

static void th_vlog(cmi_log_level_t level, const char *component, const char *fmt, va_list ap)
{
    if (!th_log_enabled(level))
        return;
    char line[2048];
    vsnprintf(line, sizeof(line), fmt, ap);
    const char *name = level_names[level];
    const char *comp = component ? component : "connector";
    pthread_mutex_lock(&cmi_th_lock);
    text_append(&log_text, "%s [%s] %s", name, comp, line);
    pthread_mutex_unlock(&cmi_th_lock);
    const char *echo = getenv("CMI_TEST_LOG");
    if (echo != NULL && *echo != '\0' && strcmp(echo, "0") != 0)
        fprintf(stderr, "%s [%s] %s\n", name, comp, line);
}

static void th_log(cmi_log_level_t level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    th_vlog(level, component, fmt, ap);
    va_end(ap);
}

/* ---- report hooks (1.6): what they report goes to the test log --------------------- */

/* A test calls a report hook with any cmi_report_t pointer (NULL will do)
 * and reads the lines with cmi_test_log() / cmi_test_logged():
 * "REPORT not ready: WHY", "REPORT NAME{a=\"b\"} VALUE",
 * "REPORT NAME count N sum S". */
static void th_report_not_ready(cmi_report_t *r, const char *fmt, ...)
{
    (void)r;
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    th_log(CMI_LOG_INFO, "report", "not ready: %s", why);
}

static void th_labels(char *out, size_t n, const cmi_nv_t *labels, size_t count)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < count && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%s=\"%s\"", i ? "," : "", labels[i].name,
                                 labels[i].value ? labels[i].value : "");
}

static void th_report_value(cmi_report_t *r, const cmi_metric_def_t *def, const cmi_nv_t *labels, size_t count,
                            double value)
{
    (void)r;
    char l[512];
    th_labels(l, sizeof(l), labels, count);
    th_log(CMI_LOG_INFO, "report", "%s{%s} %g", def->name, l, value);
}

static void th_report_histogram(cmi_report_t *r, const cmi_metric_def_t *def, const cmi_nv_t *labels, size_t count,
                                const uint64_t *counts, double sum)
{
    (void)r;
    char l[512];
    th_labels(l, sizeof(l), labels, count);
    uint64_t total = 0;
    for (size_t i = 0; i <= def->nbuckets; i++)
        total += counts[i];
    th_log(CMI_LOG_INFO, "report", "%s{%s} count %llu sum %g", def->name, l, (unsigned long long)total, sum);
}

/* ---- the table ----------------------------------------------------------------- */

static const cmi_host_t host = {
    .abi_major = CMI_CONNECTOR_ABI_MAJOR,
    .abi_minor = CMI_CONNECTOR_ABI_MINOR,
    .struct_size = sizeof(cmi_host_t),
    .log_enabled = th_log_enabled,
    .log = th_log,
    .vlog = th_vlog,
    .msg_id = cmi_th_msg_id,
    .msg_alloc = cmi_th_msg_alloc,
    .msg_strdup = cmi_th_msg_strdup,
    .msg_cleanup = cmi_th_msg_cleanup,
    .msg_payload = cmi_th_msg_payload,
    .msg_payload_json = cmi_th_msg_payload_json,
    .msg_set_payload = cmi_th_msg_set_payload,
    .msg_set_payload_json = cmi_th_msg_set_payload_json,
    .msg_property = cmi_th_msg_property,
    .msg_set_property = cmi_th_msg_set_property,
    .msg_variable = cmi_th_msg_variable,
    .msg_set_variable = cmi_th_msg_set_variable,
    .msg_header = cmi_th_msg_header,
    .msg_set_header = cmi_th_msg_set_header,
    .msg_headers = cmi_th_msg_headers,
    .call_eval_param = cmi_th_call_eval_param,
    .call_set_result = cmi_th_call_set_result,
    .call_fail = cmi_th_call_fail,
    .call_suspend = cmi_th_call_suspend,
    .call_resume = cmi_th_call_resume,
    .call_on_cancel = cmi_th_call_on_cancel,
    .call_delivery = cmi_th_call_delivery,
    .timer_create = cmi_th_timer_create,
    .timer_start = cmi_th_timer_start,
    .timer_stop = cmi_th_timer_stop,
    .timer_destroy = cmi_th_timer_destroy,
    .inject = cmi_th_inject,
    .call_response_variable = cmi_th_call_response_variable,
    .defer = cmi_th_defer,
    .payload_readable = cmi_th_payload_readable,
    .inject_checked = cmi_th_inject_checked,
    .inject_hold = cmi_th_inject_hold,
    .inject_release = cmi_th_inject_release,
    .report_not_ready = th_report_not_ready,
    .report_value = th_report_value,
    .report_histogram = th_report_histogram,
};

const cmi_host_t *cmi_test_host(void)
{
    return &host;
}

void cmi_test_reset(void)
{
    pthread_mutex_lock(&cmi_th_lock);
    free(log_text.data);
    free(trace_text.data);
    log_text = (text_t){0};
    trace_text = (text_t){0};
    log_min = CMI_LOG_TRACE;
    worker = pthread_self();
    worker_set = 1;
    pthread_mutex_unlock(&cmi_th_lock);
    cmi_th_listen_reset();
}

const char *cmi_test_log(void)
{
    return log_text.data ? log_text.data : "";
}

int cmi_test_logged(const char *text)
{
    return text_has(&log_text, text);
}

void cmi_test_set_log_level(cmi_log_level_t min)
{
    log_min = min;
}

const char *cmi_test_trace(void)
{
    return trace_text.data ? trace_text.data : "";
}

int cmi_test_traced(const char *text)
{
    return text_has(&trace_text, text);
}

/* ---- objects ------------------------------------------------------------------ */

void cmi_test_instance_init(cmi_instance_t *inst, const char *name, const char *component, const void *params)
{
    *inst = (cmi_instance_t){CMI_INSTANCE_MAGIC, &host, name, component, params, NULL};
}

void cmi_test_binding_init(cmi_binding_t *b, cmi_instance_t *inst, const void *params)
{
    *b = (cmi_binding_t){CMI_BINDING_MAGIC, &host, inst, "test", params, NULL};
}

void cmi_test_listener_init(cmi_listener_t *l, const char *name, const char *component, const void *params)
{
    *l = (cmi_listener_t){CMI_LISTENER_MAGIC, &host, name, component, params, NULL};
}
