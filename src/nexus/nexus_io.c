/*
 * nexus/nexus_io.c - the data path: mirrored writes, balanced reads, the
 * acknowledgement barrier and the rebuild's range lock.
 *
 * Writes, WRITE_ZEROES, UNMAP and FLUSH fan out to every child that takes
 * writes (online and rebuilding), with the caller's flags (FUA included).
 * The fan-out keeps a `remaining` count (with one extra for the submitter,
 * dropped when the loop ends), a default status and a "submitted so far"
 * slot index, so running out of IOs resumes where it stopped instead of
 * starting over. The IO succeeds if at least one ONLINE child completed it;
 * a rebuilding child's success does not count, it is not a full copy yet.
 * A child that fails is faulted (nexus_child.c) and the IO goes on with the
 * others.
 *
 * Acknowledgement barrier: before a write is acknowledged the membership
 * record must be at least as new as the nexus (persisted >= version), so a
 * child that missed it is recorded as out of sync, and its dirty segments
 * are recorded too. In steady state this costs one comparison; after a
 * change, finished writes wait in a FIFO until the record is written.
 *
 * Reads (and BLOCK_STATUS) go to one online child, round robin in strides
 * of 32; a failed
 * read faults that child and is retried on the next one.
 *
 * Range lock: the rebuild locks the segment it copies. A write overlapping
 * a lock (held or pending) waits on it; a pending lock waits for the
 * overlapping writes already in flight. So a write lands on the rebuilding
 * child either entirely before the copy read the source (and the copy
 * carries it) or entirely after the copy was written (and overwrites it):
 * never lost, never reordered. Reads do not take the lock: they never go
 * to a rebuilding child.
 *
 * IO submitted on another reactor is forwarded to the owner by message and
 * completed back the same way.
 */
#include "ioc/common.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "nexus/nexus_internal.h"

#define NEXUS_RETRY_US 1000
#define NEXUS_READ_STRIDE 32

static inline struct nexus_io *
nio(struct ioc_bdev_io *io)
{
    return (struct nexus_io *)(void *)io->module_ctx;
}

/* ---- completion ---- */

static void
nexus_complete_msg(void *arg)
{
    struct ioc_bdev_io *io = arg;

    ioc_bdev_io_complete(io, io->status);
}

static void nexus_finish(struct ioc_bdev_io *io, int status);

static void
nexus_finish_retry(void *arg)
{
    struct ioc_bdev_io *io = arg;

    nio(io)->retry = NULL;
    nexus_finish(io, io->status);
}

/* Complete the parent IO, always later than the call (deferred or by message). */
static void
nexus_finish(struct ioc_bdev_io *io, int status)
{
    struct ioc_nexus *nx = io->bdev->ctx;
    struct nexus_io *n = nio(io);

    if (status < 0) {
        nx->st_errors++;
    }
    if (!n->foreign) {
        ioc_bdev_io_complete_deferred(io, status);
        return;
    }
    io->status = status;
    if (ioc_reactor_send_msg(io->reactor, nexus_complete_msg, io) < 0) {
        n->retry = ioc_timer_start(nx->reactor, NEXUS_RETRY_US, nexus_finish_retry, io);
    }
}

/* ---- acknowledgement barrier ---- */

static void
nexus_ack(struct ioc_nexus *nx, struct ioc_bdev_io *io)
{
    struct nexus_io *n = nio(io);

    if (nx->persisted >= nx->version) {
        nexus_finish(io, 0);
        return;
    }
    n->version = nx->version;
    n->wait_next = NULL;
    if (nx->ack_wait_tail != NULL) {
        nx->ack_wait_tail->wait_next = n;
    } else {
        nx->ack_wait = n;
    }
    nx->ack_wait_tail = n;
    nx->st_ack_waits++;
}

/* The record reached nx->persisted: acknowledge what waited for it. */
void
nexus_io_persisted(struct ioc_nexus *nx)
{
    while (nx->ack_wait != NULL && nx->ack_wait->version <= nx->persisted) {
        struct nexus_io *n = nx->ack_wait;
        nx->ack_wait = n->wait_next;
        if (nx->ack_wait == NULL) {
            nx->ack_wait_tail = NULL;
        }
        nexus_finish(n->io, 0);
    }
}

/* ---- in-flight writes and the range lock ---- */

static bool
ranges_overlap(uint64_t lo1, uint64_t hi1, uint64_t lo2, uint64_t hi2)
{
    return lo1 < hi2 && lo2 < hi1;
}

bool
nexus_io_overlaps_inflight(const struct ioc_nexus *nx, uint64_t lo, uint64_t hi)
{
    for (const struct nexus_io *n = nx->inflight; n != NULL; n = n->next) {
        if (ranges_overlap(lo, hi, n->io->offset, n->io->offset + n->io->length)) {
            return true;
        }
    }
    return false;
}

static void
inflight_add(struct ioc_nexus *nx, struct nexus_io *n)
{
    n->prev = NULL;
    n->next = nx->inflight;
    if (nx->inflight != NULL) {
        nx->inflight->prev = n;
    }
    nx->inflight = n;
    n->listed = true;
}

static void
inflight_remove(struct ioc_nexus *nx, struct nexus_io *n)
{
    if (!n->listed) {
        return;
    }
    if (n->prev != NULL) {
        n->prev->next = n->next;
    } else {
        nx->inflight = n->next;
    }
    if (n->next != NULL) {
        n->next->prev = n->prev;
    }
    n->listed = false;
}

static struct nexus_range_lock *
lock_find(struct ioc_nexus *nx, uint64_t lo, uint64_t hi)
{
    for (struct nexus_range_lock *l = nx->locks; l != NULL; l = l->next) {
        if (ranges_overlap(lo, hi, l->lo, l->hi)) {
            return l;
        }
    }
    return NULL;
}

/* Grant pending locks whose range has no write in flight any more. */
static void
lock_check(struct ioc_nexus *nx)
{
    bool again = true;

    while (again && nx->locks_pending > 0) {
        again = false;
        for (struct nexus_range_lock *l = nx->locks; l != NULL; l = l->next) {
            if (!l->held && !nexus_io_overlaps_inflight(nx, l->lo, l->hi)) {
                l->held = true;
                nx->locks_pending--;
                l->acquired(l); /* may release or add locks: rescan */
                again = true;
                break;
            }
        }
    }
}

/* True: held now (acquired is not called). False: acquired(lock) runs later. */
bool
nexus_lock_acquire(struct ioc_nexus *nx, struct nexus_range_lock *lock)
{
    lock->waiters = lock->waiters_tail = NULL;
    lock->next = nx->locks;
    nx->locks = lock;
    lock->held = !nexus_io_overlaps_inflight(nx, lock->lo, lock->hi);
    if (!lock->held) {
        nx->locks_pending++;
    }
    return lock->held;
}

static void nexus_write_start(struct ioc_nexus *nx, struct ioc_bdev_io *io);

void
nexus_lock_release(struct ioc_nexus *nx, struct nexus_range_lock *lock)
{
    struct nexus_io *w;

    for (struct nexus_range_lock **pp = &nx->locks; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == lock) {
            *pp = lock->next;
            break;
        }
    }
    if (!lock->held) {
        nx->locks_pending--;
    }
    lock->held = false;
    w = lock->waiters;
    lock->waiters = lock->waiters_tail = NULL;
    while (w != NULL) {
        struct nexus_io *next = w->wait_next;
        nexus_write_start(nx, w->io);
        w = next;
    }
}

/* ---- fan-out (writes, zeroes, unmap, flush) ---- */

static void nexus_fanout_resume(struct ioc_bdev_io *io);

static void
nexus_fanout_done(struct ioc_bdev_io *io)
{
    struct ioc_nexus *nx = io->bdev->ctx;
    struct nexus_io *n = nio(io);

    inflight_remove(nx, n);
    if (nx->locks_pending > 0) {
        lock_check(nx);
    }
    if (io->type == IOC_IO_FLUSH) {
        if (--nx->flushes_inflight == 0 && n->ok > 0) {
            nexus_dirty_zero(nx, nx->flushing); /* durable on every child still in the set */
        }
    } else if (n->ok > 0 && !(io->flags & IOC_IO_FUA)) {
        nexus_dirty_mark(nx, nx->unflushed, io->offset, io->length);
    }
    if (n->status < 0) {
        nexus_finish(io, n->status);
    } else if (n->ok == 0) {
        nexus_update_state(nx);
        nexus_finish(io, -EIO);
    } else {
        nexus_ack(nx, io);
    }
}

static void
nexus_child_write_done(struct ioc_bdev_io *cio, void *cb_arg)
{
    struct ioc_bdev_io *io = cb_arg;
    struct nexus_io *n = nio(io);
    struct nexus_child *c = cio->caller_ctx;
    int rc = cio->status;

    c->inflight--;
    ioc_bdev_io_free(cio);
    if (rc == 0) {
        n->ok += c->state == NEXUS_CHILD_ONLINE;
    } else if (rc == -ENOTSUP && (io->flags & IOC_IO_FAST_ZERO)) {
        n->status = -ENOTSUP; /* not a fault: the client falls back to writing zeroes */
    } else {
        nexus_child_fail(c, io, rc);
    }
    if (--n->remaining == 0) {
        nexus_fanout_done(io);
    }
}

static void
nexus_fanout_retry(void *arg)
{
    struct ioc_bdev_io *io = arg;

    nio(io)->retry = NULL;
    nexus_fanout_resume(io);
}

/* Submit to one child; false if out of IOs (the caller retries this slot later). */
static bool
nexus_fanout_one(struct ioc_bdev_io *io, struct nexus_child *c)
{
    struct nexus_io *n = nio(io);
    struct ioc_bdev_io *cio = ioc_bdev_io_alloc(c->bdev);
    int rc;

    if (cio == NULL) {
        return false;
    }
    ioc_bdev_io_prep_rw(cio, io->type, io->offset, io->length, io->iov, io->iovcnt, io->flags,
                        nexus_child_write_done, io);
    cio->caller_ctx = c;
    c->inflight++;
    n->remaining++;
    rc = ioc_bdev_io_submit(cio);
    if (rc < 0) {
        c->inflight--;
        n->remaining--;
        ioc_bdev_io_free(cio);
        nexus_child_fail(c, io, rc);
    }
    return true;
}

static void
nexus_fanout_resume(struct ioc_bdev_io *io)
{
    struct ioc_nexus *nx = io->bdev->ctx;
    struct nexus_io *n = nio(io);

    for (; n->next_slot < IOC_NEXUS_MAX_CHILDREN; n->next_slot++) {
        struct nexus_child *c = nx->children[n->next_slot];
        if (c == NULL || !nexus_child_gets_writes(c)) {
            continue;
        }
        if (!nexus_fanout_one(io, c)) {
            n->retry = ioc_timer_start(nx->reactor, NEXUS_RETRY_US, nexus_fanout_retry, io);
            if (n->retry != NULL) {
                return; /* resume at this slot */
            }
            nexus_child_fail(c, io, -ENOMEM); /* it cannot get this write: it must go */
        }
    }
    if (--n->remaining == 0) {
        nexus_fanout_done(io);
    }
}

/* Mark the write's segments in the log of every child that is away. */
static void
nexus_mark_away(struct ioc_nexus *nx, const struct ioc_bdev_io *io)
{
    bool changed = false;

    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        struct nexus_child *c = nx->children[i];
        if (c != NULL && (c->state == NEXUS_CHILD_FAULTED || c->state == NEXUS_CHILD_OUT_OF_SYNC)) {
            changed |= nexus_dirty_mark(nx, c->dirty, io->offset, io->length);
        }
    }
    if (changed) {
        nexus_membership_changed(nx);
    }
}

static void
nexus_write_start(struct ioc_nexus *nx, struct ioc_bdev_io *io)
{
    struct nexus_io *n = nio(io);
    struct nexus_range_lock *l = lock_find(nx, io->offset, io->offset + io->length);

    if (nx->state == NEXUS_FAULTED) {
        nexus_finish(io, -EIO);
        return;
    }
    if (l != NULL) {
        n->wait_next = NULL;
        if (l->waiters_tail != NULL) {
            l->waiters_tail->wait_next = n;
        } else {
            l->waiters = n;
        }
        l->waiters_tail = n;
        nx->st_lock_waits++;
        return;
    }
    inflight_add(nx, n);
    nexus_mark_away(nx, io);
    n->remaining = 1;
    n->next_slot = 0;
    nexus_fanout_resume(io);
}

/* ---- reads ---- */

static void nexus_read_start(struct ioc_nexus *nx, struct ioc_bdev_io *io);

/*
 * Round robin in strides of NEXUS_READ_STRIDE reads: balanced over time, but
 * a burst of reads keeps one replica busy instead of waking all of them for
 * one read each (which costs more CPU than it gains in parallelism).
 */
static struct nexus_child *
nexus_pick_reader(struct ioc_nexus *nx)
{
    unsigned start = nx->rr++ / NEXUS_READ_STRIDE;

    for (unsigned k = 0; k < IOC_NEXUS_MAX_CHILDREN; k++) {
        struct nexus_child *c = nx->children[(start + k) % IOC_NEXUS_MAX_CHILDREN];
        if (c != NULL && c->state == NEXUS_CHILD_ONLINE) {
            if (k != 0) {
                nx->rr = (start + k) * NEXUS_READ_STRIDE + 1; /* skip empty slots next time */
            }
            return c;
        }
    }
    return NULL;
}

static bool
read_error_is_fault(const struct ioc_bdev_io *io, int rc)
{
    return !(io->type == IOC_IO_BLOCK_STATUS && (rc == -ENOTSUP || rc == -EINVAL));
}

static void
nexus_read_retry(struct ioc_nexus *nx, struct ioc_bdev_io *io)
{
    struct nexus_io *n = nio(io);

    if (++n->tries >= IOC_NEXUS_MAX_CHILDREN) {
        nexus_finish(io, -EIO);
        return;
    }
    nx->st_read_retries++;
    nexus_read_start(nx, io);
}

static void
nexus_child_read_done(struct ioc_bdev_io *cio, void *cb_arg)
{
    struct ioc_bdev_io *io = cb_arg;
    struct ioc_nexus *nx = io->bdev->ctx;
    struct nexus_child *c = cio->caller_ctx;
    int rc = cio->status;

    c->inflight--;
    io->nr_extents = cio->nr_extents;
    ioc_bdev_io_free(cio);
    if (rc == 0) {
        nexus_finish(io, 0);
    } else if (!read_error_is_fault(io, rc)) {
        nexus_finish(io, rc);
    } else {
        nexus_child_fail(c, io, rc);
        nexus_read_retry(nx, io);
    }
}

static void
nexus_read_retry_timer(void *arg)
{
    struct ioc_bdev_io *io = arg;

    nio(io)->retry = NULL;
    nexus_read_start(io->bdev->ctx, io);
}

static void
nexus_read_start(struct ioc_nexus *nx, struct ioc_bdev_io *io)
{
    struct nexus_child *c = nexus_pick_reader(nx);
    struct ioc_bdev_io *cio;
    int rc;

    if (c == NULL) {
        nexus_update_state(nx);
        nexus_finish(io, -EIO);
        return;
    }
    cio = ioc_bdev_io_alloc(c->bdev);
    if (cio == NULL) {
        nio(io)->retry = ioc_timer_start(nx->reactor, NEXUS_RETRY_US, nexus_read_retry_timer, io);
        if (nio(io)->retry == NULL) {
            nexus_finish(io, -ENOMEM);
        }
        return;
    }
    ioc_bdev_io_prep_rw(cio, io->type, io->offset, io->length, io->iov, io->iovcnt, io->flags,
                        nexus_child_read_done, io);
    cio->extents = io->extents;
    cio->max_extents = io->max_extents;
    cio->caller_ctx = c;
    c->inflight++;
    rc = ioc_bdev_io_submit(cio);
    if (rc < 0) {
        c->inflight--;
        ioc_bdev_io_free(cio);
        if (!read_error_is_fault(io, rc)) {
            nexus_finish(io, rc);
            return;
        }
        nexus_child_fail(c, io, rc);
        nexus_read_retry(nx, io);
    }
}

/* ---- entry ---- */

static void
nexus_io_start(struct ioc_bdev_io *io)
{
    struct ioc_nexus *nx = io->bdev->ctx;
    struct nexus_io *n = nio(io);

    if (nx->state == NEXUS_FAULTED || nx->stopping) {
        nexus_finish(io, -EIO);
        return;
    }
    switch (io->type) {
    case IOC_IO_READ:
    case IOC_IO_BLOCK_STATUS:
        nx->st_reads++;
        nexus_read_start(nx, io);
        return;
    case IOC_IO_WRITE_ZEROES:
        if ((io->flags & IOC_IO_FAST_ZERO) && !nx->bdev.fast_zero) {
            nexus_finish(io, -ENOTSUP);
            return;
        }
        /* fall through */
    case IOC_IO_WRITE:
    case IOC_IO_UNMAP:
        nx->st_writes++;
        nexus_write_start(nx, io);
        return;
    case IOC_IO_FLUSH:
        nx->st_flushes++;
        /* This flush covers every write completed so far. */
        nexus_dirty_merge(nx, nx->flushing, nx->unflushed);
        nexus_dirty_zero(nx, nx->unflushed);
        nx->flushes_inflight++;
        n->remaining = 1;
        n->next_slot = 0;
        nexus_fanout_resume(io);
        return;
    default:
        nexus_finish(io, -ENOTSUP);
        return;
    }
}

static void
nexus_submit_msg(void *arg)
{
    nexus_io_start(arg);
}

void
nexus_io_submit(struct ioc_bdev_io *io)
{
    struct ioc_nexus *nx = io->bdev->ctx;
    struct nexus_io *n = nio(io);

    memset(n, 0, sizeof(*n));
    n->io = io;
    if (io->reactor != nx->reactor) {
        n->foreign = true;
        if (ioc_reactor_send_msg(nx->reactor, nexus_submit_msg, io) < 0) {
            ioc_bdev_io_complete_deferred(io, -ENOMEM);
        }
        return;
    }
    nexus_io_start(io);
}
