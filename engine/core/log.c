#include "config.h"

#include "core/log.h"
#include "core/str.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_min_level = CMI_LOG_INFO;
static atomic_int log_format = CMI_LOG_FORMAT_TEXT;

static const char *const level_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"};

void cmi_log_configure(cmi_log_level_t min_level, cmi_log_format_t format)
{
    atomic_store(&log_min_level, (int)min_level);
    atomic_store(&log_format, (int)format);
}

int cmi_log_enabled(cmi_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&log_min_level, memory_order_relaxed);
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
