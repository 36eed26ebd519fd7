/*
 * bdev/crash/bdev_crash.c - power-loss simulation as a stacked bdev (tests).
 *
 * What: every WRITE, WRITE_ZEROES and UNMAP passes through to the base and
 * is also copied into a pending list. A FLUSH tags the pending writes that
 * have completed by the time it is submitted; when it completes, those are
 * applied, in submission order, to a durable image and leave the list. A FUA
 * write is applied when it completes. So at any instant the durable image is
 * what a real disk must hold after a power cut, and each pending write may or
 * may not have reached the platter, in any order, or torn at 512-byte
 * boundaries. Tests build crash images from the two with
 * ioc_bdev_crash_apply() (which takes a sector range, so tears are explicit)
 * and check them; the hook runs before every modifying IO or flush goes
 * down, which is where the set of possible images changes.
 *
 * Also: the n-th IO matching a filter fails without reaching the base (the
 * IO-error injection used to fail the n-th metadata IO of an operation).
 *
 * A failed write (by the base or injected) stays pending: it may or may not
 * have reached the disk, and the next completed flush settles it as landed,
 * the more dangerous of the two outcomes. A flush that fails makes nothing
 * durable.
 *
 * Not done: reads see the live base, not a crash image (tests import a crash
 * image through a separate bdev); no RPC (unit tests only).
 *
 * Rejected: keeping only the durable image and re-running the workload for
 * each crash state (exponentially slower); storing per-sector versions (the
 * pending list is short because the pool flushes often).
 */
#include "ioc/common.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "bdev/bdev_module.h"
#include "bdev/crash/bdev_crash.h"
#include "core/log.h"

struct crash_disk {
    struct ioc_bdev bdev;
    struct ioc_bdev *base;
    pthread_mutex_t lock;            /* the lists; a test device, one lock is fine */
    uint8_t *durable;
    struct ioc_crash_write *pend;    /* submission order */
    size_t npend, cap;
    uint64_t next_id;
    uint64_t next_flush;
    uint64_t version;                /* bumped whenever the durable image changes */
    ioc_crash_hook hook;
    void *hook_arg;
    struct ioc_crash_fail fail;
    uint64_t fail_seen, failed;
};

/* Per-IO state in io->module_ctx. */
struct crash_io_ctx {
    uint64_t id;     /* write id, or flush id */
};

static const struct ioc_bdev_ops crash_ops;

static struct crash_io_ctx *
crash_ctx(struct ioc_bdev_io *io)
{
    return (struct crash_io_ctx *)(void *)io->module_ctx;
}

static bool
crash_is_write(enum ioc_io_type t)
{
    return t == IOC_IO_WRITE || t == IOC_IO_WRITE_ZEROES || t == IOC_IO_UNMAP;
}

/* ---- the pending list ---- */

static void
crash_copy_in(uint8_t *dst, const struct ioc_bdev_io *io)
{
    for (int i = 0; i < io->iovcnt; i++) {
        memcpy(dst, io->iov[i].iov_base, io->iov[i].iov_len);
        dst += io->iov[i].iov_len;
    }
}

static int
crash_record(struct crash_disk *d, struct ioc_bdev_io *io)
{
    struct ioc_crash_write w = {.offset = io->offset, .length = io->length};

    if (d->npend == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 32;
        struct ioc_crash_write *p = realloc(d->pend, cap * sizeof(*p));
        if (p == NULL) {
            return -ENOMEM;
        }
        d->pend = p;
        d->cap = cap;
    }
    if (io->type == IOC_IO_WRITE) {
        w.data = malloc(io->length);
        if (w.data == NULL) {
            return -ENOMEM;
        }
        crash_copy_in(w.data, io);
    }
    w.id = ++d->next_id;
    crash_ctx(io)->id = w.id;
    d->pend[d->npend++] = w;
    return 0;
}

static void
crash_make_durable(struct crash_disk *d, const struct ioc_crash_write *w)
{
    d->version++;
    if (w->data != NULL) {
        memcpy(d->durable + w->offset, w->data, w->length);
    } else {
        memset(d->durable + w->offset, 0, w->length);
    }
}

/* Apply (durable) or drop every entry `pick` selects; keep the others in order. */
static void
crash_retire(struct crash_disk *d, bool (*pick)(const struct ioc_crash_write *, uint64_t),
             uint64_t key, bool durable)
{
    size_t n = 0;

    for (size_t i = 0; i < d->npend; i++) {
        struct ioc_crash_write *w = &d->pend[i];
        if (!pick(w, key)) {
            d->pend[n++] = *w;
            continue;
        }
        if (durable) {
            crash_make_durable(d, w);
        }
        free(w->data);
    }
    d->npend = n;
}

static bool
crash_pick_id(const struct ioc_crash_write *w, uint64_t id)
{
    return w->id == id;
}

static bool
crash_pick_covered(const struct ioc_crash_write *w, uint64_t flush)
{
    return w->covered != 0 && w->covered <= flush;
}

static struct ioc_crash_write *
crash_find(struct crash_disk *d, uint64_t id)
{
    for (size_t i = 0; i < d->npend; i++) {
        if (d->pend[i].id == id) {
            return &d->pend[i];
        }
    }
    return NULL;
}

/* ---- IO ---- */

static void
crash_child_done(struct ioc_bdev_io *child, void *cb_arg)
{
    struct ioc_bdev_io *io = cb_arg;
    struct crash_disk *d = io->bdev->ctx;
    uint64_t id = crash_ctx(io)->id;
    int rc = child->status;

    ioc_bdev_io_free(child);
    pthread_mutex_lock(&d->lock);
    if (io->type == IOC_IO_FLUSH) {
        if (rc == 0) {
            crash_retire(d, crash_pick_covered, id, true);
        }
    } else if (crash_is_write(io->type)) {
        struct ioc_crash_write *w = crash_find(d, id);
        if (w != NULL) {
            w->completed = true;
        }
        if (rc == 0 && (io->flags & IOC_IO_FUA)) {
            crash_retire(d, crash_pick_id, id, true);
        }
    }
    pthread_mutex_unlock(&d->lock);
    ioc_bdev_io_complete(io, rc);
}

/* Decide under the lock whether this IO is the one to fail. */
static int
crash_should_fail(struct crash_disk *d, const struct ioc_bdev_io *io)
{
    const struct ioc_crash_fail *f = &d->fail;

    if (f->nth == 0 || (f->io_types != 0 && !(f->io_types & (1u << io->type)))) {
        return 0;
    }
    if (io->type != IOC_IO_FLUSH && f->below != 0 && io->offset >= f->below) {
        return 0;
    }
    if (++d->fail_seen != f->nth) {
        return 0;
    }
    d->failed++;
    return f->error;
}

/* Record the IO (writes) or tag what it covers (flush). */
static int
crash_track(struct crash_disk *d, struct ioc_bdev_io *io)
{
    if (crash_is_write(io->type)) {
        return crash_record(d, io);
    }
    if (io->type == IOC_IO_FLUSH) {
        crash_ctx(io)->id = ++d->next_flush;
        for (size_t i = 0; i < d->npend; i++) {
            if (d->pend[i].completed && d->pend[i].covered == 0) {
                d->pend[i].covered = d->next_flush;
            }
        }
    }
    return 0;
}

static void
crash_submit(struct ioc_bdev_io *io)
{
    struct crash_disk *d = io->bdev->ctx;
    struct ioc_bdev_io *child;
    int rc, fail;

    crash_ctx(io)->id = 0;
    if (d->hook != NULL && (crash_is_write(io->type) || io->type == IOC_IO_FLUSH)) {
        d->hook(d->hook_arg, &d->bdev);
    }
    pthread_mutex_lock(&d->lock);
    rc = crash_track(d, io);
    fail = rc == 0 ? crash_should_fail(d, io) : 0;
    if (fail != 0 && crash_is_write(io->type)) {
        crash_find(d, crash_ctx(io)->id)->completed = true; /* may or may not have landed */
    }
    pthread_mutex_unlock(&d->lock);
    if (fail != 0) {
        ioc_bdev_io_complete_deferred(io, fail);
        return;
    }
    child = rc == 0 ? ioc_bdev_io_alloc(d->base) : NULL;
    if (rc == 0 && child == NULL) {
        rc = -ENOMEM;
    }
    if (rc == 0) {
        ioc_bdev_io_prep_rw(child, io->type, io->offset, io->length, io->iov, io->iovcnt,
                            io->flags, crash_child_done, io);
        child->extents = io->extents;
        child->max_extents = io->max_extents;
        rc = ioc_bdev_io_submit(child);
        if (rc < 0) {
            ioc_bdev_io_free(child);
        }
    }
    if (rc < 0) {
        /* Never reached the disk: forget it (a flush has nothing to forget). */
        pthread_mutex_lock(&d->lock);
        if (crash_is_write(io->type)) {
            crash_retire(d, crash_pick_id, crash_ctx(io)->id, false);
        }
        pthread_mutex_unlock(&d->lock);
        ioc_bdev_io_complete_deferred(io, rc);
    }
}

static bool
crash_supports(struct ioc_bdev *bdev, enum ioc_io_type type)
{
    struct crash_disk *d = bdev->ctx;

    return type != IOC_IO_BLOCK_STATUS && ioc_bdev_supports(d->base, type);
}

static void
crash_destruct(struct ioc_bdev *bdev)
{
    struct crash_disk *d = bdev->ctx;

    for (size_t i = 0; i < d->npend; i++) {
        free(d->pend[i].data);
    }
    free(d->pend);
    free(d->durable);
    ioc_bdev_put(&d->base);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static void
crash_dump_json(struct ioc_bdev *bdev, json_t *obj)
{
    struct crash_disk *d = bdev->ctx;

    pthread_mutex_lock(&d->lock);
    json_object_set_new(obj, "pending", json_integer((json_int_t)d->npend));
    json_object_set_new(obj, "failed", json_integer((json_int_t)d->failed));
    pthread_mutex_unlock(&d->lock);
    json_object_set_new(obj, "base", json_string(ioc_bdev_name(d->base)));
}

static const struct ioc_bdev_ops crash_ops = {
    .submit = crash_submit,
    .supports = crash_supports,
    .destruct = crash_destruct,
    .dump_json = crash_dump_json,
};

/* ---- API ---- */

int
ioc_bdev_crash_create(const char *name, const char *base_name, struct ioc_err *err)
{
    struct ioc_bdev *base = ioc_bdev_get_by_name(base_name);
    struct crash_disk *d;
    struct ioc_bdev *bdev;
    int rc;

    if (base == NULL) {
        return ioc_err_set(err, -ENOENT, "base: no bdev named '%s'", base_name);
    }
    d = calloc(1, sizeof(*d));
    if (d != NULL) {
        d->durable = calloc(1, ioc_bdev_size(base));
    }
    if (d == NULL || d->durable == NULL) {
        free(d);
        ioc_bdev_put(&base);
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    d->base = base;
    pthread_mutex_init(&d->lock, NULL);
    ioc_bdev_init(&d->bdev, name, "crash", &crash_ops, d, base->size, base->block_size);
    d->bdev.buf_align = base->buf_align;
    d->bdev.fast_zero = base->fast_zero;
    bdev = &d->bdev;
    rc = ioc_bdev_register(bdev, err);
    ioc_bdev_put(&bdev);
    return rc;
}

void
ioc_bdev_crash_set_hook(struct ioc_bdev *bdev, ioc_crash_hook hook, void *arg)
{
    struct crash_disk *d = bdev->ctx;

    assert(bdev->ops == &crash_ops);
    d->hook = hook;
    d->hook_arg = arg;
}

size_t
ioc_bdev_crash_pending(struct ioc_bdev *bdev, const struct ioc_crash_write **out)
{
    struct crash_disk *d = bdev->ctx;

    assert(bdev->ops == &crash_ops);
    *out = d->pend;
    return d->npend;
}

const uint8_t *
ioc_bdev_crash_durable(struct ioc_bdev *bdev, uint64_t *size, uint64_t *version)
{
    struct crash_disk *d = bdev->ctx;

    assert(bdev->ops == &crash_ops);
    *size = bdev->size;
    *version = d->version;
    return d->durable;
}

void
ioc_bdev_crash_apply(uint8_t *img, const struct ioc_crash_write *w, uint32_t first, uint32_t n,
                     uint8_t *undo)
{
    uint64_t off = (uint64_t)first * IOC_CRASH_SECTOR;
    uint64_t len = IOC_MIN((uint64_t)n * IOC_CRASH_SECTOR, w->length - off);

    if (undo != NULL) {
        memcpy(undo, img + w->offset + off, len);
    }
    if (w->data != NULL) {
        memcpy(img + w->offset + off, w->data + off, len);
    } else {
        memset(img + w->offset + off, 0, len);
    }
}

void
ioc_bdev_crash_undo(uint8_t *img, const struct ioc_crash_write *w, uint32_t first, uint32_t n,
                    const uint8_t *undo)
{
    uint64_t off = (uint64_t)first * IOC_CRASH_SECTOR;
    uint64_t len = IOC_MIN((uint64_t)n * IOC_CRASH_SECTOR, w->length - off);

    memcpy(img + w->offset + off, undo, len);
}

uint64_t
ioc_bdev_crash_fail(struct ioc_bdev *bdev, const struct ioc_crash_fail *f)
{
    struct crash_disk *d = bdev->ctx;
    uint64_t failed;

    assert(bdev->ops == &crash_ops);
    pthread_mutex_lock(&d->lock);
    d->fail = *f;
    d->fail_seen = 0;
    failed = d->failed;
    pthread_mutex_unlock(&d->lock);
    return failed;
}
