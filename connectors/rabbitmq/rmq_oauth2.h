/* OAuth2 tokens for one connection config (rmq_oauth2.c). WORK IN PROGRESS. */
#ifndef RMQ_OAUTH2_H
#define RMQ_OAUTH2_H

#include "rmq_core.h"

typedef struct rmq_oauth2 rmq_oauth2_t;

typedef struct {
    const char *endpoint;
    int grant; /* RMQ_GRANT_* */
    const char *client_id, *client_secret;
    const char *user, *password; /* the password grant's */
    const char *ca_file;         /* the endpoint's trust (NULL: the system's) */
} rmq_oauth2_conf_t;

/* A new token is there (the token thread; keep it short: interrupt the pool). */
typedef void (*rmq_oauth2_changed_fn)(void *arg);

/* Load-time rules of oAuth2Enabled (p's tokenEndpoint, client, grant). */
int rmq_oauth2_check(const rmq_init_params_t *p, char *err, size_t n);

rmq_oauth2_t *rmq_oauth2_create(const cmi_host_t *host, const char *component, const rmq_oauth2_conf_t *conf,
                                rmq_oauth2_changed_fn changed, void *arg, char *err, size_t n);
/* No more fetches and no more changed() calls once it returns; the token
 * stays readable until rmq_oauth2_destroy(). */
void rmq_oauth2_stop(rmq_oauth2_t *o);
void rmq_oauth2_destroy(rmq_oauth2_t *o);

/* Any thread: the current token (0), its generation and expiry (rmq_now()
 * ms); -1 with why when there is none that has not expired, -2 while the
 * first answer of the endpoint is still to come. */
int rmq_oauth2_current(rmq_oauth2_t *o, char *buf, size_t n, unsigned *gen, int64_t *expires_at, char *why,
                       size_t why_n);

/* Any thread: the generation of the newest token (0: none yet). */
unsigned rmq_oauth2_gen(rmq_oauth2_t *o);

#endif
