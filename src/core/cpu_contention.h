/*
 * core/cpu_contention.h - does this thread have its CPU to itself?
 *
 * A reactor that spins through short idle gaps saves a sleep and a wake-up
 * per request, but only pays when nobody else wants the CPU: on a shared
 * machine every microsecond of spinning is one the client, etcd or another
 * iocd waits. The kernel keeps the answer per thread in
 * /proc/thread-self/schedstat: the time the thread ran and the time it sat
 * runnable in a run queue without running (run-queue delay). This module
 * samples it every IOC_CONTENTION_PERIOD_NS and calls the thread contended
 * when the delay is a noticeable share of the time it wanted the CPU.
 */
#ifndef IOC_CORE_CPU_CONTENTION_H
#define IOC_CORE_CPU_CONTENTION_H

#include <stdbool.h>
#include <stdint.h>

#define IOC_CONTENTION_PERIOD_NS 10000000ull  /* sample every 10 ms of wall time */
#define IOC_CONTENTION_HOLD_NS   100000000ull /* a contended sample counts for 100 ms */

struct ioc_cpu_contention {
    int fd;                      /* /proc/thread-self/schedstat; -1: unknown */
    uint64_t last_sample_ns;
    uint64_t last_cpu_ns;        /* schedstat field 1: time on the CPU */
    uint64_t last_delay_ns;      /* schedstat field 2: run-queue delay */
    uint64_t contended_until_ns;
    uint64_t samples;            /* samples large enough to judge */
    uint64_t contended_samples;
};

/**
 * Start watching the calling thread. Without schedstat (kernel without
 * CONFIG_SCHED_INFO) the thread is reported contended forever, the cautious
 * answer. Returns 0 or -errno (the watcher is usable either way).
 */
int ioc_cpu_contention_init(struct ioc_cpu_contention *c, uint64_t now_ns);
void ioc_cpu_contention_fini(struct ioc_cpu_contention *c);

/**
 * Is the thread contended? Costs a compare, plus one pread of schedstat when
 * a period has passed. Must be called on the thread given to init.
 */
bool ioc_cpu_contention_check(struct ioc_cpu_contention *c, uint64_t now_ns);

/* ---- pure helpers, exposed for unit tests ---- */

/** Parse schedstat's "CPU_NS DELAY_NS SLICES". Returns 0 or -EINVAL. */
int ioc_schedstat_parse(const char *text, uint64_t *cpu_ns, uint64_t *delay_ns);

/**
 * Judge one period from its deltas. Returns 1 (contended), 0 (not) or -1
 * (the thread wanted the CPU too little of the period to tell).
 */
int ioc_contention_judge(uint64_t cpu_delta_ns, uint64_t delay_delta_ns);

#endif
