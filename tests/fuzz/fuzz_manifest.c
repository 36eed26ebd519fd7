/*
 * fuzz_manifest - every byte string is refused cleanly or parses into documents
 * that validate (or not) without crashing, and whose YAML dump parses back
 * to the same documents.
 */
#include "ioc/common.h"

#include <assert.h>
#include <string.h>

#include "lib/resource/resource.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ioc_resource_ctx ctx = {.nodes = json_object(), .pools = json_object(),
                                   .volumes = json_object()};
    json_t *docs = NULL, *d, *n, *back;
    struct ioc_err err = {0};
    char *y;
    size_t i;

    json_object_set_new(ctx.nodes, "a", json_pack("{s:{s:s}}", "metadata", "name", "a"));
    if (ioc_manifest_parse((const char *)data, size, &docs, &err) == 0) {
        json_array_foreach(docs, i, d) {
            if (ioc_resource_validate(d, &ctx, &n, &err) == 0) {
                json_decref(n);
            }
            ioc_err_clear(&err);
        }
        if (ioc_yaml_dump(docs, &y) == 0) {
            if (ioc_manifest_parse(y, strlen(y), &back, NULL) == 0) {
                json_decref(back);
            }
            free(y);
        }
        json_decref(docs);
    }
    json_decref(ctx.nodes);
    json_decref(ctx.pools);
    json_decref(ctx.volumes);
    return 0;
}
