/*
 * Unit tests for the iSCSI connection engine (iscsi_conn.c, iscsi_login.c)
 * and the SCSI layer behind it, driven without sockets: the test plays the
 * initiator, writing PDUs into the engine and reading what it queues, on a
 * local reactor with a malloc bdev behind a target.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "bdev/malloc/bdev_malloc.h"
#include "target/iscsi/iscsi_conn_priv.h"

#define DISK_SIZE (4u << 20)
#define BLOCK     512u
#define IQN       "iqn.2024-01.io.ioc.test:unit"
#define IQN_CHAP  "iqn.2024-01.io.ioc.test:chap"
#define INIT      "iqn.2024-01.io.ioc.test:init"

static struct ioc_reactor *g_r;

/* ------------------------------------------------------------- harness */

struct harness {
    struct iscsi_conn *c;
    uint8_t *out;
    size_t out_len;
    size_t out_cap;
    size_t out_pos;
    uint32_t cmdsn;
    uint32_t itt;
    bool hdig;           /* parse target PDUs with a header digest */
};

static void
h_process(void *ctx)
{
    struct harness *h = ctx;
    struct iovec iov[64];
    int n;

    while ((n = iscsi_conn_out_iov(h->c, iov, 64)) > 0) {
        size_t sent = 0;

        for (int i = 0; i < n; i++) {
            if (h->out_len + iov[i].iov_len > h->out_cap) {
                h->out_cap = (h->out_len + iov[i].iov_len) * 2;
                h->out = realloc(h->out, h->out_cap);
                assert_non_null(h->out);
            }
            memcpy(h->out + h->out_len, iov[i].iov_base, iov[i].iov_len);
            h->out_len += iov[i].iov_len;
            sent += iov[i].iov_len;
        }
        iscsi_conn_sent(h->c, (ssize_t)sent);
    }
}

static const struct iscsi_conn_transport g_h_transport = {.process = h_process};

static void
h_poll(void)
{
    for (int i = 0; i < 1000 && ioc_reactor_poll_once(g_r); i++) {
    }
}

static void
h_init(struct harness *h)
{
    memset(h, 0, sizeof(*h));
    assert_int_equal(iscsi_conn_create(g_r, &g_h_transport, h, "test", "127.0.0.1:3260,1",
                                       &h->c), 0);
    h->itt = 1;
}

static void
h_fini(struct harness *h)
{
    if (!iscsi_conn_finished(h->c)) {
        iscsi_conn_abort(h->c);
    }
    h_poll();
    assert_true(iscsi_conn_finished(h->c));
    iscsi_conn_destroy(&h->c);
    free(h->out);
}

static void
h_feed(struct harness *h, const void *data, size_t len)
{
    size_t done = 0;

    while (done < len) {
        void *buf;
        size_t room;

        if (!iscsi_conn_recv_buf(h->c, &buf, &room)) {
            h_poll();
            assert_true(iscsi_conn_recv_buf(h->c, &buf, &room));
        }
        room = IOC_MIN(room, len - done);
        memcpy(buf, (const uint8_t *)data + done, room);
        iscsi_conn_recv_done(h->c, (ssize_t)room);
        done += room;
    }
    h_poll();
}

/* Send a PDU: bhs (48 bytes) and a data segment, padded. */
static void
h_send(struct harness *h, const uint8_t *bhs, const void *data, uint32_t len)
{
    uint8_t pdu[48 + 65536 + 4] = {0};
    uint32_t padded = iscsi_pad4(len);

    assert_true(len <= 65536);
    memcpy(pdu, bhs, 48);
    iscsi_dlen_set(pdu + 5, len);
    if (len > 0) {
        memcpy(pdu + 48, data, len);
    }
    h_feed(h, pdu, 48 + padded);
}

/* Next PDU from the target: copies the BHS; returns the data length, -1 if none. */
static int
h_recv(struct harness *h, uint8_t bhs[48], uint8_t *data, size_t max)
{
    size_t off = h->out_pos, dlen, hlen = 48u + (h->hdig ? 4u : 0u);

    if (h->out_len - off < 48) {
        return -1;
    }
    memcpy(bhs, h->out + off, 48);
    dlen = iscsi_dlen_get(bhs + 5);
    assert_true(h->out_len - off >= hlen + iscsi_pad4((uint32_t)dlen));
    if (data != NULL) {
        memcpy(data, h->out + off + hlen, IOC_MIN(dlen, max));
    }
    h->out_pos += hlen + iscsi_pad4((uint32_t)dlen);
    return (int)dlen;
}

static void
login_bhs(uint8_t *bhs, uint8_t flags, uint32_t itt)
{
    memset(bhs, 0, 48);
    bhs[0] = ISCSI_OP_LOGIN_REQ | ISCSI_FLAG_IMMEDIATE;
    bhs[1] = flags;
    bhs[8] = 0x80;
    bhs[13] = 7;                        /* ISID */
    *(uint32_t *)(bhs + 16) = htobe32(itt);
}

/* One login request/response; returns the status (class << 8 | detail). */
static int
h_login_step(struct harness *h, uint8_t flags, const char *keys, size_t klen, char *resp,
             size_t rmax)
{
    uint8_t bhs[48], rsp[48];
    int n;

    login_bhs(bhs, flags, h->itt++);
    h_send(h, bhs, keys, (uint32_t)klen);
    n = h_recv(h, rsp, (uint8_t *)resp, rmax);
    assert_true(n >= 0);
    assert_int_equal(rsp[0], ISCSI_OP_LOGIN_RSP);
    if (resp != NULL && (size_t)n < rmax) {
        resp[n] = '\0';
    }
    return rsp[36] << 8 | rsp[37];
}

#define KEYS(s) s, sizeof(s) - 1

static void h_login_digests(struct harness *h, const char *target, bool digests);
static void h_scsi(struct harness *h, const uint8_t *cdb, size_t cdblen, uint8_t flags,
                   uint32_t edtl, const void *imm, uint32_t immlen);
static int h_scsi_result(struct harness *h, uint8_t *buf, size_t max, uint8_t *sense);

/* A new I_T nexus: the first TEST UNIT READY reports the power-on UA once. */
static void
h_power_on_ua(struct harness *h)
{
    uint8_t tur[16] = {0}, sense[18];

    h_scsi(h, tur, 6, 0, 0, NULL, 0);
    assert_int_equal(h_scsi_result(h, NULL, 0, sense), SCSI_CHECK_CONDITION);
    assert_int_equal(sense[2], SK_UNIT_ATTENTION);
    assert_int_equal(sense[12], 0x29);
    assert_int_equal(sense[13], 0x00);
    h_scsi(h, tur, 6, 0, 0, NULL, 0);
    assert_int_equal(h_scsi_result(h, NULL, 0, NULL), SCSI_GOOD);
}

static void
h_login(struct harness *h, const char *target)
{
    h_login_digests(h, target, false);
    h_power_on_ua(h);
}

static void
h_login_digests(struct harness *h, const char *target, bool digests)
{
    char keys[512], resp[1024];
    int len = snprintf(keys, sizeof(keys),
                       "InitiatorName=" INIT "%cSessionType=Normal%cTargetName=%s%c"
                       "AuthMethod=None%c", 0, 0, target, 0, 0);

    assert_int_equal(h_login_step(h, 0x80 | 0x01, keys, (size_t)len, resp, sizeof(resp)), 0);
    if (digests) {
        assert_int_equal(h_login_step(h, 0x80 | (1 << 2) | 0x03,
                                      KEYS("HeaderDigest=CRC32C,None\0DataDigest=CRC32C\0"),
                                      resp, sizeof(resp)), 0);
        assert_string_equal(resp, "HeaderDigest=CRC32C");
        return;
    }
    assert_int_equal(h_login_step(h, 0x80 | (1 << 2) | 0x03,
                                  KEYS("HeaderDigest=None\0DataDigest=None\0"
                                       "InitialR2T=Yes\0ImmediateData=Yes\0"
                                       "MaxBurstLength=16384\0FirstBurstLength=4096\0"
                                       "MaxRecvDataSegmentLength=8192\0"),
                                  resp, sizeof(resp)), 0);
}

/* A SCSI command; data is immediate data (write). Returns nothing: read PDUs after. */
static void
h_scsi(struct harness *h, const uint8_t *cdb, size_t cdblen, uint8_t flags, uint32_t edtl,
       const void *imm, uint32_t immlen)
{
    uint8_t bhs[48] = {0};

    bhs[0] = ISCSI_OP_SCSI_CMD;
    bhs[1] = ISCSI_FLAG_FINAL | flags;
    *(uint32_t *)(bhs + 16) = htobe32(h->itt++);
    *(uint32_t *)(bhs + 20) = htobe32(edtl);
    *(uint32_t *)(bhs + 24) = htobe32(h->cmdsn++);
    memcpy(bhs + 32, cdb, cdblen);
    h_send(h, bhs, imm, immlen);
}

/* Collect Data-In into buf; returns the status from the final PDU. */
static int
h_scsi_result(struct harness *h, uint8_t *buf, size_t max, uint8_t *sense)
{
    uint8_t bhs[48], seg[65536];
    int n;

    while ((n = h_recv(h, bhs, seg, sizeof(seg))) >= 0) {
        if (bhs[0] == ISCSI_OP_DATA_IN) {
            uint32_t off = be32toh(*(uint32_t *)(bhs + 40));

            assert_true(off + (uint32_t)n <= max);
            memcpy(buf + off, seg, (size_t)n);
            if (bhs[1] & ISCSI_DATAIN_STATUS) {
                return bhs[3];
            }
            continue;
        }
        assert_int_equal(bhs[0], ISCSI_OP_SCSI_RSP);
        if (n > 2 && sense != NULL) {
            memcpy(sense, seg + 2, 18);
        }
        return bhs[3];
    }
    fail_msg("no response");
    return -1;
}

/* ---------------------------------------------------------------- tests */

static void
test_iscsi_conn_login_inquiry_logout(void **state)
{
    struct harness h;
    uint8_t cdb[16] = {0x12, 0, 0, 0, 96}, buf[96] = {0}, bhs[48] = {0};

    (void)state;
    h_init(&h);
    h_login(&h, IQN);
    h_scsi(&h, cdb, 6, ISCSI_CMD_READ, 96, NULL, 0);
    assert_int_equal(h_scsi_result(&h, buf, sizeof(buf), NULL), SCSI_GOOD);
    assert_memory_equal(buf + 8, "IOC     ", 8);

    bhs[0] = ISCSI_OP_LOGOUT_REQ | ISCSI_FLAG_IMMEDIATE;
    bhs[1] = 0x80;
    *(uint32_t *)(bhs + 16) = htobe32(h.itt++);
    h_send(&h, bhs, NULL, 0);
    assert_int_equal(h_recv(&h, bhs, NULL, 0), 0);
    assert_int_equal(bhs[0], ISCSI_OP_LOGOUT_RSP);
    assert_true(iscsi_conn_finished(h.c));
    h_fini(&h);
}

static void
test_iscsi_conn_login_unknown_target(void **state)
{
    struct harness h;
    int st;

    (void)state;
    h_init(&h);
    st = h_login_step(&h, 0x81, KEYS("InitiatorName=" INIT "\0TargetName=iqn.2024-01.x:none\0"
                                     "AuthMethod=None\0"), NULL, 0);
    assert_int_equal(st, ISCSI_LOGIN_NOT_FOUND);
    h_poll();
    assert_true(iscsi_conn_finished(h.c));
    h_fini(&h);
}

static void
test_iscsi_conn_discovery_send_targets(void **state)
{
    struct harness h;
    uint8_t bhs[48] = {0};
    char resp[1024];
    int n;

    (void)state;
    h_init(&h);
    assert_int_equal(h_login_step(&h, 0x80 | 0x03, KEYS("InitiatorName=" INIT
                                                        "\0SessionType=Discovery\0"
                                                        "AuthMethod=None\0"), resp,
                                  sizeof(resp)), 0);
    bhs[0] = ISCSI_OP_TEXT_REQ | ISCSI_FLAG_IMMEDIATE;
    bhs[1] = 0x80;
    *(uint32_t *)(bhs + 16) = htobe32(h.itt++);
    *(uint32_t *)(bhs + 20) = ISCSI_RSVD_TAG;
    h_send(&h, bhs, KEYS("SendTargets=All\0"));
    n = h_recv(&h, bhs, (uint8_t *)resp, sizeof(resp) - 1);
    assert_true(n > 0);
    resp[n] = '\0';
    assert_int_equal(bhs[0], ISCSI_OP_TEXT_RSP);
    /* both targets are visible to INIT; TargetAddress follows each name */
    assert_non_null(memmem(resp, (size_t)n, "TargetName=" IQN "\0TargetAddress=127.0.0.1:3260,1",
                           sizeof("TargetName=" IQN "\0TargetAddress=127.0.0.1:3260,1") - 1));
    h_fini(&h);
}

static void
test_iscsi_conn_write_r2t_read_back(void **state)
{
    struct harness h;
    uint8_t wcdb[16] = {0x2a, 0, 0, 0, 0, 8, 0, 0, 32}, rcdb[16] = {0x28, 0, 0, 0, 0, 8, 0, 0, 32};
    static uint8_t data[32 * BLOCK], back[32 * BLOCK];
    uint8_t bhs[48], out[48] = {0};
    uint32_t got = 4096, datasn = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7 + 3);
    }
    h_init(&h);
    h_login(&h, IQN);
    /* 16 KiB write: 4 KiB immediate (FirstBurstLength), the rest through R2Ts */
    h_scsi(&h, wcdb, 10, ISCSI_CMD_WRITE, sizeof(data), data, 4096);
    while (got < sizeof(data)) {
        uint32_t off, len;

        assert_int_equal(h_recv(&h, bhs, NULL, 0), 0);
        assert_int_equal(bhs[0], ISCSI_OP_R2T);
        off = be32toh(*(uint32_t *)(bhs + 40));
        len = be32toh(*(uint32_t *)(bhs + 44));
        assert_int_equal(off, got);
        datasn = 0;
        for (uint32_t o = off; o < off + len; o += 8192) {
            uint32_t n = IOC_MIN(8192u, off + len - o);

            memset(out, 0, 48);
            out[0] = ISCSI_OP_DATA_OUT;
            out[1] = o + n == off + len ? 0x80 : 0;
            memcpy(out + 16, bhs + 16, 8);            /* ITT and TTT */
            *(uint32_t *)(out + 36) = htobe32(datasn++);
            *(uint32_t *)(out + 40) = htobe32(o);
            h_send(&h, out, data + o, n);
        }
        got = off + len;
    }
    assert_int_equal(h_scsi_result(&h, back, sizeof(back), NULL), SCSI_GOOD);
    h_scsi(&h, rcdb, 10, ISCSI_CMD_READ, sizeof(back), NULL, 0);
    assert_int_equal(h_scsi_result(&h, back, sizeof(back), NULL), SCSI_GOOD);
    assert_memory_equal(back, data, sizeof(data));
    h_fini(&h);
}

static void
test_iscsi_conn_bad_datasn_fails_command(void **state)
{
    struct harness h;
    uint8_t wcdb[16] = {0x2a, 0, 0, 0, 0, 0, 0, 0, 16}, bhs[48], out[48] = {0}, sense[18];
    static uint8_t data[16 * BLOCK];

    (void)state;
    h_init(&h);
    h_login(&h, IQN);
    h_scsi(&h, wcdb, 10, ISCSI_CMD_WRITE, sizeof(data), NULL, 0);
    assert_int_equal(h_recv(&h, bhs, NULL, 0), 0);
    assert_int_equal(bhs[0], ISCSI_OP_R2T);
    out[0] = ISCSI_OP_DATA_OUT;
    memcpy(out + 16, bhs + 16, 8);
    *(uint32_t *)(out + 36) = htobe32(5);          /* should be 0 */
    h_send(&h, out, data, 4096);
    assert_int_equal(h_scsi_result(&h, NULL, 0, sense), SCSI_CHECK_CONDITION);
    assert_int_equal(sense[2], SK_ABORTED_COMMAND);
    /* the connection lives on: TEST UNIT READY works */
    memset(wcdb, 0, sizeof(wcdb));
    h_scsi(&h, wcdb, 6, 0, 0, NULL, 0);
    assert_int_equal(h_scsi_result(&h, NULL, 0, NULL), SCSI_GOOD);
    h_fini(&h);
}

static void
test_iscsi_conn_sense_and_bad_lun(void **state)
{
    struct harness h;
    uint8_t cdb[16] = {0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 1}, sense[18];
    uint8_t bhs[48] = {0};

    (void)state;
    h_init(&h);
    h_login(&h, IQN);
    h_scsi(&h, cdb, 10, ISCSI_CMD_READ, BLOCK, NULL, 0);
    assert_int_equal(h_scsi_result(&h, NULL, 0, sense), SCSI_CHECK_CONDITION);
    assert_int_equal(sense[2], SK_ILLEGAL_REQUEST);
    assert_int_equal(sense[12], 0x21);
    /* an unknown opcode */
    memset(cdb, 0, sizeof(cdb));
    cdb[0] = 0xc7;
    h_scsi(&h, cdb, 10, 0, 0, NULL, 0);
    assert_int_equal(h_scsi_result(&h, NULL, 0, sense), SCSI_CHECK_CONDITION);
    assert_int_equal(sense[12], 0x20);
    /* NOP-Out is echoed */
    bhs[0] = ISCSI_OP_NOP_OUT | ISCSI_FLAG_IMMEDIATE;
    bhs[1] = 0x80;
    *(uint32_t *)(bhs + 16) = htobe32(77);
    *(uint32_t *)(bhs + 20) = ISCSI_RSVD_TAG;
    h_send(&h, bhs, "ping", 4);
    {
        uint8_t rsp[48];
        char d[8];

        assert_int_equal(h_recv(&h, rsp, (uint8_t *)d, sizeof(d)), 4);
        assert_int_equal(rsp[0], ISCSI_OP_NOP_IN);
        assert_memory_equal(d, "ping", 4);
    }
    h_fini(&h);
}

static void
test_iscsi_conn_bad_bhs_closes(void **state)
{
    struct harness h;
    uint8_t junk[48];

    (void)state;
    memset(junk, 0xff, sizeof(junk));
    h_init(&h);
    h_feed(&h, junk, sizeof(junk));
    assert_true(iscsi_conn_finished(h.c));
    h_fini(&h);
}

static void
put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static uint32_t
get_le32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return le32toh(v);
}

static void
test_iscsi_conn_crc32c_digests(void **state)
{
    struct harness h;
    uint8_t pdu[48 + 4 + 4 + 4] = {0}, *rsp;

    (void)state;
    h_init(&h);
    h_login_digests(&h, IQN, true);
    /* the login responses carried no digests; from now on every PDU does */
    pdu[0] = ISCSI_OP_NOP_OUT | ISCSI_FLAG_IMMEDIATE;
    pdu[1] = 0x80;
    iscsi_dlen_set(pdu + 5, 4);
    *(uint32_t *)(pdu + 16) = htobe32(42);
    *(uint32_t *)(pdu + 20) = ISCSI_RSVD_TAG;
    put_le32(pdu + 48, iscsi_crc32c(0, pdu, 48));
    memcpy(pdu + 52, "ping", 4);
    put_le32(pdu + 56, iscsi_crc32c(0, "ping", 4));
    h_feed(&h, pdu, sizeof(pdu));
    assert_int_equal(h.out_len - h.out_pos, sizeof(pdu));
    rsp = h.out + h.out_pos;
    assert_int_equal(rsp[0], ISCSI_OP_NOP_IN);
    assert_int_equal(get_le32(rsp + 48), iscsi_crc32c(0, rsp, 48));
    assert_memory_equal(rsp + 52, "ping", 4);
    assert_int_equal(get_le32(rsp + 56), iscsi_crc32c(0, "ping", 4));
    h.out_pos = h.out_len;
    /* a wrong data digest closes the connection (ErrorRecoveryLevel 0) */
    pdu[56] ^= 1;
    h_feed(&h, pdu, sizeof(pdu));
    assert_true(iscsi_conn_finished(h.c));
    h_fini(&h);
}

static void
test_iscsi_conn_abort_task_answers(void **state)
{
    struct harness h;
    uint8_t bhs[48] = {0};

    (void)state;
    h_init(&h);
    h_login(&h, IQN);
    /* ABORT TASK of a command already answered (RefCmdSN < ExpCmdSN) */
    h.cmdsn = 1;
    bhs[0] = ISCSI_OP_TMF_REQ | ISCSI_FLAG_IMMEDIATE;
    bhs[1] = 0x80 | ISCSI_TMF_ABORT_TASK;
    *(uint32_t *)(bhs + 16) = htobe32(h.itt++);
    *(uint32_t *)(bhs + 20) = htobe32(1234);
    *(uint32_t *)(bhs + 24) = htobe32(0);
    *(uint32_t *)(bhs + 32) = htobe32((uint32_t)-1);
    h_send(&h, bhs, NULL, 0);
    assert_int_equal(h_recv(&h, bhs, NULL, 0), 0);
    assert_int_equal(bhs[0], ISCSI_OP_TMF_RSP);
    assert_int_equal(bhs[2], ISCSI_TMF_RSP_NO_TASK);
    /* a task not received yet: function complete */
    memset(bhs, 0, sizeof(bhs));
    bhs[0] = ISCSI_OP_TMF_REQ | ISCSI_FLAG_IMMEDIATE;
    bhs[1] = 0x80 | ISCSI_TMF_ABORT_TASK;
    *(uint32_t *)(bhs + 16) = htobe32(h.itt++);
    *(uint32_t *)(bhs + 20) = htobe32(99);
    *(uint32_t *)(bhs + 32) = htobe32(5);
    h_send(&h, bhs, NULL, 0);
    assert_int_equal(h_recv(&h, bhs, NULL, 0), 0);
    assert_int_equal(bhs[2], ISCSI_TMF_RSP_COMPLETE);
    h_fini(&h);
}

static void
test_iscsi_conn_lun_reset_unit_attention(void **state)
{
    struct harness h;
    uint8_t bhs[48] = {0}, tur[16] = {0}, sense[18];

    (void)state;
    h_init(&h);
    h_login(&h, IQN);
    bhs[0] = ISCSI_OP_TMF_REQ | ISCSI_FLAG_IMMEDIATE;
    bhs[1] = 0x80 | ISCSI_TMF_LUN_RESET;
    *(uint32_t *)(bhs + 16) = htobe32(h.itt++);
    *(uint32_t *)(bhs + 20) = ISCSI_RSVD_TAG;
    h_send(&h, bhs, NULL, 0);
    assert_int_equal(h_recv(&h, bhs, NULL, 0), 0);
    assert_int_equal(bhs[2], ISCSI_TMF_RSP_COMPLETE);
    /* the next command reports the reset once; INQUIRY would not have */
    h_scsi(&h, tur, 6, 0, 0, NULL, 0);
    assert_int_equal(h_scsi_result(&h, NULL, 0, sense), SCSI_CHECK_CONDITION);
    assert_int_equal(sense[2], SK_UNIT_ATTENTION);
    assert_int_equal(sense[12], 0x29);
    assert_int_equal(sense[13], 0x03);
    h_scsi(&h, tur, 6, 0, 0, NULL, 0);
    assert_int_equal(h_scsi_result(&h, NULL, 0, NULL), SCSI_GOOD);
    h_fini(&h);
}

/* ------------------------------------------------------------------ CHAP */

static void
chap_sha256(uint8_t id, const char *secret, const uint8_t *chal, size_t clen, char *hex)
{
    uint8_t md[32];
    unsigned len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, &id, 1);
    EVP_DigestUpdate(ctx, secret, strlen(secret));
    EVP_DigestUpdate(ctx, chal, clen);
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    hex += sprintf(hex, "0x");
    for (unsigned i = 0; i < len; i++) {
        hex += sprintf(hex, "%02x", md[i]);
    }
}

static int
chap_login(const char *secret)
{
    struct harness h;
    char resp[1024], keys[512], hex[80];
    uint8_t chal[64];
    unsigned id = 0;
    size_t clen = 0;
    const char *c;
    int st, len;

    h_init(&h);
    st = h_login_step(&h, 0x00, KEYS("InitiatorName=" INIT "\0TargetName=" IQN_CHAP
                                     "\0AuthMethod=CHAP,None\0"), resp, sizeof(resp));
    assert_int_equal(st, 0);
    assert_string_equal(resp, "AuthMethod=CHAP");
    st = h_login_step(&h, 0x00, KEYS("CHAP_A=7,5\0"), resp, sizeof(resp));
    assert_int_equal(st, 0);
    assert_string_equal(resp, "CHAP_A=7");
    c = resp + strlen(resp) + 1;
    assert_int_equal(sscanf(c, "CHAP_I=%u", &id), 1);
    c += strlen(c) + 1;
    assert_int_equal(strncmp(c, "CHAP_C=0x", 9), 0);
    for (c += 9; c[0] != '\0' && c[1] != '\0'; c += 2) {
        unsigned b;

        sscanf(c, "%2x", &b);
        chal[clen++] = (uint8_t)b;
    }
    chap_sha256((uint8_t)id, secret, chal, clen, hex);
    len = snprintf(keys, sizeof(keys), "CHAP_N=alice%cCHAP_R=%s%c", 0, hex, 0);
    st = h_login_step(&h, 0x81, keys, (size_t)len, resp, sizeof(resp));
    h_fini(&h);
    return st;
}

static void
test_iscsi_login_chap_sha256(void **state)
{
    struct harness h;

    (void)state;
    assert_int_equal(chap_login("correct-horse"), 0);
    assert_int_equal(chap_login("wrong-secret!"), ISCSI_LOGIN_AUTH_FAILED);
    /* AuthMethod=None against a CHAP target is refused */
    h_init(&h);
    assert_int_equal(h_login_step(&h, 0x81, KEYS("InitiatorName=" INIT "\0TargetName=" IQN_CHAP
                                                 "\0AuthMethod=None\0"), NULL, 0),
                     ISCSI_LOGIN_AUTH_FAILED);
    h_fini(&h);
    /* skipping the security stage is refused too */
    h_init(&h);
    assert_int_equal(h_login_step(&h, 0x80 | (1 << 2) | 3,
                                  KEYS("InitiatorName=" INIT "\0TargetName=" IQN_CHAP "\0"),
                                  NULL, 0),
                     ISCSI_LOGIN_AUTH_FAILED);
    h_fini(&h);
}


/* ------------------------------------------------- sessions with several connections */

/* Login options of one connection of a (maybe shared) session. */
struct h_login_opts {
    uint16_t tsih;         /* 0: a new session */
    uint16_t cid;
    uint8_t isid;          /* last ISID byte */
    const char *op_keys;   /* operational stage keys, "\0"-separated, NULL: defaults */
    size_t op_len;
};

/* Log in with o; returns the final status; *tsih gets the TSIH answered. */
static int
h_login_opts(struct harness *h, const char *target, const struct h_login_opts *o, uint16_t *tsih,
             char *resp, size_t rmax)
{
    static const char defaults[] = "HeaderDigest=None\0DataDigest=None\0MaxConnections=4\0";
    char keys[512], r0[1024];
    uint8_t bhs[48], rsp[48];
    int len, n, st;

    if (resp != NULL) {
        memset(resp, 0, rmax);
    }
    len = snprintf(keys, sizeof(keys), "InitiatorName=" INIT "%cSessionType=Normal%c"
                   "TargetName=%s%cAuthMethod=None%c", 0, 0, target, 0, 0);
    for (int step = 0; step < 2; step++) {
        const char *k = step == 0 ? keys : o->op_keys ? o->op_keys : defaults;
        size_t klen = step == 0 ? (size_t)len : o->op_keys ? o->op_len : sizeof(defaults) - 1;

        login_bhs(bhs, step == 0 ? 0x81 : 0x80 | (1 << 2) | 0x03, h->itt++);
        bhs[13] = o->isid;
        *(uint16_t *)(bhs + 14) = htobe16(o->tsih);
        *(uint16_t *)(bhs + 20) = htobe16(o->cid);
        *(uint32_t *)(bhs + 24) = htobe32(h->cmdsn);
        h_send(h, bhs, k, (uint32_t)klen);
        n = h_recv(h, rsp, (uint8_t *)(step == 0 ? r0 : resp), step == 0 ? sizeof(r0) : rmax);
        assert_true(n >= 0);
        assert_int_equal(rsp[0], ISCSI_OP_LOGIN_RSP);
        st = rsp[36] << 8 | rsp[37];
        if (step == 1 && resp != NULL && (size_t)n < rmax) {
            resp[n] = '\0';
        }
        if (tsih != NULL) {
            *tsih = be16toh(*(uint16_t *)(rsp + 14));
        }
        if (st != 0) {
            return st;
        }
    }
    return 0;
}

/* Does the "\0"-separated text hold this pair? */
static bool
text_has(const char *text, size_t len, const char *pair)
{
    return memmem(text, len, pair, strlen(pair) + 1) != NULL;
}

static void
test_iscsi_sess_two_connections_share_cmdsn(void **state)
{
    struct harness a, b;
    struct h_login_opts oa = {.cid = 0, .isid = 21}, ob = {.cid = 1, .isid = 21};
    uint8_t wcdb[16] = {0x2a, 0, 0, 0, 0, 64, 0, 0, 8}, rcdb[16] = {0x28, 0, 0, 0, 0, 64, 0, 0, 8};
    static uint8_t data[8 * BLOCK], back[8 * BLOCK];
    uint8_t bhs[48];
    uint16_t tsih = 0, tsih_b = 0;
    char resp[1024];

    (void)state;
    memset(data, 0x5a, sizeof(data));
    h_init(&a);
    h_init(&b);
    assert_int_equal(h_login_opts(&a, IQN, &oa, &tsih, resp, sizeof(resp)), 0);
    assert_true(tsih != 0);
    assert_true(text_has(resp, sizeof(resp), "MaxConnections=4"));
    h_power_on_ua(&a);
    /* the second connection names the session: same TSIH back, no second power-on UA */
    ob.tsih = tsih;
    b.cmdsn = a.cmdsn;
    assert_int_equal(h_login_opts(&b, IQN, &ob, &tsih_b, NULL, 0), 0);
    assert_int_equal(tsih_b, tsih);
    /* a write on A, its read-back on B: one command window for both */
    a.cmdsn = b.cmdsn;
    h_scsi(&a, wcdb, 10, ISCSI_CMD_WRITE, sizeof(data), data, sizeof(data));
    assert_int_equal(h_scsi_result(&a, NULL, 0, NULL), SCSI_GOOD);
    b.cmdsn = a.cmdsn;
    h_scsi(&b, rcdb, 10, ISCSI_CMD_READ, sizeof(back), NULL, 0);
    memset(bhs, 0, sizeof(bhs));
    assert_int_equal(h_scsi_result(&b, back, sizeof(back), NULL), SCSI_GOOD);
    assert_memory_equal(back, data, sizeof(data));
    assert_int_equal(iscsi_sess_live_conns(a.c->sess), 2);
    assert_ptr_equal(a.c->sess, b.c->sess);
    assert_int_equal(a.c->sess->exp_cmdsn, b.cmdsn);
    h_fini(&b);
    /* B went away (peer gone at ERL 0): the session failed, A with it */
    h_poll();
    assert_true(iscsi_conn_finished(a.c));
    h_fini(&a);
}

static void
test_iscsi_sess_cmdsn_waits_for_other_connection(void **state)
{
    struct harness a, b;
    struct h_login_opts oa = {.cid = 0, .isid = 22}, ob = {.cid = 1, .isid = 22};
    uint8_t tur[16] = {0}, bhs[48];
    uint16_t tsih;
    uint32_t first;

    (void)state;
    h_init(&a);
    h_init(&b);
    assert_int_equal(h_login_opts(&a, IQN, &oa, &tsih, NULL, 0), 0);
    h_power_on_ua(&a);
    ob.tsih = tsih;
    b.cmdsn = a.cmdsn;
    assert_int_equal(h_login_opts(&b, IQN, &ob, NULL, NULL, 0), 0);
    /* CmdSN N+1 arrives on B before N on A: B waits, nothing is answered */
    first = a.cmdsn;
    b.cmdsn = first + 1;
    h_scsi(&b, tur, 6, 0, 0, NULL, 0);
    assert_int_equal(h_recv(&b, bhs, NULL, 0), -1);
    assert_int_equal(a.c->sess->exp_cmdsn, first);
    /* N on A: both run, in order */
    h_scsi(&a, tur, 6, 0, 0, NULL, 0);
    h_poll();
    assert_int_equal(h_scsi_result(&a, NULL, 0, NULL), SCSI_GOOD);
    assert_int_equal(h_scsi_result(&b, NULL, 0, NULL), SCSI_GOOD);
    assert_int_equal(a.c->sess->exp_cmdsn, first + 2);
    /* StatSN is per connection: each counts its own responses */
    assert_true(a.c->statsn != b.c->statsn);
    /* a CmdSN below the window is still dropped, not held */
    b.cmdsn = first;
    h_scsi(&b, tur, 6, 0, 0, NULL, 0);
    assert_int_equal(h_recv(&b, bhs, NULL, 0), -1);
    assert_int_equal(a.c->sess->exp_cmdsn, first + 2);
    iscsi_conn_drop(b.c, "test");
    h_fini(&b);
    assert_false(iscsi_conn_finished(a.c));
    h_fini(&a);
}

static void
test_iscsi_sess_join_checks(void **state)
{
    struct harness a, b, c, d;
    struct h_login_opts oa = {.cid = 0, .isid = 23, .op_keys = "MaxConnections=2\0",
                              .op_len = sizeof("MaxConnections=2\0") - 1};
    struct h_login_opts o;
    uint8_t tur[16] = {0};
    uint16_t tsih;
    char resp[1024];

    (void)state;
    h_init(&a);
    assert_int_equal(h_login_opts(&a, IQN, &oa, &tsih, resp, sizeof(resp)), 0);
    assert_string_equal(resp, "MaxConnections=2");
    h_power_on_ua(&a);
    /* an unknown TSIH, or the right one with another ISID: no such session */
    h_init(&b);
    o = (struct h_login_opts){.tsih = (uint16_t)(tsih + 100), .cid = 1, .isid = 23};
    assert_int_equal(h_login_opts(&b, IQN, &o, NULL, NULL, 0), ISCSI_LOGIN_SESSION_NOT_FOUND);
    h_fini(&b);
    h_init(&b);
    o = (struct h_login_opts){.tsih = tsih, .cid = 1, .isid = 99};
    assert_int_equal(h_login_opts(&b, IQN, &o, NULL, NULL, 0), ISCSI_LOGIN_SESSION_NOT_FOUND);
    h_fini(&b);
    /* a second connection: leading-only keys are Irrelevant there */
    h_init(&b);
    o = (struct h_login_opts){.tsih = tsih, .cid = 1, .isid = 23,
                              .op_keys = "MaxBurstLength=4096\0HeaderDigest=None\0",
                              .op_len = sizeof("MaxBurstLength=4096\0HeaderDigest=None\0") - 1};
    b.cmdsn = a.cmdsn;
    assert_int_equal(h_login_opts(&b, IQN, &o, NULL, resp, sizeof(resp)), 0);
    assert_true(text_has(resp, sizeof(resp), "MaxBurstLength=Irrelevant"));
    assert_int_equal(b.c->params.max_burst, a.c->params.max_burst);
    /* a third is one too many (MaxConnections=2) */
    h_init(&c);
    o = (struct h_login_opts){.tsih = tsih, .cid = 2, .isid = 23};
    assert_int_equal(h_login_opts(&c, IQN, &o, NULL, NULL, 0), ISCSI_LOGIN_TOO_MANY_CONNS);
    h_fini(&c);
    /* reusing B's CID reinstates it: B closes, D takes its place */
    h_init(&d);
    o = (struct h_login_opts){.tsih = tsih, .cid = 1, .isid = 23};
    d.cmdsn = a.cmdsn;
    assert_int_equal(h_login_opts(&d, IQN, &o, NULL, NULL, 0), 0);
    h_poll();
    assert_true(iscsi_conn_finished(b.c));
    assert_false(iscsi_conn_finished(a.c));
    h_fini(&b);
    h_scsi(&d, tur, 6, 0, 0, NULL, 0);
    assert_int_equal(h_scsi_result(&d, NULL, 0, NULL), SCSI_GOOD);
    assert_int_equal(iscsi_sess_live_conns(a.c->sess), 2);
    h_fini(&d);
    h_fini(&a);
}

static void
h_logout(struct harness *h, uint8_t reason, uint16_t cid, uint8_t *rsp)
{
    uint8_t bhs[48] = {0};

    bhs[0] = ISCSI_OP_LOGOUT_REQ | ISCSI_FLAG_IMMEDIATE;
    bhs[1] = 0x80 | reason;
    *(uint32_t *)(bhs + 16) = htobe32(h->itt++);
    *(uint16_t *)(bhs + 20) = htobe16(cid);
    *(uint32_t *)(bhs + 24) = htobe32(h->cmdsn);
    h_send(h, bhs, NULL, 0);
    assert_int_equal(h_recv(h, rsp, NULL, 0), 0);
    assert_int_equal(rsp[0], ISCSI_OP_LOGOUT_RSP);
}

static void
test_iscsi_sess_logout_reasons(void **state)
{
    struct harness a, b, c;
    struct h_login_opts o = {.cid = 0, .isid = 24};
    uint8_t rsp[48];
    uint16_t tsih;

    (void)state;
    h_init(&a);
    assert_int_equal(h_login_opts(&a, IQN, &o, &tsih, NULL, 0), 0);
    h_init(&b);
    h_init(&c);
    o.tsih = tsih;
    o.cid = 1;
    assert_int_equal(h_login_opts(&b, IQN, &o, NULL, NULL, 0), 0);
    o.cid = 2;
    assert_int_equal(h_login_opts(&c, IQN, &o, NULL, NULL, 0), 0);
    assert_int_equal(iscsi_sess_live_conns(a.c->sess), 3);
    /* close an unknown CID: "CID not found", nothing closes */
    h_logout(&a, ISCSI_LOGOUT_CLOSE_CONN, 9, rsp);
    assert_int_equal(rsp[2], ISCSI_LOGOUT_RSP_NO_CID);
    /* close B from A: B goes at once, the answer comes on A, the session lives */
    h_logout(&a, ISCSI_LOGOUT_CLOSE_CONN, 1, rsp);
    assert_int_equal(rsp[2], ISCSI_LOGOUT_RSP_OK);
    h_poll();
    assert_true(iscsi_conn_finished(b.c));
    assert_false(iscsi_conn_finished(a.c));
    h_fini(&b);
    assert_int_equal(iscsi_sess_live_conns(a.c->sess), 2);
    /* recovery is not offered at ERL 0 */
    h_logout(&c, ISCSI_LOGOUT_RECOVERY, 0, rsp);
    assert_int_equal(rsp[2], ISCSI_LOGOUT_RSP_NO_RECOVERY);
    /* close the session from C: A and C both end */
    h_logout(&c, ISCSI_LOGOUT_CLOSE_SESSION, 2, rsp);
    assert_int_equal(rsp[2], ISCSI_LOGOUT_RSP_OK);
    h_poll();
    assert_true(iscsi_conn_finished(a.c));
    assert_true(iscsi_conn_finished(c.c));
    /* the TSIH is gone */
    assert_null(iscsi_sess_find(g_r, tsih));
    h_fini(&a);
    h_fini(&c);
}

static void
test_iscsi_sess_failure_and_reinstatement(void **state)
{
    struct harness a, b, c;
    struct h_login_opts o = {.cid = 0, .isid = 25};
    uint8_t junk[48];
    uint16_t tsih, tsih_c;

    (void)state;
    memset(junk, 0xff, sizeof(junk));
    h_init(&a);
    assert_int_equal(h_login_opts(&a, IQN, &o, &tsih, NULL, 0), 0);
    h_init(&b);
    o.tsih = tsih;
    o.cid = 1;
    assert_int_equal(h_login_opts(&b, IQN, &o, NULL, NULL, 0), 0);
    /* a protocol error on B fails the whole session at ERL 0 */
    h_feed(&b, junk, sizeof(junk));
    h_poll();
    assert_true(iscsi_conn_finished(b.c));
    assert_true(iscsi_conn_finished(a.c));
    h_fini(&a);
    h_fini(&b);
    /* a new session with the ISID of a live one reinstates it: the old one closes */
    h_init(&a);
    o = (struct h_login_opts){.cid = 0, .isid = 25};
    assert_int_equal(h_login_opts(&a, IQN, &o, &tsih, NULL, 0), 0);
    h_init(&c);
    assert_int_equal(h_login_opts(&c, IQN, &o, &tsih_c, NULL, 0), 0);
    assert_true(tsih_c != tsih);
    h_poll();
    assert_true(iscsi_conn_finished(a.c));
    assert_false(iscsi_conn_finished(c.c));
    h_fini(&a);
    h_power_on_ua(&c);
    h_fini(&c);
}

/* ----------------------------------------------------------------- setup */

static int
group_setup(void **state)
{
    json_t *p;
    int rc;

    (void)state;
    if (ioc_reactor_create_local(NULL, &g_r) < 0 ||
        ioc_bdev_malloc_create("iscsitest0", DISK_SIZE, BLOCK, NULL) < 0) {
        return -1;
    }
    p = json_pack("{s:s, s:[{s:i, s:s}]}", "iqn", IQN, "luns", "lun", 0, "bdev", "iscsitest0");
    rc = ioc_iscsi_tgt_create(p, NULL);
    json_decref(p);
    p = json_pack("{s:s, s:[{s:i, s:s}], s:{s:s, s:s}}", "iqn", IQN_CHAP, "luns", "lun", 0,
                  "bdev", "iscsitest0", "chap", "user", "alice", "secret", "correct-horse");
    rc = rc < 0 ? rc : ioc_iscsi_tgt_create(p, NULL);
    json_decref(p);
    return rc;
}

static int
group_teardown(void **state)
{
    (void)state;
    ioc_iscsi_tgt_delete_all();
    ioc_bdev_delete("iscsitest0", NULL);
    ioc_reactor_destroy_local(&g_r);
    ioc_bdev_io_cache_drain();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iscsi_conn_login_inquiry_logout),
        cmocka_unit_test(test_iscsi_conn_login_unknown_target),
        cmocka_unit_test(test_iscsi_conn_discovery_send_targets),
        cmocka_unit_test(test_iscsi_conn_write_r2t_read_back),
        cmocka_unit_test(test_iscsi_conn_bad_datasn_fails_command),
        cmocka_unit_test(test_iscsi_conn_sense_and_bad_lun),
        cmocka_unit_test(test_iscsi_conn_bad_bhs_closes),
        cmocka_unit_test(test_iscsi_conn_crc32c_digests),
        cmocka_unit_test(test_iscsi_conn_abort_task_answers),
        cmocka_unit_test(test_iscsi_conn_lun_reset_unit_attention),
        cmocka_unit_test(test_iscsi_login_chap_sha256),
        cmocka_unit_test(test_iscsi_sess_two_connections_share_cmdsn),
        cmocka_unit_test(test_iscsi_sess_cmdsn_waits_for_other_connection),
        cmocka_unit_test(test_iscsi_sess_join_checks),
        cmocka_unit_test(test_iscsi_sess_logout_reasons),
        cmocka_unit_test(test_iscsi_sess_failure_and_reinstatement),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
