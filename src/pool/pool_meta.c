/*
 * pool/pool_meta.c - encode, decode and validate pool metadata (no IO here).
 *
 * What: the pure half of the pool. It computes the layout of a pool, builds
 * the 4 KiB page images a commit writes, and turns the bytes of a metadata
 * region back into a checked in-memory image. The daemon, the offline checker
 * and the fuzzer all call ioc_pool_meta_decode(), so "the checker says clean"
 * and "the daemon imports it" are the same statement.
 *
 * How crash safety reads back: every metadata page has two slots. A commit
 * with sequence number N+1 writes each dirty page into the slot that does not
 * hold its current version, flushes, then writes the superblock slot (N+1)&1
 * and flushes again. Decoding picks the valid superblock with the highest
 * seq, then for every page the valid slot (CRC, pool uuid, page number, type)
 * with the highest seq not above the superblock's. A commit torn anywhere
 * before its superblock landed is therefore invisible, and one whose
 * superblock was torn falls back to the previous commit, whose pages were
 * never overwritten (a commit only writes slots not in force).
 *
 * Validation is total: any byte pattern either decodes into an image whose
 * invariants the daemon relies on (every owner exists, every logical cluster
 * is inside its volume and held at most once, parents are snapshots without
 * cycles), or is refused with a message naming the structure. Duplicate
 * detection sorts (owner, logical) pairs instead of building per-volume maps,
 * so a hostile volume size cannot make the reader allocate gigabytes.
 *
 * Not here: allocation policy, IO, in-memory forward maps (pool.c).
 *
 * Rejected: a journal (write-ahead log) of metadata changes. It writes less
 * per commit, but needs replay code and a second format to validate; A/B
 * page slots reuse one page format and make "pick the newest valid slot" the
 * whole recovery. CRC: zlib's CRC-32 (Debian ships it everywhere) rather than
 * a hand-written CRC32C; the format records a version if we ever switch.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

#include "pool/pool_meta.h"

/* Volumes may be larger than the pool (thin), but their map must stay sane. */
#define POOL_VOL_MAX_CLUSTERS (1u << 24)

uint32_t
ioc_pool_crc(const void *buf, size_t len)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)len);
}

/* CRC of a 4 KiB slot whose crc field sits at crc_off, computed as if it were zero. */
static uint32_t
pool_slot_crc(const uint8_t *slot, size_t crc_off)
{
    static const uint8_t zero[4];
    uLong c = crc32(0L, Z_NULL, 0);

    c = crc32(c, slot, (uInt)crc_off);
    c = crc32(c, zero, 4);
    c = crc32(c, slot + crc_off + 4, (uInt)(IOC_POOL_PAGE_SIZE - crc_off - 4));
    return (uint32_t)c;
}

/* ---- names and attributes ---- */

int
ioc_pool_name_check(const char *what, const char *name, struct ioc_err *err)
{
    size_t len = name != NULL ? strnlen(name, IOC_POOL_NAME_MAX) : 0;

    if (len == 0 || len >= IOC_POOL_NAME_MAX) {
        return ioc_err_set(err, -EINVAL, "%s: must be 1 to %u characters", what,
                           IOC_POOL_NAME_MAX - 1);
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-')) {
            return ioc_err_set(err, -EINVAL,
                               "%s: '%s' has character '%c'; use letters, digits and ._:-", what,
                               name, c);
        }
    }
    return 0;
}

int
ioc_pool_attr_check(const uint8_t *attrs)
{
    size_t pos = 0;

    while (pos < IOC_POOL_ATTR_AREA && attrs[pos] != 0) {
        for (int part = 0; part < 2; part++) {
            const void *nul = memchr(attrs + pos, 0, IOC_POOL_ATTR_AREA - pos);
            if (nul == NULL) {
                return -EINVAL;
            }
            pos = (size_t)((const uint8_t *)nul - attrs) + 1;
        }
    }
    return pos < IOC_POOL_ATTR_AREA ? 0 : -EINVAL;
}

/* Offset of key's entry, or -1. The area must have passed ioc_pool_attr_check(). */
static long
pool_attr_find(const uint8_t *attrs, const char *key, size_t *entry_len)
{
    size_t pos = 0;

    while (pos < IOC_POOL_ATTR_AREA && attrs[pos] != 0) {
        const char *k = (const char *)attrs + pos;
        const char *v = k + strlen(k) + 1;
        size_t len = (size_t)(v + strlen(v) + 1 - k);
        if (strcmp(k, key) == 0) {
            *entry_len = len;
            return (long)pos;
        }
        pos += len;
    }
    return -1;
}

const char *
ioc_pool_attr_get(const uint8_t *attrs, const char *key)
{
    size_t len;
    long pos = pool_attr_find(attrs, key, &len);

    return pos < 0 ? NULL : (const char *)attrs + pos + strlen(key) + 1;
}

static size_t
pool_attr_used(const uint8_t *attrs)
{
    size_t pos = 0;

    while (pos < IOC_POOL_ATTR_AREA && attrs[pos] != 0) {
        pos += strlen((const char *)attrs + pos) + 1;
        pos += strlen((const char *)attrs + pos) + 1;
    }
    return pos;
}

int
ioc_pool_attr_set(uint8_t *attrs, const char *key, const char *value)
{
    size_t klen = strlen(key), vlen = value != NULL ? strlen(value) : 0, len, used;
    long pos;

    if (klen == 0 || klen > 63) {
        return -EINVAL;
    }
    pos = pool_attr_find(attrs, key, &len);
    used = pool_attr_used(attrs);
    if (value != NULL && used - (pos >= 0 ? len : 0) + klen + vlen + 2 + 1 > IOC_POOL_ATTR_AREA) {
        return -ENOSPC;
    }
    if (pos >= 0) {
        memmove(attrs + pos, attrs + pos + len, used - (size_t)pos - len);
        used -= len;
        memset(attrs + used, 0, IOC_POOL_ATTR_AREA - used);
    }
    if (value != NULL) {
        memcpy(attrs + used, key, klen + 1);
        memcpy(attrs + used + klen + 1, value, vlen + 1);
    }
    return 0;
}

/* ---- layout ---- */

int
ioc_pool_layout_compute(uint64_t size, uint32_t cluster_size, struct ioc_pool_layout *out,
                        struct ioc_err *err)
{
    uint64_t n, pages, data_off;

    if (cluster_size < IOC_POOL_CLUSTER_MIN || cluster_size > IOC_POOL_CLUSTER_MAX ||
        (cluster_size & (cluster_size - 1)) != 0) {
        return ioc_err_set(err, -EINVAL,
                           "cluster_size: must be a power of two from 64KiB to 64MiB, got %u",
                           cluster_size);
    }
    out->cluster_size = cluster_size;
    out->vt_pages = (uint32_t)((IOC_POOL_MAX_VOLUMES + IOC_POOL_VT_PER_PAGE - 1) /
                               IOC_POOL_VT_PER_PAGE);
    n = IOC_MIN(size / cluster_size, (uint64_t)UINT32_MAX);
    for (int round = 0; round < 2; round++) {
        out->ct_pages = (uint32_t)((n + IOC_POOL_CT_PER_PAGE - 1) / IOC_POOL_CT_PER_PAGE);
        pages = (uint64_t)out->vt_pages + IOC_MAX(out->ct_pages, 1u);
        data_off = IOC_POOL_META_OFFSET + pages * 2 * IOC_POOL_PAGE_SIZE;
        data_off = (data_off + cluster_size - 1) / cluster_size * cluster_size;
        n = size > data_off ? IOC_MIN((size - data_off) / cluster_size, n) : 0;
    }
    if (n == 0) {
        return ioc_err_set(err, -ENOSPC,
                           "size: %llu bytes cannot hold the metadata and one %u-byte cluster "
                           "(need at least %llu)",
                           (unsigned long long)size, cluster_size,
                           (unsigned long long)(data_off + cluster_size));
    }
    out->ct_pages = (uint32_t)((n + IOC_POOL_CT_PER_PAGE - 1) / IOC_POOL_CT_PER_PAGE);
    out->n_clusters = (uint32_t)n;
    out->data_offset = data_off;
    return 0;
}

/* ---- in-memory image ---- */

static struct ioc_pool_meta *
pool_meta_alloc(const struct ioc_pool_sb *sb)
{
    struct ioc_pool_meta *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    m->sb = *sb;
    m->n_pages = sb->vt_pages + sb->ct_pages;
    m->vt = calloc((size_t)sb->vt_pages * IOC_POOL_VT_PER_PAGE, sizeof(*m->vt));
    m->ct = calloc((size_t)sb->ct_pages * IOC_POOL_CT_PER_PAGE, sizeof(*m->ct));
    m->page_slot = calloc(m->n_pages, 1);
    m->page_seq = calloc(m->n_pages, sizeof(*m->page_seq));
    m->page_uncommitted = calloc(m->n_pages, 1);
    if (m->vt == NULL || m->ct == NULL || m->page_slot == NULL || m->page_seq == NULL ||
        m->page_uncommitted == NULL) {
        ioc_pool_meta_free(m);
        return NULL;
    }
    return m;
}

void
ioc_pool_meta_free(struct ioc_pool_meta *m)
{
    if (m == NULL) {
        return;
    }
    free(m->vt);
    free(m->ct);
    free(m->page_slot);
    free(m->page_seq);
    free(m->page_uncommitted);
    free(m);
}

int
ioc_pool_meta_format(const char *name, uint64_t size, uint32_t cluster_size,
                     struct ioc_pool_meta **out, struct ioc_err *err)
{
    struct ioc_pool_layout l;
    struct ioc_pool_sb sb;
    struct ioc_pool_meta *m;
    int rc;

    rc = ioc_pool_name_check("name", name, err);
    if (rc == 0) {
        rc = ioc_pool_layout_compute(size, cluster_size, &l, err);
    }
    if (rc < 0) {
        return rc;
    }
    memset(&sb, 0, sizeof(sb));
    sb.magic = IOC_POOL_SB_MAGIC;
    sb.version = IOC_POOL_VERSION;
    sb.seq = 1;
    if (getrandom(sb.uuid, sizeof(sb.uuid), 0) != (ssize_t)sizeof(sb.uuid)) {
        return ioc_err_set(err, -EIO, "cannot get random bytes for the pool uuid");
    }
    snprintf(sb.name, sizeof(sb.name), "%s", name);
    sb.pool_size = size;
    sb.cluster_size = cluster_size;
    sb.page_size = IOC_POOL_PAGE_SIZE;
    sb.max_volumes = IOC_POOL_MAX_VOLUMES;
    sb.vt_pages = l.vt_pages;
    sb.ct_pages = l.ct_pages;
    sb.n_clusters = l.n_clusters;
    sb.data_offset = l.data_offset;
    m = pool_meta_alloc(&sb);
    if (m == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    for (uint32_t p = 0; p < m->n_pages; p++) {
        m->page_seq[p] = 1;
    }
    *out = m;
    return 0;
}

/* ---- page images ---- */

void
ioc_pool_meta_page_build(const struct ioc_pool_meta *m, uint32_t p, uint64_t seq, void *buf)
{
    struct ioc_pool_page_hdr *h = buf;
    uint8_t *payload = (uint8_t *)buf + sizeof(*h);

    memset(buf, 0, IOC_POOL_PAGE_SIZE);
    h->magic = IOC_POOL_PAGE_MAGIC;
    h->seq = seq;
    h->page_no = p;
    memcpy(h->uuid, m->sb.uuid, sizeof(h->uuid));
    if (p < m->sb.vt_pages) {
        h->type = IOC_POOL_PAGE_VT;
        memcpy(payload, &m->vt[(size_t)p * IOC_POOL_VT_PER_PAGE],
               IOC_POOL_VT_PER_PAGE * sizeof(struct ioc_pool_vol_disk));
    } else {
        h->type = IOC_POOL_PAGE_CT;
        memcpy(payload, &m->ct[(size_t)(p - m->sb.vt_pages) * IOC_POOL_CT_PER_PAGE],
               IOC_POOL_CT_PER_PAGE * sizeof(struct ioc_pool_ct_entry));
    }
    h->crc = pool_slot_crc(buf, offsetof(struct ioc_pool_page_hdr, crc));
}

void
ioc_pool_meta_sb_build(const struct ioc_pool_meta *m, void *buf)
{
    struct ioc_pool_sb *sb = buf;

    memcpy(sb, &m->sb, sizeof(*sb));
    sb->crc = pool_slot_crc(buf, offsetof(struct ioc_pool_sb, crc));
}

/* ---- superblock ---- */

/* Why slot is not a valid superblock, or NULL if it is. */
static const char *
pool_sb_invalid(const uint8_t *slot)
{
    struct ioc_pool_sb sb;
    struct ioc_pool_layout l;

    memcpy(&sb, slot, sizeof(sb));
    if (sb.magic != IOC_POOL_SB_MAGIC) {
        return "bad magic (not a pool)";
    }
    if (sb.crc != pool_slot_crc(slot, offsetof(struct ioc_pool_sb, crc))) {
        return "CRC mismatch (torn or corrupt)";
    }
    if (sb.version != IOC_POOL_VERSION) {
        return "unsupported format version";
    }
    if (sb.page_size != IOC_POOL_PAGE_SIZE || sb.max_volumes != IOC_POOL_MAX_VOLUMES) {
        return "unsupported page size or volume table size";
    }
    if (memchr(sb.name, 0, sizeof(sb.name)) == NULL ||
        ioc_pool_name_check("name", sb.name, NULL) < 0) {
        return "invalid pool name";
    }
    if (ioc_pool_layout_compute(sb.pool_size, sb.cluster_size, &l, NULL) < 0 ||
        l.vt_pages != sb.vt_pages || l.ct_pages != sb.ct_pages ||
        l.n_clusters != sb.n_clusters || l.data_offset != sb.data_offset) {
        return "layout fields disagree with pool size and cluster size";
    }
    if (sb.seq == 0) {
        return "sequence number 0";
    }
    return NULL;
}

int
ioc_pool_sb_pick(const void *buf, uint64_t dev_size, struct ioc_pool_sb *sb, struct ioc_err *err)
{
    const uint8_t *slots = buf;
    const char *why[2];
    struct ioc_pool_sb cand[2];
    int best = -1;

    for (int s = 0; s < 2; s++) {
        why[s] = pool_sb_invalid(slots + (size_t)s * IOC_POOL_PAGE_SIZE);
        memcpy(&cand[s], slots + (size_t)s * IOC_POOL_PAGE_SIZE, sizeof(cand[s]));
        if (why[s] == NULL && (best < 0 || cand[s].seq > cand[best].seq)) {
            best = s;
        }
    }
    if (best < 0) {
        return ioc_err_set(err, -EINVAL, "no valid superblock: slot 0: %s; slot 1: %s", why[0],
                           why[1]);
    }
    *sb = cand[best];
    if (sb->pool_size > dev_size) {
        return ioc_err_set(err, -ERANGE,
                           "pool '%s' is %llu bytes but the device has only %llu (truncated?)",
                           sb->name, (unsigned long long)sb->pool_size,
                           (unsigned long long)dev_size);
    }
    return 0;
}

uint64_t
ioc_pool_meta_region_size(const struct ioc_pool_sb *sb)
{
    return ioc_pool_page_offset(sb->vt_pages + sb->ct_pages, 0);
}

/* ---- decoding ---- */

struct pool_decode {
    const struct ioc_pool_sb *sb;
    ioc_pool_problem_cb cb;
    void *cb_arg;
    struct ioc_err *err;
    unsigned problems;
};

static void __attribute__((format(printf, 2, 3)))
decode_problem(struct pool_decode *d, const char *fmt, ...)
{
    char msg[IOC_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (d->cb != NULL) {
        d->cb(d->cb_arg, msg);
    }
    ioc_err_set(d->err, -EINVAL, "pool '%s': %s", d->sb->name, msg);
    d->problems++;
}

static const char *
page_slot_invalid(const struct pool_decode *d, const uint8_t *slot, uint32_t p, uint32_t type)
{
    const struct ioc_pool_page_hdr *h = (const void *)slot;

    if (h->magic != IOC_POOL_PAGE_MAGIC) {
        return "bad magic";
    }
    if (h->crc != pool_slot_crc(slot, offsetof(struct ioc_pool_page_hdr, crc))) {
        return "CRC mismatch";
    }
    if (memcmp(h->uuid, d->sb->uuid, sizeof(h->uuid)) != 0) {
        return "belongs to another pool";
    }
    if (h->page_no != p || h->type != type) {
        return "wrong page number or type";
    }
    if (h->seq > d->sb->seq || h->seq == 0) {
        return "uncommitted (newer than the superblock)";
    }
    return NULL;
}

/*
 * Whether a slot carries a write of a commit that never reached its superblock.
 * The header alone decides (a torn write may fail its CRC): this page's magic,
 * number and pool, and a seq above the superblock's.
 */
static bool
slot_uncommitted(const struct pool_decode *d, const uint8_t *slot, uint32_t p)
{
    const struct ioc_pool_page_hdr *h = (const void *)slot;

    return h->magic == IOC_POOL_PAGE_MAGIC && h->page_no == p &&
           memcmp(h->uuid, d->sb->uuid, sizeof(h->uuid)) == 0 && h->seq > d->sb->seq;
}

/* Choose the slot of page p; copies its payload into the image. */
static void
decode_page(struct pool_decode *d, struct ioc_pool_meta *m, const uint8_t *buf, uint32_t p)
{
    uint32_t type = p < m->sb.vt_pages ? IOC_POOL_PAGE_VT : IOC_POOL_PAGE_CT;
    const char *why[2];
    int best = -1;
    uint64_t best_seq = 0;
    uint8_t *dst;
    size_t n;

    for (unsigned s = 0; s < 2; s++) {
        const uint8_t *slot = buf + ioc_pool_page_offset(p, s);
        why[s] = page_slot_invalid(d, slot, p, type);
        if (why[s] == NULL && ((const struct ioc_pool_page_hdr *)(const void *)slot)->seq >=
                                  best_seq) {
            best = (int)s;
            best_seq = ((const struct ioc_pool_page_hdr *)(const void *)slot)->seq;
        }
    }
    for (unsigned s = 0; s < 2; s++) {
        /* A slot that claims a committed seq newer than the one chosen but fails its CRC is
         * a committed page damaged after the fact: falling back would mix commits. */
        const struct ioc_pool_page_hdr *h = (const void *)(buf + ioc_pool_page_offset(p, s));
        if (why[s] != NULL && h->magic == IOC_POOL_PAGE_MAGIC && h->page_no == p &&
            memcmp(h->uuid, d->sb->uuid, sizeof(h->uuid)) == 0 && h->seq <= d->sb->seq &&
            h->seq > best_seq) {
            decode_problem(d, "metadata page %u slot %u: committed version (seq %llu) is "
                           "corrupt: %s", p, s, (unsigned long long)h->seq, why[s]);
            return;
        }
    }
    if (best < 0) {
        decode_problem(d, "metadata page %u (%s): no valid slot: slot 0: %s; slot 1: %s", p,
                       type == IOC_POOL_PAGE_VT ? "volume table" : "cluster table", why[0],
                       why[1]);
        return;
    }
    m->page_slot[p] = (uint8_t)best;
    m->page_seq[p] = best_seq;
    m->page_uncommitted[p] = slot_uncommitted(d, buf + ioc_pool_page_offset(p, 1u - (unsigned)best),
                                              p);
    if (type == IOC_POOL_PAGE_VT) {
        dst = (uint8_t *)&m->vt[(size_t)p * IOC_POOL_VT_PER_PAGE];
        n = IOC_POOL_VT_PER_PAGE * sizeof(struct ioc_pool_vol_disk);
    } else {
        dst = (uint8_t *)&m->ct[(size_t)(p - m->sb.vt_pages) * IOC_POOL_CT_PER_PAGE];
        n = IOC_POOL_CT_PER_PAGE * sizeof(struct ioc_pool_ct_entry);
    }
    memcpy(dst, buf + ioc_pool_page_offset(p, (unsigned)best) + sizeof(struct ioc_pool_page_hdr),
           n);
}

/* Check one volume entry on its own; returns false if it is unusable. */
static bool
decode_vol_entry(struct pool_decode *d, const struct ioc_pool_vol_disk *v, uint32_t i)
{
    if (v->id != i + 1) {
        decode_problem(d, "volume slot %u: id %u, expected %u", i, v->id, i + 1);
        return false;
    }
    if (memchr(v->name, 0, sizeof(v->name)) == NULL ||
        ioc_pool_name_check("name", v->name, NULL) < 0) {
        decode_problem(d, "volume %u: invalid name", v->id);
        return false;
    }
    if ((v->flags & ~IOC_VOL_FLAGS_KNOWN) != 0 ||
        ((v->flags & IOC_VOL_SNAPSHOT) && !(v->flags & IOC_VOL_READ_ONLY))) {
        decode_problem(d, "volume %u '%s': invalid flags 0x%x", v->id, v->name, v->flags);
        return false;
    }
    if (v->size == 0 || v->size % 512 != 0 ||
        ioc_pool_vol_clusters(v->size, d->sb->cluster_size) > POOL_VOL_MAX_CLUSTERS) {
        decode_problem(d, "volume %u '%s': invalid size %llu", v->id, v->name,
                       (unsigned long long)v->size);
        return false;
    }
    if (ioc_pool_attr_check(v->attrs) < 0) {
        decode_problem(d, "volume %u '%s': malformed attributes", v->id, v->name);
        return false;
    }
    return true;
}

/* Parents must exist, be snapshots, and form no cycle; names must be unique. */
static void
decode_vol_links(struct pool_decode *d, struct ioc_pool_meta *m, const bool *ok)
{
    uint32_t nv = m->sb.max_volumes;

    for (uint32_t i = 0; i < nv; i++) {
        const struct ioc_pool_vol_disk *v = &m->vt[i];
        uint32_t p = v->parent, steps = 0;
        if (!ok[i]) {
            continue;
        }
        for (uint32_t j = i + 1; j < nv; j++) {
            if (ok[j] && strcmp(v->name, m->vt[j].name) == 0) {
                decode_problem(d, "volumes %u and %u are both named '%s'", v->id, j + 1, v->name);
            }
        }
        if (p != 0 && (p > nv || !ok[p - 1] || !(m->vt[p - 1].flags & IOC_VOL_SNAPSHOT))) {
            decode_problem(d, "volume %u '%s': parent %u is not a snapshot in this pool", v->id,
                           v->name, p);
            continue;
        }
        while (p != 0 && p <= nv && ok[p - 1] && steps++ <= nv) {
            p = m->vt[p - 1].parent;
        }
        if (steps > nv) {
            decode_problem(d, "volume %u '%s': its parents form a cycle", v->id, v->name);
        }
    }
}

struct ct_ref {
    uint32_t owner, lcluster, cluster;
};

static int
ct_ref_cmp(const void *a, const void *b)
{
    const struct ct_ref *x = a, *y = b;

    if (x->owner != y->owner) {
        return x->owner < y->owner ? -1 : 1;
    }
    if (x->lcluster != y->lcluster) {
        return x->lcluster < y->lcluster ? -1 : 1;
    }
    return x->cluster < y->cluster ? -1 : (x->cluster > y->cluster);
}

/* Every owned cluster names a live volume and a logical cluster inside it, once. */
static int
decode_clusters(struct pool_decode *d, struct ioc_pool_meta *m, const bool *ok)
{
    struct ct_ref *refs = malloc(((size_t)m->sb.n_clusters + 1) * sizeof(*refs));
    size_t nrefs = 0;

    if (refs == NULL) {
        return -ENOMEM;
    }
    for (uint32_t c = 0; c < m->sb.n_clusters; c++) {
        const struct ioc_pool_ct_entry *e = &m->ct[c];
        if (e->owner == 0) {
            if (e->lcluster != 0) {
                decode_problem(d, "cluster %u: free but names logical cluster %u", c, e->lcluster);
            }
            continue;
        }
        if (e->owner > m->sb.max_volumes || !ok[e->owner - 1]) {
            decode_problem(d, "cluster %u: leaked (owner volume %u does not exist)", c, e->owner);
            continue;
        }
        if (e->lcluster >= ioc_pool_vol_clusters(m->vt[e->owner - 1].size, m->sb.cluster_size)) {
            decode_problem(d, "cluster %u: volume %u '%s' cluster %u is past its end", c,
                           e->owner, m->vt[e->owner - 1].name, e->lcluster);
            continue;
        }
        refs[nrefs++] = (struct ct_ref){e->owner, e->lcluster, c};
    }
    qsort(refs, nrefs, sizeof(*refs), ct_ref_cmp);
    for (size_t i = 1; i < nrefs; i++) {
        if (refs[i].owner == refs[i - 1].owner && refs[i].lcluster == refs[i - 1].lcluster) {
            decode_problem(d, "clusters %u and %u both hold volume %u '%s' cluster %u (doubly used)",
                           refs[i - 1].cluster, refs[i].cluster, refs[i].owner,
                           m->vt[refs[i].owner - 1].name, refs[i].lcluster);
        }
    }
    free(refs);
    /* Entries past n_clusters in the last page must be empty. */
    for (size_t c = m->sb.n_clusters; c < (size_t)m->sb.ct_pages * IOC_POOL_CT_PER_PAGE; c++) {
        if (m->ct[c].owner != 0 || m->ct[c].lcluster != 0) {
            decode_problem(d, "cluster table entry %zu is past the last cluster but not empty", c);
            break;
        }
    }
    return 0;
}

int
ioc_pool_meta_decode(const struct ioc_pool_sb *sb, const void *buf, uint64_t len,
                     bool keep_on_error, ioc_pool_problem_cb problem_cb, void *cb_arg,
                     struct ioc_pool_meta **out, struct ioc_err *err)
{
    struct pool_decode d = {sb, problem_cb, cb_arg, err, 0};
    struct ioc_pool_meta *m;
    bool *ok;
    int rc;

    *out = NULL;
    if (len < ioc_pool_meta_region_size(sb)) {
        return ioc_err_set(err, -EINVAL, "pool '%s': metadata truncated: %llu of %llu bytes",
                           sb->name, (unsigned long long)len,
                           (unsigned long long)ioc_pool_meta_region_size(sb));
    }
    m = pool_meta_alloc(sb);
    ok = calloc(sb->max_volumes, sizeof(*ok));
    if (m == NULL || ok == NULL) {
        free(ok);
        ioc_pool_meta_free(m);
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    for (uint32_t p = 0; p < m->n_pages; p++) {
        decode_page(&d, m, buf, p);
    }
    for (uint32_t i = 0; i < sb->max_volumes; i++) {
        ok[i] = m->vt[i].id != 0 && decode_vol_entry(&d, &m->vt[i], i);
    }
    decode_vol_links(&d, m, ok);
    rc = decode_clusters(&d, m, ok);
    free(ok);
    if (rc < 0) {
        ioc_pool_meta_free(m);
        return ioc_err_set(err, rc, "out of memory");
    }
    if (d.problems > 0 && !keep_on_error) {
        ioc_pool_meta_free(m);
        return -EINVAL;
    }
    *out = m;
    return d.problems > 0 ? -EINVAL : 0;
}
