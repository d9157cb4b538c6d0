/* The inbound endpoint (docs/rabbitmq.md, "The inbound endpoint") and the
 * decisions on what it delivers ("Decisions: accept, discard, requeue"):
 * <inboundEndpoint class="org.wso2.carbon.inbound.rabbitmq.RabbitMQListener">
 * with MI's parameter names, and rabbitmq.accept / discard / requeue.
 *
 * The endpoint has a connection pool of its own (its parameters name the
 * servers); its receivers hand each message to mediation through the host's
 * inject(), on the workers, and the flow's decision settles it. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rmq_consume.h"
#include "rmq_ops.h"
#include "rmq_params.h"
#include "rmq_oauth2.h"
#include "rmq_tls.h"

/* ---- parameters ------------------------------------------------------------------ */

enum {
    RMQ_L_FACTORY, RMQ_L_HOSTS, RMQ_L_PORTS, RMQ_L_VHOST, RMQ_L_USER, RMQ_L_PASSWORD, RMQ_L_SASL,
    RMQ_L_SSL_ENABLED, RMQ_L_SSL_KEYSTORE, RMQ_L_SSL_KEYSTORE_TYPE, RMQ_L_SSL_KEYSTORE_PASSWORD, RMQ_L_SSL_TRUSTSTORE,
    RMQ_L_SSL_TRUSTSTORE_TYPE, RMQ_L_SSL_TRUSTSTORE_PASSWORD, RMQ_L_SSL_VERSION, RMQ_L_SSL_TRUST_EVERYTHING,
    RMQ_L_SSL_HOSTNAME_VERIFICATION, RMQ_L_SSL_HOSTNAME_VERIFY,
    RMQ_L_OAUTH2_ENABLED, RMQ_L_OAUTH2_TOKEN_ENDPOINT, RMQ_L_OAUTH2_CLIENT_ID, RMQ_L_OAUTH2_CLIENT_SECRET,
    RMQ_L_OAUTH2_GRANT_TYPE, RMQ_L_OAUTH2_USER, RMQ_L_OAUTH2_PASSWORD, RMQ_L_OAUTH2_CA_FILE,
    RMQ_L_IDLE_TIMEOUT, RMQ_L_RETRY_COUNT, RMQ_L_RETRY_INTERVAL, RMQ_L_RECOVERY_POLICY, RMQ_L_RECOVERY_INITIAL_DELAY,
    RMQ_L_RECOVERY_INTERVAL, RMQ_L_RECOVERY_TIMEOUT,
    /* cmi's earlier names of the four above whose MI names differ */
    RMQ_L_OLD_RETRY_COUNT, RMQ_L_OLD_RETRY_INTERVAL, RMQ_L_OLD_RECOVERY_INTERVAL, RMQ_L_OLD_RECOVERY_TIMEOUT,
    RMQ_L_Q,                                   /* RMQ_Q_COUNT rows: the queue's options */
    RMQ_L_X = RMQ_L_Q + RMQ_Q_COUNT,           /* RMQ_X_COUNT rows: the exchange's options */
    RMQ_L_STREAM_MEMBERS = RMQ_L_X + RMQ_X_COUNT,
    /* a stream consumer's options */
    RMQ_L_STREAM_FILTERS, RMQ_L_STREAM_MATCH_UNFILTERED, RMQ_L_STREAM_OFFSET_VALUE, RMQ_L_STREAM_OFFSET_STRATEGY,
    RMQ_L_STREAM_FLUSH_INTERVAL, RMQ_L_STREAM_SHUTDOWN_TIMEOUT,
    RMQ_L_BEHAVIOR, RMQ_L_SEQUENTIAL, RMQ_L_COORDINATION,
    RMQ_L_AUTO_ACK, RMQ_L_ACK_WAIT, RMQ_L_CREDIT, RMQ_L_CONSUMERS, RMQ_L_POOL_SIZE, RMQ_L_OLD_POOL_SIZE,
    RMQ_L_REQUEUE_DELAY, RMQ_L_CONTENT_TYPE, RMQ_L_CONTENT_ENCODING,
    RMQ_L_DL_EXCHANGE, RMQ_L_DL_EXCHANGE_TYPE, RMQ_L_DL_EXCHANGE_AUTO_DECLARE, RMQ_L_DL_ROUTING_KEY, RMQ_L_DL_QUEUE,
    RMQ_L_DL_QUEUE_TYPE, RMQ_L_DL_QUEUE_AUTO_DECLARE, RMQ_L_MAX_DL_COUNT,
    RMQ_L_FINAL_QUEUE, RMQ_L_FINAL_QUEUE_TYPE, RMQ_L_FINAL_QUEUE_AUTO_DECLARE, RMQ_L_FINAL_EXCHANGE,
    RMQ_L_FINAL_EXCHANGE_TYPE, RMQ_L_FINAL_EXCHANGE_AUTO_DECLARE, RMQ_L_FINAL_ROUTING_KEY,
    RMQ_L_DLP_RETRY_INTERVAL, RMQ_L_DLP_RETRY_COUNT, RMQ_L_DLP_FACTOR, RMQ_L_DLP_ACK_WAIT, RMQ_L_DLP_SHUTDOWN,
    RMQ_L_THROTTLE_ENABLED, RMQ_L_THROTTLE_MODE, RMQ_L_THROTTLE_TIME_UNIT, RMQ_L_THROTTLE_COUNT,
    RMQ_L_LEGACY_ROUTING_KEY, /* older MI's protocol="rabbitmq" name of rabbitmq.routing.key */
    RMQ_L_CLASSIC_DL_STRATEGY, RMQ_L_CLASSIC_REQUEUE_AS_DISCARD,
    RMQ_L_ADDRESS_FORMAT, RMQ_L_MGMT_URL, RMQ_L_MGMT_USER, RMQ_L_MGMT_PASSWORD,
    RMQ_L_COUNT
};

typedef struct {
    cmi_params_head_t head;
    const char *factory;
    cmi_param_list_t hosts;
    cmi_param_list_t ports;
    const char *vhost;
    const char *user;
    const char *password;
    int sasl;
    int ssl_enabled;
    const char *ssl_keystore, *ssl_keystore_password;
    int ssl_keystore_type;
    const char *ssl_truststore, *ssl_truststore_password, *ssl_version;
    int ssl_truststore_type;
    int ssl_trust_everything, ssl_hostname_verification, ssl_hostname_verify;
    int oauth2_enabled;
    const char *oauth2_token_endpoint, *oauth2_client_id, *oauth2_client_secret;
    int oauth2_grant_type;
    const char *oauth2_user, *oauth2_password, *oauth2_ca_file;
    uint64_t idle_timeout_ms;
    int64_t retry_count;
    uint64_t retry_interval_ms;
    int recovery_policy;
    uint64_t recovery_initial_delay_ms, recovery_interval_ms, recovery_timeout_ms;
    rmq_queue_opts_t queue;
    rmq_exchange_opts_t exchange;
    const char *behavior, *sequential, *coordination; /* MI's polling and clustering switches */
    int auto_ack;
    uint64_t ack_wait_ms;
    int64_t credit;
    int64_t consumers;
    int64_t pool_size;
    cmi_param_list_t stream_filters;
    int64_t stream_offset_value;
    int stream_offset_strategy;
    int stream_match_unfiltered;
    int64_t stream_flush_interval, stream_shutdown_timeout;
    int throttle_enabled;
    int classic_dl_strategy;
    int classic_requeue_as_discard;
    int throttle_mode, throttle_time_unit;
    int64_t throttle_count;
    uint64_t requeue_delay_ms;
    const char *content_type;
    const char *content_encoding;
    const char *dl_exchange;
    int dl_exchange_type;
    int dl_exchange_auto_declare;
    const char *dl_routing_key;
    const char *dl_queue;
    int dl_queue_type;
    int dl_queue_auto_declare;
    int64_t max_dl_count;
    const char *final_queue;
    int final_queue_type;
    int final_queue_auto_declare;
    const char *final_exchange;
    int final_exchange_type;
    int final_exchange_auto_declare;
    const char *final_routing_key;
    uint64_t dlp_retry_interval_ms;
    int64_t dlp_retry_count;
    const char *dlp_factor;
    uint64_t dlp_ack_wait_ms;
    uint64_t dlp_shutdown_ms;
    int address_format;
    cmi_param_list_t mgmt_url;
    const char *mgmt_user, *mgmt_password;
} listener_params_t;

static const char *const sasl_names[] = {"PLAIN", "EXTERNAL", "ANONYMOUS", NULL};
static const char *const store_names[] = {"PEM", "PKCS12", "JKS", NULL};
static const char *const grant_names[] = {"client_credentials", "password", NULL};
static const char *const policy_names[] = {"FIXED", "FIXED_WITH_INITIAL_DELAY", "FIXED_WITH_INITIAL_DELAY_AND_TIMEOUT",
                                           "EXPONENTIAL_WITH_JITTER", NULL};
static const char *const format_names[] = {"auto", "v1", "v2", NULL};
/* In the order of RMQ_THROTTLE_* (rmq.h). */
static const char *const throttle_mode_names[] = {"BATCH", "FIXED_INTERVAL", NULL};
static const char *const throttle_unit_names[] = {"MINUTE", "HOUR", "DAY", NULL};

enum { RMQ_CLASSIC_DLS_NON_RETRYABLE, RMQ_CLASSIC_DLS_FIXED_DELAY };
/* MI's ConsumerBuilder.StreamOffsetSpecification, and RabbitMQ's names. */
static const char *const stream_strategy_names[] = {"FIRST", "LAST", "NEXT", NULL};
static const char *const stream_strategy_specs[] = {"first", "last", "next"};
static const char *const classic_dls_names[] = {"NON_RETRYABLE_DISCARD", "FIXED_DELAY_RETRYABLE_DISCARD", NULL};

#define L listener_params_t
#define S CMI_PARAM_STRING
#define B CMI_PARAM_BOOL
#define DUR CMI_PARAM_DURATION
static const cmi_param_def_t listener_params[] = {
    [RMQ_L_FACTORY] = CMI_PARAM("rabbitmq.connection.factory", S, CMI_PARAM_IGNORED, L, factory, NULL,
                                "MI's connection factory name (the connection is given here); ignored"),
    [RMQ_L_HOSTS] = CMI_PARAM("rabbitmq.server.host.name", CMI_PARAM_LIST, CMI_PARAM_REQUIRED, L, hosts, NULL,
                              "host,host,...: the nodes of one cluster"),
    [RMQ_L_PORTS] = CMI_PARAM("rabbitmq.server.port", CMI_PARAM_LIST, 0, L, ports, "5672",
                              "port,port,... zipped with the hosts (one port: for every host; default 5671 "
                              "with TLS)"),
    [RMQ_L_VHOST] = CMI_PARAM("rabbitmq.server.virtual.host", S, 0, L, vhost, "/", "virtual host"),
    [RMQ_L_USER] = CMI_PARAM("rabbitmq.server.user.name", S, 0, L, user, NULL, "user for PLAIN"),
    [RMQ_L_PASSWORD] = CMI_PARAM("rabbitmq.server.password", S, CMI_PARAM_SECRET, L, password, NULL,
                                 "password for PLAIN ($SYSTEM:NAME, $FILE:PATH)"),
    [RMQ_L_SASL] = CMI_PARAM_CHOICE("rabbitmq.connection.sasl.mechanism", 0, L, sasl, "PLAIN", "SASL mechanism",
                                    sasl_names),
    [RMQ_L_SSL_ENABLED] = CMI_PARAM("rabbitmq.connection.ssl.enabled", B, 0, L, ssl_enabled, "false",
                                    "TLS to the broker (the port defaults to 5671)"),
    [RMQ_L_SSL_KEYSTORE] = CMI_PARAM("rabbitmq.connection.ssl.keystore.location", S, CMI_PARAM_FILE, L, ssl_keystore, NULL,
                                     "client certificate and key (PEM or PKCS#12)"),
    [RMQ_L_SSL_KEYSTORE_TYPE] = CMI_PARAM_CHOICE("rabbitmq.connection.ssl.keystore.type", 0, L, ssl_keystore_type,
                                                 NULL, "PEM or PKCS12 (detected when left out)", store_names),
    [RMQ_L_SSL_KEYSTORE_PASSWORD] = CMI_PARAM("rabbitmq.connection.ssl.keystore.password", S, CMI_PARAM_SECRET, L,
                                              ssl_keystore_password, NULL, "key store password"),
    [RMQ_L_SSL_TRUSTSTORE] = CMI_PARAM("rabbitmq.connection.ssl.truststore.location", S, CMI_PARAM_FILE, L, ssl_truststore, NULL,
                                       "CA certificates (PEM or PKCS#12; default: the system's)"),
    [RMQ_L_SSL_TRUSTSTORE_TYPE] = CMI_PARAM_CHOICE("rabbitmq.connection.ssl.truststore.type", 0, L,
                                                   ssl_truststore_type, NULL,
                                                   "PEM or PKCS12 (detected when left out)", store_names),
    [RMQ_L_SSL_TRUSTSTORE_PASSWORD] = CMI_PARAM("rabbitmq.connection.ssl.truststore.password", S, CMI_PARAM_SECRET,
                                                L, ssl_truststore_password, NULL, "trust store password"),
    [RMQ_L_SSL_VERSION] = CMI_PARAM("rabbitmq.connection.ssl.version", S, 0, L, ssl_version, "TLSv1.2",
                                    "lowest TLS version: TLSv1.2 (1.2 and 1.3) or TLSv1.3"),
    [RMQ_L_SSL_TRUST_EVERYTHING] = CMI_PARAM("rabbitmq.connection.ssl.trust.everything", B, 0, L,
                                             ssl_trust_everything, "false",
                                             "skip certificate verification (a warning at start-up)"),
    [RMQ_L_SSL_HOSTNAME_VERIFICATION] = CMI_PARAM("rabbitmq.connection.ssl.hostname.verification.enabled", B, 0, L,
                                                  ssl_hostname_verification, "true",
                                                  "check the broker's host name (false: a warning at start-up)"),
    [RMQ_L_SSL_HOSTNAME_VERIFY] = CMI_PARAM("rabbitmq.connection.ssl.hostname.verify.enabled", B, 0, L,
                                            ssl_hostname_verify, "true",
                                            "the name MI's inbound code reads for the row above; either false "
                                            "turns the check off"),
    [RMQ_L_OAUTH2_ENABLED] = CMI_PARAM("rabbitmq.connection.oauth2.enabled", B, 0, L, oauth2_enabled, "false",
                                       "OAuth2 tokens as the PLAIN password, renewed before they expire"),
    [RMQ_L_OAUTH2_TOKEN_ENDPOINT] = CMI_PARAM("rabbitmq.connection.oauth2.token.endpoint", S, 0, L,
                                              oauth2_token_endpoint, NULL, "OAuth2 token endpoint"),
    [RMQ_L_OAUTH2_CLIENT_ID] = CMI_PARAM("rabbitmq.connection.oauth2.client.id", S, 0, L, oauth2_client_id, NULL,
                                         "OAuth2 client id"),
    [RMQ_L_OAUTH2_CLIENT_SECRET] = CMI_PARAM("rabbitmq.connection.oauth2.client.secret", S, CMI_PARAM_SECRET, L,
                                             oauth2_client_secret, NULL, "OAuth2 client secret"),
    [RMQ_L_OAUTH2_GRANT_TYPE] = CMI_PARAM_CHOICE("rabbitmq.connection.oauth2.grant.type", 0, L, oauth2_grant_type,
                                                 "client_credentials", "OAuth2 grant type", grant_names),
    [RMQ_L_OAUTH2_USER] = CMI_PARAM("rabbitmq.connection.oauth2.username", S, 0, L, oauth2_user, NULL,
                                    "OAuth2 user"),
    [RMQ_L_OAUTH2_PASSWORD] = CMI_PARAM("rabbitmq.connection.oauth2.password", S, CMI_PARAM_SECRET, L,
                                        oauth2_password, NULL, "OAuth2 password"),
    [RMQ_L_OAUTH2_CA_FILE] = CMI_PARAM("rabbitmq.connection.oauth2.token.endpoint.ca.file", S, CMI_PARAM_FILE, L, oauth2_ca_file,
                                       NULL, "cmi's: CA certificates (PEM) for an https token endpoint, replacing "
                                       "the system's"),
    [RMQ_L_IDLE_TIMEOUT] = CMI_PARAM_RANGE("rabbitmq.connection.idle.timeout", DUR, 0, L, idle_timeout_ms, "60000",
                                           "AMQP idle timeout (heartbeats), ms", 0, 3600000),
    [RMQ_L_RETRY_COUNT] = CMI_PARAM_RANGE("rabbitmq.connection.establish.retry.count", CMI_PARAM_INT, 0, L,
                                          retry_count, "5", "retries of the first connect (-1: forever)", -1,
                                          1000000),
    [RMQ_L_RETRY_INTERVAL] = CMI_PARAM_RANGE("rabbitmq.connection.establish.retry.interval", DUR, 0, L,
                                             retry_interval_ms, "1000", "between first-connect retries, ms", 1,
                                             3600000),
    [RMQ_L_RECOVERY_POLICY] = CMI_PARAM_CHOICE("rabbitmq.connection.recovery.policy.type", 0, L, recovery_policy,
                                               "FIXED_WITH_INITIAL_DELAY_AND_TIMEOUT",
                                               "back-off after a lost connection (never gives up)", policy_names),
    [RMQ_L_RECOVERY_INITIAL_DELAY] = CMI_PARAM_RANGE("rabbitmq.connection.recovery.initial.delay", DUR, 0, L,
                                                     recovery_initial_delay_ms, "100", "first retry after a loss",
                                                     0, 3600000),
    [RMQ_L_RECOVERY_INTERVAL] = CMI_PARAM_RANGE("rabbitmq.connection.recovery.retry.interval", DUR, 0, L,
                                                recovery_interval_ms, "1000", "between retries", 1, 3600000),
    [RMQ_L_RECOVERY_TIMEOUT] = CMI_PARAM_RANGE("rabbitmq.connection.recovery.retry.timeout", DUR, 0, L,
                                               recovery_timeout_ms, "60000", "one back-off cycle (logged)", 1,
                                               86400000),
    /* No default: they only stand for the rows above (validate_listener
     * refuses both names of one). */
    [RMQ_L_OLD_RETRY_COUNT] = CMI_PARAM_RANGE("rabbitmq.connection.retry.count", CMI_PARAM_INT, 0, L, retry_count,
                                              NULL, "cmi's earlier name of rabbitmq.connection.establish.retry.count",
                                              -1, 1000000),
    [RMQ_L_OLD_RETRY_INTERVAL] = CMI_PARAM_RANGE("rabbitmq.connection.retry.interval", DUR, 0, L, retry_interval_ms,
                                                 NULL, "cmi's earlier name of "
                                                 "rabbitmq.connection.establish.retry.interval", 1, 3600000),
    [RMQ_L_OLD_RECOVERY_INTERVAL] = CMI_PARAM_RANGE("rabbitmq.connection.recovery.interval", DUR, 0, L,
                                                    recovery_interval_ms, NULL, "cmi's earlier name of "
                                                    "rabbitmq.connection.recovery.retry.interval", 1, 3600000),
    [RMQ_L_OLD_RECOVERY_TIMEOUT] = CMI_PARAM_RANGE("rabbitmq.connection.recovery.timeout", DUR, 0, L,
                                                   recovery_timeout_ms, NULL, "cmi's earlier name of "
                                                   "rabbitmq.connection.recovery.retry.timeout", 1, 86400000),
    RMQ_QUEUE_ROWS(RMQ_L_Q, L, queue, 0, "queue to consume (required)", "rabbitmq.queue.name",
                   "rabbitmq.queue.auto.declare", "rabbitmq.queue.type", "rabbitmq.queue.arguments",
                   "rabbitmq.classic.max.priority", "rabbitmq.quorum.initial.member.count",
                   "rabbitmq.quorum.delivery.limit", "rabbitmq.quorum.dead.letter.strategy", "rabbitmq.stream.max.age",
                   "rabbitmq.stream.max.segment.size", "rabbitmq.queue.exclusive", "rabbitmq.queue.auto.delete",
                   "rabbitmq.queue.overflow.strategy", "rabbitmq.classic.version"),
    RMQ_EXCHANGE_ROWS(RMQ_L_X, L, exchange, 0, "an exchange to declare and bind the queue to",
                      "rabbitmq.exchange.name", "rabbitmq.exchange.auto.declare", "rabbitmq.exchange.type",
                      "rabbitmq.routing.key", "rabbitmq.exchange.arguments",
                      "rabbitmq.header.exchange.binding.arguments", "rabbitmq.exchange.auto.delete"),
    [RMQ_L_STREAM_MEMBERS] = CMI_PARAM_RANGE("rabbitmq.stream.initial.member.count", CMI_PARAM_INT, 0, L,
                                             queue.initial_member_count, NULL,
                                             "x-initial-cluster-size (stream; the quorum row's value for a stream)",
                                             1, 1000),
    [RMQ_L_STREAM_FILTERS] = CMI_PARAM("rabbitmq.stream.filters", CMI_PARAM_LIST, 0, L, stream_filters, NULL,
                                       "a stream consumer's filter values, comma-separated: only messages whose "
                                       "x-stream-filter-value is one of them (RabbitMQ 4.x)"),
    [RMQ_L_STREAM_MATCH_UNFILTERED] = CMI_PARAM("rabbitmq.stream.filter.match.unfiltered", B, 0, L,
                                                stream_match_unfiltered, "false",
                                                "with filters, also messages without a filter value"),
    [RMQ_L_STREAM_OFFSET_VALUE] = CMI_PARAM_RANGE("rabbitmq.stream.offset.starting.value", CMI_PARAM_INT, 0, L,
                                                  stream_offset_value, NULL, "a stream consumer's first offset, at "
                                                  "every start (else the stored offset, else the strategy)", 0,
                                                  INT64_C(4611686018427387904)),
    [RMQ_L_STREAM_OFFSET_STRATEGY] = CMI_PARAM_CHOICE("rabbitmq.stream.offset.starting.strategy", 0, L,
                                                      stream_offset_strategy, "NEXT",
                                                      "where a stream consumer starts when no offset is stored: "
                                                      "FIRST, LAST or NEXT", stream_strategy_names),
    [RMQ_L_STREAM_FLUSH_INTERVAL] = CMI_PARAM_RANGE("rabbitmq.stream.offset.tracker.flush.interval", CMI_PARAM_INT,
                                                    0, L, stream_flush_interval, "10",
                                                    "seconds between saves of a stream consumer's offset", 1, 86400),
    [RMQ_L_STREAM_SHUTDOWN_TIMEOUT] = CMI_PARAM_RANGE("rabbitmq.stream.offset.tracker.shutdown.timeout",
                                                      CMI_PARAM_INT, 0, L, stream_shutdown_timeout, "5",
                                                      "MI's wait for its offset saver at shutdown, s: cmi saves "
                                                      "the offset as it stops, one small file written and synced",
                                                      1, 3600),
    [RMQ_L_BEHAVIOR] = CMI_PARAM("inbound.behavior", S, CMI_PARAM_IGNORED, L, behavior, NULL,
                                 "MI's polling or event-based switch: cmi's endpoint is always event-based"),
    [RMQ_L_SEQUENTIAL] = CMI_PARAM("sequential", S, CMI_PARAM_IGNORED, L, sequential, NULL,
                                   "MI's polling switch: no meaning for an event-based endpoint"),
    [RMQ_L_COORDINATION] = CMI_PARAM("coordination", S, CMI_PARAM_IGNORED, L, coordination, NULL,
                                     "MI's cluster coordination: each cmi consumes (the broker shares the queue)"),
    [RMQ_L_AUTO_ACK] = CMI_PARAM("rabbitmq.auto.ack.enabled", B, 0, L, auto_ack, "false",
                                 "accept on arrival (decisions are then ignored)"),
    [RMQ_L_ACK_WAIT] = CMI_PARAM_RANGE("rabbitmq.ack.wait.time", DUR, 0, L, ack_wait_ms, "180000",
                                       "a flow still running after this: the message is requeued, ms", 1, 86400000),
    [RMQ_L_CREDIT] = CMI_PARAM_RANGE("rabbitmq.consumer.initial.credit", CMI_PARAM_INT, 0, L, credit, "1",
                                     "messages in mediation at once, per consumer", 1, 100000),
    [RMQ_L_CONSUMERS] = CMI_PARAM_RANGE("rabbitmq.concurrent.consumers.count", CMI_PARAM_INT, 0, L, consumers, "1",
                                        "receivers on the queue", 1, 64),
    /* MI's docs give 1 as the default (MI's code reads another name, below,
     * with 10): the docs' default, as everywhere they and the code differ
     * (docs/rabbitmq.md, "Defaults"). */
    [RMQ_L_POOL_SIZE] = CMI_PARAM_RANGE("rabbitmq.message.receiver.thread.pool.size", CMI_PARAM_INT, 0, L, pool_size,
                                        "1", "messages of this endpoint in mediation at once, over all its receivers "
                                        "(MI's dispatching threads)", 1, 100000),
    [RMQ_L_OLD_POOL_SIZE] = CMI_PARAM_RANGE("rabbitmq.message.consumer.thread.pool.size", CMI_PARAM_INT, 0, L,
                                            pool_size, NULL,
                                            "the name MI's code reads for the row above (same meaning)", 1, 100000),
    [RMQ_L_REQUEUE_DELAY] = CMI_PARAM_RANGE("rabbitmq.message.requeue.delay", DUR, 0, L, requeue_delay_ms, "1000",
                                            "a flow over without a decision: requeued after this, ms", 0, 3600000),
    [RMQ_L_CONTENT_TYPE] = CMI_PARAM("rabbitmq.message.content.type", S, 0, L, content_type, NULL,
                                     "content type of messages that carry none (default text/plain)"),
    [RMQ_L_CONTENT_ENCODING] = CMI_PARAM("rabbitmq.message.content.encoding", S, 0, L, content_encoding, NULL,
                                         "charset of messages that carry none"),
    [RMQ_L_DL_EXCHANGE] = CMI_PARAM("rabbitmq.dead.letter.exchange.name", S, 0, L, dl_exchange, NULL,
                                    "x-dead-letter-exchange of the queue"),
    [RMQ_L_DL_EXCHANGE_TYPE] = CMI_PARAM_CHOICE("rabbitmq.dead.letter.exchange.type", 0, L, dl_exchange_type,
                                                "DIRECT", "its type", rmq_exchange_type_names),
    [RMQ_L_DL_EXCHANGE_AUTO_DECLARE] = CMI_PARAM("rabbitmq.dead.letter.exchange.auto.declare", B, 0, L,
                                                 dl_exchange_auto_declare, "false",
                                                 "declare the dead-letter exchange (else it was made by hand)"),
    [RMQ_L_DL_ROUTING_KEY] = CMI_PARAM("rabbitmq.dead.letter.routing.key", S, 0, L, dl_routing_key, NULL,
                                       "x-dead-letter-routing-key of the queue"),
    [RMQ_L_DL_QUEUE] = CMI_PARAM("rabbitmq.dead.letter.queue.name", S, 0, L, dl_queue, NULL,
                                 "the dead-letter queue, bound to the dead-letter exchange when declared"),
    [RMQ_L_DL_QUEUE_TYPE] = CMI_PARAM_CHOICE("rabbitmq.dead.letter.queue.type", 0, L, dl_queue_type, "CLASSIC",
                                             "its type", rmq_queue_type_names),
    [RMQ_L_DL_QUEUE_AUTO_DECLARE] = CMI_PARAM("rabbitmq.dead.letter.queue.auto.declare", B, 0, L,
                                              dl_queue_auto_declare, "false",
                                              "declare the dead-letter queue and bind it (else it was made by hand)"),
    [RMQ_L_MAX_DL_COUNT] = CMI_PARAM_RANGE("rabbitmq.max.dead.lettered.count", CMI_PARAM_INT, 0, L, max_dl_count,
                                           "-1", "with FIXED_DELAY_RETRYABLE_DISCARD on a classic queue: a message "
                                           "dead-lettered this many times goes to the final dead-letter target when "
                                           "discarded again (RabbitMQ 4.x; -1: never)", -1, 1000000000),
    [RMQ_L_FINAL_QUEUE] = CMI_PARAM("rabbitmq.final.dead.letter.queue.name", S, 0, L, final_queue, NULL,
                                    "the final dead-letter queue (published to when there is no final exchange)"),
    [RMQ_L_FINAL_QUEUE_TYPE] = CMI_PARAM_CHOICE("rabbitmq.final.dead.letter.queue.type", 0, L, final_queue_type,
                                                "CLASSIC", "its type, when declared", rmq_queue_type_names),
    [RMQ_L_FINAL_QUEUE_AUTO_DECLARE] = CMI_PARAM("rabbitmq.final.dead.letter.queue.auto.declare", B, 0, L,
                                                 final_queue_auto_declare, "false",
                                                 "declare the final queue (bound to the final exchange when there "
                                                 "is one)"),
    [RMQ_L_FINAL_EXCHANGE] = CMI_PARAM("rabbitmq.final.dead.letter.exchange.name", S, 0, L, final_exchange, NULL,
                                       "the final dead-letter exchange (published to with the final routing key)"),
    [RMQ_L_FINAL_EXCHANGE_TYPE] = CMI_PARAM_CHOICE("rabbitmq.final.dead.letter.exchange.type", 0, L,
                                                   final_exchange_type, "DIRECT", "its type, when declared",
                                                   rmq_exchange_type_names),
    [RMQ_L_FINAL_EXCHANGE_AUTO_DECLARE] = CMI_PARAM("rabbitmq.final.dead.letter.exchange.auto.declare", B, 0, L,
                                                    final_exchange_auto_declare, "false",
                                                    "declare the final exchange"),
    [RMQ_L_FINAL_ROUTING_KEY] = CMI_PARAM("rabbitmq.final.dead.letter.routing.key", S, 0, L, final_routing_key, NULL,
                                          "the routing key to the final exchange (default: the message's own)"),
    [RMQ_L_DLP_RETRY_INTERVAL] = CMI_PARAM_RANGE("rabbitmq.dead.letter.publisher.retry.interval", DUR, 0, L,
                                                 dlp_retry_interval_ms, "10000",
                                                 "before the first retry of a failed publish to the final target, "
                                                 "ms", 1, 86400000),
    [RMQ_L_DLP_RETRY_COUNT] = CMI_PARAM_RANGE("rabbitmq.dead.letter.publisher.retry.count", CMI_PARAM_INT, 0, L,
                                              dlp_retry_count, "3", "retries after the first attempt; then the "
                                              "original goes back to its queue (never lost)", 0, 1000),
    [RMQ_L_DLP_FACTOR] = CMI_PARAM("rabbitmq.dead.letter.publisher.retry.exponential.factor", S, 0, L, dlp_factor,
                                   "2.0", "each retry waits this times longer than the one before (1.0: fixed)"),
    [RMQ_L_DLP_ACK_WAIT] = CMI_PARAM_RANGE("rabbitmq.dead.letter.publisher.ack.wait.time", DUR, 0, L,
                                           dlp_ack_wait_ms, "30000", "an attempt without the broker's confirm by "
                                           "then failed, ms", 1, 86400000),
    [RMQ_L_DLP_SHUTDOWN] = CMI_PARAM_RANGE("rabbitmq.dead.letter.publisher.shutdown.timeout", DUR, 0, L,
                                           dlp_shutdown_ms, "180000", "at shutdown, how long messages on their "
                                           "way to the final target are waited for (the rest go back to the "
                                           "queue), ms", 0, 86400000),
    [RMQ_L_THROTTLE_ENABLED] = CMI_PARAM("rabbitmq.throttle.enabled", B, 0, L, throttle_enabled, "false",
                                         "limit the messages consumed per time unit (by credit: the rest stays "
                                         "in the broker)"),
    [RMQ_L_THROTTLE_MODE] = CMI_PARAM_CHOICE("rabbitmq.throttle.mode", 0, L, throttle_mode, "BATCH",
                                             "BATCH (count per window, a window ending at the next minute, hour or "
                                             "local midnight) or FIXED_INTERVAL (one every unit/count)",
                                             throttle_mode_names),
    [RMQ_L_THROTTLE_TIME_UNIT] = CMI_PARAM_CHOICE("rabbitmq.throttle.timeUnit", 0, L, throttle_time_unit, "MINUTE",
                                                  "the time unit of the count: MINUTE, HOUR or DAY",
                                                  throttle_unit_names),
    [RMQ_L_THROTTLE_COUNT] = CMI_PARAM_RANGE("rabbitmq.throttle.count", CMI_PARAM_INT, 0, L, throttle_count, NULL,
                                             "messages per time unit (required with throttling)", 1, 100000000),
    [RMQ_L_LEGACY_ROUTING_KEY] = CMI_PARAM("rabbitmq.queue.routing.key", S, 0, L, exchange.routing_key, NULL,
                                           "older MI's name of rabbitmq.routing.key"),
    [RMQ_L_CLASSIC_DL_STRATEGY] = CMI_PARAM_CHOICE("rabbitmq.classic.dead.letter.strategy", 0, L,
                                                   classic_dl_strategy, "NON_RETRYABLE_DISCARD",
                                                   "a classic queue's discarded messages: NON_RETRYABLE_DISCARD (to "
                                                   "its dead-letter exchange) or FIXED_DELAY_RETRYABLE_DISCARD (the "
                                                   "same, counted: rabbitmq.max.dead.lettered.count)",
                                                   classic_dls_names),
    [RMQ_L_CLASSIC_REQUEUE_AS_DISCARD] = CMI_PARAM("rabbitmq.classic.override.requeue.with.discard", B, 0, L,
                                                   classic_requeue_as_discard, "false",
                                                   "a classic queue's requeues become discards (dead-lettered): a "
                                                   "classic queue has no delivery limit"),
    [RMQ_L_ADDRESS_FORMAT] = CMI_PARAM_CHOICE("rabbitmq.address.format", 0, L, address_format, "auto",
                                              "auto (from the broker's version), v1 (3.x), v2 (4.x)", format_names),
    [RMQ_L_MGMT_URL] = CMI_PARAM("rabbitmq.management.url", CMI_PARAM_LIST, 0, L, mgmt_url, NULL,
                                 "cmi's: the HTTP management API of each node, for what 3.x cannot declare over "
                                 "AMQP 1.0 (exchanges, bindings, queues with arguments); default http://HOST:15672"),
    [RMQ_L_MGMT_USER] = CMI_PARAM("rabbitmq.management.username", S, 0, L, mgmt_user, NULL,
                                  "cmi's: the management API's user (default: rabbitmq.server.user.name; needed "
                                  "with EXTERNAL on 3.x)"),
    [RMQ_L_MGMT_PASSWORD] = CMI_PARAM("rabbitmq.management.password", S, CMI_PARAM_SECRET, L, mgmt_password, NULL,
                                      "cmi's: its password (default: rabbitmq.server.password)"),
    [RMQ_L_COUNT] = CMI_PARAM_END,
};
#undef L

/* One value under two names (MI's and cmi's earlier, or the quorum and
 * stream names of the member count): only one may be given. */
static int one_of(const void *params, unsigned a, unsigned b, char *err, size_t n)
{
    if (CMI_PARAM_GIVEN(params, a) && CMI_PARAM_GIVEN(params, b)) {
        snprintf(err, n, "%s and %s are one parameter: give one of them", listener_params[a].name,
                 listener_params[b].name);
        return -1;
    }
    return 0;
}

static int validate_names(const listener_params_t *p, char *err, size_t n)
{
    static const unsigned pairs[][2] = {
        {RMQ_L_RETRY_COUNT, RMQ_L_OLD_RETRY_COUNT},
        {RMQ_L_RETRY_INTERVAL, RMQ_L_OLD_RETRY_INTERVAL},
        {RMQ_L_RECOVERY_INTERVAL, RMQ_L_OLD_RECOVERY_INTERVAL},
        {RMQ_L_RECOVERY_TIMEOUT, RMQ_L_OLD_RECOVERY_TIMEOUT},
        {RMQ_L_Q + RMQ_Q_INITIAL_MEMBER_COUNT, RMQ_L_STREAM_MEMBERS},
        {RMQ_L_POOL_SIZE, RMQ_L_OLD_POOL_SIZE},
        {RMQ_L_X + RMQ_X_ROUTING_KEY, RMQ_L_LEGACY_ROUTING_KEY},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        if (one_of(p, pairs[i][0], pairs[i][1], err, n) != 0)
            return -1;
    if (p->queue.name == NULL) {
        snprintf(err, n, "rabbitmq.queue.name is required");
        return -1;
    }
    return 0;
}

/* MI counts dead-letterings only with FIXED_DELAY_RETRYABLE_DISCARD on a
 * classic queue (its other handlers ignore the count). */
static int final_applies(const listener_params_t *p)
{
    return p->max_dl_count >= 0 && p->classic_dl_strategy == RMQ_CLASSIC_DLS_FIXED_DELAY &&
           p->queue.type == RMQ_QUEUE_CLASSIC;
}

/* MI accepts and drops a message past the count when there is no final
 * target; cmi refuses the endpoint instead. */
static int validate_final(const listener_params_t *p, char *err, size_t n)
{
    char *end;
    double factor = strtod(p->dlp_factor, &end);
    if (*end != '\0' || end == p->dlp_factor || !(factor > 0.0 && factor <= 100.0)) {
        snprintf(err, n, "rabbitmq.dead.letter.publisher.retry.exponential.factor: '%s' is not a number from 0 to "
                 "100 (2.0 doubles each wait)", p->dlp_factor);
        return -1;
    }
    if (final_applies(p) && p->final_queue == NULL && p->final_exchange == NULL) {
        snprintf(err, n, "rabbitmq.max.dead.lettered.count needs rabbitmq.final.dead.letter.queue.name or "
                 "rabbitmq.final.dead.letter.exchange.name: where a message goes after its last retry (MI would "
                 "drop it)");
        return -1;
    }
    return 0;
}

/* Throttling needs its count. */
static int validate_unsupported(const listener_params_t *p, char *err, size_t n)
{
    if (p->throttle_enabled && !CMI_PARAM_GIVEN(p, RMQ_L_THROTTLE_COUNT)) {
        snprintf(err, n, "rabbitmq.throttle.enabled: throttling needs rabbitmq.throttle.count (messages per "
                 "rabbitmq.throttle.timeUnit)");
        return -1;
    }
    return 0;
}

static int validate_tls(const listener_params_t *p, char *err, size_t n)
{
    if (p->sasl == RMQ_SASL_EXTERNAL && (!p->ssl_enabled || p->ssl_keystore == NULL)) {
        snprintf(err, n, "rabbitmq.connection.sasl.mechanism EXTERNAL logs in with the client certificate: it needs "
                 "rabbitmq.connection.ssl.enabled=true and rabbitmq.connection.ssl.keystore.location");
        return -1;
    }
    if (p->ssl_keystore_type == RMQ_STORE_JKS || p->ssl_truststore_type == RMQ_STORE_JKS) {
        snprintf(err, n, "rabbitmq.connection.ssl.%s.type JKS cannot be read by cmi: convert it with `keytool "
                 "-importkeystore -srckeystore in.jks -destkeystore out.p12 -deststoretype PKCS12` and use PKCS12",
                 p->ssl_keystore_type == RMQ_STORE_JKS ? "keystore" : "truststore");
        return -1;
    }
    return p->ssl_enabled ? rmq_tls_check_version("rabbitmq.connection.ssl.version", p->ssl_version, err, n) : 0;
}

/* The connection config's rules, under the endpoint's names. */
static int validate_oauth2(const listener_params_t *p, char *err, size_t n)
{
    if (!p->oauth2_enabled)
        return 0;
    rmq_init_params_t i = {.sasl = p->sasl, .token_endpoint = p->oauth2_token_endpoint,
                           .grant_type = p->oauth2_grant_type, .client_id = p->oauth2_client_id,
                           .client_secret = p->oauth2_client_secret, .oauth2_user = p->oauth2_user,
                           .oauth2_password = p->oauth2_password};
    char why[400];
    if (rmq_oauth2_check(&i, why, sizeof(why)) == 0)
        return 0;
    snprintf(err, n, "rabbitmq.connection.oauth2.enabled: %s (MI's names: rabbitmq.connection.oauth2.token.endpoint, "
             ".client.id, .client.secret, .grant.type, .username, .password)", why);
    return -1;
}

static int validate_listener(const void *params, char *err, size_t n)
{
    const listener_params_t *p = params;
    if (validate_names(p, err, n) != 0)
        return -1;
    if (p->ports.count != 1 && p->ports.count != p->hosts.count) {
        snprintf(err, n, "rabbitmq.server.port lists %zu ports for %zu hosts: give one port, or one per host",
                 p->ports.count, p->hosts.count);
        return -1;
    }
    for (size_t i = 0; i < p->ports.count; i++) {
        char *end;
        long port = strtol(p->ports.items[i], &end, 10);
        if (*end != '\0' || port < 1 || port > 65535) {
            snprintf(err, n, "rabbitmq.server.port: '%s' is not a port number", p->ports.items[i]);
            return -1;
        }
    }
    if (p->sasl == RMQ_SASL_PLAIN && p->user == NULL && !p->oauth2_enabled) {
        snprintf(err, n, "rabbitmq.connection.sasl.mechanism PLAIN needs rabbitmq.server.user.name");
        return -1;
    }
    if (validate_tls(p, err, n) != 0 || validate_oauth2(p, err, n) != 0)
        return -1;
    if (validate_unsupported(p, err, n) != 0 || validate_final(p, err, n) != 0)
        return -1;
    if (p->dl_queue != NULL && p->dl_exchange == NULL) {
        snprintf(err, n, "rabbitmq.dead.letter.queue.name needs rabbitmq.dead.letter.exchange.name (the exchange "
                 "it is bound to)");
        return -1;
    }
    char why[256];
    json_t *args = rmq_parse_arguments(p->queue.arguments, why, sizeof(why));
    if (args == NULL) {
        snprintf(err, n, "rabbitmq.queue.arguments: %s", why);
        return -1;
    }
    json_decref(args);
    return 0;
}

/* ---- the listener's state ------------------------------------------------------------ */

typedef struct {
    cmi_listener_t *l;
    const listener_params_t *p;
    rmq_init_params_t init; /* the pool's connection parameters */
    char **urls;            /* host:port, zipped */
    rmq_pool_t *pool;
    int legacy; /* older MI's protocol="rabbitmq" endpoint */
    rmq_offset_store_t *offsets; /* a stream consumer's */
    char what[160];              /* "queue 'orders'", for readiness */
} listener_t;

static void listener_free(listener_t *ls)
{
    if (ls == NULL)
        return;
    for (size_t i = 0; i < ls->init.server_urls.count; i++)
        free(ls->urls[i]);
    free(ls->urls);
    rmq_offset_store_close(ls->offsets);
    free(ls);
}

static void mark_given(rmq_init_params_t *i, unsigned row)
{
    i->head.given[row / 64] |= UINT64_C(1) << (row % 64);
}

static void fill_tls(rmq_init_params_t *i, const listener_params_t *p)
{
    i->ssl_enabled = p->ssl_enabled;
    i->ssl_version = p->ssl_version;
    i->trust_everything = p->ssl_trust_everything;
    i->hostname_verification = p->ssl_hostname_verification && p->ssl_hostname_verify;
    i->keystore_location = p->ssl_keystore;
    i->keystore_password = p->ssl_keystore_password;
    i->keystore_type = p->ssl_keystore_type;
    if (CMI_PARAM_GIVEN(p, RMQ_L_SSL_KEYSTORE_TYPE))
        mark_given(i, RMQ_I_KEYSTORE_TYPE);
    i->truststore_location = p->ssl_truststore;
    i->truststore_password = p->ssl_truststore_password;
    i->truststore_type = p->ssl_truststore_type;
    if (CMI_PARAM_GIVEN(p, RMQ_L_SSL_TRUSTSTORE_TYPE))
        mark_given(i, RMQ_I_TRUSTSTORE_TYPE);
}

/* host:port of each host: the port given for it, else the only one given,
 * else AMQP's (5671 with TLS). */
static const char *port_of(const listener_params_t *p, size_t k)
{
    if (!CMI_PARAM_GIVEN(p, RMQ_L_PORTS))
        return p->ssl_enabled ? "5671" : "5672";
    return p->ports.items[p->ports.count == 1 ? 0 : k];
}

static void fill_init(listener_t *ls)
{
    const listener_params_t *p = ls->p;
    rmq_init_params_t *i = &ls->init;
    memset(i, 0, sizeof(*i));
    i->name = ls->l->name;
    ls->urls = rmq_xcalloc(p->hosts.count, sizeof(*ls->urls));
    for (size_t k = 0; k < p->hosts.count; k++)
        ls->urls[k] = rmq_xasprintf("%s:%s", p->hosts.items[k], port_of(p, k));
    i->server_urls = (cmi_param_list_t){(const char *const *)ls->urls, p->hosts.count};
    i->vhost = p->vhost;
    i->sasl = p->sasl;
    i->username = p->user;
    i->password = p->password;
    fill_tls(i, p);
    i->oauth2_enabled = p->oauth2_enabled;
    i->token_endpoint = p->oauth2_token_endpoint;
    i->grant_type = p->oauth2_grant_type;
    i->client_id = p->oauth2_client_id;
    i->client_secret = p->oauth2_client_secret;
    i->oauth2_user = p->oauth2_user;
    i->oauth2_password = p->oauth2_password;
    i->token_ca_file = p->oauth2_ca_file;
    i->idle_timeout_ms = p->idle_timeout_ms;
    i->retry_count = p->retry_count;
    i->retry_interval_ms = p->retry_interval_ms;
    i->recovery_policy = p->recovery_policy;
    i->recovery_initial_delay_ms = p->recovery_initial_delay_ms;
    i->recovery_interval_ms = p->recovery_interval_ms;
    i->recovery_timeout_ms = p->recovery_timeout_ms;
    i->pool_size = 1;
    i->max_in_flight = 1000;
    i->address_format = p->address_format;
    i->mgmt_url = p->mgmt_url;
    i->mgmt_user = p->mgmt_user;
    i->mgmt_password = p->mgmt_password;
}

/* The dead-letter exchange and queue, when the endpoint says to declare
 * them (MI's defaults: not; MI's examples make them by hand, a retry queue
 * with its own TTL, and a declaration without those arguments would be
 * refused), before the queue that names them; on 3.x too, through the
 * management API (the 3.x plugin declares a queue only for a link that
 * attaches to it).  A declared queue is bound with the dead-letter routing
 * key, else the consumed queue's name (the key a message published to that
 * queue keeps when it is dead-lettered). */
typedef struct {
    const char *exchange;
    int exchange_type, exchange_auto_declare;
    const char *routing_key; /* of the binding */
    const char *queue;
    int queue_type, queue_auto_declare;
} dl_names_t;

static int declare_first(const dl_names_t *dl_names, const char *vhost, rmq_target_t *t, char *err, size_t n)
{
    const dl_names_t *x = dl_names;
    int queue = x->queue != NULL && x->queue_auto_declare;
    if (!queue && !(x->exchange != NULL && x->exchange_auto_declare))
        return 0;
    rmq_target_spec_t q = {
        .queue = {.name = queue ? x->queue : NULL, .auto_declare = 1, .type = x->queue_type},
        .queue_set = 1u << RMQ_Q_TYPE,
        .exchange = {.name = x->exchange,
                     .auto_declare = x->exchange_auto_declare,
                     .type = x->exchange_type,
                     .routing_key = x->routing_key},
    };
    rmq_target_t dl;
    if (rmq_target_build(&dl, &q, vhost, err, n) != 0) {
        rmq_target_dispose(t);
        return -1;
    }
    for (size_t i = 0; i < dl.ndeclare; i++)
        dl.declare[i].on_v1 = 1;
    rmq_target_prepend(t, &dl);
    return 0;
}

static int dead_letter_first(const listener_params_t *p, rmq_target_t *t, char *err, size_t n)
{
    const dl_names_t dl = {p->dl_exchange, p->dl_exchange_type, p->dl_exchange_auto_declare,
                           p->dl_routing_key ? p->dl_routing_key : p->queue.name,
                           p->dl_queue, p->dl_queue_type, p->dl_queue_auto_declare};
    return declare_first(&dl, p->vhost, t, err, n);
}

/* The final dead-letter exchange and queue, when asked (MI's defaults:
 * not), bound with the final routing key, else the key the endpoint's
 * messages come with (the consumed queue's, or its name). */
static int final_first(const listener_params_t *p, rmq_target_t *t, char *err, size_t n)
{
    const char *key = p->final_routing_key ? p->final_routing_key
                      : p->exchange.routing_key ? p->exchange.routing_key : p->queue.name;
    const dl_names_t fin = {p->final_exchange, p->final_exchange_type, p->final_exchange_auto_declare, key,
                            p->final_queue, p->final_queue_type, p->final_queue_auto_declare};
    return declare_first(&fin, p->vhost, t, err, n);
}

/* The queue to consume, declared like a publish target would be, with
 * every queue and exchange option the endpoint gives. */
/* Older MI's protocol="rabbitmq" endpoint (AMQP 0.9.1) with the same
 * parameters: its queue is a classic one and is bound with the queue's
 * name as the routing key unless they are given (docs/rabbitmq.md, "The
 * legacy rabbitmq protocol"). */
static void legacy_defaults(const listener_params_t *p, rmq_target_spec_t *q)
{
    if (!CMI_PARAM_GIVEN(p, RMQ_L_Q + RMQ_Q_TYPE))
        q->queue.type = RMQ_QUEUE_CLASSIC;
    if (q->exchange.name != NULL && q->exchange.routing_key == NULL)
        q->exchange.routing_key = q->queue.name;
}

static int consumer_target(const listener_params_t *p, int legacy, rmq_target_t *t, char *err, size_t n)
{
    rmq_target_spec_t q;
    rmq_target_spec_read(&q, p, RMQ_L_Q, &p->queue, RMQ_L_X, &p->exchange);
    q.dynamic = 0; /* an endpoint's values are static */
    if (legacy)
        legacy_defaults(p, &q);
    if (CMI_PARAM_GIVEN(p, RMQ_L_STREAM_MEMBERS))
        rmq_target_spec_set_queue(&q, RMQ_Q_INITIAL_MEMBER_COUNT);
    /* The dead-letter parameters become queue arguments. */
    char *args = rmq_xasprintf("%s%s%s%s%s%s%s", p->queue.arguments ? p->queue.arguments : "",
                               p->dl_exchange ? "," : "", p->dl_exchange ? "x-dead-letter-exchange=" : "",
                               p->dl_exchange ? p->dl_exchange : "", p->dl_routing_key ? "," : "",
                               p->dl_routing_key ? "x-dead-letter-routing-key=" : "",
                               p->dl_routing_key ? p->dl_routing_key : "");
    if (*args != '\0') {
        q.queue.arguments = args;
        rmq_target_spec_set_queue(&q, RMQ_Q_ARGUMENTS);
    }
    int rc = rmq_target_build(t, &q, p->vhost, err, n);
    free(args);
    if (rc == 0 && p->dl_exchange != NULL)
        rc = dead_letter_first(p, t, err, n);
    if (rc == 0 && final_applies(p))
        rc = final_first(p, t, err, n);
    if (rc == 0)
        rmq_target_ask_on_v1(t);
    return rc;
}

/* ---- messages in ------------------------------------------------------------------------ */

/* Pool thread: one message to mediate. */
static rmq_deliver_result_t deliver(void *arg, rmq_delivery_t *d, const rmq_incoming_t *m)
{
    listener_t *ls = arg;
    const listener_params_t *p = ls->p;
    if (m->redelivered) /* the pool's thread: its counters' one writer */
        rmq_stat_add(&ls->pool->stats.redelivered, 1);
    const char *type = m->content_type ? m->content_type : p->content_type ? p->content_type : "text/plain";
    const char *charset = m->content_encoding ? m->content_encoding : p->content_encoding;
    char ctype[256];
    if (charset != NULL && strstr(type, "charset=") == NULL)
        snprintf(ctype, sizeof(ctype), "%s; charset=%s", type, charset);
    else
        snprintf(ctype, sizeof(ctype), "%s", type);
    size_t nh = m->nprops + 5;
    cmi_nv_t *h = rmq_xcalloc(nh, sizeof(*h));
    size_t k = 0;
    for (size_t i = 0; i < m->nprops; i++)
        h[k++] = m->props[i];
    h[k++] = (cmi_nv_t){"rabbitmq.message.correlation.id", m->correlation_id};
    h[k++] = (cmi_nv_t){"rabbitmq.message.id", m->message_id};
    h[k++] = (cmi_nv_t){"rabbitmq.message.redelivered", m->redelivered ? "true" : "false"};
    if (m->reply_to != NULL)
        h[k++] = (cmi_nv_t){"RABBITMQ_REPLY_TO", m->reply_to};
    char count[24];
    if (m->delivery_count >= 0) { /* as AMQP 0.9.1 consumers (MI's older endpoint) see it */
        snprintf(count, sizeof(count), "%lld", (long long)m->delivery_count);
        h[k++] = (cmi_nv_t){"x-delivery-count", count};
    }
    cmi_prop_t props[] = {{CMI_SCOPE_AXIS2, "rabbitmq.message.correlation.id", m->correlation_id}};
    cmi_injection_t in = {m->body, m->len, ctype, h, k, props, 1, d};
    /* The engine's own readers judge (its flows would fail on the same
     * bytes), on this thread, before the message takes a flow's slot; the
     * JSON tree they build is the one the flow reads. */
    char why[160];
    int rc = ls->l->host->inject_checked(ls->l, &in, why, sizeof(why));
    free(h);
    if (rc == -2) {
        ls->l->host->log(CMI_LOG_WARN, ls->l->component, "message %s is not valid %s (%s): discarded (the consumer "
                         "goes on)", m->message_id[0] ? m->message_id : "without id", type, why);
        return RMQ_DELIVER_UNUSABLE;
    }
    return rc == 0 ? RMQ_DELIVER_MEDIATING : RMQ_DELIVER_REFUSED;
}

/* ---- the listener's hooks ---------------------------------------------------------------- */

static void final_spec(cmi_listener_t *l, rmq_final_spec_t *f)
{
    const listener_params_t *p = l->params;
    if (!final_applies(p)) {
        if (p->max_dl_count >= 0)
            l->host->log(CMI_LOG_WARN, l->component, "rabbitmq.max.dead.lettered.count is ignored: it applies with "
                         "rabbitmq.classic.dead.letter.strategy FIXED_DELAY_RETRYABLE_DISCARD on a classic queue "
                         "(as in MI)");
        return;
    }
    *f = (rmq_final_spec_t){
        .enabled = 1,
        .max_dl = p->max_dl_count,
        .queue = p->queue.name,
        .vhost = p->vhost,
        .exchange = p->final_exchange,
        .routing_key = p->final_routing_key,
        .final_queue = p->final_queue,
        .retry_interval_ms = p->dlp_retry_interval_ms,
        .retry_count = p->dlp_retry_count,
        .factor = strtod(p->dlp_factor, NULL), /* checked at load */
        .ack_wait_ms = p->dlp_ack_wait_ms,
    };
}

/* A stream consumer (the stream options mean nothing for other queues, in
 * MI too): one receiver, as MI's (a stream gives every receiver every
 * message), and its offset kept in a file of its own. */
static void stream_spec(listener_t *ls, rmq_consumer_spec_t *spec)
{
    const listener_params_t *p = ls->p;
    const cmi_host_t *h = ls->l->host;
    if (p->queue.type != RMQ_QUEUE_STREAM)
        return;
    if (spec->links > 1)
        h->log(CMI_LOG_WARN, ls->l->component, "rabbitmq.concurrent.consumers.count %d: a stream is read by one "
               "receiver (each receiver of a stream gets every message), as in MI", spec->links);
    spec->links = 1;
    char why[512];
    ls->offsets = rmq_offset_store_open(ls->l->name, p->queue.name, why, sizeof(why));
    if (ls->offsets == NULL)
        h->log(CMI_LOG_ERROR, ls->l->component, "the stream's offset cannot be kept (%s): after a restart the "
               "consumer starts by rabbitmq.stream.offset.starting.strategy (set CMI_STATE_DIRECTORY)", why);
    spec->stream = (rmq_stream_spec_t){
        .enabled = 1,
        .strategy = stream_strategy_specs[p->stream_offset_strategy],
        .start = CMI_PARAM_GIVEN(p, RMQ_L_STREAM_OFFSET_VALUE) ? p->stream_offset_value : -1,
        .filters = p->stream_filters,
        .match_unfiltered = p->stream_match_unfiltered,
        .flush_ms = (uint64_t)p->stream_flush_interval * 1000,
        .store = ls->offsets,
    };
}

static int start_consuming(cmi_listener_t *l, int legacy, char *err, size_t n)
{
    listener_t *ls = rmq_xcalloc(1, sizeof(*ls));
    ls->l = l;
    ls->p = l->params;
    ls->legacy = legacy;
    fill_init(ls);
    rmq_consumer_spec_t spec;
    memset(&spec, 0, sizeof(spec));
    if (consumer_target(ls->p, legacy, &spec.target, err, n) != 0) {
        listener_free(ls);
        return -1;
    }
    static const rmq_feature_t *const features[] = {&rmq_consume_feature, NULL};
    ls->pool = rmq_pool_create(l->host, l->component, &ls->init, features, err, n);
    if (ls->pool == NULL) {
        rmq_target_dispose(&spec.target);
        listener_free(ls);
        return -1;
    }
    snprintf(ls->what, sizeof(ls->what), "%s", spec.target.describe);
    spec.links = (int)ls->p->consumers;
    spec.credit = (int)ls->p->credit;
    spec.max_mediating = (int)ls->p->pool_size;
    spec.requeue_as_discard = ls->p->classic_requeue_as_discard && ls->p->queue.type == RMQ_QUEUE_CLASSIC;
    spec.auto_ack = ls->p->auto_ack;
    spec.ack_wait_ms = ls->p->ack_wait_ms;
    spec.requeue_delay_ms = ls->p->requeue_delay_ms;
    if (ls->p->throttle_enabled)
        rmq_throttle_init(&spec.throttle, ls->p->throttle_mode, ls->p->throttle_time_unit, ls->p->throttle_count);
    final_spec(l, &spec.final);
    stream_spec(ls, &spec);
    spec.deliver = deliver;
    spec.arg = ls;
    rmq_pool_consume(ls->pool, &spec);
    l->data = ls;
    return 0;
}

static int listener_start(cmi_listener_t *l, char *err, size_t n)
{
    return start_consuming(l, 0, err, n);
}

static int legacy_start(cmi_listener_t *l, char *err, size_t n)
{
    return start_consuming(l, 1, err, n);
}

static void listener_stop(cmi_listener_t *l)
{
    listener_t *ls = l->data;
    rmq_pool_stop_consuming(ls->pool);
}

static void listener_destroy(cmi_listener_t *l)
{
    listener_t *ls = l->data;
    /* Messages on their way to the final dead-letter target get their
     * time (MI's shutdown timeout); what is left goes back to the queue. */
    rmq_pool_wait_finals(ls->pool, ls->p->dlp_shutdown_ms);
    rmq_pool_destroy(ls->pool); /* releases what is still unsettled */
    listener_free(ls);
    l->data = NULL;
}

/* The flow is over: its decision, or one from MI's properties, or none
 * (requeued after rabbitmq.message.requeue.delay). */
static void listener_done(cmi_listener_t *l, void *delivery, cmi_msg_t *msg, int outcome)
{
    (void)outcome;
    rmq_delivery_t *d = delivery;
    const cmi_host_t *h = l->host;
    const char *ack = h->msg_property(msg, CMI_SCOPE_DEFAULT, "ACKNOWLEDGE");
    const char *rollback = h->msg_property(msg, CMI_SCOPE_DEFAULT, "SET_ROLLBACK_ONLY");
    const char *requeue = h->msg_property(msg, CMI_SCOPE_DEFAULT, "SET_REQUEUE_ON_ROLLBACK");
    int decision = RMQ_DECIDE_NONE;
    if (requeue != NULL && strcasecmp(requeue, "true") == 0)
        decision = RMQ_DECIDE_REQUEUE;
    else if (rollback != NULL && strcasecmp(rollback, "true") == 0)
        decision = RMQ_DECIDE_DISCARD;
    else if (ack != NULL && strcasecmp(ack, "true") == 0)
        decision = RMQ_DECIDE_ACCEPT;
    /* Older MI's endpoint acknowledged a message whose flow ended without
     * asking for a rollback; the 1.0 endpoint requeues it after the delay. */
    const listener_t *ls = l->data;
    if (decision == RMQ_DECIDE_NONE && ls->legacy)
        decision = RMQ_DECIDE_ACCEPT;
    if (decision != RMQ_DECIDE_NONE)
        rmq_delivery_decide(d, decision);
    rmq_delivery_flow_done(d);
}

static const char *const listener_classes[] = {"org.wso2.carbon.inbound.rabbitmq.RabbitMQListener", NULL};
static const char *const no_classes[] = {NULL};

/* Readiness: a connection up and a receiver on the queue. */
static void listener_report(cmi_listener_t *l, cmi_report_t *r)
{
    listener_t *ls = l->data;
    int up = rmq_report_pool(l->host, r, ls->pool, ls->init.pool_size);
    rmq_report_consuming(l->host, r, ls->pool, up > 0 ? ls->what : NULL);
}

/* Both endpoint kinds: one parameter table, one set of hooks but start. */
#define LISTENER_COMMON                                                                                              \
    .params = listener_params, .params_size = sizeof(listener_params_t), .stop = listener_stop,                      \
    .destroy = listener_destroy, .done = listener_done, .validate = validate_listener, .report = listener_report

const cmi_listener_def_t rmq_listeners[] = {{
    .classes = listener_classes,
    .description = "consumes a queue (AMQP 1.0) and mediates each message in the endpoint's sequence; the flow "
                   "decides with rabbitmq.accept/discard/requeue or the ACKNOWLEDGE, SET_ROLLBACK_ONLY and "
                   "SET_REQUEUE_ON_ROLLBACK properties",
    .start = listener_start,
    LISTENER_COMMON,
}, {
    .classes = no_classes,
    .protocol = "rabbitmq",
    .description = "older MI's protocol=\"rabbitmq\" endpoint, served over AMQP 1.0 with the parameters above: a "
                   "classic queue unless rabbitmq.queue.type is given, bound with its own name as the routing key "
                   "unless rabbitmq.routing.key (or rabbitmq.queue.routing.key) is given, and acknowledged when its "
                   "flow ends without a rollback",
    .start = legacy_start,
    LISTENER_COMMON,
}, {.classes = NULL}};
#undef LISTENER_COMMON

/* ---- rabbitmq.accept / discard / requeue -------------------------------------------------- */

static int decide(cmi_call_t *call, int decision)
{
    const cmi_host_t *h = call->host;
    rmq_delivery_t *d = h->call_delivery(call);
    if (d == NULL)
        return h->call_fail(call, RMQ_ERR_OPERATION, RMQ_MSG_OPERATION,
                            "there is no RabbitMQ message to decide on: this message did not come from a RabbitMQ "
                            "inbound endpoint");
    int first = rmq_delivery_decide(d, decision);
    json_t *r = json_pack("{s:s, s:s}", "success", "true", "messageId", rmq_delivery_message_id(d));
    if (!first)
        json_object_set_new(r, "note", json_string("a decision was made already; the first one stands"));
    h->call_set_result(call, r);
    return CMI_FLOW_CONTINUE;
}

int rmq_accept_run(cmi_call_t *call)
{
    return decide(call, RMQ_DECIDE_ACCEPT);
}

int rmq_discard_run(cmi_call_t *call)
{
    return decide(call, RMQ_DECIDE_DISCARD);
}

int rmq_requeue_run(cmi_call_t *call)
{
    return decide(call, RMQ_DECIDE_REQUEUE);
}
