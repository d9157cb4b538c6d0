/* Consuming's private structures, shared by rmq_consume.c (receivers,
 * credit, the feature's hooks) and rmq_delivery.c (deliveries: settling,
 * decisions from the workers, their deadlines).  rmq_consume.c calls
 * rmq_delivery.c; a freed slot of credit comes back through
 * cs->credit_freed. */
#ifndef RMQ_CONSUME_INT_H
#define RMQ_CONSUME_INT_H

#include "rmq_consume.h"

#define LOG(cs, level, ...) RMQ_LOG((cs)->pool, level, __VA_ARGS__)

typedef struct rmq_rlink rmq_rlink_t;
typedef struct rmq_consumer rmq_consumer_t;

/* A consumer: the receivers of one inbound endpoint (or of sendRpc's
 * replies), one per rabbitmq.concurrent.consumers.count, on every
 * connection. */
struct rmq_consumer {
    SLIST_ENTRY(rmq_consumer) entry;
    rmq_consumer_spec_t spec; /* its target is owned here */
    /* Why it last could not consume: a failure that repeats on every retry
     * is logged once (then at debug) until consuming works again. */
    char last_error[256];
    int64_t last_no_decision_log; /* "ended without a decision": at most every 10 s */
    /* Flows still running on deliveries whose receiver or connection went
     * (the broker redelivers those): per receiver slot, they count against
     * the credit of the receivers attached since, so a reconnect does not
     * add to the number of messages in mediation. */
    int *orphans;
    /* The engine refused a message (it is stopping): no more credit. */
    int refused;
    /* Its deliveries in mediation (and orphans), over all receivers: at
     * most spec.max_mediating when that is set; beyond it they park. */
    int mediating;
    int64_t throttle_woken; /* the throttle's deadline last acted on */
    /* A stream's consumer (rmq_stream.c): the highest offset settled, the
     * last one saved, where a receiver attaches next (-1: by the spec), the
     * next save, the last decision logged as not applying to a stream. */
    int64_t stream_done, stream_safe, stream_saved, stream_resume, stream_flush_at, stream_decision_log;
};
SLIST_HEAD(consumer_list, rmq_consumer);

typedef STAILQ_HEAD(, rmq_delivery) parked_list_t;

struct rmq_rlink {
    rmq_link_tag_t tag; /* RMQ_ROLE_RECEIVER */
    SLIST_ENTRY(rmq_rlink) entry;
    rmq_conn_t *conn;
    rmq_consumer_t *consumer;
    /* Its own session: a broker that refuses the receiver by ending the
     * session (3.x over a queue declared otherwise) costs only this
     * receiver, never the connection and the others on it. */
    pn_session_t *ssn;
    pn_link_t *pn;
    int ready;
    int waiting_decl; /* its queue is being declared on this connection */
    int64_t retry_at; /* the broker closed it: attach again then */
    char name[64];
    int slot; /* which of the consumer's rabbitmq.concurrent.consumers.count */
    /* At most `credit` messages are in mediation, whatever the broker
     * sends: RabbitMQ 3.x adds up flow frames that cross on the wire, and
     * what it sends beyond the credit waits here, unsettled. */
    int in_mediation;
    parked_list_t parked;
    size_t nparked;
};

typedef enum { RMQ_WORK_DECIDE = 1, RMQ_WORK_DONE = 2 } rmq_work_kind_t;

/* A decision or a flow's end, from a worker to the pool thread. */
struct rmq_dwork {
    SLIST_ENTRY(rmq_dwork) entry;
    rmq_delivery_t *d;
    rmq_work_kind_t kind;
};
SLIST_HEAD(dwork_list, rmq_dwork);

typedef TAILQ_HEAD(delivery_list, rmq_delivery) delivery_list_t;

/* A message on its way to the final dead-letter target (rmq_final.c). */
typedef struct rmq_final_job rmq_final_job_t;
typedef TAILQ_HEAD(final_list, rmq_final_job) final_list_t;

/* One message a receiver got: shared by the pool thread and the flow that
 * mediates it (a reference each; the last one frees it). */
struct rmq_delivery {
    TAILQ_ENTRY(rmq_delivery) out_entry;   /* its connection's unsettled, oldest first (ack wait) */
    TAILQ_ENTRY(rmq_delivery) rq_entry;    /* its connection's flows over without a decision */
    TAILQ_ENTRY(rmq_delivery) live_entry;  /* every delivery its connection still holds */
    STAILQ_ENTRY(rmq_delivery) park_entry; /* its receiver's parked */
    struct rmq_consume *cs;
    rmq_conn_t *conn;   /* NULL once its connection is gone */
    rmq_rlink_t *rlink; /* NULL once its connection is gone */
    pn_delivery_t *pd;  /* pool thread; NULL once settled or gone */
    atomic_int decision; /* rmq_decision_t; RMQ_DECIDE_NONE until the first decision */
    atomic_int refs;
    int settled;   /* pool thread: an outcome was sent (or the connection is gone) */
    int flow_done; /* pool thread: the flow's end was seen */
    int queued_rq; /* pool thread: in the rq list */
    int in_out;    /* pool thread: in the out list */
    int64_t ack_deadline, requeue_at;
    char message_id[128];
    int mediating;  /* pool thread: counted in its receiver's in_mediation */
    int auto_acked; /* pool thread: the broker sent it settled (auto-ack) */
    int requeue_as_discard; /* its consumer's, copied on arrival (read by the workers) */
    rmq_consumer_t *orphan_of; /* pool thread: its flow counts in orphan_of->orphans[slot] */
    int slot;
    char *raw; /* pool thread: the encoded message while parked */
    size_t raw_len;
    rmq_final_job_t *final; /* pool thread: a candidate for the final dead-letter target, or on its way */
    int64_t stream_offset;  /* a stream's message: its offset; else -1 */
};

/* What consuming keeps of one connection (cs thread). */
typedef struct {
    SLIST_HEAD(, rmq_rlink) rlinks;
    delivery_list_t out;      /* unsettled, oldest first */
    delivery_list_t rq;       /* requeue delays, by their end */
    delivery_list_t live;     /* every delivery it still holds */
    struct dwork_list dwork;  /* decisions and ended flows to apply here */
    final_list_t finals;      /* its deliveries' final dead-letter jobs with a deadline */
} cconn_t;

/* Consuming's state in one pool. */
typedef struct rmq_consume rmq_consume_t;
/* A slot of credit is free: the delivery in it is settled and its flow
 * over (r: its receiver, or orphan_of/slot: a receiver that went). */
typedef void (*rmq_credit_freed_fn)(rmq_consume_t *cs, rmq_rlink_t *r, rmq_consumer_t *orphan_of, int slot);

struct rmq_consume {
    rmq_pool_t *pool;
    rmq_credit_freed_fn credit_freed;
    /* Handed over from other threads, under lock. */
    pthread_mutex_t lock;
    struct consumer_list new_consumers;
    struct dwork_list dwork_inbox;
    int stop_consuming;
    int nfinals; /* deliveries on their way to a final dead-letter target */
    pthread_cond_t finals_cv;
    /* rmq_final.c's, which sits above rmq_delivery.c: the delivery calls it
     * only through these (no call cycle between the files). */
    int (*final_take)(rmq_consume_t *cs, rmq_delivery_t *d, int decision);
    void (*final_detach)(rmq_consume_t *cs, rmq_delivery_t *d);
    void (*final_free)(rmq_final_job_t *job);
    /* Pool thread. */
    pn_message_t *scratch; /* each message is decoded into it (rmq_message_decode) */
    struct consumer_list consumers;
    int consuming_stopped;
    cconn_t *conns; /* by connection index */
};


static inline cconn_t *cc_of(rmq_consume_t *cs, const rmq_conn_t *c)
{
    return &cs->conns[c->index];
}

/* ---- rmq_delivery.c (pool thread, but for decide/flow_done) ------------------------------ */

void rmq_delivery_unref(rmq_delivery_t *d);
/* A new delivery on its connection; rmq_delivery_await puts it under the
 * ack wait and returns 1 when its deadline is now the earliest. */
void rmq_delivery_track(rmq_delivery_t *d);
int rmq_delivery_await(rmq_delivery_t *d);
/* d no longer belongs to a connection or a receiver (they are going). */
void rmq_delivery_detach(rmq_delivery_t *d);
/* Settled and its flow over: the pool's reference goes, and a slot of credit. */
void rmq_delivery_finish(rmq_consume_t *cs, rmq_delivery_t *d);
void rmq_delivery_settle(rmq_consume_t *cs, rmq_delivery_t *d, int decision);
/* Decisions and ended flows from the inbox: to their connection (applied
 * in its events by rmq_delivery_apply_all), or at once when it is gone. */
void rmq_delivery_take_work(rmq_consume_t *cs, struct dwork_list *work);
void rmq_delivery_apply_all(rmq_consume_t *cs, rmq_conn_t *c);
int64_t rmq_delivery_next_deadline(const cconn_t *cc);
/* Requeue delays and ack waits that ran out on c; 1 when some did. */
int rmq_delivery_timeouts(rmq_consume_t *cs, rmq_conn_t *c, int64_t now);
/* c is gone: its deliveries go back to the queue with it. */
void rmq_delivery_conn_closed(rmq_consume_t *cs, rmq_conn_t *c);
/* Shutdown: what c holds unsettled is released, decisions first. */
void rmq_delivery_release_all(rmq_consume_t *cs, rmq_conn_t *c);

/* ---- rmq_final.c (pool thread) ---------------------------------------------------------------- */

/* On arrival, m decoded: d becomes a candidate when its consumer has a
 * final target and the broker dead-lettered it max_dl times already. */
void rmq_final_prepare(rmq_delivery_t *d, pn_message_t *m, size_t raw_len);
/* d (a candidate) is being settled with decision: 1 when it goes to the
 * final target instead (a discard), or is on its way there already (d stays
 * unsettled until the copy is confirmed or given up). */
int rmq_final_take(rmq_consume_t *cs, rmq_delivery_t *d, int decision);
/* d's connection is going. */
void rmq_final_detach(rmq_consume_t *cs, rmq_delivery_t *d);
/* With the delivery: a candidate's job. */
void rmq_final_free(rmq_final_job_t *job);
int64_t rmq_final_next_deadline(const cconn_t *cc);
/* Retries, ack waits and give-backs due on c; 1 when a delivery was settled. */
int rmq_final_timeouts(rmq_consume_t *cs, rmq_conn_t *c, int64_t now);
/* A consumer starts on c: on 3.x, said once per connection that the count
 * cannot be enforced. */
void rmq_final_on_start(rmq_consume_t *cs, rmq_conn_t *c, const rmq_consumer_spec_t *spec);

/* ---- rmq_stream.c (pool thread) ---------------------------------------------------------------- */

/* A new consumer of a stream: where it starts (its stored offset). */
void rmq_stream_init(rmq_consume_t *cs, rmq_consumer_t *k);
/* 0, or -1 with why when k cannot consume from c's broker (3.x). */
int rmq_stream_usable(const rmq_consumer_t *k, const rmq_conn_t *c, char *why, size_t n);
/* A receiver attaches: its source's filters (where to start, stream filters). */
void rmq_stream_source(const rmq_consumer_t *k, pn_link_t *pn);
/* On arrival: 1 when the message is to be skipped (its filter value is
 * not one asked for). */
int rmq_stream_skip(const rmq_consumer_t *k, const rmq_incoming_t *m);
/* A stream's message settled: every decision is an accept (a stream keeps
 * its messages), said at most every 10 s when the flow asked otherwise. */
int rmq_stream_settling(rmq_consume_t *cs, rmq_delivery_t *d, int decision);
/* The offset below which everything is settled (the unsettled ones
 * counted while the connections still hold them): where receivers attach
 * again, and what rmq_stream_save writes when it moved. */
void rmq_stream_checkpoint(rmq_consume_t *cs, rmq_consumer_t *k);
void rmq_stream_save(rmq_consume_t *cs, rmq_consumer_t *k);
int64_t rmq_stream_next_deadline(const rmq_consume_t *cs);
void rmq_stream_on_timeout(rmq_consume_t *cs, int64_t now);

#endif
