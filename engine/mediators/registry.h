/* The mediator registry: element name -> compile function.
 *
 * Each mediator lives in its own file with a compile function (XML element
 * in, compiled object out, errors with file:line) and a run function; this
 * table is the only place that lists them. */
#ifndef CMI_MEDIATORS_REGISTRY_H
#define CMI_MEDIATORS_REGISTRY_H

#include <libxml/tree.h>

#include "config/compile.h"

typedef cmi_mediator_t *(*cmi_mediator_compile_fn)(cmi_compile_t *cc, xmlNodePtr node);

typedef struct {
    const char *name;
    cmi_mediator_compile_fn compile;
} cmi_mediator_kind_t;

const cmi_mediator_kind_t *cmi_mediator_kind_find(const char *name);
/* A mediator MI defines that cmi does not implement yet. */
int cmi_mediator_is_mi_unsupported(const char *name);
/* Test-only mediators (testSuspend) are known only when the environment
 * variable CMI_TEST_MEDIATORS is 1; the loader reads it once. */
void cmi_mediator_enable_test_kinds(int enable);

cmi_mediator_t *cmi_compile_respond(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_drop(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_log(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_property(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_payload_factory(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_header(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_sequence_ref(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_test_suspend(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_variable(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_filter(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_switch(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_call(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_enrich(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_send(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_in(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_out(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_loopback(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_makefault(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_call_template(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_throw_error(cmi_compile_t *cc, xmlNodePtr node);
cmi_mediator_t *cmi_compile_xslt(cmi_compile_t *cc, xmlNodePtr node);

/* <then>/<else> children, or bare mediators as the then branch (filter). */
int cmi_compile_branches(cmi_compile_t *cc, xmlNodePtr node, const cmi_sequence_t **then_seq,
                         const cmi_sequence_t **else_seq);

#endif
