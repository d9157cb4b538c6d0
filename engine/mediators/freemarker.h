/* payloadFactory template-type="freemarker" (mediators/freemarker.c): the
 * interpolations MI's documentation uses, rewritten at load into Synapse
 * expressions; the rest of FreeMarker is a load error naming it. */
#ifndef CMI_MEDIATORS_FREEMARKER_H
#define CMI_MEDIATORS_FREEMARKER_H

#include <libxml/tree.h>

#include "config/compile.h"

/* text with each ${path} rewritten (config arena), or NULL after reporting
 * at node. */
const char *cmi_freemarker_rewrite(cmi_compile_t *cc, xmlNodePtr node, const char *text);
/* The same for every text and attribute value under node, in place;
 * returns 0 or -1 after reporting. */
int cmi_freemarker_rewrite_tree(cmi_compile_t *cc, xmlNodePtr node);

#endif
