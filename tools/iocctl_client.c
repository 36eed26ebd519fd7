/*
 * tools/iocctl_client.c - one JSON-RPC call over iocd's unix socket.
 *
 * Each call connects, sends one request line, reads until one complete JSON
 * value has arrived (parsed the way the server parses: json_loadb with
 * JSON_DISABLE_EOF_CHECK, an error at the very end of the buffer meaning
 * "more to come"), and hangs up. A persistent connection would save a
 * connect per command, but iocctl runs one command per process.
 *
 * Every wait is bounded by --timeout so a wedged daemon does not hang
 * scripts; the default is generous because some methods open files.
 */
#include "ioc/common.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "iocctl.h"

#define CLIENT_RESPONSE_MAX (64u << 20)

static int
client_connect(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd, err;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "iocctl: socket path too long (max %zu bytes): %s\n",
                sizeof(addr.sun_path) - 1, path);
        return -ENAMETOOLONG;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = errno;
        fprintf(stderr, "iocctl: socket: %s\n", strerror(err));
        return -err;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        err = errno;
        fprintf(stderr,
                "iocctl: cannot connect to iocd at %s: %s (is iocd running? start it "
                "with 'iocd --rpc-socket %s', or give its socket with -s PATH)\n",
                path, strerror(err), path);
        close(fd);
        return -err;
    }
    return fd;
}

static long long
client_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to become ready for events until deadline_ms (or forever when < 0). */
static int
client_wait(int fd, short events, long long deadline_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int timeout = -1, rc;

    if (deadline_ms >= 0) {
        timeout = (int)IOC_MAX(deadline_ms - client_now_ms(), 0LL);
    }
    do {
        rc = poll(&pfd, 1, timeout);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        return -errno;
    }
    return rc == 0 ? -ETIMEDOUT : 0;
}

static int
client_send_all(int fd, const char *buf, size_t len, long long deadline_ms)
{
    size_t off = 0;

    while (off < len) {
        int rc = client_wait(fd, POLLOUT, deadline_ms);
        ssize_t n;

        if (rc != 0) {
            return rc;
        }
        n = send(fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        off += n > 0 ? (size_t)n : 0;
    }
    return 0;
}

/* Read until one whole JSON value is in; *out is a new reference. */
static int
client_recv_value(int fd, long long deadline_ms, json_t **out)
{
    char *buf = NULL, *bigger;
    size_t len = 0, cap = 0;
    json_error_t jerr;
    int rc = 0;

    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            bigger = cap <= CLIENT_RESPONSE_MAX ? realloc(buf, cap) : NULL;
            if (bigger == NULL) {
                rc = -EMSGSIZE;
                break;
            }
            buf = bigger;
        }
        rc = client_wait(fd, POLLIN, deadline_ms);
        if (rc != 0) {
            break;
        }
        ssize_t n = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            rc = n == 0 ? -ECONNRESET : -errno;
            break;
        }
        len += n > 0 ? (size_t)n : 0;
        *out = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, &jerr);
        if (*out != NULL) {
            break;
        }
        if ((size_t)jerr.position < len) {
            rc = -EPROTO;
            break;
        }
    }
    free(buf);
    return rc;
}

/* Send the request and wait for the response. Returns 0 or -errno (already printed). */
static int
client_exchange(const struct iocctl_opts *opts, json_t *request, json_t **response)
{
    long long deadline = opts->timeout_s > 0 ? client_now_ms() + opts->timeout_s * 1000LL : -1;
    char *text = json_dumps(request, JSON_COMPACT);
    int fd, rc;

    if (text == NULL) {
        fprintf(stderr, "iocctl: out of memory\n");
        return -ENOMEM;
    }
    fd = client_connect(opts->socket);
    if (fd < 0) {
        free(text);
        return fd;
    }
    rc = client_send_all(fd, text, strlen(text), deadline);
    if (rc == 0) {
        rc = client_send_all(fd, "\n", 1, deadline);
    }
    if (rc == 0) {
        rc = client_recv_value(fd, deadline, response);
    }
    if (rc != 0) {
        fprintf(stderr, "iocctl: %s: %s\n", opts->socket,
                rc == -ETIMEDOUT    ? "no answer within the timeout (see --timeout)"
                : rc == -EPROTO     ? "the answer is not JSON; is this an iocd socket?"
                : rc == -ECONNRESET ? "iocd closed the connection without answering"
                                    : strerror(-rc));
    }
    close(fd);
    free(text);
    return rc;
}

/* Split a JSON-RPC response into result or printed error. */
static int
client_unpack(const char *method, json_t *resp, json_t **result)
{
    json_t *error = json_object_get(resp, "error");
    json_t *res = json_object_get(resp, "result");

    if (error != NULL) {
        const char *msg = json_string_value(json_object_get(error, "message"));
        fprintf(stderr, "iocctl: %s: %s (code %" JSON_INTEGER_FORMAT ")\n", method,
                msg != NULL ? msg : "unknown error",
                json_integer_value(json_object_get(error, "code")));
        return IOCCTL_EXIT_RPC_ERROR;
    }
    if (res == NULL) {
        fprintf(stderr, "iocctl: %s: the answer has neither result nor error\n", method);
        return IOCCTL_EXIT_USAGE;
    }
    *result = json_incref(res);
    return IOCCTL_EXIT_OK;
}

int
iocctl_call(const struct iocctl_opts *opts, const char *method, json_t *params, json_t **result)
{
    json_t *request, *resp = NULL;
    int rc;

    request = json_pack("{s:s, s:s, s:i}", "jsonrpc", "2.0", "method", method, "id", 1);
    if (request == NULL) {
        json_decref(params);
        fprintf(stderr, "iocctl: out of memory\n");
        return IOCCTL_EXIT_USAGE;
    }
    /* json_object_set_new takes params, also when it fails */
    if (params != NULL && json_object_set_new(request, "params", params) != 0) {
        json_decref(request);
        fprintf(stderr, "iocctl: out of memory\n");
        return IOCCTL_EXIT_USAGE;
    }
    rc = client_exchange(opts, request, &resp);
    json_decref(request);
    if (rc != 0) {
        return IOCCTL_EXIT_USAGE;
    }
    rc = client_unpack(method, resp, result);
    json_decref(resp);
    return rc;
}
