/*
 * target/iscsi/iscsi_conn.c - the iSCSI engine of one connection.
 *
 * Like the NBD engine it knows nothing about sockets: the transport (the
 * shared stream layer target_stream.c, set up by iscsi_target.c, or the unit
 * tests and fuzzer with byte buffers) feeds it received bytes and drains its
 * output.
 *
 *   bytes in:  one receive buffer (ISCSI_RBUF_SIZE, larger than the biggest
 *              PDU we accept); every complete PDU in it is checked
 *              (iscsi_pdu_parse, digests) and handled at once: login and text
 *              go to iscsi_login.c, SCSI commands become tasks.
 *   tasks:     a per-connection pool of ISCSI_MAX_TASKS (no malloc once warm:
 *              data buffers and PDU header arrays are kept across reuse). A
 *              WRITE gathers its Data-Out (immediate, unsolicited, then one
 *              R2T at a time up to MaxBurstLength) into the task buffer and
 *              only then runs; a READ runs at once and its Data-In PDUs point
 *              straight into the buffer the bdev read into.
 *   bytes out: each task's Data-In PDUs and its response are one iovec list;
 *              control PDUs (NOP-In, R2T, text, TMF, logout, reject) are small
 *              objects of their own, all on the shared output queue
 *              (target_outq.h). iscsi_conn_out_iov() hands the whole queue
 *              to the transport for ONE sendmsg; partial sends resume
 *              mid-iovec.
 *   wake-ups:  every event defers one conn_deferred() on the reactor, which
 *              parses leftover input and calls the transport's process(): a
 *              burst of completions in one iteration leaves in one send.
 *
 * States:
 *
 *   LOGIN --final login response--> FULL --logout--> LOGOUT --sent--> CLOSING
 *     |  \                            |                                 ^
 *     |   +--TSIH of a session on another reactor--> MIGRATE (transport) |
 *     +-------------------------------+--- protocol error / peer gone --+
 *
 *   LOGIN    only Login Requests (iscsi_login.c).
 *   MIGRATE  the first login PDU names a session on another reactor: it stays
 *            unhandled in the buffer; the transport moves the socket and the
 *            bytes to a new engine there (iscsi_sess.c says why).
 *   FULL     tasks; tgt != NULL unless a discovery session.
 *   LOGOUT   the logout response is queued; input is ignored; once the output
 *            drains and no IO is in flight, CLOSING.
 *   CLOSING  no more input; in-flight IO completes (responses are dropped if
 *            aborted); finished when io_inflight == 0 and output is drained
 *            or dropped.
 *
 * Sequence numbers: ExpCmdSN and MaxCmdSN belong to the session
 * (iscsi_sess.c), StatSN to the connection. A non-immediate command must
 * carry CmdSN == ExpCmdSN; one outside the window is dropped silently (RFC
 * 7143 4.2.2.1); in a session of several connections one inside the window
 * but early waits, and parsing of its connection stops until ExpCmdSN
 * reaches it. MaxCmdSN follows the free tasks of the session's connections,
 * so a well-behaved initiator never runs us out of them. The data of the
 * commands taken is capped too (ISCSI_INFLIGHT_BYTES): past it, and while a
 * command is executing, parsing stops until one completes, so a flood of
 * 8 MiB reads cannot make one connection allocate a gigabyte. (Writes
 * waiting for their Data-Out are not a reason to stop: their data is behind
 * in the same stream.)
 *
 * Not done: ErrorRecoveryLevel > 0
 * (SNACK is rejected; a digest error closes the connection), bidirectional
 * commands, out-of-order Data-Out (DataPDUInOrder=No). Rejected alternative:
 * receiving each PDU with exact-length reads (a syscall per header and per
 * payload); one large recv per batch keeps the per-IO CPU low.
 */
#include "ioc/common.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "target/iscsi/iscsi_conn_priv.h"

#define ISCSI_CMD_WINDOW (ISCSI_MAX_TASKS - 8u) /* spare tasks for immediate commands */

static void conn_deferred(struct ioc_deferred *d);
static void conn_parse(struct iscsi_conn *c);

/* ------------------------------------------------------------------ state */

static const char *
conn_state_name(enum iscsi_conn_state s)
{
    static const char *names[] = {"login", "full", "logout", "closing", "migrate"};

    return names[s];
}

void
iscsi_conn_set_state(struct iscsi_conn *c, enum iscsi_conn_state s)
{
    if (c->state == s) {
        return;
    }
    IOC_DEBUG(iscsi, "conn %s: %s -> %s", c->peer, conn_state_name(c->state),
              conn_state_name(s));
    c->state = s;
}

static void
conn_kick(struct iscsi_conn *c)
{
    ioc_reactor_defer(c->reactor, &c->defer, conn_deferred);
}

void
iscsi_conn_kick(struct iscsi_conn *c)
{
    conn_kick(c);
}

bool
iscsi_conn_live(const struct iscsi_conn *c)
{
    return c->state == ISCSI_CONN_FULL && !c->aborted;
}

/*
 * Close the connection at once: output is dropped, running tasks complete
 * without a response. A connection that fails in full feature phase fails
 * its session, with every other connection of it (ERL 0, iscsi_sess.c),
 * unless it was closed on purpose (iscsi_conn_drop).
 */
void
iscsi_conn_fail(struct iscsi_conn *c, const char *why)
{
    bool fail_sess = !c->aborted && !c->leaving && c->state == ISCSI_CONN_FULL &&
                     c->sess != NULL;

    if (!c->aborted) {
        IOC_DEBUG(iscsi, "conn %s: closing: %s", c->peer, why);
    }
    c->aborted = true;
    iscsi_conn_set_state(c, ISCSI_CONN_CLOSING);
    conn_kick(c);
    if (fail_sess) {
        iscsi_sess_fail(c->sess, why);
    }
}

void
iscsi_conn_drop(struct iscsi_conn *c, const char *why)
{
    c->leaving = true;
    iscsi_conn_fail(c, why);
}

uint32_t
iscsi_conn_exp_cmdsn(const struct iscsi_conn *c)
{
    return c->sess != NULL ? c->sess->exp_cmdsn : c->exp_cmdsn;
}

uint32_t
iscsi_conn_max_cmdsn(const struct iscsi_conn *c)
{
    /* during login no task is taken: the whole window is open */
    if (c->sess != NULL) {
        return iscsi_sess_max_cmdsn(c->sess);
    }
    return c->exp_cmdsn + ISCSI_CMD_WINDOW - 1;
}

/* ------------------------------------------------------------------ output */

static void
conn_queue(struct iscsi_conn *c, struct ioc_target_out *o)
{
    ioc_target_outq_append(&c->outq, o);
    conn_kick(c);
}

int
iscsi_conn_out_iov(struct iscsi_conn *c, struct iovec *iov, int max)
{
    if (c->aborted) {
        return 0; /* queued output is dropped: send nothing more */
    }
    return ioc_target_outq_iov(&c->outq, iov, max);
}

void
iscsi_conn_sent(struct iscsi_conn *c, ssize_t n)
{
    conn_kick(c);
    if (n < 0) {
        iscsi_conn_fail(c, "send failed");
        return;
    }
    if (c->aborted) {
        return;
    }
    ioc_target_outq_sent(&c->outq, (size_t)n);
}

/* Digests and padding of one PDU: hdr holds the BHS; data/len its data segment. */
static int
pdu_finish(const struct iscsi_conn *c, struct iscsi_pdu_hdr *h, struct iovec *iov,
           const void *data, uint32_t len)
{
    int n = 1;
    uint32_t pad = iscsi_pad4(len) - len;

    iscsi_dlen_set(h->bhs.dlen, len);
    iov[0].iov_base = h;
    iov[0].iov_len = ISCSI_BHS_SIZE;
    if (c->hdig) {
        uint32_t d = htole32(iscsi_crc32c(0, h, ISCSI_BHS_SIZE));

        memcpy(h->hdig, &d, 4);
        iov[0].iov_len += 4;
    }
    if (len == 0) {
        return n;
    }
    iov[n].iov_base = (void *)data;
    iov[n++].iov_len = len;
    memset(h->tail, 0, pad);
    if (c->ddig) {
        uint32_t d = iscsi_crc32c(0, data, len);

        d = htole32(iscsi_crc32c(d, h->tail, pad));
        memcpy(h->tail + pad, &d, 4);
        pad += 4;
    }
    if (pad > 0) {
        iov[n].iov_base = h->tail;
        iov[n++].iov_len = pad;
    }
    return n;
}

/* ------------------------------------------------------------ control PDUs */

static void
ctl_done(struct ioc_target_out *o)
{
    struct iscsi_ctl *ctl = ioc_container_of(o, struct iscsi_ctl, out);

    free(ctl->data);
    free(ctl);
}

struct iscsi_ctl *
iscsi_ctl_alloc(struct iscsi_conn *c, const void *data, size_t len)
{
    struct iscsi_ctl *ctl = calloc(1, sizeof(*ctl));

    if (ctl == NULL) {
        iscsi_conn_fail(c, "out of memory");
        return NULL;
    }
    if (len > 0) {
        ctl->data = malloc(len);
        if (ctl->data == NULL) {
            free(ctl);
            iscsi_conn_fail(c, "out of memory");
            return NULL;
        }
        memcpy(ctl->data, data, len);
    }
    iscsi_dlen_set(ctl->hdr.bhs.dlen, (uint32_t)len);
    ctl->out.done = ctl_done;
    return ctl;
}

/* Fill the StatSN block and queue. Responses at 24/28/32 share the layout. */
void
iscsi_ctl_queue(struct iscsi_conn *c, struct iscsi_ctl *ctl)
{
    uint32_t len = iscsi_dlen_get(ctl->hdr.bhs.dlen);

    ctl->out.iov = ctl->iov;
    ctl->out.iovcnt = pdu_finish(c, &ctl->hdr, ctl->iov, ctl->data, len);
    conn_queue(c, &ctl->out);
}

void
iscsi_conn_sn_fill(struct iscsi_conn *c, struct iscsi_sn_pdu *p, bool advance_statsn)
{
    p->sn24 = htobe32(c->statsn);
    if (advance_statsn) {
        c->statsn++;
    }
    p->sn28 = htobe32(iscsi_conn_exp_cmdsn(c));
    p->sn32 = htobe32(iscsi_conn_max_cmdsn(c));
}

static void
conn_reject(struct iscsi_conn *c, const uint8_t *bhs, uint8_t reason)
{
    struct iscsi_ctl *ctl = iscsi_ctl_alloc(c, bhs, ISCSI_BHS_SIZE);

    if (ctl == NULL) {
        return;
    }
    ctl->hdr.sn.opcode = ISCSI_OP_REJECT;
    ctl->hdr.sn.flags = ISCSI_FLAG_FINAL;
    ctl->hdr.sn.spec2[0] = reason;
    ctl->hdr.sn.itt = ISCSI_RSVD_TAG;
    iscsi_conn_sn_fill(c, &ctl->hdr.sn, true);
    iscsi_ctl_queue(c, ctl);
}

/* ------------------------------------------------------------------ tasks */

static struct iscsi_task *
task_get(struct iscsi_conn *c)
{
    struct iscsi_task *t = c->free_tasks;

    if (t == NULL) {
        return NULL;
    }
    c->free_tasks = t->next_free;
    c->ntasks_used++;
    return t;
}

static void
task_put(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->conn;

    if (t->scsi.buf_cap > ISCSI_KEEP_BUF || t->scsi.aux_cap > ISCSI_KEEP_BUF) {
        scsi_task_buf_free(&t->scsi);
    }
    c->inflight_bytes -= t->charge;
    t->charge = 0;
    t->next_free = c->free_tasks;
    c->free_tasks = t;
    c->ntasks_used--;
    conn_kick(c); /* MaxCmdSN opened; input may have waited for a task */
}

/* Free a task, unless its R2T is still queued: then r2t_done() frees it. */
static void
task_release(struct iscsi_task *t)
{
    if (t->r2t_queued) {
        t->release_pending = true;
        return;
    }
    task_put(t);
}

static void
task_wait_remove(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->conn;

    if (!t->waiting) {
        return;
    }
    for (struct iscsi_task **pp = &c->wait_data; *pp != NULL; pp = &(*pp)->next_wait) {
        if (*pp == t) {
            *pp = t->next_wait;
            break;
        }
    }
    t->waiting = false;
}

static void
task_out_done(struct ioc_target_out *o)
{
    task_put(ioc_container_of(o, struct iscsi_task, out));
}

static int
task_reserve_pdus(struct iscsi_task *t, unsigned npdu)
{
    if (npdu > t->hdrs_cap) {
        struct iscsi_pdu_hdr *h = realloc(t->hdrs, npdu * sizeof(*h));

        if (h == NULL) {
            return -ENOMEM;
        }
        t->hdrs = h;
        t->hdrs_cap = npdu;
    }
    if (npdu * 3 > t->iov_cap) {
        struct iovec *v = realloc(t->iov, npdu * 3 * sizeof(*v));

        if (v == NULL) {
            return -ENOMEM;
        }
        t->iov = v;
        t->iov_cap = npdu * 3;
    }
    return 0;
}

/* Residual flags into *flags; returns the residual count, big-endian. */
static uint32_t
rsp_residual(uint8_t *flags, uint32_t edtl, uint32_t len)
{
    if (len > edtl) {
        *flags |= ISCSI_RSP_OVERFLOW;
        return htobe32(len - edtl);
    }
    if (len < edtl) {
        *flags |= ISCSI_RSP_UNDERFLOW;
        return htobe32(edtl - len);
    }
    return 0;
}

/* Data-In PDUs for [0, len) of the buffer; the last carries status if collapse. */
static int
task_queue_data_in(struct iscsi_task *t, uint32_t len, bool collapse, unsigned *pdu, int *iovn)
{
    struct iscsi_conn *c = t->conn;
    uint32_t seg = c->params.max_recv_dsl, burst = c->params.max_burst;
    uint32_t off = 0, datasn = 0;

    while (off < len) {
        struct iscsi_pdu_hdr *h = &t->hdrs[*pdu];
        uint32_t n = IOC_MIN(seg, len - off);
        bool last = off + n == len;

        memset(&h->data, 0, sizeof(h->data));
        h->data.opcode = ISCSI_OP_DATA_IN;
        /* F ends a sequence: every MaxBurstLength bytes and at the end */
        if (last || (off + n) % burst == 0) {
            h->data.flags = ISCSI_FLAG_FINAL;
        }
        memcpy(h->data.lun, t->lun, 8);
        h->data.itt = t->itt;
        h->data.ttt = ISCSI_RSVD_TAG;
        h->data.datasn = htobe32(datasn++);
        h->data.offset = htobe32(off);
        if (last && collapse) {
            h->data.flags |= ISCSI_DATAIN_STATUS;
            h->data.status = t->scsi.status;
            h->data.residual = rsp_residual(&h->data.flags, t->scsi.edtl, t->scsi.in_len);
            h->data.statsn = htobe32(c->statsn++);
        }
        h->data.exp_cmdsn = htobe32(iscsi_conn_exp_cmdsn(c));
        h->data.max_cmdsn = htobe32(iscsi_conn_max_cmdsn(c));
        *iovn += pdu_finish(c, h, t->iov + *iovn, t->scsi.buf + off, n);
        (*pdu)++;
        off += n;
    }
    return (int)datasn;
}

static void
task_queue_response(struct iscsi_task *t, unsigned pdu, int iovn, uint32_t datasn)
{
    struct iscsi_conn *c = t->conn;
    struct iscsi_pdu_hdr *h = &t->hdrs[pdu];
    uint32_t slen = 0;

    memset(&h->rsp, 0, sizeof(h->rsp));
    h->rsp.opcode = ISCSI_OP_SCSI_RSP;
    h->rsp.flags = ISCSI_FLAG_FINAL;
    h->rsp.status = t->scsi.status;
    h->rsp.itt = t->itt;
    h->rsp.statsn = htobe32(c->statsn++);
    h->rsp.exp_cmdsn = htobe32(iscsi_conn_exp_cmdsn(c));
    h->rsp.max_cmdsn = htobe32(iscsi_conn_max_cmdsn(c));
    h->rsp.exp_datasn = htobe32(datasn);
    if (t->scsi.xfer_len != UINT32_MAX) {
        h->rsp.residual = rsp_residual(&h->rsp.flags, t->scsi.edtl, t->scsi.xfer_len);
    } else if (t->scsi.dir == SCSI_DIR_IN) {
        h->rsp.residual = rsp_residual(&h->rsp.flags, t->scsi.edtl, t->scsi.in_len);
    } else if (t->scsi.dir == SCSI_DIR_OUT) {
        h->rsp.residual = rsp_residual(&h->rsp.flags, t->scsi.edtl, t->data_got);
    }
    if (t->scsi.sense_len > 0) {
        scsi_put16(t->sense_buf, t->scsi.sense_len);
        memcpy(t->sense_buf + 2, t->scsi.sense, t->scsi.sense_len);
        slen = 2u + t->scsi.sense_len;
    }
    iovn += pdu_finish(c, h, t->iov + iovn, t->sense_buf, slen);
    t->out.iov = t->iov;
    t->out.iovcnt = iovn;
    t->out.done = task_out_done;
    conn_queue(c, &t->out);
}

/* The SCSI layer finished: Data-In, then status (collapsed when GOOD). */
static void
task_scsi_done(struct scsi_task *st)
{
    struct iscsi_task *t = ioc_container_of(st, struct iscsi_task, scsi);
    struct iscsi_conn *c = t->conn;
    uint32_t len = 0, seg = c->params.max_recv_dsl;
    unsigned pdu = 0, npdu;
    bool collapse;
    int iovn = 0, datasn = 0;

    t->executing = false;
    c->io_inflight--;
    conn_kick(c);
    if (t->aborted || c->state == ISCSI_CONN_CLOSING) {
        task_release(t);
        return;
    }
    if (st->dir == SCSI_DIR_IN && st->status == SCSI_GOOD) {
        len = IOC_MIN(st->in_len, st->edtl);
    }
    collapse = len > 0 && st->sense_len == 0;
    npdu = (len + seg - 1) / seg + 1;
    if (task_reserve_pdus(t, npdu) < 0) {
        task_release(t);
        iscsi_conn_fail(c, "out of memory");
        return;
    }
    datasn = task_queue_data_in(t, len, collapse, &pdu, &iovn);
    if (collapse) {
        t->out.iov = t->iov;
        t->out.iovcnt = iovn;
        t->out.done = task_out_done;
        conn_queue(c, &t->out);
        return;
    }
    task_queue_response(t, pdu, iovn, (uint32_t)datasn);
}

static void
task_exec(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->conn;

    task_wait_remove(t);
    t->scsi.out_len = t->data_got;
    t->executing = true;
    c->io_inflight++;
    scsi_task_exec(&t->scsi);
}

/* ---------------------------------------------------------------- R2T */

static void r2t_send(struct iscsi_task *t);

static void
r2t_done(struct ioc_target_out *o)
{
    struct iscsi_task *t = ioc_container_of(o, struct iscsi_task, r2t_ctl.out);

    t->r2t_queued = false;
    if (t->release_pending) {
        task_put(t);
    } else if (t->r2t_wanted) {
        t->r2t_wanted = false;
        r2t_send(t);
    }
}

static void
r2t_send(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->conn;
    struct iscsi_ctl *ctl = &t->r2t_ctl;
    uint32_t len = IOC_MIN(c->params.max_burst, t->scsi.edtl - t->r2t_off);

    if (t->r2t_queued) {
        t->r2t_wanted = true;
        return;
    }
    if (t->aborted || c->state != ISCSI_CONN_FULL) {
        return;
    }
    memset(&ctl->hdr.r2t, 0, sizeof(ctl->hdr.r2t));
    ctl->hdr.r2t.opcode = ISCSI_OP_R2T;
    ctl->hdr.r2t.flags = ISCSI_FLAG_FINAL;
    memcpy(ctl->hdr.r2t.lun, t->lun, 8);
    ctl->hdr.r2t.itt = t->itt;
    ctl->hdr.r2t.ttt = htobe32(t->idx);
    ctl->hdr.r2t.statsn = htobe32(c->statsn);
    ctl->hdr.r2t.exp_cmdsn = htobe32(iscsi_conn_exp_cmdsn(c));
    ctl->hdr.r2t.max_cmdsn = htobe32(iscsi_conn_max_cmdsn(c));
    ctl->hdr.r2t.r2tsn = htobe32(t->r2tsn++);
    ctl->hdr.r2t.offset = htobe32(t->r2t_off);
    ctl->hdr.r2t.length = htobe32(len);
    t->r2t_end = t->r2t_off + len;
    t->r2t_off += len;
    t->datasn = 0;
    ctl->out.done = r2t_done;
    ctl->out.iov = ctl->iov;
    ctl->out.iovcnt = pdu_finish(c, &ctl->hdr, ctl->iov, NULL, 0);
    t->r2t_queued = true;
    conn_queue(c, &ctl->out);
}

/* After data arrived: run the command, or ask for more. */
static void
task_data_progress(struct iscsi_task *t)
{
    if (t->data_got >= t->scsi.edtl) {
        task_exec(t);
        return;
    }
    if (!t->unsol_done && t->data_got < t->unsol_limit) {
        return; /* unsolicited Data-Out still coming */
    }
    t->unsol_done = true;
    if (t->r2t_end == 0 || t->data_got >= t->r2t_end) {
        if (t->r2t_off < t->data_got) {
            t->r2t_off = t->data_got;
        }
        r2t_send(t);
    }
}

/* Answer a task with CHECK CONDITION before it ran (bad data phase, too large). */
static void
task_fail_now(struct iscsi_task *t, uint8_t key, uint16_t asc)
{
    struct iscsi_conn *c = t->conn;

    task_wait_remove(t);
    t->scsi.dir = SCSI_DIR_NONE;
    t->scsi.xfer_len = UINT32_MAX;
    scsi_task_sense(&t->scsi, key, asc);
    t->executing = true;
    c->io_inflight++;
    task_scsi_done(&t->scsi);
}

/* ------------------------------------------------------- SCSI command PDU */

static uint64_t
lun_decode(const uint8_t l[8])
{
    switch (l[0] >> 6) {
    case 0: /* peripheral device addressing */
        return l[1];
    case 1: /* flat space addressing */
        return ((uint64_t)(l[0] & 0x3f) << 8) | l[1];
    default:
        return UINT64_MAX;
    }
}

/* CmdSN check for a non-immediate command: false = drop it. */
bool
iscsi_conn_cmdsn_accept(struct iscsi_conn *c, bool immediate, uint32_t cmdsn)
{
    uint32_t *exp = c->sess != NULL ? &c->sess->exp_cmdsn : &c->exp_cmdsn;

    if (immediate) {
        return true;
    }
    if (cmdsn != *exp) {
        IOC_DEBUG(iscsi, "conn %s: dropping CmdSN %u, expected %u", c->peer, cmdsn, *exp);
        return false;
    }
    (*exp)++;
    if (c->sess != NULL) {
        iscsi_sess_cmdsn_advanced(c->sess, c);
    }
    return true;
}

static void
task_setup(struct iscsi_conn *c, struct iscsi_task *t, const struct iscsi_scsi_cmd *cmd)
{
    struct scsi_task *st = &t->scsi;
    uint64_t lun = lun_decode(cmd->lun);

    t->itt = cmd->itt;
    t->cmdsn = be32toh(cmd->cmdsn);
    memcpy(t->lun, cmd->lun, 8);
    t->data_got = 0;
    t->unsol_limit = 0;
    t->unsol_done = false;
    t->r2t_off = 0;
    t->r2t_end = 0;
    t->r2tsn = 0;
    t->datasn = 0;
    t->r2t_wanted = false;
    t->aborted = false;
    t->release_pending = false;
    t->waiting = false;
    memcpy(t->cdb, cmd->cdb, sizeof(t->cdb));
    st->cdb = t->cdb;
    st->tgt = c->tgt;
    st->lu = lun == UINT64_MAX ? NULL : iscsi_tgt_lun(c->tgt, lun);
    st->lun_id = lun;
    st->port = c->port;
    st->ua_seen = NULL;
    for (unsigned i = 0; st->lu != NULL && i < c->tgt->nluns; i++) {
        if (c->tgt->luns[i] == st->lu) {
            st->ua_seen = &c->ua_seen[i];
        }
    }
    st->edtl = be32toh(cmd->edtl);
    st->dir = (cmd->flags & ISCSI_CMD_WRITE) ? SCSI_DIR_OUT
              : (cmd->flags & ISCSI_CMD_READ) ? SCSI_DIR_IN : SCSI_DIR_NONE;
    st->out_len = 0;
    st->in_len = 0;
    st->xfer_len = UINT32_MAX;
    st->status = SCSI_GOOD;
    st->sense_len = 0;
    st->reactor = c->reactor;
    st->done = task_scsi_done;
}

/* Returns false when the PDU must wait (no free task). */
static bool
conn_scsi_cmd(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
    const struct iscsi_scsi_cmd *cmd = (const struct iscsi_scsi_cmd *)bhs;
    bool immediate = (cmd->opcode & ISCSI_FLAG_IMMEDIATE) != 0;
    struct iscsi_task *t;

    if (c->tgt == NULL) {   /* discovery session */
        conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
        return true;
    }
    /*
     * Backpressure: parse it again when a task is back. Only while some task
     * is executing (it completes without more input); tasks waiting for
     * Data-Out must not block the stream their data arrives on.
     */
    if (c->free_tasks == NULL ||
        (c->io_inflight > 0 &&
         c->inflight_bytes + be32toh(cmd->edtl) > ISCSI_INFLIGHT_BYTES)) {
        return false;
    }
    if (!iscsi_conn_cmdsn_accept(c, immediate, be32toh(cmd->cmdsn))) {
        return true;
    }
    t = task_get(c);
    t->charge = be32toh(cmd->edtl);
    c->inflight_bytes += t->charge;
    task_setup(c, t, cmd);
    if (t->scsi.dir != SCSI_DIR_OUT || t->scsi.edtl == 0) {
        if (dlen > 0) {
            conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
            task_put(t);
            return true;
        }
        task_exec(t);
        return true;
    }
    if (t->scsi.edtl > ISCSI_MAX_XFER || dlen > t->scsi.edtl ||
        (dlen > 0 && !c->params.immediate_data) || dlen > c->params.first_burst ||
        scsi_task_buf_reserve(&t->scsi, t->scsi.edtl) < 0) {
        /* too large for us, or a protocol error: answer with a check condition */
        t->data_got = 0;
        task_fail_now(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return true;
    }
    memcpy(t->scsi.buf, data, dlen);
    t->data_got = dlen;
    t->unsol_limit = c->params.initial_r2t ? dlen : IOC_MIN(c->params.first_burst, t->scsi.edtl);
    t->unsol_done = (cmd->flags & ISCSI_FLAG_FINAL) != 0;
    t->next_wait = c->wait_data;
    c->wait_data = t;
    t->waiting = true;
    task_data_progress(t);
    return true;
}

/* ---------------------------------------------------------------- Data-Out */

static struct iscsi_task *
conn_find_waiting(struct iscsi_conn *c, uint32_t itt, uint32_t ttt)
{
    if (ttt != ISCSI_RSVD_TAG) {
        uint32_t idx = be32toh(ttt);
        struct iscsi_task *t;

        if (idx >= ISCSI_MAX_TASKS) {
            return NULL;
        }
        t = &c->tasks[idx];
        return t->waiting && t->itt == itt ? t : NULL;
    }
    for (struct iscsi_task *t = c->wait_data; t != NULL; t = t->next_wait) {
        if (t->itt == itt) {
            return t;
        }
    }
    return NULL;
}

static void
conn_data_out(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
    const struct iscsi_data *d = (const struct iscsi_data *)bhs;
    struct iscsi_task *t = conn_find_waiting(c, d->itt, d->ttt);
    uint32_t off = be32toh(d->offset);
    bool solicited = d->ttt != ISCSI_RSVD_TAG;

    if (t == NULL) {
        /* an aborted or dropped task's data: ignore (RFC 7143 11.7.1) */
        IOC_DEBUG(iscsi, "conn %s: Data-Out for unknown task 0x%x", c->peer, be32toh(d->itt));
        return;
    }
    if (be32toh(d->datasn) != t->datasn) {
        /* ERL 0: the command fails, the connection lives; later Data-Out is ignored */
        IOC_DEBUG(iscsi, "conn %s: task 0x%x: DataSN %u, expected %u", c->peer,
                  be32toh(t->itt), be32toh(d->datasn), t->datasn);
        task_fail_now(t, SK_ABORTED_COMMAND, ASC_DATA_PHASE_ERROR);
        return;
    }
    t->datasn++;
    if (off != t->data_got || (uint64_t)off + dlen > t->scsi.edtl ||
        (solicited && (uint64_t)off + dlen > t->r2t_end) ||
        (!solicited && (t->unsol_done || (uint64_t)off + dlen > t->unsol_limit))) {
        conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
        iscsi_conn_fail(c, "Data-Out out of order or out of range");
        return;
    }
    memcpy(t->scsi.buf + off, data, dlen);
    t->data_got += dlen;
    if (!solicited && (d->flags & ISCSI_FLAG_FINAL)) {
        t->unsol_done = true;
    }
    task_data_progress(t);
}

/* ---------------------------------------------------------- other PDUs */

static void
conn_nop_out(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
    const struct iscsi_sn_pdu *p = (const struct iscsi_sn_pdu *)bhs;
    struct iscsi_ctl *ctl;

    if (!iscsi_conn_cmdsn_accept(c, (p->opcode & ISCSI_FLAG_IMMEDIATE) != 0, be32toh(p->sn24))) {
        return;
    }
    if (p->itt == ISCSI_RSVD_TAG) {
        return; /* a ping answer or a CmdSN-only NOP: no reply */
    }
    ctl = iscsi_ctl_alloc(c, data, dlen);
    if (ctl == NULL) {
        return;
    }
    ctl->hdr.sn.opcode = ISCSI_OP_NOP_IN;
    ctl->hdr.sn.flags = ISCSI_FLAG_FINAL;
    memcpy(ctl->hdr.sn.lun, p->lun, 8);
    ctl->hdr.sn.itt = p->itt;
    ctl->hdr.sn.ttt = ISCSI_RSVD_TAG;
    iscsi_conn_sn_fill(c, &ctl->hdr.sn, true);
    iscsi_ctl_queue(c, ctl);
}

/*
 * Logout (RFC 7143 11.14): close the session (every connection), close a
 * connection (this one, or another of the session named by its CID: that
 * one is closed at once, its tasks terminated), or remove a connection for
 * recovery (not at ERL 0). The response leaves on this connection.
 */
static uint8_t
conn_logout_reason(struct iscsi_conn *c, uint8_t reason, uint16_t cid, bool *self)
{
    struct iscsi_conn *other;

    *self = false;
    switch (reason) {
    case ISCSI_LOGOUT_CLOSE_SESSION:
        *self = true;
        iscsi_sess_logout(c->sess, c);
        return ISCSI_LOGOUT_RSP_OK;
    case ISCSI_LOGOUT_CLOSE_CONN:
        if (cid == c->cid) {
            *self = true;
            if (iscsi_sess_live_conns(c->sess) <= 1) {
                c->sess->ending = true; /* the last one: the session ends with it */
            }
            return ISCSI_LOGOUT_RSP_OK;
        }
        other = iscsi_sess_conn_by_cid(c->sess, cid);
        if (other == NULL) {
            return ISCSI_LOGOUT_RSP_NO_CID;
        }
        iscsi_conn_drop(other, "logged out from another connection");
        return ISCSI_LOGOUT_RSP_OK;
    default:
        return ISCSI_LOGOUT_RSP_NO_RECOVERY;
    }
}

static void
conn_logout(struct iscsi_conn *c, const uint8_t *bhs)
{
    const struct iscsi_sn_pdu *p = (const struct iscsi_sn_pdu *)bhs;
    uint8_t reason = p->flags & 0x7f, rsp;
    uint16_t cid = (uint16_t)(be32toh(p->ttt) >> 16);
    struct iscsi_ctl *ctl;
    bool self;

    if (!iscsi_conn_cmdsn_accept(c, (p->opcode & ISCSI_FLAG_IMMEDIATE) != 0, be32toh(p->sn24))) {
        return;
    }
    ctl = iscsi_ctl_alloc(c, NULL, 0);
    if (ctl == NULL) {
        return;
    }
    rsp = conn_logout_reason(c, reason, cid, &self);
    IOC_DEBUG(iscsi, "conn %s: logout reason %u cid %u: response %u", c->peer, reason, cid, rsp);
    ctl->hdr.sn.opcode = ISCSI_OP_LOGOUT_RSP;
    ctl->hdr.sn.flags = ISCSI_FLAG_FINAL;
    ctl->hdr.sn.spec2[0] = rsp;
    ctl->hdr.sn.itt = p->itt;
    iscsi_conn_sn_fill(c, &ctl->hdr.sn, true);
    if (self) {
        iscsi_conn_set_state(c, ISCSI_CONN_LOGOUT);
    }
    iscsi_ctl_queue(c, ctl);
}

/* Mark tasks aborted; those waiting for data are freed, running ones on completion. */
static void
conn_abort_task(struct iscsi_task *t)
{
    t->aborted = true;
    if (t->waiting) {
        task_wait_remove(t);
        task_release(t);
    }
}

static bool
conn_tmf_abort_conn(struct iscsi_conn *c, uint8_t fn, uint32_t ref_itt, uint64_t lun)
{
    bool found = false;

    for (unsigned i = 0; i < ISCSI_MAX_TASKS; i++) {
        struct iscsi_task *t = &c->tasks[i];
        bool live = t->waiting || t->executing;

        if (!live || t->aborted) {
            continue;
        }
        if (fn == ISCSI_TMF_ABORT_TASK && t->itt != ref_itt) {
            continue;
        }
        if ((fn == ISCSI_TMF_ABORT_TASK_SET || fn == ISCSI_TMF_CLEAR_TASK_SET ||
             fn == ISCSI_TMF_LUN_RESET) && lun_decode(t->lun) != lun) {
            continue;
        }
        found = true;
        conn_abort_task(t);
    }
    return found;
}

/* Abort matching tasks on every connection of the session: ITTs and task sets are per session. */
static uint8_t
conn_tmf_abort(struct iscsi_conn *c, uint8_t fn, uint32_t ref_itt, uint64_t lun,
               uint32_t ref_cmdsn)
{
    bool found = false;

    for (unsigned i = 0; i < c->sess->nconns; i++) {
        found |= conn_tmf_abort_conn(c->sess->conns[i], fn, ref_itt, lun);
    }
    if (fn == ISCSI_TMF_ABORT_TASK && !found &&
        (int32_t)(ref_cmdsn - iscsi_conn_exp_cmdsn(c)) < 0) {
        /* received and already answered (RFC 7143 11.5.1) */
        return ISCSI_TMF_RSP_NO_TASK;
    }
    /* found and aborted, or not received yet: it will never run */
    return ISCSI_TMF_RSP_COMPLETE;
}

static void
conn_tmf(struct iscsi_conn *c, const uint8_t *bhs)
{
    const struct iscsi_sn_pdu *p = (const struct iscsi_sn_pdu *)bhs;
    uint8_t fn = p->flags & 0x7f, rsp;
    uint64_t lun = lun_decode(p->lun);
    struct iscsi_ctl *ctl;

    if (!iscsi_conn_cmdsn_accept(c, (p->opcode & ISCSI_FLAG_IMMEDIATE) != 0, be32toh(p->sn24))) {
        return;
    }
    switch (fn) {
    case ISCSI_TMF_ABORT_TASK:
    case ISCSI_TMF_ABORT_TASK_SET:
    case ISCSI_TMF_CLEAR_TASK_SET:
    case ISCSI_TMF_LUN_RESET:
        rsp = c->tgt == NULL || iscsi_tgt_lun(c->tgt, lun) == NULL
                  ? ISCSI_TMF_RSP_NO_LUN
                  : conn_tmf_abort(c, fn, p->ttt, lun, be32toh(p->sn32));
        if (rsp == ISCSI_TMF_RSP_COMPLETE && fn == ISCSI_TMF_LUN_RESET) {
            scsi_lun_reset(iscsi_tgt_lun(c->tgt, lun), ASC_BUS_RESET);
        }
        break;
    case ISCSI_TMF_TARGET_WARM_RESET:
    case ISCSI_TMF_TARGET_COLD_RESET:
        rsp = c->tgt == NULL ? ISCSI_TMF_RSP_REJECTED
                             : conn_tmf_abort(c, ISCSI_TMF_TARGET_WARM_RESET, 0, 0, 0);
        for (unsigned i = 0; c->tgt != NULL && i < c->tgt->nluns; i++) {
            scsi_lun_reset(c->tgt->luns[i], ASC_POWER_ON_RESET);
        }
        break;
    default:
        rsp = ISCSI_TMF_RSP_NOT_SUPPORTED;
        break;
    }
    ctl = iscsi_ctl_alloc(c, NULL, 0);
    if (ctl == NULL) {
        return;
    }
    ctl->hdr.sn.opcode = ISCSI_OP_TMF_RSP;
    ctl->hdr.sn.flags = ISCSI_FLAG_FINAL;
    ctl->hdr.sn.spec2[0] = rsp;
    ctl->hdr.sn.itt = p->itt;
    iscsi_conn_sn_fill(c, &ctl->hdr.sn, true);
    iscsi_ctl_queue(c, ctl);
    if (fn == ISCSI_TMF_TARGET_COLD_RESET && rsp == ISCSI_TMF_RSP_COMPLETE) {
        iscsi_conn_set_state(c, ISCSI_CONN_LOGOUT);
    }
}

/* ----------------------------------------------------------------- input */

/*
 * A request that came early on one connection of a multi-connection session:
 * its CmdSN is inside the window but above ExpCmdSN, so a lower one is still
 * on its way on another connection. It waits (parsing of this connection
 * stops) until ExpCmdSN reaches it. With one connection it could never fill
 * the gap, and is dropped like any CmdSN outside the window.
 */
static bool
conn_cmdsn_early(const struct iscsi_conn *c, const struct iscsi_pdu_info *info,
                 const uint8_t *pdu)
{
    const struct iscsi_sn_pdu *p = (const struct iscsi_sn_pdu *)pdu;
    uint32_t cmdsn, exp;

    if (info->immediate || info->opcode == ISCSI_OP_DATA_OUT || c->sess == NULL ||
        c->sess->nconns < 2) {
        return false;
    }
    cmdsn = be32toh(p->sn24);
    exp = c->sess->exp_cmdsn;
    return (int32_t)(cmdsn - exp) > 0 && (int32_t)(cmdsn - iscsi_sess_max_cmdsn(c->sess)) <= 0;
}

/* Handle one full-feature PDU. Returns false if it must wait (a task, a lower CmdSN). */
static bool
conn_full_pdu(struct iscsi_conn *c, const struct iscsi_pdu_info *info, const uint8_t *pdu)
{
    const uint8_t *data = pdu + info->data_off;

    if (conn_cmdsn_early(c, info, pdu)) {
        return false;
    }
    switch (info->opcode) {
    case ISCSI_OP_SCSI_CMD:
        return conn_scsi_cmd(c, pdu, data, info->data_len);
    case ISCSI_OP_DATA_OUT:
        conn_data_out(c, pdu, data, info->data_len);
        return true;
    case ISCSI_OP_NOP_OUT:
        conn_nop_out(c, pdu, data, info->data_len);
        return true;
    case ISCSI_OP_TEXT_REQ:
        iscsi_text_pdu(c, pdu, data, info->data_len);
        return true;
    case ISCSI_OP_TMF_REQ:
        conn_tmf(c, pdu);
        return true;
    case ISCSI_OP_LOGOUT_REQ:
        conn_logout(c, pdu);
        return true;
    case ISCSI_OP_LOGIN_REQ:
        conn_reject(c, pdu, ISCSI_REJECT_PROTOCOL_ERROR);
        return true;
    default:
        conn_reject(c, pdu, ISCSI_REJECT_CMD_NOT_SUPPORTED);
        return true;
    }
}

/* Handle the PDU at rbuf+roff; returns false to stop parsing for now. */
static bool
conn_pdu(struct iscsi_conn *c, const struct iscsi_pdu_info *info)
{
    const uint8_t *pdu = c->rbuf + c->roff;
    int rc = iscsi_pdu_check_digests(pdu, info, c->hdig, c->ddig);

    if (rc < 0) {
        iscsi_conn_fail(c, rc == -EBADMSG ? "header digest error" : "data digest error");
        return false;
    }
    if (c->state == ISCSI_CONN_LOGIN) {
        if (info->opcode != ISCSI_OP_LOGIN_REQ) {
            iscsi_conn_fail(c, "non-login PDU during login");
            return false;
        }
        return iscsi_login_pdu(c, pdu, pdu + info->data_off, info->data_len);
    }
    return conn_full_pdu(c, info, pdu);
}

/*
 * Keep the unparsed tail at the front so the next recv has room. Never while
 * the transport holds a piece of the buffer for a recv in flight: the bytes
 * would land where the tail was. (Parsing resumes from a deferred call after
 * a stall, for a task or a lower CmdSN, while a recv is posted.)
 */
static void
conn_compact(struct iscsi_conn *c)
{
    if (c->roff > 0 && !c->recv_lent) {
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
        c->rlen -= c->roff;
        c->roff = 0;
    }
}

static void
conn_parse(struct iscsi_conn *c)
{
    while (c->state == ISCSI_CONN_LOGIN || c->state == ISCSI_CONN_FULL) {
        struct iscsi_pdu_info info;
        size_t avail = c->rlen - c->roff;
        uint32_t max = c->state == ISCSI_CONN_LOGIN ? ISCSI_TEXT_MAX : g_iscsi_opts.max_recv_dsl;
        int rc;

        if (avail < ISCSI_BHS_SIZE) {
            break;
        }
        rc = iscsi_pdu_parse(c->rbuf + c->roff, c->hdig, c->ddig,
                             IOC_MIN(max, ISCSI_RDSL_MAX), &info);
        if (rc < 0 || info.total > ISCSI_RBUF_SIZE) {
            iscsi_conn_fail(c, rc == -EMSGSIZE ? "data segment too large" : "bad BHS");
            return;
        }
        if (avail < info.total) {
            break;
        }
        if (!conn_pdu(c, &info)) {
            return;
        }
        c->roff += info.total;
    }
    conn_compact(c);
}

bool
iscsi_conn_recv_buf(struct iscsi_conn *c, void **buf, size_t *len)
{
    if (c->state != ISCSI_CONN_LOGIN && c->state != ISCSI_CONN_FULL) {
        return false;
    }
    c->recv_lent = false;
    conn_compact(c);
    if (c->rlen >= ISCSI_RBUF_SIZE) {
        return false; /* a whole PDU is waiting for a free task */
    }
    *buf = c->rbuf + c->rlen;
    *len = ISCSI_RBUF_SIZE - c->rlen;
    c->recv_lent = true;
    return true;
}

void
iscsi_conn_recv_done(struct iscsi_conn *c, ssize_t n)
{
    c->recv_lent = false;
    conn_kick(c);
    if (n <= 0) {
        iscsi_conn_fail(c, n == 0 ? "peer closed" : "receive error");
        return;
    }
    if (c->state != ISCSI_CONN_LOGIN && c->state != ISCSI_CONN_FULL) {
        return;
    }
    c->rlen += (size_t)n;
    conn_parse(c);
}

/* --------------------------------------------------------------- lifecycle */

static void
conn_deferred(struct ioc_deferred *d)
{
    struct iscsi_conn *c = ioc_container_of(d, struct iscsi_conn, defer);

    if (c->state == ISCSI_CONN_FULL) {
        conn_parse(c);
    }
    if (c->state == ISCSI_CONN_LOGOUT && ioc_target_outq_empty(&c->outq) &&
        c->io_inflight == 0) {
        iscsi_conn_set_state(c, ISCSI_CONN_CLOSING);
    }
    if (c->aborted) {
        ioc_target_outq_drop(&c->outq);
    }
    c->t->process(c->tctx);
}

int
iscsi_conn_create(struct ioc_reactor *r, const struct iscsi_conn_transport *t, void *ctx,
                  const char *peer, const char *portal, struct iscsi_conn **out)
{
    struct iscsi_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return -ENOMEM;
    }
    c->rbuf = malloc(ISCSI_RBUF_SIZE);
    c->tasks = calloc(ISCSI_MAX_TASKS, sizeof(*c->tasks));
    if (c->rbuf == NULL || c->tasks == NULL) {
        free(c->rbuf);
        free(c->tasks);
        free(c);
        return -ENOMEM;
    }
    for (unsigned i = ISCSI_MAX_TASKS; i-- > 0;) {
        c->tasks[i].conn = c;
        c->tasks[i].idx = i;
        c->tasks[i].next_free = c->free_tasks;
        c->free_tasks = &c->tasks[i];
    }
    c->reactor = r;
    c->t = t;
    c->tctx = ctx;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    snprintf(c->portal, sizeof(c->portal), "%s", portal);
    ioc_target_outq_init(&c->outq);
    c->login_first = true;
    iscsi_params_init(&c->params);
    *out = c;
    return 0;
}

void
iscsi_conn_destroy(struct iscsi_conn **cp)
{
    struct iscsi_conn *c = *cp;

    if (c == NULL) {
        return;
    }
    *cp = NULL;
    assert(c->io_inflight == 0);
    ioc_target_outq_drop(&c->outq);
    for (unsigned i = 0; i < ISCSI_MAX_TASKS; i++) {
        scsi_task_buf_free(&c->tasks[i].scsi);
        free(c->tasks[i].hdrs);
        free(c->tasks[i].iov);
    }
    iscsi_sess_detach(c);
    iscsi_tgt_put(&c->tgt);
    iscsi_text_free(&c->login_in);
    iscsi_text_free(&c->login_out);
    free(c->tasks);
    free(c->rbuf);
    /* Last, after everything that may kick us (the output just dropped): the
     * transport destroys us from process(), which conn_deferred() calls right
     * after dropping the output of an aborted connection, whose retired
     * pieces kick us again. Found by bench/iscsi.sh: iscsi-perf cut off
     * mid-run made iocd run this freed conn's deferred call. */
    ioc_reactor_defer_cancel(c->reactor, &c->defer);
    free(c);
}

void
iscsi_conn_abort(struct iscsi_conn *c)
{
    iscsi_conn_fail(c, "aborted");
}

bool
iscsi_conn_finished(const struct iscsi_conn *c)
{
    return c->state == ISCSI_CONN_CLOSING && c->io_inflight == 0 &&
           (c->aborted || ioc_target_outq_empty(&c->outq));
}

const struct iscsi_tgt *
iscsi_conn_tgt(const struct iscsi_conn *c)
{
    return c->tgt;
}

json_t *
iscsi_conn_describe(const struct iscsi_conn *c)
{
    char isid[16];

    snprintf(isid, sizeof(isid), "%02x%02x%02x%02x%02x%02x", c->isid[0], c->isid[1], c->isid[2],
             c->isid[3], c->isid[4], c->isid[5]);
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:I, s:b, s:b, s:I}", "peer", c->peer,
                     "initiator", c->params.initiator_name, "target",
                     c->tgt ? c->tgt->iqn : "", "state", conn_state_name(c->state), "tsih",
                     c->sess != NULL ? c->sess->tsih : c->tsih, "cid", c->cid, "isid", isid,
                     "statsn", (json_int_t)c->statsn, "header_digest", c->params.header_digest,
                     "data_digest", c->params.data_digest, "tasks",
                     (json_int_t)c->ntasks_used);
}

json_t *
iscsi_conn_describe_sess(const struct iscsi_conn *c)
{
    if (c->sess == NULL || c->sess->conns[0] != c) {
        return NULL;
    }
    return iscsi_sess_describe(c->sess);
}

struct ioc_reactor *
iscsi_conn_migrate_to(const struct iscsi_conn *c)
{
    return c->state == ISCSI_CONN_MIGRATE ? c->migrate_to : NULL;
}

void
iscsi_conn_pending_input(const struct iscsi_conn *c, const void **buf, size_t *len)
{
    *buf = c->rbuf + c->roff;
    *len = c->rlen - c->roff;
}

void
iscsi_conn_set_migrated(struct iscsi_conn *c)
{
    c->migrated = true;
}
