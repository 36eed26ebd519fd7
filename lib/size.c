#include "ioc/common.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "size.h"

struct size_unit {
    const char *name;
    unsigned shift;
};

/* Longest names first is not needed: suffixes are compared whole. */
static const struct size_unit g_units[] = {
    {"", 0},     {"b", 0},    {"k", 10},   {"kib", 10}, {"m", 20}, {"mib", 20}, {"g", 30},
    {"gib", 30}, {"t", 40},   {"tib", 40}, {"p", 50},   {"pib", 50}, {"kb", 10}, {"mb", 20},
    {"gb", 30},  {"tb", 40},
};

static int
size_unit_shift(const char *suffix, unsigned *shift)
{
    for (size_t i = 0; i < IOC_ARRAY_SIZE(g_units); i++) {
        if (strcasecmp(suffix, g_units[i].name) == 0) {
            *shift = g_units[i].shift;
            return 0;
        }
    }
    return -EINVAL;
}

int
ioc_size_parse(const char *s, uint64_t *out)
{
    unsigned long long v;
    unsigned shift;
    char *end;

    if (s == NULL || !isdigit((unsigned char)*s)) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno == ERANGE) {
        return -ERANGE;
    }
    while (*end == ' ') {
        end++;
    }
    if (size_unit_shift(end, &shift) != 0) {
        return -EINVAL;
    }
    if (shift > 0 && v > (UINT64_MAX >> shift)) {
        return -ERANGE;
    }
    *out = (uint64_t)v << shift;
    return 0;
}

char *
ioc_size_format(uint64_t bytes, bool approx, char *buf, size_t buflen)
{
    static const char *names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    unsigned i = 0;

    if (approx) {
        double v = (double)bytes;
        while (v >= 1024.0 && i + 1 < IOC_ARRAY_SIZE(names)) {
            v /= 1024.0;
            i++;
        }
        if (i == 0 || v == (double)(uint64_t)v) {
            snprintf(buf, buflen, "%llu%s", (unsigned long long)v, names[i]);
        } else {
            snprintf(buf, buflen, "%.1f%s", v, names[i]);
        }
        return buf;
    }
    while (bytes != 0 && (bytes & 1023) == 0 && i + 1 < IOC_ARRAY_SIZE(names)) {
        bytes >>= 10;
        i++;
    }
    snprintf(buf, buflen, "%llu%s", (unsigned long long)bytes, names[i]);
    return buf;
}
