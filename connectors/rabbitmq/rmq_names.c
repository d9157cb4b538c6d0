/* Names a request may choose as a publish target (docs/rabbitmq.md, "Names
 * from requests").  A queue or exchange name that comes from an expression
 * is the caller's choice: it must not reach another application's queues
 * through a raw address, nor stand for something the broker can never
 * accept (it would end the AMQP session of everything else on it). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "rmq.h"

/* RabbitMQ's limit for queue and exchange names and routing keys (AMQP
 * 0-9-1's short string, kept by 4.x). */
#define NAME_MAX_BYTES 255
/* A name quoted in an error: the request's bytes, bounded and printable
 * (the error is logged and may be answered to the caller). */
#define QUOTE_MAX 64

int rmq_name_policy_init(rmq_name_policy_t *np, int allow_address, const char *pattern, char *err, size_t n)
{
    memset(np, 0, sizeof(*np));
    np->allow_address = allow_address;
    if (pattern == NULL)
        return 0;
    /* ERE without REG_NOSUB: the whole-name test needs the match's span. */
    int rc = regcomp(&np->pattern, pattern, REG_EXTENDED);
    if (rc != 0) {
        char why[160];
        regerror(rc, &np->pattern, why, sizeof(why));
        snprintf(err, n, "dynamicTargetPattern: %s", why);
        return -1;
    }
    np->has_pattern = 1;
    return 0;
}

void rmq_name_policy_dispose(rmq_name_policy_t *np)
{
    if (np->has_pattern)
        regfree(&np->pattern);
    np->has_pattern = 0;
}

static void quote(char *out, size_t n, const char *name)
{
    size_t len = strlen(name), w = 0;
    for (size_t i = 0; i < len && i < QUOTE_MAX && w + 1 < n; i++)
        out[w++] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
    if (len > QUOTE_MAX && w + 4 < n) {
        memcpy(out + w, "...", 3);
        w += 3;
    }
    out[w] = '\0';
}

/* POSIX matching is leftmost-longest: a match that spans the whole name
 * exists exactly when the leftmost-longest one starts at 0 and ends at
 * the end.  Wrapping the pattern in ^(...)$ instead would change what an
 * unbalanced alternation means. */
static int matches_wholly(const regex_t *re, const char *name)
{
    regmatch_t m;
    return regexec(re, name, 1, &m, 0) == 0 && m.rm_so == 0 && (size_t)m.rm_eo == strlen(name);
}

static int check_length(const char *what, const char *value, char *err, size_t n)
{
    size_t len = strlen(value);
    if (len == 0) {
        snprintf(err, n, "the %s is empty", what);
        return -1;
    }
    if (len > NAME_MAX_BYTES) {
        snprintf(err, n, "the %s is %zu bytes long: RabbitMQ takes at most %d", what, len, NAME_MAX_BYTES);
        return -1;
    }
    return 0;
}

/* what: "queue" or "exchange"; only a queue may be written as an address. */
static int check_dynamic(const rmq_target_spec_t *s, const char *what, const char *name, int may_be_address,
                         char *err, size_t n)
{
    char q[QUOTE_MAX + 8];
    if (may_be_address && name[0] == '/' && (s->policy == NULL || !s->policy->allow_address)) {
        quote(q, sizeof(q), name);
        snprintf(err, n, "the queue '%s' comes from the message and starts with '/': an address is taken from a "
                         "dynamic value only with allowDynamicAddress true", q);
        return -1;
    }
    if (s->policy != NULL && s->policy->has_pattern && !matches_wholly(&s->policy->pattern, name)) {
        quote(q, sizeof(q), name);
        snprintf(err, n, "the %s '%s' comes from the message and does not match dynamicTargetPattern", what, q);
        return -1;
    }
    return 0;
}

int rmq_target_check_names(const rmq_target_spec_t *s, char *err, size_t n)
{
    const char *queue = s->queue.name, *exchange = s->exchange.name, *key = s->exchange.routing_key;
    if (queue != NULL) {
        if (check_length("queue name", queue, err, n) != 0)
            return -1;
        if ((s->dynamic & RMQ_DYN_QUEUE) && check_dynamic(s, "queue", queue, 1, err, n) != 0)
            return -1;
        if (queue[0] != '/' && s->queue.auto_declare && strncmp(queue, "amq.", 4) == 0) {
            char q[QUOTE_MAX + 8];
            quote(q, sizeof(q), queue);
            snprintf(err, n, "the queue '%s' cannot be declared: names starting with 'amq.' are the broker's "
                             "(with queueAutoDeclare false cmi publishes to one that exists)", q);
            return -1;
        }
    }
    if (exchange != NULL) {
        if (check_length("exchange name", exchange, err, n) != 0)
            return -1;
        if ((s->dynamic & RMQ_DYN_EXCHANGE) && check_dynamic(s, "exchange", exchange, 0, err, n) != 0)
            return -1;
    }
    if (key != NULL && strlen(key) > NAME_MAX_BYTES) {
        snprintf(err, n, "the routing key is %zu bytes long: RabbitMQ takes at most %d", strlen(key),
                 NAME_MAX_BYTES);
        return -1;
    }
    return 0;
}
