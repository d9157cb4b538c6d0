/* A JWT handler's configuration, as the loader compiles it from the
 * handler's properties (config/jwt_handler.c) and the checker reads it
 * (http/jwt_auth.c). */
#ifndef CMI_HTTP_JWT_CONF_H
#define CMI_HTTP_JWT_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "http/jwt.h"

#define CMI_JWT_MAX_SOURCES 8 /* JWKS documents per handler */

typedef struct {
    const char *pattern; /* a resource's uri-template or url-mapping, as written */
    const char *scopes;  /* space-separated */
} cmi_jwt_resource_scopes_t;

/* One handler's configuration (config arena). */
typedef struct cmi_jwt_conf {
    const char *header; /* jwtHeader */
    cmi_jwt_policy_t policy;
    int forward; /* forwardToken */
    const char *scopes; /* required on every resource, or NULL */
    const cmi_jwt_resource_scopes_t *resource_scopes;
    size_t nresource_scopes;
    const char *urls[CMI_JWT_MAX_SOURCES]; /* http(s) JWKS endpoints */
    size_t nurls;
    cmi_jwt_keyset_t *file_keys; /* the keys of jwksEndpoint files, read at load (the config holds a reference) */
    const unsigned char *hmac;   /* hmacSecret */
    size_t hmac_len;
    int64_t ttl;          /* jwksTimeout: seconds a fetched key set is trusted */
    int64_t refresh;      /* jwksRefreshTime: seconds between fetches */
    int64_t min_refresh;  /* jwksMinRefreshInterval: seconds between fetches asked by unknown kids */
    const char *ca_file;  /* jwksCaFile: the trust for https endpoints (else the system's) */
    size_t slot;          /* the handler's index in the engine's checker */
} cmi_jwt_conf_t;

/* The scopes a resource needs (the handler's for all, then its own). */
const char *cmi_jwt_scopes_for(const cmi_jwt_conf_t *conf, const char *pattern);

#endif
