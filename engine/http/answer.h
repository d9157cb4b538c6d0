/* Answers the HTTP layer sends without a message (http/server.c). */
#ifndef CMI_HTTP_ANSWER_H
#define CMI_HTTP_ANSWER_H

#include <h2o.h>

/* The client's address as text in buf (NI_MAXHOST bytes), "?" when unknown:
 * for log lines about a refused request. */
const char *cmi_http_peer(h2o_req_t *req, char *buf, size_t size);

/* Sends status with body (copied; ctype NULL: no Content-Type).  Returns 0. */
int cmi_http_answer(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len);

#endif
