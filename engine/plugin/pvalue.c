/* Static parameter values (pvalue.h): one parser per type, used alike for
 * defaults when a module loads, for static values at load and for dynamic
 * values per message (params.c), and by the connector test host
 * (testhost_bind.c), which links this file and not the engine. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/secrets.h"
#include "core/str.h"
#include "plugin/pvalue.h"

size_t cmi_param_slot_size(cmi_param_type_t t)
{
    switch (t) {
    case CMI_PARAM_STRING:
    case CMI_PARAM_EXPR: return sizeof(const char *);
    case CMI_PARAM_INT: return sizeof(int64_t);
    case CMI_PARAM_BOOL:
    case CMI_PARAM_ENUM: return sizeof(int);
    case CMI_PARAM_DURATION: return sizeof(uint64_t);
    case CMI_PARAM_LIST: return sizeof(cmi_param_list_t);
    case CMI_PARAM_JSON: return sizeof(json_t *);
    }
    return 0;
}

/* ---- parsing ------------------------------------------------------------ */

static int in_bounds(const cmi_param_def_t *def, int64_t v, char *err, size_t n)
{
    if (def->min < def->max && (v < def->min || v > def->max)) {
        snprintf(err, n, "out of range (%lld..%lld)", (long long)def->min, (long long)def->max);
        return -1;
    }
    return 0;
}

static int parse_list(cmi_arena_t *arena, const cmi_param_def_t *def, const char *text, cmi_param_list_t *out,
                      char *err, size_t n)
{
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    const char **items = cmi_arena_calloc(arena, cap, sizeof(*items));
    size_t count = 0;
    const char *s = text;
    for (;;) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        const char *a = s, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (b > a) {
            const char *item = cmi_arena_strndup(arena, a, (size_t)(b - a));
            char why[256];
            if (def->check != NULL && def->check(def, item, why, sizeof(why)) != 0) {
                if (def->flags & CMI_PARAM_SECRET)
                    snprintf(err, n, "not valid: an item: %s", why);
                else
                    snprintf(err, n, "not valid: item '%s': %s", item, why);
                return -1;
            }
            items[count++] = item;
        }
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    out->items = items;
    out->count = count;
    return 0;
}

static void json_cleanup(void *p)
{
    json_decref(p);
}

int cmi_param_parse(cmi_arena_t *arena, const cmi_param_def_t *def, const char *text, void *slot, char *err,
                    size_t n)
{
    switch (def->type) {
    case CMI_PARAM_STRING:
    case CMI_PARAM_EXPR: {
        char why[256];
        if (def->check != NULL && def->check(def, text, why, sizeof(why)) != 0) {
            snprintf(err, n, "not valid: %s", why);
            return -1;
        }
        *(const char **)slot = cmi_arena_strdup(arena, text);
        return 0;
    }
    case CMI_PARAM_INT: {
        int64_t v;
        if (cmi_parse_int64(text, &v) != 0) {
            snprintf(err, n, "not an integer");
            return -1;
        }
        if (in_bounds(def, v, err, n) != 0)
            return -1;
        *(int64_t *)slot = v;
        return 0;
    }
    case CMI_PARAM_BOOL:
        if (cmi_parse_bool(text, (int *)slot) != 0) {
            snprintf(err, n, "not true or false");
            return -1;
        }
        return 0;
    case CMI_PARAM_DURATION: {
        uint64_t v;
        if (cmi_parse_duration_ms(text, &v) != 0 || v > INT64_MAX) {
            snprintf(err, n, "not a duration (milliseconds, or a number with ms, s, m or h)");
            return -1;
        }
        if (in_bounds(def, (int64_t)v, err, n) != 0)
            return -1;
        *(uint64_t *)slot = v;
        return 0;
    }
    case CMI_PARAM_ENUM:
        for (int i = 0; def->choices[i] != NULL; i++)
            if (strcasecmp(def->choices[i], text) == 0) {
                *(int *)slot = i;
                return 0;
            }
        {
            cmi_strbuf_t b;
            cmi_strbuf_init(&b, arena, 64);
            for (int i = 0; def->choices[i] != NULL; i++)
                cmi_strbuf_printf(&b, "%s%s", i ? ", " : "", def->choices[i]);
            snprintf(err, n, "not one of %s", b.data);
        }
        return -1;
    case CMI_PARAM_LIST:
        return parse_list(arena, def, text, (cmi_param_list_t *)slot, err, n);
    case CMI_PARAM_JSON: {
        json_error_t je;
        json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
        if (j == NULL) {
            /* jansson's reason quotes the text near the fault. */
            if (def->flags & CMI_PARAM_SECRET)
                snprintf(err, n, "not valid JSON");
            else
                snprintf(err, n, "not valid JSON: %s", je.text);
            return -1;
        }
        cmi_arena_cleanup_add(arena, json_cleanup, j);
        *(json_t **)slot = j;
        return 0;
    }
    }
    snprintf(err, n, "unknown parameter type");
    return -1;
}

int cmi_param_secret(cmi_arena_t *arena, const char *text, const char **out, char *err, size_t n)
{
    int ref = cmi_secret_resolve_ref(arena, text, out, err, n);
    if (ref != 0)
        return ref > 0 ? 0 : ref;
    if (strncmp(text, "$SYSTEM:", 8) == 0) {
        const char *v = getenv(text + 8);
        if (v == NULL) {
            snprintf(err, n, "the environment variable %s is not set", text + 8);
            return -1;
        }
        *out = cmi_arena_strdup(arena, v);
        return 0;
    }
    if (strncmp(text, "$FILE:", 6) == 0) {
        FILE *f = fopen(text + 6, "rb");
        if (f == NULL) {
            snprintf(err, n, "cannot read %s: %s", text + 6, strerror(errno));
            return -1;
        }
        char buf[8192];
        size_t len = fread(buf, 1, sizeof(buf), f);
        int big = len == sizeof(buf);
        fclose(f);
        if (big) {
            snprintf(err, n, "%s is larger than %zu bytes", text + 6, sizeof(buf) - 1);
            return -1;
        }
        /* One trailing newline is how editors and `echo` end a file. */
        if (len > 0 && buf[len - 1] == '\n')
            len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
        if (memchr(buf, '\0', len) != NULL) {
            snprintf(err, n, "%s holds a NUL byte", text + 6);
            return -1;
        }
        *out = cmi_arena_strndup(arena, buf, len);
        return 0;
    }
    *out = text;
    return 0;
}

/* ---- tables ------------------------------------------------------------- */

int cmi_params_table_check(const cmi_param_def_t *defs, size_t params_size, char *err, size_t n)
{
    if (defs == NULL)
        return 0;
    if (params_size < sizeof(cmi_params_head_t)) {
        snprintf(err, n, "the parameter struct must start with cmi_params_head_t");
        return -1;
    }
    cmi_arena_t *scratch = cmi_arena_create(1024);
    int rc = 0;
    size_t count = 0;
    for (const cmi_param_def_t *d = defs; d->name != NULL && rc == 0; d++, count++) {
        char why[256];
        if (count >= CMI_PARAMS_MAX) {
            snprintf(err, n, "more than %d parameters", CMI_PARAMS_MAX);
            rc = -1;
        } else if (*d->name == '\0' || strcmp(d->name, "responseVariable") == 0 ||
                   strcmp(d->name, "overwriteBody") == 0 || strcmp(d->name, "configKey") == 0) {
            snprintf(err, n, "parameter name '%s' is empty or reserved for the engine", d->name);
            rc = -1;
        } else if (cmi_param_slot_size(d->type) == 0 || d->offset < sizeof(cmi_params_head_t) ||
                   d->offset + cmi_param_slot_size(d->type) > params_size) {
            snprintf(err, n, "parameter '%s': unknown type or offset outside the struct", d->name);
            rc = -1;
        } else if (d->type == CMI_PARAM_ENUM && (d->choices == NULL || d->choices[0] == NULL)) {
            snprintf(err, n, "parameter '%s': an enum without choices", d->name);
            rc = -1;
        } else if ((d->flags & CMI_PARAM_REQUIRED) && d->default_value != NULL) {
            snprintf(err, n, "parameter '%s': required with a default", d->name);
            rc = -1;
        } else if (d->default_value != NULL) {
            char slot[sizeof(cmi_param_list_t)];
            if (cmi_param_parse(scratch, d, d->default_value, slot, why, sizeof(why)) != 0) {
                snprintf(err, n, "parameter '%s': the default '%s' is %s", d->name, d->default_value, why);
                rc = -1;
            }
        }
        for (const cmi_param_def_t *e = defs; rc == 0 && e != d; e++)
            if (strcmp(e->name, d->name) == 0) {
                snprintf(err, n, "parameter '%s' is declared twice", d->name);
                rc = -1;
            }
    }
    cmi_arena_destroy(scratch);
    return rc;
}

/* ---- static values -------------------------------------------------------- */

void cmi_params_defaults(cmi_arena_t *arena, const cmi_param_def_t *defs, void *params)
{
    for (const cmi_param_def_t *d = defs; d->name != NULL; d++) {
        char err[256];
        if (d->default_value != NULL)
            cmi_param_parse(arena, d, d->default_value, (char *)params + d->offset, err, sizeof(err));
    }
}

const cmi_param_def_t *cmi_params_row(const cmi_param_def_t *defs, const char *name, unsigned *row)
{
    for (unsigned i = 0; defs[i].name != NULL; i++)
        if (strcmp(defs[i].name, name) == 0) {
            *row = i;
            return &defs[i];
        }
    return NULL;
}

const char *cmi_param_value(cmi_arena_t *arena, const cmi_param_def_t *def, const char *raw)
{
    const char *a = raw, *b = raw + strlen(raw);
    while (a < b && isspace((unsigned char)*a))
        a++;
    while (b > a && isspace((unsigned char)b[-1]))
        b--;
    if (a == b)
        return NULL;
    /* A template's spaces are part of the text it renders. */
    return def->type == CMI_PARAM_EXPR ? raw : cmi_arena_strndup(arena, a, (size_t)(b - a));
}

/* {...} is a dynamic value, except for a JSON row whose text is JSON; a
 * template row is a template unless the whole value is one {${...}} (its
 * text may well be a JSON object with ${...} inside). */
int cmi_param_is_dynamic_syntax(const cmi_param_def_t *def, const char *v)
{
    if (cmi_secret_is_ref(v))
        return 0; /* read from the secret store at load, whatever the row */
    size_t n = strlen(v);
    if (n < 2 || v[0] != '{' || v[n - 1] != '}')
        return 0;
    if (def->type == CMI_PARAM_EXPR)
        return n >= 5 && v[1] == '$' && v[2] == '{' && v[n - 2] == '}' && strstr(v + 3, "${") == NULL;
    if (def->type == CMI_PARAM_JSON) {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        json_decref(j);
        return j == NULL;
    }
    return 1;
}

int cmi_param_static(cmi_arena_t *arena, const cmi_param_def_t *defs, unsigned row, const char *v, void *params,
                     char *err, size_t n)
{
    const cmi_param_def_t *def = &defs[row];
    char why[512];
    /* A vault reference in any row (a user name may be kept there too); its
     * value is then never repeated in a message, as a secret row's. */
    int hidden = (def->flags & CMI_PARAM_SECRET) || cmi_secret_is_ref(v);
    if (hidden) {
        const char *resolved;
        int rc = cmi_param_secret(arena, v, &resolved, err, n);
        if (rc == -2)
            return -1; /* written wrong: an error wherever it is checked */
        if (rc != 0)
            return CMI_PARAM_ESECRET;
        v = resolved;
    }
    if (cmi_param_parse(arena, def, v, (char *)params + def->offset, why, sizeof(why)) != 0) {
        if (hidden)
            snprintf(err, n, "the value is %s", why);
        else
            snprintf(err, n, "'%s' is %s", v, why);
        return -1;
    }
    cmi_param_bit_put(((cmi_params_head_t *)params)->given, row, 1);
    return 0;
}
