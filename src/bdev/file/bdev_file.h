/*
 * bdev/file/bdev_file.h - a regular file or a block device, through io_uring.
 */
#ifndef IOC_BDEV_FILE_H
#define IOC_BDEV_FILE_H

#include "ioc/common.h"

#include "lib/err.h"

struct ioc_bdev_file_opts {
    const char *name;    /* bdev name */
    const char *path;    /* regular file or block device */
    uint64_t size;       /* 0: use the file's size (it must exist); else create or grow to it */
    bool direct;         /* O_DIRECT: bypass the page cache (block size 4096) */
    uint32_t block_size; /* 0: 512 buffered, 4096 direct (block devices: the device's) */
    bool no_map;         /* no shared mapping: every IO through io_uring (file_map.h) */
};

/**
 * Open (creating or growing a regular file when size is given) and register.
 * Returns 0, or -ENOENT / -EINVAL / -EEXIST / -EACCES / ... with err naming
 * the field at fault. Runs on the control path (blocking calls allowed).
 */
int ioc_bdev_file_create(const struct ioc_bdev_file_opts *opts, struct ioc_err *err);

#endif
