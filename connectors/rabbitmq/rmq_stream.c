/* Stream queues (docs/rabbitmq.md, "Streams"), on the pool's thread.
 *
 * A stream keeps its messages: a consumer says where to start in its
 * receiver's source filter (RabbitMQ's rabbitmq:stream-offset-spec: "first",
 * "last", "next" or an offset) and may ask for filter values
 * (rabbitmq:stream-filter, 4.x; the broker's Bloom filter may let others
 * through, so they are checked again here, as MI does).  AMQP 1.0 has no
 * server-side offset tracking: cmi keeps the consumer's position itself.
 * "Done" is the highest offset settled; the position saved is the last
 * offset below which everything is settled (an unsettled message, in
 * mediation or waiting for a slot, holds it back), so a restart reads again
 * what was not finished, never skips it.  Saved every flush interval and at
 * shutdown; a receiver attached again (a lost connection) resumes there too.
 * Measured on RabbitMQ 3.10.8: its AMQP 1.0 plugin attaches to a stream and
 * delivers nothing, so stream consumers need 4.x. */
#include "config.h"

#include <proton/codec.h>
#include <proton/terminus.h>
#include <stdio.h>
#include <string.h>

#include "rmq_consume_int.h"

#define DECISION_LOG_MS 10000

void rmq_stream_init(rmq_consume_t *cs, rmq_consumer_t *k)
{
    const rmq_stream_spec_t *s = &k->spec.stream;
    k->stream_done = k->stream_safe = k->stream_saved = k->stream_resume = -1;
    if (!s->enabled)
        return;
    k->stream_resume = s->start;
    char err[512];
    int64_t stored = -1;
    int rc = s->store != NULL && s->start < 0 ? rmq_offset_store_load(s->store, &stored, err, sizeof(err)) : 0;
    if (rc < 0)
        LOG(cs, CMI_LOG_ERROR, "%s: %s: starting at %s instead", k->spec.target.describe, err, s->strategy);
    if (rc > 0) {
        k->stream_resume = stored + 1;
        k->stream_saved = k->stream_safe = k->stream_done = stored;
    }
    if (s->start >= 0)
        LOG(cs, CMI_LOG_INFO, "%s: starting at offset %lld (rabbitmq.stream.offset.starting.value)",
            k->spec.target.describe, (long long)s->start);
    else if (rc > 0)
        LOG(cs, CMI_LOG_INFO, "%s: resuming after offset %lld, the last one finished (%s)", k->spec.target.describe,
            (long long)stored, rmq_offset_store_path(s->store));
    else
        LOG(cs, CMI_LOG_INFO, "%s: no offset stored%s%s: starting at %s", k->spec.target.describe,
            s->store ? " in " : "", s->store ? rmq_offset_store_path(s->store) : "", s->strategy);
    k->stream_flush_at = rmq_now() + (int64_t)s->flush_ms;
}

static void put_described(pn_data_t *f, const char *name)
{
    pn_data_put_symbol(f, pn_bytes(strlen(name), name));
    pn_data_put_described(f);
    pn_data_enter(f);
    pn_data_put_symbol(f, pn_bytes(strlen(name), name));
}

int rmq_stream_usable(const rmq_consumer_t *k, const rmq_conn_t *c, char *why, size_t n)
{
    const rmq_stream_spec_t *s = &k->spec.stream;
    if (!s->enabled || c->format == RMQ_FORMAT_V2)
        return 0;
    snprintf(why, n, "a stream is consumed over AMQP 1.0 from RabbitMQ 4.x on: %s delivers nothing from a stream "
             "to an AMQP 1.0 receiver%s", c->broker, s->filters.count ? " (and stream filters need 3.13 or later)" : "");
    return -1;
}

void rmq_stream_source(const rmq_consumer_t *k, pn_link_t *pn)
{
    const rmq_stream_spec_t *s = &k->spec.stream;
    if (!s->enabled)
        return;
    pn_data_t *f = pn_terminus_filter(pn_link_source(pn));
    pn_data_clear(f);
    pn_data_put_map(f);
    pn_data_enter(f);
    /* A string, not a symbol (measured on 4.0.5: a symbol is ignored); an
     * offset as a ulong. */
    put_described(f, "rabbitmq:stream-offset-spec");
    if (k->stream_resume >= 0)
        pn_data_put_ulong(f, (uint64_t)k->stream_resume);
    else
        pn_data_put_string(f, pn_bytes(strlen(s->strategy), s->strategy));
    pn_data_exit(f);
    if (s->filters.count > 0) {
        /* A list of strings (measured: an array is ignored). */
        put_described(f, "rabbitmq:stream-filter");
        pn_data_put_list(f);
        pn_data_enter(f);
        for (size_t i = 0; i < s->filters.count; i++)
            pn_data_put_string(f, pn_bytes(strlen(s->filters.items[i]), s->filters.items[i]));
        pn_data_exit(f);
        pn_data_exit(f);
        put_described(f, "rabbitmq:stream-match-unfiltered");
        pn_data_put_bool(f, s->match_unfiltered);
        pn_data_exit(f);
    }
    pn_data_exit(f);
}

int rmq_stream_skip(const rmq_consumer_t *k, const rmq_incoming_t *m)
{
    const rmq_stream_spec_t *s = &k->spec.stream;
    if (!s->enabled || s->filters.count == 0)
        return 0;
    if (m->stream_filter_value == NULL)
        return !s->match_unfiltered;
    for (size_t i = 0; i < s->filters.count; i++)
        if (strcmp(s->filters.items[i], m->stream_filter_value) == 0)
            return 0;
    return 1;
}

int rmq_stream_settling(rmq_consume_t *cs, rmq_delivery_t *d, int decision)
{
    rmq_consumer_t *k = d->rlink != NULL ? d->rlink->consumer : NULL;
    if (k == NULL || decision == RMQ_DECIDE_RELEASE) /* given back unfinished: read again after a restart */
        return decision;
    if (d->stream_offset > k->stream_done)
        k->stream_done = d->stream_offset;
    if (decision == RMQ_DECIDE_ACCEPT)
        return decision;
    int64_t now = rmq_now();
    if (now - k->stream_decision_log >= DECISION_LOG_MS) {
        k->stream_decision_log = now;
        LOG(cs, CMI_LOG_WARN, "%s is a stream, which keeps its messages: a %s is an accept (offset %lld; to read it "
            "again, set rabbitmq.stream.offset.starting.value; logged at most every 10 s)",
            k->spec.target.describe, decision == RMQ_DECIDE_DISCARD ? "discard" : "requeue",
            (long long)d->stream_offset);
    }
    return RMQ_DECIDE_ACCEPT;
}

/* The lowest offset of k's deliveries not settled yet, -1: none. */
static int64_t lowest_unsettled(const rmq_consume_t *cs, const rmq_consumer_t *k)
{
    int64_t low = -1;
    for (size_t i = 0; i < cs->pool->nconns; i++) {
        const rmq_delivery_t *d;
        TAILQ_FOREACH(d, &cs->conns[i].live, live_entry)
            if (!d->settled && d->stream_offset >= 0 && d->rlink != NULL && d->rlink->consumer == k &&
                (low < 0 || d->stream_offset < low))
                low = d->stream_offset;
    }
    return low;
}

void rmq_stream_checkpoint(rmq_consume_t *cs, rmq_consumer_t *k)
{
    if (!k->spec.stream.enabled || k->stream_done < 0)
        return;
    int64_t low = lowest_unsettled(cs, k);
    int64_t safe = low >= 0 && low - 1 < k->stream_done ? low - 1 : k->stream_done;
    if (safe > k->stream_safe) /* what was finished stays finished */
        k->stream_safe = safe;
    if (k->stream_safe + 1 > k->stream_resume)
        k->stream_resume = k->stream_safe + 1;
}

void rmq_stream_save(rmq_consume_t *cs, rmq_consumer_t *k)
{
    const rmq_stream_spec_t *s = &k->spec.stream;
    int64_t safe = k->stream_safe;
    if (!s->enabled || s->store == NULL || safe < 0 || safe <= k->stream_saved)
        return;
    char err[512];
    if (rmq_offset_store_save(s->store, safe, err, sizeof(err)) != 0) {
        LOG(cs, CMI_LOG_WARN, "%s: the offset %lld cannot be saved: %s (tried again at the next flush)",
            k->spec.target.describe, (long long)safe, err);
        return;
    }
    k->stream_saved = safe;
    LOG(cs, CMI_LOG_DEBUG, "%s: offset %lld saved", k->spec.target.describe, (long long)safe);
}

int64_t rmq_stream_next_deadline(const rmq_consume_t *cs)
{
    int64_t next = 0;
    const rmq_consumer_t *k;
    SLIST_FOREACH(k, &cs->consumers, entry)
        if (k->spec.stream.enabled && k->spec.stream.store != NULL && (next == 0 || k->stream_flush_at < next))
            next = k->stream_flush_at;
    return next;
}

void rmq_stream_on_timeout(rmq_consume_t *cs, int64_t now)
{
    rmq_consumer_t *k;
    SLIST_FOREACH(k, &cs->consumers, entry) {
        if (!k->spec.stream.enabled || k->stream_flush_at > now)
            continue;
        rmq_stream_checkpoint(cs, k);
        rmq_stream_save(cs, k);
        k->stream_flush_at = now + (int64_t)k->spec.stream.flush_ms;
    }
}
