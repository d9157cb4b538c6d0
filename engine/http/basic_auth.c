#include "config.h"

#include "http/basic_auth.h"

#include <crypt.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h> /* EVP_DecodeBlock */
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/log.h"
#include "http/answer.h"
#include "runtime/worker.h"

#define REALM "Basic realm=\"WSO2 EI\"" /* MI's, literally */
#define MAX_USER 256
#define MAX_PASSWORD CRYPT_MAX_PASSPHRASE_SIZE
/* Base64 of the longest credentials, with room for spaces around. */
#define MAX_HEADER (16 + 4 * ((MAX_USER + 1 + MAX_PASSWORD + 2) / 3))
#define CACHE_SLOTS 1024           /* per worker, direct-mapped */
#define GOOD_TTL_MS (60 * 1000)    /* verified credentials */
#define WRONG_TTL_MS (5 * 1000)    /* a repeated wrong password costs one hash per 5 s */
#define MAX_QUEUED 256             /* verifications waiting; past it: 503 */

typedef struct {
    unsigned char key[SHA256_DIGEST_LENGTH];
    uint64_t expires; /* loop ms; 0: empty */
    int good;
    unsigned users_gen; /* the users it was judged against (a reload may change them) */
} cache_slot_t;

typedef struct job job_t;

/* Lives in the request's pool: tells the job when the request is gone. */
typedef struct {
    job_t *job;
} req_link_t;

struct job {
    cmi_task_t task; /* first: posted back to the worker */
    job_t *next;
    cmi_basic_auth_t *auth;
    cmi_worker_t *worker;
    h2o_req_t *req; /* NULL once h2o has disposed of the request (worker thread only) */
    req_link_t *link;
    void (*proceed)(h2o_req_t *req, void *arg);
    void *arg;
    const char *api;
    unsigned char key[SHA256_DIGEST_LENGTH];
    int good;
    unsigned users_gen;
    char user[MAX_USER + 1];
    char password[MAX_PASSWORD + 1];
};

struct cmi_basic_auth {
    const cmi_user_t *users; /* under lock (a reload replaces them) */
    size_t nusers;
    atomic_uint users_gen;   /* +1 when they are replaced: the verdicts cached before are void */
    unsigned nworkers;
    cache_slot_t *caches; /* nworkers * CACHE_SLOTS; a worker touches only its own */
    unsigned char secret[32]; /* keys the cache: a cache entry says nothing about a password */
    EVP_MD *sha256;
    EVP_MD_CTX **md_ctx; /* one per worker */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    job_t *head, *tail;
    size_t queued;
    int stop;
    uint64_t full_logged_at; /* under lock: one warning per second at most */
};

const char *cmi_user_hash_problem(const char *hash)
{
    if (strncmp(hash, "$y$", 3) != 0 && strncmp(hash, "$6$", 3) != 0)
        return "not a yescrypt ($y$) or SHA-512 ($6$) crypt(3) hash: cmi never keeps clear-text passwords (make "
               "one with: openssl passwd -6)";
    if (crypt_checksalt(hash) != CRYPT_SALT_OK || strchr(hash + 3, '$') == NULL)
        return "a malformed crypt(3) hash";
    return NULL;
}

/* ---- the verifier thread ------------------------------------------------- */

static const cmi_user_t *find_user(const cmi_user_t *users, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(users[i].name, name) == 0)
            return &users[i];
    return NULL;
}

/* An unknown user costs a hash too, so that timing does not tell which
 * names exist. */
static int verify(const cmi_user_t *users, size_t nusers, const char *user, const char *password, void *data,
                  int size)
{
    const cmi_user_t *u = find_user(users, nusers, user);
    const char *hash = u != NULL ? u->hash : nusers > 0 ? users[0].hash : "$6$cmi$";
    const char *out = crypt_rn(password, hash, data, size);
    size_t n = strlen(hash);
    return u != NULL && out != NULL && strlen(out) == n && CRYPTO_memcmp(out, hash, n) == 0;
}

static void on_verified(cmi_worker_t *w, cmi_task_t *task);

static void *verifier_main(void *arg)
{
    cmi_basic_auth_t *a = arg;
    struct crypt_data *data = cmi_xcalloc(1, sizeof(*data));
    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (a->head == NULL && !a->stop)
            pthread_cond_wait(&a->wake, &a->lock);
        if (a->stop)
            break;
        job_t *j = a->head;
        a->head = j->next;
        if (a->head == NULL)
            a->tail = NULL;
        a->queued--;
        const cmi_user_t *users = a->users; /* the caller keeps replaced ones (cmi_basic_auth_set_users) */
        size_t nusers = a->nusers;
        j->users_gen = atomic_load(&a->users_gen);
        pthread_mutex_unlock(&a->lock);
        j->good = verify(users, nusers, j->user, j->password, data, (int)sizeof(*data));
        OPENSSL_cleanse(j->password, sizeof(j->password));
        j->task.fn = on_verified;
        if (cmi_worker_post_task(j->worker, &j->task) != 0)
            free(j); /* the worker has finished: its request is gone */
        pthread_mutex_lock(&a->lock);
    }
    pthread_mutex_unlock(&a->lock);
    OPENSSL_cleanse(data, sizeof(*data));
    free(data);
    return NULL;
}

void cmi_basic_auth_set_users(cmi_basic_auth_t *a, const cmi_user_t *users, size_t nusers)
{
    pthread_mutex_lock(&a->lock);
    a->users = users;
    a->nusers = nusers;
    atomic_fetch_add(&a->users_gen, 1);
    pthread_mutex_unlock(&a->lock);
}

cmi_basic_auth_t *cmi_basic_auth_create(const cmi_user_t *users, size_t nusers, unsigned nworkers, char *err,
                                        size_t errlen)
{
    cmi_basic_auth_t *a = cmi_xcalloc(1, sizeof(*a));
    a->users = users;
    a->nusers = nusers;
    a->nworkers = nworkers;
    a->caches = cmi_xcalloc((size_t)nworkers * CACHE_SLOTS, sizeof(cache_slot_t));
    a->md_ctx = cmi_xcalloc(nworkers, sizeof(*a->md_ctx));
    if (RAND_bytes(a->secret, sizeof(a->secret)) != 1) {
        snprintf(err, errlen, "basic authentication: no random bytes for its cache key");
        goto fail;
    }
    if ((a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
        snprintf(err, errlen, "basic authentication: OpenSSL has no SHA-256");
        goto fail;
    }
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->wake, NULL);
    int rc = pthread_create(&a->thread, NULL, verifier_main, a);
    if (rc == 0)
        return a;
    snprintf(err, errlen, "basic authentication: cannot start its thread: %s", strerror(rc));
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
fail:
    EVP_MD_free(a->sha256);
    free(a->md_ctx);
    free(a->caches);
    free(a);
    return NULL;
}

void cmi_basic_auth_destroy(cmi_basic_auth_t *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    a->stop = 1;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    /* Jobs still queued belong to requests the drain has closed. */
    for (job_t *j = a->head, *next; j != NULL; j = next) {
        next = j->next;
        OPENSSL_cleanse(j->password, sizeof(j->password));
        free(j);
    }
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
    OPENSSL_cleanse(a->secret, sizeof(a->secret));
    OPENSSL_cleanse(a->caches, (size_t)a->nworkers * CACHE_SLOTS * sizeof(cache_slot_t));
    free(a->caches);
    for (unsigned i = 0; i < a->nworkers; i++)
        EVP_MD_CTX_free(a->md_ctx[i]);
    free(a->md_ctx);
    EVP_MD_free(a->sha256);
    free(a);
}

/* ---- the worker's side --------------------------------------------------- */

static cache_slot_t *slot_of(cmi_basic_auth_t *a, cmi_worker_t *w, const unsigned char *key)
{
    uint32_t h;
    memcpy(&h, key, sizeof(h));
    return &a->caches[(size_t)w->index * CACHE_SLOTS + h % CACHE_SLOTS];
}

static void remember(cmi_basic_auth_t *a, cmi_worker_t *w, const unsigned char *key, int good, unsigned users_gen)
{
    cache_slot_t *s = slot_of(a, w, key);
    memcpy(s->key, key, sizeof(s->key));
    s->good = good;
    s->users_gen = users_gen;
    s->expires = h2o_now(w->loop) + (good ? GOOD_TTL_MS : WRONG_TTL_MS);
}

/* 1 good, 0 wrong, -1 not known. */
static int recall(cmi_basic_auth_t *a, cmi_worker_t *w, const unsigned char *key)
{
    cache_slot_t *s = slot_of(a, w, key);
    if (s->expires == 0 || s->expires <= h2o_now(w->loop) || s->users_gen != atomic_load(&a->users_gen) ||
        CRYPTO_memcmp(s->key, key, sizeof(s->key)) != 0)
        return -1;
    return s->good;
}

/* SHA-256 of the secret, the user, a NUL and the password, with the
 * digest fetched once and a context per worker: OpenSSL 3 fetches the
 * algorithm on each one-shot call, which costs more than the hash. */
static void cache_key(cmi_basic_auth_t *a, cmi_worker_t *w, const char *user, const char *password,
                      unsigned char *key)
{
    EVP_MD_CTX **c = &a->md_ctx[w->index];
    if (*c == NULL)
        *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex2(*c, a->sha256, NULL);
    EVP_DigestUpdate(*c, a->secret, sizeof(a->secret));
    EVP_DigestUpdate(*c, user, strlen(user) + 1); /* the NUL separates the two */
    EVP_DigestUpdate(*c, password, strlen(password));
    EVP_DigestFinal_ex(*c, key, NULL);
}

static int refuse(h2o_req_t *req, int status)
{
    if (status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT(REALM));
    return cmi_http_answer(req, status, NULL, "", 0);
}

static void log_refusal(h2o_req_t *req, const char *api, const char *why)
{
    char host[NI_MAXHOST];
    if (cmi_log_enabled(CMI_LOG_DEBUG))
        cmi_log_debug("http", "API %s: refused a request from %s: %s", api, cmi_http_peer(req, host, sizeof(host)),
                      why);
}

static void on_link_dispose(void *p)
{
    req_link_t *l = p;
    if (l->job != NULL)
        l->job->req = NULL;
}

static void on_verified(cmi_worker_t *w, cmi_task_t *task)
{
    job_t *j = (job_t *)task;
    remember(j->auth, w, j->key, j->good, j->users_gen);
    if (j->req != NULL) {
        j->link->job = NULL;
        if (j->good) {
            j->proceed(j->req, j->arg);
        } else {
            log_refusal(j->req, j->api, "wrong user name or password (403)");
            refuse(j->req, 403);
        }
    }
    free(j);
}

static int is_base64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Strict base64 of the header's credentials into out (NUL-terminated).
 * Returns the decoded length, or -1. */
static int decode_credentials(const char *b64, size_t n, char *out, size_t outsize)
{
    if (n == 0 || n % 4 != 0 || (n / 4) * 3 + 1 > outsize)
        return -1;
    size_t pad = 0;
    while (pad < 2 && b64[n - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++)
        if (!is_base64(b64[i]))
            return -1;
    int len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)b64, (int)n);
    if (len < 0)
        return -1;
    len -= (int)pad;
    out[len] = '\0';
    return len;
}

/* "Basic <base64 of user:password>" into user and password.  0, or -1 for
 * anything else. */
static int parse_basic(const char *v, size_t n, char *user, char *password)
{
    while (n > 0 && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n < 6 || n > MAX_HEADER || strncasecmp(v, "Basic", 5) != 0 || (v[5] != ' ' && v[5] != '\t'))
        return -1;
    v += 6, n -= 6;
    while (n > 0 && (*v == ' ' || *v == '\t'))
        v++, n--;
    char plain[MAX_HEADER];
    int len = decode_credentials(v, n, plain, sizeof(plain));
    char *colon = len > 0 ? memchr(plain, ':', (size_t)len) : NULL;
    int ok = colon != NULL && memchr(plain, '\0', (size_t)len) == NULL && colon - plain <= MAX_USER &&
             (size_t)len - (size_t)(colon - plain) - 1 <= MAX_PASSWORD;
    if (ok) {
        memcpy(user, plain, (size_t)(colon - plain));
        user[colon - plain] = '\0';
        memcpy(password, colon + 1, (size_t)len - (size_t)(colon - plain));
    }
    if (len > 0)
        OPENSSL_cleanse(plain, (size_t)len);
    return ok ? 0 : -1;
}

static int enqueue(cmi_basic_auth_t *a, job_t *j)
{
    pthread_mutex_lock(&a->lock);
    if (a->queued >= MAX_QUEUED) {
        pthread_mutex_unlock(&a->lock);
        return -1;
    }
    j->next = NULL;
    if (a->tail != NULL)
        a->tail->next = j;
    else
        a->head = j;
    a->tail = j;
    a->queued++;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    return 0;
}

static int busy(cmi_basic_auth_t *a, cmi_worker_t *w, h2o_req_t *req)
{
    uint64_t now = h2o_now(w->loop);
    pthread_mutex_lock(&a->lock);
    int log = now - a->full_logged_at >= 1000;
    if (log)
        a->full_logged_at = now;
    pthread_mutex_unlock(&a->lock);
    if (log)
        cmi_log_warn("http", "basic authentication: %d credential checks already waiting; answering 503 until "
                     "they are done", MAX_QUEUED);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    return cmi_http_answer(req, 503, NULL, "", 0);
}

int cmi_basic_auth_check(cmi_basic_auth_t *a, cmi_worker_t *w, h2o_req_t *req, const char *api,
                         void (*proceed)(h2o_req_t *req, void *arg), void *arg)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0) {
        log_refusal(req, api, "no Authorization header (401)");
        return refuse(req, 401), CMI_AUTH_ANSWERED;
    }
    char user[MAX_USER + 1], password[MAX_PASSWORD + 1];
    unsigned char key[SHA256_DIGEST_LENGTH];
    const h2o_iovec_t *v = &req->headers.entries[i].value;
    if (parse_basic(v->base, v->len, user, password) != 0) {
        log_refusal(req, api, "the Authorization header holds no Basic credentials (401)");
        return refuse(req, 401), CMI_AUTH_ANSWERED;
    }
    cache_key(a, w, user, password, key);
    int known = recall(a, w, key);
    if (known >= 0) {
        OPENSSL_cleanse(password, strlen(password));
        if (!known)
            log_refusal(req, api, "wrong user name or password (403)");
        return known ? CMI_AUTH_PASS : (refuse(req, 403), CMI_AUTH_ANSWERED);
    }
    /* Not known: the hash is checked on the verifier thread. */
    job_t *j = cmi_xcalloc(1, sizeof(*j));
    memcpy(j->user, user, strlen(user) + 1);
    memcpy(j->password, password, strlen(password) + 1);
    memcpy(j->key, key, sizeof(key));
    OPENSSL_cleanse(password, strlen(password));
    j->auth = a;
    j->worker = w;
    j->req = req;
    j->proceed = proceed;
    j->arg = arg;
    j->api = h2o_strdup(&req->pool, api, SIZE_MAX).base; /* the API's deployment may go before the verdict */
    j->link = h2o_mem_alloc_shared(&req->pool, sizeof(*j->link), on_link_dispose);
    j->link->job = j;
    if (enqueue(a, j) != 0) {
        j->link->job = NULL;
        OPENSSL_cleanse(j->password, sizeof(j->password));
        free(j);
        return busy(a, w, req), CMI_AUTH_ANSWERED;
    }
    return CMI_AUTH_PENDING;
}
