/* Unit tests: uri-template / url-mapping matching and API dispatch. */
#include "config.h"

#include <string.h>

#include "config/config.h"
#include "cu_main.h"
#include "http/dispatch.h"
#include "http/pathmatch.h"

static cmi_arena_t *arena;

static int setup(void)
{
    arena = cmi_arena_create(0);
    return 0;
}

static int teardown(void)
{
    cmi_arena_destroy(arena);
    return 0;
}

static const cmi_pathmatch_t *tmpl(const char *t)
{
    const char *err = NULL;
    cmi_pathmatch_t *pm = cmi_pathmatch_compile_template(arena, t, &err);
    if (pm == NULL)
        fprintf(stderr, "template %s: %s\n", t, err);
    return pm;
}

/* Matches path?query and returns the bindings as "name=value;..." */
static const char *match(const cmi_pathmatch_t *pm, const char *uri)
{
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    cmi_path_binding_t b[CMI_MAX_BINDINGS];
    size_t n = 0;
    if (!cmi_pathmatch_match(pm, uri, plen, q ? q + 1 : "", q ? strlen(q + 1) : 0, b, &n))
        return NULL;
    static char out[256];
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char one[64];
        snprintf(one, sizeof(one), "%s%s=%.*s", i ? ";" : "", b[i].name, (int)b[i].value_len, b[i].value);
        strcat(out, one);
    }
    return out;
}

#define ASSERT_MATCH(pm, uri, expected)                                                            \
    do {                                                                                           \
        const char *got_ = match(pm, uri);                                                         \
        CU_ASSERT_PTR_NOT_NULL_FATAL(got_);                                                        \
        CU_ASSERT_STRING_EQUAL(got_, expected);                                                    \
    } while (0)
#define ASSERT_NO_MATCH(pm, uri) CU_ASSERT_PTR_NULL(match(pm, uri))

static void test_template_literals_and_vars(void)
{
    const cmi_pathmatch_t *pm = tmpl("/orders/{id}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pm);
    ASSERT_MATCH(pm, "/orders/42", "id=42");
    ASSERT_MATCH(pm, "/orders/42/", "id=42"); /* trailing slash */
    ASSERT_MATCH(pm, "/orders/a%20b", "id=a%20b"); /* raw: decoded later */
    ASSERT_MATCH(pm, "/orders/42?x=1", "id=42");  /* extra query ignored */
    ASSERT_NO_MATCH(pm, "/orders");
    ASSERT_NO_MATCH(pm, "/orders/");
    ASSERT_NO_MATCH(pm, "/orders/42/items");
    ASSERT_NO_MATCH(pm, "/order/42");

    pm = tmpl("/orders/{id}/items/{item}");
    ASSERT_MATCH(pm, "/orders/7/items/x-1", "id=7;item=x-1");
    ASSERT_NO_MATCH(pm, "/orders/7/things/x");

    pm = tmpl("/");
    ASSERT_MATCH(pm, "/", "");
    ASSERT_NO_MATCH(pm, "/a");
}

static void test_template_embedded_and_rest(void)
{
    const cmi_pathmatch_t *pm = tmpl("/files/{name}.json");
    ASSERT_MATCH(pm, "/files/report.json", "name=report");
    ASSERT_MATCH(pm, "/files/a.b.json", "name=a.b"); /* first ".json" that ends the segment */
    ASSERT_NO_MATCH(pm, "/files/.json");
    ASSERT_NO_MATCH(pm, "/files/report.xml");

    pm = tmpl("/range/{from}-{to}");
    ASSERT_MATCH(pm, "/range/1-5", "from=1;to=5");

    pm = tmpl("/static/{+path}");
    ASSERT_MATCH(pm, "/static/css/site.css", "path=css/site.css");
    ASSERT_NO_MATCH(pm, "/static");
}

static void test_template_query(void)
{
    const cmi_pathmatch_t *pm = tmpl("/search?q={q}&lang=en");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pm);
    ASSERT_MATCH(pm, "/search?q=cats&lang=en", "q=cats");
    ASSERT_MATCH(pm, "/search?lang=en&q=dogs&page=2", "q=dogs");
    ASSERT_NO_MATCH(pm, "/search?q=cats");
    ASSERT_NO_MATCH(pm, "/search?q=cats&lang=fr");
    ASSERT_NO_MATCH(pm, "/search");
}

static void test_template_errors(void)
{
    const char *bad[] = {"orders", "/a/{id", "/a/id}", "/a/{}", "/a/{x}{y}", "/a/{+rest}/b", "/a//b",
                         "/a?q", "/a/{b c}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *err = NULL;
        CU_ASSERT_PTR_NULL(cmi_pathmatch_compile_template(arena, bad[i], &err));
        CU_ASSERT_PTR_NOT_NULL(err);
    }
}

static void test_url_mapping(void)
{
    const char *err;
    const cmi_pathmatch_t *prefix = cmi_pathmatch_compile_mapping(arena, "/orders/*", &err);
    ASSERT_MATCH(prefix, "/orders", "");
    ASSERT_MATCH(prefix, "/orders/1/2", "");
    ASSERT_NO_MATCH(prefix, "/ordersX");
    const cmi_pathmatch_t *all = cmi_pathmatch_compile_mapping(arena, "/*", &err);
    ASSERT_MATCH(all, "/anything/at/all", "");
    const cmi_pathmatch_t *ext = cmi_pathmatch_compile_mapping(arena, "*.jsp", &err);
    ASSERT_MATCH(ext, "/a/b/page.jsp", "");
    ASSERT_NO_MATCH(ext, "/a/page.jspx");
    const cmi_pathmatch_t *exact = cmi_pathmatch_compile_mapping(arena, "/status", &err);
    ASSERT_MATCH(exact, "/status/", "");
    ASSERT_NO_MATCH(exact, "/status/x");
    CU_ASSERT_PTR_NULL(cmi_pathmatch_compile_mapping(arena, "orders", &err));
    CU_ASSERT_PTR_NULL(cmi_pathmatch_compile_mapping(arena, "/a/*/b", &err));
}

static void test_query_find(void)
{
    const char *q = "a=1&b=&c&d=x%20y";
    const char *v;
    size_t n;
    CU_ASSERT(cmi_query_find(q, strlen(q), "a", 1, &v, &n) && n == 1 && v[0] == '1');
    CU_ASSERT(cmi_query_find(q, strlen(q), "b", 1, &v, &n) && n == 0);
    CU_ASSERT(cmi_query_find(q, strlen(q), "c", 1, &v, &n) && n == 0);
    CU_ASSERT(cmi_query_find(q, strlen(q), "d", 1, &v, &n) && n == 5 && memcmp(v, "x%20y", 5) == 0);
    CU_ASSERT(!cmi_query_find(q, strlen(q), "e", 1, &v, &n));
}

/* ---- dispatch over a configuration built by hand ----------------------- */

static cmi_resource_t *resource(cmi_api_t *api, unsigned methods, const cmi_pathmatch_t *pm)
{
    cmi_resource_t *r = cmi_arena_calloc(arena, 1, sizeof(*r));
    r->api = api;
    r->methods = methods;
    r->match = pm;
    api->resources[api->count++] = r;
    return r;
}

static cmi_api_t *api(cmi_config_t *cfg, const char *name, const char *context)
{
    cmi_api_t *a = cmi_arena_calloc(arena, 1, sizeof(*a));
    a->name = name;
    a->context = context;
    a->file = "test";
    a->resources = cmi_arena_calloc(arena, 8, sizeof(*a->resources));
    cfg->apis[cfg->napis++] = a;
    return a;
}

static int find(const cmi_config_t *cfg, const char *method, const char *uri, cmi_dispatch_result_t *r)
{
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    return cmi_dispatch_find(cfg->dispatch, cmi_method_bit(method, strlen(method)), uri, plen, q ? q + 1 : "",
                             q ? strlen(q + 1) : 0, r);
}

static void test_dispatch(void)
{
    cmi_config_t cfg = {.arena = arena};
    cfg.apis = cmi_arena_calloc(arena, 8, sizeof(*cfg.apis));
    cmi_api_t *orders = api(&cfg, "Orders", "/orders");
    cmi_api_t *v2 = api(&cfg, "OrdersV2", "/orders/v2");
    cmi_api_t *root = api(&cfg, "Root", "");
    cmi_resource_t *get_one = resource(orders, CMI_METHOD_GET, tmpl("/{id}"));
    cmi_resource_t *post = resource(orders, CMI_METHOD_POST | CMI_METHOD_PUT, tmpl("/"));
    cmi_resource_t *v2_any = resource(v2, CMI_METHOD_ALL, NULL);
    cmi_resource_t *root_status = resource(root, CMI_METHOD_GET, tmpl("/status"));
    cmi_diag_t diag;
    cmi_diag_init(&diag, NULL);
    cfg.dispatch = cmi_dispatch_build(&cfg, &diag);
    CU_ASSERT_EQUAL(diag.errors, 0);

    cmi_dispatch_result_t r;
    CU_ASSERT_EQUAL(find(&cfg, "GET", "/orders/42", &r), CMI_DISPATCH_FOUND);
    CU_ASSERT_PTR_EQUAL(r.resource, get_one);
    CU_ASSERT_EQUAL(r.nbindings, 1);
    CU_ASSERT_EQUAL(find(&cfg, "POST", "/orders", &r), CMI_DISPATCH_FOUND);
    CU_ASSERT_PTR_EQUAL(r.resource, post);
    CU_ASSERT_EQUAL(r.sub_len, 1);
    CU_ASSERT_EQUAL(find(&cfg, "PUT", "/orders/", &r), CMI_DISPATCH_FOUND);
    CU_ASSERT_PTR_EQUAL(r.resource, post);
    /* longest context wins */
    CU_ASSERT_EQUAL(find(&cfg, "DELETE", "/orders/v2/x/y", &r), CMI_DISPATCH_FOUND);
    CU_ASSERT_PTR_EQUAL(r.resource, v2_any);
    CU_ASSERT_EQUAL(strncmp(r.sub_path, "/x/y", r.sub_len), 0);
    /* a context matches whole segments only: "/ordersX" goes to the root API */
    CU_ASSERT_EQUAL(find(&cfg, "GET", "/ordersX", &r), CMI_DISPATCH_NO_API);
    CU_ASSERT_PTR_EQUAL(r.api, root);
    CU_ASSERT_EQUAL(find(&cfg, "GET", "/status", &r), CMI_DISPATCH_FOUND);
    CU_ASSERT_PTR_EQUAL(r.resource, root_status);
    /* path matches, method does not: 405 with the methods that would */
    CU_ASSERT_EQUAL(find(&cfg, "DELETE", "/orders", &r), CMI_DISPATCH_NO_METHOD);
    CU_ASSERT_EQUAL(r.allow, CMI_METHOD_POST | CMI_METHOD_PUT);
    CU_ASSERT_STRING_EQUAL(cmi_methods_format(arena, r.allow), "POST, PUT");
    /* unknown method (bit 0) on a matching path: 405 as well */
    CU_ASSERT_EQUAL(find(&cfg, "TRACE", "/orders/1", &r), CMI_DISPATCH_NO_METHOD);
}

static void test_dispatch_duplicate_context(void)
{
    cmi_config_t cfg = {.arena = arena};
    cfg.apis = cmi_arena_calloc(arena, 4, sizeof(*cfg.apis));
    api(&cfg, "A", "/same");
    api(&cfg, "B", "/same");
    cmi_diag_t diag;
    cmi_diag_init(&diag, NULL);
    cfg.dispatch = cmi_dispatch_build(&cfg, &diag);
    CU_ASSERT_EQUAL(diag.errors, 1);
}

static void test_dispatch_many_apis(void)
{
    /* 1,000 APIs: every one reachable, and the wrong ones never picked. */
    cmi_config_t cfg = {.arena = arena};
    cfg.apis = cmi_arena_calloc(arena, 1000, sizeof(*cfg.apis));
    for (int i = 0; i < 1000; i++) {
        cmi_api_t *a = api(&cfg, cmi_arena_sprintf(arena, "api%d", i), cmi_arena_sprintf(arena, "/svc%d/v1", i));
        resource(a, CMI_METHOD_GET, tmpl("/items/{id}"));
    }
    cmi_diag_t diag;
    cmi_diag_init(&diag, NULL);
    cfg.dispatch = cmi_dispatch_build(&cfg, &diag);
    int ok = 1;
    for (int i = 0; i < 1000; i++) {
        char uri[64];
        snprintf(uri, sizeof(uri), "/svc%d/v1/items/%d", i, i);
        cmi_dispatch_result_t r;
        ok &= find(&cfg, "GET", uri, &r) == CMI_DISPATCH_FOUND && r.api == cfg.apis[i];
    }
    CU_ASSERT(ok);
}

static CU_TestInfo match_tests[] = {
    {"literal segments and variables", test_template_literals_and_vars},
    {"variables inside segments and {+rest}", test_template_embedded_and_rest},
    {"query templates", test_template_query},
    {"malformed templates are refused", test_template_errors},
    {"url-mapping forms", test_url_mapping},
    {"raw query lookup", test_query_find},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo dispatch_tests[] = {
    {"context, resource, 404 and 405", test_dispatch},
    {"duplicate contexts are a load error", test_dispatch_duplicate_context},
    {"1,000 APIs", test_dispatch_many_apis},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"pathmatch", setup, teardown, NULL, NULL, match_tests},
    {"dispatch", setup, teardown, NULL, NULL, dispatch_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    return cu_run(suites);
}
