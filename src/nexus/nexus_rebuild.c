/*
 * nexus/nexus_rebuild.c - copy a child's dirty segments from an online
 * child while IO continues.
 *
 * What: a rebuild walks the child's dirty log (every bit for a new child:
 * full rebuild; the segments written while it was away: partial rebuild).
 * For each dirty segment it takes the nexus range lock on the segment,
 * asks the source for the allocation of the segment (BLOCK_STATUS), copies
 * data extents (read source, write child), writes zeroes for ranges that
 * read as zero, optionally verifies (read the child back and re-read the
 * source; a mismatch faults the child for good), clears the bit and
 * releases the lock. The child takes every nexus write meanwhile (its state
 * is REBUILDING), so once the walk is over it is identical and goes online.
 *
 * How: up to REBUILD_DEPTH segments are copied at once (each its own task
 * with its own buffer and lock), which keeps a remote link busy; an optional
 * rate limit (bytes/s) parks idle tasks on a timer. Progress, bytes and
 * throughput are kept in the child's rb_stats for nexus_list.
 *
 * Task states, one segment at a time:
 *
 *   IDLE -> LOCKING -> STATUS -> { READ -> WRITE [-> VERIFY_CHILD ->
 *   VERIFY_SOURCE] | ZERO } per extent ... -> (bit cleared, unlock) -> IDLE
 *
 * Invariants: a task past LOCKING holds its segment's lock; the child's bit
 * for the segment is still set until the segment is fully written; after
 * a stop no task starts a new IO, and the last one to go idle frees the
 * rebuild. Stopping detaches the rebuild from the child at once (the child
 * may be faulted in the same breath); its IOs count in the children's
 * inflight counters, so removal and destruction wait for them.
 *
 * Not done: choosing the least loaded source (round robin over online
 * children), resuming a rebuild's progress across restarts beyond the dirty
 * log (bits are cleared in memory; the record may hold more, which is safe).
 * Rejected: copying without BLOCK_STATUS (a thin 1 TiB volume with 1 GiB
 * written would copy 1 TiB), and locking the whole volume per segment.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "nexus/nexus_internal.h"

#define REBUILD_DEPTH       8
#define REBUILD_MAX_EXTENTS 64

enum task_state {
    TASK_IDLE = 0,      /* no segment; not counted in rb->active */
    TASK_LOCKING,       /* waits for the range lock of its segment */
    TASK_STATUS,        /* BLOCK_STATUS of the rest of the segment on the source */
    TASK_READ,          /* reading a data extent from the source into buf */
    TASK_WRITE,         /* writing buf to the child */
    TASK_ZERO,          /* WRITE_ZEROES (or a zero buffer) on the child */
    TASK_VERIFY_CHILD,  /* reading the copy back into vbuf */
    TASK_VERIFY_SOURCE, /* reading the source again into vbuf */
};

struct nexus_rebuild;

struct rebuild_task {
    struct nexus_rebuild *rb;
    enum task_state state;
    struct nexus_range_lock lock;
    uint64_t seg;
    uint64_t pos, end;             /* bytes of the segment still to handle */
    struct ioc_extent ext[REBUILD_MAX_EXTENTS];
    uint32_t nr_ext, ext_i;
    uint64_t cur_len;              /* length of the extent being copied */
    bool wrote;                    /* the segment needed a write */
    struct nexus_child *src;
    struct nexus_child *io_child;  /* whose IO is in flight */
    uint8_t *buf, *vbuf;
    struct iovec iov;
};

struct nexus_rebuild {
    struct ioc_nexus *nx;
    struct nexus_child *child;
    uint64_t cursor;
    unsigned active;
    bool stopping;
    bool detached;
    struct ioc_timer *rate_timer;
    uint8_t *zeroes;
    uint64_t *copied;              /* segments copied but not flushed on the child yet */
    unsigned next_source;          /* round robin over online children */
    struct ioc_bdev_io *flush;     /* the final flush, when in flight */
    struct rebuild_task tasks[REBUILD_DEPTH];
};

static void task_next(struct rebuild_task *t);
static void task_idle_hold_drop(struct nexus_rebuild *rb);
static void task_extent(struct rebuild_task *t);

/* ---- lifetime ---- */

static void
rebuild_free(struct nexus_rebuild *rb)
{
    if (rb->rate_timer != NULL) {
        ioc_timer_cancel(&rb->rate_timer);
    }
    for (unsigned i = 0; i < REBUILD_DEPTH; i++) {
        free(rb->tasks[i].buf);
        free(rb->tasks[i].vbuf);
    }
    free(rb->zeroes);
    free(rb->copied);
    free(rb);
}

/* The copy is flushed on the child: it is in sync. */
static void
rebuild_complete(struct nexus_rebuild *rb)
{
    struct nexus_child *c = rb->child;
    struct nexus_rebuild_stats *st = &c->rb_stats;
    double secs;

    st->end_ns = ioc_now_ns();
    st->running = false;
    c->rebuild = NULL;
    rebuild_free(rb);
    secs = (double)(st->end_ns - st->start_ns) / 1e9;
    IOC_NOTICE("nexus",
               "nexus %s: child %s: %s rebuild done: %llu/%llu segments, %llu MiB copied, "
               "%llu MiB zeroed, %.1f s, %.0f MiB/s",
               c->nexus->bdev.name, c->uri, st->full ? "full" : "partial",
               (unsigned long long)st->segments_done, (unsigned long long)st->segments_total,
               (unsigned long long)(st->bytes_copied >> 20),
               (unsigned long long)(st->bytes_zeroed >> 20), secs,
               secs > 0 ? (double)st->bytes_copied / 1048576.0 / secs : 0.0);
    nexus_child_set_state(c, NEXUS_CHILD_ONLINE, "rebuilt");
    nexus_membership_changed(c->nexus);
}

static void
rebuild_flush_done(struct ioc_bdev_io *io, void *cb_arg)
{
    struct nexus_rebuild *rb = cb_arg;
    struct nexus_child *c = rb->child;
    int rc = io->status;

    ioc_bdev_io_free(io);
    rb->flush = NULL;
    c->inflight--;
    if (rb->stopping) {
        task_idle_hold_drop(rb);
        return;
    }
    rb->active--;
    if (rc < 0) {
        c->rb_stats.result = rc;
        nexus_child_fail(c, NULL, rc); /* stops and frees rb; copied goes back to dirty */
        return;
    }
    rebuild_complete(rb);
}

/* Every segment is copied: make the copy durable before the child counts as in sync. */
static void
rebuild_flush(struct nexus_rebuild *rb)
{
    struct nexus_child *c = rb->child;
    int rc;

    rb->flush = ioc_bdev_io_alloc(c->bdev);
    if (rb->flush == NULL) {
        nexus_child_fail(c, NULL, -ENOMEM);
        return;
    }
    ioc_bdev_io_prep(rb->flush, IOC_IO_FLUSH, 0, 0, 0, rebuild_flush_done, rb);
    rb->active++; /* the flush holds the rebuild like a task */
    c->inflight++;
    rc = ioc_bdev_io_submit(rb->flush);
    if (rc < 0) {
        c->inflight--;
        rb->active--;
        ioc_bdev_io_free(rb->flush);
        rb->flush = NULL;
        if (rc == -ENOTSUP) {
            rebuild_complete(rb); /* nothing to flush: writes are stable on completion */
        } else {
            nexus_child_fail(c, NULL, rc);
        }
    }
}

/* A task has nothing more to do. */
static void
task_idle(struct rebuild_task *t)
{
    struct nexus_rebuild *rb = t->rb;

    t->state = TASK_IDLE;
    rb->active--;
    if (rb->active > 0) {
        return;
    }
    if (rb->stopping) {
        rebuild_free(rb);
        return;
    }
    if (rb->rate_timer != NULL) {
        return; /* the rate limit parked us; the timer starts the tasks again */
    }
    if (nexus_dirty_next(rb->child->dirty, rb->nx->nseg, 0) >= 0) {
        rb->cursor = 0; /* defensive: a bit was set behind the cursor */
        for (unsigned i = 0; i < REBUILD_DEPTH; i++) {
            rb->active++;
            task_next(&rb->tasks[i]);
        }
        return;
    }
    rebuild_flush(rb);
}

/* Drop the hold nexus_rebuild_stop() took. */
static void
task_idle_hold_drop(struct nexus_rebuild *rb)
{
    if (--rb->active == 0) {
        rebuild_free(rb);
    }
}

/* The segment is over (copied, or abandoned on a stop): unlock and go on. */
static void
task_segment_end(struct rebuild_task *t, bool done)
{
    struct nexus_rebuild *rb = t->rb;
    struct nexus_rebuild_stats *st = &rb->child->rb_stats;

    if (done && !rb->stopping) {
        nexus_dirty_clear(rb->child->dirty, t->seg);
        rb->copied[t->seg / 64] |= 1ull << (t->seg % 64);
        st->segments_done++;
        st->segments_copied += t->wrote;
    }
    nexus_lock_release(rb->nx, &t->lock);
    task_next(t);
}

/* The rebuild cannot go on: fault the child (it keeps its dirty log). */
static void
task_fail_child(struct rebuild_task *t, int rc, bool admin)
{
    struct nexus_rebuild *rb = t->rb;

    if (!rb->stopping) {
        rb->child->rb_stats.result = rc;
        rb->child->admin_fault |= admin;
        nexus_child_fail(rb->child, NULL, rc);
    }
}

/* ---- child IO ---- */

static void task_io_done(struct ioc_bdev_io *cio, void *cb_arg);

static void
task_io(struct rebuild_task *t, struct nexus_child *c, enum ioc_io_type type, uint64_t off,
        uint64_t len, void *buf)
{
    struct ioc_bdev_io *cio = ioc_bdev_io_alloc(c->bdev);
    int rc;

    if (cio == NULL) {
        task_fail_child(t, -ENOMEM, false);
        task_segment_end(t, false);
        return;
    }
    t->iov.iov_base = buf;
    t->iov.iov_len = len;
    ioc_bdev_io_prep_rw(cio, type, off, len, buf != NULL ? &t->iov : NULL, buf != NULL ? 1 : 0,
                        0, task_io_done, t);
    if (type == IOC_IO_BLOCK_STATUS) {
        cio->extents = t->ext;
        cio->max_extents = REBUILD_MAX_EXTENTS;
    }
    t->io_child = c;
    c->inflight++;
    rc = ioc_bdev_io_submit(cio);
    if (rc < 0) {
        cio->status = rc;
        task_io_done(cio, t); /* same handling as a failed completion */
    }
}

static struct nexus_child *
rebuild_pick_source(struct nexus_rebuild *rb)
{
    struct ioc_nexus *nx = rb->nx;

    for (unsigned k = 0; k < IOC_NEXUS_MAX_CHILDREN; k++) {
        struct nexus_child *c = nx->children[rb->next_source++ % IOC_NEXUS_MAX_CHILDREN];
        if (c != NULL && c->state == NEXUS_CHILD_ONLINE) {
            return c;
        }
    }
    return NULL;
}

/* Start (or restart after a source failed) the copy of the locked segment. */
static void
task_locked(struct rebuild_task *t)
{
    struct nexus_rebuild *rb = t->rb;

    if (rb->stopping) {
        task_segment_end(t, false);
        return;
    }
    t->src = rebuild_pick_source(rb);
    if (t->src == NULL) {
        task_fail_child(t, -EIO, false);
        task_segment_end(t, false);
        return;
    }
    t->pos = t->lock.lo;
    t->end = t->lock.hi;
    t->nr_ext = t->ext_i = 0;
    t->wrote = false;
    if (rb->nx->supports[IOC_IO_BLOCK_STATUS]) {
        t->state = TASK_STATUS;
        task_io(t, t->src, IOC_IO_BLOCK_STATUS, t->pos, t->end - t->pos, NULL);
        return;
    }
    t->ext[0].length = t->end - t->pos;
    t->ext[0].flags = 0;
    t->nr_ext = 1;
    task_extent(t);
}

static void
task_lock_acquired(struct nexus_range_lock *lock)
{
    task_locked(ioc_container_of(lock, struct rebuild_task, lock));
}

/* Copy the next extent of the segment, or finish the segment. */
static void
task_extent(struct rebuild_task *t)
{
    struct nexus_rebuild *rb = t->rb;
    struct ioc_extent *e;

    if (rb->stopping) {
        task_segment_end(t, false);
        return;
    }
    if (t->pos >= t->end) {
        task_segment_end(t, true);
        return;
    }
    if (t->ext_i >= t->nr_ext) {
        t->state = TASK_STATUS; /* the reply covered a prefix: ask for the rest */
        task_io(t, t->src, IOC_IO_BLOCK_STATUS, t->pos, t->end - t->pos, NULL);
        return;
    }
    e = &t->ext[t->ext_i];
    t->cur_len = IOC_MIN(e->length, t->end - t->pos);
    t->wrote = true;
    if (e->flags & IOC_EXTENT_ZERO) {
        t->state = TASK_ZERO;
        if (rb->nx->supports[IOC_IO_WRITE_ZEROES]) {
            task_io(t, rb->child, IOC_IO_WRITE_ZEROES, t->pos, t->cur_len, NULL);
        } else {
            task_io(t, rb->child, IOC_IO_WRITE, t->pos, t->cur_len, rb->zeroes);
        }
        return;
    }
    t->state = TASK_READ;
    task_io(t, t->src, IOC_IO_READ, t->pos, t->cur_len, t->buf);
}

static void
task_extent_done(struct rebuild_task *t)
{
    struct nexus_rebuild_stats *st = &t->rb->child->rb_stats;

    if (t->state == TASK_ZERO) {
        st->bytes_zeroed += t->cur_len;
    } else {
        st->bytes_copied += t->cur_len;
    }
    t->pos += t->cur_len;
    t->ext_i++;
    task_extent(t);
}

static void
task_status_done(struct rebuild_task *t)
{
    uint64_t covered = 0;

    t->ext_i = 0;
    for (uint32_t i = 0; i < t->nr_ext; i++) {
        uint32_t bs = t->rb->nx->bdev.block_size;
        if (t->ext[i].length == 0 || t->ext[i].length % bs != 0) {
            t->nr_ext = 0; /* odd reply: copy the rest as data */
            break;
        }
        covered += t->ext[i].length;
    }
    if (t->nr_ext == 0 || covered == 0) {
        t->ext[0].length = t->end - t->pos;
        t->ext[0].flags = 0;
        t->nr_ext = 1;
    }
    task_extent(t);
}

static void
task_verify_fail(struct rebuild_task *t, const char *what)
{
    IOC_ERR("nexus", "nexus %s: child %s: rebuild verify: %s differs at %llu+%llu",
            t->rb->nx->bdev.name, t->rb->child->uri, what, (unsigned long long)t->pos,
            (unsigned long long)t->cur_len);
    task_fail_child(t, -EILSEQ, true);
    task_segment_end(t, false);
}

/* One completion for every rebuild IO: dispatch on the task state. */
static void
task_io_done(struct ioc_bdev_io *cio, void *cb_arg)
{
    struct rebuild_task *t = cb_arg;
    struct nexus_rebuild *rb = t->rb;
    struct nexus_child *c = t->io_child;
    int rc = cio->status;

    if (t->state == TASK_STATUS) {
        t->nr_ext = cio->nr_extents;
    }
    ioc_bdev_io_free(cio);
    c->inflight--;
    if (rc == 0 && t->state == TASK_STATUS) {
        task_status_done(t);
        return;
    }
    if (rc < 0) {
        if (rb->stopping) {
            task_segment_end(t, false);
        } else if (c == rb->child) {
            task_fail_child(t, rc, false);
            task_segment_end(t, false);
        } else {
            nexus_child_fail(c, NULL, rc); /* the source: try the segment from another */
            task_locked(t);
        }
        return;
    }
    if (rb->stopping) {
        task_segment_end(t, false);
        return;
    }
    switch (t->state) {
    case TASK_READ:
        t->state = TASK_WRITE;
        task_io(t, rb->child, IOC_IO_WRITE, t->pos, t->cur_len, t->buf);
        return;
    case TASK_WRITE:
        if (!rb->nx->rebuild_verify) {
            task_extent_done(t);
            return;
        }
        t->state = TASK_VERIFY_CHILD;
        task_io(t, rb->child, IOC_IO_READ, t->pos, t->cur_len, t->vbuf);
        return;
    case TASK_VERIFY_CHILD:
        if (memcmp(t->buf, t->vbuf, t->cur_len) != 0) {
            task_verify_fail(t, "the copy read back");
            return;
        }
        t->state = TASK_VERIFY_SOURCE;
        task_io(t, t->src, IOC_IO_READ, t->pos, t->cur_len, t->vbuf);
        return;
    case TASK_VERIFY_SOURCE:
        if (memcmp(t->buf, t->vbuf, t->cur_len) != 0) {
            task_verify_fail(t, "the source read again");
            return;
        }
        task_extent_done(t);
        return;
    case TASK_ZERO:
        task_extent_done(t);
        return;
    default:
        task_segment_end(t, false);
        return;
    }
}

/* ---- scheduling ---- */

static void
rebuild_rate_timer(void *arg)
{
    struct nexus_rebuild *rb = arg;

    rb->rate_timer = NULL;
    for (unsigned i = 0; i < REBUILD_DEPTH; i++) {
        if (rb->tasks[i].state == TASK_IDLE && !rb->stopping) {
            rb->active++;
            task_next(&rb->tasks[i]);
        }
    }
}

/* With a rate limit: true if the task must wait (a timer restarts the tasks). */
static bool
rebuild_throttle(struct nexus_rebuild *rb)
{
    const struct nexus_rebuild_stats *st = &rb->child->rb_stats;
    uint64_t rate = rb->nx->rebuild_rate, elapsed_ns, allowed;

    if (rate == 0) {
        return false;
    }
    elapsed_ns = ioc_now_ns() - st->start_ns;
    allowed = (uint64_t)((double)rate * (double)elapsed_ns / 1e9);
    if (st->bytes_copied + st->bytes_zeroed <= allowed) {
        return false;
    }
    if (rb->rate_timer == NULL) {
        uint64_t ahead = st->bytes_copied + st->bytes_zeroed - allowed;
        uint64_t us = (uint64_t)((double)ahead * 1e6 / (double)rate) + 1000;
        rb->rate_timer = ioc_timer_start(rb->nx->reactor, us, rebuild_rate_timer, rb);
    }
    return rb->rate_timer != NULL;
}

static void
task_next(struct rebuild_task *t)
{
    struct nexus_rebuild *rb = t->rb;
    struct ioc_nexus *nx = rb->nx;
    int64_t seg;

    if (rb->stopping || rebuild_throttle(rb)) {
        task_idle(t);
        return;
    }
    seg = nexus_dirty_next(rb->child->dirty, nx->nseg, rb->cursor);
    if (seg < 0) {
        task_idle(t);
        return;
    }
    rb->cursor = (uint64_t)seg + 1;
    t->seg = (uint64_t)seg;
    t->lock.lo = t->seg * nx->segment_size;
    t->lock.hi = IOC_MIN(t->lock.lo + nx->segment_size, nx->bdev.size);
    t->lock.acquired = task_lock_acquired;
    t->state = TASK_LOCKING;
    if (nexus_lock_acquire(nx, &t->lock)) {
        task_locked(t);
    }
}

/* ---- start and stop ---- */

static int
rebuild_alloc(struct nexus_child *c, struct nexus_rebuild **out)
{
    struct ioc_nexus *nx = c->nexus;
    struct nexus_rebuild *rb = calloc(1, sizeof(*rb));

    if (rb == NULL) {
        return -ENOMEM;
    }
    rb->nx = nx;
    rb->child = c;
    if (posix_memalign((void **)&rb->zeroes, 4096, nx->segment_size) != 0) {
        rb->zeroes = NULL;
        rebuild_free(rb);
        return -ENOMEM;
    }
    memset(rb->zeroes, 0, nx->segment_size);
    rb->copied = nexus_dirty_alloc(nx->nseg, false);
    if (rb->copied == NULL) {
        rebuild_free(rb);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < REBUILD_DEPTH; i++) {
        struct rebuild_task *t = &rb->tasks[i];
        t->rb = rb;
        if (posix_memalign((void **)&t->buf, 4096, nx->segment_size) != 0 ||
            (nx->rebuild_verify &&
             posix_memalign((void **)&t->vbuf, 4096, nx->segment_size) != 0)) {
            rebuild_free(rb);
            return -ENOMEM;
        }
    }
    *out = rb;
    return 0;
}

int
nexus_rebuild_start(struct nexus_child *c)
{
    struct ioc_nexus *nx = c->nexus;
    struct nexus_rebuild_stats *st = &c->rb_stats;
    struct nexus_rebuild *rb = NULL;
    uint64_t dirty = nexus_dirty_count(c->dirty, nx->nseg);
    int rc = rebuild_alloc(c, &rb);

    if (rc < 0) {
        return rc;
    }
    memset(st, 0, sizeof(*st));
    st->full = dirty == nx->nseg;
    st->segments_total = dirty;
    st->start_ns = ioc_now_ns();
    st->running = true;
    c->rebuild = rb;
    nexus_child_set_state(c, NEXUS_CHILD_REBUILDING,
                          st->full ? "full rebuild started" : "partial rebuild started");
    IOC_NOTICE("nexus", "nexus %s: child %s: copying %llu of %llu segments",
               nx->bdev.name, c->uri, (unsigned long long)dirty, (unsigned long long)nx->nseg);
    nexus_persist_request(nx);
    rb->active = REBUILD_DEPTH;
    for (unsigned i = 0; i < REBUILD_DEPTH; i++) {
        task_next(&rb->tasks[i]);
        if (c->rebuild != rb) {
            break; /* completed (nothing dirty) or stopped: rb may be gone */
        }
    }
    return 0;
}

/*
 * Stop the child's rebuild: detach it now, release the locks of tasks that
 * wait for one, and let tasks with IO in flight end on their completion.
 */
void
nexus_rebuild_stop(struct nexus_child *c, int why)
{
    struct nexus_rebuild *rb = c->rebuild;

    if (rb == NULL) {
        return;
    }
    c->rebuild = NULL;
    nexus_dirty_merge(c->nexus, c->dirty, rb->copied); /* copied but never flushed */
    c->rb_stats.running = false;
    c->rb_stats.end_ns = ioc_now_ns();
    if (c->rb_stats.result == 0) {
        c->rb_stats.result = why;
    }
    rb->stopping = true;
    if (rb->rate_timer != NULL) {
        ioc_timer_cancel(&rb->rate_timer);
    }
    rb->active++; /* hold: task_idle below must not free rb under the loop */
    for (unsigned i = 0; i < REBUILD_DEPTH; i++) {
        struct rebuild_task *t = &rb->tasks[i];
        if (t->state == TASK_LOCKING && !t->lock.held) {
            nexus_lock_release(rb->nx, &t->lock);
            task_idle(t);
        }
    }
    task_idle_hold_drop(rb);
}

json_t *
nexus_rebuild_json(const struct nexus_child *c)
{
    const struct nexus_rebuild_stats *st = &c->rb_stats;
    json_t *o;
    uint64_t end = st->running ? ioc_now_ns() : st->end_ns;
    double secs;

    if (st->start_ns == 0) {
        return json_null();
    }
    secs = (double)(end - st->start_ns) / 1e9;
    o = json_object();
    json_object_set_new(o, "type", json_string(st->full ? "full" : "partial"));
    json_object_set_new(o, "running", json_boolean(st->running));
    json_object_set_new(o, "segments_total", json_integer((json_int_t)st->segments_total));
    json_object_set_new(o, "segments_done", json_integer((json_int_t)st->segments_done));
    json_object_set_new(o, "segments_copied", json_integer((json_int_t)st->segments_copied));
    json_object_set_new(o, "progress_pct",
                        json_real(st->segments_total
                                      ? 100.0 * (double)st->segments_done /
                                            (double)st->segments_total
                                      : 100.0));
    json_object_set_new(o, "bytes_copied", json_integer((json_int_t)st->bytes_copied));
    json_object_set_new(o, "bytes_zeroed", json_integer((json_int_t)st->bytes_zeroed));
    json_object_set_new(o, "seconds", json_real(secs));
    json_object_set_new(o, "throughput_mib_s",
                        json_real(secs > 0 ? (double)st->bytes_copied / 1048576.0 / secs : 0.0));
    json_object_set_new(o, "result", st->result != 0 ? json_string(strerror(-st->result))
                                                     : json_null());
    return o;
}
