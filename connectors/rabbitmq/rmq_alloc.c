/* The connector's one out-of-memory policy, the engine's: an allocation
 * that fails ends the process (abort), so no caller carries a failure
 * path that is never tested.  Every allocation of the connector goes
 * through these. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq.h"

static void *checked(void *p)
{
    if (p == NULL)
        abort();
    return p;
}

void *rmq_xmalloc(size_t size)
{
    return checked(malloc(size ? size : 1));
}

void *rmq_xcalloc(size_t count, size_t size)
{
    return checked(calloc(count ? count : 1, size ? size : 1));
}

void *rmq_xrealloc(void *p, size_t size)
{
    return checked(realloc(p, size ? size : 1));
}

char *rmq_xstrdup(const char *s)
{
    return checked(strdup(s ? s : ""));
}

char *rmq_xstrndup(const char *s, size_t n)
{
    return checked(strndup(s, n));
}

char *rmq_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (rc < 0)
        abort();
    return s;
}

char *rmq_dup_or_null(const char *s)
{
    return s != NULL ? rmq_xstrdup(s) : NULL;
}
