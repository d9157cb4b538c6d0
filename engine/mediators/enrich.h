/* The enrich mediator's edits (enrich_edit.c), apart from its
 * configuration and its sources and targets (enrich.c). */
#ifndef CMI_MEDIATORS_ENRICH_H
#define CMI_MEDIATORS_ENRICH_H

#include <jansson.h>
#include <libxml/tree.h>

#include "expr/expr.h"
#include "runtime/value.h"

typedef enum {
    CMI_ENRICH_REPLACE = 0,
    CMI_ENRICH_CHILD,
    CMI_ENRICH_SIBLING,
    CMI_ENRICH_REMOVE,
    CMI_ENRICH_RENAME /* target type="key" */
} cmi_enrich_action_t;

/* A value as a new JSON reference: JSON copied, a string holding a JSON
 * object or array parsed (MI's rule), other strings as JSON strings, XML
 * in MI's JSON form. */
json_t *cmi_enrich_as_json(cmi_msg_t *msg, const cmi_value_t *v);
/* A value as a new node of doc: markup as its element, anything else as
 * text. */
xmlNodePtr cmi_enrich_as_xml(cmi_msg_t *msg, const cmi_value_t *v, xmlDocPtr into);

/* 0 when n copies of src stay within the view limit, else CMI_FLOW_ERROR
 * with the error slot set. */
int cmi_enrich_within_limit(cmi_msg_t *msg, const cmi_value_t *src, size_t n);
/* Applies a replace, child, sibling or rename with src at each place in
 * *doc (which a replace of "$" swaps).  Returns 0 or CMI_FLOW_ERROR. */
int cmi_enrich_json_at(cmi_msg_t *msg, json_t **doc, const cmi_json_place_t *places, size_t n,
                       cmi_enrich_action_t action, const cmi_value_t *src);
/* Removes the places from *doc. */
void cmi_enrich_json_remove(json_t **doc, const cmi_json_place_t *places, size_t n, cmi_msg_t *msg);

/* Applies a replace, child or sibling with src at an XML node (an element,
 * an attribute or a text).  An element replaced is moved under `replaced`
 * (an element of no document, which the caller frees once nothing, an
 * XPath node set say, points into it).  Returns 0 or CMI_FLOW_ERROR. */
int cmi_enrich_xml_at(cmi_msg_t *msg, xmlNodePtr target, cmi_enrich_action_t action, const cmi_value_t *src,
                      xmlNodePtr replaced);
/* A node written out, in the message's arena. */
const char *cmi_enrich_markup(cmi_msg_t *msg, xmlNodePtr node, size_t *len);

#endif
