/* `cmi run --watch`: changes under the deployment folder (inotify on it
 * and on its folders) ask for a reload once they have settled
 * (docs/operations.md, "Reloading").  An editor's or a deploy tool's
 * temporary files do not count. */
#include "config.h"

#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/log.h"

#define WATCH_MAX_FOLDERS 1024 /* past it, deeper folders are not watched (logged once) */
#define WATCH_MAX_DEPTH 8

#define EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_DELETE_SELF)

struct cmi_watch {
    int fd;
    char *dir;
    unsigned folders;
    int full_logged;
};

static void add_folder(cmi_watch_t *w, const char *path, int depth)
{
    if (w->folders == WATCH_MAX_FOLDERS || depth > WATCH_MAX_DEPTH) {
        if (!w->full_logged++)
            cmi_log_warn("engine", "--watch: %s and further folders are not watched (at most %d folders, %d deep)",
                         path, WATCH_MAX_FOLDERS, WATCH_MAX_DEPTH);
        return;
    }
    /* inotify_add_watch on a folder watched already returns its watch:
     * a rescan adds only what is new. */
    if (inotify_add_watch(w->fd, path, EVENTS | IN_ONLYDIR) < 0) {
        cmi_log_warn("engine", "--watch: cannot watch %s: %s", path, strerror(errno));
        return;
    }
    w->folders++;
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[PATH_MAX];
        struct stat st;
        if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) < (int)sizeof(sub) && lstat(sub, &st) == 0 &&
            S_ISDIR(st.st_mode))
            add_folder(w, sub, depth + 1);
    }
    closedir(d);
}

cmi_watch_t *cmi_watch_create(const char *dir, char *err, size_t errlen)
{
    cmi_watch_t *w = cmi_xcalloc(1, sizeof(*w));
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        snprintf(err, errlen, "--watch: inotify: %s", strerror(errno));
        free(w);
        return NULL;
    }
    w->dir = cmi_xstrdup(dir);
    add_folder(w, dir, 0);
    return w;
}

void cmi_watch_rescan(cmi_watch_t *w)
{
    if (w == NULL)
        return;
    w->folders = 0; /* counted again: a folder watched twice is one watch */
    add_folder(w, w->dir, 0);
}

int cmi_watch_fd(const cmi_watch_t *w)
{
    return w->fd;
}

/* Files an editor or a deploy tool writes on the way: swap files, backups,
 * temporary names, dot files. */
static int ignored(const char *name)
{
    size_t n = strlen(name);
    static const char *const suffixes[] = {"~", ".swp", ".swx", ".tmp", ".part"};
    if (n == 0 || name[0] == '.' || name[0] == '#')
        return 1;
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0)
            return 1;
    }
    return 0;
}

int cmi_watch_read(cmi_watch_t *w, const char **what)
{
    static _Thread_local char last[NAME_MAX + 1];
    char buf[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
        __attribute__((aligned(__alignof__(struct inotify_event))));
    int changed = 0;
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                changed = 1; /* events were lost: reload to be sure */
                snprintf(last, sizeof(last), "(many)");
                continue;
            }
            if (ev->len == 0 ? !(ev->mask & IN_DELETE_SELF) : ignored(ev->name))
                continue;
            changed = 1;
            snprintf(last, sizeof(last), "%s", ev->len ? ev->name : "(a folder)");
        }
    }
    if (what != NULL)
        *what = last;
    return changed;
}

void cmi_watch_destroy(cmi_watch_t *w)
{
    if (w == NULL)
        return;
    close(w->fd);
    free(w->dir);
    free(w);
}
