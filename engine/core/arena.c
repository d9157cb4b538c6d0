#include "config.h"

#include "core/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define ARENA_ALIGN alignof(max_align_t)
#define ARENA_DEFAULT_BLOCK 4096u

typedef struct arena_block {
    SLIST_ENTRY(arena_block) link;
    size_t size; /* usable bytes after the header */
} arena_block_t;

typedef struct arena_cleanup {
    SLIST_ENTRY(arena_cleanup) link;
    cmi_cleanup_fn fn;
    void *data;
} arena_cleanup_t;

struct cmi_arena {
    SLIST_HEAD(, arena_block) blocks; /* current block first */
    char *cur;                        /* next free byte in the current block */
    char *end;                        /* end of the current block */
    size_t block_size;                /* size of the next regular block */
    size_t used;
    SLIST_HEAD(, arena_cleanup) cleanups; /* last registered first */
};

static void oom(size_t size)
{
    fprintf(stderr, "cmi: out of memory allocating %zu bytes\n", size);
    abort();
}

void *cmi_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *cmi_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    return p;
}

void *cmi_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
        oom(size);
    return q;
}

char *cmi_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(cmi_xmalloc(n), s, n);
}

static size_t align_up(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
}

static size_t header_size(void)
{
    return align_up(sizeof(arena_block_t));
}

cmi_arena_t *cmi_arena_create(size_t first_block)
{
    size_t size = first_block ? first_block : ARENA_DEFAULT_BLOCK;
    size_t hdr = header_size(), self = align_up(sizeof(cmi_arena_t));
    if (size < hdr + self + 256)
        size = hdr + self + 256;
    /* The arena lives at the start of its own first block: one malloc for a
     * message that fits in one block. */
    arena_block_t *b = cmi_xmalloc(size);
    b->size = size - hdr;
    cmi_arena_t *a = (cmi_arena_t *)((char *)b + hdr);
    SLIST_INIT(&a->blocks);
    SLIST_INSERT_HEAD(&a->blocks, b, link);
    a->cur = (char *)a + self;
    a->end = (char *)b + size;
    a->block_size = size < ARENA_DEFAULT_BLOCK ? ARENA_DEFAULT_BLOCK : size;
    a->used = 0;
    SLIST_INIT(&a->cleanups);
    return a;
}

void cmi_arena_destroy(cmi_arena_t *a)
{
    if (a == NULL)
        return;
    arena_cleanup_t *c = SLIST_FIRST(&a->cleanups);
    SLIST_INIT(&a->cleanups); /* detached while they run */
    for (; c != NULL; c = SLIST_NEXT(c, link))
        c->fn(c->data);
    /* The arena itself sits in the last block of the list (the first one
     * allocated): the next link is read before its block goes. */
    for (arena_block_t *b = SLIST_FIRST(&a->blocks), *next; b != NULL; b = next) {
        next = SLIST_NEXT(b, link);
        free(b);
    }
}

static void *alloc_slow(cmi_arena_t *a, size_t size)
{
    size_t hdr = header_size();
    if (size > a->block_size / 4) {
        /* A large allocation gets a block of its own, linked behind the
         * current one so the current block keeps serving small requests. */
        arena_block_t *big = cmi_xmalloc(hdr + size);
        big->size = size;
        SLIST_INSERT_AFTER(SLIST_FIRST(&a->blocks), big, link);
        return (char *)big + hdr;
    }
    if (a->block_size < 64 * 1024)
        a->block_size *= 2;
    arena_block_t *b = cmi_xmalloc(a->block_size);
    b->size = a->block_size - hdr;
    SLIST_INSERT_HEAD(&a->blocks, b, link);
    a->cur = (char *)b + hdr + size;
    a->end = (char *)b + a->block_size;
    return (char *)b + hdr;
}

void *cmi_arena_alloc(cmi_arena_t *a, size_t size)
{
    size = align_up(size ? size : 1);
    a->used += size;
    if ((size_t)(a->end - a->cur) >= size) {
        void *p = a->cur;
        a->cur += size;
        return p;
    }
    return alloc_slow(a, size);
}

void *cmi_arena_calloc(cmi_arena_t *a, size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        oom(SIZE_MAX);
    void *p = cmi_arena_alloc(a, count * size);
    memset(p, 0, count * size);
    return p;
}

void *cmi_arena_memdup(cmi_arena_t *a, const void *src, size_t size)
{
    void *p = cmi_arena_alloc(a, size);
    if (size)
        memcpy(p, src, size);
    return p;
}

char *cmi_arena_strndup(cmi_arena_t *a, const char *s, size_t n)
{
    char *p = cmi_arena_alloc(a, n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *cmi_arena_strdup(cmi_arena_t *a, const char *s)
{
    return s ? cmi_arena_strndup(a, s, strlen(s)) : NULL;
}

char *cmi_arena_vsprintf(cmi_arena_t *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return cmi_arena_strdup(a, "");
    char *p = cmi_arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *cmi_arena_sprintf(cmi_arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = cmi_arena_vsprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

void *cmi_arena_grow(cmi_arena_t *a, void *items, size_t count, size_t *cap, size_t elem, size_t initial)
{
    if (items != NULL && count < *cap)
        return items;
    size_t n = *cap ? *cap * 2 : initial;
    void *grown = cmi_arena_alloc(a, n * elem);
    if (count)
        memcpy(grown, items, count * elem);
    *cap = n;
    return grown;
}

void cmi_arena_cleanup_add(cmi_arena_t *a, cmi_cleanup_fn fn, void *data)
{
    arena_cleanup_t *c = cmi_arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->data = data;
    SLIST_INSERT_HEAD(&a->cleanups, c, link);
}

size_t cmi_arena_used(const cmi_arena_t *a)
{
    return a->used;
}
