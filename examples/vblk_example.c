/*
 * examples/vblk_example.c - the smallest complete libvblk program.
 *
 * Connects to a vhost-user-blk socket, prints the device geometry, writes a
 * block, reads it back (synchronous helpers), then runs 64 asynchronous
 * reads at queue depth 8 and flushes. Build outside the tree with:
 *
 *   cc vblk_example.c $(pkg-config --cflags --libs vblk) -o vblk_example
 *
 * and run: ./vblk_example /path/to/vhost.sock
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <ioc/vblk.h>

#define BS 4096

static int
async_reads(struct vblk *v, void *bufs[8])
{
    struct vblk_queue *q = vblk_get_queue(v, 0);
    struct vblk_completion done[8];
    unsigned submitted = 0, completed = 0;
    int rc;

    while (completed < 64) {
        /* keep 8 requests in flight; each buffer is reused when its read completes */
        while (submitted < 64 && vblk_queue_inflight(q) < 8) {
            struct iovec iov = {bufs[submitted % 8], BS};

            rc = vblk_queue_submit(q, VBLK_OP_READ, (uint64_t)submitted * BS, 0, &iov, 1,
                                   bufs[submitted % 8]);
            if (rc != 0) {
                return rc;
            }
            submitted++;
        }
        rc = vblk_queue_kick(q); /* one notification (at most) for the whole batch */
        if (rc == 0) {
            rc = vblk_queue_wait(q, done, 8, 5000);
        }
        if (rc <= 0) {
            return rc == 0 ? -ETIMEDOUT : rc;
        }
        for (int i = 0; i < rc; i++) {
            if (done[i].status != 0) {
                return done[i].status;
            }
        }
        completed += (unsigned)rc;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct vblk_opts opts;
    struct vblk *v = NULL;
    void *bufs[8];
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
        return 2;
    }
    vblk_opts_init(&opts);
    opts.mode = VBLK_MODE_ADAPTIVE;
    opts.mem_size = 1 << 20;
    rc = vblk_connect(argv[1], &opts, &v);
    if (rc != 0) {
        fprintf(stderr, "connect %s: %s\n", argv[1], strerror(-rc));
        return 1;
    }
    printf("capacity %llu bytes, block %u, %u queue(s)%s\n",
           (unsigned long long)vblk_capacity(v), vblk_block_size(v), vblk_num_queues(v),
           vblk_read_only(v) ? ", read-only" : "");
    for (int i = 0; i < 8; i++) {
        bufs[i] = vblk_buf_alloc(v, BS); /* IO buffers must live in the shared heap */
    }
    memset(bufs[0], 'x', BS);
    rc = vblk_read_only(v) ? 0 : vblk_write(v, bufs[0], BS, 0);
    if (rc == 0) {
        memset(bufs[0], 0, BS);
        rc = vblk_read(v, bufs[0], BS, 0);
    }
    if (rc == 0) {
        printf("block 0 starts with '%c'\n", ((char *)bufs[0])[0]);
        rc = async_reads(v, bufs);
    }
    if (rc == 0 && vblk_supports(v, VBLK_OP_FLUSH)) {
        rc = vblk_flush(v);
    }
    if (rc != 0) {
        fprintf(stderr, "io: %s\n", strerror(-rc));
    } else {
        printf("64 async reads and a flush: ok\n");
    }
    for (int i = 0; i < 8; i++) {
        vblk_buf_free(v, bufs[i]);
    }
    vblk_close(&v);
    return rc == 0 ? 0 : 1;
}
