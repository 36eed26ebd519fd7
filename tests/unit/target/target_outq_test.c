/*
 * Unit tests for the targets' output queue (target_outq.{c,h}): the iovec
 * array one send gets, resuming after partial sends (mid-iovec, across
 * pieces), retiring pieces in order, pieces queued by a done() callback, and
 * dropping. The engines' own tests (nbd_conn_test, iscsi_conn_test) cover it
 * again through real protocol traffic.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "target/target_outq.h"

/* A piece with up to three iovecs over a text, recording when it is retired. */
struct piece {
    struct ioc_target_out out;
    struct iovec iov[3];
    int done_order;          /* 0 = not retired; else 1, 2, ... */
};

static int g_done_seq;
static struct ioc_target_outq *g_requeue_q; /* done() appends g_requeue_piece here */
static struct piece *g_requeue_piece;

static void
piece_done(struct ioc_target_out *o)
{
    struct piece *p = ioc_container_of(o, struct piece, out);

    p->done_order = ++g_done_seq;
    if (g_requeue_q != NULL && g_requeue_piece != NULL && g_requeue_piece != p) {
        struct piece *next = g_requeue_piece;

        g_requeue_piece = NULL;
        ioc_target_outq_append(g_requeue_q, &next->out);
    }
}

/* Split text at the given lengths (0 allowed: an empty iovec). */
static void
piece_init(struct piece *p, const char *text, const size_t *lens, int n)
{
    size_t off = 0;

    memset(p, 0, sizeof(*p));
    for (int i = 0; i < n; i++) {
        p->iov[i].iov_base = (void *)(text + off);
        p->iov[i].iov_len = lens[i];
        off += lens[i];
    }
    p->out.iov = p->iov;
    p->out.iovcnt = n;
    p->out.done = piece_done;
}

/* What the next send would carry, as one string. */
static void
pending(const struct ioc_target_outq *q, int max, char *buf, size_t cap, int *iovcnt)
{
    struct iovec iov[16];
    size_t len = 0;
    int n = ioc_target_outq_iov(q, iov, max);

    for (int i = 0; i < n; i++) {
        assert_true(iov[i].iov_len > 0);
        assert_true(len + iov[i].iov_len < cap);
        memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    buf[len] = '\0';
    *iovcnt = n;
}

static int
setup(void **state)
{
    (void)state;
    g_done_seq = 0;
    g_requeue_q = NULL;
    g_requeue_piece = NULL;
    return 0;
}

static void
test_target_outq_append_sets_len(void **state)
{
    struct ioc_target_outq q;
    struct piece a;
    const size_t la[] = {3, 0, 4};

    (void)state;
    ioc_target_outq_init(&q);
    assert_true(ioc_target_outq_empty(&q));
    piece_init(&a, "abcdefg", la, 3);
    ioc_target_outq_append(&q, &a.out);
    assert_false(ioc_target_outq_empty(&q));
    assert_int_equal(a.out.len, 7);
}

static void
test_target_outq_iov_skips_empty_and_caps(void **state)
{
    struct ioc_target_outq q;
    struct piece a, b;
    const size_t la[] = {3, 0, 4}, lb[] = {2, 1};
    char buf[64];
    int n;

    (void)state;
    ioc_target_outq_init(&q);
    piece_init(&a, "abcdefg", la, 3);
    piece_init(&b, "xyz", lb, 2);
    ioc_target_outq_append(&q, &a.out);
    ioc_target_outq_append(&q, &b.out);
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_string_equal(buf, "abcdefgxyz");
    assert_int_equal(n, 4); /* the empty iovec is not handed out */
    pending(&q, 2, buf, sizeof(buf), &n);
    assert_string_equal(buf, "abcdefg");
    assert_int_equal(n, 2);
}

static void
test_target_outq_sent_partial_resumes_mid_iovec(void **state)
{
    struct ioc_target_outq q;
    struct piece a, b;
    const size_t la[] = {3, 4}, lb[] = {2, 1};
    char buf[64];
    int n;

    (void)state;
    ioc_target_outq_init(&q);
    piece_init(&a, "abcdefg", la, 2);
    piece_init(&b, "xyz", lb, 2);
    ioc_target_outq_append(&q, &a.out);
    ioc_target_outq_append(&q, &b.out);

    ioc_target_outq_sent(&q, 5); /* "abc" + "de" */
    assert_int_equal(a.done_order, 0);
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_string_equal(buf, "fgxyz");
    assert_int_equal(n, 3);

    ioc_target_outq_sent(&q, 3); /* the end of a, into b */
    assert_int_equal(a.done_order, 1);
    assert_int_equal(b.done_order, 0);
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_string_equal(buf, "yz");

    ioc_target_outq_sent(&q, 2);
    assert_int_equal(b.done_order, 2);
    assert_true(ioc_target_outq_empty(&q));
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_int_equal(n, 0);
}

static void
test_target_outq_sent_zero_keeps_everything(void **state)
{
    struct ioc_target_outq q;
    struct piece a;
    const size_t la[] = {3};
    char buf[16];
    int n;

    (void)state;
    ioc_target_outq_init(&q);
    piece_init(&a, "abc", la, 1);
    ioc_target_outq_append(&q, &a.out);
    ioc_target_outq_sent(&q, 0);
    assert_int_equal(a.done_order, 0);
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_string_equal(buf, "abc");
}

/* A done() that queues more output: the new piece goes behind, unsent. */
static void
test_target_outq_done_appends_behind(void **state)
{
    struct ioc_target_outq q;
    struct piece a, b, c;
    const size_t la[] = {2}, lb[] = {2}, lc[] = {3};
    char buf[16];
    int n;

    (void)state;
    ioc_target_outq_init(&q);
    piece_init(&a, "ab", la, 1);
    piece_init(&b, "cd", lb, 1);
    piece_init(&c, "XYZ", lc, 1);
    ioc_target_outq_append(&q, &a.out);
    ioc_target_outq_append(&q, &b.out);
    g_requeue_q = &q;
    g_requeue_piece = &c; /* a's done() appends c */

    ioc_target_outq_sent(&q, 3); /* all of a, one byte of b */
    assert_int_equal(a.done_order, 1);
    assert_int_equal(b.done_order, 0);
    assert_int_equal(c.done_order, 0);
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_string_equal(buf, "dXYZ");

    ioc_target_outq_sent(&q, 4);
    assert_int_equal(b.done_order, 2);
    assert_int_equal(c.done_order, 3);
    assert_true(ioc_target_outq_empty(&q));
}

static void
test_target_outq_drop_retires_in_order(void **state)
{
    struct ioc_target_outq q;
    struct piece a, b;
    const size_t la[] = {2}, lb[] = {2};

    (void)state;
    ioc_target_outq_init(&q);
    piece_init(&a, "ab", la, 1);
    piece_init(&b, "cd", lb, 1);
    ioc_target_outq_append(&q, &a.out);
    ioc_target_outq_append(&q, &b.out);
    ioc_target_outq_sent(&q, 1);
    ioc_target_outq_drop(&q);
    assert_int_equal(a.done_order, 1);
    assert_int_equal(b.done_order, 2);
    assert_true(ioc_target_outq_empty(&q));
    assert_int_equal(q.off, 0);
    /* the queue is usable again: the tail was reset with the head */
    ioc_target_outq_append(&q, &a.out);
    assert_ptr_equal(q.head, &a.out);
}

/*
 * A piece with file bytes: the iovecs stop after its header, the file range
 * shows once the header is out, partial splices move through it, and the
 * next piece's iovecs come after its last file byte.
 */
static void
test_target_outq_file_piece(void **state)
{
    struct ioc_target_outq q;
    struct piece a, b, c;
    const size_t la[] = {2}, lb[] = {3}, lc[] = {1};
    char buf[64];
    uint64_t off;
    size_t len;
    int fd;
    int n;

    (void)state;
    ioc_target_outq_init(&q);
    piece_init(&a, "ab", la, 1);
    piece_init(&b, "HDR", lb, 1);
    piece_init(&c, "z", lc, 1);
    ioc_target_outq_append(&q, &a.out);
    ioc_target_outq_append_file(&q, &b.out, 7, 4096, 100);
    ioc_target_outq_append(&q, &c.out);
    assert_int_equal(b.out.len, 103);
    assert_false(ioc_target_outq_file(&q, &fd, &off, &len));
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_string_equal(buf, "abHDR"); /* not "z": the file bytes come first */
    ioc_target_outq_sent(&q, 4);       /* "ab" and "HD" */
    assert_int_equal(a.done_order, 1);
    assert_false(ioc_target_outq_file(&q, &fd, &off, &len));
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_string_equal(buf, "R");
    ioc_target_outq_sent(&q, 1);
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_int_equal(n, 0);
    assert_true(ioc_target_outq_file(&q, &fd, &off, &len));
    assert_int_equal(fd, 7);
    assert_int_equal(off, 4096);
    assert_int_equal(len, 100);
    ioc_target_outq_sent(&q, 60); /* a partial splice */
    assert_true(ioc_target_outq_file(&q, &fd, &off, &len));
    assert_int_equal(off, 4156);
    assert_int_equal(len, 40);
    assert_int_equal(b.done_order, 0);
    ioc_target_outq_sent(&q, 40);
    assert_int_equal(b.done_order, 2);
    assert_false(ioc_target_outq_file(&q, &fd, &off, &len));
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_string_equal(buf, "z");
    /* a reused piece appended without a file is plain again */
    ioc_target_outq_sent(&q, 1);
    ioc_target_outq_append(&q, &b.out);
    assert_int_equal(b.out.len, 3);
    assert_false(ioc_target_outq_file(&q, &fd, &off, &len));
    pending(&q, 16, buf, sizeof(buf), &n);
    assert_string_equal(buf, "HDR");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_target_outq_append_sets_len, setup),
        cmocka_unit_test_setup(test_target_outq_iov_skips_empty_and_caps, setup),
        cmocka_unit_test_setup(test_target_outq_sent_partial_resumes_mid_iovec, setup),
        cmocka_unit_test_setup(test_target_outq_sent_zero_keeps_everything, setup),
        cmocka_unit_test_setup(test_target_outq_done_appends_behind, setup),
        cmocka_unit_test_setup(test_target_outq_drop_retires_in_order, setup),
        cmocka_unit_test_setup(test_target_outq_file_piece, setup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
