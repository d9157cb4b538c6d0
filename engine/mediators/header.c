/* <header name value scope="transport" action="set|remove">: set or remove
 * a transport header.  Headers set here go out with the response. */
#include "config.h"

#include <string.h>

#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

typedef struct {
    cmi_mediator_t base;
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    const cmi_expr_t *expr;
    int remove;
} header_mediator_t;

static int run_header(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const header_mediator_t *h = (const header_mediator_t *)m;
    if (h->remove) {
        cmi_msg_header_remove(msg, h->name, h->name_len);
        return CMI_FLOW_CONTINUE;
    }
    const char *value = h->value;
    size_t len = h->value_len;
    if (h->expr != NULL) {
        if (cmi_expr_eval_text(h->expr, msg, &value, &len) != 0)
            return CMI_FLOW_ERROR;
        /* A computed value must not smuggle a second header (or a body)
         * into the response. */
        if (memchr(value, '\r', len) != NULL || memchr(value, '\n', len) != NULL || memchr(value, '\0', len) != NULL)
            return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "header '%s': the value of %s contains a line break",
                                     h->name, cmi_expr_text(h->expr));
    }
    cmi_msg_header_set(msg, h->name, h->name_len, value, len, 0);
    return CMI_FLOW_CONTINUE;
}

static const cmi_attr_rule_t attrs[] = {
    {"name", CMI_ATTR_OK},  {"value", CMI_ATTR_OK},
    {"scope", CMI_ATTR_OK}, {"action", CMI_ATTR_OK},
    {"expression", CMI_ATTR_OK},
    {NULL, 0},
};

/* Characters RFC 9110 allows in a field name. */
static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!(strchr("!#$%&'*+-.^_`|~", *s) || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
              (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

cmi_mediator_t *cmi_compile_header(cmi_compile_t *cc, xmlNodePtr node)
{
    int errors = cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs);
    header_mediator_t *h = cmi_mediator_new(cc, node, sizeof(*h), run_header);
    h->name = cmi_xml_attr(cc, node, "name");
    h->value = cmi_xml_attr(cc, node, "value");
    const char *scope = cmi_xml_attr(cc, node, "scope");
    const char *action = cmi_xml_attr(cc, node, "action");
    if (h->name == NULL || *h->name == '\0') {
        cmi_compile_error(cc, node, "<header>: the name attribute is required");
        return NULL;
    }
    if (scope == NULL || strcmp(scope, "default") == 0) {
        cmi_compile_error(cc, node,
                          "<header name=\"%s\">: SOAP headers (scope \"default\") are not supported by cmi yet; "
                          "use scope=\"transport\" for HTTP headers", h->name);
        return NULL;
    }
    if (strcmp(scope, "transport") != 0) {
        cmi_compile_error(cc, node, "<header name=\"%s\">: scope must be 'transport' or 'default', not '%s'", h->name,
                          scope);
        return NULL;
    }
    if (!is_token(h->name)) {
        cmi_compile_error(cc, node, "<header>: '%s' is not a valid HTTP header name", h->name);
        return NULL;
    }
    if (action != NULL && strcmp(action, "set") != 0 && strcmp(action, "remove") != 0) {
        cmi_compile_error(cc, node, "<header name=\"%s\">: action must be 'set' or 'remove', not '%s'", h->name, action);
        return NULL;
    }
    h->remove = action != NULL && strcmp(action, "remove") == 0;
    const char *expression = cmi_xml_attr(cc, node, "expression");
    if (!h->remove && (h->value == NULL) == (expression == NULL)) {
        cmi_compile_error(cc, node, "<header name=\"%s\">: give a value or an expression (or action=\"remove\")",
                          h->name);
        return NULL;
    }
    if (!h->remove && expression != NULL && (h->expr = cmi_compile_expr(cc, node, "expression", expression)) == NULL)
        return NULL;
    if (h->value != NULL && strpbrk(h->value, "\r\n") != NULL) {
        cmi_compile_error(cc, node, "<header name=\"%s\">: a header value may not contain line breaks", h->name);
        return NULL;
    }
    h->name_len = strlen(h->name);
    h->value_len = h->value ? strlen(h->value) : 0;
    cmi_xml_no_children(cc, node);
    return errors ? NULL : &h->base;
}
