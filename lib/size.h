/*
 * lib/size.h - human sizes: "10GiB", "512MiB", "4k", "1048576".
 *
 * Parsing accepts binary suffixes (k, K, KiB, M, MiB, G, GiB, T, TiB, with an
 * optional trailing B) meaning powers of 1024, and plain byte counts.
 * Decimal suffixes (KB as 1000) are refused rather than guessed at: storage
 * sizes that are off by 2.4% are worse than an error.
 */
#ifndef IOC_LIB_SIZE_H
#define IOC_LIB_SIZE_H

#include "ioc/common.h"

/**
 * Parse a size string into *out bytes.
 * Returns 0, or -EINVAL (not a size), -ERANGE (does not fit in 64 bits).
 */
int ioc_size_parse(const char *s, uint64_t *out);

/**
 * Format bytes the way sizes are written in input: the largest binary unit
 * that divides exactly ("10GiB", "1536KiB", "1000B"); with `approx`, one
 * decimal for inexact values ("1.5GiB"). Returns buf.
 */
char *ioc_size_format(uint64_t bytes, bool approx, char *buf, size_t buflen);

#endif
