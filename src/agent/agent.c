/*
 * agent/agent.c - the node agent: this node's desired state from etcd, applied locally.
 *
 * One thread, a level-triggered loop: every pass reads the whole desired
 * state for this node and makes the daemon match it, so a missed event, a
 * restart after kill -9, or a half-done previous pass all converge the same
 * way. A watch on /ioc/v1/ only wakes the loop early; without events it
 * runs every second anyway. Each pass:
 *
 *   1. keep the node's lease alive (TTL 10 s; re-grant and re-register the
 *      Node if etcd forgot it),
 *   2. pools whose spec.node is us: present in pool_list, else pool_import
 *      from the path, else - only if the path does not exist - pool_create.
 *      A pool that exists but does not import is reported, never formatted.
 *      Then its status (capacity, used, state),
 *   3. assignments /ioc/v1/assign/<node>/<volume> from the controller:
 *      the replica volume in its pool (volume_create if missing; an existing
 *      one is reused, so identities and contents survive restarts), its NBD
 *      export, and the nexus when this node hosts it (only if the daemon
 *      serves nexus_create; otherwise the report says so),
 *   4. once the controller says a newer generation is established
 *      (replica.retireBelow), the exports and replica bdevs of older
 *      generations (VOL@gen=N, VOL.gN) are removed: their IO was already
 *      fenced; this only lets go of what they hold,
 *   5. a report per volume at /ioc/v1/replica/<volume>/<node>,
 *   6. tombstones of deleted Volumes and Snapshots (agent_delete.c) and
 *      Snapshots to take (agent_snapshot.c), both run before step 3.
 *
 * Requests go through the daemon's own RPC socket rather than calling
 * ioc_rpc_handle(): handlers assume the RPC thread's one-at-a-time
 * discipline, and the socket gives exactly that.
 *
 * Data is removed only by an explicit action: `iocctl delete` leaves a
 * tombstone, and agent_delete.c removes what this node holds of the
 * deleted Volume or Snapshot (checked against the replica's owner uid).
 * Snapshots are taken in agent_snapshot.c.
 */
#include "ioc/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "agent/cp.h"
#include "core/log.h"
#include "lib/resource/resource.h"

#define AGENT_LEASE_TTL 10

static struct agent g_agent;

/* ---- the local API, over our own socket ---- */

static int
rpc_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timeval tv = {.tv_sec = 60};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -errno;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* Call method (params taken); *result a new reference. Errors fill err with the daemon's text. */
int
agent_call(struct agent *a, const char *method, json_t *params, json_t **result,
           struct ioc_err *err)
{
    json_t *req = json_pack("{s:s, s:i, s:s, s:o}", "jsonrpc", "2.0", "id", 1, "method", method,
                            "params", params != NULL ? params : json_object());
    char *text = json_dumps(req, JSON_COMPACT), buf[65536];
    size_t len = 0;
    json_t *resp = NULL, *e;
    int fd = rpc_connect(a->opts.rpc_socket), rc = 0;

    json_decref(req);
    if (fd < 0 || text == NULL) {
        free(text);
        if (fd >= 0) {
            close(fd);
        }
        return ioc_err_set(err, fd < 0 ? fd : -ENOMEM, "%s: rpc socket: %s", method,
                           strerror(fd < 0 ? -fd : ENOMEM));
    }
    if (write(fd, text, strlen(text)) < 0 || write(fd, "\n", 1) < 0) {
        rc = -errno;
    }
    free(text);
    while (rc == 0 && resp == NULL && len < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0) {
            rc = n == 0 ? -ECONNRESET : -errno;
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (memchr(buf, '\n', len) != NULL) {
            resp = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
        }
    }
    close(fd);
    if (resp == NULL) {
        return ioc_err_set(err, rc < 0 ? rc : -EPROTO, "%s: no answer from iocd", method);
    }
    e = json_object_get(resp, "error");
    if (e != NULL) {
        rc = (int)json_integer_value(json_object_get(e, "code"));
        ioc_err_set(err, rc < 0 && rc > -4096 ? rc : -EINVAL, "%s: %s", method,
                    json_string_value(json_object_get(e, "message")));
        json_decref(resp);
        return err != NULL ? err->code : -EINVAL;
    }
    if (result != NULL) {
        *result = json_incref(json_object_get(resp, "result"));
    }
    json_decref(resp);
    return 0;
}

static bool
agent_has_method(struct agent *a, const char *method)
{
    json_t *methods = NULL, *m;
    bool found = false;
    size_t i;

    if (agent_call(a, "rpc_get_methods", NULL, &methods, NULL) < 0) {
        return false;
    }
    json_array_foreach(methods, i, m) {
        found |= json_is_string(m) && strcmp(json_string_value(m), method) == 0;
    }
    json_decref(methods);
    return found;
}

/* ---- etcd writes ---- */

/* Put key=value (value taken) unless it is what we wrote last. */
void
agent_put(struct agent *a, const char *key, json_t *value, int64_t lease)
{
    struct ioc_err err = {0};
    char *text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
    json_t *last = json_object_get(a->written, key);

    if (text != NULL && (last == NULL || strcmp(json_string_value(last), text) != 0)) {
        if (ioc_etcd_put(a->etcd, key, text, lease, &err) == 0) {
            json_object_set_new(a->written, key, json_string(text));
        } else {
            IOC_WARN("agent", "node %s: %s", a->opts.node, err.msg);
        }
    }
    free(text);
    json_decref(value);
}

static json_t *
agent_labels(const char *spec)
{
    json_t *labels = json_object();
    char *copy = strdup(spec != NULL ? spec : ""), *save = NULL, *tok;

    for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq != NULL) {
            *eq = '\0';
            json_object_set_new(labels, tok, json_string(eq + 1));
        }
    }
    free(copy);
    return labels;
}

/* Grant a lease and put the Node on it. */
static int
agent_register(struct agent *a)
{
    struct ioc_err err = {0};
    char key[256], ts[32];
    json_t *node;
    int rc;

    rc = ioc_etcd_lease_grant(a->etcd, AGENT_LEASE_TTL, &a->lease, &err);
    if (rc < 0) {
        IOC_WARN("agent", "node %s: cannot register: %s", a->opts.node, err.msg);
        return rc;
    }
    ioc_resource_timestamp(ts, sizeof(ts));
    node = json_pack("{s:s, s:s, s:{s:s, s:s, s:o}, s:{s:[s], s:s}}", "apiVersion",
                     IOC_API_VERSION, "kind", "Node", "metadata", "name", a->opts.node,
                     "creationTimestamp", ts, "labels", agent_labels(a->opts.labels), "spec",
                     "addresses", a->host, "nbd", a->opts.nbd_listen);
    ioc_resource_key(IOC_KIND_NODE, a->opts.node, false, key, sizeof(key));
    json_object_clear(a->written); /* a new lease: everything on the old one is gone */
    agent_put(a, key, node, a->lease);
    a->last_keepalive = time(NULL);
    IOC_NOTICE("agent", "node %s registered (lease %llx)", a->opts.node,
               (unsigned long long)a->lease);
    return 0;
}

static void
agent_keepalive(struct agent *a)
{
    struct ioc_err err = {0};
    int rc;

    if (a->lease != 0 && time(NULL) - a->last_keepalive < AGENT_LEASE_TTL / 3) {
        return;
    }
    rc = a->lease != 0 ? ioc_etcd_lease_keepalive(a->etcd, a->lease, NULL, &err) : -ENOENT;
    if (rc == 0) {
        a->last_keepalive = time(NULL);
    } else if (rc == -ENOENT) {
        agent_register(a); /* etcd forgot us (expired lease or a new etcd) */
    }
}

/* ---- pools ---- */

static json_t *
pool_status(struct agent *a, const char *name, const char *state, const char *msg)
{
    json_t *list = NULL, *p;
    json_t *st = json_pack("{s:s, s:s}", "state", state, "node", a->opts.node);

    if (msg != NULL) {
        json_object_set_new(st, "message", json_string(msg));
    }
    if (agent_call(a, "pool_list", json_pack("{s:s}", "name", name), &list, NULL) == 0) {
        p = json_array_get(list, 0);
        json_int_t size = json_integer_value(json_object_get(p, "size"));
        json_int_t free_b = json_integer_value(json_object_get(p, "free"));
        json_object_set_new(st, "capacity", json_integer(size));
        json_object_set_new(st, "used", json_integer(size - free_b));
        json_object_set_new(st, "free", json_integer(free_b));
    }
    json_decref(list);
    return st;
}

static void
agent_pool(struct agent *a, const char *name, json_t *pool)
{
    json_t *spec = json_object_get(pool, "spec"), *params;
    const char *path = json_string_value(json_object_get(spec, "path"));
    struct ioc_err err = {0};
    struct stat sb;
    char key[256];
    int rc;

    rc = agent_call(a, "pool_list", json_pack("{s:s}", "name", name), NULL, NULL);
    if (rc < 0) {
        rc = agent_call(a, "pool_import", json_pack("{s:s, s:s}", "path", path, "name", name),
                        NULL, &err);
        if (rc < 0 && stat(path, &sb) < 0 && errno == ENOENT) {
            ioc_err_clear(&err);
            params = json_pack("{s:s, s:s}", "name", name, "path", path);
            if (json_object_get(spec, "size") != NULL) {
                json_object_set(params, "size", json_object_get(spec, "size"));
            }
            if (json_object_get(spec, "clusterSize") != NULL) {
                json_object_set(params, "cluster_size", json_object_get(spec, "clusterSize"));
            }
            rc = agent_call(a, "pool_create", params, NULL, &err);
            if (rc == 0) {
                IOC_NOTICE("agent", "pool %s: created in %s", name, path);
            }
        } else if (rc == 0) {
            IOC_NOTICE("agent", "pool %s: imported from %s", name, path);
        }
    }
    ioc_resource_key(IOC_KIND_POOL, name, true, key, sizeof(key));
    agent_put(a, key, pool_status(a, name, rc == 0 ? "Online" : "Error",
                                  rc == 0 ? NULL : err.msg), 0);
}

static void
agent_pools(struct agent *a)
{
    struct ioc_err err = {0};
    json_t *pools, *p;
    const char *name;

    if (cp_load(a->etcd, IOC_KEY_ROOT "pool/", &pools, &err) < 0) {
        return;
    }
    json_object_foreach(pools, name, p) {
        const char *node = json_string_value(json_object_get(json_object_get(p, "spec"),
                                                             "node"));
        if (node != NULL && strcmp(node, a->opts.node) == 0) {
            agent_pool(a, name, p);
        }
    }
    json_decref(pools);
}

/* ---- replicas and nexuses ---- */

static bool
export_exists(struct agent *a, const char *name)
{
    json_t *list = NULL, *x;
    bool found = false;
    size_t i;

    agent_call(a, "nbd_export_list", NULL, &list, NULL);
    json_array_foreach(list, i, x) {
        found |= strcmp(json_string_value(json_object_get(x, "name")), name) == 0;
    }
    json_decref(list);
    return found;
}

static int
agent_export(struct agent *a, const char *name, const char *bdev, struct ioc_err *err)
{
    if (export_exists(a, name)) {
        return 0;
    }
    return agent_call(a, "nbd_export_add", json_pack("{s:s, s:s}", "name", name, "bdev", bdev),
                      NULL, err);
}

static bool
bdev_exists(struct agent *a, const char *name)
{
    return agent_call(a, "bdev_list", json_pack("{s:s}", "name", name), NULL, NULL) == 0;
}

/*
 * A replica pool volume carries the uid of the Volume it belongs to
 * (AGENT_OWNER_ATTR), so the deletion of a Volume removes only its own
 * replicas (agent_delete.c). One without the attribute (made before uids,
 * or an attr_set cut short by a crash) is adopted by the Volume assigned
 * here; one of another uid (an older Volume of the same name whose deletion
 * has not reached this node) is refused, never reused or overwritten.
 */
static int
replica_owner_check(struct agent *a, const char *base, json_t *uid, struct ioc_err *err)
{
    struct ioc_err e = {0};
    json_t *have = NULL, *cached = json_object_get(a->owned, base);
    int rc;

    if (!json_is_string(uid) || (cached != NULL && json_equal(cached, uid))) {
        return 0;
    }
    rc = agent_call(a, "volume_attr_get", json_pack("{s:s, s:s}", "volume", base, "key",
                                                    AGENT_OWNER_ATTR), &have, &e);
    if (rc == -ENOENT) {
        rc = agent_call(a, "volume_attr_set", json_pack("{s:s, s:s, s:O}", "volume", base,
                                                        "key", AGENT_OWNER_ATTR, "value", uid),
                        NULL, err);
    } else if (rc == 0 && !json_equal(have, uid)) {
        rc = ioc_err_set(err, -EEXIST, "replica %s belongs to another volume of that name "
                         "(uid %s); it is removed once that volume's deletion reaches this node",
                         base, json_string_value(have) ?: "?");
    } else if (rc < 0) {
        rc = ioc_err_set(err, rc, "%s", e.msg);
    }
    if (rc == 0) {
        json_object_set(a->owned, base, uid);
    }
    json_decref(have);
    return rc;
}

/*
 * The replica: volume POOL/VOL (reused when present). With a generation
 * (replicated volumes) the replica bdev VOL.gG of that generation is stacked
 * on it - creating it fences every older generation's IO - and exported as
 * replica.export (VOL@gen=G); a single replica exports the volume itself.
 */
static int
agent_replica(struct agent *a, const char *vol, json_t *as, json_t *report, struct ioc_err *err)
{
    json_t *r = json_object_get(as, "replica"), *gen = json_object_get(r, "generation");
    const char *pool = json_string_value(json_object_get(r, "pool"));
    const char *exp = json_string_value(json_object_get(r, "export"));
    char base[256], bdev[300], uri[512];
    int rc = 0;

    if (pool == NULL || exp == NULL) {
        return 0;
    }
    snprintf(base, sizeof(base), "%s/%s", pool, vol);
    snprintf(bdev, sizeof(bdev), "%s", base);
    if (!bdev_exists(a, base)) {
        rc = agent_call(a, "volume_create", json_pack("{s:s, s:s, s:O}", "pool", pool, "name",
                                                      vol, "size", json_object_get(as, "size")),
                        NULL, err);
        if (rc == 0) {
            IOC_NOTICE("agent", "volume %s: replica created in pool %s", vol, pool);
        }
    }
    if (rc == 0) {
        rc = replica_owner_check(a, base, json_object_get(as, "uid"), err);
    }
    if (rc == 0 && json_is_integer(gen)) {
        snprintf(bdev, sizeof(bdev), "%s.g%lld", vol, (long long)json_integer_value(gen));
        if (!bdev_exists(a, bdev)) {
            rc = agent_call(a, "bdev_replica_create", json_pack("{s:s, s:s, s:O}", "name", bdev,
                                                                "base", base, "generation", gen),
                            NULL, err);
            if (rc == 0) {
                IOC_NOTICE("agent", "volume %s: replica of generation %lld (older ones fenced)",
                           vol, (long long)json_integer_value(gen));
            }
        }
    }
    if (rc == 0) {
        rc = agent_export(a, exp, bdev, err);
    }
    snprintf(uri, sizeof(uri), "nbd://%s/%s", a->opts.nbd_listen, exp);
    json_object_set_new(report, "pool", json_string(pool));
    json_object_set_new(report, "bdev", json_string(bdev));
    json_object_set_new(report, "uri", json_string(uri));
    json_object_set_new(report, "state", json_string(rc == 0 ? "online" : "faulted"));
    return rc;
}

static bool
nexus_child_in(json_t *entry, const char *uri)
{
    json_t *ch;
    size_t i;

    json_array_foreach(json_object_get(entry, "children"), i, ch) {
        if (strcmp(json_string_value(json_object_get(ch, "uri")) ?: "", uri) == 0) {
            return true;
        }
    }
    return false;
}

static bool
uri_in(json_t *arr, const char *uri)
{
    json_t *u;
    size_t i;

    json_array_foreach(arr, i, u) {
        if (strcmp(json_string_value(u) ?: "", uri) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Membership: add the assigned children the nexus lacks (each is rebuilt),
 * remove the children neither assigned nor kept (a replica the controller
 * replaced). Removal comes after the adds so the nexus never shrinks first.
 */
static void
agent_nexus_children(struct agent *a, const char *vol, json_t *nx, json_t *entry)
{
    json_t *want = json_object_get(nx, "children"), *keep = json_object_get(nx, "keep"), *ch, *u;
    struct ioc_err err = {0};
    size_t i;

    json_array_foreach(want, i, u) {
        if (nexus_child_in(entry, json_string_value(u))) {
            continue;
        }
        if (agent_call(a, "nexus_child_add", json_pack("{s:s, s:O}", "name", vol, "uri", u),
                       NULL, &err) == 0) {
            IOC_NOTICE("agent", "volume %s: child %s added (rebuild)", vol, json_string_value(u));
        } else {
            IOC_WARN("agent", "volume %s: %s", vol, err.msg);
            ioc_err_clear(&err);
        }
    }
    json_array_foreach(json_object_get(entry, "children"), i, ch) {
        const char *uri = json_string_value(json_object_get(ch, "uri")) ?: "";
        if (uri_in(want, uri) || uri_in(keep, uri)) {
            continue;
        }
        if (agent_call(a, "nexus_child_remove", json_pack("{s:s, s:s}", "name", vol, "uri", uri),
                       NULL, &err) == 0) {
            IOC_NOTICE("agent", "volume %s: child %s removed", vol, uri);
        } else {
            IOC_WARN("agent", "volume %s: %s", vol, err.msg);
            ioc_err_clear(&err);
        }
    }
}

/* What the controller needs of a nexus_list entry (no counters: they would rewrite etcd each pass). */
static json_t *
nexus_report(json_t *entry)
{
    json_t *out = json_pack("{s:O, s:O, s:O}", "state", json_object_get(entry, "state") ?: json_null(),
                            "generation", json_object_get(entry, "generation") ?: json_null(),
                            "durable_state",
                            json_object_get(entry, "durable_state") ?: json_false());
    json_t *children = json_array(), *ch, *rb;
    size_t i;

    json_array_foreach(json_object_get(entry, "children"), i, ch) {
        json_t *c = json_pack("{s:O, s:O}", "uri", json_object_get(ch, "uri"), "state",
                              json_object_get(ch, "state"));
        rb = json_object_get(ch, "rebuild");
        if (json_is_true(json_object_get(rb, "running"))) {
            json_object_set_new(c, "rebuildProgress", json_integer(
                                    (json_int_t)json_number_value(json_object_get(rb,
                                                                                  "progress_pct"))));
        }
        json_array_append_new(children, c);
    }
    json_object_set_new(out, "children", children);
    return out;
}

/*
 * A nexus of another generation here, or one not assigned here (this node
 * lost and regained it): take it down. Every export of its bdev goes first
 * (not only the one named after the volume: an export added by hand would
 * keep the bdev open and nexus_destroy failing on every pass).
 */
int
agent_nexus_retire(struct agent *a, const char *vol, struct ioc_err *err)
{
    json_t *list = NULL, *x;
    size_t i;
    int rc;

    agent_call(a, "nbd_export_list", NULL, &list, NULL);
    json_array_foreach(list, i, x) {
        if (strcmp(json_string_value(json_object_get(x, "bdev")) ?: "", vol) == 0) {
            agent_call(a, "nbd_export_remove", json_pack("{s:O}", "name",
                                                         json_object_get(x, "name")),
                       NULL, NULL);
        }
    }
    json_decref(list);
    rc = agent_call(a, "nexus_destroy", json_pack("{s:s}", "name", vol), NULL, err);
    if (rc == 0) {
        IOC_NOTICE("agent", "volume %s: nexus of an older generation or not assigned here "
                   "destroyed", vol);
    }
    return rc;
}

/* The nexus over the replicas' URIs, exported under the volume's name. */
static int
agent_nexus(struct agent *a, const char *vol, json_t *as, json_t *report, struct ioc_err *err)
{
    json_t *nx = json_object_get(as, "nexus"), *list = NULL, *entry, *st;
    char uri[512];
    int rc;

    if (!json_is_object(nx)) {
        return 0;
    }
    if (!agent_has_method(a, "nexus_create")) {
        json_object_set_new(report, "nexus", json_pack("{s:s, s:s}", "state", "unavailable",
                                                       "message", "this iocd does not serve "
                                                       "nexus_create"));
        return 0;
    }
    rc = agent_call(a, "nexus_list", json_pack("{s:s}", "name", vol), &list, NULL);
    entry = json_array_get(list, 0);
    if (rc == 0 && entry != NULL &&
        !json_equal(json_object_get(entry, "generation"), json_object_get(nx, "generation"))) {
        rc = agent_nexus_retire(a, vol, err);
        if (rc < 0) {
            json_decref(list);
            return rc;
        }
        entry = NULL;
    }
    if (entry == NULL) {
        json_decref(list);
        list = NULL;
        if (!json_is_true(json_object_get(nx, "complete"))) {
            json_object_set_new(report, "nexus", json_pack("{s:s}", "state", "pending"));
            return 0; /* wait until every reachable replica serves this generation */
        }
        json_t *params = json_pack("{s:s, s:O, s:O, s:O}", "name", vol, "size",
                                   json_object_get(as, "size"), "children",
                                   json_object_get(nx, "children"), "generation",
                                   json_object_get(nx, "generation"));
        if (json_is_integer(json_object_get(nx, "rebuildRate"))) {
            json_object_set(params, "rebuild_rate", json_object_get(nx, "rebuildRate"));
        }
        rc = agent_call(a, "nexus_create", params, NULL, err);
        if (rc == 0) {
            IOC_NOTICE("agent", "volume %s: nexus created, generation %lld", vol,
                       (long long)json_integer_value(json_object_get(nx, "generation")));
            agent_call(a, "nexus_list", json_pack("{s:s}", "name", vol), &list, NULL);
        }
    } else {
        agent_nexus_children(a, vol, nx, entry);
        json_decref(list);
        list = NULL;
        agent_call(a, "nexus_list", json_pack("{s:s}", "name", vol), &list, NULL);
    }
    if (rc == 0) {
        rc = agent_export(a, vol, vol, err);
    }
    snprintf(uri, sizeof(uri), "nbd://%s/%s", a->opts.nbd_listen, vol);
    st = json_array_get(list, 0) != NULL ? nexus_report(json_array_get(list, 0)) : json_object();
    json_object_set_new(st, "uri", json_string(uri));
    json_object_set_new(st, "generation", json_copy(json_object_get(nx, "generation")));
    if (rc < 0) {
        json_object_set_new(st, "state", json_string("faulted"));
        json_object_set_new(st, "message", json_string(err->msg));
    }
    json_object_set_new(report, "nexus", st);
    json_decref(list);
    return rc;
}

/* The generation N of a replica bdev name VOL.gN; -1 if name is not one of vol's. */
long long
agent_replica_bdev_generation(const char *name, const char *vol)
{
    size_t vl = strlen(vol);
    char *end = NULL;
    long long g;

    if (name == NULL || strncmp(name, vol, vl) != 0 || name[vl] != '.' || name[vl + 1] != 'g' ||
        name[vl + 2] < '0' || name[vl + 2] > '9') {
        return -1;
    }
    errno = 0;
    g = strtoll(name + vl + 2, &end, 10);
    return errno == 0 && *end == '\0' ? g : -1;
}

/*
 * Generations older than replica.retireBelow (set by the controller once
 * every replica is in sync at a newer one): unexport and delete their
 * replica bdevs. Their IO was already rejected (fenced); the base volume and
 * its data stay. A bdev still held (a connection draining) goes next pass.
 */
static void
agent_replica_retire(struct agent *a, const char *vol, json_t *as)
{
    json_t *r = json_object_get(as, "replica"), *list = NULL, *x;
    json_int_t below = json_integer_value(json_object_get(r, "retireBelow"));
    struct ioc_err err = {0};
    size_t i;

    if (below < 2) {
        return;
    }
    agent_call(a, "nbd_export_list", NULL, &list, NULL);
    json_array_foreach(list, i, x) {
        long long g = agent_replica_bdev_generation(json_string_value(json_object_get(x, "bdev")),
                                                    vol);
        if (g >= 0 && g < below &&
            agent_call(a, "nbd_export_remove", json_pack("{s:O}", "name",
                                                         json_object_get(x, "name")),
                       NULL, &err) == 0) {
            IOC_NOTICE("agent", "volume %s: export %s of generation %lld removed", vol,
                       json_string_value(json_object_get(x, "name")), g);
        }
        ioc_err_clear(&err);
    }
    json_decref(list);
    list = NULL;
    agent_call(a, "bdev_list", NULL, &list, NULL);
    json_array_foreach(list, i, x) {
        const char *name = json_string_value(json_object_get(x, "name"));
        long long g = agent_replica_bdev_generation(name, vol);
        if (g < 0 || g >= below) {
            continue;
        }
        if (agent_call(a, "bdev_delete", json_pack("{s:s}", "name", name), NULL, &err) == 0) {
            IOC_NOTICE("agent", "volume %s: replica bdev %s of generation %lld deleted", vol,
                       name, g);
        } else {
            IOC_INFO("agent", "volume %s: %s (retried next pass)", vol, err.msg);
        }
        ioc_err_clear(&err);
    }
    json_decref(list);
}

/*
 * A nexus this node runs but is no longer assigned (it moved while this
 * node was away; its writes are fenced anyway): unexport and destroy it.
 * Only once etcd answered with our assignments (cp_load succeeded).
 */
static void
agent_nexus_gc(struct agent *a, json_t *assigns)
{
    json_t *list = NULL, *e;
    size_t i;

    if (agent_call(a, "nexus_list", NULL, &list, NULL) < 0) {
        return;
    }
    json_array_foreach(list, i, e) {
        const char *name = json_string_value(json_object_get(e, "name")) ?: "";
        if (!json_is_object(json_object_get(json_object_get(assigns, name), "nexus"))) {
            agent_nexus_retire(a, name, NULL);
        }
    }
    json_decref(list);
}

static void
agent_assignments(struct agent *a)
{
    struct ioc_err err = {0};
    char prefix[256], key[512];
    json_t *assigns, *as;
    const char *vol;

    snprintf(prefix, sizeof(prefix), IOC_KEY_ROOT "assign/%s/", a->opts.node);
    if (a->deleted == NULL || cp_load(a->etcd, prefix, &assigns, &err) < 0) {
        return; /* without the tombstones, an assignment may be one of a deleted volume */
    }
    json_object_foreach(assigns, vol, as) {
        json_t *report;
        if (json_object_get(a->deleted, vol) != NULL) {
            continue; /* deleted: agent_delete.c removes it; the controller drops this */
        }
        report = json_pack("{s:s}", "node", a->opts.node);
        ioc_err_clear(&err);
        if (agent_replica(a, vol, as, report, &err) < 0 ||
            agent_nexus(a, vol, as, report, &err) < 0) {
            json_object_set_new(report, "message", json_string(err.msg));
            IOC_WARN("agent", "volume %s: %s", vol, err.msg);
        }
        agent_replica_retire(a, vol, as);
        snprintf(key, sizeof(key), IOC_KEY_ROOT "replica/%s/%s", vol, a->opts.node);
        agent_put(a, key, report, a->lease);
    }
    agent_nexus_gc(a, assigns);
    json_decref(assigns);
}

/* ---- the loop ---- */

static void
agent_watch_cb(void *arg, int rc, const struct ioc_etcd_event *ev, size_t n)
{
    struct agent *a = arg;

    (void)rc, (void)ev, (void)n;
    __atomic_add_fetch(&a->wake, 1, __ATOMIC_SEQ_CST);
}

static void *
agent_thread(void *arg)
{
    struct agent *a = arg;
    int seen = -1;

    while (!a->stop && agent_register(a) < 0) {
        cp_sleep(&a->stop, 1000);
    }
    ioc_etcd_watch_start(a->etcd, IOC_KEY_ROOT, true, 0, agent_watch_cb, a, &a->watch);
    while (!a->stop) {
        seen = __atomic_load_n(&a->wake, __ATOMIC_SEQ_CST);
        agent_keepalive(a);
        agent_pools(a);
        agent_tombstones(a); /* before assignments: a deleted replica is never reused */
        agent_snapshots(a);  /* before assignments: a replica's part is awaited with IO held */
        agent_assignments(a);
        for (int i = 0; i < 20 && !a->stop && __atomic_load_n(&a->wake, __ATOMIC_SEQ_CST) == seen;
             i++) {
            usleep(50 * 1000);
        }
    }
    ioc_etcd_watch_stop(&a->watch);
    return NULL;
}

int
ioc_agent_start(const struct ioc_agent_opts *opts, struct ioc_err *err)
{
    struct agent *a = &g_agent;
    const char *colon;
    int rc;

    memset(a, 0, sizeof(*a));
    a->opts = *opts;
    if (opts->nbd_listen == NULL) {
        return ioc_err_set(err, -EINVAL, "--node needs --nbd-listen: replicas are served on it");
    }
    colon = strrchr(opts->nbd_listen, ':');
    snprintf(a->host, sizeof(a->host), "%.*s",
             (int)(colon != NULL ? colon - opts->nbd_listen : (long)strlen(opts->nbd_listen)),
             opts->nbd_listen);
    rc = ioc_etcd_create(opts->etcd, &a->etcd, err);
    if (rc < 0) {
        return rc;
    }
    a->written = json_object();
    a->owned = json_object();
    rc = pthread_create(&a->thread, NULL, agent_thread, a);
    if (rc != 0) {
        ioc_etcd_destroy(a->etcd);
        json_decref(a->written);
        json_decref(a->owned);
        return ioc_err_set(err, -rc, "agent: cannot start its thread");
    }
    a->running = true;
    IOC_NOTICE("agent", "node %s: agent started, etcd %s", opts->node, opts->etcd);
    return 0;
}

void
ioc_agent_stop(void)
{
    struct agent *a = &g_agent;

    if (!a->running) {
        return;
    }
    a->stop = true;
    pthread_join(a->thread, NULL);
    if (a->lease != 0) {
        ioc_etcd_lease_revoke(a->etcd, a->lease, NULL);
    }
    ioc_etcd_destroy(a->etcd);
    json_decref(a->written);
    json_decref(a->owned);
    json_decref(a->deleted);
    a->running = false;
}
