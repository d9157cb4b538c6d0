/* The call mediator (mediators/call.c); the endpoints it calls are an
 * artifact kind of their own (config/endpoint.h). */
#ifndef CMI_MEDIATORS_CALL_H
#define CMI_MEDIATORS_CALL_H

#include "config/endpoint.h"

/* A proxy's target endpoint as the <send> element send: sent at the end of
 * the in sequence unless the flow already sent or called (non-blocking). */
cmi_mediator_t *cmi_compile_proxy_target(cmi_compile_t *cc, xmlNodePtr send);

#endif
