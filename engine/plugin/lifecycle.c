/* Starting and stopping what connectors run: instances (connection
 * configs), bindings (operation elements) and listeners (inbound
 * endpoints).  Every hook runs on the service worker, so that connectors
 * get one thread for their housekeeping and its timers. */
#include "config.h"

#include <string.h>
#include <time.h>

#include "core/log.h"
#include "engine.h"
#include "plugin/plugin.h"
#include "runtime/worker.h"

typedef struct {
    cmi_engine_t *e;
    int rc;
} lifecycle_t;

static int start_instances(cmi_connector_state_t *st)
{
    char err[512];
    cmi_instance_impl_t *i;
    STAILQ_FOREACH (i, &st->instances, link) {
        const cmi_config_def_t *def = i->mod->desc->config;
        err[0] = '\0';
        if (def->start != NULL && def->start(&i->pub, err, sizeof(err)) != 0) {
            cmi_log_error(i->pub.component, "cannot start the connection config (%s:%d): %s", i->file, i->line,
                          err[0] ? err : "no reason given");
            return -1;
        }
        i->started = 1;
    }
    return 0;
}

static int prepare_bindings(cmi_connector_state_t *st)
{
    char err[512];
    cmi_binding_impl_t *b;
    SLIST_FOREACH (b, &st->bindings, link) {
        err[0] = '\0';
        if (b->op->prepare != NULL && b->op->prepare(&b->pub, err, sizeof(err)) != 0) {
            cmi_log_error("connectors", "%s at %s cannot be prepared: %s", b->params.what, b->pub.where,
                          err[0] ? err : "no reason given");
            return -1;
        }
        b->prepared = 1;
    }
    return 0;
}

/* inject() is refused until start has returned 0: a listener that fails to
 * start has injected nothing. */
static int start_listeners(cmi_engine_t *e, cmi_connector_state_t *st)
{
    char err[512];
    cmi_listener_impl_t *l;
    STAILQ_FOREACH (l, &st->listeners, link) {
        l->engine = e;
        err[0] = '\0';
        if (l->def->start(&l->pub, err, sizeof(err)) != 0) {
            cmi_log_error(l->pub.component, "cannot start inbound endpoint %s (%s:%d): %s", l->pub.name,
                          l->inbound->file, l->inbound->line, err[0] ? err : "no reason given");
            return -1;
        }
        l->started = 1;
        atomic_store(&l->accepting, 1);
        cmi_log_info(l->pub.component, "inbound endpoint %s started (sequence %s)", l->pub.name,
                     l->inbound->sequence->name);
    }
    return 0;
}

static void start_on_service(void *arg)
{
    lifecycle_t *lc = arg;
    cmi_connector_state_t *st = lc->e->config->connectors;
    lc->rc = start_instances(st) != 0 || prepare_bindings(st) != 0 ? -1 : 0;
}

int cmi_connectors_start(cmi_engine_t *e, cmi_worker_t *service)
{
    lifecycle_t lc = {e, 0};
    cmi_worker_call(service, start_on_service, &lc);
    return lc.rc;
}

static void start_listeners_on_service(void *arg)
{
    lifecycle_t *lc = arg;
    lc->rc = start_listeners(lc->e, lc->e->config->connectors);
}

int cmi_connectors_start_listeners(cmi_engine_t *e, cmi_worker_t *service)
{
    lifecycle_t lc = {e, 0};
    cmi_worker_call(service, start_listeners_on_service, &lc);
    return lc.rc;
}

static void stop_listeners_on_service(void *arg)
{
    lifecycle_t *lc = arg;
    cmi_listener_impl_t *l;
    STAILQ_FOREACH (l, &lc->e->config->connectors->listeners, link) {
        if (!l->started || !atomic_exchange(&l->accepting, 0))
            continue;
        /* An inject() that saw accepting set finishes posting first: after
         * this, every message the listener was told it injected is queued on
         * a worker, and the drain runs it. */
        struct timespec tick = {0, 100000L};
        while (atomic_load(&l->injecting) > 0)
            nanosleep(&tick, NULL);
        if (l->def->stop != NULL)
            l->def->stop(&l->pub);
        cmi_log_info(l->pub.component, "inbound endpoint %s stopped taking messages", l->pub.name);
    }
}

void cmi_connectors_stop_listeners(cmi_engine_t *e, cmi_worker_t *service)
{
    lifecycle_t lc = {e, 0};
    cmi_worker_call(service, stop_listeners_on_service, &lc);
}

static void stop_on_service(void *arg)
{
    lifecycle_t *lc = arg;
    cmi_connector_state_t *st = lc->e->config->connectors;
    cmi_listener_impl_t *l;
    STAILQ_FOREACH (l, &st->listeners, link) {
        atomic_store(&l->accepting, 0);
        if (l->started && l->def->destroy != NULL)
            l->def->destroy(&l->pub);
        l->started = 0;
    }
    cmi_binding_impl_t *b;
    SLIST_FOREACH (b, &st->bindings, link) {
        if (b->prepared && b->op->release != NULL)
            b->op->release(&b->pub);
        b->prepared = 0;
    }
    cmi_instance_impl_t *i;
    STAILQ_FOREACH (i, &st->instances, link) {
        const cmi_config_def_t *def = i->mod->desc->config;
        if (i->started && def->stop != NULL)
            def->stop(&i->pub);
        i->started = 0;
    }
}

void cmi_connectors_stop(cmi_engine_t *e, cmi_worker_t *service)
{
    lifecycle_t lc = {e, 0};
    cmi_worker_call(service, stop_on_service, &lc);
}
