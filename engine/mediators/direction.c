/* The two directions of MI's classic model (docs/mediators.md, "send and
 * the response path"): <in> runs its mediators on the request path only,
 * <out> on the response path only (after <send> or <loopback>), so that
 * one sequence (MI's main) can mediate both; <loopback/> turns the message
 * to its response path at once, the rest of the request path skipped. */
#include "config.h"

#include "mediators/registry.h"
#include "runtime/msg.h"

typedef struct {
    cmi_mediator_t base;
    int out;
    const cmi_sequence_t *body;
} direction_mediator_t;

static int run_direction(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const direction_mediator_t *d = (const direction_mediator_t *)m;
    return d->out == (int)msg->out_path ? cmi_flow_push(msg, d->body) : CMI_FLOW_CONTINUE;
}

static cmi_mediator_t *compile_direction(cmi_compile_t *cc, xmlNodePtr node, int out)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, NULL))
        return NULL;
    direction_mediator_t *d = cmi_mediator_new(cc, node, sizeof(*d), run_direction);
    d->out = out;
    d->body = cmi_compile_mediators(cc, node, NULL);
    return d->body ? &d->base : NULL;
}

cmi_mediator_t *cmi_compile_in(cmi_compile_t *cc, xmlNodePtr node)
{
    return compile_direction(cc, node, 0);
}

cmi_mediator_t *cmi_compile_out(cmi_compile_t *cc, xmlNodePtr node)
{
    return compile_direction(cc, node, 1);
}

/* In the response path already, it does nothing (as in MI). */
static int run_loopback(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    (void)m;
    return msg->out_path ? CMI_FLOW_CONTINUE : cmi_flow_enter_out_path(msg);
}

cmi_mediator_t *cmi_compile_loopback(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, NULL))
        return NULL;
    cmi_xml_no_children(cc, node);
    return cmi_mediator_new(cc, node, sizeof(cmi_mediator_t), run_loopback);
}
