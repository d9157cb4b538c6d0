/* The compiled form of expressions (internal to engine/expr). */
#ifndef CMI_EXPR_AST_H
#define CMI_EXPR_AST_H

#include <libxml/xpath.h>

#include "expr/expr.h"

typedef struct ex_node ex_node_t;
typedef struct ex_fn ex_fn_t;

typedef enum {
    EX_LITERAL, /* a constant value */
    EX_ARRAY,   /* [a, b, ...] */
    EX_PATH,    /* a root (payload, vars, ...) and navigation steps */
    EX_NOT,     /* !a */
    EX_NEG,     /* -a */
    EX_BINARY,  /* a op b: arithmetic and comparison */
    EX_AND,     /* a && b, short-circuit */
    EX_OR,      /* a || b, short-circuit */
    EX_COND,    /* a ? b : c */
    EX_CALL,    /* f(args) */
    EX_XPATH,   /* legacy XPath 1.0, evaluated by libxml2 */
} ex_kind_t;

typedef enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE
} ex_op_t;

typedef enum {
    ROOT_PAYLOAD,       /* payload, $ */
    ROOT_VARS,          /* vars.NAME */
    ROOT_HEADERS,       /* headers.NAME */
    ROOT_PROPS_SYNAPSE, /* props.synapse.NAME (also properties.) */
    ROOT_PROPS_AXIS2,   /* props.axis2.NAME */
    ROOT_QUERY,         /* params.queryParams.NAME */
    ROOT_PATHPARAM,     /* params.pathParams.NAME */
    ROOT_FUNCPARAM,     /* params.functionParams.NAME (a sequence template's parameter) */
    ROOT_CONFIGS,       /* configs.NAME */
    ROOT_CURRENT,       /* @ inside a filter */
    ROOT_VALUE,         /* steps applied to the value of an expression (a call) */
} ex_root_t;

typedef enum {
    STEP_FIELD,  /* .name or ["name"] */
    STEP_INDEX,  /* [3], [-1] */
    STEP_EXPR,   /* [expr]: a number indexes, a string names a field */
    STEP_WILD,   /* .* or [*] */
    STEP_DEEP,   /* ..name or ..* */
    STEP_FILTER, /* [?(cond)] with @ as each element */
    STEP_SLICE,  /* [start:end] */
    STEP_UNION,  /* [a,b] of indexes or names */
    STEP_FUNC,   /* .length() .size() .min() .max() .avg() .sum() .keys() .first() .last() */
} ex_step_kind_t;

typedef struct {
    ex_step_kind_t kind;
    const char *name; /* FIELD, DEEP (NULL: any) , FUNC */
    long index;       /* INDEX */
    int has_start, has_end;
    long start, end;        /* SLICE */
    ex_node_t *expr;        /* EXPR, FILTER */
    ex_node_t **items;      /* UNION */
    size_t nitems;
} ex_step_t;

/* What an evaluation runs against. */
typedef struct {
    const cmi_expr_t *expr;
    cmi_msg_t *msg;
    const cmi_value_t *current; /* @ inside a filter, else NULL */
} ex_ctx_t;

typedef int (*ex_fn_impl_t)(ex_ctx_t *c, cmi_value_t *args, size_t nargs, cmi_value_t *out);

struct ex_fn {
    const char *name;
    unsigned min_args, max_args;
    ex_fn_impl_t impl;
};

typedef struct {
    const char *prefix;
    const char *href;
} ex_ns_t;

struct ex_node {
    ex_kind_t kind;
    size_t pos; /* offset of the node's text in the expression, for errors */
    union {
        cmi_value_t literal;
        struct {
            ex_node_t **items;
            size_t count;
        } array;
        struct {
            ex_root_t root;
            ex_node_t *base; /* ROOT_VALUE */
            const char *name; /* vars/headers/props/params/configs: the first name; NULL: the whole root */
            ex_step_t *steps;
            size_t nsteps;
            int definite; /* no wildcard, deep scan, filter, slice or union */
        } path;
        struct {
            ex_op_t op;
            ex_node_t *lhs, *rhs;
        } bin;
        ex_node_t *operand; /* NOT, NEG */
        struct {
            ex_node_t *cond, *then, *otherwise;
        } cond;
        struct {
            const ex_fn_t *fn;
            ex_node_t **args;
            size_t nargs;
        } call;
        struct {
            xmlXPathCompExprPtr comp;
            ex_ns_t *ns;
            size_t nns;
        } xpath;
    } u;
};

struct cmi_expr {
    const char *text; /* as written, for messages */
    ex_node_t *root;
};

/* ---- shared between parser, evaluator and functions -------------------- */

const ex_fn_t *ex_fn_find(const char *name, size_t len);

/* Evaluates a node (eval.c). */
int ex_eval(ex_ctx_t *c, const ex_node_t *n, cmi_value_t *out);
/* Sets the message's error slot for a failed evaluation, naming the
 * expression; returns CMI_FLOW_ERROR. */
int ex_fail(ex_ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A new JSON tree tied to the message, as a value. */
cmi_value_t ex_own_json(ex_ctx_t *c, json_t *j);
/* The value as text in the message's arena (null: ""). */
const char *ex_text(ex_ctx_t *c, const cmi_value_t *v, size_t *len);
/* Names a value's type for messages: "null", "boolean", "number", "string", "object", "array". */
const char *ex_type_name(const cmi_value_t *v);
/* The value as a double, if it is a number (or a JSON number). */
int ex_as_number(const cmi_value_t *v, double *d);
/* Wraps a borrowed JSON node as a value (scalars become plain values). */
cmi_value_t ex_from_json(json_t *j);

/* The working set of an indefinite path: JSON nodes, borrowed (eval.c). */
typedef struct {
    json_t **items;
    size_t count, cap;
    cmi_arena_t *arena;
} ex_nodes_t;

void ex_nodes_add(ex_nodes_t *ns, json_t *j);
/* Whether a filter step ([?(...)]) keeps item (@): 0 with *keep, or
 * CMI_FLOW_ERROR. */
int ex_filter_keeps(ex_ctx_t *c, const ex_step_t *st, json_t *item, int *keep);
/* Applies one navigation step to j, adding what it reaches to out. */
int ex_apply_step(ex_ctx_t *c, const ex_step_t *st, json_t *j, ex_nodes_t *out);
/* The array's item i (negative: from the end), or NULL. */
json_t *ex_index_of(json_t *j, long i);
/* A subscript value (number: index, string: field) applied to j. */
json_t *ex_subscript(const cmi_value_t *key, json_t *j);

/* A parameter of the sequence-template call in effect ($func:NAME and
 * friends): null when there is none; a {{...}} value is evaluated now
 * (eval.c).  Returns 0 or CMI_FLOW_ERROR. */
int ex_func_param(ex_ctx_t *c, const char *name, cmi_value_t *out);

/* Offset of the '}' closing the "${" that starts text, or 0 (parser.c). */
size_t ex_closing_brace(const char *text, size_t len);

/* XPath (xpath.c). */
int ex_xpath_compile(cmi_arena_t *arena, const char *text, xmlNodePtr ns_scope, ex_node_t **out,
                     cmi_expr_error_t *err);
int ex_xpath_eval(ex_ctx_t *c, const ex_node_t *n, cmi_value_t *out);

#endif
