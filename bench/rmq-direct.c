/* rmq-direct: the direct AMQP 1.0 client that cmi's RabbitMQ figures are
 * measured against (bench/run).  It talks to the broker the way cmi's
 * connector does (proton's proactor, SASL PLAIN, one connection) but does
 * no mediation at all, so the ratio cmi/direct is what the engine costs.
 *
 *   rmq-direct send    HOST:PORT ADDRESS COUNT WINDOW BODY-BYTES
 *       durable JSON messages {"seq":N,...} of BODY-BYTES bytes, at most
 *       WINDOW unsettled; counts broker outcomes (publisher confirms)
 *   rmq-direct recv    HOST:PORT ADDRESS COUNT CREDIT
 *       takes COUNT messages with CREDIT outstanding, accepting each
 *   rmq-direct respond HOST:PORT ADDRESS
 *       an RPC responder: answers every request on ADDRESS to its reply-to
 *       with its correlation-id, accepts it; runs until SIGTERM
 *   rmq-direct rpc     HOST:PORT ADDRESS REPLY-ADDRESS SECONDS
 *       one RPC after the other for SECONDS, reports the round trips
 *
 * It prints one line of key=value pairs for bench/run; anything going wrong
 * (refused attach, rejected message, no progress for 60 s) exits 1 with a
 * message.  The user is guest/guest, which RabbitMQ allows on loopback. */
#define _POSIX_C_SOURCE 200809L
#include <proton/condition.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/proactor.h>
#include <proton/sasl.h>
#include <proton/ssl.h>
#include <proton/session.h>
#include <proton/transport.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum mode { MODE_SEND, MODE_RECV, MODE_RESPOND, MODE_RPC };

#define STALL_MS 60000 /* no event for this long: give up rather than hang the bench */
#define MAX_REPLY_LINKS 16

typedef struct {
    char address[256];
    pn_link_t *link;
} reply_link_t;

typedef struct {
    enum mode mode;
    const char *address, *reply_address;
    long count, window, size, credit;
    double seconds;
    pn_proactor_t *proactor;
    pn_connection_t *conn;
    pn_session_t *session;
    pn_link_t *snd, *rcv;
    pn_message_t *msg;
    pn_rwbytes_t buf;  /* encode buffer, grown by proton */
    char *body;        /* send: the body template */
    long sent, settled, received;
    unsigned long tag;
    double t_first, t_last;
    /* rpc */
    double *lat;
    size_t nlat, caplat;
    double call_started, rpc_deadline;
    bool snd_ready, rcv_ready, rpc_waiting;
    /* respond */
    reply_link_t replies[MAX_REPLY_LINKS];
    int nreplies;
    double t_progress; /* last delivery: the stall watchdog's clock */
    bool finished, transport_closed;
    int status;
} bench_t;

static volatile sig_atomic_t g_stop;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(bench_t *b, const char *what, pn_condition_t *cond)
{
    fprintf(stderr, "rmq-direct: %s", what);
    if (cond != NULL && pn_condition_is_set(cond))
        fprintf(stderr, ": %s: %s", pn_condition_get_name(cond), pn_condition_get_description(cond));
    fputc('\n', stderr);
    b->status = 1;
    b->finished = true;
    pn_connection_close(b->conn);
}

static void finish(bench_t *b)
{
    b->finished = true;
    pn_connection_close(b->conn);
}

static pn_delivery_t *new_delivery(bench_t *b, pn_link_t *l)
{
    unsigned long tag = b->tag++;
    return pn_delivery(l, pn_dtag((const char *)&tag, sizeof(tag)));
}

static void set_json_body(pn_message_t *m, const char *body, size_t len)
{
    pn_data_t *d = pn_message_body(m);
    pn_data_clear(d);
    pn_data_put_binary(d, pn_bytes(len, body));
    pn_message_set_inferred(m, true); /* a data section, as cmi sends (not an amqp-value) */
    pn_message_set_content_type(m, "application/json");
}

/* ---- send: publish with confirms, WINDOW unsettled at most -------------- */

/* What cmi's publishMessage puts around the body of an HTTP POST (bench/run
 * sends one with Content-Type only): a message-id, the same correlation-id
 * and the forwarded header as an application-property.  The broker's work
 * per message depends on them, so the baseline carries them too. */
static void set_like_cmi(pn_message_t *m, long seq)
{
    char id[64];
    int n = snprintf(id, sizeof(id), "urn:uuid:00000000-0000-4000-8000-%012ld", seq);
    pn_msgid_t mid = {.type = PN_STRING, .u.as_bytes = pn_bytes((size_t)n, id)};
    pn_message_set_id(m, mid);
    pn_message_set_correlation_id(m, mid);
    pn_data_t *props = pn_message_properties(m);
    pn_data_clear(props);
    pn_data_put_map(props);
    pn_data_enter(props);
    pn_data_put_string(props, pn_bytes(12, "Content-Type"));
    pn_data_put_string(props, pn_bytes(16, "application/json"));
    pn_data_exit(props);
}

static void send_some(bench_t *b)
{
    while (b->sent < b->count && b->sent - b->settled < b->window && pn_link_credit(b->snd) > 0) {
        pn_message_clear(b->msg);
        pn_message_set_durable(b->msg, true);
        /* {"seq":N, "data":"xx...x"}: the seq fills a fixed-width slot so
         * every message has exactly the requested size. */
        char seq[24];
        int n = snprintf(seq, sizeof(seq), "%-12ld", b->sent);
        memcpy(b->body + 7, seq, (size_t)n);
        set_json_body(b->msg, b->body, (size_t)b->size);
        set_like_cmi(b->msg, b->sent);
        new_delivery(b, b->snd);
        if (pn_message_send(b->msg, b->snd, &b->buf) < 0) {
            fail(b, "encoding a message failed", NULL);
            return;
        }
        if (b->sent == 0)
            b->t_first = now_s();
        b->sent++;
    }
}

static void on_send_outcome(bench_t *b, pn_delivery_t *d)
{
    if (!pn_delivery_updated(d) && !pn_delivery_settled(d))
        return;
    uint64_t state = pn_delivery_remote_state(d);
    if (state != PN_ACCEPTED) {
        fail(b, "the broker did not accept a message", NULL);
        return;
    }
    pn_delivery_settle(d);
    b->settled++;
    if (b->settled == b->count) {
        b->t_last = now_s();
        double el = b->t_last - b->t_first;
        printf("sent=%ld seconds=%.3f rate=%.0f\n", b->count, el, (double)b->count / el);
        finish(b);
        return;
    }
    send_some(b);
}

/* ---- recv: take and accept, CREDIT outstanding ---------------------------- */

static bool read_message(bench_t *b, pn_delivery_t *d, pn_link_t *l)
{
    size_t size = pn_delivery_pending(d);
    if (b->buf.size < size) {
        b->buf.start = realloc(b->buf.start, size);
        b->buf.size = size;
    }
    ssize_t got = pn_link_recv(l, b->buf.start, size);
    if (got < 0 || pn_message_decode(b->msg, b->buf.start, (size_t)got) != 0)
        return false;
    return true;
}

static void settle_in(pn_delivery_t *d, uint64_t outcome)
{
    pn_delivery_update(d, outcome);
    pn_delivery_settle(d);
}

static void on_recv(bench_t *b, pn_delivery_t *d)
{
    /* The content is counted, not looked at: the direct receiver does the
     * least a consumer can (read the bytes, accept). */
    size_t size = pn_delivery_pending(d);
    if (b->buf.size < size) {
        b->buf.start = realloc(b->buf.start, size);
        b->buf.size = size;
    }
    pn_link_recv(b->rcv, b->buf.start, size);
    settle_in(d, PN_ACCEPTED);
    if (b->received++ == 0)
        b->t_first = now_s();
    if (b->received == b->count) {
        b->t_last = now_s();
        double el = b->t_last - b->t_first;
        printf("received=%ld seconds=%.3f rate=%.0f\n", b->count, el, (double)(b->count - 1) / el);
        finish(b);
        return;
    }
    /* Top the credit up in batches, as a consumer with a prefetch does. */
    int credit = pn_link_credit(b->rcv);
    if (credit < b->credit / 2)
        pn_link_flow(b->rcv, (int)b->credit - credit);
}

/* ---- respond: reply to reply-to with the correlation-id ------------------- */

static pn_link_t *reply_link(bench_t *b, const char *address)
{
    for (int i = 0; i < b->nreplies; i++)
        if (strcmp(b->replies[i].address, address) == 0)
            return b->replies[i].link;
    if (b->nreplies == MAX_REPLY_LINKS || strlen(address) >= sizeof(b->replies[0].address))
        return NULL;
    reply_link_t *r = &b->replies[b->nreplies];
    snprintf(r->address, sizeof(r->address), "%s", address);
    char name[32];
    snprintf(name, sizeof(name), "reply-%d", b->nreplies++);
    r->link = pn_sender(b->session, name);
    pn_terminus_set_address(pn_link_target(r->link), address);
    pn_terminus_set_durability(pn_link_target(r->link), PN_CONFIGURATION);
    pn_link_open(r->link);
    /* A delivery sent before the broker's credit arrives waits in proton's
     * buffer and goes out with the first flow frame. */
    return r->link;
}

static void on_request(bench_t *b, pn_delivery_t *d)
{
    if (!read_message(b, d, b->rcv)) {
        settle_in(d, PN_REJECTED);
        return;
    }
    const char *reply_to = pn_message_get_reply_to(b->msg);
    pn_link_t *l = reply_to != NULL ? reply_link(b, reply_to) : NULL;
    if (l == NULL) {
        settle_in(d, PN_REJECTED);
        pn_link_flow(b->rcv, 1);
        return;
    }
    pn_msgid_t corr = pn_message_get_correlation_id(b->msg);
    pn_message_t *reply = pn_message();
    pn_message_set_correlation_id(reply, corr);
    static const char answer[] = "{\"status\":\"done\"}";
    set_json_body(reply, answer, sizeof(answer) - 1);
    new_delivery(b, l);
    pn_message_send(reply, l, &b->buf);
    pn_message_free(reply);
    settle_in(d, PN_ACCEPTED);
    pn_link_flow(b->rcv, 1);
    b->received++;
}

/* ---- rpc: one call after the other ---------------------------------------- */

static void rpc_call(bench_t *b)
{
    if (!b->snd_ready || !b->rcv_ready || b->rpc_waiting)
        return;
    if (now_s() >= b->rpc_deadline) {
        finish(b);
        return;
    }
    char corr[32];
    snprintf(corr, sizeof(corr), "direct-%ld", b->sent);
    pn_message_clear(b->msg);
    /* Durable, as cmi's sendRpc sends it: a persistent message costs the
     * broker about 0.3 ms more here, which is not cmi's to answer for. */
    pn_message_set_durable(b->msg, true);
    pn_message_set_reply_to(b->msg, b->reply_address);
    pn_msgid_t id = {.type = PN_STRING, .u.as_bytes = pn_bytes(strlen(corr), corr)};
    pn_message_set_correlation_id(b->msg, id);
    static const char request[] = "{\"orderId\":\"1001\",\"item\":\"book\",\"quantity\":1}";
    set_json_body(b->msg, request, sizeof(request) - 1);
    new_delivery(b, b->snd);
    b->call_started = now_s();
    pn_message_send(b->msg, b->snd, &b->buf);
    b->sent++;
    b->rpc_waiting = true;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;
    return a < c ? -1 : a > c;
}

static void rpc_report(bench_t *b)
{
    if (b->nlat == 0) {
        fprintf(stderr, "rmq-direct: no RPC completed\n");
        b->status = 1;
        return;
    }
    qsort(b->lat, b->nlat, sizeof(double), cmp_double);
    double p50 = b->lat[b->nlat / 2], p99 = b->lat[(b->nlat * 99) / 100];
    printf("calls=%zu p50_ms=%.3f p99_ms=%.3f\n", b->nlat, p50 * 1e3, p99 * 1e3);
}

static void on_reply(bench_t *b, pn_delivery_t *d)
{
    double took = now_s() - b->call_started;
    bool ok = read_message(b, d, b->rcv);
    settle_in(d, PN_ACCEPTED);
    pn_link_flow(b->rcv, 1);
    if (!ok || !b->rpc_waiting)
        return;
    pn_msgid_t corr = pn_message_get_correlation_id(b->msg);
    char want[32];
    snprintf(want, sizeof(want), "direct-%ld", b->sent - 1);
    if (corr.type != PN_STRING || corr.u.as_bytes.size != strlen(want) ||
        memcmp(corr.u.as_bytes.start, want, corr.u.as_bytes.size) != 0)
        return; /* a late reply to an earlier caller: not ours */
    if (b->nlat == b->caplat) {
        b->caplat = b->caplat ? b->caplat * 2 : 4096;
        b->lat = realloc(b->lat, b->caplat * sizeof(double));
    }
    b->lat[b->nlat++] = took;
    b->rpc_waiting = false;
    rpc_call(b);
}

/* ---- the event loop -------------------------------------------------------- */

static void on_open(bench_t *b)
{
    b->session = pn_session(b->conn);
    pn_session_open(b->session);
    if (b->mode == MODE_SEND || b->mode == MODE_RPC) {
        b->snd = pn_sender(b->session, "bench-sender");
        pn_terminus_set_address(pn_link_target(b->snd), b->address);
        /* As cmi does: the 3.x plugin declares /queue/NAME durable only
         * when the terminus is (a transient queue would conflict). */
        pn_terminus_set_durability(pn_link_target(b->snd), PN_CONFIGURATION);
        pn_link_open(b->snd);
    }
    if (b->mode != MODE_SEND) {
        b->rcv = pn_receiver(b->session, "bench-receiver");
        pn_terminus_set_address(pn_link_source(b->rcv), b->mode == MODE_RPC ? b->reply_address : b->address);
        pn_terminus_set_durability(pn_link_source(b->rcv), PN_CONFIGURATION);
        pn_link_open(b->rcv);
        pn_link_flow(b->rcv, b->mode == MODE_RECV ? (int)b->credit : b->mode == MODE_RESPOND ? 100 : 10);
    }
}

static void on_link_remote_open(bench_t *b, pn_link_t *l)
{
    /* RabbitMQ refuses an address by attaching without a terminus and then
     * detaching: wait for the detach, which carries the reason. */
    if (b->mode == MODE_RESPOND && l == b->rcv) {
        printf("ready\n"); /* bench/run waits for this line */
        fflush(stdout);
    }
    if (b->mode == MODE_RPC) {
        if (l == b->snd)
            b->snd_ready = true;
        else if (l == b->rcv)
            b->rcv_ready = true;
        rpc_call(b);
    }
}

static void on_delivery(bench_t *b, pn_delivery_t *d)
{
    pn_link_t *l = pn_delivery_link(d);
    b->t_progress = now_s();
    if (pn_link_is_sender(l)) {
        if (b->mode == MODE_SEND) {
            on_send_outcome(b, d);
        } else if (pn_delivery_updated(d)) {
            pn_delivery_settle(d); /* requests and replies: the outcome is not waited for */
        }
        return;
    }
    if (!pn_delivery_readable(d) || pn_delivery_partial(d))
        return;
    switch (b->mode) {
    case MODE_RECV: on_recv(b, d); break;
    case MODE_RESPOND: on_request(b, d); break;
    case MODE_RPC: on_reply(b, d); break;
    default: break;
    }
}

static void handle(bench_t *b, pn_event_t *e)
{
    switch (pn_event_type(e)) {
    case PN_CONNECTION_INIT: on_open(b); break;
    case PN_LINK_REMOTE_OPEN: on_link_remote_open(b, pn_event_link(e)); break;
    case PN_LINK_FLOW:
        if (b->mode == MODE_SEND && pn_event_link(e) == b->snd)
            send_some(b);
        break;
    case PN_DELIVERY: on_delivery(b, pn_event_delivery(e)); break;
    case PN_LINK_REMOTE_CLOSE:
        if (!b->finished)
            fail(b, "the broker closed a link", pn_link_remote_condition(pn_event_link(e)));
        break;
    case PN_SESSION_REMOTE_CLOSE: /* RabbitMQ 3.x: a declaration that failed */
        if (!b->finished)
            fail(b, "the broker ended the session", pn_session_remote_condition(pn_event_session(e)));
        break;
    case PN_CONNECTION_REMOTE_CLOSE:
        if (!b->finished)
            fail(b, "the broker closed the connection", pn_connection_remote_condition(b->conn));
        break;
    case PN_TRANSPORT_CLOSED:
        if (!b->finished)
            fail(b, "the connection failed", pn_transport_condition(pn_event_transport(e)));
        b->finished = b->transport_closed = true;
        pn_proactor_cancel_timeout(b->proactor); /* so that the proactor goes inactive */
        break;
    case PN_PROACTOR_TIMEOUT:
        /* proton flushes a connection only in its own event batches: what
         * the clock decides is done in the connection's wake. */
        if (!b->transport_closed) {
            pn_connection_wake(b->conn);
            pn_proactor_set_timeout(b->proactor, 100);
        }
        break;
    case PN_CONNECTION_WAKE:
        if (b->finished)
            break;
        if (g_stop)
            finish(b);
        else if (b->mode != MODE_RESPOND && now_s() - b->t_progress > STALL_MS / 1e3)
            fail(b, "no progress for 60 s", NULL);
        else if (b->mode == MODE_RPC)
            rpc_call(b); /* ends the run once its time is up */
        break;
    default: break;
    }
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* amqps://HOST:PORT: TLS as cmi sets it up (the broker's certificate and
 * name checked against RMQ_DIRECT_CA; TLS 1.2 and 1.3), so that the TLS
 * rows compare like with like. */
static pn_ssl_domain_t *tls_domain(void)
{
    const char *ca = getenv("RMQ_DIRECT_CA");
    pn_ssl_domain_t *d = pn_ssl_domain(PN_SSL_MODE_CLIENT);
    if (d == NULL || ca == NULL || pn_ssl_domain_set_protocols(d, "TLSv1.2 TLSv1.3") != 0 ||
        pn_ssl_domain_set_trusted_ca_db(d, ca) != 0 ||
        pn_ssl_domain_set_peer_authentication(d, PN_SSL_VERIFY_PEER_NAME, NULL) != 0) {
        if (d != NULL)
            pn_ssl_domain_free(d);
        return NULL;
    }
    return d;
}

static int use_tls(pn_transport_t *t, pn_ssl_domain_t *d, const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - hostport) : (int)strlen(hostport), hostport);
    pn_ssl_t *ssl = pn_ssl(t);
    return ssl != NULL && pn_ssl_init(ssl, d, NULL) == 0 && pn_ssl_set_peer_hostname(ssl, host) == 0 ? 0 : -1;
}

static int usage(void)
{
    fputs("usage: rmq-direct send HOST:PORT ADDRESS COUNT WINDOW BODY-BYTES\n"
          "       (amqps://HOST:PORT: TLS, the broker's CA in RMQ_DIRECT_CA)\n"
          "       rmq-direct recv HOST:PORT ADDRESS COUNT CREDIT\n"
          "       rmq-direct respond HOST:PORT ADDRESS\n"
          "       rmq-direct rpc HOST:PORT ADDRESS REPLY-ADDRESS SECONDS\n", stderr);
    return 2;
}

static int parse_args(bench_t *b, int argc, char **argv)
{
    if (argc < 4)
        return -1;
    b->address = argv[3];
    if (strcmp(argv[1], "send") == 0 && argc == 7) {
        b->mode = MODE_SEND;
        b->count = atol(argv[4]);
        b->window = atol(argv[5]);
        b->size = atol(argv[6]);
        return b->count > 0 && b->window > 0 && b->size >= 32 ? 0 : -1;
    }
    if (strcmp(argv[1], "recv") == 0 && argc == 6) {
        b->mode = MODE_RECV;
        b->count = atol(argv[4]);
        b->credit = atol(argv[5]);
        return b->count > 1 && b->credit > 0 ? 0 : -1;
    }
    if (strcmp(argv[1], "respond") == 0 && argc == 4) {
        b->mode = MODE_RESPOND;
        return 0;
    }
    if (strcmp(argv[1], "rpc") == 0 && argc == 6) {
        b->mode = MODE_RPC;
        b->reply_address = argv[4];
        b->seconds = atof(argv[5]);
        return b->seconds > 0 ? 0 : -1;
    }
    return -1;
}

static char *make_body(long size)
{
    /* {"seq":NNNNNNNNNNNN,"data":"xxx"}: the seq slot is 12 characters wide. */
    char *body = malloc((size_t)size + 1);
    static const char head[] = "{\"seq\":0           ,\"data\":\"";
    memcpy(body, head, sizeof(head) - 1);
    memset(body + sizeof(head) - 1, 'x', (size_t)size - (sizeof(head) - 1));
    body[size - 2] = '"';
    body[size - 1] = '}';
    body[size] = '\0';
    return body;
}

int main(int argc, char **argv)
{
    bench_t b = {0};
    if (parse_args(&b, argc, argv) != 0)
        return usage();
    if (b.mode == MODE_SEND)
        b.body = make_body(b.size);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    b.msg = pn_message();
    b.proactor = pn_proactor();
    b.conn = pn_connection();
    pn_connection_set_container(b.conn, "cmi-bench-direct");
    pn_connection_set_hostname(b.conn, "vhost:/");
    pn_connection_set_user(b.conn, "guest");
    pn_connection_set_password(b.conn, "guest");
    pn_transport_t *t = pn_transport();
    pn_sasl_allowed_mechs(pn_sasl(t), "PLAIN");
    pn_sasl_set_allow_insecure_mechs(pn_sasl(t), true);
    const char *server = argv[2];
    pn_ssl_domain_t *tls = NULL;
    if (strncmp(server, "amqps://", 8) == 0) {
        server += 8;
        if ((tls = tls_domain()) == NULL || use_tls(t, tls, server) != 0) {
            fprintf(stderr, "rmq-direct: cannot set up TLS (RMQ_DIRECT_CA: the broker's CA, PEM)\n");
            return 1;
        }
    }
    pn_connection_open(b.conn);
    pn_proactor_connect2(b.proactor, b.conn, t, server);
    pn_proactor_set_timeout(b.proactor, 100);
    b.t_progress = now_s();
    b.rpc_deadline = now_s() + b.seconds;
    bool closed = false;
    while (!closed) {
        pn_event_batch_t *batch = pn_proactor_wait(b.proactor);
        pn_event_t *e;
        while ((e = pn_event_batch_next(batch)) != NULL) {
            if (pn_event_type(e) == PN_PROACTOR_INACTIVE)
                closed = true;
            else
                handle(&b, e);
        }
        pn_proactor_done(b.proactor, batch);
    }
    if (b.mode == MODE_RPC && b.status == 0)
        rpc_report(&b);
    if (b.mode == MODE_RESPOND)
        printf("answered=%ld\n", b.received);
    pn_proactor_free(b.proactor);
    if (tls != NULL)
        pn_ssl_domain_free(tls);
    pn_message_free(b.msg);
    free(b.buf.start);
    free(b.body);
    free(b.lat);
    return b.status;
}
