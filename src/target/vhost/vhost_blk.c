/*
 * target/vhost/vhost_blk.c - virtio-blk requests to bdev IO.
 *
 * What: vhost_blk_process() takes validated chains from a queue, reads the
 * 16-byte request header (copied once: the client may change it under us),
 * checks type, range and alignment against the bdev, and submits IN, OUT,
 * FLUSH, DISCARD, WRITE_ZEROES as bdev IO straight on the client's buffers
 * (zero copy); GET_ID is answered at once. The completion writes the status
 * byte, puts the chain on the used ring and asks the glue to signal.
 *
 * Framing: the header may span descriptors and the status byte is the last
 * byte of the last writable descriptor; data iovecs are what lies between,
 * trimmed in a private copy of the iovec array.
 *
 * Errors: a request the device cannot honour gets VIRTIO_BLK_S_IOERR or
 * S_UNSUPP (the client's problem, reported to it). A chain that breaks the
 * framing rules (no room for a header or status) marks the device broken,
 * like an invalid descriptor.
 *
 * Not done: several discard/write-zeroes segments per request (we advertise
 * max_discard_seg = 1), GET_LIFETIME, secure erase, zoned commands.
 */
#include "ioc/common.h"

#include <errno.h>
#include <string.h>

#include "target/vhost/vhost_internal.h"

#define VHOST_BLK_MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB */

uint64_t
vhost_blk_features(const struct vhost_dev *dev)
{
    uint64_t f = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                 (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_MQ) |
                 (1ull << VIRTIO_BLK_F_SIZE_MAX);

    if (dev->read_only) {
        f |= 1ull << VIRTIO_BLK_F_RO;
    }
    if (dev->bdev != NULL && ioc_bdev_supports(dev->bdev, IOC_IO_UNMAP)) {
        f |= 1ull << VIRTIO_BLK_F_DISCARD;
    }
    if (dev->bdev != NULL && ioc_bdev_supports(dev->bdev, IOC_IO_WRITE_ZEROES)) {
        f |= 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
    }
    return f;
}

void
vhost_blk_config(const struct vhost_dev *dev, struct virtio_blk_config *cfg)
{
    uint32_t bs = dev->bdev != NULL ? ioc_bdev_block_size(dev->bdev) : 512;
    uint32_t sectors_per_block = IOC_MAX(1u, bs / VIRTIO_BLK_SECTOR);

    memset(cfg, 0, sizeof(*cfg));
    cfg->capacity = dev->bdev != NULL ? ioc_bdev_size(dev->bdev) / VIRTIO_BLK_SECTOR : 0;
    cfg->size_max = VHOST_MAX_IO_BYTES;
    cfg->seg_max = VHOST_SEG_MAX;
    cfg->blk_size = bs;
    cfg->min_io_size = 1;
    cfg->num_queues = (uint16_t)dev->max_queues;
    cfg->max_discard_sectors = VHOST_BLK_MAX_DISCARD_SECTORS;
    cfg->max_discard_seg = 1;
    cfg->discard_sector_alignment = sectors_per_block;
    cfg->max_write_zeroes_sectors = VHOST_BLK_MAX_DISCARD_SECTORS;
    cfg->max_write_zeroes_seg = 1;
    cfg->write_zeroes_may_unmap = 1;
}

/* ------------------------------------------------------------ iovec helpers */

/* Copy len bytes from the start of iov into dst; false if the iovecs are shorter. */
static bool
iov_read(const struct iovec *iov, unsigned cnt, void *dst, size_t len)
{
    uint8_t *d = dst;

    for (unsigned i = 0; i < cnt && len > 0; i++) {
        size_t n = IOC_MIN(len, iov[i].iov_len);

        memcpy(d, iov[i].iov_base, n);
        d += n;
        len -= n;
    }
    return len == 0;
}

/* Drop len bytes from the front of iov[0..*cnt), shifting the array. */
static void
iov_trim_front(struct iovec *iov, unsigned *cnt, size_t len)
{
    unsigned skip = 0;

    while (skip < *cnt && len >= iov[skip].iov_len) {
        len -= iov[skip].iov_len;
        skip++;
    }
    if (skip < *cnt) {
        iov[skip].iov_base = (uint8_t *)iov[skip].iov_base + len;
        iov[skip].iov_len -= len;
    }
    memmove(iov, iov + skip, (*cnt - skip) * sizeof(*iov));
    *cnt -= skip;
}

/* ------------------------------------------------------------ completion */

static void
req_complete(struct vhost_req *req, uint8_t status)
{
    struct vhost_queue *vq = req->vq;
    struct vhost_dev *dev = vq->dev;

    *req->status = status;
    vhost_vring_push(vq, req->chain.head, req->used_len + 1);
    req->busy = false;
    vq->inflight--;
    if (dev->ops != NULL && dev->ops->completed != NULL) {
        dev->ops->completed(dev, vq);
    }
}

static void
req_io_done(struct ioc_bdev_io *io, void *cb_arg)
{
    struct vhost_req *req = cb_arg;
    int status = io->status;

    if (status != 0 || io->type != IOC_IO_READ) {
        req->used_len = 0;
    }
    ioc_bdev_io_free(io);
    req_complete(req, status == 0 ? VIRTIO_BLK_S_OK
                                  : (status == -ENOTSUP ? VIRTIO_BLK_S_UNSUPP
                                                        : VIRTIO_BLK_S_IOERR));
}

/* ------------------------------------------------------------ submission */

static int
req_submit_io(struct vhost_req *req, enum ioc_io_type type, uint64_t offset, uint64_t len,
              uint32_t flags)
{
    struct vhost_dev *dev = req->vq->dev;
    struct ioc_bdev_io *io = ioc_bdev_io_alloc(dev->bdev);
    int rc;

    if (io == NULL) {
        return -ENOMEM;
    }
    if (type == IOC_IO_READ || type == IOC_IO_WRITE) {
        ioc_bdev_io_prep_rw(io, type, offset, len, req->data, req->nr_data, flags, req_io_done,
                            req);
    } else {
        ioc_bdev_io_prep(io, type, offset, len, flags, req_io_done, req);
    }
    rc = ioc_bdev_io_submit(io);
    if (rc != 0) {
        ioc_bdev_io_free(io);
        return rc;
    }
    return 0;
}

static bool
range_ok(const struct vhost_dev *dev, uint64_t sector, uint64_t len)
{
    uint64_t size = ioc_bdev_size(dev->bdev);
    uint32_t bs = ioc_bdev_block_size(dev->bdev);

    return sector <= size / VIRTIO_BLK_SECTOR && len <= size - sector * VIRTIO_BLK_SECTOR &&
           (sector * VIRTIO_BLK_SECTOR) % bs == 0 && len % bs == 0;
}

static int
req_rw(struct vhost_req *req, const struct virtio_blk_outhdr *h, bool write)
{
    struct vhost_dev *dev = req->vq->dev;
    uint64_t len = ioc_iov_len(req->data, (size_t)req->nr_data);

    if (write && dev->read_only) {
        return VIRTIO_BLK_S_IOERR;
    }
    if (len == 0 || len > VHOST_MAX_IO_BYTES || !range_ok(dev, h->sector, len)) {
        return VIRTIO_BLK_S_IOERR;
    }
    if (!write) {
        req->used_len = (uint32_t)len;
    }
    return req_submit_io(req, write ? IOC_IO_WRITE : IOC_IO_READ, h->sector * 512, len, 0) == 0
               ? -1
               : VIRTIO_BLK_S_IOERR;
}

static int
req_discard_wz(struct vhost_req *req, bool wz)
{
    struct vhost_dev *dev = req->vq->dev;
    struct virtio_blk_discard_wz seg;
    enum ioc_io_type type = wz ? IOC_IO_WRITE_ZEROES : IOC_IO_UNMAP;
    uint32_t flags = 0;

    if (dev->read_only) {
        return VIRTIO_BLK_S_IOERR;
    }
    if (!ioc_bdev_supports(dev->bdev, type)) {
        return VIRTIO_BLK_S_UNSUPP;
    }
    if (ioc_iov_len(req->data, (size_t)req->nr_data) != sizeof(seg) ||
        !iov_read(req->data, (unsigned)req->nr_data, &seg, sizeof(seg))) {
        return VIRTIO_BLK_S_UNSUPP; /* several segments: not advertised */
    }
    if (seg.num_sectors == 0 || seg.num_sectors > VHOST_BLK_MAX_DISCARD_SECTORS ||
        (seg.flags & ~VIRTIO_BLK_WZ_F_UNMAP) != 0 || (!wz && seg.flags != 0) ||
        !range_ok(dev, seg.sector, (uint64_t)seg.num_sectors * 512)) {
        return VIRTIO_BLK_S_IOERR;
    }
    if (wz && !(seg.flags & VIRTIO_BLK_WZ_F_UNMAP)) {
        flags |= IOC_IO_NO_HOLE;
    }
    return req_submit_io(req, type, seg.sector * 512, (uint64_t)seg.num_sectors * 512, flags) ==
                   0
               ? -1
               : VIRTIO_BLK_S_IOERR;
}

static int
req_get_id(struct vhost_req *req)
{
    char id[VIRTIO_BLK_ID_BYTES] = {0};
    size_t left = VIRTIO_BLK_ID_BYTES;

    const char *name = ioc_bdev_name(req->vq->dev->bdev);

    memcpy(id, name, IOC_MIN(strlen(name), sizeof(id)));
    for (int i = 0; i < req->nr_data && left > 0; i++) {
        size_t n = IOC_MIN(left, req->data[i].iov_len);

        memcpy(req->data[i].iov_base, id + (VIRTIO_BLK_ID_BYTES - left), n);
        left -= n;
        req->used_len += (uint32_t)n;
    }
    return VIRTIO_BLK_S_OK;
}

/* Start one request. Returns a status to complete with now, or -1 when IO went out. */
static int
req_start(struct vhost_req *req, const struct virtio_blk_outhdr *h)
{
    switch (h->type) {
    case VIRTIO_BLK_T_IN:
        return req_rw(req, h, false);
    case VIRTIO_BLK_T_OUT:
        return req_rw(req, h, true);
    case VIRTIO_BLK_T_FLUSH:
        return req_submit_io(req, IOC_IO_FLUSH, 0, 0, 0) == 0 ? -1 : VIRTIO_BLK_S_IOERR;
    case VIRTIO_BLK_T_GET_ID:
        return req_get_id(req);
    case VIRTIO_BLK_T_DISCARD:
        return req_discard_wz(req, false);
    case VIRTIO_BLK_T_WRITE_ZEROES:
        return req_discard_wz(req, true);
    default:
        return VIRTIO_BLK_S_UNSUPP;
    }
}

/*
 * Frame a chain: header from the readable part, status = last writable byte,
 * data = the rest (readable for OUT/DISCARD/WZ, writable for IN/GET_ID).
 */
static int
req_frame(struct vhost_req *req, struct virtio_blk_outhdr *h)
{
    struct vhost_chain *c = &req->chain;
    unsigned nr = c->nr_read;
    struct iovec *last;

    if (c->nr_write == 0 || !iov_read(c->iov, c->nr_read, h, sizeof(*h))) {
        return -EINVAL;
    }
    last = &c->iov[c->nr_read + c->nr_write - 1];
    req->status = (uint8_t *)last->iov_base + last->iov_len - 1;
    last->iov_len--;
    if (h->type == VIRTIO_BLK_T_IN || h->type == VIRTIO_BLK_T_GET_ID) {
        unsigned w = c->nr_write;

        iov_trim_front(c->iov, &nr, sizeof(*h)); /* nr should become 0 */
        if (nr != 0) {
            return -EINVAL;
        }
        req->data = c->iov + c->nr_read;
        iov_trim_front(req->data, &w, 0);
        if (w > 0 && req->data[w - 1].iov_len == 0) {
            w--;
        }
        req->nr_data = (int)w;
    } else {
        iov_trim_front(c->iov, &nr, sizeof(*h));
        req->data = c->iov;
        req->nr_data = (int)nr;
    }
    return 0;
}

int
vhost_blk_process(struct vhost_queue *vq, unsigned budget)
{
    struct vhost_dev *dev = vq->dev;
    unsigned n = 0;

    while (n < budget && !atomic_load_explicit(&dev->broken, memory_order_relaxed)) {
        struct virtio_blk_outhdr h;
        struct vhost_req *req;
        uint16_t head;
        int rc = vhost_vring_peek(vq, &head);

        if (rc == 0) {
            break;
        }
        if (rc < 0 || vq->reqs[head].busy) {
            vhost_dev_set_broken(dev, rc < 0 ? "invalid avail ring entry"
                                             : "descriptor head reused while in flight");
            break;
        }
        req = &vq->reqs[head];
        if (vhost_vring_pop(vq, head, &req->chain) != 0) {
            vhost_dev_set_broken(dev, "invalid descriptor chain");
            break;
        }
        req->vq = vq;
        req->used_len = 0;
        if (req_frame(req, &h) != 0) {
            vhost_dev_set_broken(dev, "virtio-blk request without header or status");
            break;
        }
        req->busy = true;
        vq->inflight++;
        rc = req_start(req, &h);
        if (rc >= 0) {
            req_complete(req, (uint8_t)rc);
        }
        n++;
    }
    return (int)n;
}
