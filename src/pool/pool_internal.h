/*
 * pool/pool_internal.h - what pool.c, pool_vol.c, pool_io.c and pool_rpc.c share.
 *
 * Locking: pool->lock protects what the data path reads on any reactor:
 * volume maps, vols[], parent links, n_lcl and vbdev->vol. Everything is
 * mutated only on the home reactor and under the lock; the home reactor may
 * read without it. The cluster table, cstate and commit state are home-only.
 */
#ifndef IOC_POOL_POOL_INTERNAL_H
#define IOC_POOL_POOL_INTERNAL_H

#include "ioc/common.h"

#include <pthread.h>

#include "bdev/bdev_module.h"
#include "pool/pool.h"
#include "pool/pool_meta.h"

enum pool_cstate {
    POOL_CL_FREE = 0, /* allocatable */
    POOL_CL_USED,     /* recorded in the cluster table */
    POOL_CL_ALLOC,    /* first write in flight; not yet in the table */
    POOL_CL_QUAR,     /* freed; reusable once a commit recorded the free */
};

/* Someone waiting for a commit (a FLUSH, a FUA write, a control op). */
struct pool_commit_waiter {
    void (*cb)(struct pool_commit_waiter *w, int rc);
    struct pool_commit_waiter *next;
};

struct pool_vbdev;

struct pool_vol {
    struct ioc_pool *pool;
    uint32_t id;              /* slot + 1 in the volume table */
    uint32_t *map;            /* logical cluster -> pool cluster + 1; 0 = not owned */
    uint32_t n_lcl;
    uint32_t allocated;       /* clusters owned */
    struct pool_vol *parent;
    unsigned children;
    struct pool_vbdev *vb;    /* the bdev serving it */
};

/* A volume's bdev; snapshot swaps which pool_vol it points at. */
struct pool_vbdev {
    struct ioc_bdev bdev;
    struct ioc_pool *pool;
    struct pool_vol *vol;
    bool read_only;
    /* Snapshot quiescing, under pool->lock (pool_io.c vio_gate). */
    unsigned inflight;          /* modifying IOs admitted and not yet completed */
    bool frozen;                /* a snapshot is switching maps: new modifying IOs wait */
    struct ioc_bdev_io *held;   /* those IOs, chained through their vio_ctx */
};

/* A first write to (vol, lc) in flight: later writers of that cluster wait on it. */
struct pool_alloc {
    struct pool_vol *vol;
    uint32_t lc;
    uint32_t cluster;
    struct ioc_bdev_io *waiters; /* chained through vio_ctx.wait_next */
    struct pool_alloc *next;
};

struct pool_commit {
    struct pool_commit_waiter *batch; /* completed by this commit */
    uint32_t *pages;
    uint32_t npages;
    uint8_t *buf;                     /* npages page images, then the superblock */
    uint64_t seq;
    unsigned remaining;
    int status;
    uint32_t *quar;                   /* clusters freed by this commit */
    size_t nquar;
    bool sb_sent;                     /* the superblock write went down */
    bool replay;                      /* failed after sb_sent: rewrite it byte for byte */
};

struct ioc_pool {
    char name[IOC_POOL_NAME_MAX];
    struct ioc_bdev *base;
    bool base_owned;
    struct ioc_reactor *home;
    pthread_mutex_t lock;             /* see the top of this file */
    struct ioc_pool_meta *meta;
    uint32_t cluster_size;
    unsigned cluster_shift;
    uint32_t n_clusters;
    uint64_t data_offset;

    uint8_t *cstate;                  /* enum pool_cstate per cluster */
    uint32_t nfree;
    uint32_t cursor;                  /* next-fit allocation */
    uint32_t *quar;                   /* freed since the last commit started */
    size_t nquar, quar_cap;

    uint8_t *dirty;                   /* per metadata page */
    uint32_t ndirty;

    struct pool_vol *vols[IOC_POOL_MAX_VOLUMES];
    struct pool_alloc *allocs;

    bool committing;
    struct pool_commit_waiter *waiters; /* for the next commit */
    struct pool_commit commit;
    /*
     * Freed clusters are reused only once no fast-path IO that could have
     * looked them up before the free is still in flight (pool.c limbo_*):
     * fast-path IOs count themselves in fast_inflight[fast_gen & 1] under
     * the lock; a release flips fast_gen and waits for the old count to drain.
     */
    uint32_t fast_gen;
    unsigned fast_inflight[2];
    uint32_t *limbo;                  /* committed frees waiting for the next drain */
    size_t nlimbo, limbo_cap;
    uint32_t *draining;               /* the frees the drain under way will release */
    size_t ndraining;
    unsigned drain_bucket;
    bool closing;
    unsigned quiescing;               /* snapshots waiting for writes to drain */
    struct ioc_pool *next;
};

/* pool.c */
void pool_commit(struct ioc_pool *pool, struct pool_commit_waiter *w);
void pool_dirty_vt(struct ioc_pool *pool, uint32_t id);
void pool_dirty_ct(struct ioc_pool *pool, uint32_t cluster);
int pool_cluster_alloc(struct ioc_pool *pool, uint32_t *out);
void pool_cluster_free(struct ioc_pool *pool, struct pool_vol *vol, uint32_t lc);
void pool_cluster_free_locked(struct ioc_pool *pool, struct pool_vol *vol, uint32_t lc);
void pool_cb_later(ioc_pool_cb cb, void *cb_arg, int rc);
void pool_cluster_set(struct ioc_pool *pool, struct pool_vol *vol, uint32_t lc, uint32_t c);
struct ioc_pool_vol_disk *pool_vd(struct ioc_pool *pool, const struct pool_vol *vol);

/* Run fn on reactor r from a non-reactor thread and wait for its callback. */
typedef int (*pool_sync_fn)(void *arg, ioc_pool_cb cb, void *cb_arg);
int pool_sync(struct ioc_reactor *r, pool_sync_fn fn, void *arg);
struct ioc_reactor *pool_default_reactor(void);
/* Registry walk for the RPC thread: NULL starts, NULL ends. */
struct ioc_pool *pool_registry_next(struct ioc_pool *prev);
struct ioc_pool *pool_find_by_base(const char *bdev);

/* pool_vol.c */
int pool_vols_build(struct ioc_pool *pool, struct ioc_err *err);
void pool_vols_free(struct ioc_pool *pool);
struct pool_vol *pool_vol_find(struct ioc_pool *pool, const char *name);
int pool_vbdev_register(struct ioc_pool *pool, struct pool_vol *vol, struct ioc_err *err);
int pool_vbdevs_unregister(struct ioc_pool *pool, struct ioc_err *err);
json_t *pool_info_json(struct ioc_pool *pool);

/* pool_io.c */
extern const struct ioc_bdev_ops g_pool_vbdev_ops;
/* Stop admitting modifying IOs to vb; true when none is in flight any more. Home reactor. */
bool pool_vbdev_freeze(struct pool_vbdev *vb);
bool pool_vbdev_drained(struct pool_vbdev *vb);
/* Admit modifying IOs again and resubmit the ones held meanwhile. */
void pool_vbdev_thaw(struct pool_vbdev *vb);
/* Pool cluster holding lc as seen by vol (through parents), or UINT32_MAX for a hole. */
uint32_t pool_resolve(const struct pool_vol *vol, uint32_t lc);

#endif
