#include "config.h"

#include "engine.h"
#include "http/client.h"

#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/secrets.h"
#include "http/access_log.h"
#include "http/internal.h"
#include "http/server.h"
#include "plugin/plugin.h"
#include "runtime/metrics.h"
#include "runtime/msg.h"
#include "watch.h"

static unsigned default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* Signals go to the main thread only (sigwait); workers never see them. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* fds: a socket per worker for HTTP, then one per worker for HTTPS when
 * it runs. */
static int start_workers(cmi_engine_t *e, int *fds)
{
    for (unsigned i = 0; i < e->nworkers; i++) {
        cmi_worker_listen_t listen[2] = {{fds[i], NULL}, {e->https_port ? fds[e->nworkers + i] : -1, e->tls_ctx}};
        e->workers[i].metrics = cmi_metrics_shard(e->metrics, i);
        cmi_worker_set_config(&e->workers[i], e->config);
        int rc = cmi_worker_start(&e->workers[i], e, i, &e->h2o, listen, e->https_port ? 2 : 1,
                                  cmi_http_worker_accept);
        if (rc != 0) {
            cmi_log_error("engine", "cannot start worker thread %u: %s", i, strerror(rc));
            return -1;
        }
    }
    return 0;
}

/* Frees the replaced TLS contexts no handshake can still be using: h2o
 * closes a connection whose handshake has not ended by then, and a TLS
 * session that exists holds its own reference.  all: every one (the
 * workers have stopped). */
static void free_retired_tls(cmi_engine_t *e, int all)
{
    uint64_t now = cmi_monotonic_ms(), grace = e->h2o.handshake_timeout + 5000;
    unsigned kept = 0;
    for (unsigned i = 0; i < e->nretired_tls; i++) {
        if (all || now - e->retired_tls[i].at_ms > grace)
            SSL_CTX_free(e->retired_tls[i].ctx);
        else
            e->retired_tls[kept++] = e->retired_tls[i];
    }
    e->nretired_tls = kept;
}

/* SIGHUP: the HTTPS listener's certificate, key and CA files are read
 * again from the paths it started with (a renewed certificate goes live
 * without a restart).  A file that no longer loads keeps the running
 * context. */
static void reload_tls(cmi_engine_t *e)
{
    if (e->tls_ctx == NULL)
        return;
    free_retired_tls(e, 0);
    if (e->nretired_tls == sizeof(e->retired_tls) / sizeof(e->retired_tls[0])) {
        cmi_log_warn("engine", "SIGHUP: too many certificate reloads in the last %llu s; try again later",
                     (unsigned long long)(e->h2o.handshake_timeout + 5000) / 1000);
        return;
    }
    char err[512];
    SSL_CTX *ctx = cmi_tls_context_create(&e->settings.tls, err, sizeof(err));
    if (ctx == NULL) {
        cmi_log_error("engine", "SIGHUP: HTTPS: %s; the running certificate stays", err);
        return;
    }
    for (unsigned i = 0; i < e->nworkers; i++)
        if (e->workers[i].started)
            cmi_worker_set_ssl_ctx(&e->workers[i], ctx);
    e->retired_tls[e->nretired_tls].ctx = e->tls_ctx;
    e->retired_tls[e->nretired_tls++].at_ms = cmi_monotonic_ms();
    e->tls_ctx = ctx;
    cmi_log_info("engine", "SIGHUP: HTTPS certificate reloaded from %s (new connections use it)",
                 e->settings.tls.cert_file);
}

/* The next signal, or 0 when the watched files changed and then stayed
 * unchanged for the watch delay (watch: NULL when off). */
static int next_event(cmi_engine_t *e, int sfd, cmi_watch_t *watch, const char **what)
{
    uint64_t due = 0; /* a change seen: reload at due (monotonic ms) */
    for (;;) {
        struct pollfd p[2] = {{sfd, POLLIN, 0}, {watch ? cmi_watch_fd(watch) : -1, POLLIN, 0}};
        int timeout = -1;
        if (due != 0) {
            uint64_t now = cmi_monotonic_ms();
            if (now >= due)
                return 0;
            timeout = (int)(due - now);
        }
        if (poll(p, 2, timeout) < 0)
            continue; /* EINTR */
        if (p[1].revents & POLLIN && cmi_watch_read(watch, what))
            due = cmi_monotonic_ms() + e->settings.watch_delay_ms; /* each change puts it off */
        struct signalfd_siginfo si;
        if (p[0].revents & POLLIN && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            return (int)si.ssi_signo;
    }
}

static void wait_for_stop(cmi_engine_t *e, const sigset_t *set)
{
    int sfd = signalfd(-1, set, SFD_CLOEXEC);
    char err[256];
    cmi_watch_t *watch = NULL;
    if (e->settings.watch && (watch = cmi_watch_create(e->settings.deploy_dir, err, sizeof(err))) == NULL)
        cmi_log_error("engine", "%s; the deployment reloads on SIGHUP only", err);
    else if (watch != NULL)
        cmi_log_info("engine", "watching %s: a change reloads it after %llu ms without another",
                     e->settings.deploy_dir, (unsigned long long)e->settings.watch_delay_ms);
    for (;;) {
        const char *what = NULL;
        int sig = sfd >= 0 ? next_event(e, sfd, watch, &what) : 0;
        if (sfd < 0 && sigwait(set, &sig) != 0)
            continue;
        if (sig == 0) {
            char why[320];
            snprintf(why, sizeof(why), "files changed (%s, ...)", what ? what : "?");
            cmi_deploy_reload(e, why);
            cmi_watch_rescan(watch);
            continue;
        }
        if (sig == SIGHUP) {
            reload_tls(e);
            cmi_deploy_reload(e, "SIGHUP");
            continue;
        }
        atomic_store(&e->phase, CMI_PHASE_DRAINING); /* /healthz: not ready from the line on */
        cmi_log_info("engine", "%s received: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
    }
    cmi_watch_destroy(watch);
    if (sfd >= 0)
        close(sfd);
}

/* Waits for the started workers to finish their drain.  A second SIGINT or
 * SIGTERM meanwhile means "stop now". */
static void wait_for_workers(cmi_engine_t *e, const sigset_t *set)
{
    struct timespec tick = {0, 20 * 1000000L};
    for (;;) {
        int all = 1;
        for (unsigned i = 0; i < e->nworkers; i++)
            all &= !e->workers[i].started || cmi_worker_finished(&e->workers[i]);
        if (all)
            return;
        int sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
            cmi_log_warn("engine", "second %s: stopping without finishing the drain",
                         sig == SIGINT ? "SIGINT" : "SIGTERM");
            _exit(1);
        }
    }
}

/* Returns the number of messages the drain had to abandon. */
static size_t stop_workers(cmi_engine_t *e, const sigset_t *set)
{
    size_t abandoned = 0;
    for (unsigned i = 0; i < e->nworkers; i++)
        if (e->workers[i].started)
            cmi_worker_request_drain(&e->workers[i], e->settings.drain_timeout_ms);
    wait_for_workers(e, set);
    for (unsigned i = 0; i < e->nworkers; i++)
        abandoned += e->workers[i].inflight;
    return abandoned;
}

cmi_plugins_t *cmi_engine_load_plugins(const cmi_settings_t *settings, cmi_diag_t *diag)
{
    if (settings->connectors_path != NULL)
        return cmi_plugins_load(settings->connectors_path, 1, diag);
    cmi_arena_t *a = cmi_arena_create(1024);
    cmi_plugins_t *p = cmi_plugins_load(cmi_plugins_default_path(a), 0, diag);
    cmi_arena_destroy(a);
    return p;
}

/* The service worker has no listener; its drain ends at once. */
static void stop_service(cmi_engine_t *e)
{
    if (!e->service.started)
        return;
    cmi_worker_request_drain(&e->service, 1000);
    struct timespec tick = {0, 5 * 1000000L};
    while (!cmi_worker_finished(&e->service))
        nanosleep(&tick, NULL);
}

static void log_connectors(const cmi_engine_t *e)
{
    for (size_t i = 0; i < e->plugins->count; i++)
        cmi_log_info("connectors", "connector %s %s loaded from %s", e->plugins->mods[i].desc->name,
                     e->plugins->mods[i].desc->version, e->plugins->mods[i].path);
}

/* The HTTP sockets (one per worker), then, when a certificate is
 * configured, the HTTPS listener's context and sockets. */
static int open_listeners(cmi_engine_t *e, int *fds, char *err, size_t errlen)
{
    cmi_settings_t *s = &e->settings;
    if (s->https_asked && s->tls.cert_file == NULL) {
        snprintf(err, errlen, "HTTPS: no certificate (<https certificate=...> or --tls-cert): not starting");
        return -1;
    }
    if (s->tls.cert_file != NULL) {
        char why[400];
        if (s->tls.password != NULL && cmi_secret_resolve_ref(s->arena, s->tls.password, &s->tls.password, why,
                                                              sizeof(why)) < 0) {
            snprintf(err, errlen, "HTTPS password: %s: not starting", why);
            return -1;
        }
        e->tls_ctx = cmi_tls_context_create(&s->tls, why, sizeof(why));
        if (e->tls_ctx == NULL) {
            snprintf(err, errlen, "HTTPS: %s: not starting", why);
            return -1;
        }
    }
    if (cmi_http_listen(s->http_host, s->http_port, fds, e->nworkers, &e->http_port, err, errlen) != 0)
        goto fail;
    if (e->tls_ctx == NULL)
        return 0;
    const char *host = s->https_host ? s->https_host : s->http_host;
    if (cmi_http_listen(host, s->https_port, fds + e->nworkers, e->nworkers, &e->https_port, err, errlen) == 0)
        return 0;
    for (unsigned i = 0; i < e->nworkers; i++)
        close(fds[i]);
fail:
    SSL_CTX_free(e->tls_ctx);
    e->tls_ctx = NULL;
    return -1;
}

/* The internal port's socket, unless it is off (-1 then, and 0 returned). */
static int open_internal(cmi_engine_t *e, int *fd, char *err, size_t errlen)
{
    *fd = -1;
    const cmi_settings_t *s = &e->settings;
    if (s->internal_port < 0)
        return 0;
    char why[400];
    if (cmi_http_listen(s->internal_host, s->internal_port, fd, 1, &e->internal_port, why, sizeof(why)) == 0)
        return 0;
    snprintf(err, errlen, "internal port (metrics and health; --internal-port, off to go without): %s", why);
    return -1;
}

/* The connector service thread, which also serves the internal port. */
static int start_service(cmi_engine_t *e, int internal_fd)
{
    if (internal_fd < 0)
        return cmi_worker_start(&e->service, e, e->nworkers, &e->h2o, NULL, 0, NULL);
    cmi_internal_configure(e);
    cmi_worker_listen_t listen = {internal_fd, NULL};
    int rc = cmi_worker_start(&e->service, e, e->nworkers, &e->h2o_internal, &listen, 1, cmi_http_worker_accept);
    if (rc != 0)
        close(internal_fd);
    return rc;
}

static void close_unstarted(cmi_engine_t *e, int *fds)
{
    for (unsigned i = 0; i < e->nworkers; i++) {
        if (e->workers != NULL && e->workers[i].started)
            continue;
        close(fds[i]);
        if (e->https_port != 0)
            close(fds[e->nworkers + i]);
    }
}

/* What the deployment asks of the HTTPS listener and it does not have: a
 * proxy service that takes HTTPS only answers nothing without one (over
 * HTTP it gets MI's fault); an API that requires a client certificate
 * refuses everything when the listener does not ask for one. */
void cmi_deploy_warn(const cmi_engine_t *e, const cmi_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nproxies && e->https_port == 0; i++)
        if (cfg->proxies[i]->transports == CMI_PROXY_HTTPS)
            cmi_log_warn("http", "proxy service %s takes HTTPS only and no certificate is configured: it answers "
                         "no request (docs/configuration.md, \"HTTPS\")", cfg->proxies[i]->api.name);
    for (size_t i = 0; i < cfg->napis; i++)
        if ((cfg->apis[i]->auth & CMI_API_AUTH_CLIENT_CERT) &&
            (e->https_port == 0 || e->settings.tls.verify_client == CMI_TLS_VERIFY_NONE))
            cmi_log_warn("http", "API %s requires a client certificate and the HTTPS listener does not ask for one "
                         "(<https verifyClient=\"optional\" caFile=...>): every request to it gets 403",
                         cfg->apis[i]->name);
}

static void log_https(const cmi_engine_t *e)
{
    const cmi_tls_settings_t *t = &e->settings.tls;
    cmi_log_info("http", "listening on %s:%d for HTTPS (%s, %s, client certificates: %s)",
                 e->settings.https_host ? e->settings.https_host : e->settings.http_host, e->https_port,
                 t->protocols ? t->protocols : "TLSv1.2,TLSv1.3", t->http2 ? "HTTP/1.1 and h2" : "HTTP/1.1",
                 cmi_tls_verify_name(t->verify_client));
}

static void log_listeners(const cmi_engine_t *e)
{
    const cmi_settings_t *s = &e->settings;
    cmi_log_info("http", "listening on %s:%d (%u worker%s)", s->http_host, e->http_port, e->nworkers,
                 e->nworkers == 1 ? "" : "s");
    if (s->access_log != NULL)
        cmi_log_info("http", "access log (%s) to %s", s->access_log_json ? "json" : "text",
                     strcmp(s->access_log, "-") == 0 ? "standard error" : s->access_log);
    if (e->https_port != 0)
        log_https(e);
    if (e->internal_port != 0)
        cmi_log_info("http", "internal port on %s:%d: GET /metric-service/metrics%s, /healthz, /liveness",
                     s->internal_host, e->internal_port, e->metrics ? "" : " (metrics off)");
}

/* The end of a run that did not serve: what was set up goes, in the order
 * it came. */
static void undo_setup(cmi_engine_t *e, int *fds, int internal_fd)
{
    close_unstarted(e, fds);
    if (internal_fd >= 0)
        close(internal_fd);
    free(fds);
    SSL_CTX_free(e->tls_ctx);
    h2o_config_dispose(&e->h2o);
    cmi_http_client_destroy(e->http_client);
    cmi_basic_auth_destroy(e->basic_auth);
    cmi_config_release(e->config);
    cmi_metrics_destroy(e->metrics);
    cmi_plugins_destroy(e->plugins);
}

/* From a drain that has ended to the exit: the deployment goes (its
 * connectors stop on the service worker), then the engine's threads. */
static int teardown(cmi_engine_t *e, const sigset_t *set, int rc)
{
    if (e->service.started && e->config != NULL)
        cmi_connectors_stop_listeners(e->config, &e->service);
    size_t abandoned = stop_workers(e, set);
    if (abandoned > 0) {
        /* The drain bound passed with messages still suspended: their state
         * cannot be freed safely, and the process ends now anyway. */
        cmi_log_warn("engine", "stopped with %zu message(s) abandoned after the drain timeout", abandoned);
        _exit(0);
    }
    cmi_deploy_release_all(e);
    stop_service(e);
    /* After the workers: no call is in flight any more. */
    cmi_http_client_destroy(e->http_client);
    cmi_basic_auth_destroy(e->basic_auth);
    /* Only now: a connector thread may look at the workers until its
     * connector has stopped. */
    free(e->workers);
    cmi_metrics_destroy(e->metrics);
    h2o_config_dispose(&e->h2o);
    if (e->internal_port != 0)
        h2o_config_dispose(&e->h2o_internal);
    free_retired_tls(e, 1);
    SSL_CTX_free(e->tls_ctx);
    cmi_plugins_destroy(e->plugins);
    cmi_arena_destroy(e->reload_arena);
    cmi_log_info("engine", "stopped");
    return rc == 0 ? 0 : 1;
}

int cmi_engine_run(const cmi_settings_t *settings)
{
    uint64_t t0 = cmi_monotonic_ms();
    cmi_engine_t e;
    memset(&e, 0, sizeof(e));
    e.settings = *settings;
    e.main_thread = pthread_self();
    e.nworkers = settings->workers ? settings->workers : default_workers();
    /* Fixed thresholds: glibc would otherwise raise them after the first
     * large free (a 10 MiB body), and every later large buffer would stay
     * on the heap, held after its message ends. */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    /* Views derived from a payload may take four times what a request
     * body may (docs/operations.md, "HTTP behaviour", and docs/limits.md). */
    cmi_msg_set_view_limit(settings->max_body <= SIZE_MAX / 4 ? (size_t)settings->max_body * 4 : SIZE_MAX);

    cmi_diag_t diag;
    cmi_diag_init(&diag, stderr);
    e.plugins = cmi_engine_load_plugins(settings, &diag);
    if (e.plugins == NULL) {
        cmi_log_error("engine", "a connector module was refused: not starting");
        return 1;
    }
    log_connectors(&e);
    e.config = cmi_config_load_with(settings->deploy_dir, e.plugins, 0, &diag);
    if (e.config == NULL) {
        cmi_log_error("engine", "%zu error(s) in the deployment %s: not starting", diag.errors, settings->deploy_dir);
        cmi_plugins_destroy(e.plugins);
        return 1;
    }

    int *fds = cmi_xcalloc(2 * (size_t)e.nworkers, sizeof(int));
    char err[512];
    int internal_fd = -1;
    int opened = open_listeners(&e, fds, err, sizeof(err)) == 0;
    if (opened && open_internal(&e, &internal_fd, err, sizeof(err)) != 0) {
        close_unstarted(&e, fds);
        SSL_CTX_free(e.tls_ctx);
        opened = 0;
    }
    if (!opened) {
        cmi_log_error("http", "%s", err);
        free(fds);
        cmi_config_release(e.config);
        cmi_plugins_destroy(e.plugins);
        return 1;
    }
    cmi_http_configure(&e);
    int access_ok = cmi_access_log_register(e.h2o_path, &e.settings, err, sizeof(err)) == 0;
    if (!access_ok)
        cmi_log_error("http", "%s: not starting", err);
    sigset_t set;
    block_signals(&set);
    /* After block_signals: the curl and credential threads inherit the
     * mask (SIGTERM must reach sigwait, not end the process there). */
    e.http_client = cmi_http_client_create(err, sizeof(err));
    if (e.http_client == NULL)
        cmi_log_error("engine", "%s", err);
    if (!access_ok || e.http_client == NULL || cmi_deploy_prepare(&e, e.config, 1) != 0) {
        undo_setup(&e, fds, internal_fd);
        return 1;
    }
    if (settings->metrics) {
        e.metrics = cmi_metrics_create(e.nworkers, (double)time(NULL), e.http_port);
        cmi_metrics_deploy(e.metrics, e.config, (double)time(NULL));
    }
    /* Connector instances first: a request may use them as soon as a worker
     * accepts.  Listeners last: they inject into the workers. */
    e.workers = cmi_xcalloc(e.nworkers, sizeof(*e.workers));
    int rc = start_service(&e, internal_fd);
    if (rc != 0)
        cmi_log_error("engine", "cannot start the connector service thread: %s", strerror(rc));
    if (rc == 0 && cmi_connectors_start(&e, e.config, NULL, &e.service, NULL) != 0)
        rc = -1;
    if (rc == 0)
        rc = start_workers(&e, fds);
    close_unstarted(&e, fds);
    free(fds);
    if (rc == 0 && cmi_connectors_start_listeners(&e, e.config, NULL, &e.service, NULL) != 0)
        rc = -1;
    if (rc == 0) {
        atomic_store(&e.phase, CMI_PHASE_SERVING); /* before the lines that say so */
        log_listeners(&e);
        cmi_deploy_warn(&e, e.config);
        cmi_log_info("engine", "cmi %s ready: %zu API(s), %zu proxy service(s) from %s in %llu ms", PACKAGE_VERSION,
                     e.config->napis, e.config->nproxies, settings->deploy_dir, (unsigned long long)(cmi_monotonic_ms() - t0));
        wait_for_stop(&e, &set);
    }
    return teardown(&e, &set, rc);
}
