/* <sequence key="name"/>: run a named sequence, then continue here.
 * A static key is resolved (and checked for cycles) at load time; a
 * dynamic one, key="{expression}", is looked up per message (runaway
 * recursion through it stops at the flow's depth limit). */
#include "config.h"

#include <string.h>

#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

typedef struct {
    cmi_mediator_t base;
    const cmi_sequence_t *target; /* static */
    const cmi_expr_t *key;        /* or dynamic */
    const cmi_htab_t *sequences;
} sequence_mediator_t;

static int run_sequence(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const sequence_mediator_t *s = (const sequence_mediator_t *)m;
    if (s->key == NULL)
        return cmi_flow_push(msg, s->target);
    const char *name;
    size_t len;
    if (cmi_expr_eval_text(s->key, msg, &name, &len) != 0)
        return CMI_FLOW_ERROR;
    const cmi_sequence_t *target = cmi_htab_get(s->sequences, name, len);
    if (target == NULL)
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "sequence key %s: no sequence named '%.*s' is deployed",
                                 cmi_expr_text(s->key), (int)len, name);
    return cmi_flow_push(msg, target);
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
    cmi_xml_no_children(cc, node);
    sequence_mediator_t *s = cmi_mediator_new(cc, node, sizeof(*s), run_sequence);
    size_t n = strlen(key);
    if (key[0] == '{' && n >= 2 && key[n - 1] == '}') {
        /* {expr}: the key is computed; {${...}} and {get-property(...)} alike */
        s->sequences = &cc->config->sequences;
        s->key = cmi_compile_expr(cc, node, "key", cmi_arena_strndup(cc->arena, key + 1, n - 2));
        return s->key ? &s->base : NULL;
    }
    cmi_compile_ref_sequence(cc, key, &s->target, s->base.line,
                             cmi_arena_sprintf(cc->arena, "<sequence key=\"%s\">", key));
    return &s->base;
}
