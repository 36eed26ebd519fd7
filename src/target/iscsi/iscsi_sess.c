/*
 * target/iscsi/iscsi_sess.c - sessions with several connections (MC/S,
 * RFC 7143 sections 4.3 and 6.3).
 *
 * A leading login (TSIH 0) creates a session when it completes; a login that
 * carries the TSIH of a live session, with the same InitiatorName, ISID and
 * target, adds a connection to it (up to the negotiated MaxConnections,
 * default offer ISCSI_MAX_CONNS). What the connections share lives here: the
 * command window (ExpCmdSN), the session-wide keys, the I_T nexus (port name,
 * LUN logins, unit attentions) and the target reference. What stays per
 * connection (iscsi_conn.c): StatSN, digests, MaxRecvDataSegmentLength, the
 * task pool, and every task's Data-Out, Data-In and response (ERL 0
 * connection allegiance).
 *
 * Threads: every connection of a session lives on the reactor of its
 * leading connection. A connection accepted on another reactor whose first
 * login PDU names the session is moved there by the socket layer before the
 * PDU is handled (iscsi_conn_migrate_to), so the session is single-threaded
 * and the data path takes no lock. The registry below (TSIH -> session) is
 * the only shared structure: a mutex, taken at login and logout only.
 * Rejected alternative: connections on any reactor with the command window
 * under a lock; commands must be delivered in CmdSN order, so a command
 * arriving early on one reactor would wait for a message from another, and
 * the SCSI layer would see tasks of one I_T nexus from several threads. The
 * price of the chosen design: one session's connections share one core.
 *
 * Ordering: a non-immediate command must carry CmdSN == ExpCmdSN. With one
 * connection TCP keeps them in order and anything else is dropped (RFC 7143
 * 4.2.2.1). With several, a command may arrive before a lower CmdSN sent on
 * another connection: if it is inside the window, that connection stops
 * parsing until ExpCmdSN reaches it (iscsi_conn.c), and every advance wakes
 * the connections of the session.
 *
 * Ending: a logout "close the connection" (of this or another CID) and
 * connection reinstatement (a login reusing a live CID) close one
 * connection; its tasks are terminated. A logout "close the session" closes
 * them all. A connection that fails (peer gone, protocol error) fails the
 * whole session: at ErrorRecoveryLevel 0 the only recovery is session
 * recovery, and a command lost with the connection would otherwise leave a
 * hole in the CmdSN window that stalls the others for ever. The session ends
 * with its last connection. A leading login with the ISID of a live session
 * of the same initiator and target reinstates it: the old one is failed.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "target/iscsi/iscsi_conn_priv.h"

#define SESS_CMD_WINDOW (ISCSI_MAX_TASKS - 8u) /* as one connection; spare tasks for immediates */

/* The registry: TSIH -> session. Other threads read only the links and immutable fields. */
static pthread_mutex_t g_sess_lock = PTHREAD_MUTEX_INITIALIZER;
static struct iscsi_sess *g_sessions;
static uint16_t g_next_tsih = 1;

/* ------------------------------------------------------------- registry */

static struct iscsi_sess *
sess_lookup_locked(uint16_t tsih)
{
    for (struct iscsi_sess *s = g_sessions; s != NULL; s = s->next) {
        if (s->tsih == tsih) {
            return s;
        }
    }
    return NULL;
}

/* A TSIH no live session has (TSIH 0 is reserved for "new session"). */
static uint16_t
sess_new_tsih_locked(void)
{
    for (;;) {
        uint16_t t = g_next_tsih++;

        if (t != 0 && sess_lookup_locked(t) == NULL) {
            return t;
        }
    }
}

struct ioc_reactor *
iscsi_sess_reactor(uint16_t tsih)
{
    struct ioc_reactor *r = NULL;
    struct iscsi_sess *s;

    pthread_mutex_lock(&g_sess_lock);
    s = sess_lookup_locked(tsih);
    if (s != NULL) {
        r = s->reactor;
    }
    pthread_mutex_unlock(&g_sess_lock);
    return r;
}

struct iscsi_sess *
iscsi_sess_find(struct ioc_reactor *self, uint16_t tsih)
{
    struct iscsi_sess *s;

    pthread_mutex_lock(&g_sess_lock);
    s = sess_lookup_locked(tsih);
    if (s != NULL && s->reactor != self) {
        s = NULL; /* another reactor's session is not ours to touch */
    }
    pthread_mutex_unlock(&g_sess_lock);
    return s != NULL && !s->ending ? s : NULL;
}

/* --------------------------------------------------------- reinstatement */

struct reinstate_msg {
    uint16_t tsih;
    uint8_t isid[6];
    char initiator[ISCSI_NAME_MAX + 1];
};

static bool
sess_same_nexus(const struct iscsi_sess *s, const char *initiator, const uint8_t isid[6],
                const struct iscsi_tgt *tgt)
{
    return s->tgt == tgt && memcmp(s->isid, isid, 6) == 0 &&
           strcasecmp(s->initiator, initiator) == 0;
}

static void
sess_reinstate_msg(void *arg)
{
    struct reinstate_msg *m = arg;
    struct iscsi_sess *s = iscsi_sess_find(ioc_reactor_self(), m->tsih);

    /* the TSIH may have been reused meanwhile: check the nexus again */
    if (s != NULL && memcmp(s->isid, m->isid, 6) == 0 &&
        strcasecmp(s->initiator, m->initiator) == 0) {
        iscsi_sess_fail(s, "reinstated by a new session");
    }
    free(m);
}

/* Fail the older sessions of the same I_T nexus, on their reactors. */
static void
sess_reinstate_older(const struct iscsi_sess *mine)
{
    struct iscsi_sess *old[8];
    unsigned n = 0;

    pthread_mutex_lock(&g_sess_lock);
    for (struct iscsi_sess *s = g_sessions; s != NULL && n < IOC_ARRAY_SIZE(old); s = s->next) {
        if (s != mine && !s->discovery &&
            sess_same_nexus(s, mine->initiator, mine->isid, mine->tgt)) {
            old[n++] = s;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        struct reinstate_msg *m = calloc(1, sizeof(*m));

        if (m == NULL) {
            continue;
        }
        m->tsih = old[i]->tsih;
        memcpy(m->isid, old[i]->isid, 6);
        snprintf(m->initiator, sizeof(m->initiator), "%s", old[i]->initiator);
        IOC_INFO("iscsi", "session %u of %s: reinstated by session %u", m->tsih, m->initiator,
                 mine->tsih);
        /* by message even on our own reactor: the caller is in the middle of a login */
        if (ioc_reactor_send_msg(old[i]->reactor, sess_reinstate_msg, m) < 0) {
            free(m);
        }
    }
    pthread_mutex_unlock(&g_sess_lock);
}

/* ------------------------------------------------------------- lifecycle */

int
iscsi_sess_create(struct iscsi_conn *c)
{
    struct iscsi_sess *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return -ENOMEM;
    }
    s->reactor = c->reactor;
    memcpy(s->isid, c->isid, 6);
    s->discovery = c->params.discovery;
    snprintf(s->initiator, sizeof(s->initiator), "%s", c->params.initiator_name);
    snprintf(s->port, sizeof(s->port), "%s", c->port);
    s->params = c->params;
    s->exp_cmdsn = c->exp_cmdsn;
    if (c->tgt != NULL) {
        s->tgt = c->tgt;
        atomic_fetch_add(&s->tgt->refs, 1);
        atomic_fetch_add(&s->tgt->sessions, 1);
        for (unsigned i = 0; i < s->tgt->nluns; i++) {
            /* a new I_T nexus: SAM-5 power on / reset unit attention (29h/00h) */
            scsi_nexus_add(s->tgt->luns[i], s->port, ASC_POWER_ON_RESET);
        }
    }
    s->conns[s->nconns++] = c;
    c->sess = s;
    pthread_mutex_lock(&g_sess_lock);
    s->tsih = sess_new_tsih_locked();
    s->next = g_sessions;
    g_sessions = s;
    pthread_mutex_unlock(&g_sess_lock);
    c->tsih = s->tsih;
    if (s->tgt != NULL) {
        sess_reinstate_older(s);
    }
    return 0;
}

static void
sess_destroy(struct iscsi_sess *s)
{
    pthread_mutex_lock(&g_sess_lock);
    for (struct iscsi_sess **pp = &g_sessions; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_sess_lock);
    if (s->tgt != NULL) {
        for (unsigned i = 0; i < s->tgt->nluns; i++) {
            scsi_nexus_gone(s->tgt->luns[i], s->port);
        }
        atomic_fetch_sub(&s->tgt->sessions, 1);
        iscsi_tgt_put(&s->tgt);
    }
    IOC_DEBUG(iscsi, "session %u of %s: ended", s->tsih, s->initiator);
    free(s);
}

int
iscsi_sess_attach(struct iscsi_sess *s, struct iscsi_conn *c)
{
    if (s->nconns == IOC_ARRAY_SIZE(s->conns)) {
        return -EBUSY;
    }
    s->conns[s->nconns++] = c;
    c->sess = s;
    return 0;
}

void
iscsi_sess_detach(struct iscsi_conn *c)
{
    struct iscsi_sess *s = c->sess;

    if (s == NULL) {
        return;
    }
    c->sess = NULL;
    for (unsigned i = 0; i < s->nconns; i++) {
        if (s->conns[i] == c) {
            s->conns[i] = s->conns[--s->nconns];
            break;
        }
    }
    if (s->nconns == 0) {
        sess_destroy(s);
        return;
    }
    /* ExpCmdSN may have moved on this connection while others waited */
    iscsi_sess_cmdsn_advanced(s, NULL);
}

unsigned
iscsi_sess_live_conns(const struct iscsi_sess *s)
{
    unsigned n = 0;

    for (unsigned i = 0; i < s->nconns; i++) {
        n += iscsi_conn_live(s->conns[i]);
    }
    return n;
}

struct iscsi_conn *
iscsi_sess_conn_by_cid(struct iscsi_sess *s, uint16_t cid)
{
    for (unsigned i = 0; i < s->nconns; i++) {
        if (s->conns[i]->cid == cid && iscsi_conn_live(s->conns[i])) {
            return s->conns[i];
        }
    }
    return NULL;
}

uint16_t
iscsi_sess_join(struct iscsi_sess *s, struct iscsi_conn *c)
{
    struct iscsi_conn *old = iscsi_sess_conn_by_cid(s, c->cid);

    if (old != NULL) {
        /* connection reinstatement: at ERL 0 its tasks just end */
        IOC_INFO("iscsi", "session %u: connection %u (%s) reinstated by %s", s->tsih, c->cid,
                 old->peer, c->peer);
        iscsi_conn_drop(old, "reinstated");
    }
    if (iscsi_sess_live_conns(s) >= s->params.max_connections) {
        return ISCSI_LOGIN_TOO_MANY_CONNS;
    }
    return 0;
}

void
iscsi_sess_fail(struct iscsi_sess *s, const char *why)
{
    if (!s->ending) {
        IOC_INFO("iscsi", "session %u of %s: closing: %s", s->tsih, s->initiator, why);
    }
    s->ending = true;
    for (unsigned i = 0; i < s->nconns; i++) {
        iscsi_conn_drop(s->conns[i], why);
    }
}

void
iscsi_sess_logout(struct iscsi_sess *s, struct iscsi_conn *by)
{
    s->ending = true;
    for (unsigned i = 0; i < s->nconns; i++) {
        if (s->conns[i] != by) {
            iscsi_conn_drop(s->conns[i], "session logged out");
        }
    }
}

/* ----------------------------------------------------------- command window */

uint32_t
iscsi_sess_max_cmdsn(const struct iscsi_sess *s)
{
    unsigned used = 0, room;

    for (unsigned i = 0; i < s->nconns; i++) {
        used += s->conns[i]->ntasks_used;
    }
    room = used >= SESS_CMD_WINDOW ? 0 : SESS_CMD_WINDOW - used;
    return s->exp_cmdsn + room - 1;
}

void
iscsi_sess_cmdsn_advanced(struct iscsi_sess *s, struct iscsi_conn *by)
{
    if (s->nconns < 2) {
        return;
    }
    for (unsigned i = 0; i < s->nconns; i++) {
        if (s->conns[i] != by) {
            iscsi_conn_kick(s->conns[i]);
        }
    }
}

json_t *
iscsi_sess_describe(const struct iscsi_sess *s)
{
    json_t *cids = json_array();

    for (unsigned i = 0; i < s->nconns; i++) {
        json_array_append_new(cids, json_integer(s->conns[i]->cid));
    }
    return json_pack("{s:i, s:s, s:s, s:s, s:o, s:i, s:I, s:b}", "tsih", s->tsih, "initiator",
                     s->initiator, "port", s->port, "target", s->tgt ? s->tgt->iqn : "", "cids",
                     cids, "max_connections", (int)s->params.max_connections, "exp_cmdsn",
                     (json_int_t)s->exp_cmdsn, "discovery", s->discovery);
}
