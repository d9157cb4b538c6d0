/* What a pool tells the internal port (cmi/connector.h's report hooks):
 * its connections for /healthz and cmi_rabbitmq_* metrics
 * (docs/rabbitmq.md, "Metrics and readiness"). */
#include "config.h"

#include <stdio.h>

#include "rmq_consume.h"
#include "rmq_core.h"
#include "rmq_ops.h"

static const cmi_metric_def_t connections_up = {"cmi_rabbitmq_connections_up", CMI_METRIC_GAUGE,
                                                 "Connections of the pool that are up."};
static const cmi_metric_def_t connections = {"cmi_rabbitmq_connections", CMI_METRIC_GAUGE,
                                              "Connections the pool keeps up (poolSize)."};
static const cmi_metric_def_t receivers = {"cmi_rabbitmq_receivers_consuming", CMI_METRIC_GAUGE,
                                            "Receivers of an inbound endpoint attached to their queue."};
static const cmi_metric_def_t reconnects = {"cmi_rabbitmq_reconnects_total", CMI_METRIC_COUNTER,
                                            "Connections up again after they were lost."};
static const cmi_metric_def_t published = {"cmi_rabbitmq_published_total", CMI_METRIC_COUNTER,
                                           "Messages published, by outcome: the broker's (accepted, rejected, released, modified), failed (no outcome: the log says why), timed_out (not sent within publishTimeout), unconfirmed (publisherConfirms=false)."};
static const double confirm_bounds[RMQ_CONFIRM_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25};
static const cmi_metric_def_t confirm = {"cmi_rabbitmq_confirm_seconds", CMI_METRIC_HISTOGRAM,
                                         "Time from sending a message to the broker's outcome.", confirm_bounds,
                                         RMQ_CONFIRM_BUCKETS};
static const cmi_metric_def_t in_flight = {"cmi_rabbitmq_publishes_in_flight", CMI_METRIC_GAUGE,
                                           "Messages sent to the broker whose outcome has not come yet."};
static const cmi_metric_def_t mediating = {"cmi_rabbitmq_deliveries_in_mediation", CMI_METRIC_GAUGE,
                                           "Deliveries of an inbound endpoint in mediation: the credit in use."};
static const cmi_metric_def_t redelivered = {"cmi_rabbitmq_redelivered_total", CMI_METRIC_COUNTER,
                                             "Deliveries the broker had delivered before (not first acquirer)."};
static const cmi_metric_def_t settled = {"cmi_rabbitmq_deliveries_settled_total", CMI_METRIC_COUNTER,
                                         "Deliveries of an inbound endpoint settled, by decision."};

static double load(const atomic_uint_fast64_t *c)
{
    return (double)atomic_load_explicit(c, memory_order_relaxed);
}

/* "a:5672, b:5672" (the first three) */
static void servers(const rmq_pool_t *pool, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < pool->nservers && i < 3 && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", pool->servers[i].hostport);
    if (pool->nservers > 3 && used < n)
        snprintf(buf + used, n - used, ", ...");
}

int rmq_report_pool(const cmi_host_t *h, cmi_report_t *r, rmq_pool_t *pool, int64_t size)
{
    int up = rmq_pool_connections_up(pool);
    h->report_value(r, &connections_up, NULL, 0, up);
    h->report_value(r, &connections, NULL, 0, (double)size);
    h->report_value(r, &reconnects, NULL, 0, load(&pool->stats.reconnects));
    if (up == 0) {
        char where[256];
        servers(pool, where, sizeof(where));
        h->report_not_ready(r, "no connection to RabbitMQ is up (%s; the log says why)", where);
    }
    return up;
}

void rmq_report_publishing(const cmi_host_t *h, cmi_report_t *r, rmq_pool_t *pool)
{
    static const char *const outcome[RMQ_PUBLISHED_KINDS] = {
        [RMQ_OUT_NONE] = "timed_out", [RMQ_OUT_ACCEPTED] = "accepted", [RMQ_OUT_REJECTED] = "rejected",
        [RMQ_OUT_RELEASED] = "released", [RMQ_OUT_MODIFIED] = "modified", [RMQ_OUT_ERROR] = "failed",
        [RMQ_PUBLISHED_UNCONFIRMED] = "unconfirmed"};
    for (int o = 0; o < RMQ_PUBLISHED_KINDS; o++) {
        cmi_nv_t l = {"outcome", outcome[o]};
        h->report_value(r, &published, &l, 1, load(&pool->stats.published[o]));
    }
    uint64_t counts[RMQ_CONFIRM_BUCKETS + 1];
    for (int b = 0; b <= RMQ_CONFIRM_BUCKETS; b++)
        counts[b] = atomic_load_explicit(&pool->stats.confirm[b], memory_order_relaxed);
    h->report_histogram(r, &confirm, NULL, 0, counts, load(&pool->stats.confirm_us) / 1e6);
    h->report_value(r, &in_flight, NULL, 0, (double)atomic_load_explicit(&pool->stats.inflight, memory_order_relaxed));
}

void rmq_report_consuming(const cmi_host_t *h, cmi_report_t *r, rmq_pool_t *pool, const char *what)
{
    static const char *const decision[RMQ_DECISIONS] = {
        [RMQ_DECIDE_ACCEPT] = "accept", [RMQ_DECIDE_DISCARD] = "discard", [RMQ_DECIDE_REQUEUE] = "requeue",
        [RMQ_DECIDE_TIMEOUT] = "ack_wait_timeout", [RMQ_DECIDE_RELEASE] = "released_by_cmi"};
    for (int k = RMQ_DECIDE_ACCEPT; k < RMQ_DECISIONS; k++) {
        cmi_nv_t l = {"decision", decision[k]};
        h->report_value(r, &settled, &l, 1, load(&pool->stats.decided[k]));
    }
    h->report_value(r, &mediating, NULL, 0, (double)atomic_load_explicit(&pool->stats.mediating, memory_order_relaxed));
    h->report_value(r, &redelivered, NULL, 0, load(&pool->stats.redelivered));
    int n = atomic_load(&pool->receiving);
    h->report_value(r, &receivers, NULL, 0, n);
    if (n == 0 && what != NULL) /* NULL: no connection up, said already */
        h->report_not_ready(r, "not consuming from %s", what);
}
