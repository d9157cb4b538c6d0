/* A string-keyed hash table (open addressing, linear probing) whose storage
 * comes from an arena.  Built while the configuration loads, then only read,
 * from any number of threads, with no lock. */
#ifndef CMI_CORE_HTAB_H
#define CMI_CORE_HTAB_H

#include <stddef.h>

#include "core/arena.h"

typedef struct {
    const char *key; /* NULL: empty slot */
    size_t key_len;
    void *value;
} cmi_htab_slot_t;

typedef struct {
    cmi_arena_t *arena;
    cmi_htab_slot_t *slots;
    size_t cap; /* power of two */
    size_t count;
} cmi_htab_t;

void cmi_htab_init(cmi_htab_t *t, cmi_arena_t *arena);
/* Inserts key -> value; the key is not copied.  Returns the existing value
 * (and leaves the table unchanged) when the key is already present. */
void *cmi_htab_put(cmi_htab_t *t, const char *key, size_t key_len, void *value);
void *cmi_htab_get(const cmi_htab_t *t, const char *key, size_t key_len);
void *cmi_htab_gets(const cmi_htab_t *t, const char *key);

/* Iteration: for (i = 0; cmi_htab_next(t, &i, &slot);) */
int cmi_htab_next(const cmi_htab_t *t, size_t *iter, const cmi_htab_slot_t **slot);

#endif
