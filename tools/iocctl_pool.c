/*
 * tools/iocctl_pool.c - `iocctl pool check PATH`: the offline pool checker.
 *
 * Reads the pool file or device directly (no daemon), with the same decoder
 * iocd uses on import (src/pool/pool_meta.c), and prints every problem it
 * finds: invalid superblocks, page slots that cannot be read, bad volume
 * entries, clusters that are leaked (owner gone) or doubly used (two
 * clusters for one logical cluster). Exit status: 0 clean, 1 problems,
 * 2 unreadable (no pool there, truncated, IO error).
 *
 * It never writes: repair is a separate, deliberate step (not done yet).
 *
 * Also the table forms of `pool list` and `volume list` (`-o json` prints
 * the raw result instead): a small column printer of its own, because the
 * generic one in iocctl_print.c is private to that file.
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iocctl.h"
#include "lib/size.h"
#include "pool/pool_meta.h"

/* ---- tables for pool list and volume list ---- */

#define POOL_COLS 8
#define POOL_CELL 96

struct pool_table {
    size_t ncols, nrows;
    char (*cells)[POOL_COLS][POOL_CELL];
};

static void
pool_table_print(const struct pool_table *t)
{
    size_t w[POOL_COLS] = {0};

    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            w[c] = IOC_MAX(w[c], strlen(t->cells[r][c]));
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            if (c + 1 < t->ncols) {
                printf("%-*s  ", (int)w[c], t->cells[r][c]);
            } else {
                printf("%s\n", t->cells[r][c]);
            }
        }
    }
}

static void
pool_cell_size(char *cell, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    if (json_is_integer(v)) {
        ioc_size_format((uint64_t)json_integer_value(v), false, cell, POOL_CELL);
    } else {
        snprintf(cell, POOL_CELL, "-");
    }
}

static void
pool_cell_str(char *cell, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    if (json_is_string(v)) {
        snprintf(cell, POOL_CELL, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(cell, POOL_CELL, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else {
        snprintf(cell, POOL_CELL, "-");
    }
}

/* A header row, then one row per array element filled by fill; plain JSON otherwise. */
static void
pool_rows(json_t *result, const char *const *header, size_t ncols,
          void (*fill)(char (*row)[POOL_CELL], json_t *obj))
{
    struct pool_table t = {.ncols = ncols};
    size_t i;
    json_t *obj;

    if (!json_is_array(result)) {
        iocctl_print_plain(result);
        return;
    }
    t.cells = calloc(json_array_size(result) + 1, sizeof(*t.cells));
    if (t.cells == NULL) {
        iocctl_print_json(result);
        return;
    }
    for (size_t c = 0; c < ncols; c++) {
        snprintf(t.cells[0][c], POOL_CELL, "%s", header[c]);
    }
    json_array_foreach(result, i, obj) {
        fill(t.cells[i + 1], obj);
    }
    t.nrows = json_array_size(result) + 1;
    pool_table_print(&t);
    free(t.cells);
}

static void
fill_pool(char (*row)[POOL_CELL], json_t *obj)
{
    json_t *size = json_object_get(obj, "size"), *free_b = json_object_get(obj, "free");

    pool_cell_str(row[0], obj, "name");
    pool_cell_size(row[1], obj, "size");
    if (json_is_integer(size) && json_is_integer(free_b)) {
        ioc_size_format((uint64_t)(json_integer_value(size) - json_integer_value(free_b)),
                        false, row[2], POOL_CELL);
    } else {
        snprintf(row[2], POOL_CELL, "-");
    }
    pool_cell_size(row[3], obj, "free");
    pool_cell_size(row[4], obj, "cluster_size");
    pool_cell_str(row[5], obj, "volumes");
    pool_cell_str(row[6], obj, "bdev");
}

void
iocctl_print_pools(json_t *result)
{
    static const char *const header[] = {"NAME", "SIZE", "USED", "FREE", "CLUSTER",
                                         "VOLUMES", "BDEV"};

    pool_rows(result, header, IOC_ARRAY_SIZE(header), fill_pool);
}

static void
fill_volume(char (*row)[POOL_CELL], json_t *obj)
{
    bool snap = json_is_true(json_object_get(obj, "snapshot"));

    pool_cell_str(row[0], obj, "bdev");
    snprintf(row[1], POOL_CELL, "%s", snap ? "snapshot" : "volume");
    pool_cell_size(row[2], obj, "size");
    pool_cell_size(row[3], obj, "allocated");
    pool_cell_str(row[4], obj, "parent");
    pool_cell_str(row[5], obj, "children");
    snprintf(row[6], POOL_CELL, "%s",
             json_is_true(json_object_get(obj, "read_only")) ? "ro" : "rw");
}

void
iocctl_print_volumes(json_t *result)
{
    static const char *const header[] = {"NAME", "TYPE", "SIZE", "ALLOCATED", "PARENT",
                                         "CHILDREN", "ACCESS"};

    pool_rows(result, header, IOC_ARRAY_SIZE(header), fill_volume);
}

/* ---- pool check ---- */

static void
check_report(void *arg, const char *msg)
{
    unsigned *n = arg;

    printf("problem: %s\n", msg);
    (*n)++;
}

static int
check_read(int fd, void *buf, uint64_t len, uint64_t off)
{
    uint64_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        done += (uint64_t)n;
    }
    return 0;
}

static void
check_summary(const struct ioc_pool_meta *m)
{
    unsigned vols = 0, snaps = 0;
    uint32_t used = 0;

    for (uint32_t i = 0; i < m->sb.max_volumes; i++) {
        vols += m->vt[i].id != 0;
        snaps += m->vt[i].id != 0 && (m->vt[i].flags & IOC_VOL_SNAPSHOT);
    }
    for (uint32_t c = 0; c < m->sb.n_clusters; c++) {
        used += m->ct[c].owner != 0;
    }
    printf("pool %s: seq %llu, %u clusters of %u bytes, %u used, %u volumes (%u snapshots)\n",
           m->sb.name, (unsigned long long)m->sb.seq, m->sb.n_clusters, m->sb.cluster_size, used,
           vols - snaps, snaps);
    uint32_t cut_short = 0;
    for (uint32_t p = 0; p < m->n_pages; p++) {
        cut_short += m->page_uncommitted[p];
    }
    if (cut_short > 0) {
        /* Not a problem: the writes of a commit that never reached its superblock. */
        printf("%u metadata page%s hold%s a write of a commit cut short (ignored; the next "
               "commit overwrites %s)\n", cut_short, cut_short == 1 ? "" : "s",
               cut_short == 1 ? "s" : "", cut_short == 1 ? "it" : "them");
    }
}

int
iocctl_pool_check(const char *path)
{
    uint8_t sbbuf[IOC_POOL_META_OFFSET];
    struct ioc_pool_meta *m = NULL;
    struct ioc_err err = {0};
    struct ioc_pool_sb sb;
    unsigned problems = 0;
    uint8_t *buf = NULL;
    struct stat st;
    uint64_t size, len = 0;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "iocctl: pool check: cannot open '%s': %s\n", path, strerror(errno));
        return 2;
    }
    size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(fd, 0, SEEK_END);
        size = end > 0 ? (uint64_t)end : 0;
    }
    rc = size >= sizeof(sbbuf) ? check_read(fd, sbbuf, sizeof(sbbuf), 0) : -EINVAL;
    if (rc == 0) {
        rc = ioc_pool_sb_pick(sbbuf, size, &sb, &err);
    } else {
        ioc_err_set(&err, rc, "'%s' is too small or unreadable", path);
    }
    if (rc == 0) {
        len = ioc_pool_meta_region_size(&sb);
        buf = malloc(len);
        rc = buf == NULL ? ioc_err_set(&err, -ENOMEM, "out of memory")
                         : check_read(fd, buf, len, 0);
        if (rc < 0 && buf != NULL) {
            ioc_err_set(&err, rc, "cannot read the metadata: %s", strerror(-rc));
        }
    }
    close(fd);
    if (rc < 0) {
        fprintf(stderr, "iocctl: pool check: %s: %s\n", path, err.msg);
        free(buf);
        return 2;
    }
    rc = ioc_pool_meta_decode(&sb, buf, len, true, check_report, &problems, &m, &err);
    free(buf);
    if (m == NULL) {
        fprintf(stderr, "iocctl: pool check: %s: %s\n", path, err.msg);
        return 2;
    }
    check_summary(m);
    ioc_pool_meta_free(m);
    if (problems > 0) {
        printf("%u problem%s found\n", problems, problems == 1 ? "" : "s");
        return 1;
    }
    printf("clean\n");
    return 0;
}
