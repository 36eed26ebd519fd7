/*
 * bdev/nbd_client/bdev_nbd_client_rpc.c - bdev_nbd_client_create.
 */
#include "ioc/common.h"

#include "bdev/nbd_client/bdev_nbd_client.h"
#include "rpc/rpc.h"

static int
rpc_bdev_nbd_client_create(json_t *params, json_t **result, struct ioc_err *err)
{
    struct ioc_bdev_nbd_client_opts opts = {.io_timeout_s = IOC_NBD_CLIENT_DEFAULT_TIMEOUT_S};
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &opts.name},
        {"uri", IOC_RPC_STRING, true, &opts.uri},
        {"io_timeout", IOC_RPC_U32, false, &opts.io_timeout_s},
    };
    int rc;

    rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);
    if (rc < 0) {
        return rc;
    }
    if (opts.io_timeout_s == 0) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS,
                           "io_timeout: must be 1 to %u seconds, got 0",
                           IOC_NBD_CLIENT_MAX_TIMEOUT_S);
    }
    rc = ioc_bdev_nbd_client_create(&opts, err);
    if (rc == 0) {
        *result = json_string(opts.name);
    }
    return rc;
}
IOC_RPC_REGISTER("bdev_nbd_client_create", rpc_bdev_nbd_client_create,
                 "a bdev backed by a remote NBD export")
