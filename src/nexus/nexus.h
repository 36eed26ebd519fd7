/*
 * nexus/nexus.h - the per-volume controller: a bdev that mirrors IO to N
 * children (local bdevs or remote replicas reached through nbd:// URIs),
 * faults failing children, and rebuilds returning or new ones while IO
 * continues. See docs/nexus.md.
 *
 * Threading: a nexus belongs to one reactor (its owner). The control
 * functions below are called from a non-reactor thread (RPC, main) and wait
 * for the owner with ioc_reactor_call_sync(), or, in unit tests that drive a
 * local reactor by hand, from that reactor's own thread (then they run
 * inline). IO may be submitted on any reactor; it is forwarded to the owner.
 */
#ifndef IOC_NEXUS_NEXUS_H
#define IOC_NEXUS_NEXUS_H

#include "ioc/common.h"

#include <jansson.h>

#include "core/reactor.h"
#include "lib/err.h"

#define IOC_NEXUS_MAX_CHILDREN        8
#define IOC_NEXUS_DEFAULT_SEGMENT     (1024u * 1024)
#define IOC_NEXUS_CHILD_TIMEOUT_S     5  /* io_timeout of the nbd clients made for URIs */

struct ioc_nexus;

struct ioc_nexus_opts {
    const char *name;            /* bdev name of the nexus */
    uint64_t size;               /* 0: the smallest child */
    const char *const *children; /* bdev names or nbd:// URIs */
    unsigned nr_children;
    uint64_t generation;         /* fencing epoch; refused if older than the recorded one */
    const char *state_path;      /* membership file; NULL: the global state dir, else memory */
    uint64_t segment_size;       /* dirty-log and rebuild granularity; 0: 1 MiB */
    uint32_t io_timeout_s;       /* for nbd:// children; 0: IOC_NEXUS_CHILD_TIMEOUT_S */
    uint64_t rebuild_rate;       /* bytes/s, 0 = unlimited */
    bool rebuild_verify;         /* compare every copied extent after the copy */
    bool no_auto_return;         /* do not probe faulted children and bring them back */
    struct ioc_reactor *reactor; /* owner; NULL: ioc_reactor_next() */
};

/**
 * Create a nexus and register it as a bdev. If the state file exists, the
 * recorded membership wins: children recorded faulted come back out of sync
 * with their dirty log (partial rebuild); a generation older than the
 * recorded one is refused (-ESTALE). Returns 0 or a negative errno with err
 * filled: -EINVAL, -ENOENT (no such bdev), -EEXIST, -ESTALE, -ENODEV (no
 * child could be opened), -EIO (the state file cannot be written).
 */
int ioc_nexus_create(const struct ioc_nexus_opts *opts, struct ioc_err *err);

/** Delete the nexus bdev; with purge also its state file. -EBUSY while exported. */
int ioc_nexus_destroy(const char *name, bool purge, struct ioc_err *err);

/** Every nexus (or the named one) as a JSON array (new reference). */
int ioc_nexus_list(const char *name, json_t **out, struct ioc_err *err);

/** Membership changes. A child is named by its URI or bdev name. */
int ioc_nexus_child_add(const char *name, const char *uri, struct ioc_err *err);
int ioc_nexus_child_remove(const char *name, const char *uri, struct ioc_err *err);
int ioc_nexus_child_fault(const char *name, const char *uri, struct ioc_err *err);
int ioc_nexus_child_online(const char *name, const char *uri, struct ioc_err *err);

/**
 * Hold every new write, zeroing and unmap of the nexus (they wait, they do
 * not fail) and wait until the writes already in flight completed, so every
 * child holds the same data and nothing changes until ioc_nexus_resume():
 * the point for a crash-consistent snapshot of every replica. Reads and
 * flushes go on. After timeout_ms (0: 10 s) the writes resume by themselves
 * and the next ioc_nexus_resume() says so. Control thread (or the owner in
 * tests). Returns 0 once drained, or -ENOENT, -EINVAL (not a nexus),
 * -EBUSY (already quiesced), -ETIMEDOUT (writes in flight did not drain
 * within the timeout; nothing is held then), -ENOMEM.
 */
int ioc_nexus_quiesce(const char *name, uint32_t timeout_ms, struct ioc_err *err);

/**
 * Release the writes held since ioc_nexus_quiesce(). Returns 0 when they
 * were still held (so everything done in between saw a still volume),
 * -ETIMEDOUT when the quiesce had expired first (writes already went on),
 * -EINVAL when the nexus was not quiesced, -ENOENT.
 */
int ioc_nexus_resume(const char *name, struct ioc_err *err);

/**
 * Create the replica bdev `name` of generation `generation` on base (see
 * nexus_replica.c): IO through replica bdevs of older generations of the
 * same base is rejected with EPERM from now on. -ESTALE if a newer
 * generation is recorded. Control thread.
 */
int ioc_replica_create(const char *name, const char *base, uint64_t generation,
                       struct ioc_err *err);

/** Default directory for state files (`iocd --state-dir`); NULL: keep membership in memory. */
void ioc_nexus_set_state_dir(const char *dir);

/**
 * Where membership records go instead of the state file (`iocd --etcd`:
 * src/agent/nexus_store.c puts them in etcd). Called on each nexus's writer
 * thread (put) or the control thread (get); must block until the record is
 * durable. `name` is the record's name (the state file's, without
 * "nexus-" and ".json"). put of generation G must never overwrite a record
 * of a newer generation; get returns the newest (-ENOENT: none). The
 * state path (or --state-dir) still decides whether a nexus is recorded.
 */
struct ioc_nexus_store {
    int (*put)(const char *name, uint64_t generation, const char *text, struct ioc_err *err);
    int (*get)(const char *name, char **text, struct ioc_err *err); /* text: malloc'd */
};

/** Install the store (NULL: files). Before any nexus is created. */
void ioc_nexus_set_store(const struct ioc_nexus_store *store);

#endif
