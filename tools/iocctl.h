/*
 * tools/iocctl.h - shared between the files of the iocctl command line tool.
 *
 * iocctl links lib/ and jansson only: it speaks JSON-RPC to iocd over the
 * unix socket and never calls daemon code.
 */
#ifndef IOC_TOOLS_IOCCTL_H
#define IOC_TOOLS_IOCCTL_H

#include "ioc/common.h"

#include <jansson.h>

/* Exit statuses, documented in docs/iocctl.md. */
enum {
    IOCCTL_EXIT_OK = 0,
    IOCCTL_EXIT_RPC_ERROR = 1, /* the daemon answered with an error */
    IOCCTL_EXIT_USAGE = 2,     /* bad command line, or iocd unreachable */
};

/* Options valid before or after any command. */
struct iocctl_opts {
    const char *socket; /* -s, --rpc-socket */
    bool json;          /* -o json: print the raw result */
    int timeout_s;      /* --timeout; 0 waits forever */
};

/* ---- iocctl_client.c ---- */

/**
 * Call method with params (ownership taken; NULL for none) and wait for the
 * answer. On success returns IOCCTL_EXIT_OK with *result a new reference.
 * Otherwise prints the reason to stderr ("iocctl: METHOD: MESSAGE (code N)"
 * for a daemon error, a hint naming the socket when iocd is unreachable) and
 * returns IOCCTL_EXIT_RPC_ERROR or IOCCTL_EXIT_USAGE.
 */
int iocctl_call(const struct iocctl_opts *opts, const char *method, json_t *params,
                json_t **result);

/* ---- iocctl_pool.c ---- */

/** Check the pool in path offline; prints the findings. Returns 0 clean, 1 problems, 2 unreadable. */
int iocctl_pool_check(const char *path);

/** pool_list as NAME SIZE USED FREE CLUSTER VOLUMES BDEV. */
void iocctl_print_pools(json_t *result);

/** volume_list as NAME TYPE SIZE ALLOCATED PARENT CHILDREN ACCESS. */
void iocctl_print_volumes(json_t *result);

/* ---- iocctl_cluster.c ---- */

/** Is word one of the cluster commands (apply, get, describe, delete) that talk to etcd? */
bool iocctl_cluster_is_command(const char *word);

/** Run a cluster command: parses argv itself (--etcd, -o, -w, -f). Returns the exit status. */
int iocctl_cluster_main(int argc, char **argv);

/* ---- iocctl_iscsi.c ---- */

/** iscsi target create: vals are IQN, BDEVS, --allow, --chap-user, --chap-secret,
 *  --mutual-user, --mutual-secret (NULL when absent). Returns the exit status. */
int iocctl_iscsi_target_create(const struct iocctl_opts *opts, const char *const *vals);

/** iscsi_target_list as IQN LUN BDEV CHAP SESSIONS, then one line per session. */
void iocctl_print_iscsi_targets(json_t *result);

/* ---- iocctl_vhost.c ---- */

void iocctl_print_vhost_exports(json_t *result);

/* ---- iocctl_print.c ---- */

/** Print a result as indented JSON on stdout. */
void iocctl_print_json(json_t *result);

/** Print a result of a command without a table: a string as is, true as nothing, else JSON. */
void iocctl_print_plain(json_t *result);

/** bdev_list as NAME MODULE SIZE BLOCK. */
void iocctl_print_bdevs(json_t *result);

/** nbd_export_list as NAME BDEV SIZE ACCESS CONNECTIONS. */
void iocctl_print_nbd_exports(json_t *result);

/* ---- iocctl_nexus.c ---- */

/** nexus_list as one line per nexus and one per child, with rebuild progress. */
void iocctl_print_nexus(json_t *result);

/** rpc_get_methods {"detail": true} as METHOD SUMMARY. */
void iocctl_print_methods(json_t *result);

#endif
