/*
 * Unit tests for the NBD protocol engine (nbd_conn.c), driven without
 * sockets: the test plays the client, writing bytes into the engine and
 * reading what it queues, on a local reactor with a malloc bdev behind.
 * The .c is included so the tests can reach its statics.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include "bdev/file/bdev_file.h"
#include "bdev/malloc/bdev_malloc.h"
#include "target/nbd/nbd_conn.c"

#define DISK_SIZE (1u << 20)
#define BLOCK     512u

static struct ioc_reactor *g_r;

/* ------------------------------------------------------------- harness */

struct harness {
    struct nbd_conn *c;
    uint8_t *out;
    size_t out_len;
    size_t out_cap;
    size_t out_pos;     /* read cursor of the test */
    size_t max_send;    /* 0 = everything; else simulate partial sends */
    bool finished_seen; /* process() ran with the engine finished */
};

static void
h_process(void *ctx)
{
    struct harness *h = ctx;
    struct iovec iov[64];
    int n;

    h->finished_seen = nbd_conn_finished(h->c);
    while ((n = nbd_conn_out_iov(h->c, iov, 64)) > 0) {
        size_t sent = 0;

        for (int i = 0; i < n; i++) {
            size_t len = iov[i].iov_len;

            if (h->max_send != 0 && sent + len > h->max_send) {
                len = h->max_send - sent;
            }
            if (h->out_len + len > h->out_cap) {
                h->out_cap = (h->out_len + len) * 2;
                h->out = realloc(h->out, h->out_cap);
                assert_non_null(h->out);
            }
            memcpy(h->out + h->out_len, iov[i].iov_base, len);
            h->out_len += len;
            sent += len;
            if (h->max_send != 0 && sent == h->max_send) {
                break;
            }
        }
        nbd_conn_sent(h->c, (ssize_t)sent);
    }
}

static const struct nbd_conn_transport g_h_transport = {.process = h_process};

static void
h_poll(void)
{
    for (int i = 0; i < 1000 && ioc_reactor_poll_once(g_r); i++) {
    }
}

static void
h_init(struct harness *h)
{
    memset(h, 0, sizeof(*h));
    assert_int_equal(nbd_conn_create(g_r, &g_h_transport, h, "test", &h->c), 0);
    h_poll();
}

static void
h_fini(struct harness *h)
{
    if (!nbd_conn_finished(h->c)) {
        nbd_conn_abort(h->c);
    }
    h_poll();
    assert_true(nbd_conn_finished(h->c));
    nbd_conn_destroy(&h->c);
    free(h->out);
}

/* Feed bytes like a transport would; returns how many the engine took. */
static size_t
h_feed(struct harness *h, const void *data, size_t len)
{
    size_t done = 0;

    while (done < len) {
        void *buf;
        size_t room;

        if (!nbd_conn_recv_buf(h->c, &buf, &room)) {
            h_poll();
            if (!nbd_conn_recv_buf(h->c, &buf, &room)) {
                break;
            }
        }
        room = IOC_MIN(room, len - done);
        memcpy(buf, (const uint8_t *)data + done, room);
        nbd_conn_recv_done(h->c, (ssize_t)room);
        done += room;
    }
    h_poll();
    return done;
}

static size_t
h_avail(const struct harness *h)
{
    return h->out_len - h->out_pos;
}

static const uint8_t *
h_read(struct harness *h, size_t n)
{
    const uint8_t *p;
    uint64_t deadline = ioc_now_ns() + 5000000000ull;

    while (h_avail(h) < n && ioc_now_ns() < deadline) {
        ioc_reactor_poll_once(g_r); /* async bdevs (file) complete later */
    }
    assert_true(h_avail(h) >= n);
    p = h->out + h->out_pos;
    h->out_pos += n;
    return p;
}

static uint64_t
rd64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return be64toh(v);
}

static uint32_t
rd32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return be32toh(v);
}

static uint16_t
rd16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, 2);
    return be16toh(v);
}

static void
h_feed_be32(struct harness *h, uint32_t v)
{
    v = htobe32(v);
    assert_int_equal(h_feed(h, &v, 4), 4);
}

/* Read the greeting and answer with client flags. */
static void
h_hello(struct harness *h, uint32_t cflags)
{
    const uint8_t *g = h_read(h, 18);

    assert_true(rd64(g) == NBD_MAGIC);
    assert_true(rd64(g + 8) == NBD_OPTS_MAGIC);
    assert_int_equal(rd16(g + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    h_feed_be32(h, cflags);
}

static void
h_opt(struct harness *h, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t buf[16 + 4096];
    struct nbd_opt_hdr oh = {htobe64(NBD_OPTS_MAGIC), htobe32(opt), htobe32(len)};

    assert_true(len <= 4096);
    memcpy(buf, &oh, 16);
    if (len > 0) {
        memcpy(buf + 16, data, len);
    }
    assert_int_equal(h_feed(h, buf, 16 + len), 16 + len);
}

/* Read one option reply; returns its type, and its payload through data and len. */
static uint32_t
h_opt_reply(struct harness *h, uint32_t opt, const uint8_t **data, uint32_t *len)
{
    const uint8_t *r = h_read(h, 20);
    uint32_t l = rd32(r + 16);

    assert_true(rd64(r) == NBD_REP_MAGIC);
    assert_int_equal(rd32(r + 8), opt);
    if (data != NULL) {
        *data = h_read(h, l);
    } else {
        h_read(h, l);
    }
    if (len != NULL) {
        *len = l;
    }
    return rd32(r + 12);
}

/* Payload of NBD_OPT_INFO and NBD_OPT_GO for name with the given info requests. */
static size_t
info_data(uint8_t *buf, const char *name, const uint16_t *reqs, uint16_t nreqs)
{
    uint32_t nl = (uint32_t)strlen(name);
    size_t pos = 0;

    *(uint32_t *)(void *)buf = htobe32(nl);
    pos = 4;
    memcpy(buf + pos, name, nl);
    pos += nl;
    buf[pos++] = (uint8_t)(nreqs >> 8);
    buf[pos++] = (uint8_t)nreqs;
    for (uint16_t i = 0; i < nreqs; i++) {
        buf[pos++] = (uint8_t)(reqs[i] >> 8);
        buf[pos++] = (uint8_t)reqs[i];
    }
    return pos;
}

/* Meta context payload: export name and queries. */
static size_t
meta_data(uint8_t *buf, const char *name, const char **queries, uint32_t nq)
{
    uint32_t v = htobe32((uint32_t)strlen(name));
    size_t pos = 0;

    memcpy(buf, &v, 4);
    pos = 4;
    memcpy(buf + pos, name, strlen(name));
    pos += strlen(name);
    v = htobe32(nq);
    memcpy(buf + pos, &v, 4);
    pos += 4;
    for (uint32_t i = 0; i < nq; i++) {
        v = htobe32((uint32_t)strlen(queries[i]));
        memcpy(buf + pos, &v, 4);
        pos += 4;
        memcpy(buf + pos, queries[i], strlen(queries[i]));
        pos += strlen(queries[i]);
    }
    return pos;
}

/* GO on an export; returns the transmission flags. */
static uint16_t
h_go(struct harness *h, const char *name)
{
    uint8_t buf[512];
    const uint8_t *d;
    uint32_t len, type;
    uint16_t eflags = 0;
    bool got_export = false;

    h_opt(h, NBD_OPT_GO, buf, (uint32_t)info_data(buf, name, NULL, 0));
    while ((type = h_opt_reply(h, NBD_OPT_GO, &d, &len)) == NBD_REP_INFO) {
        if (rd16(d) == NBD_INFO_EXPORT) {
            assert_int_equal(len, 12);
            eflags = rd16(d + 10);
            got_export = true;
        }
    }
    assert_int_equal(type, NBD_REP_ACK);
    assert_true(got_export);
    return eflags;
}

/* Handshake to transmission: optional structured replies and base:allocation. */
static uint16_t
h_connect(struct harness *h, const char *name, bool structured, bool meta)
{
    h_init(h);
    h_hello(h, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    if (structured) {
        h_opt(h, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        assert_int_equal(h_opt_reply(h, NBD_OPT_STRUCTURED_REPLY, NULL, NULL), NBD_REP_ACK);
    }
    if (meta) {
        const char *q[] = {"base:allocation"};
        uint8_t buf[256];
        uint32_t len;
        const uint8_t *d;

        h_opt(h, NBD_OPT_SET_META_CONTEXT, buf, (uint32_t)meta_data(buf, name, q, 1));
        assert_int_equal(h_opt_reply(h, NBD_OPT_SET_META_CONTEXT, &d, &len),
                         NBD_REP_META_CONTEXT);
        assert_int_equal(rd32(d), NBD_META_ID_BASE_ALLOCATION);
        assert_int_equal(h_opt_reply(h, NBD_OPT_SET_META_CONTEXT, NULL, NULL), NBD_REP_ACK);
    }
    return h_go(h, name);
}

static void
h_req(struct harness *h, uint16_t flags, uint16_t type, uint64_t handle, uint64_t offset,
      uint32_t count, const void *payload)
{
    struct nbd_request rq = {
        .magic = htobe32(NBD_REQUEST_MAGIC),
        .flags = htobe16(flags),
        .type = htobe16(type),
        .handle = htobe64(handle),
        .offset = htobe64(offset),
        .count = htobe32(count),
    };

    assert_int_equal(h_feed(h, &rq, sizeof(rq)), sizeof(rq));
    if (payload != NULL) {
        assert_int_equal(h_feed(h, payload, count), count);
    }
}

/* Read a simple reply; returns its error. */
static uint32_t
h_simple(struct harness *h, uint64_t handle)
{
    const uint8_t *r = h_read(h, 16);

    assert_int_equal(rd32(r), NBD_SIMPLE_REPLY_MAGIC);
    assert_true(rd64(r + 8) == handle);
    return rd32(r + 4);
}

/* Read a structured chunk header; returns its type. */
static uint16_t
h_chunk(struct harness *h, uint64_t handle, uint16_t *flags, uint32_t *len)
{
    const uint8_t *r = h_read(h, 20);

    assert_int_equal(rd32(r), NBD_STRUCTURED_REPLY_MAGIC);
    assert_true(rd64(r + 8) == handle);
    *flags = rd16(r + 4);
    *len = rd32(r + 16);
    return rd16(r + 6);
}

/* ---------------------------------------------------------------- tests */

static void
test_nbd_conn_handshake_go_and_info(void **state)
{
    struct harness h;
    uint16_t reqs[] = {NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE, NBD_INFO_DESCRIPTION};
    bool seen_name = false, seen_bs = false, seen_desc = false;
    uint8_t buf[256];
    const uint8_t *d;
    uint32_t len, type;
    uint16_t eflags;

    (void)state;
    h_init(&h);
    h_hello(&h, NBD_FLAG_C_FIXED_NEWSTYLE);
    h_opt(&h, NBD_OPT_INFO, buf, (uint32_t)info_data(buf, "m0", reqs, 3));
    while ((type = h_opt_reply(&h, NBD_OPT_INFO, &d, &len)) == NBD_REP_INFO) {
        switch (rd16(d)) {
        case NBD_INFO_EXPORT:
            assert_true(rd64(d + 2) == DISK_SIZE);
            break;
        case NBD_INFO_NAME:
            seen_name = len == 4 && memcmp(d + 2, "m0", 2) == 0;
            break;
        case NBD_INFO_BLOCK_SIZE:
            assert_int_equal(len, 14);
            assert_int_equal(rd32(d + 2), BLOCK);
            assert_int_equal(rd32(d + 6), 4096);
            assert_int_equal(rd32(d + 10), NBD_MAX_BLOCK);
            seen_bs = true;
            break;
        case NBD_INFO_DESCRIPTION:
            seen_desc = true;
            break;
        }
    }
    assert_int_equal(type, NBD_REP_ACK);
    assert_true(seen_name && seen_bs && seen_desc);
    assert_int_equal(h.c->state, NBD_CONN_HS_OPTIONS);

    eflags = h_go(&h, "m0");
    assert_int_equal(h.c->state, NBD_CONN_TRANSMISSION);
    assert_true(eflags & NBD_FLAG_HAS_FLAGS);
    assert_true(eflags & NBD_FLAG_SEND_FLUSH);
    assert_true(eflags & NBD_FLAG_SEND_FUA);
    assert_true(eflags & NBD_FLAG_CAN_MULTI_CONN);
    assert_false(eflags & NBD_FLAG_READ_ONLY);
    assert_false(eflags & NBD_FLAG_SEND_DF); /* no structured replies */
    assert_int_equal(h_avail(&h), 0);
    h_fini(&h);
}

static void
test_nbd_conn_export_name_no_zeroes(void **state)
{
    struct harness h;
    const uint8_t *d;

    (void)state;
    h_init(&h);
    h_hello(&h, NBD_FLAG_C_FIXED_NEWSTYLE);
    h_opt(&h, NBD_OPT_EXPORT_NAME, "m0", 2);
    d = h_read(&h, 10);
    assert_true(rd64(d) == DISK_SIZE);
    assert_int_equal(h_avail(&h), 124); /* zeroes: NO_ZEROES not asked for */
    h_fini(&h);

    h_init(&h);
    h_hello(&h, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    h_opt(&h, NBD_OPT_EXPORT_NAME, "", 0); /* default export: ambiguous with 2 exports */
    assert_true(nbd_conn_finished(h.c));
    h_fini(&h);
}

static void
test_nbd_conn_list(void **state)
{
    struct harness h;
    const uint8_t *d;
    uint32_t len;
    int servers = 0;

    (void)state;
    h_init(&h);
    h_hello(&h, NBD_FLAG_C_FIXED_NEWSTYLE);
    h_opt(&h, NBD_OPT_LIST, NULL, 0);
    while (h_opt_reply(&h, NBD_OPT_LIST, &d, &len) == NBD_REP_SERVER) {
        assert_int_equal(rd32(d), len - 4);
        servers++;
    }
    assert_int_equal(servers, 2);
    h_opt(&h, NBD_OPT_LIST, "x", 1);
    assert_int_equal(h_opt_reply(&h, NBD_OPT_LIST, NULL, NULL), NBD_REP_ERR_INVALID);
    h_opt(&h, 42, NULL, 0);
    assert_int_equal(h_opt_reply(&h, 42, NULL, NULL), NBD_REP_ERR_UNSUP);
    h_opt(&h, NBD_OPT_ABORT, NULL, 0);
    assert_int_equal(h_opt_reply(&h, NBD_OPT_ABORT, NULL, NULL), NBD_REP_ACK);
    assert_true(nbd_conn_finished(h.c));
    h_fini(&h);
}

static void
test_nbd_conn_unknown_export(void **state)
{
    struct harness h;
    uint8_t buf[64];

    (void)state;
    h_init(&h);
    h_hello(&h, NBD_FLAG_C_FIXED_NEWSTYLE);
    h_opt(&h, NBD_OPT_GO, buf, (uint32_t)info_data(buf, "nope", NULL, 0));
    assert_int_equal(h_opt_reply(&h, NBD_OPT_GO, NULL, NULL), NBD_REP_ERR_UNKNOWN);
    assert_int_equal(h.c->state, NBD_CONN_HS_OPTIONS); /* may try another */
    h_go(&h, "m0");
    h_fini(&h);
}

static void
test_nbd_conn_bad_option_length(void **state)
{
    struct harness h;
    uint8_t buf[64];
    size_t n;

    (void)state;
    h_init(&h);
    h_hello(&h, NBD_FLAG_C_FIXED_NEWSTYLE);
    n = info_data(buf, "m0", NULL, 0);
    h_opt(&h, NBD_OPT_GO, buf, (uint32_t)n + 1); /* one stray byte */
    assert_int_equal(h_opt_reply(&h, NBD_OPT_GO, NULL, NULL), NBD_REP_ERR_INVALID);
    buf[3] = 200; /* name length beyond the option */
    h_opt(&h, NBD_OPT_INFO, buf, (uint32_t)n);
    assert_int_equal(h_opt_reply(&h, NBD_OPT_INFO, NULL, NULL), NBD_REP_ERR_INVALID);
    h_opt(&h, NBD_OPT_STRUCTURED_REPLY, "x", 1);
    assert_int_equal(h_opt_reply(&h, NBD_OPT_STRUCTURED_REPLY, NULL, NULL),
                     NBD_REP_ERR_INVALID);
    /* an absurd option length closes the connection */
    struct nbd_opt_hdr oh = {htobe64(NBD_OPTS_MAGIC), htobe32(NBD_OPT_GO), htobe32(1u << 30)};
    h_feed(&h, &oh, sizeof(oh));
    assert_true(nbd_conn_finished(h.c));
    h_fini(&h);
}

static void
test_nbd_conn_bad_client_flags_and_magic(void **state)
{
    struct harness h;
    uint8_t junk[16] = "NOTAMAGIC.......";

    (void)state;
    h_init(&h);
    h_hello(&h, 0x80);
    assert_true(nbd_conn_finished(h.c));
    h_fini(&h);

    h_init(&h);
    h_hello(&h, NBD_FLAG_C_FIXED_NEWSTYLE);
    h_feed(&h, junk, sizeof(junk));
    assert_true(nbd_conn_finished(h.c));
    h_fini(&h);
}

static void
test_nbd_conn_structured_and_meta_negotiation(void **state)
{
    struct harness h;
    const char *q[] = {"base:", "qemu:dirty-bitmap:x"};
    uint8_t buf[256];
    const uint8_t *d;
    uint32_t len;
    uint16_t eflags;

    (void)state;
    h_init(&h);
    h_hello(&h, NBD_FLAG_C_FIXED_NEWSTYLE);
    /* meta contexts need structured replies first */
    h_opt(&h, NBD_OPT_SET_META_CONTEXT, buf, (uint32_t)meta_data(buf, "m0", q, 1));
    assert_int_equal(h_opt_reply(&h, NBD_OPT_SET_META_CONTEXT, NULL, NULL),
                     NBD_REP_ERR_INVALID);
    h_opt(&h, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    assert_int_equal(h_opt_reply(&h, NBD_OPT_STRUCTURED_REPLY, NULL, NULL), NBD_REP_ACK);
    h_opt(&h, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    assert_int_equal(h_opt_reply(&h, NBD_OPT_STRUCTURED_REPLY, NULL, NULL),
                     NBD_REP_ERR_INVALID);
    /* LIST with "base:" finds base:allocation */
    h_opt(&h, NBD_OPT_LIST_META_CONTEXT, buf, (uint32_t)meta_data(buf, "m0", q, 1));
    assert_int_equal(h_opt_reply(&h, NBD_OPT_LIST_META_CONTEXT, &d, &len),
                     NBD_REP_META_CONTEXT);
    assert_int_equal(len, 4 + 15);
    assert_memory_equal(d + 4, "base:allocation", 15);
    assert_int_equal(h_opt_reply(&h, NBD_OPT_LIST_META_CONTEXT, NULL, NULL), NBD_REP_ACK);
    /* SET with only an unknown namespace selects nothing */
    h_opt(&h, NBD_OPT_SET_META_CONTEXT, buf, (uint32_t)meta_data(buf, "m0", q + 1, 1));
    assert_int_equal(h_opt_reply(&h, NBD_OPT_SET_META_CONTEXT, NULL, NULL), NBD_REP_ACK);
    /* truncated query list */
    h_opt(&h, NBD_OPT_SET_META_CONTEXT, buf, (uint32_t)meta_data(buf, "m0", q, 1) - 1);
    assert_int_equal(h_opt_reply(&h, NBD_OPT_SET_META_CONTEXT, NULL, NULL),
                     NBD_REP_ERR_INVALID);
    eflags = h_go(&h, "m0");
    assert_true(eflags & NBD_FLAG_SEND_DF);
    assert_true(h.c->structured);
    assert_false(h.c->meta_active);
    /* BLOCK_STATUS without a context: EINVAL as an error chunk */
    h_req(&h, 0, NBD_CMD_BLOCK_STATUS, 7, 0, 4096, NULL);
    uint16_t flags;
    assert_int_equal(h_chunk(&h, 7, &flags, &len), NBD_REPLY_TYPE_ERROR);
    assert_int_equal(flags, NBD_REPLY_FLAG_DONE);
    d = h_read(&h, len);
    assert_int_equal(rd32(d), NBD_EINVAL);
    h_fini(&h);
}

static void
test_nbd_conn_read_write_round_trip(void **state)
{
    struct harness h;
    uint8_t wbuf[8192];
    const uint8_t *d;

    (void)state;
    memset(wbuf, 0xab, sizeof(wbuf));
    h_connect(&h, "m0", false, false);
    h_req(&h, 0, NBD_CMD_WRITE, 1, 4096, sizeof(wbuf), wbuf);
    assert_int_equal(h_simple(&h, 1), 0);
    h_req(&h, 0, NBD_CMD_READ, 2, 4096, sizeof(wbuf), NULL);
    assert_int_equal(h_simple(&h, 2), 0);
    d = h_read(&h, sizeof(wbuf));
    assert_memory_equal(d, wbuf, sizeof(wbuf));
    h_fini(&h);

    /* structured: one OFFSET_DATA chunk with DONE */
    h_connect(&h, "m0", true, false);
    h_req(&h, NBD_CMD_FLAG_DF, NBD_CMD_READ, 3, 4096, 4096, NULL);
    uint16_t flags;
    uint32_t len;
    assert_int_equal(h_chunk(&h, 3, &flags, &len), NBD_REPLY_TYPE_OFFSET_DATA);
    assert_int_equal(flags, NBD_REPLY_FLAG_DONE);
    assert_int_equal(len, 8 + 4096);
    d = h_read(&h, len);
    assert_true(rd64(d) == 4096);
    assert_memory_equal(d + 8, wbuf, 4096);
    h_fini(&h);
}

static void
test_nbd_conn_pipelined_partial_sends(void **state)
{
    struct harness h;
    uint8_t batch[40 * (28 + 512)];
    size_t pos = 0;
    int seen[40] = {0};

    (void)state;
    h_connect(&h, "m0", false, false);
    h.max_send = 7; /* the transport sends 7 bytes at a time */
    for (int i = 0; i < 40; i++) {
        struct nbd_request rq = {htobe32(NBD_REQUEST_MAGIC), 0, htobe16(NBD_CMD_WRITE),
                                 htobe64((uint64_t)i), htobe64((uint64_t)i * 512),
                                 htobe32(512)};

        memcpy(batch + pos, &rq, sizeof(rq));
        memset(batch + pos + sizeof(rq), i, 512);
        pos += sizeof(rq) + 512;
    }
    assert_int_equal(h_feed(&h, batch, pos), pos);
    for (int i = 0; i < 40; i++) {
        const uint8_t *r = h_read(&h, 16);
        uint64_t handle = rd64(r + 8);

        assert_int_equal(rd32(r + 4), 0);
        assert_true(handle < 40);
        seen[handle]++;
    }
    for (int i = 0; i < 40; i++) {
        assert_int_equal(seen[i], 1);
    }
    h.max_send = 0;
    h_req(&h, 0, NBD_CMD_READ, 99, 39 * 512, 512, NULL);
    assert_int_equal(h_simple(&h, 99), 0);
    assert_int_equal(h_read(&h, 512)[0], 39);
    h_fini(&h);
}

/* After a large WRITE the engine asks for just the next header, so that the
 * next payload is received into its request's buffer, not copied; the data
 * still round-trips, and a READ afterwards gets the whole buffer again. */
static void
test_nbd_conn_large_writes_receive_header_only(void **state)
{
    enum { N = 3, LEN = 64 * 1024 };
    static uint8_t batch[N * (28 + LEN)];
    struct harness h;
    size_t pos = 0;
    void *buf;
    size_t room;

    (void)state;
    h_connect(&h, "m0", false, false);
    assert_true(nbd_conn_recv_buf(h.c, &buf, &room));
    assert_true(room > 28); /* nothing known yet: the whole receive buffer */
    for (int i = 0; i < N; i++) {
        struct nbd_request rq = {htobe32(NBD_REQUEST_MAGIC), 0, htobe16(NBD_CMD_WRITE),
                                 htobe64((uint64_t)i), htobe64((uint64_t)i * LEN),
                                 htobe32(LEN)};

        memcpy(batch + pos, &rq, sizeof(rq));
        memset(batch + pos + sizeof(rq), 0x10 + i, LEN);
        pos += sizeof(rq) + LEN;
    }
    /* The first header alone: now the payload is wanted, in one piece. */
    assert_int_equal(h_feed(&h, batch, 28), 28);
    assert_true(nbd_conn_recv_buf(h.c, &buf, &room));
    assert_int_equal(room, LEN);
    assert_int_equal(h_feed(&h, batch + 28, LEN), LEN);
    /* Payload done: only a header's worth is asked for next. */
    assert_true(nbd_conn_recv_buf(h.c, &buf, &room));
    assert_int_equal(room, 28);
    assert_int_equal(h_feed(&h, batch + 28 + LEN, pos - 28 - LEN), pos - 28 - LEN);
    for (int i = 0; i < N; i++) {
        assert_int_equal(h_simple(&h, (uint64_t)i), 0);
    }
    h_req(&h, 0, NBD_CMD_READ, 9, LEN, 4096, NULL);
    assert_int_equal(h_simple(&h, 9), 0);
    assert_int_equal(h_read(&h, 4096)[4095], 0x11);
    assert_true(nbd_conn_recv_buf(h.c, &buf, &room));
    assert_true(room > 28);
    h_fini(&h);
}

static void
test_nbd_conn_fua_and_flush(void **state)
{
    struct harness h;
    uint8_t wbuf[512] = {1};

    (void)state;
    h_connect(&h, "m0", false, false);
    h_req(&h, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 1, 0, 512, wbuf);
    assert_int_equal(h_simple(&h, 1), 0);
    h_req(&h, 0, NBD_CMD_FLUSH, 2, 0, 0, NULL);
    assert_int_equal(h_simple(&h, 2), 0);
    h_req(&h, 0, NBD_CMD_FLUSH, 3, 512, 0, NULL); /* FLUSH takes no range */
    assert_int_equal(h_simple(&h, 3), NBD_EINVAL);
    h_req(&h, NBD_CMD_FLAG_DF, NBD_CMD_READ, 4, 0, 512, NULL); /* DF needs structured */
    assert_int_equal(h_simple(&h, 4), NBD_EINVAL);
    h_fini(&h);
}

static void
test_nbd_conn_trim_and_block_status(void **state)
{
    struct harness h;
    const uint8_t *d;
    uint16_t flags;
    uint32_t len;

    (void)state;
    h_connect(&h, "m0", true, true);
    assert_true(h.c->meta_active);
    if (h.c->eflags & NBD_FLAG_SEND_TRIM) {
        h_req(&h, 0, NBD_CMD_TRIM, 1, 0, 65536, NULL);
        assert_int_equal(h_simple(&h, 1), 0);
    }
    h_req(&h, 0, NBD_CMD_BLOCK_STATUS, 2, 0, 65536, NULL);
    assert_int_equal(h_chunk(&h, 2, &flags, &len), NBD_REPLY_TYPE_BLOCK_STATUS);
    assert_int_equal(flags, NBD_REPLY_FLAG_DONE);
    assert_true(len >= 12 && (len - 4) % 8 == 0);
    d = h_read(&h, len);
    assert_int_equal(rd32(d), NBD_META_ID_BASE_ALLOCATION);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < (len - 4) / 8; i++) {
        assert_true(rd32(d + 4 + 8 * i) > 0);
        sum += rd32(d + 4 + 8 * i);
    }
    assert_true(sum <= 65536);
    /* REQ_ONE: exactly one descriptor */
    h_req(&h, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 3, 0, 65536, NULL);
    assert_int_equal(h_chunk(&h, 3, &flags, &len), NBD_REPLY_TYPE_BLOCK_STATUS);
    assert_int_equal(len, 12);
    h_read(&h, len);
    /* past the end: EINVAL */
    h_req(&h, 0, NBD_CMD_BLOCK_STATUS, 4, DISK_SIZE, 512, NULL);
    assert_int_equal(h_chunk(&h, 4, &flags, &len), NBD_REPLY_TYPE_ERROR);
    assert_int_equal(rd32(h_read(&h, len)), NBD_EINVAL);
    h_fini(&h);
}

static void
test_nbd_conn_write_zeroes(void **state)
{
    struct harness h;
    uint8_t wbuf[4096];
    uint16_t eflags;

    (void)state;
    memset(wbuf, 0x5a, sizeof(wbuf));
    eflags = h_connect(&h, "m0", false, false);
    if (!(eflags & NBD_FLAG_SEND_WRITE_ZEROES)) {
        h_req(&h, 0, NBD_CMD_WRITE_ZEROES, 1, 0, 4096, NULL);
        assert_int_equal(h_simple(&h, 1), NBD_EINVAL);
        h_fini(&h);
        return;
    }
    h_req(&h, 0, NBD_CMD_WRITE, 1, 8192, 4096, wbuf);
    assert_int_equal(h_simple(&h, 1), 0);
    h_req(&h, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE_ZEROES, 2, 8192, 4096, NULL);
    assert_int_equal(h_simple(&h, 2), 0);
    h_req(&h, 0, NBD_CMD_READ, 3, 8192, 4096, NULL);
    assert_int_equal(h_simple(&h, 3), 0);
    memset(wbuf, 0, sizeof(wbuf));
    assert_memory_equal(h_read(&h, 4096), wbuf, 4096);
    h_req(&h, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 4, 0, 4096, NULL);
    assert_int_equal(h_simple(&h, 4), ioc_bdev_fast_zero(h.c->bdev) ? 0 : NBD_ENOTSUP);
    h_req(&h, 0, NBD_CMD_WRITE_ZEROES, 5, DISK_SIZE - 512, 1024, NULL);
    assert_int_equal(h_simple(&h, 5), NBD_ENOSPC);
    h_fini(&h);
}

static void
test_nbd_conn_read_only_eperm(void **state)
{
    struct harness h;
    uint8_t wbuf[512] = {0};
    uint16_t eflags;

    (void)state;
    eflags = h_connect(&h, "ro", false, false);
    assert_true(eflags & NBD_FLAG_READ_ONLY);
    assert_false(eflags & NBD_FLAG_SEND_TRIM);
    h_req(&h, 0, NBD_CMD_WRITE, 1, 0, 512, wbuf);
    assert_int_equal(h_simple(&h, 1), NBD_EPERM);
    h_req(&h, 0, NBD_CMD_TRIM, 2, 0, 512, NULL);
    assert_int_equal(h_simple(&h, 2), NBD_EPERM);
    h_req(&h, 0, NBD_CMD_READ, 3, 0, 512, NULL); /* still in sync after the payload */
    assert_int_equal(h_simple(&h, 3), 0);
    h_read(&h, 512);
    h_fini(&h);
}

static void
test_nbd_validate_request_out_of_range(void **state)
{
    struct harness h;

    (void)state;
    h_connect(&h, "m0", false, false);
    struct nbd_request_info rq = {0, NBD_CMD_READ, DISK_SIZE - 512, 1024};
    assert_int_equal(nbd_validate_request(h.c, &rq), -EINVAL);
    rq = (struct nbd_request_info){0, NBD_CMD_WRITE, DISK_SIZE - 512, 1024};
    assert_int_equal(nbd_validate_request(h.c, &rq), -ENOSPC);
    rq = (struct nbd_request_info){0, NBD_CMD_READ, UINT64_MAX - 511, 512};
    assert_int_equal(nbd_validate_request(h.c, &rq), -EINVAL);
    rq = (struct nbd_request_info){0, NBD_CMD_READ, 100, 512}; /* misaligned */
    assert_int_equal(nbd_validate_request(h.c, &rq), -EINVAL);
    rq = (struct nbd_request_info){0, NBD_CMD_READ, 0, 0};
    assert_int_equal(nbd_validate_request(h.c, &rq), -EINVAL);
    rq = (struct nbd_request_info){NBD_CMD_FLAG_REQ_ONE, NBD_CMD_READ, 0, 512};
    assert_int_equal(nbd_validate_request(h.c, &rq), -EINVAL);
    rq = (struct nbd_request_info){0, 99, 0, 512};
    assert_int_equal(nbd_validate_request(h.c, &rq), -EINVAL);
    rq = (struct nbd_request_info){NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 0, 512};
    assert_int_equal(nbd_validate_request(h.c, &rq), 0);
    /* over the wire: READ past the end answers EINVAL, no data */
    h_req(&h, 0, NBD_CMD_READ, 1, DISK_SIZE, 512, NULL);
    assert_int_equal(h_simple(&h, 1), NBD_EINVAL);
    assert_int_equal(h_avail(&h), 0);
    h_fini(&h);
}

static void
test_nbd_conn_bad_request_magic_closes(void **state)
{
    struct harness h;
    uint8_t junk[28] = {0x12, 0x34};

    (void)state;
    h_connect(&h, "m0", false, false);
    h_feed(&h, junk, sizeof(junk));
    assert_true(nbd_conn_finished(h.c));
    h_fini(&h);
}

static void
test_nbd_conn_truncated_input_waits(void **state)
{
    struct harness h;
    uint8_t wbuf[4096];
    struct nbd_request rq = {htobe32(NBD_REQUEST_MAGIC), 0, htobe16(NBD_CMD_WRITE),
                             htobe64(5), htobe64(0), htobe32(sizeof(wbuf))};

    (void)state;
    memset(wbuf, 7, sizeof(wbuf));
    h_connect(&h, "m0", false, false);
    h_feed(&h, &rq, 10); /* part of the header */
    assert_int_equal(h_avail(&h), 0);
    h_feed(&h, (uint8_t *)&rq + 10, sizeof(rq) - 10);
    h_feed(&h, wbuf, 1000); /* part of the payload */
    assert_int_equal(h.c->state, NBD_CONN_PAYLOAD);
    assert_int_equal(h_avail(&h), 0);
    assert_false(nbd_conn_finished(h.c));
    h_feed(&h, wbuf + 1000, sizeof(wbuf) - 1000);
    assert_int_equal(h_simple(&h, 5), 0);
    assert_int_equal(h.c->state, NBD_CONN_TRANSMISSION);
    h_fini(&h);
}

static void
test_nbd_conn_oversized_write_closes(void **state)
{
    struct harness h;

    (void)state;
    h_connect(&h, "m0", false, false);
    h_req(&h, 0, NBD_CMD_WRITE, 1, 0, NBD_MAX_PAYLOAD + 512, NULL);
    assert_true(nbd_conn_finished(h.c));
    assert_int_equal(h_avail(&h), 0);
    h_fini(&h);
}

static void
test_nbd_conn_disc_answers_in_flight(void **state)
{
    struct harness h;
    uint8_t buf[28 * 2];
    struct nbd_request rq[2] = {
        {htobe32(NBD_REQUEST_MAGIC), 0, htobe16(NBD_CMD_READ), htobe64(1), 0, htobe32(512)},
        {htobe32(NBD_REQUEST_MAGIC), 0, htobe16(NBD_CMD_DISC), htobe64(2), 0, 0},
    };

    (void)state;
    h_connect(&h, "m0", false, false);
    memcpy(buf, rq, sizeof(buf));
    h_feed(&h, buf, sizeof(buf));
    assert_int_equal(h_simple(&h, 1), 0);
    h_read(&h, 512);
    assert_true(nbd_conn_finished(h.c));
    h_fini(&h);
}

static void
test_nbd_conn_peer_close_mid_handshake(void **state)
{
    struct harness h;

    (void)state;
    h_init(&h);
    nbd_conn_recv_done(h.c, 0);
    h_poll();
    assert_true(nbd_conn_finished(h.c));
    h_fini(&h);
}

/* Large structured reads of a sparse range come back as one OFFSET_HOLE chunk. */
static void
test_nbd_conn_read_hole_on_sparse_file(void **state)
{
    char path[] = "/tmp/ioc-nbd-test-XXXXXX";
    struct ioc_bdev_file_opts fo = {.name = "nbdfile0", .path = path, .size = 4u << 20};
    struct harness h;
    uint8_t wbuf[4096];
    uint16_t flags;
    uint32_t len;
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ioc_bdev_file_create(&fo, NULL), 0);
    assert_int_equal(ioc_nbd_export_add("f0", "nbdfile0", false, NULL), 0);
    h_connect(&h, "f0", true, false);
    h_req(&h, 0, NBD_CMD_READ, 1, 1u << 20, 1u << 20, NULL);
    assert_int_equal(h_chunk(&h, 1, &flags, &len), NBD_REPLY_TYPE_OFFSET_HOLE);
    assert_int_equal(flags, NBD_REPLY_FLAG_DONE);
    assert_int_equal(len, 12);
    assert_true(rd64(h_read(&h, 8)) == 1u << 20);
    assert_int_equal(rd32(h_read(&h, 4)), 1u << 20);
    /* with data in the range: OFFSET_DATA */
    memset(wbuf, 0x42, sizeof(wbuf));
    h_req(&h, 0, NBD_CMD_WRITE, 2, 1u << 20, sizeof(wbuf), wbuf);
    assert_int_equal(h_simple(&h, 2), 0);
    h_req(&h, 0, NBD_CMD_READ, 3, 1u << 20, 1u << 20, NULL);
    assert_int_equal(h_chunk(&h, 3, &flags, &len), NBD_REPLY_TYPE_OFFSET_DATA);
    assert_int_equal(len, 8 + (1u << 20));
    assert_memory_equal(h_read(&h, len) + 8, wbuf, sizeof(wbuf));
    /* DF: never a hole chunk */
    h_req(&h, NBD_CMD_FLAG_DF, NBD_CMD_READ, 4, 2u << 20, 1u << 20, NULL);
    assert_int_equal(h_chunk(&h, 4, &flags, &len), NBD_REPLY_TYPE_OFFSET_DATA);
    h_read(&h, len);
    h_fini(&h);
    assert_int_equal(ioc_nbd_export_remove("f0", NULL), 0);
    assert_int_equal(ioc_bdev_delete("nbdfile0", NULL), 0);
    unlink(path);
}

/*
 * A large WRITE to a cached file is received in place (into the file's
 * mapping); a store that faults there (the transport's recv says EFAULT)
 * sends the rest of the payload into the request's buffer, and the WRITE
 * of both parts leaves every byte in the file.
 */
static void
test_nbd_conn_write_in_place_and_fault(void **state)
{
    enum { LEN = 128 * 1024, HALF = 48 * 1024 };
    char path[] = "/tmp/nbd_conn_test_XXXXXX";
    struct ioc_bdev_file_opts fo = {.name = "nbdfile1", .path = path};
    static uint8_t payload[2][LEN], zero[4u << 20];
    struct harness h;
    void *buf;
    size_t room;
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, zero, sizeof(zero), 0), (ssize_t)sizeof(zero)); /* cached */
    assert_int_equal(ioc_bdev_file_create(&fo, NULL), 0);
    assert_int_equal(ioc_nbd_export_add("f1", "nbdfile1", false, NULL), 0);
    h_connect(&h, "f1", false, false);
    for (int k = 0; k < 2; k++) {
        struct nbd_request rq = {htobe32(NBD_REQUEST_MAGIC), 0, htobe16(NBD_CMD_WRITE),
                                 htobe64((uint64_t)k + 1), htobe64((uint64_t)k * LEN + 512),
                                 htobe32(LEN)};
        struct ioc_bdev *bdev = ioc_bdev_get_by_name("nbdfile1");
        uint8_t *window = ioc_bdev_write_window(bdev, (uint64_t)k * LEN + 512, LEN);

        ioc_bdev_put(&bdev);
        assert_non_null(window);
        memset(payload[k], 0x61 + k, LEN);
        assert_int_equal(h_feed(&h, &rq, sizeof(rq)), sizeof(rq));
        assert_true(nbd_conn_recv_buf(h.c, &buf, &room));
        assert_ptr_equal(buf, window);
        assert_int_equal(room, LEN);
        if (k == 0) {
            assert_int_equal(h_feed(&h, payload[k], LEN), LEN);
        } else {
            memcpy(buf, payload[k], HALF);
            nbd_conn_recv_done(h.c, HALF);
            nbd_conn_recv_done(h.c, -EFAULT);
            assert_true(nbd_conn_recv_buf(h.c, &buf, &room));
            assert_ptr_not_equal(buf, window + HALF);
            assert_int_equal(room, LEN - HALF);
            assert_int_equal(h_feed(&h, payload[k] + HALF, LEN - HALF), LEN - HALF);
        }
        assert_int_equal(h_simple(&h, (uint64_t)k + 1), 0);
    }
    h_req(&h, 0, NBD_CMD_READ, 9, 512, 2 * LEN, NULL);
    assert_int_equal(h_simple(&h, 9), 0);
    assert_memory_equal(h_read(&h, LEN), payload[0], LEN);
    assert_memory_equal(h_read(&h, LEN), payload[1], LEN);
    h_fini(&h);
    assert_int_equal(ioc_nbd_export_remove("f1", NULL), 0);
    assert_int_equal(ioc_bdev_delete("nbdfile1", NULL), 0);
    assert_int_equal(pread(fd, zero, 2 * LEN, 512), 2 * LEN);
    assert_memory_equal(zero, payload[0], LEN);
    assert_memory_equal(zero + LEN, payload[1], LEN);
    close(fd);
    unlink(path);
}

/* The transport must hear about the last IO completing after an abort. */
static void
test_regress_nbd_conn_abort_with_io_in_flight_notifies(void **state)
{
    struct harness h;
    struct nbd_request rq = {htobe32(NBD_REQUEST_MAGIC), 0, htobe16(NBD_CMD_READ), htobe64(1),
                             0, htobe32(4096)};
    void *buf;
    size_t room;

    (void)state;
    h_connect(&h, "m0", false, false);
    assert_true(nbd_conn_recv_buf(h.c, &buf, &room));
    memcpy(buf, &rq, sizeof(rq));
    nbd_conn_recv_done(h.c, sizeof(rq)); /* the read is submitted, not completed */
    assert_int_equal(h.c->io_inflight, 1);
    nbd_conn_abort(h.c);
    assert_false(nbd_conn_finished(h.c));
    h_poll();
    assert_true(nbd_conn_finished(h.c));
    assert_true(h.finished_seen);
    h_fini(&h);
}

/* ---------------------------------------------------------------- setup */

static int
group_setup(void **state)
{
    (void)state;
    if (ioc_reactor_create_local(NULL, &g_r) < 0 ||
        ioc_bdev_malloc_create("nbdtest0", DISK_SIZE, BLOCK, NULL) < 0 ||
        ioc_nbd_export_add("m0", "nbdtest0", false, NULL) < 0 ||
        ioc_nbd_export_add("ro", "nbdtest0", true, NULL) < 0) {
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    ioc_nbd_export_remove_all();
    ioc_bdev_delete("nbdtest0", NULL);
    ioc_reactor_destroy_local(&g_r);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nbd_conn_handshake_go_and_info),
        cmocka_unit_test(test_nbd_conn_export_name_no_zeroes),
        cmocka_unit_test(test_nbd_conn_list),
        cmocka_unit_test(test_nbd_conn_unknown_export),
        cmocka_unit_test(test_nbd_conn_bad_option_length),
        cmocka_unit_test(test_nbd_conn_bad_client_flags_and_magic),
        cmocka_unit_test(test_nbd_conn_structured_and_meta_negotiation),
        cmocka_unit_test(test_nbd_conn_read_write_round_trip),
        cmocka_unit_test(test_nbd_conn_pipelined_partial_sends),
        cmocka_unit_test(test_nbd_conn_large_writes_receive_header_only),
        cmocka_unit_test(test_nbd_conn_fua_and_flush),
        cmocka_unit_test(test_nbd_conn_trim_and_block_status),
        cmocka_unit_test(test_nbd_conn_write_zeroes),
        cmocka_unit_test(test_nbd_conn_read_only_eperm),
        cmocka_unit_test(test_nbd_validate_request_out_of_range),
        cmocka_unit_test(test_nbd_conn_bad_request_magic_closes),
        cmocka_unit_test(test_nbd_conn_truncated_input_waits),
        cmocka_unit_test(test_nbd_conn_oversized_write_closes),
        cmocka_unit_test(test_nbd_conn_disc_answers_in_flight),
        cmocka_unit_test(test_nbd_conn_peer_close_mid_handshake),
        cmocka_unit_test(test_regress_nbd_conn_abort_with_io_in_flight_notifies),
        cmocka_unit_test(test_nbd_conn_read_hole_on_sparse_file),
        cmocka_unit_test(test_nbd_conn_write_in_place_and_fault),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
