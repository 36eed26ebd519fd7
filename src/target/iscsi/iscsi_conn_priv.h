/*
 * target/iscsi/iscsi_conn_priv.h - the connection engine's private structs,
 * shared by iscsi_conn.c (full-feature phase) and iscsi_login.c (login).
 */
#ifndef IOC_TARGET_ISCSI_ISCSI_CONN_PRIV_H
#define IOC_TARGET_ISCSI_ISCSI_CONN_PRIV_H

#include "ioc/common.h"

#include "target/iscsi/iscsi_internal.h"

enum iscsi_conn_state {
    ISCSI_CONN_LOGIN,    /* login PDUs only */
    ISCSI_CONN_FULL,     /* full-feature phase */
    ISCSI_CONN_LOGOUT,   /* logout response queued: close once it is sent */
    ISCSI_CONN_CLOSING,  /* no more input */
};

/* One queued piece of output: an iovec list, retired by done() once sent. */
struct iscsi_out {
    struct iscsi_out *next;
    struct iovec *iov;
    int iovcnt;
    size_t len;
    void (*done)(struct iscsi_out *o);
};

/* A header image with room for the header digest, and the data tail. */
struct iscsi_pdu_hdr {
    union {
        struct iscsi_bhs bhs;
        struct iscsi_data data;
        struct iscsi_scsi_rsp rsp;
        struct iscsi_r2t r2t;
        struct iscsi_sn_pdu sn;
        struct iscsi_login login;
    };
    uint8_t hdig[4];
    uint8_t tail[8];     /* padding zeros, then the data digest */
};

/* A control PDU (login/text/nop/tmf/logout response, reject): malloc'ed. */
struct iscsi_ctl {
    struct iscsi_out out;
    struct iscsi_pdu_hdr hdr;
    struct iovec iov[3];
    uint8_t *data;
};

struct iscsi_task {
    struct scsi_task scsi;
    struct iscsi_conn *conn;
    struct iscsi_task *next_free;
    struct iscsi_task *next_wait;  /* in conn->wait_data */
    uint32_t idx;
    uint32_t itt;
    uint32_t cmdsn;
    uint8_t lun[8];
    uint32_t data_got;     /* Data-Out bytes received (immediate included) */
    uint32_t unsol_limit;  /* unsolicited data the initiator may send */
    bool unsol_done;       /* the unsolicited sequence ended (F bit) */
    uint32_t r2t_off;      /* next offset to solicit */
    uint32_t r2t_end;      /* end of the outstanding R2T, 0 if none */
    uint32_t r2tsn;
    uint32_t datasn;       /* next expected Data-Out DataSN in the sequence */
    bool r2t_queued;       /* r2t_ctl is in the output queue */
    bool r2t_wanted;       /* an R2T is due once r2t_ctl is back */
    bool waiting;          /* on conn->wait_data */
    bool executing;
    bool aborted;          /* TMF: no response */
    bool release_pending;  /* freed once r2t_ctl is back from the output queue */
    uint8_t cdb[16];
    uint32_t charge;       /* bytes counted in conn->inflight_bytes */
    struct iscsi_ctl r2t_ctl;
    /* response */
    struct iscsi_out out;
    struct iscsi_pdu_hdr *hdrs;
    unsigned hdrs_cap;
    struct iovec *iov;
    unsigned iov_cap;
    uint8_t sense_buf[2 + SCSI_SENSE_MAX + 8];
};

struct iscsi_conn {
    struct ioc_reactor *reactor;
    const struct iscsi_conn_transport *t;
    void *tctx;
    char peer[64];
    char portal[80];
    enum iscsi_conn_state state;
    bool aborted;
    struct ioc_deferred defer;

    /* input */
    uint8_t *rbuf;
    size_t rlen;
    size_t roff;           /* parsed up to here */

    /* login */
    struct iscsi_params params;
    bool hdig;             /* digests in force: from the first PDU after login */
    bool ddig;
    int login_stage;       /* current stage (CSG) */
    bool auth_done;
    bool login_first;      /* the next login PDU is the first */
    bool tpgt_sent;
    bool mrdsl_sent;
    uint8_t chap_state;
    uint8_t chap_alg;      /* 5 = MD5, 7 = SHA-256 */
    uint8_t chap_id;
    uint8_t chap_challenge[32];
    uint32_t login_itt;
    struct iscsi_text login_in;   /* text gathered across C-bit PDUs */
    struct iscsi_text login_out;

    /* session (one connection per session) */
    uint8_t isid[6];
    uint16_t tsih;
    uint16_t cid;
    char port[ISCSI_NAME_MAX + 32];
    struct iscsi_tgt *tgt;
    bool tgt_counted;
    uint32_t exp_cmdsn;
    uint32_t statsn;
    unsigned ua_seen[ISCSI_MAX_LUNS];

    /* tasks */
    struct iscsi_task *tasks;
    struct iscsi_task *free_tasks;
    struct iscsi_task *wait_data;   /* tasks receiving Data-Out */
    unsigned ntasks_used;
    unsigned io_inflight;           /* tasks executing */
    uint64_t inflight_bytes;        /* EDTL of the tasks taken, capped by ISCSI_INFLIGHT_BYTES */

    /* output */
    struct iscsi_out *out_head;
    struct iscsi_out **out_tail;
    size_t out_off;
    unsigned ctl_queued;
};

/* iscsi_conn.c, used by iscsi_login.c */
void iscsi_conn_fail(struct iscsi_conn *c, const char *why);
void iscsi_conn_set_state(struct iscsi_conn *c, enum iscsi_conn_state s);
struct iscsi_ctl *iscsi_ctl_alloc(struct iscsi_conn *c, const void *data, size_t len);
void iscsi_ctl_queue(struct iscsi_conn *c, struct iscsi_ctl *ctl);
uint32_t iscsi_conn_max_cmdsn(const struct iscsi_conn *c);
/** CmdSN check of a request; false: drop it. Advances ExpCmdSN if not immediate. */
bool iscsi_conn_cmdsn_accept(struct iscsi_conn *c, bool immediate, uint32_t cmdsn);
/** Fill StatSN (advancing it if asked), ExpCmdSN, MaxCmdSN of a response. */
void iscsi_conn_sn_fill(struct iscsi_conn *c, struct iscsi_sn_pdu *p, bool advance_statsn);

/* iscsi_login.c */
/** Handle one Login Request PDU (BHS + data). */
void iscsi_login_pdu(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data,
                     uint32_t dlen);
/** Handle a Text Request in full-feature phase (SendTargets, renegotiation). */
void iscsi_text_pdu(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data,
                    uint32_t dlen);

#endif
