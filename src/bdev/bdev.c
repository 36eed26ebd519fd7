/*
 * bdev/bdev.c - the bdev registry, references, and contract-checking IO dispatch.
 *
 * The registry is a name-sorted list under one mutex: it changes only on the
 * control path (RPC), and lookups happen when an export or a connection is
 * opened, never per IO. A bdev lives as long as it has references: the
 * registry holds one, every export and open connection holds one, and the
 * module's destruct runs when the last is dropped. ioc_bdev_delete() refuses
 * with -EBUSY while anyone else holds the bdev, rather than pulling a device
 * out from under a client.
 *
 * IO objects come from a per-thread free list, so the hot path does not call
 * malloc once a thread is warm. ioc_bdev_io_submit() checks what a module may
 * rely on (range, alignment, iovec coverage, supported type) so modules do not
 * each re-check it; a violation is a caller bug reported as -EINVAL/-ERANGE.
 */
#include "ioc/common.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "bdev/bdev_module.h"
#include "core/log.h"

/* The lock protects g_bdevs, every bdev's refs and registered fields. */
static pthread_mutex_t g_bdev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ioc_bdev *g_bdevs;

#define IO_CACHE_MAX 1024
static _Thread_local struct ioc_bdev_io *t_io_cache;
static _Thread_local unsigned t_io_cache_len;
/* A key whose destructor empties a thread's IO cache when the thread exits. */
static pthread_key_t g_io_cache_key;
static pthread_once_t g_io_cache_once = PTHREAD_ONCE_INIT;

static const char *g_io_type_names[IOC_IO_TYPE_COUNT] = {
    [IOC_IO_READ] = "read",
    [IOC_IO_WRITE] = "write",
    [IOC_IO_FLUSH] = "flush",
    [IOC_IO_UNMAP] = "unmap",
    [IOC_IO_WRITE_ZEROES] = "write_zeroes",
    [IOC_IO_BLOCK_STATUS] = "block_status",
    [IOC_IO_PREFETCH] = "prefetch",
};

const char *
ioc_io_type_name(enum ioc_io_type type)
{
    return (unsigned)type < IOC_IO_TYPE_COUNT ? g_io_type_names[type] : "unknown";
}

/* ---- registry ---- */

int
ioc_bdev_name_check(const char *name, struct ioc_err *err)
{
    size_t len = name != NULL ? strlen(name) : 0;

    if (len == 0 || len >= sizeof(((struct ioc_bdev *)0)->name)) {
        return ioc_err_set(err, -EINVAL, "name: must be 1 to 127 characters, got %zu", len);
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '/' || c == '-')) {
            return ioc_err_set(err, -EINVAL,
                               "name: '%s' has character '%c'; use letters, digits and ._:/-",
                               name, c);
        }
    }
    return 0;
}

void
ioc_bdev_init(struct ioc_bdev *bdev, const char *name, const char *module_name,
              const struct ioc_bdev_ops *ops, void *ctx, uint64_t size, uint32_t block_size)
{
    memset(bdev, 0, sizeof(*bdev));
    snprintf(bdev->name, sizeof(bdev->name), "%s", name);
    bdev->module_name = module_name;
    bdev->ops = ops;
    bdev->ctx = ctx;
    bdev->size = size;
    bdev->block_size = block_size;
    bdev->buf_align = 1;
    bdev->refs = 1;
}

int
ioc_bdev_register(struct ioc_bdev *bdev, struct ioc_err *err)
{
    struct ioc_bdev **pp;
    int rc;

    rc = ioc_bdev_name_check(bdev->name, err);
    if (rc < 0) {
        return rc;
    }
    pthread_mutex_lock(&g_bdev_lock);
    for (pp = &g_bdevs; *pp != NULL; pp = &(*pp)->next) {
        int cmp = strcmp((*pp)->name, bdev->name);
        if (cmp == 0) {
            pthread_mutex_unlock(&g_bdev_lock);
            return ioc_err_set(err, -EEXIST, "name: a bdev named '%s' already exists",
                               bdev->name);
        }
        if (cmp > 0) {
            break;
        }
    }
    bdev->next = *pp;
    *pp = bdev;
    bdev->registered = true;
    bdev->refs++;
    pthread_mutex_unlock(&g_bdev_lock);
    IOC_INFO("bdev", "bdev %s: registered (%s, %llu bytes, block %u)", bdev->name,
             bdev->module_name, (unsigned long long)bdev->size, bdev->block_size);
    return 0;
}

struct ioc_bdev *
ioc_bdev_get_by_name(const char *name)
{
    struct ioc_bdev *found = NULL;

    pthread_mutex_lock(&g_bdev_lock);
    for (struct ioc_bdev *b = g_bdevs; b != NULL; b = b->next) {
        if (strcmp(b->name, name) == 0) {
            b->refs++;
            found = b;
            break;
        }
    }
    pthread_mutex_unlock(&g_bdev_lock);
    return found;
}

void
ioc_bdev_get(struct ioc_bdev *bdev)
{
    pthread_mutex_lock(&g_bdev_lock);
    assert(bdev->refs > 0);
    bdev->refs++;
    pthread_mutex_unlock(&g_bdev_lock);
}

void
ioc_bdev_put(struct ioc_bdev **bdevp)
{
    struct ioc_bdev *bdev = *bdevp;
    bool last;

    if (bdev == NULL) {
        return;
    }
    *bdevp = NULL;
    pthread_mutex_lock(&g_bdev_lock);
    assert(bdev->refs > 0);
    last = --bdev->refs == 0;
    pthread_mutex_unlock(&g_bdev_lock);
    if (last) {
        IOC_INFO("bdev", "bdev %s: destroyed", bdev->name);
        if (bdev->ops->destruct != NULL) {
            bdev->ops->destruct(bdev);
        }
    }
}

int
ioc_bdev_delete(const char *name, struct ioc_err *err)
{
    struct ioc_bdev **pp, *bdev = NULL;

    pthread_mutex_lock(&g_bdev_lock);
    for (pp = &g_bdevs; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            bdev = *pp;
            break;
        }
    }
    if (bdev == NULL) {
        pthread_mutex_unlock(&g_bdev_lock);
        return ioc_err_set(err, -ENOENT, "name: no bdev named '%s'", name);
    }
    if (bdev->refs > 1) {
        int users = bdev->refs - 1;
        pthread_mutex_unlock(&g_bdev_lock);
        return ioc_err_set(err, -EBUSY,
                           "bdev '%s' is in use (%d holder%s: an export, a stacked bdev or a "
                           "connection); remove those first",
                           name, users, users == 1 ? "" : "s");
    }
    *pp = bdev->next;
    bdev->registered = false;
    pthread_mutex_unlock(&g_bdev_lock);
    ioc_bdev_put(&bdev);
    return 0;
}

void
ioc_bdev_foreach(void (*fn)(struct ioc_bdev *bdev, void *arg), void *arg)
{
    pthread_mutex_lock(&g_bdev_lock);
    for (struct ioc_bdev *b = g_bdevs; b != NULL; b = b->next) {
        fn(b, arg);
    }
    pthread_mutex_unlock(&g_bdev_lock);
}

/* ---- properties ---- */

const char *
ioc_bdev_name(const struct ioc_bdev *bdev)
{
    return bdev->name;
}

uint64_t
ioc_bdev_size(const struct ioc_bdev *bdev)
{
    return bdev->size;
}

uint32_t
ioc_bdev_block_size(const struct ioc_bdev *bdev)
{
    return bdev->block_size;
}

uint32_t
ioc_bdev_buf_align(const struct ioc_bdev *bdev)
{
    return bdev->buf_align;
}

const char *
ioc_bdev_module_name(const struct ioc_bdev *bdev)
{
    return bdev->module_name;
}

bool
ioc_bdev_supports(const struct ioc_bdev *bdev, enum ioc_io_type type)
{
    if (bdev->ops->supports != NULL) {
        return bdev->ops->supports((struct ioc_bdev *)bdev, type);
    }
    return type == IOC_IO_READ || type == IOC_IO_WRITE || type == IOC_IO_FLUSH;
}

int
ioc_bdev_splice_source(const struct ioc_bdev *bdev, uint64_t offset, uint64_t len, int *fd,
                       uint64_t *file_offset)
{
    if (len == 0 || offset > bdev->size || len > bdev->size - offset) {
        return -ERANGE;
    }
    if (bdev->ops->splice_source == NULL) {
        return -ENOTSUP;
    }
    return bdev->ops->splice_source((struct ioc_bdev *)bdev, offset, len, fd, file_offset);
}

void *
ioc_bdev_write_window(const struct ioc_bdev *bdev, uint64_t offset, uint64_t len)
{
    if (len == 0 || offset > bdev->size || len > bdev->size - offset ||
        bdev->ops->write_window == NULL) {
        return NULL;
    }
    return bdev->ops->write_window((struct ioc_bdev *)bdev, offset, len);
}

bool
ioc_bdev_fast_zero(const struct ioc_bdev *bdev)
{
    return bdev->fast_zero && ioc_bdev_supports(bdev, IOC_IO_WRITE_ZEROES);
}

/* ---- IO ---- */

void
ioc_bdev_io_cache_drain(void)
{
    while (t_io_cache != NULL) {
        struct ioc_bdev_io *io = t_io_cache;
        t_io_cache = io->cache_next;
        free(io);
    }
    t_io_cache_len = 0;
}

static void
bdev_io_cache_thread_exit(void *unused)
{
    (void)unused;
    ioc_bdev_io_cache_drain();
}

static void
bdev_io_cache_key_init(void)
{
    pthread_key_create(&g_io_cache_key, bdev_io_cache_thread_exit);
}

struct ioc_bdev_io *
ioc_bdev_io_alloc(struct ioc_bdev *bdev)
{
    struct ioc_bdev_io *io = t_io_cache;

    if (io != NULL) {
        t_io_cache = io->cache_next;
        t_io_cache_len--;
    } else {
        io = aligned_alloc(64, (sizeof(*io) + 63) & ~(size_t)63);
        if (io == NULL) {
            return NULL;
        }
    }
    memset(io, 0, offsetof(struct ioc_bdev_io, module_ctx));
    io->bdev = bdev;
    return io;
}

void
ioc_bdev_io_free(struct ioc_bdev_io *io)
{
    if (io == NULL) {
        return;
    }
    assert(!io->defer.queued);
    if (t_io_cache_len >= IO_CACHE_MAX) {
        free(io);
        return;
    }
    if (t_io_cache == NULL) {
        /* First entry on this thread: arrange for the cache to be freed at exit. */
        pthread_once(&g_io_cache_once, bdev_io_cache_key_init);
        pthread_setspecific(g_io_cache_key, (void *)1);
    }
    io->cache_next = t_io_cache;
    t_io_cache = io;
    t_io_cache_len++;
}

void
ioc_bdev_io_prep_rw(struct ioc_bdev_io *io, enum ioc_io_type type, uint64_t offset,
                    uint64_t length, struct iovec *iov, int iovcnt, uint32_t flags,
                    ioc_bdev_io_cb cb, void *cb_arg)
{
    io->type = type;
    io->offset = offset;
    io->length = length;
    io->iov = iov;
    io->iovcnt = iovcnt;
    io->flags = flags;
    io->cb = cb;
    io->cb_arg = cb_arg;
}

void
ioc_bdev_io_prep(struct ioc_bdev_io *io, enum ioc_io_type type, uint64_t offset,
                 uint64_t length, uint32_t flags, ioc_bdev_io_cb cb, void *cb_arg)
{
    ioc_bdev_io_prep_rw(io, type, offset, length, NULL, 0, flags, cb, cb_arg);
}

static int
bdev_io_check(const struct ioc_bdev_io *io)
{
    const struct ioc_bdev *bdev = io->bdev;
    uint64_t covered = 0;

    if ((unsigned)io->type >= IOC_IO_TYPE_COUNT) {
        return -EINVAL;
    }
    if (!ioc_bdev_supports(bdev, io->type)) {
        return -ENOTSUP;
    }
    if (io->type == IOC_IO_FLUSH) {
        return 0;
    }
    if (io->offset > bdev->size || io->length > bdev->size - io->offset) {
        return -ERANGE;
    }
    if (io->type == IOC_IO_BLOCK_STATUS) {
        return io->extents != NULL && io->max_extents > 0 && io->length > 0 ? 0 : -EINVAL;
    }
    if (io->type != IOC_IO_READ && io->type != IOC_IO_WRITE) {
        return 0;
    }
    if (io->length == 0 || io->offset % bdev->block_size || io->length % bdev->block_size) {
        return -EINVAL;
    }
    for (int i = 0; i < io->iovcnt; i++) {
        covered += io->iov[i].iov_len;
    }
    return covered == io->length ? 0 : -EINVAL;
}

int
ioc_bdev_io_submit(struct ioc_bdev_io *io)
{
    int rc = bdev_io_check(io);

    if (rc < 0) {
        IOC_DEBUG(bdev, "bdev %s: refused %s %llu+%llu: %s", io->bdev->name,
                  ioc_io_type_name(io->type), (unsigned long long)io->offset,
                  (unsigned long long)io->length, strerror(-rc));
        return rc;
    }
    io->reactor = ioc_reactor_self();
    assert(io->reactor != NULL);
    io->status = 0;
    io->bdev->ops->submit(io);
    return 0;
}

void
ioc_bdev_io_complete(struct ioc_bdev_io *io, int status)
{
    io->status = status;
    io->cb(io, io->cb_arg);
}

static void
bdev_io_deferred_done(struct ioc_deferred *d)
{
    struct ioc_bdev_io *io = ioc_container_of(d, struct ioc_bdev_io, defer);

    io->cb(io, io->cb_arg);
}

void
ioc_bdev_io_complete_deferred(struct ioc_bdev_io *io, int status)
{
    io->status = status;
    ioc_reactor_defer(io->reactor, &io->defer, bdev_io_deferred_done);
}
