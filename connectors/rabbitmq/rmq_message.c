/* The AMQP message of a publish, encoded on the worker so that the pool's
 * thread only moves bytes.  One `data` section, never `amqp-value`: AMQP
 * 0.9.1 consumers (most RabbitMQ users) get the body bytes as they are. */
#include "config.h"

#include <proton/codec.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/message.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rmq.h"

/* Credentials and hop-by-hop headers (docs/rabbitmq.md, "publishMessage"). */
static const char *const filtered[] = {
    "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "Connection", "Keep-Alive",
    "Transfer-Encoding", "TE", "Upgrade", "Host", "Content-Length", NULL,
};

int rmq_header_is_filtered(const char *name, size_t len)
{
    for (const char *const *f = filtered; *f != NULL; f++)
        if (strlen(*f) == len && strncasecmp(*f, name, len) == 0)
            return 1;
    return 0;
}

static void put_string(pn_data_t *d, const char *s)
{
    pn_data_put_string(d, pn_bytes(strlen(s), s));
}

/* Message ids are strings here: the engine's "urn:uuid:..." or the flow's. */
static pn_msgid_t string_id(const char *s)
{
    pn_atom_t a;
    memset(&a, 0, sizeof(a));
    a.type = PN_STRING;
    a.u.as_bytes = pn_bytes(strlen(s), s);
    return a;
}

static int fill(pn_message_t *m, const rmq_message_spec_t *s, char *err, size_t n)
{
    pn_message_set_durable(m, true);
    pn_message_set_inferred(m, true); /* a binary body is a data section */
    if (s->message_id != NULL)
        pn_message_set_id(m, string_id(s->message_id));
    if (s->correlation_id != NULL)
        pn_message_set_correlation_id(m, string_id(s->correlation_id));
    if (s->content_type != NULL)
        pn_message_set_content_type(m, s->content_type);
    if (s->content_encoding != NULL)
        pn_message_set_content_encoding(m, s->content_encoding);
    if (s->reply_to != NULL)
        pn_message_set_reply_to(m, s->reply_to);
    if (s->priority >= 0)
        pn_message_set_priority(m, (uint8_t)s->priority);
    if (s->ttl_ms > 0)
        pn_message_set_ttl(m, s->ttl_ms > UINT32_MAX ? UINT32_MAX : (pn_millis_t)s->ttl_ms);
    if (s->app_props != NULL && json_object_size(s->app_props) > 0) {
        pn_data_t *props = pn_message_properties(m);
        pn_data_put_map(props);
        pn_data_enter(props);
        const char *k;
        json_t *v;
        json_object_foreach(s->app_props, k, v) {
            if (!json_is_string(v)) {
                snprintf(err, n, "application property '%s' is not a string", k);
                return -1;
            }
            put_string(props, k);
            pn_data_put_string(props, pn_bytes(json_string_length(v), json_string_value(v)));
        }
        pn_data_exit(props);
    }
    pn_data_t *body = pn_message_body(m);
    pn_data_put_binary(body, pn_bytes(s->body_len, s->body_len ? (const char *)s->body : ""));
    return 0;
}

json_t *rmq_publish_result(const rmq_pub_t *pub)
{
    int ok = pub->outcome == RMQ_OUT_ACCEPTED;
    json_t *r = json_pack("{s:s, s:s}", "success", ok ? "true" : "false", "messageId",
                          pub->message_id ? pub->message_id : "");
    if (!ok)
        json_object_set_new(r, "error",
                            json_pack("{s:s, s:s, s:s}", "code", "701203", "message", RMQ_MSG_OPERATION, "detail",
                                      pub->err_detail));
    return r;
}

/* One pn_message_t per thread that encodes (the workers), cleared between
 * messages: making one makes several pn_data objects each time.  Freed when
 * its thread ends (the module is never unloaded). */
static pthread_key_t message_key;
static pthread_once_t message_once = PTHREAD_ONCE_INIT;

static void message_key_free(void *m)
{
    pn_message_free(m);
}

static void message_key_make(void)
{
    if (pthread_key_create(&message_key, message_key_free) != 0)
        abort();
}

static pn_message_t *thread_message(void)
{
    pthread_once(&message_once, message_key_make);
    pn_message_t *m = pthread_getspecific(message_key);
    if (m == NULL) {
        m = pn_message();
        if (m == NULL || pthread_setspecific(message_key, m) != 0)
            abort();
    } else {
        pn_message_clear(m);
    }
    return m;
}

/* What the encoded message takes, or a little more: proton's encoder starts
 * from 256 bytes and, on each overflow, formats an error, doubles the buffer
 * and encodes everything again (three times for a 500 B body). */
static size_t encoded_size_bound(const rmq_message_spec_t *s)
{
    size_t size = 512 + s->body_len; /* header, properties, section headers */
    const char *const strs[] = {s->message_id, s->correlation_id, s->content_type, s->content_encoding,
                                s->reply_to};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        size += strs[i] != NULL ? strlen(strs[i]) : 0;
    if (s->app_props != NULL) {
        const char *k;
        json_t *v;
        json_object_foreach(s->app_props, k, v) size += strlen(k) + json_string_length(v) + 10;
    }
    return size;
}

char *rmq_message_encode(const rmq_message_spec_t *spec, size_t *len, char *err, size_t n)
{
    pn_message_t *m = thread_message();
    if (fill(m, spec, err, n) != 0)
        return NULL;
    pn_rwbytes_t buf = {encoded_size_bound(spec), NULL};
    buf.start = rmq_xmalloc(buf.size);
    ssize_t r = pn_message_encode2(m, &buf);
    if (r < 0) {
        snprintf(err, n, "cannot encode the message: %s", pn_error_text(pn_message_error(m)));
        free(buf.start);
        return NULL;
    }
    *len = (size_t)r;
    return buf.start;
}

/* ---- decoding -------------------------------------------------------------------- */

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

static int body_of(pn_message_t *m, char **out, size_t *len)
{
    pn_data_t *b = pn_message_body(m);
    pn_data_rewind(b);
    if (!pn_data_next(b)) {
        *out = rmq_xstrdup("");
        *len = 0;
        return 0;
    }
    pn_type_t t = pn_data_type(b);
    if (t == PN_BINARY || t == PN_STRING || t == PN_SYMBOL) {
        pn_bytes_t v = t == PN_BINARY ? pn_data_get_binary(b) : t == PN_STRING ? pn_data_get_string(b)
                                                                             : pn_data_get_symbol(b);
        *out = rmq_xmalloc(v.size + 1);
        memcpy(*out, v.start, v.size);
        (*out)[v.size] = '\0';
        *len = v.size;
        return 0;
    }
    if (t == PN_LIST && pn_message_is_inferred(m)) {
        size_t n = pn_data_get_list(b), total = 0;
        pn_data_enter(b);
        char *buf = rmq_xmalloc(1);
        for (size_t i = 0; i < n && pn_data_next(b); i++) {
            if (pn_data_type(b) != PN_BINARY) {
                free(buf);
                return -1;
            }
            pn_bytes_t v = pn_data_get_binary(b);
            buf = rmq_xrealloc(buf, total + v.size + 1);
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

void rmq_requeue_outcome(pn_delivery_t *pd, int failed, int format)
{
    if (!failed || format != RMQ_FORMAT_V2) {
        pn_delivery_update(pd, PN_RELEASED);
        return;
    }
    pn_disposition_set_failed(pn_delivery_local(pd), true);
    pn_delivery_update(pd, PN_MODIFIED);
}

/* An integer read as the broker may write it; -1 for anything else. */
static int64_t integer_of(pn_data_t *d)
{
    switch (pn_data_type(d)) {
    case PN_UBYTE: return pn_data_get_ubyte(d);
    case PN_USHORT: return pn_data_get_ushort(d);
    case PN_UINT: return pn_data_get_uint(d);
    case PN_ULONG: return pn_data_get_ulong(d) > INT64_MAX ? -1 : (int64_t)pn_data_get_ulong(d);
    case PN_BYTE: return pn_data_get_byte(d);
    case PN_SHORT: return pn_data_get_short(d);
    case PN_INT: return pn_data_get_int(d);
    case PN_LONG: return pn_data_get_long(d);
    default: return -1;
    }
}

/* Whether bytes (a symbol or string) are the NUL-terminated text. */
static int bytes_are(pn_bytes_t b, const char *text)
{
    return b.size == strlen(text) && memcmp(b.start, text, b.size) == 0;
}

/* The value of message annotation key, the data positioned on it (inside
 * the map: the caller reads it, then may leave it as it is); NULL without. */
static pn_data_t *annotation(pn_message_t *m, const char *key)
{
    pn_data_t *a = pn_message_annotations(m);
    pn_data_rewind(a);
    if (!pn_data_next(a) || pn_data_type(a) != PN_MAP)
        return NULL;
    size_t n = pn_data_get_map(a) / 2;
    pn_data_enter(a);
    for (size_t i = 0; i < n && pn_data_next(a); i++) {
        int found = pn_data_type(a) == PN_SYMBOL && bytes_are(pn_data_get_symbol(a), key);
        if (!pn_data_next(a))
            break;
        if (found)
            return a;
    }
    return NULL;
}

/* What a consumer reads of the message annotations, in one walk of the map:
 * x-delivery-count (RabbitMQ 4.x's count of a quorum queue message's
 * returns), a stream's x-stream-offset and x-stream-filter-value. */
static void incoming_annotations(rmq_decoded_t *dm)
{
    pn_data_t *a = pn_message_annotations(dm->m);
    pn_data_rewind(a);
    if (!pn_data_next(a) || pn_data_type(a) != PN_MAP)
        return;
    size_t n = pn_data_get_map(a) / 2;
    pn_data_enter(a);
    for (size_t i = 0; i < n && pn_data_next(a); i++) {
        pn_bytes_t key = pn_data_type(a) == PN_SYMBOL ? pn_data_get_symbol(a) : pn_bytes(0, "");
        if (!pn_data_next(a))
            break;
        if (bytes_are(key, "x-delivery-count")) {
            dm->in.delivery_count = integer_of(a);
        } else if (bytes_are(key, "x-stream-offset")) {
            dm->in.stream_offset = integer_of(a);
        } else if (bytes_are(key, "x-stream-filter-value") &&
                   (pn_data_type(a) == PN_STRING || pn_data_type(a) == PN_SYMBOL)) {
            pn_bytes_t v = pn_data_type(a) == PN_STRING ? pn_data_get_string(a) : pn_data_get_symbol(a);
            snprintf(dm->filter_value, sizeof(dm->filter_value), "%.*s", (int)v.size, v.start);
            dm->in.stream_filter_value = dm->filter_value;
        }
    }
}

/* In one x-opt-deaths entry (a map), the count when its queue is queue. */
static int64_t death_entry_count(pn_data_t *d, const char *queue)
{
    size_t n = pn_data_get_map(d) / 2;
    int64_t count = -1;
    int ours = 0;
    pn_data_enter(d);
    for (size_t i = 0; i < n && pn_data_next(d); i++) {
        pn_bytes_t key = pn_data_type(d) == PN_SYMBOL ? pn_data_get_symbol(d) : pn_bytes(0, "");
        if (!pn_data_next(d))
            break;
        if (bytes_are(key, "queue") && pn_data_type(d) == PN_STRING)
            ours = bytes_are(pn_data_get_string(d), queue);
        else if (bytes_are(key, "count"))
            count = integer_of(d);
    }
    pn_data_exit(d);
    return ours ? count : -1;
}

int64_t rmq_message_death_count(pn_message_t *m, const char *queue)
{
    pn_data_t *a = annotation(m, "x-opt-deaths");
    if (a == NULL)
        return -1;
    pn_type_t t = pn_data_type(a);
    size_t n = t == PN_ARRAY ? pn_data_get_array(a) : t == PN_LIST ? pn_data_get_list(a) : 0;
    if (n == 0 || (t == PN_ARRAY && pn_data_get_array_type(a) != PN_MAP))
        return -1;
    pn_data_enter(a);
    int64_t count = -1;
    for (size_t i = 0; i < n && count < 0 && pn_data_next(a); i++)
        if (pn_data_type(a) == PN_MAP)
            count = death_entry_count(a, queue);
    return count;
}

/* The message as the final dead-letter target gets it: what the broker
 * added on the way (message annotations: x-opt-deaths, x-exchange,
 * x-routing-key; the header's delivery count) is left out, the rest
 * (properties, application-properties, body) is the original's. */
char *rmq_message_for_final(pn_message_t *m, size_t raw_len, size_t *len, char *key, size_t key_size)
{
    key[0] = '\0';
    pn_data_t *a = annotation(m, "x-routing-key");
    if (a != NULL && (pn_data_type(a) == PN_STRING || pn_data_type(a) == PN_SYMBOL)) {
        pn_bytes_t k = pn_data_type(a) == PN_STRING ? pn_data_get_string(a) : pn_data_get_symbol(a);
        if (k.size < key_size) {
            memcpy(key, k.start, k.size);
            key[k.size] = '\0';
        }
    }
    pn_data_clear(pn_message_annotations(m));
    pn_message_set_delivery_count(m, 0);
    pn_message_set_first_acquirer(m, false);
    pn_rwbytes_t buf = {raw_len + 256, NULL};
    buf.start = rmq_xmalloc(buf.size);
    ssize_t r = pn_message_encode2(m, &buf);
    if (r < 0) {
        free(buf.start);
        return NULL;
    }
    *len = (size_t)r;
    return buf.start;
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
    cmi_nv_t *nv = rmq_xcalloc(n, sizeof(*nv));
    char *s = rmq_xmalloc(cap);
    size_t *offs = rmq_xcalloc(n * 2, sizeof(*offs));
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
            s = rmq_xrealloc(s, cap);
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

int rmq_message_decode(rmq_decoded_t *dm, pn_message_t *reuse, const char *raw, size_t len, const char **why)
{
    memset(dm, 0, sizeof(*dm));
    dm->own_m = reuse == NULL;
    dm->m = reuse != NULL ? reuse : pn_message();
    pn_message_clear(dm->m);
    if (pn_message_decode(dm->m, raw, len) != 0) {
        *why = "undecodable AMQP message";
        return -1;
    }
    size_t blen = 0;
    if (body_of(dm->m, &dm->body, &blen) != 0) {
        *why = "a body that is neither data sections nor a string or binary value";
        return -1;
    }
    id_text(pn_message_get_id(dm->m), dm->message_id, sizeof(dm->message_id));
    id_text(pn_message_get_correlation_id(dm->m), dm->correlation_id, sizeof(dm->correlation_id));
    dm->in = (rmq_incoming_t){
        .body = dm->body,
        .len = blen,
        .content_type = pn_message_get_content_type(dm->m),
        .content_encoding = pn_message_get_content_encoding(dm->m),
        .message_id = dm->message_id,
        .correlation_id = dm->correlation_id,
        .reply_to = pn_message_get_reply_to(dm->m),
        .redelivered = !pn_message_is_first_acquirer(dm->m),
        .delivery_count = -1,
        .stream_offset = -1,
    };
    incoming_annotations(dm);
    dm->in.nprops = props_of(dm->m, &dm->props, &dm->strings);
    dm->in.props = dm->props;
    return 0;
}

void rmq_decoded_dispose(rmq_decoded_t *dm)
{
    if (dm->m != NULL && dm->own_m)
        pn_message_free(dm->m);
    free(dm->body);
    free(dm->props);
    free(dm->strings);
    memset(dm, 0, sizeof(*dm));
}
