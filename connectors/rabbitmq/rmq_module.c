/* The RabbitMQ connector's descriptor: parameter tables with MI's names
 * (docs/rabbitmq.md, "Connection config" and "publishMessage"), the error
 * table ("Errors"), load-time validation, and the
 * connection config's lifecycle (one pool per <rabbitmq.init>). */
#include "config.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmq_consume.h"
#include "rmq_ops.h"
#include "rmq_params.h"
#include "rmq_oauth2.h"
#include "rmq_tls.h"

/* ---- checks ----------------------------------------------------------------- */

static int check_host_port(const cmi_param_def_t *def, const char *v, char *err, size_t n)
{
    (void)def;
    const char *colon = strrchr(v, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (colon == NULL || colon == v) {
        snprintf(err, n, "expected host:port");
        return -1;
    }
    if (end == colon + 1 || *end != '\0' || port < 1 || port > 65535) {
        snprintf(err, n, "the port is not a number from 1 to 65535");
        return -1;
    }
    return 0;
}

static int check_url(const cmi_param_def_t *def, const char *v, char *err, size_t n)
{
    (void)def;
    if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
        snprintf(err, n, "expected an http:// or https:// URL");
        return -1;
    }
    return 0;
}

/* A dynamicTargetPattern that does not compile is a load error. */
static int check_pattern(const cmi_param_def_t *def, const char *v, char *err, size_t n)
{
    (void)def;
    rmq_name_policy_t np;
    if (rmq_name_policy_init(&np, 0, v, err, n) != 0)
        return -1;
    rmq_name_policy_dispose(&np);
    return 0;
}

/* The two rows of what a request may choose, for publishMessage and sendRpc. */
#define RMQ_ROW_ALLOW_ADDRESS(T_)                                                                          \
    CMI_PARAM("allowDynamicAddress", CMI_PARAM_BOOL, 0, T_, allow_address, "false",                        \
              "take a queue from an expression that starts with / as an address (a reply-to)")
#define RMQ_ROW_TARGET_PATTERN(T_)                                                                         \
    {.name = "dynamicTargetPattern", .type = CMI_PARAM_STRING, .offset = offsetof(T_, target_pattern),   \
     .description = "POSIX extended regex that queue and exchange names from expressions must match wholly", \
     .check = check_pattern}

/* ---- <rabbitmq.init> ---------------------------------------------------------- */

static const char *const sasl_names[] = {"PLAIN", "EXTERNAL", "ANONYMOUS", NULL};
static const char *const grant_names[] = {"client_credentials", "password", NULL};
static const char *const store_names[] = {"PEM", "PKCS12", "JKS", NULL};
static const char *const policy_names[] = {"FIXED", "FIXED_WITH_INITIAL_DELAY", "FIXED_WITH_INITIAL_DELAY_AND_TIMEOUT",
                                           "EXPONENTIAL_WITH_JITTER", NULL};
static const char *const format_names[] = {"auto", "v1", "v2", NULL};

#define I rmq_init_params_t
#define S CMI_PARAM_STRING
#define SECRET CMI_PARAM_SECRET
static const cmi_param_def_t init_params[] = {
    [RMQ_I_NAME] = CMI_PARAM("name", S, CMI_PARAM_REQUIRED, I, name, NULL,
                             "connection name (also sent to the broker)"),
    [RMQ_I_CONNECTION_TYPE] = CMI_PARAM("connectionType", S, CMI_PARAM_IGNORED, I, connection_type, NULL,
                                        "written by MI's tooling (RABBITMQ); ignored"),
    [RMQ_I_SERVER_URLS] = {.name = "serverUrls", .type = CMI_PARAM_LIST, .flags = CMI_PARAM_REQUIRED,
                           .offset = offsetof(I, server_urls), .check = check_host_port,
                           .description = "host:port,host:port,...: the nodes of one cluster (failover list)"},
    [RMQ_I_VHOST] = CMI_PARAM("virtualHost", S, 0, I, vhost, "/", "virtual host"),
    [RMQ_I_SASL] = CMI_PARAM_CHOICE("saslMechanism", 0, I, sasl, "PLAIN", "SASL mechanism", sasl_names),
    [RMQ_I_USERNAME] = CMI_PARAM("username", S, 0, I, username, NULL, "user for PLAIN"),
    [RMQ_I_PASSWORD] = CMI_PARAM("password", S, SECRET, I, password, NULL,
                                 "password for PLAIN ($SYSTEM:NAME, $FILE:PATH)"),
    [RMQ_I_OAUTH2_ENABLED] = CMI_PARAM("oAuth2Enabled", CMI_PARAM_BOOL, 0, I, oauth2_enabled, "false",
                                       "fetch an OAuth2 token and present it as the PLAIN password, renewed before it expires"),
    [RMQ_I_TOKEN_ENDPOINT] = CMI_PARAM("tokenEndpoint", S, 0, I, token_endpoint, NULL, "OAuth2 token endpoint"),
    [RMQ_I_GRANT_TYPE] = CMI_PARAM_CHOICE("grantType", 0, I, grant_type, "client_credentials", "OAuth2 grant type",
                                          grant_names),
    [RMQ_I_CLIENT_ID] = CMI_PARAM("clientId", S, 0, I, client_id, NULL, "OAuth2 client id"),
    [RMQ_I_CLIENT_SECRET] = CMI_PARAM("clientSecret", S, SECRET, I, client_secret, NULL, "OAuth2 client secret"),
    [RMQ_I_OAUTH2_USER] = CMI_PARAM("oAuth2UserName", S, 0, I, oauth2_user, NULL, "OAuth2 user (password grant)"),
    [RMQ_I_OAUTH2_PASSWORD] = CMI_PARAM("oAuth2Password", S, SECRET, I, oauth2_password, NULL,
                                        "OAuth2 password (password grant)"),
    [RMQ_I_TOKEN_CA_FILE] = CMI_PARAM("tokenEndpointCaFile", S, CMI_PARAM_FILE, I, token_ca_file, NULL,
                                      "cmi's: CA certificates (PEM) for an https tokenEndpoint, replacing the "
                                      "system's"),
    [RMQ_I_SSL_ENABLED] = CMI_PARAM("sslEnabled", CMI_PARAM_BOOL, 0, I, ssl_enabled, "false",
                                    "TLS to the broker (amqps: give the TLS port in serverUrls)"),
    [RMQ_I_TRUST_EVERYTHING] = CMI_PARAM("trustEverything", CMI_PARAM_BOOL, 0, I, trust_everything, "false",
                                         "skip certificate verification (a warning at start-up)"),
    [RMQ_I_HOSTNAME_VERIFICATION] = CMI_PARAM("hostnameVerificationEnabled", CMI_PARAM_BOOL, 0, I,
                                              hostname_verification, "true",
                                              "check the broker's host name (false: a warning at start-up)"),
    [RMQ_I_SSL_VERSION] = CMI_PARAM("sslVersion", S, 0, I, ssl_version, "TLSv1.2",
                                    "lowest TLS version: TLSv1.2 (1.2 and 1.3) or TLSv1.3"),
    [RMQ_I_KEYSTORE_LOCATION] = CMI_PARAM("keyStoreLocation", S, CMI_PARAM_FILE, I, keystore_location, NULL,
                                          "client certificate and key (PEM or PKCS#12)"),
    [RMQ_I_KEYSTORE_PASSWORD] = CMI_PARAM("keyStorePassword", S, SECRET, I, keystore_password, NULL,
                                          "key store password"),
    [RMQ_I_KEYSTORE_TYPE] = CMI_PARAM_CHOICE("keyStoreType", 0, I, keystore_type, NULL,
                                             "PEM or PKCS12 (detected when left out)", store_names),
    [RMQ_I_TRUSTSTORE_LOCATION] = CMI_PARAM("trustStoreLocation", S, CMI_PARAM_FILE, I, truststore_location, NULL,
                                            "CA certificates (PEM or PKCS#12; default: the system's)"),
    [RMQ_I_TRUSTSTORE_PASSWORD] = CMI_PARAM("trustStorePassword", S, SECRET, I, truststore_password, NULL,
                                            "trust store password"),
    [RMQ_I_TRUSTSTORE_TYPE] = CMI_PARAM_CHOICE("trustStoreType", 0, I, truststore_type, NULL,
                                               "PEM or PKCS12 (detected when left out)", store_names),
    [RMQ_I_IDLE_TIMEOUT] = CMI_PARAM_RANGE("connectionIdleTimeout", CMI_PARAM_DURATION, 0, I, idle_timeout_ms,
                                           "60000", "AMQP idle timeout (heartbeats), ms", 0, 3600000),
    [RMQ_I_RETRY_COUNT] = CMI_PARAM_RANGE("connectionEstablishRetryCount", CMI_PARAM_INT, 0, I, retry_count, "3",
                                          "retries of the first connect (-1: forever)", -1, 1000000),
    [RMQ_I_RETRY_INTERVAL] = CMI_PARAM_RANGE("connectionEstablishRetryInterval", CMI_PARAM_DURATION, 0, I,
                                             retry_interval_ms, "1000", "between first-connect retries, ms", 1,
                                             3600000),
    [RMQ_I_RECOVERY_POLICY] = CMI_PARAM_CHOICE("connectionRecoveryPolicyType", 0, I, recovery_policy,
                                               "FIXED_WITH_INITIAL_DELAY_AND_TIMEOUT",
                                               "back-off after a lost connection (recovery never gives up)",
                                               policy_names),
    [RMQ_I_RECOVERY_INITIAL_DELAY] = CMI_PARAM_RANGE("connectionRecoveryInitialDelay", CMI_PARAM_DURATION, 0, I,
                                                     recovery_initial_delay_ms, "100", "first retry after a loss, ms",
                                                     0, 3600000),
    [RMQ_I_RECOVERY_INTERVAL] = CMI_PARAM_RANGE("connectionRecoveryInterval", CMI_PARAM_DURATION, 0, I,
                                                recovery_interval_ms, "1000",
                                                "between retries (the cap for EXPONENTIAL_WITH_JITTER), ms", 1,
                                                3600000),
    [RMQ_I_RECOVERY_TIMEOUT] = CMI_PARAM_RANGE("connectionRecoveryTimeout", CMI_PARAM_DURATION, 0, I,
                                               recovery_timeout_ms, "60000",
                                               "length of one back-off cycle (logged; recovery goes on), ms", 1,
                                               86400000),
    [RMQ_I_POOL_SIZE] = CMI_PARAM_RANGE("connectionPoolSize", CMI_PARAM_INT, 0, I, pool_size, "2",
                                        "connections, spread round-robin over serverUrls", 1, 64),
    [RMQ_I_MAX_IN_FLIGHT] = CMI_PARAM_RANGE("maxInFlight", CMI_PARAM_INT, 0, I, max_in_flight, "1000",
                                            "unsettled publishes per connection before a publish waits", 1, 1000000),
    [RMQ_I_ADDRESS_FORMAT] = CMI_PARAM_CHOICE("addressFormat", 0, I, address_format, "auto",
                                              "auto (from the broker's version), v1 (3.x), v2 (4.x)", format_names),
    [RMQ_I_MGMT_URL] = {.name = "managementUrl", .type = CMI_PARAM_LIST, .offset = offsetof(I, mgmt_url),
                        .check = check_url,
                        .description = "HTTP management API for 3.x declarations; several URLs (comma-separated) "
                                       "are tried in turn; default http://HOST:15672 for each server"},
    [RMQ_I_MGMT_USER] = CMI_PARAM("managementUsername", S, 0, I, mgmt_user, NULL,
                                  "management API user (default: username); needs the management tag"),
    [RMQ_I_MGMT_PASSWORD] = CMI_PARAM("managementPassword", S, SECRET, I, mgmt_password, NULL,
                                      "management API password (default: password)"),
    [RMQ_I_COUNT] = CMI_PARAM_END,
};
#undef I

/* Rules across the config's parameters, and what cmi cannot do yet. */
static int validate_init(const void *params, char *err, size_t n)
{
    const rmq_init_params_t *p = params;
    if (p->sasl == RMQ_SASL_PLAIN && p->username == NULL && !p->oauth2_enabled) {
        snprintf(err, n, "saslMechanism PLAIN needs a username (or use ANONYMOUS)");
        return -1;
    }
    if (p->keystore_type == RMQ_STORE_JKS && CMI_PARAM_GIVEN(p, RMQ_I_KEYSTORE_TYPE)) {
        snprintf(err, n, "keyStoreType JKS cannot be read by cmi: convert it with `keytool -importkeystore "
                 "-srckeystore in.jks -destkeystore out.p12 -deststoretype PKCS12` and use PKCS12");
        return -1;
    }
    if (p->truststore_type == RMQ_STORE_JKS && CMI_PARAM_GIVEN(p, RMQ_I_TRUSTSTORE_TYPE)) {
        snprintf(err, n, "trustStoreType JKS cannot be read by cmi: convert it to PKCS12 with keytool "
                 "-importkeystore, or export the CA certificates as PEM");
        return -1;
    }
    if (p->sasl == RMQ_SASL_EXTERNAL && (!p->ssl_enabled || p->keystore_location == NULL)) {
        snprintf(err, n, "saslMechanism EXTERNAL logs in with the client certificate: it needs sslEnabled=true and "
                 "keyStoreLocation");
        return -1;
    }
    if (p->ssl_enabled && rmq_tls_check_version("sslVersion", p->ssl_version, err, n) != 0)
        return -1;
    if (p->oauth2_enabled && rmq_oauth2_check(p, err, n) != 0)
        return -1;
    return 0;
}

static int instance_start(cmi_instance_t *inst, char *err, size_t n)
{
    static const rmq_feature_t *const features[] = {&rmq_consume_feature, NULL}; /* sendRpc's replies */
    rmq_instance_t *in = rmq_xcalloc(1, sizeof(*in));
    in->pool = rmq_pool_create(inst->host, inst->component, inst->params, features, err, n);
    if (in->pool == NULL) {
        free(in);
        return -1;
    }
    in->rpcs = rmq_rpcs_create(in->pool);
    inst->data = in;
    const rmq_init_params_t *p = inst->params;
    inst->host->log(CMI_LOG_INFO, inst->component, "connection pool %s: %lld connection(s) over %zu server(s)",
                    p->name, (long long)p->pool_size, p->server_urls.count);
    return 0;
}

static void instance_stop(cmi_instance_t *inst)
{
    rmq_instance_t *in = inst->data;
    rmq_pool_destroy(in->pool); /* no reply can come after this */
    rmq_rpcs_destroy(in->rpcs);
    free(in);
    inst->data = NULL;
    inst->host->log(CMI_LOG_INFO, inst->component, "connection pool closed");
}

static void instance_report(cmi_instance_t *inst, cmi_report_t *r)
{
    const rmq_instance_t *in = inst->data;
    rmq_report_pool(inst->host, r, in->pool, ((const rmq_init_params_t *)inst->params)->pool_size);
    rmq_report_publishing(inst->host, r, in->pool);
}

static const cmi_config_def_t config = {
    .description = "A failover pool of AMQP 1.0 connections to one RabbitMQ cluster.",
    .params = init_params,
    .params_size = sizeof(rmq_init_params_t),
    .start = instance_start,
    .stop = instance_stop,
    .validate = validate_init,
    .report = instance_report,
};

/* ---- <rabbitmq.publishMessage> ------------------------------------------------ */

#define P rmq_publish_params_t
#define D CMI_PARAM_DYNAMIC
#define B CMI_PARAM_BOOL
static const cmi_param_def_t publish_params[] = {
    RMQ_QUEUE_ROWS(RMQ_P_QUEUE, P, queue, D, "queue to publish to; a value starting with / is an address", "queue",
                   "queueAutoDeclare", "queueType", "queueArguments", "maxPriority", "initialMemberCount",
                   "deliveryLimit", "deadLetterStrategy", "maxAge", "maxSegmentSize", "queueExclusive",
                   "queueAutoDelete", "queueOverflowStrategy", "rabbitmq.classic.version"),
    RMQ_EXCHANGE_ROWS(RMQ_P_EXCHANGE, P, exchange, D, "exchange to publish to", "exchange", "exchangeAutoDeclare",
                      "exchangeType", "routingKey", "exchangeArguments", "headerExchangeArguments",
                      "exchangeAutoDelete"),
    [RMQ_P_HEADERS] = CMI_PARAM("headers", CMI_PARAM_JSON, D, P, headers, NULL,
                                "application-properties: [[name,value],...] or {name:value}"),
    [RMQ_P_BODY_TYPE] = CMI_PARAM_CHOICE("requestBodyType", D, P, body_type, NULL,
                                         "which requestBody* to send (else the payload)", rmq_body_type_names),
    [RMQ_P_BODY_JSON] = CMI_PARAM("requestBodyJson", CMI_PARAM_EXPR, CMI_PARAM_LAZY, P, body_json, NULL,
                                  "the body for requestBodyType JSON"),
    [RMQ_P_BODY_XML] = CMI_PARAM("requestBodyXml", CMI_PARAM_EXPR, CMI_PARAM_LAZY, P, body_xml, NULL,
                                 "the body for requestBodyType XML"),
    [RMQ_P_BODY_TEXT] = CMI_PARAM("requestBodyText", CMI_PARAM_EXPR, CMI_PARAM_LAZY, P, body_text, NULL,
                                  "the body for requestBodyType TEXT"),
    [RMQ_P_CHARSET] = CMI_PARAM("requestCharSet", S, D, P, charset, "UTF-8", "charset, sent as content-encoding"),
    [RMQ_P_PUBLISH_TIMEOUT] = CMI_PARAM_RANGE("publishTimeout", CMI_PARAM_DURATION, D, P, publish_timeout_ms,
                                              "60000", "longest wait for a connection and the broker's outcome, ms",
                                              1, 86400000),
    [RMQ_P_CONFIRMS] = CMI_PARAM("publisherConfirms", B, D, P, confirms, "true",
                                 "wait for the broker's outcome (MI's code does not by default)"),
    [RMQ_P_PRIORITY] = CMI_PARAM_RANGE("priority", CMI_PARAM_INT, D, P, priority, NULL, "message priority", 0, 255),
    [RMQ_P_TTL] = CMI_PARAM("ttl", CMI_PARAM_DURATION, D, P, ttl_ms, NULL, "message time-to-live, ms"),
    [RMQ_P_REPLY_TO] = CMI_PARAM("replyTo", S, D, P, reply_to, NULL, "reply-to address"),
    [RMQ_P_MESSAGE_ID] = CMI_PARAM("messageId", S, D, P, message_id, NULL, "message-id (default: the message's id)"),
    [RMQ_P_CORRELATION_ID] = CMI_PARAM("correlationId", S, D, P, correlation_id, NULL,
                                       "correlation-id (default: rabbitmq.message.correlation.id, else the "
                                       "message-id)"),
    [RMQ_P_ALLOW_ADDRESS] = RMQ_ROW_ALLOW_ADDRESS(P),
    [RMQ_P_TARGET_PATTERN] = RMQ_ROW_TARGET_PATTERN(P),
    [RMQ_P_COUNT] = CMI_PARAM_END,
};
#undef P
#undef D
#undef B

static int validate_publish(const void *params, char *err, size_t n)
{
    const rmq_publish_params_t *p = params;
    int queue = CMI_PARAM_GIVEN(p, RMQ_P_QUEUE + RMQ_Q_NAME) || CMI_PARAM_IS_DYNAMIC(p, RMQ_P_QUEUE + RMQ_Q_NAME);
    int exchange =
        CMI_PARAM_GIVEN(p, RMQ_P_EXCHANGE + RMQ_X_NAME) || CMI_PARAM_IS_DYNAMIC(p, RMQ_P_EXCHANGE + RMQ_X_NAME);
    if (!queue && !exchange) {
        snprintf(err, n, "give a queue or an exchange to publish to");
        return -1;
    }
    if (CMI_PARAM_GIVEN(p, RMQ_P_BODY_TYPE)) {
        static const int rows[] = {RMQ_P_BODY_JSON, RMQ_P_BODY_XML, RMQ_P_BODY_TEXT};
        static const char *const names[] = {"requestBodyJson", "requestBodyXml", "requestBodyText"};
        int row = rows[p->body_type];
        if (!CMI_PARAM_GIVEN(p, row) && !CMI_PARAM_IS_DYNAMIC(p, row)) {
            snprintf(err, n, "requestBodyType %s needs %s", rmq_body_type_names[p->body_type], names[p->body_type]);
            return -1;
        }
    }
    char why[256];
    const char *args[] = {p->queue.arguments, p->exchange.arguments, p->exchange.header_arguments};
    const char *names[] = {"queueArguments", "exchangeArguments", "headerExchangeArguments"};
    static const int arg_rows[] = {RMQ_P_QUEUE + RMQ_Q_ARGUMENTS, RMQ_P_EXCHANGE + RMQ_X_ARGUMENTS,
                                   RMQ_P_EXCHANGE + RMQ_X_HEADER_ARGUMENTS};
    for (int i = 0; i < 3; i++) {
        if (CMI_PARAM_IS_DYNAMIC(p, arg_rows[i]))
            continue;
        json_t *j = rmq_parse_arguments(args[i], why, sizeof(why));
        if (j == NULL) {
            snprintf(err, n, "%s: %s", names[i], why);
            return -1;
        }
        json_decref(j);
    }
    return 0;
}

/* ---- <rabbitmq.sendRpc> ---------------------------------------------------------- */

#define R rmq_rpc_params_t
#define D CMI_PARAM_DYNAMIC
#define B CMI_PARAM_BOOL
static const cmi_param_def_t rpc_params[] = {
    RMQ_QUEUE_ROWS(RMQ_R_QUEUE, R, request, D, "the request queue (required)", "queue", "queueAutoDeclare", "queueType",
               "queueArguments", "maxPriority", "initialMemberCount", "deliveryLimit", "deadLetterStrategy", "maxAge",
               "maxSegmentSize", "queueExclusive", "queueAutoDelete", "queueOverflowStrategy",
               "rabbitmq.classic.version"),
    RMQ_QUEUE_ROWS(RMQ_R_REPLY, R, reply, 0, "the reply queue (static); default: a queue of this cmi instance's own",
               "replyToQueue", "replyToQueueAutoDeclare", "replyToQueueType", "replyToQueueArguments",
               "replyToQueueMaxPriority", "replyToQueueInitialMemberCount", "replyToQueueDeliveryLimit",
               "replyToQueueDeadLetterStrategy", "replyToQueueMaxAge", "replyToQueueMaxSegmentSize",
               "replyToQueueExclusive", "replyToQueueAutoDelete", "replyToQueueOverflowStrategy",
               "replyToQueueClassicVersion"),
    [RMQ_R_HEADERS] = CMI_PARAM("headers", CMI_PARAM_JSON, D, R, headers, NULL,
                                "application-properties: [[name,value],...] or {name:value}"),
    [RMQ_R_BODY_TYPE] = CMI_PARAM_CHOICE("requestBodyType", D, R, body_type, NULL,
                                         "which requestBody* to send (else the payload)", rmq_body_type_names),
    [RMQ_R_BODY_JSON] = CMI_PARAM("requestBodyJson", CMI_PARAM_EXPR, CMI_PARAM_LAZY, R, body_json, NULL,
                                  "the body for requestBodyType JSON"),
    [RMQ_R_BODY_XML] = CMI_PARAM("requestBodyXml", CMI_PARAM_EXPR, CMI_PARAM_LAZY, R, body_xml, NULL,
                                 "the body for requestBodyType XML"),
    [RMQ_R_BODY_TEXT] = CMI_PARAM("requestBodyText", CMI_PARAM_EXPR, CMI_PARAM_LAZY, R, body_text, NULL,
                                  "the body for requestBodyType TEXT"),
    [RMQ_R_CHARSET] = CMI_PARAM("requestCharSet", S, D, R, charset, "UTF-8", "charset, sent as content-encoding"),
    [RMQ_R_REQUEST_TIMEOUT] = CMI_PARAM_RANGE("requestTimeout", CMI_PARAM_DURATION, D, R, request_timeout_ms,
                                              "60000", "longest wait for the reply (and a connection), ms", 1,
                                              86400000),
    [RMQ_R_RESPONSE_BODY_TYPE] = CMI_PARAM_CHOICE("responseBodyType", D, R, response_body_type, NULL,
                                                  "the reply's type when it has no content-type (else JSON when "
                                                  "it parses, text otherwise)", rmq_body_type_names),
    [RMQ_R_RESPONSE_CHARSET] = CMI_PARAM("responseCharSet", S, D, R, response_charset, NULL,
                                         "the reply's charset when it has no content-encoding"),
    [RMQ_R_ALLOW_ADDRESS] = RMQ_ROW_ALLOW_ADDRESS(R),
    [RMQ_R_TARGET_PATTERN] = RMQ_ROW_TARGET_PATTERN(R),
    [RMQ_R_COUNT] = CMI_PARAM_END,
};
#undef R
#undef D
#undef B

static int validate_rpc(const void *params, char *err, size_t n)
{
    const rmq_rpc_params_t *p = params;
    if (!CMI_PARAM_GIVEN(p, RMQ_R_QUEUE) && !CMI_PARAM_IS_DYNAMIC(p, RMQ_R_QUEUE)) {
        snprintf(err, n, "give the queue to send the request to");
        return -1;
    }
    if (CMI_PARAM_GIVEN(p, RMQ_R_BODY_TYPE)) {
        static const char *const names[] = {"requestBodyJson", "requestBodyXml", "requestBodyText"};
        unsigned row = RMQ_R_BODY_JSON + (unsigned)p->body_type;
        if (!CMI_PARAM_GIVEN(p, row) && !CMI_PARAM_IS_DYNAMIC(p, row)) {
            snprintf(err, n, "requestBodyType %s needs %s", rmq_body_type_names[p->body_type], names[p->body_type]);
            return -1;
        }
    }
    char why[256];
    const char *args[] = {p->request.arguments, p->reply.arguments};
    const char *names[] = {"queueArguments", "replyToQueueArguments"};
    for (int i = 0; i < 2; i++) {
        if (i == 0 && CMI_PARAM_IS_DYNAMIC(p, RMQ_R_QUEUE + RMQ_Q_ARGUMENTS))
            continue;
        json_t *j = rmq_parse_arguments(args[i], why, sizeof(why));
        if (j == NULL) {
            snprintf(err, n, "%s: %s", names[i], why);
            return -1;
        }
        json_decref(j);
    }
    return 0;
}

static const cmi_op_def_t ops[] = {
    {.name = "publishMessage",
     .description = "publishes the payload (or a requestBody*) to a queue or an exchange; with publisherConfirms "
                    "the flow goes on once the broker has the message",
     .flags = CMI_OP_NEEDS_CONFIG,
     .params = publish_params,
     .params_size = sizeof(rmq_publish_params_t),
     .prepare = rmq_publish_prepare,
     .release = rmq_publish_release,
     .run = rmq_publish_run,
     .validate = validate_publish},
    {.name = "sendRpc",
     .description = "sends the payload (or a requestBody*) to a queue with a reply-to and a fresh correlation-id, "
                    "and waits (holding no thread) for the reply, which replaces the payload",
     .flags = CMI_OP_NEEDS_CONFIG,
     .params = rpc_params,
     .params_size = sizeof(rmq_rpc_params_t),
     .prepare = rmq_rpc_prepare,
     .release = rmq_rpc_release,
     .run = rmq_rpc_run,
     .validate = validate_rpc},
    {.name = "accept",
     .description = "accepts the message an inbound endpoint delivered (removed from the queue)",
     .flags = CMI_OP_NO_CONFIG,
     .run = rmq_accept_run},
    {.name = "discard",
     .description = "rejects the message an inbound endpoint delivered (dead-lettered where the queue has a "
                    "dead-letter exchange, else dropped)",
     .flags = CMI_OP_NO_CONFIG,
     .run = rmq_discard_run},
    {.name = "requeue",
     .description = "releases the message an inbound endpoint delivered (delivered again)",
     .flags = CMI_OP_NO_CONFIG,
     .run = rmq_requeue_run},
    {.name = NULL},
};

static const cmi_error_def_t errors[] = {
    {RMQ_ERR_CONNECTION, 503, RMQ_MSG_CONNECTION},
    {RMQ_ERR_CONFIG, 500, RMQ_MSG_CONFIG},
    {RMQ_ERR_OPERATION, 502, RMQ_MSG_OPERATION},
    {RMQ_ERR_TIMEOUT, 504, RMQ_MSG_TIMEOUT},
    {RMQ_ERR_AMQP, 502, RMQ_MSG_AMQP},
    {RMQ_ERR_GENERAL, 500, RMQ_MSG_GENERAL},
    {0},
};

static int rmq_init(const cmi_host_t *host, char *err, size_t n)
{
    if (host->abi_major != CMI_CONNECTOR_ABI_MAJOR || host->struct_size < sizeof(cmi_host_t)) {
        snprintf(err, n, "the host API is older than this module's");
        return -1;
    }
    /* Process-wide, once, before any thread uses libcurl. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, n, "libcurl failed to initialise");
        return -1;
    }
    return 0;
}

static void rmq_shutdown(void)
{
    curl_global_cleanup();
}

CMI_CONNECTOR_EXPORT const cmi_connector_t cmi_connector = {
    CMI_CONNECTOR_HEADER,
    .name = "rabbitmq",
    .version = "1.0.0",
    .description = "RabbitMQ over AMQP 1.0 (qpid-proton): publishMessage and sendRpc over a failover connection pool, "
                   "an inbound endpoint with accept, discard and requeue. "
                   "Element and parameter names are those of WSO2 MI's RabbitMQ (AMQP 1.0) connector.",
    .config = &config,
    .ops = ops,
    .listeners = rmq_listeners,
    .errors = errors,
    .param_error_code = RMQ_ERR_CONFIG,
    .init = rmq_init,
    .shutdown = rmq_shutdown,
};
