/*
 * Unit tests for the bdev layer: registry and references, the submit contract
 * (checked ranges, completion exactly once and never inline), and the malloc,
 * file and error modules, each driven on a local reactor.
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
#include <sys/stat.h>
#include <unistd.h>

#include "bdev/bdev_module.h"
#include "bdev/error/bdev_error.h"
#include "bdev/bdev_module.h"
#include "bdev/file/bdev_file.h"
#include "bdev/file/file_map.h"
#include "bdev/malloc/bdev_malloc.h"
#include "core/reactor.h"
#include "tests/unit/util/ut_bdev.h"

static struct ioc_reactor *g_r;
static char g_dir[] = "/tmp/ioc-bdev-test-XXXXXX";

struct io_result {
    bool done;
    int calls;
    int status;
    bool returned; /* submit had returned when the callback ran */
};

static void
io_done(struct ioc_bdev_io *io, void *arg)
{
    struct io_result *res = arg;

    res->calls++;
    res->status = io->status;
    res->done = res->returned;
}

/* Run one IO to completion; returns its status, or the submit error. */
static int
run_io(struct ioc_bdev *bdev, enum ioc_io_type type, uint64_t off, uint64_t len, void *buf,
       uint32_t flags, struct ioc_bdev_io **keep)
{
    struct io_result res = {0};
    struct ioc_bdev_io *io = ioc_bdev_io_alloc(bdev);
    int rc;

    assert_non_null(io);
    io->iov_single.iov_base = buf;
    io->iov_single.iov_len = len;
    ioc_bdev_io_prep_rw(io, type, off, len, buf != NULL ? &io->iov_single : NULL,
                        buf != NULL ? 1 : 0, flags, io_done, &res);
    rc = ioc_bdev_io_submit(io);
    if (rc < 0) {
        ioc_bdev_io_free(io);
        return rc;
    }
    assert_int_equal(res.calls, 0); /* never inline */
    res.returned = true;
    assert_int_equal(ioc_reactor_poll_until(g_r, &res.done, 5000), 0);
    ioc_reactor_poll_once(g_r);
    assert_int_equal(res.calls, 1); /* exactly once */
    if (keep != NULL) {
        *keep = io;
    } else {
        ioc_bdev_io_free(io);
    }
    return res.status;
}

static int
block_status(struct ioc_bdev *bdev, uint64_t off, uint64_t len, struct ioc_extent *ext,
             uint32_t max, uint32_t *nr)
{
    struct io_result res = {0};
    struct ioc_bdev_io *io = ioc_bdev_io_alloc(bdev);
    int rc;

    ioc_bdev_io_prep(io, IOC_IO_BLOCK_STATUS, off, len, 0, io_done, &res);
    io->extents = ext;
    io->max_extents = max;
    rc = ioc_bdev_io_submit(io);
    assert_int_equal(rc, 0);
    res.returned = true;
    assert_int_equal(ioc_reactor_poll_until(g_r, &res.done, 5000), 0);
    *nr = io->nr_extents;
    ioc_bdev_io_free(io);
    return res.status;
}

static int
setup(void **state)
{
    (void)state;
    return ut_setup_dir_reactor(g_dir, &g_r);
}

static int
teardown(void **state)
{
    (void)state;
    return ut_teardown_dir_reactor(g_dir, &g_r);
}

/* ---- registry ---- */

static void
test_ioc_bdev_register_duplicate_and_delete_busy(void **state)
{
    struct ioc_err err = {0};
    struct ioc_bdev *held;

    (void)state;
    assert_int_equal(ioc_bdev_malloc_create("reg0", 1 << 20, 512, &err), 0);
    ioc_err_clear(&err);
    assert_int_equal(ioc_bdev_malloc_create("reg0", 1 << 20, 512, &err), -EEXIST);
    assert_non_null(strstr(err.msg, "already exists"));
    held = ioc_bdev_get_by_name("reg0");
    assert_non_null(held);
    ioc_err_clear(&err);
    assert_int_equal(ioc_bdev_delete("reg0", &err), -EBUSY);
    assert_non_null(strstr(err.msg, "in use"));
    ioc_bdev_put(&held);
    assert_null(held);
    assert_int_equal(ioc_bdev_delete("reg0", NULL), 0);
    assert_null(ioc_bdev_get_by_name("reg0"));
    ioc_err_clear(&err);
    assert_int_equal(ioc_bdev_delete("reg0", &err), -ENOENT);
}

static void
test_ioc_bdev_name_check_rejects_bad_names(void **state)
{
    struct ioc_err err = {0};

    (void)state;
    assert_int_equal(ioc_bdev_name_check("pool-a/vol_1.x:2", NULL), 0);
    assert_int_equal(ioc_bdev_name_check("", &err), -EINVAL);
    ioc_err_clear(&err);
    assert_int_equal(ioc_bdev_name_check("a b", &err), -EINVAL);
    assert_non_null(strstr(err.msg, "' '"));
    assert_int_equal(ioc_bdev_malloc_create("m", 1000, 512, &err), -EINVAL);
}

/* ---- malloc ---- */

static void
test_bdev_malloc_rw_zero_and_range(void **state)
{
    struct ioc_bdev *b;
    static uint8_t buf[8192], back[8192];

    (void)state;
    assert_int_equal(ioc_bdev_malloc_create("m0", 1 << 20, 512, NULL), 0);
    b = ioc_bdev_get_by_name("m0");
    memset(buf, 0xa5, sizeof(buf));
    assert_int_equal(run_io(b, IOC_IO_WRITE, 4096, 8192, buf, 0, NULL), 0);
    assert_int_equal(run_io(b, IOC_IO_READ, 4096, 8192, back, 0, NULL), 0);
    assert_memory_equal(buf, back, sizeof(buf));
    assert_int_equal(run_io(b, IOC_IO_WRITE_ZEROES, 4096, 4096, NULL, 0, NULL), 0);
    assert_int_equal(run_io(b, IOC_IO_READ, 4096, 8192, back, 0, NULL), 0);
    for (int i = 0; i < 4096; i++) {
        assert_int_equal(back[i], 0);
    }
    assert_int_equal(back[4096], 0xa5);
    /* The contract: out of range, misaligned, zero length are refused at submit. */
    assert_int_equal(run_io(b, IOC_IO_READ, (1 << 20) - 512, 1024, back, 0, NULL), -ERANGE);
    assert_int_equal(run_io(b, IOC_IO_READ, 100, 512, back, 0, NULL), -EINVAL);
    assert_int_equal(run_io(b, IOC_IO_READ, 0, 0, back, 0, NULL), -EINVAL);
    assert_int_equal(run_io(b, IOC_IO_FLUSH, 0, 0, NULL, 0, NULL), 0);
    ioc_bdev_put(&b);
    assert_int_equal(ioc_bdev_delete("m0", NULL), 0);
}

/* ---- file ---- */

static void
file_path(char *out, size_t len, const char *leaf)
{
    snprintf(out, len, "%s/%s", g_dir, leaf);
}

static void
test_bdev_file_create_errors(void **state)
{
    struct ioc_bdev_file_opts opts = {.name = "f-err"};
    struct ioc_err err = {0};
    char path[256];
    int fd;

    (void)state;
    file_path(path, sizeof(path), "missing.img");
    opts.path = path;
    assert_int_equal(ioc_bdev_file_create(&opts, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "give size"));
    /* Refuses to shrink a file that holds more than asked for. */
    file_path(path, sizeof(path), "big.img");
    fd = open(path, O_CREAT | O_RDWR, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 2 << 20), 0);
    close(fd);
    opts.size = 1 << 20;
    ioc_err_clear(&err);
    assert_int_equal(ioc_bdev_file_create(&opts, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "shrink"));
    assert_null(ioc_bdev_get_by_name("f-err"));
}

static void
test_bdev_file_rw_fua_trim_and_holes(void **state)
{
    struct ioc_bdev_file_opts opts = {.name = "f0", .size = 4 << 20};
    static uint8_t buf[65536], back[65536];
    struct ioc_extent ext[8];
    struct ioc_bdev *b;
    char path[256];
    uint32_t nr;
    struct stat st;

    (void)state;
    file_path(path, sizeof(path), "f0.img");
    opts.path = path;
    assert_int_equal(ioc_bdev_file_create(&opts, NULL), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4 << 20);
    b = ioc_bdev_get_by_name("f0");
    assert_true(ioc_bdev_supports(b, IOC_IO_UNMAP));
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(i * 7 + 3);
    }
    assert_int_equal(run_io(b, IOC_IO_WRITE, 1 << 20, sizeof(buf), buf, IOC_IO_FUA, NULL), 0);
    assert_int_equal(run_io(b, IOC_IO_READ, 1 << 20, sizeof(buf), back, 0, NULL), 0);
    assert_memory_equal(buf, back, sizeof(buf));
    assert_int_equal(run_io(b, IOC_IO_FLUSH, 0, 0, NULL, 0, NULL), 0);
    /* A sparse file: [0,1M) hole, [1M,1M+64K) data, then hole. */
    assert_int_equal(block_status(b, 0, 4 << 20, ext, 8, &nr), 0);
    assert_true(nr >= 3);
    assert_int_equal(ext[0].flags, IOC_EXTENT_HOLE | IOC_EXTENT_ZERO);
    assert_int_equal(ext[0].length, 1 << 20);
    assert_int_equal(ext[1].flags, 0);
    /* TRIM the data: it reads back as zeroes and reports as a hole. */
    assert_int_equal(run_io(b, IOC_IO_UNMAP, 1 << 20, sizeof(buf), NULL, IOC_IO_FUA, NULL), 0);
    assert_int_equal(run_io(b, IOC_IO_READ, 1 << 20, sizeof(buf), back, 0, NULL), 0);
    for (size_t i = 0; i < sizeof(back); i++) {
        assert_int_equal(back[i], 0);
    }
    assert_int_equal(block_status(b, 0, 4 << 20, ext, 8, &nr), 0);
    assert_int_equal(nr, 1);
    assert_int_equal(ext[0].length, 4 << 20);
    assert_int_equal(ext[0].flags, IOC_EXTENT_HOLE | IOC_EXTENT_ZERO);
    /*
     * WRITE_ZEROES with NO_HOLE allocates (zero range). ext4 reports such
     * unwritten extents as holes to SEEK_DATA, so check the space and the data.
     */
    assert_int_equal(run_io(b, IOC_IO_WRITE, 0, 65536, buf, 0, NULL), 0);
    assert_int_equal(run_io(b, IOC_IO_WRITE_ZEROES, 0, 65536, NULL, IOC_IO_NO_HOLE, NULL), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_blocks * 512 >= 65536);
    assert_int_equal(run_io(b, IOC_IO_READ, 0, 65536, back, 0, NULL), 0);
    for (size_t i = 0; i < sizeof(back); i++) {
        assert_int_equal(back[i], 0);
    }
    assert_int_equal(run_io(b, IOC_IO_PREFETCH, 0, 65536, NULL, 0, NULL), 0);
    ioc_bdev_put(&b);
    assert_int_equal(ioc_bdev_delete("f0", NULL), 0);
}

static void
test_bdev_file_existing_file_keeps_data(void **state)
{
    struct ioc_bdev_file_opts opts = {.name = "f1"};
    static uint8_t back[4096];
    struct ioc_bdev *b;
    char path[256];
    FILE *f;

    (void)state;
    file_path(path, sizeof(path), "f1.img");
    f = fopen(path, "w");
    for (int i = 0; i < 8192; i++) {
        fputc('x', f);
    }
    fclose(f);
    opts.path = path;
    assert_int_equal(ioc_bdev_file_create(&opts, NULL), 0);
    b = ioc_bdev_get_by_name("f1");
    assert_int_equal(ioc_bdev_size(b), 8192);
    assert_int_equal(run_io(b, IOC_IO_READ, 4096, 4096, back, 0, NULL), 0);
    assert_int_equal(back[0], 'x');
    assert_int_equal(back[4095], 'x');
    ioc_bdev_put(&b);
    assert_int_equal(ioc_bdev_delete("f1", NULL), 0);
}

static json_int_t
file_counter(struct ioc_bdev *b, const char *key)
{
    json_t *obj = json_object();
    json_int_t v;

    b->ops->dump_json(b, obj);
    v = json_integer_value(json_object_get(obj, key));
    json_decref(obj);
    return v;
}

/* A cached READ is copied out of the mapping; after the file shrinks behind
 * the bdev's back, the same READ gives zeroes past the end, as before. */
static void
test_bdev_file_mapped_reads(void **state)
{
    struct ioc_bdev_file_opts opts = {.name = "f2"};
    static uint8_t data[4 << 20], back[8192];
    struct ioc_bdev *b;
    char path[256];
    int fd;

    (void)state;
    file_path(path, sizeof(path), "f2.img");
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7 + i / 4096);
    }
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data)); /* cached */
    opts.path = path;
    assert_int_equal(ioc_bdev_file_create(&opts, NULL), 0);
    b = ioc_bdev_get_by_name("f2");
    assert_int_equal(run_io(b, IOC_IO_READ, (1 << 20) + 512, sizeof(back), back, 0, NULL), 0);
    assert_memory_equal(back, data + (1 << 20) + 512, sizeof(back));
    assert_int_equal(file_counter(b, "reads_mapped"), 1);
    assert_int_equal(ftruncate(fd, 0), 0);
    memset(back, 0xee, sizeof(back));
    assert_int_equal(run_io(b, IOC_IO_READ, 1 << 20, sizeof(back), back, 0, NULL), 0);
    for (size_t i = 0; i < sizeof(back); i++) {
        assert_int_equal(back[i], 0);
    }
    assert_int_equal(file_counter(b, "reads_mapped"), 1);
    ioc_bdev_put(&b);
    assert_int_equal(ioc_bdev_delete("f2", NULL), 0);
    close(fd);
}

/* A copy out of a mapped page that no longer has a file behind it: SIGBUS,
 * caught, -EFAULT; the process goes on. */
static void
test_file_map_copy_out_sigbus(void **state)
{
    static uint8_t data[3 * 4096], back[4096];
    struct iovec iov = {back, sizeof(back)};
    struct file_map m;
    char path[256];
    int fd;

    (void)state;
    file_path(path, sizeof(path), "map.img");
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    memset(data, 0x5c, sizeof(data));
    assert_int_equal(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    assert_int_equal(file_map_open(&m, fd, sizeof(data), 4096), 0);
    assert_int_equal(file_map_copy_out(&m, 4096, &iov, 1), 0);
    assert_memory_equal(back, data, sizeof(back));
    assert_int_equal(ftruncate(fd, 4096), 0);
    assert_int_equal(file_map_copy_out(&m, 8192, &iov, 1), -EFAULT);
    assert_int_equal(file_map_copy_out(&m, 4096, &iov, 1), -EFAULT); /* again: not blocked */
    assert_int_equal(file_map_copy_out(&m, 0, &iov, 1), 0);
    file_map_close(&m);
    close(fd);
}

/* ---- error ---- */

static void
test_bdev_error_inject_after_count_and_delay(void **state)
{
    struct ioc_error_rule rule = {.io_types = 1u << IOC_IO_WRITE, .error = -EIO, .after = 2,
                                  .count = 1};
    static uint8_t buf[4096];
    struct ioc_err err = {0};
    struct ioc_bdev *e;

    (void)state;
    assert_int_equal(ioc_bdev_malloc_create("eb", 1 << 20, 512, NULL), 0);
    assert_int_equal(ioc_bdev_error_create("e0", "nope", &err), -ENOENT);
    assert_int_equal(ioc_bdev_error_create("e0", "eb", NULL), 0);
    /* The base is held by the stacked bdev. */
    assert_int_equal(ioc_bdev_delete("eb", NULL), -EBUSY);
    assert_int_equal(ioc_bdev_error_inject("e0", &rule, NULL), 0);
    e = ioc_bdev_get_by_name("e0");
    assert_int_equal(run_io(e, IOC_IO_WRITE, 0, 4096, buf, 0, NULL), 0);
    assert_int_equal(run_io(e, IOC_IO_WRITE, 0, 4096, buf, 0, NULL), 0);
    assert_int_equal(run_io(e, IOC_IO_WRITE, 0, 4096, buf, 0, NULL), -EIO);
    assert_int_equal(run_io(e, IOC_IO_WRITE, 0, 4096, buf, 0, NULL), 0); /* count 1: expired */
    assert_int_equal(run_io(e, IOC_IO_READ, 0, 4096, buf, 0, NULL), 0);
    /* A delay-only rule on a range: IO outside passes, IO inside waits then passes. */
    assert_int_equal(ioc_bdev_error_clear("e0", NULL), 0);
    rule = (struct ioc_error_rule){.offset = 8192, .length = 4096, .delay_us = 20000};
    assert_int_equal(ioc_bdev_error_inject("e0", &rule, NULL), 0);
    {
        uint64_t t0 = ioc_now_ns();
        assert_int_equal(run_io(e, IOC_IO_READ, 0, 4096, buf, 0, NULL), 0);
        assert_true(ioc_now_ns() - t0 < 20000000ull);
        t0 = ioc_now_ns();
        assert_int_equal(run_io(e, IOC_IO_READ, 8192, 4096, buf, 0, NULL), 0);
        assert_true(ioc_now_ns() - t0 >= 20000000ull);
    }
    ioc_err_clear(&err);
    assert_int_equal(ioc_bdev_error_inject("eb", &rule, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not an error bdev"));
    ioc_bdev_put(&e);
    assert_int_equal(ioc_bdev_delete("e0", NULL), 0);
    assert_int_equal(ioc_bdev_delete("eb", NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ioc_bdev_register_duplicate_and_delete_busy),
        cmocka_unit_test(test_ioc_bdev_name_check_rejects_bad_names),
        cmocka_unit_test(test_bdev_malloc_rw_zero_and_range),
        cmocka_unit_test(test_bdev_file_create_errors),
        cmocka_unit_test(test_bdev_file_rw_fua_trim_and_holes),
        cmocka_unit_test(test_bdev_file_existing_file_keeps_data),
        cmocka_unit_test(test_bdev_file_mapped_reads),
        cmocka_unit_test(test_file_map_copy_out_sigbus),
        cmocka_unit_test(test_bdev_error_inject_after_count_and_delay),
    };

    return cmocka_run_group_tests_name("bdev", tests, setup, teardown);
}
