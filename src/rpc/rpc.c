/*
 * rpc/rpc.c - method registry, request dispatch and parameter decoding.
 *
 * The registry is a sorted array filled by constructors (IOC_RPC_REGISTER)
 * before main() runs, and only read afterwards, so lookups need no lock and
 * rpc_get_methods gets its sorted list for free. Registering after the server
 * has started is not supported: the array may move under the server thread.
 *
 * ioc_rpc_handle() turns one parsed request (or a JSON-RPC batch) into one
 * response object. It does no I/O, so the whole protocol can be unit tested
 * without sockets; rpc_server.c only frames bytes into JSON values.
 *
 * Parameters are decoded against a small table (struct ioc_rpc_param) rather
 * than with json_unpack(): json_unpack's messages ("Expected integer, got
 * string") do not name the field nor say what a right value looks like, and
 * it cannot refuse unknown fields with the list of known ones. A generated
 * decoder per method (from schema/rpc.json) was considered and left for
 * later: the table is as short to write and keeps handlers readable.
 */
#include "ioc/common.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "lib/size.h"
#include "rpc/rpc.h"

struct rpc_method {
    const char *name;
    ioc_rpc_handler handler;
    const char *summary;
};

static struct rpc_method *g_rpc_methods;
static size_t g_rpc_nmethods;

/* ---- registry ---- */

void
ioc_rpc_register(const char *method, ioc_rpc_handler handler, const char *summary)
{
    struct rpc_method *m;
    size_t pos = 0;

    assert(method != NULL && handler != NULL);
    while (pos < g_rpc_nmethods && strcmp(g_rpc_methods[pos].name, method) < 0) {
        pos++;
    }
    if (pos < g_rpc_nmethods && strcmp(g_rpc_methods[pos].name, method) == 0) {
        /* Two handlers for one name is a build mistake; fail loudly at startup. */
        fprintf(stderr, "ioc: rpc method %s registered twice\n", method);
        abort();
    }
    m = realloc(g_rpc_methods, (g_rpc_nmethods + 1) * sizeof(*m));
    if (m == NULL) {
        fprintf(stderr, "ioc: out of memory registering rpc method %s\n", method);
        abort();
    }
    memmove(&m[pos + 1], &m[pos], (g_rpc_nmethods - pos) * sizeof(*m));
    m[pos] = (struct rpc_method){.name = method, .handler = handler, .summary = summary};
    g_rpc_methods = m;
    g_rpc_nmethods++;
}

static int
rpc_method_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct rpc_method *)elem)->name);
}

static const struct rpc_method *
rpc_method_find(const char *name)
{
    if (g_rpc_nmethods == 0) {
        return NULL;
    }
    return bsearch(name, g_rpc_methods, g_rpc_nmethods, sizeof(*g_rpc_methods), rpc_method_cmp);
}

/* ---- "did you mean" ---- */

/* Edit distance (insert, delete, substitute) between two short names. */
static size_t
rpc_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[64];
    size_t diag, up;

    if (la >= IOC_ARRAY_SIZE(row) || lb >= IOC_ARRAY_SIZE(row)) {
        return SIZE_MAX;
    }
    for (size_t j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            up = row[j];
            row[j] = IOC_MIN(IOC_MIN(row[j] + 1, row[j - 1] + 1),
                             diag + (a[i - 1] != b[j - 1] ? 1u : 0u));
            diag = up;
        }
    }
    return row[lb];
}

/*
 * The closest of names[0..n) to word, or NULL when nothing is close enough
 * to be a plausible typo (at most a third of the word's length, minimum 2).
 */
static const char *
rpc_closest(const char *word, const char *const *names, size_t n)
{
    size_t best = SIZE_MAX, limit = IOC_MAX(strlen(word) / 3, (size_t)2);
    const char *match = NULL;

    for (size_t i = 0; i < n; i++) {
        size_t d = rpc_edit_distance(word, names[i]);
        if (d < best) {
            best = d;
            match = names[i];
        }
    }
    return best <= limit ? match : NULL;
}

static const char *
rpc_method_suggest(const char *name)
{
    const char **names = calloc(g_rpc_nmethods + 1, sizeof(*names));
    const char *match;

    if (names == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < g_rpc_nmethods; i++) {
        names[i] = g_rpc_methods[i].name;
    }
    match = rpc_closest(name, names, g_rpc_nmethods);
    free(names);
    return match;
}

/* ---- parameter decoding ---- */

/* A short rendering of a JSON value for error messages: `"12XB"`, `-1`, `[...]`. */
static const char *
rpc_value_repr(const json_t *v, char *buf, size_t len)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

    if (s == NULL) {
        snprintf(buf, len, "(unprintable)");
        return buf;
    }
    if (strlen(s) >= len && len > 4) {
        snprintf(buf, len, "%.*s...", (int)(len - 4), s);
    } else {
        snprintf(buf, len, "%s", s);
    }
    free(s);
    return buf;
}

static int
rpc_decode_fail(struct ioc_err *err, const struct ioc_rpc_param *p, const char *want,
                const json_t *v)
{
    char got[64];

    return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "%s: expected %s, got %s", p->name, want,
                       rpc_value_repr(v, got, sizeof(got)));
}

static int
rpc_decode_string(const struct ioc_rpc_param *p, json_t *v, struct ioc_err *err)
{
    if (!json_is_string(v)) {
        return rpc_decode_fail(err, p, "a string", v);
    }
    /* jansson allows "\u0000" inside strings; a C consumer would silently truncate. */
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "%s: must not contain a NUL character",
                           p->name);
    }
    *(const char **)p->out = json_string_value(v);
    return 0;
}

static int
rpc_decode_integer(const struct ioc_rpc_param *p, json_t *v, uint64_t max, struct ioc_err *err)
{
    char want[64];

    snprintf(want, sizeof(want), "an integer from 0 to %" PRIu64, max);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max) {
        return rpc_decode_fail(err, p, want, v);
    }
    if (p->type == IOC_RPC_U32) {
        *(uint32_t *)p->out = (uint32_t)json_integer_value(v);
    } else {
        *(uint64_t *)p->out = (uint64_t)json_integer_value(v);
    }
    return 0;
}

static int
rpc_decode_size(const struct ioc_rpc_param *p, json_t *v, struct ioc_err *err)
{
    static const char want[] = "a size such as 1GiB or a number of bytes";
    uint64_t bytes;
    int rc;

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *(uint64_t *)p->out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v)) {
        return rpc_decode_fail(err, p, want, v);
    }
    rc = ioc_size_parse(json_string_value(v), &bytes);
    if (rc == -ERANGE) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "%s: %s does not fit in 64 bits", p->name,
                           json_string_value(v));
    }
    if (rc != 0) {
        return rpc_decode_fail(err, p, want, v);
    }
    *(uint64_t *)p->out = bytes;
    return 0;
}

static int
rpc_decode_one(const struct ioc_rpc_param *p, json_t *v, struct ioc_err *err)
{
    switch (p->type) {
    case IOC_RPC_STRING:
        return rpc_decode_string(p, v, err);
    case IOC_RPC_BOOL:
        if (!json_is_boolean(v)) {
            return rpc_decode_fail(err, p, "true or false", v);
        }
        *(bool *)p->out = json_is_true(v);
        return 0;
    case IOC_RPC_U32:
        return rpc_decode_integer(p, v, UINT32_MAX, err);
    case IOC_RPC_U64:
        return rpc_decode_integer(p, v, INT64_MAX, err);
    case IOC_RPC_SIZE:
        return rpc_decode_size(p, v, err);
    case IOC_RPC_JSON:
        *(json_t **)p->out = v;
        return 0;
    }
    assert(!"unknown ioc_rpc_param_type");
    return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "%s: internal error: bad spec", p->name);
}

/* Refuse a field not in spec, listing the known ones. */
static int
rpc_decode_unknown(const char *key, const struct ioc_rpc_param *spec, size_t nspec,
                   struct ioc_err *err)
{
    char known[IOC_ERR_MSG_MAX / 2] = "";
    size_t off = 0;

    for (size_t i = 0; i < nspec && off < sizeof(known); i++) {
        int n = snprintf(known + off, sizeof(known) - off, "%s%s", i ? ", " : "", spec[i].name);
        off += n > 0 ? (size_t)n : 0;
    }
    if (nspec == 0) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS,
                           "%s: unknown parameter; this method takes no parameters", key);
    }
    return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "%s: unknown parameter; expected one of: %s",
                       key, known);
}

static bool
rpc_spec_has(const struct ioc_rpc_param *spec, size_t nspec, const char *key)
{
    for (size_t i = 0; i < nspec; i++) {
        if (strcmp(spec[i].name, key) == 0) {
            return true;
        }
    }
    return false;
}

int
ioc_rpc_decode(json_t *params, const struct ioc_rpc_param *spec, size_t nspec, struct ioc_err *err)
{
    const char *key;
    json_t *v;
    int rc;

    if (params != NULL && !json_is_object(params)) {
        return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "params: expected an object");
    }
    /* Unknown fields first: "nme: unknown" explains a following "name: required". */
    json_object_foreach(params, key, v)
    {
        if (!rpc_spec_has(spec, nspec, key)) {
            return rpc_decode_unknown(key, spec, nspec, err);
        }
    }
    for (size_t i = 0; i < nspec; i++) {
        v = params != NULL ? json_object_get(params, spec[i].name) : NULL;
        /* null means "not given", except where any JSON value is wanted. */
        if (v == NULL || (json_is_null(v) && spec[i].type != IOC_RPC_JSON)) {
            if (spec[i].required) {
                return ioc_err_set(err, IOC_RPC_INVALID_PARAMS, "%s: required", spec[i].name);
            }
            continue;
        }
        rc = rpc_decode_one(&spec[i], v, err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- responses ---- */

static json_t *
rpc_response_error(json_t *id, int code, const char *message)
{
    return json_pack("{s:s, s:{s:i, s:s}, s:O}", "jsonrpc", "2.0", "error", "code", code, "message",
                     message, "id", id != NULL ? id : json_null());
}

static json_t *
rpc_response_result(json_t *id, json_t *result)
{
    /* "o" steals result, also on failure */
    return json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "result", result, "id",
                     id != NULL ? id : json_null());
}

/* ---- dispatch ---- */

static json_t *
rpc_call(const struct rpc_method *m, json_t *params, json_t *id)
{
    struct ioc_err err = {0};
    json_t *result = NULL;
    json_t *empty = NULL;
    int rc;

    if (params == NULL) {
        params = empty = json_object();
    }
    rc = m->handler(params, &result, &err);
    json_decref(empty);
    if (rc > 0) {
        IOC_ERR("rpc", "%s: handler returned positive %d; treating it as -%d", m->name, rc, rc);
        rc = -rc;
    }
    if (rc < 0) {
        json_decref(result);
        IOC_DEBUG(rpc, "%s: error %d: %s", m->name, rc, err.msg);
        return rpc_response_error(id, rc, err.msg[0] != '\0' ? err.msg : strerror(-rc));
    }
    return rpc_response_result(id, result != NULL ? result : json_true());
}

static json_t *
rpc_method_not_found(const char *method, json_t *id)
{
    const char *match = rpc_method_suggest(method);
    char msg[IOC_ERR_MSG_MAX];

    if (match != NULL) {
        snprintf(msg, sizeof(msg), "unknown method %s; did you mean %s?", method, match);
    } else {
        snprintf(msg, sizeof(msg), "unknown method %s; rpc_get_methods lists them", method);
    }
    return rpc_response_error(id, IOC_RPC_METHOD_NOT_FOUND, msg);
}

/* An id is a string, a number or null; anything else makes the request invalid. */
static bool
rpc_id_valid(const json_t *id)
{
    return id == NULL || json_is_string(id) || json_is_number(id) || json_is_null(id);
}

static json_t *
rpc_handle_one(json_t *req)
{
    json_t *id, *version, *method, *params;
    const struct rpc_method *m;
    json_t *resp;

    if (!json_is_object(req)) {
        return rpc_response_error(NULL, IOC_RPC_INVALID_REQUEST,
                                  "invalid request: expected a JSON object");
    }
    id = json_object_get(req, "id");
    if (!rpc_id_valid(id)) {
        return rpc_response_error(NULL, IOC_RPC_INVALID_REQUEST,
                                  "invalid request: id must be a string, a number or null");
    }
    version = json_object_get(req, "jsonrpc");
    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0) {
        return rpc_response_error(id, IOC_RPC_INVALID_REQUEST,
                                  "invalid request: jsonrpc must be \"2.0\"");
    }
    method = json_object_get(req, "method");
    if (!json_is_string(method)) {
        return rpc_response_error(id, IOC_RPC_INVALID_REQUEST,
                                  "invalid request: method must be a string");
    }
    params = json_object_get(req, "params");
    if (params != NULL && !json_is_object(params)) {
        return rpc_response_error(id, IOC_RPC_INVALID_PARAMS,
                                  "params: expected an object of named parameters");
    }
    m = rpc_method_find(json_string_value(method));
    IOC_DEBUG(rpc, "call %s", json_string_value(method));
    resp =
        m != NULL ? rpc_call(m, params, id) : rpc_method_not_found(json_string_value(method), id);
    /* A notification (no id) runs but is never answered, not even with an error. */
    if (id == NULL) {
        json_decref(resp);
        return NULL;
    }
    return resp;
}

/* JSON-RPC batch: an array of requests answered by an array of the non-null responses. */
static json_t *
rpc_handle_batch(json_t *batch)
{
    json_t *out, *req;
    size_t i;

    if (json_array_size(batch) == 0) {
        return rpc_response_error(NULL, IOC_RPC_INVALID_REQUEST, "invalid request: empty batch");
    }
    out = json_array();
    if (out == NULL) {
        return NULL;
    }
    json_array_foreach(batch, i, req)
    {
        json_t *resp = rpc_handle_one(req);
        if (resp != NULL) {
            json_array_append_new(out, resp);
        }
    }
    if (json_array_size(out) == 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *
ioc_rpc_handle(json_t *request)
{
    if (json_is_array(request)) {
        return rpc_handle_batch(request);
    }
    return rpc_handle_one(request);
}

/* ---- built-in methods ---- */

static int
rpc_get_methods(json_t *params, json_t **result, struct ioc_err *err)
{
    bool detail = false;
    const struct ioc_rpc_param spec[] = {
        {"detail", IOC_RPC_BOOL, false, &detail},
    };
    json_t *list;
    int rc;

    rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);
    if (rc != 0) {
        return rc;
    }
    list = json_array();
    if (list == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < g_rpc_nmethods; i++) {
        const struct rpc_method *m = &g_rpc_methods[i];
        json_t *item = detail ? json_pack("{s:s, s:s}", "name", m->name, "summary",
                                          m->summary != NULL ? m->summary : "")
                              : json_string(m->name);
        if (json_array_append_new(list, item) != 0) {
            json_decref(list);
            return ioc_err_set(err, -ENOMEM, "out of memory");
        }
    }
    *result = list;
    return 0;
}
IOC_RPC_REGISTER("rpc_get_methods", rpc_get_methods,
                 "list the methods this daemon serves, sorted by name")
