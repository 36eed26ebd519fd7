/*
 * target/iscsi/iscsi_internal.h - private interfaces of the iSCSI target.
 *
 * Blocks are headed by the file that defines them. The layering is:
 * target_stream.c driven by iscsi_target.c (sockets) -> iscsi_conn.c (PDUs,
 * login, tasks; output through target_outq.h) ->
 * scsi_spc.c / scsi_sbc.c (SCSI commands over a bdev). The SCSI files know
 * nothing about iSCSI: they see a struct scsi_task.
 */
#ifndef IOC_TARGET_ISCSI_ISCSI_INTERNAL_H
#define IOC_TARGET_ISCSI_ISCSI_INTERNAL_H

#include "ioc/common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "bdev/bdev.h"
#include "core/reactor.h"
#include "target/iscsi/iscsi.h"
#include "target/iscsi/iscsi_proto.h"

/* ---- limits (documented in docs/iscsi.md) ---- */
#define ISCSI_NAME_MAX        223u              /* RFC 7143: iSCSI names up to 223 bytes */
#define ISCSI_MAX_LUNS        64u
#define ISCSI_MAX_ALLOWED     64u
#define ISCSI_MAX_TASKS       128u              /* commands in flight per connection */
#define ISCSI_MAX_XFER        (8u * 1024 * 1024) /* largest SCSI transfer */
#define ISCSI_TEXT_MAX        (64u * 1024)      /* login/text data across PDUs */
#define ISCSI_RDSL_MAX        (256u * 1024)     /* our MaxRecvDataSegmentLength */
#define ISCSI_RBUF_SIZE       (ISCSI_RDSL_MAX + 2048u)
#define ISCSI_KEEP_BUF        (1024u * 1024)    /* task buffers above this are freed after use */
#define ISCSI_INFLIGHT_BYTES  (64u * 1024 * 1024) /* command data in flight per connection */

/* ---- iscsi_pdu.c: CRC32C ---- */

/** CRC32C (Castagnoli) as iSCSI digests use it: crc32c(0, ...) starts a new one. */
uint32_t iscsi_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- iscsi_pdu.c: header parsing, no state ---- */

struct iscsi_pdu_info {
    uint8_t opcode;
    bool immediate;
    uint32_t ahs_len;     /* bytes */
    uint32_t data_len;    /* DataSegmentLength, unpadded */
    size_t total;         /* whole PDU on the wire, digests and padding included */
    size_t data_off;      /* where the data segment starts */
};

/**
 * Parse the BHS at buf (ISCSI_BHS_SIZE bytes). hdig/ddig: digests in use;
 * max_data: largest data segment accepted. Returns 0, -EPROTO (unknown
 * opcode or reserved bits), -EMSGSIZE (data segment too large).
 */
int iscsi_pdu_parse(const uint8_t *buf, bool hdig, bool ddig, uint32_t max_data,
                    struct iscsi_pdu_info *info);

/** Check digests of a complete PDU. Returns 0 or -EBADMSG (header) / -EILSEQ (data). */
int iscsi_pdu_check_digests(const uint8_t *pdu, const struct iscsi_pdu_info *info, bool hdig,
                            bool ddig);

/* ---- iscsi_text.c: key=value pairs ---- */

#define ISCSI_KEY_MAX   63u
#define ISCSI_VALUE_MAX 8192u

/* Negotiated parameters of a connection/session (RFC 7143 section 13). */
struct iscsi_params {
    bool header_digest;
    bool data_digest;
    uint32_t max_connections;
    bool initial_r2t;
    bool immediate_data;
    uint32_t max_recv_dsl;      /* what the initiator receives: our Data-In size */
    uint32_t max_burst;
    uint32_t first_burst;
    uint32_t time2wait;
    uint32_t time2retain;
    uint32_t max_outstanding_r2t;
    bool data_pdu_in_order;
    bool data_seq_in_order;
    uint32_t error_recovery_level;
    bool discovery;
    char initiator_name[ISCSI_NAME_MAX + 1];
    char target_name[ISCSI_NAME_MAX + 1];
};

/* The target's side of negotiation (iscsi_options_set). */
struct iscsi_opts {
    uint32_t max_recv_dsl;      /* our MaxRecvDataSegmentLength */
    uint32_t max_burst;
    uint32_t first_burst;
    bool initial_r2t;
    bool immediate_data;
    uint32_t max_outstanding_r2t;
    uint32_t max_connections;
    bool allow_digests;
};
extern struct iscsi_opts g_iscsi_opts;

/** RFC 7143 defaults for a new connection. */
void iscsi_params_init(struct iscsi_params *p);

/* A growing text buffer for responses ("k=v\0" ...). */
struct iscsi_text {
    char *buf;
    size_t len;
    size_t cap;
    bool nomem;
};
void iscsi_text_add(struct iscsi_text *t, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void iscsi_text_reset(struct iscsi_text *t);
void iscsi_text_free(struct iscsi_text *t);

/**
 * Walk "key=value\0" pairs in data[0..len). For each, calls fn(key, value,
 * arg); a non-zero return stops the walk and is returned. Returns -EINVAL
 * for a pair without '=', an empty/overlong key or an overlong value.
 */
int iscsi_text_foreach(const char *data, size_t len,
                       int (*fn)(const char *key, const char *value, void *arg), void *arg);

/**
 * Negotiate one operational key the initiator offered, writing our answer to
 * resp. Returns 1 if the key was handled, 0 if it is not an operational key,
 * -EINVAL for a malformed value (answer "Reject" was added).
 * `leading` says whether this is the leading connection (session keys).
 */
int iscsi_text_negotiate(struct iscsi_params *p, const char *key, const char *value,
                         struct iscsi_text *resp);

/* ---- iscsi_tgt.c: the target registry ---- */

/* Persistent reservation state of a LUN (scsi_pr.c), under lun->lock. */
#define SCSI_PR_MAX_REGS 64u
struct scsi_pr_reg {
    char port[ISCSI_NAME_MAX + 32];  /* initiator port: name,i,0xISID */
    uint64_t key;
};
struct scsi_pr {
    uint32_t generation;
    unsigned nregs;
    struct scsi_pr_reg regs[SCSI_PR_MAX_REGS];
    int holder;          /* index in regs of the reservation holder, -1 none */
    char spc2_holder[ISCSI_NAME_MAX + 32]; /* RESERVE(6) holder port, "" none */
    uint8_t type;        /* reservation type when held */
    bool all_regs;       /* type is an "all registrants" type */
};

/* UA conditions queued per I_T nexus, under lun->lock. */
#define SCSI_UA_MAX 64u
struct scsi_ua {
    char port[ISCSI_NAME_MAX + 32];
    uint8_t asc;
    uint8_t ascq;
};

struct iscsi_lun {
    uint64_t id;
    struct ioc_bdev *bdev;
    pthread_mutex_t lock;        /* PR state, UA list, COMPARE AND WRITE: cross-reactor, rare */
    atomic_uint ua_gen;          /* bumped whenever a UA is queued: the hot path checks it */
    struct scsi_pr pr;
    unsigned nua;
    struct scsi_ua ua[SCSI_UA_MAX];
    unsigned nnexus;             /* I_T nexuses logged in to this LUN's target */
    char nexus[SCSI_UA_MAX][ISCSI_NAME_MAX + 32];
    unsigned nexus_refs[SCSI_UA_MAX]; /* sessions of each (2 while one reinstates another) */
    atomic_bool caw_busy;        /* a COMPARE AND WRITE holds [caw_lba, +caw_n) */
    _Atomic uint64_t caw_lba;
    atomic_uint caw_n;
};

struct iscsi_chap {
    bool required;
    bool mutual;
    char user[256];
    char secret[256];
    char mutual_user[256];
    char mutual_secret[256];
};

struct iscsi_tgt {
    char iqn[ISCSI_NAME_MAX + 1];
    unsigned nluns;
    struct iscsi_lun *luns[ISCSI_MAX_LUNS];
    unsigned nallowed;           /* 0 = every initiator */
    char *allowed[ISCSI_MAX_ALLOWED];
    struct iscsi_chap chap;
    atomic_int refs;
    atomic_bool removed;
    atomic_uint sessions;
    struct iscsi_tgt *next;
};

/** Whether initiator may see and use t. */
bool iscsi_tgt_allows(const struct iscsi_tgt *t, const char *initiator);

/** Find a target by IQN (new reference) if initiator is allowed; NULL otherwise. */
struct iscsi_tgt *iscsi_tgt_lookup(const char *iqn, const char *initiator);

/** Drop a reference; NULLs the pointer. */
void iscsi_tgt_put(struct iscsi_tgt **t);

/** The LUN with this number, or NULL. */
struct iscsi_lun *iscsi_tgt_lun(struct iscsi_tgt *t, uint64_t lun);

/** SendTargets: add TargetName/TargetAddress pairs the initiator may see. */
void iscsi_tgt_send_targets(const char *which, const char *initiator, const char *portal,
                            struct iscsi_text *resp);

/* Set by the socket layer: close the sessions of a removed target. */
extern void (*g_iscsi_tgt_removed_hook)(struct iscsi_tgt *t);

/* ---- scsi_spc.c / scsi_sbc.c: SCSI over a bdev ---- */

#define SCSI_SENSE_MAX 32u

/* SCSI status codes. */
#define SCSI_GOOD                 0x00
#define SCSI_CHECK_CONDITION      0x02
#define SCSI_CONDITION_MET        0x04
#define SCSI_BUSY                 0x08
#define SCSI_RESERVATION_CONFLICT 0x18
#define SCSI_TASK_SET_FULL        0x28
#define SCSI_TASK_ABORTED         0x40

/* Sense keys. */
#define SK_NO_SENSE        0x0
#define SK_NOT_READY       0x2
#define SK_MEDIUM_ERROR    0x3
#define SK_HARDWARE_ERROR  0x4
#define SK_ILLEGAL_REQUEST 0x5
#define SK_UNIT_ATTENTION  0x6
#define SK_DATA_PROTECT    0x7
#define SK_ABORTED_COMMAND 0xb
#define SK_MISCOMPARE      0xe

/* ASC/ASCQ pairs used here, as (asc << 8 | ascq). */
#define ASC_INVALID_OPCODE      0x2000
#define ASC_LBA_OUT_OF_RANGE    0x2100
#define ASC_INVALID_FIELD_CDB   0x2400
#define ASC_LUN_NOT_SUPPORTED   0x2500
#define ASC_INVALID_FIELD_PARAM 0x2600
#define ASC_PARAM_LIST_LENGTH   0x1a00
#define ASC_WRITE_ERROR         0x0c00
#define ASC_READ_ERROR          0x1100
#define ASC_MISCOMPARE_VERIFY   0x1d00
#define ASC_POWER_ON_RESET      0x2900
#define ASC_BUS_RESET           0x2903
#define ASC_MODE_PARAMS_CHANGED 0x2a01
#define ASC_RESERVATIONS_PREEMPTED 0x2a03
#define ASC_RESERVATIONS_RELEASED  0x2a04
#define ASC_REGISTRATIONS_PREEMPTED 0x2a05
#define ASC_INTERNAL_TARGET_FAILURE 0x4400
#define ASC_INSUFFICIENT_REG_RESOURCES 0x5504
#define ASC_MEDIUM_REMOVAL_PREVENTED 0x5302
#define ASC_INVALID_RELEASE_PR  0x2604
#define ASC_DATA_PHASE_ERROR    0x4b00

struct scsi_task;
typedef void (*scsi_task_done_cb)(struct scsi_task *t);

enum scsi_dir {
    SCSI_DIR_NONE,
    SCSI_DIR_IN,     /* target to initiator */
    SCSI_DIR_OUT,    /* initiator to target */
};

struct scsi_task {
    /* Set by the transport before scsi_task_exec(). */
    const uint8_t *cdb;          /* 16 bytes */
    struct iscsi_tgt *tgt;
    struct iscsi_lun *lu;        /* NULL: no such LUN */
    uint64_t lun_id;
    const char *port;            /* initiator port name, for PR and UA */
    unsigned *ua_seen;           /* the nexus' last seen lun->ua_gen (NULL: no UA) */
    uint32_t edtl;               /* expected data transfer length */
    enum scsi_dir dir;           /* from the transport's R/W bits */
    uint8_t *buf;                /* data buffer: Data-Out received here, Data-In produced */
    size_t buf_cap;
    uint32_t out_len;            /* bytes of Data-Out in buf */
    struct ioc_reactor *reactor;
    scsi_task_done_cb done;

    /* Results. */
    uint32_t in_len;             /* bytes of Data-In in buf (may exceed edtl: overflow) */
    uint32_t xfer_len;           /* bytes the CDB asked to transfer, UINT32_MAX = unknown */
    uint8_t status;
    uint8_t sense_len;
    uint8_t sense[SCSI_SENSE_MAX];

    /* Execution state of the command (scsi_sbc.c). */
    struct ioc_bdev_io *io;
    struct iovec iov;
    uint64_t lba;
    uint32_t nblocks;
    uint32_t step;               /* progress of multi-IO commands (UNMAP, WRITE SAME) */
    uint32_t nsteps;
    uint8_t *aux;                /* second buffer: COMPARE AND WRITE, VERIFY */
    size_t aux_cap;
    struct ioc_extent extents[1];
};

/**
 * Execute the command in t->cdb. Calls t->done exactly once: inline for
 * commands answered from memory, later for commands that do bdev IO (on the
 * same reactor). Never fails otherwise: errors become CHECK CONDITION.
 */
void scsi_task_exec(struct scsi_task *t);

/** Make sure t->buf holds at least len bytes (aligned for the bdev). 0 or -ENOMEM. */
int scsi_task_buf_reserve(struct scsi_task *t, size_t len);

/** Free the buffers of a task that is going away. */
void scsi_task_buf_free(struct scsi_task *t);

/** CHECK CONDITION with fixed-format sense (asc_ascq as ASC_*). */
void scsi_task_sense(struct scsi_task *t, uint8_t key, uint16_t asc_ascq);

/** Set GOOD and finish (inline). */
void scsi_task_finish(struct scsi_task *t);

/* scsi_spc.c: commands answered from memory; scsi_sbc.c: commands doing IO. */
void scsi_spc_exec(struct scsi_task *t);
bool scsi_sbc_exec(struct scsi_task *t);   /* false: not an SBC opcode */
bool scsi_pr_exec(struct scsi_task *t);    /* false: not a PR opcode */
/** Reservation conflict check before a command runs; true if it may run. */
bool scsi_pr_check(struct scsi_task *t);
/**
 * LUN reset or target reset: drops the RESERVE(6) reservation (PRs persist)
 * and queues a unit attention (asc_ascq) for every nexus logged in.
 */
void scsi_lun_reset(struct iscsi_lun *lu, uint16_t asc_ascq);
/**
 * A session of the I_T nexus `port` logged in: it will hear about resets from
 * now on, and its first command other than INQUIRY, REPORT LUNS or REQUEST
 * SENSE gets the unit attention asc_ascq (0: none).
 */
void scsi_nexus_add(struct iscsi_lun *lu, const char *port, uint16_t asc_ascq);
/** A session of `port` ended; with the last one, the nexus goes and its RESERVE(6) too. */
void scsi_nexus_gone(struct iscsi_lun *lu, const char *port);
/** Queue a unit attention for one nexus. Caller holds lu->lock. */
void scsi_ua_queue_port_locked(struct iscsi_lun *lu, const char *port, uint16_t asc_ascq);
/** Initiator port name from InitiatorName and ISID. */
void scsi_port_name(char *out, size_t len, const char *initiator, const uint8_t isid[6]);

/* Helpers for CDB parsing. */
static inline uint16_t
scsi_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t
scsi_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t
scsi_be64(const uint8_t *p)
{
    return ((uint64_t)scsi_be32(p) << 32) | scsi_be32(p + 4);
}
static inline void
scsi_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void
scsi_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void
scsi_put64(uint8_t *p, uint64_t v)
{
    scsi_put32(p, (uint32_t)(v >> 32));
    scsi_put32(p + 4, (uint32_t)v);
}

/* ---- iscsi_conn.c: the protocol engine of one connection ---- */

struct iscsi_conn;

/*
 * How the engine reaches its transport: `process` runs from a deferred call
 * on the connection's reactor whenever output was queued, input can be taken
 * again, or the connection is finished (same contract as the NBD engine).
 */
struct iscsi_conn_transport {
    void (*process)(void *ctx);
};

/**
 * Create the engine for a new connection on reactor r. `peer` names the
 * client in logs, `portal` is our address as "ip:port,1" for SendTargets
 * (both copied). Returns 0 or -ENOMEM.
 */
int iscsi_conn_create(struct ioc_reactor *r, const struct iscsi_conn_transport *t, void *ctx,
                      const char *peer, const char *portal, struct iscsi_conn **out);
void iscsi_conn_destroy(struct iscsi_conn **c);
/**
 * Where the next recv may write (false: not now). The buffer is lent to the
 * transport until iscsi_conn_recv_done(); one recv at a time.
 */
bool iscsi_conn_recv_buf(struct iscsi_conn *c, void **buf, size_t *len);
void iscsi_conn_recv_done(struct iscsi_conn *c, ssize_t n);
int iscsi_conn_out_iov(struct iscsi_conn *c, struct iovec *iov, int max);
void iscsi_conn_sent(struct iscsi_conn *c, ssize_t n);
void iscsi_conn_abort(struct iscsi_conn *c);
bool iscsi_conn_finished(const struct iscsi_conn *c);
/**
 * Non-NULL: the connection's first login PDU names a session that lives on
 * that reactor. The transport stops, takes the bytes not handled yet
 * (iscsi_conn_pending_input), destroys this engine and creates one there
 * (marked with iscsi_conn_set_migrated) fed with those bytes.
 */
struct ioc_reactor *iscsi_conn_migrate_to(const struct iscsi_conn *c);
/** Received bytes not handled yet (borrowed until the next engine call). */
void iscsi_conn_pending_input(const struct iscsi_conn *c, const void **buf, size_t *len);
/** This engine continues a migrated connection: it must not migrate again. */
void iscsi_conn_set_migrated(struct iscsi_conn *c);
/** The target in use (NULL during login and for discovery); borrowed. */
const struct iscsi_tgt *iscsi_conn_tgt(const struct iscsi_conn *c);
/** Describe the connection for iscsi_target_list (a new JSON object). */
json_t *iscsi_conn_describe(const struct iscsi_conn *c);
/** Describe the connection's session if c is its first attached connection, else NULL. */
json_t *iscsi_conn_describe_sess(const struct iscsi_conn *c);

#endif
