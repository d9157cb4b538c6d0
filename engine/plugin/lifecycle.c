/* Starting and stopping what connectors run: instances (connection
 * configs), bindings (operation elements) and listeners (inbound
 * endpoints), at start, at a reload (docs/operations.md, "Reloading") and
 * at the end.  Every hook runs on the service worker, so that connectors
 * get one thread for their housekeeping and its timers.
 *
 * Instances and listeners are shared by the configurations that have them
 * unchanged, each holding a reference: a reload keeps them running (no
 * reconnect, no redelivery); the last reference stops them.  Bindings
 * belong to one configuration and are released with it. */
#include "config.h"

#include <string.h>
#include <time.h>

#include "core/log.h"
#include "engine.h"
#include "plugin/plugin.h"
#include "runtime/worker.h"

/* ---- references -------------------------------------------------------------------- */

static void instance_retain(cmi_instance_impl_t *i)
{
    atomic_fetch_add(&i->refs, 1);
}

/* Service worker, or any thread when it never started. */
static void instance_release(cmi_instance_impl_t *i)
{
    if (atomic_fetch_sub(&i->refs, 1) != 1)
        return;
    const cmi_config_def_t *def = i->mod->desc->config;
    if (i->started && def->stop != NULL)
        def->stop(&i->pub);
    cmi_arena_destroy(i->arena);
}

static void listener_retain(cmi_listener_impl_t *l)
{
    atomic_fetch_add(&l->refs, 1);
}

static void listener_release(cmi_listener_impl_t *l)
{
    if (atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    atomic_store(&l->accepting, 0);
    if (l->started && l->def->destroy != NULL)
        l->def->destroy(&l->pub);
    pthread_mutex_destroy(&l->lock);
    cmi_arena_destroy(l->arena);
}

cmi_connector_state_t *cmi_connectors_create(cmi_arena_t *config_arena, const cmi_plugins_t *plugins, int check_only)
{
    cmi_connector_state_t *st = cmi_arena_calloc(config_arena, 1, sizeof(*st));
    st->plugins = plugins;
    st->check_only = check_only;
    st->arena = config_arena;
    SLIST_INIT(&st->bindings);
    /* Registered first, run last: after everything else of the
     * configuration has let go of its connectors. */
    cmi_arena_cleanup_add(config_arena, cmi_connectors_dispose, st);
    return st;
}

void cmi_connectors_dispose(void *arg)
{
    cmi_connector_state_t *st = arg;
    cmi_binding_impl_t *b;
    SLIST_FOREACH (b, &st->bindings, link) {
        if (b->prepared && b->op->release != NULL)
            b->op->release(&b->pub);
        b->prepared = 0;
    }
    for (size_t k = 0; k < st->nlisteners; k++)
        listener_release(st->listeners[k]);
    for (size_t k = 0; k < st->ninstances; k++)
        instance_release(st->instances[k]);
}

/* ---- what a reload keeps --------------------------------------------------------------- */

static int same(const unsigned char *a, const unsigned char *b, const char *na, const char *nb)
{
    return memcmp(a, b, CMI_FINGERPRINT_LEN) == 0 && strcmp(na, nb) == 0;
}

static cmi_instance_impl_t *running_instance(const cmi_connector_state_t *old, const cmi_instance_impl_t *i)
{
    for (size_t k = 0; k < old->ninstances; k++) {
        cmi_instance_impl_t *o = old->instances[k];
        if (o->started && o->mod == i->mod && same(o->fingerprint, i->fingerprint, o->pub.name, i->pub.name))
            return o;
    }
    return NULL;
}

/* config's instance i (never started) gives way to o, which runs. */
static void keep_instance(cmi_config_t *config, size_t k, cmi_instance_impl_t *o)
{
    cmi_connector_state_t *st = config->connectors;
    cmi_instance_impl_t *i = st->instances[k];
    cmi_binding_impl_t *b;
    SLIST_FOREACH (b, &st->bindings, link) {
        if (b->inst == i) {
            b->inst = o;
            b->pub.instance = &o->pub;
        }
    }
    cmi_local_entry_t *le = (cmi_local_entry_t *)cmi_htab_gets(&config->local_entries, i->pub.name);
    if (le != NULL && le->instance == i)
        le->instance = o;
    instance_retain(o);
    st->instances[k] = o;
    instance_release(i);
}

static cmi_listener_impl_t *running_listener(const cmi_connector_state_t *old, const cmi_listener_impl_t *l)
{
    for (size_t k = 0; k < old->nlisteners; k++) {
        cmi_listener_impl_t *o = old->listeners[k];
        if (o->started && atomic_load(&o->accepting) && o->mod == l->mod && o->def == l->def &&
            same(o->fingerprint, l->fingerprint, o->pub.name, l->pub.name))
            return o;
    }
    return NULL;
}

static void keep_listener(cmi_config_t *config, size_t k, cmi_listener_impl_t *o)
{
    cmi_connector_state_t *st = config->connectors;
    cmi_listener_impl_t *l = st->listeners[k];
    for (size_t j = 0; j < config->ninbounds; j++)
        if (config->inbounds[j]->listener == l)
            config->inbounds[j]->listener = o;
    listener_retain(o);
    st->listeners[k] = o;
    listener_release(l);
}

static void keep_unchanged(cmi_config_t *config, const cmi_config_t *old, cmi_connectors_change_t *change)
{
    cmi_connector_state_t *st = config->connectors;
    for (size_t k = 0; k < st->ninstances; k++) {
        cmi_instance_impl_t *o = running_instance(old->connectors, st->instances[k]);
        if (o != NULL) {
            keep_instance(config, k, o);
            change->instances_kept++;
        }
    }
    for (size_t k = 0; k < st->nlisteners; k++) {
        cmi_listener_impl_t *o = running_listener(old->connectors, st->listeners[k]);
        if (o != NULL) {
            keep_listener(config, k, o);
            change->listeners_kept++;
        }
    }
}

/* ---- starting -------------------------------------------------------------------------- */

static int start_instances(cmi_connector_state_t *st, cmi_connectors_change_t *change)
{
    char err[512];
    for (size_t k = 0; k < st->ninstances; k++) {
        cmi_instance_impl_t *i = st->instances[k];
        const cmi_config_def_t *def = i->mod->desc->config;
        if (i->started)
            continue;
        err[0] = '\0';
        if (def->start != NULL && def->start(&i->pub, err, sizeof(err)) != 0) {
            cmi_log_error(i->pub.component, "cannot start the connection config (%s:%d): %s", i->file, i->line,
                          err[0] ? err : "no reason given");
            return -1;
        }
        i->started = 1;
        change->instances_started++;
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

typedef struct {
    cmi_engine_t *e;
    cmi_config_t *config;
    cmi_config_t *old;
    cmi_connectors_change_t *change;
    int rc;
} lifecycle_t;

static void start_on_service(void *arg)
{
    lifecycle_t *lc = arg;
    if (lc->old != NULL)
        keep_unchanged(lc->config, lc->old, lc->change);
    cmi_connector_state_t *st = lc->config->connectors;
    lc->rc = start_instances(st, lc->change) != 0 || prepare_bindings(st) != 0 ? -1 : 0;
}

int cmi_connectors_start(cmi_engine_t *e, cmi_config_t *config, const cmi_config_t *old, cmi_worker_t *service,
                         cmi_connectors_change_t *change)
{
    cmi_connectors_change_t none;
    lifecycle_t lc = {e, config, (cmi_config_t *)old, change ? change : &none, 0};
    memset(lc.change, 0, sizeof(*lc.change));
    cmi_worker_call(service, start_on_service, &lc);
    return lc.rc;
}

/* inject() is refused until start has returned 0: a listener that fails to
 * start has injected nothing. */
static int start_listener(cmi_engine_t *e, cmi_listener_impl_t *l)
{
    char err[512];
    l->engine = e;
    err[0] = '\0';
    if (l->def->start(&l->pub, err, sizeof(err)) != 0) {
        cmi_log_error(l->pub.component, "cannot start inbound endpoint %s (%s:%d): %s", l->pub.name, l->file,
                      l->line, err[0] ? err : "no reason given");
        return -1;
    }
    l->started = 1;
    atomic_store(&l->accepting, 1);
    cmi_log_info(l->pub.component, "inbound endpoint %s started (sequence %s)", l->pub.name,
                 l->inbound->sequence->name);
    return 0;
}

/* No new message from l; every message it was told it injected is queued
 * on a worker when this returns (the drain, or its configuration's
 * release, waits for them). */
static void stop_listener(cmi_listener_impl_t *l)
{
    if (!l->started || !atomic_exchange(&l->accepting, 0))
        return;
    struct timespec tick = {0, 100000L};
    while (atomic_load(&l->injecting) > 0)
        nanosleep(&tick, NULL);
    if (l->def->stop != NULL)
        l->def->stop(&l->pub);
    cmi_log_info(l->pub.component, "inbound endpoint %s stopped taking messages", l->pub.name);
}

static int has_listener(const cmi_connector_state_t *st, const cmi_listener_impl_t *l)
{
    for (size_t k = 0; k < st->nlisteners; k++)
        if (st->listeners[k] == l)
            return 1;
    return 0;
}

/* A listener config kept: its messages run in config from now on. */
static void move_listener(cmi_listener_impl_t *l, cmi_config_t *config)
{
    const cmi_inbound_t *ib = NULL;
    for (size_t j = 0; j < config->ninbounds && ib == NULL; j++)
        if (config->inbounds[j]->listener == l)
            ib = config->inbounds[j];
    pthread_mutex_lock(&l->lock);
    l->config = config;
    l->inbound = ib;
    pthread_mutex_unlock(&l->lock);
}

static void start_listeners_on_service(void *arg)
{
    lifecycle_t *lc = arg;
    cmi_connector_state_t *st = lc->config->connectors;
    if (lc->old != NULL) {
        const cmi_connector_state_t *old = lc->old->connectors;
        for (size_t k = 0; k < old->nlisteners; k++) {
            if (!has_listener(st, old->listeners[k]) && old->listeners[k]->started &&
                atomic_load(&old->listeners[k]->accepting)) {
                stop_listener(old->listeners[k]);
                lc->change->listeners_stopped++;
            }
        }
    }
    /* Every kept one moves, whatever happens to the new ones: a kept
     * listener left on the old deployment would inject into it after its
     * release.  At start (no old deployment) the first failure stops. */
    for (size_t k = 0; k < st->nlisteners; k++)
        if (st->listeners[k]->started)
            move_listener(st->listeners[k], lc->config);
    for (size_t k = 0; k < st->nlisteners && (lc->rc == 0 || lc->old != NULL); k++) {
        cmi_listener_impl_t *l = st->listeners[k];
        if (l->started)
            continue;
        if (start_listener(lc->e, l) == 0)
            lc->change->listeners_started++;
        else
            lc->rc = -1;
    }
}

int cmi_connectors_start_listeners(cmi_engine_t *e, cmi_config_t *config, cmi_config_t *old, cmi_worker_t *service,
                                   cmi_connectors_change_t *change)
{
    cmi_connectors_change_t none = {0};
    lifecycle_t lc = {e, config, old, change ? change : &none, 0};
    cmi_worker_call(service, start_listeners_on_service, &lc);
    return lc.rc;
}

static void stop_listeners_on_service(void *arg)
{
    lifecycle_t *lc = arg;
    const cmi_connector_state_t *st = lc->config->connectors;
    for (size_t k = 0; k < st->nlisteners; k++)
        stop_listener(st->listeners[k]);
}

void cmi_connectors_stop_listeners(cmi_config_t *config, cmi_worker_t *service)
{
    lifecycle_t lc = {NULL, config, NULL, NULL, 0};
    cmi_worker_call(service, stop_listeners_on_service, &lc);
}
