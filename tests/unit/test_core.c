/* Unit tests: arena, strings, parsers, hash table, values. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "core/htab.h"
#include "core/str.h"
#include "cu_main.h"
#include "runtime/value.h"

static int cleanup_order[4];
static int cleanup_count;

static void record(void *p)
{
    cleanup_order[cleanup_count++] = *(int *)p;
}

static void test_arena_alloc_and_cleanups(void)
{
    cmi_arena_t *a = cmi_arena_create(512);
    char *s = cmi_arena_strdup(a, "hello");
    CU_ASSERT_STRING_EQUAL(s, "hello");
    /* Many small allocations span blocks; earlier ones stay intact. */
    char *first = cmi_arena_sprintf(a, "%d-%s", 42, "x");
    for (int i = 0; i < 1000; i++) {
        int *p = cmi_arena_alloc(a, sizeof(int) * 3);
        CU_ASSERT_EQUAL_FATAL(((uintptr_t)p) % sizeof(void *), 0);
        p[0] = p[1] = p[2] = i;
    }
    CU_ASSERT_STRING_EQUAL(first, "42-x");
    /* A large allocation gets its own block. */
    char *big = cmi_arena_alloc(a, 100000);
    memset(big, 'z', 100000);
    CU_ASSERT_STRING_EQUAL(s, "hello");
    CU_ASSERT(cmi_arena_used(a) >= 100000 + 12000);
    static int ids[3] = {1, 2, 3};
    cleanup_count = 0;
    for (int i = 0; i < 3; i++)
        cmi_arena_cleanup_add(a, record, &ids[i]);
    cmi_arena_destroy(a);
    CU_ASSERT_EQUAL(cleanup_count, 3);
    /* last registered runs first */
    CU_ASSERT_EQUAL(cleanup_order[0], 3);
    CU_ASSERT_EQUAL(cleanup_order[2], 1);
}

static void test_arena_calloc_zeroes(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    unsigned char *p = cmi_arena_calloc(a, 64, 16);
    int zero = 1;
    for (int i = 0; i < 1024; i++)
        zero &= p[i] == 0;
    CU_ASSERT(zero);
    CU_ASSERT_PTR_NOT_NULL(cmi_arena_alloc(a, 0));
    cmi_arena_destroy(a);
}

static void test_strbuf(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, a, 4);
    for (int i = 0; i < 100; i++)
        cmi_strbuf_printf(&b, "%d,", i % 10);
    CU_ASSERT_EQUAL(b.len, 200);
    CU_ASSERT_EQUAL(b.data[b.len], '\0');
    CU_ASSERT_EQUAL(strncmp(b.data, "0,1,2,", 6), 0);
    cmi_strbuf_puts(&b, "end");
    CU_ASSERT_STRING_EQUAL(b.data + 200, "end");
    cmi_arena_destroy(a);
}

static void test_url_decode(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    char *out;
    size_t n;
    CU_ASSERT_EQUAL(cmi_url_decode(a, "a%20b+c", 7, 0, &out, &n), 0);
    CU_ASSERT_STRING_EQUAL(out, "a b+c");
    CU_ASSERT_EQUAL(cmi_url_decode(a, "a%20b+c", 7, 1, &out, &n), 0);
    CU_ASSERT_STRING_EQUAL(out, "a b c");
    CU_ASSERT_EQUAL(cmi_url_decode(a, "%C3%A9", 6, 0, &out, &n), 0);
    CU_ASSERT_STRING_EQUAL(out, "\xc3\xa9");
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(cmi_url_decode(a, "%2", 2, 0, &out, &n), -1);
    CU_ASSERT_EQUAL(cmi_url_decode(a, "%zz", 3, 0, &out, &n), -1);
    CU_ASSERT_EQUAL(cmi_url_decode(a, "a%00", 4, 0, &out, &n), -1);
    CU_ASSERT_EQUAL(cmi_url_decode(a, "%", 1, 0, &out, &n), -1);
    /* decoded bytes that are not UTF-8 become U+FFFD, the rest stays */
    CU_ASSERT_EQUAL(cmi_url_decode(a, "%ff%fe%C3%A9x", 13, 0, &out, &n), 0);
    CU_ASSERT_STRING_EQUAL(out, "\xef\xbf\xbd\xef\xbf\xbd\xc3\xa9x");
    CU_ASSERT_EQUAL(n, 9);
    cmi_arena_destroy(a);
}

/* One encoder; each set is named by its caller. */
static void test_url_encode(void)
{
    static const struct {
        const char *safe, *in, *want;
    } cases[] = {
        {CMI_URL_SAFE_UNRESERVED, "a b/c?d=e&f~g.h-i_j*k+l%", "a%20b%2Fc%3Fd%3De%26f~g.h-i_j%2Ak%2Bl%25"},
        {CMI_URL_SAFE_URLENCODE, "a b/c?d=e&f~g.h-i_j*k+l%", "a%20b%2Fc%3Fd%3De%26f%7Eg.h-i_j%2Ak%2Bl%25"},
        {CMI_URL_SAFE_RFC2396_PATH, "/a b/c;p=1:2@x&y$z,!'()*~+", "/a%20b/c;p=1:2@x&y$z,!'()*~%2B"},
        {CMI_URL_SAFE_RFC2396_QUERY, "q=a b&c=d+e/f?g#h%[]", "q=a%20b&c=d+e/f?g%23h%25%5B%5D"},
        {"", "AZaz09\xc3\xa9\x7f", "AZaz09%C3%A9%7F"}, /* letters and digits always stay, bytes >= 0x80 never */
        {CMI_URL_SAFE_UNRESERVED, "", ""},
    };
    cmi_arena_t *a = cmi_arena_create(0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cmi_strbuf_t b;
        cmi_strbuf_init(&b, a, 1);
        cmi_url_encode(&b, cases[i].in, strlen(cases[i].in), cases[i].safe);
        CU_ASSERT_STRING_EQUAL(b.data, cases[i].want);
        CU_ASSERT_EQUAL(b.len, strlen(cases[i].want));
    }
    cmi_strbuf_t b; /* a NUL in the input is encoded, never a terminator */
    cmi_strbuf_init(&b, a, 1);
    cmi_url_encode(&b, "a\0b", 3, CMI_URL_SAFE_UNRESERVED);
    CU_ASSERT_STRING_EQUAL(b.data, "a%00b");
    cmi_arena_destroy(a);
}

/* RFC 4648's vectors; decoding takes what Java's Base64.getDecoder() (MI's
 * base64decode()) takes and refuses the rest. */
static void test_base64(void)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *const unpadded[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    cmi_arena_t *a = cmi_arena_create(0);
    char *out;
    size_t n;
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        cmi_strbuf_t b;
        cmi_strbuf_init(&b, a, 1);
        cmi_base64_encode(&b, plain[i], strlen(plain[i]));
        CU_ASSERT_STRING_EQUAL(b.data, coded[i]);
        CU_ASSERT_EQUAL(b.len, strlen(coded[i]));
        CU_ASSERT_EQUAL_FATAL(cmi_base64_decode(a, coded[i], strlen(coded[i]), &out, &n), 0);
        CU_ASSERT_STRING_EQUAL(out, plain[i]);
        CU_ASSERT_EQUAL(n, strlen(plain[i]));
        CU_ASSERT_EQUAL_FATAL(cmi_base64_decode(a, unpadded[i], strlen(unpadded[i]), &out, &n), 0);
        CU_ASSERT_STRING_EQUAL(out, plain[i]);
    }
    /* any byte, NUL and 0xFF too, both ways */
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, a, 1);
    cmi_strbuf_append(&b, "x", 1); /* appends */
    cmi_base64_encode(&b, "\0\xff\x01", 3);
    CU_ASSERT_STRING_EQUAL(b.data, "xAP8B");
    CU_ASSERT_EQUAL(cmi_base64_decode(a, "AP8B", 4, &out, &n), 0);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT(memcmp(out, "\0\xff\x01", 3) == 0);
    CU_ASSERT_EQUAL(cmi_base64_decode(a, "+/+/", 4, &out, &n), 0);
    CU_ASSERT(memcmp(out, "\xfb\xff\xbf", 3) == 0);
    /* not base64: one behaviour, -1 */
    static const char *const bad[] = {"Zg=", "Z", "Zm9vY", "=", "==", "Zg===", "Zg==Zg==", "Zm=v", "Zm9v\n",
                                      " Zm9v", "Zm 9v", "Zm9-", "Zm9_", "!!"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(cmi_base64_decode(a, bad[i], strlen(bad[i]), &out, &n), -1);
    CU_ASSERT_EQUAL(cmi_base64_decode(a, "Zm9v\0", 5, &out, &n), -1); /* the length counts, not a NUL */
    cmi_arena_destroy(a);
}

/* RFC 3629's table: what jansson accepts, so that what cmi lets through
 * jansson can write. */
static void test_utf8(void)
{
    static const struct {
        const char *s;
        size_t len;
    } good[] = {{"a", 1}, {"\xc2\x80", 2}, {"\xdf\xbf", 2}, {"\xe0\xa0\x80", 3}, {"\xed\x9f\xbf", 3},
                {"\xef\xbf\xbd", 3}, {"\xf0\x90\x80\x80", 4}, {"\xf4\x8f\xbf\xbf", 4}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CU_ASSERT_EQUAL(cmi_utf8_seq(good[i].s, strlen(good[i].s)), good[i].len);
    static const char *const bad[] = {"\x80", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80",
                                      "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff",
                                      "\xc3", "\xe2\x82"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(cmi_utf8_seq(bad[i], strlen(bad[i])), 0);

    cmi_arena_t *a = cmi_arena_create(0);
    const char *ok = "caf\xc3\xa9";
    size_t n;
    CU_ASSERT_PTR_EQUAL(cmi_utf8_sanitize(a, ok, strlen(ok), &n), ok); /* no copy when valid */
    CU_ASSERT_STRING_EQUAL(cmi_utf8_sanitize(a, "a\xff" "b\xe2\x82", 5, &n), "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd");
    CU_ASSERT_EQUAL(n, 11);
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, a, 16);
    cmi_strbuf_json_escaped(&b, "\"\xff\n\xc3\xa9", 5);
    CU_ASSERT_STRING_EQUAL(b.data, "\\\"\\ufffd\\n\xc3\xa9");
    cmi_arena_destroy(a);
}

static void test_parsers(void)
{
    uint64_t u;
    int64_t i;
    int b;
    CU_ASSERT_EQUAL(cmi_parse_size("10MiB", &u), 0);
    CU_ASSERT_EQUAL(u, 10u * 1024 * 1024);
    CU_ASSERT_EQUAL(cmi_parse_size("512", &u), 0);
    CU_ASSERT_EQUAL(u, 512);
    CU_ASSERT_EQUAL(cmi_parse_size("2kb", &u), 0);
    CU_ASSERT_EQUAL(u, 2000);
    CU_ASSERT_EQUAL(cmi_parse_size("10 parsecs", &u), -1);
    CU_ASSERT_EQUAL(cmi_parse_size("-1", &u), -1);
    CU_ASSERT_EQUAL(cmi_parse_size("99999999999999999999GiB", &u), -1);
    CU_ASSERT_EQUAL(cmi_parse_duration_ms("30s", &u), 0);
    CU_ASSERT_EQUAL(u, 30000);
    CU_ASSERT_EQUAL(cmi_parse_duration_ms("250", &u), 0);
    CU_ASSERT_EQUAL(u, 250);
    CU_ASSERT_EQUAL(cmi_parse_duration_ms("2m", &u), 0);
    CU_ASSERT_EQUAL(u, 120000);
    CU_ASSERT_EQUAL(cmi_parse_duration_ms("soon", &u), -1);
    CU_ASSERT_EQUAL(cmi_parse_uint("65536", 65535, &u), -1);
    CU_ASSERT_EQUAL(cmi_parse_uint("8290", 65535, &u), 0);
    CU_ASSERT_EQUAL(cmi_parse_int64("-42", &i), 0);
    CU_ASSERT_EQUAL(i, -42);
    CU_ASSERT_EQUAL(cmi_parse_int64("4x", &i), -1);
    CU_ASSERT_EQUAL(cmi_parse_int64(" 4", &i), -1);
    CU_ASSERT_EQUAL(cmi_parse_bool("TRUE", &b), 0);
    CU_ASSERT_EQUAL(b, 1);
    CU_ASSERT_EQUAL(cmi_parse_bool("yes", &b), -1);
}

static void test_htab(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    cmi_htab_t t;
    cmi_htab_init(&t, a);
    char keys[500][16];
    for (int i = 0; i < 500; i++) {
        snprintf(keys[i], sizeof(keys[i]), "/api/%d", i);
        CU_ASSERT_PTR_NULL(cmi_htab_put(&t, keys[i], strlen(keys[i]), &keys[i]));
    }
    CU_ASSERT_EQUAL(t.count, 500);
    for (int i = 0; i < 500; i++)
        CU_ASSERT_PTR_EQUAL(cmi_htab_gets(&t, keys[i]), &keys[i]);
    /* lookups by length-delimited prefix, as dispatch does */
    CU_ASSERT_PTR_EQUAL(cmi_htab_get(&t, "/api/12/extra", 7), &keys[12]);
    CU_ASSERT_PTR_NULL(cmi_htab_gets(&t, "/api/500"));
    /* a duplicate key returns the existing value, unchanged */
    CU_ASSERT_PTR_EQUAL(cmi_htab_put(&t, "/api/3", 6, "other"), &keys[3]);
    size_t it = 0, seen = 0;
    const cmi_htab_slot_t *slot;
    while (cmi_htab_next(&t, &it, &slot))
        seen++;
    CU_ASSERT_EQUAL(seen, 500);
    cmi_arena_destroy(a);
}

static void test_values(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    cmi_value_t v;
    const char *err = NULL;
    CU_ASSERT_EQUAL(cmi_value_from_text(a, CMI_PTYPE_INTEGER, "42", 2, &v, &err), 0);
    CU_ASSERT_EQUAL(v.type, CMI_VAL_INT);
    CU_ASSERT_EQUAL(v.u.i, 42);
    CU_ASSERT_EQUAL(cmi_value_from_text(a, CMI_PTYPE_INTEGER, "3000000000", 10, &v, &err), -1);
    CU_ASSERT_PTR_NOT_NULL(err);
    CU_ASSERT_EQUAL(cmi_value_from_text(a, CMI_PTYPE_LONG, "3000000000", 10, &v, &err), 0);
    CU_ASSERT_EQUAL(cmi_value_from_text(a, CMI_PTYPE_BOOLEAN, "TRUE", 4, &v, &err), 0);
    CU_ASSERT_EQUAL(v.u.b, 1);
    CU_ASSERT_EQUAL(cmi_value_from_text(a, CMI_PTYPE_BOOLEAN, "nope", 4, &v, &err), 0);
    CU_ASSERT_EQUAL(v.u.b, 0);
    CU_ASSERT_EQUAL(cmi_value_from_text(a, CMI_PTYPE_DOUBLE, "1.5", 3, &v, &err), 0);
    CU_ASSERT_STRING_EQUAL(cmi_value_to_text(a, &v, NULL), "1.5");
    CU_ASSERT_EQUAL(cmi_value_from_text(a, CMI_PTYPE_DOUBLE, "abc", 3, &v, &err), -1);
    CU_ASSERT_EQUAL(cmi_value_from_text(a, CMI_PTYPE_JSON, "{\"a\":[1,2]}", 11, &v, &err), 0);
    CU_ASSERT_EQUAL(v.type, CMI_VAL_JSON);
    CU_ASSERT_STRING_EQUAL(cmi_value_to_text(a, &v, NULL), "{\"a\":[1,2]}");
    json_decref(v.u.json);
    CU_ASSERT_EQUAL(cmi_value_from_text(a, CMI_PTYPE_JSON, "{bad", 4, &v, &err), -1);
    CU_ASSERT_EQUAL(cmi_ptype_parse("integer"), CMI_PTYPE_INTEGER);
    CU_ASSERT_EQUAL(cmi_ptype_parse("QNAME"), -1);
    char buf[32];
    cmi_format_double(3.0, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "3");
    cmi_format_double(0.1, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "0.1");
    cmi_arena_destroy(a);
}

static CU_TestInfo core_tests[] = {
    {"arena allocations, blocks and cleanup order", test_arena_alloc_and_cleanups},
    {"arena calloc zeroes", test_arena_calloc_zeroes},
    {"strbuf grows and stays terminated", test_strbuf},
    {"percent-decoding", test_url_decode},
    {"percent-encoding with named safe sets", test_url_encode},
    {"base64: one codec, one answer to bad input", test_base64},
    {"UTF-8: sequences, U+FFFD for the rest, JSON escaping", test_utf8},
    {"size, duration, integer and boolean parsers", test_parsers},
    {"hash table", test_htab},
    {"typed values from text", test_values},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"core", NULL, NULL, NULL, NULL, core_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    return cu_run(suites);
}
