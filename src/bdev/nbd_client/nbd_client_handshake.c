/*
 * bdev/nbd_client/nbd_client_handshake.c - connect and negotiate, blocking.
 *
 * The handshake is the control path: it runs once when the bdev is created
 * (on the RPC thread) and again after a connection drops (on the bdev's
 * reconnect helper thread). Blocking code with socket timeouts is the
 * simplest correct way to write a strictly sequential exchange, and neither
 * caller is a reactor, so nothing on the data path ever waits for it.
 * Rejected: an io_uring state machine for the handshake. It would be a
 * second implementation of the same exchange (the first is needed anyway for
 * the synchronous create), for a path that runs a handful of times.
 *
 * Order: greeting -> client flags -> STRUCTURED_REPLY -> SET_META_CONTEXT
 * (base:allocation, only with structured replies) -> GO (asking for
 * INFO_BLOCK_SIZE). A server that answers GO with ERR_UNSUP is old and gets
 * EXPORT_NAME instead. Every server value is checked by nbd_client_proto.c.
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "bdev/nbd_client/nbd_client_internal.h"

/* One handshake's context: where errors are reported and what was learned. */
struct hs {
    int fd;
    const char *uri;
    const char *export_name;
    struct nbdc_export_info *info;
    struct ioc_err *err;
};

/* Read or write exactly len bytes. 0, or -errno (-ECONNRESET on EOF, -ETIMEDOUT on timeout). */
static int
hs_io(struct hs *h, void *buf, size_t len, bool write)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write ? send(h->fd, p, len, MSG_NOSIGNAL) : recv(h->fd, p, len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        if (n == 0) {
            return -ECONNRESET;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
hs_fail_io(struct hs *h, int rc, const char *step)
{
    return ioc_err_set(h->err, rc, "uri '%s': %s: %s", h->uri, step, strerror(-rc));
}

static int
hs_fail_proto(struct hs *h, const char *what)
{
    return ioc_err_set(h->err, -EPROTO, "uri '%s': the server broke the NBD handshake: %s", h->uri,
                       what);
}

/* ---- connecting ---- */

static int
hs_set_timeouts(int fd, unsigned timeout_s)
{
    struct timeval tv = {.tv_sec = (time_t)timeout_s};

    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
        return -errno;
    }
    return 0;
}

/* connect() with a timeout: non-blocking connect, poll, then back to blocking. */
static int
hs_connect_addr(int fd, const struct sockaddr *sa, socklen_t len, unsigned timeout_s)
{
    int flags = fcntl(fd, F_GETFL), soerr = 0;
    socklen_t sl = sizeof(soerr);
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int rc;

    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    rc = connect(fd, sa, len);
    if (rc < 0 && errno == EINPROGRESS) {
        do {
            rc = poll(&pfd, 1, (int)timeout_s * 1000);
        } while (rc < 0 && errno == EINTR);
        if (rc == 0) {
            return -ETIMEDOUT;
        }
        if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
            return -errno;
        }
        rc = soerr != 0 ? -soerr : 0;
    } else if (rc < 0) {
        rc = -errno;
    }
    fcntl(fd, F_SETFL, flags);
    return rc;
}

static int
hs_connect_unix(const struct nbdc_uri *uri, unsigned timeout_s, int *fd)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int rc;

    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", uri->socket);
    *fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*fd < 0) {
        return -errno;
    }
    rc = hs_connect_addr(*fd, (struct sockaddr *)&sun, sizeof(sun), timeout_s);
    if (rc < 0) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

static int
hs_connect_tcp(const struct nbdc_uri *uri, unsigned timeout_s, int *fd, struct ioc_err *err,
               const char *uri_text)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char port[8];
    int rc = -EHOSTUNREACH, one = 1;

    snprintf(port, sizeof(port), "%u", uri->port);
    rc = getaddrinfo(uri->host, port, &hints, &res);
    if (rc != 0) {
        return ioc_err_set(err, -EHOSTUNREACH, "uri '%s': cannot resolve '%s': %s", uri_text,
                           uri->host, gai_strerror(rc));
    }
    rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        *fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (*fd < 0) {
            rc = -errno;
            continue;
        }
        rc = hs_connect_addr(*fd, ai->ai_addr, ai->ai_addrlen, timeout_s);
        if (rc == 0) {
            setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            setsockopt(*fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
            break;
        }
        close(*fd);
        *fd = -1;
    }
    freeaddrinfo(res);
    return rc;
}

/* ---- options ---- */

/* Called for each non-final reply of an option; returns 0 or -EPROTO. */
typedef int (*hs_reply_fn)(struct hs *h, uint32_t type, const uint8_t *data, uint32_t len);

/*
 * Send option and read its replies until ACK (returns 0) or an error reply
 * (returns 1 with *rep_err the reply type and msg the server's text).
 */
static int
hs_option(struct hs *h, const void *opt, size_t optlen, uint32_t option, hs_reply_fn fn,
          uint32_t *rep_err, char *msg, size_t msgcap)
{
    uint8_t hdr[sizeof(struct nbd_opt_reply)];
    uint8_t *data = malloc(NBDC_OPT_REPLY_MAX);
    uint32_t type, len;
    int rc;

    if (data == NULL) {
        return ioc_err_set(h->err, -ENOMEM, "out of memory");
    }
    rc = hs_io(h, (void *)opt, optlen, true);
    while (rc == 0) {
        rc = hs_io(h, hdr, sizeof(hdr), false);
        if (rc < 0) {
            break;
        }
        if (nbdc_opt_reply_parse(hdr, sizeof(hdr), option, &type, &len) < 0) {
            rc = hs_fail_proto(h, "bad option reply header");
            goto out;
        }
        rc = hs_io(h, data, len, false);
        if (rc < 0) {
            break;
        }
        if (type == NBD_REP_ACK) {
            goto out;
        }
        if (type & (1u << 31)) {
            *rep_err = type;
            snprintf(msg, msgcap, "%.*s", (int)IOC_MIN(len, 200u), (const char *)data);
            rc = 1;
            goto out;
        }
        rc = fn(h, type, data, len);
        if (rc < 0) {
            goto out;
        }
    }
    rc = hs_fail_io(h, rc, nbd_opt_name(option));
out:
    free(data);
    return rc;
}

static int
hs_reply_unexpected(struct hs *h, uint32_t type, const uint8_t *data, uint32_t len)
{
    (void)type, (void)data, (void)len;
    return hs_fail_proto(h, "unexpected reply to NBD_OPT_STRUCTURED_REPLY");
}

static int
hs_reply_meta(struct hs *h, uint32_t type, const uint8_t *data, uint32_t len)
{
    uint32_t id;
    int rc;

    if (type != NBD_REP_META_CONTEXT) {
        return hs_fail_proto(h, "unexpected reply to NBD_OPT_SET_META_CONTEXT");
    }
    rc = nbdc_meta_context_parse(data, len, &id);
    if (rc == -EPROTO) {
        return hs_fail_proto(h, "malformed NBD_REP_META_CONTEXT");
    }
    if (rc == 0) {
        h->info->has_meta = true;
        h->info->meta_id = id;
    }
    return 0;
}

static int
hs_reply_info(struct hs *h, uint32_t type, const uint8_t *data, uint32_t len)
{
    if (type != NBD_REP_INFO) {
        return hs_fail_proto(h, "unexpected reply to NBD_OPT_GO");
    }
    if (nbdc_info_parse(data, len, h->info) < 0) {
        return hs_fail_proto(h, "malformed NBD_REP_INFO (export or block size)");
    }
    return 0;
}

static int
hs_structured(struct hs *h)
{
    uint8_t opt[sizeof(struct nbd_opt_hdr)];
    uint32_t rep_err;
    char msg[256];
    int rc;

    nbdc_opt_encode(opt, sizeof(opt), NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    rc = hs_option(h, opt, sizeof(opt), NBD_OPT_STRUCTURED_REPLY, hs_reply_unexpected, &rep_err,
                   msg, sizeof(msg));
    h->info->structured = rc == 0;
    return rc < 0 ? rc : 0;
}

static int
hs_meta(struct hs *h)
{
    uint8_t opt[sizeof(struct nbd_opt_hdr) + NBD_STRING_MAX + 64];
    ssize_t n = nbdc_opt_meta_encode(opt, sizeof(opt), h->export_name);
    uint32_t rep_err;
    char msg[256];
    int rc;

    if (n < 0) {
        return ioc_err_set(h->err, (int)n, "uri '%s': export name too long", h->uri);
    }
    rc = hs_option(h, opt, (size_t)n, NBD_OPT_SET_META_CONTEXT, hs_reply_meta, &rep_err, msg,
                   sizeof(msg));
    if (rc == 1) {
        h->info->has_meta = false; /* refused: no block status, not an error */
    }
    return rc < 0 ? rc : 0;
}

/* The old way into transmission, for servers that do not know NBD_OPT_GO. */
static int
hs_export_name(struct hs *h, uint16_t gflags)
{
    uint8_t opt[sizeof(struct nbd_opt_hdr) + NBD_STRING_MAX];
    uint8_t reply[sizeof(struct nbd_export_name_reply)];
    size_t rlen = (gflags & NBD_FLAG_NO_ZEROES) ? 10 : sizeof(reply);
    ssize_t n = nbdc_opt_encode(opt, sizeof(opt), NBD_OPT_EXPORT_NAME, h->export_name,
                                (uint32_t)strlen(h->export_name));
    int rc;

    if (n < 0) {
        return ioc_err_set(h->err, (int)n, "uri '%s': export name too long", h->uri);
    }
    rc = hs_io(h, opt, (size_t)n, true);
    rc = rc == 0 ? hs_io(h, reply, rlen, false) : rc;
    if (rc == -ECONNRESET) {
        return ioc_err_set(h->err, -ENOENT, "uri '%s': the server has no export '%s'", h->uri,
                           h->export_name);
    }
    if (rc < 0) {
        return hs_fail_io(h, rc, "NBD_OPT_EXPORT_NAME");
    }
    /* Structured replies and meta contexts stay as negotiated. */
    return nbdc_export_name_reply_parse(reply, rlen, h->info);
}

static int
hs_go_refused(struct hs *h, uint32_t rep_err, const char *msg)
{
    int code = rep_err == NBD_REP_ERR_UNKNOWN  ? -ENOENT
               : rep_err == NBD_REP_ERR_POLICY ? -EACCES
               : rep_err == NBD_REP_ERR_TLS_REQD ? -ENOTSUP
                                               : -ECONNREFUSED;

    if (rep_err == NBD_REP_ERR_UNKNOWN) {
        return ioc_err_set(h->err, code, "uri '%s': the server has no export '%s'%s%s", h->uri,
                           h->export_name, msg[0] ? ": " : "", msg);
    }
    return ioc_err_set(h->err, code, "uri '%s': the server refused export '%s' (%s)%s%s", h->uri,
                       h->export_name, nbd_rep_name(rep_err), msg[0] ? ": " : "", msg);
}

static int
hs_go(struct hs *h, uint16_t gflags)
{
    uint8_t opt[sizeof(struct nbd_opt_hdr) + NBD_STRING_MAX + 16];
    ssize_t n = nbdc_opt_go_encode(opt, sizeof(opt), NBD_OPT_GO, h->export_name);
    uint32_t rep_err = 0;
    char msg[256] = "";
    int rc;

    if (n < 0) {
        return ioc_err_set(h->err, (int)n, "uri '%s': export name too long", h->uri);
    }
    rc = hs_option(h, opt, (size_t)n, NBD_OPT_GO, hs_reply_info, &rep_err, msg, sizeof(msg));
    if (rc == 1 && rep_err == NBD_REP_ERR_UNSUP) {
        return hs_export_name(h, gflags);
    }
    if (rc == 1) {
        return hs_go_refused(h, rep_err, msg);
    }
    if (rc == 0 && !h->info->got_export) {
        return hs_fail_proto(h, "NBD_OPT_GO acknowledged without NBD_INFO_EXPORT");
    }
    return rc;
}

static int
hs_run(struct hs *h)
{
    uint8_t greeting[sizeof(struct nbd_greeting)];
    uint16_t gflags;
    uint32_t cflags;
    int rc;

    rc = hs_io(h, greeting, sizeof(greeting), false);
    if (rc < 0) {
        return hs_fail_io(h, rc, "reading the greeting");
    }
    if (nbdc_greeting_parse(greeting, sizeof(greeting), &gflags) < 0) {
        return hs_fail_proto(h, "not an NBD server with the fixed newstyle handshake");
    }
    cflags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE | (gflags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES
                                                                               : 0));
    rc = hs_io(h, &cflags, sizeof(cflags), true);
    if (rc < 0) {
        return hs_fail_io(h, rc, "sending client flags");
    }
    rc = hs_structured(h);
    if (rc == 0 && h->info->structured) {
        rc = hs_meta(h);
    }
    return rc == 0 ? hs_go(h, gflags) : rc;
}

int
nbdc_connect(const struct nbdc_uri *uri, const char *uri_text, unsigned timeout_s, int *fd_out,
             struct nbdc_export_info *info, struct ioc_err *err)
{
    struct hs h = {.fd = -1, .uri = uri_text, .export_name = uri->export_name, .info = info,
                   .err = err};
    int rc;

    memset(info, 0, sizeof(*info));
    info->min_block = 1;
    info->pref_block = 4096;
    info->max_block = NBD_MAX_PAYLOAD;
    rc = uri->is_unix ? hs_connect_unix(uri, timeout_s, &h.fd)
                      : hs_connect_tcp(uri, timeout_s, &h.fd, err, uri_text);
    if (rc < 0) {
        return ioc_err_set(err, rc, "uri '%s': cannot connect: %s", uri_text, strerror(-rc));
    }
    rc = hs_set_timeouts(h.fd, timeout_s);
    rc = rc == 0 ? hs_run(&h) : rc;
    if (rc == 0) {
        rc = hs_set_timeouts(h.fd, 0); /* the reactor's io_uring ops wait as long as they need */
    }
    if (rc < 0) {
        close(h.fd);
        return ioc_err_set(err, rc, "uri '%s': %s", uri_text, strerror(-rc));
    }
    *fd_out = h.fd;
    return 0;
}
