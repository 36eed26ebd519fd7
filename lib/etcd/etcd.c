/*
 * lib/etcd/etcd.c - the etcd client's transport: libcurl POSTs to the gateway.
 *
 * Every unary call is one POST of a JSON body to ENDPOINT/v3/..., answered
 * by one JSON object. The handle keeps one CURL easy handle, so the HTTP
 * connection is reused; a mutex serialises calls on it (the agent's loop and
 * its status writers share one handle; an easy handle is not thread-safe).
 * With several endpoints, a call that cannot connect moves on to the next
 * and remembers the one that answered.
 *
 * Watches run on their own thread with their own easy handle: the gateway
 * answers /v3/watch with a never-ending body of newline-separated JSON
 * messages, which the write callback splits and decodes. A broken stream
 * is reported to the callback and reconnected a second later from the
 * revision after the last one seen, so no event is lost unless etcd
 * compacted it (-ECANCELED, and the caller re-reads). The progress callback
 * polls the stop flag, so stopping takes at most about a second.
 *
 * Rejected: etcd's gRPC API directly (needs gRPC and protobuf in C: a large
 * dependency for a dozen calls) and shelling out to etcdctl (slow, and
 * parsing its text output).
 */
#include "ioc/common.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/etcd/etcd.h"

#define ETCD_MAX_ENDPOINTS 8

struct ioc_etcd {
    char *endpoints[ETCD_MAX_ENDPOINTS];
    unsigned nendpoints;
    unsigned current;   /* the endpoint that answered last */
    long timeout_ms;
    pthread_mutex_t lock; /* serialises use of curl (one easy handle per client) */
    CURL *curl;
};

struct buf {
    char *data;
    size_t len;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int
ioc_etcd_create(const char *endpoints, struct ioc_etcd **out, struct ioc_err *err)
{
    struct ioc_etcd *e;
    char *copy, *save = NULL, *tok;

    pthread_once(&g_curl_once, curl_init_once);
    e = calloc(1, sizeof(*e));
    copy = strdup(endpoints != NULL ? endpoints : "");
    if (e == NULL || copy == NULL) {
        free(e);
        free(copy);
        return ioc_err_set(err, -ENOMEM, "etcd: out of memory");
    }
    for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        size_t n = strlen(tok);
        while (n > 0 && tok[n - 1] == '/') {
            tok[--n] = '\0';
        }
        if (strncmp(tok, "http://", 7) != 0 || n <= 7 || e->nendpoints == ETCD_MAX_ENDPOINTS) {
            ioc_err_set(err, -EINVAL, "etcd: bad endpoint \"%s\": expected http://HOST:PORT "
                        "(at most %d, comma-separated)", tok, ETCD_MAX_ENDPOINTS);
            free(copy);
            ioc_etcd_destroy(e);
            return -EINVAL;
        }
        e->endpoints[e->nendpoints++] = strdup(tok);
    }
    free(copy);
    if (e->nendpoints == 0) {
        ioc_etcd_destroy(e);
        return ioc_err_set(err, -EINVAL, "etcd: no endpoint given");
    }
    e->timeout_ms = 5000;
    pthread_mutex_init(&e->lock, NULL);
    *out = e;
    return 0;
}

void
ioc_etcd_destroy(struct ioc_etcd *e)
{
    if (e == NULL) {
        return;
    }
    if (e->curl != NULL) {
        curl_easy_cleanup(e->curl);
    }
    for (unsigned i = 0; i < e->nendpoints; i++) {
        free(e->endpoints[i]);
    }
    if (e->timeout_ms != 0) {
        pthread_mutex_destroy(&e->lock);
    }
    free(e);
}

void
ioc_etcd_set_timeout(struct ioc_etcd *e, long timeout_ms)
{
    e->timeout_ms = timeout_ms;
}

static size_t
buf_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;
    char *grown = realloc(b->data, b->len + n + 1);

    if (grown == NULL) {
        return 0;
    }
    memcpy(grown + b->len, ptr, n);
    b->len += n;
    grown[b->len] = '\0';
    b->data = grown;
    return n;
}

static int
curl_errno(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -EHOSTUNREACH;
    }
}

/* One POST to one endpoint; the caller holds the lock. */
static CURLcode
post_one(struct ioc_etcd *e, const char *endpoint, const char *path, const char *body,
         struct buf *resp, long *status)
{
    char url[512];
    CURLcode c;

    snprintf(url, sizeof(url), "%s%s", endpoint, path);
    curl_easy_reset(e->curl);
    curl_easy_setopt(e->curl, CURLOPT_URL, url);
    curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, e->timeout_ms);
    curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, IOC_MIN(e->timeout_ms, 2000L));
    curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    c = curl_easy_perform(e->curl);
    if (c == CURLE_OK) {
        curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, status);
    }
    return c;
}

/*
 * POST req (borrowed) to path; on success *resp is the parsed answer (new
 * reference). An etcd error body becomes its errno.
 */
static int
etcd_call(struct ioc_etcd *e, const char *path, json_t *req, json_t **resp, struct ioc_err *err)
{
    char *body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    struct buf b = {0};
    CURLcode c = CURLE_FAILED_INIT;
    long status = 0;
    json_t *j;
    int rc;

    if (body == NULL) {
        return ioc_err_set(err, -ENOMEM, "etcd: out of memory");
    }
    pthread_mutex_lock(&e->lock);
    if (e->curl == NULL) {
        e->curl = curl_easy_init();
    }
    for (unsigned i = 0; e->curl != NULL && i < e->nendpoints; i++) {
        unsigned idx = (e->current + i) % e->nendpoints;
        b.len = 0;
        c = post_one(e, e->endpoints[idx], path, body, &b, &status);
        if (c == CURLE_OK) {
            e->current = idx;
            break;
        }
    }
    pthread_mutex_unlock(&e->lock);
    free(body);
    if (c != CURLE_OK) {
        free(b.data);
        rc = curl_errno(c);
        return ioc_err_set(err, rc, "etcd %s: %s", e->endpoints[e->current],
                           curl_easy_strerror(c));
    }
    j = b.data != NULL ? json_loads(b.data, 0, NULL) : NULL;
    free(b.data);
    if (!json_is_object(j)) {
        json_decref(j);
        return ioc_err_set(err, -EPROTO, "etcd %s%s: HTTP %ld, not a JSON answer",
                           e->endpoints[e->current], path, status);
    }
    rc = ioc_etcd_decode_error(j, err);
    if (rc < 0) {
        json_decref(j);
        return rc;
    }
    *resp = j;
    return 0;
}

/* Call and drop the answer; takes ownership of req. */
static int
etcd_call_new(struct ioc_etcd *e, const char *path, json_t *req, json_t **resp,
              struct ioc_err *err)
{
    json_t *dummy = NULL;
    int rc;

    if (req == NULL) {
        return ioc_err_set(err, -ENOMEM, "etcd: out of memory");
    }
    rc = etcd_call(e, path, req, resp != NULL ? resp : &dummy, err);
    json_decref(req);
    json_decref(dummy);
    return rc;
}

int
ioc_etcd_range(struct ioc_etcd *e, const char *key, bool prefix, struct ioc_etcd_kvs *out,
               struct ioc_err *err)
{
    json_t *resp;
    int rc;

    rc = etcd_call_new(e, "/v3/kv/range", ioc_etcd_json_range(key, prefix), &resp, err);
    if (rc < 0) {
        return rc;
    }
    rc = ioc_etcd_decode_kvs(resp, out);
    json_decref(resp);
    return rc < 0 ? ioc_err_set(err, rc, "etcd: malformed range answer") : 0;
}

int
ioc_etcd_range_keys(struct ioc_etcd *e, const char *prefix, struct ioc_etcd_kvs *out,
                    struct ioc_err *err)
{
    json_t *req = ioc_etcd_json_range(prefix, true), *resp;
    int rc;

    if (req != NULL && json_object_set_new(req, "keys_only", json_true()) < 0) {
        json_decref(req);
        req = NULL;
    }
    rc = etcd_call_new(e, "/v3/kv/range", req, &resp, err);
    if (rc < 0) {
        return rc;
    }
    rc = ioc_etcd_decode_kvs(resp, out);
    json_decref(resp);
    return rc < 0 ? ioc_err_set(err, rc, "etcd: malformed range answer") : 0;
}

int
ioc_etcd_get(struct ioc_etcd *e, const char *key, char **value, int64_t *mod_revision,
             struct ioc_err *err)
{
    struct ioc_etcd_kvs kvs = {0};
    int rc = ioc_etcd_range(e, key, false, &kvs, err);

    if (rc < 0) {
        return rc;
    }
    if (kvs.count == 0) {
        ioc_etcd_kvs_free(&kvs);
        return ioc_err_set(err, -ENOENT, "%s: not found", key);
    }
    *value = ioc_steal_ptr(&kvs.kvs[0].value);
    if (mod_revision != NULL) {
        *mod_revision = kvs.kvs[0].mod_revision;
    }
    ioc_etcd_kvs_free(&kvs);
    return 0;
}

int
ioc_etcd_put(struct ioc_etcd *e, const char *key, const char *value, int64_t lease,
             struct ioc_err *err)
{
    return etcd_call_new(e, "/v3/kv/put", ioc_etcd_json_put(key, value, lease), NULL, err);
}

int
ioc_etcd_delete(struct ioc_etcd *e, const char *key, bool prefix, int64_t *deleted,
                struct ioc_err *err)
{
    json_t *resp;
    int64_t n;
    int rc;

    rc = etcd_call_new(e, "/v3/kv/deleterange", ioc_etcd_json_delete(key, prefix), &resp, err);
    if (rc < 0) {
        return rc;
    }
    rc = ioc_etcd_json_int64(resp, "deleted", &n);
    json_decref(resp);
    if (deleted != NULL) {
        *deleted = n;
    }
    return rc;
}

int
ioc_etcd_txn(struct ioc_etcd *e, const struct ioc_etcd_cmp *cmps, size_t ncmps,
             const struct ioc_etcd_op *success, size_t nsuccess,
             const struct ioc_etcd_op *failure, size_t nfailure, bool *succeeded,
             struct ioc_etcd_kvs *ranges, struct ioc_err *err)
{
    json_t *resp, *r;
    size_t i;
    int rc;

    rc = etcd_call_new(e, "/v3/kv/txn",
                       ioc_etcd_json_txn(cmps, ncmps, success, nsuccess, failure, nfailure),
                       &resp, err);
    if (rc < 0) {
        return rc;
    }
    *succeeded = json_is_true(json_object_get(resp, "succeeded"));
    json_array_foreach(json_object_get(resp, "responses"), i, r) {
        json_t *range = json_object_get(r, "response_range");
        if (range != NULL && ranges != NULL && (rc = ioc_etcd_decode_kvs(range, ranges)) < 0) {
            break;
        }
    }
    json_decref(resp);
    return rc < 0 ? ioc_err_set(err, rc, "etcd: malformed txn answer") : 0;
}

int
ioc_etcd_lease_grant(struct ioc_etcd *e, int64_t ttl_s, int64_t *lease, struct ioc_err *err)
{
    json_t *req = json_object(), *resp;
    int rc;

    json_object_set_new(req, "TTL", json_integer(ttl_s));
    rc = etcd_call_new(e, "/v3/lease/grant", req, &resp, err);
    if (rc < 0) {
        return rc;
    }
    rc = ioc_etcd_json_int64(resp, "ID", lease);
    json_decref(resp);
    if (rc < 0 || *lease == 0) {
        return ioc_err_set(err, -EPROTO, "etcd: lease grant: no ID in the answer");
    }
    return 0;
}

static json_t *
lease_id_request(int64_t lease)
{
    char buf[24];
    json_t *o = json_object();

    snprintf(buf, sizeof(buf), "%lld", (long long)lease);
    json_object_set_new(o, "ID", json_string(buf));
    return o;
}

int
ioc_etcd_lease_keepalive(struct ioc_etcd *e, int64_t lease, int64_t *ttl_s, struct ioc_err *err)
{
    json_t *resp;
    int64_t ttl = 0;
    int rc;

    /* The gateway streams keep-alives; one request gets one answer, then EOF. */
    rc = etcd_call_new(e, "/v3/lease/keepalive", lease_id_request(lease), &resp, err);
    if (rc < 0) {
        return rc;
    }
    rc = ioc_etcd_json_int64(json_object_get(resp, "result"), "TTL", &ttl);
    json_decref(resp);
    if (ttl_s != NULL) {
        *ttl_s = ttl;
    }
    if (rc == 0 && ttl <= 0) {
        return ioc_err_set(err, -ENOENT, "etcd: lease %llx expired", (long long)lease);
    }
    return rc;
}

int
ioc_etcd_lease_revoke(struct ioc_etcd *e, int64_t lease, struct ioc_err *err)
{
    return etcd_call_new(e, "/v3/lease/revoke", lease_id_request(lease), NULL, err);
}

/* ---- watch ---- */

struct ioc_etcd_watch {
    struct ioc_etcd *etcd;
    char *key;
    bool prefix;
    int64_t next_rev; /* resume point: last revision seen + 1 */
    ioc_etcd_watch_cb cb_fn;
    void *cb_arg;
    volatile bool stop; /* set by watch_stop, polled by the transfer callbacks */
    struct buf line;    /* bytes of the message being received */
    pthread_t thread;
};

static void
watch_message(struct ioc_etcd_watch *w, const char *text, size_t len)
{
    struct ioc_etcd_event *ev;
    size_t n;
    bool created;
    int64_t rev;
    json_t *msg = json_loadb(text, len, 0, NULL);
    int rc;

    if (msg == NULL) {
        return;
    }
    rc = ioc_etcd_decode_watch(msg, &ev, &n, &created, &rev);
    json_decref(msg);
    if (rc == 0 && n > 0) {
        w->next_rev = ev[n - 1].kv.mod_revision + 1;
        w->cb_fn(w->cb_arg, 0, ev, n);
    } else if (rc == -ECANCELED) {
        w->next_rev = 0;
        w->cb_fn(w->cb_arg, rc, NULL, 0);
    }
    ioc_etcd_events_free(ev, n);
}

/* Split the stream into lines; each complete line is one message. */
static size_t
watch_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct ioc_etcd_watch *w = arg;
    size_t n = size * nmemb;
    char *nl;

    if (w->stop || buf_write(ptr, size, nmemb, &w->line) != n) {
        return 0;
    }
    while ((nl = memchr(w->line.data, '\n', w->line.len)) != NULL) {
        size_t len = (size_t)(nl - w->line.data);
        watch_message(w, w->line.data, len);
        memmove(w->line.data, nl + 1, w->line.len - len - 1);
        w->line.len -= len + 1;
    }
    return n;
}

static int
watch_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct ioc_etcd_watch *w = arg;

    (void)dt, (void)dn, (void)ut, (void)un;
    return w->stop ? 1 : 0;
}

static void
watch_connect(struct ioc_etcd_watch *w, CURL *curl)
{
    json_t *req = ioc_etcd_json_watch_create(w->key, w->prefix, w->next_rev);
    char *body = json_dumps(req, JSON_COMPACT);
    char url[512];

    json_decref(req);
    snprintf(url, sizeof(url), "%s/v3/watch", w->etcd->endpoints[w->etcd->current]);
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body != NULL ? body : "{}");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, watch_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, watch_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, w);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    w->line.len = 0;
    curl_easy_perform(curl); /* returns when the stream breaks or we stop */
    free(body);
}

static void *
watch_thread(void *arg)
{
    struct ioc_etcd_watch *w = arg;
    CURL *curl = curl_easy_init();

    while (curl != NULL && !w->stop) {
        watch_connect(w, curl);
        if (w->stop) {
            break;
        }
        w->cb_fn(w->cb_arg, -ECONNRESET, NULL, 0);
        for (int i = 0; i < 10 && !w->stop; i++) {
            usleep(100 * 1000);
        }
        /* Another endpoint may answer now: rotate (reads of current are racy but harmless). */
        w->etcd->current = (w->etcd->current + 1) % w->etcd->nendpoints;
    }
    if (curl != NULL) {
        curl_easy_cleanup(curl);
    }
    return NULL;
}

int
ioc_etcd_watch_start(struct ioc_etcd *etcd, const char *key, bool prefix,
                     int64_t start_revision, ioc_etcd_watch_cb cb_fn, void *cb_arg,
                     struct ioc_etcd_watch **out)
{
    struct ioc_etcd_watch *w = calloc(1, sizeof(*w));
    int rc;

    if (w == NULL || (w->key = strdup(key)) == NULL) {
        free(w);
        return -ENOMEM;
    }
    w->etcd = etcd;
    w->prefix = prefix;
    w->next_rev = start_revision;
    w->cb_fn = cb_fn;
    w->cb_arg = cb_arg;
    rc = pthread_create(&w->thread, NULL, watch_thread, w);
    if (rc != 0) {
        free(w->key);
        free(w);
        return -rc;
    }
    *out = w;
    return 0;
}

void
ioc_etcd_watch_stop(struct ioc_etcd_watch **watch)
{
    struct ioc_etcd_watch *w = *watch;

    if (w == NULL) {
        return;
    }
    w->stop = true;
    pthread_join(w->thread, NULL);
    free(w->line.data);
    free(w->key);
    free(w);
    *watch = NULL;
}
