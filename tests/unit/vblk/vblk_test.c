/*
 * tests/unit/vblk/vblk_test.c - libvblk pieces that need no backend: option
 * checks, mode names, the buffer heap, and the split-ring submit/reap logic
 * driven against a fake "device" that completes chains by hand (including a
 * hostile one that reports descriptors we never handed out).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/vblk/vblk_internal.h"

static void
test_vblk_connect_bad_opts(void **state)
{
    struct vblk_opts o;
    struct vblk *v = NULL;

    (void)state;
    vblk_opts_init(&o);
    o.queue_size = 100; /* not a power of two */
    assert_int_equal(vblk_connect("/nonexistent", &o, &v), -EINVAL);
    vblk_opts_init(&o);
    o.opts_size = 4;
    assert_int_equal(vblk_connect("/nonexistent", &o, &v), -EINVAL);
    assert_int_equal(vblk_connect("/nonexistent/sock", NULL, &v), -ENOENT);
    assert_null(v);
}

static void
test_vblk_mode_parse(void **state)
{
    enum vblk_mode m;

    (void)state;
    assert_int_equal(vblk_mode_parse("busy", &m), 0);
    assert_int_equal(m, VBLK_MODE_BUSY);
    assert_int_equal(vblk_mode_parse("adaptive", &m), 0);
    assert_int_equal(m, VBLK_MODE_ADAPTIVE);
    assert_int_equal(vblk_mode_parse("sleepy", &m), -EINVAL);
}

/* A vblk with one queue over heap memory, as vblk_connect would lay it out. */
struct fake {
    struct vblk v;
    uint8_t *mem;
};

static struct fake *
fake_new_with(uint64_t extra_features, enum vblk_mode mode)
{
    struct fake *f = calloc(1, sizeof(*f));
    size_t qlen = vblk_queue_layout_size(8);

    f->v.mem_len = qlen + (1 << 20);
    f->mem = aligned_alloc(4096, (f->v.mem_len + 4095) & ~4095ul);
    memset(f->mem, 0, f->v.mem_len);
    f->v.mem = f->mem;
    f->v.heap = f->mem + ((qlen + 4095) & ~4095ul);
    f->v.heap_len = 512 << 10;
    f->v.heap_pages = f->v.heap_len / 4096;
    f->v.heap_runs = calloc(f->v.heap_pages + 1, 4);
    f->v.heap_used = calloc(f->v.heap_pages + 1, 1);
    pthread_mutex_init(&f->v.heap_lock, NULL);
    f->v.nr_queues = 1;
    f->v.capacity = 1 << 20;
    f->v.block_size = 512;
    f->v.seg_max = 6;
    f->v.features = (1ull << VIRTIO_BLK_F_FLUSH) | extra_features;
    f->v.spin_max_ns = 1000;
    vblk_queue_layout(&f->v.queues[0], f->mem, 8);
    f->v.queues[0].v = &f->v;
    f->v.queues[0].mode = mode;
    f->v.queues[0].kick_fd = -1;
    f->v.sock = -1;
    assert_int_equal(vblk_queue_init_private(&f->v.queues[0]), 0);
    return f;
}

static struct fake *
fake_new(void)
{
    return fake_new_with(0, VBLK_MODE_BUSY);
}

static void
fake_free(struct fake *f)
{
    vblk_queue_fini_private(&f->v.queues[0]);
    free(f->v.heap_runs);
    free(f->v.heap_used);
    free(f->mem);
    free(f);
}

/* The device completes avail entry i with status s. */
static void
device_complete(struct vblk_queue *q, uint16_t avail_pos, uint8_t status)
{
    uint16_t head = q->avail->ring[avail_pos % q->size];
    struct vring_desc *d = &q->desc[head];

    while (d->flags & VRING_DESC_F_NEXT) {
        d = &q->desc[d->next];
    }
    *(uint8_t *)(uintptr_t)d->addr = status;
    q->used->ring[q->used->idx % q->size] = (struct vring_used_elem){head, 1};
    q->used->idx++;
}

static void
test_vblk_queue_submit_reap(void **state)
{
    struct fake *f = fake_new();
    struct vblk_queue *q = &f->v.queues[0];
    void *buf = vblk_buf_alloc(&f->v, 4096);
    struct iovec iov = {buf, 4096};
    struct vblk_completion c[8];
    int cookie[3];

    (void)state;
    q->used->flags = VRING_USED_F_NO_NOTIFY; /* "device polls": kick makes no syscall */
    assert_non_null(buf);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_READ, 0, 0, &iov, 1, &cookie[0]), 0);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_WRITE, 512, 0, &iov, 1, &cookie[1]), 0);
    /* 8 descriptors, 3 per request: the third does not fit */
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, &cookie[2]), 0);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_READ, 0, 0, &iov, 1, NULL), -EAGAIN);
    assert_int_equal(q->avail->idx, 0); /* not published before the kick */
    assert_int_equal(vblk_queue_kick(q), 0);
    assert_int_equal(q->avail->idx, 3);
    device_complete(q, 1, VIRTIO_BLK_S_IOERR);
    device_complete(q, 0, VIRTIO_BLK_S_OK);
    /* a hostile device: an id we never handed out, and a repeat */
    q->used->ring[q->used->idx % 8] = (struct vring_used_elem){7, 1};
    q->used->idx++;
    q->used->ring[q->used->idx % 8] = q->used->ring[(q->used->idx - 1 - 1) % 8];
    q->used->idx++;
    assert_int_equal(vblk_queue_poll(q, c, 8), 2);
    assert_ptr_equal(c[0].cookie, &cookie[1]);
    assert_int_equal(c[0].status, -EIO);
    assert_ptr_equal(c[1].cookie, &cookie[0]);
    assert_int_equal(c[1].status, 0);
    assert_int_equal(vblk_queue_inflight(q), 1);
    device_complete(q, 2, VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(vblk_queue_wait(q, c, 8, 1000), 1);
    assert_int_equal(c[0].status, -ENOTSUP);
    assert_int_equal(q->nr_free, 8);
    vblk_buf_free(&f->v, buf);
    fake_free(f);
}

static void
test_vblk_queue_submit_refused(void **state)
{
    struct fake *f = fake_new();
    struct vblk_queue *q = &f->v.queues[0];
    char outside[512];
    void *buf = vblk_buf_alloc(&f->v, 4096);
    struct iovec bad = {outside, sizeof(outside)}, good = {buf, 4096};

    (void)state;
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_READ, 0, 0, &bad, 1, NULL), -EFAULT);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_READ, 100, 0, &good, 1, NULL), -EINVAL);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_READ, 1 << 20, 0, &good, 1, NULL), -EINVAL);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_DISCARD, 0, 512, NULL, 0, NULL), -ENOTSUP);
    assert_int_equal(q->nr_free, 8);
    fake_free(f);
}

static void
test_vblk_buf_alloc_exhaust(void **state)
{
    struct fake *f = fake_new();
    void *a = vblk_buf_alloc(&f->v, 256 << 10), *b = vblk_buf_alloc(&f->v, 256 << 10);

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_null(vblk_buf_alloc(&f->v, 4096));
    vblk_buf_free(&f->v, a);
    assert_ptr_equal(vblk_buf_alloc(&f->v, 8192), a);
    fake_free(f);
}

/* Queue 1 of the fake, laid out after the heap (the fake maps 1 MiB past the rings). */
static struct vblk_queue *
fake_second_queue(struct fake *f)
{
    struct vblk_queue *q = &f->v.queues[1];

    vblk_queue_layout(q, f->v.heap + f->v.heap_len, 8);
    q->v = &f->v;
    q->index = 1;
    q->mode = f->v.queues[0].mode;
    q->kick_fd = -1;
    assert_int_equal(vblk_queue_init_private(q), 0);
    q->used->flags = VRING_USED_F_NO_NOTIFY;
    f->v.queues[0].used->flags = VRING_USED_F_NO_NOTIFY;
    f->v.nr_queues = 2;
    return q;
}

struct late_completion {
    struct vblk_queue *q;
    int call_fd;
};

static void *
complete_later(void *arg)
{
    struct late_completion *l = arg;
    uint64_t one = 1;

    usleep(50000);
    device_complete(l->q, 0, VIRTIO_BLK_S_OK);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    assert_int_equal(write(l->call_fd, &one, sizeof(one)), 8);
    return NULL;
}

static void
test_vblk_queues_wait(void **state)
{
    struct fake *f = fake_new();
    struct vblk_queue *q0 = &f->v.queues[0], *q1 = fake_second_queue(f);
    struct vblk_queue *set[2] = {q0, q1}, *twice[2] = {q0, q0}, *none[2] = {q0, NULL};
    void *buf = vblk_buf_alloc(&f->v, 4096);
    struct iovec iov = {buf, 4096};
    struct vblk_completion c[8];
    struct late_completion late = {q1, -1};
    pthread_t t;
    int a, b;

    (void)state;
    assert_int_equal(vblk_queues_wait(set, 0, c, 8, 0), -EINVAL);
    assert_int_equal(vblk_queues_wait(twice, 2, c, 8, 0), -EINVAL);
    assert_int_equal(vblk_queues_wait(none, 2, c, 8, 0), -EINVAL);
    assert_int_equal(vblk_queues_wait(set, 2, c, 8, 0), 0); /* nothing in flight */
    /* busy: completions on either queue are reaped by one call */
    assert_int_equal(vblk_queue_submit(q0, VBLK_OP_READ, 0, 0, &iov, 1, &a), 0);
    assert_int_equal(vblk_queue_submit(q1, VBLK_OP_FLUSH, 0, 0, NULL, 0, &b), 0);
    assert_int_equal(vblk_queue_kick(q0), 0);
    assert_int_equal(vblk_queue_kick(q1), 0);
    device_complete(q1, 0, VIRTIO_BLK_S_OK);
    assert_int_equal(vblk_queues_wait(set, 2, c, 8, 1000), 1);
    assert_ptr_equal(c[0].cookie, &b);
    device_complete(q0, 0, VIRTIO_BLK_S_IOERR);
    assert_int_equal(vblk_queues_wait(set, 2, c, 8, 1000), 1);
    assert_ptr_equal(c[0].cookie, &a);
    assert_int_equal(c[0].status, -EIO);
    /* eventfd: one sleep on both call fds; a signal on queue 1 wakes it */
    q0->mode = q1->mode = VBLK_MODE_EVENTFD;
    f->v.sock = -1;
    q0->call_fd = eventfd(0, EFD_NONBLOCK);
    q1->call_fd = eventfd(0, EFD_NONBLOCK);
    late.call_fd = q1->call_fd;
    assert_int_equal(vblk_queue_call_fd(q1), q1->call_fd);
    assert_int_equal(vblk_queue_submit(q0, VBLK_OP_FLUSH, 0, 0, NULL, 0, &a), 0);
    assert_int_equal(vblk_queue_submit(q1, VBLK_OP_FLUSH, 0, 0, NULL, 0, &b), 0);
    assert_int_equal(vblk_queue_kick(q0), 0);
    assert_int_equal(vblk_queue_kick(q1), 0);
    assert_int_equal(pthread_create(&t, NULL, complete_later, &late), 0);
    assert_int_equal(vblk_queues_wait(set, 2, c, 8, 5000), 1);
    pthread_join(t, NULL);
    assert_ptr_equal(c[0].cookie, &b);
    /* q0's request never completes: a timeout, not a hang */
    assert_int_equal(vblk_queues_wait(set, 2, c, 8, 50), 0);
    close(q0->call_fd);
    close(q1->call_fd);
    vblk_queue_fini_private(q1);
    vblk_buf_free(&f->v, buf);
    fake_free(f);
}

/* ------------------------------------------------------------ EVENT_IDX */

/* vring_need_event (lib/vblk/vhost_user_proto.h) is the one copy both libvblk and
 * iocd's vhost target use: tested here once for both sides. */
static void
test_vring_need_event(void **state)
{
    static const struct {
        uint16_t event, new_idx, old_idx;
        bool signal;
    } cases[] = {
        {0, 1, 0, true},
        {1, 1, 0, false},
        {10, 20, 10, true},
        {19, 20, 10, true},
        {20, 20, 10, false},
        {9, 20, 10, false},
        {3, 3, 3, false},
        /* wrap */
        {0xffff, 1, 0xfff0, true},
        {0, 1, 0xfff0, true},
        {0xfff0, 1, 0xfff0, true},
        {1, 1, 0xfff0, false},
        {0xffef, 1, 0xfff0, false},
        {(uint16_t)(0xfff0 + 0x8000), 0x0100, 0xfff0, false},
        /* ev in [old, new) */
        {5, 6, 5, true},
        {6, 6, 5, false},
        {4, 6, 5, false},
        {7, 7, 7, false}, /* nothing moved */
        /* wrap-around: old near 65535, new past 0 */
        {0xfffe, 2, 0xfffe, true},
        {0xffff, 2, 0xfffe, true},
        {0, 2, 0xfffe, true},
        {1, 2, 0xfffe, true},
        {2, 2, 0xfffe, false},
        {0xfffd, 2, 0xfffe, false},
        {0x8000, 2, 0xfffe, false},
        /* an event index far ahead (a spinning client) is never passed */
        {(uint16_t)(100 + 0x8000), 356, 100, false},
        {(uint16_t)(0xff00 + 0x8000), 0x0100, 0xff00, false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (vring_need_event(cases[i].event, cases[i].new_idx, cases[i].old_idx) !=
            cases[i].signal) {
            fail_msg("vring_need_event(%#x, %#x, %#x) should be %d", cases[i].event,
                     cases[i].new_idx, cases[i].old_idx, cases[i].signal);
        }
    }
}

static void
test_vblk_sleep_used_event(void **state)
{
    (void)state;
    /* the sleep's used_event: after about half, never later than the first for QD <= 3 */
    assert_int_equal(vblk_sleep_used_event(100, 0), 100);
    assert_int_equal(vblk_sleep_used_event(100, 1), 100);
    assert_int_equal(vblk_sleep_used_event(100, 2), 100);
    assert_int_equal(vblk_sleep_used_event(100, 3), 100);
    assert_int_equal(vblk_sleep_used_event(100, 4), 101);
    assert_int_equal(vblk_sleep_used_event(100, 32), 115);
    assert_int_equal(vblk_sleep_used_event(0xfff8, 32), 0x0007);
    for (unsigned n = 1; n <= 1024; n++) {
        uint16_t ev = vblk_sleep_used_event(0xff00, n);

        /* the n-th completion (index 0xff00 + n - 1) always passes it */
        assert_true((uint16_t)(ev - 0xff00) < n);
    }
}

static uint64_t
eventfd_take(int fd)
{
    uint64_t v = 0;

    if (read(fd, &v, sizeof(v)) != sizeof(v)) {
        return 0;
    }
    return v;
}

static uint16_t *
avail_event(struct vblk_queue *q)
{
    return (uint16_t *)&q->used->ring[q->size];
}

static uint16_t *
used_event(struct vblk_queue *q)
{
    return &q->avail->ring[q->size];
}

/* Kicks follow avail_event (with wrap); the NO_NOTIFY flag is ignored. */
static void
test_vblk_event_idx_kick(void **state)
{
    struct fake *f = fake_new_with(1ull << VIRTIO_RING_F_EVENT_IDX, VBLK_MODE_BUSY);
    struct vblk_queue *q = &f->v.queues[0];
    struct vblk_completion c[8];

    (void)state;
    assert_true(q->event_idx);
    assert_true(vblk_event_idx(&f->v));
    assert_int_equal(*used_event(q), 0x8000); /* busy: the backend never signals */
    q->kick_fd = eventfd(0, EFD_NONBLOCK);
    q->used->flags = VRING_USED_F_NO_NOTIFY; /* must be ignored */
    *avail_event(q) = 0;
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_kick(q), 0); /* 0 -> 1 passes 0 */
    assert_int_equal(eventfd_take(q->kick_fd), 1);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_kick(q), 0); /* 1 -> 2: the backend polls (still 0) */
    assert_int_equal(eventfd_take(q->kick_fd), 0);
    *avail_event(q) = 2; /* it went to sleep having taken 2 */
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_kick(q), 0);
    assert_int_equal(eventfd_take(q->kick_fd), 1);
    assert_int_equal(q->stats.kicks, 2);
    for (uint16_t i = 0; i < 3; i++) {
        device_complete(q, i, VIRTIO_BLK_S_OK);
    }
    assert_int_equal(vblk_queue_poll(q, c, 8), 3);
    /* wrap: indexes 0xfffe, 0xffff -> 0 */
    q->avail_idx = q->kicked_idx = 0xfffe;
    q->avail->idx = 0xfffe;
    *avail_event(q) = 0xffff;
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_kick(q), 0);
    assert_int_equal(q->avail->idx, 0);
    assert_int_equal(eventfd_take(q->kick_fd), 1);
    *avail_event(q) = 0xfffd; /* behind: polling */
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_kick(q), 0);
    assert_int_equal(eventfd_take(q->kick_fd), 0);
    close(q->kick_fd);
    fake_free(f);
}

struct event_device {
    struct vblk_queue *q;
    uint16_t seen_used_event;
    unsigned complete;
};

/* A device thread: waits for the client to sleep, notes used_event, completes. */
static void *
event_device_run(void *arg)
{
    struct event_device *d = arg;
    uint16_t old = d->q->used->idx;
    uint64_t one = 1;

    usleep(50000);
    d->seen_used_event = __atomic_load_n(used_event(d->q), __ATOMIC_SEQ_CST);
    for (unsigned i = 0; i < d->complete; i++) {
        device_complete(d->q, (uint16_t)(d->q->used->idx), VIRTIO_BLK_S_OK);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (vring_need_event(d->seen_used_event, d->q->used->idx, old)) {
        assert_int_equal(write(d->q->call_fd, &one, sizeof(one)), 8);
    }
    return NULL;
}

/* used_event while sleeping: half the in-flight requests (QD1: the first). */
static void
check_sleep_event(enum vblk_mode mode, unsigned inflight, uint16_t expect_after)
{
    struct fake *f = fake_new_with(1ull << VIRTIO_RING_F_EVENT_IDX, mode);
    struct vblk_queue *q = &f->v.queues[0];
    struct event_device d = {.q = q};
    struct vblk_completion c[8];
    pthread_t t;
    int n = 0;

    q->call_fd = eventfd(0, EFD_NONBLOCK);
    q->used->idx = q->used_idx = 0xfffe; /* the sleep's event index wraps */
    q->used_event = (uint16_t)(q->used_idx + 0x8000);
    q->avail_idx = q->kicked_idx = q->avail->idx = 0xfffe;
    for (unsigned i = 0; i < inflight; i++) {
        assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    }
    *avail_event(q) = 0xfffd; /* the device polls: no kick (there is no kick fd) */
    assert_int_equal(vblk_queue_kick(q), 0);
    d.complete = expect_after;
    assert_int_equal(pthread_create(&t, NULL, event_device_run, &d), 0);
    while (n < (int)expect_after) {
        int rc = vblk_queue_wait(q, c, 8, 5000);

        assert_true(rc > 0);
        n += rc;
    }
    pthread_join(t, NULL);
    assert_int_equal(n, expect_after);
    /* the device woke us exactly when expect_after completions were done */
    assert_int_equal(d.seen_used_event, (uint16_t)(0xfffe + expect_after - 1));
    assert_int_equal(q->stats.sleeps, 1);
    assert_int_equal(q->stats.calls, 1);
    if (mode == VBLK_MODE_ADAPTIVE) {
        assert_int_equal(*used_event(q), (uint16_t)(q->used_idx + 0x8000)); /* spinning again */
    } else {
        assert_int_equal(vblk_queue_poll(q, c, 8), 0);
        assert_int_equal(*used_event(q), q->used_idx); /* outside a wait: the next one */
    }
    close(q->call_fd);
    fake_free(f);
}

/* Requests submitted but not kicked are invisible to the backend: not counted. */
static void
test_vblk_event_idx_unkicked(void **state)
{
    struct fake *f = fake_new_with(1ull << VIRTIO_RING_F_EVENT_IDX, VBLK_MODE_EVENTFD);
    struct vblk_queue *q = &f->v.queues[0];
    struct vblk_completion c[8];

    (void)state;
    q->call_fd = eventfd(0, EFD_NONBLOCK);
    *avail_event(q) = 0xffff; /* polling: no kick fd needed */
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_kick(q), 0);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_submit(q, VBLK_OP_FLUSH, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(vblk_queue_inflight(q), 4);
    assert_int_equal(vblk_queue_wait(q, c, 8, 10), 0); /* times out */
    assert_int_equal(*used_event(q), 0); /* 2 kicked: wake at the first, not the second */
    close(q->call_fd);
    fake_free(f);
}

static void
test_vblk_event_idx_sleep(void **state)
{
    (void)state;
    check_sleep_event(VBLK_MODE_EVENTFD, 1, 1);
    check_sleep_event(VBLK_MODE_ADAPTIVE, 1, 1);
    check_sleep_event(VBLK_MODE_EVENTFD, 4, 2);
    check_sleep_event(VBLK_MODE_ADAPTIVE, 4, 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vblk_connect_bad_opts),
        cmocka_unit_test(test_vblk_mode_parse),
        cmocka_unit_test(test_vblk_queue_submit_reap),
        cmocka_unit_test(test_vblk_queue_submit_refused),
        cmocka_unit_test(test_vblk_buf_alloc_exhaust),
        cmocka_unit_test(test_vblk_queues_wait),
        cmocka_unit_test(test_vring_need_event),
        cmocka_unit_test(test_vblk_sleep_used_event),
        cmocka_unit_test(test_vblk_event_idx_kick),
        cmocka_unit_test(test_vblk_event_idx_sleep),
        cmocka_unit_test(test_vblk_event_idx_unkicked),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
