/* <call-template target="T" onError="S"> with <with-param name value>:
 * runs the sequence template T (config/template.c) with its parameters
 * bound for this call, then continues here.
 *
 * As Synapse's InvokeMediator and TemplateContext: a value is a literal,
 * "{expr}" evaluated before the template starts (in the caller's context,
 * so $func: there reads the caller's own parameters), or "{{expr}}"
 * evaluated each time the template reads it.  A parameter not given takes
 * its defaultValue (a plain string).  A mandatory parameter without a
 * value or a default is a load error here (Synapse fails at run time), and
 * a with-param the template does not declare a warning (Synapse ignores
 * it).  Inside, only the innermost call's parameters are visible. */
#include "config.h"

#include <string.h>

#include "config/config.h"
#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

typedef struct {
    const char *name;
    cmi_value_t literal;
    const cmi_expr_t *expr; /* NULL: the literal */
    int lazy;               /* {{expr}} */
    int line;
} with_param_t;

typedef struct {
    cmi_mediator_t base;
    const char *target;
    const cmi_sequence_t *body; /* the template, resolved after loading */
    with_param_t *params;
    size_t nparams;
    /* For each of the template's parameters, the with-param that gives it
     * (NULL: none), set by the load check. */
    const with_param_t **bound;
    /* onError: a frame of no mediators whose handler catches what the
     * template's own onError does not (Synapse pushes it first). */
    cmi_sequence_t *guard;
} call_template_t;

static int bind_arg(const call_template_t *ct, size_t i, cmi_msg_t *msg, cmi_func_arg_t *arg)
{
    const cmi_template_param_t *p = &ct->body->tparams->items[i];
    const with_param_t *w = ct->bound[i];
    arg->name = p->name;
    if (w == NULL) {
        if (p->default_value != NULL) {
            arg->value = cmi_value_cstring(p->default_value);
            arg->set = 1;
        }
        return 0;
    }
    if (w->lazy) {
        arg->lazy = w->expr;
        arg->set = 1;
    } else if (w->expr != NULL) {
        if (cmi_expr_eval(w->expr, msg, &arg->value) != 0)
            return CMI_FLOW_ERROR;
        arg->set = arg->value.type != CMI_VAL_NULL;
    } else {
        arg->value = w->literal;
        arg->set = 1;
    }
    return 0;
}

static int run_call_template(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const call_template_t *ct = (const call_template_t *)m;
    const cmi_template_params_t *tp = ct->body->tparams;
    cmi_func_frame_t *f = cmi_arena_calloc(msg->arena, 1, sizeof(*f));
    f->args = cmi_arena_calloc(msg->arena, tp->count ? tp->count : 1, sizeof(*f->args));
    /* Every value is bound before the template's frame exists. */
    for (size_t i = 0; i < tp->count; i++)
        if (bind_arg(ct, i, msg, &f->args[f->count++]) != 0)
            return CMI_FLOW_ERROR;
    if (ct->guard != NULL && cmi_flow_push(msg, ct->guard) != CMI_FLOW_CONTINUE)
        return CMI_FLOW_ERROR;
    return cmi_flow_push_func(msg, ct->body, f);
}

typedef struct {
    call_template_t *ct;
    const char *file;
    int line;
} check_t;

/* Once the template is known: which with-param gives which parameter, a
 * mandatory one missing (error), an undeclared one (warning). */
static void check_params(cmi_compile_t *cc, void *data)
{
    check_t *k = data;
    call_template_t *ct = k->ct;
    if (ct->body == NULL)
        return; /* reported as unresolved */
    const cmi_template_params_t *tp = ct->body->tparams;
    ct->bound = cmi_arena_calloc(cc->arena, tp->count ? tp->count : 1, sizeof(*ct->bound));
    for (size_t i = 0; i < tp->count; i++) {
        const cmi_template_param_t *p = &tp->items[i];
        for (size_t j = 0; j < ct->nparams && ct->bound[i] == NULL; j++)
            if (strcmp(ct->params[j].name, p->name) == 0)
                ct->bound[i] = &ct->params[j];
        /* With a default, a mandatory parameter takes it, as MI's docs say
         * (reference/synapse-properties/template-properties.md). */
        if (ct->bound[i] == NULL && p->mandatory && p->default_value == NULL)
            cmi_diag_error(cc->diag, k->file, k->line,
                           "<call-template target=\"%s\">: parameter '%s' is mandatory (%s:%d) and is not given",
                           ct->target, p->name, ct->body->file, ct->body->line);
    }
    for (size_t j = 0; j < ct->nparams; j++) {
        size_t i = 0;
        while (i < tp->count && strcmp(tp->items[i].name, ct->params[j].name) != 0)
            i++;
        if (i == tp->count)
            cmi_diag_warn(cc->diag, k->file, ct->params[j].line,
                          "<with-param name=\"%s\">: template '%s' has no such parameter (ignored, as MI)",
                          ct->params[j].name, ct->target);
    }
}

static const cmi_attr_rule_t attrs[] = {
    {"target", CMI_ATTR_OK},
    {"onError", CMI_ATTR_OK},
    {NULL, 0},
};

static const cmi_attr_rule_t param_attrs[] = {
    {"name", CMI_ATTR_OK},
    {"value", CMI_ATTR_OK},
    {NULL, 0},
};

static int compile_with_params(cmi_compile_t *cc, xmlNodePtr node, call_template_t *ct)
{
    size_t n = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        n += c->type == XML_ELEMENT_NODE;
    ct->params = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*ct->params));
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || cmi_xml_is(c, "description"))
            continue;
        if (!cmi_xml_is(c, "with-param")) {
            cmi_compile_error(cc, c, "<call-template>: unexpected element <%s> (give <with-param name value>)",
                              c->name);
            return -1;
        }
        if (cmi_xml_check_attrs(cc, c, param_attrs, NULL) || cmi_xml_no_children(cc, c))
            return -1;
        const char *name = cmi_xml_attr(cc, c, "name"), *value = cmi_xml_attr(cc, c, "value");
        if (value == NULL) {
            cmi_compile_error(cc, c, "<with-param>: the value attribute is required");
            return -1;
        }
        if (name == NULL || *name == '\0') {
            cmi_compile_error(cc, c, "<with-param>: the name attribute is required");
            return -1;
        }
        for (size_t j = 0; j < ct->nparams; j++)
            if (strcmp(ct->params[j].name, name) == 0) {
                cmi_compile_error(cc, c, "<with-param name=\"%s\">: given twice", name);
                return -1;
            }
        with_param_t *w = &ct->params[ct->nparams];
        w->name = name;
        w->line = cmi_xml_line(c);
        if (cmi_compile_value_attr(cc, c, "value", value, &w->expr, &w->lazy) != 0)
            return -1;
        if (w->expr == NULL)
            w->literal = cmi_value_cstring(value);
        ct->nparams++;
    }
    return 0;
}

cmi_mediator_t *cmi_compile_call_template(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs))
        return NULL;
    const char *target = cmi_xml_attr(cc, node, "target");
    if (target == NULL || *target == '\0') {
        cmi_compile_error(cc, node, "<call-template>: the target attribute is required");
        return NULL;
    }
    call_template_t *ct = cmi_mediator_new(cc, node, sizeof(*ct), run_call_template);
    ct->target = target;
    if (compile_with_params(cc, node, ct) != 0)
        return NULL;
    cmi_compile_ref_template(cc, target, &ct->body, ct->base.line,
                             cmi_arena_sprintf(cc->arena, "<call-template target=\"%s\">", target));
    const char *on_error = cmi_xml_attr(cc, node, "onError");
    if (on_error != NULL && *on_error != '\0') {
        ct->guard = cmi_arena_calloc(cc->arena, 1, sizeof(*ct->guard));
        ct->guard->items = cmi_arena_calloc(cc->arena, 1, sizeof(*ct->guard->items));
        ct->guard->file = cc->file;
        ct->guard->line = ct->base.line;
        cmi_compile_ref_sequence(cc, on_error, &ct->guard->on_error, ct->base.line,
                                 cmi_arena_sprintf(cc->arena, "<call-template onError=\"%s\">", on_error));
    }
    check_t *k = cmi_arena_calloc(cc->arena, 1, sizeof(*k));
    k->ct = ct;
    k->file = cc->file;
    k->line = ct->base.line;
    cmi_compile_after_refs(cc, check_params, k);
    return &ct->base;
}
