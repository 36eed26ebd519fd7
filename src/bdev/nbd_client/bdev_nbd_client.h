/*
 * bdev/nbd_client/bdev_nbd_client.h - a bdev backed by a remote NBD export.
 */
#ifndef IOC_BDEV_NBD_CLIENT_BDEV_NBD_CLIENT_H
#define IOC_BDEV_NBD_CLIENT_BDEV_NBD_CLIENT_H

#include "ioc/common.h"

#include "core/reactor.h"
#include "lib/err.h"

#define IOC_NBD_CLIENT_DEFAULT_TIMEOUT_S 30
#define IOC_NBD_CLIENT_MAX_TIMEOUT_S     86400

struct ioc_bdev_nbd_client_opts {
    const char *name;        /* bdev name */
    const char *uri;         /* nbd://host[:port]/export or nbd+unix:///export?socket=PATH */
    uint32_t io_timeout_s;   /* 0: IOC_NBD_CLIENT_DEFAULT_TIMEOUT_S */
    struct ioc_reactor *reactor; /* owner of the connection; NULL: ioc_reactor_next() */
};

/**
 * Connect to opts->uri (blocking: connect and the NBD handshake), hand the
 * connection to a reactor and register the bdev. Control path only (RPC
 * thread, tests' main thread): never call it on a reactor thread, as it waits
 * for the owning reactor to take the connection.
 *
 * Returns 0, or a negative errno with err naming the URI: -EINVAL (bad name,
 * URI or timeout), -ENOTSUP (nbds://), -ECONNREFUSED / -ETIMEDOUT /
 * -EHOSTUNREACH (cannot connect), -ENOENT (the server has no such export),
 * -EACCES (refused by policy), -EPROTO (not a valid NBD server), -EEXIST.
 *
 * The bdev is deleted with ioc_bdev_delete(); its destruct sends
 * NBD_CMD_DISC, closes the socket and waits for the reactor and the
 * reconnect helper thread to let go (from a non-reactor thread).
 */
int ioc_bdev_nbd_client_create(const struct ioc_bdev_nbd_client_opts *opts, struct ioc_err *err);

#endif
