/*
 * tests/unit/rpc/iocctl_test.c - the iocctl binary against a fake daemon.
 *
 * The test process runs the real RPC server on a temporary socket with fake
 * handlers for the methods iocctl calls: list methods return fixed results,
 * create/inject methods record the params they got. Each test runs the
 * iocctl executable (path in argv[1], given by meson) with its output sent
 * to files, then compares exit status, stdout and stderr with the expected
 * text (golden output kept inline, next to the command that makes it).
 */
#include "ioc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/rpc.h"

static const char *g_iocctl;
static char g_dir[64];
static char g_sock[96];
static json_t *g_last_params; /* params of the last recording handler */
static bool g_empty;          /* list methods return [] */

/* ---- fake daemon ---- */

static int
fake_record(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)err;
    json_decref(g_last_params);
    g_last_params = json_deep_copy(params);
    *result = json_incref(json_object_get(params, "name"));
    return 0;
}
IOC_RPC_REGISTER("bdev_malloc_create", fake_record, "records params")

static int
fake_record_true(json_t *params, json_t **result, struct ioc_err *err)
{
    json_t *ignored = NULL;
    int rc = fake_record(params, &ignored, err);

    json_decref(ignored);
    (void)result; /* true */
    return rc;
}
IOC_RPC_REGISTER("bdev_error_inject", fake_record_true, "records params")

static int
fake_nbd_export_add(json_t *params, json_t **result, struct ioc_err *err)
{
    return fake_record_true(params, result, err);
}
IOC_RPC_REGISTER("nbd_export_add", fake_nbd_export_add, "records params")

static int
fake_bdev_list(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)params;
    (void)err;
    *result =
        g_empty
            ? json_array()
            : json_loads(
                  "[{\"name\":\"m0\",\"module\":\"malloc\",\"size\":67108864,\"block_size\":512},"
                  "{\"name\":\"file-long-name\",\"module\":\"file\",\"size\":1073741824,"
                  "\"block_size\":4096},{\"name\":\"odd\",\"module\":\"malloc\",\"size\":1000}]",
                  0, NULL);
    return 0;
}
IOC_RPC_REGISTER("bdev_list", fake_bdev_list, "fixed list")

static int
fake_nbd_export_list(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)params;
    (void)err;
    *result = json_loads("[{\"name\":\"vol1\",\"bdev\":\"m0\",\"read_only\":false,"
                         "\"size\":67108864,\"connections\":2},{\"name\":\"v2\",\"bdev\":\"m1\","
                         "\"read_only\":true,\"size\":1536,\"connections\":0}]",
                         0, NULL);
    return 0;
}
IOC_RPC_REGISTER("nbd_export_list", fake_nbd_export_list, "fixed list")

static int
fake_bdev_delete(json_t *params, json_t **result, struct ioc_err *err)
{
    (void)params;
    (void)result;
    return ioc_err_set(err, -EBUSY, "bdev 'm0' is in use");
}
IOC_RPC_REGISTER("bdev_delete", fake_bdev_delete, "always busy")

/* ---- running iocctl ---- */

struct run {
    int status;
    char out[4096];
    char err[4096];
};

static void
slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
}

/* Run iocctl with the given arguments (NULL-terminated) against the fake daemon. */
static void
iocctl_run(struct run *r, bool with_socket, ...)
{
    const char *argv[32] = {g_iocctl};
    char out[128], err[128];
    int argc = 1, wstatus;
    va_list ap;
    pid_t pid;

    if (with_socket) {
        argv[argc++] = "-s";
        argv[argc++] = g_sock;
    }
    va_start(ap, with_socket);
    while ((argv[argc] = va_arg(ap, const char *)) != NULL && argc < 30) {
        argc++;
    }
    va_end(ap);
    snprintf(out, sizeof(out), "%s/out", g_dir);
    snprintf(err, sizeof(err), "%s/err", g_dir);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(o, 1);
        dup2(e, 2);
        execv(g_iocctl, (char *const *)argv);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    assert_true(WIFEXITED(wstatus));
    r->status = WEXITSTATUS(wstatus);
    slurp(out, r->out, sizeof(r->out));
    slurp(err, r->err, sizeof(r->err));
}

static void
assert_run(const struct run *r, int status, const char *out, const char *err)
{
    if (r->status != status || strcmp(r->out, out) != 0 ||
        (err != NULL && strcmp(r->err, err) != 0)) {
        print_error("status %d, stdout:\n%s\nstderr:\n%s\n", r->status, r->out, r->err);
    }
    assert_int_equal(r->status, status);
    assert_string_equal(r->out, out);
    if (err != NULL) {
        assert_string_equal(r->err, err);
    }
}

/* ---- tests ---- */

static void
test_iocctl_bdev_list_table(void **state)
{
    struct run r;

    (void)state;
    g_empty = false;
    iocctl_run(&r, true, "bdev", "list", NULL);
    assert_run(&r, 0,
               "NAME            MODULE  SIZE   BLOCK\n"
               "m0              malloc  64MiB  512\n"
               "file-long-name  file    1GiB   4096\n"
               "odd             malloc  1000B  -\n",
               "");
}

static void
test_iocctl_bdev_list_empty(void **state)
{
    struct run r;

    (void)state;
    g_empty = true;
    iocctl_run(&r, true, "bdev", "list", NULL);
    assert_run(&r, 0, "NAME  MODULE  SIZE  BLOCK\n", "");
    iocctl_run(&r, true, "bdev", "list", "-o", "json", NULL);
    assert_run(&r, 0, "[]\n", "");
    g_empty = false;
}

static void
test_iocctl_nbd_export_list_table(void **state)
{
    struct run r;

    (void)state;
    iocctl_run(&r, true, "nbd", "export", "list", NULL);
    assert_run(&r, 0,
               "NAME  BDEV  SIZE   ACCESS  CONNECTIONS\n"
               "vol1  m0    64MiB  rw      2\n"
               "v2    m1    1536B  ro      0\n",
               "");
}

static void
test_iocctl_bdev_create_malloc_params(void **state)
{
    struct run r;

    (void)state;
    iocctl_run(&r, true, "bdev", "create", "malloc", "m0", "--size", "64MiB", "--block-size=4k",
               NULL);
    assert_run(&r, 0, "m0\n", "");
    assert_int_equal(json_integer_value(json_object_get(g_last_params, "size")), 64 << 20);
    assert_int_equal(json_integer_value(json_object_get(g_last_params, "block_size")), 4096);
    assert_string_equal(json_string_value(json_object_get(g_last_params, "name")), "m0");
    assert_int_equal(json_object_size(g_last_params), 3);
}

static void
test_iocctl_bdev_error_inject_params(void **state)
{
    struct run r;

    (void)state;
    iocctl_run(&r, true, "bdev", "error", "inject", "e0", "--type", "write", "--errno", "ENOSPC",
               "--count", "1", "--offset", "1MiB", NULL);
    assert_run(&r, 0, "", "");
    assert_string_equal(json_string_value(json_object_get(g_last_params, "io_type")), "write");
    assert_int_equal(json_integer_value(json_object_get(g_last_params, "errno")), ENOSPC);
    assert_int_equal(json_integer_value(json_object_get(g_last_params, "count")), 1);
    assert_int_equal(json_integer_value(json_object_get(g_last_params, "offset")), 1 << 20);
    assert_null(json_object_get(g_last_params, "after"));
}

static void
test_iocctl_nbd_export_add_switch(void **state)
{
    struct run r;

    (void)state;
    /* options may come before positionals, global options after the command */
    iocctl_run(&r, false, "nbd", "export", "add", "--read-only", "vol1", "m0", "-s", g_sock, NULL);
    assert_run(&r, 0, "", "");
    assert_true(json_is_true(json_object_get(g_last_params, "read_only")));
    assert_string_equal(json_string_value(json_object_get(g_last_params, "bdev")), "m0");
}

static void
test_iocctl_call_rpc_error(void **state)
{
    struct run r;

    (void)state;
    iocctl_run(&r, true, "bdev", "delete", "m0", NULL);
    assert_run(&r, 1, "", "iocctl: bdev_delete: bdev 'm0' is in use (code -16)\n");
    iocctl_run(&r, true, "call", "bdev_lst", NULL);
    assert_run(&r, 1, "",
               "iocctl: bdev_lst: unknown method bdev_lst; did you mean bdev_list? "
               "(code -32601)\n");
}

static void
test_iocctl_call_prints_json(void **state)
{
    struct run r;

    (void)state;
    iocctl_run(&r, true, "call", "bdev_malloc_create", "{\"name\": \"x\", \"size\": 512}", NULL);
    assert_run(&r, 0, "\"x\"\n", "");
    iocctl_run(&r, true, "call", "bdev_malloc_create", "{\"name\": ", NULL);
    assert_int_equal(r.status, 2);
}

static void
test_iocctl_usage_errors(void **state)
{
    struct run r;

    (void)state;
    iocctl_run(&r, true, "bdev", "frob", NULL);
    assert_run(&r, 2, "",
               "iocctl: bdev: unknown command 'frob'; expected one of: list, create, "
               "error, delete\n");
    iocctl_run(&r, true, "bdev", "create", "malloc", "m0", "--sise", "1", NULL);
    assert_run(&r, 2, "",
               "iocctl: bdev create malloc: unknown option '--sise'\n"
               "usage: iocctl bdev create malloc NAME --size SIZE [--block-size SIZE]\n");
    iocctl_run(&r, true, "bdev", "create", "malloc", "m0", "--size", "12XB", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "got '12XB'"));
    iocctl_run(&r, true, "bdev", "--help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "bdev create malloc"));
    assert_null(strstr(r.out, "nbd export"));
}

static void
test_iocctl_no_daemon(void **state)
{
    struct run r;

    (void)state;
    iocctl_run(&r, false, "-s", "/nonexistent/iocd.sock", "bdev", "list", NULL);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "cannot connect to iocd at /nonexistent/iocd.sock"));
    assert_non_null(strstr(r.err, "iocd --rpc-socket"));
}

static int
setup(void **state)
{
    struct ioc_err err = {0};

    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ioc-iocctl-test-XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        return -1;
    }
    snprintf(g_sock, sizeof(g_sock), "%s/iocd.sock", g_dir);
    return ioc_rpc_server_start(g_sock, &err);
}

static int
teardown(void **state)
{
    (void)state;
    ioc_rpc_server_stop();
    json_decref(g_last_params);
    return rmdir(g_dir);
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iocctl_bdev_list_table),
        cmocka_unit_test(test_iocctl_bdev_list_empty),
        cmocka_unit_test(test_iocctl_nbd_export_list_table),
        cmocka_unit_test(test_iocctl_bdev_create_malloc_params),
        cmocka_unit_test(test_iocctl_bdev_error_inject_params),
        cmocka_unit_test(test_iocctl_nbd_export_add_switch),
        cmocka_unit_test(test_iocctl_call_rpc_error),
        cmocka_unit_test(test_iocctl_call_prints_json),
        cmocka_unit_test(test_iocctl_usage_errors),
        cmocka_unit_test(test_iocctl_no_daemon),
    };

    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-TO-IOCCTL\n", argv[0]);
        return 2;
    }
    g_iocctl = argv[1];
    return cmocka_run_group_tests(tests, setup, teardown);
}
