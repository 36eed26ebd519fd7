/*
 * target/target_coalesce.c - the hold-or-not decision of a stream
 * connection, from measured traffic (the header says why and how).
 */
#include "ioc/common.h"

#include "target/target_coalesce.h"

void
ioc_coalesce_init(struct ioc_coalesce *c)
{
    *c = (struct ioc_coalesce){
        .state = IOC_COALESCE_BASE,
        .gap_ns = IOC_COALESCE_GAP_MIN_NS,
    };
}

static void
coalesce_enter(struct ioc_coalesce *c, enum ioc_coalesce_state state, uint64_t now, uint64_t len)
{
    c->state = state;
    c->phase_end_ns = now + len;
    c->phase_bytes = 0;
}

/* A probe is kept if holding moved at least as much as not holding did. */
static bool
coalesce_probe_kept(const struct ioc_coalesce *c)
{
    return c->phase_bytes * 100 >= c->base_bytes * IOC_COALESCE_KEEP_PCT;
}

static void
coalesce_refuse(struct ioc_coalesce *c, uint64_t now)
{
    coalesce_enter(c, IOC_COALESCE_OFF, now, c->gap_ns);
    c->gap_ns = IOC_MIN(c->gap_ns * 2, IOC_COALESCE_GAP_MAX_NS);
}

/* The phase that ended at or before now decides the next one. */
static void
coalesce_next_phase(struct ioc_coalesce *c, uint64_t now)
{
    switch (c->state) {
    case IOC_COALESCE_OFF:
    case IOC_COALESCE_ON:
        coalesce_enter(c, IOC_COALESCE_BASE, now, IOC_COALESCE_PHASE_NS);
        break;
    case IOC_COALESCE_BASE:
        if (c->phase_bytes < IOC_COALESCE_MIN_BYTES) {
            /* too little traffic for holding to save anything: look again later */
            coalesce_enter(c, IOC_COALESCE_OFF, now, IOC_COALESCE_GAP_MIN_NS);
            break;
        }
        c->base_bytes = c->phase_bytes;
        c->probes++;
        coalesce_enter(c, IOC_COALESCE_PROBE, now, IOC_COALESCE_PHASE_NS);
        break;
    case IOC_COALESCE_PROBE:
        if (!coalesce_probe_kept(c)) {
            coalesce_refuse(c, now);
            break;
        }
        c->accepted++;
        c->gap_ns = IOC_COALESCE_GAP_MIN_NS;
        coalesce_enter(c, IOC_COALESCE_ON, now, IOC_COALESCE_ON_NS);
        break;
    }
}

bool
ioc_coalesce_holding(struct ioc_coalesce *c, uint64_t now)
{
    if (c->phase_end_ns == 0) {
        coalesce_enter(c, IOC_COALESCE_BASE, now, IOC_COALESCE_PHASE_NS);
    } else if (now >= c->phase_end_ns) {
        coalesce_next_phase(c, now);
    }
    return c->state == IOC_COALESCE_PROBE || c->state == IOC_COALESCE_ON;
}
