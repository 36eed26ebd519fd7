/*
 * bdev/nbd_client/bdev_nbd_client.c - a bdev backed by a remote NBD export.
 *
 * One connection per bdev, owned by one reactor (chosen with
 * ioc_reactor_next() at creation). IO submitted on another reactor is
 * forwarded to the owner by message and its completion sent back the same
 * way, so the callback runs on the submitting reactor as the bdev contract
 * requires. Why one connection and not one per reactor: without
 * NBD_FLAG_CAN_MULTI_CONN the spec does not promise that a FLUSH on one
 * connection covers writes completed on another, so per-reactor connections
 * would only be correct for some servers; one connection is correct for all,
 * and a nexus replica sees one client. (Per-reactor connections when the
 * server advertises multi-conn are a later optimisation.)
 *
 * Data path, all on the owner reactor's io_uring:
 *   submit -> wait queue -> (deferred kick) a free slot of the request table
 *   (cookie = generation << 16 | slot index) -> send queue -> one sendmsg for
 *   everything queued (headers + WRITE payloads straight from the caller's
 *   iovecs). One recv at a time into a 256 KiB buffer, fed to the
 *   incremental reply parser (nbd_client_proto.c), which checks every field
 *   and streams READ data into the caller's buffers. Large IO is split into
 *   requests of at most the server's maximum payload; an IO completes when
 *   all its requests have. FUA without NBD_FLAG_SEND_FUA becomes the write
 *   followed by a FLUSH. A slot is released only when its reply arrived AND
 *   its bytes left the send queue, so the kernel never reads a buffer that
 *   was handed back.
 *
 * Connection states (d->state):
 *
 *     create --> CONNECTED --(error, EOF, bad reply, IO timeout)--> DRAINING
 *                   ^   |                                              |
 *                   |   +--(delete: DISC sent)---> DRAINING            |
 *     (helper: fd)  |                                 | closing        | !closing
 *                   +------------ RECONNECTING <------+----------------+
 *                                      | delete           |
 *                                      v                  v
 *                                    CLOSED <-------------+ closing
 *
 *   CONNECTED     fd valid; a recv is posted; requests flow.
 *   DRAINING      shutdown(fd) done; waiting for the posted recv/send to
 *                 complete, then close(fd) and requeue in-flight IO.
 *   RECONNECTING  no fd; the helper thread connects with backoff; IO waits
 *                 in the wait queue until the helper hands a new fd over by
 *                 message, or until its io_timeout.
 *   CLOSED        no fd, nothing posted, helper told to stop; may be freed.
 *
 * Reconnect: a helper thread per bdev sleeps on a condition variable; when
 * a connection is lost it reconnects with exponential backoff (100 ms to
 * 2 s) using the same blocking handshake as creation, checks that the
 * export still has the same size, and sends the fd to the reactor. IO that
 * was in flight when the connection dropped is sent again (NBD reads and
 * writes are idempotent) unless its io_timeout passed.
 *
 * Timeouts: a poller (every io_timeout/4, at most 1 s) scans the wait queue
 * and the request table. A waiting IO past its deadline fails with
 * -ETIMEDOUT; once the connection has been down for longer than io_timeout,
 * new IO fails at once with -ETIMEDOUT instead of each waiting the full
 * timeout (a consumer that retries, or a target that issues two requests
 * per client command, would otherwise multiply the wait). An in-flight request
 * past its deadline means the server stopped answering: the connection is
 * dropped (the expired IO fail with -ETIMEDOUT, the others are retried on
 * the next connection). Rejected alternative: failing only the late request
 * and keeping its slot as an orphan; a server that ignores one request is
 * not trusted with the next.
 *
 * Delete: destruct (RPC or main thread) asks the reactor to close: with no
 * request in flight it sends NBD_CMD_DISC, then shuts the socket down and
 * waits for every posted op before closing it; destruct waits for that,
 * joins the helper thread and frees. At daemon shutdown a reactor stop hook
 * does the same before the rings go away.
 */
#include "ioc/common.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bdev/bdev_module.h"
#include "bdev/nbd_client/bdev_nbd_client.h"
#include "bdev/nbd_client/nbd_client_internal.h"
#include "core/log.h"

#define NBDC_SLOTS        256                 /* requests in flight per connection */
#define NBDC_SEND_IOV     64
#define NBDC_RX_BUF       (256u * 1024)
#define NBDC_BACKOFF_MIN_MS 100
#define NBDC_BACKOFF_MAX_MS 2000
#define NBDC_CONNECT_TIMEOUT_MAX_S 5
#define NBDC_MAX_EFFECT   (1u << 30)          /* TRIM/WRITE_ZEROES/CACHE per request */
#define NBDC_CLOSE_WAIT_S 15

enum nbdc_state {
    NBDC_CONNECTED = 0,
    NBDC_DRAINING,
    NBDC_RECONNECTING,
    NBDC_CLOSED,
};

static const char *const g_state_names[] = {
    [NBDC_CONNECTED] = "connected",
    [NBDC_DRAINING] = "reconnecting", /* to a reader, dropping is the start of reconnecting */
    [NBDC_RECONNECTING] = "reconnecting",
    [NBDC_CLOSED] = "closed",
};

/* One request on the wire. */
struct nbdc_slot {
    struct ioc_bdev_io *io;      /* NULL: free (or the DISC pseudo-slot) */
    uint64_t cookie;
    struct nbd_request hdr;      /* wire image */
    uint16_t cmd;
    uint64_t offset;
    uint32_t length;
    uint32_t sent;               /* bytes of header + payload sent */
    uint64_t covered;            /* READ: bytes given by data/hole chunks */
    uint64_t extent_sum;         /* BLOCK_STATUS: bytes described so far */
    int err;                     /* first error of the reply */
    bool in_sendq;
    bool replied;
    struct nbdc_slot *send_next;
};

/* Per-IO state in io->module_ctx. */
struct nbdc_io_ctx {
    struct ioc_bdev_io *next;    /* wait queue, completion retry list */
    uint64_t deadline_ns;
    uint64_t next_off;           /* first byte not yet given a request */
    uint32_t parts;              /* requests in flight */
    int status;
    bool queued;                 /* on the wait queue */
    bool foreign;                /* submitted on another reactor */
    bool fua_flush;              /* FUA emulated by a FLUSH after the write */
    bool flush_phase;
};
_Static_assert(sizeof(struct nbdc_io_ctx) <= IOC_BDEV_IO_CTX_MAX, "nbd client io ctx too large");

struct nbdc_disk {
    struct ioc_bdev bdev;
    char uri_text[NBD_STRING_MAX + 128];
    struct nbdc_uri uri;
    unsigned io_timeout_s;
    struct nbdc_export_info info; /* negotiated at creation; fixed for the bdev's life */
    uint32_t max_rw;              /* READ/WRITE bytes per request */
    struct ioc_reactor *reactor;

    /* Owned by the reactor. */
    int fd;
    enum nbdc_state state;
    bool closing;                 /* delete or daemon stop asked to close */
    bool attached;
    struct nbdc_reply_parser rx;
    uint8_t *rx_buf;
    struct ioc_uring_req recv_req;
    struct ioc_uring_req send_req;
    bool recv_posted;
    bool send_posted;
    bool shutdown_seen;           /* a reply said NBD_ESHUTDOWN */
    uint64_t down_since_ns;       /* when the connection was lost */
    struct msghdr msg;
    struct iovec iov[NBDC_SEND_IOV];
    struct nbdc_slot slots[NBDC_SLOTS];
    uint16_t free_idx[NBDC_SLOTS];
    unsigned nfree;
    uint64_t gen;
    struct nbdc_slot disc;        /* NBD_CMD_DISC, not in the table */
    struct nbdc_slot *sendq_head, *sendq_tail;
    struct ioc_bdev_io *waitq_head, *waitq_tail;
    struct ioc_bdev_io *compl_retry; /* foreign completions whose message could not be sent */
    struct ioc_deferred kick;
    struct ioc_poller *poller;

    /* Shared with the helper thread and destruct; under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t helper;
    bool helper_started;
    bool want_reconnect;
    bool stopping;
    sem_t closed;                 /* posted once when the state becomes CLOSED */

    /* Read by bdev_list from the RPC thread. */
    _Atomic int pub_state;
    atomic_uint_fast64_t reconnects;
    atomic_uint_fast64_t timeouts;
    atomic_uint_fast64_t attempts;

    struct nbdc_disk *next;       /* g_disks */
};

/* Every live disk, for the reactor stop hook. The lock is control-path only. */
static pthread_mutex_t g_disks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nbdc_disk *g_disks;

static void nbdc_kick(struct ioc_deferred *d);
static void nbdc_fail(struct nbdc_disk *d, const char *why);
static void nbdc_post_send(struct nbdc_disk *d);

static struct nbdc_io_ctx *
io_ctx(struct ioc_bdev_io *io)
{
    return (struct nbdc_io_ctx *)(void *)io->module_ctx;
}

static void
nbdc_set_state(struct nbdc_disk *d, enum nbdc_state s)
{
    IOC_DEBUG(nbd_client, "bdev %s: %s -> %s", d->bdev.name, g_state_names[d->state],
              g_state_names[s]);
    d->state = s;
    atomic_store(&d->pub_state, (int)s);
}

/* ---- completing IO (never inline: deferred, or by message to the submitter) ---- */

static void
nbdc_complete_msg(void *arg)
{
    struct ioc_bdev_io *io = arg;

    ioc_bdev_io_complete(io, io->status);
}

static void
nbdc_io_complete(struct nbdc_disk *d, struct ioc_bdev_io *io, int status)
{
    struct nbdc_io_ctx *ctx = io_ctx(io);

    if (status == -ETIMEDOUT) {
        atomic_fetch_add(&d->timeouts, 1);
    }
    if (!ctx->foreign) {
        ioc_bdev_io_complete_deferred(io, status);
        return;
    }
    io->status = status;
    if (ioc_reactor_send_msg(io->reactor, nbdc_complete_msg, io) < 0) {
        ctx->next = d->compl_retry; /* out of memory: the poller tries again */
        d->compl_retry = io;
    }
}

/* ---- wait queue ---- */

static void
waitq_push(struct nbdc_disk *d, struct ioc_bdev_io *io, bool front)
{
    struct nbdc_io_ctx *ctx = io_ctx(io);

    ctx->queued = true;
    ctx->next = NULL;
    if (d->waitq_head == NULL) {
        d->waitq_head = d->waitq_tail = io;
    } else if (front) {
        ctx->next = d->waitq_head;
        d->waitq_head = io;
    } else {
        io_ctx(d->waitq_tail)->next = io;
        d->waitq_tail = io;
    }
}

static void
waitq_pop(struct nbdc_disk *d)
{
    struct ioc_bdev_io *io = d->waitq_head;

    d->waitq_head = io_ctx(io)->next;
    if (d->waitq_head == NULL) {
        d->waitq_tail = NULL;
    }
    io_ctx(io)->queued = false;
    io_ctx(io)->next = NULL;
}

/* Take the whole wait queue out (to fail or filter it). */
static struct ioc_bdev_io *
waitq_take_all(struct nbdc_disk *d)
{
    struct ioc_bdev_io *head = d->waitq_head;

    d->waitq_head = d->waitq_tail = NULL;
    return head;
}

/* ---- the request table ---- */

static void
slots_init(struct nbdc_disk *d)
{
    d->nfree = NBDC_SLOTS;
    for (unsigned i = 0; i < NBDC_SLOTS; i++) {
        d->free_idx[i] = (uint16_t)(NBDC_SLOTS - 1 - i);
    }
}

static struct nbdc_slot *
slot_get(struct nbdc_disk *d)
{
    struct nbdc_slot *s;
    unsigned idx;

    if (d->nfree == 0) {
        return NULL;
    }
    idx = d->free_idx[--d->nfree];
    s = &d->slots[idx];
    memset(s, 0, sizeof(*s));
    s->cookie = (++d->gen << 16) | idx;
    return s;
}

static void
slot_put(struct nbdc_disk *d, struct nbdc_slot *s)
{
    s->io = NULL;
    d->free_idx[d->nfree++] = (uint16_t)(s - d->slots);
}

static struct nbdc_slot *
slot_find(struct nbdc_disk *d, uint64_t cookie)
{
    uint64_t idx = cookie & 0xffff;
    struct nbdc_slot *s;

    if (idx >= NBDC_SLOTS) {
        return NULL;
    }
    s = &d->slots[idx];
    return s->io != NULL && s->cookie == cookie && !s->replied ? s : NULL;
}

static void
sendq_push(struct nbdc_disk *d, struct nbdc_slot *s)
{
    s->in_sendq = true;
    s->send_next = NULL;
    if (d->sendq_tail == NULL) {
        d->sendq_head = s;
    } else {
        d->sendq_tail->send_next = s;
    }
    d->sendq_tail = s;
}

static uint64_t
slot_wire_len(const struct nbdc_slot *s)
{
    return sizeof(struct nbd_request) + (s->cmd == NBD_CMD_WRITE ? s->length : 0);
}

/* One request of io is over (its reply and its send are both done). */
static void
io_part_done(struct nbdc_disk *d, struct ioc_bdev_io *io, int err)
{
    struct nbdc_io_ctx *ctx = io_ctx(io);

    ctx->parts--;
    if (err < 0 && ctx->status == 0) {
        ctx->status = err;
    }
    if (ctx->parts > 0 || ctx->queued) {
        return;
    }
    if (ctx->status == 0 && ctx->fua_flush && !ctx->flush_phase) {
        ctx->flush_phase = true;
        waitq_push(d, io, true);
        ioc_reactor_defer(d->reactor, &d->kick, nbdc_kick);
        return;
    }
    nbdc_io_complete(d, io, ctx->status);
}

static void
slot_finish(struct nbdc_disk *d, struct nbdc_slot *s)
{
    struct ioc_bdev_io *io = s->io;
    int err = s->err;

    slot_put(d, s);
    io_part_done(d, io, err);
}

/* ---- issuing requests ---- */

static uint16_t
nbdc_cmd_flags(struct nbdc_disk *d, struct ioc_bdev_io *io, uint16_t cmd)
{
    uint16_t f = 0;

    if ((io->flags & IOC_IO_FUA) && (d->info.eflags & NBD_FLAG_SEND_FUA) &&
        (cmd == NBD_CMD_WRITE || cmd == NBD_CMD_WRITE_ZEROES || cmd == NBD_CMD_TRIM)) {
        f |= NBD_CMD_FLAG_FUA;
    }
    if (cmd == NBD_CMD_WRITE_ZEROES && (io->flags & IOC_IO_NO_HOLE)) {
        f |= NBD_CMD_FLAG_NO_HOLE;
    }
    if (cmd == NBD_CMD_WRITE_ZEROES && (io->flags & IOC_IO_FAST_ZERO)) {
        f |= NBD_CMD_FLAG_FAST_ZERO;
    }
    return f;
}

/* The command and the largest request for io's next part. */
static uint16_t
nbdc_part_cmd(struct nbdc_disk *d, struct ioc_bdev_io *io, uint64_t *max)
{
    *max = NBDC_MAX_EFFECT;
    if (io_ctx(io)->flush_phase) {
        *max = 0;
        return NBD_CMD_FLUSH;
    }
    switch (io->type) {
    case IOC_IO_READ:
        *max = d->max_rw;
        return NBD_CMD_READ;
    case IOC_IO_WRITE:
        *max = d->max_rw;
        return NBD_CMD_WRITE;
    case IOC_IO_FLUSH:
        *max = 0;
        return NBD_CMD_FLUSH;
    case IOC_IO_UNMAP:
        return NBD_CMD_TRIM;
    case IOC_IO_WRITE_ZEROES:
        return NBD_CMD_WRITE_ZEROES;
    case IOC_IO_BLOCK_STATUS:
        return NBD_CMD_BLOCK_STATUS;
    default:
        return NBD_CMD_CACHE;
    }
}

/* Give the next part of io a slot and queue it for sending; true when io is fully issued. */
static bool
nbdc_issue_part(struct nbdc_disk *d, struct ioc_bdev_io *io, struct nbdc_slot *s)
{
    struct nbdc_io_ctx *ctx = io_ctx(io);
    uint64_t end = io->offset + io->length, max;
    uint16_t cmd = nbdc_part_cmd(d, io, &max);

    s->io = io;
    s->cmd = cmd;
    if (max == 0) { /* FLUSH: offset and length 0 */
        ctx->next_off = end;
    } else {
        s->offset = ctx->next_off;
        s->length = (uint32_t)IOC_MIN(end - ctx->next_off, max);
        /* Block status and prefetch describe or warm a prefix; one request is enough. */
        bool prefix_only = cmd == NBD_CMD_BLOCK_STATUS || cmd == NBD_CMD_CACHE;
        ctx->next_off = prefix_only ? end : ctx->next_off + s->length;
    }
    nbdc_request_encode(&s->hdr, cmd, nbdc_cmd_flags(d, io, cmd), s->cookie, s->offset,
                        s->length);
    ctx->parts++;
    sendq_push(d, s);
    return ctx->next_off >= end;
}

/* Move waiting IO into free slots and start sending. Deferred: batches a loop's submits. */
static void
nbdc_kick(struct ioc_deferred *def)
{
    struct nbdc_disk *d = ioc_container_of(def, struct nbdc_disk, kick);

    if (d->state != NBDC_CONNECTED || d->closing) {
        return;
    }
    while (d->waitq_head != NULL && d->nfree > 0) {
        struct ioc_bdev_io *io = d->waitq_head;
        if (nbdc_issue_part(d, io, slot_get(d))) {
            waitq_pop(d);
        }
    }
    if (!d->send_posted) {
        nbdc_post_send(d);
    }
}

/* ---- sending ---- */

/* Append the bytes [skip, skip+len) of an iovec array to d->iov; false when full. */
static bool
iov_append(struct nbdc_disk *d, int *n, const struct iovec *src, int cnt, uint64_t skip,
           uint64_t len)
{
    for (int i = 0; i < cnt && len > 0; i++) {
        if (skip >= src[i].iov_len) {
            skip -= src[i].iov_len;
            continue;
        }
        if (*n >= NBDC_SEND_IOV) {
            return false;
        }
        size_t take = (size_t)IOC_MIN(src[i].iov_len - skip, len);
        d->iov[*n].iov_base = (uint8_t *)src[i].iov_base + skip;
        d->iov[*n].iov_len = take;
        (*n)++;
        len -= take;
        skip = 0;
    }
    return true;
}

static int
nbdc_build_iov(struct nbdc_disk *d)
{
    int n = 0;

    for (struct nbdc_slot *s = d->sendq_head; s != NULL && n < NBDC_SEND_IOV; s = s->send_next) {
        uint32_t hl = sizeof(struct nbd_request);
        if (s->sent < hl) {
            d->iov[n].iov_base = (uint8_t *)&s->hdr + s->sent;
            d->iov[n].iov_len = hl - s->sent;
            n++;
        }
        if (s->cmd == NBD_CMD_WRITE) {
            uint64_t done = s->sent > hl ? s->sent - hl : 0;
            uint64_t skip = s->offset - s->io->offset + done;
            if (!iov_append(d, &n, s->io->iov, s->io->iovcnt, skip, s->length - done)) {
                break;
            }
        }
    }
    return n;
}

static void
nbdc_post_send(struct nbdc_disk *d)
{
    struct io_uring_sqe *sqe;
    int n;

    if (d->sendq_head == NULL || d->state != NBDC_CONNECTED) {
        return;
    }
    n = nbdc_build_iov(d);
    memset(&d->msg, 0, sizeof(d->msg));
    d->msg.msg_iov = d->iov;
    d->msg.msg_iovlen = (size_t)n;
    sqe = ioc_reactor_get_sqe(d->reactor);
    io_uring_prep_sendmsg(sqe, d->fd, &d->msg, MSG_NOSIGNAL);
    ioc_uring_sqe_set_req(sqe, &d->send_req);
    d->send_posted = true;
}

/* Account res sent bytes to the send queue; finish slots whose reply already came. */
static void
nbdc_sent(struct nbdc_disk *d, uint64_t res)
{
    bool disc_sent = false;

    while (res > 0 && d->sendq_head != NULL) {
        struct nbdc_slot *s = d->sendq_head;
        uint64_t take = IOC_MIN(res, slot_wire_len(s) - s->sent);
        s->sent += (uint32_t)take;
        res -= take;
        if (s->sent < slot_wire_len(s)) {
            break;
        }
        d->sendq_head = s->send_next;
        if (d->sendq_head == NULL) {
            d->sendq_tail = NULL;
        }
        s->in_sendq = false;
        if (s == &d->disc) {
            disc_sent = true;
        } else if (s->replied) {
            slot_finish(d, s);
        }
    }
    if (disc_sent) {
        nbdc_fail(d, NULL); /* a clean NBD_CMD_DISC: now close */
    }
}

static void
nbdc_send_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct nbdc_disk *d = ioc_container_of(req, struct nbdc_disk, send_req);

    (void)cqe_flags;
    d->send_posted = false;
    if (d->state != NBDC_CONNECTED) {
        nbdc_fail(d, NULL); /* already dropping: see whether it is drained */
        return;
    }
    if (res <= 0 && res != -EAGAIN && res != -EINTR) {
        nbdc_fail(d, "send failed");
        return;
    }
    if (res > 0) {
        nbdc_sent(d, (uint64_t)res);
    }
    if (d->state == NBDC_CONNECTED) {
        nbdc_post_send(d);
    }
}

/* ---- receiving: the parser's callbacks ---- */

static int
rx_lookup(void *ctx, uint64_t cookie, struct nbdc_req_info *info)
{
    struct nbdc_slot *s = slot_find(ctx, cookie);

    if (s == NULL) {
        return -ENOENT;
    }
    info->cmd = s->cmd;
    info->offset = s->offset;
    info->length = s->length;
    return 0;
}

/* Copy or zero len bytes at byte off of io's buffers (src NULL: zeroes). */
static void
io_buf_fill(struct ioc_bdev_io *io, uint64_t off, const uint8_t *src, uint64_t len)
{
    for (int i = 0; i < io->iovcnt && len > 0; i++) {
        if (off >= io->iov[i].iov_len) {
            off -= io->iov[i].iov_len;
            continue;
        }
        size_t n = (size_t)IOC_MIN(io->iov[i].iov_len - off, len);
        uint8_t *dst = (uint8_t *)io->iov[i].iov_base + off;
        if (src != NULL) {
            memcpy(dst, src, n);
            src += n;
        } else {
            memset(dst, 0, n);
        }
        len -= n;
        off = 0;
    }
}

static void
rx_data(void *ctx, uint64_t cookie, uint64_t offset, const void *buf, size_t len)
{
    struct nbdc_slot *s = slot_find(ctx, cookie);

    io_buf_fill(s->io, offset - s->io->offset, buf, len);
    s->covered += len;
}

static void
rx_hole(void *ctx, uint64_t cookie, uint64_t offset, uint32_t len)
{
    struct nbdc_slot *s = slot_find(ctx, cookie);

    io_buf_fill(s->io, offset - s->io->offset, NULL, len);
    s->covered += len;
}

static void
rx_extent(void *ctx, uint64_t cookie, uint32_t length, uint32_t flags)
{
    struct nbdc_slot *s = slot_find(ctx, cookie);
    struct ioc_bdev_io *io = s->io;
    struct ioc_extent *e;

    if (s->extent_sum >= s->length || io->nr_extents >= io->max_extents) {
        return; /* past the request (allowed for the last one) or no room: a prefix suffices */
    }
    e = &io->extents[io->nr_extents++];
    e->length = IOC_MIN((uint64_t)length, s->length - s->extent_sum);
    e->flags = ((flags & NBD_STATE_HOLE) ? IOC_EXTENT_HOLE : 0) |
               ((flags & NBD_STATE_ZERO) ? IOC_EXTENT_ZERO : 0);
    s->extent_sum += length;
}

static void
rx_error(void *ctx, uint64_t cookie, int err, const char *msg)
{
    struct nbdc_disk *d = ctx;
    struct nbdc_slot *s = slot_find(d, cookie);

    IOC_DEBUG(nbd_client, "bdev %s: %s %llu+%u: server error %s: %s", d->bdev.name,
              nbd_cmd_name(s->cmd), (unsigned long long)s->offset, s->length, strerror(-err),
              msg);
    if (s->err == 0) {
        s->err = err;
    }
}

static int
rx_done(void *ctx, uint64_t cookie, int err)
{
    struct nbdc_disk *d = ctx;
    struct nbdc_slot *s = slot_find(d, cookie);

    if (err < 0 && s->err == 0) {
        s->err = err;
    }
    if (s->err == 0 && s->cmd == NBD_CMD_READ && s->covered != s->length) {
        return -EPROTO;
    }
    if (s->err == 0 && s->cmd == NBD_CMD_BLOCK_STATUS && s->io->nr_extents == 0) {
        return -EPROTO;
    }
    s->replied = true;
    if (s->err == -ESHUTDOWN) {
        d->shutdown_seen = true; /* keep the slot: retried after reconnecting */
        return 0;
    }
    if (!s->in_sendq) {
        slot_finish(d, s);
    }
    return 0;
}

static const struct nbdc_reply_ops g_rx_ops = {
    .lookup = rx_lookup,
    .data = rx_data,
    .hole = rx_hole,
    .extent = rx_extent,
    .error = rx_error,
    .done = rx_done,
};

static void
nbdc_post_recv(struct nbdc_disk *d)
{
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(d->reactor);

    io_uring_prep_recv(sqe, d->fd, d->rx_buf, NBDC_RX_BUF, 0);
    ioc_uring_sqe_set_req(sqe, &d->recv_req);
    d->recv_posted = true;
}

static void
nbdc_recv_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct nbdc_disk *d = ioc_container_of(req, struct nbdc_disk, recv_req);

    (void)cqe_flags;
    d->recv_posted = false;
    if (d->state != NBDC_CONNECTED) {
        nbdc_fail(d, NULL);
        return;
    }
    if (res == -EAGAIN || res == -EINTR) {
        nbdc_post_recv(d);
        return;
    }
    if (res <= 0) {
        nbdc_fail(d, res == 0 ? "the server closed the connection" : "recv failed");
        return;
    }
    if (nbdc_reply_parse(&d->rx, d->rx_buf, (size_t)res) < 0) {
        nbdc_fail(d, d->rx.why);
        return;
    }
    if (d->shutdown_seen) {
        nbdc_fail(d, "the server is shutting down (NBD_ESHUTDOWN)");
        return;
    }
    nbdc_post_recv(d);
}

/* ---- losing and regaining the connection ---- */

/*
 * Put every in-flight IO back on the wait queue (front, oldest first) with
 * its progress reset, failing those past their deadline with -ETIMEDOUT, or
 * every one with -ESHUTDOWN when closing. The socket is closed: no kernel
 * op references a buffer any more.
 */
static void
nbdc_requeue_all(struct nbdc_disk *d)
{
    struct ioc_bdev_io *head, *io, *next;
    uint64_t now = ioc_now_ns();

    for (unsigned i = NBDC_SLOTS; i-- > 0;) {
        struct nbdc_slot *s = &d->slots[i];
        if (s->io != NULL) {
            io = s->io;
            slot_put(d, s);
            if (!io_ctx(io)->queued) {
                waitq_push(d, io, true);
            }
        }
    }
    d->sendq_head = d->sendq_tail = NULL;
    head = waitq_take_all(d);
    for (io = head; io != NULL; io = next) {
        struct nbdc_io_ctx *ctx = io_ctx(io);
        next = ctx->next;
        ctx->queued = false;
        ctx->parts = 0;
        if (d->closing || now >= ctx->deadline_ns) {
            nbdc_io_complete(d, io, d->closing ? -ESHUTDOWN : -ETIMEDOUT);
            continue;
        }
        ctx->status = 0;
        ctx->flush_phase = false;
        ctx->next_off = io->offset;
        waitq_push(d, io, false);
    }
}

static void
nbdc_helper_wake(struct nbdc_disk *d, bool reconnect)
{
    pthread_mutex_lock(&d->lock);
    if (reconnect) {
        d->want_reconnect = true;
    } else {
        d->stopping = true;
    }
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static void
nbdc_become_closed(struct nbdc_disk *d)
{
    nbdc_requeue_all(d); /* closing: fails whatever is left with -ESHUTDOWN */
    nbdc_set_state(d, NBDC_CLOSED);
    ioc_poller_unregister(&d->poller);
    sem_post(&d->closed);
}

/*
 * Drop the connection (why != NULL: an error, logged) or continue dropping
 * it. When nothing is posted any more, close the fd and either reconnect or,
 * when closing, finish.
 */
static void
nbdc_fail(struct nbdc_disk *d, const char *why)
{
    if (d->state == NBDC_CONNECTED) {
        if (why != NULL) {
            IOC_WARN("nbd_client", "bdev %s: %s: %s; reconnecting", d->bdev.name, d->uri_text,
                     why);
        }
        shutdown(d->fd, SHUT_RDWR); /* completes the posted recv (and send) */
        d->down_since_ns = ioc_now_ns();
        nbdc_set_state(d, NBDC_DRAINING);
    }
    if (d->state != NBDC_DRAINING || d->recv_posted || d->send_posted) {
        return;
    }
    close(d->fd);
    d->fd = -1;
    d->shutdown_seen = false;
    if (d->closing) {
        nbdc_become_closed(d);
        return;
    }
    nbdc_requeue_all(d);
    nbdc_set_state(d, NBDC_RECONNECTING);
    nbdc_helper_wake(d, true);
}

/* Start using a connected, negotiated fd. */
static void
nbdc_attach(struct nbdc_disk *d, int fd, const struct nbdc_export_info *info)
{
    d->fd = fd;
    nbdc_reply_parser_init(&d->rx, &g_rx_ops, d, info);
    nbdc_set_state(d, NBDC_CONNECTED);
    nbdc_post_recv(d);
    ioc_reactor_defer(d->reactor, &d->kick, nbdc_kick);
}

struct nbdc_reconnected {
    struct nbdc_disk *d;
    int fd;
    struct nbdc_export_info info;
};

static void
nbdc_reconnected_msg(void *arg)
{
    struct nbdc_reconnected *m = arg;
    struct nbdc_disk *d = m->d;

    if (d->closing || d->state != NBDC_RECONNECTING) {
        close(m->fd);
    } else {
        atomic_fetch_add(&d->reconnects, 1);
        IOC_NOTICE("nbd_client", "bdev %s: %s: reconnected", d->bdev.name, d->uri_text);
        nbdc_attach(d, m->fd, &m->info);
    }
    free(m);
}

/* ---- timeouts ---- */

static bool
nbdc_fail_expired_waiting(struct nbdc_disk *d, uint64_t now)
{
    struct ioc_bdev_io *head = waitq_take_all(d), *io, *next;
    bool any = false;

    for (io = head; io != NULL; io = next) {
        struct nbdc_io_ctx *ctx = io_ctx(io);
        next = ctx->next;
        ctx->queued = false;
        if (now >= ctx->deadline_ns && ctx->parts == 0) {
            nbdc_io_complete(d, io, -ETIMEDOUT);
            any = true;
        } else {
            waitq_push(d, io, false);
        }
    }
    return any;
}

static void
nbdc_retry_completions(struct nbdc_disk *d)
{
    struct ioc_bdev_io *io = d->compl_retry;

    d->compl_retry = NULL;
    while (io != NULL) {
        struct ioc_bdev_io *next = io_ctx(io)->next;
        nbdc_io_complete(d, io, io->status);
        io = next;
    }
}

static enum ioc_poll_result
nbdc_timeout_poll(void *arg)
{
    struct nbdc_disk *d = arg;
    uint64_t now = ioc_now_ns();
    bool busy = false;

    nbdc_retry_completions(d);
    busy = nbdc_fail_expired_waiting(d, now);
    if (d->state != NBDC_CONNECTED) {
        return busy ? IOC_POLL_BUSY : IOC_POLL_IDLE;
    }
    for (unsigned i = 0; i < NBDC_SLOTS; i++) {
        struct nbdc_slot *s = &d->slots[i];
        if (s->io != NULL && now >= io_ctx(s->io)->deadline_ns) {
            IOC_ERR_RATELIMIT("nbd_client", "bdev %s: %s: %s %llu+%u timed out after %u s",
                              d->bdev.name, d->uri_text, nbd_cmd_name(s->cmd),
                              (unsigned long long)s->offset, s->length, d->io_timeout_s);
            nbdc_fail(d, "a request timed out");
            return IOC_POLL_BUSY;
        }
    }
    return busy ? IOC_POLL_BUSY : IOC_POLL_IDLE;
}

/* ---- bdev ops ---- */

/* Down for longer than io_timeout: new IO fails at once rather than each waiting it out. */
static bool
nbdc_down_too_long(const struct nbdc_disk *d)
{
    return d->state != NBDC_CONNECTED &&
           ioc_now_ns() - d->down_since_ns >= (uint64_t)d->io_timeout_s * 1000000000ull;
}

static void
nbdc_enqueue(struct nbdc_disk *d, struct ioc_bdev_io *io)
{
    if (d->state == NBDC_CLOSED || d->closing) {
        nbdc_io_complete(d, io, -ESHUTDOWN);
        return;
    }
    if (nbdc_down_too_long(d)) {
        nbdc_io_complete(d, io, -ETIMEDOUT);
        return;
    }
    waitq_push(d, io, false);
    ioc_reactor_defer(d->reactor, &d->kick, nbdc_kick);
}

static void
nbdc_submit_msg(void *arg)
{
    struct ioc_bdev_io *io = arg;

    nbdc_enqueue(io->bdev->ctx, io);
}

static void
nbdc_submit(struct ioc_bdev_io *io)
{
    struct nbdc_disk *d = io->bdev->ctx;
    struct nbdc_io_ctx *ctx = io_ctx(io);
    bool writes = io->type == IOC_IO_WRITE || io->type == IOC_IO_WRITE_ZEROES ||
                  io->type == IOC_IO_UNMAP;

    memset(ctx, 0, sizeof(*ctx));
    ctx->deadline_ns = ioc_now_ns() + (uint64_t)d->io_timeout_s * 1000000000ull;
    ctx->next_off = io->offset;
    ctx->fua_flush = writes && (io->flags & IOC_IO_FUA) &&
                     !(d->info.eflags & NBD_FLAG_SEND_FUA) &&
                     (d->info.eflags & NBD_FLAG_SEND_FLUSH);
    io->nr_extents = 0;
    if ((io->flags & IOC_IO_FAST_ZERO) && io->type == IOC_IO_WRITE_ZEROES &&
        !(d->info.eflags & NBD_FLAG_SEND_FAST_ZERO)) {
        ioc_bdev_io_complete_deferred(io, -ENOTSUP);
        return;
    }
    if (io->reactor != d->reactor) {
        ctx->foreign = true;
        if (ioc_reactor_send_msg(d->reactor, nbdc_submit_msg, io) < 0) {
            ioc_bdev_io_complete_deferred(io, -ENOMEM);
        }
        return;
    }
    nbdc_enqueue(d, io);
}

static bool
nbdc_supports(struct ioc_bdev *bdev, enum ioc_io_type type)
{
    struct nbdc_disk *d = bdev->ctx;
    uint16_t f = d->info.eflags;
    bool rw = !(f & NBD_FLAG_READ_ONLY);

    switch (type) {
    case IOC_IO_READ:
        return true;
    case IOC_IO_WRITE:
        return rw;
    case IOC_IO_FLUSH:
        return (f & NBD_FLAG_SEND_FLUSH) != 0;
    case IOC_IO_UNMAP:
        return rw && (f & NBD_FLAG_SEND_TRIM);
    case IOC_IO_WRITE_ZEROES:
        return rw && (f & NBD_FLAG_SEND_WRITE_ZEROES);
    case IOC_IO_BLOCK_STATUS:
        return d->info.structured && d->info.has_meta;
    case IOC_IO_PREFETCH:
        return (f & NBD_FLAG_SEND_CACHE) != 0;
    default:
        return false;
    }
}

static void
nbdc_dump_json(struct ioc_bdev *bdev, json_t *obj)
{
    struct nbdc_disk *d = bdev->ctx;
    uint16_t f = d->info.eflags;
    json_t *flags = json_object();

    json_object_set_new(obj, "uri", json_string(d->uri_text));
    json_object_set_new(obj, "state", json_string(g_state_names[atomic_load(&d->pub_state)]));
    json_object_set_new(obj, "io_timeout", json_integer(d->io_timeout_s));
    json_object_set_new(obj, "reconnects", json_integer((json_int_t)atomic_load(&d->reconnects)));
    json_object_set_new(obj, "timeouts", json_integer((json_int_t)atomic_load(&d->timeouts)));
    json_object_set_new(flags, "read_only", json_boolean(f & NBD_FLAG_READ_ONLY));
    json_object_set_new(flags, "flush", json_boolean(f & NBD_FLAG_SEND_FLUSH));
    json_object_set_new(flags, "fua", json_boolean(f & NBD_FLAG_SEND_FUA));
    json_object_set_new(flags, "trim", json_boolean(f & NBD_FLAG_SEND_TRIM));
    json_object_set_new(flags, "write_zeroes", json_boolean(f & NBD_FLAG_SEND_WRITE_ZEROES));
    json_object_set_new(flags, "fast_zero", json_boolean(f & NBD_FLAG_SEND_FAST_ZERO));
    json_object_set_new(flags, "cache", json_boolean(f & NBD_FLAG_SEND_CACHE));
    json_object_set_new(flags, "multi_conn", json_boolean(f & NBD_FLAG_CAN_MULTI_CONN));
    json_object_set_new(flags, "structured_replies", json_boolean(d->info.structured));
    json_object_set_new(flags, "block_status", json_boolean(d->info.has_meta));
    json_object_set_new(obj, "server", flags);
    json_object_set_new(obj, "min_block", json_integer(d->info.min_block));
    json_object_set_new(obj, "max_payload", json_integer(d->max_rw));
}

/* ---- the reconnect helper thread ---- */

/* Sleep ms unless told to stop; called and returns with d->lock held. */
static void
helper_sleep_locked(struct nbdc_disk *d, unsigned ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (!d->stopping && pthread_cond_timedwait(&d->cond, &d->lock, &ts) == 0) {
    }
}

/* One attempt: connect, check that it is the same export. 0 with *m filled, or -errno. */
static int
helper_try(struct nbdc_disk *d, struct nbdc_reconnected *m)
{
    unsigned t = IOC_MIN(d->io_timeout_s, (unsigned)NBDC_CONNECT_TIMEOUT_MAX_S);
    struct ioc_err err = {0};
    int rc = nbdc_connect(&d->uri, d->uri_text, IOC_MAX(t, 1u), &m->fd, &m->info, &err);

    if (rc == 0 && (m->info.size < d->bdev.size || m->info.min_block > d->bdev.block_size)) {
        ioc_err_set(&err, -EMEDIUMTYPE, "the export changed size or block size");
        close(m->fd);
        rc = -EMEDIUMTYPE;
    }
    if (rc < 0 && atomic_fetch_add(&d->attempts, 1) % 10 == 0) {
        IOC_WARN("nbd_client", "bdev %s: reconnect failed: %s", d->bdev.name, err.msg);
    }
    return rc;
}

static void *
nbdc_helper_main(void *arg)
{
    struct nbdc_disk *d = arg;
    unsigned backoff = NBDC_BACKOFF_MIN_MS;
    struct nbdc_reconnected *m = NULL;

    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->want_reconnect && !d->stopping) {
            pthread_cond_wait(&d->cond, &d->lock);
        }
        helper_sleep_locked(d, backoff);
        if (d->stopping) {
            break;
        }
        pthread_mutex_unlock(&d->lock);
        m = m != NULL ? m : calloc(1, sizeof(*m));
        int rc = m != NULL ? helper_try(d, m) : -ENOMEM;
        pthread_mutex_lock(&d->lock);
        if (rc < 0) {
            backoff = IOC_MIN(backoff * 2, (unsigned)NBDC_BACKOFF_MAX_MS);
            continue;
        }
        m->d = d;
        /* Under the lock: the stop hook sets stopping under it before the reactor goes. */
        if (d->stopping || ioc_reactor_send_msg(d->reactor, nbdc_reconnected_msg, m) < 0) {
            close(m->fd);
            continue;
        }
        m = NULL;
        d->want_reconnect = false;
        backoff = NBDC_BACKOFF_MIN_MS;
    }
    pthread_mutex_unlock(&d->lock);
    free(m);
    return NULL;
}

/* ---- closing and freeing ---- */

/* On the owner reactor: begin an orderly close (DISC when idle, else drop). */
static void
nbdc_close_begin(struct nbdc_disk *d)
{
    bool idle = d->nfree == NBDC_SLOTS;

    if (d->closing) {
        return;
    }
    d->closing = true;
    nbdc_helper_wake(d, false);
    switch (d->state) {
    case NBDC_CONNECTED:
        if (!idle) {
            nbdc_fail(d, "closing with requests in flight");
            return;
        }
        memset(&d->disc, 0, sizeof(d->disc));
        d->disc.cmd = NBD_CMD_DISC;
        nbdc_request_encode(&d->disc.hdr, NBD_CMD_DISC, 0, 0, 0, 0);
        sendq_push(d, &d->disc);
        if (!d->send_posted) {
            nbdc_post_send(d);
        }
        return;
    case NBDC_RECONNECTING:
        nbdc_become_closed(d);
        return;
    default:
        return; /* DRAINING finishes by itself; CLOSED is done */
    }
}

static void
nbdc_close_msg(void *arg)
{
    nbdc_close_begin(arg);
}

static void
nbdc_attach_msg(void *arg)
{
    struct nbdc_reconnected *m = arg;
    struct nbdc_disk *d = m->d;

    d->attached = true;
    /* Scan four times per io_timeout (at most once a second): IO fails within 1.25x of it. */
    d->poller = ioc_poller_register(d->reactor, nbdc_timeout_poll, d,
                                    IOC_MIN((uint64_t)d->io_timeout_s * 250000, 1000000));
    nbdc_attach(d, m->fd, &m->info);
}

static void
nbdc_free(struct nbdc_disk *d)
{
    if (d->helper_started) {
        nbdc_helper_wake(d, false);
        pthread_join(d->helper, NULL);
    }
    if (d->fd >= 0) {
        close(d->fd);
    }
    sem_destroy(&d->closed);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d->rx_buf);
    free(d);
}

static void
nbdc_list_remove(struct nbdc_disk *d)
{
    pthread_mutex_lock(&g_disks_lock);
    for (struct nbdc_disk **pp = &g_disks; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_disks_lock);
}

/* Wait for CLOSED, bounded: a reactor that never answers must not hang delete forever. */
static int
nbdc_wait_closed(struct nbdc_disk *d)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += NBDC_CLOSE_WAIT_S;
    while (sem_timedwait(&d->closed, &ts) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

static void
nbdc_destruct(struct ioc_bdev *bdev)
{
    struct nbdc_disk *d = bdev->ctx;

    nbdc_list_remove(d);
    /* After ioc_reactors_stop() the stop hook has already closed the connection. */
    if (d->attached && ioc_reactor_count() > 0 && ioc_reactor_self() == NULL) {
        ioc_reactor_call_sync(d->reactor, nbdc_close_msg, d);
        if (nbdc_wait_closed(d) < 0) {
            IOC_ERR("nbd_client", "bdev %s: the connection did not close; leaking it",
                    bdev->name);
            return;
        }
    }
    nbdc_free(d);
}

static void
nbdc_reactor_stop_hook(struct ioc_reactor *r)
{
    pthread_mutex_lock(&g_disks_lock);
    for (struct nbdc_disk *d = g_disks; d != NULL; d = d->next) {
        if (d->reactor == r && d->attached) {
            nbdc_close_begin(d);
        }
    }
    pthread_mutex_unlock(&g_disks_lock);
}

__attribute__((constructor)) static void
nbdc_register_stop_hook(void)
{
    ioc_reactors_on_stop(nbdc_reactor_stop_hook);
}

static const struct ioc_bdev_ops nbdc_ops = {
    .submit = nbdc_submit,
    .supports = nbdc_supports,
    .destruct = nbdc_destruct,
    .dump_json = nbdc_dump_json,
};

/* ---- creation (control path) ---- */

/* The bdev's geometry from what the server said. */
static int
nbdc_geometry(struct nbdc_disk *d, struct ioc_err *err)
{
    uint32_t bs = d->info.min_block <= 512 ? 512 : d->info.min_block <= 4096 ? 4096 : 0;
    uint64_t size;

    if (bs == 0) {
        return ioc_err_set(err, -EINVAL,
                           "uri '%s': the export's minimum block size %u is larger than 4096",
                           d->uri_text, d->info.min_block);
    }
    size = d->info.size - d->info.size % bs;
    if (size == 0) {
        return ioc_err_set(err, -EINVAL, "uri '%s': the export is smaller than one block (%llu)",
                           d->uri_text, (unsigned long long)d->info.size);
    }
    if (size != d->info.size) {
        IOC_WARN("nbd_client", "bdev %s: export size %llu is not a multiple of %u; using %llu",
                 d->bdev.name, (unsigned long long)d->info.size, bs, (unsigned long long)size);
    }
    d->max_rw = IOC_MIN(d->info.max_block, NBD_MAX_PAYLOAD);
    d->max_rw = IOC_MAX(d->max_rw - d->max_rw % bs, bs);
    d->bdev.size = size;
    d->bdev.block_size = bs;
    d->bdev.fast_zero = (d->info.eflags & NBD_FLAG_SEND_FAST_ZERO) != 0;
    return 0;
}

static int
nbdc_alloc(const struct ioc_bdev_nbd_client_opts *opts, struct nbdc_disk **out,
           struct ioc_err *err)
{
    struct nbdc_disk *d = calloc(1, sizeof(*d));
    pthread_condattr_t ca;

    if (d == NULL || (d->rx_buf = malloc(NBDC_RX_BUF)) == NULL) {
        free(d);
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    d->fd = -1;
    d->io_timeout_s = opts->io_timeout_s != 0 ? opts->io_timeout_s
                                              : IOC_NBD_CLIENT_DEFAULT_TIMEOUT_S;
    snprintf(d->uri_text, sizeof(d->uri_text), "%s", opts->uri);
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    sem_init(&d->closed, 0, 0);
    slots_init(d);
    d->recv_req.done = nbdc_recv_done;
    d->send_req.done = nbdc_send_done;
    d->state = NBDC_RECONNECTING;
    atomic_store(&d->pub_state, NBDC_RECONNECTING);
    ioc_bdev_init(&d->bdev, opts->name, "nbd_client", &nbdc_ops, d, 0, 512);
    *out = d;
    return 0;
}

/* Hand the connected fd to the owner reactor and wait until it has it. */
static int
nbdc_start(struct nbdc_disk *d, int fd, struct ioc_err *err)
{
    struct nbdc_reconnected m = {.d = d, .fd = fd, .info = d->info};
    int rc;

    rc = -pthread_create(&d->helper, NULL, nbdc_helper_main, d);
    if (rc < 0) {
        close(fd);
        return ioc_err_set(err, rc, "cannot start the reconnect thread");
    }
    d->helper_started = true;
    pthread_mutex_lock(&g_disks_lock);
    d->next = g_disks;
    g_disks = d;
    pthread_mutex_unlock(&g_disks_lock);
    rc = ioc_reactor_call_sync(d->reactor, nbdc_attach_msg, &m);
    if (rc < 0) {
        close(fd);
        return ioc_err_set(err, rc, "cannot reach the reactor");
    }
    return 0;
}

static int
nbdc_check_opts(const struct ioc_bdev_nbd_client_opts *opts, struct nbdc_uri *uri,
                struct ioc_err *err)
{
    int rc = ioc_bdev_name_check(opts->name, err);

    if (rc < 0) {
        return rc;
    }
    if (opts->io_timeout_s > IOC_NBD_CLIENT_MAX_TIMEOUT_S) {
        return ioc_err_set(err, -EINVAL, "io_timeout: must be 1 to %u seconds, got %u",
                           IOC_NBD_CLIENT_MAX_TIMEOUT_S, opts->io_timeout_s);
    }
    if (opts->uri != NULL && strlen(opts->uri) >= NBD_STRING_MAX + 64) {
        return ioc_err_set(err, -EINVAL, "uri: too long");
    }
    return nbdc_uri_parse(opts->uri, uri, err);
}

int
ioc_bdev_nbd_client_create(const struct ioc_bdev_nbd_client_opts *opts, struct ioc_err *err)
{
    struct nbdc_disk *d = NULL;
    struct ioc_bdev *bdev;
    struct nbdc_uri uri;
    int fd = -1, rc;

    rc = nbdc_check_opts(opts, &uri, err);
    if (rc < 0) {
        return rc;
    }
    rc = nbdc_alloc(opts, &d, err);
    if (rc < 0) {
        return rc;
    }
    d->uri = uri;
    d->reactor = opts->reactor != NULL ? opts->reactor : ioc_reactor_next();
    if (d->reactor == NULL) {
        rc = ioc_err_set(err, -ENODEV, "no reactor is running");
        goto fail;
    }
    rc = nbdc_connect(&d->uri, d->uri_text, IOC_MIN(d->io_timeout_s, 30u), &fd, &d->info, err);
    rc = rc == 0 ? nbdc_geometry(d, err) : rc;
    if (rc < 0) {
        goto fail;
    }
    rc = nbdc_start(d, fd, err);
    fd = -1;
    if (rc < 0) {
        goto fail;
    }
    IOC_INFO("nbd_client", "bdev %s: connected to %s (%llu bytes, flags 0x%x%s%s)", opts->name,
             d->uri_text, (unsigned long long)d->bdev.size, d->info.eflags,
             d->info.structured ? ", structured replies" : "",
             d->info.has_meta ? ", base:allocation" : "");
    bdev = &d->bdev;
    rc = ioc_bdev_register(bdev, err);
    ioc_bdev_put(&bdev); /* on failure this is the last reference: destruct closes */
    return rc;
fail:
    if (fd >= 0) {
        close(fd);
    }
    nbdc_list_remove(d);
    nbdc_free(d);
    return rc;
}
