/* A stream consumer's offset, kept by cmi itself (docs/rabbitmq.md,
 * "Streams"): AMQP 1.0 has no server-side offset tracking, so each
 * endpoint's last finished offset lives in a small file of its own under
 * the state directory, written whole and renamed into place (a crash
 * leaves the old value or the new one, never half of one). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rmq.h"

struct rmq_offset_store {
    char *dir;  /* the folder of the file, fsynced after a rename */
    char *path; /* .../rabbitmq/ENDPOINT@QUEUE.offset */
    char *tmp;
};

/* CMI_STATE_DIRECTORY, else systemd's STATE_DIRECTORY (its first folder),
 * else $XDG_STATE_HOME/cmi, else ~/.local/state/cmi. */
static char *state_dir(void)
{
    const char *s = getenv("CMI_STATE_DIRECTORY");
    if (s != NULL && *s != '\0')
        return rmq_xstrdup(s);
    s = getenv("STATE_DIRECTORY");
    if (s != NULL && *s != '\0') {
        const char *colon = strchr(s, ':');
        return colon ? rmq_xasprintf("%.*s", (int)(colon - s), s) : rmq_xstrdup(s);
    }
    s = getenv("XDG_STATE_HOME");
    if (s != NULL && *s == '/')
        return rmq_xasprintf("%s/cmi", s);
    s = getenv("HOME");
    return rmq_xasprintf("%s/.local/state/cmi", s != NULL && *s != '\0' ? s : "/tmp");
}

/* mkdir -p, 0700: offsets say what a consumer has done, for cmi alone. */
static int make_dirs(char *path, char *err, size_t n)
{
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        int rc = mkdir(path, 0700);
        int e = errno;
        *p = c;
        if (rc != 0 && e != EEXIST) {
            snprintf(err, n, "cannot make %s: %s", path, strerror(e));
            return -1;
        }
        if (c == '\0')
            return 0;
    }
}

rmq_offset_store_t *rmq_offset_store_open(const char *endpoint, const char *queue, char *err, size_t n)
{
    char *base = state_dir();
    rmq_offset_store_t *s = rmq_xcalloc(1, sizeof(*s));
    s->dir = rmq_xasprintf("%s/rabbitmq", base);
    free(base);
    char *e = rmq_percent_encode(endpoint), *q = rmq_percent_encode(queue);
    s->path = rmq_xasprintf("%s/%s@%s.offset", s->dir, e, q);
    s->tmp = rmq_xasprintf("%s.tmp", s->path);
    free(e);
    free(q);
    if (make_dirs(s->dir, err, n) != 0) {
        rmq_offset_store_close(s);
        return NULL;
    }
    return s;
}

const char *rmq_offset_store_path(const rmq_offset_store_t *s)
{
    return s->path;
}

int rmq_offset_store_load(rmq_offset_store_t *s, int64_t *offset, char *err, size_t n)
{
    FILE *f = fopen(s->path, "r");
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, n, "cannot read %s: %s", s->path, strerror(errno));
        return -1;
    }
    char line[64] = "";
    int ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    char *end;
    errno = 0;
    long long v = ok ? strtoll(line, &end, 10) : -1;
    if (!ok || errno != 0 || end == line || (*end != '\n' && *end != '\0') || v < 0) {
        snprintf(err, n, "%s does not hold an offset", s->path);
        return -1;
    }
    *offset = v;
    return 1;
}

int rmq_offset_store_save(rmq_offset_store_t *s, int64_t offset, char *err, size_t n)
{
    char text[32];
    int len = snprintf(text, sizeof(text), "%" PRId64 "\n", offset);
    int fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, n, "cannot write %s: %s", s->tmp, strerror(errno));
        return -1;
    }
    int ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok || rename(s->tmp, s->path) != 0) {
        snprintf(err, n, "cannot write %s: %s", s->path, strerror(ok ? errno : e));
        unlink(s->tmp);
        return -1;
    }
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* the rename itself durable */
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

void rmq_offset_store_close(rmq_offset_store_t *s)
{
    if (s == NULL)
        return;
    free(s->dir);
    free(s->path);
    free(s->tmp);
    free(s);
}
