/* Load-time diagnostics: every problem found while loading a deployment is
 * printed as `file:line: error: message` (or `warning:`), gcc style, so
 * editors and CI logs can jump to it.  Loading goes on after an error to
 * report as many as it can; the caller decides from the count. */
#ifndef CMI_CONFIG_DIAG_H
#define CMI_CONFIG_DIAG_H

#include <stddef.h>
#include <stdio.h>

typedef struct cmi_diag {
    FILE *out; /* where lines go (stderr); NULL: count only */
    size_t errors;
    size_t warnings;
} cmi_diag_t;

void cmi_diag_init(cmi_diag_t *d, FILE *out);
void cmi_diag_error(cmi_diag_t *d, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void cmi_diag_warn(cmi_diag_t *d, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An error with a column: file:line:col: error: message. */
void cmi_diag_error_at(cmi_diag_t *d, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
