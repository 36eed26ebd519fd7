/*
 * target/iscsi/iscsi_target.c - iSCSI over TCP on the reactors.
 *
 * The sockets are the shared stream layer's (target_stream.c, the same as
 * the NBD target's): accept on reactor 0, each connection on a reactor
 * chosen round-robin, at most one recv and one sendmsg in flight, teardown
 * once the engine is finished. This file tells that layer how to drive the
 * iSCSI engine (iscsi_conn.c) and adds what is iSCSI's own:
 *
 *   - recv goes into the engine's receive buffer (iscsi_conn_recv_buf);
 *     sendmsg carries up to ISCSI_SEND_IOV iovecs of queued PDUs;
 *   - sessions with several connections keep them all on one reactor
 *     (iscsi_sess.c): when the engine says a new connection belongs to a
 *     session elsewhere (its first login PDU carries that TSIH), the stream
 *     layer moves the socket there with the bytes not handled yet, and the
 *     new engine is marked migrated and fed those bytes;
 *   - a target that is removed aborts its connections on every reactor;
 *   - the connection and session listing for iscsi_target_list.
 */
#include "ioc/common.h"

#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>

#include "core/log.h"
#include "rpc/rpc.h"
#include "target/iscsi/iscsi_internal.h"
#include "target/target_stream.h"

#define ISCSI_SEND_IOV 256

static struct ioc_target_stream *g_isc_stream;

/* ------------------------------------------------- driving the engine */

static const struct iscsi_conn_transport g_stream_transport = {
    .process = ioc_target_stream_conn_process,
};

/* "ip:port" ("[ip]:port" for IPv6), with ",1" (our TPGT) for a portal. */
static void
sock_addr_name(const struct sockaddr_storage *ss, socklen_t sl, char *buf, size_t len,
               bool portal)
{
    char host[48], serv[8];

    if (getnameinfo((const struct sockaddr *)ss, sl, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, len, "?");
        return;
    }
    if (ss->ss_family == AF_INET6) {
        snprintf(buf, len, portal ? "[%s]:%s,1" : "[%s]:%s", host, serv);
    } else {
        snprintf(buf, len, portal ? "%s:%s,1" : "%s:%s", host, serv);
    }
}

/* The client's address for logs; ours as the portal SendTargets reports. */
static void
stream_conn_name(int fd, bool is_unix, char *peer, size_t peer_len, char *local,
                 size_t local_len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    (void)is_unix;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        sock_addr_name(&ss, sl, peer, peer_len, false);
    }
    sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        sock_addr_name(&ss, sl, local, local_len, true);
    }
}

static int
stream_engine_create(struct ioc_reactor *r, void *sc, const char *peer, const char *local,
                     void **engine)
{
    struct iscsi_conn *c;
    int rc = iscsi_conn_create(r, &g_stream_transport, sc, peer, local, &c);

    if (rc == 0) {
        *engine = c;
    }
    return rc;
}

/* destroy, recv_buf, recv_done, out_iov, sent, finished, abort: see target_stream.h */
IOC_TARGET_STREAM_ADAPTERS(iscsi_conn)

/* Moving to the session's reactor (iscsi_sess.c says why). */
static struct ioc_reactor *
stream_move_to(const void *engine)
{
    return iscsi_conn_migrate_to(engine);
}

static void
stream_pending_input(const void *engine, const void **buf, size_t *len)
{
    iscsi_conn_pending_input(engine, buf, len);
}

static void
stream_moved(void *engine)
{
    iscsi_conn_set_migrated(engine);
}

static const struct ioc_target_stream_ops g_isc_stream_ops = {
    .name = "iscsi",
    .send_iov_max = ISCSI_SEND_IOV,
    .conn_name = stream_conn_name,
    .engine_create = stream_engine_create,
    IOC_TARGET_STREAM_ADAPTER_OPS(iscsi_conn),
    .move_to = stream_move_to,
    .pending_input = stream_pending_input,
    .moved = stream_moved,
};

/* ------------------------------------------------------- target removal */

static void
abort_if_tgt(void *engine, void *arg)
{
    if (iscsi_conn_tgt(engine) == arg) {
        iscsi_conn_abort(engine);
    }
}

static void
close_tgt_msg(void *arg)
{
    struct iscsi_tgt *t = arg;

    ioc_target_stream_foreach(g_isc_stream, abort_if_tgt, t);
    iscsi_tgt_put(&t);
}

static void
target_removed(struct iscsi_tgt *t)
{
    for (unsigned i = 0; i < ioc_reactor_count(); i++) {
        atomic_fetch_add(&t->refs, 1);
        if (ioc_reactor_send_msg(ioc_reactor_get(i), close_tgt_msg, t) < 0) {
            atomic_fetch_sub(&t->refs, 1);
        }
    }
}

/* ------------------------------------------------------------ start/stop */

int
ioc_iscsi_target_start(const char *listen, struct ioc_err *err)
{
    int rc;

    if (g_isc_stream != NULL) {
        return ioc_err_set(err, -EALREADY, "iscsi target: already started");
    }
    rc = ioc_target_stream_start(&g_isc_stream_ops, listen, NULL, &g_isc_stream, err);
    if (rc < 0) {
        return rc;
    }
    /* before the first accept: no connection may miss a target removal */
    g_iscsi_tgt_removed_hook = target_removed;
    ioc_target_stream_accept(g_isc_stream);
    IOC_NOTICE("iscsi", "target listening on %s", listen);
    return 0;
}

void
ioc_iscsi_target_stop(void)
{
    if (g_isc_stream == NULL) {
        return;
    }
    g_iscsi_tgt_removed_hook = NULL;
    ioc_target_stream_stop(&g_isc_stream);
    IOC_NOTICE("iscsi", "target stopped");
}

/* ------------------------------------------------------ session listing */

struct list_ctx {
    json_t *conns;
    json_t *sessions;
    unsigned reactor;   /* the one being listed */
};

static void
list_one(void *engine, void *arg)
{
    struct list_ctx *ctx = arg;
    json_t *o = iscsi_conn_describe(engine);
    json_t *sess = iscsi_conn_describe_sess(engine);

    if (o != NULL) {
        json_object_set_new(o, "reactor", json_integer(ctx->reactor));
        json_array_append_new(ctx->conns, o);
    }
    if (sess != NULL) {
        json_object_set_new(sess, "reactor", json_integer(ctx->reactor));
        json_array_append_new(ctx->sessions, sess);
    }
}

static void
list_conns_msg(void *arg)
{
    struct list_ctx *ctx = arg;

    ctx->reactor = ioc_reactor_id(ioc_reactor_self());
    ioc_target_stream_foreach(g_isc_stream, list_one, ctx);
}

/*
 * Connections and sessions of every reactor (new arrays); RPC thread only.
 * A session is described by its first connection, on its own reactor.
 */
void iscsi_target_connections(json_t **conns, json_t **sessions);
void
iscsi_target_connections(json_t **conns, json_t **sessions)
{
    struct list_ctx ctx = {.conns = json_array(), .sessions = json_array()};

    for (unsigned i = 0; g_isc_stream != NULL && i < ioc_reactor_count(); i++) {
        ioc_reactor_call_sync(ioc_reactor_get(i), list_conns_msg, &ctx);
    }
    *conns = ctx.conns;
    *sessions = ctx.sessions;
}
