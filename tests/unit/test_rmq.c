/* Unit tests of the RabbitMQ connector's parts that need no socket:
 * addresses (v1 for the 3.x plugin, v2 for 4.x, percent-encoding), the
 * declaration plans for both management APIs, queue arguments, the AMQP
 * message as it goes on the wire, header filtering, the publish result,
 * and RabbitMQ 4.x's /management requests and answers (4.x cannot run
 * here: these bytes are what is tested of it). */
#include "config.h"

#include <proton/codec.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/link.h>
#include <proton/session.h>
#include <proton/message.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../connectors/rabbitmq/rmq.h"
#include "cu_main.h"

/* ---- helpers ---------------------------------------------------------------- */

/* A target spec with publishMessage's defaults. */
static rmq_target_spec_t params(void)
{
    rmq_target_spec_t p;
    memset(&p, 0, sizeof(p));
    p.queue.auto_declare = 1;
    p.exchange.auto_declare = 1;
    p.queue.type = RMQ_QUEUE_CLASSIC;
    p.exchange.type = RMQ_EXCHANGE_DIRECT;
    return p;
}

static void given(rmq_target_spec_t *p, unsigned queue_opt)
{
    rmq_target_spec_set_queue(p, queue_opt);
}

static json_t *json(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(j);
    return j;
}

static int json_equal_text(const char *got, const char *want)
{
    json_t *a = json_loads(got, 0, NULL), *b = json(want);
    int eq = a != NULL && json_equal(a, b);
    if (!eq)
        fprintf(stderr, "\n  got  %s\n  want %s\n", got, want);
    json_decref(a);
    json_decref(b);
    return eq;
}

/* ---- addresses ---------------------------------------------------------------- */

static void test_percent_encoding(void)
{
    char *s = rmq_percent_encode("a/b c%d~e.f_g-h");
    CU_ASSERT_STRING_EQUAL(s, "a%2Fb%20c%25d~e.f_g-h");
    free(s);
    s = rmq_percent_encode("caf\xc3\xa9+?#");
    CU_ASSERT_STRING_EQUAL(s, "caf%C3%A9%2B%3F%23");
    free(s);
    s = rmq_percent_encode("/");
    CU_ASSERT_STRING_EQUAL(s, "%2F");
    free(s);
}

static void test_format_from_version(void)
{
    CU_ASSERT_EQUAL(rmq_format_for_version("RabbitMQ", "3.10.8"), RMQ_FORMAT_V1);
    CU_ASSERT_EQUAL(rmq_format_for_version("RabbitMQ", "3.13.7"), RMQ_FORMAT_V1);
    CU_ASSERT_EQUAL(rmq_format_for_version("RabbitMQ", "4.0.2"), RMQ_FORMAT_V2);
    CU_ASSERT_EQUAL(rmq_format_for_version("RabbitMQ", "4.1.0"), RMQ_FORMAT_V2);
    CU_ASSERT_EQUAL(rmq_format_for_version(NULL, NULL), RMQ_FORMAT_V1);
}

static void test_plain_classic_queue(void)
{
    rmq_target_spec_t p = params();
    p.queue.name = "orders";
    given(&p, RMQ_Q_NAME);
    rmq_target_t t;
    char err[256];
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    /* 3.x declares a plain classic queue itself on attach to /queue/NAME;
     * 4.x's /queues/NAME needs it to exist: declared over /management. */
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V1), "/queue/orders");
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V2), "/queues/orders");
    CU_ASSERT_EQUAL_FATAL(t.ndeclare, 1);
    CU_ASSERT_FALSE(t.declare[0].on_v1);
    CU_ASSERT_STRING_EQUAL(t.declare[0].method, "PUT");
    CU_ASSERT_STRING_EQUAL(t.declare[0].v2_path, "/queues/orders");
    CU_ASSERT_TRUE(json_equal_text(t.declare[0].v2_body,
                                   "{\"durable\":true,\"exclusive\":false,\"auto_delete\":false,\"arguments\":{}}"));
    CU_ASSERT_STRING_EQUAL(t.describe, "queue 'orders'");
    rmq_target_dispose(&t);

    p.queue.auto_declare = 0; /* must exist: never declared, never /queue/; 4.x asks first */
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V1), "/amq/queue/orders");
    CU_ASSERT_EQUAL_FATAL(t.ndeclare, 1);
    CU_ASSERT_STRING_EQUAL(t.declare[0].method, "GET");
    CU_ASSERT_STRING_EQUAL(t.declare[0].v2_path, "/queues/orders");
    CU_ASSERT_STRING_EQUAL(t.declare[0].v2_body, "null");
    CU_ASSERT_FALSE(t.declare[0].on_v1);
    size_t len;
    char *req = rmq_v2_request_encode(&t.declare[0], "req-1", &len, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(req); /* a GET carries a null body */
    pn_message_t *m = pn_message();
    CU_ASSERT_EQUAL(pn_message_decode(m, req, len), 0);
    CU_ASSERT_STRING_EQUAL(pn_message_get_subject(m), "GET");
    pn_message_free(m);
    /* the last section: amqp-value (0x77) null (0x40); proton's decoder drops it */
    CU_ASSERT_TRUE(len >= 4 && memcmp(req + len - 4, "\x00\x53\x77\x40", 4) == 0);
    free(req);
    CU_ASSERT_PTR_NOT_NULL(t.key);
    /* A consumer's queue that must exist is asked for on 3.x too (a
     * receiver on a missing queue costs 3.x's whole session): another key. */
    char *key = strdup(t.key);
    rmq_target_ask_on_v1(&t);
    CU_ASSERT_TRUE(t.declare[0].on_v1);
    CU_ASSERT_STRING_NOT_EQUAL(t.key, key);
    free(key);
    rmq_target_dispose(&t);
}

/* A queue given nothing but its name gets MI's documented default type,
 * QUORUM, only when it is missing (asked first on both APIs); a type or an
 * argument given makes it an ordinary declaration; a priority on a queue
 * that is not classic is refused before anything reaches the broker. */
static void test_default_type_declared_if_missing(void)
{
    rmq_target_spec_t p = params();
    p.queue.name = "orders";
    p.queue.type = RMQ_QUEUE_QUORUM; /* the parameter's default */
    given(&p, RMQ_Q_NAME);
    rmq_target_t t;
    char err[256];
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V1), "/amq/queue/orders");
    CU_ASSERT_EQUAL_FATAL(t.ndeclare, 2);
    CU_ASSERT_TRUE(strcmp(t.declare[0].method, "GET") == 0 && t.declare[0].if_missing && t.declare[0].on_v1);
    CU_ASSERT_TRUE(strcmp(t.declare[1].method, "PUT") == 0 && t.declare[1].on_v1);
    CU_ASSERT_TRUE(json_equal_text(t.declare[1].v2_body, "{\"durable\":true,\"exclusive\":false,\"auto_delete\":false,"
                                   "\"arguments\":{\"x-queue-type\":\"quorum\"}}"));
    rmq_target_dispose(&t);
    rmq_target_spec_t typed = p; /* QUORUM written out: declared as asked */
    given(&typed, RMQ_Q_TYPE);
    CU_ASSERT_FATAL(rmq_target_build(&t, &typed, "/", err, sizeof(err)) == 0);
    CU_ASSERT_TRUE(t.ndeclare == 1 && strcmp(t.declare[0].method, "PUT") == 0);
    rmq_target_dispose(&t);
    rmq_target_spec_t limited = p; /* an argument: declared with it */
    limited.queue.delivery_limit = 5;
    given(&limited, RMQ_Q_DELIVERY_LIMIT);
    CU_ASSERT_FATAL(rmq_target_build(&t, &limited, "/", err, sizeof(err)) == 0);
    CU_ASSERT_TRUE(t.ndeclare == 1 && strcmp(t.declare[0].method, "PUT") == 0);
    rmq_target_dispose(&t);
    rmq_target_spec_t priority = p;
    priority.queue.max_priority = 5;
    given(&priority, RMQ_Q_MAX_PRIORITY);
    CU_ASSERT_EQUAL(rmq_target_build(&t, &priority, "/", err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "give its type as CLASSIC"));
    priority.queue.type = RMQ_QUEUE_CLASSIC;
    CU_ASSERT_FATAL(rmq_target_build(&t, &priority, "/", err, sizeof(err)) == 0);
    rmq_target_dispose(&t);
}

/* MI's reply queue: asked for on both APIs, declared only when missing. */
static void test_queue_declared_if_missing(void)
{
    rmq_target_spec_t p = params();
    p.queue.name = "order-reply";
    p.queue.type = RMQ_QUEUE_QUORUM;
    p.queue.auto_declare = RMQ_DECLARE_IF_MISSING;
    given(&p, RMQ_Q_NAME);
    rmq_target_t t;
    char err[256];
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V1), "/amq/queue/order-reply");
    CU_ASSERT_EQUAL_FATAL(t.ndeclare, 2);
    CU_ASSERT_STRING_EQUAL(t.declare[0].method, "GET");
    CU_ASSERT_TRUE(t.declare[0].if_missing && t.declare[0].on_v1);
    CU_ASSERT_STRING_EQUAL(t.declare[0].http_path, "/api/queues/%2F/order-reply");
    CU_ASSERT_STRING_EQUAL(t.declare[1].method, "PUT");
    CU_ASSERT_TRUE(!t.declare[1].if_missing && t.declare[1].on_v1);
    CU_ASSERT_TRUE(json_equal_text(t.declare[1].v2_body, "{\"durable\":true,\"exclusive\":false,\"auto_delete\":false,"
                                   "\"arguments\":{\"x-queue-type\":\"quorum\"}}"));
    CU_ASSERT_PTR_NULL(t.declare[1].v1_refusal);
    rmq_target_t copy;
    rmq_target_copy(&copy, &t);
    CU_ASSERT_TRUE(copy.declare[0].if_missing);
    rmq_target_dispose(&copy);
    rmq_target_dispose(&t);
    /* An exclusive queue: 3.x's HTTP API would make something else of it. */
    p.queue.exclusive = 1;
    given(&p, RMQ_Q_EXCLUSIVE);
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_PTR_NOT_NULL(t.declare[1].v1_refusal);
    rmq_target_copy(&copy, &t);
    CU_ASSERT_PTR_NOT_NULL(copy.declare[1].v1_refusal);
    rmq_target_dispose(&copy);
    rmq_target_dispose(&t);
}

static void test_quorum_queue_with_arguments(void)
{
    rmq_target_spec_t p = params();
    p.queue.name = "jobs/eu";
    p.queue.type = RMQ_QUEUE_QUORUM;
    p.queue.delivery_limit = 5;
    p.queue.initial_member_count = 3;
    p.queue.overflow = RMQ_OVERFLOW_REJECT_PUBLISH;
    p.queue.arguments = "x-max-length=10, x-single-active-consumer=true, x-note=a b, x-ratio=0.5";
    given(&p, RMQ_Q_NAME);
    given(&p, RMQ_Q_DELIVERY_LIMIT);
    given(&p, RMQ_Q_INITIAL_MEMBER_COUNT);
    given(&p, RMQ_Q_OVERFLOW);
    given(&p, RMQ_Q_ARGUMENTS);
    rmq_target_t t;
    char err[256];
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "prod/eu", err, sizeof(err)) == 0);
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V1), "/amq/queue/jobs/eu");
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V2), "/queues/jobs%2Feu");
    CU_ASSERT_EQUAL_FATAL(t.ndeclare, 1);
    CU_ASSERT_TRUE(t.declare[0].on_v1);
    CU_ASSERT_STRING_EQUAL(t.declare[0].http_path, "/api/queues/prod%2Feu/jobs%2Feu");
    CU_ASSERT_TRUE(json_equal_text(
        t.declare[0].http_body,
        "{\"durable\":true,\"exclusive\":false,\"auto_delete\":false,\"arguments\":{\"x-queue-type\":\"quorum\","
        "\"x-delivery-limit\":5,\"x-quorum-initial-group-size\":3,\"x-overflow\":\"reject-publish\","
        "\"x-max-length\":10,\"x-single-active-consumer\":true,\"x-note\":\"a b\",\"x-ratio\":0.5}}"));
    CU_ASSERT_PTR_NOT_NULL(t.key);
    rmq_target_dispose(&t);
}

static void test_classic_version_and_stream_members(void)
{
    /* rabbitmq.classic.version: x-queue-version, only when given; a
     * stream's member count is its x-initial-cluster-size. */
    rmq_target_spec_t p = params();
    p.queue.name = "cq";
    p.queue.classic_version = RMQ_CLASSIC_V1;
    given(&p, RMQ_Q_NAME);
    given(&p, RMQ_Q_CLASSIC_VERSION);
    rmq_target_t t;
    char err[256];
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_EQUAL_FATAL(t.ndeclare, 1);
    CU_ASSERT_TRUE(t.declare[0].on_v1); /* an argument: the management API declares it on 3.x */
    CU_ASSERT_TRUE(json_equal_text(t.declare[0].http_body, "{\"durable\":true,\"exclusive\":false,\"auto_delete\":"
                                                           "false,\"arguments\":{\"x-queue-version\":1}}"));
    rmq_target_dispose(&t);

    p = params();
    p.queue.name = "s";
    p.queue.type = RMQ_QUEUE_STREAM;
    p.queue.initial_member_count = 3;
    given(&p, RMQ_Q_NAME);
    given(&p, RMQ_Q_INITIAL_MEMBER_COUNT);
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_EQUAL_FATAL(t.ndeclare, 1);
    CU_ASSERT_TRUE(json_equal_text(t.declare[0].http_body, "{\"durable\":true,\"exclusive\":false,\"auto_delete\":"
                                                           "false,\"arguments\":{\"x-queue-type\":\"stream\","
                                                           "\"x-initial-cluster-size\":3}}"));
    rmq_target_dispose(&t);
}

static void test_exchange_targets(void)
{
    rmq_target_spec_t p = params();
    p.exchange.name = "orders.topic";
    p.exchange.type = RMQ_EXCHANGE_TOPIC;
    p.exchange.routing_key = "eu/de.new";
    rmq_target_t t;
    char err[256];
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V1), "/exchange/orders.topic/eu/de.new");
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V2), "/exchanges/orders.topic/eu%2Fde.new");
    CU_ASSERT_EQUAL_FATAL(t.ndeclare, 1);
    CU_ASSERT_STRING_EQUAL(t.declare[0].http_path, "/api/exchanges/%2F/orders.topic");
    CU_ASSERT_TRUE(json_equal_text(t.declare[0].v2_body, "{\"type\":\"topic\",\"durable\":true,\"auto_delete\":false,"
                                                         "\"internal\":false,\"arguments\":{}}"));
    rmq_target_dispose(&t);

    /* amq.* exchanges exist: never declared.  No key: /exchanges/X. */
    p.exchange.name = "amq.fanout";
    p.exchange.routing_key = NULL;
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_EQUAL(t.ndeclare, 0);
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V2), "/exchanges/amq.fanout");
    rmq_target_dispose(&t);

    /* One that must exist is not asked for: 4.0.5's /management cannot. */
    p.exchange.name = "given elsewhere";
    p.exchange.auto_declare = 0;
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_EQUAL(t.ndeclare, 0);
    rmq_target_dispose(&t);
}

static void test_queue_bound_to_exchange(void)
{
    rmq_target_spec_t p = params();
    p.exchange.name = "hdrs";
    p.exchange.type = RMQ_EXCHANGE_HEADERS;
    p.queue.name = "q";
    p.exchange.routing_key = "k";
    p.exchange.header_arguments = "x-match=all,region=eu";
    given(&p, RMQ_Q_NAME);
    rmq_target_t t;
    char err[256];
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    /* Declare and bind, publish to the queue (as MI). */
    CU_ASSERT_EQUAL_FATAL(t.ndeclare, 3);
    CU_ASSERT_STRING_EQUAL(t.declare[0].http_path, "/api/exchanges/%2F/hdrs");
    CU_ASSERT_STRING_EQUAL(t.declare[1].http_path, "/api/queues/%2F/q");
    CU_ASSERT_TRUE(t.declare[1].on_v1);
    CU_ASSERT_STRING_EQUAL(t.declare[2].method, "POST");
    CU_ASSERT_STRING_EQUAL(t.declare[2].http_path, "/api/bindings/%2F/e/hdrs/q/q");
    CU_ASSERT_TRUE(json_equal_text(t.declare[2].http_body,
                                   "{\"routing_key\":\"k\",\"arguments\":{\"x-match\":\"all\",\"region\":\"eu\"}}"));
    CU_ASSERT_STRING_EQUAL(t.declare[2].v2_path, "/bindings");
    CU_ASSERT_TRUE(json_equal_text(t.declare[2].v2_body,
                                   "{\"source\":\"hdrs\",\"destination_queue\":\"q\",\"binding_key\":\"k\","
                                   "\"arguments\":{\"x-match\":\"all\",\"region\":\"eu\"}}"));
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V1), "/amq/queue/q");
    rmq_target_dispose(&t);
}

static void test_raw_address_and_errors(void)
{
    rmq_target_spec_t p = params();
    p.queue.name = "/amq/queue/replies-1";
    rmq_target_t t;
    char err[256];
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V1), "/amq/queue/replies-1");
    CU_ASSERT_STRING_EQUAL(rmq_target_address(&t, RMQ_FORMAT_V2), "/amq/queue/replies-1");
    CU_ASSERT_EQUAL(t.ndeclare, 0);
    rmq_target_dispose(&t);

    p = params();
    CU_ASSERT_EQUAL(rmq_target_build(&t, &p, "/", err, sizeof(err)), -1);
    CU_ASSERT_STRING_EQUAL(err, "give a queue or an exchange to publish to");

    p.queue.name = "q";
    p.queue.arguments = "x-max-length";
    given(&p, RMQ_Q_ARGUMENTS);
    CU_ASSERT_EQUAL(rmq_target_build(&t, &p, "/", err, sizeof(err)), -1);
    CU_ASSERT_STRING_EQUAL(err, "queueArguments: 'x-max-length' is not key=value");
}

/* ---- messages ---------------------------------------------------------------------- */

static void test_header_filter(void)
{
    static const char *const never[] = {"Authorization", "proxy-authorization", "COOKIE", "Set-Cookie",
                                        "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Upgrade", "Host",
                                        "Content-Length"};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        CU_ASSERT_TRUE(rmq_header_is_filtered(never[i], strlen(never[i])));
    CU_ASSERT_FALSE(rmq_header_is_filtered("X-Request-Id", 12));
    CU_ASSERT_FALSE(rmq_header_is_filtered("Content-Type", 12));
    CU_ASSERT_FALSE(rmq_header_is_filtered("Hostname", 8));
}

static pn_message_t *decode(const char *bytes, size_t len)
{
    pn_message_t *m = pn_message();
    CU_ASSERT_EQUAL(pn_message_decode(m, bytes, len), 0);
    return m;
}

static void test_message_on_the_wire(void)
{
    json_t *props = json("{\"X-Request-Id\":\"r1\",\"x-source\":\"cmi\"}");
    rmq_message_spec_t s = {.body = "{\"a\":1}", .body_len = 7, .content_type = "application/json",
                            .content_encoding = "UTF-8", .message_id = "urn:uuid:1", .correlation_id = "c-9",
                            .reply_to = "/queue/replies", .priority = 7, .ttl_ms = 60000, .app_props = props};
    size_t len = 0;
    char err[256];
    char *bytes = rmq_message_encode(&s, &len, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    /* The body is one data section (0x75), never an amqp-value (0x77):
     * AMQP 0.9.1 consumers get the bytes as they are. */
    int data_section = 0, value_section = 0;
    for (size_t i = 0; i + 2 < len; i++) {
        data_section |= bytes[i] == 0x00 && bytes[i + 1] == 0x53 && bytes[i + 2] == 0x75;
        value_section |= bytes[i] == 0x00 && bytes[i + 1] == 0x53 && bytes[i + 2] == 0x77;
    }
    CU_ASSERT_TRUE(data_section);
    CU_ASSERT_FALSE(value_section);
    pn_message_t *m = decode(bytes, len);
    CU_ASSERT_TRUE(pn_message_is_durable(m));
    CU_ASSERT_EQUAL(pn_message_get_priority(m), 7);
    CU_ASSERT_EQUAL(pn_message_get_ttl(m), 60000);
    CU_ASSERT_STRING_EQUAL(pn_message_get_content_type(m), "application/json");
    CU_ASSERT_STRING_EQUAL(pn_message_get_content_encoding(m), "UTF-8");
    CU_ASSERT_STRING_EQUAL(pn_message_get_reply_to(m), "/queue/replies");
    pn_atom_t id = pn_message_get_id(m), cid = pn_message_get_correlation_id(m);
    CU_ASSERT_EQUAL(id.type, PN_STRING);
    CU_ASSERT_EQUAL(id.u.as_bytes.size, 10);
    CU_ASSERT_EQUAL(memcmp(id.u.as_bytes.start, "urn:uuid:1", 10), 0);
    CU_ASSERT_EQUAL(cid.u.as_bytes.size, 3);
    pn_data_t *body = pn_message_body(m);
    pn_data_rewind(body);
    CU_ASSERT_TRUE(pn_data_next(body));
    CU_ASSERT_EQUAL(pn_data_type(body), PN_BINARY);
    pn_bytes_t b = pn_data_get_binary(body);
    CU_ASSERT_EQUAL(b.size, 7);
    CU_ASSERT_EQUAL(memcmp(b.start, "{\"a\":1}", 7), 0);
    pn_data_t *ap = pn_message_properties(m);
    pn_data_rewind(ap);
    CU_ASSERT_TRUE(pn_data_next(ap));
    CU_ASSERT_EQUAL(pn_data_type(ap), PN_MAP);
    CU_ASSERT_EQUAL(pn_data_get_map(ap), 4);
    pn_message_free(m);
    free(bytes);
    json_decref(props);

    /* The smallest message: an empty body, no optional fields. */
    rmq_message_spec_t e = {.priority = -1};
    bytes = rmq_message_encode(&e, &len, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    m = decode(bytes, len);
    CU_ASSERT_PTR_NULL(pn_message_get_content_type(m));
    pn_message_free(m);
    free(bytes);
}

/* What a receiver gets: the engine's encoder's bytes decode to the same
 * fields; bodies that are not data, string or binary are refused. */
/* RabbitMQ 4.x's count of a quorum queue message's returns, a message
 * annotation (uint as the broker writes it, or another integer type). */
static void test_delivery_count_annotation(void)
{
    pn_message_t *m = pn_message();
    pn_data_put_binary(pn_message_body(m), pn_bytes(2, "hi"));
    pn_data_t *a = pn_message_annotations(m);
    pn_data_put_map(a);
    pn_data_enter(a);
    pn_data_put_symbol(a, pn_bytes(10, "x-exchange"));
    pn_data_put_string(a, pn_bytes(0, ""));
    pn_data_put_symbol(a, pn_bytes(16, "x-delivery-count"));
    pn_data_put_ulong(a, 3);
    pn_data_exit(a);
    char buf[256];
    size_t n = sizeof(buf);
    CU_ASSERT_EQUAL_FATAL(pn_message_encode(m, buf, &n), 0);
    pn_message_free(m);
    rmq_decoded_t dm;
    const char *why = NULL;
    CU_ASSERT_EQUAL_FATAL(rmq_message_decode(&dm, NULL, buf, n, &why), 0);
    CU_ASSERT_EQUAL(dm.in.delivery_count, 3);
    rmq_decoded_dispose(&dm);
}

static void put_death(pn_data_t *a, const char *queue, uint64_t count)
{
    pn_data_put_map(a);
    pn_data_enter(a);
    pn_data_put_symbol(a, pn_bytes(5, "queue"));
    pn_data_put_string(a, pn_bytes(strlen(queue), queue));
    pn_data_put_symbol(a, pn_bytes(6, "reason"));
    pn_data_put_symbol(a, pn_bytes(8, "rejected"));
    pn_data_put_symbol(a, pn_bytes(5, "count"));
    pn_data_put_ulong(a, count);
    pn_data_exit(a);
}

/* RabbitMQ 4.x's dead-letter history (x-opt-deaths, an array of maps, most
 * recent first): the count of the entry for the consumed queue. */
static void test_death_count(void)
{
    pn_message_t *m = pn_message();
    CU_ASSERT_EQUAL(rmq_message_death_count(m, "enrollment"), -1);
    pn_data_t *a = pn_message_annotations(m);
    pn_data_put_map(a);
    pn_data_enter(a);
    pn_data_put_symbol(a, pn_bytes(12, "x-opt-deaths"));
    pn_data_put_array(a, false, PN_MAP);
    pn_data_enter(a);
    put_death(a, "enrollment-error", 7);
    put_death(a, "enrollment", 2);
    pn_data_exit(a);
    pn_data_exit(a);
    char buf[512];
    size_t n = sizeof(buf);
    CU_ASSERT_EQUAL_FATAL(pn_message_encode(m, buf, &n), 0);
    pn_message_t *got = pn_message();
    CU_ASSERT_EQUAL_FATAL(pn_message_decode(got, buf, n), 0);
    CU_ASSERT_EQUAL(rmq_message_death_count(got, "enrollment"), 2);
    CU_ASSERT_EQUAL(rmq_message_death_count(got, "enrollment-error"), 7);
    CU_ASSERT_EQUAL(rmq_message_death_count(got, "enroll"), -1);
    pn_message_free(got);
    pn_message_free(m);
}

/* The copy for the final dead-letter target: the broker's annotations
 * (x-opt-deaths, x-routing-key) and delivery count left out, the routing
 * key read first, the rest the original's. */
static void test_message_for_final(void)
{
    pn_message_t *m = pn_message();
    pn_message_set_id(m, (pn_atom_t){.type = PN_STRING, .u.as_bytes = pn_bytes(3, "m-1")});
    pn_message_set_delivery_count(m, 4);
    pn_data_t *a = pn_message_annotations(m);
    pn_data_put_map(a);
    pn_data_enter(a);
    pn_data_put_symbol(a, pn_bytes(13, "x-routing-key"));
    pn_data_put_string(a, pn_bytes(10, "enrollment"));
    pn_data_put_symbol(a, pn_bytes(12, "x-opt-deaths"));
    pn_data_put_array(a, false, PN_MAP);
    pn_data_enter(a);
    put_death(a, "enrollment", 3);
    pn_data_exit(a);
    pn_data_exit(a);
    pn_data_put_binary(pn_message_body(m), pn_bytes(5, "hello"));
    char key[64];
    size_t len = 0;
    char *bytes = rmq_message_for_final(m, 64, &len, key, sizeof(key));
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    CU_ASSERT_STRING_EQUAL(key, "enrollment");
    rmq_decoded_t dm;
    const char *why = NULL;
    CU_ASSERT_EQUAL_FATAL(rmq_message_decode(&dm, NULL, bytes, len, &why), 0);
    CU_ASSERT_EQUAL(rmq_message_death_count(dm.m, "enrollment"), -1);
    CU_ASSERT_EQUAL(pn_message_get_delivery_count(dm.m), 0);
    CU_ASSERT_STRING_EQUAL(dm.in.message_id, "m-1");
    CU_ASSERT_EQUAL(dm.in.len, 5);
    CU_ASSERT_NSTRING_EQUAL(dm.in.body, "hello", 5);
    rmq_decoded_dispose(&dm);
    free(bytes);
    /* Without a routing key annotation: "". */
    pn_data_clear(pn_message_annotations(m));
    bytes = rmq_message_for_final(m, 64, &len, key, sizeof(key));
    CU_ASSERT_PTR_NOT_NULL(bytes);
    CU_ASSERT_STRING_EQUAL(key, "");
    free(bytes);
    pn_message_free(m);
}

/* A stream consumer's offset file: none at first, saved and read back,
 * replaced whole, a file that holds no offset said so. */
static void test_offset_store(void)
{
    char dir[] = "/tmp/cmi-offsets-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    setenv("CMI_STATE_DIRECTORY", dir, 1);
    char err[512];
    rmq_offset_store_t *s = rmq_offset_store_open("In/1", "orders stream", err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    char want[600];
    snprintf(want, sizeof(want), "%s/rabbitmq/In%%2F1@orders%%20stream.offset", dir);
    CU_ASSERT_STRING_EQUAL(rmq_offset_store_path(s), want);
    int64_t off = -1;
    CU_ASSERT_EQUAL(rmq_offset_store_load(s, &off, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(rmq_offset_store_save(s, 41, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(rmq_offset_store_save(s, 4242, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(rmq_offset_store_load(s, &off, err, sizeof(err)), 1);
    CU_ASSERT_EQUAL(off, 4242);
    FILE *f = fopen(want, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("forty\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(rmq_offset_store_load(s, &off, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not hold an offset"));
    unlink(want);
    rmq_offset_store_close(s);
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/rabbitmq", dir);
    rmdir(sub);
    rmdir(dir);
    unsetenv("CMI_STATE_DIRECTORY");
}

/* MI's throttling with clocks of the test's own: FIXED_INTERVAL one every
 * unit/count; BATCH count per window, a window ending at the next minute,
 * hour or midnight (local time: UTC here). */
static void test_throttle(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    const int64_t wall = 1796292050000LL; /* 2026-12-03T10:00:50Z */
    rmq_throttle_t t = {0};
    CU_ASSERT_EQUAL(rmq_throttle_allowance(&t, 0, wall), INT64_MAX); /* not enabled */
    CU_ASSERT_EQUAL(rmq_throttle_next(&t), 0);

    rmq_throttle_init(&t, RMQ_THROTTLE_FIXED_INTERVAL, RMQ_THROTTLE_MINUTE, 120);
    CU_ASSERT_EQUAL(rmq_throttle_allowance(&t, 1000, wall), 1);
    rmq_throttle_take(&t, 1000);
    CU_ASSERT_EQUAL(rmq_throttle_allowance(&t, 1499, wall), 0);
    CU_ASSERT_EQUAL(rmq_throttle_next(&t), 1500);
    CU_ASSERT_EQUAL(rmq_throttle_allowance(&t, 1500, wall), 1);

    rmq_throttle_init(&t, RMQ_THROTTLE_BATCH, RMQ_THROTTLE_MINUTE, 3);
    CU_ASSERT_EQUAL(rmq_throttle_allowance(&t, 0, wall), 3);
    CU_ASSERT_EQUAL(rmq_throttle_next(&t), 10000); /* the minute ends in 10 s */
    for (int i = 0; i < 3; i++)
        rmq_throttle_take(&t, i);
    CU_ASSERT_EQUAL(rmq_throttle_allowance(&t, 9999, wall + 9999), 0);
    CU_ASSERT_EQUAL(rmq_throttle_allowance(&t, 10000, wall + 10000), 3); /* the next minute */
    CU_ASSERT_EQUAL(rmq_throttle_next(&t), 70000);

    rmq_throttle_init(&t, RMQ_THROTTLE_BATCH, RMQ_THROTTLE_HOUR, 10);
    rmq_throttle_allowance(&t, 0, wall);
    CU_ASSERT_EQUAL(rmq_throttle_next(&t), 3600000 - 50000);
    rmq_throttle_init(&t, RMQ_THROTTLE_BATCH, RMQ_THROTTLE_DAY, 10);
    rmq_throttle_allowance(&t, 0, wall);
    CU_ASSERT_EQUAL(rmq_throttle_next(&t), (24 - 10) * 3600000LL - 50000);
}

/* A flow's requeue is `modified` + delivery-failed on 4.x, `released` on
 * 3.x; a message cmi gives back unjudged is `released` on both. */
static void test_requeue_outcome(void)
{
    pn_connection_t *c = pn_connection();
    pn_link_t *l = pn_receiver(pn_session(c), "r");
    struct { int failed, format; uint64_t state; } cases[] = {
        {1, RMQ_FORMAT_V2, PN_MODIFIED}, {1, RMQ_FORMAT_V1, PN_RELEASED},
        {0, RMQ_FORMAT_V2, PN_RELEASED}, {0, RMQ_FORMAT_V1, PN_RELEASED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char tag[8];
        snprintf(tag, sizeof(tag), "t%zu", i);
        pn_delivery_t *d = pn_delivery(l, pn_dtag(tag, strlen(tag)));
        rmq_requeue_outcome(d, cases[i].failed, cases[i].format);
        CU_ASSERT_EQUAL(pn_delivery_local_state(d), cases[i].state);
        CU_ASSERT_EQUAL(pn_disposition_is_failed(pn_delivery_local(d)), cases[i].state == PN_MODIFIED);
        CU_ASSERT_FALSE(pn_disposition_is_undeliverable(pn_delivery_local(d)));
    }
    pn_connection_free(c);
}

static void test_message_decoded(void)
{
    json_t *props = json_pack("{s:s, s:s}", "x-region", "eu", "x-n", "7");
    rmq_message_spec_t s = {.body = "{\"a\":1}", .body_len = 7, .content_type = "application/json",
                            .content_encoding = "UTF-8", .message_id = "id-1", .correlation_id = "corr-1",
                            .reply_to = "/queues/r", .priority = -1, .app_props = props};
    size_t len = 0;
    char err[256];
    char *bytes = rmq_message_encode(&s, &len, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    rmq_decoded_t dm;
    const char *why = NULL;
    CU_ASSERT_EQUAL_FATAL(rmq_message_decode(&dm, NULL, bytes, len, &why), 0);
    CU_ASSERT_EQUAL(dm.in.len, 7);
    CU_ASSERT_EQUAL(memcmp(dm.in.body, "{\"a\":1}", 7), 0);
    CU_ASSERT_STRING_EQUAL(dm.in.content_type, "application/json");
    CU_ASSERT_STRING_EQUAL(dm.in.content_encoding, "UTF-8");
    CU_ASSERT_STRING_EQUAL(dm.in.message_id, "id-1");
    CU_ASSERT_STRING_EQUAL(dm.in.correlation_id, "corr-1");
    CU_ASSERT_STRING_EQUAL(dm.in.reply_to, "/queues/r");
    CU_ASSERT_EQUAL_FATAL(dm.in.nprops, 2);
    int region = 0;
    for (size_t i = 0; i < dm.in.nprops; i++)
        region |= strcmp(dm.in.props[i].name, "x-region") == 0 && strcmp(dm.in.props[i].value, "eu") == 0;
    CU_ASSERT_TRUE(region);
    CU_ASSERT_EQUAL(dm.in.delivery_count, -1); /* no annotation */
    rmq_decoded_dispose(&dm);
    free(bytes);
    json_decref(props);

    /* An amqp-value that is a number: nothing to mediate. */
    pn_message_t *m = pn_message();
    pn_data_put_int(pn_message_body(m), 42);
    char buf[256];
    size_t n = sizeof(buf);
    CU_ASSERT_EQUAL_FATAL(pn_message_encode(m, buf, &n), 0);
    pn_message_free(m);
    CU_ASSERT_EQUAL(rmq_message_decode(&dm, NULL, buf, n, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "neither data sections"));
    rmq_decoded_dispose(&dm);
    /* Bytes that are no AMQP message: a data section longer than the bytes. */
    CU_ASSERT_EQUAL(rmq_message_decode(&dm, NULL, "\x00\x53\x75\xb0\x7f\xff\xff\xff", 8, &why), -1);
    CU_ASSERT_PTR_NOT_NULL(why);
    rmq_decoded_dispose(&dm);
}

static void test_publish_result(void)
{
    rmq_pub_t pub;
    memset(&pub, 0, sizeof(pub));
    pub.message_id = "urn:uuid:7";
    pub.outcome = RMQ_OUT_ACCEPTED;
    json_t *r = rmq_publish_result(&pub);
    char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    CU_ASSERT_STRING_EQUAL(s, "{\"messageId\":\"urn:uuid:7\",\"success\":\"true\"}");
    free(s);
    json_decref(r);
    /* A clean "no" from the broker: success "false", 701203, and the flow
     * goes on (MI's shape; on 3.10 a full reject-publish queue drops the
     * connection instead, which the integration tests cover). */
    static const int outcomes[] = {RMQ_OUT_REJECTED, RMQ_OUT_RELEASED, RMQ_OUT_MODIFIED};
    for (int i = 0; i < 3; i++) {
        pub.outcome = outcomes[i];
        snprintf(pub.err_detail, sizeof(pub.err_detail), "queue 'q': the broker answered rejected");
        r = rmq_publish_result(&pub);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "success")), "false");
        json_t *e = json_object_get(r, "error");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "code")), "701203");
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "message")), "RABBITMQ:OPERATION_ERROR");
        CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(e, "detail")), "rejected"));
        json_decref(r);
    }
}

/* ---- RabbitMQ 4.x /management ----------------------------------------------------------- */

static void test_v2_request(void)
{
    rmq_target_spec_t p = params();
    p.queue.name = "q 1";
    p.queue.type = RMQ_QUEUE_QUORUM;
    given(&p, RMQ_Q_NAME);
    given(&p, RMQ_Q_TYPE);
    rmq_target_t t;
    char err[256];
    CU_ASSERT_FATAL(rmq_target_build(&t, &p, "/", err, sizeof(err)) == 0);
    size_t len;
    char *bytes = rmq_v2_request_encode(&t.declare[0], "req-1", &len, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    pn_message_t *m = decode(bytes, len);
    CU_ASSERT_STRING_EQUAL(pn_message_get_subject(m), "PUT");
    CU_ASSERT_STRING_EQUAL(pn_message_get_address(m), "/queues/q%201");
    CU_ASSERT_STRING_EQUAL(pn_message_get_reply_to(m), "$me");
    pn_atom_t id = pn_message_get_id(m);
    CU_ASSERT_EQUAL(id.type, PN_STRING);
    CU_ASSERT_EQUAL(memcmp(id.u.as_bytes.start, "req-1", 5), 0);
    /* The body: an amqp-value map with string keys (not symbols). */
    pn_data_t *body = pn_message_body(m);
    pn_data_rewind(body);
    CU_ASSERT_TRUE_FATAL(pn_data_next(body));
    CU_ASSERT_EQUAL_FATAL(pn_data_type(body), PN_MAP);
    size_t n = pn_data_get_map(body);
    CU_ASSERT_EQUAL(n, 8);
    pn_data_enter(body);
    int saw_type = 0, saw_durable = 0;
    for (size_t i = 0; i < n; i += 2) {
        CU_ASSERT_TRUE(pn_data_next(body));
        CU_ASSERT_EQUAL(pn_data_type(body), PN_STRING);
        pn_bytes_t k = pn_data_get_string(body);
        CU_ASSERT_TRUE(pn_data_next(body));
        if (k.size == 7 && memcmp(k.start, "durable", 7) == 0) {
            saw_durable = pn_data_type(body) == PN_BOOL && pn_data_get_bool(body);
        } else if (k.size == 9 && memcmp(k.start, "arguments", 9) == 0) {
            CU_ASSERT_EQUAL(pn_data_type(body), PN_MAP);
            pn_data_enter(body);
            pn_data_next(body);
            pn_bytes_t ak = pn_data_get_string(body);
            pn_data_next(body);
            pn_bytes_t av = pn_data_get_string(body);
            saw_type = ak.size == 12 && memcmp(ak.start, "x-queue-type", 12) == 0 && av.size == 6 &&
                       memcmp(av.start, "quorum", 6) == 0;
            pn_data_exit(body);
        }
    }
    pn_data_exit(body);
    CU_ASSERT_TRUE(saw_durable);
    CU_ASSERT_TRUE(saw_type);
    pn_message_free(m);
    free(bytes);
    rmq_target_dispose(&t);
}

static char *response(const char *status, const char *correlation, const char *text, size_t *len)
{
    pn_message_t *m = pn_message();
    pn_message_set_subject(m, status);
    pn_atom_t cid;
    memset(&cid, 0, sizeof(cid));
    cid.type = PN_STRING;
    cid.u.as_bytes = pn_bytes(strlen(correlation), correlation);
    pn_message_set_correlation_id(m, cid);
    pn_data_t *body = pn_message_body(m);
    if (text != NULL)
        pn_data_put_string(body, pn_bytes(strlen(text), text));
    else
        pn_data_put_null(body);
    pn_rwbytes_t buf = {0, NULL};
    ssize_t r = pn_message_encode2(m, &buf);
    pn_message_free(m);
    *len = (size_t)r;
    return buf.start;
}

static void test_v2_response(void)
{
    size_t len;
    char corr[64], detail[256];
    char *b = response("201", "req-1", NULL, &len);
    CU_ASSERT_EQUAL(rmq_v2_response_status(b, len, corr, sizeof(corr), detail, sizeof(detail)), 0);
    CU_ASSERT_STRING_EQUAL(corr, "req-1");
    free(b);
    b = response("409", "req-2", "inequivalent arg 'x-queue-type'", &len);
    CU_ASSERT_EQUAL(rmq_v2_response_status(b, len, corr, sizeof(corr), detail, sizeof(detail)), 409);
    CU_ASSERT_STRING_EQUAL(corr, "req-2");
    CU_ASSERT_STRING_EQUAL(detail, "/management answered 409: inequivalent arg 'x-queue-type'");
    free(b);
    CU_ASSERT_EQUAL(rmq_v2_response_status("\x01\x02", 2, corr, sizeof(corr), detail, sizeof(detail)), -1);
}

/* A conflict with what the broker holds is one code on 3.x (HTTP API: 400
 * PRECONDITION_FAILED) and 4.x (/management: 409); other refusals keep theirs. */
static void test_declare_refusal_code(void)
{
    CU_ASSERT_EQUAL(rmq_declare_refusal_code(409, "inequivalent arg 'durable'"), RMQ_ERR_AMQP);
    CU_ASSERT_EQUAL(rmq_declare_refusal_code(400, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type'"),
                    RMQ_ERR_AMQP);
    CU_ASSERT_EQUAL(rmq_declare_refusal_code(400, "inequivalent arg 'x-max-length' for queue 'q' in vhost '/': "
                                                  "received '10' but current is '5'"), RMQ_ERR_AMQP); /* 3.10.8 */
    CU_ASSERT_EQUAL(rmq_declare_refusal_code(400, "invalid arg 'x-max-length'"), RMQ_ERR_CONFIG);
    CU_ASSERT_EQUAL(rmq_declare_refusal_code(-1, "undecodable answer from /management"), RMQ_ERR_CONFIG);
    CU_ASSERT_EQUAL(rmq_declare_refusal_code(503, NULL), RMQ_ERR_GENERAL);
}

/* Builds a target from spec; returns 0 or -1 with the reason in err. */
static int try_build(const rmq_target_spec_t *p, char *err, size_t n)
{
    rmq_target_t t;
    err[0] = '\0';
    if (rmq_target_build(&t, p, "/", err, n) != 0)
        return -1;
    rmq_target_dispose(&t);
    return 0;
}

static void test_names_that_never_work(void)
{
    char err[512], name[300];
    rmq_target_spec_t p = params();
    p.queue.name = "";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "queue name is empty"));
    memset(name, 'q', 256);
    name[256] = '\0';
    p.queue.name = name;
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "256 bytes long: RabbitMQ takes at most 255"));
    name[255] = '\0';
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), 0);
    /* amq.* is the broker's: not declared, but an existing one may be used. */
    p.queue.name = "amq.x1";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "names starting with 'amq.' are the broker's"));
    p.queue.auto_declare = 0;
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), 0);
    p = params();
    p.exchange.name = "amq.topic"; /* never declared, always usable */
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), 0);
    memset(name, 'k', 257);
    name[257] = '\0';
    p.exchange.routing_key = name;
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "routing key is 257 bytes long"));
}

static void test_names_from_requests(void)
{
    char err[512];
    rmq_name_policy_t np;
    rmq_target_spec_t p = params();
    /* A static address is the artifact's own choice. */
    p.queue.name = "/amq/queue/other.app.dlq";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), 0);
    /* From a request: refused unless the operation allows it. */
    p.dynamic = RMQ_DYN_QUEUE;
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "only with allowDynamicAddress true"));
    CU_ASSERT_EQUAL_FATAL(rmq_name_policy_init(&np, 1, NULL, err, sizeof(err)), 0);
    p.policy = &np;
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), 0);
    rmq_name_policy_dispose(&np);
    /* The pattern must match the whole name; an alternation stays one. */
    CU_ASSERT_EQUAL_FATAL(rmq_name_policy_init(&np, 0, "orders|demo\\.[a-z0-9-]+", err, sizeof(err)), 0);
    p.policy = &np;
    p.queue.name = "demo.x-1";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), 0);
    p.queue.name = "orders";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), 0);
    p.queue.name = "orders2";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the queue 'orders2' comes from the message and does not match"));
    p.queue.name = "xdemo.a";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), -1);
    /* The error quotes the request's bytes bounded and printable. */
    p.queue.name = "bad\nname\x01";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "'bad?name?'"));
    /* Static names are the artifact's: the pattern is for requests. */
    p.dynamic = 0;
    p.queue.name = "anything.static";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), 0);
    /* A dynamic exchange name too; its routing key is not a name. */
    p.queue.name = NULL;
    p.exchange.name = "payments";
    p.exchange.routing_key = "any.key";
    p.dynamic = RMQ_DYN_EXCHANGE;
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "the exchange 'payments' comes from the message"));
    p.exchange.name = "orders";
    CU_ASSERT_EQUAL(try_build(&p, err, sizeof(err)), 0);
    rmq_name_policy_dispose(&np);
    /* A pattern that does not compile is the operation's load error. */
    CU_ASSERT_EQUAL(rmq_name_policy_init(&np, 0, "orders(", err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "dynamicTargetPattern: "));
}

/* ---- refused addresses -------------------------------------------------------- */

static int64_t clock_ms;

static int64_t fake_now(void)
{
    return clock_ms;
}

static void test_refusals_back_off(void)
{
    rmq_refusals_t *rs = rmq_refusals_create();
    clock_ms = 1000;
    CU_ASSERT_PTR_NULL(rmq_refusals_check(rs, "/queues/a", fake_now));
    /* Held for 1 s, then 2 s, 4 s, ... at most 30 s, with the broker's reason. */
    CU_ASSERT_EQUAL(rmq_refusals_add(rs, "/queues/a", "PRECONDITION_FAILED 1", clock_ms), RMQ_REFUSED_FIRST_MS);
    CU_ASSERT_STRING_EQUAL(rmq_refusals_check(rs, "/queues/a", fake_now), "PRECONDITION_FAILED 1");
    CU_ASSERT_PTR_NULL(rmq_refusals_check(rs, "/queues/b", fake_now));
    clock_ms += RMQ_REFUSED_FIRST_MS;
    CU_ASSERT_PTR_NULL(rmq_refusals_check(rs, "/queues/a", fake_now)); /* tried again */
    int64_t hold = RMQ_REFUSED_FIRST_MS;
    for (int i = 0; i < 8; i++) {
        int64_t next = hold * 2 > RMQ_REFUSED_MAX_MS ? RMQ_REFUSED_MAX_MS : hold * 2;
        CU_ASSERT_EQUAL(rmq_refusals_add(rs, "/queues/a", "again", clock_ms), next);
        hold = next;
        clock_ms += hold;
    }
    CU_ASSERT_EQUAL(hold, RMQ_REFUSED_MAX_MS);
    CU_ASSERT_EQUAL(rmq_refusals_count(rs), 1);
    /* Refused again long after its hold: afresh. */
    clock_ms += RMQ_REFUSED_MAX_MS + 1;
    CU_ASSERT_EQUAL(rmq_refusals_add(rs, "/queues/a", "later", clock_ms), RMQ_REFUSED_FIRST_MS);
    /* An attach that succeeds: afresh, and not held. */
    CU_ASSERT_EQUAL(rmq_refusals_add(rs, "/queues/a", "again", clock_ms), 2 * RMQ_REFUSED_FIRST_MS);
    rmq_refusals_clear(rs, "/queues/a");
    CU_ASSERT_PTR_NULL(rmq_refusals_check(rs, "/queues/a", fake_now));
    CU_ASSERT_EQUAL(rmq_refusals_add(rs, "/queues/a", "x", clock_ms), RMQ_REFUSED_FIRST_MS);
    rmq_refusals_destroy(rs);
}

static void test_refusals_bounded(void)
{
    /* A request may name any number of addresses: the one refused longest
     * ago is forgotten past RMQ_REFUSED_MAX. */
    rmq_refusals_t *rs = rmq_refusals_create();
    clock_ms = 5000;
    char address[64];
    for (int i = 0; i < 3 * RMQ_REFUSED_MAX; i++) {
        snprintf(address, sizeof(address), "/queues/q%d", i);
        rmq_refusals_add(rs, address, "refused", clock_ms);
        CU_ASSERT(rmq_refusals_count(rs) <= RMQ_REFUSED_MAX);
    }
    CU_ASSERT_EQUAL(rmq_refusals_count(rs), RMQ_REFUSED_MAX);
    CU_ASSERT_PTR_NULL(rmq_refusals_check(rs, "/queues/q0", fake_now));
    snprintf(address, sizeof(address), "/queues/q%d", 3 * RMQ_REFUSED_MAX - 1);
    CU_ASSERT_PTR_NOT_NULL(rmq_refusals_check(rs, address, fake_now));
    snprintf(address, sizeof(address), "/queues/q%d", 2 * RMQ_REFUSED_MAX);
    CU_ASSERT_PTR_NOT_NULL(rmq_refusals_check(rs, address, fake_now));
    snprintf(address, sizeof(address), "/queues/q%d", 2 * RMQ_REFUSED_MAX - 1);
    CU_ASSERT_PTR_NULL(rmq_refusals_check(rs, address, fake_now));
    /* The oldest, refused again, becomes the most recent and stays; the
     * next oldest goes. */
    snprintf(address, sizeof(address), "/queues/q%d", 2 * RMQ_REFUSED_MAX);
    rmq_refusals_add(rs, address, "again", clock_ms);
    rmq_refusals_add(rs, "/queues/new", "new", clock_ms);
    CU_ASSERT_PTR_NOT_NULL(rmq_refusals_check(rs, address, fake_now));
    snprintf(address, sizeof(address), "/queues/q%d", 2 * RMQ_REFUSED_MAX + 1);
    CU_ASSERT_PTR_NULL(rmq_refusals_check(rs, address, fake_now));
    CU_ASSERT_EQUAL(rmq_refusals_count(rs), RMQ_REFUSED_MAX);
    rmq_refusals_destroy(rs);
}

static CU_TestInfo rmq_tests[] = {
    {"percent-encoding", test_percent_encoding},
    {"address format from the broker's version", test_format_from_version},
    {"plain classic queue", test_plain_classic_queue},
    {"queue declared if missing", test_queue_declared_if_missing},
    {"the x-delivery-count annotation", test_delivery_count_annotation},
    {"a requeue's outcome by broker", test_requeue_outcome},
    {"the x-opt-deaths count of a queue", test_death_count},
    {"the copy for the final dead-letter target", test_message_for_final},
    {"a stream consumer's offset file", test_offset_store},
    {"throttling: fixed interval and batch windows", test_throttle},
    {"the default type: declared only when missing", test_default_type_declared_if_missing},
    {"quorum queue with arguments", test_quorum_queue_with_arguments},
    {"classic version and stream members", test_classic_version_and_stream_members},
    {"exchange targets", test_exchange_targets},
    {"queue bound to an exchange", test_queue_bound_to_exchange},
    {"raw address and errors", test_raw_address_and_errors},
    {"names that never work", test_names_that_never_work},
    {"names from requests", test_names_from_requests},
    {"header filter", test_header_filter},
    {"message on the wire", test_message_on_the_wire},
    {"message decoded", test_message_decoded},
    {"publish result", test_publish_result},
    {"4.x /management request", test_v2_request},
    {"4.x /management response", test_v2_response},
    {"declaration refusal code", test_declare_refusal_code},
    {"refused addresses back off", test_refusals_back_off},
    {"refused addresses are bounded", test_refusals_bounded},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"rabbitmq", NULL, NULL, NULL, NULL, rmq_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    return cu_run(suites);
}
