/*
 * target/target_stream.c - stream sockets on the reactors, for the NBD and
 * iSCSI targets.
 *
 * Listening sockets are accepted with io_uring on reactor 0; each accepted
 * socket is handed to a reactor chosen round-robin (ioc_reactor_next) by
 * message, and lives there until it closes or its engine asks to move. Per
 * connection there is at most one recv and one sendmsg in flight:
 *
 *   - recv goes where the engine says (recv_buf). When the engine applies
 *     backpressure it gives no buffer, and no recv is posted;
 *   - sendmsg carries everything queued (up to send_iov_max iovecs) and is
 *     posted from ioc_target_stream_conn_process(), which the engine runs as
 *     a deferred call, so all replies completed in one reactor iteration
 *     leave in one syscall. A partial send continues where it stopped;
 *   - a small batch may be held back for up to --coalesce-us while the
 *     connection's traffic shows that holding costs its client nothing
 *     (conn_hold, target_coalesce.h), so that several batches leave as one;
 *   - file bytes in the output (a large READ's data, target_outq.h) are
 *     spliced from the file through a pipe into the socket on the reactor
 *     thread (conn_splice); the socket is non-blocking from then on, and a
 *     full socket is waited for with POLLOUT, which counts as the send.
 *
 * Moving (iSCSI: a connection joins a session that lives on another reactor,
 * iscsi_sess.c): once no recv or send is in flight, the bytes the engine has
 * not handled are carried along, the engine is destroyed and the target
 * reactor creates a new one, feeds it those bytes and goes on with the same
 * socket.
 *
 * Teardown: once the engine is finished, the socket is shut down, which
 * completes a pending recv with 0; when neither recv nor send is in flight
 * the connection is freed. Nothing is freed while the kernel or the bdev
 * still holds a pointer into it. Stop cancels the accepts, aborts every
 * connection on its own reactor and waits for the count to reach zero.
 *
 * Not here: the protocol (the engines) and which connections to close when
 * an export or target goes away (the targets, through foreach).
 * Rejected alternatives: a blocking accept thread (it would need its own
 * wake-up for stop and a second threading model; an io_uring accept on a
 * reactor costs nothing while idle), and one socket glue per target (the NBD
 * and iSCSI copies had drifted into being the same code twice).
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "target/target_coalesce.h"
#include "target/target_stream.h"

#define STREAM_LISTEN_MAX      2   /* one TCP, one unix */
#define STREAM_ACCEPT_RETRY_US 100000
#define STREAM_STOP_TIMEOUT_MS 10000
#define STREAM_HOLD_MAX_BYTES  (64u << 10) /* more than this goes out at once */
#define STREAM_COALESCE_US_DEFAULT 50
#define STREAM_PIPE_SIZE       (1u << 20) /* a splice's pipe: room for a few large replies */

static atomic_uint g_coalesce_us = STREAM_COALESCE_US_DEFAULT;

/* Debug lines go to the target's own component ("nbd", "iscsi"). */
#define STREAM_DEBUG(ts, ...)                                                   \
    do {                                                                        \
        if (ioc_unlikely(g_ioc_log_level >= IOC_LOG_DEBUG) &&                   \
            ioc_log_debug_enabled((ts)->ops->name)) {                           \
            ioc_log(IOC_LOG_DEBUG, (ts)->ops->name, __VA_ARGS__);               \
        }                                                                       \
    } while (0)

struct stream_conn {
    struct ioc_uring_req recv_req;
    struct ioc_uring_req send_req;
    struct ioc_uring_req writable_req; /* POLLOUT, while a splice waits for room */
    struct ioc_target_stream *ts;
    struct ioc_reactor *reactor;
    void *engine;
    int fd;
    bool recv_posted;
    bool send_posted;
    bool shut;
    bool flush_due;            /* the hold is over: send what is queued */
    struct ioc_timer *flush_timer; /* armed while replies are held */
    struct ioc_coalesce coalesce;
    int pipe_fds[2];           /* file bytes on their way to the socket; -1: none yet */
    size_t pipe_bytes;         /* in the pipe, not yet sent */
    size_t pipe_size;
    bool no_splice;            /* the pipe could not be set up: never splice */
    char peer[64];
    char local[80];
    uint8_t *carry;        /* moving: received bytes the next engine gets first */
    size_t carry_len;
    struct stream_conn *prev;
    struct stream_conn *next;
    struct msghdr msg;
    struct iovec iov[];    /* ops->send_iov_max */
};

struct stream_listener {
    struct ioc_uring_req accept_req;
    struct ioc_uring_req cancel_req;
    struct ioc_target_stream *ts;
    int fd;
    bool is_unix;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    atomic_bool accept_posted;
};

struct ioc_target_stream {
    const struct ioc_target_stream_ops *ops;
    atomic_bool stopping;
    struct stream_listener listeners[STREAM_LISTEN_MAX];
    unsigned nr_listeners;
    struct ioc_reactor *accept_reactor;
    unsigned nr_reactors;
    struct stream_conn **conns; /* per reactor id: list head, touched only on that reactor */
    atomic_uint nr_conns;
    uint64_t rl_last;           /* accept error rate limit (accept reactor) */
    unsigned rl_dropped;
};

/* ------------------------------------------------------------ connections */

static void
conn_link(struct stream_conn *sc)
{
    unsigned id = ioc_reactor_id(sc->reactor);

    sc->next = sc->ts->conns[id];
    if (sc->next != NULL) {
        sc->next->prev = sc;
    }
    sc->ts->conns[id] = sc;
}

static void
conn_unlink(struct stream_conn *sc)
{
    struct stream_conn **head = &sc->ts->conns[ioc_reactor_id(sc->reactor)];

    if (sc->prev != NULL) {
        sc->prev->next = sc->next;
    } else if (*head == sc) {
        *head = sc->next;
    }
    if (sc->next != NULL) {
        sc->next->prev = sc->prev;
    }
    sc->prev = NULL;
    sc->next = NULL;
}

/* A connection that has no engine (never started, or lost on the way). */
static void
conn_discard(struct stream_conn *sc)
{
    struct ioc_target_stream *ts = sc->ts;

    close(sc->fd);
    if (sc->pipe_fds[0] >= 0) {
        close(sc->pipe_fds[0]);
        close(sc->pipe_fds[1]);
    }
    free(sc->carry);
    free(sc);
    atomic_fetch_sub(&ts->nr_conns, 1);
}

static void
conn_free(struct stream_conn *sc)
{
    ioc_timer_cancel(&sc->flush_timer);
    conn_unlink(sc);
    STREAM_DEBUG(sc->ts, "client %s: disconnected", sc->peer);
    sc->ts->ops->engine_destroy(&sc->engine);
    conn_discard(sc);
}

static void conn_post_send(struct stream_conn *sc, bool flush);

static void
conn_flush_timer(void *arg)
{
    struct stream_conn *sc = arg;

    sc->flush_timer = NULL;
    sc->flush_due = true;
    if (!sc->send_posted) {
        conn_post_send(sc, true);
    }
}

/*
 * Hold the n queued iovecs back (target_coalesce.h)? Only small batches are
 * held, only while the connection's traffic says holding costs the client
 * nothing, and for at most the coalescing time: the first hold arms the
 * flush timer and lets the reactor sleep through arrivals until it fires.
 */
static bool
conn_hold(struct stream_conn *sc, int n)
{
    unsigned us = atomic_load_explicit(&g_coalesce_us, memory_order_relaxed);
    uint64_t now;

    if (us == 0 || sc->flush_due || n >= sc->ts->ops->send_iov_max / 2 ||
        ioc_iov_len(sc->iov, (size_t)n) >= STREAM_HOLD_MAX_BYTES ||
        !ioc_coalesce_holding(&sc->coalesce, ioc_reactor_iter_ns())) {
        return false;
    }
    if (sc->flush_timer != NULL) {
        return true;
    }
    now = ioc_now_ns();
    sc->flush_timer = ioc_timer_start(sc->reactor, us, conn_flush_timer, sc);
    if (sc->flush_timer == NULL) {
        return false; /* no memory for the timer: send now */
    }
    ioc_reactor_hold(sc->reactor, now + (uint64_t)us * 1000);
    return true;
}

static void
conn_writable(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct stream_conn *sc = ioc_container_of(req, struct stream_conn, writable_req);

    (void)res; /* an error shows in the next splice */
    (void)cqe_flags;
    sc->send_posted = false;
    ioc_target_stream_conn_process(sc);
}

/* The socket is full mid-splice: continue once it has room (a send in flight meanwhile). */
static void
conn_wait_writable(struct stream_conn *sc)
{
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(sc->reactor);

    io_uring_prep_poll_add(sqe, sc->fd, POLLOUT);
    ioc_uring_sqe_set_req(sqe, &sc->writable_req);
    sc->send_posted = true;
}

/*
 * Send the file bytes at the head of the output: splice them into the pipe
 * (page references, no copy) and from the pipe into the socket (no copy
 * either: the socket takes the pages), on the reactor thread, since
 * io_uring runs every splice on a worker thread. Neither call waits: the
 * bytes are in the page cache (ioc_bdev_splice_source checked) and the
 * socket is non-blocking; a full socket parks the rest in the pipe until
 * POLLOUT. Returns true if the output stops here for now (waiting for room,
 * or failed), false once the head is back to iovecs or the queue is empty.
 */
static bool
conn_splice(struct stream_conn *sc)
{
    const struct ioc_target_stream_ops *ops = sc->ts->ops;
    uint64_t off;
    size_t len;
    ssize_t n;
    int fd;

    while (ops->out_file(sc->engine, &fd, &off, &len)) {
        if (sc->pipe_bytes == 0) {
            loff_t at = (loff_t)off;

            n = splice(fd, &at, sc->pipe_fds[1], NULL, IOC_MIN(len, sc->pipe_size),
                       SPLICE_F_NONBLOCK);
            if (n <= 0) {
                IOC_WARN(ops->name, "client %s: splice from the file at %llu: %s", sc->peer,
                         (unsigned long long)off, n == 0 ? "end of file" : strerror(errno));
                ops->sent(sc->engine, -EIO); /* the reply is half sent: the connection ends */
                return true;
            }
            sc->pipe_bytes = (size_t)n;
        }
        n = splice(sc->pipe_fds[0], NULL, sc->fd, NULL, sc->pipe_bytes,
                   SPLICE_F_NONBLOCK | (len > sc->pipe_bytes ? SPLICE_F_MORE : 0));
        if (n < 0 && errno == EAGAIN) {
            conn_wait_writable(sc);
            return true;
        }
        if (n <= 0) {
            ops->sent(sc->engine, n < 0 ? -errno : -EPIPE);
            return true;
        }
        sc->pipe_bytes -= (size_t)n;
        ioc_coalesce_account(&sc->coalesce, (size_t)n);
        ops->sent(sc->engine, n);
    }
    return false;
}

/* Send what the engine has queued, unless it is held back (flush: never). */
static void
conn_post_send(struct stream_conn *sc, bool flush)
{
    struct io_uring_sqe *sqe;
    int n;

    if (sc->ts->ops->out_file != NULL && conn_splice(sc)) {
        return;
    }
    n = sc->ts->ops->out_iov(sc->engine, sc->iov, sc->ts->ops->send_iov_max);
    if (n == 0 || (!flush && conn_hold(sc, n))) {
        return;
    }
    sc->flush_due = false;
    ioc_timer_cancel(&sc->flush_timer);
    memset(&sc->msg, 0, sizeof(sc->msg));
    sc->msg.msg_iov = sc->iov;
    sc->msg.msg_iovlen = (size_t)n;
    sqe = ioc_reactor_get_sqe(sc->reactor);
    io_uring_prep_sendmsg(sqe, sc->fd, &sc->msg, MSG_NOSIGNAL);
    ioc_uring_sqe_set_req(sqe, &sc->send_req);
    sc->send_posted = true;
}

static void
conn_post_recv(struct stream_conn *sc)
{
    struct io_uring_sqe *sqe;
    void *buf;
    size_t len;

    if (!sc->ts->ops->recv_buf(sc->engine, &buf, &len)) {
        return;
    }
    sqe = ioc_reactor_get_sqe(sc->reactor);
    io_uring_prep_recv(sqe, sc->fd, buf, len, 0);
    ioc_uring_sqe_set_req(sqe, &sc->recv_req);
    sc->recv_posted = true;
}

static void conn_start_msg(void *arg);

/* Carry the unhandled input to reactor r; the engine there picks it up. */
static void
conn_move(struct stream_conn *sc, struct ioc_reactor *r)
{
    const struct ioc_target_stream_ops *ops = sc->ts->ops;
    const void *buf;
    size_t len;

    ioc_timer_cancel(&sc->flush_timer);
    ops->pending_input(sc->engine, &buf, &len);
    sc->carry = malloc(len > 0 ? len : 1);
    if (sc->carry == NULL) {
        ops->abort(sc->engine);
        return;
    }
    memcpy(sc->carry, buf, len);
    sc->carry_len = len;
    conn_unlink(sc);
    ops->engine_destroy(&sc->engine);
    if (ioc_reactor_send_msg(r, conn_start_msg, sc) < 0) {
        conn_discard(sc);
    }
}

/* The engine's process(): post what can be posted, move or tear down. */
void
ioc_target_stream_conn_process(void *ctx)
{
    struct stream_conn *sc = ctx;
    const struct ioc_target_stream_ops *ops = sc->ts->ops;
    struct ioc_reactor *to = ops->move_to != NULL ? ops->move_to(sc->engine) : NULL;

    if (to != NULL) {
        if (!sc->send_posted) {
            conn_post_send(sc, true); /* nothing queued may be left behind */
        }
        if (!sc->send_posted && !sc->recv_posted) {
            conn_move(sc, to);
        }
        return;
    }
    if (!sc->send_posted) {
        conn_post_send(sc, sc->shut || ops->finished(sc->engine));
    }
    if (!sc->recv_posted && !sc->shut) {
        conn_post_recv(sc);
    }
    if (!ops->finished(sc->engine)) {
        return;
    }
    if (!sc->shut) {
        shutdown(sc->fd, SHUT_RDWR); /* completes a pending recv with 0 */
        sc->shut = true;
    }
    if (!sc->send_posted && !sc->recv_posted) {
        conn_free(sc);
    }
}

/*
 * A recv or sendmsg that completed with EAGAIN: possible only once the socket
 * is non-blocking (splicing) and io_uring, after a poll wake-up that found
 * nothing to do, retried it on a worker thread, where a non-blocking socket
 * answers EAGAIN instead of waiting. Nothing was transferred: post it again
 * (a new request arms a new poll).
 */
static void
conn_retry_after_eagain(struct stream_conn *sc)
{
    ioc_target_stream_conn_process(sc);
}

static void
conn_recv_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct stream_conn *sc = ioc_container_of(req, struct stream_conn, recv_req);

    (void)cqe_flags;
    sc->recv_posted = false;
    if (res == -EAGAIN) {
        conn_retry_after_eagain(sc);
        return;
    }
    if (res > 0) {
        ioc_coalesce_account(&sc->coalesce, (size_t)res);
    }
    sc->ts->ops->recv_done(sc->engine, res);
}

static void
conn_send_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct stream_conn *sc = ioc_container_of(req, struct stream_conn, send_req);

    (void)cqe_flags;
    sc->send_posted = false;
    if (res == -EAGAIN) {
        conn_retry_after_eagain(sc);
        return;
    }
    if (res > 0) {
        ioc_coalesce_account(&sc->coalesce, (size_t)res);
    }
    sc->ts->ops->sent(sc->engine, res);
}

/* A moved connection: the new engine gets the carried bytes first. */
static void
conn_feed_carry(struct stream_conn *sc)
{
    const struct ioc_target_stream_ops *ops = sc->ts->ops;
    void *buf;
    size_t room;

    ops->moved(sc->engine);
    /* the bytes fit: they came out of an engine's receive buffer of the same size */
    if (sc->carry_len > 0 && ops->recv_buf(sc->engine, &buf, &room) && room >= sc->carry_len) {
        memcpy(buf, sc->carry, sc->carry_len);
        ops->recv_done(sc->engine, (ssize_t)sc->carry_len);
    }
    free(sc->carry);
    sc->carry = NULL;
}

/* Runs on the chosen reactor: the socket becomes a connection there. */
static void
conn_start_msg(void *arg)
{
    struct stream_conn *sc = arg;
    struct ioc_target_stream *ts = sc->ts;
    struct ioc_reactor *r = ioc_reactor_self();

    sc->reactor = r;
    sc->recv_req.done = conn_recv_done;
    sc->send_req.done = conn_send_done;
    sc->writable_req.done = conn_writable;
    ioc_coalesce_init(&sc->coalesce);
    if (atomic_load(&ts->stopping) ||
        ts->ops->engine_create(r, sc, sc->peer, sc->local, &sc->engine) < 0) {
        conn_discard(sc);
        return;
    }
    conn_link(sc);
    STREAM_DEBUG(ts, "client %s: %s on reactor %u", sc->peer,
                 sc->carry != NULL ? "moved" : "connected", ioc_reactor_id(r));
    if (sc->carry != NULL) {
        conn_feed_carry(sc);
    }
    ioc_target_stream_conn_process(sc);
}

static void
conn_hand_off(struct stream_listener *l, int fd)
{
    struct ioc_target_stream *ts = l->ts;
    size_t iov_size = (size_t)ts->ops->send_iov_max * sizeof(struct iovec);
    struct stream_conn *sc = calloc(1, sizeof(*sc) + iov_size);
    int one = 1;

    if (sc == NULL) {
        close(fd);
        return;
    }
    if (!l->is_unix) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    sc->ts = ts;
    sc->fd = fd;
    sc->pipe_fds[0] = sc->pipe_fds[1] = -1;
    ts->ops->conn_name(fd, l->is_unix, sc->peer, sizeof(sc->peer), sc->local,
                       sizeof(sc->local));
    atomic_fetch_add(&ts->nr_conns, 1);
    if (ioc_reactor_send_msg(ioc_reactor_next(), conn_start_msg, sc) < 0) {
        conn_discard(sc);
    }
}

void
ioc_target_stream_foreach(struct ioc_target_stream *ts, void (*fn)(void *engine, void *arg),
                          void *arg)
{
    unsigned id = ioc_reactor_id(ioc_reactor_self());

    for (struct stream_conn *sc = ts->conns[id]; sc != NULL; sc = sc->next) {
        fn(sc->engine, arg);
    }
}

/* -------------------------------------------------------------- accepting */

static void listener_post_accept(struct stream_listener *l);

static void
listener_retry(void *arg)
{
    listener_post_accept(arg);
}

static void
listener_accept_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct stream_listener *l = ioc_container_of(req, struct stream_listener, accept_req);
    struct ioc_target_stream *ts = l->ts;

    (void)cqe_flags;
    if (res >= 0) {
        conn_hand_off(l, res);
    }
    if (atomic_load(&ts->stopping)) {
        atomic_store(&l->accept_posted, false);
        return;
    }
    if (res < 0 && res != -EINTR && res != -ECONNABORTED) {
        /* EMFILE, ENOBUFS...: back off instead of spinning on the error */
        if (ioc_log_ratelimit_pass(&ts->rl_last, &ts->rl_dropped)) {
            IOC_ERR(ts->ops->name, "accept: %s", strerror(-res));
        }
        if (ioc_timer_start(ts->accept_reactor, STREAM_ACCEPT_RETRY_US, listener_retry, l) !=
            NULL) {
            return;
        }
    }
    listener_post_accept(l);
}

static void
listener_post_accept(struct stream_listener *l)
{
    struct io_uring_sqe *sqe;

    if (atomic_load(&l->ts->stopping)) {
        atomic_store(&l->accept_posted, false);
        return;
    }
    sqe = ioc_reactor_get_sqe(l->ts->accept_reactor);
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
    struct ioc_target_stream *ts = arg;

    for (unsigned i = 0; i < ts->nr_listeners; i++) {
        ts->listeners[i].accept_req.done = listener_accept_done;
        ts->listeners[i].cancel_req.done = listener_cancel_done;
        listener_post_accept(&ts->listeners[i]);
    }
}

static void
listeners_cancel_msg(void *arg)
{
    struct ioc_target_stream *ts = arg;

    for (unsigned i = 0; i < ts->nr_listeners; i++) {
        struct stream_listener *l = &ts->listeners[i];
        struct io_uring_sqe *sqe;

        if (!atomic_load(&l->accept_posted)) {
            continue;
        }
        sqe = ioc_reactor_get_sqe(ts->accept_reactor);
        io_uring_prep_cancel(sqe, &l->accept_req, 0);
        ioc_uring_sqe_set_req(sqe, &l->cancel_req);
    }
}

/* -------------------------------------------------------------- listening */

/* Split "host:port", "[v6]:port" or ":port" into host (empty = any) and port. */
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
        return -ENAMETOOLONG;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

static void
listener_add(struct ioc_target_stream *ts, int fd, const char *unix_path)
{
    struct stream_listener *l = &ts->listeners[ts->nr_listeners++];

    l->ts = ts;
    l->fd = fd;
    if (unix_path != NULL) {
        l->is_unix = true;
        memcpy(l->path, unix_path, strlen(unix_path) + 1);
    }
}

static int
listen_tcp(struct ioc_target_stream *ts, const char *addr, struct ioc_err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    const char *name = ts->ops->name, *port;
    char host[256];
    int fd, one = 1, rc;

    rc = listen_addr_split(addr, host, sizeof(host), &port);
    if (rc < 0) {
        return ioc_err_set(err, -EINVAL, "%s listen address %s: %s", name, addr,
                           rc == -EINVAL ? "expected host:port" : "host too long");
    }
    rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        return ioc_err_set(err, -EINVAL, "%s listen address %s: %s", name, addr,
                           gai_strerror(rc));
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        rc = -errno;
        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(res);
        return ioc_err_set(err, rc, "%s listen %s: %s", name, addr, strerror(-rc));
    }
    freeaddrinfo(res);
    listener_add(ts, fd, NULL);
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
listen_unix(struct ioc_target_stream *ts, const char *path, struct ioc_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *name = ts->ops->name;
    int fd, rc;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        return ioc_err_set(err, -ENAMETOOLONG, "%s unix socket %s: path too long", name, path);
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    rc = unix_path_check(&sa);
    if (rc < 0) {
        return ioc_err_set(err, rc, "%s unix socket %s: %s", name, path, strerror(-rc));
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        rc = -errno;
        if (fd >= 0) {
            close(fd);
        }
        return ioc_err_set(err, rc, "%s unix socket %s: %s", name, path, strerror(-rc));
    }
    listener_add(ts, fd, path);
    return 0;
}

static void
listeners_close(struct ioc_target_stream *ts)
{
    for (unsigned i = 0; i < ts->nr_listeners; i++) {
        struct stream_listener *l = &ts->listeners[i];

        close(l->fd);
        if (l->is_unix) {
            unlink(l->path);
        }
    }
    ts->nr_listeners = 0;
}

/* ------------------------------------------------------------ start/stop */

static void
stream_free(struct ioc_target_stream *ts)
{
    listeners_close(ts);
    free(ts->conns);
    free(ts);
}

int
ioc_target_stream_start(const struct ioc_target_stream_ops *ops, const char *tcp,
                        const char *unix_path, struct ioc_target_stream **out,
                        struct ioc_err *err)
{
    struct ioc_target_stream *ts;
    int rc = 0;

    if (ioc_reactor_count() == 0) {
        return ioc_err_set(err, -EINVAL, "%s target: no reactors running", ops->name);
    }
    ts = calloc(1, sizeof(*ts));
    if (ts == NULL || (ts->conns = calloc(ioc_reactor_count(), sizeof(*ts->conns))) == NULL) {
        free(ts);
        return ioc_err_set(err, -ENOMEM, "%s target: out of memory", ops->name);
    }
    ts->ops = ops;
    ts->nr_reactors = ioc_reactor_count();
    if (tcp != NULL) {
        rc = listen_tcp(ts, tcp, err);
    }
    if (rc == 0 && unix_path != NULL) {
        rc = listen_unix(ts, unix_path, err);
    }
    if (rc < 0) {
        stream_free(ts);
        return rc;
    }
    ts->accept_reactor = ioc_reactor_get(0);
    *out = ts;
    return 0;
}

void
ioc_target_stream_accept(struct ioc_target_stream *ts)
{
    ioc_reactor_call_sync(ts->accept_reactor, listeners_start_msg, ts);
}

static void
abort_one(void *engine, void *arg)
{
    const struct ioc_target_stream_ops *ops = arg;

    ops->abort(engine);
}

static void
abort_all_msg(void *arg)
{
    struct ioc_target_stream *ts = arg;

    ioc_target_stream_foreach(ts, abort_one, (void *)ts->ops);
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
listeners_posted(struct ioc_target_stream *ts)
{
    unsigned n = 0;

    for (unsigned i = 0; i < ts->nr_listeners; i++) {
        n += atomic_load(&ts->listeners[i].accept_posted) ? 1 : 0;
    }
    return n;
}

void
ioc_target_stream_stop(struct ioc_target_stream **tsp)
{
    struct ioc_target_stream *ts = *tsp;

    if (ts == NULL) {
        return;
    }
    atomic_store(&ts->stopping, true);
    ioc_reactor_call_sync(ts->accept_reactor, listeners_cancel_msg, ts);
    for (unsigned waited = 0; listeners_posted(ts) > 0 && waited < 1000; waited++) {
        usleep(1000);
    }
    for (unsigned i = 0; i < ts->nr_reactors; i++) {
        ioc_reactor_call_sync(ioc_reactor_get(i), abort_all_msg, ts);
    }
    if (!wait_until_zero(&ts->nr_conns, STREAM_STOP_TIMEOUT_MS)) {
        IOC_ERR(ts->ops->name, "target stop: %u connections did not close",
                atomic_load(&ts->nr_conns));
    }
    stream_free(ts);
    /* only now: messages queued before the aborts may still have used it */
    *tsp = NULL;
}

/*
 * The pipe, 1 MiB if the pipe limits allow (pipe-user-pages-soft; a smaller
 * pipe works, in more steps), and a non-blocking socket so that a splice into
 * it never waits; io_uring's own socket IO does not mind the flag.
 */
bool
ioc_target_stream_conn_can_splice(void *ctx)
{
    struct stream_conn *sc = ctx;
    int flags;
    int size;

    if (sc->pipe_fds[0] >= 0 || sc->no_splice) {
        return !sc->no_splice;
    }
    sc->no_splice = true;
    if (pipe2(sc->pipe_fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        sc->pipe_fds[0] = sc->pipe_fds[1] = -1;
        return false;
    }
    (void)fcntl(sc->pipe_fds[1], F_SETPIPE_SZ, (int)STREAM_PIPE_SIZE);
    size = fcntl(sc->pipe_fds[1], F_GETPIPE_SZ);
    flags = fcntl(sc->fd, F_GETFL);
    if (size <= 0 || flags < 0 || fcntl(sc->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        close(sc->pipe_fds[0]);
        close(sc->pipe_fds[1]);
        sc->pipe_fds[0] = sc->pipe_fds[1] = -1;
        return false;
    }
    sc->pipe_size = (size_t)size;
    sc->no_splice = false;
    STREAM_DEBUG(sc->ts, "client %s: file data goes out by splice (pipe of %d bytes)", sc->peer,
                 size);
    return true;
}

void
ioc_target_stream_set_coalesce_us(unsigned us)
{
    atomic_store(&g_coalesce_us, us);
}
