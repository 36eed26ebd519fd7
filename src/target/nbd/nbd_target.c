/*
 * target/nbd/nbd_target.c - NBD over TCP and unix sockets, on the reactors.
 *
 * The sockets are the shared stream layer's (target_stream.c): accept on
 * reactor 0, each connection on a reactor chosen round-robin for its life,
 * at most one recv and one sendmsg in flight, teardown once the engine is
 * finished. This file tells that layer how to drive the NBD engine
 * (nbd_conn.c) and adds what is NBD's own:
 *
 *   - recv goes where the engine says (nbd_conn_recv_buf): its large receive
 *     buffer, or straight into a WRITE payload. When the engine applies
 *     backpressure it gives no buffer, and no recv is posted;
 *   - sendmsg carries up to NBD_SEND_IOV iovecs of queued replies;
 *   - an export that is removed closes its connections on every reactor
 *     (after their queued replies are sent).
 *
 * Rejected alternative: a blocking accept thread (see target_stream.c).
 */
#include "ioc/common.h"

#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>

#include "core/log.h"
#include "core/reactor.h"
#include "target/nbd/nbd_internal.h"
#include "target/target_stream.h"

#define NBD_SEND_IOV 64

extern void (*g_nbd_export_removed_hook)(struct nbd_export *exp);

static struct ioc_target_stream *g_nbd_stream;

/* ------------------------------------------------- driving the engine */

static const struct nbd_conn_transport g_stream_transport = {
    .process = ioc_target_stream_conn_process,
    .can_splice = ioc_target_stream_conn_can_splice,
};

/* "host:port" of the client, or "unix#fd" / "tcp#fd" when it has no address. */
static void
stream_conn_name(int fd, bool is_unix, char *peer, size_t peer_len, char *local,
                 size_t local_len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[48], serv[8];

    (void)local;
    (void)local_len;
    if (is_unix || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(peer, peer_len, "%s#%d", is_unix ? "unix" : "tcp", fd);
        return;
    }
    snprintf(peer, peer_len, "%s:%s", host, serv);
}

static int
stream_engine_create(struct ioc_reactor *r, void *sc, const char *peer, const char *local,
                     void **engine)
{
    struct nbd_conn *c;
    int rc;

    (void)local;
    rc = nbd_conn_create(r, &g_stream_transport, sc, peer, &c);
    if (rc == 0) {
        *engine = c;
    }
    return rc;
}

/* destroy, recv_buf, recv_done, out_iov, sent, finished, abort: see target_stream.h */
IOC_TARGET_STREAM_ADAPTERS(nbd_conn)

static bool
stream_out_file(void *engine, int *fd, uint64_t *off, size_t *len)
{
    return nbd_conn_out_file(engine, fd, off, len);
}

static const struct ioc_target_stream_ops g_nbd_stream_ops = {
    .name = "nbd",
    .send_iov_max = NBD_SEND_IOV,
    .conn_name = stream_conn_name,
    .engine_create = stream_engine_create,
    IOC_TARGET_STREAM_ADAPTER_OPS(nbd_conn),
    .out_file = stream_out_file,
};

/* ------------------------------------------------------- export removal */

static void
close_if_export(void *engine, void *arg)
{
    if (nbd_conn_export(engine) == arg) {
        nbd_conn_close(engine);
    }
}

static void
close_export_msg(void *arg)
{
    struct nbd_export *exp = arg;

    ioc_target_stream_foreach(g_nbd_stream, close_if_export, exp);
    nbd_export_put(&exp);
}

/* Export hook: close the export's connections on every reactor. */
static void
target_export_removed(struct nbd_export *exp)
{
    for (unsigned i = 0; i < ioc_reactor_count(); i++) {
        atomic_fetch_add(&exp->refs, 1);
        if (ioc_reactor_send_msg(ioc_reactor_get(i), close_export_msg, exp) < 0) {
            atomic_fetch_sub(&exp->refs, 1); /* the registry still holds one */
        }
    }
}

/* ------------------------------------------------------------ start/stop */

int
ioc_nbd_target_start(const struct ioc_nbd_target_opts *opts, struct ioc_err *err)
{
    int rc;

    if (g_nbd_stream != NULL) {
        return ioc_err_set(err, -EALREADY, "nbd target: already started");
    }
    rc = ioc_target_stream_start(&g_nbd_stream_ops, opts->listen, opts->unix_path,
                                 &g_nbd_stream, err);
    if (rc < 0) {
        return rc;
    }
    /* before the first accept: no connection may miss an export removal */
    g_nbd_export_removed_hook = target_export_removed;
    ioc_target_stream_accept(g_nbd_stream);
    IOC_NOTICE("nbd", "target listening on%s%s%s%s", opts->listen ? " tcp " : "",
               opts->listen ? opts->listen : "", opts->unix_path ? " unix " : "",
               opts->unix_path ? opts->unix_path : "");
    return 0;
}

void
ioc_nbd_target_stop(void)
{
    if (g_nbd_stream == NULL) {
        return;
    }
    g_nbd_export_removed_hook = NULL;
    ioc_target_stream_stop(&g_nbd_stream);
    IOC_NOTICE("nbd", "target stopped");
}
