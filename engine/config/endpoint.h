/* Endpoints, an artifact kind: named in endpoints/ or inline in <call>.
 * Compiled at load (config/endpoint.c); their health at run time, shared
 * by every worker, and the choice of a group's leaf: runtime/endpoint.c.
 * MI's: a leaf (<http>/<address>) with suspendOnFailure and
 * markForSuspension, or a <failover> / <loadbalance> group of leaves. */
#ifndef CMI_CONFIG_ENDPOINT_H
#define CMI_CONFIG_ENDPOINT_H

#include <libxml/tree.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config/compile.h"

struct cmi_template;

enum { CMI_EP_LEAF, CMI_EP_FAILOVER, CMI_EP_LOADBALANCE };

/* What the internal port reports of a leaf (runtime/endpoint.c counts
 * under the state's lock, which every call's outcome takes anyway). */
#define CMI_EP_STATUSES 5  /* 2xx, 3xx, 4xx, 5xx, no answer (an error) */
#define CMI_EP_BUCKETS 10  /* 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5 s; then slower */
typedef struct {
    uint64_t calls[CMI_EP_STATUSES];
    uint64_t latency[CMI_EP_BUCKETS + 1];
    uint64_t latency_us;
    uint64_t suspensions;
} cmi_endpoint_counts_t;

/* A leaf's health, shared by every worker (MI's endpoint states: active,
 * timeout after a failure marked for suspension, suspended). */
typedef struct cmi_endpoint_state {
    pthread_mutex_t lock;
    int64_t until;        /* monotonic ms: not tried before this */
    uint64_t next_ms;     /* the next suspension's length */
    int64_t retries_left; /* marked failures still allowed before suspension */
    int suspended;        /* logged as suspended (for the log line at its end) */
    cmi_endpoint_counts_t counts;
    const struct cmi_endpoint *leaf;  /* its leaf, for the report */
    struct cmi_endpoint_state *next;  /* every leaf of the deployment (cmi_config_t.endpoint_states) */
} cmi_endpoint_state_t;

typedef struct cmi_endpoint cmi_endpoint_t;
struct cmi_endpoint {
    const char *name;  /* NULL inline */
    const char *where; /* file:line */
    int kind;
    /* CMI_EP_LEAF */
    const char *method;             /* <http method>, upper case; NULL: the message's */
    const struct cmi_template *uri; /* ${...} rendered, then {uri.var.X} expanded */
    uint64_t timeout_ms;            /* 0: 60 s */
    int discard_on_timeout;         /* <responseAction>discard: a timed-out call ends the flow, as <drop/> */
    const char *format_type;        /* <address format>: the request's content type (converted); NULL: as it is */
    int address;                    /* an <address> (a service: a payload goes with POST), not an <http> */
    int to_address;                 /* <default>: the flow's To address (no uri) */
    /* <suspendOnFailure>: suspend on these codes (none listed: any code
     * not marked for suspension), initialDuration * progressionFactor^n up
     * to maximumDuration. */
    int suspend_on;
    int suspend_codes[16];
    size_t nsuspend_codes;
    uint64_t initial_ms, max_ms;
    double factor;
    /* <markForSuspension>: these codes are tolerated retriesBeforeSuspension
     * times (the endpoint waits retryDelay between), then it is suspended. */
    int mark_codes[16];
    size_t nmark_codes;
    int64_t retries_before;
    uint64_t retry_delay_ms;
    /* <timeout><duration>{xpath}</duration>: the timeout computed per call
     * (milliseconds; at most the default 60 s, as MI caps it at its global
     * timeout); NULL: timeout_ms. */
    const struct cmi_expr *timeout_expr;
    atomic_flag *timeout_warned; /* a computed timeout that was not a number, logged once */
    /* <retryConfig>: whether the group this leaf is in tries another child
     * after it failed with a code (MI's isRetry: never for a disabled code;
     * with enabled codes listed, only for those). */
    int retry_disabled[16];
    size_t nretry_disabled;
    int retry_enabled[16];
    size_t nretry_enabled;
    cmi_endpoint_state_t *state;
    /* Groups: children are leaves. */
    cmi_endpoint_t **children;
    size_t nchildren;
    atomic_uint *next_child; /* loadbalance round-robin */
    int client_session;      /* <session type="simpleClientSession">: a client ID keeps its leaf */
    int lb_failover;         /* loadbalance tries the next one after a failure */
};

/* An <endpoint> element (artifact or inline); NULL after reporting. */
cmi_endpoint_t *cmi_compile_endpoint(cmi_compile_t *cc, xmlNodePtr node);

/* An <endpoint template="tname"> (config/template.c): the template's
 * endpoint with the instance's parameters substituted, compiled. */
cmi_endpoint_t *cmi_compile_template_endpoint(cmi_compile_t *cc, xmlNodePtr node, const char *tname);

#endif
