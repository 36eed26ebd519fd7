/*
 * daemon/main.c - iocd: start-up and shutdown ordering, signals, options.
 *
 * Order matters: reactors first (everything runs on them), then the targets
 * that accept connections onto them, then the RPC server that lets people
 * create bdevs and exports. Shutdown is the reverse, so no RPC can create an
 * export while its target is going away, and no connection outlives its
 * reactor. The main thread does no IO: it waits for SIGINT/SIGTERM.
 */
#include "ioc/common.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bdev/bdev.h"
#include "core/log.h"
#include "core/reactor.h"
#include "pool/pool.h"
#include "agent/cp.h"
#include "rpc/rpc.h"
#include "target/iscsi/iscsi.h"
#include "target/nbd/nbd.h"
#include "target/target_stream.h"
#include "target/vhost/vhost.h"
#include "nexus/nexus.h"

#define IOC_NBD_DEFAULT_LISTEN "127.0.0.1:10809"

struct daemon_opts {
    struct ioc_reactor_opts reactor;
    const char *rpc_socket;
    const char *nbd_listen;
    const char *nbd_socket;
    const char *iscsi_listen;  /* NULL = no iSCSI target */
    bool iscsi_explicit;       /* --iscsi-listen given: failing to listen is fatal */
    const char *pools[16];  /* --pool PATH: imported at start */
    unsigned npools;
    struct ioc_agent_opts agent;      /* --node NAME: run the node agent (agent.node set) */
    struct ioc_controller_opts ctl;   /* --controller */
    bool controller;
};

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: iocd [OPTIONS]\n"
            "\n"
            "The ioc data-plane daemon: serves block devices over NBD from user space.\n"
            "Create devices and exports at run time with iocctl (see docs/iocctl.md).\n"
            "\n"
            "  -c, --cores N           reactor threads (default 1)\n"
            "  -r, --rpc-socket PATH   JSON-RPC unix socket (default %s)\n"
            "  -l, --nbd-listen A:P    NBD TCP address, or 'none' (default %s)\n"
            "  -u, --nbd-socket PATH   also serve NBD on a unix socket\n"
            "      --iscsi-listen A:P  iSCSI TCP address, or 'none' (default %s)\n"
            "  -p, --poll-mode MODE    adaptive (default), busy or sleep\n"
            "      --pool PATH         import the pool in PATH at start (repeatable)\n"
            "      --state-dir DIR     where nexuses record their membership (default: memory)\n"
            "      --spin-max-us N     cap of the adaptive spin window while the reactor has\n"
            "                          its CPU to itself (default 32; contended: at most 4)\n"
            "      --coalesce-us N     longest hold of a connection's replies to send several\n"
            "                          at once, while its traffic allows (default 50; 0 = off)\n"
            "      --pin-cpus          pin reactor i to CPU i\n"
            "      --node NAME         run the node agent for NAME (needs --etcd)\n"
            "      --node-labels K=V,..  labels of this node (placement)\n"
            "      --controller        run the controller (leader-elected; needs --etcd)\n"
            "      --etcd URL[,URL]    etcd endpoints (default $IOC_ETCD or http://127.0.0.1:2379)\n"
            "      --replica-grace D   controller: replace a lost replica after D (default 5m)\n"
            "  -L, --log-level LEVEL   err, warn, notice (default), info, debug\n"
            "  -d, --debug COMPONENT   debug output for a component (nbd, bdev, rpc, all)\n"
            "  -V, --version           print the version\n"
            "  -h, --help              this text\n",
            IOC_RPC_DEFAULT_SOCKET, IOC_NBD_DEFAULT_LISTEN, IOC_ISCSI_DEFAULT_LISTEN);
}

static int
parse_uint(const char *opt, const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || *s == '\0' || *out > max) {
        fprintf(stderr, "iocd: %s: expected a number up to %llu, got '%s'\n", opt, max, s);
        return -EINVAL;
    }
    return 0;
}

static int
parse_args(int argc, char **argv, struct daemon_opts *o)
{
    static const struct option longopts[] = {
        {"cores", required_argument, NULL, 'c'},
        {"rpc-socket", required_argument, NULL, 'r'},
        {"nbd-listen", required_argument, NULL, 'l'},
        {"nbd-socket", required_argument, NULL, 'u'},
        {"iscsi-listen", required_argument, NULL, 'I'},
        {"poll-mode", required_argument, NULL, 'p'},
        {"spin-max-us", required_argument, NULL, 'S'},
        {"pin-cpus", no_argument, NULL, 'P'},
        {"coalesce-us", required_argument, NULL, 'H'},
        {"pool", required_argument, NULL, 'o'},
        {"state-dir", required_argument, NULL, 'D'},
        {"node", required_argument, NULL, 'N'},
        {"node-labels", required_argument, NULL, 'B'},
        {"controller", no_argument, NULL, 'C'},
        {"etcd", required_argument, NULL, 'E'},
        {"replica-grace", required_argument, NULL, 'G'},
        {"log-level", required_argument, NULL, 'L'},
        {"debug", required_argument, NULL, 'd'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long long v;
    int c;

    while ((c = getopt_long(argc, argv, "c:r:l:u:p:L:d:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (parse_uint("--cores", optarg, 64, &v) < 0 || v == 0) {
                fprintf(stderr, "iocd: --cores: expected 1..64\n");
                return -EINVAL;
            }
            o->reactor.count = (unsigned)v;
            break;
        case 'r':
            o->rpc_socket = optarg;
            break;
        case 'l':
            o->nbd_listen = strcmp(optarg, "none") == 0 ? NULL : optarg;
            break;
        case 'u':
            o->nbd_socket = optarg;
            break;
        case 'I':
            o->iscsi_listen = strcmp(optarg, "none") == 0 ? NULL : optarg;
            o->iscsi_explicit = true;
            break;
        case 'p':
            if (ioc_poll_mode_parse(optarg, &o->reactor.mode) < 0) {
                fprintf(stderr, "iocd: --poll-mode: expected adaptive, busy or sleep, got '%s'\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case 'S':
            if (parse_uint("--spin-max-us", optarg, 1000000, &v) < 0) {
                return -EINVAL;
            }
            o->reactor.spin_max_ns = v * 1000;
            break;
        case 'P':
            o->reactor.pin_cpus = true;
            break;
        case 'H':
            if (parse_uint("--coalesce-us", optarg, 10000, &v) < 0) {
                return -EINVAL;
            }
            ioc_target_stream_set_coalesce_us((unsigned)v);
            break;
        case 'o':
            if (o->npools == IOC_ARRAY_SIZE(o->pools)) {
                fprintf(stderr, "iocd: --pool: at most %zu pools\n", IOC_ARRAY_SIZE(o->pools));
                return -EINVAL;
            }
            o->pools[o->npools++] = optarg;
            break;
        case 'D':
            ioc_nexus_set_state_dir(optarg);
            break;
        case 'N':
            o->agent.node = optarg;
            break;
        case 'B':
            o->agent.labels = optarg;
            break;
        case 'C':
            o->controller = true;
            break;
        case 'E':
            o->agent.etcd = o->ctl.etcd = optarg;
            break;
        case 'G':
            if (ioc_duration_parse(optarg, &o->ctl.replica_grace_s) < 0) {
                fprintf(stderr, "iocd: --replica-grace: expected a duration such as 30s or 5m, "
                        "got '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case 'L':
            if (ioc_log_set_level(optarg) < 0) {
                fprintf(stderr, "iocd: --log-level: expected err, warn, notice, info or debug\n");
                return -EINVAL;
            }
            break;
        case 'd':
            ioc_log_set_debug(optarg, true);
            g_ioc_log_level = IOC_LOG_DEBUG;
            break;
        case 'V':
            printf("iocd %s\n", IOC_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "iocd: unexpected argument '%s' (see iocd --help)\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

/* Block the signals we handle in every thread; main waits for them with sigwait. */
static void
signals_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void
bdev_collect_name(struct ioc_bdev *bdev, void *arg)
{
    json_t *names = arg;

    json_array_append_new(names, json_string(ioc_bdev_name(bdev)));
}

/* Pool volumes belong to their pool: only exporting the pool removes them. */
static void
bdev_collect_name_not_lvol(struct ioc_bdev *bdev, void *arg)
{
    if (strcmp(ioc_bdev_module_name(bdev), "lvol") != 0) {
        bdev_collect_name(bdev, arg);
    }
}

/*
 * Delete bdevs until none are left (or none of the kind `collect` picks):
 * stacked ones first free their bases, a base in use refuses until then.
 */
static void
bdevs_delete_all_of(void (*collect)(struct ioc_bdev *, void *))
{
    for (int round = 0; round < 16; round++) {
        json_t *names = json_array();
        size_t i, deleted = 0;
        json_t *v;

        ioc_bdev_foreach(collect, names);
        json_array_foreach(names, i, v) {
            deleted += ioc_bdev_delete(json_string_value(v), NULL) == 0;
        }
        json_decref(names);
        if (deleted == 0) {
            return;
        }
    }
}

static void
bdevs_delete_all(void)
{
    bdevs_delete_all_of(bdev_collect_name);
}

/* The agent and controller come last: they call the RPC socket and serve nothing themselves. */
static int
control_plane_start(const struct daemon_opts *o)
{
    struct ioc_agent_opts agent = o->agent;
    struct ioc_controller_opts ctl = o->ctl;
    const char *env = getenv("IOC_ETCD");
    struct ioc_err err = {0};
    int rc;

    if (agent.etcd != NULL) {
        ioc_nexus_store_etcd(agent.etcd); /* --etcd: nexus membership records in etcd */
    }
    if (agent.etcd == NULL) {
        agent.etcd = ctl.etcd = env != NULL && env[0] != '\0' ? env : "http://127.0.0.1:2379";
    }
    if (agent.node != NULL) {
        agent.rpc_socket = o->rpc_socket;
        agent.nbd_listen = o->nbd_listen;
        rc = ioc_agent_start(&agent, &err);
        if (rc < 0) {
            IOC_ERR("iocd", "agent: %s", err.msg);
            return rc;
        }
    }
    if (o->controller) {
        rc = ioc_controller_start(&ctl, &err);
        if (rc < 0) {
            IOC_ERR("iocd", "controller: %s", err.msg);
            return rc;
        }
    }
    return 0;
}

static int
daemon_start(const struct daemon_opts *o)
{
    struct ioc_nbd_target_opts nbd = {.listen = o->nbd_listen, .unix_path = o->nbd_socket};
    struct ioc_err err = {0};
    int rc;

    rc = ioc_reactors_start(&o->reactor);
    if (rc < 0) {
        IOC_ERR("iocd", "cannot start %u reactors: %s", o->reactor.count, strerror(-rc));
        return rc;
    }
    for (unsigned i = 0; i < o->npools; i++) {
        char name[64];
        rc = ioc_pool_import_path_sync(o->pools[i], NULL, name, sizeof(name), &err);
        if (rc < 0) {
            IOC_ERR("iocd", "--pool %s: %s", o->pools[i], err.msg[0] ? err.msg : strerror(-rc));
            return rc;
        }
    }
    if (nbd.listen != NULL || nbd.unix_path != NULL) {
        rc = ioc_nbd_target_start(&nbd, &err);
        if (rc < 0) {
            IOC_ERR("iocd", "nbd: %s", err.msg[0] ? err.msg : strerror(-rc));
            return rc;
        }
    }
    if (o->iscsi_listen != NULL) {
        rc = ioc_iscsi_target_start(o->iscsi_listen, &err);
        if (rc < 0 && o->iscsi_explicit) {
            IOC_ERR("iocd", "iscsi: %s", err.msg[0] ? err.msg : strerror(-rc));
            return rc;
        }
        if (rc < 0) {
            /* the default port may be another iocd's: serve the rest anyway */
            IOC_WARN("iocd", "iscsi: %s; iSCSI disabled (use --iscsi-listen)",
                     err.msg[0] ? err.msg : strerror(-rc));
            ioc_err_clear(&err);
        }
    }
    rc = ioc_rpc_server_start(o->rpc_socket, &err);
    if (rc < 0) {
        IOC_ERR("iocd", "rpc: %s", err.msg[0] ? err.msg : strerror(-rc));
        return rc;
    }
    rc = control_plane_start(o);
    if (rc < 0) {
        return rc;
    }
    IOC_NOTICE("iocd", "iocd %s ready: %u reactor%s (%s polling), rpc %s, nbd %s%s%s", IOC_VERSION,
               o->reactor.count, o->reactor.count == 1 ? "" : "s",
               ioc_poll_mode_name(o->reactor.mode), o->rpc_socket,
               o->nbd_listen ? o->nbd_listen : "-", o->nbd_socket ? " and " : "",
               o->nbd_socket ? o->nbd_socket : "");
    return 0;
}

static void
daemon_stop(void)
{
    ioc_controller_stop();
    ioc_agent_stop();
    ioc_rpc_server_stop();
    ioc_nbd_target_stop();
    ioc_iscsi_target_stop();
    ioc_iscsi_tgt_delete_all();
    ioc_nbd_export_remove_all();
    ioc_vhost_export_remove_all();
    /* Nexuses and replica bdevs hold pool volumes: without them first, a pool
     * stays "in use" and is only committed, not exported, at shutdown. */
    bdevs_delete_all_of(bdev_collect_name_not_lvol);
    ioc_pool_export_all_sync();
    ioc_reactors_stop();
    bdevs_delete_all();
    ioc_bdev_io_cache_drain();
}

int
main(int argc, char **argv)
{
    struct daemon_opts o = {
        .reactor = {.count = 1, .mode = IOC_POLL_MODE_ADAPTIVE},
        .rpc_socket = IOC_RPC_DEFAULT_SOCKET,
        .nbd_listen = IOC_NBD_DEFAULT_LISTEN,
        .iscsi_listen = IOC_ISCSI_DEFAULT_LISTEN,
        .ctl = {.replica_grace_s = 300},
    };
    sigset_t set;
    int sig = 0, rc;

    if (parse_args(argc, argv, &o) < 0) {
        return 2;
    }
    signals_block(&set);
    rc = daemon_start(&o);
    if (rc == 0) {
        sigwait(&set, &sig);
        IOC_NOTICE("iocd", "signal %d (%s): shutting down", sig, strsignal(sig));
    }
    daemon_stop();
    return rc == 0 ? 0 : 1;
}
