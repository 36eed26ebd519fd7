/*
 * target/vhost/vhost_target.c - vhost-user-blk exports on the reactors.
 *
 * What: each export is a listening unix socket (accepted with io_uring on one
 * reactor); each accepted client becomes a connection pinned to a reactor
 * chosen round-robin (the connection's reactor), holding one vhost_dev
 * (vhost_msg.c). Each of its started queues runs on a reactor of its own:
 * queue i on reactor (connection's reactor + i) % number of reactors, so one
 * client with several queues uses several cores.
 *
 * Control messages: an io_uring POLLIN on the socket; when it fires, whole
 * messages are read with non-blocking recvmsg (fds arrive with the header
 * via SCM_RIGHTS), handled by vhost_dev_handle_msg() and answered with a
 * non-blocking send, all on the connection's reactor. vhost-user messages are
 * small (< 300 bytes) and sent whole by one sendmsg, so a unix stream socket
 * delivers each at once; a partial message is treated as a protocol error.
 *
 * Queues on several reactors (who owns what). A queue is, as the
 * connection's reactor sees it (vq->run):
 *   IDLE      on no reactor: the control plane owns all of it;
 *   RUNNING   handed to its reactor by a message (queue_start_msg): the data
 *             path fields (rings' indexes, request slots, poller, kick read,
 *             notification state) are that reactor's alone;
 *   STOPPING  queue_stop_msg sent; the queue's reactor unregisters the poller,
 *             clears NO_NOTIFY (the client kicks again; the eventfd keeps
 *             the count), cancels its kick read, lets in-flight bdev IO
 *             complete (completions still go on the used ring and are
 *             signalled), and when nothing of it is left (no kick read, no IO,
 *             no pending signal) sends queue_stopped_msg back: IDLE.
 * Invariant: between messages, a queue is RUNNING exactly when vhost_msg.c
 * says it is started. Before a message is handled, vhost_msg_queue_mask()
 * names the queues it may change (the vring's index for SET_VRING_* and
 * GET_VRING_BASE, every queue for SET_MEM_TABLE, SET_FEATURES, RESET_OWNER
 * and anything unknown, none for GET_* / SET_PROTOCOL_FEATURES / SET_OWNER /
 * GET_CONFIG); those still RUNNING are stopped and the message waits (kept in
 * the connection, the socket not polled) until all are IDLE; only then is it
 * handled and answered, and afterwards every started IDLE queue is started
 * again on its reactor. So the memory table is only (re)mapped with no queue
 * running, GET_VRING_BASE answers after the ring is drained, and no two
 * threads ever touch one queue. Messages between two reactors are FIFO
 * (core/reactor.c's inbox), so a start followed by a stop arrives in order.
 * The one field written from several reactors is dev->broken (atomic).
 *
 * Data path and notification (the point of this target), per queue on its
 * reactor: a queue is either POLLING or SLEEPING.
 *   POLLING   a poller (every reactor iteration) takes requests from the
 *             queue and its ring carries VRING_USED_F_NO_NOTIFY, so the
 *             client does not kick. The poller returns IOC_POLL_BUSY only
 *             when it took requests. Once no request came for idle_window_ns
 *             it clears NO_NOTIFY, fences, rechecks the avail ring (a request
 *             published just before the flag changed would otherwise wait
 *             forever), and, if it is empty, unregisters itself.
 *   SLEEPING  no poller: the reactor can sleep in the kernel. A running
 *             queue always has an io_uring read posted on its kick eventfd;
 *             a kick switches it back to POLLING.
 * The idle window adapts to the traffic: when a kick arrives soon after we
 * went to sleep (less than 4 windows), we slept too early, so the window
 * doubles (up to 1 ms); when the next kick comes late it halves (down to
 * 10 us). An idle client therefore costs nothing but one posted read per
 * queue, and a busy one runs without a single syscall per request.
 * Parking: when the poller has found nothing for VHOST_PARK_NS while bdev IO
 * of this queue is in flight, it goes to sleep early (same flag, fence,
 * recheck) and the next completion wakes it, besides kicks. A client mostly
 * answers completions with new requests, so spinning on its avail ring while
 * the device works only burns the core (a registered poller keeps the
 * reactor from ever sleeping; 3.7 s of CPU per 5 s was measured on a slow
 * disk before this).
 * A request that comes while parked kicks, as when sleeping. Parking does
 * not change the idle window.
 * Completions write the call eventfd once per reactor iteration per queue (a
 * deferred call), and only if the client did not set NO_INTERRUPT. With
 * EVENT_IDX (vhost_vring.c) the client's used_event decides instead, and the
 * completion that passes it signals at once (vhost_vring_early_signal), so a
 * client sleeping until half of its requests are done wakes while the rest
 * still complete.
 *
 * Teardown: a closing connection stops its queues (as above), cancels its
 * posted socket poll, and is freed from a deferred call on its own reactor
 * once every queue is IDLE and nothing of the kernel points into it.
 * Export removal cancels the accept, aborts the export's connections on each
 * reactor and waits (bounded) for them to go.
 *
 * Not done: reconnection state (inflight fd); moving a queue while it runs
 * (a queue's reactor is fixed for the connection's life).
 * Rejected: a thread per connection blocking on kicks (a core per client
 * under load and a second threading model); locks around the queue state
 * (the data path would take one per request).
 */
#include "ioc/common.h"

#include <assert.h>
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

_Static_assert(VHOST_MAX_QUEUES <= 32, "queue masks are 32 bits");

struct vhost_export {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct ioc_bdev *bdev;
    unsigned num_queues;
    bool read_only;
    int listen_fd;
    struct ioc_reactor *reactor;
    struct ioc_uring_req accept_req;
    atomic_bool accept_posted;
    atomic_bool removing;
    atomic_uint conns;
    unsigned serial;
    struct vhost_export *next;
};

/* A message read from the socket, kept while its queues stop. */
struct vhost_pending {
    bool valid;
    struct vhost_user_hdr hdr;
    uint8_t payload[VHOST_USER_PAYLOAD_MAX];
    int fds[VHOST_USER_MAX_FDS];
    int nfds;
};

struct vhost_conn {
    struct vhost_dev dev;
    struct vhost_export *exp;
    struct ioc_reactor *reactor;
    int fd;
    struct ioc_uring_req poll_req;
    bool poll_posted;
    bool closing;
    unsigned stops_pending;     /* queues STOPPING */
    struct vhost_pending pend;
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
static void conn_maybe_free(struct vhost_conn *c);
static void conn_resume(struct vhost_conn *c);

static void
cancel_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    (void)req;
    (void)res;
    (void)cqe_flags;
}

/* Shared by every cancel SQE: its completion does nothing and it never goes away. */
static struct ioc_uring_req g_cancel_req = {.done = cancel_done};

static void
uring_cancel(struct ioc_reactor *r, struct ioc_uring_req *target)
{
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(r);

    io_uring_prep_cancel(sqe, target, 0);
    ioc_uring_sqe_set_req(sqe, &g_cancel_req);
}

/*
 * Send a message to another reactor. The inbox allocates; under memory
 * pressure retry for a while rather than lose a start or a stop.
 */
static int
xsend(struct ioc_reactor *r, ioc_msg_fn fn, void *arg)
{
    int rc = ioc_reactor_send_msg(r, fn, arg);

    for (unsigned i = 0; rc != 0 && i < 1000; i++) {
        usleep(1000);
        rc = ioc_reactor_send_msg(r, fn, arg);
    }
    return rc;
}

static struct vhost_conn *
queue_conn(struct vhost_queue *vq)
{
    return ioc_container_of(vq->dev, struct vhost_conn, dev);
}

/* ------------------------------------------------------------ one queue on its reactor */

static bool
queue_broken(const struct vhost_queue *vq)
{
    return atomic_load_explicit(&vq->dev->broken, memory_order_relaxed);
}

/*
 * Idle long enough: ask for kicks, recheck, and sleep if still nothing.
 * park: we sleep early because bdev IO is in flight; its completion wakes us
 * (the client usually answers a completion with a new request), so the
 * reactor can sleep in io_uring while the device works instead of spinning.
 */
static void
queue_try_sleep(struct vhost_queue *vq, bool park)
{
    vhost_vring_set_no_notify(vq, false);
    if (vhost_vring_has_work(vq) && !queue_broken(vq)) {
        vhost_vring_set_no_notify(vq, true);
        return;
    }
    ioc_poller_unregister(&vq->poller);
    vq->sleeping = true;
    vq->parked = park;
    vq->sleep_ns = ioc_now_ns();
}

static enum ioc_poll_result
queue_poll(void *arg)
{
    struct vhost_queue *vq = arg;
    uint64_t now;
    int n = 0;

    if (!queue_broken(vq)) {
        n = vhost_blk_process(vq, vq->num);
    }
    now = ioc_reactor_iter_ns(); /* the window is tens of us: the iteration's start will do */
    if (n > 0) {
        vq->last_work_ns = now;
        return IOC_POLL_BUSY;
    }
    if (now - vq->last_work_ns > vq->window_ns || queue_broken(vq)) {
        queue_try_sleep(vq, false);
    } else if (vq->inflight > 0 && now - vq->last_work_ns > VHOST_PARK_NS) {
        queue_try_sleep(vq, true);
    }
    return IOC_POLL_IDLE;
}

static void
queue_wake(struct vhost_queue *vq)
{
    uint64_t now = ioc_now_ns();

    if (!vq->sleeping || vq->stop_req) {
        return;
    }
    vq->poller = ioc_poller_register(vq->reactor, queue_poll, vq, 0);
    if (vq->poller == NULL) {
        return; /* stay asleep; the next kick retries */
    }
    vq->sleeping = false;
    if (vq->parked) {
        vq->parked = false; /* an early sleep says nothing about the window */
    } else if (now - vq->sleep_ns < 4 * vq->window_ns) {
        vq->window_ns = IOC_MIN(vq->window_ns * 2, VHOST_WINDOW_MAX_NS);
    } else {
        vq->window_ns = IOC_MAX(vq->window_ns / 2, VHOST_WINDOW_MIN_NS);
    }
    vq->last_work_ns = now;
    vhost_vring_set_no_notify(vq, true);
}

static void queue_stop_check(struct vhost_queue *vq);

static void
kick_post(struct vhost_queue *vq)
{
    struct io_uring_sqe *sqe = ioc_reactor_get_sqe(vq->reactor);

    io_uring_prep_read(sqe, vq->kick_fd, &vq->kick_val, sizeof(vq->kick_val), 0);
    ioc_uring_sqe_set_req(sqe, &vq->kick_req);
    vq->kick_posted = true;
}

static void
kick_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct vhost_queue *vq = ioc_container_of(req, struct vhost_queue, kick_req);

    (void)cqe_flags;
    vq->kick_posted = false;
    if (vq->stop_req) {
        queue_stop_check(vq);
        return;
    }
    if (res < 0 && res != -EINTR && res != -EAGAIN) {
        /* the kick fd is ours until the queue stops: this is not the client's doing */
        IOC_ERR_RATELIMIT("vhost", "%s: queue %u: kick read: %s", vq->dev->name, vq->index,
                          strerror(-res));
        vhost_dev_set_broken(vq->dev, "kick eventfd unreadable");
        return;
    }
    kick_post(vq);
    if (res > 0) {
        queue_wake(vq);
    }
}

static void
call_signal(struct vhost_queue *vq)
{
    uint64_t one = 1;

    /* an eventfd write never blocks for long: it is a counter */
    if (write(vq->call_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        IOC_ERR_RATELIMIT("vhost", "%s: call eventfd: %s", vq->dev->name, strerror(errno));
    }
}

static void
signal_fn(struct ioc_deferred *d)
{
    struct vhost_queue *vq = ioc_container_of(d, struct vhost_queue, signal_defer);

    if (vq->call_fd >= 0 && vhost_vring_need_signal(vq)) {
        call_signal(vq);
    }
    if (vq->stop_req) {
        queue_stop_check(vq);
    }
}

static void
queue_stopped_msg(void *arg)
{
    struct vhost_queue *vq = arg;
    struct vhost_conn *c = queue_conn(vq);

    assert(vq->run == VHOST_QUEUE_STOPPING && c->stops_pending > 0);
    vq->run = VHOST_QUEUE_IDLE;
    c->stops_pending--;
    if (c->closing) {
        conn_maybe_free(c);
    } else if (c->stops_pending == 0 && c->pend.valid) {
        conn_resume(c);
    }
}

/* On the queue's reactor: hand the queue back once nothing of ours points into it. */
static void
queue_stop_fn(struct ioc_deferred *d)
{
    struct vhost_queue *vq = ioc_container_of(d, struct vhost_queue, stop_defer);
    struct vhost_conn *c = queue_conn(vq);

    if (!vq->stop_req || vq->kick_posted || vq->inflight > 0 || vq->signal_defer.queued) {
        return; /* whatever is left calls queue_stop_check again when it finishes */
    }
    vq->stop_req = false;
    if (xsend(c->reactor, queue_stopped_msg, vq) != 0) {
        IOC_ERR("vhost", "%s: queue %u: cannot hand the queue back: out of memory",
                vq->dev->name, vq->index);
    }
}

static void
queue_stop_check(struct vhost_queue *vq)
{
    ioc_reactor_defer(vq->reactor, &vq->stop_defer, queue_stop_fn);
}

static void
queue_stop_msg(void *arg)
{
    struct vhost_queue *vq = arg;

    vq->stop_req = true;
    ioc_poller_unregister(&vq->poller);
    vq->sleeping = true;
    vq->parked = false;
    vhost_vring_set_no_notify(vq, false); /* the client kicks; the eventfd keeps the count */
    if (vq->kick_posted) {
        uring_cancel(vq->reactor, &vq->kick_req);
    }
    queue_stop_check(vq);
}

static void
queue_start_msg(void *arg)
{
    struct vhost_queue *vq = arg;

    vq->stop_req = false;
    vq->sleeping = true;
    vq->parked = false;
    vq->poller = NULL;
    vq->window_ns = VHOST_WINDOW_INIT_NS;
    vq->kick_req.done = kick_done;
    kick_post(vq);
    vq->sleep_ns = 0;
    queue_wake(vq); /* look at the ring at once: requests may be waiting */
    IOC_DEBUG(vhost, "%s: queue %u running on reactor %u", vq->dev->name, vq->index,
              ioc_reactor_id(vq->reactor));
}

static void
dev_completed(struct vhost_dev *dev, struct vhost_queue *vq)
{
    (void)dev;
    if (vhost_queue_event_idx(vq) && vq->call_fd >= 0 && vhost_vring_early_signal(vq)) {
        call_signal(vq); /* the client asked to be woken at this very completion */
    }
    ioc_reactor_defer(vq->reactor, &vq->signal_defer, signal_fn);
    if (vq->stop_req) {
        queue_stop_check(vq);
    } else if (vq->parked) {
        queue_wake(vq);
    }
}

static void
dev_queue_stopping(struct vhost_dev *dev, struct vhost_queue *vq)
{
    (void)dev;
    /* vhost_msg_queue_mask() named this queue, so it was stopped before the message */
    assert(vq->run == VHOST_QUEUE_IDLE);
    (void)vq;
}

static const struct vhost_dev_ops g_dev_ops = {
    .queue_stopping = dev_queue_stopping,
    .completed = dev_completed,
};

/* ------------------------------------------------------------ queues, from the connection */

/* Start every started queue that is not running (after each message). */
static void
conn_queues_run(struct vhost_conn *c)
{
    for (unsigned i = 0; i < c->dev.max_queues; i++) {
        struct vhost_queue *vq = &c->dev.queues[i];

        if (!vq->started || vq->run != VHOST_QUEUE_IDLE) {
            continue;
        }
        vq->run = VHOST_QUEUE_RUNNING;
        if (xsend(vq->reactor, queue_start_msg, vq) != 0) {
            vq->run = VHOST_QUEUE_IDLE;
            vhost_dev_set_broken(&c->dev, "cannot start a queue: out of memory");
        }
    }
}

/* Stop the running queues in mask; returns how many stops are now pending. */
static unsigned
conn_queues_stop(struct vhost_conn *c, uint32_t mask)
{
    for (unsigned i = 0; i < c->dev.max_queues; i++) {
        struct vhost_queue *vq = &c->dev.queues[i];

        if (!(mask & (1u << i)) || vq->run != VHOST_QUEUE_RUNNING) {
            continue;
        }
        vq->run = VHOST_QUEUE_STOPPING;
        c->stops_pending++;
        if (xsend(vq->reactor, queue_stop_msg, vq) != 0) {
            /* the queue keeps running; the connection can never be freed safely */
            IOC_ERR("vhost", "%s: queue %u: cannot stop it: out of memory", c->dev.name, i);
        }
    }
    return c->stops_pending;
}

/* ------------------------------------------------------------ control messages */

static void
pending_drop(struct vhost_pending *p)
{
    for (int i = 0; i < p->nfds; i++) {
        if (p->fds[i] >= 0) {
            close(p->fds[i]);
        }
    }
    p->nfds = 0;
    p->valid = false;
}

/* Read one whole message into c->pend. Returns 1, 0 (nothing to read), or -errno. */
static int
msg_recv(struct vhost_conn *c)
{
    struct vhost_pending *p = &c->pend;
    char cbuf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
    struct iovec iov = {&p->hdr, sizeof(p->hdr)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf)};
    ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

    p->nfds = 0;
    if (n < 0) {
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            int cnt = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

            cnt = IOC_MIN(cnt, (int)VHOST_USER_MAX_FDS - p->nfds);
            memcpy(p->fds + p->nfds, CMSG_DATA(cm), sizeof(int) * (size_t)cnt);
            p->nfds += cnt;
        }
    }
    p->valid = true; /* from here on pending_drop() closes the fds */
    if (n == 0) {
        return -EPIPE;
    }
    if ((size_t)n != sizeof(p->hdr) || (mh.msg_flags & MSG_CTRUNC) ||
        p->hdr.size > VHOST_USER_PAYLOAD_MAX) {
        return -EPROTO;
    }
    if (p->hdr.size > 0 &&
        recv(c->fd, p->payload, p->hdr.size, MSG_DONTWAIT) != (ssize_t)p->hdr.size) {
        return -EPROTO;
    }
    return 1;
}

/*
 * Handle the message in c->pend, or, if queues it may change still run, stop
 * them and keep it (returns 0: wait for queue_stopped_msg). Returns 1 when
 * handled and answered, -errno to drop the client.
 */
static int
msg_handle(struct vhost_conn *c)
{
    struct vhost_pending *p = &c->pend;
    struct vhost_reply reply;
    int rc;

    if (conn_queues_stop(c, vhost_msg_queue_mask(&c->dev, &p->hdr, p->payload)) > 0) {
        return 0;
    }
    rc = vhost_dev_handle_msg(&c->dev, &p->hdr, p->payload, p->fds, p->nfds, &reply);
    p->nfds = 0; /* taken */
    p->valid = false;
    if (rc != 0) {
        IOC_WARN("vhost", "%s: %s: %s: dropping the client", c->dev.name,
                 vhost_request_name(p->hdr.request), strerror(-rc));
        return rc;
    }
    if (reply.hdr.request != 0 &&
        send(c->fd, &reply, sizeof(reply.hdr) + reply.hdr.size, MSG_DONTWAIT | MSG_NOSIGNAL) !=
            (ssize_t)(sizeof(reply.hdr) + reply.hdr.size)) {
        return -EPIPE;
    }
    conn_queues_run(c);
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

/* Handle messages until the socket is empty or one waits for queues to stop. */
static void
conn_msgs(struct vhost_conn *c, int rc)
{
    while (rc > 0 && !c->closing) {
        rc = msg_recv(c);
        if (rc > 0) {
            rc = msg_handle(c);
        }
    }
    if (rc < 0 || c->closing) {
        conn_close(c);
    } else if (!c->pend.valid) {
        conn_post_poll(c);
    } /* else: a message waits for its queues; queue_stopped_msg resumes */
}

static void
conn_resume(struct vhost_conn *c)
{
    int rc = msg_handle(c);

    conn_msgs(c, rc);
}

static void
conn_poll_done(struct ioc_uring_req *req, int res, uint32_t cqe_flags)
{
    struct vhost_conn *c = ioc_container_of(req, struct vhost_conn, poll_req);

    (void)cqe_flags;
    c->poll_posted = false;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    conn_msgs(c, res < 0 ? res : 1);
}

/* ------------------------------------------------------------ connection lifetime */

static void
conn_free_fn(struct ioc_deferred *d)
{
    struct vhost_conn *c = ioc_container_of(d, struct vhost_conn, free_defer);
    unsigned id = ioc_reactor_id(c->reactor);

    for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
        if (c->dev.queues[i].run != VHOST_QUEUE_IDLE) {
            return; /* queue_stopped_msg calls conn_maybe_free again */
        }
    }
    if (c->poll_posted) {
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
    pending_drop(&c->pend);
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
    pending_drop(&c->pend);
    conn_queues_stop(c, UINT32_MAX);
    if (c->poll_posted) {
        uring_cancel(c->reactor, &c->poll_req);
    }
    shutdown(c->fd, SHUT_RDWR);
    conn_maybe_free(c);
}

static void
conn_start_msg(void *arg)
{
    struct vhost_conn *c = arg;
    struct ioc_reactor *r = ioc_reactor_self();
    unsigned id = ioc_reactor_id(r), n = ioc_reactor_count();

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
        /* queue i on the i-th reactor after the connection's (a local reactor: n == 0) */
        c->dev.queues[i].reactor = n > 1 ? ioc_reactor_get((id + i) % n) : r;
    }
    c->poll_req.done = conn_poll_done;
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
    ioc_uring_sqe_set_req(sqe, &g_cancel_req);
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
