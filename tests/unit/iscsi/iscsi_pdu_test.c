/*
 * Unit tests for the pure parts of the iSCSI target: CRC32C, the BHS parser
 * and the text-key parser and negotiation (iscsi_pdu.c, iscsi_text.c).
 */
#include "ioc/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "target/iscsi/iscsi_internal.h"

static void
test_iscsi_crc32c_vectors(void **state)
{
    uint8_t buf[48];

    (void)state;
    /* RFC 3720 B.4 examples */
    memset(buf, 0, 32);
    assert_int_equal(iscsi_crc32c(0, buf, 32), 0x8a9136aau);
    memset(buf, 0xff, 32);
    assert_int_equal(iscsi_crc32c(0, buf, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++) {
        buf[i] = (uint8_t)i;
    }
    assert_int_equal(iscsi_crc32c(0, buf, 32), 0x46dd794eu);
    assert_int_equal(iscsi_crc32c(0, "123456789", 9), 0xe3069283u);
    /* chaining gives the same result as one call */
    assert_int_equal(iscsi_crc32c(iscsi_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}

static void
test_iscsi_pdu_parse_lengths(void **state)
{
    uint8_t bhs[48] = {0};
    struct iscsi_pdu_info info;

    (void)state;
    bhs[0] = ISCSI_OP_SCSI_CMD | ISCSI_FLAG_IMMEDIATE;
    bhs[4] = 2;                       /* 8 bytes of AHS */
    iscsi_dlen_set(bhs + 5, 13);      /* padded to 16 */
    assert_int_equal(iscsi_pdu_parse(bhs, false, false, 8192, &info), 0);
    assert_int_equal(info.opcode, ISCSI_OP_SCSI_CMD);
    assert_true(info.immediate);
    assert_int_equal(info.ahs_len, 8);
    assert_int_equal(info.data_off, 56);
    assert_int_equal(info.total, 56 + 16);
    assert_int_equal(iscsi_pdu_parse(bhs, true, true, 8192, &info), 0);
    assert_int_equal(info.data_off, 60);
    assert_int_equal(info.total, 60 + 16 + 4);
    /* no data: no data digest */
    iscsi_dlen_set(bhs + 5, 0);
    assert_int_equal(iscsi_pdu_parse(bhs, true, true, 8192, &info), 0);
    assert_int_equal(info.total, 60);
}

static void
test_iscsi_pdu_parse_rejects(void **state)
{
    uint8_t bhs[48] = {0};
    struct iscsi_pdu_info info;

    (void)state;
    bhs[0] = 0x80;
    assert_int_equal(iscsi_pdu_parse(bhs, false, false, 8192, &info), -EPROTO);
    bhs[0] = ISCSI_OP_DATA_OUT;
    iscsi_dlen_set(bhs + 5, 8193);
    assert_int_equal(iscsi_pdu_parse(bhs, false, false, 8192, &info), -EMSGSIZE);
}

static void
test_iscsi_pdu_check_digests(void **state)
{
    uint8_t pdu[48 + 4 + 8 + 4] = {0};
    struct iscsi_pdu_info info;
    uint32_t d;

    (void)state;
    pdu[0] = ISCSI_OP_NOP_OUT;
    iscsi_dlen_set(pdu + 5, 5);
    memcpy(pdu + 52, "hello", 5);
    assert_int_equal(iscsi_pdu_parse(pdu, true, true, 8192, &info), 0);
    assert_int_equal(info.total, sizeof(pdu));
    d = htole32(iscsi_crc32c(0, pdu, 48));
    memcpy(pdu + 48, &d, 4);
    d = htole32(iscsi_crc32c(0, pdu + 52, 8));
    memcpy(pdu + 60, &d, 4);
    assert_int_equal(iscsi_pdu_check_digests(pdu, &info, true, true), 0);
    pdu[53] ^= 1;
    assert_int_equal(iscsi_pdu_check_digests(pdu, &info, true, true), -EILSEQ);
    pdu[10] ^= 1;
    assert_int_equal(iscsi_pdu_check_digests(pdu, &info, true, true), -EBADMSG);
}

/* ---------------------------------------------------------------- text */

struct kv_seen {
    int n;
    char keys[8][64];
    char values[8][64];
};

static int
kv_collect(const char *key, const char *value, void *arg)
{
    struct kv_seen *s = arg;

    if (s->n < 8) {
        snprintf(s->keys[s->n], 64, "%s", key);
        snprintf(s->values[s->n], 64, "%s", value);
    }
    s->n++;
    return 0;
}

static void
test_iscsi_text_foreach(void **state)
{
    static const char ok[] = "A=1\0B=\0LongerKey=x,y\0\0\0";
    static const char noeq[] = "A=1\0B\0";
    static const char emptykey[] = "=1\0";
    struct kv_seen s = {0};

    (void)state;
    assert_int_equal(iscsi_text_foreach(ok, sizeof(ok) - 1, kv_collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.keys[1], "B");
    assert_string_equal(s.values[1], "");
    assert_string_equal(s.values[2], "x,y");
    assert_int_equal(iscsi_text_foreach(noeq, sizeof(noeq) - 1, kv_collect, &s), -EINVAL);
    assert_int_equal(iscsi_text_foreach(emptykey, sizeof(emptykey) - 1, kv_collect, &s),
                     -EINVAL);
    /* a pair without a terminating NUL at the end of the buffer still parses */
    memset(&s, 0, sizeof(s));
    assert_int_equal(iscsi_text_foreach("K=v", 3, kv_collect, &s), 0);
    assert_string_equal(s.values[0], "v");
}

static void
test_iscsi_text_negotiate_rules(void **state)
{
    struct iscsi_params p;
    struct iscsi_text resp = {0};

    (void)state;
    iscsi_params_init(&p);
    assert_int_equal(iscsi_text_negotiate(&p, "HeaderDigest", "CRC32C,None", &resp), 1);
    assert_true(p.header_digest);
    assert_int_equal(iscsi_text_negotiate(&p, "DataDigest", "None,CRC32C", &resp), 1);
    assert_false(p.data_digest);
    assert_int_equal(iscsi_text_negotiate(&p, "HeaderDigest", "MD5", &resp), -EINVAL);
    assert_int_equal(iscsi_text_negotiate(&p, "MaxBurstLength", "1048576", &resp), 1);
    assert_int_equal(p.max_burst, 1048576);
    assert_int_equal(iscsi_text_negotiate(&p, "MaxBurstLength", "16777215", &resp), 1);
    assert_int_equal(p.max_burst, g_iscsi_opts.max_burst);
    assert_int_equal(iscsi_text_negotiate(&p, "InitialR2T", "Yes", &resp), 1);
    assert_true(p.initial_r2t);
    assert_int_equal(iscsi_text_negotiate(&p, "ImmediateData", "No", &resp), 1);
    assert_false(p.immediate_data);
    assert_int_equal(iscsi_text_negotiate(&p, "ErrorRecoveryLevel", "2", &resp), 1);
    assert_int_equal(p.error_recovery_level, 0);
    assert_int_equal(iscsi_text_negotiate(&p, "MaxRecvDataSegmentLength", "4096", &resp), 1);
    assert_int_equal(p.max_recv_dsl, 4096);
    assert_int_equal(iscsi_text_negotiate(&p, "MaxRecvDataSegmentLength", "12", &resp),
                     -EINVAL);
    assert_int_equal(iscsi_text_negotiate(&p, "InitialR2T", "Maybe", &resp), -EINVAL);
    assert_int_equal(iscsi_text_negotiate(&p, "X-vendor", "1", &resp), 0);
    assert_false(resp.nomem);
    /* the answers, in order, as the initiator will read them */
    assert_memory_equal(resp.buf, "HeaderDigest=CRC32C\0DataDigest=None\0HeaderDigest=Reject\0",
                        56);
    iscsi_text_free(&resp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iscsi_crc32c_vectors),
        cmocka_unit_test(test_iscsi_pdu_parse_lengths),
        cmocka_unit_test(test_iscsi_pdu_parse_rejects),
        cmocka_unit_test(test_iscsi_pdu_check_digests),
        cmocka_unit_test(test_iscsi_text_foreach),
        cmocka_unit_test(test_iscsi_text_negotiate_rules),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
