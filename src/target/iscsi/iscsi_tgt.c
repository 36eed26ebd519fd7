/*
 * target/iscsi/iscsi_tgt.c - the target registry: IQNs with their LUNs,
 * allow-lists and CHAP credentials.
 *
 * A short list under one mutex, touched on the control path and once per
 * login (lookup, SendTargets), never per IO: a session keeps a reference to
 * its target and reaches the LUNs directly. Targets are reference counted so
 * that deleting one while sessions use it is safe: the registry drops its
 * reference, marks it removed and asks the socket layer (hook) to close its
 * connections; the bdev references go with the last session.
 *
 * An initiator not on a non-empty allow-list neither sees the target in
 * SendTargets nor can log in to it (the lookup fails as "not found", so the
 * target's existence does not leak). Rejected alternative: per-LUN masking;
 * per-target lists are what Kubernetes attach flows use.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "target/iscsi/iscsi_internal.h"

/* Protects g_tgts (the list and its links); the targets' fields are immutable. */
static pthread_mutex_t g_tgts_lock = PTHREAD_MUTEX_INITIALIZER;
static struct iscsi_tgt *g_tgts;

void (*g_iscsi_tgt_removed_hook)(struct iscsi_tgt *t);

static void
lun_free(struct iscsi_lun *lu)
{
    if (lu == NULL) {
        return;
    }
    ioc_bdev_put(&lu->bdev);
    pthread_mutex_destroy(&lu->lock);
    free(lu);
}

static void
tgt_free(struct iscsi_tgt *t)
{
    for (unsigned i = 0; i < t->nluns; i++) {
        lun_free(t->luns[i]);
    }
    for (unsigned i = 0; i < t->nallowed; i++) {
        free(t->allowed[i]);
    }
    explicit_bzero(&t->chap, sizeof(t->chap));
    free(t);
}

void
iscsi_tgt_put(struct iscsi_tgt **tp)
{
    struct iscsi_tgt *t = *tp;

    *tp = NULL;
    if (t != NULL && atomic_fetch_sub(&t->refs, 1) == 1) {
        tgt_free(t);
    }
}

bool
iscsi_tgt_allows(const struct iscsi_tgt *t, const char *initiator)
{
    if (t->nallowed == 0) {
        return true;
    }
    for (unsigned i = 0; i < t->nallowed; i++) {
        if (strcasecmp(t->allowed[i], initiator) == 0) {
            return true;
        }
    }
    return false;
}

static struct iscsi_tgt *
tgt_find_locked(const char *iqn)
{
    for (struct iscsi_tgt *t = g_tgts; t != NULL; t = t->next) {
        if (strcasecmp(t->iqn, iqn) == 0) {
            return t;
        }
    }
    return NULL;
}

struct iscsi_tgt *
iscsi_tgt_lookup(const char *iqn, const char *initiator)
{
    struct iscsi_tgt *t;

    pthread_mutex_lock(&g_tgts_lock);
    t = tgt_find_locked(iqn);
    if (t != NULL && !iscsi_tgt_allows(t, initiator)) {
        t = NULL;
    }
    if (t != NULL) {
        atomic_fetch_add(&t->refs, 1);
    }
    pthread_mutex_unlock(&g_tgts_lock);
    return t;
}

struct iscsi_lun *
iscsi_tgt_lun(struct iscsi_tgt *t, uint64_t lun)
{
    for (unsigned i = 0; i < t->nluns; i++) {
        if (t->luns[i]->id == lun) {
            return t->luns[i];
        }
    }
    return NULL;
}

void
iscsi_tgt_send_targets(const char *which, const char *initiator, const char *portal,
                       struct iscsi_text *resp)
{
    bool all = strcmp(which, "All") == 0;

    pthread_mutex_lock(&g_tgts_lock);
    for (struct iscsi_tgt *t = g_tgts; t != NULL; t = t->next) {
        if (!iscsi_tgt_allows(t, initiator)) {
            continue;
        }
        if (all || which[0] == '\0' || strcasecmp(which, t->iqn) == 0) {
            iscsi_text_add(resp, "TargetName", "%s", t->iqn);
            iscsi_text_add(resp, "TargetAddress", "%s", portal);
        }
    }
    pthread_mutex_unlock(&g_tgts_lock);
}

/* ------------------------------------------------------------- creation */

/* iSCSI names: iqn./eui./naa. followed by [a-z0-9.-:] (RFC 3722 stringprep'd). */
static bool
iqn_valid(const char *s)
{
    size_t n = strlen(s);

    if (n < 5 || n > ISCSI_NAME_MAX) {
        return false;
    }
    if (strncmp(s, "iqn.", 4) != 0 && strncmp(s, "eui.", 4) != 0 && strncmp(s, "naa.", 4) != 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == ':' || (c >= 'A' && c <= 'Z'))) {
            return false;
        }
    }
    return true;
}

static int
tgt_add_lun(struct iscsi_tgt *t, json_t *item, struct ioc_err *err)
{
    json_t *jl = json_object_get(item, "lun");
    const char *bname = json_string_value(json_object_get(item, "bdev"));
    struct iscsi_lun *lu;
    uint64_t id = json_is_integer(jl) ? (uint64_t)json_integer_value(jl) : 0;

    if (!json_is_object(item) || bname == NULL || (jl != NULL && !json_is_integer(jl)) ||
        id > 255 || (jl != NULL && json_integer_value(jl) < 0)) {
        return ioc_err_set(err, -EINVAL, "luns: expected [{lun: 0..255, bdev: NAME}]");
    }
    if (t->nluns == ISCSI_MAX_LUNS || iscsi_tgt_lun(t, id) != NULL) {
        return ioc_err_set(err, -EINVAL, "luns: lun %" PRIu64 " given twice or too many luns",
                           id);
    }
    lu = calloc(1, sizeof(*lu));
    if (lu == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    lu->id = id;
    lu->pr.holder = -1;
    pthread_mutex_init(&lu->lock, NULL);
    lu->bdev = ioc_bdev_get_by_name(bname);
    if (lu->bdev == NULL) {
        lun_free(lu);
        return ioc_err_set(err, -ENODEV, "luns: no bdev named %s", bname);
    }
    t->luns[t->nluns++] = lu;
    return 0;
}

static int
tgt_parse_allowed(struct iscsi_tgt *t, json_t *list, struct ioc_err *err)
{
    size_t i;
    json_t *v;

    if (list == NULL || json_is_null(list)) {
        return 0;
    }
    if (!json_is_array(list) || json_array_size(list) > ISCSI_MAX_ALLOWED) {
        return ioc_err_set(err, -EINVAL, "allowed_initiators: expected up to %u IQNs",
                           ISCSI_MAX_ALLOWED);
    }
    json_array_foreach(list, i, v) {
        const char *s = json_string_value(v);

        if (s == NULL || !iqn_valid(s)) {
            return ioc_err_set(err, -EINVAL, "allowed_initiators: %zu: not an iSCSI name", i);
        }
        t->allowed[t->nallowed] = strdup(s);
        if (t->allowed[t->nallowed] == NULL) {
            return ioc_err_set(err, -ENOMEM, "out of memory");
        }
        t->nallowed++;
    }
    return 0;
}

static int
chap_str(json_t *chap, const char *key, char *out, size_t len, bool required,
         struct ioc_err *err)
{
    json_t *v = json_object_get(chap, key);

    if (v == NULL && !required) {
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= len) {
        return ioc_err_set(err, -EINVAL, "chap.%s: expected a string of 1..%zu bytes", key,
                           len - 1);
    }
    snprintf(out, len, "%s", json_string_value(v));
    return 0;
}

static int
tgt_parse_chap(struct iscsi_tgt *t, json_t *chap, struct ioc_err *err)
{
    struct iscsi_chap *c = &t->chap;
    int rc;

    if (chap == NULL || json_is_null(chap)) {
        return 0;
    }
    if (!json_is_object(chap)) {
        return ioc_err_set(err, -EINVAL, "chap: expected {user, secret, mutual_user?, "
                           "mutual_secret?}");
    }
    rc = chap_str(chap, "user", c->user, sizeof(c->user), true, err);
    if (rc == 0) {
        rc = chap_str(chap, "secret", c->secret, sizeof(c->secret), true, err);
    }
    if (rc == 0) {
        rc = chap_str(chap, "mutual_user", c->mutual_user, sizeof(c->mutual_user), false, err);
    }
    if (rc == 0) {
        rc = chap_str(chap, "mutual_secret", c->mutual_secret, sizeof(c->mutual_secret),
                      c->mutual_user[0] != '\0', err);
    }
    c->required = rc == 0;
    c->mutual = rc == 0 && c->mutual_user[0] != '\0';
    return rc;
}

static int
tgt_parse(struct iscsi_tgt *t, json_t *params, struct ioc_err *err)
{
    static const char *known[] = {"iqn", "luns", "allowed_initiators", "chap"};
    const char *iqn = json_string_value(json_object_get(params, "iqn"));
    json_t *luns = json_object_get(params, "luns");
    const char *key;
    json_t *v;
    size_t i;
    int rc;

    json_object_foreach(params, key, v) {
        bool ok = false;

        for (i = 0; i < IOC_ARRAY_SIZE(known); i++) {
            ok = ok || strcmp(key, known[i]) == 0;
        }
        if (!ok) {
            return ioc_err_set(err, -EINVAL, "%s: unknown parameter; expected one of: iqn, "
                               "luns, allowed_initiators, chap", key);
        }
    }
    if (iqn == NULL || !iqn_valid(iqn)) {
        return ioc_err_set(err, -EINVAL, "iqn: expected an iSCSI name such as "
                           "iqn.2024-01.io.ioc:vol1");
    }
    snprintf(t->iqn, sizeof(t->iqn), "%s", iqn);
    if (!json_is_array(luns) || json_array_size(luns) == 0) {
        return ioc_err_set(err, -EINVAL, "luns: expected a non-empty list of {lun, bdev}");
    }
    json_array_foreach(luns, i, v) {
        rc = tgt_add_lun(t, v, err);
        if (rc < 0) {
            return rc;
        }
    }
    rc = tgt_parse_allowed(t, json_object_get(params, "allowed_initiators"), err);
    return rc < 0 ? rc : tgt_parse_chap(t, json_object_get(params, "chap"), err);
}

int
ioc_iscsi_tgt_create(json_t *params, struct ioc_err *err)
{
    struct iscsi_tgt *t = calloc(1, sizeof(*t));
    int rc;

    if (t == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    atomic_init(&t->refs, 1);
    rc = tgt_parse(t, params, err);
    if (rc < 0) {
        tgt_free(t);
        return rc;
    }
    pthread_mutex_lock(&g_tgts_lock);
    if (tgt_find_locked(t->iqn) != NULL) {
        pthread_mutex_unlock(&g_tgts_lock);
        rc = ioc_err_set(err, -EEXIST, "iscsi target %s already exists", t->iqn);
        tgt_free(t);
        return rc;
    }
    t->next = g_tgts;
    g_tgts = t;
    pthread_mutex_unlock(&g_tgts_lock);
    IOC_INFO("iscsi", "target %s: created with %u lun%s", t->iqn, t->nluns,
             t->nluns == 1 ? "" : "s");
    return 0;
}

static void
tgt_unlink_and_put(struct iscsi_tgt *t)
{
    atomic_store(&t->removed, true);
    if (g_iscsi_tgt_removed_hook != NULL) {
        g_iscsi_tgt_removed_hook(t);
    }
    IOC_INFO("iscsi", "target %s: deleted", t->iqn);
    iscsi_tgt_put(&t);
}

int
ioc_iscsi_tgt_delete(const char *iqn, struct ioc_err *err)
{
    struct iscsi_tgt **pp, *t = NULL;

    pthread_mutex_lock(&g_tgts_lock);
    for (pp = &g_tgts; *pp != NULL; pp = &(*pp)->next) {
        if (strcasecmp((*pp)->iqn, iqn) == 0) {
            t = *pp;
            *pp = t->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_tgts_lock);
    if (t == NULL) {
        return ioc_err_set(err, -ENOENT, "no iscsi target %s", iqn);
    }
    tgt_unlink_and_put(t);
    return 0;
}

void
ioc_iscsi_tgt_delete_all(void)
{
    struct iscsi_tgt *t;

    for (;;) {
        pthread_mutex_lock(&g_tgts_lock);
        t = g_tgts;
        if (t != NULL) {
            g_tgts = t->next;
        }
        pthread_mutex_unlock(&g_tgts_lock);
        if (t == NULL) {
            return;
        }
        tgt_unlink_and_put(t);
    }
}

static json_t *
tgt_describe(const struct iscsi_tgt *t)
{
    json_t *luns = json_array(), *allowed = json_array();

    for (unsigned i = 0; i < t->nluns; i++) {
        json_array_append_new(luns, json_pack("{s:I, s:s, s:I}", "lun", (json_int_t)t->luns[i]->id,
                                              "bdev", ioc_bdev_name(t->luns[i]->bdev), "size",
                                              (json_int_t)ioc_bdev_size(t->luns[i]->bdev)));
    }
    for (unsigned i = 0; i < t->nallowed; i++) {
        json_array_append_new(allowed, json_string(t->allowed[i]));
    }
    return json_pack("{s:s, s:o, s:o, s:b, s:b, s:I}", "iqn", t->iqn, "luns", luns,
                     "allowed_initiators", allowed, "chap", t->chap.required, "mutual_chap",
                     t->chap.mutual, "sessions", (json_int_t)atomic_load(&t->sessions));
}

json_t *
ioc_iscsi_tgt_list(void)
{
    json_t *list = json_array();

    pthread_mutex_lock(&g_tgts_lock);
    for (struct iscsi_tgt *t = g_tgts; t != NULL; t = t->next) {
        json_array_append_new(list, tgt_describe(t));
    }
    pthread_mutex_unlock(&g_tgts_lock);
    return list;
}
