/* The sequence runner.
 *
 * A compiled sequence is an array of compiled mediators.  Running a message
 * walks a stack of frames (sequence, next index) kept in the message, so a
 * mediator can stop the walk at any depth and have it resumed later, on
 * the message's own worker, at the mediator that follows (nginx's NGX_AGAIN;
 * no thread is held meanwhile).
 *
 * A mediator's run function returns a flow code; 0 is success:
 *   CMI_FLOW_CONTINUE   go on with the next mediator
 *   CMI_FLOW_DONE       the flow is over (respond, drop)
 *   CMI_FLOW_SUSPENDED  the mediator started something that will call
 *                       cmi_flow_post_resume() later, from any thread
 *   CMI_FLOW_ERROR      the mediator set the error slot (cmi_msg_set_error);
 *                       fault handling runs (docs/mediators.md, "Errors
 *                       and fault handling")
 * Mediators with children (filter, switch, sequence) push a child sequence
 * with cmi_flow_push() and return CMI_FLOW_CONTINUE. */
#ifndef CMI_RUNTIME_FLOW_H
#define CMI_RUNTIME_FLOW_H

#include <stddef.h>

typedef struct cmi_msg cmi_msg_t;
typedef struct cmi_mediator cmi_mediator_t;

#include <cmi/types.h> /* CMI_FLOW_*, shared with connectors */

typedef int (*cmi_mediator_run_fn)(const cmi_mediator_t *m, cmi_msg_t *msg);

/* The first member of every compiled mediator. */
struct cmi_mediator {
    cmi_mediator_run_fn run;
    const char *kind; /* element name, for logs and errors */
    const char *file; /* artifact it came from */
    int line;
};

typedef struct cmi_sequence {
    const char *name; /* NULL for an inline sequence */
    const cmi_mediator_t **items;
    size_t count;
    /* The sequence's onError handler, resolved at load (NULL: none). */
    const struct cmi_sequence *on_error;
    /* A sequence template's declared parameters (config/template.c); NULL
     * for a sequence. */
    const struct cmi_template_params *tparams;
    const char *file;
    int line;
} cmi_sequence_t;

/* Frames deeper than this are a runaway recursion through dynamic sequence
 * keys (static cycles are refused at load). */
#define CMI_FLOW_MAX_DEPTH 64

/* Starts running seq for a new message (owner worker thread). */
void cmi_flow_start(cmi_msg_t *msg, const cmi_sequence_t *seq);
/* Continues a suspended message after the mediator that suspended it; rc is
 * CMI_FLOW_CONTINUE, or CMI_FLOW_ERROR with the error slot set.  Called on
 * the owner worker (cmi_flow_post_resume gets it there). */
void cmi_flow_resume(cmi_msg_t *msg, int rc);

/* ---- suspend / resume across threads ---------------------------------------- */

/* Marks the message suspended; a mediator returns the result. */
int cmi_flow_suspend(cmi_msg_t *msg);
/* From any thread: continue the suspended message on its worker after the
 * mediator that suspended it (through its owner's post_resume). */
void cmi_flow_post_resume(cmi_msg_t *msg);
/* From any thread: continue the suspended message on its worker with an
 * error (its fault handling runs).  The strings are copied; the message
 * itself is not touched until the worker has it back. */
void cmi_flow_post_error(cmi_msg_t *msg, int code, const char *message, const char *detail_fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* On the owner thread, for a posted resume: applies a carried error, runs
 * the continuation (msg->resume_fn) and continues the flow. */
void cmi_flow_resumed(cmi_msg_t *msg);
/* Unit tests without workers: resumes go to hook instead of running on the
 * resuming thread (NULL: run at once). */
void cmi_flow_set_resume_hook(void (*hook)(cmi_msg_t *msg));
/* Runs seq next, then returns to the current sequence.  Returns
 * CMI_FLOW_CONTINUE, or CMI_FLOW_ERROR (error slot set) past the depth limit. */
int cmi_flow_push(cmi_msg_t *msg, const cmi_sequence_t *seq);
/* The same for a sequence template's body: func is the call's parameters
 * (cmi_flow_push keeps the current ones). */
struct cmi_func_frame;
int cmi_flow_push_func(cmi_msg_t *msg, const cmi_sequence_t *seq, struct cmi_func_frame *func);
/* Turns the message to its response path: the in path's frames go, the
 * out sequence chosen at dispatch runs next; without one the message is
 * answered now (MI: "no out-sequence configured: sending the response
 * back").  Returns the flow code for the mediator to return. */
int cmi_flow_enter_out_path(cmi_msg_t *msg);
/* Sends the response to the message's caller now (once; later calls do
 * nothing).  The respond mediator and the error path use it. */
void cmi_flow_respond(cmi_msg_t *msg);

#endif
