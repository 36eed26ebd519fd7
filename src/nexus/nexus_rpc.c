/*
 * nexus/nexus_rpc.c - nexus_create, nexus_destroy, nexus_list and the
 * nexus_child_* methods.
 */
#include "ioc/common.h"

#include <errno.h>

#include "nexus/nexus.h"
#include "rpc/rpc.h"

static int
rpc_nexus_children(json_t *arr, const char **out, unsigned *n, struct ioc_err *err)
{
    size_t i;
    json_t *v;

    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > IOC_NEXUS_MAX_CHILDREN) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS,
                           "children: expected an array of 1..%d bdev names or nbd:// URIs",
                           IOC_NEXUS_MAX_CHILDREN);
    }
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v)) {
            return ioc_err_set(err, IOC_RPC_INVALID_PARAMS,
                               "children[%zu]: expected a bdev name or nbd:// URI", i);
        }
        out[i] = json_string_value(v);
    }
    *n = (unsigned)json_array_size(arr);
    return 0;
}

static int
rpc_nexus_create(json_t *params, json_t **result, struct ioc_err *err)
{
    struct ioc_nexus_opts opts = {0};
    const char *children[IOC_NEXUS_MAX_CHILDREN];
    json_t *arr = NULL;
    uint32_t io_timeout = 0;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &opts.name},
        {"size", IOC_RPC_SIZE, false, &opts.size},
        {"children", IOC_RPC_JSON, true, &arr},
        {"generation", IOC_RPC_U64, false, &opts.generation},
        {"state_path", IOC_RPC_STRING, false, &opts.state_path},
        {"segment_size", IOC_RPC_SIZE, false, &opts.segment_size},
        {"io_timeout", IOC_RPC_U32, false, &io_timeout},
        {"rebuild_rate", IOC_RPC_SIZE, false, &opts.rebuild_rate},
        {"rebuild_verify", IOC_RPC_BOOL, false, &opts.rebuild_verify},
        {"no_auto_return", IOC_RPC_BOOL, false, &opts.no_auto_return},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc == 0) {
        rc = rpc_nexus_children(arr, children, &opts.nr_children, err);
    }
    if (rc < 0) {
        return rc;
    }
    opts.children = children;
    opts.io_timeout_s = io_timeout;
    rc = ioc_nexus_create(&opts, err);
    if (rc == 0) {
        *result = json_string(opts.name);
    }
    return rc;
}
IOC_RPC_REGISTER("nexus_create", rpc_nexus_create, "create a replicated volume over children")

static int
rpc_nexus_destroy(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    bool purge = true;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
        {"purge", IOC_RPC_BOOL, false, &purge},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    return rc == 0 ? ioc_nexus_destroy(name, purge, err) : rc;
}
IOC_RPC_REGISTER("nexus_destroy", rpc_nexus_destroy, "delete a nexus")

static int
rpc_nexus_list(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, false, &name},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    return rc == 0 ? ioc_nexus_list(name, result, err) : rc;
}
IOC_RPC_REGISTER("nexus_list", rpc_nexus_list, "nexuses, their children and rebuilds")

typedef int (*child_fn)(const char *name, const char *uri, struct ioc_err *err);

static int
rpc_nexus_child(json_t *params, struct ioc_err *err, child_fn fn)
{
    const char *name = NULL, *uri = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
        {"uri", IOC_RPC_STRING, true, &uri},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    return rc == 0 ? fn(name, uri, err) : rc;
}

static int
rpc_nexus_child_add(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)result;
    return rpc_nexus_child(params, err, ioc_nexus_child_add);
}
IOC_RPC_REGISTER("nexus_child_add", rpc_nexus_child_add, "add a child; it is rebuilt")

static int
rpc_nexus_child_remove(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)result;
    return rpc_nexus_child(params, err, ioc_nexus_child_remove);
}
IOC_RPC_REGISTER("nexus_child_remove", rpc_nexus_child_remove, "remove a child")

static int
rpc_nexus_child_fault(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)result;
    return rpc_nexus_child(params, err, ioc_nexus_child_fault);
}
IOC_RPC_REGISTER("nexus_child_fault", rpc_nexus_child_fault, "take a child out of the write set")

static int
rpc_nexus_child_online(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)result;
    return rpc_nexus_child(params, err, ioc_nexus_child_online);
}
IOC_RPC_REGISTER("nexus_child_online", rpc_nexus_child_online,
                 "bring a faulted child back (rebuilt first)")

static int
rpc_nexus_quiesce(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    uint32_t timeout_ms = 0;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
        {"timeout_ms", IOC_RPC_U32, false, &timeout_ms},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    return rc == 0 ? ioc_nexus_quiesce(name, timeout_ms, err) : rc;
}
IOC_RPC_REGISTER("nexus_quiesce", rpc_nexus_quiesce,
                 "hold new writes until nexus_resume (for a crash-consistent snapshot)")

static int
rpc_nexus_resume(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    return rc == 0 ? ioc_nexus_resume(name, err) : rc;
}
IOC_RPC_REGISTER("nexus_resume", rpc_nexus_resume, "release the writes held by nexus_quiesce")
