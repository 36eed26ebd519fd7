/*
 * nexus/nexus_persist.c - the membership persistence hook.
 *
 * What: the nexus's membership record (generation, each child's state and
 * its dirty log) must be durable before any write that depends on it is
 * acknowledged: a child leaving the write set, or a segment newly dirty
 * while a child is away. The nexus bumps `version` on every such change;
 * acks wait for `persisted >= version` (nexus_io.c).
 *
 * How: the record is one JSON file (state path, usually
 * <state-dir>/nexus-<name>.json). A helper thread per nexus writes it:
 * tmp file, fsync, rename, fsync of the directory. The reactor serializes
 * the record at the end of an iteration (one ioc_reactor_defer per burst of
 * changes), hands the text over under a mutex and goes on; the thread sends
 * the version it made durable back by message. Requests made while a write
 * is running coalesce into the next one. A failing write is retried every
 * second while the acks it holds back wait (never acknowledged unrecorded).
 *
 * Without a state path the record lives in memory: "persisted" follows
 * "version" at once and a restart forgets the membership (logged at create).
 *
 * With a store installed (ioc_nexus_set_store(): iocd --etcd puts records
 * in etcd, src/agent/nexus_store.c) the same thread calls store->put instead
 * of writing the file, with the same barrier: a record etcd did not take is
 * retried every second and the acks it covers wait. With every child
 * healthy nothing changes membership, so nothing waits on the store.
 *
 * Rejected: writing the file on the reactor (a blocking fsync would stall
 * every connection of the reactor), and a shared worker pool (one nexus's
 * slow disk would delay another's acks). This file is the seam where the
 * control plane will put etcd: nexus_persist_request() and the persisted
 * message are the whole interface.
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "nexus/nexus_internal.h"

struct nexus_persist {
    struct ioc_nexus *nx;
    char path[4096];
    pthread_t thread;
    bool started;
    /* The lock hands text from the reactor to the thread; held for pointer swaps only. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *pending;
    uint64_t pending_version;
    bool stop;
    _Atomic uint64_t done_version;
    _Atomic uint64_t writes;
    _Atomic uint64_t failures;
};

/* ---- the record ---- */

json_t *
nexus_persist_json(struct ioc_nexus *nx)
{
    json_t *o = json_object();
    json_t *children = json_array();

    json_object_set_new(o, "name", json_string(nx->bdev.name));
    json_object_set_new(o, "generation", json_integer((json_int_t)nx->generation));
    json_object_set_new(o, "size", json_integer((json_int_t)nx->bdev.size));
    json_object_set_new(o, "segment_size", json_integer((json_int_t)nx->segment_size));
    json_object_set_new(o, "state", json_string(nexus_state_name(nx->state)));
    json_object_set_new(o, "version", json_integer((json_int_t)nx->version));
    for (unsigned i = 0; i < IOC_NEXUS_MAX_CHILDREN; i++) {
        struct nexus_child *c = nx->children[i];
        json_t *cj;
        if (c == NULL || c->state == NEXUS_CHILD_REMOVING) {
            continue;
        }
        cj = json_object();
        json_object_set_new(cj, "uri", json_string(c->uri));
        json_object_set_new(cj, "state", json_string(nexus_child_state_name(c->state)));
        if (c->last_in_sync) {
            json_object_set_new(cj, "in_sync", json_true());
        }
        if (c->state != NEXUS_CHILD_ONLINE && c->dirty != NULL) {
            char *hex = nexus_dirty_encode(c->dirty, nx->nseg);
            json_object_set_new(cj, "dirty", hex != NULL ? json_string(hex) : json_null());
            free(hex);
        }
        json_array_append_new(children, cj);
    }
    json_object_set_new(o, "children", children);
    return o;
}

static int
persist_write_file(const char *path, const char *text)
{
    char tmp[4200], dir[4096];
    size_t len = strlen(text), off = 0;
    int fd, rc = 0;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -errno;
    }
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0) {
            rc = -errno;
            break;
        }
        off += (size_t)n;
    }
    if (rc == 0 && fsync(fd) < 0) {
        rc = -errno;
    }
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

/* ---- the store (etcd) instead of the file ---- */

static const struct ioc_nexus_store *g_store;

void
ioc_nexus_set_store(const struct ioc_nexus_store *store)
{
    g_store = store;
}

/* The record's name in the store: the state file's base name without "nexus-" and ".json". */
static void
persist_store_name(const char *path, char *buf, size_t len)
{
    const char *base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
    size_t n;

    if (strncmp(base, "nexus-", 6) == 0) {
        base += 6;
    }
    n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".json") == 0) {
        n -= 5;
    }
    snprintf(buf, len, "%.*s", (int)n, base);
}

/* Make text durable: in the store if there is one, else in the file. */
static int
persist_write(const char *path, uint64_t generation, const char *text)
{
    struct ioc_err err = {0};
    char name[256];

    if (g_store == NULL) {
        return persist_write_file(path, text);
    }
    persist_store_name(path, name, sizeof(name));
    return g_store->put(name, generation, text, &err);
}

static json_t *
persist_read(const char *path, json_error_t *jerr)
{
    struct ioc_err err = {0};
    char name[256], *text = NULL;
    json_t *o;

    if (g_store == NULL) {
        return json_load_file(path, 0, jerr);
    }
    persist_store_name(path, name, sizeof(name));
    if (g_store->get(name, &text, &err) < 0) {
        snprintf(jerr->text, sizeof(jerr->text), "%.120s", err.msg);
        jerr->line = 0;
        return NULL;
    }
    o = json_loads(text, 0, jerr);
    free(text);
    return o;
}

static int
persist_exists(const char *path)
{
    struct ioc_err err = {0};
    char name[256], *text = NULL;
    int rc;

    if (g_store == NULL) {
        return access(path, F_OK) == 0 ? 0 : -ENOENT;
    }
    persist_store_name(path, name, sizeof(name));
    rc = g_store->get(name, &text, &err);
    free(text);
    return rc;
}

/* ---- loading at create ---- */

void
nexus_saved_free(struct nexus_saved *s)
{
    for (unsigned i = 0; i < s->nr_children; i++) {
        free(s->children[i].dirty);
        s->children[i].dirty = NULL;
    }
    s->nr_children = 0;
}

static int
persist_load_child(json_t *cj, uint64_t nseg, bool same_seg, struct nexus_saved_child *sc)
{
    const char *uri = json_string_value(json_object_get(cj, "uri"));
    const char *state = json_string_value(json_object_get(cj, "state"));
    const char *hex = json_string_value(json_object_get(cj, "dirty"));

    if (uri == NULL || state == NULL) {
        return -EINVAL;
    }
    snprintf(sc->uri, sizeof(sc->uri), "%s", uri);
    snprintf(sc->state, sizeof(sc->state), "%s",
             json_is_true(json_object_get(cj, "in_sync")) ? "online" : state);
    if (strcmp(sc->state, "online") == 0) {
        return 0;
    }
    /* A dirty log we cannot read (or of another segment size) means: copy everything. */
    sc->dirty = nexus_dirty_alloc(nseg, true);
    if (sc->dirty == NULL) {
        return -ENOMEM;
    }
    if (hex != NULL && same_seg && nexus_dirty_decode(hex, sc->dirty, nseg) < 0) {
        free(sc->dirty);
        sc->dirty = nexus_dirty_alloc(nseg, true);
    }
    return sc->dirty != NULL ? 0 : -ENOMEM;
}

/* -ENOENT when there is no record: a new nexus. */
int
nexus_persist_load(const char *path, uint64_t nseg, struct nexus_saved *out, struct ioc_err *err)
{
    json_error_t jerr;
    json_t *o, *children, *cj;
    size_t i;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    rc = persist_exists(path);
    if (rc == -ENOENT) {
        return -ENOENT;
    } else if (rc < 0) {
        return ioc_err_set(err, -EAGAIN, "membership record %s: the store is unreachable (%s)",
                           path, strerror(-rc));
    }
    o = persist_read(path, &jerr);
    if (o == NULL) {
        return ioc_err_set(err, -EINVAL, "state file %s: %s (line %d)", path, jerr.text,
                           jerr.line);
    }
    out->generation = (uint64_t)json_integer_value(json_object_get(o, "generation"));
    out->size = (uint64_t)json_integer_value(json_object_get(o, "size"));
    out->segment_size = (uint64_t)json_integer_value(json_object_get(o, "segment_size"));
    children = json_object_get(o, "children");
    json_array_foreach(children, i, cj) {
        if (out->nr_children == IOC_NEXUS_MAX_CHILDREN) {
            break;
        }
        rc = persist_load_child(cj, nseg, true, &out->children[out->nr_children]);
        if (rc < 0) {
            ioc_err_set(err, rc, "state file %s: child %zu is malformed", path, i);
            nexus_saved_free(out);
            break;
        }
        out->nr_children++;
    }
    json_decref(o);
    return rc;
}

/* ---- the writer thread ---- */

static void
persist_done_msg(void *arg)
{
    struct ioc_nexus *nx = arg;
    uint64_t v;

    if (nx->persist == NULL) {
        return;
    }
    v = atomic_load(&nx->persist->done_version);

    if (v > nx->persisted) {
        nx->persisted = v;
        nexus_io_persisted(nx);
    }
}

static void *
persist_thread(void *arg)
{
    struct nexus_persist *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        char *text;
        uint64_t v;
        int rc;
        while (p->pending == NULL && !p->stop) {
            pthread_cond_wait(&p->cond, &p->lock);
        }
        if (p->pending == NULL) {
            break;
        }
        text = p->pending;
        v = p->pending_version;
        p->pending = NULL;
        pthread_mutex_unlock(&p->lock);
        rc = persist_write(p->path, p->nx->generation, text);
        pthread_mutex_lock(&p->lock);
        if (rc < 0) {
            atomic_fetch_add(&p->failures, 1);
            IOC_ERR_RATELIMIT("nexus", "nexus %s: state file %s: %s; acks wait", p->nx->bdev.name,
                              p->path, strerror(-rc));
            if (p->pending == NULL && !p->stop) {
                p->pending = text; /* retry the same record in a second */
                p->pending_version = v;
                pthread_mutex_unlock(&p->lock);
                sleep(1);
                pthread_mutex_lock(&p->lock);
                continue;
            }
            free(text);
            continue;
        }
        free(text);
        atomic_fetch_add(&p->writes, 1);
        atomic_store(&p->done_version, v);
        if (ioc_reactor_send_msg(p->nx->reactor, persist_done_msg, p->nx) < 0) {
            IOC_ERR("nexus", "nexus %s: cannot signal the reactor", p->nx->bdev.name);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* End of a reactor iteration: serialize once for all the changes it made. */
static void
persist_kick(struct ioc_deferred *d)
{
    struct ioc_nexus *nx = ioc_container_of(d, struct ioc_nexus, persist_kick);
    struct nexus_persist *p = nx->persist;
    json_t *o;
    char *text;

    if (p == NULL || !p->started) {
        nx->persisted = nx->version;
        nexus_io_persisted(nx);
        return;
    }
    o = nexus_persist_json(nx);
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text == NULL) {
        ioc_reactor_defer(nx->reactor, &nx->persist_kick, persist_kick); /* ENOMEM: again */
        return;
    }
    pthread_mutex_lock(&p->lock);
    free(p->pending);
    p->pending = text;
    p->pending_version = nx->version;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void
nexus_persist_request(struct ioc_nexus *nx)
{
    ioc_reactor_defer(nx->reactor, &nx->persist_kick, persist_kick);
}

bool
nexus_persist_durable(const struct ioc_nexus *nx)
{
    return nx->persist != NULL && nx->persist->started;
}

/* Write the first record synchronously (nothing runs yet), then start the thread. */
int
nexus_persist_start(struct ioc_nexus *nx, const char *path, struct ioc_err *err)
{
    struct nexus_persist *p = calloc(1, sizeof(*p));
    json_t *o;
    char *text;
    int rc;

    if (p == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    p->nx = nx;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    nx->persist = p;
    if (path == NULL) {
        IOC_WARN("nexus", "nexus %s: no state dir: membership is kept in memory only",
                 nx->bdev.name);
        return 0;
    }
    snprintf(p->path, sizeof(p->path), "%s", path);
    o = nexus_persist_json(nx);
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    rc = text != NULL ? persist_write(path, nx->generation, text) : -ENOMEM;
    free(text);
    if (rc < 0) {
        return ioc_err_set(err, -EIO, "state file %s: %s", path, strerror(-rc));
    }
    nx->persisted = nx->version;
    rc = pthread_create(&p->thread, NULL, persist_thread, p);
    if (rc != 0) {
        return ioc_err_set(err, -rc, "cannot start the state writer thread");
    }
    p->started = true;
    return 0;
}

static void
persist_noop(void *arg)
{
    (void)arg;
}

/* Write what is pending, stop the thread; with purge remove the record. Any thread. */
void
nexus_persist_stop(struct ioc_nexus *nx, bool purge)
{
    struct nexus_persist *p = nx->persist;

    if (p == NULL) {
        return;
    }
    if (p->started) {
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
        /* Make sure a done message sent before the join has run before p goes. */
        if (ioc_reactor_self() == nx->reactor) {
            ioc_reactor_poll_once(nx->reactor);
        } else {
            nexus_run_sync(nx, persist_noop, NULL);
        }
    }
    if (purge && p->path[0] != '\0') {
        unlink(p->path);
    }
    free(p->pending);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
    nx->persist = NULL;
}
