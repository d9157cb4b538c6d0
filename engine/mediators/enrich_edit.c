/* The edits the enrich mediator makes (enrich.h): on JSON trees at the
 * places a JSON path reaches, and on XML nodes.  Every JSON value inserted
 * is a copy, so no two places (or messages) share a mutable tree. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "mediators/enrich.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

/* ---- values as JSON and as XML ------------------------------------------------ */

json_t *cmi_enrich_as_json(cmi_msg_t *msg, const cmi_value_t *v)
{
    switch (v->type) {
    case CMI_VAL_NULL: return json_null();
    case CMI_VAL_BOOL: return json_boolean(v->u.b);
    case CMI_VAL_INT: return json_integer(v->u.i);
    case CMI_VAL_NUMBER: return json_real(v->u.d);
    case CMI_VAL_JSON: return json_deep_copy(v->u.json);
    case CMI_VAL_XML: {
        const char *why = NULL;
        xmlDocPtr doc = cmi_xml_read(msg->arena, v->u.s.ptr, v->u.s.len, &why);
        xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
        json_t *j = root ? cmi_xml_to_json_tree(msg->arena, root, cmi_msg_view_limit()) : NULL;
        xmlFreeDoc(doc);
        if (j != NULL)
            return j;
        break; /* not well-formed after all: its text */
    }
    case CMI_VAL_STRING: {
        /* MI: a string holding a JSON object or array is that JSON; any
         * other string is a JSON string. */
        const char *s = v->u.s.ptr;
        size_t n = v->u.s.len, i = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
            i++;
        if (i < n && (s[i] == '{' || s[i] == '[')) {
            json_error_t je;
            json_t *j = cmi_json_read(msg->arena, s, n, &je);
            if (j != NULL)
                return j;
        }
        break;
    }
    }
    return cmi_json_text(msg->arena, v->u.s.ptr, v->u.s.len);
}

xmlNodePtr cmi_enrich_as_xml(cmi_msg_t *msg, const cmi_value_t *v, xmlDocPtr into)
{
    size_t len;
    const char *text = cmi_value_to_text(msg->arena, v, &len);
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    if (i < len && text[i] == '<') {
        const char *why = NULL;
        xmlDocPtr doc = cmi_xml_read(msg->arena, text, len, &why);
        xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
        xmlNodePtr copy = root ? xmlDocCopyNode(root, into, 1) : NULL;
        xmlFreeDoc(doc);
        if (copy != NULL)
            return copy;
    }
    return xmlNewDocTextLen(into, (const xmlChar *)text, (int)len);
}

/* ---- JSON ------------------------------------------------------------------------ */

/* Places grouped by the object or array holding them, array items in
 * ascending order: the edits of one array are made in one pass. */
static int by_parent_then_index(const void *a, const void *b)
{
    const cmi_json_place_t *x = a, *y = b;
    if (x->parent != y->parent)
        return x->parent < y->parent ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index ? 1 : 0;
}

/* The places sorted (a copy in the message's arena), every parent held
 * until cmi_enrich_places_release(): a place whose parent an earlier edit
 * took out of the document (paths reaching nested parts) stays valid
 * memory, and its edit changes nothing visible. */
static cmi_json_place_t *places_hold(cmi_msg_t *msg, const cmi_json_place_t *given, size_t n)
{
    cmi_json_place_t *places = cmi_arena_memdup(msg->arena, given, n * sizeof(*given));
    qsort(places, n, sizeof(*places), by_parent_then_index);
    for (size_t i = 0; i < n; i++)
        json_incref(places[i].parent);
    return places;
}

static void places_release(cmi_json_place_t *places, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(places[i].parent);
}

/* The places [*i, end) of one array, applied in one pass: the items at
 * them removed (v NULL), or each followed by a copy of v.  An insert or a
 * removal per place would move the rest of the array each time: quadratic
 * in a path such as $.items[*]. */
static void rebuild_array(json_t *arr, const cmi_json_place_t *p, size_t n, json_t *v)
{
    json_t *out = json_array();
    size_t k = 0, len = json_array_size(arr);
    for (size_t i = 0; i < len; i++) {
        int hit = 0;
        for (; k < n && p[k].index == i; k++)
            hit = 1;
        if (!hit || v != NULL)
            json_array_append(out, json_array_get(arr, i));
        if (hit && v != NULL)
            json_array_append_new(out, json_deep_copy(v));
    }
    json_array_clear(arr);
    json_array_extend(arr, out);
    json_decref(out);
}

/* The end of the group of places sharing places[i]'s parent. */
static size_t group_end(const cmi_json_place_t *places, size_t n, size_t i)
{
    size_t j = i;
    while (j < n && places[j].parent == places[i].parent)
        j++;
    return j;
}

/* Adds v inside node: an array gets a copy last, an object the fields of
 * an object. */
static int add_child(cmi_msg_t *msg, json_t *node, json_t *v)
{
    if (json_is_array(node))
        return json_array_append_new(node, json_deep_copy(v));
    if (json_is_object(node) && json_is_object(v))
        return json_object_update(node, v);
    return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL,
                             "enrich: a child can be added to an array, or an object's fields to an object, not to %s",
                             json_is_object(node) ? "an object (the source is not an object)" : "a JSON value");
}

/* Beside array items: a copy after each (one pass per array); beside an
 * object's field: the fields of an object source. */
static int add_siblings(cmi_msg_t *msg, const cmi_json_place_t *places, size_t n, json_t *v)
{
    for (size_t i = 0; i < n;) {
        size_t end = group_end(places, n, i);
        const cmi_json_place_t *p = &places[i];
        if (p->parent != NULL && p->key == NULL) {
            rebuild_array(p->parent, p, end - i, v);
        } else if (p->parent != NULL && json_is_object(v)) {
            json_object_update(p->parent, v);
        } else {
            return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL,
                                     "enrich: a sibling is added beside an item of an array, or as fields beside a "
                                     "field, not beside %s",
                                     p->parent == NULL ? "the whole document" : "a field (the source is not an object)");
        }
        i = end;
    }
    return 0;
}

/* The text of a key target's source, without the blanks around it (an
 * inline source is written on a line of its own). */
static const char *new_key(cmi_msg_t *msg, const cmi_value_t *src)
{
    size_t len;
    const char *name = cmi_value_to_text(msg->arena, src, &len);
    while (len > 0 && (*name == ' ' || *name == '\n' || *name == '\r' || *name == '\t'))
        name++, len--;
    while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\n' || name[len - 1] == '\r' || name[len - 1] == '\t'))
        len--;
    return cmi_arena_strndup(msg->arena, name, len);
}

/* Renames the fields at the places, keeping each in its place among its
 * object's fields: one rebuild per object, whatever number of its fields
 * the path names. */
static int rename_fields(cmi_msg_t *msg, const cmi_json_place_t *places, size_t n, const char *name)
{
    for (size_t i = 0; i < n;) {
        size_t end = group_end(places, n, i);
        json_t *obj = places[i].parent, *keys = json_object();
        for (; i < end; i++) {
            if (places[i].key == NULL) {
                json_decref(keys);
                return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: a key target must name an object's field");
            }
            json_object_set_new(keys, places[i].key, json_true());
        }
        json_t *renamed = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(obj, k, v) json_object_set(renamed, json_object_get(keys, k) ? name : k, v);
        json_object_clear(obj);
        json_object_update(obj, renamed);
        json_decref(renamed);
        json_decref(keys);
    }
    return 0;
}

/* Copies of the source at n places may not pass the view limit: a small
 * payload with many places and a large source would otherwise grow the
 * message by their product. */
int cmi_enrich_within_limit(cmi_msg_t *msg, const cmi_value_t *src, size_t n)
{
    size_t each = 0;
    if (src->type == CMI_VAL_JSON)
        each = json_dumpb(src->u.json, NULL, 0, JSON_COMPACT);
    else
        cmi_value_to_text(msg->arena, src, &each);
    if (n <= 1 || each <= cmi_msg_view_limit() / n)
        return 0;
    return cmi_msg_set_error(msg, CMI_ERR_PAYLOAD_TOO_LARGE, NULL,
                             "enrich: %zu copies of a %zu-byte source would pass the view limit (%zu bytes)", n, each,
                             cmi_msg_view_limit());
}

static int replace_at(json_t **doc, const cmi_json_place_t *places, size_t n, json_t *v)
{
    for (size_t i = 0; i < n; i++) {
        const cmi_json_place_t *p = &places[i];
        if (p->parent == NULL) {
            json_decref(*doc);
            *doc = json_deep_copy(v);
        } else if ((p->key ? json_object_set_new(p->parent, p->key, json_deep_copy(v))
                           : json_array_set_new(p->parent, p->index, json_deep_copy(v))) != 0) {
            return -1;
        }
    }
    return 0;
}

static int edit_places(cmi_msg_t *msg, json_t **doc, const cmi_json_place_t *places, size_t n,
                       cmi_enrich_action_t action, json_t *v)
{
    if (action == CMI_ENRICH_REPLACE)
        return replace_at(doc, places, n, v) == 0 ? 0 : cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL,
                                                                          "enrich: the JSON edit failed");
    if (action == CMI_ENRICH_SIBLING)
        return add_siblings(msg, places, n, v);
    for (size_t i = 0; i < n; i++) { /* child */
        const cmi_json_place_t *p = &places[i];
        json_t *node = p->parent == NULL ? *doc
                       : p->key         ? json_object_get(p->parent, p->key)
                                        : json_array_get(p->parent, p->index);
        if (add_child(msg, node, v) != 0)
            return CMI_FLOW_ERROR;
    }
    return 0;
}

int cmi_enrich_json_at(cmi_msg_t *msg, json_t **doc, const cmi_json_place_t *given, size_t n,
                       cmi_enrich_action_t action, const cmi_value_t *src)
{
    if (action != CMI_ENRICH_RENAME && cmi_enrich_within_limit(msg, src, n) != 0)
        return CMI_FLOW_ERROR;
    cmi_json_place_t *places = places_hold(msg, given, n);
    int rc;
    if (action == CMI_ENRICH_RENAME) {
        rc = rename_fields(msg, places, n, new_key(msg, src));
    } else {
        json_t *v = cmi_enrich_as_json(msg, src);
        rc = edit_places(msg, doc, places, n, action, v);
        json_decref(v);
    }
    places_release(places, n);
    return rc == 0 ? 0 : CMI_FLOW_ERROR;
}

void cmi_enrich_json_remove(json_t **doc, const cmi_json_place_t *given, size_t n, cmi_msg_t *msg)
{
    cmi_json_place_t *places = places_hold(msg, given, n);
    for (size_t i = 0; i < n;) {
        size_t end = group_end(places, n, i);
        if (places[i].parent == NULL) {
            json_decref(*doc);
            *doc = json_null();
        } else if (places[i].key == NULL) {
            rebuild_array(places[i].parent, &places[i], end - i, NULL);
        } else {
            for (size_t k = i; k < end; k++)
                json_object_del(places[k].parent, places[k].key);
        }
        i = end;
    }
    places_release(places, n);
}

/* ---- XML ------------------------------------------------------------------------- */

int cmi_enrich_xml_at(cmi_msg_t *msg, xmlNodePtr target, cmi_enrich_action_t action, const cmi_value_t *src,
                      xmlNodePtr replaced)
{
    xmlNodePtr node = cmi_enrich_as_xml(msg, src, target->doc);
    int text = node->type == XML_TEXT_NODE;
    if (target->type == XML_ATTRIBUTE_NODE || target->type == XML_TEXT_NODE) {
        if (action != CMI_ENRICH_REPLACE) {
            xmlFreeNode(node);
            return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: an attribute or a text can only be replaced");
        }
        xmlChar *t = xmlNodeGetContent(node);
        xmlNodeSetContent(target, t);
        xmlFree(t);
        xmlFreeNode(node);
        return 0;
    }
    if (target->type != XML_ELEMENT_NODE) {
        xmlFreeNode(node);
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: the target is not an element, attribute or text");
    }
    switch (action) {
    case CMI_ENRICH_REPLACE:
        if (text) { /* text replaces what the element holds, as MI does */
            xmlChar *t = xmlNodeGetContent(node);
            xmlNodeSetContent(target, t);
            xmlFree(t);
            xmlFreeNode(node);
        } else {
            xmlReplaceNode(target, node);
            xmlAddChild(replaced, target); /* freed by the caller, after whatever still points at it */
        }
        break;
    case CMI_ENRICH_CHILD:
        xmlAddChild(target, node);
        break;
    case CMI_ENRICH_SIBLING:
        if (target->parent == NULL || target->parent->type == XML_DOCUMENT_NODE) {
            xmlFreeNode(node);
            return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: the document's root element has no sibling");
        }
        xmlAddNextSibling(target, node);
        break;
    default:
        xmlFreeNode(node);
        return cmi_msg_set_error(msg, CMI_ERR_MEDIATION, NULL, "enrich: remove and key targets are for JSON only (as in MI)");
    }
    /* Declarations the new node repeats from its new ancestors go, as MI's
     * serialiser writes it (1: libxml2's XML_DOM_RECONNS_REMOVEREDUND, an
     * option tree.c defines but no header exports). */
    if (!text && node->parent != NULL)
        xmlDOMWrapReconcileNamespaces(NULL, node, 1);
    return 0;
}

const char *cmi_enrich_markup(cmi_msg_t *msg, xmlNodePtr node, size_t *len)
{
    xmlBufferPtr buf = xmlBufferCreate();
    xmlNodeDump(buf, node->doc, node, 0, 0);
    *len = (size_t)xmlBufferLength(buf);
    const char *s = cmi_arena_strndup(msg->arena, (const char *)xmlBufferContent(buf), *len);
    xmlBufferFree(buf);
    return s;
}
