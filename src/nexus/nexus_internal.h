/*
 * nexus/nexus_internal.h - shared between the nexus files; not for other subsystems.
 */
#ifndef IOC_NEXUS_NEXUS_INTERNAL_H
#define IOC_NEXUS_NEXUS_INTERNAL_H

#include "ioc/common.h"

#include <pthread.h>

#include "bdev/bdev_module.h"
#include "nexus/nexus.h"

/*
 * Child states (see the diagram in nexus_child.c). Adding a state? update
 * g_child_state_names and nexus_child_gets_writes().
 */
enum nexus_child_state {
    NEXUS_CHILD_ONLINE = 0,  /* in sync: gets reads and writes */
    NEXUS_CHILD_OUT_OF_SYNC, /* reachable, waits for a rebuild; no IO; dirty log grows */
    NEXUS_CHILD_REBUILDING,  /* gets every write; the rebuild copies its dirty segments */
    NEXUS_CHILD_FAULTED,     /* failed or faulted by RPC; no IO; dirty log grows */
    NEXUS_CHILD_REMOVING,    /* leaving: no new IO; freed once nothing is in flight */
};

enum nexus_state {
    NEXUS_ONLINE = 0, /* every child online */
    NEXUS_DEGRADED,   /* at least one online child, not all */
    NEXUS_FAULTED,    /* no online child: IO fails with EIO (final) */
};

struct nexus_rebuild_stats {
    bool full;
    uint64_t segments_total;   /* dirty segments when it started */
    uint64_t segments_done;
    uint64_t segments_copied;  /* segments that needed data or zeroes written */
    uint64_t bytes_copied;     /* data bytes */
    uint64_t bytes_zeroed;     /* holes written as zeroes */
    uint64_t start_ns, end_ns;
    int result;                /* 0, or why it stopped */
    bool running;
};

struct nexus_rebuild;

struct nexus_child {
    struct ioc_nexus *nexus;
    unsigned slot;
    char uri[256];             /* as given: a bdev name or an nbd:// URI */
    char bdev_name[128];
    struct ioc_bdev *bdev;     /* our reference; NULL when it could not be opened */
    bool owns_bdev;            /* an nbd client made for a URI, deleted with the child */
    enum nexus_child_state state;
    bool admin_fault;          /* faulted by RPC or by a verify mismatch: no auto return */
    bool last_in_sync;         /* the last online child when the nexus faulted: has every ack */
    uint64_t *dirty;           /* segments this child must get before it is in sync */
    uint64_t inflight;         /* child IOs submitted and not completed */
    uint64_t io_errors;
    uint64_t faults;
    int last_error;
    bool probing;
    uint64_t next_probe_ns;
    struct nexus_rebuild *rebuild;
    struct nexus_rebuild_stats rb_stats;
};

/* A range of the nexus that writes may not touch while the rebuild copies it. */
struct nexus_range_lock {
    uint64_t lo, hi;
    bool held;
    struct nexus_range_lock *next;
    struct nexus_io *waiters, *waiters_tail; /* writes parked until release */
    void (*acquired)(struct nexus_range_lock *lock);
};

/* Per-IO state in io->module_ctx. */
struct nexus_io {
    struct ioc_bdev_io *io;
    struct nexus_io *prev, *next; /* in-flight write list */
    struct nexus_io *wait_next;   /* lock waiters / ack waiters */
    struct ioc_timer *retry;
    uint64_t version;             /* membership version the ack waits for */
    int remaining;
    int ok;                       /* online children that completed it */
    int status;
    unsigned next_slot;           /* resumable fan-out */
    unsigned tries;
    bool foreign;
    bool listed;
};
_Static_assert(sizeof(struct nexus_io) <= IOC_BDEV_IO_CTX_MAX, "nexus_io too large");

struct nexus_persist;

struct ioc_nexus {
    struct ioc_bdev bdev;
    struct ioc_reactor *reactor;
    uint64_t generation;
    uint64_t segment_size;
    uint64_t nseg;
    uint32_t io_timeout_s;
    uint64_t rebuild_rate;
    bool rebuild_verify;
    bool auto_return;
    bool supports[IOC_IO_TYPE_COUNT];
    enum nexus_state state;
    struct nexus_child *children[IOC_NEXUS_MAX_CHILDREN];
    unsigned rr;
    uint64_t child_seq;           /* for names of nbd clients made for URIs */

    /* Membership versions: an ack waits until persisted >= the version it saw. */
    uint64_t version;
    uint64_t persisted;
    struct nexus_persist *persist;
    struct ioc_deferred persist_kick;
    struct nexus_io *ack_wait, *ack_wait_tail;

    /*
     * Segments whose latest writes no FLUSH has made durable yet: written
     * since the last flush was submitted (unflushed), or covered only by a
     * flush still in flight (flushing). A child that fails gets both in its
     * dirty log: a replica that crashes may lose what it did not flush.
     */
    uint64_t *unflushed;
    uint64_t *flushing;
    unsigned flushes_inflight;

    struct nexus_io *inflight;    /* writes between fan-out and completion */
    struct nexus_range_lock *locks;
    unsigned locks_pending;

    /* Quiesce (nexus_quiesce.c): a lock over the whole nexus that holds new writes. */
    struct nexus_range_lock quiesce_lock;
    struct ioc_timer *quiesce_timer; /* lifts it after the caller's timeout */
    bool quiesced;                   /* quiesce_lock is taken (held or draining) */
    bool quiesce_expired;            /* the timer lifted it before nexus_resume */
    uint64_t quiesce_since_ns;

    struct ioc_poller *poller;
    bool stopping;
    bool purge;                   /* destroy removes the state file */
    bool reactor_gone;            /* the owner stopped (daemon shutdown): run inline */

    /* Counters (owner reactor; read by nexus_list on it). */
    uint64_t st_reads, st_writes, st_flushes, st_other, st_errors;
    uint64_t st_read_retries, st_ack_waits, st_lock_waits;

    struct ioc_nexus *list_next;  /* g_nexus_list */
};

/* nexus.c */
const char *nexus_state_name(enum nexus_state s);
void nexus_update_state(struct ioc_nexus *nx);
unsigned nexus_online_count(const struct ioc_nexus *nx);
void nexus_membership_changed(struct ioc_nexus *nx);
int nexus_run_sync(struct ioc_nexus *nx, void (*fn)(void *arg), void *arg);
int nexus_get(const char *name, struct ioc_nexus **out, struct ioc_err *err);
void nexus_put(struct ioc_nexus *nx);

/* nexus_child.c */
const char *nexus_child_state_name(enum nexus_child_state s);
void nexus_child_set_state(struct nexus_child *c, enum nexus_child_state s, const char *why);
bool nexus_child_gets_writes(const struct nexus_child *c);
void nexus_child_fail(struct nexus_child *c, const struct ioc_bdev_io *io, int rc);
void nexus_child_check_invariants(const struct nexus_child *c);
int nexus_child_open(struct ioc_nexus *nx, const char *uri, struct nexus_child **out,
                     struct ioc_err *err);
void nexus_child_close(struct nexus_child *c);
int nexus_child_reopen(struct ioc_nexus *nx, const char *uri, struct ioc_err *err);
struct nexus_child *nexus_child_find(struct ioc_nexus *nx, const char *uri);
void nexus_child_maybe_rebuild(struct ioc_nexus *nx);
enum ioc_poll_result nexus_child_poll(void *arg);
json_t *nexus_child_json(const struct nexus_child *c);

/* nexus_io.c */
void nexus_io_submit(struct ioc_bdev_io *io);
void nexus_io_persisted(struct ioc_nexus *nx);
bool nexus_io_overlaps_inflight(const struct ioc_nexus *nx, uint64_t lo, uint64_t hi);
bool nexus_lock_acquire(struct ioc_nexus *nx, struct nexus_range_lock *lock);
void nexus_lock_release(struct ioc_nexus *nx, struct nexus_range_lock *lock);

/* nexus_dirty.c */
uint64_t *nexus_dirty_alloc(uint64_t nseg, bool full);
bool nexus_dirty_mark(struct ioc_nexus *nx, uint64_t *map, uint64_t offset, uint64_t length);
bool nexus_dirty_merge(const struct ioc_nexus *nx, uint64_t *dst, const uint64_t *src);
void nexus_dirty_zero(const struct ioc_nexus *nx, uint64_t *map);
bool nexus_dirty_test(const uint64_t *map, uint64_t seg);
void nexus_dirty_clear(uint64_t *map, uint64_t seg);
uint64_t nexus_dirty_count(const uint64_t *map, uint64_t nseg);
int64_t nexus_dirty_next(const uint64_t *map, uint64_t nseg, uint64_t from);
char *nexus_dirty_encode(const uint64_t *map, uint64_t nseg);
int nexus_dirty_decode(const char *hex, uint64_t *map, uint64_t nseg);

/* nexus_persist.c */
struct nexus_saved_child {
    char uri[256];
    char state[32];
    uint64_t *dirty;   /* owned; NULL for online children */
};
struct nexus_saved {
    uint64_t generation;
    uint64_t size;
    uint64_t segment_size;
    unsigned nr_children;
    struct nexus_saved_child children[IOC_NEXUS_MAX_CHILDREN];
};
int nexus_persist_load(const char *path, uint64_t nseg, struct nexus_saved *out,
                       struct ioc_err *err);
void nexus_saved_free(struct nexus_saved *s);
int nexus_persist_start(struct ioc_nexus *nx, const char *path, struct ioc_err *err);
void nexus_persist_request(struct ioc_nexus *nx);
void nexus_persist_stop(struct ioc_nexus *nx, bool purge);
bool nexus_persist_durable(const struct ioc_nexus *nx);
json_t *nexus_persist_json(struct ioc_nexus *nx);

/* nexus_quiesce.c */
void nexus_quiesce_stop(struct ioc_nexus *nx);
json_t *nexus_quiesce_json(const struct ioc_nexus *nx);

/* nexus_rebuild.c */
int nexus_rebuild_start(struct nexus_child *c);
void nexus_rebuild_stop(struct nexus_child *c, int why);
json_t *nexus_rebuild_json(const struct nexus_child *c);

#endif
