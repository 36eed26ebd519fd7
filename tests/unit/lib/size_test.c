/*
 * Unit tests for lib/size.c and lib/err.c.
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>

#include "lib/err.h"
#include "lib/size.h"

static void
test_ioc_size_parse_units(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(ioc_size_parse("1048576", &v), 0);
    assert_int_equal(v, 1048576);
    assert_int_equal(ioc_size_parse("10GiB", &v), 0);
    assert_int_equal(v, 10ull << 30);
    assert_int_equal(ioc_size_parse("4k", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(ioc_size_parse("512 MiB", &v), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(ioc_size_parse("12XB", &v), -EINVAL);
    assert_int_equal(ioc_size_parse("", &v), -EINVAL);
    assert_int_equal(ioc_size_parse("-1", &v), -EINVAL);
    assert_int_equal(ioc_size_parse("99999999999999999999", &v), -ERANGE);
    assert_int_equal(ioc_size_parse("100000000PiB", &v), -ERANGE);
}

static void
test_ioc_size_format_exact_and_approx(void **state)
{
    char buf[32];

    (void)state;
    assert_string_equal(ioc_size_format(10ull << 30, false, buf, sizeof(buf)), "10GiB");
    assert_string_equal(ioc_size_format(1536 << 10, false, buf, sizeof(buf)), "1536KiB");
    assert_string_equal(ioc_size_format(1000, false, buf, sizeof(buf)), "1000B");
    assert_string_equal(ioc_size_format(0, false, buf, sizeof(buf)), "0B");
    assert_string_equal(ioc_size_format(3ull << 29, true, buf, sizeof(buf)), "1.5GiB");
    assert_string_equal(ioc_size_format(1ull << 30, true, buf, sizeof(buf)), "1GiB");
}

static void
test_ioc_err_set_first_wins(void **state)
{
    struct ioc_err err = {0};

    (void)state;
    assert_int_equal(ioc_err_set(&err, -EINVAL, "size: bad %d", 1), -EINVAL);
    assert_int_equal(ioc_err_set(&err, -EIO, "later"), -EIO);
    assert_int_equal(err.code, -EINVAL);
    assert_string_equal(err.msg, "size: bad 1");
    assert_int_equal(ioc_err_set(NULL, -EIO, "x"), -EIO);
    ioc_err_clear(&err);
    assert_int_equal(err.code, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ioc_size_parse_units),
        cmocka_unit_test(test_ioc_size_format_exact_and_approx),
        cmocka_unit_test(test_ioc_err_set_first_wins),
    };

    return cmocka_run_group_tests_name("lib", tests, NULL, NULL);
}
