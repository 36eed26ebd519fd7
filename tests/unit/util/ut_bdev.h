/*
 * tests/unit/util/ut_bdev.h - what the unit tests that drive bdevs on a
 * local reactor share: a temporary folder plus reactor, one IO run to
 * completion with the async contract checked (never inline, exactly once),
 * and waiting for an asynchronous operation's callback.
 *
 * Include after <cmocka.h>: failures are cmocka assertions.
 */
#ifndef IOC_TESTS_UT_BDEV_H
#define IOC_TESTS_UT_BDEV_H

#include <stdbool.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "core/reactor.h"

/** mkdtemp(dir_template) and a local reactor in *r. Returns 0 or -errno. */
int ut_setup_dir_reactor(char *dir_template, struct ioc_reactor **r);

/** Destroy the reactor, drain the IO cache, remove dir. Returns 0 or -1. */
int ut_teardown_dir_reactor(const char *dir, struct ioc_reactor **r);

/**
 * Run one IO on bdev `name` to completion on r: a single buffer (or none
 * when buf is NULL). Returns the IO's status, the submit error, or -ENOENT
 * when no such bdev exists. Asserts the callback ran once, never inline.
 */
int ut_bdev_rw(struct ioc_reactor *r, const char *name, enum ioc_io_type type, uint64_t off,
               uint64_t len, void *buf, uint32_t flags);

/** The state of one asynchronous operation whose callback is (void *arg, int rc). */
struct ut_op {
    bool done;
    int calls;
    int rc;
};

/** A callback of that shape for arg = struct ut_op *. */
void ut_op_done(void *arg, int rc);

/**
 * Wait for an operation started with ut_op_done / op: rc is what starting it
 * returned (a negative one is returned at once). Asserts the callback ran
 * once, never inline; returns its rc.
 */
int ut_op_wait(struct ioc_reactor *r, int rc, struct ut_op *op);

#endif
