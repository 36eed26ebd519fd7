/*
 * tests/unit/util/ut_bdev.c - see ut_bdev.h.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/unit/util/ut_bdev.h"

#define UT_WAIT_MS 10000

int
ut_setup_dir_reactor(char *dir_template, struct ioc_reactor **r)
{
    if (mkdtemp(dir_template) == NULL) {
        return -errno;
    }
    return ioc_reactor_create_local(NULL, r);
}

int
ut_teardown_dir_reactor(const char *dir, struct ioc_reactor **r)
{
    char cmd[512];

    ioc_reactor_destroy_local(r);
    ioc_bdev_io_cache_drain();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

struct ut_io {
    bool done;
    int calls;
    int status;
};

static void
ut_io_done(struct ioc_bdev_io *io, void *arg)
{
    struct ut_io *res = arg;

    res->calls++;
    res->status = io->status;
    res->done = true;
}

int
ut_bdev_rw(struct ioc_reactor *r, const char *name, enum ioc_io_type type, uint64_t off,
           uint64_t len, void *buf, uint32_t flags)
{
    struct ioc_bdev *bdev = ioc_bdev_get_by_name(name);
    struct ut_io res = {0};
    struct ioc_bdev_io *io;
    int rc;

    if (bdev == NULL) {
        return -ENOENT;
    }
    io = ioc_bdev_io_alloc(bdev);
    assert_non_null(io);
    io->iov_single.iov_base = buf;
    io->iov_single.iov_len = len;
    ioc_bdev_io_prep_rw(io, type, off, len, buf != NULL ? &io->iov_single : NULL,
                        buf != NULL ? 1 : 0, flags, ut_io_done, &res);
    rc = ioc_bdev_io_submit(io);
    if (rc == 0) {
        assert_false(res.done); /* never inline */
        assert_int_equal(ioc_reactor_poll_until(r, &res.done, UT_WAIT_MS), 0);
        /* A few more iterations: a second completion would show up here. */
        for (int i = 0; i < 4; i++) {
            ioc_reactor_poll_once(r);
        }
        assert_int_equal(res.calls, 1);
        rc = res.status;
    }
    ioc_bdev_io_free(io);
    ioc_bdev_put(&bdev);
    return rc;
}

void
ut_op_done(void *arg, int rc)
{
    struct ut_op *op = arg;

    op->calls++;
    op->rc = rc;
    op->done = true;
}

int
ut_op_wait(struct ioc_reactor *r, int rc, struct ut_op *op)
{
    if (rc < 0) {
        return rc;
    }
    assert_false(op->done); /* never inline */
    assert_int_equal(ioc_reactor_poll_until(r, &op->done, UT_WAIT_MS), 0);
    ioc_reactor_poll_once(r);
    assert_int_equal(op->calls, 1);
    return op->rc;
}
