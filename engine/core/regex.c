#include "config.h"

#include "core/regex.h"

#include <stdio.h>
#include <string.h>

#include "core/str.h"

static void regex_free(void *p)
{
    cmi_regex_t *r = p;
    if (r->compiled)
        regfree(&r->re);
}

static const char *class_body(char c, int *negated)
{
    *negated = c == 'D' || c == 'W' || c == 'S';
    switch (c) {
    case 'd': case 'D': return "0-9";
    case 'w': case 'W': return "A-Za-z0-9_";
    case 's': case 'S': return "[:space:]";
    default: return NULL;
    }
}

/* Java -> POSIX ERE.  Returns the translated pattern or NULL with *err. */
static const char *translate(cmi_arena_t *a, const char *p, int *icase, const char **err)
{
    cmi_strbuf_t b;
    cmi_strbuf_init(&b, a, strlen(p) * 2 + 16);
    if (strncmp(p, "(?i)", 4) == 0) {
        *icase = 1;
        p += 4;
    }
    int in_class = 0;
    for (; *p; p++) {
        char c = *p;
        if (c == '\\' && p[1] != '\0') {
            int neg;
            const char *body = class_body(p[1], &neg);
            if (body != NULL) {
                if (in_class) {
                    if (neg) {
                        *err = "a negated class escape (\\D, \\W, \\S) inside [...] is not supported";
                        return NULL;
                    }
                    cmi_strbuf_puts(&b, body);
                } else {
                    cmi_strbuf_printf(&b, "[%s%s]", neg ? "^" : "", body);
                }
                p++;
                continue;
            }
            if (p[1] >= '1' && p[1] <= '9' && !in_class) {
                *err = "backreferences are not supported";
                return NULL;
            }
            if (strchr("bBAzZGQEpP", p[1]) != NULL && !in_class) {
                *err = cmi_arena_sprintf(a, "the escape \\%c is not supported", p[1]);
                return NULL;
            }
            /* \. \* \\ \t ... : an escaped character stands for itself */
            if (p[1] == 't')
                cmi_strbuf_putc(&b, '\t');
            else if (p[1] == 'n')
                cmi_strbuf_putc(&b, '\n');
            else if (p[1] == 'r')
                cmi_strbuf_putc(&b, '\r');
            else if (in_class) {
                /* a bracket expression takes its characters literally */
                if (p[1] == ']') {
                    *err = "an escaped ']' inside [...] is not supported (put ']' first: []abc])";
                    return NULL;
                }
                cmi_strbuf_putc(&b, p[1]);
            } else {
                cmi_strbuf_putc(&b, '\\');
                cmi_strbuf_putc(&b, p[1]);
            }
            p++;
            continue;
        }
        if (in_class) {
            if (c == ']')
                in_class = 0;
            cmi_strbuf_putc(&b, c);
            continue;
        }
        if (c == '[') {
            in_class = 1;
            cmi_strbuf_putc(&b, c);
            if (p[1] == '^') {
                cmi_strbuf_putc(&b, '^');
                p++;
            }
            if (p[1] == ']') { /* a leading ']' is literal */
                cmi_strbuf_putc(&b, ']');
                p++;
            }
            continue;
        }
        if (c == '(' && p[1] == '?') {
            if (p[2] == ':') { /* non-capturing group: a plain group */
                cmi_strbuf_putc(&b, '(');
                p += 2;
                continue;
            }
            *err = "lookaround and inline flags other than a leading (?i) are not supported";
            return NULL;
        }
        if ((c == '*' || c == '+' || c == '?' || c == '}') && (p[1] == '?' || p[1] == '+')) {
            if (p[1] == '+') {
                *err = "possessive quantifiers are not supported";
                return NULL;
            }
            cmi_strbuf_putc(&b, c); /* lazy: the same set of whole-string matches */
            p++;
            continue;
        }
        cmi_strbuf_putc(&b, c);
    }
    return b.data;
}

int cmi_regex_compile(cmi_arena_t *arena, cmi_regex_t *r, const char *pattern, const char **err)
{
    int icase = 0;
    const char *posix = translate(arena, pattern, &icase, err);
    if (posix == NULL)
        return -1;
    int rc = regcomp(&r->re, posix, REG_EXTENDED | (icase ? REG_ICASE : 0));
    if (rc != 0) {
        char why[128];
        regerror(rc, &r->re, why, sizeof(why));
        *err = cmi_arena_sprintf(arena, "invalid regular expression: %s", why);
        return -1;
    }
    r->compiled = 1;
    cmi_arena_cleanup_add(arena, regex_free, r);
    return 0;
}

int cmi_regex_matches(const cmi_regex_t *r, const char *text, size_t len)
{
    regmatch_t m[1];
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)len;
    /* REG_STARTEND: the text need not be NUL-terminated and may hold NULs.
     * POSIX picks the longest match at the leftmost position, so a match of
     * the whole text is found whenever one exists. */
    if (regexec(&r->re, text, 1, m, REG_STARTEND) != 0)
        return 0;
    return m[0].rm_so == 0 && (size_t)m[0].rm_eo == len;
}

int cmi_regex_find(const cmi_regex_t *r, const char *text, size_t len, regmatch_t *groups, size_t ngroups)
{
    regmatch_t whole[1];
    regmatch_t *m = ngroups ? groups : whole;
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)len;
    return regexec(&r->re, text, ngroups ? ngroups : 1, m, REG_STARTEND) == 0;
}

int cmi_regex_find_from(const cmi_regex_t *r, const char *text, size_t len, size_t from, regmatch_t *m)
{
    /* With REG_STARTEND glibc searches from rm_so but reads the text before
     * it for context and reports offsets from text itself. */
    m->rm_so = (regoff_t)from;
    m->rm_eo = (regoff_t)len;
    return regexec(&r->re, text, 1, m, REG_STARTEND) == 0;
}

size_t cmi_regex_groups(const cmi_regex_t *r)
{
    return r->re.re_nsub;
}
