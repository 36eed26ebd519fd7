/*
 * target/iscsi/scsi_spc.c - SCSI primary commands (SPC-4) and the dispatch
 * of every command to the SPC, SBC or PR handlers.
 *
 * The transport hands over a struct scsi_task (CDB, LUN, data buffer);
 * commands answered from memory (INQUIRY and its VPD pages, REPORT LUNS,
 * MODE SENSE, REPORT SUPPORTED OPERATION CODES, TEST UNIT READY...) build
 * their data in the task buffer and finish inline; commands doing bdev IO
 * live in scsi_sbc.c, persistent reservations in scsi_pr.c.
 *
 * Before a command runs: a missing LUN answers ILLEGAL REQUEST / LOGICAL
 * UNIT NOT SUPPORTED (INQUIRY says "no device"; REPORT LUNS still works);
 * a pending unit attention is reported once (not for INQUIRY, REPORT LUNS,
 * REQUEST SENSE); reservation conflicts are checked (scsi_pr_check).
 *
 * Not done: MODE SELECT changes nothing (every page is reported
 * non-changeable, so a MODE SELECT that changes a value is refused);
 * saved mode pages; the power condition of START STOP UNIT; medium removal
 * (it is a fixed disk: PREVENT ALLOW MEDIUM REMOVAL is accepted).
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "target/iscsi/iscsi_internal.h"

#define SPC_VENDOR  "IOC     "
#define SPC_PRODUCT "iocd            "
#define SPC_REV     "0001"

/* ---------------------------------------------------------------- helpers */

int
scsi_task_buf_reserve(struct scsi_task *t, size_t len)
{
    size_t align = t->lu != NULL ? ioc_bdev_buf_align(t->lu->bdev) : 64;
    void *p;

    if (len <= t->buf_cap) {
        return 0;
    }
    len = IOC_MAX(len, (size_t)4096);
    align = IOC_MAX(align, (size_t)64);
    if (posix_memalign(&p, align, (len + align - 1) / align * align) != 0) {
        return -ENOMEM;
    }
    free(t->buf);
    t->buf = p;
    t->buf_cap = len;
    return 0;
}

void
scsi_task_buf_free(struct scsi_task *t)
{
    free(t->buf);
    t->buf = NULL;
    t->buf_cap = 0;
    free(t->aux);
    t->aux = NULL;
    t->aux_cap = 0;
}

void
scsi_task_sense(struct scsi_task *t, uint8_t key, uint16_t asc_ascq)
{
    memset(t->sense, 0, 18);
    t->sense[0] = 0x70;          /* current error, fixed format */
    t->sense[2] = key;
    t->sense[7] = 10;            /* additional sense length */
    t->sense[12] = (uint8_t)(asc_ascq >> 8);
    t->sense[13] = (uint8_t)asc_ascq;
    t->sense_len = 18;
    t->status = SCSI_CHECK_CONDITION;
    t->in_len = 0;
}

void
scsi_task_finish(struct scsi_task *t)
{
    t->done(t);
}

static void
spc_fail(struct scsi_task *t, uint8_t key, uint16_t asc)
{
    scsi_task_sense(t, key, asc);
    t->done(t);
}

/* Copy produced data (len bytes) into the task buffer, cut at alloc_len. */
static void
spc_data_in(struct scsi_task *t, const void *data, size_t len, uint32_t alloc_len)
{
    size_t n = IOC_MIN(len, (size_t)alloc_len);

    if (scsi_task_buf_reserve(t, n) < 0) {
        spc_fail(t, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
        return;
    }
    if (n > 0) {
        memcpy(t->buf, data, n);
    }
    t->in_len = (uint32_t)n;
    t->status = SCSI_GOOD;
    t->done(t);
}

/* ----------------------------------------------------------- INQUIRY */

/* A stable 64-bit id of a LUN from its target name and number (FNV-1a). */
static uint64_t
spc_lun_id(const struct scsi_task *t)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (const char *p = t->tgt->iqn; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    }
    h = (h ^ t->lun_id) * 0x100000001b3ull;
    return h;
}

static size_t
vpd_device_id(struct scsi_task *t, uint8_t *p)
{
    uint64_t id = spc_lun_id(t);
    size_t n = 4, slen;

    /* NAA IEEE Registered Extended (6h), LU association */
    p[n++] = 0x01;               /* code set binary */
    p[n++] = 0x03;               /* association LU, designator NAA */
    p[n++] = 0;
    p[n++] = 16;
    p[n++] = 0x60 | (uint8_t)((id >> 60) & 0x0f);
    for (int i = 7; i >= 0; i--) {
        p[n++] = (uint8_t)(id >> (i * 8));
    }
    memset(p + n, 0, 7);
    p[n + 6] = (uint8_t)t->lun_id;
    n += 7;
    /* T10 vendor id, LU association */
    p[n++] = 0x02;               /* ASCII */
    p[n++] = 0x01;
    p[n++] = 0;
    p[n++] = 8 + 16;
    memcpy(p + n, SPC_VENDOR, 8);
    snprintf((char *)p + n + 8, 17, "%016llx", (unsigned long long)id);
    n += 24;
    /* SCSI name string of the target device (iSCSI, UTF-8) */
    slen = iscsi_pad4((uint32_t)strlen(t->tgt->iqn) + 1);
    p[n++] = 0x53;               /* protocol iSCSI, UTF-8 */
    p[n++] = 0xa8;               /* PIV, target device, SCSI name string */
    p[n++] = 0;
    p[n++] = (uint8_t)slen;
    memset(p + n, 0, slen);
    memcpy(p + n, t->tgt->iqn, strlen(t->tgt->iqn));
    n += slen;
    /* relative target port 1, target port association */
    p[n++] = 0x51;
    p[n++] = 0x94;
    p[n++] = 0;
    p[n++] = 4;
    p[n++] = 0;
    p[n++] = 0;
    p[n++] = 0;
    p[n++] = 1;
    /* target port group 1 */
    p[n++] = 0x51;
    p[n++] = 0x95;
    p[n++] = 0;
    p[n++] = 4;
    p[n++] = 0;
    p[n++] = 0;
    p[n++] = 0;
    p[n++] = 1;
    return n;
}

static size_t
vpd_block_limits(struct scsi_task *t, uint8_t *p)
{
    uint32_t bs = ioc_bdev_block_size(t->lu->bdev);

    p[3] = 0x3c;
    p[4] = 0x01;                                 /* WSNZ */
    p[5] = 255;                                  /* MAXIMUM COMPARE AND WRITE LENGTH */
    scsi_put16(p + 6, (uint16_t)IOC_MAX(1u, 4096u / bs)); /* optimal granularity */
    scsi_put32(p + 8, ISCSI_MAX_XFER / bs);       /* maximum transfer length */
    scsi_put32(p + 12, (128u * 1024) / bs);       /* optimal transfer length */
    if (ioc_bdev_supports(t->lu->bdev, IOC_IO_UNMAP)) {
        scsi_put32(p + 20, 0xffffffffu);          /* maximum unmap LBA count */
        scsi_put32(p + 24, 256);                  /* maximum unmap descriptors */
        scsi_put32(p + 28, IOC_MAX(1u, 4096u / bs)); /* optimal unmap granularity */
    }
    scsi_put64(p + 36, 65535);                    /* maximum write same length */
    return 64;
}

static size_t
vpd_provisioning(struct scsi_task *t, uint8_t *p)
{
    bool unmap = ioc_bdev_supports(t->lu->bdev, IOC_IO_UNMAP);

    p[3] = 4;
    p[5] = unmap ? (0x80 | 0x40 | 0x20 | 0x04) : 0; /* LBPU LBPWS LBPWS10 LBPRZ */
    p[6] = unmap ? 0x02 : 0x00;                     /* thin provisioned */
    return 8;
}

static void
spc_inquiry_vpd(struct scsi_task *t, uint8_t page, uint32_t alloc)
{
    uint8_t p[512] = {0};
    size_t n;

    p[1] = page;
    switch (page) {
    case 0x00: {
        static const uint8_t pages[] = {0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2};

        memcpy(p + 4, pages, sizeof(pages));
        n = 4 + sizeof(pages);
        break;
    }
    case 0x80:
        n = 4 + (size_t)snprintf((char *)p + 4, 33, "%016llx",
                                 (unsigned long long)spc_lun_id(t));
        break;
    case 0x83:
        n = vpd_device_id(t, p);
        break;
    case 0xb0:
        n = vpd_block_limits(t, p);
        break;
    case 0xb1:
        p[3] = 0x3c;
        scsi_put16(p + 4, 1);    /* non-rotating medium */
        n = 64;
        break;
    case 0xb2:
        n = vpd_provisioning(t, p);
        break;
    default:
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    scsi_put16(p + 2, (uint16_t)(n - 4));
    spc_data_in(t, p, n, alloc);
}

static void
spc_inquiry(struct scsi_task *t)
{
    const uint8_t *cdb = t->cdb;
    uint32_t alloc = scsi_be16(cdb + 3);
    uint8_t p[96] = {0};

    if (cdb[1] & 0x02) {                  /* CMDDT is obsolete */
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    if (t->lu == NULL) {
        p[0] = 0x7f;                      /* no device at this LUN */
    }
    if (cdb[1] & 0x01) {
        if (t->lu == NULL) {
            spc_fail(t, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
            return;
        }
        spc_inquiry_vpd(t, cdb[2], alloc);
        return;
    }
    if (cdb[2] != 0) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    p[2] = 0x06;                          /* SPC-4 */
    p[3] = 0x12;                          /* HISUP, response data format 2 */
    p[4] = sizeof(p) - 5;
    p[5] = 0x08;                          /* 3PC off, TPGS 0, ... PROTECT off */
    p[5] = 0;
    p[7] = 0x02;                          /* CMDQUE */
    memcpy(p + 8, SPC_VENDOR, 8);
    memcpy(p + 16, SPC_PRODUCT, 16);
    memcpy(p + 32, SPC_REV, 4);
    scsi_put16(p + 58, 0x00a0);           /* SAM-5 */
    scsi_put16(p + 60, 0x0960);           /* iSCSI */
    scsi_put16(p + 62, 0x0460);           /* SPC-4 */
    scsi_put16(p + 64, 0x04c0);           /* SBC-3 */
    spc_data_in(t, p, sizeof(p), alloc);
}

/* ---------------------------------------------------------- REPORT LUNS */

static void
spc_report_luns(struct scsi_task *t)
{
    uint32_t alloc = scsi_be32(t->cdb + 6);
    uint8_t p[8 + 8 * ISCSI_MAX_LUNS] = {0};
    size_t n = 8;

    if (t->cdb[2] > 2 && t->cdb[2] != 0x10 && t->cdb[2] != 0x11 && t->cdb[2] != 0x12) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    if (alloc < 16) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    if (t->cdb[2] != 1) {                 /* 1 = well-known LUNs only: none */
        for (unsigned i = 0; i < t->tgt->nluns; i++) {
            uint64_t id = t->tgt->luns[i]->id;

            p[n] = id < 256 ? 0 : (uint8_t)(0x40 | (id >> 8));
            p[n + 1] = (uint8_t)id;
            n += 8;
        }
    }
    scsi_put32(p, (uint32_t)(n - 8));
    spc_data_in(t, p, n, alloc);
}

/* ---------------------------------------------------------- MODE SENSE */

/* Append page `code` (current/default values, or the changeable mask) at p. */
static size_t
mode_page(struct scsi_task *t, uint8_t code, bool changeable, uint8_t *p)
{
    (void)t;
    switch (code) {
    case 0x01:                            /* read-write error recovery */
        memset(p, 0, 12);
        p[0] = 0x01;
        p[1] = 0x0a;
        return 12;
    case 0x08:                            /* caching */
        memset(p, 0, 20);
        p[0] = 0x08;
        p[1] = 0x12;
        p[2] = changeable ? 0 : 0x04;     /* WCE: writes are cached until SYNCHRONIZE CACHE */
        return 20;
    case 0x0a:                            /* control */
        memset(p, 0, 12);
        p[0] = 0x0a;
        p[1] = 0x0a;
        p[3] = changeable ? 0 : 0x10;     /* QUEUE ALGORITHM MODIFIER 1: unrestricted */
        if (!changeable) {
            scsi_put16(p + 8, 0xffff);    /* busy timeout: unlimited */
        }
        return 12;
    case 0x1c:                            /* informational exceptions control */
        memset(p, 0, 12);
        p[0] = 0x1c;
        p[1] = 0x0a;
        return 12;
    default:
        return 0;
    }
}

static void
spc_mode_sense(struct scsi_task *t, bool ten)
{
    const uint8_t *cdb = t->cdb;
    uint8_t pc = cdb[2] >> 6, page = cdb[2] & 0x3f, sub = cdb[3];
    bool dbd = (cdb[1] & 0x08) != 0, llbaa = ten && (cdb[1] & 0x10);
    uint32_t alloc = ten ? scsi_be16(cdb + 7) : cdb[4];
    uint8_t p[512] = {0};
    size_t hdr = ten ? 8 : 4, n = hdr, bdl = dbd ? 0 : (llbaa ? 16 : 8);
    uint64_t nblocks = ioc_bdev_size(t->lu->bdev) / ioc_bdev_block_size(t->lu->bdev);
    static const uint8_t all[] = {0x01, 0x08, 0x0a, 0x1c};

    if (pc == 3) {
        spc_fail(t, SK_ILLEGAL_REQUEST, 0x3900); /* saving parameters not supported */
        return;
    }
    if (sub != 0 && !(sub == 0xff && page == 0x3f)) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    if (bdl == 8) {
        scsi_put32(p + n, nblocks > 0xffffffffu ? 0xffffffffu : (uint32_t)nblocks);
        scsi_put32(p + n + 4, ioc_bdev_block_size(t->lu->bdev));
    } else if (bdl == 16) {
        scsi_put64(p + n, nblocks);
        scsi_put32(p + n + 12, ioc_bdev_block_size(t->lu->bdev));
    }
    n += bdl;
    if (page == 0x3f) {
        for (size_t i = 0; i < sizeof(all); i++) {
            n += mode_page(t, all[i], pc == 1, p + n);
        }
    } else {
        size_t len = mode_page(t, page, pc == 1, p + n);

        if (len == 0) {
            spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
            return;
        }
        n += len;
    }
    if (ten) {
        scsi_put16(p, (uint16_t)(n - 2));
        p[3] = 0x10;                      /* DPOFUA */
        p[4] = llbaa ? 1 : 0;
        scsi_put16(p + 6, (uint16_t)bdl);
    } else {
        p[0] = (uint8_t)(n - 1);
        p[2] = 0x10;
        p[3] = (uint8_t)bdl;
    }
    spc_data_in(t, p, n, alloc);
}

/* MODE SELECT: accept parameter lists that change nothing we report. */
static void
spc_mode_select(struct scsi_task *t, bool ten)
{
    uint32_t len = ten ? scsi_be16(t->cdb + 7) : t->cdb[4];
    uint32_t hdr = ten ? 8 : 4;

    if ((t->cdb[1] & 0x10) == 0 && len > 0) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB); /* PF must be set */
        return;
    }
    if (t->cdb[1] & 0x01) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB); /* SP: no saved pages */
        return;
    }
    if (len > t->out_len || (len > 0 && len < hdr)) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
        return;
    }
    scsi_task_finish(t);
}

/* ------------------------------------------- REPORT SUPPORTED OPCODES */

struct spc_opcode {
    uint8_t op;
    uint16_t sa;
    bool has_sa;
    uint8_t len;
    uint8_t usage[16];
};

static const struct spc_opcode g_opcodes[] = {
    {0x00, 0, false, 6, {0x00, 0, 0, 0, 0, 0x07}},
    {0x03, 0, false, 6, {0x03, 0x01, 0, 0, 0xff, 0x07}},
    {0x08, 0, false, 6, {0x08, 0x1f, 0xff, 0xff, 0xff, 0x07}},
    {0x0a, 0, false, 6, {0x0a, 0x1f, 0xff, 0xff, 0xff, 0x07}},
    {0x12, 0, false, 6, {0x12, 0x01, 0xff, 0xff, 0xff, 0x07}},
    {0x15, 0, false, 6, {0x15, 0x11, 0, 0, 0xff, 0x07}},
    {0x1a, 0, false, 6, {0x1a, 0x08, 0xff, 0xff, 0xff, 0x07}},
    {0x1b, 0, false, 6, {0x1b, 0x01, 0, 0x0f, 0xf7, 0x07}},
    {0x16, 0, false, 6, {0x16, 0, 0, 0, 0, 0x07}},
    {0x17, 0, false, 6, {0x17, 0, 0, 0, 0, 0x07}},
    {0x1e, 0, false, 6, {0x1e, 0, 0, 0, 0x03, 0x07}},
    {0x25, 0, false, 10, {0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0x07}},
    {0x28, 0, false, 10, {0x28, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x07}},
    {0x2a, 0, false, 10, {0x2a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x07}},
    {0x2e, 0, false, 10, {0x2e, 0xf2, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x07}},
    {0x2f, 0, false, 10, {0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x07}},
    {0x34, 0, false, 10, {0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x07}},
    {0x35, 0, false, 10, {0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x07}},
    {0x41, 0, false, 10, {0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x07}},
    {0x42, 0, false, 10, {0x42, 0, 0, 0, 0, 0, 0x3f, 0xff, 0xff, 0x07}},
    {0x55, 0, false, 10, {0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07}},
    {0x5a, 0, false, 10, {0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x07}},
    {0x5e, 0x00, true, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07}},
    {0x5e, 0x01, true, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07}},
    {0x5e, 0x02, true, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07}},
    {0x5e, 0x03, true, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07}},
    {0x5f, 0x00, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07}},
    {0x5f, 0x01, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07}},
    {0x5f, 0x02, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07}},
    {0x5f, 0x03, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07}},
    {0x5f, 0x04, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07}},
    {0x5f, 0x05, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07}},
    {0x5f, 0x06, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07}},
    {0x5f, 0x07, true, 10, {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07}},
    {0x88, 0, false, 16, {0x88, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0xff, 0xff, 0x3f, 0x07}},
    {0x89, 0, false, 16, {0x89, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0,
                          0xff, 0x3f, 0x07}},
    {0x8a, 0, false, 16, {0x8a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0xff, 0xff, 0x3f, 0x07}},
    {0x8e, 0, false, 16, {0x8e, 0xf2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0xff, 0xff, 0x3f, 0x07}},
    {0x8f, 0, false, 16, {0x8f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0xff, 0xff, 0x3f, 0x07}},
    {0x90, 0, false, 16, {0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0xff, 0xff, 0x3f, 0x07}},
    {0x91, 0, false, 16, {0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0xff, 0xff, 0x3f, 0x07}},
    {0x93, 0, false, 16, {0x93, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0xff, 0xff, 0x3f, 0x07}},
    {0x9e, 0x10, true, 16, {0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0xff, 0xff, 0xff, 0, 0x07}},
    {0x9e, 0x12, true, 16, {0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0xff, 0xff, 0xff, 0, 0x07}},
    {0xa0, 0, false, 12, {0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07}},
    {0xa3, 0x0c, true, 12, {0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x07}},
    {0xa8, 0, false, 12, {0xa8, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x07}},
    {0xaa, 0, false, 12, {0xaa, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x07}},
    {0xae, 0, false, 12, {0xae, 0xf2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x07}},
    {0xaf, 0, false, 12, {0xaf, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x07}},
};

static size_t
rsoc_timeouts(uint8_t *p)
{
    memset(p, 0, 12);
    scsi_put16(p, 0x0a);
    scsi_put32(p + 4, 0);    /* nominal timeout: not specified */
    scsi_put32(p + 8, 60);   /* recommended timeout: 60 s */
    return 12;
}

static void
spc_rsoc_all(struct scsi_task *t, bool rctd, uint32_t alloc)
{
    uint8_t p[4 + IOC_ARRAY_SIZE(g_opcodes) * 20];
    size_t n = 4;

    memset(p, 0, sizeof(p));
    for (size_t i = 0; i < IOC_ARRAY_SIZE(g_opcodes); i++) {
        const struct spc_opcode *o = &g_opcodes[i];

        p[n] = o->op;
        scsi_put16(p + n + 2, o->sa);
        p[n + 5] = (o->has_sa ? 0x01 : 0) | (rctd ? 0x02 : 0);
        scsi_put16(p + n + 6, o->len);
        n += 8;
        if (rctd) {
            n += rsoc_timeouts(p + n);
        }
    }
    scsi_put32(p, (uint32_t)(n - 4));
    spc_data_in(t, p, n, alloc);
}

static void
spc_rsoc(struct scsi_task *t)
{
    const uint8_t *cdb = t->cdb;
    uint8_t opt = cdb[2] & 0x07, op = cdb[3], p[64] = {0};
    bool rctd = (cdb[2] & 0x80) != 0;
    uint16_t sa = scsi_be16(cdb + 4);
    uint32_t alloc = scsi_be32(cdb + 6);
    const struct spc_opcode *found = NULL;
    bool op_has_sa = false;
    size_t n;

    if (opt == 0) {
        spc_rsoc_all(t, rctd, alloc);
        return;
    }
    if (opt > 3) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    for (size_t i = 0; i < IOC_ARRAY_SIZE(g_opcodes); i++) {
        const struct spc_opcode *o = &g_opcodes[i];

        if (o->op != op) {
            continue;
        }
        op_has_sa = o->has_sa;
        if ((opt == 1 && !o->has_sa) || ((opt == 2 || opt == 3) && o->has_sa && o->sa == sa) ||
            (opt == 3 && !o->has_sa && sa == 0)) {
            found = o;
        }
    }
    if (opt == 1 && op_has_sa) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    if (opt == 2 && !op_has_sa && found == NULL) {
        bool known = false;

        for (size_t i = 0; i < IOC_ARRAY_SIZE(g_opcodes); i++) {
            known = known || g_opcodes[i].op == op;
        }
        if (known) {
            spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
            return;
        }
    }
    if (found == NULL) {
        p[1] = 0x01;                         /* not supported */
        n = 4;
    } else {
        p[1] = (rctd ? 0x80 : 0) | 0x03;     /* supported as in the standard */
        scsi_put16(p + 2, found->len);
        memcpy(p + 4, found->usage, found->len);
        n = 4 + found->len;
        if (rctd) {
            n += rsoc_timeouts(p + n);
        }
    }
    spc_data_in(t, p, n, alloc);
}

/* ---------------------------------------------------------------- others */

static void
spc_request_sense(struct scsi_task *t)
{
    uint8_t p[18] = {0x70, 0, SK_NO_SENSE, 0, 0, 0, 0, 10};

    if (t->cdb[1] & 0x01) {                 /* descriptor format: not supported */
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    spc_data_in(t, p, sizeof(p), t->cdb[4]);
}

static void
spc_start_stop(struct scsi_task *t)
{
    uint8_t pc = t->cdb[4] >> 4;

    if (pc != 0 && pc != 0x7 && pc != 0xa && pc != 0xb) {
        spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        return;
    }
    scsi_task_finish(t);
}

/* Commands with no LUN behind them, or answered from memory. */
void
scsi_spc_exec(struct scsi_task *t)
{
    const uint8_t *cdb = t->cdb;

    switch (cdb[0]) {
    case 0x00:                              /* TEST UNIT READY */
        scsi_task_finish(t);
        return;
    case 0x03:
        spc_request_sense(t);
        return;
    case 0x12:
        spc_inquiry(t);
        return;
    case 0x15:
        spc_mode_select(t, false);
        return;
    case 0x55:
        spc_mode_select(t, true);
        return;
    case 0x1a:
        spc_mode_sense(t, false);
        return;
    case 0x5a:
        spc_mode_sense(t, true);
        return;
    case 0x1b:
        spc_start_stop(t);
        return;
    case 0x1e:                              /* PREVENT ALLOW MEDIUM REMOVAL */
        if ((cdb[4] & 0x03) > 1) {
            spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
            return;
        }
        scsi_task_finish(t);
        return;
    case 0xa0:
        spc_report_luns(t);
        return;
    case 0xa3:
        if ((cdb[1] & 0x1f) == 0x0c) {
            spc_rsoc(t);
            return;
        }
        break;
    default:
        break;
    }
    spc_fail(t, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
}

/* ------------------------------------------------------------- dispatch */

static bool
spc_report_ua(struct scsi_task *t)
{
    struct iscsi_lun *lu = t->lu;
    unsigned gen = atomic_load(&lu->ua_gen);
    bool found = false;

    if (t->ua_seen == NULL || *t->ua_seen == gen) {
        return false;
    }
    pthread_mutex_lock(&lu->lock);
    for (unsigned i = 0; i < lu->nua; i++) {
        if (strcmp(lu->ua[i].port, t->port) != 0 && lu->ua[i].port[0] != '\0') {
            continue;
        }
        if (!found) {
            scsi_task_sense(t, SK_UNIT_ATTENTION, (uint16_t)(lu->ua[i].asc << 8 | lu->ua[i].ascq));
            lu->ua[i] = lu->ua[--lu->nua];
            found = true;
            i--;
            continue;
        }
        pthread_mutex_unlock(&lu->lock);
        return true; /* more pending: keep ua_seen stale */
    }
    pthread_mutex_unlock(&lu->lock);
    *t->ua_seen = gen;
    return found;
}

void
scsi_ua_queue_port_locked(struct iscsi_lun *lu, const char *port, uint16_t asc_ascq)
{
    for (unsigned i = 0; i < lu->nua; i++) {
        if (lu->ua[i].asc == (uint8_t)(asc_ascq >> 8) && lu->ua[i].ascq == (uint8_t)asc_ascq &&
            strcmp(lu->ua[i].port, port) == 0) {
            return; /* the same condition is pending: report it once */
        }
    }
    if (lu->nua == SCSI_UA_MAX) {
        return;
    }
    snprintf(lu->ua[lu->nua].port, sizeof(lu->ua[0].port), "%s", port);
    lu->ua[lu->nua].asc = (uint8_t)(asc_ascq >> 8);
    lu->ua[lu->nua].ascq = (uint8_t)asc_ascq;
    lu->nua++;
    atomic_fetch_add(&lu->ua_gen, 1);
}

void
scsi_port_name(char *out, size_t len, const char *initiator, const uint8_t isid[6])
{
    snprintf(out, len, "%s,i,0x%02x%02x%02x%02x%02x%02x", initiator, isid[0], isid[1], isid[2],
             isid[3], isid[4], isid[5]);
}

void
scsi_task_exec(struct scsi_task *t)
{
    uint8_t op = t->cdb[0];

    t->status = SCSI_GOOD;
    t->sense_len = 0;
    t->in_len = 0;
    t->xfer_len = UINT32_MAX;
    if (t->lu == NULL) {
        if (op == 0x12 || op == 0xa0 || op == 0x03) {
            scsi_spc_exec(t);
        } else {
            spc_fail(t, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
        }
        return;
    }
    if (op != 0x12 && op != 0xa0 && op != 0x03 && spc_report_ua(t)) {
        t->done(t);
        return;
    }
    if (!scsi_pr_check(t)) {
        t->status = SCSI_RESERVATION_CONFLICT;
        t->done(t);
        return;
    }
    if (scsi_pr_exec(t) || scsi_sbc_exec(t)) {
        return;
    }
    scsi_spc_exec(t);
}
