/*
 * target/iscsi/iscsi_proto.h - iSCSI wire format (RFC 7143).
 *
 * Every PDU starts with a 48-byte Basic Header Segment (BHS). The structs
 * below are byte images of the BHS of each opcode we read or write: packed,
 * multi-byte fields big-endian on the wire (convert with be32toh/htobe32),
 * and each size checked with a _Static_assert. The 24-bit DataSegmentLength
 * is kept as three bytes (iscsi_dlen_get/set).
 */
#ifndef IOC_TARGET_ISCSI_ISCSI_PROTO_H
#define IOC_TARGET_ISCSI_ISCSI_PROTO_H

#include "ioc/common.h"

#include <endian.h>
#include <stdint.h>

#define ISCSI_BHS_SIZE    48u
#define ISCSI_DIGEST_SIZE 4u
#define ISCSI_RSVD_TAG    0xffffffffu

/* Initiator opcodes. */
#define ISCSI_OP_NOP_OUT   0x00
#define ISCSI_OP_SCSI_CMD  0x01
#define ISCSI_OP_TMF_REQ   0x02
#define ISCSI_OP_LOGIN_REQ 0x03
#define ISCSI_OP_TEXT_REQ  0x04
#define ISCSI_OP_DATA_OUT  0x05
#define ISCSI_OP_LOGOUT_REQ 0x06
#define ISCSI_OP_SNACK     0x10
/* Target opcodes. */
#define ISCSI_OP_NOP_IN    0x20
#define ISCSI_OP_SCSI_RSP  0x21
#define ISCSI_OP_TMF_RSP   0x22
#define ISCSI_OP_LOGIN_RSP 0x23
#define ISCSI_OP_TEXT_RSP  0x24
#define ISCSI_OP_DATA_IN   0x25
#define ISCSI_OP_LOGOUT_RSP 0x26
#define ISCSI_OP_R2T       0x31
#define ISCSI_OP_ASYNC     0x32
#define ISCSI_OP_REJECT    0x3f

#define ISCSI_OPCODE_MASK  0x3f
#define ISCSI_FLAG_IMMEDIATE 0x40 /* byte 0 */
#define ISCSI_FLAG_FINAL   0x80   /* byte 1 */

/* SCSI command flags (byte 1). */
#define ISCSI_CMD_READ     0x40
#define ISCSI_CMD_WRITE    0x20
#define ISCSI_CMD_ATTR     0x07

/* SCSI response / Data-In flags (byte 1). */
#define ISCSI_RSP_OVERFLOW  0x04
#define ISCSI_RSP_UNDERFLOW 0x02
#define ISCSI_DATAIN_ACK    0x40
#define ISCSI_DATAIN_STATUS 0x01

/* Login flags (byte 1). */
#define ISCSI_LOGIN_TRANSIT  0x80
#define ISCSI_LOGIN_CONTINUE 0x40
#define ISCSI_LOGIN_CSG(f)   (((f) >> 2) & 3)
#define ISCSI_LOGIN_NSG(f)   ((f) & 3)
#define ISCSI_STAGE_SECURITY    0
#define ISCSI_STAGE_OPERATIONAL 1
#define ISCSI_STAGE_FULL        3

/* Login status class/detail. */
#define ISCSI_LOGIN_OK                 0x0000
#define ISCSI_LOGIN_INITIATOR_ERROR    0x0200
#define ISCSI_LOGIN_AUTH_FAILED        0x0201
#define ISCSI_LOGIN_NOT_AUTHORIZED     0x0202
#define ISCSI_LOGIN_NOT_FOUND          0x0203
#define ISCSI_LOGIN_UNSUPPORTED_VERSION 0x0205
#define ISCSI_LOGIN_TOO_MANY_CONNS     0x0206
#define ISCSI_LOGIN_MISSING_PARAM      0x0207
#define ISCSI_LOGIN_SESSION_NOT_FOUND  0x020a
#define ISCSI_LOGIN_INVALID_REQUEST    0x020b
#define ISCSI_LOGIN_TARGET_ERROR       0x0300
#define ISCSI_LOGIN_OUT_OF_RESOURCES   0x0302

/* Reject reasons. */
#define ISCSI_REJECT_DIGEST_ERROR   0x02
#define ISCSI_REJECT_SNACK_REJECT   0x03
#define ISCSI_REJECT_PROTOCOL_ERROR 0x04
#define ISCSI_REJECT_CMD_NOT_SUPPORTED 0x05
#define ISCSI_REJECT_IMM_CMD_REJECT 0x06
#define ISCSI_REJECT_TASK_IN_PROGRESS 0x07
#define ISCSI_REJECT_INVALID_DATA_ACK 0x08
#define ISCSI_REJECT_INVALID_PDU_FIELD 0x09
#define ISCSI_REJECT_OUT_OF_RESOURCES 0x0a
#define ISCSI_REJECT_WAITING_FOR_LOGOUT 0x0c

/* Task management functions and responses. */
#define ISCSI_TMF_ABORT_TASK        1
#define ISCSI_TMF_ABORT_TASK_SET    2
#define ISCSI_TMF_CLEAR_ACA         3
#define ISCSI_TMF_CLEAR_TASK_SET    4
#define ISCSI_TMF_LUN_RESET         5
#define ISCSI_TMF_TARGET_WARM_RESET 6
#define ISCSI_TMF_TARGET_COLD_RESET 7
#define ISCSI_TMF_TASK_REASSIGN     8
#define ISCSI_TMF_RSP_COMPLETE      0
#define ISCSI_TMF_RSP_NO_TASK       1
#define ISCSI_TMF_RSP_NO_LUN        2
#define ISCSI_TMF_RSP_NOT_SUPPORTED 5
#define ISCSI_TMF_RSP_REJECTED      255

/* Logout reasons and responses. */
#define ISCSI_LOGOUT_CLOSE_SESSION 0
#define ISCSI_LOGOUT_CLOSE_CONN    1
#define ISCSI_LOGOUT_RECOVERY      2
#define ISCSI_LOGOUT_RSP_OK        0
#define ISCSI_LOGOUT_RSP_NO_CID    1
#define ISCSI_LOGOUT_RSP_NO_RECOVERY 2

/* The generic BHS: fields common to every opcode. */
struct iscsi_bhs {
    uint8_t opcode;      /* I bit and opcode */
    uint8_t flags;
    uint8_t spec2[2];
    uint8_t total_ahs_len; /* in 4-byte words */
    uint8_t dlen[3];
    uint8_t lun[8];
    uint32_t itt;
    uint32_t spec20[7];
} __attribute__((packed));
_Static_assert(sizeof(struct iscsi_bhs) == ISCSI_BHS_SIZE, "bhs");

struct iscsi_scsi_cmd {
    uint8_t opcode;
    uint8_t flags;
    uint8_t rsvd2[2];
    uint8_t total_ahs_len;
    uint8_t dlen[3];
    uint8_t lun[8];
    uint32_t itt;
    uint32_t edtl;       /* expected data transfer length */
    uint32_t cmdsn;
    uint32_t exp_statsn;
    uint8_t cdb[16];
} __attribute__((packed));
_Static_assert(sizeof(struct iscsi_scsi_cmd) == ISCSI_BHS_SIZE, "scsi cmd");

struct iscsi_scsi_rsp {
    uint8_t opcode;
    uint8_t flags;
    uint8_t response;
    uint8_t status;
    uint8_t total_ahs_len;
    uint8_t dlen[3];
    uint8_t rsvd8[8];
    uint32_t itt;
    uint32_t snack_tag;
    uint32_t statsn;
    uint32_t exp_cmdsn;
    uint32_t max_cmdsn;
    uint32_t exp_datasn;
    uint32_t bidi_residual;
    uint32_t residual;
} __attribute__((packed));
_Static_assert(sizeof(struct iscsi_scsi_rsp) == ISCSI_BHS_SIZE, "scsi rsp");

/* Data-In and Data-Out share one layout. */
struct iscsi_data {
    uint8_t opcode;
    uint8_t flags;
    uint8_t rsvd2;
    uint8_t status;      /* Data-In with S */
    uint8_t total_ahs_len;
    uint8_t dlen[3];
    uint8_t lun[8];
    uint32_t itt;
    uint32_t ttt;
    uint32_t statsn;     /* Data-In: StatSN with S; Data-Out: reserved */
    uint32_t exp_cmdsn;  /* Data-Out: ExpStatSN */
    uint32_t max_cmdsn;
    uint32_t datasn;
    uint32_t offset;
    uint32_t residual;
} __attribute__((packed));
_Static_assert(sizeof(struct iscsi_data) == ISCSI_BHS_SIZE, "data");

struct iscsi_r2t {
    uint8_t opcode;
    uint8_t flags;
    uint8_t rsvd2[2];
    uint8_t total_ahs_len;
    uint8_t dlen[3];
    uint8_t lun[8];
    uint32_t itt;
    uint32_t ttt;
    uint32_t statsn;
    uint32_t exp_cmdsn;
    uint32_t max_cmdsn;
    uint32_t r2tsn;
    uint32_t offset;
    uint32_t length;
} __attribute__((packed));
_Static_assert(sizeof(struct iscsi_r2t) == ISCSI_BHS_SIZE, "r2t");

/* NOP-Out/NOP-In, Text request/response, TMF, Logout: the SN block at 24. */
struct iscsi_sn_pdu {
    uint8_t opcode;
    uint8_t flags;
    uint8_t spec2[2];
    uint8_t total_ahs_len;
    uint8_t dlen[3];
    uint8_t lun[8];
    uint32_t itt;
    uint32_t ttt;        /* TMF: referenced task tag; Logout: CID in the top 16 bits */
    uint32_t sn24;       /* request: CmdSN; response: StatSN */
    uint32_t sn28;       /* request: ExpStatSN; response: ExpCmdSN */
    uint32_t sn32;       /* TMF request: RefCmdSN; response: MaxCmdSN */
    uint32_t f36;
    uint32_t f40;        /* Logout response: Time2Wait(16) Time2Retain(16) */
    uint32_t f44;
} __attribute__((packed));
_Static_assert(sizeof(struct iscsi_sn_pdu) == ISCSI_BHS_SIZE, "sn pdu");

struct iscsi_login {
    uint8_t opcode;
    uint8_t flags;
    uint8_t version_max;
    uint8_t version_min;  /* response: version-active */
    uint8_t total_ahs_len;
    uint8_t dlen[3];
    uint8_t isid[6];
    uint16_t tsih;
    uint32_t itt;
    uint16_t cid;
    uint16_t rsvd22;
    uint32_t sn24;       /* request: CmdSN; response: StatSN */
    uint32_t sn28;       /* request: ExpStatSN; response: ExpCmdSN */
    uint32_t max_cmdsn;
    uint8_t status_class;
    uint8_t status_detail;
    uint8_t rsvd38[10];
} __attribute__((packed));
_Static_assert(sizeof(struct iscsi_login) == ISCSI_BHS_SIZE, "login");

static inline uint32_t
iscsi_dlen_get(const uint8_t d[3])
{
    return ((uint32_t)d[0] << 16) | ((uint32_t)d[1] << 8) | d[2];
}

static inline void
iscsi_dlen_set(uint8_t d[3], uint32_t v)
{
    d[0] = (uint8_t)(v >> 16);
    d[1] = (uint8_t)(v >> 8);
    d[2] = (uint8_t)v;
}

static inline uint32_t
iscsi_pad4(uint32_t n)
{
    return (n + 3u) & ~3u;
}

/** Name of an opcode for logs ("scsi_cmd"), "unknown" if none. */
const char *iscsi_opcode_name(uint8_t opcode);

#endif
