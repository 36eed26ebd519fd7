/*
 * bdev/nbd_client/nbd_client_internal.h - shared by the files of the NBD initiator.
 */
#ifndef IOC_BDEV_NBD_CLIENT_NBD_CLIENT_INTERNAL_H
#define IOC_BDEV_NBD_CLIENT_NBD_CLIENT_INTERNAL_H

#include "ioc/common.h"

#include "bdev/nbd_client/nbd_client_proto.h"
#include "lib/err.h"

/* ---- nbd_client_handshake.c ---- */

/**
 * Connect to uri and run the fixed newstyle handshake: STRUCTURED_REPLY,
 * SET_META_CONTEXT base:allocation (if structured), then GO with
 * INFO_BLOCK_SIZE (EXPORT_NAME if the server does not know GO). Blocking:
 * runs on the RPC thread or the reconnect helper thread, never on a reactor.
 * Each step gives up after timeout_s seconds.
 *
 * On success returns 0 with *fd_out a connected blocking socket in the
 * transmission phase (ownership passes to the caller) and *info filled.
 * Otherwise returns -ECONNREFUSED / -ETIMEDOUT / -ENOENT (unknown export) /
 * -EPROTO (server spoke nonsense) / -EACCES (policy) / ... with err naming
 * the URI and, when the server gave one, its message; no fd is left open.
 */
int nbdc_connect(const struct nbdc_uri *uri, const char *uri_text, unsigned timeout_s,
                 int *fd_out, struct nbdc_export_info *info, struct ioc_err *err);

#endif
