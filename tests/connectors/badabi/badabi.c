/* A module built for a future connector ABI major: the engine must refuse
 * it with a message naming the file and both versions. */
#include <cmi/connector.h>

static int run(cmi_call_t *call)
{
    (void)call;
    return CMI_FLOW_CONTINUE;
}

static const cmi_op_def_t ops[] = {{"noop", "does nothing", 0, NULL, 0, NULL, NULL, run}, {NULL}};

CMI_CONNECTOR_EXPORT const cmi_connector_t cmi_connector = {
    .abi_major = CMI_CONNECTOR_ABI_MAJOR + 1,
    .abi_minor = 0,
    .struct_size = sizeof(cmi_connector_t),
    .magic = CMI_CONNECTOR_MAGIC,
    .name = "future",
    .version = "9.0.0",
    .ops = ops,
};
