/*
 * lib/vblk/vblk_internal.h - private state of libvblk, shared by vblk.c
 * (connection, vhost-user messages, memory) and vblk_queue.c (data path).
 */
#ifndef IOC_LIB_VBLK_VBLK_INTERNAL_H
#define IOC_LIB_VBLK_VBLK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ioc/vblk.h"
#include "lib/vblk/vhost_user_proto.h"

#define IOC_VBLK_MIN(a, b) ((a) < (b) ? (a) : (b))

#define VBLK_MAX_QUEUES 16
#define VBLK_PAGE 4096u

/* Per request slot (indexed by head descriptor), in shared memory. */
struct vblk_slot {
    struct virtio_blk_outhdr hdr;
    struct virtio_blk_discard_wz dwz;
    uint8_t status;
    uint8_t pad[31];
};
_Static_assert(sizeof(struct vblk_slot) == 64, "vblk slot");

struct vblk_queue {
    struct vblk *v;
    unsigned index;
    unsigned size;
    struct vring_desc *desc;      /* shared */
    struct vring_avail *avail;    /* shared */
    struct vring_used *used;      /* shared */
    struct vblk_slot *slots;      /* shared, [size] */
    /* Private: never read back from shared memory, which the backend could scribble. */
    uint16_t *next_free;          /* descriptor free list links */
    uint16_t *chain_len;          /* per head: descriptors in the chain */
    void **cookies;               /* per head */
    uint16_t free_head;
    unsigned nr_free;
    uint16_t avail_idx;           /* next avail index we will publish */
    uint16_t kicked_idx;          /* avail index the backend was last told about */
    uint16_t used_idx;            /* next used index we will reap */
    unsigned inflight;
    int kick_fd;
    int call_fd;
    enum vblk_mode mode;
    uint64_t spin_ns;             /* adaptive: current spin window */
    uint64_t gap_ewma_ns;         /* adaptive: mean wait before a completion arrived */
    uint64_t nospin_until;        /* adaptive: sleep-only until then (preempted while spinning) */
    uint64_t nospin_ns;           /* adaptive: current length of that back-off, 0 = none */
    unsigned miss_run;            /* adaptive: spin windows in a row that ran out */
    unsigned rr;                  /* vblk_queues_wait: which queue of the set is reaped first */
    bool event_idx;               /* VIRTIO_RING_F_EVENT_IDX negotiated */
    uint16_t used_event;          /* private copy of what we last wrote to used_event */
    struct vblk_queue_stats stats;
};

struct vblk {
    int sock;
    uint64_t features;            /* acked */
    uint64_t protocol_features;   /* acked */
    struct virtio_blk_config config;
    uint64_t capacity;
    uint32_t block_size;
    unsigned seg_max;
    unsigned nr_queues;
    enum vblk_mode mode;
    uint64_t spin_max_ns;
    /* The one shared region: rings and slots first, then the buffer heap. */
    int mem_fd;
    uint8_t *mem;
    size_t mem_len;
    uint8_t *heap;
    size_t heap_len;
    /* Heap allocator: one byte per 4 KiB page: 0 free, else run length marker. */
    pthread_mutex_t heap_lock;    /* vblk_buf_alloc may be called from any thread */
    uint32_t *heap_runs;          /* per page: pages in the run starting here, 0 = not a start */
    uint8_t *heap_used;
    size_t heap_pages;
    size_t heap_hint;
    struct vblk_queue queues[VBLK_MAX_QUEUES];
};

/* vblk_queue.c */
size_t vblk_queue_layout_size(unsigned size);
void vblk_queue_layout(struct vblk_queue *q, uint8_t *base, unsigned size);
int vblk_queue_init_private(struct vblk_queue *q);
void vblk_queue_fini_private(struct vblk_queue *q);

/*
 * used_event for a sleep with `inflight` requests outstanding: wake after
 * about half of them completed, and after the first when there are fewer
 * than 4 (a QD1 request is always signalled).
 */
static inline uint16_t
vblk_sleep_used_event(uint16_t used_idx, unsigned inflight)
{
    unsigned batch = inflight / 2 > 0 ? inflight / 2 : 1;

    return (uint16_t)(used_idx + batch - 1);
}

static inline bool
vblk_has_feature(const struct vblk *v, unsigned bit)
{
    return (v->features >> bit) & 1u;
}

#endif
