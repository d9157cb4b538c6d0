#include "config.h"

#include "runtime/convert.h"

#include <ctype.h>
#include <libxml/encoding.h>
#include <string.h>
#include <strings.h>


/* ---- SOAP ------------------------------------------------------------- */

static int has_ns(xmlNodePtr n, const char *href)
{
    return n != NULL && n->ns != NULL && n->ns->href != NULL && strcmp((const char *)n->ns->href, href) == 0;
}

int cmi_soap_is_envelope(xmlNodePtr n)
{
    return n != NULL && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, "Envelope") == 0 &&
           (has_ns(n, CMI_SOAP11_NS) || has_ns(n, CMI_SOAP12_NS));
}

xmlNodePtr cmi_soap_envelope_in(xmlDocPtr doc, const char *ns_href)
{
    xmlNodePtr env = xmlNewDocNode(doc, NULL, (const xmlChar *)"Envelope", NULL);
    xmlNsPtr ns = xmlNewNs(env, (const xmlChar *)ns_href, (const xmlChar *)"soapenv");
    xmlSetNs(env, ns);
    xmlDocSetRootElement(doc, env);
    return xmlNewChild(env, ns, (const xmlChar *)"Body", NULL);
}

xmlNodePtr cmi_soap_envelope(xmlDocPtr doc)
{
    return cmi_soap_envelope_in(doc, CMI_SOAP11_NS);
}

xmlNodePtr cmi_soap_body(xmlNodePtr env)
{
    for (xmlNodePtr c = env->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, "Body") == 0)
            return c;
    return NULL;
}

xmlNodePtr cmi_soap_body_child(xmlNodePtr env)
{
    xmlNodePtr body = cmi_soap_body(env);
    for (xmlNodePtr b = body ? body->children : NULL; b != NULL; b = b->next)
        if (b->type == XML_ELEMENT_NODE)
            return b;
    return NULL;
}

/* ---- bounds ------------------------------------------------------------------ */

/* A conversion's result is charged as it grows and stops at the limit:
 * an input can repeat a long JSON key in every element of an array, which
 * XML writes twice per element (some 250 times the input's size). */
typedef struct {
    size_t left;
    int over;
} budget_t;

static int charge(budget_t *b, size_t n)
{
    if (b->over || n > b->left) {
        b->over = 1;
        return -1;
    }
    b->left -= n;
    return 0;
}

/* ---- JSON -> XML ---------------------------------------------------------- */

/* A child element in no namespace (xmlNewChild would give it the parent's). */
static xmlNodePtr plain_child(xmlNodePtr parent, const char *name)
{
    return xmlAddChild(parent, xmlNewDocNode(parent->doc, NULL, (const xmlChar *)name, NULL));
}

/* XML element names must start with a letter or '_' and hold name
 * characters; a JSON key that is not one gets '_' in place of the
 * offending characters. */
static const char *element_name(const char *key, char *buf, size_t size)
{
    size_t n = strlen(key);
    if (n == 0 || n >= size)
        return "_";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)key[i];
        int ok = ch >= 0x80 || isalpha(ch) || ch == '_' || (i > 0 && (isdigit(ch) || ch == '-' || ch == '.'));
        buf[i] = ok ? (char)ch : '_';
    }
    buf[n] = '\0';
    return buf;
}

/* What text takes written as XML content (&amp; &lt; &gt; &#13;). */
static size_t escaped_size(const char *text, size_t len)
{
    size_t n = len;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '&' || text[i] == '\r' ? 4 : text[i] == '<' || text[i] == '>' ? 3 : 0;
    return n;
}

static void scalar_text(xmlNodePtr el, json_t *j, budget_t *b)
{
    char num[40];
    const char *text = NULL;
    size_t len = 0;
    switch (json_typeof(j)) {
    case JSON_STRING:
        text = json_string_value(j);
        len = json_string_length(j);
        break;
    case JSON_INTEGER:
        len = (size_t)snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(j));
        text = num;
        break;
    case JSON_REAL:
        len = cmi_format_double(json_real_value(j), num, sizeof(num));
        text = num;
        break;
    case JSON_TRUE:
        text = "true";
        len = 4;
        break;
    case JSON_FALSE:
        text = "false";
        len = 5;
        break;
    default:
        return;
    }
    if (charge(b, escaped_size(text, len)) == 0)
        xmlNodeAddContentLen(el, (const xmlChar *)text, (int)len);
}

static void json_to_xml(xmlNodePtr parent, const char *name, json_t *j, budget_t *b);

static void children_of(xmlNodePtr el, json_t *j, budget_t *b)
{
    if (json_is_object(j)) {
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v)
        {
            if (b->over)
                return;
            json_to_xml(el, key, v, b);
        }
    } else {
        scalar_text(el, j, b);
    }
}

/* An element is charged what it takes written out: <name></name>. */
static xmlNodePtr charged_child(xmlNodePtr parent, const char *name, budget_t *b)
{
    return charge(b, 2 * strlen(name) + 5) == 0 ? plain_child(parent, name) : NULL;
}

static void json_to_xml(xmlNodePtr parent, const char *name, json_t *j, budget_t *b)
{
    char buf[256];
    const char *ename = element_name(name, buf, sizeof(buf));
    xmlNodePtr el;
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if ((el = charged_child(parent, ename, b)) == NULL)
                return;
            children_of(el, v, b);
        }
        return;
    }
    if ((el = charged_child(parent, ename, b)) != NULL)
        children_of(el, j, b);
}

int cmi_json_to_xml_document(xmlNodePtr parent, json_t *j, size_t limit)
{
    budget_t b = {limit, 0};
    /* Element names are interned in the document's dictionary: a name
     * repeated in every element of an array is stored once. */
    if (parent->doc != NULL && parent->doc->dict == NULL)
        parent->doc->dict = xmlDictCreate();
    xmlNodePtr top = charged_child(parent, json_is_array(j) ? "jsonArray" : "jsonObject", &b);
    if (top != NULL && json_is_array(j))
        json_to_xml(top, "jsonElement", j, &b);
    else if (top != NULL)
        children_of(top, j, &b);
    return b.over ? -1 : 0;
}

/* ---- XML -> JSON ------------------------------------------------------------ */

static int is_blank(const xmlChar *s)
{
    for (; s && *s; s++)
        if (!isspace(*s))
            return 0;
    return 1;
}

/* JSON's number grammar: such text is written as it stands. */
static int is_json_number(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (isdigit((unsigned char)*p))
        while (isdigit((unsigned char)*p))
            p++;
    else
        return 0;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

/* The writer: JSON text into out, at most limit bytes. */
typedef struct {
    cmi_strbuf_t *out;
    size_t limit;
    int over;
} writer_t;

static void write_primitive(const char *text, cmi_strbuf_t *out)
{
    if (is_json_number(text) || strcmp(text, "true") == 0 || strcmp(text, "false") == 0 || strcmp(text, "null") == 0) {
        cmi_strbuf_puts(out, text);
        return;
    }
    cmi_strbuf_putc(out, '"');
    cmi_strbuf_json_escaped(out, text, strlen(text));
    cmi_strbuf_putc(out, '"');
}

static void write_key(const char *key, cmi_strbuf_t *out)
{
    cmi_strbuf_putc(out, '"');
    cmi_strbuf_json_escaped(out, key, strlen(key));
    cmi_strbuf_puts(out, "\":");
}

/* Element children grouped by name: one JSON key per name, in the order
 * each name first appears, its elements in document order.  Sorted rather
 * than hashed, so that no choice of names makes it slower than
 * n log n. */
typedef struct {
    xmlNodePtr node;
    size_t order;
} child_t;

typedef struct {
    size_t first; /* index in the sorted children */
    size_t count;
    int forced;   /* named by an <?xml-multiple?> */
} group_t;

static int by_name_then_order(const void *a, const void *b)
{
    const child_t *x = a, *y = b;
    int c = xmlStrcmp(x->node->name, y->node->name);
    return c != 0 ? c : (x->order > y->order) - (x->order < y->order);
}

static int by_first_appearance(const void *a, const void *b, void *children)
{
    const child_t *c = children;
    size_t x = c[((const group_t *)a)->first].order, y = c[((const group_t *)b)->first].order;
    return (x > y) - (x < y);
}

static group_t *find_group(group_t *groups, size_t ngroups, const child_t *children, const xmlChar *name)
{
    size_t lo = 0, hi = ngroups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = xmlStrcmp(children[groups[mid].first].node->name, name);
        if (c == 0)
            return &groups[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Returns the number of groups; *out: the groups in order of first
 * appearance, *sorted: the children they index. */
static size_t group_children(xmlNodePtr el, cmi_arena_t *arena, group_t **out, child_t **sorted)
{
    size_t n = 0;
    for (xmlNodePtr c = el->children; c != NULL; c = c->next)
        n += c->type == XML_ELEMENT_NODE;
    if (n == 0)
        return 0;
    child_t *children = cmi_arena_alloc(arena, n * sizeof(*children));
    size_t i = 0;
    for (xmlNodePtr c = el->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE) {
            children[i].node = c;
            children[i].order = i;
            i++;
        }
    qsort(children, n, sizeof(*children), by_name_then_order);
    group_t *groups = cmi_arena_alloc(arena, n * sizeof(*groups));
    size_t ng = 0;
    for (i = 0; i < n; i++) {
        if (i > 0 && xmlStrcmp(children[i].node->name, children[i - 1].node->name) == 0) {
            groups[ng - 1].count++;
            continue;
        }
        groups[ng++] = (group_t){i, 1, 0};
    }
    /* Groups are still sorted by name here: <?xml-multiple name?> finds
     * its group by binary search, an empty one marks them all. */
    for (xmlNodePtr c = el->children; c != NULL; c = c->next) {
        if (c->type != XML_PI_NODE || xmlStrcmp(c->name, (const xmlChar *)"xml-multiple") != 0)
            continue;
        if (c->content == NULL || c->content[0] == '\0') {
            for (size_t g = 0; g < ng; g++)
                groups[g].forced = 1;
        } else {
            group_t *g = find_group(groups, ng, children, c->content);
            if (g != NULL)
                g->forced = 1;
        }
    }
    qsort_r(groups, ng, sizeof(*groups), by_first_appearance, children);
    *out = groups;
    *sorted = children;
    return ng;
}

static void write_value(xmlNodePtr el, writer_t *w);

static void write_group(const group_t *g, const child_t *children, writer_t *w)
{
    write_key((const char *)children[g->first].node->name, w->out);
    int array = g->count > 1 || g->forced;
    if (array)
        cmi_strbuf_putc(w->out, '[');
    for (size_t k = 0; k < g->count && !w->over; k++) {
        if (k > 0)
            cmi_strbuf_putc(w->out, ',');
        write_value(children[g->first + k].node, w);
    }
    if (array)
        cmi_strbuf_putc(w->out, ']');
}

static void write_object(xmlNodePtr el, writer_t *w)
{
    cmi_strbuf_t *out = w->out;
    int first = 1;
    cmi_strbuf_putc(out, '{');
    for (xmlAttrPtr a = el->properties; a != NULL; a = a->next) {
        xmlChar *v = xmlNodeGetContent((xmlNodePtr)a);
        cmi_strbuf_puts(out, first ? "\"@" : ",\"@");
        cmi_strbuf_json_escaped(out, (const char *)a->name, strlen((const char *)a->name));
        cmi_strbuf_puts(out, "\":");
        write_primitive(v ? (const char *)v : "", out);
        xmlFree(v);
        first = 0;
    }
    group_t *groups = NULL;
    child_t *children = NULL;
    size_t ng = group_children(el, out->arena, &groups, &children);
    for (size_t g = 0; g < ng && !w->over; g++) {
        if (!first)
            cmi_strbuf_putc(out, ',');
        first = 0;
        write_group(&groups[g], children, w);
    }
    /* text beside attributes or elements */
    cmi_strbuf_t text;
    cmi_strbuf_init(&text, out->arena, 32);
    for (xmlNodePtr c = el->children; c != NULL; c = c->next)
        if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && !is_blank(c->content))
            cmi_strbuf_puts(&text, (const char *)c->content);
    if (text.len > 0) {
        cmi_strbuf_puts(out, first ? "\"$\":" : ",\"$\":");
        write_primitive(text.data, out);
    }
    cmi_strbuf_putc(out, '}');
}

static void write_value(xmlNodePtr el, writer_t *w)
{
    if (w->out->len > w->limit) {
        w->over = 1;
        return;
    }
    int elements = 0;
    for (xmlNodePtr c = el->children; c != NULL && !elements; c = c->next)
        elements |= c->type == XML_ELEMENT_NODE;
    if (elements || el->properties != NULL) {
        write_object(el, w);
        return;
    }
    xmlChar *t = xmlNodeGetContent(el);
    if (t == NULL || is_blank(t))
        cmi_strbuf_puts(w->out, "null");
    else
        write_primitive((const char *)t, w->out);
    xmlFree(t);
}

int cmi_xml_to_json(xmlNodePtr el, cmi_strbuf_t *out, size_t limit)
{
    writer_t w = {out, limit, 0};
    if (xmlStrcmp(el->name, (const xmlChar *)"jsonObject") == 0) {
        write_object(el, &w);
    } else if (xmlStrcmp(el->name, (const xmlChar *)"jsonArray") == 0) {
        int n = 0;
        cmi_strbuf_putc(out, '[');
        for (xmlNodePtr c = el->children; c != NULL && !w.over; c = c->next) {
            if (c->type != XML_ELEMENT_NODE)
                continue;
            if (n++ > 0)
                cmi_strbuf_putc(out, ',');
            write_value(c, &w);
        }
        cmi_strbuf_putc(out, ']');
    } else {
        cmi_strbuf_putc(out, '{');
        write_key((const char *)el->name, out);
        write_value(el, &w);
        cmi_strbuf_putc(out, '}');
    }
    return w.over || out->len > limit ? -1 : 0;
}

/* ---- reading XML -------------------------------------------------------------- */

/* Past where [a..b) first holds needle (b when it does not). */
static const char *past(const char *a, const char *b, const char *needle)
{
    const char *hit = memmem(a, (size_t)(b - a), needle, strlen(needle));
    return hit != NULL ? hit + strlen(needle) : b;
}

/* libxml2 2.9 checks each attribute of an element against every one
 * before it: n attributes cost n^2 (60,000 on one element took 10 s).  So
 * no element may have more than CMI_XML_MAX_ATTRIBUTES, as in MI's parser
 * (Woodstox's default), counted in one pass before libxml2 sees the bytes:
 * an attribute is a '=' followed by a quoted value inside a tag, read as
 * libxml2 reads it (a stray quote or a '<' ends the tag; comments, CDATA
 * and processing instructions hold no tag). */
static int too_many_attributes(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    while ((p = memchr(p, '<', (size_t)(end - p))) != NULL) {
        p++;
        if (end - p >= 3 && memcmp(p, "!--", 3) == 0) {
            p = past(p + 3, end, "-->");
            continue;
        }
        if (end - p >= 8 && memcmp(p, "![CDATA[", 8) == 0) {
            p = past(p + 8, end, "]]>");
            continue;
        }
        if (p < end && *p == '?') {
            p = past(p + 1, end, "?>");
            continue;
        }
        unsigned n = 0;
        while (p < end && *p != '>' && *p != '<') {
            if (*p++ != '=')
                continue;
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
                p++;
            if (p == end || (*p != '"' && *p != '\''))
                break; /* not an attribute value: libxml2 stops reading attributes here */
            const char *close = memchr(p + 1, *p, (size_t)(end - p - 1));
            const char *lt = memchr(p + 1, '<', (size_t)((close ? close : end) - p - 1));
            if (lt != NULL) { /* a '<' in a value ends the tag for libxml2 */
                p = lt;
                break;
            }
            if (++n > CMI_XML_MAX_ATTRIBUTES)
                return 1;
            p = close != NULL ? close + 1 : end;
        }
    }
    return 0;
}

/* The attribute count above reads bytes as ASCII does: a document in an
 * encoding where '<', '=' and quotes are other bytes (UTF-16, UCS-4,
 * EBCDIC by their first bytes; UTF-7, ISO-2022 and the like by their
 * declaration) could hide any number of attributes from it.  Returns
 * NULL when the encoding is one the count reads right (UTF-8, ASCII,
 * ISO-8859-*, windows-125*), else what is refused. */
static const char *unreadable_encoding(cmi_arena_t *arena, const char *s, size_t len)
{
    if (len >= 4) {
        xmlCharEncoding e = xmlDetectCharEncoding((const unsigned char *)s, 4);
        if (e != XML_CHAR_ENCODING_NONE && e != XML_CHAR_ENCODING_UTF8)
            return "a document that is not in an ASCII-compatible encoding (UTF-16, UCS-4, EBCDIC)";
    }
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3, len -= 3;
    if (len < 5 || memcmp(s, "<?xml", 5) != 0)
        return NULL;
    const char *end = memmem(s, len < 512 ? len : 512, "?>", 2);
    const char *enc = end != NULL ? memmem(s, (size_t)(end - s), "encoding", 8) : NULL;
    if (enc == NULL)
        return NULL;
    const char *v = enc + 8;
    while (v < end && strchr(" \t\r\n=", *v) != NULL)
        v++;
    if (v == end || (*v != '"' && *v != '\''))
        return NULL; /* malformed: libxml2 refuses it */
    const char *q = memchr(v + 1, *v, (size_t)(end - v - 1));
    if (q == NULL)
        return NULL;
    char name[32];
    snprintf(name, sizeof(name), "%.*s", (int)(q - v - 1), v + 1);
    static const char *const names[] = {"UTF-8", "UTF8", "US-ASCII", "ASCII", "LATIN1", "LATIN-1", NULL};
    static const char *const families[] = {"ISO-8859-", "ISO8859-", "ISO_8859-", "WINDOWS-125", "CP125", NULL};
    for (const char *const *n = names; *n; n++)
        if (strcasecmp(name, *n) == 0)
            return NULL;
    for (const char *const *f = families; *f; f++)
        if (strncasecmp(name, *f, strlen(*f)) == 0)
            return NULL;
    return cmi_arena_sprintf(arena, "the encoding '%s' is not supported by cmi (UTF-8, ASCII, ISO-8859-*, windows-125*)",
                             name);
}

/* Structured errors: the parse stops at the first fatal one.  libxml2 2.9
 * reads on after it without building the tree, and text after a broken
 * comment or processing instruction could then be read as tags the
 * attribute count never saw. */
static void stop_at_fatal_error(void *ctx, xmlErrorPtr e)
{
    if (e != NULL && e->level >= XML_ERR_FATAL)
        xmlStopParser((xmlParserCtxtPtr)ctx);
}

/* SAX: a DOCTYPE stops the parse before its DTD is read. */
static void refuse_doctype(void *ctx, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id)
{
    (void)name, (void)external_id, (void)system_id;
    xmlParserCtxtPtr ctxt = ctx;
    *(int *)ctxt->_private = 1;
    xmlStopParser(ctxt);
}

xmlDocPtr cmi_xml_read(cmi_arena_t *arena, const char *bytes, size_t len, const char **why)
{
    if (len == 0 || len >= INT32_MAX) {
        *why = len == 0 ? "empty document" : "document too large";
        return NULL;
    }
    if ((*why = unreadable_encoding(arena, bytes, len)) != NULL)
        return NULL;
    if (too_many_attributes(bytes, len)) {
        *why = cmi_arena_sprintf(arena, "an element has more than %d attributes", CMI_XML_MAX_ATTRIBUTES);
        return NULL;
    }
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (ctxt == NULL) {
        *why = "out of memory";
        return NULL;
    }
    int doctype = 0;
    ctxt->_private = &doctype;
    ctxt->sax->internalSubset = refuse_doctype;
    ctxt->sax->serror = stop_at_fatal_error;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, bytes, (int)len, NULL, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doctype) {
        xmlFreeDoc(doc);
        doc = NULL;
        *why = "a DOCTYPE is not allowed in a payload (cmi reads no DTD and expands no entity)";
    } else if (doc == NULL) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        if (e != NULL && e->message != NULL) {
            size_t n = strlen(e->message);
            while (n > 0 && e->message[n - 1] == '\n') /* libxml2 ends its messages with one */
                n--;
            *why = cmi_arena_strndup(arena, e->message, n);
        } else {
            *why = "not well-formed";
        }
    }
    xmlFreeParserCtxt(ctxt);
    return doc;
}

/* ---- reading JSON ------------------------------------------------------------- */

/* Whether the digits of an integer (no sign) pass what int64 holds. */
static int beyond_int64(const char *digits, size_t n, int negative)
{
    static const char max[] = "9223372036854775807", min[] = "9223372036854775808";
    if (n != 19)
        return n > 19;
    return memcmp(digits, negative ? min : max, 19) > 0;
}

/* The text with ".0" after every integer beyond 64 bits (jansson refuses
 * a whole document for one), or NULL when there is none.  One pass,
 * strings skipped. */
static const char *big_integers_as_reals(cmi_arena_t *arena, const char *s, size_t len, size_t *out_len)
{
    cmi_strbuf_t b;
    int changed = 0, in_string = 0;
    size_t done = 0;
    cmi_strbuf_init(&b, arena, len + 64);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
            continue;
        }
        if (c != '-' && !isdigit((unsigned char)c))
            continue;
        size_t start = i, digits = i + (c == '-');
        while (i < len && (isdigit((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.' || s[i] == 'e' ||
                           s[i] == 'E'))
            i++;
        size_t end = i--;
        if (memchr(s + start, '.', end - start) == NULL && memchr(s + start, 'e', end - start) == NULL &&
            memchr(s + start, 'E', end - start) == NULL && beyond_int64(s + digits, end - digits, c == '-')) {
            cmi_strbuf_append(&b, s + done, end - done);
            cmi_strbuf_puts(&b, ".0");
            done = end;
            changed = 1;
        }
    }
    if (!changed)
        return NULL;
    cmi_strbuf_append(&b, s + done, len - done);
    *out_len = b.len;
    return b.data;
}

json_t *cmi_json_read(cmi_arena_t *arena, const char *bytes, size_t len, json_error_t *je)
{
    json_t *j = json_loadb(bytes, len, JSON_DECODE_ANY, je);
    if (j == NULL && json_error_code(je) == json_error_numeric_overflow) {
        size_t n;
        const char *again = big_integers_as_reals(arena, bytes, len, &n);
        if (again != NULL)
            j = json_loadb(again, n, JSON_DECODE_ANY, je);
    }
    return j;
}

json_t *cmi_xml_to_json_tree(cmi_arena_t *arena, xmlNodePtr element, size_t limit)
{
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, arena, 256);
    json_error_t je;
    return cmi_xml_to_json(element, &b, limit) == 0 ? cmi_json_read(arena, b.data, b.len, &je) : NULL;
}

/* Line numbers, which the DOM wrapper's clone does not keep (errors in an
 * endpoint template are reported at the template's lines). */
static void copy_lines(xmlNodePtr from, xmlNodePtr to)
{
    for (; from != NULL && to != NULL; from = from->next, to = to->next) {
        to->line = from->line;
        if (from->type == XML_ELEMENT_NODE)
            copy_lines(from->children, to->children);
    }
}

xmlNodePtr cmi_xml_clone(xmlNodePtr node, xmlDocPtr doc, xmlNodePtr parent)
{
    xmlNodePtr copy = NULL;
    if (xmlDOMWrapCloneNode(NULL, node->doc, node, &copy, doc, parent, 1, 0) != 0 || copy == NULL)
        return NULL;
    copy->line = node->line;
    if (node->type == XML_ELEMENT_NODE)
        copy_lines(node->children, copy->children);
    if (parent != NULL)
        xmlAddChild(parent, copy);
    else
        xmlDocSetRootElement(doc, copy);
    xmlDOMWrapReconcileNamespaces(NULL, copy, 0);
    return copy;
}
