/* Saying why a connection to the broker failed, in words an operator can
 * act on: the broker's or OpenSSL's reason, a hint for the causes that
 * have a known remedy, and for a broker certificate that is not accepted,
 * why (proton says only "certificate verify failed": a handshake of
 * libcurl's own with the same settings, run on the management thread so
 * that the pool's thread never waits, finds out: expired, unknown issuer,
 * another name).  rmq_conn.c says when (once per cause). */
#include "config.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_core.h"

static uint64_t cause_hash(const char *why)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)why; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h | 1; /* never 0: "none" */
}

int rmq_server_new_cause(rmq_server_t *s, const char *why)
{
    uint64_t h = cause_hash(why);
    for (unsigned i = 0; i < RMQ_CAUSES; i++)
        if (s->causes[i] == h)
            return 0;
    s->causes[s->next_cause++ % RMQ_CAUSES] = h;
    return 1;
}

void rmq_server_up(rmq_server_t *s)
{
    memset(s->causes, 0, sizeof(s->causes));
    s->next_cause = 0;
}

rmq_server_t *rmq_conn_server_of(const rmq_conn_t *c)
{
    return &c->pool->servers[c->url % c->pool->nservers];
}

/* What to do about a failure whose reason has a known remedy ("" when
 * none). */
static const char *hint_of(const rmq_pool_t *pool, const char *why)
{
    static const struct {
        const char *says;
        int tls; /* 1: with sslEnabled only; 0: without; -1: either */
        const char *hint;
    } hints[] = {
        {"wrong version number", 1, "this port does not speak TLS: give the broker's amqps port (5671 by default)"},
        {"Expected SASL protocol header got: Unknown protocol ['\\x15\\x03", 0,
         "this port speaks TLS: set sslEnabled to true"},
        {"alert unknown ca", 1, "the broker does not trust the issuer of cmi's client certificate (keyStoreLocation)"},
        {"alert certificate expired", 1, "the broker says cmi's client certificate has expired"},
        {"alert certificate required", 1, "the broker asks for a client certificate: give keyStoreLocation"},
        {"alert protocol version", 1, "no TLS version in common with the broker (sslVersion)"},
        {"unsupported protocol", 1, "no TLS version in common with the broker (sslVersion)"},
        {"alert handshake failure", 1, "the broker refused the handshake: cmi's client certificate (expired or not "
                                       "acceptable) or no TLS version and cipher in common (sslVersion)"},
        {"alert bad certificate", 1, "the broker does not accept cmi's client certificate"},
        {"Authentication failed [mech=EXTERNAL]", 1, "the broker found no user for cmi's client certificate (it "
                                                     "maps the certificate's common name or subject to a user: "
                                                     "ssl_cert_login_from)"},
        {"Authentication failed", -1, "check the user and password (username/password, or the token)"},
    };
    for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
        if ((hints[i].tls < 0 || hints[i].tls == (pool->tls != NULL)) && strstr(why, hints[i].says) != NULL)
            return hints[i].hint;
    return "";
}

typedef struct {
    const cmi_host_t *host;
    char component[RMQ_COMPONENT_MAX];
    rmq_tls_files_t files;
    char name[300], port[16], line[400], why[560];
} diagnosis_t;

static int is_ip_literal(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

static void diagnose(void *arg, int stopping)
{
    diagnosis_t *d = arg;
    if (stopping) {
        free(d);
        return;
    }
    char found[CURL_ERROR_SIZE + 400] = "";
    rmq_tls_diagnose(&d->files, d->name, d->port, 5000, found, sizeof(found));
    if (found[0] == '\0' && is_ip_literal(d->name))
        snprintf(found, sizeof(found), "the certificate does not name %s as a DNS name or common name, the only "
                 "names proton checks (an IP address entry does not count): give the broker's host name in "
                 "serverUrls", d->name);
    if (found[0] != '\0')
        d->host->log(CMI_LOG_WARN, d->component, "%s: TLS: %s (the broker's certificate is not accepted)", d->line,
                     found);
    else
        d->host->log(CMI_LOG_WARN, d->component, "%s: %s", d->line, d->why);
    free(d);
}

void rmq_conn_report(rmq_conn_t *c, const char *what, const char *why)
{
    rmq_pool_t *pool = c->pool;
    const rmq_server_t *s = rmq_conn_server_of(c);
    char line[400];
    snprintf(line, sizeof(line), "connection %d to %s %s", c->index, s->hostport, what);
    if (pool->tls == NULL || strstr(why, "certificate verify failed") == NULL) {
        const char *hint = hint_of(pool, why);
        RMQ_LOG(pool, CMI_LOG_WARN, "%s: %s%s%s%s", line, why, *hint ? " (" : "", hint, *hint ? ")" : "");
        return;
    }
    diagnosis_t *d = rmq_xcalloc(1, sizeof(*d));
    d->host = pool->host;
    snprintf(d->component, sizeof(d->component), "%s", pool->component);
    rmq_tls_files(pool->tls, &d->files);
    const char *colon = strrchr(s->hostport, ':');
    snprintf(d->name, sizeof(d->name), "%s", s->host);
    snprintf(d->port, sizeof(d->port), "%s", colon ? colon + 1 : "5671");
    snprintf(d->line, sizeof(d->line), "%s", line);
    snprintf(d->why, sizeof(d->why), "%s", why);
    rmq_mgmt_run(pool->mgmt, diagnose, d);
}
