/*
 * target/iscsi/iscsi_target.c - iSCSI over TCP on the reactors.
 *
 * The same shape as the NBD target's socket glue: the listening socket is
 * accepted with io_uring on reactor 0; each accepted socket goes round-robin
 * to a reactor by message and lives there until it closes. Per connection at
 * most one recv and one sendmsg are in flight: recv goes into the engine's
 * receive buffer (iscsi_conn_recv_buf), sendmsg carries everything queued
 * (up to ISCSI_SEND_IOV iovecs) and is posted from sock_process(), which the
 * engine runs as a deferred call, so all responses completed in one reactor
 * iteration leave in one syscall.
 *
 * Sessions with several connections keep them all on one reactor
 * (iscsi_sess.c): when the engine says a new connection belongs to a
 * session elsewhere (its first login PDU carries that TSIH), the socket is
 * moved once no recv or send is in flight: the bytes not handled yet are
 * carried along, this engine is destroyed and the target reactor creates a
 * new one, feeds it those bytes and carries on with the same socket.
 *
 * Teardown: once the engine is finished, the socket is shut down (which
 * completes a pending recv with 0); when neither recv nor send is in flight
 * the connection is freed. ioc_iscsi_target_stop() cancels the accept,
 * aborts every connection on its own reactor and waits for the count to
 * reach zero.
 *
 * Rejected alternative: sharing the NBD glue through a generic socket layer.
 * Worth doing once a third target (NVMe-oF/TCP) needs it; with two, the
 * abstraction would be guessed rather than learnt.
 */
#include "ioc/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "rpc/rpc.h"
#include "target/iscsi/iscsi_internal.h"

#define ISCSI_SEND_IOV      256
#define ISCSI_ACCEPT_RETRY_US 100000
#define ISCSI_STOP_TIMEOUT_MS 10000

struct iscsi_sock {
    struct ioc_uring_req recv_req;
    struct ioc_uring_req send_req;
    struct ioc_reactor *reactor;
    struct iscsi_conn *conn;
    int fd;
    bool recv_posted;
    bool send_posted;
    bool shut;
    struct msghdr msg;
    struct iovec iov[ISCSI_SEND_IOV];
    char peer[64];
    char portal[80];
    uint8_t *carry;        /* migration: received bytes the next engine gets first */
    size_t carry_len;
    struct iscsi_sock *prev;
    struct iscsi_sock *next;
};

static struct {
    bool started;
    atomic_bool stopping;
    int listen_fd;
    struct ioc_uring_req accept_req;
    struct ioc_uring_req cancel_req;
    atomic_bool accept_posted;
    struct ioc_reactor *accept_reactor;
    unsigned nr_reactors;
    struct iscsi_sock **socks;   /* per reactor id: list head, touched only on that reactor */
    atomic_uint nr_conns;
} g_isc = {.listen_fd = -1};

/* ------------------------------------------------------------ connections */

static void
sock_unlink(struct iscsi_sock *s)
{
    unsigned id = ioc_reactor_id(s->reactor);

    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else if (g_isc.socks[id] == s) {
        g_isc.socks[id] = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    s->prev = NULL;
    s->next = NULL;
}

static void
sock_free(struct iscsi_sock *s)
{
    sock_unlink(s);
    IOC_DEBUG(iscsi, "client %s: disconnected", s->peer);
    iscsi_conn_destroy(&s->conn);
    close(s->fd);
    free(s);
    atomic_fetch_sub(&g_isc.nr_conns, 1);
}

static void
sock_post_send(struct iscsi_sock *s)
{
    int n = iscsi_conn_out_iov(s->conn, s->iov, ISCSI_SEND_IOV);
    struct io_uring_sqe *sqe;

    if (n == 0) {
        return;
    }
    memset(&s->msg, 0, sizeof(s->msg));
    s->msg.msg_iov = s->iov;
    s->msg.msg_iovlen = (size_t)n;
    sqe = ioc_reactor_get_sqe(s->reactor);
    io_uring_prep_sendmsg(sqe, s->fd, &s->msg, MSG_NOSIGNAL);
    ioc_uring_sqe_set_req(sqe, &s->send_req);
    s->send_posted = true;
}

static void
sock_post_recv(struct iscsi_sock *s)
{
    struct io_uring_sqe *sqe;
    void *buf;
    size_t len;

    if (!iscsi_conn_recv_buf(s->conn, &buf, &len)) {
        return;
    }
    sqe = ioc_reactor_get_sqe(s->reactor);
    io_uring_prep_recv(sqe, s->fd, buf, len, 0);
    ioc_uring_sqe_set_req(sqe, &s->recv_req);
    s->recv_posted = true;
}

static void sock_start_msg(void *arg);

/* Move the connection to reactor r (the reactor of the session it joins). */
static void
sock_migrate(struct iscsi_sock *s, struct ioc_reactor *r)
{
    const void *buf;
    size_t len;

    iscsi_conn_pending_input(s->conn, &buf, &len);
    s->carry = malloc(len > 0 ? len : 1);
    if (s->carry == NULL) {
        iscsi_conn_abort(s->conn);
        return;
    }
    memcpy(s->carry, buf, len);
    s->carry_len = len;
    sock_unlink(s);
    iscsi_conn_destroy(&s->conn);
    if (ioc_reactor_send_msg(r, sock_start_msg, s) < 0) {
        close(s->fd);
        free(s->carry);
        free(s);
        atomic_fetch_sub(&g_isc.nr_conns, 1);
    }
}

static void
sock_process(void *ctx)
{
    struct iscsi_sock *s = ctx;
    struct ioc_reactor *to = iscsi_conn_migrate_to(s->conn);

    if (to != NULL) {
        if (!s->send_posted && !s->recv_posted) {
            sock_migrate(s, to);
        }
        return;
    }
    if (!s->send_posted) {
        sock_post_send(s);
    }
    if (!s->recv_posted && !s->shut) {
        sock_post_recv(s);
    }
    if (!iscsi_conn_finished(s->conn)) {
        return;
    }
    if (!s->shut) {
        shutdown(s->fd, SHUT_RDWR);
        s->shut = true;
    }
    if (!s->send_posted && !s->recv_posted) {
        sock_free(s);
    }
}

static const struct iscsi_conn_transport g_sock_transport = {
    .process = sock_process,
};

static void
sock_recv_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct iscsi_sock *s = ioc_container_of(req, struct iscsi_sock, recv_req);

    (void)cqe_flags;
    s->recv_posted = false;
    iscsi_conn_recv_done(s->conn, res);
}

static void
sock_send_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct iscsi_sock *s = ioc_container_of(req, struct iscsi_sock, send_req);

    (void)cqe_flags;
    s->send_posted = false;
    iscsi_conn_sent(s->conn, res);
}

static void
sock_start_msg(void *arg)
{
    struct iscsi_sock *s = arg;
    struct ioc_reactor *r = ioc_reactor_self();
    unsigned id = ioc_reactor_id(r);

    s->reactor = r;
    s->recv_req.done = sock_recv_done;
    s->send_req.done = sock_send_done;
    if (atomic_load(&g_isc.stopping) ||
        iscsi_conn_create(r, &g_sock_transport, s, s->peer, s->portal, &s->conn) < 0) {
        close(s->fd);
        free(s->carry);
        free(s);
        atomic_fetch_sub(&g_isc.nr_conns, 1);
        return;
    }
    s->next = g_isc.socks[id];
    if (s->next != NULL) {
        s->next->prev = s;
    }
    g_isc.socks[id] = s;
    IOC_DEBUG(iscsi, "client %s: %s on reactor %u", s->peer,
              s->carry != NULL ? "moved" : "connected", id);
    if (s->carry != NULL) {
        void *buf;
        size_t room;

        /* the bytes fit: they came out of an engine's receive buffer of the same size */
        iscsi_conn_set_migrated(s->conn);
        if (s->carry_len > 0 && iscsi_conn_recv_buf(s->conn, &buf, &room) &&
            room >= s->carry_len) {
            memcpy(buf, s->carry, s->carry_len);
            iscsi_conn_recv_done(s->conn, (ssize_t)s->carry_len);
        }
        free(s->carry);
        s->carry = NULL;
    }
    sock_process(s);
}

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

static void
sock_hand_off(int fd)
{
    struct iscsi_sock *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int one = 1;

    if (s == NULL) {
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->fd = fd;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        sock_addr_name(&ss, sl, s->peer, sizeof(s->peer), false);
    }
    sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        sock_addr_name(&ss, sl, s->portal, sizeof(s->portal), true);
    }
    atomic_fetch_add(&g_isc.nr_conns, 1);
    if (ioc_reactor_send_msg(ioc_reactor_next(), sock_start_msg, s) < 0) {
        atomic_fetch_sub(&g_isc.nr_conns, 1);
        close(fd);
        free(s);
    }
}

/* -------------------------------------------------------------- listening */

static void listener_post_accept(void);

static void
listener_retry(void *arg)
{
    (void)arg;
    listener_post_accept();
}

static void
listener_accept_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    (void)req;
    (void)cqe_flags;
    if (res >= 0) {
        sock_hand_off(res);
    }
    if (atomic_load(&g_isc.stopping)) {
        atomic_store(&g_isc.accept_posted, false);
        return;
    }
    if (res < 0 && res != -EINTR && res != -ECONNABORTED) {
        IOC_ERR_RATELIMIT("iscsi", "accept: %s", strerror(-res));
        if (ioc_timer_start(g_isc.accept_reactor, ISCSI_ACCEPT_RETRY_US, listener_retry,
                            NULL) != NULL) {
            return;
        }
    }
    listener_post_accept();
}

static void
listener_post_accept(void)
{
    struct io_uring_sqe *sqe;

    if (atomic_load(&g_isc.stopping)) {
        atomic_store(&g_isc.accept_posted, false);
        return;
    }
    sqe = ioc_reactor_get_sqe(g_isc.accept_reactor);
    io_uring_prep_accept(sqe, g_isc.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    ioc_uring_sqe_set_req(sqe, &g_isc.accept_req);
    atomic_store(&g_isc.accept_posted, true);
}

static void
listener_cancel_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    (void)req;
    (void)res;
    (void)cqe_flags;
}

static void
listener_start_msg(void *arg)
{
    (void)arg;
    g_isc.accept_req.done = listener_accept_done;
    g_isc.cancel_req.done = listener_cancel_done;
    listener_post_accept();
}

static void
listener_cancel_msg(void *arg)
{
    struct io_uring_sqe *sqe;

    (void)arg;
    if (!atomic_load(&g_isc.accept_posted)) {
        return;
    }
    sqe = ioc_reactor_get_sqe(g_isc.accept_reactor);
    io_uring_prep_cancel(sqe, &g_isc.accept_req, 0);
    ioc_uring_sqe_set_req(sqe, &g_isc.cancel_req);
}

static int
listen_tcp(const char *addr, struct ioc_err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    const char *colon = strrchr(addr, ':'), *h = addr;
    char host[256];
    size_t n;
    int fd, one = 1, rc;

    if (colon == NULL || colon[1] == '\0') {
        return ioc_err_set(err, -EINVAL, "iscsi listen address %s: expected host:port", addr);
    }
    n = (size_t)(colon - addr);
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
        h = addr + 1;
        n -= 2;
    }
    if (n >= sizeof(host)) {
        return ioc_err_set(err, -EINVAL, "iscsi listen address %s: host too long", addr);
    }
    memcpy(host, h, n);
    host[n] = '\0';
    rc = getaddrinfo(host[0] != '\0' ? host : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        return ioc_err_set(err, -EINVAL, "iscsi listen address %s: %s", addr, gai_strerror(rc));
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        rc = -errno;
        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(res);
        return ioc_err_set(err, rc, "iscsi listen %s: %s", addr, strerror(-rc));
    }
    freeaddrinfo(res);
    g_isc.listen_fd = fd;
    return 0;
}

/* ------------------------------------------------------- target removal */

static void
close_tgt_msg(void *arg)
{
    struct iscsi_tgt *t = arg;
    unsigned id = ioc_reactor_id(ioc_reactor_self());

    for (struct iscsi_sock *s = g_isc.socks[id]; s != NULL; s = s->next) {
        if (iscsi_conn_tgt(s->conn) == t) {
            iscsi_conn_abort(s->conn);
        }
    }
    iscsi_tgt_put(&t);
}

static void
target_removed(struct iscsi_tgt *t)
{
    for (unsigned i = 0; i < g_isc.nr_reactors; i++) {
        atomic_fetch_add(&t->refs, 1);
        if (ioc_reactor_send_msg(ioc_reactor_get(i), close_tgt_msg, t) < 0) {
            atomic_fetch_sub(&t->refs, 1);
        }
    }
}

/* ------------------------------------------------------------ start/stop */

static void
abort_all_msg(void *arg)
{
    unsigned id = ioc_reactor_id(ioc_reactor_self());

    (void)arg;
    for (struct iscsi_sock *s = g_isc.socks[id]; s != NULL; s = s->next) {
        iscsi_conn_abort(s->conn);
    }
}

int
ioc_iscsi_target_start(const char *listen, struct ioc_err *err)
{
    int rc;

    if (g_isc.started) {
        return ioc_err_set(err, -EALREADY, "iscsi target: already started");
    }
    g_isc.nr_reactors = ioc_reactor_count();
    if (g_isc.nr_reactors == 0) {
        return ioc_err_set(err, -EINVAL, "iscsi target: no reactors running");
    }
    g_isc.socks = calloc(g_isc.nr_reactors, sizeof(*g_isc.socks));
    if (g_isc.socks == NULL) {
        return ioc_err_set(err, -ENOMEM, "iscsi target: out of memory");
    }
    atomic_store(&g_isc.stopping, false);
    rc = listen_tcp(listen, err);
    if (rc < 0) {
        free(g_isc.socks);
        g_isc.socks = NULL;
        return rc;
    }
    g_isc.accept_reactor = ioc_reactor_get(0);
    g_isc.started = true;
    g_iscsi_tgt_removed_hook = target_removed;
    ioc_reactor_call_sync(g_isc.accept_reactor, listener_start_msg, NULL);
    IOC_NOTICE("iscsi", "target listening on %s", listen);
    return 0;
}

void
ioc_iscsi_target_stop(void)
{
    if (!g_isc.started) {
        return;
    }
    atomic_store(&g_isc.stopping, true);
    g_iscsi_tgt_removed_hook = NULL;
    ioc_reactor_call_sync(g_isc.accept_reactor, listener_cancel_msg, NULL);
    for (unsigned waited = 0; atomic_load(&g_isc.accept_posted) && waited < 1000; waited++) {
        usleep(1000);
    }
    for (unsigned i = 0; i < g_isc.nr_reactors; i++) {
        ioc_reactor_call_sync(ioc_reactor_get(i), abort_all_msg, NULL);
    }
    for (unsigned waited = 0; atomic_load(&g_isc.nr_conns) != 0; waited++) {
        if (waited >= ISCSI_STOP_TIMEOUT_MS) {
            IOC_ERR("iscsi", "target stop: %u connections did not close",
                    atomic_load(&g_isc.nr_conns));
            break;
        }
        usleep(1000);
    }
    close(g_isc.listen_fd);
    g_isc.listen_fd = -1;
    free(g_isc.socks);
    g_isc.socks = NULL;
    g_isc.started = false;
    IOC_NOTICE("iscsi", "target stopped");
}

/* ------------------------------------------------------ session listing */

struct list_ctx {
    json_t *conns;
    json_t *sessions;
};

static void
list_conns_msg(void *arg)
{
    struct list_ctx *ctx = arg;
    unsigned id = ioc_reactor_id(ioc_reactor_self());

    for (struct iscsi_sock *s = g_isc.socks[id]; s != NULL; s = s->next) {
        json_t *o = iscsi_conn_describe(s->conn);
        json_t *sess = iscsi_conn_describe_sess(s->conn);

        if (o != NULL) {
            json_object_set_new(o, "reactor", json_integer(id));
            json_array_append_new(ctx->conns, o);
        }
        if (sess != NULL) {
            json_object_set_new(sess, "reactor", json_integer(id));
            json_array_append_new(ctx->sessions, sess);
        }
    }
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

    for (unsigned i = 0; g_isc.started && i < g_isc.nr_reactors; i++) {
        ioc_reactor_call_sync(ioc_reactor_get(i), list_conns_msg, &ctx);
    }
    *conns = ctx.conns;
    *sessions = ctx.sessions;
}
