#include "config.h"

#include "runtime/convert.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "runtime/errors.h"
#include "runtime/msg.h"

/* ---- SOAP ------------------------------------------------------------- */

static int has_ns(xmlNodePtr n, const char *href)
{
    return n != NULL && n->ns != NULL && n->ns->href != NULL && strcmp((const char *)n->ns->href, href) == 0;
}

int cmi_soap_is_envelope(xmlNodePtr n)
{
    return n != NULL && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, "Envelope") == 0 &&
           (has_ns(n, CMI_SOAP11_NS) || has_ns(n, CMI_SOAP12_NS));
}

static xmlNodePtr envelope_of(xmlDocPtr doc, const char *ns_href)
{
    xmlNodePtr env = xmlNewDocNode(doc, NULL, (const xmlChar *)"Envelope", NULL);
    xmlNsPtr ns = xmlNewNs(env, (const xmlChar *)ns_href, (const xmlChar *)"soapenv");
    xmlSetNs(env, ns);
    xmlDocSetRootElement(doc, env);
    return xmlNewChild(env, ns, (const xmlChar *)"Body", NULL);
}

xmlNodePtr cmi_soap_envelope(xmlDocPtr doc)
{
    return envelope_of(doc, CMI_SOAP11_NS);
}

xmlNodePtr cmi_soap_body_child(xmlNodePtr env)
{
    for (xmlNodePtr c = env->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, "Body") == 0)
            for (xmlNodePtr b = c->children; b != NULL; b = b->next)
                if (b->type == XML_ELEMENT_NODE)
                    return b;
    return NULL;
}

/* ---- JSON -> XML ---------------------------------------------------------- */

/* A child element in no namespace (xmlNewChild would give it the parent's). */
static xmlNodePtr plain_child(xmlNodePtr parent, const char *name)
{
    return xmlAddChild(parent, xmlNewDocNode(parent->doc, NULL, (const xmlChar *)name, NULL));
}

/* XML element names must start with a letter or '_' and hold name
 * characters; a JSON key that is not one gets '_' in place of the
 * offending characters. */
static const char *element_name(const char *key, char *buf, size_t size)
{
    size_t n = strlen(key);
    if (n == 0 || n >= size)
        return "_";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)key[i];
        int ok = ch >= 0x80 || isalpha(ch) || ch == '_' || (i > 0 && (isdigit(ch) || ch == '-' || ch == '.'));
        buf[i] = ok ? (char)ch : '_';
    }
    buf[n] = '\0';
    return buf;
}

static void scalar_text(xmlNodePtr el, json_t *j)
{
    char num[40];
    switch (json_typeof(j)) {
    case JSON_STRING:
        xmlNodeAddContentLen(el, (const xmlChar *)json_string_value(j), (int)json_string_length(j));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(j));
        xmlNodeAddContent(el, (const xmlChar *)num);
        break;
    case JSON_REAL:
        cmi_format_double(json_real_value(j), num, sizeof(num));
        xmlNodeAddContent(el, (const xmlChar *)num);
        break;
    case JSON_TRUE:
        xmlNodeAddContent(el, (const xmlChar *)"true");
        break;
    case JSON_FALSE:
        xmlNodeAddContent(el, (const xmlChar *)"false");
        break;
    default:
        break;
    }
}

static void children_of(xmlNodePtr el, json_t *j)
{
    if (json_is_object(j)) {
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) cmi_json_to_xml(el, key, v);
    } else {
        scalar_text(el, j);
    }
}

void cmi_json_to_xml(xmlNodePtr parent, const char *name, json_t *j)
{
    char buf[256];
    const char *ename = element_name(name, buf, sizeof(buf));
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) children_of(plain_child(parent, ename), v);
        return;
    }
    children_of(plain_child(parent, ename), j);
}

void cmi_json_to_xml_document(xmlNodePtr parent, json_t *j)
{
    if (json_is_array(j))
        cmi_json_to_xml(plain_child(parent, "jsonArray"), "jsonElement", j);
    else
        children_of(plain_child(parent, "jsonObject"), j);
}

/* ---- XML -> JSON ------------------------------------------------------------ */

static int is_blank(const xmlChar *s)
{
    for (; s && *s; s++)
        if (!isspace(*s))
            return 0;
    return 1;
}

/* JSON's number grammar: such text is written as it stands. */
static int is_json_number(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (isdigit((unsigned char)*p))
        while (isdigit((unsigned char)*p))
            p++;
    else
        return 0;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

static void write_primitive(const char *text, cmi_strbuf_t *out)
{
    if (is_json_number(text) || strcmp(text, "true") == 0 || strcmp(text, "false") == 0 || strcmp(text, "null") == 0) {
        cmi_strbuf_puts(out, text);
        return;
    }
    cmi_strbuf_putc(out, '"');
    cmi_strbuf_json_escaped(out, text, strlen(text));
    cmi_strbuf_putc(out, '"');
}

static void write_key(const char *key, cmi_strbuf_t *out)
{
    cmi_strbuf_putc(out, '"');
    cmi_strbuf_json_escaped(out, key, strlen(key));
    cmi_strbuf_puts(out, "\":");
}

/* Names listed by <?xml-multiple name?> instructions inside el. */
static int forced_array(xmlNodePtr el, const xmlChar *name)
{
    for (xmlNodePtr c = el->children; c != NULL; c = c->next)
        if (c->type == XML_PI_NODE && xmlStrcmp(c->name, (const xmlChar *)"xml-multiple") == 0 &&
            (c->content == NULL || c->content[0] == '\0' || xmlStrcmp(c->content, name) == 0))
            return 1;
    return 0;
}

static void write_value(xmlNodePtr el, cmi_strbuf_t *out);

static void write_object(xmlNodePtr el, cmi_strbuf_t *out)
{
    int first = 1;
    cmi_strbuf_putc(out, '{');
    for (xmlAttrPtr a = el->properties; a != NULL; a = a->next) {
        xmlChar *v = xmlNodeGetContent((xmlNodePtr)a);
        cmi_strbuf_puts(out, first ? "\"@" : ",\"@");
        cmi_strbuf_json_escaped(out, (const char *)a->name, strlen((const char *)a->name));
        cmi_strbuf_puts(out, "\":");
        write_primitive(v ? (const char *)v : "", out);
        xmlFree(v);
        first = 0;
    }
    /* Children grouped by name, in the order each name first appears. */
    for (xmlNodePtr c = el->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        int seen = 0, count = 0;
        for (xmlNodePtr p = el->children; p != c; p = p->next)
            seen |= p->type == XML_ELEMENT_NODE && xmlStrcmp(p->name, c->name) == 0;
        if (seen)
            continue;
        for (xmlNodePtr k = c; k != NULL; k = k->next)
            count += k->type == XML_ELEMENT_NODE && xmlStrcmp(k->name, c->name) == 0;
        if (!first)
            cmi_strbuf_putc(out, ',');
        first = 0;
        write_key((const char *)c->name, out);
        int array = count > 1 || forced_array(el, c->name);
        if (array)
            cmi_strbuf_putc(out, '[');
        int n = 0;
        for (xmlNodePtr k = c; k != NULL; k = k->next) {
            if (k->type != XML_ELEMENT_NODE || xmlStrcmp(k->name, c->name) != 0)
                continue;
            if (n++ > 0)
                cmi_strbuf_putc(out, ',');
            write_value(k, out);
        }
        if (array)
            cmi_strbuf_putc(out, ']');
    }
    /* text beside attributes or elements */
    cmi_strbuf_t text;
    cmi_strbuf_init(&text, out->arena, 32);
    for (xmlNodePtr c = el->children; c != NULL; c = c->next)
        if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && !is_blank(c->content))
            cmi_strbuf_puts(&text, (const char *)c->content);
    if (text.len > 0) {
        cmi_strbuf_puts(out, first ? "\"$\":" : ",\"$\":");
        write_primitive(text.data, out);
    }
    cmi_strbuf_putc(out, '}');
}

static void write_value(xmlNodePtr el, cmi_strbuf_t *out)
{
    int elements = 0;
    for (xmlNodePtr c = el->children; c != NULL; c = c->next)
        elements |= c->type == XML_ELEMENT_NODE;
    if (elements || el->properties != NULL) {
        write_object(el, out);
        return;
    }
    xmlChar *t = xmlNodeGetContent(el);
    if (t == NULL || is_blank(t))
        cmi_strbuf_puts(out, "null");
    else
        write_primitive((const char *)t, out);
    xmlFree(t);
}

void cmi_xml_to_json(xmlNodePtr el, cmi_strbuf_t *out)
{
    if (xmlStrcmp(el->name, (const xmlChar *)"jsonObject") == 0) {
        write_object(el, out);
    } else if (xmlStrcmp(el->name, (const xmlChar *)"jsonArray") == 0) {
        int n = 0;
        cmi_strbuf_putc(out, '[');
        for (xmlNodePtr c = el->children; c != NULL; c = c->next) {
            if (c->type != XML_ELEMENT_NODE)
                continue;
            if (n++ > 0)
                cmi_strbuf_putc(out, ',');
            write_value(c, out);
        }
        cmi_strbuf_putc(out, ']');
    } else {
        cmi_strbuf_putc(out, '{');
        write_key((const char *)el->name, out);
        write_value(el, out);
        cmi_strbuf_putc(out, '}');
    }
}

/* ---- responses ------------------------------------------------------------ */

static int is_soap_type(const char *ct, const char **ns)
{
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    if (n == 8 && strncasecmp(ct, "text/xml", 8) == 0) {
        *ns = CMI_SOAP11_NS;
        return 1;
    }
    if (n == 20 && strncasecmp(ct, "application/soap+xml", 20) == 0) {
        *ns = CMI_SOAP12_NS;
        return 1;
    }
    return 0;
}

static void dump(cmi_msg_t *msg, xmlDocPtr doc, xmlNodePtr node, const char **bytes, size_t *len)
{
    xmlBufferPtr buf = xmlBufferCreate();
    xmlNodeDump(buf, doc, node, 0, 0);
    *len = (size_t)xmlBufferLength(buf);
    *bytes = cmi_arena_memdup(msg->arena, xmlBufferContent(buf), *len);
    xmlBufferFree(buf);
}

static void doc_free(void *p)
{
    xmlFreeDoc(p);
}

/* A new document owned by the message. */
static xmlDocPtr new_doc(cmi_msg_t *msg)
{
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    cmi_arena_cleanup_add(msg->arena, doc_free, doc);
    return doc;
}

static int payload_error(cmi_msg_t *msg, const char *err)
{
    return cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "converting the payload for the response: %s", err);
}

int cmi_payload_render_as(cmi_msg_t *msg, const char *ct, const char **bytes, size_t *len)
{
    cmi_payload_kind_t target = cmi_payload_kind_of(ct), source = msg->payload.kind;
    const char *soap_ns = NULL, *err = NULL;
    int soap = is_soap_type(ct, &soap_ns);
    if (target == CMI_PAYLOAD_JSON && source == CMI_PAYLOAD_XML) {
        xmlDocPtr doc = cmi_msg_payload_xml(msg, &err);
        if (doc == NULL)
            return payload_error(msg, err);
        xmlNodePtr root = xmlDocGetRootElement(doc);
        if (cmi_soap_is_envelope(root))
            root = cmi_soap_body_child(root);
        cmi_strbuf_t b;
        cmi_strbuf_init(&b, msg->arena, 256);
        if (root != NULL)
            cmi_xml_to_json(root, &b);
        else
            cmi_strbuf_puts(&b, "{}");
        *bytes = b.data;
        *len = b.len;
        return 0;
    }
    if (target == CMI_PAYLOAD_XML && source == CMI_PAYLOAD_JSON) {
        json_t *j = cmi_msg_payload_json(msg, &err);
        if (j == NULL)
            return payload_error(msg, err);
        xmlDocPtr doc = new_doc(msg);
        if (soap) {
            cmi_json_to_xml_document(envelope_of(doc, soap_ns), j);
            dump(msg, doc, xmlDocGetRootElement(doc), bytes, len);
        } else {
            xmlNodePtr holder = xmlNewDocNode(doc, NULL, (const xmlChar *)"holder", NULL);
            xmlDocSetRootElement(doc, holder);
            cmi_json_to_xml_document(holder, j);
            dump(msg, doc, holder->children, bytes, len);
        }
        return 0;
    }
    if (target == CMI_PAYLOAD_XML && source == CMI_PAYLOAD_XML) {
        xmlDocPtr doc = cmi_msg_payload_xml(msg, &err);
        if (doc == NULL)
            return payload_error(msg, err);
        xmlNodePtr root = xmlDocGetRootElement(doc);
        if (soap && !cmi_soap_is_envelope(root)) { /* a SOAP type: the payload goes in an envelope */
            xmlDocPtr out = new_doc(msg);
            xmlAddChild(envelope_of(out, soap_ns), xmlDocCopyNode(root, out, 1));
            dump(msg, out, xmlDocGetRootElement(out), bytes, len);
            return 0;
        }
        if (!soap && cmi_soap_is_envelope(root)) { /* plain XML: what the Body holds */
            xmlNodePtr child = cmi_soap_body_child(root);
            if (child == NULL) {
                *bytes = "";
                *len = 0;
                return 0;
            }
            xmlDocPtr out = new_doc(msg);
            xmlNodePtr copy = xmlDocCopyNode(child, out, 1);
            xmlDocSetRootElement(out, copy);
            xmlReconciliateNs(out, copy);
            dump(msg, out, copy, bytes, len);
            return 0;
        }
    }
    *bytes = cmi_msg_payload_bytes(msg, len);
    return 0;
}
