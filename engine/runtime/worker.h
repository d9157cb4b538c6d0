/* Worker threads.
 *
 * Each worker runs one h2o event loop with its own listening socket
 * (SO_REUSEPORT), so an HTTP connection and every message it starts stay on
 * one thread.  Other threads (AMQP, curl) hand completions back with
 * cmi_flow_post_resume(), which posts the message to its worker's queue
 * (h2o_multithread_*); the worker resumes it from its loop.  Nothing on the
 * hot path takes a lock except that queue. */
#ifndef CMI_RUNTIME_WORKER_H
#define CMI_RUNTIME_WORKER_H

#define CMI_WORKER_MAX_DEFERRED 32 /* see cmi_worker_defer */

#include <h2o.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct cmi_msg cmi_msg_t;
typedef struct cmi_msg_origin cmi_msg_origin_t;
typedef struct cmi_engine cmi_engine_t;
typedef struct cmi_worker cmi_worker_t;
typedef struct cmi_config cmi_config_t;
typedef struct cmi_worker_timeout cmi_worker_timeout_t;
typedef struct cmi_task cmi_task_t;
typedef struct ssl_ctx_st SSL_CTX;

/* Work handed to a worker from another thread (an injected message, a
 * connector lifecycle hook).  Embed it; fn runs on the worker and owns the
 * task from then on. */
struct cmi_task {
    h2o_multithread_message_t link; /* first */
    void (*fn)(cmi_worker_t *w, cmi_task_t *task);
};

/* A one-shot timer on a worker's loop.  Embed it; set cb before starting. */
typedef struct cmi_timer {
    h2o_timeout_entry_t entry; /* first: the callback gets &entry */
    void (*cb)(struct cmi_timer *timer);
    void *data;
    cmi_worker_t *worker; /* set by cmi_worker_timer_start */
    uint64_t due;         /* loop time (ms) it fires at */
} cmi_timer_t;

/* A listening socket of a worker: plain HTTP, or HTTPS when ssl_ctx is
 * set (libh2o runs the handshake; server.c accepts). */
typedef struct cmi_worker_listen {
    int fd;
    SSL_CTX *ssl_ctx;
} cmi_worker_listen_t;

#define CMI_WORKER_ACCEPTORS 2 /* HTTP and HTTPS */

typedef struct cmi_acceptor {
    cmi_worker_t *worker;
    int fd;
    h2o_socket_t *sock;     /* NULL once the drain has closed it */
    h2o_accept_ctx_t ctx;   /* ctx.ssl_ctx: NULL for plain HTTP */
    cmi_timer_t pause;      /* out of descriptors: stop accepting briefly */
} cmi_acceptor_t;

struct cmi_worker {
    cmi_engine_t *engine;
    unsigned index;
    /* The deployment it dispatches requests to (a reference; owner thread,
     * or the main thread before it starts and after it has finished). */
    cmi_config_t *config;
    /* Its counters (NULL: metrics off): set by the caller before
     * cmi_worker_start. */
    struct cmi_metrics_shard *metrics;
    h2o_globalconf_t *h2o;
    void (*on_start)(cmi_worker_t *w); /* runs on the worker's thread once its loop exists */
    pthread_t thread;
    sem_t ready;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    cmi_acceptor_t acceptors[CMI_WORKER_ACCEPTORS];
    unsigned nacceptors;
    h2o_multithread_receiver_t resume_receiver;
    h2o_multithread_receiver_t control_receiver;
    h2o_multithread_receiver_t task_receiver;
    /* Cross-thread posts take this lock to check that the loop still
     * exists: a completion that arrives after the worker has finished
     * (a message abandoned by the drain timeout) is dropped, never sent
     * to a freed queue. */
    pthread_mutex_t post_lock;
    int closed;
    /* Tasks posted and not yet run: a drain does not end while some are
     * queued (an injected message must run, not vanish). */
    atomic_size_t pending_tasks;
    cmi_worker_timeout_t *timeouts; /* a fixed set of h2o timeout lists (worker.c) */
    cmi_timer_t drain_timer;
    size_t inflight; /* messages alive on this worker */
    h2o_linklist_t conns; /* open client connections (for the drain) */
    size_t nconns;
    cmi_timer_t trim_timer;   /* memory back to the system after a large message */
    uint64_t cut_logged_at;   /* rate limit of cmi_worker_conn_account's warnings */
    unsigned cut_unlogged;
    /* Work deferred to the end of the current batch of events (cmi_worker_defer). */
    struct cmi_deferred {
        void (*fn)(void *arg);
        void *arg;
    } deferred[CMI_WORKER_MAX_DEFERRED];
    unsigned ndeferred;
    /* Owner-thread state. */
    unsigned draining : 1;
    unsigned closing : 1;
    unsigned stop : 1;
    /* Written by the main thread before the worker exists, then only read. */
    int started;
    atomic_int finished; /* set by the worker when its loop has ended */
};

/* Owner thread: runs fn(arg) once the worker has handled the events at
 * hand, before it waits for more (Redis's beforeSleep): what many messages
 * of one batch produce (a publish each) can leave together.  A pair
 * already deferred is not added twice.  Returns 0, or -1 when the table is
 * full (the caller does the work now). */
int cmi_worker_defer(cmi_worker_t *w, void (*fn)(void *arg), void *arg);

/* Starts a worker thread accepting on the n sockets of listen; w is
 * zeroed but for its metrics and config, which the caller sets.  Everything the worker's
 * sockets allocate must come from the worker's own thread (libh2o keeps
 * per-thread buffer caches), so the thread itself creates its loop, its
 * h2o context and queues, then calls on_start; this returns once that is
 * done.  Returns 0 or an errno value. */
int cmi_worker_start(cmi_worker_t *w, cmi_engine_t *engine, unsigned index, h2o_globalconf_t *h2o,
                     const cmi_worker_listen_t *listen, unsigned n, void (*on_start)(cmi_worker_t *w));
/* Main thread, while the worker runs: the TLS context its HTTPS
 * acceptor hands new connections (a certificate reload).  The old one
 * stays the caller's: a handshake that has begun may still use it. */
void cmi_worker_set_ssl_ctx(cmi_worker_t *w, SSL_CTX *ctx);
/* From any thread: stop accepting, finish in-flight messages for at most
 * timeout_ms, then leave the loop.  The worker disposes of its loop on its
 * own thread and parks (see worker.c). */
void cmi_worker_request_drain(cmi_worker_t *w, uint64_t timeout_ms);
/* Whether the worker's loop has ended. */
int cmi_worker_finished(cmi_worker_t *w);

/* Owner thread only. */
void cmi_worker_timer_start(cmi_worker_t *w, cmi_timer_t *t, uint64_t delay_ms);
void cmi_worker_timer_stop(cmi_timer_t *t);
/* A message of w, counted in flight until its last reference goes (after
 * a large one the worker hands freed memory back to the system, a second
 * later, once); its resumes come back to w.  It runs in config, and takes
 * over the caller's reference to it. */
cmi_msg_t *cmi_worker_msg_create(cmi_worker_t *w, const cmi_msg_origin_t *origin, void *origin_data,
                                 cmi_config_t *config);
/* Main thread: w serves config from now on (it takes a reference and lets
 * go of the one it served; messages under way keep theirs). */
void cmi_worker_set_config(cmi_worker_t *w, cmi_config_t *config);
#define CMI_WORKER_TRIM_AFTER (1024u * 1024)

/* Tracks an accepted client connection so that a drain can close idle
 * keep-alive connections once no message is in flight; url: the slot of
 * the address it arrived at (cmi_metrics_url_slot). */
void cmi_worker_conn_opened(cmi_worker_t *w, h2o_socket_t *sock, int fd, unsigned url);
/* Its invocation URL's slot (runtime/metrics.h), 0 for a socket cmi did
 * not accept. */
unsigned cmi_worker_conn_url(h2o_socket_t *sock);

/* Owner thread: a slot for what belongs to the connection itself (what
 * its TLS peer presented): one malloc'd block, freed when the connection
 * closes.  NULL for a socket cmi did not accept. */
void **cmi_worker_conn_data(h2o_socket_t *sock);

/* What an HTTP/2 connection is allowed so many of per second. */
typedef enum {
    CMI_CONN_REQUEST = 0, /* a stream opened with a request */
    CMI_CONN_RESET,       /* a request the client gave up before its response */
    CMI_CONN_EVENTS
} cmi_conn_event_t;
/* Counts ev on sock's connection against limit per second (0: none).
 * Returns 1 when the connection is over a limit, now or before: its
 * socket is shut down (h2o then closes it) and a warning is logged (one
 * line per second per worker at most).  0 otherwise, and for a socket cmi
 * did not accept. */
int cmi_worker_conn_account(cmi_worker_t *w, h2o_socket_t *sock, cmi_conn_event_t ev, uint32_t limit);

/* Any thread: resume msg (its resume_rc is set) on w.  Returns 0, or -1
 * when w has finished (the message was abandoned by the drain). */
int cmi_worker_post_resume(cmi_worker_t *w, cmi_msg_t *msg);
/* Any thread: run task->fn on w.  Returns 0, or -1 when w has finished
 * (the task is then still the caller's). */
int cmi_worker_post_task(cmi_worker_t *w, cmi_task_t *task);
/* Another thread: runs fn(arg) on w and waits for it to return; when w's
 * loop does not run (not started yet, or ended), here. */
void cmi_worker_call(cmi_worker_t *w, void (*fn)(void *arg), void *arg);
/* The worker whose thread this is, or NULL on any other thread. */
cmi_worker_t *cmi_worker_current(void);

/* The worker whose h2o context this is. */
static inline cmi_worker_t *cmi_worker_of_ctx(h2o_context_t *ctx)
{
    return (cmi_worker_t *)((char *)ctx - offsetof(cmi_worker_t, ctx));
}

#endif
