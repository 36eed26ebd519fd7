/*
 * Unit tests for lib/etcd/etcd_json.c: the gateway's JSON without a server.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "lib/etcd/etcd.h"

static void
test_ioc_etcd_b64_roundtrip(void **state)
{
    const char *cases[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar", "/ioc/v1/volume/db"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char *enc, *dec;
    size_t len;

    (void)state;
    for (size_t i = 0; i < IOC_ARRAY_SIZE(cases); i++) {
        enc = ioc_etcd_b64_encode(cases[i], strlen(cases[i]));
        if (i < IOC_ARRAY_SIZE(want)) {
            assert_string_equal(enc, want[i]);
        }
        assert_int_equal(ioc_etcd_b64_decode(enc, &dec, &len), 0);
        assert_int_equal(len, strlen(cases[i]));
        assert_string_equal(dec, cases[i]);
        free(enc);
        free(dec);
    }
    assert_int_equal(ioc_etcd_b64_decode("Zm9", &dec, &len), -EINVAL);
    assert_int_equal(ioc_etcd_b64_decode("Zm=v", &dec, &len), -EINVAL);
    assert_int_equal(ioc_etcd_b64_decode("Zg==Zg==", &dec, &len), -EINVAL);
    assert_int_equal(ioc_etcd_b64_decode("Z!==", &dec, &len), -EINVAL);
}

static void
test_ioc_etcd_prefix_end(void **state)
{
    char *e;

    (void)state;
    e = ioc_etcd_prefix_end("/ioc/v1/");
    assert_string_equal(e, "/ioc/v10");
    free(e);
    e = ioc_etcd_prefix_end("a\xff");
    assert_string_equal(e, "b");
    free(e);
    e = ioc_etcd_prefix_end("\xff\xff");
    assert_string_equal(e, "");
    free(e);
}

static void
test_ioc_etcd_json_requests(void **state)
{
    json_t *r;
    char *s;

    (void)state;
    r = ioc_etcd_json_range("foo", true);
    s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"key\":\"Zm9v\",\"range_end\":\"Zm9w\"}");
    free(s);
    json_decref(r);

    /* int64 as strings; a zero lease is omitted. */
    r = ioc_etcd_json_put("a", "b", 0);
    s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"key\":\"YQ==\",\"value\":\"Yg==\"}");
    free(s);
    json_decref(r);
    r = ioc_etcd_json_put("a", "b", 7587);
    assert_string_equal(json_string_value(json_object_get(r, "lease")), "7587");
    json_decref(r);

    r = ioc_etcd_json_watch_create("a", false, 12);
    s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"create_request\":{\"key\":\"YQ==\",\"start_revision\":\"12\"}}");
    free(s);
    json_decref(r);
}

static void
test_ioc_etcd_json_txn_guarded_put(void **state)
{
    struct ioc_etcd_cmp cmps[] = {
        {.key = "L", .target = IOC_ETCD_CMP_VALUE, .result = IOC_ETCD_EQUAL, .value = "me"},
        {.key = "k", .target = IOC_ETCD_CMP_CREATE, .result = IOC_ETCD_EQUAL, .number = 0},
        {.key = "k", .target = IOC_ETCD_CMP_MOD, .result = IOC_ETCD_LESS, .number = 9},
    };
    struct ioc_etcd_op ok[] = {{.type = IOC_ETCD_OP_PUT, .key = "k", .value = "v", .lease = 5}};
    struct ioc_etcd_op ko[] = {{.type = IOC_ETCD_OP_RANGE, .key = "k", .prefix = true},
                               {.type = IOC_ETCD_OP_DELETE, .key = "x"}};
    json_t *r = ioc_etcd_json_txn(cmps, 3, ok, 1, ko, 2);
    char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);

    (void)state;
    assert_string_equal(s,
        "{\"compare\":["
        "{\"key\":\"TA==\",\"result\":\"EQUAL\",\"target\":\"VALUE\",\"value\":\"bWU=\"},"
        "{\"key\":\"aw==\",\"result\":\"EQUAL\",\"target\":\"CREATE\"},"
        "{\"key\":\"aw==\",\"mod_revision\":\"9\",\"result\":\"LESS\",\"target\":\"MOD\"}],"
        "\"failure\":[{\"request_range\":{\"key\":\"aw==\",\"range_end\":\"bA==\"}},"
        "{\"request_delete_range\":{\"key\":\"eA==\"}}],"
        "\"success\":[{\"request_put\":{\"key\":\"aw==\",\"lease\":\"5\",\"value\":\"dg==\"}}]}");
    free(s);
    json_decref(r);
}

static void
test_ioc_etcd_decode_kvs_defaults_omitted(void **state)
{
    /* As etcd 3.4 answers: int64 as strings, count and empty values omitted. */
    json_t *resp = json_loads(
        "{\"header\":{\"revision\":\"42\"},\"kvs\":["
        "{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"40\",\"version\":\"3\","
        "\"value\":\"YmFy\",\"lease\":\"7\"},"
        "{\"key\":\"YQ==\",\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":\"1\"}],"
        "\"count\":\"2\"}", 0, NULL);
    struct ioc_etcd_kvs kvs = {0};

    (void)state;
    assert_int_equal(ioc_etcd_decode_kvs(resp, &kvs), 0);
    assert_int_equal(kvs.revision, 42);
    assert_int_equal(kvs.count, 2);
    assert_string_equal(kvs.kvs[0].key, "foo");
    assert_string_equal(kvs.kvs[0].value, "bar");
    assert_int_equal(kvs.kvs[0].mod_revision, 40);
    assert_int_equal(kvs.kvs[0].lease, 7);
    assert_string_equal(kvs.kvs[1].value, "");
    assert_int_equal(kvs.kvs[1].lease, 0);
    ioc_etcd_kvs_free(&kvs);
    json_decref(resp);

    /* No kvs at all: an empty answer, not an error. */
    resp = json_loads("{\"header\":{\"revision\":\"3\"}}", 0, NULL);
    assert_int_equal(ioc_etcd_decode_kvs(resp, &kvs), 0);
    assert_int_equal(kvs.count, 0);
    json_decref(resp);

    /* Malformed: refused, nothing leaked. */
    resp = json_loads("{\"kvs\":[{\"key\":\"!!\"}]}", 0, NULL);
    assert_int_equal(ioc_etcd_decode_kvs(resp, &kvs), -EINVAL);
    json_decref(resp);
    resp = json_loads("{\"header\":{\"revision\":\"x\"}}", 0, NULL);
    assert_int_equal(ioc_etcd_decode_kvs(resp, &kvs), -EINVAL);
    json_decref(resp);
}

static void
test_ioc_etcd_decode_watch(void **state)
{
    json_t *m = json_loads(
        "{\"result\":{\"header\":{\"revision\":\"5\"},\"events\":["
        "{\"kv\":{\"key\":\"YTE=\",\"create_revision\":\"4\",\"mod_revision\":\"4\","
        "\"version\":\"1\",\"value\":\"eA==\"}},"
        "{\"type\":\"DELETE\",\"kv\":{\"key\":\"YTE=\",\"mod_revision\":\"5\"}}]}}", 0, NULL);
    struct ioc_etcd_event *ev;
    size_t n;
    bool created;
    int64_t rev;

    (void)state;
    assert_int_equal(ioc_etcd_decode_watch(m, &ev, &n, &created, &rev), 0);
    assert_int_equal(n, 2);
    assert_false(created);
    assert_int_equal(rev, 5);
    assert_int_equal(ev[0].type, IOC_ETCD_EVENT_PUT);
    assert_string_equal(ev[0].kv.value, "x");
    assert_int_equal(ev[1].type, IOC_ETCD_EVENT_DELETE);
    assert_string_equal(ev[1].kv.key, "a1");
    assert_int_equal(ev[1].kv.mod_revision, 5);
    ioc_etcd_events_free(ev, n);
    json_decref(m);

    m = json_loads("{\"result\":{\"header\":{\"revision\":\"3\"},\"created\":true}}", 0, NULL);
    assert_int_equal(ioc_etcd_decode_watch(m, &ev, &n, &created, &rev), 0);
    assert_true(created);
    assert_int_equal(n, 0);
    json_decref(m);

    m = json_loads("{\"result\":{\"canceled\":true}}", 0, NULL);
    assert_int_equal(ioc_etcd_decode_watch(m, &ev, &n, &created, &rev), -ECANCELED);
    json_decref(m);
}

static void
test_ioc_etcd_decode_error(void **state)
{
    json_t *e = json_loads("{\"error\":\"etcdserver: requested lease not found\","
                           "\"message\":\"etcdserver: requested lease not found\",\"code\":5}",
                           0, NULL);
    struct ioc_err err = {0};

    (void)state;
    assert_int_equal(ioc_etcd_decode_error(e, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "lease not found"));
    json_decref(e);
    e = json_loads("{\"header\":{}}", 0, NULL);
    assert_int_equal(ioc_etcd_decode_error(e, NULL), 0);
    json_decref(e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ioc_etcd_b64_roundtrip),
        cmocka_unit_test(test_ioc_etcd_prefix_end),
        cmocka_unit_test(test_ioc_etcd_json_requests),
        cmocka_unit_test(test_ioc_etcd_json_txn_guarded_put),
        cmocka_unit_test(test_ioc_etcd_decode_kvs_defaults_omitted),
        cmocka_unit_test(test_ioc_etcd_decode_watch),
        cmocka_unit_test(test_ioc_etcd_decode_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
