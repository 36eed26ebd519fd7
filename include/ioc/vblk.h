/*
 * ioc/vblk.h - libvblk: a user-space virtio-blk initiator over vhost-user.
 *
 * libvblk connects to a vhost-user-blk backend (iocd's vhost target,
 * qemu-storage-daemon, any libvhost-user server) through a unix socket,
 * negotiates features, and shares one memfd with it holding the virtqueues
 * and an IO buffer heap. Requests go through split virtqueues in that shared
 * memory: no copies and, when the backend polls, no syscalls per IO.
 *
 * Buffers: every iovec passed to vblk_submit() must point into memory from
 * vblk_buf_alloc() (the only memory the backend can see); others are refused
 * with -EFAULT.
 *
 * Threads: a struct vblk_queue is used by one thread at a time (no locks on
 * the data path); different queues may be driven by different threads.
 * vblk_buf_alloc()/vblk_buf_free() are thread safe. The synchronous helpers
 * use queue 0.
 *
 * Errors: functions return 0 (or a count) on success and a negative errno
 * on failure; errno is never to be read. See docs/vblk.md.
 */
#ifndef IOC_VBLK_H
#define IOC_VBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vblk;
struct vblk_queue;

/* How vblk_wait() waits for completions (and whether the backend signals). */
enum vblk_mode {
    VBLK_MODE_EVENTFD = 0, /* sleep on the call eventfd; the backend signals each batch */
    VBLK_MODE_BUSY,        /* spin on the used ring; the backend never signals */
    VBLK_MODE_ADAPTIVE,    /* spin for a window adapted to the completion rate, then sleep */
};

struct vblk_opts {
    size_t opts_size;      /* sizeof(struct vblk_opts), set by vblk_opts_init() */
    unsigned num_queues;   /* queues wanted (capped by the backend); default 1 */
    unsigned queue_size;   /* descriptors per queue, a power of 2; default 256 */
    size_t mem_size;       /* bytes of shared buffer heap; default 64 MiB */
    enum vblk_mode mode;   /* default VBLK_MODE_ADAPTIVE */
    uint64_t spin_max_ns;  /* adaptive: cap of the spin window; default 200 us */
    bool no_event_idx;     /* do not negotiate VIRTIO_RING_F_EVENT_IDX (tests); default false */
};

/* Counters of one queue since connect (vblk_queue_get_stats). */
struct vblk_queue_stats {
    uint64_t kicks;        /* kick eventfd writes */
    uint64_t sleeps;       /* times a wait slept in poll(2) on the call eventfd */
    uint64_t arms;         /* times a wait asked for a signal before it would sleep (the
                            * recheck after asking may find work and skip the sleep, but
                            * the backend may already have signalled) */
    uint64_t calls;        /* call eventfd signals consumed (the eventfd counter's sum) */
    uint64_t spin_misses;  /* adaptive: spin windows that ran out without a completion */
    uint64_t backoffs;     /* adaptive: sleep-only back-offs after a run of such misses */
    uint64_t preempts;     /* adaptive: spins that saw a gap (preempted): back-off at once */
};

enum vblk_op {
    VBLK_OP_READ = 0,
    VBLK_OP_WRITE,
    VBLK_OP_FLUSH,
    VBLK_OP_DISCARD,
    VBLK_OP_WRITE_ZEROES,
    VBLK_OP_GET_ID,        /* read the 20-byte device id into iov */
};

struct vblk_completion {
    void *cookie;          /* as given to vblk_submit() */
    int status;            /* 0, -EIO (VIRTIO_BLK_S_IOERR) or -ENOTSUP (UNSUPP) */
};

/** Fill opts with the defaults. */
void vblk_opts_init(struct vblk_opts *opts);

/**
 * Connect to the vhost-user-blk socket at path and set up every queue.
 * opts may be NULL (defaults). On success *out is a new handle (vblk_close).
 * Returns 0 or -errno: -ENOENT/-ECONNREFUSED (socket), -EPROTO (the backend
 * misbehaved or lacks VIRTIO_F_VERSION_1), -ENOMEM, -EINVAL (bad opts).
 */
int vblk_connect(const char *path, const struct vblk_opts *opts, struct vblk **out);

/** Disconnect and free everything; NULLs *v. Requests still in flight are abandoned. */
void vblk_close(struct vblk **v);

uint64_t vblk_capacity(const struct vblk *v);   /* bytes */
uint32_t vblk_block_size(const struct vblk *v); /* logical block size, 512 unless BLK_SIZE */
bool vblk_read_only(const struct vblk *v);
unsigned vblk_num_queues(const struct vblk *v);
/** Largest number of data segments per request (from seg_max). */
unsigned vblk_max_segments(const struct vblk *v);
/** Whether the backend offered DISCARD / WRITE_ZEROES / FLUSH. */
bool vblk_supports(const struct vblk *v, enum vblk_op op);

/** Shared memory for IO buffers, 4 KiB aligned; NULL when the heap is exhausted. */
void *vblk_buf_alloc(struct vblk *v, size_t size);
/** Return a buffer from vblk_buf_alloc(); NULL is ignored. */
void vblk_buf_free(struct vblk *v, void *buf);

/** Queue i (0 <= i < vblk_num_queues); borrowed, valid until vblk_close(). */
struct vblk_queue *vblk_get_queue(struct vblk *v, unsigned i);

/**
 * Put one request on the queue (not yet visible to the backend: see
 * vblk_queue_kick). offset and length are bytes, multiples of 512.
 * READ/WRITE/GET_ID use iov/iovcnt (length is ignored, the iovecs' sum is
 * used); DISCARD/WRITE_ZEROES use length; FLUSH uses neither.
 * Returns 0, or -EAGAIN (the ring is full: reap completions first),
 * -EFAULT (a buffer outside the shared heap), -EINVAL (misaligned, too many
 * segments, beyond capacity), -EROFS, -ENOTSUP (not offered by the backend).
 */
int vblk_queue_submit(struct vblk_queue *q, enum vblk_op op, uint64_t offset, uint64_t length,
                      const struct iovec *iov, int iovcnt, void *cookie);

/** Publish submitted requests and notify the backend unless it is polling. Returns 0 or -errno. */
int vblk_queue_kick(struct vblk_queue *q);

/** Reap up to max completions without waiting. Returns the number reaped (>= 0). */
int vblk_queue_poll(struct vblk_queue *q, struct vblk_completion *out, int max);

/**
 * Wait (per the queue's mode) until at least one completion is available or
 * timeout_ms passes (-1: forever), then reap up to max. Returns the number
 * reaped, 0 on timeout, or -errno (-EPIPE: the backend went away).
 */
int vblk_queue_wait(struct vblk_queue *q, struct vblk_completion *out, int max, int timeout_ms);

/**
 * Wait on several queues of one connection at once, from one thread: reap
 * what is there (starting with a different queue each call), else wait per
 * the connection's mode, spinning on all the used rings and/or sleeping in
 * ONE poll(2) on all their call eventfds, until at least one completion is
 * available or timeout_ms passes (-1: forever); then reap up to max from all
 * of them. The cookie tells the caller which request completed (and so
 * which queue). The adaptive state of the set lives in qs[0]: pass the same
 * set each time. Returns the number reaped, 0 on timeout, -EINVAL (nq 0 or
 * above 16, a NULL or repeated queue, queues of different connections,
 * max <= 0), or -errno as vblk_queue_wait (-EPIPE: the backend went away).
 * vblk_queue_wait(q, ...) is this with the set {q}.
 */
int vblk_queues_wait(struct vblk_queue *const *qs, unsigned nq, struct vblk_completion *out,
                     int max, int timeout_ms);

/**
 * The queue's call eventfd (readable when the backend signalled a
 * completion, in eventfd mode or while a wait sleeps), for applications
 * that wait in their own poll/epoll loop: poll it, read it (8 bytes) and
 * then vblk_queue_poll(). Borrowed: valid until vblk_close(). In busy and
 * adaptive modes the backend only signals while NO_INTERRUPT is clear, which
 * libvblk sets around its own sleeps; such applications use eventfd mode.
 */
int vblk_queue_call_fd(const struct vblk_queue *q);

/** Requests submitted and not yet reaped. */
unsigned vblk_queue_inflight(const struct vblk_queue *q);

/**
 * Copy the queue's counters into *out. The adaptive counters of a
 * vblk_queues_wait() set are kept in its first queue.
 */
void vblk_queue_get_stats(const struct vblk_queue *q, struct vblk_queue_stats *out);

/** Whether VIRTIO_RING_F_EVENT_IDX was negotiated (event indexes instead of ring flags). */
bool vblk_event_idx(const struct vblk *v);

/* ---- synchronous helpers (queue 0; buf must come from vblk_buf_alloc) ---- */
int vblk_read(struct vblk *v, void *buf, size_t len, uint64_t offset);
int vblk_write(struct vblk *v, const void *buf, size_t len, uint64_t offset);
int vblk_flush(struct vblk *v);
int vblk_discard(struct vblk *v, uint64_t offset, uint64_t len);
int vblk_write_zeroes(struct vblk *v, uint64_t offset, uint64_t len);

/** "eventfd", "busy", "adaptive" -> mode. Returns 0 or -EINVAL. */
int vblk_mode_parse(const char *s, enum vblk_mode *out);

#ifdef __cplusplus
}
#endif

#endif
