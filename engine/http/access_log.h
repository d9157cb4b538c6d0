/* The access log (docs/operations.md, "Access log"): a line per HTTP and
 * HTTPS request, formatted by h2o's log formatter (h2o_logconf_compile,
 * h2o_log_request) and written by cmi to standard error (the same file
 * description as its own log, so lines never overwrite each other) or to
 * a file opened for appending. */
#ifndef CMI_HTTP_ACCESS_LOG_H
#define CMI_HTTP_ACCESS_LOG_H

#include <h2o.h>

#include "engine.h"

/* Adds the logger settings->access_log asks for (none when NULL) to
 * path.  Returns 0, or -1 with the reason in err. */
int cmi_access_log_register(h2o_pathconf_t *path, const cmi_settings_t *settings, char *err, size_t errlen);

#endif
