#include "config.h"

#include "config/compile.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"
#include "mediators/registry.h"
#include "plugin/plugin.h"
#include "runtime/convert.h"

struct cmi_seqref {
    STAILQ_ENTRY(cmi_seqref) link;
    const char *key;
    const cmi_sequence_t **slot;
    const cmi_sequence_t *owner;
    const char *file;
    const char *what;
    int line;
    int is_template; /* a <call-template target>: looked up among the templates */
};

const cmi_attr_rule_t cmi_common_mediator_attrs[] = {
    {"description", CMI_ATTR_OK}, /* Integration Studio's note: no effect */
    {NULL, 0},
};

int cmi_xml_line(xmlNodePtr node)
{
    long line = xmlGetLineNo(node);
    return line > 0 && line < 1000000000 ? (int)line : 0;
}

int cmi_xml_is_synapse(xmlNodePtr node)
{
    if (node == NULL || node->type != XML_ELEMENT_NODE)
        return 0;
    return node->ns == NULL || node->ns->href == NULL ||
           strcmp((const char *)node->ns->href, CMI_SYNAPSE_NS) == 0;
}

int cmi_xml_is(xmlNodePtr node, const char *name)
{
    return cmi_xml_is_synapse(node) && strcmp((const char *)node->name, name) == 0;
}

const char *cmi_xml_attr(cmi_compile_t *cc, xmlNodePtr node, const char *name)
{
    /* Only unqualified attributes: MI's are never namespaced. */
    xmlChar *v = xmlGetNoNsProp(node, (const xmlChar *)name);
    if (v == NULL)
        return NULL;
    const char *copy = cmi_arena_strdup(cc->arena, (const char *)v);
    xmlFree(v);
    return copy;
}

const char *cmi_xml_text(cmi_compile_t *cc, xmlNodePtr node)
{
    xmlChar *v = xmlNodeGetContent(node);
    if (v == NULL)
        return "";
    const char *copy = cmi_arena_strdup(cc->arena, (const char *)v);
    xmlFree(v);
    return copy;
}

const char *cmi_compile_trim(cmi_compile_t *cc, const char *s, size_t *len)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (len != NULL)
        *len = n;
    return cmi_arena_strndup(cc->arena, s, n);
}

static void vreport(cmi_compile_t *cc, int error, xmlNodePtr node, const char *fmt, va_list ap)
{
    char msg[1536];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (error)
        cmi_diag_error(cc->diag, cc->file, node ? cmi_xml_line(node) : 0, "%s", msg);
    else
        cmi_diag_warn(cc->diag, cc->file, node ? cmi_xml_line(node) : 0, "%s", msg);
}

void cmi_compile_error(cmi_compile_t *cc, xmlNodePtr node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(cc, 1, node, fmt, ap);
    va_end(ap);
}

void cmi_compile_warn(cmi_compile_t *cc, xmlNodePtr node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(cc, 0, node, fmt, ap);
    va_end(ap);
}

static const cmi_attr_rule_t *find_rule(const cmi_attr_rule_t *rules, const char *name)
{
    for (; rules != NULL && rules->name != NULL; rules++)
        if (strcmp(rules->name, name) == 0)
            return rules;
    return NULL;
}

int cmi_xml_check_attrs(cmi_compile_t *cc, xmlNodePtr node, const cmi_attr_rule_t *rules,
                        const cmi_attr_rule_t *extra)
{
    int errors = 0;
    for (xmlAttrPtr a = node->properties; a != NULL; a = a->next) {
        const char *name = (const char *)a->name;
        if (a->ns != NULL) /* xsi:..., tooling annotations: not MI's */
            continue;
        const cmi_attr_rule_t *r = find_rule(rules, name);
        if (r == NULL)
            r = find_rule(extra, name);
        if (r == NULL) {
            cmi_compile_error(cc, node, "<%s>: unknown attribute '%s'", node->name, name);
            errors++;
        } else if (r->support == CMI_ATTR_COSMETIC) {
            cmi_compile_warn(cc, node, "<%s>: attribute '%s' is not supported by cmi yet (ignored)",
                             node->name, name);
        } else if (r->support == CMI_ATTR_UNSUPPORTED) {
            cmi_compile_error(cc, node, "<%s>: attribute '%s' is not supported by cmi yet", node->name,
                              name);
            errors++;
        }
    }
    return errors;
}

int cmi_xml_no_children(cmi_compile_t *cc, xmlNodePtr node)
{
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type == XML_ELEMENT_NODE) {
            cmi_compile_error(cc, c, "<%s>: unexpected child element <%s>", node->name, c->name);
            return 1;
        }
    }
    return 0;
}

void *cmi_mediator_new(cmi_compile_t *cc, xmlNodePtr node, size_t size, cmi_mediator_run_fn run)
{
    cmi_mediator_t *m = cmi_arena_calloc(cc->arena, 1, size);
    m->run = run;
    m->kind = cmi_arena_strdup(cc->arena, (const char *)node->name);
    m->file = cc->file;
    m->line = cmi_xml_line(node);
    return m;
}

static int is_blank(const xmlChar *s)
{
    for (; s && *s; s++)
        if (!isspace(*s))
            return 0;
    return 1;
}

cmi_mediator_t *cmi_compile_mediator(cmi_compile_t *cc, xmlNodePtr node)
{
    const char *name = (const char *)node->name;
    if (!cmi_xml_is_synapse(node)) {
        cmi_compile_error(cc, node, "unknown mediator <%s> in namespace '%s'", name,
                          (const char *)node->ns->href);
        return NULL;
    }
    const cmi_mediator_kind_t *kind = cmi_mediator_kind_find(name);
    if (kind != NULL)
        return kind->compile(cc, node);
    if (strchr(name, '.') != NULL)
        return cmi_bind_operation(cc, node); /* NAME.OPERATION: a connector operation */
    if (cmi_mediator_is_mi_unsupported(name))
        cmi_compile_error(cc, node, "mediator <%s> is not supported by cmi yet", name);
    else
        cmi_compile_error(cc, node, "unknown mediator <%s>", name);
    return NULL;
}

cmi_sequence_t *cmi_compile_mediators(cmi_compile_t *cc, xmlNodePtr parent, const char *name)
{
    size_t n = 0;
    for (xmlNodePtr c = parent->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            n++;
    cmi_sequence_t *seq = cmi_arena_calloc(cc->arena, 1, sizeof(*seq));
    seq->name = name;
    seq->file = cc->file;
    seq->line = cmi_xml_line(parent);
    seq->items = cmi_arena_calloc(cc->arena, n ? n : 1, sizeof(*seq->items));
    for (xmlNodePtr c = parent->children; c != NULL; c = c->next) {
        if (c->type == XML_TEXT_NODE && !is_blank(c->content)) {
            cmi_compile_error(cc, c, "<%s>: unexpected text inside a mediator list", parent->name);
            continue;
        }
        if (c->type != XML_ELEMENT_NODE || cmi_xml_is(c, "description"))
            continue; /* <description>: a note, as MI allows in any mediator list */
        cmi_mediator_t *m = cmi_compile_mediator(cc, c);
        if (m != NULL)
            seq->items[seq->count++] = m;
    }
    return seq;
}

static cmi_seqref_t *add_ref(cmi_compile_t *cc, const char *key, const cmi_sequence_t **slot, int line,
                             const char *what)
{
    cmi_seqref_t *r = cmi_arena_calloc(cc->arena, 1, sizeof(*r));
    r->key = key;
    r->slot = slot;
    r->owner = cc->owner;
    r->file = cc->file;
    r->line = line;
    r->what = what;
    STAILQ_INSERT_TAIL(&cc->refs, r, link);
    return r;
}

void cmi_compile_ref_sequence(cmi_compile_t *cc, const char *key, const cmi_sequence_t **slot,
                              int line, const char *what)
{
    add_ref(cc, key, slot, line, what);
}

void cmi_compile_ref_template(cmi_compile_t *cc, const char *key, const cmi_sequence_t **slot, int line,
                              const char *what)
{
    add_ref(cc, key, slot, line, what)->is_template = 1;
}

void cmi_compile_after_refs(cmi_compile_t *cc, cmi_compile_check_fn fn, void *data)
{
    struct cmi_check *c = cmi_arena_calloc(cc->arena, 1, sizeof(*c));
    c->fn = fn;
    c->data = data;
    STAILQ_INSERT_TAIL(&cc->checks, c, link);
}

int cmi_compile_is_referenced(const cmi_compile_t *cc, const char *key)
{
    const cmi_seqref_t *r;
    STAILQ_FOREACH (r, &cc->refs, link)
        if (!r->is_template && strcmp(r->key, key) == 0)
            return 1;
    return 0;
}

/* ---- deferred compilation -------------------------------------------------- */

struct cmi_deferred {
    STAILQ_ENTRY(cmi_deferred) link;
    cmi_defer_phase_t phase;
    xmlDocPtr doc; /* a copy, freed once compiled */
    char *source;  /* the file's text, for the columns of expression errors */
    size_t source_len;
    const char *file;
    cmi_deferred_fn fn;
    void *data;
};

void cmi_compile_defer(cmi_compile_t *cc, cmi_defer_phase_t phase, xmlNodePtr root, cmi_deferred_fn fn, void *data)
{
    struct cmi_deferred *d = cmi_arena_calloc(cc->arena, 1, sizeof(*d));
    d->phase = phase;
    d->doc = xmlCopyDoc(root->doc, 1);
    if (cc->source != NULL) {
        d->source = cmi_xmalloc(cc->source_len + 1);
        memcpy(d->source, cc->source, cc->source_len);
        d->source[cc->source_len] = '\0';
        d->source_len = cc->source_len;
    }
    d->file = cc->file;
    d->fn = fn;
    d->data = data;
    STAILQ_INSERT_TAIL(&cc->deferred, d, link);
}

void cmi_compile_run_deferred(cmi_compile_t *cc, cmi_defer_phase_t phase)
{
    struct cmi_deferred *d;
    STAILQ_FOREACH (d, &cc->deferred, link) {
        if (d->phase != phase || d->doc == NULL)
            continue;
        const char *file = cc->file;
        cc->file = d->file;
        cc->source = d->source;
        cc->source_len = d->source_len;
        d->fn(cc, xmlDocGetRootElement(d->doc), d->data);
        cc->source = NULL;
        cc->source_len = 0;
        cc->file = file;
        xmlFreeDoc(d->doc);
        free(d->source);
        d->doc = NULL;
        d->source = NULL;
    }
}

/* ---- reference resolution and the cycle check --------------------------- */

typedef struct {
    const cmi_sequence_t *seq;
    int color; /* 0 new, 1 on the DFS stack, 2 done */
} seq_node_t;

typedef struct {
    cmi_compile_t *cc;
    seq_node_t *nodes;
    size_t count;
    const cmi_seqref_t **stack; /* references on the current DFS path */
    size_t depth;
} cycle_ctx_t;

static seq_node_t *node_of(cycle_ctx_t *x, const cmi_sequence_t *seq)
{
    for (size_t i = 0; i < x->count; i++)
        if (x->nodes[i].seq == seq)
            return &x->nodes[i];
    return NULL;
}

static void report_cycle(cycle_ctx_t *x, const cmi_seqref_t *closing)
{
    /* The cycle runs from the first reference on the stack whose owner is
     * the closing reference's target. */
    size_t start = 0;
    for (size_t i = 0; i < x->depth; i++)
        if (x->stack[i]->owner == *closing->slot) {
            start = i;
            break;
        }
    char path[1024];
    size_t off = 0;
    for (size_t i = start; i < x->depth && off < sizeof(path); i++)
        off += (size_t)snprintf(path + off, sizeof(path) - off, "%s -> ", x->stack[i]->owner->name);
    if (off < sizeof(path))
        snprintf(path + off, sizeof(path) - off, "%s -> %s", closing->owner->name, closing->key);
    cmi_diag_error(x->cc->diag, closing->file, closing->line, "sequence cycle: %s", path);
}

static void visit(cycle_ctx_t *x, seq_node_t *n)
{
    n->color = 1;
    const cmi_seqref_t *r;
    STAILQ_FOREACH (r, &x->cc->refs, link) {
        if (r->owner != n->seq || *r->slot == NULL)
            continue;
        seq_node_t *t = node_of(x, *r->slot);
        if (t == NULL)
            continue;
        if (t->color == 1) {
            report_cycle(x, r);
        } else if (t->color == 0) {
            x->stack[x->depth++] = r;
            visit(x, t);
            x->depth--;
        }
    }
    n->color = 2;
}

static int by_file(const void *a, const void *b)
{
    const seq_node_t *x = a, *y = b;
    int c = strcmp(x->seq->file, y->seq->file);
    return c ? c : x->seq->line - y->seq->line;
}

typedef struct {
    cmi_seqref_t *ref;
    size_t file_rank; /* order in which its file was loaded */
    size_t index;
} ref_order_t;

static int by_position(const void *a, const void *b)
{
    const ref_order_t *x = a, *y = b;
    if (x->file_rank != y->file_rank)
        return x->file_rank < y->file_rank ? -1 : 1;
    if (x->ref->line != y->ref->line)
        return x->ref->line - y->ref->line;
    return x->index < y->index ? -1 : x->index > y->index;
}

void cmi_compile_resolve_refs(cmi_compile_t *cc)
{
    size_t nrefs = 0;
    cmi_seqref_t *cur;
    STAILQ_FOREACH (cur, &cc->refs, link)
        nrefs++;
    /* Unresolved references are reported in file and line order, whatever
     * order the compilers met them in. */
    ref_order_t *order = cmi_arena_calloc(cc->arena, nrefs + 1, sizeof(*order));
    size_t i = 0;
    STAILQ_FOREACH (cur, &cc->refs, link) {
        order[i].ref = cur;
        order[i].index = i;
        order[i].file_rank = i;
        for (size_t k = 0; k < i; k++)
            if (order[k].ref->file == cur->file) {
                order[i].file_rank = order[k].file_rank;
                break;
            }
        i++;
    }
    qsort(order, nrefs, sizeof(*order), by_position);
    for (i = 0; i < nrefs; i++) {
        cmi_seqref_t *r = order[i].ref;
        const cmi_htab_t *table = r->is_template ? &cc->config->templates : &cc->config->sequences;
        const cmi_sequence_t *seq = cmi_htab_gets(table, r->key);
        if (seq == NULL)
            cmi_diag_error(cc->diag, r->file, r->line, "%s: no %s named '%s' is deployed", r->what,
                           r->is_template ? "sequence template" : "sequence", r->key);
        *r->slot = seq;
    }
    cycle_ctx_t x = {.cc = cc};
    x.nodes = cmi_arena_calloc(cc->arena, cc->config->sequences.count + cc->config->templates.count + 1,
                               sizeof(*x.nodes));
    x.stack = cmi_arena_calloc(cc->arena, nrefs + 1, sizeof(*x.stack));
    const cmi_htab_t *tables[] = {&cc->config->sequences, &cc->config->templates};
    for (size_t t = 0; t < 2; t++) {
        size_t it = 0;
        const cmi_htab_slot_t *slot;
        while (cmi_htab_next(tables[t], &it, &slot))
            x.nodes[x.count++].seq = slot->value;
    }
    /* Visit in file order so the cycle reported is the same on every run. */
    qsort(x.nodes, x.count, sizeof(*x.nodes), by_file);
    for (i = 0; i < x.count; i++)
        if (x.nodes[i].color == 0)
            visit(&x, &x.nodes[i]);
    struct cmi_check *c;
    STAILQ_FOREACH (c, &cc->checks, link)
        c->fn(cc, c->data);
}

/* ---- expressions ------------------------------------------------------------ */

/* The start of line `line` (1-based) in the source. */
static const char *line_start(const char *s, const char *end, int line)
{
    for (int ln = 1; s < end && ln < line; s++)
        if (*s == '\n')
            ln++;
    return s;
}

/* The '<' of node's start tag: the last "<name" that begins at or before the
 * end of the line libxml2 reports for it (the line where the tag ends). */
static const char *tag_start(cmi_compile_t *cc, xmlNodePtr node)
{
    const char *s = cc->source, *end = s + cc->source_len;
    const char *eol = line_start(s, end, cmi_xml_line(node) + 1);
    char qname[256];
    if (node->ns != NULL && node->ns->prefix != NULL)
        snprintf(qname, sizeof(qname), "<%s:%s", node->ns->prefix, node->name);
    else
        snprintf(qname, sizeof(qname), "<%s", node->name);
    size_t qlen = strlen(qname);
    for (const char *p = eol - 1; p >= s; p--)
        if (*p == '<' && (size_t)(end - p) > qlen && memcmp(p, qname, qlen) == 0 &&
            (isspace((unsigned char)p[qlen]) || p[qlen] == '>' || p[qlen] == '/'))
            return p;
    return NULL;
}

/* Where the raw text of an attribute's value (or of the element's content)
 * begins, after the quote or the start tag's '>'. */
static const char *value_start(cmi_compile_t *cc, const char *tag, const char *attr)
{
    const char *end = cc->source + cc->source_len;
    char quote = 0;
    for (const char *p = tag + 1; p < end; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
            continue;
        }
        if (*p == '"' || *p == '\'') {
            quote = *p;
            continue;
        }
        if (*p == '>')
            return attr == NULL ? p + 1 : NULL;
        size_t n = attr ? strlen(attr) : 0;
        if (attr != NULL && isspace((unsigned char)p[-1]) && (size_t)(end - p) > n && memcmp(p, attr, n) == 0) {
            const char *q = p + n;
            while (q < end && isspace((unsigned char)*q))
                q++;
            if (q < end && *q == '=') {
                q++;
                while (q < end && isspace((unsigned char)*q))
                    q++;
                if (q < end && (*q == '"' || *q == '\''))
                    return q + 1;
            }
        }
    }
    return NULL;
}

/* Maps an offset in the parsed value to a line and column of the file,
 * stepping over entity references and CDATA markers in the raw text. */
static int locate(cmi_compile_t *cc, xmlNodePtr node, const char *attr, size_t off, int *line, int *col)
{
    if (cc->source == NULL)
        return -1;
    const char *tag = tag_start(cc, node);
    const char *p = tag ? value_start(cc, tag, attr) : NULL;
    if (p == NULL)
        return -1;
    const char *end = cc->source + cc->source_len;
    size_t d = 0;
    while (p < end && d < off) {
        if (*p == '&') {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            p = semi ? semi + 1 : p + 1;
            d++;
        } else if ((size_t)(end - p) >= 9 && memcmp(p, "<![CDATA[", 9) == 0) {
            p += 9;
        } else if ((size_t)(end - p) >= 3 && memcmp(p, "]]>", 3) == 0) {
            p += 3;
        } else {
            p++;
            d++;
        }
    }
    int ln = 1;
    const char *bol = cc->source;
    for (const char *q = cc->source; q < p; q++)
        if (*q == '\n') {
            ln++;
            bol = q + 1;
        }
    *line = ln;
    *col = (int)(p - bol) + 1;
    return 0;
}

void cmi_compile_report_expr_error(cmi_compile_t *cc, xmlNodePtr node, const char *attr, const char *text,
                                   const struct cmi_expr_error *err)
{
    int line = cmi_xml_line(node), col = 0;
    locate(cc, node, attr, err->offset, &line, &col);
    size_t len = strlen(text), off = err->offset <= len ? err->offset : len;
    const char *where = attr ? cmi_arena_sprintf(cc->arena, "<%s %s=...>", node->name, attr)
                             : cmi_arena_sprintf(cc->arena, "<%s>", node->name);
    if (off < len)
        cmi_diag_error_at(cc->diag, cc->file, line, col, "%s: %s, at '%.24s%s'", where, err->message, text + off,
                          len - off > 24 ? "..." : "");
    else
        cmi_diag_error_at(cc->diag, cc->file, line, col, "%s: %s, at the end of '%.40s%s'", where, err->message,
                          text, len > 40 ? "..." : "");
}

/* The expression between braces (skip of them at each end of value). */
static const cmi_expr_t *compile_braced(cmi_compile_t *cc, xmlNodePtr node, const char *attr, const char *value,
                                        size_t skip)
{
    size_t n = strlen(value);
    cmi_expr_error_t err = {0};
    const cmi_expr_t *e = cmi_expr_compile(cc->arena, cmi_arena_strndup(cc->arena, value + skip, n - 2 * skip), node,
                                           &err);
    if (e == NULL) {
        err.offset += skip;
        cmi_compile_report_expr_error(cc, node, attr, value, &err);
    }
    return e;
}

int cmi_compile_value_attr(cmi_compile_t *cc, xmlNodePtr node, const char *attr, const char *value,
                           const struct cmi_expr **expr, int *lazy)
{
    size_t n = strlen(value);
    *expr = NULL;
    *lazy = 0;
    if (n > 4 && strncmp(value, "{{", 2) == 0 && strcmp(value + n - 2, "}}") == 0) {
        *lazy = 1;
        *expr = compile_braced(cc, node, attr, value, 2);
        return *expr ? 0 : -1;
    }
    if (n > 2 && value[0] == '{' && value[n - 1] == '}') {
        *expr = compile_braced(cc, node, attr, value, 1);
        return *expr ? 0 : -1;
    }
    return 0;
}

struct cmi_expr *cmi_compile_expr(cmi_compile_t *cc, xmlNodePtr node, const char *attr, const char *text)
{
    cmi_expr_error_t err = {0};
    cmi_expr_t *e = cmi_expr_compile(cc->arena, text, node, &err);
    if (e == NULL)
        cmi_compile_report_expr_error(cc, node, attr, text, &err);
    return e;
}

struct cmi_template *cmi_compile_template(cmi_compile_t *cc, xmlNodePtr node, const char *attr, const char *text,
                                          int mode, size_t nargs)
{
    cmi_expr_error_t err = {0};
    cmi_template_t *t = cmi_template_compile(cc->arena, text, (cmi_template_mode_t)mode, nargs, &err);
    if (t == NULL)
        cmi_compile_report_expr_error(cc, node, attr, text, &err);
    return t;
}

const char *cmi_compile_element_markup(cmi_compile_t *cc, xmlNodePtr elem, size_t *len)
{
    /* Copied into a document of its own so that namespaces declared on
     * ancestors (the Synapse default namespace included, as MI does) are
     * declared on the copy. */
    xmlDocPtr tmp = xmlNewDoc((const xmlChar *)"1.0");
    xmlNodePtr copy = cmi_xml_clone(elem, tmp, NULL);
    /* xmlns="" on the root undeclares a default namespace that no longer
     * encloses it: drop it, as MI's serialiser does. */
    for (xmlNsPtr *link = &copy->nsDef; *link != NULL;) {
        xmlNsPtr ns = *link;
        if (ns->prefix == NULL && (ns->href == NULL || ns->href[0] == '\0')) {
            *link = ns->next;
            ns->next = NULL;
            xmlFreeNs(ns);
        } else {
            link = &ns->next;
        }
    }
    xmlBufferPtr buf = xmlBufferCreate();
    xmlNodeDump(buf, tmp, copy, 0, 0);
    *len = (size_t)xmlBufferLength(buf);
    const char *markup = cmi_arena_strndup(cc->arena, (const char *)xmlBufferContent(buf), *len);
    xmlBufferFree(buf);
    xmlFreeDoc(tmp);
    return markup;
}
