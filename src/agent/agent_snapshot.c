/*
 * agent/agent_snapshot.c - crash-consistent snapshots of replicated volumes.
 *
 * A Snapshot S of volume V is the pool snapshot "V:S" of V's replica pool
 * volume on every replica that is in sync, all of them holding the same
 * data. The agent of the node that runs V's nexus takes it (it is the one
 * place every write passes through):
 *
 *   1. nexus_quiesce V: new writes are held (not failed), those in flight
 *      drain; every online child now holds the same acknowledged data,
 *   2. /ioc/v1/snapshot-take/S = {state: taking, nodes, pools}: the online
 *      children's nodes (a degraded volume: the healthy ones only),
 *   3. each of those nodes' agents (this one inline) runs volume_snapshot
 *      POOL/V name V:S and reports /ioc/v1/snapshot-replica/S/<node>,
 *   4. once every report is in (or after TAKE_WAIT_MS), nexus_resume V,
 *   5. snapshot-take/S state `taken` if every node reported ok and the
 *      quiesce was still in force at resume (nexus_resume answers
 *      -ETIMEDOUT otherwise), else `failed` with the reason.
 *
 * Writes are held for the time the replica agents need to see the request
 * and snapshot (each O(1) in its pool): typically tens of milliseconds,
 * bounded by TAKE_WAIT_MS; the nexus lifts the quiesce by itself after
 * QUIESCE_MS should this agent die in between. A single-replica volume has
 * no nexus: the pool's own snapshot is atomic, its node takes it directly.
 *
 * A failed take is final (the Snapshot's status says why; delete and apply
 * it again): a retry would need the partial pool snapshots gone first, and
 * deletion is the tombstone's job (agent_delete.c). A take left `taking`
 * by an agent that died is marked failed after TAKE_STALE_S. A replica
 * rebuilt or placed after the snapshot does not hold it; the controller
 * lists it in the Snapshot's status.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "core/log.h"
#include "lib/resource/resource.h"

#define QUIESCE_MS   10000 /* the nexus resumes by itself after this */
#define TAKE_WAIT_MS 8000  /* how long the replicas' reports are awaited (< QUIESCE_MS) */
#define TAKE_STALE_S 30    /* a take still `taking` after this was interrupted */

static int
snap_put(struct agent *a, const char *key, json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
    struct ioc_err err = {0};
    int rc = text != NULL ? ioc_etcd_put(a->etcd, key, text, 0, &err) : -ENOMEM;

    if (rc < 0) {
        IOC_WARN("agent", "node %s: %s", a->opts.node, err.msg);
    }
    free(text);
    json_decref(value);
    return rc;
}

/* volume_snapshot POOL/VOL -> POOL/VOL:SNAP; an existing one is this take's (never reused). */
static int
snap_local(struct agent *a, const char *vol, const char *snap, const char *pool,
           struct ioc_err *err)
{
    char base[160], pname[96], bdev[160];

    snprintf(base, sizeof(base), "%s/%s", pool, vol);
    ioc_snapshot_pool_name(vol, snap, pname, sizeof(pname));
    snprintf(bdev, sizeof(bdev), "%s/%s", pool, pname);
    if (agent_call(a, "bdev_list", json_pack("{s:s}", "name", bdev), NULL, NULL) == 0) {
        return 0;
    }
    return agent_call(a, "volume_snapshot", json_pack("{s:s, s:s}", "volume", base, "name",
                                                      pname), NULL, err);
}

/* Take our part and report it at snapshot-replica/S/<node>. */
static int
snap_replica(struct agent *a, const char *snap, json_t *take)
{
    const char *vol = json_string_value(json_object_get(take, "volume"));
    const char *pool = json_string_value(json_object_get(json_object_get(take, "pools"),
                                                         a->opts.node));
    struct ioc_err err = {0};
    char key[512];
    int rc;

    if (vol == NULL || pool == NULL) {
        return -EINVAL;
    }
    rc = snap_local(a, vol, snap, pool, &err);
    if (rc == 0) {
        IOC_NOTICE("agent", "snapshot %s: taken of volume %s in pool %s", snap, vol, pool);
    } else {
        IOC_WARN("agent", "snapshot %s: %s", snap, err.msg);
    }
    snprintf(key, sizeof(key), IOC_KEY_SNAP_REPLICA "%s/%s", snap, a->opts.node);
    snap_put(a, key, json_pack("{s:s, s:s, s:s}", "state", rc == 0 ? "ok" : "error", "pool",
                               pool, "message", rc == 0 ? "" : err.msg));
    return rc;
}

static bool
node_listed(json_t *take, const char *node)
{
    json_t *n;
    size_t i;

    json_array_foreach(json_object_get(take, "nodes"), i, n) {
        if (strcmp(json_string_value(n) ?: "", node) == 0) {
            return true;
        }
    }
    return false;
}

/* Replica role: a take in progress that names this node and has no report from it yet. */
static void
snap_replica_pass(struct agent *a, json_t *takes)
{
    const char *snap;
    json_t *take;
    char key[512], *text = NULL;

    json_object_foreach(takes, snap, take) {
        if (strcmp(json_string_value(json_object_get(take, "state")) ?: "", "taking") != 0 ||
            !node_listed(take, a->opts.node)) {
            continue;
        }
        snprintf(key, sizeof(key), IOC_KEY_SNAP_REPLICA "%s/%s", snap, a->opts.node);
        if (ioc_etcd_get(a->etcd, key, &text, NULL, NULL) == -ENOENT) {
            snap_replica(a, snap, take);
        }
        free(text);
        text = NULL;
    }
}

/* Every node's report in: 1; one failed: -1; still waiting: 0. */
static int
snap_reports(struct agent *a, const char *snap, json_t *nodes, char *why, size_t len)
{
    char prefix[300];
    json_t *reps = NULL, *n, *r;
    size_t i;
    int done = 1;

    snprintf(prefix, sizeof(prefix), IOC_KEY_SNAP_REPLICA "%s/", snap);
    if (cp_load(a->etcd, prefix, &reps, NULL) < 0) {
        return 0;
    }
    json_array_foreach(nodes, i, n) {
        r = json_object_get(reps, json_string_value(n));
        if (r == NULL) {
            done = done < 0 ? done : 0;
        } else if (strcmp(json_string_value(json_object_get(r, "state")) ?: "", "ok") != 0) {
            snprintf(why, len, "node %s: %s", json_string_value(n),
                     json_string_value(json_object_get(r, "message")) ?: "failed");
            done = -1;
        }
    }
    json_decref(reps);
    return done;
}

/* The online children of the nexus as nodes (and their pools) through the volume's status. */
static void
snap_online_nodes(json_t *entry, json_t *vst, json_t *nodes, json_t *pools)
{
    json_t *ch, *r;
    size_t i, j;

    json_array_foreach(json_object_get(entry, "children"), i, ch) {
        if (strcmp(json_string_value(json_object_get(ch, "state")) ?: "", "online") != 0) {
            continue;
        }
        json_array_foreach(json_object_get(vst, "replicas"), j, r) {
            if (json_equal(json_object_get(r, "uri"), json_object_get(ch, "uri")) &&
                json_is_string(json_object_get(r, "node"))) {
                json_array_append(nodes, json_object_get(r, "node"));
                json_object_set(pools, json_string_value(json_object_get(r, "node")),
                                json_object_get(r, "pool"));
            }
        }
    }
}

/* Quiesce, ask, wait, resume; the outcome goes to snapshot-take/S. */
static void
snap_orchestrate(struct agent *a, const char *snap, const char *vol, json_t *vst)
{
    json_t *list = NULL, *nodes = json_array(), *pools = json_object(), *take;
    struct ioc_err err = {0};
    char key[300], ts[32], why[600] = "";
    struct timespec t0, t1;
    int done = 0, rc;

    if (agent_call(a, "nexus_list", json_pack("{s:s}", "name", vol), &list, NULL) == 0) {
        snap_online_nodes(json_array_get(list, 0), vst, nodes, pools);
    }
    json_decref(list);
    if (json_array_size(nodes) == 0 ||
        agent_call(a, "nexus_quiesce", json_pack("{s:s, s:i}", "name", vol, "timeout_ms",
                                                 QUIESCE_MS), NULL, &err) < 0) {
        if (err.msg[0] != '\0') {
            IOC_WARN("agent", "snapshot %s: %s (retried next pass)", snap, err.msg);
        }
        json_decref(nodes);
        json_decref(pools);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ioc_resource_timestamp(ts, sizeof(ts));
    snprintf(key, sizeof(key), IOC_KEY_SNAP_TAKE "%s", snap);
    take = json_pack("{s:s, s:s, s:O, s:O, s:s, s:O}", "volume", vol, "state", "taking",
                     "nodes", nodes, "pools", pools, "creationTime", ts, "generation",
                     json_object_get(vst, "generation") ?: json_null());
    if (snap_put(a, key, json_incref(take)) < 0) {
        agent_call(a, "nexus_resume", json_pack("{s:s}", "name", vol), NULL, NULL);
        json_decref(take);
        json_decref(nodes);
        json_decref(pools);
        return; /* nobody was asked; retried next pass */
    }
    if (node_listed(take, a->opts.node)) {
        snap_replica(a, snap, take);
    }
    for (int waited = 0; waited < TAKE_WAIT_MS && done == 0; waited += 5) {
        done = snap_reports(a, snap, nodes, why, sizeof(why));
        if (done == 0) {
            usleep(5000);
        }
    }
    rc = agent_call(a, "nexus_resume", json_pack("{s:s}", "name", vol), NULL, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (done == 0) {
        snprintf(why, sizeof(why), "not every replica answered within %d ms", TAKE_WAIT_MS);
    } else if (done > 0 && rc < 0) {
        snprintf(why, sizeof(why), "%s", err.msg);
    }
    json_object_set_new(take, "state", json_string(done > 0 && rc == 0 ? "taken" : "failed"));
    json_object_set_new(take, "heldMs", json_integer(
                            (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
    if (done <= 0 || rc < 0) {
        json_object_set_new(take, "message", json_string(why));
    }
    IOC_NOTICE("agent", "snapshot %s of volume %s: %s on %zu replicas, writes held %lld ms%s%s",
               snap, vol, json_string_value(json_object_get(take, "state")),
               json_array_size(nodes),
               (long long)json_integer_value(json_object_get(take, "heldMs")),
               why[0] ? ": " : "", why);
    snap_put(a, key, take);
    json_decref(nodes);
    json_decref(pools);
}

/* One replica, no nexus: its node snapshots the pool volume directly (atomic there). */
static void
snap_single(struct agent *a, const char *snap, const char *vol, json_t *vst)
{
    json_t *r = json_array_get(json_object_get(vst, "replicas"), 0);
    struct ioc_err err = {0};
    char key[300], ts[32];
    int rc;

    if (strcmp(json_string_value(json_object_get(r, "node")) ?: "", a->opts.node) != 0 ||
        strcmp(json_string_value(json_object_get(r, "state")) ?: "", "online") != 0) {
        return;
    }
    rc = snap_local(a, vol, snap, json_string_value(json_object_get(r, "pool")) ?: "", &err);
    ioc_resource_timestamp(ts, sizeof(ts));
    snprintf(key, sizeof(key), IOC_KEY_SNAP_TAKE "%s", snap);
    snap_put(a, key, json_pack("{s:s, s:s, s:[s], s:{s:O}, s:s, s:s}", "volume", vol, "state",
                               rc == 0 ? "taken" : "failed", "nodes", a->opts.node, "pools",
                               a->opts.node, json_object_get(r, "pool"), "creationTime", ts,
                               "message", rc == 0 ? "" : err.msg));
    if (rc == 0) {
        snprintf(key, sizeof(key), IOC_KEY_SNAP_REPLICA "%s/%s", snap, a->opts.node);
        snap_put(a, key, json_pack("{s:s, s:O}", "state", "ok", "pool",
                                   json_object_get(r, "pool")));
    }
}

/* A take still `taking` long after it started: its orchestrator died midway. */
static void
snap_stale(struct agent *a, const char *snap, json_t *take)
{
    const char *ts = json_string_value(json_object_get(take, "creationTime"));
    struct tm tm = {0};
    char key[300];

    if (ts == NULL || strptime(ts, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL ||
        time(NULL) - timegm(&tm) < TAKE_STALE_S) {
        return;
    }
    take = json_deep_copy(take);
    json_object_set_new(take, "state", json_string("failed"));
    json_object_set_new(take, "message", json_string("interrupted: the nexus node's agent "
                                                     "stopped while taking it"));
    snprintf(key, sizeof(key), IOC_KEY_SNAP_TAKE "%s", snap);
    snap_put(a, key, take);
}

void
agent_snapshots(struct agent *a)
{
    json_t *snaps = NULL, *takes = NULL, *vols = NULL, *vsts = NULL, *s;
    const char *name;

    if (cp_load(a->etcd, IOC_KEY_ROOT "snapshot/", &snaps, NULL) < 0 ||
        cp_load(a->etcd, IOC_KEY_SNAP_TAKE, &takes, NULL) < 0) {
        goto out;
    }
    snap_replica_pass(a, takes);
    if (json_object_size(snaps) == 0 ||
        cp_load(a->etcd, IOC_KEY_ROOT "volume/", &vols, NULL) < 0 ||
        cp_load(a->etcd, IOC_KEY_ROOT "status/volume/", &vsts, NULL) < 0) {
        goto out;
    }
    json_object_foreach(snaps, name, s) {
        const char *vol = json_string_value(json_object_get(json_object_get(s, "spec"),
                                                           "volume"));
        json_t *vst = json_object_get(vsts, vol ?: ""), *take = json_object_get(takes, name);
        json_t *vspec = json_object_get(json_object_get(vols, vol ?: ""), "spec");
        if (vst == NULL || vspec == NULL ||
            strcmp(json_string_value(json_object_get(vst, "nexusNode")) ?: "",
                   a->opts.node) != 0) {
            continue; /* not ours to take */
        }
        if (take != NULL) {
            if (strcmp(json_string_value(json_object_get(take, "state")) ?: "", "taking") == 0) {
                snap_stale(a, name, take);
            }
        } else if (json_integer_value(json_object_get(vspec, "replicas")) == 1) {
            snap_single(a, name, vol, vst);
        } else {
            snap_orchestrate(a, name, vol, vst);
        }
    }
out:
    json_decref(snaps);
    json_decref(takes);
    json_decref(vols);
    json_decref(vsts);
}
