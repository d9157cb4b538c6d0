/* <switch source="..."><case regex="...">...</case>...<default>...</default>:
 * runs the first case whose regex matches the source's whole text (Java's
 * matches()), else the default, else nothing.  A missing source goes to the
 * default. */
#include "config.h"

#include <string.h>

#include "core/regex.h"
#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/msg.h"

typedef struct {
    cmi_regex_t regex;
    const cmi_sequence_t *seq;
} switch_case_t;

typedef struct {
    cmi_mediator_t base;
    const cmi_expr_t *source;
    switch_case_t *cases;
    size_t ncases;
    const cmi_sequence_t *default_seq;
} switch_mediator_t;

static int run_switch(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const switch_mediator_t *s = (const switch_mediator_t *)m;
    cmi_value_t v;
    if (cmi_expr_eval(s->source, msg, &v) != 0)
        return CMI_FLOW_ERROR;
    size_t len;
    const char *text = cmi_value_to_text(msg->arena, &v, &len);
    for (size_t i = 0; i < s->ncases && v.type != CMI_VAL_NULL; i++) /* no source: the default, as MI */
        if (cmi_regex_matches(&s->cases[i].regex, text, len))
            return cmi_flow_push(msg, s->cases[i].seq);
    return s->default_seq != NULL ? cmi_flow_push(msg, s->default_seq) : CMI_FLOW_CONTINUE;
}

static const cmi_attr_rule_t attrs[] = {
    {"source", CMI_ATTR_OK},
    {NULL, 0},
};

static const cmi_attr_rule_t case_attrs[] = {
    {"regex", CMI_ATTR_OK},
    {NULL, 0},
};

cmi_mediator_t *cmi_compile_switch(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs))
        return NULL;
    switch_mediator_t *s = cmi_mediator_new(cc, node, sizeof(*s), run_switch);
    const char *source = cmi_xml_attr(cc, node, "source");
    if (source == NULL || *source == '\0') {
        cmi_compile_error(cc, node, "<switch>: the source attribute is required");
        return NULL;
    }
    if ((s->source = cmi_compile_expr(cc, node, "source", source)) == NULL)
        return NULL;
    size_t n = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        n += cmi_xml_is(c, "case");
    s->cases = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*s->cases));
    int errors = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "case")) {
            errors += cmi_xml_check_attrs(cc, c, cmi_common_mediator_attrs, case_attrs);
            const char *regex = cmi_xml_attr(cc, c, "regex"), *err = NULL;
            if (regex == NULL) {
                cmi_compile_error(cc, c, "<case>: the regex attribute is required");
                errors++;
                continue;
            }
            switch_case_t *sc = &s->cases[s->ncases++];
            if (cmi_regex_compile(cc->arena, &sc->regex, regex, &err) != 0) {
                cmi_compile_error(cc, c, "<case regex=\"%s\">: %s", regex, err);
                errors++;
                continue;
            }
            sc->seq = cmi_compile_mediators(cc, c, NULL);
        } else if (cmi_xml_is(c, "default") && s->default_seq == NULL) {
            errors += cmi_xml_check_attrs(cc, c, cmi_common_mediator_attrs, NULL);
            s->default_seq = cmi_compile_mediators(cc, c, NULL);
        } else {
            cmi_compile_error(cc, c, "<switch>: unexpected element <%s> (only <case> and one <default>)", c->name);
            errors++;
        }
    }
    return errors ? NULL : &s->base;
}
