#include "config.h"

#include "http/dispatch.h"

#include <string.h>

struct cmi_dispatch {
    cmi_htab_t contexts; /* effective context -> cmi_api_t */
    cmi_htab_t proxies;  /* name -> cmi_proxy_t */
};

#define SERVICES "/services/"
#define SERVICES_LEN (sizeof(SERVICES) - 1)

cmi_dispatch_t *cmi_dispatch_build(cmi_config_t *config, cmi_diag_t *diag)
{
    cmi_dispatch_t *d = cmi_arena_calloc(config->arena, 1, sizeof(*d));
    cmi_htab_init(&d->contexts, config->arena);
    for (size_t i = 0; i < config->napis; i++) {
        cmi_api_t *api = config->apis[i];
        const cmi_api_t *prev = cmi_htab_put(&d->contexts, api->context, strlen(api->context), api);
        if (prev != NULL)
            cmi_diag_error(diag, api->file, api->line,
                           "<api name=\"%s\">: context '%s' is already used by API '%s' (%s:%d)", api->name,
                           *api->context ? api->context : "/", prev->name, prev->file, prev->line);
    }
    cmi_htab_init(&d->proxies, config->arena);
    for (size_t i = 0; i < config->nproxies; i++) {
        cmi_proxy_t *p = config->proxies[i];
        const cmi_proxy_t *prev = cmi_htab_put(&d->proxies, p->api.name, strlen(p->api.name), p);
        if (prev != NULL)
            cmi_diag_error(diag, p->api.file, p->api.line,
                           "<proxy name=\"%s\">: a proxy of that name is already deployed (%s:%d)", p->api.name,
                           prev->api.file, prev->api.line);
    }
    return d;
}

/* The endpoint names Axis2 gives a service's bindings, which MI serves at
 * /services/NAME.NAME<suffix> besides /services/NAME. */
static const char *const port_suffixes[] = {
    "HttpSoap11Endpoint", "HttpSoap12Endpoint", "HttpEndpoint",
    "HttpsSoap11Endpoint", "HttpsSoap12Endpoint", "HttpsEndpoint",
};

/* The proxy a service segment names: NAME, or NAME.NAME<suffix>.  A name
 * may hold dots itself, so the split is found from each suffix's length
 * (the segment is 2 * |NAME| + 1 + |suffix| long), never by trying every
 * dot: a hostile segment of many dots costs six lookups. */
static const cmi_proxy_t *find_proxy(const cmi_dispatch_t *d, const char *seg, size_t len)
{
    const cmi_proxy_t *p = cmi_htab_get(&d->proxies, seg, len);
    if (p != NULL || d->proxies.count == 0)
        return p;
    for (size_t i = 0; i < sizeof(port_suffixes) / sizeof(port_suffixes[0]); i++) {
        size_t slen = strlen(port_suffixes[i]);
        if (len < slen + 3 || (len - slen - 1) % 2 != 0)
            continue;
        size_t n = (len - slen - 1) / 2;
        if (seg[n] != '.' || memcmp(seg, seg + n + 1, n) != 0 || memcmp(seg + 2 * n + 1, port_suffixes[i], slen) != 0)
            continue;
        if ((p = cmi_htab_get(&d->proxies, seg, n)) != NULL)
            return p;
    }
    return NULL;
}

/* A proxy service's request: /services/NAME[.NAME<suffix>][/anything]. */
static int find_proxy_request(const cmi_dispatch_t *d, const char *path, size_t len, cmi_dispatch_result_t *r)
{
    if (len <= SERVICES_LEN || memcmp(path, SERVICES, SERVICES_LEN) != 0)
        return 0;
    const char *seg = path + SERVICES_LEN;
    const char *slash = memchr(seg, '/', len - SERVICES_LEN);
    size_t slen = slash ? (size_t)(slash - seg) : len - SERVICES_LEN;
    const cmi_proxy_t *p = find_proxy(d, seg, slen);
    if (p == NULL)
        return 0;
    r->api = &p->api;
    r->resource = &p->resource;
    r->ctx_len = SERVICES_LEN + slen;
    r->sub_path = r->ctx_len < len ? path + r->ctx_len : "/";
    r->sub_len = r->ctx_len < len ? len - r->ctx_len : 1;
    return 1;
}

static const cmi_api_t *find_api(const cmi_dispatch_t *d, const char *path, size_t len, size_t *ctx_len)
{
    /* Longest first: the whole path, then each shorter prefix that ends at
     * a segment boundary, down to the root context "". */
    size_t n = len;
    for (;;) {
        const cmi_api_t *api = cmi_htab_get(&d->contexts, path, n);
        if (api != NULL) {
            *ctx_len = n;
            return api;
        }
        if (n == 0)
            return NULL;
        while (n > 0 && path[n - 1] != '/')
            n--;
        if (n > 0)
            n--; /* drop the '/' itself */
    }
}

int cmi_dispatch_find(const cmi_dispatch_t *d, unsigned method_bit, const char *path, size_t len,
                      const char *query, size_t qlen, cmi_dispatch_result_t *r)
{
    memset(r, 0, offsetof(cmi_dispatch_result_t, bindings));
    r->nbindings = 0;
    r->allow = 0;
    /* Proxy services first, as MI's Axis2 dispatch finds a service before
     * Synapse looks for an API. */
    if (find_proxy_request(d, path, len, r))
        return CMI_DISPATCH_FOUND;
    size_t plen = len > 1 && path[len - 1] == '/' ? len - 1 : len;
    size_t ctx_len;
    const cmi_api_t *api = find_api(d, path, plen, &ctx_len);
    if (api == NULL)
        return CMI_DISPATCH_NO_API;
    r->api = api;
    r->ctx_len = ctx_len;
    r->sub_path = ctx_len < len ? path + ctx_len : "/";
    r->sub_len = ctx_len < len ? len - ctx_len : 1;
    for (size_t i = 0; i < api->count; i++) {
        const cmi_resource_t *res = api->resources[i];
        size_t nb = 0;
        if (res->match != NULL &&
            !cmi_pathmatch_match(res->match, r->sub_path, r->sub_len, query, qlen, r->bindings, &nb))
            continue;
        if (res->methods & method_bit) {
            r->resource = res;
            r->nbindings = nb;
            return CMI_DISPATCH_FOUND;
        }
        r->allow |= res->methods;
    }
    return r->allow ? CMI_DISPATCH_NO_METHOD : CMI_DISPATCH_NO_API;
}
