/*
 * agent/agent_internal.h - shared between the node agent's files; not for other subsystems.
 */
#ifndef IOC_AGENT_AGENT_INTERNAL_H
#define IOC_AGENT_AGENT_INTERNAL_H

#include "ioc/common.h"

#include <pthread.h>
#include <time.h>

#include "agent/cp.h"

struct agent {
    struct ioc_agent_opts opts;
    char host[64];
    struct ioc_etcd *etcd;
    struct ioc_etcd_watch *watch;
    int64_t lease;
    time_t last_keepalive;
    json_t *written; /* key -> last value written, so unchanged status is not rewritten */
    json_t *owned;   /* POOL/VOL -> Volume uid its owner attribute was checked to hold */
    json_t *deleted; /* volume -> tombstone, this pass (NULL: etcd did not answer) */
    volatile bool stop;
    volatile int wake;
    pthread_t thread;
    bool running;
};

/* The attribute that names the Volume (metadata.uid) a replica pool volume belongs to. */
#define AGENT_OWNER_ATTR "ioc.volume-uid"

/* agent.c */
/** Call method on this iocd (params taken); *result a new reference. */
int agent_call(struct agent *a, const char *method, json_t *params, json_t **result,
               struct ioc_err *err);
/** Put key=value (value taken) unless it is what we wrote last. */
void agent_put(struct agent *a, const char *key, json_t *value, int64_t lease);
/** Unexport (every export of its bdev) and destroy the nexus named vol. */
int agent_nexus_retire(struct agent *a, const char *vol, struct ioc_err *err);
/** The generation N of a replica bdev name VOL.gN; -1 if name is not one of vol's. */
long long agent_replica_bdev_generation(const char *name, const char *vol);

/* agent_delete.c */
/**
 * Tombstones: remove what this node holds of deleted Volumes and Snapshots.
 * Sets a->deleted for this pass: assignments of those volumes are stale and
 * must not be applied (the controller removes them on its next pass).
 */
void agent_tombstones(struct agent *a);

/* agent_snapshot.c */
/** Snapshots: take those this node orchestrates (nexus node) or holds a replica of. */
void agent_snapshots(struct agent *a);

#endif
