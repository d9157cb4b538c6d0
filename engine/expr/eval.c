/* Evaluating compiled expressions against a message. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "expr/ast.h"
#include "runtime/convert.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

/* ---- values ------------------------------------------------------------ */

int ex_fail(ex_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *why = cmi_arena_vsprintf(c->msg->arena, fmt, ap);
    va_end(ap);
    return cmi_msg_set_error(c->msg, CMI_ERR_EXPRESSION, NULL, "%s: %s", c->expr->text, why);
}

cmi_value_t ex_own_json(ex_ctx_t *c, json_t *j)
{
    cmi_value_t v = {.type = CMI_VAL_JSON};
    v.u.json = cmi_msg_own_json(c->msg, j);
    return v;
}

cmi_value_t ex_from_json(json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_STRING:
        return cmi_value_string(json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        return cmi_value_int(json_integer_value(j));
    case JSON_REAL:
        return cmi_value_number(json_real_value(j));
    case JSON_TRUE:
        return cmi_value_bool(1);
    case JSON_FALSE:
        return cmi_value_bool(0);
    case JSON_NULL:
        return cmi_value_null();
    default: {
        cmi_value_t v = {.type = CMI_VAL_JSON};
        v.u.json = j;
        return v;
    }
    }
}

const char *ex_type_name(const cmi_value_t *v)
{
    switch (v->type) {
    case CMI_VAL_NULL: return "null";
    case CMI_VAL_BOOL: return "boolean";
    case CMI_VAL_INT:
    case CMI_VAL_NUMBER: return "number";
    case CMI_VAL_STRING: return "string";
    case CMI_VAL_JSON: return json_is_array(v->u.json) ? "array" : "object";
    case CMI_VAL_XML: return "XML";
    }
    return "value";
}

int ex_as_number(const cmi_value_t *v, double *d)
{
    if (v->type == CMI_VAL_INT) {
        *d = (double)v->u.i;
        return 1;
    }
    if (v->type == CMI_VAL_NUMBER) {
        *d = v->u.d;
        return 1;
    }
    return 0;
}

const char *ex_text(ex_ctx_t *c, const cmi_value_t *v, size_t *len)
{
    return cmi_value_to_text(c->msg->arena, v, len);
}

int cmi_value_truth(const cmi_value_t *v)
{
    switch (v->type) {
    case CMI_VAL_NULL: return 0;
    case CMI_VAL_BOOL: return v->u.b;
    case CMI_VAL_INT: return v->u.i != 0;
    case CMI_VAL_NUMBER: return v->u.d != 0 && !isnan(v->u.d);
    case CMI_VAL_STRING: return v->u.s.len == 4 && strncasecmp(v->u.s.ptr, "true", 4) == 0;
    case CMI_VAL_JSON: return 1;
    case CMI_VAL_XML: return v->u.s.len > 0;
    }
    return 0;
}

/* A short rendering of a value for error messages. */
static const char *show(ex_ctx_t *c, const cmi_value_t *v)
{
    size_t len;
    const char *t = ex_text(c, v, &len);
    if (v->type == CMI_VAL_STRING)
        return cmi_arena_sprintf(c->msg->arena, "string \"%.*s%s\"", (int)(len > 40 ? 40 : len), t, len > 40 ? "..." : "");
    if (v->type == CMI_VAL_NULL)
        return "null";
    return cmi_arena_sprintf(c->msg->arena, "%s %.*s%s", ex_type_name(v), (int)(len > 40 ? 40 : len), t,
                             len > 40 ? "..." : "");
}

/* ---- roots --------------------------------------------------------------- */

/* An XML or text payload as MI's Synapse expressions see it: the JSON form
 * of the XML (of the SOAP Body's element), a text as {"text": ...} (MI holds
 * it as a <text> element).  Made for each evaluation (linear in the payload,
 * bounded by the view limit) and owned by the message.  NULL: the error slot
 * is set. */
static json_t *payload_as_json(ex_ctx_t *c)
{
    cmi_msg_t *msg = c->msg;
    if (msg->payload.kind == CMI_PAYLOAD_TEXT) {
        size_t len;
        const char *bytes = cmi_msg_payload_bytes(msg, &len);
        json_t *text = json_stringn(bytes, len);
        if (text == NULL) {
            cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "%s: the text payload is not UTF-8", c->expr->text);
            return NULL;
        }
        return cmi_msg_own_json(msg, json_pack("{s:o}", "text", text));
    }
    const char *err = NULL;
    xmlDocPtr doc = cmi_msg_payload_xml(msg, &err);
    if (doc == NULL) {
        cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "%s: %s", c->expr->text, err);
        return NULL;
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (cmi_soap_is_envelope(root))
        root = cmi_soap_body_child(root);
    if (root == NULL)
        return cmi_msg_own_json(msg, json_object());
    json_t *j = cmi_xml_to_json_tree(msg->arena, root, cmi_msg_view_limit());
    if (j == NULL) {
        cmi_msg_set_error(msg, CMI_ERR_PAYLOAD_TOO_LARGE, NULL, "%s: the payload's JSON form would take more than %zu bytes",
                          c->expr->text, cmi_msg_view_limit());
        return NULL;
    }
    return cmi_msg_own_json(msg, j);
}

static int payload_value(ex_ctx_t *c, int navigating, cmi_value_t *out)
{
    cmi_msg_t *msg = c->msg;
    switch (msg->payload.kind) {
    case CMI_PAYLOAD_NONE:
        *out = cmi_value_null();
        return 0;
    case CMI_PAYLOAD_JSON: {
        const char *err = NULL;
        json_t *j = cmi_msg_payload_json(msg, &err);
        if (j == NULL) {
            size_t len;
            cmi_msg_payload_bytes(msg, &len);
            if (len == 0) { /* an empty body declared as JSON has no value */
                *out = cmi_value_null();
                return 0;
            }
            return cmi_msg_set_error(msg, CMI_ERR_PAYLOAD, NULL, "%s: %s", c->expr->text, err);
        }
        *out = ex_from_json(j);
        return 0;
    }
    case CMI_PAYLOAD_XML:
    case CMI_PAYLOAD_TEXT: {
        json_t *j = payload_as_json(c);
        if (j == NULL)
            return -1;
        *out = ex_from_json(j);
        return 0;
    }
    default: {
        /* A binary payload has no JSON structure: it reads as its bytes,
         * anything below it is missing. */
        if (navigating) {
            *out = cmi_value_null();
            return 0;
        }
        size_t len;
        const char *bytes = cmi_msg_payload_bytes(msg, &len);
        *out = cmi_value_string(bytes, len);
        return 0;
    }
    }
}

static cmi_value_t from_kv(const cmi_value_t *v)
{
    return v ? *v : cmi_value_null();
}

/* Header, property, parameter and config values are text; as in MI they
 * read as numbers when the whole text is one, so that
 * ${params.queryParams.qty * 2} and ${headers["X-Count"] > 5} work. */
static cmi_value_t auto_number(cmi_value_t v)
{
    if (v.type != CMI_VAL_STRING || v.u.s.len == 0 || v.u.s.len > 40)
        return v;
    char buf[48];
    memcpy(buf, v.u.s.ptr, v.u.s.len);
    buf[v.u.s.len] = '\0';
    const char *s = buf;
    if (*s == '-' || *s == '+')
        s++;
    if (!isdigit((unsigned char)*s))
        return v; /* not "NaN", "Infinity", " 1", ".5" */
    char *end;
    errno = 0;
    long long i = strtoll(buf, &end, 10);
    if (*end == '\0' && errno == 0)
        return cmi_value_int(i);
    errno = 0;
    double d = strtod(buf, &end);
    if (*end == '\0' && errno == 0 && isfinite(d))
        return cmi_value_number(d);
    return v;
}

int ex_func_param(ex_ctx_t *c, const char *name, cmi_value_t *out)
{
    *out = cmi_value_null();
    cmi_func_frame_t *f = cmi_msg_func_frame(c->msg);
    for (size_t i = 0; f != NULL && i < f->count; i++) {
        cmi_func_arg_t *a = &f->args[i];
        if (strcmp(a->name, name) != 0)
            continue;
        if (!a->set)
            return 0;
        if (a->lazy == NULL) {
            *out = a->value;
            return 0;
        }
        if (a->busy)
            return ex_fail(c, "template parameter '%s' is computed from itself", name);
        a->busy = 1;
        int rc = cmi_expr_eval(a->lazy, c->msg, out);
        a->busy = 0;
        return rc;
    }
    return 0;
}

static int root_value(ex_ctx_t *c, const ex_node_t *n, cmi_value_t *out)
{
    cmi_msg_t *msg = c->msg;
    const char *name = n->u.path.name;
    size_t len;
    const char *s;
    switch (n->u.path.root) {
    case ROOT_PAYLOAD:
        return payload_value(c, n->u.path.nsteps > 0, out);
    case ROOT_VARS:
        *out = from_kv(cmi_msg_var_get(msg, name));
        return 0;
    case ROOT_HEADERS:
        s = cmi_msg_header_get(msg, name, &len);
        *out = s ? auto_number(cmi_value_string(s, len)) : cmi_value_null();
        return 0;
    case ROOT_PROPS_SYNAPSE:
        *out = auto_number(from_kv(cmi_msg_prop_get(msg, CMI_SCOPE_DEFAULT, name)));
        return 0;
    case ROOT_PROPS_AXIS2:
        *out = auto_number(from_kv(cmi_msg_prop_get(msg, CMI_SCOPE_AXIS2, name)));
        return 0;
    case ROOT_QUERY:
        *out = auto_number(from_kv(cmi_kvlist_get(&msg->query_params, name)));
        return 0;
    case ROOT_PATHPARAM:
        *out = auto_number(from_kv(cmi_kvlist_get(&msg->path_params, name)));
        return 0;
    case ROOT_FUNCPARAM:
        if (ex_func_param(c, name, out) != 0)
            return CMI_FLOW_ERROR;
        *out = auto_number(*out); /* Synapse's tryParseNumber */
        return 0;
    case ROOT_CONFIGS:
        /* configs.NAME: the process environment, read as MI reads its
         * configurable values from environment variables. */
        s = getenv(name);
        *out = s ? auto_number(cmi_value_cstring(cmi_arena_strdup(msg->arena, s))) : cmi_value_null();
        return 0;
    case ROOT_CURRENT:
        *out = c->current ? *c->current : cmi_value_null();
        return 0;
    case ROOT_VALUE:
        return ex_eval(c, n->u.path.base, out);
    }
    *out = cmi_value_null();
    return 0;
}

/* ---- navigation ------------------------------------------------------------ */

void ex_nodes_add(ex_nodes_t *ns, json_t *j)
{
    ns->items = cmi_arena_grow(ns->arena, ns->items, ns->count, &ns->cap, sizeof(*ns->items), 16);
    ns->items[ns->count++] = j;
}

json_t *ex_index_of(json_t *j, long i)
{
    if (!json_is_array(j))
        return NULL;
    long n = (long)json_array_size(j);
    if (i < 0)
        i += n;
    return i >= 0 && i < n ? json_array_get(j, (size_t)i) : NULL;
}

static void deep_collect(json_t *j, const char *name, ex_nodes_t *out)
{
    if (json_is_object(j)) {
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) {
            if (name == NULL || strcmp(key, name) == 0)
                ex_nodes_add(out, v);
            deep_collect(v, name, out);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            if (name == NULL)
                ex_nodes_add(out, v);
            deep_collect(v, name, out);
        }
    }
}

static void slice(json_t *j, const ex_step_t *st, ex_nodes_t *out)
{
    if (!json_is_array(j))
        return;
    long n = (long)json_array_size(j);
    long a = st->has_start ? st->start : 0, b = st->has_end ? st->end : n;
    if (a < 0)
        a += n;
    if (b < 0)
        b += n;
    if (a < 0)
        a = 0;
    if (b > n)
        b = n;
    for (long i = a; i < b; i++)
        ex_nodes_add(out, json_array_get(j, (size_t)i));
}

static int json_of_value(ex_ctx_t *c, const cmi_value_t *v, json_t **out);

/* Applies a subscript value (number: index, string: field) to j. */
json_t *ex_subscript(const cmi_value_t *key, json_t *j)
{
    double d;
    if (key->type == CMI_VAL_STRING && json_is_object(j))
        return json_object_getn(j, key->u.s.ptr, key->u.s.len);
    if (ex_as_number(key, &d) && d == floor(d) && d > -1e15 && d < 1e15)
        return ex_index_of(j, (long)d);
    return NULL;
}

int ex_filter_keeps(ex_ctx_t *c, const ex_step_t *st, json_t *item, int *keep)
{
    const cmi_value_t *saved = c->current;
    cmi_value_t cur = ex_from_json(item), v;
    c->current = &cur;
    int rc = ex_eval(c, st->expr, &v);
    c->current = saved;
    *keep = rc == 0 && cmi_value_truth(&v);
    return rc;
}

int ex_apply_step(ex_ctx_t *c, const ex_step_t *st, json_t *j, ex_nodes_t *out)
{
    json_t *r;
    switch (st->kind) {
    case STEP_FIELD:
        if (json_is_object(j) && (r = json_object_get(j, st->name)) != NULL)
            ex_nodes_add(out, r);
        return 0;
    case STEP_INDEX:
        if ((r = ex_index_of(j, st->index)) != NULL)
            ex_nodes_add(out, r);
        return 0;
    case STEP_EXPR: {
        cmi_value_t key;
        if (ex_eval(c, st->expr, &key) != 0)
            return CMI_FLOW_ERROR;
        if ((r = ex_subscript(&key, j)) != NULL)
            ex_nodes_add(out, r);
        return 0;
    }
    case STEP_UNION:
        for (size_t i = 0; i < st->nitems; i++) {
            cmi_value_t key;
            if (ex_eval(c, st->items[i], &key) != 0)
                return CMI_FLOW_ERROR;
            if ((r = ex_subscript(&key, j)) != NULL)
                ex_nodes_add(out, r);
        }
        return 0;
    case STEP_WILD:
        if (json_is_array(j)) {
            size_t i;
            json_array_foreach(j, i, r) ex_nodes_add(out, r);
        } else if (json_is_object(j)) {
            const char *key;
            json_object_foreach(j, key, r) ex_nodes_add(out, r);
        }
        return 0;
    case STEP_DEEP:
        deep_collect(j, st->name, out);
        return 0;
    case STEP_SLICE:
        slice(j, st, out);
        return 0;
    case STEP_FILTER: {
        size_t n = json_is_array(j) ? json_array_size(j) : 1;
        for (size_t i = 0; i < n; i++) {
            json_t *item = json_is_array(j) ? json_array_get(j, i) : j;
            int keep, rc = ex_filter_keeps(c, st, item, &keep);
            if (rc != 0)
                return rc;
            if (keep)
                ex_nodes_add(out, item);
        }
        return 0;
    }
    case STEP_FUNC:
        return 0; /* handled on values, see path_function() */
    }
    return 0;
}

static int numeric_items(ex_ctx_t *c, json_t *arr, const char *fn, double *vals, size_t *n)
{
    size_t i;
    json_t *v;
    *n = 0;
    json_array_foreach(arr, i, v) {
        if (!json_is_number(v))
            return ex_fail(c, ".%s() needs an array of numbers; item %zu is not a number", fn, i);
        vals[(*n)++] = json_number_value(v);
    }
    return 0;
}

/* .length() .size() .min() .max() .avg() .sum() .stddev() .keys() .first() .last() */
static int path_function(ex_ctx_t *c, const char *fn, const cmi_value_t *in, cmi_value_t *out)
{
    json_t *j = in->type == CMI_VAL_JSON ? in->u.json : NULL;
    if (strcmp(fn, "length") == 0 || strcmp(fn, "size") == 0) {
        if (in->type == CMI_VAL_STRING)
            *out = cmi_value_int((int64_t)in->u.s.len);
        else if (j != NULL)
            *out = cmi_value_int((int64_t)(json_is_array(j) ? json_array_size(j) : json_object_size(j)));
        else
            *out = cmi_value_null();
        return 0;
    }
    if (strcmp(fn, "keys") == 0) {
        if (!json_is_object(j)) {
            *out = cmi_value_null();
            return 0;
        }
        json_t *keys = json_array();
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) json_array_append_new(keys, json_string(key));
        *out = ex_own_json(c, keys);
        return 0;
    }
    if (!json_is_array(j)) {
        *out = cmi_value_null();
        return 0;
    }
    size_t n = json_array_size(j);
    if (strcmp(fn, "first") == 0 || strcmp(fn, "last") == 0) {
        *out = n ? ex_from_json(json_array_get(j, fn[0] == 'f' ? 0 : n - 1)) : cmi_value_null();
        return 0;
    }
    if (n == 0) {
        *out = cmi_value_null();
        return 0;
    }
    double *vals = cmi_arena_alloc(c->msg->arena, n * sizeof(double)), acc = 0;
    if (numeric_items(c, j, fn, vals, &n) != 0)
        return CMI_FLOW_ERROR;
    if (strcmp(fn, "min") == 0 || strcmp(fn, "max") == 0) {
        acc = vals[0];
        for (size_t i = 1; i < n; i++)
            acc = fn[1] == 'i' ? fmin(acc, vals[i]) : fmax(acc, vals[i]);
    } else {
        for (size_t i = 0; i < n; i++)
            acc += vals[i];
        if (strcmp(fn, "avg") == 0) {
            acc /= (double)n;
        } else if (strcmp(fn, "stddev") == 0) {
            double mean = acc / (double)n, sq = 0;
            for (size_t i = 0; i < n; i++)
                sq += (vals[i] - mean) * (vals[i] - mean);
            acc = sqrt(sq / (double)n);
        }
    }
    *out = acc == floor(acc) && fabs(acc) < 9e15 && strcmp(fn, "avg") != 0 && strcmp(fn, "stddev") != 0
               ? cmi_value_int((int64_t)acc)
               : cmi_value_number(acc);
    return 0;
}

static int eval_path(ex_ctx_t *c, const ex_node_t *n, cmi_value_t *out)
{
    cmi_value_t base;
    if (root_value(c, n, &base) != 0)
        return CMI_FLOW_ERROR;
    size_t nsteps = n->u.path.nsteps;
    const ex_step_t *steps = n->u.path.steps;
    if (nsteps == 0) {
        *out = base;
        return 0;
    }
    if (n->u.path.definite) {
        cmi_value_t cur = base;
        for (size_t i = 0; i < nsteps; i++) {
            if (steps[i].kind == STEP_FUNC) {
                if (path_function(c, steps[i].name, &cur, &cur) != 0)
                    return CMI_FLOW_ERROR;
                continue;
            }
            if (cur.type != CMI_VAL_JSON) {
                *out = cmi_value_null(); /* below a scalar or a missing value: missing */
                return 0;
            }
            ex_nodes_t one = {.arena = c->msg->arena};
            if (ex_apply_step(c, &steps[i], cur.u.json, &one) != 0)
                return CMI_FLOW_ERROR;
            cur = one.count ? ex_from_json(one.items[0]) : cmi_value_null();
        }
        *out = cur;
        return 0;
    }
    /* Indefinite: every step maps the working set; the result is an array
     * (empty when nothing matched), as JSONPath answers. */
    ex_nodes_t set = {.arena = c->msg->arena};
    json_t *start = NULL;
    if (base.type == CMI_VAL_JSON)
        start = base.u.json;
    else if (json_of_value(c, &base, &start) != 0)
        return CMI_FLOW_ERROR;
    if (start != NULL)
        ex_nodes_add(&set, start);
    size_t i = 0;
    for (; i < nsteps && steps[i].kind != STEP_FUNC; i++) {
        ex_nodes_t nextset = {.arena = c->msg->arena};
        for (size_t k = 0; k < set.count; k++)
            if (ex_apply_step(c, &steps[i], set.items[k], &nextset) != 0)
                return CMI_FLOW_ERROR;
        set = nextset;
    }
    json_t *arr = json_array();
    for (size_t k = 0; k < set.count; k++)
        json_array_append(arr, set.items[k]);
    cmi_value_t cur = ex_own_json(c, arr);
    for (; i < nsteps; i++) {
        if (steps[i].kind != STEP_FUNC) /* navigating on from an aggregate result */
            return ex_fail(c, "cannot navigate below .%s()", steps[i - 1].name);
        if (path_function(c, steps[i].name, &cur, &cur) != 0)
            return CMI_FLOW_ERROR;
    }
    *out = cur;
    return 0;
}

/* A scalar as a JSON node (for paths that start from one). */
static int json_of_value(ex_ctx_t *c, const cmi_value_t *v, json_t **out)
{
    json_t *j = NULL;
    switch (v->type) {
    case CMI_VAL_NULL: j = NULL; break;
    case CMI_VAL_BOOL: j = json_boolean(v->u.b); break;
    case CMI_VAL_INT: j = json_integer(v->u.i); break;
    case CMI_VAL_NUMBER: j = json_real(v->u.d); break;
    case CMI_VAL_STRING:
    case CMI_VAL_XML: j = cmi_json_text(c->msg->arena, v->u.s.ptr, v->u.s.len); break;
    case CMI_VAL_JSON: *out = v->u.json; return 0;
    }
    *out = j ? cmi_msg_own_json(c->msg, j) : NULL;
    return 0;
}

/* ---- operators ----------------------------------------------------------- */

static int is_num(const cmi_value_t *v)
{
    return v->type == CMI_VAL_INT || v->type == CMI_VAL_NUMBER;
}

static const char *op_name(ex_op_t op)
{
    static const char *const names[] = {"+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">="};
    return names[op];
}

static int arith(ex_ctx_t *c, ex_op_t op, const cmi_value_t *a, const cmi_value_t *b, cmi_value_t *out)
{
    if (op == OP_ADD && (a->type == CMI_VAL_STRING || b->type == CMI_VAL_STRING)) {
        size_t la, lb;
        const char *ta = ex_text(c, a, &la), *tb = ex_text(c, b, &lb);
        char *s = cmi_arena_alloc(c->msg->arena, la + lb + 1);
        memcpy(s, ta, la);
        memcpy(s + la, tb, lb);
        s[la + lb] = '\0';
        *out = cmi_value_string(s, la + lb);
        return 0;
    }
    if (!is_num(a) || !is_num(b))
        return ex_fail(c, "cannot apply '%s' to %s and %s", op_name(op), show(c, a), show(c, b));
    if (a->type == CMI_VAL_INT && b->type == CMI_VAL_INT) {
        int64_t x = a->u.i, y = b->u.i, r;
        switch (op) {
        case OP_ADD:
            if (!__builtin_add_overflow(x, y, &r)) {
                *out = cmi_value_int(r);
                return 0;
            }
            break;
        case OP_SUB:
            if (!__builtin_sub_overflow(x, y, &r)) {
                *out = cmi_value_int(r);
                return 0;
            }
            break;
        case OP_MUL:
            if (!__builtin_mul_overflow(x, y, &r)) {
                *out = cmi_value_int(r);
                return 0;
            }
            break;
        case OP_DIV:
            if (y == 0)
                return ex_fail(c, "division by zero");
            if (x % y == 0 && !(x == INT64_MIN && y == -1)) {
                *out = cmi_value_int(x / y);
                return 0;
            }
            break;
        case OP_MOD:
            if (y == 0)
                return ex_fail(c, "modulo by zero");
            *out = cmi_value_int(y == -1 ? 0 : x % y);
            return 0;
        default:
            break;
        }
    }
    double x, y;
    ex_as_number(a, &x);
    ex_as_number(b, &y);
    switch (op) {
    case OP_ADD: *out = cmi_value_number(x + y); break;
    case OP_SUB: *out = cmi_value_number(x - y); break;
    case OP_MUL: *out = cmi_value_number(x * y); break;
    case OP_DIV:
        if (y == 0)
            return ex_fail(c, "division by zero");
        *out = cmi_value_number(x / y);
        break;
    case OP_MOD:
        if (y == 0)
            return ex_fail(c, "modulo by zero");
        *out = cmi_value_number(fmod(x, y));
        break;
    default: break;
    }
    return 0;
}

/* Equality: numbers by value (1 == 1.0), strings by content, JSON
 * structurally, null only to null; values of different types by their text,
 * as MI compares them (so a path parameter 123 equals "123", and true
 * equals "true"). */
static int values_equal(ex_ctx_t *c, const cmi_value_t *a, const cmi_value_t *b)
{
    if (is_num(a) && is_num(b)) {
        double x, y;
        ex_as_number(a, &x);
        ex_as_number(b, &y);
        if (a->type == CMI_VAL_INT && b->type == CMI_VAL_INT)
            return a->u.i == b->u.i;
        return x == y;
    }
    if (a->type == CMI_VAL_NULL || b->type == CMI_VAL_NULL)
        return a->type == b->type;
    if (a->type != b->type) {
        size_t la, lb;
        const char *ta = ex_text(c, a, &la), *tb = ex_text(c, b, &lb);
        return la == lb && memcmp(ta, tb, la) == 0;
    }
    switch (a->type) {
    case CMI_VAL_NULL: return 1;
    case CMI_VAL_BOOL: return a->u.b == b->u.b;
    case CMI_VAL_STRING:
    case CMI_VAL_XML: return a->u.s.len == b->u.s.len && memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0;
    case CMI_VAL_JSON: return json_equal(a->u.json, b->u.json);
    default: return 0;
    }
}

static int compare(ex_ctx_t *c, ex_op_t op, const cmi_value_t *a, const cmi_value_t *b, cmi_value_t *out)
{
    if (op == OP_EQ || op == OP_NE) {
        int eq = values_equal(c, a, b);
        *out = cmi_value_bool(op == OP_EQ ? eq : !eq);
        return 0;
    }
    int cmp;
    if (is_num(a) && is_num(b)) {
        double x, y;
        ex_as_number(a, &x);
        ex_as_number(b, &y);
        if (a->type == CMI_VAL_INT && b->type == CMI_VAL_INT)
            cmp = a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
        else
            cmp = x < y ? -1 : x > y;
    } else if (a->type == CMI_VAL_STRING && b->type == CMI_VAL_STRING) {
        size_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
        cmp = memcmp(a->u.s.ptr, b->u.s.ptr, n);
        if (cmp == 0)
            cmp = a->u.s.len < b->u.s.len ? -1 : a->u.s.len > b->u.s.len;
    } else if (a->type == CMI_VAL_NULL || b->type == CMI_VAL_NULL) {
        /* Ordering against a missing value is false, not an error: a
         * condition on an absent field simply does not hold. */
        *out = cmi_value_bool(0);
        return 0;
    } else {
        return ex_fail(c, "cannot compare %s %s %s", show(c, a), op_name(op), show(c, b));
    }
    int r = op == OP_LT ? cmp < 0 : op == OP_LE ? cmp <= 0 : op == OP_GT ? cmp > 0 : cmp >= 0;
    *out = cmi_value_bool(r);
    return 0;
}

/* ---- the walk -------------------------------------------------------------- */

int ex_eval(ex_ctx_t *c, const ex_node_t *n, cmi_value_t *out)
{
    cmi_value_t a, b;
    switch (n->kind) {
    case EX_LITERAL:
        *out = n->u.literal;
        return 0;
    case EX_ARRAY: {
        json_t *arr = json_array();
        for (size_t i = 0; i < n->u.array.count; i++) {
            json_t *j;
            if (ex_eval(c, n->u.array.items[i], &a) != 0 || json_of_value(c, &a, &j) != 0) {
                json_decref(arr);
                return CMI_FLOW_ERROR;
            }
            json_array_append(arr, j ? j : json_null());
        }
        *out = ex_own_json(c, arr);
        return 0;
    }
    case EX_PATH:
        return eval_path(c, n, out);
    case EX_NOT:
        if (ex_eval(c, n->u.operand, &a) != 0)
            return CMI_FLOW_ERROR;
        *out = cmi_value_bool(!cmi_value_truth(&a));
        return 0;
    case EX_NEG:
        if (ex_eval(c, n->u.operand, &a) != 0)
            return CMI_FLOW_ERROR;
        if (a.type == CMI_VAL_INT && a.u.i != INT64_MIN)
            *out = cmi_value_int(-a.u.i);
        else if (is_num(&a))
            *out = cmi_value_number(-(a.type == CMI_VAL_INT ? (double)a.u.i : a.u.d));
        else
            return ex_fail(c, "cannot negate %s", show(c, &a));
        return 0;
    case EX_BINARY:
        if (ex_eval(c, n->u.bin.lhs, &a) != 0 || ex_eval(c, n->u.bin.rhs, &b) != 0)
            return CMI_FLOW_ERROR;
        return n->u.bin.op >= OP_EQ ? compare(c, n->u.bin.op, &a, &b, out) : arith(c, n->u.bin.op, &a, &b, out);
    case EX_AND:
    case EX_OR:
        if (ex_eval(c, n->u.bin.lhs, &a) != 0)
            return CMI_FLOW_ERROR;
        if (cmi_value_truth(&a) == (n->kind == EX_OR)) {
            *out = cmi_value_bool(n->kind == EX_OR);
            return 0;
        }
        if (ex_eval(c, n->u.bin.rhs, &b) != 0)
            return CMI_FLOW_ERROR;
        *out = cmi_value_bool(cmi_value_truth(&b));
        return 0;
    case EX_COND:
        if (ex_eval(c, n->u.cond.cond, &a) != 0)
            return CMI_FLOW_ERROR;
        return ex_eval(c, cmi_value_truth(&a) ? n->u.cond.then : n->u.cond.otherwise, out);
    case EX_CALL: {
        cmi_value_t args[16];
        for (size_t i = 0; i < n->u.call.nargs; i++)
            if (ex_eval(c, n->u.call.args[i], &args[i]) != 0)
                return CMI_FLOW_ERROR;
        return n->u.call.fn->impl(c, args, n->u.call.nargs, out);
    }
    case EX_XPATH:
        return ex_xpath_eval(c, n, out);
    }
    *out = cmi_value_null();
    return 0;
}

/* ---- public -------------------------------------------------------------------- */

const char *cmi_expr_text(const cmi_expr_t *e)
{
    return e->text;
}

int cmi_expr_eval(const cmi_expr_t *e, cmi_msg_t *msg, cmi_value_t *out)
{
    ex_ctx_t c = {.expr = e, .msg = msg};
    return ex_eval(&c, e->root, out);
}

int cmi_expr_eval_bool(const cmi_expr_t *e, cmi_msg_t *msg, int *out)
{
    cmi_value_t v;
    if (cmi_expr_eval(e, msg, &v) != 0)
        return CMI_FLOW_ERROR;
    *out = cmi_value_truth(&v);
    return 0;
}

int cmi_expr_eval_text(const cmi_expr_t *e, cmi_msg_t *msg, const char **text, size_t *len)
{
    cmi_value_t v;
    if (cmi_expr_eval(e, msg, &v) != 0)
        return CMI_FLOW_ERROR;
    *text = cmi_value_to_text(msg->arena, &v, len);
    return 0;
}
