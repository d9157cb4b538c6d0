/* libFuzzer target: the expression language.  Every input is compiled as
 * an attribute expression (${...}, json-eval, XPath) and as a template in
 * each mode, and whatever compiles is evaluated against a fixed message.
 * Nothing may crash, leak or read out of bounds. */
#include "config.h"

#include <libxml/parser.h>
#include <stdint.h>
#include <string.h>

#include "expr/expr.h"
#include "runtime/msg.h"

static const char *PAYLOAD = "{\"name\":\"John\",\"age\":30,\"items\":[{\"id\":1,\"price\":10.5,\"tags\":[\"a\"]},{\"id\":2}],"
                             "\"address\":{\"city\":\"Colombo\"},\"s\":\"a,b,,c\"}";

static cmi_msg_t *make_msg(void)
{
    cmi_msg_t *m = cmi_msg_create(NULL, NULL, NULL, NULL);
    cmi_msg_set_payload(m, PAYLOAD, strlen(PAYLOAD), "application/json");
    m->method = "GET";
    m->request_uri = "/a/b?c=d";
    cmi_msg_var_set(m, "n", cmi_value_int(5));
    cmi_msg_var_set(m, "s", cmi_value_cstring("text"));
    cmi_msg_header_add_inbound(m, "X-H", 3, "12", 2);
    cmi_msg_prop_set(m, CMI_SCOPE_DEFAULT, "p", cmi_value_cstring("v"));
    cmi_kvlist_add(m->arena, &m->query_params, "q", cmi_value_cstring("3"));
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    cmi_arena_t *arena = cmi_arena_create(0);
    char *text = cmi_arena_strndup(arena, (const char *)data, size);
    if (strlen(text) != size) { /* NUL inside: XML attributes cannot hold it */
        cmi_arena_destroy(arena);
        return 0;
    }
    cmi_msg_t *msg = make_msg();
    cmi_expr_error_t err;
    cmi_expr_t *e = cmi_expr_compile(arena, text, NULL, &err);
    if (e != NULL) {
        cmi_value_t v;
        if (cmi_expr_eval(e, msg, &v) == 0)
            (void)cmi_value_to_text(msg->arena, &v, NULL);
    }
    for (int mode = CMI_TEMPLATE_TEXT; mode <= CMI_TEMPLATE_XML; mode++) {
        cmi_value_t args[2] = {cmi_value_cstring("x\"y"), cmi_value_int(1)};
        cmi_template_t *t = cmi_template_compile(arena, text, (cmi_template_mode_t)mode, 2, &err);
        if (t != NULL) {
            cmi_strbuf_t b;
            cmi_strbuf_init(&b, msg->arena, 64);
            (void)cmi_template_render(t, msg, args, 2, &b);
        }
    }
    cmi_msg_release(msg);
    cmi_arena_destroy(arena);
    return 0;
}
