/*
 * target/nbd/nbd_rpc.c - JSON-RPC methods of the NBD target.
 *
 *   nbd_export_add    {name, bdev, read_only?}  -> true
 *   nbd_export_remove {name}                    -> true
 *   nbd_export_list   {}                        -> [{name, bdev, read_only, size, connections}]
 *
 * Thin glue: decoding here, the work in nbd_export.c. Sizes are reported as
 * numbers of bytes so scripts need not parse "64MiB".
 */
#include "ioc/common.h"

#include <errno.h>

#include "rpc/rpc.h"
#include "target/nbd/nbd_internal.h"

static int
rpc_nbd_export_add(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL, *bdev = NULL;
    bool read_only = false;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
        {"bdev", IOC_RPC_STRING, true, &bdev},
        {"read_only", IOC_RPC_BOOL, false, &read_only},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    if (rc != 0) {
        return rc;
    }
    return ioc_nbd_export_add(name, bdev, read_only, err);
}
IOC_RPC_REGISTER("nbd_export_add", rpc_nbd_export_add, "export a bdev over NBD")

static int
rpc_nbd_export_remove(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    if (rc != 0) {
        return rc;
    }
    return ioc_nbd_export_remove(name, err);
}
IOC_RPC_REGISTER("nbd_export_remove", rpc_nbd_export_remove,
                 "remove an NBD export and close its connections")

struct list_ctx {
    json_t *list;
    int rc;
};

static void
list_one(const struct nbd_export *e, void *arg)
{
    struct list_ctx *ctx = arg;
    json_t *item;

    if (ctx->rc != 0) {
        return;
    }
    item = json_pack("{s:s, s:s, s:b, s:I, s:I}", "name", e->name, "bdev",
                     ioc_bdev_name(e->bdev), "read_only", e->read_only, "size",
                     (json_int_t)ioc_bdev_size(e->bdev), "connections",
                     (json_int_t)atomic_load(&e->connections));
    if (item == NULL || json_array_append_new(ctx->list, item) != 0) {
        ctx->rc = -ENOMEM;
    }
}

static int
rpc_nbd_export_list(json_t *params, json_t **result, struct ioc_err *err)
{
    struct list_ctx ctx = {.list = NULL, .rc = 0};
    int rc = ioc_rpc_decode(params, NULL, 0, err);

    if (rc != 0) {
        return rc;
    }
    ctx.list = json_array();
    if (ctx.list == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    nbd_export_foreach(list_one, &ctx);
    if (ctx.rc != 0) {
        json_decref(ctx.list);
        return ioc_err_set(err, ctx.rc, "out of memory");
    }
    *result = ctx.list;
    return 0;
}
IOC_RPC_REGISTER("nbd_export_list", rpc_nbd_export_list, "list NBD exports")
