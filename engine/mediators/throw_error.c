/* <throwError type="T" errorMessage="text|{expr}"/> (MI 4.4): fails the
 * flow on purpose; the fault handler sees ERROR_CODE = T (a string; "ANY"
 * when not given) and ERROR_MESSAGE = the message, as Synapse's ThrowError. */
#include "config.h"

#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

typedef struct {
    cmi_mediator_t base;
    const char *type;
    const char *message;    /* literal */
    const cmi_expr_t *expr; /* or an expression */
} throw_error_t;

static int run_throw_error(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const throw_error_t *t = (const throw_error_t *)m;
    const char *text = t->message;
    size_t len;
    if (t->expr != NULL && cmi_expr_eval_text(t->expr, msg, &text, &len) != 0)
        return CMI_FLOW_ERROR;
    cmi_msg_set_error(msg, CMI_ERR_MEDIATION, text, NULL);
    msg->error_type = t->type;
    return CMI_FLOW_ERROR;
}

static const cmi_attr_rule_t attrs[] = {
    {"type", CMI_ATTR_OK},
    {"errorMessage", CMI_ATTR_OK},
    {NULL, 0},
};

cmi_mediator_t *cmi_compile_throw_error(cmi_compile_t *cc, xmlNodePtr node)
{
    if (cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs) || cmi_xml_no_children(cc, node))
        return NULL;
    throw_error_t *t = cmi_mediator_new(cc, node, sizeof(*t), run_throw_error);
    t->type = cmi_xml_attr(cc, node, "type");
    if (t->type == NULL || *t->type == '\0')
        t->type = "ANY"; /* Synapse's DEFAULT_ERROR_TYPE */
    const char *message = cmi_xml_attr(cc, node, "errorMessage");
    if (message == NULL || *message == '\0') {
        t->message = "Error occurred in the mediation flow";
        return &t->base;
    }
    int lazy;
    if (cmi_compile_value_attr(cc, node, "errorMessage", message, &t->expr, &lazy) != 0)
        return NULL;
    t->message = message;
    return &t->base;
}
