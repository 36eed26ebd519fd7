/*
 * target/target_outq.h - the output queue of a stream target connection.
 *
 * An intrusive FIFO of outgoing pieces, each an iovec list that points into
 * its owner (a reply header and the data buffer the bdev filled: no copy).
 * The transport asks for the queued bytes as one iovec array
 * (ioc_target_outq_iov) for ONE sendmsg, and reports how many bytes went
 * out (ioc_target_outq_sent): every piece whose bytes are all sent is popped
 * and retired through its done(); a partial send leaves `off` inside the
 * head, so the next iovec array resumes mid-iovec. A piece may end with a
 * range of a file instead of memory (a large READ's data): the iovec array
 * stops before it, and once it is the head the transport splices the range
 * (ioc_target_outq_file) and reports those bytes the same way.
 *
 * Used by the NBD and iSCSI engines (nbd_conn.c, iscsi_conn.c). Append and
 * pop run per reply, so they are inline; the walks run once per send.
 * Nothing here allocates. All calls on the connection's reactor.
 */
#ifndef IOC_TARGET_TARGET_OUTQ_H
#define IOC_TARGET_TARGET_OUTQ_H

#include "ioc/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/*
 * One queued piece of output, embedded in its owner (request, task, control
 * PDU). The owner fills iov, iovcnt and done; the queue fills next and len.
 */
struct ioc_target_out {
    struct ioc_target_out *next;
    struct iovec *iov;       /* borrowed: must stay valid until done() */
    int iovcnt;
    size_t len;              /* the iov lengths and file_len, set when queued */
    void (*done)(struct ioc_target_out *o);
    /* After the iovecs: file_len bytes of file_fd at file_off, spliced (append_file). */
    int file_fd;
    uint64_t file_off;
    size_t file_len;
};

struct ioc_target_outq {
    struct ioc_target_out *head;
    struct ioc_target_out **tail;
    size_t off;              /* bytes of head already sent */
};

/** Make q empty. */
static inline void
ioc_target_outq_init(struct ioc_target_outq *q)
{
    q->head = NULL;
    q->tail = &q->head;
    q->off = 0;
}

static inline bool
ioc_target_outq_empty(const struct ioc_target_outq *q)
{
    return q->head == NULL;
}

/** Append o (borrowed until its done() runs, or until it is popped). */
static inline void
ioc_target_outq_append(struct ioc_target_outq *q, struct ioc_target_out *o)
{
    o->len = ioc_iov_len(o->iov, (size_t)o->iovcnt);
    o->file_len = 0;
    o->next = NULL;
    *q->tail = o;
    q->tail = &o->next;
}

/**
 * Append o, whose iovecs are followed by len bytes of file fd at off: the
 * transport sends the iovecs, then splices those bytes from the file
 * (ioc_target_outq_file). fd must stay open until done() runs.
 */
static inline void
ioc_target_outq_append_file(struct ioc_target_outq *q, struct ioc_target_out *o, int fd,
                            uint64_t off, size_t len)
{
    ioc_target_outq_append(q, o);
    o->file_fd = fd;
    o->file_off = off;
    o->file_len = len;
    o->len += len;
}

/** Remove and return the head (q must not be empty); done() is not called. */
static inline struct ioc_target_out *
ioc_target_outq_pop(struct ioc_target_outq *q)
{
    struct ioc_target_out *o = q->head;

    q->head = o->next;
    if (q->head == NULL) {
        q->tail = &q->head;
    }
    q->off = 0;
    return o;
}

/**
 * Fill iov (up to max entries) with the unsent bytes of the queue, in order,
 * starting `off` bytes into the head, and stopping after the iovecs of a
 * piece with file bytes (those are not in memory). Returns the count; 0 if
 * the queue is empty or its head is down to its file bytes.
 */
int ioc_target_outq_iov(const struct ioc_target_outq *q, struct iovec *iov, int max);

/**
 * Whether the head is down to its file bytes: then the unsent ones are *len
 * bytes of *fd at *off, and the transport splices them and reports them
 * with ioc_target_outq_sent() like any others.
 */
bool ioc_target_outq_file(const struct ioc_target_outq *q, int *fd, uint64_t *off, size_t *len);

/**
 * n bytes of what ioc_target_outq_iov() returned were sent: pop and retire
 * (done()) every piece sent completely; a partial one keeps its place. done()
 * may append new pieces: they sit behind the ones this send covered.
 */
void ioc_target_outq_sent(struct ioc_target_outq *q, size_t n);

/** Pop every piece and retire it with done(), as if sent (abort). */
void ioc_target_outq_drop(struct ioc_target_outq *q);

#endif
