/*
 * bdev/malloc/bdev_malloc_rpc.c - bdev_malloc_create.
 */
#include "ioc/common.h"

#include "bdev/malloc/bdev_malloc.h"
#include "rpc/rpc.h"

static int
rpc_bdev_malloc_create(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    uint64_t size = 0;
    uint32_t block_size = 512;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
        {"size", IOC_RPC_SIZE, true, &size},
        {"block_size", IOC_RPC_U32, false, &block_size},
    };
    int rc;

    rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);
    if (rc < 0) {
        return rc;
    }
    rc = ioc_bdev_malloc_create(name, size, block_size, err);
    if (rc == 0) {
        *result = json_string(name);
    }
    return rc;
}
IOC_RPC_REGISTER("bdev_malloc_create", rpc_bdev_malloc_create, "create a RAM disk")
