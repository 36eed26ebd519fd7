/*
 * lib/etcd/etcd.h - a small etcd v3 client over the JSON gateway (HTTP/1.1).
 *
 * etcd 3.4 serves its gRPC API as JSON at /v3/kv/range, /v3/kv/put,
 * /v3/kv/deleterange, /v3/kv/txn, /v3/lease/grant, /v3/lease/keepalive,
 * /v3/lease/revoke and /v3/watch (a stream of newline-separated JSON
 * objects). Keys and values travel base64-encoded, int64 fields as strings,
 * and fields at their default (0, false, "") are omitted in both directions.
 *
 * Two layers: the pure JSON encoding and decoding (etcd_json.c, no network,
 * unit-tested and fuzzable) and the transport (etcd.c, libcurl). Keys and
 * values are C strings: ioc stores JSON documents, never binary values.
 *
 * Threads: an ioc_etcd handle may be used from several threads; calls are
 * serialised on the handle (one HTTP connection kept alive). A watch runs on
 * its own thread with its own connection and calls back from there.
 */
#ifndef IOC_LIB_ETCD_ETCD_H
#define IOC_LIB_ETCD_ETCD_H

#include "ioc/common.h"

#include <jansson.h>

#include "lib/err.h"

/* One key-value pair; key and value are owned by the containing ioc_etcd_kvs. */
struct ioc_etcd_kv {
    char *key;
    char *value; /* NUL-terminated; "" when the value is empty */
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
};

struct ioc_etcd_kvs {
    struct ioc_etcd_kv *kvs;
    size_t count;
    int64_t revision; /* store revision of the answer (header.revision) */
};

/** Free the pairs of kvs (not kvs itself); accepts a zeroed or partly filled one. */
void ioc_etcd_kvs_free(struct ioc_etcd_kvs *kvs);

enum ioc_etcd_cmp_target {
    IOC_ETCD_CMP_VALUE,
    IOC_ETCD_CMP_CREATE, /* create_revision; 0 means "key absent" */
    IOC_ETCD_CMP_MOD,    /* mod_revision */
    IOC_ETCD_CMP_VERSION,
};

enum ioc_etcd_cmp_result {
    IOC_ETCD_EQUAL,
    IOC_ETCD_NOT_EQUAL,
    IOC_ETCD_GREATER,
    IOC_ETCD_LESS,
};

struct ioc_etcd_cmp {
    const char *key;
    enum ioc_etcd_cmp_target target;
    enum ioc_etcd_cmp_result result;
    int64_t number;    /* for CREATE, MOD, VERSION */
    const char *value; /* for VALUE */
};

enum ioc_etcd_op_type {
    IOC_ETCD_OP_PUT,
    IOC_ETCD_OP_DELETE,
    IOC_ETCD_OP_RANGE,
};

struct ioc_etcd_op {
    enum ioc_etcd_op_type type;
    const char *key;
    const char *value; /* PUT */
    int64_t lease;     /* PUT: attach to this lease (0: none) */
    bool prefix;       /* DELETE, RANGE: every key starting with key */
};

enum ioc_etcd_event_type {
    IOC_ETCD_EVENT_PUT,
    IOC_ETCD_EVENT_DELETE,
};

struct ioc_etcd_event {
    enum ioc_etcd_event_type type;
    struct ioc_etcd_kv kv; /* value "" for DELETE */
};

/* ---- etcd_json.c: encoding and decoding, no network ---- */

/** Base64 (RFC 4648, padded) of len bytes; a new string, or NULL on ENOMEM. */
char *ioc_etcd_b64_encode(const void *data, size_t len);

/**
 * Decode base64 text into a new NUL-terminated buffer (*out, length *outlen
 * without the NUL). Returns 0, -EINVAL (not base64) or -ENOMEM.
 */
int ioc_etcd_b64_decode(const char *text, char **out, size_t *outlen);

/**
 * The range_end that makes a range cover every key starting with prefix:
 * prefix with its last byte below 0xff incremented and the rest dropped
 * ("\0" when prefix is all 0xff, meaning "to the end"). A new string.
 */
char *ioc_etcd_prefix_end(const char *prefix);

/** Request bodies: new references, NULL on ENOMEM. */
json_t *ioc_etcd_json_range(const char *key, bool prefix);
json_t *ioc_etcd_json_put(const char *key, const char *value, int64_t lease);
json_t *ioc_etcd_json_delete(const char *key, bool prefix);
json_t *ioc_etcd_json_txn(const struct ioc_etcd_cmp *cmps, size_t ncmps,
                          const struct ioc_etcd_op *success, size_t nsuccess,
                          const struct ioc_etcd_op *failure, size_t nfailure);
json_t *ioc_etcd_json_watch_create(const char *key, bool prefix, int64_t start_revision);

/** An int64 field that arrives as a string (or number); absent means 0. -EINVAL if malformed. */
int ioc_etcd_json_int64(json_t *obj, const char *field, int64_t *out);

/**
 * Decode a range response (or a txn's response_range) into out (zeroed by
 * the caller). Returns 0, -EINVAL (malformed, out freed) or -ENOMEM.
 */
int ioc_etcd_decode_kvs(json_t *resp, struct ioc_etcd_kvs *out);

/**
 * Decode one watch stream message ({"result": {...}}) into a new array of
 * events (*events, *nevents; free with ioc_etcd_events_free). *created is set
 * when the message confirms the watch, *revision to header.revision.
 * Returns 0, -EINVAL (malformed or an error message), -ECANCELED (the server
 * cancelled the watch, e.g. compacted) or -ENOMEM.
 */
int ioc_etcd_decode_watch(json_t *msg, struct ioc_etcd_event **events, size_t *nevents,
                          bool *created, int64_t *revision);

void ioc_etcd_events_free(struct ioc_etcd_event *events, size_t n);

/**
 * An error body ({"error": ..., "code": N}) as a negative errno and message.
 * Returns 0 when resp is not an error.
 */
int ioc_etcd_decode_error(json_t *resp, struct ioc_err *err);

/* ---- etcd.c: the client ---- */

struct ioc_etcd;

/**
 * A client for endpoints, "http://HOST:PORT[,http://HOST:PORT...]"; requests
 * go to the first that answers. No connection is made yet. Returns 0 or
 * -EINVAL (bad list) / -ENOMEM with err filled.
 */
int ioc_etcd_create(const char *endpoints, struct ioc_etcd **out, struct ioc_err *err);

/** Free the client; NULL is fine. Stop its watches first. */
void ioc_etcd_destroy(struct ioc_etcd *etcd);

/** Per-request timeout in milliseconds (default 5000). */
void ioc_etcd_set_timeout(struct ioc_etcd *etcd, long timeout_ms);

/**
 * Every call below blocks for at most the timeout and returns 0 or a
 * negative errno with err filled: -ECONNREFUSED/-ETIMEDOUT/-EHOSTUNREACH
 * (no endpoint answered), -EPROTO (not an etcd answer), -ENOENT (lease not
 * found), -EINVAL (etcd refused the request), -ENOMEM.
 */
int ioc_etcd_range(struct ioc_etcd *etcd, const char *key, bool prefix, struct ioc_etcd_kvs *out,
                   struct ioc_err *err);

/** Like ioc_etcd_range with prefix, keys only: every value comes back "". */
int ioc_etcd_range_keys(struct ioc_etcd *etcd, const char *prefix, struct ioc_etcd_kvs *out,
                        struct ioc_err *err);

/** One key's value as a new string (*value); -ENOENT when absent. */
int ioc_etcd_get(struct ioc_etcd *etcd, const char *key, char **value, int64_t *mod_revision,
                 struct ioc_err *err);

int ioc_etcd_put(struct ioc_etcd *etcd, const char *key, const char *value, int64_t lease,
                 struct ioc_err *err);

/** Delete key (or the prefix); *deleted (may be NULL) counts what went. */
int ioc_etcd_delete(struct ioc_etcd *etcd, const char *key, bool prefix, int64_t *deleted,
                    struct ioc_err *err);

/**
 * A transaction: if every comparison holds, run success, else failure.
 * *succeeded tells which. With ranges in the chosen branch, their pairs are
 * appended to ranges (may be NULL otherwise; zeroed by the caller).
 */
int ioc_etcd_txn(struct ioc_etcd *etcd, const struct ioc_etcd_cmp *cmps, size_t ncmps,
                 const struct ioc_etcd_op *success, size_t nsuccess,
                 const struct ioc_etcd_op *failure, size_t nfailure, bool *succeeded,
                 struct ioc_etcd_kvs *ranges, struct ioc_err *err);

int ioc_etcd_lease_grant(struct ioc_etcd *etcd, int64_t ttl_s, int64_t *lease,
                         struct ioc_err *err);

/** Renew a lease once; *ttl_s (may be NULL) gets what is left. -ENOENT: the lease expired. */
int ioc_etcd_lease_keepalive(struct ioc_etcd *etcd, int64_t lease, int64_t *ttl_s,
                             struct ioc_err *err);

int ioc_etcd_lease_revoke(struct ioc_etcd *etcd, int64_t lease, struct ioc_err *err);

/**
 * Called on the watch thread for each batch of events. events are borrowed
 * for the call. A batch of 0 events with rc < 0 reports that the stream
 * broke (the watch reconnects by itself from the next revision; with
 * -ECANCELED history was compacted and the caller should re-read state).
 */
typedef void (*ioc_etcd_watch_cb)(void *cb_arg, int rc, const struct ioc_etcd_event *events,
                                  size_t nevents);

struct ioc_etcd_watch;

/**
 * Watch key (or prefix) from start_revision (0: from now) on a new thread.
 * Returns 0 with *out set, or a negative errno (thread or memory). The
 * connection is made on the thread, so an etcd that is down is retried
 * every second until ioc_etcd_watch_stop().
 */
int ioc_etcd_watch_start(struct ioc_etcd *etcd, const char *key, bool prefix,
                         int64_t start_revision, ioc_etcd_watch_cb cb_fn, void *cb_arg,
                         struct ioc_etcd_watch **out);

/** Stop and join the watch thread (within about a second); NULLs *watch. */
void ioc_etcd_watch_stop(struct ioc_etcd_watch **watch);

#endif
