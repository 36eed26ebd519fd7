/*
 * tests/unit/nexus/nexus_test.c - the nexus on a local reactor, with error
 * bdevs over malloc bdevs as children: fan-out, faults and their record,
 * read retries, full and partial rebuilds (also across a restart) under
 * concurrent writes.
 */
#include "ioc/common.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "bdev/bdev.h"
#include "bdev/bdev_module.h"
#include "bdev/error/bdev_error.h"
#include "bdev/malloc/bdev_malloc.h"
#include "core/reactor.h"
#include "tests/unit/util/ut_bdev.h"
#include "nexus/nexus.h"

#define DEV_SIZE (4u << 20)
#define SEG      (64u * 1024)
#define NSEG     (DEV_SIZE / SEG)

static struct ioc_reactor *g_r;
static char g_dir[] = "/tmp/nexus_test.XXXXXX";
static char g_state[256];

/* ---- helpers ---- */

struct io_res {
    bool done;
    int calls;
    int status;
};

static void
io_done(struct ioc_bdev_io *io, void *cb_arg)
{
    struct io_res *res = cb_arg;

    res->done = true;
    res->calls++;
    res->status = io->status;
    ioc_bdev_io_free(io);
}

static int
do_io(const char *name, enum ioc_io_type type, uint64_t off, uint64_t len, void *buf,
      uint32_t flags)
{
    return ut_bdev_rw(g_r, name, type, off, len, buf, flags);
}

static void
fill(void *buf, uint64_t len, uint8_t seed)
{
    for (uint64_t i = 0; i < len; i++) {
        ((uint8_t *)buf)[i] = (uint8_t)(seed + i * 7);
    }
}

static void
poll_ms(unsigned ms)
{
    bool never = false;

    ioc_reactor_poll_until(g_r, &never, ms);
}

static json_t *
nexus_info(void)
{
    json_t *arr = NULL, *o;
    struct ioc_err err = {0};

    assert_int_equal(ioc_nexus_list("nx", &arr, &err), 0);
    o = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return o;
}

static const char *
child_state(json_t *info, unsigned i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(info, "children"), i), "state"));
}

/* The state of child i in the nexus, by value. */
static void
expect_child_state(unsigned i, const char *want)
{
    json_t *info = nexus_info();

    assert_string_equal(child_state(info, i), want);
    json_decref(info);
}

static json_int_t
child_int(unsigned i, const char *key)
{
    json_t *info = nexus_info();
    json_int_t v = json_integer_value(
        json_object_get(json_array_get(json_object_get(info, "children"), i), key));

    json_decref(info);
    return v;
}

static void
wait_child_state(unsigned i, const char *want)
{
    for (int k = 0; k < 2000; k++) {
        json_t *info = nexus_info();
        bool ok = strcmp(child_state(info, i), want) == 0;
        json_decref(info);
        if (ok) {
            return;
        }
        poll_ms(5);
    }
    expect_child_state(i, want);
}

/* Until the record has caught up with the nexus. */
static void
wait_persisted(void)
{
    for (int k = 0; k < 2000; k++) {
        json_t *info = nexus_info();
        bool ok = json_integer_value(json_object_get(info, "persisted")) >=
                  json_integer_value(json_object_get(info, "version"));
        json_decref(info);
        if (ok) {
            return;
        }
        poll_ms(5);
    }
    fail_msg("the record never caught up");
}

static const char *
saved_child_state(unsigned i)
{
    static char buf[32];
    json_t *o;

    wait_persisted();
    o = json_load_file(g_state, 0, NULL);

    assert_non_null(o);
    snprintf(buf, sizeof(buf), "%s",
             json_string_value(json_object_get(
                 json_array_get(json_object_get(o, "children"), i), "state")));
    json_decref(o);
    return buf;
}

static void
inject(const char *name, enum ioc_io_type type, int error, uint64_t count)
{
    struct ioc_error_rule rule = {.io_types = 1u << type, .error = error, .count = count};
    struct ioc_err err = {0};

    assert_int_equal(ioc_bdev_error_inject(name, &rule, &err), 0);
}

static void
expect_children_equal(void)
{
    uint8_t *a = malloc(DEV_SIZE), *b = malloc(DEV_SIZE);

    assert_int_equal(do_io("m0", IOC_IO_READ, 0, DEV_SIZE, a, 0), 0);
    for (int i = 1; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof(name), "m%d", i);
        assert_int_equal(do_io(name, IOC_IO_READ, 0, DEV_SIZE, b, 0), 0);
        assert_memory_equal(a, b, DEV_SIZE);
    }
    free(a);
    free(b);
}

static int
nexus_make(bool purge_first)
{
    const char *children[] = {"e0", "e1", "e2"};
    struct ioc_nexus_opts o = {
        .name = "nx",
        .children = children,
        .nr_children = 3,
        .generation = 1,
        .state_path = g_state,
        .segment_size = SEG,
        .no_auto_return = true,
        .reactor = g_r,
    };
    struct ioc_err err = {0};

    if (purge_first) {
        unlink(g_state);
    }
    return ioc_nexus_create(&o, &err);
}

static int
setup_nexus(void **state)
{
    struct ioc_err err = {0};

    (void)state;
    for (int i = 0; i < 3; i++) {
        char m[8], e[8];
        snprintf(m, sizeof(m), "m%d", i);
        snprintf(e, sizeof(e), "e%d", i);
        assert_int_equal(ioc_bdev_malloc_create(m, DEV_SIZE, 512, &err), 0);
        assert_int_equal(ioc_bdev_error_create(e, m, &err), 0);
    }
    assert_int_equal(nexus_make(true), 0);
    return 0;
}

static int
teardown_nexus(void **state)
{
    struct ioc_err err = {0};

    (void)state;
    ioc_nexus_destroy("nx", true, &err);
    for (int i = 0; i < 3; i++) {
        char m[8], e[8];
        snprintf(m, sizeof(m), "m%d", i);
        snprintf(e, sizeof(e), "e%d", i);
        assert_int_equal(ioc_bdev_delete(e, &err), 0);
        assert_int_equal(ioc_bdev_delete(m, &err), 0);
    }
    return 0;
}

/* ---- tests ---- */

static void
test_nexus_io_mirrors_writes(void **state)
{
    uint8_t *buf = malloc(SEG), *rd = malloc(SEG);

    (void)state;
    fill(buf, SEG, 3);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, SEG, SEG, buf, IOC_IO_FUA), 0);
    assert_int_equal(do_io("nx", IOC_IO_FLUSH, 0, 0, NULL, 0), 0);
    for (int i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof(name), "m%d", i);
        assert_int_equal(do_io(name, IOC_IO_READ, SEG, SEG, rd, 0), 0);
        assert_memory_equal(buf, rd, SEG);
    }
    for (int i = 0; i < 6; i++) { /* round robin: every child serves */
        memset(rd, 0, SEG);
        assert_int_equal(do_io("nx", IOC_IO_READ, SEG, SEG, rd, 0), 0);
        assert_memory_equal(buf, rd, SEG);
    }
    assert_int_equal(do_io("nx", IOC_IO_WRITE_ZEROES, SEG, 4096, NULL, 0), 0);
    assert_int_equal(do_io("m2", IOC_IO_READ, SEG, SEG, rd, 0), 0);
    assert_int_equal(rd[0], 0);
    assert_int_equal(rd[4095], 0);
    expect_children_equal();
    free(buf);
    free(rd);
}

static void
test_nexus_child_fault_on_write_error(void **state)
{
    uint8_t *buf = malloc(SEG);
    json_t *info;

    (void)state;
    fill(buf, SEG, 9);
    inject("e1", IOC_IO_WRITE, -EIO, 1);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 0, SEG, buf, 0), 0);
    expect_child_state(1, "faulted");
    assert_int_equal(child_int(1, "faults"), 1);
    {
        /* Recorded before the ack: read the file as it is, without waiting. */
        json_t *o = json_load_file(g_state, 0, NULL);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(o, "children"), 1), "state")),
                            "faulted");
        json_decref(o);
    }
    info = nexus_info();
    assert_string_equal(json_string_value(json_object_get(info, "state")), "degraded");
    json_decref(info);
    /* Later writes skip it and mark its log; it is never faulted twice. */
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 3 * SEG, SEG, buf, 0), 0);
    assert_int_equal(child_int(1, "faults"), 1);
    assert_int_equal(child_int(1, "dirty_segments"), 2);
    free(buf);
}

/* A child that fails also gets the segments no FLUSH has covered yet. */
static void
test_nexus_fault_includes_unflushed(void **state)
{
    uint8_t *buf = malloc(SEG);

    (void)state;
    fill(buf, SEG, 6);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 1 * SEG, SEG, buf, 0), 0);
    assert_int_equal(do_io("nx", IOC_IO_FLUSH, 0, 0, NULL, 0), 0);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 5 * SEG, SEG, buf, 0), 0);
    inject("e1", IOC_IO_WRITE, -EIO, 1);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 7 * SEG, SEG, buf, 0), 0);
    expect_child_state(1, "faulted");
    assert_int_equal(child_int(1, "dirty_segments"), 2); /* 5 (unflushed) and 7, not 1 */
    free(buf);
}

static void
test_nexus_read_error_retried(void **state)
{
    uint8_t *buf = malloc(4096), *rd = malloc(4096);

    (void)state;
    fill(buf, 4096, 1);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 0, 4096, buf, 0), 0);
    inject("e0", IOC_IO_READ, -EIO, 1);
    inject("e1", IOC_IO_READ, -EIO, 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(do_io("nx", IOC_IO_READ, 0, 4096, rd, 0), 0);
        assert_memory_equal(buf, rd, 4096);
    }
    expect_child_state(0, "faulted");
    expect_child_state(1, "faulted");
    expect_child_state(2, "online");
    free(buf);
    free(rd);
}

static void
test_nexus_all_children_fail(void **state)
{
    uint8_t *buf = malloc(4096);
    json_t *info;

    (void)state;
    fill(buf, 4096, 2);
    inject("e0", IOC_IO_WRITE, -EIO, 0);
    inject("e1", IOC_IO_WRITE, -EIO, 0);
    inject("e2", IOC_IO_WRITE, -EIO, 0);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 0, 4096, buf, 0), -EIO);
    info = nexus_info();
    assert_string_equal(json_string_value(json_object_get(info, "state")), "faulted");
    json_decref(info);
    assert_int_equal(do_io("nx", IOC_IO_READ, 0, 4096, buf, 0), -EIO);
    /* The record names the last child that was online: the recovery source. */
    wait_persisted();
    {
        json_t *o = json_load_file(g_state, 0, NULL);
        json_t *ch = json_object_get(o, "children");
        unsigned in_sync = 0;
        for (unsigned i = 0; i < 3; i++) {
            in_sync += json_is_true(json_object_get(json_array_get(ch, i), "in_sync"));
        }
        assert_int_equal(in_sync, 1);
        json_decref(o);
    }
    free(buf);
}

/* Writes in rounds at distinct blocks (no two in flight overlap), asynchronously. */
static void
write_rounds(unsigned rounds, uint8_t seed)
{
    enum { PER_ROUND = 16, BLK = 4096 };
    static uint8_t bufs[PER_ROUND][BLK];
    struct ioc_bdev *bdev = ioc_bdev_get_by_name("nx");

    for (unsigned r = 0; r < rounds; r++) {
        struct io_res res[PER_ROUND] = {0};
        for (unsigned k = 0; k < PER_ROUND; k++) {
            struct ioc_bdev_io *io = ioc_bdev_io_alloc(bdev);
            uint64_t blk = ((uint64_t)rand() % (DEV_SIZE / BLK / PER_ROUND)) * PER_ROUND + k;
            fill(bufs[k], BLK, (uint8_t)(seed + r + k));
            io->iov_single.iov_base = bufs[k];
            io->iov_single.iov_len = BLK;
            ioc_bdev_io_prep_rw(io, IOC_IO_WRITE, blk * BLK, BLK, &io->iov_single, 1, 0, io_done,
                                &res[k]);
            assert_int_equal(ioc_bdev_io_submit(io), 0);
        }
        for (unsigned k = 0; k < PER_ROUND; k++) {
            assert_int_equal(ioc_reactor_poll_until(g_r, &res[k].done, 10000), 0);
            assert_int_equal(res[k].status, 0);
        }
    }
    ioc_bdev_put(&bdev);
}

static void
test_nexus_full_rebuild_under_writes(void **state)
{
    struct ioc_err err = {0};
    uint8_t *buf = malloc(DEV_SIZE);

    (void)state;
    fill(buf, DEV_SIZE, 5);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 0, DEV_SIZE, buf, 0), 0);
    assert_int_equal(ioc_nexus_child_remove("nx", "e2", &err), 0);
    memset(buf, 0xee, DEV_SIZE); /* a stale replica */
    assert_int_equal(do_io("m2", IOC_IO_WRITE, 0, DEV_SIZE, buf, 0), 0);
    assert_int_equal(ioc_nexus_child_add("nx", "e2", &err), 0);
    write_rounds(40, 11);
    wait_child_state(2, "online");
    write_rounds(4, 50);
    expect_children_equal();
    free(buf);
}

static void
test_nexus_partial_rebuild_after_restart(void **state)
{
    struct ioc_err err = {0};
    uint8_t *buf = malloc(SEG);
    json_t *info, *rb;

    (void)state;
    fill(buf, SEG, 7);
    assert_int_equal(ioc_nexus_child_fault("nx", "e1", &err), 0);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 5 * SEG, SEG, buf, 0), 0);
    assert_int_equal(do_io("nx", IOC_IO_WRITE, 9 * SEG + 512, 1024, buf, 0), 0);
    assert_int_equal(child_int(1, "dirty_segments"), 2);
    /* Restart: the record brings the log back. */
    assert_int_equal(ioc_nexus_destroy("nx", false, &err), 0);
    assert_int_equal(nexus_make(false), 0);
    wait_child_state(1, "online");
    info = nexus_info();
    rb = json_object_get(json_array_get(json_object_get(info, "children"), 1), "rebuild");
    assert_string_equal(json_string_value(json_object_get(rb, "type")), "partial");
    assert_int_equal(json_integer_value(json_object_get(rb, "segments_total")), 2);
    assert_int_equal(json_integer_value(json_object_get(rb, "segments_done")), 2);
    json_decref(info);
    assert_string_equal(saved_child_state(1), "online");
    expect_children_equal();
    free(buf);
}

static void
test_nexus_stale_generation_refused(void **state)
{
    const char *children[] = {"e0"};
    struct ioc_nexus_opts o = {
        .name = "nx2", .children = children, .nr_children = 1, .generation = 0,
        .state_path = g_state, .segment_size = SEG, .reactor = g_r,
    };
    struct ioc_err err = {0};

    (void)state;
    assert_int_equal(ioc_nexus_create(&o, &err), -ESTALE);
}

/* A damaged record is refused with a message, or read as "copy everything", never a crash. */
static void
test_nexus_record_damaged(void **state)
{
    static const char *const bad[] = {
        "{not json",
        "[]",
        "{\"generation\": 1, \"children\": 7}",
        "{\"generation\": 1, \"size\": 4194304, \"segment_size\": 65536, "
        "\"children\": [{\"uri\": 3}]}",
    };
    struct ioc_err err = {0};
    FILE *f;

    (void)state;
    assert_int_equal(ioc_nexus_destroy("nx", false, &err), 0);
    for (size_t i = 0; i < IOC_ARRAY_SIZE(bad); i++) {
        f = fopen(g_state, "w");
        fputs(bad[i], f);
        fclose(f);
        if (nexus_make(false) == 0) {
            assert_int_equal(ioc_nexus_destroy("nx", false, &err), 0);
        }
    }
    /* A dirty log of the wrong length: that child copies everything. */
    f = fopen(g_state, "w");
    fputs("{\"generation\": 1, \"size\": 4194304, \"segment_size\": 65536, \"children\": ["
          "{\"uri\": \"e0\", \"state\": \"online\"}, "
          "{\"uri\": \"e1\", \"state\": \"faulted\", \"dirty\": \"zz\"}, "
          "{\"uri\": \"e2\", \"state\": \"online\"}]}", f);
    fclose(f);
    assert_int_equal(nexus_make(false), 0);
    wait_child_state(1, "online");
    {
        json_t *info = nexus_info();
        json_t *rb = json_object_get(json_array_get(json_object_get(info, "children"), 1),
                                     "rebuild");
        assert_string_equal(json_string_value(json_object_get(rb, "type")), "full");
        json_decref(info);
    }
}

static void
test_nexus_child_fault_last_refused(void **state)
{
    struct ioc_err err = {0};

    (void)state;
    assert_int_equal(ioc_nexus_child_fault("nx", "e0", &err), 0);
    assert_int_equal(ioc_nexus_child_fault("nx", "e1", &err), 0);
    assert_int_equal(ioc_nexus_child_fault("nx", "e2", &err), -EBUSY);
    assert_int_equal(ioc_nexus_child_online("nx", "e0", &err), 0);
    wait_child_state(0, "online");
    expect_child_state(1, "faulted");
}

/* ---- a source that returns a flipped byte on every other read ---- */

struct flip_disk {
    struct ioc_bdev bdev;
    struct ioc_bdev *base;
    unsigned reads;
};

static void
flip_done(struct ioc_bdev_io *child, void *cb_arg)
{
    struct ioc_bdev_io *io = cb_arg;
    struct flip_disk *d = io->bdev->ctx;

    if (child->status == 0 && io->type == IOC_IO_READ && (d->reads++ % 2) == 0) {
        ((uint8_t *)io->iov[0].iov_base)[0] ^= 0xff;
    }
    io->nr_extents = child->nr_extents;
    ioc_bdev_io_complete(io, child->status);
    ioc_bdev_io_free(child);
}

static void
flip_submit(struct ioc_bdev_io *io)
{
    struct flip_disk *d = io->bdev->ctx;
    struct ioc_bdev_io *child = ioc_bdev_io_alloc(d->base);

    ioc_bdev_io_prep_rw(child, io->type, io->offset, io->length, io->iov, io->iovcnt, io->flags,
                        flip_done, io);
    child->extents = io->extents;
    child->max_extents = io->max_extents;
    assert_int_equal(ioc_bdev_io_submit(child), 0);
}

static bool
flip_supports(struct ioc_bdev *bdev, enum ioc_io_type type)
{
    (void)bdev;
    return type == IOC_IO_READ || type == IOC_IO_WRITE || type == IOC_IO_FLUSH;
}

static void
flip_destruct(struct ioc_bdev *bdev)
{
    struct flip_disk *d = bdev->ctx;

    ioc_bdev_put(&d->base);
    free(d);
}

static const struct ioc_bdev_ops flip_ops = {
    .submit = flip_submit, .supports = flip_supports, .destruct = flip_destruct,
};

static void
flip_create(const char *name, const char *base)
{
    struct flip_disk *d = calloc(1, sizeof(*d));
    struct ioc_bdev *bdev = &d->bdev;
    struct ioc_err err = {0};

    d->base = ioc_bdev_get_by_name(base);
    ioc_bdev_init(bdev, name, "flip", &flip_ops, d, d->base->size, d->base->block_size);
    assert_int_equal(ioc_bdev_register(bdev, &err), 0);
    ioc_bdev_put(&bdev);
}

static void
test_nexus_rebuild_verify_mismatch_faults(void **state)
{
    const char *children[] = {"f0", "e1"};
    char path[300];
    struct ioc_nexus_opts o = {
        .name = "nv", .children = children, .nr_children = 2, .generation = 1,
        .state_path = path, .segment_size = SEG, .no_auto_return = true,
        .rebuild_verify = true, .reactor = g_r,
    };
    struct ioc_err err = {0};
    uint8_t *buf = malloc(SEG);
    json_t *arr = NULL, *c;

    (void)state;
    snprintf(path, sizeof(path), "%s/nv.json", g_dir);
    flip_create("f0", "m0");
    assert_int_equal(ioc_nexus_create(&o, &err), 0);
    assert_int_equal(ioc_nexus_child_fault("nv", "e1", &err), 0);
    fill(buf, SEG, 4);
    assert_int_equal(do_io("nv", IOC_IO_WRITE, 2 * SEG, SEG, buf, 0), 0);
    assert_int_equal(ioc_nexus_child_online("nv", "e1", &err), 0);
    for (int k = 0; k < 400; k++) {
        poll_ms(5);
        assert_int_equal(ioc_nexus_list("nv", &arr, &err), 0);
        c = json_array_get(json_object_get(json_array_get(arr, 0), "children"), 1);
        if (strcmp(json_string_value(json_object_get(c, "state")), "rebuilding") != 0) {
            break;
        }
        json_decref(arr);
        arr = NULL;
    }
    assert_non_null(arr);
    assert_string_equal(json_string_value(json_object_get(c, "state")), "faulted");
    assert_true(json_is_true(json_object_get(c, "admin_fault")));
    assert_non_null(json_string_value(json_object_get(json_object_get(c, "rebuild"), "result")));
    json_decref(arr);
    poll_ms(2200); /* no probe brings it back */
    assert_int_equal(ioc_nexus_list("nv", &arr, &err), 0);
    c = json_array_get(json_object_get(json_array_get(arr, 0), "children"), 1);
    assert_string_equal(json_string_value(json_object_get(c, "state")), "faulted");
    json_decref(arr);
    assert_int_equal(ioc_nexus_destroy("nv", true, &err), 0);
    assert_int_equal(ioc_bdev_delete("f0", &err), 0);
    free(buf);
}

/* A rate limit parks the rebuild; removing the child stops it cleanly. */
static void
test_nexus_rebuild_rate_limit(void **state)
{
    const char *children[] = {"e0", "e1"};
    char path[300];
    struct ioc_nexus_opts o = {
        .name = "nr", .children = children, .nr_children = 2, .segment_size = SEG,
        .state_path = path, .rebuild_rate = 1, .no_auto_return = true, .reactor = g_r,
    };
    struct ioc_err err = {0};
    json_t *arr = NULL, *c, *rb;

    (void)state;
    snprintf(path, sizeof(path), "%s/nr.json", g_dir);
    assert_int_equal(ioc_nexus_create(&o, &err), 0);
    assert_int_equal(ioc_nexus_child_remove("nr", "e1", &err), 0);
    assert_int_equal(ioc_nexus_child_add("nr", "e1", &err), 0);
    poll_ms(300); /* 1 byte/s: the first round of segments, then nothing for days */
    assert_int_equal(ioc_nexus_list("nr", &arr, &err), 0);
    c = json_array_get(json_object_get(json_array_get(arr, 0), "children"), 1);
    rb = json_object_get(c, "rebuild");
    assert_string_equal(json_string_value(json_object_get(c, "state")), "rebuilding");
    assert_true(json_integer_value(json_object_get(rb, "segments_done")) <= 8);
    assert_int_equal(json_integer_value(json_object_get(rb, "segments_total")), NSEG);
    json_decref(arr);
    assert_int_equal(ioc_nexus_child_remove("nr", "e1", &err), 0);
    assert_int_equal(ioc_nexus_destroy("nr", true, &err), 0);
}

/* Submit one 4 KiB write to nx at off without waiting for it. */
static void
write_async(uint64_t off, void *buf, struct io_res *res)
{
    struct ioc_bdev *bdev = ioc_bdev_get_by_name("nx");
    struct ioc_bdev_io *io = ioc_bdev_io_alloc(bdev);

    io->iov_single.iov_base = buf;
    io->iov_single.iov_len = 4096;
    ioc_bdev_io_prep_rw(io, IOC_IO_WRITE, off, 4096, &io->iov_single, 1, 0, io_done, res);
    assert_int_equal(ioc_bdev_io_submit(io), 0);
    ioc_bdev_put(&bdev);
}

static bool
quiesce_flag(const char *key)
{
    json_t *info = nexus_info();
    bool v = json_is_true(json_object_get(json_object_get(info, "quiesce"), key));

    json_decref(info);
    return v;
}

/*
 * Quiesce drains the writes in flight, then holds new ones (not failed)
 * while reads go on; resume starts them. An expired quiesce lets writes go
 * by itself and resume says -ETIMEDOUT.
 */
static void
test_nexus_quiesce_holds_writes_until_resume(void **state)
{
    static uint8_t a[4096], b[4096], rd[4096];
    struct io_res r1 = {0}, r2 = {0}, r3 = {0};
    struct ioc_err err = {0};

    (void)state;
    fill(a, sizeof(a), 1);
    fill(b, sizeof(b), 2);
    write_async(0, a, &r1); /* in flight when the quiesce starts: it must drain */
    assert_int_equal(ioc_nexus_quiesce("nx", 5000, &err), 0);
    assert_true(r1.done);
    assert_int_equal(r1.status, 0);
    assert_true(quiesce_flag("active") && quiesce_flag("drained"));
    assert_int_equal(ioc_nexus_quiesce("nx", 5000, &err), -EBUSY);
    write_async(0, b, &r2);
    poll_ms(50);
    assert_false(r2.done); /* held, not failed */
    assert_int_equal(do_io("nx", IOC_IO_READ, 0, 4096, rd, 0), 0);
    assert_memory_equal(rd, a, 4096);
    assert_int_equal(do_io("m2", IOC_IO_READ, 0, 4096, rd, 0), 0);
    assert_memory_equal(rd, a, 4096); /* no child got the held write */
    assert_int_equal(ioc_nexus_resume("nx", &err), 0);
    assert_int_equal(ioc_reactor_poll_until(g_r, &r2.done, 5000), 0);
    assert_int_equal(r2.status, 0);
    assert_int_equal(r2.calls, 1);
    expect_children_equal();
    assert_int_equal(ioc_nexus_resume("nx", &err), -EINVAL);

    /* Expiry: the timer lets the held write go, resume reports it. */
    assert_int_equal(ioc_nexus_quiesce("nx", 30, &err), 0);
    write_async(4096, a, &r3);
    assert_int_equal(ioc_reactor_poll_until(g_r, &r3.done, 5000), 0);
    assert_int_equal(r3.status, 0);
    assert_true(quiesce_flag("expired"));
    assert_false(quiesce_flag("active"));
    assert_int_equal(ioc_nexus_resume("nx", &err), -ETIMEDOUT);
    assert_false(quiesce_flag("expired"));
    expect_children_equal();
}

/* A nexus destroyed while quiesced lets its held writes go (no hang). */
static void
test_nexus_quiesce_then_destroy(void **state)
{
    static uint8_t a[4096];
    struct io_res r = {0};
    struct ioc_err err = {0};

    (void)state;
    assert_int_equal(ioc_nexus_quiesce("nx", 60000, &err), 0);
    write_async(0, a, &r);
    poll_ms(10);
    assert_false(r.done);
    assert_int_equal(ioc_nexus_destroy("nx", true, &err), 0);
    assert_int_equal(ioc_reactor_poll_until(g_r, &r.done, 5000), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(nexus_make(true), 0); /* for the teardown */
}

static int
setup(void **state)
{
    int rc;

    (void)state;
    rc = ut_setup_dir_reactor(g_dir, &g_r);
    snprintf(g_state, sizeof(g_state), "%s/nx.json", g_dir);
    srand(1);
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
        cmocka_unit_test_setup_teardown(test_nexus_io_mirrors_writes, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_child_fault_on_write_error, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_fault_includes_unflushed, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_read_error_retried, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_all_children_fail, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_full_rebuild_under_writes, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_partial_rebuild_after_restart, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_stale_generation_refused, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_record_damaged, setup_nexus, teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_child_fault_last_refused, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_rebuild_verify_mismatch_faults, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_rebuild_rate_limit, setup_nexus,
                                        teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_quiesce_holds_writes_until_resume,
                                        setup_nexus, teardown_nexus),
        cmocka_unit_test_setup_teardown(test_nexus_quiesce_then_destroy, setup_nexus,
                                        teardown_nexus),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
