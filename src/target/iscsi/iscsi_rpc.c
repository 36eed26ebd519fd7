/*
 * target/iscsi/iscsi_rpc.c - JSON-RPC methods of the iSCSI target.
 *
 *   iscsi_target_create {iqn, luns: [{lun, bdev}], allowed_initiators?, chap?} -> true
 *   iscsi_target_delete {iqn}                                                 -> true
 *   iscsi_target_list   {}  -> [{iqn, luns, allowed_initiators, chap, mutual_chap,
 *                                sessions, session_list: [...], connections: [...]}]
 *   iscsi_options_set   {max_recv_data_segment_length?, max_burst_length?,
 *                        first_burst_length?, initial_r2t?, immediate_data?,
 *                        max_outstanding_r2t?, allow_digests?}            -> the options
 *
 * Thin glue: the work is in iscsi_tgt.c. Options apply to logins that start
 * after the call; sessions keep what they negotiated.
 */
#include "ioc/common.h"

#include <errno.h>
#include <string.h>

#include "rpc/rpc.h"
#include "target/iscsi/iscsi_internal.h"

void iscsi_target_connections(json_t **conns, json_t **sessions);

/* The entries of `all` whose "target" is iqn (a new array). */
static json_t *
rpc_filter_target(json_t *all, const char *iqn)
{
    json_t *mine = json_array(), *c;
    size_t j;

    json_array_foreach(all, j, c) {
        if (strcmp(json_string_value(json_object_get(c, "target")), iqn) == 0) {
            json_array_append(mine, c);
        }
    }
    return mine;
}

static int
rpc_iscsi_target_create(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)result;
    if (!json_is_object(params)) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "params: expected an object");
    }
    return ioc_iscsi_tgt_create(params, err);
}
IOC_RPC_REGISTER("iscsi_target_create", rpc_iscsi_target_create,
                 "export bdevs as the LUNs of an iSCSI target")

static int
rpc_iscsi_target_delete(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *iqn = NULL;
    const struct ioc_rpc_param spec[] = {
        {"iqn", IOC_RPC_STRING, true, &iqn},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    if (rc != 0) {
        return rc;
    }
    return ioc_iscsi_tgt_delete(iqn, err);
}
IOC_RPC_REGISTER("iscsi_target_delete", rpc_iscsi_target_delete,
                 "delete an iSCSI target and close its sessions")

static int
rpc_iscsi_target_list(json_t *params, json_t **result, struct ioc_err *err)
{
    int rc = ioc_rpc_decode(params, NULL, 0, err);
    json_t *list, *conns, *sessions, *tgt;
    size_t i;

    if (rc != 0) {
        return rc;
    }
    list = ioc_iscsi_tgt_list();
    iscsi_target_connections(&conns, &sessions);
    json_array_foreach(list, i, tgt) {
        const char *iqn = json_string_value(json_object_get(tgt, "iqn"));

        json_object_set_new(tgt, "session_list", rpc_filter_target(sessions, iqn));
        json_object_set_new(tgt, "connections", rpc_filter_target(conns, iqn));
    }
    json_decref(conns);
    json_decref(sessions);
    *result = list;
    return 0;
}
IOC_RPC_REGISTER("iscsi_target_list", rpc_iscsi_target_list,
                 "list iSCSI targets with their sessions")

static json_t *
opts_json(void)
{
    const struct iscsi_opts *o = &g_iscsi_opts;

    return json_pack("{s:I, s:I, s:I, s:b, s:b, s:I, s:b}", "max_recv_data_segment_length",
                     (json_int_t)o->max_recv_dsl, "max_burst_length", (json_int_t)o->max_burst,
                     "first_burst_length", (json_int_t)o->first_burst, "initial_r2t",
                     o->initial_r2t, "immediate_data", o->immediate_data,
                     "max_outstanding_r2t", (json_int_t)o->max_outstanding_r2t,
                     "allow_digests", o->allow_digests);
}

static int
rpc_iscsi_options_set(json_t *params, json_t **result, struct ioc_err *err)
{
    struct iscsi_opts o = g_iscsi_opts;
    const struct ioc_rpc_param spec[] = {
        {"max_recv_data_segment_length", IOC_RPC_U32, false, &o.max_recv_dsl},
        {"max_burst_length", IOC_RPC_U32, false, &o.max_burst},
        {"first_burst_length", IOC_RPC_U32, false, &o.first_burst},
        {"initial_r2t", IOC_RPC_BOOL, false, &o.initial_r2t},
        {"immediate_data", IOC_RPC_BOOL, false, &o.immediate_data},
        {"max_outstanding_r2t", IOC_RPC_U32, false, &o.max_outstanding_r2t},
        {"allow_digests", IOC_RPC_BOOL, false, &o.allow_digests},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc != 0) {
        return rc;
    }
    if (o.max_recv_dsl < 512 || o.max_recv_dsl > ISCSI_RDSL_MAX) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS,
                           "max_recv_data_segment_length: expected 512..%u", ISCSI_RDSL_MAX);
    }
    if (o.max_burst < 512 || o.max_burst > ISCSI_MAX_XFER || o.first_burst < 512 ||
        o.first_burst > o.max_burst) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS,
                           "max_burst_length: expected 512..%u and first_burst_length "
                           "512..max_burst_length", ISCSI_MAX_XFER);
    }
    if (o.max_outstanding_r2t < 1 || o.max_outstanding_r2t > 1) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "max_outstanding_r2t: only 1 is "
                           "supported");
    }
    g_iscsi_opts = o;
    *result = opts_json();
    return 0;
}
IOC_RPC_REGISTER("iscsi_options_set", rpc_iscsi_options_set,
                 "set iSCSI negotiation defaults for new logins")
