/*
 * ioc/common.h - included first by every .c file in ioc.
 *
 * Feature macros (so glibc exposes what we use), and the few helpers that
 * every subsystem shares: container_of, array sizes, likely/unlikely, the
 * scope-cleanup attribute for scratch memory and the length of an iovec array.
 */
#ifndef IOC_COMMON_H
#define IOC_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/uio.h>

#define IOC_VERSION "0.1.0"

#define IOC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define IOC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define IOC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define IOC_UNUSED __attribute__((unused))
#define ioc_likely(x) __builtin_expect(!!(x), 1)
#define ioc_unlikely(x) __builtin_expect(!!(x), 0)

#define ioc_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline void
ioc_cleanup_free_impl(void *p)
{
    free(*(void **)p);
}

/* Scratch memory released when the variable leaves scope. Not for objects that outlive the call. */
#define IOC_CLEANUP_FREE __attribute__((cleanup(ioc_cleanup_free_impl)))

/* Hand an IOC_CLEANUP_FREE pointer out of its scope. */
static inline void *
ioc_steal_ptr_impl(void **pp)
{
    void *p = *pp;
    *pp = NULL;
    return p;
}
#define ioc_steal_ptr(pp) ioc_steal_ptr_impl((void **)(pp))

/* The bytes the first cnt iovecs of iov cover. */
static inline size_t
ioc_iov_len(const struct iovec *iov, size_t cnt)
{
    size_t n = 0;

    for (size_t i = 0; i < cnt; i++) {
        n += iov[i].iov_len;
    }
    return n;
}

#endif /* IOC_COMMON_H */
