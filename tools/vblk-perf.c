/*
 * tools/vblk-perf.c - a small fio-like load generator for libvblk and io_uring.
 *
 * What: drives either libvblk (--socket, a vhost-user-blk backend; one
 * queue, or --queues N of one connection) or io_uring on a file/block device
 * with O_DIRECT (--file; add --buffered to go through the page cache
 * instead), with the same loop, so the shared-memory path and its limit are
 * measured by the same code. Prints IOPS, MiB/s, p50/p99 latency and CPU seconds (this
 * process), as text or --json.
 *
 * How: keep --qd requests in flight; with --queues N, request slot i always
 * goes to queue i % N (the queue depth split round robin), kicks go to every
 * queue that got requests, and completions are reaped from all queues with
 * one vblk_queues_wait() (in eventfd and adaptive modes it sleeps on all
 * call eventfds at once). Still one client thread. Each completion is timed into a
 * log-linear histogram (16 sub-buckets per power of two, ~6% resolution).
 * --verify first writes every block of the range with a pattern derived from
 * (block, generation), then checks every read of a block against the last
 * generation written, and ends with a full read-back pass; a block is never
 * targeted by two requests at once. Any mismatch or IO error makes the exit
 * status 1. --dump FILE copies the whole device to FILE through libvblk (for
 * comparing with what another protocol reads).
 *
 * Not done: several client threads, fixed iodepth batching knobs, time-based
 * ramp. Rejected: a fio engine plugin (Debian ships no fio headers).
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ioc/vblk.h"
#include "lib/size.h"

enum { OP_READ, OP_WRITE };
enum rw { RW_RANDREAD, RW_RANDWRITE, RW_RANDRW, RW_READ, RW_WRITE };

struct engine {
    int (*submit)(struct engine *e, int op, uint64_t off, void *buf, size_t len, unsigned slot);
    int (*kick)(struct engine *e);
    int (*wait)(struct engine *e, unsigned *slots, int *status, int max);
    void *(*buf_alloc)(struct engine *e, size_t len);
    uint64_t size;
    /* vblk */
    struct vblk *v;
    struct vblk_queue *qs[16];
    unsigned nq;
    uint32_t to_kick;     /* bit i: queue i got requests since the last kick */
    /* io_uring */
    struct io_uring ring;
    int fd;
    bool busy;
};

struct opts {
    const char *socket, *file, *dump;
    enum rw rw;
    size_t bs;
    unsigned qd;
    double runtime;
    enum vblk_mode mode;
    bool verify, json;
    bool buffered;        /* --buffered: --file without O_DIRECT (page cache) */
    bool no_event_idx;    /* --no-event-idx: do not negotiate VIRTIO_RING_F_EVENT_IDX */
    double spin_max_us;   /* --spin-max-us: adaptive spin window cap (0: libvblk's default) */
    double idle;          /* --idle: stay connected and idle this long before exiting */
    uint64_t size;
    unsigned seed;
    unsigned mix_read;
    unsigned queue;       /* --queue: first virtqueue to drive (connects with queue+queues) */
    unsigned queues;      /* --queues: how many queues of the connection to drive */
};

#define HIST_BUCKETS (64 * 16)

struct stats {
    uint64_t ios, bytes, errors, mismatches;
    uint64_t hist[HIST_BUCKETS];
};

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t
rng_next(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------ engines */

static int
vblk_e_submit(struct engine *e, int op, uint64_t off, void *buf, size_t len, unsigned slot)
{
    struct iovec iov = {buf, len};
    unsigned qi = slot % e->nq;
    int rc = vblk_queue_submit(e->qs[qi], op == OP_READ ? VBLK_OP_READ : VBLK_OP_WRITE, off, len,
                               &iov, 1, (void *)(uintptr_t)slot);

    if (rc == 0) {
        e->to_kick |= 1u << qi;
    }
    return rc;
}

static int
vblk_e_kick(struct engine *e)
{
    int rc = 0;

    for (unsigned i = 0; i < e->nq && rc == 0; i++) {
        if (e->to_kick & (1u << i)) {
            rc = vblk_queue_kick(e->qs[i]);
        }
    }
    e->to_kick = 0;
    return rc;
}

static int
vblk_e_wait(struct engine *e, unsigned *slots, int *status, int max)
{
    struct vblk_completion c[256];
    int n = vblk_queues_wait(e->qs, e->nq, c, IOC_MIN(max, 256), 30000);

    if (n == 0) {
        return -ETIMEDOUT;
    }
    for (int i = 0; i < n; i++) {
        slots[i] = (unsigned)(uintptr_t)c[i].cookie;
        status[i] = c[i].status;
    }
    return n;
}

static void *
vblk_e_buf(struct engine *e, size_t len)
{
    return vblk_buf_alloc(e->v, len);
}

static int
engine_vblk(struct engine *e, const struct opts *o)
{
    struct vblk_opts vo;
    int rc;

    vblk_opts_init(&vo);
    vo.mode = o->mode;
    vo.no_event_idx = o->no_event_idx;
    vo.spin_max_ns = o->spin_max_us > 0 ? (uint64_t)(o->spin_max_us * 1000) : vo.spin_max_ns;
    vo.num_queues = o->queue + o->queues;
    vo.queue_size = 256;
    while (vo.queue_size < o->qd * 4) {
        vo.queue_size *= 2;
    }
    vo.mem_size = IOC_MAX((size_t)64 << 20, o->bs * o->qd * 2 + (1 << 20));
    rc = vblk_connect(o->socket, &vo, &e->v);
    if (rc != 0) {
        fprintf(stderr, "vblk-perf: %s: %s\n", o->socket, strerror(-rc));
        return rc;
    }
    e->nq = o->queues;
    for (unsigned i = 0; i < e->nq; i++) {
        e->qs[i] = vblk_get_queue(e->v, o->queue + i);
        if (e->qs[i] == NULL) {
            fprintf(stderr, "vblk-perf: %s: queue %u: the backend has %u queue(s)\n",
                    o->socket, o->queue + i, vblk_num_queues(e->v));
            vblk_close(&e->v);
            return -EINVAL;
        }
    }
    e->size = vblk_capacity(e->v);
    e->submit = vblk_e_submit;
    e->kick = vblk_e_kick;
    e->wait = vblk_e_wait;
    e->buf_alloc = vblk_e_buf;
    return 0;
}

static int
uring_e_submit(struct engine *e, int op, uint64_t off, void *buf, size_t len, unsigned slot)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);

    if (sqe == NULL) {
        return -EAGAIN;
    }
    if (op == OP_READ) {
        io_uring_prep_read(sqe, e->fd, buf, (unsigned)len, off);
    } else {
        io_uring_prep_write(sqe, e->fd, buf, (unsigned)len, off);
    }
    io_uring_sqe_set_data64(sqe, slot);
    return 0;
}

static int
uring_e_kick(struct engine *e)
{
    int rc = io_uring_submit(&e->ring);

    return rc < 0 ? rc : 0;
}

static int
uring_e_wait(struct engine *e, unsigned *slots, int *status, int max)
{
    struct io_uring_cqe *cqe;
    int n = 0, rc;

    if (e->busy) {
        while ((rc = io_uring_peek_cqe(&e->ring, &cqe)) == -EAGAIN) {
        }
    } else {
        rc = io_uring_wait_cqe(&e->ring, &cqe);
    }
    if (rc != 0) {
        return rc;
    }
    while (n < max && io_uring_peek_cqe(&e->ring, &cqe) == 0) {
        slots[n] = (unsigned)cqe->user_data;
        status[n] = cqe->res < 0 ? cqe->res : 0;
        io_uring_cqe_seen(&e->ring, cqe);
        n++;
    }
    return n;
}

static void *
uring_e_buf(struct engine *e, size_t len)
{
    void *p = NULL;

    (void)e;
    return posix_memalign(&p, 4096, len) == 0 ? p : NULL;
}

static int
engine_uring(struct engine *e, const struct opts *o)
{
    struct stat st;
    int rc;

    e->fd = open(o->file, O_RDWR | (o->buffered ? 0 : O_DIRECT));
    if (e->fd < 0 || fstat(e->fd, &st) != 0) {
        fprintf(stderr, "vblk-perf: %s: %s\n", o->file, strerror(errno));
        return -errno;
    }
    e->size = (uint64_t)st.st_size;
    if (S_ISBLK(st.st_mode)) {
        e->size = (uint64_t)lseek(e->fd, 0, SEEK_END);
    }
    rc = io_uring_queue_init(IOC_MAX(o->qd * 2, 8u), &e->ring, 0);
    if (rc != 0) {
        fprintf(stderr, "vblk-perf: io_uring_queue_init: %s\n", strerror(-rc));
        return rc;
    }
    e->busy = o->mode == VBLK_MODE_BUSY;
    e->submit = uring_e_submit;
    e->kick = uring_e_kick;
    e->wait = uring_e_wait;
    e->buf_alloc = uring_e_buf;
    return 0;
}

/* ------------------------------------------------------------ verify patterns */

struct job {
    const struct opts *o;
    struct engine *e;
    uint64_t nblocks;
    uint32_t *gen;        /* per block: generation last written (0 = unknown) */
    uint8_t *busy;        /* per block: a request is in flight */
    uint32_t next_gen;
    uint64_t seq_next;
    void **bufs;
    uint64_t *slot_block, *slot_start;
    uint32_t *slot_gen;
    int *slot_op;
    unsigned *free_slots;
    unsigned nr_free;
    struct stats st;
};

static void
pattern_fill(uint64_t *w, size_t len, uint64_t block, uint32_t gen)
{
    uint64_t x = block * 0x100000001b3ull ^ ((uint64_t)gen << 32);

    for (size_t i = 0; i < len / 8; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = x ^ i;
    }
}

static bool
pattern_check(const uint64_t *w, size_t len, uint64_t block, uint32_t gen, uint64_t *scratch)
{
    pattern_fill(scratch, len, block, gen);
    return memcmp(w, scratch, len) == 0;
}

/* ------------------------------------------------------------ histogram */

static unsigned
hist_index(uint64_t ns)
{
    unsigned msb;

    if (ns < 16) {
        return (unsigned)ns;
    }
    msb = 63u - (unsigned)__builtin_clzll(ns);
    return (msb - 3) * 16 + (unsigned)((ns >> (msb - 4)) & 15);
}

static uint64_t
hist_value(unsigned idx)
{
    unsigned msb;

    if (idx < 16) {
        return idx;
    }
    msb = idx / 16 + 3;
    return (1ull << msb) | ((uint64_t)(idx % 16) << (msb - 4));
}

static double
hist_pct(const struct stats *st, double pct)
{
    uint64_t total = 0, acc = 0;

    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        total += st->hist[i];
    }
    for (unsigned i = 0; i < HIST_BUCKETS && total > 0; i++) {
        acc += st->hist[i];
        if ((double)acc >= pct / 100.0 * (double)total) {
            return (double)hist_value(i) / 1000.0;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ the loop */

static int
pick_op(const struct opts *o)
{
    switch (o->rw) {
    case RW_RANDREAD:
    case RW_READ:
        return OP_READ;
    case RW_RANDWRITE:
    case RW_WRITE:
        return OP_WRITE;
    default:
        return rng_next() % 100 < o->mix_read ? OP_READ : OP_WRITE;
    }
}

static uint64_t
pick_block(struct job *j, bool sequential)
{
    for (unsigned tries = 0;; tries++) {
        uint64_t b = sequential ? j->seq_next++ % j->nblocks : rng_next() % j->nblocks;

        if (!j->busy[b] || tries > 64) {
            return j->busy[b] ? UINT64_MAX : b;
        }
    }
}

static int
submit_one(struct job *j, int op, uint64_t b)
{
    unsigned slot = j->free_slots[--j->nr_free];
    size_t bs = j->o->bs;
    int rc;

    if (op == OP_WRITE && j->o->verify) {
        pattern_fill(j->bufs[slot], bs, b, ++j->next_gen);
    }
    j->slot_block[slot] = b;
    j->slot_op[slot] = op;
    j->slot_start[slot] = now_ns();
    rc = j->e->submit(j->e, op, b * bs, j->bufs[slot], bs, slot);
    if (rc != 0) {
        j->nr_free++;
        return rc;
    }
    j->busy[b] = 1;
    if (op == OP_WRITE && j->o->verify) {
        j->gen[b] = 0; /* unknown until the write completes */
        j->slot_gen[slot] = j->next_gen;
    }
    return 0;
}

static void
complete_one(struct job *j, unsigned slot, int status, uint64_t *scratch)
{
    uint64_t b = j->slot_block[slot];
    uint32_t gen = j->slot_gen[slot];
    size_t bs = j->o->bs;

    j->st.hist[hist_index(now_ns() - j->slot_start[slot])]++;
    j->st.ios++;
    j->st.bytes += bs;
    if (status != 0) {
        j->st.errors++;
    } else if (j->slot_op[slot] == OP_WRITE && j->o->verify) {
        j->gen[b] = gen;
    } else if (j->o->verify && j->gen[b] != 0 &&
               !pattern_check(j->bufs[slot], bs, b, j->gen[b], scratch)) {
        if (j->st.mismatches++ < 5) {
            fprintf(stderr, "vblk-perf: verify: mismatch at offset %llu\n",
                    (unsigned long long)(b * bs));
        }
    }
    j->busy[b] = 0;
    j->free_slots[j->nr_free++] = slot;
}

/*
 * Run until deadline (ns) or, when pass_ops is set, until every block was
 * submitted once sequentially with that op (prefill / read-back passes).
 */
static int
run_loop(struct job *j, uint64_t deadline, int pass_op)
{
    const struct opts *o = j->o;
    bool seq = pass_op >= 0 || o->rw == RW_READ || o->rw == RW_WRITE;
    uint64_t submitted = 0, *scratch = malloc(o->bs);
    unsigned slots[256];
    int status[256], rc = 0;

    j->seq_next = 0;
    while (scratch != NULL) {
        bool more = pass_op >= 0 ? submitted < j->nblocks : now_ns() < deadline;
        unsigned n_sub = 0;

        while (more && j->nr_free > 0 && (pass_op < 0 || submitted < j->nblocks)) {
            uint64_t b = pick_block(j, seq);

            if (b == UINT64_MAX) {
                break;
            }
            rc = submit_one(j, pass_op >= 0 ? pass_op : pick_op(o), b);
            if (rc == -EAGAIN) {
                rc = 0;
                break;
            }
            if (rc != 0) {
                fprintf(stderr, "vblk-perf: submit: %s\n", strerror(-rc));
                free(scratch);
                return rc;
            }
            submitted++;
            n_sub++;
        }
        if (n_sub > 0 && (rc = j->e->kick(j->e)) != 0) {
            break;
        }
        if (j->nr_free == o->qd) {
            if (!more) {
                break;
            }
            continue;
        }
        rc = j->e->wait(j->e, slots, status, (int)IOC_MIN(o->qd, 256u));
        if (rc < 0) {
            fprintf(stderr, "vblk-perf: wait: %s\n", strerror(-rc));
            break;
        }
        for (int i = 0; i < rc; i++) {
            complete_one(j, slots[i], status[i], scratch);
        }
        rc = 0;
    }
    free(scratch);
    return scratch == NULL ? -ENOMEM : rc;
}

/* ------------------------------------------------------------ main */

static void
usage(FILE *f)
{
    fprintf(f, "usage: vblk-perf (--socket PATH | --file PATH) [--rw randread|randwrite|randrw|"
               "read|write]\n"
               "                 [--bs 4k] [--qd N] [--runtime SECONDS] [--size BYTES]\n"
               "                 [--mode eventfd|busy|adaptive] [--rwmixread PCT] [--verify]"
               " [--json] [--idle SECONDS] [--queue I] [--queues N]\n"
               "                 [--no-event-idx (libvblk: ring flags instead of event indexes)]"
               " [--spin-max-us US]\n"
               "                 [--buffered (with --file: no O_DIRECT)]\n"
               "       vblk-perf --socket PATH --dump FILE\n");
}

static int
parse_rw(const char *s, enum rw *out)
{
    static const char *const names[] = {"randread", "randwrite", "randrw", "read", "write"};

    for (unsigned i = 0; i < IOC_ARRAY_SIZE(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum rw)i;
            return 0;
        }
    }
    return -EINVAL;
}

static int
parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"socket", 1, 0, 's'}, {"file", 1, 0, 'f'},    {"rw", 1, 0, 'w'},
        {"bs", 1, 0, 'b'},     {"qd", 1, 0, 'q'},      {"runtime", 1, 0, 't'},
        {"mode", 1, 0, 'm'},   {"verify", 0, 0, 'V'},  {"json", 0, 0, 'j'},
        {"size", 1, 0, 'S'},   {"dump", 1, 0, 'd'},    {"rwmixread", 1, 0, 'x'},
        {"seed", 1, 0, 'r'},   {"help", 0, 0, 'h'},    {"idle", 1, 0, 'i'},
        {"queue", 1, 0, 'Q'},  {"buffered", 0, 0, 'B'}, {"queues", 1, 0, 'N'},
        {"no-event-idx", 0, 0, 'E'}, {"spin-max-us", 1, 0, 'P'},
        {0, 0, 0, 0},
    };
    uint64_t v;
    int c;

    *o = (struct opts){.rw = RW_RANDREAD, .bs = 4096, .qd = 1, .runtime = 5,
                       .mode = VBLK_MODE_ADAPTIVE, .mix_read = 50, .seed = 1, .queues = 1};
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        int rc = 0;

        switch (c) {
        case 's': o->socket = optarg; break;
        case 'f': o->file = optarg; break;
        case 'd': o->dump = optarg; break;
        case 'w': rc = parse_rw(optarg, &o->rw); break;
        case 'b': rc = ioc_size_parse(optarg, &v); o->bs = (size_t)v; break;
        case 'S': rc = ioc_size_parse(optarg, &o->size); break;
        case 'q': o->qd = (unsigned)atoi(optarg); break;
        case 'x': o->mix_read = (unsigned)atoi(optarg); break;
        case 'r': o->seed = (unsigned)atoi(optarg); break;
        case 't': o->runtime = atof(optarg); break;
        case 'i': o->idle = atof(optarg); break;
        case 'Q': o->queue = (unsigned)atoi(optarg); break;
        case 'N': o->queues = (unsigned)atoi(optarg); break;
        case 'm': rc = vblk_mode_parse(optarg, &o->mode); break;
        case 'V': o->verify = true; break;
        case 'j': o->json = true; break;
        case 'B': o->buffered = true; break;
        case 'E': o->no_event_idx = true; break;
        case 'P': o->spin_max_us = atof(optarg); break;
        case 'h': usage(stdout); exit(0);
        default: rc = -EINVAL; break;
        }
        if (rc != 0) {
            usage(stderr);
            return -EINVAL;
        }
    }
    if ((o->socket == NULL) == (o->file == NULL) || o->bs == 0 || o->bs % 512 != 0 ||
        o->qd == 0 || o->qd > 1024 || o->runtime <= 0 || o->mix_read > 100 ||
        (o->dump != NULL && o->socket == NULL) || o->queues == 0 || o->queue + o->queues > 16 ||
        (o->queues > 1 && o->socket == NULL)) {
        usage(stderr);
        return -EINVAL;
    }
    return 0;
}

static int
job_init(struct job *j, const struct opts *o, struct engine *e)
{
    uint64_t size = o->size ? IOC_MIN(o->size, e->size) : e->size;

    j->o = o;
    j->e = e;
    j->nblocks = size / o->bs;
    if (j->nblocks < o->qd) {
        fprintf(stderr, "vblk-perf: device too small for qd %u at bs %zu\n", o->qd, o->bs);
        return -EINVAL;
    }
    j->gen = calloc(j->nblocks, sizeof(*j->gen));
    j->busy = calloc(j->nblocks, 1);
    j->bufs = calloc(o->qd, sizeof(*j->bufs));
    j->slot_block = calloc(o->qd, sizeof(*j->slot_block));
    j->slot_start = calloc(o->qd, sizeof(*j->slot_start));
    j->slot_op = calloc(o->qd, sizeof(*j->slot_op));
    j->slot_gen = calloc(o->qd, sizeof(*j->slot_gen));
    j->free_slots = calloc(o->qd, sizeof(*j->free_slots));
    if (!j->gen || !j->busy || !j->bufs || !j->slot_block || !j->slot_start || !j->slot_op ||
        !j->slot_gen ||
        !j->free_slots) {
        return -ENOMEM;
    }
    for (unsigned i = 0; i < o->qd; i++) {
        j->bufs[i] = e->buf_alloc(e, o->bs);
        if (j->bufs[i] == NULL) {
            return -ENOMEM;
        }
        memset(j->bufs[i], 0, o->bs);
        j->free_slots[j->nr_free++] = i;
    }
    return 0;
}

static void
job_fini(struct job *j)
{
    for (unsigned i = 0; j->bufs != NULL && i < j->o->qd; i++) {
        if (j->e->v != NULL) {
            vblk_buf_free(j->e->v, j->bufs[i]);
        } else {
            free(j->bufs[i]);
        }
    }
    free(j->gen);
    free(j->busy);
    free(j->bufs);
    free(j->slot_block);
    free(j->slot_start);
    free(j->slot_op);
    free(j->slot_gen);
    free(j->free_slots);
}

static double
cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Sum of the driven queues' libvblk counters (zeros for io_uring). */
static struct vblk_queue_stats
vblk_stats(const struct engine *e)
{
    struct vblk_queue_stats sum = {0}, q;

    for (unsigned i = 0; e->v != NULL && i < e->nq; i++) {
        vblk_queue_get_stats(e->qs[i], &q);
        sum.kicks += q.kicks;
        sum.sleeps += q.sleeps;
        sum.arms += q.arms;
        sum.calls += q.calls;
        sum.spin_misses += q.spin_misses;
        sum.backoffs += q.backoffs;
        sum.preempts += q.preempts;
    }
    return sum;
}

static void
report(const struct job *j, double secs, double cpu, const struct vblk_queue_stats *s0)
{
    const struct opts *o = j->o;
    double iops = (double)j->st.ios / secs, mibs = (double)j->st.bytes / secs / 1048576.0;
    static const char *const modes[] = {"eventfd", "busy", "adaptive"};
    struct vblk_queue_stats s1 = vblk_stats(j->e);
    bool eidx = j->e->v != NULL && vblk_event_idx(j->e->v);

    s1.kicks -= s0->kicks;
    s1.sleeps -= s0->sleeps;
    s1.arms -= s0->arms;
    s1.calls -= s0->calls;
    s1.spin_misses -= s0->spin_misses;
    s1.backoffs -= s0->backoffs;
    s1.preempts -= s0->preempts;
    if (o->json) {
        printf("{\"engine\": \"%s\", \"mode\": \"%s\", \"bs\": %zu, \"qd\": %u, \"queues\": %u, "
               "\"iops\": %.0f, \"mib_s\": %.1f, \"lat_p50_us\": %.1f, \"lat_p99_us\": %.1f, "
               "\"cpu_s\": %.3f, \"runtime_s\": %.3f, \"ios\": %llu, \"errors\": %llu, "
               "\"verify_errors\": %llu, \"event_idx\": %s, \"kicks\": %llu, \"calls\": %llu, "
               "\"sleeps\": %llu, \"arms\": %llu, \"spin_misses\": %llu, \"backoffs\": %llu, "
               "\"preempts\": %llu}\n",
               o->socket ? "vblk" : "io_uring", modes[o->mode], o->bs, o->qd, o->queues, iops,
               mibs, hist_pct(&j->st, 50), hist_pct(&j->st, 99), cpu, secs,
               (unsigned long long)j->st.ios, (unsigned long long)j->st.errors,
               (unsigned long long)j->st.mismatches, eidx ? "true" : "false",
               (unsigned long long)s1.kicks, (unsigned long long)s1.calls,
               (unsigned long long)s1.sleeps, (unsigned long long)s1.arms,
               (unsigned long long)s1.spin_misses, (unsigned long long)s1.backoffs,
               (unsigned long long)s1.preempts);
        return;
    }
    printf("%s %s bs=%zu qd=%u queues=%u: %.0f IOPS, %.1f MiB/s, p50 %.1f us, p99 %.1f us, "
           "cpu %.2f s in %.2f s, errors %llu, verify mismatches %llu\n",
           o->socket ? "vblk" : "io_uring", modes[o->mode], o->bs, o->qd, o->queues, iops, mibs,
           hist_pct(&j->st, 50), hist_pct(&j->st, 99), cpu, secs,
           (unsigned long long)j->st.errors, (unsigned long long)j->st.mismatches);
    if (o->socket != NULL) {
        printf("  event_idx %s, kicks %llu, call signals %llu, sleeps %llu, spin misses %llu, "
               "back-offs %llu, preempted %llu\n",
               eidx ? "on" : "off", (unsigned long long)s1.kicks, (unsigned long long)s1.calls,
               (unsigned long long)s1.sleeps, (unsigned long long)s1.spin_misses,
               (unsigned long long)s1.backoffs, (unsigned long long)s1.preempts);
    }
}

static int
dump(struct engine *e, const char *path)
{
    size_t chunk = 1 << 20;
    uint8_t *buf = vblk_buf_alloc(e->v, chunk);
    FILE *f = fopen(path, "wb");
    int rc = buf && f ? 0 : -ENOMEM;

    for (uint64_t off = 0; rc == 0 && off < e->size; off += chunk) {
        size_t n = (size_t)IOC_MIN((uint64_t)chunk, e->size - off);

        rc = vblk_read(e->v, buf, n, off);
        if (rc == 0 && fwrite(buf, 1, n, f) != n) {
            rc = -EIO;
        }
    }
    if (f != NULL && fclose(f) != 0 && rc == 0) {
        rc = -EIO;
    }
    if (rc != 0) {
        fprintf(stderr, "vblk-perf: dump: %s\n", strerror(-rc));
    }
    return rc;
}

int
main(int argc, char **argv)
{
    struct opts o;
    struct engine e = {.fd = -1};
    struct job j = {0};
    uint64_t t0;
    double cpu0, secs;
    struct vblk_queue_stats s0;
    int rc;

    if (parse_args(argc, argv, &o) != 0) {
        return 2;
    }
    g_rng ^= o.seed * 0x2545f4914f6cdd1dull;
    rc = o.socket ? engine_vblk(&e, &o) : engine_uring(&e, &o);
    if (rc != 0) {
        return 1;
    }
    if (o.dump != NULL) {
        rc = dump(&e, o.dump);
        vblk_close(&e.v);
        return rc == 0 ? 0 : 1;
    }
    rc = job_init(&j, &o, &e);
    if (rc == 0 && o.verify) {
        rc = run_loop(&j, 0, OP_WRITE);
    }
    s0 = vblk_stats(&e);
    cpu0 = cpu_seconds();
    t0 = now_ns();
    if (rc == 0) {
        rc = run_loop(&j, t0 + (uint64_t)(o.runtime * 1e9), -1);
    }
    secs = (double)(now_ns() - t0) / 1e9;
    report(&j, secs, cpu_seconds() - cpu0, &s0);
    if (rc == 0 && o.verify) {
        rc = run_loop(&j, 0, OP_READ);
        if (!o.json) {
            printf("verify: %llu mismatches, %llu errors\n",
                   (unsigned long long)j.st.mismatches, (unsigned long long)j.st.errors);
        }
    }
    if (o.idle > 0) {
        fflush(stdout);
        usleep((useconds_t)(o.idle * 1e6)); /* connected, no IO: for idle-CPU checks */
    }
    job_fini(&j);
    if (e.v != NULL) {
        vblk_close(&e.v);
    } else if (e.fd >= 0) {
        io_uring_queue_exit(&e.ring);
        close(e.fd);
    }
    return rc == 0 && j.st.errors == 0 && j.st.mismatches == 0 ? 0 : 1;
}
