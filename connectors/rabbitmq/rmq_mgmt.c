/* RabbitMQ's HTTP management API, for what AMQP 1.0 cannot declare on 3.x
 * (exchanges, bindings, queue types and arguments).  Calls run on a thread
 * of their own, off the proactor and the workers; declarations are rare
 * (once per target and connection), so one blocking curl handle is enough. */
#include "config.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq.h"

#define MGMT_TIMEOUT_MS 10000

typedef struct job {
    STAILQ_ENTRY(job) entry;
    rmq_declare_t *decl;
    size_t n;
    rmq_mgmt_done_fn done;
    rmq_mgmt_run_fn run; /* a task of rmq_mgmt_run() instead of declarations */
    void *arg;
} job_t;

struct rmq_mgmt {
    const cmi_host_t *host;
    char *component;
    char **bases; /* "http://host:15672", no trailing slash; one per node */
    size_t nbases;
    size_t cur;   /* the one that answered last */
    char *user;
    char *password;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    STAILQ_HEAD(, job) jobs;
    int stopping;
};

typedef struct {
    char buf[512];
    size_t len;
} reply_t;

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    reply_t *r = arg;
    size_t n = size * nmemb, room = sizeof(r->buf) - 1 - r->len;
    memcpy(r->buf + r->len, data, n < room ? n : room);
    r->len += n < room ? n : room;
    r->buf[r->len] = '\0';
    return n;
}

/* The broker's own words ({"error": ..., "reason": ...}) when it has some. */
static const char *reason_of(const reply_t *r)
{
    json_t *j = json_loadb(r->buf, r->len, 0, NULL);
    static __thread char out[512];
    const char *reason = json_string_value(json_object_get(j, "reason"));
    snprintf(out, sizeof(out), "%s", reason ? reason : r->buf);
    json_decref(j);
    return out;
}

/* run_at(): an if_missing GET found nothing (not an error). */
#define RMQ_MGMT_MISSING 1

static int run_at(rmq_mgmt_t *m, const char *base, CURL *curl, const rmq_declare_t *d, char *detail, size_t n)
{
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", base, d->http_path);
    reply_t reply = {.len = 0};
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, d->method);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, d->http_body);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERNAME, m->user ? m->user : "");
    curl_easy_setopt(curl, CURLOPT_PASSWORD, m->password ? m->password : "");
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)MGMT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    const char *what = strncmp(d->http_path, "/api/", 5) == 0 ? d->http_path + 4 : d->http_path;
    if (rc != CURLE_OK) {
        snprintf(detail, n, "management API at %s unreachable (%s %s): %s", base, d->method, what,
                 curl_easy_strerror(rc));
        return RMQ_ERR_CONNECTION;
    }
    if (status >= 200 && status < 300)
        return 0;
    if (status == 404 && d->if_missing)
        return RMQ_MGMT_MISSING;
    if (status == 401 || status == 403) {
        snprintf(detail, n, "management API refused %s %s (HTTP %ld): check managementUsername/Password; the user "
                 "needs the management tag", d->method, what, status);
        return RMQ_ERR_CONFIG;
    }
    const char *reason = reason_of(&reply);
    snprintf(detail, n, "management API: %s %s answered HTTP %ld: %.300s", d->method, what, status, reason);
    return rmq_declare_refusal_code(status, reason);
}

/* The node that answered last first, then the others: a dead node's API
 * is skipped like its AMQP port is. */
static int run_one(rmq_mgmt_t *m, CURL *curl, const rmq_declare_t *d, char *detail, size_t n)
{
    int status = RMQ_ERR_CONNECTION;
    for (size_t k = 0; k < m->nbases; k++) {
        size_t i = (m->cur + k) % m->nbases;
        status = run_at(m, m->bases[i], curl, d, detail, n);
        if (status != RMQ_ERR_CONNECTION) {
            m->cur = i;
            return status;
        }
    }
    return status;
}

static void job_free(job_t *j)
{
    rmq_declare_free(j->decl, j->n);
    free(j);
}

static void *mgmt_thread(void *arg)
{
    rmq_mgmt_t *m = arg;
    CURL *curl = curl_easy_init();
    pthread_mutex_lock(&m->lock);
    for (;;) {
        while (STAILQ_EMPTY(&m->jobs) && !m->stopping)
            pthread_cond_wait(&m->cond, &m->lock);
        job_t *j = STAILQ_FIRST(&m->jobs);
        if (j == NULL)
            break; /* stopping and nothing left */
        STAILQ_REMOVE_HEAD(&m->jobs, entry);
        int stopping = m->stopping;
        pthread_mutex_unlock(&m->lock);
        if (j->run != NULL) {
            j->run(j->arg, stopping);
            free(j);
            pthread_mutex_lock(&m->lock);
            continue;
        }
        int status = 0;
        char detail[512] = "";
        if (stopping || curl == NULL) {
            status = RMQ_ERR_CONNECTION;
            snprintf(detail, sizeof(detail), "the connection config is stopping");
        }
        for (size_t i = 0; i < j->n && status == 0; i++) {
            pthread_mutex_lock(&m->lock);
            stopping = m->stopping;
            pthread_mutex_unlock(&m->lock);
            if (stopping) {
                status = RMQ_ERR_CONNECTION;
                snprintf(detail, sizeof(detail), "the connection config is stopping");
            } else if (j->decl[i].on_v1 && j->decl[i].v1_refusal != NULL) {
                status = RMQ_ERR_CONFIG;
                snprintf(detail, sizeof(detail), "%s", j->decl[i].v1_refusal);
            } else if (j->decl[i].on_v1) {
                status = run_one(m, curl, &j->decl[i], detail, sizeof(detail));
                if (status == RMQ_ERR_CONNECTION && strcmp(j->decl[i].method, "GET") == 0 && !j->decl[i].if_missing)
                    status = 0; /* cannot ask whether it exists: the attach finds out, as without the API */
                else if (j->decl[i].if_missing && status == 0)
                    i++; /* it exists: not declared again */
                else if (status == RMQ_MGMT_MISSING)
                    status = 0; /* missing: the next declares it */
            }
        }
        if (status != 0) /* the pool says what failed with it */
            m->host->log(CMI_LOG_DEBUG, m->component, "declaration failed: %s", detail);
        j->done(j->arg, status, detail);
        job_free(j);
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    if (curl != NULL)
        curl_easy_cleanup(curl);
    return NULL;
}

static void free_urls(rmq_mgmt_t *m)
{
    for (size_t i = 0; i < m->nbases; i++)
        free(m->bases[i]);
    free(m->bases);
}

rmq_mgmt_t *rmq_mgmt_create(const cmi_host_t *host, const char *component, char *const *base_urls, size_t n,
                            const char *user, const char *password)
{
    rmq_mgmt_t *m = rmq_xcalloc(1, sizeof(*m));
    m->host = host;
    STAILQ_INIT(&m->jobs);
    m->component = rmq_xstrdup(component);
    m->bases = rmq_xcalloc(n, sizeof(*m->bases));
    m->nbases = n;
    for (size_t i = 0; i < n; i++) {
        m->bases[i] = rmq_xstrdup(base_urls[i]);
        size_t bl = strlen(m->bases[i]);
        while (bl > 0 && m->bases[i][bl - 1] == '/')
            m->bases[i][--bl] = '\0';
    }
    m->user = rmq_dup_or_null(user);
    m->password = rmq_dup_or_null(password);
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    if (pthread_create(&m->thread, NULL, mgmt_thread, m) != 0) {
        pthread_cond_destroy(&m->cond);
        pthread_mutex_destroy(&m->lock);
        free_urls(m);
        free(m->component);
        free(m->user);
        free(m->password);
        free(m);
        return NULL;
    }
    return m;
}

void rmq_mgmt_destroy(rmq_mgmt_t *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = 1;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->thread, NULL);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m->component);
    free_urls(m);
    free(m->user);
    if (m->password != NULL)
        memset(m->password, 0, strlen(m->password));
    free(m->password);
    free(m);
}

static void enqueue(rmq_mgmt_t *m, job_t *j)
{
    pthread_mutex_lock(&m->lock);
    STAILQ_INSERT_TAIL(&m->jobs, j, entry);
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

void rmq_mgmt_submit(rmq_mgmt_t *m, const rmq_declare_t *decl, size_t n, rmq_mgmt_done_fn done, void *arg)
{
    job_t *j = rmq_xcalloc(1, sizeof(*j));
    rmq_declare_t *copy = rmq_xcalloc(n, sizeof(*copy));
    rmq_declare_copy(copy, decl, n);
    j->decl = copy;
    j->n = n;
    j->done = done;
    j->arg = arg;
    enqueue(m, j);
}

void rmq_mgmt_run(rmq_mgmt_t *m, rmq_mgmt_run_fn run, void *arg)
{
    job_t *j = rmq_xcalloc(1, sizeof(*j));
    j->run = run;
    j->arg = arg;
    enqueue(m, j);
}
