/* cmi_test_bind: a parameter struct filled from name/value pairs by the
 * code that fills one from a deployment (pvalue.c), so that what a unit
 * test binds is what the engine would bind: same parsers, same checks,
 * same defaults, same given and dynamic bits, same wording of errors. */
#include "config.h"

#include <stddef.h>
#include <stdio.h>

#include "plugin/pvalue.h"
#include "plugin/testhost_int.h"

/* Put before the struct: what cmi_test_params_free needs. */
typedef union {
    cmi_arena_t *arena;
    max_align_t align;
} bound_t;

static const cmi_param_def_t no_rows[] = {{.name = NULL}};

/* bind.c's dynamic values, less the expression: a test gives resolved
 * values, or marks a row dynamic to see what prepare and validate see. */
static int bind_dynamic(const cmi_param_def_t *def, unsigned row, const char *text, void *params, char *err,
                        size_t n)
{
    if (!(def->flags & CMI_PARAM_DYNAMIC) && def->type != CMI_PARAM_EXPR) {
        snprintf(err, n, "parameter %s cannot be dynamic (written %s)", def->name,
                 (def->flags & CMI_PARAM_SECRET) ? "{...}" : text);
        return -1;
    }
    cmi_param_bit_put(((cmi_params_head_t *)params)->dynamic, row, 1);
    return 0;
}

/* One name/value pair, in the order bind.c's pset_set takes an element. */
static int bind_one(cmi_arena_t *a, const cmi_param_def_t *rows, void *params, uint64_t *seen, const char *name,
                    const char *raw, char *err, size_t n)
{
    static const cmi_param_def_t text_row = {.type = CMI_PARAM_STRING};
    unsigned row;
    const cmi_param_def_t *def = cmi_params_row(rows, name, &row);
    if (def == NULL) {
        snprintf(err, n, "unknown parameter '%s'", name);
        return -1;
    }
    if (cmi_param_bit(seen, row)) {
        snprintf(err, n, "parameter %s is given twice", name);
        return -1;
    }
    const char *v = cmi_param_value(a, def, raw);
    if (v == NULL)
        return 0; /* blank: an absent parameter */
    cmi_param_bit_put(seen, row, 1);
    if (def->flags & CMI_PARAM_UNSUPPORTED) {
        snprintf(err, n, "parameter %s is not supported by cmi yet", name);
        return -1;
    }
    if (def->flags & CMI_PARAM_IGNORED)
        return 0;
    const char *trimmed = cmi_param_value(a, &text_row, raw);
    if (cmi_param_is_dynamic_syntax(def, trimmed))
        return bind_dynamic(def, row, trimmed, params, err, n);
    char why[512];
    if (cmi_param_static(a, rows, row, v, params, why, sizeof(why)) != 0) {
        snprintf(err, n, "parameter %s: %s", name, why);
        return -1;
    }
    return 0;
}

/* bind.c's pset_finish: a row written but invalid has had its error. */
static int check_required(const cmi_param_def_t *rows, const void *params, const uint64_t *seen, char *err,
                          size_t n)
{
    const cmi_params_head_t *head = params;
    for (unsigned i = 0; rows[i].name != NULL; i++)
        if ((rows[i].flags & CMI_PARAM_REQUIRED) && !cmi_param_bit(head->given, i) &&
            !cmi_param_bit(head->dynamic, i) && !cmi_param_bit(seen, i)) {
            snprintf(err, n, "the parameter %s is required", rows[i].name);
            return -1;
        }
    return 0;
}

static int bind_all(cmi_arena_t *a, const cmi_param_def_t *rows, void *params, const char *const kv[], char *err,
                    size_t n)
{
    uint64_t seen[CMI_PARAMS_MAX / 64] = {0};
    for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2) {
        if (kv[i + 1] == NULL) {
            snprintf(err, n, "parameter %s has no value (kv is name, value, ..., NULL)", kv[i]);
            return -1;
        }
        if (bind_one(a, rows, params, seen, kv[i], kv[i + 1], err, n) != 0)
            return -1;
    }
    return check_required(rows, params, seen, err, n);
}

void *cmi_test_bind(const cmi_param_def_t *rows, size_t struct_size, const char *const kv[], char *err,
                    size_t err_size)
{
    char scratch[512];
    if (err == NULL || err_size == 0) {
        err = scratch;
        err_size = sizeof(scratch);
    }
    err[0] = '\0';
    rows = rows ? rows : no_rows;
    char why[512];
    if (cmi_params_table_check(rows, struct_size, why, sizeof(why)) != 0) {
        snprintf(err, err_size, "the parameter table: %s", why);
        return NULL;
    }
    cmi_arena_t *a = cmi_arena_create(0);
    bound_t *b = cmi_arena_calloc(a, 1, sizeof(*b) + struct_size);
    b->arena = a;
    void *params = b + 1;
    cmi_params_defaults(a, rows, params);
    if (bind_all(a, rows, params, kv, err, err_size) != 0) {
        cmi_arena_destroy(a);
        return NULL;
    }
    return params;
}

void cmi_test_params_free(void *params)
{
    if (params != NULL)
        cmi_arena_destroy(((bound_t *)params - 1)->arena);
}
