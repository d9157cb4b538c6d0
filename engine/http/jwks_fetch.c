#include "config.h"

#include "http/jwks_fetch.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/log.h"

#define MAX_ENDPOINTS CMI_JWKS_MAX_ENDPOINTS
#define FETCH_TIMEOUT_MS 10000L
#define CONNECT_TIMEOUT_MS 5000L
#define RETRY_MAX_S 60

typedef struct {
    cmi_jwks_endpoint_t e;
    pthread_mutex_t lock; /* guards ks */
    cmi_jwt_keyset_t *ks;
    atomic_uint gen;
    atomic_int want;    /* a worker met an unknown kid */
    atomic_int tried;   /* the first fetch has ended, well or not */
    /* The fetcher's own (no lock): */
    int64_t last_try, last_ok;
    unsigned failures;
} endpoint_t;

struct cmi_jwks {
    endpoint_t *eps[MAX_ENDPOINTS];
    size_t n;
    pthread_t thread;
    int started;
    pthread_mutex_t lock; /* guards stop and asked; the fetcher waits on wake */
    pthread_cond_t wake;
    int stop;
    int asked; /* a worker asked for a fetch since the fetcher last looked */
};

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

cmi_jwks_t *cmi_jwks_create(void)
{
    cmi_jwks_t *j = cmi_xcalloc(1, sizeof(*j));
    pthread_mutex_init(&j->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->wake, &ca);
    pthread_condattr_destroy(&ca);
    return j;
}

static int same_trust(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int64_t shorter(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

size_t cmi_jwks_add(cmi_jwks_t *j, const cmi_jwks_endpoint_t *e)
{
    for (size_t i = 0; i < j->n; i++) {
        endpoint_t *p = j->eps[i];
        if (strcmp(p->e.url, e->url) == 0 && same_trust(p->e.ca_file, e->ca_file)) {
            p->e.ttl = shorter(p->e.ttl, e->ttl);
            p->e.refresh = shorter(p->e.refresh, e->refresh);
            p->e.min_refresh = shorter(p->e.min_refresh, e->min_refresh);
            return i;
        }
    }
    if (j->n == MAX_ENDPOINTS)
        return SIZE_MAX; /* the caller refuses to start: no endpoint may stand for another */
    endpoint_t *p = cmi_xcalloc(1, sizeof(*p));
    p->e = *e;
    pthread_mutex_init(&p->lock, NULL);
    j->eps[j->n] = p;
    return j->n++;
}

size_t cmi_jwks_count(const cmi_jwks_t *j)
{
    return j->n;
}

/* ---- fetching ------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len;
} body_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    body_t *b = arg;
    size_t k = size * n;
    if (k > CMI_JWKS_MAX_BYTES - b->len)
        return 0; /* curl fails the transfer: the document is too large */
    b->data = realloc(b->data, b->len + k + 1);
    if (b->data == NULL)
        abort();
    memcpy(b->data + b->len, p, k);
    b->len += k;
    return k;
}

/* The endpoint's document, or NULL with err. */
static char *download(const cmi_jwks_endpoint_t *e, size_t *len, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    body_t b = {NULL, 0};
    char cerr[CURL_ERROR_SIZE] = "";
    long status = 0;
    curl_easy_setopt(c, CURLOPT_URL, e->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, FETCH_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CMI_JWKS_MAX_BYTES);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    if (e->ca_file != NULL) { /* the handler's own trust, instead of the system's: not added to it */
        curl_easy_setopt(c, CURLOPT_CAINFO, e->ca_file);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || status != 200) {
        if (rc == CURLE_WRITE_ERROR || rc == CURLE_FILESIZE_EXCEEDED)
            snprintf(err, errlen, "the document is larger than %d bytes", CMI_JWKS_MAX_BYTES);
        else if (rc != CURLE_OK)
            snprintf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
        else
            snprintf(err, errlen, "HTTP status %ld", status);
        free(b.data);
        return NULL;
    }
    *len = b.len;
    return b.data != NULL ? b.data : cmi_xstrdup("");
}

static void install(endpoint_t *p, cmi_jwt_keyset_t *ks)
{
    pthread_mutex_lock(&p->lock);
    cmi_jwt_keyset_t *old = p->ks;
    p->ks = ks;
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_mutex_unlock(&p->lock);
    cmi_jwt_keyset_unref(old);
}

static void fetch(endpoint_t *p, int64_t now)
{
    char err[256] = "", skip[160];
    size_t len = 0, skipped = 0;
    p->last_try = now;
    char *doc = download(&p->e, &len, err, sizeof(err));
    cmi_jwt_keyset_t *ks = doc != NULL ? cmi_jwt_keyset_parse(doc, len, &skipped, skip, sizeof(skip), err,
                                                              sizeof(err))
                                       : NULL;
    free(doc);
    atomic_store(&p->tried, 1);
    if (ks == NULL) {
        /* One line per failure streak, not per retry. */
        if (p->failures++ == 0)
            cmi_log_error("jwt", "JWKS endpoint %s: %s (%s; retrying, backing off to %d s)", p->e.url, err,
                          p->ks != NULL ? "the keys fetched before stay in use" : "no keys yet: its tokens get 503",
                          RETRY_MAX_S);
        return;
    }
    if (p->failures > 0 || p->last_ok == 0 || skipped > 0)
        cmi_log_info("jwt", "JWKS endpoint %s: %zu keys%s%s", p->e.url, cmi_jwt_keyset_size(ks),
                     skipped ? ", skipped: " : "", skipped ? skip : "");
    p->failures = 0;
    p->last_ok = now;
    install(p, ks);
}

/* When the endpoint wants fetching next (monotonic seconds). */
static int64_t due(const endpoint_t *p)
{
    if (p->last_try == 0)
        return 0;
    if (p->failures > 0) {
        int64_t back = (int64_t)1 << (p->failures < 6 ? p->failures : 6);
        return p->last_try + (back < RETRY_MAX_S ? back : RETRY_MAX_S);
    }
    int64_t next = p->last_try + p->e.refresh;
    if (atomic_load_explicit(&p->want, memory_order_relaxed) && p->last_try + p->e.min_refresh < next)
        next = p->last_try + p->e.min_refresh;
    return next;
}

/* A key set no fetch has confirmed for its ttl is dropped. */
static void expire(endpoint_t *p, int64_t now)
{
    if (p->ks == NULL || p->last_ok == 0 || now - p->last_ok < p->e.ttl)
        return;
    cmi_log_error("jwt", "JWKS endpoint %s: no successful fetch for %lld s (jwksTimeout): its keys are dropped, "
                  "its tokens get 503 until a fetch succeeds", p->e.url, (long long)p->e.ttl);
    install(p, NULL);
}

static void *fetcher_main(void *arg)
{
    cmi_jwks_t *j = arg;
    pthread_mutex_lock(&j->lock);
    while (!j->stop) {
        int64_t now = now_s(), next = now + 3600;
        for (size_t i = 0; i < j->n && !j->stop; i++) {
            endpoint_t *p = j->eps[i];
            if (due(p) <= now) {
                atomic_store_explicit(&p->want, 0, memory_order_relaxed);
                pthread_mutex_unlock(&j->lock);
                fetch(p, now);
                pthread_mutex_lock(&j->lock);
                now = now_s();
            }
            expire(p, now);
            int64_t d = due(p);
            if (d < next)
                next = d;
        }
        /* A worker's ask that came while a fetch ran: look again first (its
         * signal found no one waiting). */
        if (j->stop || next <= now || j->asked) {
            j->asked = 0;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += next - now;
        pthread_cond_timedwait(&j->wake, &j->lock, &ts);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

int cmi_jwks_start(cmi_jwks_t *j, char *err, size_t errlen)
{
    if (j->n == 0)
        return 0;
    if (pthread_create(&j->thread, NULL, fetcher_main, j) != 0) {
        snprintf(err, errlen, "cannot start the JWKS fetcher thread");
        return -1;
    }
    j->started = 1;
    return 0;
}

void cmi_jwks_destroy(cmi_jwks_t *j)
{
    if (j == NULL)
        return;
    if (j->started) {
        pthread_mutex_lock(&j->lock);
        j->stop = 1;
        pthread_cond_signal(&j->wake);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->thread, NULL);
    }
    for (size_t i = 0; i < j->n; i++) {
        cmi_jwt_keyset_unref(j->eps[i]->ks);
        pthread_mutex_destroy(&j->eps[i]->lock);
        free(j->eps[i]);
    }
    pthread_cond_destroy(&j->wake);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* ---- the workers' side --------------------------------------------------- */

void cmi_jwks_get(cmi_jwks_t *j, size_t idx, cmi_jwt_keyset_t **held, unsigned *gen)
{
    endpoint_t *p = j->eps[idx];
    unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
    if (g == *gen && (*held != NULL || g != 0))
        return;
    pthread_mutex_lock(&p->lock);
    cmi_jwt_keyset_t *ks = cmi_jwt_keyset_ref(p->ks);
    *gen = atomic_load_explicit(&p->gen, memory_order_relaxed);
    pthread_mutex_unlock(&p->lock);
    cmi_jwt_keyset_unref(*held);
    *held = ks;
}

int cmi_jwks_wait_first(cmi_jwks_t *j, uint64_t timeout_ms)
{
    struct timespec tick = {0, 10 * 1000000L};
    for (uint64_t waited = 0;; waited += 10) {
        int all = 1;
        for (size_t i = 0; i < j->n; i++)
            all &= atomic_load(&j->eps[i]->tried) != 0 || atomic_load(&j->eps[i]->gen) != 0;
        if (all)
            return 0;
        if (waited >= timeout_ms)
            return -1;
        nanosleep(&tick, NULL);
    }
}

void cmi_jwks_want_refresh(cmi_jwks_t *j, size_t idx)
{
    endpoint_t *p = j->eps[idx];
    if (atomic_exchange_explicit(&p->want, 1, memory_order_relaxed))
        return; /* asked already */
    pthread_mutex_lock(&j->lock);
    j->asked = 1;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
}
