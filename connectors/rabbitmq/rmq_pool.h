/* The pool's private structures, shared by rmq_pool.c (connections,
 * publishing) and rmq_consume.c (consumers and their deliveries).  Every
 * field marked "pool thread" is touched only by the proactor's thread. */
#ifndef RMQ_POOL_H
#define RMQ_POOL_H

#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/proactor.h>
#include <proton/session.h>

#include "rmq.h"

typedef struct rmq_rlink rmq_rlink_t;
typedef struct rmq_consumer rmq_consumer_t;

enum { CONN_DOWN, CONN_CONNECTING, CONN_UP, CONN_CLOSED };
enum { DECL_RUNNING, DECL_DONE };

typedef struct {
    rmq_pub_t *head, *tail;
    size_t n;
} pub_list_t;

typedef struct rmq_conn rmq_conn_t;
typedef struct mgmt_result mgmt_result_t;

typedef struct rmq_link {
    struct rmq_link *next;
    rmq_conn_t *conn;
    char *address;
    pn_link_t *pn;
    int ready;
    pub_list_t pending; /* waiting for the attach or for credit */
    size_t inflight;    /* sent on it, no outcome yet */
} rmq_link_t;

typedef struct rmq_decl {
    struct rmq_decl *next;
    rmq_conn_t *conn;
    char *key;
    int state;
    pub_list_t waiting;
    /* RabbitMQ 4.x: the requests, sent one by one over /management. */
    rmq_declare_t *ops;
    size_t nops, next_op;
    char request_id[32]; /* the message-id of the request awaiting its answer */
    int64_t deadline;    /* while running: when to give up on the answer */
} rmq_decl_t;

struct rmq_conn {
    rmq_pool_t *pool;
    int index;
    int state;
    unsigned generation; /* bumped at each connect: late results of an older one are ignored */
    pn_connection_t *pn;
    pn_session_t *ssn;
    unsigned url; /* the server tried last */
    int format;
    char broker[64];
    rmq_link_t *links;
    size_t nlinks;
    rmq_decl_t *decls;
    size_t ndecls;
    /* RabbitMQ 4.x's management link pair (/management), made on first use. */
    pn_link_t *mgmt_out, *mgmt_in;
    int mgmt_ready;
    pub_list_t inflight;
    size_t queued; /* pending on its links and declarations, or to do */
    uint64_t tag;
    /* Work handed to this connection from outside its own events, done in
     * its PN_CONNECTION_WAKE. */
    pub_list_t todo;
    mgmt_result_t *results;
    int statics_pending;
    int close_requested;
    int decls_expired; /* some declaration's answer is overdue */
    /* Recovery. */
    int ever_up;
    unsigned failures; /* consecutive failed attempts */
    int64_t retry_at;  /* proactor clock, ms; 0: none */
    int64_t open_deadline; /* connecting: give up on this attempt then */
    char close_why[512];   /* the broker's reason, when it closed the connection */
    int64_t cycle_start;
    int logged_state; /* the state last logged, so each change is logged once */
    /* Consuming (rmq_consume.c). */
    rmq_rlink_t *rlinks;
    rmq_delivery_t *out_head, *out_tail; /* unsettled, oldest first (ack wait) */
    rmq_delivery_t *live;                /* every delivery the pool still holds */
    rmq_delivery_t *rq_head, *rq_tail;   /* flows over without a decision, by requeue time */
    struct rmq_dwork *dwork;             /* decisions and ended flows to apply here */
};

struct mgmt_result {
    struct mgmt_result *next;
    rmq_pool_t *pool;
    int conn;
    unsigned generation;
    char *key;
    int status;
    char detail[512];
};

typedef struct static_target {
    struct static_target *next;
    rmq_target_t target;
} static_target_t;

typedef struct {
    char *host;
    char *hostport;
} server_t;

#define RMQ_RPC_SLOTS 1024

/* A queue the pool consumes replies from (rmq_rpc.c). */
typedef struct rmq_reply_queue {
    struct rmq_reply_queue *next;
    char *name;
    char *key; /* its declarations: a second sendRpc must not declare it otherwise */
} rmq_reply_queue_t;

struct rmq_pool {
    const cmi_host_t *host;
    char component[RMQ_COMPONENT_MAX];
    const rmq_init_params_t *p;
    server_t *servers;
    size_t nservers;
    char container[128];
    pn_proactor_t *proactor;
    pthread_t thread;
    /* Handed over from other threads, under lock. */
    pthread_mutex_t lock;
    pub_list_t inbox;
    mgmt_result_t *results;
    static_target_t *new_statics;
    int stop_requested;
    /* Pool thread only. */
    rmq_conn_t *conns;
    size_t nconns;
    pub_list_t waiting;
    static_target_t *statics;
    struct rmq_refused *refused; /* addresses whose attach ended the session (pool thread) */
    rmq_mgmt_t *mgmt;
    int stopping;
    int64_t stop_deadline;
    uint64_t rng;
    int started;
    int inactive;         /* stopping: the proactor has let go of everything */
    atomic_int reap;      /* a deadline passed: take cancelled publishes out */
    int closed_timeouts;  /* stopping: timeouts seen after the last close */
    pn_connection_t *cur; /* the connection whose events are being handled */
    /* Consuming (rmq_consume.c): consumers under lock until the pool thread
     * takes them; work from the workers under lock. */
    rmq_consumer_t *new_consumers;
    struct rmq_dwork *dwork_inbox;
    int stop_consuming;
    rmq_consumer_t *consumers; /* pool thread */
    int consuming_stopped;     /* pool thread */
    /* Request-reply (rmq_rpc.c): requests waiting for their reply, by
     * correlation-id, and the reply queues consumed; under rpc_lock. */
    pthread_mutex_t rpc_lock;
    rmq_rpc_t *rpc_table[RMQ_RPC_SLOTS];
    rmq_reply_queue_t *reply_queues;
    char rpc_prefix[24]; /* random: correlation-ids and reply queues unique to this pool */
    atomic_ullong rpc_seq;
    atomic_ulong rpc_late;            /* replies that found no request */
    atomic_llong rpc_late_logged;     /* when that was last logged */
    atomic_int format; /* address format of the last connection up (reply-to addresses) */
};

/* A consumer: the receivers of one inbound endpoint, one per
 * rabbitmq.concurrent.consumers.count, on every connection. */
struct rmq_consumer {
    rmq_consumer_t *next;
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
};

struct rmq_rlink {
    rmq_rlink_t *next;
    rmq_conn_t *conn;
    rmq_consumer_t *consumer;
    pn_link_t *pn;
    int ready;
    int waiting_decl;  /* its queue is being declared on this connection */
    int64_t retry_at;  /* the broker closed it: attach again then */
    char name[64];
    int slot;          /* which of the consumer's rabbitmq.concurrent.consumers.count */
    /* At most `credit` messages are in mediation, whatever the broker
     * sends: RabbitMQ 3.x adds up flow frames that cross on the wire, and
     * what it sends beyond the credit waits here, unsettled. */
    int in_mediation;
    rmq_delivery_t *parked_head, *parked_tail;
    size_t nparked;
};

enum { RMQ_WORK_DECIDE = 1, RMQ_WORK_DONE = 2 };

struct rmq_dwork {
    struct rmq_dwork *next;
    rmq_delivery_t *d;
    int kind;
};

/* One message a receiver got: shared by the pool thread and the flow that
 * mediates it (a reference each; the last one frees it). */
struct rmq_delivery {
    rmq_delivery_t *prev, *next;       /* conn->out list (pool thread) */
    rmq_delivery_t *rq_prev, *rq_next; /* conn->rq list (pool thread) */
    rmq_pool_t *pool;
    rmq_conn_t *conn;   /* NULL once its connection is gone */
    rmq_rlink_t *rlink; /* NULL once its connection is gone */
    pn_delivery_t *pd;  /* pool thread; NULL once settled or gone */
    atomic_int decision; /* RMQ_DECIDE_*; 0 until the first decision */
    atomic_int refs;
    int settled;    /* pool thread: an outcome was sent (or the connection is gone) */
    int flow_done;  /* pool thread: the flow's end was seen */
    int queued_rq;  /* pool thread: in conn->rq */
    int in_out;     /* pool thread: in conn->out */
    int64_t ack_deadline, requeue_at;
    char message_id[128];
    int mediating;   /* pool thread: counted in its receiver's in_mediation */
    int auto_acked;  /* pool thread: the broker sent it settled (auto-ack) */
    rmq_consumer_t *orphan_of; /* pool thread: its flow counts in orphan_of->orphans[slot] */
    int slot;
    rmq_delivery_t *live_prev, *live_next; /* conn->live (pool thread) */
    char *raw;       /* pool thread: the encoded message while parked */
    size_t raw_len;
    rmq_delivery_t *parked_next;
};


/* ---- hooks of rmq_consume.c, called by the pool on its thread ------------------- */

/* A declaration done (status 0) or failed on c: receivers waiting for it attach. */
void rmq_consume_on_declared(rmq_pool_t *pool, rmq_conn_t *c, const char *key, int status, const char *detail);
/* The pool's own declaration machinery, for the consumers' queues. */
rmq_decl_t *rmq_pool_declare(rmq_pool_t *pool, rmq_conn_t *c, const rmq_target_t *t);
/* 4.x: sends the declaration requests that are ready (after the caller
 * has recorded what waits for them). */
void rmq_pool_declare_flush(rmq_pool_t *pool, rmq_conn_t *c);
int rmq_target_needs_declaring(const rmq_target_t *t, int format);

/* A connection is up: attach its receivers. */
void rmq_consume_on_up(rmq_pool_t *pool, rmq_conn_t *c);
/* An event of a receiver link: returns 1 when it was one. */
int rmq_consume_on_event(rmq_pool_t *pool, pn_event_t *e);
/* Decisions and ended flows handed to c from other threads. */
void rmq_consume_on_wake(rmq_pool_t *pool, rmq_conn_t *c);
/* The connection is gone with its deliveries (the broker requeues them). */
void rmq_consume_on_closed(rmq_pool_t *pool, rmq_conn_t *c);
/* Moves work from the locked inbox to the connections (with wakes). */
void rmq_consume_take_inbox(rmq_pool_t *pool);
/* The earliest delivery deadline (ack wait, requeue delay), 0: none. */
int64_t rmq_consume_next_deadline(rmq_pool_t *pool);
void rmq_consume_on_timeout(rmq_pool_t *pool, int64_t now);
/* Shutdown: what is still unsettled is released before the close. */
void rmq_consume_release_all(rmq_pool_t *pool, rmq_conn_t *c);
void rmq_consume_dispose(rmq_pool_t *pool);
/* Frees what request-reply holds (the pool thread gone). */
void rmq_rpc_dispose(rmq_pool_t *pool);

int64_t rmq_pool_now(void);
void rmq_pool_arm_timer(rmq_pool_t *pool);
const char *rmq_condition_text(pn_condition_t *cond, char *buf, size_t n);

#endif
