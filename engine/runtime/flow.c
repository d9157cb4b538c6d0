#include "config.h"

#include "runtime/flow.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

int cmi_flow_push(cmi_msg_t *msg, const cmi_sequence_t *seq)
{
    return cmi_flow_push_func(msg, seq, cmi_msg_func_frame(msg));
}

cmi_func_frame_t *cmi_msg_func_frame(const cmi_msg_t *msg)
{
    return msg->nframes > 0 ? msg->frames[msg->nframes - 1].func : NULL;
}

int cmi_flow_push_func(cmi_msg_t *msg, const cmi_sequence_t *seq, cmi_func_frame_t *func)
{
    if (msg->nframes >= CMI_FLOW_MAX_DEPTH)
        return cmi_msg_set_error(msg, CMI_ERR_SEQUENCE_DEPTH, NULL,
                                 "sequences nested deeper than %d while entering '%s'", CMI_FLOW_MAX_DEPTH,
                                 seq->name ? seq->name : "(inline)");
    msg->frames = cmi_arena_grow(msg->arena, msg->frames, msg->nframes, &msg->frames_cap, sizeof(*msg->frames), 8);
    msg->frames[msg->nframes].seq = seq;
    msg->frames[msg->nframes].pc = 0;
    msg->frames[msg->nframes].func = func;
    msg->nframes++;
    return CMI_FLOW_CONTINUE;
}

void cmi_flow_respond(cmi_msg_t *msg)
{
    if (msg->responded)
        return;
    msg->responded = 1;
    if (msg->started_ns != 0) /* counted for the metrics */
        msg->responded_ns = cmi_monotonic_ns();
    if (msg->origin != NULL && msg->origin->respond != NULL)
        msg->origin->respond(msg);
}

static const char *log_component(cmi_msg_t *msg)
{
    return msg->api ? cmi_arena_sprintf(msg->arena, "%s:%s", msg->api->proxy ? "proxy" : "api", msg->api->name) : "mediation";
}

/* The answer when no fault sequence handles an error: JSON with the status
 * that the error code maps to. */
static void respond_with_error(cmi_msg_t *msg)
{
    if (msg->responded)
        return;
    int code = msg->error_code ? msg->error_code : CMI_ERR_MEDIATION;
    const char *message = msg->error_message ? msg->error_message : "mediation failed";
    json_t *err = json_pack("{s:o, s:o}", "code", msg->error_type ? json_string(msg->error_type) : json_integer(code),
                            "message", cmi_json_text(msg->arena, message, strlen(message)));
    if (msg->error_detail != NULL)
        json_object_set_new(err, "detail", cmi_json_text(msg->arena, msg->error_detail, strlen(msg->error_detail)));
    cmi_msg_set_payload_json(msg, json_pack("{s:o}", "error", err));
    /* Whatever the flow set before it failed, this answer is JSON. */
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "HTTP_SC", cmi_value_int(cmi_error_status(code)));
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "messageType", cmi_value_cstring("application/json"));
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "ContentType", cmi_value_cstring("application/json"));
    cmi_msg_prop_remove(msg, CMI_SCOPE_AXIS2, "NO_ENTITY_BODY");
    cmi_flow_respond(msg);
}

static const cmi_sequence_t *fault_handler(cmi_msg_t *msg)
{
    /* The innermost sequence with an onError handler, as Synapse's fault
     * handler stack; then the resource's faultSequence or the deployment's
     * fault sequence (msg->fault_seq, chosen at dispatch). */
    for (size_t i = msg->nframes; i-- > 0;)
        if (msg->frames[i].seq->on_error != NULL)
            return msg->frames[i].seq->on_error;
    return msg->fault_seq;
}

static void log_error(cmi_msg_t *msg, const cmi_mediator_t *m)
{
    if (!cmi_log_enabled(CMI_LOG_WARN))
        return;
    const char *detail = msg->error_detail ? msg->error_detail : "";
    if (m != NULL)
        cmi_log_write(CMI_LOG_WARN, log_component(msg), "<%s> at %s:%d failed: %d %s: %s (message %s)",
                      m->kind, m->file, m->line, msg->error_code, msg->error_message, detail, msg->id);
    else
        cmi_log_write(CMI_LOG_WARN, log_component(msg), "mediation failed: %d %s: %s (message %s)",
                      msg->error_code, msg->error_message, detail, msg->id);
}

/* Moves the message to its fault handler.  An error inside a fault handler
 * is answered at once: fault handling never loops. */
static void flow_error(cmi_msg_t *msg, const cmi_mediator_t *m)
{
    if (msg->error_code == 0)
        cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "a mediator failed without saying why");
    log_error(msg, m);
    cmi_msg_prop_set(msg, CMI_SCOPE_DEFAULT, "ERROR_CODE",
                     msg->error_type ? cmi_value_cstring(msg->error_type) : cmi_value_int(msg->error_code));
    cmi_msg_prop_set(msg, CMI_SCOPE_DEFAULT, "ERROR_MESSAGE", cmi_value_cstring(msg->error_message));
    if (msg->error_detail != NULL)
        cmi_msg_prop_set(msg, CMI_SCOPE_DEFAULT, "ERROR_DETAIL", cmi_value_cstring(msg->error_detail));
    const cmi_sequence_t *handler = msg->in_fault ? NULL : fault_handler(msg);
    /* The handler still sees the parameters of the template that failed,
     * as in Synapse (whose function stack is not popped on an error). */
    cmi_func_frame_t *func = cmi_msg_func_frame(msg);
    msg->nframes = 0;
    msg->at_end = NULL; /* a <send> waiting for the path's end is not sent */
    msg->in_fault = 1;
    msg->fault_unhandled = handler == NULL;
    if (handler != NULL)
        cmi_flow_push_func(msg, handler, func);
    else
        respond_with_error(msg);
}

static void flow_finish(cmi_msg_t *msg)
{
    msg->finished = 1;
    if (msg->origin != NULL && msg->origin->finish != NULL)
        msg->origin->finish(msg);
    if (msg->owner != NULL && msg->owner->finished != NULL)
        msg->owner->finished(msg);
    cmi_msg_release(msg); /* the flow's reference: msg may be gone now */
}

static void flow_run(cmi_msg_t *msg)
{
    for (;;) {
        if (msg->nframes == 0 && msg->at_end != NULL) {
            int (*fn)(cmi_msg_t *, void *) = msg->at_end;
            msg->at_end = NULL;
            int rc = fn(msg, msg->at_end_data);
            if (rc == CMI_FLOW_SUSPENDED)
                return;
            if (rc == CMI_FLOW_ERROR)
                flow_error(msg, NULL);
            continue;
        }
        if (msg->nframes == 0) {
            flow_finish(msg);
            return;
        }
        /* Take the mediator and advance first: a mediator may push frames
         * (moving the array) or suspend, and resumes after itself. */
        size_t top = msg->nframes - 1;
        const cmi_sequence_t *seq = msg->frames[top].seq;
        if (msg->frames[top].pc >= seq->count) {
            msg->nframes--;
            continue;
        }
        const cmi_mediator_t *m = seq->items[msg->frames[top].pc++];
        int rc = m->run(m, msg);
        switch (rc) {
        case CMI_FLOW_CONTINUE:
            break;
        case CMI_FLOW_SUSPENDED:
            msg->suspended_by = m;
            return;
        case CMI_FLOW_DONE:
            msg->nframes = 0;
            break;
        default:
            flow_error(msg, m);
            break;
        }
    }
}

int cmi_flow_enter_out_path(cmi_msg_t *msg)
{
    msg->nframes = 0;
    msg->out_path = 1;
    if (!msg->has_out_seq) {
        cmi_flow_respond(msg);
        return CMI_FLOW_DONE;
    }
    if (msg->out_seq == NULL)
        return CMI_FLOW_DONE; /* an empty outSequence: nothing answers (see http_finish) */
    return cmi_flow_push(msg, msg->out_seq);
}

void cmi_flow_start(cmi_msg_t *msg, const cmi_sequence_t *seq)
{
    if (cmi_flow_push(msg, seq) != CMI_FLOW_CONTINUE)
        flow_error(msg, NULL);
    flow_run(msg);
}

void cmi_flow_resume(cmi_msg_t *msg, int rc)
{
    msg->suspended = 0;
    if (rc == CMI_FLOW_DONE)
        msg->nframes = 0; /* the continuation ended the flow (a discarded timeout) */
    else if (rc < 0)
        flow_error(msg, msg->suspended_by);
    flow_run(msg);
}

/* ---- suspend / resume (any thread -> the owner worker) ------------------------ */

struct cmi_resume_error {
    int code;
    char *message;
    char *detail;
};

static void (*resume_hook)(cmi_msg_t *msg);

void cmi_flow_set_resume_hook(void (*hook)(cmi_msg_t *msg))
{
    resume_hook = hook;
}

int cmi_flow_suspend(cmi_msg_t *msg)
{
    msg->suspended = 1;
    return CMI_FLOW_SUSPENDED;
}

static void post_resume(cmi_msg_t *msg)
{
    if (msg->owner != NULL && msg->owner->post_resume != NULL) {
        if (msg->owner->post_resume(msg) != 0)
            cmi_log_debug("worker", "a completion for message %s arrived after the drain gave it up", msg->id);
    }
    else if (resume_hook != NULL)
        resume_hook(msg);
    else
        cmi_flow_resumed(msg); /* unit tests that resume on the owning thread */
}

void cmi_flow_post_resume(cmi_msg_t *msg)
{
    msg->resume_rc = CMI_FLOW_CONTINUE;
    post_resume(msg);
}

void cmi_flow_post_error(cmi_msg_t *msg, int code, const char *message, const char *detail_fmt, ...)
{
    struct cmi_resume_error *e = cmi_xcalloc(1, sizeof(*e));
    e->code = code;
    e->message = message ? cmi_xstrdup(message) : NULL;
    if (detail_fmt != NULL) {
        va_list ap;
        va_start(ap, detail_fmt);
        if (vasprintf(&e->detail, detail_fmt, ap) < 0)
            e->detail = NULL;
        va_end(ap);
    }
    msg->resume_error = e;
    msg->resume_rc = CMI_FLOW_ERROR;
    post_resume(msg);
}

void cmi_flow_resumed(cmi_msg_t *msg)
{
    struct cmi_resume_error *e = msg->resume_error;
    if (e != NULL) {
        msg->resume_error = NULL;
        cmi_msg_set_error(msg, e->code, e->message, e->detail ? "%s" : NULL, e->detail);
        free(e->message);
        free(e->detail);
        free(e);
    }
    int rc = msg->resume_rc;
    if (msg->resume_fn != NULL) {
        int (*fn)(cmi_msg_t *, void *) = msg->resume_fn;
        msg->resume_fn = NULL;
        rc = fn(msg, msg->resume_data);
        if (rc == CMI_FLOW_SUSPENDED)
            return; /* the continuation waits for something else */
    }
    cmi_flow_resume(msg, rc);
}
