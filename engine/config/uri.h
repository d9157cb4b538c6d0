/* What an artifact names by URI and cmi reads once, at load: file:PATH
 * (relative to the deployment folder when not absolute; MI reads it
 * relative to its home) and http(s): (10 s at most).  Used by
 * <publishWSDL uri> and <localEntry src>. */
#ifndef CMI_CONFIG_URI_H
#define CMI_CONFIG_URI_H

#include <stddef.h>

#include "config/compile.h"

/* Whether uri has a scheme cmi reads (file:, http:, https:). */
int cmi_uri_readable(const char *uri);
/* The whole content, malloc'd (NUL-terminated, *len without it), or NULL
 * with a reason in err (not found, larger than max bytes, an HTTP status
 * other than 200, ...). */
char *cmi_uri_read(cmi_compile_t *cc, const char *uri, size_t max, size_t *len, char *err, size_t errlen);

#endif
