/* Payload conversions between JSON and XML, as MI's message builders and
 * formatters do them, and the SOAP envelope MI wraps XML in.
 *
 * JSON -> XML: an object becomes <jsonObject> with an element per key, a
 * top-level array <jsonArray> with <jsonElement>s, a named array repeated
 * elements; keys that are not XML names get '_' in place of the offending
 * characters.
 * XML -> JSON: the root element is kept as the only key unless it is
 * MI's <jsonObject>/<jsonArray> wrapper; namespaces are dropped; repeated
 * siblings (or names listed in an <?xml-multiple name?>) become arrays;
 * attributes become "@name" keys and text beside them "$"; text that reads
 * as a JSON number, true, false or null becomes that primitive; an empty
 * element is null. */
#ifndef CMI_RUNTIME_CONVERT_H
#define CMI_RUNTIME_CONVERT_H

#include <jansson.h>
#include <libxml/tree.h>

#include "core/str.h"

#define CMI_SOAP11_NS "http://schemas.xmlsoap.org/soap/envelope/"
#define CMI_SOAP12_NS "http://www.w3.org/2003/05/soap-envelope"

typedef struct cmi_msg cmi_msg_t;

/* Adds the XML form of j under parent, as element(s) named name. */
void cmi_json_to_xml(xmlNodePtr parent, const char *name, json_t *j);
/* Adds MI's wrapper for a whole JSON document under parent:
 * <jsonObject>...</jsonObject> or <jsonArray>...</jsonArray>. */
void cmi_json_to_xml_document(xmlNodePtr parent, json_t *j);
/* Writes the JSON text for the element (and its content) to out. */
void cmi_xml_to_json(xmlNodePtr element, cmi_strbuf_t *out);

/* A SOAP 1.1 envelope in doc; returns its Body. */
xmlNodePtr cmi_soap_envelope(xmlDocPtr doc);
/* Whether node is a SOAP 1.1 or 1.2 Envelope. */
int cmi_soap_is_envelope(xmlNodePtr node);
/* The first element inside the Body of an envelope (NULL if none). */
xmlNodePtr cmi_soap_body_child(xmlNodePtr envelope);

/* The payload as bytes for a response of the given content type when the
 * flow chose it (messageType): converted JSON <-> XML, wrapped in or taken
 * out of a SOAP envelope as MI's formatters do.  Returns 0 and the bytes
 * (in the message's arena), or CMI_FLOW_ERROR with the error slot set when
 * the payload cannot be read as what it claims to be. */
int cmi_payload_render_as(cmi_msg_t *msg, const char *content_type, const char **bytes, size_t *len);

#endif
