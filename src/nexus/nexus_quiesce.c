/*
 * nexus/nexus_quiesce.c - hold a nexus's writes for a moment (crash-consistent snapshots).
 *
 * A snapshot of a replicated volume is a snapshot of each replica's pool
 * volume, taken on different nodes at slightly different times. It is
 * crash-consistent only if no write lands on one replica between the first
 * and the last of them. So the control plane quiesces the nexus first:
 *
 *   ioc_nexus_quiesce   takes a range lock over the whole nexus (the one the
 *                       rebuild takes per segment, nexus_io.c): new writes,
 *                       zeroings and unmaps wait on it - held, not failed;
 *                       the call returns once the writes already in flight
 *                       completed on every child. Reads and flushes go on.
 *   (snapshots)         every replica now holds the same acknowledged data.
 *   ioc_nexus_resume    releases the lock; the held writes start in order.
 *
 * A quiesce that is never resumed (its caller died) must not stall the
 * volume forever: a timer lifts it after timeout_ms and remembers that it
 * did, so the caller's resume answers -ETIMEDOUT and the caller knows its
 * snapshots may differ (it throws them away). Destroying the nexus lifts it
 * too.
 *
 * Rejected: failing writes with EAGAIN while quiesced (clients see errors);
 * freezing each replica bdev instead (the replicas live on other nodes, and
 * a write could still reach one replica and not yet another).
 */
#include "ioc/common.h"

#include <errno.h>
#include <unistd.h>

#include "core/log.h"
#include "nexus/nexus_internal.h"

#define QUIESCE_DEFAULT_MS 10000u

static void
quiesce_acquired(struct nexus_range_lock *lock)
{
    (void)lock; /* the control thread polls lock->held */
}

/* Lift the quiesce (owner reactor). */
static void
quiesce_release(struct ioc_nexus *nx)
{
    if (!nx->quiesced) {
        return;
    }
    ioc_timer_cancel(&nx->quiesce_timer);
    nx->quiesced = false;
    nexus_lock_release(nx, &nx->quiesce_lock);
}

static void
quiesce_expire(void *arg)
{
    struct ioc_nexus *nx = arg;

    nx->quiesce_timer = NULL; /* fired: not to be cancelled */
    if (!nx->quiesced) {
        return;
    }
    IOC_WARN("nexus", "nexus %s: quiesce expired after %llu ms without resume; writes go on",
             nx->bdev.name, (unsigned long long)((ioc_now_ns() - nx->quiesce_since_ns) /
                                                 1000000));
    quiesce_release(nx);
    nx->quiesce_expired = true;
}

void
nexus_quiesce_stop(struct ioc_nexus *nx)
{
    quiesce_release(nx);
}

json_t *
nexus_quiesce_json(const struct ioc_nexus *nx)
{
    return json_pack("{s:b, s:b, s:b}", "active", nx->quiesced, "drained",
                     nx->quiesced && nx->quiesce_lock.held, "expired", nx->quiesce_expired);
}

struct quiesce_ctx {
    struct ioc_nexus *nx;
    uint32_t timeout_ms;
    int rc;
    bool held;
};

static void
quiesce_start_msg(void *arg)
{
    struct quiesce_ctx *ctx = arg;
    struct ioc_nexus *nx = ctx->nx;

    if (nx->quiesced) {
        ctx->rc = -EBUSY;
        return;
    }
    if (nx->stopping) {
        ctx->rc = -ENOENT;
        return;
    }
    nx->quiesce_timer = ioc_timer_start(nx->reactor, (uint64_t)ctx->timeout_ms * 1000,
                                        quiesce_expire, nx);
    if (nx->quiesce_timer == NULL) {
        ctx->rc = -ENOMEM;
        return;
    }
    nx->quiesce_lock = (struct nexus_range_lock){.lo = 0, .hi = UINT64_MAX,
                                                 .acquired = quiesce_acquired};
    nx->quiesced = true;
    nx->quiesce_expired = false;
    nx->quiesce_since_ns = ioc_now_ns();
    ctx->held = nexus_lock_acquire(nx, &nx->quiesce_lock);
}

static void
quiesce_poll_msg(void *arg)
{
    struct quiesce_ctx *ctx = arg;

    ctx->held = ctx->nx->quiesced && ctx->nx->quiesce_lock.held;
    if (!ctx->nx->quiesced) {
        ctx->rc = -ETIMEDOUT; /* expired (or the nexus stopped) while draining */
    }
}

static void
quiesce_abort_msg(void *arg)
{
    struct quiesce_ctx *ctx = arg;

    quiesce_release(ctx->nx);
    ctx->nx->quiesce_expired = false;
}

int
ioc_nexus_quiesce(const char *name, uint32_t timeout_ms, struct ioc_err *err)
{
    struct quiesce_ctx ctx = {.timeout_ms = timeout_ms != 0 ? timeout_ms : QUIESCE_DEFAULT_MS};
    uint64_t deadline;
    int rc = nexus_get(name, &ctx.nx, err);

    if (rc < 0) {
        return rc;
    }
    deadline = ioc_now_ns() + (uint64_t)ctx.timeout_ms * 1000000;
    rc = nexus_run_sync(ctx.nx, quiesce_start_msg, &ctx);
    rc = rc < 0 ? rc : ctx.rc;
    while (rc == 0 && !ctx.held && ioc_now_ns() < deadline) {
        if (ioc_reactor_self() == ctx.nx->reactor) {
            ioc_reactor_poll_once(ctx.nx->reactor);
        } else {
            usleep(500);
        }
        rc = nexus_run_sync(ctx.nx, quiesce_poll_msg, &ctx);
        rc = rc < 0 ? rc : ctx.rc;
    }
    if (rc == 0 && !ctx.held) {
        rc = -ETIMEDOUT;
    }
    if (rc < 0) {
        if (rc != -EBUSY) {
            nexus_run_sync(ctx.nx, quiesce_abort_msg, &ctx);
        }
        ioc_err_set(err, rc, rc == -EBUSY ? "name: nexus '%s' is already quiesced"
                             : rc == -ETIMEDOUT ? "name: writes of nexus '%s' in flight did not "
                                                  "drain in time; nothing held"
                                                : "name: nexus '%s' cannot be quiesced", name);
    } else {
        IOC_INFO("nexus", "nexus %s: quiesced (writes held for at most %u ms)", name,
                 ctx.timeout_ms);
    }
    nexus_put(ctx.nx);
    return rc;
}

struct resume_ctx {
    struct ioc_nexus *nx;
    int rc;
    uint64_t held_ns;
};

static void
resume_msg(void *arg)
{
    struct resume_ctx *ctx = arg;
    struct ioc_nexus *nx = ctx->nx;

    if (nx->quiesced) {
        ctx->held_ns = ioc_now_ns() - nx->quiesce_since_ns;
        quiesce_release(nx);
        ctx->rc = 0;
    } else {
        ctx->rc = nx->quiesce_expired ? -ETIMEDOUT : -EINVAL;
    }
    nx->quiesce_expired = false;
}

int
ioc_nexus_resume(const char *name, struct ioc_err *err)
{
    struct resume_ctx ctx = {0};
    int rc = nexus_get(name, &ctx.nx, err);

    if (rc < 0) {
        return rc;
    }
    rc = nexus_run_sync(ctx.nx, resume_msg, &ctx);
    rc = rc < 0 ? rc : ctx.rc;
    if (rc == -ETIMEDOUT) {
        ioc_err_set(err, rc, "name: the quiesce of nexus '%s' had expired: writes went on "
                    "before this resume", name);
    } else if (rc < 0) {
        ioc_err_set(err, rc, "name: nexus '%s' is not quiesced", name);
    } else {
        IOC_INFO("nexus", "nexus %s: resumed after %llu us", name,
                 (unsigned long long)(ctx.held_ns / 1000));
    }
    nexus_put(ctx.nx);
    return rc;
}
