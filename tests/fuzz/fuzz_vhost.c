/*
 * fuzz_vhost.c - libFuzzer target for the vhost-user-blk engine: control
 * messages (vhost_msg.c) and descriptor chains (vhost_vring.c, vhost_blk.c).
 *
 * Input layout:
 *   [u16 L][L bytes of vhost-user messages][guest memory image]
 * Each run builds a device on a 64 KiB "guest memory" buffer (a region
 * installed without mmap), starts queue 0 with canned messages (16 entries,
 * rings at the start of the buffer), then feeds the fuzzed messages (header +
 * payload, no fds), copies the rest of the input over guest memory (rings,
 * descriptors, headers: everything the client controls), and processes every
 * started queue three times, polling the local reactor until no bdev IO is in
 * flight, then runs the notification checks (flags, or with EVENT_IDX,
 * negotiated when bit 1 of the first byte is set, the event indexes after
 * the rings). Invalid input must be refused or mark the device broken; ASan
 * checks that nothing outside the buffer is touched, LeakSanitizer that
 * teardown frees everything.
 */
#include "ioc/common.h"

#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bdev/malloc/bdev_malloc.h"
#include "core/log.h"
#include "target/vhost/vhost_internal.h"

#define MEM_SIZE (64u << 10)
#define GPA      0x10000ull

static struct ioc_reactor *g_r;
static struct ioc_bdev *g_bdev;
static uint8_t *g_mem;

static void
send_msg(struct vhost_dev *dev, uint32_t req, const void *p, uint32_t size, int fd)
{
    struct vhost_user_hdr h = {.request = req, .flags = VHOST_USER_VERSION, .size = size};
    struct vhost_reply r;
    int fds[1] = {fd};

    vhost_dev_handle_msg(dev, &h, p, fds, fd >= 0 ? 1 : 0, &r);
}

static void
canned_setup(struct vhost_dev *dev, bool event_idx)
{
    struct vhost_user_state num = {0, 16}, en = {0, 1};
    struct vhost_user_addr a = {.index = 0, .desc_user_addr = GPA,
                                .avail_user_addr = GPA + 0x1000,
                                .used_user_addr = GPA + 0x2000};
    uint64_t f = (1ull << VIRTIO_F_VERSION_1) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES) |
                 (event_idx ? 1ull << VIRTIO_RING_F_EVENT_IDX : 0);
    uint64_t q0 = 0;

    send_msg(dev, VHOST_USER_SET_FEATURES, &f, 8, -1);
    send_msg(dev, VHOST_USER_SET_VRING_NUM, &num, sizeof(num), -1);
    send_msg(dev, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), -1);
    send_msg(dev, VHOST_USER_SET_VRING_CALL, &q0, 8, eventfd(0, EFD_NONBLOCK));
    send_msg(dev, VHOST_USER_SET_VRING_KICK, &q0, 8, eventfd(0, EFD_NONBLOCK));
    send_msg(dev, VHOST_USER_SET_VRING_ENABLE, &en, sizeof(en), -1);
}

static void
fuzzed_msgs(struct vhost_dev *dev, const uint8_t *p, size_t n)
{
    while (n >= sizeof(struct vhost_user_hdr)) {
        struct vhost_user_hdr h;
        uint8_t payload[VHOST_USER_PAYLOAD_MAX] = {0};
        struct vhost_reply r;
        int fds[1];

        memcpy(&h, p, sizeof(h));
        p += sizeof(h);
        n -= sizeof(h);
        h.size = (uint32_t)IOC_MIN((size_t)h.size % (VHOST_USER_PAYLOAD_MAX + 8), n);
        memcpy(payload, p, IOC_MIN((size_t)h.size, sizeof(payload)));
        p += h.size;
        n -= h.size;
        if (h.size > VHOST_USER_PAYLOAD_MAX) {
            continue; /* the socket glue refuses these before the engine */
        }
        vhost_dev_handle_msg(dev, &h, payload, fds, 0, &r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vhost_dev dev;
    size_t l;

    if (g_r == NULL) {
        ioc_log_set_level("err");
        if (ioc_reactor_create_local(NULL, &g_r) != 0 ||
            ioc_bdev_malloc_create("fz0", 1 << 20, 512, NULL) != 0) {
            abort();
        }
        g_bdev = ioc_bdev_get_by_name("fz0");
        g_mem = malloc(MEM_SIZE);
    }
    if (size < 2) {
        return 0;
    }
    l = IOC_MIN((size_t)(data[0] | data[1] << 8), size - 2);
    memset(g_mem, 0, MEM_SIZE);
    vhost_dev_init(&dev, NULL, NULL, g_bdev, (data[0] & 1) != 0, 2);
    vhost_dev_add_region(&dev, GPA, GPA, MEM_SIZE, g_mem);
    canned_setup(&dev, (data[0] & 2) != 0);
    fuzzed_msgs(&dev, data + 2, l);
    memcpy(g_mem, data + 2 + l, IOC_MIN(size - 2 - l, (size_t)MEM_SIZE));
    for (int round = 0; round < 3; round++) {
        for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
            if (dev.queues[i].started && vhost_queue_ready(&dev.queues[i])) {
                vhost_blk_process(&dev.queues[i], 64);
            }
        }
        for (int i = 0; i < 1000 && vhost_dev_inflight(&dev) > 0; i++) {
            ioc_reactor_poll_once(g_r);
        }
        /* notification state: flags, or the event indexes past the rings */
        for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
            struct vhost_queue *vq = &dev.queues[i];

            if (vq->started && vhost_queue_ready(vq)) {
                if (vhost_queue_event_idx(vq)) {
                    (void)vhost_vring_early_signal(vq);
                }
                (void)vhost_vring_need_signal(vq);
                vhost_vring_set_no_notify(vq, round != 1);
            }
        }
    }
    if (vhost_dev_inflight(&dev) != 0) {
        abort(); /* a malloc bdev always completes */
    }
    vhost_dev_fini(&dev);
    return 0;
}
