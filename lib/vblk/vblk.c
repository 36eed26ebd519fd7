/*
 * lib/vblk/vblk.c - libvblk: connection, vhost-user negotiation, shared memory.
 *
 * What: vblk_connect() opens the backend's unix socket and runs the vhost-user
 * front-end side of the protocol (qemu docs/interop/vhost-user.rst):
 * GET_FEATURES, GET/SET_PROTOCOL_FEATURES (MQ, REPLY_ACK, CONFIG), GET_CONFIG
 * (the virtio-blk config: capacity, block size, seg_max, queues),
 * GET_QUEUE_NUM, SET_OWNER, SET_FEATURES, SET_MEM_TABLE, then per queue
 * SET_VRING_NUM/BASE/ADDR/KICK/CALL/ENABLE.
 *
 * How: all memory the backend sees is ONE memfd, mapped once here and passed
 * with SCM_RIGHTS in SET_MEM_TABLE as a single region whose "guest physical"
 * and "user" addresses are both our own virtual address, so a descriptor
 * address is simply a pointer. The region holds, per queue, the descriptor
 * table, avail and used rings and a 64-byte slot per descriptor (request
 * header, discard segment, status byte), then a page-granular buffer heap
 * handed out by vblk_buf_alloc(). With REPLY_ACK every setting message
 * waits for the backend's acknowledgement, so errors surface in connect.
 *
 * VIRTIO_RING_F_EVENT_IDX is negotiated when the backend offers it (unless
 * opts.no_event_idx): notification suppression then uses the event indexes
 * (see vblk_queue.c) instead of the ring flags.
 *
 * What it doesn't do: indirect descriptors are not negotiated; no
 * reconnection, no inflight tracking, no live migration (dirty log).
 *
 * Rejected alternative: bounce buffers for arbitrary user memory. It would
 * copy every byte; applications that care about the fast path allocate from
 * the heap instead (as with io_uring registered buffers).
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/vblk/vblk_internal.h"

#define VBLK_DEFAULT_QUEUE_SIZE 256u
#define VBLK_DEFAULT_MEM (64u << 20)
/*
 * The adaptive spin cap. It must exceed the gap between completion bursts
 * under load: iocd completes a whole batch of page-cache reads per reactor
 * iteration, so at QD32 completions arrive every 60-70 us on the 2-vCPU VM.
 * With a 50 us cap every window ran out, 8 misses in a row started a
 * back-off, and adaptive slept through most of a run (0.81x of direct
 * io_uring against busy's 0.92x; caps of 100-250 us: 0.86-0.90x, spinning
 * like busy). See bench/VHOST.md, session 4.
 */
#define VBLK_DEFAULT_SPIN_NS 200000u
#define VBLK_IO_TIMEOUT_MS 30000

void
vblk_opts_init(struct vblk_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->opts_size = sizeof(*opts);
    opts->num_queues = 1;
    opts->queue_size = VBLK_DEFAULT_QUEUE_SIZE;
    opts->mem_size = VBLK_DEFAULT_MEM;
    opts->mode = VBLK_MODE_ADAPTIVE;
    opts->spin_max_ns = VBLK_DEFAULT_SPIN_NS;
}

int
vblk_mode_parse(const char *s, enum vblk_mode *out)
{
    static const char *const names[] = {"eventfd", "busy", "adaptive"};

    for (unsigned i = 0; i < 3; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum vblk_mode)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* ------------------------------------------------------------ messages */

static int
msg_send(struct vblk *v, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
         const int *fds, int nfds)
{
    struct vhost_user_hdr hdr = {.request = req, .flags = VHOST_USER_VERSION | flags,
                                 .size = size};
    struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {(void *)payload, size}};
    char cbuf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
    ssize_t n;

    if (nfds > 0) {
        struct cmsghdr *c;

        memset(cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    do {
        n = sendmsg(v->sock, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    return (size_t)n == sizeof(hdr) + size ? 0 : -EPIPE;
}

static int
recv_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            return -EPIPE;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Receive the reply to req into payload (up to size bytes); returns its size or -errno. */
static int
msg_recv_reply(struct vblk *v, uint32_t req, void *payload, uint32_t size)
{
    struct vhost_user_hdr hdr;
    uint8_t scratch[VHOST_USER_PAYLOAD_MAX];
    int rc = recv_all(v->sock, &hdr, sizeof(hdr));

    if (rc != 0) {
        return rc;
    }
    if (hdr.request != req || !(hdr.flags & VHOST_USER_REPLY_FLAG) ||
        hdr.size > sizeof(scratch)) {
        return -EPROTO;
    }
    rc = recv_all(v->sock, scratch, hdr.size);
    if (rc != 0) {
        return rc;
    }
    memcpy(payload, scratch, IOC_VBLK_MIN(size, hdr.size));
    return (int)hdr.size;
}

/* A request whose reply is one u64 (GET_FEATURES and friends). */
static int
msg_get_u64(struct vblk *v, uint32_t req, uint64_t *out)
{
    int rc = msg_send(v, req, 0, NULL, 0, NULL, 0);

    if (rc == 0) {
        rc = msg_recv_reply(v, req, out, sizeof(*out));
    }
    return rc < 0 ? rc : (rc == (int)sizeof(*out) ? 0 : -EPROTO);
}

/* A setting message; with REPLY_ACK, wait for the backend's verdict. */
static int
msg_set(struct vblk *v, uint32_t req, const void *payload, uint32_t size, const int *fds,
        int nfds)
{
    bool ack = (v->protocol_features >> VHOST_USER_PROTOCOL_F_REPLY_ACK) & 1u;
    uint64_t status = 0;
    int rc = msg_send(v, req, ack ? VHOST_USER_NEED_REPLY : 0, payload, size, fds, nfds);

    if (rc != 0 || !ack) {
        return rc;
    }
    rc = msg_recv_reply(v, req, &status, sizeof(status));
    if (rc < 0) {
        return rc;
    }
    return status == 0 ? 0 : -EPROTO;
}

static int
msg_set_u64(struct vblk *v, uint32_t req, uint64_t val, const int *fds, int nfds)
{
    return msg_set(v, req, &val, sizeof(val), fds, nfds);
}

/* ------------------------------------------------------------ negotiation */

#define VBLK_WANTED_FEATURES                                                         \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES) |       \
     (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |              \
     (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |                   \
     (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_MQ) |                      \
     (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES) |             \
     (1ull << VIRTIO_RING_F_EVENT_IDX))

#define VBLK_WANTED_PROTOCOL                                                         \
    ((1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) | \
     (1ull << VHOST_USER_PROTOCOL_F_CONFIG))

static int
get_config(struct vblk *v)
{
    struct vhost_user_config cfg = {.offset = 0, .size = sizeof(struct virtio_blk_config)};
    uint32_t size = VHOST_USER_CONFIG_HDR + cfg.size;
    int rc = msg_send(v, VHOST_USER_GET_CONFIG, 0, &cfg, size, NULL, 0);

    if (rc == 0) {
        rc = msg_recv_reply(v, VHOST_USER_GET_CONFIG, &cfg, sizeof(cfg));
    }
    if (rc < 0) {
        return rc;
    }
    if ((uint32_t)rc != size) {
        return -EPROTO;
    }
    memcpy(&v->config, cfg.region, sizeof(v->config));
    return 0;
}

static int
negotiate(struct vblk *v, unsigned want_queues, bool no_event_idx)
{
    uint64_t features, proto = 0, nq = 1;
    int rc = msg_get_u64(v, VHOST_USER_GET_FEATURES, &features);

    if (rc != 0) {
        return rc;
    }
    if (!((features >> VIRTIO_F_VERSION_1) & 1u)) {
        return -EPROTO;
    }
    v->features = features & VBLK_WANTED_FEATURES;
    if (no_event_idx) {
        v->features &= ~(1ull << VIRTIO_RING_F_EVENT_IDX);
    }
    if (vblk_has_feature(v, VHOST_USER_F_PROTOCOL_FEATURES)) {
        rc = msg_get_u64(v, VHOST_USER_GET_PROTOCOL_FEATURES, &proto);
        if (rc == 0) {
            proto &= VBLK_WANTED_PROTOCOL;
            rc = msg_set_u64(v, VHOST_USER_SET_PROTOCOL_FEATURES, proto, NULL, 0);
        }
        if (rc != 0) {
            return rc;
        }
        v->protocol_features = proto; /* REPLY_ACK applies from now on */
    }
    if ((proto >> VHOST_USER_PROTOCOL_F_CONFIG) & 1u) {
        rc = get_config(v);
    }
    if (rc == 0 && ((proto >> VHOST_USER_PROTOCOL_F_MQ) & 1u)) {
        rc = msg_get_u64(v, VHOST_USER_GET_QUEUE_NUM, &nq);
    }
    if (rc == 0) {
        rc = msg_set(v, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0);
    }
    if (rc == 0) {
        rc = msg_set_u64(v, VHOST_USER_SET_FEATURES, v->features, NULL, 0);
    }
    if (rc != 0) {
        return rc;
    }
    if (vblk_has_feature(v, VIRTIO_BLK_F_MQ) && v->config.num_queues > 0) {
        nq = IOC_VBLK_MIN(nq, v->config.num_queues);
    } else {
        nq = 1;
    }
    v->nr_queues = (unsigned)IOC_VBLK_MIN(IOC_VBLK_MIN(nq, want_queues), VBLK_MAX_QUEUES);
    if (v->nr_queues == 0) {
        v->nr_queues = 1;
    }
    return 0;
}

static void
derive_geometry(struct vblk *v, unsigned queue_size)
{
    v->capacity = v->config.capacity * VIRTIO_BLK_SECTOR;
    v->block_size = VIRTIO_BLK_SECTOR;
    if (vblk_has_feature(v, VIRTIO_BLK_F_BLK_SIZE) && v->config.blk_size >= 512 &&
        (v->config.blk_size & (v->config.blk_size - 1)) == 0) {
        v->block_size = v->config.blk_size;
    }
    v->seg_max = queue_size - 2;
    if (vblk_has_feature(v, VIRTIO_BLK_F_SEG_MAX) && v->config.seg_max > 0) {
        v->seg_max = IOC_VBLK_MIN(v->seg_max, v->config.seg_max);
    }
}

/* ------------------------------------------------------------ shared memory */

static int
mem_create(struct vblk *v, unsigned queue_size, size_t heap_len)
{
    size_t qlen = vblk_queue_layout_size(queue_size) * v->nr_queues;

    qlen = (qlen + VBLK_PAGE - 1) & ~(size_t)(VBLK_PAGE - 1);
    v->heap_len = (heap_len + VBLK_PAGE - 1) & ~(size_t)(VBLK_PAGE - 1);
    v->mem_len = qlen + v->heap_len;
    v->mem_fd = memfd_create("vblk", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (v->mem_fd < 0) {
        return -errno;
    }
    /* Sealed size: the backend can trust that its mapping never loses pages. */
    if (ftruncate(v->mem_fd, (off_t)v->mem_len) != 0 ||
        fcntl(v->mem_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        return -errno;
    }
    v->mem = mmap(NULL, v->mem_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                  v->mem_fd, 0);
    if (v->mem == MAP_FAILED) {
        v->mem = NULL;
        return -errno;
    }
    v->heap = v->mem + qlen;
    v->heap_pages = v->heap_len / VBLK_PAGE;
    v->heap_runs = calloc(v->heap_pages + 1, sizeof(*v->heap_runs));
    v->heap_used = calloc(v->heap_pages + 1, 1);
    if (v->heap_runs == NULL || v->heap_used == NULL) {
        return -ENOMEM;
    }
    for (unsigned i = 0; i < v->nr_queues; i++) {
        vblk_queue_layout(&v->queues[i], v->mem + i * vblk_queue_layout_size(queue_size),
                          queue_size);
    }
    return 0;
}

static int
mem_table_send(struct vblk *v)
{
    struct vhost_user_mem mem = {.nregions = 1};
    uint64_t addr = (uint64_t)(uintptr_t)v->mem;

    mem.regions[0] = (struct vhost_user_region){
        .guest_phys_addr = addr, .memory_size = v->mem_len, .userspace_addr = addr,
        .mmap_offset = 0};
    return msg_set(v, VHOST_USER_SET_MEM_TABLE, &mem, 8 + sizeof(mem.regions[0]), &v->mem_fd,
                   1);
}

void *
vblk_buf_alloc(struct vblk *v, size_t size)
{
    size_t pages = (size + VBLK_PAGE - 1) / VBLK_PAGE, run = 0;
    void *p = NULL;

    if (pages == 0 || pages > v->heap_pages) {
        return NULL;
    }
    pthread_mutex_lock(&v->heap_lock);
    for (size_t n = 0, i = v->heap_hint; n < v->heap_pages + pages; n++, i++) {
        if (i >= v->heap_pages) {
            i = 0;
            run = 0;
        }
        run = v->heap_used[i] ? 0 : run + 1;
        if (run == pages) {
            size_t start = i + 1 - pages;

            memset(v->heap_used + start, 1, pages);
            v->heap_runs[start] = (uint32_t)pages;
            v->heap_hint = (i + 1) % v->heap_pages;
            p = v->heap + start * VBLK_PAGE;
            break;
        }
    }
    pthread_mutex_unlock(&v->heap_lock);
    return p;
}

void
vblk_buf_free(struct vblk *v, void *buf)
{
    size_t start;

    if (buf == NULL) {
        return;
    }
    start = (size_t)((uint8_t *)buf - v->heap) / VBLK_PAGE;
    pthread_mutex_lock(&v->heap_lock);
    if (start < v->heap_pages && v->heap_runs[start] != 0) {
        memset(v->heap_used + start, 0, v->heap_runs[start]);
        v->heap_runs[start] = 0;
    }
    pthread_mutex_unlock(&v->heap_lock);
}

/* ------------------------------------------------------------ queues */

static int
vring_setup(struct vblk *v, struct vblk_queue *q)
{
    struct vhost_user_state num = {.index = q->index, .num = q->size};
    struct vhost_user_state base = {.index = q->index, .num = 0};
    struct vhost_user_addr addr = {
        .index = q->index,
        .desc_user_addr = (uint64_t)(uintptr_t)q->desc,
        .used_user_addr = (uint64_t)(uintptr_t)q->used,
        .avail_user_addr = (uint64_t)(uintptr_t)q->avail,
    };
    struct vhost_user_state enable = {.index = q->index, .num = 1};
    int rc = msg_set(v, VHOST_USER_SET_VRING_NUM, &num, sizeof(num), NULL, 0);

    if (rc == 0) {
        rc = msg_set(v, VHOST_USER_SET_VRING_BASE, &base, sizeof(base), NULL, 0);
    }
    if (rc == 0) {
        rc = msg_set(v, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0);
    }
    if (rc == 0) {
        rc = msg_set_u64(v, VHOST_USER_SET_VRING_CALL, q->index, &q->call_fd, 1);
    }
    if (rc == 0) {
        rc = msg_set_u64(v, VHOST_USER_SET_VRING_KICK, q->index, &q->kick_fd, 1);
    }
    if (rc == 0 && vblk_has_feature(v, VHOST_USER_F_PROTOCOL_FEATURES)) {
        rc = msg_set(v, VHOST_USER_SET_VRING_ENABLE, &enable, sizeof(enable), NULL, 0);
    }
    return rc;
}

static int
queues_start(struct vblk *v)
{
    for (unsigned i = 0; i < v->nr_queues; i++) {
        struct vblk_queue *q = &v->queues[i];
        int rc;

        q->v = v;
        q->index = i;
        q->mode = v->mode;
        q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->kick_fd < 0 || q->call_fd < 0) {
            return -errno;
        }
        rc = vblk_queue_init_private(q);
        if (rc == 0) {
            rc = vring_setup(v, q);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int
sock_connect(const char *path, int *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int rc = -errno;

        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

static int
opts_check(const struct vblk_opts *o)
{
    if (o->opts_size < sizeof(*o) || o->num_queues == 0 || o->queue_size < 4 ||
        o->queue_size > VRING_MAX_SIZE || (o->queue_size & (o->queue_size - 1)) != 0 ||
        o->mem_size < VBLK_PAGE || o->mode > VBLK_MODE_ADAPTIVE) {
        return -EINVAL;
    }
    return 0;
}

int
vblk_connect(const char *path, const struct vblk_opts *opts, struct vblk **out)
{
    struct vblk_opts defaults;
    struct vblk *v;
    int rc;

    if (opts == NULL) {
        vblk_opts_init(&defaults);
        opts = &defaults;
    }
    rc = opts_check(opts);
    if (rc != 0) {
        return rc;
    }
    v = calloc(1, sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    v->sock = -1;
    v->mem_fd = -1;
    for (unsigned i = 0; i < VBLK_MAX_QUEUES; i++) {
        v->queues[i].kick_fd = v->queues[i].call_fd = -1;
    }
    pthread_mutex_init(&v->heap_lock, NULL);
    v->mode = opts->mode;
    v->spin_max_ns = opts->spin_max_ns ? opts->spin_max_ns : VBLK_DEFAULT_SPIN_NS;
    rc = sock_connect(path, &v->sock);
    if (rc == 0) {
        rc = negotiate(v, opts->num_queues, opts->no_event_idx);
    }
    if (rc == 0) {
        derive_geometry(v, opts->queue_size);
        rc = mem_create(v, opts->queue_size, opts->mem_size);
    }
    if (rc == 0) {
        rc = mem_table_send(v);
    }
    if (rc == 0) {
        rc = queues_start(v);
    }
    if (rc != 0) {
        vblk_close(&v);
        return rc;
    }
    *out = v;
    return 0;
}

void
vblk_close(struct vblk **vp)
{
    struct vblk *v = *vp;

    if (v == NULL) {
        return;
    }
    if (v->sock >= 0) {
        close(v->sock);
    }
    for (unsigned i = 0; i < VBLK_MAX_QUEUES; i++) {
        struct vblk_queue *q = &v->queues[i];

        if (q->kick_fd >= 0) {
            close(q->kick_fd);
        }
        if (q->call_fd >= 0) {
            close(q->call_fd);
        }
        vblk_queue_fini_private(q);
    }
    if (v->mem != NULL) {
        munmap(v->mem, v->mem_len);
    }
    if (v->mem_fd >= 0) {
        close(v->mem_fd);
    }
    free(v->heap_runs);
    free(v->heap_used);
    pthread_mutex_destroy(&v->heap_lock);
    free(v);
    *vp = NULL;
}

/* ------------------------------------------------------------ properties */

uint64_t
vblk_capacity(const struct vblk *v)
{
    return v->capacity;
}

uint32_t
vblk_block_size(const struct vblk *v)
{
    return v->block_size;
}

bool
vblk_read_only(const struct vblk *v)
{
    return vblk_has_feature(v, VIRTIO_BLK_F_RO);
}

bool
vblk_event_idx(const struct vblk *v)
{
    return vblk_has_feature(v, VIRTIO_RING_F_EVENT_IDX);
}

unsigned
vblk_num_queues(const struct vblk *v)
{
    return v->nr_queues;
}

unsigned
vblk_max_segments(const struct vblk *v)
{
    return v->seg_max;
}

bool
vblk_supports(const struct vblk *v, enum vblk_op op)
{
    switch (op) {
    case VBLK_OP_FLUSH:
        return vblk_has_feature(v, VIRTIO_BLK_F_FLUSH);
    case VBLK_OP_DISCARD:
        return vblk_has_feature(v, VIRTIO_BLK_F_DISCARD);
    case VBLK_OP_WRITE_ZEROES:
        return vblk_has_feature(v, VIRTIO_BLK_F_WRITE_ZEROES);
    case VBLK_OP_WRITE:
        return !vblk_read_only(v);
    default:
        return true;
    }
}

struct vblk_queue *
vblk_get_queue(struct vblk *v, unsigned i)
{
    return i < v->nr_queues ? &v->queues[i] : NULL;
}

/* ------------------------------------------------------------ synchronous helpers */

static int
sync_io(struct vblk *v, enum vblk_op op, uint64_t offset, uint64_t len, void *buf)
{
    struct vblk_queue *q = &v->queues[0];
    struct iovec iov = {buf, (size_t)len};
    struct vblk_completion c;
    int rc = vblk_queue_submit(q, op, offset, len, &iov, buf ? 1 : 0, &iov);

    if (rc == 0) {
        rc = vblk_queue_kick(q);
    }
    while (rc == 0) {
        rc = vblk_queue_wait(q, &c, 1, VBLK_IO_TIMEOUT_MS);
        if (rc == 0) {
            return -ETIMEDOUT;
        }
        if (rc == 1) {
            return c.status;
        }
    }
    return rc;
}

int
vblk_read(struct vblk *v, void *buf, size_t len, uint64_t offset)
{
    return sync_io(v, VBLK_OP_READ, offset, len, buf);
}

int
vblk_write(struct vblk *v, const void *buf, size_t len, uint64_t offset)
{
    return sync_io(v, VBLK_OP_WRITE, offset, len, (void *)buf);
}

int
vblk_flush(struct vblk *v)
{
    return sync_io(v, VBLK_OP_FLUSH, 0, 0, NULL);
}

int
vblk_discard(struct vblk *v, uint64_t offset, uint64_t len)
{
    return sync_io(v, VBLK_OP_DISCARD, offset, len, NULL);
}

int
vblk_write_zeroes(struct vblk *v, uint64_t offset, uint64_t len)
{
    return sync_io(v, VBLK_OP_WRITE_ZEROES, offset, len, NULL);
}
