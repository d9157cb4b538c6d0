/* Typed values: what properties, variables and (later) expressions hold.
 *
 * Strings are length-delimited and NUL-terminated, owned by an arena (the
 * message's, or the configuration's for literals).  A JSON value is a
 * jansson reference owned by whoever stores the value: storing one into a
 * message ties a reference to the message's arena (cmi_msg_own_json). */
#ifndef CMI_RUNTIME_VALUE_H
#define CMI_RUNTIME_VALUE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

typedef enum {
    CMI_VAL_NULL = 0,
    CMI_VAL_BOOL,
    CMI_VAL_INT,    /* INTEGER, LONG, SHORT */
    CMI_VAL_NUMBER, /* DOUBLE, FLOAT */
    CMI_VAL_STRING,
    CMI_VAL_JSON, /* object or array (borrowed; see msg.h for ownership) */
    CMI_VAL_XML   /* an XML fragment as markup in u.s (an XPath result with elements) */
} cmi_vtype_t;

typedef struct {
    cmi_vtype_t type;
    union {
        int b;
        int64_t i;
        double d;
        struct {
            const char *ptr;
            size_t len;
        } s;
        json_t *json;
    } u;
} cmi_value_t;

static inline cmi_value_t cmi_value_null(void)
{
    cmi_value_t v = {.type = CMI_VAL_NULL};
    return v;
}

static inline cmi_value_t cmi_value_bool(int b)
{
    cmi_value_t v = {.type = CMI_VAL_BOOL, .u.b = b != 0};
    return v;
}

static inline cmi_value_t cmi_value_int(int64_t i)
{
    cmi_value_t v = {.type = CMI_VAL_INT, .u.i = i};
    return v;
}

static inline cmi_value_t cmi_value_number(double d)
{
    cmi_value_t v = {.type = CMI_VAL_NUMBER, .u.d = d};
    return v;
}

static inline cmi_value_t cmi_value_string(const char *p, size_t n)
{
    cmi_value_t v = {.type = CMI_VAL_STRING, .u.s = {p, n}};
    return v;
}

cmi_value_t cmi_value_cstring(const char *s);

/* The property and variable mediators' type names (STRING, INTEGER,
 * BOOLEAN, DOUBLE, LONG, SHORT, FLOAT, JSON, OM or XML; any case).
 * Returns -1 when unknown. */
typedef enum {
    CMI_PTYPE_STRING = 0,
    CMI_PTYPE_INTEGER,
    CMI_PTYPE_LONG,
    CMI_PTYPE_SHORT,
    CMI_PTYPE_BOOLEAN,
    CMI_PTYPE_DOUBLE,
    CMI_PTYPE_FLOAT,
    CMI_PTYPE_JSON,
    CMI_PTYPE_OM
} cmi_ptype_t;

int cmi_ptype_parse(const char *name);
const char *cmi_ptype_name(cmi_ptype_t t);

/* Converts text to a value of the given type.  Strings are copied into the
 * arena.  A JSON result is a new reference the caller owns.  On failure
 * returns -1 and, if err is not NULL, a message in *err (arena string). */
int cmi_value_from_text(cmi_arena_t *arena, cmi_ptype_t type, const char *text, size_t len,
                        cmi_value_t *out, const char **err);

/* Converts an evaluated value to a declared type (an expression's result
 * stored by a typed property or variable).  Values already of the type
 * stay; text is parsed as cmi_value_from_text does.  A JSON result parsed
 * from text is a new reference the caller owns (*parsed_json = 1).
 * Returns 0, or -1 with *err. */
int cmi_value_convert(cmi_arena_t *arena, cmi_ptype_t type, cmi_value_t *v, const char **err, int *parsed_json);

/* The value as text (strings as they are, numbers shortest round-trip form,
 * JSON compact, null as ""), NUL-terminated in the arena. */
const char *cmi_value_to_text(cmi_arena_t *arena, const cmi_value_t *v, size_t *len);

/* A new JSON string holding len bytes of s; bytes that are not UTF-8
 * become U+FFFD (jansson can write no other string, and refuses to write
 * a whole document with one in it).  The copy, when one is needed, is
 * made in arena. */
json_t *cmi_json_text(cmi_arena_t *arena, const char *s, size_t len);

#endif
