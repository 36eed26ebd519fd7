/*
 * rpc/rpc.h - the node's local API: JSON-RPC 2.0 on a unix socket.
 *
 * Methods are registered at load time with IOC_RPC_REGISTER and run on the
 * RPC server's own thread (never on a reactor), one request at a time, so a
 * handler may block briefly (open a file) and may use
 * ioc_reactor_call_sync() to touch reactor-owned state. The server accepts
 * several clients; requests are JSON objects, optionally newline-separated;
 * each response is one JSON object followed by "\n".
 *
 * Errors: a handler returns 0 and sets *result (a new reference; NULL means
 * JSON true), or returns a negative errno and fills err. The server sends
 * {"code": <negative errno>, "message": err->msg}. Parameter errors use
 * JSON-RPC's -32602 (invalid params) with a message naming the field.
 */
#ifndef IOC_RPC_RPC_H
#define IOC_RPC_RPC_H

#include "ioc/common.h"

#include <jansson.h>

#include "lib/err.h"

/* Where iocd listens and iocctl connects unless told otherwise (-s / --rpc-socket). */
#define IOC_RPC_DEFAULT_SOCKET "/var/tmp/iocd.sock"

/* JSON-RPC 2.0 reserved codes. Handler errors are negative errnos (> -4096). */
#define IOC_RPC_PARSE_ERROR      (-32700)
#define IOC_RPC_INVALID_REQUEST  (-32600)
#define IOC_RPC_METHOD_NOT_FOUND (-32601)
#define IOC_RPC_INVALID_PARAMS   (-32602)

/**
 * A method handler. params is borrowed (an object; {} when absent).
 * On success return 0 and set *result to a new reference (or leave NULL for
 * `true`). On failure return a negative errno and fill err.
 */
typedef int (*ioc_rpc_handler)(json_t *params, json_t **result, struct ioc_err *err);

/** Register a method; called from constructors via IOC_RPC_REGISTER. */
void ioc_rpc_register(const char *method, ioc_rpc_handler handler, const char *summary);

#define IOC_RPC_REGISTER(method, handler, summary)                                   \
    __attribute__((constructor)) static void ioc_rpc_register_##handler(void)        \
    {                                                                                \
        ioc_rpc_register((method), (handler), (summary));                            \
    }

/* ---- parameter decoding ---- */

enum ioc_rpc_param_type {
    IOC_RPC_STRING, /* out: const char ** (borrowed from params) */
    IOC_RPC_BOOL,   /* out: bool * */
    IOC_RPC_U32,    /* out: uint32_t * */
    IOC_RPC_U64,    /* out: uint64_t * */
    IOC_RPC_SIZE,   /* out: uint64_t *; a number of bytes or a string such as "1GiB" */
    IOC_RPC_JSON,   /* out: json_t ** (borrowed), any JSON value */
};

struct ioc_rpc_param {
    const char *name;
    enum ioc_rpc_param_type type;
    bool required;
    void *out;      /* left untouched when an optional parameter is absent */
};

/**
 * Decode params against spec. Refuses (IOC_RPC_INVALID_PARAMS, message naming
 * the field and what would be right): params not an object, a missing required
 * field, a field of the wrong type or out of range, an unknown field (with the
 * list of known ones). Returns 0 or IOC_RPC_INVALID_PARAMS.
 */
int ioc_rpc_decode(json_t *params, const struct ioc_rpc_param *spec, size_t nspec,
                   struct ioc_err *err);

/* ---- server ---- */

/**
 * Start the server thread listening on a unix socket at path (an existing
 * stale socket file is replaced; a live one is -EADDRINUSE). Returns 0 or -errno.
 */
int ioc_rpc_server_start(const char *path, struct ioc_err *err);

/** Stop the server thread, close clients, unlink the socket. Idempotent. */
void ioc_rpc_server_stop(void);

/**
 * Handle one request object in-process (no socket): used by the server and by
 * unit tests. Returns a new reference to the response object, or NULL for a
 * notification (no "id").
 */
json_t *ioc_rpc_handle(json_t *request);

#endif
