/*
 * target/nbd/nbd_internal.h - private interfaces of the NBD target.
 *
 * Blocks are headed by the file that defines them.
 */
#ifndef IOC_TARGET_NBD_NBD_INTERNAL_H
#define IOC_TARGET_NBD_NBD_INTERNAL_H

#include "ioc/common.h"

#include <stdatomic.h>
#include <sys/uio.h>

#include "bdev/bdev.h"
#include "core/reactor.h"
#include "target/nbd/nbd.h"

/* ---- limits (documented in docs/nbd.md) ---- */
#define NBD_EXPORT_NAME_MAX 255u
#define NBD_OPT_MAX_LEN     (64u * 1024)       /* longer options close the connection */
#define NBD_OPT_MAX_COUNT   4096u              /* options per connection */
#define NBD_MAX_BLOCK       (32u * 1024 * 1024) /* advertised maximum block size */
#define NBD_PREF_BLOCK      4096u
#define NBD_RBUF_SIZE       (256u * 1024)      /* per-connection receive buffer */
#define NBD_MAX_INFLIGHT    128u               /* requests in flight per connection */
#define NBD_MAX_INFLIGHT_BYTES (64u * 1024 * 1024) /* data buffers in flight per connection */
#define NBD_HOLE_READ_MIN   (256u * 1024)      /* reads this large probe for holes first */
#define NBD_SPLICE_READ_MIN (64u * 1024)       /* reads this large may be spliced from a file */
/* After a WRITE this large, receive only the next header into the receive
 * buffer, so the next payload lands in its request's buffer without a copy. */
#define NBD_SPLIT_PAYLOAD_MIN (32u * 1024)
#define NBD_MAX_EXTENTS     64u                /* descriptors per BLOCK_STATUS reply */
#define NBD_META_ID_BASE_ALLOCATION 1u

/* ---- nbd_export.c ---- */

/* One export: a name bound to a bdev. Reference counted: the registry holds
 * one reference, each connection using it holds one. */
struct nbd_export {
    char name[NBD_EXPORT_NAME_MAX + 1];
    struct ioc_bdev *bdev;
    bool read_only;
    atomic_int refs;
    atomic_uint connections;   /* connections in transmission on this export */
    atomic_bool removed;       /* unlinked from the registry: connections close */
    struct nbd_export *next;
};

/**
 * Look up an export by wire name (not NUL-terminated, len bytes) and return a
 * new reference, or NULL. The empty name selects the only export when there
 * is exactly one (the documented default-export rule).
 */
struct nbd_export *nbd_export_lookup(const char *name, size_t len);

/** Drop a reference; NULLs the pointer; the last one releases the bdev. */
void nbd_export_put(struct nbd_export **exp);

/** Call fn for each export in insertion order, under the registry lock. */
void nbd_export_foreach(void (*fn)(const struct nbd_export *exp, void *arg), void *arg);

/* ---- nbd_conn.c: the protocol engine of one connection, without sockets ---- */

struct nbd_conn;

/*
 * How the engine reaches its transport. `process` is called from a deferred
 * call on the connection's reactor, at most once per deferral round, whenever
 * something changed: output was queued, the engine can take input again, or
 * it has finished. The transport then looks at nbd_conn_out_iov(),
 * nbd_conn_recv_buf() and nbd_conn_finished() and acts.
 */
struct nbd_conn_transport {
    void (*process)(void *ctx);
    /* Optional: whether file bytes may be queued (target_stream.h); NULL = never. */
    bool (*can_splice)(void *ctx);
};

/**
 * Create the engine for a new connection on reactor r (the calling thread's).
 * The server greeting is queued at once. `peer` names the client in logs
 * (copied). Returns 0 or -ENOMEM.
 */
int nbd_conn_create(struct ioc_reactor *r, const struct nbd_conn_transport *t, void *ctx,
                    const char *peer, struct nbd_conn **out);

/**
 * Free the engine; NULLs the pointer. Only when nbd_conn_finished() is true
 * (no bdev IO in flight), and with no send in flight that uses its buffers.
 */
void nbd_conn_destroy(struct nbd_conn **c);

/**
 * Where the next received bytes should go. Returns false when the engine
 * does not want input now (backpressure, handshake reply pending, closing);
 * it calls process() again when that changes.
 */
bool nbd_conn_recv_buf(struct nbd_conn *c, void **buf, size_t *len);

/**
 * n bytes were received into the last nbd_conn_recv_buf() area. n == 0 means
 * the peer closed; n < 0 a receive error (-errno). Parses what is complete and
 * submits bdev IO.
 */
void nbd_conn_recv_done(struct nbd_conn *c, ssize_t n);

/** Fill iov (up to max entries) with queued output; returns the count, 0 if none. */
int nbd_conn_out_iov(struct nbd_conn *c, struct iovec *iov, int max);

/**
 * Whether the output is down to file bytes to splice (a large READ's data,
 * when the transport said can_splice): *len bytes of *fd at *off, reported
 * with nbd_conn_sent() once sent.
 */
bool nbd_conn_out_file(struct nbd_conn *c, int *fd, uint64_t *off, size_t *len);

/** n bytes of the output returned by nbd_conn_out_iov() were sent (n < 0: send failed). */
void nbd_conn_sent(struct nbd_conn *c, ssize_t n);

/** Stop the connection: no more input is parsed, queued output is dropped. */
void nbd_conn_abort(struct nbd_conn *c);

/**
 * Close after the queued output is sent (shutdown, export removed). In-flight
 * requests still complete and are answered.
 */
void nbd_conn_close(struct nbd_conn *c);

/**
 * True once the connection is over: closing, no bdev IO in flight, and either
 * the output is drained or the connection was aborted. The transport then
 * shuts its socket and calls nbd_conn_destroy() when its own IO is done.
 */
bool nbd_conn_finished(const struct nbd_conn *c);

/** The export in use (NULL during the handshake); borrowed. */
const struct nbd_export *nbd_conn_export(const struct nbd_conn *c);

/** Check every wire field of a request against the negotiated state. */
struct nbd_request_info {
    uint16_t flags;
    uint16_t type;
    uint64_t offset;
    uint32_t count;
};
int nbd_validate_request(const struct nbd_conn *c, const struct nbd_request_info *rq);

#endif
