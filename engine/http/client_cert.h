/* Client certificates past the handshake: what the flow sees of the one a
 * connection presented, and cmi's per-API handler that requires one
 * (docs/configuration.md, "API handlers").  The HTTPS listener verifies
 * them (verifyClient, caFile); these only read the verified one. */
#ifndef CMI_HTTP_CLIENT_CERT_H
#define CMI_HTTP_CLIENT_CERT_H

#include <h2o.h>

#include "config/config.h"
#include "runtime/msg.h"

/* Sets the axis2 properties MI's transport sets for a verified client
 * certificate (ssl.client.auth.cert.X509, here its PEM), with its
 * subject and issuer (ssl.client.auth.subject, ssl.client.auth.issuer,
 * RFC 2253).  Nothing without one. */
void cmi_client_cert_to_msg(cmi_msg_t *msg, h2o_socket_t *sock);

/* The API's ClientCertificateHandler: 0 when the connection presented a
 * verified certificate (whose subject matches the API's pattern, if it
 * has one); otherwise answers 403 and returns -1. */
int cmi_client_cert_check(h2o_req_t *req, h2o_socket_t *sock, const cmi_api_t *api);

#endif
