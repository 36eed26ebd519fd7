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
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iocctl.h"
#include "pool/pool_meta.h"

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
