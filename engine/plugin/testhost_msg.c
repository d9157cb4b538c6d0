/* The test host's message: payload, properties, variables, transport
 * headers, and memory that lives as long as the message.  The msg_*
 * host functions trace and check the thread; the cmi_test_msg_* ones are
 * the test's own view of the same fields. */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "plugin/testhost_int.h"

#define MSG_MAGIC 0x544d5347u /* "TMSG" */

typedef struct {
    char *name, *value;
} header_t;

/* msg_alloc blocks and cleanups: freed and run with the message. */
typedef union block {
    union block *next;
    max_align_t align;
} block_t;

typedef struct cleanup {
    struct cleanup *next;
    void (*fn)(void *data);
    void *data;
} cleanup_t;

struct cmi_msg {
    uint32_t magic;
    char *id;
    char *payload; /* NUL-terminated; NULL: none */
    size_t len;
    char *content_type;
    json_t *json;  /* the payload's JSON view, made when asked */
    json_t *props; /* {"default": {...}, "axis2": {...}} */
    json_t *vars;
    header_t *headers;
    size_t nheaders;
    block_t *blocks;
    cleanup_t *cleanups;
};

static const char *const scope_names[] = {"default", "axis2", "transport", "operation"};

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        cmi_th_fatal(__func__, "out of memory");
    return d;
}

static cmi_msg_t *msg_check(cmi_msg_t *msg, const char *fn)
{
    if (msg == NULL || msg->magic != MSG_MAGIC)
        cmi_th_fatal(fn, "not a message of the test host (cmi_test_msg_new)");
    cmi_th_on_worker(fn);
    return msg;
}

/* ---- the test's view ---------------------------------------------------------- */

cmi_msg_t *cmi_test_msg_new(const char *id)
{
    static atomic_ulong seq; /* ids only need to differ */
    cmi_msg_t *msg = calloc(1, sizeof(*msg));
    if (msg == NULL)
        cmi_th_fatal(__func__, "out of memory");
    char buf[64];
    if (id == NULL)
        snprintf(buf, sizeof(buf), "urn:uuid:test-%lu", atomic_fetch_add(&seq, 1) + 1);
    msg->magic = MSG_MAGIC;
    msg->id = xstrdup(id ? id : buf);
    msg->props = json_pack("{s:{}, s:{}}", "default", "axis2");
    msg->vars = json_object();
    return msg;
}

static void headers_remove(cmi_msg_t *msg, const char *name)
{
    size_t kept = 0;
    for (size_t i = 0; i < msg->nheaders; i++) {
        if (strcasecmp(msg->headers[i].name, name) == 0) {
            free(msg->headers[i].name);
            free(msg->headers[i].value);
        } else {
            msg->headers[kept++] = msg->headers[i];
        }
    }
    msg->nheaders = kept;
}

static void header_add(cmi_msg_t *msg, const char *name, const char *value)
{
    header_t *h = realloc(msg->headers, (msg->nheaders + 1) * sizeof(*h));
    if (h == NULL)
        cmi_th_fatal(__func__, "out of memory");
    msg->headers = h;
    h[msg->nheaders++] = (header_t){xstrdup(name), xstrdup(value)};
}

static void payload_clear(cmi_msg_t *msg)
{
    free(msg->payload);
    free(msg->content_type);
    json_decref(msg->json);
    msg->payload = msg->content_type = NULL;
    msg->json = NULL;
    msg->len = 0;
}

void cmi_test_msg_free(cmi_msg_t *msg)
{
    if (msg == NULL)
        return;
    while (msg->cleanups != NULL) {
        cleanup_t *c = msg->cleanups;
        msg->cleanups = c->next;
        c->fn(c->data);
        free(c);
    }
    while (msg->blocks != NULL) {
        block_t *b = msg->blocks;
        msg->blocks = b->next;
        free(b);
    }
    payload_clear(msg);
    for (size_t i = 0; i < msg->nheaders; i++) {
        free(msg->headers[i].name);
        free(msg->headers[i].value);
    }
    free(msg->headers);
    json_decref(msg->props);
    json_decref(msg->vars);
    free(msg->id);
    msg->magic = 0;
    free(msg);
}

static void set_payload(cmi_msg_t *msg, const void *bytes, size_t len, const char *content_type)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        cmi_th_fatal(__func__, "out of memory");
    if (len > 0)
        memcpy(copy, bytes, len);
    copy[len] = '\0';
    payload_clear(msg);
    msg->payload = copy;
    msg->len = len;
    msg->content_type = xstrdup(content_type ? content_type : "application/octet-stream");
}

void cmi_test_msg_set_payload(cmi_msg_t *msg, const char *text, const char *content_type)
{
    set_payload(msg, text, strlen(text), content_type);
}

const char *cmi_test_msg_payload(cmi_msg_t *msg, size_t *len, const char **content_type)
{
    if (len != NULL)
        *len = msg->len;
    if (content_type != NULL)
        *content_type = msg->content_type;
    return msg->payload ? msg->payload : "";
}

/* The default and operation scopes are one (a message per flow). */
static json_t *scope_props(cmi_msg_t *msg, cmi_scope_t scope)
{
    return json_object_get(msg->props, scope == CMI_SCOPE_AXIS2 ? "axis2" : "default");
}

void cmi_test_msg_set_header(cmi_msg_t *msg, const char *name, const char *value)
{
    headers_remove(msg, name);
    if (value != NULL)
        header_add(msg, name, value);
}

const char *cmi_test_msg_header(cmi_msg_t *msg, const char *name)
{
    for (size_t i = 0; i < msg->nheaders; i++)
        if (strcasecmp(msg->headers[i].name, name) == 0)
            return msg->headers[i].value;
    return NULL;
}

void cmi_test_msg_set_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name, const char *value)
{
    if (scope == CMI_SCOPE_TRANSPORT)
        cmi_test_msg_set_header(msg, name, value);
    else if (value == NULL)
        json_object_del(scope_props(msg, scope), name);
    else
        json_object_set_new(scope_props(msg, scope), name, json_string(value));
}

const char *cmi_test_msg_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name)
{
    if (scope == CMI_SCOPE_TRANSPORT)
        return cmi_test_msg_header(msg, name);
    return json_string_value(json_object_get(scope_props(msg, scope), name));
}

json_t *cmi_test_msg_variable(cmi_msg_t *msg, const char *name)
{
    return json_object_get(msg->vars, name);
}

cmi_msg_t *cmi_th_msg_injected(const cmi_injection_t *in)
{
    cmi_msg_t *msg = cmi_test_msg_new(NULL);
    set_payload(msg, in->payload ? in->payload : "", in->len, in->content_type);
    for (size_t i = 0; i < in->nheaders; i++)
        if (in->headers[i].name != NULL && in->headers[i].value != NULL)
            header_add(msg, in->headers[i].name, in->headers[i].value);
    /* As for an HTTP request, the payload's type is a transport header too. */
    if (cmi_test_msg_header(msg, "Content-Type") == NULL)
        header_add(msg, "Content-Type", msg->content_type);
    for (size_t i = 0; i < in->nprops; i++)
        if (in->props[i].name != NULL && in->props[i].value != NULL)
            cmi_test_msg_set_property(msg, in->props[i].scope, in->props[i].name, in->props[i].value);
    return msg;
}

/* ---- the host functions ------------------------------------------------------- */

const char *cmi_th_msg_id(cmi_msg_t *msg)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_id");
    return msg->id;
}

static void *msg_block(cmi_msg_t *msg, size_t size)
{
    block_t *b = malloc(sizeof(*b) + (size ? size : 1));
    if (b == NULL)
        cmi_th_fatal(__func__, "out of memory");
    b->next = msg->blocks;
    msg->blocks = b;
    return b + 1;
}

void *cmi_th_msg_alloc(cmi_msg_t *msg, size_t size)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_alloc %zu", size);
    return msg_block(msg, size);
}

char *cmi_th_msg_strdup(cmi_msg_t *msg, const char *s)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_strdup");
    return memcpy(msg_block(msg, strlen(s) + 1), s, strlen(s) + 1);
}

void cmi_th_msg_cleanup(cmi_msg_t *msg, void (*fn)(void *data), void *data)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_cleanup");
    cleanup_t *c = malloc(sizeof(*c));
    if (c == NULL)
        cmi_th_fatal(__func__, "out of memory");
    *c = (cleanup_t){msg->cleanups, fn, data};
    msg->cleanups = c;
}

const char *cmi_th_msg_payload(cmi_msg_t *msg, size_t *len, const char **content_type)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_payload");
    return cmi_test_msg_payload(msg, len, content_type);
}

static int is_json_type(const char *ct)
{
    if (ct == NULL)
        return 0;
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    return (n == 16 && strncasecmp(ct, "application/json", n) == 0) || (n == 9 && strncasecmp(ct, "text/json", n) == 0) ||
           (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
}

json_t *cmi_th_msg_payload_json(cmi_msg_t *msg)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_payload_json");
    if (msg->json == NULL && msg->payload != NULL && is_json_type(msg->content_type))
        msg->json = json_loadb(msg->payload, msg->len, JSON_DECODE_ANY, NULL);
    return msg->json;
}

void cmi_th_msg_set_payload(cmi_msg_t *msg, const void *bytes, size_t len, const char *content_type)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_set_payload %s", content_type ? content_type : "(none)");
    set_payload(msg, bytes, len, content_type);
}

void cmi_th_msg_set_payload_json(cmi_msg_t *msg, json_t *json)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_set_payload_json");
    char *text = json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY);
    set_payload(msg, text ? text : "", text ? strlen(text) : 0, "application/json");
    free(text);
    msg->json = json; /* stolen: the view the text came from */
}

const char *cmi_th_msg_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_property %s %s", scope_names[scope & 3], name);
    const char *v = cmi_test_msg_property(msg, scope, name);
    /* The host's answer lives as long as the message, not the property. */
    return v ? memcpy(msg_block(msg, strlen(v) + 1), v, strlen(v) + 1) : NULL;
}

void cmi_th_msg_set_property(cmi_msg_t *msg, cmi_scope_t scope, const char *name, const char *value)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_set_property %s %s", scope_names[scope & 3], name);
    cmi_test_msg_set_property(msg, scope, name, value);
}

json_t *cmi_th_msg_variable(cmi_msg_t *msg, const char *name)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_variable %s", name);
    return json_incref(json_object_get(msg->vars, name));
}

void cmi_th_msg_set_variable(cmi_msg_t *msg, const char *name, json_t *value)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_set_variable %s", name);
    if (value == NULL)
        json_object_del(msg->vars, name);
    else
        json_object_set_new(msg->vars, name, value);
}

const char *cmi_th_msg_header(cmi_msg_t *msg, const char *name, size_t *len)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_header %s", name);
    const char *v = cmi_test_msg_header(msg, name);
    if (v != NULL && len != NULL)
        *len = strlen(v);
    return v;
}

void cmi_th_msg_set_header(cmi_msg_t *msg, const char *name, const char *value)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_set_header %s", name);
    cmi_test_msg_set_header(msg, name, value);
}

size_t cmi_th_msg_headers(cmi_msg_t *msg,
                          int (*fn)(void *arg, const char *name, size_t name_len, const char *value, size_t value_len),
                          void *arg)
{
    msg_check(msg, __func__);
    cmi_th_trace("msg_headers");
    size_t i = 0;
    while (i < msg->nheaders) {
        const header_t *h = &msg->headers[i++];
        if (fn(arg, h->name, strlen(h->name), h->value, strlen(h->value)) != 0)
            break;
    }
    return i;
}

int cmi_th_payload_readable(const char *content_type, const void *bytes, size_t len, char *why, size_t size)
{
    cmi_th_trace("payload_readable %s", content_type ? content_type : "(none)");
    if (!is_json_type(content_type))
        return 1;
    json_error_t je;
    json_t *j = json_loadb(bytes, len, JSON_DECODE_ANY, &je);
    if (j == NULL && why != NULL && size > 0)
        snprintf(why, size, "not valid JSON: %s at line %d column %d", je.text, je.line, je.column);
    json_decref(j);
    return j != NULL;
}
