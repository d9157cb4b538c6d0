/* The services' counters behind MI's Prometheus metrics (docs/operations.md,
 * "Metrics and health").
 *
 * One shard per worker: a worker counts only in its own shard, with relaxed
 * atomic loads and stores (no lock, no locked instruction: it is the only
 * writer); the internal port sums the shards when it is scraped.  A
 * service's cells in a shard are allocated by the worker the first time it
 * counts for that service, so memory follows what is used, not workers x
 * services. */
#ifndef CMI_RUNTIME_METRICS_H
#define CMI_RUNTIME_METRICS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/str.h"

typedef struct cmi_config cmi_config_t;
typedef struct cmi_metrics cmi_metrics_t;
typedef struct cmi_metrics_shard cmi_metrics_shard_t;

/* Distinct local addresses (scheme, IP, port) MI's invocation_url label
 * tells apart; connections to further ones count under the last. */
#define CMI_METRICS_URLS 8
#define CMI_METRICS_NO_SERVICE UINT32_MAX
/* Services (APIs, proxy services, inbound endpoints by name) counted from
 * the start, across reloads. */
#define CMI_METRICS_MAX_SERVICES 1024

/* Engine gauges a worker keeps in its shard. */
typedef enum {
    CMI_GAUGE_CONNECTIONS = 0, /* open client connections */
    CMI_GAUGE_INFLIGHT,        /* messages alive */
    CMI_GAUGES
} cmi_gauge_t;

/* Makes nshards shards.  start_time: the epoch seconds MI's *_up gauges
 * hold; http_port: the label of wso2_integration_server_up.  Aborts when
 * memory is out (cmi_xcalloc). */
cmi_metrics_t *cmi_metrics_create(unsigned nshards, double start_time, int http_port);
/* Main thread, before config serves: the metric_slot of each of its
 * services (an API, proxy service or inbound endpoint keeps its counts
 * across reloads by its name); the services it lacks are no longer
 * deployed (their counts stay).  now: epoch seconds (service_up). */
void cmi_metrics_deploy(cmi_metrics_t *m, cmi_config_t *config, double now);
void cmi_metrics_destroy(cmi_metrics_t *m);
cmi_metrics_shard_t *cmi_metrics_shard(cmi_metrics_t *m, unsigned i);

/* Any thread (a worker, once per accepted connection): the slot of the
 * invocation URL "scheme://IP:port" of a connection that arrived at
 * local.  Takes a lock only the first time an address is seen. */
unsigned cmi_metrics_url_slot(cmi_metrics_t *m, int tls, const struct sockaddr *local, socklen_t len);

/* Shard owner: a message of service (a metric_slot) finished; url: its
 * connection's slot (0 for inbound endpoints); error: it went through
 * fault handling (MI counts mediation faults, not HTTP statuses). */
void cmi_metrics_observe(cmi_metrics_shard_t *s, uint32_t service, unsigned url, uint64_t latency_ns, int error);
void cmi_metrics_gauge_add(cmi_metrics_shard_t *s, cmi_gauge_t g, int64_t delta);

/* The service thread: the MI families (request counts, errors, latency
 * histograms, server and service gauges), the backends of config (the
 * deployment served) and the engine's gauges, as Prometheus text,
 * appended to b. */
void cmi_metrics_render(cmi_metrics_t *m, const cmi_config_t *config, cmi_strbuf_t *b);

/* Prometheus text helpers (shared with the connectors' reports). */
void cmi_metrics_family(cmi_strbuf_t *b, const char *name, const char *type, const char *help);
/* A label value escaped as the text format wants (\\, \", \n). */
void cmi_metrics_label_value(cmi_strbuf_t *b, const char *v);
/* A number: integers exactly, others in the fewest digits (15 or 17)
 * that read back as v; cmi_metrics_value writes " NUMBER\n". */
void cmi_metrics_number(cmi_strbuf_t *b, double v);
void cmi_metrics_value(cmi_strbuf_t *b, double v);

#endif
