/* Small string helpers: an arena-backed growable buffer, UTF-8, base64,
 * percent-encoding and -decoding, and the number/size/duration parsers
 * shared by the command line, the server config and the artifact
 * compilers. */
#ifndef CMI_CORE_STR_H
#define CMI_CORE_STR_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

/* Case-insensitive equality of two length-delimited strings. */
int cmi_str_caseeqn(const char *a, size_t alen, const char *b, size_t blen);

/* Growable byte buffer whose storage comes from an arena.  The contents are
 * always NUL-terminated so they can be handed out as C strings. */
typedef struct {
    cmi_arena_t *arena;
    char *data;
    size_t len, cap;
} cmi_strbuf_t;

void cmi_strbuf_init(cmi_strbuf_t *b, cmi_arena_t *arena, size_t initial);
void cmi_strbuf_append(cmi_strbuf_t *b, const char *p, size_t n);
void cmi_strbuf_puts(cmi_strbuf_t *b, const char *s);
void cmi_strbuf_putc(cmi_strbuf_t *b, char c);
void cmi_strbuf_printf(cmi_strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * form, no surrogate, nothing past U+10FFFF; at most n bytes), 0 when the
 * byte at s starts none. */
size_t cmi_utf8_seq(const char *s, size_t n);
#define CMI_UTF8_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */
/* s itself when it is UTF-8, else a NUL-terminated copy in arena with
 * U+FFFD for each byte that starts no sequence.  *out_len (optional) gets
 * the result's length. */
const char *cmi_utf8_sanitize(cmi_arena_t *arena, const char *s, size_t len, size_t *out_len);

/* Appends text escaped for the inside of a JSON string (bytes that are not
 * UTF-8 as \ufffd). */
void cmi_strbuf_json_escaped(cmi_strbuf_t *b, const char *s, size_t len);

/* Appends text escaped for XML character data or an attribute value:
 * the five markup characters as entities, bytes that are not UTF-8 and
 * control characters XML forbids as U+FFFD. */
void cmi_strbuf_xml_escaped(cmi_strbuf_t *b, const char *s, size_t len);

/* Base64 (RFC 4648, standard alphabet): the one codec of the engine.
 * cmi_base64_encode appends the encoding of data, '=' padded. */
void cmi_base64_encode(cmi_strbuf_t *out, const void *data, size_t len);
/* Decodes what MI's ${base64decode()} (Java's Base64.getDecoder()) takes:
 * the standard alphabet, the padding optional but whole when present
 * ("YQ" and "YQ==", not "YQ="), nothing after it, no whitespace.  Returns
 * -1 on anything else, else 0 with the bytes (any byte, NUL too) in a
 * NUL-terminated arena copy *out of *out_len bytes. */
int cmi_base64_decode(cmi_arena_t *arena, const char *s, size_t len, char **out, size_t *out_len);

/* Percent-encoding, the engine's one encoder: ASCII letters and digits
 * and the characters of safe stay as they are, every other byte becomes
 * %XX (upper-case hex), appended to out.  Each caller names its set: */
/* RFC 3986 unreserved: {uri.var.X} in an endpoint URL (RFC 6570). */
#define CMI_URL_SAFE_UNRESERVED "-._~"
/* MI's ${urlEncode()}: Java's URLEncoder, then ' ' as %20 and '*' as %2A. */
#define CMI_URL_SAFE_URLENCODE "-._"
/* RFC 2396 as commons-httpclient 3.1 encodes a path (allowed_abs_path)
 * and a query (allowed_query): MI's XPath url-encode(), which is
 * URIUtil.encodePathQuery(), before and after the first '?'. */
#define CMI_URL_SAFE_RFC2396_PATH "-_.!~*'():@&=$,;/"
#define CMI_URL_SAFE_RFC2396_QUERY "-_.!~*'();/?:@&=+$,"
void cmi_url_encode(cmi_strbuf_t *out, const char *s, size_t len, const char *safe);

/* Percent-decodes src into a new NUL-terminated arena string.  With
 * plus_as_space, '+' becomes ' ' (query strings); decoded bytes that are
 * not UTF-8 become U+FFFD.  Returns -1 on a malformed escape or an encoded
 * NUL. */
int cmi_url_decode(cmi_arena_t *arena, const char *src, size_t len, int plus_as_space, char **out,
                   size_t *out_len);

/* Parsers: return 0 on success, -1 on malformed input or overflow. */
int cmi_parse_int64(const char *s, int64_t *out);
int cmi_parse_uint(const char *s, uint64_t max, uint64_t *out);
/* "1048576", "512KiB", "10MiB", "1GiB", "10MB" (decimal), case-insensitive. */
int cmi_parse_size(const char *s, uint64_t *out);
/* "500" (milliseconds), "500ms", "30s", "2m", "1h". */
int cmi_parse_duration_ms(const char *s, uint64_t *out);
/* "true"/"false" in any case. */
int cmi_parse_bool(const char *s, int *out);

/* Formats a double as the shortest text that reads back to the same value
 * ("1.5", "3", "1e+21"); buf needs 32 bytes. */
size_t cmi_format_double(double d, char *buf, size_t size);

#endif
