/* <filter>: runs <then> when the condition holds, else <else>.
 *
 *   <filter xpath="${payload.age > 18}">        a condition (any expression;
 *                                               truth rules: docs/mediators.md,
 *                                               "Conditions")
 *   <filter source="${headers.X}" regex="a.*">  the source's text must match
 *                                               the whole regex (Java's matches())
 * Children are <then> and <else>, or mediators directly (a bare <then>). */
#include "config.h"

#include <string.h>

#include "core/regex.h"
#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/msg.h"

typedef struct {
    cmi_mediator_t base;
    const cmi_expr_t *cond;   /* xpath="..." */
    const cmi_expr_t *source; /* or source="..." with */
    cmi_regex_t regex;        /* regex="..." */
    const cmi_sequence_t *then_seq;
    const cmi_sequence_t *else_seq;
} filter_mediator_t;

static int run_filter(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const filter_mediator_t *f = (const filter_mediator_t *)m;
    int yes;
    if (f->cond != NULL) {
        if (cmi_expr_eval_bool(f->cond, msg, &yes) != 0)
            return CMI_FLOW_ERROR;
    } else {
        cmi_value_t v;
        if (cmi_expr_eval(f->source, msg, &v) != 0)
            return CMI_FLOW_ERROR;
        size_t len;
        const char *text = cmi_value_to_text(msg->arena, &v, &len);
        yes = v.type != CMI_VAL_NULL && cmi_regex_matches(&f->regex, text, len); /* no source: false, as MI */
    }
    const cmi_sequence_t *next = yes ? f->then_seq : f->else_seq;
    return next != NULL ? cmi_flow_push(msg, next) : CMI_FLOW_CONTINUE;
}

static const cmi_attr_rule_t attrs[] = {
    {"xpath", CMI_ATTR_OK},
    {"source", CMI_ATTR_OK},
    {"regex", CMI_ATTR_OK},
    {NULL, 0},
};

static const cmi_attr_rule_t branch_attrs[] = {
    {"sequence", CMI_ATTR_OK},
    {NULL, 0},
};

/* A <then>/<else>: its mediators, or sequence="key" naming a sequence. */
static void compile_branch(cmi_compile_t *cc, xmlNodePtr el, const cmi_sequence_t **slot)
{
    cmi_xml_check_attrs(cc, el, cmi_common_mediator_attrs, branch_attrs);
    const char *key = cmi_xml_attr(cc, el, "sequence");
    if (key == NULL) {
        *slot = cmi_compile_mediators(cc, el, NULL);
        return;
    }
    cmi_xml_no_children(cc, el);
    cmi_compile_ref_sequence(cc, key, slot, cmi_xml_line(el),
                             cmi_arena_sprintf(cc->arena, "<%s sequence=\"%s\">", el->name, key));
}

/* <then>/<else> children, or a bare list of mediators taken as <then>.
 * With a <then>, other children are ignored, as MI ignores them (with a
 * warning here, since they are likely a mistake). */
int cmi_compile_branches(cmi_compile_t *cc, xmlNodePtr node, const cmi_sequence_t **then_seq,
                         const cmi_sequence_t **else_seq)
{
    xmlNodePtr then_el = NULL, else_el = NULL;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (cmi_xml_is(c, "then") && then_el == NULL)
            then_el = c;
        else if (cmi_xml_is(c, "else") && else_el == NULL)
            else_el = c;
    }
    if (then_el == NULL) {
        if (else_el != NULL) {
            cmi_compile_error(cc, else_el, "<%s>: <else> needs a <then>", node->name);
            return -1;
        }
        *then_seq = cmi_compile_mediators(cc, node, NULL);
        return 0;
    }
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && c != then_el && c != else_el && !cmi_xml_is(c, "description"))
            cmi_compile_warn(cc, c, "<%s>: <%s> beside <then>/<else> is ignored (as MI does)", node->name, c->name);
    compile_branch(cc, then_el, then_seq);
    if (else_el != NULL)
        compile_branch(cc, else_el, else_seq);
    return 0;
}

cmi_mediator_t *cmi_compile_filter(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs))
        return NULL;
    filter_mediator_t *f = cmi_mediator_new(cc, node, sizeof(*f), run_filter);
    const char *xpath = cmi_xml_attr(cc, node, "xpath");
    const char *source = cmi_xml_attr(cc, node, "source");
    const char *regex = cmi_xml_attr(cc, node, "regex");
    if (xpath != NULL && (source != NULL || regex != NULL)) {
        cmi_compile_error(cc, node, "<filter>: give xpath, or source and regex, not both");
        return NULL;
    }
    if (xpath != NULL) {
        if ((f->cond = cmi_compile_expr(cc, node, "xpath", xpath)) == NULL)
            return NULL;
    } else if (source != NULL && regex != NULL) {
        const char *err = NULL;
        if ((f->source = cmi_compile_expr(cc, node, "source", source)) == NULL)
            return NULL;
        if (cmi_regex_compile(cc->arena, &f->regex, regex, &err) != 0) {
            cmi_compile_error(cc, node, "<filter regex=\"%s\">: %s", regex, err);
            return NULL;
        }
    } else {
        cmi_compile_error(cc, node, "<filter>: give xpath=\"...\", or source=\"...\" with regex=\"...\"");
        return NULL;
    }
    return cmi_compile_branches(cc, node, &f->then_seq, &f->else_seq) == 0 ? &f->base : NULL;
}
