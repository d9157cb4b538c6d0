#include "config.h"

#include "engine.h"
#include "http/client.h"

#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/server.h"
#include "plugin/plugin.h"
#include "runtime/msg.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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

static int start_workers(cmi_engine_t *e, int *fds)
{
    for (unsigned i = 0; i < e->nworkers; i++) {
        int rc = cmi_worker_start(&e->workers[i], e, i, &e->h2o, fds[i], cmi_http_worker_accept);
        if (rc != 0) {
            cmi_log_error("engine", "cannot start worker thread %u: %s", i, strerror(rc));
            return -1;
        }
    }
    return 0;
}

static void wait_for_stop(const sigset_t *set)
{
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            cmi_log_warn("engine", "SIGHUP: reloading the deployment is not supported by cmi yet; ignored");
            continue;
        }
        cmi_log_info("engine", "%s received: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
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

int cmi_engine_run(const cmi_settings_t *settings)
{
    uint64_t t0 = now_ms();
    cmi_engine_t e;
    memset(&e, 0, sizeof(e));
    e.settings = *settings;
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

    int *fds = cmi_xcalloc(e.nworkers, sizeof(int));
    char err[256];
    if (cmi_http_listen(settings->http_host, settings->http_port, fds, e.nworkers, &e.http_port, err,
                        sizeof(err)) != 0) {
        cmi_log_error("http", "%s", err);
        free(fds);
        cmi_config_destroy(e.config);
        cmi_plugins_destroy(e.plugins);
        return 1;
    }
    cmi_http_configure(&e);
    sigset_t set;
    block_signals(&set);
    /* After block_signals: the curl thread inherits the mask (SIGTERM
     * must reach sigwait, not end the process in that thread). */
    e.http_client = cmi_http_client_create(err, sizeof(err));
    if (e.http_client == NULL) {
        cmi_log_error("engine", "%s", err);
        for (unsigned i = 0; i < e.nworkers; i++)
            close(fds[i]);
        free(fds);
        cmi_config_destroy(e.config);
        cmi_plugins_destroy(e.plugins);
        return 1;
    }
    /* Connector instances first: a request may use them as soon as a worker
     * accepts.  Listeners last: they inject into the workers. */
    e.workers = cmi_xcalloc(e.nworkers, sizeof(*e.workers));
    int rc = cmi_worker_start(&e.service, &e, e.nworkers, &e.h2o, -1, NULL);
    if (rc != 0)
        cmi_log_error("engine", "cannot start the connector service thread: %s", strerror(rc));
    if (rc == 0 && cmi_connectors_start(&e, &e.service) != 0)
        rc = -1;
    if (rc == 0)
        rc = start_workers(&e, fds);
    for (unsigned i = 0; i < e.nworkers; i++)
        if (!e.workers[i].started)
            close(fds[i]);
    free(fds);
    if (rc == 0 && cmi_connectors_start_listeners(&e, &e.service) != 0)
        rc = -1;
    if (rc == 0) {
        cmi_log_info("http", "listening on %s:%d (%u worker%s)", settings->http_host, e.http_port, e.nworkers,
                     e.nworkers == 1 ? "" : "s");
        cmi_log_info("engine", "cmi %s ready: %zu API(s), %zu proxy service(s) from %s in %llu ms", PACKAGE_VERSION,
                     e.config->napis, e.config->nproxies, settings->deploy_dir, (unsigned long long)(now_ms() - t0));
        wait_for_stop(&set);
    }
    if (e.service.started)
        cmi_connectors_stop_listeners(&e, &e.service);
    size_t abandoned = stop_workers(&e, &set);
    if (abandoned > 0) {
        /* The drain bound passed with messages still suspended: their state
         * cannot be freed safely, and the process ends now anyway. */
        cmi_log_warn("engine", "stopped with %zu message(s) abandoned after the drain timeout", abandoned);
        _exit(0);
    }
    if (e.service.started)
        cmi_connectors_stop(&e, &e.service);
    stop_service(&e);
    /* After the workers: no call is in flight any more. */
    cmi_http_client_destroy(e.http_client);
    /* Only now: a connector thread may look at the workers until its
     * connector has stopped. */
    free(e.workers);
    h2o_config_dispose(&e.h2o);
    cmi_config_destroy(e.config);
    cmi_plugins_destroy(e.plugins);
    cmi_log_info("engine", "stopped");
    return rc == 0 ? 0 : 1;
}
