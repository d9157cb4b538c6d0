/* <sequence key="name"/>: run a named sequence, then continue here.
 * The reference is resolved (and checked for cycles) at load time. */
#include "config.h"

#include <string.h>

#include "mediators/registry.h"
#include "runtime/msg.h"

typedef struct {
    cmi_mediator_t base;
    const cmi_sequence_t *target;
} sequence_mediator_t;

static int run_sequence(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const sequence_mediator_t *s = (const sequence_mediator_t *)m;
    return cmi_flow_push(msg, s->target);
}

static const cmi_attr_rule_t attrs[] = {
    {"key", CMI_ATTR_OK},
    {NULL, 0},
};

cmi_mediator_t *cmi_compile_sequence_ref(cmi_compile_t *cc, xmlNodePtr node)
{
    cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs);
    const char *key = cmi_xml_attr(cc, node, "key");
    if (key == NULL || *key == '\0') {
        /* An inline <sequence> with mediators inside is not a reference. */
        cmi_compile_error(cc, node, "<sequence>: the key attribute is required inside a mediator list");
        return NULL;
    }
    if (key[0] == '{') {
        cmi_compile_error(cc, node, "<sequence key=\"%s\">: dynamic sequence keys are not supported by cmi yet", key);
        return NULL;
    }
    cmi_xml_no_children(cc, node);
    sequence_mediator_t *s = cmi_mediator_new(cc, node, sizeof(*s), run_sequence);
    cmi_compile_ref_sequence(cc, key, &s->target, s->base.line,
                             cmi_arena_sprintf(cc->arena, "<sequence key=\"%s\">", key));
    return &s->base;
}
