/*
 * daemon/daemon_rpc.c - RPC methods about the daemon itself: reactor
 * statistics (how busy each reactor is, its adaptive spin window) and logging.
 */
#include "ioc/common.h"

#include <errno.h>

#include "core/log.h"
#include "core/reactor.h"
#include "rpc/rpc.h"

static int
rpc_reactor_stats(json_t *params, json_t **result, struct ioc_err *err)
{
    json_t *arr;
    int rc = ioc_rpc_decode(params, NULL, 0, err);

    if (rc < 0) {
        return rc;
    }
    arr = json_array();
    for (unsigned i = 0; i < ioc_reactor_count(); i++) {
        struct ioc_reactor_stats st;
        json_t *o = json_object();

        ioc_reactor_get_stats(ioc_reactor_get(i), &st);
        json_object_set_new(o, "id", json_integer(i));
        json_object_set_new(o, "iterations", json_integer((json_int_t)st.iterations));
        json_object_set_new(o, "busy_iterations", json_integer((json_int_t)st.busy_iterations));
        json_object_set_new(o, "sleeps", json_integer((json_int_t)st.sleeps));
        json_object_set_new(o, "cqes", json_integer((json_int_t)st.cqes));
        json_object_set_new(o, "msgs", json_integer((json_int_t)st.msgs));
        json_object_set_new(o, "busy_ns", json_integer((json_int_t)st.busy_ns));
        json_object_set_new(o, "idle_ns", json_integer((json_int_t)st.idle_ns));
        json_object_set_new(o, "spin_window_ns", json_integer((json_int_t)st.spin_window_ns));
        json_object_set_new(o, "spin_cap_ns", json_integer((json_int_t)st.spin_cap_ns));
        json_object_set_new(o, "contention_samples",
                            json_integer((json_int_t)st.contention_samples));
        json_object_set_new(o, "contended_samples",
                            json_integer((json_int_t)st.contended_samples));
        json_object_set_new(o, "holds", json_integer((json_int_t)st.holds));
        json_object_set_new(o, "inflight", json_integer((json_int_t)st.inflight));
        json_array_append_new(arr, o);
    }
    *result = arr;
    return 0;
}
IOC_RPC_REGISTER("reactor_stats", rpc_reactor_stats, "per-reactor counters")

static int
rpc_log_set_level(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *level = NULL;
    const struct ioc_rpc_param spec[] = {
        {"level", IOC_RPC_STRING, true, &level},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    if (rc == 0 && ioc_log_set_level(level) < 0) {
        rc = ioc_err_set(err, IOC_RPC_INVALID_PARAMS,
                         "level: expected err, warn, notice, info or debug, got '%s'", level);
    }
    return rc;
}
IOC_RPC_REGISTER("log_set_level", rpc_log_set_level, "set the log level")

static int
rpc_log_set_debug(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *component = NULL;
    bool on = true;
    const struct ioc_rpc_param spec[] = {
        {"component", IOC_RPC_STRING, true, &component},
        {"on", IOC_RPC_BOOL, false, &on},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    (void)result;
    if (rc == 0) {
        ioc_log_set_debug(component, on);
        if (on) {
            g_ioc_log_level = IOC_LOG_DEBUG;
        }
    }
    return rc;
}
IOC_RPC_REGISTER("log_set_debug", rpc_log_set_debug, "switch debug output of a component")
