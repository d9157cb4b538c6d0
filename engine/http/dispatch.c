#include "config.h"

#include "http/dispatch.h"

#include <string.h>

struct cmi_dispatch {
    cmi_htab_t contexts; /* effective context -> cmi_api_t */
};

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
    return d;
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
