/* <log>: one log line per message.
 *
 * MI 4.4 form: <log category="INFO"><message>text</message>
 *              <property name="k" value="v"/></log>
 * Legacy form: <log level="simple|full|headers|custom" separator=", ">.
 * Without <message> and level, the level is "simple", as in MI. */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/log.h"
#include "core/str.h"
#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/msg.h"

typedef enum { DETAIL_SIMPLE, DETAIL_FULL, DETAIL_HEADERS, DETAIL_CUSTOM } log_detail_t;

typedef struct {
    const char *name;
    const char *value;       /* literal, or */
    const cmi_expr_t *expr;  /* an expression */
} log_prop_t;

typedef struct {
    cmi_mediator_t base;
    cmi_log_level_t level;
    log_detail_t detail;
    const cmi_template_t *message; /* NULL: none */
    const char *separator;
    log_prop_t *props;
    size_t nprops;
    int with_message_id;
} log_mediator_t;

static void append_simple(cmi_strbuf_t *b, cmi_msg_t *msg, const char *sep)
{
    cmi_strbuf_printf(b, "To: %s%sMessageID: %s%sDirection: request", msg->request_uri ? msg->request_uri : "",
                      sep, msg->id, sep);
}

static void append_headers(cmi_strbuf_t *b, cmi_msg_t *msg, const char *sep)
{
    for (size_t i = 0; i < msg->headers.count; i++) {
        const cmi_header_t *h = &msg->headers.items[i];
        /* Credentials are never logged, whatever the level: nor a bearer
         * token in a header of another name (a JWT handler's jwtHeader). */
        int secret = cmi_str_caseeqn(h->name, h->name_len, "authorization", 13) ||
                     cmi_str_caseeqn(h->name, h->name_len, "proxy-authorization", 19) ||
                     cmi_str_caseeqn(h->name, h->name_len, "cookie", 6) ||
                     (h->value_len > 7 && cmi_str_caseeqn(h->value, 7, "bearer ", 7));
        cmi_strbuf_printf(b, "%s%.*s = %.*s", sep, (int)h->name_len, h->name, secret ? 5 : (int)h->value_len,
                          secret ? "*****" : h->value);
    }
}

static int run_log(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const log_mediator_t *lm = (const log_mediator_t *)m;
    if (!cmi_log_enabled(lm->level))
        return CMI_FLOW_CONTINUE;
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, msg->arena, 256);
    const char *sep = lm->separator;
    if (lm->with_message_id)
        cmi_strbuf_printf(&b, "MessageID: %s%s", msg->id, sep);
    if (lm->message != NULL) {
        if (cmi_template_render(lm->message, msg, NULL, 0, &b) != 0)
            return CMI_FLOW_ERROR;
    } else if (lm->detail != DETAIL_CUSTOM) {
        append_simple(&b, msg, sep);
    }
    if (lm->detail == DETAIL_HEADERS)
        append_headers(&b, msg, sep);
    for (size_t i = 0; i < lm->nprops; i++) {
        const char *value = lm->props[i].value;
        size_t len = value ? strlen(value) : 0;
        if (lm->props[i].expr != NULL && cmi_expr_eval_text(lm->props[i].expr, msg, &value, &len) != 0)
            return CMI_FLOW_ERROR;
        cmi_strbuf_printf(&b, "%s%s = %.*s", b.len ? sep : "", lm->props[i].name, (int)len, value);
    }
    if (lm->detail == DETAIL_FULL) {
        size_t len;
        const char *body = cmi_msg_payload_bytes(msg, &len);
        cmi_strbuf_printf(&b, "%sPayload: %.*s", sep, (int)len, body);
    }
    const char *component = msg->api ? cmi_arena_sprintf(msg->arena, "%s:%s", msg->api->proxy ? "proxy" : "api", msg->api->name) : "mediation";
    cmi_log_write(lm->level, component, "%s", b.data);
    return CMI_FLOW_CONTINUE;
}

static const cmi_attr_rule_t attrs[] = {
    {"category", CMI_ATTR_OK},
    {"level", CMI_ATTR_OK},
    {"separator", CMI_ATTR_OK},
    {"logMessageID", CMI_ATTR_OK},
    {"logFullPayload", CMI_ATTR_OK},
    {NULL, 0},
};

static const cmi_attr_rule_t prop_attrs[] = {
    {"name", CMI_ATTR_OK},
    {"value", CMI_ATTR_OK},
    {"expression", CMI_ATTR_OK},
    {NULL, 0},
};

static int parse_category(cmi_compile_t *cc, xmlNodePtr node, const char *s, cmi_log_level_t *out)
{
    static const struct {
        const char *name;
        cmi_log_level_t level;
    } cats[] = {{"TRACE", CMI_LOG_TRACE}, {"DEBUG", CMI_LOG_DEBUG}, {"INFO", CMI_LOG_INFO},
                {"WARN", CMI_LOG_WARN},   {"ERROR", CMI_LOG_ERROR}, {"FATAL", CMI_LOG_FATAL}};
    for (size_t i = 0; i < sizeof(cats) / sizeof(cats[0]); i++)
        if (strcasecmp(s, cats[i].name) == 0) {
            *out = cats[i].level;
            return 0;
        }
    cmi_compile_error(cc, node, "<log>: unknown category '%s' (TRACE, DEBUG, INFO, WARN, ERROR or FATAL)", s);
    return -1;
}

static int parse_level(cmi_compile_t *cc, xmlNodePtr node, const char *s, log_detail_t *out)
{
    static const char *const names[] = {"simple", "full", "headers", "custom"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0) {
            *out = (log_detail_t)i;
            return 0;
        }
    cmi_compile_error(cc, node, "<log>: unknown level '%s' (simple, full, headers or custom)", s);
    return -1;
}

static int compile_children(cmi_compile_t *cc, xmlNodePtr node, log_mediator_t *lm)
{
    size_t n = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        n += cmi_xml_is(c, "property");
    lm->props = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*lm->props));
    int errors = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "message")) {
            lm->message = cmi_compile_template(cc, c, NULL, cmi_xml_text(cc, c), CMI_TEMPLATE_TEXT, 0);
            errors += lm->message == NULL;
        } else if (cmi_xml_is(c, "property")) {
            errors += cmi_xml_check_attrs(cc, c, prop_attrs, NULL);
            log_prop_t *p = &lm->props[lm->nprops];
            p->name = cmi_xml_attr(cc, c, "name");
            p->value = cmi_xml_attr(cc, c, "value");
            const char *expression = cmi_xml_attr(cc, c, "expression");
            if (p->name == NULL || (p->value == NULL) == (expression == NULL)) {
                cmi_compile_error(cc, c, "<log>: <property> needs a name and a value or an expression");
                errors++;
                continue;
            }
            if (expression != NULL && (p->expr = cmi_compile_expr(cc, c, "expression", expression)) == NULL) {
                errors++;
                continue;
            }
            lm->nprops++;
        } else {
            cmi_compile_error(cc, c, "<log>: unexpected element <%s>", c->name);
            errors++;
        }
    }
    return errors;
}

cmi_mediator_t *cmi_compile_log(cmi_compile_t *cc, xmlNodePtr node)
{
    int errors = cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs);
    log_mediator_t *lm = cmi_mediator_new(cc, node, sizeof(*lm), run_log);
    lm->level = CMI_LOG_INFO;
    lm->separator = ", ";
    const char *cat = cmi_xml_attr(cc, node, "category");
    const char *level = cmi_xml_attr(cc, node, "level");
    const char *sep = cmi_xml_attr(cc, node, "separator");
    const char *msgid = cmi_xml_attr(cc, node, "logMessageID");
    const char *full = cmi_xml_attr(cc, node, "logFullPayload");
    if (cat != NULL && parse_category(cc, node, cat, &lm->level) != 0)
        errors++;
    if (sep != NULL)
        lm->separator = sep;
    lm->with_message_id = msgid != NULL && strcasecmp(msgid, "true") == 0;
    errors += compile_children(cc, node, lm);
    /* Without a level: simple, unless a <message> says what to log. */
    lm->detail = lm->message != NULL ? DETAIL_CUSTOM : DETAIL_SIMPLE;
    if (level != NULL && parse_level(cc, node, level, &lm->detail) != 0)
        errors++;
    if (full != NULL && strcasecmp(full, "true") == 0)
        lm->detail = DETAIL_FULL;
    return errors ? NULL : &lm->base;
}
