/*
 * bdev/malloc/bdev_malloc.c - a RAM disk.
 *
 * The memory is an anonymous private mapping, so untouched ranges cost
 * nothing and UNMAP can give pages back with MADV_DONTNEED (which also makes
 * them read as zero). IO is a memcpy done at submit time; the completion is
 * deferred to later in the same reactor iteration so that the async contract
 * (never complete inline) holds without a syscall.
 *
 * Not done: block status tracking (every range reports as data), persistence.
 */
#include "ioc/common.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "bdev/bdev_module.h"
#include "bdev/malloc/bdev_malloc.h"

struct malloc_disk {
    struct ioc_bdev bdev;
    uint8_t *mem;
    uint64_t len;
};

static void
malloc_copy(struct ioc_bdev_io *io, uint8_t *mem, bool to_disk)
{
    uint64_t off = io->offset;

    for (int i = 0; i < io->iovcnt; i++) {
        if (to_disk) {
            memcpy(mem + off, io->iov[i].iov_base, io->iov[i].iov_len);
        } else {
            memcpy(io->iov[i].iov_base, mem + off, io->iov[i].iov_len);
        }
        off += io->iov[i].iov_len;
    }
}

/* Zero a range, returning whole pages to the kernel where the range covers them. */
static void
malloc_zero(struct malloc_disk *disk, uint64_t off, uint64_t len)
{
    const uint64_t page = 4096;
    uint64_t start = (off + page - 1) & ~(page - 1);
    uint64_t end = (off + len) & ~(page - 1);

    if (end > start) {
        memset(disk->mem + off, 0, start - off);
        madvise(disk->mem + start, end - start, MADV_DONTNEED);
        memset(disk->mem + end, 0, off + len - end);
    } else {
        memset(disk->mem + off, 0, len);
    }
}

static void
malloc_submit(struct ioc_bdev_io *io)
{
    struct malloc_disk *disk = io->bdev->ctx;

    switch (io->type) {
    case IOC_IO_READ:
        malloc_copy(io, disk->mem, false);
        break;
    case IOC_IO_WRITE:
        malloc_copy(io, disk->mem, true);
        break;
    case IOC_IO_UNMAP:
    case IOC_IO_WRITE_ZEROES:
        malloc_zero(disk, io->offset, io->length);
        break;
    case IOC_IO_BLOCK_STATUS:
        io->extents[0].length = io->length;
        io->extents[0].flags = 0;
        io->nr_extents = 1;
        break;
    case IOC_IO_FLUSH:
    case IOC_IO_PREFETCH:
        break;
    default:
        ioc_bdev_io_complete_deferred(io, -ENOTSUP);
        return;
    }
    ioc_bdev_io_complete_deferred(io, 0);
}

static bool
malloc_supports(struct ioc_bdev *bdev, enum ioc_io_type type)
{
    (void)bdev;
    return type < IOC_IO_TYPE_COUNT;
}

static void
malloc_destruct(struct ioc_bdev *bdev)
{
    struct malloc_disk *disk = bdev->ctx;

    munmap(disk->mem, disk->len);
    free(disk);
}

static const struct ioc_bdev_ops malloc_ops = {
    .submit = malloc_submit,
    .supports = malloc_supports,
    .destruct = malloc_destruct,
};

int
ioc_bdev_malloc_create(const char *name, uint64_t size, uint32_t block_size,
                       struct ioc_err *err)
{
    struct malloc_disk *disk;
    struct ioc_bdev *bdev;
    int rc;

    if (block_size == 0) {
        block_size = 512;
    }
    if (block_size != 512 && block_size != 4096) {
        return ioc_err_set(err, -EINVAL, "block_size: must be 512 or 4096, got %u", block_size);
    }
    if (size == 0 || size % block_size != 0) {
        return ioc_err_set(err, -EINVAL, "size: must be a non-zero multiple of %u, got %llu",
                           block_size, (unsigned long long)size);
    }
    disk = calloc(1, sizeof(*disk));
    if (disk == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    disk->len = size;
    disk->mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (disk->mem == MAP_FAILED) {
        free(disk);
        return ioc_err_set(err, -ENOMEM, "size: cannot map %llu bytes", (unsigned long long)size);
    }
    ioc_bdev_init(&disk->bdev, name, "malloc", &malloc_ops, disk, size, block_size);
    bdev = &disk->bdev;
    rc = ioc_bdev_register(bdev, err);
    ioc_bdev_put(&bdev); /* the registry holds it now, or it is destroyed */
    return rc;
}
