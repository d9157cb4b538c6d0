#include "config.h"

#include "mediators/registry.h"

#include <string.h>

static const cmi_mediator_kind_t kinds[] = {
    {"respond", cmi_compile_respond},
    {"drop", cmi_compile_drop},
    {"log", cmi_compile_log},
    {"property", cmi_compile_property},
    {"payloadFactory", cmi_compile_payload_factory},
    {"header", cmi_compile_header},
    {"sequence", cmi_compile_sequence_ref},
    {"variable", cmi_compile_variable},
    {"filter", cmi_compile_filter},
    {"switch", cmi_compile_switch},
    {"call", cmi_compile_call},
    {"enrich", cmi_compile_enrich},
    {"send", cmi_compile_send},
    {"in", cmi_compile_in},
    {"out", cmi_compile_out},
    {"loopback", cmi_compile_loopback},
    {"makefault", cmi_compile_makefault},
    {"call-template", cmi_compile_call_template},
    {"throwError", cmi_compile_throw_error},
    {"xslt", cmi_compile_xslt},
    {NULL, NULL},
};

static const cmi_mediator_kind_t test_kinds[] = {
    {"testSuspend", cmi_compile_test_suspend},
    {NULL, NULL},
};

static int test_kinds_enabled;

/* Every mediator MI defines that cmi does not run yet: named as "not
 * supported by cmi yet" rather than "unknown", so a user knows the artifact
 * is right and cmi is what is missing. */
static const char *const mi_unsupported[] = {
    "callout", "class", "script",
    "fastXSLT", "xquery", "validate", "iterate", "aggregate", "clone", "foreach", "forEach",
    "cache", "throttle", "store", "datamapper", "dataServiceCall",
    "dblookup", "dbreport", "smooks", "rule", "bean", "ejb", "pojoCommand", "spring",
    "entitlementService", "oauthService", "event", "builder", "jsontransform", "transaction",
    "publishEvent", "conditionalRouter", "router", "urlRewrite", "bam", "ntlm", "scatter-gather",
    "enqueue", "propertyGroup", "sendBack", "kerberos",
    "foreachMediator", "jsonTransform", "trigger", NULL,
};

void cmi_mediator_enable_test_kinds(int enable)
{
    test_kinds_enabled = enable;
}

const cmi_mediator_kind_t *cmi_mediator_kind_find(const char *name)
{
    for (const cmi_mediator_kind_t *k = kinds; k->name != NULL; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    if (test_kinds_enabled)
        for (const cmi_mediator_kind_t *k = test_kinds; k->name != NULL; k++)
            if (strcmp(k->name, name) == 0)
                return k;
    return NULL;
}

int cmi_mediator_is_mi_unsupported(const char *name)
{
    for (const char *const *p = mi_unsupported; *p != NULL; p++)
        if (strcmp(*p, name) == 0)
            return 1;
    return 0;
}
