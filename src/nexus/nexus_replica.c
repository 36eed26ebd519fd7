/*
 * nexus/nexus_replica.c - fencing: a replica bdev per (volume, generation).
 *
 * What: `bdev_replica_create {name, base, generation}` stacks a thin bdev on
 * a replica's volume (usually a pool volume) that passes IO through while
 * its generation is the newest one recorded for that volume, and rejects
 * every IO with EPERM (counted) once a newer generation was created. The
 * replica's export for a nexus of generation G points at the replica bdev of
 * generation G; the export name carries it (e.g. `v@gen=7`), so the nexus
 * announces its generation by the name it connects to.
 *
 * Takeover: the control plane creates the replica bdevs of generation G+1
 * on every replica (which records G+1 as the volume attribute
 * `ioc.generation` and fences G at once), exports them and creates the new
 * nexus with generation G+1. From then on the old nexus's IO to any of
 * those replicas fails; it faults its children and then itself, so it can
 * no longer acknowledge a write. Creating a generation older than the
 * recorded one fails with ESTALE, also after a restart (the attribute is in
 * the pool's metadata; for other bases the record is in memory).
 *
 * How: replica bdevs of one base share a fence record (base name, newest
 * generation as an atomic); the data path compares two integers.
 *
 * Rejected: a per-connection NBD option carrying the generation (needs an
 * extension every client would have to speak, and IO carries no connection
 * in the bdev layer), and a generation in every write's payload (changes
 * the data).
 */
#include "ioc/common.h"

#include <errno.h>
#include <inttypes.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bdev/bdev_module.h"
#include "core/log.h"
#include "nexus/nexus.h"
#include "pool/pool.h"
#include "rpc/rpc.h"

#define REPLICA_ATTR "ioc.generation"

struct fence {
    char base[128];
    _Atomic uint64_t generation;
    unsigned refs;               /* under g_fence_lock */
    struct fence *next;
};

struct replica {
    struct ioc_bdev bdev;
    struct ioc_bdev *base;
    struct fence *fence;
    uint64_t generation;
    _Atomic uint64_t rejected;
    _Atomic uint64_t passed;
};

/* The fence records: control path only (create/destroy). */
static pthread_mutex_t g_fence_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fence *g_fences;

static const struct ioc_bdev_ops replica_ops;

/* ---- data path ---- */

static void
replica_child_done(struct ioc_bdev_io *child, void *cb_arg)
{
    struct ioc_bdev_io *io = cb_arg;

    io->nr_extents = child->nr_extents;
    ioc_bdev_io_complete(io, child->status);
    ioc_bdev_io_free(child);
}

static void
replica_submit(struct ioc_bdev_io *io)
{
    struct replica *r = io->bdev->ctx;
    struct ioc_bdev_io *child;
    int rc;

    if (r->generation < atomic_load(&r->fence->generation)) {
        atomic_fetch_add(&r->rejected, 1);
        ioc_bdev_io_complete_deferred(io, -EPERM);
        return;
    }
    atomic_fetch_add(&r->passed, 1);
    child = ioc_bdev_io_alloc(r->base);
    if (child == NULL) {
        ioc_bdev_io_complete_deferred(io, -ENOMEM);
        return;
    }
    ioc_bdev_io_prep_rw(child, io->type, io->offset, io->length, io->iov, io->iovcnt, io->flags,
                        replica_child_done, io);
    child->extents = io->extents;
    child->max_extents = io->max_extents;
    rc = ioc_bdev_io_submit(child);
    if (rc < 0) {
        ioc_bdev_io_free(child);
        ioc_bdev_io_complete_deferred(io, rc);
    }
}

static bool
replica_supports(struct ioc_bdev *bdev, enum ioc_io_type type)
{
    struct replica *r = bdev->ctx;

    return ioc_bdev_supports(r->base, type);
}

static void
fence_put(struct fence *f)
{
    pthread_mutex_lock(&g_fence_lock);
    if (--f->refs == 0) {
        for (struct fence **pp = &g_fences; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == f) {
                *pp = f->next;
                break;
            }
        }
        free(f);
    }
    pthread_mutex_unlock(&g_fence_lock);
}

static void
replica_destruct(struct ioc_bdev *bdev)
{
    struct replica *r = bdev->ctx;

    ioc_bdev_put(&r->base);
    if (r->fence != NULL) {
        fence_put(r->fence);
    }
    free(r);
}

static void
replica_dump_json(struct ioc_bdev *bdev, json_t *obj)
{
    struct replica *r = bdev->ctx;

    json_object_set_new(obj, "base", json_string(ioc_bdev_name(r->base)));
    json_object_set_new(obj, "generation", json_integer((json_int_t)r->generation));
    json_object_set_new(obj, "current_generation",
                        json_integer((json_int_t)atomic_load(&r->fence->generation)));
    json_object_set_new(obj, "fenced",
                        json_boolean(r->generation < atomic_load(&r->fence->generation)));
    json_object_set_new(obj, "rejected", json_integer((json_int_t)atomic_load(&r->rejected)));
    json_object_set_new(obj, "passed", json_integer((json_int_t)atomic_load(&r->passed)));
}

static const struct ioc_bdev_ops replica_ops = {
    .submit = replica_submit,
    .supports = replica_supports,
    .destruct = replica_destruct,
    .dump_json = replica_dump_json,
};

/* ---- the recorded generation (pool volume attribute) ---- */

struct attr_req {
    struct ioc_pool *pool;
    const char *vol;
    char value[32];
    bool set;
    int rc;
    sem_t done;
    struct ioc_err *err;
};

static void
attr_set_done(void *cb_arg, int rc)
{
    struct attr_req *req = cb_arg;

    req->rc = rc;
    sem_post(&req->done);
}

static void
attr_msg(void *arg)
{
    struct attr_req *req = arg;

    if (!req->set) {
        req->rc = ioc_pool_volume_attr_get(req->pool, req->vol, REPLICA_ATTR, req->value,
                                           sizeof(req->value), NULL);
        sem_post(&req->done);
        return;
    }
    req->rc = ioc_pool_volume_attr_set(req->pool, req->vol, REPLICA_ATTR, req->value, req->err,
                                       attr_set_done, req);
    if (req->rc < 0) {
        sem_post(&req->done);
    }
}

/*
 * Read (set false) or write the volume attribute of a pool volume base.
 * -ENODEV when base is not a pool volume (the record stays in memory).
 */
static int
replica_attr(const char *base, bool set, uint64_t *gen, struct ioc_err *err)
{
    char pool_name[128];
    const char *slash = strchr(base, '/');
    struct attr_req req = {.set = set, .err = err};
    int rc;

    if (slash == NULL || (size_t)(slash - base) >= sizeof(pool_name) ||
        ioc_reactor_self() != NULL) {
        return -ENODEV;
    }
    snprintf(pool_name, sizeof(pool_name), "%.*s", (int)(slash - base), base);
    req.pool = ioc_pool_find(pool_name);
    if (req.pool == NULL) {
        return -ENODEV;
    }
    req.vol = slash + 1;
    if (set) {
        snprintf(req.value, sizeof(req.value), "%" PRIu64, *gen);
    }
    sem_init(&req.done, 0, 0);
    rc = ioc_reactor_call_sync(ioc_pool_home(req.pool), attr_msg, &req);
    if (rc == 0) {
        sem_wait(&req.done);
        rc = req.rc;
    }
    sem_destroy(&req.done);
    if (rc == 0 && !set) {
        *gen = strtoull(req.value, NULL, 10);
    }
    return rc;
}

/* ---- create ---- */

/* The fence record of base, made on first use; a new reference. */
static struct fence *
fence_get(const char *base)
{
    struct fence *f;

    pthread_mutex_lock(&g_fence_lock);
    for (f = g_fences; f != NULL; f = f->next) {
        if (strcmp(f->base, base) == 0) {
            f->refs++;
            break;
        }
    }
    if (f == NULL && (f = calloc(1, sizeof(*f))) != NULL) {
        snprintf(f->base, sizeof(f->base), "%s", base);
        f->refs = 1;
        f->next = g_fences;
        g_fences = f;
    }
    pthread_mutex_unlock(&g_fence_lock);
    return f;
}

/* Raise the record to gen (refusing older ones) and make it durable first. */
static int
replica_fence_raise(struct fence *f, const char *base, uint64_t gen, struct ioc_err *err)
{
    uint64_t stored = 0;
    int rc = replica_attr(base, false, &stored, err);

    if (rc < 0 && rc != -ENOENT && rc != -ENODEV) {
        return ioc_err_set(err, rc, "base: cannot read %s of %s", REPLICA_ATTR, base);
    }
    if (stored > atomic_load(&f->generation)) {
        atomic_store(&f->generation, stored);
    }
    if (gen < atomic_load(&f->generation)) {
        return ioc_err_set(err, -ESTALE, "generation: %" PRIu64 " is older than %" PRIu64
                           " recorded for %s", gen, atomic_load(&f->generation), base);
    }
    if (rc != -ENODEV && gen > stored) {
        rc = replica_attr(base, true, &gen, err);
        if (rc < 0) {
            return ioc_err_set(err, rc, "base: cannot record generation on %s", base);
        }
    }
    atomic_store(&f->generation, gen); /* from here on older generations are fenced */
    return 0;
}

int
ioc_replica_create(const char *name, const char *base_name, uint64_t generation,
                   struct ioc_err *err)
{
    struct ioc_bdev *base = ioc_bdev_get_by_name(base_name);
    struct ioc_bdev *bdev;
    struct replica *r;
    int rc;

    if (base == NULL) {
        return ioc_err_set(err, -ENOENT, "base: no bdev named '%s'", base_name);
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        ioc_bdev_put(&base);
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    r->base = base;
    r->generation = generation;
    r->fence = fence_get(base_name);
    ioc_bdev_init(&r->bdev, name, "replica", &replica_ops, r, base->size, base->block_size);
    r->bdev.buf_align = base->buf_align;
    r->bdev.fast_zero = base->fast_zero;
    rc = r->fence == NULL ? ioc_err_set(err, -ENOMEM, "out of memory")
                          : replica_fence_raise(r->fence, base_name, generation, err);
    if (rc < 0) {
        replica_destruct(&r->bdev);
        return rc;
    }
    bdev = &r->bdev;
    rc = ioc_bdev_register(bdev, err);
    ioc_bdev_put(&bdev);
    if (rc == 0) {
        IOC_INFO("nexus", "replica %s: on %s, generation %" PRIu64, name, base_name, generation);
    }
    return rc;
}

static int
rpc_bdev_replica_create(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL, *base = NULL;
    uint64_t generation = 0;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
        {"base", IOC_RPC_STRING, true, &base},
        {"generation", IOC_RPC_U64, true, &generation},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc == 0) {
        rc = ioc_replica_create(name, base, generation, err);
    }
    if (rc == 0) {
        *result = json_string(name);
    }
    return rc;
}
IOC_RPC_REGISTER("bdev_replica_create", rpc_bdev_replica_create,
                 "a replica's view for one nexus generation; older ones are fenced")
