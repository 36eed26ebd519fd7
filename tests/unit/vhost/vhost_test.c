/*
 * tests/unit/vhost/vhost_test.c - the vhost-user-blk engine without sockets:
 * control messages (vhost_msg.c), ring validation (vhost_vring.c) and
 * virtio-blk requests (vhost_blk.c) on a local reactor with a malloc bdev.
 *
 * "Guest memory" is a heap buffer installed with vhost_dev_add_region() at a
 * guest-physical base different from its user base, so translation is
 * exercised. Hostile chains must mark the device broken without touching
 * anything outside the buffer (ASan checks the "outside" part).
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bdev/malloc/bdev_malloc.h"
#include "target/vhost/vhost_internal.h"

#define MEM_SIZE  (1u << 20)
#define GPA_BASE  0x100000ull
#define UVA_BASE  0x7f0000000000ull
#define QSIZE     8u
#define OFF_DESC  0x0000u
#define OFF_AVAIL 0x1000u
#define OFF_USED  0x2000u
#define OFF_HDR   0x3000u
#define OFF_STAT  0x3100u
#define OFF_DATA  0x4000u
#define DISK_SIZE (4u << 20)

static struct ioc_reactor *g_r;
static struct ioc_bdev *g_bdev;

struct fixture {
    struct vhost_dev dev;
    uint8_t *mem;
    unsigned started, completed;
};

static void
fx_started(struct vhost_dev *dev, struct vhost_queue *vq)
{
    (void)vq;
    ((struct fixture *)dev->ctx)->started++;
}

static void
fx_completed(struct vhost_dev *dev, struct vhost_queue *vq)
{
    (void)vq;
    ((struct fixture *)dev->ctx)->completed++;
}

static const struct vhost_dev_ops g_fx_ops = {.queue_started = fx_started,
                                              .completed = fx_completed};

static int
msg(struct vhost_dev *dev, uint32_t req, const void *p, uint32_t size, int fd,
    struct vhost_reply *reply)
{
    struct vhost_user_hdr h = {.request = req, .flags = VHOST_USER_VERSION, .size = size};
    struct vhost_reply scratch;
    int fds[1] = {fd};

    return vhost_dev_handle_msg(dev, &h, p, fds, fd >= 0 ? 1 : 0, reply ? reply : &scratch);
}

static int
msg_u64(struct vhost_dev *dev, uint32_t req, uint64_t v, int fd)
{
    return msg(dev, req, &v, sizeof(v), fd, NULL);
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    f->mem = aligned_alloc(4096, MEM_SIZE);
    memset(f->mem, 0, MEM_SIZE);
    vhost_dev_init(&f->dev, &g_fx_ops, f, g_bdev, false, 2);
    strcpy(f->dev.name, "test");
    assert_int_equal(vhost_dev_add_region(&f->dev, GPA_BASE, UVA_BASE, MEM_SIZE, f->mem), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    vhost_dev_fini(&f->dev);
    free(f->mem);
    free(f);
    return 0;
}

/* Negotiate (with extra feature bits) and start queue 0 with rings at fixed offsets. */
static struct vhost_queue *
start_queue_features(struct fixture *f, uint64_t extra)
{
    struct vhost_user_state num = {.index = 0, .num = QSIZE};
    struct vhost_user_state en = {.index = 0, .num = 1};
    struct vhost_user_addr addr = {.index = 0, .desc_user_addr = UVA_BASE + OFF_DESC,
                                   .avail_user_addr = UVA_BASE + OFF_AVAIL,
                                   .used_user_addr = UVA_BASE + OFF_USED};

    assert_int_equal(msg_u64(&f->dev, VHOST_USER_SET_FEATURES,
                             (1ull << VIRTIO_F_VERSION_1) |
                                 (1ull << VHOST_USER_F_PROTOCOL_FEATURES) | extra, -1), 0);
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_VRING_NUM, &num, sizeof(num), -1, NULL), 0);
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr), -1, NULL), 0);
    assert_int_equal(msg_u64(&f->dev, VHOST_USER_SET_VRING_CALL, 0, eventfd(0, EFD_NONBLOCK)),
                     0);
    assert_int_equal(msg_u64(&f->dev, VHOST_USER_SET_VRING_KICK, 0, eventfd(0, EFD_NONBLOCK)),
                     0);
    assert_int_equal(f->started, 0); /* protocol features: not before ENABLE */
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_VRING_ENABLE, &en, sizeof(en), -1, NULL), 0);
    assert_int_equal(f->started, 1);
    return &f->dev.queues[0];
}

static struct vhost_queue *
start_queue(struct fixture *f)
{
    return start_queue_features(f, 0);
}

static struct vring_desc *
desc(struct fixture *f)
{
    return (struct vring_desc *)(f->mem + OFF_DESC);
}

static void
publish(struct fixture *f, uint16_t head)
{
    struct vring_avail *a = (struct vring_avail *)(f->mem + OFF_AVAIL);

    a->ring[a->idx % QSIZE] = head;
    a->idx++;
}

/* A 3-descriptor request: header, data, status. */
static void
put_request(struct fixture *f, uint32_t type, uint64_t sector, uint32_t len)
{
    struct virtio_blk_outhdr *h = (void *)(f->mem + OFF_HDR);
    uint16_t dflags = type == VIRTIO_BLK_T_OUT ? 0 : VRING_DESC_F_WRITE;

    *h = (struct virtio_blk_outhdr){.type = type, .sector = sector};
    desc(f)[0] = (struct vring_desc){GPA_BASE + OFF_HDR, 16, VRING_DESC_F_NEXT, 1};
    desc(f)[1] = (struct vring_desc){GPA_BASE + OFF_DATA, len, dflags | VRING_DESC_F_NEXT, 2};
    desc(f)[2] = (struct vring_desc){GPA_BASE + OFF_STAT, 1, VRING_DESC_F_WRITE, 0};
    f->mem[OFF_STAT] = 0xff;
    publish(f, 0);
}

static void
run_until_completed(struct fixture *f, unsigned n)
{
    for (int i = 0; i < 10000 && f->completed < n; i++) {
        ioc_reactor_poll_once(g_r);
    }
    assert_int_equal(f->completed, n);
}

static uint16_t
used_idx(struct fixture *f)
{
    return ((struct vring_used *)(f->mem + OFF_USED))->idx;
}

/* ------------------------------------------------------------ control messages */

static void
test_vhost_dev_handle_msg_features(void **state)
{
    struct fixture *f = *state;
    struct vhost_reply r;
    uint64_t v;

    assert_int_equal(msg(&f->dev, VHOST_USER_GET_FEATURES, NULL, 0, -1, &r), 0);
    assert_int_equal(r.hdr.size, 8);
    assert_true(r.hdr.flags & VHOST_USER_REPLY_FLAG);
    memcpy(&v, r.payload, 8);
    assert_true(v & (1ull << VIRTIO_F_VERSION_1));
    assert_true(v & (1ull << VIRTIO_BLK_F_FLUSH));
    /* acking a feature we never offered */
    assert_int_equal(msg_u64(&f->dev, VHOST_USER_SET_FEATURES, 1ull << 63, -1), -EINVAL);
    /* REPLY_ACK: a failing setting answers 1 instead of dropping the client */
    assert_int_equal(msg_u64(&f->dev, VHOST_USER_SET_PROTOCOL_FEATURES,
                             1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK, -1), 0);
    struct vhost_user_hdr h = {.request = VHOST_USER_SET_FEATURES,
                               .flags = VHOST_USER_VERSION | VHOST_USER_NEED_REPLY, .size = 8};
    v = 1ull << 63;
    int fds[1];
    assert_int_equal(vhost_dev_handle_msg(&f->dev, &h, &v, fds, 0, &r), 0);
    memcpy(&v, r.payload, 8);
    assert_int_equal(v, 1);
}

static void
test_vhost_dev_handle_msg_config(void **state)
{
    struct fixture *f = *state;
    struct vhost_user_config cfg = {.offset = 0, .size = sizeof(struct virtio_blk_config)};
    struct virtio_blk_config bc;
    struct vhost_reply r;

    assert_int_equal(msg(&f->dev, VHOST_USER_GET_CONFIG, &cfg, 12 + cfg.size, -1, &r), 0);
    memcpy(&bc, r.payload + 12, sizeof(bc));
    assert_int_equal(bc.capacity, DISK_SIZE / 512);
    assert_int_equal(bc.num_queues, 2);
    assert_int_equal(bc.seg_max, VHOST_SEG_MAX);
    /* beyond the config space, and a size that disagrees with the message */
    cfg.offset = 50;
    assert_int_equal(msg(&f->dev, VHOST_USER_GET_CONFIG, &cfg, 12 + cfg.size, -1, &r), -EINVAL);
    cfg.offset = 0;
    assert_int_equal(msg(&f->dev, VHOST_USER_GET_CONFIG, &cfg, 12, -1, &r), -EINVAL);
}

static void
test_vhost_dev_handle_msg_bad_vring(void **state)
{
    struct fixture *f = *state;
    struct vhost_user_state s = {.index = 0, .num = 6};
    struct vhost_user_addr a = {.index = 0, .desc_user_addr = UVA_BASE + MEM_SIZE - 16,
                                .avail_user_addr = UVA_BASE, .used_user_addr = UVA_BASE};

    assert_int_equal(msg(&f->dev, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), -1, NULL), -EINVAL);
    s.num = 8;
    s.index = 2; /* export has 2 queues */
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), -1, NULL), -EINVAL);
    s.index = 0;
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_VRING_NUM, &s, 4, -1, NULL), -EINVAL);
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), -1, NULL), 0);
    /* descriptor table running past the end of the region */
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), -1, NULL), -EINVAL);
    a.desc_user_addr = 0x1000; /* not in the table at all */
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), -1, NULL), -EINVAL);
    /* a passed fd is consumed even when the message is refused */
    int fd = eventfd(0, 0);
    assert_int_equal(msg_u64(&f->dev, VHOST_USER_SET_VRING_CALL, 7, fd), -EINVAL);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    /* mem table without its fds */
    struct vhost_user_mem m = {.nregions = 1};
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, -1, NULL), -EINVAL);
}

static void
test_vhost_dev_handle_msg_mem_table(void **state)
{
    struct fixture *f = *state;
    struct vhost_user_mem m = {.nregions = 1};
    int fd = memfd_create("t", 0);

    assert_int_equal(ftruncate(fd, 64 << 10), 0);
    /* a region larger than the file: touching its tail would SIGBUS */
    m.regions[0] = (struct vhost_user_region){.guest_phys_addr = 0x1000, .memory_size = 1 << 20,
                                              .userspace_addr = 0x1000};
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, dup(fd), NULL),
                     -EINVAL);
    assert_int_equal(f->dev.nr_regions, 0);
    m.regions[0].memory_size = 32 << 10;
    m.regions[0].mmap_offset = 32 << 10;
    assert_int_equal(msg(&f->dev, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, dup(fd), NULL), 0);
    assert_int_equal(f->dev.nr_regions, 1);
    assert_non_null(vhost_gpa_to_host(&f->dev, 0x1000, 32 << 10));
    assert_null(vhost_gpa_to_host(&f->dev, 0x1000, (32 << 10) + 1));
    assert_null(vhost_gpa_to_host(&f->dev, 0xfff, 2));
    close(fd);
}

/* ------------------------------------------------------------ requests */

static void
test_vhost_blk_process_write_read(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    memset(f->mem + OFF_DATA, 0xa5, 4096);
    put_request(f, VIRTIO_BLK_T_OUT, 8, 4096);
    assert_int_equal(vhost_blk_process(vq, QSIZE), 1);
    run_until_completed(f, 1);
    assert_int_equal(f->mem[OFF_STAT], VIRTIO_BLK_S_OK);
    assert_int_equal(used_idx(f), 1);

    memset(f->mem + OFF_DATA, 0, 4096);
    put_request(f, VIRTIO_BLK_T_IN, 8, 4096);
    assert_int_equal(vhost_blk_process(vq, QSIZE), 1);
    run_until_completed(f, 2);
    assert_int_equal(f->mem[OFF_STAT], VIRTIO_BLK_S_OK);
    assert_int_equal(f->mem[OFF_DATA + 4095], 0xa5);
    assert_int_equal(((struct vring_used *)(f->mem + OFF_USED))->ring[1].len, 4097);
    assert_false(f->dev.broken);
}

static void
test_vhost_blk_process_errors(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    put_request(f, VIRTIO_BLK_T_IN, DISK_SIZE / 512, 4096); /* past the end */
    assert_int_equal(vhost_blk_process(vq, QSIZE), 1);
    run_until_completed(f, 1);
    assert_int_equal(f->mem[OFF_STAT], VIRTIO_BLK_S_IOERR);
    put_request(f, 99, 0, 512); /* unknown type */
    assert_int_equal(vhost_blk_process(vq, QSIZE), 1);
    run_until_completed(f, 2);
    assert_int_equal(f->mem[OFF_STAT], VIRTIO_BLK_S_UNSUPP);
    put_request(f, VIRTIO_BLK_T_GET_ID, 0, 20);
    assert_int_equal(vhost_blk_process(vq, QSIZE), 1);
    run_until_completed(f, 3);
    assert_int_equal(f->mem[OFF_STAT], VIRTIO_BLK_S_OK);
    assert_memory_equal(f->mem + OFF_DATA, "vhosttest0", 10);
    put_request(f, VIRTIO_BLK_T_FLUSH, 0, 1);
    desc(f)[0].next = 2; /* header then status only */
    assert_int_equal(vhost_blk_process(vq, QSIZE), 1);
    run_until_completed(f, 4);
    assert_int_equal(f->mem[OFF_STAT], VIRTIO_BLK_S_OK);
    assert_false(f->dev.broken);
}

/* Each hostile chain: refused, device broken, nothing completed, no crash. */
static void
expect_broken(struct fixture *f, struct vhost_queue *vq)
{
    assert_int_equal(vhost_blk_process(vq, QSIZE), 0);
    assert_true(f->dev.broken);
    assert_int_equal(used_idx(f), 0);
    assert_int_equal(f->completed, 0);
    assert_false(vhost_queue_ready(vq));
}

static void
test_vhost_vring_pop_addr_out_of_range(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    put_request(f, VIRTIO_BLK_T_IN, 0, 4096);
    desc(f)[1].addr = GPA_BASE + MEM_SIZE - 100; /* straddles the end */
    expect_broken(f, vq);
}

static void
test_vhost_vring_pop_addr_wraps(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    put_request(f, VIRTIO_BLK_T_IN, 0, 4096);
    desc(f)[1].addr = UINT64_MAX - 10;
    expect_broken(f, vq);
}

static void
test_vhost_vring_pop_loop(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    put_request(f, VIRTIO_BLK_T_IN, 0, 4096);
    desc(f)[2].flags |= VRING_DESC_F_NEXT;
    desc(f)[2].next = 1; /* 1 -> 2 -> 1 ... */
    expect_broken(f, vq);
}

static void
test_vhost_vring_pop_next_out_of_range(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    put_request(f, VIRTIO_BLK_T_IN, 0, 4096);
    desc(f)[1].next = QSIZE;
    expect_broken(f, vq);
}

static void
test_vhost_vring_pop_head_out_of_range(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    publish(f, 1000);
    expect_broken(f, vq);
}

static void
test_vhost_vring_pop_avail_runs_ahead(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    put_request(f, VIRTIO_BLK_T_IN, 0, 4096);
    ((struct vring_avail *)(f->mem + OFF_AVAIL))->idx = QSIZE + 1;
    expect_broken(f, vq);
}

static void
test_vhost_vring_pop_read_after_write(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    put_request(f, VIRTIO_BLK_T_IN, 0, 4096);
    desc(f)[2].flags = 0; /* status readable, after a writable descriptor */
    expect_broken(f, vq);
}

static void
test_vhost_vring_pop_indirect(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    put_request(f, VIRTIO_BLK_T_IN, 0, 4096);
    desc(f)[0].flags |= VRING_DESC_F_INDIRECT;
    expect_broken(f, vq);
}

static void
test_vhost_blk_process_no_status(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);

    put_request(f, VIRTIO_BLK_T_OUT, 0, 4096);
    desc(f)[1].flags = 0; /* OUT data, and no writable status after it */
    expect_broken(f, vq);
}

/* Which queues a message may change (the glue stops those first). */
static void
test_vhost_msg_queue_mask(void **state)
{
    struct fixture *f = *state;
    struct vhost_user_hdr h = {.flags = VHOST_USER_VERSION};
    struct vhost_user_state st = {.index = 1, .num = 8};
    struct vhost_user_addr a = {.index = 0};
    uint64_t u64;

    h.request = VHOST_USER_GET_FEATURES;
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, NULL), 0);
    h.request = VHOST_USER_GET_CONFIG;
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, NULL), 0);
    h.request = VHOST_USER_SET_MEM_TABLE; /* every queue (2 here) */
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, NULL), 3);
    h.request = VHOST_USER_SET_FEATURES;
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, NULL), 3);
    h.request = 99; /* unknown: conservative */
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, NULL), 3);
    h.request = VHOST_USER_SET_VRING_NUM;
    h.size = sizeof(st);
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, &st), 2);
    h.request = VHOST_USER_GET_VRING_BASE;
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, &st), 2);
    st.index = 5; /* out of range: refused later; all queues meanwhile */
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, &st), 3);
    h.size = 4;   /* too short to hold the index */
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, &st), 3);
    h.request = VHOST_USER_SET_VRING_ADDR;
    h.size = sizeof(a);
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, &a), 1);
    h.request = VHOST_USER_SET_VRING_KICK;
    h.size = 8;
    u64 = 1 | VHOST_USER_VRING_NOFD;
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, &u64), 2);
    h.request = VHOST_USER_SET_VRING_CALL;
    u64 = 0;
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, &u64), 1);
    u64 = 7;
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, &u64), 3);
    h.request = VHOST_USER_SET_VRING_ERR;
    assert_int_equal(vhost_msg_queue_mask(&f->dev, &h, &u64), 0);
}

/* ------------------------------------------------------------ EVENT_IDX */

static uint16_t *
fx_used_event(struct fixture *f)
{
    return &((struct vring_avail *)(f->mem + OFF_AVAIL))->ring[QSIZE];
}

static uint16_t *
fx_avail_event(struct fixture *f)
{
    return (uint16_t *)&((struct vring_used *)(f->mem + OFF_USED))->ring[QSIZE];
}

static void
test_vhost_event_idx_offered(void **state)
{
    struct fixture *f = *state;
    struct vhost_reply r;
    uint64_t v;

    assert_int_equal(msg(&f->dev, VHOST_USER_GET_FEATURES, NULL, 0, -1, &r), 0);
    memcpy(&v, r.payload, 8);
    assert_true(v & (1ull << VIRTIO_RING_F_EVENT_IDX));
    assert_false(v & (1ull << VIRTIO_RING_F_INDIRECT_DESC));
}

/* Signals follow used_event (with wrap), and NO_INTERRUPT is ignored. */
static void
test_vhost_event_idx_signal(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue_features(f, 1ull << VIRTIO_RING_F_EVENT_IDX);
    struct vring_avail *a = (struct vring_avail *)(f->mem + OFF_AVAIL);

    assert_true(vhost_queue_event_idx(vq));
    a->flags = VRING_AVAIL_F_NO_INTERRUPT; /* must be ignored */
    vq->signalled_used = vq->used_idx = 0xfffc;
    assert_false(vhost_vring_need_signal(vq)); /* nothing new */
    /* 0xfffc -> 0xfffe with used_event 0: not yet */
    *fx_used_event(f) = 0;
    vq->used_idx = 0xfffe;
    assert_false(vhost_vring_need_signal(vq));
    assert_int_equal(vq->signalled_used, 0xfffe); /* the window moves even without a signal */
    /* 0xfffe -> 1 passes 0 */
    vq->used_idx = 1;
    assert_true(vhost_vring_need_signal(vq));
    assert_int_equal(vq->signalled_used, 1);
    /* used_event == the old index: the first push signals (QD1) */
    *fx_used_event(f) = 1;
    vq->used_idx = 2;
    assert_true(vhost_vring_need_signal(vq));
    /* an event far ahead: a spinning client gets nothing */
    *fx_used_event(f) = 2 + 0x8000;
    vq->used_idx = 300;
    assert_false(vhost_vring_need_signal(vq));
    /* a real batch through the engine: the signal comes once used passes used_event */
    a->flags = 0;
    vq->signalled_used = vq->used_idx = used_idx(f);
    *fx_used_event(f) = (uint16_t)(used_idx(f) + 1);
    put_request(f, VIRTIO_BLK_T_IN, 0, 512);
    assert_int_equal(vhost_blk_process(vq, 8), 1);
    run_until_completed(f, 1);
    assert_false(vhost_vring_need_signal(vq)); /* one done, used_event wants two */
    put_request(f, VIRTIO_BLK_T_IN, 8, 512);
    assert_int_equal(vhost_blk_process(vq, 8), 1);
    run_until_completed(f, 2);
    assert_true(vhost_vring_need_signal(vq));
}

/* The push that passes used_event signals at once; the fenced check then has nothing left. */
static void
test_vhost_event_idx_early_signal(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue_features(f, 1ull << VIRTIO_RING_F_EVENT_IDX);

    vq->signalled_used = vq->used_idx = 0xfffe;
    *fx_used_event(f) = 0xffff; /* wake after the second completion */
    vq->used_idx = 0xffff;
    assert_false(vhost_vring_early_signal(vq));
    assert_int_equal(vq->signalled_used, 0xfffe); /* no decision yet */
    vq->used_idx = 0;
    assert_true(vhost_vring_early_signal(vq));
    assert_int_equal(vq->signalled_used, 0);
    vq->used_idx = 3;
    assert_false(vhost_vring_early_signal(vq));
    assert_false(vhost_vring_need_signal(vq)); /* 0xffff was signalled already */
    assert_int_equal(vq->signalled_used, 3);
}

/* Without EVENT_IDX the flag rules, and used_event is ignored. */
static void
test_vhost_event_idx_not_negotiated(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue(f);
    struct vring_avail *a = (struct vring_avail *)(f->mem + OFF_AVAIL);

    assert_false(vhost_queue_event_idx(vq));
    *fx_used_event(f) = 1000;
    vq->signalled_used = 0;
    vq->used_idx = 3;
    a->flags = VRING_AVAIL_F_NO_INTERRUPT;
    assert_false(vhost_vring_need_signal(vq));
    a->flags = 0;
    assert_true(vhost_vring_need_signal(vq));
    /* avail_event is never written */
    *fx_avail_event(f) = 0x5555;
    vq->last_avail = 7;
    vhost_vring_set_no_notify(vq, false);
    assert_int_equal(*fx_avail_event(f), 0x5555);
}

/* Wanting kicks publishes avail_event = last_avail; polling leaves it alone. */
static void
test_vhost_event_idx_avail_event(void **state)
{
    struct fixture *f = *state;
    struct vhost_queue *vq = start_queue_features(f, 1ull << VIRTIO_RING_F_EVENT_IDX);
    struct vring_used *u = (struct vring_used *)(f->mem + OFF_USED);

    vq->last_avail = 0xffff;
    vhost_vring_set_no_notify(vq, false);
    assert_int_equal(*fx_avail_event(f), 0xffff);
    assert_int_equal(u->flags, 0);
    vq->last_avail = 5;
    vhost_vring_set_no_notify(vq, true);
    assert_int_equal(*fx_avail_event(f), 0xffff);
    assert_int_equal(u->flags, VRING_USED_F_NO_NOTIFY);
    vhost_vring_set_no_notify(vq, false);
    assert_int_equal(*fx_avail_event(f), 5);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vhost_dev_handle_msg_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_dev_handle_msg_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_dev_handle_msg_bad_vring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_dev_handle_msg_mem_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_blk_process_write_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_blk_process_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_vring_pop_addr_out_of_range, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_vhost_vring_pop_addr_wraps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_vring_pop_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_vring_pop_next_out_of_range, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_vhost_vring_pop_head_out_of_range, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_vhost_vring_pop_avail_runs_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_vring_pop_read_after_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_vring_pop_indirect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_blk_process_no_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_msg_queue_mask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_event_idx_offered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_event_idx_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_event_idx_early_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_event_idx_not_negotiated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhost_event_idx_avail_event, setup, teardown),
    };
    int rc;

    if (ioc_reactor_create_local(NULL, &g_r) < 0 ||
        ioc_bdev_malloc_create("vhosttest0", DISK_SIZE, 512, NULL) < 0) {
        return 1;
    }
    g_bdev = ioc_bdev_get_by_name("vhosttest0");
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    ioc_bdev_put(&g_bdev);
    ioc_bdev_delete("vhosttest0", NULL);
    ioc_reactor_destroy_local(&g_r);
    ioc_bdev_io_cache_drain();
    return rc;
}
