/* The call mediator (mediators/call.c); the endpoints it calls are an
 * artifact kind of their own (config/endpoint.h). */
#ifndef CMI_MEDIATORS_CALL_H
#define CMI_MEDIATORS_CALL_H

#include "config/endpoint.h"

#endif
