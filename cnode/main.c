/*
 * main.c - the C-node daemon: a stateless protocol head.  It reads the cluster's settings from
 * a cluster.env file (client/env.h), opens the file system (cnode/fs/fs.h) and runs the
 * protocol heads on it through their one interface (cnode/head.h); it keeps nothing of its
 * own: every byte and every record it acknowledges is on the D-nodes, so it can be killed at
 * any moment.  This file only wires those parts together.
 *
 *     cairn-cnode --cluster FILE --listen HOST:PORT [--nfs-port P --mount-port Q]
 *                 [--ready FILE] [--loops N] [--workers N] [--nfs-workers N] [--portmap]
 *                 [--metrics HOST:PORT] [--log-level L]
 *
 * cluster.env may set TOP_DIR_SLICES and DIR_SLICES: how many slices (meta/ns.h) the
 * directories this C-node makes get, in the root and elsewhere (1..64); REPAIR_INTERVAL_S,
 * how often its repair service (repair/repair.h) passes over the cluster (0: it runs none),
 * and REPAIR_MBPS, the MiB per second a rebuild may read; GC_INTERVAL_S, how often the same
 * service sweeps garbage fragments (repair/gc.h; default 6 h, 0: never), and GC_GRACE_S, how
 * old an unreferenced fragment must be before a sweep counts it (default 3600); DOWN_OUT_S, how
 * long a D-node may stay silent before the same service takes it out of the map (default 600,
 * 0: never; repair/repair.h).
 *
 * --listen is the S3 endpoint; NFS and MOUNT are served when their ports are given.  --ready
 * names a file that gets the bound ports (S3, then NFS and MOUNT) once every head serves.
 * --metrics serves GET /metrics (Prometheus text: what each head counts per operation, the
 * degraded stripes reads met, the repair service's totals) and GET /healthz (common/admin.h).
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/env.h"
#include "cnode/fs/fs.h"
#include "cnode/head.h"
#include "cnode/nfs/nfs3.h"
#include "cnode/s3/s3.h"
#include "common/admin.h"
#include "common/cairn.h"
#include "common/log.h"
#include "common/metrics.h"
#include "repair/repair.h"
#include "repair/gc.h"

#define TAG "cnode"

/* One head to run, as the command line configured it. */
struct head {
    const struct cn_head_ops *ops;
    bool enabled;
    unsigned ports[CN_HEAD_MAX_PORTS];
    unsigned workers;
    void *running;
};

struct settings {
    const struct cl_env *env;
    bool portmap;
};

/* cn_head_args.conf: the cluster.env value, and what command-line flags add. */
static const char *setting(void *arg, const char *name)
{
    const struct settings *s = arg;

    if (!strcmp(name, "NFS_PORTMAP"))
        return s->portmap ? "1" : NULL;
    return cl_env_get(s->env, name);
}

/* A number from cluster.env in lo..hi, or def when unset or out of range. */
static uint32_t env_num(const struct cl_env *env, const char *name, uint32_t lo, uint32_t hi,
                        uint32_t def)
{
    const char *v = cl_env_get(env, name);
    char *end;
    unsigned long n;

    if (!v)
        return def;
    n = strtoul(v, &end, 10);
    if (!*v || *end || n < lo || n > hi) {
        log_warn(TAG, "%s=%s: not %u..%u, using %u", name, v, lo, hi, def);
        return def;
    }
    return (uint32_t)n;
}

/* ---- the C-node's own metrics, read at scrape time from the parts that count them ---- */

struct scrape {
    struct fs *fs;
    struct rp_service *repair; /* NULL: no repair service runs here */
};

#define READ_STAT(fn_name, field)                                                                  \
    static double fn_name(void *arg)                                                               \
    {                                                                                              \
        struct fs_read_stats st;                                                                   \
        fs_read_stats(((struct scrape *)arg)->fs, &st);                                            \
        return (double)st.field;                                                                   \
    }
READ_STAT(read_stripes, stripes)
READ_STAT(read_degraded, degraded_stripes)
READ_STAT(read_frags_failed, frags_failed)

#define REPAIR_STAT(fn_name, field)                                                                \
    static double fn_name(void *arg)                                                               \
    {                                                                                              \
        struct rp_totals t = {0};                                                                  \
        if (((struct scrape *)arg)->repair)                                                        \
            rp_service_totals(((struct scrape *)arg)->repair, &t);                                 \
        return (double)t.field;                                                                    \
    }
REPAIR_STAT(repair_passes, passes)
REPAIR_STAT(repair_degraded, degraded)
REPAIR_STAT(repair_rebuilt, rebuilt)
REPAIR_STAT(repair_bytes, bytes)
REPAIR_STAT(repair_failed, failed)
REPAIR_STAT(gc_passes, gc_passes)
REPAIR_STAT(gc_deleted, gc_deleted)
REPAIR_STAT(gc_bytes, gc_bytes)
REPAIR_STAT(taken_out, taken_out)

static int register_own(struct metrics *m, struct scrape *s)
{
    static const struct {
        const char *name, *help;
        double (*fn)(void *);
    } own[] = {
        {"cairn_cnode_stripes_read_total", "Stripes read from the D-nodes.", read_stripes},
        {"cairn_cnode_degraded_stripes_read_total",
         "Stripes read that were rebuilt from parity: a fragment was missing or bad.",
         read_degraded},
        {"cairn_cnode_fragment_reads_failed_total",
         "Fragment reads that failed or returned bytes with a bad CRC.", read_frags_failed},
        {"cairn_repair_passes_total", "Passes of this C-node's repair service.", repair_passes},
        {"cairn_repair_degraded_extents_total",
         "Extents a pass found with lost positions (counted again by every pass until mended).",
         repair_degraded},
        {"cairn_repair_rebuilt_positions_total", "Fragment positions rebuilt and recorded.",
         repair_rebuilt},
        {"cairn_repair_rebuilt_bytes_total", "Fragment bytes the rebuilds stored.", repair_bytes},
        {"cairn_repair_failed_total", "Rebuilds that failed (read, write or record errors).",
         repair_failed},
        {"cairn_gc_passes_total", "Garbage sweeps of this C-node's repair service.", gc_passes},
        {"cairn_gc_deleted_fragments_total",
         "Fragments no record referenced in two sweeps in a row, deleted.", gc_deleted},
        {"cairn_gc_deleted_bytes_total", "Payload bytes of the fragments the sweeps deleted.",
         gc_bytes},
        {"cairn_repair_dnodes_taken_out_total",
         "D-nodes this C-node's failure detector took out of the map (silent for DOWN_OUT_S).",
         taken_out},
    };
    int rc;

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(own); i++)
        if ((rc = metrics_func(m, own[i].name, own[i].help, METRICS_COUNTER, own[i].fn, s)))
            return rc;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: cairn-cnode --cluster FILE --listen HOST:PORT "
                    "[--nfs-port P --mount-port Q] [--ready FILE] [--loops N] [--workers N] "
                    "[--nfs-workers N] [--portmap] [--metrics HOST:PORT] [--log-level L]\n");
    exit(2);
}

static void write_ready(const char *path, const struct head *heads, size_t n)
{
    FILE *f = fopen(path, "w");

    if (!f) {
        log_warn(TAG, "%s: cannot write the ready file", path);
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (unsigned p = 0; heads[i].running && p < heads[i].ops->nports; p++)
            fprintf(f, "%u\n", heads[i].ops->port(heads[i].running, p));
    fclose(f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cluster", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
        {"ready", required_argument, NULL, 'r'},   {"loops", required_argument, NULL, 'L'},
        {"workers", required_argument, NULL, 'w'}, {"log-level", required_argument, NULL, 'v'},
        {"nfs-port", required_argument, NULL, 'n'}, {"mount-port", required_argument, NULL, 'm'},
        {"nfs-workers", required_argument, NULL, 'W'}, {"portmap", no_argument, NULL, 'P'},
        {"metrics", required_argument, NULL, 'X'},  {NULL, 0, NULL, 0}};
    const char *metrics_addr = NULL;
    struct metrics *reg = NULL;
    struct admin_server *admin = NULL;
    struct scrape scrape = {0};
    struct head heads[] = {{.ops = &s3_head_ops, .enabled = true},
                           {.ops = &nfs_head_ops, .enabled = false}};
    struct head *s3 = &heads[0], *nfs = &heads[1];
    const char *cluster = NULL, *listen = NULL, *ready = NULL, *colon;
    struct fs_config fcfg = {.stripe_cache = 32};
    struct settings set = {0};
    struct cl_env env = {0};
    struct fs *fs = NULL;
    struct rp_service *repair = NULL;
    struct rp_service_opts ropts = {0};
    unsigned loops = 0;
    char host[256];
    sigset_t sigs;
    int c, sig, rc, status = 1;

    cairn_log_set_ident("cnode");
    if (getenv("CAIRN_LOG"))
        cairn_log_set_level(getenv("CAIRN_LOG"));
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cluster = optarg; break;
        case 'l': listen = optarg; break;
        case 'r': ready = optarg; break;
        case 'L': loops = (unsigned)atoi(optarg); break;
        case 'w': s3->workers = (unsigned)atoi(optarg); break;
        case 'v': cairn_log_set_level(optarg); break;
        case 'n': nfs->ports[NFS_LISTENER] = (unsigned)atoi(optarg); nfs->enabled = true; break;
        case 'm': nfs->ports[MOUNT_LISTENER] = (unsigned)atoi(optarg); nfs->enabled = true; break;
        case 'W': nfs->workers = (unsigned)atoi(optarg); break;
        case 'P': set.portmap = true; break;
        case 'X': metrics_addr = optarg; break;
        default: usage();
        }
    }
    if (!cluster || !listen)
        usage();
    colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof(host))
        usage();
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
    s3->ports[0] = (unsigned)atoi(colon + 1);

    rc = cl_env_load(cluster, &env);
    if (rc) {
        log_error(TAG, "%s: %s", cluster, cairn_strerror(rc));
        return 1;
    }
    set.env = &env;
    fcfg.top_slices = env_num(&env, "TOP_DIR_SLICES", 1, 64, FS_DEFAULT_TOP_SLICES);
    fcfg.dir_slices = env_num(&env, "DIR_SLICES", 1, 64, FS_DEFAULT_DIR_SLICES);
    ropts.interval_s = env_num(&env, "REPAIR_INTERVAL_S", 0, 86400, RP_DEFAULT_INTERVAL_S);
    ropts.gc_interval_s = env_num(&env, "GC_INTERVAL_S", 0, 7 * 86400, RP_DEFAULT_GC_INTERVAL_S);
    ropts.down_out_s = env_num(&env, "DOWN_OUT_S", 0, 30 * 86400, RP_DEFAULT_DOWN_OUT_S);
    ropts.gc_grace_ms = (uint64_t)env_num(&env, "GC_GRACE_S", 1, 7 * 86400,
                                          GC_DEFAULT_GRACE_MS / 1000) * 1000u;
    /* Half the sweeper's grace: a write recorded later than that fails instead (fs.h). */
    fcfg.write_deadline_ms = ropts.gc_grace_ms / 2;
    ropts.rate = (uint64_t)env_num(&env, "REPAIR_MBPS", 1, 1u << 20,
                                    (uint32_t)(RP_DEFAULT_RATE >> 20)) << 20;
    if (cl_env_cluster_config(&env, &fcfg.cluster) || fs_open(&fcfg, &fs))
        goto out;
    scrape.fs = fs;
    if (metrics_addr && ((rc = metrics_create(&reg)) || (rc = register_own(reg, &scrape)))) {
        log_error(TAG, "metrics: %s", cairn_strerror(rc));
        goto out;
    }

    /* Block the stop signals in every thread; main waits for them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(heads); i++) {
        struct cn_head_args a = {.fs = fs, .host = host, .loops = loops,
                                 .workers = heads[i].workers, .conf = setting, .conf_arg = &set,
                                 .metrics = reg};

        if (!heads[i].enabled)
            continue;
        memcpy(a.ports, heads[i].ports, sizeof(a.ports));
        if (heads[i].ops->start(&a, &heads[i].running))
            goto stop;
        for (unsigned p = 0; p < heads[i].ops->nports; p++)
            log_info(TAG, "serving %s on %s:%u", heads[i].ops->name, host,
                     heads[i].ops->port(heads[i].running, p));
    }
    /* The repair service has its own thread and view; the heads never wait for it. */
    if (ropts.interval_s && rp_service_start(&fcfg.cluster, &ropts, &repair))
        log_warn(TAG, "the repair service did not start: this C-node repairs nothing");
    scrape.repair = repair; /* before the endpoint starts: its thread reads it */
    if (metrics_addr) {
        if (admin_start(metrics_addr, reg, &admin))
            goto stop; /* logged */
        log_info(TAG, "metrics on http://%s/metrics (port %u)", metrics_addr, admin_port(admin));
    }
    if (ready)
        write_ready(ready, heads, CAIRN_ARRAY_SIZE(heads));
    sigwait(&sigs, &sig);
    log_info(TAG, "signal %d: stopping", sig);
    status = 0;
stop:
    admin_stop(admin); /* first: its scrapes read the heads' counters and the services */
    rp_service_stop(repair);
    for (size_t i = CAIRN_ARRAY_SIZE(heads); i-- > 0;)
        if (heads[i].running)
            heads[i].ops->stop(heads[i].running);
out:
    metrics_destroy(reg);
    fs_close(fs);
    cl_env_fini(&env);
    return status;
}
