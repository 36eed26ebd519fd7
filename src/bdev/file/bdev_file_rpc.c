/*
 * bdev/file/bdev_file_rpc.c - bdev_file_create.
 */
#include "ioc/common.h"

#include "bdev/file/bdev_file.h"
#include "rpc/rpc.h"

static int
rpc_bdev_file_create(json_t *params, json_t **result, struct ioc_err *err)
{
    struct ioc_bdev_file_opts opts = {0};
    bool map = true;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &opts.name},
        {"path", IOC_RPC_STRING, true, &opts.path},
        {"size", IOC_RPC_SIZE, false, &opts.size},
        {"direct", IOC_RPC_BOOL, false, &opts.direct},
        {"block_size", IOC_RPC_U32, false, &opts.block_size},
        {"map", IOC_RPC_BOOL, false, &map},
    };
    int rc;

    rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);
    if (rc < 0) {
        return rc;
    }
    opts.no_map = !map;
    rc = ioc_bdev_file_create(&opts, err);
    if (rc == 0) {
        *result = json_string(opts.name);
    }
    return rc;
}
IOC_RPC_REGISTER("bdev_file_create", rpc_bdev_file_create,
                 "serve a regular file or block device through io_uring")
