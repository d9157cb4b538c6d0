/* <variable name type value|expression action>: MI 4.4's variables, read
 * back as ${vars.name}.  Types: STRING, BOOLEAN, INTEGER, DOUBLE, LONG,
 * XML, JSON; a literal is converted once at load, an expression's result
 * per message. */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

typedef struct {
    cmi_mediator_t base;
    const char *name;
    int remove;
    int has_type;
    cmi_ptype_t type;
    cmi_value_t value;
    const cmi_expr_t *expr;
} variable_mediator_t;

static int run_variable(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const variable_mediator_t *v = (const variable_mediator_t *)m;
    if (v->remove) {
        cmi_msg_var_remove(msg, v->name);
        return CMI_FLOW_CONTINUE;
    }
    cmi_value_t val = v->value;
    if (v->expr != NULL) {
        if (cmi_expr_eval(v->expr, msg, &val) != 0)
            return CMI_FLOW_ERROR;
        const char *err = NULL;
        int parsed;
        if (v->has_type && cmi_value_convert(msg->arena, v->type, &val, &err, &parsed) != 0)
            return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "variable '%s' (type %s): %s", v->name,
                                     cmi_ptype_name(v->type), err);
        if (v->has_type && parsed)
            cmi_msg_own_json(msg, val.u.json);
    } else if (val.type == CMI_VAL_JSON) { /* the configuration's tree is shared by every worker */
        val.u.json = cmi_msg_own_json(msg, json_deep_copy(val.u.json));
    }
    cmi_msg_var_set(msg, v->name, val);
    return CMI_FLOW_CONTINUE;
}

static void json_free_cb(void *j)
{
    json_decref(j);
}

static const cmi_attr_rule_t attrs[] = {
    {"name", CMI_ATTR_OK},   {"value", CMI_ATTR_OK},  {"expression", CMI_ATTR_OK},
    {"type", CMI_ATTR_OK},   {"action", CMI_ATTR_OK}, {NULL, 0},
};

static int parse_type(cmi_compile_t *cc, xmlNodePtr node, variable_mediator_t *v, const char *type)
{
    static const char *const allowed[] = {"STRING", "BOOLEAN", "INTEGER", "DOUBLE", "LONG", "XML", "JSON", NULL};
    for (const char *const *a = allowed; *a; a++)
        if (strcasecmp(*a, type) == 0) {
            v->type = (cmi_ptype_t)cmi_ptype_parse(type);
            v->has_type = 1;
            return 0;
        }
    cmi_compile_error(cc, node, "<variable name=\"%s\">: type must be STRING, BOOLEAN, INTEGER, DOUBLE, LONG, XML or "
                                "JSON, not '%s'", v->name, type);
    return -1;
}

cmi_mediator_t *cmi_compile_variable(cmi_compile_t *cc, xmlNodePtr node)
{
    int errors = cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs);
    variable_mediator_t *v = cmi_mediator_new(cc, node, sizeof(*v), run_variable);
    v->name = cmi_xml_attr(cc, node, "name");
    const char *value = cmi_xml_attr(cc, node, "value");
    const char *expression = cmi_xml_attr(cc, node, "expression");
    const char *type = cmi_xml_attr(cc, node, "type");
    const char *action = cmi_xml_attr(cc, node, "action");
    if (v->name == NULL || *v->name == '\0') {
        cmi_compile_error(cc, node, "<variable>: the name attribute is required");
        return NULL;
    }
    if (action != NULL && strcmp(action, "set") != 0 && strcmp(action, "remove") != 0) {
        cmi_compile_error(cc, node, "<variable name=\"%s\">: action must be 'set' or 'remove', not '%s'", v->name,
                          action);
        return NULL;
    }
    cmi_xml_no_children(cc, node);
    v->remove = action != NULL && strcmp(action, "remove") == 0;
    if (v->remove)
        return errors ? NULL : &v->base;
    if ((value == NULL) == (expression == NULL)) {
        cmi_compile_error(cc, node, "<variable name=\"%s\">: give a value or an expression (or action=\"remove\")",
                          v->name);
        return NULL;
    }
    if (type != NULL && parse_type(cc, node, v, type) != 0)
        return NULL;
    if (expression != NULL) {
        v->expr = cmi_compile_expr(cc, node, "expression", expression);
        return v->expr && !errors ? &v->base : NULL;
    }
    const char *err = NULL;
    cmi_ptype_t t = v->has_type ? v->type : CMI_PTYPE_STRING;
    if (cmi_value_from_text(cc->arena, t, value, strlen(value), &v->value, &err) != 0) {
        cmi_compile_error(cc, node, "<variable name=\"%s\" type=\"%s\">: %s", v->name, type, err);
        return NULL;
    }
    if (v->value.type == CMI_VAL_JSON)
        cmi_arena_cleanup_add(cc->arena, json_free_cb, v->value.u.json);
    return errors ? NULL : &v->base;
}
