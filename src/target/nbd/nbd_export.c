/*
 * target/nbd/nbd_export.c - the export registry: NBD names bound to bdevs.
 *
 * A short linked list under one mutex. It is touched on the control path
 * (RPC add/remove/list) and once per connection during the handshake (lookup,
 * NBD_OPT_LIST), never per IO: a connection keeps a reference to its export
 * and talks to the bdev directly. The mutex is needed because RPC threads and
 * reactor threads both read the list; a lock-free scheme would buy nothing at
 * this rate.
 *
 * Exports are reference counted so that removing one while clients use it is
 * safe: the registry drops its reference, sets `removed`, and asks the target
 * (through g_nbd_export_removed_hook) to close the export's connections; the
 * bdev reference goes with the last connection.
 *
 * Default export rule: the empty name selects the only export when exactly
 * one exists; with zero or several it is unknown. Rejected alternative: "the
 * first export", which silently changes meaning as exports come and go.
 */
#include "ioc/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/reactor.h"
#include "target/nbd/nbd_internal.h"

/* Protects g_exports (the list and its links), not the exports' fields. */
static pthread_mutex_t g_exports_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nbd_export *g_exports;

/* How long export removal waits for connections to let go of the export. */
#define NBD_EXPORT_RELEASE_WAIT_MS 5000

/* Set by the target while it runs: closes connections of a removed export. */
void (*g_nbd_export_removed_hook)(struct nbd_export *exp);

static bool
export_name_valid(const char *name)
{
    size_t len = strlen(name);

    return len >= 1 && len <= NBD_EXPORT_NAME_MAX;
}

static struct nbd_export *
export_find_locked(const char *name, size_t len)
{
    for (struct nbd_export *e = g_exports; e != NULL; e = e->next) {
        if (strlen(e->name) == len && memcmp(e->name, name, len) == 0) {
            return e;
        }
    }
    return NULL;
}

struct nbd_export *
nbd_export_lookup(const char *name, size_t len)
{
    struct nbd_export *e = NULL;

    pthread_mutex_lock(&g_exports_lock);
    if (len == 0) {
        if (g_exports != NULL && g_exports->next == NULL) {
            e = g_exports;
        }
    } else {
        e = export_find_locked(name, len);
    }
    if (e != NULL) {
        atomic_fetch_add(&e->refs, 1);
    }
    pthread_mutex_unlock(&g_exports_lock);
    return e;
}

void
nbd_export_put(struct nbd_export **exp)
{
    struct nbd_export *e = *exp;

    *exp = NULL;
    if (e == NULL || atomic_fetch_sub(&e->refs, 1) != 1) {
        return;
    }
    ioc_bdev_put(&e->bdev);
    free(e);
}

void
nbd_export_foreach(void (*fn)(const struct nbd_export *exp, void *arg), void *arg)
{
    pthread_mutex_lock(&g_exports_lock);
    for (struct nbd_export *e = g_exports; e != NULL; e = e->next) {
        fn(e, arg);
    }
    pthread_mutex_unlock(&g_exports_lock);
}

int
ioc_nbd_export_add(const char *name, const char *bdev_name, bool read_only,
                   struct ioc_err *err)
{
    struct nbd_export *e, **tail;

    if (name == NULL || !export_name_valid(name)) {
        return ioc_err_set(err, -EINVAL, "export name: must be 1..%u bytes",
                           NBD_EXPORT_NAME_MAX);
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return ioc_err_set(err, -ENOMEM, "export %s: out of memory", name);
    }
    e->bdev = ioc_bdev_get_by_name(bdev_name);
    if (e->bdev == NULL) {
        free(e);
        return ioc_err_set(err, -ENODEV, "export %s: no bdev named %s", name, bdev_name);
    }
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->read_only = read_only;
    atomic_init(&e->refs, 1);

    pthread_mutex_lock(&g_exports_lock);
    if (export_find_locked(name, strlen(name)) != NULL) {
        pthread_mutex_unlock(&g_exports_lock);
        nbd_export_put(&e);
        return ioc_err_set(err, -EEXIST, "export %s: already exists", name);
    }
    for (tail = &g_exports; *tail != NULL; tail = &(*tail)->next) {
    }
    *tail = e;
    pthread_mutex_unlock(&g_exports_lock);
    IOC_INFO("nbd", "export %s: bdev %s%s", name, bdev_name, read_only ? " (read-only)" : "");
    return 0;
}

static struct nbd_export *
export_unlink(const char *name)
{
    struct nbd_export *e = NULL;

    pthread_mutex_lock(&g_exports_lock);
    for (struct nbd_export **pp = &g_exports; *pp != NULL; pp = &(*pp)->next) {
        if (name == NULL || strcmp((*pp)->name, name) == 0) {
            e = *pp;
            *pp = e->next;
            e->next = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&g_exports_lock);
    return e;
}

/*
 * Wait (control path only) until every connection and message that held the
 * export has let go, so that when export removal returns the bdev is free to
 * be deleted. Bounded: a connection stuck on slow IO keeps its reference and
 * the removal still returns.
 */
static void
export_wait_released(struct nbd_export *e)
{
    for (unsigned ms = 0; atomic_load(&e->refs) > 1 && ms < NBD_EXPORT_RELEASE_WAIT_MS; ms++) {
        usleep(1000);
    }
}

static void
export_retire(struct nbd_export *e)
{
    atomic_store(&e->removed, true);
    if (g_nbd_export_removed_hook != NULL) {
        g_nbd_export_removed_hook(e);
    }
    if (ioc_reactor_self() == NULL) {
        export_wait_released(e);
    }
    IOC_INFO("nbd", "export %s: removed", e->name);
    nbd_export_put(&e);
}

int
ioc_nbd_export_remove(const char *name, struct ioc_err *err)
{
    struct nbd_export *e;

    if (name == NULL) {
        return ioc_err_set(err, -EINVAL, "export name: missing");
    }
    e = export_unlink(name);
    if (e == NULL) {
        return ioc_err_set(err, -ENOENT, "export %s: no such export", name);
    }
    export_retire(e);
    return 0;
}

void
ioc_nbd_export_remove_all(void)
{
    struct nbd_export *e;

    while ((e = export_unlink(NULL)) != NULL) {
        export_retire(e);
    }
}
