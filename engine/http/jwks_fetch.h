/* JWKS endpoints, fetched by one thread with libcurl so that a worker
 * never waits on a key server: each endpoint's key set is replaced when a
 * fetch brings a usable one, kept when a fetch fails (errors logged once
 * per failure streak, retries backing off to a minute), and dropped when
 * no fetch has succeeded for its ttl.  Workers read a key set through
 * cmi_jwks_get, and ask for an early fetch when a token names a kid no key
 * has (at most one per endpoint per min_refresh). */
#ifndef CMI_HTTP_JWKS_FETCH_H
#define CMI_HTTP_JWKS_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "http/jwt.h"

#define CMI_JWKS_MAX_BYTES (1024 * 1024) /* a larger document is refused */
#define CMI_JWKS_MAX_ENDPOINTS 64         /* distinct JWKS URLs in a deployment */

typedef struct cmi_jwks cmi_jwks_t;

typedef struct {
    const char *url;
    const char *ca_file; /* NULL: the system's trust */
    int64_t ttl, refresh, min_refresh; /* seconds */
} cmi_jwks_endpoint_t;

cmi_jwks_t *cmi_jwks_create(void);
/* Before cmi_jwks_start: the index of the endpoint (an endpoint added
 * twice with the same URL and trust is one, with the shorter times), or
 * SIZE_MAX past CMI_JWKS_MAX_ENDPOINTS distinct ones. */
size_t cmi_jwks_add(cmi_jwks_t *j, const cmi_jwks_endpoint_t *e);
size_t cmi_jwks_count(const cmi_jwks_t *j);
/* Starts the fetcher thread (when there is an endpoint); -1 with err. */
int cmi_jwks_start(cmi_jwks_t *j, char *err, size_t errlen);
void cmi_jwks_destroy(cmi_jwks_t *j);
/* Waits at most timeout_ms for every endpoint's first fetch to end (a
 * reload waits for its new checker's keys before it serves).  0 when they
 * all ended, -1 when one had not. */
int cmi_jwks_wait_first(cmi_jwks_t *j, uint64_t timeout_ms);

/* The endpoint's key set if *gen is not its generation: then the old one
 * in *held is released, the new one referenced there and *gen updated.
 * Cheap when nothing changed (one atomic load). */
void cmi_jwks_get(cmi_jwks_t *j, size_t idx, cmi_jwt_keyset_t **held, unsigned *gen);
/* A token named a kid no key of the endpoint has. */
void cmi_jwks_want_refresh(cmi_jwks_t *j, size_t idx);

#endif
