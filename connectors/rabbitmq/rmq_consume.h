/* Consuming: receivers with credit on the pool's connections, each
 * delivery handed to mediation and settled with the flow's decision.  A
 * feature of the pool core (rmq_core.h): pools that consume are made
 * with rmq_consume_feature. */
#ifndef RMQ_CONSUME_H
#define RMQ_CONSUME_H

#include "rmq_core.h"

extern const rmq_feature_t rmq_consume_feature;

typedef struct rmq_delivery rmq_delivery_t;

/* Decisions on a delivery; the first one wins. */
typedef enum {
    RMQ_DECIDE_NONE,
    RMQ_DECIDE_ACCEPT,
    RMQ_DECIDE_DISCARD,
    RMQ_DECIDE_REQUEUE, /* the flow's: a failed delivery */
    RMQ_DECIDE_TIMEOUT, /* its flow outran the ack wait: a failed delivery too */
    RMQ_DECIDE_RELEASE  /* cmi's, for a message no flow finished (stopping, never mediated): not counted */
} rmq_decision_t;


/* What the deliver callback did with a message. */
typedef enum {
    RMQ_DELIVER_MEDIATING = 0, /* the flow will call rmq_delivery_flow_done */
    RMQ_DELIVER_DONE = 1,      /* dealt with already: accepted */
    RMQ_DELIVER_REFUSED = -1,  /* the engine refused it (stopping): released */
    RMQ_DELIVER_UNUSABLE = -2, /* the payload cannot be mediated: rejected */
} rmq_deliver_result_t;

/* Pool thread: hands the message to mediation. */
typedef rmq_deliver_result_t (*rmq_deliver_fn)(void *arg, rmq_delivery_t *d, const rmq_incoming_t *m);

/* MI's FIXED_DELAY_RETRYABLE_DISCARD with rabbitmq.max.dead.lettered.count
 * (rmq_final.c): a message the flow discards after the broker dead-lettered
 * it max_dl times from this queue (x-opt-deaths, 4.x) is published to the
 * final target with a confirm first, then accepted; the strings are
 * borrowed from the endpoint's parameters. */
typedef struct {
    int enabled;             /* 0 (a zeroed spec): no final target */
    int64_t max_dl;
    const char *queue;       /* the consumed queue, as x-opt-deaths names it */
    const char *vhost;
    const char *exchange;    /* the final exchange, or NULL */
    const char *routing_key; /* NULL: the message's own */
    const char *final_queue; /* used when there is no final exchange */
    uint64_t retry_interval_ms;
    int64_t retry_count;     /* retries after the first attempt */
    double factor;           /* the n-th retry waits retry_interval * factor^(n-1) */
    uint64_t ack_wait_ms;    /* an attempt without a confirm by then failed */
} rmq_final_spec_t;

/* A stream queue's consumer (docs/rabbitmq.md, "Streams"): where it starts,
 * its filters (4.x), and the offset cmi keeps for it (rmq_stream.c).  The
 * strings are borrowed from the endpoint's parameters; the store is the
 * endpoint's. */
typedef struct {
    int enabled;
    const char *strategy; /* "first", "last" or "next": without an offset to start at */
    int64_t start;        /* the first offset to read, -1: by strategy */
    cmi_param_list_t filters;
    int match_unfiltered;
    uint64_t flush_ms;           /* the offset is saved this often */
    rmq_offset_store_t *store;   /* NULL: kept in memory only */
} rmq_stream_spec_t;

typedef struct {
    rmq_target_t target; /* the queue, and what to declare first */
    int links;           /* receivers per connection */
    int credit;          /* deliveries in mediation at once, per receiver */
    /* Deliveries in mediation at once over all the receivers (MI's
     * rabbitmq.message.receiver.thread.pool.size); 0: only the credit bounds. */
    int max_mediating;
    /* MI's rabbitmq.classic.override.requeue.with.discard: a requeue
     * becomes a discard (a classic queue would redeliver it forever). */
    int requeue_as_discard;
    int auto_ack;
    uint64_t ack_wait_ms;      /* a flow still running then: requeued */
    uint64_t requeue_delay_ms; /* a flow over without a decision: requeued after this */
    /* MI's rabbitmq.throttle.*: credit only for the messages that may start
     * (its state lives here, on the pool thread, once consuming starts). */
    rmq_throttle_t throttle;
    rmq_final_spec_t final;
    rmq_stream_spec_t stream;
    rmq_deliver_fn deliver;
    void *arg;
} rmq_consumer_spec_t;

/* Any thread: starts consuming (the target passes to the pool). */
void rmq_pool_consume(rmq_pool_t *pool, rmq_consumer_spec_t *spec);
/* Any thread: no new deliveries; those in mediation go on. */
void rmq_pool_stop_consuming(rmq_pool_t *pool);
/* Any thread: records a decision; returns 1 when it is the first one. */
int rmq_delivery_decide(rmq_delivery_t *d, int decision);
/* Any thread, once: the flow that mediated d is over. */
void rmq_delivery_flow_done(rmq_delivery_t *d);
const char *rmq_delivery_message_id(const rmq_delivery_t *d);
/* Any thread: waits until no message of the pool is on its way to a final
 * dead-letter target, at most timeout_ms; returns how many still are. */
int rmq_pool_wait_finals(rmq_pool_t *pool, uint64_t timeout_ms);

#endif
