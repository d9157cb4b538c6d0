/* hello.c's unit test, as a connector author writes one: built outside
 * cmi's tree against the installed SDK and test host only
 * (tests/connectors/test_install.sh), no engine and no test framework:
 *
 *   cc hello_test.c hello.c $(pkg-config --cflags --libs cmi-connector-test)
 *
 * Exit status 0 when every check passed. */
#include <cmi/testhost.h>
#include <stdio.h>
#include <string.h>

extern const cmi_connector_t cmi_connector; /* hello.c's descriptor */

static int failures;

#define CHECK(cond)                                                                                        \
    do {                                                                                                   \
        if (!(cond)) {                                                                                     \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond);                             \
            failures++;                                                                                    \
        }                                                                                                  \
    } while (0)

static const cmi_op_def_t *greet; /* set by main: cmi_connector.ops[0] */

/* Runs greet with parameters bound from kv; returns the greeting (static). */
static const char *run_greet(const char *const kv[])
{
    static char text[256];
    char err[256];
    void *p = cmi_test_bind(greet->params, greet->params_size, kv, err, sizeof(err));
    if (p == NULL) {
        fprintf(stderr, "bind: %s\n", err);
        return NULL;
    }
    cmi_binding_t b;
    cmi_test_binding_init(&b, NULL, p);
    cmi_msg_t *msg = cmi_test_msg_new(NULL);
    cmi_test_call_t c;
    cmi_test_call_init(&c, &b, msg, p);
    CHECK(greet->run(&c.call) == CMI_FLOW_CONTINUE);
    CHECK(c.fails == 0 && c.suspends == 0);
    snprintf(text, sizeof(text), "%s", json_string_value(json_object_get(c.result, "greeting")));
    cmi_test_call_clear(&c);
    cmi_test_msg_free(msg);
    cmi_test_params_free(p);
    return text;
}

static void check_refused(const char *const kv[], const char *reason)
{
    char err[256] = "";
    void *p = cmi_test_bind(greet->params, greet->params_size, kv, err, sizeof(err));
    CHECK(p == NULL);
    CHECK(strstr(err, reason) != NULL);
    if (strstr(err, reason) == NULL)
        fprintf(stderr, "  expected '%s', got '%s'\n", reason, err);
    cmi_test_params_free(p);
}

int main(void)
{
    cmi_test_reset();
    greet = &cmi_connector.ops[0];
    /* The module, the test host and the headers agree on the ABI. */
    CHECK(cmi_connector.abi_major == CMI_CONNECTOR_ABI_MAJOR);
    CHECK(cmi_connector.abi_minor == CMI_CONNECTOR_ABI_MINOR);
    CHECK(cmi_test_host()->abi_minor == CMI_CONNECTOR_ABI_MINOR);
    CHECK(strcmp(greet->name, "greet") == 0);

    const char *g = run_greet((const char *const[]){"name", "world", NULL});
    CHECK(g != NULL && strcmp(g, "hello, world") == 0);
    g = run_greet((const char *const[]){"name", "world", "excited", "TRUE", NULL});
    CHECK(g != NULL && strcmp(g, "hello, world!") == 0);

    check_refused((const char *const[]){"excited", "true", NULL}, "the parameter name is required");
    check_refused((const char *const[]){"name", "w", "excited", "maybe", NULL},
                  "parameter excited: 'maybe' is not true or false");
    check_refused((const char *const[]){"name", "w", "loud", "1", NULL}, "unknown parameter 'loud'");

    if (failures == 0)
        printf("PASS: hello unit test against the installed test host\n");
    return failures == 0 ? 0 : 1;
}
