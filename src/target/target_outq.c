/*
 * target/target_outq.c - the output queue walks shared by the NBD and iSCSI
 * engines (see target_outq.h for the model).
 *
 * These run once per send, not per reply, so they are ordinary functions.
 * Rejected alternative: copying replies into one contiguous send buffer. It
 * would spare the iovec walk but copy every READ's data once more; with the
 * pieces pointing at the bdev buffers the kernel gathers them itself.
 */
#include "ioc/common.h"

#include <stdint.h>

#include "target/target_outq.h"

int
ioc_target_outq_iov(const struct ioc_target_outq *q, struct iovec *iov, int max)
{
    size_t skip = q->off;
    int n = 0;

    for (struct ioc_target_out *o = q->head; o != NULL && n < max; o = o->next) {
        for (int i = 0; i < o->iovcnt && n < max; i++) {
            size_t len = o->iov[i].iov_len;

            /* skip what the head has sent already, and empty iovecs */
            if (skip >= len) {
                skip -= len;
                continue;
            }
            iov[n].iov_base = (uint8_t *)o->iov[i].iov_base + skip;
            iov[n].iov_len = len - skip;
            skip = 0;
            n++;
        }
        if (o->file_len > 0) {
            break; /* its file bytes come next, by splice */
        }
    }
    return n;
}

bool
ioc_target_outq_file(const struct ioc_target_outq *q, int *fd, uint64_t *off, size_t *len)
{
    const struct ioc_target_out *o = q->head;
    size_t mem;

    if (o == NULL || o->file_len == 0) {
        return false;
    }
    mem = o->len - o->file_len;
    if (q->off < mem) {
        return false; /* its iovecs first */
    }
    *fd = o->file_fd;
    *off = o->file_off + (q->off - mem);
    *len = o->len - q->off;
    return true;
}

void
ioc_target_outq_sent(struct ioc_target_outq *q, size_t n)
{
    while (n > 0 && q->head != NULL) {
        size_t rest = q->head->len - q->off;
        struct ioc_target_out *o;

        if (n < rest) {
            q->off += n;
            return;
        }
        n -= rest;
        o = ioc_target_outq_pop(q);
        o->done(o);
    }
}

void
ioc_target_outq_drop(struct ioc_target_outq *q)
{
    while (q->head != NULL) {
        struct ioc_target_out *o = ioc_target_outq_pop(q);

        o->done(o);
    }
}
