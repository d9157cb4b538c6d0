/* The RabbitMQ connector (AMQP 1.0 through qpid-proton-c): shared types.
 *
 *   rmq_module.c    descriptor, parameter tables, errors, validation
 *   rmq_address.c   v1/v2 addresses, percent-encoding, declaration plans
 *   rmq_message.c   building and encoding the AMQP message (on a worker)
 *   rmq_mgmt.c      the HTTP management API on its own thread (libcurl)
 *   rmq_v2mgmt.c    RabbitMQ 4.x's AMQP management requests (/management)
 *   rmq_pool.c      the connection pool: one proton proactor and its thread
 *   rmq_publish.c   publishMessage
 *
 * Threads: operations run on the engine's workers and build everything a
 * publish needs there (addresses, declaration plan, encoded message); the
 * pool's thread owns every pn_* object and gets work through one queue and
 * pn_proactor_interrupt(); the management thread runs HTTP calls and hands
 * results back the same way.  Nothing else is shared. */
#ifndef RMQ_H
#define RMQ_H

#include <cmi/connector.h>
#include <proton/types.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RMQ_COMPONENT_MAX 160

/* ---- errors (spec §7) ------------------------------------------------------ */

enum {
    RMQ_ERR_CONNECTION = 701201, /* no connection could be had */
    RMQ_ERR_CONFIG = 701202,     /* bad or missing parameter */
    RMQ_ERR_OPERATION = 701203,  /* rejected/released, nothing to decide on */
    RMQ_ERR_TIMEOUT = 701204,    /* confirm or reply not in time */
    RMQ_ERR_AMQP = 701206,       /* other AMQP error */
    RMQ_ERR_GENERAL = 701207,    /* anything else */
};

#define RMQ_MSG_CONNECTION "RABBITMQ:CONNECTION_ERROR"
#define RMQ_MSG_CONFIG "RABBITMQ:INVALID_CONFIGURATION"
#define RMQ_MSG_OPERATION "RABBITMQ:OPERATION_ERROR"
#define RMQ_MSG_TIMEOUT "RABBITMQ:PUBLISH_TIMEOUT"
#define RMQ_MSG_AMQP "RABBITMQ:AMQP_ERROR"
#define RMQ_MSG_GENERAL "RABBITMQ:RABBITMQ_GENERAL_ERROR"

/* ---- <rabbitmq.init> ---------------------------------------------------------- */

enum {
    RMQ_I_NAME, RMQ_I_CONNECTION_TYPE, RMQ_I_SERVER_URLS, RMQ_I_VHOST, RMQ_I_SASL, RMQ_I_USERNAME, RMQ_I_PASSWORD,
    RMQ_I_OAUTH2_ENABLED, RMQ_I_TOKEN_ENDPOINT, RMQ_I_GRANT_TYPE, RMQ_I_CLIENT_ID, RMQ_I_CLIENT_SECRET,
    RMQ_I_OAUTH2_USER, RMQ_I_OAUTH2_PASSWORD,
    RMQ_I_SSL_ENABLED, RMQ_I_TRUST_EVERYTHING, RMQ_I_HOSTNAME_VERIFICATION, RMQ_I_SSL_VERSION,
    RMQ_I_KEYSTORE_LOCATION, RMQ_I_KEYSTORE_PASSWORD, RMQ_I_KEYSTORE_TYPE,
    RMQ_I_TRUSTSTORE_LOCATION, RMQ_I_TRUSTSTORE_PASSWORD, RMQ_I_TRUSTSTORE_TYPE,
    RMQ_I_IDLE_TIMEOUT, RMQ_I_RETRY_COUNT, RMQ_I_RETRY_INTERVAL,
    RMQ_I_RECOVERY_POLICY, RMQ_I_RECOVERY_INITIAL_DELAY, RMQ_I_RECOVERY_INTERVAL, RMQ_I_RECOVERY_TIMEOUT,
    RMQ_I_POOL_SIZE, RMQ_I_MAX_IN_FLIGHT, RMQ_I_ADDRESS_FORMAT,
    RMQ_I_MGMT_URL, RMQ_I_MGMT_USER, RMQ_I_MGMT_PASSWORD,
    RMQ_I_COUNT
};

enum { RMQ_SASL_PLAIN, RMQ_SASL_EXTERNAL, RMQ_SASL_ANONYMOUS };
enum { RMQ_GRANT_CLIENT_CREDENTIALS, RMQ_GRANT_PASSWORD };
enum { RMQ_STORE_PEM, RMQ_STORE_PKCS12, RMQ_STORE_JKS };
enum {
    RMQ_RECOVERY_FIXED,
    RMQ_RECOVERY_FIXED_WITH_INITIAL_DELAY,
    RMQ_RECOVERY_FIXED_WITH_INITIAL_DELAY_AND_TIMEOUT,
    RMQ_RECOVERY_EXPONENTIAL_WITH_JITTER
};
enum { RMQ_FORMAT_AUTO, RMQ_FORMAT_V1, RMQ_FORMAT_V2 };

typedef struct {
    cmi_params_head_t head;
    const char *name;
    const char *connection_type;
    cmi_param_list_t server_urls;
    const char *vhost;
    int sasl;
    const char *username;
    const char *password;
    int oauth2_enabled;
    const char *token_endpoint;
    int grant_type;
    const char *client_id;
    const char *client_secret;
    const char *oauth2_user;
    const char *oauth2_password;
    int ssl_enabled;
    int trust_everything;
    int hostname_verification;
    const char *ssl_version;
    const char *keystore_location;
    const char *keystore_password;
    int keystore_type;
    const char *truststore_location;
    const char *truststore_password;
    int truststore_type;
    uint64_t idle_timeout_ms;
    int64_t retry_count;
    uint64_t retry_interval_ms;
    int recovery_policy;
    uint64_t recovery_initial_delay_ms;
    uint64_t recovery_interval_ms;
    uint64_t recovery_timeout_ms;
    int64_t pool_size;
    int64_t max_in_flight;
    int address_format;
    cmi_param_list_t mgmt_url;
    const char *mgmt_user;
    const char *mgmt_password;
} rmq_init_params_t;

/* ---- <rabbitmq.publishMessage> -------------------------------------------------- */

enum {
    RMQ_P_QUEUE, RMQ_P_QUEUE_AUTO_DECLARE, RMQ_P_QUEUE_TYPE, RMQ_P_QUEUE_ARGUMENTS, RMQ_P_MAX_PRIORITY,
    RMQ_P_INITIAL_MEMBER_COUNT, RMQ_P_DELIVERY_LIMIT, RMQ_P_DEAD_LETTER_STRATEGY, RMQ_P_MAX_AGE,
    RMQ_P_MAX_SEGMENT_SIZE, RMQ_P_QUEUE_EXCLUSIVE, RMQ_P_QUEUE_AUTO_DELETE, RMQ_P_QUEUE_OVERFLOW,
    RMQ_P_EXCHANGE, RMQ_P_EXCHANGE_AUTO_DECLARE, RMQ_P_EXCHANGE_TYPE, RMQ_P_ROUTING_KEY, RMQ_P_EXCHANGE_ARGUMENTS,
    RMQ_P_HEADER_EXCHANGE_ARGUMENTS, RMQ_P_EXCHANGE_AUTO_DELETE,
    RMQ_P_HEADERS, RMQ_P_BODY_TYPE, RMQ_P_BODY_JSON, RMQ_P_BODY_XML, RMQ_P_BODY_TEXT, RMQ_P_CHARSET,
    RMQ_P_PUBLISH_TIMEOUT, RMQ_P_CONFIRMS, RMQ_P_PRIORITY, RMQ_P_TTL, RMQ_P_REPLY_TO, RMQ_P_MESSAGE_ID,
    RMQ_P_CORRELATION_ID,
    RMQ_P_COUNT
};

enum { RMQ_QUEUE_CLASSIC, RMQ_QUEUE_QUORUM, RMQ_QUEUE_STREAM };
enum { RMQ_OVERFLOW_DROP_HEAD, RMQ_OVERFLOW_REJECT_PUBLISH, RMQ_OVERFLOW_REJECT_PUBLISH_DLX };
enum { RMQ_EXCHANGE_DIRECT, RMQ_EXCHANGE_FANOUT, RMQ_EXCHANGE_TOPIC, RMQ_EXCHANGE_HEADERS };
enum { RMQ_BODY_NONE = -1, RMQ_BODY_JSON, RMQ_BODY_XML, RMQ_BODY_TEXT };
enum { RMQ_DLS_AT_MOST_ONCE, RMQ_DLS_AT_LEAST_ONCE };

typedef struct {
    cmi_params_head_t head;
    const char *queue;
    int queue_auto_declare;
    int queue_type;
    const char *queue_arguments;
    int64_t max_priority;
    int64_t initial_member_count;
    int64_t delivery_limit;
    int dead_letter_strategy;
    const char *max_age;
    int64_t max_segment_size;
    int queue_exclusive;
    int queue_auto_delete;
    int queue_overflow;
    const char *exchange;
    int exchange_auto_declare;
    int exchange_type;
    const char *routing_key;
    const char *exchange_arguments;
    const char *header_exchange_arguments;
    int exchange_auto_delete;
    json_t *headers;
    int body_type;
    const char *body_json;
    const char *body_xml;
    const char *body_text;
    const char *charset;
    uint64_t publish_timeout_ms;
    int confirms;
    int64_t priority;
    uint64_t ttl_ms;
    const char *reply_to;
    const char *message_id;
    const char *correlation_id;
} rmq_publish_params_t;

/* ---- <rabbitmq.sendRpc> ------------------------------------------------------------ */

/* The queue options of publishMessage (RMQ_P_QUEUE .. RMQ_P_QUEUE_OVERFLOW,
 * in that order), once for the request queue and once, prefixed
 * replyToQueue, for the reply queue. */
#define RMQ_QUEUE_ROWS (RMQ_P_QUEUE_OVERFLOW + 1)

enum {
    RMQ_R_QUEUE = 0,
    RMQ_R_REPLY = RMQ_QUEUE_ROWS, /* replyToQueue, replyToQueueAutoDeclare, ... */
    RMQ_R_HEADERS = 2 * RMQ_QUEUE_ROWS,
    RMQ_R_BODY_TYPE, RMQ_R_BODY_JSON, RMQ_R_BODY_XML, RMQ_R_BODY_TEXT, RMQ_R_CHARSET,
    RMQ_R_REQUEST_TIMEOUT, RMQ_R_RESPONSE_BODY_TYPE, RMQ_R_RESPONSE_CHARSET,
    RMQ_R_COUNT
};

typedef struct {
    const char *queue;
    int queue_auto_declare;
    int queue_type;
    const char *queue_arguments;
    int64_t max_priority;
    int64_t initial_member_count;
    int64_t delivery_limit;
    int dead_letter_strategy;
    const char *max_age;
    int64_t max_segment_size;
    int queue_exclusive;
    int queue_auto_delete;
    int queue_overflow;
} rmq_queue_opts_t;

typedef struct {
    cmi_params_head_t head;
    rmq_queue_opts_t request;
    rmq_queue_opts_t reply;
    json_t *headers;
    int body_type;
    const char *body_json;
    const char *body_xml;
    const char *body_text;
    const char *charset;
    uint64_t request_timeout_ms;
    int response_body_type;
    const char *response_charset;
} rmq_rpc_params_t;

/* ---- targets: where a message goes and what must exist first ------------------ */

/* One declaration, described once for both APIs: the HTTP management API
 * of 3.x (method, path under /api, JSON body) and 4.x's AMQP management
 * node (same method, a v2 path, the body as an AMQP map). */
typedef struct {
    const char *method; /* "PUT" or "POST" */
    char *http_path;    /* "/api/queues/%2F/orders" */
    char *http_body;    /* JSON text */
    char *v2_path;      /* "/queues/orders" */
    char *v2_body;      /* JSON text of the AMQP map */
    int on_v1;          /* needed on 3.x (a plain classic queue is declared by attaching to /queue/Q) */
} rmq_declare_t;

/* What a publish targets.  All strings are owned (malloc) by the target. */
typedef struct {
    char *addr_v1; /* 3.x plugin address */
    char *addr_v2; /* 4.x address */
    rmq_declare_t *declare; /* in order: exchange, queue, binding */
    size_t ndeclare;
    char *key; /* identity of the declarations, NULL when there are none */
    char *describe; /* "queue 'orders'", for messages */
} rmq_target_t;

/* Builds the target of a publish from its parameters (vhost for the HTTP
 * paths).  Returns 0, or -1 with a reason (701202). */
int rmq_target_build(rmq_target_t *t, const rmq_publish_params_t *p, const char *vhost, char *err, size_t n);
void rmq_target_dispose(rmq_target_t *t);
/* Moves first's declarations in front of t's (first is disposed): what
 * must exist before t's own, such as a dead-letter exchange and queue. */
void rmq_target_prepend(rmq_target_t *t, rmq_target_t *first);
/* The address for a connection that speaks format (RMQ_FORMAT_V1/V2). */
const char *rmq_target_address(const rmq_target_t *t, int format);

/* RFC 3986 percent-encoding of everything but unreserved characters
 * (v2 addresses, HTTP paths).  Returns a malloc'd string. */
char *rmq_percent_encode(const char *s);
/* Parses "k=v,k=v" into a JSON object with typed values (true/false,
 * integers, decimals, else strings).  NULL with err on a malformed list. */
json_t *rmq_parse_arguments(const char *s, char *err, size_t n);
/* "3.10.8" -> RMQ_FORMAT_V1, "4.0.2" -> RMQ_FORMAT_V2. */
int rmq_format_for_version(const char *product, const char *version);

typedef struct rmq_pool rmq_pool_t;
typedef struct rmq_pub rmq_pub_t;
typedef struct rmq_rpc rmq_rpc_t;

/* ---- messages ---------------------------------------------------------------- */

/* Headers never forwarded as application-properties unless named in the
 * headers parameter (credentials, hop-by-hop). */
int rmq_header_is_filtered(const char *name, size_t len);

/* What the message was built from, for the unit tests and the worker. */
typedef struct {
    const void *body;
    size_t body_len;
    const char *content_type;     /* without parameters */
    const char *content_encoding; /* the charset, or NULL */
    const char *message_id;
    const char *correlation_id;
    const char *reply_to;
    int64_t priority; /* -1: none */
    uint64_t ttl_ms;  /* 0: none */
    json_t *app_props; /* object of strings; borrowed */
} rmq_message_spec_t;

/* What an operation sends, from its own parameter rows (publishMessage
 * and sendRpc have the same body parameters at different rows). */
typedef struct {
    int body_type;           /* RMQ_BODY_*, RMQ_BODY_NONE: the payload */
    unsigned body_rows[3];   /* the operation's requestBodyJson/Xml/Text rows */
    const char *const *bodies[3]; /* where call_eval_param() puts their values */
    const char *charset;
    json_t *headers;
    const char *message_id;     /* NULL: the message's id */
    const char *correlation_id; /* NULL: rabbitmq.message.correlation.id, else the message id */
    const char *reply_to;
    int64_t priority; /* -1: none */
    uint64_t ttl_ms;  /* 0: none */
} rmq_outgoing_t;

/* On the worker: encodes what out describes into pub (bytes, message_id).
 * Returns 0, -1 with err (701202) or -2 when the host already set the
 * error (a body expression failed). */
int rmq_pub_build_message(cmi_call_t *call, const rmq_outgoing_t *out, rmq_pub_t *pub, char *err, size_t n);
void rmq_target_copy(rmq_target_t *dst, const rmq_target_t *src);

/* Encodes spec as one AMQP message with a single data section, durable.
 * Returns the malloc'd bytes and their length, or NULL with err. */
char *rmq_message_encode(const rmq_message_spec_t *spec, size_t *len, char *err, size_t n);

/* A publish's result for responseVariable (spec §3): success "true" on
 * accepted; "false" with error 701203 on rejected, released or modified. */
json_t *rmq_publish_result(const rmq_pub_t *pub);

/* ---- the pool ------------------------------------------------------------------- */


/* Where a publish is, for the deadline's choice of error: not yet on a
 * connection (701201), or on one waiting for a declaration, credit or the
 * outcome (701204). */
enum { RMQ_PUB_QUEUED, RMQ_PUB_WAITING, RMQ_PUB_ROUTED, RMQ_PUB_SENT };
enum { RMQ_OUT_NONE, RMQ_OUT_ACCEPTED, RMQ_OUT_REJECTED, RMQ_OUT_RELEASED, RMQ_OUT_MODIFIED, RMQ_OUT_ERROR };

/* One publish in flight: built on the worker, owned by the pool's thread
 * until it resumes the call; freed by the continuation on the worker (or
 * by the pool when the resume comes back STALE). */
struct rmq_pub {
    rmq_pub_t *prev, *next; /* in exactly one of the pool's lists at a time */
    void *owner;            /* the list it is in */
    void *conn;             /* the connection it is in flight on */
    void *link;             /* its sender while pending or in flight */
    cmi_call_t *call;
    rmq_target_t target;
    char *bytes; /* the encoded message */
    size_t len;
    char *message_id;
    int confirm;
    atomic_int stage;     /* RMQ_PUB_*: what the deadline found */
    atomic_int cancelled; /* the deadline ended the call */
    int attempts;         /* connections it was in flight on */
    rmq_rpc_t *rpc;       /* a sendRpc request: the outcome matters only when it is a failure */
    /* The outcome, set by the pool thread before it resumes the call. */
    int outcome;
    int err_code;
    char err_detail[384];
};

rmq_pool_t *rmq_pool_create(const cmi_host_t *host, const char *component, const rmq_init_params_t *p, char *err,
                            size_t n);
/* Closes every connection cleanly (settling what is in flight) and frees
 * the pool; every publish still held is resumed with an error first. */
void rmq_pool_destroy(rmq_pool_t *pool);
/* Any thread: hands a publish to the pool. */
void rmq_pool_submit(rmq_pool_t *pool, rmq_pub_t *pub);
/* Any thread: a publish's deadline passed; the pool takes the cancelled
 * ones out of its queues soon (they must not hold room). */
void rmq_pool_reap_soon(rmq_pool_t *pool);
/* Service thread at start-up: a target known at load, declared on every
 * connection as it comes up. */
void rmq_pool_add_static_target(rmq_pool_t *pool, const rmq_target_t *t);
/* Resumes pub's call with its outcome (pool thread), or frees it when the
 * deadline came first. */
void rmq_pub_complete(rmq_pool_t *pool, rmq_pub_t *pub);
void rmq_pub_free(rmq_pub_t *pub);

/* ---- consuming (rmq_consume.c) --------------------------------------------------- */

typedef struct rmq_delivery rmq_delivery_t;

/* Decisions on a delivery; the first one wins. */
enum { RMQ_DECIDE_NONE, RMQ_DECIDE_ACCEPT, RMQ_DECIDE_DISCARD, RMQ_DECIDE_REQUEUE, RMQ_DECIDE_TIMEOUT };

/* A message a receiver got, decoded on the pool thread (all borrowed until
 * the deliver callback returns). */
typedef struct {
    const char *body;
    size_t len;
    const char *content_type;     /* NULL when the message has none */
    const char *content_encoding; /* NULL when the message has none */
    const char *message_id;
    const char *correlation_id;
    const char *reply_to;
    int redelivered; /* not the first acquirer (RabbitMQ 3.x sets this on requeued messages) */
    cmi_nv_t *props; /* application-properties as text */
    size_t nprops;
} rmq_incoming_t;

/* Pool thread: hands the message to mediation.  Returns 0 (the flow will
 * call rmq_delivery_flow_done), 1 (dealt with already: accepted), -1
 * (refused: released) or -2 (the payload is unusable: rejected). */
typedef int (*rmq_deliver_fn)(void *arg, rmq_delivery_t *d, const rmq_incoming_t *m);

typedef struct {
    rmq_target_t target; /* the queue, and what to declare first */
    int links;           /* receivers per connection */
    int credit;          /* deliveries in mediation at once, per receiver */
    int auto_ack;
    uint64_t ack_wait_ms;      /* a flow still running then: requeued */
    uint64_t requeue_delay_ms; /* a flow over without a decision: requeued after this */
    rmq_deliver_fn deliver;
    void *arg;
} rmq_consumer_spec_t;

/* Any thread: starts consuming (the target passes to the pool). */
void rmq_pool_consume(rmq_pool_t *pool, rmq_consumer_spec_t *spec);
/* Any thread: no new deliveries; those in mediation go on. */
void rmq_pool_stop_consuming(rmq_pool_t *pool);
/* Any thread: records a decision; returns 1 when it is the first one. */
int rmq_delivery_decide(rmq_delivery_t *d, int decision);
/* Any thread, once: the flow that mediated d is over. */
void rmq_delivery_flow_done(rmq_delivery_t *d);
const char *rmq_delivery_message_id(const rmq_delivery_t *d);

/* ---- request-reply (rmq_rpc.c) --------------------------------------------------- */

int rmq_rpc_run(cmi_call_t *call);
int rmq_rpc_prepare(cmi_binding_t *b, char *err, size_t n);
void rmq_rpc_release(cmi_binding_t *b);
/* Pool thread: the request's publish is over (its outcome in pub). */
void rmq_rpc_request_done(rmq_pool_t *pool, rmq_pub_t *pub);
/* Converts one set of queue options to publishMessage's parameters (rows
 * base .. base + RMQ_QUEUE_ROWS - 1 of params' head). */
void rmq_queue_opts_to_publish(const void *params, unsigned base, const rmq_queue_opts_t *o,
                               rmq_publish_params_t *q);

/* ---- operations (rmq_publish.c) ------------------------------------------------ */

int rmq_publish_run(cmi_call_t *call);
/* rmq_listener.c: the inbound endpoint and the decisions. */
extern const cmi_listener_def_t rmq_listeners[];
int rmq_accept_run(cmi_call_t *call);
int rmq_discard_run(cmi_call_t *call);
int rmq_requeue_run(cmi_call_t *call);
int rmq_publish_prepare(cmi_binding_t *b, char *err, size_t n);
void rmq_publish_release(cmi_binding_t *b);

/* ---- the management API (3.x) ------------------------------------------------ */

typedef struct rmq_mgmt rmq_mgmt_t;
/* Called on the management thread when a job is done: status 0 on success,
 * else an error code (RMQ_ERR_*) with detail. */
typedef void (*rmq_mgmt_done_fn)(void *arg, int status, const char *detail);

/* base_urls: the management API of each node, tried in turn (the first
 * that answers is kept until it fails). */
rmq_mgmt_t *rmq_mgmt_create(const cmi_host_t *host, const char *component, char *const *base_urls, size_t n,
                            const char *user, const char *password);
void rmq_mgmt_destroy(rmq_mgmt_t *m);
/* Any thread: runs the declarations in order; done(arg, ...) when finished. */
void rmq_mgmt_submit(rmq_mgmt_t *m, const rmq_declare_t *decl, size_t n, rmq_mgmt_done_fn done, void *arg);

/* ---- RabbitMQ 4.x management node (encoding, tested without a broker) ---------- */

/* Encodes one declaration as an HTTP-over-AMQP request message for the
 * /management node.  Returns malloc'd bytes, or NULL with err. */
char *rmq_v2_request_encode(const rmq_declare_t *d, const char *message_id, size_t *len, char *err, size_t n);
/* Reads the status of a /management response ("201" in the subject);
 * returns 0 when it means success, else -1 with a detail. */
int rmq_v2_response_status(const char *bytes, size_t len, char *correlation, size_t corr_size, char *detail,
                           size_t n);

#endif
