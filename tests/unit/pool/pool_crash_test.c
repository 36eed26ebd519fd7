/*
 * Crash safety of pools, proven by enumeration (docs/pool-format.md,
 * "Crash testing").
 *
 * A pool lives on a crash bdev (src/bdev/crash) over a malloc bdev. A base
 * state is built and flushed; then every sequence of up to 3 operations out
 * of create, delete, resize, snapshot, clone, first write to a cluster,
 * unmap and flush is run. Before each write or flush reaches the crash bdev
 * its hook enumerates crash images (durable image + subsets of the pending
 * writes, reordered, torn at 512-byte boundaries) and checks each one:
 *   - the superblock is found and the metadata decodes with no problem at
 *     all (the decoder is the one import and `iocctl pool check` use);
 *   - every volume the model knows to exist exists, with an allowed size,
 *     and every volume known gone is gone;
 *   - every block the model knows to be durable (written and then covered
 *     by a completed FLUSH or control operation) reads back, through the
 *     decoded cluster table and parent chain, with its expected content;
 *     snapshot blocks are always durable: snapshot contents never change.
 * A sample of the images is also imported for real (ioc_pool_import on a
 * malloc bdev holding the image) and exported again.
 *
 * The second test injects IO errors: for each operation, the N-th metadata
 * IO fails for N = 1, 2, ... until the operation completes; the failing
 * operation must return an error, other volumes keep serving, the pool
 * commits cleanly afterwards, re-imports, and every crash state met on the
 * way (the hook stays on) is consistent.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bdev/bdev_module.h"
#include "bdev/crash/bdev_crash.h"
#include "bdev/malloc/bdev_malloc.h"
#include "core/reactor.h"
#include "pool/pool.h"
#include "pool/pool_meta.h"
#include "tests/unit/util/ut_bdev.h"

#define CS (64u * 1024)
#define POOL_SIZE (2560u * 1024)
#define BLK 4096u
#define BPC (CS / BLK)
#define VOL_CL 4u
#define VOL_BLKS (VOL_CL * BPC)
#define MAX_MVOLS 16
#define MAX_SAMPLES 4
#define SAMPLE_EVERY 151

static struct ioc_reactor *g_r;

/* ---- async helpers ---- */

#define OP(call)                                  \
    ({                                            \
        struct ut_op res_ = {0};              \
        struct ioc_err err_ = {0};                \
        struct ioc_err *err = &err_;              \
        void *cb_arg = &res_;                     \
        ioc_pool_cb cb = ut_op_done;                 \
        (void)err;                                \
        (void)cb;                                 \
        (void)cb_arg;                             \
        ut_op_wait(g_r, (call), &res_);                   \
    })

static int
vio(const char *bdev_name, enum ioc_io_type type, uint64_t off, uint64_t len, void *buf,
    uint32_t flags)
{
    return ut_bdev_rw(g_r, bdev_name, type, off, len, buf, flags);
}

static void
blk_fill(uint8_t *buf, size_t len, uint64_t val)
{
    for (size_t i = 0; i < len; i += 8) {
        memcpy(buf + i, &val, 8);
    }
}

static int
write_blocks(const char *bdev, uint32_t blk, uint32_t n, uint64_t base_val, uint32_t flags)
{
    uint8_t *buf = malloc((size_t)n * BLK);
    int rc;

    for (uint32_t i = 0; i < n; i++) {
        blk_fill(buf + (size_t)i * BLK, BLK, base_val == 0 ? 0 : base_val + i);
    }
    rc = vio(bdev, IOC_IO_WRITE, (uint64_t)blk * BLK, (uint64_t)n * BLK, buf, flags);
    free(buf);
    return rc;
}

/* ---- the model: what each crash image must show ---- */

enum mexist { M_NO, M_YES, M_MAYBE };

struct mvol {
    char name[16];
    enum mexist exist;
    bool snapshot;
    uint32_t ncl_a, ncl_b;     /* allowed sizes in clusters */
    uint64_t val[VOL_BLKS];    /* latest content of each 4 KiB block (0: zeroes) */
    bool stable[VOL_BLKS];     /* durable: must read back as val */
};

static struct {
    struct mvol v[MAX_MVOLS];
    int n;
} g_m;

static struct mvol *
m_find(const char *name)
{
    for (int i = 0; i < g_m.n; i++) {
        if (strcmp(g_m.v[i].name, name) == 0) {
            return &g_m.v[i];
        }
    }
    return NULL;
}

static struct mvol *
m_add(const char *name, bool snapshot, uint32_t ncl)
{
    struct mvol *v = m_find(name);

    if (v == NULL) {
        assert_true(g_m.n < MAX_MVOLS);
        v = &g_m.v[g_m.n++];
    }
    memset(v, 0, sizeof(*v));
    snprintf(v->name, sizeof(v->name), "%s", name);
    v->exist = M_MAYBE;
    v->snapshot = snapshot;
    v->ncl_a = v->ncl_b = ncl;
    for (uint32_t b = 0; b < VOL_BLKS; b++) {
        v->stable[b] = true;
    }
    return v;
}

/* A completed FLUSH or control operation: every acknowledged write is durable. */
static void
m_stabilize(void)
{
    for (int i = 0; i < g_m.n; i++) {
        for (uint32_t b = 0; b < VOL_BLKS; b++) {
            g_m.v[i].stable[b] = true;
        }
    }
}

/* ---- checking one crash image ---- */

static struct {
    uint8_t *img;              /* the crash image being checked */
    uint64_t size;
    uint64_t version;          /* durable version img was built from */
    bool synced;
    uint64_t states;           /* crash images checked */
    uint64_t imported;         /* of which imported for real */
    uint64_t uncommitted;      /* images holding slots of a commit cut short */
    const char *what;          /* the sequence, for messages */
    uint32_t (*fmap)[VOL_CL];  /* owner id -> lc -> cluster + 1 */
    uint8_t *samples[MAX_SAMPLES];
    unsigned nsamples;
    uint64_t undo_len;
    uint8_t *undo;
} g_c;

static void
problem_count(void *arg, const char *msg)
{
    (void)msg;
    (*(unsigned *)arg)++;
}

static const struct ioc_pool_vol_disk *
img_vol(const struct ioc_pool_meta *m, const char *name)
{
    for (uint32_t i = 0; i < m->sb.max_volumes; i++) {
        if (m->vt[i].id != 0 && strcmp(m->vt[i].name, name) == 0) {
            return &m->vt[i];
        }
    }
    return NULL;
}

static bool
img_block_ok(const struct ioc_pool_meta *m, uint32_t id, uint32_t b, uint64_t val)
{
    uint32_t lc = b / BPC, c = 0;
    const uint8_t *p;

    for (uint32_t v = id; v != 0 && c == 0; v = m->vt[v - 1].parent) {
        if (lc < ioc_pool_vol_clusters(m->vt[v - 1].size, CS)) {
            c = g_c.fmap[v][lc];
        }
    }
    if (c == 0) {
        return val == 0;
    }
    p = g_c.img + m->sb.data_offset + (uint64_t)(c - 1) * CS + (uint64_t)(b % BPC) * BLK;
    for (uint32_t s = 0; s < BLK; s += IOC_CRASH_SECTOR) {
        uint64_t x, y;
        memcpy(&x, p + s, 8);
        memcpy(&y, p + s + IOC_CRASH_SECTOR - 8, 8);
        if (x != val || y != val) {
            return false;
        }
    }
    return true;
}

static void
check_vol(const struct ioc_pool_meta *m, const struct mvol *mv, const char *state)
{
    const struct ioc_pool_vol_disk *vd = img_vol(m, mv->name);
    uint32_t ncl;

    if (vd == NULL) {
        if (mv->exist == M_YES) {
            fail_msg("%s, %s: volume %s is missing", g_c.what, state, mv->name);
        }
        return;
    }
    if (mv->exist == M_NO) {
        fail_msg("%s, %s: deleted volume %s is back", g_c.what, state, mv->name);
    }
    ncl = (uint32_t)ioc_pool_vol_clusters(vd->size, CS);
    if ((ncl != mv->ncl_a && ncl != mv->ncl_b) || vd->size % CS != 0 ||
        ((vd->flags & IOC_VOL_SNAPSHOT) != 0) != mv->snapshot) {
        fail_msg("%s, %s: volume %s has size %llu flags %u", g_c.what, state, mv->name,
                 (unsigned long long)vd->size, vd->flags);
    }
    for (uint32_t b = 0; b < ncl * BPC && b < VOL_BLKS; b++) {
        if (mv->stable[b] && !img_block_ok(m, vd->id, b, mv->val[b])) {
            fail_msg("%s, %s: %s block %u does not read back %llx", g_c.what, state, mv->name,
                     b, (unsigned long long)mv->val[b]);
        }
    }
}

static void
check_image(const char *state)
{
    struct ioc_pool_meta *m = NULL;
    struct ioc_pool_sb sb;
    struct ioc_err err = {0};
    unsigned problems = 0;
    bool sample = false;
    int rc;

    rc = ioc_pool_sb_pick(g_c.img, g_c.size, &sb, &err);
    if (rc == 0) {
        rc = ioc_pool_meta_decode(&sb, g_c.img, ioc_pool_meta_region_size(&sb), false,
                                  problem_count, &problems, &m, &err);
    }
    if (rc < 0 || problems != 0) {
        fail_msg("%s, %s: the pool does not open: %s", g_c.what, state, err.msg);
    }
    memset(g_c.fmap, 0, sizeof(*g_c.fmap) * (IOC_POOL_MAX_VOLUMES + 1));
    for (uint32_t c = 0; c < m->sb.n_clusters; c++) {
        if (m->ct[c].owner != 0 && m->ct[c].lcluster < VOL_CL) {
            g_c.fmap[m->ct[c].owner][m->ct[c].lcluster] = c + 1;
        }
    }
    for (int i = 0; i < g_m.n; i++) {
        check_vol(m, &g_m.v[i], state);
    }
    for (uint32_t p = 0; p < m->n_pages; p++) {
        if (m->page_uncommitted[p]) {
            /* Sample these more: the commit after their import must overwrite those slots. */
            sample = ++g_c.uncommitted % (SAMPLE_EVERY / 8) == 0;
            break;
        }
    }
    ioc_pool_meta_free(m);
    if ((++g_c.states % SAMPLE_EVERY == 0 || sample) && g_c.nsamples < MAX_SAMPLES) {
        g_c.samples[g_c.nsamples] = malloc(g_c.size);
        memcpy(g_c.samples[g_c.nsamples++], g_c.img, g_c.size);
    }
}

/* ---- enumerating crash images at one instant ---- */

struct piece {
    uint32_t w;      /* index in the pending list */
    uint32_t first;  /* sectors [first, first + n) */
    uint32_t n;
};

static uint32_t
w_sectors(const struct ioc_crash_write *w)
{
    return (uint32_t)((w->length + IOC_CRASH_SECTOR - 1) / IOC_CRASH_SECTOR);
}

/* Lay the pieces over img in the given order, check, and take them off again. */
static void
try_pieces(const struct ioc_crash_write *pend, const struct piece *pc, unsigned n,
           const char *state)
{
    uint64_t need = 0, at = 0;

    for (unsigned i = 0; i < n; i++) {
        need += (uint64_t)pc[i].n * IOC_CRASH_SECTOR;
    }
    if (need > g_c.undo_len) {
        free(g_c.undo);
        g_c.undo = malloc(need);
        g_c.undo_len = need;
    }
    for (unsigned i = 0; i < n; i++) {
        ioc_bdev_crash_apply(g_c.img, &pend[pc[i].w], pc[i].first, pc[i].n, g_c.undo + at);
        at += (uint64_t)pc[i].n * IOC_CRASH_SECTOR;
    }
    check_image(state);
    for (unsigned i = n; i-- > 0;) {
        at -= (uint64_t)pc[i].n * IOC_CRASH_SECTOR;
        ioc_bdev_crash_undo(g_c.img, &pend[pc[i].w], pc[i].first, pc[i].n, g_c.undo + at);
    }
}

/* The subset `mask` of pending writes, whole, in submission order or reversed. */
static void
try_subset(const struct ioc_crash_write *pend, size_t np, uint64_t mask, bool reverse)
{
    struct piece pc[64];
    unsigned n = 0;

    for (size_t k = 0; k < np; k++) {
        size_t i = reverse ? np - 1 - k : k;
        if (mask & (1ull << i)) {
            pc[n++] = (struct piece){(uint32_t)i, 0, w_sectors(&pend[i])};
        }
    }
    try_pieces(pend, pc, n, reverse ? "reordered subset" : "subset");
}

/* Write t torn: only sectors [first, first + n) landed; the others all or none. */
static void
try_tear(const struct ioc_crash_write *pend, size_t np, size_t t, uint32_t first, uint32_t n)
{
    struct piece pc[64];
    unsigned k = 0;

    pc[k++] = (struct piece){(uint32_t)t, first, n};
    try_pieces(pend, pc, k, "torn write alone");
    if (np == 1) {
        return; /* "with the others" is the same image */
    }
    k = 0;
    for (size_t i = 0; i < np; i++) {
        pc[k++] = i == t ? (struct piece){(uint32_t)i, first, n}
                         : (struct piece){(uint32_t)i, 0, w_sectors(&pend[i])};
    }
    try_pieces(pend, pc, k, "torn write with the others");
}

static bool
pend_overlap(const struct ioc_crash_write *pend, size_t np)
{
    for (size_t i = 0; i < np; i++) {
        for (size_t j = i + 1; j < np; j++) {
            if (pend[i].offset < pend[j].offset + pend[j].length &&
                pend[j].offset < pend[i].offset + pend[i].length) {
                return true;
            }
        }
    }
    return false;
}

static uint64_t g_rng = 88172645463325252ull;

static uint64_t
rng(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* See docs/pool-format.md: all subsets up to 5 pending writes, a bounded family above. */
static void
enumerate(const struct ioc_crash_write *pend, size_t np)
{
    uint64_t all = np >= 64 ? UINT64_MAX : (1ull << np) - 1;

    if (np <= 5) {
        for (uint64_t mask = 0; mask <= all; mask++) {
            try_subset(pend, np, mask, false);
        }
    } else {
        try_subset(pend, np, 0, false);
        try_subset(pend, np, all, false);
        for (size_t i = 0; i < np && i < 64; i++) {
            try_subset(pend, np, 1ull << i, false);
            try_subset(pend, np, all & ~(1ull << i), false);
        }
        for (int k = 0; k < 16; k++) {
            try_subset(pend, np, rng() & all, false);
        }
    }
    if (np >= 2 && pend_overlap(pend, np)) {
        try_subset(pend, np, all, true);
    }
    for (size_t t = 0; t < np && t < 64; t++) {
        uint32_t ns = w_sectors(&pend[t]);
        if (ns < 2) {
            continue;
        }
        try_tear(pend, np, t, 0, 1);
        try_tear(pend, np, t, 0, ns / 2);
        try_tear(pend, np, t, ns / 2, ns - ns / 2);
    }
}

/* The crash bdev's hook: a write or flush is about to go down. */
static void
crash_hook(void *arg, struct ioc_bdev *cb)
{
    const struct ioc_crash_write *pend;
    size_t np = ioc_bdev_crash_pending(cb, &pend);
    uint64_t size, version;
    const uint8_t *durable = ioc_bdev_crash_durable(cb, &size, &version);

    (void)arg;
    if (!g_c.synced || version != g_c.version) {
        memcpy(g_c.img, durable, size);
        g_c.version = version;
        g_c.synced = true;
    } else if (np == 0) {
        return; /* the same image as last time */
    }
    enumerate(pend, np);
}

/* ---- the pool under test ---- */

static struct ioc_bdev *
crash_bdev(void)
{
    struct ioc_bdev *b = ioc_bdev_get_by_name("c"), *ret = b;

    assert_non_null(b);
    ioc_bdev_put(&b); /* the registry keeps it alive */
    return ret;
}

static struct ioc_pool *
P(void)
{
    struct ioc_pool *pool = ioc_pool_find("p");

    assert_non_null(pool);
    return pool;
}

/*
 * The base state, flushed: a (4 clusters) over snapshot s (clusters 0-1
 * written), a's cluster 1 rewritten (copy-on-write); b (4 clusters, no
 * parent) with data in clusters 0 and 3.
 */
static void
base_setup(void)
{
    struct ioc_pool_create_opts po = {.name = "p", .bdev = "c", .cluster_size = CS};
    struct mvol *a, *s, *b;

    assert_int_equal(ioc_bdev_malloc_create("m", POOL_SIZE, 512, NULL), 0);
    assert_int_equal(ioc_bdev_crash_create("c", "m", NULL), 0);
    assert_int_equal(OP(ioc_pool_create(&po, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "a", VOL_CL * CS, true, err, cb, cb_arg)),
                     0);
    assert_int_equal(write_blocks("p/a", 0, 2 * BPC, 0x100, 0), 0);
    assert_int_equal(OP(ioc_pool_volume_snapshot(P(), "a", "s", err, cb, cb_arg)), 0);
    assert_int_equal(write_blocks("p/a", BPC + 3, 1, 0x200, 0), 0);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "b", VOL_CL * CS, true, err, cb, cb_arg)),
                     0);
    assert_int_equal(write_blocks("p/b", 0, BPC, 0x300, 0), 0);
    assert_int_equal(write_blocks("p/b", 3 * BPC, 1, 0x400, 0), 0);
    assert_int_equal(vio("p/a", IOC_IO_FLUSH, 0, 0, NULL, 0), 0);

    g_m.n = 0;
    s = m_add("s", true, VOL_CL);
    a = m_add("a", false, VOL_CL);
    b = m_add("b", false, VOL_CL);
    for (uint32_t i = 0; i < 2 * BPC; i++) {
        s->val[i] = a->val[i] = 0x100 + i;
    }
    a->val[BPC + 3] = 0x200;
    for (uint32_t i = 0; i < BPC; i++) {
        b->val[i] = 0x300 + i;
    }
    b->val[3 * BPC] = 0x400;
    s->exist = a->exist = b->exist = M_YES;
    g_c.synced = false;
}

static void
base_teardown(void)
{
    struct ioc_pool *pool = ioc_pool_find("p");

    ioc_bdev_crash_set_hook(crash_bdev(), NULL, NULL);
    if (pool != NULL) {
        assert_int_equal(OP(ioc_pool_export(pool, false, err, cb, cb_arg)), 0);
    }
    assert_int_equal(ioc_bdev_delete("c", NULL), 0);
    assert_int_equal(ioc_bdev_delete("m", NULL), 0);
}

/* Decode a whole pool image; fails the test if it does not decode cleanly. */
static struct ioc_pool_meta *
decode_clean(const uint8_t *img, const char *when)
{
    struct ioc_pool_meta *m = NULL;
    struct ioc_pool_sb sb;
    struct ioc_err err = {0};
    unsigned problems = 0;
    int rc = ioc_pool_sb_pick(img, POOL_SIZE, &sb, &err);

    if (rc == 0) {
        rc = ioc_pool_meta_decode(&sb, img, ioc_pool_meta_region_size(&sb), false,
                                  problem_count, &problems, &m, &err);
    }
    if (rc < 0 || problems != 0) {
        fail_msg("%s: %s: the pool does not open: %s", g_c.what, when, err.msg);
    }
    return m;
}

/*
 * After a crash, an import and one commit must change nothing but what that
 * commit did: a slot written by the commit cut short (its seq above the
 * superblock's) must never start to count when the seq is reused.
 */
static void
expect_same_tables_but(const struct ioc_pool_meta *before, struct ioc_pool_meta *after,
                       const char *added)
{
    for (uint32_t i = 0; i < after->sb.max_volumes; i++) {
        if (after->vt[i].id != 0 && strcmp(after->vt[i].name, added) == 0) {
            memset(&after->vt[i], 0, sizeof(after->vt[i]));
        }
    }
    if (memcmp(before->vt, after->vt, sizeof(*before->vt) * before->sb.max_volumes) != 0 ||
        memcmp(before->ct, after->ct, sizeof(*before->ct) * before->sb.n_clusters) != 0) {
        fail_msg("%s: after a crash, import and one commit, the pool holds tables that no "
                 "commit wrote", g_c.what);
    }
}

/*
 * Import a saved crash image for real: the pool must open, take a commit
 * (a new volume), and export; the image then decodes to the crash image's
 * tables plus that volume.
 */
static void
import_samples(void)
{
    uint8_t *back = malloc(POOL_SIZE);

    for (unsigned i = 0; i < g_c.nsamples; i++) {
        struct ioc_pool_meta *before = decode_clean(g_c.samples[i], "crash image");
        struct ioc_pool_meta *after;

        assert_int_equal(ioc_bdev_malloc_create("img", POOL_SIZE, 512, NULL), 0);
        assert_int_equal(vio("img", IOC_IO_WRITE, 0, POOL_SIZE, g_c.samples[i], 0), 0);
        if (OP(ioc_pool_import("img", "q", err, cb, cb_arg)) != 0) {
            fail_msg("%s: a crash image decodes but does not import", g_c.what);
        }
        assert_int_equal(OP(ioc_pool_volume_create(ioc_pool_find("q"), "post-crash", CS, true,
                                                   err, cb, cb_arg)),
                         0);
        assert_int_equal(OP(ioc_pool_export(ioc_pool_find("q"), false, err, cb, cb_arg)), 0);
        assert_int_equal(vio("img", IOC_IO_READ, 0, POOL_SIZE, back, 0), 0);
        assert_int_equal(ioc_bdev_delete("img", NULL), 0);
        after = decode_clean(back, "after import and a commit");
        expect_same_tables_but(before, after, "post-crash");
        ioc_pool_meta_free(before);
        ioc_pool_meta_free(after);
        free(g_c.samples[i]);
        g_c.imported++;
    }
    free(back);
    g_c.nsamples = 0;
}

/* ---- operations, each with its model before and after ---- */

enum op_kind {
    K_CREATE, K_DELETE, K_RESIZE, K_SNAPSHOT, K_CLONE, K_WRITE, K_UNMAP, K_FLUSH, K_ATTR,
    K_THICK, K_COUNT,
};

static const char *const g_kind_name[] = {
    "create", "delete", "resize", "snapshot", "clone", "write", "unmap", "flush", "attr",
    "thick create",
};

/* Run operation kind as step i; fua makes data operations commit (error injection). */
static int
run_op(enum op_kind kind, int i, bool fua)
{
    const uint32_t write_lc[3] = {2, 0, 3};
    char name[16];
    struct mvol *v, *src;
    uint64_t val;
    uint32_t blk, ncl;
    int rc = 0;

    switch (kind) {
    case K_CREATE:
        snprintf(name, sizeof(name), "n%d", i);
        v = m_add(name, false, 2);
        rc = OP(ioc_pool_volume_create(P(), name, 2 * CS, true, err, cb, cb_arg));
        v->exist = rc == 0 ? M_YES : M_MAYBE;
        break;
    case K_DELETE:
        snprintf(name, sizeof(name), "%s", i % 2 == 0 ? "s" : "b");
        v = m_find(name);
        if (v->exist == M_NO) {
            return 0;
        }
        v->exist = M_MAYBE;
        rc = OP(ioc_pool_volume_delete(P(), name, err, cb, cb_arg));
        v->exist = rc == 0 ? M_NO : rc == -EBUSY ? M_YES : M_MAYBE;
        break;
    case K_RESIZE:
        v = m_find("b");
        if (v->exist == M_NO) {
            return 0;
        }
        ncl = v->ncl_a == VOL_CL ? 2 : VOL_CL;
        v->ncl_b = ncl;
        for (uint32_t b = ncl * BPC; b < VOL_BLKS; b++) {
            v->stable[b] = false; /* shrinking: either the old content or gone */
            v->val[b] = 0;
        }
        rc = OP(ioc_pool_volume_resize(P(), "b", (uint64_t)ncl * CS, err, cb, cb_arg));
        if (rc == 0) {
            v->ncl_a = ncl;
            for (uint32_t b = ncl * BPC; b < VOL_BLKS; b++) {
                v->stable[b] = true; /* a later grow must read zeroes */
            }
        }
        break;
    case K_SNAPSHOT:
        snprintf(name, sizeof(name), "t%d", i);
        src = m_find("a");
        v = m_add(name, true, src->ncl_a);
        memcpy(v->val, src->val, sizeof(v->val));
        rc = OP(ioc_pool_volume_snapshot(P(), "a", name, err, cb, cb_arg));
        v->exist = rc == 0 ? M_YES : M_MAYBE;
        break;
    case K_CLONE:
        snprintf(name, sizeof(name), "c%d", i);
        src = m_find("s");
        if (src->exist == M_NO) {
            return 0;
        }
        v = m_add(name, false, src->ncl_a);
        memcpy(v->val, src->val, sizeof(v->val));
        rc = OP(ioc_pool_volume_clone(P(), "s", name, err, cb, cb_arg));
        v->exist = rc == 0 ? M_YES : M_MAYBE;
        break;
    case K_WRITE:
        v = m_find("a");
        blk = write_lc[i % 3] * BPC + 1;
        val = 0x1000 + (uint64_t)i * 0x10;
        v->val[blk] = val;
        v->stable[blk] = false;
        return write_blocks("p/a", blk, 1, val, fua ? IOC_IO_FUA : 0);
    case K_UNMAP:
        v = m_find("b");
        if (v->exist == M_NO) {
            return 0;
        }
        for (uint32_t b = 0; b < BPC; b++) {
            v->val[b] = 0;
            v->stable[b] = false;
        }
        return vio("p/b", IOC_IO_UNMAP, 0, CS, NULL, fua ? IOC_IO_FUA : 0);
    case K_FLUSH:
        rc = vio("p/a", IOC_IO_FLUSH, 0, 0, NULL, 0);
        break;
    case K_THICK:
        snprintf(name, sizeof(name), "k%d", i);
        v = m_add(name, false, 2);
        rc = OP(ioc_pool_volume_create(P(), name, 2 * CS, false, err, cb, cb_arg));
        v->exist = rc == 0 ? M_YES : M_MAYBE;
        break;
    case K_ATTR:
        rc = OP(ioc_pool_volume_attr_set(P(), "a", "gen", "1", err, cb, cb_arg));
        break;
    default:
        fail();
    }
    if (rc == 0) {
        m_stabilize();
    }
    return rc;
}

/* ---- exhaustive enumeration ---- */

static void
run_sequence(const int *ops, int n)
{
    char what[128];
    int len = 0;

    for (int i = 0; i < n; i++) {
        len += snprintf(what + len, sizeof(what) - (size_t)len, "%s%s", i ? "," : "",
                        g_kind_name[ops[i]]);
    }
    g_c.what = what;
    base_setup();
    ioc_bdev_crash_set_hook(crash_bdev(), crash_hook, NULL);
    for (int i = 0; i < n; i++) {
        int rc = run_op((enum op_kind)ops[i], i, false);
        assert_true(rc == 0 || rc == -EBUSY || rc == -ENOENT);
    }
    crash_hook(NULL, crash_bdev()); /* and the instant after the last operation */
    base_teardown();
    import_samples();
}

static void
test_pool_crash_enumeration(void **state)
{
    int ops[3];
    struct timespec t0, t1;

    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int n = 1; n <= 3; n++) {
        int total = 1;
        for (int i = 0; i < n; i++) {
            total *= K_FLUSH + 1;
        }
        for (int code = 0; code < total; code++) {
            for (int i = 0, c = code; i < n; i++, c /= K_FLUSH + 1) {
                ops[i] = c % (K_FLUSH + 1);
            }
            run_sequence(ops, n);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    print_message("crash states checked: %llu (%llu imported) in %.1f s\n",
                  (unsigned long long)g_c.states, (unsigned long long)g_c.imported,
                  (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    assert_true(g_c.states >= 10000);
}

/* ---- IO-error injection ---- */

static void
expect_b_serving(void)
{
    uint8_t buf[BLK];
    uint64_t x;

    assert_int_equal(vio("p/b", IOC_IO_READ, 0, BLK, buf, 0), 0);
    memcpy(&x, buf, 8);
    assert_int_equal(x, 0x300);
    assert_int_equal(write_blocks("p/b", 5, 1, 0x305, 0), 0); /* an owned cluster */
}

/* Where the data clusters start: IO below is metadata IO. */
static uint64_t
meta_end(void)
{
    struct ioc_pool_layout l;

    assert_int_equal(ioc_pool_layout_compute(POOL_SIZE, CS, &l, NULL), 0);
    return l.data_offset;
}

static void
test_pool_metadata_io_errors(void **state)
{
    const enum op_kind kinds[] = {K_CREATE, K_DELETE, K_RESIZE, K_SNAPSHOT, K_CLONE,
                                  K_WRITE,  K_UNMAP,  K_FLUSH,  K_ATTR,   K_THICK};
    uint64_t failures = 0;

    (void)state;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        for (uint64_t nth = 1;; nth++) {
            struct ioc_crash_fail f = {.io_types = (1u << IOC_IO_WRITE) | (1u << IOC_IO_FLUSH),
                                       .nth = nth, .error = -EIO};
            struct ioc_crash_fail off = {0};
            int rc;
            char what[64];

            snprintf(what, sizeof(what), "%s with metadata IO %llu failing",
                     g_kind_name[kinds[k]], (unsigned long long)nth);
            g_c.what = what;
            base_setup();
            f.below = meta_end();
            ioc_bdev_crash_set_hook(crash_bdev(), crash_hook, NULL);
            /* step 0 deletes s (a merge); step 1 writes lc 0 (copy-on-write from s) */
            ioc_bdev_crash_fail(crash_bdev(), &f);
            rc = run_op(kinds[k], kinds[k] == K_DELETE ? 0 : 1, true);
            if (ioc_bdev_crash_fail(crash_bdev(), &off) == 0) {
                assert_int_equal(rc, 0); /* the operation never reached IO nth */
                base_teardown();
                import_samples();
                break;
            }
            failures++;
            if (rc == 0) {
                fail_msg("%s: the operation succeeded", what);
            }
            /* Other volumes keep serving; the next commit succeeds; the pool re-imports. */
            if (kinds[k] != K_UNMAP && kinds[k] != K_RESIZE) {
                expect_b_serving();
            }
            /* More metadata changes before the next commit (a first write to b). */
            m_find("b")->val[BPC + 2] = 0x777;
            m_find("b")->stable[BPC + 2] = false;
            assert_int_equal(write_blocks("p/b", BPC + 2, 1, 0x777, 0), 0);
            assert_int_equal(OP(ioc_pool_volume_attr_set(P(), "b", "k", "v", err, cb, cb_arg)),
                             0);
            m_stabilize();
            crash_hook(NULL, crash_bdev());
            ioc_bdev_crash_set_hook(crash_bdev(), NULL, NULL);
            assert_int_equal(OP(ioc_pool_export(P(), false, err, cb, cb_arg)), 0);
            assert_int_equal(OP(ioc_pool_import("c", NULL, err, cb, cb_arg)), 0);
            base_teardown();
            import_samples();
        }
    }
    print_message("metadata IO failures injected: %llu\n", (unsigned long long)failures);
    assert_true(failures >= 20);
}

static int
setup(void **state)
{
    (void)state;
    g_c.img = malloc(POOL_SIZE);
    g_c.size = POOL_SIZE;
    g_c.fmap = calloc(IOC_POOL_MAX_VOLUMES + 1, sizeof(*g_c.fmap));
    return ioc_reactor_create_local(NULL, &g_r);
}

static int
teardown(void **state)
{
    (void)state;
    ioc_reactor_destroy_local(&g_r);
    ioc_bdev_io_cache_drain();
    free(g_c.img);
    free(g_c.fmap);
    free(g_c.undo);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_crash_enumeration),
        cmocka_unit_test(test_pool_metadata_io_errors),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
