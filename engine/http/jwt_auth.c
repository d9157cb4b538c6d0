#include "config.h"

#include "http/jwt_auth.h"

#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config/config.h"
#include "core/arena.h"
#include "core/log.h"
#include "http/answer.h"
#include "http/jwks_fetch.h"
#include "runtime/msg.h"
#include "runtime/worker.h"

#define CACHE_SLOTS 1024 /* per worker */
#define GOOD_TTL_S 60    /* a verdict is re-checked after this, or at exp if sooner */
#define BAD_TTL_S 5
#define REPLAY_MAX 65536 /* jti values remembered (until their token's exp) */
#define REPLAY_LIFE_MAX (24 * 3600) /* with jtiClaim, a token may live this long at most */

/* A verdict on one token for one handler. */
typedef struct {
    char *token; /* malloc'd copy; NULL: empty */
    size_t len;
    size_t slot;   /* the handler */
    int64_t until; /* wall-clock seconds */
    cmi_jwt_claims_t claims; /* json NULL: the token was refused (why) */
    const char *why;
    cmi_jwt_result_t rc;
} verdict_t;

typedef struct {
    verdict_t cache[CACHE_SLOTS];
    cmi_jwt_keyset_t **held; /* per endpoint: this worker's reference */
    unsigned *gens;
} worker_state_t;

typedef struct {
    unsigned char digest[16]; /* SHA-256 of handler slot and jti, cut */
    int64_t exp;              /* 0: empty */
} replay_entry_t;

struct cmi_jwt_auth {
    cmi_jwt_conf_t **confs;
    size_t nconfs;
    size_t (*endpoints)[CMI_JWT_MAX_SOURCES]; /* per handler: its endpoints' indexes */
    cmi_jwks_t *jwks;
    worker_state_t *workers;
    unsigned nworkers;
    pthread_mutex_t replay_lock;
    replay_entry_t *replay; /* 2 * REPLAY_MAX slots, linear probing */
    size_t replay_count;
    int64_t replay_purged_at; /* a full store is purged at most once a second */
    uint64_t seed; /* random: where a token's verdict goes cannot be aimed at */
    EVP_MD *sha256;
};

static int64_t wall_now(void)
{
    return (int64_t)time(NULL);
}

const char *cmi_jwt_scopes_for(const cmi_jwt_conf_t *conf, const char *pattern)
{
    for (size_t i = 0; pattern != NULL && i < conf->nresource_scopes; i++)
        if (strcmp(conf->resource_scopes[i].pattern, pattern) == 0)
            return conf->resource_scopes[i].scopes;
    return NULL;
}

/* ---- create / destroy ---------------------------------------------------- */

cmi_jwt_auth_t *cmi_jwt_auth_create(cmi_jwt_conf_t **confs, size_t nconfs, unsigned nworkers, char *err,
                                    size_t errlen)
{
    cmi_jwt_auth_t *a = cmi_xcalloc(1, sizeof(*a));
    pthread_mutex_init(&a->replay_lock, NULL);
    a->confs = confs;
    a->nconfs = nconfs;
    a->nworkers = nworkers;
    a->jwks = cmi_jwks_create();
    a->endpoints = cmi_xcalloc(nconfs ? nconfs : 1, sizeof(*a->endpoints));
    for (size_t i = 0; i < nconfs; i++) {
        confs[i]->slot = i;
        for (size_t k = 0; k < confs[i]->nurls; k++) {
            cmi_jwks_endpoint_t e = {confs[i]->urls[k], confs[i]->ca_file, confs[i]->ttl, confs[i]->refresh,
                                     confs[i]->min_refresh};
            a->endpoints[i][k] = cmi_jwks_add(a->jwks, &e);
            if (a->endpoints[i][k] == SIZE_MAX) {
                snprintf(err, errlen, "more than %d distinct JWKS endpoints in the deployment (docs/limits.md)",
                         CMI_JWKS_MAX_ENDPOINTS);
                a->nworkers = 0; /* no worker state yet */
                cmi_jwt_auth_destroy(a);
                return NULL;
            }
        }
    }
    size_t n = cmi_jwks_count(a->jwks);
    a->workers = cmi_xcalloc(nworkers, sizeof(*a->workers));
    for (unsigned w = 0; w < nworkers; w++) {
        a->workers[w].held = cmi_xcalloc(n ? n : 1, sizeof(cmi_jwt_keyset_t *));
        a->workers[w].gens = cmi_xcalloc(n ? n : 1, sizeof(unsigned));
    }
    a->replay = cmi_xcalloc(2 * REPLAY_MAX, sizeof(replay_entry_t));
    a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (RAND_bytes((unsigned char *)&a->seed, sizeof(a->seed)) != 1)
        a->seed = (uint64_t)time(NULL) * 2654435761u;
    if (a->sha256 == NULL || cmi_jwks_start(a->jwks, err, errlen) != 0) {
        if (a->sha256 == NULL)
            snprintf(err, errlen, "OpenSSL has no SHA-256");
        cmi_jwt_auth_destroy(a);
        return NULL;
    }
    return a;
}

static void verdict_clear(verdict_t *v)
{
    free(v->token);
    json_decref(v->claims.json);
    free((char *)v->claims.text);
    memset(v, 0, sizeof(*v));
}

int cmi_jwt_auth_wait_keys(cmi_jwt_auth_t *a, uint64_t timeout_ms)
{
    return cmi_jwks_wait_first(a->jwks, timeout_ms);
}

void cmi_jwt_auth_destroy(cmi_jwt_auth_t *a)
{
    if (a == NULL)
        return;
    size_t n = cmi_jwks_count(a->jwks);
    cmi_jwks_destroy(a->jwks); /* joins the fetcher */
    for (unsigned w = 0; a->workers != NULL && w < a->nworkers; w++) {
        for (size_t i = 0; i < CACHE_SLOTS; i++)
            verdict_clear(&a->workers[w].cache[i]);
        for (size_t i = 0; i < n; i++)
            cmi_jwt_keyset_unref(a->workers[w].held[i]);
        free(a->workers[w].held);
        free(a->workers[w].gens);
    }
    free(a->workers);
    free(a->endpoints);
    free(a->replay);
    EVP_MD_free(a->sha256);
    pthread_mutex_destroy(&a->replay_lock);
    free(a);
}

/* ---- answers --------------------------------------------------------------- */

/* 401 as the integon handler answers (its JSON body), with RFC 6750's
 * challenge: no error code when no token was sent. */
static int unauthorized(h2o_req_t *req, const struct cmi_api *api, int had_token, const char *why)
{
    char host[NI_MAXHOST];
    if (cmi_log_enabled(CMI_LOG_DEBUG))
        cmi_log_debug("http", "API %s: refused a request from %s: %s (401)", api->name,
                      cmi_http_peer(req, host, sizeof(host)), why);
    static const char bare[] = "Bearer realm=\"cmi\"";
    static const char invalid[] = "Bearer realm=\"cmi\", error=\"invalid_token\"";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, had_token ? invalid : bare,
                   had_token ? sizeof(invalid) - 1 : sizeof(bare) - 1);
    json_t *body = json_pack("{s:i,s:s}", "status", 401, "message", why);
    char *text = json_dumps(body, JSON_COMPACT);
    size_t len = strlen(text);
    char *copy = h2o_mem_alloc_pool(&req->pool, len);
    memcpy(copy, text, len);
    free(text);
    json_decref(body);
    cmi_http_answer(req, 401, "application/json", copy, len);
    return -1;
}

static int unavailable(h2o_req_t *req, const char *why)
{
    cmi_log_debug("http", "refused a request: %s (503)", why);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    static const char body[] = "{\"status\":503,\"message\":\"the keys to check tokens are not available yet\"}";
    cmi_http_answer(req, 503, "application/json", body, sizeof(body) - 1);
    return -1;
}

int cmi_jwt_auth_scopes(h2o_req_t *req, const struct cmi_api *api, const char *pattern,
                        const cmi_jwt_claims_t *jc)
{
    const json_t *claims = jc->json;
    const cmi_jwt_conf_t *c = api->jwt;
    const char *all = c->scopes, *own = cmi_jwt_scopes_for(c, pattern);
    if ((all == NULL || cmi_jwt_has_scopes(claims, all)) && (own == NULL || cmi_jwt_has_scopes(claims, own)))
        return 0;
    char host[NI_MAXHOST];
    if (cmi_log_enabled(CMI_LOG_DEBUG))
        cmi_log_debug("http", "API %s: refused a request from %s: the token lacks a scope the resource needs (403)",
                      api->name, cmi_http_peer(req, host, sizeof(host)));
    /* All the resource needs: the API's scopes and its own. */
    size_t cap = (all != NULL ? strlen(all) : 0) + (own != NULL ? strlen(own) : 0) + 80;
    char *challenge = h2o_mem_alloc_pool(&req->pool, cap);
    int n = snprintf(challenge, cap, "Bearer realm=\"cmi\", error=\"insufficient_scope\", scope=\"%s%s%s\"",
                     all != NULL ? all : "", all != NULL && own != NULL ? " " : "", own != NULL ? own : "");
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, challenge, (size_t)n);
    static const char body[] = "{\"status\":403,\"message\":\"the token lacks a scope this resource needs\"}";
    cmi_http_answer(req, 403, "application/json", body, sizeof(body) - 1);
    return -1;
}

/* ---- the replay store ------------------------------------------------------ */

/* Drops the entries whose tokens have expired (the table is rebuilt). */
static void replay_purge(cmi_jwt_auth_t *a, int64_t now)
{
    replay_entry_t *old = a->replay;
    a->replay = cmi_xcalloc(2 * REPLAY_MAX, sizeof(replay_entry_t));
    a->replay_count = 0;
    for (size_t i = 0; i < 2 * REPLAY_MAX; i++) {
        if (old[i].exp <= now)
            continue;
        uint64_t h;
        memcpy(&h, old[i].digest, sizeof(h));
        size_t k = h % (2 * REPLAY_MAX);
        while (a->replay[k].exp != 0)
            k = (k + 1) % (2 * REPLAY_MAX);
        a->replay[k] = old[i];
        a->replay_count++;
    }
    free(old);
}

/* 0: first use (now remembered while the token is good); 1: replayed; -1: the store is
 * full of unexpired tokens. */
static int replay_seen(cmi_jwt_auth_t *a, size_t slot, const json_t *claims, int64_t now, int64_t skew)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    const char *jti = json_string_value(json_object_get(claims, "jti"));
    int64_t exp = (int64_t)json_number_value(json_object_get(claims, "exp"));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex2(ctx, a->sha256, NULL) && EVP_DigestUpdate(ctx, &slot, sizeof(slot)) &&
             EVP_DigestUpdate(ctx, jti, strlen(jti)) && EVP_DigestFinal_ex(ctx, d, NULL);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    pthread_mutex_lock(&a->replay_lock);
    if (a->replay_count >= REPLAY_MAX && a->replay_purged_at != now) {
        replay_purge(a, now);
        a->replay_purged_at = now;
    }
    int rc = -1;
    if (a->replay_count < REPLAY_MAX) {
        uint64_t h;
        memcpy(&h, d, sizeof(h));
        size_t k = h % (2 * REPLAY_MAX);
        rc = 0;
        for (; a->replay[k].exp != 0; k = (k + 1) % (2 * REPLAY_MAX))
            if (memcmp(a->replay[k].digest, d, 16) == 0 && a->replay[k].exp > now) {
                rc = 1;
                break;
            }
        if (rc == 0) {
            memcpy(a->replay[k].digest, d, 16);
            a->replay[k].exp = exp + skew + 1 > now ? exp + skew + 1 : now + 1; /* as long as exp lets it in */
            a->replay_count++;
        }
    }
    pthread_mutex_unlock(&a->replay_lock);
    return rc;
}

/* ---- the check --------------------------------------------------------------- */

/* The bearer token of the handler's header: 1 with it, 0 when the header
 * is absent or empty, -1 when it holds something else. */
static int bearer_token(h2o_req_t *req, const char *name, const char **tok, size_t *len)
{
    size_t nlen = strlen(name);
    const h2o_iovec_t *value = NULL;
    for (size_t i = 0; i < req->headers.size && value == NULL; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        if (h->name->len == nlen && strncasecmp(h->name->base, name, nlen) == 0)
            value = &h->value;
    }
    const char *p = value != NULL ? value->base : "", *end = value != NULL ? p + value->len : p;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (p == end)
        return 0;
    if (end - p < 8 || !h2o_lcstris(p, 6, "bearer", 6) || (p[6] != ' ' && p[6] != '\t'))
        return -1;
    for (p += 7; p < end && (*p == ' ' || *p == '\t'); p++)
        ;
    *tok = p;
    *len = (size_t)(end - p);
    return 1;
}

/* Picks the token's cache slot from its last bytes (the signature's, as
 * good as random), its length and the handler: hashing all of a token of
 * a kilobyte would cost more than the rest of a cached check.  A slot is
 * only a place: the whole token is compared. */
static uint64_t token_hash(uint64_t seed, const char *s, size_t n, size_t slot)
{
    size_t from = n > 48 ? n - 48 : 0;
    uint64_t h = (1469598103934665603ULL ^ seed ^ slot) * 1099511628211ULL ^ n; /* FNV-1a, seeded */
    for (size_t i = from; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Checks the token against the handler's keys and policy: the result in
 * *rc and *why, and kept in v when it cost a signature check.  Returns -2
 * when an endpoint's keys are not there yet (503). */
static int judge(cmi_jwt_auth_t *a, worker_state_t *ws, const cmi_jwt_conf_t *c, const char *tok, size_t len,
                 int64_t now, verdict_t *v, cmi_jwt_result_t *rc, const char **why)
{
    const cmi_jwt_keyset_t *sets[CMI_JWT_MAX_SOURCES + 1];
    size_t nsets = 0, missing = 0;
    if (c->file_keys != NULL)
        sets[nsets++] = c->file_keys;
    for (size_t k = 0; k < c->nurls; k++) {
        size_t e = a->endpoints[c->slot][k];
        cmi_jwks_get(a->jwks, e, &ws->held[e], &ws->gens[e]);
        if (ws->held[e] != NULL)
            sets[nsets++] = ws->held[e];
        else
            missing++;
    }
    cmi_jwt_keys_t keys = {sets, nsets, c->hmac, c->hmac_len};
    json_t *claims = NULL;
    *rc = cmi_jwt_verify(tok, len, &keys, &claims, why);
    if (*rc == CMI_JWT_UNKNOWN_KID || (*rc == CMI_JWT_ALG && missing > 0)) {
        for (size_t k = 0; k < c->nurls; k++)
            cmi_jwks_want_refresh(a->jwks, a->endpoints[c->slot][k]);
        if (missing > 0)
            return -2;
    }
    if (*rc == CMI_JWT_OK)
        *rc = cmi_jwt_check_claims(&c->policy, claims, now, why);
    /* Not kept: an unknown kid (a refresh may bring the key), and what is
     * refused before any signature is checked (cheap to refuse again: such
     * garbage does not take the cache's slots; a well-formed token with a
     * bad signature does, for BAD_TTL_S, as it cost a check). */
    if (*rc == CMI_JWT_UNKNOWN_KID || *rc == CMI_JWT_MALFORMED || *rc == CMI_JWT_ALG) {
        json_decref(claims);
        return 0;
    }
    verdict_clear(v);
    v->token = cmi_xmalloc(len);
    memcpy(v->token, tok, len);
    v->len = len;
    v->slot = c->slot;
    v->rc = *rc;
    v->why = *why;
    if (*rc == CMI_JWT_OK) {
        int64_t exp = (int64_t)json_number_value(json_object_get(claims, "exp")) + c->policy.skew;
        if (c->policy.max_age > 0) { /* and no longer than iatClaim allows */
            int64_t old = (int64_t)json_number_value(json_object_get(claims, "iat")) + c->policy.max_age +
                          c->policy.skew + 1;
            exp = old < exp ? old : exp;
        }
        v->claims.json = claims;
        v->claims.text = c->forward ? json_dumps(claims, JSON_COMPACT) : NULL;
        v->until = exp < now + GOOD_TTL_S ? exp : now + GOOD_TTL_S;
    } else {
        json_decref(claims);
        v->until = now + BAD_TTL_S;
    }
    return 0;
}

int cmi_jwt_auth_check(cmi_jwt_auth_t *a, cmi_worker_t *w, h2o_req_t *req, const struct cmi_api *api,
                       const cmi_jwt_claims_t **claims)
{
    const cmi_jwt_conf_t *c = api->jwt;
    const char *tok = NULL;
    size_t len = 0;
    int found = bearer_token(req, c->header, &tok, &len);
    if (found <= 0) /* RFC 6750 3.1: another scheme is no token, so no error code */
        return unauthorized(req, api, 0, found < 0 ? "Invalid JWT token format"
                                                   : "JWT token not found in the message");
    if (len > CMI_JWT_MAX_TOKEN)
        return unauthorized(req, api, 1, "the token is too large");
    int64_t now = wall_now();
    worker_state_t *ws = &a->workers[w->index];
    verdict_t *v = &ws->cache[token_hash(a->seed, tok, len, c->slot) % CACHE_SLOTS];
    cmi_jwt_result_t rc = v->rc;
    const char *why = v->why;
    if (v->token == NULL || v->slot != c->slot || v->len != len || v->until <= now ||
        CRYPTO_memcmp(v->token, tok, len) != 0) /* no timing tells how much of a cached token matched */
        if (judge(a, ws, c, tok, len, now, v, &rc, &why) == -2)
            return unavailable(req, "a JWKS endpoint has not been fetched yet");
    if (rc != CMI_JWT_OK)
        return unauthorized(req, api, 1, why);
    if (c->policy.jti &&
        (int64_t)json_number_value(json_object_get(v->claims.json, "exp")) - now > REPLAY_LIFE_MAX)
        /* Its jti would hold a place in the store for longer than a day. */
        return unauthorized(req, api, 1, "with jtiClaim a token may live 24 hours at most");
    if (c->policy.jti) {
        int seen = replay_seen(a, c->slot, v->claims.json, now, c->policy.skew);
        if (seen != 0)
            return seen > 0 ? unauthorized(req, api, 1, "the token was used before (jti)")
                            : unavailable(req, "the jti replay store is full");
    }
    *claims = &v->claims;
    return 0;
}

void cmi_jwt_auth_to_msg(struct cmi_msg *msg, const cmi_jwt_claims_t *claims)
{
    cmi_value_t v = {.type = CMI_VAL_JSON, .u.json = cmi_msg_own_json(msg, json_incref(claims->json))};
    cmi_msg_var_set(msg, "jwt", v);
    if (claims->text != NULL)
        cmi_msg_prop_set(msg, CMI_SCOPE_DEFAULT, "X-JWT", cmi_value_cstring(cmi_arena_strdup(msg->arena,
                                                                                            claims->text)));
}
