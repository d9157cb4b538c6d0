/* The HTTP listener: one h2o handler that dispatches every request to an
 * API resource, turns it into a message and answers from the message. */
#ifndef CMI_HTTP_SERVER_H
#define CMI_HTTP_SERVER_H

#include <h2o.h>

typedef struct cmi_engine cmi_engine_t;
typedef struct cmi_worker cmi_worker_t;

/* Configures h2o's global config for the engine (limits, handler). */
void cmi_http_configure(cmi_engine_t *engine);
/* The request environment variable the access log's request id is read
 * from (http/access_log.c). */
#define CMI_ACCESS_LOG_ID "cmi-message-id"
/* Opens n listening sockets on host:port, one per worker, sharing the port
 * with SO_REUSEPORT (port 0: a free port, the same for all).  The start
 * is refused when anything else holds the port: the first socket binds
 * exclusively.  Returns 0 and the bound port, or -1 with a message in
 * err. */
int cmi_http_listen(const char *host, int port, int *fds, unsigned n, int *bound_port, char *err,
                    size_t errlen);
/* Starts accepting on the worker's listening socket (before its thread runs). */
void cmi_http_worker_accept(cmi_worker_t *w);

#endif
