/*
 * target/iscsi/iscsi_pdu.c - PDU framing: the BHS parser and CRC32C digests.
 *
 * Pure functions over byte buffers: the connection engine, the unit tests and
 * the fuzzer call them without sockets. iscsi_pdu_parse() looks only at the
 * 48-byte BHS and says how long the whole PDU is (AHS, header digest, padded
 * data segment, data digest) and whether it is acceptable at all; the engine
 * then waits for that many bytes and checks the digests.
 *
 * CRC32C: Debian ships no small C library with a CRC32C (zlib's crc32 is the
 * other polynomial; ISA-L would be a large dependency for one function), so it
 * is here: the SSE4.2 crc32 instruction when the CPU has it (one cycle per 8
 * bytes), else a 256-entry table built on first use. Rejected: a hard-coded
 * table (1 KiB of constants to review) and slicing-by-8 (more code for a path
 * only used when digests are negotiated on old CPUs).
 */
#include "ioc/common.h"

#include <errno.h>
#include <string.h>

#include "target/iscsi/iscsi_internal.h"

/* ------------------------------------------------------------------ CRC32C */

#define CRC32C_POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t g_crc_table[256];
static pthread_once_t g_crc_once = PTHREAD_ONCE_INIT;

static void
crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        }
        g_crc_table[i] = c;
    }
}

static uint32_t
crc_sw(uint32_t crc, const uint8_t *p, size_t len)
{
    pthread_once(&g_crc_once, crc_table_init);
    while (len-- > 0) {
        crc = g_crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = crc;

    while (len >= 8) {
        uint64_t v;

        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        len -= 8;
    }
    crc = (uint32_t)c;
    while (len-- > 0) {
        crc = __builtin_ia32_crc32qi(crc, *p++);
    }
    return crc;
}
#endif

uint32_t
iscsi_crc32c(uint32_t crc, const void *buf, size_t len)
{
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) {
        return ~crc_hw(crc, buf, len);
    }
#endif
    return ~crc_sw(crc, buf, len);
}

/* -------------------------------------------------------------- the BHS */

const char *
iscsi_opcode_name(uint8_t opcode)
{
    switch (opcode & ISCSI_OPCODE_MASK) {
    case ISCSI_OP_NOP_OUT: return "nop_out";
    case ISCSI_OP_SCSI_CMD: return "scsi_cmd";
    case ISCSI_OP_TMF_REQ: return "tmf_req";
    case ISCSI_OP_LOGIN_REQ: return "login_req";
    case ISCSI_OP_TEXT_REQ: return "text_req";
    case ISCSI_OP_DATA_OUT: return "data_out";
    case ISCSI_OP_LOGOUT_REQ: return "logout_req";
    case ISCSI_OP_SNACK: return "snack";
    case ISCSI_OP_NOP_IN: return "nop_in";
    case ISCSI_OP_SCSI_RSP: return "scsi_rsp";
    case ISCSI_OP_TMF_RSP: return "tmf_rsp";
    case ISCSI_OP_LOGIN_RSP: return "login_rsp";
    case ISCSI_OP_TEXT_RSP: return "text_rsp";
    case ISCSI_OP_DATA_IN: return "data_in";
    case ISCSI_OP_LOGOUT_RSP: return "logout_rsp";
    case ISCSI_OP_R2T: return "r2t";
    case ISCSI_OP_ASYNC: return "async";
    case ISCSI_OP_REJECT: return "reject";
    default: return "unknown";
    }
}

int
iscsi_pdu_parse(const uint8_t *buf, bool hdig, bool ddig, uint32_t max_data,
                struct iscsi_pdu_info *info)
{
    const struct iscsi_bhs *bhs = (const struct iscsi_bhs *)buf;
    size_t total;

    memset(info, 0, sizeof(*info));
    if (bhs->opcode & 0x80) {
        return -EPROTO; /* bit 7 of byte 0 is reserved */
    }
    info->opcode = bhs->opcode & ISCSI_OPCODE_MASK;
    info->immediate = (bhs->opcode & ISCSI_FLAG_IMMEDIATE) != 0;
    info->ahs_len = (uint32_t)bhs->total_ahs_len * 4u;
    info->data_len = iscsi_dlen_get(bhs->dlen);
    if (info->data_len > max_data) {
        return -EMSGSIZE;
    }
    total = ISCSI_BHS_SIZE + info->ahs_len + (hdig ? ISCSI_DIGEST_SIZE : 0);
    info->data_off = total;
    if (info->data_len > 0) {
        total += iscsi_pad4(info->data_len) + (ddig ? ISCSI_DIGEST_SIZE : 0);
    }
    info->total = total;
    return 0;
}

static uint32_t
le32_at(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

int
iscsi_pdu_check_digests(const uint8_t *pdu, const struct iscsi_pdu_info *info, bool hdig,
                        bool ddig)
{
    size_t hlen = ISCSI_BHS_SIZE + info->ahs_len;

    if (hdig && iscsi_crc32c(0, pdu, hlen) != le32_at(pdu + hlen)) {
        return -EBADMSG;
    }
    if (ddig && info->data_len > 0) {
        uint32_t padded = iscsi_pad4(info->data_len);

        if (iscsi_crc32c(0, pdu + info->data_off, padded) !=
            le32_at(pdu + info->data_off + padded)) {
            return -EILSEQ;
        }
    }
    return 0;
}
