/*
 * target/target_stream.h - stream sockets for a target's protocol engines.
 *
 * The socket side shared by the NBD and iSCSI targets: listening sockets
 * (TCP and unix), io_uring accept on reactor 0, round-robin placement of each
 * connection on a reactor, one recv and one sendmsg in flight per
 * connection, moving a connection to another reactor, and teardown. The
 * protocol stays in an engine that knows nothing about sockets (nbd_conn.c,
 * iscsi_conn.c); the target describes how to drive it with
 * struct ioc_target_stream_ops. See target_stream.c for the design.
 */
#ifndef IOC_TARGET_TARGET_STREAM_H
#define IOC_TARGET_TARGET_STREAM_H

#include "ioc/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/reactor.h"
#include "lib/err.h"

struct ioc_target_stream;

/*
 * How a stream drives a target's engine. `engine` is what engine_create()
 * returned. Unless said otherwise every op is required and called on the
 * connection's reactor.
 */
struct ioc_target_stream_ops {
    const char *name;    /* "nbd", "iscsi": log subsystem, debug component, message prefix */
    int send_iov_max;    /* iovecs per sendmsg */

    /* Name an accepted socket (accept reactor): client for logs, our local address. */
    void (*conn_name)(int fd, bool is_unix, char *peer, size_t peer_len, char *local,
                      size_t local_len);
    /*
     * Create the engine on reactor r (the caller's). The engine's transport
     * ctx must be `sc` and its process() ioc_target_stream_conn_process.
     * Returns 0 or a negative errno (the socket is then closed).
     */
    int (*engine_create)(struct ioc_reactor *r, void *sc, const char *peer, const char *local,
                         void **engine);
    /* Free the engine and NULL *engine; only once finished() or before a move. */
    void (*engine_destroy)(void **engine);
    bool (*recv_buf)(void *engine, void **buf, size_t *len);
    void (*recv_done)(void *engine, ssize_t n);
    int (*out_iov)(void *engine, struct iovec *iov, int max);
    void (*sent)(void *engine, ssize_t n);
    bool (*finished)(const void *engine);
    void (*abort)(void *engine);

    /*
     * Optional, all three or none: the engine asks to continue on another
     * reactor (move_to non-NULL). Once no recv or send is in flight the
     * bytes pending_input() reports are copied, the engine destroyed, and a
     * new engine on that reactor is marked moved() and fed those bytes.
     */
    struct ioc_reactor *(*move_to)(const void *engine);
    void (*pending_input)(const void *engine, const void **buf, size_t *len);
    void (*moved)(void *engine);

    /*
     * Optional: the head of the output is file bytes (target_outq.h,
     * ioc_target_outq_file), to be spliced. Only engines that queue file
     * pieces, which they do only after ioc_target_stream_conn_can_splice().
     */
    bool (*out_file)(void *engine, int *fd, uint64_t *off, size_t *len);
};

/*
 * Typed adapters for an engine whose API follows the NBD/iSCSI pattern:
 * struct <p> with <p>_destroy(struct <p> **), <p>_recv_buf(), <p>_recv_done(),
 * <p>_out_iov(), <p>_sent(), <p>_finished() and <p>_abort(). The stream holds
 * engines as void *; calling the typed functions through void * pointers
 * would be undefined, so these small wrappers convert. Use
 * IOC_TARGET_STREAM_ADAPTERS(nbd_conn) at file scope, then
 * IOC_TARGET_STREAM_ADAPTER_OPS(nbd_conn) inside the ops initializer.
 */
#define IOC_TARGET_STREAM_ADAPTERS(p)                                           \
    static void p##_stream_destroy(void **engine)                               \
    {                                                                           \
        struct p *c = *engine;                                                  \
        *engine = NULL;                                                         \
        p##_destroy(&c);                                                        \
    }                                                                           \
    static bool p##_stream_recv_buf(void *engine, void **buf, size_t *len)      \
    {                                                                           \
        return p##_recv_buf(engine, buf, len);                                  \
    }                                                                           \
    static void p##_stream_recv_done(void *engine, ssize_t n)                   \
    {                                                                           \
        p##_recv_done(engine, n);                                               \
    }                                                                           \
    static int p##_stream_out_iov(void *engine, struct iovec *iov, int max)     \
    {                                                                           \
        return p##_out_iov(engine, iov, max);                                   \
    }                                                                           \
    static void p##_stream_sent(void *engine, ssize_t n)                        \
    {                                                                           \
        p##_sent(engine, n);                                                    \
    }                                                                           \
    static bool p##_stream_finished(const void *engine)                         \
    {                                                                           \
        return p##_finished(engine);                                            \
    }                                                                           \
    static void p##_stream_abort(void *engine)                                  \
    {                                                                           \
        p##_abort(engine);                                                      \
    }

#define IOC_TARGET_STREAM_ADAPTER_OPS(p)                                        \
    .engine_destroy = p##_stream_destroy, .recv_buf = p##_stream_recv_buf,      \
    .recv_done = p##_stream_recv_done, .out_iov = p##_stream_out_iov,           \
    .sent = p##_stream_sent, .finished = p##_stream_finished,                   \
    .abort = p##_stream_abort

/**
 * Open the listening sockets: tcp ("host:port", "[v6]:port", ":port") and/or
 * a unix socket path (a stale socket file is replaced, a live one refused);
 * NULL means none. Nothing is accepted until ioc_target_stream_accept().
 * ops is borrowed for the stream's life. Non-reactor thread, reactors running.
 * Returns 0 and the stream in *out, or -EINVAL (bad address, no reactors),
 * -ENOMEM, or the socket/bind/listen error; err says which.
 */
int ioc_target_stream_start(const struct ioc_target_stream_ops *ops, const char *tcp,
                            const char *unix_path, struct ioc_target_stream **out,
                            struct ioc_err *err);

/** Begin accepting on reactor 0 (returns once the accepts are posted). */
void ioc_target_stream_accept(struct ioc_target_stream *ts);

/**
 * Stop accepting, abort every connection on its reactor, wait (up to 10 s)
 * until all are gone, close the listening sockets and free the stream;
 * NULLs *ts. Non-reactor thread. NULL is a no-op.
 */
void ioc_target_stream_stop(struct ioc_target_stream **ts);

/**
 * Call fn on the engine of each connection living on the calling reactor.
 * fn must not free connections (it may abort or close their engines).
 */
void ioc_target_stream_foreach(struct ioc_target_stream *ts,
                               void (*fn)(void *engine, void *arg), void *arg);

/** The engines' process() callback; ctx is the `sc` given to engine_create(). */
void ioc_target_stream_conn_process(void *ctx);

/**
 * Whether the connection `ctx` (the engine's transport ctx) can send file
 * bytes by splice: its pipe is opened on the first call. An engine queues
 * file pieces (ioc_target_outq_append_file) only after this said yes.
 */
bool ioc_target_stream_conn_can_splice(void *ctx);

/**
 * How long a connection may hold its replies back to send several at once
 * (target_coalesce.h), in microseconds; 0 turns holding off. Default 50.
 * Any thread; connections pick it up at their next reply.
 */
void ioc_target_stream_set_coalesce_us(unsigned us);

#endif
