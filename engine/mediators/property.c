/* <property name value|expression scope type action>: set or remove a
 * property.
 *
 * A literal value is converted to its type once, at load; a value that
 * does not fit the type is a load error.  An expression is evaluated per
 * message and its result converted to the type (a result that does not fit
 * is a mediation error).  JSON literals are copied per message so no two
 * messages ever share a mutable jansson object. */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "core/regex.h"
#include "core/str.h"
#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

typedef struct {
    cmi_mediator_t base;
    const char *name;
    cmi_scope_t scope;
    int remove;
    int has_type;
    cmi_ptype_t type;
    cmi_value_t value;       /* literal */
    const cmi_expr_t *expr;  /* or an expression */
    int accept_early_check;  /* FORCE_SC_ACCEPTED or OUT_ONLY */
    cmi_regex_t *pattern;    /* pattern="..." */
    long group;
} property_mediator_t;

/* pattern/group, as MI applies them: to a string result only, the whole
 * text must match (Java's matches()); the value is the group (0: the whole
 * match), or "" when the text does not match or the group is absent. */
static cmi_value_t apply_pattern(cmi_msg_t *msg, const property_mediator_t *p, cmi_value_t v)
{
    if (v.type != CMI_VAL_STRING)
        return v;
    regmatch_t groups[10];
    size_t n = (size_t)p->group + 1;
    if (!cmi_regex_find(p->pattern, v.u.s.ptr, v.u.s.len, groups, n) || groups[0].rm_so != 0 ||
        (size_t)groups[0].rm_eo != v.u.s.len || groups[p->group].rm_so < 0)
        return cmi_value_string("", 0);
    size_t off = (size_t)groups[p->group].rm_so, len = (size_t)(groups[p->group].rm_eo - groups[p->group].rm_so);
    return cmi_value_string(cmi_arena_strndup(msg->arena, v.u.s.ptr + off, len), len);
}

/* Converts an evaluated value to the property's declared type. */
static int convert_typed(cmi_msg_t *msg, const property_mediator_t *p, cmi_value_t *v)
{
    if (!p->has_type)
        return 0;
    const char *err = NULL;
    int parsed;
    if (cmi_value_convert(msg->arena, p->type, v, &err, &parsed) != 0)
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "property '%s' (type %s): %s", p->name,
                                 cmi_ptype_name(p->type), err);
    if (parsed)
        cmi_msg_own_json(msg, v->u.json);
    return 0;
}

/* MI's FORCE_SC_ACCEPTED (axis2) with OUT_ONLY: the caller gets 202 with no
 * body as soon as both are set, and the flow goes on without a caller. */
static void accept_early(cmi_msg_t *msg)
{
    if (msg->responded || !cmi_msg_prop_true(msg, CMI_SCOPE_AXIS2, "FORCE_SC_ACCEPTED") ||
        !cmi_msg_prop_true(msg, CMI_SCOPE_DEFAULT, "OUT_ONLY"))
        return;
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "HTTP_SC", cmi_value_int(202));
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "NO_ENTITY_BODY", cmi_value_bool(1));
    cmi_flow_respond(msg);
}

static int run_property(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const property_mediator_t *p = (const property_mediator_t *)m;
    if (p->remove) {
        cmi_msg_prop_remove(msg, p->scope, p->name);
        return CMI_FLOW_CONTINUE;
    }
    cmi_value_t v = p->value;
    if (p->expr != NULL) {
        if (cmi_expr_eval(p->expr, msg, &v) != 0 || convert_typed(msg, p, &v) != 0)
            return CMI_FLOW_ERROR;
        if (p->pattern != NULL)
            v = apply_pattern(msg, p, v);
        if (p->scope == CMI_SCOPE_TRANSPORT) {
            size_t len;
            const char *text = cmi_value_to_text(msg->arena, &v, &len);
            if (!cmi_header_valid(p->name, strlen(p->name), text, len))
                return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL,
                                         "transport property '%s': the value of %s contains a line break", p->name,
                                         cmi_expr_text(p->expr));
        }
    } else if (v.type == CMI_VAL_JSON) { /* the configuration's tree is shared by every worker */
        v.u.json = cmi_msg_own_json(msg, json_deep_copy(v.u.json));
    } else if (p->pattern != NULL) {
        v = apply_pattern(msg, p, v);
    }
    cmi_msg_prop_set(msg, p->scope, p->name, v);
    if (p->accept_early_check)
        accept_early(msg);
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
    {"expression", CMI_ATTR_OK},
    {"pattern", CMI_ATTR_OK},
    {"group", CMI_ATTR_OK},
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

/* <property name="P" type="OM"><elem>...</elem></property>: the element, as
 * Synapse keeps the first child element (whatever the type says) and
 * reads it as an element: its text where a string is wanted, the element
 * where XML is ($ctx:P in a SOAP header, XPath from it). */
static cmi_mediator_t *compile_inline_xml(cmi_compile_t *cc, xmlNodePtr node, xmlNodePtr elem, const char *type,
                                          property_mediator_t *p)
{
    if (type != NULL && strcasecmp(type, "OM") != 0)
        cmi_compile_warn(cc, node, "<property name=\"%s\" type=\"%s\">: an inline element is kept as XML (type OM), "
                         "as MI does", p->name, type);
    if (cmi_xml_attr(cc, node, "pattern") != NULL) {
        cmi_compile_error(cc, node, "<property name=\"%s\">: pattern applies to an expression's text, not to XML",
                          p->name);
        return NULL;
    }
    size_t len;
    const char *markup = cmi_compile_element_markup(cc, elem, &len);
    p->value = cmi_value_string(markup, len);
    p->value.type = CMI_VAL_XML;
    return &p->base;
}

cmi_mediator_t *cmi_compile_property(cmi_compile_t *cc, xmlNodePtr node)
{
    int errors = cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs);
    property_mediator_t *p = cmi_mediator_new(cc, node, sizeof(*p), run_property);
    p->name = cmi_xml_attr(cc, node, "name");
    const char *value = cmi_xml_attr(cc, node, "value");
    const char *expression = cmi_xml_attr(cc, node, "expression");
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
    xmlNodePtr inline_xml = NULL;
    for (xmlNodePtr c = node->children; c != NULL && inline_xml == NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            inline_xml = c;
    p->accept_early_check = strcmp(p->name, "FORCE_SC_ACCEPTED") == 0 || strcmp(p->name, "OUT_ONLY") == 0;
    if (p->scope == CMI_SCOPE_TRANSPORT && !cmi_header_valid(p->name, strlen(p->name), value ? value : "",
                                                              value ? strlen(value) : 0)) {
        cmi_compile_error(cc, node, "<property name=\"%s\" scope=\"transport\">: not a valid HTTP header name or value",
                          p->name);
        return NULL;
    }
    if (p->remove || errors)
        return errors ? NULL : &p->base;
    if ((value != NULL) + (expression != NULL) + (inline_xml != NULL) != 1) {
        cmi_compile_error(cc, node, "<property name=\"%s\">: give one of a value, an expression or an XML element "
                          "(or action=\"remove\")", p->name);
        return NULL;
    }
    if (inline_xml != NULL)
        return compile_inline_xml(cc, node, inline_xml, type, p);
    cmi_ptype_t ptype = CMI_PTYPE_STRING;
    if (type != NULL) {
        int t = cmi_ptype_parse(type);
        if (t < 0) {
            cmi_compile_error(cc, node, "<property name=\"%s\">: unknown type '%s'", p->name, type);
            return NULL;
        }
        ptype = (cmi_ptype_t)t;
        p->has_type = 1;
        p->type = ptype;
    }
    const char *pattern = cmi_xml_attr(cc, node, "pattern");
    const char *group = cmi_xml_attr(cc, node, "group");
    if (group != NULL && pattern == NULL) {
        cmi_compile_error(cc, node, "<property name=\"%s\">: group is only allowed with a pattern", p->name);
        return NULL;
    }
    if (pattern != NULL) {
        const char *err = NULL;
        uint64_t g = 0;
        p->pattern = cmi_arena_calloc(cc->arena, 1, sizeof(*p->pattern));
        if (cmi_regex_compile(cc->arena, p->pattern, pattern, &err) != 0) {
            cmi_compile_error(cc, node, "<property name=\"%s\" pattern=\"%s\">: %s", p->name, pattern, err);
            return NULL;
        }
        if (group != NULL && (cmi_parse_uint(group, 9, &g) != 0 || g > cmi_regex_groups(p->pattern))) {
            cmi_compile_error(cc, node, "<property name=\"%s\">: group must be 0..%zu (the pattern's groups), not '%s'",
                              p->name, cmi_regex_groups(p->pattern) < 9 ? cmi_regex_groups(p->pattern) : 9, group);
            return NULL;
        }
        p->group = (long)g;
    }
    if (expression != NULL) {
        p->expr = cmi_compile_expr(cc, node, "expression", expression);
        return p->expr ? &p->base : NULL;
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
