/*
 * lib/err.h - a human-readable error for control-path functions.
 *
 * Control-path functions that can fail for reasons a person must act on take
 * a `struct ioc_err *err` as their last parameter (a light version of QEMU's
 * errp). They return a negative errno AND fill err; the RPC layer turns the
 * pair into a JSON-RPC error. err may be NULL when the caller only wants the
 * errno. Data-path functions never use this: they return -errno only.
 */
#ifndef IOC_LIB_ERR_H
#define IOC_LIB_ERR_H

#include "ioc/common.h"

#define IOC_ERR_MSG_MAX 512

struct ioc_err {
    int code;                  /* negative errno, 0 when unset */
    char msg[IOC_ERR_MSG_MAX]; /* "size: must be a multiple of 512, got 1000" */
};

/**
 * Fill err (if not NULL and not already set) with code and a printf-style
 * message. Returns code, so `return ioc_err_set(err, -EINVAL, "...")` works.
 * The first error wins: a lower layer's precise message is kept.
 */
int ioc_err_set(struct ioc_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Reset err to "no error". */
void ioc_err_clear(struct ioc_err *err);

#endif
