/*
 * target/iscsi/scsi_pr.c - persistent reservations (SPC-4 5.12):
 * PERSISTENT RESERVE IN (READ KEYS, READ RESERVATION, REPORT CAPABILITIES,
 * READ FULL STATUS) and OUT (REGISTER, REGISTER AND IGNORE EXISTING KEY,
 * RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT), all six types, and
 * the access check every other command goes through.
 *
 * State is per LUN (struct scsi_pr in iscsi_lun), shared by the sessions of
 * every reactor, so it is under lu->lock: PR commands are rare and the
 * access check takes the lock only while a reservation exists (`holder` is
 * read racily first; a stale read only delays a conflict by one command
 * racing the RESERVE itself, which SCSI allows).
 *
 * A nexus is identified by its initiator port name ("iqn,i,0xISID"), so
 * registrations survive reconnects of the same initiator port, as SPC wants.
 *
 * RESERVE(6)/RELEASE(6) (SPC-2) are here too: a whole-LUN reservation for
 * one nexus, released by RELEASE(6), a LUN or target reset, or the loss of
 * the nexus (logout, connection drop); refused while PRs are in use.
 *
 * Not done: APTPL (persist through power loss: refused with INVALID FIELD),
 * SPEC_I_PT, ALL_TG_PT (single target port anyway), REGISTER AND MOVE;
 * PREEMPT AND ABORT does not abort the preempted nexuses' tasks on other
 * connections (they are short-lived; their completion is still reported).
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "target/iscsi/iscsi_internal.h"

#define PR_WE     1
#define PR_EA     3
#define PR_WE_RO  5
#define PR_EA_RO  6
#define PR_WE_AR  7
#define PR_EA_AR  8

static int
pr_find(const struct scsi_pr *pr, const char *port)
{
    for (unsigned i = 0; i < pr->nregs; i++) {
        if (strcmp(pr->regs[i].port, port) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static bool
pr_type_valid(uint8_t type)
{
    return type == PR_WE || type == PR_EA || type == PR_WE_RO || type == PR_EA_RO ||
           type == PR_WE_AR || type == PR_EA_AR;
}

static bool
pr_all_regs(uint8_t type)
{
    return type == PR_WE_AR || type == PR_EA_AR;
}

static bool
pr_is_holder(const struct scsi_pr *pr, int reg)
{
    if (pr->holder < 0 || reg < 0) {
        return false;
    }
    return pr_all_regs(pr->type) || pr->holder == reg;
}

static void
pr_remove(struct scsi_pr *pr, unsigned i)
{
    if (pr->holder == (int)i && !pr_all_regs(pr->type)) {
        pr->holder = -1;
    }
    pr->regs[i] = pr->regs[--pr->nregs];
    if (pr->holder == (int)pr->nregs) {
        pr->holder = (int)i;       /* the moved entry was the holder */
    }
    if (pr->nregs == 0) {
        pr->holder = -1;
    } else if (pr->holder >= 0 && pr_all_regs(pr->type)) {
        pr->holder = 0;
    }
}

/* ---------------------------------------------------------------- access */

enum pr_class { PR_ALWAYS, PR_READ, PR_WRITE };

static enum pr_class
pr_classify(const uint8_t *cdb)
{
    switch (cdb[0]) {
    case 0x08: case 0x28: case 0xa8: case 0x88:     /* READ */
    case 0x2f: case 0xaf: case 0x8f:                /* VERIFY */
    case 0x34: case 0x90:                           /* PRE-FETCH */
    case 0x1a: case 0x5a:                           /* MODE SENSE */
        return PR_READ;
    case 0x9e:
        return (cdb[1] & 0x1f) == 0x12 ? PR_READ : PR_ALWAYS;
    case 0x00: case 0x03: case 0x12: case 0xa0: case 0x25: case 0xa3:
    case 0x5e: case 0x5f: case 0x1e:
        return PR_ALWAYS;
    default:
        return PR_WRITE;
    }
}

/* ------------------------------------------------- RESERVE(6)/RELEASE(6) */

/* SPC-2 reservations: the whole LUN for one nexus; anything else conflicts. */
static bool
spc2_check_locked(const struct scsi_task *t)
{
    const char *h = t->lu->pr.spc2_holder;
    uint8_t op = t->cdb[0];

    if (h[0] == '\0' || strcmp(h, t->port) == 0) {
        return true;
    }
    return op == 0x12 || op == 0xa0 || op == 0x03 || op == 0x17 || op == 0xa3;
}

static void
spc2_reserve(struct scsi_task *t, bool reserve)
{
    struct scsi_pr *pr = &t->lu->pr;

    pthread_mutex_lock(&t->lu->lock);
    if (reserve) {
        if (pr->nregs > 0 || pr->holder >= 0 ||
            (pr->spc2_holder[0] != '\0' && strcmp(pr->spc2_holder, t->port) != 0)) {
            t->status = SCSI_RESERVATION_CONFLICT;
        } else {
            snprintf(pr->spc2_holder, sizeof(pr->spc2_holder), "%s", t->port);
        }
    } else if (strcmp(pr->spc2_holder, t->port) == 0) {
        pr->spc2_holder[0] = '\0';
    }
    pthread_mutex_unlock(&t->lu->lock);
    t->done(t);
}

void
scsi_lun_reset(struct iscsi_lun *lu, uint16_t asc_ascq)
{
    if (lu == NULL) {
        return;
    }
    pthread_mutex_lock(&lu->lock);
    lu->pr.spc2_holder[0] = '\0';
    for (unsigned i = 0; i < lu->nnexus; i++) {
        scsi_ua_queue_port_locked(lu, lu->nexus[i], asc_ascq);
    }
    pthread_mutex_unlock(&lu->lock);
}

/*
 * Nexus list: a port appears once with the number of its sessions (two for a
 * moment while a session reinstates an older one of the same ISID).
 */
void
scsi_nexus_add(struct iscsi_lun *lu, const char *port, uint16_t asc_ascq)
{
    unsigned i;

    pthread_mutex_lock(&lu->lock);
    for (i = 0; i < lu->nnexus && strcmp(lu->nexus[i], port) != 0; i++) {
    }
    if (i < lu->nnexus) {
        lu->nexus_refs[i]++;
    } else if (lu->nnexus < SCSI_UA_MAX) {
        snprintf(lu->nexus[lu->nnexus], sizeof(lu->nexus[0]), "%s", port);
        lu->nexus_refs[lu->nnexus++] = 1;
    }
    if (asc_ascq != 0) {
        scsi_ua_queue_port_locked(lu, port, asc_ascq);
    }
    pthread_mutex_unlock(&lu->lock);
}

void
scsi_nexus_gone(struct iscsi_lun *lu, const char *port)
{
    unsigned i;

    pthread_mutex_lock(&lu->lock);
    for (i = 0; i < lu->nnexus && strcmp(lu->nexus[i], port) != 0; i++) {
    }
    if (i < lu->nnexus && --lu->nexus_refs[i] > 0) {
        pthread_mutex_unlock(&lu->lock);
        return; /* another session of the same nexus lives on */
    }
    if (i < lu->nnexus) {
        lu->nnexus--;
        memcpy(lu->nexus[i], lu->nexus[lu->nnexus], sizeof(lu->nexus[0]));
        lu->nexus_refs[i] = lu->nexus_refs[lu->nnexus];
    }
    if (strcmp(lu->pr.spc2_holder, port) == 0) {
        lu->pr.spc2_holder[0] = '\0';
    }
    /* its pending unit attentions go with it */
    for (i = 0; i < lu->nua;) {
        if (strcmp(lu->ua[i].port, port) == 0) {
            lu->ua[i] = lu->ua[--lu->nua];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&lu->lock);
}

bool
scsi_pr_check(struct scsi_task *t)
{
    struct scsi_pr *pr = &t->lu->pr;
    enum pr_class cls = pr_classify(t->cdb);
    bool ok = true;
    int reg;

    if (__atomic_load_n(&pr->spc2_holder[0], __ATOMIC_RELAXED) != '\0') {
        pthread_mutex_lock(&t->lu->lock);
        ok = spc2_check_locked(t);
        pthread_mutex_unlock(&t->lu->lock);
        if (!ok) {
            return false;
        }
    }

    if (cls == PR_ALWAYS || __atomic_load_n(&pr->holder, __ATOMIC_RELAXED) < 0) {
        return true;
    }
    pthread_mutex_lock(&t->lu->lock);
    reg = pr_find(pr, t->port);
    if (pr->holder >= 0 && !pr_is_holder(pr, reg)) {
        switch (pr->type) {
        case PR_WE:
            ok = cls == PR_READ;
            break;
        case PR_EA:
            ok = false;
            break;
        case PR_WE_RO:
        case PR_WE_AR:
            ok = reg >= 0 || cls == PR_READ;
            break;
        default: /* EA_RO, EA_AR */
            ok = reg >= 0;
            break;
        }
    }
    pthread_mutex_unlock(&t->lu->lock);
    return ok;
}

/* ------------------------------------------------------------------ IN */

static size_t
pr_transport_id(const char *port, uint8_t *p)
{
    size_t len = iscsi_pad4((uint32_t)strlen(port) + 1);

    p[0] = 0x45;                       /* format 01b (with ISID), protocol iSCSI */
    p[1] = 0;
    scsi_put16(p + 2, (uint16_t)len);
    memset(p + 4, 0, len);
    memcpy(p + 4, port, strlen(port));
    return 4 + len;
}

static size_t
pr_in_build(struct scsi_task *t, uint8_t sa, uint8_t *p, size_t max)
{
    struct scsi_pr *pr = &t->lu->pr;
    size_t n = 8;

    scsi_put32(p, pr->generation);
    switch (sa) {
    case 0: /* READ KEYS */
        for (unsigned i = 0; i < pr->nregs && n + 8 <= max; i++, n += 8) {
            scsi_put64(p + n, pr->regs[i].key);
        }
        break;
    case 1: /* READ RESERVATION */
        if (pr->holder >= 0) {
            memset(p + 8, 0, 16);
            scsi_put64(p + 8, pr_all_regs(pr->type) ? 0 : pr->regs[pr->holder].key);
            p[21] = pr->type;
            n = 24;
        }
        break;
    default: /* READ FULL STATUS */
        for (unsigned i = 0; i < pr->nregs && n + 24 + 4 + 256 <= max; i++) {
            size_t tid;

            memset(p + n, 0, 24);
            scsi_put64(p + n, pr->regs[i].key);
            if (pr_is_holder(pr, (int)i)) {
                p[n + 12] = 0x01;
                p[n + 13] = pr->type;
            }
            scsi_put16(p + n + 18, 1);
            tid = pr_transport_id(pr->regs[i].port, p + n + 24);
            scsi_put32(p + n + 20, (uint32_t)tid);
            n += 24 + tid;
        }
        break;
    }
    scsi_put32(p + 4, (uint32_t)(n - 8));
    return n;
}

static void
pr_in(struct scsi_task *t)
{
    uint8_t sa = t->cdb[1] & 0x1f, p[SCSI_PR_MAX_REGS * (24 + 4 + ISCSI_NAME_MAX + 36) + 64];
    uint32_t alloc = scsi_be16(t->cdb + 7);
    size_t n;

    if (sa > 3) {
        scsi_task_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        t->done(t);
        return;
    }
    memset(p, 0, 8);
    if (sa == 2) { /* REPORT CAPABILITIES */
        memset(p, 0, 8);
        scsi_put16(p, 8);
        p[2] = 0x10;                 /* CRH */
        p[3] = 0x80;                 /* TMV: the type mask is valid */
        p[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
        p[5] = 0x01;
        n = 8;
    } else {
        pthread_mutex_lock(&t->lu->lock);
        n = pr_in_build(t, sa, p, sizeof(p));
        pthread_mutex_unlock(&t->lu->lock);
    }
    if (scsi_task_buf_reserve(t, n) < 0) {
        scsi_task_sense(t, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
        t->done(t);
        return;
    }
    memcpy(t->buf, p, IOC_MIN(n, (size_t)alloc));
    t->in_len = (uint32_t)IOC_MIN(n, (size_t)alloc);
    t->done(t);
}

/* ----------------------------------------------------------------- OUT */

struct pr_out {
    uint8_t sa;
    uint8_t type;
    uint64_t key;
    uint64_t sa_key;
    uint8_t flags;
};

/* Returns a SCSI status; sense set by the caller for CHECK CONDITION (asc in *asc). */
static uint8_t
pr_register(struct scsi_task *t, const struct pr_out *o, int reg)
{
    struct scsi_pr *pr = &t->lu->pr;

    if (reg < 0) {
        if (o->sa == 0 && o->key != 0) {
            return SCSI_RESERVATION_CONFLICT;
        }
        if (o->sa_key == 0) {
            return SCSI_GOOD;
        }
        if (pr->nregs == SCSI_PR_MAX_REGS) {
            return SCSI_CHECK_CONDITION;
        }
        snprintf(pr->regs[pr->nregs].port, sizeof(pr->regs[0].port), "%s", t->port);
        pr->regs[pr->nregs++].key = o->sa_key;
        if (pr->holder >= 0 && pr_all_regs(pr->type)) {
            pr->holder = 0;
        }
        pr->generation++;
        return SCSI_GOOD;
    }
    if (o->sa == 0 && o->key != pr->regs[reg].key) {
        return SCSI_RESERVATION_CONFLICT;
    }
    if (o->sa_key == 0) {
        bool was_holder = pr->holder == reg || pr_all_regs(pr->type);
        uint8_t type = pr->type;

        pr_remove(pr, (unsigned)reg);
        if (was_holder && pr->holder < 0 && (type == PR_WE_RO || type == PR_EA_RO)) {
            for (unsigned i = 0; i < pr->nregs; i++) {
                scsi_ua_queue_port_locked(t->lu, pr->regs[i].port, ASC_RESERVATIONS_RELEASED);
            }
        }
    } else {
        pr->regs[reg].key = o->sa_key;
    }
    pr->generation++;
    return SCSI_GOOD;
}

static uint8_t
pr_reserve(struct scsi_task *t, const struct pr_out *o, int reg)
{
    struct scsi_pr *pr = &t->lu->pr;

    if (reg < 0 || o->key != pr->regs[reg].key) {
        return SCSI_RESERVATION_CONFLICT;
    }
    if (pr->holder < 0) {
        pr->holder = reg;
        pr->type = o->type;
        return SCSI_GOOD;
    }
    return pr_is_holder(pr, reg) && pr->type == o->type ? SCSI_GOOD : SCSI_RESERVATION_CONFLICT;
}

static uint8_t
pr_release(struct scsi_task *t, const struct pr_out *o, int reg, uint16_t *asc)
{
    struct scsi_pr *pr = &t->lu->pr;
    uint8_t type = pr->type;

    if (reg < 0 || o->key != pr->regs[reg].key) {
        return SCSI_RESERVATION_CONFLICT;
    }
    if (!pr_is_holder(pr, reg)) {
        return SCSI_GOOD;
    }
    if (o->type != pr->type) {
        *asc = ASC_INVALID_RELEASE_PR;
        return SCSI_CHECK_CONDITION;
    }
    pr->holder = -1;
    if (type != PR_WE && type != PR_EA) {
        for (unsigned i = 0; i < pr->nregs; i++) {
            if ((int)i != reg) {
                scsi_ua_queue_port_locked(t->lu, pr->regs[i].port, ASC_RESERVATIONS_RELEASED);
            }
        }
    }
    return SCSI_GOOD;
}

static uint8_t
pr_clear(struct scsi_task *t, const struct pr_out *o, int reg)
{
    struct scsi_pr *pr = &t->lu->pr;

    if (reg < 0 || o->key != pr->regs[reg].key) {
        return SCSI_RESERVATION_CONFLICT;
    }
    for (unsigned i = 0; i < pr->nregs; i++) {
        if ((int)i != reg) {
            scsi_ua_queue_port_locked(t->lu, pr->regs[i].port, ASC_RESERVATIONS_PREEMPTED);
        }
    }
    pr->nregs = 0;
    pr->holder = -1;
    pr->generation++;
    return SCSI_GOOD;
}

static uint8_t
pr_preempt(struct scsi_task *t, const struct pr_out *o, int reg, uint16_t *asc)
{
    struct scsi_pr *pr = &t->lu->pr;
    bool held = pr->holder >= 0, all = held && pr_all_regs(pr->type);
    bool hit_holder = held && !all && pr->regs[pr->holder].key == o->sa_key;
    char me[sizeof(pr->regs[0].port)];
    bool removed = false;

    if (reg < 0 || o->key != pr->regs[reg].key) {
        return SCSI_RESERVATION_CONFLICT;
    }
    if (o->sa_key == 0 && !all) {
        *asc = ASC_INVALID_FIELD_PARAM;
        return SCSI_CHECK_CONDITION;
    }
    snprintf(me, sizeof(me), "%s", t->port);
    for (unsigned i = 0; i < pr->nregs;) {
        bool victim = strcmp(pr->regs[i].port, me) != 0 &&
                      (all && o->sa_key == 0 ? true : pr->regs[i].key == o->sa_key);

        if (!victim) {
            i++;
            continue;
        }
        scsi_ua_queue_port_locked(t->lu, pr->regs[i].port, ASC_REGISTRATIONS_PREEMPTED);
        pr->regs[i] = pr->regs[--pr->nregs];
        removed = true;
    }
    if (!removed && !(all && o->sa_key == 0)) {
        /* also self-preemption by key of own registration is legal */
        if (!(pr->regs[reg].key == o->sa_key)) {
            return SCSI_RESERVATION_CONFLICT;
        }
    }
    reg = pr_find(pr, me);
    if (hit_holder || (all && o->sa_key == 0) ||
        (held && !all && pr->regs[reg].key == o->sa_key)) {
        pr->holder = reg;
        pr->type = o->type;
    } else if (held) {
        /* the holder may have moved in the array */
        pr->holder = all ? 0 : pr->holder;
        if (pr->holder >= (int)pr->nregs) {
            pr->holder = -1;
        }
    }
    pr->generation++;
    return SCSI_GOOD;
}

static void
pr_out(struct scsi_task *t)
{
    const uint8_t *cdb = t->cdb, *p = t->buf;
    struct pr_out o = {.sa = cdb[1] & 0x1f, .type = cdb[2] & 0x0f};
    uint32_t plen = scsi_be32(cdb + 5);
    uint16_t asc = ASC_INVALID_FIELD_CDB;
    uint8_t st;
    int reg;

    if (o.sa > 6) {
        scsi_task_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
        t->done(t);
        return;
    }
    if (plen != 24 || t->out_len < 24) {
        scsi_task_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
        t->done(t);
        return;
    }
    o.key = scsi_be64(p);
    o.sa_key = scsi_be64(p + 8);
    o.flags = p[20];
    if ((o.flags & 0x0d) || ((o.sa == 1 || o.sa == 2 || o.sa == 4 || o.sa == 5) &&
                             !pr_type_valid(o.type))) {
        scsi_task_sense(t, SK_ILLEGAL_REQUEST,
                        (o.flags & 0x0d) ? ASC_INVALID_FIELD_PARAM : ASC_INVALID_FIELD_CDB);
        t->done(t);
        return;
    }
    pthread_mutex_lock(&t->lu->lock);
    reg = pr_find(&t->lu->pr, t->port);
    switch (o.sa) {
    case 0: case 6:
        st = pr_register(t, &o, reg);
        asc = ASC_INSUFFICIENT_REG_RESOURCES;
        break;
    case 1:
        st = pr_reserve(t, &o, reg);
        break;
    case 2:
        st = pr_release(t, &o, reg, &asc);
        break;
    case 3:
        st = pr_clear(t, &o, reg);
        break;
    default:
        st = pr_preempt(t, &o, reg, &asc);
        break;
    }
    pthread_mutex_unlock(&t->lu->lock);
    if (st == SCSI_CHECK_CONDITION) {
        scsi_task_sense(t, SK_ILLEGAL_REQUEST, asc);
    } else {
        t->status = st;
    }
    t->done(t);
}

bool
scsi_pr_exec(struct scsi_task *t)
{
    if (t->cdb[0] == 0x5e) {
        pr_in(t);
        return true;
    }
    if (t->cdb[0] == 0x5f) {
        pr_out(t);
        return true;
    }
    if (t->cdb[0] == 0x16 || t->cdb[0] == 0x17) {
        spc2_reserve(t, t->cdb[0] == 0x16);
        return true;
    }
    return false;
}
