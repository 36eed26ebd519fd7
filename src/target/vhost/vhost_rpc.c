/*
 * target/vhost/vhost_rpc.c - JSON-RPC methods of the vhost-user-blk target.
 *
 *   vhost_blk_export_add    {socket, bdev, num_queues?, read_only?} -> true
 *   vhost_blk_export_remove {socket}                                -> true
 *   vhost_blk_export_list   {}  -> [{socket, bdev, num_queues, read_only, connections}]
 *
 * Thin glue: decoding here, the work in vhost_target.c.
 */
#include "ioc/common.h"

#include <errno.h>

#include "rpc/rpc.h"
#include "target/vhost/vhost.h"

static int
rpc_vhost_blk_export_add(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *socket = NULL, *bdev = NULL;
    uint32_t num_queues = 1;
    bool read_only = false;
    const struct ioc_rpc_param spec[] = {
        {"socket", IOC_RPC_STRING, true, &socket},
        {"bdev", IOC_RPC_STRING, true, &bdev},
        {"num_queues", IOC_RPC_U32, false, &num_queues},
        {"read_only", IOC_RPC_BOOL, false, &read_only},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    if (rc != 0) {
        return rc;
    }
    if (num_queues == 0 || num_queues > 16) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "num_queues: expected 1..16, got %u",
                           num_queues);
    }
    return ioc_vhost_export_add(socket, bdev, num_queues, read_only, err);
}
IOC_RPC_REGISTER("vhost_blk_export_add", rpc_vhost_blk_export_add,
                 "export a bdev as vhost-user-blk on a unix socket")

static int
rpc_vhost_blk_export_remove(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *socket = NULL;
    const struct ioc_rpc_param spec[] = {
        {"socket", IOC_RPC_STRING, true, &socket},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    if (rc != 0) {
        return rc;
    }
    return ioc_vhost_export_remove(socket, err);
}
IOC_RPC_REGISTER("vhost_blk_export_remove", rpc_vhost_blk_export_remove,
                 "remove a vhost-user-blk export and disconnect its clients")

struct list_ctx {
    json_t *list;
    int rc;
};

static void
list_one(const struct ioc_vhost_export_info *info, void *arg)
{
    struct list_ctx *ctx = arg;
    json_t *item;

    if (ctx->rc != 0) {
        return;
    }
    item = json_pack("{s:s, s:s, s:I, s:b, s:I}", "socket", info->socket, "bdev", info->bdev,
                     "num_queues", (json_int_t)info->num_queues, "read_only", info->read_only,
                     "connections", (json_int_t)info->connections);
    if (item == NULL || json_array_append_new(ctx->list, item) != 0) {
        ctx->rc = -ENOMEM;
    }
}

static int
rpc_vhost_blk_export_list(json_t *params, json_t **result, struct ioc_err *err)
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
    ioc_vhost_export_foreach(list_one, &ctx);
    if (ctx.rc != 0) {
        json_decref(ctx.list);
        return ioc_err_set(err, ctx.rc, "out of memory");
    }
    *result = ctx.list;
    return 0;
}
IOC_RPC_REGISTER("vhost_blk_export_list", rpc_vhost_blk_export_list, "list vhost-user-blk exports")
