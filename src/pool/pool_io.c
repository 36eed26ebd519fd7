/*
 * pool/pool_io.c - the data path of a volume bdev ("lvol" module).
 *
 * Hot path: a READ or WRITE inside one cluster that the volume owns (for a
 * READ: that some volume in its parent chain owns) becomes one child IO on
 * the base bdev, on the submitting reactor, with the caller's iovecs and an
 * offset translated through the map. The only shared state touched is the
 * map lookup under pool->lock. No metadata work, no allocation, no copy.
 *
 * Slow path (forwarded to the pool's home reactor by message): IO spanning
 * clusters, reads of holes, first writes, UNMAP/WRITE_ZEROES and FLUSH. It
 * walks the range one cluster segment at a time (vio_step):
 *   READ        owner in the chain -> child read; nobody -> zero the buffer.
 *   WRITE       owned -> child write; else copy-on-write (vio_cow): take a
 *               free cluster, read the parent chain's data for it (or zeroes),
 *               lay the new data over it, write the whole cluster, and only
 *               when that write has completed record the cluster in the map
 *               and the cluster table. A FLUSH can therefore never commit a
 *               table entry pointing at a cluster whose copy is unfinished.
 *               Other writers of the same logical cluster wait on the
 *               pending allocation (struct pool_alloc) and then take the
 *               owned path. A write covering the whole cluster skips the
 *               buffer and goes straight from the caller's iovecs.
 *   UNMAP/WZ    a whole owned cluster with nothing below it in the chain is
 *               freed (reads as a hole); a partial or shadowing one gets
 *               zeroes written (base WRITE_ZEROES), allocating by CoW if a
 *               parent has data there; a hole stays a hole.
 *   FLUSH       a metadata commit (pool.c), which flushes the base twice.
 * A FUA write that allocated commits before it completes.
 *
 * ENOSPC: an allocation with no free cluster first waits for a commit if
 * freed clusters are in quarantine (a TRIM or delete frees space that
 * becomes reusable once committed), then fails the IO with -ENOSPC. Reads,
 * writes to owned clusters and other volumes carry on.
 *
 * Races with frees: a fast-path IO looks its cluster up under the lock and
 * then goes to the base without it, so a TRIM (or delete, merge, shrink) on
 * the home reactor may free that cluster meanwhile. The IO is counted in
 * the pool's current fast generation until it completes, and a freed
 * cluster becomes allocatable only after the commit recording the free AND
 * a generation flip whose old count has drained (pool.c limbo_*). So such a
 * write lands in a cluster nobody else owns yet (its range is undefined, as
 * for any write racing a TRIM of the same range), and a racing read never
 * sees another volume's data.
 *
 * Snapshots quiesce: modifying IOs are admitted through vio_gate, counted
 * per bdev, and held while a snapshot is switching maps (pool_vol.c).
 *
 * Not done: splitting slow-path IO across reactors.
 */
#include "ioc/common.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "pool/pool_internal.h"

struct vio_ctx {
    struct pool_commit_waiter cw;
    uint64_t done;            /* bytes of the IO finished */
    uint64_t seg_len;         /* the segment in flight */
    int status;
    bool need_commit;         /* FLUSH, or a FUA write that allocated */
    bool enospc_retried;
    struct ioc_bdev_io *wait_next;
    struct iovec one_iov;     /* the slice when the IO has one iovec */
    struct iovec *seg_iov;    /* the slice otherwise (malloc'ed) */
    int seg_iovcnt;
    uint8_t *cow_buf;
    struct pool_alloc *alloc;
    unsigned fast_bucket;     /* fast path: the pool's fast_inflight slot it counted in */
};
_Static_assert(sizeof(struct vio_ctx) <= IOC_BDEV_IO_CTX_MAX, "vio ctx too large");

static struct vio_ctx *
vio_ctx(struct ioc_bdev_io *io)
{
    return (struct vio_ctx *)(void *)io->module_ctx;
}

static struct pool_vbdev *
vio_vb(struct ioc_bdev_io *io)
{
    return io->bdev->ctx;
}

uint32_t
pool_resolve(const struct pool_vol *vol, uint32_t lc)
{
    for (const struct pool_vol *v = vol; v != NULL; v = v->parent) {
        if (lc < v->n_lcl && v->map[lc] != 0) {
            return v->map[lc] - 1;
        }
    }
    return UINT32_MAX;
}

static uint64_t
pool_cluster_off(const struct ioc_pool *pool, uint32_t c)
{
    return pool->data_offset + ((uint64_t)c << pool->cluster_shift);
}

/* ---- completion ---- */

static void
vio_complete_msg(void *arg)
{
    struct ioc_bdev_io *io = arg;

    ioc_bdev_io_complete(io, vio_ctx(io)->status);
}

/* Complete on the submitting reactor, never inline. */
/* ---- snapshot quiescing: modifying IOs are counted, and held while frozen ---- */

static bool
vio_modifies(enum ioc_io_type t)
{
    return t == IOC_IO_WRITE || t == IOC_IO_UNMAP || t == IOC_IO_WRITE_ZEROES;
}

/* Admit a modifying IO (true), or hold it until the snapshot thaws the bdev (false). */
static bool
vio_gate(struct ioc_bdev_io *io)
{
    struct pool_vbdev *vb = vio_vb(io);
    bool admitted;

    pthread_mutex_lock(&vb->pool->lock);
    admitted = !vb->frozen;
    if (admitted) {
        vb->inflight++;
    } else {
        vio_ctx(io)->wait_next = vb->held;
        vb->held = io;
    }
    pthread_mutex_unlock(&vb->pool->lock);
    return admitted;
}

/* The IO's effect on the base is over (done or failed). */
static void
vio_ungate(struct ioc_bdev_io *io)
{
    struct pool_vbdev *vb = vio_vb(io);

    if (vio_modifies(io->type)) {
        pthread_mutex_lock(&vb->pool->lock);
        vb->inflight--;
        pthread_mutex_unlock(&vb->pool->lock);
    }
}

bool
pool_vbdev_freeze(struct pool_vbdev *vb)
{
    pthread_mutex_lock(&vb->pool->lock);
    vb->frozen = true;
    pthread_mutex_unlock(&vb->pool->lock);
    return pool_vbdev_drained(vb);
}

bool
pool_vbdev_drained(struct pool_vbdev *vb)
{
    bool drained;

    pthread_mutex_lock(&vb->pool->lock);
    drained = vb->inflight == 0;
    pthread_mutex_unlock(&vb->pool->lock);
    return drained;
}

static void vio_submit(struct ioc_bdev_io *io);

static void
vio_resubmit_msg(void *arg)
{
    vio_submit(arg);
}

void
pool_vbdev_thaw(struct pool_vbdev *vb)
{
    struct ioc_bdev_io *io;

    pthread_mutex_lock(&vb->pool->lock);
    vb->frozen = false;
    io = vb->held;
    vb->held = NULL;
    pthread_mutex_unlock(&vb->pool->lock);
    while (io != NULL) {
        struct ioc_bdev_io *next = vio_ctx(io)->wait_next;
        if (ioc_reactor_send_msg(io->reactor, vio_resubmit_msg, io) < 0) {
            ioc_bdev_io_complete(io, -ENOMEM); /* better on the wrong thread than never */
        }
        io = next;
    }
}

static void
vio_complete(struct ioc_bdev_io *io, int rc)
{
    struct vio_ctx *ctx = vio_ctx(io);

    vio_ungate(io);
    free(ctx->seg_iov);
    ctx->seg_iov = NULL;
    ctx->status = rc;
    if (ioc_reactor_self() == io->reactor) {
        ioc_bdev_io_complete_deferred(io, rc);
    } else if (ioc_reactor_send_msg(io->reactor, vio_complete_msg, io) < 0) {
        IOC_ERR_RATELIMIT("pool", "out of memory completing an IO across reactors");
        ioc_bdev_io_complete(io, rc); /* better on the wrong thread than never */
    }
}

static void
vio_commit_done(struct pool_commit_waiter *w, int rc)
{
    struct vio_ctx *ctx = ioc_container_of(w, struct vio_ctx, cw);
    struct ioc_bdev_io *io = ioc_container_of((void *)ctx, struct ioc_bdev_io, module_ctx);

    vio_complete(io, rc);
}

static void
vio_finish(struct ioc_bdev_io *io, int rc)
{
    struct vio_ctx *ctx = vio_ctx(io);

    if (rc == 0 && ctx->need_commit) {
        ctx->cw.cb = vio_commit_done;
        pool_commit(vio_vb(io)->pool, &ctx->cw);
        return;
    }
    vio_complete(io, rc);
}

/* ---- iovec slices ---- */

/* Point the segment iovecs at bytes [skip, skip+len) of the IO's buffers. */
static int
vio_slice(struct ioc_bdev_io *io, uint64_t skip, uint64_t len)
{
    struct vio_ctx *ctx = vio_ctx(io);
    struct iovec *out;
    int n = 0;

    if (io->iovcnt == 1) {
        ctx->one_iov.iov_base = (uint8_t *)io->iov[0].iov_base + skip;
        ctx->one_iov.iov_len = len;
        ctx->seg_iovcnt = 1;
        return 0;
    }
    if (ctx->seg_iov == NULL) {
        ctx->seg_iov = malloc((size_t)io->iovcnt * sizeof(*ctx->seg_iov));
        if (ctx->seg_iov == NULL) {
            return -ENOMEM;
        }
    }
    out = ctx->seg_iov;
    for (int i = 0; i < io->iovcnt && len > 0; i++) {
        uint64_t l = io->iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        out[n].iov_base = (uint8_t *)io->iov[i].iov_base + skip;
        out[n].iov_len = IOC_MIN(l - skip, len);
        len -= out[n].iov_len;
        skip = 0;
        n++;
    }
    ctx->seg_iovcnt = n;
    return 0;
}

static struct iovec *
vio_seg_iov(struct ioc_bdev_io *io)
{
    struct vio_ctx *ctx = vio_ctx(io);

    return io->iovcnt == 1 ? &ctx->one_iov : ctx->seg_iov;
}

/* Copy the segment's data into dst, or zero dst with from == NULL semantics. */
static void
vio_slice_copy(struct ioc_bdev_io *io, uint8_t *dst, bool to_iov)
{
    struct iovec *v = vio_seg_iov(io);

    for (int i = 0; i < vio_ctx(io)->seg_iovcnt; i++) {
        if (to_iov) {
            memcpy(v[i].iov_base, dst, v[i].iov_len);
        } else {
            memcpy(dst, v[i].iov_base, v[i].iov_len);
        }
        dst += v[i].iov_len;
    }
}

static void
vio_slice_zero(struct ioc_bdev_io *io)
{
    struct iovec *v = vio_seg_iov(io);

    for (int i = 0; i < vio_ctx(io)->seg_iovcnt; i++) {
        memset(v[i].iov_base, 0, v[i].iov_len);
    }
}

/* ---- slow path, home reactor ---- */

static void vio_step(struct ioc_bdev_io *io);

static void
vio_seg_done(struct ioc_bdev_io *child, void *arg)
{
    struct ioc_bdev_io *io = arg;
    struct vio_ctx *ctx = vio_ctx(io);
    int rc = child->status;

    ioc_bdev_io_free(child);
    if (rc < 0) {
        vio_finish(io, rc);
        return;
    }
    ctx->done += ctx->seg_len;
    vio_step(io);
}

/* One child IO on the base for the current segment; iov NULL for non-data IO. */
static int
vio_child(struct ioc_bdev_io *io, enum ioc_io_type type, uint64_t off, uint64_t len,
          struct iovec *iov, int iovcnt, uint32_t flags, ioc_bdev_io_cb cb, void *arg)
{
    struct ioc_pool *pool = vio_vb(io)->pool;
    struct ioc_bdev_io *child = ioc_bdev_io_alloc(pool->base);
    int rc;

    if (child == NULL) {
        return -ENOMEM;
    }
    if (iov == NULL && (type == IOC_IO_READ || type == IOC_IO_WRITE)) {
        return -EINVAL;
    }
    ioc_bdev_io_prep_rw(child, type, off, len, iov, iovcnt, flags, cb, arg);
    rc = ioc_bdev_io_submit(child);
    if (rc < 0) {
        ioc_bdev_io_free(child);
    }
    return rc;
}

static struct pool_alloc *
vio_alloc_find(struct ioc_pool *pool, const struct pool_vol *vol, uint32_t lc)
{
    for (struct pool_alloc *a = pool->allocs; a != NULL; a = a->next) {
        if (a->vol == vol && a->lc == lc) {
            return a;
        }
    }
    return NULL;
}

/* The allocation is over (done or failed): unlink it and restart its waiters. */
static void
vio_alloc_end(struct ioc_pool *pool, struct pool_alloc *a)
{
    struct ioc_bdev_io *w = a->waiters;

    for (struct pool_alloc **pp = &pool->allocs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    }
    free(a);
    while (w != NULL) {
        struct ioc_bdev_io *next = vio_ctx(w)->wait_next;
        vio_step(w);
        w = next;
    }
}

/* The copy-on-write failed: the cluster was never recorded, so it is reusable at once. */
static void
vio_cow_fail(struct ioc_bdev_io *io, int rc)
{
    struct vio_ctx *ctx = vio_ctx(io);
    struct ioc_pool *pool = vio_vb(io)->pool;
    struct pool_alloc *a = ctx->alloc;

    free(ctx->cow_buf);
    ctx->cow_buf = NULL;
    ctx->alloc = NULL;
    pool->cstate[a->cluster] = POOL_CL_FREE;
    pool->nfree++;
    vio_alloc_end(pool, a);
    vio_finish(io, rc);
}

static void
vio_cow_write_done(struct ioc_bdev_io *child, void *arg)
{
    struct ioc_bdev_io *io = arg;
    struct vio_ctx *ctx = vio_ctx(io);
    struct ioc_pool *pool = vio_vb(io)->pool;
    struct pool_alloc *a = ctx->alloc;
    int rc = child->status;

    ioc_bdev_io_free(child);
    if (rc < 0) {
        vio_cow_fail(io, rc);
        return;
    }
    free(ctx->cow_buf);
    ctx->cow_buf = NULL;
    ctx->alloc = NULL;
    if (a->vol->map[a->lc] != 0) {
        pool_cluster_free(pool, a->vol, a->lc); /* a snapshot merge handed it one meanwhile */
    }
    pool_cluster_set(pool, a->vol, a->lc, a->cluster);
    if (io->flags & IOC_IO_FUA) {
        ctx->need_commit = true;
    }
    ctx->done += ctx->seg_len;
    vio_alloc_end(pool, a);
    vio_step(io);
}

/* Read or write a whole pool cluster from or to cow_buf. */
static int
vio_cluster_io(struct ioc_bdev_io *io, enum ioc_io_type type, uint32_t c, ioc_bdev_io_cb cb)
{
    struct vio_ctx *ctx = vio_ctx(io);
    struct ioc_pool *pool = vio_vb(io)->pool;
    struct ioc_bdev_io *child = ioc_bdev_io_alloc(pool->base);
    int rc;

    if (child == NULL) {
        return -ENOMEM;
    }
    child->iov_single.iov_base = ctx->cow_buf;
    child->iov_single.iov_len = pool->cluster_size;
    ioc_bdev_io_prep_rw(child, type, pool_cluster_off(pool, c), pool->cluster_size,
                        &child->iov_single, 1, 0, cb, io);
    rc = ioc_bdev_io_submit(child);
    if (rc < 0) {
        ioc_bdev_io_free(child);
    }
    return rc;
}

/* The parent's data is in cow_buf: lay the new data (or zeroes) over it and write it all. */
static void
vio_cow_write(struct ioc_bdev_io *io)
{
    struct vio_ctx *ctx = vio_ctx(io);
    struct ioc_pool *pool = vio_vb(io)->pool;
    uint64_t in = (io->offset + ctx->done) & (pool->cluster_size - 1);
    int rc;

    if (io->type == IOC_IO_WRITE) {
        vio_slice_copy(io, ctx->cow_buf + in, false);
    } else {
        memset(ctx->cow_buf + in, 0, ctx->seg_len);
    }
    rc = vio_cluster_io(io, IOC_IO_WRITE, ctx->alloc->cluster, vio_cow_write_done);
    if (rc < 0) {
        vio_cow_fail(io, rc);
    }
}

static void
vio_cow_read_done(struct ioc_bdev_io *child, void *arg)
{
    struct ioc_bdev_io *io = arg;
    int rc = child->status;

    ioc_bdev_io_free(child);
    if (rc < 0) {
        vio_cow_fail(io, rc);
        return;
    }
    vio_cow_write(io);
}

static void
vio_enospc_retry(struct pool_commit_waiter *w, int rc)
{
    struct vio_ctx *ctx = ioc_container_of(w, struct vio_ctx, cw);
    struct ioc_bdev_io *io = ioc_container_of((void *)ctx, struct ioc_bdev_io, module_ctx);

    if (rc < 0) {
        vio_finish(io, rc);
        return;
    }
    vio_step(io);
}

/* First write (or zeroing over a parent's data) of logical cluster lc of vol. */
static void
vio_cow(struct ioc_bdev_io *io, struct pool_vol *vol, uint32_t lc)
{
    struct vio_ctx *ctx = vio_ctx(io);
    struct ioc_pool *pool = vol->pool;
    struct pool_alloc *a = vio_alloc_find(pool, vol, lc);
    uint64_t in = (io->offset + ctx->done) & (pool->cluster_size - 1);
    uint32_t c, src;
    bool whole;
    int rc;

    if (a != NULL) {
        ctx->wait_next = a->waiters; /* order among waiters does not matter */
        a->waiters = io;
        return;
    }
    rc = pool_cluster_alloc(pool, &c);
    if (rc == -ENOSPC && !ctx->enospc_retried &&
        (pool->nquar > 0 || pool->committing || pool->nlimbo > 0 || pool->draining != NULL)) {
        ctx->enospc_retried = true; /* freed space becomes usable once committed */
        ctx->cw.cb = vio_enospc_retry;
        pool_commit(pool, &ctx->cw);
        return;
    }
    whole = io->type == IOC_IO_WRITE && in == 0 && ctx->seg_len == pool->cluster_size;
    a = rc == 0 ? calloc(1, sizeof(*a)) : NULL;
    ctx->cow_buf = a != NULL && !whole ? aligned_alloc(4096, pool->cluster_size) : NULL;
    if (rc == 0 && (a == NULL || (ctx->cow_buf == NULL && !whole))) {
        free(a);
        pool->cstate[c] = POOL_CL_FREE;
        pool->nfree++;
        rc = -ENOMEM;
    }
    if (rc < 0) {
        vio_finish(io, rc);
        return;
    }
    *a = (struct pool_alloc){.vol = vol, .lc = lc, .cluster = c, .next = pool->allocs};
    pool->allocs = a;
    ctx->alloc = a;
    if (whole) {
        /* The write covers the cluster: straight from the caller's buffers, no copy. */
        rc = vio_child(io, IOC_IO_WRITE, pool_cluster_off(pool, c), ctx->seg_len,
                       vio_seg_iov(io), ctx->seg_iovcnt, 0, vio_cow_write_done, io);
        if (rc < 0) {
            vio_cow_fail(io, rc);
        }
        return;
    }
    src = pool_resolve(vol, lc);
    if (src == UINT32_MAX || (in == 0 && ctx->seg_len == pool->cluster_size)) {
        if (src == UINT32_MAX) {
            memset(ctx->cow_buf, 0, pool->cluster_size);
        }
        vio_cow_write(io);
        return;
    }
    rc = vio_cluster_io(io, IOC_IO_READ, src, vio_cow_read_done);
    if (rc < 0) {
        vio_cow_fail(io, rc);
    }
}

/* Nothing below vol in its chain holds lc: freeing vol's cluster leaves a true hole. */
static bool
vio_nothing_below(const struct pool_vol *vol, uint32_t lc)
{
    return vol->parent == NULL || pool_resolve(vol->parent, lc) == UINT32_MAX;
}

/* UNMAP / WRITE_ZEROES of one segment; returns true if it finished synchronously. */
static bool
vio_zero_seg(struct ioc_bdev_io *io, struct pool_vol *vol, uint32_t lc, uint64_t in, int *rc)
{
    struct ioc_pool *pool = vol->pool;
    struct vio_ctx *ctx = vio_ctx(io);
    bool whole = in == 0 && ctx->seg_len == pool->cluster_size;

    *rc = 0;
    if (vol->map[lc] == 0) {
        if (pool_resolve(vol, lc) == UINT32_MAX) {
            return true; /* a hole already reads as zeroes */
        }
        vio_cow(io, vol, lc); /* a parent has data here: zeroes must shadow it */
        return false;
    }
    if (whole && !(io->flags & IOC_IO_NO_HOLE) && vio_nothing_below(vol, lc) &&
        !(pool_vd(pool, vol)->flags & IOC_VOL_THICK)) {
        pool_cluster_free(pool, vol, lc);
        return true;
    }
    *rc = vio_child(io, IOC_IO_WRITE_ZEROES,
                    pool_cluster_off(pool, vol->map[lc] - 1) + in, ctx->seg_len, NULL, 0,
                    IOC_IO_NO_HOLE, vio_seg_done, io);
    return *rc < 0;
}

/* Walk the IO one cluster segment at a time; see the top of the file. Home reactor. */
static void
vio_step(struct ioc_bdev_io *io)
{
    struct vio_ctx *ctx = vio_ctx(io);
    struct pool_vbdev *vb = vio_vb(io);
    struct ioc_pool *pool = vb->pool;
    int rc = 0;

    while (ctx->done < io->length) {
        uint64_t off = io->offset + ctx->done;
        uint32_t lc = (uint32_t)(off >> pool->cluster_shift), c;
        uint64_t in = off & (pool->cluster_size - 1);
        struct pool_vol *vol = vb->vol;

        ctx->seg_len = IOC_MIN(pool->cluster_size - in, io->length - ctx->done);
        if (vol == NULL || lc >= vol->n_lcl) {
            vio_finish(io, -ERANGE); /* shrunk or deleted under the IO */
            return;
        }
        if (io->type == IOC_IO_READ || io->type == IOC_IO_WRITE) {
            rc = vio_slice(io, ctx->done, ctx->seg_len);
            if (rc < 0) {
                break;
            }
        }
        switch (io->type) {
        case IOC_IO_READ:
            c = pool_resolve(vol, lc);
            if (c == UINT32_MAX) {
                vio_slice_zero(io);
                ctx->done += ctx->seg_len;
                continue;
            }
            rc = vio_child(io, IOC_IO_READ, pool_cluster_off(pool, c) + in, ctx->seg_len,
                           vio_seg_iov(io), ctx->seg_iovcnt, 0, vio_seg_done, io);
            break;
        case IOC_IO_WRITE:
            if (vol->map[lc] == 0) {
                vio_cow(io, vol, lc);
                return;
            }
            rc = vio_child(io, IOC_IO_WRITE, pool_cluster_off(pool, vol->map[lc] - 1) + in,
                           ctx->seg_len, vio_seg_iov(io), ctx->seg_iovcnt,
                           io->flags & IOC_IO_FUA, vio_seg_done, io);
            break;
        default: /* UNMAP, WRITE_ZEROES */
            if (vio_zero_seg(io, vol, lc, in, &rc) && rc == 0) {
                ctx->done += ctx->seg_len;
                continue;
            }
            break;
        }
        if (rc < 0) {
            break;
        }
        return; /* a child IO is in flight; vio_seg_done continues */
    }
    if (rc == 0 && (io->type == IOC_IO_UNMAP || io->type == IOC_IO_WRITE_ZEROES) &&
        (io->flags & IOC_IO_FUA)) {
        ctx->need_commit = true;
    }
    vio_finish(io, rc);
}

static void
vio_dispatch(struct ioc_bdev_io *io)
{
    if (io->type == IOC_IO_FLUSH) {
        vio_ctx(io)->need_commit = true;
        vio_finish(io, 0);
        return;
    }
    vio_step(io);
}

static void
vio_dispatch_msg(void *arg)
{
    vio_dispatch(arg);
}

static void
vio_to_home(struct ioc_bdev_io *io)
{
    struct ioc_pool *pool = vio_vb(io)->pool;

    memset(vio_ctx(io), 0, sizeof(struct vio_ctx));
    if (ioc_reactor_self() == pool->home) {
        vio_dispatch(io);
    } else if (ioc_reactor_send_msg(pool->home, vio_dispatch_msg, io) < 0) {
        vio_ungate(io);
        ioc_bdev_io_complete_deferred(io, -ENOMEM);
    }
}

/* ---- hot path, any reactor ---- */

/* The fast-path IO is over: uncount it (see fast_gen in pool_internal.h) and ungate it. */
static void
vio_fast_end(struct ioc_bdev_io *io)
{
    struct pool_vbdev *vb = vio_vb(io);

    pthread_mutex_lock(&vb->pool->lock);
    vb->pool->fast_inflight[vio_ctx(io)->fast_bucket]--;
    if (vio_modifies(io->type)) {
        vb->inflight--;
    }
    pthread_mutex_unlock(&vb->pool->lock);
}

static void
vio_fast_done(struct ioc_bdev_io *child, void *arg)
{
    struct ioc_bdev_io *io = arg;
    int rc = child->status;

    ioc_bdev_io_free(child);
    vio_fast_end(io);
    ioc_bdev_io_complete(io, rc);
}

/* One cluster, already mapped: straight to the base. Returns false to take the slow path. */
static bool
vio_fast(struct ioc_bdev_io *io)
{
    struct pool_vbdev *vb = vio_vb(io);
    struct ioc_pool *pool = vb->pool;
    uint32_t lc = (uint32_t)(io->offset >> pool->cluster_shift), c = UINT32_MAX;
    struct ioc_bdev_io *child;
    int rc;

    if (((io->offset + io->length - 1) >> pool->cluster_shift) != lc) {
        return false;
    }
    child = ioc_bdev_io_alloc(pool->base);
    if (child == NULL) {
        return false;
    }
    pthread_mutex_lock(&pool->lock);
    if (vb->vol != NULL && lc < vb->vol->n_lcl) {
        c = io->type == IOC_IO_WRITE ? vb->vol->map[lc] - 1 : pool_resolve(vb->vol, lc);
    }
    if (c != UINT32_MAX) {
        /* Counted until it completes: the cluster is not reused before (pool.c limbo_*). */
        vio_ctx(io)->fast_bucket = pool->fast_gen & 1;
        pool->fast_inflight[pool->fast_gen & 1]++;
    }
    pthread_mutex_unlock(&pool->lock);
    if (c == UINT32_MAX) {
        ioc_bdev_io_free(child);
        return false;
    }
    ioc_bdev_io_prep_rw(child, io->type,
                        pool_cluster_off(pool, c) + (io->offset & (pool->cluster_size - 1)),
                        io->length, io->iov, io->iovcnt, io->flags & IOC_IO_FUA, vio_fast_done,
                        io);
    rc = ioc_bdev_io_submit(child);
    if (rc < 0) {
        ioc_bdev_io_free(child);
        vio_fast_end(io);
        ioc_bdev_io_complete_deferred(io, rc);
    }
    return true;
}

static void
vio_block_status(struct ioc_bdev_io *io)
{
    struct pool_vbdev *vb = vio_vb(io);
    struct ioc_pool *pool = vb->pool;
    uint64_t off = io->offset, end = io->offset + io->length;
    uint32_t n = 0;

    pthread_mutex_lock(&pool->lock);
    while (off < end && vb->vol != NULL) {
        uint32_t lc = (uint32_t)(off >> pool->cluster_shift);
        uint64_t seg = IOC_MIN(pool->cluster_size - (off & (pool->cluster_size - 1)), end - off);
        uint32_t flags = lc < vb->vol->n_lcl && pool_resolve(vb->vol, lc) != UINT32_MAX
                             ? 0
                             : IOC_EXTENT_HOLE | IOC_EXTENT_ZERO;
        if (n > 0 && io->extents[n - 1].flags == flags) {
            io->extents[n - 1].length += seg;
        } else if (n < io->max_extents) {
            io->extents[n++] = (struct ioc_extent){seg, flags};
        } else {
            break;
        }
        off += seg;
    }
    pthread_mutex_unlock(&pool->lock);
    io->nr_extents = n;
    ioc_bdev_io_complete_deferred(io, n > 0 ? 0 : -EIO);
}

static void
vio_submit(struct ioc_bdev_io *io)
{
    struct pool_vbdev *vb = vio_vb(io);

    if (vb->read_only && io->type != IOC_IO_READ && io->type != IOC_IO_BLOCK_STATUS &&
        io->type != IOC_IO_FLUSH) {
        ioc_bdev_io_complete_deferred(io, -EROFS);
        return;
    }
    if (vio_modifies(io->type) && !vio_gate(io)) {
        return; /* held until the snapshot under way thaws the bdev */
    }
    switch (io->type) {
    case IOC_IO_BLOCK_STATUS:
        vio_block_status(io);
        return;
    case IOC_IO_READ:
    case IOC_IO_WRITE:
        if (vio_fast(io)) {
            return;
        }
        vio_to_home(io);
        return;
    case IOC_IO_FLUSH:
    case IOC_IO_UNMAP:
    case IOC_IO_WRITE_ZEROES:
        vio_to_home(io);
        return;
    default:
        ioc_bdev_io_complete_deferred(io, -ENOTSUP);
        return;
    }
}

static bool
vio_supports(struct ioc_bdev *bdev, enum ioc_io_type type)
{
    struct pool_vbdev *vb = bdev->ctx;

    switch (type) {
    case IOC_IO_READ:
    case IOC_IO_WRITE:
    case IOC_IO_FLUSH:
    case IOC_IO_UNMAP:
    case IOC_IO_BLOCK_STATUS:
        return true;
    case IOC_IO_WRITE_ZEROES:
        return ioc_bdev_supports(vb->pool->base, IOC_IO_WRITE_ZEROES);
    default:
        return false;
    }
}

static void
vio_destruct(struct ioc_bdev *bdev)
{
    struct pool_vbdev *vb = bdev->ctx;
    struct ioc_pool *pool = vb->pool;

    pthread_mutex_lock(&pool->lock);
    if (vb->vol != NULL && vb->vol->vb == vb) {
        vb->vol->vb = NULL;
    }
    pthread_mutex_unlock(&pool->lock);
    free(vb);
}

static void
vio_dump_json(struct ioc_bdev *bdev, json_t *obj)
{
    struct pool_vbdev *vb = bdev->ctx;

    json_object_set_new(obj, "pool", json_string(vb->pool->name));
    json_object_set_new(obj, "read_only", json_boolean(vb->read_only));
}

const struct ioc_bdev_ops g_pool_vbdev_ops = {
    .submit = vio_submit,
    .supports = vio_supports,
    .destruct = vio_destruct,
    .dump_json = vio_dump_json,
};
