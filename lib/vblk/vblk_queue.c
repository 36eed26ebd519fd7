/*
 * lib/vblk/vblk_queue.c - libvblk data path: split virtqueues in shared memory.
 *
 * What: vblk_queue_submit() turns a request into a descriptor chain
 * (header, data segments, status byte) and puts its head in the avail ring;
 * vblk_queue_kick() publishes the batch with one store of avail->idx and
 * writes the kick eventfd only if the backend has not set
 * VRING_USED_F_NO_NOTIFY (it is polling); vblk_queue_poll() reaps the used
 * ring; vblk_queue_wait() waits per notification mode.
 *
 * Notification modes:
 *   eventfd   VRING_AVAIL_F_NO_INTERRUPT clear: the backend writes the call
 *             eventfd after each batch of completions; we sleep in poll(2).
 *   busy      NO_INTERRUPT set: the backend never signals; we spin.
 *   adaptive  NO_INTERRUPT set while spinning for a window equal to twice the
 *             mean time completions took to arrive (capped at spin_max_ns;
 *             zero when that mean is far above the cap, i.e. the device is
 *             idle or slow); past the window, clear NO_INTERRUPT, recheck the
 *             ring (the backend may have completed in between: store flag,
 *             full fence, load idx; the backend does store idx, full fence,
 *             load flag, so one of us sees the other), and sleep.
 *
 * EVENT_IDX (negotiated when offered, unless opts.no_event_idx): the ring
 * flags are ignored by both sides and replaced by event indexes (virtio 1.x
 * 2.7.7, 2.7.10). Kicks: after publishing avail->idx (old -> new), fence,
 * read avail_event (after used->ring[size]) and kick only if
 * vring_need_event(avail_event, new, old): a polling backend leaves it behind
 * and gets no kicks, a sleeping one set it to where it stopped. Signals: the
 * backend signals when used->idx passes used_event (after avail->ring[size]),
 * which stands in for NO_INTERRUPT:
 *   - not sleeping in busy/adaptive mode: used_event is kept 0x8000 ahead of
 *     our used index (refreshed once it is less than 0x4000 ahead), beyond
 *     anything the backend can complete, so it never signals;
 *   - before each sleep (adaptive and eventfd): used_event = used index +
 *     batch - 1 with batch = max(1, inflight / 2) per queue, counting only
 *     the requests published by a kick (submitted ones are not yet visible
 *     to the backend and may never complete): one wake-up per
 *     half of the requests in flight instead of one per backend batch, and
 *     still after the first completion when only 1..3 are in flight (a QD1
 *     request is always signalled). Same store, fence, recheck as the flag,
 *     and it cannot wait forever: at least `batch` of the requests in flight
 *     will complete.
 *   - eventfd mode outside vblk_queue_wait (applications polling the call
 *     fd themselves): vblk_queue_poll() sets used_event = used index, i.e.
 *     signal the next completion, as the flag did.
 *
 * Trust: the backend can write anything into shared memory. Free lists,
 * chain lengths and cookies are private; a used element naming a descriptor
 * we did not hand out is ignored, so a broken backend cannot make us free a
 * chain twice or return a stale cookie.
 *
 * Not done: EVENT_IDX, indirect descriptors, out-of-order completion beyond
 * what the used ring gives (it is handled: slots are per head).
 */
#include "ioc/common.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/vblk/vblk_internal.h"

#define VBLK_ALIGN(x, a) (((x) + (a) - 1) & ~(size_t)((a) - 1))
#define VBLK_PREEMPT_NS     100000ull    /* a gap this long while spinning means preemption */
#define VBLK_NOSPIN_MIN_NS  20000000ull
#define VBLK_NOSPIN_MAX_NS  1000000000ull
#define VBLK_MISS_LIMIT     8u           /* spin windows in a row without a completion */
#define VBLK_EVENT_FAR      0x8000u      /* used_event this far ahead: never signalled */
#define VBLK_EVENT_REFRESH  0x4000u      /* move it again once it is less than this ahead */

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ layout */

static size_t
avail_size(unsigned n)
{
    return 4 + 2 * (size_t)n + 2;
}

static size_t
used_size(unsigned n)
{
    return 4 + 8 * (size_t)n + 2;
}

size_t
vblk_queue_layout_size(unsigned n)
{
    return VBLK_ALIGN(16 * (size_t)n, 64) + VBLK_ALIGN(avail_size(n), 64) +
           VBLK_ALIGN(used_size(n), 64) + sizeof(struct vblk_slot) * n;
}

void
vblk_queue_layout(struct vblk_queue *q, uint8_t *base, unsigned n)
{
    q->size = n;
    q->desc = (struct vring_desc *)base;
    base += VBLK_ALIGN(16 * (size_t)n, 64);
    q->avail = (struct vring_avail *)base;
    base += VBLK_ALIGN(avail_size(n), 64);
    q->used = (struct vring_used *)base;
    base += VBLK_ALIGN(used_size(n), 64);
    q->slots = (struct vblk_slot *)base;
}

int
vblk_queue_init_private(struct vblk_queue *q)
{
    q->next_free = calloc(q->size, sizeof(*q->next_free));
    q->chain_len = calloc(q->size, sizeof(*q->chain_len));
    q->cookies = calloc(q->size, sizeof(*q->cookies));
    if (q->next_free == NULL || q->chain_len == NULL || q->cookies == NULL) {
        return -ENOMEM;
    }
    for (unsigned i = 0; i < q->size; i++) {
        q->next_free[i] = (uint16_t)(i + 1);
    }
    q->free_head = 0;
    q->nr_free = q->size;
    q->avail->flags = q->mode == VBLK_MODE_EVENTFD ? 0 : VRING_AVAIL_F_NO_INTERRUPT;
    q->event_idx = vblk_has_feature(q->v, VIRTIO_RING_F_EVENT_IDX);
    q->used_event = q->mode == VBLK_MODE_EVENTFD ? 0 : VBLK_EVENT_FAR;
    q->avail->ring[q->size] = q->used_event;
    return 0;
}

/* ------------------------------------------------------------ event indexes */

static uint16_t *
avail_event_ptr(const struct vblk_queue *q)
{
    return (uint16_t *)&q->used->ring[q->size];
}

static void
used_event_set(struct vblk_queue *q, uint16_t ev)
{
    q->used_event = ev;
    __atomic_store_n(&q->avail->ring[q->size], ev, __ATOMIC_RELAXED);
}

/* Busy/adaptive while not sleeping: keep used_event out of the backend's reach. */
static void
used_event_far(struct vblk_queue *q)
{
    if (q->event_idx && (uint16_t)(q->used_event - q->used_idx) < VBLK_EVENT_REFRESH) {
        used_event_set(q, (uint16_t)(q->used_idx + VBLK_EVENT_FAR));
    }
}

void
vblk_queue_fini_private(struct vblk_queue *q)
{
    free(q->next_free);
    free(q->chain_len);
    free(q->cookies);
    q->next_free = q->chain_len = NULL;
    q->cookies = NULL;
}

/* ------------------------------------------------------------ submit */

static bool
in_shared(const struct vblk *v, const void *p, size_t len)
{
    const uint8_t *b = p;

    return b >= v->mem && len <= v->mem_len && (size_t)(b - v->mem) <= v->mem_len - len;
}

static uint16_t
desc_take(struct vblk_queue *q, uint16_t prev, uint64_t addr, uint32_t len, uint16_t flags)
{
    uint16_t d = q->free_head;

    q->free_head = q->next_free[d];
    q->nr_free--;
    q->desc[d] = (struct vring_desc){.addr = addr, .len = len, .flags = flags};
    if (prev != UINT16_MAX) {
        q->desc[prev].flags |= VRING_DESC_F_NEXT;
        q->desc[prev].next = d;
        q->next_free[prev] = d; /* private copy of the chain link */
    }
    return d;
}

static int
submit_check(struct vblk_queue *q, enum vblk_op op, uint64_t offset, uint64_t length,
             const struct iovec *iov, int iovcnt, uint64_t *bytes)
{
    const struct vblk *v = q->v;

    *bytes = 0;
    if (!vblk_supports(v, op) || op > VBLK_OP_GET_ID) {
        return op == VBLK_OP_WRITE ? -EROFS : -ENOTSUP;
    }
    if ((op == VBLK_OP_DISCARD || op == VBLK_OP_WRITE_ZEROES) && vblk_read_only(v)) {
        return -EROFS;
    }
    if (op == VBLK_OP_READ || op == VBLK_OP_WRITE || op == VBLK_OP_GET_ID) {
        if (iovcnt <= 0 || (unsigned)iovcnt > v->seg_max) {
            return -EINVAL;
        }
        for (int i = 0; i < iovcnt; i++) {
            if (iov[i].iov_len == 0 || iov[i].iov_len > UINT32_MAX ||
                !in_shared(v, iov[i].iov_base, iov[i].iov_len)) {
                return iov[i].iov_len == 0 ? -EINVAL : -EFAULT;
            }
            *bytes += iov[i].iov_len;
        }
        length = op == VBLK_OP_GET_ID ? 0 : *bytes;
    }
    if (op == VBLK_OP_FLUSH || op == VBLK_OP_GET_ID) {
        return 0;
    }
    if (offset % VIRTIO_BLK_SECTOR || length % VIRTIO_BLK_SECTOR || length == 0 ||
        offset > v->capacity || length > v->capacity - offset) {
        return -EINVAL;
    }
    if (op != VBLK_OP_READ && op != VBLK_OP_WRITE && length / VIRTIO_BLK_SECTOR > UINT32_MAX) {
        return -EINVAL;
    }
    return 0;
}

static const uint32_t g_op_type[] = {
    [VBLK_OP_READ] = VIRTIO_BLK_T_IN,           [VBLK_OP_WRITE] = VIRTIO_BLK_T_OUT,
    [VBLK_OP_FLUSH] = VIRTIO_BLK_T_FLUSH,       [VBLK_OP_DISCARD] = VIRTIO_BLK_T_DISCARD,
    [VBLK_OP_WRITE_ZEROES] = VIRTIO_BLK_T_WRITE_ZEROES, [VBLK_OP_GET_ID] = VIRTIO_BLK_T_GET_ID,
};

int
vblk_queue_submit(struct vblk_queue *q, enum vblk_op op, uint64_t offset, uint64_t length,
                  const struct iovec *iov, int iovcnt, void *cookie)
{
    bool dwz = op == VBLK_OP_DISCARD || op == VBLK_OP_WRITE_ZEROES;
    bool data = op == VBLK_OP_READ || op == VBLK_OP_WRITE || op == VBLK_OP_GET_ID;
    unsigned need = 2 + (data ? (unsigned)iovcnt : 0) + (dwz ? 1 : 0);
    uint16_t data_flags = op == VBLK_OP_WRITE ? 0 : VRING_DESC_F_WRITE;
    uint64_t bytes;
    uint16_t head, d;
    struct vblk_slot *s;
    int rc = submit_check(q, op, offset, length, iov, iovcnt, &bytes);

    if (rc != 0) {
        return rc;
    }
    if (q->nr_free < need) {
        return -EAGAIN;
    }
    head = q->free_head;
    s = &q->slots[head];
    s->hdr = (struct virtio_blk_outhdr){.type = g_op_type[op], .sector = offset / 512};
    s->status = 0xff;
    d = desc_take(q, UINT16_MAX, (uintptr_t)&s->hdr, sizeof(s->hdr), 0);
    for (int i = 0; data && i < iovcnt; i++) {
        d = desc_take(q, d, (uintptr_t)iov[i].iov_base, (uint32_t)iov[i].iov_len, data_flags);
    }
    if (dwz) {
        s->dwz = (struct virtio_blk_discard_wz){.sector = offset / 512,
                                                .num_sectors = (uint32_t)(length / 512)};
        d = desc_take(q, d, (uintptr_t)&s->dwz, sizeof(s->dwz), 0);
    }
    desc_take(q, d, (uintptr_t)&s->status, 1, VRING_DESC_F_WRITE);
    q->chain_len[head] = (uint16_t)need;
    q->cookies[head] = cookie;
    q->avail->ring[q->avail_idx % q->size] = head;
    q->avail_idx++;
    q->inflight++;
    return 0;
}

int
vblk_queue_kick(struct vblk_queue *q)
{
    uint64_t one = 1;
    uint16_t old;

    if (q->avail_idx == q->kicked_idx) {
        return 0;
    }
    old = q->kicked_idx;

    __atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
    q->kicked_idx = q->avail_idx;
    atomic_thread_fence(memory_order_seq_cst);
    if (q->event_idx) {
        if (!vring_need_event(__atomic_load_n(avail_event_ptr(q), __ATOMIC_RELAXED),
                             q->avail_idx, old)) {
            return 0;
        }
    } else if (__atomic_load_n(&q->used->flags, __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY) {
        return 0;
    }
    q->stats.kicks++;
    if (write(q->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        return -errno;
    }
    return 0;
}

/* ------------------------------------------------------------ completion */

static void
chain_free(struct vblk_queue *q, uint16_t head, unsigned len)
{
    uint16_t d = head;

    for (unsigned i = 1; i < len; i++) {
        d = q->next_free[d];
    }
    q->next_free[d] = q->free_head; /* the tail joins the free list */
    q->free_head = head;
    q->nr_free += len;
}

static int
status_to_errno(uint8_t s)
{
    switch (s) {
    case VIRTIO_BLK_S_OK:
        return 0;
    case VIRTIO_BLK_S_UNSUPP:
        return -ENOTSUP;
    default:
        return -EIO;
    }
}

/* Reap up to max; refresh: also move used_event as "not sleeping" wants it (busy/adaptive). */
static int
queue_reap(struct vblk_queue *q, struct vblk_completion *out, int max, bool refresh)
{
    uint16_t used = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
    int n = 0;

    while (n < max && q->used_idx != used) {
        struct vring_used_elem e = q->used->ring[q->used_idx % q->size];

        q->used_idx++;
        if (e.id >= q->size || q->chain_len[e.id] == 0) {
            continue; /* not a head we handed out: ignore the backend's garbage */
        }
        out[n].cookie = q->cookies[e.id];
        out[n].status = status_to_errno(__atomic_load_n(&q->slots[e.id].status,
                                                         __ATOMIC_RELAXED));
        chain_free(q, (uint16_t)e.id, q->chain_len[e.id]);
        q->chain_len[e.id] = 0;
        q->inflight--;
        n++;
    }
    if (refresh && q->mode != VBLK_MODE_EVENTFD) {
        used_event_far(q);
    }
    return n;
}

int
vblk_queue_poll(struct vblk_queue *q, struct vblk_completion *out, int max)
{
    int n = queue_reap(q, out, max, true);

    if (q->event_idx && q->mode == VBLK_MODE_EVENTFD && q->used_event != q->used_idx) {
        used_event_set(q, q->used_idx); /* the next completion signals, as without EVENT_IDX */
    }
    return n;
}

void
vblk_queue_get_stats(const struct vblk_queue *q, struct vblk_queue_stats *out)
{
    *out = q->stats;
}

unsigned
vblk_queue_inflight(const struct vblk_queue *q)
{
    return q->inflight;
}

/* ------------------------------------------------------------ waiting */

/*
 * Every wait works on a set of queues of one connection (vblk_queue_wait is
 * the set of one). The adaptive state of a set is kept in its first queue.
 */
struct wait_set {
    struct vblk_queue *const *qs;
    unsigned nq;
    struct vblk_queue *lead;      /* qs[0]: mode and adaptive state */
};

int
vblk_queue_call_fd(const struct vblk_queue *q)
{
    return q->call_fd;
}

/* Reap from every queue of the set, starting after the one that went first last time. */
static int
set_poll(const struct wait_set *s, struct vblk_completion *out, int max, bool refresh)
{
    unsigned start = s->nq > 1 ? s->lead->rr++ % s->nq : 0;
    int n = 0;

    for (unsigned i = 0; i < s->nq && n < max; i++) {
        n += queue_reap(s->qs[(start + i) % s->nq], out + n, max - n, refresh);
    }
    return n;
}

static unsigned
set_inflight(const struct wait_set *s)
{
    unsigned n = 0;

    for (unsigned i = 0; i < s->nq; i++) {
        n += s->qs[i]->inflight;
    }
    return n;
}

/*
 * Ask for signals before a sleep (on = false) or stop them after it (on =
 * true, busy/adaptive only): the flag, or with EVENT_IDX used_event. The
 * caller fences and rechecks the rings after asking.
 */
static void
set_no_interrupt(const struct wait_set *s, bool on)
{
    for (unsigned i = 0; i < s->nq; i++) {
        struct vblk_queue *q = s->qs[i];

        if (!q->event_idx) {
            __atomic_store_n(&q->avail->flags, on ? VRING_AVAIL_F_NO_INTERRUPT : 0,
                             __ATOMIC_RELAXED);
        } else if (on) {
            used_event_set(q, (uint16_t)(q->used_idx + VBLK_EVENT_FAR));
        } else {
            /* only what the backend was told about can complete */
            unsigned kicked = q->inflight - (uint16_t)(q->avail_idx - q->kicked_idx);

            used_event_set(q, vblk_sleep_used_event(q->used_idx, kicked));
        }
    }
}

/* Sleep on the call eventfds of the set at once; -EPIPE if the backend hung up. */
static int
sleep_call(const struct wait_set *s, int timeout_ms)
{
    struct pollfd p[VBLK_MAX_QUEUES + 1];
    uint64_t val;
    int rc;

    for (unsigned i = 0; i < s->nq; i++) {
        p[i] = (struct pollfd){.fd = s->qs[i]->call_fd, .events = POLLIN};
    }
    p[s->nq] = (struct pollfd){.fd = s->lead->v->sock, .events = POLLIN | POLLRDHUP};
    do {
        rc = poll(p, s->nq + 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        return -errno;
    }
    if (p[s->nq].revents != 0) {
        return -EPIPE;
    }
    for (unsigned i = 0; i < s->nq; i++) {
        if (!(p[i].revents & POLLIN)) {
            continue;
        }
        if (read(p[i].fd, &val, sizeof(val)) == sizeof(val)) {
            s->qs[i]->stats.calls += val;
        } else if (errno != EAGAIN) {
            return -errno;
        }
    }
    return 0;
}

/*
 * Spin on the used rings until `until` (0: no limit) or the deadline. Returns
 * the number reaped, 0 when the window ran out, or -EAGAIN when the spinner
 * found it had been preempted (a gap of more than VBLK_PREEMPT_NS between two
 * looks at the clock): on a machine with more runnable threads than cores,
 * spinning then takes the CPU from the backend we are waiting for, so the
 * adaptive mode stops spinning for a while (see adapt_backoff). In busy
 * mode the spinner only yields the CPU after 200 us without a completion.
 */
static int
wait_spin(const struct wait_set *s, struct vblk_completion *out, int max, uint64_t until,
          uint64_t deadline)
{
    uint64_t start = now_ns(), last = start;

    for (unsigned i = 1;; i++) {
        int n = set_poll(s, out, max, true);

        if (n != 0) {
            return n;
        }
        if ((i & 63) == 0) {
            uint64_t now = now_ns();

            if ((until != 0 && now >= until) || (deadline != 0 && now >= deadline)) {
                return 0;
            }
            if (s->lead->mode == VBLK_MODE_ADAPTIVE && now - last > VBLK_PREEMPT_NS) {
                return -EAGAIN;
            }
            if (s->lead->mode == VBLK_MODE_BUSY && now - start > 200000) {
                sched_yield();
            }
            last = now;
        }
    }
}

static int
wait_sleep(const struct wait_set *s, struct vblk_completion *out, int max, uint64_t deadline)
{
    for (;;) {
        int n, rc, ms = -1;

        if (s->lead->mode != VBLK_MODE_EVENTFD || s->lead->event_idx) {
            set_no_interrupt(s, false);
            atomic_thread_fence(memory_order_seq_cst);
        }
        s->lead->stats.arms++;
        n = set_poll(s, out, max, false);
        if (n != 0) {
            return n;
        }
        if (deadline != 0) {
            uint64_t now = now_ns();

            if (now >= deadline) {
                return 0;
            }
            ms = (int)((deadline - now + 999999) / 1000000);
        }
        s->lead->stats.sleeps++;
        rc = sleep_call(s, ms);
        if (rc != 0) {
            return rc;
        }
    }
}

static void
adapt(struct vblk_queue *q, uint64_t waited_ns)
{
    uint64_t cap = q->v->spin_max_ns;

    q->gap_ewma_ns = (q->gap_ewma_ns * 7 + waited_ns) / 8;
    if (q->gap_ewma_ns > 4 * cap) {
        q->spin_ns = 0; /* completions are rare or slow: sleep at once */
    } else {
        q->spin_ns = IOC_VBLK_MIN(2 * q->gap_ewma_ns + 2000, cap);
    }
}

/*
 * Spinning does not pay: it was preempted (the CPU is oversubscribed), or
 * VBLK_MISS_LIMIT windows in a row passed without a completion (on a shared
 * CPU our spinning can be what delays the backend: it may be queued behind
 * us on this very core). Sleep-only for a back-off period that doubles while
 * this keeps happening (20 ms .. 1 s) and resets after a successful spin
 * past the back-off.
 *
 * Why a run of misses and not one: measured on the 2-vCPU VM (QD32 4k
 * randread, page-cache file, iocd polling on the other vCPU), the preemption
 * gap never fired, but single missed windows did: a window was at most
 * spin_max_ns (then 50 us, now 200: less than the 60-70 us between
 * completion bursts of a 32-request batch made every window miss), and the
 * first windows are short while the mean gap is learnt. Backing off at the
 * first miss, 7 misses took the back-off to 1 s within the first 1.3 s of a
 * run, so adaptive slept on every batch (0.3 s of CPU per 2 s, 0.66-0.83x of
 * direct io_uring); ignoring misses it spun (1.9 s of CPU, 0.80-0.96x).
 * A single miss already costs a sleep and lengthens the window (adapt());
 * only a run of them says the backend is not getting the CPU.
 */
static void
adapt_backoff(struct vblk_queue *q, uint64_t now)
{
    q->nospin_ns = q->nospin_ns == 0 ? VBLK_NOSPIN_MIN_NS
                                     : IOC_VBLK_MIN(q->nospin_ns * 2, VBLK_NOSPIN_MAX_NS);
    q->nospin_until = now + q->nospin_ns;
}

static int
set_wait(const struct wait_set *s, struct vblk_completion *out, int max, int timeout_ms)
{
    struct vblk_queue *q = s->lead;
    uint64_t start = now_ns();
    uint64_t deadline = timeout_ms < 0 ? 0 : start + (uint64_t)timeout_ms * 1000000ull;
    int n = set_poll(s, out, max, true);

    if (n != 0 || set_inflight(s) == 0) {
        return n;
    }
    switch (q->mode) {
    case VBLK_MODE_BUSY:
        return wait_spin(s, out, max, 0, deadline);
    case VBLK_MODE_EVENTFD:
        return wait_sleep(s, out, max, deadline);
    default:
        break;
    }
    n = 0;
    if (q->spin_ns != 0 && start >= q->nospin_until) {
        n = wait_spin(s, out, max, start + q->spin_ns, deadline);
        if (n < 0) {
            q->stats.preempts++;
            q->miss_run = 0;
            adapt_backoff(q, now_ns());
            n = 0;
        } else if (n == 0) {
            q->stats.spin_misses++;
            if (++q->miss_run >= VBLK_MISS_LIMIT) {
                q->stats.backoffs++;
                q->miss_run = 0;
                adapt_backoff(q, now_ns());
            }
        } else {
            q->miss_run = 0;
            if (q->nospin_until != 0 && start > q->nospin_until + q->nospin_ns) {
                q->nospin_ns = 0; /* spinning works again */
            }
        }
    }
    if (n == 0) {
        n = wait_sleep(s, out, max, deadline);
        set_no_interrupt(s, true);
    }
    if (n > 0) {
        adapt(q, now_ns() - start);
    }
    return n;
}

int
vblk_queue_wait(struct vblk_queue *q, struct vblk_completion *out, int max, int timeout_ms)
{
    struct vblk_queue *const qs[1] = {q};
    struct wait_set s = {.qs = qs, .nq = 1, .lead = q};

    return set_wait(&s, out, max, timeout_ms);
}

int
vblk_queues_wait(struct vblk_queue *const *qs, unsigned nq, struct vblk_completion *out,
                 int max, int timeout_ms)
{
    struct wait_set s = {.qs = qs, .nq = nq};

    if (nq == 0 || nq > VBLK_MAX_QUEUES || max <= 0) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < nq; i++) {
        if (qs[i] == NULL || qs[i]->v != qs[0]->v) {
            return -EINVAL;
        }
        for (unsigned j = 0; j < i; j++) {
            if (qs[j] == qs[i]) {
                return -EINVAL;
            }
        }
    }
    s.lead = qs[0];
    return set_wait(&s, out, max, timeout_ms);
}
