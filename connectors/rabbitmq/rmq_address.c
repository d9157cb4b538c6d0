/* Where a publish goes and what must exist first (docs/rabbitmq.md, "publishMessage"), worked out on
 * the worker from the operation's parameters: the 3.x plugin address
 * (v1), the 4.x address (v2), and the declarations in the order the
 * broker needs them (exchange, queue, binding), described for both the
 * HTTP management API and the AMQP management node. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq.h"

char *rmq_percent_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = rmq_xmalloc(n * 3 + 1), *w = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *w++ = (char)*p;
        } else {
            *w++ = '%';
            *w++ = hex[*p >> 4];
            *w++ = hex[*p & 15];
        }
    }
    *w = '\0';
    return out;
}

int rmq_format_for_version(const char *product, const char *version)
{
    (void)product;
    /* RabbitMQ 4.0 brought native AMQP 1.0 with v2 addresses; the 3.x
     * plugin understands only v1.  No version: assume the plugin. */
    if (version == NULL)
        return RMQ_FORMAT_V1;
    return atoi(version) >= 4 ? RMQ_FORMAT_V2 : RMQ_FORMAT_V1;
}

/* ---- queue and exchange arguments ----------------------------------------- */

static json_t *typed_value(const char *v)
{
    if (strcmp(v, "true") == 0)
        return json_true();
    if (strcmp(v, "false") == 0)
        return json_false();
    char *end;
    errno = 0;
    long long i = strtoll(v, &end, 10);
    if (*v != '\0' && *end == '\0' && errno == 0)
        return json_integer(i);
    double d = strtod(v, &end);
    if (*v != '\0' && *end == '\0' && errno == 0)
        return json_real(d);
    return json_string(v);
}

json_t *rmq_parse_arguments(const char *s, char *err, size_t n)
{
    json_t *obj = json_object();
    if (s == NULL)
        return obj;
    char *copy = rmq_xstrdup(s), *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*item))
            item++;
        if (*item == '\0')
            continue;
        char *eq = strchr(item, '=');
        if (eq == NULL || eq == item) {
            snprintf(err, n, "'%s' is not key=value", item);
            json_decref(obj);
            free(copy);
            return NULL;
        }
        *eq = '\0';
        char *k = item, *v = eq + 1, *ke = eq;
        while (ke > k && isspace((unsigned char)ke[-1]))
            *--ke = '\0';
        while (isspace((unsigned char)*v))
            v++;
        size_t vl = strlen(v);
        while (vl > 0 && isspace((unsigned char)v[vl - 1]))
            v[--vl] = '\0';
        json_object_set_new(obj, k, typed_value(v));
    }
    free(copy);
    return obj;
}

/* ---- declarations -------------------------------------------------------------- */

static const char *const queue_types[] = {"classic", "quorum", "stream"};
static const char *const overflow_names[] = {"drop-head", "reject-publish", "reject-publish-dlx"};
static const char *const exchange_types[] = {"direct", "fanout", "topic", "headers"};
static const char *const dls_names[] = {"at-most-once", "at-least-once"};

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY); /* a GET's body is null */
    if (s == NULL)
        abort();
    return s;
}

static void add_declare(rmq_target_t *t, const char *method, char *http_path, json_t *http_body, char *v2_path,
                        json_t *v2_body, int on_v1)
{
    rmq_declare_t *d = rmq_xrealloc(t->declare, (t->ndeclare + 1) * sizeof(*d));
    t->declare = d;
    d[t->ndeclare++] = (rmq_declare_t){method, http_path, dump(http_body), v2_path, dump(v2_body), on_v1, 0, NULL};
    json_decref(http_body);
    json_decref(v2_body);
}

/* The x- arguments of a queue from the dedicated parameters, then the
 * free-form queueArguments (which win on a clash). */
static json_t *queue_arguments(const rmq_target_spec_t *s, char *err, size_t n)
{
    json_t *a = json_object();
    if (s->queue.type != RMQ_QUEUE_CLASSIC)
        json_object_set_new(a, "x-queue-type", json_string(queue_types[s->queue.type]));
    if (RMQ_IS_SET(s->queue_set, RMQ_Q_MAX_PRIORITY))
        json_object_set_new(a, "x-max-priority", json_integer(s->queue.max_priority));
    /* A stream's members are its cluster size (RabbitMQ's AMQP 1.0 client
     * names both initialMemberCount). */
    if (RMQ_IS_SET(s->queue_set, RMQ_Q_INITIAL_MEMBER_COUNT)) {
        const char *members =
            s->queue.type == RMQ_QUEUE_STREAM ? "x-initial-cluster-size" : "x-quorum-initial-group-size";
        json_object_set_new(a, members, json_integer(s->queue.initial_member_count));
    }
    if (RMQ_IS_SET(s->queue_set, RMQ_Q_DELIVERY_LIMIT))
        json_object_set_new(a, "x-delivery-limit", json_integer(s->queue.delivery_limit));
    if (RMQ_IS_SET(s->queue_set, RMQ_Q_DEAD_LETTER_STRATEGY))
        json_object_set_new(a, "x-dead-letter-strategy", json_string(dls_names[s->queue.dead_letter_strategy]));
    if (RMQ_IS_SET(s->queue_set, RMQ_Q_MAX_AGE))
        json_object_set_new(a, "x-max-age", json_string(s->queue.max_age));
    if (RMQ_IS_SET(s->queue_set, RMQ_Q_MAX_SEGMENT_SIZE))
        json_object_set_new(a, "x-stream-max-segment-size-bytes", json_integer(s->queue.max_segment_size));
    if (RMQ_IS_SET(s->queue_set, RMQ_Q_OVERFLOW))
        json_object_set_new(a, "x-overflow", json_string(overflow_names[s->queue.overflow]));
    if (RMQ_IS_SET(s->queue_set, RMQ_Q_CLASSIC_VERSION))
        json_object_set_new(a, "x-queue-version", json_integer(s->queue.classic_version == RMQ_CLASSIC_V1 ? 1 : 2));
    char why[256];
    json_t *extra = rmq_parse_arguments(s->queue.arguments, why, sizeof(why));
    if (extra == NULL) {
        snprintf(err, n, "queueArguments: %s", why);
        json_decref(a);
        return NULL;
    }
    json_object_update(a, extra);
    json_decref(extra);
    return a;
}

static int declare_exchange(rmq_target_t *t, const rmq_target_spec_t *s, const char *vhost_enc, char *err,
                            size_t n)
{
    char why[256];
    json_t *args = rmq_parse_arguments(s->exchange.arguments, why, sizeof(why));
    if (args == NULL) {
        snprintf(err, n, "exchangeArguments: %s", why);
        return -1;
    }
    json_t *body = json_pack("{s:s, s:b, s:b, s:b, s:O}", "type", exchange_types[s->exchange.type], "durable", 1,
                             "auto_delete", s->exchange.auto_delete, "internal", 0, "arguments", args);
    char *x = rmq_percent_encode(s->exchange.name);
    add_declare(t, "PUT", rmq_xasprintf("/api/exchanges/%s/%s", vhost_enc, x), json_deep_copy(body),
                rmq_xasprintf("/exchanges/%s", x), body, 1);
    free(x);
    json_decref(args);
    return 0;
}

static int declare_queue(rmq_target_t *t, const rmq_target_spec_t *s, const char *vhost_enc, int on_v1, char *err,
                         size_t n)
{
    json_t *args = queue_arguments(s, err, n);
    if (args == NULL)
        return -1;
    json_t *body = json_pack("{s:b, s:b, s:b, s:O}", "durable", 1, "exclusive", s->queue.exclusive, "auto_delete",
                             s->queue.auto_delete, "arguments", args);
    char *q = rmq_percent_encode(s->queue.name);
    add_declare(t, "PUT", rmq_xasprintf("/api/queues/%s/%s", vhost_enc, q), json_deep_copy(body),
                rmq_xasprintf("/queues/%s", q), body, on_v1);
    free(q);
    json_decref(args);
    /* 3.10's HTTP API makes a transient, non-exclusive queue of an exclusive
     * one (measured), and its AMQP 1.0 plugin cannot declare one: refused
     * there rather than silently something else. 4.x's /management
     * declares it for cmi's own connection. */
    if (s->queue.exclusive)
        t->declare[t->ndeclare - 1].v1_refusal = "an exclusive queue needs RabbitMQ 4.x: 3.x cannot declare one for an "
                                                 "AMQP 1.0 client (its HTTP API makes a transient, non-exclusive "
                                                 "queue instead)";
    return 0;
}

/* A queue the publish must not declare: on 4.x its existence is asked of
 * /management first (GET), because an attach to a missing queue makes
 * RabbitMQ 4.x end the session, and every publish on it with the session.
 * 3.x refuses the link alone: nothing to ask there.  (4.0.5's /management
 * has no GET for an exchange: it ends the session with a function_clause.) */
static void check_queue(rmq_target_t *t, const char *name, const char *vhost_enc)
{
    char *q = rmq_percent_encode(name);
    add_declare(t, "GET", rmq_xasprintf("/api/queues/%s/%s", vhost_enc, q), json_null(),
                rmq_xasprintf("/queues/%s", q), json_null(), 0);
    free(q);
}

/* Asked on both APIs, then declared only when missing: a queue that exists
 * stays as it is, whatever arguments it was declared with. */
static int declare_queue_if_missing(rmq_target_t *t, const rmq_target_spec_t *s, const char *vhost_enc, char *err,
                                    size_t n)
{
    check_queue(t, s->queue.name, vhost_enc);
    t->declare[t->ndeclare - 1].on_v1 = 1;
    t->declare[t->ndeclare - 1].if_missing = 1;
    return declare_queue(t, s, vhost_enc, 1, err, n);
}

static int declare_binding(rmq_target_t *t, const rmq_target_spec_t *s, const char *vhost_enc, char *err,
                           size_t n)
{
    char why[256];
    json_t *args = rmq_parse_arguments(s->exchange.header_arguments, why, sizeof(why));
    if (args == NULL) {
        snprintf(err, n, "headerExchangeArguments: %s", why);
        return -1;
    }
    const char *key = s->exchange.routing_key ? s->exchange.routing_key : "";
    json_t *http = json_pack("{s:s, s:O}", "routing_key", key, "arguments", args);
    json_t *v2 = json_pack("{s:s, s:s, s:s, s:O}", "source", s->exchange.name, "destination_queue", s->queue.name,
                           "binding_key", key, "arguments", args);
    char *x = rmq_percent_encode(s->exchange.name), *q = rmq_percent_encode(s->queue.name);
    add_declare(t, "POST", rmq_xasprintf("/api/bindings/%s/e/%s/q/%s", vhost_enc, x, q), http,
                rmq_xstrdup("/bindings"), v2,
                1);
    free(x);
    free(q);
    json_decref(args);
    return 0;
}

/* The queue options sent as x- arguments. */
static int queue_has_arguments(const rmq_target_spec_t *s)
{
    static const unsigned args = 1u << RMQ_Q_MAX_PRIORITY | 1u << RMQ_Q_INITIAL_MEMBER_COUNT |
                                 1u << RMQ_Q_DELIVERY_LIMIT | 1u << RMQ_Q_DEAD_LETTER_STRATEGY | 1u << RMQ_Q_MAX_AGE |
                                 1u << RMQ_Q_MAX_SEGMENT_SIZE | 1u << RMQ_Q_OVERFLOW | 1u << RMQ_Q_ARGUMENTS |
                                 1u << RMQ_Q_CLASSIC_VERSION;
    return (s->queue_set & args) != 0;
}

/* A plain classic queue without arguments is declared by the 3.x plugin
 * itself when a sender attaches to /queue/NAME; anything else needs the
 * management API there. */
static int queue_needs_management(const rmq_target_spec_t *s)
{
    return s->queue.type != RMQ_QUEUE_CLASSIC || s->queue.exclusive || s->queue.auto_delete ||
           s->exchange.name != NULL || queue_has_arguments(s);
}

/* A queue given nothing but its name (no type, no argument, no flag) is
 * declared as MI's docs default it, a quorum queue, only when it is missing:
 * one that exists is used whatever its type, so that a queue MI's code made
 * (its default: classic) keeps serving an artifact that never named a type
 * (docs/rabbitmq.md, "Defaults"). */
static int declared_by_default(const rmq_target_spec_t *s)
{
    static const unsigned given = 1u << RMQ_Q_TYPE | 1u << RMQ_Q_EXCLUSIVE | 1u << RMQ_Q_AUTO_DELETE;
    return s->queue.auto_declare == RMQ_DECLARE_YES && s->queue.type == RMQ_QUEUE_QUORUM &&
           (s->queue_set & given) == 0 && !queue_has_arguments(s);
}

static void build_key(rmq_target_t *t)
{
    if (t->ndeclare == 0)
        return;
    size_t len = 1;
    for (size_t i = 0; i < t->ndeclare; i++)
        len += strlen(t->declare[i].method) + strlen(t->declare[i].http_path) + strlen(t->declare[i].http_body) +
               strlen(t->declare[i].v2_body) + 8;
    char *k = rmq_xmalloc(len), *w = k;
    for (size_t i = 0; i < t->ndeclare; i++)
        w += sprintf(w, "%s%s %s %s %s\n", t->declare[i].method, t->declare[i].on_v1 ? "" : "-v2",
                     t->declare[i].http_path, t->declare[i].http_body, t->declare[i].v2_body);
    t->key = k;
}

static int is_amq(const char *exchange)
{
    return strncmp(exchange, "amq.", 4) == 0;
}

/* A classic queue's argument on a queue of another type: RabbitMQ would
 * refuse the declaration at the first publish; said at load instead, since
 * the type defaults to QUORUM and an artifact written for MI's code (which
 * defaults to CLASSIC) may give a priority without a type. */
static int check_type_arguments(const rmq_target_spec_t *s, char *err, size_t n)
{
    if (!s->queue.auto_declare || s->queue.type == RMQ_QUEUE_CLASSIC || !RMQ_IS_SET(s->queue_set, RMQ_Q_MAX_PRIORITY))
        return 0;
    snprintf(err, n, "a priority (x-max-priority) is for classic queues, and queue '%s' is a %s queue%s: give its type "
             "as CLASSIC", s->queue.name, queue_types[s->queue.type],
             RMQ_IS_SET(s->queue_set, RMQ_Q_TYPE) ? "" : " (the default type when none is given)");
    return -1;
}

int rmq_target_build(rmq_target_t *t, const rmq_target_spec_t *s, const char *vhost, char *err, size_t n)
{
    memset(t, 0, sizeof(*t));
    if (rmq_target_check_names(s, err, n) != 0 || check_type_arguments(s, err, n) != 0)
        return -1;
    const char *queue = s->queue.name, *exchange = s->exchange.name;
    if (queue != NULL && queue[0] == '/') {
        /* An address as it is: a reply-to a responder was given, say. */
        t->addr_v1 = rmq_xstrdup(queue);
        t->addr_v2 = rmq_xstrdup(queue);
        t->describe = rmq_xasprintf("address '%s'", queue);
        return 0;
    }
    if (queue == NULL && exchange == NULL) {
        snprintf(err, n, "give a queue or an exchange to publish to");
        return -1;
    }
    char *vh = rmq_percent_encode(vhost ? vhost : "/");
    int rc = 0;
    if (exchange != NULL && s->exchange.auto_declare && !is_amq(exchange))
        rc = declare_exchange(t, s, vh, err, n);
    if (rc == 0 && queue != NULL) {
        if (s->queue.auto_declare == RMQ_DECLARE_IF_MISSING || declared_by_default(s))
            rc = declare_queue_if_missing(t, s, vh, err, n);
        else if (s->queue.auto_declare)
            rc = declare_queue(t, s, vh, queue_needs_management(s), err, n);
        else
            check_queue(t, queue, vh);
        if (rc == 0 && exchange != NULL && s->queue.auto_declare)
            rc = declare_binding(t, s, vh, err, n);
        char *q = rmq_percent_encode(queue);
        t->addr_v2 = rmq_xasprintf("/queues/%s", q);
        free(q);
        int plain = s->queue.auto_declare == RMQ_DECLARE_YES && !queue_needs_management(s);
        t->addr_v1 = rmq_xasprintf(plain ? "/queue/%s" : "/amq/queue/%s", queue);
        t->describe = rmq_xasprintf("queue '%s'", queue);
    } else if (rc == 0) {
        const char *key = s->exchange.routing_key ? s->exchange.routing_key : "";
        char *x = rmq_percent_encode(exchange), *k = rmq_percent_encode(key);
        t->addr_v2 = *key ? rmq_xasprintf("/exchanges/%s/%s", x, k) : rmq_xasprintf("/exchanges/%s", x);
        t->addr_v1 = rmq_xasprintf("/exchange/%s/%s", exchange, key);
        t->describe = rmq_xasprintf("exchange '%s' (routing key '%s')", exchange, key);
        free(x);
        free(k);
    }
    free(vh);
    if (rc != 0) {
        rmq_target_dispose(t);
        return -1;
    }
    build_key(t);
    return 0;
}

void rmq_target_dispose(rmq_target_t *t)
{
    rmq_declare_free(t->declare, t->ndeclare);
    free(t->addr_v1);
    free(t->addr_v2);
    free(t->key);
    free(t->describe);
    memset(t, 0, sizeof(*t));
}

void rmq_target_prepend(rmq_target_t *t, rmq_target_t *first)
{
    rmq_declare_t *all = rmq_xcalloc(first->ndeclare + t->ndeclare + 1, sizeof(*all));
    memcpy(all, first->declare, first->ndeclare * sizeof(*all));
    memcpy(all + first->ndeclare, t->declare, t->ndeclare * sizeof(*all));
    free(t->declare);
    t->declare = all;
    t->ndeclare += first->ndeclare;
    free(first->declare);
    first->declare = NULL;
    first->ndeclare = 0;
    rmq_target_dispose(first);
    free(t->key);
    t->key = NULL;
    build_key(t);
}

void rmq_target_ask_on_v1(rmq_target_t *t)
{
    for (size_t i = 0; i < t->ndeclare; i++)
        if (strcmp(t->declare[i].method, "GET") == 0)
            t->declare[i].on_v1 = 1;
    free(t->key);
    t->key = NULL;
    build_key(t);
}

const char *rmq_target_address(const rmq_target_t *t, int format)
{
    return format == RMQ_FORMAT_V2 ? t->addr_v2 : t->addr_v1;
}

void rmq_declare_copy(rmq_declare_t *dst, const rmq_declare_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (rmq_declare_t){src[i].method,        rmq_xstrdup(src[i].http_path), rmq_xstrdup(src[i].http_body),
                                 rmq_xstrdup(src[i].v2_path), rmq_xstrdup(src[i].v2_body),  src[i].on_v1,
                                 src[i].if_missing, src[i].v1_refusal};
}

void rmq_declare_free(rmq_declare_t *d, size_t n)
{
    for (size_t i = 0; d != NULL && i < n; i++) {
        free(d[i].http_path);
        free(d[i].http_body);
        free(d[i].v2_path);
        free(d[i].v2_body);
    }
    free(d);
}

void rmq_target_copy(rmq_target_t *dst, const rmq_target_t *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->addr_v1 = rmq_xstrdup(src->addr_v1);
    dst->addr_v2 = rmq_xstrdup(src->addr_v2);
    dst->key = rmq_dup_or_null(src->key);
    dst->describe = rmq_xstrdup(src->describe);
    dst->ndeclare = src->ndeclare;
    dst->declare = rmq_xcalloc(src->ndeclare, sizeof(rmq_declare_t));
    rmq_declare_copy(dst->declare, src->declare, src->ndeclare);
}
