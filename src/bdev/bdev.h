/*
 * bdev/bdev.h - the block device layer, consumer side.
 *
 * A bdev is a name, a size, a block size and an ops table. Consumers (targets,
 * stacked bdevs, tools) find one by name, take a reference, allocate IOs from
 * it and submit them on a reactor thread.
 *
 * The async contract, for every IO type: ioc_bdev_io_submit() returning 0 means
 * io->cb is called exactly once, on the submitting reactor thread, and never
 * before ioc_bdev_io_submit() returns. Returning a negative errno means the
 * callback is never called (the IO was refused: bad range, unsupported type).
 * A completed IO reports 0 or a negative errno in `status`.
 */
#ifndef IOC_BDEV_BDEV_H
#define IOC_BDEV_BDEV_H

#include "ioc/common.h"

#include <sys/uio.h>

#include "core/reactor.h"
#include "lib/err.h"

struct ioc_bdev;
struct ioc_bdev_io;

enum ioc_io_type {
    IOC_IO_READ = 0,
    IOC_IO_WRITE,
    IOC_IO_FLUSH,        /* every write completed before it is on stable storage */
    IOC_IO_UNMAP,        /* deallocate; contents afterwards read as zero */
    IOC_IO_WRITE_ZEROES, /* make the range read as zero; may deallocate unless NO_HOLE */
    IOC_IO_BLOCK_STATUS, /* report allocation of a range (extents, see below) */
    IOC_IO_PREFETCH,     /* advisory read-ahead (NBD CACHE) */
    IOC_IO_TYPE_COUNT,
};

/* IO flags. */
#define IOC_IO_FUA       (1u << 0) /* WRITE/WRITE_ZEROES/UNMAP: stable on completion */
#define IOC_IO_NO_HOLE   (1u << 1) /* WRITE_ZEROES: keep the range allocated */
#define IOC_IO_FAST_ZERO (1u << 2) /* WRITE_ZEROES: fail with -ENOTSUP rather than write zeroes slowly */

/* Extent flags for IOC_IO_BLOCK_STATUS (same meaning as NBD base:allocation). */
#define IOC_EXTENT_HOLE (1u << 0) /* not allocated */
#define IOC_EXTENT_ZERO (1u << 1) /* reads as zeroes */

struct ioc_extent {
    uint64_t length;
    uint32_t flags;
};

typedef void (*ioc_bdev_io_cb)(struct ioc_bdev_io *io, void *cb_arg);

/* Upper bound of a module's per-IO context (the core reserves it in each IO). */
#define IOC_BDEV_IO_CTX_MAX 192

/*
 * One IO. Allocated with ioc_bdev_io_alloc() from a per-thread cache (no
 * malloc on the hot path once warm), filled by the caller, submitted, and
 * freed by the caller (usually in its callback) with ioc_bdev_io_free().
 */
struct ioc_bdev_io {
    struct ioc_bdev *bdev;
    enum ioc_io_type type;
    uint32_t flags;
    uint64_t offset;
    uint64_t length;
    struct iovec *iov;   /* READ/WRITE: buffers covering `length` bytes; borrowed */
    int iovcnt;
    struct iovec iov_single; /* convenience: point iov here for one buffer */

    /* BLOCK_STATUS: the caller provides the array; the module fills nr_extents
     * (>= 1 on success) describing a prefix of [offset, offset+length). */
    struct ioc_extent *extents;
    uint32_t max_extents;
    uint32_t nr_extents;

    ioc_bdev_io_cb cb;
    void *cb_arg;
    int status;          /* 0 or -errno, valid in the callback */

    /* Owned by the core. */
    struct ioc_reactor *reactor;
    struct ioc_deferred defer;   /* for ioc_bdev_io_complete_deferred() */
    struct ioc_bdev_io *cache_next;
    void *caller_ctx;    /* free for the caller's use */

    _Alignas(16) uint8_t module_ctx[IOC_BDEV_IO_CTX_MAX]; /* the module's per-IO state */
};

/* ---- registry (control path, any thread; internally locked) ---- */

/**
 * Find a bdev by name and return a new reference (release with ioc_bdev_put()),
 * or NULL if there is none.
 */
struct ioc_bdev *ioc_bdev_get_by_name(const char *name);

/** Take one more reference. */
void ioc_bdev_get(struct ioc_bdev *bdev);

/** Release a reference and NULL the pointer; the last one destroys the bdev. */
void ioc_bdev_put(struct ioc_bdev **bdev);

/**
 * Remove a bdev from the registry and drop the registry's reference.
 * -ENOENT if there is no such bdev; -EBUSY (with err naming the user) if
 * anything else still holds it (an export, a stacked bdev, a connection).
 */
int ioc_bdev_delete(const char *name, struct ioc_err *err);

/** Call fn for every registered bdev, in name order, under the registry lock. */
void ioc_bdev_foreach(void (*fn)(struct ioc_bdev *bdev, void *arg), void *arg);

/* ---- properties ---- */
const char *ioc_bdev_name(const struct ioc_bdev *bdev);
uint64_t ioc_bdev_size(const struct ioc_bdev *bdev);
uint32_t ioc_bdev_block_size(const struct ioc_bdev *bdev);
/** Required alignment of IO buffers (4096 for O_DIRECT files, else 1). */
uint32_t ioc_bdev_buf_align(const struct ioc_bdev *bdev);
const char *ioc_bdev_module_name(const struct ioc_bdev *bdev);
/** Whether the bdev can do the IO type (NULL ops->supports: READ/WRITE/FLUSH only). */
bool ioc_bdev_supports(const struct ioc_bdev *bdev, enum ioc_io_type type);

/**
 * Instead of a READ of [offset, offset + len): a file descriptor and offset
 * to splice the same bytes from, valid while the caller holds a reference
 * to the bdev (bdev_module.h, splice_source). Returns 0, -ERANGE (outside
 * the bdev), or -ENOTSUP / -EAGAIN: read them with an IO instead. The bytes
 * are those of the page cache when they are spliced, so, as with a READ in
 * flight, a WRITE completed meanwhile may show.
 */
int ioc_bdev_splice_source(const struct ioc_bdev *bdev, uint64_t offset, uint64_t len, int *fd,
                           uint64_t *file_offset);
/**
 * Where a WRITE of [offset, offset + len) may have its bytes received in
 * place (bdev_module.h, write_window), or NULL: use a buffer. The bytes are
 * visible to readers as soon as they are stored, as with a WRITE in flight.
 * Only the kernel may store there, by recv(2) and the like: where the store
 * cannot be backed (a full disk under a sparse file, a file truncated
 * behind iocd's back) the syscall fails with EFAULT, where a store by the CPU
 * would kill the daemon with SIGBUS. Valid while the caller holds a
 * reference to the bdev; the caller has checked that the WRITE is allowed.
 */
void *ioc_bdev_write_window(const struct ioc_bdev *bdev, uint64_t offset, uint64_t len);
/** Whether WRITE_ZEROES is cheap (no data written), so FAST_ZERO can succeed. */
bool ioc_bdev_fast_zero(const struct ioc_bdev *bdev);
const char *ioc_io_type_name(enum ioc_io_type type);

/* ---- IO (reactor thread) ---- */

/** Allocate an IO for bdev from this thread's cache; NULL on -ENOMEM. */
struct ioc_bdev_io *ioc_bdev_io_alloc(struct ioc_bdev *bdev);

/** Return an IO to this thread's cache. Accepts NULL. */
void ioc_bdev_io_free(struct ioc_bdev_io *io);

/**
 * Free this thread's cache of IOs. Runs by itself when a thread exits; call it
 * explicitly on the main thread (tests, fuzzers) before checking for leaks.
 */
void ioc_bdev_io_cache_drain(void);

/**
 * Submit io. Checks the contract first: range inside the bdev, alignment to the
 * block size for READ/WRITE, iovecs covering length, type supported.
 * Returns 0 (callback will run exactly once, later) or -EINVAL / -ENOTSUP /
 * -ERANGE (callback never runs). Must run on a reactor thread.
 */
int ioc_bdev_io_submit(struct ioc_bdev_io *io);

/** Helpers filling an IO; they do not submit. */
void ioc_bdev_io_prep_rw(struct ioc_bdev_io *io, enum ioc_io_type type, uint64_t offset,
                         uint64_t length, struct iovec *iov, int iovcnt, uint32_t flags,
                         ioc_bdev_io_cb cb, void *cb_arg);
void ioc_bdev_io_prep(struct ioc_bdev_io *io, enum ioc_io_type type, uint64_t offset,
                      uint64_t length, uint32_t flags, ioc_bdev_io_cb cb, void *cb_arg);

#endif
