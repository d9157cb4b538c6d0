/* Parameter values per message: dynamic rows evaluated and parsed with the
 * parsers of pvalue.c (the ones static values went through at load); and
 * `cmi describe`, printed from the same rows. */
#include "config.h"

#include <string.h>

#include "core/str.h"
#include "expr/expr.h"
#include "plugin/plugin.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

static const char *type_name(cmi_param_type_t t)
{
    switch (t) {
    case CMI_PARAM_STRING: return "string";
    case CMI_PARAM_INT: return "integer";
    case CMI_PARAM_BOOL: return "boolean";
    case CMI_PARAM_DURATION: return "duration";
    case CMI_PARAM_ENUM: return "enum";
    case CMI_PARAM_LIST: return "list";
    case CMI_PARAM_JSON: return "JSON";
    case CMI_PARAM_EXPR: return "template";
    }
    return "?";
}

/* ---- per-message values ------------------------------------------------- */

static int param_error(const cmi_pset_t *ps, cmi_msg_t *msg, const cmi_pdyn_t *d, const char *why)
{
    int code = ps->mod->desc->param_error_code ? ps->mod->desc->param_error_code : CMI_ERR_MEDIATION;
    return cmi_msg_set_error(msg, code, NULL, "%s: parameter %s (%s): %s", ps->what, ps->defs[d->row].name,
                             d->source, why);
}

/* A JSON row takes an expression's JSON as it is, and parses text. */
static int eval_json(const cmi_pset_t *ps, cmi_msg_t *msg, const cmi_pdyn_t *d, const cmi_value_t *v, json_t **out)
{
    json_t *j = NULL;
    switch (v->type) {
    case CMI_VAL_NULL: *out = NULL; return 0;
    case CMI_VAL_JSON: j = json_incref(v->u.json); break;
    case CMI_VAL_BOOL: j = json_boolean(v->u.b); break;
    case CMI_VAL_INT: j = json_integer(v->u.i); break;
    case CMI_VAL_NUMBER: j = json_real(v->u.d); break;
    default: {
        size_t len;
        const char *text = cmi_value_to_text(msg->arena, v, &len);
        if (len == 0) {
            *out = NULL;
            return 0;
        }
        json_error_t je;
        j = json_loadb(text, len, JSON_DECODE_ANY, &je);
        if (j == NULL)
            return param_error(ps, msg, d,
                               (ps->defs[d->row].flags & CMI_PARAM_SECRET)
                                   ? "not valid JSON"
                                   : cmi_arena_sprintf(msg->arena, "not valid JSON: %s", je.text));
    }
    }
    *out = cmi_msg_own_json(msg, j);
    return 0;
}

int cmi_pset_eval_row(const cmi_pset_t *ps, cmi_msg_t *msg, void *params, unsigned row)
{
    const cmi_pdyn_t *d = NULL;
    for (size_t i = 0; i < ps->ndyn; i++)
        if (ps->dyn[i].row == row)
            d = &ps->dyn[i];
    if (d == NULL)
        return 0; /* a static row: already there */
    const cmi_param_def_t *def = &ps->defs[row];
    cmi_params_head_t *head = params;
    void *slot = (char *)params + def->offset;
    /* Start from the default: a row evaluated twice (in a continuation)
     * must not keep the first value when the second gives nothing. */
    memcpy(slot, (const char *)ps->statics + def->offset, cmi_param_slot_size(def->type));
    const char *text = NULL;
    size_t len = 0;
    if (d->tmpl != NULL) {
        cmi_strbuf_t out;
        cmi_strbuf_init(&out, msg->arena, 128);
        if (cmi_template_render(d->tmpl, msg, NULL, 0, &out) != 0)
            return CMI_FLOW_ERROR;
        text = out.data;
        len = out.len;
    } else {
        cmi_value_t v;
        if (cmi_expr_eval(d->expr, msg, &v) != 0)
            return CMI_FLOW_ERROR;
        if (def->type == CMI_PARAM_JSON) {
            json_t *j;
            if (eval_json(ps, msg, d, &v, &j) != 0)
                return CMI_FLOW_ERROR;
            if (j != NULL)
                *(json_t **)slot = j;
            cmi_param_bit_put(head->given, row, j != NULL);
            if (j == NULL && (def->flags & CMI_PARAM_REQUIRED))
                return param_error(ps, msg, d, "required, but the expression gave nothing");
            return 0;
        }
        text = cmi_value_to_text(msg->arena, &v, &len);
    }
    /* A value that evaluates to nothing is an absent parameter, as an
     * empty element is: the default stays.  (A template that renders to ""
     * is an empty text, which a body may legitimately be.) */
    if (len == 0 && def->type != CMI_PARAM_EXPR) {
        cmi_param_bit_put(head->given, row, 0);
        if (def->flags & CMI_PARAM_REQUIRED)
            return param_error(ps, msg, d, "required, but the expression gave nothing");
        return 0;
    }
    if (memchr(text, '\0', len) != NULL)
        return param_error(ps, msg, d, "the value holds a NUL byte");
    char why[256];
    if (cmi_param_parse(msg->arena, def, text, slot, why, sizeof(why)) != 0) {
        if (def->flags & CMI_PARAM_SECRET)
            return param_error(ps, msg, d, why);
        return param_error(ps, msg, d, cmi_arena_sprintf(msg->arena, "'%s' is %s", text, why));
    }
    cmi_param_bit_put(head->given, row, len > 0);
    return 0;
}

int cmi_pset_resolve(const cmi_pset_t *ps, cmi_msg_t *msg, void **out)
{
    if (ps->ndyn == 0) {
        *out = ps->statics;
        return 0;
    }
    void *copy = cmi_arena_memdup(msg->arena, ps->statics, ps->size);
    for (size_t i = 0; i < ps->ndyn; i++) {
        if (ps->defs[ps->dyn[i].row].flags & CMI_PARAM_LAZY)
            continue;
        if (cmi_pset_eval_row(ps, msg, copy, ps->dyn[i].row) != 0)
            return CMI_FLOW_ERROR;
    }
    *out = copy;
    return 0;
}

/* ---- cmi describe -------------------------------------------------------- */

static void describe_row(FILE *out, const cmi_param_def_t *d)
{
    char attrs[256];
    size_t n = 0;
    attrs[0] = '\0';
#define ADD(...) n += (size_t)snprintf(attrs + n, n < sizeof(attrs) ? sizeof(attrs) - n : 0, __VA_ARGS__)
    ADD("%s", type_name(d->type));
    if (d->flags & CMI_PARAM_REQUIRED)
        ADD(", required");
    if (d->flags & CMI_PARAM_SECRET)
        ADD(", secret");
    if ((d->flags & CMI_PARAM_DYNAMIC) || d->type == CMI_PARAM_EXPR)
        ADD(", dynamic");
    if (d->flags & CMI_PARAM_UNSUPPORTED)
        ADD(", not supported yet");
    if (d->flags & CMI_PARAM_IGNORED)
        ADD(", ignored");
    if (d->default_value != NULL)
        ADD(", default %s", *d->default_value ? d->default_value : "\"\"");
    if (d->min < d->max)
        ADD(", %lld..%lld", (long long)d->min, (long long)d->max);
#undef ADD
    fprintf(out, "  %-34s %s\n", d->name, d->description ? d->description : "");
    fprintf(out, "  %-34s (%s", "", attrs);
    if (d->type == CMI_PARAM_ENUM) {
        fprintf(out, "; one of");
        for (int i = 0; d->choices[i] != NULL; i++)
            fprintf(out, "%s %s", i ? "," : "", d->choices[i]);
    }
    fprintf(out, ")\n");
}

static void describe_table(FILE *out, const cmi_param_def_t *defs)
{
    if (defs == NULL || defs->name == NULL) {
        fprintf(out, "  (no parameters)\n");
        return;
    }
    for (const cmi_param_def_t *d = defs; d->name != NULL; d++)
        describe_row(out, d);
}

void cmi_module_describe(const cmi_module_t *m, FILE *out)
{
    const cmi_connector_t *d = m->desc;
    fprintf(out, "%s %s (connector ABI %u.%u, %s)\n", d->name, d->version, (unsigned)d->abi_major,
            (unsigned)d->abi_minor, m->path);
    if (d->description != NULL)
        fprintf(out, "%s\n", d->description);
    if (d->config != NULL) {
        fprintf(out, "\nConnection config: <localEntry key=\"KEY\"><%s.init>...</%s.init></localEntry>\n", d->name,
                d->name);
        if (d->config->description != NULL)
            fprintf(out, "  %s\n", d->config->description);
        describe_table(out, d->config->params);
    }
    for (const cmi_op_def_t *op = d->ops; op->name != NULL; op++) {
        fprintf(out, "\nOperation: <%s.%s%s>\n", d->name, op->name,
                (op->flags & CMI_OP_NEEDS_CONFIG) ? " configKey=\"KEY\""
                : (op->flags & CMI_OP_NO_CONFIG) ? ""
                                                 : " [configKey=\"KEY\"]");
        if (op->description != NULL)
            fprintf(out, "  %s\n", op->description);
        describe_table(out, op->params);
        fprintf(out, "  %-34s %s\n  %-34s (string)\n", "responseVariable",
                "variable that receives {\"payload\": result}", "");
        fprintf(out, "  %-34s %s\n  %-34s (boolean, default false)\n", "overwriteBody",
                "the result becomes the payload", "");
    }
    for (const cmi_listener_def_t *l = d->listeners; l != NULL && l->classes != NULL; l++) {
        if (l->classes[0] != NULL)
            fprintf(out, "\nInbound endpoint: <inboundEndpoint class=\"%s\"", l->classes[0]);
        else
            fprintf(out, "\nInbound endpoint: <inboundEndpoint protocol=\"%s\"", l->protocol);
        if (l->classes[0] != NULL && l->protocol != NULL)
            fprintf(out, " (or protocol=\"%s\")", l->protocol);
        fprintf(out, " sequence=\"SEQ\">\n");
        if (l->description != NULL)
            fprintf(out, "  %s\n", l->description);
        if (l > d->listeners && l->params == l[-1].params)
            fprintf(out, "  Parameters: those of the endpoint above.\n");
        else
            describe_table(out, l->params);
    }
    if (d->errors != NULL && d->errors->code != 0) {
        fprintf(out, "\nErrors (ERROR_CODE, ERROR_MESSAGE, HTTP status when no fault sequence answers):\n");
        for (const cmi_error_def_t *e = d->errors; e->code != 0; e++)
            fprintf(out, "  %d  %-36s %d\n", e->code, e->name, e->status);
    }
}
