/*
 * nbd_client_proto_test.c - the NBD initiator's pure wire code, without sockets:
 * URIs, handshake replies, option encoding and the transmission reply parser
 * (simple and structured, well-formed and malformed), fed byte by byte as
 * well as whole.
 */
#include "ioc/common.h"

#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bdev/nbd_client/nbd_client_proto.h"
#include "lib/err.h"

/* ---- byte builders ---- */

struct wbuf {
    uint8_t b[1 << 16];
    size_t n;
};

static void
w8(struct wbuf *w, const void *p, size_t n)
{
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void
w16(struct wbuf *w, uint16_t v)
{
    v = htobe16(v);
    w8(w, &v, 2);
}

static void
w32(struct wbuf *w, uint32_t v)
{
    v = htobe32(v);
    w8(w, &v, 4);
}

static void
w64(struct wbuf *w, uint64_t v)
{
    v = htobe64(v);
    w8(w, &v, 8);
}

static void
simple(struct wbuf *w, uint32_t err, uint64_t cookie)
{
    w32(w, NBD_SIMPLE_REPLY_MAGIC);
    w32(w, err);
    w64(w, cookie);
}

static void
chunk(struct wbuf *w, uint16_t flags, uint16_t type, uint64_t cookie, uint32_t len)
{
    w32(w, NBD_STRUCTURED_REPLY_MAGIC);
    w16(w, flags);
    w16(w, type);
    w64(w, cookie);
    w32(w, len);
}

/* ---- a fake request table and a recorder of callbacks ---- */

#define MAX_REQ 4

struct rec {
    struct nbdc_req_info req[MAX_REQ];
    bool live[MAX_REQ];
    uint8_t data[8192];     /* bytes of request 1's READ, by offset - req offset */
    uint64_t data_bytes;
    uint64_t hole_bytes;
    unsigned extents;
    uint32_t extent_len[8];
    uint32_t extent_flags[8];
    int errors;
    int last_err;
    char last_msg[64];
    int dones;
    uint64_t done_cookie[8];
    int done_err[8];
    int refuse_done;        /* -EPROTO from done */
};

static int
f_lookup(void *ctx, uint64_t cookie, struct nbdc_req_info *info)
{
    struct rec *r = ctx;

    if (cookie >= MAX_REQ || !r->live[cookie]) {
        return -ENOENT;
    }
    *info = r->req[cookie];
    return 0;
}

static void
f_data(void *ctx, uint64_t cookie, uint64_t off, const void *buf, size_t len)
{
    struct rec *r = ctx;

    assert_true(off >= r->req[cookie].offset);
    assert_true(off + len <= r->req[cookie].offset + r->req[cookie].length);
    if (cookie == 1) {
        memcpy(r->data + (off - r->req[1].offset), buf, len);
    }
    r->data_bytes += len;
}

static void
f_hole(void *ctx, uint64_t cookie, uint64_t off, uint32_t len)
{
    struct rec *r = ctx;

    assert_true(off + len <= r->req[cookie].offset + r->req[cookie].length);
    if (cookie == 1) {
        memset(r->data + (off - r->req[1].offset), 0, len);
    }
    r->hole_bytes += len;
}

static void
f_extent(void *ctx, uint64_t cookie, uint32_t len, uint32_t flags)
{
    struct rec *r = ctx;

    (void)cookie;
    if (r->extents < 8) {
        r->extent_len[r->extents] = len;
        r->extent_flags[r->extents] = flags;
    }
    r->extents++;
}

static void
f_error(void *ctx, uint64_t cookie, int err, const char *msg)
{
    struct rec *r = ctx;

    (void)cookie;
    r->errors++;
    r->last_err = err;
    snprintf(r->last_msg, sizeof(r->last_msg), "%s", msg);
}

static int
f_done(void *ctx, uint64_t cookie, int err)
{
    struct rec *r = ctx;

    if (r->refuse_done) {
        return -EPROTO;
    }
    r->done_cookie[r->dones % 8] = cookie;
    r->done_err[r->dones % 8] = err;
    r->dones++;
    r->live[cookie] = false;
    return 0;
}

static const struct nbdc_reply_ops g_ops = {
    .lookup = f_lookup,
    .data = f_data,
    .hole = f_hole,
    .extent = f_extent,
    .error = f_error,
    .done = f_done,
};

static void
setup(struct nbdc_reply_parser *p, struct rec *r, bool structured)
{
    struct nbdc_export_info info = {.structured = structured, .has_meta = structured,
                                    .meta_id = 7};

    memset(r, 0, sizeof(*r));
    r->req[1] = (struct nbdc_req_info){NBD_CMD_READ, 4096, 4096};
    r->req[2] = (struct nbdc_req_info){NBD_CMD_WRITE, 0, 512};
    r->req[3] = (struct nbdc_req_info){NBD_CMD_BLOCK_STATUS, 0, 65536};
    r->live[1] = r->live[2] = r->live[3] = true;
    nbdc_reply_parser_init(p, &g_ops, r, &info);
}

/* Feed w whole, or one byte at a time; the result must not depend on it. */
static int
feed(struct nbdc_reply_parser *p, const struct wbuf *w, bool bytewise)
{
    int rc = 0;

    if (!bytewise) {
        return nbdc_reply_parse(p, w->b, w->n);
    }
    for (size_t i = 0; i < w->n && rc == 0; i++) {
        rc = nbdc_reply_parse(p, w->b + i, 1);
    }
    return rc;
}

/* ---- URI ---- */

static void
test_nbdc_uri_parse_tcp_default_port(void **state)
{
    struct nbdc_uri u;

    (void)state;
    assert_int_equal(nbdc_uri_parse("nbd://example.org/vol0", &u, NULL), 0);
    assert_false(u.is_unix);
    assert_string_equal(u.host, "example.org");
    assert_int_equal(u.port, 10809);
    assert_string_equal(u.export_name, "vol0");
}

static void
test_nbdc_uri_parse_tcp_port_ipv6_escapes(void **state)
{
    struct nbdc_uri u;

    (void)state;
    assert_int_equal(nbdc_uri_parse("nbd://[::1]:10900/a%20b", &u, NULL), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 10900);
    assert_string_equal(u.export_name, "a b");
    assert_int_equal(nbdc_uri_parse("nbd://h:1", &u, NULL), 0);
    assert_string_equal(u.export_name, "");
}

static void
test_nbdc_uri_parse_unix(void **state)
{
    struct nbdc_uri u;

    (void)state;
    assert_int_equal(nbdc_uri_parse("nbd+unix:///e1?socket=/run/n.sock", &u, NULL), 0);
    assert_true(u.is_unix);
    assert_string_equal(u.export_name, "e1");
    assert_string_equal(u.socket, "/run/n.sock");
}

static void
test_nbdc_uri_parse_malformed(void **state)
{
    static const char *const bad[] = {
        "http://h/e", "nbd://", "nbd://:10809/e", "nbd://h:0/e", "nbd://h:99999/e",
        "nbd://h:12x/e", "nbd://[::1/e", "nbd://h/e%2", "nbd://h/e%zz", "nbd://h/e%00",
        "nbd://h/e?x=1", "nbd+unix:///e", "nbd+unix:///e?socket=", "nbd+unix:///e?sock=/x",
        "nbd+unix:///e?socket=/x&y=1",
    };
    struct nbdc_uri u;
    struct ioc_err err;

    (void)state;
    for (size_t i = 0; i < IOC_ARRAY_SIZE(bad); i++) {
        ioc_err_clear(&err);
        assert_int_equal(nbdc_uri_parse(bad[i], &u, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "uri"));
    }
    assert_int_equal(nbdc_uri_parse("nbds://h/e", &u, NULL), -ENOTSUP);
    assert_int_equal(nbdc_uri_parse(NULL, &u, NULL), -EINVAL);
}

/* ---- handshake ---- */

static void
test_nbdc_greeting_parse_ok_and_bad(void **state)
{
    struct wbuf w = {.n = 0};
    uint16_t g;

    (void)state;
    w64(&w, NBD_MAGIC);
    w64(&w, NBD_OPTS_MAGIC);
    w16(&w, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    assert_int_equal(nbdc_greeting_parse(w.b, w.n, &g), 0);
    assert_int_equal(g, 3);
    assert_int_equal(nbdc_greeting_parse(w.b, 17, &g), -EPROTO);
    w.b[17] = 0; /* no FIXED_NEWSTYLE */
    assert_int_equal(nbdc_greeting_parse(w.b, w.n, &g), -EPROTO);
    w.b[0] ^= 1; /* bad magic */
    w.b[17] = 1;
    assert_int_equal(nbdc_greeting_parse(w.b, w.n, &g), -EPROTO);
}

static void
test_nbdc_opt_reply_parse_checks(void **state)
{
    struct wbuf w = {.n = 0};
    uint32_t type, len;

    (void)state;
    w64(&w, NBD_REP_MAGIC);
    w32(&w, NBD_OPT_GO);
    w32(&w, NBD_REP_INFO);
    w32(&w, 12);
    assert_int_equal(nbdc_opt_reply_parse(w.b, w.n, NBD_OPT_GO, &type, &len), 0);
    assert_int_equal(type, NBD_REP_INFO);
    assert_int_equal(len, 12);
    /* the option echo must match */
    assert_int_equal(nbdc_opt_reply_parse(w.b, w.n, NBD_OPT_INFO, &type, &len), -EPROTO);
    /* a reply longer than we accept */
    w.n = 16;
    w32(&w, NBDC_OPT_REPLY_MAX + 1);
    assert_int_equal(nbdc_opt_reply_parse(w.b, w.n, NBD_OPT_GO, &type, &len), -EPROTO);
    w.b[0] ^= 0xff; /* bad magic */
    assert_int_equal(nbdc_opt_reply_parse(w.b, w.n, NBD_OPT_GO, &type, &len), -EPROTO);
}

static void
test_nbdc_info_parse_export_and_block_size(void **state)
{
    struct nbdc_export_info info = {0};
    struct wbuf w = {.n = 0};

    (void)state;
    w16(&w, NBD_INFO_EXPORT);
    w64(&w, 1 << 20);
    w16(&w, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
    assert_int_equal(nbdc_info_parse(w.b, w.n, &info), 0);
    assert_true(info.got_export);
    assert_int_equal(info.size, 1 << 20);
    assert_int_equal(info.eflags, 5);
    assert_int_equal(nbdc_info_parse(w.b, w.n - 1, &info), -EPROTO);

    w.n = 0;
    w16(&w, NBD_INFO_BLOCK_SIZE);
    w32(&w, 512);
    w32(&w, 4096);
    w32(&w, 1 << 25);
    assert_int_equal(nbdc_info_parse(w.b, w.n, &info), 0);
    assert_int_equal(info.min_block, 512);
    assert_int_equal(info.max_block, 1 << 25);

    w.n = 0; /* unknown info types are ignored */
    w16(&w, 99);
    w32(&w, 1);
    assert_int_equal(nbdc_info_parse(w.b, w.n, &info), 0);
}

static void
test_nbdc_info_parse_bad_block_size(void **state)
{
    static const uint32_t bad[][3] = {
        {0, 4096, 4096}, {3, 4096, 4096}, {131072, 131072, 131072}, {512, 256, 4096},
        {512, 3000, 4096}, {4096, 1024, 4096}, {512, 4096, 1024},
    };
    struct nbdc_export_info info = {0};

    (void)state;
    for (size_t i = 0; i < IOC_ARRAY_SIZE(bad); i++) {
        struct wbuf w = {.n = 0};
        w16(&w, NBD_INFO_BLOCK_SIZE);
        w32(&w, bad[i][0]);
        w32(&w, bad[i][1]);
        w32(&w, bad[i][2]);
        assert_int_equal(nbdc_info_parse(w.b, w.n, &info), -EPROTO);
    }
}

static void
test_nbdc_meta_context_parse_cases(void **state)
{
    struct wbuf w = {.n = 0};
    uint32_t id = 0;

    (void)state;
    w32(&w, 9);
    w8(&w, "base:allocation", 15);
    assert_int_equal(nbdc_meta_context_parse(w.b, w.n, &id), 0);
    assert_int_equal(id, 9);
    w.n = 4;
    w8(&w, "qemu:dirty-bitmap:x", 19);
    assert_int_equal(nbdc_meta_context_parse(w.b, w.n, &id), -ENOENT);
    assert_int_equal(nbdc_meta_context_parse(w.b, 4, &id), -EPROTO);
}

static void
test_nbdc_opt_go_encode_layout(void **state)
{
    uint8_t buf[128];
    ssize_t n = nbdc_opt_go_encode(buf, sizeof(buf), NBD_OPT_GO, "ab");
    uint8_t small[20];

    (void)state;
    assert_int_equal(n, 16 + 4 + 2 + 2 + 2);
    assert_int_equal(be64toh(*(uint64_t *)(void *)buf), NBD_OPTS_MAGIC);
    assert_int_equal(buf[11], NBD_OPT_GO);
    assert_int_equal(buf[15], 10);          /* option length */
    assert_int_equal(buf[19], 2);           /* name length */
    assert_memory_equal(buf + 20, "ab", 2);
    assert_int_equal(buf[23], 1);           /* one info request */
    assert_int_equal(buf[25], NBD_INFO_BLOCK_SIZE);
    assert_int_equal(nbdc_opt_go_encode(small, sizeof(small), NBD_OPT_GO, "ab"), -ENOSPC);
}

static void
test_nbdc_errno_from_nbd_mapping(void **state)
{
    (void)state;
    assert_int_equal(nbdc_errno_from_nbd(NBD_EPERM), -EPERM);
    assert_int_equal(nbdc_errno_from_nbd(NBD_EIO), -EIO);
    assert_int_equal(nbdc_errno_from_nbd(NBD_ENOSPC), -ENOSPC);
    assert_int_equal(nbdc_errno_from_nbd(NBD_ENOTSUP), -ENOTSUP);
    assert_int_equal(nbdc_errno_from_nbd(NBD_ESHUTDOWN), -ESHUTDOWN);
    assert_int_equal(nbdc_errno_from_nbd(12345), -EINVAL);
}

/* ---- transmission replies: well-formed ---- */

static void
test_nbdc_reply_parse_simple_read(void **state)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct nbdc_reply_parser p;
        struct rec r;
        struct wbuf w = {.n = 0};
        uint8_t data[4096];

        (void)state;
        setup(&p, &r, false);
        memset(data, 0x5a, sizeof(data));
        simple(&w, 0, 2); /* WRITE ok: no payload */
        simple(&w, 0, 1); /* READ ok: 4096 bytes follow */
        w8(&w, data, sizeof(data));
        simple(&w, NBD_ENOSPC, 3);
        assert_int_equal(feed(&p, &w, bytewise), 0);
        assert_int_equal(r.dones, 3);
        assert_int_equal(r.done_cookie[0], 2);
        assert_int_equal(r.done_cookie[1], 1);
        assert_int_equal(r.done_err[2], -ENOSPC);
        assert_memory_equal(r.data, data, sizeof(data));
        assert_int_equal(p.state, NBDC_RX_HDR);
    }
}

static void
test_nbdc_reply_parse_structured_out_of_order(void **state)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct nbdc_reply_parser p;
        struct rec r;
        struct wbuf w = {.n = 0};
        uint8_t data[1024];

        (void)state;
        setup(&p, &r, true);
        memset(data, 0xc3, sizeof(data));
        memset(r.data, 0xee, sizeof(r.data));
        /* the second half of the READ first, then a WRITE's reply, then a hole, then DONE */
        chunk(&w, 0, NBD_REPLY_TYPE_OFFSET_DATA, 1, 8 + 1024);
        w64(&w, 4096 + 3072);
        w8(&w, data, 1024);
        chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 2, 0);
        chunk(&w, 0, NBD_REPLY_TYPE_OFFSET_HOLE, 1, 12);
        w64(&w, 4096);
        w32(&w, 3072);
        simple(&w, 0, 3); /* a simple reply to a non-READ is allowed */
        chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 1, 0);
        assert_int_equal(feed(&p, &w, bytewise), 0);
        assert_int_equal(r.dones, 3);
        assert_int_equal(r.done_cookie[0], 2);
        assert_int_equal(r.done_cookie[1], 3);
        assert_int_equal(r.done_cookie[2], 1);
        assert_int_equal(r.data_bytes, 1024);
        assert_int_equal(r.hole_bytes, 3072);
        assert_int_equal(r.data[0], 0);
        assert_int_equal(r.data[3071], 0);
        assert_memory_equal(r.data + 3072, data, 1024);
    }
}

static void
test_nbdc_reply_parse_error_chunks(void **state)
{
    struct nbdc_reply_parser p;
    struct rec r;
    struct wbuf w = {.n = 0};

    (void)state;
    setup(&p, &r, true);
    chunk(&w, 0, NBD_REPLY_TYPE_ERROR_OFFSET, 1, 6 + 4 + 8);
    w32(&w, NBD_EIO);
    w16(&w, 4);
    w8(&w, "bad!", 4);
    w64(&w, 4096 + 512);
    chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 2, 6 + 3);
    w32(&w, NBD_EPERM);
    w16(&w, 3);
    w8(&w, "ro!", 3);
    /* an unknown error type: still an error for the request, payload skipped */
    chunk(&w, NBD_REPLY_FLAG_DONE, (1u << 15) + 77, 1, 6 + 2 + 5);
    w32(&w, NBD_ENOSPC);
    w16(&w, 2);
    w8(&w, "xy", 2);
    w8(&w, "12345", 5);
    assert_int_equal(feed(&p, &w, true), 0);
    assert_int_equal(r.errors, 3);
    assert_int_equal(r.last_err, -ENOSPC);
    assert_int_equal(r.dones, 2);
    assert_int_equal(r.done_cookie[0], 2);
    assert_int_equal(r.done_cookie[1], 1);
}

static void
test_nbdc_reply_parse_block_status(void **state)
{
    struct nbdc_reply_parser p;
    struct rec r;
    struct wbuf w = {.n = 0};

    (void)state;
    setup(&p, &r, true);
    chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 3, 4 + 16);
    w32(&w, 7);
    w32(&w, 4096);
    w32(&w, 0);
    w32(&w, 61440);
    w32(&w, NBD_STATE_HOLE | NBD_STATE_ZERO);
    assert_int_equal(feed(&p, &w, false), 0);
    assert_int_equal(r.extents, 2);
    assert_int_equal(r.extent_len[1], 61440);
    assert_int_equal(r.extent_flags[1], 3);
    assert_int_equal(r.dones, 1);
}

/* ---- transmission replies: malformed ---- */

/* Feed w and expect the parser to break, whole and byte by byte. */
static void
expect_broken(const struct wbuf *w, bool structured, const char *why_part)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct nbdc_reply_parser p;
        struct rec r;

        setup(&p, &r, structured);
        assert_int_equal(feed(&p, w, bytewise), -EPROTO);
        assert_int_equal(p.state, NBDC_RX_BROKEN);
        assert_non_null(p.why);
        if (strstr(p.why, why_part) == NULL) {
            fail_msg("why '%s' lacks '%s'", p.why, why_part);
        }
        /* once broken, nothing more is consumed */
        assert_int_equal(nbdc_reply_parse(&p, w->b, w->n), -EPROTO);
    }
}

static void
test_nbdc_reply_parse_bad_magic(void **state)
{
    struct wbuf w = {.n = 0};

    (void)state;
    w32(&w, 0xdeadbeef);
    w32(&w, 0);
    w64(&w, 1);
    expect_broken(&w, true, "magic");
}

static void
test_nbdc_reply_parse_unknown_cookie(void **state)
{
    struct wbuf w = {.n = 0};

    (void)state;
    simple(&w, 0, 42);
    expect_broken(&w, false, "unknown cookie");
    w.n = 0;
    chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0, 0);
    expect_broken(&w, true, "unknown cookie");
}

static void
test_nbdc_reply_parse_chunk_length_overflow(void **state)
{
    struct wbuf w = {.n = 0};

    (void)state;
    chunk(&w, 0, NBD_REPLY_TYPE_OFFSET_DATA, 1, 8 + 4096 + 1);
    expect_broken(&w, true, "OFFSET_DATA");
    w.n = 0;
    chunk(&w, 0, NBD_REPLY_TYPE_OFFSET_DATA, 1, 0xffffffffu);
    expect_broken(&w, true, "OFFSET_DATA");
    w.n = 0;
    chunk(&w, 0, NBD_REPLY_TYPE_OFFSET_HOLE, 1, 13);
    expect_broken(&w, true, "OFFSET_HOLE");
    w.n = 0;
    chunk(&w, 0, NBD_REPLY_TYPE_BLOCK_STATUS, 3, 4 + 8 * (NBDC_EXTENTS_MAX + 1));
    expect_broken(&w, true, "BLOCK_STATUS");
    w.n = 0;
    chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 2, 6 + 2);
    w32(&w, NBD_EIO);
    w16(&w, 100); /* message longer than the chunk */
    expect_broken(&w, true, "message length");
}

static void
test_nbdc_reply_parse_offset_outside_request(void **state)
{
    struct wbuf w = {.n = 0};

    (void)state;
    chunk(&w, 0, NBD_REPLY_TYPE_OFFSET_DATA, 1, 8 + 512);
    w64(&w, 4096 + 4096 - 256); /* runs 256 bytes past the end */
    expect_broken(&w, true, "outside");
    w.n = 0;
    chunk(&w, 0, NBD_REPLY_TYPE_OFFSET_DATA, 1, 8 + 512);
    w64(&w, 0); /* before the start */
    expect_broken(&w, true, "outside");
    w.n = 0;
    chunk(&w, 0, NBD_REPLY_TYPE_OFFSET_HOLE, 1, 12);
    w64(&w, UINT64_MAX - 10); /* wraps */
    w32(&w, 512);
    expect_broken(&w, true, "outside");
    w.n = 0;
    chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR_OFFSET, 1, 14);
    w32(&w, NBD_EIO);
    w16(&w, 0);
    w64(&w, 1 << 20);
    expect_broken(&w, true, "outside");
}

static void
test_nbdc_reply_parse_wrong_type_for_request(void **state)
{
    struct wbuf w = {.n = 0};

    (void)state;
    chunk(&w, 0, NBD_REPLY_TYPE_OFFSET_DATA, 2, 8 + 16); /* data for a WRITE */
    expect_broken(&w, true, "OFFSET_DATA");
    w.n = 0;
    chunk(&w, 0, NBD_REPLY_TYPE_NONE, 1, 0); /* NONE without DONE */
    expect_broken(&w, true, "NONE");
    w.n = 0;
    chunk(&w, 0, 42, 1, 0); /* unknown non-error type */
    expect_broken(&w, true, "unknown type");
    w.n = 0;
    chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 3, 12);
    w32(&w, 8); /* not the negotiated context */
    w32(&w, 512);
    w32(&w, 0);
    expect_broken(&w, true, "context");
    w.n = 0;
    chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 2, 6);
    w32(&w, 0); /* error 0 */
    w16(&w, 0);
    expect_broken(&w, true, "error value 0");
    w.n = 0;
    simple(&w, 0, 1); /* simple READ data although structured */
    expect_broken(&w, true, "simple reply to READ");
    w.n = 0;
    chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 1, 0);
    expect_broken(&w, false, "without negotiating");
}

static void
test_nbdc_reply_parse_done_refused(void **state)
{
    struct nbdc_reply_parser p;
    struct rec r;
    struct wbuf w = {.n = 0};

    (void)state;
    setup(&p, &r, true);
    r.refuse_done = 1;
    chunk(&w, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 1, 0);
    assert_int_equal(nbdc_reply_parse(&p, w.b, w.n), -EPROTO);
    assert_non_null(strstr(p.why, "not fully covered"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nbdc_uri_parse_tcp_default_port),
        cmocka_unit_test(test_nbdc_uri_parse_tcp_port_ipv6_escapes),
        cmocka_unit_test(test_nbdc_uri_parse_unix),
        cmocka_unit_test(test_nbdc_uri_parse_malformed),
        cmocka_unit_test(test_nbdc_greeting_parse_ok_and_bad),
        cmocka_unit_test(test_nbdc_opt_reply_parse_checks),
        cmocka_unit_test(test_nbdc_info_parse_export_and_block_size),
        cmocka_unit_test(test_nbdc_info_parse_bad_block_size),
        cmocka_unit_test(test_nbdc_meta_context_parse_cases),
        cmocka_unit_test(test_nbdc_opt_go_encode_layout),
        cmocka_unit_test(test_nbdc_errno_from_nbd_mapping),
        cmocka_unit_test(test_nbdc_reply_parse_simple_read),
        cmocka_unit_test(test_nbdc_reply_parse_structured_out_of_order),
        cmocka_unit_test(test_nbdc_reply_parse_error_chunks),
        cmocka_unit_test(test_nbdc_reply_parse_block_status),
        cmocka_unit_test(test_nbdc_reply_parse_bad_magic),
        cmocka_unit_test(test_nbdc_reply_parse_unknown_cookie),
        cmocka_unit_test(test_nbdc_reply_parse_chunk_length_overflow),
        cmocka_unit_test(test_nbdc_reply_parse_offset_outside_request),
        cmocka_unit_test(test_nbdc_reply_parse_wrong_type_for_request),
        cmocka_unit_test(test_nbdc_reply_parse_done_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
