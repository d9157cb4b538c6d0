/* Expressions (docs/mediators.md, "Expressions"): the ${...} Synapse
 * expression language, the legacy forms (get-property(), $ctx:, $trp:,
 * $axis2:, json-eval()) and plain XPath 1.0 over XML payloads.
 *
 * Everything is parsed once, at load, into a tree in the configuration
 * arena; evaluating an expression walks that tree against a message and
 * yields a typed value (null, boolean, number, string, JSON) whose storage
 * is the message's arena.  Payload views come from the message, parsed at
 * most once however many expressions read them.
 *
 * Missing data is never an error: a missing payload field, variable,
 * header or property is null.  A type mismatch (multiplying a string, say)
 * is a mediation error with a message that names the expression. */
#ifndef CMI_EXPR_EXPR_H
#define CMI_EXPR_EXPR_H

#include <jansson.h>
#include <libxml/tree.h>
#include <stddef.h>

#include "core/arena.h"
#include "core/str.h"
#include "runtime/value.h"

typedef struct cmi_msg cmi_msg_t;
typedef struct cmi_expr cmi_expr_t;
typedef struct cmi_template cmi_template_t;

typedef struct cmi_expr_error {
    const char *message; /* arena string */
    size_t offset;       /* byte offset in the text given to the compiler */
} cmi_expr_error_t;

/* Compiles an attribute's expression: "${...}" is the Synapse language;
 * "json-eval(...)" a JSON path; anything else XPath 1.0 with Synapse's
 * functions and variables, its prefixes bound from the namespaces in scope
 * at ns_scope (may be NULL).  NULL with *err on a syntax error. */
cmi_expr_t *cmi_expr_compile(cmi_arena_t *arena, const char *text, xmlNodePtr ns_scope, cmi_expr_error_t *err);

/* Compiles the text between "${" and "}". */
cmi_expr_t *cmi_expr_compile_synapse(cmi_arena_t *arena, const char *text, size_t len, cmi_expr_error_t *err);

/* The text the expression was compiled from (for messages). */
const char *cmi_expr_text(const cmi_expr_t *e);

/* Evaluates e for msg.  Returns 0, or CMI_FLOW_ERROR with the message's
 * error slot set (CMI_ERR_EXPRESSION, or CMI_ERR_PAYLOAD when the payload
 * cannot be parsed).  Strings and JSON in *out live in the message. */
int cmi_expr_eval(const cmi_expr_t *e, cmi_msg_t *msg, cmi_value_t *out);

/* Evaluates e as a condition (docs/mediators.md, "Conditions"): a boolean
 * is itself; a string is true only when it is "true" in any case; a number
 * when non-zero; null or missing is false; other JSON is true. */
int cmi_expr_eval_bool(const cmi_expr_t *e, cmi_msg_t *msg, int *out);

/* Evaluates e to text (strings as they are, JSON compact, null ""). */
int cmi_expr_eval_text(const cmi_expr_t *e, cmi_msg_t *msg, const char **text, size_t *len);

/* The truth rules above applied to a value. */
int cmi_value_truth(const cmi_value_t *v);

/* ---- places: where a JSON path points, for mediators that edit JSON ---- */

typedef struct {
    json_t *parent;  /* the object or array holding the place; NULL: the document itself */
    const char *key; /* the field, in an object (message arena); NULL in an array */
    size_t index;    /* the item, in an array */
} cmi_json_place_t;

/* Whether e is a JSON path over the payload (json-eval($...), ${payload...})
 * whose places can be found: no function step, not ending in a deep scan. */
int cmi_expr_is_json_path(const cmi_expr_t *e);
/* The existing places e's path reaches in root (the path's "$" stands for
 * root), in document order, in the message's arena.  Returns 0, or
 * CMI_FLOW_ERROR with the error slot set (a filter that failed). */
int cmi_expr_json_places(const cmi_expr_t *e, cmi_msg_t *msg, json_t *root, cmi_json_place_t **places, size_t *n);

/* ---- XPath nodes to edit --------------------------------------------------- */

/* Whether e is plain XPath (not ${...} nor json-eval()). */
int cmi_expr_is_xpath(const cmi_expr_t *e);
/* A new document holding the payload as XPath sees it (inside a SOAP
 * envelope; a JSON payload as MI's XML form), the caller's to free; NULL
 * with the error slot set (e, which may be NULL, names the expression in
 * the message). */
xmlDocPtr cmi_expr_payload_doc(const cmi_expr_t *e, cmi_msg_t *msg);
/* Evaluates the XPath e over doc: the result, the caller's to free
 * (xmlXPathFreeObject), or NULL with the error slot set. */
struct _xmlXPathObject *cmi_expr_xpath_select(const cmi_expr_t *e, cmi_msg_t *msg, xmlDocPtr doc);

/* ---- templates: text with embedded ${...} ------------------------------- */

typedef enum {
    CMI_TEMPLATE_TEXT = 0, /* values inserted as text (log messages, parameters) */
    CMI_TEMPLATE_JSON,     /* JSON-aware: escaped inside strings, JSON outside */
    CMI_TEMPLATE_XML       /* values XML-escaped, XML values inserted as XML */
} cmi_template_mode_t;

/* Compiles text; with legacy_args > 0, $1..$N are placeholders for the
 * payloadFactory's <args>.  NULL with *err (offset into text). */
cmi_template_t *cmi_template_compile(cmi_arena_t *arena, const char *text, cmi_template_mode_t mode,
                                     size_t legacy_args, cmi_expr_error_t *err);
/* Whether the text has any ${...} or $N placeholder. */
int cmi_template_is_literal(const cmi_template_t *t);
/* Renders t for msg into out (an arena buffer); args are the evaluated
 * legacy arguments (may be NULL when there are none).  Returns 0 or
 * CMI_FLOW_ERROR with the error slot set. */
int cmi_template_render(const cmi_template_t *t, cmi_msg_t *msg, const cmi_value_t *args, size_t nargs,
                        cmi_strbuf_t *out);

/* Appends v to out as JSON (strings quoted and escaped). */
void cmi_json_append_value(cmi_strbuf_t *out, const cmi_value_t *v, cmi_arena_t *arena);
/* Appends text escaped for the inside of a JSON string. */
void cmi_json_append_escaped(cmi_strbuf_t *out, const char *s, size_t len);

#endif
