/* What a pool tells the internal port (cmi/connector.h's report hooks):
 * its connections for /healthz and cmi_rabbitmq_* metrics
 * (docs/rabbitmq.md, "Metrics and readiness"). */
#include "config.h"

#include <stdio.h>

#include "rmq_core.h"
#include "rmq_ops.h"

static const cmi_metric_def_t connections_up = {"cmi_rabbitmq_connections_up", CMI_METRIC_GAUGE,
                                                 "Connections of the pool that are up."};
static const cmi_metric_def_t connections = {"cmi_rabbitmq_connections", CMI_METRIC_GAUGE,
                                              "Connections the pool keeps up (poolSize)."};
static const cmi_metric_def_t receivers = {"cmi_rabbitmq_receivers_consuming", CMI_METRIC_GAUGE,
                                            "Receivers of an inbound endpoint attached to their queue."};

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
    if (up == 0) {
        char where[256];
        servers(pool, where, sizeof(where));
        h->report_not_ready(r, "no connection to RabbitMQ is up (%s; the log says why)", where);
    }
    return up;
}

void rmq_report_consuming(const cmi_host_t *h, cmi_report_t *r, rmq_pool_t *pool, const char *what)
{
    int n = atomic_load(&pool->receiving);
    h->report_value(r, &receivers, NULL, 0, n);
    if (n == 0)
        h->report_not_ready(r, "not consuming from %s", what);
}
