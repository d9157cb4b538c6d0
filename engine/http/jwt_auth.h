/* The JWT handler on APIs: cmi.security.JwtAuthHandler, and
 * io.integon.JwtAuthHandler (the third-party handler MI users add) with
 * that handler's properties (docs/configuration.md, "JWT handler").
 *
 * A request without a valid bearer token is answered 401 before the flow
 * runs: WWW-Authenticate: Bearer (RFC 6750, with error="invalid_token"
 * when a token was sent) and the integon handler's JSON body
 * {"status": 401, "message": "..."}.  A token lacking a resource's scopes
 * gets 403 with error="insufficient_scope".  The verified claims reach
 * the flow as the variable "jwt" (JSON) and, with forwardToken, as the
 * property X-JWT (the payload's JSON text), as the integon handler sets.
 *
 * Keys: JWKS documents from files (read at load) or URLs (fetched by one
 * thread with libcurl, never by a worker: a key set not fetched yet
 * answers 503; an unknown kid asks for a refresh, at most one per
 * jwksMinRefreshInterval), and an HMAC secret from the secret store.
 * Verdicts are cached per worker by token (until exp, at most a minute),
 * so a client reusing its token pays the signature once; with jtiClaim a
 * token is good once (a replay store shared by the workers). */
#ifndef CMI_HTTP_JWT_AUTH_H
#define CMI_HTTP_JWT_AUTH_H

#include <h2o.h>
#include <jansson.h>

#include "http/jwt.h"
#include "http/jwt_conf.h"

typedef struct cmi_worker cmi_worker_t;
struct cmi_api;
struct cmi_resource;

typedef struct cmi_jwt_auth cmi_jwt_auth_t;

/* confs: every API's handler configuration (their slot fields are set
 * here).  Starts the key fetcher when one has URLs.  NULL with err. */
cmi_jwt_auth_t *cmi_jwt_auth_create(cmi_jwt_conf_t **confs, size_t nconfs, unsigned nworkers, char *err,
                                    size_t errlen);
/* Waits at most timeout_ms for the first fetch of every JWKS endpoint to
 * end.  0, or -1 when one had not. */
int cmi_jwt_auth_wait_keys(cmi_jwt_auth_t *a, uint64_t timeout_ms);
/* After the workers have stopped. */
void cmi_jwt_auth_destroy(cmi_jwt_auth_t *a);

/* A good token's claims, as the verdict cache holds them: the JSON
 * (shared, never changed: jansson's reference counts are atomic) and,
 * with forwardToken, its compact text for X-JWT. */
typedef struct {
    json_t *json;
    const char *text;
} cmi_jwt_claims_t;

/* Worker thread w.  0 and *claims (borrowed until this worker's next
 * check) when the token is good; -1 when the request was answered. */
int cmi_jwt_auth_check(cmi_jwt_auth_t *a, cmi_worker_t *w, h2o_req_t *req, const struct cmi_api *api,
                       const cmi_jwt_claims_t **claims);

/* The claims into the message: variable "jwt" and, with forwardToken,
 * property X-JWT. */
struct cmi_msg;
void cmi_jwt_auth_to_msg(struct cmi_msg *msg, const cmi_jwt_claims_t *claims);

/* 0 when claims grant what resource needs, else answers 403 and -1. */
int cmi_jwt_auth_scopes(h2o_req_t *req, const struct cmi_api *api, const char *pattern,
                        const cmi_jwt_claims_t *claims);

#endif
