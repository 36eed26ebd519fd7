/*
 * fuzz_pool_meta.c - feed arbitrary bytes to the pool metadata reader.
 *
 * The input is taken as the start of a pool device: the two superblock slots
 * and the metadata pages. Whatever it holds, ioc_pool_sb_pick() and
 * ioc_pool_meta_decode() must either refuse it with a message or return an
 * image whose invariants hold (checked below), never crash, leak or read
 * out of bounds. Each input is laid over a valid pool image (at an offset
 * its first bytes choose) so the fuzzer also mutates real pages and not
 * only headers.
 */
#include "ioc/common.h"

#include <string.h>

#include "pool/pool_meta.h"

#define FUZZ_DEV_SIZE (4u << 20)
#define FUZZ_CLUSTER (64u * 1024)

/* A valid small pool, serialized, as the base every input is laid over. */
static uint8_t *
fuzz_base(uint64_t *len)
{
    struct ioc_pool_meta *m = NULL;
    uint8_t *buf;

    if (ioc_pool_meta_format("fz", FUZZ_DEV_SIZE, FUZZ_CLUSTER, &m, NULL) < 0) {
        abort();
    }
    m->vt[0] = (struct ioc_pool_vol_disk){.id = 1, .size = 1 << 20, .name = "v"};
    m->vt[1] = (struct ioc_pool_vol_disk){.id = 2, .size = 1 << 20, .name = "w", .parent = 0};
    m->ct[0] = (struct ioc_pool_ct_entry){1, 3};
    m->ct[1] = (struct ioc_pool_ct_entry){2, 0};
    *len = ioc_pool_meta_region_size(&m->sb);
    buf = calloc(1, *len);
    ioc_pool_meta_sb_build(m, buf + IOC_POOL_PAGE_SIZE);
    for (uint32_t p = 0; p < m->n_pages; p++) {
        ioc_pool_meta_page_build(m, p, 1, buf + ioc_pool_page_offset(p, 0));
    }
    ioc_pool_meta_free(m);
    return buf;
}

static void
fuzz_check_invariants(const struct ioc_pool_meta *m)
{
    for (uint32_t c = 0; c < m->sb.n_clusters; c++) {
        uint32_t o = m->ct[c].owner;
        if (o != 0 && (o > m->sb.max_volumes || m->vt[o - 1].id != o)) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Speed (this target once ran ~290 inputs/s): the 1 MiB base image is built
 * once and kept in a working copy; each input is laid over it and only the
 * bytes it touched are restored afterwards, instead of allocating and
 * copying the whole image per input. And each input is decoded once, in the
 * mode (checker or import) chosen by a bit of its header, rather than twice.
 * The geometry is already the smallest the format allows: the volume table
 * is a fixed 128 pages, and a 4 MiB device gives one cluster-table page.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t *base, *work;
    static uint64_t base_len;
    struct ioc_pool_meta *m = NULL;
    struct ioc_pool_sb sb;
    uint32_t at = 0;
    size_t n = 0;
    bool keep = false;

    if (base == NULL) {
        base = fuzz_base(&base_len);
        work = malloc(base_len);
        memcpy(work, base, base_len);
    }
    /* The first 4 bytes choose where the rest lands (and the mode), so mutations reach
     * every page. */
    if (size >= 4) {
        memcpy(&at, data, 4);
        keep = (at & 1u) != 0;
        at = (at >> 1) % (uint32_t)base_len;
        n = IOC_MIN(size - 4, base_len - at);
        memcpy(work + at, data + 4, n);
    }
    if (ioc_pool_sb_pick(work, FUZZ_DEV_SIZE, &sb, NULL) == 0) {
        int rc = ioc_pool_meta_decode(&sb, work, base_len, keep, NULL, NULL, &m, NULL);
        if (rc == 0) {
            fuzz_check_invariants(m);
        }
        ioc_pool_meta_free(m);
    }
    memcpy(work + at, base + at, n);
    return 0;
}
