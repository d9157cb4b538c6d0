/* The pool core: the structures of one connection pool (spec in
 * docs/rabbitmq.md, "The connection pool") and what the core offers the
 * features built on it.
 *
 * The core is four files around one proton proactor and its thread:
 *   rmq_pool.c     the pool's life, its thread, the event switch, the inbox
 *                  and the timer;
 *   rmq_conn.c     connections: connecting, the broker's version, recovery;
 *   rmq_declare.c  declarations: the 3.x HTTP management API and 4.x's
 *                  /management link pair;
 *   rmq_send.c     publishing: routing a publish to a connection and a
 *                  sender (each sender on an AMQP session of its own),
 *                  outcomes, refused addresses (rmq_refused.c).
 * They call downwards only (pool -> send -> declare -> conn).  Features
 * (consuming, rmq_consume.c) register a table of hooks (rmq_feature_t)
 * when the pool is made; the core calls them only through it, and
 * operations (publishMessage, sendRpc) give each publish a completion
 * callback.
 *
 * Every proton link carries a tag (rmq_link_tag_t, its first member) that
 * names its role; the event switch dispatches link events on it. */
#ifndef RMQ_CORE_H
#define RMQ_CORE_H

#include <time.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/proactor.h>
#include <proton/session.h>
#include <sys/queue.h>

#include "rmq.h"
#include "rmq_tls.h"

#define RMQ_LOG(pool, level, ...) (pool)->host->log((level), (pool)->component, __VA_ARGS__)

typedef struct rmq_conn rmq_conn_t;

/* ---- links ---------------------------------------------------------------------------- */

typedef enum {
    RMQ_ROLE_SENDER = 1,     /* publishes (rmq_send.c) */
    RMQ_ROLE_RECEIVER,       /* consumers, sendRpc's reply receivers among them (a feature) */
    RMQ_ROLE_MGMT_REQUEST,   /* 4.x /management, requests (rmq_declare.c) */
    RMQ_ROLE_MGMT_RESPONSE,  /* 4.x /management, answers (rmq_declare.c) */
} rmq_role_t;

/* The first member of every link context. */
typedef struct {
    rmq_role_t role;
} rmq_link_tag_t;

/* Senders per connection at most (dynamic targets; fewer when the broker
 * allows fewer sessions). */
#define RMQ_MAX_SENDERS 256

/* A sender of publishes, alone on its session (the session's context):
 * what the broker ends for its address ends nothing else. */
typedef struct rmq_link {
    rmq_link_tag_t tag;
    TAILQ_ENTRY(rmq_link) entry; /* most recently used first */
    rmq_conn_t *conn;
    char *address;
    pn_session_t *ssn;
    pn_link_t *pn;
    int ready;
    int64_t attach_deadline; /* attaching: when to give up on the broker's answer */
    rmq_pub_list_t pending; /* waiting for the attach or for credit */
    size_t inflight;        /* sent on it, no outcome yet */
} rmq_link_t;

/* ---- declarations --------------------------------------------------------------------- */

typedef enum { RMQ_DECL_RUNNING, RMQ_DECL_DONE } rmq_decl_state_t;
/* A declaration's status when the broker says that what must exist does not
 * (4.x's /management answered 404): its publishes wait and ask again
 * (rmq_send.c, "missing queues"); a consumer retries as after any failure. */
#define RMQ_DECL_NOT_FOUND (-404)

typedef struct rmq_decl rmq_decl_t;
typedef void (*rmq_declared_fn)(rmq_pool_t *pool, rmq_conn_t *c, rmq_decl_t *d, int status, const char *detail);

struct rmq_decl {
    SLIST_ENTRY(rmq_decl) entry;
    rmq_conn_t *conn;
    char *key;
    rmq_decl_state_t state;
    rmq_pub_list_t waiting; /* publishes waiting for it (rmq_send.c) */
    /* RabbitMQ 4.x: the requests, sent one by one over /management. */
    rmq_declare_t *ops;
    size_t nops, next_op;
    char request_id[32]; /* the message-id of the request awaiting its answer */
    int64_t deadline;    /* while running: when to give up on the answer */
    /* One declaration of a key at a time in the pool: while another
     * connection's is under way this one follows it, keeping its plan in
     * case that connection drops (rmq_declare.c). */
    int follows;
    rmq_declare_t *plan;
    size_t nplan;
    int peer_ended; /* the one it follows ended with peer_status */
    int peer_status;
    char *peer_detail;
};

/* A 3.x management API answer, from its thread to the connection. */
typedef struct rmq_mgmt_result {
    struct rmq_mgmt_result *next;
    rmq_pool_t *pool;
    int conn;
    unsigned generation;
    char *key;
    int status;
    char detail[512];
} rmq_mgmt_result_t;

/* ---- connections ------------------------------------------------------------------------ */

typedef enum { RMQ_CONN_DOWN, RMQ_CONN_CONNECTING, RMQ_CONN_UP, RMQ_CONN_CLOSED } rmq_conn_state_t;

struct rmq_conn {
    rmq_pool_t *pool;
    int index;
    _Atomic rmq_conn_state_t state; /* written by the pool thread; the report hook reads it */
    unsigned generation; /* bumped at each connect: late results of an older one are ignored */
    pn_connection_t *pn;
    pn_session_t *ssn; /* consumers and 4.x's /management pair; senders have their own */
    unsigned url; /* the server tried last */
    int format;   /* RMQ_FORMAT_V1 / V2 */
    char broker[64];
    uint64_t tag; /* delivery tags and link names */
    /* Publishing (rmq_send.c). */
    TAILQ_HEAD(rmq_link_list, rmq_link) links;
    size_t nlinks;
    size_t max_links;    /* link sessions (senders, receivers) the broker allows beside the main one */
    size_t nending;      /* sender sessions cmi ended whose channel is not free yet */
    size_t nreceivers;   /* receivers' sessions (rmq_consume.c): out of the senders' budget */
    rmq_pub_list_t held; /* every sender session busy: waiting for one to go idle */
    rmq_pub_list_t inflight;
    size_t queued;       /* pending on its links and declarations, or to do */
    rmq_pub_list_t todo; /* handed to it from outside its own events */
    int statics_pending;
    /* Declarations (rmq_declare.c). */
    SLIST_HEAD(, rmq_decl) decls;
    size_t ndecls;
    rmq_link_tag_t mgmt_request_tag, mgmt_response_tag;
    pn_link_t *mgmt_out, *mgmt_in; /* 4.x's /management pair, made on first use */
    int mgmt_ready;
    rmq_mgmt_result_t *results;
    int decls_expired; /* some declaration's answer is overdue */
    int decls_peer_ended; /* some declaration it follows ended elsewhere */
    /* Recovery (rmq_conn.c). */
    int close_requested;
    int ever_up;
    unsigned failures;     /* consecutive failed attempts */
    int64_t retry_at;      /* proactor clock, ms; 0: none */
    int64_t open_deadline; /* connecting: give up on this attempt then */
    char close_why[512];   /* the broker's reason, when it closed the connection */
    int64_t cycle_start;
    int logged_state; /* the state last logged, so each change is logged once */
    /* OAuth2 renewal (rmq_rotate.c): a connection on an older token is
     * replaced by one on the new token before it expires; the old one
     * takes no new work and closes once its work is done. */
    int active;               /* one of the pool's connections (an OAuth2 pool has spare slots) */
    unsigned token_gen;       /* the token it opened with, and that token's expiry */
    int64_t token_expires_at;
    int replaces;             /* the connection it is to replace once up; -1: none */
    int retiring;             /* replaced: no new work; closed when idle or at retire_deadline */
    int64_t retire_deadline;
};

/* ---- features -------------------------------------------------------------------------- */

/* What a feature (consuming) is told, on the pool thread; st is what its
 * create returned.  Every hook may be NULL. */
typedef struct rmq_feature {
    const char *name;
    rmq_role_t role; /* the links it makes; their events come to on_link */
    void *(*create)(rmq_pool_t *pool);
    /* The pool thread is gone: free everything. */
    void (*destroy)(void *st);
    void (*on_up)(void *st, rmq_conn_t *c);
    /* Any thread's work arrived (the pool was interrupted). */
    void (*on_interrupt)(void *st);
    /* c's own events: work for c can be done (proton flushes c now). */
    void (*on_wake)(void *st, rmq_conn_t *c);
    void (*on_link)(void *st, rmq_conn_t *c, pn_event_t *e, rmq_link_tag_t *tag);
    void (*on_declared)(void *st, rmq_conn_t *c, const char *key, int status, const char *detail);
    /* Shutdown: before c's close. */
    void (*on_closing)(void *st, rmq_conn_t *c);
    /* c is gone with every pn_* object of it. */
    void (*on_closed)(void *st, rmq_conn_t *c);
    /* The messages of c it still has in mediation (a retiring connection
     * closes once none is left); NULL: none ever. */
    size_t (*busy)(void *st, rmq_conn_t *c);
    /* The earliest deadline the feature needs (0: none), and its timeouts. */
    int64_t (*next_deadline)(void *st);
    void (*on_timeout)(void *st, int64_t now);
} rmq_feature_t;

#define RMQ_MAX_FEATURES 4

/* ---- the pool --------------------------------------------------------------------------- */

typedef struct static_target static_target_t;

#define RMQ_CAUSES 4 /* a server's causes of failure remembered: two that alternate are said once each */

/* What the pool counted, for the report hook (rmq_report.c): the pool
 * thread is the only writer (relaxed loads and stores, no locked
 * instruction); any thread reads. */
#define RMQ_CONFIRM_BUCKETS 8 /* 1, 2.5, 5, 10, 25, 50, 100, 250 ms; then slower */
#define RMQ_DECISIONS 6       /* RMQ_DECIDE_NONE .. RMQ_DECIDE_RELEASE */
/* Publishes end as an rmq_outcome_t (RMQ_OUT_NONE: their deadline passed
 * before they went), or sent without publisher confirms. */
#define RMQ_PUBLISHED_UNCONFIRMED (RMQ_OUT_ERROR + 1)
#define RMQ_PUBLISHED_KINDS (RMQ_PUBLISHED_UNCONFIRMED + 1)
typedef struct rmq_stats {
    atomic_uint_fast64_t published[RMQ_PUBLISHED_KINDS]; /* by outcome: rmq_outcome_t, then unconfirmed */
    atomic_uint_fast64_t confirm[RMQ_CONFIRM_BUCKETS + 1];  /* confirm latency, per bucket */
    atomic_uint_fast64_t confirm_us;                        /* their sum */
    atomic_uint_fast64_t decided[RMQ_DECISIONS];            /* deliveries settled, by rmq_consume.h's decision */
    atomic_uint_fast64_t reconnects;                        /* connections up again after a loss */
    atomic_uint_fast64_t redelivered;                       /* deliveries the broker had delivered before */
    atomic_int_fast64_t inflight;                           /* publishes sent, their outcome not yet in */
    atomic_int_fast64_t mediating;                          /* deliveries in mediation (and orphans) */
} rmq_stats_t;

static inline void rmq_stat_add(atomic_uint_fast64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by, memory_order_relaxed);
}

static inline void rmq_stat_gauge(atomic_int_fast64_t *g, int64_t delta)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + delta, memory_order_relaxed);
}


typedef struct {
    char *host;
    char *hostport;
    uint64_t causes[RMQ_CAUSES]; /* hashes of the failures logged since it was last up (0: none) */
    unsigned next_cause;
} rmq_server_t;

struct rmq_pool {
    const cmi_host_t *host;
    char component[RMQ_COMPONENT_MAX];
    const rmq_init_params_t *p;
    rmq_server_t *servers;
    size_t nservers;
    char container[128];
    pn_proactor_t *proactor;
    pthread_t thread;
    /* Handed over from other threads, under lock. */
    pthread_mutex_t lock;
    rmq_pub_list_t inbox;
    rmq_mgmt_result_t *results;
    static_target_t *new_statics;
    /* Every static target's identity (what rmq_pool_add_static_target was
     * given, once each): a reload prepares its operations again on a kept
     * pool, and the same target is declared once. */
    struct static_identity *static_ids;
    int stop_requested;
    atomic_int reap; /* a deadline passed: take cancelled publishes out */
    /* Pool thread only. */
    rmq_conn_t *conns;
    size_t nconns;
    rmq_pub_list_t waiting;
    rmq_pub_list_t parked;  /* their queue was not found: until their retry_at (rmq_send.c) */
    int64_t parked_next;    /* the earliest retry_at among them; 0: none */
    int64_t attach_next;    /* the earliest attach deadline of a sender; 0: none */
    static_target_t *statics;
    rmq_refusals_t *refused; /* addresses the broker refused (rmq_refused.c) */
    rmq_mgmt_t *mgmt;
    rmq_tls_t *tls; /* sslEnabled: the SSL domain of every connection */
    struct rmq_oauth2 *oauth2; /* oAuth2Enabled: the tokens (rmq_oauth2.c) */
    atomic_int token_changed;  /* a new token (any thread) */
    int stopping;
    int64_t stop_deadline;
    uint64_t rng;
    int started;
    int inactive;         /* stopping: the proactor has let go of everything */
    int closed_timeouts;  /* stopping: timeouts seen after the last close */
    int timer_changed;    /* a deadline changed: the timer is set after the batch */
    pn_connection_t *cur; /* the connection whose events are being handled */
    atomic_int format;    /* address format of the last connection up (any thread) */
    atomic_int receiving; /* receivers attached and consuming (rmq_consume.c; any thread reads) */
    rmq_stats_t stats;
    rmq_declared_fn declared; /* a declaration finished (rmq_pool.c's) */
    const rmq_feature_t *features[RMQ_MAX_FEATURES];
    void *feature_state[RMQ_MAX_FEATURES];
    size_t nfeatures;
};

static inline int64_t rmq_now(void)
{
    return pn_proactor_now_64();
}

/* CLOCK_MONOTONIC in ns: latencies finer than the proactor's ms. */
static inline uint64_t rmq_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The bounds of the confirm latency's buckets, microseconds. */
static const uint64_t rmq_confirm_bounds_us[RMQ_CONFIRM_BUCKETS] = {1000, 2500, 5000, 10000, 25000, 50000,
                                                                     100000, 250000};

/* The broker's outcome came for a publish sent at sent_ns (CLOCK_MONOTONIC):
 * its latency (rmq_pub_complete counts the outcome). */
static inline void rmq_stats_confirmed(rmq_stats_t *s, uint64_t sent_ns)
{
    uint64_t now = rmq_now_ns();
    uint64_t us = now > sent_ns ? (now - sent_ns) / 1000 : 0;
    unsigned b = 0;
    while (b < RMQ_CONFIRM_BUCKETS && us > rmq_confirm_bounds_us[b])
        b++;
    rmq_stat_add(&s->confirm[b], 1);
    rmq_stat_add(&s->confirm_us, us);
}

/* Pool thread: some deadline changed; the timer is set once the batch of
 * events is done. */
static inline void rmq_pool_timer_changed(rmq_pool_t *pool)
{
    pool->timer_changed = 1;
}

/* Any thread: the pool's thread wakes and calls every feature's on_interrupt. */
static inline void rmq_pool_interrupt(rmq_pool_t *pool)
{
    pn_proactor_interrupt(pool->proactor);
}

/* "amqp:not-found: no queue 'q'", or "closed". */
const char *rmq_condition_text(pn_condition_t *cond, char *buf, size_t n);

/* ---- the public side ------------------------------------------------------------------- */

/* Makes a pool and starts its thread; features (NULL-terminated) are
 * registered first. */
rmq_pool_t *rmq_pool_create(const cmi_host_t *host, const char *component, const rmq_init_params_t *p,
                            const rmq_feature_t *const *features, char *err, size_t n);
/* Closes every connection cleanly (settling what is in flight) and frees
 * the pool; every publish still held is completed with an error first. */
void rmq_pool_destroy(rmq_pool_t *pool);
/* The state feature f's create returned for this pool (NULL: not registered). */
void *rmq_pool_feature_state(rmq_pool_t *pool, const rmq_feature_t *f);
/* Any thread: hands a publish to the pool. */
void rmq_pool_submit(rmq_pool_t *pool, rmq_pub_t *pub);
/* Any thread: a publish's deadline passed; the pool takes the cancelled
 * ones out of its queues soon (they must not hold room). */
void rmq_pool_reap_soon(rmq_pool_t *pool);
/* Service thread, as operations are prepared: a target known at load,
 * declared on every connection as it comes up.  One already given (the
 * same addresses and declarations: a reload preparing the operation
 * again) is not added twice. */
void rmq_pool_add_static_target(rmq_pool_t *pool, const rmq_target_t *t);
/* Any thread: the address format of the last connection up (reply-to addresses). */
int rmq_pool_format(rmq_pool_t *pool);
/* Any thread (the report hook): its connections up now, of the pool's
 * poolSize (an OAuth2 pool's spare slots count while they replace one). */
int rmq_pool_connections_up(rmq_pool_t *pool);

/* ---- inside the core (rmq_conn.c, rmq_declare.c, rmq_send.c) --------------------------- */

/* rmq_conn.c */
void rmq_conn_connect(rmq_pool_t *pool, rmq_conn_t *c);
void rmq_conn_opened(rmq_conn_t *c);
void rmq_conn_lost(rmq_conn_t *c, const char *why);
void rmq_conn_forget(rmq_conn_t *c);
/* rmq_failure.c: a failure of c said in words an operator can act on
 * (what: "down", "still down"; why: proton's or the broker's reason). */
void rmq_conn_report(rmq_conn_t *c, const char *what, const char *why);
rmq_server_t *rmq_conn_server_of(const rmq_conn_t *c);
/* 1 when why is a cause of failure of s not logged since s was last up
 * (and remembers it), else 0; rmq_server_up() forgets them all. */
int rmq_server_new_cause(rmq_server_t *s, const char *why);
void rmq_server_up(rmq_server_t *s);
void rmq_conn_schedule_retry(rmq_pool_t *pool, rmq_conn_t *c);
/* A new OAuth2 token: connections waiting for one try now. */
void rmq_conn_token_changed(rmq_pool_t *pool);
/* rmq_rotate.c: renewing connections under OAuth2. */
void rmq_rotate_start(rmq_pool_t *pool);            /* a new token: replace those on older ones */
void rmq_rotate_up(rmq_pool_t *pool, rmq_conn_t *c); /* c is up: retire the one it replaces */
int rmq_rotate_closed(rmq_pool_t *pool, rmq_conn_t *c); /* c is gone: 1 when it is not to come back */
void rmq_rotate_check(rmq_pool_t *pool, rmq_conn_t *c, int64_t now); /* close c if retired and idle */
void rmq_conn_begin_close(rmq_conn_t *c);
/* Connection deadlines (retry, open): the earliest, and what is due. */
int64_t rmq_conn_next_deadline(const rmq_conn_t *c);
void rmq_conn_on_timeout(rmq_pool_t *pool, rmq_conn_t *c, int64_t now);

/* rmq_declare.c.  Waiting publishes and features hear of a finished
 * declaration through pool->declared (rmq_pool.c sets it). */
int rmq_target_needs_declaring(const rmq_target_t *t, int format);
/* The declaration of t on c, started if there is none yet. */
rmq_decl_t *rmq_declare(rmq_pool_t *pool, rmq_conn_t *c, const rmq_target_t *t);
/* Forgets the finished declarations of key on every connection: the next
 * publish to it declares (or asks for) it again. */
void rmq_declare_forget(rmq_pool_t *pool, const char *key);
/* 4.x: sends the requests that are ready (after the caller has recorded
 * what waits for them). */
void rmq_declare_flush(rmq_pool_t *pool, rmq_conn_t *c);
void rmq_declare_on_link(rmq_pool_t *pool, rmq_conn_t *c, pn_event_t *e, rmq_link_tag_t *tag);
/* 3.x answers handed over from the management thread. */
void rmq_declare_take_results(rmq_pool_t *pool, rmq_mgmt_result_t *results);
void rmq_declare_on_wake(rmq_pool_t *pool, rmq_conn_t *c);
int64_t rmq_declare_next_deadline(const rmq_conn_t *c);
void rmq_declare_on_timeout(rmq_conn_t *c, int64_t now);
/* c is gone: the publishes waiting for its declarations go to again. */
void rmq_declare_on_closed(rmq_conn_t *c, rmq_pub_list_t *again);
void rmq_declare_free_results(rmq_mgmt_result_t *r);

/* rmq_send.c */
void rmq_send_dispatch(rmq_pool_t *pool, rmq_pub_t *pub);
void rmq_send_pump_waiting(rmq_pool_t *pool);
void rmq_send_on_link(rmq_pool_t *pool, rmq_conn_t *c, pn_event_t *e, rmq_link_tag_t *tag);
void rmq_send_declared(rmq_pool_t *pool, rmq_conn_t *c, rmq_decl_t *d, int status, const char *detail);
/* The broker ended a session other than c's main one (condition NULL:
 * without an error); its channel is free (PN_SESSION_FINAL). */
void rmq_send_on_session_closed(rmq_pool_t *pool, pn_session_t *ssn, const char *condition, const char *why);
void rmq_send_on_session_final(rmq_pool_t *pool, rmq_conn_t *c, pn_session_t *ssn);
void rmq_send_statics(rmq_pool_t *pool, rmq_conn_t *c);
void rmq_send_on_wake(rmq_pool_t *pool, rmq_conn_t *c);
/* c is gone: what was in flight or pending on it goes to again (or fails
 * after MAX_ATTEMPTS). */
void rmq_send_on_closed(rmq_conn_t *c, rmq_pub_list_t *again, const char *why);
/* Publishes of a lost connection, sent again before anything newer. */
void rmq_send_again(rmq_pool_t *pool, rmq_pub_list_t *again);
void rmq_send_reap_cancelled(rmq_pool_t *pool);
/* Publishes whose queue was not found: asked again when their time comes. */
int64_t rmq_send_next_deadline(const rmq_pool_t *pool);
void rmq_send_on_timeout(rmq_pool_t *pool, int64_t now);
/* Fails every publish the pool holds outside its connections. */
void rmq_send_fail_held(rmq_pool_t *pool, int code, const char *detail);
void rmq_send_dispose(rmq_pool_t *pool);

struct static_target {
    struct static_target *next;
    rmq_target_t target;
};

struct static_identity {
    struct static_identity *next;
    char id[]; /* addr_v1 NUL addr_v2 NUL key */
};

#endif
