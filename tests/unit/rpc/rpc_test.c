/*
 * tests/unit/rpc/rpc_test.c - JSON-RPC dispatch, parameter decoding and the
 * socket server.
 *
 * Most tests drive ioc_rpc_handle() directly with request text and look at
 * the response object: no sockets, no threads. The server tests start the
 * real server on a socket in a fresh temporary directory and talk to it with
 * plain blocking sockets, each read bounded by a poll timeout so a server bug
 * fails the test instead of hanging it.
 */
#include "ioc/common.h"

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/rpc.h"

/* ---- methods registered for the tests ---- */

static int g_notified;

/* Echoes every decoded parameter back, so a test sees what decode produced. */
static int
test_echo(json_t *params, json_t **result, struct ioc_err *err)
{
    const char *name = NULL;
    bool flag = false;
    uint32_t small = 7;
    uint64_t big = 0, size = 0;
    json_t *any = NULL;
    const struct ioc_rpc_param spec[] = {
        {"name", IOC_RPC_STRING, true, &name}, {"flag", IOC_RPC_BOOL, false, &flag},
        {"small", IOC_RPC_U32, false, &small}, {"big", IOC_RPC_U64, false, &big},
        {"size", IOC_RPC_SIZE, false, &size},  {"any", IOC_RPC_JSON, false, &any},
    };
    int rc = ioc_rpc_decode(params, spec, IOC_ARRAY_SIZE(spec), err);

    if (rc != 0) {
        return rc;
    }
    *result =
        json_pack("{s:s, s:b, s:I, s:I, s:I, s:O?}", "name", name, "flag", flag, "small",
                  (json_int_t)small, "big", (json_int_t)big, "size", (json_int_t)size, "any", any);
    return 0;
}
IOC_RPC_REGISTER("test_echo", test_echo, "echo decoded parameters")

static int
test_fail(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)params;
    (void)result;
    return ioc_err_set(err, -ENOSPC, "pool p1: no space left for 1GiB");
}
IOC_RPC_REGISTER("test_fail", test_fail, "always fails")

static int
test_notify(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)params;
    (void)result;
    (void)err;
    g_notified++;
    return 0; /* no result: answered as true */
}
IOC_RPC_REGISTER("test_notify", test_notify, "counts calls")

/* ---- helpers ---- */

/* Handle request text; returns the response (new reference) or NULL. */
static json_t *
call_text(const char *text)
{
    json_error_t jerr;
    json_t *req = json_loads(text, 0, &jerr);
    json_t *resp;

    assert_non_null(req);
    resp = ioc_rpc_handle(req);
    json_decref(req);
    return resp;
}

static void
assert_error(json_t *resp, int code, const char *message)
{
    json_t *error = json_object_get(resp, "error");

    assert_non_null(error);
    assert_null(json_object_get(resp, "result"));
    assert_int_equal(json_integer_value(json_object_get(error, "code")), code);
    if (message != NULL) {
        assert_string_equal(json_string_value(json_object_get(error, "message")), message);
    }
}

/* Calls test_echo with params text and checks the error message. */
static void
assert_echo_error(const char *params, const char *message)
{
    char req[512];
    json_t *resp;

    snprintf(req, sizeof(req),
             "{\"jsonrpc\":\"2.0\",\"method\":\"test_echo\",\"id\":1,"
             "\"params\":%s}",
             params);
    resp = call_text(req);
    assert_error(resp, IOC_RPC_INVALID_PARAMS, message);
    json_decref(resp);
}

static json_t *
echo_ok(const char *params)
{
    char req[512];
    json_t *resp, *result;

    snprintf(req, sizeof(req),
             "{\"jsonrpc\":\"2.0\",\"method\":\"test_echo\",\"id\":1,"
             "\"params\":%s}",
             params);
    resp = call_text(req);
    result = json_object_get(resp, "result");
    assert_non_null(result);
    json_incref(result);
    json_decref(resp);
    return result;
}

static json_int_t
int_field(json_t *obj, const char *key)
{
    assert_true(json_is_integer(json_object_get(obj, key)));
    return json_integer_value(json_object_get(obj, key));
}

/* ---- ioc_rpc_decode ---- */

static void
test_ioc_rpc_decode_all_types(void **state)
{
    json_t *r = echo_ok("{\"name\":\"m0\",\"flag\":true,\"small\":4294967295,"
                        "\"big\":9007199254740993,\"size\":\"64MiB\",\"any\":[1,{}]}");

    (void)state;
    assert_string_equal(json_string_value(json_object_get(r, "name")), "m0");
    assert_true(json_is_true(json_object_get(r, "flag")));
    assert_int_equal(int_field(r, "small"), 4294967295LL);
    assert_int_equal(int_field(r, "big"), 9007199254740993LL);
    assert_int_equal(int_field(r, "size"), 64LL << 20);
    assert_int_equal(json_array_size(json_object_get(r, "any")), 2);
    json_decref(r);
}

static void
test_ioc_rpc_decode_optional_absent_untouched(void **state)
{
    json_t *r = echo_ok("{\"name\":\"m0\",\"small\":null}");

    (void)state;
    assert_int_equal(int_field(r, "small"), 7); /* the handler's default survives */
    assert_false(json_is_true(json_object_get(r, "flag")));
    json_decref(r);
}

static void
test_ioc_rpc_decode_size_integer(void **state)
{
    json_t *r = echo_ok("{\"name\":\"m0\",\"size\":4096}");

    (void)state;
    assert_int_equal(int_field(r, "size"), 4096);
    json_decref(r);
}

static void
test_ioc_rpc_decode_size_bad(void **state)
{
    (void)state;
    assert_echo_error("{\"name\":\"m0\",\"size\":\"12XB\"}",
                      "size: expected a size such as 1GiB or a number of bytes, got \"12XB\"");
    assert_echo_error("{\"name\":\"m0\",\"size\":-1}",
                      "size: expected a size such as 1GiB or a number of bytes, got -1");
    assert_echo_error("{\"name\":\"m0\",\"size\":1.5}",
                      "size: expected a size such as 1GiB or a number of bytes, got 1.5");
    assert_echo_error("{\"name\":\"m0\",\"size\":\"99999999999999PiB\"}",
                      "size: 99999999999999PiB does not fit in 64 bits");
}

static void
test_ioc_rpc_decode_string_bad_type(void **state)
{
    const char *name = NULL;
    const struct ioc_rpc_param spec[] = {{"name", IOC_RPC_STRING, true, &name}};
    struct ioc_err err = {0};
    json_t *params;

    (void)state;
    assert_echo_error("{\"name\":12}", "name: expected a string, got 12");
    /* The server's parser refuses \u0000, but in-process callers can build one. */
    params = json_pack("{s:s%}", "name", "a\0b", (size_t)3);
    assert_int_equal(ioc_rpc_decode(params, spec, 1, &err), IOC_RPC_INVALID_PARAMS);
    assert_string_equal(err.msg, "name: must not contain a NUL character");
    assert_null(name);
    json_decref(params);
}

static void
test_ioc_rpc_decode_bool_bad_type(void **state)
{
    (void)state;
    assert_echo_error("{\"name\":\"m0\",\"flag\":\"yes\"}",
                      "flag: expected true or false, got \"yes\"");
}

static void
test_ioc_rpc_decode_u32_out_of_range(void **state)
{
    (void)state;
    assert_echo_error("{\"name\":\"m0\",\"small\":4294967296}",
                      "small: expected an integer from 0 to 4294967295, got 4294967296");
    assert_echo_error("{\"name\":\"m0\",\"small\":-1}",
                      "small: expected an integer from 0 to 4294967295, got -1");
    assert_echo_error("{\"name\":\"m0\",\"small\":\"5\"}",
                      "small: expected an integer from 0 to 4294967295, got \"5\"");
}

static void
test_ioc_rpc_decode_u64_bad_type(void **state)
{
    (void)state;
    assert_echo_error("{\"name\":\"m0\",\"big\":true}",
                      "big: expected an integer from 0 to 9223372036854775807, got true");
}

static void
test_ioc_rpc_decode_missing_required(void **state)
{
    (void)state;
    assert_echo_error("{}", "name: required");
    assert_echo_error("{\"name\":null}", "name: required");
}

static void
test_ioc_rpc_decode_unknown_field(void **state)
{
    (void)state;
    assert_echo_error("{\"nme\":\"m0\"}", "nme: unknown parameter; expected one of: "
                                          "name, flag, small, big, size, any");
}

static void
test_ioc_rpc_decode_not_object(void **state)
{
    struct ioc_err err = {0};
    json_t *arr = json_array();

    (void)state;
    assert_int_equal(ioc_rpc_decode(arr, NULL, 0, &err), IOC_RPC_INVALID_PARAMS);
    assert_string_equal(err.msg, "params: expected an object");
    json_decref(arr);
    /* NULL params mean "none given" */
    ioc_err_clear(&err);
    assert_int_equal(ioc_rpc_decode(NULL, NULL, 0, &err), 0);
}

static void
test_ioc_rpc_decode_long_value_truncated(void **state)
{
    char params[400], big[300];

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(params, sizeof(params), "{\"name\":\"m0\",\"flag\":\"%s\"}", big);
    assert_echo_error(params, "flag: expected true or false, got "
                              "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...");
}

/* ---- ioc_rpc_handle ---- */

static void
test_ioc_rpc_handle_round_trip(void **state)
{
    json_t *resp = call_text("{\"jsonrpc\":\"2.0\",\"method\":\"test_echo\","
                             "\"params\":{\"name\":\"x\"},\"id\":\"abc\"}");

    (void)state;
    assert_string_equal(json_string_value(json_object_get(resp, "jsonrpc")), "2.0");
    assert_string_equal(json_string_value(json_object_get(resp, "id")), "abc");
    assert_null(json_object_get(resp, "error"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(resp, "result"), "name")),
                        "x");
    json_decref(resp);
}

static void
test_ioc_rpc_handle_handler_error(void **state)
{
    json_t *resp = call_text("{\"jsonrpc\":\"2.0\",\"method\":\"test_fail\",\"id\":3}");

    (void)state;
    assert_error(resp, -ENOSPC, "pool p1: no space left for 1GiB");
    assert_int_equal(json_integer_value(json_object_get(resp, "id")), 3);
    json_decref(resp);
}

static void
test_ioc_rpc_handle_no_result_is_true(void **state)
{
    json_t *resp = call_text("{\"jsonrpc\":\"2.0\",\"method\":\"test_notify\",\"id\":1}");

    (void)state;
    assert_true(json_is_true(json_object_get(resp, "result")));
    json_decref(resp);
}

static void
test_ioc_rpc_handle_notification_returns_null(void **state)
{
    int before = g_notified;

    (void)state;
    assert_null(call_text("{\"jsonrpc\":\"2.0\",\"method\":\"test_notify\"}"));
    assert_int_equal(g_notified, before + 1);
    /* Not even errors are sent for notifications. */
    assert_null(call_text("{\"jsonrpc\":\"2.0\",\"method\":\"no_such_method\"}"));
}

static void
test_ioc_rpc_handle_unknown_method(void **state)
{
    json_t *resp = call_text("{\"jsonrpc\":\"2.0\",\"method\":\"test_ecko\",\"id\":1}");

    (void)state;
    assert_error(resp, IOC_RPC_METHOD_NOT_FOUND,
                 "unknown method test_ecko; did you mean "
                 "test_echo?");
    json_decref(resp);
    resp = call_text("{\"jsonrpc\":\"2.0\",\"method\":\"volume_frobnicate\",\"id\":1}");
    assert_error(resp, IOC_RPC_METHOD_NOT_FOUND,
                 "unknown method volume_frobnicate; "
                 "rpc_get_methods lists them");
    json_decref(resp);
}

static void
test_ioc_rpc_handle_invalid_shapes(void **state)
{
    static const struct {
        const char *req;
        int code;
    } cases[] = {
        {"[1]", IOC_RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":1}", IOC_RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":5,\"id\":1}", IOC_RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"1.0\",\"method\":\"test_notify\",\"id\":1}", IOC_RPC_INVALID_REQUEST},
        {"{\"method\":\"test_notify\",\"id\":1}", IOC_RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"test_notify\",\"id\":{}}", IOC_RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"test_notify\",\"params\":[1],\"id\":1}",
         IOC_RPC_INVALID_PARAMS},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"test_notify\",\"params\":\"x\",\"id\":1}",
         IOC_RPC_INVALID_PARAMS},
        {"[]", IOC_RPC_INVALID_REQUEST},
    };

    (void)state;
    for (size_t i = 0; i < IOC_ARRAY_SIZE(cases); i++) {
        json_t *resp = call_text(cases[i].req);
        /* A batch of one bad request answers with an array of one error. */
        json_t *one = json_is_array(resp) ? json_array_get(resp, 0) : resp;
        assert_error(one, cases[i].code, NULL);
        json_decref(resp);
    }
}

static void
test_ioc_rpc_handle_not_object(void **state)
{
    json_t *req = json_integer(5);
    json_t *resp = ioc_rpc_handle(req);

    (void)state;
    assert_error(resp, IOC_RPC_INVALID_REQUEST, "invalid request: expected a JSON object");
    assert_true(json_is_null(json_object_get(resp, "id")));
    json_decref(resp);
    json_decref(req);
}

static void
test_ioc_rpc_handle_batch(void **state)
{
    json_t *resp = call_text("[{\"jsonrpc\":\"2.0\",\"method\":\"test_notify\",\"id\":1},"
                             "{\"jsonrpc\":\"2.0\",\"method\":\"test_notify\"},"
                             "{\"jsonrpc\":\"2.0\",\"method\":\"test_fail\",\"id\":2}]");

    (void)state;
    assert_int_equal(json_array_size(resp), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(resp, 0), "id")), 1);
    assert_error(json_array_get(resp, 1), -ENOSPC, NULL);
    json_decref(resp);
    assert_null(call_text("[{\"jsonrpc\":\"2.0\",\"method\":\"test_notify\"}]"));
}

static void
test_rpc_get_methods_sorted(void **state)
{
    json_t *resp = call_text("{\"jsonrpc\":\"2.0\",\"method\":\"rpc_get_methods\",\"id\":1}");
    json_t *list = json_object_get(resp, "result");
    const char *want[] = {"rpc_get_methods", "test_echo", "test_fail", "test_notify"};

    (void)state;
    assert_int_equal(json_array_size(list), IOC_ARRAY_SIZE(want));
    for (size_t i = 0; i < IOC_ARRAY_SIZE(want); i++) {
        assert_string_equal(json_string_value(json_array_get(list, i)), want[i]);
    }
    json_decref(resp);
}

static void
test_rpc_get_methods_detail(void **state)
{
    json_t *resp = call_text("{\"jsonrpc\":\"2.0\",\"method\":\"rpc_get_methods\","
                             "\"params\":{\"detail\":true},\"id\":1}");
    json_t *first = json_array_get(json_object_get(resp, "result"), 0);

    (void)state;
    assert_string_equal(json_string_value(json_object_get(first, "name")), "rpc_get_methods");
    assert_non_null(json_string_value(json_object_get(first, "summary")));
    json_decref(resp);
    resp = call_text("{\"jsonrpc\":\"2.0\",\"method\":\"rpc_get_methods\","
                     "\"params\":{\"verbose\":true},\"id\":1}");
    assert_error(resp, IOC_RPC_INVALID_PARAMS,
                 "verbose: unknown parameter; expected one of: "
                 "detail");
    json_decref(resp);
}

/* ---- server ---- */

struct sock_dir {
    char dir[64];
    char path[96];
};

static void
sock_dir_make(struct sock_dir *sd)
{
    snprintf(sd->dir, sizeof(sd->dir), "/tmp/ioc-rpc-test-XXXXXX");
    assert_non_null(mkdtemp(sd->dir));
    snprintf(sd->path, sizeof(sd->path), "%s/iocd.sock", sd->dir);
}

static void
sock_dir_remove(struct sock_dir *sd)
{
    unlink(sd->path);
    assert_int_equal(rmdir(sd->dir), 0);
}

static int
client_connect(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    return fd;
}

static void
client_write(int fd, const char *text)
{
    size_t len = strlen(text), off = 0;

    while (off < len) {
        ssize_t n = send(fd, text + off, len - off, MSG_NOSIGNAL);
        assert_true(n > 0);
        off += (size_t)n;
    }
}

/* Read one response line (5 s at most) and parse it; NULL once the server hung up. */
static json_t *
client_read(int fd)
{
    char line[4096];
    size_t len = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    while (len < sizeof(line) - 1) {
        assert_int_equal(poll(&pfd, 1, 5000), 1);
        ssize_t n = recv(fd, line + len, 1, 0);
        /* A server closing with our bytes unread shows as a reset, not EOF. */
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return NULL;
        }
        assert_true(n > 0);
        if (line[len++] == '\n') {
            line[len] = '\0';
            return json_loads(line, 0, NULL);
        }
    }
    fail_msg("response line too long");
    return NULL;
}

static void
client_expect_id(int fd, json_int_t id)
{
    json_t *resp = client_read(fd);

    assert_non_null(resp);
    assert_null(json_object_get(resp, "error"));
    assert_int_equal(json_integer_value(json_object_get(resp, "id")), id);
    json_decref(resp);
}

#define REQ(id) "{\"jsonrpc\":\"2.0\",\"method\":\"test_notify\",\"id\":" #id "}"

static void
test_ioc_rpc_server_start_pipelined_split_garbage(void **state)
{
    struct ioc_err err = {0};
    struct sock_dir sd;
    json_t *resp;
    int fd, fd2;

    (void)state;
    sock_dir_make(&sd);
    assert_int_equal(ioc_rpc_server_start(sd.path, &err), 0);
    fd = client_connect(sd.path);

    /* Two requests in one write, without a separator. */
    client_write(fd, REQ(1) REQ(2));
    client_expect_id(fd, 1);
    client_expect_id(fd, 2);

    /* One request split across two writes, the cut inside a literal. */
    client_write(fd, "{\"jsonrpc\":\"2.0\",\"method\":\"test_echo\",\"params\":{\"name\":\"a\","
                     "\"flag\":tr");
    usleep(50 * 1000);
    client_write(fd, "ue},\"id\":3}\n");
    client_expect_id(fd, 3);

    /* Garbage gets a parse error; the next line is served again. */
    client_write(fd, "this is not json\n" REQ(4) "\n");
    resp = client_read(fd);
    assert_error(resp, IOC_RPC_PARSE_ERROR, NULL);
    json_decref(resp);
    client_expect_id(fd, 4);

    /* Garbage then hang up mid-request: only that client goes away. */
    client_write(fd, "}}}{\"jsonrpc\":");
    close(fd);

    fd2 = client_connect(sd.path);
    client_write(fd2, REQ(5));
    client_expect_id(fd2, 5);
    close(fd2);

    ioc_rpc_server_stop();
    assert_int_equal(access(sd.path, F_OK), -1); /* socket removed */
    ioc_rpc_server_stop();                       /* idempotent */
    sock_dir_remove(&sd);
}

static void
test_ioc_rpc_server_start_oversized_request_closed(void **state)
{
    struct ioc_err err = {0};
    struct sock_dir sd;
    size_t len = (1u << 20) + 4096;
    char *big = malloc(len + 1);
    json_t *resp;
    int fd;

    (void)state;
    assert_non_null(big);
    memset(big, ' ', len);
    memcpy(big, "{\"name\":\"", 9);
    memset(big + 9, 'x', len - 9);
    big[len] = '\0';
    sock_dir_make(&sd);
    assert_int_equal(ioc_rpc_server_start(sd.path, &err), 0);
    fd = client_connect(sd.path);
    /* The server stops reading at 1 MiB, so the tail of this write may fail: fine. */
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, big + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        off += (size_t)n;
    }
    resp = client_read(fd);
    assert_error(resp, IOC_RPC_INVALID_REQUEST, NULL);
    json_decref(resp);
    assert_null(client_read(fd)); /* closed */
    close(fd);
    ioc_rpc_server_stop();
    sock_dir_remove(&sd);
    free(big);
}

static void
test_ioc_rpc_server_start_socket_in_use(void **state)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct ioc_err err = {0};
    struct sock_dir sd;
    int other;

    (void)state;
    sock_dir_make(&sd);
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sd.path);

    /* A live listener on the path: refused, and its socket left in place. */
    other = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(other, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(other, 1), 0);
    assert_int_equal(ioc_rpc_server_start(sd.path, &err), -EADDRINUSE);
    assert_non_null(strstr(err.msg, "another server is listening"));
    assert_int_equal(access(sd.path, F_OK), 0);

    /* The same socket file once its owner is gone: stale, replaced. */
    close(other);
    ioc_err_clear(&err);
    assert_int_equal(ioc_rpc_server_start(sd.path, &err), 0);
    assert_int_equal(ioc_rpc_server_start(sd.path, &err), -EALREADY);
    ioc_rpc_server_stop();

    /* A regular file is never replaced. */
    fclose(fopen(sd.path, "w"));
    ioc_err_clear(&err);
    assert_int_equal(ioc_rpc_server_start(sd.path, &err), -EEXIST);
    sock_dir_remove(&sd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ioc_rpc_decode_all_types),
        cmocka_unit_test(test_ioc_rpc_decode_optional_absent_untouched),
        cmocka_unit_test(test_ioc_rpc_decode_size_integer),
        cmocka_unit_test(test_ioc_rpc_decode_size_bad),
        cmocka_unit_test(test_ioc_rpc_decode_string_bad_type),
        cmocka_unit_test(test_ioc_rpc_decode_bool_bad_type),
        cmocka_unit_test(test_ioc_rpc_decode_u32_out_of_range),
        cmocka_unit_test(test_ioc_rpc_decode_u64_bad_type),
        cmocka_unit_test(test_ioc_rpc_decode_missing_required),
        cmocka_unit_test(test_ioc_rpc_decode_unknown_field),
        cmocka_unit_test(test_ioc_rpc_decode_not_object),
        cmocka_unit_test(test_ioc_rpc_decode_long_value_truncated),
        cmocka_unit_test(test_ioc_rpc_handle_round_trip),
        cmocka_unit_test(test_ioc_rpc_handle_handler_error),
        cmocka_unit_test(test_ioc_rpc_handle_no_result_is_true),
        cmocka_unit_test(test_ioc_rpc_handle_notification_returns_null),
        cmocka_unit_test(test_ioc_rpc_handle_unknown_method),
        cmocka_unit_test(test_ioc_rpc_handle_invalid_shapes),
        cmocka_unit_test(test_ioc_rpc_handle_not_object),
        cmocka_unit_test(test_ioc_rpc_handle_batch),
        cmocka_unit_test(test_rpc_get_methods_sorted),
        cmocka_unit_test(test_rpc_get_methods_detail),
        cmocka_unit_test(test_ioc_rpc_server_start_pipelined_split_garbage),
        cmocka_unit_test(test_ioc_rpc_server_start_oversized_request_closed),
        cmocka_unit_test(test_ioc_rpc_server_start_socket_in_use),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
