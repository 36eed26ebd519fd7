/*
 * Unit tests for pools: the metadata format (round trip, torn and corrupt
 * slots, the checker's findings) and the daemon side driven on a local
 * reactor over a file bdev (create, write, snapshot, clone, delete, import,
 * copy-on-write, ENOSPC and recovery).
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bdev/bdev_module.h"
#include "bdev/error/bdev_error.h"
#include "bdev/file/bdev_file.h"
#include "core/reactor.h"
#include "pool/pool.h"
#include "pool/pool_meta.h"
#include "tests/unit/util/ut_bdev.h"

#define CS (64u * 1024)

static struct ioc_reactor *g_r;
static char g_dir[] = "/tmp/ioc-pool-test-XXXXXX";
static char g_path[256];

/* ---- helpers ---- */

#define OP(call)                                                      \
    ({                                                                \
        struct ut_op res_ = {0};                                  \
        struct ioc_err err_ = {0};                                    \
        struct ioc_err *err = &err_;                                  \
        void *cb_arg = &res_;                                         \
        ioc_pool_cb cb = ut_op_done;                                     \
        int rc_ = ut_op_wait(g_r, (call), &res_);                             \
        if (rc_ < 0) {                                                \
            snprintf(g_last_err, sizeof(g_last_err), "%s", err_.msg); \
        }                                                             \
        rc_;                                                          \
    })

static char g_last_err[IOC_ERR_MSG_MAX];

struct io_result {
    bool done;
    int status;
};

static void
io_done(struct ioc_bdev_io *io, void *arg)
{
    struct io_result *res = arg;

    res->status = io->status;
    res->done = true;
}

static int
vio(const char *bdev_name, enum ioc_io_type type, uint64_t off, uint64_t len, void *buf,
    uint32_t flags)
{
    return ut_bdev_rw(g_r, bdev_name, type, off, len, buf, flags);
}

static void
fill(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed + i * 7);
    }
}

static void
expect_pattern(const char *bdev, uint64_t off, uint64_t len, uint8_t seed)
{
    uint8_t *want = malloc(len), *got = malloc(len);

    fill(want, len, seed);
    assert_int_equal(vio(bdev, IOC_IO_READ, off, len, got, 0), 0);
    assert_memory_equal(got, want, len);
    free(want);
    free(got);
}

static void
expect_zero(const char *bdev, uint64_t off, uint64_t len)
{
    uint8_t *got = malloc(len), *zero = calloc(1, len);

    assert_int_equal(vio(bdev, IOC_IO_READ, off, len, got, 0), 0);
    assert_memory_equal(got, zero, len);
    free(got);
    free(zero);
}

static void
write_pattern(const char *bdev, uint64_t off, uint64_t len, uint8_t seed)
{
    uint8_t *buf = malloc(len);

    fill(buf, len, seed);
    assert_int_equal(vio(bdev, IOC_IO_WRITE, off, len, buf, 0), 0);
    free(buf);
}

/* A fresh file bdev "base" of size bytes and a pool "p" on it. */
static void
pool_setup(uint64_t size)
{
    struct ioc_bdev_file_opts fo = {.name = "base", .path = g_path, .size = size};
    struct ioc_pool_create_opts po = {.name = "p", .bdev = "base", .cluster_size = CS};

    unlink(g_path);
    assert_int_equal(ioc_bdev_file_create(&fo, NULL), 0);
    assert_int_equal(OP(ioc_pool_create(&po, err, cb, cb_arg)), 0);
}

static void
pool_teardown(void)
{
    struct ioc_pool *pool = ioc_pool_find("p");

    if (pool != NULL) {
        assert_int_equal(OP(ioc_pool_export(pool, false, err, cb, cb_arg)), 0);
    }
    assert_int_equal(ioc_bdev_delete("base", NULL), 0);
}

static int
pool_reimport(void)
{
    struct ioc_pool *pool = ioc_pool_find("p");

    assert_non_null(pool);
    assert_int_equal(OP(ioc_pool_export(pool, false, err, cb, cb_arg)), 0);
    return OP(ioc_pool_import("base", NULL, err, cb, cb_arg));
}

static struct ioc_pool *
P(void)
{
    struct ioc_pool *pool = ioc_pool_find("p");

    assert_non_null(pool);
    return pool;
}

/* Read the whole metadata region of the pool file and decode it. */
static int
file_decode(bool keep, unsigned *problems, char *first, size_t first_len)
{
    int fd = open(g_path, O_RDONLY);
    uint8_t sbbuf[IOC_POOL_META_OFFSET];
    struct ioc_pool_sb sb;
    struct ioc_pool_meta *m = NULL;
    struct ioc_err err = {0};
    uint8_t *buf;
    uint64_t len;
    int rc;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, sbbuf, sizeof(sbbuf), 0), (ssize_t)sizeof(sbbuf));
    rc = ioc_pool_sb_pick(sbbuf, (uint64_t)lseek(fd, 0, SEEK_END), &sb, &err);
    if (rc < 0) {
        snprintf(first, first_len, "%s", err.msg);
        close(fd);
        return rc;
    }
    len = ioc_pool_meta_region_size(&sb);
    buf = malloc(len);
    assert_int_equal(pread(fd, buf, len, 0), (ssize_t)len);
    close(fd);
    rc = ioc_pool_meta_decode(&sb, buf, len, keep, NULL, NULL, &m, &err);
    *problems = rc < 0 ? 1 : 0;
    snprintf(first, first_len, "%s", err.msg);
    ioc_pool_meta_free(m);
    free(buf);
    return rc;
}

static void
file_patch(uint64_t off, const void *data, size_t len)
{
    int fd = open(g_path, O_WRONLY);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void
file_read(uint64_t off, void *data, size_t len)
{
    int fd = open(g_path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* ---- format (pure) ---- */

static void
problem_count(void *arg, const char *msg)
{
    (void)msg;
    (*(unsigned *)arg)++;
}

/* Serialize an image the way a fresh pool lays it out on disk. */
static uint8_t *
meta_serialize(const struct ioc_pool_meta *m, uint64_t *len)
{
    uint8_t *buf;

    *len = ioc_pool_meta_region_size(&m->sb);
    buf = calloc(1, *len);
    ioc_pool_meta_sb_build(m, buf + ((m->sb.seq & 1) * IOC_POOL_PAGE_SIZE));
    for (uint32_t p = 0; p < m->n_pages; p++) {
        ioc_pool_meta_page_build(m, p, m->sb.seq, buf + ioc_pool_page_offset(p, 0));
    }
    return buf;
}

static void
test_pool_meta_round_trip(void **state)
{
    struct ioc_pool_meta *m = NULL, *back = NULL;
    struct ioc_pool_sb sb;
    uint64_t len;
    uint8_t *buf;

    (void)state;
    assert_int_equal(ioc_pool_meta_format("rt", 64 << 20, CS, &m, NULL), 0);
    m->vt[0] = (struct ioc_pool_vol_disk){.id = 1, .size = 1 << 20, .name = "v"};
    assert_int_equal(ioc_pool_attr_set(m->vt[0].attrs, "gen", "7"), 0);
    m->ct[3] = (struct ioc_pool_ct_entry){1, 5};
    buf = meta_serialize(m, &len);
    assert_int_equal(ioc_pool_sb_pick(buf, 64 << 20, &sb, NULL), 0);
    assert_int_equal(ioc_pool_meta_decode(&sb, buf, len, false, NULL, NULL, &back, NULL), 0);
    assert_memory_equal(back->vt, m->vt, sizeof(*m->vt) * IOC_POOL_MAX_VOLUMES);
    assert_memory_equal(back->ct, m->ct, sizeof(*m->ct) * m->sb.n_clusters);
    assert_string_equal(ioc_pool_attr_get(back->vt[0].attrs, "gen"), "7");
    /* Truncated region and a device too small are refused, not crashed on. */
    ioc_pool_meta_free(back);
    assert_int_equal(ioc_pool_meta_decode(&sb, buf, len - 1, false, NULL, NULL, &back, NULL),
                     -EINVAL);
    assert_int_equal(ioc_pool_sb_pick(buf, 1 << 20, &sb, NULL), -ERANGE);
    free(buf);
    ioc_pool_meta_free(m);
}

static void
test_pool_meta_decode_finds_double_use_and_leak(void **state)
{
    struct ioc_pool_meta *m = NULL, *back = NULL;
    struct ioc_pool_sb sb;
    struct ioc_err err = {0};
    unsigned problems = 0;
    uint64_t len;
    uint8_t *buf;

    (void)state;
    assert_int_equal(ioc_pool_meta_format("dd", 64 << 20, CS, &m, NULL), 0);
    m->vt[0] = (struct ioc_pool_vol_disk){.id = 1, .size = 1 << 20, .name = "v"};
    m->ct[3] = (struct ioc_pool_ct_entry){1, 5};
    m->ct[9] = (struct ioc_pool_ct_entry){1, 5};  /* doubly used */
    m->ct[10] = (struct ioc_pool_ct_entry){7, 0}; /* owner does not exist: leaked */
    buf = meta_serialize(m, &len);
    assert_int_equal(ioc_pool_sb_pick(buf, 64 << 20, &sb, NULL), 0);
    assert_int_equal(ioc_pool_meta_decode(&sb, buf, len, true, problem_count, &problems, &back,
                                          &err),
                     -EINVAL);
    assert_int_equal(problems, 2);
    assert_non_null(back); /* kept for the checker */
    assert_non_null(strstr(err.msg, "leaked"));
    ioc_pool_meta_free(back);
    free(buf);
    ioc_pool_meta_free(m);
}

static void
test_pool_attr_set_get_remove(void **state)
{
    uint8_t a[IOC_POOL_ATTR_AREA] = {0};
    char big[200];

    (void)state;
    assert_int_equal(ioc_pool_attr_set(a, "x", "1"), 0);
    assert_int_equal(ioc_pool_attr_set(a, "y", "2"), 0);
    assert_int_equal(ioc_pool_attr_set(a, "x", "3"), 0);
    assert_string_equal(ioc_pool_attr_get(a, "x"), "3");
    assert_string_equal(ioc_pool_attr_get(a, "y"), "2");
    assert_int_equal(ioc_pool_attr_set(a, "y", NULL), 0);
    assert_null(ioc_pool_attr_get(a, "y"));
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(ioc_pool_attr_set(a, "big", big), 0);
    assert_int_equal(ioc_pool_attr_set(a, "big2", big), -ENOSPC);
    assert_int_equal(ioc_pool_attr_check(a), 0);
}

/* ---- daemon side ---- */

static void
test_pool_create_write_import(void **state)
{
    (void)state;
    pool_setup(16 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 4 << 20, true, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 4 << 20, true, err, cb, cb_arg)),
                     -EEXIST);
    expect_zero("p/v", 0, 2 * CS);
    write_pattern("p/v", 4096, 3 * CS, 1);      /* spans 4 clusters, partial ends */
    write_pattern("p/v", 8192, 4096, 2);        /* owned now: the hot path */
    assert_int_equal(vio("p/v", IOC_IO_FLUSH, 0, 0, NULL, 0), 0);
    assert_int_equal(pool_reimport(), 0);
    expect_zero("p/v", 0, 4096);
    expect_pattern("p/v", 8192, 4096, 2);
    expect_pattern("p/v", 3 * CS + 4096 - 4096, 4096, (uint8_t)(1 + (3 * CS - 4096) * 7));
    expect_zero("p/v", 4 * CS, CS);
    pool_teardown();
}

static void
test_pool_snapshot_cow_and_clone(void **state)
{
    struct ioc_extent ext[8];
    struct ioc_bdev *b;
    struct io_result res = {0};
    struct ioc_bdev_io *io;
    uint8_t buf[4096];

    (void)state;
    pool_setup(16 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 1 << 20, true, err, cb, cb_arg)), 0);
    write_pattern("p/v", 0, 2 * CS, 10);
    assert_int_equal(OP(ioc_pool_volume_snapshot(P(), "v", "s1", err, cb, cb_arg)), 0);
    write_pattern("p/v", 4096, 4096, 20); /* CoW: rest of cluster 0 comes from s1 */
    expect_pattern("p/s1", 0, 2 * CS, 10);
    expect_pattern("p/v", 0, 4096, 10);
    expect_pattern("p/v", 4096, 4096, 20);
    fill(buf, sizeof(buf), 10);
    assert_int_equal(vio("p/s1", IOC_IO_WRITE, 0, 4096, buf, 0), -EROFS);
    assert_int_equal(OP(ioc_pool_volume_clone(P(), "s1", "c", err, cb, cb_arg)), 0);
    expect_pattern("p/c", 0, 2 * CS, 10);
    assert_int_equal(OP(ioc_pool_volume_delete(P(), "s1", err, cb, cb_arg)), -EBUSY);

    /* Block status: clusters 0-1 data (through the parent), the rest a hole. */
    b = ioc_bdev_get_by_name("p/c");
    io = ioc_bdev_io_alloc(b);
    ioc_bdev_io_prep(io, IOC_IO_BLOCK_STATUS, 0, 1 << 20, 0, io_done, &res);
    io->extents = ext;
    io->max_extents = 8;
    assert_int_equal(ioc_bdev_io_submit(io), 0);
    assert_int_equal(ioc_reactor_poll_until(g_r, &res.done, 5000), 0);
    assert_int_equal(io->nr_extents, 2);
    assert_int_equal(ext[0].length, 2 * CS);
    assert_int_equal(ext[0].flags, 0);
    assert_int_equal(ext[1].flags, IOC_EXTENT_HOLE | IOC_EXTENT_ZERO);
    ioc_bdev_io_free(io);
    ioc_bdev_put(&b);

    /* Everything survives an import; then delete the clone and merge s1 into v. */
    assert_int_equal(pool_reimport(), 0);
    expect_pattern("p/s1", 0, 2 * CS, 10);
    expect_pattern("p/v", 4096, 4096, 20);
    assert_int_equal(OP(ioc_pool_volume_delete(P(), "c", err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_delete(P(), "s1", err, cb, cb_arg)), 0);
    expect_pattern("p/v", 0, 4096, 10);
    expect_pattern("p/v", 4096, 4096, 20);
    expect_pattern("p/v", CS, CS, (uint8_t)(10 + CS * 7));
    assert_int_equal(pool_reimport(), 0);
    expect_pattern("p/v", CS, CS, (uint8_t)(10 + CS * 7));
    pool_teardown();
}

static void
test_pool_enospc_then_recovery(void **state)
{
    struct ioc_pool_layout l;
    uint8_t *buf = malloc(CS);
    uint32_t n;

    (void)state;
    assert_int_equal(ioc_pool_layout_compute(4 << 20, CS, &l, NULL), 0);
    n = l.n_clusters;
    pool_setup(4 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "a", 64 << 20, true, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "b", 64 << 20, true, err, cb, cb_arg)), 0);
    fill(buf, CS, 3);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(vio("p/a", IOC_IO_WRITE, (uint64_t)i * CS, CS, buf, 0), 0);
    }
    assert_int_equal(vio("p/a", IOC_IO_WRITE, (uint64_t)n * CS, CS, buf, 0), -ENOSPC);
    assert_int_equal(vio("p/b", IOC_IO_WRITE, 0, 4096, buf, 0), -ENOSPC);
    expect_pattern("p/a", 0, CS, 3); /* reads still served */
    /* Trimming whole clusters frees them; the next allocation waits for the commit. */
    assert_int_equal(vio("p/a", IOC_IO_UNMAP, 0, 2 * CS, NULL, 0), 0);
    expect_zero("p/a", 0, CS);
    assert_int_equal(vio("p/b", IOC_IO_WRITE, 0, 4096, buf, 0), 0);
    /* Deleting a volume frees space at once (the delete commits). */
    assert_int_equal(vio("p/b", IOC_IO_WRITE, CS, 4096, buf, 0), 0);
    assert_int_equal(vio("p/b", IOC_IO_WRITE, 2 * CS, 4096, buf, 0), -ENOSPC);
    assert_int_equal(OP(ioc_pool_volume_delete(P(), "a", err, cb, cb_arg)), 0);
    assert_int_equal(vio("p/b", IOC_IO_WRITE, 2 * CS, 4096, buf, 0), 0);
    assert_int_equal(pool_reimport(), 0);
    expect_pattern("p/b", 0, 4096, 3);
    free(buf);
    pool_teardown();
}

static void
test_pool_corrupt_sb_slot_falls_back(void **state)
{
    uint8_t junk[64];
    struct ioc_pool_sb sb;
    unsigned problems;
    char msg[IOC_ERR_MSG_MAX];

    (void)state;
    pool_setup(16 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 1 << 20, true, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "w", 1 << 20, true, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_export(P(), false, err, cb, cb_arg)), 0);
    /* seq is now 3 (create 1, v 2, w 3): slot 1 holds it; break it. */
    file_read(IOC_POOL_PAGE_SIZE, &sb, sizeof(sb));
    assert_int_equal(sb.seq, 3);
    memset(junk, 0xee, sizeof(junk));
    file_patch(IOC_POOL_PAGE_SIZE + 200, junk, sizeof(junk));
    assert_int_equal(file_decode(false, &problems, msg, sizeof(msg)), 0);
    assert_int_equal(OP(ioc_pool_import("base", NULL, err, cb, cb_arg)), 0);
    /* Back at seq 2: v exists, w does not. */
    expect_zero("p/v", 0, 4096);
    assert_null(ioc_bdev_get_by_name("p/w"));
    assert_int_equal(OP(ioc_pool_export(P(), false, err, cb, cb_arg)), 0);
    /* The export committed seq 3 again (over w's uncommitted page slots): slot 1 is good. */
    file_read(IOC_POOL_PAGE_SIZE, &sb, sizeof(sb));
    assert_int_equal(sb.seq, 3);
    assert_int_equal(file_decode(false, &problems, msg, sizeof(msg)), 0);
    /* Both slots broken: refused with a clear message. */
    file_patch(200, junk, sizeof(junk));
    file_patch(IOC_POOL_PAGE_SIZE + 200, junk, sizeof(junk));
    assert_int_equal(OP(ioc_pool_import("base", NULL, err, cb, cb_arg)), -EINVAL);
    assert_non_null(strstr(g_last_err, "no valid superblock"));
    assert_int_equal(ioc_bdev_delete("base", NULL), 0);
}

static void
test_pool_torn_page_detected(void **state)
{
    uint8_t junk[512];
    unsigned problems;
    char msg[IOC_ERR_MSG_MAX];
    uint64_t slot1_vt0 = ioc_pool_page_offset(0, 1);
    struct ioc_pool_page_hdr h;

    (void)state;
    pool_setup(16 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 1 << 20, true, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_export(P(), false, err, cb, cb_arg)), 0);
    /* Volume table page 0: slot 0 seq 1 (empty), slot 1 seq 2 (has v). */
    file_read(slot1_vt0, &h, sizeof(h));
    assert_int_equal(h.seq, 2);
    /* A torn write of an uncommitted seq 3 into slot 0 is invisible. */
    memset(junk, 0x5a, sizeof(junk));
    file_patch(ioc_pool_page_offset(0, 0) + 1024, junk, sizeof(junk));
    assert_int_equal(file_decode(false, &problems, msg, sizeof(msg)), 0);
    /* Damage to the committed version (seq 2) is reported, not silently rolled back. */
    file_patch(slot1_vt0 + 1024, junk, sizeof(junk));
    assert_int_equal(file_decode(false, &problems, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "metadata page 0"));
    assert_int_equal(OP(ioc_pool_import("base", NULL, err, cb, cb_arg)), -EINVAL);
    assert_non_null(strstr(g_last_err, "corrupt"));
    assert_int_equal(ioc_bdev_delete("base", NULL), 0);
}

/*
 * A commit cut short leaves page slots with seq N+1 above a superblock at N.
 * After import the next commit is N+1 again: unless it overwrites those slots,
 * its superblock makes the stale ones count, mixing a dead commit into the
 * pool (found by the kill -9 loop: a flushed block read back as zeroes).
 */
static void
forge_uncommitted_vt0_without(const char *name)
{
    int fd = open(g_path, O_RDWR);
    uint8_t sbbuf[IOC_POOL_META_OFFSET], page[IOC_POOL_PAGE_SIZE];
    struct ioc_pool_sb sb;
    struct ioc_pool_meta *m = NULL;
    uint8_t *buf;
    uint64_t len;
    bool found = false;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, sbbuf, sizeof(sbbuf), 0), (ssize_t)sizeof(sbbuf));
    assert_int_equal(ioc_pool_sb_pick(sbbuf, (uint64_t)lseek(fd, 0, SEEK_END), &sb, NULL), 0);
    len = ioc_pool_meta_region_size(&sb);
    buf = malloc(len);
    assert_int_equal(pread(fd, buf, len, 0), (ssize_t)len);
    assert_int_equal(ioc_pool_meta_decode(&sb, buf, len, false, NULL, NULL, &m, NULL), 0);
    for (uint32_t i = 0; i < IOC_POOL_VT_PER_PAGE; i++) {
        if (m->vt[i].id != 0 && strcmp(m->vt[i].name, name) == 0) {
            memset(&m->vt[i], 0, sizeof(m->vt[i]));
            found = true;
        }
    }
    assert_true(found);
    ioc_pool_meta_page_build(m, 0, sb.seq + 1, page);
    assert_int_equal(pwrite(fd, page, sizeof(page),
                            (off_t)ioc_pool_page_offset(0, 1u - m->page_slot[0])),
                     (ssize_t)sizeof(page));
    close(fd);
    ioc_pool_meta_free(m);
    free(buf);
}

static void
test_pool_uncommitted_slot_never_revived(void **state)
{
    unsigned problems;
    char msg[IOC_ERR_MSG_MAX];
    struct ioc_bdev *w;

    (void)state;
    pool_setup(16 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 1 << 20, true, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "w", 1 << 20, true, err, cb, cb_arg)), 0);
    write_pattern("p/w", 0, 4096, 9);
    assert_int_equal(OP(ioc_pool_export(P(), false, err, cb, cb_arg)), 0);
    /* The cut-short commit had deleted w: not committed, so w must stay. */
    forge_uncommitted_vt0_without("w");
    assert_int_equal(file_decode(false, &problems, msg, sizeof(msg)), 0);
    assert_int_equal(OP(ioc_pool_import("base", NULL, err, cb, cb_arg)), 0);
    expect_pattern("p/w", 0, 4096, 9);
    /* A commit that touches only the cluster table (first write to v, FLUSH). */
    write_pattern("p/v", 0, 4096, 3);
    assert_int_equal(vio("p/v", IOC_IO_FLUSH, 0, 0, NULL, 0), 0);
    assert_int_equal(pool_reimport(), 0);
    w = ioc_bdev_get_by_name("p/w");
    assert_non_null(w);
    ioc_bdev_put(&w);
    expect_pattern("p/w", 0, 4096, 9);
    expect_pattern("p/v", 0, 4096, 3);
    assert_int_equal(file_decode(false, &problems, msg, sizeof(msg)), 0);
    pool_teardown();
}

static void
test_pool_attrs_and_resize_persist(void **state)
{
    char val[64];
    struct ioc_err e = {0};

    (void)state;
    pool_setup(16 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 1 << 20, true, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_attr_set(P(), "v", "gen", "5", err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_resize(P(), "v", 2 << 20, err, cb, cb_arg)), 0);
    write_pattern("p/v", (2 << 20) - 4096, 4096, 9);
    assert_int_equal(OP(ioc_pool_volume_snapshot(P(), "v", "s", err, cb, cb_arg)), 0);
    assert_int_equal(pool_reimport(), 0);
    assert_int_equal(ioc_pool_volume_attr_get(P(), "v", "gen", val, sizeof(val), &e), 0);
    assert_string_equal(val, "5");
    assert_int_equal(ioc_pool_volume_attr_get(P(), "s", "gen", val, sizeof(val), &e), -ENOENT);
    expect_pattern("p/v", (2 << 20) - 4096, 4096, 9);
    pool_teardown();
}

/* Submit without waiting; the caller polls res.done. */
static struct ioc_bdev_io *
vio_start(const char *bdev_name, enum ioc_io_type type, uint64_t off, uint64_t len, void *buf,
          struct io_result *res)
{
    struct ioc_bdev *bdev = ioc_bdev_get_by_name(bdev_name);
    struct ioc_bdev_io *io = ioc_bdev_io_alloc(bdev);

    io->iov_single.iov_base = buf;
    io->iov_single.iov_len = len;
    ioc_bdev_io_prep_rw(io, type, off, len, &io->iov_single, 1, 0, io_done, res);
    assert_int_equal(ioc_bdev_io_submit(io), 0);
    ioc_bdev_put(&bdev);
    return io;
}

/*
 * A write in flight when a snapshot is requested ends up in the snapshot; a
 * write submitted while the snapshot waits for it is held and lands in the
 * volume only. Neither changes the snapshot afterwards.
 */
static void
test_pool_snapshot_quiesces_writes(void **state)
{
    struct io_result r1 = {0}, r2 = {0};
    struct ut_op rs = {0};
    struct ioc_err e = {0};
    struct ioc_bdev_io *w1, *w2;
    uint8_t *b1 = malloc(4096), *b2 = malloc(4096);

    (void)state;
    pool_setup(16 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 1 << 20, true, err, cb, cb_arg)), 0);
    write_pattern("p/v", 0, CS, 1);                  /* cluster 0 owned: the hot path */
    fill(b1, 4096, 2);
    fill(b2, 4096, 3);
    w1 = vio_start("p/v", IOC_IO_WRITE, 0, 4096, b1, &r1);
    assert_int_equal(ioc_pool_volume_snapshot(P(), "v", "s", &e, ut_op_done, &rs), 0);
    w2 = vio_start("p/v", IOC_IO_WRITE, 4096, 4096, b2, &r2);
    assert_int_equal(ioc_pool_volume_snapshot(P(), "v", "s2", &e, ut_op_done, &rs),
                     -EBUSY);
    assert_int_equal(ioc_reactor_poll_until(g_r, &r1.done, 5000), 0);
    assert_int_equal(ioc_reactor_poll_until(g_r, &rs.done, 5000), 0);
    assert_int_equal(ioc_reactor_poll_until(g_r, &r2.done, 5000), 0);
    assert_int_equal(r1.status, 0);
    assert_int_equal(r2.status, 0);
    assert_int_equal(rs.calls, 1);
    assert_int_equal(rs.rc, 0);
    ioc_bdev_io_free(w1);
    ioc_bdev_io_free(w2);
    expect_pattern("p/s", 0, 4096, 2);
    expect_pattern("p/s", 4096, 4096, (uint8_t)(1 + 4096 * 7));
    expect_pattern("p/v", 0, 4096, 2);
    expect_pattern("p/v", 4096, 4096, 3);
    free(b1);
    free(b2);
    pool_teardown();
}

/*
 * A fast-path write still in flight when a TRIM frees its cluster must not
 * land in that cluster after another volume got it: the cluster is reused
 * only once that write has completed. The write is held 1 s by an error bdev
 * delay; meanwhile the pool is full, so the only cluster to allocate is it.
 */
static void
test_pool_write_racing_trim_never_hits_reused_cluster(void **state)
{
    struct ioc_bdev_file_opts fo = {.name = "base", .path = g_path, .size = 4 << 20};
    struct ioc_pool_create_opts po = {.name = "p", .bdev = "e", .cluster_size = CS};
    struct ioc_error_rule rule = {.io_types = 1u << IOC_IO_WRITE, .length = CS, .count = 1,
                                  .delay_us = 1000000};
    struct ioc_pool_layout l;
    struct io_result rw = {0};
    struct ioc_bdev_io *w;
    uint8_t *buf = malloc(CS), *wbuf = malloc(4096);
    int rc;

    (void)state;
    unlink(g_path);
    assert_int_equal(ioc_pool_layout_compute(4 << 20, CS, &l, NULL), 0);
    assert_int_equal(ioc_bdev_file_create(&fo, NULL), 0);
    assert_int_equal(ioc_bdev_error_create("e", "base", NULL), 0);
    assert_int_equal(OP(ioc_pool_create(&po, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 64 << 20, true, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "w", 1 << 20, true, err, cb, cb_arg)), 0);
    for (uint32_t i = 0; i < l.n_clusters; i++) {
        write_pattern("p/v", (uint64_t)i * CS, CS, 1); /* cluster i, allocated in order */
    }
    rule.offset = l.data_offset;
    assert_int_equal(ioc_bdev_error_inject("e", &rule, NULL), 0);
    fill(wbuf, 4096, 9);
    w = vio_start("p/v", IOC_IO_WRITE, 0, 4096, wbuf, &rw); /* held in the error bdev */
    assert_int_equal(vio("p/v", IOC_IO_UNMAP, 0, CS, NULL, 0), 0);
    assert_int_equal(vio("p/v", IOC_IO_FLUSH, 0, 0, NULL, 0), 0);
    fill(buf, CS, 5);
    rc = vio("p/w", IOC_IO_WRITE, 0, CS, buf, 0);
    assert_true(rc == 0 || rc == -ENOSPC);
    assert_int_equal(ioc_reactor_poll_until(g_r, &rw.done, 10000), 0);
    ioc_bdev_io_free(w);
    if (rc == -ENOSPC) {
        assert_int_equal(vio("p/w", IOC_IO_WRITE, 0, CS, buf, 0), 0); /* released now */
    }
    expect_pattern("p/w", 0, CS, 5);
    free(buf);
    free(wbuf);
    assert_int_equal(OP(ioc_pool_export(P(), false, err, cb, cb_arg)), 0);
    assert_int_equal(ioc_bdev_delete("e", NULL), 0);
    assert_int_equal(ioc_bdev_delete("base", NULL), 0);
}

static uint64_t
vol_allocated(const char *name)
{
    json_t *vols = ioc_pool_volumes_json(P()), *v;
    uint64_t alloc = UINT64_MAX;
    size_t i;

    json_array_foreach(vols, i, v) {
        if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0) {
            alloc = (uint64_t)json_integer_value(json_object_get(v, "allocated"));
        }
    }
    json_decref(vols);
    return alloc;
}

/* Thick: every cluster allocated (and zero) at creation, kept by TRIM, refused when too big. */
static void
test_pool_thick_volume(void **state)
{
    (void)state;
    pool_setup(4 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "t", 8 * CS, false, err, cb, cb_arg)), 0);
    assert_int_equal(vol_allocated("t"), 8 * CS);
    expect_zero("p/t", 0, 8 * CS);
    write_pattern("p/t", CS, CS, 4);
    assert_int_equal(vio("p/t", IOC_IO_UNMAP, CS, CS, NULL, 0), 0);
    expect_zero("p/t", CS, CS);
    assert_int_equal(vol_allocated("t"), 8 * CS);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "big", 64 << 20, false, err, cb, cb_arg)),
                     -ENOSPC);
    write_pattern("p/t", 2 * CS, 4096, 6);
    assert_int_equal(pool_reimport(), 0);
    assert_int_equal(vol_allocated("t"), 8 * CS);
    expect_pattern("p/t", 2 * CS, 4096, 6);
    expect_zero("p/t", 3 * CS, CS);
    pool_teardown();
}

/* Shrinking into the middle of a cluster, then growing back, reads zeroes past the old end. */
static void
test_pool_shrink_then_grow_reads_zeroes(void **state)
{
    (void)state;
    pool_setup(16 << 20);
    assert_int_equal(OP(ioc_pool_volume_create(P(), "v", 4 * CS, true, err, cb, cb_arg)), 0);
    write_pattern("p/v", 0, 4 * CS, 8);
    assert_int_equal(OP(ioc_pool_volume_resize(P(), "v", CS + 4096, err, cb, cb_arg)), 0);
    assert_int_equal(OP(ioc_pool_volume_resize(P(), "v", 4 * CS, err, cb, cb_arg)), 0);
    expect_pattern("p/v", 0, CS + 4096, 8);
    expect_zero("p/v", CS + 4096, 3 * CS - 4096);
    assert_int_equal(pool_reimport(), 0);
    expect_zero("p/v", CS + 4096, 3 * CS - 4096);
    pool_teardown();
}

static int
setup(void **state)
{
    int rc;

    (void)state;
    rc = ut_setup_dir_reactor(g_dir, &g_r);
    snprintf(g_path, sizeof(g_path), "%s/pool.img", g_dir);
    return rc;
}

static int
teardown(void **state)
{
    (void)state;
    return ut_teardown_dir_reactor(g_dir, &g_r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_meta_round_trip),
        cmocka_unit_test(test_pool_meta_decode_finds_double_use_and_leak),
        cmocka_unit_test(test_pool_attr_set_get_remove),
        cmocka_unit_test(test_pool_create_write_import),
        cmocka_unit_test(test_pool_snapshot_cow_and_clone),
        cmocka_unit_test(test_pool_enospc_then_recovery),
        cmocka_unit_test(test_pool_corrupt_sb_slot_falls_back),
        cmocka_unit_test(test_pool_torn_page_detected),
        cmocka_unit_test(test_pool_uncommitted_slot_never_revived),
        cmocka_unit_test(test_pool_attrs_and_resize_persist),
        cmocka_unit_test(test_pool_snapshot_quiesces_writes),
        cmocka_unit_test(test_pool_write_racing_trim_never_hits_reused_cluster),
        cmocka_unit_test(test_pool_thick_volume),
        cmocka_unit_test(test_pool_shrink_then_grow_reads_zeroes),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
