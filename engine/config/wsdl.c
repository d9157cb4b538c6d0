#include "config.h"

#include "config/wsdl.h"
#include "config/uri.h"

#include <curl/curl.h>
#include <errno.h>
#include <libxml/parser.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "plugin/plugin.h"
#include "runtime/convert.h"

#define NS_WSDL11 "http://schemas.xmlsoap.org/wsdl/"
#define NS_WSDL20 "http://www.w3.org/ns/wsdl"
#define NS_SOAP11 "http://schemas.xmlsoap.org/wsdl/soap/"
#define NS_SOAP12 "http://schemas.xmlsoap.org/wsdl/soap12/"
#define NS_HTTP "http://schemas.xmlsoap.org/wsdl/http/"
#define NS_WSOAP20 "http://www.w3.org/ns/wsdl/soap"

/* Where each endpoint address was, in the serialised WSDL: a marker no
 * WSDL holds, numbered in document order. */
#define ADDRESS_MARK "urn:cmi:wsdl-address:"

static const cmi_attr_rule_t publish_attrs[] = {
    {"uri", CMI_ATTR_OK},
    {"key", CMI_ATTR_OK},
    {"preservePolicy", CMI_ATTR_COSMETIC}, /* cmi serves no policies (WS-Policy is refused) */
    {"endpoint", CMI_ATTR_UNSUPPORTED},
    {NULL, 0},
};

static int in_ns(xmlNodePtr n, const char *ns)
{
    return n->type == XML_ELEMENT_NODE && n->ns != NULL && strcmp((const char *)n->ns->href, ns) == 0;
}

static int is(xmlNodePtr n, const char *ns, const char *name)
{
    return in_ns(n, ns) && strcmp((const char *)n->name, name) == 0;
}

/* ---- reading ------------------------------------------------------------- */

static xmlDocPtr parse_text(const char *text, size_t len, const char *url)
{
    /* No network, no entities: a published WSDL pulls in nothing at load. */
    return xmlReadMemory(text, (int)len, url, NULL, XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_NOERROR |
                                                        XML_PARSE_NOWARNING);
}

/* The WSDL document publishWSDL names; NULL after reporting why. */
static xmlDocPtr load_doc(cmi_compile_t *cc, xmlNodePtr publish)
{
    const char *uri = cmi_xml_attr(cc, publish, "uri");
    const char *key = cmi_xml_attr(cc, publish, "key");
    xmlNodePtr inl = NULL;
    for (xmlNodePtr c = publish->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !cmi_xml_is(c, "resource") && inl == NULL)
            inl = c;
    if ((uri != NULL) + (key != NULL) + (inl != NULL) != 1) {
        cmi_compile_error(cc, publish, "<publishWSDL>: give exactly one of uri, key or an inline WSDL");
        return NULL;
    }
    if (inl != NULL) {
        xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
        cmi_xml_clone(inl, doc, NULL);
        return doc;
    }
    const char *text = NULL;
    char *owned = NULL;
    size_t len = 0;
    char err[CURL_ERROR_SIZE + 64] = "";
    if (key != NULL) {
        const cmi_local_entry_t *le = cmi_htab_gets(&cc->config->local_entries, key);
        if (le == NULL || le->markup == NULL) {
            cmi_compile_error(cc, publish, "<publishWSDL key=\"%s\">: %s", key,
                              le ? "the local entry holds no XML" : "no local entry of that key");
            return NULL;
        }
        text = le->markup;
        len = strlen(text);
    } else if (cmi_uri_readable(uri)) {
        text = owned = cmi_uri_read(cc, uri, CMI_WSDL_MAX_BYTES, &len, err, sizeof(err));
    } else {
        cmi_compile_error(cc, publish, "<publishWSDL uri=\"%s\">: cmi reads file:, http: and https: URIs", uri);
        return NULL;
    }
    if (text == NULL) {
        /* `cmi check` runs where backends and files may be missing. */
        if (cc->config->connectors->check_only)
            cmi_compile_warn(cc, publish, "<publishWSDL uri=\"%s\">: cannot read it here (%s)", uri, err);
        else
            cmi_compile_error(cc, publish, "<publishWSDL uri=\"%s\">: cannot read it: %s", uri, err);
        return NULL;
    }
    /* As a payload is read: no DTD (no entity tricks from a backend's WSDL). */
    const char *why = NULL;
    xmlDocPtr doc = cmi_xml_read(cc->arena, text, len, &why);
    free(owned);
    if (doc == NULL)
        cmi_compile_error(cc, publish, "<publishWSDL %s=\"%s\">: %s", uri ? "uri" : "key", uri ? uri : key,
                          why ? why : "not well-formed XML");
    return doc;
}

/* ---- operations ---------------------------------------------------------- */

/* Name -> element tables of one WSDL 1.1 document (messages, binding
 * operations), so that n operations cost n lookups, not n scans. */
typedef struct {
    cmi_htab_t messages; /* name -> <message> */
    cmi_htab_t actions;  /* operation name -> soapAction (arena string) */
} wsdl_index_t;

static const char *local_part(const char *qname)
{
    const char *colon = strchr(qname, ':');
    return colon ? colon + 1 : qname;
}

static void index_binding(cmi_compile_t *cc, xmlNodePtr b, wsdl_index_t *ix)
{
    for (xmlNodePtr op = b->children; op != NULL; op = op->next) {
        if (!is(op, NS_WSDL11, "operation"))
            continue;
        for (xmlNodePtr c = op->children; c != NULL; c = c->next) {
            if (!is(c, NS_SOAP11, "operation") && !is(c, NS_SOAP12, "operation"))
                continue;
            xmlChar *name = xmlGetProp(op, BAD_CAST "name");
            xmlChar *a = xmlGetProp(c, BAD_CAST "soapAction");
            if (name != NULL && a != NULL && *a != '\0') {
                const char *k = cmi_arena_strdup(cc->arena, (const char *)name);
                cmi_htab_put(&ix->actions, k, strlen(k), (void *)cmi_arena_strdup(cc->arena, (const char *)a));
            }
            xmlFree(name);
            xmlFree(a);
        }
    }
}

static void index_wsdl11(cmi_compile_t *cc, xmlNodePtr root, wsdl_index_t *ix)
{
    cmi_htab_init(&ix->messages, cc->arena);
    cmi_htab_init(&ix->actions, cc->arena);
    for (xmlNodePtr c = root->children; c != NULL; c = c->next) {
        if (is(c, NS_WSDL11, "binding")) {
            index_binding(cc, c, ix);
        } else if (is(c, NS_WSDL11, "message")) {
            xmlChar *name = xmlGetProp(c, BAD_CAST "name");
            if (name != NULL) {
                const char *k = cmi_arena_strdup(cc->arena, (const char *)name);
                cmi_htab_put(&ix->messages, k, strlen(k), c);
            }
            xmlFree(name);
        }
    }
}

/* A QName attribute of node resolved against its namespaces. */
static void resolve_qname(cmi_compile_t *cc, xmlNodePtr node, const char *qname, const char **ns,
                          const char **local)
{
    const char *colon = strchr(qname, ':');
    char *prefix = colon ? cmi_arena_strndup(cc->arena, qname, (size_t)(colon - qname)) : NULL;
    xmlNsPtr x = xmlSearchNs(node->doc, node, BAD_CAST prefix);
    *ns = x ? cmi_arena_strdup(cc->arena, (const char *)x->href) : "";
    *local = cmi_arena_strdup(cc->arena, colon ? colon + 1 : qname);
}

static char *attr(xmlNodePtr n, const char *name)
{
    return (char *)xmlGetProp(n, BAD_CAST name);
}

/* WSDL 1.1: a portType operation's input element (document style: the
 * message's part element) and whether it has an output. */
static void op_from_port_type(cmi_compile_t *cc, const wsdl_index_t *ix, xmlNodePtr op, cmi_wsdl_op_t *o)
{
    o->in_only = 1;
    for (xmlNodePtr c = op->children; c != NULL; c = c->next) {
        if (is(c, NS_WSDL11, "output")) {
            o->in_only = 0;
        } else if (is(c, NS_WSDL11, "input")) {
            char *msg = attr(c, "message");
            xmlNodePtr m = msg ? cmi_htab_gets(&ix->messages, local_part(msg)) : NULL;
            xmlFree(msg);
            for (xmlNodePtr part = m ? m->children : NULL; part != NULL; part = part->next) {
                char *el = is(part, NS_WSDL11, "part") ? attr(part, "element") : NULL;
                if (el != NULL && o->elem_name == NULL)
                    resolve_qname(cc, part, el, &o->elem_ns, &o->elem_name);
                xmlFree(el);
            }
        }
    }
}

static void collect_ops(cmi_compile_t *cc, xmlNodePtr root, cmi_wsdl_t *w)
{
    int v2 = in_ns(root, NS_WSDL20);
    const char *ns = v2 ? NS_WSDL20 : NS_WSDL11;
    wsdl_index_t ix;
    if (!v2)
        index_wsdl11(cc, root, &ix);
    size_t n = 0;
    for (xmlNodePtr pt = root->children; pt != NULL; pt = pt->next)
        if (is(pt, ns, v2 ? "interface" : "portType"))
            for (xmlNodePtr op = pt->children; op != NULL; op = op->next)
                n += is(op, ns, "operation");
    w->ops = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*w->ops));
    for (xmlNodePtr pt = root->children; pt != NULL; pt = pt->next) {
        if (!is(pt, ns, v2 ? "interface" : "portType"))
            continue;
        for (xmlNodePtr op = pt->children; op != NULL; op = op->next) {
            if (!is(op, ns, "operation"))
                continue;
            cmi_wsdl_op_t *o = &w->ops[w->nops++];
            char *name = attr(op, "name");
            o->name = cmi_arena_strdup(cc->arena, name ? name : "");
            xmlFree(name);
            if (!v2) {
                op_from_port_type(cc, &ix, op, o);
                o->soap_action = cmi_htab_gets(&ix.actions, o->name);
                continue;
            }
            char *pattern = attr(op, "pattern");
            o->in_only = pattern != NULL && strstr(pattern, "in-only") != NULL;
            xmlFree(pattern);
            for (xmlNodePtr c = op->children; c != NULL; c = c->next) {
                char *el = is(c, NS_WSDL20, "input") ? attr(c, "element") : NULL;
                if (el != NULL && o->elem_name == NULL)
                    resolve_qname(cc, c, el, &o->elem_ns, &o->elem_name);
                xmlFree(el);
            }
        }
    }
}

/* ---- addresses ----------------------------------------------------------- */

/* The Axis2 endpoint name suffix MI serves a port's binding at. */
static const char *port_suffix(xmlNodePtr addr)
{
    if (in_ns(addr, NS_SOAP12))
        return "HttpSoap12Endpoint";
    if (in_ns(addr, NS_HTTP))
        return "HttpEndpoint";
    return "HttpSoap11Endpoint";
}

/* Marks every endpoint address; returns the suffixes in document order. */
static const char **mark_addresses(cmi_compile_t *cc, xmlNodePtr root, size_t *count)
{
    int v2 = in_ns(root, NS_WSDL20);
    size_t cap = 4, n = 0;
    const char **suffixes = cmi_arena_calloc(cc->arena, cap, sizeof(*suffixes));
    for (xmlNodePtr s = root->children; s != NULL; s = s->next) {
        if (!is(s, v2 ? NS_WSDL20 : NS_WSDL11, "service"))
            continue;
        for (xmlNodePtr port = s->children; port != NULL; port = port->next) {
            xmlNodePtr target = NULL;
            const char *suffix = "HttpSoap11Endpoint", *name = "location";
            if (v2 && is(port, NS_WSDL20, "endpoint")) {
                target = port; /* the binding's type decides; SOAP 1.1 unless told */
                name = "address";
            } else if (!v2 && is(port, NS_WSDL11, "port")) {
                for (xmlNodePtr a = port->children; a != NULL && target == NULL; a = a->next)
                    if (is(a, NS_SOAP11, "address") || is(a, NS_SOAP12, "address") || is(a, NS_HTTP, "address"))
                        target = a, suffix = port_suffix(a);
            }
            if (target == NULL)
                continue;
            if (n == cap) {
                const char **more = cmi_arena_calloc(cc->arena, cap *= 2, sizeof(*more));
                memcpy(more, suffixes, n * sizeof(*more));
                suffixes = more;
            }
            char mark[64];
            snprintf(mark, sizeof(mark), ADDRESS_MARK "%zu", n);
            xmlSetProp(target, BAD_CAST name, BAD_CAST mark);
            suffixes[n++] = suffix;
        }
    }
    *count = n;
    return suffixes;
}

/* The serialised WSDL cut at each marked address. */
static void cut_pieces(cmi_compile_t *cc, const char *text, size_t len, const char **suffixes, size_t n,
                       cmi_wsdl_t *w)
{
    w->pieces = cmi_arena_calloc(cc->arena, n + 1, sizeof(*w->pieces));
    const char *p = text, *end = text + len;
    for (size_t i = 0; i < n; i++) {
        char mark[64];
        int mlen = snprintf(mark, sizeof(mark), ADDRESS_MARK "%zu", i);
        const char *at = strstr(p, mark); /* the dump is one C string */
        if (at == NULL)
            break; /* cannot happen: every mark was set */
        w->pieces[w->npieces++] = (cmi_wsdl_piece_t){cmi_arena_strndup(cc->arena, p, (size_t)(at - p)),
                                                     (size_t)(at - p), suffixes[i]};
        p = at + mlen;
    }
    w->pieces[w->npieces++] = (cmi_wsdl_piece_t){cmi_arena_strndup(cc->arena, p, (size_t)(end - p)),
                                                 (size_t)(end - p), NULL};
}

/* ---- the WSDL MI serves: its bindings and ports regenerated ------------------ */

/* A prefix for href on root: the one in scope, else declared there (the
 * preferred prefix, or a numbered one when that is taken). */
static xmlNsPtr ns_for(xmlNodePtr root, const char *href, const char *prefer)
{
    xmlNsPtr ns = xmlSearchNsByHref(root->doc, root, BAD_CAST href);
    if (ns != NULL && ns->prefix != NULL)
        return ns;
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "%s", prefer);
    for (int i = 1; xmlSearchNs(root->doc, root, BAD_CAST prefix) != NULL; i++)
        snprintf(prefix, sizeof(prefix), "%s%d", prefer, i);
    return xmlNewNs(root, BAD_CAST href, BAD_CAST prefix);
}

/* root's child of that kind whose name is qname's local part. */
static xmlNodePtr named_child(xmlNodePtr root, const char *kind, const char *qname)
{
    const char *local = local_part(qname);
    for (xmlNodePtr c = root->children; c != NULL; c = c->next) {
        if (!is(c, NS_WSDL11, kind))
            continue;
        char *name = attr(c, "name");
        int hit = name != NULL && strcmp(name, local) == 0;
        xmlFree(name);
        if (hit)
            return c;
    }
    return NULL;
}

static xmlNodePtr first_port(xmlNodePtr root)
{
    for (xmlNodePtr s = root->children; s != NULL; s = s->next)
        for (xmlNodePtr port = is(s, NS_WSDL11, "service") ? s->children : NULL; port != NULL; port = port->next)
            if (is(port, NS_WSDL11, "port"))
                return port;
    return NULL;
}

/* The portType Axis2 builds the service from: the one the first service
 * port's binding names, else the first. */
static xmlNodePtr service_port_type(xmlNodePtr root)
{
    xmlNodePtr port = first_port(root);
    char *binding = port ? attr(port, "binding") : NULL;
    xmlNodePtr b = binding ? named_child(root, "binding", binding) : NULL;
    char *type = b ? attr(b, "type") : NULL;
    xmlNodePtr pt = type ? named_child(root, "portType", type) : NULL;
    xmlFree(binding);
    xmlFree(type);
    for (xmlNodePtr c = root->children; c != NULL && pt == NULL; c = c->next)
        if (is(c, NS_WSDL11, "portType"))
            pt = c;
    return pt;
}

typedef struct {
    const char *binding;  /* NAME + this */
    const char *port;     /* NAME + this: the Axis2 endpoint */
    const char *ns, *prefix;
    unsigned disabled_by; /* the proxy flag that removes it */
} binding_kind_t;

static const binding_kind_t kinds[] = {
    {"Soap11Binding", "HttpSoap11Endpoint", NS_SOAP11, "soap", CMI_PROXY_NO_SOAP11},
    {"Soap12Binding", "HttpSoap12Endpoint", NS_SOAP12, "soap12", CMI_PROXY_NO_SOAP12},
    {"HttpBinding", "HttpEndpoint", NS_HTTP, "http", CMI_PROXY_NO_REST},
};

static xmlNodePtr add(xmlNodePtr parent, xmlNsPtr ns, const char *name)
{
    return xmlNewChild(parent, ns, BAD_CAST name, NULL);
}

static void add_binding(xmlNodePtr root, const binding_kind_t *k, const char *proxy, const char *pt_qname,
                        const cmi_wsdl_t *w)
{
    xmlNsPtr wsdl = root->ns, bns = ns_for(root, k->ns, k->prefix);
    int http = strcmp(k->ns, NS_HTTP) == 0;
    char name[320];
    snprintf(name, sizeof(name), "%s%s", proxy, k->binding);
    xmlNodePtr b = add(root, wsdl, "binding");
    xmlNewProp(b, BAD_CAST "name", BAD_CAST name);
    xmlNewProp(b, BAD_CAST "type", BAD_CAST pt_qname);
    xmlNodePtr bb = add(b, bns, "binding");
    if (http) {
        xmlNewProp(bb, BAD_CAST "verb", BAD_CAST "POST");
    } else {
        xmlNewProp(bb, BAD_CAST "transport", BAD_CAST "http://schemas.xmlsoap.org/soap/http");
        xmlNewProp(bb, BAD_CAST "style", BAD_CAST "document");
    }
    for (size_t i = 0; i < w->nops; i++) {
        const cmi_wsdl_op_t *o = &w->ops[i];
        xmlNodePtr op = add(b, wsdl, "operation");
        xmlNewProp(op, BAD_CAST "name", BAD_CAST o->name);
        xmlNodePtr bop = add(op, bns, "operation");
        if (http) {
            xmlNewProp(bop, BAD_CAST "location", BAD_CAST o->name);
        } else {
            xmlNewProp(bop, BAD_CAST "soapAction", BAD_CAST(o->soap_action ? o->soap_action : ""));
            xmlNewProp(bop, BAD_CAST "style", BAD_CAST "document");
        }
        for (int out = 0; out <= !o->in_only; out++) {
            xmlNodePtr io = add(op, wsdl, out ? "output" : "input");
            if (!http)
                xmlNewProp(add(io, bns, "body"), BAD_CAST "use", BAD_CAST "literal");
        }
    }
}

/* Axis2's ?wsdl for a proxy: the published types, messages and portType,
 * with the bindings and service made for the proxy (its name, its
 * endpoints) in place of the document's own. */
static void regenerate(cmi_compile_t *cc, xmlNodePtr root, const cmi_proxy_t *p, const cmi_wsdl_t *w)
{
    xmlNodePtr pt = service_port_type(root);
    char *ptname = pt ? attr(pt, "name") : NULL;
    char *tns = attr(root, "targetNamespace");
    const char *qname = ptname ? ptname : "";
    if (ptname != NULL && tns != NULL && *tns != '\0') {
        xmlNsPtr ns = ns_for(root, tns, "tns");
        qname = cmi_arena_sprintf(cc->arena, "%s:%s", ns->prefix, ptname);
    }
    for (xmlNodePtr c = root->children, next; c != NULL; c = next) {
        next = c->next;
        if (is(c, NS_WSDL11, "binding") || is(c, NS_WSDL11, "service")) {
            xmlNodePtr blank = c->prev; /* its indentation goes with it */
            if (blank != NULL && xmlIsBlankNode(blank)) {
                xmlUnlinkNode(blank);
                xmlFreeNode(blank);
            }
            xmlUnlinkNode(c);
            xmlFreeNode(c);
        }
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!(p->flags & kinds[i].disabled_by))
            add_binding(root, &kinds[i], p->api.name, qname, w);
    xmlNodePtr svc = add(root, root->ns, "service");
    xmlNewProp(svc, BAD_CAST "name", BAD_CAST p->api.name);
    char buf[320];
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (p->flags & kinds[i].disabled_by)
            continue;
        xmlNodePtr port = add(svc, root->ns, "port");
        snprintf(buf, sizeof(buf), "%s%s", p->api.name, kinds[i].port);
        xmlNewProp(port, BAD_CAST "name", BAD_CAST buf);
        snprintf(buf, sizeof(buf), "%s%s", p->api.name, kinds[i].binding);
        const char *binding = tns && *tns ? cmi_arena_sprintf(cc->arena, "%s:%s", ns_for(root, tns, "tns")->prefix, buf)
                                          : buf;
        xmlNewProp(port, BAD_CAST "binding", BAD_CAST binding);
        xmlNewProp(add(port, ns_for(root, kinds[i].ns, kinds[i].prefix), "address"), BAD_CAST "location",
                   BAD_CAST "");
    }
    xmlFree(ptname);
    xmlFree(tns);
}

/* What Axis2 publishes for a proxy without a WSDL: one operation,
 * "mediate", that takes anything. */
static xmlDocPtr mediate_wsdl(const char *name)
{
    char text[1024];
    int n = snprintf(text, sizeof(text),
                     "<wsdl:definitions xmlns:wsdl=\"" NS_WSDL11 "\" xmlns:ns=\"http://ws.apache.org/axis2\" "
                     "xmlns:wsaw=\"http://www.w3.org/2006/05/addressing/wsdl\" "
                     "targetNamespace=\"http://ws.apache.org/axis2\">"
                     "<wsdl:message name=\"in\"/><wsdl:message name=\"out\"/>"
                     "<wsdl:portType name=\"%sPortType\"><wsdl:operation name=\"mediate\">"
                     "<wsdl:input message=\"ns:in\" wsaw:Action=\"urn:mediate\"/>"
                     "<wsdl:output message=\"ns:out\" wsaw:Action=\"urn:mediateResponse\"/>"
                     "</wsdl:operation></wsdl:portType></wsdl:definitions>", name);
    return parse_text(text, (size_t)n, "mediate.wsdl");
}

const cmi_wsdl_t *cmi_compile_wsdl(cmi_compile_t *cc, xmlNodePtr publish, const cmi_proxy_t *p)
{
    xmlDocPtr doc;
    if (publish == NULL) {
        doc = mediate_wsdl(p->api.name); /* the proxy name is made of safe characters */
    } else {
        if (cmi_xml_check_attrs(cc, publish, publish_attrs, NULL))
            return NULL;
        for (xmlNodePtr c = publish->children; c != NULL; c = c->next)
            if (cmi_xml_is(c, "resource"))
                cmi_compile_warn(cc, c, "<publishWSDL>: <resource> (imported schemas) is not served by cmi: the "
                                 "WSDL is published as it is, its imports left to the client");
        if ((doc = load_doc(cc, publish)) == NULL)
            return NULL;
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    int v2 = root != NULL && is(root, NS_WSDL20, "description");
    if (root == NULL || !(is(root, NS_WSDL11, "definitions") || v2)) {
        cmi_compile_error(cc, publish, "<publishWSDL> of proxy '%s': the document is not a WSDL 1.1 "
                          "<definitions> nor a WSDL 2.0 <description>", p->api.name);
        xmlFreeDoc(doc);
        return NULL;
    }
    cmi_wsdl_t *w = cmi_arena_calloc(cc->arena, 1, sizeof(*w));
    w->published = publish != NULL;
    collect_ops(cc, root, w);
    if (publish == NULL)
        w->ops[0].soap_action = "urn:mediate";
    /* WSDL 2.0 is served as written, its addresses rewritten: cmi does
     * not regenerate it (docs/mi-compatibility.md). */
    if (!v2 && !(p->flags & CMI_PROXY_ORIGINAL_WSDL))
        regenerate(cc, root, p, w);
    size_t n = 0;
    const char **suffixes = p->flags & CMI_PROXY_KEEP_ADDRESSES ? NULL : mark_addresses(cc, root, &n);
    xmlChar *text = NULL;
    int len = 0;
    xmlDocDumpMemoryEnc(doc, &text, &len, "UTF-8");
    cut_pieces(cc, (const char *)text, (size_t)len, suffixes, n, w);
    xmlFree(text);
    xmlFreeDoc(doc);
    return w;
}

const cmi_wsdl_op_t *cmi_wsdl_find_op(const cmi_wsdl_t *w, const char *action, const char *elem_ns,
                                      const char *elem_name)
{
    if (w == NULL)
        return NULL;
    if (action != NULL && *action != '\0')
        for (size_t i = 0; i < w->nops; i++)
            if (w->ops[i].soap_action != NULL && strcmp(w->ops[i].soap_action, action) == 0)
                return &w->ops[i];
    if (elem_name != NULL)
        for (size_t i = 0; i < w->nops; i++)
            if (w->ops[i].elem_name != NULL && strcmp(w->ops[i].elem_name, elem_name) == 0 &&
                strcmp(w->ops[i].elem_ns, elem_ns ? elem_ns : "") == 0)
                return &w->ops[i];
    return NULL;
}

char *cmi_wsdl_render(const cmi_wsdl_t *w, const char *base, const char *name, size_t *len)
{
    size_t blen = strlen(base), nlen = strlen(name), total = 0;
    for (size_t i = 0; i < w->npieces; i++)
        total += w->pieces[i].len + (w->pieces[i].port_suffix ? blen + 11 + 2 * nlen + strlen(w->pieces[i].port_suffix) : 0);
    char *out = cmi_xmalloc(total + 1), *o = out;
    for (size_t i = 0; i < w->npieces; i++) {
        memcpy(o, w->pieces[i].text, w->pieces[i].len);
        o += w->pieces[i].len;
        if (w->pieces[i].port_suffix != NULL)
            o += sprintf(o, "%s/services/%s.%s%s", base, name, name, w->pieces[i].port_suffix);
    }
    *o = '\0';
    *len = (size_t)(o - out);
    return out;
}
