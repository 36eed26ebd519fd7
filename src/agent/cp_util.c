/*
 * agent/cp_util.c - small helpers the agent and the controller share.
 */
#include "ioc/common.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/cp.h"

int
cp_load(struct ioc_etcd *etcd, const char *prefix, json_t **out, struct ioc_err *err)
{
    struct ioc_etcd_kvs kvs = {0};
    json_t *all;
    int rc;

    rc = ioc_etcd_range(etcd, prefix, true, &kvs, err);
    if (rc < 0) {
        return rc;
    }
    all = json_object();
    for (size_t i = 0; i < kvs.count; i++) {
        const char *name = strrchr(kvs.kvs[i].key, '/');
        json_t *v = json_loads(kvs.kvs[i].value, 0, NULL);
        if (name != NULL && name[1] != '\0' && v != NULL) {
            json_object_set(all, name + 1, v);
        }
        json_decref(v);
    }
    ioc_etcd_kvs_free(&kvs);
    *out = all;
    return 0;
}

int64_t
cp_now(void)
{
    return (int64_t)time(NULL);
}

void
cp_sleep(volatile bool *stop, int ms)
{
    for (int i = 0; i < ms / 50 && !*stop; i++) {
        usleep(50 * 1000);
    }
}

int
ioc_duration_parse(const char *s, int64_t *seconds)
{
    char *end;
    long long v;
    int64_t mult = 1;

    if (s == NULL || !isdigit((unsigned char)s[0])) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || v < 0 || v > (1LL << 40)) {
        return -EINVAL;
    }
    if (strcmp(end, "m") == 0) {
        mult = 60;
    } else if (strcmp(end, "h") == 0) {
        mult = 3600;
    } else if (strcmp(end, "s") != 0 && *end != '\0') {
        return -EINVAL;
    }
    *seconds = v * mult;
    return 0;
}
