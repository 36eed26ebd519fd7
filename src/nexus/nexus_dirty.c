/*
 * nexus/nexus_dirty.c - the dirty-segment log of a child that is away.
 *
 * What: one bit per segment (segment_size bytes of the nexus) for each child
 * that is not in sync: a set bit means "this child may lack a write to this
 * segment", so a returning child copies only those segments (partial
 * rebuild); a new child starts with every bit set (full rebuild).
 *
 * How it survives a restart: the maps are part of the membership record
 * (nexus_persist.c, as hex). Marking a bit that was clear bumps the nexus
 * version, and the write that caused it is not acknowledged until that
 * version is recorded; a segment that is already dirty costs nothing, so
 * only the first write to each segment during an absence waits. Bits are
 * cleared by the rebuild in memory only: the record may hold a superset,
 * which is safe (a segment copied twice), never a subset.
 *
 * Rejected: a log of written ranges (unbounded while a child is away), and
 * one shared map for all children (a child that left later would copy what
 * it already has).
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/nexus_internal.h"

static uint64_t
dirty_words(uint64_t nseg)
{
    return (nseg + 63) / 64;
}

uint64_t *
nexus_dirty_alloc(uint64_t nseg, bool full)
{
    uint64_t *map = calloc(dirty_words(nseg) ? dirty_words(nseg) : 1, sizeof(uint64_t));

    if (map != NULL && full) {
        for (uint64_t s = 0; s < nseg; s++) {
            map[s / 64] |= 1ull << (s % 64);
        }
    }
    return map;
}

/* Set the bits of [offset, offset+length); true if any was clear (the record must change). */
bool
nexus_dirty_mark(struct ioc_nexus *nx, uint64_t *map, uint64_t offset, uint64_t length)
{
    uint64_t first, last;
    bool changed = false;

    if (map == NULL) {
        return false;
    }
    first = offset / nx->segment_size;
    last = (length == 0 ? offset : offset + length - 1) / nx->segment_size;
    if (last >= nx->nseg) {
        last = nx->nseg - 1;
    }
    for (uint64_t s = first; s <= last; s++) {
        uint64_t bit = 1ull << (s % 64);
        if (!(map[s / 64] & bit)) {
            map[s / 64] |= bit;
            changed = true;
        }
    }
    return changed;
}

bool
nexus_dirty_test(const uint64_t *map, uint64_t seg)
{
    return (map[seg / 64] >> (seg % 64)) & 1;
}

void
nexus_dirty_clear(uint64_t *map, uint64_t seg)
{
    map[seg / 64] &= ~(1ull << (seg % 64));
}

uint64_t
nexus_dirty_count(const uint64_t *map, uint64_t nseg)
{
    uint64_t n = 0;

    for (uint64_t w = 0; w < dirty_words(nseg); w++) {
        n += (uint64_t)__builtin_popcountll(map[w]);
    }
    return n;
}

/* The first set bit at or after from, or -1. */
int64_t
nexus_dirty_next(const uint64_t *map, uint64_t nseg, uint64_t from)
{
    while (from < nseg) {
        uint64_t w = map[from / 64] >> (from % 64);
        if (w != 0) {
            uint64_t s = from + (uint64_t)__builtin_ctzll(w);
            return s < nseg ? (int64_t)s : -1;
        }
        from = (from / 64 + 1) * 64;
    }
    return -1;
}

/* Hex of the map, 16 digits per word, lowest word first. Caller frees. */
char *
nexus_dirty_encode(const uint64_t *map, uint64_t nseg)
{
    uint64_t words = dirty_words(nseg);
    char *s = malloc(words * 16 + 1);

    if (s == NULL) {
        return NULL;
    }
    for (uint64_t w = 0; w < words; w++) {
        snprintf(s + w * 16, 17, "%016llx", (unsigned long long)map[w]);
    }
    s[words * 16] = '\0';
    return s;
}

int
nexus_dirty_decode(const char *hex, uint64_t *map, uint64_t nseg)
{
    uint64_t words = dirty_words(nseg);

    if (strlen(hex) != words * 16) {
        return -EINVAL;
    }
    for (uint64_t w = 0; w < words; w++) {
        char buf[17];
        char *end;
        memcpy(buf, hex + w * 16, 16);
        buf[16] = '\0';
        map[w] = strtoull(buf, &end, 16);
        if (*end != '\0') {
            return -EINVAL;
        }
    }
    if (nseg % 64) {
        map[words - 1] &= (1ull << (nseg % 64)) - 1;
    }
    return 0;
}

/* dst |= src; true if dst gained a bit. */
bool
nexus_dirty_merge(const struct ioc_nexus *nx, uint64_t *dst, const uint64_t *src)
{
    bool changed = false;

    if (dst == NULL || src == NULL) {
        return false;
    }
    for (uint64_t w = 0; w < dirty_words(nx->nseg); w++) {
        changed |= (src[w] & ~dst[w]) != 0;
        dst[w] |= src[w];
    }
    return changed;
}

void
nexus_dirty_zero(const struct ioc_nexus *nx, uint64_t *map)
{
    if (map != NULL) {
        memset(map, 0, dirty_words(nx->nseg) * sizeof(uint64_t));
    }
}
