/*
 * fuzz_nbd.c - libFuzzer target for the NBD protocol engine (nbd_conn.c).
 *
 * Each input is what a client sends on one connection, handshake first. The
 * first byte selects how it is delivered:
 *   bit 0  prepend a canned handshake (fixed newstyle, structured replies,
 *          base:allocation, GO "m0"), so the rest is transmission requests;
 *   bit 1  deliver in 7-byte pieces instead of as much as the engine takes;
 *   bit 2  send replies back 5 bytes at a time (partial sends).
 * The engine runs on a local reactor with a 1 MiB malloc bdev behind two
 * exports ("m0" read-write, "ro" read-only). After the input, the reactor is
 * polled until quiescent, the connection is aborted, and it must then be
 * finished and free everything it took (LeakSanitizer checks at exit; the
 * reactor and the bdev are created once and stay reachable).
 */
#include "ioc/common.h"

#include <assert.h>
#include <endian.h>
#include <string.h>

#include "bdev/malloc/bdev_malloc.h"
#include "core/log.h"
#include "core/reactor.h"
#include "target/nbd/nbd_internal.h"
#include "target/nbd/nbd_proto.h"

static struct ioc_reactor *g_r;

struct fuzz_transport {
    struct nbd_conn *c;
    size_t max_send;
    size_t sent_total;
};

static void
fuzz_process(void *ctx)
{
    struct fuzz_transport *ft = ctx;
    struct iovec iov[64];
    int n;

    while ((n = nbd_conn_out_iov(ft->c, iov, 64)) > 0) {
        size_t sent = 0;

        for (int i = 0; i < n; i++) {
            sent += iov[i].iov_len;
        }
        if (ft->max_send != 0 && sent > ft->max_send) {
            sent = ft->max_send;
        }
        ft->sent_total += sent;
        nbd_conn_sent(ft->c, (ssize_t)sent);
    }
}

static const struct nbd_conn_transport g_fuzz_transport = {.process = fuzz_process};

static void
poll_quiescent(void)
{
    for (int i = 0; i < 10000 && ioc_reactor_poll_once(g_r); i++) {
    }
}

/* Give the engine up to len bytes in pieces of at most `piece`; false when it stops taking. */
static bool
feed(struct nbd_conn *c, const uint8_t *data, size_t len, size_t piece)
{
    while (len > 0) {
        void *buf;
        size_t room;

        if (!nbd_conn_recv_buf(c, &buf, &room)) {
            poll_quiescent();
            if (!nbd_conn_recv_buf(c, &buf, &room)) {
                return false;
            }
        }
        room = IOC_MIN(IOC_MIN(room, len), piece);
        memcpy(buf, data, room);
        nbd_conn_recv_done(c, (ssize_t)room);
        data += room;
        len -= room;
    }
    return true;
}

static size_t
put_opt(uint8_t *p, uint32_t opt, const void *data, uint32_t len)
{
    struct nbd_opt_hdr h = {htobe64(NBD_OPTS_MAGIC), htobe32(opt), htobe32(len)};

    memcpy(p, &h, sizeof(h));
    if (len > 0) {
        memcpy(p + sizeof(h), data, len);
    }
    return sizeof(h) + len;
}

static size_t
canned_handshake(uint8_t *p)
{
    static const uint8_t meta[] = {0, 0, 0, 2, 'm', '0', 0, 0, 0, 1, 0, 0, 0, 15,
                                   'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c',
                                   'a', 't', 'i', 'o', 'n'};
    static const uint8_t go[] = {0, 0, 0, 2, 'm', '0', 0, 1, 0, 3};
    uint32_t flags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    size_t n = 0;

    memcpy(p, &flags, 4);
    n += 4;
    n += put_opt(p + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    n += put_opt(p + n, NBD_OPT_SET_META_CONTEXT, meta, sizeof(meta));
    n += put_opt(p + n, NBD_OPT_GO, go, sizeof(go));
    return n;
}

static int
fuzz_init(void)
{
    g_ioc_log_level = IOC_LOG_ERR;
    if (ioc_reactor_create_local(NULL, &g_r) < 0 ||
        ioc_bdev_malloc_create("fuzz0", 1u << 20, 512, NULL) < 0 ||
        ioc_nbd_export_add("m0", "fuzz0", false, NULL) < 0 ||
        ioc_nbd_export_add("ro", "fuzz0", true, NULL) < 0) {
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized = -1;
    struct fuzz_transport ft = {0};
    uint8_t hs[256];
    uint8_t mode;

    if (initialized < 0) {
        initialized = fuzz_init();
    }
    if (size == 0) {
        return 0;
    }
    mode = data[0];
    data++;
    size--;
    ft.max_send = (mode & 4) ? 5 : 0;
    if (nbd_conn_create(g_r, &g_fuzz_transport, &ft, "fuzz", &ft.c) < 0) {
        return 0;
    }
    poll_quiescent();
    if (!(mode & 1) || feed(ft.c, hs, canned_handshake(hs), SIZE_MAX)) {
        feed(ft.c, data, size, (mode & 2) ? 7 : SIZE_MAX);
    }
    poll_quiescent();
    if ((mode & 8) && !nbd_conn_finished(ft.c)) {
        nbd_conn_recv_done(ft.c, 0); /* the peer goes away */
    } else if (!nbd_conn_finished(ft.c)) {
        nbd_conn_abort(ft.c);
    }
    poll_quiescent();
    assert(nbd_conn_finished(ft.c));
    if (!nbd_conn_finished(ft.c)) {
        abort();
    }
    nbd_conn_destroy(&ft.c);
    return 0;
}
