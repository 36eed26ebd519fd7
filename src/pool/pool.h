/*
 * pool/pool.h - pools of clusters on a bdev, with thin volumes, snapshots and
 * clones, each volume served as a bdev named "POOL/VOLUME".
 *
 * Threading: a pool belongs to its home reactor (the one that created or
 * imported it). Every function below except ioc_pool_find() and the *_sync()
 * bridges must be called on that reactor. The async
 * contract: returning 0 means cb_fn runs exactly once, later, on the home
 * reactor, with 0 or a negative errno (and `err` filled, which must stay
 * valid until then); returning a negative errno means it never runs.
 * Control operations commit the metadata before they call back, so a
 * successful call is durable.
 */
#ifndef IOC_POOL_POOL_H
#define IOC_POOL_POOL_H

#include "ioc/common.h"

#include <jansson.h>

#include "lib/err.h"

struct ioc_pool;

typedef void (*ioc_pool_cb)(void *cb_arg, int rc);

struct ioc_pool_create_opts {
    const char *name;      /* pool name, 1..63 of [A-Za-z0-9._:-] */
    const char *bdev;      /* the bdev to format (its contents are lost) */
    uint64_t size;         /* 0: the whole bdev */
    uint32_t cluster_size; /* 0: 1 MiB */
};

/** Format a bdev as an empty pool and import it. -EEXIST (name taken), -ENOENT (no bdev). */
int ioc_pool_create(const struct ioc_pool_create_opts *opts, struct ioc_err *err, ioc_pool_cb cb,
                    void *cb_arg);

/**
 * Import the pool on bdev (name NULL: the name recorded in it). Refuses a
 * corrupt or truncated pool with err naming the structure at fault.
 */
int ioc_pool_import(const char *bdev, const char *name, struct ioc_err *err, ioc_pool_cb cb,
                    void *cb_arg);

/**
 * Commit, unregister every volume bdev and forget the pool; with destroy,
 * also wipe its superblocks. -EBUSY (err names the volume) if a volume bdev
 * is still in use. With base_owned set at creation the base bdev is deleted.
 */
int ioc_pool_export(struct ioc_pool *pool, bool destroy, struct ioc_err *err, ioc_pool_cb cb,
                    void *cb_arg);

/** Mark the base bdev as created for this pool (deleted on export). */
void ioc_pool_set_base_owned(struct ioc_pool *pool, bool owned);

/** Find a pool by name (borrowed; valid until it is exported). Any thread. */
struct ioc_pool *ioc_pool_find(const char *name);

/** The pool's home reactor. */
struct ioc_reactor *ioc_pool_home(const struct ioc_pool *pool);

/** The volumes of a pool as a JSON array (new reference). Home reactor. */
json_t *ioc_pool_volumes_json(struct ioc_pool *pool);

/** Name of the base bdev (borrowed). */
const char *ioc_pool_base_name(const struct ioc_pool *pool);

/* ---- volumes (home reactor, async, committed before cb) ---- */

int ioc_pool_volume_create(struct ioc_pool *pool, const char *name, uint64_t size, bool thin,
                           struct ioc_err *err, ioc_pool_cb cb, void *cb_arg);

/** Delete a volume or snapshot; see docs/pool-format.md for the snapshot rules. */
int ioc_pool_volume_delete(struct ioc_pool *pool, const char *name, struct ioc_err *err,
                           ioc_pool_cb cb, void *cb_arg);

/** Grow (or, without a parent, shrink) a writable volume. */
int ioc_pool_volume_resize(struct ioc_pool *pool, const char *name, uint64_t size,
                           struct ioc_err *err, ioc_pool_cb cb, void *cb_arg);

/** O(1) snapshot: `name` keeps serving writes, `snap` freezes its current image. */
int ioc_pool_volume_snapshot(struct ioc_pool *pool, const char *name, const char *snap,
                             struct ioc_err *err, ioc_pool_cb cb, void *cb_arg);

/** A new writable volume whose parent is the snapshot `snap`. */
int ioc_pool_volume_clone(struct ioc_pool *pool, const char *snap, const char *name,
                          struct ioc_err *err, ioc_pool_cb cb, void *cb_arg);

/** Set (value NULL: remove) an attribute of a volume. */
int ioc_pool_volume_attr_set(struct ioc_pool *pool, const char *name, const char *key,
                             const char *value, struct ioc_err *err, ioc_pool_cb cb,
                             void *cb_arg);

/** Read an attribute into buf (synchronous, home reactor). -ENOENT if the volume or key is missing. */
int ioc_pool_volume_attr_get(struct ioc_pool *pool, const char *name, const char *key, char *buf,
                             size_t len, struct ioc_err *err);

/* ---- control-path bridges (any non-reactor thread: RPC, main) ---- */

/**
 * Import the pool found at path (a file or block device; a file bdev named
 * "<pool>.dev" is created under it) and wait; the pool's name goes to
 * name_out. Used by `iocd --pool PATH` and pool_import.
 */
int ioc_pool_import_path_sync(const char *path, const char *name, char *name_out, size_t len,
                              struct ioc_err *err);

/** Export every pool (daemon shutdown). */
void ioc_pool_export_all_sync(void);

#endif
