/*
 * bdev/crash/bdev_crash.h - a stacked bdev that simulates power loss (tests).
 *
 * Every write passes through to the base and is also remembered. A write is
 * "pending" from its submission until a FLUSH submitted after it completed
 * has itself completed (or, for a FUA write, until it completes); then it is
 * applied to a durable image kept by the crash bdev. A crash image is the
 * durable image plus any subset of the pending writes, in any order, each
 * possibly torn at 512-byte boundaries: ioc_bdev_crash_apply() lays one
 * (part of a) pending write over an image the caller owns.
 *
 * The durable image starts as zeroes: create the crash bdev over a base that
 * reads as zeroes (a fresh malloc bdev). A test device: one reactor, a mutex
 * for the lists, and a hook called before each write or flush is passed on.
 *
 * It can also fail IO (IO-error injection): ioc_bdev_crash_fail() makes the
 * n-th IO matching a filter complete with an error instead of reaching the base.
 */
#ifndef IOC_BDEV_CRASH_BDEV_CRASH_H
#define IOC_BDEV_CRASH_BDEV_CRASH_H

#include "ioc/common.h"

#include "bdev/bdev.h"
#include "lib/err.h"

#define IOC_CRASH_SECTOR 512u

/* One remembered write; data NULL means zeroes (WRITE_ZEROES, UNMAP). */
struct ioc_crash_write {
    uint64_t offset;
    uint64_t length;
    uint8_t *data;
    uint64_t id;        /* submission order */
    bool completed;
    uint64_t covered;   /* the flush that makes it durable once it completes; 0 none */
};

/* Called before each write, zeroing or flush goes down; arg from ioc_bdev_crash_set_hook. */
typedef void (*ioc_crash_hook)(void *arg, struct ioc_bdev *crash_bdev);

/* Which IOs ioc_bdev_crash_fail counts: a bit mask of (1 << enum ioc_io_type),
 * restricted to IOs starting below `below` (0 = anywhere; FLUSH always counts). */
struct ioc_crash_fail {
    uint32_t io_types;
    uint64_t below;
    uint64_t nth;       /* fail the nth matching IO from now (1-based); 0 = never */
    int error;          /* negative errno */
};

/** Create and register crash bdev `name` over `base` (which must read as zeroes). */
int ioc_bdev_crash_create(const char *name, const char *base, struct ioc_err *err);

/** Set (NULL: clear) the hook. `bdev` is a crash bdev. Reactor thread. */
void ioc_bdev_crash_set_hook(struct ioc_bdev *bdev, ioc_crash_hook hook, void *arg);

/**
 * The pending writes, in submission order (borrowed; valid until the next IO
 * is submitted to or completed by the crash bdev).
 */
size_t ioc_bdev_crash_pending(struct ioc_bdev *bdev, const struct ioc_crash_write **out);

/**
 * The durable image (borrowed, `size` bytes; same validity as above) and a
 * version number that changes whenever the image does.
 */
const uint8_t *ioc_bdev_crash_durable(struct ioc_bdev *bdev, uint64_t *size, uint64_t *version);

/**
 * Lay sectors [first, first + n) of pending write w over img (the whole
 * device). If undo is not NULL the bytes overwritten are saved there first
 * (n sectors), so ioc_bdev_crash_undo() can put them back.
 */
void ioc_bdev_crash_apply(uint8_t *img, const struct ioc_crash_write *w, uint32_t first,
                          uint32_t n, uint8_t *undo);
void ioc_bdev_crash_undo(uint8_t *img, const struct ioc_crash_write *w, uint32_t first,
                         uint32_t n, const uint8_t *undo);

/** Arm (or, with nth 0, disarm) IO-error injection. Returns how many IOs were failed so far. */
uint64_t ioc_bdev_crash_fail(struct ioc_bdev *bdev, const struct ioc_crash_fail *f);

#endif
