/* Templates: text with embedded ${...} expressions (log messages,
 * payloadFactory formats, dynamic parameters) and the payloadFactory's
 * legacy $1..$N placeholders.
 *
 * In a JSON template each placeholder knows, from the text around it at
 * compile time, whether it sits inside a JSON string: inside, the value is
 * inserted as escaped string content; outside, a number, boolean, object
 * or null goes in as JSON and a string as its text, as MI inserts it (so a
 * variable holding JSON text stays JSON, and a plain word needs quotes in
 * the template). */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#include "expr/ast.h"
#include "runtime/msg.h"

typedef enum { SEG_TEXT, SEG_EXPR, SEG_ARG } seg_kind_t;

typedef struct {
    seg_kind_t kind;
    const char *text; /* SEG_TEXT */
    size_t len;
    const cmi_expr_t *expr; /* SEG_EXPR */
    size_t arg;             /* SEG_ARG: 0-based */
    int in_string;          /* JSON mode: inside "..." */
} segment_t;

struct cmi_template {
    cmi_template_mode_t mode;
    segment_t *segs;
    size_t count;
    int literal;
};

static segment_t *add_segment(cmi_arena_t *arena, cmi_template_t *t, size_t *cap)
{
    t->segs = cmi_arena_grow(arena, t->segs, t->count, cap, sizeof(segment_t), 8);
    segment_t *s = &t->segs[t->count++];
    memset(s, 0, sizeof(*s));
    return s;
}

/* Advances the JSON string state over literal text. */
static int json_state(const char *s, size_t len, int in_string)
{
    for (size_t i = 0; i < len; i++) {
        if (in_string && s[i] == '\\')
            i++;
        else if (s[i] == '"')
            in_string = !in_string;
    }
    return in_string;
}

cmi_template_t *cmi_template_compile(cmi_arena_t *arena, const char *text, cmi_template_mode_t mode,
                                     size_t legacy_args, cmi_expr_error_t *err)
{
    size_t len = strlen(text), cap = 0;
    cmi_template_t *t = cmi_arena_calloc(arena, 1, sizeof(*t));
    t->mode = mode;
    int in_string = 0;
    size_t i = 0, lit = 0;
    while (i <= len) {
        int at_expr = i + 1 < len && text[i] == '$' && text[i + 1] == '{';
        int at_arg = legacy_args > 0 && i + 1 < len && text[i] == '$' && isdigit((unsigned char)text[i + 1]);
        if (i < len && !at_expr && !at_arg) {
            i++;
            continue;
        }
        /* flush the literal text before i */
        if (i > lit) {
            segment_t *s = add_segment(arena, t, &cap);
            s->kind = SEG_TEXT;
            s->text = cmi_arena_strndup(arena, text + lit, i - lit);
            s->len = i - lit;
            in_string = json_state(text + lit, i - lit, in_string);
        }
        if (i == len)
            break;
        segment_t *s = add_segment(arena, t, &cap);
        s->in_string = in_string;
        if (at_expr) {
            size_t close = ex_closing_brace(text + i, len - i);
            if (close == 0) {
                err->message = "'${' without its closing '}'";
                err->offset = i;
                return NULL;
            }
            cmi_expr_t *e = cmi_expr_compile_synapse(arena, text + i + 2, close - 2, err);
            if (e == NULL) {
                err->offset += i + 2;
                return NULL;
            }
            s->kind = SEG_EXPR;
            s->expr = e;
            i += close + 1;
        } else {
            size_t k = i + 1, num = 0;
            while (k < len && isdigit((unsigned char)text[k]) && num < 100000)
                num = num * 10 + (size_t)(text[k++] - '0');
            if (num == 0 || num > legacy_args) {
                err->message = cmi_arena_sprintf(arena, "$%zu has no matching <arg> (there are %zu)", num, legacy_args);
                err->offset = i;
                return NULL;
            }
            s->kind = SEG_ARG;
            s->arg = num - 1;
            i = k;
        }
        lit = i;
    }
    t->literal = 1;
    for (size_t k = 0; k < t->count; k++)
        if (t->segs[k].kind != SEG_TEXT)
            t->literal = 0;
    return t;
}

int cmi_template_is_literal(const cmi_template_t *t)
{
    return t->literal;
}

void cmi_json_append_escaped(cmi_strbuf_t *out, const char *s, size_t len)
{
    cmi_strbuf_json_escaped(out, s, len);
}

void cmi_json_append_value(cmi_strbuf_t *out, const cmi_value_t *v, cmi_arena_t *arena)
{
    size_t len;
    const char *text;
    switch (v->type) {
    case CMI_VAL_NULL:
        cmi_strbuf_puts(out, "null");
        return;
    case CMI_VAL_STRING:
    case CMI_VAL_XML:
        cmi_strbuf_putc(out, '"');
        cmi_json_append_escaped(out, v->u.s.ptr, v->u.s.len);
        cmi_strbuf_putc(out, '"');
        return;
    case CMI_VAL_NUMBER:
        if (!isfinite(v->u.d)) { /* JSON has no NaN or infinity */
            cmi_strbuf_puts(out, "null");
            return;
        }
        /* fall through */
    default:
        text = cmi_value_to_text(arena, v, &len);
        cmi_strbuf_append(out, text, len);
    }
}

static void append_xml_escaped(cmi_strbuf_t *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '&': cmi_strbuf_append(out, "&amp;", 5); break;
        case '<': cmi_strbuf_append(out, "&lt;", 4); break;
        case '>': cmi_strbuf_append(out, "&gt;", 4); break;
        case '"': cmi_strbuf_append(out, "&quot;", 6); break;
        case '\'': cmi_strbuf_append(out, "&apos;", 6); break;
        default: cmi_strbuf_putc(out, s[i]);
        }
    }
}

static void insert(const cmi_template_t *t, const segment_t *s, const cmi_value_t *v, cmi_strbuf_t *out,
                   cmi_arena_t *arena)
{
    size_t len;
    const char *text;
    switch (t->mode) {
    case CMI_TEMPLATE_JSON:
        if (s->in_string) {
            text = cmi_value_to_text(arena, v, &len);
            cmi_json_append_escaped(out, text, len);
        } else if (v->type == CMI_VAL_STRING || v->type == CMI_VAL_XML) {
            /* A bare string goes in as its text, as MI inserts it: a value
             * that holds JSON text stays JSON; a plain word must be quoted
             * in the template to make valid JSON. */
            cmi_strbuf_append(out, v->u.s.ptr, v->u.s.len);
        } else {
            cmi_json_append_value(out, v, arena);
        }
        return;
    case CMI_TEMPLATE_XML:
        text = cmi_value_to_text(arena, v, &len);
        if (v->type == CMI_VAL_XML)
            cmi_strbuf_append(out, text, len);
        else
            append_xml_escaped(out, text, len);
        return;
    case CMI_TEMPLATE_TEXT:
        text = cmi_value_to_text(arena, v, &len);
        cmi_strbuf_append(out, text, len);
        return;
    }
}

int cmi_template_render(const cmi_template_t *t, cmi_msg_t *msg, const cmi_value_t *args, size_t nargs,
                        cmi_strbuf_t *out)
{
    for (size_t i = 0; i < t->count; i++) {
        const segment_t *s = &t->segs[i];
        cmi_value_t v;
        switch (s->kind) {
        case SEG_TEXT:
            cmi_strbuf_append(out, s->text, s->len);
            break;
        case SEG_EXPR:
            if (cmi_expr_eval(s->expr, msg, &v) != 0)
                return CMI_FLOW_ERROR;
            insert(t, s, &v, out, msg->arena);
            break;
        case SEG_ARG:
            v = s->arg < nargs ? args[s->arg] : cmi_value_null();
            insert(t, s, &v, out, msg->arena);
            break;
        }
    }
    return 0;
}
