/*
 * fuzz_nbd_client.c - libFuzzer target for the NBD initiator's reply parser
 * (bdev/nbd_client/nbd_client_proto.c): the bytes a server sends during
 * transmission.
 *
 * The first input byte selects the setup: bit 0 structured replies, bit 1 a
 * base:allocation context (id 1), bits 4-7 the piece size the rest is fed in
 * (0: all at once, else that many bytes per call). Cookies 0..7 are
 * outstanding requests (READ, WRITE, BLOCK_STATUS, FLUSH, by cookie % 4, at
 * offsets and lengths derived from the cookie); a finished request is at
 * once outstanding again, so long inputs keep exercising the parser. The
 * callbacks assert what the parser promises: every offset and length it
 * reports lies inside its request, and nothing is reported once it is broken.
 */
#include "ioc/common.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "bdev/nbd_client/nbd_client_proto.h"

struct fz {
    struct nbdc_req_info req[8];
    bool broken;
    uint8_t sink[64];
};

static int
fz_lookup(void *ctx, uint64_t cookie, struct nbdc_req_info *info)
{
    struct fz *f = ctx;

    assert(!f->broken);
    if (cookie >= 8) {
        return -ENOENT;
    }
    *info = f->req[cookie];
    return 0;
}

static void
fz_in_request(struct fz *f, uint64_t cookie, uint64_t off, uint64_t len)
{
    const struct nbdc_req_info *r = &f->req[cookie];

    assert(cookie < 8 && !f->broken);
    assert(off >= r->offset && off + len <= r->offset + r->length && len <= r->length);
}

static void
fz_data(void *ctx, uint64_t cookie, uint64_t off, const void *buf, size_t len)
{
    struct fz *f = ctx;

    fz_in_request(f, cookie, off, len);
    memcpy(f->sink, buf, IOC_MIN(len, sizeof(f->sink)));
}

static void
fz_hole(void *ctx, uint64_t cookie, uint64_t off, uint32_t len)
{
    assert(len > 0);
    fz_in_request(ctx, cookie, off, len);
}

static void
fz_extent(void *ctx, uint64_t cookie, uint32_t len, uint32_t flags)
{
    struct fz *f = ctx;

    (void)flags;
    assert(cookie < 8 && !f->broken && len > 0);
    assert(f->req[cookie].cmd == NBD_CMD_BLOCK_STATUS);
}

static void
fz_error(void *ctx, uint64_t cookie, int err, const char *msg)
{
    struct fz *f = ctx;

    assert(cookie < 8 && !f->broken && err < 0);
    assert(strlen(msg) < NBDC_ERR_MSG_MAX);
}

static int
fz_done(void *ctx, uint64_t cookie, int err)
{
    struct fz *f = ctx;

    assert(cookie < 8 && !f->broken && err <= 0);
    return 0;
}

static const struct nbdc_reply_ops g_fz_ops = {
    .lookup = fz_lookup,
    .data = fz_data,
    .hole = fz_hole,
    .extent = fz_extent,
    .error = fz_error,
    .done = fz_done,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t cmds[4] = {NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_BLOCK_STATUS,
                                     NBD_CMD_FLUSH};
    struct nbdc_export_info info = {0};
    struct nbdc_reply_parser p;
    struct fz f = {0};
    size_t piece;
    int rc = 0;

    if (size < 1) {
        return 0;
    }
    info.structured = data[0] & 1;
    info.has_meta = (data[0] & 2) != 0;
    info.meta_id = 1;
    piece = data[0] >> 4;
    for (unsigned i = 0; i < 8; i++) {
        f.req[i].cmd = cmds[i % 4];
        f.req[i].offset = f.req[i].cmd == NBD_CMD_FLUSH ? 0 : (uint64_t)i * 4096;
        f.req[i].length = f.req[i].cmd == NBD_CMD_FLUSH ? 0 : 512u << i;
    }
    nbdc_reply_parser_init(&p, &g_fz_ops, &f, &info);
    data++;
    size--;
    while (size > 0 && rc == 0) {
        size_t n = piece == 0 ? size : IOC_MIN(piece, size);
        rc = nbdc_reply_parse(&p, data, n);
        data += n;
        size -= n;
    }
    if (rc < 0) {
        assert(p.state == NBDC_RX_BROKEN && p.why != NULL);
        f.broken = true;
        assert(nbdc_reply_parse(&p, "x", 1) == -EPROTO); /* stays broken, no callbacks */
    }
    return 0;
}
