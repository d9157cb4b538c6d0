/* Memory arenas: every allocation in cmi has an owner.
 *
 * An arena is a bump allocator with cleanup handlers, freed in one step
 * (nginx's pool).  Two lifetimes use it: the configuration (compiled
 * artifacts, alive until the engine stops) and the message (one per request
 * or inbound delivery, freed when the message completes).  Foreign objects
 * that have their own free function (json_t, xmlDoc, ...) are tied to an
 * arena with a cleanup handler; handlers run in reverse order of
 * registration when the arena is destroyed.
 *
 * Allocation failure aborts the process (as h2o's allocator does): a
 * mediation engine that runs out of memory mid-message cannot answer
 * anything meaningful, and checking every allocation would hide the real
 * error paths. */
#ifndef CMI_CORE_ARENA_H
#define CMI_CORE_ARENA_H

#include <stdarg.h>
#include <stddef.h>

typedef struct cmi_arena cmi_arena_t;
typedef void (*cmi_cleanup_fn)(void *data);

/* first_block: bytes of the first block (0: a default of 4 KiB). */
cmi_arena_t *cmi_arena_create(size_t first_block);
/* Runs the cleanup handlers (last registered first), then frees every block. */
void cmi_arena_destroy(cmi_arena_t *arena);

/* Aligned for any type; never returns NULL. */
void *cmi_arena_alloc(cmi_arena_t *arena, size_t size);
void *cmi_arena_calloc(cmi_arena_t *arena, size_t count, size_t size);
void *cmi_arena_memdup(cmi_arena_t *arena, const void *src, size_t size);
/* NUL-terminated copies. */
char *cmi_arena_strdup(cmi_arena_t *arena, const char *s);
char *cmi_arena_strndup(cmi_arena_t *arena, const char *s, size_t n);
char *cmi_arena_sprintf(cmi_arena_t *arena, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *cmi_arena_vsprintf(cmi_arena_t *arena, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Growth of an arena-backed array: returns storage for at least count + 1
 * elements of elem bytes, copying the count existing ones when it moves.
 * *cap is updated (starts at initial, then doubles); old storage stays in
 * the arena until it goes. */
void *cmi_arena_grow(cmi_arena_t *arena, void *items, size_t count, size_t *cap, size_t elem, size_t initial);

/* Registers fn(data) to run when the arena is destroyed. */
void cmi_arena_cleanup_add(cmi_arena_t *arena, cmi_cleanup_fn fn, void *data);

/* Bytes handed out so far (for tests and statistics). */
size_t cmi_arena_used(const cmi_arena_t *arena);

/* Process-wide allocation helpers that abort on failure. */
void *cmi_xmalloc(size_t size);
void *cmi_xcalloc(size_t count, size_t size);
void *cmi_xrealloc(void *p, size_t size);
char *cmi_xstrdup(const char *s);

#endif
