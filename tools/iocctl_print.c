/*
 * tools/iocctl_print.c - results as aligned tables or JSON.
 *
 * A table is a header row in capitals and one row per object of a result
 * array; columns are as wide as their widest cell plus two spaces, the last
 * column unpadded so lines carry no trailing blanks. Sizes print the way they
 * are typed ("64MiB"), exactly: an approximate "1.5GiB" would hide the odd
 * byte someone is debugging. A missing field prints as "-", so an older or
 * newer daemon with other fields still gives a readable table; `-o json`
 * shows everything the daemon sent.
 */
#include "ioc/common.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "iocctl.h"
#include "lib/size.h"

#define TABLE_MAX_COLS 8
#define CELL_MAX 128

struct table {
    size_t ncols;
    size_t nrows; /* including the header */
    char (*cells)[TABLE_MAX_COLS][CELL_MAX];
};

static int
table_init(struct table *t, const char *const *header, size_t ncols, size_t nrows)
{
    t->ncols = ncols;
    t->nrows = 1;
    t->cells = calloc(nrows + 1, sizeof(*t->cells));
    if (t->cells == NULL) {
        return -1;
    }
    for (size_t c = 0; c < ncols; c++) {
        snprintf(t->cells[0][c], CELL_MAX, "%s", header[c]);
    }
    return 0;
}

static char *
table_cell(struct table *t, size_t row, size_t col)
{
    return t->cells[row + 1][col];
}

static void
table_print(struct table *t)
{
    size_t width[TABLE_MAX_COLS] = {0};

    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            width[c] = IOC_MAX(width[c], strlen(t->cells[r][c]));
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c + 1 < t->ncols; c++) {
            printf("%-*s  ", (int)width[c], t->cells[r][c]);
        }
        printf("%s\n", t->cells[r][t->ncols - 1]);
    }
    free(t->cells);
    t->cells = NULL;
}

/* ---- cell formatting ---- */

static void
cell_string(char *cell, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    if (json_is_string(v)) {
        snprintf(cell, CELL_MAX, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(cell, CELL_MAX, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(cell, CELL_MAX, "%s", json_is_true(v) ? "yes" : "no");
    } else {
        snprintf(cell, CELL_MAX, "-");
    }
}

static void
cell_size(char *cell, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        ioc_size_format((uint64_t)json_integer_value(v), false, cell, CELL_MAX);
    } else {
        cell_string(cell, obj, key);
    }
}

/* Print result (an array of objects) with one fill call per row. */
static void
print_rows(json_t *result, const char *const *header, size_t ncols,
           void (*fill)(struct table *t, size_t row, json_t *obj))
{
    struct table t;
    json_t *obj;
    size_t i;

    if (!json_is_array(result)) {
        fprintf(stderr, "iocctl: expected a list from iocd; showing it as is\n");
        iocctl_print_json(result);
        return;
    }
    if (table_init(&t, header, ncols, json_array_size(result)) != 0) {
        fprintf(stderr, "iocctl: out of memory\n");
        return;
    }
    json_array_foreach(result, i, obj)
    {
        fill(&t, i, obj);
        t.nrows++;
    }
    table_print(&t);
}

/* ---- per-result printers ---- */

void
iocctl_print_json(json_t *result)
{
    char *text = json_dumps(result, JSON_ENCODE_ANY | JSON_INDENT(2));

    if (text != NULL) {
        printf("%s\n", text);
        free(text);
    }
}

void
iocctl_print_plain(json_t *result)
{
    if (json_is_string(result)) {
        printf("%s\n", json_string_value(result));
    } else if (!json_is_true(result)) {
        iocctl_print_json(result);
    }
}

static void
fill_bdev(struct table *t, size_t row, json_t *obj)
{
    cell_string(table_cell(t, row, 0), obj, "name");
    cell_string(table_cell(t, row, 1), obj, "module");
    cell_size(table_cell(t, row, 2), obj, "size");
    cell_string(table_cell(t, row, 3), obj, "block_size");
}

void
iocctl_print_bdevs(json_t *result)
{
    static const char *const header[] = {"NAME", "MODULE", "SIZE", "BLOCK"};

    print_rows(result, header, IOC_ARRAY_SIZE(header), fill_bdev);
}

static void
fill_nbd_export(struct table *t, size_t row, json_t *obj)
{
    json_t *ro = json_object_get(obj, "read_only");

    cell_string(table_cell(t, row, 0), obj, "name");
    cell_string(table_cell(t, row, 1), obj, "bdev");
    cell_size(table_cell(t, row, 2), obj, "size");
    snprintf(table_cell(t, row, 3), CELL_MAX, "%s",
             json_is_boolean(ro) ? (json_is_true(ro) ? "ro" : "rw") : "-");
    cell_string(table_cell(t, row, 4), obj, "connections");
}

void
iocctl_print_nbd_exports(json_t *result)
{
    static const char *const header[] = {"NAME", "BDEV", "SIZE", "ACCESS", "CONNECTIONS"};

    print_rows(result, header, IOC_ARRAY_SIZE(header), fill_nbd_export);
}

static void
fill_method(struct table *t, size_t row, json_t *obj)
{
    if (json_is_string(obj)) {
        snprintf(table_cell(t, row, 0), CELL_MAX, "%s", json_string_value(obj));
        snprintf(table_cell(t, row, 1), CELL_MAX, "-");
        return;
    }
    cell_string(table_cell(t, row, 0), obj, "name");
    cell_string(table_cell(t, row, 1), obj, "summary");
}

void
iocctl_print_methods(json_t *result)
{
    static const char *const header[] = {"METHOD", "SUMMARY"};

    print_rows(result, header, IOC_ARRAY_SIZE(header), fill_method);
}
