/*
 * fuzz_iscsi_text.c - libFuzzer target for the iSCSI text-key parser and the
 * negotiation of operational keys (iscsi_text.c), and the BHS parser
 * (iscsi_pdu.c). Pure functions: every input is either refused or walked to
 * the end, each answer fits ISCSI_TEXT_MAX, and nothing leaks.
 */
#include "ioc/common.h"

#include <string.h>

#include "target/iscsi/iscsi_internal.h"

struct walk {
    struct iscsi_params p;
    struct iscsi_text resp;
};

static int
walk_key(const char *key, const char *value, void *arg)
{
    struct walk *w = arg;

    if (strlen(key) == 0 || strlen(key) > ISCSI_KEY_MAX || strlen(value) > ISCSI_VALUE_MAX) {
        abort();
    }
    (void)iscsi_text_negotiate(&w->p, key, value, &w->resp);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct walk w;
    struct iscsi_pdu_info info;

    iscsi_params_init(&w.p);
    memset(&w.resp, 0, sizeof(w.resp));
    (void)iscsi_text_foreach((const char *)data, size, walk_key, &w);
    if (w.resp.len > ISCSI_TEXT_MAX) {
        abort();
    }
    iscsi_text_free(&w.resp);
    if (size >= ISCSI_BHS_SIZE &&
        iscsi_pdu_parse(data, data[1] & 1, data[1] & 2, ISCSI_RDSL_MAX, &info) == 0) {
        if (info.data_len > ISCSI_RDSL_MAX || info.total < ISCSI_BHS_SIZE) {
            abort();
        }
        if (info.total <= size) {
            (void)iscsi_pdu_check_digests(data, &info, data[1] & 1, data[1] & 2);
        }
    }
    return 0;
}
