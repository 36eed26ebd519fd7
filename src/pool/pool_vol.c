/*
 * pool/pool_vol.c - volumes of a pool: the in-memory maps, their bdevs, and
 * the control operations (create, delete, resize, snapshot, clone, attributes).
 *
 * Maps: each volume has a flat array from logical cluster to pool cluster + 1,
 * rebuilt at import by one pass over the cluster table. A logical cluster the
 * volume does not own falls through to its parent (a snapshot), and so on;
 * owned by nobody, it reads as zeroes and reports as a hole.
 *
 * Snapshot in O(1): the volume's table entry, with all its clusters, becomes
 * the snapshot (read-only, new name); a fresh entry takes over the volume's
 * name and attributes, with the snapshot as parent and an empty map. The
 * volume's bdev (which may be exported and busy) keeps serving and simply
 * points at the fresh in-memory volume, so clients see no interruption.
 * Nothing in the cluster table changes, so the commit writes two pages.
 *
 * Deleting a snapshot: refused with -EBUSY if it has more than one child.
 * With one child, its clusters that the child does not override move to the
 * child (ownership rewritten in the cluster table; the data stays put) and
 * the child's parent becomes the snapshot's parent; clusters the child does
 * override are freed. With no child, it is deleted like a volume: all its
 * clusters are freed. Every change lands in one commit, so a crash leaves
 * either the old or the new arrangement.
 *
 * Every operation runs on the home reactor, changes memory under pool->lock
 * (the data path on other reactors reads maps and parents under it), and
 * calls back once the commit that records it is on stable storage.
 *
 * Thick volumes (thin: false) get every cluster at creation, zeroed first
 * and committed with the entry (see "thick volumes" below).
 *
 * Not done: shrinking a volume that has a parent (its parent's data would
 * reappear on a later grow).
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/reactor.h"
#include "pool/pool_internal.h"

#define POOL_VOL_MAX_CLUSTERS (1u << 24)

static struct pool_vol *
vol_new(struct ioc_pool *pool, uint32_t id, uint64_t size)
{
    struct pool_vol *vol = calloc(1, sizeof(*vol));
    uint64_t n = ioc_pool_vol_clusters(size, pool->cluster_size);

    if (vol == NULL) {
        return NULL;
    }
    vol->pool = pool;
    vol->id = id;
    vol->n_lcl = (uint32_t)n;
    vol->map = calloc(n != 0 ? n : 1, sizeof(*vol->map));
    if (vol->map == NULL) {
        free(vol);
        return NULL;
    }
    return vol;
}

static void
vol_free(struct pool_vol *vol)
{
    if (vol != NULL) {
        free(vol->map);
        free(vol);
    }
}

int
pool_vols_build(struct ioc_pool *pool, struct ioc_err *err)
{
    struct ioc_pool_meta *m = pool->meta;

    for (uint32_t i = 0; i < m->sb.max_volumes; i++) {
        if (m->vt[i].id == 0) {
            continue;
        }
        pool->vols[i] = vol_new(pool, i + 1, m->vt[i].size);
        if (pool->vols[i] == NULL) {
            return ioc_err_set(err, -ENOMEM, "out of memory for the maps of pool '%s'",
                               pool->name);
        }
    }
    for (uint32_t i = 0; i < m->sb.max_volumes; i++) {
        struct pool_vol *vol = pool->vols[i];
        if (vol != NULL && m->vt[i].parent != 0) {
            vol->parent = pool->vols[m->vt[i].parent - 1];
            vol->parent->children++;
        }
    }
    for (uint32_t c = 0; c < pool->n_clusters; c++) {
        const struct ioc_pool_ct_entry *e = &m->ct[c];
        if (e->owner != 0) {
            struct pool_vol *vol = pool->vols[e->owner - 1];
            vol->map[e->lcluster] = c + 1;
            vol->allocated++;
        }
    }
    return 0;
}

void
pool_vols_free(struct ioc_pool *pool)
{
    for (uint32_t i = 0; i < IOC_POOL_MAX_VOLUMES; i++) {
        vol_free(pool->vols[i]);
        pool->vols[i] = NULL;
    }
}

struct pool_vol *
pool_vol_find(struct ioc_pool *pool, const char *name)
{
    for (uint32_t i = 0; i < IOC_POOL_MAX_VOLUMES; i++) {
        if (pool->vols[i] != NULL && strcmp(pool->meta->vt[i].name, name) == 0) {
            return pool->vols[i];
        }
    }
    return NULL;
}

static int
vol_lookup(struct ioc_pool *pool, const char *field, const char *name, struct pool_vol **out,
           struct ioc_err *err)
{
    *out = name != NULL ? pool_vol_find(pool, name) : NULL;
    if (*out == NULL) {
        return ioc_err_set(err, -ENOENT, "%s: pool '%s' has no volume or snapshot named '%s'",
                           field, pool->name, name != NULL ? name : "");
    }
    return 0;
}

static int
vol_name_free(struct ioc_pool *pool, const char *field, const char *name, struct ioc_err *err)
{
    int rc = ioc_pool_name_check(field, name, err);

    if (rc == 0 && pool_vol_find(pool, name) != NULL) {
        rc = ioc_err_set(err, -EEXIST, "%s: pool '%s' already has a volume named '%s'", field,
                         pool->name, name);
    }
    return rc;
}

static int
vol_slot_free(struct ioc_pool *pool, uint32_t *id, struct ioc_err *err)
{
    for (uint32_t i = 0; i < IOC_POOL_MAX_VOLUMES; i++) {
        if (pool->vols[i] == NULL && pool->meta->vt[i].id == 0) {
            *id = i + 1;
            return 0;
        }
    }
    return ioc_err_set(err, -ENOSPC, "pool '%s' already has %u volumes and snapshots", pool->name,
                       IOC_POOL_MAX_VOLUMES);
}

static bool
vol_has_allocs(struct ioc_pool *pool, const struct pool_vol *vol)
{
    for (struct pool_alloc *a = pool->allocs; a != NULL; a = a->next) {
        if (a->vol == vol) {
            return true;
        }
    }
    return false;
}

/* ---- bdevs ---- */

int
pool_vbdev_register(struct ioc_pool *pool, struct pool_vol *vol, struct ioc_err *err)
{
    struct ioc_pool_vol_disk *vd = pool_vd(pool, vol);
    struct pool_vbdev *vb = calloc(1, sizeof(*vb));
    struct ioc_bdev *bdev;
    char name[160];
    int rc;

    if (vb == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    snprintf(name, sizeof(name), "%s/%s", pool->name, vd->name);
    vb->pool = pool;
    vb->vol = vol;
    vb->read_only = (vd->flags & IOC_VOL_READ_ONLY) != 0;
    ioc_bdev_init(&vb->bdev, name, "lvol", &g_pool_vbdev_ops, vb, vd->size, 512);
    vb->bdev.buf_align = ioc_bdev_buf_align(pool->base);
    vb->bdev.fast_zero = pool->base->fast_zero;
    vol->vb = vb;
    bdev = &vb->bdev;
    rc = ioc_bdev_register(bdev, err);
    if (rc < 0) {
        vol->vb = NULL;
    }
    ioc_bdev_put(&bdev); /* on failure this was the last reference: destruct frees vb */
    return rc;
}

static int
vol_vbdev_unregister(struct pool_vol *vol, struct ioc_err *err)
{
    char name[128];

    if (vol->vb == NULL) {
        return 0;
    }
    snprintf(name, sizeof(name), "%s", vol->vb->bdev.name);
    return ioc_bdev_delete(name, err);
}

int
pool_vbdevs_unregister(struct ioc_pool *pool, struct ioc_err *err)
{
    int rc = 0;
    uint32_t i;

    for (i = 0; i < IOC_POOL_MAX_VOLUMES && rc == 0; i++) {
        if (pool->vols[i] != NULL) {
            rc = vol_vbdev_unregister(pool->vols[i], err);
        }
    }
    if (rc == 0 || err == NULL) {
        return rc;
    }
    /* Undo: bring back the bdevs already removed, so a refused export changes nothing. */
    for (uint32_t j = 0; j + 1 < i; j++) {
        if (pool->vols[j] != NULL && pool->vols[j]->vb == NULL) {
            pool_vbdev_register(pool, pool->vols[j], NULL);
        }
    }
    return rc;
}

/* ---- committing control operations ---- */

struct vol_op {
    struct pool_commit_waiter w;
    ioc_pool_cb cb;
    void *cb_arg;
};

static void
vol_op_done(struct pool_commit_waiter *w, int rc)
{
    struct vol_op *op = ioc_container_of(w, struct vol_op, w);

    pool_cb_later(op->cb, op->cb_arg, rc);
    free(op);
}

/* The change is made in memory; commit it and call back afterwards. */
static int
vol_op_commit(struct ioc_pool *pool, ioc_pool_cb cb, void *cb_arg, struct ioc_err *err)
{
    struct vol_op *op = calloc(1, sizeof(*op));

    if (op == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory (the change commits with the next flush)");
    }
    op->w.cb = vol_op_done;
    op->cb = cb;
    op->cb_arg = cb_arg;
    pool_commit(pool, &op->w);
    return 0;
}

static int
vol_size_check(struct ioc_pool *pool, uint64_t size, struct ioc_err *err)
{
    if (size == 0 || size % 512 != 0) {
        return ioc_err_set(err, -EINVAL, "size: must be a non-zero multiple of 512, got %llu",
                           (unsigned long long)size);
    }
    if (ioc_pool_vol_clusters(size, pool->cluster_size) > POOL_VOL_MAX_CLUSTERS) {
        return ioc_err_set(err, -EINVAL, "size: at most %llu bytes with %u-byte clusters",
                           (unsigned long long)POOL_VOL_MAX_CLUSTERS * pool->cluster_size,
                           pool->cluster_size);
    }
    return 0;
}

/* Put a new entry in slot id and its volume in memory, and register its bdev. */
static int
vol_add(struct ioc_pool *pool, uint32_t id, const char *name, uint64_t size, uint32_t flags,
        struct pool_vol *parent, struct pool_vol **out, struct ioc_err *err)
{
    struct ioc_pool_vol_disk *vd = &pool->meta->vt[id - 1];
    struct pool_vol *vol = vol_new(pool, id, size);
    int rc;

    if (vol == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    memset(vd, 0, sizeof(*vd));
    vd->id = id;
    vd->flags = flags;
    vd->parent = parent != NULL ? parent->id : 0;
    vd->size = size;
    vd->create_seq = pool->meta->sb.seq + 1;
    snprintf(vd->name, sizeof(vd->name), "%s", name);
    pthread_mutex_lock(&pool->lock);
    vol->parent = parent;
    if (parent != NULL) {
        parent->children++;
    }
    pool->vols[id - 1] = vol;
    pthread_mutex_unlock(&pool->lock);
    rc = pool_vbdev_register(pool, vol, err);
    if (rc < 0) {
        pthread_mutex_lock(&pool->lock);
        pool->vols[id - 1] = NULL;
        if (parent != NULL) {
            parent->children--;
        }
        pthread_mutex_unlock(&pool->lock);
        memset(vd, 0, sizeof(*vd));
        vol_free(vol);
        return rc;
    }
    pool_dirty_vt(pool, id);
    if (out != NULL) {
        *out = vol;
    }
    return 0;
}

/* ---- thick volumes ---- */

/*
 * A thick volume gets all its clusters at creation. They are taken (ALLOC:
 * not in the cluster table), zeroed on the base, and only then are the
 * volume entry and every cluster-table entry added in memory and committed
 * together: a crash leaves either no volume (the clusters free) or the whole
 * volume reading zeroes. Its bdev appears at that point. TRIM on a thick
 * volume writes zeroes instead of freeing clusters (pool_io.c).
 */
#define THICK_QD 8

struct thick_ctx {
    struct ioc_pool *pool;
    char name[IOC_POOL_NAME_MAX];
    uint64_t size;
    uint32_t *cl;             /* the clusters taken, one per logical cluster */
    uint32_t n, next, done;
    unsigned inflight;
    int status;
    uint8_t *zero;            /* a zero cluster when the base has no WRITE_ZEROES */
    struct ioc_err *err;
    ioc_pool_cb cb;
    void *cb_arg;
};

static void
thick_release(struct ioc_pool *pool, const uint32_t *cl, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        pool->cstate[cl[i]] = POOL_CL_FREE;
    }
    pool->nfree += n;
}

static void
thick_finish(struct thick_ctx *ctx, int rc)
{
    struct ioc_pool *pool = ctx->pool;
    struct pool_vol *vol = NULL;
    uint32_t id;

    if (rc < 0) {
        ioc_err_set(ctx->err, rc, "zeroing the clusters of '%s/%s' failed: %s", pool->name,
                    ctx->name, strerror(-rc));
    }
    if (rc == 0) {
        rc = vol_name_free(pool, "name", ctx->name, ctx->err); /* taken meanwhile? */
    }
    if (rc == 0) {
        rc = vol_slot_free(pool, &id, ctx->err);
    }
    if (rc == 0) {
        rc = vol_add(pool, id, ctx->name, ctx->size, IOC_VOL_THICK, NULL, &vol, ctx->err);
    }
    if (rc == 0) {
        for (uint32_t lc = 0; lc < ctx->n; lc++) {
            pool_cluster_set(pool, vol, lc, ctx->cl[lc]);
        }
        rc = vol_op_commit(pool, ctx->cb, ctx->cb_arg, ctx->err);
    } else {
        thick_release(pool, ctx->cl, ctx->n);
    }
    if (rc < 0) {
        pool_cb_later(ctx->cb, ctx->cb_arg, rc);
    }
    free(ctx->zero);
    free(ctx->cl);
    free(ctx);
}

static void thick_step(struct thick_ctx *ctx);

static void
thick_io_done(struct ioc_bdev_io *io, void *arg)
{
    struct thick_ctx *ctx = arg;

    if (io->status < 0 && ctx->status == 0) {
        ctx->status = io->status;
    }
    ioc_bdev_io_free(io);
    ctx->inflight--;
    ctx->done++;
    thick_step(ctx);
}

/* Keep up to THICK_QD zeroing IOs in flight; finish when all are done. */
static void
thick_step(struct thick_ctx *ctx)
{
    struct ioc_pool *pool = ctx->pool;

    while (ctx->status == 0 && ctx->next < ctx->n && ctx->inflight < THICK_QD) {
        struct ioc_bdev_io *io = ioc_bdev_io_alloc(pool->base);
        uint64_t off = pool->data_offset + ((uint64_t)ctx->cl[ctx->next] << pool->cluster_shift);
        int rc = io != NULL ? 0 : -ENOMEM;

        if (rc == 0 && ctx->zero != NULL) {
            io->iov_single.iov_base = ctx->zero;
            io->iov_single.iov_len = pool->cluster_size;
            ioc_bdev_io_prep_rw(io, IOC_IO_WRITE, off, pool->cluster_size, &io->iov_single, 1,
                                0, thick_io_done, ctx);
        } else if (rc == 0) {
            ioc_bdev_io_prep(io, IOC_IO_WRITE_ZEROES, off, pool->cluster_size, IOC_IO_NO_HOLE,
                             thick_io_done, ctx);
        }
        rc = rc == 0 ? ioc_bdev_io_submit(io) : rc;
        if (rc < 0) {
            ioc_bdev_io_free(io);
            ctx->status = rc;
            break;
        }
        ctx->next++;
        ctx->inflight++;
    }
    if (ctx->inflight == 0 && (ctx->status < 0 || ctx->done == ctx->n)) {
        thick_finish(ctx, ctx->status);
    }
}

static void
thick_start_msg(void *arg)
{
    thick_step(arg);
}

static int
vol_create_thick(struct ioc_pool *pool, const char *name, uint64_t size, struct ioc_err *err,
                 ioc_pool_cb cb, void *cb_arg)
{
    uint32_t n = (uint32_t)ioc_pool_vol_clusters(size, pool->cluster_size);
    struct thick_ctx *ctx;
    uint32_t got = 0;

    if (n > pool->nfree) {
        return ioc_err_set(err, -ENOSPC, "size: pool '%s' has %u free clusters, a thick volume "
                           "of this size needs %u", pool->name, pool->nfree, n);
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx != NULL) {
        ctx->cl = malloc((size_t)n * sizeof(*ctx->cl));
    }
    if (ctx != NULL && ctx->cl != NULL && !ioc_bdev_supports(pool->base, IOC_IO_WRITE_ZEROES)) {
        ctx->zero = aligned_alloc(4096, pool->cluster_size);
        if (ctx->zero != NULL) {
            memset(ctx->zero, 0, pool->cluster_size);
        }
    }
    while (ctx != NULL && ctx->cl != NULL && got < n && pool_cluster_alloc(pool, &ctx->cl[got]) == 0) {
        got++;
    }
    if (ctx == NULL || ctx->cl == NULL || got < n ||
        (ctx->zero == NULL && !ioc_bdev_supports(pool->base, IOC_IO_WRITE_ZEROES)) ||
        ioc_reactor_send_msg(ioc_reactor_self(), thick_start_msg, ctx) < 0) {
        if (ctx != NULL && ctx->cl != NULL) {
            thick_release(pool, ctx->cl, got);
            free(ctx->cl);
            free(ctx->zero);
        }
        free(ctx);
        return ioc_err_set(err, got < n && ctx != NULL ? -ENOSPC : -ENOMEM,
                           "out of space or memory allocating a thick volume");
    }
    *ctx = (struct thick_ctx){.pool = pool, .size = size, .cl = ctx->cl, .n = n,
                              .zero = ctx->zero, .err = err, .cb = cb, .cb_arg = cb_arg};
    snprintf(ctx->name, sizeof(ctx->name), "%s", name);
    return 0;
}

int
ioc_pool_volume_create(struct ioc_pool *pool, const char *name, uint64_t size, bool thin,
                       struct ioc_err *err, ioc_pool_cb cb, void *cb_arg)
{
    uint32_t id;
    int rc;

    rc = vol_name_free(pool, "name", name, err);
    if (rc == 0) {
        rc = vol_size_check(pool, size, err);
    }
    if (rc == 0) {
        rc = vol_slot_free(pool, &id, err);
    }
    if (rc == 0 && !thin) {
        return vol_create_thick(pool, name, size, err, cb, cb_arg);
    }
    if (rc == 0) {
        rc = vol_add(pool, id, name, size, 0, NULL, NULL, err);
    }
    return rc < 0 ? rc : vol_op_commit(pool, cb, cb_arg, err);
}

int
ioc_pool_volume_clone(struct ioc_pool *pool, const char *snap, const char *name,
                      struct ioc_err *err, ioc_pool_cb cb, void *cb_arg)
{
    struct pool_vol *s;
    uint32_t id;
    int rc;

    rc = vol_lookup(pool, "snapshot", snap, &s, err);
    if (rc == 0 && !(pool_vd(pool, s)->flags & IOC_VOL_SNAPSHOT)) {
        rc = ioc_err_set(err, -EINVAL, "snapshot: '%s/%s' is a volume, not a snapshot (take a "
                         "snapshot first)", pool->name, snap);
    }
    if (rc == 0) {
        rc = vol_name_free(pool, "name", name, err);
    }
    if (rc == 0) {
        rc = vol_slot_free(pool, &id, err);
    }
    if (rc == 0) {
        rc = vol_add(pool, id, name, pool_vd(pool, s)->size, 0, s, NULL, err);
    }
    return rc < 0 ? rc : vol_op_commit(pool, cb, cb_arg, err);
}

/* Swap in memory: the volume struct (and its bdev) moves to slot n; a new struct holds slot o. */
static void
vol_snapshot_swap(struct ioc_pool *pool, struct pool_vol *v, struct pool_vol *s, uint32_t n,
                  uint32_t *fresh_map, const char *snap)
{
    struct ioc_pool_vol_disk *od = pool_vd(pool, v), *nd = &pool->meta->vt[n - 1];
    uint32_t o = v->id;

    *nd = *od;
    nd->id = n;
    nd->parent = o;
    nd->create_seq = pool->meta->sb.seq + 1;
    od->flags |= IOC_VOL_SNAPSHOT | IOC_VOL_READ_ONLY;
    memset(od->name, 0, sizeof(od->name));
    snprintf(od->name, sizeof(od->name), "%s", snap);
    memset(od->attrs, 0, sizeof(od->attrs)); /* attributes belong to the live volume */

    pthread_mutex_lock(&pool->lock);
    s->id = o;
    s->map = v->map;
    s->n_lcl = v->n_lcl;
    s->allocated = v->allocated;
    s->parent = v->parent;
    s->children = 1;
    v->id = n;
    v->map = fresh_map;
    v->allocated = 0;
    v->parent = s;
    pool->vols[o - 1] = s;
    pool->vols[n - 1] = v;
    pthread_mutex_unlock(&pool->lock);
    pool_dirty_vt(pool, o);
    pool_dirty_vt(pool, n);
}

static int
vol_snapshot_now(struct ioc_pool *pool, const char *name, const char *snap,
                 struct ioc_err *err, ioc_pool_cb cb, void *cb_arg)
{
    struct pool_vol *v, *s = NULL;
    uint32_t n, *fresh = NULL;
    int rc;

    rc = vol_lookup(pool, "volume", name, &v, err);
    if (rc == 0 && (pool_vd(pool, v)->flags & IOC_VOL_SNAPSHOT)) {
        rc = ioc_err_set(err, -EINVAL, "volume: '%s/%s' is already a snapshot", pool->name, name);
    }
    if (rc == 0) {
        rc = vol_name_free(pool, "name", snap, err);
    }
    if (rc == 0) {
        rc = vol_slot_free(pool, &n, err);
    }
    if (rc == 0) {
        s = calloc(1, sizeof(*s));
        fresh = calloc(v->n_lcl != 0 ? v->n_lcl : 1, sizeof(*fresh));
        if (s == NULL || fresh == NULL) {
            rc = ioc_err_set(err, -ENOMEM, "out of memory");
        }
    }
    if (rc < 0) {
        free(s);
        free(fresh);
        return rc;
    }
    s->pool = pool;
    vol_snapshot_swap(pool, v, s, n, fresh, snap);
    rc = pool_vbdev_register(pool, s, err);
    if (rc < 0) {
        IOC_WARN("pool", "pool %s: snapshot %s taken but its bdev is missing: %s", pool->name,
                 snap, err != NULL ? err->msg : "");
        if (err != NULL) {
            ioc_err_clear(err);
        }
    }
    return vol_op_commit(pool, cb, cb_arg, err);
}

/*
 * Quiescing: the volume's bdev is frozen (new writes, unmaps and zeroings
 * are held in the bdev), the writes already admitted drain, the maps are
 * switched, and the bdev thaws, resubmitting what it held. So every write
 * completed before the snapshot was requested is in the snapshot, every
 * write submitted after it returns is not, and no write lands in the
 * snapshot's clusters after it was taken.
 */
struct snap_ctx {
    struct ioc_pool *pool;
    struct ioc_bdev *bdev;        /* a reference to the volume's bdev */
    struct pool_vbdev *vb;
    char name[IOC_POOL_NAME_MAX];
    char snap[IOC_POOL_NAME_MAX];
    struct ioc_err *err;
    ioc_pool_cb cb;
    void *cb_arg;
};

static void
snap_drain_check(void *arg)
{
    struct snap_ctx *ctx = arg;
    int rc;

    if (!pool_vbdev_drained(ctx->vb)) {
        if (ioc_timer_start(ioc_reactor_self(), 20, snap_drain_check, ctx) == NULL &&
            ioc_reactor_send_msg(ioc_reactor_self(), snap_drain_check, ctx) < 0) {
            IOC_ERR("pool", "pool %s: out of memory waiting for writes to drain; "
                    "taking snapshot %s now", ctx->pool->name, ctx->snap);
        } else {
            return;
        }
    }
    rc = vol_snapshot_now(ctx->pool, ctx->name, ctx->snap, ctx->err, ctx->cb, ctx->cb_arg);
    pool_vbdev_thaw(ctx->vb);
    ctx->pool->quiescing--;
    if (rc < 0) {
        pool_cb_later(ctx->cb, ctx->cb_arg, rc);
    }
    ioc_bdev_put(&ctx->bdev);
    free(ctx);
}

int
ioc_pool_volume_snapshot(struct ioc_pool *pool, const char *name, const char *snap,
                         struct ioc_err *err, ioc_pool_cb cb, void *cb_arg)
{
    struct snap_ctx *ctx;
    struct pool_vol *v;
    int rc;

    rc = vol_lookup(pool, "volume", name, &v, err);
    if (rc == 0) {
        rc = vol_name_free(pool, "name", snap, err);
    }
    if (rc == 0 && v->vb != NULL && v->vb->frozen) {
        rc = ioc_err_set(err, -EBUSY, "volume: a snapshot of '%s/%s' is already under way",
                         pool->name, name);
    }
    if (rc < 0 || v->vb == NULL) {
        return rc < 0 ? rc : vol_snapshot_now(pool, name, snap, err, cb, cb_arg);
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    *ctx = (struct snap_ctx){.pool = pool, .vb = v->vb, .bdev = &v->vb->bdev, .err = err,
                             .cb = cb, .cb_arg = cb_arg};
    snprintf(ctx->name, sizeof(ctx->name), "%s", name);
    snprintf(ctx->snap, sizeof(ctx->snap), "%s", snap);
    if (ioc_reactor_send_msg(ioc_reactor_self(), snap_drain_check, ctx) < 0) {
        free(ctx);
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    ioc_bdev_get(ctx->bdev);
    pool->quiescing++;
    pool_vbdev_freeze(ctx->vb);
    return 0;
}

/* Snapshot s with one child c: hand c the clusters it does not override. Under the lock. */
static void
vol_merge_locked(struct ioc_pool *pool, struct pool_vol *s, struct pool_vol *c)
{
    for (uint32_t lc = 0; lc < s->n_lcl; lc++) {
        uint32_t cl;
        bool pending = false;
        if (s->map[lc] == 0) {
            continue;
        }
        for (struct pool_alloc *a = pool->allocs; a != NULL; a = a->next) {
            pending |= a->vol == c && a->lc == lc;
        }
        if (lc >= c->n_lcl || c->map[lc] != 0 || pending) {
            pool_cluster_free_locked(pool, s, lc);
            continue;
        }
        cl = s->map[lc] - 1;
        pool->meta->ct[cl].owner = c->id;
        pool_dirty_ct(pool, cl);
        c->map[lc] = cl + 1;
        c->allocated++;
        s->map[lc] = 0;
        s->allocated--;
    }
    c->parent = s->parent;
    pool->meta->vt[c->id - 1].parent = s->parent != NULL ? s->parent->id : 0;
    pool_dirty_vt(pool, c->id);
}

static struct pool_vol *
vol_only_child(struct ioc_pool *pool, const struct pool_vol *s)
{
    for (uint32_t i = 0; i < IOC_POOL_MAX_VOLUMES; i++) {
        if (pool->vols[i] != NULL && pool->vols[i]->parent == s) {
            return pool->vols[i];
        }
    }
    return NULL;
}

int
ioc_pool_volume_delete(struct ioc_pool *pool, const char *name, struct ioc_err *err,
                       ioc_pool_cb cb, void *cb_arg)
{
    struct pool_vol *v, *child = NULL;
    int rc;

    rc = vol_lookup(pool, "name", name, &v, err);
    if (rc == 0 && v->children > 1) {
        rc = ioc_err_set(err, -EBUSY, "name: snapshot '%s/%s' has %u children; delete all but "
                         "one first", pool->name, name, v->children);
    }
    if (rc == 0 && (vol_has_allocs(pool, v) || (v->vb != NULL && v->vb->frozen))) {
        rc = ioc_err_set(err, -EBUSY, "name: '%s/%s' has writes in flight or a snapshot under "
                         "way", pool->name, name);
    }
    if (rc == 0) {
        rc = vol_vbdev_unregister(v, err);
    }
    if (rc < 0) {
        return rc;
    }
    child = v->children == 1 ? vol_only_child(pool, v) : NULL;
    pthread_mutex_lock(&pool->lock);
    if (child != NULL) {
        vol_merge_locked(pool, v, child);
    }
    for (uint32_t lc = 0; lc < v->n_lcl; lc++) {
        if (v->map[lc] != 0) {
            pool_cluster_free_locked(pool, v, lc);
        }
    }
    if (child == NULL && v->parent != NULL) {
        v->parent->children--;
    }
    pool->vols[v->id - 1] = NULL;
    pthread_mutex_unlock(&pool->lock);
    memset(&pool->meta->vt[v->id - 1], 0, sizeof(struct ioc_pool_vol_disk));
    pool_dirty_vt(pool, v->id);
    vol_free(v);
    return vol_op_commit(pool, cb, cb_arg, err);
}

/*
 * Shrinking to a size inside a cluster the volume owns: the bytes past the
 * new end stay in that cluster and a later grow would show them again. So
 * the tail is zeroed on the base first (then the resize is validated again
 * and applied). A crash in between leaves the old size with a zeroed tail:
 * bytes the caller was dropping anyway.
 */
struct resize_ctx {
    struct ioc_pool *pool;
    char name[IOC_POOL_NAME_MAX];
    uint64_t size;
    uint8_t *zero;
    struct ioc_err *err;
    ioc_pool_cb cb;
    void *cb_arg;
};

static int vol_resize(struct ioc_pool *pool, const char *name, uint64_t size, bool tail_zeroed,
                      struct ioc_err *err, ioc_pool_cb cb, void *cb_arg);

static void
resize_tail_done(struct ioc_bdev_io *io, void *arg)
{
    struct resize_ctx *ctx = arg;
    int rc = io->status;

    ioc_bdev_io_free(io);
    if (rc < 0) {
        rc = ioc_err_set(ctx->err, rc, "zeroing past the new end of '%s/%s' failed: %s",
                         ctx->pool->name, ctx->name, strerror(-rc));
    } else {
        rc = vol_resize(ctx->pool, ctx->name, ctx->size, true, ctx->err, ctx->cb, ctx->cb_arg);
    }
    if (rc < 0) {
        pool_cb_later(ctx->cb, ctx->cb_arg, rc);
    }
    free(ctx->zero);
    free(ctx);
}

static int
resize_zero_tail(struct ioc_pool *pool, const char *name, uint64_t size, uint32_t c,
                 struct ioc_err *err, ioc_pool_cb cb, void *cb_arg)
{
    uint64_t in = size & (pool->cluster_size - 1), len = pool->cluster_size - in;
    uint64_t off = pool->data_offset + ((uint64_t)c << pool->cluster_shift) + in;
    struct resize_ctx *ctx = calloc(1, sizeof(*ctx));
    struct ioc_bdev_io *io = ioc_bdev_io_alloc(pool->base);
    bool wz = ioc_bdev_supports(pool->base, IOC_IO_WRITE_ZEROES);
    int rc = ctx != NULL && io != NULL ? 0 : -ENOMEM;

    if (rc == 0 && !wz) {
        ctx->zero = aligned_alloc(4096, pool->cluster_size);
        rc = ctx->zero != NULL ? 0 : -ENOMEM;
    }
    if (rc == 0) {
        *ctx = (struct resize_ctx){.pool = pool, .size = size, .zero = ctx->zero, .err = err,
                                   .cb = cb, .cb_arg = cb_arg};
        snprintf(ctx->name, sizeof(ctx->name), "%s", name);
        if (wz) {
            ioc_bdev_io_prep(io, IOC_IO_WRITE_ZEROES, off, len, IOC_IO_NO_HOLE,
                             resize_tail_done, ctx);
        } else {
            memset(ctx->zero, 0, len);
            io->iov_single.iov_base = ctx->zero;
            io->iov_single.iov_len = len;
            ioc_bdev_io_prep_rw(io, IOC_IO_WRITE, off, len, &io->iov_single, 1, 0,
                                resize_tail_done, ctx);
        }
        rc = ioc_bdev_io_submit(io);
    }
    if (rc < 0) {
        ioc_bdev_io_free(io);
        if (ctx != NULL) {
            free(ctx->zero);
        }
        free(ctx);
        return ioc_err_set(err, rc, "out of memory");
    }
    return 0;
}

static int
vol_resize(struct ioc_pool *pool, const char *name, uint64_t size, bool tail_zeroed,
           struct ioc_err *err, ioc_pool_cb cb, void *cb_arg)
{
    struct pool_vol *v;
    uint32_t n, *map;
    int rc;

    rc = vol_lookup(pool, "name", name, &v, err);
    if (rc == 0 && (pool_vd(pool, v)->flags & IOC_VOL_SNAPSHOT)) {
        rc = ioc_err_set(err, -EROFS, "name: '%s/%s' is a snapshot", pool->name, name);
    }
    if (rc == 0) {
        rc = vol_size_check(pool, size, err);
    }
    if (rc == 0 && v->vb != NULL && v->vb->frozen) {
        rc = ioc_err_set(err, -EBUSY, "name: a snapshot of '%s/%s' is under way", pool->name,
                         name);
    }
    if (rc == 0 && size < pool_vd(pool, v)->size && (v->parent != NULL || vol_has_allocs(pool, v))) {
        rc = ioc_err_set(err, -ENOTSUP, "size: cannot shrink '%s/%s': it has a parent snapshot "
                         "or writes in flight", pool->name, name);
    }
    if (rc < 0) {
        return rc;
    }
    n = (uint32_t)ioc_pool_vol_clusters(size, pool->cluster_size);
    if (!tail_zeroed && size < pool_vd(pool, v)->size && (size & (pool->cluster_size - 1)) &&
        v->map[n - 1] != 0) {
        return resize_zero_tail(pool, name, size, v->map[n - 1] - 1, err, cb, cb_arg);
    }
    map = calloc(n, sizeof(*map));
    if (map == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&pool->lock);
    for (uint32_t lc = n; lc < v->n_lcl; lc++) {
        if (v->map[lc] != 0) {
            pool_cluster_free_locked(pool, v, lc);
        }
    }
    memcpy(map, v->map, (size_t)IOC_MIN(n, v->n_lcl) * sizeof(*map));
    free(v->map);
    v->map = map;
    v->n_lcl = n;
    if (v->vb != NULL) {
        v->vb->bdev.size = size;
    }
    pthread_mutex_unlock(&pool->lock);
    pool_vd(pool, v)->size = size;
    pool_dirty_vt(pool, v->id);
    return vol_op_commit(pool, cb, cb_arg, err);
}

int
ioc_pool_volume_resize(struct ioc_pool *pool, const char *name, uint64_t size,
                       struct ioc_err *err, ioc_pool_cb cb, void *cb_arg)
{
    return vol_resize(pool, name, size, false, err, cb, cb_arg);
}

int
ioc_pool_volume_attr_set(struct ioc_pool *pool, const char *name, const char *key,
                         const char *value, struct ioc_err *err, ioc_pool_cb cb, void *cb_arg)
{
    struct pool_vol *v;
    int rc;

    rc = vol_lookup(pool, "volume", name, &v, err);
    if (rc < 0) {
        return rc;
    }
    rc = ioc_pool_attr_set(pool_vd(pool, v)->attrs, key, value);
    if (rc == -EINVAL) {
        return ioc_err_set(err, rc, "key: must be 1 to 63 characters");
    }
    if (rc == -ENOSPC) {
        return ioc_err_set(err, rc, "value: the attributes of '%s/%s' are full (%u bytes)",
                           pool->name, name, IOC_POOL_ATTR_AREA);
    }
    pool_dirty_vt(pool, v->id);
    return vol_op_commit(pool, cb, cb_arg, err);
}

int
ioc_pool_volume_attr_get(struct ioc_pool *pool, const char *name, const char *key, char *buf,
                         size_t len, struct ioc_err *err)
{
    struct pool_vol *v;
    const char *val;
    int rc;

    rc = vol_lookup(pool, "volume", name, &v, err);
    if (rc < 0) {
        return rc;
    }
    val = ioc_pool_attr_get(pool_vd(pool, v)->attrs, key);
    if (val == NULL) {
        return ioc_err_set(err, -ENOENT, "key: '%s/%s' has no attribute '%s'", pool->name, name,
                           key);
    }
    snprintf(buf, len, "%s", val);
    return 0;
}

/* ---- listings (home reactor) ---- */

static json_t *
vol_json(struct ioc_pool *pool, const struct pool_vol *v)
{
    const struct ioc_pool_vol_disk *vd = pool_vd(pool, v);
    json_t *o = json_object(), *attrs = json_object();
    size_t pos = 0;
    char bname[160];

    snprintf(bname, sizeof(bname), "%s/%s", pool->name, vd->name);
    json_object_set_new(o, "name", json_string(vd->name));
    json_object_set_new(o, "pool", json_string(pool->name));
    json_object_set_new(o, "bdev", json_string(bname));
    json_object_set_new(o, "id", json_integer(v->id));
    json_object_set_new(o, "size", json_integer((json_int_t)vd->size));
    json_object_set_new(o, "allocated",
                        json_integer((json_int_t)v->allocated * pool->cluster_size));
    json_object_set_new(o, "parent", v->parent != NULL
                                         ? json_string(pool_vd(pool, v->parent)->name)
                                         : json_null());
    json_object_set_new(o, "snapshot", json_boolean(vd->flags & IOC_VOL_SNAPSHOT));
    json_object_set_new(o, "read_only", json_boolean(vd->flags & IOC_VOL_READ_ONLY));
    json_object_set_new(o, "thin", json_boolean(!(vd->flags & IOC_VOL_THICK)));
    json_object_set_new(o, "children", json_integer(v->children));
    while (pos < IOC_POOL_ATTR_AREA && vd->attrs[pos] != 0) {
        const char *k = (const char *)vd->attrs + pos;
        const char *val = k + strlen(k) + 1;
        json_object_set_new(attrs, k, json_string(val));
        pos = (size_t)(val + strlen(val) + 1 - (const char *)vd->attrs);
    }
    json_object_set_new(o, "attrs", attrs);
    return o;
}

json_t *
ioc_pool_volumes_json(struct ioc_pool *pool)
{
    json_t *arr = json_array();

    for (uint32_t i = 0; i < IOC_POOL_MAX_VOLUMES; i++) {
        if (pool->vols[i] != NULL) {
            json_array_append_new(arr, vol_json(pool, pool->vols[i]));
        }
    }
    return arr;
}

json_t *
pool_info_json(struct ioc_pool *pool)
{
    json_t *o = json_object();
    char uuid[33];
    unsigned nvols = 0;

    for (int i = 0; i < 16; i++) {
        snprintf(uuid + 2 * i, 3, "%02x", pool->meta->sb.uuid[i]);
    }
    for (uint32_t i = 0; i < IOC_POOL_MAX_VOLUMES; i++) {
        nvols += pool->vols[i] != NULL;
    }
    json_object_set_new(o, "name", json_string(pool->name));
    json_object_set_new(o, "uuid", json_string(uuid));
    json_object_set_new(o, "bdev", json_string(ioc_bdev_name(pool->base)));
    json_object_set_new(o, "cluster_size", json_integer(pool->cluster_size));
    json_object_set_new(o, "clusters", json_integer(pool->n_clusters));
    json_object_set_new(o, "free_clusters", json_integer(pool->nfree));
    json_object_set_new(o, "size",
                        json_integer((json_int_t)pool->n_clusters * pool->cluster_size));
    json_object_set_new(o, "free", json_integer((json_int_t)pool->nfree * pool->cluster_size));
    json_object_set_new(o, "volumes", json_integer(nvols));
    json_object_set_new(o, "seq", json_integer((json_int_t)pool->meta->sb.seq));
    return o;
}
