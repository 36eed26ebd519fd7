/*
 * target/vhost/vhost_internal.h - private state of the vhost-user-blk target.
 *
 * One vhost_dev per client connection. vhost_msg.c owns the control plane
 * (messages, memory table, vring setup), vhost_vring.c the split rings
 * (chain validation, used ring, notification flags), vhost_blk.c turns
 * chains into bdev IO, vhost_target.c owns sockets and reactors.
 * The control plane (messages, memory table, vring setup) runs on the
 * connection's reactor; each started queue's data path runs on the queue's
 * own reactor, and the two never touch a queue's state at the same time (see
 * vhost_target.c). `broken` is the one field written from any of them.
 */
#ifndef IOC_TARGET_VHOST_VHOST_INTERNAL_H
#define IOC_TARGET_VHOST_VHOST_INTERNAL_H

#include "ioc/common.h"

#include <stdatomic.h>
#include <sys/uio.h>

#include "bdev/bdev.h"
#include "core/reactor.h"
#include "target/vhost/vhost_proto.h"

struct vhost_dev;

/* One mapped memory region of the client. */
struct vhost_region {
    uint64_t gpa;       /* "guest physical" start (descriptor addresses) */
    uint64_t uva;       /* the client's virtual start (vring addresses) */
    uint64_t size;
    uint8_t *host;      /* our mapping of gpa */
    void *mmap_base;    /* what to munmap (NULL when not mmapped: tests, fuzzers) */
    size_t mmap_len;
};

/* A validated descriptor chain: readable segments first, then writable. */
struct vhost_chain {
    uint16_t head;
    unsigned nr_read;
    unsigned nr_write;
    struct iovec iov[VHOST_MAX_SEGS]; /* [0, nr_read) readable, then nr_write writable */
    uint64_t write_len;               /* bytes of writable segments */
};

/* One in-flight virtio-blk request (indexed by head descriptor). */
struct vhost_req {
    struct vhost_queue *vq;
    struct vhost_chain chain;
    struct iovec *data;     /* data segments inside chain.iov */
    int nr_data;
    uint8_t *status;        /* where the status byte goes */
    uint32_t used_len;
    bool busy;
};

/* Where a started queue runs, as its connection's reactor sees it (vhost_target.c). */
enum vhost_queue_run {
    VHOST_QUEUE_IDLE = 0,   /* not on any reactor: the control plane owns every field */
    VHOST_QUEUE_RUNNING,    /* handed to its reactor: data-path fields are the reactor's */
    VHOST_QUEUE_STOPPING,   /* stop sent, waiting for the reactor to drain and hand back */
};

struct vhost_queue {
    struct vhost_dev *dev;
    unsigned index;
    unsigned num;               /* ring size, 0 until SET_VRING_NUM */
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t last_avail;        /* next avail index to take */
    uint16_t used_idx;          /* next used index to write (private copy) */
    uint16_t signalled_used;    /* used index at the last call signal */
    int kick_fd;
    int call_fd;
    bool enabled;
    bool addr_set;
    bool started;               /* ready and announced to the glue */
    struct vhost_user_addr addr;/* as the client gave it, re-translated on SET_MEM_TABLE */
    unsigned inflight;          /* requests popped and not yet pushed (= bdev IOs in flight) */
    struct vhost_req *reqs;     /* [num], allocated when the queue starts */
    /*
     * Owned by vhost_target.c. `run` and `reactor` belong to the connection's
     * reactor; the rest to the queue's reactor while run != IDLE.
     */
    struct ioc_reactor *reactor;/* the reactor this queue runs on */
    enum vhost_queue_run run;
    struct ioc_poller *poller;  /* registered while POLLING */
    bool sleeping;
    bool parked;                /* sleeping while bdev IO is in flight: a completion wakes it */
    bool stop_req;              /* draining before handing the queue back */
    uint64_t last_work_ns;
    uint64_t sleep_ns;          /* when it went to sleep */
    uint64_t window_ns;         /* adaptive idle window */
    struct ioc_uring_req kick_req;
    uint64_t kick_val;
    bool kick_posted;
    struct ioc_deferred signal_defer;
    struct ioc_deferred stop_defer;
    char pad[64];               /* keeps two queues' hot fields off one cache line */
};

/* Callbacks from the control plane into the glue (vhost_target.c, or tests). */
struct vhost_dev_ops {
    /* A queue became ready (addresses, kick and call set, enabled) or stopped. */
    void (*queue_started)(struct vhost_dev *dev, struct vhost_queue *vq);
    void (*queue_stopping)(struct vhost_dev *dev, struct vhost_queue *vq);
    /* Requests completed on vq (used ring updated): signal the client if it wants. */
    void (*completed)(struct vhost_dev *dev, struct vhost_queue *vq);
};

struct vhost_dev {
    const struct vhost_dev_ops *ops;
    void *ctx;                  /* the glue's */
    char name[128];             /* for logs: "vhost SOCKET#fd" */
    /* Negotiated state. */
    uint64_t features;          /* acked by the client */
    uint64_t protocol_features;
    bool owner;
    /* The export's properties. */
    struct ioc_bdev *bdev;      /* borrowed from the export */
    bool read_only;
    unsigned max_queues;
    /* Memory table. */
    unsigned nr_regions;
    struct vhost_region regions[VHOST_USER_MAX_REGIONS];
    struct vhost_queue queues[VHOST_MAX_QUEUES];
    atomic_bool broken;         /* the client broke the protocol: needs reset (any reactor) */
};

/* Requests in flight on all queues (only meaningful while no queue runs elsewhere). */
static inline unsigned
vhost_dev_inflight(const struct vhost_dev *dev)
{
    unsigned n = 0;

    for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
        n += dev->queues[i].inflight;
    }
    return n;
}

/* ---- vhost_msg.c: the control plane, socket-free ---- */

/* A reply to send (size 0: none). */
struct vhost_reply {
    struct vhost_user_hdr hdr;
    uint8_t payload[VHOST_USER_PAYLOAD_MAX];
};

uint64_t vhost_dev_features(const struct vhost_dev *dev);
void vhost_dev_init(struct vhost_dev *dev, const struct vhost_dev_ops *ops, void *ctx,
                    struct ioc_bdev *bdev, bool read_only, unsigned max_queues);
/**
 * Handle one complete message. fds (nfds of them) are taken: each one is
 * either kept by the device or closed. On return reply->hdr.size says
 * whether (and what) to answer; reply->hdr.request == 0 means no reply.
 * Returns 0, or a negative errno meaning "drop the connection".
 */
int vhost_dev_handle_msg(struct vhost_dev *dev, const struct vhost_user_hdr *hdr,
                         const void *payload, int *fds, int nfds, struct vhost_reply *reply);
/**
 * The queues (bit i = queue i) whose state handling this message may change:
 * the glue stops and drains those on their reactors before calling
 * vhost_dev_handle_msg(). Conservative: a malformed or unknown message names
 * every queue. Reads only what the header says is there.
 */
uint32_t vhost_msg_queue_mask(const struct vhost_dev *dev, const struct vhost_user_hdr *hdr,
                              const void *payload);
/** Release everything the device holds (maps, fds, request arrays). */
void vhost_dev_fini(struct vhost_dev *dev);
/** Install a region without mmap (unit tests and fuzzers). */
int vhost_dev_add_region(struct vhost_dev *dev, uint64_t gpa, uint64_t uva, uint64_t size,
                         void *host);
/** Mark the device broken (needs reset): no more requests are taken. */
void vhost_dev_set_broken(struct vhost_dev *dev, const char *why);
bool vhost_queue_ready(const struct vhost_queue *vq);

/* ---- vhost_vring.c ---- */

static inline bool
vhost_queue_event_idx(const struct vhost_queue *vq)
{
    return (vq->dev->features >> VIRTIO_RING_F_EVENT_IDX) & 1u;
}

/* used_event (client -> us) after avail->ring[num]; avail_event (us -> client) after used->ring[num]. */
static inline uint16_t *
vhost_vring_used_event(const struct vhost_queue *vq)
{
    return &vq->avail->ring[vq->num];
}

static inline uint16_t *
vhost_vring_avail_event(const struct vhost_queue *vq)
{
    return (uint16_t *)&vq->used->ring[vq->num];
}

/** Translate [gpa, gpa+len) to our pointer if it lies in one region, else NULL. */
void *vhost_gpa_to_host(const struct vhost_dev *dev, uint64_t gpa, uint64_t len);
void *vhost_uva_to_host(const struct vhost_dev *dev, uint64_t uva, uint64_t len);
/** Whether the avail ring has entries we have not taken. */
bool vhost_vring_has_work(const struct vhost_queue *vq);
/**
 * Read the head of the next avail entry (read once: pass it to pop). Returns
 * 1 (*head set), 0 (ring empty) or -EINVAL (head out of range, or the client
 * published more than a ring's worth).
 */
int vhost_vring_peek(struct vhost_queue *vq, uint16_t *head);
/**
 * Validate the chain starting at head (from vhost_vring_peek) into chain and
 * consume the avail entry. Returns 0 or -EINVAL (invalid: nothing consumed;
 * the caller marks the device broken).
 */
int vhost_vring_pop(struct vhost_queue *vq, uint16_t head, struct vhost_chain *chain);
/** Put a completed chain on the used ring (visible to the client at once). */
void vhost_vring_push(struct vhost_queue *vq, uint16_t head, uint32_t len);
/**
 * Whether the client wants a call signal now: after a fence, NO_INTERRUPT,
 * or with EVENT_IDX whether used_event was passed since the last check.
 */
bool vhost_vring_need_signal(struct vhost_queue *vq);
/**
 * EVENT_IDX only, after a push: whether the push passed used_event as last
 * read (no fence: a miss is caught by vhost_vring_need_signal later).
 */
bool vhost_vring_early_signal(struct vhost_queue *vq);
/**
 * Set or clear VRING_USED_F_NO_NOTIFY (we poll / we want kicks); wanting
 * kicks with EVENT_IDX also publishes avail_event = last_avail. Clearing
 * ends with a full fence: the caller then rechecks avail->idx.
 */
void vhost_vring_set_no_notify(struct vhost_queue *vq, bool no_notify);

/* ---- vhost_blk.c ---- */

/** Virtio-blk device features the target offers. */
uint64_t vhost_blk_features(const struct vhost_dev *dev);
/** Fill the virtio-blk config space. */
void vhost_blk_config(const struct vhost_dev *dev, struct virtio_blk_config *cfg);
/**
 * Take up to budget requests from vq and start them. Returns the number
 * taken (work done), 0 if none; marks the device broken on invalid chains.
 * Needs a reactor thread (bdev IO).
 */
int vhost_blk_process(struct vhost_queue *vq, unsigned budget);

#endif
