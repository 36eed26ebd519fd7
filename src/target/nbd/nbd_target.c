/*
 * target/nbd/nbd_target.c - NBD over TCP and unix sockets, on the reactors.
 *
 * Listening sockets are accepted with io_uring on reactor 0; each accepted
 * socket is handed to a reactor chosen round-robin (ioc_reactor_next) by
 * message, and lives there until it closes. Per connection there is at most
 * one recv and one sendmsg in flight:
 *
 *   - recv goes where the protocol engine says (nbd_conn_recv_buf): its large
 *     receive buffer, or straight into a WRITE payload. When the engine
 *     applies backpressure it gives no buffer, and no recv is posted;
 *   - sendmsg carries everything queued (up to NBD_SEND_IOV iovecs) and is
 *     posted from sock_process(), which the engine runs as a deferred call,
 *     so all replies completed in one reactor iteration leave in one syscall.
 *     A partial send simply continues from where it stopped.
 *
 * Teardown: once the engine reports finished (closing, no bdev IO in flight,
 * output drained or dropped), the socket is shut down, which completes a
 * pending recv with 0; when neither recv nor send is in flight the connection
 * is freed. Nothing is freed while the kernel or the bdev still holds a
 * pointer into it. ioc_nbd_target_stop() cancels the accepts, aborts every
 * connection on its own reactor and waits for the count to reach zero.
 *
 * Rejected alternative: a blocking accept thread. It would need its own
 * wake-up for stop and a second threading model; an io_uring accept on a
 * reactor costs nothing while idle.
 */
#include "ioc/common.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "target/nbd/nbd_internal.h"

#define NBD_SEND_IOV     64
#define NBD_LISTEN_MAX   2
#define NBD_ACCEPT_RETRY_US 100000
#define NBD_STOP_TIMEOUT_MS 10000

extern void (*g_nbd_export_removed_hook)(struct nbd_export *exp);

struct nbd_sock {
    struct ioc_uring_req recv_req;
    struct ioc_uring_req send_req;
    struct ioc_reactor *reactor;
    struct nbd_conn *conn;
    int fd;
    bool recv_posted;
    bool send_posted;
    bool shut;
    struct msghdr msg;
    struct iovec iov[NBD_SEND_IOV];
    char peer[64];
    struct nbd_sock *prev;
    struct nbd_sock *next;
};

struct nbd_listener {
    struct ioc_uring_req accept_req;
    struct ioc_uring_req cancel_req;
    int fd;
    bool is_unix;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    atomic_bool accept_posted;
};

static struct {
    bool started;
    atomic_bool stopping;
    struct nbd_listener listeners[NBD_LISTEN_MAX];
    unsigned nr_listeners;
    struct ioc_reactor *accept_reactor;
    unsigned nr_reactors;
    struct nbd_sock **socks;   /* per reactor id: list head, touched only on that reactor */
    atomic_uint nr_conns;
} g_nbd;

/* ------------------------------------------------------------ connections */

static void
sock_free(struct nbd_sock *s)
{
    unsigned id = ioc_reactor_id(s->reactor);

    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else if (g_nbd.socks[id] == s) {
        g_nbd.socks[id] = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    IOC_DEBUG(nbd, "client %s: disconnected", s->peer);
    nbd_conn_destroy(&s->conn);
    close(s->fd);
    free(s);
    atomic_fetch_sub(&g_nbd.nr_conns, 1);
}

static void
sock_post_send(struct nbd_sock *s)
{
    int n = nbd_conn_out_iov(s->conn, s->iov, NBD_SEND_IOV);
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
sock_post_recv(struct nbd_sock *s)
{
    struct io_uring_sqe *sqe;
    void *buf;
    size_t len;

    if (!nbd_conn_recv_buf(s->conn, &buf, &len)) {
        return;
    }
    sqe = ioc_reactor_get_sqe(s->reactor);
    io_uring_prep_recv(sqe, s->fd, buf, len, 0);
    ioc_uring_sqe_set_req(sqe, &s->recv_req);
    s->recv_posted = true;
}

/* The engine's process(): post what can be posted, tear down when finished. */
static void
sock_process(void *ctx)
{
    struct nbd_sock *s = ctx;

    if (!s->send_posted) {
        sock_post_send(s);
    }
    if (!s->recv_posted && !s->shut) {
        sock_post_recv(s);
    }
    if (!nbd_conn_finished(s->conn)) {
        return;
    }
    if (!s->shut) {
        shutdown(s->fd, SHUT_RDWR); /* completes a pending recv with 0 */
        s->shut = true;
    }
    if (!s->send_posted && !s->recv_posted) {
        sock_free(s);
    }
}

static const struct nbd_conn_transport g_sock_transport = {
    .process = sock_process,
};

static void
sock_recv_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct nbd_sock *s = ioc_container_of(req, struct nbd_sock, recv_req);

    (void)cqe_flags;
    s->recv_posted = false;
    nbd_conn_recv_done(s->conn, res);
}

static void
sock_send_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct nbd_sock *s = ioc_container_of(req, struct nbd_sock, send_req);

    (void)cqe_flags;
    s->send_posted = false;
    nbd_conn_sent(s->conn, res);
}

/* Runs on the chosen reactor: the socket becomes a connection there. */
static void
sock_start_msg(void *arg)
{
    struct nbd_sock *s = arg;
    struct ioc_reactor *r = ioc_reactor_self();
    unsigned id = ioc_reactor_id(r);

    s->reactor = r;
    s->recv_req.done = sock_recv_done;
    s->send_req.done = sock_send_done;
    if (atomic_load(&g_nbd.stopping) ||
        nbd_conn_create(r, &g_sock_transport, s, s->peer, &s->conn) < 0) {
        close(s->fd);
        free(s);
        atomic_fetch_sub(&g_nbd.nr_conns, 1);
        return;
    }
    s->next = g_nbd.socks[id];
    if (s->next != NULL) {
        s->next->prev = s;
    }
    g_nbd.socks[id] = s;
    IOC_DEBUG(nbd, "client %s: connected on reactor %u", s->peer, id);
}

static void
sock_peer_name(int fd, bool is_unix, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[48], serv[8];

    if (is_unix || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, len, "%s#%d", is_unix ? "unix" : "tcp", fd);
        return;
    }
    snprintf(buf, len, "%s:%s", host, serv);
}

static void
sock_hand_off(struct nbd_listener *l, int fd)
{
    struct nbd_sock *s = calloc(1, sizeof(*s));
    int one = 1;

    if (s == NULL) {
        close(fd);
        return;
    }
    if (!l->is_unix) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    s->fd = fd;
    sock_peer_name(fd, l->is_unix, s->peer, sizeof(s->peer));
    atomic_fetch_add(&g_nbd.nr_conns, 1);
    if (ioc_reactor_send_msg(ioc_reactor_next(), sock_start_msg, s) < 0) {
        atomic_fetch_sub(&g_nbd.nr_conns, 1);
        close(fd);
        free(s);
    }
}

/* -------------------------------------------------------------- listening */

static void listener_post_accept(struct nbd_listener *l);

static void
listener_retry(void *arg)
{
    listener_post_accept(arg);
}

static void
listener_accept_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct nbd_listener *l = ioc_container_of(req, struct nbd_listener, accept_req);

    (void)cqe_flags;
    if (res >= 0) {
        sock_hand_off(l, res);
    }
    if (atomic_load(&g_nbd.stopping)) {
        atomic_store(&l->accept_posted, false);
        return;
    }
    if (res < 0 && res != -EINTR && res != -ECONNABORTED) {
        /* EMFILE, ENOBUFS...: back off instead of spinning on the error */
        IOC_ERR_RATELIMIT("nbd", "accept: %s", strerror(-res));
        if (ioc_timer_start(g_nbd.accept_reactor, NBD_ACCEPT_RETRY_US, listener_retry, l) !=
            NULL) {
            return;
        }
    }
    listener_post_accept(l);
}

static void
listener_post_accept(struct nbd_listener *l)
{
    struct io_uring_sqe *sqe;

    if (atomic_load(&g_nbd.stopping)) {
        atomic_store(&l->accept_posted, false);
        return;
    }
    sqe = ioc_reactor_get_sqe(g_nbd.accept_reactor);
    io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    ioc_uring_sqe_set_req(sqe, &l->accept_req);
    atomic_store(&l->accept_posted, true);
}

static void
listener_cancel_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    (void)req;
    (void)res;
    (void)cqe_flags;
}

static void
listeners_start_msg(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < g_nbd.nr_listeners; i++) {
        g_nbd.listeners[i].accept_req.done = listener_accept_done;
        g_nbd.listeners[i].cancel_req.done = listener_cancel_done;
        listener_post_accept(&g_nbd.listeners[i]);
    }
}

static void
listeners_cancel_msg(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < g_nbd.nr_listeners; i++) {
        struct nbd_listener *l = &g_nbd.listeners[i];
        struct io_uring_sqe *sqe;

        if (!atomic_load(&l->accept_posted)) {
            continue;
        }
        sqe = ioc_reactor_get_sqe(g_nbd.accept_reactor);
        io_uring_prep_cancel(sqe, &l->accept_req, 0);
        ioc_uring_sqe_set_req(sqe, &l->cancel_req);
    }
}

/* Split "host:port", "[v6]:port" or ":port" into host (NULL = any) and port. */
static int
listen_addr_split(const char *addr, char *host, size_t hlen, const char **port)
{
    const char *colon = strrchr(addr, ':');
    const char *h = addr;
    size_t n;

    if (colon == NULL || colon[1] == '\0') {
        return -EINVAL;
    }
    n = (size_t)(colon - addr);
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
        h = addr + 1;
        n -= 2;
    }
    if (n >= hlen) {
        return -EINVAL;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

static int
listen_tcp(const char *addr, struct ioc_err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char host[256];
    const char *port;
    int fd = -1, one = 1, rc;

    if (listen_addr_split(addr, host, sizeof(host), &port) < 0) {
        return ioc_err_set(err, -EINVAL, "nbd listen address %s: expected host:port", addr);
    }
    rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        return ioc_err_set(err, -EINVAL, "nbd listen address %s: %s", addr, gai_strerror(rc));
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        rc = -errno;
        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(res);
        return ioc_err_set(err, rc, "nbd listen %s: %s", addr, strerror(-rc));
    }
    freeaddrinfo(res);
    g_nbd.listeners[g_nbd.nr_listeners++] = (struct nbd_listener){.fd = fd};
    return 0;
}

/* A unix socket path in use by a live server is refused; a stale one replaced. */
static int
unix_path_check(const struct sockaddr_un *sa)
{
    struct stat st;
    int fd, rc;

    if (lstat(sa->sun_path, &st) != 0) {
        return 0;
    }
    if (!S_ISSOCK(st.st_mode)) {
        return -EEXIST;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    close(fd);
    if (rc == 0) {
        return -EADDRINUSE;
    }
    unlink(sa->sun_path);
    return 0;
}

static int
listen_unix(const char *path, struct ioc_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct nbd_listener *l;
    int fd, rc;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        return ioc_err_set(err, -ENAMETOOLONG, "nbd unix socket %s: path too long", path);
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    rc = unix_path_check(&sa);
    if (rc < 0) {
        return ioc_err_set(err, rc, "nbd unix socket %s: %s", path, strerror(-rc));
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        rc = -errno;
        if (fd >= 0) {
            close(fd);
        }
        return ioc_err_set(err, rc, "nbd unix socket %s: %s", path, strerror(-rc));
    }
    l = &g_nbd.listeners[g_nbd.nr_listeners++];
    *l = (struct nbd_listener){.fd = fd, .is_unix = true};
    memcpy(l->path, path, strlen(path) + 1);
    return 0;
}

static void
listeners_close(void)
{
    for (unsigned i = 0; i < g_nbd.nr_listeners; i++) {
        struct nbd_listener *l = &g_nbd.listeners[i];

        close(l->fd);
        if (l->is_unix) {
            unlink(l->path);
        }
    }
    g_nbd.nr_listeners = 0;
}

/* ------------------------------------------------------- export removal */

static void
close_export_msg(void *arg)
{
    struct nbd_export *exp = arg;
    unsigned id = ioc_reactor_id(ioc_reactor_self());

    for (struct nbd_sock *s = g_nbd.socks[id]; s != NULL; s = s->next) {
        if (nbd_conn_export(s->conn) == exp) {
            nbd_conn_close(s->conn);
        }
    }
    nbd_export_put(&exp);
}

/* Export hook: close the export's connections on every reactor. */
static void
target_export_removed(struct nbd_export *exp)
{
    for (unsigned i = 0; i < g_nbd.nr_reactors; i++) {
        atomic_fetch_add(&exp->refs, 1);
        if (ioc_reactor_send_msg(ioc_reactor_get(i), close_export_msg, exp) < 0) {
            atomic_fetch_sub(&exp->refs, 1); /* the registry still holds one */
        }
    }
}

/* ------------------------------------------------------------ start/stop */

static void
abort_all_msg(void *arg)
{
    unsigned id = ioc_reactor_id(ioc_reactor_self());

    (void)arg;
    for (struct nbd_sock *s = g_nbd.socks[id]; s != NULL; s = s->next) {
        nbd_conn_abort(s->conn);
    }
}

static bool
wait_until_zero(atomic_uint *count, unsigned timeout_ms)
{
    for (unsigned waited = 0; atomic_load(count) != 0; waited++) {
        if (waited >= timeout_ms) {
            return false;
        }
        usleep(1000);
    }
    return true;
}

static unsigned
listeners_posted(void)
{
    unsigned n = 0;

    for (unsigned i = 0; i < g_nbd.nr_listeners; i++) {
        n += atomic_load(&g_nbd.listeners[i].accept_posted) ? 1 : 0;
    }
    return n;
}

int
ioc_nbd_target_start(const struct ioc_nbd_target_opts *opts, struct ioc_err *err)
{
    int rc = 0;

    if (g_nbd.started) {
        return ioc_err_set(err, -EALREADY, "nbd target: already started");
    }
    g_nbd.nr_reactors = ioc_reactor_count();
    if (g_nbd.nr_reactors == 0) {
        return ioc_err_set(err, -EINVAL, "nbd target: no reactors running");
    }
    g_nbd.socks = calloc(g_nbd.nr_reactors, sizeof(*g_nbd.socks));
    if (g_nbd.socks == NULL) {
        return ioc_err_set(err, -ENOMEM, "nbd target: out of memory");
    }
    atomic_store(&g_nbd.stopping, false);
    if (opts->listen != NULL) {
        rc = listen_tcp(opts->listen, err);
    }
    if (rc == 0 && opts->unix_path != NULL) {
        rc = listen_unix(opts->unix_path, err);
    }
    if (rc < 0) {
        listeners_close();
        free(g_nbd.socks);
        g_nbd.socks = NULL;
        return rc;
    }
    g_nbd.accept_reactor = ioc_reactor_get(0);
    g_nbd.started = true;
    g_nbd_export_removed_hook = target_export_removed;
    ioc_reactor_call_sync(g_nbd.accept_reactor, listeners_start_msg, NULL);
    IOC_NOTICE("nbd", "target listening on%s%s%s%s", opts->listen ? " tcp " : "",
               opts->listen ? opts->listen : "", opts->unix_path ? " unix " : "",
               opts->unix_path ? opts->unix_path : "");
    return 0;
}

void
ioc_nbd_target_stop(void)
{
    if (!g_nbd.started) {
        return;
    }
    atomic_store(&g_nbd.stopping, true);
    g_nbd_export_removed_hook = NULL;
    ioc_reactor_call_sync(g_nbd.accept_reactor, listeners_cancel_msg, NULL);
    for (unsigned waited = 0; listeners_posted() > 0 && waited < 1000; waited++) {
        usleep(1000);
    }
    for (unsigned i = 0; i < g_nbd.nr_reactors; i++) {
        ioc_reactor_call_sync(ioc_reactor_get(i), abort_all_msg, NULL);
    }
    if (!wait_until_zero(&g_nbd.nr_conns, NBD_STOP_TIMEOUT_MS)) {
        IOC_ERR("nbd", "target stop: %u connections did not close",
                atomic_load(&g_nbd.nr_conns));
    }
    listeners_close();
    free(g_nbd.socks);
    g_nbd.socks = NULL;
    g_nbd.started = false;
    IOC_NOTICE("nbd", "target stopped");
}
