/*
 * bdev/bdev_rpc.c - RPC methods common to every bdev: bdev_list, bdev_delete.
 * Module-specific create methods live next to each module (bdev_<m>_rpc.c).
 */
#include "ioc/common.h"

#include <errno.h>
#include <string.h>

#include "bdev/bdev_module.h"
#include "rpc/rpc.h"

static void
bdev_list_one(struct ioc_bdev *bdev, void *arg)
{
    json_t *arr = arg;
    json_t *obj = json_object();
    json_t *types = json_array();

    json_object_set_new(obj, "name", json_string(bdev->name));
    json_object_set_new(obj, "module", json_string(bdev->module_name));
    json_object_set_new(obj, "size", json_integer((json_int_t)bdev->size));
    json_object_set_new(obj, "block_size", json_integer(bdev->block_size));
    json_object_set_new(obj, "num_blocks", json_integer((json_int_t)(bdev->size / bdev->block_size)));
    /* Holders other than the registry itself: exports, stacked bdevs, connections. */
    json_object_set_new(obj, "claims", json_integer(bdev->refs - 1));
    for (int t = 0; t < IOC_IO_TYPE_COUNT; t++) {
        if (ioc_bdev_supports(bdev, (enum ioc_io_type)t)) {
            json_array_append_new(types, json_string(ioc_io_type_name((enum ioc_io_type)t)));
        }
    }
    json_object_set_new(obj, "io_types", types);
    if (bdev->ops->dump_json != NULL) {
        bdev->ops->dump_json(bdev, obj);
    }
    json_array_append_new(arr, obj);
}

static int
rpc_bdev_list(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, false, &name},
    };
    json_t *arr;
    int rc;

    rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);
    if (rc < 0) {
        return rc;
    }
    arr = json_array();
    ioc_bdev_foreach(bdev_list_one, arr);
    if (name != NULL) {
        size_t i;
        json_t *v;
        json_t *one = NULL;
        json_array_foreach(arr, i, v) {
            if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0) {
                one = json_incref(v);
            }
        }
        json_decref(arr);
        if (one == NULL) {
            return ioc_err_set(err, -ENOENT, "name: no bdev named '%s'", name);
        }
        arr = json_array();
        json_array_append_new(arr, one);
    }
    *result = arr;
    return 0;
}
IOC_RPC_REGISTER("bdev_list", rpc_bdev_list, "list block devices")

static int
rpc_bdev_delete(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
    };
    int rc;

    (void)result;
    rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);
    if (rc < 0) {
        return rc;
    }
    return ioc_bdev_delete(name, err);
}
IOC_RPC_REGISTER("bdev_delete", rpc_bdev_delete, "delete a block device that nothing uses")
