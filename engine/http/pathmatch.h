/* Resource path matching: MI's uri-template and url-mapping.
 *
 * uri-template: "/orders/{id}", "/items/{id}.json", "/files/{+path}" (the
 * last variable may take the rest of the path, slashes included), and a
 * query part "?q={q}&lang=en" whose parameters must be present.  A
 * variable matches a non-empty run of characters other than '/'.
 * url-mapping: a prefix ("/x/" followed by '*', which matches "/x" too),
 * "*.ext", or an exact path.
 *
 * Both sides are compared without a trailing '/' ("/orders/" matches
 * "/orders"), and the path is the one h2o normalised ("." and ".."
 * resolved, unreserved characters decoded).  Bound values are the raw
 * slices of the request; the caller percent-decodes them into the message. */
#ifndef CMI_HTTP_PATHMATCH_H
#define CMI_HTTP_PATHMATCH_H

#include <stddef.h>

#include "core/arena.h"

#define CMI_MAX_BINDINGS 16

typedef struct cmi_pathmatch cmi_pathmatch_t;

typedef struct {
    const char *name;
    const char *value; /* raw slice of the request path or query */
    size_t value_len;
    int from_query;
} cmi_path_binding_t;

/* NULL with *err (arena string) when the pattern is malformed. */
cmi_pathmatch_t *cmi_pathmatch_compile_template(cmi_arena_t *arena, const char *tmpl, const char **err);
cmi_pathmatch_t *cmi_pathmatch_compile_mapping(cmi_arena_t *arena, const char *mapping, const char **err);

/* Matches path (no query) and query (after '?', may be empty).  On a match
 * returns 1 and fills up to CMI_MAX_BINDINGS bindings. */
int cmi_pathmatch_match(const cmi_pathmatch_t *pm, const char *path, size_t path_len, const char *query,
                        size_t query_len, cmi_path_binding_t *bindings, size_t *nbindings);

/* Looks up a raw query parameter by name; 1 when present. */
int cmi_query_find(const char *query, size_t query_len, const char *name, size_t name_len,
                   const char **value, size_t *value_len);

#endif
