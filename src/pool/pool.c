/*
 * pool/pool.c - pool lifecycle (create, import, export), the cluster allocator
 * and the metadata commit.
 *
 * What: a pool formats a bdev into a metadata region and an array of
 * clusters (docs/pool-format.md), and keeps the whole metadata in memory:
 * the volume table, the cluster table (owner, logical index per cluster),
 * and per-volume forward maps rebuilt from the cluster table at import. The
 * cluster table IS the allocation state, so nothing can leak or be booked
 * twice without the decoder (pool_meta.c) seeing it.
 *
 * How a commit works (pool_commit): changes mark 4 KiB metadata pages dirty.
 * A commit takes the dirty set, writes each page into the slot that does not
 * hold its current version with seq N+1, FLUSHes the base, writes the
 * superblock slot (N+1)&1, FLUSHes again, and only then flips its notion of
 * the current slots. One commit runs at a time; waiters that arrive during it
 * (FLUSH, FUA writes, control operations) are served by the next one, which
 * starts as soon as this one ends, so a FLUSH always covers every change made
 * before it arrived. A commit with nothing dirty is a plain base FLUSH.
 *
 * Freed clusters are quarantined until the commit recording the free has
 * completed: reusing one earlier would let a crash expose the new owner's
 * data through the old owner's still-committed table entry.
 *
 * Threading: everything here runs on the pool's home reactor; the data path
 * on other reactors reads maps under pool->lock and forwards the rest here
 * (pool_io.c). Control requests from the RPC thread arrive as messages
 * (pool_rpc.c and the *_sync bridges at the bottom).
 *
 * Not done: a sparse forward map (maps are flat arrays, 4 bytes per logical
 * cluster, so volume size is capped at 2^24 clusters); writing only the
 * changed half of a page; spreading a large commit over several batches.
 *
 * Rejected: committing on a timer. Clients that need durability send FLUSH
 * or FUA; a timer adds latency jitter and write amplification for nothing.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bdev/file/bdev_file.h"
#include "core/log.h"
#include "core/reactor.h"
#include "pool/pool_internal.h"

#define POOL_IO_CHUNK (8u * 1024 * 1024)

/* The registry: control path only (RPC thread, home reactors on create/export). */
static pthread_mutex_t g_pools_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ioc_pool *g_pools;

/* ---- small helpers ---- */

struct pool_later {
    ioc_pool_cb cb;
    void *cb_arg;
    int rc;
};

static void
pool_later_run(void *arg)
{
    struct pool_later *l = arg;

    l->cb(l->cb_arg, l->rc);
    free(l);
}

/* Call cb(cb_arg, rc) from a later reactor iteration: never inline in the caller's call. */
void
pool_cb_later(ioc_pool_cb cb, void *cb_arg, int rc)
{
    struct pool_later *l = malloc(sizeof(*l));

    if (l == NULL || ioc_reactor_send_msg(ioc_reactor_self(), pool_later_run, l) < 0) {
        IOC_ERR("pool", "out of memory delivering a completion; completing inline");
        free(l);
        cb(cb_arg, rc);
        return;
    }
    l->cb = cb;
    l->cb_arg = cb_arg;
    l->rc = rc;
}

/* One IO on the base bdev; cb gets the child (free it) and arg. */
static int
base_io(struct ioc_bdev *base, enum ioc_io_type type, uint64_t off, uint64_t len, void *buf,
        ioc_bdev_io_cb cb, void *arg)
{
    struct ioc_bdev_io *io = ioc_bdev_io_alloc(base);
    int rc;

    if (io == NULL) {
        return -ENOMEM;
    }
    io->iov_single.iov_base = buf;
    io->iov_single.iov_len = len;
    ioc_bdev_io_prep_rw(io, type, off, len, buf != NULL ? &io->iov_single : NULL,
                        buf != NULL ? 1 : 0, 0, cb, arg);
    rc = ioc_bdev_io_submit(io);
    if (rc < 0) {
        ioc_bdev_io_free(io);
    }
    return rc;
}

static int
pool_base_io(struct ioc_pool *pool, enum ioc_io_type type, uint64_t off, uint64_t len, void *buf,
             ioc_bdev_io_cb cb, void *arg)
{
    return base_io(pool->base, type, off, len, buf, cb, arg);
}

struct ioc_pool_vol_disk *
pool_vd(struct ioc_pool *pool, const struct pool_vol *vol)
{
    return &pool->meta->vt[vol->id - 1];
}

/* Metadata page p goes into the next commit. */
static void
pool_dirty_page(struct ioc_pool *pool, uint32_t p)
{
    if (!pool->dirty[p]) {
        pool->dirty[p] = 1;
        pool->ndirty++;
    }
}

void
pool_dirty_vt(struct ioc_pool *pool, uint32_t id)
{
    pool_dirty_page(pool, (uint32_t)((id - 1) / IOC_POOL_VT_PER_PAGE));
}

void
pool_dirty_ct(struct ioc_pool *pool, uint32_t cluster)
{
    pool_dirty_page(pool, pool->meta->sb.vt_pages + (uint32_t)(cluster / IOC_POOL_CT_PER_PAGE));
}

/* ---- allocator ---- */

int
pool_cluster_alloc(struct ioc_pool *pool, uint32_t *out)
{
    if (pool->nfree == 0) {
        return -ENOSPC;
    }
    for (uint32_t i = 0; i < pool->n_clusters; i++) {
        uint32_t c = (pool->cursor + i) % pool->n_clusters;
        if (pool->cstate[c] == POOL_CL_FREE) {
            pool->cstate[c] = POOL_CL_ALLOC;
            pool->nfree--;
            pool->cursor = c + 1;
            *out = c;
            return 0;
        }
    }
    IOC_ERR("pool", "pool %s: free count %u but no free cluster", pool->name, pool->nfree);
    pool->nfree = 0;
    return -ENOSPC;
}

/* Record that vol's logical cluster lc lives in pool cluster c (which was ALLOC). */
void
pool_cluster_set(struct ioc_pool *pool, struct pool_vol *vol, uint32_t lc, uint32_t c)
{
    pool->meta->ct[c].owner = vol->id;
    pool->meta->ct[c].lcluster = lc;
    pool->cstate[c] = POOL_CL_USED;
    pool_dirty_ct(pool, c);
    pthread_mutex_lock(&pool->lock);
    vol->map[lc] = c + 1;
    vol->allocated++;
    pthread_mutex_unlock(&pool->lock);
}

static int
pool_quar_push(struct ioc_pool *pool, uint32_t c)
{
    if (pool->nquar == pool->quar_cap) {
        size_t cap = pool->quar_cap ? pool->quar_cap * 2 : 64;
        uint32_t *q = realloc(pool->quar, cap * sizeof(*q));
        if (q == NULL) {
            return -ENOMEM;
        }
        pool->quar = q;
        pool->quar_cap = cap;
    }
    pool->quar[pool->nquar++] = c;
    return 0;
}

void
pool_cluster_free(struct ioc_pool *pool, struct pool_vol *vol, uint32_t lc)
{
    pthread_mutex_lock(&pool->lock);
    pool_cluster_free_locked(pool, vol, lc);
    pthread_mutex_unlock(&pool->lock);
}

/* Give back vol's cluster lc: out of the map now, reusable after the next commit. */
void
pool_cluster_free_locked(struct ioc_pool *pool, struct pool_vol *vol, uint32_t lc)
{
    uint32_t c = vol->map[lc] - 1;

    vol->map[lc] = 0;
    vol->allocated--;
    pool->meta->ct[c].owner = 0;
    pool->meta->ct[c].lcluster = 0;
    pool_dirty_ct(pool, c);
    if (pool_quar_push(pool, c) < 0) {
        /* Without room to remember it, keep it out of circulation until re-import. */
        IOC_WARN("pool", "pool %s: out of memory; cluster %u stays unused until re-import",
                 pool->name, c);
        pool->cstate[c] = POOL_CL_ALLOC;
        return;
    }
    pool->cstate[c] = POOL_CL_QUAR;
}

/* ---- releasing freed clusters (see pool_internal.h) ---- */

static void limbo_advance(struct ioc_pool *pool);

static void
limbo_release(struct ioc_pool *pool)
{
    for (size_t i = 0; i < pool->ndraining; i++) {
        pool->cstate[pool->draining[i]] = POOL_CL_FREE;
    }
    pool->nfree += (uint32_t)pool->ndraining;
    free(pool->draining);
    pool->draining = NULL;
    pool->ndraining = 0;
    limbo_advance(pool);
}

static void
limbo_drain_check(void *arg)
{
    struct ioc_pool *pool = arg;
    unsigned busy;

    pthread_mutex_lock(&pool->lock);
    busy = pool->fast_inflight[pool->drain_bucket];
    pthread_mutex_unlock(&pool->lock);
    if (busy == 0 || pool->closing) {
        limbo_release(pool);
        return;
    }
    if (ioc_timer_start(pool->home, 10, limbo_drain_check, pool) == NULL &&
        ioc_reactor_send_msg(pool->home, limbo_drain_check, pool) < 0) {
        IOC_ERR("pool", "pool %s: out of memory waiting for IO to drain; releasing clusters",
                pool->name);
        limbo_release(pool);
    }
}

/* Start a drain for the committed frees, unless one is under way. */
static void
limbo_advance(struct ioc_pool *pool)
{
    unsigned busy;

    if (pool->draining != NULL || pool->nlimbo == 0) {
        return;
    }
    pool->draining = pool->limbo;
    pool->ndraining = pool->nlimbo;
    pool->limbo = NULL;
    pool->nlimbo = pool->limbo_cap = 0;
    pthread_mutex_lock(&pool->lock);
    pool->drain_bucket = pool->fast_gen & 1;
    pool->fast_gen++;
    busy = pool->fast_inflight[pool->drain_bucket];
    pthread_mutex_unlock(&pool->lock);
    if (busy == 0) {
        limbo_release(pool);
    } else {
        limbo_drain_check(pool);
    }
}

/* The commit recording these frees completed: release them once the IO that saw them drains. */
static void
limbo_add(struct ioc_pool *pool, const uint32_t *c, size_t n)
{
    if (pool->nlimbo + n > pool->limbo_cap) {
        size_t cap = IOC_MAX(pool->limbo_cap * 2, pool->nlimbo + n);
        uint32_t *l = realloc(pool->limbo, cap * sizeof(*l));
        if (l == NULL) {
            IOC_WARN("pool", "pool %s: out of memory; %zu clusters stay unused until re-import",
                     pool->name, n);
            for (size_t i = 0; i < n; i++) {
                pool->cstate[c[i]] = POOL_CL_ALLOC;
            }
            return;
        }
        pool->limbo = l;
        pool->limbo_cap = cap;
    }
    if (n > 0) { /* c and limbo may both be NULL when nothing was freed */
        memcpy(pool->limbo + pool->nlimbo, c, n * sizeof(*c));
        pool->nlimbo += n;
    }
    limbo_advance(pool);
}

/* ---- commit ---- */

static void commit_start(struct ioc_pool *pool);

/* Complete a list of commit waiters. */
static void
commit_waiters_done(struct pool_commit_waiter *w, int rc)
{
    while (w != NULL) {
        struct pool_commit_waiter *next = w->next;
        w->cb(w, rc);
        w = next;
    }
}

/*
 * A commit failed after its superblock write went down: that superblock may
 * or may not be on disk, so both slots of every page it wrote may be the
 * current one, and writing either with different bytes could tear the only
 * good copy. Keep the commit and make its outcome certain by writing exactly
 * the same bytes again before anything else (commit_start); a torn rewrite
 * of identical bytes leaves them identical. Its waiters get the error.
 */
static void
commit_keep_for_replay(struct ioc_pool *pool, int rc)
{
    struct pool_commit *cm = &pool->commit;
    struct pool_commit_waiter *w = cm->batch;

    IOC_ERR("pool", "pool %s: metadata commit %llu failed after its superblock write: %s; "
            "it is written again before any other commit", pool->name,
            (unsigned long long)cm->seq, strerror(-rc));
    cm->replay = true;
    cm->batch = NULL;
    pool->committing = false;
    commit_waiters_done(w, rc);
    if (pool->waiters != NULL && !pool->committing) {
        commit_start(pool);
    }
}

/* The replayed commit is now certain; its waiters still need a commit of their own. */
static void
commit_replay_done(struct ioc_pool *pool)
{
    struct pool_commit_waiter *w = pool->commit.batch, *last = w;

    while (last != NULL && last->next != NULL) {
        last = last->next;
    }
    if (last != NULL) {
        last->next = pool->waiters;
        pool->waiters = w;
    }
    pool->commit.batch = NULL;
}

static void
commit_end(struct ioc_pool *pool, int rc)
{
    struct pool_commit *cm = &pool->commit;
    struct pool_commit_waiter *w = cm->batch;

    if (rc < 0 && (cm->sb_sent || cm->replay)) {
        commit_keep_for_replay(pool, rc);
        return;
    }
    if (rc == 0 && cm->replay) {
        commit_replay_done(pool);
        w = NULL;
    }
    if (rc == 0) {
        for (uint32_t i = 0; i < cm->npages; i++) {
            uint32_t p = cm->pages[i];
            pool->meta->page_slot[p] ^= 1;
            pool->meta->page_seq[p] = cm->seq;
        }
        if (cm->npages > 0) {
            pool->meta->sb.seq = cm->seq;
        }
        limbo_add(pool, cm->quar, cm->nquar);
    } else {
        IOC_ERR("pool", "pool %s: metadata commit %llu failed: %s", pool->name,
                (unsigned long long)cm->seq, strerror(-rc));
        for (uint32_t i = 0; i < cm->npages; i++) {
            pool_dirty_page(pool, cm->pages[i]);
        }
        for (size_t i = 0; i < cm->nquar; i++) {
            if (pool_quar_push(pool, cm->quar[i]) < 0) {
                pool->cstate[cm->quar[i]] = POOL_CL_ALLOC; /* leaked until re-import */
            }
        }
    }
    free(cm->pages);
    free(cm->buf);
    free(cm->quar);
    memset(cm, 0, sizeof(*cm));
    pool->committing = false;
    commit_waiters_done(w, rc);
    if (pool->waiters != NULL) {
        commit_start(pool);
    }
}

static void
commit_flush2_done(struct ioc_bdev_io *io, void *arg)
{
    int rc = io->status;

    ioc_bdev_io_free(io);
    commit_end(arg, rc);
}

static void
commit_sb_done(struct ioc_bdev_io *io, void *arg)
{
    struct ioc_pool *pool = arg;
    int rc = io->status;

    ioc_bdev_io_free(io);
    if (rc == 0) {
        rc = pool_base_io(pool, IOC_IO_FLUSH, 0, 0, NULL, commit_flush2_done, pool);
    }
    if (rc < 0) {
        commit_end(pool, rc);
    }
}

static void
commit_flush1_done(struct ioc_bdev_io *io, void *arg)
{
    struct ioc_pool *pool = arg;
    struct pool_commit *cm = &pool->commit;
    uint8_t *sbuf = cm->buf + (size_t)cm->npages * IOC_POOL_PAGE_SIZE;
    struct ioc_pool_sb *sb = (struct ioc_pool_sb *)(void *)sbuf;
    int rc = io->status;

    ioc_bdev_io_free(io);
    if (rc == 0 && cm->npages == 0) {
        commit_end(pool, 0); /* nothing changed: the flush was all */
        return;
    }
    if (rc == 0 && !cm->replay) {
        uint64_t seq = pool->meta->sb.seq;
        pool->meta->sb.seq = cm->seq;
        ioc_pool_meta_sb_build(pool->meta, sb);
        pool->meta->sb.seq = seq;
    }
    if (rc == 0) {
        cm->sb_sent = true;
        rc = pool_base_io(pool, IOC_IO_WRITE, (cm->seq & 1) * IOC_POOL_PAGE_SIZE,
                          IOC_POOL_PAGE_SIZE, sbuf, commit_sb_done, pool);
    }
    if (rc < 0) {
        commit_end(pool, rc);
    }
}

static void
commit_page_done(struct ioc_bdev_io *io, void *arg)
{
    struct ioc_pool *pool = arg;
    struct pool_commit *cm = &pool->commit;
    int rc;

    if (io != NULL && io->status < 0 && cm->status == 0) {
        cm->status = io->status;
    }
    ioc_bdev_io_free(io);
    if (--cm->remaining > 0) {
        return;
    }
    if (cm->status < 0) {
        commit_end(pool, cm->status);
        return;
    }
    rc = pool_base_io(pool, IOC_IO_FLUSH, 0, 0, NULL, commit_flush1_done, pool);
    if (rc < 0) {
        commit_end(pool, rc);
    }
}

/* Take the dirty pages and freed clusters into the commit; build the page images. */
static int
commit_prepare(struct ioc_pool *pool)
{
    struct pool_commit *cm = &pool->commit;
    uint32_t n = 0;

    cm->pages = malloc(((size_t)pool->ndirty + 1) * sizeof(*cm->pages));
    cm->buf = aligned_alloc(4096, ((size_t)pool->ndirty + 1) * IOC_POOL_PAGE_SIZE);
    if (cm->pages == NULL || cm->buf == NULL) {
        return -ENOMEM;
    }
    cm->seq = pool->meta->sb.seq + 1;
    for (uint32_t p = 0; p < pool->meta->n_pages && n < pool->ndirty; p++) {
        if (pool->dirty[p]) {
            pool->dirty[p] = 0;
            cm->pages[n] = p;
            ioc_pool_meta_page_build(pool->meta, p, cm->seq,
                                     cm->buf + (size_t)n * IOC_POOL_PAGE_SIZE);
            n++;
        }
    }
    cm->npages = n;
    pool->ndirty = 0;
    cm->quar = pool->quar;
    cm->nquar = pool->nquar;
    pool->quar = NULL;
    pool->nquar = pool->quar_cap = 0;
    return 0;
}

static void
commit_start(struct ioc_pool *pool)
{
    struct pool_commit *cm = &pool->commit;
    int rc;

    pool->committing = true;
    cm->batch = pool->waiters;
    pool->waiters = NULL;
    cm->status = 0;
    rc = cm->replay ? 0 : commit_prepare(pool); /* a replay rewrites the kept images */
    if (rc < 0) {
        commit_end(pool, rc);
        return;
    }
    /* remaining counts the page writes plus one for this loop, so none finishes early. */
    cm->remaining = 1;
    for (uint32_t i = 0; i < cm->npages; i++) {
        uint32_t p = cm->pages[i];
        unsigned slot = pool->meta->page_slot[p] ^ 1;
        cm->remaining++;
        rc = pool_base_io(pool, IOC_IO_WRITE, ioc_pool_page_offset(p, slot), IOC_POOL_PAGE_SIZE,
                          cm->buf + (size_t)i * IOC_POOL_PAGE_SIZE, commit_page_done, pool);
        if (rc < 0) {
            cm->remaining--;
            cm->status = rc;
            break;
        }
    }
    commit_page_done(NULL, pool);
}

void
pool_commit(struct ioc_pool *pool, struct pool_commit_waiter *w)
{
    w->next = pool->waiters;
    pool->waiters = w;
    if (!pool->committing) {
        commit_start(pool);
    }
}

/* ---- pool objects ---- */

static void
pool_free(struct ioc_pool *pool)
{
    if (pool == NULL) {
        return;
    }
    pool_vols_free(pool);
    ioc_pool_meta_free(pool->meta);
    free(pool->cstate);
    free(pool->dirty);
    free(pool->quar);
    free(pool->limbo);
    free(pool->draining);
    pthread_mutex_destroy(&pool->lock);
    ioc_bdev_put(&pool->base);
    free(pool);
}

/* Build the in-memory pool from a decoded image; takes meta and the base reference. */
static int
pool_build(struct ioc_bdev **base, struct ioc_pool_meta **meta, const char *name,
           struct ioc_pool **out, struct ioc_err *err)
{
    struct ioc_pool *pool = calloc(1, sizeof(*pool));
    struct ioc_pool_meta *m = *meta;
    int rc;

    if (pool == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    pthread_mutex_init(&pool->lock, NULL);
    pool->base = ioc_steal_ptr(base);
    pool->meta = ioc_steal_ptr(meta);
    snprintf(pool->name, sizeof(pool->name), "%s", name != NULL ? name : m->sb.name);
    pool->home = ioc_reactor_self();
    pool->cluster_size = m->sb.cluster_size;
    pool->cluster_shift = (unsigned)__builtin_ctz(m->sb.cluster_size);
    pool->n_clusters = m->sb.n_clusters;
    pool->data_offset = m->sb.data_offset;
    pool->cstate = calloc(pool->n_clusters, 1);
    pool->dirty = calloc(m->n_pages, 1);
    if (pool->cstate == NULL || pool->dirty == NULL) {
        pool_free(pool);
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    for (uint32_t c = 0; c < pool->n_clusters; c++) {
        pool->cstate[c] = m->ct[c].owner != 0 ? POOL_CL_USED : POOL_CL_FREE;
        pool->nfree += m->ct[c].owner == 0;
    }
    /* The next commit reuses the seq of a commit cut short: rewrite those slots in it. */
    for (uint32_t p = 0; p < m->n_pages; p++) {
        if (m->page_uncommitted[p]) {
            pool_dirty_page(pool, p);
        }
    }
    rc = pool_vols_build(pool, err);
    if (rc < 0) {
        pool_free(pool);
        return rc;
    }
    *out = pool;
    return 0;
}

static bool
pool_name_taken_locked(const char *name)
{
    for (struct ioc_pool *p = g_pools; p != NULL; p = p->next) {
        if (strcmp(p->name, name) == 0) {
            return true;
        }
    }
    return false;
}

static void
pool_registry_remove(struct ioc_pool *pool)
{
    pthread_mutex_lock(&g_pools_lock);
    for (struct ioc_pool **pp = &g_pools; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == pool) {
            *pp = pool->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_pools_lock);
}

/* Add to the registry and register every volume's bdev; on failure nothing stays. */
static int
pool_publish(struct ioc_pool *pool, struct ioc_err *err)
{
    int rc = 0;

    pthread_mutex_lock(&g_pools_lock);
    if (pool_name_taken_locked(pool->name)) {
        pthread_mutex_unlock(&g_pools_lock);
        return ioc_err_set(err, -EEXIST, "name: a pool named '%s' is already imported",
                           pool->name);
    }
    pool->next = g_pools;
    g_pools = pool;
    pthread_mutex_unlock(&g_pools_lock);
    for (uint32_t i = 0; rc == 0 && i < IOC_POOL_MAX_VOLUMES; i++) {
        if (pool->vols[i] != NULL) {
            rc = pool_vbdev_register(pool, pool->vols[i], err);
        }
    }
    if (rc < 0) {
        pool_vbdevs_unregister(pool, NULL);
        pool_registry_remove(pool);
    }
    return rc;
}

struct ioc_pool *
ioc_pool_find(const char *name)
{
    struct ioc_pool *found = NULL;

    pthread_mutex_lock(&g_pools_lock);
    for (struct ioc_pool *p = g_pools; p != NULL; p = p->next) {
        if (strcmp(p->name, name) == 0) {
            found = p;
            break;
        }
    }
    pthread_mutex_unlock(&g_pools_lock);
    return found;
}

struct ioc_pool *
pool_registry_next(struct ioc_pool *prev)
{
    struct ioc_pool *p;

    pthread_mutex_lock(&g_pools_lock);
    p = prev == NULL ? g_pools : prev->next;
    pthread_mutex_unlock(&g_pools_lock);
    return p;
}

struct ioc_pool *
pool_find_by_base(const char *bdev)
{
    struct ioc_pool *found = NULL;

    pthread_mutex_lock(&g_pools_lock);
    for (struct ioc_pool *p = g_pools; p != NULL; p = p->next) {
        if (strcmp(ioc_bdev_name(p->base), bdev) == 0) {
            found = p;
            break;
        }
    }
    pthread_mutex_unlock(&g_pools_lock);
    return found;
}

struct ioc_reactor *
ioc_pool_home(const struct ioc_pool *pool)
{
    return pool->home;
}

const char *
ioc_pool_base_name(const struct ioc_pool *pool)
{
    return ioc_bdev_name(pool->base);
}

void
ioc_pool_set_base_owned(struct ioc_pool *pool, bool owned)
{
    pool->base_owned = owned;
}

/* ---- create and import: one chain, chunked IO over the metadata region ---- */

struct pool_load_ctx {
    bool create;
    struct ioc_bdev *base;
    struct ioc_pool_meta *meta;
    char name[IOC_POOL_NAME_MAX];
    bool has_name;
    struct ioc_pool_sb sb;
    uint8_t *buf;
    uint64_t off, len;
    struct ioc_err *err;
    ioc_pool_cb cb;
    void *cb_arg;
};

static void
load_finish(struct pool_load_ctx *ctx, int rc)
{
    struct ioc_pool *pool = NULL;

    if (rc == 0) {
        rc = pool_build(&ctx->base, &ctx->meta, ctx->has_name ? ctx->name : NULL, &pool,
                        ctx->err);
    }
    if (rc == 0) {
        rc = pool_publish(pool, ctx->err);
        if (rc < 0) {
            pool_free(pool);
        } else {
            IOC_NOTICE("pool", "pool %s: %s on %s (%u clusters of %u bytes, %u free)",
                       pool->name, ctx->create ? "created" : "imported",
                       ioc_bdev_name(pool->base), pool->n_clusters, pool->cluster_size,
                       pool->nfree);
        }
    } else {
        ioc_err_set(ctx->err, rc, "pool IO failed: %s", strerror(-rc));
    }
    ioc_pool_meta_free(ctx->meta);
    ioc_bdev_put(&ctx->base);
    free(ctx->buf);
    ctx->cb(ctx->cb_arg, rc);
    free(ctx);
}

static void load_chunk_step(struct pool_load_ctx *ctx);

static void
load_chunk_done(struct ioc_bdev_io *io, void *arg)
{
    struct pool_load_ctx *ctx = arg;
    int rc = io->status;

    ctx->off += io->length;
    ioc_bdev_io_free(io);
    if (rc < 0) {
        load_finish(ctx, rc);
        return;
    }
    load_chunk_step(ctx);
}

/* Create: fill the chunk with the page images of a fresh pool (slot 0), zeroes elsewhere. */
static void
load_fill_chunk(struct pool_load_ctx *ctx, uint8_t *dst, uint64_t off, uint64_t n)
{
    for (uint64_t pos = off; pos < off + n; pos += IOC_POOL_PAGE_SIZE, dst += IOC_POOL_PAGE_SIZE) {
        uint64_t idx = (pos - IOC_POOL_META_OFFSET) / IOC_POOL_PAGE_SIZE;
        if (pos < IOC_POOL_META_OFFSET || idx % 2 == 1) {
            memset(dst, 0, IOC_POOL_PAGE_SIZE);
        } else {
            ioc_pool_meta_page_build(ctx->meta, (uint32_t)(idx / 2), 1, dst);
        }
    }
}

static void
load_decode(struct pool_load_ctx *ctx)
{
    int rc = ioc_pool_meta_decode(&ctx->sb, ctx->buf, ctx->len, false, NULL, NULL, &ctx->meta,
                                  ctx->err);

    load_finish(ctx, rc); /* on failure err already names the structure (first error wins) */
}

static void load_create_sb(struct pool_load_ctx *ctx, int stage);

static void
load_chunk_step(struct pool_load_ctx *ctx)
{
    uint64_t n = IOC_MIN(ctx->len - ctx->off, (uint64_t)POOL_IO_CHUNK);
    uint8_t *dst = ctx->buf + (ctx->create ? 0 : ctx->off);
    int rc;

    if (n == 0) {
        if (ctx->create) {
            load_create_sb(ctx, 0);
        } else {
            load_decode(ctx);
        }
        return;
    }
    if (ctx->create) {
        load_fill_chunk(ctx, dst, ctx->off, n);
    }
    rc = base_io(ctx->base, ctx->create ? IOC_IO_WRITE : IOC_IO_READ, ctx->off, n, dst,
                 load_chunk_done, ctx);
    if (rc < 0) {
        load_finish(ctx, rc);
    }
}

/* Create, after the pages: flush (stage 0), superblock slot 1 (stage 1), flush (stage 2). */
static void
load_create_sb_done(struct ioc_bdev_io *io, void *arg)
{
    struct pool_load_ctx *ctx = arg;
    int rc = io->status;
    int stage = io->type == IOC_IO_WRITE ? 2 : (ctx->off == 0 ? 3 : 1);

    ioc_bdev_io_free(io);
    if (rc < 0) {
        load_finish(ctx, rc);
        return;
    }
    if (stage == 3) {
        load_finish(ctx, 0);
        return;
    }
    load_create_sb(ctx, stage);
}

static void
load_create_sb(struct pool_load_ctx *ctx, int stage)
{
    int rc;

    if (stage == 1) {
        ioc_pool_meta_sb_build(ctx->meta, ctx->buf);
        rc = base_io(ctx->base, IOC_IO_WRITE, IOC_POOL_PAGE_SIZE, IOC_POOL_PAGE_SIZE, ctx->buf,
                     load_create_sb_done, ctx);
    } else {
        ctx->off = stage == 2 ? 0 : ctx->off; /* off 0 marks the final flush */
        rc = base_io(ctx->base, IOC_IO_FLUSH, 0, 0, NULL, load_create_sb_done, ctx);
    }
    if (rc < 0) {
        load_finish(ctx, rc);
    }
}

static void
import_sb_done(struct ioc_bdev_io *io, void *arg)
{
    struct pool_load_ctx *ctx = arg;
    int rc = io->status;

    ioc_bdev_io_free(io);
    if (rc == 0) {
        rc = ioc_pool_sb_pick(ctx->buf, ioc_bdev_size(ctx->base), &ctx->sb, ctx->err);
    }
    if (rc == 0 && !ctx->has_name) {
        snprintf(ctx->name, sizeof(ctx->name), "%s", ctx->sb.name);
    }
    if (rc == 0 && ioc_pool_find(ctx->name) != NULL) {
        rc = ioc_err_set(ctx->err, -EEXIST, "name: a pool named '%s' is already imported",
                         ctx->name);
    }
    if (rc == 0) {
        free(ctx->buf);
        ctx->len = ioc_pool_meta_region_size(&ctx->sb);
        ctx->buf = aligned_alloc(4096, ctx->len);
        ctx->off = 0;
        rc = ctx->buf != NULL ? 0 : -ENOMEM;
    }
    if (rc < 0) {
        load_finish(ctx, rc);
        return;
    }
    ctx->has_name = true;
    load_chunk_step(ctx);
}

static struct pool_load_ctx *
load_ctx_new(const char *bdev, const char *name, struct ioc_err *err, ioc_pool_cb cb,
             void *cb_arg, int *rc)
{
    struct pool_load_ctx *ctx = calloc(1, sizeof(*ctx));

    *rc = 0;
    if (ctx == NULL) {
        *rc = ioc_err_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    ctx->err = err;
    ctx->cb = cb;
    ctx->cb_arg = cb_arg;
    if (name != NULL) {
        *rc = ioc_pool_name_check("name", name, err);
        snprintf(ctx->name, sizeof(ctx->name), "%s", name);
        ctx->has_name = true;
    }
    if (*rc == 0 && name != NULL && ioc_pool_find(name) != NULL) {
        *rc = ioc_err_set(err, -EEXIST, "name: a pool named '%s' is already imported", name);
    }
    if (*rc == 0) {
        ctx->base = ioc_bdev_get_by_name(bdev);
        if (ctx->base == NULL) {
            *rc = ioc_err_set(err, -ENOENT, "bdev: no bdev named '%s'", bdev);
        }
    }
    if (*rc < 0) {
        ioc_bdev_put(&ctx->base);
        free(ctx);
        return NULL;
    }
    return ctx;
}

int
ioc_pool_import(const char *bdev, const char *name, struct ioc_err *err, ioc_pool_cb cb,
                void *cb_arg)
{
    struct pool_load_ctx *ctx;
    int rc;

    ctx = load_ctx_new(bdev, name, err, cb, cb_arg, &rc);
    if (ctx == NULL) {
        return rc;
    }
    ctx->buf = aligned_alloc(4096, IOC_POOL_META_OFFSET);
    if (ctx->buf == NULL || ioc_bdev_size(ctx->base) < IOC_POOL_META_OFFSET) {
        rc = ctx->buf == NULL ? ioc_err_set(err, -ENOMEM, "out of memory")
                              : ioc_err_set(err, -EINVAL, "bdev: '%s' is too small to hold a pool",
                                            bdev);
    } else {
        rc = base_io(ctx->base, IOC_IO_READ, 0, IOC_POOL_META_OFFSET, ctx->buf, import_sb_done,
                     ctx);
    }
    if (rc < 0) {
        free(ctx->buf);
        ioc_bdev_put(&ctx->base);
        free(ctx);
    }
    return rc;
}

int
ioc_pool_create(const struct ioc_pool_create_opts *opts, struct ioc_err *err, ioc_pool_cb cb,
                void *cb_arg)
{
    uint32_t cs = opts->cluster_size != 0 ? opts->cluster_size : IOC_POOL_CLUSTER_DEFAULT;
    struct pool_load_ctx *ctx;
    uint64_t size;
    int rc;

    if (opts->name == NULL) {
        return ioc_err_set(err, -EINVAL, "name: required");
    }
    ctx = load_ctx_new(opts->bdev, opts->name, err, cb, cb_arg, &rc);
    if (ctx == NULL) {
        return rc;
    }
    ctx->create = true;
    size = opts->size != 0 ? opts->size : ioc_bdev_size(ctx->base);
    if (size > ioc_bdev_size(ctx->base)) {
        rc = ioc_err_set(err, -EINVAL, "size: bdev '%s' has only %llu bytes", opts->bdev,
                         (unsigned long long)ioc_bdev_size(ctx->base));
    }
    if (rc == 0) {
        rc = ioc_pool_meta_format(opts->name, size, cs, &ctx->meta, err);
    }
    if (rc == 0) {
        ctx->len = ioc_pool_meta_region_size(&ctx->meta->sb);
        ctx->buf = aligned_alloc(4096, POOL_IO_CHUNK);
        rc = ctx->buf != NULL ? 0 : ioc_err_set(err, -ENOMEM, "out of memory");
    }
    if (rc == 0) {
        size = IOC_MIN(ctx->len, (uint64_t)POOL_IO_CHUNK);
        load_fill_chunk(ctx, ctx->buf, 0, size);
        rc = base_io(ctx->base, IOC_IO_WRITE, 0, size, ctx->buf, load_chunk_done, ctx);
    }
    if (rc < 0) {
        ioc_pool_meta_free(ctx->meta);
        free(ctx->buf);
        ioc_bdev_put(&ctx->base);
        free(ctx);
    }
    return rc;
}

/* ---- export ---- */

struct pool_export_ctx {
    struct pool_commit_waiter w;
    struct ioc_pool *pool;
    bool destroy;
    int commit_rc;
    uint8_t *zero;
    struct ioc_err *err;
    ioc_pool_cb cb;
    void *cb_arg;
};

static void
export_finish(struct pool_export_ctx *ctx, int rc)
{
    struct ioc_pool *pool = ctx->pool;
    char base_name[128];
    bool owned = pool->base_owned;

    if (rc < 0) {
        IOC_WARN("pool", "pool %s: final commit failed (%s); exporting anyway", pool->name,
                 strerror(-rc));
    }
    snprintf(base_name, sizeof(base_name), "%s", ioc_bdev_name(pool->base));
    IOC_NOTICE("pool", "pool %s: %s", pool->name, ctx->destroy ? "destroyed" : "exported");
    pool_registry_remove(pool);
    pool_free(pool);
    if (owned) {
        ioc_bdev_delete(base_name, NULL);
    }
    free(ctx->zero);
    ctx->cb(ctx->cb_arg, 0);
    free(ctx);
}

static void
export_wipe_done(struct ioc_bdev_io *io, void *arg)
{
    struct pool_export_ctx *ctx = arg;
    int rc = io->status;
    bool was_write = io->type == IOC_IO_WRITE;

    ioc_bdev_io_free(io);
    if (rc == 0 && was_write) {
        rc = pool_base_io(ctx->pool, IOC_IO_FLUSH, 0, 0, NULL, export_wipe_done, ctx);
        if (rc == 0) {
            return;
        }
    }
    export_finish(ctx, rc);
}

static void
export_after_commit(struct pool_export_ctx *ctx, int rc)
{
    if (rc == 0 && ctx->destroy) {
        ctx->zero = aligned_alloc(4096, IOC_POOL_META_OFFSET);
        rc = ctx->zero != NULL ? 0 : -ENOMEM;
        if (rc == 0) {
            memset(ctx->zero, 0, IOC_POOL_META_OFFSET);
            rc = pool_base_io(ctx->pool, IOC_IO_WRITE, 0, IOC_POOL_META_OFFSET, ctx->zero,
                              export_wipe_done, ctx);
        }
        if (rc == 0) {
            return;
        }
    }
    export_finish(ctx, rc);
}

static void
export_after_commit_msg(void *arg)
{
    struct pool_export_ctx *ctx = arg;

    if (ctx->pool->draining != NULL) {
        /* A drain timer still refers to the pool; closing makes it end at its next check. */
        if (ioc_timer_start(ctx->pool->home, 10, export_after_commit_msg, ctx) != NULL ||
            ioc_reactor_send_msg(ctx->pool->home, export_after_commit_msg, ctx) == 0) {
            return;
        }
    }

    export_after_commit(ctx, ctx->commit_rc);
}

/* The pool is freed at the end: continue from a message, outside the commit's callback loop. */
static void
export_commit_done(struct pool_commit_waiter *w, int rc)
{
    struct pool_export_ctx *ctx = ioc_container_of(w, struct pool_export_ctx, w);

    ctx->commit_rc = rc;
    if (ioc_reactor_send_msg(ioc_reactor_self(), export_after_commit_msg, ctx) < 0) {
        IOC_ERR("pool", "pool %s: out of memory finishing the export; retrying", ctx->pool->name);
        ctx->pool->closing = true;
        pool_commit(ctx->pool, &ctx->w);
    }
}

int
ioc_pool_export(struct ioc_pool *pool, bool destroy, struct ioc_err *err, ioc_pool_cb cb,
                void *cb_arg)
{
    struct pool_export_ctx *ctx;
    int rc;

    if (pool->closing) {
        return ioc_err_set(err, -EBUSY, "pool '%s' is already being exported", pool->name);
    }
    if (pool->quiescing > 0) {
        return ioc_err_set(err, -EBUSY, "pool '%s' has a snapshot under way", pool->name);
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    rc = pool_vbdevs_unregister(pool, err);
    if (rc < 0) {
        free(ctx);
        return rc;
    }
    pool->closing = true;
    ctx->pool = pool;
    ctx->destroy = destroy;
    ctx->err = err;
    ctx->cb = cb;
    ctx->cb_arg = cb_arg;
    ctx->w.cb = export_commit_done;
    pool_commit(pool, &ctx->w);
    return 0;
}

/* ---- bridges for non-reactor threads ---- */

struct pool_sync {
    pool_sync_fn fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
};

static void
pool_sync_done(void *arg, int rc)
{
    struct pool_sync *s = arg;

    pthread_mutex_lock(&s->mu);
    s->rc = rc;
    s->done = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void
pool_sync_start(void *arg)
{
    struct pool_sync *s = arg;
    int rc = s->fn(s->arg, pool_sync_done, s);

    if (rc < 0) {
        pool_sync_done(s, rc);
    }
}

int
pool_sync(struct ioc_reactor *r, pool_sync_fn fn, void *arg)
{
    struct pool_sync s = {.fn = fn, .arg = arg};
    int rc;

    if (r == NULL) {
        return -ENODEV;
    }
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    rc = ioc_reactor_send_msg(r, pool_sync_start, &s);
    pthread_mutex_lock(&s.mu);
    while (rc == 0 && !s.done) {
        pthread_cond_wait(&s.cv, &s.mu);
    }
    pthread_mutex_unlock(&s.mu);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    return rc < 0 ? rc : s.rc;
}

struct ioc_reactor *
pool_default_reactor(void)
{
    return ioc_reactor_count() > 0 ? ioc_reactor_get(0) : NULL;
}

/* Read the superblock of a pool file directly (control thread) to learn its name. */
static int
pool_path_name(const char *path, char *name, size_t len, struct ioc_err *err)
{
    uint8_t *buf IOC_CLEANUP_FREE = malloc(IOC_POOL_META_OFFSET);
    struct ioc_pool_sb sb;
    FILE *f;
    size_t n;
    int rc;

    if (buf == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        return ioc_err_set(err, -errno, "path: cannot open '%s': %s", path, strerror(errno));
    }
    n = fread(buf, 1, IOC_POOL_META_OFFSET, f);
    fseek(f, 0, SEEK_END);
    rc = n == IOC_POOL_META_OFFSET
             ? ioc_pool_sb_pick(buf, (uint64_t)ftell(f), &sb, err)
             : ioc_err_set(err, -EINVAL, "path: '%s' is too small to hold a pool", path);
    fclose(f);
    if (rc == 0) {
        snprintf(name, len, "%s", sb.name);
    }
    return rc;
}

struct pool_import_args {
    const char *bdev;
    const char *name;
    struct ioc_err *err;
};

static int
pool_import_on_home(void *arg, ioc_pool_cb cb, void *cb_arg)
{
    struct pool_import_args *a = arg;

    return ioc_pool_import(a->bdev, a->name, a->err, cb, cb_arg);
}

int
ioc_pool_import_path_sync(const char *path, const char *name, char *name_out, size_t len,
                          struct ioc_err *err)
{
    char pname[IOC_POOL_NAME_MAX], bname[IOC_POOL_NAME_MAX + 8];
    struct ioc_bdev_file_opts fo = {.path = path};
    struct pool_import_args a = {.bdev = bname, .err = err};
    struct ioc_pool *pool;
    int rc;

    rc = name != NULL ? ioc_pool_name_check("name", name, err)
                      : pool_path_name(path, pname, sizeof(pname), err);
    if (rc < 0) {
        return rc;
    }
    a.name = name;
    snprintf(bname, sizeof(bname), "%s.dev", name != NULL ? name : pname);
    fo.name = bname;
    rc = ioc_bdev_file_create(&fo, err);
    if (rc < 0) {
        return rc;
    }
    rc = pool_sync(pool_default_reactor(), pool_import_on_home, &a);
    pool = rc == 0 ? ioc_pool_find(name != NULL ? name : pname) : NULL;
    if (pool != NULL) {
        ioc_pool_set_base_owned(pool, true);
        snprintf(name_out, len, "%s", pool->name);
    }
    if (rc < 0) {
        ioc_bdev_delete(bname, NULL);
    }
    return rc;
}

struct pool_commit_sync {
    struct pool_commit_waiter w;
    ioc_pool_cb cb;
    void *cb_arg;
};

static void
pool_commit_sync_done(struct pool_commit_waiter *w, int rc)
{
    struct pool_commit_sync *c = ioc_container_of(w, struct pool_commit_sync, w);

    c->cb(c->cb_arg, rc);
    free(c);
}

static int
pool_commit_on_home(void *arg, ioc_pool_cb cb, void *cb_arg)
{
    struct pool_commit_sync *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return -ENOMEM;
    }
    c->w.cb = pool_commit_sync_done;
    c->cb = cb;
    c->cb_arg = cb_arg;
    pool_commit(arg, &c->w);
    return 0;
}

static int
pool_export_on_home(void *arg, ioc_pool_cb cb, void *cb_arg)
{
    return ioc_pool_export(arg, false, NULL, cb, cb_arg);
}

void
ioc_pool_export_all_sync(void)
{
    for (;;) {
        struct ioc_pool *pool;
        pthread_mutex_lock(&g_pools_lock);
        pool = g_pools;
        pthread_mutex_unlock(&g_pools_lock);
        if (pool == NULL) {
            return;
        }
        if (pool_sync(pool->home, pool_export_on_home, pool) < 0) {
            /* Still in use (a connection): commit what we have and leave it to process exit. */
            pool_sync(pool->home, pool_commit_on_home, pool);
            IOC_WARN("pool", "pool %s: still in use at shutdown; committed, not exported",
                     pool->name);
            pool_registry_remove(pool);
        }
    }
}
