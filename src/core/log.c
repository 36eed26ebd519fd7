/*
 * core/log.c - stderr logging. One fprintf per line so lines from different
 * reactor threads never interleave mid-line (stdio locks the stream per call).
 * Debug components are a small fixed table switched by name; a hash would be
 * overkill for a dozen subsystems.
 */
#include "ioc/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

int g_ioc_log_level = IOC_LOG_NOTICE;

#define LOG_MAX_COMPONENTS 32
static char g_debug_components[LOG_MAX_COMPONENTS][16];
static bool g_debug_all;

static const char *g_level_names[] = {"err", "warn", "notice", "info", "debug"};

void
ioc_log(enum ioc_log_level level, const char *subsys, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s %s: ", tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000, g_level_names[level], subsys);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line)) {
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    }
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

int
ioc_log_set_level(const char *name)
{
    for (size_t i = 0; i < IOC_ARRAY_SIZE(g_level_names); i++) {
        if (strcmp(name, g_level_names[i]) == 0) {
            g_ioc_log_level = (int)i;
            return 0;
        }
    }
    return -22; /* -EINVAL without pulling errno.h into every log user */
}

void
ioc_log_set_debug(const char *component, bool on)
{
    if (strcmp(component, "all") == 0) {
        g_debug_all = on;
        return;
    }
    for (int i = 0; i < LOG_MAX_COMPONENTS; i++) {
        if (strcmp(g_debug_components[i], component) == 0) {
            if (!on) {
                g_debug_components[i][0] = '\0';
            }
            return;
        }
    }
    for (int i = 0; on && i < LOG_MAX_COMPONENTS; i++) {
        if (g_debug_components[i][0] == '\0') {
            snprintf(g_debug_components[i], sizeof(g_debug_components[i]), "%s", component);
            return;
        }
    }
}

bool
ioc_log_debug_enabled(const char *component)
{
    if (g_debug_all) {
        return true;
    }
    for (int i = 0; i < LOG_MAX_COMPONENTS; i++) {
        if (strcmp(g_debug_components[i], component) == 0) {
            return true;
        }
    }
    return false;
}

bool
ioc_log_ratelimit_pass(uint64_t *last_ns, unsigned *dropped)
{
    struct timespec ts;
    uint64_t now;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    if (*last_ns != 0 && now - *last_ns < 1000000000ull) {
        (*dropped)++;
        return false;
    }
    if (*dropped > 0) {
        ioc_log(IOC_LOG_ERR, "log", "%u similar messages suppressed", *dropped);
        *dropped = 0;
    }
    *last_ns = now;
    return true;
}
