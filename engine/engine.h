/* The engine: settings, the compiled configuration, the HTTP listener and
 * the worker threads, from start-up to a drained exit. */
#ifndef CMI_ENGINE_H
#define CMI_ENGINE_H

#include <h2o.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config/config.h"
#include "core/log.h"
#include "http/basic_auth.h"
#include "http/tls.h"
#include "runtime/worker.h"

/* What makes /healthz answer 503 besides a deployment that is not serving
 * (starting or draining). */
#define CMI_READY_CONNECTIONS 1u /* a connection config with no connection up */
#define CMI_READY_INBOUND 2u     /* an inbound endpoint not consuming */

/* What the deployment is doing (cmi_engine_t.phase), for /healthz. */
enum { CMI_PHASE_STARTING = 0, CMI_PHASE_SERVING, CMI_PHASE_DRAINING };

typedef struct cmi_settings {
    const char *deploy_dir;      /* the folder served (main.c picks the default) */
    const char *http_host;       /* 0.0.0.0 */
    int http_port;               /* 8290; 0 picks a free port */
    const char *https_host;      /* NULL: http_host */
    int https_port;              /* 8253 (MI's); 0 picks a free port */
    cmi_tls_settings_t tls;      /* the HTTPS listener runs when tls.cert_file is set */
    int https_asked;             /* <https> or --tls-key given: a certificate is then required */
    const char *secrets_file;    /* <secrets file>: MI's vault lookups read it */
    const cmi_user_t *users;     /* <users>, for the APIs' basic authentication */
    size_t nusers;
    unsigned workers;            /* 0: number of cores */
    uint64_t max_body;           /* bytes; 10 MiB */
    uint64_t idle_timeout_ms;    /* HTTP/1 request and keep-alive idle timeout */
    int http2;                   /* accept HTTP/2 (prior knowledge, h2c upgrade); off by default */
    uint32_t http2_request_rate; /* requests per HTTP/2 connection per second; 0: no limit */
    uint32_t http2_reset_rate;   /* requests reset by the client, per connection per second */
    uint64_t drain_timeout_ms;   /* how long in-flight messages get at shutdown */
    int watch;                   /* reload when files under deploy_dir change (watch.c); off */
    uint64_t watch_delay_ms;     /* how long the files must stay unchanged first; 500 ms */
    const char *connectors_path; /* colon-separated folders */
    /* The internal port (http/internal.c): metrics, readiness, liveness. */
    const char *internal_host;   /* 127.0.0.1 */
    int internal_port;           /* 9201 (MI's); 0 picks a free port; -1: off */
    int metrics;                 /* count MI's metrics; on */
    unsigned readiness;          /* CMI_READY_*: what /healthz waits for besides the deployment */
    cmi_log_level_t log_level;   /* the default */
    const char *log_spec;        /* the level spec given, with levels of components (core/log.h); NULL: none */
    cmi_log_format_t log_format;
    const char *access_log;      /* NULL: none; "-": standard error; else a file (appended to) */
    int access_log_json;         /* one JSON object per request, else text */
    cmi_arena_t *arena; /* strings read from a server config file */
    /* Reads the settings again as they were read at start (defaults, the
     * server config file, then the flags of args), into fresh: a reload
     * takes what may change without a restart.  NULL: nothing to read. */
    int (*reread)(struct cmi_settings *fresh, int argc, char **argv);
    int argc;
    char **argv;
} cmi_settings_t;

void cmi_settings_defaults(cmi_settings_t *s);
/* Reads a server config file (XML; docs/configuration.md, "Server config
 * file") into s; problems are reported as file:line errors.  Returns 0 or
 * -1. */
int cmi_settings_load_file(cmi_settings_t *s, const char *path);
void cmi_settings_dispose(cmi_settings_t *s);
/* A per-second rate ("2000"; 0 means no limit).  Returns 0 or -1. */
int cmi_settings_parse_rate(const char *v, uint32_t *out);
/* The access log's format, "text" or "json".  Returns 0 or -1. */
int cmi_settings_parse_access_format(const char *v, int *json);
/* --watch-delay: a duration from 10 ms to a minute.  Returns 0 or -1. */
int cmi_settings_parse_watch_delay(const char *v, uint64_t *ms);
/* The internal port: a port number or "off" (-1).  Returns 0 or -1. */
int cmi_settings_parse_internal_port(const char *v, int *out);
/* What readiness waits for: "connections", "inbound-endpoints", both
 * (comma-separated) or "deployment" (nothing else).  Returns 0 or -1. */
int cmi_settings_parse_readiness(const char *v, unsigned *out);

struct cmi_plugins;

struct cmi_engine {
    cmi_settings_t settings;
    struct cmi_plugins *plugins; /* loaded connector modules */
    /* The deployment served (a reference; the service worker reads it:
     * only that thread changes it once the service runs; NULL at the end). */
    cmi_config_t *config;
    pthread_t main_thread;
    cmi_arena_t *reload_arena; /* what reloads of the server config keep (deploy.c), freed at the end */
    h2o_globalconf_t h2o;
    h2o_pathconf_t *h2o_path;    /* the one path ("/") every request takes */
    cmi_worker_t *workers;
    unsigned nworkers;
    /* The connectors' service thread: lifecycle hooks and their timers. */
    cmi_worker_t service;
    int http_port; /* the port actually bound */
    int https_port; /* the HTTPS port bound, 0: no HTTPS listener */
    SSL_CTX *tls_ctx; /* the HTTPS listener's current context */
    cmi_basic_auth_t *basic_auth; /* once an API has the basic authentication handler */
    /* Contexts a certificate reload replaced: a handshake that began on one
     * may still read it (libh2o holds no reference until the TLS session
     * exists), so each is freed after the handshake timeout. */
    struct cmi_retired_tls {
        SSL_CTX *ctx;
        uint64_t at_ms;
    } retired_tls[16];
    unsigned nretired_tls;
    /* The curl thread for backend calls (the call mediator). */
    struct cmi_http_client *http_client;
    /* The internal port, served by the service worker. */
    h2o_globalconf_t h2o_internal;
    int internal_port;           /* bound; 0: off */
    struct cmi_metrics *metrics; /* NULL: metrics off */
    atomic_int phase;            /* CMI_PHASE_*: /healthz's deployment part */
};

/* Loads the connector modules of settings->connectors_path, or of the
 * default path when it is NULL; problems go to diag.  NULL when a module
 * was refused. */
struct cmi_plugins *cmi_engine_load_plugins(const cmi_settings_t *settings, cmi_diag_t *diag);

/* Loads the deployment, serves until SIGTERM/SIGINT, drains, and returns
 * the process exit status. */
int cmi_engine_run(const cmi_settings_t *settings);

/* deploy.c, main thread.  What cfg needs before it serves as generation
 * (its release hook, its JWT checker, the credential checker).  Returns 0,
 * or -1 after logging why. */
int cmi_deploy_prepare(cmi_engine_t *e, cmi_config_t *cfg, uint64_t generation);
/* Compiles the deployment folder again and, when it loads and starts,
 * serves it in place of the running one (why: what asked, for the log).
 * Returns 0, or -1 when the running deployment goes on. */
int cmi_deploy_reload(cmi_engine_t *e, const char *why);
/* What the deployment asks of the HTTPS listener that it does not have,
 * logged. */
void cmi_deploy_warn(const cmi_engine_t *e, const cmi_config_t *cfg);
/* At the end, once the workers have stopped: lets go of the deployment
 * (its connectors stop). */
void cmi_deploy_release_all(cmi_engine_t *e);

#endif
