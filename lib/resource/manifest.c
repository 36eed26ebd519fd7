/*
 * lib/resource/manifest.c - manifests (YAML or JSON) to JSON documents, and back to YAML.
 *
 * YAML is read with libyaml's event parser and built into jansson values as
 * the events arrive, with an explicit stack: a mapping or sequence start
 * pushes a container, a scalar is added to the top one (as a key when the
 * top is a mapping waiting for a key), an end pops. Plain scalars are typed
 * the YAML 1.2 core way (integers, true/false, null/~); quoted ones stay
 * strings, so "10GiB" and '7' are strings and 7 is a number. Aliases are
 * refused (a manifest has no use for them and they make exponential
 * documents possible), as are duplicate keys and nesting deeper than 32.
 *
 * JSON input (first non-blank byte '{' or '[') goes to jansson directly,
 * which reports positions precisely; an array is a list of documents.
 *
 * The YAML printer at the bottom is for `iocctl get -o yaml`: block style,
 * strings quoted whenever plain style could read back as something else.
 */
#include "ioc/common.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "lib/resource/resource.h"

#define MANIFEST_DEPTH_MAX 32

struct ybuild {
    json_t *stack[MANIFEST_DEPTH_MAX + 1];
    char *pending_key[MANIFEST_DEPTH_MAX + 1]; /* a mapping's key awaiting its value */
    int depth;
    json_t *docs;
    json_t *root; /* the document being built */
};

/* A plain scalar typed as YAML 1.2's core schema would. */
static json_t *
yaml_plain_scalar(const char *s)
{
    char *end;
    long long v;

    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0) {
        return json_true();
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0) {
        return json_false();
    }
    if (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0) {
        return json_null();
    }
    if (isdigit((unsigned char)s[0]) || ((s[0] == '-' || s[0] == '+') &&
                                         isdigit((unsigned char)s[1]))) {
        errno = 0;
        v = strtoll(s, &end, 10);
        if (*end == '\0' && errno == 0) {
            return json_integer(v);
        }
    }
    return json_string(s);
}

/* Add v (reference taken) to the container on top, or make it the document root. */
static int
ybuild_add(struct ybuild *b, json_t *v, const yaml_event_t *ev, struct ioc_err *err)
{
    json_t *top;
    int line = (int)ev->start_mark.line + 1;

    if (v == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    if (b->depth == 0) {
        json_decref(b->root);
        b->root = v;
        return 0;
    }
    top = b->stack[b->depth - 1];
    if (json_is_array(top)) {
        json_array_append_new(top, v);
        return 0;
    }
    if (b->pending_key[b->depth - 1] == NULL) {
        if (!json_is_string(v)) {
            json_decref(v);
            return ioc_err_set(err, -EINVAL, "line %d: a mapping key must be a scalar", line);
        }
        b->pending_key[b->depth - 1] = strdup(json_string_value(v));
        json_decref(v);
        return 0;
    }
    if (json_object_get(top, b->pending_key[b->depth - 1]) != NULL) {
        ioc_err_set(err, -EINVAL, "line %d: duplicate key \"%s\"", line,
                    b->pending_key[b->depth - 1]);
        json_decref(v);
        return -EINVAL;
    }
    json_object_set_new(top, b->pending_key[b->depth - 1], v);
    free(b->pending_key[b->depth - 1]);
    b->pending_key[b->depth - 1] = NULL;
    return 0;
}

static int
ybuild_push(struct ybuild *b, json_t *c, const yaml_event_t *ev, struct ioc_err *err)
{
    if (b->depth == MANIFEST_DEPTH_MAX) {
        json_decref(c);
        return ioc_err_set(err, -EINVAL, "line %d: nested deeper than %d levels",
                           (int)ev->start_mark.line + 1, MANIFEST_DEPTH_MAX);
    }
    json_incref(c);
    if (ybuild_add(b, c, ev, err) < 0) {
        json_decref(c);
        return -EINVAL;
    }
    b->stack[b->depth] = c;
    b->pending_key[b->depth] = NULL;
    b->depth++;
    json_decref(c); /* the parent (or root) holds it */
    return 0;
}

static int
ybuild_event(struct ybuild *b, const yaml_event_t *ev, struct ioc_err *err)
{
    const char *s;

    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        s = (const char *)ev->data.scalar.value;
        if (strlen(s) != ev->data.scalar.length) {
            return ioc_err_set(err, -EINVAL, "line %d: NUL character in a scalar",
                               (int)ev->start_mark.line + 1);
        }
        return ybuild_add(b, ev->data.scalar.plain_implicit ? yaml_plain_scalar(s)
                                                            : json_string(s), ev, err);
    case YAML_SEQUENCE_START_EVENT:
        return ybuild_push(b, json_array(), ev, err);
    case YAML_MAPPING_START_EVENT:
        return ybuild_push(b, json_object(), ev, err);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        b->depth--;
        free(b->pending_key[b->depth]);
        b->pending_key[b->depth] = NULL;
        return 0;
    case YAML_ALIAS_EVENT:
        return ioc_err_set(err, -EINVAL, "line %d: YAML aliases are not supported",
                           (int)ev->start_mark.line + 1);
    case YAML_DOCUMENT_END_EVENT:
        if (b->root != NULL && !json_is_null(b->root)) {
            json_array_append(b->docs, b->root);
        }
        json_decref(b->root);
        b->root = NULL;
        return 0;
    default:
        return 0;
    }
}

static int
manifest_parse_yaml(const char *text, size_t len, json_t *docs, struct ioc_err *err)
{
    struct ybuild b = {.docs = docs};
    yaml_parser_t parser;
    yaml_event_t ev;
    bool done = false;
    int rc = 0;

    if (!yaml_parser_initialize(&parser)) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done && rc == 0) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = ioc_err_set(err, -EINVAL, "line %d: %s", (int)parser.problem_mark.line + 1,
                             parser.problem != NULL ? parser.problem : "not YAML");
            break;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        rc = ybuild_event(&b, &ev, err);
        yaml_event_delete(&ev);
    }
    for (int i = 0; i < MANIFEST_DEPTH_MAX; i++) {
        free(b.pending_key[i]);
    }
    json_decref(b.root);
    yaml_parser_delete(&parser);
    return rc;
}

static int
manifest_parse_json(const char *text, size_t len, json_t *docs, struct ioc_err *err)
{
    json_error_t jerr;
    size_t off = 0;

    while (off < len) {
        while (off < len && isspace((unsigned char)text[off])) {
            off++;
        }
        if (off == len) {
            break;
        }
        json_t *v = json_loadb(text + off, len - off, JSON_DISABLE_EOF_CHECK, &jerr);
        if (v == NULL) {
            return ioc_err_set(err, -EINVAL, "line %d: %s", jerr.line, jerr.text);
        }
        off += jerr.position;
        if (json_is_array(v)) {
            json_array_extend(docs, v);
        } else {
            json_array_append(docs, v);
        }
        json_decref(v);
    }
    return 0;
}

int
ioc_manifest_parse(const char *text, size_t len, json_t **out, struct ioc_err *err)
{
    json_t *docs = json_array();
    size_t i = 0;
    int rc;

    if (docs == NULL) {
        return ioc_err_set(err, -ENOMEM, "out of memory");
    }
    if (memchr(text, '\0', len) != NULL) {
        json_decref(docs);
        return ioc_err_set(err, -EINVAL, "a NUL byte in the manifest: not text");
    }
    while (i < len && isspace((unsigned char)text[i])) {
        i++;
    }
    if (i < len && (text[i] == '{' || text[i] == '[')) {
        rc = manifest_parse_json(text, len, docs, err);
    } else {
        rc = manifest_parse_yaml(text, len, docs, err);
    }
    if (rc < 0) {
        json_decref(docs);
        return rc;
    }
    *out = docs;
    return 0;
}

/* ---- YAML printer ---- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void __attribute__((format(printf, 2, 3)))
sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->p != NULL ? b->cap - b->len : 0,
                      fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->p != NULL && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* Would s read back as the same string if written plain? */
static bool
yaml_plain_ok(const char *s)
{
    json_t *typed;
    bool ok;

    if (s[0] == '\0' || strpbrk(s, ":#{}[],&*!|>'\"%@`\n\t\\") != NULL || s[0] == '-' ||
        s[0] == '?' || s[0] == ' ' || s[strlen(s) - 1] == ' ') {
        return false;
    }
    typed = yaml_plain_scalar(s);
    ok = json_is_string(typed);
    json_decref(typed);
    return ok;
}

static void
yaml_scalar(struct sbuf *b, json_t *v)
{
    char *s;

    if (json_is_string(v) && yaml_plain_ok(json_string_value(v))) {
        sb_printf(b, "%s", json_string_value(v));
        return;
    }
    /* JSON strings are valid YAML double-quoted scalars. */
    s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    sb_printf(b, "%s", s != NULL ? s : "null");
    free(s);
}

static bool
yaml_is_empty_container(json_t *v)
{
    return (json_is_object(v) && json_object_size(v) == 0) ||
           (json_is_array(v) && json_array_size(v) == 0);
}

static void yaml_node(struct sbuf *b, json_t *v, int indent);

static void
yaml_value_after_key(struct sbuf *b, json_t *v, int indent)
{
    if (yaml_is_empty_container(v)) {
        sb_printf(b, " %s\n", json_is_object(v) ? "{}" : "[]");
    } else if (json_is_object(v) || json_is_array(v)) {
        sb_printf(b, "\n");
        yaml_node(b, v, indent + (json_is_object(v) ? 2 : 0));
    } else {
        sb_printf(b, " ");
        yaml_scalar(b, v);
        sb_printf(b, "\n");
    }
}

static void
yaml_node(struct sbuf *b, json_t *v, int indent)
{
    const char *k;
    json_t *x;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach(v, k, x) {
            sb_printf(b, "%*s", indent, "");
            if (yaml_plain_ok(k)) {
                sb_printf(b, "%s:", k);
            } else {
                json_t *ks = json_string(k);
                yaml_scalar(b, ks);
                json_decref(ks);
                sb_printf(b, ":");
            }
            yaml_value_after_key(b, x, indent);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) {
            sb_printf(b, "%*s-", indent, "");
            if (json_is_object(x) && !yaml_is_empty_container(x)) {
                struct sbuf sub = {0};
                yaml_node(&sub, x, indent + 2);
                /* The first line of the mapping goes on the dash's line. */
                sb_printf(b, " %s", sub.p != NULL ? sub.p + indent + 2 : "\n");
                b->oom |= sub.oom;
                free(sub.p);
            } else {
                yaml_value_after_key(b, x, indent);
            }
        }
    } else {
        sb_printf(b, "%*s", indent, "");
        yaml_scalar(b, v);
        sb_printf(b, "\n");
    }
}

int
ioc_yaml_dump(json_t *value, char **out)
{
    struct sbuf b = {0};

    yaml_node(&b, value, 0);
    if (b.oom || b.p == NULL) {
        free(b.p);
        return -ENOMEM;
    }
    *out = b.p;
    return 0;
}
