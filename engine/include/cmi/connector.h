/* cmi connector SDK: the connector descriptor.
 *
 * ABI changelog (the engine loads a module whose abi_major equals its own
 * and whose abi_minor is not newer than its own; see docs/connector-sdk.md,
 * "ABI and versions"):
 *
 *   2026-11-22  1.0  First version: descriptor, connection config,
 *                    operations, listeners, typed parameter tables
 *                    (cmi/params.h), host API (cmi/host.h).
 *   2026-11-22  1.1  host: call_response_variable().
 *   2026-11-22  1.2  host: defer().
 *   2026-12-02  1.3  host: payload_readable().
 *   2026-12-03  1.4  host: inject_checked().
 *   2026-12-04  1.5  host: inject_hold(), inject_release().
 *   2026-12-05  1.6  report hooks (config and listener reserved[0]) and
 *                    host: report_not_ready(), report_value(),
 *                    report_histogram(): readiness and metrics on the
 *                    internal port.
 *   2026-12-05  1.7  the CMI_PARAM_FILE flag (cmi/params.h): reloads.
 *
 * Rules for changing it: adding a field at the end of cmi_connector_t or
 * cmi_host_t, or a new function at the end of the host table, or giving a
 * meaning to a `reserved` slot of a table row (NULL keeps the old
 * behaviour) bumps the minor (the engine reads new fields only when
 * struct_size says they are there); anything else bumps the major.
 *
 * A connector module is a shared object that exports exactly one symbol,
 * `cmi_connector`, of type cmi_connector_t (Varnish VMODs).  Build it with
 * -fvisibility=hidden and declare the descriptor with CMI_CONNECTOR_EXPORT:
 *
 *   CMI_CONNECTOR_EXPORT const cmi_connector_t cmi_connector = {
 *       CMI_CONNECTOR_HEADER,
 *       .name = "echo", .version = "1.0.0", ...
 *   };
 *
 * Three lifetimes are kept apart (nothing in a connector is a mutable
 * global):
 *   class       the descriptor: static, read-only;
 *   instance    one connection config (<echo.init> in a local entry), with
 *               its own state (a connection pool, say) in instance->data;
 *   invocation  one operation run for one message (cmi_call_t). */
#ifndef CMI_CONNECTOR_H
#define CMI_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>

#include <cmi/host.h>
#include <cmi/params.h>
#include <cmi/types.h>

#define CMI_CONNECTOR_ABI_MAJOR 1
#define CMI_CONNECTOR_ABI_MINOR 7
#define CMI_CONNECTOR_SYMBOL "cmi_connector"

#define CMI_CONNECTOR_MAGIC 0x434d4943u /* "CMIC" */
#define CMI_INSTANCE_MAGIC 0x434d4949u  /* "CMII" */
#define CMI_BINDING_MAGIC 0x434d4942u   /* "CMIB" */
#define CMI_CALL_MAGIC 0x434d494cu      /* "CMIL" */
#define CMI_LISTENER_MAGIC 0x434d4953u  /* "CMIS" */

#define CMI_CONNECTOR_EXPORT __attribute__((visibility("default")))

/* The first fields of every descriptor, filled from the headers the module
 * was built with. */
#define CMI_CONNECTOR_HEADER                                                                              \
    .abi_major = CMI_CONNECTOR_ABI_MAJOR, .abi_minor = CMI_CONNECTOR_ABI_MINOR,                           \
    .struct_size = sizeof(cmi_connector_t), .magic = CMI_CONNECTOR_MAGIC

/* ---- objects the engine hands to a connector ---------------------------- */
/* The engine owns them and fills them; a connector reads them and keeps its
 * own state in `data`.  Each carries a magic number the host checks. */

struct cmi_instance {
    uint32_t magic;
    const cmi_host_t *host;
    const char *name;      /* the local entry's key */
    const char *component; /* "<connector>:<key>", for log lines */
    const void *params;    /* the config's parameter struct */
    void *data;            /* the connector's (start sets it, stop frees it) */
};

struct cmi_binding {
    uint32_t magic;
    const cmi_host_t *host;
    cmi_instance_t *instance; /* NULL for an operation without configKey */
    const char *where;        /* "api/orders.xml:12", for log lines */
    /* Static values and defaults; rows written as expressions are marked in
     * head.dynamic and hold their default here. */
    const void *params;
    void *data; /* the connector's (prepare sets it, release frees it) */
};

struct cmi_call {
    uint32_t magic;
    const cmi_host_t *host;
    cmi_binding_t *binding;
    cmi_msg_t *msg;     /* only in run and in continuations */
    const void *params; /* resolved for this message (LAZY rows: see call_eval_param) */
};

struct cmi_listener {
    uint32_t magic;
    const cmi_host_t *host;
    const char *name;      /* the inboundEndpoint's name */
    const char *component; /* "<connector>:<name>" */
    const void *params;
    void *data; /* the connector's (start sets it, destroy frees it) */
};

/* ---- what a connector declares ----------------------------------------- */

/* Checks the static values of a parameter struct as a whole; rows written
 * as expressions are marked in head.dynamic and hold their defaults. */
typedef int (*cmi_validate_fn)(const void *params, char *err, size_t err_size);

/* <NAME.init> in a local entry: one instance per local entry, started
 * before the engine serves and stopped after the drain. */
typedef struct {
    const char *description;
    const cmi_param_def_t *params;
    size_t params_size; /* sizeof the parameter struct */
    /* Service thread.  Sets inst->data.  Must not block on the network (a
     * broker that is down must not stop the engine from starting).  Returns
     * 0, or -1 with a reason: the engine does not start. */
    int (*start)(cmi_instance_t *inst, char *err, size_t err_size);
    /* Service thread, after every message is done. */
    void (*stop)(cmi_instance_t *inst);
    /* At load (also for `cmi check`): rules across parameters ("JKS is not
     * supported: convert the store to PKCS12").  Returns 0, or -1 with a
     * reason, reported at the element's file:line.  May be NULL. */
    cmi_validate_fn validate;
    /* Since 1.6.  When the internal port is asked (/healthz,
     * /metric-service/metrics): the instance's readiness and metrics
     * through report_not_ready/report_value/report_histogram.  Service
     * thread, between start and stop; it reads state other threads change
     * (atomics, or the connector's own lock held briefly) and never
     * blocks.  May be NULL. */
    void (*report)(cmi_instance_t *inst, cmi_report_t *r);
    const void *reserved[3]; /* zero */
} cmi_config_def_t;

enum {
    /* configKey must name a <NAME.init> local entry. */
    CMI_OP_NEEDS_CONFIG = 1u << 0,
    /* configKey is refused (accept/discard/requeue act on the message). */
    CMI_OP_NO_CONFIG = 1u << 1,
};

/* <NAME.OPERATION configKey="K"> with one child element per parameter.
 * Every operation also takes responseVariable and overwriteBody, which the
 * engine handles. */
typedef struct {
    const char *name;
    const char *description;
    unsigned flags;
    const cmi_param_def_t *params;
    size_t params_size;
    /* Service thread, at start-up, once per operation element (after its
     * instance started): precompute what static parameters allow.  Sets
     * b->data.  May be NULL.  Returns 0, or -1 with a reason. */
    int (*prepare)(cmi_binding_t *b, char *err, size_t err_size);
    /* Service thread, at shutdown.  May be NULL. */
    void (*release)(cmi_binding_t *b);
    /* Owner worker, per message: returns CMI_FLOW_CONTINUE (after
     * call_set_result, or with no result), CMI_FLOW_ERROR (after
     * call_fail) or CMI_FLOW_SUSPENDED (from call_suspend). */
    int (*run)(cmi_call_t *call);
    cmi_validate_fn validate; /* at load, as for the config; may be NULL */
    const void *reserved[4];  /* zero */
} cmi_op_def_t;

/* An inbound endpoint kind: <inboundEndpoint class="..."> (or
 * protocol="...") with <parameters>. */
typedef struct {
    const char *const *classes; /* class values that select it, NULL-terminated (may be empty when protocol is set) */
    const char *protocol;       /* a protocol value that selects it, or NULL */
    const char *description;
    const cmi_param_def_t *params;
    size_t params_size;
    /* Service thread, once the workers serve.  Sets l->data; returns 0, or
     * -1 with a reason (the engine does not start).  inject() is refused
     * until start has returned 0. */
    int (*start)(cmi_listener_t *l, char *err, size_t err_size);
    /* Service thread, when the engine begins to drain: stop injecting (the
     * host refuses injections from now on); messages in flight go on. */
    void (*stop)(cmi_listener_t *l);
    /* Service thread, after the last done: free l->data. */
    void (*destroy)(cmi_listener_t *l);
    /* Owner worker: the flow of an injected message is over.  outcome is
     * CMI_FLOW_ERROR when its last error found no fault sequence (the
     * engine answered it), else CMI_FLOW_CONTINUE (an error a fault
     * sequence handled shows in the ERROR_CODE property).  msg may be read
     * until this returns.  Called once for every message inject() accepted,
     * also during the drain. */
    void (*done)(cmi_listener_t *l, void *delivery, cmi_msg_t *msg, int outcome);
    /* Owner worker: the flow ran <respond/>.  May be NULL (ignored). */
    void (*respond)(cmi_listener_t *l, void *delivery, cmi_msg_t *msg);
    cmi_validate_fn validate; /* at load, as for the config; may be NULL */
    /* Since 1.6: as the config's report, between start and destroy (a
     * stopped listener is reported not ready by the host).  May be NULL. */
    void (*report)(cmi_listener_t *l, cmi_report_t *r);
    const void *reserved[3]; /* zero */
} cmi_listener_def_t;

/* An error code a connector raises, and the HTTP status a caller gets for
 * it when no fault sequence answers. */
typedef struct {
    int code;
    int status;
    const char *name; /* ERROR_MESSAGE, e.g. "RABBITMQ:CONNECTION_ERROR" */
} cmi_error_def_t;

typedef struct cmi_connector {
    /* Read first, before anything else, to decide whether to go on. */
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t struct_size;
    uint32_t magic;

    const char *name; /* the element prefix: <NAME.init>, <NAME.OPERATION> */
    const char *version;
    const char *description;
    const cmi_config_def_t *config;      /* NULL: no connection config */
    const cmi_op_def_t *ops;             /* terminated by a row with name NULL */
    const cmi_listener_def_t *listeners; /* terminated by a row with classes NULL; may be NULL */
    const cmi_error_def_t *errors;       /* terminated by a row with code 0; may be NULL */
    /* The code raised when a dynamic parameter evaluates to something
     * invalid (701202 for RabbitMQ); 0: the engine's mediation error. */
    int param_error_code;
    /* Once after loading, before anything else; may be NULL.  The host table
     * is the engine's for the whole run.  Returns 0, or -1 with a reason
     * (the module is refused). */
    int (*init)(const cmi_host_t *host, char *err, size_t err_size);
    /* Once at exit, after everything else; may be NULL. */
    void (*shutdown)(void);
} cmi_connector_t;

#endif
