/* The echo connector's parameter structs, shared by the module and its
 * fake-host unit test (a real connector keeps such a header for its own
 * tests too). */
#ifndef ECHO_H
#define ECHO_H

#include <cmi/connector.h>

/* <echo.init> */
enum { ECHO_INIT_NAME, ECHO_INIT_PREFIX, ECHO_INIT_MODE, ECHO_INIT_SERVERS, ECHO_INIT_TOKEN, ECHO_INIT_MAX_DELAY,
       ECHO_INIT_CONNECTION_TYPE, ECHO_INIT_KEYSTORE, ECHO_INIT_UNREADY, ECHO_INIT_CERT, ECHO_INIT_COUNT };
enum { ECHO_MODE_KEEP, ECHO_MODE_UPPER, ECHO_MODE_LOWER };

typedef struct {
    cmi_params_head_t head;
    const char *name;
    const char *prefix;
    int mode;
    cmi_param_list_t servers;
    const char *token;
    uint64_t max_delay_ms;
    const char *connection_type;
    const char *keystore;
    const char *unready; /* reported not ready with this reason (the report hook's test) */
    const char *cert;    /* a file whose content counts when a reload compares (never read) */
} echo_init_params_t;

/* <echo.echo configKey> */
enum { ECHO_OP_MESSAGE, ECHO_OP_DELAY, ECHO_OP_TIMEOUT, ECHO_OP_REPEAT, ECHO_OP_TAGS, ECHO_OP_ATTRIBUTES,
       ECHO_OP_UPPER, ECHO_OP_HOPS, ECHO_OP_INLINE, ECHO_OP_CANCEL_LINGER, ECHO_OP_COUNT };

typedef struct {
    cmi_params_head_t head;
    const char *message;
    uint64_t delay_ms;
    uint64_t timeout_ms;
    int64_t repeat;
    cmi_param_list_t tags;
    json_t *attributes;
    int upper;
    int64_t hops;
    int resume_inline;
    uint64_t cancel_linger_ms;
} echo_op_params_t;

/* <echo.fail> */
enum { ECHO_FAIL_CODE, ECHO_FAIL_REASON, ECHO_FAIL_COUNT };

typedef struct {
    cmi_params_head_t head;
    int64_t code;
    const char *reason;
} echo_fail_params_t;

/* <echo.decide>: records a decision for a message a listener injected */
enum { ECHO_DECIDE_DECISION, ECHO_DECIDE_COUNT };

typedef struct {
    cmi_params_head_t head;
    int decision;
} echo_decide_params_t;

/* <inboundEndpoint class="org.example.cmi.EchoTimer"> */
enum { ECHO_TIMER_INTERVAL, ECHO_TIMER_COUNT, ECHO_TIMER_MESSAGE, ECHO_TIMER_CONTENT_TYPE, ECHO_TIMER_BURST, ECHO_TIMER_ROWS };

typedef struct {
    cmi_params_head_t head;
    uint64_t interval_ms;
    int64_t count;
    const char *message;
    const char *content_type;
    int64_t burst;
} echo_timer_params_t;

/* Error codes (registered with their HTTP status). */
enum { ECHO_ERR_FAILED = 709001, ECHO_ERR_CONFIG = 709002, ECHO_ERR_NO_DELIVERY = 709003,
       ECHO_ERR_TIMEOUT = 709004 };

#endif
