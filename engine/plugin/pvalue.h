/* Static parameter values: what the engine and the connector test host
 * (libcmi-testhost) share, so that a connector's unit test binds its
 * parameter structs with the very code a deployment goes through.  It needs
 * nothing but the arena, the string parsers and jansson: no XML, no
 * expressions, no message. */
#ifndef CMI_PLUGIN_PVALUE_H
#define CMI_PLUGIN_PVALUE_H

#include <stddef.h>
#include <stdint.h>

#include <cmi/params.h>

#include "core/arena.h"

/* The head's given/dynamic bit sets (and the engine's own "seen" set). */
static inline int cmi_param_bit(const uint64_t *bits, unsigned row)
{
    return (int)((bits[row / 64] >> (row % 64)) & 1u);
}

static inline void cmi_param_bit_put(uint64_t *bits, unsigned row, int on)
{
    if (on)
        bits[row / 64] |= 1ull << (row % 64);
    else
        bits[row / 64] &= ~(1ull << (row % 64));
}

/* Bytes of the field a row of type t fills (0: not a type). */
size_t cmi_param_slot_size(cmi_param_type_t t);

/* Validates the rows of a parameter table against the struct size;
 * returns 0 or -1 with a reason. */
int cmi_params_table_check(const cmi_param_def_t *defs, size_t params_size, char *err, size_t err_size);

/* Parses text as a value of def's type into slot (strings, lists and JSON
 * live in arena).  Returns 0, or -1 with a reason in err; a secret row's
 * reason never holds the value. */
int cmi_param_parse(cmi_arena_t *arena, const cmi_param_def_t *def, const char *text, void *slot, char *err,
                    size_t err_size);
/* Resolves $SYSTEM:NAME, $FILE:PATH and MI's vault references
 * ({wso2:vault-lookup('alias')}, core/secrets.h) for a secret row: 0 with
 * *out (arena), or -1 with a reason (never the secret); -2 for a vault
 * reference written wrong. */
int cmi_param_secret(cmi_arena_t *arena, const char *text, const char **out, char *err, size_t err_size);

/* Fills params (zeroed, of the table's struct) with every row's default.
 * The table has passed cmi_params_table_check, so defaults parse. */
void cmi_params_defaults(cmi_arena_t *arena, const cmi_param_def_t *defs, void *params);
/* The row named name, with its index in *row; NULL when there is none. */
const cmi_param_def_t *cmi_params_row(const cmi_param_def_t *defs, const char *name, unsigned *row);
/* A value as its row reads it: trimmed (a template's text is kept as
 * written), or NULL when blank, which is an absent parameter. */
const char *cmi_param_value(cmi_arena_t *arena, const cmi_param_def_t *def, const char *raw);
/* Whether trimmed text is written as an expression ({...}), as opposed to
 * a JSON row's JSON or a template with ${...} inside. */
int cmi_param_is_dynamic_syntax(const cmi_param_def_t *def, const char *trimmed);

/* cmi_param_static's answer when a secret row's $SYSTEM:/$FILE: cannot be
 * read (`cmi check` takes it as a warning). */
#define CMI_PARAM_ESECRET (-2)
/* A static value of row `row` into params: the secret resolved, parsed and
 * checked, the row marked given.  Returns 0, or -1 / CMI_PARAM_ESECRET with
 * the reason worded for "parameter NAME: <reason>" ("'abc' is not an
 * integer"; never a secret's value). */
int cmi_param_static(cmi_arena_t *arena, const cmi_param_def_t *defs, unsigned row, const char *value, void *params,
                     char *err, size_t err_size);

#endif
