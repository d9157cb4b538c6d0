/* Endpoints at run time (runtime/endpoint.c). */
#ifndef CMI_RUNTIME_ENDPOINT_H
#define CMI_RUNTIME_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "config/endpoint.h"

/* Which leaves of one call's endpoint were tried (zeroed for a new call). */
typedef struct {
    size_t attempts; /* leaves tried */
    size_t next;     /* group: the next child to consider */
    size_t first;    /* loadbalance: where the round started */
    /* A loadbalance group with a client session: the message's client ID
     * (NULL: none; the round-robin choice). */
    const char *session;
} cmi_endpoint_cursor_t;

/* Its name, or file:line when inline. */
const char *cmi_endpoint_name(const cmi_endpoint_t *ep);
/* The next leaf of top to try, or NULL when none is left (or none is ready). */
const cmi_endpoint_t *cmi_endpoint_pick(const cmi_endpoint_t *top, cmi_endpoint_cursor_t *cursor);
/* A leaf answered with status after latency_ns: active again. */
void cmi_endpoint_ok(const cmi_endpoint_t *leaf, long status, uint64_t latency_ns);
/* Whether the group of leaf tries another child after it failed with code
 * (<retryConfig>). */
int cmi_endpoint_retries(const cmi_endpoint_t *leaf, int code);
/* A leaf failed with code after latency_ns: MI's rules decide on a suspension. */
void cmi_endpoint_failed(const cmi_endpoint_t *leaf, int code, uint64_t latency_ns);

#endif
