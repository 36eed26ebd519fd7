/*
 * target/iscsi/iscsi.h - the iSCSI target as the daemon sees it.
 *
 * The daemon starts the target after the reactors run and stops it before
 * they stop. Targets (an IQN with LUNs bound to bdevs) are created and
 * deleted at any time from non-reactor threads (RPC, main, tests). See
 * docs/iscsi.md for what is implemented and the limits.
 */
#ifndef IOC_TARGET_ISCSI_ISCSI_H
#define IOC_TARGET_ISCSI_ISCSI_H

#include "ioc/common.h"

#include <jansson.h>

#include "lib/err.h"

#define IOC_ISCSI_DEFAULT_LISTEN "127.0.0.1:3260"

/**
 * Listen on `listen` ("host:port", "[v6]:port", ":port") and accept on
 * reactor 0; connections are spread round-robin over the reactors. Call after
 * ioc_reactors_start() from a non-reactor thread. Returns 0, -EALREADY,
 * -EINVAL (bad address) or the socket/bind/listen error (err says which).
 */
int ioc_iscsi_target_start(const char *listen, struct ioc_err *err);

/** Stop accepting and close every connection. Idempotent; non-reactor thread. */
void ioc_iscsi_target_stop(void);

/**
 * Create a target from its JSON description (the iscsi_target_create RPC
 * params: iqn, luns [{lun, bdev}], allowed_initiators?, chap?). Each LUN holds
 * a bdev reference until the target is deleted and its sessions are gone.
 * Returns 0, -EEXIST, -ENODEV (a bdev is missing), -EINVAL; any thread.
 */
int ioc_iscsi_tgt_create(json_t *params, struct ioc_err *err);

/** Delete a target: its sessions are closed. Returns 0 or -ENOENT. */
int ioc_iscsi_tgt_delete(const char *iqn, struct ioc_err *err);

/** Delete every target (shutdown, tests). */
void ioc_iscsi_tgt_delete_all(void);

/** Describe every target: a new JSON array. */
json_t *ioc_iscsi_tgt_list(void);

#endif
