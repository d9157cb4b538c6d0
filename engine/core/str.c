#include "config.h"

#include "core/str.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cmi_str_caseeqn(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

void cmi_strbuf_init(cmi_strbuf_t *b, cmi_arena_t *arena, size_t initial)
{
    b->arena = arena;
    b->cap = initial < 16 ? 16 : initial;
    b->data = cmi_arena_alloc(arena, b->cap);
    b->len = 0;
    b->data[0] = '\0';
}

static void strbuf_reserve(cmi_strbuf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap * 2;
    while (cap < b->len + extra + 1)
        cap *= 2;
    /* The old storage stays in the arena until the arena goes: buffers are
     * short-lived and doubling bounds the waste to the final size. */
    char *data = cmi_arena_alloc(b->arena, cap);
    memcpy(data, b->data, b->len + 1);
    b->data = data;
    b->cap = cap;
}

void cmi_strbuf_append(cmi_strbuf_t *b, const char *p, size_t n)
{
    strbuf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void cmi_strbuf_puts(cmi_strbuf_t *b, const char *s)
{
    cmi_strbuf_append(b, s, strlen(s));
}

void cmi_strbuf_putc(cmi_strbuf_t *b, char c)
{
    cmi_strbuf_append(b, &c, 1);
}

void cmi_strbuf_printf(cmi_strbuf_t *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        strbuf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

/* ---- UTF-8 ------------------------------------------------------------------ */

size_t cmi_utf8_seq(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    /* RFC 3629 table 4: the second byte's range depends on the first
     * (no overlong forms, no surrogates, nothing past U+10FFFF). */
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3, lo = s[0] == 0xE0 ? 0xA0 : 0x80, hi = s[0] == 0xED ? 0x9F : 0xBF;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4, lo = s[0] == 0xF0 ? 0x90 : 0x80, hi = s[0] == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (len > n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

static size_t utf8_valid_prefix(const char *s, size_t len)
{
    size_t i = 0, k;
    while (i < len && (k = cmi_utf8_seq(s + i, len - i)) != 0)
        i += k;
    return i;
}

const char *cmi_utf8_sanitize(cmi_arena_t *arena, const char *s, size_t len, size_t *out_len)
{
    size_t i = utf8_valid_prefix(s, len);
    if (i == len) {
        if (out_len)
            *out_len = len;
        return s;
    }
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, arena, len + 16);
    for (;;) {
        cmi_strbuf_append(&b, s, i);
        if (i == len)
            break;
        cmi_strbuf_append(&b, CMI_UTF8_REPLACEMENT, 3);
        s += i + 1;
        len -= i + 1;
        i = utf8_valid_prefix(s, len);
    }
    if (out_len)
        *out_len = b.len;
    return b.data;
}

void cmi_strbuf_xml_escaped(cmi_strbuf_t *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char ch = (unsigned char)s[i];
        size_t k = ch >= 0x80 ? cmi_utf8_seq(s + i, len - i) : 1;
        if (k == 0 || (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r')) {
            cmi_strbuf_puts(out, CMI_UTF8_REPLACEMENT);
            i++;
            continue;
        }
        switch (ch) {
        case '&': cmi_strbuf_puts(out, "&amp;"); break;
        case '<': cmi_strbuf_puts(out, "&lt;"); break;
        case '>': cmi_strbuf_puts(out, "&gt;"); break;
        case '"': cmi_strbuf_puts(out, "&quot;"); break;
        case '\'': cmi_strbuf_puts(out, "&apos;"); break;
        default: cmi_strbuf_append(out, s + i, k); break;
        }
        i += k;
    }
}

void cmi_strbuf_json_escaped(cmi_strbuf_t *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len;) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x80) { /* JSON text is UTF-8: a stray byte becomes U+FFFD */
            size_t k = cmi_utf8_seq(s + i, len - i);
            if (k == 0)
                cmi_strbuf_append(out, "\\ufffd", 6), k = 1;
            else
                cmi_strbuf_append(out, s + i, k);
            i += k;
            continue;
        }
        switch (ch) {
        case '"': cmi_strbuf_append(out, "\\\"", 2); break;
        case '\\': cmi_strbuf_append(out, "\\\\", 2); break;
        case '\n': cmi_strbuf_append(out, "\\n", 2); break;
        case '\r': cmi_strbuf_append(out, "\\r", 2); break;
        case '\t': cmi_strbuf_append(out, "\\t", 2); break;
        case '\b': cmi_strbuf_append(out, "\\b", 2); break;
        case '\f': cmi_strbuf_append(out, "\\f", 2); break;
        default:
            if (ch < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
                cmi_strbuf_append(out, u, 6);
            } else {
                cmi_strbuf_putc(out, (char)ch);
            }
        }
        i++;
    }
}

/* ---- base64 ---------------------------------------------------------------- */

void cmi_base64_encode(cmi_strbuf_t *out, const void *data, size_t len)
{
    /* EVP_EncodeBlock takes an int: long input goes in slices of a
     * multiple of 3 bytes, which encode without padding in between. */
    const unsigned char *p = data;
    do {
        size_t n = len > 3u * (1u << 28) ? 3u * (1u << 28) : len;
        strbuf_reserve(out, 4 * ((n + 2) / 3));
        int w = EVP_EncodeBlock((unsigned char *)out->data + out->len, p, (int)n);
        out->len += (size_t)w;
        out->data[out->len] = '\0';
        p += n;
        len -= n;
    } while (len > 0);
}

static int b64_digit(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int cmi_base64_decode(cmi_arena_t *arena, const char *s, size_t len, char **out, size_t *out_len)
{
    size_t n = len, pad = 0;
    while (n > 0 && pad < 2 && s[n - 1] == '=')
        n--, pad++;
    for (size_t i = 0; i < n; i++)
        if (!b64_digit((unsigned char)s[i]))
            return -1; /* outside the alphabet, '=' before the end included */
    /* A last unit of one digit holds no byte; padding completes its unit. */
    if (n % 4 == 1 || (pad > 0 && (n + pad) % 4 != 0) || n > INT_MAX - 3)
        return -1;
    size_t missing = (4 - n % 4) % 4; /* padding, written or not */
    char *text = cmi_arena_alloc(arena, n + missing + 1);
    memcpy(text, s, n);
    memset(text + n, '=', missing);
    char *bytes = cmi_arena_alloc(arena, (n + missing) / 4 * 3 + 1);
    int w = EVP_DecodeBlock((unsigned char *)bytes, (const unsigned char *)text, (int)(n + missing));
    if (w < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    w -= (int)missing;
    bytes[w] = '\0';
    *out = bytes;
    if (out_len)
        *out_len = (size_t)w;
    return 0;
}

/* ---- percent-encoding ---------------------------------------------------------- */

void cmi_url_encode(cmi_strbuf_t *out, const char *s, size_t len, const char *safe)
{
    static const char hex[] = "0123456789ABCDEF";
    strbuf_reserve(out, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            (ch != '\0' && strchr(safe, ch) != NULL)) {
            cmi_strbuf_putc(out, (char)ch);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            cmi_strbuf_append(out, e, 3);
        }
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cmi_url_decode(cmi_arena_t *arena, const char *src, size_t len, int plus_as_space, char **out,
                   size_t *out_len)
{
    char *dst = cmi_arena_alloc(arena, len + 1);
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = hexval((unsigned char)src[i + 1]);
            lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            dst[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_as_space) {
            dst[j++] = ' ';
        } else {
            dst[j++] = c;
        }
    }
    dst[j] = '\0';
    /* Decoded bytes that are not UTF-8 become U+FFFD, as MI's (Java's)
     * UTF-8 decoding does: strings inside cmi are UTF-8. */
    *out = (char *)cmi_utf8_sanitize(arena, dst, j, &j);
    if (out_len)
        *out_len = j;
    return 0;
}

int cmi_parse_int64(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int cmi_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Splits "123unit" into its number and the unit that follows. */
static int split_number(const char *s, uint64_t *num, const char **unit)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    while (*end == ' ')
        end++;
    *num = v;
    *unit = end;
    return 0;
}

static int mul_checked(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int cmi_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"", 1},           {"b", 1},
                 {"k", 1024},       {"kb", 1000},
                 {"kib", 1024},     {"m", 1024 * 1024},
                 {"mb", 1000000},   {"mib", 1024 * 1024},
                 {"g", 1u << 30},   {"gb", 1000000000},
                 {"gib", 1u << 30}};
    uint64_t n;
    const char *unit;
    if (split_number(s, &n, &unit) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcasecmp(unit, units[i].unit) == 0)
            return mul_checked(n, units[i].mult, out);
    return -1;
}

int cmi_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000}, {"h", 3600000}};
    uint64_t n;
    const char *unit;
    if (split_number(s, &n, &unit) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcasecmp(unit, units[i].unit) == 0)
            return mul_checked(n, units[i].mult, out);
    return -1;
}

int cmi_parse_bool(const char *s, int *out)
{
    if (s != NULL && strcasecmp(s, "true") == 0) {
        *out = 1;
        return 0;
    }
    if (s != NULL && strcasecmp(s, "false") == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

size_t cmi_format_double(double d, char *buf, size_t size)
{
    if (isnan(d))
        return (size_t)snprintf(buf, size, "NaN");
    if (isinf(d))
        return (size_t)snprintf(buf, size, d < 0 ? "-Infinity" : "Infinity");
    if (d == floor(d) && fabs(d) < 1e15)
        return (size_t)snprintf(buf, size, "%.0f", d);
    for (int prec = 15; prec <= 17; prec++) {
        int n = snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return (size_t)n;
    }
    return (size_t)snprintf(buf, size, "%.17g", d);
}
