#include "config.h"

#include "core/htab.h"

#include <stdint.h>
#include <string.h>

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void cmi_htab_init(cmi_htab_t *t, cmi_arena_t *arena)
{
    t->arena = arena;
    t->cap = 16;
    t->count = 0;
    t->slots = cmi_arena_calloc(arena, t->cap, sizeof(*t->slots));
}

static cmi_htab_slot_t *find_slot(cmi_htab_slot_t *slots, size_t cap, const char *key, size_t len)
{
    size_t i = (size_t)hash_bytes(key, len) & (cap - 1);
    for (;;) {
        cmi_htab_slot_t *s = &slots[i];
        if (s->key == NULL || (s->key_len == len && memcmp(s->key, key, len) == 0))
            return s;
        i = (i + 1) & (cap - 1);
    }
}

static void grow(cmi_htab_t *t)
{
    size_t cap = t->cap * 2;
    cmi_htab_slot_t *slots = cmi_arena_calloc(t->arena, cap, sizeof(*slots));
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].key != NULL)
            *find_slot(slots, cap, t->slots[i].key, t->slots[i].key_len) = t->slots[i];
    t->slots = slots;
    t->cap = cap;
}

void *cmi_htab_put(cmi_htab_t *t, const char *key, size_t key_len, void *value)
{
    if ((t->count + 1) * 4 > t->cap * 3)
        grow(t);
    cmi_htab_slot_t *s = find_slot(t->slots, t->cap, key, key_len);
    if (s->key != NULL)
        return s->value;
    s->key = key;
    s->key_len = key_len;
    s->value = value;
    t->count++;
    return NULL;
}

void *cmi_htab_get(const cmi_htab_t *t, const char *key, size_t key_len)
{
    if (t->slots == NULL)
        return NULL;
    cmi_htab_slot_t *s = find_slot(t->slots, t->cap, key, key_len);
    return s->key != NULL ? s->value : NULL;
}

void *cmi_htab_gets(const cmi_htab_t *t, const char *key)
{
    return cmi_htab_get(t, key, strlen(key));
}

int cmi_htab_next(const cmi_htab_t *t, size_t *iter, const cmi_htab_slot_t **slot)
{
    while (*iter < t->cap) {
        const cmi_htab_slot_t *s = &t->slots[(*iter)++];
        if (s->key != NULL) {
            *slot = s;
            return 1;
        }
    }
    return 0;
}
