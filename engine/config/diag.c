#include "config.h"

#include "config/diag.h"

#include <stdarg.h>

void cmi_diag_init(cmi_diag_t *d, FILE *out)
{
    d->out = out;
    d->errors = 0;
    d->warnings = 0;
}

static void emit(cmi_diag_t *d, const char *kind, const char *file, int line, int col, const char *fmt,
                 va_list ap)
{
    if (d->out == NULL)
        return;
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (line > 0 && col > 0)
        fprintf(d->out, "%s:%d:%d: %s: %s\n", file, line, col, kind, msg);
    else if (line > 0)
        fprintf(d->out, "%s:%d: %s: %s\n", file, line, kind, msg);
    else
        fprintf(d->out, "%s: %s: %s\n", file, kind, msg);
    fflush(d->out);
}

void cmi_diag_error(cmi_diag_t *d, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(d, "error", file, line, 0, fmt, ap);
    va_end(ap);
    d->errors++;
}

void cmi_diag_error_at(cmi_diag_t *d, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(d, "error", file, line, col, fmt, ap);
    va_end(ap);
    d->errors++;
}

void cmi_diag_warn(cmi_diag_t *d, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(d, "warning", file, line, 0, fmt, ap);
    va_end(ap);
    d->warnings++;
}
