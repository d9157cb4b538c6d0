/* Compilers for each artifact kind (one root element each), called by the
 * loader in load order (docs/configuration.md, "Deployments").  Each
 * reports its problems through the compile context and registers what it
 * built in the configuration. */
#ifndef CMI_CONFIG_ARTIFACTS_H
#define CMI_CONFIG_ARTIFACTS_H

#include <libxml/tree.h>

#include "config/compile.h"

void cmi_artifact_local_entry(cmi_compile_t *cc, xmlNodePtr root);
void cmi_artifact_sequence(cmi_compile_t *cc, xmlNodePtr root);
void cmi_artifact_api(cmi_compile_t *cc, xmlNodePtr root);
void cmi_artifact_inbound(cmi_compile_t *cc, xmlNodePtr root);
void cmi_artifact_endpoint(cmi_compile_t *cc, xmlNodePtr root);
void cmi_artifact_proxy(cmi_compile_t *cc, xmlNodePtr root);
/* templates/, read before endpoints/: endpoint templates are defined,
 * sequence templates registered, their bodies compiled once sequences/ is
 * loaded (config/template.c). */
void cmi_artifact_template(cmi_compile_t *cc, xmlNodePtr root);
/* owner's inSequence, outSequence or faultSequence (which), given as an
 * attribute (a key, resolved later) or inline; *slot stays NULL when absent. */
void cmi_compile_handler(cmi_compile_t *cc, xmlNodePtr owner, const char *which, const cmi_sequence_t **slot);
/* Kinds cmi recognises but does not run yet (endpoints, templates, ...). */
void cmi_artifact_unsupported(cmi_compile_t *cc, xmlNodePtr root, const char *what, int is_error);

#endif
