/* MI's basic authentication handler for APIs
 * (org.wso2.micro.integrator.security.handler.RESTBasicAuthHandler in an
 * API's <handlers>): the request's credentials against cmi's users (the
 * server config's <users>, docs/configuration.md, "Users").
 *
 * As MI: no Authorization header: 401 with WWW-Authenticate: Basic
 * realm="WSO2 EI" and no body; wrong credentials: 403, no body.  Beyond
 * MI: a header that is not Basic credentials (another scheme, bad base64,
 * no ':', oversized) gets the 401 too, where MI fails with a 500.
 *
 * Password hashes are crypt(3) strings, and checking one costs
 * milliseconds (yescrypt ~50 ms), so it never runs on a worker's loop:
 * one verifier thread checks, and each worker keeps the verdicts in a
 * small cache of its own (keyed by a keyed hash of the credentials, good
 * ones for a minute, wrong ones for seconds), so the hash's cost is paid
 * once per client credentials, not per request. */
#ifndef CMI_HTTP_BASIC_AUTH_H
#define CMI_HTTP_BASIC_AUTH_H

#include <h2o.h>
#include <stddef.h>

typedef struct cmi_worker cmi_worker_t;

typedef struct cmi_user {
    const char *name;
    const char *hash;  /* crypt(3): $y$ (yescrypt) or $6$ (SHA-512) */
    const char *roles; /* comma-separated as written; the handler does not check them (MI does not) */
} cmi_user_t;

/* NULL when hash is a crypt(3) string cmi takes, else why not. */
const char *cmi_user_hash_problem(const char *hash);

typedef struct cmi_basic_auth cmi_basic_auth_t;

/* users must outlive the checker.  Starts the verifier thread; NULL with
 * a message in err when it cannot. */
cmi_basic_auth_t *cmi_basic_auth_create(const cmi_user_t *users, size_t nusers, unsigned nworkers, char *err,
                                        size_t errlen);
/* After the workers have stopped. */
void cmi_basic_auth_destroy(cmi_basic_auth_t *a);
/* Any thread (a reload): the users from now on; the verdicts cached for
 * the ones before are void.  The ones before must stay allocated (a check
 * under way may read them). */
void cmi_basic_auth_set_users(cmi_basic_auth_t *a, const cmi_user_t *users, size_t nusers);

enum {
    CMI_AUTH_PASS = 0, /* good credentials (cached): go on now */
    CMI_AUTH_ANSWERED, /* refused: the answer is sent */
    CMI_AUTH_PENDING   /* being verified: proceed(req, arg) runs later on w if they are good and req is alive */
};

/* Worker thread w.  api: the API's name, for the debug log. */
int cmi_basic_auth_check(cmi_basic_auth_t *a, cmi_worker_t *w, h2o_req_t *req, const char *api,
                         void (*proceed)(h2o_req_t *req, void *arg), void *arg);

#endif
