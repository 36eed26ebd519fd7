/*
 * lib/resource/resource.h - the control plane's resources: manifests in, etcd documents out.
 *
 * Four kinds, all shaped {apiVersion: ioc/v1alpha1, kind, metadata: {name,
 * labels}, spec, status}: Node, Pool, Volume and Snapshot (docs/manifests.md
 * has every field). A manifest is YAML (several documents separated by
 * ---) or JSON (an object, an array of objects, or objects one after the
 * other). Validation names the field path of the first problem
 * ("spec.replicas: must be between 1 and 5, got 7") and, with a context of
 * what the cluster already holds, refuses what cannot be placed.
 *
 * Shared by iocctl (apply validates before writing anything) and iocd (the
 * agent and controller re-check what they read). Depends on lib/, jansson
 * and libyaml only.
 *
 * etcd layout (all values JSON):
 *   /ioc/v1/<kind>/<name>            desired state (spec), written by iocctl apply
 *                                    (kind is lowercase: node, pool, volume, snapshot)
 *   /ioc/v1/status/<kind>/<name>     observed state, written by agents and the controller
 *   /ioc/v1/assign/<node>/<vol>      what one node must run for a volume (controller)
 *   /ioc/v1/replica/<vol>/<node>     a node's report on its replica/nexus of a volume (agent)
 *   /ioc/v1/controller/leader        the controller leader's id, on its lease
 *   /ioc/v1/tombstone/<kind>/<name>  a deleted Volume or Snapshot whose data nodes still
 *                                    remove (iocctl delete; docs/control-plane.md)
 *   /ioc/v1/cleaned/<kind>/<name>/<node>   a node holds nothing of it any more (agent)
 *   /ioc/v1/snapshot-take/<snap>     a snapshot being or having been taken (nexus agent)
 *   /ioc/v1/snapshot-replica/<snap>/<node>  one replica's part of it (agent)
 */
#ifndef IOC_LIB_RESOURCE_RESOURCE_H
#define IOC_LIB_RESOURCE_RESOURCE_H

#include "ioc/common.h"

#include <jansson.h>

#include "lib/err.h"

#define IOC_API_VERSION "ioc/v1alpha1"
#define IOC_KEY_ROOT "/ioc/v1/"
#define IOC_REPLICAS_MAX 5
#define IOC_KEY_TOMBSTONE IOC_KEY_ROOT "tombstone/"
#define IOC_KEY_CLEANED IOC_KEY_ROOT "cleaned/"
#define IOC_KEY_SNAP_TAKE IOC_KEY_ROOT "snapshot-take/"
#define IOC_KEY_SNAP_REPLICA IOC_KEY_ROOT "snapshot-replica/"
/* A Snapshot's volume and name together (the pool snapshot is "VOLUME:NAME"). */
#define IOC_SNAPSHOT_POOL_NAME_MAX 63

enum ioc_kind {
    IOC_KIND_NODE,
    IOC_KIND_POOL,
    IOC_KIND_VOLUME,
    IOC_KIND_SNAPSHOT,
    IOC_KIND_COUNT,
};

/** "Node"... for a kind; NULL when out of range. */
const char *ioc_kind_name(enum ioc_kind kind);

/** Now, as the RFC 3339 UTC text resources carry ("2026-11-26T17:14:00Z"); len >= 21. */
void ioc_resource_timestamp(char *buf, size_t len);

/** "node"... (the etcd key segment). */
const char *ioc_kind_key(enum ioc_kind kind);

/**
 * A kind from what a user types: "Volume", "volume", "volumes", "vol",
 * "pools", "no"... Returns 0 or -EINVAL.
 */
int ioc_kind_parse(const char *s, enum ioc_kind *out);

/**
 * Parse a manifest into a new JSON array of documents (*docs). Empty
 * documents are skipped. Returns 0, or -EINVAL with err naming the line
 * ("line 3: mapping values are not allowed here"), or -ENOMEM. YAML aliases
 * and nesting deeper than 32 are refused.
 */
int ioc_manifest_parse(const char *text, size_t len, json_t **docs, struct ioc_err *err);

/* What the cluster holds already, for the checks that need it. Any may be NULL. */
struct ioc_resource_ctx {
    json_t *nodes;   /* object: node name -> Node document */
    json_t *pools;   /* object: pool name -> Pool document (normalised) */
    json_t *volumes; /* object: volume name -> Volume document */
};

/**
 * Validate one document and return its normalised form (*out, new
 * reference): sizes in bytes, defaults filled in, status and unknown
 * metadata dropped. With ctx, also: a Pool's node must be registered, a
 * Volume's replicas may not exceed the nodes that have a pool (and match
 * its nodeSelector), a Snapshot's volume must exist. Returns 0 or -EINVAL
 * with err "PATH: problem".
 */
int ioc_resource_validate(json_t *doc, const struct ioc_resource_ctx *ctx, json_t **out,
                          struct ioc_err *err);

/** The document's kind (after validation). Returns 0 or -EINVAL. */
int ioc_resource_kind(json_t *doc, enum ioc_kind *out);

/** metadata.name, borrowed; NULL when missing. */
const char *ioc_resource_name(json_t *doc);

/** "/ioc/v1/<kind>/<name>" into buf; status: "/ioc/v1/status/<kind>/<name>". */
void ioc_resource_key(enum ioc_kind kind, const char *name, bool status, char *buf, size_t len);

/**
 * The name of the pool snapshot that holds Snapshot snap of volume vol on
 * each replica: "vol:snap" (':' never occurs in resource names, so it
 * cannot collide with a volume). Validation keeps it within 63 characters.
 */
void ioc_snapshot_pool_name(const char *vol, const char *snap, char *buf, size_t len);

/** Does labels (object of strings, or NULL) contain every pair of selector (or NULL)? */
bool ioc_labels_match(json_t *labels, json_t *selector);

/**
 * Print a JSON value as YAML (block style) to buf (a new string, *out).
 * Returns 0 or -ENOMEM.
 */
int ioc_yaml_dump(json_t *value, char **out);

#endif
