/*
 * target/vhost/vhost_vring.c - split virtqueues in the client's memory.
 *
 * What: address translation through the memory table, taking descriptor
 * chains from the avail ring (vhost_vring_pop), returning them on the used
 * ring (vhost_vring_push), and the two notification flags.
 *
 * How (trust): the client owns this memory and can change it at any time, so
 * every descriptor is copied to a local before it is checked and used, the
 * avail index is read once per pop, and every check is against our own copy:
 *   - the head and every `next` are < the ring size;
 *   - a chain is at most min(ring size, VHOST_MAX_SEGS) long, which also
 *     ends loops;
 *   - each buffer [addr, addr+len) lies inside ONE mapped region (no
 *     wrap-around, no straddling), len > 0;
 *   - readable descriptors come before writable ones (virtio 2.6.4.2);
 *   - INDIRECT is refused (not negotiated);
 *   - the avail index never runs more than a ring ahead of us.
 * A violation returns -EINVAL without consuming the chain; the caller marks
 * this client's device broken. Nothing outside the mapped regions is ever
 * touched.
 *
 * Memory ordering: the client publishes avail->idx with release semantics
 * after writing ring entries; we load it with acquire. We publish used->idx
 * with release after the element. Notification suppression is a Dekker pair
 * on each side: (store flag or event index; full fence; load index) against
 * (store index; full fence; load flag or event index).
 *
 * EVENT_IDX (VIRTIO_RING_F_EVENT_IDX, when the client acks it): the flags
 * are then ignored by both sides (virtio 1.x 2.7.7, 2.7.10) and replaced by
 * two indexes: used_event, the u16 after avail->ring[num], which the client
 * writes ("signal me once used->idx passes this"), and avail_event, the u16
 * after used->ring[num], which we write ("kick me once avail->idx passes
 * this"). We signal when used_event lies in [signalled_used, used_idx), i.e.
 * vring_need_event(used_event, new, old) in 16-bit arithmetic, and we move
 * signalled_used to used_idx at every check (signalled or not), so the
 * window is at most one reactor iteration of completions and never a whole
 * wrap (65536 pushes between two checks would look like none). Besides
 * that end-of-iteration check, each completion looks at used_event without
 * a fence (vhost_vring_early_signal): a client sleeping until half of its
 * requests are done is woken at once when the push that passes its
 * used_event happens, not after the rest of the batch, so it resubmits while
 * we complete the others; a stale read only defers the decision to the
 * fenced check. While we
 * poll, avail_event is left where it was (behind the client's index, so the
 * client does not kick until the index wraps past it again: at most one
 * spurious kick per 65536 requests, which the kick read absorbs); going to
 * sleep stores avail_event = last_avail, fence, recheck, exactly as the
 * NO_NOTIFY flag was. We keep writing the flag too: harmless to a client
 * that ignores it.
 *
 * Not done: indirect tables, packed rings.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdatomic.h>

#include "target/vhost/vhost_internal.h"

static void *
region_lookup(const struct vhost_dev *dev, uint64_t addr, uint64_t len, bool by_uva)
{
    for (unsigned i = 0; i < dev->nr_regions; i++) {
        const struct vhost_region *r = &dev->regions[i];
        uint64_t start = by_uva ? r->uva : r->gpa;

        if (addr >= start && addr - start < r->size && len <= r->size - (addr - start)) {
            return r->host + (addr - start);
        }
    }
    return NULL;
}

void *
vhost_gpa_to_host(const struct vhost_dev *dev, uint64_t gpa, uint64_t len)
{
    return region_lookup(dev, gpa, len, false);
}

void *
vhost_uva_to_host(const struct vhost_dev *dev, uint64_t uva, uint64_t len)
{
    return region_lookup(dev, uva, len, true);
}

bool
vhost_vring_has_work(const struct vhost_queue *vq)
{
    return __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE) != vq->last_avail;
}

static int
chain_add(const struct vhost_queue *vq, struct vhost_chain *c, const struct vring_desc *d)
{
    void *host;

    if (d->flags & VRING_DESC_F_INDIRECT || d->len == 0) {
        return -EINVAL;
    }
    host = vhost_gpa_to_host(vq->dev, d->addr, d->len);
    if (host == NULL) {
        return -EINVAL;
    }
    if (d->flags & VRING_DESC_F_WRITE) {
        c->nr_write++;
        c->write_len += d->len;
    } else if (c->nr_write > 0) {
        return -EINVAL; /* readable after writable */
    } else {
        c->nr_read++;
    }
    c->iov[c->nr_read + c->nr_write - 1] = (struct iovec){host, d->len};
    return 0;
}

int
vhost_vring_peek(struct vhost_queue *vq, uint16_t *head)
{
    uint16_t avail = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
    uint16_t idx;

    if (avail == vq->last_avail) {
        return 0;
    }
    if ((uint16_t)(avail - vq->last_avail) > vq->num) {
        return -EINVAL;
    }
    idx = __atomic_load_n(&vq->avail->ring[vq->last_avail % vq->num], __ATOMIC_RELAXED);
    if (idx >= vq->num) {
        return -EINVAL;
    }
    *head = idx;
    return 1;
}

int
vhost_vring_pop(struct vhost_queue *vq, uint16_t head, struct vhost_chain *c)
{
    unsigned max = IOC_MIN(vq->num, VHOST_MAX_SEGS);
    uint16_t idx = head;

    c->head = idx;
    c->nr_read = c->nr_write = 0;
    c->write_len = 0;
    for (unsigned n = 0;; n++) {
        struct vring_desc d;

        if (n >= max) {
            return -EINVAL; /* too long, or a loop */
        }
        d.addr = __atomic_load_n(&vq->desc[idx].addr, __ATOMIC_RELAXED);
        d.len = __atomic_load_n(&vq->desc[idx].len, __ATOMIC_RELAXED);
        d.flags = __atomic_load_n(&vq->desc[idx].flags, __ATOMIC_RELAXED);
        d.next = __atomic_load_n(&vq->desc[idx].next, __ATOMIC_RELAXED);
        if (chain_add(vq, c, &d) != 0) {
            return -EINVAL;
        }
        if (!(d.flags & VRING_DESC_F_NEXT)) {
            break;
        }
        if (d.next >= vq->num) {
            return -EINVAL;
        }
        idx = d.next;
    }
    vq->last_avail++;
    return 0;
}

void
vhost_vring_push(struct vhost_queue *vq, uint16_t head, uint32_t len)
{
    struct vring_used_elem *e = &vq->used->ring[vq->used_idx % vq->num];

    __atomic_store_n(&e->id, head, __ATOMIC_RELAXED);
    __atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
    vq->used_idx++;
    __atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
}

bool
vhost_vring_need_signal(struct vhost_queue *vq)
{
    if (vq->used_idx == vq->signalled_used) {
        return false;
    }
    atomic_thread_fence(memory_order_seq_cst);
    if (vhost_queue_event_idx(vq)) {
        uint16_t old = vq->signalled_used;
        uint16_t ev = __atomic_load_n(vhost_vring_used_event(vq), __ATOMIC_RELAXED);

        vq->signalled_used = vq->used_idx;
        return vring_need_event(ev, vq->used_idx, old);
    }
    if (__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT) {
        return false;
    }
    vq->signalled_used = vq->used_idx;
    return true;
}

bool
vhost_vring_early_signal(struct vhost_queue *vq)
{
    uint16_t ev = __atomic_load_n(vhost_vring_used_event(vq), __ATOMIC_RELAXED);

    if (!vring_need_event(ev, vq->used_idx, vq->signalled_used)) {
        return false;
    }
    vq->signalled_used = vq->used_idx;
    return true;
}

void
vhost_vring_set_no_notify(struct vhost_queue *vq, bool no_notify)
{
    __atomic_store_n(&vq->used->flags, no_notify ? VRING_USED_F_NO_NOTIFY : 0,
                     __ATOMIC_RELAXED);
    if (!no_notify && vhost_queue_event_idx(vq)) {
        __atomic_store_n(vhost_vring_avail_event(vq), vq->last_avail, __ATOMIC_RELAXED);
    }
    if (!no_notify) {
        atomic_thread_fence(memory_order_seq_cst); /* then the caller rechecks avail->idx */
    }
}
