/* The RabbitMQ connector (AMQP 1.0 through qpid-proton-c): shared types.
 *
 *   rmq_module.c    descriptor, parameter tables, errors, validation
 *   rmq_params.[ch] the option rows shared by the tables, target specs
 *   rmq_address.c   v1/v2 addresses, percent-encoding, declaration plans
 *   rmq_message.c   building and encoding the AMQP message (on a worker)
 *   rmq_alloc.c     allocation (out of memory aborts)
 *   rmq_mgmt.c      the HTTP management API on its own thread (libcurl)
 *   rmq_v2mgmt.c    RabbitMQ 4.x's AMQP management requests (/management)
 *   rmq_core.h      the pool core: rmq_pool.c, rmq_conn.c, rmq_declare.c,
 *                   rmq_send.c, rmq_pub.c (one proton proactor, its thread)
 *   rmq_consume.[ch] consuming: a feature of the pool
 *   rmq_publish.c   publishMessage
 *   rmq_rpc.c       sendRpc
 *   rmq_listener.c  the inbound endpoint, accept/discard/requeue
 *   rmq_ops.h       what rmq_module.c's tables name
 *
 * Threads: operations run on the engine's workers and build everything a
 * publish needs there (addresses, declaration plan, encoded message); the
 * pool's thread owns every pn_* object and gets work through one queue and
 * pn_proactor_interrupt(); the management thread runs HTTP calls and hands
 * results back the same way.  Nothing else is shared. */
#ifndef RMQ_H
#define RMQ_H

#include <cmi/connector.h>
#include <proton/message.h>
#include <proton/types.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

/* BSD's, which glibc's <sys/queue.h> lacks: a loop that may unlink var. */
#ifndef SLIST_FOREACH_SAFE
#define SLIST_FOREACH_SAFE(var, head, field, tvar)                                                        \
    for ((var) = SLIST_FIRST(head); (var) != NULL && ((tvar) = SLIST_NEXT((var), field), 1); (var) = (tvar))
#endif
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                        \
    for ((var) = TAILQ_FIRST(head); (var) != NULL && ((tvar) = TAILQ_NEXT((var), field), 1); (var) = (tvar))
#endif

#define RMQ_COMPONENT_MAX 160

/* ---- memory (rmq_alloc.c): out of memory aborts, as in the engine ---------------- */

void *rmq_xmalloc(size_t size);
void *rmq_xcalloc(size_t count, size_t size);
void *rmq_xrealloc(void *p, size_t size);
char *rmq_xstrdup(const char *s); /* NULL: "" */
char *rmq_xstrndup(const char *s, size_t n);
char *rmq_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *rmq_dup_or_null(const char *s);

/* ---- errors (docs/rabbitmq.md, "Errors") ------------------------------------ */

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
    RMQ_I_OAUTH2_USER, RMQ_I_OAUTH2_PASSWORD, RMQ_I_TOKEN_CA_FILE,
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
    const char *token_ca_file;
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

/* ---- queues and exchanges: one set of options wherever MI names them ------------- */

/* The options of a queue, in the order of their parameter rows (publishMessage's
 * queue rows, sendRpc's request and replyToQueue rows); the inbound endpoint
 * uses some of them under its own names. */
enum {
    RMQ_Q_NAME, RMQ_Q_AUTO_DECLARE, RMQ_Q_TYPE, RMQ_Q_ARGUMENTS, RMQ_Q_MAX_PRIORITY, RMQ_Q_INITIAL_MEMBER_COUNT,
    RMQ_Q_DELIVERY_LIMIT, RMQ_Q_DEAD_LETTER_STRATEGY, RMQ_Q_MAX_AGE, RMQ_Q_MAX_SEGMENT_SIZE, RMQ_Q_EXCLUSIVE,
    RMQ_Q_AUTO_DELETE, RMQ_Q_OVERFLOW, RMQ_Q_CLASSIC_VERSION,
    RMQ_Q_COUNT
};
/* The options of an exchange, in the order of publishMessage's rows. */
enum {
    RMQ_X_NAME, RMQ_X_AUTO_DECLARE, RMQ_X_TYPE, RMQ_X_ROUTING_KEY, RMQ_X_ARGUMENTS, RMQ_X_HEADER_ARGUMENTS,
    RMQ_X_AUTO_DELETE,
    RMQ_X_COUNT
};

typedef enum { RMQ_QUEUE_CLASSIC, RMQ_QUEUE_QUORUM, RMQ_QUEUE_STREAM } rmq_queue_type_t;
typedef enum { RMQ_OVERFLOW_DROP_HEAD, RMQ_OVERFLOW_REJECT_PUBLISH, RMQ_OVERFLOW_REJECT_PUBLISH_DLX } rmq_overflow_t;
typedef enum { RMQ_EXCHANGE_DIRECT, RMQ_EXCHANGE_FANOUT, RMQ_EXCHANGE_TOPIC, RMQ_EXCHANGE_HEADERS } rmq_exchange_type_t;
typedef enum { RMQ_BODY_NONE = -1, RMQ_BODY_JSON, RMQ_BODY_XML, RMQ_BODY_TEXT } rmq_body_type_t;
typedef enum { RMQ_DLS_AT_MOST_ONCE, RMQ_DLS_AT_LEAST_ONCE } rmq_dls_t;
typedef enum { RMQ_CLASSIC_V1, RMQ_CLASSIC_V2 } rmq_classic_version_t;

/* A queue's auto_declare: RMQ_DECLARE_IF_MISSING asks the broker first and
 * declares only a queue that does not exist (MI's reply queue). */
enum { RMQ_DECLARE_NO, RMQ_DECLARE_YES, RMQ_DECLARE_IF_MISSING };

typedef struct {
    const char *name;
    int auto_declare;
    int type; /* rmq_queue_type_t */
    const char *arguments;
    int64_t max_priority;
    int64_t initial_member_count;
    int64_t delivery_limit;
    int dead_letter_strategy; /* rmq_dls_t */
    const char *max_age;
    int64_t max_segment_size;
    int exclusive;
    int auto_delete;
    int overflow;        /* rmq_overflow_t */
    int classic_version; /* rmq_classic_version_t */
} rmq_queue_opts_t;

typedef struct {
    const char *name;
    int auto_declare;
    int type; /* rmq_exchange_type_t */
    const char *routing_key;
    const char *arguments;
    const char *header_arguments;
    int auto_delete;
} rmq_exchange_opts_t;

/* What a request may choose as a target (docs/rabbitmq.md, "Names from
 * requests"): an operation's allowDynamicAddress and dynamicTargetPattern,
 * compiled once when the operation is loaded. */
typedef struct {
    int allow_address; /* a dynamic queue starting with '/' is taken as an address */
    int has_pattern;
    regex_t pattern; /* dynamic queue and exchange names must match it wholly */
} rmq_name_policy_t;

/* Compiles pattern (NULL: none).  Returns 0, or -1 with regcomp's reason. */
int rmq_name_policy_init(rmq_name_policy_t *np, int allow_address, const char *pattern, char *err, size_t n);
void rmq_name_policy_dispose(rmq_name_policy_t *np);

/* Which of a spec's names were written as expressions. */
enum { RMQ_DYN_QUEUE = 1u << 0, RMQ_DYN_EXCHANGE = 1u << 1 };

/* What a target is built from: the options, and which of them were given
 * (bit RMQ_Q_* / RMQ_X_*; an option not given has its default, and an
 * argument not given is not sent). */
typedef struct {
    rmq_queue_opts_t queue;
    uint32_t queue_set;
    rmq_exchange_opts_t exchange;
    uint32_t exchange_set;
    unsigned dynamic;                /* RMQ_DYN_* */
    const rmq_name_policy_t *policy; /* for the dynamic names; NULL: no address, any name */
} rmq_target_spec_t;

/* Refuses what can never work or what the policy does not allow, before
 * anything reaches the broker: an empty name, a name or routing key over
 * 255 bytes (RabbitMQ's limit), a queue to declare named amq.*, and for
 * dynamic names an address without allow_address or a name the pattern
 * does not match.  Returns 0, or -1 with the reason (701202). */
int rmq_target_check_names(const rmq_target_spec_t *s, char *err, size_t n);

#define RMQ_IS_SET(set, opt) ((((set) >> (opt)) & 1u) != 0)

/* Fills spec from an operation's parameters: the queue options at rows
 * qbase.., the exchange options at rows xbase.. (x NULL: none). */
void rmq_target_spec_read(rmq_target_spec_t *spec, const void *params, unsigned qbase, const rmq_queue_opts_t *q,
                          unsigned xbase, const rmq_exchange_opts_t *x);
/* A queue option given in code (the inbound endpoint's, sendRpc's own reply queue). */
void rmq_target_spec_set_queue(rmq_target_spec_t *spec, unsigned opt);

/* ---- <rabbitmq.publishMessage> -------------------------------------------------- */

enum {
    RMQ_P_QUEUE = 0,                      /* RMQ_Q_COUNT rows: the queue's options */
    RMQ_P_EXCHANGE = RMQ_Q_COUNT,         /* RMQ_X_COUNT rows: the exchange's options */
    RMQ_P_HEADERS = RMQ_Q_COUNT + RMQ_X_COUNT,
    RMQ_P_BODY_TYPE, RMQ_P_BODY_JSON, RMQ_P_BODY_XML, RMQ_P_BODY_TEXT, RMQ_P_CHARSET,
    RMQ_P_PUBLISH_TIMEOUT, RMQ_P_CONFIRMS, RMQ_P_PRIORITY, RMQ_P_TTL, RMQ_P_REPLY_TO, RMQ_P_MESSAGE_ID,
    RMQ_P_CORRELATION_ID, RMQ_P_ALLOW_ADDRESS, RMQ_P_TARGET_PATTERN,
    RMQ_P_COUNT
};

typedef struct {
    cmi_params_head_t head;
    rmq_queue_opts_t queue;
    rmq_exchange_opts_t exchange;
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
    int allow_address;
    const char *target_pattern;
} rmq_publish_params_t;

/* ---- <rabbitmq.sendRpc> ------------------------------------------------------------ */

enum {
    RMQ_R_QUEUE = 0,           /* the request queue's options */
    RMQ_R_REPLY = RMQ_Q_COUNT, /* replyToQueue, replyToQueueAutoDeclare, ... */
    RMQ_R_HEADERS = 2 * RMQ_Q_COUNT,
    RMQ_R_BODY_TYPE, RMQ_R_BODY_JSON, RMQ_R_BODY_XML, RMQ_R_BODY_TEXT, RMQ_R_CHARSET,
    RMQ_R_REQUEST_TIMEOUT, RMQ_R_RESPONSE_BODY_TYPE, RMQ_R_RESPONSE_CHARSET, RMQ_R_ALLOW_ADDRESS,
    RMQ_R_TARGET_PATTERN,
    RMQ_R_COUNT
};

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
    int allow_address;
    const char *target_pattern;
} rmq_rpc_params_t;

/* ---- targets: where a message goes and what must exist first ------------------ */

/* One declaration, described once for both APIs: the HTTP management API
 * of 3.x (method, path under /api, JSON body) and 4.x's AMQP management
 * node (same method, a v2 path, the body as an AMQP map). */
typedef struct {
    const char *method; /* "PUT" or "POST"; "GET" asks whether it exists (4.x only) */
    char *http_path;    /* "/api/queues/%2F/orders" */
    char *http_body;    /* JSON text */
    char *v2_path;      /* "/queues/orders" */
    char *v2_body;      /* JSON text of the AMQP map */
    int on_v1;          /* needed on 3.x (a plain classic queue is declared by attaching to /queue/Q) */
    /* A GET whose "exists" skips the declaration after it and whose 404
     * runs it: a queue declared only when missing (sendRpc's reply queue). */
    int if_missing;
    /* Why 3.x's HTTP API cannot make this one (a static string), or NULL. */
    const char *v1_refusal;
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

/* Builds a target from its spec (vhost for the HTTP paths).  Returns 0,
 * or -1 with a reason (701202). */
int rmq_target_build(rmq_target_t *t, const rmq_target_spec_t *spec, const char *vhost, char *err, size_t n);
/* A consumer's queue that must exist is asked for on 3.x too (through the
 * HTTP API): RabbitMQ 3.x ends the session of a receiver attached to a
 * missing queue, and with it the connection's other receivers. */
void rmq_target_ask_on_v1(rmq_target_t *t);
/* A deep copy. */
void rmq_target_copy(rmq_target_t *dst, const rmq_target_t *src);
/* Deep copies of n declarations into dst (room for n); frees n and the array. */
void rmq_declare_copy(rmq_declare_t *dst, const rmq_declare_t *src, size_t n);
void rmq_declare_free(rmq_declare_t *d, size_t n);
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
    int64_t delivery_count; /* the x-delivery-count annotation (4.x quorum queues), -1 without */
    int64_t stream_offset;  /* the x-stream-offset annotation (a stream's message), -1 without */
    const char *stream_filter_value; /* its x-stream-filter-value annotation, or NULL */
    cmi_nv_t *props; /* application-properties as text */
    size_t nprops;
} rmq_incoming_t;

/* ---- throttling (rmq_throttle.c) ------------------------------------------------------------ */

enum { RMQ_THROTTLE_BATCH, RMQ_THROTTLE_FIXED_INTERVAL };
enum { RMQ_THROTTLE_MINUTE, RMQ_THROTTLE_HOUR, RMQ_THROTTLE_DAY };

/* MI's rabbitmq.throttle.*: FIXED_INTERVAL starts a message at most every
 * unit/count ms; BATCH starts at most count in each window, a window ending
 * at the next minute, hour or local midnight.  Clocks in ms: now the pool's
 * monotonic one, wall_ms the wall clock. */
typedef struct {
    int enabled;
    int mode;
    int unit;
    int64_t count;
    int64_t next_at;    /* FIXED_INTERVAL: the next may start then */
    int64_t window_end; /* BATCH: the current window ends then */
    int64_t used;       /* BATCH: started in the current window */
} rmq_throttle_t;

void rmq_throttle_init(rmq_throttle_t *t, int mode, int unit, int64_t count);
/* How many messages may start now (INT64_MAX when not enabled). */
int64_t rmq_throttle_allowance(rmq_throttle_t *t, int64_t now, int64_t wall_ms);
/* A message starts now. */
void rmq_throttle_take(rmq_throttle_t *t, int64_t now);
/* When the allowance grows again (monotonic ms; 0: not enabled). */
int64_t rmq_throttle_next(const rmq_throttle_t *t);

/* Gives a received message back to its queue.  A failed delivery (a flow's
 * requeue) is `modified` with delivery-failed on 4.x (format V2), which
 * every 4.x counts as a failed delivery (a quorum queue's x-delivery-count
 * and delivery limit; a `released` one only up to 4.2); 3.x refuses
 * `modified` and takes `released`.  A message cmi gives back without a
 * flow's verdict (stopping, never mediated) is `released`. */
void rmq_requeue_outcome(pn_delivery_t *pd, int failed, int format);

/* How often the message was dead-lettered from queue: the count of its
 * x-opt-deaths entry for queue (RabbitMQ 4.x's AMQP 1.0 annotation; 3.x
 * gives AMQP 1.0 consumers none), -1 when there is none. */
int64_t rmq_message_death_count(pn_message_t *m, const char *queue);

/* m (a received message) re-encoded for the final dead-letter target
 * (rmq_final.c) without what the broker added on the way; key gets its
 * x-routing-key annotation ("" without).  NULL when it cannot be encoded. */
char *rmq_message_for_final(pn_message_t *m, size_t raw_len, size_t *len, char *key, size_t key_size);

/* ---- a stream consumer's offset (rmq_offsets.c) ------------------------------------- */

typedef struct rmq_offset_store rmq_offset_store_t;

/* The file of the endpoint's offset on queue, under the state directory
 * (CMI_STATE_DIRECTORY, else systemd's STATE_DIRECTORY, else
 * $XDG_STATE_HOME/cmi or ~/.local/state/cmi), its folder made (0700).
 * NULL with err when the folder cannot be made. */
rmq_offset_store_t *rmq_offset_store_open(const char *endpoint, const char *queue, char *err, size_t n);
const char *rmq_offset_store_path(const rmq_offset_store_t *s);
/* 1 with the stored offset, 0 when none is stored, -1 with err. */
int rmq_offset_store_load(rmq_offset_store_t *s, int64_t *offset, char *err, size_t n);
/* Written whole, synced and renamed into place.  0, or -1 with err. */
int rmq_offset_store_save(rmq_offset_store_t *s, int64_t offset, char *err, size_t n);
void rmq_offset_store_close(rmq_offset_store_t *s);

/* A received message decoded: in's strings point into it. */
typedef struct {
    rmq_incoming_t in;
    pn_message_t *m;
    int own_m; /* made by the decode, freed by the dispose */
    char *body;
    char *strings;
    cmi_nv_t *props;
    char message_id[128];
    char correlation_id[128];
    char filter_value[256];
} rmq_decoded_t;

/* Decodes raw (one encoded AMQP message): its body is one data section (or
 * several, joined) or an amqp-value string or binary; anything else is not
 * something to mediate.  Returns 0, or -1 with why (a static text).
 * dm is to be disposed of either way.  reuse: the caller's message, cleared
 * and decoded into (a consumer keeps one: making and freeing proton's
 * message, some 25 allocations, was a tenth of the decode), or NULL for one
 * of dm's own. */
int rmq_message_decode(rmq_decoded_t *dm, pn_message_t *reuse, const char *raw, size_t len, const char **why);
void rmq_decoded_dispose(rmq_decoded_t *dm);

/* Encodes spec as one AMQP message with a single data section, durable.
 * Returns the malloc'd bytes and their length, or NULL with err. */
char *rmq_message_encode(const rmq_message_spec_t *spec, size_t *len, char *err, size_t n);

/* A publish's result for responseVariable (docs/rabbitmq.md, "publishMessage"): success "true" on
 * accepted; "false" with error 701203 on rejected, released or modified. */
json_t *rmq_publish_result(const rmq_pub_t *pub);

/* ---- publishes --------------------------------------------------------------------- */

/* Where a publish is, for the deadline's choice of error: not yet on a
 * connection (701201), or on one waiting for a declaration, credit or the
 * outcome (701204). */
typedef enum { RMQ_PUB_QUEUED, RMQ_PUB_WAITING, RMQ_PUB_ROUTED, RMQ_PUB_SENT } rmq_pub_stage_t;
typedef enum {
    RMQ_OUT_NONE,
    RMQ_OUT_ACCEPTED,
    RMQ_OUT_REJECTED,
    RMQ_OUT_RELEASED,
    RMQ_OUT_MODIFIED,
    RMQ_OUT_ERROR
} rmq_outcome_t;

/* Called on the pool thread once with the publish's outcome (or when its
 * deadline passed: cancelled is set); owns the publish from then on. */
typedef void (*rmq_pub_done_fn)(rmq_pub_t *pub);

/* One publish in flight: built on the worker, owned by the pool's thread
 * until it calls done. */
struct rmq_pub {
    TAILQ_ENTRY(rmq_pub) entry; /* in exactly one list at a time */
    struct rmq_conn *conn;      /* the connection it is in flight on */
    struct rmq_link *link;      /* its sender while pending or in flight */
    rmq_target_t target;
    char *bytes; /* the encoded message */
    size_t len;
    char *message_id;
    int confirm;
    atomic_int stage;     /* rmq_pub_stage_t: what the deadline found */
    atomic_int cancelled; /* the deadline ended the call */
    int attempts;         /* connections it was in flight on */
    uint64_t sent_ns;     /* when it went to the broker (the confirm latency) */
    struct rmq_stats *stats; /* its pool's counters (rmq_pool_submit) */
    rmq_pub_done_fn done;
    void *arg; /* the operation's */
    /* The outcome, set by the pool thread before done. */
    rmq_outcome_t outcome;
    int err_code;
    char err_detail[384];
    /* Its queue was not found (4.x): asked again at retry_at, at most until
     * missing_until (rmq_send.c, "missing queues"). */
    int64_t retry_at;
    int64_t missing_until;
    int64_t backoff_ms;
};

typedef struct {
    TAILQ_HEAD(, rmq_pub) q;
    size_t n;
} rmq_pub_list_t;

void rmq_pub_list_init(rmq_pub_list_t *l);
void rmq_pub_list_push(rmq_pub_list_t *l, rmq_pub_t *p);
void rmq_pub_list_remove(rmq_pub_list_t *l, rmq_pub_t *p);
rmq_pub_t *rmq_pub_list_pop(rmq_pub_list_t *l);
/* Moves every element of from to the end of to. */
void rmq_pub_list_splice(rmq_pub_list_t *to, rmq_pub_list_t *from);
/* Hands pub to its completion callback with an error. */
void rmq_pub_fail(rmq_pub_t *pub, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void rmq_pub_fail_list(rmq_pub_list_t *l, int code, const char *detail);
/* Counts pub's outcome in its pool's counters, then hands it to its
 * completion callback. */
void rmq_pub_complete(rmq_pub_t *pub);
void rmq_pub_free(rmq_pub_t *pub);


/* ---- refused addresses (rmq_refused.c) ----------------------------------------- */

/* Addresses the broker refused: for a while, publishes to one fail at once
 * with the broker's reason instead of attaching again.  The while doubles
 * with each refusal (RMQ_REFUSED_FIRST_MS to RMQ_REFUSED_MAX_MS) and starts
 * afresh once an attach succeeds; at most RMQ_REFUSED_MAX addresses are
 * remembered, the one refused longest ago forgotten first (a request can
 * name any number of them).  One thread's (the pool's); times in ms. */
#define RMQ_REFUSED_FIRST_MS 1000
#define RMQ_REFUSED_MAX_MS 30000
#define RMQ_REFUSED_MAX 256

typedef struct rmq_refusals rmq_refusals_t;

rmq_refusals_t *rmq_refusals_create(void);
void rmq_refusals_destroy(rmq_refusals_t *rs);
/* The broker's reason while address is held, else NULL (cheap when nothing
 * is remembered: the clock is read only for a remembered address). */
const char *rmq_refusals_check(rmq_refusals_t *rs, const char *address, int64_t (*now)(void));
/* Remembers a refusal; returns how long the address is held. */
int64_t rmq_refusals_add(rmq_refusals_t *rs, const char *address, const char *why, int64_t now);
/* An attach to address succeeded: its next refusal starts the back-off afresh. */
void rmq_refusals_clear(rmq_refusals_t *rs, const char *address);
size_t rmq_refusals_count(const rmq_refusals_t *rs);

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
/* Any thread: run(arg, stopping) on the management thread, after what was
 * submitted before (a slow task that must not hold the pool's thread: a
 * TLS diagnosis); stopping: the pool is going, run only frees arg.  Every
 * task runs once, before rmq_mgmt_destroy() returns. */
typedef void (*rmq_mgmt_run_fn)(void *arg, int stopping);
void rmq_mgmt_run(rmq_mgmt_t *m, rmq_mgmt_run_fn run, void *arg);

/* ---- RabbitMQ 4.x management node (encoding, tested without a broker) ---------- */

/* Encodes one declaration as an HTTP-over-AMQP request message for the
 * /management node.  Returns malloc'd bytes, or NULL with err. */
char *rmq_v2_request_encode(const rmq_declare_t *d, const char *message_id, size_t *len, char *err, size_t n);
/* Reads the status of a /management response ("201" in the subject);
 * returns 0 when it means success, else the status it names (409, ...), or
 * -1 when it names none or cannot be read, with a detail. */
int rmq_v2_response_status(const char *bytes, size_t len, char *correlation, size_t corr_size, char *detail,
                           size_t n);
/* The error code of a declaration a management API refused with an HTTP
 * status (3.x's API, 4.x's /management node) and the broker's reason. */
int rmq_declare_refusal_code(long status, const char *reason);

#endif
