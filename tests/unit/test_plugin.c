/* Unit tests: the connector SDK's parameter types (parsing, bounds, lists
 * with checks, JSON, secrets) and the validation of a module's tables that
 * the loader runs before it accepts a module. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu_main.h"
#include "plugin/plugin.h"

typedef struct {
    cmi_params_head_t head;
    const char *s;
    int64_t i;
    int b;
    uint64_t d;
    int e;
    cmi_param_list_t l;
    json_t *j;
} p_t;

static const char *const colours[] = {"RED", "GREEN", NULL};

static int no_spaces(const cmi_param_def_t *def, const char *v, char *err, size_t n)
{
    (void)def;
    if (strchr(v, ' ') != NULL) {
        snprintf(err, n, "has a space");
        return -1;
    }
    return 0;
}

static const cmi_param_def_t rows[] = {
    CMI_PARAM("s", CMI_PARAM_STRING, 0, p_t, s, NULL, ""),
    CMI_PARAM_RANGE("i", CMI_PARAM_INT, 0, p_t, i, "5", "", 1, 10),
    CMI_PARAM("b", CMI_PARAM_BOOL, 0, p_t, b, "false", ""),
    CMI_PARAM_RANGE("d", CMI_PARAM_DURATION, 0, p_t, d, "1s", "", 0, 60000),
    CMI_PARAM_CHOICE("e", 0, p_t, e, "green", "", colours),
    {.name = "l", .type = CMI_PARAM_LIST, .offset = offsetof(p_t, l), .check = no_spaces},
    CMI_PARAM("j", CMI_PARAM_JSON, 0, p_t, j, NULL, ""),
    CMI_PARAM_END,
};

static int parse(cmi_arena_t *a, int row, const char *text, p_t *p, char *err)
{
    return cmi_param_parse(a, &rows[row], text, (char *)p + rows[row].offset, err, 256);
}

static void test_parse_types(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    p_t p;
    memset(&p, 0, sizeof(p));
    char err[256];
    CU_ASSERT_EQUAL(parse(a, 0, "text", &p, err), 0);
    CU_ASSERT_STRING_EQUAL(p.s, "text");
    CU_ASSERT_EQUAL(parse(a, 1, "7", &p, err), 0);
    CU_ASSERT_EQUAL(p.i, 7);
    CU_ASSERT_EQUAL(parse(a, 1, "11", &p, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "out of range (1..10)");
    CU_ASSERT_EQUAL(parse(a, 1, "7x", &p, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "not an integer");
    CU_ASSERT_EQUAL(parse(a, 2, "TRUE", &p, err), 0);
    CU_ASSERT_EQUAL(p.b, 1);
    CU_ASSERT_EQUAL(parse(a, 2, "yes", &p, err), -1);
    CU_ASSERT_EQUAL(parse(a, 3, "1500", &p, err), 0); /* MI writes milliseconds */
    CU_ASSERT_EQUAL(p.d, 1500);
    CU_ASSERT_EQUAL(parse(a, 3, "2s", &p, err), 0);
    CU_ASSERT_EQUAL(p.d, 2000);
    CU_ASSERT_EQUAL(parse(a, 3, "2m", &p, err), -1); /* 120000 > 60000 */
    CU_ASSERT_EQUAL(parse(a, 4, "red", &p, err), 0);
    CU_ASSERT_EQUAL(p.e, 0);
    CU_ASSERT_EQUAL(parse(a, 4, "blue", &p, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "not one of RED, GREEN");
    CU_ASSERT_EQUAL(parse(a, 5, " a, b ,,c ", &p, err), 0);
    CU_ASSERT_EQUAL_FATAL(p.l.count, 3);
    CU_ASSERT_STRING_EQUAL(p.l.items[0], "a");
    CU_ASSERT_STRING_EQUAL(p.l.items[1], "b");
    CU_ASSERT_STRING_EQUAL(p.l.items[2], "c");
    CU_ASSERT_EQUAL(parse(a, 5, "a, b c", &p, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "not valid: item 'b c': has a space");
    CU_ASSERT_EQUAL(parse(a, 6, "{\"k\": [1]}", &p, err), 0);
    CU_ASSERT_TRUE(json_is_object(p.j));
    CU_ASSERT_EQUAL(parse(a, 6, "{nope", &p, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not valid JSON"));
    cmi_arena_destroy(a); /* frees the JSON too (LeakSanitizer) */
}

static void test_secrets(void)
{
    cmi_arena_t *a = cmi_arena_create(0);
    char err[256];
    const char *out = NULL;
    setenv("CMI_UNIT_SECRET", "from-env", 1);
    CU_ASSERT_EQUAL(cmi_param_secret(a, "$SYSTEM:CMI_UNIT_SECRET", &out, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(out, "from-env");
    unsetenv("CMI_UNIT_SECRET");
    CU_ASSERT_EQUAL(cmi_param_secret(a, "$SYSTEM:CMI_UNIT_SECRET", &out, err, sizeof(err)), -1);
    CU_ASSERT_STRING_EQUAL(err, "the environment variable CMI_UNIT_SECRET is not set");
    char path[] = "/tmp/cmi-unit-secret-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, "pa55\n", 5), 5);
    close(fd);
    char ref[64];
    snprintf(ref, sizeof(ref), "$FILE:%s", path);
    CU_ASSERT_EQUAL(cmi_param_secret(a, ref, &out, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(out, "pa55"); /* without the newline */
    unlink(path);
    CU_ASSERT_EQUAL(cmi_param_secret(a, ref, &out, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NULL(strstr(err, "pa55"));
    CU_ASSERT_EQUAL(cmi_param_secret(a, "literal", &out, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(out, "literal");
    /* A malformed secret is reported without the text around the fault. */
    const cmi_param_def_t secret_json = {.name = "k", .type = CMI_PARAM_JSON, .flags = CMI_PARAM_SECRET};
    json_t *j = NULL;
    CU_ASSERT_EQUAL(cmi_param_parse(a, &secret_json, "{\"pw\": hunter2}", &j, err, sizeof(err)), -1);
    CU_ASSERT_STRING_EQUAL(err, "not valid JSON");
    cmi_arena_destroy(a);
}

static int table_check(const cmi_param_def_t *t, size_t size, char *err)
{
    return cmi_params_table_check(t, size, err, 256);
}

static void test_table_validation(void)
{
    char err[256];
    CU_ASSERT_EQUAL(table_check(rows, sizeof(p_t), err), 0);
    CU_ASSERT_EQUAL(table_check(rows, sizeof(p_t) - 8, err), -1); /* j outside the struct */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "offset outside the struct"));
    CU_ASSERT_EQUAL(table_check(rows, 8, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "must start with cmi_params_head_t"));

    const cmi_param_def_t twice[] = {CMI_PARAM("a", CMI_PARAM_STRING, 0, p_t, s, NULL, ""),
                                     CMI_PARAM("a", CMI_PARAM_INT, 0, p_t, i, NULL, ""), CMI_PARAM_END};
    CU_ASSERT_EQUAL(table_check(twice, sizeof(p_t), err), -1);
    CU_ASSERT_STRING_EQUAL(err, "parameter 'a' is declared twice");

    const cmi_param_def_t bad_default[] = {CMI_PARAM_RANGE("i", CMI_PARAM_INT, 0, p_t, i, "99", "", 1, 10),
                                           CMI_PARAM_END};
    CU_ASSERT_EQUAL(table_check(bad_default, sizeof(p_t), err), -1);
    CU_ASSERT_STRING_EQUAL(err, "parameter 'i': the default '99' is out of range (1..10)");

    const cmi_param_def_t req_default[] = {CMI_PARAM("s", CMI_PARAM_STRING, CMI_PARAM_REQUIRED, p_t, s, "x", ""),
                                           CMI_PARAM_END};
    CU_ASSERT_EQUAL(table_check(req_default, sizeof(p_t), err), -1);

    const cmi_param_def_t reserved[] = {CMI_PARAM("responseVariable", CMI_PARAM_STRING, 0, p_t, s, NULL, ""),
                                        CMI_PARAM_END};
    CU_ASSERT_EQUAL(table_check(reserved, sizeof(p_t), err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "reserved for the engine"));

    const cmi_param_def_t no_choices[] = {{.name = "e", .type = CMI_PARAM_ENUM, .offset = offsetof(p_t, e)},
                                          CMI_PARAM_END};
    CU_ASSERT_EQUAL(table_check(no_choices, sizeof(p_t), err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "an enum without choices"));

    const cmi_param_def_t bad_type[] = {{.name = "x", .type = (cmi_param_type_t)99, .offset = offsetof(p_t, s)},
                                        CMI_PARAM_END};
    CU_ASSERT_EQUAL(table_check(bad_type, sizeof(p_t), err), -1);
}

static CU_TestInfo plugin_tests[] = {
    {"parameter types", test_parse_types},
    {"secrets", test_secrets},
    {"table validation", test_table_validation},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"plugin", NULL, NULL, NULL, NULL, plugin_tests},
    CU_SUITE_INFO_NULL,
};

int main(void)
{
    return cu_run(suites);
}
