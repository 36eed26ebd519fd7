/*
 * lib/resource/resource.c - validation and normalisation of Node, Pool, Volume and Snapshot.
 *
 * Each kind's spec is a table of fields (name, type, required, range), so
 * the unknown-field message can list what would be right and the docs can
 * be checked against one place. Validation walks the document once and
 * stops at the first problem, reporting it with its dotted path
 * ("spec.protocols[1]: expected one of nbd, iscsi, nvmf, vhost, got \"scsi\"").
 * The normalised document that comes out is what goes into etcd: sizes as
 * byte counts, defaults written out, status and server-side metadata
 * dropped (status belongs to the system; `get -o yaml | apply -f -` works).
 *
 * Cluster checks (a Pool's node is registered, a Volume's replicas fit on
 * distinct nodes with pools, a Snapshot's volume exists) run only when a
 * context is given; iocctl builds it from etcd plus the documents of the
 * same apply, so a manifest may bring a Pool and the Volume that needs it.
 */
#include "ioc/common.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/resource/resource.h"
#include "lib/size.h"

static const char *const g_kind_names[IOC_KIND_COUNT] = {"Node", "Pool", "Volume", "Snapshot"};
static const char *const g_kind_keys[IOC_KIND_COUNT] = {"node", "pool", "volume", "snapshot"};
static const char *const g_protocols[] = {"nbd", "iscsi", "nvmf", "vhost"};

void
ioc_resource_timestamp(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

const char *
ioc_kind_name(enum ioc_kind kind)
{
    return (unsigned)kind < IOC_KIND_COUNT ? g_kind_names[kind] : NULL;
}

const char *
ioc_kind_key(enum ioc_kind kind)
{
    return (unsigned)kind < IOC_KIND_COUNT ? g_kind_keys[kind] : NULL;
}

int
ioc_kind_parse(const char *s, enum ioc_kind *out)
{
    static const struct {
        const char *alias;
        enum ioc_kind kind;
    } aliases[] = {
        {"no", IOC_KIND_NODE}, {"vol", IOC_KIND_VOLUME}, {"vols", IOC_KIND_VOLUME},
        {"snap", IOC_KIND_SNAPSHOT}, {"snaps", IOC_KIND_SNAPSHOT},
    };
    size_t n = strlen(s);

    for (int k = 0; k < IOC_KIND_COUNT; k++) {
        size_t kl = strlen(g_kind_keys[k]);
        if (strcasecmp(s, g_kind_keys[k]) == 0 ||
            (n == kl + 1 && strncasecmp(s, g_kind_keys[k], kl) == 0 && tolower(s[kl]) == 's')) {
            *out = (enum ioc_kind)k;
            return 0;
        }
    }
    for (size_t i = 0; i < IOC_ARRAY_SIZE(aliases); i++) {
        if (strcasecmp(s, aliases[i].alias) == 0) {
            *out = aliases[i].kind;
            return 0;
        }
    }
    return -EINVAL;
}

void
ioc_resource_key(enum ioc_kind kind, const char *name, bool status, char *buf, size_t len)
{
    snprintf(buf, len, IOC_KEY_ROOT "%s%s/%s", status ? "status/" : "", ioc_kind_key(kind), name);
}

void
ioc_snapshot_pool_name(const char *vol, const char *snap, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%s", vol, snap);
}

const char *
ioc_resource_name(json_t *doc)
{
    return json_string_value(json_object_get(json_object_get(doc, "metadata"), "name"));
}

int
ioc_resource_kind(json_t *doc, enum ioc_kind *out)
{
    const char *kind = json_string_value(json_object_get(doc, "kind"));

    for (int k = 0; kind != NULL && k < IOC_KIND_COUNT; k++) {
        if (strcmp(kind, g_kind_names[k]) == 0) {
            *out = (enum ioc_kind)k;
            return 0;
        }
    }
    return -EINVAL;
}

bool
ioc_labels_match(json_t *labels, json_t *selector)
{
    const char *k;
    json_t *v;

    json_object_foreach(selector, k, v) {
        json_t *have = json_object_get(labels, k);
        if (!json_is_string(have) || !json_equal(have, v)) {
            return false;
        }
    }
    return true;
}

/* ---- field tables ---- */

enum field_type {
    F_STRING,    /* non-empty string */
    F_NAME,      /* a resource name */
    F_SIZE,      /* "10GiB" or bytes; normalised to bytes */
    F_INT,       /* integer in [min, max] */
    F_BOOL,
    F_STRINGS,   /* array of non-empty strings */
    F_LABELS,    /* object of string values */
    F_PROTOCOLS, /* array of g_protocols, no repeats */
};

struct field {
    const char *name;
    enum field_type type;
    bool required;
    long long min, max; /* F_INT range; F_SIZE minimum and required multiple (max) */
    json_t *(*dflt)(void);
};

static json_t *
dflt_one(void)
{
    return json_integer(1);
}

static json_t *
dflt_true(void)
{
    return json_true();
}

static json_t *
dflt_nbd(void)
{
    return json_pack("[s]", "nbd");
}

static const struct field g_node_fields[] = {
    {"addresses", F_STRINGS, false, 0, 0, NULL},
    {"nbd", F_STRING, false, 0, 0, NULL},
    {NULL, 0, false, 0, 0, NULL},
};

static const struct field g_pool_fields[] = {
    {"node", F_NAME, true, 0, 0, NULL},
    {"path", F_STRING, true, 0, 0, NULL},
    {"size", F_SIZE, false, 1 << 20, 512, NULL},
    {"clusterSize", F_SIZE, false, 4096, 4096, NULL},
    {NULL, 0, false, 0, 0, NULL},
};

static const struct field g_volume_fields[] = {
    {"size", F_SIZE, true, 512, 512, NULL},
    {"replicas", F_INT, false, 1, IOC_REPLICAS_MAX, dflt_one},
    {"thin", F_BOOL, false, 0, 0, dflt_true},
    {"protocols", F_PROTOCOLS, false, 0, 0, dflt_nbd},
    {"nexusNode", F_NAME, false, 0, 0, NULL},
    {"nodeSelector", F_LABELS, false, 0, 0, NULL},
    {"rebuildRate", F_SIZE, false, 4096, 1, NULL}, /* bytes/s a nexus rebuild may copy */
    {NULL, 0, false, 0, 0, NULL},
};

static const struct field g_snapshot_fields[] = {
    {"volume", F_NAME, true, 0, 0, NULL},
    {NULL, 0, false, 0, 0, NULL},
};

static const struct field *const g_spec_fields[IOC_KIND_COUNT] = {
    g_node_fields, g_pool_fields, g_volume_fields, g_snapshot_fields,
};

static int
name_check(const char *path, const char *s, struct ioc_err *err)
{
    size_t n = strlen(s);

    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0])) {
        return ioc_err_set(err, -EINVAL, "%s: must be 1 to 63 characters starting with a letter "
                           "or digit, got \"%s\"", path, s);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(islower(c) || isdigit(c) || c == '-' || c == '.' || c == '_')) {
            return ioc_err_set(err, -EINVAL, "%s: may contain only a-z 0-9 . _ -, got \"%s\"",
                               path, s);
        }
    }
    return 0;
}

static void
field_list(const struct field *f, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (; f->name != NULL && off < len; f++) {
        off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? ", " : "", f->name);
    }
}

static int
check_size(const char *path, const struct field *f, json_t *v, json_t **out, struct ioc_err *err)
{
    uint64_t bytes = 0;
    char *s = NULL;
    int rc = -EINVAL;

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        bytes = (uint64_t)json_integer_value(v);
        rc = 0;
    } else if (json_is_string(v)) {
        rc = ioc_size_parse(json_string_value(v), &bytes);
    }
    if (rc < 0 || bytes > INT64_MAX) {
        s = json_dumps(v, JSON_ENCODE_ANY);
        ioc_err_set(err, -EINVAL, "%s: bad size %s: expected a size such as 10GiB or a "
                    "number of bytes", path, s != NULL ? s : "?");
        free(s);
        return -EINVAL;
    }
    if (bytes < (uint64_t)f->min || bytes % (uint64_t)f->max != 0) {
        char b[32];
        return ioc_err_set(err, -EINVAL, "%s: must be at least %s and a multiple of %lld, got %s",
                           path, ioc_size_format((uint64_t)f->min, false, b, sizeof(b)), f->max,
                           json_is_string(v) ? json_string_value(v) : "a number");
    }
    if (f->type == F_SIZE && strcmp(f->name, "clusterSize") == 0 && (bytes & (bytes - 1)) != 0) {
        return ioc_err_set(err, -EINVAL, "%s: must be a power of two", path);
    }
    *out = json_integer((json_int_t)bytes);
    return 0;
}

static int
check_strings(const char *path, json_t *v, bool protocols, json_t **out, struct ioc_err *err)
{
    json_t *x;
    size_t i;

    if (!json_is_array(v) || (protocols && json_array_size(v) == 0)) {
        return ioc_err_set(err, -EINVAL, "%s: expected a %slist of strings", path,
                           protocols ? "non-empty " : "");
    }
    json_array_foreach(v, i, x) {
        const char *s = json_string_value(x);
        bool known = !protocols;
        if (s == NULL || s[0] == '\0') {
            return ioc_err_set(err, -EINVAL, "%s[%zu]: expected a non-empty string", path, i);
        }
        for (size_t p = 0; protocols && p < IOC_ARRAY_SIZE(g_protocols); p++) {
            known |= strcmp(s, g_protocols[p]) == 0;
        }
        if (!known) {
            return ioc_err_set(err, -EINVAL, "%s[%zu]: expected one of nbd, iscsi, nvmf, vhost, "
                               "got \"%s\"", path, i, s);
        }
        for (size_t j = 0; protocols && j < i; j++) {
            if (json_equal(json_array_get(v, j), x)) {
                return ioc_err_set(err, -EINVAL, "%s[%zu]: \"%s\" is listed twice", path, i, s);
            }
        }
    }
    *out = json_deep_copy(v);
    return 0;
}

static int
check_labels(const char *path, json_t *v, json_t **out, struct ioc_err *err)
{
    const char *k;
    json_t *x;

    if (!json_is_object(v)) {
        return ioc_err_set(err, -EINVAL, "%s: expected a mapping of strings", path);
    }
    json_object_foreach(v, k, x) {
        if (!json_is_string(x) || k[0] == '\0' || strlen(k) > 63) {
            return ioc_err_set(err, -EINVAL, "%s.%s: expected a string value and a key of 1 "
                               "to 63 characters", path, k);
        }
    }
    *out = json_deep_copy(v);
    return 0;
}

/* Check one field's value; *out gets the normalised value. */
static int
check_field(const char *path, const struct field *f, json_t *v, json_t **out,
            struct ioc_err *err)
{
    char *s;

    switch (f->type) {
    case F_STRING:
    case F_NAME:
        if (!json_is_string(v) || json_string_length(v) == 0) {
            return ioc_err_set(err, -EINVAL, "%s: expected a non-empty string", path);
        }
        if (f->type == F_NAME && name_check(path, json_string_value(v), err) < 0) {
            return -EINVAL;
        }
        *out = json_copy(v);
        return 0;
    case F_SIZE:
        return check_size(path, f, v, out, err);
    case F_INT:
        if (!json_is_integer(v) || json_integer_value(v) < f->min ||
            json_integer_value(v) > f->max) {
            s = json_dumps(v, JSON_ENCODE_ANY);
            ioc_err_set(err, -EINVAL, "%s: must be between %lld and %lld, got %s", path, f->min,
                        f->max, s != NULL ? s : "?");
            free(s);
            return -EINVAL;
        }
        *out = json_copy(v);
        return 0;
    case F_BOOL:
        if (!json_is_boolean(v)) {
            return ioc_err_set(err, -EINVAL, "%s: expected true or false", path);
        }
        *out = json_copy(v);
        return 0;
    case F_STRINGS:
    case F_PROTOCOLS:
        return check_strings(path, v, f->type == F_PROTOCOLS, out, err);
    case F_LABELS:
        return check_labels(path, v, out, err);
    }
    return -EINVAL;
}

static int
check_spec(enum ioc_kind kind, json_t *spec, json_t *nspec, struct ioc_err *err)
{
    const struct field *fields = g_spec_fields[kind], *f;
    char path[128], list[256];
    const char *k;
    json_t *v, *nv;

    if (!json_is_object(spec)) {
        return ioc_err_set(err, -EINVAL, "spec: %s", spec == NULL ? "required"
                                                                  : "expected a mapping");
    }
    json_object_foreach(spec, k, v) {
        for (f = fields; f->name != NULL && strcmp(f->name, k) != 0; f++) {
        }
        if (f->name == NULL) {
            field_list(fields, list, sizeof(list));
            return ioc_err_set(err, -EINVAL, "spec.%s: unknown field; expected one of: %s", k,
                               list);
        }
    }
    for (f = fields; f->name != NULL; f++) {
        v = json_object_get(spec, f->name);
        snprintf(path, sizeof(path), "spec.%s", f->name);
        if (v == NULL || json_is_null(v)) {
            if (f->required) {
                return ioc_err_set(err, -EINVAL, "%s: required", path);
            }
            if (f->dflt != NULL) {
                json_object_set_new(nspec, f->name, f->dflt());
            }
            continue;
        }
        if (check_field(path, f, v, &nv, err) < 0) {
            return -EINVAL;
        }
        json_object_set_new(nspec, f->name, nv);
    }
    return 0;
}

static int
check_metadata(json_t *md, json_t *nmd, struct ioc_err *err)
{
    static const char *const ignored[] = {"creationTimestamp", "uid", "resourceVersion"};
    const char *k;
    json_t *v, *labels;

    if (!json_is_object(md)) {
        return ioc_err_set(err, -EINVAL, "metadata: %s", md == NULL ? "required"
                                                                    : "expected a mapping");
    }
    json_object_foreach(md, k, v) {
        bool ok = strcmp(k, "name") == 0 || strcmp(k, "labels") == 0;
        for (size_t i = 0; i < IOC_ARRAY_SIZE(ignored); i++) {
            ok |= strcmp(k, ignored[i]) == 0;
        }
        if (!ok) {
            return ioc_err_set(err, -EINVAL, "metadata.%s: unknown field; expected one of: "
                               "name, labels", k);
        }
    }
    v = json_object_get(md, "name");
    if (!json_is_string(v)) {
        return ioc_err_set(err, -EINVAL, "metadata.name: %s",
                           v == NULL ? "required" : "expected a string");
    }
    if (name_check("metadata.name", json_string_value(v), err) < 0) {
        return -EINVAL;
    }
    json_object_set_new(nmd, "name", json_copy(v));
    v = json_object_get(md, "labels");
    if (v != NULL && !json_is_null(v)) {
        if (check_labels("metadata.labels", v, &labels, err) < 0) {
            return -EINVAL;
        }
        json_object_set_new(nmd, "labels", labels);
    }
    return 0;
}

static int
check_header(json_t *doc, enum ioc_kind *kind, struct ioc_err *err)
{
    const char *k;
    json_t *v;

    if (!json_is_object(doc)) {
        return ioc_err_set(err, -EINVAL, "expected a mapping with apiVersion, kind, metadata "
                           "and spec");
    }
    json_object_foreach(doc, k, v) {
        if (strcmp(k, "apiVersion") != 0 && strcmp(k, "kind") != 0 &&
            strcmp(k, "metadata") != 0 && strcmp(k, "spec") != 0 && strcmp(k, "status") != 0) {
            return ioc_err_set(err, -EINVAL, "%s: unknown field; expected one of: apiVersion, "
                               "kind, metadata, spec", k);
        }
    }
    v = json_object_get(doc, "apiVersion");
    if (!json_is_string(v) || strcmp(json_string_value(v), IOC_API_VERSION) != 0) {
        return ioc_err_set(err, -EINVAL, "apiVersion: expected \"%s\"%s%s%s", IOC_API_VERSION,
                           json_is_string(v) ? ", got \"" : "",
                           json_is_string(v) ? json_string_value(v) : "",
                           json_is_string(v) ? "\"" : "");
    }
    if (ioc_resource_kind(doc, kind) < 0) {
        v = json_object_get(doc, "kind");
        return ioc_err_set(err, -EINVAL, "kind: expected Node, Pool, Volume or Snapshot%s%s%s",
                           json_is_string(v) ? ", got \"" : "",
                           json_is_string(v) ? json_string_value(v) : "",
                           json_is_string(v) ? "\"" : "");
    }
    return 0;
}

/* ---- cluster checks ---- */

static int
check_pool_ctx(json_t *doc, const struct ioc_resource_ctx *ctx, struct ioc_err *err)
{
    const char *node = json_string_value(json_object_get(json_object_get(doc, "spec"), "node"));

    if (ctx->nodes != NULL && json_object_get(ctx->nodes, node) == NULL) {
        return ioc_err_set(err, -EINVAL, "spec.node: node \"%s\" is not registered (start "
                           "iocd --node %s, or see iocctl get nodes)", node, node);
    }
    return 0;
}

static int
check_volume_ctx(json_t *doc, const struct ioc_resource_ctx *ctx, struct ioc_err *err)
{
    json_t *spec = json_object_get(doc, "spec");
    json_t *sel = json_object_get(spec, "nodeSelector");
    json_int_t replicas = json_integer_value(json_object_get(spec, "replicas"));
    json_t *seen = json_object(), *pool;
    const char *name;
    size_t n;

    if (ctx->pools == NULL) {
        json_decref(seen);
        return 0;
    }
    json_object_foreach(ctx->pools, name, pool) {
        const char *node = json_string_value(json_object_get(json_object_get(pool, "spec"),
                                                             "node"));
        json_t *nd = ctx->nodes != NULL ? json_object_get(ctx->nodes, node) : NULL;
        if (node == NULL || (ctx->nodes != NULL && nd == NULL)) {
            continue;
        }
        if (ioc_labels_match(json_object_get(json_object_get(nd, "metadata"), "labels"), sel)) {
            json_object_set_new(seen, node, json_true());
        }
    }
    n = json_object_size(seen);
    json_decref(seen);
    if ((size_t)replicas > n) {
        return ioc_err_set(err, -EINVAL, "spec.replicas: %lld replicas need %lld nodes with a "
                           "pool%s, only %zu known", (long long)replicas, (long long)replicas,
                           sel != NULL ? " matching spec.nodeSelector" : "", n);
    }
    return 0;
}

static int
check_ctx(enum ioc_kind kind, json_t *doc, const struct ioc_resource_ctx *ctx,
          struct ioc_err *err)
{
    const char *vol;

    switch (kind) {
    case IOC_KIND_POOL:
        return check_pool_ctx(doc, ctx, err);
    case IOC_KIND_VOLUME:
        return check_volume_ctx(doc, ctx, err);
    case IOC_KIND_SNAPSHOT:
        vol = json_string_value(json_object_get(json_object_get(doc, "spec"), "volume"));
        if (ctx->volumes != NULL && json_object_get(ctx->volumes, vol) == NULL) {
            return ioc_err_set(err, -EINVAL, "spec.volume: volume \"%s\" does not exist", vol);
        }
        return 0;
    default:
        return 0;
    }
}

/* The pool snapshot "VOLUME:NAME" must fit a pool name. */
static int
check_snapshot_name(json_t *doc, struct ioc_err *err)
{
    const char *vol = json_string_value(json_object_get(json_object_get(doc, "spec"), "volume"));
    const char *name = ioc_resource_name(doc);

    if (strlen(vol) + 1 + strlen(name) > IOC_SNAPSHOT_POOL_NAME_MAX) {
        return ioc_err_set(err, -EINVAL, "metadata.name: a snapshot's name and spec.volume "
                           "together may have at most %d characters, got %zu + %zu",
                           IOC_SNAPSHOT_POOL_NAME_MAX - 1, strlen(name), strlen(vol));
    }
    return 0;
}

int
ioc_resource_validate(json_t *doc, const struct ioc_resource_ctx *ctx, json_t **out,
                      struct ioc_err *err)
{
    enum ioc_kind kind;
    json_t *n = NULL, *md, *spec;

    if (check_header(doc, &kind, err) < 0) {
        return -EINVAL;
    }
    md = json_object();
    spec = json_object();
    n = json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", IOC_API_VERSION, "kind",
                  g_kind_names[kind], "metadata", md, "spec", spec);
    if (n == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    if (check_metadata(json_object_get(doc, "metadata"), md, err) < 0 ||
        check_spec(kind, json_object_get(doc, "spec"), spec, err) < 0 ||
        (kind == IOC_KIND_SNAPSHOT && check_snapshot_name(n, err) < 0) ||
        (ctx != NULL && check_ctx(kind, n, ctx, err) < 0)) {
        json_decref(n);
        return -EINVAL;
    }
    *out = n;
    return 0;
}
