/*
 * core/log.h - one line per event on stderr, with level and subsystem.
 *
 *   IOC_ERR("nbd", "export %s: %s", name, strerror(-rc));
 *   IOC_DEBUG(nexus, "child %s: state %s", ...);   component switched on at runtime
 *
 * The level is checked before the arguments are evaluated, so a disabled
 * debug line costs one branch. The data path logs only at debug level or
 * through IOC_ERR_RATELIMIT.
 */
#ifndef IOC_CORE_LOG_H
#define IOC_CORE_LOG_H

#include "ioc/common.h"

enum ioc_log_level {
    IOC_LOG_ERR = 0,
    IOC_LOG_WARN,
    IOC_LOG_NOTICE,
    IOC_LOG_INFO,
    IOC_LOG_DEBUG,
};

extern int g_ioc_log_level;

void ioc_log(enum ioc_log_level level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Set the level by name ("err", "warn", "notice", "info", "debug"). -EINVAL if unknown. */
int ioc_log_set_level(const char *name);

/** Switch debug output of one component ("nbd", "bdev", ...) on or off; "all" for every one. */
void ioc_log_set_debug(const char *component, bool on);
bool ioc_log_debug_enabled(const char *component);

#define IOC_LOG_AT(level, subsys, ...)                  \
    do {                                                \
        if (ioc_unlikely((level) <= g_ioc_log_level)) { \
            ioc_log((level), (subsys), __VA_ARGS__);    \
        }                                               \
    } while (0)

#define IOC_ERR(subsys, ...) IOC_LOG_AT(IOC_LOG_ERR, subsys, __VA_ARGS__)
#define IOC_WARN(subsys, ...) IOC_LOG_AT(IOC_LOG_WARN, subsys, __VA_ARGS__)
#define IOC_NOTICE(subsys, ...) IOC_LOG_AT(IOC_LOG_NOTICE, subsys, __VA_ARGS__)
#define IOC_INFO(subsys, ...) IOC_LOG_AT(IOC_LOG_INFO, subsys, __VA_ARGS__)
#define IOC_DEBUG(component, ...)                                       \
    do {                                                                \
        if (ioc_unlikely(g_ioc_log_level >= IOC_LOG_DEBUG) &&           \
            ioc_log_debug_enabled(#component)) {                        \
            ioc_log(IOC_LOG_DEBUG, #component, __VA_ARGS__);            \
        }                                                               \
    } while (0)

/* At most one line per second from this call site; the rest are counted and reported. */
#define IOC_ERR_RATELIMIT(subsys, ...)                                  \
    do {                                                                \
        static _Thread_local uint64_t ioc_rl_last_;                     \
        static _Thread_local unsigned ioc_rl_dropped_;                  \
        if (ioc_log_ratelimit_pass(&ioc_rl_last_, &ioc_rl_dropped_)) {  \
            IOC_ERR(subsys, __VA_ARGS__);                               \
        }                                                               \
    } while (0)

bool ioc_log_ratelimit_pass(uint64_t *last_ns, unsigned *dropped);

#endif
