/*
 * core/reactor.h - reactor threads: one io_uring each, for sockets and disk IO.
 *
 * A reactor is one thread that owns:
 *   - an io_uring: every socket and file operation of the objects pinned to
 *     this reactor is an SQE on it; each CQE's user_data points to a
 *     `struct ioc_uring_req` whose `done` callback runs on this thread;
 *   - a deferred-call list: work to run later in this same iteration round
 *     (completions that must not run inline, per-connection send flushes);
 *   - pollers (run every iteration, or every period_us) and one-shot timers;
 *   - an inbox for messages from other threads, woken through an eventfd.
 *
 * Objects (connections, channels) belong to one reactor; other threads talk to
 * them by message, so the hot path takes no locks.
 *
 * One loop iteration:
 *   1. reap CQEs and call their `done` callbacks;
 *   2. run messages from the inbox;
 *   3. run due timers and pollers;
 *   4. run deferred calls until none are left (bounded rounds);
 *   5. submit the SQEs prepared during 1-4 with ONE io_uring_enter, and either
 *      return at once (spinning) or wait in the kernel for a CQE or the next
 *      timer (sleeping).
 * Whether it spins or sleeps is the adaptive-polling decision: while work keeps
 * arriving within the spin window, keep spinning (no wake-up latency); once the
 * reactor has been idle for longer than the window, sleep (no CPU burnt). The
 * window follows the measured gap between idle and the next event: short gaps
 * grow it (up to a cap), long gaps shrink it to zero.
 *
 * Threading: every function here must be called on the reactor's own thread,
 * except ioc_reactor_send_msg(), ioc_reactors_*() and ioc_reactor_get().
 */
#ifndef IOC_CORE_REACTOR_H
#define IOC_CORE_REACTOR_H

#include "ioc/common.h"

#include <liburing.h>

struct ioc_reactor;
struct ioc_poller;
struct ioc_timer;

/** Pollers return honestly whether they did work: adaptive polling depends on it. */
enum ioc_poll_result {
    IOC_POLL_IDLE = 0,
    IOC_POLL_BUSY = 1,
};

/*
 * A pending io_uring operation. Embed it in the object that issued the SQE and
 * recover the object with ioc_container_of(). `res` is the CQE's res (bytes or
 * -errno), `cqe_flags` its flags (IORING_CQE_F_MORE for multishot ops).
 */
struct ioc_uring_req;
typedef void (*ioc_uring_done_cb)(struct ioc_uring_req *req, int res, uint32_t cqe_flags);
struct ioc_uring_req {
    ioc_uring_done_cb done;
};

/* A deferred call: intrusive, so deferring never allocates. */
struct ioc_deferred;
typedef void (*ioc_deferred_fn)(struct ioc_deferred *d);
struct ioc_deferred {
    struct ioc_deferred *next;
    ioc_deferred_fn fn;
    bool queued;
};

typedef void (*ioc_msg_fn)(void *arg);
typedef enum ioc_poll_result (*ioc_poller_fn)(void *arg);
typedef void (*ioc_timer_fn)(void *arg);

/* Statistics, readable from any thread (racy snapshot, for display only). */
struct ioc_reactor_stats {
    uint64_t iterations;
    uint64_t busy_iterations;
    uint64_t sleeps;        /* times the reactor blocked in the kernel */
    uint64_t cqes;
    uint64_t msgs;
    uint64_t busy_ns;       /* time in iterations that did work */
    uint64_t idle_ns;       /* time spinning without work or sleeping */
    uint64_t spin_window_ns;/* the current adaptive window */
    uint64_t spin_cap_ns;   /* the window's cap in force (lower while contended) */
    uint64_t contention_samples; /* run-queue delay samples judged */
    uint64_t contended_samples;  /* ... of which showed the CPU contended */
    uint64_t inflight;      /* SQEs submitted and not yet completed */
    uint64_t holds;         /* idle waits that slept through arrivals (ioc_reactor_hold) */
};

/* How a reactor waits when it has nothing to do. */
enum ioc_poll_mode {
    IOC_POLL_MODE_ADAPTIVE = 0, /* spin within an adaptive window, then sleep (default) */
    IOC_POLL_MODE_BUSY,         /* never sleep: lowest latency, one full core per reactor */
    IOC_POLL_MODE_SLEEP,        /* never spin: sleep in the kernel whenever idle */
};

/* Options for ioc_reactors_start() and ioc_reactor_create_local(); NULL = defaults. */
struct ioc_reactor_opts {
    unsigned count;             /* number of reactor threads, >= 1 (start only) */
    unsigned ring_entries;      /* SQ size per ring; 0 = default 1024 */
    enum ioc_poll_mode mode;
    uint64_t spin_max_ns;       /* cap of the adaptive spin window while the reactor has
                                   its CPU to itself (contended: at most 4 us); 0 = 32 us */
    bool pin_cpus;              /* pin reactor i to cpu i % ncpu */
};

/** Parse "adaptive", "busy" or "sleep". Returns 0 or -EINVAL. */
int ioc_poll_mode_parse(const char *s, enum ioc_poll_mode *out);
const char *ioc_poll_mode_name(enum ioc_poll_mode mode);

/* ---- lifecycle (called from the main thread) ---- */

/**
 * Create and start opts->count reactor threads. Returns 0 or -errno
 * (-ENOMEM, or io_uring_queue_init's error). On failure nothing is left running.
 */
int ioc_reactors_start(const struct ioc_reactor_opts *opts);

/** Stop all reactors: each runs ioc_reactors_on_stop hooks, drains, joins. Idempotent. */
void ioc_reactors_stop(void);

/** Number of reactors started, 0 before start. */
unsigned ioc_reactor_count(void);

/** Reactor i (0 <= i < count); borrowed, valid until ioc_reactors_stop(). */
struct ioc_reactor *ioc_reactor_get(unsigned i);

/** Round-robin choice of a reactor for a new connection. Thread safe. */
struct ioc_reactor *ioc_reactor_next(void);

/* ---- a single reactor, driven by hand (unit tests, fuzzers, tools) ---- */

/** Create a reactor bound to the calling thread without starting a thread. */
int ioc_reactor_create_local(const struct ioc_reactor_opts *opts, struct ioc_reactor **out);

/** Run one iteration without sleeping. Returns true if any work was done. */
bool ioc_reactor_poll_once(struct ioc_reactor *r);

/** Poll until `*done` becomes true or timeout_ms passes. Returns 0 or -ETIMEDOUT. */
int ioc_reactor_poll_until(struct ioc_reactor *r, const bool *done, unsigned timeout_ms);

/** Destroy a reactor made with ioc_reactor_create_local(); NULLs the pointer. */
void ioc_reactor_destroy_local(struct ioc_reactor **r);

/* ---- used on the reactor's own thread ---- */

/** The reactor of the calling thread, or NULL on a non-reactor thread. */
struct ioc_reactor *ioc_reactor_self(void);

/** Index of the reactor (0-based); local reactors have index 0. */
unsigned ioc_reactor_id(const struct ioc_reactor *r);

/** The reactor's ring, for modules that prepare their own SQEs. */
struct io_uring *ioc_reactor_ring(struct ioc_reactor *r);

/**
 * Get an SQE, submitting what is queued if the SQ is full. Never NULL: if the
 * SQ stays full, completions are reaped into the CQ backlog first. The caller
 * must set user_data with ioc_uring_sqe_set_req().
 */
struct io_uring_sqe *ioc_reactor_get_sqe(struct ioc_reactor *r);

static inline void
ioc_uring_sqe_set_req(struct io_uring_sqe *sqe, struct ioc_uring_req *req)
{
    io_uring_sqe_set_data(sqe, req);
}

/**
 * Run d->fn(d) later on this reactor, after the current callback returns and
 * before the reactor sleeps. Deferring an already queued entry does nothing.
 * Used to complete IO "never inline" and to batch sends.
 */
void ioc_reactor_defer(struct ioc_reactor *r, struct ioc_deferred *d, ioc_deferred_fn fn);

/**
 * Take d off r's queue if it is queued (it will not run); a no-op otherwise.
 * For an object freed while its deferred call may still be pending. On r's
 * thread; O(queued calls).
 */
void ioc_reactor_defer_cancel(struct ioc_reactor *r, struct ioc_deferred *d);

/**
 * Send fn(arg) to run on reactor r. Thread safe, callable from any thread,
 * including non-reactor threads. Returns 0 or -ENOMEM.
 */
int ioc_reactor_send_msg(struct ioc_reactor *r, ioc_msg_fn fn, void *arg);

/**
 * Run fn(arg) on reactor r and wait until it has run. Only from a non-reactor
 * thread (RPC, main): calling it on a reactor thread would deadlock (asserted).
 */
int ioc_reactor_call_sync(struct ioc_reactor *r, ioc_msg_fn fn, void *arg);

/** Register a poller: period_us 0 = every iteration. Returns NULL on -ENOMEM. */
struct ioc_poller *ioc_poller_register(struct ioc_reactor *r, ioc_poller_fn fn, void *arg,
                                       uint64_t period_us);
/** Unregister and NULL the pointer; safe from within the poller itself. */
void ioc_poller_unregister(struct ioc_poller **p);

/** One-shot timer after usec. Returns NULL on -ENOMEM. */
struct ioc_timer *ioc_timer_start(struct ioc_reactor *r, uint64_t usec, ioc_timer_fn fn,
                                  void *arg);
/** Cancel a timer that has not fired; NULLs the pointer. Do not cancel a fired timer. */
void ioc_timer_cancel(struct ioc_timer **t);

/** Monotonic time in ns (cached per iteration would be stale; this is clock_gettime). */
uint64_t ioc_now_ns(void);

/**
 * The time the calling reactor's current iteration began (ioc_now_ns() off a
 * reactor thread): for pollers that judge idleness in microseconds and would
 * otherwise read the clock once more per iteration. At most one iteration old.
 */
uint64_t ioc_reactor_iter_ns(void);

/**
 * Until until_ns (monotonic), let the calling reactor sleep through arrivals
 * when idle instead of waking for each: they pile up and are handled
 * together when the hold or the next timer ends. For a connection that holds
 * its replies to send them in one batch (target_coalesce.h); it must have a
 * timer due by until_ns to flush them. Busy-polling reactors ignore it.
 */
void ioc_reactor_hold(struct ioc_reactor *r, uint64_t until_ns);

/** Snapshot of the reactor's statistics. */
void ioc_reactor_get_stats(const struct ioc_reactor *r, struct ioc_reactor_stats *out);

/**
 * Hook run on every reactor thread when it stops (before its ring is torn
 * down), e.g. so a target can close its connections. Register before start.
 */
void ioc_reactors_on_stop(void (*fn)(struct ioc_reactor *r));

#endif
