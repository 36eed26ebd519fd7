/*
 * Unit tests for the reply-holding decision (target_coalesce.{c,h}), over a
 * simulated connection: time advances in 100 us steps and each step moves
 * bytes at one rate while the connection holds and another while it does
 * not, the way a pipelined client (holding costs nothing) and a QD1 client
 * (holding starves it) behave. The e2e test
 * tests/e2e/nbd/test_nbd_coalesce.py checks the same with fio.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "target/target_coalesce.h"

#define STEP_NS 100000ull /* 100 us */

/* What one simulated run saw. */
struct sim {
    uint64_t now;
    uint64_t steps;
    uint64_t held_steps;
    uint64_t probe_starts[64]; /* times the connection entered PROBE */
    unsigned nprobe_starts;
};

/* Run for `ns` moving bytes_off or bytes_hold per step (as the state says). */
static void
sim_run(struct ioc_coalesce *c, struct sim *s, uint64_t ns, uint64_t bytes_off,
        uint64_t bytes_hold)
{
    for (uint64_t end = s->now + ns; s->now < end; s->now += STEP_NS) {
        enum ioc_coalesce_state before = c->state;
        bool hold = ioc_coalesce_holding(c, s->now);

        if (c->state == IOC_COALESCE_PROBE && before != IOC_COALESCE_PROBE &&
            s->nprobe_starts < IOC_ARRAY_SIZE(s->probe_starts)) {
            s->probe_starts[s->nprobe_starts++] = s->now;
        }
        ioc_coalesce_account(c, hold ? bytes_hold : bytes_off);
        s->steps++;
        s->held_steps += hold;
    }
}

static struct sim
sim_start(struct ioc_coalesce *c)
{
    ioc_coalesce_init(c);
    return (struct sim){.now = 1000000000ull};
}

/* 100 us of 4k reads at 100k IOPS: about 40 KiB. */
#define PIPELINED_BYTES 41000u

static void
test_pipelined_client_is_held(void **state)
{
    struct ioc_coalesce c;
    struct sim s = sim_start(&c);

    (void)state;
    /* holding lets the client go faster, as fio at QD32 did */
    sim_run(&c, &s, 2000000000ull, PIPELINED_BYTES, PIPELINED_BYTES * 11 / 10);
    assert_int_not_equal(c.state, IOC_COALESCE_OFF);
    assert_true(c.accepted >= 1);
    assert_int_equal(c.accepted, c.probes);
    /* only the BASE phases (5 ms per 255 ms) go without holding */
    assert_true(s.held_steps * 100 >= s.steps * 95);
}

static void
test_qd1_client_is_not_held(void **state)
{
    struct ioc_coalesce c;
    struct sim s = sim_start(&c);

    (void)state;
    /* holding makes a QD1 client wait out every hold: a third of the traffic */
    sim_run(&c, &s, 10000000000ull, PIPELINED_BYTES / 2, PIPELINED_BYTES / 6);
    assert_int_equal(c.accepted, 0);
    assert_true(c.probes >= 4);
    /* probes back off: 5 ms of holding per 0.1, 0.2, 0.4 ... 6.4 s */
    assert_true(s.held_steps * 100 < s.steps * 1);
    assert_int_not_equal(c.state, IOC_COALESCE_ON);
}

static void
test_probe_gaps_double_up_to_the_cap(void **state)
{
    struct ioc_coalesce c;
    struct sim s = sim_start(&c);
    uint64_t expect_gap = IOC_COALESCE_GAP_MIN_NS;

    (void)state;
    sim_run(&c, &s, 30000000000ull, PIPELINED_BYTES, PIPELINED_BYTES / 4);
    assert_true(s.nprobe_starts >= 8);
    for (unsigned i = 1; i < s.nprobe_starts; i++) {
        /* PROBE (5 ms), OFF (the gap), BASE (5 ms), then the next PROBE */
        uint64_t between = s.probe_starts[i] - s.probe_starts[i - 1];
        uint64_t want = expect_gap + 2 * IOC_COALESCE_PHASE_NS;

        assert_true(between >= want && between <= want + 2 * STEP_NS);
        expect_gap = IOC_MIN(expect_gap * 2, IOC_COALESCE_GAP_MAX_NS);
    }
    assert_int_equal(c.gap_ns, IOC_COALESCE_GAP_MAX_NS);
}

static void
test_idle_connection_never_probes(void **state)
{
    struct ioc_coalesce c;
    struct sim s = sim_start(&c);

    (void)state;
    /* 50 steps per BASE phase of 100 bytes: far below the minimum */
    sim_run(&c, &s, 5000000000ull, 100, 100);
    assert_int_equal(c.probes, 0);
    assert_int_equal(s.held_steps, 0);
}

static void
test_client_that_slows_down_is_let_go(void **state)
{
    struct ioc_coalesce c;
    struct sim s = sim_start(&c);
    uint64_t held_before;
    uint64_t steps_before;

    (void)state;
    sim_run(&c, &s, 1000000000ull, PIPELINED_BYTES, PIPELINED_BYTES);
    assert_int_not_equal(c.state, IOC_COALESCE_OFF);
    assert_true(c.accepted >= 1);
    /* the client turns QD1: the next re-check (within one ON period) refuses */
    sim_run(&c, &s, IOC_COALESCE_ON_NS + 3 * IOC_COALESCE_PHASE_NS, PIPELINED_BYTES / 2,
            PIPELINED_BYTES / 6);
    held_before = s.held_steps;
    steps_before = s.steps;
    sim_run(&c, &s, 1000000000ull, PIPELINED_BYTES / 2, PIPELINED_BYTES / 6);
    assert_true((s.held_steps - held_before) * 100 < (s.steps - steps_before) * 3);
}

static void
test_probe_must_move_at_least_what_base_moved(void **state)
{
    struct ioc_coalesce c;
    struct sim s;

    (void)state;
    /* 50 steps per phase: as much as BASE is kept, 1% less is not */
    s = sim_start(&c);
    sim_run(&c, &s, 3 * IOC_COALESCE_PHASE_NS, 10000, 10000);
    assert_int_equal(c.probes, 1);
    assert_int_equal(c.accepted, 1);
    assert_int_equal(c.state, IOC_COALESCE_ON);

    s = sim_start(&c);
    sim_run(&c, &s, 3 * IOC_COALESCE_PHASE_NS, 10000, 9900);
    assert_int_equal(c.probes, 1);
    assert_int_equal(c.accepted, 0);
    assert_int_equal(c.state, IOC_COALESCE_OFF);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_client_is_held),
        cmocka_unit_test(test_qd1_client_is_not_held),
        cmocka_unit_test(test_probe_gaps_double_up_to_the_cap),
        cmocka_unit_test(test_idle_connection_never_probes),
        cmocka_unit_test(test_client_that_slows_down_is_let_go),
        cmocka_unit_test(test_probe_must_move_at_least_what_base_moved),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
