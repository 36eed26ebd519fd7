/*
 * target/iscsi/iscsi_text.c - text keys: parsing "key=value\0" pairs and
 * negotiating the operational keys of RFC 7143 section 13.
 *
 * The parser is a pure walk over a byte buffer (fuzzed by fuzz_iscsi_text);
 * it never writes into the input. Negotiation follows the per-key rules:
 * lists (digests) take the first value we support, booleans use OR
 * (InitialR2T, DataPDUInOrder, DataSequenceInOrder) or AND (ImmediateData),
 * numbers take the minimum (MaxBurstLength, FirstBurstLength,
 * MaxOutstandingR2T, MaxConnections, ErrorRecoveryLevel, DefaultTime2Retain)
 * or the maximum (DefaultTime2Wait); MaxRecvDataSegmentLength is declarative.
 * Keys this file does not know are left to the caller (login, discovery),
 * which answers NotUnderstood for what nobody knows.
 *
 * Not done: ErrorRecoveryLevel above 0 (we answer 0), OFMarker/IFMarker
 * (answered No), the X- and Z- vendor keys (NotUnderstood).
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target/iscsi/iscsi_internal.h"

struct iscsi_opts g_iscsi_opts = {
    .max_recv_dsl = ISCSI_RDSL_MAX,
    .max_burst = ISCSI_MAX_XFER,
    .first_burst = 256u * 1024,
    .initial_r2t = false,
    .immediate_data = true,
    .max_outstanding_r2t = 1,
    .max_connections = 8,       /* ISCSI_MAX_CONNS */
    .allow_digests = true,
};

void
iscsi_params_init(struct iscsi_params *p)
{
    memset(p, 0, sizeof(*p));
    p->max_connections = 1;
    p->initial_r2t = true;
    p->immediate_data = true;
    p->max_recv_dsl = 8192;
    p->max_burst = 262144;
    p->first_burst = 65536;
    p->time2wait = 2;
    p->time2retain = 20;
    p->max_outstanding_r2t = 1;
    p->data_pdu_in_order = true;
    p->data_seq_in_order = true;
}

/* ------------------------------------------------------------ text buffer */

void
iscsi_text_add(struct iscsi_text *t, const char *key, const char *fmt, ...)
{
    char value[ISCSI_VALUE_MAX + 1];
    size_t need;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    need = strlen(key) + 1 + strlen(value) + 1;
    if (t->len + need > ISCSI_TEXT_MAX) {
        t->nomem = true;
        return;
    }
    if (t->len + need > t->cap) {
        size_t cap = IOC_MAX(t->cap * 2, t->len + need + 256);
        char *p = realloc(t->buf, cap);

        if (p == NULL) {
            t->nomem = true;
            return;
        }
        t->buf = p;
        t->cap = cap;
    }
    t->len += (size_t)sprintf(t->buf + t->len, "%s=%s", key, value) + 1;
}

void
iscsi_text_reset(struct iscsi_text *t)
{
    t->len = 0;
    t->nomem = false;
}

void
iscsi_text_free(struct iscsi_text *t)
{
    free(t->buf);
    memset(t, 0, sizeof(*t));
}

/* ---------------------------------------------------------------- parsing */

int
iscsi_text_foreach(const char *data, size_t len,
                   int (*fn)(const char *key, const char *value, void *arg), void *arg)
{
    size_t pos = 0;

    while (pos < len) {
        const char *pair = data + pos;
        size_t plen = strnlen(pair, len - pos);
        const char *eq = memchr(pair, '=', plen);
        char key[ISCSI_KEY_MAX + 1];
        char value[ISCSI_VALUE_MAX + 1];
        size_t klen, vlen;
        int rc;

        if (plen == 0) {          /* padding NULs after the last pair */
            pos++;
            continue;
        }
        if (eq == NULL) {
            return -EINVAL;
        }
        klen = (size_t)(eq - pair);
        vlen = plen - klen - 1;
        if (klen == 0 || klen > ISCSI_KEY_MAX || vlen > ISCSI_VALUE_MAX) {
            return -EINVAL;
        }
        memcpy(key, pair, klen);
        key[klen] = '\0';
        memcpy(value, eq + 1, vlen);
        value[vlen] = '\0';
        rc = fn(key, value, arg);
        if (rc != 0) {
            return rc;
        }
        pos += plen + 1;
    }
    return 0;
}

/* ------------------------------------------------------------ negotiation */

static int
parse_num(const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    unsigned long long n;

    if (v[0] < '0' || v[0] > '9') {
        return -EINVAL;
    }
    n = strtoull(v, &end, 0);
    if (*end != '\0' || n < lo || n > hi) {
        return -EINVAL;
    }
    *out = (uint32_t)n;
    return 0;
}

static int
parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "Yes") == 0) {
        *out = true;
    } else if (strcmp(v, "No") == 0) {
        *out = false;
    } else {
        return -EINVAL;
    }
    return 0;
}

/* HeaderDigest/DataDigest: the first of the initiator's list we support. */
static int
neg_digest(const char *key, const char *value, bool *out, struct iscsi_text *resp)
{
    char list[ISCSI_VALUE_MAX + 1];
    char *save = NULL;

    snprintf(list, sizeof(list), "%s", value);
    for (char *v = strtok_r(list, ",", &save); v != NULL; v = strtok_r(NULL, ",", &save)) {
        if (strcmp(v, "None") == 0) {
            *out = false;
            iscsi_text_add(resp, key, "None");
            return 1;
        }
        if (strcmp(v, "CRC32C") == 0 && g_iscsi_opts.allow_digests) {
            *out = true;
            iscsi_text_add(resp, key, "CRC32C");
            return 1;
        }
    }
    iscsi_text_add(resp, key, "Reject");
    return -EINVAL;
}

enum neg_rule { NEG_MIN, NEG_MAX };

static int
neg_num(const char *key, const char *value, uint32_t lo, uint32_t hi, uint32_t ours,
        enum neg_rule rule, uint32_t *out, struct iscsi_text *resp)
{
    uint32_t n;

    if (parse_num(value, lo, hi, &n) < 0) {
        iscsi_text_add(resp, key, "Reject");
        return -EINVAL;
    }
    *out = rule == NEG_MIN ? IOC_MIN(n, ours) : IOC_MAX(n, ours);
    iscsi_text_add(resp, key, "%u", *out);
    return 1;
}

static int
neg_bool(const char *key, const char *value, bool ours, bool or_rule, bool *out,
         struct iscsi_text *resp)
{
    bool b;

    if (parse_bool(value, &b) < 0) {
        iscsi_text_add(resp, key, "Reject");
        return -EINVAL;
    }
    *out = or_rule ? (b || ours) : (b && ours);
    iscsi_text_add(resp, key, "%s", *out ? "Yes" : "No");
    return 1;
}

int
iscsi_text_negotiate(struct iscsi_params *p, const char *key, const char *value,
                     struct iscsi_text *resp)
{
    const struct iscsi_opts *o = &g_iscsi_opts;
    uint32_t n;

    if (strcmp(key, "HeaderDigest") == 0) {
        return neg_digest(key, value, &p->header_digest, resp);
    }
    if (strcmp(key, "DataDigest") == 0) {
        return neg_digest(key, value, &p->data_digest, resp);
    }
    if (strcmp(key, "MaxConnections") == 0) {
        return neg_num(key, value, 1, 65535, o->max_connections, NEG_MIN, &p->max_connections,
                       resp);
    }
    if (strcmp(key, "InitialR2T") == 0) {
        return neg_bool(key, value, o->initial_r2t, true, &p->initial_r2t, resp);
    }
    if (strcmp(key, "ImmediateData") == 0) {
        return neg_bool(key, value, o->immediate_data, false, &p->immediate_data, resp);
    }
    if (strcmp(key, "MaxRecvDataSegmentLength") == 0) {
        if (parse_num(value, 512, 16777215, &n) < 0) {
            iscsi_text_add(resp, key, "Reject");
            return -EINVAL;
        }
        p->max_recv_dsl = n; /* declarative: ours is declared by the caller */
        return 1;
    }
    if (strcmp(key, "MaxBurstLength") == 0) {
        return neg_num(key, value, 512, 16777215, o->max_burst, NEG_MIN, &p->max_burst, resp);
    }
    if (strcmp(key, "FirstBurstLength") == 0) {
        return neg_num(key, value, 512, 16777215, o->first_burst, NEG_MIN, &p->first_burst,
                       resp);
    }
    if (strcmp(key, "DefaultTime2Wait") == 0) {
        return neg_num(key, value, 0, 3600, 2, NEG_MAX, &p->time2wait, resp);
    }
    if (strcmp(key, "DefaultTime2Retain") == 0) {
        return neg_num(key, value, 0, 3600, 0, NEG_MIN, &p->time2retain, resp);
    }
    if (strcmp(key, "MaxOutstandingR2T") == 0) {
        return neg_num(key, value, 1, 65535, o->max_outstanding_r2t, NEG_MIN,
                       &p->max_outstanding_r2t, resp);
    }
    if (strcmp(key, "DataPDUInOrder") == 0) {
        return neg_bool(key, value, true, true, &p->data_pdu_in_order, resp);
    }
    if (strcmp(key, "DataSequenceInOrder") == 0) {
        return neg_bool(key, value, true, true, &p->data_seq_in_order, resp);
    }
    if (strcmp(key, "ErrorRecoveryLevel") == 0) {
        return neg_num(key, value, 0, 2, 0, NEG_MIN, &p->error_recovery_level, resp);
    }
    if (strcmp(key, "IFMarker") == 0 || strcmp(key, "OFMarker") == 0) {
        iscsi_text_add(resp, key, "No");
        return 1;
    }
    if (strcmp(key, "IFMarkInt") == 0 || strcmp(key, "OFMarkInt") == 0) {
        iscsi_text_add(resp, key, "Irrelevant");
        return 1;
    }
    return 0;
}
