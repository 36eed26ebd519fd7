/*
 * target/nbd/nbd.h - the NBD target as the daemon sees it.
 *
 * The daemon starts the target after the reactors run and stops it before
 * they stop. Exports (name -> bdev) are added and removed at any time, from
 * any non-reactor thread (RPC, main, tests); see docs/nbd.md for the protocol
 * features and limits.
 */
#ifndef IOC_TARGET_NBD_NBD_H
#define IOC_TARGET_NBD_NBD_H

#include "ioc/common.h"

#include "lib/err.h"

struct ioc_nbd_target_opts {
    const char *listen;    /* "127.0.0.1:10809", "[::1]:10809", ":10809"; NULL = none */
    const char *unix_path; /* unix socket path; NULL = none */
};

/**
 * Open the listening sockets and start accepting on reactor 0; connections are
 * spread round-robin over all reactors. Call after ioc_reactors_start(), from
 * a non-reactor thread. Returns 0, -EALREADY if started, -EINVAL for a bad
 * address, or the socket/bind/listen error (err says which address).
 */
int ioc_nbd_target_start(const struct ioc_nbd_target_opts *opts, struct ioc_err *err);

/**
 * Stop accepting, close every connection (waiting for their in-flight IO),
 * close and unlink the listening sockets. Call before ioc_reactors_stop(),
 * from a non-reactor thread. Idempotent.
 */
void ioc_nbd_target_stop(void);

/**
 * Export bdev `bdev_name` under `name` (1..255 bytes, no NUL). The export
 * holds a reference to the bdev until it is removed and its last connection
 * is gone. Returns 0, -EEXIST (name taken), -ENODEV (no such bdev), -EINVAL
 * (bad name), -ENOMEM. Any thread.
 */
int ioc_nbd_export_add(const char *name, const char *bdev_name, bool read_only,
                       struct ioc_err *err);

/**
 * Remove an export: new clients no longer see it; connections already using
 * it are closed (their in-flight IO completes first). Returns 0 or -ENOENT.
 * Any thread.
 */
int ioc_nbd_export_remove(const char *name, struct ioc_err *err);

/** Remove every export (daemon shutdown, tests). */
void ioc_nbd_export_remove_all(void);

#endif
