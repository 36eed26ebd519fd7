/*
 * tools/iocctl_vhost.c - table output of `iocctl vhost list`.
 *
 * The vhost command rows themselves (add, remove, list) are plain mappings
 * to vhost_blk_export_* in iocctl.c; only the listing needs code here.
 * Columns: SOCKET, BDEV, QUEUES, ACCESS, CONNECTIONS; -o json prints the raw
 * result instead.
 */
#include "ioc/common.h"

#include <stdio.h>
#include <string.h>

#include "tools/iocctl.h"

void
iocctl_print_vhost_exports(json_t *result)
{
    size_t i, w = strlen("SOCKET");
    json_t *e;

    json_array_foreach(result, i, e) {
        const char *s = json_string_value(json_object_get(e, "socket"));

        w = IOC_MAX(w, s != NULL ? strlen(s) : 1);
    }
    printf("%-*s  %-16s  %6s  %-10s  %s\n", (int)w, "SOCKET", "BDEV", "QUEUES", "ACCESS",
           "CONNECTIONS");
    json_array_foreach(result, i, e) {
        const char *s = json_string_value(json_object_get(e, "socket"));
        const char *b = json_string_value(json_object_get(e, "bdev"));

        printf("%-*s  %-16s  %6lld  %-10s  %lld\n", (int)w, s ? s : "-", b ? b : "-",
               (long long)json_integer_value(json_object_get(e, "num_queues")),
               json_is_true(json_object_get(e, "read_only")) ? "read-only" : "read-write",
               (long long)json_integer_value(json_object_get(e, "connections")));
    }
}
