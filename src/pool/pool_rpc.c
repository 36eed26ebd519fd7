/*
 * pool/pool_rpc.c - JSON-RPC methods for pools and volumes.
 *
 * Handlers run on the RPC thread; each packs its decoded parameters into a
 * struct pool_req and runs it on the pool's home reactor with pool_sync(),
 * waiting for the operation's callback (which comes after the metadata
 * commit), so a successful reply means the change is durable. Volumes are
 * named "POOL/VOLUME" in parameters, like their bdevs.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bdev/file/bdev_file.h"
#include "pool/pool_internal.h"
#include "rpc/rpc.h"

enum pool_req_kind {
    REQ_CREATE,
    REQ_IMPORT,
    REQ_EXPORT,
    REQ_DESTROY,
    REQ_LIST,
    REQ_VOL_CREATE,
    REQ_VOL_DELETE,
    REQ_VOL_RESIZE,
    REQ_VOL_SNAPSHOT,
    REQ_VOL_CLONE,
    REQ_VOL_LIST,
    REQ_ATTR_SET,
    REQ_ATTR_GET,
};

struct pool_req {
    enum pool_req_kind kind;
    struct ioc_pool *pool;
    struct ioc_pool_create_opts create;
    const char *a, *b;        /* names, keys, values: borrowed from params */
    char vol[IOC_POOL_NAME_MAX];
    uint64_t size;
    bool thin;
    json_t *result;
    struct ioc_err *err;
};

static int
pool_list_json_on_home(struct pool_req *r)
{
    json_t *arr = json_array();
    const char *only = r->a;

    for (struct ioc_pool *p = NULL; (p = pool_registry_next(p)) != NULL;) {
        if (only == NULL || strcmp(only, p->name) == 0) {
            json_array_append_new(arr, pool_info_json(p));
        }
    }
    r->result = arr;
    return 0;
}

/* Synchronous readers: complete at once, but still through the callback. */
static int
pool_req_sync_done(int rc, ioc_pool_cb cb, void *cb_arg)
{
    if (rc == 0) {
        cb(cb_arg, 0);
    }
    return rc;
}

static int
pool_req_run(void *arg, ioc_pool_cb cb, void *cb_arg)
{
    struct pool_req *r = arg;
    char buf[IOC_POOL_ATTR_AREA];
    int rc;

    switch (r->kind) {
    case REQ_CREATE:
        return ioc_pool_create(&r->create, r->err, cb, cb_arg);
    case REQ_IMPORT:
        return ioc_pool_import(r->a, r->b, r->err, cb, cb_arg);
    case REQ_EXPORT:
    case REQ_DESTROY:
        return ioc_pool_export(r->pool, r->kind == REQ_DESTROY, r->err, cb, cb_arg);
    case REQ_LIST:
        return pool_req_sync_done(pool_list_json_on_home(r), cb, cb_arg);
    case REQ_VOL_CREATE:
        return ioc_pool_volume_create(r->pool, r->a, r->size, r->thin, r->err, cb, cb_arg);
    case REQ_VOL_DELETE:
        return ioc_pool_volume_delete(r->pool, r->vol, r->err, cb, cb_arg);
    case REQ_VOL_RESIZE:
        return ioc_pool_volume_resize(r->pool, r->vol, r->size, r->err, cb, cb_arg);
    case REQ_VOL_SNAPSHOT:
        return ioc_pool_volume_snapshot(r->pool, r->vol, r->a, r->err, cb, cb_arg);
    case REQ_VOL_CLONE:
        return ioc_pool_volume_clone(r->pool, r->vol, r->a, r->err, cb, cb_arg);
    case REQ_VOL_LIST:
        r->result = ioc_pool_volumes_json(r->pool);
        return pool_req_sync_done(0, cb, cb_arg);
    case REQ_ATTR_SET:
        return ioc_pool_volume_attr_set(r->pool, r->vol, r->a, r->b, r->err, cb, cb_arg);
    case REQ_ATTR_GET:
        rc = ioc_pool_volume_attr_get(r->pool, r->vol, r->a, buf, sizeof(buf), r->err);
        if (rc == 0) {
            r->result = json_string(buf);
        }
        return pool_req_sync_done(rc, cb, cb_arg);
    }
    return -EINVAL;
}

static int
pool_req_sync(struct pool_req *r, json_t **result)
{
    struct ioc_reactor *home = r->pool != NULL ? ioc_pool_home(r->pool) : pool_default_reactor();
    int rc;

    if (home == NULL) {
        return ioc_err_set(r->err, -ENODEV, "no reactor is running");
    }
    rc = pool_sync(home, pool_req_run, r);
    if (rc < 0) {
        json_decref(r->result);
        if (r->err->code == 0) {
            ioc_err_set(r->err, rc, "%s", strerror(-rc));
        }
        return rc;
    }
    if (result != NULL && r->result != NULL) {
        *result = r->result;
    }
    return 0;
}

static int
pool_lookup(const char *name, struct ioc_pool **out, struct ioc_err *err)
{
    *out = ioc_pool_find(name);
    if (*out == NULL) {
        return ioc_err_set(err, -ENOENT, "no pool named '%s' (see pool_list)", name);
    }
    return 0;
}

/* "POOL/VOLUME" -> the pool and the volume's name in it. */
static int
pool_vol_split(const char *field, const char *full, struct pool_req *r, struct ioc_err *err)
{
    const char *slash = strchr(full, '/');
    char pname[IOC_POOL_NAME_MAX];

    if (slash == NULL || slash == full || (size_t)(slash - full) >= sizeof(pname) ||
        strlen(slash + 1) >= sizeof(r->vol) || slash[1] == '\0') {
        return ioc_err_set(err, -EINVAL, "%s: expected POOL/VOLUME, got '%s'", field, full);
    }
    memcpy(pname, full, (size_t)(slash - full));
    pname[slash - full] = '\0';
    snprintf(r->vol, sizeof(r->vol), "%s", slash + 1);
    return pool_lookup(pname, &r->pool, err);
}

/* ---- pools ---- */

static int
rpc_pool_create(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_CREATE, .err = err};
    const char *path = NULL;
    char bname[IOC_POOL_NAME_MAX + 8];
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &r.create.name},
        {"bdev", IOC_RPC_STRING, false, &r.create.bdev},
        {"path", IOC_RPC_STRING, false, &path},
        {"size", IOC_RPC_SIZE, false, &r.create.size},
        {"cluster_size", IOC_RPC_U32, false, &r.create.cluster_size},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc < 0) {
        return rc;
    }
    if ((path == NULL) == (r.create.bdev == NULL)) {
        return ioc_err_set(err, -EINVAL, "bdev, path: give exactly one of them");
    }
    rc = ioc_pool_name_check("name", r.create.name, err);
    if (rc == 0 && ioc_pool_find(r.create.name) != NULL) {
        rc = ioc_err_set(err, -EEXIST, "name: a pool named '%s' is already imported",
                         r.create.name);
    }
    if (rc == 0 && path != NULL) {
        struct ioc_bdev_file_opts fo = {.name = bname, .path = path, .size = r.create.size};
        snprintf(bname, sizeof(bname), "%s.dev", r.create.name);
        rc = ioc_bdev_file_create(&fo, err);
        r.create.bdev = bname;
    }
    if (rc == 0) {
        rc = pool_req_sync(&r, NULL);
        if (rc < 0 && path != NULL) {
            ioc_bdev_delete(bname, NULL);
        }
    }
    if (rc == 0 && path != NULL) {
        ioc_pool_set_base_owned(ioc_pool_find(r.create.name), true);
    }
    if (rc == 0) {
        *result = json_string(r.create.name);
    }
    return rc;
}
IOC_RPC_REGISTER("pool_create", rpc_pool_create, "format a bdev or file as a pool")

static int
rpc_pool_import(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_IMPORT, .err = err};
    const char *path = NULL;
    struct ioc_pool *pool;
    char name[IOC_POOL_NAME_MAX];
    const struct ioc_rpc_param spec[] = {
        {"path", IOC_RPC_STRING, false, &path},
        {"bdev", IOC_RPC_STRING, false, &r.a},
        {"name", IOC_RPC_STRING, false, &r.b},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc < 0) {
        return rc;
    }
    if ((path == NULL) == (r.a == NULL)) {
        return ioc_err_set(err, -EINVAL, "bdev, path: give exactly one of them");
    }
    if (path != NULL) {
        rc = ioc_pool_import_path_sync(path, r.b, name, sizeof(name), err);
    } else {
        rc = pool_req_sync(&r, NULL);
        pool = rc == 0 ? pool_find_by_base(r.a) : NULL;
        snprintf(name, sizeof(name), "%s", pool != NULL ? pool->name : "");
    }
    if (rc == 0) {
        *result = json_string(name);
    }
    return rc;
}
IOC_RPC_REGISTER("pool_import", rpc_pool_import, "import a pool from a file or bdev")

static int
rpc_pool_export_impl(json_t *params, struct ioc_err *err, enum pool_req_kind kind)
{
    struct pool_req r = {.kind = kind, .err = err};
    const char *name = NULL;
    const struct ioc_rpc_param spec[] = {{"name", IOC_RPC_STRING, true, &name}};
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc == 0) {
        rc = pool_lookup(name, &r.pool, err);
    }
    return rc < 0 ? rc : pool_req_sync(&r, NULL);
}

static int
rpc_pool_export(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)result;
    return rpc_pool_export_impl(params, err, REQ_EXPORT);
}
IOC_RPC_REGISTER("pool_export", rpc_pool_export, "commit and forget a pool (keeps its data)")

static int
rpc_pool_destroy(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)result;
    return rpc_pool_export_impl(params, err, REQ_DESTROY);
}
IOC_RPC_REGISTER("pool_destroy", rpc_pool_destroy, "forget a pool and wipe its superblocks")

static int
rpc_pool_list(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_LIST, .err = err};
    const struct ioc_rpc_param spec[] = {{"name", IOC_RPC_STRING, false, &r.a}};
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc == 0 && r.a != NULL) {
        struct ioc_pool *p;
        rc = pool_lookup(r.a, &p, err);
    }
    return rc < 0 ? rc : pool_req_sync(&r, result);
}
IOC_RPC_REGISTER("pool_list", rpc_pool_list, "list pools")

/* ---- volumes ---- */

static int
rpc_volume_create(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_VOL_CREATE, .err = err, .thin = true};
    const char *pool = NULL;
    const struct ioc_rpc_param spec[] = {
        {"pool", IOC_RPC_STRING, true, &pool},
        {"name", IOC_RPC_STRING, true, &r.a},
        {"size", IOC_RPC_SIZE, true, &r.size},
        {"thin", IOC_RPC_BOOL, false, &r.thin},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc == 0) {
        rc = pool_lookup(pool, &r.pool, err);
    }
    if (rc == 0) {
        rc = pool_req_sync(&r, NULL);
    }
    if (rc == 0) {
        *result = json_sprintf("%s/%s", pool, r.a);
    }
    return rc;
}
IOC_RPC_REGISTER("volume_create", rpc_volume_create, "create a thin volume in a pool")

/* The common shape: {volume: "POOL/VOL", <one more field>}. */
static int
rpc_volume_op(json_t *params, json_t **result, struct ioc_err *err, struct pool_req *r,
              const char *vol_field, const struct ioc_rpc_param *extra, size_t nextra)
{
    const char *full = NULL;
    struct ioc_rpc_param spec[4] = {{vol_field, IOC_RPC_STRING, true, &full}};
    int rc;

    memcpy(&spec[1], extra, nextra * sizeof(*extra));
    rc = ioc_rpc_decode(params, spec, 1 + nextra, err);
    if (rc == 0) {
        rc = pool_vol_split(vol_field, full, r, err);
    }
    return rc < 0 ? rc : pool_req_sync(r, result);
}

static int
rpc_volume_delete(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_VOL_DELETE, .err = err};

    (void)result;
    return rpc_volume_op(params, NULL, err, &r, "volume", NULL, 0);
}
IOC_RPC_REGISTER("volume_delete", rpc_volume_delete, "delete a volume or snapshot")

static int
rpc_volume_resize(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_VOL_RESIZE, .err = err};
    const struct ioc_rpc_param extra[] = {{"size", IOC_RPC_SIZE, true, &r.size}};

    (void)result;
    return rpc_volume_op(params, NULL, err, &r, "volume", extra, 1);
}
IOC_RPC_REGISTER("volume_resize", rpc_volume_resize, "change the size of a volume")

static int
rpc_volume_snapshot(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_VOL_SNAPSHOT, .err = err};
    const struct ioc_rpc_param extra[] = {{"name", IOC_RPC_STRING, true, &r.a}};
    int rc = rpc_volume_op(params, NULL, err, &r, "volume", extra, 1);

    if (rc == 0) {
        *result = json_sprintf("%s/%s", r.pool->name, r.a);
    }
    return rc;
}
IOC_RPC_REGISTER("volume_snapshot", rpc_volume_snapshot, "take a read-only snapshot of a volume")

static int
rpc_volume_clone(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_VOL_CLONE, .err = err};
    const struct ioc_rpc_param extra[] = {{"name", IOC_RPC_STRING, true, &r.a}};
    int rc = rpc_volume_op(params, NULL, err, &r, "snapshot", extra, 1);

    if (rc == 0) {
        *result = json_sprintf("%s/%s", r.pool->name, r.a);
    }
    return rc;
}
IOC_RPC_REGISTER("volume_clone", rpc_volume_clone, "create a writable volume from a snapshot")

static int
rpc_volume_list(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *only = NULL;
    const struct ioc_rpc_param spec[] = {{"pool", IOC_RPC_STRING, false, &only}};
    json_t *all;
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc < 0) {
        return rc;
    }
    if (only != NULL) {
        struct pool_req r = {.kind = REQ_VOL_LIST, .err = err};
        rc = pool_lookup(only, &r.pool, err);
        return rc < 0 ? rc : pool_req_sync(&r, result);
    }
    all = json_array();
    for (struct ioc_pool *p = NULL; (p = pool_registry_next(p)) != NULL;) {
        struct pool_req r = {.kind = REQ_VOL_LIST, .err = err, .pool = p};
        json_t *vols = NULL;
        if (pool_req_sync(&r, &vols) == 0) {
            json_array_extend(all, vols);
            json_decref(vols);
        }
    }
    *result = all;
    return 0;
}
IOC_RPC_REGISTER("volume_list", rpc_volume_list, "list volumes and snapshots")

static int
rpc_volume_attr_set(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_ATTR_SET, .err = err};
    const struct ioc_rpc_param extra[] = {
        {"key", IOC_RPC_STRING, true, &r.a},
        {"value", IOC_RPC_STRING, false, &r.b},
    };

    (void)result;
    return rpc_volume_op(params, NULL, err, &r, "volume", extra, 2);
}
IOC_RPC_REGISTER("volume_attr_set", rpc_volume_attr_set, "set or remove a volume attribute")

static int
rpc_volume_attr_get(json_t *params, json_t **result, struct ioc_err *err)
{
    struct pool_req r = {.kind = REQ_ATTR_GET, .err = err};
    const struct ioc_rpc_param extra[] = {{"key", IOC_RPC_STRING, true, &r.a}};

    return rpc_volume_op(params, result, err, &r, "volume", extra, 1);
}
IOC_RPC_REGISTER("volume_attr_get", rpc_volume_attr_get, "read a volume attribute")
