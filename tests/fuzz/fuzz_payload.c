/* libFuzzer target: payload handling.  The input is a request body under
 * each content type; its JSON and XML views are built and read back
 * (including the XPath document and JSON-to-XML mapping legacy XPath
 * uses), it is rendered as each response type (the conversions MI's
 * formatters do), and the payload is serialised again.  The view limit is
 * low, so that the bounds are taken often. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "expr/expr.h"
#include "runtime/convert.h"
#include "runtime/msg.h"

static const char *const types[] = {"application/json", "application/xml", "text/plain", "application/soap+xml", NULL};
static const char *const exprs[] = {"${payload}", "${payload.a[0].b}", "${payload..x}", "//*", "count(//*)",
                                    "$body/*", "json-eval($.*)", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    cmi_msg_set_view_limit(256 * 1024);
    cmi_arena_t *arena = cmi_arena_create(0);
    cmi_expr_t *compiled[8];
    size_t n = 0;
    for (const char *const *x = exprs; *x; x++) {
        cmi_expr_error_t err;
        compiled[n++] = cmi_expr_compile(arena, *x, NULL, &err);
    }
    for (const char *const *ct = types; *ct; ct++) {
        cmi_msg_t *msg = cmi_msg_create(NULL, NULL, NULL, NULL);
        char *body = cmi_arena_memdup(msg->arena, data, size);
        cmi_msg_set_payload(msg, body, size, *ct);
        const char *err = NULL;
        (void)cmi_msg_payload_json(msg, &err);
        (void)cmi_msg_payload_xml(msg, &err);
        for (size_t i = 0; i < n; i++) {
            cmi_value_t v;
            if (compiled[i] != NULL && cmi_expr_eval(compiled[i], msg, &v) == 0)
                (void)cmi_value_to_text(msg->arena, &v, NULL);
        }
        for (const char *const *as = types; *as; as++) {
            const char *bytes;
            size_t len;
            if (cmi_payload_render_as(msg, *as, &bytes, &len) == 0 && len > 256 * 1024 + 64)
                __builtin_trap(); /* a conversion past the view limit */
        }
        json_t *j = cmi_msg_payload_json(msg, &err);
        if (j != NULL) { /* a JSON view set back is serialised anew */
            cmi_msg_set_payload_json(msg, json_incref(j));
            size_t len;
            (void)cmi_msg_payload_bytes(msg, &len);
        }
        cmi_msg_release(msg);
    }
    cmi_arena_destroy(arena);
    return 0;
}
