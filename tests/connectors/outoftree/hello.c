/* A connector built outside cmi's tree, against the installed headers and
 * cmi-connector.pc only (tests/connectors/test_install.sh), with its unit
 * test (hello_test.c) against the installed test host:
 *
 *   cc $(pkg-config --cflags cmi-connector) -shared -fPIC hello.c -o hello.so
 *   cc hello_test.c hello.c $(pkg-config --cflags --libs cmi-connector-test)
 */
#include <cmi/connector.h>
#include <stdio.h>

typedef struct {
    cmi_params_head_t head;
    const char *name;
    int excited;
} hello_params_t;

static const cmi_param_def_t params[] = {
    CMI_PARAM("name", CMI_PARAM_EXPR, CMI_PARAM_REQUIRED, hello_params_t, name, NULL, "who to greet"),
    CMI_PARAM("excited", CMI_PARAM_BOOL, CMI_PARAM_DYNAMIC, hello_params_t, excited, "false", "end with '!'"),
    CMI_PARAM_END,
};

/* Not static, yet not exported: -fvisibility=hidden from the .pc file. */
int hello_greet(cmi_call_t *call);

int hello_greet(cmi_call_t *call)
{
    const hello_params_t *p = call->params;
    char text[256];
    snprintf(text, sizeof(text), "hello, %s%s", p->name, p->excited ? "!" : "");
    call->host->call_set_result(call, json_pack("{s:s}", "greeting", text));
    return CMI_FLOW_CONTINUE;
}

static const cmi_op_def_t ops[] = {
    {.name = "greet", .description = "greets someone", .flags = CMI_OP_NO_CONFIG, .params = params,
     .params_size = sizeof(hello_params_t), .run = hello_greet},
    {.name = NULL},
};

CMI_CONNECTOR_EXPORT const cmi_connector_t cmi_connector = {
    CMI_CONNECTOR_HEADER,
    .name = "hello",
    .version = "0.1.0",
    .description = "built out of tree",
    .ops = ops,
};
