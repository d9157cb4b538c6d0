/* Request dispatch (docs/operations.md, "HTTP behaviour"): API by the
 * longest context that is a segment-wise prefix of the path, then the first
 * resource of that API, in document order, whose pattern and method match.
 *
 * Contexts sit in a hash table, and a path of n segments costs at most n+1
 * lookups, whatever the number of APIs deployed: 1,000 APIs dispatch as
 * fast as one.  Only the matched API's resources are tried in order. */
#ifndef CMI_HTTP_DISPATCH_H
#define CMI_HTTP_DISPATCH_H

#include "config/config.h"
#include "config/diag.h"
#include "http/pathmatch.h"

enum { CMI_DISPATCH_FOUND = 0, CMI_DISPATCH_NO_API = 404, CMI_DISPATCH_NO_METHOD = 405 };

typedef struct {
    const cmi_api_t *api;
    const cmi_resource_t *resource;
    const char *sub_path; /* slice of path after the context ("/" when empty) */
    size_t sub_len;
    size_t ctx_len;       /* length of the matched context in path */
    cmi_path_binding_t bindings[CMI_MAX_BINDINGS];
    size_t nbindings;
    unsigned allow; /* for 405: methods of the resources whose pattern matched */
} cmi_dispatch_result_t;

/* Builds the table for config; duplicate contexts are reported through
 * diag.  The table lives in the configuration arena. */
cmi_dispatch_t *cmi_dispatch_build(cmi_config_t *config, cmi_diag_t *diag);

/* path: the normalised path without query; query: after '?', may be empty. */
int cmi_dispatch_find(const cmi_dispatch_t *d, unsigned method_bit, const char *path, size_t path_len,
                      const char *query, size_t query_len, cmi_dispatch_result_t *r);

#endif
