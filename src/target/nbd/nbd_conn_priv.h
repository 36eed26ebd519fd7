/*
 * target/nbd/nbd_conn_priv.h - the connection engine's private state, shared
 * by nbd_conn.c (transmission, requests, output) and nbd_handshake.c
 * (greeting and option haggling). Nothing outside src/target/nbd/ includes it.
 */
#ifndef IOC_TARGET_NBD_NBD_CONN_PRIV_H
#define IOC_TARGET_NBD_NBD_CONN_PRIV_H

#include "ioc/common.h"

#include <sys/uio.h>

#include "bdev/bdev.h"
#include "core/reactor.h"
#include "target/target_outq.h"
#include "target/nbd/nbd_internal.h"
#include "target/nbd/nbd_proto.h"

enum nbd_conn_state {
    NBD_CONN_HS_FLAGS,
    NBD_CONN_HS_OPTIONS,
    NBD_CONN_TRANSMISSION,
    NBD_CONN_PAYLOAD,
    NBD_CONN_CLOSING,
};

/* Reply header images; packed so each is exactly its wire size. */
struct nbd_reply_hdr {
    union {
        struct nbd_simple_reply simple;
        struct {
            struct nbd_structured_reply hdr;
            union {
                struct nbd_chunk_offset_data data;
                struct nbd_chunk_offset_hole hole;
                struct nbd_chunk_error err;
                uint32_t context_id;
            } __attribute__((packed)) u;
        } __attribute__((packed)) chunk;
    };
};

enum nbd_req_stage {
    NBD_REQ_IO,         /* the main bdev IO */
    NBD_REQ_HOLE_PROBE, /* READ: BLOCK_STATUS first, to answer a zero range with a hole */
};

struct nbd_req {
    struct ioc_target_out out;
    struct nbd_conn *conn;
    struct nbd_req *next_free;
    uint64_t handle;
    uint64_t offset;
    uint32_t count;
    uint16_t type;
    uint16_t flags;
    enum nbd_req_stage stage;
    bool probed;           /* READ: the hole probe ran */
    uint32_t payload_got;  /* WRITE: payload bytes received so far */
    uint8_t *window;       /* WRITE: receive the payload in place (ioc_bdev_write_window) */
    uint32_t window_end;   /* ... its bytes [0, window_end); the rest into buf */
    struct iovec write_iov[2]; /* WRITE partly in place: the two parts */
    int error;             /* -errno for the reply, 0 = success */
    bool hole;             /* READ: reply with one OFFSET_HOLE chunk */
    uint32_t nr_desc;      /* BLOCK_STATUS: descriptors in buf */
    void *buf;             /* data buffer, kept across reuse */
    size_t buf_cap;
    size_t charge;         /* bytes counted in conn->inflight_bytes */
    struct ioc_extent probe_extent;
    struct iovec iov[2];
    struct nbd_reply_hdr reply;
};

struct nbd_conn {
    struct ioc_reactor *reactor;
    const struct nbd_conn_transport *t;
    void *tctx;
    char peer[64];
    enum nbd_conn_state state;
    bool aborted;
    struct ioc_deferred defer;

    /* input */
    uint8_t *rbuf;
    size_t rlen;
    struct nbd_req *payload_req;
    bool header_only;            /* last request was a large WRITE: see nbd_conn_recv_buf */

    /* handshake */
    bool no_zeroes;
    bool structured;
    bool meta_base_allocation;   /* SET_META_CONTEXT selected base:allocation ... */
    char meta_export[NBD_EXPORT_NAME_MAX + 1]; /* ... for this export */
    unsigned nr_opts;
    uint8_t *hs_buf;
    size_t hs_len;
    size_t hs_cap;
    bool hs_nomem;
    bool hs_queued;
    struct iovec hs_iov;
    struct ioc_target_out hs_out;

    /* transmission */
    struct nbd_export *exp;
    struct ioc_bdev *bdev;
    uint64_t size;
    uint32_t min_block;
    uint32_t buf_align;
    uint16_t eflags;
    bool meta_active;
    struct nbd_req *free_reqs;
    unsigned inflight;           /* requests taken from the pool */
    unsigned io_inflight;        /* bdev IOs submitted, not completed */
    uint64_t inflight_bytes;

    /* output: replies and handshake pieces, in wire order */
    struct ioc_target_outq outq;
};

/* nbd_conn.c */

/** Move to state s (logged at debug level, invariants checked in debug builds). */
void nbd_conn_set_state(struct nbd_conn *c, enum nbd_conn_state s);

/** Give up on the connection after a protocol error; `why` is logged. */
void nbd_conn_fail(struct nbd_conn *c, const char *why);

/** Append o to the output queue; o->done runs once it has been sent. */
void nbd_conn_queue(struct nbd_conn *c, struct ioc_target_out *o);

/* nbd_handshake.c */

/** Append bytes to the handshake buffer (sets hs_nomem on allocation failure). */
void nbd_hs_put(struct nbd_conn *c, const void *data, size_t len);

/** Queue what the handshake buffer holds; options wait until it is sent. */
void nbd_hs_flush(struct nbd_conn *c);

/** Parse the client flags; returns bytes consumed (0 = need more or failed). */
size_t nbd_hs_parse_client_flags(struct nbd_conn *c, const uint8_t *p, size_t avail);

/** Parse and answer one option; returns bytes consumed (0 = need more or failed). */
size_t nbd_hs_parse_option(struct nbd_conn *c, const uint8_t *p, size_t avail);

#endif
