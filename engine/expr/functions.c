/* The predefined functions of the ${...} language.
 *
 * Each takes evaluated arguments; null in means null out (missing data is
 * not an error), a value of the wrong type is an error that names the
 * function.  String positions count characters (UTF-8 code points). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "core/regex.h"
#include "core/secrets.h"
#include "core/str.h"
#include "expr/ast.h"
#include "runtime/convert.h"
#include "runtime/msg.h"

#define ARG_STRING(i, fn)                                                                          \
    do {                                                                                           \
        if (args[i].type == CMI_VAL_NULL) {                                                        \
            *out = cmi_value_null();                                                               \
            return 0;                                                                              \
        }                                                                                          \
        if (args[i].type != CMI_VAL_STRING)                                                        \
            return ex_fail(c, "%s(): argument %d must be a string, not %s", fn, (i) + 1,           \
                           ex_type_name(&args[i]));                                                \
    } while (0)

#define ARG_NUMBER(i, fn, var)                                                                     \
    do {                                                                                           \
        if (args[i].type == CMI_VAL_NULL) {                                                        \
            *out = cmi_value_null();                                                               \
            return 0;                                                                              \
        }                                                                                          \
        if (!ex_as_number(&args[i], &(var)))                                                       \
            return ex_fail(c, "%s(): argument %d must be a number, not %s", fn, (i) + 1,           \
                           ex_type_name(&args[i]));                                                \
    } while (0)

/* ---- UTF-8 helpers ------------------------------------------------------- */

static size_t utf8_count(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* Byte offset of character index ci (clamped to len). */
static size_t utf8_offset(const char *s, size_t len, size_t ci)
{
    size_t i = 0, n = 0;
    while (i < len) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (n == ci)
                return i;
            n++;
        }
        i++;
    }
    return len;
}

static cmi_value_t str_copy(ex_ctx_t *c, const char *s, size_t n)
{
    return cmi_value_string(cmi_arena_strndup(c->msg->arena, s, n), n);
}

/* ---- strings ----------------------------------------------------------------- */

static int fn_length(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    const cmi_value_t *v = &args[0];
    if (v->type == CMI_VAL_STRING)
        *out = cmi_value_int((int64_t)utf8_count(v->u.s.ptr, v->u.s.len));
    else if (v->type == CMI_VAL_JSON)
        *out = cmi_value_int((int64_t)(json_is_array(v->u.json) ? json_array_size(v->u.json)
                                                                 : json_object_size(v->u.json)));
    else if (v->type == CMI_VAL_NULL)
        *out = cmi_value_null();
    else
        return ex_fail(c, "length(): needs a string, an array or an object, not %s", ex_type_name(v));
    return 0;
}

static int change_case(ex_ctx_t *c, cmi_value_t *args, cmi_value_t *out, int upper, const char *fn)
{
    ARG_STRING(0, fn);
    char *s = cmi_arena_strndup(c->msg->arena, args[0].u.s.ptr, args[0].u.s.len);
    for (size_t i = 0; i < args[0].u.s.len; i++)
        if (!((unsigned char)s[i] & 0x80)) /* ASCII letters; other characters stay */
            s[i] = (char)(upper ? toupper((unsigned char)s[i]) : tolower((unsigned char)s[i]));
    *out = cmi_value_string(s, args[0].u.s.len);
    return 0;
}

static int fn_upper(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)n;
    return change_case(c, a, out, 1, "toUpper");
}

static int fn_lower(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)n;
    return change_case(c, a, out, 0, "toLower");
}

static int int_arg(ex_ctx_t *c, const cmi_value_t *v, const char *fn, int pos, long *out)
{
    double d;
    if (!ex_as_number(v, &d) || d != floor(d))
        return ex_fail(c, "%s(): argument %d must be a whole number, not %s", fn, pos, ex_type_name(v));
    if (!(d > -1e15 && d < 1e15))
        return ex_fail(c, "%s(): argument %d (%g) is out of range", fn, pos, d);
    *out = (long)d;
    return 0;
}

/* subString(s, start[, end]): characters start..end-1 (0-based); indexes
 * out of range are an error, as Java's String.substring. */
static int fn_substring(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    ARG_STRING(0, "subString");
    long start, end;
    size_t chars = utf8_count(args[0].u.s.ptr, args[0].u.s.len);
    if (int_arg(c, &args[1], "subString", 2, &start) != 0)
        return CMI_FLOW_ERROR;
    end = (long)chars;
    if (n > 2 && int_arg(c, &args[2], "subString", 3, &end) != 0)
        return CMI_FLOW_ERROR;
    if (start < 0 || end > (long)chars || start > end)
        return ex_fail(c, "subString(): range %ld..%ld is outside the string's %zu characters", start, end, chars);
    size_t a = utf8_offset(args[0].u.s.ptr, args[0].u.s.len, (size_t)start);
    size_t b = utf8_offset(args[0].u.s.ptr, args[0].u.s.len, (size_t)end);
    *out = str_copy(c, args[0].u.s.ptr + a, b - a);
    return 0;
}

static const char *find_bytes(const char *h, size_t hl, const char *n, size_t nl)
{
    if (nl == 0)
        return h;
    for (size_t i = 0; i + nl <= hl; i++)
        if (memcmp(h + i, n, nl) == 0)
            return h + i;
    return NULL;
}

static int fn_contains(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    if (args[0].type == CMI_VAL_JSON && json_is_array(args[0].u.json)) {
        /* contains(array, value): membership */
        size_t i;
        json_t *item;
        json_array_foreach(args[0].u.json, i, item) {
            cmi_value_t v = ex_from_json(item);
            if ((v.type == CMI_VAL_STRING && args[1].type == CMI_VAL_STRING && v.u.s.len == args[1].u.s.len &&
                 memcmp(v.u.s.ptr, args[1].u.s.ptr, v.u.s.len) == 0) ||
                (v.type == CMI_VAL_INT && args[1].type == CMI_VAL_INT && v.u.i == args[1].u.i)) {
                *out = cmi_value_bool(1);
                return 0;
            }
        }
        *out = cmi_value_bool(0);
        return 0;
    }
    ARG_STRING(0, "contains");
    ARG_STRING(1, "contains");
    *out = cmi_value_bool(find_bytes(args[0].u.s.ptr, args[0].u.s.len, args[1].u.s.ptr, args[1].u.s.len) != NULL);
    return 0;
}

static int fn_starts(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    ARG_STRING(0, "startsWith");
    ARG_STRING(1, "startsWith");
    *out = cmi_value_bool(args[1].u.s.len <= args[0].u.s.len &&
                          memcmp(args[0].u.s.ptr, args[1].u.s.ptr, args[1].u.s.len) == 0);
    return 0;
}

static int fn_ends(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    ARG_STRING(0, "endsWith");
    ARG_STRING(1, "endsWith");
    size_t a = args[0].u.s.len, b = args[1].u.s.len;
    *out = cmi_value_bool(b <= a && memcmp(args[0].u.s.ptr + a - b, args[1].u.s.ptr, b) == 0);
    return 0;
}

static int fn_trim(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    ARG_STRING(0, "trim");
    const char *s = args[0].u.s.ptr;
    size_t a = 0, b = args[0].u.s.len;
    while (a < b && isspace((unsigned char)s[a]))
        a++;
    while (b > a && isspace((unsigned char)s[b - 1]))
        b--;
    *out = str_copy(c, s + a, b - a);
    return 0;
}

static int fn_replace(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    ARG_STRING(0, "replace");
    ARG_STRING(1, "replace");
    ARG_STRING(2, "replace");
    const char *s = args[0].u.s.ptr, *from = args[1].u.s.ptr;
    size_t sl = args[0].u.s.len, fl = args[1].u.s.len;
    if (fl == 0) {
        *out = args[0];
        return 0;
    }
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, c->msg->arena, sl + 16);
    size_t i = 0;
    const char *hit;
    while ((hit = find_bytes(s + i, sl - i, from, fl)) != NULL) {
        cmi_strbuf_append(&b, s + i, (size_t)(hit - (s + i)));
        cmi_strbuf_append(&b, args[2].u.s.ptr, args[2].u.s.len);
        i = (size_t)(hit - s) + fl;
    }
    cmi_strbuf_append(&b, s + i, sl - i);
    *out = cmi_value_string(b.data, b.len);
    return 0;
}

/* glibc's regcomp copies a repeated sub-pattern once per repetition, so a
 * pattern such as "a++++..." or "(a+)+" or "a{100}{100}" costs memory
 * exponential in its length.  Patterns that may come from message data
 * are kept to what a delimiter needs: no more than 64 characters, no
 * bounded repetition, no quantifier on a group or on another quantifier. */
static const char *regex_problem(const char *re)
{
    if (strlen(re) > 64)
        return "longer than 64 characters";
    for (const char *p = re; *p; p++) {
        if (*p == '\\' && p[1] != '\0') {
            p++;
            continue;
        }
        if (*p == '{')
            return "bounded repetition {n,m} is not supported";
        if (strchr("*+?", *p) != NULL && p > re && (strchr("*+?)", p[-1]) != NULL))
            return "a quantifier may follow only a character or a [class]";
    }
    return NULL;
}

/* split(s, re): as Java's String.split, a regular expression in MI's
 * (Java's) syntax as filter, switch and property take it (core/regex.h),
 * with trailing empty strings dropped; a delimiter without regex
 * characters is matched as plain text, which is the common case. */
static int fn_split(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    ARG_STRING(0, "split");
    ARG_STRING(1, "split");
    const char *s = args[0].u.s.ptr, *d = args[1].u.s.ptr;
    size_t sl = args[0].u.s.len, dl = args[1].u.s.len;
    json_t *arr = json_array();
    cmi_value_t result = ex_own_json(c, arr);
    if (sl == 0) {
        json_array_append_new(arr, json_string(""));
        *out = result;
        return 0;
    }
    if (dl == 0) {
        for (size_t i = 0; i < sl;) { /* every character */
            size_t k = i + 1;
            while (k < sl && ((unsigned char)s[k] & 0xC0) == 0x80)
                k++;
            json_array_append_new(arr, cmi_json_text(c->msg->arena, s + i, k - i));
            i = k;
        }
        *out = result;
        return 0;
    }
    const char *text = cmi_arena_strndup(c->msg->arena, s, sl);
    const char *delim = cmi_arena_strndup(c->msg->arena, d, dl);
    int plain = strpbrk(delim, "\\^$.|?*+()[]{}") == NULL;
    cmi_regex_t *re = NULL;
    if (!plain) {
        const char *problem = regex_problem(delim);
        re = cmi_arena_calloc(c->msg->arena, 1, sizeof(*re));
        if (problem != NULL || cmi_regex_compile(c->msg->arena, re, delim, &problem) != 0)
            return ex_fail(c, "split(): pattern '%s': %s", delim, problem);
    }
    size_t i = 0;
    while (i <= sl) {
        size_t at, len;
        if (plain) {
            const char *hit = find_bytes(text + i, sl - i, delim, dl);
            if (hit == NULL)
                break;
            at = (size_t)(hit - text);
            len = dl;
        } else {
            regmatch_t m;
            if (i >= sl || !cmi_regex_find_from(re, text, sl, i, &m) || (size_t)m.rm_eo == i)
                break;
            at = (size_t)m.rm_so;
            len = (size_t)(m.rm_eo - m.rm_so);
        }
        json_array_append_new(arr, cmi_json_text(c->msg->arena, text + i, at - i));
        i = at + len;
    }
    json_array_append_new(arr, cmi_json_text(c->msg->arena, text + i, i <= sl ? sl - i : 0));
    while (json_array_size(arr) > 1 && json_string_length(json_array_get(arr, json_array_size(arr) - 1)) == 0)
        json_array_remove(arr, json_array_size(arr) - 1);
    *out = result;
    return 0;
}

static int fn_index_of(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    ARG_STRING(0, "indexOf");
    ARG_STRING(1, "indexOf");
    long from = 0;
    if (n > 2 && int_arg(c, &args[2], "indexOf", 3, &from) != 0)
        return CMI_FLOW_ERROR;
    if (from < 0)
        from = 0;
    size_t start = utf8_offset(args[0].u.s.ptr, args[0].u.s.len, (size_t)from);
    const char *hit = find_bytes(args[0].u.s.ptr + start, args[0].u.s.len - start, args[1].u.s.ptr, args[1].u.s.len);
    *out = cmi_value_int(hit ? (int64_t)utf8_count(args[0].u.s.ptr, (size_t)(hit - args[0].u.s.ptr)) : -1);
    return 0;
}

static int fn_char_at(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    ARG_STRING(0, "charAt");
    long i;
    if (int_arg(c, &args[1], "charAt", 2, &i) != 0)
        return CMI_FLOW_ERROR;
    size_t chars = utf8_count(args[0].u.s.ptr, args[0].u.s.len);
    if (i < 0 || (size_t)i >= chars)
        return ex_fail(c, "charAt(): index %ld is outside the string's %zu characters", i, chars);
    size_t a = utf8_offset(args[0].u.s.ptr, args[0].u.s.len, (size_t)i);
    size_t b = utf8_offset(args[0].u.s.ptr, args[0].u.s.len, (size_t)i + 1);
    *out = str_copy(c, args[0].u.s.ptr + a, b - a);
    return 0;
}

/* ---- numbers -------------------------------------------------------------- */

static cmi_value_t number_result(double d)
{
    if (d == floor(d) && fabs(d) < 9.007199254740992e15)
        return cmi_value_int((int64_t)d);
    return cmi_value_number(d);
}

#define MATH1(fname, label, expr)                                                                  \
    static int fname(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)                   \
    {                                                                                              \
        (void)n;                                                                                   \
        double x;                                                                                  \
        ARG_NUMBER(0, label, x);                                                                   \
        expr;                                                                                      \
        return 0;                                                                                  \
    }

MATH1(fn_abs, "abs", *out = args[0].type == CMI_VAL_INT && args[0].u.i != INT64_MIN
                                ? cmi_value_int(args[0].u.i < 0 ? -args[0].u.i : args[0].u.i)
                                : cmi_value_number(fabs(x)))
MATH1(fn_floor, "floor", *out = number_result(floor(x)))
MATH1(fn_ceil, "ceil", *out = number_result(ceil(x)))
/* round(x): the nearest whole number (halves up); round(x, k): k decimals. */
static int fn_round(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    double x;
    ARG_NUMBER(0, "round", x);
    if (n < 2) {
        *out = number_result(floor(x + 0.5));
        return 0;
    }
    long k;
    if (int_arg(c, &args[1], "round", 2, &k) != 0)
        return CMI_FLOW_ERROR;
    if (k <= 0 || k > 15)
        return ex_fail(c, "round(): the number of decimals must be 1..15, not %ld", k);
    double scale = pow(10.0, (double)k);
    *out = cmi_value_number(floor(x * scale + 0.5) / scale);
    return 0;
}

static int fn_sqrt(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    double x;
    ARG_NUMBER(0, "sqrt", x);
    if (x < 0)
        return ex_fail(c, "sqrt(): %g is negative", x);
    *out = cmi_value_number(sqrt(x));
    return 0;
}

static int fn_log(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    double x;
    ARG_NUMBER(0, "log", x);
    if (x <= 0)
        return ex_fail(c, "log(): %g is not positive", x);
    *out = cmi_value_number(log(x));
    return 0;
}

static int fn_pow(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    double x, y;
    ARG_NUMBER(0, "pow", x);
    ARG_NUMBER(1, "pow", y);
    *out = cmi_value_number(pow(x, y));
    return 0;
}

/* ---- encodings ----------------------------------------------------------------- */

static int check_charset(ex_ctx_t *c, cmi_value_t *args, size_t n, const char *fn)
{
    if (n < 2)
        return 0;
    if (args[1].type != CMI_VAL_STRING)
        return ex_fail(c, "%s(): the charset must be a string", fn);
    const char *cs = cmi_arena_strndup(c->msg->arena, args[1].u.s.ptr, args[1].u.s.len);
    /* Strings are UTF-8 inside cmi; only charsets that agree on the bytes
     * are accepted rather than silently mis-encoding. */
    if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "UTF8") != 0 && strcasecmp(cs, "US-ASCII") != 0)
        return ex_fail(c, "%s(): charset '%s' is not supported by cmi yet (UTF-8 only)", fn, cs);
    return 0;
}

static int fn_b64encode(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    ARG_STRING(0, "base64encode");
    if (check_charset(c, args, n, "base64encode") != 0)
        return CMI_FLOW_ERROR;
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, c->msg->arena, 4 * ((args[0].u.s.len + 2) / 3) + 1);
    cmi_base64_encode(&b, args[0].u.s.ptr, args[0].u.s.len);
    *out = cmi_value_string(b.data, b.len);
    return 0;
}

/* As MI (Java's Base64.getDecoder()): input that is not base64 is an error. */
static int fn_b64decode(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    ARG_STRING(0, "base64decode");
    if (check_charset(c, args, n, "base64decode") != 0)
        return CMI_FLOW_ERROR;
    char *s;
    size_t len;
    if (cmi_base64_decode(c->msg->arena, args[0].u.s.ptr, args[0].u.s.len, &s, &len) != 0)
        return ex_fail(c, "base64decode(): the input is not base64");
    *out = cmi_value_string(s, len);
    return 0;
}

static int fn_url_encode(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    ARG_STRING(0, "urlEncode");
    if (check_charset(c, args, n, "urlEncode") != 0)
        return CMI_FLOW_ERROR;
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, c->msg->arena, args[0].u.s.len * 3 + 1);
    cmi_url_encode(&b, args[0].u.s.ptr, args[0].u.s.len, CMI_URL_SAFE_URLENCODE);
    *out = cmi_value_string(b.data, b.len);
    return 0;
}

static int fn_url_decode(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    ARG_STRING(0, "urlDecode");
    if (check_charset(c, args, n, "urlDecode") != 0)
        return CMI_FLOW_ERROR;
    char *s;
    size_t len;
    if (cmi_url_decode(c->msg->arena, args[0].u.s.ptr, args[0].u.s.len, 1, &s, &len) != 0)
        return ex_fail(c, "urlDecode(): malformed percent-encoding");
    *out = cmi_value_string(s, len);
    return 0;
}

/* ---- types ------------------------------------------------------------------ */

static int fn_is_string(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)c, (void)n;
    *out = cmi_value_bool(a[0].type == CMI_VAL_STRING);
    return 0;
}

static int fn_is_number(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)c, (void)n;
    *out = cmi_value_bool(a[0].type == CMI_VAL_INT || a[0].type == CMI_VAL_NUMBER);
    return 0;
}

static int fn_is_boolean(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)c, (void)n;
    *out = cmi_value_bool(a[0].type == CMI_VAL_BOOL);
    return 0;
}

static int fn_is_array(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)c, (void)n;
    *out = cmi_value_bool(a[0].type == CMI_VAL_JSON && json_is_array(a[0].u.json));
    return 0;
}

static int fn_is_object(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)c, (void)n;
    *out = cmi_value_bool(a[0].type == CMI_VAL_JSON && json_is_object(a[0].u.json));
    return 0;
}

static int fn_string(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)n;
    if (a[0].type == CMI_VAL_NULL) {
        *out = cmi_value_null();
        return 0;
    }
    size_t len;
    const char *t = ex_text(c, &a[0], &len);
    *out = cmi_value_string(t, len);
    return 0;
}

static int parse_num_text(ex_ctx_t *c, const cmi_value_t *v, int integer, const char *fn, cmi_value_t *out)
{
    const char *s = cmi_arena_strndup(c->msg->arena, v->u.s.ptr, v->u.s.len);
    while (isspace((unsigned char)*s))
        s++;
    char *end;
    errno = 0;
    if (integer) {
        long long i = strtoll(s, &end, 10);
        while (isspace((unsigned char)*end))
            end++;
        if (*s == '\0' || *end != '\0' || errno != 0)
            return ex_fail(c, "%s(): \"%s\" is not a whole number", fn, s);
        *out = cmi_value_int(i);
    } else {
        double d = strtod(s, &end);
        while (isspace((unsigned char)*end))
            end++;
        if (*s == '\0' || *end != '\0' || errno == ERANGE || isnan(d))
            return ex_fail(c, "%s(): \"%s\" is not a number", fn, s);
        *out = cmi_value_number(d);
    }
    return 0;
}

static int fn_integer(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)n;
    double d;
    switch (a[0].type) {
    case CMI_VAL_NULL: *out = cmi_value_null(); return 0;
    case CMI_VAL_INT: *out = a[0]; return 0;
    case CMI_VAL_NUMBER:
        d = a[0].u.d;
        if (!(d > -9.2e18 && d < 9.2e18))
            return ex_fail(c, "integer(): %g does not fit a whole number", d);
        *out = cmi_value_int((int64_t)d); /* truncates, as a Java cast */
        return 0;
    case CMI_VAL_STRING: return parse_num_text(c, &a[0], 1, "integer", out);
    case CMI_VAL_BOOL: return ex_fail(c, "integer(): cannot convert a boolean");
    default: return ex_fail(c, "integer(): cannot convert an %s", ex_type_name(&a[0]));
    }
}

static int fn_float(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)n;
    switch (a[0].type) {
    case CMI_VAL_NULL: *out = cmi_value_null(); return 0;
    case CMI_VAL_INT: *out = cmi_value_number((double)a[0].u.i); return 0;
    case CMI_VAL_NUMBER: *out = a[0]; return 0;
    case CMI_VAL_STRING: return parse_num_text(c, &a[0], 0, "float", out);
    default: return ex_fail(c, "float(): cannot convert %s", ex_type_name(&a[0]));
    }
}

static int fn_boolean(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)n;
    switch (a[0].type) {
    case CMI_VAL_NULL: *out = cmi_value_null(); return 0;
    case CMI_VAL_BOOL: *out = a[0]; return 0;
    case CMI_VAL_STRING:
        if (a[0].u.s.len == 4 && strncasecmp(a[0].u.s.ptr, "true", 4) == 0)
            *out = cmi_value_bool(1);
        else if (a[0].u.s.len == 5 && strncasecmp(a[0].u.s.ptr, "false", 5) == 0)
            *out = cmi_value_bool(0);
        else
            return ex_fail(c, "boolean(): \"%.*s\" is neither true nor false", (int)a[0].u.s.len, a[0].u.s.ptr);
        return 0;
    default: return ex_fail(c, "boolean(): cannot convert %s", ex_type_name(&a[0]));
    }
}

/* object(x) / array(x): a JSON value, parsing text when given text. */
static int to_json(ex_ctx_t *c, cmi_value_t *a, cmi_value_t *out, int want_array)
{
    const char *fn = want_array ? "array" : "object";
    json_t *j = NULL;
    if (a[0].type == CMI_VAL_NULL) {
        *out = cmi_value_null();
        return 0;
    }
    if (a[0].type == CMI_VAL_JSON) {
        j = a[0].u.json;
    } else if (a[0].type == CMI_VAL_STRING) {
        json_error_t je;
        j = cmi_json_read(c->msg->arena, a[0].u.s.ptr, a[0].u.s.len, &je);
        if (j == NULL)
            return ex_fail(c, "%s(): the text is not JSON: %s", fn, je.text);
        cmi_msg_own_json(c->msg, j);
    }
    if (j == NULL || (want_array ? !json_is_array(j) : !json_is_object(j)))
        return ex_fail(c, "%s(): the value is not a JSON %s", fn, fn);
    out->type = CMI_VAL_JSON;
    out->u.json = j;
    return 0;
}

static int fn_object(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)n;
    return to_json(c, a, out, 0);
}

static int fn_array(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)n;
    return to_json(c, a, out, 1);
}

/* ---- logic and time ---------------------------------------------------------- */

static int fn_exists(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)c, (void)n;
    *out = cmi_value_bool(a[0].type != CMI_VAL_NULL);
    return 0;
}

static int fn_not(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)c, (void)n;
    *out = cmi_value_bool(!cmi_value_truth(&a[0]));
    return 0;
}

static int fn_now(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)c, (void)a, (void)n;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    *out = cmi_value_int((int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000);
    return 0;
}

/* xpath("expr"): the XPath is compiled when the argument is a literal
 * (see the parser); here it is evaluated against the XML payload. */
static int fn_xpath(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out);
static int fn_vault(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out);

static const ex_fn_t functions[] = {
    {"length", 1, 1, fn_length},
    {"toUpper", 1, 1, fn_upper},
    {"toLower", 1, 1, fn_lower},
    {"subString", 2, 3, fn_substring},
    {"substring", 2, 3, fn_substring},
    {"contains", 2, 2, fn_contains},
    {"startsWith", 2, 2, fn_starts},
    {"endsWith", 2, 2, fn_ends},
    {"trim", 1, 1, fn_trim},
    {"replace", 3, 3, fn_replace},
    {"split", 2, 2, fn_split},
    {"indexOf", 2, 3, fn_index_of},
    {"charAt", 2, 2, fn_char_at},
    {"abs", 1, 1, fn_abs},
    {"floor", 1, 1, fn_floor},
    {"ceil", 1, 1, fn_ceil},
    {"round", 1, 2, fn_round},
    {"sqrt", 1, 1, fn_sqrt},
    {"log", 1, 1, fn_log},
    {"pow", 2, 2, fn_pow},
    {"base64encode", 1, 2, fn_b64encode},
    {"b64encode", 1, 2, fn_b64encode},
    {"base64decode", 1, 2, fn_b64decode},
    {"b64decode", 1, 2, fn_b64decode},
    {"urlEncode", 1, 2, fn_url_encode},
    {"urlDecode", 1, 2, fn_url_decode},
    {"isString", 1, 1, fn_is_string},
    {"isNumber", 1, 1, fn_is_number},
    {"isBoolean", 1, 1, fn_is_boolean},
    {"isArray", 1, 1, fn_is_array},
    {"isObject", 1, 1, fn_is_object},
    {"string", 1, 1, fn_string},
    {"integer", 1, 1, fn_integer},
    {"float", 1, 1, fn_float},
    {"boolean", 1, 1, fn_boolean},
    {"object", 1, 1, fn_object},
    {"array", 1, 1, fn_array},
    {"exists", 1, 1, fn_exists},
    {"not", 1, 1, fn_not},
    {"now", 0, 0, fn_now},
    {"xpath", 1, 1, fn_xpath},
    {"wso2-vault", 1, 1, fn_vault}, /* Synapse's grammar */
    {"secret", 1, 1, fn_vault},     /* MI's documentation (README: where the two disagree) */
    {NULL, 0, 0, NULL},
};

/* MI 4.4's secure vault lookup, from cmi's secret store (core/secrets.h):
 * wso2-vault('alias') as Synapse's grammar has it, secret('alias') as MI's
 * documentation writes it. */
static int fn_vault(ex_ctx_t *c, cmi_value_t *args, size_t n, cmi_value_t *out)
{
    (void)n;
    ARG_STRING(0, "secret");
    char alias[160], err[256];
    snprintf(alias, sizeof(alias), "%.*s", (int)args[0].u.s.len, args[0].u.s.ptr);
    const char *v;
    if (cmi_secret_lookup(c->msg->arena, alias, NULL, NULL, &v, err, sizeof(err)) != 0)
        return ex_fail(c, "secret lookup: %s", err);
    *out = cmi_value_cstring(v);
    return 0;
}

const ex_fn_t *ex_fn_find(const char *name, size_t len)
{
    for (const ex_fn_t *f = functions; f->name != NULL; f++)
        if (strlen(f->name) == len && memcmp(f->name, name, len) == 0)
            return f;
    return NULL;
}

static int fn_xpath(ex_ctx_t *c, cmi_value_t *a, size_t n, cmi_value_t *out)
{
    (void)n;
    (void)a;
    (void)out;
    return ex_fail(c, "xpath(): the argument must be a string literal");
}
