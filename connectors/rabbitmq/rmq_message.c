/* The AMQP message of a publish, encoded on the worker so that the pool's
 * thread only moves bytes.  One `data` section, never `amqp-value`: AMQP
 * 0.9.1 consumers (most RabbitMQ users) get the body bytes as they are. */
#include "config.h"

#include <proton/codec.h>
#include <proton/message.h>
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

char *rmq_message_encode(const rmq_message_spec_t *spec, size_t *len, char *err, size_t n)
{
    pn_message_t *m = pn_message();
    if (m == NULL) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    char *out = NULL;
    if (fill(m, spec, err, n) == 0) {
        pn_rwbytes_t buf = {0, NULL};
        ssize_t r = pn_message_encode2(m, &buf);
        if (r < 0) {
            snprintf(err, n, "cannot encode the message: %s", pn_error_text(pn_message_error(m)));
            free(buf.start);
        } else {
            out = buf.start;
            *len = (size_t)r;
        }
    }
    pn_message_free(m);
    return out;
}
