/*
 * target/nbd/nbd_conn.c - the NBD protocol engine of one connection.
 *
 * The engine knows nothing about sockets. Its transport (the shared stream
 * layer target_stream.c, set up by nbd_target.c, for TCP and unix sockets;
 * the unit tests and the fuzzer for byte buffers) feeds it received bytes and
 * drains its output:
 *
 *   bytes in:  nbd_conn_recv_buf() says where to receive (the 256 KiB receive
 *              buffer, or straight into a WRITE request's data buffer while
 *              its payload is outstanding, or into the bdev's own page cache
 *              where it offers a window, see parse_request; after a large
 *              WRITE, just the next header, so the next payload is not copied
 *              out of the receive buffer); nbd_conn_recv_done() parses every
 *              complete message in the buffer, validates each request
 *              (nbd_validate_request) and submits its bdev IO at once.
 *   bytes out: replies are queued as iovec lists that point into the request
 *              (reply header and data buffer, no copy) on the shared output
 *              queue (target_outq.h); nbd_conn_out_iov() hands the whole
 *              queue to the transport for ONE sendmsg, and nbd_conn_sent()
 *              retires what was sent (partial sends resume mid-iovec).
 *   wake-ups:  every event (input, IO completion, send completion) defers one
 *              call of conn_deferred() on the reactor, which parses leftover
 *              input and calls the transport's process(); so a burst of
 *              completions in one reactor iteration ends in one send.
 *
 * Requests come from a per-connection pool (at most NBD_MAX_INFLIGHT, data
 * buffers kept for reuse and aligned to the bdev's buffer alignment), so the
 * steady state does no malloc. Backpressure: when the pool or the bytes in
 * flight hit their caps, parsing stops and nbd_conn_recv_buf() refuses input,
 * so the transport posts no recv until a reply has been sent.
 *
 * States:
 *
 *   HS_FLAGS --4 bytes--> HS_OPTIONS --GO/EXPORT_NAME--> TRANSMISSION <--> PAYLOAD
 *       |                     |                              |                |
 *       +---------------------+-------> CLOSING <------------+----------------+
 *
 *   HS_FLAGS      greeting queued; waiting for the client flags.
 *   HS_OPTIONS    one option at a time: an option is only parsed once the
 *                 reply to the previous one has been sent (hs_queued false),
 *                 so the handshake buffer never moves under a pending send.
 *   TRANSMISSION  requests; exp != NULL.
 *   PAYLOAD       a WRITE's payload is received into payload_req->buf, or
 *                 into payload_req->window (ioc_bdev_write_window: the file
 *                 bdev's mapped page cache) and after an EFAULT there into buf.
 *   CLOSING       no more input. In-flight IO completes; its replies are sent
 *                 unless `aborted` (protocol error, peer gone). Finished when
 *                 io_inflight == 0 and the output is drained or dropped.
 *
 * Invariants (conn_check_invariants): payload_req != NULL iff PAYLOAD (or
 * CLOSING after an abort mid-payload);
 * exp != NULL in TRANSMISSION and PAYLOAD; inflight <= NBD_MAX_INFLIGHT;
 * io_inflight <= inflight.
 *
 * The handshake (greeting, client flags, options) lives in nbd_handshake.c;
 * both files share the connection state through nbd_conn_priv.h.
 *
 * Not done here: TLS (NBD_OPT_STARTTLS gets NBD_REP_ERR_UNSUP), extended
 * headers, resize. Rejected alternative: parsing with a read-exactly-N-bytes
 * loop per message (as simple servers do) costs a syscall per header and per
 * payload; one large recv per batch is what keeps the per-IO CPU low.
 */
#include "ioc/common.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "target/nbd/nbd_internal.h"
#include "target/nbd/nbd_proto.h"
#include "target/nbd/nbd_conn_priv.h"

static void conn_deferred(struct ioc_deferred *d);
static void req_dispatch(struct nbd_req *req);

/* ------------------------------------------------------------------ state */

static const char *
conn_state_name(enum nbd_conn_state s)
{
    static const char *names[] = {"hs_flags", "hs_options", "transmission", "payload",
                                  "closing"};

    return names[s];
}

static void
conn_check_invariants(const struct nbd_conn *c)
{
    assert(c->state == NBD_CONN_CLOSING ||
           (c->payload_req != NULL) == (c->state == NBD_CONN_PAYLOAD));
    assert(c->exp != NULL ||
           (c->state != NBD_CONN_TRANSMISSION && c->state != NBD_CONN_PAYLOAD));
    assert(c->inflight <= NBD_MAX_INFLIGHT);
    assert(c->io_inflight <= c->inflight);
    (void)c;
}

void
nbd_conn_set_state(struct nbd_conn *c, enum nbd_conn_state s)
{
    if (c->state == s) {
        return;
    }
    IOC_DEBUG(nbd, "client %s: %s -> %s", c->peer, conn_state_name(c->state),
              conn_state_name(s));
    c->state = s;
}

static void
conn_kick(struct nbd_conn *c)
{
    ioc_reactor_defer(c->reactor, &c->defer, conn_deferred);
}

/* A protocol violation or a dead peer: hard disconnect, queued output dropped. */
void
nbd_conn_fail(struct nbd_conn *c, const char *why)
{
    if (!c->aborted) {
        IOC_DEBUG(nbd, "client %s: closing: %s", c->peer, why);
    }
    c->aborted = true;
    nbd_conn_set_state(c, NBD_CONN_CLOSING);
    conn_kick(c);
}

/* ------------------------------------------------------------------ output */

void
nbd_conn_queue(struct nbd_conn *c, struct ioc_target_out *o)
{
    ioc_target_outq_append(&c->outq, o);
    conn_kick(c);
}

int
nbd_conn_out_iov(struct nbd_conn *c, struct iovec *iov, int max)
{
    if (c->aborted) {
        return 0; /* queued output is dropped: send nothing more */
    }
    return ioc_target_outq_iov(&c->outq, iov, max);
}

bool
nbd_conn_out_file(struct nbd_conn *c, int *fd, uint64_t *off, size_t *len)
{
    return !c->aborted && ioc_target_outq_file(&c->outq, fd, off, len);
}

void
nbd_conn_sent(struct nbd_conn *c, ssize_t n)
{
    conn_kick(c);
    if (n < 0) {
        nbd_conn_fail(c, "send failed");
        return;
    }
    if (c->aborted) {
        return;
    }
    ioc_target_outq_sent(&c->outq, (size_t)n);
}

/* ----------------------------------------------------------- request pool */

static bool
conn_can_accept(const struct nbd_conn *c, uint32_t bytes)
{
    if (c->inflight >= NBD_MAX_INFLIGHT) {
        return false;
    }
    return c->inflight == 0 || c->inflight_bytes + bytes <= NBD_MAX_INFLIGHT_BYTES;
}

static struct nbd_req *
req_get(struct nbd_conn *c)
{
    struct nbd_req *req = c->free_reqs;

    if (req != NULL) {
        c->free_reqs = req->next_free;
    } else {
        req = calloc(1, sizeof(*req));
        if (req == NULL) {
            return NULL;
        }
        req->conn = c;
    }
    c->inflight++;
    req->error = 0;
    req->hole = false;
    req->stage = NBD_REQ_IO;
    req->probed = false;
    req->payload_got = 0;
    req->window = NULL;
    req->window_end = 0;
    req->nr_desc = 0;
    return req;
}

/* Buffers above this size are not kept once their request is done. */
#define NBD_REQ_BUF_KEEP (1024u * 1024)

static void
req_free(struct nbd_req *req)
{
    free(req->buf);
    free(req);
}

static void
req_put(struct nbd_req *req)
{
    struct nbd_conn *c = req->conn;
    bool was_full = c->inflight >= NBD_MAX_INFLIGHT;

    c->inflight_bytes -= req->charge;
    req->charge = 0;
    if (req->buf_cap > NBD_REQ_BUF_KEEP) {
        free(req->buf);
        req->buf = NULL;
        req->buf_cap = 0;
    }
    c->inflight--;
    req->next_free = c->free_reqs;
    c->free_reqs = req;
    if (was_full || c->rlen > 0) {
        conn_kick(c); /* parsing may resume */
    }
}

/* Make req->buf at least size bytes, aligned for the bdev. */
static int
req_buf(struct nbd_req *req, size_t size)
{
    struct nbd_conn *c = req->conn;
    void *p;

    if (req->buf_cap < size) {
        free(req->buf);
        req->buf = NULL;
        req->buf_cap = 0;
        if (posix_memalign(&p, c->buf_align, size) != 0) {
            return -ENOMEM;
        }
        req->buf = p;
        req->buf_cap = size;
    }
    req->charge = size;
    c->inflight_bytes += size;
    return 0;
}

static void
req_out_done(struct ioc_target_out *o)
{
    req_put(ioc_container_of(o, struct nbd_req, out));
}

/* ---------------------------------------------------------------- replies */

/* bdev and validation errors (-errno) to the NBD error values. */
static uint32_t
nbd_errno_to_wire(int rc)
{
    switch (-rc) {
    case 0:
        return 0;
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
    case ERANGE:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

static void
reply_chunk_hdr(struct nbd_req *req, uint16_t type, uint32_t length)
{
    struct nbd_structured_reply *h = &req->reply.chunk.hdr;

    h->magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC);
    h->flags = htobe16(NBD_REPLY_FLAG_DONE);
    h->type = htobe16(type);
    h->handle = req->handle;
    h->length = htobe32(length);
}

static int
reply_structured(struct nbd_req *req)
{
    const size_t hdr = sizeof(struct nbd_structured_reply);

    if (req->error != 0) {
        const char *msg = strerrordesc_np(-req->error);
        uint16_t msglen = msg != NULL ? (uint16_t)strlen(msg) : 0;

        reply_chunk_hdr(req, NBD_REPLY_TYPE_ERROR, sizeof(struct nbd_chunk_error) + msglen);
        req->reply.chunk.u.err.error = htobe32(nbd_errno_to_wire(req->error));
        req->reply.chunk.u.err.msglen = htobe16(msglen);
        req->iov[0].iov_len = hdr + sizeof(struct nbd_chunk_error);
        req->iov[1].iov_base = (void *)msg;
        req->iov[1].iov_len = msglen;
        return msglen > 0 ? 2 : 1;
    }
    if (req->type == NBD_CMD_READ && req->hole) {
        reply_chunk_hdr(req, NBD_REPLY_TYPE_OFFSET_HOLE, sizeof(struct nbd_chunk_offset_hole));
        req->reply.chunk.u.hole.offset = htobe64(req->offset);
        req->reply.chunk.u.hole.length = htobe32(req->count);
        req->iov[0].iov_len = hdr + sizeof(struct nbd_chunk_offset_hole);
        return 1;
    }
    if (req->type == NBD_CMD_READ) {
        reply_chunk_hdr(req, NBD_REPLY_TYPE_OFFSET_DATA, 8 + req->count);
        req->reply.chunk.u.data.offset = htobe64(req->offset);
        req->iov[0].iov_len = hdr + sizeof(struct nbd_chunk_offset_data);
        req->iov[1].iov_base = req->buf;
        req->iov[1].iov_len = req->count;
        return 2;
    }
    if (req->type == NBD_CMD_BLOCK_STATUS) {
        uint32_t dlen = req->nr_desc * (uint32_t)sizeof(struct nbd_block_descriptor);

        reply_chunk_hdr(req, NBD_REPLY_TYPE_BLOCK_STATUS, 4 + dlen);
        req->reply.chunk.u.context_id = htobe32(NBD_META_ID_BASE_ALLOCATION);
        req->iov[0].iov_len = hdr + 4;
        req->iov[1].iov_base = (uint8_t *)req->buf + NBD_MAX_EXTENTS * sizeof(struct ioc_extent);
        req->iov[1].iov_len = dlen;
        return 2;
    }
    return 0; /* no payload: a simple reply will do */
}

/* Fill req->iov with the reply (header, then its data if any); returns the count. */
static int
req_reply_iov(struct nbd_req *req)
{
    struct nbd_conn *c = req->conn;
    int n = 0;

    req->iov[0].iov_base = &req->reply;
    if (c->structured) {
        n = reply_structured(req);
    }
    if (n == 0) {
        req->reply.simple.magic = htobe32(NBD_SIMPLE_REPLY_MAGIC);
        req->reply.simple.error = htobe32(nbd_errno_to_wire(req->error));
        req->reply.simple.handle = req->handle;
        req->iov[0].iov_len = sizeof(struct nbd_simple_reply);
        req->iov[1].iov_base = req->buf;
        req->iov[1].iov_len = req->count;
        n = req->type == NBD_CMD_READ && req->error == 0 ? 2 : 1;
    }
    return n;
}

/* Queue the reply to req (its error, or its data); the request is done. */
static void
req_reply(struct nbd_req *req)
{
    struct nbd_conn *c = req->conn;

    if (c->aborted) {
        req_put(req);
        return;
    }
    req->out.iov = req->iov;
    req->out.iovcnt = req_reply_iov(req);
    req->out.done = req_out_done;
    nbd_conn_queue(c, &req->out);
}

/*
 * A large READ whose bytes the bdev can hand over as a file range (the
 * buffered file bdev, the range in the page cache): reply with the header
 * and let the transport splice the data from the file to the socket, which
 * spares the read into req->buf and the copy out of it (paired 128 KiB reads:
 * 0.69 of the server's CPU per read, 1.43x the IOPS; docs/design-notes.md).
 * No bdev IO: the request is done once its reply is sent.
 */
static bool
req_reply_by_splice(struct nbd_req *req)
{
    struct nbd_conn *c = req->conn;
    uint64_t file_off;
    int fd;

    if (req->count < NBD_SPLICE_READ_MIN || c->t->can_splice == NULL || c->aborted ||
        ioc_bdev_splice_source(c->bdev, req->offset, req->count, &fd, &file_off) < 0 ||
        !c->t->can_splice(c->tctx)) {
        return false;
    }
    (void)req_reply_iov(req); /* header and data iovec: only the header is sent as memory */
    req->out.iov = req->iov;
    req->out.iovcnt = 1;
    req->out.done = req_out_done;
    ioc_target_outq_append_file(&c->outq, &req->out, fd, file_off, req->count);
    conn_kick(c);
    return true;
}

/* ---------------------------------------------------------------- bdev IO */

/* BLOCK_STATUS: the extents go at the start of buf, the descriptors after them. */
#define NBD_BS_BUF_SIZE \
    (NBD_MAX_EXTENTS * (sizeof(struct ioc_extent) + sizeof(struct nbd_block_descriptor)))

static void
req_fill_descriptors(struct nbd_req *req, const struct ioc_bdev_io *io)
{
    const struct ioc_extent *ext = req->buf;
    struct nbd_block_descriptor *d =
        (void *)((uint8_t *)req->buf + NBD_MAX_EXTENTS * sizeof(struct ioc_extent));
    uint64_t left = req->count;
    uint32_t n = 0;

    for (uint32_t i = 0; i < io->nr_extents && i < io->max_extents && left > 0; i++) {
        uint64_t len = IOC_MIN(ext[i].length, left);
        uint32_t st = 0;

        if (len == 0) {
            continue;
        }
        st |= (ext[i].flags & IOC_EXTENT_HOLE) ? NBD_STATE_HOLE : 0;
        st |= (ext[i].flags & IOC_EXTENT_ZERO) ? NBD_STATE_ZERO : 0;
        d[n].length = htobe32((uint32_t)len);
        d[n].status_flags = htobe32(st);
        left -= len;
        n++;
    }
    req->nr_desc = n;
    if (n == 0) {
        req->error = -EIO;
    }
}

/* READ hole probe: is the whole range one zero extent? Then no read at all. */
static bool
req_probe_says_zero(const struct nbd_req *req, const struct ioc_bdev_io *io)
{
    return io->status == 0 && io->nr_extents >= 1 && io->extents[0].length >= req->count &&
           (io->extents[0].flags & IOC_EXTENT_ZERO);
}

static void
req_io_done(struct ioc_bdev_io *io, void *cb_arg)
{
    struct nbd_req *req = cb_arg;
    struct nbd_conn *c = req->conn;

    c->io_inflight--;
    conn_kick(c); /* the last completion may finish a closing connection */
    if (req->stage == NBD_REQ_HOLE_PROBE) {
        req->hole = req_probe_says_zero(req, io);
        ioc_bdev_io_free(io);
        req->stage = NBD_REQ_IO;
        if (req->hole || c->aborted) {
            req_reply(req);
        } else {
            req_dispatch(req);
        }
        return;
    }
    req->error = io->status;
    if (req->error == 0 && req->type == NBD_CMD_BLOCK_STATUS) {
        req_fill_descriptors(req, io);
    }
    ioc_bdev_io_free(io);
    req_reply(req);
}

static void
req_submit_failed(struct nbd_req *req, int rc)
{
    if (req->stage == NBD_REQ_HOLE_PROBE) {
        req->stage = NBD_REQ_IO; /* the probe is an optimisation: just read */
        req_dispatch(req);
        return;
    }
    req->error = rc;
    req_reply(req);
}

/* A WRITE received in place, all of it or (after a fault) a first part. */
static void
req_prep_write_in_place(struct nbd_req *req, struct ioc_bdev_io *io, uint32_t ioflags)
{
    struct iovec *iov = &io->iov_single;
    int iovcnt = 1;

    if (req->window_end == req->count) {
        iov->iov_base = req->window;
        iov->iov_len = req->count;
    } else {
        /* the kernel copies the first part onto itself: harmless, and the
         * write's result covers the whole range */
        iov = req->write_iov;
        iov[0].iov_base = req->window;
        iov[0].iov_len = req->window_end;
        iov[1].iov_base = (uint8_t *)req->buf + req->window_end;
        iov[1].iov_len = req->count - req->window_end;
        iovcnt = 2;
    }
    ioc_bdev_io_prep_rw(io, IOC_IO_WRITE, req->offset, req->count, iov, iovcnt, ioflags,
                        req_io_done, req);
}

static void
req_submit(struct nbd_req *req, enum ioc_io_type type, uint32_t ioflags)
{
    struct nbd_conn *c = req->conn;
    struct ioc_bdev_io *io = ioc_bdev_io_alloc(c->bdev);
    int rc;

    if (io == NULL) {
        req_submit_failed(req, -ENOMEM);
        return;
    }
    if (type == IOC_IO_WRITE && req->window_end > 0) {
        req_prep_write_in_place(req, io, ioflags);
    } else if (type == IOC_IO_READ || type == IOC_IO_WRITE) {
        io->iov_single.iov_base = req->buf;
        io->iov_single.iov_len = req->count;
        ioc_bdev_io_prep_rw(io, type, req->offset, req->count, &io->iov_single, 1, ioflags,
                            req_io_done, req);
    } else {
        ioc_bdev_io_prep(io, type, req->offset, req->count, ioflags, req_io_done, req);
    }
    if (req->stage == NBD_REQ_HOLE_PROBE) {
        io->extents = &req->probe_extent;
        io->max_extents = 1;
    } else if (type == IOC_IO_BLOCK_STATUS) {
        io->extents = req->buf;
        io->max_extents = (req->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_MAX_EXTENTS;
    }
    rc = ioc_bdev_io_submit(io);
    if (rc < 0) {
        ioc_bdev_io_free(io);
        req_submit_failed(req, rc);
        return;
    }
    c->io_inflight++;
}

static uint32_t
req_io_flags(const struct nbd_req *req)
{
    uint32_t f = 0;

    f |= (req->flags & NBD_CMD_FLAG_FUA) ? IOC_IO_FUA : 0;
    f |= (req->flags & NBD_CMD_FLAG_NO_HOLE) ? IOC_IO_NO_HOLE : 0;
    f |= (req->flags & NBD_CMD_FLAG_FAST_ZERO) ? IOC_IO_FAST_ZERO : 0;
    return f;
}

static bool
req_wants_hole_probe(const struct nbd_req *req)
{
    const struct nbd_conn *c = req->conn;

    return c->structured && req->count >= NBD_HOLE_READ_MIN &&
           !(req->flags & NBD_CMD_FLAG_DF) && ioc_bdev_supports(c->bdev, IOC_IO_BLOCK_STATUS);
}

static void
req_dispatch(struct nbd_req *req)
{
    struct nbd_conn *c = req->conn;

    if (req->error != 0) {
        req_reply(req);
        return;
    }
    switch (req->type) {
    case NBD_CMD_READ:
        if (!req->probed && req_wants_hole_probe(req)) {
            req->probed = true;
            req->stage = NBD_REQ_HOLE_PROBE;
            req_submit(req, IOC_IO_BLOCK_STATUS, 0);
        } else if (!req_reply_by_splice(req)) {
            req_submit(req, IOC_IO_READ, 0);
        }
        break;
    case NBD_CMD_WRITE:
        req_submit(req, IOC_IO_WRITE, req_io_flags(req));
        break;
    case NBD_CMD_FLUSH:
        req_submit(req, IOC_IO_FLUSH, 0);
        break;
    case NBD_CMD_TRIM:
        req_submit(req, IOC_IO_UNMAP, req_io_flags(req));
        break;
    case NBD_CMD_WRITE_ZEROES:
        req_submit(req, IOC_IO_WRITE_ZEROES, req_io_flags(req));
        break;
    case NBD_CMD_BLOCK_STATUS:
        req_submit(req, IOC_IO_BLOCK_STATUS, 0);
        break;
    case NBD_CMD_CACHE:
        if (ioc_bdev_supports(c->bdev, IOC_IO_PREFETCH)) {
            req_submit(req, IOC_IO_PREFETCH, 0);
        } else {
            req_reply(req); /* advisory: nothing to do */
        }
        break;
    default:
        req->error = -EINVAL;
        req_reply(req);
        break;
    }
}

/* ------------------------------------------------------------ transmission */

int
nbd_validate_request(const struct nbd_conn *c, const struct nbd_request_info *rq)
{
    uint16_t allowed = (c->eflags & NBD_FLAG_SEND_FUA) ? NBD_CMD_FLAG_FUA : 0;
    bool ro = (c->eflags & NBD_FLAG_READ_ONLY) != 0;
    bool is_write = false;

    switch (rq->type) {
    case NBD_CMD_READ:
        allowed |= c->structured ? NBD_CMD_FLAG_DF : 0;
        break;
    case NBD_CMD_WRITE:
        is_write = true;
        if (ro) {
            return -EPERM;
        }
        break;
    case NBD_CMD_FLUSH:
        if (!(c->eflags & NBD_FLAG_SEND_FLUSH) || rq->offset != 0 || rq->count != 0 ||
            (rq->flags & ~allowed)) {
            return -EINVAL;
        }
        return 0;
    case NBD_CMD_TRIM:
        if (ro) {
            return -EPERM;
        }
        if (!(c->eflags & NBD_FLAG_SEND_TRIM)) {
            return -EINVAL;
        }
        break;
    case NBD_CMD_WRITE_ZEROES:
        is_write = true;
        if (ro) {
            return -EPERM;
        }
        if (!(c->eflags & NBD_FLAG_SEND_WRITE_ZEROES)) {
            return -EINVAL;
        }
        allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!c->meta_active) {
            return -EINVAL;
        }
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    case NBD_CMD_CACHE:
        break;
    default:
        return -EINVAL;
    }
    if ((rq->flags & ~allowed) || rq->count == 0) {
        return -EINVAL;
    }
    if ((rq->type == NBD_CMD_READ || rq->type == NBD_CMD_WRITE || rq->type == NBD_CMD_CACHE) &&
        rq->count > NBD_MAX_BLOCK) {
        return -EINVAL;
    }
    if (rq->offset % c->min_block != 0 || rq->count % c->min_block != 0) {
        return -EINVAL;
    }
    if (rq->offset > c->size || rq->count > c->size - rq->offset) {
        return is_write ? -ENOSPC : -EINVAL;
    }
    if ((rq->flags & NBD_CMD_FLAG_FAST_ZERO) && !ioc_bdev_fast_zero(c->bdev)) {
        return -ENOTSUP;
    }
    return 0;
}

/* Start a request whose header (and, for WRITE, payload) is complete. */
static void
req_start(struct nbd_req *req)
{
    IOC_DEBUG(nbd, "client %s: %s offset %" PRIu64 " count %u flags 0x%x -> %d",
              req->conn->peer, nbd_cmd_name(req->type), req->offset, req->count, req->flags,
              req->error);
    req_dispatch(req);
}

static size_t
parse_request(struct nbd_conn *c, const uint8_t *p, size_t avail)
{
    struct nbd_request_info info;
    struct nbd_request rq;
    struct nbd_req *req;
    size_t take;

    if (avail < sizeof(rq)) {
        return 0;
    }
    memcpy(&rq, p, sizeof(rq));
    if (be32toh(rq.magic) != NBD_REQUEST_MAGIC) {
        nbd_conn_fail(c, "bad request magic");
        return 0;
    }
    info.flags = be16toh(rq.flags);
    info.type = be16toh(rq.type);
    info.offset = be64toh(rq.offset);
    info.count = be32toh(rq.count);
    if (info.type == NBD_CMD_DISC) {
        IOC_DEBUG(nbd, "client %s: NBD_CMD_DISC", c->peer);
        nbd_conn_set_state(c, NBD_CONN_CLOSING);
        return sizeof(rq);
    }
    if (atomic_load_explicit(&c->exp->removed, memory_order_relaxed)) {
        nbd_conn_close(c);
        return 0;
    }
    if (info.type == NBD_CMD_WRITE && info.count > NBD_MAX_PAYLOAD) {
        nbd_conn_fail(c, "write payload too large");
        return 0;
    }
    take = info.type == NBD_CMD_WRITE || info.type == NBD_CMD_READ ? info.count : 0;
    c->header_only = info.type == NBD_CMD_WRITE && info.count >= NBD_SPLIT_PAYLOAD_MIN;
    if (!conn_can_accept(c, (uint32_t)take)) {
        return 0; /* backpressure: the header stays in rbuf */
    }
    req = req_get(c);
    if (req == NULL) {
        nbd_conn_fail(c, "out of memory");
        return 0;
    }
    req->handle = rq.handle; /* opaque: kept in wire order */
    req->offset = info.offset;
    req->count = info.count;
    req->type = info.type;
    req->flags = info.flags;
    req->error = nbd_validate_request(c, &info);
    if (info.type == NBD_CMD_BLOCK_STATUS && req->error == 0) {
        take = NBD_BS_BUF_SIZE;
    } else if (info.type == NBD_CMD_READ && req->error != 0) {
        take = 0;
    }
    if (take > 0 && req_buf(req, take) < 0) {
        req_put(req);
        nbd_conn_fail(c, "out of memory");
        return 0;
    }
    if (info.type != NBD_CMD_WRITE) {
        req_start(req);
        return sizeof(rq);
    }
    /* WRITE: copy what came with the header; receive the rest in place. */
    req->payload_got = (uint32_t)IOC_MIN(avail - sizeof(rq), (size_t)info.count);
    if (req->payload_got > 0) {
        memcpy(req->buf, p + sizeof(rq), req->payload_got);
    } else if (c->header_only && req->error == 0) {
        req->window = ioc_bdev_write_window(c->bdev, info.offset, info.count);
        req->window_end = req->window != NULL ? info.count : 0;
    }
    if (req->payload_got < info.count) {
        c->payload_req = req;
        nbd_conn_set_state(c, NBD_CONN_PAYLOAD);
    } else {
        req_start(req);
    }
    return sizeof(rq) + req->payload_got;
}

/* Parse every complete message in rbuf; keep the incomplete tail at its start. */
static void
conn_parse(struct nbd_conn *c)
{
    size_t pos = 0, n;

    for (;;) {
        const uint8_t *p = c->rbuf + pos;
        size_t avail = c->rlen - pos;

        switch (c->state) {
        case NBD_CONN_HS_FLAGS:
            n = nbd_hs_parse_client_flags(c, p, avail);
            break;
        case NBD_CONN_HS_OPTIONS:
            n = nbd_hs_parse_option(c, p, avail);
            break;
        case NBD_CONN_TRANSMISSION:
            n = parse_request(c, p, avail);
            break;
        default:
            n = 0;
            break;
        }
        if (n == 0) {
            break;
        }
        pos += n;
    }
    if (pos > 0) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
    conn_check_invariants(c);
}

/* ---------------------------------------------------------- transport API */

bool
nbd_conn_recv_buf(struct nbd_conn *c, void **buf, size_t *len)
{
    struct nbd_req *req = c->payload_req;

    if (c->state == NBD_CONN_PAYLOAD && req->payload_got < req->window_end) {
        *buf = req->window + req->payload_got;
        *len = req->window_end - req->payload_got;
        return true;
    }
    if (c->state == NBD_CONN_PAYLOAD) {
        *buf = (uint8_t *)req->buf + req->payload_got;
        *len = req->count - req->payload_got;
        return true;
    }
    if (c->state == NBD_CONN_CLOSING || c->rlen == NBD_RBUF_SIZE) {
        return false;
    }
    if (c->state == NBD_CONN_TRANSMISSION && c->inflight >= NBD_MAX_INFLIGHT) {
        return false;
    }
    *buf = c->rbuf + c->rlen;
    *len = NBD_RBUF_SIZE - c->rlen;
    if (c->header_only && c->state == NBD_CONN_TRANSMISSION &&
        c->rlen < sizeof(struct nbd_request)) {
        /* Large writes are streaming: take just the next header, so that its
         * payload is received straight into the request's buffer instead of
         * being received here and copied (measured: the copy cost as much
         * CPU as the receive itself on 128 KiB writes). */
        *len = sizeof(struct nbd_request) - c->rlen;
    }
    return true;
}

static void
conn_payload_done(struct nbd_conn *c, size_t n)
{
    struct nbd_req *req = c->payload_req;

    req->payload_got += (uint32_t)n;
    if (req->payload_got < req->count) {
        return;
    }
    c->payload_req = NULL;
    nbd_conn_set_state(c, NBD_CONN_TRANSMISSION);
    req_start(req);
}

/*
 * A recv into the page cache that could not store (EFAULT: no space for a
 * sparse file's page, the file truncated): the rest of the payload goes into
 * the buffer, and the WRITE of both parts reports what the file system says.
 */
static bool
conn_window_fault(struct nbd_conn *c, ssize_t n)
{
    struct nbd_req *req = c->payload_req;

    if (n != -EFAULT || c->state != NBD_CONN_PAYLOAD || req->payload_got >= req->window_end) {
        return false;
    }
    IOC_INFO("nbd", "client %s: WRITE at %" PRIu64 ": cannot receive in place after %u bytes; "
             "the rest goes through a buffer", c->peer, req->offset, req->payload_got);
    req->window_end = req->payload_got;
    return true;
}

void
nbd_conn_recv_done(struct nbd_conn *c, ssize_t n)
{
    conn_kick(c);
    if (conn_window_fault(c, n)) {
        return; /* the kick posts the next recv, into the buffer */
    }
    if (n <= 0) {
        if (c->state != NBD_CONN_CLOSING || c->io_inflight > 0 ||
            !ioc_target_outq_empty(&c->outq)) {
            nbd_conn_fail(c, n == 0 ? "peer closed" : strerrordesc_np((int)-n));
        }
        return;
    }
    if (c->state == NBD_CONN_CLOSING) {
        return; /* after NBD_CMD_DISC nothing more is read */
    }
    if (c->state == NBD_CONN_PAYLOAD) {
        assert((size_t)n <= c->payload_req->count - c->payload_req->payload_got);
        conn_payload_done(c, (size_t)n);
    } else {
        assert((size_t)n <= NBD_RBUF_SIZE - c->rlen);
        c->rlen += (size_t)n;
    }
    conn_parse(c);
}

static void
conn_deferred(struct ioc_deferred *d)
{
    struct nbd_conn *c = ioc_container_of(d, struct nbd_conn, defer);

    if (c->rlen > 0 && c->state != NBD_CONN_CLOSING && c->state != NBD_CONN_PAYLOAD) {
        conn_parse(c);
    }
    /* process() may destroy the connection: nothing touches c after it. */
    c->t->process(c->tctx);
}

void
nbd_conn_abort(struct nbd_conn *c)
{
    nbd_conn_fail(c, "aborted");
}

void
nbd_conn_close(struct nbd_conn *c)
{
    if (c->state == NBD_CONN_PAYLOAD) {
        nbd_conn_fail(c, "closed mid-payload");
        return;
    }
    nbd_conn_set_state(c, NBD_CONN_CLOSING);
    conn_kick(c);
}

bool
nbd_conn_finished(const struct nbd_conn *c)
{
    return c->state == NBD_CONN_CLOSING && c->io_inflight == 0 &&
           (c->aborted || ioc_target_outq_empty(&c->outq));
}

const struct nbd_export *
nbd_conn_export(const struct nbd_conn *c)
{
    return c->exp;
}

int
nbd_conn_create(struct ioc_reactor *r, const struct nbd_conn_transport *t, void *ctx,
                const char *peer, struct nbd_conn **out)
{
    struct nbd_greeting g = {
        .nbdmagic = htobe64(NBD_MAGIC),
        .optsmagic = htobe64(NBD_OPTS_MAGIC),
        .gflags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
    };
    struct nbd_conn *c = calloc(1, sizeof(*c));

    if (c == NULL || (c->rbuf = malloc(NBD_RBUF_SIZE)) == NULL) {
        free(c);
        return -ENOMEM;
    }
    c->reactor = r;
    c->t = t;
    c->tctx = ctx;
    snprintf(c->peer, sizeof(c->peer), "%s", peer != NULL ? peer : "?");
    ioc_target_outq_init(&c->outq);
    c->state = NBD_CONN_HS_FLAGS;
    nbd_hs_put(c, &g, sizeof(g));
    nbd_hs_flush(c);
    if (c->hs_nomem) {
        free(c->rbuf);
        free(c->hs_buf);
        free(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

void
nbd_conn_destroy(struct nbd_conn **cp)
{
    struct nbd_conn *c = *cp;
    struct nbd_req *req;

    *cp = NULL;
    if (c == NULL) {
        return;
    }
    assert(c->io_inflight == 0);
    /* Requests still queued for output are freed directly: req_put() would kick. */
    while (!ioc_target_outq_empty(&c->outq)) {
        struct ioc_target_out *o = ioc_target_outq_pop(&c->outq);

        if (o != &c->hs_out) {
            req_free(ioc_container_of(o, struct nbd_req, out));
        }
    }
    if (c->payload_req != NULL) {
        req_free(c->payload_req);
    }
    while ((req = c->free_reqs) != NULL) {
        c->free_reqs = req->next_free;
        req_free(req);
    }
    if (c->exp != NULL) {
        atomic_fetch_sub(&c->exp->connections, 1);
        nbd_export_put(&c->exp);
    }
    free(c->hs_buf);
    free(c->rbuf);
    /* The transport destroys us from process(), which a send completed in it
     * (a splice, target_stream.c) may just have made kick us again. */
    ioc_reactor_defer_cancel(c->reactor, &c->defer);
    free(c);
}
