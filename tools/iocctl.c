/*
 * tools/iocctl.c - the ioc command line: argument parsing and the command table.
 *
 * Every human command ("bdev create malloc") is one row of g_cmds naming the
 * JSON-RPC method it calls and, for each positional argument and option, the
 * parameter it fills and how its text is converted (a size such as 64MiB, a
 * count, an errno name, a switch). Usage lines and help are generated from
 * the same rows, so they cannot disagree with what is parsed. The raw escape
 * hatch is `iocctl call METHOD '{json}'`.
 *
 * Parsing is done by hand rather than with getopt_long: options may follow
 * the command words (`iocctl bdev list -o json`), each command has its own
 * options, and errors should name the command and the offending word.
 * Global options (-s, -o, --timeout, -h) are accepted anywhere.
 *
 * Values are checked here where iocctl knows the syntax (sizes, counts,
 * errno names) so a typo fails fast with exit status 2; everything else is
 * left to the daemon, which is the authority and says what is wrong.
 */
#include "ioc/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "iocctl.h"
#include "lib/size.h"
#include "rpc/rpc.h"

#define CMD_MAX_ARGS 10
#define CMD_MAX_WORDS 4

enum arg_type {
    ARG_STRING, /* sent as a JSON string */
    ARG_SIZE,   /* "64MiB" or bytes, sent as an integer number of bytes */
    ARG_COUNT,  /* a non-negative integer */
    ARG_ERRNO,  /* EIO, ENOSPC... or a number, sent as a number */
    ARG_SWITCH, /* an option without a value, sent as true */
    ARG_SWITCH_OFF, /* an option without a value, sent as false ("--no-X") */
    ARG_LIST,   /* comma-separated words, sent as a JSON array of strings */
};

struct cmd_arg {
    const char *name;  /* "NAME" for a positional, "--size" for an option */
    const char *param; /* the JSON-RPC parameter it fills */
    enum arg_type type;
    bool required;
    const char *metavar; /* option value placeholder in usage, e.g. "BDEV" */
    const char *help;
};

struct cmd;
typedef int (*cmd_run_fn)(const struct cmd *cmd, const struct iocctl_opts *opts,
                          const char *const *vals);

struct cmd {
    const char *path;   /* command words: "bdev create malloc" */
    const char *method; /* JSON-RPC method */
    const char *summary;
    struct cmd_arg args[CMD_MAX_ARGS]; /* ends at .name == NULL */
    void (*print)(json_t *result);     /* table form; NULL prints plainly */
    cmd_run_fn run;                    /* NULL: the generic mapping below */
};

static int cmd_run_call(const struct cmd *cmd, const struct iocctl_opts *opts,
                        const char *const *vals);
static int cmd_run_pool_check(const struct cmd *cmd, const struct iocctl_opts *opts,
                              const char *const *vals);
static int cmd_run_iscsi_create(const struct cmd *cmd, const struct iocctl_opts *opts,
                                const char *const *vals);

static const struct cmd g_cmds[] = {
    {
        .path = "bdev list",
        .method = "bdev_list",
        .summary = "list block devices",
        .args =
            {
                {"NAME", "name", ARG_STRING, false, NULL, "show only this bdev"},
            },
        .print = iocctl_print_bdevs,
    },
    {
        .path = "bdev create malloc",
        .method = "bdev_malloc_create",
        .summary = "create a RAM disk",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "name of the new bdev"},
                {"--size", "size", ARG_SIZE, true, NULL, "capacity, e.g. 64MiB"},
                {"--block-size", "block_size", ARG_SIZE, false, NULL, "logical block size (512)"},
            },
    },
    {
        .path = "bdev create file",
        .method = "bdev_file_create",
        .summary = "serve a file or block device through io_uring",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "name of the new bdev"},
                {"PATH", "path", ARG_STRING, true, NULL, "file or block device to serve"},
                {"--size", "size", ARG_SIZE, false, NULL, "create or grow the file to this size"},
                {"--block-size", "block_size", ARG_SIZE, false, NULL, "logical block size"},
                {"--direct", "direct", ARG_SWITCH, false, NULL, "bypass the page cache (O_DIRECT)"},
                {"--no-map", "map", ARG_SWITCH_OFF, false, NULL,
                 "no shared mapping: every IO through io_uring"},
            },
    },
    {
        .path = "bdev create nbd",
        .method = "bdev_nbd_client_create",
        .summary = "a bdev backed by a remote NBD export",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "name of the new bdev"},
                {"URI", "uri", ARG_STRING, true, NULL,
                 "nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH"},
                {"--timeout", "io_timeout", ARG_COUNT, false, "S",
                 "fail IO outstanding longer than S seconds (30)"},
            },
    },
    {
        .path = "bdev create error",
        .method = "bdev_error_create",
        .summary = "stack a fault injector on a bdev",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "name of the new bdev"},
                {"--base", "base", ARG_STRING, true, "BDEV", "the bdev to stack on"},
            },
    },
    {
        .path = "bdev error inject",
        .method = "bdev_error_inject",
        .summary = "fail or delay matching IO on an error bdev",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "the error bdev"},
                {"--type", "io_type", ARG_STRING, true, "TYPE",
                 "read, write, flush, unmap, write_zeroes or all"},
                {"--errno", "errno", ARG_ERRNO, false, NULL,
                 "error to return: EIO (default), ENOSPC, N"},
                {"--offset", "offset", ARG_SIZE, false, NULL, "only IO touching bytes from here"},
                {"--length", "length", ARG_SIZE, false, NULL, "...for this many bytes"},
                {"--after", "after", ARG_COUNT, false, NULL, "let N matching IOs pass first"},
                {"--count", "count", ARG_COUNT, false, NULL, "fail only N IOs (default: all)"},
                {"--delay-us", "delay_us", ARG_COUNT, false, NULL, "delay matching IO by N us"},
            },
    },
    {
        .path = "bdev error clear",
        .method = "bdev_error_clear",
        .summary = "remove every injection rule of an error bdev",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "the error bdev"},
            },
    },
    {
        .path = "bdev delete",
        .method = "bdev_delete",
        .summary = "delete a block device that nothing uses",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "the bdev to delete"},
            },
    },
    {
        .path = "nbd export add",
        .method = "nbd_export_add",
        .summary = "export a bdev over NBD",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "export name clients ask for"},
                {"BDEV", "bdev", ARG_STRING, true, NULL, "the bdev to export"},
                {"--read-only", "read_only", ARG_SWITCH, false, NULL, "refuse writes"},
            },
    },
    {
        .path = "nbd export remove",
        .method = "nbd_export_remove",
        .summary = "stop exporting (disconnects clients)",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "the export"},
            },
    },
    {
        .path = "nbd export list",
        .method = "nbd_export_list",
        .summary = "list NBD exports",
        .print = iocctl_print_nbd_exports,
    },
    {
        .path = "vhost add",
        .method = "vhost_blk_export_add",
        .summary = "export a bdev as vhost-user-blk on a unix socket",
        .args =
            {
                {"SOCKET", "socket", ARG_STRING, true, NULL, "unix socket path to listen on"},
                {"BDEV", "bdev", ARG_STRING, true, NULL, "the bdev to export"},
                {"--num-queues", "num_queues", ARG_COUNT, false, "N", "virtqueues (1..16)"},
                {"--read-only", "read_only", ARG_SWITCH, false, NULL, "refuse writes"},
            },
    },
    {
        .path = "vhost remove",
        .method = "vhost_blk_export_remove",
        .summary = "stop a vhost-user-blk export (disconnects clients)",
        .args = {{"SOCKET", "socket", ARG_STRING, true, NULL, "the export's socket"}},
    },
    {
        .path = "vhost list",
        .method = "vhost_blk_export_list",
        .summary = "list vhost-user-blk exports",
        .print = iocctl_print_vhost_exports,
    },
    {
        .path = "nexus create",
        .method = "nexus_create",
        .summary = "create a replicated volume over children",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "name of the nexus bdev"},
                {"CHILDREN", "children", ARG_LIST, true, NULL,
                 "comma-separated bdev names or nbd:// URIs"},
                {"--size", "size", ARG_SIZE, false, NULL, "capacity (default: smallest child)"},
                {"--generation", "generation", ARG_COUNT, false, "N", "fencing epoch"},
                {"--state-path", "state_path", ARG_STRING, false, "PATH", "membership record"},
                {"--segment-size", "segment_size", ARG_SIZE, false, NULL, "dirty-log unit (1MiB)"},
                {"--io-timeout", "io_timeout", ARG_COUNT, false, "S", "nbd:// child timeout (5)"},
                {"--rate", "rebuild_rate", ARG_SIZE, false, NULL, "rebuild bytes/s limit"},
                {"--verify", "rebuild_verify", ARG_SWITCH, false, NULL, "verify rebuilt data"},
                {"--no-auto-return", "no_auto_return", ARG_SWITCH, false, NULL,
                 "do not bring faulted children back by themselves"},
            },
    },
    {
        .path = "nexus destroy",
        .method = "nexus_destroy",
        .summary = "delete a nexus and its state file",
        .args = {{"NAME", "name", ARG_STRING, true, NULL, "the nexus"}},
    },
    {
        .path = "nexus list",
        .method = "nexus_list",
        .summary = "list nexuses, children and rebuild progress",
        .args = {{"NAME", "name", ARG_STRING, false, NULL, "only this nexus"}},
        .print = iocctl_print_nexus,
    },
    {
        .path = "nexus child add",
        .method = "nexus_child_add",
        .summary = "add a child (rebuilt in full)",
        .args = {{"NAME", "name", ARG_STRING, true, NULL, "the nexus"},
                 {"URI", "uri", ARG_STRING, true, NULL, "bdev name or nbd:// URI"}},
    },
    {
        .path = "nexus child remove",
        .method = "nexus_child_remove",
        .summary = "remove a child",
        .args = {{"NAME", "name", ARG_STRING, true, NULL, "the nexus"},
                 {"URI", "uri", ARG_STRING, true, NULL, "the child"}},
    },
    {
        .path = "nexus child fault",
        .method = "nexus_child_fault",
        .summary = "take a child out of the write set",
        .args = {{"NAME", "name", ARG_STRING, true, NULL, "the nexus"},
                 {"URI", "uri", ARG_STRING, true, NULL, "the child"}},
    },
    {
        .path = "nexus child online",
        .method = "nexus_child_online",
        .summary = "bring a faulted child back (rebuilt first)",
        .args = {{"NAME", "name", ARG_STRING, true, NULL, "the nexus"},
                 {"URI", "uri", ARG_STRING, true, NULL, "the child"}},
    },
    {
        .path = "pool create",
        .method = "pool_create",
        .summary = "format a bdev or a file as a pool",
        .args =
            {
                {"NAME", "name", ARG_STRING, true, NULL, "name of the new pool"},
                {"--bdev", "bdev", ARG_STRING, false, "BDEV", "the bdev to format"},
                {"--path", "path", ARG_STRING, false, "PATH", "or a file (created with --size)"},
                {"--size", "size", ARG_SIZE, false, NULL, "bytes to use (default: all)"},
                {"--cluster-size", "cluster_size", ARG_SIZE, false, NULL,
                 "allocation unit, 64KiB..64MiB (1MiB)"},
            },
    },
    {
        .path = "pool import",
        .method = "pool_import",
        .summary = "import an existing pool",
        .args =
            {
                {"--path", "path", ARG_STRING, false, "PATH", "the pool's file or device"},
                {"--bdev", "bdev", ARG_STRING, false, "BDEV", "or the bdev holding it"},
                {"--name", "name", ARG_STRING, false, "NAME", "import under another name"},
            },
    },
    {
        .path = "pool export",
        .method = "pool_export",
        .summary = "commit and forget a pool (its data stays)",
        .args = {{"NAME", "name", ARG_STRING, true, NULL, "the pool"}},
    },
    {
        .path = "pool destroy",
        .method = "pool_destroy",
        .summary = "forget a pool and wipe its superblocks",
        .args = {{"NAME", "name", ARG_STRING, true, NULL, "the pool"}},
    },
    {
        .path = "pool list",
        .method = "pool_list",
        .summary = "list pools",
        .args = {{"NAME", "name", ARG_STRING, false, NULL, "show only this pool"}},
        .print = iocctl_print_pools,
    },
    {
        .path = "iscsi target create",
        .summary = "export bdevs as the LUNs of an iSCSI target",
        .args =
            {
                {"IQN", NULL, ARG_STRING, true, NULL, "target name, e.g. iqn.2024-01.io.ioc:vol1"},
                {"BDEVS", NULL, ARG_STRING, true, NULL, "bdevs, comma-separated: LUN 0, 1, ..."},
                {"--allow", NULL, ARG_STRING, false, "IQNS", "only these initiators (comma-separated)"},
                {"--chap-user", NULL, ARG_STRING, false, "USER", "require CHAP with this user..."},
                {"--chap-secret", NULL, ARG_STRING, false, "SECRET", "...and secret"},
                {"--mutual-user", NULL, ARG_STRING, false, "USER", "mutual CHAP: the target's user..."},
                {"--mutual-secret", NULL, ARG_STRING, false, "SECRET", "...and secret"},
            },
        .run = cmd_run_iscsi_create,
    },
    {
        .path = "iscsi target delete",
        .method = "iscsi_target_delete",
        .summary = "delete an iSCSI target and close its sessions",
        .args = {{"IQN", "iqn", ARG_STRING, true, NULL, "the target"}},
    },
    {
        .path = "iscsi target list",
        .method = "iscsi_target_list",
        .summary = "list iSCSI targets and their sessions",
        .print = iocctl_print_iscsi_targets,
    },
    {
        .path = "iscsi options set",
        .method = "iscsi_options_set",
        .summary = "set iSCSI negotiation defaults for new logins",
        .args =
            {
                {"--max-recv-data-segment-length", "max_recv_data_segment_length", ARG_SIZE,
                 false, NULL, "largest PDU data we accept (256KiB)"},
                {"--max-burst-length", "max_burst_length", ARG_SIZE, false, NULL,
                 "largest solicited burst (8MiB)"},
                {"--first-burst-length", "first_burst_length", ARG_SIZE, false, NULL,
                 "largest unsolicited burst (256KiB)"},
                {"--initial-r2t", "initial_r2t", ARG_SWITCH, false, NULL,
                 "ask for R2T before any write data"},
            },
    },
    {
        .path = "pool check",
        .summary = "check a pool file offline (exit 0 clean, 1 problems, 2 unreadable)",
        .args = {{"PATH", NULL, ARG_STRING, true, NULL, "the pool's file or device"}},
        .run = cmd_run_pool_check,
    },
    {
        .path = "volume create",
        .method = "volume_create",
        .summary = "create a thin volume (bdev POOL/NAME)",
        .args =
            {
                {"POOL", "pool", ARG_STRING, true, NULL, "the pool"},
                {"NAME", "name", ARG_STRING, true, NULL, "the new volume"},
                {"--size", "size", ARG_SIZE, true, NULL, "capacity, e.g. 10GiB"},
            },
    },
    {
        .path = "volume delete",
        .method = "volume_delete",
        .summary = "delete a volume or snapshot",
        .args = {{"VOLUME", "volume", ARG_STRING, true, NULL, "POOL/NAME"}},
    },
    {
        .path = "volume resize",
        .method = "volume_resize",
        .summary = "change the size of a volume",
        .args =
            {
                {"VOLUME", "volume", ARG_STRING, true, NULL, "POOL/NAME"},
                {"--size", "size", ARG_SIZE, true, NULL, "the new capacity"},
            },
    },
    {
        .path = "volume snapshot",
        .method = "volume_snapshot",
        .summary = "take a read-only snapshot (O(1))",
        .args =
            {
                {"VOLUME", "volume", ARG_STRING, true, NULL, "POOL/NAME"},
                {"NAME", "name", ARG_STRING, true, NULL, "the snapshot's name"},
            },
    },
    {
        .path = "volume clone",
        .method = "volume_clone",
        .summary = "create a writable volume from a snapshot",
        .args =
            {
                {"SNAPSHOT", "snapshot", ARG_STRING, true, NULL, "POOL/SNAPSHOT"},
                {"NAME", "name", ARG_STRING, true, NULL, "the new volume"},
            },
    },
    {
        .path = "volume list",
        .method = "volume_list",
        .summary = "list volumes and snapshots",
        .args = {{"POOL", "pool", ARG_STRING, false, NULL, "only this pool"}},
        .print = iocctl_print_volumes,
    },
    {
        .path = "volume attr set",
        .method = "volume_attr_set",
        .summary = "set a volume attribute (no VALUE: remove it)",
        .args =
            {
                {"VOLUME", "volume", ARG_STRING, true, NULL, "POOL/NAME"},
                {"KEY", "key", ARG_STRING, true, NULL, "attribute name"},
                {"VALUE", "value", ARG_STRING, false, NULL, "its value"},
            },
    },
    {
        .path = "volume attr get",
        .method = "volume_attr_get",
        .summary = "read a volume attribute",
        .args =
            {
                {"VOLUME", "volume", ARG_STRING, true, NULL, "POOL/NAME"},
                {"KEY", "key", ARG_STRING, true, NULL, "attribute name"},
            },
    },
    {
        .path = "methods",
        .method = "rpc_get_methods",
        .summary = "list the JSON-RPC methods iocd serves",
        .print = iocctl_print_methods,
    },
    {
        .path = "call",
        .summary = "call any JSON-RPC method; print its result as JSON",
        .args =
            {
                {"METHOD", NULL, ARG_STRING, true, NULL, "e.g. bdev_list"},
                {"PARAMS", NULL, ARG_STRING, false, NULL,
                 "a JSON object, or - to read it from stdin"},
            },
        .run = cmd_run_call,
    },
};

/* ---- usage and help ---- */

/* An option without a value. */
static bool
arg_is_switch(const struct cmd_arg *a)
{
    return a->type == ARG_SWITCH || a->type == ARG_SWITCH_OFF;
}

static const char *
arg_metavar(const struct cmd_arg *a)
{
    if (a->metavar != NULL) {
        return a->metavar;
    }
    switch (a->type) {
    case ARG_SIZE:
        return "SIZE";
    case ARG_COUNT:
        return "N";
    case ARG_ERRNO:
        return "ERRNO";
    default:
        return "VALUE";
    }
}

static void
cmd_usage(const struct cmd *cmd, FILE *out)
{
    fprintf(out, "iocctl %s", cmd->path);
    for (const struct cmd_arg *a = cmd->args; a->name != NULL; a++) {
        const char *open = a->required ? "" : "[", *close = a->required ? "" : "]";
        if (a->name[0] != '-' || arg_is_switch(a)) {
            fprintf(out, " %s%s%s", open, a->name, close);
        } else {
            fprintf(out, " %s%s %s%s", open, a->name, arg_metavar(a), close);
        }
    }
    fprintf(out, "\n");
}

static void
cmd_help(const struct cmd *cmd)
{
    printf("usage: ");
    cmd_usage(cmd, stdout);
    printf("\n%s", cmd->summary);
    printf(cmd->method != NULL ? " (JSON-RPC %s)\n\n" : "\n\n", cmd->method);
    for (const struct cmd_arg *a = cmd->args; a->name != NULL; a++) {
        char left[64];
        snprintf(left, sizeof(left), "%s%s%s", a->name,
                 a->name[0] == '-' && !arg_is_switch(a) ? " " : "",
                 a->name[0] == '-' && !arg_is_switch(a) ? arg_metavar(a) : "");
        printf("  %-22s %s\n", left, a->help);
    }
    printf("\nglobal options: -s/--rpc-socket PATH, -o/--output table|json, --timeout SECONDS\n");
}

static bool
path_has_prefix(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);

    return n == 0 || (strncmp(path, prefix, n) == 0 && (path[n] == ' ' || path[n] == '\0'));
}

/* Help for a group of commands ("bdev", "nbd export"), or for all of them when prefix is "". */
static void
group_help(const char *prefix, FILE *out)
{
    fprintf(out, "usage: iocctl [-s SOCKET] [-o table|json] %s%sCOMMAND [ARGS...]\n\n", prefix,
            prefix[0] ? " " : "");
    fprintf(out, "commands:\n");
    for (size_t i = 0; i < IOC_ARRAY_SIZE(g_cmds); i++) {
        if (path_has_prefix(g_cmds[i].path, prefix)) {
            fprintf(out, "  %-22s %s\n", g_cmds[i].path, g_cmds[i].summary);
        }
    }
    if (prefix[0] == '\0') {
        fprintf(out,
                "\noptions:\n"
                "  -s, --rpc-socket PATH  iocd's socket (default %s)\n"
                "  -o, --output FORMAT    table (default) or json: the raw result\n"
                "  --timeout SECONDS      give up waiting for iocd (default 60, 0: never)\n"
                "  -h, --help             help; after a command, help for it\n"
                "  -V, --version          print the version\n",
                IOC_RPC_DEFAULT_SOCKET);
    }
    fprintf(out, "\n'iocctl %s%sCOMMAND --help' shows a command's arguments.\n", prefix,
            prefix[0] ? " " : "");
}

/* The distinct words that may follow prefix, for "expected one of" messages. */
static void
group_next_words(const char *prefix, char *buf, size_t len)
{
    const char *seen[IOC_ARRAY_SIZE(g_cmds)];
    size_t nseen = 0, n = strlen(prefix), off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < IOC_ARRAY_SIZE(g_cmds); i++) {
        const char *rest;
        bool dup = false;
        int wlen;

        if (!path_has_prefix(g_cmds[i].path, prefix) || strlen(g_cmds[i].path) == n) {
            continue;
        }
        rest = g_cmds[i].path + n + (n ? 1 : 0);
        wlen = (int)strcspn(rest, " ");
        for (size_t k = 0; k < nseen; k++) {
            dup = dup || (strncmp(seen[k], rest, (size_t)wlen) == 0 &&
                          (seen[k][wlen] == ' ' || seen[k][wlen] == '\0'));
        }
        if (dup || off >= len) {
            continue;
        }
        seen[nseen++] = rest;
        off += (size_t)snprintf(buf + off, len - off, "%s%.*s", off ? ", " : "", wlen, rest);
    }
}

/* ---- parsing ---- */

struct cli {
    struct iocctl_opts opts;
    bool help;
    char prefix[128];      /* command words seen so far */
    const struct cmd *cmd; /* set once prefix names a command */
    const char *vals[CMD_MAX_ARGS];
    int npos; /* positionals seen */
};

/* Report a command line mistake with the usage line of the command. Returns exit status 2. */
static int __attribute__((format(printf, 2, 3)))
usage_error(const struct cli *cli, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "iocctl: %s%s", cli->prefix, cli->prefix[0] ? ": " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    if (cli->cmd != NULL) {
        fprintf(stderr, "usage: ");
        cmd_usage(cli->cmd, stderr);
    } else {
        fprintf(stderr, "see 'iocctl %s%s--help'\n", cli->prefix, cli->prefix[0] ? " " : "");
    }
    return IOCCTL_EXIT_USAGE;
}

static const struct cmd *
cmd_find(const char *path)
{
    for (size_t i = 0; i < IOC_ARRAY_SIZE(g_cmds); i++) {
        if (strcmp(g_cmds[i].path, path) == 0) {
            return &g_cmds[i];
        }
    }
    return NULL;
}

static bool
group_exists(const char *prefix)
{
    for (size_t i = 0; i < IOC_ARRAY_SIZE(g_cmds); i++) {
        if (path_has_prefix(g_cmds[i].path, prefix)) {
            return true;
        }
    }
    return false;
}

/* A word while no command is resolved yet: extend the command path. */
static int
cli_word(struct cli *cli, const char *word)
{
    char next[sizeof(cli->prefix)];
    char words[256];

    int n = snprintf(next, sizeof(next), "%s%s%s", cli->prefix, cli->prefix[0] ? " " : "", word);

    if (n < 0 || (size_t)n >= sizeof(next) || !group_exists(next) || strchr(word, ' ') != NULL) {
        group_next_words(cli->prefix, words, sizeof(words));
        fprintf(stderr, "iocctl: %s%sunknown command '%s'; expected one of: %s\n", cli->prefix,
                cli->prefix[0] ? ": " : "", word, words);
        return IOCCTL_EXIT_USAGE;
    }
    memcpy(cli->prefix, next, sizeof(next));
    cli->cmd = cmd_find(cli->prefix);
    return 0;
}

static int
cli_positional(struct cli *cli, const char *word)
{
    int seen = 0;

    for (int i = 0; cli->cmd->args[i].name != NULL; i++) {
        if (cli->cmd->args[i].name[0] != '-' && seen++ == cli->npos) {
            cli->vals[i] = word;
            cli->npos++;
            return 0;
        }
    }
    return usage_error(cli, "unexpected argument '%s'", word);
}

static bool
is_global_option(const char *name)
{
    static const char *const names[] = {"-s", "--rpc-socket", "-o", "--output", "--timeout"};

    for (size_t i = 0; i < IOC_ARRAY_SIZE(names); i++) {
        if (strcmp(name, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int
cli_global_option(struct cli *cli, const char *name, const char *value)
{
    char *end;
    long t;

    if (strcmp(name, "-s") == 0 || strcmp(name, "--rpc-socket") == 0) {
        cli->opts.socket = value;
    } else if (strcmp(name, "--timeout") == 0) {
        t = strtol(value, &end, 10);
        if (*value == '\0' || *end != '\0' || t < 0 || t > 86400) {
            return usage_error(cli, "--timeout: expected seconds from 0 to 86400, got '%s'", value);
        }
        cli->opts.timeout_s = (int)t;
    } else if (strcmp(value, "json") == 0 || strcmp(value, "table") == 0) {
        cli->opts.json = strcmp(value, "json") == 0;
    } else {
        return usage_error(cli, "%s: expected table or json, got '%s'", name, value);
    }
    return 0;
}

/* Index of the command's option called name, or -1. */
static int
cmd_option_index(const struct cmd *cmd, const char *name)
{
    for (int k = 0; cmd != NULL && cmd->args[k].name != NULL; k++) {
        if (cmd->args[k].name[0] == '-' && strcmp(cmd->args[k].name, name) == 0) {
            return k;
        }
    }
    return -1;
}

/*
 * The option at argv[*i], as "--name value" or "--name=value". Global ones
 * are accepted whatever the command; the command's own are looked up in its
 * table. Advances *i past a separate value.
 */
static int
cli_option(struct cli *cli, int argc, char **argv, int *i)
{
    const char *arg = argv[*i], *eq = strchr(arg, '='), *value;
    char name[64];
    int idx;

    snprintf(name, sizeof(name), "%.*s", (int)(eq ? (size_t)(eq - arg) : strlen(arg)), arg);
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
        cli->help = true;
        return 0;
    }
    idx = cmd_option_index(cli->cmd, name);
    if (idx < 0 && !is_global_option(name)) {
        return usage_error(cli, "unknown option '%s'", name);
    }
    if (idx >= 0 && arg_is_switch(&cli->cmd->args[idx])) {
        if (eq != NULL) {
            return usage_error(cli, "option '%s' takes no value", name);
        }
        cli->vals[idx] = "true";
        return 0;
    }
    if (eq == NULL && *i + 1 >= argc) {
        return usage_error(cli, "option '%s' needs a value", name);
    }
    value = eq != NULL ? eq + 1 : argv[++*i];
    if (idx < 0) {
        return cli_global_option(cli, name, value);
    }
    cli->vals[idx] = value;
    return 0;
}

static int
cli_parse(struct cli *cli, int argc, char **argv)
{
    bool only_words = false;
    int rc = 0;

    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!only_words && strcmp(a, "--") == 0) {
            only_words = true;
        } else if (!only_words && (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0)) {
            printf("iocctl %s\n", IOC_VERSION);
            exit(IOCCTL_EXIT_OK);
        } else if (!only_words && a[0] == '-' && a[1] != '\0') {
            rc = cli_option(cli, argc, argv, &i);
        } else if (cli->cmd == NULL) {
            rc = cli_word(cli, a);
        } else {
            rc = cli_positional(cli, a);
        }
    }
    return rc;
}

/* ---- running ---- */

static int
arg_to_json(const struct cli *cli, const struct cmd_arg *a, const char *text, json_t **out)
{
    uint64_t n;
    char *end;

    switch (a->type) {
    case ARG_STRING:
        *out = json_string(text);
        return 0;
    case ARG_SWITCH:
        *out = json_true();
        return 0;
    case ARG_SWITCH_OFF:
        *out = json_false();
        return 0;
    case ARG_LIST:
        *out = json_array();
        for (const char *p = text; *p != '\0';) {
            size_t len = strcspn(p, ",");
            json_array_append_new(*out, json_stringn(p, len));
            p += len + (p[len] == ',');
        }
        return 0;
    case ARG_SIZE:
        if (ioc_size_parse(text, &n) != 0 || n > INT64_MAX) {
            return usage_error(cli,
                               "%s: expected a size such as 64MiB or a number of bytes, "
                               "got '%s'",
                               a->name, text);
        }
        break;
    case ARG_COUNT:
    case ARG_ERRNO:
        errno = 0;
        n = strtoull(text, &end, 10);
        if (*text >= '0' && *text <= '9' && *end == '\0' && errno == 0 && n <= INT64_MAX) {
            break;
        }
        if (a->type == ARG_ERRNO) {
            for (int e = 1; e < 4096; e++) {
                const char *ename = strerrorname_np(e);
                if (ename != NULL && strcmp(ename, text) == 0) {
                    *out = json_integer(e);
                    return 0;
                }
            }
        }
        return usage_error(cli, "%s: expected %s, got '%s'", a->name,
                           a->type == ARG_ERRNO ? "an errno name such as EIO, or a number"
                                                : "a non-negative integer",
                           text);
    }
    *out = json_integer((json_int_t)n);
    return 0;
}

/* The generic command: arguments to params, call, print. */
static int
cmd_run_mapped(const struct cli *cli)
{
    const struct cmd *cmd = cli->cmd;
    json_t *params = json_object(), *result = NULL, *v = NULL;
    int rc;

    for (int i = 0; cmd->args[i].name != NULL; i++) {
        if (cli->vals[i] == NULL) {
            continue;
        }
        rc = arg_to_json(cli, &cmd->args[i], cli->vals[i], &v);
        if (rc != 0) {
            json_decref(params);
            return rc;
        }
        json_object_set_new(params, cmd->args[i].param, v);
    }
    if (cmd->print == iocctl_print_methods) {
        json_object_set_new(params, "detail", json_true());
    }
    rc = iocctl_call(&cli->opts, cmd->method, params, &result);
    if (rc != IOCCTL_EXIT_OK) {
        return rc;
    }
    if (cli->opts.json) {
        iocctl_print_json(result);
    } else if (cmd->print != NULL) {
        cmd->print(result);
    } else {
        iocctl_print_plain(result);
    }
    json_decref(result);
    return IOCCTL_EXIT_OK;
}

/* Parse `call` parameters from text, or stdin when text is "-". */
static int
call_params(const char *text, json_t **out)
{
    json_error_t jerr;

    if (text == NULL) {
        *out = NULL;
        return 0;
    }
    *out = strcmp(text, "-") == 0 ? json_loadf(stdin, 0, &jerr) : json_loads(text, 0, &jerr);
    if (*out == NULL || !json_is_object(*out)) {
        if (*out == NULL) {
            fprintf(stderr, "iocctl: call: PARAMS is not JSON: %s (at byte %d)\n", jerr.text,
                    jerr.position);
        } else {
            fprintf(stderr, "iocctl: call: PARAMS must be a JSON object such as "
                            "'{\"name\": \"m0\"}'\n");
        }
        json_decref(*out);
        return IOCCTL_EXIT_USAGE;
    }
    return 0;
}

static int
cmd_run_iscsi_create(const struct cmd *cmd, const struct iocctl_opts *opts,
                     const char *const *vals)
{
    (void)cmd;
    return iocctl_iscsi_target_create(opts, vals);
}

/* Offline: reads the file itself, no daemon involved. */
static int
cmd_run_pool_check(const struct cmd *cmd, const struct iocctl_opts *opts,
                   const char *const *vals)
{
    (void)cmd;
    (void)opts;
    return iocctl_pool_check(vals[0]);
}

static int
cmd_run_call(const struct cmd *cmd, const struct iocctl_opts *opts, const char *const *vals)
{
    json_t *params, *result = NULL;
    int rc;

    (void)cmd;
    rc = call_params(vals[1], &params);
    if (rc != 0) {
        return rc;
    }
    rc = iocctl_call(opts, vals[0], params, &result);
    if (rc == IOCCTL_EXIT_OK) {
        iocctl_print_json(result);
        json_decref(result);
    }
    return rc;
}

static int
cli_run(struct cli *cli)
{
    const struct cmd *cmd = cli->cmd;

    for (int i = 0; cmd->args[i].name != NULL; i++) {
        if (cmd->args[i].required && cli->vals[i] == NULL) {
            return usage_error(cli, "%s: required", cmd->args[i].name);
        }
    }
    if (cmd->run != NULL) {
        return cmd->run(cmd, &cli->opts, cli->vals);
    }
    return cmd_run_mapped(cli);
}

int
main(int argc, char **argv)
{
    struct cli cli = {.opts = {.socket = IOC_RPC_DEFAULT_SOCKET, .timeout_s = 60}};
    char words[256];
    int rc;

    /* apply/get/describe/delete talk to etcd and parse their own options. */
    for (int i = 1; i < argc; i++) {
        if (is_global_option(argv[i]) || strcmp(argv[i], "--etcd") == 0) {
            i++;
        } else if (argv[i][0] != '-') {
            if (iocctl_cluster_is_command(argv[i])) {
                return iocctl_cluster_main(argc, argv);
            }
            break;
        }
    }
    rc = cli_parse(&cli, argc, argv);
    if (rc != 0) {
        return rc;
    }
    if (cli.help) {
        if (cli.cmd != NULL) {
            cmd_help(cli.cmd);
        } else {
            group_help(cli.prefix, stdout);
        }
        return IOCCTL_EXIT_OK;
    }
    if (cli.prefix[0] == '\0') {
        group_help("", stderr);
        return IOCCTL_EXIT_USAGE;
    }
    if (cli.cmd == NULL) {
        group_next_words(cli.prefix, words, sizeof(words));
        fprintf(stderr, "iocctl: %s: missing command; expected one of: %s\n", cli.prefix, words);
        return IOCCTL_EXIT_USAGE;
    }
    return cli_run(&cli);
}
