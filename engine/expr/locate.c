/* Places a JSON path reaches: where a mediator that edits JSON (enrich)
 * sets, adds, removes or renames, rather than the values evaluation
 * returns.  The path's every step but the last navigates as evaluation
 * does (eval.c); the last names the places in what those steps reached. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "expr/ast.h"
#include "runtime/errors.h"
#include "runtime/msg.h"

typedef struct {
    cmi_json_place_t *items;
    size_t count, cap;
    cmi_arena_t *arena;
} places_t;

static void add(places_t *p, json_t *parent, const char *key, size_t index)
{
    p->items = cmi_arena_grow(p->arena, p->items, p->count, &p->cap, sizeof(*p->items), 8);
    p->items[p->count++] = (cmi_json_place_t){.parent = parent, .key = key, .index = index};
}

static void add_index(places_t *p, json_t *arr, long i)
{
    long n = (long)json_array_size(arr);
    if (i < 0)
        i += n;
    if (i >= 0 && i < n)
        add(p, arr, NULL, (size_t)i);
}

static void add_field(places_t *p, json_t *obj, const char *name, size_t len)
{
    if (json_object_getn(obj, name, len) != NULL)
        add(p, obj, cmi_arena_strndup(p->arena, name, len), 0);
}

/* A subscript value (number: index, string: field) as a place in j. */
static void add_subscript(places_t *p, const cmi_value_t *key, json_t *j)
{
    double d;
    if (key->type == CMI_VAL_STRING && json_is_object(j))
        add_field(p, j, key->u.s.ptr, key->u.s.len);
    else if (json_is_array(j) && ex_as_number(key, &d) && d == floor(d) && d > -1e15 && d < 1e15)
        add_index(p, j, (long)d);
}

static int filter_places(ex_ctx_t *c, const ex_step_t *st, json_t *arr, places_t *p)
{
    for (size_t i = 0; i < json_array_size(arr); i++) {
        int keep, rc = ex_filter_keeps(c, st, json_array_get(arr, i), &keep);
        if (rc != 0)
            return rc;
        if (keep)
            add(p, arr, NULL, i);
    }
    return 0;
}

static int last_step_places(ex_ctx_t *c, const ex_step_t *st, json_t *j, places_t *p)
{
    cmi_value_t key;
    switch (st->kind) {
    case STEP_FIELD:
        if (json_is_object(j))
            add_field(p, j, st->name, strlen(st->name));
        return 0;
    case STEP_INDEX:
        if (json_is_array(j))
            add_index(p, j, st->index);
        return 0;
    case STEP_EXPR:
        if (ex_eval(c, st->expr, &key) != 0)
            return CMI_FLOW_ERROR;
        add_subscript(p, &key, j);
        return 0;
    case STEP_UNION:
        for (size_t i = 0; i < st->nitems; i++) {
            if (ex_eval(c, st->items[i], &key) != 0)
                return CMI_FLOW_ERROR;
            add_subscript(p, &key, j);
        }
        return 0;
    case STEP_WILD:
        if (json_is_array(j)) {
            for (size_t i = 0; i < json_array_size(j); i++)
                add(p, j, NULL, i);
        } else if (json_is_object(j)) {
            const char *k;
            json_t *v;
            json_object_foreach(j, k, v) add(p, j, k, 0);
        }
        return 0;
    case STEP_SLICE: {
        if (!json_is_array(j))
            return 0;
        long n = (long)json_array_size(j);
        long a = st->has_start ? st->start : 0, b = st->has_end ? st->end : n;
        a = a < 0 ? (a + n < 0 ? 0 : a + n) : a;
        b = b < 0 ? b + n : (b > n ? n : b);
        for (long i = a; i < b; i++)
            add(p, j, NULL, (size_t)i);
        return 0;
    }
    case STEP_FILTER:
        return json_is_array(j) ? filter_places(c, st, j, p) : 0;
    case STEP_DEEP:
    case STEP_FUNC:
        break; /* refused by cmi_expr_is_json_path() */
    }
    return 0;
}

int cmi_expr_is_json_path(const cmi_expr_t *e)
{
    const ex_node_t *n = e->root;
    if (n->kind != EX_PATH || n->u.path.root != ROOT_PAYLOAD)
        return 0;
    for (size_t i = 0; i < n->u.path.nsteps; i++)
        if (n->u.path.steps[i].kind == STEP_FUNC)
            return 0;
    return n->u.path.nsteps == 0 || n->u.path.steps[n->u.path.nsteps - 1].kind != STEP_DEEP;
}

int cmi_expr_json_places(const cmi_expr_t *e, cmi_msg_t *msg, json_t *root, cmi_json_place_t **out, size_t *n)
{
    const ex_node_t *path = e->root;
    ex_ctx_t c = {.expr = e, .msg = msg};
    places_t p = {.arena = msg->arena};
    size_t nsteps = path->u.path.nsteps;
    if (nsteps == 0) {
        add(&p, NULL, NULL, 0); /* "$": the document itself */
    } else {
        ex_nodes_t set = {.arena = msg->arena};
        ex_nodes_add(&set, root);
        for (size_t i = 0; i + 1 < nsteps; i++) {
            ex_nodes_t next = {.arena = msg->arena};
            for (size_t k = 0; k < set.count; k++)
                if (ex_apply_step(&c, &path->u.path.steps[i], set.items[k], &next) != 0)
                    return CMI_FLOW_ERROR;
            set = next;
        }
        for (size_t k = 0; k < set.count; k++)
            if (last_step_places(&c, &path->u.path.steps[nsteps - 1], set.items[k], &p) != 0)
                return CMI_FLOW_ERROR;
    }
    *out = p.items;
    *n = p.count;
    return 0;
}
