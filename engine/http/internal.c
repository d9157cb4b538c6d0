#include "config.h"

#include "http/internal.h"

#include <string.h>

#include "core/arena.h"
#include "core/str.h"
#include "engine.h"
#include "http/answer.h"
#include "plugin/plugin.h"
#include "runtime/metrics.h"

typedef struct {
    h2o_handler_t super;
    cmi_engine_t *engine;
} internal_handler_t;

/* MI's internal dispatcher: the context itself, or it followed by '/'. */
static int is_path(h2o_iovec_t path, const char *context)
{
    size_t n = strlen(context);
    return path.len >= n && memcmp(path.base, context, n) == 0 && (path.len == n || (path.len == n + 1 && path.base[n] == '/'));
}

static const char *phase_reason(int phase)
{
    return phase == CMI_PHASE_STARTING ? "the deployment is starting"
         : phase == CMI_PHASE_DRAINING ? "the deployment is draining (shutting down)"
                                       : NULL;
}

/* Why the engine is not ready, as JSON strings in reasons; the number of
 * them.  metrics: where the connectors' samples go (NULL: none wanted). */
static size_t readiness(cmi_engine_t *e, cmi_strbuf_t *reasons, cmi_strbuf_t *metrics)
{
    size_t n = 0;
    const char *why = phase_reason(atomic_load(&e->phase));
    if (why != NULL) {
        cmi_strbuf_printf(reasons, "\"%s\"", why);
        n++;
    }
    /* While starting or draining the connectors' objects may be half made
     * or gone: their hooks are asked only while the deployment serves. */
    if (why == NULL)
        cmi_connectors_report(e, e->settings.readiness, metrics, reasons, &n);
    return n;
}

/* MI's body with its fields first (version, update_level, status), and
 * the reasons when not ready. */
static int healthz(cmi_engine_t *e, h2o_req_t *req, cmi_arena_t *a)
{
    cmi_strbuf_t reasons;
    cmi_strbuf_init(&reasons, a, 256);
    size_t n = readiness(e, &reasons, NULL);
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, a, 256 + reasons.len);
    cmi_strbuf_puts(&b, "{\"version\":\"" PACKAGE_VERSION "\",\"update_level\":\"-\",");
    if (n == 0)
        cmi_strbuf_puts(&b, "\"status\":\"ready\"}");
    else
        cmi_strbuf_printf(&b, "\"status\":\"not ready\",\"reasons\":[%s]}", reasons.data);
    return cmi_http_answer(req, n == 0 ? 200 : 503, "application/json", b.data, b.len);
}

static int metrics(cmi_engine_t *e, h2o_req_t *req, cmi_arena_t *a)
{
    if (e->metrics == NULL) {
        static const char off[] = "{\"error\":{\"code\":404,\"message\":\"metrics are off (--metrics false or "
                                  "<internal metrics=\\\"false\\\">)\"}}";
        return cmi_http_answer(req, 404, "application/json", off, sizeof(off) - 1);
    }
    cmi_strbuf_t b, reasons;
    cmi_strbuf_init(&b, a, 16384);
    cmi_strbuf_init(&reasons, a, 256);
    cmi_metrics_render(e->metrics, e->config, &b);
    size_t n = readiness(e, &reasons, &b);
    cmi_metrics_family(&b, "cmi_ready", "gauge", "1 when GET /healthz answers 200 (ready), else 0.");
    cmi_strbuf_printf(&b, "cmi_ready %d\n", n == 0);
    return cmi_http_answer(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    cmi_engine_t *e = ((internal_handler_t *)self)->engine;
    h2o_iovec_t path = req->path_normalized;
    int which = is_path(path, "/metric-service/metrics") ? 1 : is_path(path, "/healthz") ? 2
              : is_path(path, "/liveness")               ? 3
                                                         : 0;
    if (which == 0) {
        static const char none[] = "{\"error\":{\"code\":404,\"message\":\"the internal port serves "
                                   "/metric-service/metrics, /healthz and /liveness\"}}";
        return cmi_http_answer(req, 404, "application/json", none, sizeof(none) - 1);
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        static const char no[] = "{\"error\":{\"code\":405,\"message\":\"only GET\"}}";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        return cmi_http_answer(req, 405, "application/json", no, sizeof(no) - 1);
    }
    if (which == 3) {
        static const char live[] = "{\"server\" : \"started\"}"; /* MI's, byte for byte */
        return cmi_http_answer(req, 200, "application/json", live, sizeof(live) - 1);
    }
    cmi_arena_t *a = cmi_arena_create(0);
    int rc = which == 1 ? metrics(e, req, a) : healthz(e, req, a);
    cmi_arena_destroy(a); /* cmi_http_answer copied the body */
    return rc;
}

void cmi_internal_configure(cmi_engine_t *engine)
{
    h2o_globalconf_t *g = &engine->h2o_internal;
    h2o_config_init(g);
    g->server_name = h2o_iovec_init(H2O_STRLIT("cmi/" PACKAGE_VERSION));
    g->max_request_entity_size = 64 * 1024; /* it takes no bodies */
    g->http1.req_timeout = engine->settings.idle_timeout_ms;
    /* HTTP/1.1 only: libh2o 2.2.5 has no defence of its own against the
     * HTTP/2 rapid reset, and a scraper or a probe needs no HTTP/2. */
    g->http1.upgrade_to_http2 = 0;
    g->http2.idle_timeout = engine->settings.idle_timeout_ms;
    h2o_hostconf_t *host = h2o_config_register_host(g, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    internal_handler_t *h = (internal_handler_t *)h2o_create_handler(path, sizeof(*h));
    h->super.on_req = on_req;
    h->engine = engine;
}
