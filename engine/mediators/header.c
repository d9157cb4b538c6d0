/* <header name value|expression scope action>: set or remove a header.
 *
 * scope="transport": an HTTP header; set here, it goes out with the
 * response.  The default scope is SOAP's, as in MI: the WS-Addressing
 * names To, From, Action, FaultTo, ReplyTo and RelatesTo set the message's
 * addressing properties (get-property('To')); any other name must be a
 * qualified name (prefix:local, its namespace declared in the artifact) and
 * adds or removes a header block in the SOAP envelope; inline XML children
 * are blocks to add.  A payload that is not a SOAP envelope has no header
 * to change: as in MI, where such a block never reaches a REST caller,
 * nothing happens (a debug line says so). */
#include "config.h"

#include <libxml/parser.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/str.h"
#include "expr/expr.h"
#include "mediators/registry.h"
#include "runtime/convert.h"
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
    int soap;             /* default scope */
    int addressing;       /* one of the WS-Addressing names */
    const char *ns_href;  /* a qualified SOAP header's namespace */
    const char *ns_prefix;
    const char *local;
    const char *blocks;   /* inline XML header blocks, serialised */
} header_mediator_t;

static const char *const addressing_names[] = {"To", "From", "Action", "FaultTo", "ReplyTo", "RelatesTo", NULL};

static xmlNodePtr soap_header(xmlNodePtr env, int create)
{
    xmlNodePtr body = NULL;
    for (xmlNodePtr c = env->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (strcmp((const char *)c->name, "Header") == 0)
            return c;
        if (strcmp((const char *)c->name, "Body") == 0)
            body = c;
    }
    if (!create)
        return NULL;
    xmlNodePtr header = xmlNewDocNode(env->doc, env->ns, (const xmlChar *)"Header", NULL);
    return body != NULL ? xmlAddPrevSibling(body, header) : xmlAddChild(env, header);
}

/* A computed value that is XML (a property of type OM): the element is the
 * header block when it has the header's name, else it goes inside the
 * block (MI's docs; Synapse itself would add its serialisation as text). */
static void add_xml_block(const header_mediator_t *h, xmlNodePtr header, xmlNodePtr block, const char *xml,
                          size_t len)
{
    xmlNodePtr list = NULL;
    if (xmlParseInNodeContext(header, xml, (int)len, 0, &list) != XML_ERR_OK) {
        xmlFreeNodeList(list);
        xmlNodeAddContentLen(block, (const xmlChar *)xml, (int)len);
        xmlAddChild(header, block);
        return;
    }
    if (list != NULL && list->next == NULL && list->type == XML_ELEMENT_NODE &&
        strcmp((const char *)list->name, h->local) == 0 &&
        (h->ns_href == NULL ? list->ns == NULL : list->ns != NULL && strcmp((const char *)list->ns->href, h->ns_href) == 0)) {
        xmlFreeNode(block);
        xmlAddChild(header, list);
        return;
    }
    for (xmlNodePtr c = list, next; c != NULL; c = next) {
        next = c->next;
        xmlAddChild(block, c);
    }
    xmlAddChild(header, block);
}

static int run_soap_header(const header_mediator_t *h, cmi_msg_t *msg, const char *value, size_t len, int xml)
{
    if (h->addressing) {
        if (h->remove)
            cmi_msg_prop_remove(msg, CMI_SCOPE_DEFAULT, h->name);
        else
            cmi_msg_prop_set(msg, CMI_SCOPE_DEFAULT, h->name, cmi_value_string(value, len));
        if (strcmp(h->name, "To") == 0)
            msg->to_anonymous = h->remove;
        return CMI_FLOW_CONTINUE;
    }
    xmlDocPtr doc = msg->payload.kind == CMI_PAYLOAD_XML ? cmi_msg_payload_xml(msg, NULL) : NULL;
    xmlNodePtr env = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!cmi_soap_is_envelope(env)) {
        cmi_log_debug("mediation", "<header> at %s:%d: the payload is not a SOAP envelope; no SOAP header changed",
                      h->base.file, h->base.line);
        return CMI_FLOW_CONTINUE;
    }
    xmlNodePtr header = soap_header(env, !h->remove);
    if (h->remove) {
        for (xmlNodePtr c = header ? header->children : NULL, next; c != NULL; c = next) {
            next = c->next;
            if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, h->local) == 0 &&
                (h->ns_href == NULL ? c->ns == NULL
                                    : c->ns != NULL && strcmp((const char *)c->ns->href, h->ns_href) == 0)) {
                xmlUnlinkNode(c);
                xmlFreeNode(c);
            }
        }
    } else if (h->blocks != NULL) {
        xmlNodePtr list = NULL;
        if (xmlParseInNodeContext(header, h->blocks, (int)strlen(h->blocks), 0, &list) == XML_ERR_OK)
            for (xmlNodePtr c = list, next; c != NULL; c = next) {
                next = c->next;
                xmlAddChild(header, c);
            }
        else
            xmlFreeNodeList(list);
    } else {
        xmlNodePtr block = xmlNewDocNode(doc, NULL, (const xmlChar *)h->local, NULL);
        xmlSetNs(block, xmlNewNs(block, (const xmlChar *)h->ns_href, (const xmlChar *)h->ns_prefix));
        if (xml) {
            add_xml_block(h, header, block, value, len);
        } else {
            xmlNodeAddContentLen(block, (const xmlChar *)value, (int)len);
            xmlAddChild(header, block);
        }
    }
    cmi_msg_payload_xml_changed(msg);
    return CMI_FLOW_CONTINUE;
}

static int run_header(const cmi_mediator_t *m, cmi_msg_t *msg)
{
    const header_mediator_t *h = (const header_mediator_t *)m;
    const char *value = h->value;
    size_t len = h->value_len;
    int xml = 0;
    if (h->expr != NULL && !h->remove) {
        cmi_value_t v;
        if (cmi_expr_eval(h->expr, msg, &v) != 0)
            return CMI_FLOW_ERROR;
        xml = v.type == CMI_VAL_XML;
        value = cmi_value_to_text(msg->arena, &v, &len);
    }
    if (h->soap)
        return run_soap_header(h, msg, value ? value : "", value ? len : 0, xml);
    if (h->remove) {
        cmi_msg_header_remove(msg, h->name, h->name_len);
        return CMI_FLOW_CONTINUE;
    }
    if (h->expr != NULL) {
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

/* The default (SOAP) scope: a WS-Addressing name, a qualified name, or
 * inline blocks. */
/* value= or expression= (one of them, unless the header is removed). */
static int compile_value(cmi_compile_t *cc, xmlNodePtr node, header_mediator_t *h, const char *expression)
{
    if (h->remove)
        return 0;
    if ((h->value == NULL) == (expression == NULL)) {
        cmi_compile_error(cc, node, "<header name=\"%s\">: give a value or an expression (or action=\"remove\")",
                          h->name);
        return -1;
    }
    if (expression != NULL && (h->expr = cmi_compile_expr(cc, node, "expression", expression)) == NULL)
        return -1;
    return 0;
}

static cmi_mediator_t *compile_soap(cmi_compile_t *cc, xmlNodePtr node, header_mediator_t *h, const char *action)
{
    h->soap = 1;
    h->remove = action != NULL && strcmp(action, "remove") == 0;
    const char *expression = cmi_xml_attr(cc, node, "expression");
    xmlNodePtr first = NULL;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && first == NULL)
            first = c;
    if (h->name == NULL || *h->name == '\0') {
        if (first == NULL || h->remove) {
            cmi_compile_error(cc, node, "<header>: give a name, or SOAP header blocks inside");
            return NULL;
        }
        cmi_strbuf_t b;
        cmi_strbuf_init(&b, cc->arena, 256);
        for (xmlNodePtr c = first; c != NULL; c = c->next) {
            if (c->type != XML_ELEMENT_NODE)
                continue;
            /* each block stands alone, its namespaces declared on it */
            xmlDocPtr tmp = xmlNewDoc((const xmlChar *)"1.0");
            xmlNodePtr copy = cmi_xml_clone(c, tmp, NULL);
            xmlBufferPtr buf = xmlBufferCreate();
            xmlNodeDump(buf, tmp, copy, 0, 0);
            cmi_strbuf_append(&b, (const char *)xmlBufferContent(buf), (size_t)xmlBufferLength(buf));
            xmlBufferFree(buf);
            xmlFreeDoc(tmp);
        }
        h->blocks = b.data;
        h->local = "";
        return &h->base;
    }
    for (const char *const *a = addressing_names; *a; a++)
        if (strcmp(*a, h->name) == 0)
            h->addressing = 1;
    if (!h->addressing) {
        const char *colon = strchr(h->name, ':');
        if (colon == NULL) {
            cmi_compile_error(cc, node, "<header name=\"%s\">: a SOAP header must be namespace qualified (prefix:name); "
                                        "for an HTTP header use scope=\"transport\"", h->name);
            return NULL;
        }
        h->ns_prefix = cmi_arena_strndup(cc->arena, h->name, (size_t)(colon - h->name));
        h->local = colon + 1;
        xmlNsPtr ns = xmlSearchNs(node->doc, node, (const xmlChar *)h->ns_prefix);
        if (ns == NULL) {
            cmi_compile_error(cc, node, "<header name=\"%s\">: the prefix '%s' is not declared", h->name, h->ns_prefix);
            return NULL;
        }
        h->ns_href = cmi_arena_strdup(cc->arena, (const char *)ns->href);
    }
    if (compile_value(cc, node, h, expression) != 0)
        return NULL;
    h->value_len = h->value ? strlen(h->value) : 0;
    return &h->base;
}

cmi_mediator_t *cmi_compile_header(cmi_compile_t *cc, xmlNodePtr node)
{
    int errors = cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, attrs);
    header_mediator_t *h = cmi_mediator_new(cc, node, sizeof(*h), run_header);
    h->name = cmi_xml_attr(cc, node, "name");
    h->value = cmi_xml_attr(cc, node, "value");
    const char *scope = cmi_xml_attr(cc, node, "scope");
    const char *action = cmi_xml_attr(cc, node, "action");
    if (action != NULL && strcmp(action, "set") != 0 && strcmp(action, "remove") != 0) {
        cmi_compile_error(cc, node, "<header>: action must be 'set' or 'remove', not '%s'", action);
        return NULL;
    }
    if (scope == NULL || strcmp(scope, "default") == 0)
        return errors ? NULL : compile_soap(cc, node, h, action);
    if (h->name == NULL || *h->name == '\0') {
        cmi_compile_error(cc, node, "<header>: the name attribute is required");
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
    h->remove = action != NULL && strcmp(action, "remove") == 0;
    const char *expression = cmi_xml_attr(cc, node, "expression");
    if (compile_value(cc, node, h, expression) != 0)
        return NULL;
    if (h->value != NULL && strpbrk(h->value, "\r\n") != NULL) {
        cmi_compile_error(cc, node, "<header name=\"%s\">: a header value may not contain line breaks", h->name);
        return NULL;
    }
    h->name_len = strlen(h->name);
    h->value_len = h->value ? strlen(h->value) : 0;
    if (!h->remove && cmi_header_is_framing(h->name, h->name_len) && strcasecmp(h->name, "Content-Type") != 0)
        cmi_compile_warn(cc, node, "<header name=\"%s\">: the HTTP layer writes this header; the value set here is not "
                                   "sent", h->name);
    cmi_xml_no_children(cc, node);
    return errors ? NULL : &h->base;
}
