/*
 * fuzz_iscsi_conn.c - libFuzzer target for the iSCSI connection engine
 * (iscsi_conn.c, iscsi_login.c, iscsi_pdu.c, iscsi_text.c and the SCSI layer).
 *
 * Each input is what an initiator sends on one connection. The first byte
 * selects how it is delivered:
 *   bit 0  prepend a canned login (no CHAP, straight to full feature) to the
 *          target "iqn.2024-01.io.ioc.fuzz:t0", so the rest is full-feature PDUs
 *          (SCSI commands, Data-Out, NOP, TMF, text, logout);
 *   bit 1  deliver in 7-byte pieces;
 *   bit 2  acknowledge sends 4093 bytes at a time (partial sends mid-iovec;
 *          smaller pieces only make multi-MiB reads slow, not the code paths new).
 * The engine runs on a local reactor with a 1 MiB malloc bdev behind the
 * target. After the input, the reactor is polled until quiescent, the
 * connection is aborted and must then be finished; LeakSanitizer checks that
 * it freed what it took.
 */
#include "ioc/common.h"

#include <string.h>

#include <jansson.h>

#include "bdev/malloc/bdev_malloc.h"
#include "core/log.h"
#include "core/reactor.h"
#include "target/iscsi/iscsi_internal.h"

static struct ioc_reactor *g_r;

struct fuzz_transport {
    struct iscsi_conn *c;
    size_t max_send;
};

static void
fuzz_process(void *ctx)
{
    struct fuzz_transport *ft = ctx;
    struct iovec iov[64];
    int n;

    while ((n = iscsi_conn_out_iov(ft->c, iov, 64)) > 0) {
        size_t sent = 0;

        for (int i = 0; i < n; i++) {
            sent += iov[i].iov_len;
        }
        if (ft->max_send != 0 && sent > ft->max_send) {
            sent = ft->max_send;
        }
        iscsi_conn_sent(ft->c, (ssize_t)sent);
    }
}

static const struct iscsi_conn_transport g_fuzz_transport = {.process = fuzz_process};

static void
poll_quiescent(void)
{
    for (int i = 0; i < 10000 && ioc_reactor_poll_once(g_r); i++) {
    }
}

static bool
feed(struct iscsi_conn *c, const uint8_t *data, size_t len, size_t piece)
{
    while (len > 0) {
        void *buf;
        size_t room;

        if (!iscsi_conn_recv_buf(c, &buf, &room)) {
            poll_quiescent();
            if (!iscsi_conn_recv_buf(c, &buf, &room)) {
                return false;
            }
        }
        room = IOC_MIN(IOC_MIN(room, len), piece);
        memcpy(buf, data, room);
        iscsi_conn_recv_done(c, (ssize_t)room);
        data += room;
        len -= room;
    }
    return true;
}

static size_t
canned_login(uint8_t *out)
{
    static const char keys[] = "InitiatorName=iqn.2024-01.io.ioc.fuzz:i\0SessionType=Normal\0"
                               "TargetName=iqn.2024-01.io.ioc.fuzz:t0\0AuthMethod=None\0"
                               "MaxRecvDataSegmentLength=8192\0InitialR2T=No\0";
    uint32_t len = sizeof(keys) - 1;

    memset(out, 0, 48);
    out[0] = ISCSI_OP_LOGIN_REQ | ISCSI_FLAG_IMMEDIATE;
    out[1] = ISCSI_LOGIN_TRANSIT | ISCSI_STAGE_FULL;
    iscsi_dlen_set(out + 5, len);
    out[8] = 0x80;
    memcpy(out + 48, keys, len);
    return 48 + iscsi_pad4(len);
}

static void
fuzz_init(void)
{
    json_t *p;

    g_ioc_log_level = IOC_LOG_ERR;
    if (ioc_reactor_create_local(NULL, &g_r) < 0 ||
        ioc_bdev_malloc_create("fz0", 1u << 20, 512, NULL) < 0) {
        abort();
    }
    p = json_pack("{s:s, s:[{s:i, s:s}]}", "iqn", "iqn.2024-01.io.ioc.fuzz:t0", "luns", "lun", 0,
                  "bdev", "fz0");
    if (ioc_iscsi_tgt_create(p, NULL) < 0) {
        abort();
    }
    json_decref(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_transport ft = {0};
    uint8_t login[256];
    uint8_t mode;

    if (g_r == NULL) {
        fuzz_init();
    }
    if (size < 1) {
        return 0;
    }
    mode = data[0];
    data++;
    size--;
    ft.max_send = (mode & 4) ? 4093 : 0;
    if (iscsi_conn_create(g_r, &g_fuzz_transport, &ft, "fuzz", "127.0.0.1:3260,1", &ft.c) < 0) {
        return 0;
    }
    if (mode & 1) {
        feed(ft.c, login, canned_login(login), SIZE_MAX);
    }
    feed(ft.c, data, size, (mode & 2) ? 7 : SIZE_MAX);
    poll_quiescent();
    iscsi_conn_abort(ft.c);
    poll_quiescent();
    if (!iscsi_conn_finished(ft.c)) {
        abort();
    }
    iscsi_conn_destroy(&ft.c);
    return 0;
}
