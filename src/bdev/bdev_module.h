/*
 * bdev/bdev_module.h - the block device layer, module-author side.
 *
 * A module (malloc, file, error, ...) fills a `struct ioc_bdev` with
 * ioc_bdev_init(), points it at its ops and per-instance context, and
 * registers it. From then on the core calls the ops below; callers never call
 * ops directly (the wrappers in bdev.c check the contract first).
 */
#ifndef IOC_BDEV_BDEV_MODULE_H
#define IOC_BDEV_BDEV_MODULE_H

#include "ioc/common.h"

#include <jansson.h>
#include <pthread.h>

#include "bdev/bdev.h"

struct ioc_bdev_ops {
    /*
     * Required. Start the IO; complete it exactly once with
     * ioc_bdev_io_complete(), never from inside submit (defer instead, e.g.
     * ioc_reactor_defer() or an io_uring completion). Called on a reactor
     * thread, the one that completes it. The range and type were checked.
     * The module may use io->module_ctx (IOC_BDEV_IO_CTX_MAX bytes).
     */
    void (*submit)(struct ioc_bdev_io *io);

    /* Optional. Which IO types are supported; NULL = READ, WRITE, FLUSH. */
    bool (*supports)(struct ioc_bdev *bdev, enum ioc_io_type type);

    /*
     * Optional. Called once when the last reference is dropped, on whichever
     * thread dropped it (never while IO is in flight: in-flight IO holds no
     * reference, but its owner does). Frees the module's context.
     */
    void (*destruct)(struct ioc_bdev *bdev);

    /* Optional. Add module-specific fields to a bdev_list entry. */
    void (*dump_json)(struct ioc_bdev *bdev, json_t *obj);

    /*
     * Optional. A file descriptor and offset from which the bytes
     * [offset, offset + len) can be spliced (splice(2)) instead of read, for
     * a target that sends them on a socket; the fd stays valid while the
     * caller holds its reference. Only when splicing will not wait for the
     * disk (the bytes are in the page cache). The range was checked.
     * Returns 0, or -ENOTSUP / -EAGAIN: read them with an IO instead.
     */
    int (*splice_source)(struct ioc_bdev *bdev, uint64_t offset, uint64_t len, int *fd,
                         uint64_t *file_offset);

    /*
     * Optional. Where the bytes of a WRITE of [offset, offset + len) can be
     * received in place, so that writing them costs no copy: a pointer into
     * the bdev's own storage (the file bdev: its page cache, mapped), or NULL
     * for "use a buffer". A WRITE submitted with exactly that one iovec then
     * only has to make the bytes as durable as its flags ask. Only when
     * storing there will not wait for the disk. The range was checked.
     */
    void *(*write_window)(struct ioc_bdev *bdev, uint64_t offset, uint64_t len);
};

struct ioc_bdev {
    char name[128];
    uint64_t size;            /* bytes, a multiple of block_size */
    uint32_t block_size;      /* logical block size: 512 or 4096 */
    uint32_t buf_align;       /* required buffer alignment, >= 1 */
    bool fast_zero;           /* WRITE_ZEROES is a metadata operation */
    const char *module_name;  /* "malloc", "file", "error" */
    const struct ioc_bdev_ops *ops;
    void *ctx;                /* the module's per-instance state */

    /* Owned by the core. */
    int refs;                 /* protected by the registry lock */
    bool registered;
    struct ioc_bdev *next;    /* registry list */
};

/** Fill the common fields; refs start at 1 (the creator's). */
void ioc_bdev_init(struct ioc_bdev *bdev, const char *name, const char *module_name,
                   const struct ioc_bdev_ops *ops, void *ctx, uint64_t size,
                   uint32_t block_size);

/**
 * Add bdev to the registry, which takes its own reference. -EEXIST if the name
 * is taken, -EINVAL if the name is empty or too long (err says which).
 * The creator keeps its reference and usually drops it right after.
 */
int ioc_bdev_register(struct ioc_bdev *bdev, struct ioc_err *err);

/** Complete io with status (0 or -errno). Calls the consumer's callback. */
void ioc_bdev_io_complete(struct ioc_bdev_io *io, int status);

/**
 * Complete io later in this reactor iteration (for modules that finish work
 * synchronously, like malloc): honours "never inline" without a syscall.
 */
void ioc_bdev_io_complete_deferred(struct ioc_bdev_io *io, int status);

/** Validate a bdev name from RPC: 1..127 chars of [A-Za-z0-9._:/-]. */
int ioc_bdev_name_check(const char *name, struct ioc_err *err);

#endif
