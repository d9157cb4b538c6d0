/* A message's payload rendered as a response's content type asks
 * (cmi_payload_render_as, runtime/convert.h): JSON as XML, XML as JSON, a
 * SOAP envelope put on or taken off.  Above the message context: the
 * conversions themselves (convert.c) know nothing of messages. */
#include "config.h"

#include <libxml/tree.h>
#include <string.h>
#include <strings.h>

#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

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

/* A new document owned by the message. */
static xmlDocPtr new_doc(cmi_msg_t *msg)
{
    return cmi_msg_own_xml(msg, xmlNewDoc((const xmlChar *)"1.0"));
}

static int payload_error(cmi_msg_t *msg, const char *err)
{
    return cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "converting the payload for the response: %s", err);
}

static int too_large(cmi_msg_t *msg, const char *what)
{
    return cmi_msg_set_error(msg, CMI_ERR_PAYLOAD_TOO_LARGE, NULL,
                             "converting the payload for the response: the %s would take more than %zu bytes", what,
                             cmi_msg_view_limit());
}

/* Whether the flow has looked into the payload (XPath, a view, a
 * mediator's edit) since it arrived: MI's "built" message.  A SOAP
 * envelope nobody looked into is written as JSON whole, envelope and all,
 * as MI's formatter converts the unbuilt stream (docs/mi-compatibility.md,
 * "SOAP to JSON"). */
static int payload_built(const cmi_payload_t *p)
{
    return !p->bytes_valid || p->built || p->xml_tried || p->json_tried || p->xpath_doc != NULL || p->xpath_too_large;
}

int cmi_payload_is_soap_type(const cmi_msg_t *msg)
{
    const char *ns;
    return msg->payload.kind == CMI_PAYLOAD_XML && msg->payload.content_type != NULL &&
           is_soap_type(msg->payload.content_type, &ns);
}

int cmi_payload_render_as(cmi_msg_t *msg, const char *ct, const char **bytes, size_t *len)
{
    cmi_payload_kind_t target = cmi_payload_kind_of(ct), source = msg->payload.kind;
    const char *soap_ns = NULL, *err = NULL;
    int soap = is_soap_type(ct, &soap_ns);
    if (target == CMI_PAYLOAD_JSON && source == CMI_PAYLOAD_XML) {
        int built = payload_built(&msg->payload);
        xmlDocPtr doc = cmi_msg_payload_xml(msg, &err);
        if (doc == NULL)
            return payload_error(msg, err);
        xmlNodePtr root = xmlDocGetRootElement(doc);
        if (cmi_soap_is_envelope(root) && built)
            root = cmi_soap_body_child(root);
        cmi_strbuf_t b;
        cmi_strbuf_init(&b, msg->arena, 256);
        if (root == NULL)
            cmi_strbuf_puts(&b, "{}");
        else if (cmi_xml_to_json(root, &b, cmi_msg_view_limit()) != 0)
            return too_large(msg, "JSON");
        *bytes = b.data;
        *len = b.len;
        return 0;
    }
    if (target == CMI_PAYLOAD_XML && source == CMI_PAYLOAD_JSON) {
        json_t *j = cmi_msg_payload_json(msg, &err);
        if (j == NULL)
            return payload_error(msg, err);
        xmlDocPtr doc = new_doc(msg);
        xmlNodePtr holder = soap ? cmi_soap_envelope_in(doc, soap_ns) : xmlNewDocNode(doc, NULL, (const xmlChar *)"holder", NULL);
        if (!soap)
            xmlDocSetRootElement(doc, holder);
        if (cmi_json_to_xml_document(holder, j, cmi_msg_view_limit()) != 0)
            return too_large(msg, "XML");
        dump(msg, doc, soap ? xmlDocGetRootElement(doc) : holder->children, bytes, len);
        return 0;
    }
    if (target == CMI_PAYLOAD_XML && source == CMI_PAYLOAD_XML) {
        xmlDocPtr doc = cmi_msg_payload_xml(msg, &err);
        if (doc == NULL)
            return payload_error(msg, err);
        xmlNodePtr root = xmlDocGetRootElement(doc);
        if (soap && !cmi_soap_is_envelope(root)) { /* a SOAP type: the payload goes in an envelope */
            xmlDocPtr out = new_doc(msg);
            xmlAddChild(cmi_soap_envelope_in(out, soap_ns), xmlDocCopyNode(root, out, 1));
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
            xmlNodePtr copy = cmi_xml_clone(child, out, NULL);
            dump(msg, out, copy, bytes, len);
            return 0;
        }
    }
    *bytes = cmi_msg_payload_bytes(msg, len);
    return 0;
}
