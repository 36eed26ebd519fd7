/*
 * lib/etcd/etcd_json.c - the etcd v3 JSON gateway's encoding, without a network.
 *
 * The gateway is gRPC-to-JSON: bytes fields (keys, values) are base64,
 * int64 fields are strings ("revision": "42"), enums are their names
 * ("target": "MOD") and every field at its default is omitted, so an absent
 * "count" is 0 and an absent "succeeded" is false. The decoders below accept
 * int64 fields as strings or numbers and treat absence as the default; any
 * other shape is -EINVAL, never a crash (the manifest fuzzer reaches some of
 * this through iocctl's JSON path, and etcd answers are input like any other).
 *
 * Base64 is done here rather than with a library: it is 60 lines, and the
 * gateway needs the padded standard alphabet only.
 */
#include "ioc/common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lib/etcd/etcd.h"

static const char g_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
ioc_etcd_b64_encode(const void *data, size_t len)
{
    const unsigned char *p = data;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;

    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= p[i + 2];
        }
        out[o++] = g_b64[(v >> 18) & 63];
        out[o++] = g_b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? g_b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? g_b64[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static int
b64_value(char c)
{
    const char *p = c != '\0' ? strchr(g_b64, c) : NULL;

    return p == NULL ? -1 : (int)(p - g_b64);
}

int
ioc_etcd_b64_decode(const char *text, char **out, size_t *outlen)
{
    size_t len = strlen(text), o = 0;
    char *buf;

    if (len % 4 != 0) {
        return -EINVAL;
    }
    buf = malloc(len / 4 * 3 + 1);
    if (buf == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < len; i += 4) {
        int a = b64_value(text[i]), b = b64_value(text[i + 1]);
        int c = text[i + 2] == '=' ? 0 : b64_value(text[i + 2]);
        int d = text[i + 3] == '=' ? 0 : b64_value(text[i + 3]);
        bool last = i + 4 == len;
        if (a < 0 || b < 0 || c < 0 || d < 0 || (!last && (text[i + 2] == '=' ||
                                                           text[i + 3] == '=')) ||
            (text[i + 2] == '=' && text[i + 3] != '=')) {
            free(buf);
            return -EINVAL;
        }
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        buf[o++] = (char)(v >> 16);
        if (text[i + 2] != '=') {
            buf[o++] = (char)(v >> 8);
        }
        if (text[i + 3] != '=') {
            buf[o++] = (char)v;
        }
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
}

char *
ioc_etcd_prefix_end(const char *prefix)
{
    char *end = strdup(prefix);

    if (end == NULL) {
        return NULL;
    }
    for (size_t n = strlen(end); n > 0; n--) {
        unsigned char c = (unsigned char)end[n - 1];
        if (c < 0xff) {
            end[n - 1] = (char)(c + 1);
            end[n] = '\0';
            return end;
        }
    }
    end[0] = '\0'; /* all 0xff: the caller sends "\0", i.e. AA== */
    return end;
}

/* ---- requests ---- */

/* Set field to base64(s); returns -ENOMEM on failure. */
static int
set_b64(json_t *obj, const char *field, const char *s)
{
    char *b = ioc_etcd_b64_encode(s, strlen(s));

    if (b == NULL || json_object_set_new(obj, field, json_string(b)) < 0) {
        free(b);
        return -ENOMEM;
    }
    free(b);
    return 0;
}

/* range_end for a prefix; an empty end (all 0xff) is the single byte 0. */
static int
set_range_end(json_t *obj, const char *key)
{
    char *end = ioc_etcd_prefix_end(key);
    int rc;

    if (end == NULL) {
        return -ENOMEM;
    }
    if (end[0] == '\0') {
        rc = json_object_set_new(obj, "range_end", json_string("AA==")) < 0 ? -ENOMEM : 0;
    } else {
        rc = set_b64(obj, "range_end", end);
    }
    free(end);
    return rc;
}

static int
set_int64(json_t *obj, const char *field, int64_t v)
{
    char buf[24];

    if (v == 0) {
        return 0; /* defaults are omitted */
    }
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_object_set_new(obj, field, json_string(buf)) < 0 ? -ENOMEM : 0;
}

static json_t *
key_request(const char *key, bool prefix)
{
    json_t *o = json_object();

    if (o == NULL || set_b64(o, "key", key) < 0 || (prefix && set_range_end(o, key) < 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *
ioc_etcd_json_range(const char *key, bool prefix)
{
    return key_request(key, prefix);
}

json_t *
ioc_etcd_json_delete(const char *key, bool prefix)
{
    return key_request(key, prefix);
}

json_t *
ioc_etcd_json_put(const char *key, const char *value, int64_t lease)
{
    json_t *o = key_request(key, false);

    if (o == NULL || set_b64(o, "value", value) < 0 || set_int64(o, "lease", lease) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *
ioc_etcd_json_watch_create(const char *key, bool prefix, int64_t start_revision)
{
    json_t *cr = key_request(key, prefix);
    json_t *o = json_object();

    if (cr == NULL || o == NULL || set_int64(cr, "start_revision", start_revision) < 0 ||
        json_object_set(o, "create_request", cr) < 0) {
        json_decref(cr);
        json_decref(o);
        return NULL;
    }
    json_decref(cr);
    return o;
}

static json_t *
txn_cmp(const struct ioc_etcd_cmp *c)
{
    static const char *const targets[] = {"VALUE", "CREATE", "MOD", "VERSION"};
    static const char *const fields[] = {"value", "create_revision", "mod_revision", "version"};
    static const char *const results[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
    json_t *o = key_request(c->key, false);
    int rc;

    if (o == NULL) {
        return NULL;
    }
    /* VALUE and EQUAL are the enum defaults; sending them anyway is accepted. */
    rc = json_object_set_new(o, "target", json_string(targets[c->target]));
    rc |= json_object_set_new(o, "result", json_string(results[c->result]));
    if (c->target == IOC_ETCD_CMP_VALUE) {
        rc |= set_b64(o, "value", c->value != NULL ? c->value : "");
    } else if (c->number != 0) {
        rc |= set_int64(o, fields[c->target], c->number);
    }
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *
txn_op(const struct ioc_etcd_op *op)
{
    static const char *const names[] = {"request_put", "request_delete_range", "request_range"};
    json_t *inner, *o;

    switch (op->type) {
    case IOC_ETCD_OP_PUT:
        inner = ioc_etcd_json_put(op->key, op->value != NULL ? op->value : "", op->lease);
        break;
    case IOC_ETCD_OP_DELETE:
        inner = ioc_etcd_json_delete(op->key, op->prefix);
        break;
    default:
        inner = ioc_etcd_json_range(op->key, op->prefix);
        break;
    }
    o = json_object();
    if (inner == NULL || o == NULL || json_object_set(o, names[op->type], inner) < 0) {
        json_decref(o);
        o = NULL;
    }
    json_decref(inner);
    return o;
}

static int
append_ops(json_t *obj, const char *field, const struct ioc_etcd_op *ops, size_t n)
{
    json_t *a;

    if (n == 0) {
        return 0;
    }
    a = json_array();
    if (a == NULL || json_object_set_new(obj, field, a) < 0) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(a, txn_op(&ops[i])) < 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

json_t *
ioc_etcd_json_txn(const struct ioc_etcd_cmp *cmps, size_t ncmps,
                  const struct ioc_etcd_op *success, size_t nsuccess,
                  const struct ioc_etcd_op *failure, size_t nfailure)
{
    json_t *o = json_object(), *c = json_array();

    if (o == NULL || c == NULL || (ncmps > 0 && json_object_set(o, "compare", c) < 0)) {
        goto err;
    }
    for (size_t i = 0; i < ncmps; i++) {
        if (json_array_append_new(c, txn_cmp(&cmps[i])) < 0) {
            goto err;
        }
    }
    if (append_ops(o, "success", success, nsuccess) < 0 ||
        append_ops(o, "failure", failure, nfailure) < 0) {
        goto err;
    }
    json_decref(c);
    return o;
err:
    json_decref(c);
    json_decref(o);
    return NULL;
}

/* ---- responses ---- */

int
ioc_etcd_json_int64(json_t *obj, const char *field, int64_t *out)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, field) : NULL;
    const char *s;
    char *end;

    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v)) {
        return -EINVAL;
    }
    s = json_string_value(v);
    errno = 0;
    long long ll = strtoll(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0') {
        return -EINVAL;
    }
    *out = ll;
    return 0;
}

static int
decode_b64_field(json_t *obj, const char *field, char **out)
{
    json_t *v = json_object_get(obj, field);
    size_t len;
    int rc;

    if (v == NULL) {
        *out = strdup("");
        return *out == NULL ? -ENOMEM : 0;
    }
    if (!json_is_string(v)) {
        return -EINVAL;
    }
    rc = ioc_etcd_b64_decode(json_string_value(v), out, &len);
    if (rc == 0 && strlen(*out) != len) {
        free(*out); /* an embedded NUL: not one of our JSON values */
        *out = NULL;
        return -EINVAL;
    }
    return rc;
}

static int
decode_kv(json_t *o, struct ioc_etcd_kv *kv)
{
    int rc;

    memset(kv, 0, sizeof(*kv));
    if (!json_is_object(o)) {
        return -EINVAL;
    }
    rc = decode_b64_field(o, "key", &kv->key);
    if (rc == 0) {
        rc = decode_b64_field(o, "value", &kv->value);
    }
    if (rc == 0) {
        rc = ioc_etcd_json_int64(o, "create_revision", &kv->create_revision);
        rc |= ioc_etcd_json_int64(o, "mod_revision", &kv->mod_revision);
        rc |= ioc_etcd_json_int64(o, "version", &kv->version);
        rc |= ioc_etcd_json_int64(o, "lease", &kv->lease);
        rc = rc != 0 ? -EINVAL : 0;
    }
    if (rc != 0) {
        free(kv->key);
        free(kv->value);
        memset(kv, 0, sizeof(*kv));
    }
    return rc;
}

void
ioc_etcd_kvs_free(struct ioc_etcd_kvs *kvs)
{
    if (kvs == NULL) {
        return;
    }
    for (size_t i = 0; i < kvs->count; i++) {
        free(kvs->kvs[i].key);
        free(kvs->kvs[i].value);
    }
    free(kvs->kvs);
    kvs->kvs = NULL;
    kvs->count = 0;
}

int
ioc_etcd_decode_kvs(json_t *resp, struct ioc_etcd_kvs *out)
{
    json_t *arr = json_is_object(resp) ? json_object_get(resp, "kvs") : NULL;
    struct ioc_etcd_kv *grown;
    size_t n = json_array_size(arr);
    int rc;

    if (!json_is_object(resp) || (arr != NULL && !json_is_array(arr))) {
        return -EINVAL;
    }
    if (ioc_etcd_json_int64(json_object_get(resp, "header"), "revision", &out->revision) < 0) {
        return -EINVAL;
    }
    if (n == 0) {
        return 0;
    }
    grown = realloc(out->kvs, (out->count + n) * sizeof(*grown));
    if (grown == NULL) {
        return -ENOMEM;
    }
    out->kvs = grown;
    for (size_t i = 0; i < n; i++) {
        rc = decode_kv(json_array_get(arr, i), &out->kvs[out->count]);
        if (rc < 0) {
            ioc_etcd_kvs_free(out);
            return rc;
        }
        out->count++;
    }
    return 0;
}

void
ioc_etcd_events_free(struct ioc_etcd_event *events, size_t n)
{
    for (size_t i = 0; events != NULL && i < n; i++) {
        free(events[i].kv.key);
        free(events[i].kv.value);
    }
    free(events);
}

int
ioc_etcd_decode_error(json_t *resp, struct ioc_err *err)
{
    json_t *e = json_is_object(resp) ? json_object_get(resp, "error") : NULL;
    json_int_t code;
    const char *msg;
    int rc;

    if (e == NULL) {
        return 0;
    }
    msg = json_is_string(e) ? json_string_value(e) : "error";
    if (json_is_object(e)) {
        msg = json_string_value(json_object_get(e, "message"));
        code = json_integer_value(json_object_get(e, "grpc_code"));
    } else {
        code = json_integer_value(json_object_get(resp, "code"));
    }
    /* gRPC codes: 5 NOT_FOUND, 3 INVALID_ARGUMENT, 9 FAILED_PRECONDITION, 14 UNAVAILABLE */
    rc = code == 5 ? -ENOENT : code == 14 ? -EAGAIN : code == 4 ? -ETIMEDOUT : -EINVAL;
    return ioc_err_set(err, rc, "etcd: %s", msg != NULL ? msg : "error");
}

int
ioc_etcd_decode_watch(json_t *msg, struct ioc_etcd_event **events, size_t *nevents,
                      bool *created, int64_t *revision)
{
    json_t *res = json_is_object(msg) ? json_object_get(msg, "result") : NULL;
    json_t *arr = json_object_get(res, "events");
    size_t n = json_array_size(arr);
    struct ioc_etcd_event *ev;

    *events = NULL;
    *nevents = 0;
    *created = json_is_true(json_object_get(res, "created"));
    if (!json_is_object(res) || (arr != NULL && !json_is_array(arr)) ||
        ioc_etcd_json_int64(json_object_get(res, "header"), "revision", revision) < 0) {
        return -EINVAL;
    }
    if (json_is_true(json_object_get(res, "canceled"))) {
        return -ECANCELED;
    }
    if (n == 0) {
        return 0;
    }
    ev = calloc(n, sizeof(*ev));
    if (ev == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        json_t *type = json_object_get(e, "type");
        if (!json_is_object(e) || decode_kv(json_object_get(e, "kv"), &ev[i].kv) < 0) {
            ioc_etcd_events_free(ev, i);
            return -EINVAL;
        }
        ev[i].type = json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0
                         ? IOC_ETCD_EVENT_DELETE
                         : IOC_ETCD_EVENT_PUT;
    }
    *events = ev;
    *nevents = n;
    return 0;
}
