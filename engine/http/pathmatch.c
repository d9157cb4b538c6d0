#include "config.h"

#include "http/pathmatch.h"

#include <string.h>

typedef enum { PIECE_LITERAL, PIECE_VAR, PIECE_REST } piece_kind_t;

typedef struct {
    piece_kind_t kind;
    const char *text; /* literal text, or variable name */
    size_t len;
} piece_t;

typedef struct {
    piece_t *pieces;
    size_t count;
} segment_t;

typedef struct {
    const char *name;
    size_t name_len;
    piece_t value; /* PIECE_LITERAL or PIECE_VAR */
} qparam_t;

typedef enum { MATCH_TEMPLATE, MATCH_EXACT, MATCH_PREFIX, MATCH_SUFFIX } match_kind_t;

struct cmi_pathmatch {
    match_kind_t kind;
    segment_t *segments;
    size_t nsegments;
    qparam_t *qparams;
    size_t nqparams;
    const char *text; /* EXACT / PREFIX / SUFFIX */
    size_t text_len;
};

static size_t trim_slash(const char *p, size_t len)
{
    return len > 1 && p[len - 1] == '/' ? len - 1 : len;
}

/* ---- compiling -------------------------------------------------------- */

static int is_var_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* Splits one segment ("{a}-{b}.json") into pieces. */
static int compile_segment(cmi_arena_t *a, const char *s, size_t len, int last, segment_t *out,
                           const char **err)
{
    piece_t tmp[32];
    size_t n = 0;
    size_t i = 0;
    while (i < len) {
        if (n == sizeof(tmp) / sizeof(tmp[0])) {
            *err = "too many parts in one path segment";
            return -1;
        }
        if (s[i] == '{') {
            const char *close = memchr(s + i, '}', len - i);
            if (close == NULL) {
                *err = cmi_arena_sprintf(a, "unclosed '{' in segment '%.*s'", (int)len, s);
                return -1;
            }
            piece_kind_t kind = PIECE_VAR;
            size_t start = i + 1;
            if (s[start] == '+') {
                kind = PIECE_REST;
                start++;
            }
            size_t vlen = (size_t)(close - (s + start));
            if (vlen == 0) {
                *err = "empty variable name '{}'";
                return -1;
            }
            for (size_t k = 0; k < vlen; k++)
                if (!is_var_char(s[start + k])) {
                    *err = cmi_arena_sprintf(a, "bad character '%c' in variable name '%.*s'", s[start + k],
                                             (int)vlen, s + start);
                    return -1;
                }
            if (n > 0 && tmp[n - 1].kind != PIECE_LITERAL) {
                *err = cmi_arena_sprintf(a, "two variables side by side in '%.*s' cannot be told apart",
                                         (int)len, s);
                return -1;
            }
            if (kind == PIECE_REST && (!last || close + 1 != s + len)) {
                *err = "a '{+name}' variable must end the template";
                return -1;
            }
            tmp[n++] = (piece_t){kind, cmi_arena_strndup(a, s + start, vlen), vlen};
            i = (size_t)(close - s) + 1;
        } else {
            size_t j = i;
            while (j < len && s[j] != '{') {
                if (s[j] == '}') {
                    *err = cmi_arena_sprintf(a, "unmatched '}' in segment '%.*s'", (int)len, s);
                    return -1;
                }
                j++;
            }
            tmp[n++] = (piece_t){PIECE_LITERAL, cmi_arena_strndup(a, s + i, j - i), j - i};
            i = j;
        }
    }
    out->count = n;
    out->pieces = cmi_arena_memdup(a, tmp, n * sizeof(piece_t));
    return 0;
}

static int compile_query(cmi_arena_t *a, cmi_pathmatch_t *pm, const char *q, const char **err)
{
    size_t n = 1;
    for (const char *p = q; *p; p++)
        n += *p == '&';
    pm->qparams = cmi_arena_calloc(a, n, sizeof(qparam_t));
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        if (eq == NULL || eq == q) {
            *err = cmi_arena_sprintf(a, "query part '%.*s' is not name=value", (int)len, q);
            return -1;
        }
        qparam_t *qp = &pm->qparams[pm->nqparams++];
        qp->name = cmi_arena_strndup(a, q, (size_t)(eq - q));
        qp->name_len = (size_t)(eq - q);
        segment_t seg;
        if (compile_segment(a, eq + 1, len - (size_t)(eq - q) - 1, 0, &seg, err) != 0)
            return -1;
        if (seg.count > 1 || (seg.count == 1 && seg.pieces[0].kind == PIECE_REST)) {
            *err = cmi_arena_sprintf(a, "query value '%.*s' must be one '{name}' or a literal",
                                     (int)(len - (size_t)(eq - q) - 1), eq + 1);
            return -1;
        }
        qp->value = seg.count ? seg.pieces[0] : (piece_t){PIECE_LITERAL, "", 0};
        q += len + (amp != NULL);
    }
    return 0;
}

cmi_pathmatch_t *cmi_pathmatch_compile_template(cmi_arena_t *a, const char *tmpl, const char **err)
{
    if (tmpl[0] != '/') {
        *err = "a uri-template must start with '/'";
        return NULL;
    }
    cmi_pathmatch_t *pm = cmi_arena_calloc(a, 1, sizeof(*pm));
    pm->kind = MATCH_TEMPLATE;
    const char *qmark = strchr(tmpl, '?');
    size_t plen = trim_slash(tmpl, qmark ? (size_t)(qmark - tmpl) : strlen(tmpl));
    size_t nseg = 0;
    for (size_t i = 0; i < plen; i++)
        nseg += tmpl[i] == '/';
    if (plen == 1)
        nseg = 0; /* "/" has no segments */
    pm->segments = cmi_arena_calloc(a, nseg ? nseg : 1, sizeof(segment_t));
    size_t pos = 1;
    for (size_t k = 0; k < nseg; k++) {
        const char *slash = memchr(tmpl + pos, '/', plen - pos);
        size_t end = slash ? (size_t)(slash - tmpl) : plen;
        if (end == pos) {
            *err = "empty path segment ('//') in uri-template";
            return NULL;
        }
        if (compile_segment(a, tmpl + pos, end - pos, k + 1 == nseg, &pm->segments[k], err) != 0)
            return NULL;
        pos = end + 1;
    }
    pm->nsegments = nseg;
    if (qmark != NULL && compile_query(a, pm, qmark + 1, err) != 0)
        return NULL;
    size_t vars = 0;
    for (size_t k = 0; k < pm->nsegments; k++)
        for (size_t i = 0; i < pm->segments[k].count; i++)
            vars += pm->segments[k].pieces[i].kind != PIECE_LITERAL;
    for (size_t i = 0; i < pm->nqparams; i++)
        vars += pm->qparams[i].value.kind != PIECE_LITERAL;
    if (vars > CMI_MAX_BINDINGS) {
        *err = cmi_arena_sprintf(a, "%zu variables; at most %d are supported", vars, CMI_MAX_BINDINGS);
        return NULL;
    }
    return pm;
}

cmi_pathmatch_t *cmi_pathmatch_compile_mapping(cmi_arena_t *a, const char *mapping, const char **err)
{
    size_t len = strlen(mapping);
    cmi_pathmatch_t *pm = cmi_arena_calloc(a, 1, sizeof(*pm));
    if (len >= 2 && mapping[0] == '*' && mapping[1] == '.') {
        pm->kind = MATCH_SUFFIX;
        pm->text = mapping + 1;
        pm->text_len = len - 1;
    } else if (mapping[0] != '/') {
        *err = "a url-mapping must start with '/' or be '*.ext'";
        return NULL;
    } else if (len >= 2 && strcmp(mapping + len - 2, "/*") == 0) {
        pm->kind = MATCH_PREFIX;
        pm->text = mapping;
        pm->text_len = len - 2;
    } else {
        pm->kind = MATCH_EXACT;
        pm->text = mapping;
        pm->text_len = trim_slash(mapping, len);
    }
    if (memchr(pm->text, '*', pm->text_len) != NULL) {
        *err = "'*' may only end a url-mapping ('/x/*') or start one ('*.ext')";
        return NULL;
    }
    return pm;
}

/* ---- matching ---------------------------------------------------------- */

typedef struct {
    cmi_path_binding_t *b;
    size_t n;
    /* Backtracking inside one segment ("{a}-{b}.json") is bounded: a
     * request crafted to make it explode stops matching instead of holding
     * the worker (a segment of thousands of '-' against several variables). */
    unsigned budget;
} bind_ctx_t;

#define MATCH_BUDGET 4096u

static int bind(bind_ctx_t *bc, const piece_t *p, const char *v, size_t len, int from_query)
{
    if (bc->n == CMI_MAX_BINDINGS)
        return 0;
    bc->b[bc->n++] = (cmi_path_binding_t){p->text, v, len, from_query};
    return 1;
}

static int match_pieces(const piece_t *p, size_t n, const char *s, size_t len, bind_ctx_t *bc)
{
    if (n == 0)
        return len == 0;
    if (p[0].kind == PIECE_LITERAL) {
        if (len < p[0].len || memcmp(s, p[0].text, p[0].len) != 0)
            return 0;
        return match_pieces(p + 1, n - 1, s + p[0].len, len - p[0].len, bc);
    }
    if (n == 1)
        return len > 0 && bind(bc, &p[0], s, len, 0);
    /* A variable followed by a literal: try each place the literal occurs,
     * leftmost first, leaving the variable at least one character. */
    const piece_t *lit = &p[1];
    for (size_t k = 1; k + lit->len <= len; k++) {
        if (memcmp(s + k, lit->text, lit->len) != 0)
            continue;
        if (bc->budget == 0)
            return 0;
        bc->budget--;
        size_t mark = bc->n;
        if (bind(bc, &p[0], s, k, 0) && match_pieces(p + 1, n - 1, s + k, len - k, bc))
            return 1;
        bc->n = mark;
    }
    return 0;
}

int cmi_query_find(const char *q, size_t qlen, const char *name, size_t name_len, const char **value,
                   size_t *value_len)
{
    size_t i = 0;
    while (i < qlen) {
        const char *amp = memchr(q + i, '&', qlen - i);
        size_t end = amp ? (size_t)(amp - q) : qlen;
        const char *eq = memchr(q + i, '=', end - i);
        size_t klen = eq ? (size_t)(eq - (q + i)) : end - i;
        if (klen == name_len && memcmp(q + i, name, name_len) == 0) {
            *value = eq ? eq + 1 : q + end;
            *value_len = eq ? end - (size_t)(eq + 1 - q) : 0;
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

static int match_query(const cmi_pathmatch_t *pm, const char *q, size_t qlen, bind_ctx_t *bc)
{
    for (size_t i = 0; i < pm->nqparams; i++) {
        const qparam_t *qp = &pm->qparams[i];
        const char *v;
        size_t vlen;
        if (!cmi_query_find(q, qlen, qp->name, qp->name_len, &v, &vlen))
            return 0;
        if (qp->value.kind == PIECE_LITERAL) {
            if (vlen != qp->value.len || memcmp(v, qp->value.text, vlen) != 0)
                return 0;
        } else if (!bind(bc, &qp->value, v, vlen, 1)) {
            return 0;
        }
    }
    return 1;
}

static int match_template(const cmi_pathmatch_t *pm, const char *path, size_t len, bind_ctx_t *bc)
{
    size_t pos = 1; /* after the leading '/' */
    if (len <= 1)
        return pm->nsegments == 0;
    for (size_t k = 0; k < pm->nsegments; k++) {
        if (pos > len)
            return 0;
        const segment_t *seg = &pm->segments[k];
        int rest = seg->count > 0 && seg->pieces[seg->count - 1].kind == PIECE_REST;
        const char *slash = memchr(path + pos, '/', len - pos);
        size_t end = rest || slash == NULL ? len : (size_t)(slash - path);
        if (!match_pieces(seg->pieces, seg->count, path + pos, end - pos, bc))
            return 0;
        pos = end + 1;
    }
    return pos > len; /* every request segment consumed */
}

int cmi_pathmatch_match(const cmi_pathmatch_t *pm, const char *path, size_t len, const char *query,
                        size_t qlen, cmi_path_binding_t *bindings, size_t *nbindings)
{
    bind_ctx_t bc = {bindings, 0, MATCH_BUDGET};
    len = trim_slash(path, len);
    int ok = 0;
    switch (pm->kind) {
    case MATCH_TEMPLATE:
        ok = match_template(pm, path, len, &bc) && match_query(pm, query, qlen, &bc);
        break;
    case MATCH_EXACT:
        ok = len == pm->text_len && memcmp(path, pm->text, len) == 0;
        break;
    case MATCH_PREFIX:
        ok = pm->text_len == 0 ||
             (len >= pm->text_len && memcmp(path, pm->text, pm->text_len) == 0 &&
              (len == pm->text_len || path[pm->text_len] == '/'));
        break;
    case MATCH_SUFFIX:
        ok = len >= pm->text_len && memcmp(path + len - pm->text_len, pm->text, pm->text_len) == 0;
        break;
    }
    *nbindings = ok ? bc.n : 0;
    return ok;
}
