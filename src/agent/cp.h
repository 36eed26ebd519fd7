/*
 * agent/cp.h - the control plane inside iocd: node agent and controller.
 *
 * Both run on their own threads (never on a reactor): they block on etcd
 * and on the daemon's own RPC socket. The agent applies through the local
 * JSON-RPC API (the socket, so requests are serialised with every other
 * client's on the RPC thread: handlers assume one caller at a time), which
 * reuses every method's validation. See docs/control-plane.md.
 */
#ifndef IOC_AGENT_CP_H
#define IOC_AGENT_CP_H

#include "ioc/common.h"

#include <jansson.h>

#include "lib/err.h"
#include "lib/etcd/etcd.h"

struct ioc_agent_opts {
    const char *node;       /* --node NAME */
    const char *etcd;       /* --etcd URL[,URL...] */
    const char *rpc_socket; /* this iocd's socket */
    const char *nbd_listen; /* HOST:PORT replicas are served on */
    const char *labels;     /* --node-labels k=v,k=v (may be NULL) */
};

/** Start the agent thread. Returns 0 or a negative errno with err filled. */
int ioc_agent_start(const struct ioc_agent_opts *opts, struct ioc_err *err);

/** Stop and join it; revokes the node's lease so the node is gone at once. Idempotent. */
void ioc_agent_stop(void);

struct ioc_controller_opts {
    const char *etcd;
    const char *id;          /* leader identity (default host:pid) */
    int64_t replica_grace_s; /* --replica-grace (default 300) */
    int64_t lease_ttl_s;     /* leadership lease TTL (default 5) */
};

int ioc_controller_start(const struct ioc_controller_opts *opts, struct ioc_err *err);
void ioc_controller_stop(void);

#define IOC_KEY_ROOT_NEXUS "/ioc/v1/nexus/"

/** Nexus membership records go to etcd at endpoints (nexus_store.c). Before any nexus exists. */
void ioc_nexus_store_etcd(const char *endpoints);

/** Parse "5m", "30s", "1h", "90" (seconds). Returns 0 or -EINVAL. */
int ioc_duration_parse(const char *s, int64_t *seconds);

/* ---- cp_util.c: shared by agent and controller ---- */

/** Every key under prefix as a new object: last path segment -> parsed JSON value. */
int cp_load(struct ioc_etcd *etcd, const char *prefix, json_t **out, struct ioc_err *err);

/** Seconds since the epoch (wall clock: compared across nodes through etcd). */
int64_t cp_now(void);

/** Sleep up to ms, or until *stop becomes true. */
void cp_sleep(volatile bool *stop, int ms);

#endif
