/*
 * bdev/file/file_map.h - the file bdev's shared mapping of its file, and
 * what the page cache holds (internal to the file module).
 *
 * The mapping serves two shortcuts around io_uring, both only where the
 * page cache already holds the bytes: WRITEs received in place (the kernel
 * stores into the mapping, see ioc_bdev_write_window) and READs copied out
 * of the mapping by the reactor (file_map_copy_out). A CPU access to a page
 * that cannot be backed raises SIGBUS; the copy runs under a guard that
 * turns that into an error for the one IO, which then goes through io_uring.
 */
#ifndef IOC_BDEV_FILE_MAP_H
#define IOC_BDEV_FILE_MAP_H

#include "ioc/common.h"

#include <stdatomic.h>
#include <sys/uio.h>

struct file_map {
    uint8_t *base;                 /* NULL: not mapped */
    size_t len;
    int fd;
    uint64_t page_size;
    /* Per FILE_MAP_CHUNK of the file: (ns of the last cachestat << 1) | all cached. */
    _Atomic uint64_t *chunk_state;
    uint64_t nr_chunks;
};

/** Map fd's first size bytes shared, read-write. 0 or -errno (then m->base is NULL). */
int file_map_open(struct file_map *m, int fd, uint64_t size, uint64_t page_size);
void file_map_close(struct file_map *m);

/**
 * Whether every page of [offset, offset + len) is in the page cache now:
 * 1, 0, or -ENOTSUP without cachestat(2). One syscall.
 */
int file_map_range_cached(int fd, uint64_t page_size, uint64_t offset, uint64_t len);

/**
 * Whether [offset, offset + len) lay in chunks that were all cached at their
 * last check, checking again (one cachestat per chunk) what is older than
 * FILE_MAP_RESIDENT_TTL_NS at now_ns. Cheap enough for every READ; a page
 * evicted since the check costs a read from disk on the calling thread.
 */
bool file_map_resident(struct file_map *m, uint64_t offset, uint64_t len, uint64_t now_ns);

/**
 * Copy [offset, offset + ioc_iov_len(iov)) of the mapping into iov. Returns 0,
 * or -EFAULT if a page could not be backed (SIGBUS caught: the file was
 * truncated, or reading a page failed); some of iov may have been written.
 */
int file_map_copy_out(const struct file_map *m, uint64_t offset, const struct iovec *iov,
                      int iovcnt);

#endif
