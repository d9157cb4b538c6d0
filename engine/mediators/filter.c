/* <filter>: runs <then> when the condition holds, else <else>.
 *
 *   <filter xpath="${payload.age > 18}">        a condition (any expression;
 *                                               truth rules of engine.md §4)
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
        const char *text;
        size_t len;
        if (cmi_expr_eval_text(f->source, msg, &text, &len) != 0)
            return CMI_FLOW_ERROR;
        yes = cmi_regex_matches(&f->regex, text, len);
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

/* <then>/<else> children, or a bare list of mediators taken as <then>. */
int cmi_compile_branches(cmi_compile_t *cc, xmlNodePtr node, const cmi_sequence_t **then_seq,
                         const cmi_sequence_t **else_seq)
{
    xmlNodePtr then_el = NULL, else_el = NULL;
    int bare = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "then") && then_el == NULL)
            then_el = c;
        else if (cmi_xml_is(c, "else") && else_el == NULL)
            else_el = c;
        else
            bare = 1;
    }
    if (bare && (then_el != NULL || else_el != NULL)) {
        cmi_compile_error(cc, node, "<%s>: use <then>/<else> or mediators directly, not both", node->name);
        return -1;
    }
    if (bare) {
        *then_seq = cmi_compile_mediators(cc, node, NULL);
        return 0;
    }
    if (then_el != NULL) {
        cmi_xml_check_attrs(cc, then_el, cmi_common_mediator_attrs, NULL);
        *then_seq = cmi_compile_mediators(cc, then_el, NULL);
    }
    if (else_el != NULL) {
        cmi_xml_check_attrs(cc, else_el, cmi_common_mediator_attrs, NULL);
        *else_seq = cmi_compile_mediators(cc, else_el, NULL);
    }
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
