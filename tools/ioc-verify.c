/*
 * tools/ioc-verify.c - write blocks that prove themselves, then check that
 * nothing acknowledged was lost.
 *
 * What: `write` writes blocks through any NBD URI (libnbd), each carrying a
 * header (magic, LBA, sequence number, writer id, CRC32C of the block) and
 * a payload derived from them; it records in a state file, per block, the
 * last acknowledged sequence number and the last one issued. `check` reads
 * every block back and counts:
 *   ok       the block is intact and holds the last acknowledged write or a
 *            later issued one (a write in flight when it stopped may land);
 *   lost     an acknowledged block reads as never written;
 *   torn     a block whose CRC or LBA is wrong (a partial or misplaced write);
 *   stale    an intact block older than its last acknowledged write;
 *   phantom  an intact block newer than anything issued for it.
 * It prints the counts on one line and exits 1 unless lost, torn, stale and
 * phantom are all 0. `write` exits 1 if any write failed (counted).
 *
 * How: QD writes in flight (libnbd's async API), never two to one block at
 * once; sequence numbers grow across runs (the state file keeps the next
 * one), so several runs against one volume (before and after a failover)
 * check as one history. The state file is saved every second and at the
 * end; SIGINT/SIGTERM end the run cleanly.
 *
 * Not done: verifying unwritten blocks (they may hold anything), multiple
 * writers on one state file. Rejected: a text state file (a 1 GiB volume of
 * 4 KiB blocks is 262144 records; binary is 4 MiB and written in one go).
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libnbd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VERIFY_MAGIC   0x3159465256434f49ull /* "IOCVRFY1" little endian */
#define STATE_MAGIC    0x3154535643434f49ull
#define MAX_QD         256

struct blk_hdr {
    uint64_t magic;
    uint64_t lba;
    uint64_t seq;
    uint32_t writer;
    uint32_t crc; /* CRC32C of the whole block with this field 0 */
};

struct blk_state {
    uint64_t acked;  /* last acknowledged sequence number, 0: none */
    uint64_t issued; /* last issued */
};

struct state_hdr {
    uint64_t magic;
    uint64_t block_size;
    uint64_t blocks;
    uint64_t next_seq;
    uint64_t writer;
};

struct verify {
    const char *uri;
    const char *state_path;
    struct nbd_handle *nbd;
    uint32_t bs;
    uint64_t blocks;
    uint64_t offset;       /* first byte of the area used */
    uint32_t writer;
    unsigned qd;
    double seconds;
    uint64_t count;
    bool fua;
    unsigned flush_every_ms;
    struct state_hdr sh;
    struct blk_state *st;
    uint8_t *busy;         /* block has a write in flight */
    uint64_t acked, errors, issued;
};

struct slot {
    struct verify *v;
    uint64_t lba, seq;
    bool used;
    uint8_t *buf;
};

static volatile sig_atomic_t g_stop;

/* ---- CRC32C (Castagnoli), table driven ---- */

static uint32_t g_crc_table[256];

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        g_crc_table[i] = c;
    }
}

static uint32_t
crc32c(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;

    while (n--) {
        c = g_crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

/* ---- blocks ---- */

static void
block_fill(uint8_t *buf, uint32_t bs, uint64_t lba, uint64_t seq, uint32_t writer)
{
    struct blk_hdr h = {VERIFY_MAGIC, lba, seq, writer, 0};
    uint64_t x = lba * 0x9E3779B97F4A7C15ull ^ seq ^ ((uint64_t)writer << 40);

    for (uint32_t i = sizeof(h); i + 8 <= bs; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    memcpy(buf, &h, sizeof(h));
    h.crc = crc32c(buf, bs);
    memcpy(buf, &h, sizeof(h));
}

enum blk_verdict { BLK_ZERO, BLK_TORN, BLK_INTACT };

static enum blk_verdict
block_check(uint8_t *buf, uint32_t bs, uint64_t lba, struct blk_hdr *out)
{
    struct blk_hdr h;
    uint32_t crc;

    memcpy(&h, buf, sizeof(h));
    if (h.magic != VERIFY_MAGIC) {
        for (uint32_t i = 0; i < bs; i++) {
            if (buf[i] != 0) {
                return BLK_TORN;
            }
        }
        return BLK_ZERO;
    }
    crc = h.crc;
    h.crc = 0;
    memcpy(buf, &h, sizeof(h));
    if (crc32c(buf, bs) != crc || h.lba != lba) {
        return BLK_TORN;
    }
    *out = h;
    return BLK_INTACT;
}

/* ---- state file ---- */

static int
state_load(struct verify *v, bool must_exist)
{
    FILE *f = fopen(v->state_path, "rb");
    size_t n;

    v->st = calloc(v->blocks, sizeof(*v->st));
    if (v->st == NULL) {
        return -ENOMEM;
    }
    if (f == NULL) {
        if (must_exist) {
            fprintf(stderr, "ioc-verify: %s: %s\n", v->state_path, strerror(errno));
            return -errno;
        }
        v->sh = (struct state_hdr){STATE_MAGIC, v->bs, v->blocks, 1, v->writer};
        return 0;
    }
    n = fread(&v->sh, sizeof(v->sh), 1, f);
    if (n != 1 || v->sh.magic != STATE_MAGIC || v->sh.block_size != v->bs ||
        v->sh.blocks != v->blocks) {
        fprintf(stderr, "ioc-verify: %s: not a state file for %" PRIu64 " blocks of %u bytes\n",
                v->state_path, v->blocks, v->bs);
        fclose(f);
        return -EINVAL;
    }
    n = fread(v->st, sizeof(*v->st), v->blocks, f);
    fclose(f);
    if (n != v->blocks) {
        fprintf(stderr, "ioc-verify: %s: truncated\n", v->state_path);
        return -EINVAL;
    }
    v->writer = (uint32_t)v->sh.writer;
    return 0;
}

/* Take blocks and block size from an existing state file. */
static void
state_peek(struct verify *v)
{
    FILE *f = fopen(v->state_path, "rb");
    struct state_hdr h;

    if (f == NULL) {
        return;
    }
    if (fread(&h, sizeof(h), 1, f) == 1 && h.magic == STATE_MAGIC) {
        v->blocks = h.blocks;
        v->bs = (uint32_t)h.block_size;
    }
    fclose(f);
}

static int
state_save(struct verify *v)
{
    char tmp[4096];
    FILE *f;
    bool ok;

    snprintf(tmp, sizeof(tmp), "%s.tmp", v->state_path);
    f = fopen(tmp, "wb");
    if (f == NULL) {
        fprintf(stderr, "ioc-verify: %s: %s\n", tmp, strerror(errno));
        return -errno;
    }
    ok = fwrite(&v->sh, sizeof(v->sh), 1, f) == 1 &&
         fwrite(v->st, sizeof(*v->st), v->blocks, f) == v->blocks;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    fclose(f);
    if (!ok || rename(tmp, v->state_path) < 0) {
        fprintf(stderr, "ioc-verify: cannot save %s\n", v->state_path);
        return -EIO;
    }
    return 0;
}

/* ---- write ---- */

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
write_done(void *user_data, int *error)
{
    struct slot *s = user_data;
    struct verify *v = s->v;

    if (*error == 0) {
        v->acked++;
        if (s->seq > v->st[s->lba].acked) {
            v->st[s->lba].acked = s->seq;
        }
    } else {
        v->errors++;
        if (v->errors <= 5) {
            fprintf(stderr, "ioc-verify: write of block %" PRIu64 " failed: %s\n", s->lba,
                    strerror(*error));
        }
    }
    v->busy[s->lba] = 0;
    s->used = false;
    return 1;
}

static int
write_issue(struct verify *v, struct slot *s)
{
    uint64_t lba;

    do {
        lba = ((uint64_t)rand() << 31 ^ (uint64_t)rand()) % v->blocks;
    } while (v->busy[lba]);
    s->lba = lba;
    s->seq = v->sh.next_seq++;
    s->used = true;
    v->busy[lba] = 1;
    v->st[lba].issued = s->seq;
    v->issued++;
    block_fill(s->buf, v->bs, lba, s->seq, v->writer);
    if (nbd_aio_pwrite(v->nbd, s->buf, v->bs, v->offset + lba * v->bs,
                       (nbd_completion_callback){.callback = write_done, .user_data = s},
                       v->fua ? LIBNBD_CMD_FLAG_FUA : 0) < 0) {
        fprintf(stderr, "ioc-verify: %s\n", nbd_get_error());
        s->used = false;
        v->busy[lba] = 0;
        return -EIO;
    }
    return 0;
}

static int
run_write(struct verify *v)
{
    struct slot slots[MAX_QD];
    double start = now_s(), last_save = start, last_flush = start;
    int rc = 0;

    v->busy = calloc(v->blocks, 1);
    memset(slots, 0, sizeof(slots));
    for (unsigned i = 0; i < v->qd; i++) {
        slots[i].v = v;
        if (posix_memalign((void **)&slots[i].buf, 4096, v->bs) != 0) {
            return -ENOMEM;
        }
    }
    for (;;) {
        bool more = !g_stop && (v->count == 0 || v->issued < v->count) &&
                    (v->seconds <= 0 || now_s() - start < v->seconds);
        for (unsigned i = 0; more && i < v->qd && rc == 0; i++) {
            if (!slots[i].used) {
                rc = write_issue(v, &slots[i]);
                more = v->count == 0 || v->issued < v->count;
            }
        }
        if (rc < 0 || (!more && nbd_aio_in_flight(v->nbd) == 0)) {
            break;
        }
        if (nbd_poll(v->nbd, 1000) < 0) {
            fprintf(stderr, "ioc-verify: %s\n", nbd_get_error());
            rc = -EIO;
            break;
        }
        if (v->flush_every_ms > 0 && (now_s() - last_flush) * 1000 >= v->flush_every_ms) {
            last_flush = now_s();
            nbd_aio_flush(v->nbd, NBD_NULL_COMPLETION, 0);
        }
        if (now_s() - last_save >= 1.0) {
            last_save = now_s();
            state_save(v);
        }
    }
    state_save(v);
    printf("write: issued=%" PRIu64 " acked=%" PRIu64 " errors=%" PRIu64 " seconds=%.1f "
           "iops=%.0f\n",
           v->issued, v->acked, v->errors, now_s() - start,
           (double)v->acked / (now_s() - start));
    for (unsigned i = 0; i < v->qd; i++) {
        free(slots[i].buf);
    }
    free(v->busy);
    return rc < 0 ? 2 : v->errors > 0 ? 1 : 0;
}

/* ---- check ---- */

struct counts {
    uint64_t written, ok, lost, torn, stale, phantom;
};

static void
check_block(struct verify *v, uint8_t *buf, uint64_t lba, struct counts *c)
{
    const struct blk_state *s = &v->st[lba];
    struct blk_hdr h;
    enum blk_verdict vd;

    if (s->issued == 0) {
        return;
    }
    c->written++;
    vd = block_check(buf, v->bs, lba, &h);
    if (vd == BLK_TORN) {
        c->torn++;
        if (c->torn <= 5) {
            fprintf(stderr, "ioc-verify: block %" PRIu64 ": torn\n", lba);
        }
    } else if (vd == BLK_ZERO) {
        if (s->acked != 0) {
            c->lost++;
            if (c->lost <= 5) {
                fprintf(stderr, "ioc-verify: block %" PRIu64 ": lost (acked seq %" PRIu64 ")\n",
                        lba, s->acked);
            }
        } else {
            c->ok++;
        }
    } else if (h.seq < s->acked) {
        c->stale++;
        if (c->stale <= 5) {
            fprintf(stderr, "ioc-verify: block %" PRIu64 ": seq %" PRIu64 " older than acked %"
                    PRIu64 "\n", lba, h.seq, s->acked);
        }
    } else if (h.seq > s->issued) {
        c->phantom++;
    } else {
        c->ok++;
    }
}

static int
run_check(struct verify *v)
{
    const uint64_t chunk = 1u << 20;
    uint8_t *buf;
    struct counts c = {0};

    if (posix_memalign((void **)&buf, 4096, chunk) != 0) {
        return 2;
    }
    for (uint64_t lba = 0; lba < v->blocks;) {
        uint64_t n = IOC_MIN(chunk / v->bs, v->blocks - lba);
        if (nbd_pread(v->nbd, buf, n * v->bs, v->offset + lba * v->bs, 0) < 0) {
            fprintf(stderr, "ioc-verify: read at block %" PRIu64 ": %s\n", lba, nbd_get_error());
            free(buf);
            return 2;
        }
        for (uint64_t i = 0; i < n; i++) {
            check_block(v, buf + i * v->bs, lba + i, &c);
        }
        lba += n;
    }
    free(buf);
    printf("check: blocks=%" PRIu64 " written=%" PRIu64 " ok=%" PRIu64 " lost=%" PRIu64
           " torn=%" PRIu64 " stale=%" PRIu64 " phantom=%" PRIu64 "\n",
           v->blocks, c.written, c.ok, c.lost, c.torn, c.stale, c.phantom);
    return c.lost + c.torn + c.stale + c.phantom == 0 ? 0 : 1;
}

/* ---- main ---- */

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: ioc-verify write URI --state FILE [OPTIONS]\n"
            "       ioc-verify check URI --state FILE [--blocks N] [--block-size N]\n"
            "\n"
            "  -s, --state FILE      per-block record of acknowledged writes (required)\n"
            "  -n, --blocks N        blocks used (default: the whole export)\n"
            "  -b, --block-size N    bytes per block, a multiple of 512 (default 4096)\n"
            "  -o, --offset BYTES    first byte of the area used (default 0)\n"
            "  -t, --seconds S       write for S seconds (default 10)\n"
            "  -c, --count N         write N blocks (instead of --seconds)\n"
            "  -q, --qd N            writes in flight (default 16, at most %d)\n"
            "  -w, --writer ID       writer id stored in each block (default 1)\n"
            "  -F, --fua             write with FUA\n"
            "  -f, --flush-ms MS     send a FLUSH every MS milliseconds\n"
            "\n"
            "Exit status: 0 all good; 1 write errors (write) or lost/torn/stale/phantom\n"
            "blocks (check); 2 usage or connection errors.\n",
            MAX_QD);
}

static void
on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int
parse_opts(int argc, char **argv, struct verify *v)
{
    static const struct option lo[] = {
        {"state", required_argument, NULL, 's'},  {"blocks", required_argument, NULL, 'n'},
        {"block-size", required_argument, NULL, 'b'}, {"offset", required_argument, NULL, 'o'},
        {"seconds", required_argument, NULL, 't'}, {"count", required_argument, NULL, 'c'},
        {"qd", required_argument, NULL, 'q'},     {"writer", required_argument, NULL, 'w'},
        {"fua", no_argument, NULL, 'F'},          {"flush-ms", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "s:n:b:o:t:c:q:w:Ff:h", lo, NULL)) != -1) {
        switch (c) {
        case 's': v->state_path = optarg; break;
        case 'n': v->blocks = strtoull(optarg, NULL, 0); break;
        case 'b': v->bs = (uint32_t)strtoul(optarg, NULL, 0); break;
        case 'o': v->offset = strtoull(optarg, NULL, 0); break;
        case 't': v->seconds = atof(optarg); break;
        case 'c': v->count = strtoull(optarg, NULL, 0); v->seconds = 0; break;
        case 'q': v->qd = (unsigned)atoi(optarg); break;
        case 'w': v->writer = (uint32_t)strtoul(optarg, NULL, 0); break;
        case 'F': v->fua = true; break;
        case 'f': v->flush_every_ms = (unsigned)atoi(optarg); break;
        case 'h': usage(stdout); exit(0);
        default: return -EINVAL;
        }
    }
    if (v->state_path == NULL || v->bs < 512 || v->bs % 512 || v->qd == 0 || v->qd > MAX_QD) {
        return -EINVAL;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct verify v = {.bs = 4096, .qd = 16, .seconds = 10, .writer = 1};
    const char *mode;
    int64_t size;
    int rc;

    if (argc < 3 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "check") != 0)) {
        usage(stderr);
        return 2;
    }
    mode = argv[1];
    v.uri = argv[2];
    optind = 3;
    if (parse_opts(argc, argv, &v) < 0) {
        usage(stderr);
        return 2;
    }
    crc_init();
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    v.nbd = nbd_create();
    if (v.nbd == NULL || nbd_connect_uri(v.nbd, v.uri) < 0) {
        fprintf(stderr, "ioc-verify: %s: %s\n", v.uri, nbd_get_error());
        return 2;
    }
    size = nbd_get_size(v.nbd);
    if (v.blocks == 0) {
        state_peek(&v); /* the recorded area, if there is a record */
    }
    if (v.blocks == 0) {
        v.blocks = ((uint64_t)size - v.offset) / v.bs;
    }
    if (size < 0 || v.offset + v.blocks * v.bs > (uint64_t)size || v.blocks == 0) {
        fprintf(stderr, "ioc-verify: %s: the area does not fit the export\n", v.uri);
        return 2;
    }
    rc = state_load(&v, strcmp(mode, "check") == 0);
    if (rc < 0) {
        return 2;
    }
    rc = strcmp(mode, "write") == 0 ? run_write(&v) : run_check(&v);
    nbd_shutdown(v.nbd, 0);
    nbd_close(v.nbd);
    free(v.st);
    return rc;
}
