/* The pool's connections: connecting (SASL, the vhost, the connection's
 * name), what the broker is (its version picks the address format), and
 * recovery: a connection that drops comes back per the recovery policy,
 * trying the next URL each time, and never gives up. */
#include "config.h"

#include <openssl/crypto.h>
#include <proton/codec.h>
#include <proton/condition.h>
#include <proton/sasl.h>
#include <proton/transport.h>
#include <stdio.h>
#include <string.h>

#include "rmq_core.h"
#include "rmq_oauth2.h"

#define OPEN_TIMEOUT_MS 30000 /* TCP, SASL and the broker's open, at most */

static const char *rmq_conn_server(const rmq_conn_t *c)
{
    return rmq_conn_server_of(c)->hostport;
}

const char *rmq_condition_text(pn_condition_t *cond, char *buf, size_t n)
{
    if (cond == NULL || !pn_condition_is_set(cond)) {
        snprintf(buf, n, "closed");
        return buf;
    }
    const char *desc = pn_condition_get_description(cond);
    snprintf(buf, n, "%s%s%s", pn_condition_get_name(cond), desc ? ": " : "", desc ? desc : "");
    return buf;
}

static uint64_t next_random(rmq_pool_t *pool)
{
    uint64_t x = pool->rng; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    pool->rng = x;
    return x * 2685821657736338717ull;
}

/* How long until the next attempt of c: the first connect retries
 * connectionEstablishRetryCount times, then recovery takes over; recovery
 * never gives up: its timeout only ends a back-off cycle. */
static uint64_t retry_delay(rmq_pool_t *pool, rmq_conn_t *c)
{
    const rmq_init_params_t *p = pool->p;
    if (!c->ever_up && (p->retry_count < 0 || c->failures <= (unsigned)p->retry_count))
        return p->retry_interval_ms;
    if (!c->ever_up && c->failures == (unsigned)p->retry_count + 1)
        RMQ_LOG(pool, CMI_LOG_ERROR,
                "no connection to %s after %u attempt(s); operations fail with 701201 while cmi keeps trying every "
                "%llu ms", rmq_conn_server(c), c->failures, (unsigned long long)p->recovery_interval_ms);
    unsigned n = c->failures > 0 ? c->failures - 1 : 0;
    switch (p->recovery_policy) {
    case RMQ_RECOVERY_FIXED:
        return p->recovery_interval_ms;
    case RMQ_RECOVERY_EXPONENTIAL_WITH_JITTER: {
        uint64_t d = p->recovery_initial_delay_ms ? p->recovery_initial_delay_ms : 1;
        for (unsigned i = 0; i < n && d < p->recovery_interval_ms; i++)
            d *= 2;
        if (d > p->recovery_interval_ms)
            d = p->recovery_interval_ms;
        return d / 2 + next_random(pool) % (d / 2 + 1); /* "full jitter" over the upper half */
    }
    default: /* FIXED_WITH_INITIAL_DELAY[_AND_TIMEOUT] */
        if (n == 0)
            return p->recovery_initial_delay_ms;
        if (p->recovery_policy == RMQ_RECOVERY_FIXED_WITH_INITIAL_DELAY_AND_TIMEOUT &&
            rmq_now() - c->cycle_start > (int64_t)p->recovery_timeout_ms) {
            RMQ_LOG(pool, CMI_LOG_WARN, "connection %d: still no broker after %llu ms (connectionRecoveryTimeout); "
                    "starting a new recovery cycle", c->index, (unsigned long long)p->recovery_timeout_ms);
            c->cycle_start = rmq_now();
            return p->recovery_initial_delay_ms;
        }
        return p->recovery_interval_ms;
    }
}

/* Each change of state once; while a connection stays down, each new
 * cause of failure of a server once (not once per retry: a broker that
 * refuses cmi's certificate or login every second is said once). */
static void log_state(rmq_conn_t *c, const char *why)
{
    rmq_pool_t *pool = c->pool;
    rmq_server_t *s = rmq_conn_server_of(c);
    if (c->logged_state == (int)c->state) {
        if (c->state == RMQ_CONN_DOWN && !pool->stopping && why != NULL && rmq_server_new_cause(s, why))
            rmq_conn_report(c, "still down", why);
        return;
    }
    c->logged_state = (int)c->state;
    if (c->state == RMQ_CONN_UP) {
        rmq_server_up(s);
        RMQ_LOG(pool, CMI_LOG_INFO, "connection %d up: %s (%s, %s addresses)", c->index, rmq_conn_server(c),
                c->broker, c->format == RMQ_FORMAT_V2 ? "v2" : "v1");
    } else if (c->state == RMQ_CONN_DOWN && !pool->stopping) {
        why = why != NULL ? why : "closed";
        rmq_server_new_cause(s, why);
        rmq_conn_report(c, "down", why);
    }
}

/* EXTERNAL: the broker takes the user from the client certificate the TLS
 * handshake showed it (proton sends an empty initial response). */
static const char *sasl_mech(const rmq_init_params_t *p)
{
    switch (p->sasl) {
    case RMQ_SASL_ANONYMOUS:
        return "ANONYMOUS";
    case RMQ_SASL_EXTERNAL:
        return "EXTERNAL";
    default:
        return "PLAIN";
    }
}

/* An attempt that cannot start (no token yet, no TLS layer): a failure like
 * any other, said once per cause and tried again per the policy. */
static void fail_attempt(rmq_pool_t *pool, rmq_conn_t *c, const char *why)
{
    pn_connection_free(c->pn);
    c->pn = NULL;
    c->state = RMQ_CONN_DOWN;
    log_state(c, why);
    rmq_conn_schedule_retry(pool, c);
}

/* OAuth2: the token is the PLAIN password (RabbitMQ's oauth2 backend takes
 * the user from the token; the client id names the connection's user to
 * proton, which wants one). */
static int use_token(rmq_pool_t *pool, rmq_conn_t *c)
{
    char token[16 * 1024 + 1], why[400];
    unsigned gen;
    int64_t expires_at;
    int rc = rmq_oauth2_current(pool->oauth2, token, sizeof(token), &gen, &expires_at, why, sizeof(why));
    if (rc == -2) { /* the first token is on its way: connected when it comes (rmq_conn_token_changed) */
        pn_connection_free(c->pn);
        c->pn = NULL;
        c->state = RMQ_CONN_DOWN;
        c->retry_at = rmq_now() + pool->p->retry_interval_ms;
        rmq_pool_timer_changed(pool);
        return -1;
    }
    if (rc != 0) {
        fail_attempt(pool, c, why);
        return -1;
    }
    pn_connection_set_user(c->pn, pool->p->client_id);
    pn_connection_set_password(c->pn, token);
    OPENSSL_cleanse(token, strlen(token));
    c->token_gen = gen;
    c->token_expires_at = expires_at;
    return 0;
}

void rmq_conn_token_changed(rmq_pool_t *pool)
{
    int64_t now = rmq_now();
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *c = &pool->conns[i];
        if (c->active && c->state == RMQ_CONN_DOWN && c->retry_at > now) {
            c->retry_at = now; /* it waited for a token, perhaps */
            rmq_pool_timer_changed(pool);
        }
    }
}

void rmq_conn_connect(rmq_pool_t *pool, rmq_conn_t *c)
{
    const rmq_init_params_t *p = pool->p;
    c->retry_at = 0;
    c->generation++;
    c->state = RMQ_CONN_CONNECTING;
    c->open_deadline = rmq_now() + OPEN_TIMEOUT_MS;
    c->close_why[0] = '\0';
    c->pn = pn_connection();
    pn_connection_set_context(c->pn, c);
    char id[160];
    snprintf(id, sizeof(id), "%s-%d", pool->container, c->index);
    pn_connection_set_container(c->pn, id);
    char vhost[300];
    snprintf(vhost, sizeof(vhost), "vhost:%s", p->vhost);
    pn_connection_set_hostname(c->pn, vhost);
    if (pool->oauth2 != NULL) {
        if (use_token(pool, c) != 0)
            return;
    } else if (p->sasl == RMQ_SASL_PLAIN) {
        pn_connection_set_user(c->pn, p->username ? p->username : "guest");
        pn_connection_set_password(c->pn, p->password ? p->password : "guest");
    }
    pn_data_t *props = pn_connection_properties(c->pn);
    pn_data_put_map(props);
    pn_data_enter(props);
    pn_data_put_symbol(props, pn_bytes(15, "connection_name"));
    pn_data_put_string(props, pn_bytes(strlen(p->name), p->name));
    pn_data_exit(props);
    pn_transport_t *t = pn_transport();
    pn_sasl_t *sasl = pn_sasl(t);
    pn_sasl_allowed_mechs(sasl, sasl_mech(p));
    /* PLAIN without TLS: proton refuses it unless told (sslEnabled false:
     * the operator's choice, a trusted network). */
    pn_sasl_set_allow_insecure_mechs(sasl, pool->tls == NULL);
    pn_transport_set_idle_timeout(t, (pn_millis_t)p->idle_timeout_ms);
    const rmq_server_t *s = rmq_conn_server_of(c);
    if (pool->tls != NULL && rmq_tls_attach(pool->tls, t, s->host) != 0) {
        pn_transport_free(t);
        fail_attempt(pool, c, "proton cannot set up TLS"); /* never without it */
        return;
    }
    RMQ_LOG(pool, CMI_LOG_DEBUG, "connection %d: connecting to %s", c->index, s->hostport);
    pn_proactor_connect2(pool->proactor, c->pn, t, s->hostport);
}

/* The broker's product and version (its open's properties): 4.x speaks
 * v2 addresses. */
static void read_broker(rmq_conn_t *c)
{
    char product[32] = "", version[32] = "";
    pn_data_t *props = pn_connection_remote_properties(c->pn);
    if (props != NULL)
        pn_data_rewind(props);
    if (props != NULL && pn_data_next(props) && pn_data_type(props) == PN_MAP) {
        size_t n = pn_data_get_map(props);
        pn_data_enter(props);
        for (size_t i = 0; i + 1 < n; i += 2) {
            pn_data_next(props);
            pn_bytes_t k = pn_data_get_symbol(props);
            pn_data_next(props);
            pn_bytes_t v = pn_data_get_string(props);
            char *dst = k.size == 7 && memcmp(k.start, "product", 7) == 0   ? product
                        : k.size == 7 && memcmp(k.start, "version", 7) == 0 ? version
                                                                              : NULL;
            if (dst != NULL && v.start != NULL)
                snprintf(dst, 32, "%.*s", (int)v.size, v.start);
        }
        pn_data_exit(props);
    }
    snprintf(c->broker, sizeof(c->broker), "%s %s", *product ? product : "unknown broker", version);
    int auto_format = rmq_format_for_version(product, *version ? version : NULL);
    c->format = c->pool->p->address_format == RMQ_FORMAT_AUTO ? auto_format : c->pool->p->address_format;
    atomic_store(&c->pool->format, c->format);
}

/* Each sender has a session of its own beside the main one: as many as
 * the broker allows (RabbitMQ 4.0: 64 sessions, channels 0-63), at most
 * RMQ_MAX_SENDERS. */
static void read_channel_max(rmq_conn_t *c)
{
    size_t channel_max = pn_transport_get_channel_max(pn_connection_transport(c->pn));
    c->max_links = channel_max < RMQ_MAX_SENDERS ? channel_max : RMQ_MAX_SENDERS;
    if (c->max_links == 0) {
        RMQ_LOG(c->pool, CMI_LOG_ERROR, "connection %d: the broker allows one AMQP session per connection; cmi "
                "needs two (publishes wait for a session that never comes)", c->index);
        c->max_links = 1;
    }
}

void rmq_conn_opened(rmq_conn_t *c)
{
    read_broker(c);
    read_channel_max(c);
    c->state = RMQ_CONN_UP;
    if (c->ever_up)
        rmq_stat_add(&c->pool->stats.reconnects, 1);
    c->ever_up = 1;
    /* failures is reset once a link attaches or an outcome arrives: a peer
     * that opens and closes at once must keep backing off. */
    log_state(c, NULL);
}

/* The connection is gone (every pn_* object of it with this event). */
void rmq_conn_lost(rmq_conn_t *c, const char *why)
{
    c->state = c->pool->stopping ? RMQ_CONN_CLOSED : RMQ_CONN_DOWN;
    log_state(c, why);
}

/* After everything that held on to c's pn_* objects has let go. */
void rmq_conn_forget(rmq_conn_t *c)
{
    c->statics_pending = 0;
    c->close_requested = 0;
    c->queued = 0;
    c->pn = NULL;
    c->ssn = NULL;
}

void rmq_conn_schedule_retry(rmq_pool_t *pool, rmq_conn_t *c)
{
    c->failures++;
    if (c->failures == 1)
        c->cycle_start = rmq_now();
    uint64_t d = retry_delay(pool, c);
    c->url++; /* the next URL each time */
    c->retry_at = rmq_now() + (int64_t)d;
    rmq_pool_timer_changed(pool);
}

/* In c's own events (PN_CONNECTION_WAKE), after its features let go. */
void rmq_conn_begin_close(rmq_conn_t *c)
{
    c->close_requested = 0;
    pn_connection_close(c->pn);
    if (c->state == RMQ_CONN_CONNECTING) {
        /* Nobody will answer a close frame: the transport ends now. */
        pn_transport_t *t = pn_connection_transport(c->pn);
        if (t != NULL) {
            pn_transport_close_tail(t);
            pn_transport_close_head(t);
        }
    }
}

int64_t rmq_conn_next_deadline(const rmq_conn_t *c)
{
    int64_t next = c->retry_at;
    if (c->state == RMQ_CONN_CONNECTING && (next == 0 || c->open_deadline < next))
        next = c->open_deadline;
    if (c->retiring && !c->close_requested && (next == 0 || c->retire_deadline < next))
        next = c->retire_deadline;
    return next;
}

void rmq_conn_on_timeout(rmq_pool_t *pool, rmq_conn_t *c, int64_t now)
{
    if (c->retry_at > 0 && c->retry_at <= now) {
        rmq_conn_connect(pool, c);
        return;
    }
    if (c->state == RMQ_CONN_CONNECTING && c->open_deadline <= now && c->pn != NULL && !c->close_requested) {
        /* No AMQP open in time (a black-holed SYN, a peer that never
         * speaks): closed, then retried like any failure. */
        snprintf(c->close_why, sizeof(c->close_why), "no AMQP open within %d ms", OPEN_TIMEOUT_MS);
        c->close_requested = 1;
        pn_connection_wake(c->pn);
    }
}
