/* <property name value scope type action>: set or remove a property.
 *
 * The literal value is converted to its type once, at load; a value that
 * does not fit the type is a load error.  JSON values are copied per message
 * so no two messages ever share a mutable jansson object. */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "mediators/registry.h"
#include "runtime/msg.h"

typedef struct {
    cmi_mediator_t base;
    const char *name;
    cmi_scope_t scope;
    int remove;
    cmi_value_t value;
} property_mediator_t;

static int run_property(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const property_mediator_t *p = (const property_mediator_t *)m;
    if (p->remove) {
        cmi_msg_prop_remove(msg, p->scope, p->name);
        return CMI_FLOW_CONTINUE;
    }
    cmi_value_t v = p->value;
    if (v.type == CMI_VAL_JSON)
        v.u.json = json_deep_copy(v.u.json);
    cmi_msg_prop_set(msg, p->scope, p->name, v);
    return CMI_FLOW_CONTINUE;
}

static void json_free_cb(void *j)
{
    json_decref(j);
}

static const cmi_attr_rule_t attrs[] = {
    {"name", CMI_ATTR_OK},
    {"value", CMI_ATTR_OK},
    {"scope", CMI_ATTR_OK},
    {"type", CMI_ATTR_OK},
    {"action", CMI_ATTR_OK},
    {"expression", CMI_ATTR_UNSUPPORTED},
    {"pattern", CMI_ATTR_UNSUPPORTED},
    {"group", CMI_ATTR_UNSUPPORTED},
    {NULL, 0},
};

static int parse_scope(cmi_compile_t *cc, xmlNodePtr node, const char *s, cmi_scope_t *out)
{
    int scope = cmi_scope_parse(s);
    if (scope >= 0) {
        *out = (cmi_scope_t)scope;
        return 0;
    }
    if (strcasecmp(s, "registry") == 0 || strcasecmp(s, "system") == 0 || strcasecmp(s, "analytics") == 0)
        cmi_compile_error(cc, node, "<property>: scope '%s' is not supported by cmi yet", s);
    else
        cmi_compile_error(cc, node, "<property>: unknown scope '%s' (default, transport, axis2 or operation)", s);
    return -1;
}

cmi_mediator_t *cmi_compile_property(cmi_compile_t *cc, xmlNodePtr node)
{
    int errors = cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs);
    property_mediator_t *p = cmi_mediator_new(cc, node, sizeof(*p), run_property);
    p->name = cmi_xml_attr(cc, node, "name");
    const char *value = cmi_xml_attr(cc, node, "value");
    const char *scope = cmi_xml_attr(cc, node, "scope");
    const char *type = cmi_xml_attr(cc, node, "type");
    const char *action = cmi_xml_attr(cc, node, "action");
    if (p->name == NULL || *p->name == '\0') {
        cmi_compile_error(cc, node, "<property>: the name attribute is required");
        return NULL;
    }
    if (scope != NULL && parse_scope(cc, node, scope, &p->scope) != 0)
        errors++;
    if (action != NULL && strcmp(action, "remove") != 0 && strcmp(action, "set") != 0) {
        cmi_compile_error(cc, node, "<property name=\"%s\">: action must be 'set' or 'remove', not '%s'", p->name,
                          action);
        errors++;
    }
    p->remove = action != NULL && strcmp(action, "remove") == 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE) {
            cmi_compile_error(cc, c, "<property name=\"%s\">: inline XML values are not supported by cmi yet",
                              p->name);
            return NULL;
        }
    if (p->remove || errors)
        return errors ? NULL : &p->base;
    if (value == NULL) {
        if (cmi_xml_attr(cc, node, "expression") == NULL)
            cmi_compile_error(cc, node, "<property name=\"%s\">: give a value (or action=\"remove\")", p->name);
        return NULL;
    }
    cmi_ptype_t ptype = CMI_PTYPE_STRING;
    if (type != NULL) {
        int t = cmi_ptype_parse(type);
        if (t < 0) {
            cmi_compile_error(cc, node, "<property name=\"%s\">: unknown type '%s'", p->name, type);
            return NULL;
        }
        ptype = (cmi_ptype_t)t;
    }
    const char *err = NULL;
    if (cmi_value_from_text(cc->arena, ptype, value, strlen(value), &p->value, &err) != 0) {
        cmi_compile_error(cc, node, "<property name=\"%s\" type=\"%s\">: %s", p->name, cmi_ptype_name(ptype), err);
        return NULL;
    }
    if (p->value.type == CMI_VAL_JSON)
        cmi_arena_cleanup_add(cc->arena, json_free_cb, p->value.u.json);
    return &p->base;
}
