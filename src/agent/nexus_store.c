/*
 * agent/nexus_store.c - nexus membership records in etcd (iocd --etcd).
 *
 * What: the nexus's persistence hook (src/nexus/nexus_persist.c) calls
 * put() on its writer thread before any acknowledgement that depends on a
 * membership change, and get() when a nexus is created. Records live at
 * /ioc/v1/nexus/<name>/<generation, 20 digits>: a nexus only ever writes
 * its own generation's key, so a fenced old nexus that comes back cannot
 * overwrite the record of the nexus that replaced it, and a new nexus (a
 * move, generation G+1) reads the newest record and learns which replicas
 * were in sync (the dirty logs included).
 *
 * How: one etcd client per call (records change rarely: a fault, a newly
 * dirty segment while a child is away), so writer threads share nothing.
 * With etcd unreachable put() fails; the writer retries every second and
 * the acks wait: IO that needs a membership change stalls until etcd is
 * back, and never goes on unrecorded. With every child healthy nothing is
 * written, and IO does not notice etcd at all.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cp.h"
#include "nexus/nexus.h"

static char g_endpoints[1024];

static int
store_put(const char *name, uint64_t generation, const char *text, struct ioc_err *err)
{
    struct ioc_etcd *etcd = NULL;
    char key[512];
    int rc;

    rc = ioc_etcd_create(g_endpoints, &etcd, err);
    if (rc < 0) {
        return rc;
    }
    snprintf(key, sizeof(key), IOC_KEY_ROOT_NEXUS "%s/%020llu", name,
             (unsigned long long)generation);
    rc = ioc_etcd_put(etcd, key, text, 0, err);
    ioc_etcd_destroy(etcd);
    return rc;
}

/* The newest generation's record (keys sort by their zero-padded generation). */
static int
store_get(const char *name, char **text, struct ioc_err *err)
{
    struct ioc_etcd_kvs kvs = {0};
    struct ioc_etcd *etcd = NULL;
    char prefix[512];
    int rc;

    *text = NULL;
    rc = ioc_etcd_create(g_endpoints, &etcd, err);
    if (rc < 0) {
        return rc;
    }
    snprintf(prefix, sizeof(prefix), IOC_KEY_ROOT_NEXUS "%s/", name);
    rc = ioc_etcd_range(etcd, prefix, true, &kvs, err);
    ioc_etcd_destroy(etcd);
    if (rc < 0) {
        return rc;
    }
    if (kvs.count == 0) {
        rc = -ENOENT;
    } else {
        const char *best = kvs.kvs[0].value, *best_key = kvs.kvs[0].key;
        for (size_t i = 1; i < kvs.count; i++) {
            if (strcmp(kvs.kvs[i].key, best_key) > 0) {
                best = kvs.kvs[i].value;
                best_key = kvs.kvs[i].key;
            }
        }
        *text = strdup(best);
        rc = *text != NULL ? 0 : -ENOMEM;
    }
    ioc_etcd_kvs_free(&kvs);
    return rc;
}

static const struct ioc_nexus_store g_etcd_store = {.put = store_put, .get = store_get};

void
ioc_nexus_store_etcd(const char *endpoints)
{
    snprintf(g_endpoints, sizeof(g_endpoints), "%s", endpoints);
    ioc_nexus_set_store(&g_etcd_store);
}
