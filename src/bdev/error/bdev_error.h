/*
 * bdev/error/bdev_error.h - a stacked fault injector for tests.
 *
 * An error bdev passes IO through to its base bdev, except IO that matches an
 * injection rule: that IO is delayed, failed with a chosen errno, or both.
 */
#ifndef IOC_BDEV_ERROR_H
#define IOC_BDEV_ERROR_H

#include "ioc/common.h"

#include <jansson.h>

#include "lib/err.h"

#define IOC_ERROR_MAX_RULES 16

struct ioc_error_rule {
    uint32_t io_types; /* bit mask of (1 << enum ioc_io_type); 0 = every type */
    int error;         /* negative errno to fail with; 0 = do not fail (delay only) */
    uint64_t offset;   /* affected range start */
    uint64_t length;   /* affected range length; 0 = up to the end of the device */
    uint64_t after;    /* let this many matching IOs through first */
    uint64_t count;    /* inject this many times, then the rule expires; 0 = always */
    uint64_t delay_us; /* hold matching IOs this long before passing or failing them */
};

/** Create and register error bdev `name` on top of `base`. -ENOENT if no base. */
int ioc_bdev_error_create(const char *name, const char *base, struct ioc_err *err);

/** Add a rule. -ENOENT (not an error bdev), -ENOSPC (too many rules). */
int ioc_bdev_error_inject(const char *name, const struct ioc_error_rule *rule,
                          struct ioc_err *err);

/** Remove every rule. */
int ioc_bdev_error_clear(const char *name, struct ioc_err *err);

#endif
