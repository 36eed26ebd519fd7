/*
 * tools/iocctl_cluster.c - the cluster commands: apply, get, describe, delete (via etcd).
 *
 * These talk to etcd, not to one iocd: desired state goes to
 * /ioc/v1/<kind>/<name>, observed state is read from
 * /ioc/v1/status/<kind>/<name> and shown beside it (lib/resource/resource.h
 * has the layout). `apply` parses every document, validates all of them
 * against what etcd holds plus the manifest itself, and only then writes,
 * all in one etcd transaction: an invalid document means nothing is
 * written. Documents equal to what is stored are left alone ("unchanged"),
 * so apply is idempotent and does not wake the controller needlessly.
 *
 * Output follows kubectl: tables with human sizes and ages, `-o
 * wide|json|yaml`, `-w` to print the table once and then each row (or
 * document) again whenever it changes. `delete` of a Volume or Snapshot
 * leaves a tombstone that nodes act on (see the delete section).
 * Parsing is separate from iocctl.c's command table because these commands
 * take a kind word and kubectl-style options, not RPC parameters.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/random.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "iocctl.h"
#include "lib/etcd/etcd.h"
#include "lib/resource/resource.h"
#include "lib/size.h"

enum out_fmt { OUT_TABLE, OUT_WIDE, OUT_JSON, OUT_YAML };

struct copts {
    const char *etcd_url;
    enum out_fmt out;
    bool watch;
    const char *files[8];
    int nfiles;
    const char *words[3];
    int nwords;
};

static int
cl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
cl_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "iocctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return IOCCTL_EXIT_RPC_ERROR;
}

/* ---- reading the cluster ---- */

/* Every document of kind as an object name -> doc, with status merged in. */
static int
load_kind(struct ioc_etcd *e, enum ioc_kind kind, json_t **out, struct ioc_err *err)
{
    struct ioc_etcd_kvs spec = {0}, status = {0};
    char prefix[64];
    json_t *all = json_object();
    int rc;

    ioc_resource_key(kind, "", false, prefix, sizeof(prefix));
    rc = ioc_etcd_range(e, prefix, true, &spec, err);
    ioc_resource_key(kind, "", true, prefix, sizeof(prefix));
    if (rc == 0) {
        rc = ioc_etcd_range(e, prefix, true, &status, err);
    }
    for (size_t i = 0; rc == 0 && i < spec.count; i++) {
        json_t *d = json_loads(spec.kvs[i].value, 0, NULL);
        if (json_is_object(d) && ioc_resource_name(d) != NULL) {
            json_object_set(all, ioc_resource_name(d), d);
        }
        json_decref(d);
    }
    for (size_t i = 0; rc == 0 && i < status.count; i++) {
        const char *name = strrchr(status.kvs[i].key, '/') + 1;
        json_t *d = json_object_get(all, name);
        json_t *st = json_loads(status.kvs[i].value, 0, NULL);
        if (d != NULL && st != NULL) {
            json_object_set(d, "status", st);
        }
        json_decref(st);
    }
    ioc_etcd_kvs_free(&spec);
    ioc_etcd_kvs_free(&status);
    if (rc < 0) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return 0;
}

/*
 * For get and describe: Volumes and Snapshots deleted but whose data some
 * node still holds (a tombstone) show as phase Deleting, with the nodes
 * that have not reported cleaned yet in status.waitingFor.
 */
static int
load_shown(struct ioc_etcd *e, enum ioc_kind kind, json_t **out, struct ioc_err *err)
{
    struct ioc_etcd_kvs tombs = {0}, cleaned = {0};
    char prefix[128];
    int rc = load_kind(e, kind, out, err);

    if (rc < 0 || (kind != IOC_KIND_VOLUME && kind != IOC_KIND_SNAPSHOT)) {
        return rc;
    }
    snprintf(prefix, sizeof(prefix), IOC_KEY_TOMBSTONE "%s/", ioc_kind_key(kind));
    if (ioc_etcd_range(e, prefix, true, &tombs, NULL) < 0) {
        return 0;
    }
    snprintf(prefix, sizeof(prefix), IOC_KEY_CLEANED "%s/", ioc_kind_key(kind));
    ioc_etcd_range_keys(e, prefix, &cleaned, NULL);
    for (size_t i = 0; i < tombs.count; i++) {
        const char *name = strrchr(tombs.kvs[i].key, '/') + 1;
        json_t *t = json_loads(tombs.kvs[i].value, 0, NULL), *wait = json_array(), *n;
        size_t j;
        json_array_foreach(json_object_get(t, "nodes"), j, n) {
            char key[400];
            bool done = false;
            snprintf(key, sizeof(key), "%s%s/%s", prefix, name, json_string_value(n) ?: "");
            for (size_t k = 0; k < cleaned.count && !done; k++) {
                done = strcmp(cleaned.kvs[k].key, key) == 0;
            }
            if (!done) {
                json_array_append(wait, n);
            }
        }
        if (json_object_get(*out, name) == NULL) {
            json_object_set_new(*out, name, json_pack(
                "{s:s, s:s, s:{s:s, s:O}, s:{s:O}, s:{s:s, s:o}}", "apiVersion",
                IOC_API_VERSION, "kind", ioc_kind_name(kind), "metadata", "name", name,
                "deletionTimestamp", json_object_get(t, "deletedAt") ?: json_null(), "spec",
                "volume", json_object_get(t, "volume") ?: json_null(), "status", "phase",
                "Deleting", "waitingFor", wait));
        } else {
            json_decref(wait);
        }
        json_decref(t);
    }
    ioc_etcd_kvs_free(&tombs);
    ioc_etcd_kvs_free(&cleaned);
    return 0;
}

/* ---- apply ---- */

static int
read_input(const char *file, char **text, size_t *len)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    size_t cap = 0;
    char *buf = NULL;

    *len = 0;
    if (f == NULL) {
        return -errno;
    }
    for (;;) {
        if (*len + 4096 > cap) {
            cap = (cap + 4096) * 2;
            char *nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0) {
            break;
        }
    }
    if (f != stdin) {
        fclose(f);
    }
    buf[*len] = '\0';
    *text = buf;
    return 0;
}

static const char *
doc_label(json_t *doc, size_t i, char *buf, size_t len)
{
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    const char *name = ioc_resource_name(doc);

    snprintf(buf, len, "document %zu (%s %s)", i + 1, kind != NULL ? kind : "?",
             name != NULL ? name : "?");
    return buf;
}

/* First pass: every document valid on its own; Pools and Volumes join ctx. */
static int
apply_validate_alone(const char *file, json_t *docs, const struct ioc_resource_ctx *ctx,
                     json_t *norm)
{
    struct ioc_err err = {0};
    char label[160];
    enum ioc_kind kind;
    json_t *d, *n;
    size_t i;

    json_array_foreach(docs, i, d) {
        ioc_err_clear(&err);
        if (ioc_resource_validate(d, NULL, &n, &err) < 0) {
            return cl_error("%s: %s: %s", file, doc_label(d, i, label, sizeof(label)), err.msg);
        }
        ioc_resource_kind(n, &kind);
        if (kind == IOC_KIND_NODE) {
            json_decref(n);
            return cl_error("%s: %s: kind: Node is registered by iocd --node, not applied",
                            file, doc_label(d, i, label, sizeof(label)));
        }
        if (kind == IOC_KIND_POOL || kind == IOC_KIND_VOLUME) {
            json_object_set(kind == IOC_KIND_POOL ? ctx->pools : ctx->volumes,
                            ioc_resource_name(n), n);
        }
        json_array_append_new(norm, n);
    }
    return 0;
}

/* Second pass: against the cluster and the rest of the manifest. */
static int
apply_validate_ctx(const char *file, json_t *docs, const struct ioc_resource_ctx *ctx)
{
    struct ioc_err err = {0};
    char label[160];
    json_t *d, *n;
    size_t i;

    json_array_foreach(docs, i, d) {
        ioc_err_clear(&err);
        if (ioc_resource_validate(d, ctx, &n, &err) < 0) {
            return cl_error("%s: %s: %s", file, doc_label(d, i, label, sizeof(label)), err.msg);
        }
        json_decref(n);
    }
    return 0;
}

/* json_equal() is false when either is NULL; absent labels equal absent labels. */
static bool
same_labels(json_t *a, json_t *b)
{
    return (a == NULL && b == NULL) || json_equal(a, b);
}

/* A new random uid (128 bits, hex): a Volume's identity, kept across applies. */
static json_t *
new_uid(void)
{
    unsigned char b[16] = {0};
    char hex[33];
    ssize_t n = getrandom(b, sizeof(b), 0);

    if (n != (ssize_t)sizeof(b)) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t); /* no entropy: unique enough per apply */
        memcpy(b, &t, sizeof(t) < sizeof(b) ? sizeof(t) : sizeof(b));
        b[15] ^= (unsigned char)getpid();
    }
    for (size_t i = 0; i < sizeof(b); i++) {
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    }
    return json_string(hex);
}

/* The txn found a tombstone: name the resource still being deleted. Returns an exit code. */
static int
apply_blocked(struct ioc_etcd *e, const struct ioc_etcd_cmp *cmps, size_t ncmps)
{
    char *text = NULL;

    for (size_t i = 0; i < ncmps; i++) {
        if (ioc_etcd_get(e, cmps[i].key, &text, NULL, NULL) == 0) {
            json_t *t = json_loads(text, 0, NULL);
            const char *kind = strrchr(cmps[i].key, '/');
            free(text);
            cl_error("apply: %s %s is still being deleted (its data on some nodes is not "
                     "removed yet); nothing written: apply again once `iocctl get %ss` no "
                     "longer lists it as Deleting",
                     json_string_value(json_object_get(t, "kind")) ?: "", kind + 1,
                     strcmp(json_string_value(json_object_get(t, "kind")) ?: "", "Volume") == 0
                         ? "volume" : "snapshot");
            json_decref(t);
            return IOCCTL_EXIT_RPC_ERROR;
        }
    }
    return cl_error("apply: etcd changed during apply; nothing written, try again");
}

/* Write the documents that changed in one transaction; prints one line per document. */
static int
apply_write(struct ioc_etcd *e, json_t *norm, const struct ioc_resource_ctx *stored)
{
    struct ioc_etcd_op ops[64];
    struct ioc_etcd_cmp cmps[64];
    char *keys[64] = {0}, *vals[64] = {0}, *tkeys[64] = {0}, ts[32];
    size_t ncmps = 0;
    const char *verbs[64];
    size_t nops = 0, i;
    struct ioc_err err = {0};
    enum ioc_kind kind;
    bool ok = false;
    json_t *n;
    int rc = 0;

    if (json_array_size(norm) > IOC_ARRAY_SIZE(ops)) {
        return cl_error("apply: at most %zu documents at once", IOC_ARRAY_SIZE(ops));
    }
    ioc_resource_timestamp(ts, sizeof(ts));
    json_array_foreach(norm, i, n) {
        ioc_resource_kind(n, &kind);
        json_t *have = json_object_get(kind == IOC_KIND_POOL ? stored->pools
                                       : kind == IOC_KIND_VOLUME ? stored->volumes
                                                                 : stored->nodes,
                                       ioc_resource_name(n));
        json_t *md = json_object_get(n, "metadata");
        json_t *created = json_object_get(json_object_get(have, "metadata"), "creationTimestamp");
        json_t *uid = json_object_get(json_object_get(have, "metadata"), "uid");
        json_object_set_new(md, "creationTimestamp", created != NULL ? json_copy(created)
                                                                     : json_string(ts));
        if (kind == IOC_KIND_VOLUME && (have == NULL || uid != NULL)) {
            json_object_set_new(md, "uid", uid != NULL ? json_copy(uid) : new_uid());
        }
        if (have == NULL && (kind == IOC_KIND_VOLUME || kind == IOC_KIND_SNAPSHOT) &&
            ncmps < IOC_ARRAY_SIZE(cmps)) {
            /* not while the data of a deleted one of that name is still being removed */
            tkeys[ncmps] = malloc(256);
            snprintf(tkeys[ncmps], 256, IOC_KEY_TOMBSTONE "%s/%s", ioc_kind_key(kind),
                     ioc_resource_name(n));
            cmps[ncmps] = (struct ioc_etcd_cmp){.key = tkeys[ncmps], .target = IOC_ETCD_CMP_CREATE,
                                                .result = IOC_ETCD_EQUAL, .number = 0};
            ncmps++;
        }
        verbs[i] = "unchanged";
        if (have != NULL && json_equal(json_object_get(have, "spec"),
                                       json_object_get(n, "spec")) &&
            same_labels(json_object_get(json_object_get(have, "metadata"), "labels"),
                        json_object_get(md, "labels"))) {
            continue;
        }
        verbs[i] = have != NULL ? "configured" : "created";
        keys[nops] = malloc(256);
        ioc_resource_key(kind, ioc_resource_name(n), false, keys[nops], 256);
        vals[nops] = json_dumps(n, JSON_COMPACT | JSON_SORT_KEYS);
        ops[nops] = (struct ioc_etcd_op){.type = IOC_ETCD_OP_PUT, .key = keys[nops],
                                         .value = vals[nops]};
        nops++;
    }
    if (nops > 0) {
        rc = ioc_etcd_txn(e, cmps, ncmps, ops, nops, NULL, 0, &ok, NULL, &err);
    }
    for (i = 0; i < nops; i++) {
        free(keys[i]);
        free(vals[i]);
    }
    if (rc == 0 && nops > 0 && !ok) {
        rc = apply_blocked(e, cmps, ncmps);
    }
    for (i = 0; i < ncmps; i++) {
        free(tkeys[i]);
    }
    if (rc != 0) {
        return rc < 0 ? cl_error("apply: %s", err.msg) : rc;
    }
    json_array_foreach(norm, i, n) {
        printf("%s/%s %s\n", json_string_value(json_object_get(n, "kind")),
               ioc_resource_name(n), verbs[i]);
    }
    return IOCCTL_EXIT_OK;
}

/* Parse every -f file into one array of documents; "FILE" names the first file in errors. */
static int
apply_read_all(const struct copts *o, json_t *docs, const char **label)
{
    struct ioc_err err = {0};
    json_t *one;
    char *text = NULL;
    size_t len;
    int rc;

    *label = o->nfiles == 1 ? o->files[0] : "manifest";
    for (int i = 0; i < o->nfiles; i++) {
        rc = read_input(o->files[i], &text, &len);
        if (rc < 0) {
            return cl_error("apply: %s: %s", o->files[i], strerror(-rc));
        }
        rc = ioc_manifest_parse(text, len, &one, &err);
        free(text);
        if (rc < 0) {
            return cl_error("%s: %s", o->files[i], err.msg);
        }
        json_array_extend(docs, one);
        json_decref(one);
    }
    return 0;
}

static int
cmd_apply(struct ioc_etcd *e, const struct copts *o)
{
    struct ioc_resource_ctx ctx = {0}, stored = {0};
    struct ioc_err err = {0};
    json_t *docs = json_array(), *norm = json_array(), *snaps = NULL;
    const char *label;
    int rc;

    if (o->nfiles == 0) {
        json_decref(docs);
        json_decref(norm);
        return cl_error("apply: -f FILE is required (- reads stdin)");
    }
    rc = apply_read_all(o, docs, &label);
    if (rc != 0) {
        goto out;
    }
    if (load_kind(e, IOC_KIND_NODE, &stored.nodes, &err) < 0 ||
        load_kind(e, IOC_KIND_POOL, &stored.pools, &err) < 0 ||
        load_kind(e, IOC_KIND_VOLUME, &stored.volumes, &err) < 0 ||
        load_kind(e, IOC_KIND_SNAPSHOT, &snaps, &err) < 0) {
        rc = cl_error("%s", err.msg);
        goto out;
    }
    ctx.nodes = stored.nodes;
    ctx.pools = json_deep_copy(stored.pools);
    ctx.volumes = json_deep_copy(stored.volumes);
    rc = apply_validate_alone(label, docs, &ctx, norm);
    if (rc == 0) {
        rc = apply_validate_ctx(label, docs, &ctx);
    }
    if (rc == 0) {
        json_object_update(stored.nodes, snaps); /* snapshots compare like the others */
        rc = apply_write(e, norm, &stored);
    }
out:
    json_decref(ctx.pools);
    json_decref(ctx.volumes);
    json_decref(stored.nodes);
    json_decref(stored.pools);
    json_decref(stored.volumes);
    json_decref(snaps);
    json_decref(docs);
    json_decref(norm);
    return rc;
}

/* ---- tables ---- */

static void
fmt_age(json_t *doc, char *buf, size_t len)
{
    const char *ts = json_string_value(json_object_get(json_object_get(doc, "metadata"),
                                                       "creationTimestamp"));
    struct tm tm = {0};
    long long s;

    if (ts == NULL || strptime(ts, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL) {
        snprintf(buf, len, "<unknown>");
        return;
    }
    s = (long long)(time(NULL) - timegm(&tm));
    if (s < 0) {
        s = 0;
    }
    if (s < 120) {
        snprintf(buf, len, "%llds", s);
    } else if (s < 7200) {
        snprintf(buf, len, "%lldm", s / 60);
    } else if (s < 172800) {
        snprintf(buf, len, "%lldh", s / 3600);
    } else {
        snprintf(buf, len, "%lldd", s / 86400);
    }
}

static const char *
str_or(json_t *v, const char *dflt)
{
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static const char *
size_or(json_t *v, char *buf, size_t len)
{
    if (!json_is_integer(v)) {
        return "-";
    }
    return ioc_size_format((uint64_t)json_integer_value(v), true, buf, len);
}

/* One table row as cells; columns past ncols_narrow appear only with -o wide. */
#define COLS_MAX 9
struct table {
    const char *head[COLS_MAX];
    int ncols, nnarrow;
    json_t *rows; /* array of arrays of strings */
};

static void
table_row(struct table *t, const char *const *cells)
{
    json_t *r = json_array();

    for (int i = 0; i < t->ncols; i++) {
        json_array_append_new(r, json_string(cells[i] != NULL ? cells[i] : "-"));
    }
    json_array_append_new(t->rows, r);
}

static void
table_cell(const char *s, int width, bool last)
{
    if (last) {
        printf("%s\n", s);
    } else {
        printf("%-*s   ", width, s);
    }
}

/* Column widths: at least w's (may be zeros), grown to fit the header and every row. */
static void
table_widths(const struct table *t, int ncols, int *w)
{
    json_t *r;
    size_t i;

    for (int c = 0; c < ncols; c++) {
        w[c] = IOC_MAX(w[c], (int)strlen(t->head[c]));
        json_array_foreach(t->rows, i, r) {
            w[c] = IOC_MAX(w[c], (int)strlen(json_string_value(json_array_get(r, c))));
        }
    }
}

static void
table_print_row(json_t *r, int ncols, const int *w)
{
    for (int c = 0; c < ncols; c++) {
        table_cell(json_string_value(json_array_get(r, c)), w[c], c + 1 == ncols);
    }
}

/* The table; w (COLS_MAX ints, zeroed by the caller) gets the widths used. */
static void
table_print(const struct table *t, bool wide, int *w)
{
    int ncols = wide ? t->ncols : t->nnarrow;
    json_t *r;
    size_t i;

    table_widths(t, ncols, w);
    for (int c = 0; c < ncols; c++) {
        table_cell(t->head[c], w[c], c + 1 == ncols);
    }
    json_array_foreach(t->rows, i, r) {
        table_print_row(r, ncols, w);
    }
}

static void
row_node(struct table *t, json_t *d)
{
    json_t *spec = json_object_get(d, "spec"), *st = json_object_get(d, "status");
    char age[32], labels[256] = "";
    const char *k;
    json_t *v;
    size_t off = 0;

    fmt_age(d, age, sizeof(age));
    json_object_foreach(json_object_get(json_object_get(d, "metadata"), "labels"), k, v) {
        off += (size_t)snprintf(labels + off, sizeof(labels) - off, "%s%s=%s", off ? "," : "",
                                k, str_or(v, ""));
        if (off >= sizeof(labels)) {
            break;
        }
    }
    const char *cells[] = {ioc_resource_name(d), str_or(json_object_get(st, "state"), "Ready"),
                           str_or(json_array_get(json_object_get(spec, "addresses"), 0), "-"),
                           age, str_or(json_object_get(spec, "nbd"), "-"),
                           labels[0] ? labels : "<none>"};
    table_row(t, cells);
}

static void
row_pool(struct table *t, json_t *d)
{
    json_t *spec = json_object_get(d, "spec"), *st = json_object_get(d, "status");
    char age[32], cap[32], used[32];

    fmt_age(d, age, sizeof(age));
    const char *cells[] = {ioc_resource_name(d), str_or(json_object_get(spec, "node"), "-"),
                           str_or(json_object_get(st, "state"), "Pending"),
                           size_or(json_object_get(st, "capacity"), cap, sizeof(cap)),
                           size_or(json_object_get(st, "used"), used, sizeof(used)), age,
                           str_or(json_object_get(spec, "path"), "-"),
                           str_or(json_object_get(st, "message"), "-")};
    table_row(t, cells);
}

static void
row_volume(struct table *t, json_t *d)
{
    json_t *spec = json_object_get(d, "spec"), *st = json_object_get(d, "status"), *r;
    char age[32], size[32], reps[48], gen[24];
    size_t i, ready = 0;

    fmt_age(d, age, sizeof(age));
    json_array_foreach(json_object_get(st, "replicas"), i, r) {
        ready += strcmp(str_or(json_object_get(r, "state"), ""), "online") == 0;
    }
    snprintf(reps, sizeof(reps), "%zu/%lld", ready,
             (long long)json_integer_value(json_object_get(spec, "replicas")));
    snprintf(gen, sizeof(gen), "%lld", (long long)json_integer_value(json_object_get(st,
                                                                                 "generation")));
    const char *cells[] = {ioc_resource_name(d),
                           size_or(json_object_get(spec, "size"), size, sizeof(size)), reps,
                           str_or(json_object_get(st, "phase"), "Pending"),
                           str_or(json_object_get(st, "nexusNode"), "-"), age, gen,
                           str_or(json_object_get(st, "uri"), "-")};
    table_row(t, cells);
}

static void
row_snapshot(struct table *t, json_t *d)
{
    json_t *spec = json_object_get(d, "spec"), *st = json_object_get(d, "status"), *r;
    char age[32], size[32], reps[32];
    size_t i, ready = 0;

    fmt_age(d, age, sizeof(age));
    json_array_foreach(json_object_get(st, "replicas"), i, r) {
        ready += strcmp(str_or(json_object_get(r, "state"), ""), "ready") == 0;
    }
    snprintf(reps, sizeof(reps), "%zu/%zu", ready, json_array_size(json_object_get(st,
                                                                                   "replicas")));
    const char *cells[] = {ioc_resource_name(d), str_or(json_object_get(spec, "volume"), "-"),
                           json_is_true(json_object_get(st, "ready")) ? "true" : "false",
                           size_or(json_object_get(st, "size"), size, sizeof(size)), age,
                           str_or(json_object_get(st, "phase"), "Pending"), reps,
                           str_or(json_object_get(st, "creationTime"), "-")};
    table_row(t, cells);
}

static const struct {
    const char *head[COLS_MAX];
    int ncols, nnarrow;
    void (*row)(struct table *t, json_t *d);
} g_tables[IOC_KIND_COUNT] = {
    [IOC_KIND_NODE] = {{"NAME", "STATUS", "ADDRESS", "AGE", "NBD", "LABELS"}, 6, 4, row_node},
    [IOC_KIND_POOL] = {{"NAME", "NODE", "STATE", "CAPACITY", "USED", "AGE", "PATH", "MESSAGE"},
                       8, 6, row_pool},
    [IOC_KIND_VOLUME] = {{"NAME", "SIZE", "REPLICAS", "PHASE", "NEXUS", "AGE", "GENERATION",
                          "URI"}, 8, 6, row_volume},
    [IOC_KIND_SNAPSHOT] = {{"NAME", "VOLUME", "READY", "SIZE", "AGE", "PHASE", "REPLICAS",
                            "CREATED"}, 8, 5, row_snapshot},
};

/*
 * What `get -w` printed last: each name's document, and the column widths,
 * so an update prints only the rows that changed, aligned under the first
 * table (as kubectl does).
 */
struct shown {
    json_t *last; /* name -> document as last printed */
    int w[COLS_MAX];
    bool headed;
};

static void
print_doc(json_t *doc, enum out_fmt out)
{
    char *s = NULL;

    if (out == OUT_JSON) {
        s = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    } else if (ioc_yaml_dump(doc, &s) < 0) {
        s = NULL;
    }
    fputs(s != NULL ? s : "", stdout);
    if (out == OUT_JSON) {
        putchar('\n');
    }
    free(s);
}

/* Watch updates: only the rows (or documents) that changed since the last print. */
static void
print_changes(enum ioc_kind kind, json_t *docs, const char *name, enum out_fmt out,
              struct shown *sh)
{
    struct table t = {.ncols = g_tables[kind].ncols, .nnarrow = g_tables[kind].nnarrow,
                      .rows = json_array()};
    bool table = out == OUT_TABLE || out == OUT_WIDE;
    int ncols = out == OUT_WIDE ? t.ncols : t.nnarrow;
    json_t *d, *now;
    const char *k;

    memcpy(t.head, g_tables[kind].head, sizeof(t.head));
    json_object_foreach(docs, k, d) {
        if (name != NULL && strcmp(k, name) != 0) {
            continue;
        }
        if (table) {
            g_tables[kind].row(&t, d);
            now = json_array_get(t.rows, json_array_size(t.rows) - 1);
        } else if (!sh->headed) {
            print_doc(d, out);
        }
        /* documents compare, not rows: an AGE that ticked is no change */
        if (sh->headed && !json_equal(json_object_get(sh->last, k), d)) {
            if (table) {
                table_widths(&t, ncols, sh->w);
                table_print_row(now, ncols, sh->w);
            } else {
                print_doc(d, out);
            }
        }
        json_object_set(sh->last, k, d);
    }
    if (!sh->headed && table) {
        if (json_array_size(t.rows) == 0) {
            fprintf(stderr, "No resources found.\n");
        }
        table_print(&t, out == OUT_WIDE, sh->w);
    }
    sh->headed = true;
    fflush(stdout);
    json_decref(t.rows);
}

static void
print_docs(enum ioc_kind kind, json_t *docs, const char *name, enum out_fmt out)
{
    struct table t = {.ncols = g_tables[kind].ncols, .nnarrow = g_tables[kind].nnarrow,
                      .rows = json_array()};
    json_t *items = json_array(), *d, *shown;
    const char *k;
    int w[COLS_MAX] = {0};

    memcpy(t.head, g_tables[kind].head, sizeof(t.head));
    json_object_foreach(docs, k, d) {
        if (name == NULL || strcmp(k, name) == 0) {
            json_array_append(items, d);
            g_tables[kind].row(&t, d);
        }
    }
    if (out == OUT_TABLE || out == OUT_WIDE) {
        if (json_array_size(items) == 0) {
            fprintf(stderr, "No resources found.\n");
        } else {
            table_print(&t, out == OUT_WIDE, w);
        }
    } else {
        shown = name != NULL ? json_incref(json_array_get(items, 0))
                             : json_pack("{s:s, s:s, s:O}", "apiVersion", IOC_API_VERSION,
                                         "kind", "List", "items", items);
        print_doc(shown, out);
        json_decref(shown);
    }
    fflush(stdout);
    json_decref(items);
    json_decref(t.rows);
}

static volatile int g_changes;

static void
watch_cb(void *arg, int rc, const struct ioc_etcd_event *ev, size_t n)
{
    (void)arg, (void)rc, (void)ev;
    if (n > 0) {
        __atomic_add_fetch(&g_changes, 1, __ATOMIC_SEQ_CST);
    }
}

static int
cmd_get(struct ioc_etcd *e, const struct copts *o)
{
    struct ioc_etcd_watch *w = NULL;
    struct ioc_err err = {0};
    const char *name = o->nwords > 2 ? o->words[2] : NULL;
    struct shown sh = {0};
    enum ioc_kind kind;
    json_t *docs;
    int seen = 0;

    if (o->nwords < 2 || ioc_kind_parse(o->words[1], &kind) < 0) {
        fprintf(stderr, "iocctl: get: expected nodes, pools, volumes or snapshots%s%s\n",
                o->nwords >= 2 ? ", got " : "", o->nwords >= 2 ? o->words[1] : "");
        return IOCCTL_EXIT_USAGE;
    }
    if (o->watch && ioc_etcd_watch_start(e, IOC_KEY_ROOT, true, 0, watch_cb, NULL, &w) < 0) {
        return cl_error("get -w: cannot start the watch");
    }
    sh.last = json_object();
    for (;;) {
        if (load_shown(e, kind, &docs, &err) < 0) {
            ioc_etcd_watch_stop(&w);
            json_decref(sh.last);
            return cl_error("%s", err.msg);
        }
        if (name != NULL && json_object_get(docs, name) == NULL && !o->watch) {
            json_decref(docs);
            json_decref(sh.last);
            return cl_error("%s \"%s\" not found", ioc_kind_key(kind), name);
        }
        if (!o->watch) {
            print_docs(kind, docs, name, o->out);
            json_decref(docs);
            json_decref(sh.last);
            return IOCCTL_EXIT_OK;
        }
        print_changes(kind, docs, name, o->out, &sh);
        json_decref(docs);
        while (__atomic_load_n(&g_changes, __ATOMIC_SEQ_CST) == seen) {
            usleep(200 * 1000);
        }
        seen = __atomic_load_n(&g_changes, __ATOMIC_SEQ_CST);
    }
}

/* ---- describe ---- */

static void
progress_bar(json_t *pct, char *buf, size_t len)
{
    int p = json_is_integer(pct) ? (int)json_integer_value(pct) : -1, filled;
    char bar[21];

    if (p < 0 || p > 100) {
        buf[0] = '\0';
        return;
    }
    filled = p / 5;
    for (int i = 0; i < 20; i++) {
        bar[i] = i < filled ? '#' : '.';
    }
    bar[20] = '\0';
    snprintf(buf, len, "[%s] %3d%%", bar, p);
}

static void
describe_replicas(json_t *d)
{
    json_t *st = json_object_get(d, "status"), *reps = json_object_get(st, "replicas"), *r;
    size_t i, n = json_array_size(reps);
    char bar[48];

    printf("Replicas:\n  %s (nexus on %s, generation %lld)\n", ioc_resource_name(d),
           str_or(json_object_get(st, "nexusNode"), "-"),
           (long long)json_integer_value(json_object_get(st, "generation")));
    json_array_foreach(reps, i, r) {
        progress_bar(json_object_get(r, "rebuildProgress"), bar, sizeof(bar));
        printf("  %s %-12s %-12s %-14s %s\n", i + 1 == n ? "└──" : "├──",
               str_or(json_object_get(r, "node"), "-"), str_or(json_object_get(r, "pool"), "-"),
               str_or(json_object_get(r, "state"), "-"),
               strcmp(str_or(json_object_get(r, "state"), ""), "rebuilding") == 0 ? bar : "");
    }
    if (n == 0) {
        printf("  └── (none placed yet)\n");
    }
}

static void
describe_conditions_events(json_t *st)
{
    json_t *c;
    size_t i;

    printf("Conditions:\n");
    if (json_array_size(json_object_get(st, "conditions")) == 0) {
        printf("  <none>\n");
    }
    json_array_foreach(json_object_get(st, "conditions"), i, c) {
        printf("  %-18s %-6s %-22s %s\n", str_or(json_object_get(c, "type"), "-"),
               str_or(json_object_get(c, "status"), "-"),
               str_or(json_object_get(c, "reason"), "-"),
               str_or(json_object_get(c, "message"), ""));
    }
    printf("Events:\n");
    if (json_array_size(json_object_get(st, "events")) == 0) {
        printf("  <none>\n");
    }
    json_array_foreach(json_object_get(st, "events"), i, c) {
        printf("  %-20s %-18s %s\n", str_or(json_object_get(c, "time"), "-"),
               str_or(json_object_get(c, "reason"), "-"),
               str_or(json_object_get(c, "message"), ""));
    }
}

/* A YAML block under a heading, indented two spaces. */
static void
describe_block(const char *title, json_t *v)
{
    char *y = NULL, *line, *save = NULL;

    printf("%s:\n", title);
    if (v == NULL || ioc_yaml_dump(v, &y) < 0) {
        printf("  <none>\n");
        return;
    }
    for (line = strtok_r(y, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        printf("  %s\n", line);
    }
    free(y);
}

static int
cmd_describe(struct ioc_etcd *e, const struct copts *o)
{
    struct ioc_err err = {0};
    enum ioc_kind kind;
    json_t *docs, *d, *st;
    char age[32];

    if (o->nwords < 3 || ioc_kind_parse(o->words[1], &kind) < 0) {
        fprintf(stderr, "iocctl: describe: expected KIND NAME, e.g. describe volume db\n");
        return IOCCTL_EXIT_USAGE;
    }
    if (load_shown(e, kind, &docs, &err) < 0) {
        return cl_error("%s", err.msg);
    }
    d = json_object_get(docs, o->words[2]);
    if (d == NULL) {
        json_decref(docs);
        return cl_error("%s \"%s\" not found", ioc_kind_key(kind), o->words[2]);
    }
    st = json_object_get(d, "status");
    fmt_age(d, age, sizeof(age));
    printf("Name:         %s\nKind:         %s\nAge:          %s\n", o->words[2],
           ioc_kind_name(kind), age);
    describe_block("Spec", json_object_get(d, "spec"));
    if (kind == IOC_KIND_VOLUME) {
        json_t *brief = st != NULL ? json_deep_copy(st) : json_object();
        json_object_del(brief, "replicas");
        json_object_del(brief, "conditions");
        json_object_del(brief, "events");
        describe_block("Status", brief);
        json_decref(brief);
        describe_replicas(d);
        describe_conditions_events(st);
    } else {
        describe_block("Status", st);
    }
    json_decref(docs);
    return IOCCTL_EXIT_OK;
}

/* ---- delete ---- */

/*
 * Volumes and Snapshots hold data on nodes: their delete replaces the
 * resource by a tombstone /ioc/v1/tombstone/<kind>/<name> {uid, volume,
 * nodes} in one txn guarded by the resource's mod_revision (an apply in
 * between makes it fail, nothing half done). Agents remove the data the
 * tombstone names (src/agent/agent_delete.c); the controller drops it once
 * every node listed reported cleaned, and apply refuses the name until
 * then. Other kinds are plain deletes.
 */

static void
nodes_add(json_t *nodes, json_t *n)
{
    json_t *x;
    size_t i;

    if (!json_is_string(n)) {
        return;
    }
    json_array_foreach(nodes, i, x) {
        if (json_equal(x, n)) {
            return;
        }
    }
    json_array_append(nodes, n);
}

/* Every node that may hold something of the volume: replicas (also former ones), nexus. */
static json_t *
volume_nodes(struct ioc_etcd *e, const char *name, json_t *st)
{
    struct ioc_etcd_kvs kvs = {0};
    json_t *nodes = json_array(), *r;
    size_t i;

    json_array_foreach(json_object_get(st, "replicas"), i, r) {
        nodes_add(nodes, json_object_get(r, "node"));
    }
    json_array_foreach(json_object_get(st, "formerReplicas"), i, r) {
        nodes_add(nodes, r);
    }
    nodes_add(nodes, json_object_get(st, "nexusNode"));
    if (ioc_etcd_range_keys(e, IOC_KEY_ROOT "assign/", &kvs, NULL) == 0) {
        for (i = 0; i < kvs.count; i++) { /* /ioc/v1/assign/<node>/<vol> */
            const char *k = kvs.kvs[i].key + strlen(IOC_KEY_ROOT "assign/");
            const char *slash = strchr(k, '/');
            if (slash != NULL && strcmp(slash + 1, name) == 0) {
                json_t *n = json_stringn(k, (size_t)(slash - k));
                nodes_add(nodes, n);
                json_decref(n);
            }
        }
    }
    ioc_etcd_kvs_free(&kvs);
    return nodes;
}

/* Snapshots of vol, as "a, b" (empty when none). */
static void
volume_snapshots(json_t *snaps, const char *vol, char *buf, size_t len)
{
    const char *name;
    json_t *d;
    size_t off = 0;

    buf[0] = '\0';
    json_object_foreach(snaps, name, d) {
        if (strcmp(str_or(json_object_get(json_object_get(d, "spec"), "volume"), ""), vol) == 0 &&
            off < len) {
            off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? ", " : "", name);
        }
    }
}

static int
delete_with_tombstone(struct ioc_etcd *e, enum ioc_kind kind, const char *name)
{
    struct ioc_err err = {0};
    json_t *docs = NULL, *snaps = NULL, *d, *st, *tomb, *nodes, *gst = NULL;
    char key[256], tkey[256], gkey[256], *text = NULL, *gtext = NULL, list[256], ts[32];
    int64_t rev = 0, grev = 0;
    bool ok = false;
    int rc;

    ioc_resource_key(kind, name, false, key, sizeof(key));
    snprintf(tkey, sizeof(tkey), IOC_KEY_TOMBSTONE "%s/%s", ioc_kind_key(kind), name);
    rc = ioc_etcd_get(e, key, &text, &rev, &err);
    free(text);
    if (rc == -ENOENT) {
        if (ioc_etcd_get(e, tkey, &text, NULL, NULL) == 0) {
            free(text);
            return cl_error("%s \"%s\" is already being deleted (see iocctl get %ss)",
                            ioc_kind_key(kind), name, ioc_kind_key(kind));
        }
        return cl_error("%s \"%s\" not found", ioc_kind_key(kind), name);
    }
    if (rc < 0 || load_kind(e, kind, &docs, &err) < 0 ||
        load_kind(e, IOC_KIND_SNAPSHOT, &snaps, &err) < 0) {
        json_decref(docs);
        return cl_error("%s", err.msg);
    }
    d = json_object_get(docs, name);
    st = json_object_get(d, "status");
    /*
     * The controller writes a Volume's status and assignments in one txn, an
     * agent a Snapshot's take record before asking any node: with either key
     * unchanged at our txn, the nodes listed are all there are. Without any,
     * no data exists anywhere and the delete is a plain one.
     */
    if (kind == IOC_KIND_VOLUME) {
        ioc_resource_key(kind, name, true, gkey, sizeof(gkey));
    } else {
        snprintf(gkey, sizeof(gkey), IOC_KEY_SNAP_TAKE "%s", name);
    }
    if (ioc_etcd_get(e, gkey, &gtext, &grev, NULL) == 0 && kind == IOC_KIND_VOLUME) {
        gst = json_loads(gtext, 0, NULL);
        st = gst;
    }
    free(gtext);
    ioc_resource_timestamp(ts, sizeof(ts));
    if (kind == IOC_KIND_VOLUME) {
        volume_snapshots(snaps, name, list, sizeof(list));
        if (list[0] != '\0') {
            json_decref(gst);
            json_decref(docs);
            json_decref(snaps);
            return cl_error("volume \"%s\" has snapshots (%s): delete them first", name, list);
        }
        nodes = volume_nodes(e, name, st);
        tomb = json_pack("{s:s, s:s, s:O, s:o, s:s}", "kind", "Volume", "name", name, "uid",
                         json_object_get(json_object_get(d, "metadata"), "uid") ?: json_null(),
                         "nodes", nodes, "deletedAt", ts);
    } else {
        char tk[256], *tt = NULL;
        json_t *r, *take;
        size_t i;
        nodes = json_array();
        json_array_foreach(json_object_get(st, "replicas"), i, r) {
            if (strcmp(str_or(json_object_get(r, "state"), ""), "absent") != 0) {
                nodes_add(nodes, json_object_get(r, "node"));
            }
        }
        snprintf(tk, sizeof(tk), IOC_KEY_SNAP_TAKE "%s", name); /* a take status lags */
        if (ioc_etcd_get(e, tk, &tt, NULL, NULL) == 0) {
            take = json_loads(tt, 0, NULL);
            json_array_foreach(json_object_get(take, "nodes"), i, r) {
                nodes_add(nodes, r);
            }
            json_decref(take);
            free(tt);
        }
        tomb = json_pack("{s:s, s:s, s:O, s:o, s:s}", "kind", "Snapshot", "name", name,
                         "volume", json_object_get(json_object_get(d, "spec"), "volume")
                                       ?: json_null(),
                         "nodes", nodes, "deletedAt", ts);
    }
    text = json_dumps(tomb, JSON_COMPACT | JSON_SORT_KEYS);
    {
        struct ioc_etcd_cmp cmps[] = {
            {.key = key, .target = IOC_ETCD_CMP_MOD, .result = IOC_ETCD_EQUAL, .number = rev},
            {.key = gkey, .target = grev != 0 ? IOC_ETCD_CMP_MOD : IOC_ETCD_CMP_CREATE,
             .result = IOC_ETCD_EQUAL, .number = grev},
        };
        struct ioc_etcd_op ops[] = {
            {.type = IOC_ETCD_OP_DELETE, .key = key},
            {.type = IOC_ETCD_OP_PUT, .key = tkey, .value = text},
        };
        size_t nops = json_array_size(json_object_get(tomb, "nodes")) > 0 ? 2 : 1;
        rc = ioc_etcd_txn(e, cmps, 2, ops, nops, NULL, 0, &ok, NULL, &err);
    }
    free(text);
    json_decref(gst);
    json_decref(docs);
    json_decref(snaps);
    if (rc < 0) {
        json_decref(tomb);
        return cl_error("%s", err.msg);
    }
    if (!ok) {
        json_decref(tomb);
        return -EAGAIN; /* the resource or its status changed meanwhile: read again */
    }
    printf("%s/%s deleted", ioc_kind_name(kind), name);
    if (json_array_size(json_object_get(tomb, "nodes")) > 0) {
        printf(" (its data is removed from node%s", json_array_size(json_object_get(tomb,
                                                                                  "nodes")) > 1
                                                        ? "s" : "");
        for (size_t i = 0; i < json_array_size(json_object_get(tomb, "nodes")); i++) {
            printf("%s %s", i ? "," : "", json_string_value(json_array_get(
                                              json_object_get(tomb, "nodes"), i)));
        }
        printf(")");
    }
    printf("\n");
    json_decref(tomb);
    return IOCCTL_EXIT_OK;
}

static int
cmd_delete(struct ioc_etcd *e, const struct copts *o)
{
    struct ioc_err err = {0};
    enum ioc_kind kind;
    int64_t n = 0;
    char key[256];

    if (o->nwords < 3 || ioc_kind_parse(o->words[1], &kind) < 0) {
        fprintf(stderr, "iocctl: delete: expected KIND NAME, e.g. delete volume db\n");
        return IOCCTL_EXIT_USAGE;
    }
    if (kind == IOC_KIND_VOLUME || kind == IOC_KIND_SNAPSHOT) {
        int rc = -EAGAIN;
        for (int i = 0; i < 10 && rc == -EAGAIN; i++) {
            rc = delete_with_tombstone(e, kind, o->words[2]);
        }
        return rc != -EAGAIN ? rc : cl_error("%s \"%s\" kept changing while deleting it; "
                                             "try again", ioc_kind_key(kind), o->words[2]);
    }
    ioc_resource_key(kind, o->words[2], false, key, sizeof(key));
    if (ioc_etcd_delete(e, key, false, &n, &err) < 0) {
        return cl_error("%s", err.msg);
    }
    if (n == 0) {
        return cl_error("%s \"%s\" not found", ioc_kind_key(kind), o->words[2]);
    }
    printf("%s/%s deleted\n", ioc_kind_name(kind), o->words[2]);
    return IOCCTL_EXIT_OK;
}

/* ---- entry ---- */

bool
iocctl_cluster_is_command(const char *word)
{
    return strcmp(word, "apply") == 0 || strcmp(word, "get") == 0 ||
           strcmp(word, "describe") == 0 || strcmp(word, "delete") == 0;
}

static void
cluster_usage(FILE *f)
{
    fprintf(f, "usage: iocctl [--etcd URL] apply -f FILE|-\n"
               "       iocctl [--etcd URL] get nodes|pools|volumes|snapshots [NAME] "
               "[-o wide|json|yaml] [-w]\n"
               "       iocctl [--etcd URL] describe KIND NAME\n"
               "       iocctl [--etcd URL] delete KIND NAME\n"
               "--etcd defaults to $IOC_ETCD, else http://127.0.0.1:2379\n");
}

static int
parse_output(const char *v, enum out_fmt *out)
{
    static const char *const names[] = {"table", "wide", "json", "yaml"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = (enum out_fmt)i;
            return 0;
        }
    }
    fprintf(stderr, "iocctl: -o: expected wide, json or yaml, got '%s'\n", v);
    return -EINVAL;
}

static int
cluster_parse(int argc, char **argv, struct copts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool takes = strcmp(a, "--etcd") == 0 || strcmp(a, "-o") == 0 ||
                     strcmp(a, "--output") == 0 || strcmp(a, "-f") == 0 ||
                     strcmp(a, "--filename") == 0 || strcmp(a, "-s") == 0 ||
                     strcmp(a, "--rpc-socket") == 0 || strcmp(a, "--timeout") == 0;
        if (takes && i + 1 == argc) {
            fprintf(stderr, "iocctl: %s: needs a value\n", a);
            return -EINVAL;
        }
        if (strcmp(a, "--etcd") == 0) {
            o->etcd_url = argv[++i];
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (parse_output(argv[++i], &o->out) < 0) {
                return -EINVAL;
            }
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--filename") == 0) {
            if (o->nfiles == (int)IOC_ARRAY_SIZE(o->files)) {
                fprintf(stderr, "iocctl: -f: at most %zu files\n", IOC_ARRAY_SIZE(o->files));
                return -EINVAL;
            }
            o->files[o->nfiles++] = argv[++i];
        } else if (takes) {
            i++; /* node-local options: meaningless here, accepted anywhere */
        } else if (strcmp(a, "-w") == 0 || strcmp(a, "--watch") == 0) {
            o->watch = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cluster_usage(stdout);
            exit(0);
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "iocctl: %s: unknown option\n", a);
            return -EINVAL;
        } else if (o->nwords < 3) {
            o->words[o->nwords++] = a;
        } else {
            fprintf(stderr, "iocctl: unexpected argument '%s'\n", a);
            return -EINVAL;
        }
    }
    return 0;
}

int
iocctl_cluster_main(int argc, char **argv)
{
    struct copts o = {.etcd_url = getenv("IOC_ETCD")};
    struct ioc_etcd *e = NULL;
    struct ioc_err err = {0};
    int rc;

    if (cluster_parse(argc, argv, &o) < 0) {
        cluster_usage(stderr);
        return IOCCTL_EXIT_USAGE;
    }
    if (o.etcd_url == NULL || o.etcd_url[0] == '\0') {
        o.etcd_url = "http://127.0.0.1:2379";
    }
    if (ioc_etcd_create(o.etcd_url, &e, &err) < 0) {
        fprintf(stderr, "iocctl: --etcd: %s\n", err.msg);
        return IOCCTL_EXIT_USAGE;
    }
    if (strcmp(o.words[0], "apply") == 0) {
        rc = cmd_apply(e, &o);
    } else if (strcmp(o.words[0], "get") == 0) {
        rc = cmd_get(e, &o);
    } else if (strcmp(o.words[0], "describe") == 0) {
        rc = cmd_describe(e, &o);
    } else {
        rc = cmd_delete(e, &o);
    }
    ioc_etcd_destroy(e);
    return rc;
}
