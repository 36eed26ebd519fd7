/*
 * nexus/nexus.c - the nexus bdev: creation, destruction, listing, and the
 * bridges from control threads to the owner reactor.
 *
 * What: a nexus is a bdev that keeps N children identical. Writes, zeroes,
 * unmaps and flushes go to every child that takes writes; reads to one
 * online child, round robin (nexus_io.c). A child that fails an IO is
 * faulted and recorded (nexus_persist.c) before any later write is
 * acknowledged; while it is away its dirty log (nexus_dirty.c) grows; when
 * it comes back (or a new child is added) it is rebuilt from an online child
 * while IO continues (nexus_rebuild.c). Child states: nexus_child.c.
 *
 * How: all nexus state belongs to one owner reactor, so the data path takes
 * no lock; IO submitted elsewhere is forwarded by message. Control calls
 * (RPC thread) run their reactor part with ioc_reactor_call_sync(); opening
 * remote children (a blocking connect) happens on the calling thread first.
 *
 * Nexus states: ONLINE (all children online) -> DEGRADED (some) ->
 * FAULTED (none; final: IO fails with EIO; recovery is a new nexus created
 * from a replica that holds every acknowledged write, see docs/nexus.md).
 *
 * Not done here: moving a nexus between nodes (the control plane does it,
 * bumping the generation), per-reactor channels (one owner is simpler and a
 * replicated write costs network round trips that dwarf a message hop).
 * Rejected: a lock around the child table so IO runs on every reactor; the
 * rebuild's range lock and the fault path would need it too, and ordering
 * a fault against in-flight writes under a lock is where mirrors get subtle.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "nexus/nexus_internal.h"

/* The list of nexuses and the state dir: control path only, under g_lock. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ioc_nexus *g_nexus_list;
static char g_state_dir[4096];

static const struct ioc_bdev_ops nexus_ops;

static const char *const g_state_names[] = {
    [NEXUS_ONLINE] = "online",
    [NEXUS_DEGRADED] = "degraded",
    [NEXUS_FAULTED] = "faulted",
};

const char *
nexus_state_name(enum nexus_state s)
{
    return g_state_names[s];
}

void
ioc_nexus_set_state_dir(const char *dir)
{
    pthread_mutex_lock(&g_lock);
    snprintf(g_state_dir, sizeof(g_state_dir), "%s", dir != NULL ? dir : "");
    pthread_mutex_unlock(&g_lock);
}

/* Run fn on the owner: inline when we are it (unit tests) or reactors are gone. */
int
nexus_run_sync(struct ioc_nexus *nx, void (*fn)(void *arg), void *arg)
{
    if (ioc_reactor_self() == nx->reactor || nx->reactor_gone || ioc_reactor_count() == 0) {
        fn(arg);
        return 0;
    }
    return ioc_reactor_call_sync(nx->reactor, fn, arg);
}

/* ---- state ---- */

unsigned
nexus_online_count(const struct ioc_nexus *nx)
{
    unsigned n = 0;

    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        if (nx->children[i] != NULL && nx->children[i]->state == NEXUS_CHILD_ONLINE) {
            n++;
        }
    }
    return n;
}

void
nexus_update_state(struct ioc_nexus *nx)
{
    unsigned online = nexus_online_count(nx), total = 0;
    enum nexus_state s;

    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        total += nx->children[i] != NULL && nx->children[i]->state != NEXUS_CHILD_REMOVING;
    }
    if (nx->state == NEXUS_FAULTED || online == 0) {
        s = NEXUS_FAULTED;
    } else {
        s = online == total ? NEXUS_ONLINE : NEXUS_DEGRADED;
    }
    if (s != nx->state) {
        if (s == NEXUS_FAULTED) {
            IOC_ERR("nexus", "nexus %s: no online child left: faulted, IO fails with EIO",
                    nx->bdev.name);
        } else {
            IOC_NOTICE("nexus", "nexus %s: %s -> %s", nx->bdev.name, nexus_state_name(nx->state),
                       nexus_state_name(s));
        }
        nx->state = s;
    }
}

/* A change the record must hold before the next write is acknowledged. */
void
nexus_membership_changed(struct ioc_nexus *nx)
{
    nexus_update_state(nx);
    nx->version++;
    nexus_persist_request(nx);
}

/* ---- bdev ops ---- */

static bool
nexus_supports(struct ioc_bdev *bdev, enum ioc_io_type type)
{
    struct ioc_nexus *nx = bdev->ctx;

    return nx->supports[type];
}

static void
nexus_stop_msg(void *arg)
{
    struct ioc_nexus *nx = arg;

    nx->stopping = true;
    nexus_quiesce_stop(nx); /* held writes go on (and fail: the nexus is stopping) */
    ioc_poller_unregister(&nx->poller);
    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        if (nx->children[i] != NULL) {
            nexus_rebuild_stop(nx->children[i], -ESHUTDOWN);
        }
    }
}

struct nexus_idle_ctx {
    struct ioc_nexus *nx;
    bool idle;
};

static void
nexus_idle_msg(void *arg)
{
    struct nexus_idle_ctx *ctx = arg;

    ctx->idle = true;
    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        struct nexus_child *c = ctx->nx->children[i];
        if (c != NULL && (c->inflight > 0 || c->rebuild != NULL || c->probing)) {
            ctx->idle = false;
        }
    }
}

/* Wait (bounded) until no child IO, probe or rebuild of nx is in flight. */
static void
nexus_wait_idle(struct ioc_nexus *nx)
{
    struct nexus_idle_ctx ctx = {nx, false};

    if (nx->reactor_gone) {
        return; /* nothing completes any more; child bdevs are torn down the same way */
    }
    for (int i = 0; i < 30000; i++) {
        nexus_run_sync(nx, nexus_idle_msg, &ctx);
        if (ctx.idle) {
            return;
        }
        if (ioc_reactor_self() == nx->reactor) {
            ioc_reactor_poll_once(nx->reactor);
        } else {
            usleep(1000);
        }
    }
    IOC_ERR("nexus", "nexus %s: child IO still in flight after 30 s; freeing anyway",
            nx->bdev.name);
}

/* Daemon shutdown: the owner reactor stops before the bdevs are deleted. */
static void
nexus_reactor_stop_hook(struct ioc_reactor *r)
{
    pthread_mutex_lock(&g_lock);
    for (struct ioc_nexus *nx = g_nexus_list; nx != NULL; nx = nx->list_next) {
        if (nx->reactor == r) {
            nexus_stop_msg(nx);
            nx->reactor_gone = true;
        }
    }
    pthread_mutex_unlock(&g_lock);
}

__attribute__((constructor)) static void
nexus_register_stop_hook(void)
{
    ioc_reactors_on_stop(nexus_reactor_stop_hook);
}

static void
nexus_list_remove(struct ioc_nexus *nx)
{
    pthread_mutex_lock(&g_lock);
    for (struct ioc_nexus **pp = &g_nexus_list; *pp != NULL; pp = &(*pp)->list_next) {
        if (*pp == nx) {
            *pp = nx->list_next;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
}

/* Frees a nexus at any stage of construction. Non-reactor thread or the owner in tests. */
static void
nexus_free(struct ioc_nexus *nx)
{
    if (nx->reactor != NULL) {
        nexus_run_sync(nx, nexus_stop_msg, nx);
        nexus_wait_idle(nx);
    }
    nexus_persist_stop(nx, nx->purge);
    free(nx->unflushed);
    free(nx->flushing);
    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        if (nx->children[i] != NULL) {
            nexus_child_close(nx->children[i]);
            nx->children[i] = NULL;
        }
    }
    free(nx);
}

static void
nexus_destruct(struct ioc_bdev *bdev)
{
    struct ioc_nexus *nx = bdev->ctx;

    nexus_list_remove(nx);
    IOC_INFO("nexus", "nexus %s: destroyed", bdev->name);
    nexus_free(nx);
}

static void
nexus_dump_json(struct ioc_bdev *bdev, json_t *obj)
{
    struct ioc_nexus *nx = bdev->ctx;

    json_object_set_new(obj, "generation", json_integer((json_int_t)nx->generation));
}

static const struct ioc_bdev_ops nexus_ops = {
    .submit = nexus_io_submit,
    .supports = nexus_supports,
    .destruct = nexus_destruct,
    .dump_json = nexus_dump_json,
};

/* ---- create ---- */

/* Length of uri without a trailing "@gen=N" (the same replica in another generation). */
static size_t
uri_replica_len(const char *uri)
{
    const char *at = strstr(uri, "@gen=");

    return at != NULL && strspn(at + 5, "0123456789") == strlen(at + 5) ? (size_t)(at - uri)
                                                                          : strlen(uri);
}

/* The record's entry for uri: the same string, or the same replica of an older generation. */
static const struct nexus_saved_child *
saved_find(const struct nexus_saved *s, const char *uri)
{
    size_t n = uri_replica_len(uri);

    for (unsigned i = 0; i < s->nr_children; i++) {
        if (strcmp(s->children[i].uri, uri) == 0) {
            return &s->children[i];
        }
    }
    for (unsigned i = 0; i < s->nr_children; i++) {
        if (uri_replica_len(s->children[i].uri) == n && strncmp(s->children[i].uri, uri, n) == 0) {
            return &s->children[i];
        }
    }
    return NULL;
}

/*
 * Initial state of a child: a new nexus trusts its children to be equal
 * (the creator's promise: new, empty replicas); a recorded nexus trusts its
 * record; a child the record does not know needs a full rebuild.
 */
static int
nexus_child_initial(struct ioc_nexus *nx, struct nexus_child *c, const struct nexus_saved *s)
{
    const struct nexus_saved_child *sc = saved_find(s, c->uri);
    bool in_sync = s->nr_children == 0 || (sc != NULL && strcmp(sc->state, "online") == 0);

    c->dirty = nexus_dirty_alloc(nx->nseg, !in_sync && (sc == NULL || sc->dirty == NULL));
    if (c->dirty == NULL) {
        return -ENOMEM;
    }
    if (in_sync) {
        c->state = c->bdev != NULL ? NEXUS_CHILD_ONLINE : NEXUS_CHILD_FAULTED;
    } else {
        c->state = c->bdev != NULL ? NEXUS_CHILD_OUT_OF_SYNC : NEXUS_CHILD_FAULTED;
        if (sc != NULL && sc->dirty != NULL) {
            memcpy(c->dirty, sc->dirty, (nx->nseg + 63) / 64 * sizeof(uint64_t));
        }
    }
    return 0;
}

static int
nexus_size_children(struct ioc_nexus *nx, uint64_t size, struct ioc_err *err)
{
    uint64_t min = UINT64_MAX;
    uint32_t bs = 0, align = 1;
    bool fast_zero = true;

    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        struct nexus_child *c = nx->children[i];
        if (c == NULL || c->bdev == NULL) {
            continue;
        }
        min = IOC_MIN(min, ioc_bdev_size(c->bdev));
        if (bs != 0 && ioc_bdev_block_size(c->bdev) != bs) {
            return ioc_err_set(err, -EINVAL, "children: %s has block size %u, others %u",
                               c->uri, ioc_bdev_block_size(c->bdev), bs);
        }
        bs = ioc_bdev_block_size(c->bdev);
        align = IOC_MAX(align, ioc_bdev_buf_align(c->bdev));
        fast_zero = fast_zero && ioc_bdev_fast_zero(c->bdev);
        for (int t = IOC_IO_UNMAP; t <= IOC_IO_BLOCK_STATUS; t++) {
            nx->supports[t] = nx->supports[t] && ioc_bdev_supports(c->bdev, t);
        }
    }
    if (bs == 0) {
        return ioc_err_set(err, -ENODEV, "children: none could be opened");
    }
    if (size == 0) {
        size = min;
    }
    if (size > min || size % bs != 0) {
        return ioc_err_set(err, -EINVAL,
                           "size: %llu must be a multiple of %u and fit the smallest child "
                           "(%llu bytes)",
                           (unsigned long long)size, bs, (unsigned long long)min);
    }
    nx->bdev.size = size;
    nx->bdev.block_size = bs;
    nx->bdev.buf_align = align;
    nx->bdev.fast_zero = fast_zero;
    nx->nseg = (size + nx->segment_size - 1) / nx->segment_size;
    nx->unflushed = nexus_dirty_alloc(nx->nseg, false);
    nx->flushing = nexus_dirty_alloc(nx->nseg, false);
    if (nx->unflushed == NULL || nx->flushing == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static void
nexus_start_msg(void *arg)
{
    struct ioc_nexus *nx = arg;

    nx->poller = ioc_poller_register(nx->reactor, nexus_child_poll, nx, 1000 * 1000);
    nexus_update_state(nx);
    nexus_child_maybe_rebuild(nx);
}

static int
nexus_open_children(struct ioc_nexus *nx, const struct ioc_nexus_opts *opts, struct ioc_err *err)
{
    if (opts->nr_children == 0 || opts->nr_children > IOC_NEXUS_MAX_CHILDREN) {
        return ioc_err_set(err, -EINVAL, "children: expected 1..%d, got %u",
                           IOC_NEXUS_MAX_CHILDREN, opts->nr_children);
    }
    for (unsigned i = 0; i < opts->nr_children; i++) {
        struct nexus_child *c = NULL;
        int rc;
        if (nexus_child_find(nx, opts->children[i]) != NULL) {
            return ioc_err_set(err, -EINVAL, "children: '%s' is listed twice",
                               opts->children[i]);
        }
        rc = nexus_child_open(nx, opts->children[i], &c, err);
        if (rc < 0) {
            return rc;
        }
        c->slot = i;
        nx->children[i] = c;
    }
    return 0;
}

static int
nexus_apply_record(struct ioc_nexus *nx, const struct ioc_nexus_opts *opts, const char *path,
                   struct ioc_err *err)
{
    struct nexus_saved saved;
    int rc = path != NULL ? nexus_persist_load(path, nx->nseg, &saved, err) : -ENOENT;

    if (rc == -ENOENT) {
        memset(&saved, 0, sizeof(saved));
    } else if (rc < 0) {
        return rc;
    } else if (saved.generation > opts->generation) {
        nexus_saved_free(&saved);
        return ioc_err_set(err, -ESTALE,
                           "generation: %llu is older than the recorded %llu (fenced)",
                           (unsigned long long)opts->generation,
                           (unsigned long long)saved.generation);
    } else if (saved.segment_size != nx->segment_size || saved.size != nx->bdev.size) {
        nexus_saved_free(&saved);
        return ioc_err_set(err, -EINVAL, "%s records size %llu and segment size %llu", path,
                           (unsigned long long)saved.size,
                           (unsigned long long)saved.segment_size);
    }
    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN && rc != -ENOMEM; i++) {
        if (nx->children[i] != NULL) {
            rc = nexus_child_initial(nx, nx->children[i], &saved);
        }
    }
    nexus_saved_free(&saved);
    if (rc == -ENOMEM) {
        return ioc_err_set(err, rc, "out of memory");
    }
    if (nexus_online_count(nx) == 0) {
        return ioc_err_set(err, -ENODEV,
                           "children: none is in sync and reachable; recreate the nexus from a "
                           "replica that holds every acknowledged write (docs/nexus.md)");
    }
    return 0;
}

static int
nexus_state_path(const struct ioc_nexus_opts *opts, char *buf, size_t len)
{
    if (opts->state_path != NULL) {
        snprintf(buf, len, "%s", opts->state_path);
        return 1;
    }
    pthread_mutex_lock(&g_lock);
    if (g_state_dir[0] != '\0') {
        snprintf(buf, len, "%.3900s/nexus-%.127s.json", g_state_dir, opts->name);
    }
    pthread_mutex_unlock(&g_lock);
    for (char *p = buf + (g_state_dir[0] ? strlen(g_state_dir) + 1 : 0); *p; p++) {
        if (*p == '/') {
            *p = '_';
        }
    }
    return buf[0] != '\0';
}

int
ioc_nexus_create(const struct ioc_nexus_opts *opts, struct ioc_err *err)
{
    struct ioc_nexus *nx;
    struct ioc_bdev *bdev;
    char path[4096] = "";
    bool has_path = nexus_state_path(opts, path, sizeof(path));
    uint64_t size = opts->size;
    int rc;

    rc = ioc_bdev_name_check(opts->name, err);
    if (rc < 0) {
        return rc;
    }
    bdev = ioc_bdev_get_by_name(opts->name);
    if (bdev != NULL) {
        /* Before touching the state file: it belongs to the live one. */
        ioc_bdev_put(&bdev);
        return ioc_err_set(err, -EEXIST, "name: a bdev named '%s' exists", opts->name);
    }
    nx = calloc(1, sizeof(*nx));
    if (nx == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    ioc_bdev_init(&nx->bdev, opts->name, "nexus", &nexus_ops, nx, 0, 512);
    nx->generation = opts->generation;
    nx->segment_size = opts->segment_size != 0 ? opts->segment_size : IOC_NEXUS_DEFAULT_SEGMENT;
    nx->io_timeout_s = opts->io_timeout_s != 0 ? opts->io_timeout_s : IOC_NEXUS_CHILD_TIMEOUT_S;
    nx->rebuild_rate = opts->rebuild_rate;
    nx->rebuild_verify = opts->rebuild_verify;
    nx->auto_return = !opts->no_auto_return;
    nx->reactor = opts->reactor != NULL ? opts->reactor : ioc_reactor_next();
    for (int t = 0; t < IOC_IO_TYPE_COUNT; t++) {
        nx->supports[t] = t != IOC_IO_PREFETCH;
    }
    if (nx->reactor == NULL) {
        rc = ioc_err_set(err, -ENODEV, "no reactor is running");
        goto err;
    }
    if (nx->segment_size % 4096 != 0) {
        rc = ioc_err_set(err, -EINVAL, "segment_size: must be a multiple of 4096");
        goto err;
    }
    rc = nexus_open_children(nx, opts, err);
    if (rc == 0) {
        rc = nexus_size_children(nx, size, err);
    }
    if (rc == 0) {
        rc = nexus_apply_record(nx, opts, has_path ? path : NULL, err);
    }
    if (rc == 0) {
        nexus_update_state(nx);
        rc = nexus_persist_start(nx, has_path ? path : NULL, err);
    }
    if (rc < 0) {
        goto err;
    }
    bdev = &nx->bdev;
    rc = ioc_bdev_register(bdev, err);
    if (rc < 0) {
        goto err;
    }
    pthread_mutex_lock(&g_lock);
    nx->list_next = g_nexus_list;
    g_nexus_list = nx;
    pthread_mutex_unlock(&g_lock);
    nexus_run_sync(nx, nexus_start_msg, nx);
    IOC_INFO("nexus", "nexus %s: created, %llu bytes, generation %llu, state %s", opts->name,
             (unsigned long long)nx->bdev.size, (unsigned long long)nx->generation,
             nexus_state_name(nx->state));
    ioc_bdev_put(&bdev);
    return 0;
err:
    nexus_free(nx);
    return rc;
}

/* ---- lookups and control bridges ---- */

/* A new reference to the named nexus (release with nexus_put()). */
int
nexus_get(const char *name, struct ioc_nexus **out, struct ioc_err *err)
{
    struct ioc_bdev *bdev = ioc_bdev_get_by_name(name);

    if (bdev == NULL) {
        return ioc_err_set(err, -ENOENT, "name: no nexus named '%s'", name);
    }
    if (bdev->ops != &nexus_ops) {
        ioc_bdev_put(&bdev);
        return ioc_err_set(err, -EINVAL, "name: bdev '%s' is not a nexus", name);
    }
    *out = bdev->ctx;
    return 0;
}

void
nexus_put(struct ioc_nexus *nx)
{
    struct ioc_bdev *bdev = &nx->bdev;

    ioc_bdev_put(&bdev);
}

int
ioc_nexus_destroy(const char *name, bool purge, struct ioc_err *err)
{
    struct ioc_nexus *nx = NULL;
    int rc = nexus_get(name, &nx, err);

    if (rc < 0) {
        return rc;
    }
    /* Our reference would make the delete busy: set the flag, let go, delete. */
    nx->purge = purge;
    nexus_put(nx);
    rc = ioc_bdev_delete(name, err);
    if (rc < 0 && nexus_get(name, &nx, NULL) == 0) {
        nx->purge = false;
        nexus_put(nx);
    }
    return rc;
}

struct nexus_list_ctx {
    struct ioc_nexus *nx;
    json_t *out;
};

static void
nexus_list_msg(void *arg)
{
    struct nexus_list_ctx *ctx = arg;
    struct ioc_nexus *nx = ctx->nx;
    json_t *o = json_object(), *children = json_array(), *st = json_object();

    json_object_set_new(o, "name", json_string(nx->bdev.name));
    json_object_set_new(o, "state", json_string(nexus_state_name(nx->state)));
    json_object_set_new(o, "size", json_integer((json_int_t)nx->bdev.size));
    json_object_set_new(o, "generation", json_integer((json_int_t)nx->generation));
    json_object_set_new(o, "segment_size", json_integer((json_int_t)nx->segment_size));
    json_object_set_new(o, "durable_state", json_boolean(nexus_persist_durable(nx)));
    json_object_set_new(o, "version", json_integer((json_int_t)nx->version));
    json_object_set_new(o, "persisted", json_integer((json_int_t)nx->persisted));
    json_object_set_new(o, "quiesce", nexus_quiesce_json(nx));
    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        if (nx->children[i] != NULL) {
            json_array_append_new(children, nexus_child_json(nx->children[i]));
        }
    }
    json_object_set_new(o, "children", children);
    json_object_set_new(st, "reads", json_integer((json_int_t)nx->st_reads));
    json_object_set_new(st, "writes", json_integer((json_int_t)nx->st_writes));
    json_object_set_new(st, "flushes", json_integer((json_int_t)nx->st_flushes));
    json_object_set_new(st, "errors", json_integer((json_int_t)nx->st_errors));
    json_object_set_new(st, "read_retries", json_integer((json_int_t)nx->st_read_retries));
    json_object_set_new(st, "ack_waits", json_integer((json_int_t)nx->st_ack_waits));
    json_object_set_new(st, "lock_waits", json_integer((json_int_t)nx->st_lock_waits));
    json_object_set_new(o, "stats", st);
    ctx->out = o;
}

int
ioc_nexus_list(const char *name, json_t **out, struct ioc_err *err)
{
    struct ioc_nexus *all[256];
    unsigned n = 0;
    json_t *arr = json_array();

    pthread_mutex_lock(&g_lock);
    for (struct ioc_nexus *nx = g_nexus_list; nx != NULL && n < IOC_ARRAY_SIZE(all);
         nx = nx->list_next) {
        if (name == NULL || strcmp(name, nx->bdev.name) == 0) {
            ioc_bdev_get(&nx->bdev);
            all[n++] = nx;
        }
    }
    pthread_mutex_unlock(&g_lock);
    for (unsigned i = 0; i < n; i++) {
        struct nexus_list_ctx ctx = {all[i], NULL};
        nexus_run_sync(all[i], nexus_list_msg, &ctx);
        if (ctx.out != NULL) {
            json_array_append_new(arr, ctx.out);
        }
        nexus_put(all[i]);
    }
    if (name != NULL && n == 0) {
        json_decref(arr);
        return ioc_err_set(err, -ENOENT, "name: no nexus named '%s'", name);
    }
    *out = arr;
    return 0;
}

/* ---- membership changes ---- */

enum child_op { CHILD_OP_ADD, CHILD_OP_REMOVE, CHILD_OP_FAULT, CHILD_OP_ONLINE, CHILD_OP_DETACH };

struct child_op_ctx {
    struct ioc_nexus *nx;
    enum child_op op;
    const char *uri;
    struct nexus_child *child; /* ADD: the opened child; REMOVE/DETACH: found */
    bool need_open;            /* ONLINE: the child has no bdev, open it first */
    int rc;
    struct ioc_err *err;
};

static int
child_op_add(struct child_op_ctx *ctx)
{
    struct ioc_nexus *nx = ctx->nx;
    struct nexus_child *c = ctx->child;

    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        if (nx->children[i] == NULL) {
            c->slot = i;
            c->state = NEXUS_CHILD_OUT_OF_SYNC;
            nx->children[i] = c;
            ctx->child = NULL;
            IOC_NOTICE("nexus", "nexus %s: child %s added, out of sync", nx->bdev.name, c->uri);
            nexus_membership_changed(nx);
            nexus_child_maybe_rebuild(nx);
            return 0;
        }
    }
    return ioc_err_set(ctx->err, -ENOSPC, "nexus %s already has %d children", nx->bdev.name,
                       IOC_NEXUS_MAX_CHILDREN);
}

static int
child_op_existing(struct child_op_ctx *ctx, struct nexus_child *c)
{
    struct ioc_nexus *nx = ctx->nx;
    bool last = c->state == NEXUS_CHILD_ONLINE && nexus_online_count(nx) == 1;

    switch (ctx->op) {
    case CHILD_OP_REMOVE:
    case CHILD_OP_FAULT:
        if (last) {
            return ioc_err_set(ctx->err, -EBUSY,
                               "uri: %s is the last online child of %s; add another first",
                               c->uri, nx->bdev.name);
        }
        nexus_rebuild_stop(c, -ECANCELED);
        if (ctx->op == CHILD_OP_FAULT) {
            c->admin_fault = true;
            if (nexus_child_gets_writes(c)) {
                nexus_dirty_merge(nx, c->dirty, nx->unflushed);
                nexus_dirty_merge(nx, c->dirty, nx->flushing);
            }
            if (c->state != NEXUS_CHILD_FAULTED) {
                nexus_child_set_state(c, NEXUS_CHILD_FAULTED, "faulted by request");
            }
        } else {
            nexus_child_set_state(c, NEXUS_CHILD_REMOVING, "removed by request");
        }
        nexus_membership_changed(nx);
        return 0;
    case CHILD_OP_ONLINE:
        if (c->bdev == NULL) {
            ctx->need_open = true;
            return 0;
        }
        c->admin_fault = false;
        if (c->state == NEXUS_CHILD_FAULTED) {
            nexus_child_set_state(c, NEXUS_CHILD_OUT_OF_SYNC, "online requested");
            nexus_membership_changed(nx);
        }
        nexus_child_maybe_rebuild(nx);
        return 0;
    case CHILD_OP_DETACH:
        nx->children[c->slot] = NULL;
        ctx->child = c;
        return 0;
    default:
        return -EINVAL;
    }
}

static void
child_op_msg(void *arg)
{
    struct child_op_ctx *ctx = arg;
    struct nexus_child *c;

    if (ctx->nx->state == NEXUS_FAULTED && ctx->op != CHILD_OP_DETACH) {
        ctx->rc = ioc_err_set(ctx->err, -EIO, "nexus %s is faulted; recreate it",
                              ctx->nx->bdev.name);
        return;
    }
    if (ctx->op == CHILD_OP_ADD) {
        ctx->rc = child_op_add(ctx);
        return;
    }
    c = nexus_child_find(ctx->nx, ctx->uri);
    if (c == NULL) {
        ctx->rc = ioc_err_set(ctx->err, -ENOENT, "uri: nexus %s has no child '%s'",
                              ctx->nx->bdev.name, ctx->uri);
        return;
    }
    ctx->rc = child_op_existing(ctx, c);
}

struct child_busy_ctx {
    struct ioc_nexus *nx;
    const char *uri;
    bool busy;
};

static void
child_busy_msg(void *arg)
{
    struct child_busy_ctx *b = arg;
    struct nexus_child *c = nexus_child_find(b->nx, b->uri);

    b->busy = c != NULL && (c->inflight > 0 || c->rebuild != NULL || c->probing);
}

/* Wait until a removed child has nothing in flight, then unlink and close it. */
static int
child_remove_finish(struct child_op_ctx *ctx)
{
    struct child_busy_ctx b = {ctx->nx, ctx->uri, true};

    for (int i = 0; i < 30000 && b.busy; i++) {
        nexus_run_sync(ctx->nx, child_busy_msg, &b);
        if (b.busy) {
            usleep(1000);
        }
    }
    ctx->op = CHILD_OP_DETACH;
    ctx->child = NULL;
    nexus_run_sync(ctx->nx, child_op_msg, ctx);
    if (ctx->child != NULL) {
        nexus_child_close(ctx->child);
        ctx->child = NULL;
    }
    return ctx->rc;
}

static int
nexus_child_op(const char *name, enum child_op op, const char *uri, struct ioc_err *err)
{
    struct child_op_ctx ctx = {.op = op, .uri = uri, .err = err};
    int rc = nexus_get(name, &ctx.nx, err);

    if (rc < 0) {
        return rc;
    }
    if (op == CHILD_OP_ADD) {
        rc = nexus_child_open(ctx.nx, uri, &ctx.child, err);
        if (rc == 0 && ctx.child->bdev == NULL) {
            rc = ioc_err_set(err, -ECONNREFUSED, "uri: cannot open %s", uri);
        } else if (rc == 0 && ioc_bdev_size(ctx.child->bdev) < ctx.nx->bdev.size) {
            rc = ioc_err_set(err, -EINVAL, "uri: %s is smaller than the nexus", uri);
        } else if (rc == 0 && ioc_bdev_block_size(ctx.child->bdev) != ctx.nx->bdev.block_size) {
            rc = ioc_err_set(err, -EINVAL, "uri: %s has another block size", uri);
        }
        if (rc == 0) {
            ctx.child->dirty = nexus_dirty_alloc(ctx.nx->nseg, true);
            rc = ctx.child->dirty == NULL ? ioc_err_set(err, -ENOMEM, "out of memory") : 0;
        }
    }
    if (rc == 0) {
        nexus_run_sync(ctx.nx, child_op_msg, &ctx);
        rc = ctx.rc;
    }
    if (rc == 0 && op == CHILD_OP_ONLINE && ctx.need_open) {
        rc = nexus_child_reopen(ctx.nx, uri, err);
        if (rc == 0) {
            ctx.need_open = false;
            nexus_run_sync(ctx.nx, child_op_msg, &ctx);
            rc = ctx.rc;
        }
    }
    if (rc == 0 && op == CHILD_OP_REMOVE) {
        rc = child_remove_finish(&ctx);
    }
    if (ctx.child != NULL && op == CHILD_OP_ADD) {
        nexus_child_close(ctx.child);
    }
    nexus_put(ctx.nx);
    return rc;
}

int
ioc_nexus_child_add(const char *name, const char *uri, struct ioc_err *err)
{
    return nexus_child_op(name, CHILD_OP_ADD, uri, err);
}

int
ioc_nexus_child_remove(const char *name, const char *uri, struct ioc_err *err)
{
    return nexus_child_op(name, CHILD_OP_REMOVE, uri, err);
}

int
ioc_nexus_child_fault(const char *name, const char *uri, struct ioc_err *err)
{
    return nexus_child_op(name, CHILD_OP_FAULT, uri, err);
}

int
ioc_nexus_child_online(const char *name, const char *uri, struct ioc_err *err)
{
    return nexus_child_op(name, CHILD_OP_ONLINE, uri, err);
}
