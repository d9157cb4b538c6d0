#include "config.h"

#include "runtime/metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config/config.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/htab.h"
#include "core/log.h"
#include "runtime/endpoint.h"

/* MI's latency buckets (seconds), the same for APIs, proxy services and
 * inbound endpoints, and the le values its formatter writes. */
#define NBUCKETS 10
static const double bucket_s[NBUCKETS] = {0.19, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 1, 5};
static const char *const bucket_le[NBUCKETS] = {"0.19", "0.2", "0.25", "0.3", "0.35",
                                                "0.4",  "0.5", "0.6",  "1.0", "5.0"};

/* The count is the sum of the buckets (the last one: slower than 5 s), so
 * a scrape that races a worker still sees _count equal to le="+Inf". */
typedef struct {
    atomic_uint_fast64_t errors, sum_us;  /* us: 580,000 years of latency before the sum wraps */
    atomic_uint_fast64_t buckets[NBUCKETS + 1]; /* not cumulative */
} cell_t;

static uint64_t cell_count(const cell_t *c)
{
    uint64_t n = 0;
    for (unsigned j = 0; j <= NBUCKETS; j++)
        n += atomic_load_explicit(&c->buckets[j], memory_order_relaxed);
    return n;
}

typedef enum { SVC_API = 0, SVC_PROXY, SVC_INBOUND, SVC_KINDS } svc_kind_t;

static const char *const kind_type[SVC_KINDS] = {"api", "proxy", "inbound-endpoint"};
static const char *const kind_family[SVC_KINDS] = {"api", "proxy", "inbound_endpoint"};
/* MI's HELP texts, word for word. */
static const char *const kind_help[SVC_KINDS][3] = {
    {"Total number of requests to an api", "Total number of error requests to an api", "Latency of requests to an api"},
    {"Total number of requests to a proxy service", "Total number of error requests to a proxy service",
     "Latency of requests to a proxy service"},
    {"Total number of requests to an inbound endpoint.",
     "Total number of error requests when receiving the message by an inbound endpoint.",
     "Latency of requests to an inbound endpoint."},
};

/* A service keeps its slot across reloads (its counts go on); one a
 * reload removed keeps its counts and loses MI's per-deployment series. */
typedef struct {
    svc_kind_t kind;
    const char *name;    /* MI's service_name: an API's is "NAME:vVERSION" when versioned */
    _Atomic(const char *) context; /* APIs: the context in invocation_url (of its latest deployment) */
    unsigned ncells;     /* APIs: one per invocation URL */
    atomic_int deployed; /* in the deployment being served */
    _Atomic double up_since; /* MI's service_up: when it was deployed */
} service_t;

struct cmi_metrics_shard {
    _Atomic(cell_t *) *cells; /* per service, NULL until its first message here */
    atomic_int_fast64_t gauges[CMI_GAUGES];
    const cmi_metrics_t *metrics;
};

struct cmi_metrics {
    cmi_arena_t *arena;     /* names; written by the main thread only */
    cmi_htab_t by_key;      /* "KIND:NAME" -> its service_t (main thread) */
    service_t *services;    /* CMI_METRICS_MAX_SERVICES of them */
    atomic_uint nservices;  /* in use: an entry is complete before it counts here */
    int full_logged;
    cmi_metrics_shard_t **shards;
    unsigned nshards;
    double start_time;
    int http_port;
    char host[INET6_ADDRSTRLEN];
    /* Invocation URLs: written under the lock, read without it up to nurls. */
    pthread_mutex_t url_lock;
    char urls[CMI_METRICS_URLS][INET6_ADDRSTRLEN + 48];
    atomic_uint nurls;
};

/* ---- counting (shard owner) ------------------------------------------------------------ */

static inline void bump(atomic_uint_fast64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by, memory_order_relaxed);
}

static cell_t *cells_of(cmi_metrics_shard_t *s, uint32_t service)
{
    cell_t *c = atomic_load_explicit(&s->cells[service], memory_order_relaxed);
    if (c != NULL)
        return c;
    c = cmi_xcalloc(s->metrics->services[service].ncells, sizeof(*c));
    /* release: a scrape that sees the pointer sees zeroed cells */
    atomic_store_explicit(&s->cells[service], c, memory_order_release);
    return c;
}

void cmi_metrics_observe(cmi_metrics_shard_t *s, uint32_t service, unsigned url, uint64_t latency_ns, int error)
{
    if (s == NULL || service >= atomic_load_explicit(&s->metrics->nservices, memory_order_relaxed))
        return;
    cell_t *cells = cells_of(s, service);
    unsigned n = s->metrics->services[service].ncells;
    cell_t *c = &cells[url < n ? url : n - 1];
    /* Relaxed stores promise no order to a scrape on another CPU: it may
     * see this error a scrape before its request (counts converge). */
    if (error)
        bump(&c->errors, 1);
    bump(&c->sum_us, latency_ns / 1000);
    unsigned i = 0;
    while (i < NBUCKETS && latency_ns > (uint64_t)(bucket_s[i] * 1e9))
        i++;
    bump(&c->buckets[i], 1);
}

void cmi_metrics_gauge_add(cmi_metrics_shard_t *s, cmi_gauge_t g, int64_t delta)
{
    if (s == NULL)
        return;
    atomic_store_explicit(&s->gauges[g], atomic_load_explicit(&s->gauges[g], memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

unsigned cmi_metrics_url_slot(cmi_metrics_t *m, int tls, const struct sockaddr *local, socklen_t len)
{
    char host[INET6_ADDRSTRLEN + 16], url[sizeof(m->urls[0])];
    int v6 = local->sa_family == AF_INET6;
    int port = 0;
    if (getnameinfo(local, len, host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(host, sizeof(host), "?");
    if (local->sa_family == AF_INET)
        port = ntohs(((const struct sockaddr_in *)local)->sin_port);
    else if (local->sa_family == AF_INET6)
        port = ntohs(((const struct sockaddr_in6 *)local)->sin6_port);
    snprintf(url, sizeof(url), "%s://%s%s%s:%d", tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", port);
    unsigned n = atomic_load_explicit(&m->nurls, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(m->urls[i], url) == 0)
            return i;
    pthread_mutex_lock(&m->url_lock);
    n = atomic_load_explicit(&m->nurls, memory_order_relaxed);
    unsigned slot = n;
    for (unsigned i = 0; i < n; i++)
        if (strcmp(m->urls[i], url) == 0)
            slot = i;
    if (slot == n && n < CMI_METRICS_URLS) {
        memcpy(m->urls[n], url, sizeof(url));
        atomic_store_explicit(&m->nurls, n + 1, memory_order_release);
    } else if (slot == n) {
        slot = CMI_METRICS_URLS - 1;
    }
    pthread_mutex_unlock(&m->url_lock);
    return slot;
}

/* ---- set-up ------------------------------------------------------------------------------ */

/* MI's host label: the first address that is not loopback. */
static void first_address(char *out, size_t size)
{
    snprintf(out, size, "127.0.0.1");
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) != 0)
        return;
    for (struct ifaddrs *i = list; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
            continue;
        const struct in_addr *a = &((const struct sockaddr_in *)i->ifa_addr)->sin_addr;
        if ((ntohl(a->s_addr) >> 24) == 127)
            continue;
        inet_ntop(AF_INET, a, out, (socklen_t)size);
        break;
    }
    freeifaddrs(list);
}

/* The slot of a deployed service: its own from an earlier deployment, or a
 * new one (CMI_METRICS_NO_SERVICE when every slot is taken). */
static uint32_t deploy_service(cmi_metrics_t *m, cmi_arena_t *tmp, svc_kind_t kind, const char *name,
                               const char *context, double now)
{
    const char *key = cmi_arena_sprintf(tmp, "%d:%s", (int)kind, name);
    service_t *s = cmi_htab_gets(&m->by_key, key);
    if (s == NULL) {
        unsigned n = atomic_load_explicit(&m->nservices, memory_order_relaxed);
        if (n == CMI_METRICS_MAX_SERVICES) {
            if (!m->full_logged++)
                cmi_log_warn("engine", "metrics: %u services counted since the start; %s and any further new one "
                             "are not counted until a restart", CMI_METRICS_MAX_SERVICES, name);
            return CMI_METRICS_NO_SERVICE;
        }
        s = &m->services[n];
        s->kind = kind;
        s->name = cmi_arena_strdup(m->arena, name);
        s->ncells = kind == SVC_API ? CMI_METRICS_URLS : 1;
        key = cmi_arena_strdup(m->arena, key); /* kept: the table refers to it */
        cmi_htab_put(&m->by_key, key, strlen(key), s);
        /* release: a scrape or a worker that sees the count sees the entry */
        atomic_store_explicit(&m->nservices, n + 1, memory_order_release);
    }
    const char *had = atomic_load(&s->context);
    if (context != NULL && (had == NULL || strcmp(had, context) != 0))
        atomic_store(&s->context, cmi_arena_strdup(m->arena, context)); /* a render may read the one before: it stays */
    if (!atomic_load(&s->deployed))
        atomic_store(&s->up_since, now);
    atomic_store(&s->deployed, 2); /* 2: in this deployment (the sweep below turns the others to 0) */
    return (uint32_t)(s - m->services);
}

void cmi_metrics_deploy(cmi_metrics_t *m, cmi_config_t *config, double now)
{
    if (m == NULL)
        return;
    cmi_arena_t *tmp = cmi_arena_create(0); /* a reload's keys: the metrics' arena keeps only new names */
    for (size_t i = 0; i < config->napis; i++) {
        cmi_api_t *api = config->apis[i];
        const char *name = api->version ? cmi_arena_sprintf(tmp, "%s:v%s", api->name, api->version) : api->name;
        api->metric_slot = deploy_service(m, tmp, SVC_API, name, api->context, now);
    }
    for (size_t i = 0; i < config->nproxies; i++)
        config->proxies[i]->api.metric_slot =
            deploy_service(m, tmp, SVC_PROXY, config->proxies[i]->api.name, NULL, now);
    for (size_t i = 0; i < config->ninbounds; i++)
        config->inbounds[i]->metric_slot = deploy_service(m, tmp, SVC_INBOUND, config->inbounds[i]->name, NULL, now);
    cmi_arena_destroy(tmp);
    unsigned n = atomic_load(&m->nservices);
    for (unsigned i = 0; i < n; i++)
        atomic_store(&m->services[i].deployed, atomic_load(&m->services[i].deployed) == 2);
}

cmi_metrics_t *cmi_metrics_create(unsigned nshards, double start_time, int http_port)
{
    cmi_metrics_t *m = cmi_xcalloc(1, sizeof(*m));
    m->arena = cmi_arena_create(0);
    cmi_htab_init(&m->by_key, m->arena);
    m->services = cmi_xcalloc(CMI_METRICS_MAX_SERVICES, sizeof(*m->services));
    size_t total = CMI_METRICS_MAX_SERVICES;
    m->nshards = nshards;
    m->shards = cmi_arena_calloc(m->arena, nshards ? nshards : 1, sizeof(*m->shards));
    for (unsigned i = 0; i < nshards; i++) {
        /* Each its own allocation: shards of different workers never share a cache line. */
        cmi_metrics_shard_t *s = aligned_alloc(64, (sizeof(*s) + 63) / 64 * 64);
        if (s == NULL)
            s = cmi_xmalloc(sizeof(*s)); /* aborts when memory is out, as every cmi_x* */
        memset(s, 0, sizeof(*s));
        s->cells = cmi_xcalloc(total ? total : 1, sizeof(*s->cells));
        s->metrics = m;
        m->shards[i] = s;
    }
    m->start_time = start_time;
    m->http_port = http_port;
    first_address(m->host, sizeof(m->host));
    pthread_mutex_init(&m->url_lock, NULL);
    return m;
}

void cmi_metrics_destroy(cmi_metrics_t *m)
{
    if (m == NULL)
        return;
    for (unsigned i = 0; i < m->nshards; i++) {
        for (uint32_t k = 0; k < m->nservices; k++)
            free(atomic_load(&m->shards[i]->cells[k]));
        free(m->shards[i]->cells);
        free(m->shards[i]);
    }
    free(m->services);
    pthread_mutex_destroy(&m->url_lock);
    cmi_arena_destroy(m->arena);
    free(m);
}

cmi_metrics_shard_t *cmi_metrics_shard(cmi_metrics_t *m, unsigned i)
{
    return m != NULL && i < m->nshards ? m->shards[i] : NULL;
}

/* ---- Prometheus text ----------------------------------------------------------------------- */

void cmi_metrics_family(cmi_strbuf_t *b, const char *name, const char *type, const char *help)
{
    cmi_strbuf_printf(b, "# HELP %s ", name);
    for (const char *p = help; *p; p++) /* the text format escapes \\ and newlines in HELP */
        cmi_strbuf_puts(b, *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : (char[2]){*p, 0});
    cmi_strbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

void cmi_metrics_label_value(cmi_strbuf_t *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"')
            cmi_strbuf_putc(b, '\\');
        if (*p == '\n')
            cmi_strbuf_puts(b, "\\n");
        else
            cmi_strbuf_putc(b, *p);
    }
}

void cmi_metrics_number(cmi_strbuf_t *b, double v)
{
    char text[40];
    if (v == floor(v) && fabs(v) < 9.007199254740992e15) {
        snprintf(text, sizeof(text), "%.0f", v);
    } else {
        /* the shortest of 15 or 17 digits that reads back as v (0.1, not 0.10000000000000001) */
        snprintf(text, sizeof(text), "%.15g", v);
        if (strtod(text, NULL) != v)
            snprintf(text, sizeof(text), "%.17g", v);
    }
    cmi_strbuf_puts(b, text);
}

void cmi_metrics_value(cmi_strbuf_t *b, double v)
{
    cmi_strbuf_putc(b, ' ');
    cmi_metrics_number(b, v);
    cmi_strbuf_putc(b, '\n');
}

/* Microseconds as exact decimal seconds (a double would print 0.00010500000000000001). */
static void seconds(cmi_strbuf_t *b, uint64_t us)
{
    char frac[16];
    int n = snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(us % 1000000u));
    while (n > 1 && frac[n - 1] == '0')
        frac[--n] = '\0';
    cmi_strbuf_printf(b, " %llu.%s\n", (unsigned long long)(us / 1000000u), frac);
}

/* A service's cells summed over the shards. */
static void sum_cells(const cmi_metrics_t *m, uint32_t service, cell_t *out)
{
    unsigned n = m->services[service].ncells;
    memset(out, 0, n * sizeof(*out));
    for (unsigned i = 0; i < m->nshards; i++) {
        /* acquire: pairs with the worker's release when it made the cells */
        const cell_t *c = atomic_load_explicit(&m->shards[i]->cells[service], memory_order_acquire);
        for (unsigned k = 0; c != NULL && k < n; k++) {
            bump(&out[k].errors, atomic_load_explicit(&c[k].errors, memory_order_relaxed));
            bump(&out[k].sum_us, atomic_load_explicit(&c[k].sum_us, memory_order_relaxed));
            for (unsigned j = 0; j <= NBUCKETS; j++)
                bump(&out[k].buckets[j], atomic_load_explicit(&c[k].buckets[j], memory_order_relaxed));
        }
    }
}

/* service_name="...",service_type="..."[,invocation_url="..."] */
static void labels(cmi_strbuf_t *b, const cmi_metrics_t *m, const service_t *s, int url)
{
    cmi_strbuf_puts(b, "service_name=\"");
    cmi_metrics_label_value(b, s->name);
    cmi_strbuf_printf(b, "\",service_type=\"%s\"", kind_type[s->kind]);
    if (s->kind != SVC_API)
        return;
    cmi_strbuf_puts(b, ",invocation_url=\"");
    if (url >= 0) {
        cmi_metrics_label_value(b, m->urls[url]);
        const char *context = atomic_load(&s->context);
        cmi_metrics_label_value(b, context && *context ? context : "/");
    }
    cmi_strbuf_putc(b, '"');
}

/* One family of one kind: which 0 requests, 1 errors. */
static void render_counter(cmi_strbuf_t *b, const cmi_metrics_t *m, svc_kind_t kind, int which, cell_t **sums,
                           uint32_t nservices, unsigned nurls)
{
    char name[96];
    snprintf(name, sizeof(name), "wso2_integration_%s_request_count%s_total", kind_family[kind],
             which ? "_error" : "");
    cmi_metrics_family(b, name, "counter", kind_help[kind][which]);
    for (uint32_t i = 0; i < nservices; i++) {
        const service_t *s = &m->services[i];
        if (s->kind != kind)
            continue;
        if (kind != SVC_API) {
            cmi_strbuf_printf(b, "%s{", name);
            labels(b, m, s, -1);
            cmi_strbuf_putc(b, '}');
            cmi_metrics_value(b, which ? (double)atomic_load(&sums[i][0].errors) : (double)cell_count(&sums[i][0]));
            continue;
        }
        /* MI keeps a series at 0 for every deployed API (invocation_url=""),
         * so that a rate() starts from its deployment. */
        if (atomic_load(&s->deployed)) {
            cmi_strbuf_printf(b, "%s{", name);
            labels(b, m, s, -1);
            cmi_strbuf_puts(b, "} 0\n");
        }
        for (unsigned u = 0; u < nurls; u++) {
            uint64_t count = cell_count(&sums[i][u]);
            if (count == 0)
                continue;
            cmi_strbuf_printf(b, "%s{", name);
            labels(b, m, s, (int)u);
            cmi_strbuf_putc(b, '}');
            cmi_metrics_value(b, which ? (double)atomic_load(&sums[i][u].errors) : (double)count);
        }
    }
}

static void render_histogram(cmi_strbuf_t *b, const cmi_metrics_t *m, svc_kind_t kind, cell_t **sums,
                             uint32_t nservices, unsigned nurls)
{
    char name[96];
    snprintf(name, sizeof(name), "wso2_integration_%s_latency_seconds", kind_family[kind]);
    cmi_metrics_family(b, name, "histogram", kind_help[kind][2]);
    for (uint32_t i = 0; i < nservices; i++) {
        const service_t *s = &m->services[i];
        for (unsigned u = 0; s->kind == kind && u < (kind == SVC_API ? nurls : 1); u++) {
            const cell_t *c = &sums[i][u];
            uint64_t count = cell_count(c), cum = 0;
            if (count == 0)
                continue;
            for (unsigned j = 0; j <= NBUCKETS; j++) {
                cum += atomic_load(&c->buckets[j]);
                cmi_strbuf_printf(b, "%s_bucket{", name);
                labels(b, m, s, kind == SVC_API ? (int)u : -1);
                cmi_strbuf_printf(b, ",le=\"%s\"} %llu\n", j < NBUCKETS ? bucket_le[j] : "+Inf",
                                  (unsigned long long)cum);
            }
            const char *suffix[2] = {"_count", "_sum"};
            for (int k = 0; k < 2; k++) {
                cmi_strbuf_printf(b, "%s%s{", name, suffix[k]);
                labels(b, m, s, kind == SVC_API ? (int)u : -1);
                cmi_strbuf_putc(b, '}');
                if (k == 0)
                    cmi_metrics_value(b, (double)count);
                else
                    seconds(b, atomic_load(&c->sum_us));
            }
        }
    }
}

static void render_server(cmi_strbuf_t *b, const cmi_metrics_t *m, uint32_t nservices)
{
    cmi_metrics_family(b, "wso2_integration_server_up", "gauge", "Server status");
    cmi_strbuf_printf(b, "wso2_integration_server_up{host=\"%s\",port=\"%d\"}", m->host, m->http_port);
    cmi_metrics_value(b, m->start_time);
    cmi_metrics_family(b, "wso2_integration_server_version", "gauge", "Version and Update Level of Server");
    cmi_strbuf_puts(b, "wso2_integration_server_version{version=\"" PACKAGE_VERSION "\",update_level=\"-\"}");
    cmi_metrics_value(b, m->start_time);
    cmi_metrics_family(b, "wso2_integration_service_up", "gauge", "Service status");
    for (uint32_t i = 0; i < nservices; i++) {
        if (!atomic_load(&m->services[i].deployed))
            continue;
        cmi_strbuf_puts(b, "wso2_integration_service_up{service_name=\"");
        cmi_metrics_label_value(b, m->services[i].name);
        cmi_strbuf_printf(b, "\",service_type=\"%s\"}", kind_type[m->services[i].kind]);
        cmi_metrics_value(b, atomic_load(&m->services[i].up_since));
    }
}

/* The process, under the names Prometheus's client libraries use. */
static void render_process(cmi_strbuf_t *b, double start_time)
{
    long page = sysconf(_SC_PAGESIZE), tick = sysconf(_SC_CLK_TCK);
    unsigned long long utime = 0, stime = 0, vsize = 0;
    long long rss = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f != NULL) {
        /* after "(comm)", which may hold spaces: fields 3.. */
        char line[1024];
        const char *p = fgets(line, sizeof(line), f) ? strrchr(line, ')') : NULL;
        if (p == NULL ||
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %*u %llu %lld",
                   &utime, &stime, &vsize, &rss) != 4)
            utime = stime = vsize = 0, rss = 0;
        fclose(f);
    }
    size_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
        fds += e->d_name[0] != '.';
    if (d != NULL) {
        closedir(d);
        fds -= fds > 0; /* the one opendir holds */
    }
    struct rlimit rl = {0, 0};
    getrlimit(RLIMIT_NOFILE, &rl);
    cmi_metrics_family(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.");
    cmi_strbuf_puts(b, "process_cpu_seconds_total");
    cmi_metrics_value(b, (double)(utime + stime) / (double)(tick > 0 ? tick : 100));
    cmi_metrics_family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    cmi_strbuf_puts(b, "process_resident_memory_bytes");
    cmi_metrics_value(b, (double)rss * (double)page);
    cmi_metrics_family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    cmi_strbuf_puts(b, "process_virtual_memory_bytes");
    cmi_metrics_value(b, (double)vsize);
    cmi_metrics_family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
    cmi_strbuf_puts(b, "process_open_fds");
    cmi_metrics_value(b, (double)fds);
    cmi_metrics_family(b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    cmi_strbuf_puts(b, "process_start_time_seconds");
    cmi_metrics_value(b, start_time);
    cmi_metrics_family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    cmi_strbuf_puts(b, "process_max_fds");
    cmi_metrics_value(b, rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
}

/* The backends the call mediator reached, per endpoint leaf (named, or
 * file:line when inline; inline leaves of one line share the series):
 * counted under each leaf's lock, read under it. */
static void render_endpoints(cmi_strbuf_t *b, const cmi_config_t *config)
{
    if (config == NULL)
        return; /* the end: the deployment has gone */
    cmi_htab_t by_name; /* name -> its index in the arrays below */
    cmi_htab_init(&by_name, b->arena);
    static const char *const status[CMI_EP_STATUSES] = {"2xx", "3xx", "4xx", "5xx", "error"};
    static const char *const le[CMI_EP_BUCKETS] = {"0.005", "0.01", "0.025", "0.05", "0.1",
                                                   "0.25",  "0.5",  "1",     "2.5",  "5"};
    size_t n = 0;
    for (const cmi_endpoint_state_t *s = config->endpoint_states; s != NULL; s = s->next)
        n++;
    cmi_endpoint_counts_t *counts = cmi_arena_calloc(b->arena, n ? n : 1, sizeof(*counts));
    int *suspended = cmi_arena_calloc(b->arena, n ? n : 1, sizeof(*suspended));
    const cmi_endpoint_t **leaves = cmi_arena_calloc(b->arena, n ? n : 1, sizeof(*leaves));
    int64_t now = (int64_t)cmi_monotonic_ms();
    size_t i = 0;
    for (cmi_endpoint_state_t *s = config->endpoint_states; s != NULL; s = s->next) {
        const char *name = cmi_endpoint_name(s->leaf);
        size_t *at = cmi_htab_gets(&by_name, name);
        if (at == NULL) {
            at = cmi_arena_alloc(b->arena, sizeof(*at));
            *at = i++;
            cmi_htab_put(&by_name, name, strlen(name), at);
            leaves[*at] = s->leaf;
        }
        cmi_endpoint_counts_t *c = &counts[*at];
        pthread_mutex_lock(&s->lock);
        for (int k = 0; k < CMI_EP_STATUSES; k++)
            c->calls[k] += s->counts.calls[k];
        for (int k = 0; k <= CMI_EP_BUCKETS; k++)
            c->latency[k] += s->counts.latency[k];
        c->latency_us += s->counts.latency_us;
        c->suspensions += s->counts.suspensions;
        suspended[*at] |= s->suspended && now < s->until;
        pthread_mutex_unlock(&s->lock);
    }
    n = i;
    cmi_metrics_family(b, "cmi_backend_calls_total", "counter",
                       "Calls of the call and send mediators to an endpoint, by the answer's status class.");
    for (i = 0; i < n; i++)
        for (int k = 0; k < CMI_EP_STATUSES; k++) {
            cmi_strbuf_puts(b, "cmi_backend_calls_total{endpoint=\"");
            cmi_metrics_label_value(b, cmi_endpoint_name(leaves[i]));
            cmi_strbuf_printf(b, "\",status=\"%s\"}", status[k]);
            cmi_metrics_value(b, (double)counts[i].calls[k]);
        }
    cmi_metrics_family(b, "cmi_backend_call_seconds", "histogram", "Time from a call's request to its answer.");
    for (i = 0; i < n; i++) {
        uint64_t cum = 0;
        for (int k = 0; k <= CMI_EP_BUCKETS; k++) {
            cum += counts[i].latency[k];
            cmi_strbuf_puts(b, "cmi_backend_call_seconds_bucket{endpoint=\"");
            cmi_metrics_label_value(b, cmi_endpoint_name(leaves[i]));
            cmi_strbuf_printf(b, "\",le=\"%s\"} %llu\n", k < CMI_EP_BUCKETS ? le[k] : "+Inf",
                              (unsigned long long)cum);
        }
        for (int k = 0; k < 2; k++) {
            cmi_strbuf_printf(b, "cmi_backend_call_seconds%s{endpoint=\"", k ? "_sum" : "_count");
            cmi_metrics_label_value(b, cmi_endpoint_name(leaves[i]));
            cmi_strbuf_puts(b, "\"}");
            if (k)
                seconds(b, counts[i].latency_us);
            else
                cmi_metrics_value(b, (double)cum);
        }
    }
    const char *const names[2] = {"cmi_backend_suspensions_total", "cmi_backend_suspended"};
    cmi_metrics_family(b, names[0], "counter", "Times an endpoint was suspended (suspendOnFailure, markForSuspension).");
    for (i = 0; i < n; i++) {
        cmi_strbuf_printf(b, "%s{endpoint=\"", names[0]);
        cmi_metrics_label_value(b, cmi_endpoint_name(leaves[i]));
        cmi_strbuf_puts(b, "\"}");
        cmi_metrics_value(b, (double)counts[i].suspensions);
    }
    cmi_metrics_family(b, names[1], "gauge", "1 while an endpoint is suspended.");
    for (i = 0; i < n; i++) {
        cmi_strbuf_printf(b, "%s{endpoint=\"", names[1]);
        cmi_metrics_label_value(b, cmi_endpoint_name(leaves[i]));
        cmi_strbuf_puts(b, "\"}");
        cmi_metrics_value(b, suspended[i]);
    }
}

static void render_gauges(cmi_strbuf_t *b, const cmi_metrics_t *m)
{
    static const char *const name[CMI_GAUGES] = {"cmi_http_connections", "cmi_messages_in_flight"};
    static const char *const help[CMI_GAUGES] = {
        "Open client connections of the HTTP and HTTPS listeners.",
        "Messages being mediated (HTTP requests and inbound deliveries)."};
    for (int g = 0; g < CMI_GAUGES; g++) {
        int64_t v = 0;
        for (unsigned i = 0; i < m->nshards; i++)
            v += atomic_load_explicit(&m->shards[i]->gauges[g], memory_order_relaxed);
        cmi_metrics_family(b, name[g], "gauge", help[g]);
        cmi_strbuf_puts(b, name[g]);
        cmi_metrics_value(b, (double)v);
    }
}

void cmi_metrics_render(cmi_metrics_t *m, const cmi_config_t *config, cmi_strbuf_t *b)
{
    unsigned nurls = atomic_load_explicit(&m->nurls, memory_order_acquire);
    uint32_t nservices = atomic_load_explicit(&m->nservices, memory_order_acquire);
    cell_t **sums = cmi_arena_calloc(b->arena, nservices ? nservices : 1, sizeof(*sums));
    for (uint32_t i = 0; i < nservices; i++) {
        sums[i] = cmi_arena_calloc(b->arena, m->services[i].ncells, sizeof(cell_t));
        sum_cells(m, i, sums[i]);
    }
    for (int k = 0; k < SVC_KINDS; k++) {
        render_counter(b, m, (svc_kind_t)k, 0, sums, nservices, nurls);
        render_counter(b, m, (svc_kind_t)k, 1, sums, nservices, nurls);
        render_histogram(b, m, (svc_kind_t)k, sums, nservices, nurls);
    }
    render_server(b, m, nservices);
    render_endpoints(b, config);
    render_gauges(b, m);
    render_process(b, m->start_time);
}
