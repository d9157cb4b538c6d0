#include "config.h"

#include "http/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/server.h"

/* Text: client, request id, time, request line, status, body bytes,
 * seconds from the request to the end of the response.  JSON: the same
 * with names (values escaped by h2o's JSON escaping).  A request that
 * made no message (404, a refused one) has "-" as its id. */
static const char text_format[] = "%h %{" CMI_ACCESS_LOG_ID "}e %t \"%r\" %s %b %{duration}x";
static const char json_format[] =
    "{\"time\":\"%{%Y-%m-%dT%H:%M:%S}t.%{msec_frac}t%{%z}t\",\"client\":\"%h\",\"request_id\":\"%{" CMI_ACCESS_LOG_ID
    "}e\",\"method\":\"%m\",\"path\":\"%U%q\",\"protocol\":\"%H\",\"status\":%s,\"bytes\":%b,"
    "\"latency\":%{duration}x}";

typedef struct {
    h2o_logger_t super;
    h2o_logconf_t *conf;
    int fd;
    int own_fd; /* a file it opened (not standard error) */
} access_logger_t;

static void write_line(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a full disk loses log lines, never requests */
        p += w;
        n -= (size_t)w;
    }
}

/* On the request's worker, as h2o disposes of the request. */
static void log_access(h2o_logger_t *self, h2o_req_t *req)
{
    access_logger_t *a = (access_logger_t *)self;
    char buf[4096];
    size_t len = sizeof(buf);
    char *line = h2o_log_request(a->conf, req, &len, buf);
    write_line(a->fd, line, len);
    if (line != buf)
        free(line);
}

/* The compiled format stays for the process's life (one per process):
 * libh2o 2.2.5's h2o_logconf_dispose() leaks the name of every %{NAME}e
 * directive, which valgrind would report at each exit. */
static h2o_logconf_t *formats[2];

static void dispose(h2o_logger_t *self)
{
    access_logger_t *a = (access_logger_t *)self;
    if (a->own_fd)
        close(a->fd);
}

int cmi_access_log_register(h2o_pathconf_t *path, const cmi_settings_t *s, char *err, size_t errlen)
{
    if (s->access_log == NULL)
        return 0;
    char why[256];
    h2o_logconf_t **conf = &formats[s->access_log_json != 0];
    if (*conf == NULL)
        *conf = h2o_logconf_compile(s->access_log_json ? json_format : text_format,
                                    s->access_log_json ? H2O_LOGCONF_ESCAPE_JSON : H2O_LOGCONF_ESCAPE_APACHE, why);
    if (*conf == NULL) {
        snprintf(err, errlen, "access log format: %s", why);
        return -1;
    }
    int own = strcmp(s->access_log, "-") != 0;
    int fd = own ? open(s->access_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640) : STDERR_FILENO;
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the access log %s: %s", s->access_log, strerror(errno));
        return -1;
    }
    access_logger_t *a = (access_logger_t *)h2o_create_logger(path, sizeof(*a));
    a->super.log_access = log_access;
    a->super.dispose = dispose;
    a->conf = *conf;
    a->fd = fd;
    a->own_fd = own;
    return 0;
}
