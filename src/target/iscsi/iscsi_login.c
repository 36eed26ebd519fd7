/*
 * target/iscsi/iscsi_login.c - the login phase (RFC 7143 section 6) and text
 * requests of the full-feature phase (SendTargets).
 *
 * A login is a sequence of Login Request PDUs, each answered by one Login
 * Response. Keys gathered across C-bit PDUs are handled together: identity
 * (InitiatorName, TargetName, SessionType), security (AuthMethod, CHAP_*) and
 * the operational keys (iscsi_text_negotiate). Stages: security (0) ->
 * operational (1) -> full feature (3); the initiator asks for a transit with
 * the T bit and we grant it unless CHAP is required and not yet done.
 *
 * CHAP (RFC 1994 over RFC 7143 12.1.3), one-way or mutual, with MD5
 * (CHAP_A=5) or SHA-256 (CHAP_A=7) from OpenSSL's EVP interface:
 *
 *   I: AuthMethod=CHAP,None     T: AuthMethod=CHAP
 *   I: CHAP_A=7,5               T: CHAP_A=7 CHAP_I=<id> CHAP_C=0x<challenge>
 *   I: CHAP_N, CHAP_R [CHAP_I, CHAP_C for mutual]
 *   T: [CHAP_N, CHAP_R for mutual]   and the transit is allowed.
 *
 * A wrong answer ends the login with 0x0201 (authentication failure) and
 * the connection. A target with CHAP refuses AuthMethod=None.
 *
 * A login with the TSIH of a live session adds a connection to it (the
 * session logic is in iscsi_sess.c): InitiatorName, ISID, target and session
 * type must match, leading-only keys are answered Irrelevant and the
 * session's values apply, and each connection authenticates on its own. If
 * the session lives on another reactor, the first login PDU is not handled
 * here: the connection migrates there first (ISCSI_CONN_MIGRATE).
 *
 * Not done: SRP/Kerberos.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/log.h"
#include "target/iscsi/iscsi_conn_priv.h"

#define CHAP_MD5    5
#define CHAP_SHA256 7
#define CHAP_CHALLENGE_LEN 16

enum chap_state {
    CHAP_NONE,        /* no CHAP in progress */
    CHAP_WAIT_A,      /* AuthMethod=CHAP agreed: waiting for CHAP_A */
    CHAP_WAIT_R,      /* challenge sent: waiting for CHAP_N/CHAP_R */
    CHAP_DONE,
};

/* Per-PDU scratch of the key walk. */
struct login_keys {
    struct iscsi_conn *c;
    struct iscsi_text *resp;
    uint16_t status;        /* login status to answer with, 0 = fine */
    char target_name[ISCSI_NAME_MAX + 1];
    char session_type[16];
    char auth_method[128];
    char chap_a[64];
    char chap_n[256];
    char chap_r[512];
    char chap_i[16];
    char chap_c[512];
    bool has_initiator;
    bool joining;           /* the login names an existing session (TSIH != 0) */
};

/* --------------------------------------------------------------- CHAP */

static int
hex_val(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* Decode "0x<hex>" or "0b<base64>" into out; returns the length or -EINVAL. */
static int
chap_decode(const char *s, uint8_t *out, size_t max)
{
    size_t n = strlen(s);

    if (n < 3 || s[0] != '0') {
        return -EINVAL;
    }
    if (s[1] == 'x' || s[1] == 'X') {
        size_t digits = n - 2, len = (digits + 1) / 2;
        const char *p = s + 2;

        if (len > max) {
            return -EINVAL;
        }
        for (size_t i = 0; i < len; i++) {
            int hi = (digits % 2 == 1 && i == 0) ? 0 : hex_val(*p++);
            int lo = hex_val(*p++);

            if (hi < 0 || lo < 0) {
                return -EINVAL;
            }
            out[i] = (uint8_t)(hi << 4 | lo);
        }
        return (int)len;
    }
    if (s[1] == 'b' || s[1] == 'B') {
        uint8_t tmp[1024];
        int len;

        if ((n - 2) % 4 != 0 || (n - 2) / 4 * 3 > sizeof(tmp)) {
            return -EINVAL;
        }
        len = EVP_DecodeBlock(tmp, (const unsigned char *)s + 2, (int)(n - 2));
        if (len < 0) {
            return -EINVAL;
        }
        for (size_t i = n; i > 2 && s[i - 1] == '='; i--) {
            len--;
        }
        if ((size_t)len > max) {
            return -EINVAL;
        }
        memcpy(out, tmp, (size_t)len);
        return len;
    }
    return -EINVAL;
}

static void
hex_encode(char *out, const uint8_t *in, size_t len)
{
    static const char digits[] = "0123456789abcdef";

    *out++ = '0';
    *out++ = 'x';
    for (size_t i = 0; i < len; i++) {
        *out++ = digits[in[i] >> 4];
        *out++ = digits[in[i] & 15];
    }
    *out = '\0';
}

/* H(id || secret || challenge); returns the digest length or -EINVAL. */
static int
chap_hash(uint8_t alg, uint8_t id, const char *secret, const uint8_t *chal, size_t clen,
          uint8_t *out)
{
    const EVP_MD *md = alg == CHAP_MD5 ? EVP_md5() : EVP_sha256();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok;

    if (ctx == NULL) {
        return -ENOMEM;
    }
    ok = EVP_DigestInit_ex(ctx, md, NULL) && EVP_DigestUpdate(ctx, &id, 1) &&
         EVP_DigestUpdate(ctx, secret, strlen(secret)) && EVP_DigestUpdate(ctx, chal, clen) &&
         EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
    return ok ? (int)len : -EINVAL;
}

/* CHAP_A list from the initiator: pick SHA-256 if offered, else MD5. */
static void
chap_send_challenge(struct login_keys *k)
{
    struct iscsi_conn *c = k->c;
    char list[64], hex[2 * CHAP_CHALLENGE_LEN + 3], *save = NULL;
    uint8_t alg = 0;

    snprintf(list, sizeof(list), "%s", k->chap_a);
    for (char *v = strtok_r(list, ",", &save); v != NULL; v = strtok_r(NULL, ",", &save)) {
        int a = atoi(v);

        if (a == CHAP_SHA256 || (a == CHAP_MD5 && alg == 0)) {
            alg = (uint8_t)a;
        }
    }
    if (alg == 0 || RAND_bytes(c->chap_challenge, CHAP_CHALLENGE_LEN) != 1 ||
        RAND_bytes(&c->chap_id, 1) != 1) {
        iscsi_text_add(k->resp, "CHAP_A", "Reject");
        k->status = ISCSI_LOGIN_AUTH_FAILED;
        return;
    }
    c->chap_alg = alg;
    hex_encode(hex, c->chap_challenge, CHAP_CHALLENGE_LEN);
    iscsi_text_add(k->resp, "CHAP_A", "%u", alg);
    iscsi_text_add(k->resp, "CHAP_I", "%u", c->chap_id);
    iscsi_text_add(k->resp, "CHAP_C", "%s", hex);
    c->chap_state = CHAP_WAIT_R;
}

/* Mutual CHAP: answer the initiator's challenge with our credentials. */
static int
chap_answer_mutual(struct login_keys *k, const struct iscsi_chap *cred)
{
    struct iscsi_conn *c = k->c;
    uint8_t chal[256], digest[EVP_MAX_MD_SIZE];
    char hex[2 * EVP_MAX_MD_SIZE + 3], *end;
    unsigned long id = strtoul(k->chap_i, &end, 10);
    int clen = chap_decode(k->chap_c, chal, sizeof(chal));
    int dlen;

    if (k->chap_i[0] == '\0' || *end != '\0' || id > 255 || clen < 1 ||
        (clen == CHAP_CHALLENGE_LEN && memcmp(chal, c->chap_challenge, CHAP_CHALLENGE_LEN) == 0)) {
        return -EINVAL; /* reflected challenge or junk */
    }
    dlen = chap_hash(c->chap_alg, (uint8_t)id, cred->mutual_secret, chal, (size_t)clen, digest);
    if (dlen < 0) {
        return dlen;
    }
    hex_encode(hex, digest, (size_t)dlen);
    iscsi_text_add(k->resp, "CHAP_N", "%s", cred->mutual_user);
    iscsi_text_add(k->resp, "CHAP_R", "%s", hex);
    return 0;
}

static void
chap_check_response(struct login_keys *k)
{
    struct iscsi_conn *c = k->c;
    const struct iscsi_chap *cred = &c->tgt->chap;
    uint8_t got[EVP_MAX_MD_SIZE], want[EVP_MAX_MD_SIZE];
    int glen = chap_decode(k->chap_r, got, sizeof(got));
    int wlen = chap_hash(c->chap_alg, c->chap_id, cred->secret, c->chap_challenge,
                         CHAP_CHALLENGE_LEN, want);

    if (strcmp(k->chap_n, cred->user) != 0 || glen != wlen || wlen < 0 ||
        CRYPTO_memcmp(got, want, (size_t)wlen) != 0) {
        IOC_NOTICE("iscsi", "conn %s: CHAP authentication of %s failed", c->peer,
                   c->params.initiator_name);
        k->status = ISCSI_LOGIN_AUTH_FAILED;
        return;
    }
    if (k->chap_c[0] != '\0' || k->chap_i[0] != '\0') {
        if (!cred->mutual || chap_answer_mutual(k, cred) < 0) {
            k->status = ISCSI_LOGIN_AUTH_FAILED;
            return;
        }
    } else if (cred->mutual) {
        k->status = ISCSI_LOGIN_AUTH_FAILED; /* we insist on mutual */
        return;
    }
    c->chap_state = CHAP_DONE;
    c->auth_done = true;
}

/* AuthMethod list: CHAP if the target needs it, else None. */
static void
login_auth_method(struct login_keys *k)
{
    struct iscsi_conn *c = k->c;
    bool need = c->tgt != NULL && c->tgt->chap.required;
    char list[128], *save = NULL;

    snprintf(list, sizeof(list), "%s", k->auth_method);
    for (char *v = strtok_r(list, ",", &save); v != NULL; v = strtok_r(NULL, ",", &save)) {
        if (need && strcmp(v, "CHAP") == 0) {
            iscsi_text_add(k->resp, "AuthMethod", "CHAP");
            c->chap_state = CHAP_WAIT_A;
            return;
        }
        if (!need && strcmp(v, "None") == 0) {
            iscsi_text_add(k->resp, "AuthMethod", "None");
            c->auth_done = true;
            return;
        }
    }
    iscsi_text_add(k->resp, "AuthMethod", "Reject");
    k->status = ISCSI_LOGIN_AUTH_FAILED;
}

static void
login_security(struct login_keys *k)
{
    struct iscsi_conn *c = k->c;

    if (k->auth_method[0] != '\0') {
        login_auth_method(k);
    }
    if (k->status != 0 || c->tgt == NULL || !c->tgt->chap.required) {
        return;
    }
    if (c->chap_state == CHAP_WAIT_A && k->chap_a[0] != '\0') {
        chap_send_challenge(k);
    } else if (c->chap_state == CHAP_WAIT_R && k->chap_r[0] != '\0') {
        chap_check_response(k);
    } else if (k->chap_r[0] != '\0' || k->chap_a[0] != '\0') {
        k->status = ISCSI_LOGIN_INITIATOR_ERROR; /* out of order */
    }
}

/* ---------------------------------------------------------- key walk */

static void
copy_key(char *dst, size_t len, const char *value, struct login_keys *k)
{
    if (strlen(value) >= len) {
        k->status = ISCSI_LOGIN_INITIATOR_ERROR;
        return;
    }
    snprintf(dst, len, "%s", value);
}

/* Session-wide keys, negotiated on the leading connection only (RFC 7143 section 13). */
static bool
login_key_leading_only(const char *key)
{
    static const char *const lo[] = {
        "MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength", "FirstBurstLength",
        "DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T", "DataPDUInOrder",
        "DataSequenceInOrder", "ErrorRecoveryLevel",
    };

    for (size_t i = 0; i < IOC_ARRAY_SIZE(lo); i++) {
        if (strcmp(key, lo[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int
login_key(const char *key, const char *value, void *arg)
{
    struct login_keys *k = arg;
    struct iscsi_conn *c = k->c;
    int rc;

    if (strcmp(key, "InitiatorName") == 0) {
        copy_key(c->params.initiator_name, sizeof(c->params.initiator_name), value, k);
        k->has_initiator = true;
    } else if (strcmp(key, "TargetName") == 0) {
        copy_key(k->target_name, sizeof(k->target_name), value, k);
    } else if (strcmp(key, "SessionType") == 0) {
        copy_key(k->session_type, sizeof(k->session_type), value, k);
    } else if (strcmp(key, "AuthMethod") == 0) {
        copy_key(k->auth_method, sizeof(k->auth_method), value, k);
    } else if (strcmp(key, "CHAP_A") == 0) {
        copy_key(k->chap_a, sizeof(k->chap_a), value, k);
    } else if (strcmp(key, "CHAP_N") == 0) {
        copy_key(k->chap_n, sizeof(k->chap_n), value, k);
    } else if (strcmp(key, "CHAP_R") == 0) {
        copy_key(k->chap_r, sizeof(k->chap_r), value, k);
    } else if (strcmp(key, "CHAP_I") == 0) {
        copy_key(k->chap_i, sizeof(k->chap_i), value, k);
    } else if (strcmp(key, "CHAP_C") == 0) {
        copy_key(k->chap_c, sizeof(k->chap_c), value, k);
    } else if (strcmp(key, "InitiatorAlias") == 0 || strcmp(key, "TargetAlias") == 0) {
        /* informational */
    } else if (k->joining && login_key_leading_only(key)) {
        iscsi_text_add(k->resp, key, "Irrelevant"); /* the session's value stands */
    } else {
        rc = iscsi_text_negotiate(&c->params, key, value, k->resp);
        if (rc == 0) {
            iscsi_text_add(k->resp, key, "NotUnderstood");
        }
    }
    return 0;
}

/* ------------------------------------------------------------ responses */

static void
login_respond(struct iscsi_conn *c, const struct iscsi_login *req, uint8_t flags,
              uint16_t status, struct iscsi_text *text)
{
    struct iscsi_ctl *ctl = iscsi_ctl_alloc(c, text->buf, status == 0 ? text->len : 0);
    struct iscsi_login *rsp;

    if (ctl == NULL) {
        return;
    }
    rsp = &ctl->hdr.login;
    rsp->opcode = ISCSI_OP_LOGIN_RSP;
    rsp->flags = status == 0 ? flags : 0;
    rsp->version_max = 0;
    rsp->version_min = 0;
    memcpy(rsp->isid, req->isid, 6);
    rsp->tsih = htobe16(c->tsih);
    rsp->itt = req->itt;
    rsp->sn24 = htobe32(c->statsn++);
    rsp->sn28 = htobe32(iscsi_conn_exp_cmdsn(c));
    rsp->max_cmdsn = htobe32(iscsi_conn_max_cmdsn(c));
    rsp->status_class = (uint8_t)(status >> 8);
    rsp->status_detail = (uint8_t)status;
    iscsi_ctl_queue(c, ctl);
    if (status != 0) {
        IOC_DEBUG(iscsi, "conn %s: login refused: status 0x%04x", c->peer, status);
        iscsi_conn_set_state(c, ISCSI_CONN_LOGOUT); /* close once the response is sent */
    }
}

/*
 * A login with a TSIH: the session must be live on this reactor (the socket
 * layer moved us here) and be the same I_T nexus: initiator, ISID, target.
 */
static uint16_t
login_join(struct iscsi_conn *c)
{
    struct iscsi_sess *s = iscsi_sess_find(c->reactor, c->tsih);

    if (s == NULL || s->discovery != c->params.discovery || s->tgt != c->tgt ||
        memcmp(s->isid, c->isid, 6) != 0 ||
        strcasecmp(s->initiator, c->params.initiator_name) != 0 ||
        iscsi_sess_live_conns(s) == 0) {
        IOC_NOTICE("iscsi", "conn %s: login of %s to session %u: no such session", c->peer,
                   c->params.initiator_name, c->tsih);
        return ISCSI_LOGIN_SESSION_NOT_FOUND;
    }
    if (iscsi_sess_live_conns(s) >= s->params.max_connections &&
        iscsi_sess_conn_by_cid(s, c->cid) == NULL) {
        return ISCSI_LOGIN_TOO_MANY_CONNS;
    }
    return iscsi_sess_attach(s, c) < 0 ? ISCSI_LOGIN_TOO_MANY_CONNS : 0;
}

/* First PDU: identity, target lookup, session numbers. */
static uint16_t
login_first(struct iscsi_conn *c, const struct iscsi_login *req, struct login_keys *k)
{
    c->login_first = false;
    memcpy(c->isid, req->isid, 6);
    c->cid = be16toh(req->cid);
    c->statsn = be32toh(req->sn28);
    c->exp_cmdsn = be32toh(req->sn24);
    if (req->version_min > 0) {
        return ISCSI_LOGIN_UNSUPPORTED_VERSION;
    }
    if (!k->has_initiator) {
        return ISCSI_LOGIN_MISSING_PARAM;
    }
    c->params.discovery = strcmp(k->session_type, "Discovery") == 0;
    if (k->session_type[0] != '\0' && !c->params.discovery &&
        strcmp(k->session_type, "Normal") != 0) {
        return ISCSI_LOGIN_INITIATOR_ERROR;
    }
    scsi_port_name(c->port, sizeof(c->port), c->params.initiator_name, c->isid);
    if (!c->params.discovery) {
        if (k->target_name[0] == '\0') {
            return ISCSI_LOGIN_MISSING_PARAM;
        }
        c->tgt = iscsi_tgt_lookup(k->target_name, c->params.initiator_name);
        if (c->tgt == NULL) {
            IOC_NOTICE("iscsi", "conn %s: login of %s to unknown or forbidden target %s",
                       c->peer, c->params.initiator_name, k->target_name);
            return ISCSI_LOGIN_NOT_FOUND;
        }
        snprintf(c->params.target_name, sizeof(c->params.target_name), "%s", c->tgt->iqn);
    }
    c->tsih = be16toh(req->tsih);
    return c->tsih != 0 ? login_join(c) : 0;
}

/* A joining connection takes the session-wide keys; only its own stay. */
static void
login_take_session_params(struct iscsi_conn *c)
{
    struct iscsi_params own = c->params;

    c->params = c->sess->params;
    c->params.header_digest = own.header_digest;
    c->params.data_digest = own.data_digest;
    c->params.max_recv_dsl = own.max_recv_dsl;
}

/* The final login response is due: create or join the session. Returns a login status. */
static uint16_t
login_complete(struct iscsi_conn *c)
{
    bool joining = c->sess != NULL;
    uint16_t status;

    if (c->params.first_burst > c->params.max_burst) {
        c->params.first_burst = c->params.max_burst;
    }
    if (joining) {
        status = iscsi_sess_join(c->sess, c);
        if (status != 0) {
            return status;
        }
        login_take_session_params(c);
    } else if (iscsi_sess_create(c) < 0) {
        return ISCSI_LOGIN_OUT_OF_RESOURCES;
    }
    for (unsigned i = 0; c->tgt != NULL && i < c->tgt->nluns; i++) {
        /* stale on purpose: the first command looks for unit attentions (power on) */
        c->ua_seen[i] = atomic_load(&c->tgt->luns[i]->ua_gen) - 1;
    }
    IOC_INFO("iscsi", "conn %s: %s %s session of %s%s%s (tsih %u, cid %u, digests %s/%s)",
             c->peer, joining ? "joined" : "new", c->params.discovery ? "discovery" : "normal",
             c->params.initiator_name, c->tgt ? " to " : "", c->tgt ? c->tgt->iqn : "", c->tsih,
             c->cid, c->params.header_digest ? "CRC32C" : "None",
             c->params.data_digest ? "CRC32C" : "None");
    return 0;
}

/* Can the login move from stage cur to stage next? */
static uint16_t
login_transit_check(struct iscsi_conn *c, int cur, int next, bool *grant)
{
    bool chap = c->tgt != NULL && c->tgt->chap.required;

    *grant = true;
    if (next <= cur || next == 2) {
        return ISCSI_LOGIN_INITIATOR_ERROR;
    }
    if (cur == ISCSI_STAGE_SECURITY && !c->auth_done) {
        if (c->chap_state == CHAP_WAIT_A || c->chap_state == CHAP_WAIT_R) {
            *grant = false;  /* exchange still going on */
            return 0;
        }
        return ISCSI_LOGIN_AUTH_FAILED;
    }
    if (chap && !c->auth_done) {
        return ISCSI_LOGIN_AUTH_FAILED;
    }
    return 0;
}

static void
login_process(struct iscsi_conn *c, const struct iscsi_login *req)
{
    struct login_keys *k = calloc(1, sizeof(*k));
    int cur = ISCSI_LOGIN_CSG(req->flags), next = ISCSI_LOGIN_NSG(req->flags);
    bool transit = (req->flags & ISCSI_LOGIN_TRANSIT) != 0, grant = false;
    struct iscsi_text *resp = &c->login_out;
    uint16_t status = 0;
    uint8_t flags;

    if (k == NULL) {
        iscsi_conn_fail(c, "out of memory");
        return;
    }
    k->c = c;
    k->resp = resp;
    k->joining = c->sess != NULL || req->tsih != 0;
    iscsi_text_reset(resp);
    if (iscsi_text_foreach(c->login_in.buf, c->login_in.len, login_key, k) < 0) {
        status = ISCSI_LOGIN_INITIATOR_ERROR;
    }
    status = status ? status : k->status;
    if (status == 0 && c->login_first) {
        status = login_first(c, req, k);
        c->login_stage = cur;
    }
    if (status == 0 && (cur != c->login_stage || cur == 2 || cur == ISCSI_STAGE_FULL)) {
        status = ISCSI_LOGIN_INITIATOR_ERROR;
    }
    if (status == 0 && cur == ISCSI_STAGE_SECURITY) {
        login_security(k);
        status = k->status;
    }
    if (status == 0 && transit) {
        status = login_transit_check(c, cur, next, &grant);
    }
    if (status == 0 && !c->params.discovery && !c->tpgt_sent) {
        iscsi_text_add(resp, "TargetPortalGroupTag", "1");
        c->tpgt_sent = true;
    }
    if (status == 0 && !c->mrdsl_sent &&
        (cur == ISCSI_STAGE_OPERATIONAL || (grant && next == ISCSI_STAGE_OPERATIONAL))) {
        iscsi_text_add(resp, "MaxRecvDataSegmentLength", "%u", g_iscsi_opts.max_recv_dsl);
        c->mrdsl_sent = true;
    }
    if (status == 0 && resp->nomem) {
        status = ISCSI_LOGIN_OUT_OF_RESOURCES;
    }
    if (status == 0 && grant && next == ISCSI_STAGE_FULL) {
        status = login_complete(c);
    }
    flags = (uint8_t)(cur << 2);
    if (status == 0 && grant) {
        flags |= ISCSI_LOGIN_TRANSIT | (uint8_t)next;
        c->login_stage = next;
    }
    login_respond(c, req, flags, status, resp);
    if (status == 0 && grant && next == ISCSI_STAGE_FULL) {
        /* digests apply from the first PDU after the final login response */
        c->hdig = c->params.header_digest;
        c->ddig = c->params.data_digest;
        iscsi_conn_set_state(c, ISCSI_CONN_FULL);
    }
    explicit_bzero(k, sizeof(*k));
    free(k);
}

/*
 * The first PDU of a login that names a session living on another reactor:
 * leave it unhandled and ask the transport to move the connection there.
 */
static bool
login_must_migrate(struct iscsi_conn *c, const struct iscsi_login *req)
{
    struct ioc_reactor *r;

    if (!c->login_first || c->login_in.len > 0 || req->tsih == 0 || c->migrated) {
        return false;
    }
    r = iscsi_sess_reactor(be16toh(req->tsih));
    if (r == NULL || r == c->reactor) {
        return false;
    }
    IOC_DEBUG(iscsi, "conn %s: login to session %u: moving to reactor %u", c->peer,
              be16toh(req->tsih), ioc_reactor_id(r));
    c->migrate_to = r;
    iscsi_conn_set_state(c, ISCSI_CONN_MIGRATE);
    iscsi_conn_kick(c);
    return true;
}

bool
iscsi_login_pdu(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
    const struct iscsi_login *req = (const struct iscsi_login *)bhs;

    if (login_must_migrate(c, req)) {
        return false;
    }
    if (c->login_in.len + dlen > ISCSI_TEXT_MAX) {
        iscsi_conn_fail(c, "login text too long");
        return true;
    }
    if (dlen > 0) {
        size_t need = c->login_in.len + dlen;

        if (need > c->login_in.cap) {
            char *p = realloc(c->login_in.buf, need);

            if (p == NULL) {
                iscsi_conn_fail(c, "out of memory");
                return true;
            }
            c->login_in.buf = p;
            c->login_in.cap = need;
        }
        memcpy(c->login_in.buf + c->login_in.len, data, dlen);
        c->login_in.len = need;
    }
    c->login_itt = req->itt;
    if (req->flags & ISCSI_LOGIN_CONTINUE) {
        /* more text follows: acknowledge with an empty response */
        struct iscsi_text empty = {0};

        login_respond(c, req, (uint8_t)(ISCSI_LOGIN_CSG(req->flags) << 2), 0, &empty);
        return true;
    }
    login_process(c, req);
    iscsi_text_reset(&c->login_in);
    return true;
}

/* ------------------------------------------------------------- text PDU */

struct text_keys {
    struct iscsi_conn *c;
    struct iscsi_text *resp;
};

static int
text_key(const char *key, const char *value, void *arg)
{
    struct text_keys *k = arg;
    struct iscsi_conn *c = k->c;

    if (strcmp(key, "SendTargets") == 0) {
        if (!c->params.discovery && strcmp(value, "All") == 0) {
            iscsi_text_add(k->resp, key, "Reject");
            return 0;
        }
        iscsi_tgt_send_targets(value[0] == '\0' && c->tgt ? c->tgt->iqn : value,
                               c->params.initiator_name, c->portal, k->resp);
        return 0;
    }
    if (iscsi_text_negotiate(&c->params, key, value, k->resp) == 0) {
        iscsi_text_add(k->resp, key, "NotUnderstood");
    }
    return 0;
}

void
iscsi_text_pdu(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
    const struct iscsi_sn_pdu *p = (const struct iscsi_sn_pdu *)bhs;
    struct iscsi_text resp = {0};
    struct text_keys k = {.c = c, .resp = &resp};
    struct iscsi_ctl *ctl;
    size_t len;

    if (!iscsi_conn_cmdsn_accept(c, (p->opcode & ISCSI_FLAG_IMMEDIATE) != 0, be32toh(p->sn24))) {
        return;
    }
    if (iscsi_text_foreach((const char *)data, dlen, text_key, &k) < 0) {
        iscsi_text_free(&resp);
        iscsi_conn_fail(c, "malformed text request");
        return;
    }
    len = IOC_MIN(resp.len, (size_t)c->params.max_recv_dsl);
    ctl = iscsi_ctl_alloc(c, resp.buf, resp.nomem ? 0 : len);
    iscsi_text_free(&resp);
    if (ctl == NULL) {
        return;
    }
    ctl->hdr.sn.opcode = ISCSI_OP_TEXT_RSP;
    ctl->hdr.sn.flags = ISCSI_FLAG_FINAL;
    memcpy(ctl->hdr.sn.lun, p->lun, 8);
    ctl->hdr.sn.itt = p->itt;
    ctl->hdr.sn.ttt = ISCSI_RSVD_TAG;
    iscsi_conn_sn_fill(c, &ctl->hdr.sn, true);
    iscsi_ctl_queue(c, ctl);
}
