/*
 * target/iscsi/scsi_sbc.c - SCSI block commands (SBC-3) over a bdev.
 *
 * Every command here decodes its CDB into (lba, nblocks), checks the range
 * against the bdev and issues bdev IO from the task's own buffer: READ reads
 * into t->buf and the transport sends Data-In straight from it; WRITE writes
 * the Data-Out the transport gathered there. Multi-IO commands (UNMAP with
 * several descriptors, WRITE SAME without a zero fast path, COMPARE AND
 * WRITE, VERIFY with BYTCHK) run as a small state machine over t->step, one
 * IO at a time, all completing on the task's reactor.
 *
 * WRITE SAME: with UNMAP (or NDOB) and a zero block it becomes UNMAP when the
 * bdev can (reads return zeroes afterwards, as LBPRZ promises), else
 * WRITE_ZEROES for a zero block, else the block is replicated into a 1 MiB
 * buffer written chunk by chunk. COMPARE AND WRITE holds the LUN's CAW
 * lock (lu->caw_busy with its range) from its read to the end of its write:
 * a second COMPARE AND WRITE, or a WRITE overlapping the range, gets BUSY
 * meanwhile (initiators retry BUSY). Writes already in flight when it starts
 * are not waited for (docs/iscsi.md).
 *
 * Not done: protection information (PROTECT=0), WRITE LONG, XDWRITEREAD,
 * ORWRITE, group numbers.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "target/iscsi/iscsi_internal.h"

#define SBC_WS_CHUNK (1024u * 1024)
#define SBC_WS_MAX   65535u /* blocks: MAXIMUM WRITE SAME LENGTH in VPD B0 */

enum sbc_kind {
    SBC_READ,
    SBC_WRITE,
    SBC_VERIFY,
    SBC_WRITE_VERIFY,
    SBC_SYNC,
    SBC_PREFETCH,
    SBC_WRITE_SAME,
    SBC_CAW,
};

static void sbc_step(struct scsi_task *t);

/* ------------------------------------------------- COMPARE AND WRITE lock */

static bool
caw_acquire(struct iscsi_lun *lu, uint64_t lba, uint32_t n)
{
    bool free_ = false;

    if (!atomic_compare_exchange_strong(&lu->caw_busy, &free_, true)) {
        return false;
    }
    atomic_store(&lu->caw_lba, lba);
    atomic_store(&lu->caw_n, n);
    return true;
}

static void
caw_release(struct iscsi_lun *lu)
{
    atomic_store(&lu->caw_n, 0);
    atomic_store(&lu->caw_busy, false);
}

/* Does a write to [lba, +n) overlap a COMPARE AND WRITE in progress? */
static bool
caw_conflict(struct iscsi_lun *lu, uint64_t lba, uint64_t n)
{
    uint64_t l;
    uint32_t cn;

    if (!atomic_load_explicit(&lu->caw_busy, memory_order_acquire)) {
        return false;
    }
    l = atomic_load(&lu->caw_lba);
    cn = atomic_load(&lu->caw_n);
    return cn != 0 && lba < l + cn && l < lba + n;
}

static void
sbc_fail(struct scsi_task *t, uint8_t key, uint16_t asc)
{
    scsi_task_sense(t, key, asc);
    t->done(t);
}

static uint32_t
sbc_bs(const struct scsi_task *t)
{
    return ioc_bdev_block_size(t->lu->bdev);
}

static uint64_t
sbc_nblocks(const struct scsi_task *t)
{
    return ioc_bdev_size(t->lu->bdev) / sbc_bs(t);
}

static bool
sbc_range_ok(const struct scsi_task *t, uint64_t lba, uint64_t n)
{
    uint64_t cap = sbc_nblocks(t);

    return lba <= cap && n <= cap - lba;
}

/* ------------------------------------------------------------- bdev IO */

static void
sbc_io_sense(struct scsi_task *t, enum ioc_io_type type, int status)
{
    if (status == -ENOSPC) {
        scsi_task_sense(t, SK_DATA_PROTECT, 0x2707); /* space allocation failed */
    } else if (type == IOC_IO_READ) {
        scsi_task_sense(t, SK_MEDIUM_ERROR, ASC_READ_ERROR);
    } else {
        scsi_task_sense(t, SK_MEDIUM_ERROR, ASC_WRITE_ERROR);
    }
}

static void
sbc_io_done(struct ioc_bdev_io *io, void *arg)
{
    struct scsi_task *t = arg;
    int status = io->status;
    enum ioc_io_type type = io->type;

    t->io = NULL;
    if (io->type == IOC_IO_BLOCK_STATUS && status == 0) {
        t->extents[0] = io->extents[0];
    }
    ioc_bdev_io_free(io);
    if (status != 0) {
        sbc_io_sense(t, type, status);
        t->step = t->nsteps;  /* stop the state machine */
        if (t->cdb[0] == 0x89) {
            caw_release(t->lu);
        }
        t->done(t);
        return;
    }
    t->step++;
    sbc_step(t);
}

static void
sbc_submit(struct scsi_task *t, enum ioc_io_type type, uint64_t lba, uint64_t nblocks,
           void *buf, uint32_t flags)
{
    struct ioc_bdev_io *io = ioc_bdev_io_alloc(t->lu->bdev);
    uint64_t off = lba * sbc_bs(t), len = nblocks * sbc_bs(t);
    int rc;

    if (io == NULL) {
        t->status = SCSI_TASK_SET_FULL;
        t->done(t);
        return;
    }
    if (type == IOC_IO_READ || type == IOC_IO_WRITE) {
        t->iov.iov_base = buf;
        t->iov.iov_len = len;
        ioc_bdev_io_prep_rw(io, type, off, len, &t->iov, 1, flags, sbc_io_done, t);
    } else {
        ioc_bdev_io_prep(io, type, off, len, flags, sbc_io_done, t);
        if (type == IOC_IO_BLOCK_STATUS) {
            io->extents = t->extents;
            io->max_extents = 1;
        }
    }
    t->io = io;
    rc = ioc_bdev_io_submit(io);
    if (rc < 0) {
        t->io = NULL;
        ioc_bdev_io_free(io);
        sbc_io_sense(t, type, rc);
        t->done(t);
    }
}

/* ------------------------------------------------------ the state machine */

/*
 * Steps per command:
 *   READ/WRITE/VERIFY(no data)/SYNC: step 0 issues the IO, step 1 finishes.
 *   VERIFY with data / COMPARE AND WRITE: 0 read into aux, 1 compare (then
 *   CAW writes), 2 finish.
 *   UNMAP: one step per descriptor. WRITE SAME: one step per chunk.
 */
static bool
sbc_compare(struct scsi_task *t, const uint8_t *want, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        if (t->aux[i] != want[i]) {
            scsi_task_sense(t, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY);
            t->sense[0] |= 0x80;                 /* INFORMATION valid */
            scsi_put32(t->sense + 3, i);         /* offset of the first miscompare */
            return false;
        }
    }
    return true;
}

static void sbc_unmap_step(struct scsi_task *t);
static void sbc_ws_step(struct scsi_task *t);

static void
sbc_verify_step(struct scsi_task *t)
{
    uint32_t len = t->nblocks * sbc_bs(t);

    if (t->step == 0) {
        sbc_submit(t, IOC_IO_READ, t->lba, t->nblocks, t->aux, 0);
        return;
    }
    if (sbc_compare(t, t->buf, len)) {
        t->status = SCSI_GOOD;
    }
    t->done(t);
}

static void
sbc_caw_step(struct scsi_task *t)
{
    uint32_t len = t->nblocks * sbc_bs(t);

    switch (t->step) {
    case 0:
        sbc_submit(t, IOC_IO_READ, t->lba, t->nblocks, t->aux, 0);
        return;
    case 1:
        if (!sbc_compare(t, t->buf, len)) {
            caw_release(t->lu);
            t->done(t);
            return;
        }
        sbc_submit(t, IOC_IO_WRITE, t->lba, t->nblocks, t->buf + len,
                   (t->cdb[1] & 0x08) ? IOC_IO_FUA : 0);
        return;
    default:
        caw_release(t->lu);
        t->done(t);
        return;
    }
}

static void
sbc_step(struct scsi_task *t)
{
    switch (t->cdb[0]) {
    case 0x42:
        sbc_unmap_step(t);
        return;
    case 0x41:
    case 0x93:
        sbc_ws_step(t);
        return;
    case 0x89:
        sbc_caw_step(t);
        return;
    case 0x2f:
    case 0xaf:
    case 0x8f:
        if (t->aux != NULL && t->nsteps == 2) {
            sbc_verify_step(t);
            return;
        }
        break;
    default:
        break;
    }
    if (t->cdb[0] == 0x9e) {
        /* GET LBA STATUS: the extent is in t->extents (scsi_sbc_get_lba_status) */
        uint8_t *p = t->buf;
        uint64_t blocks = t->extents[0].length / sbc_bs(t);

        memset(p, 0, 24);
        scsi_put32(p, 20);
        scsi_put64(p + 8, t->lba);
        scsi_put32(p + 16, blocks > 0xffffffffu ? 0xffffffffu : (uint32_t)IOC_MAX(blocks, 1));
        p[20] = (t->extents[0].flags & IOC_EXTENT_HOLE) ? 1 : 0;
        t->in_len = IOC_MIN(24u, t->nsteps);
    }
    t->done(t);
}

/* --------------------------------------------------------------- UNMAP */

static void
sbc_unmap_step(struct scsi_task *t)
{
    const uint8_t *d;

    while (t->step < t->nsteps) {
        d = t->buf + 8 + 16 * t->step;
        if (scsi_be32(d + 8) == 0) {
            t->step++;
            continue;
        }
        sbc_submit(t, IOC_IO_UNMAP, scsi_be64(d), scsi_be32(d + 8), NULL, 0);
        return;
    }
    t->done(t);
}

static void
sbc_unmap(struct scsi_task *t)
{
    uint32_t plen = scsi_be16(t->cdb + 7), dlen;

    if (t->cdb[1] & 0x01) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB); /* ANCHOR */
        return;
    }
    if (plen == 0) {
        t->done(t);
        return;
    }
    if (plen < 8 || plen > t->out_len) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
        return;
    }
    dlen = scsi_be16(t->buf + 2);
    if (scsi_be16(t->buf) < 6 || dlen > plen - 8 || dlen % 16 != 0) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
        return;
    }
    if (dlen / 16 > 256) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
        return;
    }
    for (uint32_t i = 0; i < dlen / 16; i++) {
        const uint8_t *d = t->buf + 8 + 16 * i;

        if (!sbc_range_ok(t, scsi_be64(d), scsi_be32(d + 8))) {
            sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
            return;
        }
    }
    if (!ioc_bdev_supports(t->lu->bdev, IOC_IO_UNMAP)) {
        t->done(t); /* UNMAP is advisory */
        return;
    }
    t->step = 0;
    t->nsteps = dlen / 16;
    sbc_unmap_step(t);
}

/* ---------------------------------------------------------- WRITE SAME */

static bool
buf_is_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

static void
sbc_ws_step(struct scsi_task *t)
{
    uint32_t per = (uint32_t)(t->aux_cap / sbc_bs(t));
    uint64_t done = (uint64_t)t->step * per;
    uint64_t n;

    if (t->nsteps == 1 || done >= t->nblocks) { /* one UNMAP/WRITE_ZEROES, or all chunks */
        t->done(t);
        return;
    }
    n = IOC_MIN((uint64_t)per, t->nblocks - done);
    sbc_submit(t, IOC_IO_WRITE, t->lba + done, n, t->aux, 0);
}

static int
sbc_aux_reserve(struct scsi_task *t, size_t len)
{
    size_t align = IOC_MAX((size_t)ioc_bdev_buf_align(t->lu->bdev), (size_t)64);
    void *p;

    if (t->aux_cap >= len) {
        return 0;
    }
    if (posix_memalign(&p, align, (len + align - 1) / align * align) != 0) {
        return -ENOMEM;
    }
    free(t->aux);
    t->aux = p;
    t->aux_cap = len;
    return 0;
}

static void
sbc_write_same(struct scsi_task *t, uint64_t lba, uint32_t n)
{
    uint32_t bs = sbc_bs(t);
    bool unmap = (t->cdb[1] & 0x08) != 0, ndob = t->cdb[0] == 0x93 && (t->cdb[1] & 0x01);
    bool zero;

    if ((t->cdb[1] & 0xf6) || (t->cdb[0] == 0x41 && (t->cdb[1] & 0x01))) {
        /* WRPROTECT, ANCHOR, LBDATA/PBDATA: not supported */
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    if (n == 0 || n > SBC_WS_MAX) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    if (!ndob && t->out_len < bs) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    if (!sbc_range_ok(t, lba, n)) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    t->lba = lba;
    t->nblocks = n;
    zero = ndob || buf_is_zero(t->buf, bs);
    if (zero && unmap && ioc_bdev_supports(t->lu->bdev, IOC_IO_UNMAP)) {
        t->step = t->nsteps = 1;
        sbc_submit(t, IOC_IO_UNMAP, lba, n, NULL, 0);
        return;
    }
    if (zero && ioc_bdev_supports(t->lu->bdev, IOC_IO_WRITE_ZEROES)) {
        t->step = t->nsteps = 1;
        sbc_submit(t, IOC_IO_WRITE_ZEROES, lba, n, NULL, IOC_IO_NO_HOLE);
        return;
    }
    if (sbc_aux_reserve(t, SBC_WS_CHUNK) < 0) {
        sbc_fail(t, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
        return;
    }
    for (size_t off = 0; off + bs <= SBC_WS_CHUNK; off += bs) {
        if (ndob) {
            memset(t->aux + off, 0, bs);
        } else {
            memcpy(t->aux + off, t->buf, bs);
        }
    }
    t->aux_cap = SBC_WS_CHUNK / bs * bs;
    t->step = 0;
    t->nsteps = 0;
    sbc_ws_step(t);
}

/* --------------------------------------------------------- the commands */

static void
sbc_read_capacity(struct scsi_task *t, bool sixteen)
{
    uint64_t last = sbc_nblocks(t) - 1;
    uint8_t p[32] = {0};
    uint32_t alloc = sixteen ? scsi_be32(t->cdb + 10) : 8;

    if (scsi_task_buf_reserve(t, sizeof(p)) < 0) {
        sbc_fail(t, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
        return;
    }
    if (!sixteen) {
        scsi_put32(p, last > 0xffffffffu ? 0xffffffffu : (uint32_t)last);
        scsi_put32(p + 4, sbc_bs(t));
        memcpy(t->buf, p, 8);
        t->in_len = 8;
    } else {
        scsi_put64(p, last);
        scsi_put32(p + 8, sbc_bs(t));
        if (ioc_bdev_supports(t->lu->bdev, IOC_IO_UNMAP)) {
            p[14] = 0x80 | 0x40;                  /* LBPME, LBPRZ */
        }
        memcpy(t->buf, p, sizeof(p));
        t->in_len = IOC_MIN((uint32_t)sizeof(p), alloc);
    }
    t->done(t);
}

static void
sbc_get_lba_status(struct scsi_task *t)
{
    uint64_t lba = scsi_be64(t->cdb + 2);
    uint32_t alloc = scsi_be32(t->cdb + 10);
    uint64_t cap = sbc_nblocks(t);

    if (lba >= cap) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    if (scsi_task_buf_reserve(t, 24) < 0) {
        sbc_fail(t, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
        return;
    }
    t->lba = lba;
    t->nsteps = alloc;   /* reused: the allocation length */
    t->extents[0].length = (cap - lba) * sbc_bs(t);
    t->extents[0].flags = 0;
    if (!ioc_bdev_supports(t->lu->bdev, IOC_IO_BLOCK_STATUS)) {
        t->step = 1;
        sbc_step(t);
        return;
    }
    t->step = 0;
    sbc_submit(t, IOC_IO_BLOCK_STATUS, lba, IOC_MIN(cap - lba, ((uint64_t)1 << 30) / sbc_bs(t)),
               NULL, 0);
}

static void
sbc_caw(struct scsi_task *t)
{
    uint64_t lba = scsi_be64(t->cdb + 2);
    uint32_t n = t->cdb[13], bs = sbc_bs(t);

    if (t->cdb[1] & 0xe0) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB); /* WRPROTECT */
        return;
    }
    if (n == 0) {
        /* 0 blocks with data: a count that did not fit the CDB (above our limit) */
        if (t->out_len > 0) {
            sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
            return;
        }
        t->done(t);
        return;
    }
    t->xfer_len = 2 * n * bs;
    if (!sbc_range_ok(t, lba, n)) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    if (t->out_len < 2 * n * bs) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    if (sbc_aux_reserve(t, (size_t)n * bs) < 0) {
        sbc_fail(t, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
        return;
    }
    if (!caw_acquire(t->lu, lba, n)) {
        t->status = SCSI_BUSY;
        t->done(t);
        return;
    }
    t->lba = lba;
    t->nblocks = n;
    t->step = 0;
    t->nsteps = 3;
    sbc_caw_step(t);
}

/* Decode the LBA and length of a READ/WRITE/VERIFY style CDB. */
static void
sbc_decode(const uint8_t *cdb, uint64_t *lba, uint32_t *n)
{
    switch (cdb[0] >> 5) {
    case 0: /* 6-byte */
        *lba = ((uint32_t)(cdb[1] & 0x1f) << 16) | scsi_be16(cdb + 2);
        *n = cdb[4] == 0 ? 256 : cdb[4];
        break;
    case 1: /* 10-byte */
        *lba = scsi_be32(cdb + 2);
        *n = scsi_be16(cdb + 7);
        break;
    case 4: /* 16-byte */
        *lba = scsi_be64(cdb + 2);
        *n = scsi_be32(cdb + 10);
        break;
    default: /* 5: 12-byte */
        *lba = scsi_be32(cdb + 2);
        *n = scsi_be32(cdb + 6);
        break;
    }
}

static void
sbc_rw(struct scsi_task *t, enum sbc_kind kind)
{
    uint32_t bs = sbc_bs(t), n;
    uint64_t lba, bytes;
    uint32_t flags = 0;

    sbc_decode(t->cdb, &lba, &n);
    if (t->cdb[0] != 0x08 && t->cdb[0] != 0x0a && (t->cdb[1] & 0xe0) &&
        (kind == SBC_READ || kind == SBC_WRITE || kind == SBC_WRITE_VERIFY || kind == SBC_VERIFY)) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB); /* RDPROTECT/WRPROTECT */
        return;
    }
    if (!sbc_range_ok(t, lba, n)) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    bytes = (uint64_t)n * bs;
    if (bytes > ISCSI_MAX_XFER && kind != SBC_SYNC && kind != SBC_PREFETCH &&
        !(kind == SBC_VERIFY && !(t->cdb[1] & 0x02))) {
        sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    t->lba = lba;
    t->nblocks = n;
    t->step = 0;
    t->nsteps = 1;
    if (kind == SBC_WRITE || kind == SBC_WRITE_VERIFY || kind == SBC_VERIFY) {
        t->xfer_len = (kind == SBC_VERIFY && !(t->cdb[1] & 0x02)) ? 0 : (uint32_t)bytes;
    }
    if (n == 0 || kind == SBC_PREFETCH) {
        t->done(t);
        return;
    }
    if (t->cdb[0] != 0x08 && t->cdb[0] != 0x0a && (t->cdb[1] & 0x08)) {
        flags |= IOC_IO_FUA;
    }
    switch (kind) {
    case SBC_READ:
        if (scsi_task_buf_reserve(t, bytes) < 0) {
            sbc_fail(t, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
            return;
        }
        t->in_len = (uint32_t)bytes;
        sbc_submit(t, IOC_IO_READ, lba, n, t->buf, 0);
        return;
    case SBC_WRITE:
    case SBC_WRITE_VERIFY:
        if (caw_conflict(t->lu, lba, n)) {
            t->status = SCSI_BUSY;   /* the initiator retries after the CAW */
            t->done(t);
            return;
        }
        /* EDTL below the CDB's length: write the whole blocks received (overflow) */
        t->xfer_len = (uint32_t)bytes;
        n = (uint32_t)IOC_MIN((uint64_t)n, t->out_len / bs);
        if (n == 0) {
            t->done(t);
            return;
        }
        t->nblocks = n;
        sbc_submit(t, IOC_IO_WRITE, lba, n, t->buf,
                   flags | (kind == SBC_WRITE_VERIFY ? IOC_IO_FUA : 0));
        return;
    case SBC_VERIFY:
        if ((t->cdb[1] & 0x06) == 0) {
            t->done(t);              /* BYTCHK 0: medium verification, nothing to compare */
            return;
        }
        if ((t->cdb[1] & 0x06) != 0x02 || t->out_len < bytes ||
            sbc_aux_reserve(t, bytes) < 0) {
            sbc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
            return;
        }
        t->nsteps = 2;
        sbc_verify_step(t);
        return;
    case SBC_SYNC:
        sbc_submit(t, IOC_IO_FLUSH, 0, 0, NULL, 0);
        return;
    default:
        t->done(t);
        return;
    }
}

bool
scsi_sbc_exec(struct scsi_task *t)
{
    const uint8_t *cdb = t->cdb;

    switch (cdb[0]) {
    case 0x08: case 0x28: case 0xa8: case 0x88:
        sbc_rw(t, SBC_READ);
        return true;
    case 0x0a: case 0x2a: case 0xaa: case 0x8a:
        sbc_rw(t, SBC_WRITE);
        return true;
    case 0x2e: case 0xae: case 0x8e:
        sbc_rw(t, SBC_WRITE_VERIFY);
        return true;
    case 0x2f: case 0xaf: case 0x8f:
        sbc_rw(t, SBC_VERIFY);
        return true;
    case 0x35: case 0x91:
        sbc_rw(t, SBC_SYNC);
        return true;
    case 0x34: case 0x90:
        sbc_rw(t, SBC_PREFETCH);
        return true;
    case 0x42:
        sbc_unmap(t);
        return true;
    case 0x41:
        sbc_write_same(t, scsi_be32(cdb + 2), scsi_be16(cdb + 7));
        return true;
    case 0x93:
        sbc_write_same(t, scsi_be64(cdb + 2), scsi_be32(cdb + 10));
        return true;
    case 0x89:
        sbc_caw(t);
        return true;
    case 0x25:
        sbc_read_capacity(t, false);
        return true;
    case 0x9e:
        if ((cdb[1] & 0x1f) == 0x10) {
            sbc_read_capacity(t, true);
            return true;
        }
        if ((cdb[1] & 0x1f) == 0x12) {
            sbc_get_lba_status(t);
            return true;
        }
        return false;
    default:
        return false;
    }
}
