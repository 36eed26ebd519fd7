/*
 * target/vhost/vhost_msg.c - the vhost-user control plane, without sockets.
 *
 * What: vhost_dev_handle_msg() takes one complete message (header, payload,
 * passed fds) and updates the device: feature and protocol-feature
 * negotiation (MQ, REPLY_ACK, CONFIG), SET_OWNER, SET_MEM_TABLE (mmap of
 * each region's fd), SET_VRING_NUM/ADDR/BASE/KICK/CALL/ENABLE,
 * GET_VRING_BASE (stops the queue), GET_QUEUE_NUM, GET_CONFIG (virtio-blk
 * config from vhost_blk.c). It fills a reply when the message asks for one
 * (GET_*, or NEED_REPLY with REPLY_ACK negotiated).
 *
 * How: every field is validated before use (vhost_msg_validate): payload
 * size against the request, vring index against the export's queue count,
 * ring size a power of two within limits, ring addresses inside the memory
 * table with room for the whole ring and properly aligned, regions without
 * overflow. A message that is wrong in a way a well-behaved front end never
 * produces returns -EINVAL, and the glue drops that client only. Passed fds
 * are always consumed: kept or closed, never leaked.
 *
 * Not done: dirty logging (migration), inflight fd, backend-initiated
 * messages (SLAVE_REQ), SET_CONFIG (the config is read-only), postcopy.
 *
 * Rejected alternative: parsing straight from the socket. Keeping this
 * socket-free is what lets the unit tests and libFuzzer drive it.
 */
#include "ioc/common.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "target/vhost/vhost_internal.h"

#define VHOST_PROTOCOL_FEATURES                                                      \
    ((1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) | \
     (1ull << VHOST_USER_PROTOCOL_F_CONFIG))

const char *
vhost_request_name(uint32_t req)
{
    static const char *const names[] = {
        [VHOST_USER_GET_FEATURES] = "GET_FEATURES",
        [VHOST_USER_SET_FEATURES] = "SET_FEATURES",
        [VHOST_USER_SET_OWNER] = "SET_OWNER",
        [VHOST_USER_RESET_OWNER] = "RESET_OWNER",
        [VHOST_USER_SET_MEM_TABLE] = "SET_MEM_TABLE",
        [VHOST_USER_SET_LOG_BASE] = "SET_LOG_BASE",
        [VHOST_USER_SET_LOG_FD] = "SET_LOG_FD",
        [VHOST_USER_SET_VRING_NUM] = "SET_VRING_NUM",
        [VHOST_USER_SET_VRING_ADDR] = "SET_VRING_ADDR",
        [VHOST_USER_SET_VRING_BASE] = "SET_VRING_BASE",
        [VHOST_USER_GET_VRING_BASE] = "GET_VRING_BASE",
        [VHOST_USER_SET_VRING_KICK] = "SET_VRING_KICK",
        [VHOST_USER_SET_VRING_CALL] = "SET_VRING_CALL",
        [VHOST_USER_SET_VRING_ERR] = "SET_VRING_ERR",
        [VHOST_USER_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
        [VHOST_USER_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
        [VHOST_USER_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
        [VHOST_USER_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
        [VHOST_USER_GET_CONFIG] = "GET_CONFIG",
        [VHOST_USER_SET_CONFIG] = "SET_CONFIG",
    };

    return req < IOC_ARRAY_SIZE(names) && names[req] != NULL ? names[req] : "?";
}

uint64_t
vhost_dev_features(const struct vhost_dev *dev)
{
    return (1ull << VIRTIO_F_VERSION_1) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES) |
           (1ull << VIRTIO_RING_F_EVENT_IDX) | vhost_blk_features(dev);
}

void
vhost_dev_init(struct vhost_dev *dev, const struct vhost_dev_ops *ops, void *ctx,
               struct ioc_bdev *bdev, bool read_only, unsigned max_queues)
{
    memset(dev, 0, sizeof(*dev));
    atomic_init(&dev->broken, false);
    dev->ops = ops;
    dev->ctx = ctx;
    dev->bdev = bdev;
    dev->read_only = read_only;
    dev->max_queues = IOC_MAX(1u, IOC_MIN(max_queues, VHOST_MAX_QUEUES));
    for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
        dev->queues[i].dev = dev;
        dev->queues[i].index = i;
        dev->queues[i].kick_fd = -1;
        dev->queues[i].call_fd = -1;
    }
}

void
vhost_dev_set_broken(struct vhost_dev *dev, const char *why)
{
    if (!atomic_exchange(&dev->broken, true)) {
        IOC_ERR_RATELIMIT("vhost", "%s: device needs reset: %s", dev->name, why);
    }
}

bool
vhost_queue_ready(const struct vhost_queue *vq)
{
    return vq->num != 0 && vq->addr_set && vq->kick_fd >= 0 && vq->enabled &&
           !vq->dev->broken;
}

static void vrings_retranslate(struct vhost_dev *dev);

/* ------------------------------------------------------------ memory table */

static void
regions_unmap(struct vhost_dev *dev)
{
    for (unsigned i = 0; i < dev->nr_regions; i++) {
        if (dev->regions[i].mmap_base != NULL) {
            munmap(dev->regions[i].mmap_base, dev->regions[i].mmap_len);
        }
    }
    memset(dev->regions, 0, sizeof(dev->regions));
    dev->nr_regions = 0;
}

int
vhost_dev_add_region(struct vhost_dev *dev, uint64_t gpa, uint64_t uva, uint64_t size,
                     void *host)
{
    if (dev->nr_regions >= VHOST_USER_MAX_REGIONS || size == 0 || gpa + size < gpa ||
        uva + size < uva) {
        return -EINVAL;
    }
    dev->regions[dev->nr_regions++] = (struct vhost_region){
        .gpa = gpa, .uva = uva, .size = size, .host = host};
    return 0;
}

static int
region_map(struct vhost_dev *dev, const struct vhost_user_region *r, int fd)
{
    size_t len;
    void *p;

    struct stat st;

    if (r->memory_size == 0 || r->mmap_offset > UINT64_MAX - r->memory_size ||
        r->mmap_offset + r->memory_size > (uint64_t)SIZE_MAX / 2) {
        return -EINVAL;
    }
    len = (size_t)(r->mmap_offset + r->memory_size);
    /* Pages past the end of the file would raise SIGBUS when touched: refuse them now. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < len) {
        return -EINVAL;
    }
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        return -errno;
    }
    if (vhost_dev_add_region(dev, r->guest_phys_addr, r->userspace_addr, r->memory_size,
                             (uint8_t *)p + r->mmap_offset) != 0) {
        munmap(p, len);
        return -EINVAL;
    }
    dev->regions[dev->nr_regions - 1].mmap_base = p;
    dev->regions[dev->nr_regions - 1].mmap_len = len;
    return 0;
}

static bool
dev_any_queue_started(const struct vhost_dev *dev)
{
    for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
        if (dev->queues[i].inflight > 0) {
            return true;
        }
    }
    return false;
}

static int
msg_set_mem_table(struct vhost_dev *dev, const struct vhost_user_mem *m, uint32_t size,
                  const int *fds, int nfds)
{
    int rc = 0;

    if (size < 8 || m->nregions == 0 || m->nregions > VHOST_USER_MAX_REGIONS ||
        size < 8 + m->nregions * sizeof(m->regions[0]) || (int)m->nregions != nfds) {
        return -EINVAL;
    }
    if (dev_any_queue_started(dev)) {
        return -EBUSY; /* requests hold pointers into the old mappings */
    }
    regions_unmap(dev);
    for (unsigned i = 0; i < m->nregions && rc == 0; i++) {
        rc = region_map(dev, &m->regions[i], fds[i]);
    }
    if (rc != 0) {
        regions_unmap(dev);
    }
    vrings_retranslate(dev);
    return rc;
}

/* ------------------------------------------------------------ vrings */

static int
vring_index(const struct vhost_dev *dev, uint32_t index, struct vhost_queue **out)
{
    if (index >= dev->max_queues) {
        return -EINVAL;
    }
    *out = (struct vhost_queue *)&dev->queues[index];
    return 0;
}

static void
queue_stop(struct vhost_dev *dev, struct vhost_queue *vq)
{
    if (vq->started && dev->ops != NULL && dev->ops->queue_stopping != NULL) {
        dev->ops->queue_stopping(dev, vq);
    }
    vq->started = false;
    vq->enabled = false;
}

static void
queue_maybe_start(struct vhost_dev *dev, struct vhost_queue *vq)
{
    if (vq->started || !vhost_queue_ready(vq) || dev->nr_regions == 0) {
        return;
    }
    if (vq->reqs == NULL) {
        vq->reqs = calloc(vq->num, sizeof(*vq->reqs));
        if (vq->reqs == NULL) {
            vhost_dev_set_broken(dev, "out of memory");
            return;
        }
    }
    vq->started = true;
    if (dev->ops != NULL && dev->ops->queue_started != NULL) {
        dev->ops->queue_started(dev, vq);
    }
}

/* Map the ring addresses (client virtual) to ours; false if any lies outside the table. */
static bool
vring_translate(struct vhost_dev *dev, struct vhost_queue *vq, const struct vhost_user_addr *a)
{
    vq->desc = vhost_uva_to_host(dev, a->desc_user_addr, 16ull * vq->num);
    vq->avail = vhost_uva_to_host(dev, a->avail_user_addr, 6 + 2ull * vq->num);
    vq->used = vhost_uva_to_host(dev, a->used_user_addr, 6 + 8ull * vq->num);
    if (vq->desc == NULL || vq->avail == NULL || vq->used == NULL) {
        vq->desc = NULL;
        vq->avail = NULL;
        vq->used = NULL;
        return false;
    }
    vq->addr = *a;
    return true;
}

static int
msg_vring_addr(struct vhost_dev *dev, const struct vhost_user_addr *a)
{
    struct vhost_queue *vq;
    int rc = vring_index(dev, a->index, &vq);

    if (rc != 0 || vq->num == 0 || vq->inflight > 0) {
        return -EINVAL;
    }
    if ((a->desc_user_addr & 15) || (a->avail_user_addr & 1) || (a->used_user_addr & 3)) {
        return -EINVAL;
    }
    vq->addr_set = vring_translate(dev, vq, a);
    if (!vq->addr_set) {
        return -EINVAL;
    }
    queue_maybe_start(dev, vq);
    return 0;
}

/* After a new memory table, rings set earlier must still lie inside it. */
static void
vrings_retranslate(struct vhost_dev *dev)
{
    for (unsigned i = 0; i < dev->max_queues; i++) {
        struct vhost_queue *vq = &dev->queues[i];

        if (vq->addr_set && !vring_translate(dev, vq, &vq->addr)) {
            queue_stop(dev, vq);
            vq->addr_set = false;
            vhost_dev_set_broken(dev, "vring outside the new memory table");
        }
    }
}

static int
msg_vring_num(struct vhost_dev *dev, const struct vhost_user_state *s)
{
    struct vhost_queue *vq;

    if (vring_index(dev, s->index, &vq) != 0 || s->num == 0 || s->num > VHOST_MAX_QUEUE_SIZE ||
        (s->num & (s->num - 1)) != 0 || vq->inflight > 0 || vq->addr_set) {
        return -EINVAL;
    }
    if (vq->reqs != NULL && vq->num != s->num) {
        free(vq->reqs);
        vq->reqs = NULL;
    }
    vq->num = s->num;
    return 0;
}

static int
msg_vring_base(struct vhost_dev *dev, const struct vhost_user_state *s)
{
    struct vhost_queue *vq;

    if (vring_index(dev, s->index, &vq) != 0 || s->num > UINT16_MAX || vq->inflight > 0) {
        return -EINVAL;
    }
    vq->last_avail = (uint16_t)s->num;
    vq->used_idx = (uint16_t)s->num;
    vq->signalled_used = (uint16_t)s->num;
    return 0;
}

/* GET_VRING_BASE stops the ring and answers where the client may resume. */
static int
msg_get_vring_base(struct vhost_dev *dev, const struct vhost_user_state *s,
                   struct vhost_user_state *out)
{
    struct vhost_queue *vq;

    if (vring_index(dev, s->index, &vq) != 0) {
        return -EINVAL;
    }
    queue_stop(dev, vq);
    out->index = s->index;
    out->num = vq->last_avail;
    if (vq->kick_fd >= 0) {
        close(vq->kick_fd);
        vq->kick_fd = -1;
    }
    vq->addr_set = false;
    return 0;
}

/* SET_VRING_KICK / CALL / ERR: u64 with the index and a "no fd" bit. */
static int
msg_vring_fd(struct vhost_dev *dev, uint32_t req, uint64_t v, int *fds, int nfds)
{
    struct vhost_queue *vq;
    bool nofd = v & VHOST_USER_VRING_NOFD;
    int fd = -1, *slot;

    if ((v & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD)) != 0 ||
        vring_index(dev, (uint32_t)(v & VHOST_USER_VRING_IDX_MASK), &vq) != 0 ||
        nfds != (nofd ? 0 : 1)) {
        return -EINVAL;
    }
    if (!nofd) {
        fd = fds[0];
        fds[0] = -1; /* taken */
    }
    if (req == VHOST_USER_SET_VRING_ERR) {
        if (fd >= 0) {
            close(fd); /* we never report ring errors this way */
        }
        return 0;
    }
    if (req == VHOST_USER_SET_VRING_KICK) {
        bool was_enabled = vq->enabled;

        queue_stop(dev, vq); /* restarted below with the new fd */
        /* Without protocol features a ring starts with its kick fd; with them,
         * SET_VRING_ENABLE decides and a new kick fd keeps that state. */
        vq->enabled = !(dev->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES)) || was_enabled;
    }
    slot = req == VHOST_USER_SET_VRING_KICK ? &vq->kick_fd : &vq->call_fd;
    if (*slot >= 0) {
        close(*slot);
    }
    *slot = fd;
    if (req == VHOST_USER_SET_VRING_KICK && fd < 0) {
        return -EINVAL; /* we need kicks to wake up from sleep */
    }
    if (req == VHOST_USER_SET_VRING_KICK) {
        queue_maybe_start(dev, vq);
    }
    return 0;
}

static int
msg_vring_enable(struct vhost_dev *dev, const struct vhost_user_state *s)
{
    struct vhost_queue *vq;

    if (vring_index(dev, s->index, &vq) != 0 || s->num > 1) {
        return -EINVAL;
    }
    if (s->num == 0) {
        queue_stop(dev, vq);
        return 0;
    }
    vq->enabled = true;
    queue_maybe_start(dev, vq);
    return 0;
}

/* ------------------------------------------------------------ dispatch */

static int
msg_get_config(struct vhost_dev *dev, const struct vhost_user_config *in, uint32_t size,
               struct vhost_reply *reply)
{
    struct virtio_blk_config cfg;
    struct vhost_user_config *out = (struct vhost_user_config *)reply->payload;

    if (size < VHOST_USER_CONFIG_HDR || in->size > VHOST_USER_CONFIG_MAX ||
        size != VHOST_USER_CONFIG_HDR + in->size || in->offset > sizeof(cfg) ||
        in->size > sizeof(cfg) - in->offset) {
        return -EINVAL;
    }
    vhost_blk_config(dev, &cfg);
    out->offset = in->offset;
    out->size = in->size;
    out->flags = 0;
    memcpy(out->region, (uint8_t *)&cfg + in->offset, in->size);
    reply->hdr.size = VHOST_USER_CONFIG_HDR + in->size;
    return 0;
}

static void
reply_u64(struct vhost_reply *reply, uint64_t v)
{
    memcpy(reply->payload, &v, sizeof(v));
    reply->hdr.size = sizeof(v);
}

/* Minimum payload size per request (exact for fixed-size payloads). */
static int
msg_validate(const struct vhost_user_hdr *hdr)
{
    switch (hdr->request) {
    case VHOST_USER_SET_FEATURES:
    case VHOST_USER_SET_PROTOCOL_FEATURES:
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR:
        return hdr->size == 8 ? 0 : -EINVAL;
    case VHOST_USER_SET_VRING_NUM:
    case VHOST_USER_SET_VRING_BASE:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_SET_VRING_ENABLE:
        return hdr->size == sizeof(struct vhost_user_state) ? 0 : -EINVAL;
    case VHOST_USER_SET_VRING_ADDR:
        return hdr->size == sizeof(struct vhost_user_addr) ? 0 : -EINVAL;
    default:
        return hdr->size <= VHOST_USER_PAYLOAD_MAX ? 0 : -EINVAL;
    }
}

static int
msg_dispatch(struct vhost_dev *dev, const struct vhost_user_hdr *hdr, const void *p, int *fds,
             int nfds, struct vhost_reply *reply)
{
    uint64_t u64 = 0;

    if (hdr->size >= 8) {
        memcpy(&u64, p, 8);
    }
    switch (hdr->request) {
    case VHOST_USER_GET_FEATURES:
        reply_u64(reply, vhost_dev_features(dev));
        return 0;
    case VHOST_USER_SET_FEATURES:
        if (u64 & ~vhost_dev_features(dev)) {
            return -EINVAL;
        }
        dev->features = u64;
        return 0;
    case VHOST_USER_GET_PROTOCOL_FEATURES:
        reply_u64(reply, VHOST_PROTOCOL_FEATURES);
        return 0;
    case VHOST_USER_SET_PROTOCOL_FEATURES:
        dev->protocol_features = u64 & VHOST_PROTOCOL_FEATURES;
        return 0;
    case VHOST_USER_GET_QUEUE_NUM:
        reply_u64(reply, dev->max_queues);
        return 0;
    case VHOST_USER_SET_OWNER:
        dev->owner = true;
        return 0;
    case VHOST_USER_RESET_OWNER:
        return 0;
    case VHOST_USER_SET_MEM_TABLE:
        return msg_set_mem_table(dev, p, hdr->size, fds, nfds);
    case VHOST_USER_SET_VRING_NUM:
        return msg_vring_num(dev, p);
    case VHOST_USER_SET_VRING_ADDR:
        return msg_vring_addr(dev, p);
    case VHOST_USER_SET_VRING_BASE:
        return msg_vring_base(dev, p);
    case VHOST_USER_GET_VRING_BASE:
        reply->hdr.size = sizeof(struct vhost_user_state);
        return msg_get_vring_base(dev, p, (struct vhost_user_state *)reply->payload);
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR:
        return msg_vring_fd(dev, hdr->request, u64, fds, nfds);
    case VHOST_USER_SET_VRING_ENABLE:
        return msg_vring_enable(dev, p);
    case VHOST_USER_GET_CONFIG:
        return msg_get_config(dev, p, hdr->size, reply);
    default:
        return -ENOTSUP;
    }
}

uint32_t
vhost_msg_queue_mask(const struct vhost_dev *dev, const struct vhost_user_hdr *hdr,
                     const void *payload)
{
    uint32_t all = (uint32_t)((1ull << dev->max_queues) - 1);
    struct vhost_user_state st;
    uint64_t u64;

    switch (hdr->request) {
    case VHOST_USER_GET_FEATURES:
    case VHOST_USER_GET_PROTOCOL_FEATURES:
    case VHOST_USER_SET_PROTOCOL_FEATURES:
    case VHOST_USER_GET_QUEUE_NUM:
    case VHOST_USER_SET_OWNER:
    case VHOST_USER_GET_CONFIG:
    case VHOST_USER_SET_VRING_ERR: /* closes the passed fd, touches no queue */
        return 0;
    case VHOST_USER_SET_VRING_NUM:
    case VHOST_USER_SET_VRING_BASE:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_SET_VRING_ENABLE:
    case VHOST_USER_SET_VRING_ADDR: /* index first, like vhost_user_state */
        if (hdr->size < sizeof(st)) {
            return all;
        }
        memcpy(&st, payload, sizeof(st));
        return st.index < dev->max_queues ? 1u << st.index : all;
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
        if (hdr->size < sizeof(u64)) {
            return all;
        }
        memcpy(&u64, payload, sizeof(u64));
        u64 &= VHOST_USER_VRING_IDX_MASK;
        return u64 < dev->max_queues ? 1u << u64 : all;
    default:
        return all; /* SET_MEM_TABLE, SET_FEATURES, RESET_OWNER, anything unknown */
    }
}

static bool
msg_has_reply(uint32_t req)
{
    return req == VHOST_USER_GET_FEATURES || req == VHOST_USER_GET_PROTOCOL_FEATURES ||
           req == VHOST_USER_GET_QUEUE_NUM || req == VHOST_USER_GET_VRING_BASE ||
           req == VHOST_USER_GET_CONFIG;
}

int
vhost_dev_handle_msg(struct vhost_dev *dev, const struct vhost_user_hdr *hdr,
                     const void *payload, int *fds, int nfds, struct vhost_reply *reply)
{
    bool ack = (hdr->flags & VHOST_USER_NEED_REPLY) &&
               (dev->protocol_features >> VHOST_USER_PROTOCOL_F_REPLY_ACK) & 1u;
    int rc;

    memset(&reply->hdr, 0, sizeof(reply->hdr));
    rc = (hdr->flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION ? -EPROTO
                                                                      : msg_validate(hdr);
    if (rc == 0) {
        rc = msg_dispatch(dev, hdr, payload, fds, nfds, reply);
    }
    for (int i = 0; i < nfds; i++) {
        if (fds[i] >= 0) {
            close(fds[i]); /* not taken; a mapping holds its own reference to its fd */
        }
        fds[i] = -1;
    }
    IOC_DEBUG(vhost, "%s: %s: %d", dev->name, vhost_request_name(hdr->request), rc);
    if (msg_has_reply(hdr->request) && rc == 0) {
        reply->hdr.request = hdr->request;
        reply->hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_FLAG;
        return 0;
    }
    if (ack) {
        reply->hdr.request = hdr->request;
        reply->hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_FLAG;
        reply_u64(reply, rc == 0 ? 0 : 1);
        return 0;
    }
    reply->hdr.size = 0;
    /* An unsupported request without NEED_REPLY is ignored; a malformed one drops the client. */
    return rc == -ENOTSUP ? 0 : rc;
}

void
vhost_dev_fini(struct vhost_dev *dev)
{
    for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
        struct vhost_queue *vq = &dev->queues[i];

        if (vq->kick_fd >= 0) {
            close(vq->kick_fd);
        }
        if (vq->call_fd >= 0) {
            close(vq->call_fd);
        }
        vq->kick_fd = vq->call_fd = -1;
        free(vq->reqs);
        vq->reqs = NULL;
    }
    regions_unmap(dev);
}
