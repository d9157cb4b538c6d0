#include "config.h"

#include "runtime/msg.h"

#include <ctype.h>
#include <libxml/parser.h>
#include <libxml/xmlsave.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

#include "core/log.h"
#include "config/config.h"
#include "core/str.h"
#include "runtime/convert.h"
#include "runtime/errors.h"

/* Message arenas start at 8 KiB: a typical JSON request with its headers
 * and a response of a few hundred bytes fits in one block. */
#define MSG_ARENA_BLOCK 8192

int cmi_scope_parse(const char *name)
{
    if (strcasecmp(name, "default") == 0 || strcasecmp(name, "synapse") == 0)
        return CMI_SCOPE_DEFAULT;
    if (strcasecmp(name, "axis2") == 0)
        return CMI_SCOPE_AXIS2;
    if (strcasecmp(name, "transport") == 0)
        return CMI_SCOPE_TRANSPORT;
    if (strcasecmp(name, "operation") == 0)
        return CMI_SCOPE_OPERATION;
    return -1;
}

/* ---- ids -------------------------------------------------------------- */

/* Per thread (a worker is a thread): no lock. */
static uint64_t thread_random(void)
{
    static _Thread_local uint64_t state;
    if (state == 0) {
        if (getrandom(&state, sizeof(state), 0) != (ssize_t)sizeof(state) || state == 0)
            state = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&state;
    }
    /* xorshift64* */
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ull;
}

static const char *make_id(cmi_msg_t *msg)
{
    uint64_t a = thread_random(), b = thread_random();
    /* RFC 4122 version 4 layout */
    a = (a & 0xffffffffffff0fffull) | 0x0000000000004000ull;
    b = (b & 0x3fffffffffffffffull) | 0x8000000000000000ull;
    /* urn:uuid:aaaaaaaa-aaaa-aaaa-bbbb-bbbbbbbbbbbb, written digit by digit:
     * through snprintf it was 4% of a worker's time answering a small API
     * (perf, bench/run's respond row). */
    static const char hex[] = "0123456789abcdef";
    char *id = cmi_arena_alloc(msg->arena, 46);
    memcpy(id, "urn:uuid:", 9);
    char *o = id + 9;
    for (int i = 60; i >= 0; i -= 4) {
        *o++ = hex[(a >> i) & 0xf];
        if (i == 32 || i == 16)
            *o++ = '-';
    }
    *o++ = '-';
    for (int i = 60; i >= 0; i -= 4) {
        *o++ = hex[(b >> i) & 0xf];
        if (i == 48)
            *o++ = '-';
    }
    *o = '\0';
    return id;
}

/* ---- limits ------------------------------------------------------------- */

static size_t view_limit = CMI_MSG_DEFAULT_VIEW_LIMIT;

void cmi_msg_set_view_limit(size_t bytes)
{
    view_limit = bytes;
}

size_t cmi_msg_view_limit(void)
{
    return view_limit;
}

/* ---- lifetime ----------------------------------------------------------- */

cmi_msg_t *cmi_msg_create(cmi_worker_t *worker, const cmi_msg_owner_t *owner, const cmi_msg_origin_t *origin,
                          void *origin_data)
{
    cmi_arena_t *arena = cmi_arena_create(MSG_ARENA_BLOCK);
    cmi_msg_t *msg = cmi_arena_calloc(arena, 1, sizeof(*msg));
    msg->magic = CMI_MSG_MAGIC;
    msg->arena = arena;
    msg->worker = worker;
    msg->owner = owner;
    msg->refs = 1;
    msg->origin = origin;
    msg->origin_data = origin_data;
    msg->id = make_id(msg);
    msg->metric_service = UINT32_MAX; /* CMI_METRICS_NO_SERVICE until dispatch says */
    return msg;
}

void cmi_msg_retain(cmi_msg_t *msg)
{
    msg->refs++;
}

void cmi_msg_release(cmi_msg_t *msg)
{
    if (--msg->refs > 0)
        return;
    cmi_worker_t *worker = msg->worker;
    const cmi_msg_owner_t *owner = msg->owner;
    struct cmi_config *config = msg->config;
    size_t used = cmi_arena_used(msg->arena);
    cmi_arena_destroy(msg->arena);
    if (owner != NULL && owner->released != NULL)
        owner->released(worker, used, config);
}

/* ---- errors ------------------------------------------------------------ */

int cmi_msg_set_error(cmi_msg_t *msg, int code, const char *message, const char *detail_fmt, ...)
{
    msg->error_code = code;
    msg->error_type = NULL;
    if (message == NULL)
        message = cmi_error_name(code);
    msg->error_message = cmi_arena_strdup(msg->arena, message ? message : "mediation error");
    if (detail_fmt != NULL) {
        va_list ap;
        va_start(ap, detail_fmt);
        msg->error_detail = cmi_arena_vsprintf(msg->arena, detail_fmt, ap);
        va_end(ap);
    } else {
        msg->error_detail = NULL;
    }
    return CMI_FLOW_ERROR;
}

/* ---- key/value lists --------------------------------------------------------- */

static cmi_kv_t *kvlist_find(const cmi_kvlist_t *l, const char *name)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return &l->items[i];
    return NULL;
}

const cmi_value_t *cmi_kvlist_get(const cmi_kvlist_t *l, const char *name)
{
    cmi_kv_t *kv = kvlist_find(l, name);
    return kv ? &kv->value : NULL;
}

void cmi_kvlist_add(cmi_arena_t *arena, cmi_kvlist_t *l, const char *name, cmi_value_t value)
{
    l->items = cmi_arena_grow(arena, l->items, l->count, &l->cap, sizeof(*l->items), 8);
    l->items[l->count].name = name;
    l->items[l->count].value = value;
    l->count++;
}

void cmi_kvlist_set(cmi_arena_t *arena, cmi_kvlist_t *l, const char *name, cmi_value_t value)
{
    cmi_kv_t *kv = kvlist_find(l, name);
    if (kv != NULL)
        kv->value = value;
    else
        cmi_kvlist_add(arena, l, name, value);
}

int cmi_kvlist_remove(cmi_kvlist_t *l, const char *name)
{
    cmi_kv_t *kv = kvlist_find(l, name);
    if (kv == NULL)
        return 0;
    size_t i = (size_t)(kv - l->items);
    memmove(&l->items[i], &l->items[i + 1], (l->count - i - 1) * sizeof(*kv));
    l->count--;
    return 1;
}

/* ---- properties ---------------------------------------------------------------- */

static cmi_kvlist_t *scope_list(cmi_msg_t *msg, cmi_scope_t scope)
{
    return &msg->props[scope == CMI_SCOPE_AXIS2 ? 1 : 0];
}

static void json_decref_cb(void *p)
{
    json_decref(p);
}

json_t *cmi_msg_own_json(cmi_msg_t *msg, json_t *json)
{
    if (json != NULL)
        cmi_arena_cleanup_add(msg->arena, json_decref_cb, json);
    return json;
}

static void xml_free_cb(void *p)
{
    xmlFreeDoc(p);
}

xmlDocPtr cmi_msg_own_xml(cmi_msg_t *msg, xmlDocPtr doc)
{
    if (doc != NULL)
        cmi_arena_cleanup_add(msg->arena, xml_free_cb, doc);
    return doc;
}

static const cmi_value_t *text_value(cmi_msg_t *msg, const char *text)
{
    if (text == NULL)
        return NULL;
    cmi_value_t *v = cmi_arena_alloc(msg->arena, sizeof(*v));
    *v = cmi_value_cstring(text);
    return v;
}

/* The request's SOAP action, as MI reads it into the Action property: the
 * SOAPAction header (SOAP 1.1, quotes taken off), else the action
 * parameter of a SOAP 1.2 content type; NULL when there is none. */
const char *cmi_msg_soap_action(cmi_msg_t *msg)
{
    size_t len;
    const char *v = cmi_msg_header_get(msg, "SOAPAction", &len);
    if (v != NULL) {
        if (len >= 2 && v[0] == '"' && v[len - 1] == '"')
            v++, len -= 2;
        return len ? cmi_arena_strndup(msg->arena, v, len) : NULL;
    }
    const char *ct = cmi_msg_header_get(msg, "Content-Type", &len);
    const char *a = ct ? strstr(cmi_arena_strndup(msg->arena, ct, len), "action=") : NULL;
    if (a == NULL)
        return NULL;
    a += 7;
    size_t n = strcspn(a, ";");
    if (n >= 2 && a[0] == '"' && a[n - 1] == '"')
        a++, n -= 2;
    return n ? cmi_arena_strndup(msg->arena, a, n) : NULL;
}

/* Properties MI sets on every message, computed when read: uri.var.X and
 * query.param.X (the dispatch parameters), the message id, the REST
 * dispatch facts and the clock. */
static const cmi_value_t *builtin_prop(cmi_msg_t *msg, cmi_scope_t scope, const char *name)
{
    if (scope == CMI_SCOPE_AXIS2) {
        if (strcmp(name, "HTTP_METHOD") == 0)
            return text_value(msg, msg->method);
        if (strcmp(name, "REST_URL_POSTFIX") == 0)
            return text_value(msg, msg->rest_postfix);
        return NULL;
    }
    if (strncmp(name, "uri.var.", 8) == 0)
        return cmi_kvlist_get(&msg->path_params, name + 8);
    if (strncmp(name, "query.param.", 12) == 0)
        return cmi_kvlist_get(&msg->query_params, name + 12);
    if (strcmp(name, "MessageID") == 0)
        return text_value(msg, msg->id);
    if (strcmp(name, "Action") == 0)
        return text_value(msg, cmi_msg_soap_action(msg));
    if (strcmp(name, "To") == 0 || strcmp(name, "REST_FULL_REQUEST_PATH") == 0)
        return text_value(msg, msg->request_uri);
    if (strcmp(name, "REST_SUB_REQUEST_PATH") == 0)
        return text_value(msg, msg->sub_path);
    if (strcmp(name, "REST_METHOD") == 0)
        return text_value(msg, msg->method);
    if (msg->api != NULL && msg->api->proxy != NULL && strcmp(name, "proxy.name") == 0)
        return text_value(msg, msg->api->name);
    if (msg->operation != NULL && strcmp(name, "OperationName") == 0)
        return text_value(msg, msg->operation);
    if (msg->api != NULL && msg->api->proxy == NULL && strcmp(name, "SYNAPSE_REST_API") == 0)
        return text_value(msg, msg->api->name);
    if (msg->api != NULL && msg->api->proxy == NULL && strcmp(name, "REST_API_CONTEXT") == 0)
        return text_value(msg, *msg->api->context ? msg->api->context : "/");
    if (strcmp(name, "SYSTEM_TIME") == 0 || strcmp(name, "SYSTEM_DATE") == 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        if (name[7] == 'T')
            return text_value(msg, cmi_arena_sprintf(msg->arena, "%lld", (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000));
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        return text_value(msg, cmi_arena_sprintf(msg->arena, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                                                 (int)(tv.tv_usec / 1000)));
    }
    return NULL;
}

const cmi_value_t *cmi_msg_prop_get(cmi_msg_t *msg, cmi_scope_t scope, const char *name)
{
    if (scope == CMI_SCOPE_TRANSPORT) {
        size_t len;
        const char *v = cmi_msg_header_get(msg, name, &len);
        if (v == NULL)
            return NULL;
        cmi_value_t *val = cmi_arena_alloc(msg->arena, sizeof(*val));
        *val = cmi_value_string(v, len);
        return val;
    }
    const cmi_value_t *v = cmi_kvlist_get(scope_list(msg, scope), name);
    if (v == NULL)
        v = builtin_prop(msg, scope, name);
    return v;
}

const char *cmi_msg_prop_text(cmi_msg_t *msg, cmi_scope_t scope, const char *name)
{
    const cmi_value_t *v = cmi_msg_prop_get(msg, scope, name);
    if (v == NULL || v->type == CMI_VAL_NULL)
        return NULL;
    return cmi_value_to_text(msg->arena, v, NULL);
}

void cmi_msg_prop_set(cmi_msg_t *msg, cmi_scope_t scope, const char *name, cmi_value_t value)
{
    if (scope == CMI_SCOPE_TRANSPORT) {
        size_t len;
        const char *text = cmi_value_to_text(msg->arena, &value, &len);
        cmi_msg_header_set(msg, name, strlen(name), text, len, 0);
        return;
    }
    cmi_kvlist_set(msg->arena, scope_list(msg, scope), name, value);
}

void cmi_msg_prop_remove(cmi_msg_t *msg, cmi_scope_t scope, const char *name)
{
    if (scope == CMI_SCOPE_TRANSPORT)
        cmi_msg_header_remove(msg, name, strlen(name));
    else
        cmi_kvlist_remove(scope_list(msg, scope), name);
}

int cmi_msg_prop_true(cmi_msg_t *msg, cmi_scope_t scope, const char *name)
{
    const cmi_value_t *v = cmi_msg_prop_get(msg, scope, name);
    if (v == NULL)
        return 0;
    if (v->type == CMI_VAL_BOOL)
        return v->u.b;
    return strcasecmp(cmi_value_to_text(msg->arena, v, NULL), "true") == 0;
}

const cmi_value_t *cmi_msg_var_get(cmi_msg_t *msg, const char *name)
{
    return cmi_kvlist_get(&msg->vars, name);
}

void cmi_msg_var_set(cmi_msg_t *msg, const char *name, cmi_value_t value)
{
    cmi_kvlist_set(msg->arena, &msg->vars, name, value);
}

void cmi_msg_var_remove(cmi_msg_t *msg, const char *name)
{
    cmi_kvlist_remove(&msg->vars, name);
}

/* ---- headers -------------------------------------------------------------------- */

const char *cmi_msg_header_get(cmi_msg_t *msg, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < msg->headers.count; i++) {
        const cmi_header_t *h = &msg->headers.items[i];
        if (cmi_str_caseeqn(h->name, h->name_len, name, n)) {
            if (len)
                *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

static cmi_header_t *header_append(cmi_msg_t *msg)
{
    cmi_headers_t *hs = &msg->headers;
    hs->items = cmi_arena_grow(msg->arena, hs->items, hs->count, &hs->cap, sizeof(*hs->items), 16);
    cmi_header_t *h = &hs->items[hs->count++];
    memset(h, 0, sizeof(*h));
    return h;
}

void cmi_msg_header_add_inbound(cmi_msg_t *msg, const char *name, size_t name_len, const char *value,
                                size_t value_len)
{
    cmi_header_t *h = header_append(msg);
    h->name = name;
    h->name_len = name_len;
    h->value = value;
    h->value_len = value_len;
}

void cmi_msg_header_remove(cmi_msg_t *msg, const char *name, size_t name_len)
{
    cmi_headers_t *hs = &msg->headers;
    size_t j = 0;
    for (size_t i = 0; i < hs->count; i++)
        if (!cmi_str_caseeqn(hs->items[i].name, hs->items[i].name_len, name, name_len))
            hs->items[j++] = hs->items[i];
    hs->count = j;
}

int cmi_header_is_framing(const char *name, size_t len)
{
    static const char *const names[] = {"content-length", "content-type", "transfer-encoding", "connection",
                                        "keep-alive", "te", "trailer", "upgrade", "proxy-connection", "host",
                                        "date", "server", NULL};
    for (const char *const *p = names; *p; p++)
        if (cmi_str_caseeqn(name, len, *p, strlen(*p)))
            return 1;
    return 0;
}

int cmi_header_valid(const char *name, size_t name_len, const char *value, size_t value_len)
{
    if (name_len == 0)
        return 0;
    for (size_t i = 0; i < name_len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!(isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch) != NULL) || ch == '\0')
            return 0;
    }
    for (size_t i = 0; i < value_len; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return 0;
    return 1;
}

void cmi_msg_header_set(cmi_msg_t *msg, const char *name, size_t name_len, const char *value,
                        size_t value_len, int copy)
{
    cmi_msg_header_remove(msg, name, name_len);
    cmi_header_t *h = header_append(msg);
    h->name = copy ? cmi_arena_strndup(msg->arena, name, name_len) : name;
    h->name_len = name_len;
    h->value = copy ? cmi_arena_strndup(msg->arena, value, value_len) : value;
    h->value_len = value_len;
    h->outbound = 1;
}

/* ---- payload --------------------------------------------------------------------- */

cmi_payload_kind_t cmi_payload_kind_of(const char *ct)
{
    if (ct == NULL || *ct == '\0')
        return CMI_PAYLOAD_BINARY;
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    /* media types: type/subtype, with +json / +xml structured suffixes */
    if (cmi_str_caseeqn(ct, n, "application/json", 16) || (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0) ||
        cmi_str_caseeqn(ct, n, "text/json", 9))
        return CMI_PAYLOAD_JSON;
    if (cmi_str_caseeqn(ct, n, "application/xml", 15) || cmi_str_caseeqn(ct, n, "text/xml", 8) ||
        (n > 4 && strncasecmp(ct + n - 4, "+xml", 4) == 0))
        return CMI_PAYLOAD_XML;
    if (n >= 5 && strncasecmp(ct, "text/", 5) == 0)
        return CMI_PAYLOAD_TEXT;
    return CMI_PAYLOAD_BINARY;
}


static void payload_reset(cmi_msg_t *msg)
{
    /* Views already handed out stay valid: their cleanup is tied to the
     * arena, not to the payload slot. */
    cmi_payload_t *p = &msg->payload;
    p->json = NULL;
    p->xml = NULL;
    p->xpath_doc = NULL;
    p->json_tried = 0;
    p->xml_tried = 0;
    p->xpath_too_large = 0;
    p->built = 0;
    p->parse_error = NULL;
    p->bytes = NULL;
    p->len = 0;
    p->bytes_valid = 0;
}

void cmi_msg_set_payload(cmi_msg_t *msg, const char *bytes, size_t len, const char *content_type)
{
    payload_reset(msg);
    cmi_payload_t *p = &msg->payload;
    p->bytes = bytes;
    p->len = len;
    p->bytes_valid = 1;
    p->content_type = content_type;
    p->kind = len == 0 && content_type == NULL ? CMI_PAYLOAD_NONE : cmi_payload_kind_of(content_type);
}

void cmi_msg_set_payload_json(cmi_msg_t *msg, json_t *json)
{
    payload_reset(msg);
    cmi_payload_t *p = &msg->payload;
    p->json = cmi_msg_own_json(msg, json);
    p->json_tried = 1;
    if (p->kind != CMI_PAYLOAD_JSON)
        p->content_type = "application/json";
    p->kind = CMI_PAYLOAD_JSON;
}

void cmi_msg_payload_adopt_json(cmi_msg_t *msg, json_t *json)
{
    cmi_payload_t *p = &msg->payload;
    p->json = cmi_msg_own_json(msg, json);
    p->json_tried = 1;
}

static int dump_cb(const char *buf, size_t n, void *data)
{
    cmi_strbuf_append(data, buf, n);
    return 0;
}

static void serialize_xml(cmi_msg_t *msg)
{
    cmi_payload_t *p = &msg->payload;
    xmlNodePtr root = xmlDocGetRootElement(p->xml);
    xmlBufferPtr buf = xmlBufferCreate();
    /* The root element alone, without an XML declaration, as MI sends it. */
    if (root != NULL)
        xmlNodeDump(buf, p->xml, root, 0, 0);
    p->len = (size_t)xmlBufferLength(buf);
    p->bytes = cmi_arena_memdup(msg->arena, xmlBufferContent(buf), p->len);
    xmlBufferFree(buf);
}

const char *cmi_msg_payload_bytes(cmi_msg_t *msg, size_t *len)
{
    cmi_payload_t *p = &msg->payload;
    if (!p->bytes_valid) {
        if (p->json != NULL) {
            cmi_strbuf_t b;
            cmi_strbuf_init(&b, msg->arena, 256);
            json_dump_callback(p->json, dump_cb, &b, JSON_COMPACT | JSON_ENCODE_ANY);
            p->bytes = b.data;
            p->len = b.len;
        } else if (p->xml != NULL) {
            serialize_xml(msg);
        } else {
            p->bytes = "";
            p->len = 0;
        }
        p->bytes_valid = 1;
    }
    if (len)
        *len = p->len;
    return p->bytes;
}

json_t *cmi_msg_payload_json(cmi_msg_t *msg, const char **err)
{
    cmi_payload_t *p = &msg->payload;
    if (p->json != NULL || p->json_tried) {
        if (p->json == NULL && err)
            *err = p->parse_error;
        return p->json;
    }
    p->json_tried = 1;
    size_t len;
    const char *bytes = cmi_msg_payload_bytes(msg, &len);
    json_error_t je;
    json_t *j = cmi_json_read(msg->arena, bytes, len, &je);
    if (j == NULL) {
        p->parse_error = cmi_arena_sprintf(msg->arena, "payload is not valid JSON: %s at line %d column %d",
                                           je.text, je.line, je.column);
        if (err)
            *err = p->parse_error;
        return NULL;
    }
    p->json = cmi_msg_own_json(msg, j);
    return j;
}

void cmi_msg_payload_xml_changed(cmi_msg_t *msg)
{
    cmi_payload_t *p = &msg->payload;
    p->bytes_valid = 0;
    p->json = NULL;
    p->json_tried = 0;
    p->xpath_doc = NULL;
    p->xpath_too_large = 0;
}

xmlDocPtr cmi_msg_payload_xml(cmi_msg_t *msg, const char **err)
{
    cmi_payload_t *p = &msg->payload;
    if (p->xml != NULL || p->xml_tried) {
        if (p->xml == NULL && err)
            *err = p->parse_error;
        return p->xml;
    }
    p->xml_tried = 1;
    size_t len;
    const char *bytes = cmi_msg_payload_bytes(msg, &len);
    const char *why = NULL;
    xmlDocPtr doc = cmi_xml_read(msg->arena, bytes, len, &why);
    if (doc == NULL) {
        p->parse_error = cmi_arena_sprintf(msg->arena, "payload is not valid XML: %s", why);
        if (err)
            *err = p->parse_error;
        return NULL;
    }
    p->xml = cmi_msg_own_xml(msg, doc);
    return doc;
}
