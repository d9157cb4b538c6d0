/* `cmi run --watch`: changes under the deployment folder (watch.c). */
#ifndef CMI_WATCH_H
#define CMI_WATCH_H

#include <stddef.h>

typedef struct cmi_watch cmi_watch_t;

/* Watches dir and its folders.  NULL with err when inotify refuses. */
cmi_watch_t *cmi_watch_create(const char *dir, char *err, size_t errlen);
/* Readable when something changed. */
int cmi_watch_fd(const cmi_watch_t *w);
/* Reads the events at hand: 1 when a change asks for a reload (*what: the
 * last name changed, for the log), 0 when none does. */
int cmi_watch_read(cmi_watch_t *w, const char **what);
/* Also watches the folders made since (after a reload). */
void cmi_watch_rescan(cmi_watch_t *w);
void cmi_watch_destroy(cmi_watch_t *w);

#endif
