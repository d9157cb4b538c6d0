/* Inbound messages: what listeners inject (host->inject, inject_checked,
 * inject_hold/release), run as messages on the workers. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "engine.h"
#include "plugin/plugin.h"
#include "runtime/convert.h"
#include "runtime/msg.h"
#include "runtime/worker.h"

typedef struct inject {
    cmi_task_t task;
    cmi_arena_t *arena; /* everything below; tied to the message once it exists */
    cmi_listener_impl_t *l;
    /* What the listener injected into when it injected (a reference the
     * message takes over): a reload may move it on meanwhile. */
    cmi_config_t *config;
    const cmi_inbound_t *inbound;
    void *delivery;
    const char *payload;
    size_t len;
    const char *content_type;
    cmi_nv_t *headers;
    size_t nheaders;
    cmi_prop_t *props;
    size_t nprops;
    json_t *json; /* the payload's tree when the check built one (owned until the message takes it) */
    struct inject *next; /* held: the next one for the same worker */
} inject_t;

static void inbound_respond(cmi_msg_t *msg)
{
    inject_t *in = msg->origin_data;
    if (in->l->def->respond != NULL)
        in->l->def->respond(&in->l->pub, in->delivery, msg);
    else
        cmi_log_debug(in->l->pub.component, "<respond/> in a flow of inbound endpoint %s: nobody to answer",
                      in->l->pub.name);
}

static void inbound_finish(cmi_msg_t *msg)
{
    inject_t *in = msg->origin_data;
    in->l->def->done(&in->l->pub, in->delivery, msg, msg->fault_unhandled ? CMI_FLOW_ERROR : CMI_FLOW_CONTINUE);
}

static const cmi_msg_origin_t inbound_origin = {"inbound", inbound_respond, inbound_finish};

void *cmi_inject_delivery(cmi_msg_t *msg, const cmi_module_t *mod)
{
    if (msg->origin != &inbound_origin)
        return NULL;
    inject_t *in = msg->origin_data;
    return in->l->mod == mod ? in->delivery : NULL;
}

/* Whether a flow can read the bytes as content_type (the readers its
 * payload views use).  tree: when not NULL, a JSON payload's tree is left
 * there (the caller's reference); otherwise it is freed. */
static int payload_check(const char *content_type, const void *bytes, size_t len, json_t **tree, char *why,
                         size_t size)
{
    cmi_payload_kind_t kind = cmi_payload_kind_of(content_type);
    if (kind != CMI_PAYLOAD_JSON && kind != CMI_PAYLOAD_XML)
        return 1;
    cmi_arena_t *a = cmi_arena_create(0);
    const char *reason = NULL;
    if (kind == CMI_PAYLOAD_JSON) {
        json_error_t je;
        json_t *j = cmi_json_read(a, bytes, len, &je);
        if (j == NULL)
            reason = cmi_arena_sprintf(a, "not valid JSON: %s at line %d column %d", je.text, je.line, je.column);
        else if (tree != NULL)
            *tree = j;
        else
            json_decref(j);
    } else {
        xmlDocPtr doc = cmi_xml_read(a, bytes, len, &reason);
        if (doc != NULL)
            reason = NULL;
        else
            reason = cmi_arena_sprintf(a, "not valid XML: %s", reason);
        xmlFreeDoc(doc);
    }
    if (reason != NULL && why != NULL && size > 0)
        snprintf(why, size, "%s", reason);
    cmi_arena_destroy(a);
    return reason == NULL;
}

int cmi_host_payload_readable(const char *content_type, const void *bytes, size_t len, char *why, size_t size)
{
    return payload_check(content_type, bytes, len, NULL, why, size);
}


static void arena_destroy_cb(void *arena)
{
    cmi_arena_destroy(arena);
}

/* Frees an injection that never became a message. */
static void inject_free(inject_t *in)
{
    json_decref(in->json);
    cmi_config_release(in->config);
    cmi_arena_destroy(in->arena);
}

static void run_inject(cmi_worker_t *w, cmi_task_t *task)
{
    inject_t *in = (inject_t *)task;
    cmi_msg_t *msg = cmi_worker_msg_create(w, &inbound_origin, in, in->config);
    /* The message reads the payload and headers where they are. */
    cmi_arena_cleanup_add(msg->arena, arena_destroy_cb, in->arena);
    if (in->len > 0)
        cmi_msg_set_payload(msg, in->payload, in->len, in->content_type);
    if (in->json != NULL)
        cmi_msg_payload_adopt_json(msg, in->json);
    in->json = NULL;
    for (size_t i = 0; i < in->nheaders; i++)
        cmi_msg_header_add_inbound(msg, in->headers[i].name, strlen(in->headers[i].name), in->headers[i].value,
                                   strlen(in->headers[i].value));
    /* As for an HTTP request, the payload's type is a transport header too. */
    if (cmi_msg_header_get(msg, "Content-Type", NULL) == NULL)
        cmi_msg_header_add_inbound(msg, "Content-Type", 12, in->content_type, strlen(in->content_type));
    for (size_t i = 0; i < in->nprops; i++)
        cmi_msg_prop_set(msg, in->props[i].scope, in->props[i].name, cmi_value_cstring(in->props[i].value));
    const cmi_inbound_t *ib = in->inbound;
    msg->fault_seq = ib->on_error ? ib->on_error : in->config->fault_seq;
    msg->metric_service = ib->metric_slot;
    cmi_flow_start(msg, ib->sequence);
}

static int inject_post(cmi_listener_impl_t *l, const cmi_injection_t *src, json_t *json);
static int hold_add(cmi_worker_t *w, inject_t *in);

/* json: the payload's tree, or NULL; the message takes it (freed here when
 * there is none). */
static int inject_counted(cmi_listener_t *pub, const cmi_injection_t *src, json_t *json)
{
    CHECK_OBJ(pub, CMI_LISTENER_MAGIC);
    cmi_listener_impl_t *l = (cmi_listener_impl_t *)pub;
    /* Counted before the check: stopping the listener clears accepting,
     * then waits for injections under way to be posted. */
    atomic_fetch_add(&l->injecting, 1);
    int rc = inject_post(l, src, json);
    atomic_fetch_sub(&l->injecting, 1);
    if (rc != 0)
        json_decref(json);
    return rc;
}

int cmi_host_inject(cmi_listener_t *pub, const cmi_injection_t *src)
{
    return inject_counted(pub, src, NULL);
}

/* The check runs on the caller's thread (the listener's), as
 * payload_readable() does: an unreadable message never takes a worker, and
 * the JSON tree it built is the one the flow reads. */
int cmi_host_inject_checked(cmi_listener_t *pub, const cmi_injection_t *src, char *why, size_t size)
{
    CHECK_OBJ(pub, CMI_LISTENER_MAGIC);
    json_t *tree = NULL;
    if (!payload_check(src->content_type, src->payload, src->len, &tree, why, size))
        return -2;
    return inject_counted(pub, src, tree);
}

static int inject_post(cmi_listener_impl_t *l, const cmi_injection_t *src, json_t *json)
{
    if (!atomic_load(&l->accepting) || l->engine == NULL || l->engine->nworkers == 0)
        return -1;
    cmi_arena_t *a = cmi_arena_create(src->len + 1024);
    inject_t *in = cmi_arena_calloc(a, 1, sizeof(*in));
    in->task.fn = run_inject;
    in->arena = a;
    in->l = l;
    in->delivery = src->delivery;
    in->payload = cmi_arena_memdup(a, src->payload ? src->payload : "", src->len);
    in->len = src->len;
    in->content_type = cmi_arena_strdup(a, src->content_type ? src->content_type : "application/octet-stream");
    in->headers = cmi_arena_calloc(a, src->nheaders + 1, sizeof(*in->headers));
    for (size_t i = 0; i < src->nheaders; i++) {
        if (src->headers[i].name == NULL || src->headers[i].value == NULL)
            continue;
        in->headers[in->nheaders].name = cmi_arena_strdup(a, src->headers[i].name);
        in->headers[in->nheaders++].value = cmi_arena_strdup(a, src->headers[i].value);
    }
    in->props = cmi_arena_calloc(a, src->nprops + 1, sizeof(*in->props));
    for (size_t i = 0; i < src->nprops; i++) {
        if (src->props[i].name == NULL || src->props[i].value == NULL)
            continue;
        in->props[in->nprops].scope = src->props[i].scope;
        in->props[in->nprops].name = cmi_arena_strdup(a, src->props[i].name);
        in->props[in->nprops++].value = cmi_arena_strdup(a, src->props[i].value);
    }
    pthread_mutex_lock(&l->lock);
    in->config = l->config;
    in->inbound = l->inbound;
    cmi_config_retain(in->config);
    pthread_mutex_unlock(&l->lock);
    in->json = json;
    cmi_engine_t *e = l->engine;
    unsigned i = atomic_fetch_add(&l->next_worker, 1) % e->nworkers;
    if (hold_add(&e->workers[i], in))
        return 0;
    if (cmi_worker_post_task(&e->workers[i], &in->task) != 0) {
        in->json = NULL; /* still the caller's, who frees it */
        inject_free(in);
        return -1;
    }
    return 0;
}

/* ---- held injections ------------------------------------------------------ */

/* A thread that injects a burst (the RabbitMQ connector's AMQP thread, over
 * one batch of events) holds its messages and hands each worker its share
 * as one task when it lets go: one wake-up of the worker for the burst
 * instead of one per message, and on a busy CPU no switch back and forth
 * between the two threads per message (docs/performance.md, "Profiles").
 * A held message counts as an injection under way (l->injecting) until it
 * is handed over, so stopping a listener waits for it as for any inject().
 * Per thread: no lock. */
#define HOLD_WORKERS 8 /* workers a thread holds for; the others get theirs at once */
#define HOLD_MAX 64    /* messages held for one worker: the 64th hands them over */

typedef struct {
    cmi_worker_t *w; /* NULL: free (the used ones come first) */
    inject_t *head, *tail;
    size_t n;
    cmi_listener_impl_t *ls[HOLD_MAX]; /* whose injecting each message counts in */
} held_t;

static _Thread_local struct {
    int on;
    held_t per[HOLD_WORKERS];
} hold;

/* Worker: the held messages in the order they were injected. */
static void run_held(cmi_worker_t *w, cmi_task_t *task)
{
    for (inject_t *in = (inject_t *)task, *next; in != NULL; in = next) {
        next = in->next; /* in goes with its message */
        run_inject(w, &in->task);
    }
}

static void hand_over(held_t *h)
{
    if (h->n == 0)
        return;
    h->head->task.fn = run_held;
    if (cmi_worker_post_task(h->w, &h->head->task) != 0) {
        /* A worker closes only after every listener has stopped, and a
         * listener stops only once what it injected is handed over: not
         * expected; the listener's deliveries stay unsettled. */
        cmi_log_error("connectors", "%zu inbound message(s) held for a worker that has closed were not run", h->n);
        for (inject_t *in = h->head, *next; in != NULL; in = next) {
            next = in->next;
            inject_free(in);
        }
    }
    for (size_t i = 0; i < h->n; i++)
        atomic_fetch_sub(&h->ls[i]->injecting, 1);
    h->head = h->tail = NULL;
    h->n = 0;
}

/* 1 when in is held for w; 0 when it is to be posted now. */
static int hold_add(cmi_worker_t *w, inject_t *in)
{
    if (!hold.on)
        return 0;
    held_t *h = NULL;
    for (int i = 0; i < HOLD_WORKERS && h == NULL; i++)
        if (hold.per[i].w == w || hold.per[i].w == NULL)
            h = &hold.per[i];
    if (h == NULL)
        return 0;
    h->w = w;
    in->next = NULL;
    if (h->tail != NULL)
        h->tail->next = in;
    else
        h->head = in;
    h->tail = in;
    atomic_fetch_add(&in->l->injecting, 1);
    h->ls[h->n++] = in->l;
    if (h->n == HOLD_MAX)
        hand_over(h);
    return 1;
}

int cmi_host_inject_hold(void)
{
    if (hold.on || cmi_worker_current() != NULL)
        return -1;
    hold.on = 1;
    return 0;
}

void cmi_host_inject_release(void)
{
    if (!hold.on)
        return;
    for (int i = 0; i < HOLD_WORKERS && hold.per[i].w != NULL; i++) {
        hand_over(&hold.per[i]);
        hold.per[i].w = NULL;
    }
    hold.on = 0;
}
