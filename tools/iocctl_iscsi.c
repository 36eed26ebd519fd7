/*
 * tools/iocctl_iscsi.c - the `iscsi` commands of iocctl that need more than
 * the generic argument mapping: `iscsi target create` builds the nested
 * iscsi_target_create parameters (a LUN list, an allow-list, CHAP
 * credentials) from flat arguments, and `iscsi target list` prints targets
 * with their sessions as a table.
 *
 *   iocctl iscsi target create IQN BDEV[,BDEV...] [--allow IQN[,IQN...]]
 *          [--chap-user U --chap-secret S [--mutual-user U --mutual-secret S]]
 *
 * BDEVs become LUNs 0, 1, ... in the order given.
 */
#include "ioc/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iocctl.h"

static json_t *
split_list(const char *s, bool luns)
{
    json_t *arr = json_array();
    char *copy = strdup(s), *save = NULL;
    int n = 0;

    if (arr == NULL || copy == NULL) {
        free(copy);
        json_decref(arr);
        return NULL;
    }
    for (char *w = strtok_r(copy, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
        json_array_append_new(arr, luns ? json_pack("{s:i, s:s}", "lun", n, "bdev", w)
                                        : json_string(w));
        n++;
    }
    free(copy);
    return arr;
}

static json_t *
chap_params(const char *const *v)
{
    json_t *chap;

    if (v[0] == NULL && v[1] == NULL) {
        return NULL;
    }
    chap = json_object();
    if (v[0] != NULL) {
        json_object_set_new(chap, "user", json_string(v[0]));
    }
    if (v[1] != NULL) {
        json_object_set_new(chap, "secret", json_string(v[1]));
    }
    if (v[2] != NULL) {
        json_object_set_new(chap, "mutual_user", json_string(v[2]));
    }
    if (v[3] != NULL) {
        json_object_set_new(chap, "mutual_secret", json_string(v[3]));
    }
    return chap;
}

int
iocctl_iscsi_target_create(const struct iocctl_opts *opts, const char *const *vals)
{
    json_t *params = json_pack("{s:s, s:o}", "iqn", vals[0], "luns", split_list(vals[1], true));
    json_t *chap = chap_params(vals + 3), *result = NULL;
    int rc;

    if (params == NULL) {
        fprintf(stderr, "iocctl: out of memory\n");
        return IOCCTL_EXIT_USAGE;
    }
    if (vals[2] != NULL) {
        json_object_set_new(params, "allowed_initiators", split_list(vals[2], false));
    }
    if (chap != NULL) {
        json_object_set_new(params, "chap", chap);
    }
    rc = iocctl_call(opts, "iscsi_target_create", params, &result);
    if (rc == IOCCTL_EXIT_OK) {
        if (opts->json) {
            iocctl_print_json(result);
        }
        json_decref(result);
    }
    return rc;
}

/* One session and, under it, its connections (matched by TSIH). */
static void
print_iscsi_session(json_t *sess, json_t *conns)
{
    json_int_t tsih = json_integer_value(json_object_get(sess, "tsih"));
    size_t i;
    json_t *c;

    printf("  session %-5lld %-40s connections %zu\n", (long long)tsih,
           json_string_value(json_object_get(sess, "initiator")),
           json_array_size(json_object_get(sess, "cids")));
    json_array_foreach(conns, i, c) {
        if (json_integer_value(json_object_get(c, "tsih")) != tsih) {
            continue;
        }
        printf("    cid %-5lld %-22s reactor %-3lld %s\n",
               (long long)json_integer_value(json_object_get(c, "cid")),
               json_string_value(json_object_get(c, "peer")),
               (long long)json_integer_value(json_object_get(c, "reactor")),
               json_string_value(json_object_get(c, "state")));
    }
}

void
iocctl_print_iscsi_targets(json_t *result)
{
    size_t i, j;
    json_t *t, *x;

    printf("%-40s %-4s %-20s %-5s %s\n", "IQN", "LUN", "BDEV", "CHAP", "SESSIONS");
    json_array_foreach(result, i, t) {
        const char *iqn = json_string_value(json_object_get(t, "iqn"));
        const char *chap = json_is_true(json_object_get(t, "mutual_chap")) ? "mutual"
                           : json_is_true(json_object_get(t, "chap")) ? "yes" : "no";

        json_array_foreach(json_object_get(t, "luns"), j, x) {
            long long lun = (long long)json_integer_value(json_object_get(x, "lun"));
            const char *bdev = json_string_value(json_object_get(x, "bdev"));

            if (j == 0) {
                printf("%-40s %-4lld %-20s %-5s %lld\n", iqn, lun, bdev, chap,
                       (long long)json_integer_value(json_object_get(t, "sessions")));
            } else {
                printf("%-40s %-4lld %s\n", "", lun, bdev);
            }
        }
        json_array_foreach(json_object_get(t, "session_list"), j, x) {
            print_iscsi_session(x, json_object_get(t, "connections"));
        }
    }
}
