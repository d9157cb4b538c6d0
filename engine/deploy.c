/* Running deployments (docs/operations.md, "Reloading"): what a compiled
 * configuration needs before it serves, the swap a reload makes, and the
 * release of one whose last message has ended.
 *
 * A reload compiles the deployment folder beside the one serving; any
 * error keeps the running one.  Then, on the service worker, the
 * connection configs and inbound endpoints that did not change are carried
 * over running (plugin/lifecycle.c), new ones start, and the workers switch
 * one by one: a request is dispatched to the deployment its worker serves
 * when it arrives and runs in it to its end, holding a reference.  The old
 * deployment's listeners that the new one lacks stop taking messages; the
 * old deployment is freed, on the service worker, when its last message
 * ends. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "engine.h"
#include "http/jwt_auth.h"
#include "plugin/plugin.h"
#include "runtime/endpoint.h"
#include "runtime/metrics.h"

/* ---- the release -------------------------------------------------------------------- */

typedef struct {
    cmi_task_t task;
    cmi_config_t *config;
} destroy_task_t;

static void run_destroy(cmi_worker_t *w, cmi_task_t *task)
{
    (void)w;
    destroy_task_t *d = (destroy_task_t *)task;
    cmi_config_t *cfg = d->config;
    free(d);
    cmi_config_destroy(cfg);
}

/* The last reference went (a worker's last message of it, or the main
 * thread's release at a swap): freed on the service worker, where its
 * connectors' hooks run, as a task of its own (a connector may take its
 * time stopping; nobody waits for it; the end waits for the service's
 * tasks). */
static void config_unused(cmi_config_t *cfg)
{
    cmi_engine_t *e = cfg->engine;
    cmi_log_debug("engine", "deployment generation %llu: its last message has ended; freed",
                  (unsigned long long)cfg->generation);
    if (!e->service.started || cmi_worker_current() == &e->service) {
        cmi_config_destroy(cfg); /* nothing of it ran on a service that never started */
        return;
    }
    destroy_task_t *d = cmi_xcalloc(1, sizeof(*d));
    d->task.fn = run_destroy;
    d->config = cfg;
    if (cmi_worker_post_task(&e->service, &d->task) != 0)
        run_destroy(NULL, &d->task); /* the service has ended: nothing of it runs any more */
}

static void settings_arena_destroy(void *a)
{
    cmi_arena_destroy(a);
}

/* ---- before a deployment serves --------------------------------------------------------- */

#define JWKS_WAIT_MS 10000 /* a reload waits this long at most for the keys of its JWKS endpoints */

static void jwt_auth_destroy(void *a)
{
    cmi_jwt_auth_destroy(a);
}

/* The JWT checker of its APIs (and its key fetcher), when one has a
 * handler: the deployment's own, destroyed with it. */
static int start_jwt_auth(cmi_engine_t *e, cmi_config_t *cfg)
{
    cmi_jwt_conf_t **confs = cmi_arena_calloc(cfg->arena, cfg->napis ? cfg->napis : 1, sizeof(*confs));
    size_t n = 0;
    for (size_t i = 0; i < cfg->napis; i++)
        if (cfg->apis[i]->jwt != NULL)
            confs[n++] = cfg->apis[i]->jwt;
    if (n == 0)
        return 0;
    char err[256];
    cfg->jwt_auth = cmi_jwt_auth_create(confs, n, e->nworkers, err, sizeof(err));
    if (cfg->jwt_auth == NULL) {
        cmi_log_error("engine", "%s", err);
        return -1;
    }
    cmi_arena_cleanup_add(cfg->arena, jwt_auth_destroy, cfg->jwt_auth);
    /* A reload serves once the new checker has its keys: a token the
     * running one accepts must not get 503 meanwhile (at start, the port
     * opens at once; docs/configuration.md, "JWT handler"). */
    if (cfg->generation > 1 && cmi_jwt_auth_wait_keys(cfg->jwt_auth, JWKS_WAIT_MS) != 0)
        cmi_log_warn("engine", "reload: a JWKS endpoint gave no keys within %d s; its tokens get 503 until it does",
                     JWKS_WAIT_MS / 1000);
    return 0;
}

/* The credential checker, the first time an API asks for basic
 * authentication; it serves every later deployment too. */
static int start_basic_auth(cmi_engine_t *e, const cmi_config_t *cfg)
{
    const char *first = NULL;
    for (size_t i = 0; i < cfg->napis && first == NULL; i++)
        if (cfg->apis[i]->auth & CMI_API_AUTH_BASIC)
            first = cfg->apis[i]->name;
    if (first == NULL || e->basic_auth != NULL)
        return 0;
    if (e->settings.nusers == 0)
        cmi_log_warn("http", "API %s asks for basic authentication and the server config has no <users>: every "
                     "request to it is refused (docs/configuration.md, \"Users\")", first);
    char err[256];
    e->basic_auth = cmi_basic_auth_create(e->settings.users, e->settings.nusers, e->nworkers, err, sizeof(err));
    if (e->basic_auth == NULL)
        cmi_log_error("engine", "%s", err);
    return e->basic_auth != NULL ? 0 : -1;
}

int cmi_deploy_prepare(cmi_engine_t *e, cmi_config_t *cfg, uint64_t generation)
{
    cfg->engine = e;
    cfg->unused = config_unused;
    cfg->generation = generation;
    return start_basic_auth(e, cfg) != 0 || start_jwt_auth(e, cfg) != 0 ? -1 : 0;
}

/* ---- the server config ---------------------------------------------------------------- */

static int same_str(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int same_users(const cmi_settings_t *a, const cmi_settings_t *b)
{
    if (a->nusers != b->nusers)
        return 0;
    for (size_t i = 0; i < a->nusers; i++)
        if (!same_str(a->users[i].name, b->users[i].name) || !same_str(a->users[i].hash, b->users[i].hash) ||
            !same_str(a->users[i].roles, b->users[i].roles))
            return 0;
    return 1;
}

/* What changed that only a restart applies: said, once per reload. */
static void say_restart_needed(const cmi_settings_t *cur, const cmi_settings_t *fresh)
{
    char list[512] = "";
    size_t n = 0;
#define CHANGED(cond, name) \
    if (cond)               \
        n += (size_t)snprintf(list + n, n < sizeof(list) ? sizeof(list) - n : 0, "%s%s", n ? ", " : "", name)
    CHANGED(!same_str(cur->http_host, fresh->http_host) || cur->http_port != fresh->http_port, "the HTTP listener");
    CHANGED(!same_str(cur->https_host, fresh->https_host) || cur->https_port != fresh->https_port ||
                !same_str(cur->tls.cert_file, fresh->tls.cert_file) || !same_str(cur->tls.key_file, fresh->tls.key_file),
            "the HTTPS listener");
    CHANGED(!same_str(cur->internal_host, fresh->internal_host) || cur->internal_port != fresh->internal_port ||
                cur->metrics != fresh->metrics || cur->readiness != fresh->readiness,
            "the internal port");
    CHANGED(cur->workers != fresh->workers, "workers");
    CHANGED(cur->max_body != fresh->max_body || cur->idle_timeout_ms != fresh->idle_timeout_ms ||
                cur->http2 != fresh->http2 || cur->http2_request_rate != fresh->http2_request_rate ||
                cur->http2_reset_rate != fresh->http2_reset_rate,
            "HTTP limits");
    CHANGED(!same_str(cur->connectors_path, fresh->connectors_path), "the connectors path");
    CHANGED(!same_str(cur->secrets_file, fresh->secrets_file), "the secrets file");
    CHANGED(!same_str(cur->access_log, fresh->access_log) || cur->access_log_json != fresh->access_log_json ||
                cur->log_format != fresh->log_format,
            "the log format or access log");
    CHANGED(cur->watch != fresh->watch || cur->watch_delay_ms != fresh->watch_delay_ms, "watching");
#undef CHANGED
    if (n > 0)
        cmi_log_warn("engine", "reload: the server config changes %s: that takes a restart (the rest is applied)",
                     list);
}

/* The server config (--config) and the flags read again: the log levels,
 * the users and the drain timeout take effect now; what else changed is
 * said to need a restart. */
static void reload_settings(cmi_engine_t *e)
{
    cmi_settings_t *cur = &e->settings;
    if (cur->reread == NULL)
        return;
    cmi_settings_t fresh;
    if (cur->reread(&fresh, cur->argc, cur->argv) != 0) {
        cmi_log_error("engine", "reload: the server config has errors (above): the settings stay as they were");
        cmi_settings_dispose(&fresh);
        return;
    }
    if (e->reload_arena == NULL)
        e->reload_arena = cmi_arena_create(0);
    if (cur->log_level != fresh.log_level || !same_str(cur->log_spec, fresh.log_spec)) {
        cmi_log_configure(fresh.log_level, cur->log_format);
        cmi_log_configure_components(fresh.log_spec);
        cur->log_level = fresh.log_level;
        cur->log_spec = fresh.log_spec ? cmi_arena_strdup(e->reload_arena, fresh.log_spec) : NULL;
        cmi_log_info("engine", "reload: log levels %s", cur->log_spec ? cur->log_spec : "as at start, by default");
    }
    cur->drain_timeout_ms = fresh.drain_timeout_ms;
    say_restart_needed(cur, &fresh);
    if (same_users(cur, &fresh)) {
        cmi_settings_dispose(&fresh);
        return;
    }
    /* The users replaced stay allocated (a check under way may read them):
     * their arena goes at the end, with the engine's. */
    if (e->basic_auth != NULL)
        cmi_basic_auth_set_users(e->basic_auth, fresh.users, fresh.nusers);
    cur->users = fresh.users;
    cur->nusers = fresh.nusers;
    if (fresh.arena != NULL)
        cmi_arena_cleanup_add(e->reload_arena, settings_arena_destroy, fresh.arena);
    cmi_log_info("engine", "reload: %zu user(s) for basic authentication", cur->nusers);
}

/* ---- the swap --------------------------------------------------------------------------- */

typedef struct {
    cmi_engine_t *e;
    cmi_config_t *config;
} current_t;

/* On the service worker, which reads it (the internal port, reports). */
static void set_current(void *arg)
{
    current_t *c = arg;
    c->e->config = c->config;
}

static void make_current(cmi_engine_t *e, cmi_config_t *cfg)
{
    current_t c = {e, cfg};
    cmi_worker_call(&e->service, set_current, &c);
}

/* A backend's counts go on across a reload: the new deployment's leaf of
 * the same name starts from the old one's (calls that end on the old one
 * after this are not counted). */
static void carry_endpoint_counts(cmi_config_t *to, const cmi_config_t *from)
{
    for (cmi_endpoint_state_t *s = to->endpoint_states; s != NULL; s = s->next) {
        const char *name = cmi_endpoint_name(s->leaf);
        for (cmi_endpoint_state_t *o = from->endpoint_states; o != NULL; o = o->next) {
            if (strcmp(cmi_endpoint_name(o->leaf), name) != 0)
                continue;
            pthread_mutex_lock(&o->lock);
            s->counts = o->counts;
            pthread_mutex_unlock(&o->lock);
            break;
        }
    }
}

static void log_change(const cmi_config_t *cfg, const cmi_config_t *old, const cmi_connectors_change_t *ch,
                       uint64_t ms)
{
    cmi_log_info("engine", "reload: generation %llu serves (was %llu), compiled and swapped in %llu ms: %zu API(s), "
                 "%zu proxy service(s); connection configs: %zu kept, %zu started, %zu to stop once idle; inbound "
                 "endpoints: %zu kept, %zu started, %zu stopped",
                 (unsigned long long)cfg->generation, (unsigned long long)old->generation, (unsigned long long)ms,
                 cfg->napis, cfg->nproxies, ch->instances_kept, ch->instances_started,
                 old->connectors->ninstances - ch->instances_kept, ch->listeners_kept, ch->listeners_started,
                 ch->listeners_stopped);
}

int cmi_deploy_reload(cmi_engine_t *e, const char *why)
{
    uint64_t t0 = cmi_monotonic_ms();
    cmi_config_t *old = e->config;
    cmi_log_info("engine", "%s: reloading the deployment %s", why, e->settings.deploy_dir);
    reload_settings(e);
    cmi_diag_t diag;
    cmi_diag_init(&diag, stderr);
    cmi_config_t *cfg = cmi_config_load_with(e->settings.deploy_dir, e->plugins, 0, &diag);
    if (cfg == NULL) {
        cmi_log_error("engine", "reload: %zu error(s) in the deployment %s (above); generation %llu goes on serving",
                      diag.errors, e->settings.deploy_dir, (unsigned long long)old->generation);
        return -1;
    }
    cmi_connectors_change_t ch;
    if (cmi_deploy_prepare(e, cfg, old->generation + 1) != 0 ||
        cmi_connectors_start(e, cfg, old, &e->service, &ch) != 0) {
        cmi_log_error("engine", "reload: the new deployment cannot start (above); generation %llu goes on serving",
                      (unsigned long long)old->generation);
        cmi_config_release(cfg); /* stops what it started, on the service worker */
        return -1;
    }
    cmi_metrics_deploy(e->metrics, cfg, (double)time(NULL));
    carry_endpoint_counts(cfg, old);
    make_current(e, cfg);
    for (unsigned i = 0; i < e->nworkers; i++)
        cmi_worker_set_config(&e->workers[i], cfg);
    if (cmi_connectors_start_listeners(e, cfg, old, &e->service, &ch) != 0)
        cmi_log_error("engine", "reload: an inbound endpoint did not start (above); the rest of generation %llu "
                      "serves", (unsigned long long)cfg->generation);
    cmi_deploy_warn(e, cfg);
    log_change(cfg, old, &ch, cmi_monotonic_ms() - t0);
    cmi_config_release(old); /* the engine's: freed once its last message ends */
    return 0;
}

static void nothing(void *arg)
{
    (void)arg;
}

void cmi_deploy_release_all(cmi_engine_t *e)
{
    for (unsigned i = 0; i < e->nworkers; i++) {
        cmi_config_release(e->workers[i].config);
        e->workers[i].config = NULL;
    }
    cmi_config_t *cfg = e->config;
    make_current(e, NULL);
    cmi_config_release(cfg);
    /* The service runs its tasks in order: once this call returns, every
     * deployment's release has run (its connectors have stopped) before the
     * service, then the modules, go. */
    cmi_worker_call(&e->service, nothing, NULL);
}
