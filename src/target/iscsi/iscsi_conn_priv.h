/*
 * target/iscsi/iscsi_conn_priv.h - the connection engine's private structs,
 * shared by iscsi_conn.c (full-feature phase) and iscsi_login.c (login).
 */
#ifndef IOC_TARGET_ISCSI_ISCSI_CONN_PRIV_H
#define IOC_TARGET_ISCSI_ISCSI_CONN_PRIV_H

#include "ioc/common.h"

#include "target/iscsi/iscsi_internal.h"
#include "target/target_outq.h"

enum iscsi_conn_state {
    ISCSI_CONN_LOGIN,    /* login PDUs only */
    ISCSI_CONN_FULL,     /* full-feature phase */
    ISCSI_CONN_LOGOUT,   /* logout response queued: close once it is sent */
    ISCSI_CONN_CLOSING,  /* no more input */
    ISCSI_CONN_MIGRATE,  /* first login PDU names a session of another reactor: the
                          * transport moves the socket there (iscsi_sess.c) */
};

struct iscsi_conn;

/*
 * A session (RFC 7143 section 4.3): one or more connections sharing the
 * command window, the I_T nexus and the session-wide keys. Every connection
 * of a session lives on the session's reactor (a connection whose login
 * names the session on another reactor is moved there before its login is
 * handled), so nothing here needs a lock; only the registry that maps TSIH
 * to session is shared (iscsi_sess.c).
 */
#define ISCSI_MAX_CONNS 8u   /* MaxConnections we offer */

struct iscsi_sess {
    struct ioc_reactor *reactor;  /* owner: fields below are touched only there */
    uint16_t tsih;
    uint8_t isid[6];
    bool discovery;
    bool ending;                  /* logged out or failed: no new connections */
    char initiator[ISCSI_NAME_MAX + 1];
    char port[ISCSI_NAME_MAX + 32];
    struct iscsi_tgt *tgt;        /* reference; NULL for discovery */
    struct iscsi_params params;   /* session-wide keys, from the leading login */
    uint32_t exp_cmdsn;           /* the session's command window */
    unsigned nconns;              /* attached: logging in, full feature or closing */
    struct iscsi_conn *conns[2 * ISCSI_MAX_CONNS];
    struct iscsi_sess *next;      /* in the registry */
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
    struct ioc_target_out out;
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
    struct ioc_target_out out;
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
    bool recv_lent;        /* rbuf + rlen is out for a recv: do not move the tail */

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

    /* session: sess is set once the login names it (joining) or completes (leading) */
    struct iscsi_sess *sess;
    struct ioc_reactor *migrate_to; /* ISCSI_CONN_MIGRATE: where the socket goes */
    bool migrated;         /* arrived by migration: never moves twice */
    bool leaving;          /* closed on purpose (logout, reinstatement): the session lives */
    uint8_t isid[6];
    uint16_t tsih;
    uint16_t cid;
    char port[ISCSI_NAME_MAX + 32];
    struct iscsi_tgt *tgt;
    uint32_t exp_cmdsn;    /* during login only; then the session's */
    uint32_t statsn;       /* per connection */
    unsigned ua_seen[ISCSI_MAX_LUNS];

    /* tasks */
    struct iscsi_task *tasks;
    struct iscsi_task *free_tasks;
    struct iscsi_task *wait_data;   /* tasks receiving Data-Out */
    unsigned ntasks_used;
    unsigned io_inflight;           /* tasks executing */
    uint64_t inflight_bytes;        /* EDTL of the tasks taken, capped by ISCSI_INFLIGHT_BYTES */

    /* output: responses and control PDUs, in wire order */
    struct ioc_target_outq outq;
    unsigned ctl_queued;
};

/* iscsi_conn.c, used by iscsi_login.c and iscsi_sess.c */
void iscsi_conn_fail(struct iscsi_conn *c, const char *why);
/** Close c without failing its session (logout from another connection, reinstatement). */
void iscsi_conn_drop(struct iscsi_conn *c, const char *why);
/** Run c's deferred work (parse stalled input, flush output) this iteration. */
void iscsi_conn_kick(struct iscsi_conn *c);
/** The connection is in full feature phase and not closing. */
bool iscsi_conn_live(const struct iscsi_conn *c);
/** ExpCmdSN as this connection reports it (the session's once it has one). */
uint32_t iscsi_conn_exp_cmdsn(const struct iscsi_conn *c);
void iscsi_conn_set_state(struct iscsi_conn *c, enum iscsi_conn_state s);
struct iscsi_ctl *iscsi_ctl_alloc(struct iscsi_conn *c, const void *data, size_t len);
void iscsi_ctl_queue(struct iscsi_conn *c, struct iscsi_ctl *ctl);
uint32_t iscsi_conn_max_cmdsn(const struct iscsi_conn *c);
/** CmdSN check of a request; false: drop it. Advances ExpCmdSN if not immediate. */
bool iscsi_conn_cmdsn_accept(struct iscsi_conn *c, bool immediate, uint32_t cmdsn);
/** Fill StatSN (advancing it if asked), ExpCmdSN, MaxCmdSN of a response. */
void iscsi_conn_sn_fill(struct iscsi_conn *c, struct iscsi_sn_pdu *p, bool advance_statsn);

/* iscsi_sess.c */
/**
 * The reactor of the live session with this TSIH, NULL if none. Any thread:
 * the answer may be stale by the time it is used; the login on that reactor
 * checks again with iscsi_sess_find().
 */
struct ioc_reactor *iscsi_sess_reactor(uint16_t tsih);
/** The live session with this TSIH on the calling connection's reactor, or NULL. */
struct iscsi_sess *iscsi_sess_find(struct ioc_reactor *self, uint16_t tsih);
/**
 * A leading login completed: create its session (new TSIH), register it,
 * attach c and log the I_T nexus in to every LUN (each queues the unit
 * attention 29h/00h POWER ON, RESET, OR BUS DEVICE RESET OCCURRED for it).
 * Older sessions of the same initiator, ISID and target are closed (session
 * reinstatement).
 * Returns 0 or -ENOMEM.
 */
int iscsi_sess_create(struct iscsi_conn *c);
/** Attach a connection that logs in to an existing session (holds it alive). */
int iscsi_sess_attach(struct iscsi_sess *s, struct iscsi_conn *c);
/**
 * The joining login of c completed: a live connection with the same CID is
 * closed (connection reinstatement); returns ISCSI_LOGIN_TOO_MANY_CONNS if
 * MaxConnections live ones are there already, else 0.
 */
uint16_t iscsi_sess_join(struct iscsi_sess *s, struct iscsi_conn *c);
/** c goes away: detach it; the last one ends the session. */
void iscsi_sess_detach(struct iscsi_conn *c);
/** ERL 0: a connection failed, the session fails: close every connection. */
void iscsi_sess_fail(struct iscsi_sess *s, const char *why);
/** Logout "close the session": close the other connections. */
void iscsi_sess_logout(struct iscsi_sess *s, struct iscsi_conn *by);
/** The live connection with this CID, or NULL. */
struct iscsi_conn *iscsi_sess_conn_by_cid(struct iscsi_sess *s, uint16_t cid);
/** Live connections. */
unsigned iscsi_sess_live_conns(const struct iscsi_sess *s);
/** MaxCmdSN: ExpCmdSN plus the free command slots of the session, minus one. */
uint32_t iscsi_sess_max_cmdsn(const struct iscsi_sess *s);
/** ExpCmdSN advanced: wake connections whose next command waits for it. */
void iscsi_sess_cmdsn_advanced(struct iscsi_sess *s, struct iscsi_conn *by);
/** Describe the session for iscsi_target_list: a new JSON object. */
json_t *iscsi_sess_describe(const struct iscsi_sess *s);

/* iscsi_login.c */
/** Handle one Login Request PDU (BHS + data). False: not consumed (migrate first). */
bool iscsi_login_pdu(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data,
                     uint32_t dlen);
/** Handle a Text Request in full-feature phase (SendTargets, renegotiation). */
void iscsi_text_pdu(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data,
                    uint32_t dlen);

#endif
