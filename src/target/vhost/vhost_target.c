/*
 * target/vhost/vhost_target.c - vhost-user-blk exports on the reactors.
 *
 * What: each export is a listening unix socket (accepted with io_uring on one
 * reactor); each accepted client becomes a connection pinned to a reactor
 * chosen round-robin, holding one vhost_dev (vhost_msg.c) and its queues.
 *
 * Control messages: an io_uring POLLIN on the socket; when it fires, whole
 * messages are read with non-blocking recvmsg (fds arrive with the header
 * via SCM_RIGHTS), handled by vhost_dev_handle_msg() and answered with a
 * non-blocking send. vhost-user messages are small (< 300 bytes) and sent
 * whole by one sendmsg, so a unix stream socket delivers each at once; a
 * partial message is treated as a protocol error.
 *
 * Data path and notification (the point of this target): a connection is
 * either POLLING or SLEEPING.
 *   POLLING   a poller (every reactor iteration) takes requests from every
 *             started queue and the rings carry VRING_USED_F_NO_NOTIFY, so
 *             the client does not kick. The poller returns IOC_POLL_BUSY only
 *             when it took requests. Once no request came for idle_window_ns
 *             it clears NO_NOTIFY, fences, rechecks every avail ring (a
 *             request published just before the flag changed would otherwise
 *             wait forever), and, if all are empty, unregisters itself.
 *   SLEEPING  no poller: the reactor can sleep in the kernel. Each started
 *             queue always has an io_uring read posted on its kick eventfd;
 *             a kick switches the connection back to POLLING.
 * The idle window adapts to the traffic: when a kick arrives soon after we
 * went to sleep (less than 4 windows), we slept too early, so the window
 * doubles (up to 1 ms); when the next kick comes late it halves (down to
 * 10 us). An idle client therefore costs nothing but one posted read per
 * queue, and a busy one runs without a single syscall per request.
 * Parking: when the poller has found nothing for VHOST_PARK_NS while bdev IO
 * of this client is in flight, it goes to sleep early (same flag, fence,
 * recheck) and the next completion wakes it, besides kicks. A client mostly
 * answers completions with new requests, so spinning on its avail ring while
 * the device works only burns the core (a registered poller keeps the
 * reactor from ever sleeping; 3.7 s of CPU per 5 s was measured on a slow
 * disk before this).
 * A request that comes while parked kicks, as when sleeping. Parking does
 * not change the idle window.
 * Completions write the call eventfd once per reactor iteration per queue (a
 * deferred call), and only if the client did not set NO_INTERRUPT.
 *
 * Teardown: a closing connection unregisters its poller, cancels its posted
 * poll and kick reads and waits for in-flight bdev IO; it is freed when
 * nothing (kernel or bdev) still points into it, from a deferred call.
 * Export removal cancels the accept, aborts the export's connections on each
 * reactor and waits (bounded) for them to go.
 *
 * Not done: queues of one connection spread over several reactors (all of a
 * client's queues run on its reactor), reconnection state (inflight fd).
 * Rejected: a thread per connection blocking on kicks (a core per client
 * under load and a second threading model).
 */
#include "ioc/common.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "target/vhost/vhost.h"
#include "target/vhost/vhost_internal.h"

#define VHOST_MAX_REACTORS    256
#define VHOST_WINDOW_MIN_NS   10000ull
#define VHOST_WINDOW_INIT_NS  50000ull
#define VHOST_WINDOW_MAX_NS   1000000ull
#define VHOST_PARK_NS         5000ull
#define VHOST_STOP_TIMEOUT_MS 10000

struct vhost_export {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct ioc_bdev *bdev;
    unsigned num_queues;
    bool read_only;
    int listen_fd;
    struct ioc_reactor *reactor;
    struct ioc_uring_req accept_req;
    struct ioc_uring_req cancel_req;
    atomic_bool accept_posted;
    atomic_bool removing;
    atomic_uint conns;
    unsigned serial;
    struct vhost_export *next;
};

struct vhost_conn {
    struct vhost_dev dev;
    struct vhost_export *exp;
    struct ioc_reactor *reactor;
    int fd;
    struct ioc_uring_req poll_req;
    struct ioc_uring_req cancel_req;
    bool poll_posted;
    bool closing;
    bool sleeping;
    bool parked;               /* sleeping while bdev IO is in flight: a completion wakes us */
    struct ioc_poller *poller;
    uint64_t last_work_ns;
    uint64_t sleep_ns;         /* when we went to sleep */
    uint64_t window_ns;        /* adaptive idle window */
    struct ioc_deferred free_defer;
    struct vhost_conn *prev, *next;
};

/* Registry of exports: RPC threads add and remove (the lock is control-plane only). */
static pthread_mutex_t g_exports_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vhost_export *g_exports;
static unsigned g_export_serial;
/* Connections per reactor id, each list touched only on its own reactor. */
static struct vhost_conn *g_conns[VHOST_MAX_REACTORS];

static void conn_close(struct vhost_conn *c);

/* ------------------------------------------------------------ polling and sleeping */

static void
conn_set_no_notify(struct vhost_conn *c, bool on)
{
    for (unsigned i = 0; i < c->dev.max_queues; i++) {
        if (c->dev.queues[i].started) {
            vhost_vring_set_no_notify(&c->dev.queues[i], on);
        }
    }
}

static bool
conn_has_work(struct vhost_conn *c)
{
    for (unsigned i = 0; i < c->dev.max_queues; i++) {
        struct vhost_queue *vq = &c->dev.queues[i];

        if (vq->started && vhost_vring_has_work(vq)) {
            return true;
        }
    }
    return false;
}

/*
 * Idle long enough: ask for kicks, recheck, and sleep if still nothing.
 * park: we sleep early because bdev IO is in flight; its completion wakes us
 * (the client usually answers a completion with a new request), so the
 * reactor can sleep in io_uring while the device works instead of spinning.
 */
static void
conn_try_sleep(struct vhost_conn *c, bool park)
{
    conn_set_no_notify(c, false);
    if (conn_has_work(c) && !c->dev.broken) {
        conn_set_no_notify(c, true);
        return;
    }
    ioc_poller_unregister(&c->poller);
    c->sleeping = true;
    c->parked = park;
    c->sleep_ns = ioc_now_ns();
}

static enum ioc_poll_result
conn_poll(void *arg)
{
    struct vhost_conn *c = arg;
    uint64_t now;
    int n = 0;

    for (unsigned i = 0; i < c->dev.max_queues && !c->dev.broken; i++) {
        struct vhost_queue *vq = &c->dev.queues[i];

        if (vq->started) {
            n += vhost_blk_process(vq, vq->num);
        }
    }
    now = ioc_now_ns();
    if (n > 0) {
        c->last_work_ns = now;
        return IOC_POLL_BUSY;
    }
    if (now - c->last_work_ns > c->window_ns || c->dev.broken) {
        conn_try_sleep(c, false);
    } else if (c->dev.inflight > 0 && now - c->last_work_ns > VHOST_PARK_NS) {
        conn_try_sleep(c, true);
    }
    return IOC_POLL_IDLE;
}

static void
conn_wake(struct vhost_conn *c)
{
    uint64_t now = ioc_now_ns();

    if (!c->sleeping || c->closing) {
        return;
    }
    c->poller = ioc_poller_register(c->reactor, conn_poll, c, 0);
    if (c->poller == NULL) {
        return; /* stay asleep; the next kick retries */
    }
    c->sleeping = false;
    if (c->parked) {
        c->parked = false; /* an early sleep says nothing about the window */
    } else if (now - c->sleep_ns < 4 * c->window_ns) {
        c->window_ns = IOC_MIN(c->window_ns * 2, VHOST_WINDOW_MAX_NS);
    } else {
        c->window_ns = IOC_MAX(c->window_ns / 2, VHOST_WINDOW_MIN_NS);
    }
    c->last_work_ns = now;
    conn_set_no_notify(c, true);
}

/* ------------------------------------------------------------ kicks and calls */

static void conn_maybe_free(struct vhost_conn *c);

static void
kick_post(struct vhost_conn *c, struct vhost_queue *vq)
{
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(c->reactor);

    io_uring_prep_read(sqe, vq->kick_fd, &vq->kick_val, sizeof(vq->kick_val), 0);
    ioc_uring_sqe_set_req(sqe, &vq->kick_req);
    vq->kick_posted = true;
}

static void
kick_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct vhost_queue *vq = ioc_container_of(req, struct vhost_queue, kick_req);
    struct vhost_conn *c = ioc_container_of(vq->dev, struct vhost_conn, dev);

    (void)cqe_flags;
    vq->kick_posted = false;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (vq->started && vq->kick_fd >= 0 && res != -EBADF) {
        kick_post(c, vq);
    }
    if (res > 0) {
        conn_wake(c);
    }
}

static void
cancel_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    (void)req;
    (void)res;
    (void)cqe_flags;
}

static void
uring_cancel(struct vhost_conn *c, struct ioc_uring_req *target)
{
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(c->reactor);

    io_uring_prep_cancel(sqe, target, 0);
    ioc_uring_sqe_set_req(sqe, &c->cancel_req);
}

static void
signal_fn(struct ioc_deferred *d)
{
    struct vhost_queue *vq = ioc_container_of(d, struct vhost_queue, signal_defer);
    uint64_t one = 1;

    if (vq->call_fd >= 0 && vq->used != NULL && vhost_vring_need_signal(vq)) {
        /* an eventfd write never blocks for long: it is a counter */
        if (write(vq->call_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
            IOC_ERR_RATELIMIT("vhost", "%s: call eventfd: %s", vq->dev->name, strerror(errno));
        }
    }
}

static void
dev_queue_started(struct vhost_dev *dev, struct vhost_queue *vq)
{
    struct vhost_conn *c = ioc_container_of(dev, struct vhost_conn, dev);

    if (vq->kick_posted) {
        uring_cancel(c, &vq->kick_req); /* a read on the previous kick fd: repost after */
    } else {
        kick_post(c, vq);
    }
    if (c->sleeping) {
        c->sleep_ns = 0;
        conn_wake(c);
    } else {
        vhost_vring_set_no_notify(vq, true);
    }
}

static void
dev_queue_stopping(struct vhost_dev *dev, struct vhost_queue *vq)
{
    struct vhost_conn *c = ioc_container_of(dev, struct vhost_conn, dev);

    if (vq->kick_posted) {
        uring_cancel(c, &vq->kick_req);
    }
}

static void
dev_completed(struct vhost_dev *dev, struct vhost_queue *vq)
{
    struct vhost_conn *c = ioc_container_of(dev, struct vhost_conn, dev);

    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    ioc_reactor_defer(c->reactor, &vq->signal_defer, signal_fn);
    if (c->parked) {
        conn_wake(c);
    }
}

static const struct vhost_dev_ops g_dev_ops = {
    .queue_started = dev_queue_started,
    .queue_stopping = dev_queue_stopping,
    .completed = dev_completed,
};

/* ------------------------------------------------------------ control messages */

/* Read one whole message. Returns 1, 0 (nothing to read), or -errno (drop the client). */
static int
msg_recv(struct vhost_conn *c, struct vhost_user_hdr *hdr, uint8_t *payload, int *fds,
         int *nfds)
{
    char cbuf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
    struct iovec iov = {hdr, sizeof(*hdr)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf)};
    ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

    *nfds = 0;
    if (n < 0) {
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            int cnt = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

            memcpy(fds + *nfds, CMSG_DATA(cm), sizeof(int) * (size_t)cnt);
            *nfds += cnt;
        }
    }
    if (n == 0) {
        return -EPIPE;
    }
    if ((size_t)n != sizeof(*hdr) || (mh.msg_flags & MSG_CTRUNC) ||
        hdr->size > VHOST_USER_PAYLOAD_MAX) {
        return -EPROTO;
    }
    if (hdr->size > 0 && recv(c->fd, payload, hdr->size, MSG_DONTWAIT) != (ssize_t)hdr->size) {
        return -EPROTO;
    }
    return 1;
}

static int
msg_one(struct vhost_conn *c)
{
    struct vhost_user_hdr hdr;
    uint8_t payload[VHOST_USER_PAYLOAD_MAX];
    struct vhost_reply reply;
    int fds[VHOST_USER_MAX_FDS], nfds = 0;
    int rc = msg_recv(c, &hdr, payload, fds, &nfds);

    if (rc <= 0) {
        for (int i = 0; i < nfds; i++) {
            close(fds[i]);
        }
        return rc;
    }
    rc = vhost_dev_handle_msg(&c->dev, &hdr, payload, fds, nfds, &reply);
    if (rc != 0) {
        IOC_WARN("vhost", "%s: %s: %s: dropping the client", c->dev.name,
                 vhost_request_name(hdr.request), strerror(-rc));
        return rc;
    }
    if (reply.hdr.request != 0 &&
        send(c->fd, &reply, sizeof(reply.hdr) + reply.hdr.size, MSG_DONTWAIT | MSG_NOSIGNAL) !=
            (ssize_t)(sizeof(reply.hdr) + reply.hdr.size)) {
        return -EPIPE;
    }
    return 1;
}

static void
conn_post_poll(struct vhost_conn *c)
{
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(c->reactor);

    io_uring_prep_poll_add(sqe, c->fd, POLLIN);
    ioc_uring_sqe_set_req(sqe, &c->poll_req);
    c->poll_posted = true;
}

static void
conn_poll_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct vhost_conn *c = ioc_container_of(req, struct vhost_conn, poll_req);
    int rc = 1;

    (void)cqe_flags;
    c->poll_posted = false;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (res < 0) {
        rc = res;
    }
    while (rc > 0 && !c->closing) {
        rc = msg_one(c);
    }
    if (rc < 0 || c->closing) {
        conn_close(c);
        return;
    }
    conn_post_poll(c);
}

/* ------------------------------------------------------------ connection lifetime */

static void
conn_free_fn(struct ioc_deferred *d)
{
    struct vhost_conn *c = ioc_container_of(d, struct vhost_conn, free_defer);
    unsigned id = ioc_reactor_id(c->reactor);

    for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
        if (c->dev.queues[i].signal_defer.queued || c->dev.queues[i].kick_posted) {
            return; /* something still runs; it calls conn_maybe_free again */
        }
    }
    if (c->poll_posted || c->dev.inflight > 0) {
        return;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else if (g_conns[id] == c) {
        g_conns[id] = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    IOC_DEBUG(vhost, "%s: disconnected", c->dev.name);
    vhost_dev_fini(&c->dev);
    close(c->fd);
    atomic_fetch_sub(&c->exp->conns, 1);
    free(c);
}

static void
conn_maybe_free(struct vhost_conn *c)
{
    ioc_reactor_defer(c->reactor, &c->free_defer, conn_free_fn);
}

static void
conn_close(struct vhost_conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    ioc_poller_unregister(&c->poller);
    if (c->poll_posted) {
        uring_cancel(c, &c->poll_req);
    }
    for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
        if (c->dev.queues[i].kick_posted) {
            uring_cancel(c, &c->dev.queues[i].kick_req);
        }
    }
    shutdown(c->fd, SHUT_RDWR);
    conn_maybe_free(c);
}

static void
conn_start_msg(void *arg)
{
    struct vhost_conn *c = arg;
    struct ioc_reactor *r = ioc_reactor_self();
    unsigned id = ioc_reactor_id(r);

    c->reactor = r;
    if (atomic_load(&c->exp->removing) || id >= VHOST_MAX_REACTORS) {
        close(c->fd);
        atomic_fetch_sub(&c->exp->conns, 1);
        free(c);
        return;
    }
    vhost_dev_init(&c->dev, &g_dev_ops, c, c->exp->bdev, c->exp->read_only,
                   c->exp->num_queues);
    snprintf(c->dev.name, sizeof(c->dev.name), "vhost %.100s#%d", c->exp->path, c->fd);
    for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
        c->dev.queues[i].kick_req.done = kick_done;
    }
    c->poll_req.done = conn_poll_done;
    c->cancel_req.done = cancel_done;
    c->sleeping = true;
    c->window_ns = VHOST_WINDOW_INIT_NS;
    c->next = g_conns[id];
    if (c->next != NULL) {
        c->next->prev = c;
    }
    g_conns[id] = c;
    conn_post_poll(c);
    IOC_DEBUG(vhost, "%s: connected on reactor %u", c->dev.name, id);
}

/* ------------------------------------------------------------ listening */

static void accept_post(struct vhost_export *e);

static void
accept_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct vhost_export *e = ioc_container_of(req, struct vhost_export, accept_req);
    struct vhost_conn *c;

    (void)cqe_flags;
    if (res >= 0) {
        c = calloc(1, sizeof(*c));
        atomic_fetch_add(&e->conns, 1);
        if (c == NULL) {
            close(res);
            atomic_fetch_sub(&e->conns, 1);
        } else {
            c->fd = res;
            c->exp = e;
            if (ioc_reactor_send_msg(ioc_reactor_next(), conn_start_msg, c) != 0) {
                close(res);
                free(c);
                atomic_fetch_sub(&e->conns, 1);
            }
        }
    } else if (res != -ECANCELED && res != -EINTR && res != -ECONNABORTED) {
        IOC_ERR_RATELIMIT("vhost", "vhost %s: accept: %s", e->path, strerror(-res));
    }
    if (atomic_load(&e->removing) || res == -ECANCELED || res == -EBADF || res == -EINVAL) {
        atomic_store(&e->accept_posted, false);
        return;
    }
    accept_post(e);
}

static void
accept_post(struct vhost_export *e)
{
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(e->reactor);

    io_uring_prep_accept(sqe, e->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    ioc_uring_sqe_set_req(sqe, &e->accept_req);
}

static void
accept_start_msg(void *arg)
{
    struct vhost_export *e = arg;

    e->accept_req.done = accept_done;
    e->cancel_req.done = cancel_done;
    atomic_store(&e->accept_posted, true);
    accept_post(e);
}

static void
accept_cancel_msg(void *arg)
{
    struct vhost_export *e = arg;
    struct io_uring_sqe *sqe;

    if (!atomic_load(&e->accept_posted)) {
        return;
    }
    sqe = ioc_reactor_get_sqe(e->reactor);
    io_uring_prep_cancel(sqe, &e->accept_req, 0);
    ioc_uring_sqe_set_req(sqe, &e->cancel_req);
}

/* Runs on every reactor: close this export's connections there. */
static void
abort_conns_msg(void *arg)
{
    struct vhost_export *e = arg;
    unsigned id = ioc_reactor_id(ioc_reactor_self());

    for (struct vhost_conn *c = g_conns[id], *next; c != NULL; c = next) {
        next = c->next;
        if (c->exp == e) {
            conn_close(c);
        }
    }
}

static int
listen_unix(const char *path, int *out, struct ioc_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path) || path[0] == '\0') {
        return ioc_err_set(err, -ENAMETOOLONG, "socket path too long or empty: %s", path);
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return ioc_err_set(err, -EEXIST, "%s exists and is not a socket", path);
        }
        unlink(path); /* a leftover: no export of ours owns it (checked by the caller) */
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return ioc_err_set(err, -errno, "socket: %s", strerror(errno));
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0) {
        int rc = -errno;

        close(fd);
        return ioc_err_set(err, rc, "%s: %s", path, strerror(-rc));
    }
    *out = fd;
    return 0;
}

/* ------------------------------------------------------------ exports (control path) */

static struct vhost_export *
export_find_locked(const char *path)
{
    for (struct vhost_export *e = g_exports; e != NULL; e = e->next) {
        if (strcmp(e->path, path) == 0) {
            return e;
        }
    }
    return NULL;
}

static void
export_free(struct vhost_export *e)
{
    if (e->listen_fd >= 0) {
        close(e->listen_fd);
        unlink(e->path);
    }
    ioc_bdev_put(&e->bdev);
    free(e);
}

/* Wait (bounded) until cond(e) holds; RPC thread only. */
static bool
export_wait(struct vhost_export *e, bool (*cond)(struct vhost_export *e))
{
    for (unsigned ms = 0; ms < VHOST_STOP_TIMEOUT_MS; ms++) {
        if (cond(e)) {
            return true;
        }
        usleep(1000);
    }
    return cond(e);
}

static bool
accept_idle(struct vhost_export *e)
{
    return !atomic_load(&e->accept_posted);
}

static bool
conns_gone(struct vhost_export *e)
{
    return atomic_load(&e->conns) == 0;
}

int
ioc_vhost_export_add(const char *path, const char *bdev, unsigned num_queues, bool read_only,
                     struct ioc_err *err)
{
    struct vhost_export *e;
    int rc;

    if (ioc_reactor_count() == 0) {
        return ioc_err_set(err, -EAGAIN, "reactors not running");
    }
    if (num_queues > VHOST_MAX_QUEUES) {
        return ioc_err_set(err, -EINVAL, "num_queues: at most %u", VHOST_MAX_QUEUES);
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    e->listen_fd = -1;
    e->num_queues = num_queues == 0 ? 1 : num_queues;
    e->read_only = read_only;
    snprintf(e->path, sizeof(e->path), "%s", path);
    e->bdev = ioc_bdev_get_by_name(bdev);
    if (e->bdev == NULL) {
        free(e);
        return ioc_err_set(err, -ENODEV, "bdev %s: not found", bdev);
    }
    pthread_mutex_lock(&g_exports_lock);
    rc = export_find_locked(path) != NULL
             ? ioc_err_set(err, -EEXIST, "%s: already exported", path)
             : listen_unix(path, &e->listen_fd, err);
    if (rc == 0) {
        e->reactor = ioc_reactor_next();
        e->serial = ++g_export_serial;
        rc = ioc_reactor_call_sync(e->reactor, accept_start_msg, e);
    }
    if (rc != 0) {
        pthread_mutex_unlock(&g_exports_lock);
        export_free(e);
        return rc;
    }
    /* append: list order is creation order */
    struct vhost_export **tail = &g_exports;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = e;
    pthread_mutex_unlock(&g_exports_lock);
    IOC_INFO("vhost", "vhost %s: exporting bdev %s (%u queue%s%s)", path, bdev, e->num_queues,
             e->num_queues == 1 ? "" : "s", read_only ? ", read-only" : "");
    return 0;
}

static void
export_stop(struct vhost_export *e)
{
    atomic_store(&e->removing, true);
    ioc_reactor_call_sync(e->reactor, accept_cancel_msg, e);
    if (!export_wait(e, accept_idle)) {
        IOC_WARN("vhost", "vhost %s: accept did not stop", e->path);
    }
    for (unsigned i = 0; i < ioc_reactor_count(); i++) {
        ioc_reactor_call_sync(ioc_reactor_get(i), abort_conns_msg, e);
    }
    if (!export_wait(e, conns_gone)) {
        IOC_WARN("vhost", "vhost %s: %u connection(s) did not close", e->path,
                 atomic_load(&e->conns));
    }
}

int
ioc_vhost_export_remove(const char *path, struct ioc_err *err)
{
    struct vhost_export **pp, *e = NULL;

    pthread_mutex_lock(&g_exports_lock);
    for (pp = &g_exports; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->path, path) == 0) {
            e = *pp;
            *pp = e->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_exports_lock);
    if (e == NULL) {
        return ioc_err_set(err, -ENOENT, "%s: no such vhost export", path);
    }
    export_stop(e);
    if (atomic_load(&e->conns) != 0 || !accept_idle(e)) {
        return 0; /* leaked on purpose: a reactor may still point into it */
    }
    IOC_INFO("vhost", "vhost %s: removed", path);
    export_free(e);
    return 0;
}

void
ioc_vhost_export_remove_all(void)
{
    for (;;) {
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        struct ioc_err err = {0};

        pthread_mutex_lock(&g_exports_lock);
        if (g_exports == NULL) {
            pthread_mutex_unlock(&g_exports_lock);
            return;
        }
        snprintf(path, sizeof(path), "%s", g_exports->path);
        pthread_mutex_unlock(&g_exports_lock);
        ioc_vhost_export_remove(path, &err);
    }
}

void
ioc_vhost_export_foreach(void (*fn)(const struct ioc_vhost_export_info *info, void *arg),
                         void *arg)
{
    pthread_mutex_lock(&g_exports_lock);
    for (struct vhost_export *e = g_exports; e != NULL; e = e->next) {
        struct ioc_vhost_export_info info = {
            .socket = e->path,
            .bdev = ioc_bdev_name(e->bdev),
            .num_queues = e->num_queues,
            .read_only = e->read_only,
            .connections = atomic_load(&e->conns),
        };

        fn(&info, arg);
    }
    pthread_mutex_unlock(&g_exports_lock);
}
