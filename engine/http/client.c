/* The curl thread: one multi handle, its connection cache shared by every
 * call, requests handed over through a locked inbox and curl_multi_wakeup. */
#include "config.h"

#include "http/client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_RESPONSE (64u * 1024 * 1024)
#define MAX_HEADER_BYTES (1024u * 1024)

STAILQ_HEAD(request_queue, cmi_http_request);

struct cmi_http_client {
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t lock;
    struct request_queue inbox;               /* under lock, in submission order */
    int stopping;                             /* under lock */
    LIST_HEAD(, cmi_http_request) running;    /* curl thread */
    atomic_ulong connections;
};

/* ---- buffers ------------------------------------------------------------------ */

static int append(char **buf, size_t *len, size_t *cap, const char *data, size_t n, size_t max)
{
    if (*len + n > max)
        return -1;
    if (*len + n + 1 > *cap) {
        size_t want = *cap ? *cap : 1024;
        while (want < *len + n + 1)
            want *= 2;
        char *b = realloc(*buf, want);
        if (b == NULL)
            return -1;
        *buf = b;
        *cap = want;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    cmi_http_request_t *req = arg;
    size_t n = size * nmemb;
    size_t max = req->max_response ? req->max_response : DEFAULT_MAX_RESPONSE;
    if (append(&req->response, &req->response_len, &req->response_cap, data, n, max) != 0) {
        snprintf(req->error, sizeof(req->error), "the response is larger than %zu bytes", max);
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

/* libcurl keeps the headers (read in finish()); this only bounds them. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    (void)data;
    cmi_http_request_t *req = arg;
    size_t n = size * nmemb;
    req->header_bytes += n;
    return req->header_bytes > MAX_HEADER_BYTES ? 0 : n; /* 0: curl fails the transfer */
}

/* The final response's headers (not those of a 1xx before it) and its
 * trailers, through libcurl's header API, in the order they came. */
static void take_headers(cmi_http_request_t *req, CURL *e)
{
    const unsigned origin = CURLH_HEADER | CURLH_TRAILER;
    size_t n = 0;
    for (struct curl_header *h = NULL; (h = curl_easy_nextheader(e, origin, -1, h)) != NULL;)
        n++;
    if (n == 0)
        return;
    req->response_headers = calloc(n, sizeof(*req->response_headers));
    if (req->response_headers == NULL)
        return;
    struct curl_header *h = NULL;
    while (req->nresponse_headers < n && (h = curl_easy_nextheader(e, origin, -1, h)) != NULL) {
        cmi_http_header_t *out = &req->response_headers[req->nresponse_headers];
        out->name = strdup(h->name);
        out->value = strdup(h->value);
        if (out->name == NULL || out->value == NULL) {
            free(out->name);
            free(out->value);
            break;
        }
        req->nresponse_headers++;
    }
}

/* ---- one transfer ----------------------------------------------------------------- */

static int setup(cmi_http_request_t *req)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        return -1;
    req->easy = e;
    struct curl_slist *sl = NULL;
    for (size_t i = 0; i < req->nheaders; i++)
        sl = curl_slist_append(sl, req->headers[i]);
    /* No "Expect: 100-continue" round trip for bodies. */
    sl = curl_slist_append(sl, "Expect:");
    req->slist = sl;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);
    if (req->http10)
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_0);
    if (req->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    if (strcmp(req->method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (req->body != NULL && (req->body_len > 0 || strcmp(req->method, "GET") != 0)) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    return 0;
}

static cmi_http_result_t classify(CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return CMI_HTTP_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return CMI_HTTP_CONNECT_FAILED;
    case CURLE_OPERATION_TIMEDOUT:
        return CMI_HTTP_TIMEOUT;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return CMI_HTTP_CLOSED;
    default:
        return CMI_HTTP_FAILED;
    }
}

static void finish(cmi_http_client_t *c, cmi_http_request_t *req, CURLcode rc)
{
    CURL *e = req->easy;
    req->result = classify(rc);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &req->status);
        take_headers(req, e);
    } else if (req->error[0] == '\0') {
        snprintf(req->error, sizeof(req->error), "%s", curl_easy_strerror(rc));
    }
    long opened = 0;
    if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &opened) == CURLE_OK && opened > 0)
        atomic_fetch_add(&c->connections, (unsigned long)opened);
    if (req->response == NULL)
        append(&req->response, &req->response_len, &req->response_cap, "", 0, 1);
    curl_multi_remove_handle(c->multi, e);
    curl_easy_cleanup(e);
    curl_slist_free_all(req->slist);
    req->easy = NULL;
    req->slist = NULL;
    LIST_REMOVE(req, running_link);
    req->done(req);
}

static void fail_now(cmi_http_request_t *req, const char *why)
{
    req->result = CMI_HTTP_FAILED;
    snprintf(req->error, sizeof(req->error), "%s", why);
    if (req->easy != NULL)
        curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->slist);
    req->easy = NULL;
    req->slist = NULL;
    req->done(req);
}

/* ---- the thread ------------------------------------------------------------------ */

static int take_inbox(cmi_http_client_t *c)
{
    struct request_queue todo = STAILQ_HEAD_INITIALIZER(todo);
    pthread_mutex_lock(&c->lock);
    STAILQ_CONCAT(&todo, &c->inbox);
    int stopping = c->stopping;
    pthread_mutex_unlock(&c->lock);
    cmi_http_request_t *req;
    while ((req = STAILQ_FIRST(&todo)) != NULL) {
        STAILQ_REMOVE_HEAD(&todo, inbox_link);
        if (stopping)
            fail_now(req, "the HTTP client is stopping");
        else if (setup(req) != 0 || curl_multi_add_handle(c->multi, req->easy) != CURLM_OK)
            fail_now(req, "cannot start the HTTP call");
        else
            LIST_INSERT_HEAD(&c->running, req, running_link);
    }
    return stopping;
}

static void *client_main(void *arg)
{
    cmi_http_client_t *c = arg;
    for (;;) {
        int stopping = take_inbox(c);
        int running = 0;
        curl_multi_perform(c->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            cmi_http_request_t *req = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&req);
            finish(c, req, m->data.result);
        }
        if (stopping)
            break;
        curl_multi_poll(c->multi, NULL, 0, 1000, NULL);
    }
    /* Transfers still running end now. */
    cmi_http_request_t *req;
    while ((req = LIST_FIRST(&c->running)) != NULL) {
        LIST_REMOVE(req, running_link);
        curl_multi_remove_handle(c->multi, req->easy);
        fail_now(req, "the HTTP client is stopping");
    }
    return NULL;
}

cmi_http_client_t *cmi_http_client_create(char *err, size_t n)
{
    /* Reference-counted by libcurl (the RabbitMQ connector calls it too);
     * thread-safe since 7.84. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, n, "libcurl failed to initialise");
        return NULL;
    }
    cmi_http_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->multi = curl_multi_init()) == NULL) {
        snprintf(err, n, "cannot create the HTTP client");
        free(c);
        curl_global_cleanup();
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    STAILQ_INIT(&c->inbox);
    LIST_INIT(&c->running);
    int rc = pthread_create(&c->thread, NULL, client_main, c);
    if (rc != 0) {
        snprintf(err, n, "cannot start the HTTP client thread: %s", strerror(rc));
        curl_multi_cleanup(c->multi);
        pthread_mutex_destroy(&c->lock);
        free(c);
        curl_global_cleanup();
        return NULL;
    }
    return c;
}

void cmi_http_client_submit(cmi_http_client_t *c, cmi_http_request_t *req)
{
    req->result = CMI_HTTP_FAILED;
    req->status = 0;
    req->error[0] = '\0';
    req->easy = NULL;
    req->slist = NULL;
    req->header_bytes = 0;
    pthread_mutex_lock(&c->lock);
    STAILQ_INSERT_TAIL(&c->inbox, req, inbox_link);
    pthread_mutex_unlock(&c->lock);
    curl_multi_wakeup(c->multi);
}

void cmi_http_client_destroy(cmi_http_client_t *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_mutex_unlock(&c->lock);
    curl_multi_wakeup(c->multi);
    pthread_join(c->thread, NULL);
    take_inbox(c); /* anything submitted while it stopped */
    curl_multi_cleanup(c->multi);
    pthread_mutex_destroy(&c->lock);
    free(c);
    curl_global_cleanup();
}

unsigned long cmi_http_client_connections(cmi_http_client_t *c)
{
    return atomic_load(&c->connections);
}

const char *cmi_http_response_header(const cmi_http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->nresponse_headers; i++)
        if (strcasecmp(req->response_headers[i].name, name) == 0)
            return req->response_headers[i].value;
    return NULL;
}

void cmi_http_request_dispose(cmi_http_request_t *req)
{
    for (size_t i = 0; i < req->nresponse_headers; i++) {
        free(req->response_headers[i].name);
        free(req->response_headers[i].value);
    }
    free(req->response_headers);
    free(req->response);
    req->response_headers = NULL;
    req->response = NULL;
    req->nresponse_headers = req->response_len = req->response_cap = req->header_bytes = 0;
}
