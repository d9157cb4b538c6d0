#include "config.h"

#include "core/log.h"
#include "core/str.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_min_level = CMI_LOG_INFO; /* the default */
static atomic_int log_floor = CMI_LOG_INFO;     /* the lowest of the default and the components' */
static atomic_int log_format = CMI_LOG_FORMAT_TEXT;

/* Levels of components.  A reload may replace the table while threads
 * log: a table is never changed once published, and one replaced stays
 * allocated (reachable from the next) until the process ends: a few KiB
 * per change an operator makes. */
typedef struct log_table {
    size_t n;
    struct {
        char name[64];
        size_t len;
        int level;
    } c[CMI_LOG_COMPONENTS];
    struct log_table *retired; /* the one this replaced */
} log_table_t;

static log_table_t no_components;
static _Atomic(log_table_t *) components = &no_components;

static const char *const level_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"};

static void update_floor(void)
{
    int floor = atomic_load(&log_min_level);
    const log_table_t *t = atomic_load(&components);
    for (size_t i = 0; i < t->n; i++)
        floor = t->c[i].level < floor ? t->c[i].level : floor;
    atomic_store(&log_floor, floor);
}

void cmi_log_configure(cmi_log_level_t min_level, cmi_log_format_t format)
{
    atomic_store(&log_min_level, (int)min_level);
    atomic_store(&log_format, (int)format);
    update_floor();
}

int cmi_log_enabled(cmi_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&log_floor, memory_order_relaxed);
}

/* One "name=level" of a spec; 0 or -1. */
static int parse_component(const char *p, size_t n, char *name, size_t namesize, int *level, char *err, size_t errlen)
{
    const char *eq = memchr(p, '=', n);
    size_t nlen = eq ? (size_t)(eq - p) : 0;
    char lv[16];
    size_t llen = eq ? n - nlen - 1 : 0;
    if (eq == NULL || nlen == 0 || nlen >= namesize || llen == 0 || llen >= sizeof(lv)) {
        snprintf(err, errlen, "'%.*s' is not COMPONENT=LEVEL", (int)(n < 80 ? n : 80), p);
        return -1;
    }
    memcpy(name, p, nlen);
    name[nlen] = '\0';
    memcpy(lv, eq + 1, llen);
    lv[llen] = '\0';
    if ((*level = cmi_log_level_parse(lv)) < 0) {
        snprintf(err, errlen, "'%s' is not a log level (trace, debug, info, warn, error, fatal, off)", lv);
        return -1;
    }
    return 0;
}

/* Walks spec's comma-separated parts; with apply (not NULL), records the
 * components there. */
static int walk_spec(const char *spec, cmi_log_level_t *level, log_table_t *apply, char *err, size_t errlen)
{
    size_t count = 0;
    for (const char *p = spec;; ) {
        size_t n = strcspn(p, ",");
        char name[64];
        int lv;
        if (p == spec) {
            char first[16];
            if (n == 0 || n >= sizeof(first) || memchr(p, '=', n) != NULL) {
                snprintf(err, errlen, "the default level comes first (e.g. info,rabbitmq=debug)");
                return -1;
            }
            memcpy(first, p, n);
            first[n] = '\0';
            if ((lv = cmi_log_level_parse(first)) < 0) {
                snprintf(err, errlen, "'%s' is not a log level (trace, debug, info, warn, error, fatal, off)", first);
                return -1;
            }
            *level = (cmi_log_level_t)lv;
        } else if (parse_component(p, n, name, sizeof(name), &lv, err, errlen) != 0) {
            return -1;
        } else if (count == CMI_LOG_COMPONENTS) {
            snprintf(err, errlen, "more than %d components", CMI_LOG_COMPONENTS);
            return -1;
        } else if (apply) {
            memcpy(apply->c[count].name, name, sizeof(name));
            apply->c[count].len = strlen(name);
            apply->c[count].level = lv;
            count++;
        } else {
            count++;
        }
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    if (apply)
        apply->n = count;
    return 0;
}

int cmi_log_spec_parse(const char *spec, cmi_log_level_t *level, char *err, size_t errlen)
{
    return walk_spec(spec, level, NULL, err, errlen);
}

void cmi_log_configure_components(const char *spec)
{
    cmi_log_level_t dflt;
    char err[128];
    log_table_t *t = calloc(1, sizeof(*t));
    if (t == NULL || (spec != NULL && walk_spec(spec, &dflt, t, err, sizeof(err)) != 0)) {
        free(t);
        return;
    }
    t->retired = atomic_load(&components);
    atomic_store(&components, t);
    update_floor();
}

/* The level that applies to component: the longest component name that
 * is it or a prefix of it followed by ':'; else the default. */
static int level_of(const char *component)
{
    int level = atomic_load_explicit(&log_min_level, memory_order_relaxed);
    const log_table_t *t = atomic_load_explicit(&components, memory_order_acquire);
    size_t best = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t n = t->c[i].len;
        if (n > best && strncmp(component, t->c[i].name, n) == 0 && (component[n] == '\0' || component[n] == ':')) {
            best = n;
            level = t->c[i].level;
        }
    }
    return level;
}

int cmi_log_level_parse(const char *name)
{
    for (int i = 0; i <= CMI_LOG_OFF; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    if (strcasecmp(name, "warning") == 0)
        return CMI_LOG_WARN;
    return -1;
}

static void format_time(char *buf, size_t size)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0)
            return; /* nowhere left to report it */
        p += w;
        n -= (size_t)w;
    }
}

static void write_json(const char *when, cmi_log_level_t level, const char *component, const char *msg)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "time", when, "level", level_names[level],
                          "component", component, "message", msg);
    if (o == NULL)
        return;
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (s == NULL)
        return;
    size_t n = strlen(s);
    s[n] = '\n'; /* replaces the NUL: write exactly n + 1 bytes */
    write_all(s, n + 1);
    free(s);
}

/* One event, one line: control characters are written as escapes and
 * bytes that are not UTF-8 as '?', so that text that came from a request
 * (a path, a header, a payload) can neither forge a log line nor make the
 * JSON form unwritable. */
static void sanitize(const char *in, char *out, size_t size)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n && o + 5 < size;) {
        unsigned char ch = s[i];
        if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, size - o, ch == '\n' ? "\\n" : ch == '\r' ? "\\r" : ch == '\t' ? "\\t" : "\\x%02x", ch);
            i++;
            continue;
        }
        size_t len = cmi_utf8_seq(in + i, n - i);
        if (len == 0) {
            out[o++] = '?';
            i++;
            continue;
        }
        memcpy(out + o, s + i, len);
        o += len;
        i += len;
    }
    out[o] = '\0';
}

void cmi_log_vwrite(cmi_log_level_t level, const char *component, const char *fmt, va_list ap)
{
    if ((int)level < level_of(component ? component : ""))
        return;
    char when[64], raw[4096], msg[4096], line[4300];
    format_time(when, sizeof(when));
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(raw)) /* a long message is cut, never dropped */
        memcpy(raw + sizeof(raw) - 4, "...", 4);
    sanitize(raw, msg, sizeof(msg));
    if (atomic_load_explicit(&log_format, memory_order_relaxed) == CMI_LOG_FORMAT_JSON) {
        write_json(when, level, component, msg);
        return;
    }
    int len = snprintf(line, sizeof(line), "%s %-5s [%s] %s\n", when, level_names[level], component, msg);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof(line)) {
        len = (int)sizeof(line) - 1;
        line[len - 1] = '\n';
    }
    write_all(line, (size_t)len);
}

void cmi_log_write(cmi_log_level_t level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cmi_log_vwrite(level, component, fmt, ap);
    va_end(ap);
}
