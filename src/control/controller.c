/*
 * control/controller.c - the controller: placement, volume status, failover.
 *
 * Leader election: every controller holds a lease (TTL 5 s by default) and
 * tries a txn "if /ioc/v1/controller/leader does not exist, put our id on
 * our lease". The one that succeeds leads until its lease lapses; the
 * others retry every pass, so one takes over within a TTL of the leader's
 * death. Every write the leader makes is a txn guarded by "leader value ==
 * our id": a deposed controller (lease expired while it was paused) writes
 * nothing, because the key is gone or holds someone else's id.
 *
 * Reconcile, once a second or when etcd changes, per Volume:
 *
 *   Pending   no replica reported online yet (or none could be placed)
 *   Online    every desired replica online, and the nexus (if any) online
 *   Degraded  some replicas online, not all
 *   Faulted   replicas placed but none online
 *
 * - placement: replicas on distinct live nodes that have an Online pool
 *   with room (thin volumes need the pool only), matching nodeSelector,
 *   least loaded first; recorded in status.replicas[] (node, pool).
 * - a replica whose node is gone is kept (state "unreachable") for the
 *   grace period, then dropped and placed again elsewhere.
 * - the nexus (replicas > 1) runs on spec.nexusNode if alive, else stays
 *   where it is, else goes to the least loaded replica node; placing or
 *   moving it bumps status.generation. With one replica there is no nexus:
 *   the replica's own export is the volume's URI.
 * - assignments /ioc/v1/assign/<node>/<volume> tell each agent what to run.
 * - once a replicated Volume is Online at generation G (every replica in
 *   sync in the nexus of G), status.establishedGeneration = G: the replica
 *   assignments carry retireBelow = G (agents drop the exports and replica
 *   bdevs of older generations) and the membership records of older
 *   generations (/ioc/v1/nexus/<volume>/<gen>) are deleted; a new nexus
 *   only ever reads the newest record, and G's was written when its nexus
 *   was created. A deleted Volume's records go with its status.
 *
 * Status is recomputed from scratch from specs, agent reports and the
 * previous status, so a new leader continues where the old one stopped.
 */
#include "ioc/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/cp.h"
#include "core/log.h"
#include "lib/resource/resource.h"

#define LEADER_KEY IOC_KEY_ROOT "controller/leader"
#define EVENTS_MAX 10

struct controller {
    struct ioc_controller_opts opts;
    char id[128];
    struct ioc_etcd *etcd;
    int64_t lease;
    bool leader;
    volatile bool stop;
    pthread_t thread;
    bool running;
};

static struct controller g_ctl;

/* What one pass reads. */
struct world {
    json_t *nodes;   /* live nodes: name -> Node */
    json_t *pools;   /* name -> Pool (spec) */
    json_t *pstatus; /* name -> pool status */
    json_t *volumes; /* name -> Volume */
    json_t *vstatus; /* name -> volume status */
    json_t *load;    /* node -> replicas placed there */
};

static void
world_free(struct world *w)
{
    json_decref(w->nodes);
    json_decref(w->pools);
    json_decref(w->pstatus);
    json_decref(w->volumes);
    json_decref(w->vstatus);
    json_decref(w->load);
}

static int
world_load(struct controller *c, struct world *w, struct ioc_err *err)
{
    json_t *st, *r;
    const char *name;
    size_t i;

    memset(w, 0, sizeof(*w));
    if (cp_load(c->etcd, IOC_KEY_ROOT "node/", &w->nodes, err) < 0 ||
        cp_load(c->etcd, IOC_KEY_ROOT "pool/", &w->pools, err) < 0 ||
        cp_load(c->etcd, IOC_KEY_ROOT "status/pool/", &w->pstatus, err) < 0 ||
        cp_load(c->etcd, IOC_KEY_ROOT "volume/", &w->volumes, err) < 0 ||
        cp_load(c->etcd, IOC_KEY_ROOT "status/volume/", &w->vstatus, err) < 0) {
        world_free(w);
        return -EIO;
    }
    w->load = json_object();
    json_object_foreach(w->vstatus, name, st) {
        json_array_foreach(json_object_get(st, "replicas"), i, r) {
            const char *n = json_string_value(json_object_get(r, "node"));
            if (n != NULL) {
                json_object_set_new(w->load, n, json_integer(json_integer_value(
                                                    json_object_get(w->load, n)) + 1));
            }
        }
    }
    return 0;
}

/* ---- guarded writes ---- */

/* Run ops only while we lead. Returns 0, -EPERM (not leader) or an etcd error. */
static int
ctl_txn(struct controller *c, const struct ioc_etcd_op *ops, size_t n)
{
    struct ioc_etcd_cmp cmp = {.key = LEADER_KEY, .target = IOC_ETCD_CMP_VALUE,
                               .result = IOC_ETCD_EQUAL, .value = c->id};
    struct ioc_err err = {0};
    bool ok = false;
    int rc;

    rc = ioc_etcd_txn(c->etcd, &cmp, 1, ops, n, NULL, 0, &ok, NULL, &err);
    if (rc < 0) {
        IOC_WARN("control", "%s", err.msg);
        return rc;
    }
    if (!ok) {
        c->leader = false;
        IOC_NOTICE("control", "%s: no longer the leader; write dropped", c->id);
        return -EPERM;
    }
    return 0;
}

static void
ctl_campaign(struct controller *c)
{
    struct ioc_etcd_cmp cmp = {.key = LEADER_KEY, .target = IOC_ETCD_CMP_CREATE,
                               .result = IOC_ETCD_EQUAL, .number = 0};
    struct ioc_etcd_op put = {.type = IOC_ETCD_OP_PUT, .key = LEADER_KEY, .value = c->id};
    struct ioc_etcd_op get = {.type = IOC_ETCD_OP_RANGE, .key = LEADER_KEY};
    struct ioc_etcd_kvs kvs = {0};
    struct ioc_err err = {0};
    bool ok = false, was = c->leader;

    if (c->lease == 0 || ioc_etcd_lease_keepalive(c->etcd, c->lease, NULL, &err) < 0) {
        c->lease = 0;
        c->leader = false;
        if (ioc_etcd_lease_grant(c->etcd, c->opts.lease_ttl_s, &c->lease, &err) < 0) {
            return;
        }
    }
    put.lease = c->lease;
    if (ioc_etcd_txn(c->etcd, &cmp, 1, &put, 1, &get, 1, &ok, &kvs, &err) < 0) {
        return;
    }
    c->leader = ok || (kvs.count == 1 && strcmp(kvs.kvs[0].value, c->id) == 0);
    ioc_etcd_kvs_free(&kvs);
    if (c->leader && !was) {
        IOC_NOTICE("control", "%s: now the leader", c->id);
    }
}

/* ---- status helpers ---- */

static void
status_event(json_t *st, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
status_event(json_t *st, const char *reason, const char *fmt, ...)
{
    json_t *events = json_object_get(st, "events");
    char msg[256], ts[32];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ioc_resource_timestamp(ts, sizeof(ts));
    if (!json_is_array(events)) {
        events = json_array();
        json_object_set_new(st, "events", events);
    }
    json_array_append_new(events, json_pack("{s:s, s:s, s:s}", "time", ts, "reason", reason,
                                            "message", msg));
    while (json_array_size(events) > EVENTS_MAX) {
        json_array_remove(events, 0);
    }
}

static void
status_condition(json_t *st, const char *type, bool ok, const char *reason, const char *msg)
{
    json_t *conds = json_object_get(st, "conditions");

    json_array_append_new(conds, json_pack("{s:s, s:s, s:s, s:s}", "type", type, "status",
                                           ok ? "True" : "False", "reason", reason, "message",
                                           msg));
}

/* ---- placement ---- */

/* A pool on node usable for vol, or NULL. */
static const char *
node_pool(struct world *w, const char *node, json_t *vspec)
{
    json_int_t size = json_integer_value(json_object_get(vspec, "size"));
    bool thin = !json_is_false(json_object_get(vspec, "thin"));
    const char *name;
    json_t *p;

    json_object_foreach(w->pools, name, p) {
        json_t *ps = json_object_get(w->pstatus, name);
        const char *pn = json_string_value(json_object_get(json_object_get(p, "spec"), "node"));
        if (pn == NULL || strcmp(pn, node) != 0 ||
            strcmp(json_string_value(json_object_get(ps, "state")) ?: "", "Online") != 0) {
            continue;
        }
        if (thin || json_integer_value(json_object_get(ps, "free")) >= size) {
            return name;
        }
    }
    return NULL;
}

static bool
replicas_have_node(json_t *reps, const char *node)
{
    json_t *r;
    size_t i;

    json_array_foreach(reps, i, r) {
        if (strcmp(json_string_value(json_object_get(r, "node")) ?: "", node) == 0) {
            return true;
        }
    }
    return false;
}

/* Add one replica on the least loaded suitable node. Returns false when none is left. */
static bool
place_one(struct world *w, json_t *vspec, json_t *reps)
{
    const char *best = NULL, *best_pool = NULL, *name;
    json_int_t best_load = 0;
    json_t *n;

    json_object_foreach(w->nodes, name, n) {
        const char *pool = node_pool(w, name, vspec);
        json_int_t load = json_integer_value(json_object_get(w->load, name));
        if (pool == NULL || replicas_have_node(reps, name) ||
            !ioc_labels_match(json_object_get(json_object_get(n, "metadata"), "labels"),
                              json_object_get(vspec, "nodeSelector"))) {
            continue;
        }
        if (best == NULL || load < best_load || (load == best_load && strcmp(name, best) < 0)) {
            best = name;
            best_pool = pool;
            best_load = load;
        }
    }
    if (best == NULL) {
        return false;
    }
    json_array_append_new(reps, json_pack("{s:s, s:s, s:s}", "node", best, "pool", best_pool,
                                          "state", "pending"));
    json_object_set_new(w->load, best, json_integer(best_load + 1));
    return true;
}

/*
 * A dropped replica's node may come back with the replica's data still in
 * its pool: remembered in status.formerReplicas so that deleting the
 * Volume names that node in its tombstone too.
 */
static void
former_add(json_t *st, const char *node)
{
    json_t *former = json_object_get(st, "formerReplicas"), *n;
    size_t i;

    if (!json_is_array(former)) {
        former = json_array();
        json_object_set_new(st, "formerReplicas", former);
    }
    json_array_foreach(former, i, n) {
        if (strcmp(json_string_value(n) ?: "", node) == 0) {
            return;
        }
    }
    json_array_append_new(former, json_string(node));
}

/* Mark unreachable replicas, drop those past the grace period, place what is missing. */
static void
ctl_replicas(struct controller *c, struct world *w, const char *vol, json_t *vspec, json_t *st,
             json_t *reports)
{
    json_t *reps = json_object_get(st, "replicas"), *r;
    json_int_t want = json_integer_value(json_object_get(vspec, "replicas"));
    size_t i;

    for (i = 0; i < json_array_size(reps);) {
        r = json_array_get(reps, i);
        const char *node = json_string_value(json_object_get(r, "node"));
        json_t *rep = json_object_get(reports, node);
        if (json_object_get(w->nodes, node) != NULL) {
            json_object_del(r, "lostSince");
            json_object_set_new(r, "state", json_string(json_string_value(
                json_object_get(rep, "state")) ?: "pending"));
            i++;
            continue;
        }
        if (json_object_get(r, "lostSince") == NULL) {
            json_object_set_new(r, "lostSince", json_integer(cp_now()));
            status_event(st, "NodeLost", "replica on node %s unreachable", node);
        }
        json_object_set_new(r, "state", json_string("unreachable"));
        if (cp_now() - json_integer_value(json_object_get(r, "lostSince")) >=
            c->opts.replica_grace_s) {
            status_event(st, "ReplicaReplaced", "replica on node %s dropped after %llds",
                         node, (long long)c->opts.replica_grace_s);
            former_add(st, node);
            json_array_remove(reps, i);
            continue;
        }
        i++;
    }
    while ((json_int_t)json_array_size(reps) < want) {
        if (!place_one(w, vspec, reps)) {
            status_condition(st, "Scheduled", false, "InsufficientNodes",
                             "not enough live nodes with an Online pool for every replica");
            return;
        }
        r = json_array_get(reps, json_array_size(reps) - 1);
        status_event(st, "ReplicaPlaced", "replica of %s on node %s, pool %s", vol,
                     json_string_value(json_object_get(r, "node")),
                     json_string_value(json_object_get(r, "pool")));
    }
    status_condition(st, "Scheduled", true, "Placed", "every replica has a node");
}

/* Choose the nexus node; bump the generation when it is placed or moved. */
static void
ctl_nexus(struct world *w, json_t *vspec, json_t *st)
{
    const char *hint = json_string_value(json_object_get(vspec, "nexusNode"));
    const char *cur = json_string_value(json_object_get(st, "nexusNode"));
    json_t *reps = json_object_get(st, "replicas"), *r;
    const char *pick = NULL;
    json_int_t best = 0;
    size_t i;

    if (hint != NULL && json_object_get(w->nodes, hint) != NULL) {
        pick = hint;
    } else if (cur != NULL && json_object_get(w->nodes, cur) != NULL) {
        pick = cur;
    } else {
        json_array_foreach(reps, i, r) {
            const char *n = json_string_value(json_object_get(r, "node"));
            json_int_t load = json_integer_value(json_object_get(w->load, n));
            if (json_object_get(w->nodes, n) != NULL && (pick == NULL || load < best)) {
                pick = n;
                best = load;
            }
        }
    }
    if (pick == NULL || (cur != NULL && strcmp(cur, pick) == 0)) {
        return;
    }
    json_object_set_new(st, "generation", json_integer(json_integer_value(
                                              json_object_get(st, "generation")) + 1));
    status_event(st, cur == NULL ? "NexusPlaced" : "NexusMoved", "nexus on node %s, "
                 "generation %lld", pick,
                 (long long)json_integer_value(json_object_get(st, "generation")));
    json_object_set_new(st, "nexusNode", json_string(pick));
}

/* ---- replica URIs and states (from the nexus when there is one) ---- */

/* The export a replica serves: VOL with one replica, else VOL@gen=G (fencing). */
static void
replica_export(const char *vol, json_t *vspec, json_t *st, char *buf, size_t len)
{
    if (json_integer_value(json_object_get(vspec, "replicas")) == 1) {
        snprintf(buf, len, "%s", vol);
    } else {
        snprintf(buf, len, "%s@gen=%lld", vol,
                 (long long)json_integer_value(json_object_get(st, "generation")));
    }
}

/* The nexus's entry for the child at uri, or NULL. */
static json_t *
nexus_child(json_t *nx, const char *uri)
{
    json_t *ch;
    size_t i;

    json_array_foreach(json_object_get(nx, "children"), i, ch) {
        if (strcmp(json_string_value(json_object_get(ch, "uri")) ?: "", uri) == 0) {
            return ch;
        }
    }
    return NULL;
}

/* Is the replica serving the export of this generation (its agent's report says so)? */
static bool
replica_ready(json_t *r, json_t *reports)
{
    json_t *rep = json_object_get(reports, json_string_value(json_object_get(r, "node")));
    const char *uri = json_string_value(json_object_get(r, "uri"));

    return uri != NULL && json_object_get(r, "lostSince") == NULL &&
           strcmp(json_string_value(json_object_get(rep, "uri")) ?: "", uri) == 0 &&
           strcmp(json_string_value(json_object_get(rep, "state")) ?: "", "online") == 0;
}

/*
 * Each live replica's URI for the current generation, and its state: with a
 * nexus, the nexus's view of that child (online, rebuilding with
 * rebuildProgress, faulted, out-of-sync; pending until it is a child);
 * without one, the replica's own report.
 */
static void
ctl_replica_states(struct world *w, const char *vol, json_t *vspec, json_t *st, json_t *reports)
{
    const char *nexus = json_string_value(json_object_get(st, "nexusNode"));
    json_t *nx = json_object_get(json_object_get(reports, nexus ?: ""), "nexus"), *r, *ch;
    bool single = json_integer_value(json_object_get(vspec, "replicas")) == 1;
    char exp[192], uri[512];
    size_t i;

    json_array_foreach(json_object_get(st, "replicas"), i, r) {
        const char *node = json_string_value(json_object_get(r, "node"));
        json_t *n = json_object_get(w->nodes, node);
        const char *nbd = json_string_value(json_object_get(json_object_get(n, "spec"), "nbd"));
        json_object_del(r, "rebuildProgress");
        if (n == NULL || nbd == NULL) {
            continue; /* unreachable: state and uri stay */
        }
        replica_export(vol, vspec, st, exp, sizeof(exp));
        snprintf(uri, sizeof(uri), "nbd://%s/%s", nbd, exp);
        json_object_set_new(r, "uri", json_string(uri));
        if (single || !json_is_array(json_object_get(nx, "children"))) {
            continue; /* the report's state (ctl_replicas) */
        }
        ch = nexus_child(nx, uri);
        if (!replica_ready(r, reports) || ch == NULL) {
            json_object_set_new(r, "state", json_string("pending"));
            continue;
        }
        json_object_set(r, "state", json_object_get(ch, "state"));
        if (json_is_number(json_object_get(ch, "rebuildProgress"))) {
            json_object_set_new(r, "rebuildProgress", json_integer((json_int_t)json_number_value(
                                                          json_object_get(ch, "rebuildProgress"))));
        }
    }
}

/* ---- assignments and phase ---- */

/*
 * The nexus part of the nexus node's assignment: `children` the replicas
 * serving this generation's export, `keep` the unreachable ones still in
 * their grace period (not to be removed: they may come back for a partial
 * rebuild), `complete` when every reachable replica is ready (a new nexus
 * is created only then, so it does not start with a full rebuild).
 */
static json_t *
assignment_nexus(json_t *vspec, json_t *st, json_t *reports)
{
    json_t *children = json_array(), *keep = json_array(), *r, *nx;
    bool complete = true;
    size_t i;

    json_array_foreach(json_object_get(st, "replicas"), i, r) {
        if (json_object_get(r, "lostSince") != NULL) {
            if (json_is_string(json_object_get(r, "uri"))) {
                json_array_append(keep, json_object_get(r, "uri"));
            }
        } else if (replica_ready(r, reports)) {
            json_array_append(children, json_object_get(r, "uri"));
        } else {
            complete = false;
        }
    }
    nx = json_pack("{s:o, s:o, s:b, s:O}", "children", children, "keep", keep, "complete",
                   complete && json_array_size(children) > 0, "generation",
                   json_object_get(st, "generation"));
    if (json_is_integer(json_object_get(vspec, "rebuildRate"))) {
        json_object_set(nx, "rebuildRate", json_object_get(vspec, "rebuildRate"));
    }
    return nx;
}

static json_t *
assignment(const char *vol, json_t *vspec, json_t *uid, json_t *st, const char *node,
           json_t *reports)
{
    json_t *reps = json_object_get(st, "replicas"), *r, *as;
    bool single = json_integer_value(json_object_get(vspec, "replicas")) == 1;
    const char *nexus = json_string_value(json_object_get(st, "nexusNode"));
    json_int_t established = json_integer_value(json_object_get(st, "establishedGeneration"));
    char exp[192];
    size_t i;

    as = json_pack("{s:s, s:O, s:O}", "volume", vol, "size", json_object_get(vspec, "size"),
                   "thin", json_object_get(vspec, "thin"));
    if (uid != NULL) {
        json_object_set(as, "uid", uid); /* the replica's owner (agent_delete.c) */
    }
    replica_export(vol, vspec, st, exp, sizeof(exp));
    json_array_foreach(reps, i, r) {
        if (strcmp(json_string_value(json_object_get(r, "node")), node) == 0) {
            json_t *rep = json_pack("{s:O, s:s, s:O}", "pool", json_object_get(r, "pool"),
                                    "export", exp, "generation",
                                    single ? json_null() : json_object_get(st, "generation"));
            if (!single && established > 1) {
                json_object_set_new(rep, "retireBelow", json_integer(established));
            }
            json_object_set_new(as, "replica", rep);
        }
    }
    if (!single && nexus != NULL && strcmp(nexus, node) == 0) {
        json_object_set_new(as, "nexus", assignment_nexus(vspec, st, reports));
    }
    return as;
}

static const char *
ctl_phase(json_t *vspec, json_t *st, json_t *reports)
{
    json_int_t want = json_integer_value(json_object_get(vspec, "replicas")), online = 0;
    json_t *reps = json_object_get(st, "replicas"), *r, *nx;
    const char *nexus = json_string_value(json_object_get(st, "nexusNode"));
    size_t i;

    json_array_foreach(reps, i, r) {
        online += strcmp(json_string_value(json_object_get(r, "state")) ?: "", "online") == 0;
    }
    if (want == 1) {
        json_t *rep = json_object_get(reports, nexus != NULL ? nexus : "");
        json_object_set(st, "uri", json_object_get(rep, "uri") ?: json_null());
        r = json_array_get(reps, 0);
        return online == 1 ? "Online"
               : strcmp(json_string_value(json_object_get(r, "state")) ?: "pending",
                        "pending") == 0 ? "Pending" : "Faulted";
    }
    nx = json_object_get(json_object_get(reports, nexus != NULL ? nexus : ""), "nexus");
    if (strcmp(json_string_value(json_object_get(nx, "state")) ?: "", "unavailable") == 0) {
        status_condition(st, "NexusReady", false, "NexusUnavailable",
                         json_string_value(json_object_get(nx, "message")));
        return "Pending";
    }
    json_object_set(st, "uri", json_object_get(nx, "uri") ?: json_null());
    if (nx == NULL || json_object_get(nx, "uri") == NULL) {
        json_array_foreach(reps, i, r) {
            const char *s = json_string_value(json_object_get(r, "state")) ?: "";
            if (strcmp(s, "unreachable") == 0 || strcmp(s, "faulted") == 0) {
                return "Faulted"; /* no nexus serving, and replicas lost */
            }
        }
        return "Pending";
    }
    return online == want ? "Online" : online > 0 ? "Degraded" : "Faulted";
}

/* ---- one volume ---- */

/* Existing keys under prefix: full key -> value text ("" with keys_only: nexus records). */
static json_t *
ctl_keys(struct controller *c, const char *prefix, bool keys_only)
{
    struct ioc_etcd_kvs kvs = {0};
    json_t *all = json_object();

    if ((keys_only ? ioc_etcd_range_keys(c->etcd, prefix, &kvs, NULL)
                   : ioc_etcd_range(c->etcd, prefix, true, &kvs, NULL)) == 0) {
        for (size_t i = 0; i < kvs.count; i++) {
            json_object_set_new(all, kvs.kvs[i].key, json_string(kvs.kvs[i].value));
        }
    }
    ioc_etcd_kvs_free(&kvs);
    return all;
}

/* The generation of a membership record key /ioc/v1/nexus/<vol>/<gen>; -1 if not vol's. */
static long long
record_generation(const char *key, const char *vol)
{
    size_t pl = strlen(IOC_KEY_ROOT_NEXUS), vl = strlen(vol);
    const char *g;
    char *end = NULL;
    long long gen;

    if (strncmp(key, IOC_KEY_ROOT_NEXUS, pl) != 0 || strncmp(key + pl, vol, vl) != 0 ||
        key[pl + vl] != '/') {
        return -1;
    }
    g = key + pl + vl + 1;
    if (*g < '0' || *g > '9') {
        return -1;
    }
    errno = 0;
    gen = strtoll(g, &end, 10);
    return errno == 0 && *end == '\0' ? gen : -1;
}

/* Is key /ioc/v1/assign/<node>/<vol>? */
static bool
assign_key_is_volume(const char *key, const char *vol)
{
    const char *last = strrchr(key, '/');

    return last != NULL && strcmp(last + 1, vol) == 0;
}

struct opbuf {
    struct ioc_etcd_op ops[64];
    char *owned[128];
    size_t nops, nowned;
};

static const char *
opbuf_keep(struct opbuf *b, char *s)
{
    if (b->nowned < IOC_ARRAY_SIZE(b->owned)) {
        b->owned[b->nowned++] = s;
    }
    return s;
}

static void
opbuf_add(struct opbuf *b, enum ioc_etcd_op_type type, const char *key, char *value)
{
    if (b->nops == IOC_ARRAY_SIZE(b->ops)) {
        free(value);
        return;
    }
    b->ops[b->nops++] = (struct ioc_etcd_op){.type = type, .key = opbuf_keep(b, strdup(key)),
                                             .value = value ? opbuf_keep(b, value) : NULL};
}

static void
opbuf_delete_prefix(struct opbuf *b, const char *prefix)
{
    opbuf_add(b, IOC_ETCD_OP_DELETE, prefix, NULL);
    if (b->ops[b->nops - 1].key != NULL && strcmp(b->ops[b->nops - 1].key, prefix) == 0) {
        b->ops[b->nops - 1].prefix = true;
    }
}

static void
opbuf_free(struct opbuf *b)
{
    for (size_t i = 0; i < b->nowned; i++) {
        free(b->owned[i]);
    }
}

/* Assignments for every node of the volume; stale ones deleted. */
static void
ctl_assign(const char *vol, json_t *vspec, json_t *uid, json_t *st, json_t *reports,
           json_t *existing, struct opbuf *b)
{
    json_t *want = json_object(), *r, *v;
    const char *nexus = json_string_value(json_object_get(st, "nexusNode")), *key;
    char k[512];
    size_t i;

    json_array_foreach(json_object_get(st, "replicas"), i, r) {
        snprintf(k, sizeof(k), IOC_KEY_ROOT "assign/%s/%s",
                 json_string_value(json_object_get(r, "node")), vol);
        json_object_set_new(want, k, json_string(json_string_value(json_object_get(r, "node"))));
    }
    if (nexus != NULL) {
        snprintf(k, sizeof(k), IOC_KEY_ROOT "assign/%s/%s", nexus, vol);
        json_object_set_new(want, k, json_string(nexus));
    }
    json_object_foreach(want, key, v) {
        json_t *as = assignment(vol, vspec, uid, st, json_string_value(v), reports);
        char *text = json_dumps(as, JSON_COMPACT | JSON_SORT_KEYS);
        json_t *have = json_object_get(existing, key);
        json_decref(as);
        if (have != NULL && strcmp(json_string_value(have), text) == 0) {
            free(text);
            continue;
        }
        opbuf_add(b, IOC_ETCD_OP_PUT, key, text);
    }
    json_object_foreach(existing, key, v) {
        if (assign_key_is_volume(key, vol) && json_object_get(want, key) == NULL) {
            opbuf_add(b, IOC_ETCD_OP_DELETE, key, NULL);
        }
    }
    json_decref(want);
}

/*
 * Once every replica is in sync in the nexus of the current generation, that
 * generation is established: older replica exports and records can go.
 */
static void
ctl_establish(const char *vol, json_t *vspec, json_t *st, const char *phase, json_t *records,
              struct opbuf *b)
{
    json_int_t gen = json_integer_value(json_object_get(st, "generation"));
    json_int_t est = json_integer_value(json_object_get(st, "establishedGeneration"));
    const char *key;
    json_t *v;

    if (json_integer_value(json_object_get(vspec, "replicas")) < 2) {
        return;
    }
    if (strcmp(phase, "Online") == 0 && gen > est) {
        est = gen;
        json_object_set_new(st, "establishedGeneration", json_integer(est));
    }
    json_object_foreach(records, key, v) {
        long long g = record_generation(key, vol);
        if (g >= 0 && g < est) {
            opbuf_add(b, IOC_ETCD_OP_DELETE, key, NULL);
        }
    }
}

static void
ctl_volume(struct controller *c, struct world *w, const char *vol, json_t *doc,
           json_t *existing, json_t *records)
{
    json_t *vspec = json_object_get(doc, "spec"), *old = json_object_get(w->vstatus, vol);
    json_t *st = old != NULL ? json_deep_copy(old) : json_object(), *reports = NULL;
    struct opbuf b = {0};
    char prefix[256], key[256];
    const char *phase;

    snprintf(prefix, sizeof(prefix), IOC_KEY_ROOT "replica/%s/", vol);
    if (cp_load(c->etcd, prefix, &reports, NULL) < 0) {
        json_decref(st);
        return;
    }
    if (!json_is_array(json_object_get(st, "replicas"))) {
        json_object_set_new(st, "replicas", json_array());
    }
    json_object_set_new(st, "conditions", json_array());
    ctl_replicas(c, w, vol, vspec, st, reports);
    ctl_nexus(w, vspec, st);
    ctl_replica_states(w, vol, vspec, st, reports);
    phase = ctl_phase(vspec, st, reports);
    if (strcmp(json_string_value(json_object_get(st, "phase")) ?: "", phase) != 0) {
        status_event(st, "Phase", "%s", phase);
        IOC_NOTICE("control", "volume %s: %s", vol, phase);
    }
    json_object_set_new(st, "phase", json_string(phase));
    ctl_establish(vol, vspec, st, phase, records, &b);
    ctl_assign(vol, vspec, json_object_get(json_object_get(doc, "metadata"), "uid"), st, reports,
               existing, &b);
    if (old == NULL || !json_equal(old, st)) {
        ioc_resource_key(IOC_KIND_VOLUME, vol, true, key, sizeof(key));
        opbuf_add(&b, IOC_ETCD_OP_PUT, key, json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS));
    }
    if (b.nops > 0) {
        ctl_txn(c, b.ops, b.nops);
    }
    opbuf_free(&b);
    json_decref(reports);
    json_decref(st);
}

/* Volumes deleted by the user: their assignments, status and membership records go too. */
static void
ctl_gc(struct controller *c, struct world *w, json_t *existing, json_t *records)
{
    struct opbuf b = {0};
    const char *key, *vol, *rkey;
    json_t *v, *rv;
    char k[256];

    json_object_foreach(existing, key, v) {
        const char *last = strrchr(key, '/');
        if (last != NULL && json_object_get(w->volumes, last + 1) == NULL) {
            opbuf_add(&b, IOC_ETCD_OP_DELETE, key, NULL);
        }
    }
    json_object_foreach(w->vstatus, vol, v) {
        if (json_object_get(w->volumes, vol) == NULL) {
            ioc_resource_key(IOC_KIND_VOLUME, vol, true, k, sizeof(k));
            opbuf_add(&b, IOC_ETCD_OP_DELETE, k, NULL);
            json_object_foreach(records, rkey, rv) {
                if (record_generation(rkey, vol) >= 0) {
                    opbuf_add(&b, IOC_ETCD_OP_DELETE, rkey, NULL);
                }
            }
        }
    }
    if (b.nops > 0) {
        ctl_txn(c, b.ops, b.nops);
    }
    opbuf_free(&b);
}

/* ---- snapshots ---- */

/*
 * A Snapshot's status from its take record (agent_snapshot.c), the
 * replicas' reports and its volume: phase Pending (not taken yet), Taking,
 * Ready or Failed; ready, size (the volume's), creationTime; replicas[]
 * {node, pool, state}: `ready` for those that hold it, `absent` for the
 * volume's current replicas that do not (rebuilt or placed after the
 * snapshot, or out of sync when it was taken).
 */
static json_t *
snapshot_status(json_t *sdoc, struct world *w, json_t *take, json_t *reps)
{
    const char *vol = json_string_value(json_object_get(json_object_get(sdoc, "spec"),
                                                       "volume")) ?: "";
    const char *state = json_string_value(json_object_get(take, "state")) ?: "";
    json_t *vdoc = json_object_get(w->volumes, vol), *vst = json_object_get(w->vstatus, vol);
    json_t *st = json_pack("{s:s, s:b}", "volume", vol, "ready", false), *list = json_array();
    json_t *n, *r;
    size_t i;

    json_object_set_new(st, "replicas", list);
    if (take == NULL) {
        json_object_set_new(st, "phase", json_string("Pending"));
        json_object_set_new(st, "message", json_string(
                                vdoc == NULL ? "its volume does not exist"
                                             : "waiting for the volume's nexus node to take it"));
        return st;
    }
    json_object_set(st, "creationTime", json_object_get(take, "creationTime"));
    if (strcmp(state, "taken") == 0) {
        json_object_set_new(st, "phase", json_string("Ready"));
        json_object_set_new(st, "ready", json_true());
        json_object_set(st, "size", json_object_get(json_object_get(vdoc, "spec"), "size")
                                        ?: json_null());
    } else {
        json_object_set_new(st, "phase", json_string(strcmp(state, "taking") == 0 ? "Taking"
                                                                                  : "Failed"));
        json_object_set(st, "message", json_object_get(take, "message") ?: json_null());
    }
    json_array_foreach(json_object_get(take, "nodes"), i, n) {
        json_t *rep = json_object_get(reps, json_string_value(n));
        bool ok = strcmp(json_string_value(json_object_get(rep, "state")) ?: "", "ok") == 0;
        json_array_append_new(list, json_pack("{s:O, s:O, s:s}", "node", n, "pool",
                                              json_object_get(json_object_get(take, "pools"),
                                                              json_string_value(n))
                                                  ?: json_null(),
                                              "state", ok ? "ready" : rep ? "failed"
                                                                          : "pending"));
    }
    json_array_foreach(json_object_get(vst, "replicas"), i, r) {
        if (!replicas_have_node(list, json_string_value(json_object_get(r, "node")) ?: "")) {
            json_array_append_new(list, json_pack("{s:O, s:O, s:s, s:s}", "node",
                                                  json_object_get(r, "node"), "pool",
                                                  json_object_get(r, "pool"), "state", "absent",
                                                  "message", "replica placed or rebuilt after "
                                                  "the snapshot, or out of sync then: it does "
                                                  "not hold it"));
        }
    }
    return st;
}

/* Status of every Snapshot; records of those gone without a tombstone. */
static void
ctl_snapshots(struct controller *c, struct world *w)
{
    json_t *snaps = NULL, *takes = NULL, *sts = NULL, *tombs = NULL, *doc, *v;
    struct opbuf b = {0};
    const char *name;
    char key[300], prefix[300];

    if (cp_load(c->etcd, IOC_KEY_ROOT "snapshot/", &snaps, NULL) < 0 ||
        cp_load(c->etcd, IOC_KEY_SNAP_TAKE, &takes, NULL) < 0 ||
        cp_load(c->etcd, IOC_KEY_ROOT "status/snapshot/", &sts, NULL) < 0 ||
        cp_load(c->etcd, IOC_KEY_TOMBSTONE "snapshot/", &tombs, NULL) < 0) {
        goto out;
    }
    json_object_foreach(snaps, name, doc) {
        json_t *reps = NULL, *st;
        snprintf(prefix, sizeof(prefix), IOC_KEY_SNAP_REPLICA "%s/", name);
        if (cp_load(c->etcd, prefix, &reps, NULL) < 0) {
            continue;
        }
        st = snapshot_status(doc, w, json_object_get(takes, name), reps);
        if (!json_equal(st, json_object_get(sts, name))) {
            ioc_resource_key(IOC_KIND_SNAPSHOT, name, true, key, sizeof(key));
            opbuf_add(&b, IOC_ETCD_OP_PUT, key, json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS));
        }
        json_decref(st);
        json_decref(reps);
    }
    /* Gone without a tombstone (removed from etcd by hand): its records, not its data. */
    json_object_foreach(takes, name, v) {
        if (json_object_get(snaps, name) == NULL && json_object_get(tombs, name) == NULL &&
            json_object_get(sts, name) == NULL) {
            json_object_set_new(sts, name, json_null());
        }
    }
    json_object_foreach(sts, name, v) {
        if (json_object_get(snaps, name) == NULL && json_object_get(tombs, name) == NULL) {
            ioc_resource_key(IOC_KIND_SNAPSHOT, name, true, key, sizeof(key));
            opbuf_add(&b, IOC_ETCD_OP_DELETE, key, NULL);
            snprintf(key, sizeof(key), IOC_KEY_SNAP_TAKE "%s", name);
            opbuf_add(&b, IOC_ETCD_OP_DELETE, key, NULL);
            snprintf(prefix, sizeof(prefix), IOC_KEY_SNAP_REPLICA "%s/", name);
            opbuf_delete_prefix(&b, prefix);
        }
    }
    if (b.nops > 0) {
        ctl_txn(c, b.ops, b.nops);
    }
out:
    opbuf_free(&b);
    json_decref(snaps);
    json_decref(takes);
    json_decref(sts);
    json_decref(tombs);
}

/* ---- tombstones ---- */

/* The nodes named in tombstone t without a cleaned record (a new array). */
static json_t *
tombstone_pending(json_t *t, json_t *cleaned, const char *kind, const char *name)
{
    json_t *pending = json_array(), *n;
    char key[512];
    size_t i;

    json_array_foreach(json_object_get(t, "nodes"), i, n) {
        snprintf(key, sizeof(key), IOC_KEY_CLEANED "%s/%s/%s", kind, name,
                 json_string_value(n) ?: "");
        if (json_object_get(cleaned, key) == NULL) {
            json_array_append(pending, n);
        }
    }
    return pending;
}

/*
 * Once every node a tombstone names has reported cleaned, the tombstone
 * and every record of the deleted Volume or Snapshot go in one txn; from
 * then on the name may be applied again.
 */
static void
ctl_tombstone_done(struct controller *c, const char *kind, const char *name)
{
    struct opbuf b = {0};
    char k[400];

    snprintf(k, sizeof(k), IOC_KEY_TOMBSTONE "%s/%s", kind, name);
    opbuf_add(&b, IOC_ETCD_OP_DELETE, k, NULL);
    snprintf(k, sizeof(k), IOC_KEY_CLEANED "%s/%s/", kind, name);
    opbuf_delete_prefix(&b, k);
    if (strcmp(kind, "volume") == 0) {
        snprintf(k, sizeof(k), IOC_KEY_ROOT "replica/%s/", name);
        opbuf_delete_prefix(&b, k);
        snprintf(k, sizeof(k), IOC_KEY_ROOT_NEXUS "%s/", name);
        opbuf_delete_prefix(&b, k);
        ioc_resource_key(IOC_KIND_VOLUME, name, true, k, sizeof(k));
        opbuf_add(&b, IOC_ETCD_OP_DELETE, k, NULL);
    } else {
        snprintf(k, sizeof(k), IOC_KEY_SNAP_TAKE "%s", name);
        opbuf_add(&b, IOC_ETCD_OP_DELETE, k, NULL);
        snprintf(k, sizeof(k), IOC_KEY_SNAP_REPLICA "%s/", name);
        opbuf_delete_prefix(&b, k);
        ioc_resource_key(IOC_KIND_SNAPSHOT, name, true, k, sizeof(k));
        opbuf_add(&b, IOC_ETCD_OP_DELETE, k, NULL);
    }
    if (ctl_txn(c, b.ops, b.nops) == 0) {
        IOC_NOTICE("control", "%s %s: removed from every node; its records are gone", kind, name);
    }
    opbuf_free(&b);
}

static void
ctl_tombstones(struct controller *c)
{
    static const char *const kinds[] = {"volume", "snapshot"};
    json_t *cleaned = ctl_keys(c, IOC_KEY_CLEANED, true), *tombs, *t;
    const char *name;
    char prefix[64];

    for (size_t k = 0; k < IOC_ARRAY_SIZE(kinds) && c->leader; k++) {
        snprintf(prefix, sizeof(prefix), IOC_KEY_TOMBSTONE "%s/", kinds[k]);
        if (cp_load(c->etcd, prefix, &tombs, NULL) < 0) {
            continue;
        }
        json_object_foreach(tombs, name, t) {
            json_t *pending = tombstone_pending(t, cleaned, kinds[k], name);
            if (json_array_size(pending) == 0) {
                ctl_tombstone_done(c, kinds[k], name);
            }
            json_decref(pending);
        }
        json_decref(tombs);
    }
    json_decref(cleaned);
}

static void
ctl_reconcile(struct controller *c)
{
    struct ioc_err err = {0};
    struct world w;
    json_t *existing, *records, *doc;
    const char *vol;

    if (world_load(c, &w, &err) < 0) {
        return;
    }
    existing = ctl_keys(c, IOC_KEY_ROOT "assign/", false);
    records = ctl_keys(c, IOC_KEY_ROOT_NEXUS, true);
    json_object_foreach(w.volumes, vol, doc) {
        if (!c->leader) {
            break;
        }
        ctl_volume(c, &w, vol, doc, existing, records);
    }
    if (c->leader) {
        ctl_gc(c, &w, existing, records);
        ctl_snapshots(c, &w);
        ctl_tombstones(c);
    }
    json_decref(records);
    json_decref(existing);
    world_free(&w);
}

static void *
ctl_thread(void *arg)
{
    struct controller *c = arg;

    while (!c->stop) {
        ctl_campaign(c);
        if (c->leader) {
            ctl_reconcile(c);
        }
        cp_sleep(&c->stop, 1000);
    }
    return NULL;
}

int
ioc_controller_start(const struct ioc_controller_opts *opts, struct ioc_err *err)
{
    struct controller *c = &g_ctl;
    char host[64] = "";
    int rc;

    memset(c, 0, sizeof(*c));
    c->opts = *opts;
    if (c->opts.lease_ttl_s <= 0) {
        c->opts.lease_ttl_s = 5;
    }
    gethostname(host, sizeof(host) - 1);
    snprintf(c->id, sizeof(c->id), "%s", opts->id != NULL ? opts->id : "");
    if (c->id[0] == '\0') {
        snprintf(c->id, sizeof(c->id), "%s:%d", host, (int)getpid());
    }
    rc = ioc_etcd_create(opts->etcd, &c->etcd, err);
    if (rc < 0) {
        return rc;
    }
    rc = pthread_create(&c->thread, NULL, ctl_thread, c);
    if (rc != 0) {
        ioc_etcd_destroy(c->etcd);
        return ioc_err_set(err, -rc, "controller: cannot start its thread");
    }
    c->running = true;
    IOC_NOTICE("control", "controller %s started (replica grace %llds)", c->id,
               (long long)c->opts.replica_grace_s);
    return 0;
}

void
ioc_controller_stop(void)
{
    struct controller *c = &g_ctl;

    if (!c->running) {
        return;
    }
    c->stop = true;
    pthread_join(c->thread, NULL);
    if (c->lease != 0) {
        ioc_etcd_lease_revoke(c->etcd, c->lease, NULL); /* hand over leadership at once */
    }
    ioc_etcd_destroy(c->etcd);
    c->running = false;
}
