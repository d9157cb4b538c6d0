/* RabbitMQ 4.x declares queues, exchanges and bindings over AMQP itself:
 * "HTTP over AMQP" requests to the /management node.  A request is a
 * pre-settled message whose subject is the method, `to` the path
 * (/queues/NAME, percent-encoded), `reply-to` "$me", with an amqp-value
 * body: a map with string keys (rabbit_amqp_management.erl in RabbitMQ).
 * The answer's subject is the HTTP status and its correlation-id the
 * request's message-id.  RabbitMQ 4.x cannot run on this project's
 * machines: what goes on the wire is covered by unit tests. */
#include "config.h"

#include <proton/codec.h>
#include <proton/message.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq.h"

static void put_json(pn_data_t *d, json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        pn_data_put_map(d);
        pn_data_enter(d);
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            /* Keys are AMQP strings, not symbols: the node answers 400 to
             * symbol keys in queue and exchange properties. */
            pn_data_put_string(d, pn_bytes(strlen(k), k));
            put_json(d, v);
        }
        pn_data_exit(d);
        break;
    }
    case JSON_ARRAY: {
        pn_data_put_list(d);
        pn_data_enter(d);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) put_json(d, v);
        pn_data_exit(d);
        break;
    }
    case JSON_STRING:
        pn_data_put_string(d, pn_bytes(json_string_length(j), json_string_value(j)));
        break;
    case JSON_INTEGER:
        pn_data_put_long(d, json_integer_value(j));
        break;
    case JSON_REAL:
        pn_data_put_double(d, json_real_value(j));
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        pn_data_put_bool(d, json_is_true(j));
        break;
    default:
        pn_data_put_null(d);
        break;
    }
}

char *rmq_v2_request_encode(const rmq_declare_t *decl, const char *message_id, size_t *len, char *err, size_t n)
{
    json_error_t je;
    json_t *body = json_loads(decl->v2_body, JSON_DECODE_ANY, &je); /* a GET's body is null */
    if (body == NULL) {
        snprintf(err, n, "bad declaration body: %s", je.text);
        return NULL;
    }
    pn_message_t *m = pn_message();
    pn_message_set_subject(m, decl->method);
    pn_message_set_address(m, decl->v2_path);
    pn_message_set_reply_to(m, "$me");
    pn_atom_t id;
    memset(&id, 0, sizeof(id));
    id.type = PN_STRING;
    id.u.as_bytes = pn_bytes(strlen(message_id), message_id);
    pn_message_set_id(m, id);
    put_json(pn_message_body(m), body); /* an amqp-value section (not inferred) */
    json_decref(body);
    pn_rwbytes_t buf = {0, NULL};
    ssize_t r = pn_message_encode2(m, &buf);
    char *out = NULL;
    if (r < 0) {
        snprintf(err, n, "cannot encode the request: %s", pn_error_text(pn_message_error(m)));
        free(buf.start);
    } else {
        out = buf.start;
        *len = (size_t)r;
    }
    pn_message_free(m);
    return out;
}

int rmq_v2_response_status(const char *bytes, size_t len, char *correlation, size_t corr_size, char *detail, size_t n)
{
    pn_message_t *m = pn_message();
    int rc = -1;
    correlation[0] = '\0';
    if (pn_message_decode(m, bytes, len) != 0) {
        snprintf(detail, n, "undecodable answer from /management");
        pn_message_free(m);
        return -1;
    }
    pn_atom_t cid = pn_message_get_correlation_id(m);
    if (cid.type == PN_STRING)
        snprintf(correlation, corr_size, "%.*s", (int)cid.u.as_bytes.size, cid.u.as_bytes.start);
    const char *subject = pn_message_get_subject(m);
    int status = subject ? atoi(subject) : 0;
    if (status >= 200 && status < 300) {
        rc = 0;
        snprintf(detail, n, "%d", status);
    } else {
        rc = status >= 300 && status < 1000 ? status : -1;
        pn_data_t *body = pn_message_body(m);
        char text[300] = "";
        if (pn_data_next(body) && pn_data_type(body) == PN_STRING) {
            pn_bytes_t b = pn_data_get_string(body);
            snprintf(text, sizeof(text), "%.*s", (int)b.size, b.start);
        }
        snprintf(detail, n, "/management answered %s%s%s", subject ? subject : "no status", *text ? ": " : "", text);
    }
    pn_message_free(m);
    return rc;
}

int rmq_declare_refusal_code(long status, const char *reason)
{
    /* 3.x's API says 400 "[PRECONDITION_FAILED - ]inequivalent arg ..."
     * (3.10.8 without the prefix), 4.x's /management says 409: what the
     * broker holds conflicts with the declaration.  That is the broker's
     * refusal, as when 3.x ends a session over an attach that declares a
     * queue (701206 there too), not a bad parameter: one code for it
     * whatever the broker and the path.  So is 404, a queue that must exist
     * and does not (4.x answers an attach to it with amqp:not-found, 701206
     * too). */
    int conflict = reason != NULL && (strstr(reason, "PRECONDITION_FAILED") || strstr(reason, "inequivalent arg"));
    if (status == 409 || status == 404 || conflict)
        return RMQ_ERR_AMQP;
    return status >= 500 ? RMQ_ERR_GENERAL : RMQ_ERR_CONFIG;
}
