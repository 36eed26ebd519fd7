/*
 * bdev/file/bdev_file.c - a regular file or block device served through io_uring.
 *
 * Each IO becomes one SQE on the submitting reactor's ring (two, linked, for a
 * FUA fallocate: the fallocate then an fdatasync), so the reactor batches disk
 * IO with socket IO into one io_uring_enter. The exception: buffered writes on
 * a file system that cannot do them without blocking (ext4), which io_uring
 * would punt to a worker thread each; those are written on the reactor
 * thread (file_write_inline explains why and how it backs off). The same fd
 * is shared by every reactor: pread/pwrite-style IO needs no per-thread file
 * position, and an fdatasync on any reactor covers writes completed on all of
 * them, which is what makes NBD multi-conn FLUSH true.
 *
 * Mapping:  READ/WRITE -> read(v)/write(v), FUA -> RWF_DSYNC (a READ of cached
 *           pages is copied out of the file's shared mapping instead, and a
 *           WRITE received into that mapping only needs FUA's fdatasync:
 *           file_map.h);  FLUSH -> fdatasync;
 *           UNMAP -> punch hole;  WRITE_ZEROES -> punch hole, or zero range
 *           with NO_HOLE;  PREFETCH -> fadvise WILLNEED;  BLOCK_STATUS -> lseek
 *           SEEK_DATA/SEEK_HOLE (a metadata lookup the kernel answers from
 *           memory; done inline, completion deferred).
 * A short read or write (rare: a signal, a page-cache hiccup) is finished by
 * submitting the remainder again, so callers never see partial IO.
 *
 * Not done: fixed files/buffers (registered with the ring) — a later
 * optimisation; a thread pool for file systems without fallocate (those fall
 * back to writing zeroes synchronously, which is slow but correct).
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bdev/bdev_module.h"
#include "bdev/file/bdev_file.h"
#include "bdev/file/file_map.h"
#include "core/log.h"

/* How buffered writes are issued (see file_write_inline). */
enum file_write_path {
    FILE_WRITE_PROBE = 0, /* not known yet: the next buffered write finds out */
    FILE_WRITE_URING,     /* the file system takes non-blocking buffered writes */
    FILE_WRITE_INLINE,    /* it does not (ext4): write on the reactor thread */
};

/* Inline writes slower than FILE_INLINE_SLOW_NS (blocked on writeback, the
 * journal, a read from disk; or the thread was preempted) are added up per
 * FILE_INLINE_WINDOW_NS; past FILE_INLINE_STALL_BUDGET_NS in one window,
 * buffered writes go through io_uring for FILE_INLINE_BACKOFF_NS. */
#define FILE_INLINE_SLOW_NS         1000000ull
#define FILE_INLINE_WINDOW_NS       1000000000ull
#define FILE_INLINE_STALL_BUDGET_NS 20000000ull
#define FILE_INLINE_BACKOFF_NS      1000000000ull

struct file_disk {
    struct ioc_bdev bdev;
    int fd;
    bool is_blockdev;
    bool direct;
    uint64_t page_size;                   /* cachestat's unit */
    /* Shared by every reactor that submits to this disk, hence atomic. */
    _Atomic int write_path;               /* enum file_write_path */
    _Atomic uint64_t inline_paused_until; /* ioc_now_ns(); 0 = not paused */
    _Atomic uint64_t slow_window_start;   /* ioc_now_ns() */
    _Atomic uint64_t slow_ns;             /* in slow inline writes since then */
    /* The whole file mapped shared (file_map.h): writes received in place
     * (file_write_window), cached reads copied out (file_read_mapped). Not
     * mapped (map.base NULL): O_DIRECT, block devices, map: false, mmap failed. */
    struct file_map map;
    _Atomic uint64_t writes_in_place;
    _Atomic uint64_t reads_mapped;
    char path[4096];
};

/* Per-IO state, kept in io->module_ctx. */
struct file_io_ctx {
    struct ioc_uring_req req;
    struct ioc_uring_req sync_req; /* the linked fdatasync of a FUA fallocate */
    uint64_t done;                 /* bytes transferred so far (short IO) */
    int pending;                   /* SQEs not yet completed */
    int status;                    /* first error */
};
_Static_assert(sizeof(struct file_io_ctx) <= IOC_BDEV_IO_CTX_MAX, "file io ctx too large");

static struct file_io_ctx *
file_ctx(struct ioc_bdev_io *io)
{
    return (struct file_io_ctx *)(void *)io->module_ctx;
}

static struct ioc_bdev_io *
file_io_from_req(struct ioc_uring_req *req)
{
    return ioc_container_of((void *)req, struct ioc_bdev_io, module_ctx);
}

static void file_submit_rw(struct ioc_bdev_io *io);

/* Finish a short transfer synchronously: rare, and multi-iovec remainders are awkward. */
static int
file_finish_short_sync(struct file_disk *disk, struct ioc_bdev_io *io, uint64_t done)
{
    uint64_t skip = done;

    for (int i = 0; i < io->iovcnt && done < io->length; i++) {
        struct iovec *v = &io->iov[i];
        if (skip >= v->iov_len) {
            skip -= v->iov_len;
            continue;
        }
        uint8_t *base = (uint8_t *)v->iov_base + skip;
        size_t len = v->iov_len - skip;
        skip = 0;
        while (len > 0) {
            ssize_t n = io->type == IOC_IO_READ
                            ? pread(disk->fd, base, len, (off_t)(io->offset + done))
                            : pwrite(disk->fd, base, len, (off_t)(io->offset + done));
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                return -errno;
            }
            if (n == 0) {
                if (io->type == IOC_IO_READ) {
                    memset(base, 0, len); /* past EOF of a file being grown: zeroes */
                    n = (ssize_t)len;
                } else {
                    return -EIO;
                }
            }
            base += n;
            len -= (size_t)n;
            done += (uint64_t)n;
        }
    }
    if (io->type == IOC_IO_WRITE && (io->flags & IOC_IO_FUA) && fdatasync(disk->fd) < 0) {
        return -errno;
    }
    return 0;
}

static void
file_rw_done(struct ioc_uring_req *req, int res, uint32_t flags)
{
    struct ioc_bdev_io *io = file_io_from_req(req);
    struct file_io_ctx *ctx = file_ctx(io);
    struct file_disk *disk = io->bdev->ctx;

    (void)flags;
    if (res == -EAGAIN || res == -EINTR) {
        file_submit_rw(io);
        return;
    }
    if (res < 0) {
        ioc_bdev_io_complete(io, res);
        return;
    }
    ctx->done += (uint64_t)res;
    if (ctx->done < io->length) {
        if (io->iovcnt == 1 && res > 0) {
            file_submit_rw(io);
            return;
        }
        ioc_bdev_io_complete(io, file_finish_short_sync(disk, io, ctx->done));
        return;
    }
    ioc_bdev_io_complete(io, 0);
}

static void
file_submit_rw(struct ioc_bdev_io *io)
{
    struct file_disk *disk = io->bdev->ctx;
    struct file_io_ctx *ctx = file_ctx(io);
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(io->reactor);
    uint64_t off = io->offset + ctx->done;

    if (io->iovcnt == 1) {
        uint8_t *base = (uint8_t *)io->iov[0].iov_base + ctx->done;
        unsigned len = (unsigned)(io->length - ctx->done);
        if (io->type == IOC_IO_READ) {
            io_uring_prep_read(sqe, disk->fd, base, len, off);
        } else {
            io_uring_prep_write(sqe, disk->fd, base, len, off);
        }
    } else if (io->type == IOC_IO_READ) {
        io_uring_prep_readv(sqe, disk->fd, io->iov, (unsigned)io->iovcnt, off);
    } else {
        io_uring_prep_writev(sqe, disk->fd, io->iov, (unsigned)io->iovcnt, off);
    }
    if (io->type == IOC_IO_WRITE && (io->flags & IOC_IO_FUA)) {
        sqe->rw_flags = RWF_DSYNC;
    }
    ctx->req.done = file_rw_done;
    ioc_uring_sqe_set_req(sqe, &ctx->req);
}

/* Account one slow inline write; pause inline writes if they stall too much. */
static void
file_inline_slow(struct file_disk *disk, uint64_t t0, uint64_t took)
{
    uint64_t start = atomic_load_explicit(&disk->slow_window_start, memory_order_relaxed);
    uint64_t total;

    /* Racy across reactors, which is fine: this is a heuristic, not an invariant. */
    if (t0 - start > FILE_INLINE_WINDOW_NS) {
        atomic_store_explicit(&disk->slow_window_start, t0, memory_order_relaxed);
        atomic_store_explicit(&disk->slow_ns, 0, memory_order_relaxed);
    }
    total = atomic_fetch_add_explicit(&disk->slow_ns, took, memory_order_relaxed) + took;
    if (total <= FILE_INLINE_STALL_BUDGET_NS) {
        return;
    }
    atomic_store_explicit(&disk->slow_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&disk->inline_paused_until, t0 + took + FILE_INLINE_BACKOFF_NS,
                          memory_order_relaxed);
    IOC_INFO("bdev", "bdev %s: inline writes stalled %llu ms within a second: io_uring for "
             "the next %llu ms", disk->bdev.name, (unsigned long long)(total / 1000000),
             (unsigned long long)(FILE_INLINE_BACKOFF_NS / 1000000));
}

/*
 * Buffered writes on a file system without non-blocking buffered writes
 * (ext4 answers RWF_NOWAIT with EOPNOTSUPP): io_uring cannot try them inline,
 * so it hands every one to an io-wq worker thread, and since writes to one
 * inode are serialised on one worker, that thread does all the copying while
 * the reactor pays for the hand-off and the wake-ups. Measured on the bench
 * file (4 KiB random writes, QD32): about 30 us of iocd CPU per write through
 * io-wq, about 22 us written here. So such writes are done with pwritev() on
 * the reactor thread, completing on the next reactor tick as the contract
 * requires. The first buffered write finds out which kind of file system it
 * is (RWF_NOWAIT); where non-blocking writes work, io_uring does them inline
 * anyway and is kept. The risk of writing on the reactor is a write that
 * blocks (dirty throttling, a journal commit, a partial block read from
 * disk) and stalls every connection of the reactor: when slow inline writes
 * add up to more than FILE_INLINE_STALL_BUDGET_NS within a second, this
 * disk's writes go back through io_uring for FILE_INLINE_BACKOFF_NS. (A
 * single slow write proves little: on a busy machine it is usually a
 * preemption, measured with getrusage while developing this.) FUA writes always
 * go through io_uring: they wait for the disk by definition.
 * Returns true if the IO was taken (its completion is deferred).
 */
static bool
file_write_inline(struct file_disk *disk, struct ioc_bdev_io *io)
{
    int path = atomic_load_explicit(&disk->write_path, memory_order_relaxed);
    uint64_t t0, took;
    ssize_t n;
    int rc;

    if (disk->direct || (io->flags & IOC_IO_FUA) || path == FILE_WRITE_URING) {
        return false;
    }
    if (path == FILE_WRITE_PROBE) {
        n = pwritev2(disk->fd, io->iov, io->iovcnt, (off_t)io->offset, RWF_NOWAIT);
        if (n >= 0 || errno != EOPNOTSUPP) {
            atomic_store_explicit(&disk->write_path, FILE_WRITE_URING, memory_order_relaxed);
            if (n < 0) {
                return false; /* EAGAIN and the like: io_uring takes it */
            }
            if ((uint64_t)n == io->length) {
                ioc_bdev_io_complete_deferred(io, 0);
                return true;
            }
            /* io_uring writes the rest; file_submit_rw can resume mid-buffer
             * only with one iovec, so with several it writes all of them
             * again (the same bytes at the same offsets) */
            if (io->iovcnt == 1) {
                file_ctx(io)->done = (uint64_t)n;
            }
            return false;
        }
        atomic_store_explicit(&disk->write_path, FILE_WRITE_INLINE, memory_order_relaxed);
        IOC_INFO("bdev", "bdev %s: %s takes no non-blocking buffered writes: writing on the "
                 "reactor thread", disk->bdev.name, disk->path);
    }
    t0 = ioc_now_ns();
    if (t0 < atomic_load_explicit(&disk->inline_paused_until, memory_order_relaxed)) {
        return false;
    }
    rc = file_finish_short_sync(disk, io, 0);
    took = ioc_now_ns() - t0;
    if (took > FILE_INLINE_SLOW_NS) {
        file_inline_slow(disk, t0, took);
    }
    ioc_bdev_io_complete_deferred(io, rc);
    return true;
}

/* Completion of the one or two SQEs of a FLUSH, UNMAP, WRITE_ZEROES or PREFETCH. */
static void
file_misc_finish_one(struct file_io_ctx *ctx, int res)
{
    struct ioc_bdev_io *io = ioc_container_of((void *)ctx, struct ioc_bdev_io, module_ctx);

    if (res < 0 && ctx->status == 0) {
        ctx->status = res;
    }
    if (--ctx->pending == 0) {
        ioc_bdev_io_complete(io, ctx->status);
    }
}

static void
file_misc_done(struct ioc_uring_req *req, int res, uint32_t flags)
{
    (void)flags;
    file_misc_finish_one(ioc_container_of(req, struct file_io_ctx, req), res);
}

static void
file_sync_done(struct ioc_uring_req *req, int res, uint32_t flags)
{
    (void)flags;
    file_misc_finish_one(ioc_container_of(req, struct file_io_ctx, sync_req), res);
}

/*
 * A WRITE whose one iovec is the file's own mapping at its offset: its bytes
 * were received into the page cache (file_write_window) and are as written as
 * a buffered pwrite would leave them. FUA adds an fdatasync of the range
 * (io_uring's fsync takes one), which also writes back pages dirtied through
 * the mapping. Returns true if the IO was taken.
 */
static bool
file_write_in_place(struct file_disk *disk, struct ioc_bdev_io *io)
{
    struct file_io_ctx *ctx = file_ctx(io);
    struct io_uring_sqe *sqe;

    if (disk->map.base == NULL || io->iovcnt != 1 ||
        io->iov[0].iov_base != disk->map.base + io->offset ||
        io->iov[0].iov_len != io->length) {
        return false;
    }
    atomic_fetch_add_explicit(&disk->writes_in_place, 1, memory_order_relaxed);
    if (!(io->flags & IOC_IO_FUA)) {
        ioc_bdev_io_complete_deferred(io, 0);
        return true;
    }
    sqe = ioc_reactor_get_sqe(io->reactor);
    io_uring_prep_fsync(sqe, disk->fd, IORING_FSYNC_DATASYNC);
    sqe->off = io->offset;
    sqe->len = (uint32_t)io->length;
    ctx->req.done = file_misc_done;
    ctx->pending = 1;
    ioc_uring_sqe_set_req(sqe, &ctx->req);
    return true;
}

/*
 * A READ of pages that are all cached, copied out of the mapping on the
 * reactor thread: no syscall and no page-cache lookup, where an io_uring
 * read (which also completes inline for cached pages) costs both. Only on a
 * reactor thread (its signal mask leaves SIGBUS to the guard). Returns true
 * if the IO was taken (its completion is deferred).
 */
static bool
file_read_mapped(struct file_disk *disk, struct ioc_bdev_io *io)
{
    if (disk->map.base == NULL || ioc_reactor_self() == NULL ||
        !file_map_resident(&disk->map, io->offset, io->length, ioc_reactor_iter_ns()) ||
        file_map_copy_out(&disk->map, io->offset, io->iov, io->iovcnt) != 0) {
        return false;
    }
    atomic_fetch_add_explicit(&disk->reads_mapped, 1, memory_order_relaxed);
    ioc_bdev_io_complete_deferred(io, 0);
    return true;
}

/* Writing zeroes where fallocate cannot: correct but slow, so only without FAST_ZERO. */
static int
file_write_zeroes_slow(struct file_disk *disk, uint64_t off, uint64_t len)
{
    static const uint8_t zeroes[65536] __attribute__((aligned(4096)));

    while (len > 0) {
        size_t n = (size_t)IOC_MIN(len, sizeof(zeroes));
        ssize_t w = pwrite(disk->fd, zeroes, n, (off_t)off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return w < 0 ? -errno : -EIO;
        }
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
    return 0;
}

static void
file_submit_fallocate(struct ioc_bdev_io *io, int mode)
{
    struct file_disk *disk = io->bdev->ctx;
    struct file_io_ctx *ctx = file_ctx(io);
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(io->reactor);

    io_uring_prep_fallocate(sqe, disk->fd, mode, io->offset, io->length);
    ctx->req.done = file_misc_done;
    ioc_uring_sqe_set_req(sqe, &ctx->req);
    ctx->pending = 1;
    if (io->flags & IOC_IO_FUA) {
        sqe->flags |= IOSQE_IO_LINK;
        sqe = ioc_reactor_get_sqe(io->reactor);
        io_uring_prep_fsync(sqe, disk->fd, IORING_FSYNC_DATASYNC);
        ctx->sync_req.done = file_sync_done;
        ioc_uring_sqe_set_req(sqe, &ctx->sync_req);
        ctx->pending = 2;
    }
}

static void
file_block_status(struct file_disk *disk, struct ioc_bdev_io *io)
{
    off_t pos = (off_t)io->offset, end = (off_t)(io->offset + io->length);
    off_t data, hole;

    io->nr_extents = 0;
    while (pos < end && io->nr_extents < io->max_extents) {
        struct ioc_extent *e = &io->extents[io->nr_extents];
        data = disk->is_blockdev ? pos : lseek(disk->fd, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO) {
            data = end; /* only a hole up to EOF */
        } else if (data < 0) {
            /* No SEEK_DATA support: say everything is data (always true). */
            e->length = (uint64_t)(end - pos);
            e->flags = 0;
            io->nr_extents++;
            break;
        }
        if (data > pos) {
            e->length = (uint64_t)(IOC_MIN(data, end) - pos);
            e->flags = IOC_EXTENT_HOLE | IOC_EXTENT_ZERO;
            io->nr_extents++;
            pos = IOC_MIN(data, end);
            continue;
        }
        hole = disk->is_blockdev ? end : lseek(disk->fd, pos, SEEK_HOLE);
        if (hole < 0 || hole > end) {
            hole = end;
        }
        e->length = (uint64_t)(hole - pos);
        e->flags = 0;
        io->nr_extents++;
        pos = hole;
    }
    ioc_bdev_io_complete_deferred(io, 0);
}

static void
file_submit_zeroes(struct file_disk *disk, struct ioc_bdev_io *io)
{
    int mode = (io->flags & IOC_IO_NO_HOLE) ? (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)
                                             : (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);

    if (disk->bdev.fast_zero) {
        file_submit_fallocate(io, mode);
        return;
    }
    if (io->flags & IOC_IO_FAST_ZERO) {
        ioc_bdev_io_complete_deferred(io, -ENOTSUP);
        return;
    }
    ioc_bdev_io_complete_deferred(io, file_write_zeroes_slow(disk, io->offset, io->length));
}

static void
file_submit(struct ioc_bdev_io *io)
{
    struct file_disk *disk = io->bdev->ctx;
    struct file_io_ctx *ctx = file_ctx(io);
    struct io_uring_sqe *sqe;

    memset(ctx, 0, sizeof(*ctx));
    switch (io->type) {
    case IOC_IO_READ:
        if (!file_read_mapped(disk, io)) {
            file_submit_rw(io);
        }
        return;
    case IOC_IO_WRITE:
        if (file_write_in_place(disk, io)) {
            return;
        }
        if (!file_write_inline(disk, io)) {
            file_submit_rw(io);
        }
        return;
    case IOC_IO_FLUSH:
    case IOC_IO_PREFETCH:
        sqe = ioc_reactor_get_sqe(io->reactor);
        if (io->type == IOC_IO_FLUSH) {
            io_uring_prep_fsync(sqe, disk->fd, IORING_FSYNC_DATASYNC);
        } else {
            io_uring_prep_fadvise(sqe, disk->fd, io->offset, (off_t)io->length,
                                  POSIX_FADV_WILLNEED);
        }
        ctx->req.done = file_misc_done;
        ctx->pending = 1;
        ioc_uring_sqe_set_req(sqe, &ctx->req);
        return;
    case IOC_IO_UNMAP:
        file_submit_fallocate(io, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
        return;
    case IOC_IO_WRITE_ZEROES:
        file_submit_zeroes(disk, io);
        return;
    case IOC_IO_BLOCK_STATUS:
        file_block_status(disk, io);
        return;
    default:
        ioc_bdev_io_complete_deferred(io, -ENOTSUP);
        return;
    }
}

static bool
file_supports(struct ioc_bdev *bdev, enum ioc_io_type type)
{
    struct file_disk *disk = bdev->ctx;

    if (type == IOC_IO_UNMAP) {
        return bdev->fast_zero || disk->is_blockdev;
    }
    return type < IOC_IO_TYPE_COUNT;
}

static void
file_destruct(struct ioc_bdev *bdev)
{
    struct file_disk *disk = bdev->ctx;

    file_map_close(&disk->map);
    if (disk->fd >= 0) {
        close(disk->fd);
    }
    free(disk);
}

static void
file_dump_json(struct ioc_bdev *bdev, json_t *obj)
{
    struct file_disk *disk = bdev->ctx;

    json_object_set_new(obj, "path", json_string(disk->path));
    json_object_set_new(obj, "direct", json_boolean(disk->direct));
    json_object_set_new(obj, "mapped", json_boolean(disk->map.base != NULL));
    json_object_set_new(obj, "reads_mapped",
                        json_integer((json_int_t)atomic_load_explicit(&disk->reads_mapped,
                                                                      memory_order_relaxed)));
    json_object_set_new(obj, "writes_in_place",
                        json_integer((json_int_t)atomic_load_explicit(&disk->writes_in_place,
                                                                      memory_order_relaxed)));
}

/* Buffered only (O_DIRECT bytes are not in the page cache), and only cached. */
static int
file_splice_source(struct ioc_bdev *bdev, uint64_t offset, uint64_t len, int *fd,
                   uint64_t *file_offset)
{
    struct file_disk *disk = bdev->ctx;
    int cached;

    if (disk->direct) {
        return -ENOTSUP;
    }
    cached = file_map_range_cached(disk->fd, disk->page_size, offset, len);
    if (cached <= 0) {
        return cached < 0 ? cached : -EAGAIN;
    }
    *fd = disk->fd;
    *file_offset = offset;
    return 0;
}

/*
 * Receiving a WRITE's bytes straight into the mapped page cache saves the
 * copy from a buffer into it, and pwrite's per-page work (measured on 128 KiB
 * sequential writes: see docs/design-notes.md, "Writes received in place").
 * Only where every page is cached: a store into a page that is not makes the
 * kernel read it from disk first, on the reactor thread (a pwrite of whole
 * pages would not).
 */
static void *
file_write_window(struct ioc_bdev *bdev, uint64_t offset, uint64_t len)
{
    struct file_disk *disk = bdev->ctx;

    if (disk->map.base == NULL ||
        file_map_range_cached(disk->fd, disk->page_size, offset, len) <= 0) {
        return NULL;
    }
    return disk->map.base + offset;
}

static const struct ioc_bdev_ops file_ops = {
    .submit = file_submit,
    .supports = file_supports,
    .destruct = file_destruct,
    .dump_json = file_dump_json,
    .splice_source = file_splice_source,
    .write_window = file_write_window,
};

/* ---- creation (control path) ---- */

static int
file_open(struct file_disk *disk, const struct ioc_bdev_file_opts *opts, struct ioc_err *err)
{
    int flags = O_RDWR | O_CLOEXEC | (opts->direct ? O_DIRECT : 0);

    disk->fd = open(opts->path, flags | (opts->size != 0 ? O_CREAT : 0), 0600);
    if (disk->fd < 0 && errno == EINVAL && opts->direct) {
        return ioc_err_set(err, -EINVAL,
                           "direct: the file system holding '%s' does not support O_DIRECT",
                           opts->path);
    }
    if (disk->fd < 0 && errno == ENOENT) {
        return ioc_err_set(err, -ENOENT,
                           "path: '%s' does not exist (give size to create it)", opts->path);
    }
    if (disk->fd < 0) {
        int e = errno;
        return ioc_err_set(err, -e, "path: cannot open '%s': %s", opts->path, strerror(e));
    }
    return 0;
}

static int
file_size_setup(struct file_disk *disk, const struct ioc_bdev_file_opts *opts, uint64_t *size,
                uint32_t *block_size, struct ioc_err *err)
{
    struct stat st;

    if (fstat(disk->fd, &st) < 0) {
        return ioc_err_set(err, -errno, "path: cannot stat '%s'", opts->path);
    }
    if (S_ISBLK(st.st_mode)) {
        int lbs = 512;
        disk->is_blockdev = true;
        if (ioctl(disk->fd, BLKGETSIZE64, size) < 0 || ioctl(disk->fd, BLKSSZGET, &lbs) < 0) {
            return ioc_err_set(err, -errno, "path: cannot query block device '%s'", opts->path);
        }
        *block_size = IOC_MAX(*block_size, (uint32_t)lbs);
        if (opts->size != 0 && opts->size > *size) {
            return ioc_err_set(err, -EINVAL, "size: the device '%s' has only %llu bytes",
                               opts->path, (unsigned long long)*size);
        }
        *size = opts->size != 0 ? opts->size : *size;
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        return ioc_err_set(err, -EINVAL, "path: '%s' is neither a regular file nor a block device",
                           opts->path);
    }
    *size = (uint64_t)st.st_size;
    if (opts->size != 0 && opts->size != *size) {
        if (opts->size < *size) {
            return ioc_err_set(err, -EINVAL,
                               "size: '%s' already holds %llu bytes; refusing to shrink it to "
                               "%llu (omit size to use the file as it is)",
                               opts->path, (unsigned long long)*size,
                               (unsigned long long)opts->size);
        }
        if (ftruncate(disk->fd, (off_t)opts->size) < 0) {
            return ioc_err_set(err, -errno, "size: cannot grow '%s': %s", opts->path,
                               strerror(errno));
        }
        *size = opts->size;
    }
    disk->bdev.fast_zero = true; /* regular files: fallocate, probed below */
    return 0;
}

/* The mapping behind file_write_window and file_read_mapped. */
static void
file_map_setup(struct file_disk *disk, const struct ioc_bdev_file_opts *opts, uint64_t size)
{
    int rc;

    if (disk->direct || disk->is_blockdev || opts->no_map) {
        return;
    }
    rc = file_map_open(&disk->map, disk->fd, size, disk->page_size);
    if (rc < 0) {
        IOC_INFO("bdev", "bdev %s: cannot map %s (%s): all IO goes through io_uring",
                 disk->bdev.name, disk->path, strerror(-rc));
    }
}

/* Find out once whether the file system can punch holes, instead of failing every TRIM. */
static void
file_probe_fallocate(struct file_disk *disk, uint64_t size)
{
    if (disk->is_blockdev || size == 0) {
        return;
    }
    /* A zero-length punch at EOF changes nothing but reports EOPNOTSUPP where unsupported. */
    if (fallocate(disk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)size, 0) < 0 &&
        errno == EOPNOTSUPP) {
        disk->bdev.fast_zero = false;
    }
}

int
ioc_bdev_file_create(const struct ioc_bdev_file_opts *opts, struct ioc_err *err)
{
    struct file_disk *disk;
    struct ioc_bdev *bdev;
    uint32_t block_size = opts->block_size != 0 ? opts->block_size : (opts->direct ? 4096 : 512);
    uint64_t size = 0;
    int rc;

    rc = ioc_bdev_name_check(opts->name, err);
    if (rc < 0) {
        return rc;
    }
    if (block_size != 512 && block_size != 4096) {
        return ioc_err_set(err, -EINVAL, "block_size: must be 512 or 4096, got %u", block_size);
    }
    disk = calloc(1, sizeof(*disk));
    if (disk == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    disk->fd = -1;
    disk->direct = opts->direct;
    disk->page_size = (uint64_t)sysconf(_SC_PAGESIZE);
    snprintf(disk->path, sizeof(disk->path), "%s", opts->path);
    ioc_bdev_init(&disk->bdev, opts->name, "file", &file_ops, disk, 0, block_size);
    rc = file_open(disk, opts, err);
    if (rc == 0) {
        rc = file_size_setup(disk, opts, &size, &block_size, err);
    }
    if (rc == 0 && (size == 0 || size % block_size != 0)) {
        rc = ioc_err_set(err, -EINVAL, "size: %llu is not a non-zero multiple of the block size %u",
                         (unsigned long long)size, block_size);
    }
    if (rc < 0) {
        file_destruct(&disk->bdev);
        return rc;
    }
    file_probe_fallocate(disk, size);
    file_map_setup(disk, opts, size);
    disk->bdev.size = size;
    disk->bdev.block_size = block_size;
    disk->bdev.buf_align = opts->direct ? 4096 : 1;
    bdev = &disk->bdev;
    rc = ioc_bdev_register(bdev, err);
    ioc_bdev_put(&bdev);
    return rc;
}
