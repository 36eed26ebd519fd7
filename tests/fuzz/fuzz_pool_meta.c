/*
 * fuzz_pool_meta.c - feed arbitrary bytes to the pool metadata reader.
 *
 * The input is taken as the start of a pool device: the two superblock slots
 * and the metadata pages. Whatever it holds, ioc_pool_sb_pick() and
 * ioc_pool_meta_decode() must either refuse it with a message or return an
 * image whose invariants hold (checked below), never crash, leak or read
 * out of bounds. Inputs shorter than 8 KiB are padded with a valid pool
 * image so the fuzzer also mutates real pages and not only headers.
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t *base;
    static uint64_t base_len;
    struct ioc_pool_meta *m = NULL;
    struct ioc_pool_sb sb;
    uint8_t *buf;
    uint64_t len;

    if (base == NULL) {
        base = fuzz_base(&base_len);
    }
    /* The first 4 bytes choose where the rest lands, so mutations reach every page. */
    len = base_len;
    buf = malloc(len);
    memcpy(buf, base, len);
    if (size >= 4) {
        uint32_t at;
        memcpy(&at, data, 4);
        at %= (uint32_t)len;
        memcpy(buf + at, data + 4, IOC_MIN(size - 4, len - at));
    }
    if (ioc_pool_sb_pick(buf, FUZZ_DEV_SIZE, &sb, NULL) == 0) {
        int rc = ioc_pool_meta_decode(&sb, buf, len, false, NULL, NULL, &m, NULL);
        if (rc == 0) {
            fuzz_check_invariants(m);
        }
        ioc_pool_meta_free(m);
        m = NULL;
        ioc_pool_meta_decode(&sb, buf, len, true, NULL, NULL, &m, NULL);
        ioc_pool_meta_free(m);
    }
    free(buf);
    return 0;
}
