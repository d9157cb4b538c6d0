/* The operations and the listener that rmq_module.c's tables name, and
 * a connection config's state (cmi_instance_t.data). */
#ifndef RMQ_OPS_H
#define RMQ_OPS_H

#include "rmq_core.h"

typedef struct rmq_rpcs rmq_rpcs_t;

/* <rabbitmq.init>: its pool, and sendRpc's state over it. */
typedef struct {
    rmq_pool_t *pool;
    rmq_rpcs_t *rpcs;
} rmq_instance_t;

/* ---- readiness and metrics (rmq_report.c) ---------------------------------------- */

/* A pool's connections (up, of size): not ready when none is up.
 * Returns the number up. */
int rmq_report_pool(const cmi_host_t *h, cmi_report_t *r, rmq_pool_t *pool, int64_t size);
/* A connection config's publishes: outcomes and confirm latency. */
void rmq_report_publishing(const cmi_host_t *h, cmi_report_t *r, rmq_pool_t *pool);
/* An inbound endpoint's receivers (not ready when none consumes from what)
 * and its deliveries by decision. */
void rmq_report_consuming(const cmi_host_t *h, cmi_report_t *r, rmq_pool_t *pool, const char *what);

/* ---- request-reply (rmq_rpc.c) --------------------------------------------------- */

int rmq_rpc_run(cmi_call_t *call);
int rmq_rpc_prepare(cmi_binding_t *b, char *err, size_t n);
void rmq_rpc_release(cmi_binding_t *b);
/* The state of request-reply of one connection config: requests by
 * correlation-id, the reply queues consumed. */
rmq_rpcs_t *rmq_rpcs_create(rmq_pool_t *pool);
/* After the pool is destroyed (no reply can come any more). */
void rmq_rpcs_destroy(rmq_rpcs_t *rs);

/* ---- operations (rmq_publish.c) ------------------------------------------------ */

int rmq_publish_run(cmi_call_t *call);
/* rmq_listener.c: the inbound endpoint and the decisions. */
extern const cmi_listener_def_t rmq_listeners[];
int rmq_accept_run(cmi_call_t *call);
int rmq_discard_run(cmi_call_t *call);
int rmq_requeue_run(cmi_call_t *call);
int rmq_publish_prepare(cmi_binding_t *b, char *err, size_t n);
void rmq_publish_release(cmi_binding_t *b);

#endif
