/*
 * target/target_coalesce.h - should a stream connection hold its replies
 * back, so that several leave in one sendmsg?
 *
 * Why: with one NBD client at QD32 the client (fio + libnbd) is the limit
 * and iocd answers each request on its own, about 9 us of server CPU per 4k
 * read, nearly all of it per-message: a recv, a sendmsg carrying one reply
 * through loopback TCP, a wake-up. Holding the replies for up to 50 us while
 * the reactor sleeps through the arrivals turns that into one recv and one
 * sendmsg per batch: 5.6 us per read and 20-35% more IOPS in the same run
 * (docs/reactor.md). Holding is only right while the client has other
 * requests to work on: a QD1 client would wait out every hold.
 *
 * So the connection asks the measured traffic instead of guessing the
 * client's queue depth. It runs a few milliseconds without holding (BASE),
 * then the same time holding (PROBE), and keeps holding (ON) if the probe
 * moved at least as many bytes (95% accepted a 5% loss on 128k writes at
 * QD8, where holding saves no CPU); otherwise it stops (OFF) and probes again
 * after a gap that doubles with every refusal. ON ends after a while with a
 * new BASE and PROBE, so a client that changes pace is followed. A QD1
 * client loses one short probe per gap (about 70 requests a few times a
 * second at first, then every 6.4 s); a pipelined client loses one BASE
 * phase per ON period. Idle connections never hold: a phase that ends with
 * little traffic is refused.
 *
 * Pure logic over the caller's clock, no sockets: tested in
 * tests/unit/target/target_coalesce_test.c.
 */
#ifndef IOC_TARGET_TARGET_COALESCE_H
#define IOC_TARGET_TARGET_COALESCE_H

#include "ioc/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IOC_COALESCE_PHASE_NS    5000000ull    /* BASE and PROBE: 5 ms each */
#define IOC_COALESCE_ON_NS       250000000ull  /* keep holding this long before re-checking */
#define IOC_COALESCE_GAP_MIN_NS  100000000ull  /* first wait before re-probing after a refusal */
#define IOC_COALESCE_GAP_MAX_NS  6400000000ull /* the longest wait between probes */
#define IOC_COALESCE_MIN_BYTES   (256u << 10)  /* a BASE phase must move this much to probe */
#define IOC_COALESCE_KEEP_PCT    100           /* a probe must move at least what BASE moved */

enum ioc_coalesce_state {
    IOC_COALESCE_OFF,   /* not holding; probing again at phase_end_ns */
    IOC_COALESCE_BASE,  /* not holding; measuring the traffic */
    IOC_COALESCE_PROBE, /* holding; measuring the traffic */
    IOC_COALESCE_ON,    /* holding until phase_end_ns */
};

struct ioc_coalesce {
    enum ioc_coalesce_state state;
    uint64_t phase_end_ns;  /* 0: the first event starts the first BASE */
    uint64_t phase_bytes;   /* bytes in and out during this phase */
    uint64_t base_bytes;    /* ... during the last BASE */
    uint64_t gap_ns;        /* OFF's length after the next refusal */
    uint64_t probes;        /* statistics: probes run */
    uint64_t accepted;      /* ... and kept */
};

/** A connection starts with a BASE phase at its first traffic. */
void ioc_coalesce_init(struct ioc_coalesce *c);

/** Count bytes received or sent; the phase they fall in is the current one. */
static inline void
ioc_coalesce_account(struct ioc_coalesce *c, size_t bytes)
{
    c->phase_bytes += bytes;
}

/** Whether to hold replies at time now; moves through the phases as time passes. */
bool ioc_coalesce_holding(struct ioc_coalesce *c, uint64_t now);

#endif
