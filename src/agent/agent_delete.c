/*
 * agent/agent_delete.c - remove what this node holds of deleted Volumes and Snapshots.
 *
 * The rule: data is deleted only when a tombstone names it. `iocctl delete
 * volume V` replaces /ioc/v1/volume/V by /ioc/v1/tombstone/volume/V
 * ({uid, nodes}) in one etcd transaction, and `apply` refuses to create V
 * again while that tombstone exists. So a tombstone read from etcd proves
 * the Volume of that uid is gone, and the absence of a Volume never does:
 * an etcd read that failed, a stale read or an apply racing the agent can
 * at worst delay a deletion, never cause one. On top of that, a replica
 * pool volume is deleted only when its owner attribute (AGENT_OWNER_ATTR,
 * set when the replica was made) equals the tombstone's uid; one without
 * the attribute only by a tombstone without a uid (a Volume applied before
 * uids existed).
 *
 * For a Volume tombstone, this node removes, in order: the nexus V (its
 * exports first), every NBD export and iSCSI target of V's bdevs, the
 * replica bdevs V.gN, the replica pool volume POOL/V, and the pool
 * snapshots "V:*" in its parent chain (leaf first, so none is merged into
 * another; "V:*" snapshots of another V of another uid are not touched). For a Snapshot tombstone {volume V}: the exports of POOL/V:S
 * and the pool snapshot itself (merged into its child, the volume).
 * Once nothing is left it writes /ioc/v1/cleaned/<kind>/<name>/<node>
 * (not on its lease: it must outlive the node), and the controller drops
 * the tombstone when every node it names has done so. A node that is down
 * keeps the tombstone alive and cleans up when its agent comes back.
 *
 * Every step is retried each pass (a bdev still held by a draining
 * connection answers -EBUSY once), and every pass re-reads the state, so a
 * crash midway converges the same way.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_internal.h"
#include "core/log.h"
#include "lib/resource/resource.h"

/* What a tombstone covers on this node. */
struct doomed {
    const char *kind;  /* "volume" or "snapshot" */
    const char *vol;   /* the volume */
    const char *snap;  /* Snapshot tombstones: the snapshot; NULL for volumes */
    json_t *uid;       /* Volume tombstones: its uid (may be NULL) */
    int64_t rev;       /* the tombstone's mod revision */
    json_t *bdevs;     /* bdev name -> true: pool volumes and snapshots to delete */
};

static bool
owner_matches(json_t *entry, json_t *uid)
{
    json_t *have = json_object_get(json_object_get(entry, "attrs"), AGENT_OWNER_ATTR);

    return json_is_string(uid) ? json_equal(have, uid) : have == NULL;
}

static bool
has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/*
 * The snapshots "V:*" under the doomed volume entry v (its parent chain, in
 * the same pool). Snapshots "V:*" of another volume of that name (another
 * uid) are not in it and stay.
 */
static void
doomed_ancestors(struct doomed *d, json_t *list, json_t *v, const char *prefix)
{
    json_t *x;
    size_t i;

    for (int depth = 0; depth < 64 && json_is_string(json_object_get(v, "parent")); depth++) {
        json_t *parent = NULL;
        json_array_foreach(list, i, x) {
            if (json_equal(json_object_get(x, "pool"), json_object_get(v, "pool")) &&
                json_equal(json_object_get(x, "name"), json_object_get(v, "parent"))) {
                parent = x;
            }
        }
        if (parent == NULL ||
            !has_prefix(json_string_value(json_object_get(parent, "name")), prefix)) {
            return;
        }
        json_object_set(d->bdevs, json_string_value(json_object_get(parent, "bdev")), parent);
        v = parent;
    }
}

/* Fill d->bdevs from volume_list; returns the list (new reference) or NULL. */
static json_t *
doomed_scan(struct agent *a, struct doomed *d)
{
    json_t *list = NULL, *x;
    char snapname[128], prefix[80];
    size_t i;

    if (agent_call(a, "volume_list", NULL, &list, NULL) < 0) {
        return NULL;
    }
    json_object_clear(d->bdevs);
    snprintf(prefix, sizeof(prefix), "%s:", d->vol);
    if (d->snap != NULL) {
        ioc_snapshot_pool_name(d->vol, d->snap, snapname, sizeof(snapname));
    }
    json_array_foreach(list, i, x) {
        const char *name = json_string_value(json_object_get(x, "name")) ?: "";
        bool snapshot = json_is_true(json_object_get(x, "snapshot")), hit;
        if (d->snap != NULL) {
            hit = snapshot && strcmp(name, snapname) == 0;
        } else if (!snapshot) {
            hit = strcmp(name, d->vol) == 0 && owner_matches(x, d->uid);
            if (hit) {
                doomed_ancestors(d, list, x, prefix);
            }
        } else {
            /* a leaf "V:*" left over (its volume went in an earlier pass) */
            hit = has_prefix(name, prefix) && json_integer_value(json_object_get(x,
                                                                                 "children")) == 0;
        }
        if (hit) {
            json_object_set(d->bdevs, json_string_value(json_object_get(x, "bdev")), x);
        }
    }
    return list;
}

/* Does the bdev belong to what d deletes (its pool volumes, or a replica bdev V.gN)? */
static bool
doomed_bdev(const struct doomed *d, const char *bdev)
{
    if (bdev == NULL) {
        return false;
    }
    if (json_object_get(d->bdevs, bdev) != NULL) {
        return true;
    }
    return d->snap == NULL && agent_replica_bdev_generation(bdev, d->vol) >= 0;
}

/* Unexport every NBD export and iSCSI target over a doomed bdev. Returns how many remain. */
static int
doomed_unexport(struct agent *a, const struct doomed *d)
{
    json_t *list = NULL, *x, *lun;
    int left = 0;
    size_t i, j;

    agent_call(a, "nbd_export_list", NULL, &list, NULL);
    json_array_foreach(list, i, x) {
        if (doomed_bdev(d, json_string_value(json_object_get(x, "bdev")))) {
            left += agent_call(a, "nbd_export_remove", json_pack("{s:O}", "name",
                                                                 json_object_get(x, "name")),
                               NULL, NULL) < 0;
        }
    }
    json_decref(list);
    list = NULL;
    if (agent_call(a, "iscsi_target_list", NULL, &list, NULL) < 0) {
        return left; /* no iSCSI in this iocd */
    }
    json_array_foreach(list, i, x) {
        json_array_foreach(json_object_get(x, "luns"), j, lun) {
            if (doomed_bdev(d, json_string_value(json_object_get(lun, "bdev")))) {
                left += agent_call(a, "iscsi_target_delete", json_pack("{s:O}", "iqn",
                                                                       json_object_get(x, "iqn")),
                                   NULL, NULL) < 0;
                break;
            }
        }
    }
    json_decref(list);
    return left;
}

/* Delete the replica bdevs V.gN. Returns how many remain. */
static int
doomed_replica_bdevs(struct agent *a, const struct doomed *d)
{
    json_t *list = NULL, *x;
    int left = 0;
    size_t i;

    if (d->snap != NULL || agent_call(a, "bdev_list", NULL, &list, NULL) < 0) {
        return 0;
    }
    json_array_foreach(list, i, x) {
        const char *name = json_string_value(json_object_get(x, "name"));
        if (agent_replica_bdev_generation(name, d->vol) >= 0) {
            left += agent_call(a, "bdev_delete", json_pack("{s:s}", "name", name), NULL,
                               NULL) < 0;
        }
    }
    json_decref(list);
    return left;
}

/*
 * Delete the doomed pool volumes: volumes first, then snapshots without
 * children (a chain V:s1 <- V:s2 <- V goes V, s2, s1), rescanning between
 * rounds. Returns how many remain.
 */
static int
doomed_pool_volumes(struct agent *a, struct doomed *d)
{
    struct ioc_err err = {0};
    json_t *list = NULL, *x;
    const char *bdev;
    int left = 0;

    for (int round = 0; round < 2 * IOC_REPLICAS_MAX + 8; round++) {
        bool progress = false;
        json_decref(list);
        list = doomed_scan(a, d);
        if (list == NULL) {
            return 1;
        }
        left = (int)json_object_size(d->bdevs);
        json_object_foreach(d->bdevs, bdev, x) {
            bool snapshot = json_is_true(json_object_get(x, "snapshot"));
            if ((snapshot && d->snap == NULL &&
                 json_integer_value(json_object_get(x, "children")) > 0)) {
                continue; /* its child first */
            }
            if (agent_call(a, "volume_delete", json_pack("{s:s}", "volume", bdev), NULL,
                           &err) == 0) {
                IOC_NOTICE("agent", "%s %s deleted: %s %s removed", d->kind,
                           d->snap != NULL ? d->snap : d->vol,
                           snapshot ? "pool snapshot" : "replica", bdev);
                progress = true;
            } else {
                IOC_INFO("agent", "%s %s: %s (retried next pass)", d->kind,
                         d->snap != NULL ? d->snap : d->vol, err.msg);
            }
            ioc_err_clear(&err);
        }
        if (!progress) {
            break;
        }
    }
    json_decref(list);
    return left;
}

/* Report that this node holds nothing of it any more; forget what we wrote for it. */
static void
doomed_done(struct agent *a, const struct doomed *d, const char *name)
{
    struct ioc_err err = {0};
    char key[512], tkey[400];
    bool ok = false;

    if (d->snap == NULL) {
        snprintf(key, sizeof(key), IOC_KEY_ROOT "replica/%s/%s", d->vol, a->opts.node);
        if (json_object_get(a->written, key) != NULL) {
            ioc_etcd_delete(a->etcd, key, false, NULL, NULL);
            json_object_del(a->written, key);
        }
    }
    /*
     * Only while this very tombstone exists (its mod revision), and only
     * once (a put each pass would wake every watcher each pass): a record
     * written after the controller dropped the tombstone would outlive it
     * and vouch for this node at a later deletion of the same name.
     */
    snprintf(tkey, sizeof(tkey), IOC_KEY_TOMBSTONE "%s/%s", d->kind, name);
    snprintf(key, sizeof(key), IOC_KEY_CLEANED "%s/%s/%s", d->kind, name, a->opts.node);
    struct ioc_etcd_cmp cmps[] = {
        {.key = tkey, .target = IOC_ETCD_CMP_MOD, .result = IOC_ETCD_EQUAL, .number = d->rev},
        {.key = key, .target = IOC_ETCD_CMP_CREATE, .result = IOC_ETCD_EQUAL, .number = 0},
    };
    struct ioc_etcd_op put = {.type = IOC_ETCD_OP_PUT, .key = key, .value = "{}"};
    if (ioc_etcd_txn(a->etcd, cmps, 2, &put, 1, NULL, 0, &ok, NULL, &err) < 0) {
        IOC_WARN("agent", "node %s: %s", a->opts.node, err.msg);
    } else if (ok) {
        IOC_NOTICE("agent", "%s %s: nothing of it left on node %s", d->kind, name,
                   a->opts.node);
    }
}

static void
agent_tombstone(struct agent *a, struct doomed *d, const char *name)
{
    json_t *list = NULL;
    int left = 0;
    const char *owned;
    json_t *v;
    void *tmp;

    if (d->snap == NULL && agent_call(a, "nexus_list", json_pack("{s:s}", "name", d->vol),
                                      &list, NULL) == 0) {
        left += agent_nexus_retire(a, d->vol, NULL) < 0; /* no new V exists: it is the old */
    }
    json_decref(list);
    list = doomed_scan(a, d);
    if (list == NULL) {
        return;
    }
    json_decref(list);
    left += doomed_unexport(a, d);
    left += doomed_replica_bdevs(a, d);
    left += doomed_pool_volumes(a, d);
    if (d->snap == NULL) {
        json_object_foreach_safe(a->owned, tmp, owned, v) {
            const char *slash = strchr(owned, '/');
            if (slash != NULL && strcmp(slash + 1, d->vol) == 0) {
                json_object_del(a->owned, owned);
            }
        }
    }
    if (left == 0) {
        doomed_done(a, d, name);
    }
}

/* Every tombstone of kind: name -> {"t": tombstone, "rev": mod revision}; NULL if etcd failed. */
static json_t *
tombstones_load(struct agent *a, const char *kind)
{
    struct ioc_etcd_kvs kvs = {0};
    json_t *all;
    char prefix[64];

    snprintf(prefix, sizeof(prefix), IOC_KEY_TOMBSTONE "%s/", kind);
    if (ioc_etcd_range(a->etcd, prefix, true, &kvs, NULL) < 0) {
        return NULL;
    }
    all = json_object();
    for (size_t i = 0; i < kvs.count; i++) {
        json_t *t = json_loads(kvs.kvs[i].value, 0, NULL);
        const char *name = kvs.kvs[i].key + strlen(prefix);
        if (json_is_object(t) && name[0] != '\0' && strchr(name, '/') == NULL) {
            json_object_set_new(all, name, json_pack("{s:o, s:I}", "t", t, "rev",
                                                     (json_int_t)kvs.kvs[i].mod_revision));
        } else {
            json_decref(t);
        }
    }
    ioc_etcd_kvs_free(&kvs);
    return all;
}

void
agent_tombstones(struct agent *a)
{
    json_t *vols, *snaps = NULL, *x;
    const char *name;

    json_decref(a->deleted);
    a->deleted = NULL;
    vols = tombstones_load(a, "volume");
    snaps = vols != NULL ? tombstones_load(a, "snapshot") : NULL;
    if (snaps == NULL) {
        json_decref(vols);
        return;
    }
    a->deleted = json_incref(vols);
    json_object_foreach(snaps, name, x) {
        json_t *t = json_object_get(x, "t");
        struct doomed d = {.kind = "snapshot", .snap = name, .bdevs = json_object(),
                           .vol = json_string_value(json_object_get(t, "volume")),
                           .rev = json_integer_value(json_object_get(x, "rev"))};
        if (d.vol != NULL) {
            agent_tombstone(a, &d, name);
        }
        json_decref(d.bdevs);
    }
    json_object_foreach(vols, name, x) {
        json_t *t = json_object_get(x, "t");
        struct doomed d = {.kind = "volume", .vol = name, .bdevs = json_object(),
                           .uid = json_object_get(t, "uid"),
                           .rev = json_integer_value(json_object_get(x, "rev"))};
        agent_tombstone(a, &d, name);
        json_decref(d.bdevs);
    }
    json_decref(vols);
    json_decref(snaps);
}
