/*
 * target/nbd/nbd_proto.h - NBD wire format: magics, structs, constants, names.
 *
 * Written from the protocol description in NetworkBlockDevice/nbd
 * doc/proto.md (fixed newstyle handshake, structured replies, metadata
 * contexts; no TLS, no extended headers).
 *
 * Byte order: every multi-byte field on the wire is big-endian. The structs
 * below are packed images of the wire; their integer fields hold wire
 * (big-endian) values, so always go through htobeNN()/beNNtoh() when reading
 * or writing them. Each size is checked with _Static_assert.
 *
 * The option, reply, command and error constants are defined once in X-macro
 * lists; the enums and the *_name() functions used for logging are generated
 * from the same lists, so adding a value updates both.
 */
#ifndef IOC_TARGET_NBD_NBD_PROTO_H
#define IOC_TARGET_NBD_NBD_PROTO_H

#include "ioc/common.h"

#include <endian.h>

/* ---- magics ---- */
#define NBD_MAGIC                  0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC             0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC              0x0003e889045565a9ull /* option replies */
#define NBD_REQUEST_MAGIC          0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC     0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* ---- handshake flags (server, 16 bits) and client flags (32 bits) ---- */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* ---- transmission flags (16 bits) ---- */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_RESIZE       (1u << 9)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* ---- options ---- */
#define NBD_OPT_LIST(X)            \
    X(NBD_OPT_EXPORT_NAME, 1)      \
    X(NBD_OPT_ABORT, 2)            \
    X(NBD_OPT_LIST, 3)             \
    X(NBD_OPT_PEEK_EXPORT, 4)      \
    X(NBD_OPT_STARTTLS, 5)         \
    X(NBD_OPT_INFO, 6)             \
    X(NBD_OPT_GO, 7)               \
    X(NBD_OPT_STRUCTURED_REPLY, 8) \
    X(NBD_OPT_LIST_META_CONTEXT, 9) \
    X(NBD_OPT_SET_META_CONTEXT, 10) \
    X(NBD_OPT_EXTENDED_HEADERS, 11)

/* ---- option reply types; errors have bit 31 set ---- */
#define NBD_REP_ERR(n) ((1u << 31) + (n))
#define NBD_REP_LIST(X)                              \
    X(NBD_REP_ACK, 1)                                \
    X(NBD_REP_SERVER, 2)                             \
    X(NBD_REP_INFO, 3)                               \
    X(NBD_REP_META_CONTEXT, 4)                       \
    X(NBD_REP_ERR_UNSUP, NBD_REP_ERR(1))             \
    X(NBD_REP_ERR_POLICY, NBD_REP_ERR(2))            \
    X(NBD_REP_ERR_INVALID, NBD_REP_ERR(3))           \
    X(NBD_REP_ERR_PLATFORM, NBD_REP_ERR(4))          \
    X(NBD_REP_ERR_TLS_REQD, NBD_REP_ERR(5))          \
    X(NBD_REP_ERR_UNKNOWN, NBD_REP_ERR(6))           \
    X(NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR(7))          \
    X(NBD_REP_ERR_BLOCK_SIZE_REQD, NBD_REP_ERR(8))   \
    X(NBD_REP_ERR_TOO_BIG, NBD_REP_ERR(9))

/* ---- NBD_REP_INFO types ---- */
#define NBD_INFO_LIST(X)          \
    X(NBD_INFO_EXPORT, 0)         \
    X(NBD_INFO_NAME, 1)           \
    X(NBD_INFO_DESCRIPTION, 2)    \
    X(NBD_INFO_BLOCK_SIZE, 3)

/* ---- commands ---- */
#define NBD_CMD_LIST(X)           \
    X(NBD_CMD_READ, 0)            \
    X(NBD_CMD_WRITE, 1)           \
    X(NBD_CMD_DISC, 2)            \
    X(NBD_CMD_FLUSH, 3)           \
    X(NBD_CMD_TRIM, 4)            \
    X(NBD_CMD_CACHE, 5)           \
    X(NBD_CMD_WRITE_ZEROES, 6)    \
    X(NBD_CMD_BLOCK_STATUS, 7)

/* ---- command flags (16 bits) ---- */
#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* ---- structured reply flags and chunk types; error chunks have bit 15 set ---- */
#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_LIST(X)                      \
    X(NBD_REPLY_TYPE_NONE, 0)                       \
    X(NBD_REPLY_TYPE_OFFSET_DATA, 1)                \
    X(NBD_REPLY_TYPE_OFFSET_HOLE, 2)                \
    X(NBD_REPLY_TYPE_BLOCK_STATUS, 5)               \
    X(NBD_REPLY_TYPE_ERROR, (1u << 15) + 1)         \
    X(NBD_REPLY_TYPE_ERROR_OFFSET, (1u << 15) + 2)

/* ---- base:allocation status flags ---- */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/* ---- error values (NBD's own numbering, equal to Linux errno values) ---- */
#define NBD_ERR_LIST(X)      \
    X(NBD_EPERM, 1)          \
    X(NBD_EIO, 5)            \
    X(NBD_ENOMEM, 12)        \
    X(NBD_EINVAL, 22)        \
    X(NBD_ENOSPC, 28)        \
    X(NBD_EOVERFLOW, 75)     \
    X(NBD_ENOTSUP, 95)       \
    X(NBD_ESHUTDOWN, 108)

#define NBD_X_ENUM(name, value) name = (value),
enum nbd_opt { NBD_OPT_LIST(NBD_X_ENUM) };
enum nbd_rep { NBD_REP_LIST(NBD_X_ENUM) };
enum nbd_info { NBD_INFO_LIST(NBD_X_ENUM) };
enum nbd_cmd { NBD_CMD_LIST(NBD_X_ENUM) };
enum nbd_reply_type { NBD_REPLY_TYPE_LIST(NBD_X_ENUM) };
enum nbd_err { NBD_ERR_LIST(NBD_X_ENUM) };
#undef NBD_X_ENUM

/* Name tables for logging: "NBD_OPT_GO", or "unknown" for values off the list. */
#define NBD_X_CASE(name, value) \
    case (value):               \
        return #name;
#define NBD_NAME_FN(fn, list)            \
    static inline const char *fn(uint32_t v) \
    {                                    \
        switch (v) {                     \
            list(NBD_X_CASE)             \
        default:                         \
            return "unknown";            \
        }                                \
    }
NBD_NAME_FN(nbd_opt_name, NBD_OPT_LIST)
NBD_NAME_FN(nbd_rep_name, NBD_REP_LIST)
NBD_NAME_FN(nbd_info_name, NBD_INFO_LIST)
NBD_NAME_FN(nbd_cmd_name, NBD_CMD_LIST)
NBD_NAME_FN(nbd_reply_type_name, NBD_REPLY_TYPE_LIST)
NBD_NAME_FN(nbd_err_name, NBD_ERR_LIST)
#undef NBD_NAME_FN
#undef NBD_X_CASE

/* ---- limits from the spec ---- */
#define NBD_STRING_MAX   4096u             /* export names, messages, context names */
#define NBD_MAX_PAYLOAD  (32u * 1024 * 1024) /* larger READ/WRITE may be deemed DoS */
#define NBD_DF_MIN       65536u            /* DF reads up to this must be supported */

/* ---- wire structs (packed; integer fields are big-endian) ---- */

/* S: greeting of the newstyle handshake. */
struct nbd_greeting {
    uint64_t nbdmagic;  /* NBD_MAGIC */
    uint64_t optsmagic; /* NBD_OPTS_MAGIC */
    uint16_t gflags;    /* handshake flags */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_greeting) == 18, "nbd_greeting");

/* C: one option. Followed by optlen bytes of data. */
struct nbd_opt_hdr {
    uint64_t magic;     /* NBD_OPTS_MAGIC */
    uint32_t option;
    uint32_t optlen;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_opt_hdr) == 16, "nbd_opt_hdr");

/* S: one option reply. Followed by replylen bytes of data. */
struct nbd_opt_reply {
    uint64_t magic;     /* NBD_REP_MAGIC */
    uint32_t option;
    uint32_t reply;
    uint32_t replylen;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_opt_reply) == 20, "nbd_opt_reply");

/* S: answer to NBD_OPT_EXPORT_NAME; the zeroes are left out with NO_ZEROES. */
struct nbd_export_name_reply {
    uint64_t size;
    uint16_t eflags;
    uint8_t zeroes[124];
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_export_name_reply) == 134, "nbd_export_name_reply");

/* Payloads of NBD_REP_INFO. */
struct nbd_info_export {
    uint16_t info;      /* NBD_INFO_EXPORT */
    uint64_t size;
    uint16_t eflags;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_info_export) == 12, "nbd_info_export");

struct nbd_info_block_size {
    uint16_t info;      /* NBD_INFO_BLOCK_SIZE */
    uint32_t minimum;
    uint32_t preferred;
    uint32_t maximum;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_info_block_size) == 14, "nbd_info_block_size");

/* C: a transmission request. WRITE is followed by `count` bytes. */
struct nbd_request {
    uint32_t magic;     /* NBD_REQUEST_MAGIC */
    uint16_t flags;     /* NBD_CMD_FLAG_* */
    uint16_t type;      /* NBD_CMD_* */
    uint64_t handle;    /* opaque, echoed in the reply */
    uint64_t offset;
    uint32_t count;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_request) == 28, "nbd_request");

/* S: simple reply. A successful READ is followed by the data. */
struct nbd_simple_reply {
    uint32_t magic;     /* NBD_SIMPLE_REPLY_MAGIC */
    uint32_t error;     /* NBD_E*, 0 = success */
    uint64_t handle;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_simple_reply) == 16, "nbd_simple_reply");

/* S: structured reply chunk header. Followed by `length` bytes of payload. */
struct nbd_structured_reply {
    uint32_t magic;     /* NBD_STRUCTURED_REPLY_MAGIC */
    uint16_t flags;     /* NBD_REPLY_FLAG_DONE */
    uint16_t type;      /* NBD_REPLY_TYPE_* */
    uint64_t handle;
    uint32_t length;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_structured_reply) == 20, "nbd_structured_reply");

/* Chunk payloads. */
struct nbd_chunk_offset_data {
    uint64_t offset;    /* followed by the data */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_chunk_offset_data) == 8, "nbd_chunk_offset_data");

struct nbd_chunk_offset_hole {
    uint64_t offset;
    uint32_t length;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_chunk_offset_hole) == 12, "nbd_chunk_offset_hole");

struct nbd_chunk_error {
    uint32_t error;
    uint16_t msglen;    /* followed by msglen bytes of message */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_chunk_error) == 6, "nbd_chunk_error");

struct nbd_block_descriptor {
    uint32_t length;
    uint32_t status_flags;
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_block_descriptor) == 8, "nbd_block_descriptor");

#endif
