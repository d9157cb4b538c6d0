#include "config.h"

#include "runtime/worker.h"

#include <malloc.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/random.h>

#include "config/config.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "runtime/flow.h"
#include "runtime/metrics.h"
#include "runtime/msg.h"

/* h2o 2.2 keeps one list per timeout value and walks every list on each
 * loop iteration, so a worker keeps a fixed set of lists, one per power of
 * two milliseconds: a timer waits in the longest list that does not pass
 * its due time, then in shorter ones (at most 32 hops), whatever delays
 * connectors and dynamic parameters ask for. */
#define TIMER_LISTS 33

struct cmi_worker_timeout {
    h2o_timeout_t lists[TIMER_LISTS]; /* [0]: 0 ms, [k]: 2^(k-1) ms */
};

enum { CONTROL_DRAIN = 1 };

/* After the last message, connections get this long to close once their
 * sockets are shut down. */
#define CLOSE_GRACE_MS 2000

typedef struct {
    h2o_linklist_t link;
    cmi_worker_t *worker;
    int fd;
    /* Budgets of the current second (cmi_worker_conn_account). */
    uint64_t window_start;
    uint32_t counts[CMI_CONN_EVENTS];
    unsigned cut : 1; /* shut down for going over one */
    unsigned url;     /* its invocation URL's slot (runtime/metrics.h) */
    void *data;       /* cmi_worker_conn_data: freed with the connection */
} tracked_conn_t;

typedef struct {
    h2o_multithread_message_t super;
    int op;
    uint64_t timeout_ms;
} control_msg_t;

static void on_resume(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        cmi_flow_resumed(H2O_STRUCT_FROM_MEMBER(cmi_msg_t, resume_link, m));
    }
}

static void maybe_finish(cmi_worker_t *w);

static void on_task(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    cmi_worker_t *w = H2O_STRUCT_FROM_MEMBER(cmi_worker_t, task_receiver, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        cmi_task_t *t = H2O_STRUCT_FROM_MEMBER(cmi_task_t, link.link, messages->next);
        h2o_linklist_unlink(&t->link.link);
        t->fn(w, t);
        atomic_fetch_sub(&w->pending_tasks, 1);
    }
    maybe_finish(w);
}

/* The end of a drain: the loop stops only if no task is queued, and from
 * then on nothing can be posted (the check and the close are one step
 * under post_lock, so a post either lands before or fails). */
static void finish(cmi_worker_t *w)
{
    pthread_mutex_lock(&w->post_lock);
    if (atomic_load(&w->pending_tasks) == 0) {
        w->closed = 1;
        w->stop = 1;
    }
    pthread_mutex_unlock(&w->post_lock);
}

static void maybe_finish(cmi_worker_t *w)
{
    if (w->closing && w->inflight == 0 && w->nconns == 0)
        finish(w);
}

static void on_drain_timeout(cmi_timer_t *t)
{
    cmi_worker_t *w = t->data;
    if (w->inflight > 0)
        cmi_log_warn("worker", "worker %u: %zu message(s) still in flight when the drain time ran out", w->index,
                     w->inflight);
    else
        cmi_log_warn("worker", "worker %u: %zu connection(s) did not close in time", w->index, w->nconns);
    pthread_mutex_lock(&w->post_lock);
    w->closed = 1;
    w->stop = 1;
    pthread_mutex_unlock(&w->post_lock);
}

/* No message is in flight: shut the client sockets down so that h2o sees
 * end-of-file and closes each connection the regular way (h2o 2.2 leaves
 * idle HTTP/1 keep-alive connections open until their idle timeout). */
static void close_connections(cmi_worker_t *w)
{
    if (w->closing)
        return;
    w->closing = 1;
    if (w->nconns == 0) {
        maybe_finish(w);
        return;
    }
    for (h2o_linklist_t *l = w->conns.next; l != &w->conns; l = l->next)
        shutdown(((tracked_conn_t *)l)->fd, SHUT_RDWR);
    cmi_worker_timer_stop(&w->drain_timer);
    cmi_worker_timer_start(w, &w->drain_timer, CLOSE_GRACE_MS);
}

static void on_conn_close(void *data)
{
    tracked_conn_t *c = data;
    cmi_worker_t *w = c->worker;
    h2o_linklist_unlink(&c->link);
    free(c->data);
    free(c);
    w->nconns--;
    cmi_metrics_gauge_add(w->metrics, CMI_GAUGE_CONNECTIONS, -1);
    if (w->closing && w->nconns == 0) {
        cmi_worker_timer_stop(&w->drain_timer);
        maybe_finish(w);
    }
}

void cmi_worker_conn_opened(cmi_worker_t *w, h2o_socket_t *sock, int fd, unsigned url)
{
    tracked_conn_t *c = cmi_xcalloc(1, sizeof(*c));
    c->worker = w;
    c->fd = fd;
    c->url = url;
    cmi_metrics_gauge_add(w->metrics, CMI_GAUGE_CONNECTIONS, 1);
    memset(&c->link, 0, sizeof(c->link));
    h2o_linklist_insert(&w->conns, &c->link);
    w->nconns++;
    sock->on_close.cb = on_conn_close;
    sock->on_close.data = c;
}

static tracked_conn_t *tracked(h2o_socket_t *sock)
{
    return sock != NULL && sock->on_close.cb == on_conn_close ? sock->on_close.data : NULL;
}

/* One line per second at most, whatever the number of offenders: a client
 * that reconnects to be cut again cannot flood the log. */
static void log_cut(cmi_worker_t *w, h2o_socket_t *sock, cmi_conn_event_t ev, uint32_t limit)
{
    uint64_t now = h2o_now(w->loop);
    if (w->cut_logged_at != 0 && now - w->cut_logged_at < 1000) {
        w->cut_unlogged++;
        return;
    }
    char host[NI_MAXHOST] = "?";
    struct sockaddr_storage sa;
    socklen_t len = h2o_socket_getpeername(sock, (struct sockaddr *)&sa);
    if (len != 0)
        h2o_socket_getnumerichost((struct sockaddr *)&sa, len, host);
    char more[64] = "";
    if (w->cut_unlogged > 0)
        snprintf(more, sizeof(more), " (and %u more since the last such line)", w->cut_unlogged);
    cmi_log_warn("http", "closing an HTTP/2 connection from %s: more than %u %s in one second%s", host, limit,
                 ev == CMI_CONN_REQUEST ? "requests (http2RequestRate)" : "requests reset by the client (http2ResetRate)",
                 more);
    w->cut_logged_at = now;
    w->cut_unlogged = 0;
}

unsigned cmi_worker_conn_url(h2o_socket_t *sock)
{
    tracked_conn_t *c = tracked(sock);
    return c != NULL ? c->url : 0;
}

void **cmi_worker_conn_data(h2o_socket_t *sock)
{
    tracked_conn_t *c = tracked(sock);
    return c != NULL ? &c->data : NULL;
}

int cmi_worker_conn_account(cmi_worker_t *w, h2o_socket_t *sock, cmi_conn_event_t ev, uint32_t limit)
{
    tracked_conn_t *c = tracked(sock);
    if (c == NULL)
        return 0;
    if (c->cut)
        return 1;
    if (limit == 0)
        return 0;
    uint64_t now = h2o_now(w->loop);
    if (now - c->window_start >= 1000) {
        c->window_start = now;
        memset(c->counts, 0, sizeof(c->counts));
    }
    if (++c->counts[ev] <= limit)
        return 0;
    /* As the drain does: h2o sees end-of-file and closes the connection
     * the regular way, its open streams included. */
    c->cut = 1;
    log_cut(w, sock, ev, limit); /* first: the peer's address is gone once the socket is shut */
    shutdown(c->fd, SHUT_RDWR);
    return 1;
}

static void close_acceptors(cmi_worker_t *w)
{
    for (unsigned i = 0; i < w->nacceptors; i++) {
        cmi_acceptor_t *a = &w->acceptors[i];
        cmi_worker_timer_stop(&a->pause);
        if (a->sock != NULL) {
            h2o_socket_read_stop(a->sock);
            h2o_socket_close(a->sock);
            a->sock = NULL;
        }
    }
}

static void begin_drain(cmi_worker_t *w, uint64_t timeout_ms)
{
    if (w->draining)
        return;
    w->draining = 1;
    close_acceptors(w);
    /* Closes idle keep-alive connections now and the others after their
     * current response. */
    h2o_context_request_shutdown(&w->ctx);
    w->drain_timer.cb = on_drain_timeout;
    w->drain_timer.data = w;
    if (w->inflight == 0) {
        close_connections(w);
        return;
    }
    cmi_log_info("worker", "worker %u: finishing %zu in-flight message(s) (at most %llu ms)", w->index,
                 w->inflight, (unsigned long long)timeout_ms);
    cmi_worker_timer_start(w, &w->drain_timer, timeout_ms);
}

static void on_control(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    cmi_worker_t *w = H2O_STRUCT_FROM_MEMBER(cmi_worker_t, control_receiver, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        control_msg_t *c = H2O_STRUCT_FROM_MEMBER(control_msg_t, super.link, messages->next);
        h2o_linklist_unlink(&c->super.link);
        if (c->op == CONTROL_DRAIN)
            begin_drain(w, c->timeout_ms);
        free(c);
    }
}

/* Frees what the loop owns.  Runs on the worker's thread after its loop
 * has ended, unless messages or connections were abandoned by a drain
 * timeout: h2o cannot dispose of a context with live connections, and the
 * process is about to exit anyway. */
static void worker_dispose(cmi_worker_t *w)
{
    if (w->inflight > 0 || w->nconns > 0 || atomic_load(&w->pending_tasks) > 0)
        return;
    close_acceptors(w);
    pthread_mutex_lock(&w->post_lock);
    w->closed = 1;
    pthread_mutex_unlock(&w->post_lock);
    h2o_multithread_unregister_receiver(w->ctx.queue, &w->resume_receiver);
    h2o_multithread_unregister_receiver(w->ctx.queue, &w->control_receiver);
    h2o_multithread_unregister_receiver(w->ctx.queue, &w->task_receiver);
    /* h2o_context_request_shutdown() arms a one-second timer that re-sends
     * HTTP/2 GOAWAY frames; with every connection closed it has nothing left
     * to do, and h2o refuses to dispose of a context with it still armed. */
    if (h2o_timeout_is_linked(&w->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&w->ctx.http2._graceful_shutdown_timeout);
    h2o_multithread_queue_t *queue = w->ctx.queue;
    h2o_context_dispose(&w->ctx);
    /* libh2o 2.2's h2o_context_dispose() closes the queue's socket but
     * never frees the queue itself (later h2o versions do): free it here. */
    free(queue);
    for (int i = 0; i < TIMER_LISTS; i++) {
        h2o_timeout_t *to = &w->timeouts->lists[i];
        /* A connector may leave a timer armed; h2o refuses to dispose of a
         * list that still holds entries. */
        while (!h2o_linklist_is_empty(&to->_entries))
            h2o_linklist_unlink(to->_entries.next);
        h2o_timeout_dispose(w->loop, to);
    }
    free(w->timeouts);
    w->timeouts = NULL;
    h2o_evloop_destroy(w->loop);
    w->loop = NULL;
}

static void worker_setup(cmi_worker_t *w)
{
    h2o_linklist_init_anchor(&w->conns);
    w->loop = h2o_evloop_create();
    w->timeouts = cmi_xcalloc(1, sizeof(*w->timeouts));
    for (int i = 0; i < TIMER_LISTS; i++)
        h2o_timeout_init(w->loop, &w->timeouts->lists[i], i == 0 ? 0 : 1ull << (i - 1));
    h2o_context_init(&w->ctx, w->loop, w->h2o);
    h2o_multithread_register_receiver(w->ctx.queue, &w->resume_receiver, on_resume);
    h2o_multithread_register_receiver(w->ctx.queue, &w->control_receiver, on_control);
    h2o_multithread_register_receiver(w->ctx.queue, &w->task_receiver, on_task);
    for (unsigned i = 0; i < w->nacceptors; i++) {
        w->acceptors[i].ctx.ctx = &w->ctx;
        w->acceptors[i].ctx.hosts = w->h2o->hosts;
    }
    if (w->on_start != NULL)
        w->on_start(w);
}

static _Thread_local cmi_worker_t *current_worker;

cmi_worker_t *cmi_worker_current(void)
{
    return current_worker;
}

static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;

int cmi_worker_defer(cmi_worker_t *w, void (*fn)(void *arg), void *arg)
{
    for (unsigned i = 0; i < w->ndeferred; i++)
        if (w->deferred[i].fn == fn && w->deferred[i].arg == arg)
            return 0;
    if (w->ndeferred == CMI_WORKER_MAX_DEFERRED)
        return -1;
    w->deferred[w->ndeferred].fn = fn;
    w->deferred[w->ndeferred++].arg = arg;
    return 0;
}

/* What was deferred during the batch; what that defers again runs too. */
static void run_deferred(cmi_worker_t *w)
{
    while (w->ndeferred > 0) {
        struct cmi_deferred d = w->deferred[0];
        memmove(&w->deferred[0], &w->deferred[1], --w->ndeferred * sizeof(w->deferred[0]));
        d.fn(d.arg);
    }
}

static void *worker_main(void *arg)
{
    cmi_worker_t *w = arg;
    current_worker = w;
    worker_setup(w);
    sem_post(&w->ready);
    for (;;) {
        run_deferred(w); /* nothing deferred waits across a wait for events */
        if (w->stop)
            break;
        h2o_evloop_run(w->loop, INT32_MAX);
    }
    worker_dispose(w);
    /* A worker that abandoned messages keeps its loop, but nothing may be
     * posted to it any more. */
    pthread_mutex_lock(&w->post_lock);
    w->closed = 1;
    pthread_mutex_unlock(&w->post_lock);
    current_worker = NULL;
    atomic_store(&w->finished, 1);
    /* A finished worker parks instead of ending: libh2o keeps freed buffers
     * in per-thread caches it cannot empty, and they stay reachable (not
     * leaked) while the thread exists.  The process is about to exit. */
    pthread_mutex_lock(&park_lock);
    for (;;)
        pthread_cond_wait(&park_cond, &park_lock);
    return NULL;
}

int cmi_worker_start(cmi_worker_t *w, cmi_engine_t *engine, unsigned index, h2o_globalconf_t *h2o,
                     const cmi_worker_listen_t *listen, unsigned n, void (*on_start)(cmi_worker_t *w))
{
    w->engine = engine;
    w->index = index;
    w->h2o = h2o;
    for (unsigned i = 0; i < n && i < CMI_WORKER_ACCEPTORS; i++) {
        cmi_acceptor_t *a = &w->acceptors[w->nacceptors++];
        a->worker = w;
        a->fd = listen[i].fd;
        a->ctx.ssl_ctx = listen[i].ssl_ctx;
    }
    w->on_start = on_start;
    sem_init(&w->ready, 0, 0);
    pthread_mutex_init(&w->post_lock, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    w->started = 1;
    int rc = pthread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        w->started = 0;
        return rc;
    }
    while (sem_wait(&w->ready) != 0)
        ; /* EINTR */
    return 0;
}

int cmi_worker_finished(cmi_worker_t *w)
{
    return atomic_load(&w->finished);
}

void cmi_worker_request_drain(cmi_worker_t *w, uint64_t timeout_ms)
{
    control_msg_t *c = cmi_xcalloc(1, sizeof(*c));
    c->op = CONTROL_DRAIN;
    c->timeout_ms = timeout_ms;
    /* Under post_lock like every cross-thread post: h2o writes to the
     * queue's pipe after queueing, and a worker that drains at once could
     * otherwise close that pipe under the writer. */
    pthread_mutex_lock(&w->post_lock);
    if (!w->closed)
        h2o_multithread_send_message(&w->control_receiver, &c->super);
    else
        free(c);
    pthread_mutex_unlock(&w->post_lock);
}

static void timer_arm(cmi_timer_t *t);

static void timer_trampoline(h2o_timeout_entry_t *entry)
{
    cmi_timer_t *t = (cmi_timer_t *)entry;
    if (h2o_now(t->worker->loop) < t->due)
        timer_arm(t); /* on to a shorter list */
    else
        t->cb(t);
}

static void timer_arm(cmi_timer_t *t)
{
    uint64_t now = h2o_now(t->worker->loop);
    uint64_t left = t->due > now ? t->due - now : 0;
    int list = 0;
    while (list + 1 < TIMER_LISTS && (1ull << list) <= left)
        list++; /* list k holds 2^(k-1) ms, the largest not past the due time */
    t->entry.cb = timer_trampoline;
    h2o_timeout_link(t->worker->loop, &t->worker->timeouts->lists[list], &t->entry);
}

void cmi_worker_timer_start(cmi_worker_t *w, cmi_timer_t *t, uint64_t delay_ms)
{
    cmi_worker_timer_stop(t);
    t->worker = w;
    t->due = h2o_now(w->loop) + delay_ms;
    timer_arm(t);
}

void cmi_worker_timer_stop(cmi_timer_t *t)
{
    if (h2o_timeout_is_linked(&t->entry))
        h2o_timeout_unlink(&t->entry);
}


static void on_trim(cmi_timer_t *t)
{
    (void)t;
    malloc_trim(0);
}

/* MI's request count, error count and latency of the message's service:
 * the latency up to its answer (or to the flow's end when it had none). */
static void msg_finished(cmi_msg_t *msg)
{
    if (msg->metric_service == CMI_METRICS_NO_SERVICE || msg->worker->metrics == NULL)
        return;
    uint64_t end = msg->responded_ns ? msg->responded_ns : cmi_monotonic_ns();
    cmi_metrics_observe(msg->worker->metrics, msg->metric_service, msg->metric_url, end - msg->started_ns,
                        msg->in_fault);
}

static void msg_released(cmi_worker_t *w, size_t bytes, cmi_config_t *config)
{
    cmi_config_release(config);
    w->inflight--;
    cmi_metrics_gauge_add(w->metrics, CMI_GAUGE_INFLIGHT, -1);
    /* glibc keeps what a large message freed (a 10 MiB JSON body's tree
     * is some 300 MiB of small blocks) for reuse; handing it back costs a
     * walk of the heap, so it is done once, a second after the last large
     * message of a burst (each one puts the timer off again). */
    if (bytes >= CMI_WORKER_TRIM_AFTER) {
        w->trim_timer.cb = on_trim;
        w->trim_timer.data = w;
        cmi_worker_timer_start(w, &w->trim_timer, 1000);
    }
    if (w->draining && w->inflight == 0) {
        if (w->closing)
            maybe_finish(w); /* a message an injected task started */
        else
            close_connections(w);
    }
}

static int msg_post_resume(cmi_msg_t *msg)
{
    return cmi_worker_post_resume(msg->worker, msg);
}

static const cmi_msg_owner_t worker_owner = {
    .post_resume = msg_post_resume,
    .finished = msg_finished,
    .released = msg_released,
};

cmi_msg_t *cmi_worker_msg_create(cmi_worker_t *w, const cmi_msg_origin_t *origin, void *origin_data,
                                 cmi_config_t *config)
{
    cmi_msg_t *msg = cmi_msg_create(w, &worker_owner, origin, origin_data);
    msg->config = config;
    msg->local_entries = &config->local_entries;
    w->inflight++;
    cmi_metrics_gauge_add(w->metrics, CMI_GAUGE_INFLIGHT, 1);
    if (w->metrics != NULL)
        msg->started_ns = cmi_monotonic_ns();
    return msg;
}

int cmi_worker_post_resume(cmi_worker_t *w, cmi_msg_t *msg)
{
    pthread_mutex_lock(&w->post_lock);
    int closed = w->closed;
    if (!closed)
        h2o_multithread_send_message(&w->resume_receiver, &msg->resume_link);
    pthread_mutex_unlock(&w->post_lock);
    return closed ? -1 : 0;
}

int cmi_worker_post_task(cmi_worker_t *w, cmi_task_t *task)
{
    pthread_mutex_lock(&w->post_lock);
    int closed = w->closed;
    if (!closed) {
        atomic_fetch_add(&w->pending_tasks, 1);
        h2o_multithread_send_message(&w->task_receiver, &task->link);
    }
    pthread_mutex_unlock(&w->post_lock);
    return closed ? -1 : 0;
}

typedef struct {
    cmi_task_t task;
    void (*fn)(void *arg);
    void *arg;
    sem_t done;
} call_task_t;

static void run_call_task(cmi_worker_t *w, cmi_task_t *task)
{
    (void)w;
    call_task_t *c = (call_task_t *)task;
    c->fn(c->arg);
    sem_post(&c->done);
}

void cmi_worker_call(cmi_worker_t *w, void (*fn)(void *arg), void *arg)
{
    if (!w->started) {
        fn(arg); /* no loop yet: nothing else runs on it */
        return;
    }
    call_task_t c;
    memset(&c, 0, sizeof(c));
    c.task.fn = run_call_task;
    c.fn = fn;
    c.arg = arg;
    sem_init(&c.done, 0, 0);
    if (cmi_worker_post_task(w, &c.task) == 0)
        while (sem_wait(&c.done) != 0)
            ; /* EINTR */
    else
        fn(arg); /* its loop has ended: nothing else runs there any more */
    sem_destroy(&c.done);
}

typedef struct {
    cmi_worker_t *worker;
    SSL_CTX *ctx;
} ssl_swap_t;

static void swap_ssl_ctx(void *arg)
{
    ssl_swap_t *s = arg;
    for (unsigned i = 0; i < s->worker->nacceptors; i++)
        if (s->worker->acceptors[i].ctx.ssl_ctx != NULL)
            s->worker->acceptors[i].ctx.ssl_ctx = s->ctx;
}

void cmi_worker_set_ssl_ctx(cmi_worker_t *w, SSL_CTX *ctx)
{
    ssl_swap_t s = {w, ctx};
    cmi_worker_call(w, swap_ssl_ctx, &s);
}

typedef struct {
    cmi_worker_t *worker;
    cmi_config_t *config;
} config_swap_t;

static void swap_config(void *arg)
{
    config_swap_t *s = arg;
    cmi_config_t *old = s->worker->config;
    s->worker->config = s->config;
    cmi_config_release(old);
}

void cmi_worker_set_config(cmi_worker_t *w, cmi_config_t *config)
{
    cmi_config_retain(config);
    config_swap_t s = {w, config};
    cmi_worker_call(w, swap_config, &s);
}
