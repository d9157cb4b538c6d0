/* Proxy services (the files of proxy-services/): MI's older entry point, served at
 * /services/NAME (docs/mi-compatibility.md, "Proxy services").
 *
 * A proxy compiles to the API-shaped records the dispatcher and the
 * runner already know: a context /services/NAME with one resource taking
 * every method and path, whose in, out and fault sequences are the
 * target's.  A target endpoint becomes a <send> to it at the end of the in
 * sequence: it goes when the in sequence ends normally, and not after a
 * <drop> or <respond>, as Synapse sends to the target only when the in
 * sequence did not stop the message. */
#include "config.h"

#include <string.h>

#include "config/artifacts.h"
#include "config/endpoint.h"
#include "config/wsdl.h"
#include "mediators/call.h"

#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-."

static const cmi_attr_rule_t proxy_attrs[] = {
    {"name", CMI_ATTR_OK},
    {"transports", CMI_ATTR_OK},
    {"startOnLoad", CMI_ATTR_OK},
    {"description", CMI_ATTR_OK},
    {"trace", CMI_ATTR_COSMETIC},
    {"statistics", CMI_ATTR_COSMETIC},
    {"serviceGroup", CMI_ATTR_COSMETIC},
    {"pinnedServers", CMI_ATTR_COSMETIC},
    {NULL, 0},
};

static const cmi_attr_rule_t target_attrs[] = {
    {"inSequence", CMI_ATTR_OK},
    {"outSequence", CMI_ATTR_OK},
    {"faultSequence", CMI_ATTR_OK},
    {"endpoint", CMI_ATTR_OK},
    {NULL, 0},
};

/* transports="http https" (spaces or commas); anything but HTTP is refused by
 * name: cmi's other transports are inbound endpoints and connectors. */
static unsigned parse_transports(cmi_compile_t *cc, xmlNodePtr node, const char *name, const char *text)
{
    if (text == NULL)
        return CMI_PROXY_HTTP | CMI_PROXY_HTTPS; /* MI's default: every transport it has */
    unsigned set = 0;
    const char *p = text;
    for (;;) {
        p += strspn(p, " ,\t\n");
        size_t n = strcspn(p, " ,\t\n");
        if (n == 0)
            break;
        if (n == 3 && strncmp(p, "all", 3) == 0)
            set |= CMI_PROXY_HTTP | CMI_PROXY_HTTPS; /* MI: every listener */
        else if (n == 4 && strncmp(p, "http", 4) == 0)
            set |= CMI_PROXY_HTTP;
        else if (n == 5 && strncmp(p, "https", 5) == 0)
            set |= CMI_PROXY_HTTPS;
        else {
            cmi_compile_error(cc, node, "<proxy name=\"%s\">: transport '%.*s' is not supported by cmi: proxy "
                              "services are served over http and https (JMS, VFS, RabbitMQ and other transports are "
                              "inbound endpoints in cmi)", name, (int)n, p);
            return 0;
        }
        p += n;
    }
    if (set == 0)
        cmi_compile_error(cc, node, "<proxy name=\"%s\">: transports is empty", name);
    return set;
}

static int parse_bool_attr(cmi_compile_t *cc, xmlNodePtr node, const char *attr, int dflt)
{
    const char *v = cmi_xml_attr(cc, node, attr);
    if (v == NULL)
        return dflt;
    if (strcmp(v, "true") == 0)
        return 1;
    if (strcmp(v, "false") == 0)
        return 0;
    cmi_compile_error(cc, node, "<%s>: %s must be true or false, not '%s'", node->name, attr, v);
    return dflt;
}

static int has_child(xmlNodePtr node, const char *name)
{
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        if (cmi_xml_is(c, name))
            return 1;
    return 0;
}

static xmlNodePtr new_node(xmlNodePtr like, const char *name, int line)
{
    xmlNodePtr n = xmlNewDocNode(like->doc, like->ns, BAD_CAST name, NULL);
    n->line = (unsigned short)(line > 65535 ? 65535 : line);
    return n;
}

/* The in sequence followed by the target endpoint (inline <endpoint> or
 * endpoint="key"), sent as a <send> to it when the in sequence ends
 * normally (mediators/call.c says when it does not).  A keyed in sequence
 * runs as a <sequence key> would. */
static const cmi_sequence_t *compile_in_and_target(cmi_compile_t *cc, xmlNodePtr target, xmlNodePtr ep,
                                                   const char *ep_key)
{
    int line = cmi_xml_line(ep ? ep : target);
    xmlNodePtr send = new_node(target, "send", line);
    xmlAddChild(target, send); /* freed with the artifact's tree */
    if (ep != NULL) {
        xmlUnlinkNode(ep);
        xmlAddChild(send, ep);
    } else {
        xmlNodePtr e = new_node(target, "endpoint", line);
        xmlNewProp(e, BAD_CAST "key", BAD_CAST ep_key);
        xmlAddChild(send, e);
    }
    cmi_mediator_t *to_target = cmi_compile_proxy_target(cc, send);
    const cmi_sequence_t *in = NULL;
    const cmi_mediator_t *call_in = NULL;
    const char *key = cmi_xml_attr(cc, target, "inSequence");
    if (key != NULL && has_child(target, "inSequence")) {
        cmi_compile_error(cc, target, "<target>: inSequence is given both as an attribute and as an element");
    } else if (key != NULL && *key != '\0') {
        xmlNodePtr ref = new_node(target, "sequence", cmi_xml_line(target));
        xmlAddChild(target, ref);
        xmlNewProp(ref, BAD_CAST "key", BAD_CAST key);
        call_in = cmi_compile_mediator(cc, ref);
    } else {
        cmi_compile_handler(cc, target, "inSequence", &in);
    }
    if (to_target == NULL)
        return NULL;
    size_t n = in ? in->count : call_in != NULL;
    const cmi_mediator_t **items = cmi_arena_calloc(cc->arena, n + 1, sizeof(*items));
    if (in != NULL)
        memcpy(items, in->items, n * sizeof(*items));
    else if (call_in != NULL)
        items[0] = call_in;
    items[n] = to_target;
    /* An inline in sequence (built just now, for this target alone) is
     * extended in place: its onError, resolved after every sequence has
     * loaded, is filled into it. */
    cmi_sequence_t *seq = in ? (cmi_sequence_t *)in : cmi_arena_calloc(cc->arena, 1, sizeof(*seq));
    seq->items = items;
    seq->count = n + 1;
    if (in == NULL) {
        seq->file = cc->file;
        seq->line = cmi_xml_line(target);
    }
    return seq;
}

static void compile_target(cmi_compile_t *cc, cmi_proxy_t *p, xmlNodePtr target)
{
    cmi_xml_check_attrs(cc, target, target_attrs, NULL);
    xmlNodePtr ep = NULL;
    for (xmlNodePtr c = target->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (cmi_xml_is(c, "endpoint") && ep == NULL)
            ep = c;
        else if (!cmi_xml_is(c, "inSequence") && !cmi_xml_is(c, "outSequence") &&
                 !cmi_xml_is(c, "faultSequence") && !cmi_xml_is(c, "description"))
            cmi_compile_error(cc, c, "<target>: unexpected element <%s>", c->name);
    }
    const char *ep_key = cmi_xml_attr(cc, target, "endpoint");
    if (ep != NULL && ep_key != NULL) {
        cmi_compile_error(cc, ep, "<target>: the endpoint is given both as an attribute and as an element");
        return;
    }
    if (ep_key != NULL && *ep_key == '\0') {
        cmi_compile_error(cc, target, "<target>: endpoint is empty");
        return;
    }
    cmi_resource_t *res = &p->resource;
    if (ep != NULL || ep_key != NULL)
        res->in_seq = compile_in_and_target(cc, target, ep, ep_key);
    else if (cmi_xml_attr(cc, target, "inSequence") == NULL && !has_child(target, "inSequence"))
        cmi_compile_error(cc, target, "<target>: give an inSequence, an endpoint or both (as MI requires)");
    else
        cmi_compile_handler(cc, target, "inSequence", &res->in_seq);
    cmi_compile_handler(cc, target, "faultSequence", &res->fault_seq);
    cmi_compile_handler(cc, target, "outSequence", &res->out_seq);
    res->has_out_seq = res->out_seq != NULL || cmi_xml_attr(cc, target, "outSequence") != NULL;
}

/* The proxy parameters of MI that act on HTTP, with the value that sets
 * their flag; the refused ones change behaviour in a way cmi does not
 * offer; the rest are Axis2 descriptions or other transports' settings. */
static const struct {
    const char *name;
    const char *sets_when; /* the value that sets flag */
    unsigned flag;
    const char *refused; /* why, when cmi refuses it */
} proxy_params[] = {
    {"inbound.only", "true", CMI_PROXY_INBOUND_ONLY, NULL},
    {"disableOperationValidation", "true", CMI_PROXY_ANY_OPERATION, NULL},
    {"supportSingleOperation", "true", CMI_PROXY_SINGLE_OPERATION, NULL},
    {"disableREST", "true", CMI_PROXY_NO_REST, NULL},
    {"disableSOAP11", "true", CMI_PROXY_NO_SOAP11, NULL},
    {"disableSOAP12", "true", CMI_PROXY_NO_SOAP12, NULL},
    {"exposeServiceMetadata", "false", CMI_PROXY_NO_METADATA, NULL},
    {"useOriginalwsdl", "true", CMI_PROXY_ORIGINAL_WSDL, NULL},
    {"modifyUserWSDLPortAddress", "false", CMI_PROXY_KEEP_ADDRESSES, NULL},
    {"serviceType", NULL, 0, NULL},
    {"hiddenService", NULL, 0, NULL},
    {"ServiceURI", NULL, 0, "serving a proxy at a path of its own is not supported by cmi (it is at /services/NAME)"},
    {"enableMTOM", NULL, 0, "MTOM is not supported by cmi"},
    {"enableSwA", NULL, 0, "SOAP with attachments is not supported by cmi"},
};

static void compile_parameter(cmi_compile_t *cc, cmi_proxy_t *p, xmlNodePtr node)
{
    const char *name = cmi_xml_attr(cc, node, "name");
    if (name == NULL || *name == '\0') {
        cmi_compile_error(cc, node, "<parameter>: the name attribute is required");
        return;
    }
    const char *value = cmi_compile_trim(cc, cmi_xml_text(cc, node), NULL);
    for (size_t i = 0; i < sizeof(proxy_params) / sizeof(proxy_params[0]); i++) {
        if (strcmp(name, proxy_params[i].name) != 0)
            continue;
        if (proxy_params[i].refused != NULL)
            cmi_compile_error(cc, node, "<parameter name=\"%s\">: %s", name, proxy_params[i].refused);
        else if (proxy_params[i].sets_when == NULL)
            ; /* known, nothing to do over HTTP */
        else if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
            cmi_compile_error(cc, node, "<parameter name=\"%s\">: true or false, not '%s'", name, value);
        else if (strcmp(value, proxy_params[i].sets_when) == 0)
            p->flags |= proxy_params[i].flag;
        return;
    }
    cmi_compile_warn(cc, node, "<parameter name=\"%s\">: not used by cmi's proxy services (ignored)", name);
}

static void compile_child(cmi_compile_t *cc, cmi_proxy_t *p, xmlNodePtr c, xmlNodePtr *target,
                          xmlNodePtr *publish)
{
    if (cmi_xml_is(c, "target") || cmi_xml_is(c, "publishWSDL")) {
        xmlNodePtr *slot = cmi_xml_is(c, "target") ? target : publish;
        if (*slot != NULL)
            cmi_compile_error(cc, c, "<proxy>: more than one <%s>", c->name);
        *slot = c;
    } else if (cmi_xml_is(c, "parameter")) {
        compile_parameter(cc, p, c);
    } else if (cmi_xml_is(c, "enableAddressing")) {
        cmi_compile_warn(cc, c, "<enableAddressing>: WS-Addressing headers are passed through as any SOAP header; "
                         "cmi does not act on them (reply-to addresses are never called)");
    } else if (cmi_xml_is(c, "enableSec") || cmi_xml_is(c, "policy")) {
        cmi_compile_error(cc, c, "<%s>: WS-Security policies are not supported by cmi; put the proxy behind "
                          "cmi's HTTPS listener and authentication instead (docs/mi-compatibility.md)", c->name);
    } else if (cmi_xml_is(c, "enableRM")) {
        cmi_compile_error(cc, c, "<enableRM>: WS-ReliableMessaging is not supported by cmi (nor by MI 4)");
    } else if (!cmi_xml_is(c, "description")) {
        cmi_compile_error(cc, c, "<proxy>: unexpected element <%s>", c->name);
    }
}

void cmi_artifact_proxy(cmi_compile_t *cc, xmlNodePtr root)
{
    cmi_xml_check_attrs(cc, root, proxy_attrs, NULL);
    const char *name = cmi_xml_attr(cc, root, "name");
    if (name == NULL || *name == '\0' || name[strspn(name, NAME_CHARS)] != '\0') {
        cmi_compile_error(cc, root, "<proxy%s%s%s>: the name attribute is required, of letters, digits, '_', '-' and "
                          "'.' (it is a URL path segment)", name ? " name=\"" : "", name ? name : "", name ? "\"" : "");
        return;
    }
    cmi_proxy_t *p = cmi_arena_calloc(cc->arena, 1, sizeof(*p));
    p->api.name = name;
    p->api.proxy = p;
    p->api.context = cmi_arena_sprintf(cc->arena, "/services/%s", name);
    p->api.file = cc->file;
    p->api.line = cmi_xml_line(root);
    p->resources[0] = &p->resource;
    p->api.resources = p->resources;
    p->api.count = 1;
    p->resource.api = &p->api;
    p->resource.methods = CMI_METHOD_ALL;
    p->resource.file = cc->file;
    p->resource.line = p->api.line;
    atomic_flag_clear(&p->resource.warned_no_response);
    p->transports = parse_transports(cc, root, name, cmi_xml_attr(cc, root, "transports"));
    p->started = parse_bool_attr(cc, root, "startOnLoad", 1);
    xmlNodePtr target = NULL, publish = NULL;
    for (xmlNodePtr c = root->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            compile_child(cc, p, c, &target, &publish);
    if (target == NULL) {
        cmi_compile_error(cc, root, "<proxy name=\"%s\">: a <target> is required", name);
        return;
    }
    compile_target(cc, p, target);
    p->wsdl = cmi_compile_wsdl(cc, publish, p); /* after the parameters, which shape it */
    cmi_config_t *cfg = cc->config; /* a name deployed twice is the dispatcher's error */
    cfg->proxies = cmi_xrealloc(cfg->proxies, (cfg->nproxies + 1) * sizeof(*cfg->proxies));
    cfg->proxies[cfg->nproxies++] = p;
}
