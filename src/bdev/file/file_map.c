/*
 * bdev/file/file_map.c - the file bdev's shared mapping, residency, and the
 * guarded copy out of it (file_map.h says what for).
 *
 * Residency is tracked per FILE_MAP_CHUNK (2 MiB): a READ copies out of the
 * mapping only if its chunks were all cached at a cachestat(2) less than
 * FILE_MAP_RESIDENT_TTL_NS ago. One syscall per chunk per TTL keeps the
 * check off the per-IO cost (a cachestat per READ would cost about as much
 * as the io_uring read it replaces); the price is that a page evicted within
 * the TTL is read from disk by the fault, on the reactor thread. A cached
 * page copied from the mapping costs the copy only: no page-cache lookup,
 * no syscall (measured: see docs/design-notes.md, "Cached reads from the
 * mapping").
 *
 * SIGBUS: a CPU access to a mapped page that cannot be backed (beyond a
 * truncated file's end; a read error while faulting it in) raises SIGBUS.
 * The copy sets a thread-local guard; the handler (installed when a file
 * is mapped) jumps
 * back to it, and the IO goes through io_uring instead, which reports the
 * error (or the zeroes past the end) the way it always did. A SIGBUS
 * anywhere else resets the default action and returns, so the access faults
 * again and the process dies as it would have without the handler.
 */
#include "ioc/common.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bdev/file/file_map.h"

#define FILE_MAP_CHUNK_SHIFT      21
#define FILE_MAP_RESIDENT_TTL_NS  250000000ull

/* cachestat(2) (Linux 6.5); Debian 12's headers predate it. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct file_cachestat_range {
    uint64_t off;
    uint64_t len;
};
struct file_cachestat {
    uint64_t nr_cache;
    uint64_t nr_dirty;
    uint64_t nr_writeback;
    uint64_t nr_evicted;
    uint64_t nr_recently_evicted;
};

int
file_map_range_cached(int fd, uint64_t page_size, uint64_t offset, uint64_t len)
{
    uint64_t first = offset / page_size;
    uint64_t pages = (offset + len + page_size - 1) / page_size - first;
    struct file_cachestat_range range = {.off = first * page_size, .len = pages * page_size};
    struct file_cachestat cs;

    /* answered from the page-cache tree, without touching the pages */
    if (syscall(__NR_cachestat, fd, &range, &cs, 0) < 0) {
        return errno == ENOSYS ? -ENOTSUP : 0;
    }
    return cs.nr_cache >= pages;
}

/* ------------------------------------------------------------ the SIGBUS guard */

static _Thread_local sigjmp_buf *t_copy_guard;
static pthread_mutex_t g_sigbus_lock = PTHREAD_MUTEX_INITIALIZER;

static void
map_sigbus(int sig, siginfo_t *si, void *uctx)
{
    (void)si;
    (void)uctx;
    if (t_copy_guard != NULL) {
        siglongjmp(*t_copy_guard, 1);
    }
    signal(sig, SIG_DFL);
}

/* At every mapping, in case something replaced the handler since the last
 * (a test harness does, around each test). */
static void
map_sigbus_install(void)
{
    struct sigaction sa, old;

    pthread_mutex_lock(&g_sigbus_lock);
    if (sigaction(SIGBUS, NULL, &old) == 0 && (old.sa_flags & SA_SIGINFO) &&
        old.sa_sigaction == map_sigbus) {
        pthread_mutex_unlock(&g_sigbus_lock);
        return;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = map_sigbus;
    /* NODEFER: SIGBUS stays unblocked after the jump, so sigsetjmp need not
     * save the signal mask (a syscall per copy) */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    pthread_mutex_unlock(&g_sigbus_lock);
}

static void
copy_iov(const uint8_t *src, const struct iovec *iov, int iovcnt)
{
    for (int i = 0; i < iovcnt; i++) {
        memcpy(iov[i].iov_base, src, iov[i].iov_len);
        src += iov[i].iov_len;
    }
}

int
file_map_copy_out(const struct file_map *m, uint64_t offset, const struct iovec *iov,
                  int iovcnt)
{
    sigjmp_buf guard;

    if (sigsetjmp(guard, 0) != 0) {
        t_copy_guard = NULL;
        return -EFAULT;
    }
    t_copy_guard = &guard;
    atomic_signal_fence(memory_order_seq_cst); /* the guard is set before the first load */
    copy_iov(m->base + offset, iov, iovcnt);
    atomic_signal_fence(memory_order_seq_cst);
    t_copy_guard = NULL;
    return 0;
}

/* ------------------------------------------------------------ residency */

static uint64_t
chunk_check(struct file_map *m, uint64_t chunk, uint64_t now_ns)
{
    uint64_t off = chunk << FILE_MAP_CHUNK_SHIFT;
    uint64_t len = IOC_MIN((uint64_t)1 << FILE_MAP_CHUNK_SHIFT, m->len - off);
    uint64_t state = (now_ns << 1) | (file_map_range_cached(m->fd, m->page_size, off, len) > 0);

    /* racy between reactors, harmlessly: each stores a fresh answer */
    atomic_store_explicit(&m->chunk_state[chunk], state, memory_order_relaxed);
    return state;
}

bool
file_map_resident(struct file_map *m, uint64_t offset, uint64_t len, uint64_t now_ns)
{
    uint64_t last = (offset + len - 1) >> FILE_MAP_CHUNK_SHIFT;

    for (uint64_t c = offset >> FILE_MAP_CHUNK_SHIFT; c <= last; c++) {
        uint64_t state = atomic_load_explicit(&m->chunk_state[c], memory_order_relaxed);

        if (state == 0 || now_ns - (state >> 1) > FILE_MAP_RESIDENT_TTL_NS) {
            state = chunk_check(m, c, now_ns);
        }
        if (!(state & 1)) {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------ map, unmap */

int
file_map_open(struct file_map *m, int fd, uint64_t size, uint64_t page_size)
{
    void *base;

    memset(m, 0, sizeof(*m));
    if (size == 0 || size > SIZE_MAX) {
        return -EINVAL;
    }
    m->nr_chunks = ((size - 1) >> FILE_MAP_CHUNK_SHIFT) + 1;
    m->chunk_state = calloc(m->nr_chunks, sizeof(*m->chunk_state));
    if (m->chunk_state == NULL) {
        return -ENOMEM;
    }
    base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int rc = -errno;
        free(m->chunk_state);
        m->chunk_state = NULL;
        return rc;
    }
    /* a child process (none today) must not inherit a writable view of the volume */
    (void)madvise(base, (size_t)size, MADV_DONTFORK);
    map_sigbus_install();
    m->base = base;
    m->len = (size_t)size;
    m->fd = fd;
    m->page_size = page_size;
    return 0;
}

void
file_map_close(struct file_map *m)
{
    if (m->base != NULL) {
        munmap(m->base, m->len);
    }
    free(m->chunk_state);
    memset(m, 0, sizeof(*m));
}
