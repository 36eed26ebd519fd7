/*
 * core/cpu_contention.c - run-queue delay as the signal that a spinning
 * thread is in somebody's way (see cpu_contention.h).
 *
 * Measured on the 2-vCPU VM with one reactor spinning up to 30 us (fio nbd
 * randread, 3 s): the run-queue delay was 0.3% of the time the reactor wanted
 * the CPU at QD1 and 1.2% at QD32 with the machine otherwise quiet, and 56%
 * at QD1 with one CPU-bound process beside it. A 10% threshold sits between.
 *
 * Rejected signal: involuntary context switches (getrusage). They came to
 * about 150 a second at QD1 on the quiet machine as well (the woken client
 * lands on the reactor's CPU for a moment), so a threshold on them never
 * told the two cases apart.
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "core/cpu_contention.h"

/* A period in which the thread ran or waited less than this says nothing. */
#define CONTENTION_MIN_WANTED_NS 1000000ull
/* Contended: the run-queue delay is at least this share (percent) of the
 * time the thread wanted the CPU (ran + waited). */
#define CONTENTION_DELAY_PERCENT 10

int
ioc_schedstat_parse(const char *text, uint64_t *cpu_ns, uint64_t *delay_ns)
{
    uint64_t cpu;
    uint64_t delay;

    if (sscanf(text, "%" SCNu64 " %" SCNu64, &cpu, &delay) != 2) {
        return -EINVAL;
    }
    *cpu_ns = cpu;
    *delay_ns = delay;
    return 0;
}

int
ioc_contention_judge(uint64_t cpu_delta_ns, uint64_t delay_delta_ns)
{
    uint64_t wanted = cpu_delta_ns + delay_delta_ns;

    if (wanted < CONTENTION_MIN_WANTED_NS) {
        return -1;
    }
    return delay_delta_ns * 100 >= wanted * CONTENTION_DELAY_PERCENT ? 1 : 0;
}

static int
contention_read(int fd, uint64_t *cpu_ns, uint64_t *delay_ns)
{
    char buf[96];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

    if (n <= 0) {
        return n < 0 ? -errno : -EINVAL;
    }
    buf[n] = '\0';
    return ioc_schedstat_parse(buf, cpu_ns, delay_ns);
}

int
ioc_cpu_contention_init(struct ioc_cpu_contention *c, uint64_t now_ns)
{
    int rc;

    *c = (struct ioc_cpu_contention){.fd = -1, .last_sample_ns = now_ns};
    c->fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (c->fd < 0) {
        return -errno;
    }
    rc = contention_read(c->fd, &c->last_cpu_ns, &c->last_delay_ns);
    if (rc < 0) {
        close(c->fd);
        c->fd = -1;
    }
    return rc;
}

void
ioc_cpu_contention_fini(struct ioc_cpu_contention *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static void
contention_sample(struct ioc_cpu_contention *c, uint64_t now_ns)
{
    uint64_t cpu;
    uint64_t delay;
    int verdict;

    c->last_sample_ns = now_ns;
    if (contention_read(c->fd, &cpu, &delay) < 0) {
        return;
    }
    verdict = ioc_contention_judge(cpu - c->last_cpu_ns, delay - c->last_delay_ns);
    c->last_cpu_ns = cpu;
    c->last_delay_ns = delay;
    if (verdict < 0) {
        return;
    }
    c->samples++;
    if (verdict > 0) {
        c->contended_samples++;
        c->contended_until_ns = now_ns + IOC_CONTENTION_HOLD_NS;
    }
}

bool
ioc_cpu_contention_check(struct ioc_cpu_contention *c, uint64_t now_ns)
{
    if (c->fd < 0) {
        return true;
    }
    if (now_ns - c->last_sample_ns >= IOC_CONTENTION_PERIOD_NS) {
        contention_sample(c, now_ns);
    }
    return now_ns < c->contended_until_ns;
}
