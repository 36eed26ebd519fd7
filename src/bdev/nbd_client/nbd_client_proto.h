/*
 * bdev/nbd_client/nbd_client_proto.h - the NBD initiator's wire code, without sockets.
 *
 * Everything here is pure: it turns bytes into values and values into bytes,
 * so unit tests and the fuzzer drive it with plain buffers. The wire structs
 * and constants come from target/nbd/nbd_proto.h (one definition per
 * protocol); this header adds the client's side: the URI, the handshake
 * replies a client must parse, the request encoder and the incremental
 * parser of transmission replies (simple and structured).
 *
 * Every value that comes from the server is checked here before anyone uses
 * it: magics, option echoes, lengths against the request and the spec's
 * limits, cookies against the table of outstanding requests (through the
 * lookup callback), offsets against the request's range. A violation makes
 * the parser "broken" with a reason for the log; the connection must then be
 * dropped (the spec's hard disconnect), never trusted again.
 */
#ifndef IOC_BDEV_NBD_CLIENT_NBD_CLIENT_PROTO_H
#define IOC_BDEV_NBD_CLIENT_NBD_CLIENT_PROTO_H

#include "ioc/common.h"

#include <sys/types.h>

#include "target/nbd/nbd_proto.h"

#define NBDC_DEFAULT_PORT 10809
#define NBDC_OPT_REPLY_MAX (64u * 1024)     /* longest option reply payload we accept */
#define NBDC_EXTENTS_MAX   (1u << 20)       /* descriptors per BLOCK_STATUS chunk (spec) */
#define NBDC_ERR_MSG_MAX   128              /* how much of a server's error text is kept */

/* ---- URI ---- */

struct nbdc_uri {
    bool is_unix;
    char host[256];   /* TCP: name or address (IPv6 without brackets) */
    uint16_t port;    /* TCP: default 10809 */
    char socket[108]; /* unix: path of the socket */
    char export_name[NBD_STRING_MAX + 1]; /* percent-decoded; may be empty (default export) */
};

/**
 * Parse "nbd://host[:port]/export" or "nbd+unix:///export?socket=PATH".
 * Returns 0, or -EINVAL with err saying what is wrong (nbds:// and TLS are
 * refused with -ENOTSUP). Pure; any thread.
 */
struct ioc_err;
int nbdc_uri_parse(const char *text, struct nbdc_uri *out, struct ioc_err *err);

/* ---- handshake ---- */

/* What the handshake learned about the export. */
struct nbdc_export_info {
    uint64_t size;
    uint16_t eflags;          /* NBD_FLAG_* transmission flags */
    uint32_t min_block;       /* 1 when the server did not say */
    uint32_t pref_block;      /* 4096 when the server did not say */
    uint32_t max_block;       /* NBD_MAX_PAYLOAD when the server did not say */
    bool structured;          /* NBD_OPT_STRUCTURED_REPLY accepted */
    bool has_meta;            /* base:allocation selected */
    uint32_t meta_id;         /* its context id, valid with has_meta */
    bool got_export;          /* NBD_INFO_EXPORT seen */
};

/** Check the 18-byte greeting; -EPROTO unless NBDMAGIC/IHAVEOPT with FIXED_NEWSTYLE. */
int nbdc_greeting_parse(const void *buf, size_t len, uint16_t *gflags);

/**
 * Check a 20-byte option reply header for `option`: magic, the echoed
 * option, and replylen <= NBDC_OPT_REPLY_MAX. Returns 0 with *type and *len,
 * or -EPROTO.
 */
int nbdc_opt_reply_parse(const void *buf, size_t len, uint32_t option, uint32_t *type,
                         uint32_t *replylen);

/**
 * Apply one NBD_REP_INFO payload to info. Unknown info types are ignored
 * (the spec says so); known ones with a wrong length, or block sizes that
 * break the spec's rules (minimum a power of 2 <= 64 KiB, preferred a power
 * of 2 >= max(minimum, 512), maximum >= preferred) are -EPROTO.
 */
int nbdc_info_parse(const void *buf, size_t len, struct nbdc_export_info *info);

/**
 * Parse an NBD_REP_META_CONTEXT payload: 0 with *id when it names
 * "base:allocation", -ENOENT for another context, -EPROTO if malformed.
 */
int nbdc_meta_context_parse(const void *buf, size_t len, uint32_t *id);

/** Parse the reply to NBD_OPT_EXPORT_NAME (10 bytes used; the zeroes are not needed). */
int nbdc_export_name_reply_parse(const void *buf, size_t len, struct nbdc_export_info *info);

/**
 * Encode an option (header + data) into buf of size cap. Returns the length
 * or -ENOSPC. The _go variant builds NBD_OPT_GO's data (name, info
 * requests: NBD_INFO_BLOCK_SIZE); _meta builds SET_META_CONTEXT for
 * "base:allocation".
 */
ssize_t nbdc_opt_encode(void *buf, size_t cap, uint32_t option, const void *data, uint32_t len);
ssize_t nbdc_opt_go_encode(void *buf, size_t cap, uint32_t option, const char *export_name);
ssize_t nbdc_opt_meta_encode(void *buf, size_t cap, const char *export_name);

/** Map an NBD error value to a negative errno (unknown values: -EINVAL, as the spec suggests). */
int nbdc_errno_from_nbd(uint32_t nbd_error);

/* ---- transmission ---- */

/** Fill a 28-byte request header (big-endian). */
void nbdc_request_encode(struct nbd_request *req, uint16_t type, uint16_t flags, uint64_t cookie,
                         uint64_t offset, uint32_t length);

/* What the parser must know of an outstanding request to check its replies. */
struct nbdc_req_info {
    uint16_t cmd;   /* NBD_CMD_* */
    uint64_t offset;
    uint32_t length;
};

/*
 * The parser's callbacks. All run synchronously inside nbdc_reply_parse().
 * Offsets are absolute export offsets, already checked to lie inside the
 * request. `done` ends a request (the last chunk, or a simple reply); after
 * it the cookie is unknown again. `done` may refuse a reply that is complete
 * but inconsistent (a READ not fully covered) by returning -EPROTO.
 */
struct nbdc_reply_ops {
    int (*lookup)(void *ctx, uint64_t cookie, struct nbdc_req_info *info); /* 0 or -ENOENT */
    void (*data)(void *ctx, uint64_t cookie, uint64_t offset, const void *buf, size_t len);
    void (*hole)(void *ctx, uint64_t cookie, uint64_t offset, uint32_t len);
    void (*extent)(void *ctx, uint64_t cookie, uint32_t length, uint32_t flags);
    void (*error)(void *ctx, uint64_t cookie, int err, const char *msg);
    int (*done)(void *ctx, uint64_t cookie, int err);
};

enum nbdc_rx_state {
    NBDC_RX_HDR = 0, /* collecting a reply header */
    NBDC_RX_FIXED,   /* collecting the fixed part of a chunk payload */
    NBDC_RX_DATA,    /* streaming READ data to ops->data */
    NBDC_RX_DESC,    /* collecting 8-byte block descriptors */
    NBDC_RX_MSG,     /* an error chunk's message (and trailing fields) */
    NBDC_RX_BROKEN,  /* protocol violation: drop the connection */
};

struct nbdc_reply_parser {
    const struct nbdc_reply_ops *ops;
    void *ctx;
    bool structured;
    bool has_meta;
    uint32_t meta_id;

    enum nbdc_rx_state state;
    uint8_t buf[24];          /* header or fixed part being collected */
    size_t need, got;
    /* The reply being parsed. */
    bool simple;
    uint16_t flags, type;
    uint64_t cookie;
    uint32_t left;            /* payload bytes of the chunk not yet consumed */
    struct nbdc_req_info req;
    uint64_t data_off;        /* next absolute offset of streamed data */
    uint32_t data_left;       /* streamed data bytes still to come */
    int chunk_err;            /* error of an error chunk being read */
    uint16_t msg_len;
    char msg[NBDC_ERR_MSG_MAX];
    size_t msg_got;
    const char *why;          /* set when BROKEN */
};

/** Set up a parser for a connection; structured/meta come from the handshake. */
void nbdc_reply_parser_init(struct nbdc_reply_parser *p, const struct nbdc_reply_ops *ops,
                            void *ctx, const struct nbdc_export_info *info);

/**
 * Consume len bytes of server traffic. Returns 0 when all were consumed, or
 * -EPROTO when the stream violates the protocol (p->why says how); the
 * parser then stays broken and consumes nothing more.
 */
int nbdc_reply_parse(struct nbdc_reply_parser *p, const void *buf, size_t len);

#endif
