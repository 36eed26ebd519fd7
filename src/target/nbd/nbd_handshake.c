/*
 * target/nbd/nbd_handshake.c - the fixed newstyle handshake of one connection.
 *
 * What: after the greeting, the client sends its flags and then options one
 * at a time; each gets its replies here (EXPORT_NAME, GO and INFO with the
 * export, name, description and block size infos, LIST, ABORT,
 * STRUCTURED_REPLY, SET_META_CONTEXT and LIST_META_CONTEXT for
 * base:allocation). GO and EXPORT_NAME switch the connection to transmission.
 *
 * How: replies are built in one growing handshake buffer and queued as a
 * single output piece; the next option is only parsed once that piece has
 * been sent (hs_queued), so the buffer never moves under a pending send.
 * Every length comes off the wire and is checked before use; an absurd
 * option length closes the connection, a malformed option gets
 * NBD_REP_ERR_INVALID and the handshake goes on.
 *
 * Not here: TLS (STARTTLS is answered NBD_REP_ERR_UNSUP), extended headers.
 * Split out of nbd_conn.c, which keeps transmission, the request pool and the
 * output queue; the two share nbd_conn_priv.h.
 */
#include "ioc/common.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "target/nbd/nbd_conn_priv.h"

void
nbd_hs_put(struct nbd_conn *c, const void *data, size_t len)
{
    if (c->hs_len + len > c->hs_cap) {
        size_t cap = IOC_MAX(c->hs_cap * 2, c->hs_len + len + 256);
        uint8_t *p = realloc(c->hs_buf, cap);

        if (p == NULL) {
            c->hs_nomem = true;
            return;
        }
        c->hs_buf = p;
        c->hs_cap = cap;
    }
    memcpy(c->hs_buf + c->hs_len, data, len);
    c->hs_len += len;
}

static void
hs_put_be16(struct nbd_conn *c, uint16_t v)
{
    v = htobe16(v);
    nbd_hs_put(c, &v, sizeof(v));
}

static void
hs_put_be32(struct nbd_conn *c, uint32_t v)
{
    v = htobe32(v);
    nbd_hs_put(c, &v, sizeof(v));
}

/* Start an option reply; returns where its header is, for hs_reply_end(). */
static size_t
hs_reply_start(struct nbd_conn *c, uint32_t opt, uint32_t type)
{
    struct nbd_opt_reply r = {
        .magic = htobe64(NBD_REP_MAGIC),
        .option = htobe32(opt),
        .reply = htobe32(type),
        .replylen = 0,
    };
    size_t at = c->hs_len;

    nbd_hs_put(c, &r, sizeof(r));
    return at;
}

static void
hs_reply_end(struct nbd_conn *c, size_t at)
{
    uint32_t len;

    if (c->hs_nomem) {
        return;
    }
    len = htobe32((uint32_t)(c->hs_len - at - sizeof(struct nbd_opt_reply)));
    memcpy(c->hs_buf + at + offsetof(struct nbd_opt_reply, replylen), &len, sizeof(len));
}

static void
hs_reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
    size_t at = hs_reply_start(c, opt, type);

    if (msg != NULL) {
        nbd_hs_put(c, msg, strlen(msg));
    }
    hs_reply_end(c, at);
}

static void
hs_out_done(struct ioc_target_out *o)
{
    struct nbd_conn *c = ioc_container_of(o, struct nbd_conn, hs_out);

    c->hs_len = 0;
    c->hs_queued = false;
}

/* Queue what the handshake buffer holds; options wait until it is sent. */
void
nbd_hs_flush(struct nbd_conn *c)
{
    if (c->hs_nomem) {
        nbd_conn_fail(c, "out of memory");
        return;
    }
    if (c->hs_len == 0) {
        return;
    }
    c->hs_iov.iov_base = c->hs_buf;
    c->hs_iov.iov_len = c->hs_len;
    c->hs_out.iov = &c->hs_iov;
    c->hs_out.iovcnt = 1;
    c->hs_out.done = hs_out_done;
    c->hs_queued = true;
    nbd_conn_queue(c, &c->hs_out);
}

static uint16_t
conn_eflags(const struct nbd_conn *c, const struct nbd_export *e)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;

    if (e->read_only) {
        f |= NBD_FLAG_READ_ONLY;
    }
    if (ioc_bdev_supports(e->bdev, IOC_IO_FLUSH)) {
        f |= NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA;
    }
    if (!e->read_only && ioc_bdev_supports(e->bdev, IOC_IO_UNMAP)) {
        f |= NBD_FLAG_SEND_TRIM;
    }
    if (!e->read_only && ioc_bdev_supports(e->bdev, IOC_IO_WRITE_ZEROES)) {
        f |= NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    }
    if (c->structured) {
        f |= NBD_FLAG_SEND_DF;
    }
    return f;
}

/* Enter transmission on export e; takes over the caller's reference. */
static void
conn_start_transmission(struct nbd_conn *c, struct nbd_export *e)
{
    c->exp = e;
    c->bdev = e->bdev;
    c->size = ioc_bdev_size(e->bdev);
    c->min_block = ioc_bdev_block_size(e->bdev);
    c->buf_align = IOC_MAX(ioc_bdev_buf_align(e->bdev), (uint32_t)sizeof(void *));
    c->eflags = conn_eflags(c, e);
    c->meta_active = c->meta_base_allocation && strcmp(c->meta_export, e->name) == 0;
    atomic_fetch_add(&e->connections, 1);
    nbd_conn_set_state(c, NBD_CONN_TRANSMISSION);
    IOC_DEBUG(nbd, "client %s: export %s, flags 0x%x%s", c->peer, e->name, c->eflags,
              c->structured ? ", structured replies" : "");
}

static void
opt_export_name(struct nbd_conn *c, const uint8_t *data, uint32_t len)
{
    struct nbd_export_name_reply r = {0};
    struct nbd_export *e;

    e = len <= NBD_STRING_MAX ? nbd_export_lookup((const char *)data, len) : NULL;
    if (e == NULL) {
        nbd_conn_fail(c, "NBD_OPT_EXPORT_NAME: unknown export");
        return;
    }
    r.size = htobe64(ioc_bdev_size(e->bdev));
    r.eflags = htobe16(conn_eflags(c, e));
    nbd_hs_put(c, &r, c->no_zeroes ? offsetof(struct nbd_export_name_reply, zeroes) : sizeof(r));
    conn_start_transmission(c, e);
}

static void
opt_info_reply(struct nbd_conn *c, uint32_t opt, const struct nbd_export *e, bool want_name,
               bool want_desc)
{
    struct nbd_info_export ie = {
        .info = htobe16(NBD_INFO_EXPORT),
        .size = htobe64(ioc_bdev_size(e->bdev)),
        .eflags = htobe16(conn_eflags(c, e)),
    };
    struct nbd_info_block_size bs = {
        .info = htobe16(NBD_INFO_BLOCK_SIZE),
        .minimum = htobe32(ioc_bdev_block_size(e->bdev)),
        .preferred = htobe32(IOC_MAX(NBD_PREF_BLOCK, ioc_bdev_block_size(e->bdev))),
        .maximum = htobe32(NBD_MAX_BLOCK),
    };
    size_t at;

    at = hs_reply_start(c, opt, NBD_REP_INFO);
    nbd_hs_put(c, &ie, sizeof(ie));
    hs_reply_end(c, at);
    at = hs_reply_start(c, opt, NBD_REP_INFO);
    nbd_hs_put(c, &bs, sizeof(bs));
    hs_reply_end(c, at);
    if (want_name) {
        at = hs_reply_start(c, opt, NBD_REP_INFO);
        hs_put_be16(c, NBD_INFO_NAME);
        nbd_hs_put(c, e->name, strlen(e->name));
        hs_reply_end(c, at);
    }
    if (want_desc) {
        at = hs_reply_start(c, opt, NBD_REP_INFO);
        hs_put_be16(c, NBD_INFO_DESCRIPTION);
        nbd_hs_put(c, "ioc bdev ", 9);
        nbd_hs_put(c, ioc_bdev_name(e->bdev), strlen(ioc_bdev_name(e->bdev)));
        hs_reply_end(c, at);
    }
    hs_reply(c, opt, NBD_REP_ACK, NULL);
}

/* NBD_OPT_INFO and NBD_OPT_GO: u32 namelen, name, u16 nreqs, u16 reqs[nreqs]. */
static void
opt_info_go(struct nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    bool want_name = false, want_desc = false;
    struct nbd_export *e;
    uint32_t namelen;
    uint16_t nreqs;

    if (len < 6) {
        hs_reply(c, opt, NBD_REP_ERR_INVALID, "option too short");
        return;
    }
    memcpy(&namelen, data, 4);
    namelen = be32toh(namelen);
    if (namelen > len - 6 || namelen > NBD_STRING_MAX) {
        hs_reply(c, opt, NBD_REP_ERR_INVALID, "bad export name length");
        return;
    }
    memcpy(&nreqs, data + 4 + namelen, 2);
    nreqs = be16toh(nreqs);
    if ((uint64_t)6 + namelen + 2u * nreqs != len) {
        hs_reply(c, opt, NBD_REP_ERR_INVALID, "bad information request count");
        return;
    }
    for (uint32_t i = 0; i < nreqs; i++) {
        uint16_t info;

        memcpy(&info, data + 6 + namelen + 2 * i, 2);
        want_name |= be16toh(info) == NBD_INFO_NAME;
        want_desc |= be16toh(info) == NBD_INFO_DESCRIPTION;
    }
    e = nbd_export_lookup((const char *)data + 4, namelen);
    if (e == NULL) {
        hs_reply(c, opt, NBD_REP_ERR_UNKNOWN, "unknown export");
        return;
    }
    opt_info_reply(c, opt, e, want_name, want_desc);
    if (opt == NBD_OPT_GO && !c->hs_nomem) {
        conn_start_transmission(c, e);
    } else {
        nbd_export_put(&e);
    }
}

static void
opt_list_one(const struct nbd_export *e, void *arg)
{
    struct nbd_conn *c = arg;
    size_t at = hs_reply_start(c, NBD_OPT_LIST, NBD_REP_SERVER);
    uint32_t len = (uint32_t)strlen(e->name);

    hs_put_be32(c, len);
    nbd_hs_put(c, e->name, len);
    hs_reply_end(c, at);
}

static void
opt_list(struct nbd_conn *c, uint32_t len)
{
    if (len != 0) {
        hs_reply(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
        return;
    }
    nbd_export_foreach(opt_list_one, c);
    hs_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL);
}

static void
opt_structured_reply(struct nbd_conn *c, uint32_t len)
{
    if (len != 0) {
        hs_reply(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID, "option takes no data");
    } else if (c->structured) {
        hs_reply(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID, "already negotiated");
    } else {
        c->structured = true;
        hs_reply(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL);
    }
}

/* Whether a query names base:allocation (SET) or matches it (LIST also takes "base:"). */
static bool
meta_query_matches(const uint8_t *q, uint32_t len, bool list)
{
    static const char ctx[] = "base:allocation";

    if (len == sizeof(ctx) - 1 && memcmp(q, ctx, len) == 0) {
        return true;
    }
    return list && len == 5 && memcmp(q, "base:", 5) == 0;
}

/*
 * Walk the queries of LIST/SET_META_CONTEXT (u32 namelen, name, u32 nqueries,
 * nqueries x (u32 len, query)). Returns -EINVAL when the layout does not add
 * up to len; else 0 with *match telling whether base:allocation was asked for.
 */
static int
meta_parse(const uint8_t *data, uint32_t len, bool list, uint32_t *namelen, bool *match)
{
    uint32_t nq, pos;

    if (len < 8) {
        return -EINVAL;
    }
    memcpy(namelen, data, 4);
    *namelen = be32toh(*namelen);
    if (*namelen > len - 8 || *namelen > NBD_STRING_MAX) {
        return -EINVAL;
    }
    pos = 4 + *namelen;
    memcpy(&nq, data + pos, 4);
    nq = be32toh(nq);
    pos += 4;
    *match = list && nq == 0;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t qlen;

        if (len - pos < 4) {
            return -EINVAL;
        }
        memcpy(&qlen, data + pos, 4);
        qlen = be32toh(qlen);
        pos += 4;
        if (qlen > len - pos || qlen > NBD_STRING_MAX) {
            return -EINVAL;
        }
        *match |= meta_query_matches(data + pos, qlen, list);
        pos += qlen;
    }
    return pos == len ? 0 : -EINVAL;
}

static void
opt_meta_context(struct nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    bool list = opt == NBD_OPT_LIST_META_CONTEXT;
    struct nbd_export *e;
    uint32_t namelen;
    bool match;
    size_t at;

    if (!list) {
        c->meta_base_allocation = false; /* SET replaces the selection, even on failure */
    }
    if (!c->structured) {
        hs_reply(c, opt, NBD_REP_ERR_INVALID, "structured replies not negotiated");
        return;
    }
    if (meta_parse(data, len, list, &namelen, &match) < 0) {
        hs_reply(c, opt, NBD_REP_ERR_INVALID, "malformed meta context request");
        return;
    }
    e = nbd_export_lookup((const char *)data + 4, namelen);
    if (e == NULL) {
        hs_reply(c, opt, NBD_REP_ERR_UNKNOWN, "unknown export");
        return;
    }
    if (match) {
        at = hs_reply_start(c, opt, NBD_REP_META_CONTEXT);
        hs_put_be32(c, list ? 0 : NBD_META_ID_BASE_ALLOCATION);
        nbd_hs_put(c, "base:allocation", 15);
        hs_reply_end(c, at);
        if (!list) {
            c->meta_base_allocation = true;
            snprintf(c->meta_export, sizeof(c->meta_export), "%s", e->name);
        }
    }
    nbd_export_put(&e);
    hs_reply(c, opt, NBD_REP_ACK, NULL);
}

static void
opt_dispatch(struct nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    IOC_DEBUG(nbd, "client %s: option %s (%u), %u bytes", c->peer, nbd_opt_name(opt), opt, len);
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        opt_export_name(c, data, len);
        break;
    case NBD_OPT_ABORT:
        hs_reply(c, opt, NBD_REP_ACK, NULL);
        nbd_conn_set_state(c, NBD_CONN_CLOSING);
        break;
    case NBD_OPT_LIST:
        opt_list(c, len);
        break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        opt_info_go(c, opt, data, len);
        break;
    case NBD_OPT_STRUCTURED_REPLY:
        opt_structured_reply(c, len);
        break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        opt_meta_context(c, opt, data, len);
        break;
    default:
        hs_reply(c, opt, NBD_REP_ERR_UNSUP, "option not supported");
        break;
    }
}

size_t
nbd_hs_parse_client_flags(struct nbd_conn *c, const uint8_t *p, size_t avail)
{
    uint32_t flags;

    if (avail < 4) {
        return 0;
    }
    memcpy(&flags, p, 4);
    flags = be32toh(flags);
    if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        nbd_conn_fail(c, "unknown client flags");
        return 0;
    }
    c->no_zeroes = (flags & NBD_FLAG_C_NO_ZEROES) != 0;
    nbd_conn_set_state(c, NBD_CONN_HS_OPTIONS);
    return 4;
}

size_t
nbd_hs_parse_option(struct nbd_conn *c, const uint8_t *p, size_t avail)
{
    struct nbd_opt_hdr h;
    uint32_t opt, len;

    if (c->hs_queued || avail < sizeof(h)) {
        return 0;
    }
    memcpy(&h, p, sizeof(h));
    opt = be32toh(h.option);
    len = be32toh(h.optlen);
    if (be64toh(h.magic) != NBD_OPTS_MAGIC) {
        nbd_conn_fail(c, "bad option magic");
        return 0;
    }
    if (len > NBD_OPT_MAX_LEN || ++c->nr_opts > NBD_OPT_MAX_COUNT) {
        nbd_conn_fail(c, "option too long or too many options");
        return 0;
    }
    if (avail - sizeof(h) < len) {
        c->nr_opts--;
        return 0;
    }
    opt_dispatch(c, opt, p + sizeof(h), len);
    nbd_hs_flush(c);
    return sizeof(h) + len;
}
