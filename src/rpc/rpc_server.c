/*
 * rpc/rpc_server.c - the JSON-RPC unix socket server.
 *
 * One thread of its own runs a poll(2) loop over the listening socket, an
 * eventfd used to stop it, and up to RPC_MAX_CLIENTS connections. It is not
 * a reactor: handlers may block briefly (open a file, wait for a reactor with
 * ioc_reactor_call_sync()), and the control path is neither hot nor worth an
 * io_uring. Requests from all clients run one at a time, in arrival order.
 *
 * Framing: a client sends JSON objects (or JSON-RPC batch arrays), with or
 * without newlines between them. Each read appends to the client's input
 * buffer, which is then parsed with json_loadb(JSON_DISABLE_EOF_CHECK): a
 * success reports how many bytes the value took; a failure whose position is
 * the end of the buffer means "incomplete, wait for more" (this covers a
 * request cut inside a literal such as `tr|ue`, which jansson reports as an
 * invalid token rather than a premature end). Re-parsing from the start on
 * every read is quadratic in the request size, which the 1 MiB input bound
 * keeps cheap; an incremental parser was not worth its code.
 *
 * Malformed input gets one -32700 parse error, then the connection
 * resynchronizes: bytes are dropped up to a line that starts with '{' or '['
 * (so newline-separated clients recover, and a pretty-printed bad request
 * costs one error, not one per line). A client that sends more than 1 MiB
 * without a usable request, or without a line break while resynchronizing,
 * is closed. A client that stops reading its responses is not read from
 * either once RPC_OUT_HIGH bytes are queued for it (backpressure).
 *
 *      read ─► PARSE ──bad──► SKIP_LINE ──'\n'──► LINE_START ──'{' '['──► PARSE
 *                                 ▲                    │ other char
 *                                 └────────────────────┘
 */
#include "ioc/common.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "rpc/rpc.h"

#define RPC_MAX_CLIENTS 64
#define RPC_IN_MAX (1u << 20)   /* largest request accepted */
#define RPC_OUT_HIGH (1u << 20) /* stop reading a client with this much unsent */
#define RPC_READ_CHUNK 65536

enum rpc_client_mode {
    RPC_CLIENT_PARSE,      /* input starts at a request (after whitespace) */
    RPC_CLIENT_SKIP_LINE,  /* after a parse error: dropping input up to '\n' */
    RPC_CLIENT_LINE_START, /* at a line start: '{' or '[' resumes, anything else skips */
};

struct rpc_client {
    int fd;
    enum rpc_client_mode mode;
    char *in;
    size_t in_len;
    size_t skipped; /* bytes dropped in the current resynchronization */
    char *out;
    size_t out_off; /* first unsent byte */
    size_t out_len; /* end of queued bytes */
    size_t out_cap;
    bool eof;     /* peer shut down its write side: answer what is queued, then close */
    bool closing; /* close once out is flushed, read nothing more */
    bool dead;    /* close now */
};

struct rpc_server {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int listen_fd;
    int wake_fd;
    pthread_t thread;
    dev_t sock_dev; /* identity of our socket file, so stop unlinks only ours */
    ino_t sock_ino;
    struct rpc_client *clients[RPC_MAX_CLIENTS];
    size_t nclients;
};

/* Touched only by the thread calling start/stop (main). */
static struct rpc_server *g_rpc_server;

/* ---- clients: output ---- */

static void
rpc_client_free(struct rpc_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->in);
    free(c->out);
    free(c);
}

static int
rpc_client_queue(struct rpc_client *c, const char *data, size_t len)
{
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = IOC_MAX(c->out_cap * 2, c->out_len + len);
        char *out = realloc(c->out, cap);
        if (out == NULL) {
            return -ENOMEM;
        }
        c->out = out;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

/* Queue one response as a single line. Takes ownership of resp. */
static void
rpc_client_send(struct rpc_client *c, json_t *resp)
{
    char *text = json_dumps(resp, JSON_COMPACT);

    json_decref(resp);
    if (text == NULL || rpc_client_queue(c, text, strlen(text)) != 0 ||
        rpc_client_queue(c, "\n", 1) != 0) {
        IOC_ERR("rpc", "client %d: out of memory queueing a response; closing", c->fd);
        c->dead = true;
    }
    free(text);
}

static void
rpc_client_send_error(struct rpc_client *c, int code, const char *msg)
{
    json_t *resp = json_pack("{s:s, s:{s:i, s:s}, s:n}", "jsonrpc", "2.0", "error", "code", code,
                             "message", msg, "id");

    if (resp == NULL) {
        c->dead = true;
        return;
    }
    rpc_client_send(c, resp);
}

static void
rpc_client_flush(struct rpc_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                IOC_DEBUG(rpc, "client %d: send: %s", c->fd, strerror(errno));
                c->dead = true;
            }
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
}

/* ---- clients: input ---- */

/* JSON whitespace. */
static bool
rpc_is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static void
rpc_client_consume(struct rpc_client *c, size_t n)
{
    assert(n <= c->in_len);
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Drop input until a line starts with '{' or '['. Returns true once resynchronized. */
static bool
rpc_client_resync(struct rpc_client *c)
{
    size_t i;

    for (i = 0; i < c->in_len && c->mode != RPC_CLIENT_PARSE; i++) {
        char ch = c->in[i];
        if (c->mode == RPC_CLIENT_SKIP_LINE) {
            c->mode = ch == '\n' ? RPC_CLIENT_LINE_START : RPC_CLIENT_SKIP_LINE;
        } else if (ch == '{' || ch == '[') {
            c->mode = RPC_CLIENT_PARSE;
            break;
        } else if (!rpc_is_space(ch)) {
            c->mode = RPC_CLIENT_SKIP_LINE;
        }
    }
    c->skipped += i;
    rpc_client_consume(c, i);
    if (c->mode == RPC_CLIENT_PARSE) {
        c->skipped = 0;
        return true;
    }
    if (c->skipped > RPC_IN_MAX) {
        IOC_WARN("rpc", "client %d: no request boundary in %zu bytes of bad input; closing", c->fd,
                 c->skipped);
        c->dead = true;
    }
    return false;
}

static void
rpc_client_parse_error(struct rpc_client *c, size_t pos, const char *text)
{
    char msg[IOC_ERR_MSG_MAX];

    snprintf(msg, sizeof(msg), "parse error at byte %zu: %s", pos, text);
    IOC_DEBUG(rpc, "client %d: %s", c->fd, msg);
    rpc_client_send_error(c, IOC_RPC_PARSE_ERROR, msg);
    /* Resume scanning just before where the parser stopped: it may have eaten a '\n'. */
    rpc_client_consume(c, pos > 0 ? pos - 1 : 0);
    c->mode = RPC_CLIENT_SKIP_LINE;
}

/* Input ends inside a request: wait, or give up if no more can come. */
static bool
rpc_client_incomplete(struct rpc_client *c)
{
    if (c->in_len >= RPC_IN_MAX) {
        IOC_WARN("rpc", "client %d: request larger than %u bytes; closing", c->fd, RPC_IN_MAX);
        rpc_client_send_error(c, IOC_RPC_INVALID_REQUEST,
                              "request too large (limit 1 MiB); closing connection");
        c->closing = true;
        c->in_len = 0;
    } else if (c->eof) {
        /* Disconnected mid-request: nothing to answer. */
        c->in_len = 0;
    }
    return false;
}

/* Parse and answer one request at the start of c->in. Returns false when input runs out. */
static bool
rpc_client_step(struct rpc_client *c)
{
    json_error_t jerr;
    json_t *req, *resp;
    size_t ws = 0;

    if (c->mode != RPC_CLIENT_PARSE && !rpc_client_resync(c)) {
        return false;
    }
    while (ws < c->in_len && rpc_is_space(c->in[ws])) {
        ws++;
    }
    rpc_client_consume(c, ws);
    if (c->in_len == 0) {
        return false;
    }
    if (c->in[0] != '{' && c->in[0] != '[') {
        rpc_client_parse_error(c, 1, "expected a JSON object");
        return true;
    }
    req = json_loadb(c->in, c->in_len, JSON_DISABLE_EOF_CHECK, &jerr);
    if (req == NULL) {
        if ((size_t)jerr.position >= c->in_len) {
            return rpc_client_incomplete(c);
        }
        rpc_client_parse_error(c, (size_t)jerr.position, jerr.text);
        return true;
    }
    rpc_client_consume(c, (size_t)jerr.position);
    resp = ioc_rpc_handle(req);
    json_decref(req);
    if (resp != NULL) {
        rpc_client_send(c, resp);
    }
    return true;
}

static void
rpc_client_process(struct rpc_client *c)
{
    while (!c->dead && !c->closing && c->out_len - c->out_off < RPC_OUT_HIGH &&
           rpc_client_step(c)) {
    }
}

static void
rpc_client_read(struct rpc_client *c)
{
    ssize_t n;

    if (c->in == NULL) {
        c->in = malloc(RPC_IN_MAX);
        if (c->in == NULL) {
            c->dead = true;
            return;
        }
    }
    n = recv(c->fd, c->in + c->in_len, IOC_MIN(RPC_READ_CHUNK, RPC_IN_MAX - c->in_len),
             MSG_DONTWAIT);
    if (n > 0) {
        c->in_len += (size_t)n;
    } else if (n == 0) {
        c->eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        IOC_DEBUG(rpc, "client %d: recv: %s", c->fd, strerror(errno));
        c->dead = true;
    }
}

static short
rpc_client_poll_events(const struct rpc_client *c)
{
    short events = 0;

    if (!c->eof && !c->closing && c->in_len < RPC_IN_MAX &&
        c->out_len - c->out_off < RPC_OUT_HIGH) {
        events |= POLLIN;
    }
    if (c->out_off < c->out_len) {
        events |= POLLOUT;
    }
    return events;
}

static void
rpc_client_on_events(struct rpc_client *c, short revents)
{
    if (revents & POLLERR) {
        c->dead = true;
        return;
    }
    if (revents & POLLIN) {
        rpc_client_read(c);
    } else if (revents & POLLHUP) {
        c->dead = true; /* gone both ways: nobody to answer */
        return;
    }
    /* Flush first: queued output may be what held back parsing (backpressure). */
    rpc_client_flush(c);
    rpc_client_process(c);
    rpc_client_flush(c);
    if ((c->eof || c->closing) && c->out_off == c->out_len) {
        c->dead = true;
    }
}

/* ---- server thread ---- */

static void
rpc_server_accept(struct rpc_server *srv)
{
    struct rpc_client *c;
    int fd;

    fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            IOC_WARN("rpc", "%s: accept: %s", srv->path, strerror(errno));
        }
        return;
    }
    if (srv->nclients == RPC_MAX_CLIENTS) {
        IOC_WARN("rpc", "%s: %d clients already connected; refusing one", srv->path,
                 RPC_MAX_CLIENTS);
        close(fd);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->fd = fd;
    srv->clients[srv->nclients++] = c;
    IOC_DEBUG(rpc, "client %d: connected", fd);
}

static void
rpc_server_reap(struct rpc_server *srv)
{
    size_t kept = 0;

    for (size_t i = 0; i < srv->nclients; i++) {
        struct rpc_client *c = srv->clients[i];
        if (c->dead) {
            IOC_DEBUG(rpc, "client %d: closed", c->fd);
            rpc_client_free(c);
        } else {
            srv->clients[kept++] = c;
        }
    }
    srv->nclients = kept;
}

/* One poll round. Returns false when asked to stop. */
static bool
rpc_server_poll_once(struct rpc_server *srv)
{
    struct pollfd pfd[2 + RPC_MAX_CLIENTS];
    struct rpc_client *polled[RPC_MAX_CLIENTS];
    size_t n = srv->nclients;

    pfd[0] = (struct pollfd){.fd = srv->wake_fd, .events = POLLIN};
    pfd[1] = (struct pollfd){.fd = srv->listen_fd, .events = POLLIN};
    for (size_t i = 0; i < n; i++) {
        polled[i] = srv->clients[i];
        pfd[2 + i] =
            (struct pollfd){.fd = polled[i]->fd, .events = rpc_client_poll_events(polled[i])};
    }
    if (poll(pfd, 2 + n, -1) < 0) {
        if (errno != EINTR) {
            IOC_ERR("rpc", "poll: %s", strerror(errno));
        }
        return true;
    }
    if (pfd[0].revents != 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (pfd[2 + i].revents != 0) {
            rpc_client_on_events(polled[i], pfd[2 + i].revents);
        }
    }
    if (pfd[1].revents & POLLIN) {
        rpc_server_accept(srv);
    }
    rpc_server_reap(srv);
    return true;
}

static void *
rpc_server_thread(void *arg)
{
    struct rpc_server *srv = arg;

    while (rpc_server_poll_once(srv)) {
    }
    return NULL;
}

/* ---- start / stop ---- */

/*
 * Make path free for bind: nothing there, or a socket nobody answers on
 * (left by a daemon that died), which is removed. A live server or a file
 * that is not a socket is left alone.
 */
static int
rpc_server_clear_stale(const struct sockaddr_un *addr, struct ioc_err *err)
{
    const char *path = addr->sun_path;
    struct stat st;
    int fd, rc;

    if (lstat(path, &st) != 0) {
        return errno == ENOENT
                   ? 0
                   : ioc_err_set(err, -errno, "rpc socket %s: %s", path, strerror(errno));
    }
    if (!S_ISSOCK(st.st_mode)) {
        return ioc_err_set(err, -EEXIST,
                           "rpc socket %s: exists and is not a socket; "
                           "refusing to replace it",
                           path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return ioc_err_set(err, -errno, "socket: %s", strerror(errno));
    }
    rc = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0 ? 0 : -errno;
    close(fd);
    if (rc == 0) {
        return ioc_err_set(err, -EADDRINUSE,
                           "rpc socket %s: another server is listening "
                           "there (is iocd already running?); stop it or pick another "
                           "path with --rpc-socket",
                           path);
    }
    if (rc != -ECONNREFUSED) {
        return ioc_err_set(err, rc, "rpc socket %s: %s", path, strerror(-rc));
    }
    IOC_INFO("rpc", "removing stale socket %s", path);
    if (unlink(path) != 0 && errno != ENOENT) {
        return ioc_err_set(err, -errno, "rpc socket %s: cannot remove stale socket: %s", path,
                           strerror(errno));
    }
    return 0;
}

static int
rpc_server_listen(struct rpc_server *srv, struct ioc_err *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct stat st;
    int rc;

    memcpy(addr.sun_path, srv->path, sizeof(addr.sun_path));
    rc = rpc_server_clear_stale(&addr, err);
    if (rc != 0) {
        return rc;
    }
    srv->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (srv->listen_fd < 0) {
        return ioc_err_set(err, -errno, "socket: %s", strerror(errno));
    }
    if (bind(srv->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        rc = -errno;
        return ioc_err_set(err, rc, "rpc socket %s: bind: %s%s", srv->path, strerror(-rc),
                           rc == -EADDRINUSE ? " (another iocd starting?)" : "");
    }
    /* Whoever can connect can create bdevs on any path: owner and group only. */
    if (chmod(srv->path, 0660) != 0 || stat(srv->path, &st) != 0) {
        return ioc_err_set(err, -errno, "rpc socket %s: %s", srv->path, strerror(errno));
    }
    srv->sock_dev = st.st_dev;
    srv->sock_ino = st.st_ino;
    if (listen(srv->listen_fd, 32) != 0) {
        return ioc_err_set(err, -errno, "rpc socket %s: listen: %s", srv->path, strerror(errno));
    }
    return 0;
}

/* Start the thread with every signal blocked: signals belong to the main thread. */
static int
rpc_server_spawn(struct rpc_server *srv, struct ioc_err *err)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&srv->thread, NULL, rpc_server_thread, srv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        return ioc_err_set(err, -rc, "rpc: cannot start server thread: %s", strerror(rc));
    }
    return 0;
}

static void
rpc_server_free(struct rpc_server *srv)
{
    struct stat st;

    if (srv == NULL) {
        return;
    }
    for (size_t i = 0; i < srv->nclients; i++) {
        rpc_client_free(srv->clients[i]);
    }
    if (srv->listen_fd >= 0) {
        close(srv->listen_fd);
        /* Unlink only the socket we bound, not one a successor put there. */
        if (stat(srv->path, &st) == 0 && st.st_dev == srv->sock_dev && st.st_ino == srv->sock_ino) {
            unlink(srv->path);
        }
    }
    if (srv->wake_fd >= 0) {
        close(srv->wake_fd);
    }
    free(srv);
}

int
ioc_rpc_server_start(const char *path, struct ioc_err *err)
{
    struct rpc_server *srv;
    int rc;

    if (g_rpc_server != NULL) {
        return ioc_err_set(err, -EALREADY, "rpc server already running on %s", g_rpc_server->path);
    }
    path = path != NULL ? path : IOC_RPC_DEFAULT_SOCKET;
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    srv->listen_fd = srv->wake_fd = -1;
    if (path[0] == '\0' || strlen(path) >= sizeof(srv->path)) {
        rc = ioc_err_set(err, -ENAMETOOLONG, "rpc socket path must be 1 to %zu bytes: %s",
                         sizeof(srv->path) - 1, path);
        goto err;
    }
    snprintf(srv->path, sizeof(srv->path), "%s", path);
    rc = rpc_server_listen(srv, err);
    if (rc != 0) {
        goto err;
    }
    srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv->wake_fd < 0) {
        rc = ioc_err_set(err, -errno, "eventfd: %s", strerror(errno));
        goto err;
    }
    rc = rpc_server_spawn(srv, err);
    if (rc != 0) {
        goto err;
    }
    g_rpc_server = srv;
    IOC_NOTICE("rpc", "listening on %s", srv->path);
    return 0;
err:
    rpc_server_free(srv);
    return rc;
}

void
ioc_rpc_server_stop(void)
{
    struct rpc_server *srv = g_rpc_server;
    uint64_t one = 1;

    if (srv == NULL) {
        return;
    }
    /* A handler cannot stop the server it runs on: the join would wait for itself. */
    assert(!pthread_equal(pthread_self(), srv->thread));
    if (write(srv->wake_fd, &one, sizeof(one)) != sizeof(one)) {
        IOC_ERR("rpc", "cannot wake the server thread: %s", strerror(errno));
    }
    pthread_join(srv->thread, NULL);
    g_rpc_server = NULL;
    IOC_INFO("rpc", "stopped listening on %s", srv->path);
    rpc_server_free(srv);
}
