/*
 * bdev/error/bdev_error.c - fault injection as a stacked bdev.
 *
 * Each IO is checked against the rules (type, range, skip-first-N, count,
 * delay). A matching IO is held on a reactor timer for delay_us, then failed
 * with the rule's errno or passed through; everything else goes straight to
 * the base bdev as a child IO. Tests use it to prove that errors reach the
 * client as the protocol's error and that nothing acknowledged is lost.
 *
 * The rules are changed over RPC while reactors run IO, so they sit behind a
 * mutex. This is a test device: a lock per IO is an acceptable cost here and
 * keeps "after N" and "count" exact across reactors.
 */
#include "ioc/common.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "bdev/bdev_module.h"
#include "bdev/error/bdev_error.h"
#include "core/log.h"

struct error_rule_state {
    struct ioc_error_rule rule;
    uint64_t seen;     /* matching IOs so far */
    uint64_t injected; /* IOs this rule failed or delayed */
};

struct error_disk {
    struct ioc_bdev bdev;
    struct ioc_bdev *base;
    pthread_mutex_t lock; /* protects rules, nr_rules, injected */
    struct error_rule_state rules[IOC_ERROR_MAX_RULES];
    unsigned nr_rules;
    uint64_t injected;
};

/* What to do with one IO, decided under the lock. */
struct error_action {
    int error;
    uint64_t delay_us;
};

static const struct ioc_bdev_ops error_ops;

static bool
error_rule_matches(const struct ioc_error_rule *rule, const struct ioc_bdev_io *io)
{
    uint64_t end = rule->length == 0 ? UINT64_MAX : rule->offset + rule->length;

    if (rule->io_types != 0 && !(rule->io_types & (1u << io->type))) {
        return false;
    }
    if (io->type == IOC_IO_FLUSH) {
        return true;
    }
    return io->offset < end && io->offset + io->length > rule->offset;
}

static struct error_action
error_decide(struct error_disk *disk, const struct ioc_bdev_io *io)
{
    struct error_action act = {0, 0};

    pthread_mutex_lock(&disk->lock);
    for (unsigned i = 0; i < disk->nr_rules; i++) {
        struct error_rule_state *rs = &disk->rules[i];
        if (!error_rule_matches(&rs->rule, io)) {
            continue;
        }
        if (rs->seen++ < rs->rule.after) {
            continue;
        }
        if (rs->rule.count != 0 && rs->injected >= rs->rule.count) {
            continue;
        }
        rs->injected++;
        disk->injected++;
        act.error = rs->rule.error;
        act.delay_us = rs->rule.delay_us;
        break;
    }
    pthread_mutex_unlock(&disk->lock);
    return act;
}

/* Per-IO state in io->module_ctx. */
struct error_io_ctx {
    int error;
};

static void
error_child_done(struct ioc_bdev_io *child, void *cb_arg)
{
    struct ioc_bdev_io *io = cb_arg;

    io->nr_extents = child->nr_extents;
    ioc_bdev_io_complete(io, child->status);
    ioc_bdev_io_free(child);
}

static void
error_pass_through(struct ioc_bdev_io *io)
{
    struct error_disk *disk = io->bdev->ctx;
    struct ioc_bdev_io *child = ioc_bdev_io_alloc(disk->base);
    int rc;

    if (child == NULL) {
        ioc_bdev_io_complete(io, -ENOMEM);
        return;
    }
    ioc_bdev_io_prep_rw(child, io->type, io->offset, io->length, io->iov, io->iovcnt,
                        io->flags, error_child_done, io);
    child->extents = io->extents;
    child->max_extents = io->max_extents;
    rc = ioc_bdev_io_submit(child);
    if (rc < 0) {
        ioc_bdev_io_free(child);
        ioc_bdev_io_complete(io, rc);
    }
}

static void
error_delay_done(void *arg)
{
    struct ioc_bdev_io *io = arg;
    struct error_io_ctx *ctx = (struct error_io_ctx *)(void *)io->module_ctx;

    if (ctx->error != 0) {
        ioc_bdev_io_complete(io, ctx->error);
    } else {
        error_pass_through(io);
    }
}

static void
error_submit(struct ioc_bdev_io *io)
{
    struct error_disk *disk = io->bdev->ctx;
    struct error_io_ctx *ctx = (struct error_io_ctx *)(void *)io->module_ctx;
    struct error_action act = error_decide(disk, io);

    ctx->error = act.error;
    if (act.delay_us != 0) {
        if (ioc_timer_start(io->reactor, act.delay_us, error_delay_done, io) == NULL) {
            ioc_bdev_io_complete_deferred(io, -ENOMEM);
        }
        return;
    }
    if (act.error != 0) {
        ioc_bdev_io_complete_deferred(io, act.error);
        return;
    }
    error_pass_through(io);
}

static bool
error_supports(struct ioc_bdev *bdev, enum ioc_io_type type)
{
    struct error_disk *disk = bdev->ctx;

    return ioc_bdev_supports(disk->base, type);
}

static void
error_destruct(struct ioc_bdev *bdev)
{
    struct error_disk *disk = bdev->ctx;

    ioc_bdev_put(&disk->base);
    pthread_mutex_destroy(&disk->lock);
    free(disk);
}

static void
error_dump_json(struct ioc_bdev *bdev, json_t *obj)
{
    struct error_disk *disk = bdev->ctx;
    json_t *rules = json_array();

    pthread_mutex_lock(&disk->lock);
    for (unsigned i = 0; i < disk->nr_rules; i++) {
        const struct error_rule_state *rs = &disk->rules[i];
        json_t *r = json_object();
        json_object_set_new(r, "io_types", json_integer(rs->rule.io_types));
        json_object_set_new(r, "errno", json_integer(-rs->rule.error));
        json_object_set_new(r, "offset", json_integer((json_int_t)rs->rule.offset));
        json_object_set_new(r, "length", json_integer((json_int_t)rs->rule.length));
        json_object_set_new(r, "after", json_integer((json_int_t)rs->rule.after));
        json_object_set_new(r, "count", json_integer((json_int_t)rs->rule.count));
        json_object_set_new(r, "delay_us", json_integer((json_int_t)rs->rule.delay_us));
        json_object_set_new(r, "injected", json_integer((json_int_t)rs->injected));
        json_array_append_new(rules, r);
    }
    json_object_set_new(obj, "injected", json_integer((json_int_t)disk->injected));
    pthread_mutex_unlock(&disk->lock);
    json_object_set_new(obj, "base", json_string(ioc_bdev_name(disk->base)));
    json_object_set_new(obj, "rules", rules);
}

static const struct ioc_bdev_ops error_ops = {
    .submit = error_submit,
    .supports = error_supports,
    .destruct = error_destruct,
    .dump_json = error_dump_json,
};

int
ioc_bdev_error_create(const char *name, const char *base_name, struct ioc_err *err)
{
    struct ioc_bdev *base = ioc_bdev_get_by_name(base_name);
    struct error_disk *disk;
    struct ioc_bdev *bdev;
    int rc;

    if (base == NULL) {
        return ioc_err_set(err, -ENOENT, "base: no bdev named '%s'", base_name);
    }
    disk = calloc(1, sizeof(*disk));
    if (disk == NULL) {
        ioc_bdev_put(&base);
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    disk->base = base;
    pthread_mutex_init(&disk->lock, NULL);
    ioc_bdev_init(&disk->bdev, name, "error", &error_ops, disk, base->size, base->block_size);
    disk->bdev.buf_align = base->buf_align;
    disk->bdev.fast_zero = base->fast_zero;
    bdev = &disk->bdev;
    rc = ioc_bdev_register(bdev, err);
    ioc_bdev_put(&bdev);
    return rc;
}

/* Hands out a reference to the named error bdev. */
static int
error_lookup(const char *name, struct ioc_bdev **out, struct ioc_err *err)
{
    struct ioc_bdev *bdev = ioc_bdev_get_by_name(name);

    if (bdev == NULL) {
        return ioc_err_set(err, -ENOENT, "name: no bdev named '%s'", name);
    }
    if (bdev->ops != &error_ops) {
        int rc = ioc_err_set(err, -EINVAL, "name: bdev '%s' is a %s bdev, not an error bdev",
                             name, bdev->module_name);
        ioc_bdev_put(&bdev);
        return rc;
    }
    *out = bdev;
    return 0;
}

int
ioc_bdev_error_inject(const char *name, const struct ioc_error_rule *rule, struct ioc_err *err)
{
    struct ioc_bdev *bdev = NULL;
    struct error_disk *disk;
    int rc = error_lookup(name, &bdev, err);

    if (rc < 0) {
        return rc;
    }
    disk = bdev->ctx;
    pthread_mutex_lock(&disk->lock);
    if (disk->nr_rules == IOC_ERROR_MAX_RULES) {
        rc = ioc_err_set(err, -ENOSPC, "bdev '%s' already has %d rules; clear them first", name,
                         IOC_ERROR_MAX_RULES);
    } else {
        memset(&disk->rules[disk->nr_rules], 0, sizeof(disk->rules[0]));
        disk->rules[disk->nr_rules++].rule = *rule;
    }
    pthread_mutex_unlock(&disk->lock);
    ioc_bdev_put(&bdev);
    return rc;
}

int
ioc_bdev_error_clear(const char *name, struct ioc_err *err)
{
    struct ioc_bdev *bdev = NULL;
    struct error_disk *disk;
    int rc = error_lookup(name, &bdev, err);

    if (rc < 0) {
        return rc;
    }
    disk = bdev->ctx;
    pthread_mutex_lock(&disk->lock);
    disk->nr_rules = 0;
    pthread_mutex_unlock(&disk->lock);
    ioc_bdev_put(&bdev);
    return 0;
}
