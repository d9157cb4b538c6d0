#include "config.h"

#include <libxml/parser.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config/diag.h"
#include "core/str.h"
#include "engine.h"

void cmi_settings_defaults(cmi_settings_t *s)
{
    memset(s, 0, sizeof(*s));
    s->deploy_dir = NULL; /* main.c: the folder given, else the default deployment */
    s->http_host = "0.0.0.0";
    s->http_port = 8290; /* MI's */
    s->https_port = 8253; /* MI's (8243 and its default port offset of 10) */
    s->tls.http2 = 1;     /* by ALPN; the HTTP/2 rates below apply */
    s->workers = 0;
    s->max_body = 10u * 1024 * 1024;
    s->idle_timeout_ms = 10000;
    s->http2 = 0;
    s->http2_request_rate = 2000;
    s->http2_reset_rate = 100;
    s->drain_timeout_ms = 30000;
    s->watch_delay_ms = 500;
    s->connectors_path = NULL;
    s->internal_host = "127.0.0.1"; /* metrics and health are not for the world */
    s->internal_port = 9201;        /* MI's internal API port (9191 + its default offset of 10) */
    s->metrics = 1;
    s->readiness = CMI_READY_CONNECTIONS | CMI_READY_INBOUND;
    s->log_level = CMI_LOG_INFO;
    s->log_format = CMI_LOG_FORMAT_TEXT;
}

int cmi_settings_parse_rate(const char *v, uint32_t *out)
{
    uint64_t u;
    if (cmi_parse_uint(v, UINT32_MAX, &u) != 0)
        return -1;
    *out = (uint32_t)u;
    return 0;
}

int cmi_settings_parse_access_format(const char *v, int *json)
{
    if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0)
        return -1;
    *json = strcmp(v, "json") == 0;
    return 0;
}

int cmi_settings_parse_watch_delay(const char *v, uint64_t *ms)
{
    uint64_t d;
    if (cmi_parse_duration_ms(v, &d) != 0 || d < 10 || d > 60000)
        return -1;
    *ms = d;
    return 0;
}

int cmi_settings_parse_internal_port(const char *v, int *out)
{
    uint64_t u;
    if (strcmp(v, "off") == 0) {
        *out = -1;
        return 0;
    }
    if (cmi_parse_uint(v, 65535, &u) != 0)
        return -1;
    *out = (int)u;
    return 0;
}

int cmi_settings_parse_readiness(const char *v, unsigned *out)
{
    unsigned r = 0;
    const char *p = v;
    for (;;) {
        size_t n = strcspn(p, ",");
        while (n > 0 && *p == ' ')
            p++, n--;
        size_t len = n;
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len == 11 && strncmp(p, "connections", 11) == 0)
            r |= CMI_READY_CONNECTIONS;
        else if (len == 17 && strncmp(p, "inbound-endpoints", 17) == 0)
            r |= CMI_READY_INBOUND;
        else if (!(len == 10 && strncmp(p, "deployment", 10) == 0))
            return -1;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    *out = r;
    return 0;
}

void cmi_settings_dispose(cmi_settings_t *s)
{
    cmi_arena_destroy(s->arena);
    s->arena = NULL;
}

/* The server config file:
 *   <cmi>
 *     <http host="0.0.0.0" port="8290" workers="2" maxBodySize="10MiB" idleTimeout="10s"
 *           http2="false" http2RequestRate="2000" http2ResetRate="100"/>
 *     <https host="0.0.0.0" port="8253" certificate="cert.pem" key="key.pem" password="..."
 *            protocols="TLSv1.2,TLSv1.3" ciphers="..." cipherSuites="..." verifyClient="none"
 *            caFile="ca.pem" http2="true"/>
 *     <secrets file="/etc/cmi/secrets"/>
 *     <users>
 *       <user name="admin" password="$y$..." roles="admin"/>
 *     </users>
 *     <shutdown drainTimeout="30s"/>
 *     <log level="info" format="text" access="/var/log/cmi/access.log" accessFormat="json"/>
 *     <internal host="127.0.0.1" port="9201" metrics="true"
 *               readiness="connections,inbound-endpoints"/>
 *     <connectors path="/usr/lib/cmi/connectors"/>
 *   </cmi>
 */

typedef struct {
    const char *path;
    cmi_diag_t diag;
} file_ctx_t;

static cmi_settings_t *cur_settings;

/* Attribute values are copied into the settings' arena: they live as long
 * as the settings do. */
static const char *attr(xmlNodePtr n, const char *name)
{
    xmlChar *v = xmlGetNoNsProp(n, (const xmlChar *)name);
    if (v == NULL)
        return NULL;
    if (cur_settings->arena == NULL)
        cur_settings->arena = cmi_arena_create(0);
    const char *copy = cmi_arena_strdup(cur_settings->arena, (const char *)v);
    xmlFree(v);
    return copy;
}

static void check_attrs(file_ctx_t *f, xmlNodePtr n, const char *const *allowed)
{
    for (xmlAttrPtr a = n->properties; a != NULL; a = a->next) {
        int ok = 0;
        for (const char *const *p = allowed; *p; p++)
            ok |= strcmp(*p, (const char *)a->name) == 0;
        if (!ok)
            cmi_diag_error(&f->diag, f->path, (int)xmlGetLineNo(n), "<%s>: unknown attribute '%s'", n->name, a->name);
    }
}

static void bad(file_ctx_t *f, xmlNodePtr n, const char *name, const char *v, const char *what)
{
    cmi_diag_error(&f->diag, f->path, (int)xmlGetLineNo(n), "<%s %s=\"%s\">: %s", n->name, name, v, what);
}

static void read_http(file_ctx_t *f, xmlNodePtr n, cmi_settings_t *s)
{
    static const char *const allowed[] = {"host",  "port", "workers", "maxBodySize", "idleTimeout", "http2",
                                          "http2RequestRate", "http2ResetRate", NULL};
    check_attrs(f, n, allowed);
    const char *v;
    uint64_t u;
    if ((v = attr(n, "host")) != NULL)
        s->http_host = v;
    if ((v = attr(n, "port")) != NULL) {
        if (cmi_parse_uint(v, 65535, &u) != 0)
            bad(f, n, "port", v, "not a port number (0..65535)");
        else
            s->http_port = (int)u;
    }
    if ((v = attr(n, "workers")) != NULL) {
        if (cmi_parse_uint(v, 256, &u) != 0)
            bad(f, n, "workers", v, "not a worker count (0..256, 0 = cores)");
        else
            s->workers = (unsigned)u;
    }
    if ((v = attr(n, "maxBodySize")) != NULL && cmi_parse_size(v, &s->max_body) != 0)
        bad(f, n, "maxBodySize", v, "not a size (e.g. 10MiB)");
    if ((v = attr(n, "idleTimeout")) != NULL &&
        (cmi_parse_duration_ms(v, &s->idle_timeout_ms) != 0 || s->idle_timeout_ms == 0))
        bad(f, n, "idleTimeout", v, "not a positive duration (e.g. 10s)");
    if ((v = attr(n, "http2")) != NULL && cmi_parse_bool(v, &s->http2) != 0)
        bad(f, n, "http2", v, "must be 'true' or 'false'");
    if ((v = attr(n, "http2RequestRate")) != NULL && cmi_settings_parse_rate(v, &s->http2_request_rate) != 0)
        bad(f, n, "http2RequestRate", v, "not a rate (requests per connection per second, 0 = no limit)");
    if ((v = attr(n, "http2ResetRate")) != NULL && cmi_settings_parse_rate(v, &s->http2_reset_rate) != 0)
        bad(f, n, "http2ResetRate", v, "not a rate (resets per connection per second, 0 = no limit)");
}

static void read_https(file_ctx_t *f, xmlNodePtr n, cmi_settings_t *s)
{
    static const char *const allowed[] = {"host",    "port",         "certificate",  "key",    "password",
                                          "protocols", "ciphers",    "cipherSuites", "verifyClient", "caFile",
                                          "http2",   NULL};
    check_attrs(f, n, allowed);
    const char *v;
    uint64_t u;
    if ((v = attr(n, "host")) != NULL)
        s->https_host = v;
    if ((v = attr(n, "port")) != NULL) {
        if (cmi_parse_uint(v, 65535, &u) != 0)
            bad(f, n, "port", v, "not a port number (0..65535)");
        else
            s->https_port = (int)u;
    }
    s->tls.cert_file = (v = attr(n, "certificate")) != NULL ? v : s->tls.cert_file;
    s->tls.key_file = (v = attr(n, "key")) != NULL ? v : s->tls.key_file;
    s->tls.password = (v = attr(n, "password")) != NULL ? v : s->tls.password;
    s->tls.protocols = (v = attr(n, "protocols")) != NULL ? v : s->tls.protocols;
    s->tls.ciphers = (v = attr(n, "ciphers")) != NULL ? v : s->tls.ciphers;
    s->tls.ciphersuites = (v = attr(n, "cipherSuites")) != NULL ? v : s->tls.ciphersuites;
    s->tls.ca_file = (v = attr(n, "caFile")) != NULL ? v : s->tls.ca_file;
    if ((v = attr(n, "verifyClient")) != NULL && (s->tls.verify_client = cmi_tls_verify_parse(v)) < 0)
        bad(f, n, "verifyClient", v, "must be 'none', 'optional' or 'require'");
    if ((v = attr(n, "http2")) != NULL && cmi_parse_bool(v, &s->tls.http2) != 0)
        bad(f, n, "http2", v, "must be 'true' or 'false'");
    s->https_asked = 1; /* the certificate may still come from --tls-cert */
    if (s->tls.verify_client > CMI_TLS_VERIFY_NONE && s->tls.ca_file == NULL)
        cmi_diag_error(&f->diag, f->path, (int)xmlGetLineNo(n),
                       "<https verifyClient>: client verification needs caFile (the CAs client certificates must "
                       "chain to)");
}

/* <users><user name password roles/>...</users>: password is a crypt(3)
 * hash, never clear text. */
static void read_users(file_ctx_t *f, xmlNodePtr users, cmi_settings_t *s)
{
    static const char *const allowed[] = {"name", "password", "roles", NULL};
    check_attrs(f, users, (const char *const[]){NULL});
    size_t n = 0;
    for (xmlNodePtr c = users->children; c != NULL; c = c->next)
        n += c->type == XML_ELEMENT_NODE;
    if (cur_settings->arena == NULL)
        cur_settings->arena = cmi_arena_create(0);
    cmi_user_t *list = cmi_arena_calloc(cur_settings->arena, n ? n : 1, sizeof(*list));
    size_t k = 0;
    for (xmlNodePtr c = users->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        int line = (int)xmlGetLineNo(c);
        if (xmlStrcmp(c->name, (const xmlChar *)"user") != 0) {
            cmi_diag_error(&f->diag, f->path, line, "<users>: unexpected element <%s> (only <user>)", c->name);
            continue;
        }
        check_attrs(f, c, allowed);
        cmi_user_t u = {attr(c, "name"), attr(c, "password"), attr(c, "roles")};
        const char *why = u.hash != NULL ? cmi_user_hash_problem(u.hash) : "the password attribute is required";
        if (u.name == NULL || *u.name == '\0' || strchr(u.name, ':') != NULL)
            cmi_diag_error(&f->diag, f->path, line, "<user>: a name is required, without ':'");
        else if (why != NULL)
            cmi_diag_error(&f->diag, f->path, line, "<user name=\"%s\" password>: %s", u.name, why);
        else {
            for (size_t i = 0; i < k; i++)
                if (strcmp(list[i].name, u.name) == 0)
                    cmi_diag_error(&f->diag, f->path, line, "<user name=\"%s\">: a second user of that name",
                                   u.name);
            list[k++] = u;
        }
    }
    s->users = list;
    s->nusers = k;
}

static void read_internal(file_ctx_t *f, xmlNodePtr n, cmi_settings_t *s)
{
    static const char *const allowed[] = {"host", "port", "metrics", "readiness", NULL};
    check_attrs(f, n, allowed);
    const char *v;
    if ((v = attr(n, "host")) != NULL)
        s->internal_host = v;
    if ((v = attr(n, "port")) != NULL && cmi_settings_parse_internal_port(v, &s->internal_port) != 0)
        bad(f, n, "port", v, "not a port number (0..65535) or 'off'");
    if ((v = attr(n, "metrics")) != NULL && cmi_parse_bool(v, &s->metrics) != 0)
        bad(f, n, "metrics", v, "must be 'true' or 'false'");
    if ((v = attr(n, "readiness")) != NULL && cmi_settings_parse_readiness(v, &s->readiness) != 0)
        bad(f, n, "readiness", v, "must list 'connections', 'inbound-endpoints' (comma-separated) or be 'deployment'");
}

static void read_other(file_ctx_t *f, xmlNodePtr n, cmi_settings_t *s)
{
    const char *v;
    if (xmlStrcmp(n->name, (const xmlChar *)"shutdown") == 0) {
        static const char *const allowed[] = {"drainTimeout", NULL};
        check_attrs(f, n, allowed);
        if ((v = attr(n, "drainTimeout")) != NULL && cmi_parse_duration_ms(v, &s->drain_timeout_ms) != 0)
            bad(f, n, "drainTimeout", v, "not a duration (e.g. 30s)");
    } else if (xmlStrcmp(n->name, (const xmlChar *)"log") == 0) {
        static const char *const allowed[] = {"level", "format", "access", "accessFormat", NULL};
        check_attrs(f, n, allowed);
        if ((v = attr(n, "level")) != NULL) {
            char why[160];
            if (cmi_log_spec_parse(v, &s->log_level, why, sizeof(why)) != 0)
                bad(f, n, "level", v, why);
            else
                s->log_spec = v;
        }
        if ((v = attr(n, "format")) != NULL) {
            if (strcmp(v, "text") == 0)
                s->log_format = CMI_LOG_FORMAT_TEXT;
            else if (strcmp(v, "json") == 0)
                s->log_format = CMI_LOG_FORMAT_JSON;
            else
                bad(f, n, "format", v, "must be 'text' or 'json'");
        }
        if ((v = attr(n, "access")) != NULL)
            s->access_log = strcmp(v, "off") == 0 ? NULL : v;
        if ((v = attr(n, "accessFormat")) != NULL && cmi_settings_parse_access_format(v, &s->access_log_json) != 0)
            bad(f, n, "accessFormat", v, "must be 'text' or 'json'");
    } else if (xmlStrcmp(n->name, (const xmlChar *)"reload") == 0) {
        static const char *const allowed[] = {"watch", "delay", NULL};
        check_attrs(f, n, allowed);
        if ((v = attr(n, "watch")) != NULL && cmi_parse_bool(v, &s->watch) != 0)
            bad(f, n, "watch", v, "must be 'true' or 'false'");
        if ((v = attr(n, "delay")) != NULL && cmi_settings_parse_watch_delay(v, &s->watch_delay_ms) != 0)
            bad(f, n, "delay", v, "not a duration from 10ms to 1min (e.g. 500ms)");
    } else if (xmlStrcmp(n->name, (const xmlChar *)"secrets") == 0) {
        static const char *const allowed[] = {"file", NULL};
        check_attrs(f, n, allowed);
        if ((v = attr(n, "file")) != NULL)
            s->secrets_file = v;
    } else if (xmlStrcmp(n->name, (const xmlChar *)"internal") == 0) {
        read_internal(f, n, s);
    } else if (xmlStrcmp(n->name, (const xmlChar *)"connectors") == 0) {
        static const char *const allowed[] = {"path", NULL};
        check_attrs(f, n, allowed);
        if ((v = attr(n, "path")) != NULL)
            s->connectors_path = v;
    } else {
        cmi_diag_error(&f->diag, f->path, (int)xmlGetLineNo(n), "unknown element <%s> in the server config", n->name);
    }
}

int cmi_settings_load_file(cmi_settings_t *s, const char *path)
{
    file_ctx_t f = {.path = path};
    cur_settings = s;
    cmi_diag_init(&f.diag, stderr);
    xmlDocPtr doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doc == NULL) {
        const xmlError *e = xmlGetLastError();
        cmi_diag_error(&f.diag, path, e ? e->line : 0, "cannot read the server config: %s",
                       e && e->message ? e->message : "unreadable");
        return -1;
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (root == NULL || xmlStrcmp(root->name, (const xmlChar *)"cmi") != 0) {
        cmi_diag_error(&f.diag, path, root ? (int)xmlGetLineNo(root) : 0, "the server config's root must be <cmi>");
        xmlFreeDoc(doc);
        return -1;
    }
    for (xmlNodePtr n = root->children; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (xmlStrcmp(n->name, (const xmlChar *)"http") == 0)
            read_http(&f, n, s);
        else if (xmlStrcmp(n->name, (const xmlChar *)"https") == 0)
            read_https(&f, n, s);
        else if (xmlStrcmp(n->name, (const xmlChar *)"users") == 0)
            read_users(&f, n, s);
        else
            read_other(&f, n, s);
    }
    xmlFreeDoc(doc);
    return f.diag.errors ? -1 : 0;
}
