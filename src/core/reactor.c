/*
 * core/reactor.c - reactor threads, each driving one io_uring.
 *
 * How: each reactor runs reactor_iterate() in a loop (see reactor.h for the
 * five steps). All IO of the objects pinned to the reactor goes through its
 * ring, and the loop submits everything prepared during an iteration with a
 * single io_uring_enter, so a burst of 32 requests costs one syscall, not 32.
 * Rings are created with SINGLE_ISSUER + DEFER_TASKRUN where the kernel has
 * them: completions are then processed only when we ask (GETEVENTS), in this
 * thread, with no inter-processor interrupts.
 *
 * Adaptive polling: after an iteration that did no work, the reactor keeps
 * spinning (submit + reap without blocking) only while it has been idle for
 * less than `spin_window`; past that it sleeps in io_uring_enter until a CQE
 * or the next timer. Every time work arrives after an idle stretch of length
 * `gap`, the window adapts: if gap was short (<= spin_max) the window grows to
 * cover it (2 * gap), so a steady stream of requests is served without wake-up
 * latency; if gap was long, the window halves, so an idle daemon converges to
 * pure sleeping and ~0% CPU. Rejected alternative: a fixed spin time, which
 * either burns a core when idle or adds wake-up latency under load.
 *
 * Messages from other threads: a mutex-protected singly linked list plus an
 * eventfd that the reactor always has a read posted on. The sender writes the
 * eventfd only when the reactor says it is going to sleep, so a busy reactor
 * receives messages without any syscall. The lock is held for a pointer swap
 * only; a lock-free queue would save little at control-path message rates.
 *
 * What it does not do: work stealing between reactors, or fairness between
 * pollers beyond round-robin order.
 */
#include "ioc/common.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/cpu_contention.h"
#include "core/log.h"
#include "core/reactor.h"

#define REACTOR_DEFAULT_ENTRIES 1024
#define REACTOR_DEFAULT_SPIN_MAX_NS 32000ull
#define REACTOR_CONTENDED_SPIN_MAX_NS 4000ull
#define REACTOR_HOLD_WAIT_NR 4096u  /* "more completions than can come": see reactor_hold_wait */
#define REACTOR_MAX_DEFER_ROUNDS 64
#define REACTOR_MAX_REACTORS 256
#define REACTOR_DRAIN_TIMEOUT_NS 2000000000ull

struct ioc_poller {
    struct ioc_reactor *reactor;
    ioc_poller_fn fn;
    void *arg;
    uint64_t period_ns;
    uint64_t next_ns;
    bool dead;
    struct ioc_poller *next;
};

struct ioc_timer {
    uint64_t when_ns;
    ioc_timer_fn fn;
    void *arg;
    struct ioc_timer *next;
};

struct reactor_msg {
    ioc_msg_fn fn;
    void *arg;
    struct reactor_msg *next;
};

struct ioc_reactor {
    unsigned id;
    bool local;
    pthread_t thread;
    struct io_uring ring;
    bool ring_ready;
    bool defer_taskrun;
    enum ioc_poll_mode mode;
    uint64_t spin_max_ns;    /* the cap while the reactor has its CPU to itself */
    uint64_t spin_cap_ns;    /* the cap in force: spin_max_ns, or less when contended */
    uint64_t spin_window_ns;
    struct ioc_cpu_contention contention;
    uint64_t last_busy_ns;
    bool was_idle;
    uint64_t iter_ns;      /* start of the current iteration (one clock read each) */
    bool iter_busy;        /* the previous iteration did work */
    uint64_t hold_until_ns;/* sleep through arrivals until then (ioc_reactor_hold) */

    struct ioc_deferred *defer_head;
    struct ioc_deferred **defer_tail;
    unsigned defer_count;    /* queued deferred calls */
    struct ioc_poller *pollers;
    unsigned dead_pollers;
    struct ioc_timer *timers; /* sorted by when_ns */

    /* Inbox: lock protects inbox_head/inbox_tail only. */
    pthread_mutex_t inbox_lock;
    struct reactor_msg *inbox_head;
    struct reactor_msg *inbox_tail;
    atomic_bool inbox_nonempty;
    atomic_bool sleeping;
    int event_fd;
    uint64_t event_buf;
    struct ioc_uring_req event_req;
    bool event_armed;

    atomic_bool stop;
    struct ioc_reactor_stats stats;
    int start_rc;
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    bool started;
};

static _Thread_local struct ioc_reactor *t_reactor;
static struct ioc_reactor *g_reactors[REACTOR_MAX_REACTORS];
static unsigned g_reactor_count;
static atomic_uint g_next_reactor;
static void (*g_stop_hooks[8])(struct ioc_reactor *r);
static unsigned g_stop_hook_count;

/* ---- small helpers ---- */

uint64_t
ioc_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int
ioc_poll_mode_parse(const char *s, enum ioc_poll_mode *out)
{
    static const char *names[] = {"adaptive", "busy", "sleep"};

    for (unsigned i = 0; i < IOC_ARRAY_SIZE(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum ioc_poll_mode)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *
ioc_poll_mode_name(enum ioc_poll_mode mode)
{
    switch (mode) {
    case IOC_POLL_MODE_ADAPTIVE:
        return "adaptive";
    case IOC_POLL_MODE_BUSY:
        return "busy";
    case IOC_POLL_MODE_SLEEP:
        return "sleep";
    }
    return "?";
}

struct ioc_reactor *
ioc_reactor_self(void)
{
    return t_reactor;
}

unsigned
ioc_reactor_id(const struct ioc_reactor *r)
{
    return r->id;
}

struct io_uring *
ioc_reactor_ring(struct ioc_reactor *r)
{
    return &r->ring;
}

unsigned
ioc_reactor_count(void)
{
    return g_reactor_count;
}

struct ioc_reactor *
ioc_reactor_get(unsigned i)
{
    return i < g_reactor_count ? g_reactors[i] : NULL;
}

struct ioc_reactor *
ioc_reactor_next(void)
{
    if (g_reactor_count == 0) {
        return t_reactor; /* a local reactor (tests) */
    }
    return g_reactors[atomic_fetch_add(&g_next_reactor, 1) % g_reactor_count];
}

void
ioc_reactor_get_stats(const struct ioc_reactor *r, struct ioc_reactor_stats *out)
{
    *out = r->stats;
    out->spin_window_ns = r->spin_window_ns;
    out->spin_cap_ns = r->spin_cap_ns;
    out->contention_samples = r->contention.samples;
    out->contended_samples = r->contention.contended_samples;
}

void
ioc_reactors_on_stop(void (*fn)(struct ioc_reactor *r))
{
    assert(g_stop_hook_count < IOC_ARRAY_SIZE(g_stop_hooks));
    g_stop_hooks[g_stop_hook_count++] = fn;
}

/* ---- SQEs and completions ---- */

struct io_uring_sqe *
ioc_reactor_get_sqe(struct ioc_reactor *r)
{
    struct io_uring_sqe *sqe;

    assert(r == t_reactor);
    while ((sqe = io_uring_get_sqe(&r->ring)) == NULL) {
        /* SQ full: hand what we have to the kernel and try again. */
        int rc = io_uring_submit(&r->ring);
        if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR) {
            ioc_log(IOC_LOG_ERR, "reactor", "reactor %u: io_uring_submit: %s", r->id,
                    strerror(-rc));
        }
    }
    r->stats.inflight++;
    return sqe;
}

static unsigned
reactor_reap(struct ioc_reactor *r)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;

    io_uring_for_each_cqe(&r->ring, head, cqe)
    {
        struct ioc_uring_req *req = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        uint32_t flags = cqe->flags;

        /* Advance before the callback: it may submit and reap recursively. */
        io_uring_cq_advance(&r->ring, 1);
        n++;
        if (!(flags & IORING_CQE_F_MORE)) {
            r->stats.inflight--;
        }
        if (req != NULL) {
            req->done(req, res, flags);
        }
    }
    r->stats.cqes += n;
    return n;
}

/* ---- deferred calls ---- */

void
ioc_reactor_defer(struct ioc_reactor *r, struct ioc_deferred *d, ioc_deferred_fn fn)
{
    if (d->queued) {
        return;
    }
    d->queued = true;
    d->fn = fn;
    d->next = NULL;
    *r->defer_tail = d;
    r->defer_tail = &d->next;
    r->defer_count++;
}

void
ioc_reactor_defer_cancel(struct ioc_reactor *r, struct ioc_deferred *d)
{
    assert(r == t_reactor);
    if (!d->queued) {
        return;
    }
    for (struct ioc_deferred **pp = &r->defer_head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            if (r->defer_tail == &d->next) {
                r->defer_tail = pp;
            }
            d->next = NULL;
            d->queued = false;
            r->defer_count--;
            return;
        }
    }
    assert(!"a queued deferred call is on its reactor's list");
}

/*
 * Run the calls queued so far, one at a time off the head of the list, so
 * that a call may cancel any other still queued (an object freed by one call
 * takes its own deferred call off the list: ioc_reactor_defer_cancel); calls
 * queued meanwhile run in the next round. A round runs at most as many calls
 * as were queued when it began, so a call that re-queues itself cannot keep
 * a round going.
 */
static bool
reactor_run_deferred(struct ioc_reactor *r)
{
    bool did = false;

    for (int round = 0; round < REACTOR_MAX_DEFER_ROUNDS && r->defer_head != NULL; round++) {
        for (unsigned n = r->defer_count; n > 0 && r->defer_head != NULL; n--) {
            struct ioc_deferred *d = r->defer_head;

            r->defer_head = d->next;
            if (r->defer_head == NULL) {
                r->defer_tail = &r->defer_head;
            }
            d->next = NULL;
            d->queued = false;
            r->defer_count--;
            d->fn(d);
        }
        did = true;
    }
    return did;
}

/* ---- messages ---- */

static void reactor_event_arm(struct ioc_reactor *r);

static void
reactor_event_done(struct ioc_uring_req *req, int res, uint32_t flags)
{
    struct ioc_reactor *r = ioc_container_of(req, struct ioc_reactor, event_req);

    (void)flags;
    r->event_armed = false;
    if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
        ioc_log(IOC_LOG_ERR, "reactor", "reactor %u: eventfd read: %s", r->id, strerror(-res));
    }
    if (!atomic_load(&r->stop)) {
        reactor_event_arm(r);
    }
}

static void
reactor_event_arm(struct ioc_reactor *r)
{
    struct io_uring_sqe *sqe;

    if (r->event_armed) {
        return;
    }
    sqe = ioc_reactor_get_sqe(r);
    io_uring_prep_read(sqe, r->event_fd, &r->event_buf, sizeof(r->event_buf), 0);
    r->event_req.done = reactor_event_done;
    ioc_uring_sqe_set_req(sqe, &r->event_req);
    r->event_armed = true;
}

int
ioc_reactor_send_msg(struct ioc_reactor *r, ioc_msg_fn fn, void *arg)
{
    struct reactor_msg *m = malloc(sizeof(*m));

    if (m == NULL) {
        return -ENOMEM;
    }
    m->fn = fn;
    m->arg = arg;
    m->next = NULL;
    pthread_mutex_lock(&r->inbox_lock);
    if (r->inbox_tail != NULL) {
        r->inbox_tail->next = m;
    } else {
        r->inbox_head = m;
    }
    r->inbox_tail = m;
    atomic_store(&r->inbox_nonempty, true);
    pthread_mutex_unlock(&r->inbox_lock);
    /* Pairs with the sleeping/inbox check in reactor_wait(): seq_cst on both sides. */
    if (atomic_load(&r->sleeping)) {
        uint64_t one = 1;
        ssize_t n = write(r->event_fd, &one, sizeof(one));
        (void)n; /* EAGAIN means the counter is already non-zero: a wake-up is pending */
    }
    return 0;
}

static bool
reactor_run_msgs(struct ioc_reactor *r)
{
    struct reactor_msg *m;

    if (!atomic_load(&r->inbox_nonempty)) {
        return false;
    }
    pthread_mutex_lock(&r->inbox_lock);
    m = r->inbox_head;
    r->inbox_head = r->inbox_tail = NULL;
    atomic_store(&r->inbox_nonempty, false);
    pthread_mutex_unlock(&r->inbox_lock);
    while (m != NULL) {
        struct reactor_msg *next = m->next;
        m->fn(m->arg);
        free(m);
        r->stats.msgs++;
        m = next;
    }
    return true;
}

struct call_sync_ctx {
    ioc_msg_fn fn;
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void
call_sync_run(void *arg)
{
    struct call_sync_ctx *ctx = arg;

    ctx->fn(ctx->arg);
    pthread_mutex_lock(&ctx->lock);
    ctx->done = true;
    pthread_cond_signal(&ctx->cond);
    pthread_mutex_unlock(&ctx->lock);
}

int
ioc_reactor_call_sync(struct ioc_reactor *r, ioc_msg_fn fn, void *arg)
{
    struct call_sync_ctx ctx = {.fn = fn, .arg = arg};
    int rc;

    assert(t_reactor == NULL);
    pthread_mutex_init(&ctx.lock, NULL);
    pthread_cond_init(&ctx.cond, NULL);
    rc = ioc_reactor_send_msg(r, call_sync_run, &ctx);
    if (rc == 0) {
        pthread_mutex_lock(&ctx.lock);
        while (!ctx.done) {
            pthread_cond_wait(&ctx.cond, &ctx.lock);
        }
        pthread_mutex_unlock(&ctx.lock);
    }
    pthread_cond_destroy(&ctx.cond);
    pthread_mutex_destroy(&ctx.lock);
    return rc;
}

/* ---- pollers and timers ---- */

struct ioc_poller *
ioc_poller_register(struct ioc_reactor *r, ioc_poller_fn fn, void *arg, uint64_t period_us)
{
    struct ioc_poller *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return NULL;
    }
    p->reactor = r;
    p->fn = fn;
    p->arg = arg;
    p->period_ns = period_us * 1000;
    p->next_ns = ioc_now_ns() + p->period_ns;
    p->next = r->pollers;
    r->pollers = p;
    return p;
}

void
ioc_poller_unregister(struct ioc_poller **pp)
{
    struct ioc_poller *p = *pp;

    if (p == NULL) {
        return;
    }
    /* Freed by the loop, so a poller may unregister itself while it runs. */
    p->dead = true;
    p->reactor->dead_pollers++;
    *pp = NULL;
}

static void
reactor_reap_dead_pollers(struct ioc_reactor *r)
{
    struct ioc_poller **pp = &r->pollers;

    while (*pp != NULL) {
        struct ioc_poller *p = *pp;
        if (p->dead) {
            *pp = p->next;
            free(p);
        } else {
            pp = &p->next;
        }
    }
    r->dead_pollers = 0;
}

static bool
reactor_run_pollers(struct ioc_reactor *r, uint64_t now)
{
    bool busy = false;

    for (struct ioc_poller *p = r->pollers; p != NULL; p = p->next) {
        if (p->dead || (p->period_ns != 0 && now < p->next_ns)) {
            continue;
        }
        if (p->period_ns != 0) {
            p->next_ns = now + p->period_ns;
        }
        if (p->fn(p->arg) == IOC_POLL_BUSY) {
            busy = true;
        }
    }
    if (r->dead_pollers != 0) {
        reactor_reap_dead_pollers(r);
    }
    return busy;
}

struct ioc_timer *
ioc_timer_start(struct ioc_reactor *r, uint64_t usec, ioc_timer_fn fn, void *arg)
{
    struct ioc_timer *t = calloc(1, sizeof(*t));
    struct ioc_timer **pp = &r->timers;

    if (t == NULL) {
        return NULL;
    }
    t->when_ns = ioc_now_ns() + usec * 1000;
    t->fn = fn;
    t->arg = arg;
    while (*pp != NULL && (*pp)->when_ns <= t->when_ns) {
        pp = &(*pp)->next;
    }
    t->next = *pp;
    *pp = t;
    return t;
}

void
ioc_timer_cancel(struct ioc_timer **tp)
{
    struct ioc_reactor *r = t_reactor;
    struct ioc_timer *t = *tp;

    if (t == NULL) {
        return;
    }
    assert(r != NULL);
    for (struct ioc_timer **pp = &r->timers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            free(t);
            break;
        }
    }
    *tp = NULL;
}

static bool
reactor_run_timers(struct ioc_reactor *r, uint64_t now)
{
    bool did = false;

    while (r->timers != NULL && r->timers->when_ns <= now) {
        struct ioc_timer *t = r->timers;
        r->timers = t->next;
        t->fn(t->arg);
        free(t);
        did = true;
    }
    return did;
}

/* Nanoseconds until the next timer or periodic poller is due; UINT64_MAX if none. */
static uint64_t
reactor_next_deadline(struct ioc_reactor *r, uint64_t now)
{
    uint64_t next = UINT64_MAX;

    if (r->timers != NULL) {
        next = r->timers->when_ns;
    }
    for (struct ioc_poller *p = r->pollers; p != NULL; p = p->next) {
        if (p->period_ns == 0) {
            return 0; /* an every-iteration poller: never sleep long */
        }
        next = IOC_MIN(next, p->next_ns);
    }
    if (next == UINT64_MAX) {
        return UINT64_MAX;
    }
    return next > now ? next - now : 0;
}

/* ---- the loop ---- */

/*
 * The spin cap in force. Spinning through a gap saves a sleep and a wake-up
 * but holds the CPU for the whole gap: worth it while the reactor has its CPU
 * to itself (on the 2-vCPU VM a 30 us cap cut the QD1 latency by a fifth),
 * harmful when other threads wait for it (a 20 us cap cost a shared VM a
 * tenth of its QD32 IOPS, docs/reactor.md). The run-queue delay tells which.
 */
static uint64_t
reactor_spin_cap(struct ioc_reactor *r, uint64_t now)
{
    bool contended = ioc_cpu_contention_check(&r->contention, now);

    r->spin_cap_ns = contended ? IOC_MIN(r->spin_max_ns, REACTOR_CONTENDED_SPIN_MAX_NS)
                               : r->spin_max_ns;
    return r->spin_cap_ns;
}

/*
 * Adapt the spin window when work shows up at `now` after `gap` ns of
 * idleness. Short gaps: spinning would have caught the work without a
 * wake-up, so widen the window to twice the gap (capped). Long gaps: halve
 * it, towards sleeping.
 */
static void
reactor_adapt_window(struct ioc_reactor *r, uint64_t now, uint64_t gap)
{
    uint64_t cap = reactor_spin_cap(r, now);

    if (gap <= cap) {
        r->spin_window_ns = IOC_MIN(cap, IOC_MAX(r->spin_window_ns, 2 * gap));
    } else {
        r->spin_window_ns = IOC_MIN(cap, r->spin_window_ns / 2);
    }
}

/*
 * One spin step without a syscall unless there is something to do: SQEs to
 * submit, or completions the kernel holds back for us (DEFER_TASKRUN sets
 * IORING_SQ_TASKRUN in the shared ring when it has work queued for this
 * thread). A spin that enters the kernel every time would cost as much CPU as
 * the work itself; `pause` also leaves the sibling hyperthread its share.
 */
static void
reactor_spin_once(struct ioc_reactor *r)
{
    if (!r->defer_taskrun) {
        io_uring_submit(&r->ring);
        return;
    }
    /* A short burst of cheap checks between clock reads (clock_gettime per spin showed up). */
    for (int i = 0; i < 32; i++) {
        if (io_uring_sq_ready(&r->ring) > 0 ||
            (IO_URING_READ_ONCE(*r->ring.sq.kflags) & IORING_SQ_TASKRUN)) {
            io_uring_submit_and_get_events(&r->ring);
            return;
        }
        if (io_uring_cq_ready(&r->ring) > 0 || atomic_load(&r->inbox_nonempty)) {
            return;
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

/*
 * Sleep until the hold ends or a timer is due, and not before, whatever
 * completes meanwhile. With DEFER_TASKRUN the kernel wakes a waiter only once
 * as many completions are pending as it asked for, so asking for more than
 * can come makes arrivals pile up in the sockets (one recv takes them all
 * afterwards) instead of waking the reactor for each. Messages from other
 * threads wait too: `sleeping` stays false, so their senders skip the
 * eventfd and the inbox is read after the hold.
 */
static void
reactor_hold_wait(struct ioc_reactor *r, uint64_t now)
{
    uint64_t timeout_ns = IOC_MIN(r->hold_until_ns - now, reactor_next_deadline(r, now));
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts;

    if (timeout_ns == 0) {
        io_uring_submit_and_get_events(&r->ring);
        return;
    }
    r->stats.holds++;
    ts.tv_sec = (long long)(timeout_ns / 1000000000ull);
    ts.tv_nsec = (long long)(timeout_ns % 1000000000ull);
    (void)io_uring_submit_and_wait_timeout(&r->ring, &cqe, REACTOR_HOLD_WAIT_NR, &ts, NULL);
}

static void
reactor_wait(struct ioc_reactor *r, uint64_t now)
{
    uint64_t idle_for = now - r->last_busy_ns;
    uint64_t timeout_ns;
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts;
    int rc;

    if (r->mode != IOC_POLL_MODE_BUSY && r->defer_taskrun && now < r->hold_until_ns) {
        reactor_hold_wait(r, now);
        return;
    }
    if (r->mode == IOC_POLL_MODE_BUSY ||
        (r->mode == IOC_POLL_MODE_ADAPTIVE && idle_for < r->spin_window_ns)) {
        reactor_spin_once(r);
        return;
    }
    timeout_ns = reactor_next_deadline(r, now);
    if (timeout_ns == 0) {
        io_uring_submit_and_get_events(&r->ring);
        return;
    }
    atomic_store(&r->sleeping, true);
    if (atomic_load(&r->inbox_nonempty) || atomic_load(&r->stop)) {
        atomic_store(&r->sleeping, false);
        io_uring_submit(&r->ring);
        return;
    }
    r->stats.sleeps++;
    if (timeout_ns == UINT64_MAX) {
        rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, NULL, NULL);
    } else {
        ts.tv_sec = (long long)(timeout_ns / 1000000000ull);
        ts.tv_nsec = (long long)(timeout_ns % 1000000000ull);
        rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
    }
    (void)rc; /* -ETIME and -EINTR are normal wake-ups */
    atomic_store(&r->sleeping, false);
}

/*
 * Charge the time since the previous iteration began to busy or idle. Done at
 * the start of the next iteration so that each iteration reads the clock once:
 * a second read at its end showed up in profiles of the vhost path, where
 * whole iterations take about a microsecond.
 */
static void
reactor_account(struct ioc_reactor *r, uint64_t now)
{
    if (r->iter_ns == 0) {
        return;
    }
    if (r->iter_busy) {
        r->stats.busy_ns += now - r->iter_ns;
        r->last_busy_ns = now;
    } else {
        r->stats.idle_ns += now - r->iter_ns;
    }
}

static bool
reactor_iterate(struct ioc_reactor *r, bool may_sleep)
{
    uint64_t start = ioc_now_ns();
    bool busy = false;

    reactor_account(r, start);
    r->iter_ns = start;
    busy |= reactor_reap(r) > 0;
    busy |= reactor_run_msgs(r);
    busy |= reactor_run_timers(r, start);
    busy |= reactor_run_pollers(r, start);
    busy |= reactor_run_deferred(r);
    r->stats.iterations++;
    r->iter_busy = busy;
    if (busy) {
        if (r->was_idle) {
            reactor_adapt_window(r, start, start - r->last_busy_ns);
            r->was_idle = false;
        }
        r->stats.busy_iterations++;
        if (may_sleep) {
            /* More work may be ready right away: submit, but do not block. */
            if (r->defer_taskrun) {
                io_uring_submit_and_get_events(&r->ring);
            } else {
                io_uring_submit(&r->ring);
            }
        }
        return true;
    }
    r->was_idle = true;
    if (may_sleep) {
        reactor_wait(r, start);
    } else {
        if (r->defer_taskrun) {
            io_uring_submit_and_get_events(&r->ring);
        } else {
            io_uring_submit(&r->ring);
        }
    }
    return false;
}

void
ioc_reactor_hold(struct ioc_reactor *r, uint64_t until_ns)
{
    assert(r == t_reactor);
    r->hold_until_ns = IOC_MAX(r->hold_until_ns, until_ns);
}

uint64_t
ioc_reactor_iter_ns(void)
{
    struct ioc_reactor *r = t_reactor;

    return r != NULL && r->iter_ns != 0 ? r->iter_ns : ioc_now_ns();
}

bool
ioc_reactor_poll_once(struct ioc_reactor *r)
{
    assert(r == t_reactor);
    return reactor_iterate(r, false);
}

int
ioc_reactor_poll_until(struct ioc_reactor *r, const bool *done, unsigned timeout_ms)
{
    uint64_t deadline = ioc_now_ns() + (uint64_t)timeout_ms * 1000000ull;

    while (!*done) {
        if (ioc_now_ns() > deadline) {
            return -ETIMEDOUT;
        }
        reactor_iterate(r, false);
    }
    return 0;
}

/* ---- creation and teardown ---- */

static int
reactor_ring_init(struct ioc_reactor *r, unsigned entries)
{
    struct io_uring_params p;
    int rc;

    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    rc = io_uring_queue_init_params(entries, &r->ring, &p);
    if (rc == -EINVAL) {
        /* Older kernel: fall back to a plain ring. */
        memset(&p, 0, sizeof(p));
        rc = io_uring_queue_init_params(entries, &r->ring, &p);
    } else if (rc == 0) {
        r->defer_taskrun = true;
    }
    if (rc < 0) {
        return rc;
    }
    r->ring_ready = true;
    return 0;
}

static void
reactor_free(struct ioc_reactor *r)
{
    struct reactor_msg *m;

    if (r == NULL) {
        return;
    }
    if (r->ring_ready) {
        io_uring_queue_exit(&r->ring);
    }
    if (r->event_fd >= 0) {
        close(r->event_fd);
    }
    ioc_cpu_contention_fini(&r->contention);
    while (r->pollers != NULL) {
        struct ioc_poller *p = r->pollers;
        r->pollers = p->next;
        free(p);
    }
    while (r->timers != NULL) {
        struct ioc_timer *t = r->timers;
        r->timers = t->next;
        free(t);
    }
    for (m = r->inbox_head; m != NULL;) {
        struct reactor_msg *next = m->next;
        free(m);
        m = next;
    }
    pthread_mutex_destroy(&r->inbox_lock);
    pthread_mutex_destroy(&r->start_lock);
    pthread_cond_destroy(&r->start_cond);
    free(r);
}

static struct ioc_reactor *
reactor_alloc(unsigned id, const struct ioc_reactor_opts *opts)
{
    struct ioc_reactor *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->id = id;
    r->event_fd = -1;
    r->contention.fd = -1;
    r->defer_tail = &r->defer_head;
    r->mode = opts != NULL ? opts->mode : IOC_POLL_MODE_ADAPTIVE;
    r->spin_max_ns = (opts != NULL && opts->spin_max_ns != 0) ? opts->spin_max_ns
                                                              : REACTOR_DEFAULT_SPIN_MAX_NS;
    pthread_mutex_init(&r->inbox_lock, NULL);
    pthread_mutex_init(&r->start_lock, NULL);
    pthread_cond_init(&r->start_cond, NULL);
    return r;
}

/* Second half of creation, on the reactor's own thread (SINGLE_ISSUER). */
static int
reactor_setup_on_thread(struct ioc_reactor *r, const struct ioc_reactor_opts *opts)
{
    unsigned entries = (opts != NULL && opts->ring_entries != 0) ? opts->ring_entries
                                                                 : REACTOR_DEFAULT_ENTRIES;
    int rc;

    r->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->event_fd < 0) {
        return -errno;
    }
    rc = reactor_ring_init(r, entries);
    if (rc < 0) {
        return rc;
    }
    t_reactor = r;
    r->last_busy_ns = ioc_now_ns();
    /* Without schedstat the reactor counts as contended: the small cap, as before. */
    (void)ioc_cpu_contention_init(&r->contention, r->last_busy_ns);
    r->spin_cap_ns = reactor_spin_cap(r, r->last_busy_ns);
    reactor_event_arm(r);
    return 0;
}

int
ioc_reactor_create_local(const struct ioc_reactor_opts *opts, struct ioc_reactor **out)
{
    struct ioc_reactor *r = reactor_alloc(0, opts);
    int rc;

    if (r == NULL) {
        return -ENOMEM;
    }
    r->local = true;
    rc = reactor_setup_on_thread(r, opts);
    if (rc < 0) {
        t_reactor = NULL;
        reactor_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Let in-flight operations finish (or be cancelled) before the ring goes away. */
static void
reactor_drain(struct ioc_reactor *r)
{
    uint64_t deadline = ioc_now_ns() + REACTOR_DRAIN_TIMEOUT_NS;
    struct io_uring_sqe *sqe;

    if (r->event_armed) {
        sqe = ioc_reactor_get_sqe(r);
        io_uring_prep_cancel(sqe, &r->event_req, 0);
        io_uring_sqe_set_data(sqe, NULL);
    }
    while ((r->stats.inflight > 0 || r->defer_head != NULL) && ioc_now_ns() < deadline) {
        reactor_iterate(r, false);
    }
    reactor_run_msgs(r);
}

void
ioc_reactor_destroy_local(struct ioc_reactor **rp)
{
    struct ioc_reactor *r = *rp;

    if (r == NULL) {
        return;
    }
    atomic_store(&r->stop, true);
    reactor_drain(r);
    if (t_reactor == r) {
        t_reactor = NULL;
    }
    reactor_free(r);
    *rp = NULL;
}

struct reactor_start_arg {
    struct ioc_reactor *r;
    const struct ioc_reactor_opts *opts;
};

static void *
reactor_thread_main(void *arg)
{
    struct reactor_start_arg *sa = arg;
    struct ioc_reactor *r = sa->r;
    int rc;

    if (sa->opts != NULL && sa->opts->pin_cpus) {
        cpu_set_t set;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        CPU_ZERO(&set);
        CPU_SET((int)(r->id % (unsigned)(ncpu > 0 ? ncpu : 1)), &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    rc = reactor_setup_on_thread(r, sa->opts);
    pthread_mutex_lock(&r->start_lock);
    r->start_rc = rc;
    r->started = true;
    pthread_cond_signal(&r->start_cond);
    pthread_mutex_unlock(&r->start_lock);
    if (rc < 0) {
        return NULL;
    }
    while (!atomic_load(&r->stop)) {
        reactor_iterate(r, true);
    }
    for (unsigned i = 0; i < g_stop_hook_count; i++) {
        g_stop_hooks[i](r);
    }
    reactor_drain(r);
    t_reactor = NULL;
    return NULL;
}

static int
reactor_start_one(unsigned id, const struct ioc_reactor_opts *opts)
{
    struct reactor_start_arg sa;
    struct ioc_reactor *r = reactor_alloc(id, opts);
    char name[16];
    int rc;

    if (r == NULL) {
        return -ENOMEM;
    }
    sa.r = r;
    sa.opts = opts;
    rc = -pthread_create(&r->thread, NULL, reactor_thread_main, &sa);
    if (rc != 0) {
        reactor_free(r);
        return rc;
    }
    snprintf(name, sizeof(name), "reactor_%u", id % 1000u);
    pthread_setname_np(r->thread, name);
    pthread_mutex_lock(&r->start_lock);
    while (!r->started) {
        pthread_cond_wait(&r->start_cond, &r->start_lock);
    }
    pthread_mutex_unlock(&r->start_lock);
    if (r->start_rc < 0) {
        rc = r->start_rc;
        pthread_join(r->thread, NULL);
        reactor_free(r);
        return rc;
    }
    g_reactors[id] = r;
    return 0;
}

int
ioc_reactors_start(const struct ioc_reactor_opts *opts)
{
    unsigned count = opts != NULL && opts->count > 0 ? opts->count : 1;
    int rc;

    if (count > REACTOR_MAX_REACTORS) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < count; i++) {
        rc = reactor_start_one(i, opts);
        if (rc < 0) {
            g_reactor_count = i;
            ioc_reactors_stop();
            return rc;
        }
    }
    g_reactor_count = count;
    return 0;
}

void
ioc_reactors_stop(void)
{
    for (unsigned i = 0; i < g_reactor_count; i++) {
        struct ioc_reactor *r = g_reactors[i];
        uint64_t one = 1;
        ssize_t n;

        atomic_store(&r->stop, true);
        n = write(r->event_fd, &one, sizeof(one));
        (void)n;
    }
    for (unsigned i = 0; i < g_reactor_count; i++) {
        pthread_join(g_reactors[i]->thread, NULL);
        reactor_free(g_reactors[i]);
        g_reactors[i] = NULL;
    }
    g_reactor_count = 0;
}
