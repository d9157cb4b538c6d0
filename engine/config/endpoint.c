/* Compiling an <endpoint> (config/endpoint.h): its target, timeout,
 * suspendOnFailure and markForSuspension, or a group of leaves. */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/endpoint.h"
#include "expr/expr.h"

static const cmi_attr_rule_t endpoint_attrs[] = {
    {"name", CMI_ATTR_OK},
    {"key", CMI_ATTR_OK},
    {"xmlns", CMI_ATTR_OK},
    {"onError", CMI_ATTR_UNSUPPORTED},
    {"template", CMI_ATTR_OK},
    {"key-expression", CMI_ATTR_UNSUPPORTED}, /* only directly in <call>, <send> (mediators/call.c) */
    {"uri", CMI_ATTR_UNSUPPORTED}, /* only with template (config/template.c) */
    {"statistics", CMI_ATTR_COSMETIC},
    {"trace", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

static const cmi_attr_rule_t http_attrs[] = {
    {"method", CMI_ATTR_OK},
    {"uri-template", CMI_ATTR_OK},
    {"statistics", CMI_ATTR_COSMETIC},
    {"trace", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

static const cmi_attr_rule_t address_attrs[] = {
    {"uri", CMI_ATTR_OK},
    {"format", CMI_ATTR_OK},
    {"optimize", CMI_ATTR_UNSUPPORTED},
    {"encoding", CMI_ATTR_UNSUPPORTED},
    {"statistics", CMI_ATTR_COSMETIC},
    {"trace", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

/* <timeout><duration>ms</duration><responseAction>fault|discard|never</responseAction></timeout> */
static int compile_timeout(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *text = cmi_xml_text(cc, c);
        size_t n = text ? strlen(text) : 0;
        if (cmi_xml_is(c, "duration") && n > 2 && text[0] == '{' && text[n - 1] == '}') {
            /* Synapse compiles what is between the braces as XPath only. */
            ep->timeout_expr = cmi_compile_expr(cc, c, NULL, cmi_arena_strndup(cc->arena, text + 1, n - 2));
            if (ep->timeout_expr == NULL)
                return -1;
            ep->timeout_warned = cmi_arena_calloc(cc->arena, 1, sizeof(*ep->timeout_warned));
            atomic_flag_clear(ep->timeout_warned);
            if (!cmi_expr_is_xpath(ep->timeout_expr)) {
                cmi_compile_error(cc, c, "<timeout><duration>: {...} takes an XPath (get-property(...)), as in MI");
                return -1;
            }
        } else if (cmi_xml_is(c, "duration")) {
            if (text == NULL || cmi_parse_uint(cmi_compile_trim(cc, text, NULL), 86400000, &ep->timeout_ms) != 0) {
                cmi_compile_error(cc, c, "<timeout><duration>: expected milliseconds, got '%s'", text ? text : "");
                return -1;
            }
        } else if (cmi_xml_is(c, "responseAction")) {
            const char *action = cmi_compile_trim(cc, text ? text : "", NULL);
            if (strcasecmp(action, "discard") == 0) {
                ep->discard_on_timeout = 1;
            } else if (strcasecmp(action, "fault") != 0) { /* Synapse refuses any other (never, too) */
                cmi_compile_error(cc, c, "<timeout><responseAction>%s: expected fault or discard", action);
                return -1;
            }
        } else {
            cmi_compile_error(cc, c, "<timeout>: unexpected element <%s>", c->name);
            return -1;
        }
    }
    return 0;
}

/* "101503, 101504": error codes; -1 means none. */
static int parse_codes(cmi_compile_t *cc, xmlNodePtr node, const char *text, int *codes, size_t *n)
{
    *n = 0;
    for (const char *p = text; p != NULL && *p;) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',' && *end != ' ' && *end != '\n' && *end != '\t')) {
            cmi_compile_error(cc, node, "<%s>: '%s' is not a comma-separated list of error codes", node->name, text);
            return -1;
        }
        if (v != -1) {
            if (*n == 16) {
                cmi_compile_error(cc, node, "<%s>: at most 16 codes", node->name);
                return -1;
            }
            codes[(*n)++] = (int)v;
        }
        p = end;
    }
    return 0;
}

/* <retryConfig><disabledErrorCodes>..</disabledErrorCodes><enabledErrorCodes>..</enabledErrorCodes> */
static int compile_retry(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        int rc;
        if (cmi_xml_is(c, "disabledErrorCodes"))
            rc = parse_codes(cc, c, cmi_xml_text(cc, c), ep->retry_disabled, &ep->nretry_disabled);
        else if (cmi_xml_is(c, "enabledErrorCodes"))
            rc = parse_codes(cc, c, cmi_xml_text(cc, c), ep->retry_enabled, &ep->nretry_enabled);
        else {
            cmi_compile_error(cc, c, "<retryConfig>: unexpected element <%s>", c->name);
            rc = -1;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int uint_child(cmi_compile_t *cc, xmlNodePtr c, uint64_t max, uint64_t *out)
{
    const char *text = cmi_xml_text(cc, c);
    if (text == NULL || cmi_parse_uint(text, max, out) != 0) {
        cmi_compile_error(cc, c, "<%s>: expected a whole number, got '%s'", c->name, text ? text : "");
        return -1;
    }
    return 0;
}

static int compile_suspension(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    int suspend = cmi_xml_is(node, "suspendOnFailure");
    if (suspend) {
        ep->suspend_on = 1;
        ep->initial_ms = 30000; /* Synapse's default */
        ep->factor = 1.0;
        ep->max_ms = 86400000;
    }
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *text = cmi_xml_text(cc, c);
        if (cmi_xml_is(c, "errorCodes")) {
            if (parse_codes(cc, c, text, suspend ? ep->suspend_codes : ep->mark_codes,
                            suspend ? &ep->nsuspend_codes : &ep->nmark_codes) != 0)
                return -1;
            if (suspend && ep->nsuspend_codes == 0 && text != NULL && strstr(text, "-1") != NULL)
                ep->suspend_on = 0; /* MI: -1 alone, no code suspends the endpoint */
        } else if (suspend && cmi_xml_is(c, "initialDuration")) {
            if (text != NULL && strcmp(text, "-1") == 0)
                ep->suspend_on = 0; /* MI: no suspension */
            else if (uint_child(cc, c, 86400000, &ep->initial_ms) != 0)
                return -1;
        } else if (suspend && cmi_xml_is(c, "maximumDuration")) {
            if (uint_child(cc, c, 86400000000ull, &ep->max_ms) != 0)
                return -1;
        } else if (suspend && cmi_xml_is(c, "progressionFactor")) {
            char *end;
            ep->factor = text ? strtod(text, &end) : 0;
            if (text == NULL || *end != '\0' || !(ep->factor >= 1.0) || ep->factor > 100) {
                cmi_compile_error(cc, c, "<progressionFactor>: expected a number from 1 to 100, got '%s'",
                                  text ? text : "");
                return -1;
            }
        } else if (!suspend && cmi_xml_is(c, "retriesBeforeSuspension")) {
            uint64_t v;
            if (uint_child(cc, c, 1000000, &v) != 0)
                return -1;
            ep->retries_before = (int64_t)v;
        } else if (!suspend && cmi_xml_is(c, "retryDelay")) {
            if (uint_child(cc, c, 86400000, &ep->retry_delay_ms) != 0)
                return -1;
        } else {
            cmi_compile_error(cc, c, "<%s>: unexpected element <%s>", node->name, c->name);
            return -1;
        }
    }
    return 0;
}

/* <address format>: the type the request is written as (MI's message
 * formatters: SOAP envelopes in or out, JSON <-> XML); rest: as it is. */
static int compile_format(cmi_compile_t *cc, xmlNodePtr node, const char *format, cmi_endpoint_t *ep)
{
    static const struct {
        const char *name, *type;
    } formats[] = {{"soap11", "text/xml"}, {"soap12", "application/soap+xml"}, {"pox", "application/xml"},
                   {"json", "application/json"}, {"rest", NULL}, {"leave-as-is", NULL}};
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
        if (strcmp(format, formats[i].name) == 0) {
            ep->format_type = formats[i].type;
            return 0;
        }
    cmi_compile_error(cc, node, "<address format=\"%s\">: %s", format,
                      strcmp(format, "get") == 0 ? "format get is not supported by cmi yet"
                                                 : "expected soap11, soap12, pox, json, rest or leave-as-is");
    return -1;
}

/* A leaf's <timeout>, <suspendOnFailure>, <markForSuspension>, <retryConfig>. */
static int compile_leaf_children(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "timeout")) {
            if (compile_timeout(cc, c, ep) != 0)
                return -1;
        } else if (cmi_xml_is(c, "suspendOnFailure") || cmi_xml_is(c, "markForSuspension")) {
            if (compile_suspension(cc, c, ep) != 0)
                return -1;
        } else if (cmi_xml_is(c, "retryConfig")) {
            if (compile_retry(cc, c, ep) != 0)
                return -1;
        } else if (cmi_xml_is(c, "enableAddressing")) {
            cmi_compile_warn(cc, c, "<%s><enableAddressing>: cmi does not add WS-Addressing headers to the request "
                             "(SOAPAction and the payload's own headers go as they are)", node->name);
        } else if (cmi_xml_is(c, "enableSec") || cmi_xml_is(c, "enableRM") || cmi_xml_is(c, "authentication")) {
            cmi_compile_error(cc, c, "<%s><%s>: not supported by cmi yet", node->name, c->name);
            return -1;
        } else {
            cmi_compile_error(cc, c, "<%s>: unexpected element <%s>", node->name, c->name);
            return -1;
        }
    }
    return 0;
}

static int compile_target(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    int http = cmi_xml_is(node, "http");
    if (cmi_xml_check_attrs(cc, node, http ? http_attrs : address_attrs, NULL))
        return -1;
    const char *uri = cmi_xml_attr(cc, node, http ? "uri-template" : "uri");
    if (uri == NULL || *uri == '\0') {
        cmi_compile_error(cc, node, "<%s>: the %s attribute is required", node->name, http ? "uri-template" : "uri");
        return -1;
    }
    if (strncmp(uri, "http://", 7) != 0 && strncmp(uri, "https://", 8) != 0 && strncmp(uri, "{", 1) != 0 &&
        strncmp(uri, "$", 1) != 0) {
        cmi_compile_error(cc, node, "<%s>: '%s' is not an http:// or https:// URL", node->name, uri);
        return -1;
    }
    cmi_expr_error_t e;
    ep->uri = cmi_template_compile(cc->arena, uri, CMI_TEMPLATE_TEXT, 0, &e);
    if (ep->uri == NULL) {
        cmi_compile_report_expr_error(cc, node, http ? "uri-template" : "uri", uri, &e);
        return -1;
    }
    ep->address = !http;
    const char *format = http ? NULL : cmi_xml_attr(cc, node, "format");
    if (format != NULL && compile_format(cc, node, format, ep) != 0)
        return -1;
    if (http) {
        const char *method = cmi_xml_attr(cc, node, "method");
        if (method != NULL && *method != '\0') {
            static const char *const methods[] = {"get", "post", "put", "delete", "patch", "head", "options", NULL};
            const char *const *m = methods;
            while (*m != NULL && strcasecmp(*m, method) != 0)
                m++;
            if (*m == NULL) {
                cmi_compile_error(cc, node, "<http>: method '%s' is not one of GET, POST, PUT, DELETE, PATCH, HEAD, "
                                  "OPTIONS", method);
                return -1;
            }
            char *up = cmi_arena_strdup(cc->arena, method);
            for (char *p = up; *p; p++)
                *p = (char)toupper((unsigned char)*p);
            ep->method = up;
        }
    }
    return compile_leaf_children(cc, node, ep);
}

static const cmi_attr_rule_t default_attrs[] = {
    {"format", CMI_ATTR_OK},
    {"optimize", CMI_ATTR_UNSUPPORTED},
    {"encoding", CMI_ATTR_UNSUPPORTED},
    {"statistics", CMI_ATTR_COSMETIC},
    {"trace", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

/* <default>: MI's default endpoint, a service at the message's To address
 * (which the flow must have set: mediators/call.c). */
static int compile_default(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    if (cmi_xml_check_attrs(cc, node, default_attrs, NULL))
        return -1;
    ep->to_address = 1;
    ep->address = 1;
    const char *format = cmi_xml_attr(cc, node, "format");
    if (format != NULL && compile_format(cc, node, format, ep) != 0)
        return -1;
    return compile_leaf_children(cc, node, ep);
}

/* <session type="simpleClientSession">: Synapse's client session, a client
 * ID sent as the SOAP header <syn:ClientID>; without one the group
 * balances as usual.  http (cookie) and soap sessions are not supported. */
static int compile_session(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    static const cmi_attr_rule_t attrs[] = {{"type", CMI_ATTR_OK}, {NULL, 0}};
    if (cmi_xml_check_attrs(cc, node, attrs, NULL))
        return -1;
    const char *type = cmi_xml_attr(cc, node, "type");
    if (type == NULL || strcmp(type, "simpleClientSession") != 0) {
        cmi_compile_error(cc, node, "<session type=\"%s\">: only simpleClientSession is supported by cmi yet",
                          type ? type : "");
        return -1;
    }
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        if (cmi_xml_is(c, "sessionTimeout"))
            cmi_compile_warn(cc, c, "<session><sessionTimeout>: a client keeps its endpoint while that endpoint is "
                             "ready (cmi keeps no session table to expire)");
        else if (c->type == XML_ELEMENT_NODE) {
            cmi_compile_error(cc, c, "<session>: unexpected element <%s>", c->name);
            return -1;
        }
    ep->client_session = 1;
    return 0;
}

static const cmi_attr_rule_t group_attrs[] = {
    {"algorithm", CMI_ATTR_OK},
    {"failover", CMI_ATTR_OK},
    {"policy", CMI_ATTR_UNSUPPORTED},
    {"dynamic", CMI_ATTR_UNSUPPORTED},
    {"buildMessage", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

/* <failover> or <loadbalance>: leaves, inline or by key. */
static int compile_group(cmi_compile_t *cc, xmlNodePtr node, cmi_endpoint_t *ep)
{
    if (cmi_xml_check_attrs(cc, node, group_attrs, NULL))
        return -1;
    ep->kind = cmi_xml_is(node, "failover") ? CMI_EP_FAILOVER : CMI_EP_LOADBALANCE;
    const char *alg = cmi_xml_attr(cc, node, "algorithm");
    if (alg != NULL && strcmp(alg, "org.apache.synapse.endpoints.algorithms.RoundRobin") != 0) {
        cmi_compile_error(cc, node, "<loadbalance algorithm=\"%s\">: only RoundRobin is supported by cmi yet", alg);
        return -1;
    }
    const char *fo = cmi_xml_attr(cc, node, "failover");
    ep->lb_failover = fo == NULL || strcmp(fo, "false") != 0;
    ep->next_child = cmi_arena_calloc(cc->arena, 1, sizeof(*ep->next_child));
    size_t n = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        n += c->type == XML_ELEMENT_NODE;
    ep->children = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*ep->children));
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (!cmi_xml_is(c, "endpoint")) {
            cmi_compile_error(cc, c, "<%s>: unexpected element <%s>", node->name, c->name);
            return -1;
        }
        const char *key = cmi_xml_attr(cc, c, "key");
        cmi_endpoint_t *child = NULL;
        if (key != NULL && *key != '\0') {
            child = cmi_htab_gets(&cc->config->endpoints, key);
            if (child == NULL) {
                cmi_compile_error(cc, c, "<endpoint key=\"%s\">: no endpoint of that name in endpoints/ (a group "
                                  "names endpoints of files that sort before its own)", key);
                return -1;
            }
        } else if ((child = cmi_compile_endpoint(cc, c)) == NULL) {
            return -1;
        }
        if (child->kind != CMI_EP_LEAF) {
            cmi_compile_error(cc, c, "<%s>: a group inside a group is not supported by cmi yet", node->name);
            return -1;
        }
        ep->children[ep->nchildren++] = child;
    }
    if (ep->nchildren == 0) {
        cmi_compile_error(cc, node, "<%s>: give at least one <endpoint>", node->name);
        return -1;
    }
    return 0;
}

cmi_endpoint_t *cmi_compile_endpoint(cmi_compile_t *cc, xmlNodePtr node)
{
    const char *tname = cmi_xml_attr(cc, node, "template");
    if (tname != NULL)
        return cmi_compile_template_endpoint(cc, node, tname);
    if (cmi_xml_check_attrs(cc, node, endpoint_attrs, NULL))
        return NULL;
    cmi_endpoint_t *ep = cmi_arena_calloc(cc->arena, 1, sizeof(*ep));
    ep->name = cmi_xml_attr(cc, node, "name");
    ep->where = cmi_arena_sprintf(cc->arena, "%s:%d", cc->file, cmi_xml_line(node));
    int targets = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "http") || cmi_xml_is(c, "address") || cmi_xml_is(c, "default")) {
            if (targets++ > 0) {
                cmi_compile_error(cc, c, "<endpoint>: more than one target");
                return NULL;
            }
            if ((cmi_xml_is(c, "default") ? compile_default(cc, c, ep) : compile_target(cc, c, ep)) != 0)
                return NULL;
        } else if (cmi_xml_is(c, "loadbalance") || cmi_xml_is(c, "failover")) {
            if (targets++ > 0) {
                cmi_compile_error(cc, c, "<endpoint>: more than one target");
                return NULL;
            }
            if (compile_group(cc, c, ep) != 0)
                return NULL;
        } else if (cmi_xml_is(c, "session")) {
            if (compile_session(cc, c, ep) != 0)
                return NULL;
        } else if (cmi_xml_is(c, "wsdl") || cmi_xml_is(c, "recipientlist") || cmi_xml_is(c, "property") ||
                   cmi_xml_is(c, "parameter") || cmi_xml_is(c, "description")) {
            if (cmi_xml_is(c, "description"))
                continue;
            cmi_compile_error(cc, c, "<endpoint><%s>: not supported by cmi yet", c->name);
            return NULL;
        } else {
            cmi_compile_error(cc, c, "<endpoint>: unexpected element <%s>", c->name);
            return NULL;
        }
    }
    if (targets == 0) {
        cmi_compile_error(cc, node, "<endpoint%s%s%s>: give an <http> or <address> target", ep->name ? " name=\"" : "",
                          ep->name ? ep->name : "", ep->name ? "\"" : "");
        return NULL;
    }
    if (ep->client_session && ep->kind != CMI_EP_LOADBALANCE) {
        cmi_compile_error(cc, node, "<endpoint><session>: only a <loadbalance> endpoint keeps sessions");
        return NULL;
    }
    if (ep->kind == CMI_EP_LEAF) {
        ep->state = cmi_arena_calloc(cc->arena, 1, sizeof(*ep->state));
        pthread_mutex_init(&ep->state->lock, NULL);
        ep->state->leaf = ep;
        ep->state->next = cc->config->endpoint_states; /* named or inline: all reported */
        cc->config->endpoint_states = ep->state;
        ep->state->next_ms = ep->initial_ms;
        ep->state->retries_left = ep->retries_before;
    }
    return ep;
}

