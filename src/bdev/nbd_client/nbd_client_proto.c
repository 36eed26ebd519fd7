/*
 * bdev/nbd_client/nbd_client_proto.c - URI, handshake replies and transmission
 * replies of an NBD client, as pure functions over buffers.
 *
 * The reply parser is incremental: it is fed whatever recv() returned, of any
 * size, and keeps at most one header (24 bytes) of its own. READ data is not
 * buffered: each piece is handed to ops->data as it arrives, straight from
 * the caller's receive buffer, so a 32 MiB READ costs no extra memory. Block
 * descriptors are handed out one by one for the same reason.
 *
 * Checks, in the order the bytes arrive:
 *   header   magic; cookie known (ops->lookup); for a simple reply with data,
 *            that structured replies were not negotiated (the spec forbids it);
 *   chunk    type valid for the command; length exact or bounded per type
 *            (OFFSET_DATA <= 8 + request length, HOLE == 12, BLOCK_STATUS
 *            4 + 8n with n <= 2^20, errors 6 + msglen [+ 8]); NONE only with
 *            DONE; an unknown type without bit 15 is a violation, with it an
 *            error for that request (message skipped);
 *   payload  data/hole/error offsets inside [offset, offset + length) of the
 *            request; hole and extent lengths non-zero; the context id the
 *            one negotiated; an error value non-zero.
 * The reason of the first violation is kept in p->why for the log line.
 *
 * Not done: extended headers (64-bit lengths), BLOCK_STATUS_EXT, more than one
 * metadata context. A server only sends those if the client asked.
 */
#include "ioc/common.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bdev/nbd_client/nbd_client_proto.h"
#include "lib/err.h"

/* ---- URI ---- */

static int
uri_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Percent-decode [s, s+n) into out (cap bytes with the NUL). */
static int
uri_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? uri_hex(s[i + 1]) : -1;
            int lo = i + 2 < n ? uri_hex(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return -EINVAL;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap) {
            return -ENAMETOOLONG;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

static int
uri_parse_tcp(const char *rest, struct nbdc_uri *out, struct ioc_err *err, const char *text)
{
    const char *slash = strchr(rest, '/');
    const char *auth_end = slash != NULL ? slash : rest + strlen(rest);
    const char *host = rest, *host_end, *port = NULL;
    char *end;
    unsigned long p;

    if (strchr(rest, '?') != NULL) {
        return ioc_err_set(err, -EINVAL, "uri: '%s': nbd:// takes no query parameters", text);
    }
    if (*host == '[') {
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL) {
            return ioc_err_set(err, -EINVAL, "uri: '%s': unterminated [IPv6 address]", text);
        }
        host++;
        port = host_end + 1 < auth_end && host_end[1] == ':' ? host_end + 2 : NULL;
    } else {
        host_end = memchr(host, ':', (size_t)(auth_end - host));
        if (host_end != NULL) {
            port = host_end + 1;
        } else {
            host_end = auth_end;
        }
    }
    if (host_end == host || (size_t)(host_end - host) >= sizeof(out->host)) {
        return ioc_err_set(err, -EINVAL, "uri: '%s': expected nbd://HOST[:PORT]/EXPORT", text);
    }
    memcpy(out->host, host, (size_t)(host_end - host));
    out->host[host_end - host] = '\0';
    out->port = NBDC_DEFAULT_PORT;
    if (port != NULL) {
        p = strtoul(port, &end, 10);
        if (end == port || end != auth_end || p == 0 || p > 65535) {
            return ioc_err_set(err, -EINVAL, "uri: '%s': port must be 1..65535", text);
        }
        out->port = (uint16_t)p;
    }
    if (slash == NULL) {
        out->export_name[0] = '\0';
        return 0;
    }
    if (uri_decode(slash + 1, strlen(slash + 1), out->export_name, sizeof(out->export_name)) < 0) {
        return ioc_err_set(err, -EINVAL, "uri: '%s': bad export name (%%XX escapes, <= 4096)",
                           text);
    }
    return 0;
}

static int
uri_parse_unix(const char *rest, struct nbdc_uri *out, struct ioc_err *err, const char *text)
{
    const char *q = strchr(rest, '?');
    const char *path;

    if (rest[0] != '/' || q == NULL || strncmp(q + 1, "socket=", 7) != 0) {
        return ioc_err_set(err, -EINVAL, "uri: '%s': expected nbd+unix:///EXPORT?socket=PATH",
                           text);
    }
    out->is_unix = true;
    if (uri_decode(rest + 1, (size_t)(q - rest - 1), out->export_name,
                   sizeof(out->export_name)) < 0) {
        return ioc_err_set(err, -EINVAL, "uri: '%s': bad export name", text);
    }
    path = q + 8;
    if (strchr(path, '&') != NULL) {
        return ioc_err_set(err, -EINVAL, "uri: '%s': only the socket= parameter is known", text);
    }
    if (uri_decode(path, strlen(path), out->socket, sizeof(out->socket)) < 0 ||
        out->socket[0] == '\0') {
        return ioc_err_set(err, -EINVAL, "uri: '%s': socket path empty or longer than %zu",
                           text, sizeof(out->socket) - 1);
    }
    return 0;
}

int
nbdc_uri_parse(const char *text, struct nbdc_uri *out, struct ioc_err *err)
{
    memset(out, 0, sizeof(*out));
    if (text == NULL) {
        return ioc_err_set(err, -EINVAL, "uri: required");
    }
    if (strncmp(text, "nbd://", 6) == 0) {
        return uri_parse_tcp(text + 6, out, err, text);
    }
    if (strncmp(text, "nbd+unix://", 11) == 0) {
        return uri_parse_unix(text + 11, out, err, text);
    }
    if (strncmp(text, "nbds", 4) == 0) {
        return ioc_err_set(err, -ENOTSUP, "uri: '%s': TLS (nbds) is not supported", text);
    }
    return ioc_err_set(err, -EINVAL,
                       "uri: '%s': expected nbd://HOST[:PORT]/EXPORT or "
                       "nbd+unix:///EXPORT?socket=PATH",
                       text);
}

/* ---- handshake ---- */

static uint16_t
get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return be16toh(v);
}

static uint32_t
get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static uint64_t
get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static void
put16(uint8_t *p, uint16_t v)
{
    v = htobe16(v);
    memcpy(p, &v, 2);
}

static void
put32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static void
put64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static bool
is_pow2(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

int
nbdc_greeting_parse(const void *buf, size_t len, uint16_t *gflags)
{
    const uint8_t *b = buf;

    if (len < sizeof(struct nbd_greeting) || get64(b) != NBD_MAGIC ||
        get64(b + 8) != NBD_OPTS_MAGIC) {
        return -EPROTO;
    }
    *gflags = get16(b + 16);
    return (*gflags & NBD_FLAG_FIXED_NEWSTYLE) ? 0 : -EPROTO;
}

int
nbdc_opt_reply_parse(const void *buf, size_t len, uint32_t option, uint32_t *type,
                     uint32_t *replylen)
{
    const uint8_t *b = buf;

    if (len < sizeof(struct nbd_opt_reply) || get64(b) != NBD_REP_MAGIC ||
        get32(b + 8) != option) {
        return -EPROTO;
    }
    *type = get32(b + 12);
    *replylen = get32(b + 16);
    return *replylen <= NBDC_OPT_REPLY_MAX ? 0 : -EPROTO;
}

static int
info_block_size(const uint8_t *b, struct nbdc_export_info *info)
{
    uint32_t min = get32(b + 2), pref = get32(b + 6), max = get32(b + 10);

    if (!is_pow2(min) || min > 65536 || !is_pow2(pref) || pref < IOC_MAX(min, 512u) ||
        max < pref) {
        return -EPROTO;
    }
    info->min_block = min;
    info->pref_block = pref;
    info->max_block = max;
    return 0;
}

int
nbdc_info_parse(const void *buf, size_t len, struct nbdc_export_info *info)
{
    const uint8_t *b = buf;

    if (len < 2) {
        return -EPROTO;
    }
    switch (get16(b)) {
    case NBD_INFO_EXPORT:
        if (len != sizeof(struct nbd_info_export)) {
            return -EPROTO;
        }
        info->size = get64(b + 2);
        info->eflags = get16(b + 10);
        info->got_export = true;
        return 0;
    case NBD_INFO_BLOCK_SIZE:
        return len == sizeof(struct nbd_info_block_size) ? info_block_size(b, info) : -EPROTO;
    default:
        return 0; /* NAME, DESCRIPTION and unknown: ignored */
    }
}

int
nbdc_meta_context_parse(const void *buf, size_t len, uint32_t *id)
{
    static const char want[] = "base:allocation";
    const uint8_t *b = buf;

    if (len < 5 || len - 4 > NBD_STRING_MAX) {
        return -EPROTO;
    }
    if (len - 4 != sizeof(want) - 1 || memcmp(b + 4, want, sizeof(want) - 1) != 0) {
        return -ENOENT;
    }
    *id = get32(b);
    return 0;
}

int
nbdc_export_name_reply_parse(const void *buf, size_t len, struct nbdc_export_info *info)
{
    const uint8_t *b = buf;

    if (len < 10) {
        return -EPROTO;
    }
    info->size = get64(b);
    info->eflags = get16(b + 8);
    info->got_export = true;
    return 0;
}

ssize_t
nbdc_opt_encode(void *buf, size_t cap, uint32_t option, const void *data, uint32_t len)
{
    uint8_t *b = buf;

    if (cap < sizeof(struct nbd_opt_hdr) + (size_t)len) {
        return -ENOSPC;
    }
    put64(b, NBD_OPTS_MAGIC);
    put32(b + 8, option);
    put32(b + 12, len);
    if (len > 0) {
        memcpy(b + 16, data, len);
    }
    return (ssize_t)(sizeof(struct nbd_opt_hdr) + len);
}

ssize_t
nbdc_opt_go_encode(void *buf, size_t cap, uint32_t option, const char *export_name)
{
    uint8_t data[4 + NBD_STRING_MAX + 4];
    size_t n = strlen(export_name);

    if (n > NBD_STRING_MAX) {
        return -ENAMETOOLONG;
    }
    put32(data, (uint32_t)n);
    memcpy(data + 4, export_name, n);
    put16(data + 4 + n, 1);                  /* one information request: */
    put16(data + 6 + n, NBD_INFO_BLOCK_SIZE); /* the block size constraints */
    return nbdc_opt_encode(buf, cap, option, data, (uint32_t)(n + 8));
}

ssize_t
nbdc_opt_meta_encode(void *buf, size_t cap, const char *export_name)
{
    static const char query[] = "base:allocation";
    uint8_t data[4 + NBD_STRING_MAX + 8 + sizeof(query)];
    size_t n = strlen(export_name), q = sizeof(query) - 1;

    if (n > NBD_STRING_MAX) {
        return -ENAMETOOLONG;
    }
    put32(data, (uint32_t)n);
    memcpy(data + 4, export_name, n);
    put32(data + 4 + n, 1); /* one query */
    put32(data + 8 + n, (uint32_t)q);
    memcpy(data + 12 + n, query, q);
    return nbdc_opt_encode(buf, cap, NBD_OPT_SET_META_CONTEXT, data, (uint32_t)(n + 12 + q));
}

int
nbdc_errno_from_nbd(uint32_t nbd_error)
{
    switch (nbd_error) {
    case NBD_EPERM:
        return -EPERM;
    case NBD_EIO:
        return -EIO;
    case NBD_ENOMEM:
        return -ENOMEM;
    case NBD_EINVAL:
        return -EINVAL;
    case NBD_ENOSPC:
        return -ENOSPC;
    case NBD_EOVERFLOW:
        return -EOVERFLOW;
    case NBD_ENOTSUP:
        return -ENOTSUP;
    case NBD_ESHUTDOWN:
        return -ESHUTDOWN;
    default:
        return -EINVAL;
    }
}

void
nbdc_request_encode(struct nbd_request *req, uint16_t type, uint16_t flags, uint64_t cookie,
                    uint64_t offset, uint32_t length)
{
    req->magic = htobe32(NBD_REQUEST_MAGIC);
    req->flags = htobe16(flags);
    req->type = htobe16(type);
    req->handle = htobe64(cookie);
    req->offset = htobe64(offset);
    req->count = htobe32(length);
}

/* ---- transmission replies ---- */

void
nbdc_reply_parser_init(struct nbdc_reply_parser *p, const struct nbdc_reply_ops *ops, void *ctx,
                       const struct nbdc_export_info *info)
{
    memset(p, 0, sizeof(*p));
    p->ops = ops;
    p->ctx = ctx;
    p->structured = info->structured;
    p->has_meta = info->has_meta;
    p->meta_id = info->meta_id;
    p->state = NBDC_RX_HDR;
    p->need = sizeof(struct nbd_simple_reply);
}

static int
rx_broken(struct nbdc_reply_parser *p, const char *why)
{
    p->state = NBDC_RX_BROKEN;
    p->why = why;
    return -EPROTO;
}

static void
rx_expect_header(struct nbdc_reply_parser *p)
{
    p->state = NBDC_RX_HDR;
    p->need = sizeof(struct nbd_simple_reply);
    p->got = 0;
}

static void
rx_expect_fixed(struct nbdc_reply_parser *p, enum nbdc_rx_state state, size_t need)
{
    p->state = state;
    p->need = need;
    p->got = 0;
}

/* Whether [off, off+len) lies inside the request. */
static bool
rx_in_request(const struct nbdc_reply_parser *p, uint64_t off, uint64_t len)
{
    return off >= p->req.offset && len <= p->req.length &&
           off - p->req.offset <= p->req.length - len;
}

/* The reply (simple, or a chunk with DONE) is over: report it, expect the next header. */
static int
rx_finish_reply(struct nbdc_reply_parser *p, int err)
{
    rx_expect_header(p);
    if (p->ops->done(p->ctx, p->cookie, err) < 0) {
        return rx_broken(p, "reply inconsistent with its request (READ not fully covered)");
    }
    return 0;
}

/* A chunk's payload is fully consumed. */
static int
rx_chunk_end(struct nbdc_reply_parser *p)
{
    if (p->flags & NBD_REPLY_FLAG_DONE) {
        return rx_finish_reply(p, 0);
    }
    rx_expect_header(p);
    return 0;
}

static int
rx_simple(struct nbdc_reply_parser *p)
{
    uint32_t error = get32(p->buf + 4);

    p->simple = true;
    p->cookie = get64(p->buf + 8);
    if (p->ops->lookup(p->ctx, p->cookie, &p->req) < 0) {
        return rx_broken(p, "simple reply with an unknown cookie");
    }
    if (error != 0 || p->req.cmd != NBD_CMD_READ) {
        return rx_finish_reply(p, error != 0 ? nbdc_errno_from_nbd(error) : 0);
    }
    if (p->structured) {
        return rx_broken(p, "simple reply to READ although structured replies were negotiated");
    }
    p->data_off = p->req.offset;
    p->data_left = p->req.length;
    p->state = NBDC_RX_DATA;
    if (p->data_left == 0) {
        return rx_finish_reply(p, 0);
    }
    return 0;
}

/* Decide what a chunk header announces; the fixed part (if any) is collected next. */
static int
rx_chunk_header(struct nbdc_reply_parser *p)
{
    uint32_t len;

    p->simple = false;
    p->flags = get16(p->buf + 4);
    p->type = get16(p->buf + 6);
    p->cookie = get64(p->buf + 8);
    len = p->left = get32(p->buf + 16);
    if (!p->structured) {
        return rx_broken(p, "structured reply chunk without negotiating structured replies");
    }
    if (p->ops->lookup(p->ctx, p->cookie, &p->req) < 0) {
        return rx_broken(p, "structured reply chunk with an unknown cookie");
    }
    switch (p->type) {
    case NBD_REPLY_TYPE_NONE:
        if (len != 0 || !(p->flags & NBD_REPLY_FLAG_DONE)) {
            return rx_broken(p, "NONE chunk with a payload or without DONE");
        }
        return rx_finish_reply(p, 0);
    case NBD_REPLY_TYPE_OFFSET_DATA:
        if (p->req.cmd != NBD_CMD_READ || len < 9 || len - 8 > p->req.length) {
            return rx_broken(p, "OFFSET_DATA chunk: wrong command or length");
        }
        rx_expect_fixed(p, NBDC_RX_FIXED, 8);
        return 0;
    case NBD_REPLY_TYPE_OFFSET_HOLE:
        if (p->req.cmd != NBD_CMD_READ || len != 12) {
            return rx_broken(p, "OFFSET_HOLE chunk: wrong command or length");
        }
        rx_expect_fixed(p, NBDC_RX_FIXED, 12);
        return 0;
    case NBD_REPLY_TYPE_BLOCK_STATUS:
        if (p->req.cmd != NBD_CMD_BLOCK_STATUS || !p->has_meta || len < 12 || (len - 4) % 8 ||
            (len - 4) / 8 > NBDC_EXTENTS_MAX) {
            return rx_broken(p, "BLOCK_STATUS chunk: wrong command or length");
        }
        rx_expect_fixed(p, NBDC_RX_FIXED, 4);
        return 0;
    default:
        if (!(p->type & (1u << 15))) {
            return rx_broken(p, "chunk of an unknown type");
        }
        if (len < 6) {
            return rx_broken(p, "error chunk shorter than 6 bytes");
        }
        rx_expect_fixed(p, NBDC_RX_FIXED, 6);
        return 0;
    }
}

static int
rx_header(struct nbdc_reply_parser *p)
{
    uint32_t magic = get32(p->buf);

    if (magic == NBD_SIMPLE_REPLY_MAGIC) {
        return rx_simple(p);
    }
    if (magic != NBD_STRUCTURED_REPLY_MAGIC) {
        return rx_broken(p, "reply with a bad magic");
    }
    if (p->got < sizeof(struct nbd_structured_reply)) {
        p->need = sizeof(struct nbd_structured_reply);
        return 0;
    }
    return rx_chunk_header(p);
}

/* The fixed part of an error chunk: error value and message length. */
static int
rx_error_fixed(struct nbdc_reply_parser *p)
{
    uint32_t error = get32(p->buf);
    uint32_t tail = p->type == NBD_REPLY_TYPE_ERROR_OFFSET ? 8 : 0;
    bool known = p->type == NBD_REPLY_TYPE_ERROR || p->type == NBD_REPLY_TYPE_ERROR_OFFSET;

    p->msg_len = get16(p->buf + 4);
    p->left -= 6;
    if (error == 0) {
        return rx_broken(p, "error chunk with error value 0");
    }
    if ((uint32_t)p->msg_len + tail > p->left || (known && p->msg_len + tail != p->left)) {
        return rx_broken(p, "error chunk: message length does not fit the chunk");
    }
    p->chunk_err = nbdc_errno_from_nbd(error);
    p->msg_got = 0;
    p->state = NBDC_RX_MSG;
    p->need = 0;
    p->got = 0;
    if (p->left == 0) {
        p->ops->error(p->ctx, p->cookie, p->chunk_err, "");
        return rx_chunk_end(p);
    }
    return 0;
}

static int
rx_fixed(struct nbdc_reply_parser *p)
{
    uint64_t off;
    uint32_t len;

    switch (p->type) {
    case NBD_REPLY_TYPE_OFFSET_DATA:
        off = get64(p->buf);
        p->left -= 8;
        if (!rx_in_request(p, off, p->left)) {
            return rx_broken(p, "OFFSET_DATA chunk outside the request");
        }
        p->data_off = off;
        p->data_left = p->left;
        p->state = NBDC_RX_DATA;
        return 0;
    case NBD_REPLY_TYPE_OFFSET_HOLE:
        off = get64(p->buf);
        len = get32(p->buf + 8);
        p->left = 0;
        if (len == 0 || !rx_in_request(p, off, len)) {
            return rx_broken(p, "OFFSET_HOLE chunk empty or outside the request");
        }
        p->ops->hole(p->ctx, p->cookie, off, len);
        return rx_chunk_end(p);
    case NBD_REPLY_TYPE_BLOCK_STATUS:
        p->left -= 4;
        if (get32(p->buf) != p->meta_id) {
            return rx_broken(p, "BLOCK_STATUS chunk for a context that was not negotiated");
        }
        rx_expect_fixed(p, NBDC_RX_DESC, 8);
        return 0;
    default:
        return rx_error_fixed(p);
    }
}

static int
rx_desc(struct nbdc_reply_parser *p)
{
    uint32_t len = get32(p->buf), flags = get32(p->buf + 4);

    p->left -= 8;
    if (len == 0) {
        return rx_broken(p, "block descriptor of length 0");
    }
    p->ops->extent(p->ctx, p->cookie, len, flags);
    if (p->left == 0) {
        return rx_chunk_end(p);
    }
    p->got = 0;
    return 0;
}

/* Message bytes (kept in part for the log), then ERROR_OFFSET's offset. */
static size_t
rx_msg(struct nbdc_reply_parser *p, const uint8_t *b, size_t len, int *rc)
{
    size_t n;

    *rc = 0;
    if (p->msg_got < p->msg_len) {
        n = IOC_MIN(len, (size_t)(p->msg_len - p->msg_got));
        for (size_t i = 0; i < n && p->msg_got + i < sizeof(p->msg) - 1; i++) {
            p->msg[p->msg_got + i] = (char)b[i];
        }
        p->msg_got += n;
        p->left -= (uint32_t)n;
        p->msg[IOC_MIN(p->msg_got, sizeof(p->msg) - 1)] = '\0';
        return n;
    }
    /* Past the message: collect the trailing fields (ERROR_OFFSET: 8 bytes; unknown: skip). */
    n = IOC_MIN(len, (size_t)p->left);
    if (p->type == NBD_REPLY_TYPE_ERROR_OFFSET) {
        memcpy(p->buf + p->got, b, n);
        p->got += n;
    }
    p->left -= (uint32_t)n;
    if (p->left > 0) {
        return n;
    }
    if (p->type == NBD_REPLY_TYPE_ERROR_OFFSET && p->req.length != 0 &&
        !rx_in_request(p, get64(p->buf), 1)) {
        *rc = rx_broken(p, "ERROR_OFFSET chunk with an offset outside the request");
        return n;
    }
    p->ops->error(p->ctx, p->cookie, p->chunk_err, p->msg);
    *rc = rx_chunk_end(p);
    return n;
}

/* Stream READ data to the callback; finish the reply or chunk when it is all there. */
static size_t
rx_data(struct nbdc_reply_parser *p, const uint8_t *b, size_t len, int *rc)
{
    size_t n = IOC_MIN(len, (size_t)p->data_left);

    *rc = 0;
    p->ops->data(p->ctx, p->cookie, p->data_off, b, n);
    p->data_off += n;
    p->data_left -= (uint32_t)n;
    if (!p->simple) {
        p->left -= (uint32_t)n;
    }
    if (p->data_left == 0) {
        *rc = p->simple ? rx_finish_reply(p, 0) : rx_chunk_end(p);
    }
    return n;
}

/* Collect fixed-size pieces (headers, fixed chunk parts, descriptors) and act on them. */
static size_t
rx_collect(struct nbdc_reply_parser *p, const uint8_t *b, size_t len, int *rc)
{
    size_t n = IOC_MIN(len, p->need - p->got);

    memcpy(p->buf + p->got, b, n);
    p->got += n;
    *rc = 0;
    if (p->got < p->need) {
        return n;
    }
    switch (p->state) {
    case NBDC_RX_HDR:
        *rc = rx_header(p);
        break;
    case NBDC_RX_FIXED:
        *rc = rx_fixed(p);
        break;
    default:
        *rc = rx_desc(p);
        break;
    }
    return n;
}

int
nbdc_reply_parse(struct nbdc_reply_parser *p, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    int rc = 0;

    while (rc == 0 && p->state != NBDC_RX_BROKEN) {
        size_t n;
        /* States that finish without input (an empty payload) are handled inline above. */
        if (len == 0) {
            return 0;
        }
        switch (p->state) {
        case NBDC_RX_DATA:
            n = rx_data(p, b, len, &rc);
            break;
        case NBDC_RX_MSG:
            n = rx_msg(p, b, len, &rc);
            break;
        default:
            n = rx_collect(p, b, len, &rc);
            break;
        }
        b += n;
        len -= n;
    }
    return p->state == NBDC_RX_BROKEN ? -EPROTO : rc;
}
