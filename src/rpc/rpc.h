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

/**
 * Register a method; called from constructors via IOC_RPC_REGISTER, before
 * main() and so before the server starts (the registry is not locked).
 * method and summary are borrowed for the life of the process (string
 * literals). A name registered twice aborts at startup.
 */
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
 * Decode params against spec (nspec entries; spec may be NULL when 0, which
 * refuses any parameter). params NULL means none were given. Refuses, with
 * IOC_RPC_INVALID_PARAMS in the return value and err->code, and a message
 * naming the field and what would be right:
 *   - params not an object:   "params: expected an object"
 *   - an unknown field:       "nme: unknown parameter; expected one of: name, size, block_size"
 *   - a missing required one: "name: required"  (JSON null counts as missing,
 *                                                 except for IOC_RPC_JSON)
 *   - a wrong type or range:  "size: expected a size such as 1GiB or a number of bytes,
 *                              got \"12XB\""
 * Unknown fields are checked first. STRING refuses embedded NUL characters;
 * U32 is 0..UINT32_MAX, U64 0..INT64_MAX (JSON integers); SIZE takes an
 * integer >= 0 or a string for ioc_size_parse(). Outputs of absent optional
 * fields are left untouched, so initialise them to their defaults. On error
 * some outputs may already be written. Strings and JSON values are borrowed
 * from params (valid while the handler runs). Returns 0 or IOC_RPC_INVALID_PARAMS:
 * a handler simply returns it.
 */
int ioc_rpc_decode(json_t *params, const struct ioc_rpc_param *spec, size_t nspec,
                   struct ioc_err *err);

/* ---- server ---- */

/**
 * Start the server thread listening on a unix socket at path (NULL:
 * IOC_RPC_DEFAULT_SOCKET), mode 0660. A socket file nobody answers on is a
 * leftover and replaced. Returns 0 or a negative errno with err filled:
 * -EADDRINUSE (another server answers on path), -EEXIST (path is not a
 * socket), -EALREADY (already started), -ENAMETOOLONG, or the errno of
 * socket/bind/listen. The thread blocks all signals. Call from the main
 * thread; one server per process.
 */
int ioc_rpc_server_start(const char *path, struct ioc_err *err);

/**
 * Stop the server thread (a request being handled finishes first), close
 * clients, unlink the socket if it is still the one we bound. Idempotent.
 * Must not be called from a handler (it joins the thread handlers run on).
 */
void ioc_rpc_server_stop(void);

/**
 * Handle one request object in-process (no socket): used by the server and by
 * unit tests. request is borrowed. A JSON-RPC batch (array of requests) gets
 * an array of the responses. Returns a new reference to the response, or
 * NULL for a notification (no "id": it runs, but is never answered, not even
 * with an error) or a batch of notifications. Requests that are not objects,
 * lack a string "method" or have "jsonrpc" other than "2.0" get -32600;
 * params other than an object or absent get -32602; an unknown method gets
 * -32601 with a close match suggested.
 */
json_t *ioc_rpc_handle(json_t *request);

#endif
