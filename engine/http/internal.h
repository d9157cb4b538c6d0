/* The internal port (MI's 9201; docs/operations.md, "Metrics and health"),
 * served by the service worker, loopback by default:
 *   GET /metric-service/metrics   Prometheus text: MI's metric families,
 *                                 the engine's and the connectors' own
 *   GET /healthz                  readiness: 200 {"status":"ready"}, or 503
 *                                 with the reasons
 *   GET /liveness                 200 {"server" : "started"} (MI's, verbatim) */
#ifndef CMI_HTTP_INTERNAL_H
#define CMI_HTTP_INTERNAL_H

typedef struct cmi_engine cmi_engine_t;

/* Configures engine->h2o_internal: limits and the one handler. */
void cmi_internal_configure(cmi_engine_t *engine);

#endif
