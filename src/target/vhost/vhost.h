/*
 * target/vhost/vhost.h - vhost-user-blk exports: a bdev served over shared
 * memory to a local process (libvblk, qemu, any vhost-user front end).
 *
 * Control path only; all functions are called from a non-reactor thread (RPC,
 * main) and may block briefly (they wait for reactors with
 * ioc_reactor_call_sync). Thread safe (the export registry is locked).
 */
#ifndef IOC_TARGET_VHOST_VHOST_H
#define IOC_TARGET_VHOST_VHOST_H

#include "ioc/common.h"

#include "lib/err.h"

struct ioc_vhost_export_info {
    const char *socket;     /* borrowed for the duration of the callback */
    const char *bdev;
    unsigned num_queues;
    bool read_only;
    unsigned connections;
};

/**
 * Export bdev on a new unix socket at path (mode 0600 by umask; a stale socket
 * file is replaced). num_queues 0 means 1; at most 16. Returns 0 or -errno
 * with err set: -ENODEV (no such bdev), -EEXIST (path in use by an export or
 * not a socket), -EINVAL, -ENAMETOOLONG, or the errno of socket/bind/listen.
 * Needs running reactors.
 */
int ioc_vhost_export_add(const char *path, const char *bdev, unsigned num_queues,
                         bool read_only, struct ioc_err *err);

/**
 * Close the socket, disconnect every client (in-flight IO completes first),
 * release the bdev. -ENOENT if there is no export at path.
 */
int ioc_vhost_export_remove(const char *path, struct ioc_err *err);

/** Remove every export (daemon shutdown; before ioc_reactors_stop). */
void ioc_vhost_export_remove_all(void);

/** Call fn for each export, in creation order, under the registry lock. */
void ioc_vhost_export_foreach(void (*fn)(const struct ioc_vhost_export_info *info, void *arg),
                              void *arg);

#endif
