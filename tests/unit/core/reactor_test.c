/*
 * Unit tests for core/reactor.c: deferred calls, messages, timers, pollers,
 * io_uring requests, the threaded reactors with adaptive polling, and the
 * run-queue delay watcher (core/cpu_contention.c) that sets the spin cap.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "core/cpu_contention.h"
#include "core/reactor.h"

static struct ioc_reactor *g_r;

static int
setup_local(void **state)
{
    (void)state;
    return ioc_reactor_create_local(NULL, &g_r);
}

static int
teardown_local(void **state)
{
    (void)state;
    ioc_reactor_destroy_local(&g_r);
    return g_r == NULL ? 0 : -1;
}

static int g_deferred_runs;

static void
count_deferred(struct ioc_deferred *d)
{
    (void)d;
    g_deferred_runs++;
}

static void
test_ioc_reactor_defer_runs_once(void **state)
{
    struct ioc_deferred d = {0};

    (void)state;
    g_deferred_runs = 0;
    ioc_reactor_defer(g_r, &d, count_deferred);
    ioc_reactor_defer(g_r, &d, count_deferred); /* already queued: no second run */
    assert_int_equal(g_deferred_runs, 0);        /* never inline */
    ioc_reactor_poll_once(g_r);
    assert_int_equal(g_deferred_runs, 1);
    ioc_reactor_poll_once(g_r);
    assert_int_equal(g_deferred_runs, 1);
}

/* Deferred calls that record their order, and one that cancels another. */
struct order_call {
    struct ioc_deferred d;
    int id;
    struct ioc_deferred *cancel; /* taken off the queue when this one runs */
    bool requeue;                /* queues itself again when it runs */
};

static int g_order[16];
static int g_order_n;

static void
order_deferred(struct ioc_deferred *d)
{
    struct order_call *c = ioc_container_of(d, struct order_call, d);

    if (g_order_n < (int)IOC_ARRAY_SIZE(g_order)) {
        g_order[g_order_n] = c->id;
    }
    g_order_n++;
    if (c->cancel != NULL) {
        ioc_reactor_defer_cancel(g_r, c->cancel);
    }
    if (c->requeue) {
        ioc_reactor_defer(g_r, &c->d, order_deferred);
    }
}

static void
test_ioc_reactor_defer_cancel(void **state)
{
    struct order_call c[5] = {{.id = 1}, {.id = 2}, {.id = 3}, {.id = 4}, {.id = 5}};

    (void)state;
    g_order_n = 0;
    for (int i = 0; i < 4; i++) {
        ioc_reactor_defer(g_r, &c[i].d, order_deferred);
    }
    ioc_reactor_defer_cancel(g_r, &c[0].d); /* the head */
    ioc_reactor_defer_cancel(g_r, &c[2].d); /* the middle */
    ioc_reactor_defer_cancel(g_r, &c[3].d); /* the tail: the next one queued goes after 2 */
    ioc_reactor_defer_cancel(g_r, &c[3].d); /* not queued: nothing */
    assert_false(c[0].d.queued);
    assert_true(c[1].d.queued);
    ioc_reactor_defer(g_r, &c[4].d, order_deferred);
    ioc_reactor_poll_once(g_r);
    assert_int_equal(g_order_n, 2);
    assert_int_equal(g_order[0], 2);
    assert_int_equal(g_order[1], 5);
}

/* The shape of the bug it fixes: a call frees an object whose call is queued after it. */
static void
test_ioc_reactor_defer_cancel_from_a_running_call(void **state)
{
    struct order_call c[3] = {{.id = 1}, {.id = 2}, {.id = 3}};

    (void)state;
    g_order_n = 0;
    c[0].cancel = &c[1].d;
    for (int i = 0; i < 3; i++) {
        ioc_reactor_defer(g_r, &c[i].d, order_deferred);
    }
    ioc_reactor_poll_once(g_r);
    assert_int_equal(g_order_n, 2);
    assert_int_equal(g_order[0], 1);
    assert_int_equal(g_order[1], 3);
    assert_false(c[1].d.queued);
}

/* A call that queues itself again runs once per round, not forever. */
static void
test_ioc_reactor_defer_requeue_is_bounded(void **state)
{
    struct order_call c = {.id = 7, .requeue = true};

    (void)state;
    g_order_n = 0;
    ioc_reactor_defer(g_r, &c.d, order_deferred);
    ioc_reactor_poll_once(g_r);
    /* one run per round, REACTOR_MAX_DEFER_ROUNDS (64) rounds at most */
    assert_true(g_order_n >= 1 && g_order_n <= 64);
    assert_true(c.d.queued);
    c.requeue = false;
    ioc_reactor_poll_once(g_r);
    assert_false(c.d.queued);
}

static void
msg_set_flag(void *arg)
{
    *(bool *)arg = true;
}

static void
test_ioc_reactor_send_msg_local(void **state)
{
    bool done = false;

    (void)state;
    assert_int_equal(ioc_reactor_send_msg(g_r, msg_set_flag, &done), 0);
    assert_false(done);
    assert_int_equal(ioc_reactor_poll_until(g_r, &done, 1000), 0);
    assert_true(done);
}

static int g_timer_order[3];
static int g_timer_fired;

static void
timer_record(void *arg)
{
    g_timer_order[g_timer_fired++] = (int)(intptr_t)arg;
}

static void
test_ioc_timer_start_fires_in_order(void **state)
{
    bool never = false;
    struct ioc_timer *cancelled;

    (void)state;
    g_timer_fired = 0;
    ioc_timer_start(g_r, 3000, timer_record, (void *)2);
    ioc_timer_start(g_r, 1000, timer_record, (void *)1);
    cancelled = ioc_timer_start(g_r, 2000, timer_record, (void *)99);
    ioc_timer_cancel(&cancelled);
    assert_null(cancelled);
    assert_int_equal(ioc_reactor_poll_until(g_r, &never, 20), -ETIMEDOUT);
    assert_int_equal(g_timer_fired, 2);
    assert_int_equal(g_timer_order[0], 1);
    assert_int_equal(g_timer_order[1], 2);
}

struct poller_ctx {
    int runs;
    struct ioc_poller *self;
};

static enum ioc_poll_result
poller_unregister_after_three(void *arg)
{
    struct poller_ctx *ctx = arg;

    if (++ctx->runs == 3) {
        ioc_poller_unregister(&ctx->self);
    }
    return IOC_POLL_BUSY;
}

static void
test_ioc_poller_unregister_from_itself(void **state)
{
    struct poller_ctx ctx = {0};

    (void)state;
    ctx.self = ioc_poller_register(g_r, poller_unregister_after_three, &ctx, 0);
    assert_non_null(ctx.self);
    for (int i = 0; i < 10; i++) {
        ioc_reactor_poll_once(g_r);
    }
    assert_int_equal(ctx.runs, 3);
    assert_null(ctx.self);
}

struct nop_ctx {
    struct ioc_uring_req req;
    int res;
    int calls;
};

static void
nop_done(struct ioc_uring_req *req, int res, uint32_t flags)
{
    struct nop_ctx *ctx = ioc_container_of(req, struct nop_ctx, req);

    (void)flags;
    ctx->res = res;
    ctx->calls++;
}

static void
test_ioc_reactor_get_sqe_completes_via_callback(void **state)
{
    struct nop_ctx ctx[2000];
    bool never = false;

    (void)state;
    memset(ctx, 0, sizeof(ctx));
    /* More than the SQ holds (1024): get_sqe must submit to make room. */
    for (int i = 0; i < 2000; i++) {
        struct io_uring_sqe *sqe = ioc_reactor_get_sqe(g_r);
        io_uring_prep_nop(sqe);
        ctx[i].req.done = nop_done;
        ioc_uring_sqe_set_req(sqe, &ctx[i].req);
    }
    ioc_reactor_poll_until(g_r, &never, 50);
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(ctx[i].calls, 1);
        assert_int_equal(ctx[i].res, 0);
    }
}

/* ---- threaded reactors ---- */

static atomic_int g_msg_count;

static void
msg_count(void *arg)
{
    (void)arg;
    assert_non_null(ioc_reactor_self());
    atomic_fetch_add(&g_msg_count, 1);
}

static void
test_ioc_reactors_start_messages_and_sleep(void **state)
{
    struct ioc_reactor_opts opts = {.count = 2, .mode = IOC_POLL_MODE_ADAPTIVE};
    struct ioc_reactor_stats st;

    (void)state;
    assert_int_equal(ioc_reactors_start(&opts), 0);
    assert_int_equal(ioc_reactor_count(), 2);
    atomic_store(&g_msg_count, 0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(ioc_reactor_send_msg(ioc_reactor_next(), msg_count, NULL), 0);
    }
    /* call_sync on each reactor runs after the messages queued before it. */
    assert_int_equal(ioc_reactor_call_sync(ioc_reactor_get(0), msg_count, NULL), 0);
    assert_int_equal(ioc_reactor_call_sync(ioc_reactor_get(1), msg_count, NULL), 0);
    assert_int_equal(atomic_load(&g_msg_count), 1002);
    /* Idle: an adaptive reactor must go to sleep in the kernel, not spin. */
    usleep(100000);
    ioc_reactor_get_stats(ioc_reactor_get(0), &st);
    assert_true(st.sleeps > 0);
    assert_true(st.iterations < 100000);
    ioc_reactors_stop();
    assert_int_equal(ioc_reactor_count(), 0);
}

static void
test_ioc_poll_mode_parse_names(void **state)
{
    enum ioc_poll_mode m;

    (void)state;
    assert_int_equal(ioc_poll_mode_parse("busy", &m), 0);
    assert_int_equal(m, IOC_POLL_MODE_BUSY);
    assert_int_equal(ioc_poll_mode_parse("sleepy", &m), -EINVAL);
    assert_string_equal(ioc_poll_mode_name(IOC_POLL_MODE_SLEEP), "sleep");
}

static void
test_ioc_schedstat_parse_fields(void **state)
{
    uint64_t cpu = 0;
    uint64_t delay = 0;

    (void)state;
    assert_int_equal(ioc_schedstat_parse("208479646 23258382 867\n", &cpu, &delay), 0);
    assert_true(cpu == 208479646);
    assert_true(delay == 23258382);
    assert_int_equal(ioc_schedstat_parse("12\n", &cpu, &delay), -EINVAL);
    assert_int_equal(ioc_schedstat_parse("", &cpu, &delay), -EINVAL);
    assert_int_equal(ioc_schedstat_parse("x 1 2", &cpu, &delay), -EINVAL);
}

static void
test_ioc_contention_judge_threshold(void **state)
{
    (void)state;
    /* Quiet machine, reactor spinning at QD1: 0.3% of its wanted time waiting. */
    assert_int_equal(ioc_contention_judge(9000000, 27000), 0);
    /* A CPU-bound process beside it: more than half. */
    assert_int_equal(ioc_contention_judge(4000000, 5000000), 1);
    assert_int_equal(ioc_contention_judge(9000000, 1000000), 1); /* exactly 10% */
    assert_int_equal(ioc_contention_judge(9100000, 1000000), 0);
    /* Mostly asleep: too little to judge either way. */
    assert_int_equal(ioc_contention_judge(100000, 800000), -1);
}

static void
test_ioc_cpu_contention_unknown_counts_as_contended(void **state)
{
    struct ioc_cpu_contention c = {.fd = -1};

    (void)state;
    assert_true(ioc_cpu_contention_check(&c, ioc_now_ns()));
    ioc_cpu_contention_fini(&c);
}

static atomic_bool g_hog_stop;

static void *
hog_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_hog_stop)) {
    }
    return NULL;
}

/* Two busy threads pinned to one CPU: each waits about half the time. */
static void
test_ioc_cpu_contention_sees_a_thread_sharing_the_cpu(void **state)
{
    struct ioc_cpu_contention c;
    cpu_set_t one;
    cpu_set_t saved;
    pthread_t hog;
    uint64_t start;
    bool contended = false;

    (void)state;
    assert_int_equal(sched_getaffinity(0, sizeof(saved), &saved), 0);
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
    atomic_store(&g_hog_stop, false);
    /* The hog inherits the affinity of its creator. */
    assert_int_equal(pthread_create(&hog, NULL, hog_thread, NULL), 0);
    assert_int_equal(ioc_cpu_contention_init(&c, ioc_now_ns()), 0);
    start = ioc_now_ns();
    while (!contended && ioc_now_ns() - start < 2000000000ull) {
        contended = ioc_cpu_contention_check(&c, ioc_now_ns());
    }
    atomic_store(&g_hog_stop, true);
    pthread_join(hog, NULL);
    assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
    assert_true(contended);
    assert_true(c.contended_samples > 0);
    ioc_cpu_contention_fini(&c);
    assert_int_equal(c.fd, -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ioc_reactor_defer_runs_once, setup_local,
                                        teardown_local),
        cmocka_unit_test_setup_teardown(test_ioc_reactor_defer_cancel, setup_local,
                                        teardown_local),
        cmocka_unit_test_setup_teardown(test_ioc_reactor_defer_cancel_from_a_running_call,
                                        setup_local, teardown_local),
        cmocka_unit_test_setup_teardown(test_ioc_reactor_defer_requeue_is_bounded, setup_local,
                                        teardown_local),
        cmocka_unit_test_setup_teardown(test_ioc_reactor_send_msg_local, setup_local,
                                        teardown_local),
        cmocka_unit_test_setup_teardown(test_ioc_timer_start_fires_in_order, setup_local,
                                        teardown_local),
        cmocka_unit_test_setup_teardown(test_ioc_poller_unregister_from_itself, setup_local,
                                        teardown_local),
        cmocka_unit_test_setup_teardown(test_ioc_reactor_get_sqe_completes_via_callback,
                                        setup_local, teardown_local),
        cmocka_unit_test(test_ioc_reactors_start_messages_and_sleep),
        cmocka_unit_test(test_ioc_poll_mode_parse_names),
        cmocka_unit_test(test_ioc_schedstat_parse_fields),
        cmocka_unit_test(test_ioc_contention_judge_threshold),
        cmocka_unit_test(test_ioc_cpu_contention_unknown_counts_as_contended),
        cmocka_unit_test(test_ioc_cpu_contention_sees_a_thread_sharing_the_cpu),
    };

    return cmocka_run_group_tests_name("reactor", tests, NULL, NULL);
}
