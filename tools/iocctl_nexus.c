/*
 * tools/iocctl_nexus.c - the table form of `iocctl nexus list`.
 *
 *   NAME  STATE     SIZE      GEN  CHILDREN
 *   vol   degraded  64MiB     1    3
 *     nbd://10.0.0.2:10809/v  online
 *     nbd://10.0.0.3:10809/v  rebuilding  partial 12/40 segments (30%) 412.3 MiB/s
 *     nbd://10.0.0.4:10809/v  faulted     dirty 7 (Connection timed out)
 */
#include "ioc/common.h"

#include <stdio.h>

#include "iocctl.h"

static void
print_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    unsigned u = 0;

    while (bytes >= 1024 && bytes % 1024 == 0 && u + 1 < IOC_ARRAY_SIZE(units)) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)bytes, units[u]);
}

static void
print_child(json_t *c)
{
    const char *state = json_string_value(json_object_get(c, "state"));
    json_t *rb = json_object_get(c, "rebuild");
    const char *err = json_string_value(json_object_get(c, "last_error"));

    printf("  %-40s %-12s", json_string_value(json_object_get(c, "uri")), state);
    if (json_is_object(rb) && json_is_true(json_object_get(rb, "running"))) {
        printf(" %s %lld/%lld segments (%.0f%%) %.1f MiB/s",
               json_string_value(json_object_get(rb, "type")),
               json_integer_value(json_object_get(rb, "segments_done")),
               json_integer_value(json_object_get(rb, "segments_total")),
               json_real_value(json_object_get(rb, "progress_pct")),
               json_real_value(json_object_get(rb, "throughput_mib_s")));
    } else if (json_integer_value(json_object_get(c, "dirty_segments")) > 0) {
        printf(" dirty %lld", json_integer_value(json_object_get(c, "dirty_segments")));
    }
    if (err != NULL && state != NULL && state[0] == 'f') {
        printf(" (%s)", err);
    }
    printf("\n");
}

void
iocctl_print_nexus(json_t *result)
{
    size_t i, j;
    json_t *n, *c;

    printf("%-20s %-9s %-9s %-5s %s\n", "NAME", "STATE", "SIZE", "GEN", "CHILDREN");
    json_array_foreach(result, i, n) {
        char size[32];
        json_t *children = json_object_get(n, "children");
        print_size((uint64_t)json_integer_value(json_object_get(n, "size")), size, sizeof(size));
        printf("%-20s %-9s %-9s %-5lld %zu\n", json_string_value(json_object_get(n, "name")),
               json_string_value(json_object_get(n, "state")), size,
               json_integer_value(json_object_get(n, "generation")), json_array_size(children));
        json_array_foreach(children, j, c) {
            print_child(c);
        }
    }
}
