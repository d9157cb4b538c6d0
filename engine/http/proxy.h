/* What the HTTP layer does for a proxy service besides running its flow
 * (docs/mi-compatibility.md, "Proxy services"): the answers MI's Axis2
 * gives before mediation (an inactive service, a transport or binding it
 * does not take, ?wsdl, inbound.only) and the operation a request names. */
#ifndef CMI_HTTP_PROXY_H
#define CMI_HTTP_PROXY_H

#include <h2o.h>

#include "config/config.h"
#include "runtime/msg.h"

/* Answers what is answered before a message exists; returns 1 when it did.
 * tls, port: whether the request came over HTTPS, and the port of the
 * listener it came to (the transport a proxy takes, the addresses of a
 * served WSDL). */
int cmi_proxy_http_early(h2o_req_t *req, const cmi_proxy_t *p, const char *query, size_t qlen, int tls, int port);

/* GET /services (MI's list of services, blocked by default): 403.
 * Returns 1 when it answered. */
int cmi_proxy_http_service_list(h2o_req_t *req, const char *path, size_t len);

/* Sets msg->operation to the operation the request names (a published
 * WSDL's, by SOAPAction, by the path after the service, or by the Body's
 * first element; "mediate" without one).  When a published WSDL has none
 * of them, answers Axis2's SOAP fault and returns -1. */
int cmi_proxy_http_operation(h2o_req_t *req, const cmi_proxy_t *p, cmi_msg_t *msg);

#endif
