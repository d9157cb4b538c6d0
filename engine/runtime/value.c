#include "config.h"

#include "runtime/value.h"

#include <errno.h>
#include <libxml/parser.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/str.h"
#include "runtime/convert.h"

static const char *const ptype_names[] = {"STRING", "INTEGER", "LONG", "SHORT", "BOOLEAN",
                                          "DOUBLE", "FLOAT",   "JSON", "OM"};

cmi_value_t cmi_value_cstring(const char *s)
{
    return cmi_value_string(s, strlen(s));
}

int cmi_ptype_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(ptype_names) / sizeof(ptype_names[0]); i++)
        if (strcasecmp(name, ptype_names[i]) == 0)
            return (int)i;
    if (strcasecmp(name, "XML") == 0) /* the variable mediator's name for OM */
        return CMI_PTYPE_OM;
    return -1;
}

const char *cmi_ptype_name(cmi_ptype_t t)
{
    return (unsigned)t < sizeof(ptype_names) / sizeof(ptype_names[0]) ? ptype_names[t] : "?";
}

static int fail(cmi_arena_t *arena, const char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(cmi_arena_t *arena, const char **err, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        *err = cmi_arena_vsprintf(arena, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int parse_integer(cmi_arena_t *arena, cmi_ptype_t type, const char *text, cmi_value_t *out,
                         const char **err)
{
    int64_t i;
    int64_t lo = type == CMI_PTYPE_SHORT ? -32768 : type == CMI_PTYPE_INTEGER ? INT32_MIN : INT64_MIN;
    int64_t hi = type == CMI_PTYPE_SHORT ? 32767 : type == CMI_PTYPE_INTEGER ? INT32_MAX : INT64_MAX;
    if (cmi_parse_int64(text, &i) != 0 || i < lo || i > hi)
        return fail(arena, err, "'%s' is not a whole number in %lld..%lld", text, (long long)lo, (long long)hi);
    *out = cmi_value_int(i);
    return 0;
}

int cmi_value_from_text(cmi_arena_t *arena, cmi_ptype_t type, const char *text, size_t len,
                        cmi_value_t *out, const char **err)
{
    const char *s = cmi_arena_strndup(arena, text, len);
    switch (type) {
    case CMI_PTYPE_STRING:
        *out = cmi_value_string(s, len);
        return 0;
    case CMI_PTYPE_INTEGER:
    case CMI_PTYPE_LONG:
    case CMI_PTYPE_SHORT:
        return parse_integer(arena, type, s, out, err);
    case CMI_PTYPE_BOOLEAN: {
        /* As Java's Boolean.parseBoolean: "true" in any case, anything else is false. */
        *out = cmi_value_bool(strcasecmp(s, "true") == 0);
        return 0;
    }
    case CMI_PTYPE_DOUBLE:
    case CMI_PTYPE_FLOAT: {
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (*s == '\0' || *end != '\0' || errno == ERANGE || isnan(d))
            return fail(arena, err, "'%s' is not a valid number", s);
        *out = cmi_value_number(d);
        return 0;
    }
    case CMI_PTYPE_JSON: {
        json_error_t je;
        json_t *j = cmi_json_read(arena, s, len, &je);
        if (j == NULL)
            return fail(arena, err, "invalid JSON: %s", je.text);
        out->type = CMI_VAL_JSON;
        out->u.json = j;
        return 0;
    }
    case CMI_PTYPE_OM: {
        /* XML values are kept as markup, checked to be well-formed once. */
        const char *why;
        xmlDocPtr doc = cmi_xml_read(arena, s, len, &why);
        if (doc == NULL)
            return fail(arena, err, "'%.40s' is not well-formed XML", s);
        xmlFreeDoc(doc);
        out->type = CMI_VAL_XML;
        out->u.s.ptr = s;
        out->u.s.len = len;
        return 0;
    }
    }
    return fail(arena, err, "unknown type for '%s'", s);
}

int cmi_value_convert(cmi_arena_t *arena, cmi_ptype_t type, cmi_value_t *v, const char **err, int *parsed_json)
{
    *parsed_json = 0;
    if (v->type == CMI_VAL_NULL)
        return 0;
    switch (type) {
    case CMI_PTYPE_STRING: {
        size_t len;
        const char *t = cmi_value_to_text(arena, v, &len);
        *v = cmi_value_string(t, len);
        return 0;
    }
    case CMI_PTYPE_JSON:
        if (v->type != CMI_VAL_STRING && v->type != CMI_VAL_XML)
            return 0; /* objects, arrays, numbers and booleans are JSON already */
        break;
    case CMI_PTYPE_OM:
        if (v->type == CMI_VAL_XML)
            return 0;
        break;
    case CMI_PTYPE_BOOLEAN:
        if (v->type == CMI_VAL_BOOL)
            return 0;
        break;
    case CMI_PTYPE_INTEGER:
    case CMI_PTYPE_LONG:
    case CMI_PTYPE_SHORT:
        if (v->type == CMI_VAL_INT)
            break; /* range-checked by the text path below */
        if (v->type == CMI_VAL_NUMBER && v->u.d == (double)(int64_t)v->u.d) {
            *v = cmi_value_int((int64_t)v->u.d);
            break;
        }
        break;
    case CMI_PTYPE_DOUBLE:
    case CMI_PTYPE_FLOAT:
        if (v->type == CMI_VAL_NUMBER)
            return 0;
        if (v->type == CMI_VAL_INT) {
            *v = cmi_value_number((double)v->u.i);
            return 0;
        }
        break;
    }
    size_t len;
    const char *text = cmi_value_to_text(arena, v, &len);
    if (cmi_value_from_text(arena, type, text, len, v, err) != 0)
        return -1;
    *parsed_json = v->type == CMI_VAL_JSON;
    return 0;
}

static int dump_to_strbuf(const char *p, size_t n, void *data)
{
    cmi_strbuf_append(data, p, n);
    return 0;
}

const char *cmi_value_to_text(cmi_arena_t *arena, const cmi_value_t *v, size_t *len)
{
    char buf[40];
    size_t n;
    switch (v->type) {
    case CMI_VAL_NULL:
        if (len)
            *len = 0;
        return "";
    case CMI_VAL_BOOL:
        if (len)
            *len = v->u.b ? 4 : 5;
        return v->u.b ? "true" : "false";
    case CMI_VAL_INT:
        n = (size_t)snprintf(buf, sizeof(buf), "%lld", (long long)v->u.i);
        break;
    case CMI_VAL_NUMBER:
        n = cmi_format_double(v->u.d, buf, sizeof(buf));
        break;
    case CMI_VAL_STRING:
    case CMI_VAL_XML:
        if (len)
            *len = v->u.s.len;
        return v->u.s.ptr;
    case CMI_VAL_JSON: {
        if (json_is_string(v->u.json)) {
            if (len)
                *len = json_string_length(v->u.json);
            return json_string_value(v->u.json);
        }
        cmi_strbuf_t b;
        cmi_strbuf_init(&b, arena, 128);
        json_dump_callback(v->u.json, dump_to_strbuf, &b, JSON_COMPACT | JSON_ENCODE_ANY);
        if (len)
            *len = b.len;
        return b.data;
    }
    default:
        n = 0;
        buf[0] = '\0';
    }
    if (len)
        *len = n;
    return cmi_arena_strndup(arena, buf, n);
}

json_t *cmi_json_text(cmi_arena_t *arena, const char *s, size_t len)
{
    s = cmi_utf8_sanitize(arena, s, len, &len);
    return json_stringn_nocheck(s, len);
}
