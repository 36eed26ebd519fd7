/*
 * bdev/malloc/bdev_malloc.h - RAM disk.
 */
#ifndef IOC_BDEV_MALLOC_H
#define IOC_BDEV_MALLOC_H

#include "ioc/common.h"

#include "lib/err.h"

/**
 * Create and register a zero-filled RAM bdev. size must be a non-zero multiple
 * of block_size (512 or 4096; 0 means 512). Memory is reserved lazily (pages
 * appear on first write). Returns 0, -EINVAL (err names the field), -EEXIST,
 * -ENOMEM.
 */
int ioc_bdev_malloc_create(const char *name, uint64_t size, uint32_t block_size,
                           struct ioc_err *err);

#endif
