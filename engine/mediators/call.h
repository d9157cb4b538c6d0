/* Endpoints (named in endpoints/, or inline in <call>) and the call
 * mediator (mediators/call.c). */
#ifndef CMI_MEDIATORS_CALL_H
#define CMI_MEDIATORS_CALL_H

#include <libxml/tree.h>
#include <stdint.h>

#include "config/compile.h"

struct cmi_template;

typedef struct cmi_endpoint {
    const char *name;  /* NULL inline */
    const char *where; /* file:line */
    const char *method; /* <http method>, upper case; NULL: the message's */
    const struct cmi_template *uri; /* ${...} rendered, then {uri.var.X} expanded */
    uint64_t timeout_ms;            /* 0: 60 s */
} cmi_endpoint_t;

/* An <endpoint> element (artifact or inline); NULL after reporting. */
cmi_endpoint_t *cmi_compile_endpoint(cmi_compile_t *cc, xmlNodePtr node);

#endif
