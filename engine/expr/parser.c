/* The ${...} language: a hand-written lexer and recursive-descent parser.
 *
 * Precedence, loosest first: ?: , || (or), && (and), comparison
 * (== != < <= > >=), + -, * / %, unary ! and -, then a primary with its
 * navigation steps.  Names after a '.' are names even when they spell a
 * keyword (payload.and, vars.null). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "expr/ast.h"

typedef enum {
    T_EOF, T_NUM, T_STR, T_IDENT, T_AT, T_DOLLAR, T_DOT, T_DOTDOT, T_LBRACK, T_RBRACK, T_LPAREN, T_RPAREN,
    T_COMMA, T_COLON, T_QUESTION, T_PLUS, T_MINUS, T_STAR, T_SLASH, T_PERCENT, T_EQ, T_NE, T_LT, T_LE, T_GT,
    T_GE, T_AND, T_OR, T_NOT, T_BAD
} tok_kind_t;

typedef struct {
    tok_kind_t kind;
    size_t pos, len;  /* where it is in the text */
    const char *str;  /* T_STR: decoded, T_IDENT: copy */
    size_t str_len;
    cmi_value_t num;  /* T_NUM */
} token_t;

typedef struct {
    cmi_arena_t *arena;
    const char *text;
    size_t len;
    size_t pos;     /* lexer position */
    token_t tok;    /* current token */
    int in_filter;  /* '@' allowed */
    xmlNodePtr ns_scope; /* for xpath("...") */
    int depth;           /* nesting, bounded so a crafted text cannot exhaust the stack */
    cmi_expr_error_t *err;
    int failed;
} parser_t;

/* ---- errors --------------------------------------------------------- */

static void fail_at(parser_t *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail_at(parser_t *p, size_t pos, const char *fmt, ...)
{
    if (p->failed)
        return; /* the first error explains the rest */
    p->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    p->err->message = cmi_arena_vsprintf(p->arena, fmt, ap);
    va_end(ap);
    p->err->offset = pos;
}

static const char *tok_text(parser_t *p, const token_t *t)
{
    if (t->kind == T_EOF)
        return "the end of the expression";
    return cmi_arena_sprintf(p->arena, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), p->text + t->pos);
}

/* ---- lexer ------------------------------------------------------------ */

static int utf8_put(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int c = (unsigned char)s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void lex_string(parser_t *p, token_t *t)
{
    char quote = p->text[p->pos];
    size_t i = p->pos + 1;
    char *buf = cmi_arena_alloc(p->arena, p->len - p->pos + 1);
    size_t n = 0;
    while (i < p->len && p->text[i] != quote) {
        char c = p->text[i];
        if (c != '\\') {
            buf[n++] = c;
            i++;
            continue;
        }
        if (i + 1 >= p->len)
            break;
        char e = p->text[i + 1];
        i += 2;
        switch (e) {
        case 'b': buf[n++] = '\b'; break;
        case 't': buf[n++] = '\t'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'r': buf[n++] = '\r'; break;
        case '"': case '\'': case '\\': case '/': buf[n++] = e; break;
        case 'u': {
            unsigned cp, lo;
            if (i + 4 > p->len || hex4(p->text + i, &cp) != 0) {
                fail_at(p, i - 2, "bad \\u escape in a string");
                return;
            }
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 <= p->len && p->text[i] == '\\' && p->text[i + 1] == 'u' &&
                hex4(p->text + i + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            n += (size_t)utf8_put(buf + n, cp);
            break;
        }
        default:
            fail_at(p, i - 2, "unknown escape '\\%c' in a string", e);
            return;
        }
    }
    if (i >= p->len) {
        fail_at(p, p->pos, "unterminated string starting at %s", cmi_arena_sprintf(p->arena, "'%.20s'", p->text + p->pos));
        return;
    }
    buf[n] = '\0';
    t->kind = T_STR;
    t->str = buf;
    t->str_len = n;
    t->len = i + 1 - p->pos;
}

static void lex_number(parser_t *p, token_t *t)
{
    size_t i = p->pos;
    int real = 0;
    while (i < p->len && isdigit((unsigned char)p->text[i]))
        i++;
    if (i + 1 < p->len && p->text[i] == '.' && isdigit((unsigned char)p->text[i + 1])) {
        real = 1;
        i++;
        while (i < p->len && isdigit((unsigned char)p->text[i]))
            i++;
    }
    if (i < p->len && (p->text[i] == 'e' || p->text[i] == 'E')) {
        size_t j = i + 1;
        if (j < p->len && (p->text[j] == '+' || p->text[j] == '-'))
            j++;
        if (j < p->len && isdigit((unsigned char)p->text[j])) {
            real = 1;
            i = j;
            while (i < p->len && isdigit((unsigned char)p->text[i]))
                i++;
        }
    }
    char *s = cmi_arena_strndup(p->arena, p->text + p->pos, i - p->pos);
    t->kind = T_NUM;
    t->len = i - p->pos;
    errno = 0;
    if (!real) {
        long long v = strtoll(s, NULL, 10);
        if (errno == 0) {
            t->num = cmi_value_int(v);
            return;
        }
    }
    t->num = cmi_value_number(strtod(s, NULL));
}

static int is_ident_start(int c)
{
    return isalpha(c) || c == '_';
}

/* As in MI, '-' may appear inside a name (headers.X-Count is not a
 * subtraction; write a spaced "a - b" to subtract). */
static int is_ident_char(int c)
{
    return isalnum(c) || c == '_' || c == '-';
}

static void next(parser_t *p)
{
    while (p->pos < p->len && isspace((unsigned char)p->text[p->pos]))
        p->pos++;
    token_t *t = &p->tok;
    memset(t, 0, sizeof(*t));
    t->pos = p->pos;
    t->len = 1;
    if (p->pos >= p->len) {
        t->kind = T_EOF;
        t->len = 0;
        return;
    }
    const char *s = p->text + p->pos;
    char c = s[0], d = p->pos + 1 < p->len ? s[1] : '\0';
    switch (c) {
    case '.': t->kind = d == '.' ? T_DOTDOT : T_DOT; t->len = d == '.' ? 2 : 1; break;
    case '[': t->kind = T_LBRACK; break;
    case ']': t->kind = T_RBRACK; break;
    case '(': t->kind = T_LPAREN; break;
    case ')': t->kind = T_RPAREN; break;
    case ',': t->kind = T_COMMA; break;
    case ':': t->kind = T_COLON; break;
    case '?': t->kind = T_QUESTION; break;
    case '+': t->kind = T_PLUS; break;
    case '-': t->kind = T_MINUS; break;
    case '*': t->kind = T_STAR; break;
    case '/': t->kind = T_SLASH; break;
    case '%': t->kind = T_PERCENT; break;
    case '@': t->kind = T_AT; break;
    case '$': t->kind = T_DOLLAR; break;
    case '=': t->kind = d == '=' ? T_EQ : T_BAD; t->len = 2; break;
    case '!': t->kind = d == '=' ? T_NE : T_NOT; t->len = d == '=' ? 2 : 1; break;
    case '<': t->kind = d == '=' ? T_LE : T_LT; t->len = d == '=' ? 2 : 1; break;
    case '>': t->kind = d == '=' ? T_GE : T_GT; t->len = d == '=' ? 2 : 1; break;
    case '&': t->kind = d == '&' ? T_AND : T_BAD; t->len = 2; break;
    case '|': t->kind = d == '|' ? T_OR : T_BAD; t->len = 2; break;
    case '"':
    case '\'':
        lex_string(p, t);
        break;
    default:
        if (isdigit((unsigned char)c)) {
            lex_number(p, t);
        } else if (is_ident_start((unsigned char)c)) {
            size_t i = 1;
            while (p->pos + i < p->len && is_ident_char((unsigned char)s[i]))
                i++;
            t->kind = T_IDENT;
            t->len = i;
            t->str = cmi_arena_strndup(p->arena, s, i);
            t->str_len = i;
            if (strcmp(t->str, "and") == 0)
                t->kind = T_AND;
            else if (strcmp(t->str, "or") == 0)
                t->kind = T_OR;
        } else {
            t->kind = T_BAD;
        }
    }
    if (t->kind == T_BAD && !p->failed)
        fail_at(p, t->pos, "unexpected character '%c'", c);
    p->pos += t->len;
}

/* ---- helpers ---------------------------------------------------------- */

static ex_node_t *node(parser_t *p, ex_kind_t kind, size_t pos)
{
    ex_node_t *n = cmi_arena_calloc(p->arena, 1, sizeof(*n));
    n->kind = kind;
    n->pos = pos;
    return n;
}

static int accept(parser_t *p, tok_kind_t k)
{
    if (p->tok.kind != k)
        return 0;
    next(p);
    return 1;
}

static int expect(parser_t *p, tok_kind_t k, const char *what)
{
    if (accept(p, k))
        return 1;
    fail_at(p, p->tok.pos, "expected %s, found %s", what, tok_text(p, &p->tok));
    return 0;
}

/* A name after '.': any identifier, keywords included. */
static int is_name_token(const token_t *t)
{
    return t->kind == T_IDENT || t->kind == T_AND || t->kind == T_OR;
}

static const char *token_name(parser_t *p, const token_t *t)
{
    return t->str ? t->str : cmi_arena_strndup(p->arena, p->text + t->pos, t->len);
}

static ex_node_t *parse_expr(parser_t *p);

/* ---- navigation -------------------------------------------------------- */

typedef struct {
    ex_step_t *items;
    size_t count, cap;
} steps_t;

static ex_step_t *add_step(parser_t *p, steps_t *s, ex_step_kind_t kind)
{
    s->items = cmi_arena_grow(p->arena, s->items, s->count, &s->cap, sizeof(*s->items), 4);
    ex_step_t *st = &s->items[s->count++];
    memset(st, 0, sizeof(*st));
    st->kind = kind;
    return st;
}

static const char *const path_funcs[] = {"length", "size", "min", "max", "avg", "sum", "stddev", "keys",
                                          "first", "last", NULL};

static int is_path_func(const char *name)
{
    for (const char *const *f = path_funcs; *f; f++)
        if (strcmp(*f, name) == 0)
            return 1;
    return 0;
}

static int signed_int(parser_t *p, long *out)
{
    int neg = accept(p, T_MINUS);
    if (p->tok.kind != T_NUM || p->tok.num.type != CMI_VAL_INT) {
        fail_at(p, p->tok.pos, "expected a whole number, found %s", tok_text(p, &p->tok));
        return 0;
    }
    *out = neg ? -(long)p->tok.num.u.i : (long)p->tok.num.u.i;
    next(p);
    return 1;
}

static void parse_slice_rest(parser_t *p, ex_step_t *st)
{
    /* after "[start:" */
    st->kind = STEP_SLICE;
    if (p->tok.kind != T_RBRACK) {
        st->has_end = 1;
        signed_int(p, &st->end);
    }
}

static void parse_bracket(parser_t *p, steps_t *s)
{
    size_t pos = p->tok.pos;
    next(p); /* '[' */
    if (accept(p, T_STAR)) {
        add_step(p, s, STEP_WILD);
    } else if (p->tok.kind == T_QUESTION) {
        next(p);
        int had_paren = accept(p, T_LPAREN);
        int saved = p->in_filter;
        p->in_filter = 1;
        ex_step_t *st = add_step(p, s, STEP_FILTER);
        st->expr = parse_expr(p);
        p->in_filter = saved;
        if (had_paren)
            expect(p, T_RPAREN, "')' closing the filter");
    } else if (p->tok.kind == T_COLON) {
        next(p);
        ex_step_t *st = add_step(p, s, STEP_SLICE);
        parse_slice_rest(p, st);
    } else {
        /* An index, a name, a slice start, a union, or an expression. */
        ex_node_t *first = parse_expr(p);
        if (p->failed)
            return;
        if (p->tok.kind == T_COLON && first->kind == EX_LITERAL && first->u.literal.type == CMI_VAL_INT) {
            next(p);
            ex_step_t *st = add_step(p, s, STEP_SLICE);
            st->has_start = 1;
            st->start = (long)first->u.literal.u.i;
            parse_slice_rest(p, st);
        } else if (p->tok.kind == T_COMMA) {
            ex_node_t *items[64];
            size_t n = 0;
            items[n++] = first;
            while (accept(p, T_COMMA) && !p->failed) {
                if (n == 64) {
                    fail_at(p, p->tok.pos, "too many items in [..., ...]");
                    return;
                }
                items[n++] = parse_expr(p);
            }
            ex_step_t *st = add_step(p, s, STEP_UNION);
            st->items = cmi_arena_memdup(p->arena, items, n * sizeof(*items));
            st->nitems = n;
        } else if (first->kind == EX_LITERAL && first->u.literal.type == CMI_VAL_INT) {
            ex_step_t *st = add_step(p, s, STEP_INDEX);
            st->index = (long)first->u.literal.u.i;
        } else if (first->kind == EX_LITERAL && first->u.literal.type == CMI_VAL_STRING) {
            ex_step_t *st = add_step(p, s, STEP_FIELD);
            st->name = first->u.literal.u.s.ptr;
        } else {
            ex_step_t *st = add_step(p, s, STEP_EXPR);
            st->expr = first;
        }
    }
    if (!p->failed && p->tok.kind != T_RBRACK)
        fail_at(p, p->tok.pos, "expected ']' closing the '[' at offset %zu, found %s", pos, tok_text(p, &p->tok));
    else
        next(p);
}

/* Steps after a root: .a  ["a"]  [0]  [*]  .*  ..a  [?(...)]  [1:3]  .length() */
static void parse_steps(parser_t *p, steps_t *s)
{
    while (!p->failed) {
        if (p->tok.kind == T_DOT) {
            next(p);
            if (accept(p, T_STAR)) {
                add_step(p, s, STEP_WILD);
            } else if (is_name_token(&p->tok)) {
                const char *name = token_name(p, &p->tok);
                next(p);
                if (p->tok.kind == T_LPAREN && is_path_func(name)) {
                    next(p);
                    expect(p, T_RPAREN, "')'");
                    add_step(p, s, STEP_FUNC)->name = name;
                } else {
                    add_step(p, s, STEP_FIELD)->name = name;
                }
            } else if (p->tok.kind == T_STR) {
                add_step(p, s, STEP_FIELD)->name = p->tok.str;
                next(p);
            } else {
                fail_at(p, p->tok.pos, "expected a name after '.', found %s", tok_text(p, &p->tok));
            }
        } else if (p->tok.kind == T_DOTDOT) {
            next(p);
            if (accept(p, T_STAR)) {
                add_step(p, s, STEP_DEEP);
            } else if (is_name_token(&p->tok)) {
                add_step(p, s, STEP_DEEP)->name = token_name(p, &p->tok);
                next(p);
            } else {
                fail_at(p, p->tok.pos, "expected a name or '*' after '..', found %s", tok_text(p, &p->tok));
            }
        } else if (p->tok.kind == T_LBRACK) {
            parse_bracket(p, s);
        } else {
            return;
        }
    }
}

static void finish_path(parser_t *p, ex_node_t *n)
{
    steps_t s = {0};
    parse_steps(p, &s);
    n->u.path.steps = s.items;
    n->u.path.nsteps = s.count;
    n->u.path.definite = 1;
    for (size_t i = 0; i < s.count; i++) {
        ex_step_kind_t k = s.items[i].kind;
        if (k == STEP_WILD || k == STEP_DEEP || k == STEP_FILTER || k == STEP_SLICE || k == STEP_UNION)
            n->u.path.definite = 0;
    }
}

/* The name that follows vars / headers / configs / ...: .name or ["name"]. */
static const char *root_name(parser_t *p, const char *root)
{
    if (p->tok.kind == T_DOT) {
        next(p);
        if (is_name_token(&p->tok) || p->tok.kind == T_STR) {
            const char *name = p->tok.kind == T_STR ? p->tok.str : token_name(p, &p->tok);
            next(p);
            return name;
        }
    } else if (p->tok.kind == T_LBRACK) {
        next(p);
        if (p->tok.kind == T_STR) {
            const char *name = p->tok.str;
            next(p);
            if (expect(p, T_RBRACK, "']'"))
                return name;
            return NULL;
        }
    }
    fail_at(p, p->tok.pos, "'%s' needs a name after it (%s.name or %s[\"name\"]), found %s", root, root, root,
            tok_text(p, &p->tok));
    return NULL;
}

static ex_node_t *parse_root(parser_t *p, const char *ident, size_t pos)
{
    ex_node_t *n = node(p, EX_PATH, pos);
    if (strcmp(ident, "payload") == 0) {
        n->u.path.root = ROOT_PAYLOAD;
    } else if (strcmp(ident, "vars") == 0 || strcmp(ident, "var") == 0 || strcmp(ident, "headers") == 0 ||
               strcmp(ident, "configs") == 0) {
        /* var.X: MI's grammar until January 2025, which its documentation
         * still writes (payloadfactory-mediator.md). */
        n->u.path.root = ident[0] == 'v' ? ROOT_VARS : ident[0] == 'h' ? ROOT_HEADERS : ROOT_CONFIGS;
        n->u.path.name = root_name(p, ident);
    } else if (strcmp(ident, "props") == 0 || strcmp(ident, "properties") == 0) {
        const char *scope = root_name(p, ident);
        if (scope != NULL && strcmp(scope, "synapse") == 0) {
            n->u.path.root = ROOT_PROPS_SYNAPSE;
        } else if (scope != NULL && strcmp(scope, "axis2") == 0) {
            n->u.path.root = ROOT_PROPS_AXIS2;
        } else if (scope != NULL && p->tok.kind != T_DOT && p->tok.kind != T_DOTDOT && p->tok.kind != T_LBRACK) {
            /* properties.NAME, nothing after it: MI's grammar wants a scope,
             * its documentation writes none (${properties.To}): the synapse
             * (default) scope, as the docs mean.  With more after it
             * (props.synapes.x) it stays a wrong scope. */
            n->u.path.root = ROOT_PROPS_SYNAPSE;
            n->u.path.name = scope;
        } else if (scope != NULL) {
            fail_at(p, pos, "'%s.%s': the scope must be 'synapse' or 'axis2'", ident, scope);
        }
        if (!p->failed && n->u.path.name == NULL)
            n->u.path.name = root_name(p, cmi_arena_sprintf(p->arena, "%s.%s", ident, scope));
    } else if (strcmp(ident, "params") == 0) {
        const char *kind = root_name(p, ident);
        if (kind != NULL && strcmp(kind, "queryParams") == 0)
            n->u.path.root = ROOT_QUERY;
        else if (kind != NULL && strcmp(kind, "pathParams") == 0)
            n->u.path.root = ROOT_PATHPARAM;
        else if (kind != NULL && strcmp(kind, "functionParams") == 0)
            n->u.path.root = ROOT_FUNCPARAM;
        else if (kind != NULL)
            fail_at(p, pos, "'params.%s': expected queryParams, pathParams or functionParams", kind);
        if (!p->failed)
            n->u.path.name = root_name(p, cmi_arena_sprintf(p->arena, "params.%s", kind));
    } else {
        return NULL;
    }
    if (!p->failed)
        finish_path(p, n);
    return n;
}

/* ---- primaries --------------------------------------------------------- */

static ex_node_t *parse_call(parser_t *p, const char *name, size_t pos)
{
    const ex_fn_t *fn = ex_fn_find(name, strlen(name));
    if (fn == NULL) {
        static const char *const later[] = {"formatDateTime", "registry", "wso2-vault", "hashicorp-vault", "secret",
                                            NULL};
        for (const char *const *l = later; *l; l++)
            if (strcmp(*l, name) == 0) {
                fail_at(p, pos, "function %s() is not supported by cmi yet", name);
                return NULL;
            }
        fail_at(p, pos, "unknown function '%s'", name);
        return NULL;
    }
    next(p); /* '(' */
    ex_node_t *args[16];
    size_t n = 0;
    if (p->tok.kind != T_RPAREN) {
        do {
            if (n == 16) {
                fail_at(p, p->tok.pos, "too many arguments to %s()", name);
                return NULL;
            }
            args[n++] = parse_expr(p);
        } while (!p->failed && accept(p, T_COMMA));
    }
    if (p->failed || !expect(p, T_RPAREN, "')' closing the arguments"))
        return NULL;
    if (strcmp(fn->name, "xpath") == 0) {
        /* xpath("..."): compiled now, evaluated by libxml2 */
        if (n != 1 || args[0]->kind != EX_LITERAL || args[0]->u.literal.type != CMI_VAL_STRING) {
            fail_at(p, pos, "xpath() takes one string literal");
            return NULL;
        }
        ex_node_t *x;
        cmi_expr_error_t xerr;
        if (ex_xpath_compile(p->arena, args[0]->u.literal.u.s.ptr, p->ns_scope, &x, &xerr) != 0) {
            fail_at(p, args[0]->pos, "%s", xerr.message);
            return NULL;
        }
        x->pos = pos;
        return x;
    }
    if (n < fn->min_args || n > fn->max_args) {
        if (fn->min_args == fn->max_args)
            fail_at(p, pos, "%s() takes %u argument%s, not %zu", name, fn->min_args, fn->min_args == 1 ? "" : "s", n);
        else
            fail_at(p, pos, "%s() takes %u to %u arguments, not %zu", name, fn->min_args, fn->max_args, n);
        return NULL;
    }
    ex_node_t *call = node(p, EX_CALL, pos);
    call->u.call.fn = fn;
    call->u.call.args = cmi_arena_memdup(p->arena, args, n * sizeof(*args));
    call->u.call.nargs = n;
    /* A call may be navigated: split(...)[0], object(...).a */
    if (p->tok.kind == T_DOT || p->tok.kind == T_LBRACK || p->tok.kind == T_DOTDOT) {
        ex_node_t *path = node(p, EX_PATH, pos);
        path->u.path.root = ROOT_VALUE;
        path->u.path.base = call;
        finish_path(p, path);
        return path;
    }
    return call;
}

static ex_node_t *literal(parser_t *p, size_t pos, cmi_value_t v)
{
    ex_node_t *n = node(p, EX_LITERAL, pos);
    n->u.literal = v;
    return n;
}

static ex_node_t *parse_primary(parser_t *p)
{
    token_t t = p->tok;
    switch (t.kind) {
    case T_NUM:
        next(p);
        return literal(p, t.pos, t.num);
    case T_STR:
        next(p);
        return literal(p, t.pos, cmi_value_string(t.str, t.str_len));
    case T_LPAREN: {
        next(p);
        ex_node_t *e = parse_expr(p);
        expect(p, T_RPAREN, "')'");
        return e;
    }
    case T_LBRACK: {
        next(p);
        ex_node_t *items[256];
        size_t n = 0;
        if (p->tok.kind != T_RBRACK) {
            do {
                if (n == 256) {
                    fail_at(p, p->tok.pos, "too many items in an array literal");
                    return NULL;
                }
                items[n++] = parse_expr(p);
            } while (!p->failed && accept(p, T_COMMA));
        }
        expect(p, T_RBRACK, "']' closing the array");
        ex_node_t *a = node(p, EX_ARRAY, t.pos);
        a->u.array.items = cmi_arena_memdup(p->arena, items, n * sizeof(*items));
        a->u.array.count = n;
        return a;
    }
    case T_DOLLAR: {
        next(p);
        ex_node_t *n = node(p, EX_PATH, t.pos);
        n->u.path.root = ROOT_PAYLOAD;
        finish_path(p, n);
        return n;
    }
    case T_AT: {
        if (!p->in_filter) {
            fail_at(p, t.pos, "'@' is only meaningful inside a filter [?(...)]");
            return NULL;
        }
        next(p);
        ex_node_t *n = node(p, EX_PATH, t.pos);
        n->u.path.root = ROOT_CURRENT;
        finish_path(p, n);
        return n;
    }
    case T_IDENT: {
        next(p);
        if (strcmp(t.str, "true") == 0 || strcmp(t.str, "false") == 0)
            return literal(p, t.pos, cmi_value_bool(t.str[0] == 't'));
        if (strcmp(t.str, "null") == 0)
            return literal(p, t.pos, cmi_value_null());
        if (p->tok.kind == T_LPAREN)
            return parse_call(p, t.str, t.pos);
        ex_node_t *root = parse_root(p, t.str, t.pos);
        if (root == NULL && !p->failed)
            fail_at(p, t.pos, "unknown name '%s' (expected payload, $, vars, headers, props, params, configs, a "
                              "literal or a function call)", t.str);
        return root;
    }
    default:
        fail_at(p, t.pos, "expected a value, found %s", tok_text(p, &t));
        return NULL;
    }
}

/* ---- operators ---------------------------------------------------------- */

#define MAX_NESTING 64

static ex_node_t *parse_unary_inner(parser_t *p);

static ex_node_t *parse_unary(parser_t *p)
{
    if (p->depth >= MAX_NESTING) {
        fail_at(p, p->tok.pos, "expression nested more than %d deep", MAX_NESTING);
        return NULL;
    }
    p->depth++;
    ex_node_t *n = parse_unary_inner(p);
    p->depth--;
    return n;
}

static ex_node_t *parse_unary_inner(parser_t *p)
{
    size_t pos = p->tok.pos;
    if (accept(p, T_NOT)) {
        ex_node_t *n = node(p, EX_NOT, pos);
        n->u.operand = parse_unary(p);
        return n;
    }
    if (accept(p, T_MINUS)) {
        ex_node_t *operand = parse_unary(p);
        if (operand != NULL && operand->kind == EX_LITERAL && operand->u.literal.type == CMI_VAL_INT) {
            operand->u.literal.u.i = -operand->u.literal.u.i;
            operand->pos = pos;
            return operand;
        }
        if (operand != NULL && operand->kind == EX_LITERAL && operand->u.literal.type == CMI_VAL_NUMBER) {
            operand->u.literal.u.d = -operand->u.literal.u.d;
            operand->pos = pos;
            return operand;
        }
        ex_node_t *n = node(p, EX_NEG, pos);
        n->u.operand = operand;
        return n;
    }
    return parse_primary(p);
}

static ex_node_t *binary(parser_t *p, ex_op_t op, size_t pos, ex_node_t *lhs, ex_node_t *rhs)
{
    ex_node_t *n = node(p, EX_BINARY, pos);
    n->u.bin.op = op;
    n->u.bin.lhs = lhs;
    n->u.bin.rhs = rhs;
    return n;
}

static ex_node_t *parse_mul(parser_t *p)
{
    ex_node_t *lhs = parse_unary(p);
    for (;;) {
        size_t pos = p->tok.pos;
        ex_op_t op;
        if (p->tok.kind == T_STAR)
            op = OP_MUL;
        else if (p->tok.kind == T_SLASH)
            op = OP_DIV;
        else if (p->tok.kind == T_PERCENT)
            op = OP_MOD;
        else
            return lhs;
        next(p);
        lhs = binary(p, op, pos, lhs, parse_unary(p));
    }
}

static ex_node_t *parse_add(parser_t *p)
{
    ex_node_t *lhs = parse_mul(p);
    for (;;) {
        size_t pos = p->tok.pos;
        ex_op_t op;
        if (p->tok.kind == T_PLUS)
            op = OP_ADD;
        else if (p->tok.kind == T_MINUS)
            op = OP_SUB;
        else
            return lhs;
        next(p);
        lhs = binary(p, op, pos, lhs, parse_mul(p));
    }
}

static ex_node_t *parse_cmp(parser_t *p)
{
    ex_node_t *lhs = parse_add(p);
    for (;;) {
        size_t pos = p->tok.pos;
        ex_op_t op;
        switch (p->tok.kind) {
        case T_EQ: op = OP_EQ; break;
        case T_NE: op = OP_NE; break;
        case T_LT: op = OP_LT; break;
        case T_LE: op = OP_LE; break;
        case T_GT: op = OP_GT; break;
        case T_GE: op = OP_GE; break;
        default: return lhs;
        }
        next(p);
        lhs = binary(p, op, pos, lhs, parse_add(p));
    }
}

/* a OP b OP c, left-associative, for the short-circuit operators. */
static ex_node_t *parse_logic(parser_t *p, tok_kind_t op, ex_kind_t kind, ex_node_t *(*operand)(parser_t *))
{
    ex_node_t *lhs = operand(p);
    while (p->tok.kind == op) {
        ex_node_t *n = node(p, kind, p->tok.pos);
        next(p);
        n->u.bin.lhs = lhs;
        n->u.bin.rhs = operand(p);
        lhs = n;
    }
    return lhs;
}

static ex_node_t *parse_and(parser_t *p)
{
    return parse_logic(p, T_AND, EX_AND, parse_cmp);
}

static ex_node_t *parse_or(parser_t *p)
{
    return parse_logic(p, T_OR, EX_OR, parse_and);
}

static ex_node_t *parse_expr(parser_t *p)
{
    ex_node_t *cond = parse_or(p);
    if (p->tok.kind != T_QUESTION || p->failed)
        return cond;
    ex_node_t *n = node(p, EX_COND, p->tok.pos);
    next(p);
    n->u.cond.cond = cond;
    n->u.cond.then = parse_expr(p);
    expect(p, T_COLON, "':' of the conditional");
    n->u.cond.otherwise = parse_expr(p);
    return n;
}

static ex_node_t *parse_all(cmi_arena_t *arena, const char *text, size_t len, xmlNodePtr ns_scope,
                            cmi_expr_error_t *err)
{
    parser_t p = {.arena = arena, .text = text, .len = len, .err = err, .ns_scope = ns_scope};
    next(&p);
    if (p.tok.kind == T_EOF && !p.failed)
        fail_at(&p, 0, "empty expression");
    ex_node_t *root = p.failed ? NULL : parse_expr(&p);
    if (!p.failed && p.tok.kind != T_EOF)
        fail_at(&p, p.tok.pos, "unexpected %s after the end of the expression", tok_text(&p, &p.tok));
    return p.failed ? NULL : root;
}

static cmi_expr_t *make_expr(cmi_arena_t *arena, const char *display, ex_node_t *root)
{
    cmi_expr_t *e = cmi_arena_calloc(arena, 1, sizeof(*e));
    e->text = display;
    e->root = root;
    return e;
}

cmi_expr_t *cmi_expr_compile_synapse(cmi_arena_t *arena, const char *text, size_t len, cmi_expr_error_t *err)
{
    ex_node_t *root = parse_all(arena, text, len, NULL, err);
    return root ? make_expr(arena, cmi_arena_sprintf(arena, "${%.*s}", (int)len, text), root) : NULL;
}

/* Offset of the '}' that closes the "${" at text (the '$'), or 0. */
size_t ex_closing_brace(const char *text, size_t len)
{
    int depth = 0;
    char quote = 0;
    for (size_t i = 1; i < len; i++) {
        char ch = text[i];
        if (quote) {
            if (ch == '\\')
                i++;
            else if (ch == quote)
                quote = 0;
        } else if (ch == '"' || ch == '\'') {
            quote = ch;
        } else if (ch == '{') {
            depth++;
        } else if (ch == '}' && --depth == 0) {
            return i;
        }
    }
    return 0;
}

cmi_expr_t *cmi_expr_compile(cmi_arena_t *arena, const char *text, xmlNodePtr ns_scope, cmi_expr_error_t *err)
{
    size_t start = 0, len = strlen(text);
    while (start < len && isspace((unsigned char)text[start]))
        start++;
    while (len > start && isspace((unsigned char)text[len - 1]))
        len--;
    const char *t = text + start;
    size_t n = len - start;
    if (n == 0) {
        err->message = "empty expression";
        err->offset = 0;
        return NULL;
    }
    const char *display = cmi_arena_strndup(arena, t, n);
    if (n >= 3 && t[0] == '$' && t[1] == '{' && t[n - 1] == '}') {
        ex_node_t *root = parse_all(arena, t + 2, n - 3, ns_scope, err);
        if (root == NULL) {
            err->offset += start + 2;
            return NULL;
        }
        return make_expr(arena, display, root);
    }
    if (n > 11 && strncmp(t, "json-eval(", 10) == 0 && t[n - 1] == ')') {
        /* json-eval($.a.b): a JSON path over the payload, which the ${...}
         * language reads the same way. */
        const char *path = t + 10;
        size_t plen = n - 11;
        while (plen > 0 && isspace((unsigned char)*path))
            path++, plen--;
        if (plen == 0 || path[0] != '$') {
            err->message = "json-eval() needs a JSON path starting with '$'";
            err->offset = start + 10;
            return NULL;
        }
        ex_node_t *root = parse_all(arena, path, plen, ns_scope, err);
        if (root == NULL) {
            err->offset += (size_t)(path - text);
            return NULL;
        }
        return make_expr(arena, display, root);
    }
    ex_node_t *root;
    if (ex_xpath_compile(arena, display, ns_scope, &root, err) != 0) {
        err->offset += start;
        return NULL;
    }
    return make_expr(arena, display, root);
}
