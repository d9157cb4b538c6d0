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

/* Adds MI's wrapper for a whole JSON document under parent:
 * <jsonObject>...</jsonObject> or <jsonArray>...</jsonArray>.  Returns -1
 * (the tree cut short) when the XML would take more than limit bytes
 * written out. */
int cmi_json_to_xml_document(xmlNodePtr parent, json_t *j, size_t limit);
/* Writes the JSON text for the element (and its content) to out.  Returns
 * -1 (out cut short) when it would take more than limit bytes. */
int cmi_xml_to_json(xmlNodePtr element, cmi_strbuf_t *out, size_t limit);
/* The element's JSON form as a tree (a new reference), or NULL when its
 * text would take more than limit bytes.  The text is built in arena. */
json_t *cmi_xml_to_json_tree(cmi_arena_t *arena, xmlNodePtr element, size_t limit);

/* Parses an XML payload (a request, a backend's answer, a property value)
 * with no network access, no entity substitution and no DTD: a document
 * with a DOCTYPE is refused before its DTD is read, so that no payload can
 * expand, fetch or declare anything; an element with more than
 * CMI_XML_MAX_ATTRIBUTES attributes is refused before libxml2 reads it
 * (its duplicate check is quadratic in them).  Returns the document (the caller's
 * to free) or NULL with *why set (in arena). */
#define CMI_XML_MAX_ATTRIBUTES 1000 /* MI's parser's (Woodstox) default */
/* A deep copy of node for doc, appended to parent (NULL: as doc's root
 * element, which must be unset), every namespace it uses declared within
 * it or in scope at parent; NULL when out of memory.  (libxml2's DOM
 * wrapper: xmlDocCopyNode with xmlReconciliateNs makes up "default:"
 * prefixes for default namespaces declared inside the copy.) */
xmlNodePtr cmi_xml_clone(xmlNodePtr node, xmlDocPtr doc, xmlNodePtr parent);
xmlDocPtr cmi_xml_read(cmi_arena_t *arena, const char *bytes, size_t len, const char **why);

/* Parses a JSON payload (any value at the top).  Integers beyond 64 bits
 * are read as doubles (about 17 significant digits kept) instead of
 * failing the document.  Returns a new reference or NULL with *je set. */
json_t *cmi_json_read(cmi_arena_t *arena, const char *bytes, size_t len, json_error_t *je);

/* A SOAP 1.1 envelope in doc; returns its Body. */
xmlNodePtr cmi_soap_envelope(xmlDocPtr doc);
/* The same in the SOAP version whose namespace is ns_href. */
xmlNodePtr cmi_soap_envelope_in(xmlDocPtr doc, const char *ns_href);
/* Whether node is a SOAP 1.1 or 1.2 Envelope. */
int cmi_soap_is_envelope(xmlNodePtr node);
/* The first element inside the Body of an envelope (NULL if none). */
xmlNodePtr cmi_soap_body_child(xmlNodePtr envelope);
/* The envelope's Body element, or NULL. */
xmlNodePtr cmi_soap_body(xmlNodePtr envelope);

/* The payload as bytes for a response of the given content type when the
 * flow chose it (messageType): converted JSON <-> XML, wrapped in or taken
 * out of a SOAP envelope as MI's formatters do.  Returns 0 and the bytes
 * (in the message's arena), or CMI_FLOW_ERROR with the error slot set when
 * the payload cannot be read as what it claims to be, or the result would
 * exceed the view limit (cmi_msg_view_limit). */
/* Whether the payload is a SOAP message by its content type (text/xml,
 * application/soap+xml). */
int cmi_payload_is_soap_type(const cmi_msg_t *msg);
int cmi_payload_render_as(cmi_msg_t *msg, const char *content_type, const char **bytes, size_t *len);

#endif
