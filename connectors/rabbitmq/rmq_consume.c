/* Consuming (spec §6), on the pool's thread: receivers with credit, each
 * delivery handed to mediation and settled with the flow's decision.
 *
 * A delivery is shared by the pool thread and the flow mediating it (one
 * reference each).  Decisions (accept, discard, requeue) and the flow's end
 * come from workers through a locked inbox; like any work for a connection
 * they are applied in its PN_CONNECTION_WAKE so that proton sends the
 * disposition.  Credit comes back only when a delivery is both settled and
 * its flow over: "credit" is the number of messages in mediation at once.
 *
 * A connection that drops takes its unsettled deliveries with it (the
 * broker requeues them); decisions that come later are answered, and
 * forgotten.  No decision by the end of the flow: requeued after
 * requeue_delay (not at once, which would be a hot loop); a flow still
 * running after ack_wait: requeued then, and its later decision ignored. */
#include "config.h"

#include <proton/codec.h>
#include <proton/condition.h>
#include <proton/disposition.h>
#include <proton/message.h>
#include <proton/terminus.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_pool.h"

#define LOG(pool, level, ...) (pool)->host->log((level), (pool)->component, __VA_ARGS__)
#define REATTACH_MS 2000 /* a receiver the broker closed is attached again after this */

/* ---- references ----------------------------------------------------------------- */

static void delivery_unref(rmq_delivery_t *d)
{
    if (atomic_fetch_sub(&d->refs, 1) == 1)
        free(d);
}

/* ---- the lists of a connection ------------------------------------------------------ */

static void out_remove(rmq_conn_t *c, rmq_delivery_t *d)
{
    if (!d->in_out)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        c->out_head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        c->out_tail = d->prev;
    d->prev = d->next = NULL;
    d->in_out = 0;
}

static void out_push(rmq_conn_t *c, rmq_delivery_t *d)
{
    d->prev = c->out_tail;
    d->next = NULL;
    if (c->out_tail)
        c->out_tail->next = d;
    else
        c->out_head = d;
    c->out_tail = d;
    d->in_out = 1;
}

static void rq_remove(rmq_conn_t *c, rmq_delivery_t *d)
{
    if (!d->queued_rq)
        return;
    if (d->rq_prev)
        d->rq_prev->rq_next = d->rq_next;
    else
        c->rq_head = d->rq_next;
    if (d->rq_next)
        d->rq_next->rq_prev = d->rq_prev;
    else
        c->rq_tail = d->rq_prev;
    d->rq_prev = d->rq_next = NULL;
    d->queued_rq = 0;
}

static void rq_push(rmq_conn_t *c, rmq_delivery_t *d)
{
    d->rq_prev = c->rq_tail;
    d->rq_next = NULL;
    if (c->rq_tail)
        c->rq_tail->rq_next = d;
    else
        c->rq_head = d;
    c->rq_tail = d;
    d->queued_rq = 1;
}

/* ---- settling ----------------------------------------------------------------------- */

static uint64_t outcome_of(int decision)
{
    switch (decision) {
    case RMQ_DECIDE_ACCEPT: return PN_ACCEPTED;
    case RMQ_DECIDE_DISCARD: return PN_REJECTED; /* dead-lettered where the queue has a DLX */
    default: return PN_RELEASED; /* requeue; 3.x refuses `modified` (see the notes) */
    }
}

/* Pool side of d is over when it is settled; the flow side when the flow
 * ended.  Both: a credit goes back to its receiver. */
static void refill(rmq_pool_t *pool, rmq_rlink_t *r);

static void live_remove(rmq_delivery_t *d)
{
    rmq_conn_t *c = d->conn;
    if (c == NULL)
        return;
    if (d->live_prev)
        d->live_prev->live_next = d->live_next;
    else
        c->live = d->live_next;
    if (d->live_next)
        d->live_next->live_prev = d->live_prev;
    d->live_prev = d->live_next = NULL;
}

/* The delivery no longer belongs to a connection or a receiver (they are
 * going): later work on it touches neither. */
static void detach(rmq_delivery_t *d)
{
    if (d->conn != NULL) {
        out_remove(d->conn, d);
        rq_remove(d->conn, d);
        live_remove(d);
    }
    if (d->pd != NULL)
        pn_delivery_set_context(d->pd, NULL);
    if (d->mediating && d->rlink != NULL) {
        /* Its flow goes on while the broker redelivers the message: it
         * still takes a slot of the credit until it ends. */
        rmq_rlink_t *r = d->rlink;
        r->in_mediation--;
        d->orphan_of = r->consumer;
        d->slot = r->slot;
        r->consumer->orphans[r->slot]++;
    }
    d->pd = NULL;
    d->conn = NULL;
    d->rlink = NULL;
    d->mediating = 0;
    d->settled = 1; /* the broker takes it back with the link or connection */
}

static void refill_slot(rmq_pool_t *pool, rmq_consumer_t *k, int slot);

static void maybe_finish(rmq_pool_t *pool, rmq_delivery_t *d)
{
    if (!d->settled || !d->flow_done)
        return;
    live_remove(d);
    rmq_rlink_t *r = d->rlink;
    if (d->mediating && r != NULL) {
        d->mediating = 0;
        r->in_mediation--;
    }
    rmq_consumer_t *orphan_of = d->orphan_of;
    int slot = d->slot;
    delivery_unref(d); /* the pool's reference */
    if (orphan_of != NULL) {
        orphan_of->orphans[slot]--;
        LOG(pool, CMI_LOG_DEBUG, "a flow of a message from a lost receiver ended (%d more on receiver %d)",
            orphan_of->orphans[slot], slot);
        refill_slot(pool, orphan_of, slot);
    } else if (r != NULL) {
        refill(pool, r);
    }
}

static void settle(rmq_pool_t *pool, rmq_delivery_t *d, int decision)
{
    if (d->settled)
        return;
    if (d->pd != NULL) {
        pn_delivery_update(d->pd, outcome_of(decision));
        pn_delivery_settle(d->pd);
        d->pd = NULL;
    }
    d->settled = 1;
    if (d->conn != NULL) {
        out_remove(d->conn, d);
        rq_remove(d->conn, d);
    }
    maybe_finish(pool, d);
}

/* ---- receivers ------------------------------------------------------------------------ */

/* A consumer cannot consume: logged at level the first time for a given
 * reason, at debug while it repeats (every retry would otherwise log). */
__attribute__((format(printf, 4, 5))) static void consume_failed(rmq_pool_t *pool, rmq_consumer_t *k, int level,
                                                                  const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    /* The reason without the connection index, which changes. */
    const char *reason = strstr(text, ": ") ? strstr(text, ": ") + 2 : text;
    int again = strncmp(k->last_error, reason, sizeof(k->last_error) - 1) == 0;
    if (!again)
        snprintf(k->last_error, sizeof(k->last_error), "%.*s", (int)sizeof(k->last_error) - 1, reason);
    LOG(pool, again ? CMI_LOG_DEBUG : level, "%s%s", text, again ? " (again)" : "");
}

static void attach(rmq_pool_t *pool, rmq_conn_t *c, rmq_rlink_t *r)
{
    const char *address = rmq_target_address(&r->consumer->spec.target, c->format);
    r->pn = pn_receiver(c->ssn, r->name);
    pn_terminus_set_address(pn_link_source(r->pn), address);
    /* /queue/NAME is declared with the source's durability on 3.x. */
    pn_terminus_set_durability(pn_link_source(r->pn), PN_CONFIGURATION);
    if (r->consumer->spec.auto_ack) {
        /* Auto-ack: the broker sends settled; the message counts as
         * delivered when it arrives (spec §6). */
        pn_link_set_snd_settle_mode(r->pn, PN_SND_SETTLED);
    }
    pn_link_set_context(r->pn, r);
    pn_link_open(r->pn);
    r->ready = 0;
    r->retry_at = 0;
    LOG(pool, CMI_LOG_DEBUG, "connection %d: consuming from %s", c->index, address);
}

/* Its queue first, when it needs declaring on this connection; then the
 * receiver. */
static void open_rlink(rmq_pool_t *pool, rmq_conn_t *c, rmq_rlink_t *r)
{
    const rmq_target_t *t = &r->consumer->spec.target;
    if (t->key != NULL && rmq_target_needs_declaring(t, c->format)) {
        rmq_decl_t *d = c->decls;
        while (d != NULL && strcmp(d->key, t->key) != 0)
            d = d->next;
        if (d == NULL)
            d = rmq_pool_declare(pool, c, t);
        if (d->state != DECL_DONE) {
            r->waiting_decl = 1;
            rmq_pool_declare_flush(pool, c); /* 4.x: the request goes out now */
            return;
        }
    }
    attach(pool, c, r);
}

static void start_consumer(rmq_pool_t *pool, rmq_conn_t *c, rmq_consumer_t *k)
{
    for (int i = 0; i < k->spec.links; i++) {
        rmq_rlink_t *r = calloc(1, sizeof(*r));
        if (r == NULL)
            abort();
        r->conn = c;
        r->consumer = k;
        r->slot = i;
        snprintf(r->name, sizeof(r->name), "receiver-%d-%d-%p", c->index, i, (void *)r);
        r->next = c->rlinks;
        c->rlinks = r;
        open_rlink(pool, c, r);
    }
}

void rmq_consume_on_up(rmq_pool_t *pool, rmq_conn_t *c)
{
    if (pool->consuming_stopped)
        return;
    for (rmq_consumer_t *k = pool->consumers; k != NULL; k = k->next)
        start_consumer(pool, c, k);
}

void rmq_consume_on_declared(rmq_pool_t *pool, rmq_conn_t *c, const char *key, int status, const char *detail)
{
    for (rmq_rlink_t *r = c->rlinks; r != NULL; r = r->next) {
        if (!r->waiting_decl || r->consumer->spec.target.key == NULL ||
            strcmp(r->consumer->spec.target.key, key) != 0)
            continue;
        r->waiting_decl = 0;
        if (status == 0) {
            attach(pool, c, r);
        } else {
            consume_failed(pool, r->consumer, CMI_LOG_ERROR, "cannot consume from %s: %s (trying again every %d ms)",
                           r->consumer->spec.target.describe, detail ? detail : "declaration failed", REATTACH_MS);
            r->retry_at = rmq_pool_now() + REATTACH_MS;
            rmq_pool_arm_timer(pool);
        }
    }
}

/* ---- deliveries ---------------------------------------------------------------------- */

static void id_text(pn_atom_t a, char *buf, size_t n)
{
    switch (a.type) {
    case PN_STRING:
    case PN_SYMBOL:
    case PN_BINARY:
        snprintf(buf, n, "%.*s", (int)a.u.as_bytes.size, a.u.as_bytes.start);
        break;
    case PN_ULONG:
        snprintf(buf, n, "%llu", (unsigned long long)a.u.as_ulong);
        break;
    case PN_UUID: {
        const unsigned char *u = (const unsigned char *)a.u.as_uuid.bytes;
        snprintf(buf, n, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
                 u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        break;
    }
    default:
        buf[0] = '\0';
    }
}

/* The body: one data section (or several, joined), or an amqp-value
 * string or binary.  Anything else is not something to mediate. */
static int body_of(pn_message_t *m, char **out, size_t *len)
{
    pn_data_t *b = pn_message_body(m);
    pn_data_rewind(b);
    if (!pn_data_next(b)) {
        *out = strdup("");
        *len = 0;
        return 0;
    }
    pn_type_t t = pn_data_type(b);
    if (t == PN_BINARY || t == PN_STRING || t == PN_SYMBOL) {
        pn_bytes_t v = t == PN_BINARY ? pn_data_get_binary(b) : t == PN_STRING ? pn_data_get_string(b)
                                                                             : pn_data_get_symbol(b);
        *out = malloc(v.size + 1);
        memcpy(*out, v.start, v.size);
        (*out)[v.size] = '\0';
        *len = v.size;
        return 0;
    }
    if (t == PN_LIST && pn_message_is_inferred(m)) {
        size_t n = pn_data_get_list(b), total = 0;
        pn_data_enter(b);
        char *buf = malloc(1);
        for (size_t i = 0; i < n && pn_data_next(b); i++) {
            if (pn_data_type(b) != PN_BINARY) {
                free(buf);
                return -1;
            }
            pn_bytes_t v = pn_data_get_binary(b);
            buf = realloc(buf, total + v.size + 1);
            memcpy(buf + total, v.start, v.size);
            total += v.size;
        }
        pn_data_exit(b);
        buf[total] = '\0';
        *out = buf;
        *len = total;
        return 0;
    }
    return -1;
}

/* Application-properties as text headers. */
static size_t props_of(pn_message_t *m, cmi_nv_t **out, char **strings)
{
    pn_data_t *p = pn_message_properties(m);
    pn_data_rewind(p);
    *out = NULL;
    *strings = NULL;
    if (!pn_data_next(p) || pn_data_type(p) != PN_MAP)
        return 0;
    size_t n = pn_data_get_map(p) / 2, count = 0, used = 0, cap = 1024;
    cmi_nv_t *nv = calloc(n ? n : 1, sizeof(*nv));
    char *s = malloc(cap);
    size_t *offs = calloc(n ? n * 2 : 2, sizeof(*offs));
    pn_data_enter(p);
    for (size_t i = 0; i < n; i++) {
        char key[256] = "", val[1024] = "";
        pn_data_next(p);
        if (pn_data_type(p) == PN_STRING || pn_data_type(p) == PN_SYMBOL) {
            pn_bytes_t k = pn_data_type(p) == PN_STRING ? pn_data_get_string(p) : pn_data_get_symbol(p);
            snprintf(key, sizeof(key), "%.*s", (int)k.size, k.start);
        }
        pn_data_next(p);
        switch (pn_data_type(p)) {
        case PN_STRING: { pn_bytes_t v = pn_data_get_string(p); snprintf(val, sizeof(val), "%.*s", (int)v.size, v.start); break; }
        case PN_SYMBOL: { pn_bytes_t v = pn_data_get_symbol(p); snprintf(val, sizeof(val), "%.*s", (int)v.size, v.start); break; }
        case PN_BOOL: snprintf(val, sizeof(val), "%s", pn_data_get_bool(p) ? "true" : "false"); break;
        case PN_INT: snprintf(val, sizeof(val), "%d", pn_data_get_int(p)); break;
        case PN_UINT: snprintf(val, sizeof(val), "%u", pn_data_get_uint(p)); break;
        case PN_LONG: snprintf(val, sizeof(val), "%lld", (long long)pn_data_get_long(p)); break;
        case PN_ULONG: snprintf(val, sizeof(val), "%llu", (unsigned long long)pn_data_get_ulong(p)); break;
        case PN_DOUBLE: snprintf(val, sizeof(val), "%.17g", pn_data_get_double(p)); break;
        default: break;
        }
        if (key[0] == '\0')
            continue;
        size_t need = strlen(key) + strlen(val) + 2;
        if (used + need > cap) {
            while (used + need > cap)
                cap *= 2;
            s = realloc(s, cap);
        }
        offs[count * 2] = used;
        used += (size_t)sprintf(s + used, "%s", key) + 1;
        offs[count * 2 + 1] = used;
        used += (size_t)sprintf(s + used, "%s", val) + 1;
        count++;
    }
    pn_data_exit(p);
    for (size_t i = 0; i < count; i++)
        nv[i] = (cmi_nv_t){s + offs[i * 2], s + offs[i * 2 + 1]};
    free(offs);
    *out = nv;
    *strings = s;
    return count;
}

/* Decodes d's message and hands it to mediation (or settles it when it
 * cannot be mediated).  r is NULL for an auto-acknowledged message whose
 * receiver went: the broker will not send it again, so it is mediated
 * all the same, outside the credit. */
static void mediate(rmq_pool_t *pool, rmq_consumer_t *k, rmq_rlink_t *r, rmq_delivery_t *d)
{
    const rmq_consumer_spec_t *spec = &k->spec;
    pn_message_t *m = pn_message();
    char *body = NULL, *strings = NULL;
    size_t len = 0;
    cmi_nv_t *props = NULL;
    int rc = -2, delivered = 0;
    const char *why = "undecodable AMQP message";
    if (pn_message_decode(m, d->raw, d->raw_len) == 0) {
        why = "a body that is neither data sections nor a string or binary value";
        if (body_of(m, &body, &len) == 0) {
            char mid[128], cid[128];
            id_text(pn_message_get_id(m), mid, sizeof(mid));
            id_text(pn_message_get_correlation_id(m), cid, sizeof(cid));
            snprintf(d->message_id, sizeof(d->message_id), "%s", mid);
            rmq_incoming_t in = {
                .body = body,
                .len = len,
                .content_type = pn_message_get_content_type(m),
                .content_encoding = pn_message_get_content_encoding(m),
                .message_id = mid,
                .correlation_id = cid,
                .reply_to = pn_message_get_reply_to(m),
                .redelivered = !pn_message_is_first_acquirer(m),
            };
            in.nprops = props_of(m, &props, &strings);
            in.props = props;
            atomic_fetch_add(&d->refs, 1); /* the flow's, if it starts */
            rc = spec->deliver(spec->arg, d, &in);
            delivered = 1; /* deliver() logs what it refuses */
            if (rc != 0)
                atomic_fetch_sub(&d->refs, 1);
        }
    }
    free(d->raw);
    d->raw = NULL;
    if (rc == 0) {
        if (r != NULL) {
            d->mediating = 1;
            r->in_mediation++;
        }
    } else if (rc == 1) {
        /* Dealt with at once (a sendRpc reply): accepted now. */
        int none = RMQ_DECIDE_NONE;
        atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_ACCEPT);
        d->flow_done = 1;
        if (d->settled)
            maybe_finish(pool, d);
        else
            settle(pool, d, atomic_load(&d->decision));
    } else {
        int none = RMQ_DECIDE_NONE;
        if (rc == -2) {
            if (!delivered)
                LOG(pool, CMI_LOG_WARN, "a message from %s was discarded: %s (the consumer goes on)",
                    spec->target.describe, why);
            atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_DISCARD);
        } else {
            /* The engine is stopping: no more credit for this consumer. */
            k->refused = 1;
            if (d->auto_acked)
                LOG(pool, CMI_LOG_WARN, "an auto-acknowledged message%s%s from %s was dropped: the engine is "
                    "stopping (with auto-ack the broker does not keep what it sent)", d->message_id[0] ? " " : "",
                    d->message_id, spec->target.describe);
            atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_REQUEUE);
        }
        d->flow_done = 1;
        if (d->settled)
            maybe_finish(pool, d);
        else
            settle(pool, d, atomic_load(&d->decision));
    }
    pn_message_free(m);
    free(body);
    free(props);
    free(strings);
}

static rmq_delivery_t *unpark(rmq_rlink_t *r);

/* The receiver is gone: its parked messages go back to the queue with it
 * (they were never mediated), except auto-acknowledged ones, which the
 * broker considers delivered: those are mediated now. */
static void drop_parked(rmq_pool_t *pool, rmq_rlink_t *r)
{
    rmq_delivery_t *d;
    while ((d = unpark(r)) != NULL) {
        detach(d);
        if (d->auto_acked && d->raw != NULL) {
            mediate(pool, r->consumer, NULL, d);
            continue;
        }
        free(d->raw);
        d->raw = NULL;
        d->flow_done = 1; /* never mediated */
        maybe_finish(pool, d);
    }
}

static void park(rmq_rlink_t *r, rmq_delivery_t *d)
{
    d->parked_next = NULL;
    if (r->parked_tail)
        r->parked_tail->parked_next = d;
    else
        r->parked_head = d;
    r->parked_tail = d;
    r->nparked++;
}

static rmq_delivery_t *unpark(rmq_rlink_t *r)
{
    rmq_delivery_t *d = r->parked_head;
    if (d != NULL) {
        r->parked_head = d->parked_next;
        if (r->parked_head == NULL)
            r->parked_tail = NULL;
        d->parked_next = NULL;
        r->nparked--;
    }
    return d;
}

/* A slot in mediation is free: the next parked message takes it, or the
 * broker is asked for more, up to the credit (counting what is on its way). */
static int busy(const rmq_rlink_t *r)
{
    return r->in_mediation + r->consumer->orphans[r->slot];
}

static void refill(rmq_pool_t *pool, rmq_rlink_t *r)
{
    rmq_consumer_t *k = r->consumer;
    int closing = pool->consuming_stopped || pool->stopping || k->refused;
    while ((closing || busy(r) < k->spec.credit) && r->parked_head != NULL) {
        rmq_delivery_t *d = unpark(r);
        if (!d->auto_acked && (d->settled || closing)) {
            /* Its ack wait ran out while it waited, or consuming stops:
             * back to the queue, never mediated. */
            free(d->raw);
            d->raw = NULL;
            d->flow_done = 1;
            if (!d->settled)
                settle(pool, d, RMQ_DECIDE_REQUEUE);
            else
                maybe_finish(pool, d);
            continue;
        }
        mediate(pool, k, r, d);
    }
    if (r->pn == NULL || !r->ready || closing)
        return;
    /* The credit the broker should hold: what the flows in mediation and
     * the parked messages leave of it.  RabbitMQ 3.x sends beyond the
     * credit (messages already on their way when a flow frame arrives),
     * which takes proton's count below zero; a flow frame then must set it
     * to the target, never to a negative count, which goes on the wire as
     * a huge unsigned link-credit and lets the broker send the whole queue
     * (seen: 78,000 messages parked in cmi for a credit of 100). */
    int target = k->spec.credit - busy(r) - (int)r->nparked;
    if (target <= 0)
        return;
    /* Credit goes back in batches of a quarter of it: RabbitMQ 3.x turns
     * every flow frame into a basic.credit, and one per message keeps its
     * CPU busy.  No stall: below a batch the broker still holds most of
     * the credit, or flows in mediation refill when they end. */
    int want = target - pn_link_credit(r->pn);
    int batch = k->spec.credit >= 4 ? k->spec.credit / 4 : 1;
    if (want >= batch)
        pn_link_flow(r->pn, want);
}

/* A flow orphaned by a lost receiver ended: its slot is free again.  This
 * runs outside the events of the receivers' connections, and proton sends
 * a flow frame only for the connection whose events it handles: each is
 * woken and refills its receivers then (rmq_consume_on_wake). */
static void refill_slot(rmq_pool_t *pool, rmq_consumer_t *k, int slot)
{
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *c = &pool->conns[i];
        for (rmq_rlink_t *r = c->rlinks; r != NULL; r = r->next) {
            if (r->consumer != k || r->slot != slot || r->pn == NULL)
                continue;
            if (c->pn == pool->cur)
                refill(pool, r);
            else if (c->pn != NULL)
                pn_connection_wake(c->pn);
        }
    }
}

static void on_message(rmq_pool_t *pool, rmq_rlink_t *r, pn_delivery_t *pd)
{
    rmq_conn_t *c = r->conn;
    size_t size = pn_delivery_pending(pd);
    rmq_delivery_t *d = calloc(1, sizeof(*d));
    char *raw = malloc(size ? size : 1);
    if (raw == NULL || d == NULL)
        abort();
    ssize_t got = pn_link_recv(r->pn, raw, size);
    pn_link_advance(r->pn);
    d->pool = pool;
    d->conn = c;
    d->rlink = r;
    d->pd = pd;
    d->raw = raw;
    d->raw_len = got > 0 ? (size_t)got : 0;
    atomic_init(&d->refs, 1); /* the pool's; the flow's is added when it starts */
    pn_delivery_set_context(pd, d);
    d->live_next = c->live;
    if (c->live)
        c->live->live_prev = d;
    c->live = d;
    const rmq_consumer_spec_t *spec = &r->consumer->spec;
    if (spec->auto_ack || pn_delivery_settled(pd)) {
        /* Auto-ack: delivered on arrival, whatever the flow decides. */
        atomic_store(&d->decision, RMQ_DECIDE_ACCEPT);
        if (!pn_delivery_settled(pd))
            pn_delivery_update(pd, PN_ACCEPTED);
        pn_delivery_settle(pd);
        d->pd = NULL;
        d->settled = 1;
        d->auto_acked = 1;
    } else {
        d->ack_deadline = rmq_pool_now() + (int64_t)spec->ack_wait_ms;
        out_push(c, d);
        if (c->out_head == d)
            rmq_pool_arm_timer(pool); /* the earliest ack deadline now */
    }
    if (busy(r) >= spec->credit)
        park(r, d); /* beyond the credit: waits for a slot */
    else
        mediate(pool, r->consumer, r, d);
}

int rmq_consume_on_event(rmq_pool_t *pool, pn_event_t *e)
{
    switch (pn_event_type(e)) {
    case PN_LINK_REMOTE_OPEN:
    case PN_LINK_FLOW:
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH:
    case PN_DELIVERY:
        break;
    default:
        return 0;
    }
    pn_link_t *pl = pn_event_link(e);
    if (pl == NULL || !pn_link_is_receiver(pl))
        return 0;
    rmq_rlink_t *r = pn_link_get_context(pl);
    if (r == NULL)
        return 0; /* the /management receiver, or a receiver already closed */
    rmq_conn_t *c = r->conn;
    switch (pn_event_type(e)) {
    case PN_LINK_REMOTE_OPEN:
        if (pn_terminus_get_address(pn_link_remote_source(pl)) != NULL && !r->ready) {
            r->ready = 1;
            c->failures = 0;
            refill(pool, r); /* the credit, less what orphaned flows still hold */
            LOG(pool, CMI_LOG_INFO, "connection %d: consuming from %s (credit %d)", c->index,
                r->consumer->spec.target.describe, r->consumer->spec.credit);
            r->consumer->last_error[0] = '\0';
        }
        break;
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH: {
        char why[300];
        rmq_condition_text(pn_link_remote_condition(pl), why, sizeof(why));
        if (!pool->stopping && !pool->consuming_stopped) {
            consume_failed(pool, r->consumer, CMI_LOG_WARN, "connection %d: the broker closed the receiver on %s: "
                           "%s; attaching again every %d ms", c->index, r->consumer->spec.target.describe, why,
                           REATTACH_MS);
            r->retry_at = rmq_pool_now() + REATTACH_MS;
            rmq_pool_arm_timer(pool);
        }
        /* Its unsettled deliveries went back to the queue with it. */
        r->ready = 0;
        drop_parked(pool, r);
        for (rmq_delivery_t *d = c->live, *nx; d != NULL; d = nx) {
            nx = d->live_next;
            if (d->rlink == r) {
                detach(d);
                maybe_finish(pool, d);
            }
        }
        pn_link_set_context(pl, NULL);
        pn_link_close(pl);
        pn_link_free(pl);
        r->pn = NULL;
        r->ready = 0;
        break;
    }
    case PN_DELIVERY: {
        pn_delivery_t *pd = pn_event_delivery(e);
        if (pn_delivery_get_context(pd) == NULL && pn_delivery_readable(pd) && !pn_delivery_partial(pd))
            on_message(pool, r, pd);
        break;
    }
    default:
        break;
    }
    return 1;
}

/* ---- work from the workers ------------------------------------------------------------- */

static void post(rmq_delivery_t *d, int kind)
{
    rmq_pool_t *pool = d->pool;
    struct rmq_dwork *w = calloc(1, sizeof(*w));
    if (w == NULL)
        abort();
    w->d = d;
    w->kind = kind;
    pthread_mutex_lock(&pool->lock);
    w->next = pool->dwork_inbox;
    pool->dwork_inbox = w;
    pthread_mutex_unlock(&pool->lock);
    pn_proactor_interrupt(pool->proactor);
}

int rmq_delivery_decide(rmq_delivery_t *d, int decision)
{
    int none = RMQ_DECIDE_NONE;
    if (!atomic_compare_exchange_strong(&d->decision, &none, decision))
        return 0;
    atomic_fetch_add(&d->refs, 1); /* the work item's */
    post(d, RMQ_WORK_DECIDE);
    return 1;
}

void rmq_delivery_flow_done(rmq_delivery_t *d)
{
    post(d, RMQ_WORK_DONE); /* carries the flow's reference */
}

const char *rmq_delivery_message_id(const rmq_delivery_t *d)
{
    return d->message_id;
}

void rmq_consume_take_inbox(rmq_pool_t *pool)
{
    pthread_mutex_lock(&pool->lock);
    struct rmq_dwork *w = pool->dwork_inbox;
    pool->dwork_inbox = NULL;
    rmq_consumer_t *ks = pool->new_consumers;
    pool->new_consumers = NULL;
    int stop = pool->stop_consuming;
    pthread_mutex_unlock(&pool->lock);
    while (ks != NULL) {
        rmq_consumer_t *k = ks;
        ks = k->next;
        k->next = pool->consumers;
        pool->consumers = k;
        for (size_t i = 0; i < pool->nconns; i++)
            if (pool->conns[i].state == CONN_UP) {
                /* Attached in the connection's own events. */
                pool->conns[i].statics_pending = 1;
                pn_connection_wake(pool->conns[i].pn);
            }
    }
    if (stop)
        pool->consuming_stopped = 1; /* refill() grants no more credit */
    /* Work goes to the connection of its delivery; deliveries whose
     * connection is gone are dealt with here (no pn_* needed). */
    while (w != NULL) {
        struct rmq_dwork *next = w->next;
        rmq_conn_t *c = w->d->conn;
        if (c != NULL && c->pn != NULL) {
            w->next = c->dwork;
            c->dwork = w;
            pn_connection_wake(c->pn);
        } else {
            rmq_delivery_t *d = w->d;
            d->settled = 1;
            if (w->kind == RMQ_WORK_DONE && !d->flow_done) {
                d->flow_done = 1;
                maybe_finish(pool, d);
                delivery_unref(d); /* the flow's */
            } else if (w->kind == RMQ_WORK_DECIDE) {
                delivery_unref(d); /* the work item's */
            }
            free(w);
        }
        w = next;
    }
}

static void apply(rmq_pool_t *pool, rmq_conn_t *c, struct rmq_dwork *w)
{
    rmq_delivery_t *d = w->d;
    if (w->kind == RMQ_WORK_DECIDE) {
        if (!d->settled)
            settle(pool, d, atomic_load(&d->decision));
        delivery_unref(d); /* the work item's */
        return;
    }
    /* The flow is over. */
    d->flow_done = 1;
    if (!d->settled && atomic_load(&d->decision) == RMQ_DECIDE_NONE && d->rlink != NULL) {
        /* No decision: requeued after a delay, not at once (a flow that
         * never decides would spin the message through the broker). */
        rmq_consumer_t *k = d->rlink->consumer;
        int64_t now = rmq_pool_now();
        if (now - k->last_no_decision_log > 10000) {
            k->last_no_decision_log = now;
            LOG(pool, CMI_LOG_WARN, "a flow of %s ended without accept, discard or requeue: the message is "
                "requeued in %llu ms (logged at most every 10 s)", d->rlink->consumer->spec.target.describe,
                (unsigned long long)d->rlink->consumer->spec.requeue_delay_ms);
        }
        d->requeue_at = now + (int64_t)d->rlink->consumer->spec.requeue_delay_ms;
        rq_push(c, d);
        rmq_pool_arm_timer(pool);
    }
    maybe_finish(pool, d);
    delivery_unref(d); /* the flow's */
}

static void apply_all(rmq_pool_t *pool, rmq_conn_t *c)
{
    struct rmq_dwork *w = c->dwork;
    c->dwork = NULL;
    while (w != NULL) {
        struct rmq_dwork *next = w->next;
        apply(pool, c, w);
        free(w);
        w = next;
    }
}

void rmq_consume_on_wake(rmq_pool_t *pool, rmq_conn_t *c)
{
    apply_all(pool, c);
    if (c->state != CONN_UP)
        return;
    /* Consuming stopped: no credit is granted again, and what the broker
     * still sends on the credit it has is refused by the engine and
     * released.  (Not a drain: RabbitMQ 3.10 closes the connection on a
     * flow with drain set, losing the decisions still on their way.) */
    if (pool->consuming_stopped)
        return;
    /* Receivers of consumers added since the connection came up, and
     * receivers the broker closed whose wait is over. */
    for (rmq_consumer_t *k = pool->consumers; k != NULL; k = k->next) {
        int has = 0;
        for (rmq_rlink_t *r = c->rlinks; r != NULL && !has; r = r->next)
            has = r->consumer == k;
        if (!has)
            start_consumer(pool, c, k);
    }
    for (rmq_rlink_t *r = c->rlinks; r != NULL; r = r->next) {
        if (r->pn == NULL && !r->waiting_decl && r->retry_at == 0)
            open_rlink(pool, c, r);
        else
            refill(pool, r); /* slots freed elsewhere (refill_slot) */
    }
}

/* ---- timers ----------------------------------------------------------------------------- */

int64_t rmq_consume_next_deadline(rmq_pool_t *pool)
{
    int64_t next = 0;
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *c = &pool->conns[i];
        if (c->out_head != NULL && (next == 0 || c->out_head->ack_deadline < next))
            next = c->out_head->ack_deadline;
        if (c->rq_head != NULL && (next == 0 || c->rq_head->requeue_at < next))
            next = c->rq_head->requeue_at;
        for (rmq_rlink_t *r = c->rlinks; r != NULL; r = r->next)
            if (r->retry_at > 0 && (next == 0 || r->retry_at < next))
                next = r->retry_at;
    }
    return next;
}

void rmq_consume_on_timeout(rmq_pool_t *pool, int64_t now)
{
    for (size_t i = 0; i < pool->nconns; i++) {
        rmq_conn_t *c = &pool->conns[i];
        int touched = 0;
        /* Requeue delays that ran out (in order of their end). */
        while (c->rq_head != NULL && c->rq_head->requeue_at <= now) {
            rmq_delivery_t *d = c->rq_head;
            rq_remove(c, d);
            int none = RMQ_DECIDE_NONE;
            atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_REQUEUE);
            settle(pool, d, RMQ_DECIDE_REQUEUE);
            touched = 1;
        }
        /* Flows still running after the ack wait: requeued, their later
         * decision is ignored (spec §6). */
        while (c->out_head != NULL && c->out_head->ack_deadline <= now) {
            rmq_delivery_t *d = c->out_head;
            int none = RMQ_DECIDE_NONE;
            /* Only a flow still running is worth a warning: a parked
             * message never started, and one whose flow ended without a
             * decision was logged then. */
            if (atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_TIMEOUT))
                LOG(pool, d->mediating && !d->flow_done ? CMI_LOG_WARN : CMI_LOG_DEBUG,
                    "a message from %s was %s after the ack wait time: requeued",
                    d->rlink ? d->rlink->consumer->spec.target.describe : "a queue",
                    d->mediating && !d->flow_done ? "still in mediation" : "still waiting");
            settle(pool, d, atomic_load(&d->decision));
            touched = 1;
        }
        for (rmq_rlink_t *r = c->rlinks; r != NULL; r = r->next)
            if (r->retry_at > 0 && r->retry_at <= now && r->pn == NULL && c->state == CONN_UP) {
                r->retry_at = 0;
                c->statics_pending = 1; /* attached in the connection's own events */
                touched = 1;
            }
        if (touched && c->pn != NULL)
            pn_connection_wake(c->pn); /* dispositions are sent from its batch */
    }
}

/* ---- losing and closing ------------------------------------------------------------------- */

void rmq_consume_on_closed(rmq_pool_t *pool, rmq_conn_t *c)
{
    for (rmq_rlink_t *r = c->rlinks; r != NULL; r = r->next) {
        r->pn = NULL; /* gone with the connection */
        r->ready = 0;
    }
    for (rmq_rlink_t *r = c->rlinks; r != NULL; r = r->next)
        drop_parked(pool, r);
    /* Unsettled deliveries go back to the queue with the connection: the
     * flows still mediating them may decide, and nothing happens. */
    while (c->live != NULL) {
        rmq_delivery_t *d = c->live;
        detach(d);
        maybe_finish(pool, d);
    }
    while (c->dwork != NULL) {
        struct rmq_dwork *w = c->dwork;
        c->dwork = w->next;
        rmq_delivery_t *d = w->d;
        if (w->kind == RMQ_WORK_DONE && !d->flow_done) {
            d->flow_done = 1;
            maybe_finish(pool, d);
            delivery_unref(d);
        } else if (w->kind == RMQ_WORK_DECIDE) {
            delivery_unref(d);
        }
        free(w);
    }
    while (c->rlinks != NULL) {
        rmq_rlink_t *r = c->rlinks;
        c->rlinks = r->next;
        free(r);
    }
}

void rmq_consume_release_all(rmq_pool_t *pool, rmq_conn_t *c)
{
    /* Shutdown: nothing is left hanging (spec §6).  Decisions that arrived
     * with the stop are sent first: an accepted message is not released. */
    apply_all(pool, c);
    rmq_delivery_t *d;
    while ((d = c->out_head) != NULL) { /* settle() takes d off the list */
        int none = RMQ_DECIDE_NONE;
        atomic_compare_exchange_strong(&d->decision, &none, RMQ_DECIDE_REQUEUE);
        settle(pool, d, atomic_load(&d->decision));
    }
}

void rmq_consume_dispose(rmq_pool_t *pool)
{
    while (pool->consumers != NULL) {
        rmq_consumer_t *k = pool->consumers;
        pool->consumers = k->next;
        rmq_target_dispose(&k->spec.target);
        free(k->orphans);
        free(k);
    }
    while (pool->new_consumers != NULL) {
        rmq_consumer_t *k = pool->new_consumers;
        pool->new_consumers = k->next;
        rmq_target_dispose(&k->spec.target);
        free(k->orphans);
        free(k);
    }
    while (pool->dwork_inbox != NULL) {
        struct rmq_dwork *w = pool->dwork_inbox;
        pool->dwork_inbox = w->next;
        delivery_unref(w->d);
        free(w);
    }
}

/* ---- the public side ------------------------------------------------------------------------ */

void rmq_pool_consume(rmq_pool_t *pool, rmq_consumer_spec_t *spec)
{
    rmq_consumer_t *k = calloc(1, sizeof(*k));
    if (k == NULL || (k->orphans = calloc((size_t)(spec->links > 0 ? spec->links : 1), sizeof(int))) == NULL)
        abort();
    k->spec = *spec;
    memset(&spec->target, 0, sizeof(spec->target)); /* now the pool's */
    pthread_mutex_lock(&pool->lock);
    k->next = pool->new_consumers;
    pool->new_consumers = k;
    pthread_mutex_unlock(&pool->lock);
    pn_proactor_interrupt(pool->proactor);
}

void rmq_pool_stop_consuming(rmq_pool_t *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stop_consuming = 1;
    pthread_mutex_unlock(&pool->lock);
    pn_proactor_interrupt(pool->proactor);
}
