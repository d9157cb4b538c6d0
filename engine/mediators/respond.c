/* <respond/>: send the current payload and status to the caller and stop
 * the flow.  <drop/>: stop the flow; an HTTP caller that got no response
 * gets 202 (the origin's finish handler does that). */
#include "config.h"

#include "core/log.h"
#include "mediators/registry.h"
#include "runtime/msg.h"

static int run_respond(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    if (msg->responded) /* MI: a WARN and nothing sent */
        cmi_log_warn("mediation", "<respond> at %s:%d: the caller already has its response (message %s)", m->file,
                     m->line, msg->id);
    cmi_flow_respond(msg);
    return CMI_FLOW_DONE;
}

static int run_drop(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    (void)m;
    msg->dropped = 1;
    return CMI_FLOW_DONE;
}

static cmi_mediator_t *compile_simple(cmi_compile_t *cc, xmlNodePtr node, cmi_mediator_run_fn run)
{
    cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, NULL);
    cmi_xml_no_children(cc, node);
    return cmi_mediator_new(cc, node, sizeof(cmi_mediator_t), run);
}

cmi_mediator_t *cmi_compile_respond(cmi_compile_t *cc, xmlNodePtr node)
{
    return compile_simple(cc, node, run_respond);
}

cmi_mediator_t *cmi_compile_drop(cmi_compile_t *cc, xmlNodePtr node)
{
    return compile_simple(cc, node, run_drop);
}
