/* OAuth2 tokens for the connections of one connection config
 * (docs/rabbitmq.md, "OAuth2"; WORK IN PROGRESS, not wired yet): fetched
 * from tokenEndpoint with libcurl on a thread of their own (the pool's
 * thread never waits for an HTTP answer), refreshed at 60% of their
 * lifetime, kept while the endpoint fails (one log line per failure
 * streak, back-off 1..30 s), and handed to the pool as the PLAIN password
 * of each new connection.  RabbitMQ 4.0 closes an AMQP 1.0 connection when
 * its token expires: the pool replaces each connection with one on the new
 * token before then (rmq_pool.c). */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rmq_oauth2.h"

#define FETCH_TIMEOUT_MS 10000
#define REPLY_MAX_BYTES (64 * 1024)
#define TOKEN_MAX_BYTES (16 * 1024)
#define DEFAULT_LIFETIME_S 300 /* an answer without expires_in */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000

struct rmq_oauth2 {
    const cmi_host_t *host;
    char component[RMQ_COMPONENT_MAX];
    char *endpoint, *client_id, *client_secret, *user, *password, *ca_file;
    int grant;
    rmq_oauth2_changed_fn changed;
    void *arg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* under lock */
    int stopping;
    char *token;
    unsigned gen;
    int64_t expires_at; /* rmq_now() ms */
    char error[300];    /* the last failure, "" after a success */
};

static char *dup_secret(const char *s)
{
    return s != NULL ? rmq_xstrdup(s) : NULL;
}

static void free_secret(char *s)
{
    if (s != NULL)
        OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* ---- one request ---------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
    int too_big;
} reply_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    reply_t *r = arg;
    size_t add = size * n;
    if (r->len + add > REPLY_MAX_BYTES) {
        r->too_big = 1;
        return 0; /* curl stops */
    }
    memcpy(r->data + r->len, p, add);
    r->len += add;
    r->data[r->len] = '\0';
    return add;
}

/* grant_type=...[&username=...&password=...], values form-encoded. */
static char *request_body(const rmq_oauth2_t *o, CURL *c)
{
    if (o->grant != RMQ_GRANT_PASSWORD)
        return rmq_xstrdup("grant_type=client_credentials");
    char *u = curl_easy_escape(c, o->user ? o->user : "", 0);
    char *pw = curl_easy_escape(c, o->password ? o->password : "", 0);
    char *body = u && pw ? rmq_xasprintf("grant_type=password&username=%s&password=%s", u, pw) : NULL;
    if (pw != NULL)
        OPENSSL_cleanse(pw, strlen(pw));
    curl_free(u);
    curl_free(pw);
    return body;
}

/* The OAuth2 error answer's words (RFC 6749 5.2), else the body's start. */
static void refusal(const reply_t *r, long status, char *why, size_t n)
{
    json_t *j = json_loadb(r->data, r->len, 0, NULL);
    const char *code = json_string_value(json_object_get(j, "error"));
    const char *desc = json_string_value(json_object_get(j, "error_description"));
    if (code != NULL)
        snprintf(why, n, "the token endpoint refused (HTTP %ld): %.60s%s%.160s", status, code, desc ? ": " : "",
                 desc ? desc : "");
    else
        snprintf(why, n, "the token endpoint answered HTTP %ld", status);
    json_decref(j);
}

/* The token and its lifetime from a 200 answer. */
static char *read_token(const reply_t *r, long *lifetime_s, char *why, size_t n)
{
    json_t *j = json_loadb(r->data, r->len, 0, NULL);
    const char *t = json_string_value(json_object_get(j, "access_token"));
    json_t *exp = json_object_get(j, "expires_in");
    char *token = NULL;
    if (t == NULL || *t == '\0' || strlen(t) > TOKEN_MAX_BYTES || strpbrk(t, " \t\r\n") != NULL)
        snprintf(why, n, "the token endpoint's answer has no usable access_token");
    else
        token = rmq_xstrdup(t);
    *lifetime_s = json_is_integer(exp) && json_integer_value(exp) > 0 ? (long)json_integer_value(exp)
                                                                      : DEFAULT_LIFETIME_S;
    if (j != NULL && t != NULL) /* jansson keeps a copy: cleared before it goes */
        OPENSSL_cleanse((char *)t, strlen(t));
    json_decref(j);
    return token;
}

static char *fetch(rmq_oauth2_t *o, long *lifetime_s, char *why, size_t n)
{
    CURL *c = curl_easy_init();
    char *body = c ? request_body(o, c) : NULL;
    reply_t r = {.data = rmq_xcalloc(1, REPLY_MAX_BYTES + 1)};
    char cerr[CURL_ERROR_SIZE] = "";
    char *token = NULL;
    if (body == NULL) {
        snprintf(why, n, "cannot make the token request");
        goto out;
    }
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: application/json");
    curl_easy_setopt(c, CURLOPT_URL, o->endpoint);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)FETCH_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC); /* client_secret_basic, RFC 6749 2.3.1 */
    curl_easy_setopt(c, CURLOPT_USERNAME, o->client_id ? o->client_id : "");
    curl_easy_setopt(c, CURLOPT_PASSWORD, o->client_secret ? o->client_secret : "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    if (o->ca_file != NULL) { /* the endpoint's own trust, replacing the system's */
        curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    if (r.too_big)
        snprintf(why, n, "the token endpoint's answer is larger than %d KiB", REPLY_MAX_BYTES / 1024);
    else if (rc != CURLE_OK)
        snprintf(why, n, "token endpoint unreachable: %s", cerr[0] ? cerr : curl_easy_strerror(rc));
    else if (status != 200)
        refusal(&r, status, why, n);
    else
        token = read_token(&r, lifetime_s, why, n);
out:
    if (body != NULL)
        OPENSSL_cleanse(body, strlen(body));
    free(body);
    OPENSSL_cleanse(r.data, r.len);
    free(r.data);
    if (c != NULL)
        curl_easy_cleanup(c);
    return token;
}

/* ---- the thread ------------------------------------------------------------------------------ */

static void wait_until(rmq_oauth2_t *o, int64_t at)
{
    while (!o->stopping) {
        int64_t left = at - rmq_now();
        if (left <= 0)
            return;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&o->cond, &o->lock, &ts);
    }
}

static void *token_thread(void *arg)
{
    rmq_oauth2_t *o = arg;
    int64_t next = 0, backoff = BACKOFF_MIN_MS;
    pthread_mutex_lock(&o->lock);
    for (;;) {
        wait_until(o, next);
        if (o->stopping)
            break;
        pthread_mutex_unlock(&o->lock);
        long lifetime_s = 0;
        char why[300] = "";
        char *token = fetch(o, &lifetime_s, why, sizeof(why));
        int64_t now = rmq_now();
        pthread_mutex_lock(&o->lock);
        if (token != NULL) {
            free_secret(o->token);
            o->token = token;
            o->gen++;
            o->expires_at = now + lifetime_s * 1000;
            if (o->error[0] != '\0')
                o->host->log(CMI_LOG_INFO, o->component, "token endpoint %s answers again", o->endpoint);
            o->error[0] = '\0';
            backoff = BACKOFF_MIN_MS;
            int64_t refresh = lifetime_s * 600; /* 60% of its life */
            next = now + (refresh > 1000 ? refresh : 1000);
            pthread_mutex_unlock(&o->lock);
            o->changed(o->arg);
            pthread_mutex_lock(&o->lock);
            continue;
        }
        if (strcmp(o->error, why) != 0) /* once per cause, not per retry */
            o->host->log(CMI_LOG_ERROR, o->component, "no OAuth2 token from %s: %s (trying again, up to every %d s)",
                         o->endpoint, why, BACKOFF_MAX_MS / 1000);
        snprintf(o->error, sizeof(o->error), "%s", why);
        next = now + backoff;
        backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

/* ---- the public side -------------------------------------------------------------------------- */

rmq_oauth2_t *rmq_oauth2_create(const cmi_host_t *host, const char *component, const rmq_oauth2_conf_t *conf,
                                rmq_oauth2_changed_fn changed, void *arg, char *err, size_t n)
{
    rmq_oauth2_t *o = rmq_xcalloc(1, sizeof(*o));
    o->host = host;
    snprintf(o->component, sizeof(o->component), "%s", component);
    o->endpoint = rmq_xstrdup(conf->endpoint);
    o->client_id = dup_secret(conf->client_id);
    o->client_secret = dup_secret(conf->client_secret);
    o->user = dup_secret(conf->user);
    o->password = dup_secret(conf->password);
    o->ca_file = conf->ca_file ? rmq_xstrdup(conf->ca_file) : NULL;
    o->grant = conf->grant;
    o->changed = changed;
    o->arg = arg;
    pthread_mutex_init(&o->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&o->thread, NULL, token_thread, o) != 0) {
        snprintf(err, n, "cannot start the OAuth2 token thread: %s", strerror(errno));
        o->stopping = 1; /* nothing to join */
        rmq_oauth2_destroy(o);
        return NULL;
    }
    return o;
}

void rmq_oauth2_stop(rmq_oauth2_t *o)
{
    if (o == NULL)
        return;
    pthread_mutex_lock(&o->lock);
    int started = !o->stopping;
    o->stopping = 1;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
    if (started)
        pthread_join(o->thread, NULL); /* a fetch under way ends within its timeout */
}

void rmq_oauth2_destroy(rmq_oauth2_t *o)
{
    if (o == NULL)
        return;
    rmq_oauth2_stop(o);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    free_secret(o->token);
    free_secret(o->client_id);
    free_secret(o->client_secret);
    free_secret(o->user);
    free_secret(o->password);
    free(o->endpoint);
    free(o->ca_file);
    free(o);
}

int rmq_oauth2_current(rmq_oauth2_t *o, char *buf, size_t n, unsigned *gen, int64_t *expires_at, char *why,
                       size_t why_n)
{
    pthread_mutex_lock(&o->lock);
    int ok = o->token != NULL && o->expires_at > rmq_now() && strlen(o->token) < n;
    if (ok) {
        snprintf(buf, n, "%s", o->token);
        *gen = o->gen;
        *expires_at = o->expires_at;
    } else {
        snprintf(why, why_n, "no OAuth2 token yet%s%s", o->error[0] ? ": " : "", o->error);
    }
    int first = !ok && o->gen == 0 && o->error[0] == '\0'; /* the first answer is not in yet */
    pthread_mutex_unlock(&o->lock);
    return ok ? 0 : first ? -2 : -1;
}

int rmq_oauth2_check(const rmq_init_params_t *p, char *err, size_t n)
{
    if (p->sasl != RMQ_SASL_PLAIN) {
        snprintf(err, n, "oAuth2Enabled: the token goes as the PLAIN password; saslMechanism must be PLAIN");
        return -1;
    }
    if (p->token_endpoint == NULL || p->client_id == NULL || p->client_secret == NULL) {
        snprintf(err, n, "oAuth2Enabled needs tokenEndpoint, clientId and clientSecret");
        return -1;
    }
    if (p->grant_type == RMQ_GRANT_PASSWORD && (p->oauth2_user == NULL || p->oauth2_password == NULL)) {
        snprintf(err, n, "grantType password needs oAuth2UserName and oAuth2Password");
        return -1;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *user = NULL;
    int ok = u != NULL && curl_url_set(u, CURLUPART_URL, p->token_endpoint, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             (strcmp(scheme, "https") == 0 || strcmp(scheme, "http") == 0);
    int credentials = ok && curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK;
    curl_free(scheme);
    curl_free(user);
    curl_url_cleanup(u);
    if (!ok || credentials) {
        snprintf(err, n, "tokenEndpoint: %s", ok ? "credentials in the URL would be logged; give them as clientId "
                 "and clientSecret" : "not an http or https URL");
        return -1;
    }
    return 0;
}

unsigned rmq_oauth2_gen(rmq_oauth2_t *o)
{
    pthread_mutex_lock(&o->lock);
    unsigned gen = o->gen;
    pthread_mutex_unlock(&o->lock);
    return gen;
}
