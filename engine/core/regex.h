/* Regular expressions as MI users write them (Java syntax), run by the
 * C library's POSIX extended engine.
 *
 * The common Java forms are translated when the pattern is compiled:
 * \d \D \w \W \s \S (also inside [...]), a leading (?i), and lazy
 * quantifiers (*? +? ??, which cannot change whether a whole string
 * matches).  Lookaround, backreferences and possessive quantifiers are
 * refused with a message rather than mis-read. */
#ifndef CMI_CORE_REGEX_H
#define CMI_CORE_REGEX_H

#include <regex.h>
#include <stddef.h>

#include "core/arena.h"

typedef struct cmi_regex_s {
    regex_t re;
    int compiled;
} cmi_regex_t;

/* Compiles pattern; the compiled form is freed with the arena.  Returns 0,
 * or -1 with *err (arena string). */
int cmi_regex_compile(cmi_arena_t *arena, cmi_regex_t *r, const char *pattern, const char **err);
/* Java's Matcher.matches(): the whole text. */
int cmi_regex_matches(const cmi_regex_t *r, const char *text, size_t len);
/* Java's Matcher.find() with groups: 1 when found; groups[k] is the k-th
 * group (rm_so == -1 when it did not take part). */
int cmi_regex_find(const cmi_regex_t *r, const char *text, size_t len, regmatch_t *groups, size_t ngroups);
/* The next match at or after byte from (Java's Matcher.find(from) as
 * String.split() walks it): 1 when found, with its offsets into text in
 * *m.  '^' matches at the start of text only. */
int cmi_regex_find_from(const cmi_regex_t *r, const char *text, size_t len, size_t from, regmatch_t *m);
/* The number of capturing groups in the pattern. */
size_t cmi_regex_groups(const cmi_regex_t *r);

#endif
