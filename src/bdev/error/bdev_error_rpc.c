/*
 * bdev/error/bdev_error_rpc.c - bdev_error_create, bdev_error_inject, bdev_error_clear.
 */
#include "ioc/common.h"

#include <errno.h>
#include <string.h>

#include "bdev/bdev.h"
#include "bdev/error/bdev_error.h"
#include "rpc/rpc.h"

static const struct {
    const char *name;
    int value;
} g_errnos[] = {
    {"EIO", EIO},     {"ENOSPC", ENOSPC},       {"ENOMEM", ENOMEM},       {"EINVAL", EINVAL},
    {"EPERM", EPERM}, {"ETIMEDOUT", ETIMEDOUT}, {"ENOTSUP", ENOTSUP},     {"EROFS", EROFS},
    {"EAGAIN", EAGAIN}, {"ECONNRESET", ECONNRESET}, {"ESHUTDOWN", ESHUTDOWN},
};

static int
error_parse_errno(json_t *v, int *out, struct ioc_err *err)
{
    if (v == NULL) {
        *out = -EIO;
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < 4096) {
        *out = -(int)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        for (size_t i = 0; i < IOC_ARRAY_SIZE(g_errnos); i++) {
            if (strcmp(json_string_value(v), g_errnos[i].name) == 0) {
                *out = -g_errnos[i].value;
                return 0;
            }
        }
    }
    return ioc_err_set(err, IOC_RPC_INVALID_PARAMS,
                       "errno: expected a name such as EIO, ENOSPC, ETIMEDOUT, or a number "
                       "0..4095 (0 = delay only)");
}

static int
error_parse_type(const char *s, uint32_t *mask, struct ioc_err *err)
{
    if (s == NULL || strcmp(s, "all") == 0) {
        *mask = 0;
        return 0;
    }
    for (int t = 0; t < IOC_IO_TYPE_COUNT; t++) {
        if (strcmp(s, ioc_io_type_name((enum ioc_io_type)t)) == 0) {
            *mask = 1u << t;
            return 0;
        }
    }
    return ioc_err_set(err, IOC_RPC_INVALID_PARAMS,
                       "io_type: expected read, write, flush, unmap, write_zeroes, "
                       "block_status, prefetch or all, got '%s'",
                       s);
}

static int
rpc_bdev_error_create(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL, *base = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
        {"base", IOC_RPC_STRING, true, &base},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc == 0) {
        rc = ioc_bdev_error_create(name, base, err);
    }
    if (rc == 0) {
        *result = json_string(name);
    }
    return rc;
}
IOC_RPC_REGISTER("bdev_error_create", rpc_bdev_error_create,
                 "stack a fault injector on a bdev")

static int
rpc_bdev_error_inject(json_t *params, json_t **result, struct ioc_err *err)
{
    struct ioc_error_rule rule = {0};
    const char *name = NULL, *type = NULL;
    json_t *errno_v = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
        {"io_type", IOC_RPC_STRING, false, &type},
        {"errno", IOC_RPC_JSON, false, &errno_v},
        {"offset", IOC_RPC_SIZE, false, &rule.offset},
        {"length", IOC_RPC_SIZE, false, &rule.length},
        {"after", IOC_RPC_U64, false, &rule.after},
        {"count", IOC_RPC_U64, false, &rule.count},
        {"delay_us", IOC_RPC_U64, false, &rule.delay_us},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    if (rc == 0) {
        rc = error_parse_type(type, &rule.io_types, err);
    }
    if (rc == 0) {
        rc = error_parse_errno(errno_v, &rule.error, err);
    }
    if (rc == 0) {
        rc = ioc_bdev_error_inject(name, &rule, err);
    }
    return rc;
}
IOC_RPC_REGISTER("bdev_error_inject", rpc_bdev_error_inject,
                 "fail or delay matching IO on an error bdev")

static int
rpc_bdev_error_clear(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    return rc == 0 ? ioc_bdev_error_clear(name, err) : rc;
}
IOC_RPC_REGISTER("bdev_error_clear", rpc_bdev_error_clear, "remove every injection rule")
