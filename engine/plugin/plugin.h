/* Connector modules, from the shared object to the running operation.
 *
 *   loader.c     dlopen of every module on the connectors path, the ABI
 *                check, validation of the descriptor's tables
 *   pvalue.c     typed parameter values: parsing, secrets, tables, static
 *                values (shared with the connector test host, pvalue.h)
 *   params.c     per-message evaluation of dynamic values, `cmi describe`
 *   bind.c       the deployment side: <NAME.init> local entries,
 *                <NAME.OPERATION> mediators, inbound endpoints of a class
 *   host.c       the host API table: message access, calls that suspend
 *                and resume, timers, injection of inbound messages
 *   lifecycle.c  starting and stopping instances, bindings and listeners
 *                on the service thread
 *   testhost*.c  libcmi-testhost, the fake host connector unit tests link
 *                instead of the engine (<cmi/testhost.h>)
 *
 * Everything compiled from a deployment lives in the configuration arena;
 * the public objects of <cmi/connector.h> are the first member of the
 * engine's own structs here. */
#ifndef CMI_PLUGIN_PLUGIN_H
#define CMI_PLUGIN_PLUGIN_H

#include <libxml/tree.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/queue.h>

#include <cmi/connector.h>

#include "config/config.h"
#include "config/diag.h"
#include "core/arena.h"
#include "core/str.h"
#include "plugin/pvalue.h"

typedef struct cmi_engine cmi_engine_t;
typedef struct cmi_worker cmi_worker_t;
struct cmi_expr;
struct cmi_template;

/* ---- loaded modules ------------------------------------------------------ */

typedef struct cmi_module {
    const char *path;
    void *handle;
    const cmi_connector_t *desc;
} cmi_module_t;

typedef struct cmi_plugins {
    cmi_module_t *mods;
    size_t count;
    const char *search_path; /* as searched, for messages */
} cmi_plugins_t;

/* Loads every *.so in the folders of path (colon-separated).  Folders that
 * do not exist are errors when explicit, skipped otherwise (the defaults).
 * Problems are reported through diag.  Returns NULL when any module was
 * refused. */
cmi_plugins_t *cmi_plugins_load(const char *path, int explicit, cmi_diag_t *diag);
/* Calls each module's shutdown and unloads it. */
void cmi_plugins_destroy(cmi_plugins_t *p);
const cmi_module_t *cmi_plugins_find(const cmi_plugins_t *p, const char *name, size_t len);
/* The module and listener kind for an inbound endpoint's class or protocol. */
const cmi_module_t *cmi_plugins_find_listener(const cmi_plugins_t *p, const char *class_name,
                                              const char *protocol, const cmi_listener_def_t **def);
const cmi_op_def_t *cmi_module_find_op(const cmi_module_t *m, const char *name);

/* The default connectors path: the install folder, and the build tree's
 * modules when cmi runs from a build tree (arena string). */
const char *cmi_plugins_default_path(cmi_arena_t *arena);

/* ---- parameter sets: a table plus the values one element gave ---------- */

typedef struct {
    unsigned row;
    struct cmi_expr *expr;       /* {...}: an expression */
    struct cmi_template *tmpl;   /* CMI_PARAM_EXPR: a template */
    const char *source;          /* as written, for messages */
} cmi_pdyn_t;

typedef struct {
    const cmi_module_t *mod;
    const char *what; /* "rabbitmq.publishMessage", "rabbitmq.init", ... */
    const cmi_param_def_t *defs;
    size_t size;
    void *statics; /* the struct with static values and defaults */
    cmi_pdyn_t *dyn;
    size_t ndyn;
    int lazy; /* some dynamic row is LAZY */
    uint64_t seen[CMI_PARAMS_MAX / 64]; /* rows written in the XML, valid or not */
    size_t errors_before; /* load errors before this element's parameters */
} cmi_pset_t;

/* The parameter struct for one message: statics when nothing is dynamic,
 * else a copy in the message's arena with the dynamic (non-lazy) rows
 * evaluated.  Returns 0, or CMI_FLOW_ERROR with the message's error set. */
int cmi_pset_resolve(const cmi_pset_t *ps, cmi_msg_t *msg, void **out);
/* Evaluates one dynamic row into params (a resolved copy). */
int cmi_pset_eval_row(const cmi_pset_t *ps, cmi_msg_t *msg, void *params, unsigned row);

/* `cmi describe`: the connector's reference from its tables. */
void cmi_module_describe(const cmi_module_t *m, FILE *out);

/* ---- the deployment side ----------------------------------------------- */

/* What a reload compares: a connection config or an inbound endpoint
 * whose fingerprint is unchanged keeps running (lifecycle.c). */
#define CMI_FINGERPRINT_LEN 32 /* SHA-256 */

/* A connection config.  It lives in an arena of its own and is shared by
 * the deployments that have it (a reload keeps an unchanged one running):
 * each holds a reference. */
typedef struct cmi_instance_impl {
    cmi_instance_t pub;
    const cmi_module_t *mod;
    cmi_arena_t *arena;
    atomic_uint refs;
    unsigned char fingerprint[CMI_FINGERPRINT_LEN];
    cmi_pset_t params;
    const char *file;
    int line;
    int started;
} cmi_instance_impl_t;

typedef struct cmi_binding_impl {
    cmi_binding_t pub;
    const cmi_module_t *mod;
    const cmi_op_def_t *op;
    cmi_instance_impl_t *inst;
    cmi_pset_t params;
    const char *response_variable; /* NULL: none */
    int overwrite_body;
    int prepared;
    SLIST_ENTRY(cmi_binding_impl) link;
} cmi_binding_impl_t;

/* An inbound endpoint's listener: like an instance, in an arena of its
 * own and shared by the deployments that have it unchanged. */
typedef struct cmi_listener_impl {
    cmi_listener_t pub;
    const cmi_module_t *mod;
    const cmi_listener_def_t *def;
    cmi_arena_t *arena;
    atomic_uint refs;
    unsigned char fingerprint[CMI_FINGERPRINT_LEN];
    /* The deployment its messages run in and its inboundEndpoint there
     * (sequence, onError): a reload that keeps the listener moves both,
     * under the lock an injection reads them with. */
    pthread_mutex_t lock;
    cmi_config_t *config;
    const cmi_inbound_t *inbound;
    cmi_engine_t *engine;
    cmi_pset_t params;
    const char *file; /* where it was compiled from, for messages */
    int line;
    atomic_int accepting;
    atomic_int injecting; /* inject() calls under way */
    atomic_uint next_worker;
    int started;
} cmi_listener_impl_t;

/* A connector operation in a sequence: the engine's mediator around it. */
typedef struct {
    cmi_mediator_t base;
    cmi_binding_impl_t *binding;
} cmi_op_mediator_t;

/* What the connector parts of a deployment add to cmi_config_t (the
 * STAILQs are STAILQ_INIT before the first). */
typedef struct cmi_connector_state {
    const cmi_plugins_t *plugins;
    int check_only; /* `cmi check`: a secret that cannot be read is a warning */
    cmi_arena_t *arena; /* the configuration's */
    /* In document order; each holds a reference (released with the
     * configuration: cmi_connectors_dispose). */
    cmi_instance_impl_t **instances;
    size_t ninstances, instances_cap;
    cmi_listener_impl_t **listeners;
    size_t nlisteners, listeners_cap;
    SLIST_HEAD(, cmi_binding_impl) bindings; /* the last compiled first; the configuration's own */
} cmi_connector_state_t;

/* The connector state of a new configuration (in its arena, which
 * disposes of it last). */
cmi_connector_state_t *cmi_connectors_create(cmi_arena_t *config_arena, const cmi_plugins_t *plugins,
                                             int check_only);

/* Objects crossing the module boundary carry a magic number; a wrong one is
 * a connector bug, never input, so it stops the process with a message
 * (Varnish's CHECK_OBJ). */
#define CHECK_OBJ(obj, m)                                                                                  \
    do {                                                                                                   \
        if ((obj) == NULL || (obj)->magic != (m)) {                                                        \
            cmi_log_write(CMI_LOG_FATAL, "connectors", "%s: bad object passed to the host API", __func__); \
            abort();                                                                                       \
        }                                                                                                  \
    } while (0)

/* inject.c: the host API's inbound messages (cmi/host.h). */
int cmi_host_inject(cmi_listener_t *pub, const cmi_injection_t *src);
int cmi_host_inject_checked(cmi_listener_t *pub, const cmi_injection_t *src, char *why, size_t size);
int cmi_host_payload_readable(const char *content_type, const void *bytes, size_t len, char *why, size_t size);
int cmi_host_inject_hold(void);
void cmi_host_inject_release(void);
/* report.c: the host API's readiness and metrics reports (ABI 1.6). */
void cmi_host_report_not_ready(cmi_report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cmi_host_report_value(cmi_report_t *r, const cmi_metric_def_t *def, const cmi_nv_t *labels, size_t n,
                           double value);
void cmi_host_report_histogram(cmi_report_t *r, const cmi_metric_def_t *def, const cmi_nv_t *labels, size_t n,
                               const uint64_t *counts, double sum);
/* Service thread: every started instance's and listener's report hook.
 * The reasons of the kinds readiness counts (CMI_READY_*) are appended to
 * reasons as JSON strings (*nreasons counts them); the metrics, grouped by
 * family, to metrics (NULL: readiness only). */
void cmi_connectors_report(cmi_engine_t *e, unsigned readiness, cmi_strbuf_t *metrics, cmi_strbuf_t *reasons,
                           size_t *nreasons);
/* The delivery handle of msg when mod's listener injected it, else NULL. */
void *cmi_inject_delivery(cmi_msg_t *msg, const cmi_module_t *mod);

struct cmi_compile;
/* <localEntry key><NAME.init>: compiles the connection config. */
cmi_instance_impl_t *cmi_bind_instance(struct cmi_compile *cc, xmlNodePtr elem, const char *key);
/* <NAME.OPERATION>: NULL after reporting an error. */
cmi_mediator_t *cmi_bind_operation(struct cmi_compile *cc, xmlNodePtr node);
/* The listener for an inbound endpoint with a class or protocol. */
void cmi_bind_listener(struct cmi_compile *cc, xmlNodePtr root, cmi_inbound_t *ib);

/* ---- the host ---------------------------------------------------------- */

extern const cmi_host_t cmi_host_api;

/* The run function of every connector operation mediator. */
int cmi_host_op_run(const cmi_mediator_t *m, cmi_msg_t *msg);

/* ---- lifecycle (engine.c) ---------------------------------------------- */

/* Every call below runs its work on the service worker, so that connectors
 * get one thread for their housekeeping and its timers; the caller waits.
 *
 * Before a configuration serves (nothing may run an operation of an
 * instance that has not started): when old (the one serving) is not NULL,
 * each instance and listener of config equal to one of old (same kind,
 * name and fingerprint) is replaced by old's, which keeps running; then
 * the instances not running yet start and config's bindings are prepared.
 * Returns 0, or -1 after logging why (what started is stopped again when
 * config is released).  kept: when not NULL, counts of what was kept and
 * started (for the reload's log line). */
typedef struct {
    size_t instances_kept, instances_started, listeners_kept, listeners_started, listeners_stopped;
} cmi_connectors_change_t;
int cmi_connectors_start(cmi_engine_t *e, cmi_config_t *config, const cmi_config_t *old, cmi_worker_t *service,
                         cmi_connectors_change_t *change);
/* Once the workers serve config (listeners inject into them): the
 * listeners of old that config does not have stop taking messages (they
 * are destroyed with old); those config kept move to it; those not
 * running yet start.  old may be NULL. */
int cmi_connectors_start_listeners(cmi_engine_t *e, cmi_config_t *config, cmi_config_t *old,
                                   cmi_worker_t *service, cmi_connectors_change_t *change);
/* Stops config's listeners (no new messages); called when the drain begins. */
void cmi_connectors_stop_listeners(cmi_config_t *config, cmi_worker_t *service);
/* Arena cleanup of a configuration, on the service worker once its
 * connectors may have run: releases its bindings and its references to
 * instances and listeners; the last reference destroys a listener and stops
 * an instance. */
void cmi_connectors_dispose(void *connector_state);

#endif
