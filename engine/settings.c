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
    s->deploy_dir = "synapse-configs/default";
    s->http_host = "0.0.0.0";
    s->http_port = 8290; /* MI's */
    s->workers = 0;
    s->max_body = 10u * 1024 * 1024;
    s->idle_timeout_ms = 10000;
    s->http2 = 0;
    s->http2_request_rate = 2000;
    s->http2_reset_rate = 100;
    s->drain_timeout_ms = 30000;
    s->connectors_path = NULL;
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

void cmi_settings_dispose(cmi_settings_t *s)
{
    cmi_arena_destroy(s->arena);
    s->arena = NULL;
}

/* The server config file:
 *   <cmi>
 *     <http host="0.0.0.0" port="8290" workers="2" maxBodySize="10MiB" idleTimeout="10s"
 *           http2="false" http2RequestRate="2000" http2ResetRate="100"/>
 *     <shutdown drainTimeout="30s"/>
 *     <log level="info" format="text"/>
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

static void read_other(file_ctx_t *f, xmlNodePtr n, cmi_settings_t *s)
{
    const char *v;
    if (xmlStrcmp(n->name, (const xmlChar *)"shutdown") == 0) {
        static const char *const allowed[] = {"drainTimeout", NULL};
        check_attrs(f, n, allowed);
        if ((v = attr(n, "drainTimeout")) != NULL && cmi_parse_duration_ms(v, &s->drain_timeout_ms) != 0)
            bad(f, n, "drainTimeout", v, "not a duration (e.g. 30s)");
    } else if (xmlStrcmp(n->name, (const xmlChar *)"log") == 0) {
        static const char *const allowed[] = {"level", "format", NULL};
        check_attrs(f, n, allowed);
        if ((v = attr(n, "level")) != NULL) {
            int l = cmi_log_level_parse(v);
            if (l < 0)
                bad(f, n, "level", v, "not a log level (trace, debug, info, warn, error, fatal)");
            else
                s->log_level = (cmi_log_level_t)l;
        }
        if ((v = attr(n, "format")) != NULL) {
            if (strcmp(v, "text") == 0)
                s->log_format = CMI_LOG_FORMAT_TEXT;
            else if (strcmp(v, "json") == 0)
                s->log_format = CMI_LOG_FORMAT_JSON;
            else
                bad(f, n, "format", v, "must be 'text' or 'json'");
        }
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
        else
            read_other(&f, n, s);
    }
    xmlFreeDoc(doc);
    return f.diag.errors ? -1 : 0;
}
