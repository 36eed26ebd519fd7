/*
 * Unit tests for lib/resource: manifest parsing, validation with field paths,
 * cluster checks and the YAML printer.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "lib/resource/resource.h"

static const char g_example[] =
    "apiVersion: ioc/v1alpha1\n"
    "kind: Pool\n"
    "metadata: {name: pool-a}\n"
    "spec: {node: a, path: /var/lib/ioc/pool-a.img, size: 10GiB}\n"
    "---\n"
    "apiVersion: ioc/v1alpha1\n"
    "kind: Volume\n"
    "metadata: {name: db}\n"
    "spec: {size: 1GiB, replicas: 3, thin: true, protocols: [nbd, iscsi]}\n";

static json_t *
parse_one(const char *text)
{
    json_t *docs, *d;
    struct ioc_err err = {0};

    assert_int_equal(ioc_manifest_parse(text, strlen(text), &docs, &err), 0);
    assert_int_equal(json_array_size(docs), 1);
    d = json_incref(json_array_get(docs, 0));
    json_decref(docs);
    return d;
}

/* Validate text (one document) and return the error message ("" when valid). */
static const char *
validate_msg(const char *text, const struct ioc_resource_ctx *ctx)
{
    static struct ioc_err err;
    json_t *d = parse_one(text), *n = NULL;

    ioc_err_clear(&err);
    if (ioc_resource_validate(d, ctx, &n, &err) == 0) {
        err.msg[0] = '\0';
    }
    json_decref(n);
    json_decref(d);
    return err.msg;
}

static void
test_ioc_manifest_parse_issue_example(void **state)
{
    json_t *docs, *n;
    struct ioc_err err = {0};

    (void)state;
    assert_int_equal(ioc_manifest_parse(g_example, strlen(g_example), &docs, &err), 0);
    assert_int_equal(json_array_size(docs), 2);
    assert_int_equal(ioc_resource_validate(json_array_get(docs, 1), NULL, &n, &err), 0);
    assert_string_equal(ioc_resource_name(n), "db");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(n, "spec"), "size")),
                     1 << 30);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(n, "spec"),
                                                        "replicas")), 3);
    json_decref(n);
    assert_int_equal(ioc_resource_validate(json_array_get(docs, 0), NULL, &n, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(n, "spec"), "size")),
                     10ll << 30);
    json_decref(n);
    json_decref(docs);
}

static void
test_ioc_manifest_parse_json_and_errors(void **state)
{
    json_t *docs;
    struct ioc_err err = {0};
    const char *json = "[{\"kind\": \"Volume\"}, {\"kind\": \"Pool\"}] {\"kind\": \"Node\"}";

    (void)state;
    assert_int_equal(ioc_manifest_parse(json, strlen(json), &docs, &err), 0);
    assert_int_equal(json_array_size(docs), 3);
    json_decref(docs);

    assert_int_equal(ioc_manifest_parse("a: [1\n", 6, &docs, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "line"));
    ioc_err_clear(&err);
    assert_int_equal(ioc_manifest_parse("a: &x 1\nb: *x\n", 14, &docs, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "aliases"));
    ioc_err_clear(&err);
    assert_int_equal(ioc_manifest_parse("a: 1\na: 2\n", 10, &docs, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "duplicate key \"a\""));
    ioc_err_clear(&err);
    /* Empty documents are skipped. */
    assert_int_equal(ioc_manifest_parse("---\n---\n", 8, &docs, &err), 0);
    assert_int_equal(json_array_size(docs), 0);
    json_decref(docs);
}

#define VOL(spec) "apiVersion: ioc/v1alpha1\nkind: Volume\nmetadata: {name: db}\nspec: " spec "\n"

static void
test_ioc_resource_validate_field_paths(void **state)
{
    (void)state;
    assert_string_equal(validate_msg(VOL("{size: 1GiB, replicas: 7}"), NULL),
                        "spec.replicas: must be between 1 and 5, got 7");
    assert_string_equal(validate_msg(VOL("{size: 1GB?}"), NULL),
                        "spec.size: bad size \"1GB?\": expected a size such as 10GiB or a "
                        "number of bytes");
    assert_string_equal(validate_msg(VOL("{sise: 1GiB}"), NULL),
                        "spec.sise: unknown field; expected one of: size, replicas, thin, "
                        "protocols, nexusNode, nodeSelector, rebuildRate");
    assert_string_equal(validate_msg(VOL("{replicas: 1}"), NULL), "spec.size: required");
    assert_string_equal(validate_msg(VOL("{size: 1GiB, protocols: [nbd, scsi]}"), NULL),
                        "spec.protocols[1]: expected one of nbd, iscsi, nvmf, vhost, "
                        "got \"scsi\"");
    assert_string_equal(validate_msg(VOL("{size: 1GiB, protocols: [nbd, nbd]}"), NULL),
                        "spec.protocols[1]: \"nbd\" is listed twice");
    assert_string_equal(validate_msg(VOL("{size: 1GiB, thin: maybe}"), NULL),
                        "spec.thin: expected true or false");
    assert_string_equal(validate_msg(VOL("{size: \"7\"}"), NULL),
                        "spec.size: must be at least 512B and a multiple of 512, got 7");
    assert_string_equal(validate_msg("apiVersion: v1\nkind: Volume\n", NULL),
                        "apiVersion: expected \"ioc/v1alpha1\", got \"v1\"");
    assert_string_equal(validate_msg("apiVersion: ioc/v1alpha1\nkind: Pod\n", NULL),
                        "kind: expected Node, Pool, Volume or Snapshot, got \"Pod\"");
    assert_string_equal(validate_msg("apiVersion: ioc/v1alpha1\nkind: Volume\n"
                                     "metadata: {name: DB}\nspec: {size: 1GiB}\n", NULL),
                        "metadata.name: may contain only a-z 0-9 . _ -, got \"DB\"");
    assert_string_equal(validate_msg("apiVersion: ioc/v1alpha1\nkind: Pool\n"
                                     "metadata: {name: p}\nspec: {path: /x}\n", NULL),
                        "spec.node: required");
    assert_string_equal(validate_msg(VOL("{size: 1GiB}") "extra: 1\n", NULL),
                        "extra: unknown field; expected one of: apiVersion, kind, metadata, "
                        "spec");
}

#define SNAP(name, vol) "apiVersion: ioc/v1alpha1\nkind: Snapshot\nmetadata: {name: " name \
    "}\nspec: {volume: " vol "}\n"
#define N31 "abcdefghijklmnopqrstuvwxyz01234"

/* The pool snapshot is "VOLUME:NAME": both together must fit a pool name (63). */
static void
test_ioc_resource_validate_snapshot_name_length(void **state)
{
    struct ioc_err err = {0};
    json_t *docs = NULL, *n = NULL;
    char buf[80];
    const char *ok = SNAP(N31, N31);

    (void)state;
    assert_int_equal(ioc_manifest_parse(ok, strlen(ok), &docs, &err), 0);
    assert_int_equal(ioc_resource_validate(json_array_get(docs, 0), NULL, &n, &err), 0);
    json_decref(n);
    json_decref(docs);
    assert_string_equal(validate_msg(SNAP(N31 "x", N31), NULL),
                        "metadata.name: a snapshot's name and spec.volume together may have "
                        "at most 62 characters, got 32 + 31");
    ioc_snapshot_pool_name("db", "s1", buf, sizeof(buf));
    assert_string_equal(buf, "db:s1");
}

static void
test_ioc_resource_validate_cluster_checks(void **state)
{
    struct ioc_resource_ctx ctx = {
        .nodes = json_loads("{\"a\": {\"metadata\": {\"name\": \"a\", \"labels\": "
                            "{\"zone\": \"z1\"}}}, \"b\": {\"metadata\": {\"name\": \"b\"}}}",
                            0, NULL),
        .pools = json_loads("{\"pa\": {\"spec\": {\"node\": \"a\"}}, \"pb\": {\"spec\": "
                            "{\"node\": \"b\"}}, \"pz\": {\"spec\": {\"node\": \"z\"}}}",
                            0, NULL),
        .volumes = json_object(),
    };

    (void)state;
    assert_string_equal(validate_msg(VOL("{size: 1GiB, replicas: 2}"), &ctx), "");
    assert_string_equal(validate_msg(VOL("{size: 1GiB, replicas: 3}"), &ctx),
                        "spec.replicas: 3 replicas need 3 nodes with a pool, only 2 known");
    assert_string_equal(validate_msg(VOL("{size: 1GiB, replicas: 2, nodeSelector: "
                                         "{zone: z1}}"), &ctx),
                        "spec.replicas: 2 replicas need 2 nodes with a pool matching "
                        "spec.nodeSelector, only 1 known");
    assert_string_equal(validate_msg("apiVersion: ioc/v1alpha1\nkind: Pool\n"
                                     "metadata: {name: p}\nspec: {node: c, path: /x}\n", &ctx),
                        "spec.node: node \"c\" is not registered (start iocd --node c, or see "
                        "iocctl get nodes)");
    assert_string_equal(validate_msg("apiVersion: ioc/v1alpha1\nkind: Snapshot\n"
                                     "metadata: {name: s}\nspec: {volume: nope}\n", &ctx),
                        "spec.volume: volume \"nope\" does not exist");
    json_decref(ctx.nodes);
    json_decref(ctx.pools);
    json_decref(ctx.volumes);
}

static void
test_ioc_resource_normalise_defaults_and_status_dropped(void **state)
{
    json_t *d = parse_one(VOL("{size: 1048576}") "status: {phase: Online}\n"), *n;
    char *s;

    (void)state;
    assert_int_equal(ioc_resource_validate(d, NULL, &n, NULL), 0);
    s = json_dumps(n, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"apiVersion\":\"ioc/v1alpha1\",\"kind\":\"Volume\",\"metadata\":"
                           "{\"name\":\"db\"},\"spec\":{\"protocols\":[\"nbd\"],\"replicas\":1,"
                           "\"size\":1048576,\"thin\":true}}");
    free(s);
    json_decref(n);
    json_decref(d);
}

static void
test_ioc_kind_parse_aliases(void **state)
{
    enum ioc_kind k;

    (void)state;
    assert_int_equal(ioc_kind_parse("volumes", &k), 0);
    assert_int_equal(k, IOC_KIND_VOLUME);
    assert_int_equal(ioc_kind_parse("Pool", &k), 0);
    assert_int_equal(k, IOC_KIND_POOL);
    assert_int_equal(ioc_kind_parse("no", &k), 0);
    assert_int_equal(k, IOC_KIND_NODE);
    assert_int_equal(ioc_kind_parse("snapshots", &k), 0);
    assert_int_equal(k, IOC_KIND_SNAPSHOT);
    assert_int_equal(ioc_kind_parse("pods", &k), -EINVAL);
}

static void
test_ioc_yaml_dump_roundtrip(void **state)
{
    json_t *v = json_loads("{\"a\": \"x: y\", \"b\": [1, \"2\", {\"c\": true, \"d\": null}],"
                           " \"e\": {}, \"f\": \"10GiB\", \"g\": [], \"h\": {\"i\": \"-\"}}",
                           0, NULL);
    json_t *docs;
    char *y;

    (void)state;
    assert_int_equal(ioc_yaml_dump(v, &y), 0);
    assert_int_equal(ioc_manifest_parse(y, strlen(y), &docs, NULL), 0);
    assert_true(json_equal(json_array_get(docs, 0), v));
    free(y);
    json_decref(docs);
    json_decref(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ioc_manifest_parse_issue_example),
        cmocka_unit_test(test_ioc_manifest_parse_json_and_errors),
        cmocka_unit_test(test_ioc_resource_validate_field_paths),
        cmocka_unit_test(test_ioc_resource_validate_snapshot_name_length),
        cmocka_unit_test(test_ioc_resource_validate_cluster_checks),
        cmocka_unit_test(test_ioc_resource_normalise_defaults_and_status_dropped),
        cmocka_unit_test(test_ioc_kind_parse_aliases),
        cmocka_unit_test(test_ioc_yaml_dump_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
