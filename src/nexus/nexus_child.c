/*
 * nexus/nexus_child.c - the children of a nexus: opening, states, faults,
 * and bringing faulted children back.
 *
 * A child is a bdev: a local one named by the caller, or an nbd client made
 * for an nbd:// URI (io_timeout 5 s by default, so a dead replica is faulted
 * within seconds, not the client's 30). The nexus names a child by the
 * string it was given.
 *
 *              create (new nexus, or recorded online)
 *                          |
 *                          v
 *     +----------------> ONLINE --------(IO error, RPC fault)----+
 *     | rebuild done                                             v
 *     |                                                       FAULTED
 *  REBUILDING <--(online source)-- OUT_OF_SYNC <--(probe ok,--- |
 *     |                                ^          RPC online)    |
 *     +--(IO error, verify mismatch)---|-------------------------+
 *                            child_add |
 *   any state --(RPC remove)--> REMOVING --(nothing in flight)--> freed
 *
 * Invariants (nexus_child_check_invariants, debug builds):
 *   ONLINE       bdev != NULL; dirty log empty; no rebuild.
 *   OUT_OF_SYNC  bdev != NULL; no rebuild; gets no IO; writes mark the log.
 *   REBUILDING   bdev != NULL; rebuild != NULL; gets every write, no read.
 *   FAULTED      no rebuild; gets no IO; writes mark the log.
 *   REMOVING     no rebuild; gets no new IO.
 *
 * A fault is a membership change: the record is written (nexus_persist.c)
 * before any later write is acknowledged. Faulted children that were not
 * faulted by request are probed every 2 s with a one-block read; when it
 * succeeds they come back out of sync and the rebuild copies their dirty
 * segments. Rejected: re-admitting on the nbd client's reconnect event (a
 * local child has no such event, and a probe proves the data path works).
 */
#include "ioc/common.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bdev/nbd_client/bdev_nbd_client.h"
#include "core/log.h"
#include "nexus/nexus_internal.h"

#define CHILD_PROBE_INTERVAL_NS (2ull * 1000 * 1000 * 1000)

static const char *const g_child_state_names[] = {
    [NEXUS_CHILD_ONLINE] = "online",
    [NEXUS_CHILD_OUT_OF_SYNC] = "out-of-sync",
    [NEXUS_CHILD_REBUILDING] = "rebuilding",
    [NEXUS_CHILD_FAULTED] = "faulted",
    [NEXUS_CHILD_REMOVING] = "removing",
};

const char *
nexus_child_state_name(enum nexus_child_state s)
{
    return g_child_state_names[s];
}

bool
nexus_child_gets_writes(const struct nexus_child *c)
{
    return c->state == NEXUS_CHILD_ONLINE || c->state == NEXUS_CHILD_REBUILDING;
}

void
nexus_child_check_invariants(const struct nexus_child *c)
{
#ifndef NDEBUG
    switch (c->state) {
    case NEXUS_CHILD_ONLINE:
        assert(c->bdev != NULL && c->rebuild == NULL);
        assert(c->dirty == NULL || nexus_dirty_count(c->dirty, c->nexus->nseg) == 0);
        break;
    case NEXUS_CHILD_OUT_OF_SYNC:
        assert(c->bdev != NULL && c->rebuild == NULL);
        break;
    case NEXUS_CHILD_REBUILDING:
        assert(c->bdev != NULL && c->rebuild != NULL);
        break;
    case NEXUS_CHILD_FAULTED:
    case NEXUS_CHILD_REMOVING:
        assert(c->rebuild == NULL);
        break;
    }
#else
    (void)c;
#endif
}

void
nexus_child_set_state(struct nexus_child *c, enum nexus_child_state s, const char *why)
{
    if (c->state == s) {
        return;
    }
    if (s == NEXUS_CHILD_FAULTED) {
        c->faults++;
        IOC_WARN("nexus", "nexus %s: child %s: %s -> faulted: %s", c->nexus->bdev.name, c->uri,
                 nexus_child_state_name(c->state), why);
    } else {
        IOC_NOTICE("nexus", "nexus %s: child %s: %s -> %s: %s", c->nexus->bdev.name, c->uri,
                   nexus_child_state_name(c->state), nexus_child_state_name(s), why);
    }
    c->state = s;
    nexus_child_check_invariants(c);
}

/*
 * A child IO failed. A write-type IO marks its segments dirty (the child may
 * hold any part of it); a child that took IO is faulted. The caller goes on
 * with the other children; the record is written before the next ack.
 */
void
nexus_child_fail(struct nexus_child *c, const struct ioc_bdev_io *io, int rc)
{
    struct ioc_nexus *nx = c->nexus;
    bool changed = false;
    char why[96];

    c->io_errors++;
    c->last_error = rc;
    if (io != NULL && (io->type == IOC_IO_WRITE || io->type == IOC_IO_WRITE_ZEROES ||
                       io->type == IOC_IO_UNMAP)) {
        changed = nexus_dirty_mark(nx, c->dirty, io->offset, io->length);
    }
    if (c->state == NEXUS_CHILD_ONLINE || c->state == NEXUS_CHILD_REBUILDING) {
        /* What it acknowledged but never flushed may be gone with it. */
        changed |= nexus_dirty_merge(nx, c->dirty, nx->unflushed);
        changed |= nexus_dirty_merge(nx, c->dirty, nx->flushing);
    }
    if (c->state == NEXUS_CHILD_ONLINE || c->state == NEXUS_CHILD_REBUILDING ||
        c->state == NEXUS_CHILD_OUT_OF_SYNC) {
        nexus_rebuild_stop(c, rc);
        snprintf(why, sizeof(why), "%s failed: %s", io != NULL ? ioc_io_type_name(io->type)
                                                                : "rebuild", strerror(-rc));
        bool was_online = c->state == NEXUS_CHILD_ONLINE;
        nexus_child_set_state(c, NEXUS_CHILD_FAULTED, why);
        c->next_probe_ns = ioc_now_ns() + CHILD_PROBE_INTERVAL_NS;
        /* The last online child saw every acknowledged write: the recovery source. */
        c->last_in_sync = was_online && nexus_online_count(nx) == 0;
        changed = true;
    }
    if (changed) {
        nexus_membership_changed(nx);
    }
}

/* ---- open and close (control thread) ---- */

static bool
child_is_uri(const char *uri)
{
    return strstr(uri, "://") != NULL;
}

static int
child_connect(struct ioc_nexus *nx, struct nexus_child *c, struct ioc_err *err)
{
    struct ioc_bdev_nbd_client_opts o = {
        .name = c->bdev_name,
        .uri = c->uri,
        .io_timeout_s = nx->io_timeout_s,
        .reactor = nx->reactor,
    };
    struct ioc_err cerr = {0};
    int rc = ioc_bdev_nbd_client_create(&o, &cerr);

    (void)err;
    if (rc < 0) {
        IOC_WARN("nexus", "nexus %s: child %s: cannot connect: %s", nx->bdev.name, c->uri,
                 cerr.msg[0] ? cerr.msg : strerror(-rc));
        return rc;
    }
    c->bdev = ioc_bdev_get_by_name(c->bdev_name);
    c->owns_bdev = true;
    return c->bdev != NULL ? 0 : -ENOENT;
}

/*
 * Open the child named uri. A URI that cannot be reached yields a child
 * without a bdev (faulted); an unknown local bdev is an error (-ENOENT).
 */
int
nexus_child_open(struct ioc_nexus *nx, const char *uri, struct nexus_child **out,
                 struct ioc_err *err)
{
    struct nexus_child *c;

    if (strlen(uri) == 0 || strlen(uri) >= sizeof(c->uri)) {
        return ioc_err_set(err, -EINVAL, "children: '%s' is not a bdev name or nbd:// URI", uri);
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    c->nexus = nx;
    snprintf(c->uri, sizeof(c->uri), "%s", uri);
    if (child_is_uri(uri)) {
        snprintf(c->bdev_name, sizeof(c->bdev_name), "%.100s.c%llu", nx->bdev.name,
                 (unsigned long long)++nx->child_seq);
        child_connect(nx, c, err);
    } else {
        snprintf(c->bdev_name, sizeof(c->bdev_name), "%s", uri);
        c->bdev = ioc_bdev_get_by_name(uri);
        if (c->bdev == NULL) {
            free(c);
            return ioc_err_set(err, -ENOENT, "children: no bdev named '%s'", uri);
        }
    }
    *out = c;
    return 0;
}

/* Control thread; the child is no longer reachable from the nexus. */
void
nexus_child_close(struct nexus_child *c)
{
    if (c == NULL) {
        return;
    }
    ioc_bdev_put(&c->bdev);
    if (c->owns_bdev) {
        struct ioc_err err = {0};
        if (ioc_bdev_delete(c->bdev_name, &err) < 0 && err.code != -ENOENT) {
            IOC_WARN("nexus", "child %s: cannot delete %s: %s", c->uri, c->bdev_name, err.msg);
        }
    }
    free(c->dirty);
    free(c);
}

struct nexus_child *
nexus_child_find(struct ioc_nexus *nx, const char *uri)
{
    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        struct nexus_child *c = nx->children[i];
        if (c != NULL && (strcmp(c->uri, uri) == 0 || strcmp(c->bdev_name, uri) == 0)) {
            return c;
        }
    }
    return NULL;
}

struct child_install_ctx {
    struct nexus_child *c;
    struct ioc_bdev *bdev;
};

static void
child_install_msg(void *arg)
{
    struct child_install_ctx *ctx = arg;

    if (ctx->c->bdev == NULL) {
        ctx->c->bdev = ctx->bdev;
        ctx->c->owns_bdev = true;
        ctx->bdev = NULL;
    }
}

/* Connect a child that has no bdev (unreachable at create). Control thread. */
int
nexus_child_reopen(struct ioc_nexus *nx, const char *uri, struct ioc_err *err)
{
    struct nexus_child *c = nexus_child_find(nx, uri);
    struct nexus_child tmp;
    struct child_install_ctx ctx;

    if (c == NULL || !child_is_uri(c->uri)) {
        return ioc_err_set(err, -ENOENT, "uri: nexus %s has no child '%s'", nx->bdev.name, uri);
    }
    memset(&tmp, 0, sizeof(tmp));
    snprintf(tmp.uri, sizeof(tmp.uri), "%s", c->uri);
    snprintf(tmp.bdev_name, sizeof(tmp.bdev_name), "%s", c->bdev_name);
    if (child_connect(nx, &tmp, err) < 0) {
        return ioc_err_set(err, -ECONNREFUSED, "uri: cannot connect to %s", uri);
    }
    ctx.c = c;
    ctx.bdev = tmp.bdev;
    nexus_run_sync(nx, child_install_msg, &ctx);
    ioc_bdev_put(&ctx.bdev);
    return 0;
}

/* ---- coming back ---- */

/* Start a rebuild for every child that waits for one, if there is a source. */
void
nexus_child_maybe_rebuild(struct ioc_nexus *nx)
{
    if (nx->stopping || nx->state == NEXUS_FAULTED || nexus_online_count(nx) == 0) {
        return;
    }
    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        struct nexus_child *c = nx->children[i];
        if (c != NULL && c->state == NEXUS_CHILD_OUT_OF_SYNC && c->bdev != NULL) {
            int rc = nexus_rebuild_start(c);
            if (rc < 0) {
                IOC_ERR_RATELIMIT("nexus", "nexus %s: child %s: cannot start rebuild: %s",
                                  nx->bdev.name, c->uri, strerror(-rc));
            }
        }
    }
}

struct child_probe {
    struct nexus_child *c;
    void *buf;
    struct ioc_bdev_io *io;
};

static void
child_probe_done(struct ioc_bdev_io *io, void *cb_arg)
{
    struct child_probe *p = cb_arg;
    struct nexus_child *c = p->c;
    struct ioc_nexus *nx = c->nexus;

    c->probing = false;
    c->next_probe_ns = ioc_now_ns() + CHILD_PROBE_INTERVAL_NS;
    if (io->status == 0 && c->state == NEXUS_CHILD_FAULTED && !c->admin_fault && !nx->stopping &&
        nx->state != NEXUS_FAULTED) {
        nexus_child_set_state(c, NEXUS_CHILD_OUT_OF_SYNC, "reachable again");
        nexus_membership_changed(nx);
        nexus_child_maybe_rebuild(nx);
    }
    ioc_bdev_io_free(io);
    free(p->buf);
    free(p);
}

static void
child_probe(struct nexus_child *c)
{
    uint32_t bs = ioc_bdev_block_size(c->bdev);
    struct child_probe *p = calloc(1, sizeof(*p));

    if (p == NULL || posix_memalign(&p->buf, 4096, bs) != 0) {
        free(p);
        return;
    }
    p->c = c;
    p->io = ioc_bdev_io_alloc(c->bdev);
    if (p->io == NULL) {
        free(p->buf);
        free(p);
        return;
    }
    p->io->iov_single.iov_base = p->buf;
    p->io->iov_single.iov_len = bs;
    ioc_bdev_io_prep_rw(p->io, IOC_IO_READ, 0, bs, &p->io->iov_single, 1, 0, child_probe_done,
                        p);
    c->probing = true;
    if (ioc_bdev_io_submit(p->io) < 0) {
        c->probing = false;
        ioc_bdev_io_free(p->io);
        free(p->buf);
        free(p);
    }
}

/* Every second on the owner: probe faulted children, start waiting rebuilds. */
enum ioc_poll_result
nexus_child_poll(void *arg)
{
    struct ioc_nexus *nx = arg;
    uint64_t now = ioc_now_ns();
    bool busy = false;

    if (nx->stopping || nx->state == NEXUS_FAULTED) {
        return IOC_POLL_IDLE;
    }
    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        struct nexus_child *c = nx->children[i];
        if (c == NULL || c->state != NEXUS_CHILD_FAULTED || c->admin_fault || c->bdev == NULL ||
            c->probing || !nx->auto_return || now < c->next_probe_ns) {
            continue;
        }
        child_probe(c);
        busy = true;
    }
    nexus_child_maybe_rebuild(nx);
    return busy ? IOC_POLL_BUSY : IOC_POLL_IDLE;
}

json_t *
nexus_child_json(const struct nexus_child *c)
{
    json_t *o = json_object();

    json_object_set_new(o, "uri", json_string(c->uri));
    json_object_set_new(o, "bdev", c->bdev != NULL ? json_string(c->bdev_name) : json_null());
    json_object_set_new(o, "state", json_string(nexus_child_state_name(c->state)));
    json_object_set_new(o, "admin_fault", json_boolean(c->admin_fault));
    json_object_set_new(o, "last_in_sync", json_boolean(c->last_in_sync));
    json_object_set_new(o, "io_errors", json_integer((json_int_t)c->io_errors));
    json_object_set_new(o, "faults", json_integer((json_int_t)c->faults));
    json_object_set_new(o, "last_error", c->last_error != 0 ? json_string(strerror(-c->last_error))
                                                            : json_null());
    json_object_set_new(o, "dirty_segments",
                        json_integer(c->dirty != NULL
                                         ? (json_int_t)nexus_dirty_count(c->dirty, c->nexus->nseg)
                                         : 0));
    json_object_set_new(o, "rebuild", nexus_rebuild_json(c));
    return o;
}
