/*
 * cairn-metabench.c - metadata record rates of a running cluster, against the raw commit.
 *
 * Usage: cairn-metabench -c CLUSTER_ENV [--runs R] [--ops N] [--threads T] [--raw-dir DIR]
 *        cairn-metabench -c CLUSTER_ENV --classes NODE [--runs R] [--ops N]
 *                        [--degrade CMD] [--settle SEC]
 *
 * Each run measures, on the cluster's metadata shards (meta/rec.h: Raft groups on the
 * D-nodes):
 *   put      one thread, N creates of fresh keys one after another: latency median and p90
 *   get      one thread, N lease reads of those keys: latency median and p90
 *   puts/s   T threads (a view each), N creates each of fresh keys: records per second
 *   cas/s    T threads doing read + compare-and-set on one record, N successes in all: how a
 *            hot record (a directory's inode) behaves under contention
 * and, in the same run, the raw path: N fdatasync'd 4 KiB writes to a file in --raw-dir
 * (default /var/tmp: put it on the D-nodes' disk), which is what one durable commit costs on
 * this machine.  A Raft put is at least two of them in sequence (the leader's log and a
 * follower's, in parallel with the others), plus the network.  Printed: every run, then the
 * median of the runs, and the put latency as a multiple of the raw commit.
 *
 * --classes NODE (a D-node's index in the map, as `cairn-local kill` counts them) measures
 * degraded mode instead.  Every shard is visited in turn, one thread: N puts of fresh keys
 * in it, N gets of them, N scans of their range (default N = 3, R = 1 run), every call timed.  The
 * shards fall in two classes, those with NODE among their replicas and those without, and
 * each class gets the median and p90 per call of put, get and scan, plus the time of a whole
 * pass over every shard (as the repair service makes one).  With --degrade CMD (a shell
 * command, e.g. `tools/cairn-local kill --dir D dnode 2`) it measures, runs CMD, waits
 * --settle seconds (default 3), times a first pass of one get per shard (elections of the
 * shards NODE led, the view learning NODE is away), measures again and prints the ratios:
 * degraded over healthy per class, and with over without per phase.  A healthy shard's call
 * is a few milliseconds; a ratio far from 1 is a degraded-mode problem.
 */
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/env.h"
#include "common/cairn.h"
#include "common/log.h"
#include "meta/rec.h"
#include "map/map.h"

struct run {
    double put_med, put_p90, get_med, get_p90, puts_s, cas_s, raw_med;
};

static struct cl_cluster_config cfg = {.k = 4, .m = 2, .frag_size = 1u << 20};
static unsigned ops = 500, threads = 8;
static unsigned run_id;
static bool ops_set, runs_set;

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Sorts v. */
static double pct(double *v, unsigned n, unsigned p)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[(size_t)n * p / 100 < n ? (size_t)n * p / 100 : n - 1];
}

static void key_of(char *k, size_t cap, unsigned t, unsigned i)
{
    snprintf(k, cap, "metabench/%u/%d/%u/%u", run_id, (int)getpid(), t, i);
}

static int latency(struct cl_cluster *cl, struct run *r)
{
    double *lat = calloc(ops, sizeof *lat);
    char k[96];
    int rc = 0;

    if (!lat)
        return CAIRN_ENOMEM;
    for (unsigned i = 0; i < ops && !rc; i++) {
        double t0 = now_s();

        key_of(k, sizeof k, 999, i);
        rc = meta_rec_put(cl, meta_shard_of(k, strlen(k)), k, strlen(k), 0, "v", 1, NULL);
        lat[i] = (now_s() - t0) * 1e3;
    }
    if (!rc) {
        r->put_med = pct(lat, ops, 50);
        r->put_p90 = pct(lat, ops, 90);
    }
    for (unsigned i = 0; i < ops && !rc; i++) {
        struct meta_rec rec;
        double t0 = now_s();

        key_of(k, sizeof k, 999, i);
        rc = meta_rec_get(cl, meta_shard_of(k, strlen(k)), k, strlen(k), &rec);
        lat[i] = (now_s() - t0) * 1e3;
        free(rec.val);
    }
    if (!rc) {
        r->get_med = pct(lat, ops, 50);
        r->get_p90 = pct(lat, ops, 90);
    }
    free(lat);
    return rc;
}

struct worker {
    unsigned id;
    bool cas;
    unsigned *cas_left; /* shared: successes still wanted */
    pthread_mutex_t *mu;
    int rc;
};

static bool take_one(struct worker *w)
{
    bool more;

    pthread_mutex_lock(w->mu);
    more = *w->cas_left > 0;
    pthread_mutex_unlock(w->mu);
    return more;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    struct cl_cluster *cl;
    char k[96];

    w->rc = cl_cluster_open(&cfg, &cl);
    if (w->rc)
        return NULL;
    if (!w->cas) {
        for (unsigned i = 0; i < ops && !w->rc; i++) {
            key_of(k, sizeof k, w->id, i);
            w->rc = meta_rec_put(cl, meta_shard_of(k, strlen(k)), k, strlen(k), 0, "v", 1, NULL);
        }
    } else {
        key_of(k, sizeof k, 1000, 0);
        while (!w->rc && take_one(w)) {
            struct meta_rec rec;
            int rc = meta_rec_get(cl, meta_shard_of(k, strlen(k)), k, strlen(k), &rec);

            free(rec.val);
            if (rc && rc != CAIRN_ENOENT) {
                w->rc = rc;
                break;
            }
            rc = meta_rec_put(cl, meta_shard_of(k, strlen(k)), k, strlen(k), rec.version, "c", 1,
                              NULL);
            if (rc == 0) {
                pthread_mutex_lock(w->mu);
                if (*w->cas_left)
                    (*w->cas_left)--;
                pthread_mutex_unlock(w->mu);
            } else if (rc != CAIRN_ECONFLICT) {
                w->rc = rc;
            }
        }
    }
    cl_cluster_close(cl);
    return NULL;
}

/* T threads at once; returns records (or successful compare-and-sets) per second. */
static int parallel(bool cas, double *rate)
{
    struct worker *w = calloc(threads, sizeof *w);
    pthread_t *t = calloc(threads, sizeof *t);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    unsigned left = ops, started = 0;
    double t0;
    int rc = 0;

    if (!w || !t) {
        free(w);
        free(t);
        return CAIRN_ENOMEM;
    }
    t0 = now_s();
    for (unsigned i = 0; i < threads; i++) {
        w[i] = (struct worker){.id = i, .cas = cas, .cas_left = &left, .mu = &mu};
        if (pthread_create(&t[i], NULL, work, &w[i]) == 0)
            started++;
        else
            break;
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        if (w[i].rc && !rc)
            rc = w[i].rc;
    }
    /* (view opening is inside the timing: a few ms per thread) */
    *rate = (cas ? ops : (double)ops * started) / (now_s() - t0);
    free(w);
    free(t);
    return started == threads ? rc : CAIRN_ENOMEM;
}

static int raw_commit(const char *dir, double *med)
{
    char path[4096];
    double *lat = calloc(ops, sizeof *lat);
    char block[4096];
    int fd, rc = 0;

    snprintf(path, sizeof path, "%s/cairn-metabench.%d", dir, (int)getpid());
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || !lat) {
        free(lat);
        if (fd >= 0)
            close(fd);
        return CAIRN_EIO;
    }
    memset(block, 0x5a, sizeof block);
    for (unsigned i = 0; i < ops && !rc; i++) {
        double t0 = now_s();

        if (pwrite(fd, block, sizeof block, (off_t)(i % 256) * 4096) != (ssize_t)sizeof block ||
            fdatasync(fd) != 0)
            rc = CAIRN_EIO;
        lat[i] = (now_s() - t0) * 1e3;
    }
    close(fd);
    unlink(path);
    if (!rc)
        *med = pct(lat, ops, 50);
    free(lat);
    return rc;
}

/* ---- shard classes: degraded mode (--classes NODE) ---- */

enum { C_WITH, C_WITHOUT, C_N };
enum { O_PUT, O_GET, O_SCAN, O_N };
static const char *const class_name[C_N] = {"with", "without"};

struct samples {
    double *v;
    unsigned n, cap;
};

struct phase {
    const char *name;
    struct samples s[C_N][O_N];
    double pass_s; /* median over the runs of one pass over every shard */
};

static int sample_add(struct samples *s, double ms)
{
    if (s->n == s->cap) {
        unsigned cap = s->cap ? s->cap * 2 : 256;
        double *v = realloc(s->v, cap * sizeof *v);

        if (!v)
            return CAIRN_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = ms;
    return 0;
}

/* Median (p = 50) or another percentile of the samples, 0 with none; sorts them. */
static double sample_pct(struct samples *s, unsigned p)
{
    return s->n ? pct(s->v, s->n, p) : 0;
}

static bool shard_has(struct cl_cluster *cl, uint32_t shard, unsigned node)
{
    unsigned nodes[MAP_MAX_REPLICAS], n = cl_cluster_shard_nodes(cl, shard, nodes);

    for (unsigned i = 0; i < n; i++)
        if (nodes[i] == node)
            return true;
    return false;
}

/* Key i of a shard in a run of a phase; its range is prefix..prefix with '/' -> '0'. */
static int class_key(char *k, size_t cap, const char *phase, unsigned run, uint32_t shard, int i)
{
    if (i < 0)
        return snprintf(k, cap, "metabench/c/%d/%s/%u/%u/", (int)getpid(), phase, run, shard);
    return snprintf(k, cap, "metabench/c/%d/%s/%u/%u/%d", (int)getpid(), phase, run, shard, i);
}

/* One pass over every shard: N puts, N gets, N scans in each, every call timed. */
static int class_pass(struct cl_cluster *cl, unsigned node, struct phase *ph, unsigned run,
                      double *secs)
{
    uint32_t shards = cl_cluster_shards(cl);
    double t_pass = now_s();
    char k[128], end[128];
    int rc = 0;

    for (uint32_t sh = 0; sh < shards && !rc; sh++) {
        struct samples *s = ph->s[shard_has(cl, sh, node) ? C_WITH : C_WITHOUT];

        for (unsigned i = 0; i < ops && !rc; i++) {
            double t0 = now_s();

            class_key(k, sizeof k, ph->name, run, sh, (int)i);
            rc = meta_rec_put(cl, sh, k, strlen(k), 0, "v", 1, NULL);
            if (!rc)
                rc = sample_add(&s[O_PUT], (now_s() - t0) * 1e3);
        }
        for (unsigned i = 0; i < ops && !rc; i++) {
            struct meta_rec rec;
            double t0 = now_s();

            class_key(k, sizeof k, ph->name, run, sh, (int)i);
            rc = meta_rec_get(cl, sh, k, strlen(k), &rec);
            free(rec.val);
            if (!rc)
                rc = sample_add(&s[O_GET], (now_s() - t0) * 1e3);
        }
        for (unsigned i = 0; i < ops && !rc; i++) {
            struct meta_scan sc;
            size_t len = (size_t)class_key(k, sizeof k, ph->name, run, sh, -1);
            double t0 = now_s();

            memcpy(end, k, len + 1);
            end[len - 1] = '0'; /* just past every key with the prefix */
            rc = meta_rec_scan(cl, sh, k, len, end, len, 16, &sc);
            if (!rc && sc.n != ops)
                rc = CAIRN_EPROTO;
            meta_scan_fini(&sc);
            if (!rc)
                rc = sample_add(&s[O_SCAN], (now_s() - t0) * 1e3);
        }
        if (rc)
            fprintf(stderr, "cairn-metabench: shard %u: %s\n", sh, cairn_strerror(rc));
    }
    *secs = now_s() - t_pass;
    return rc;
}

static int class_phase(struct cl_cluster *cl, unsigned node, unsigned runs, struct phase *ph)
{
    double pass[runs];

    for (unsigned r = 0; r < runs; r++) {
        int rc = class_pass(cl, node, ph, r, &pass[r]);

        if (rc)
            return rc;
        printf("  %s run %u: pass over %u shards %.2f s\n", ph->name, r, cl_cluster_shards(cl),
               pass[r]);
        fflush(stdout);
    }
    ph->pass_s = pct(pass, runs, 50);
    return 0;
}

static void class_print(struct phase *ph)
{
    for (int c = 0; c < C_N; c++) {
        struct samples *s = ph->s[c];

        printf("%-9s %-8s %7u %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f", ph->name, class_name[c],
               s[O_GET].n / ops, sample_pct(&s[O_PUT], 50), sample_pct(&s[O_PUT], 90),
               sample_pct(&s[O_GET], 50), sample_pct(&s[O_GET], 90), sample_pct(&s[O_SCAN], 50),
               sample_pct(&s[O_SCAN], 90));
        printf(c == 0 ? " %8.2f\n" : "\n", ph->pass_s);
    }
}

static double ratio(struct samples *a, struct samples *b)
{
    double y = sample_pct(b, 50);

    return y > 0 ? sample_pct(a, 50) / y : 0;
}

/* One get per shard (of a record the healthy phase wrote), timed as a whole and per call. */
static int first_pass(struct cl_cluster *cl, const char *phase)
{
    uint32_t shards = cl_cluster_shards(cl);
    double t_pass = now_s(), worst = 0;
    uint32_t worst_shard = 0;
    char k[128];

    for (uint32_t sh = 0; sh < shards; sh++) {
        struct meta_rec rec;
        double t0 = now_s(), ms;
        int rc;

        class_key(k, sizeof k, phase, 0, sh, 0);
        rc = meta_rec_get(cl, sh, k, strlen(k), &rec);
        free(rec.val);
        if (rc) {
            fprintf(stderr, "cairn-metabench: first pass, shard %u: %s\n", sh, cairn_strerror(rc));
            return rc;
        }
        ms = (now_s() - t0) * 1e3;
        if (ms > worst) {
            worst = ms;
            worst_shard = sh;
        }
    }
    printf("first pass after the change: one get per shard, %.2f s (slowest call %.0f ms, "
           "shard %u)\n",
           now_s() - t_pass, worst, worst_shard);
    return 0;
}

static int classes(struct cl_cluster *cl, unsigned node, unsigned runs, const char *degrade,
                   unsigned settle)
{
    struct phase ph[2] = {{.name = "healthy"}, {.name = "degraded"}};
    unsigned n_ph = degrade ? 2 : 1;
    unsigned with = 0, shards = cl_cluster_shards(cl);
    int rc = 0;

    if (node >= cl_cluster_dnodes(cl)) {
        fprintf(stderr, "cairn-metabench: no D-node %u (the map has %u)\n", node,
                cl_cluster_dnodes(cl));
        return CAIRN_EINVAL;
    }
    for (uint32_t sh = 0; sh < shards; sh++)
        with += shard_has(cl, sh, node);
    printf("metadata shards: %u, %u replicas each; D-node %u (%s) is a replica of %u, not of "
           "%u; %u calls of each kind per shard per run, %u runs\n",
           shards, cl_cluster_map(cl)->replicas, node, cl_cluster_dnode_addr(cl, node), with,
           shards - with, ops, runs);
    if (!degrade)
        ph[0].name = "now";
    rc = class_phase(cl, node, runs, &ph[0]);
    if (!rc && degrade) {
        printf("running: %s\n", degrade);
        fflush(stdout);
        if (system(degrade) != 0) {
            fprintf(stderr, "cairn-metabench: the --degrade command failed\n");
            rc = CAIRN_EINVAL;
        }
        if (!rc) {
            sleep(settle);
            rc = first_pass(cl, ph[0].name);
        }
        if (!rc)
            rc = class_phase(cl, node, runs, &ph[1]);
    }
    if (!rc) {
        printf("%-9s %-8s %7s %8s %8s %8s %8s %8s %8s %8s\n", "phase", "class", "shards", "put ms",
               "put p90", "get ms", "get p90", "scan ms", "scan p90", "pass s");
        for (unsigned p = 0; p < n_ph; p++)
            class_print(&ph[p]);
        for (unsigned p = 0; p < n_ph; p++)
            printf("ratio with/without, %-8s: put %.2f  get %.2f  scan %.2f\n", ph[p].name,
                   ratio(&ph[p].s[C_WITH][O_PUT], &ph[p].s[C_WITHOUT][O_PUT]),
                   ratio(&ph[p].s[C_WITH][O_GET], &ph[p].s[C_WITHOUT][O_GET]),
                   ratio(&ph[p].s[C_WITH][O_SCAN], &ph[p].s[C_WITHOUT][O_SCAN]));
        for (int c = 0; c < C_N && n_ph == 2; c++)
            printf("ratio degraded/healthy, %-7s: put %.2f  get %.2f  scan %.2f\n", class_name[c],
                   ratio(&ph[1].s[c][O_PUT], &ph[0].s[c][O_PUT]),
                   ratio(&ph[1].s[c][O_GET], &ph[0].s[c][O_GET]),
                   ratio(&ph[1].s[c][O_SCAN], &ph[0].s[c][O_SCAN]));
        if (n_ph == 2)
            printf("ratio degraded/healthy, pass: %.2f\n",
                   ph[0].pass_s > 0 ? ph[1].pass_s / ph[0].pass_s : 0);
    }
    for (unsigned p = 0; p < 2; p++)
        for (int c = 0; c < C_N; c++)
            for (int o = 0; o < O_N; o++)
                free(ph[p].s[c][o].v);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: cairn-metabench -c CLUSTER_ENV [--runs R] [--ops N] [--threads T] "
                    "[--raw-dir DIR]\n"
                    "       cairn-metabench -c CLUSTER_ENV --classes NODE [--runs R] [--ops N] "
                    "[--degrade CMD] [--settle SEC]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"runs", required_argument, NULL, 'r'},
                                         {"ops", required_argument, NULL, 'n'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"raw-dir", required_argument, NULL, 'd'},
                                         {"classes", required_argument, NULL, 'C'},
                                         {"degrade", required_argument, NULL, 'D'},
                                         {"settle", required_argument, NULL, 'S'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *envpath = NULL, *raw_dir = "/var/tmp", *degrade = NULL;
    unsigned settle = 3;
    int class_node = -1;
    struct cl_env env = {0};
    struct cl_cluster *cl = NULL;
    unsigned runs = 5;
    struct run *r;
    int c, rc;

    cairn_log_set_ident("metabench");
    cairn_log_set_level(getenv("CAIRN_LOG") ? getenv("CAIRN_LOG") : "error");
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': envpath = optarg; break;
        case 'r':
            runs = (unsigned)strtoul(optarg, NULL, 10);
            runs_set = true;
            break;
        case 'n':
            ops = (unsigned)strtoul(optarg, NULL, 10);
            ops_set = true;
            break;
        case 't': threads = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': raw_dir = optarg; break;
        case 'C':
            class_node = (int)strtol(optarg, NULL, 10);
            break;
        case 'D':
            degrade = optarg;
            break;
        case 'S':
            settle = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default: usage(); return 2;
        }
    }
    if (class_node >= 0 && !ops_set)
        ops = 3;
    if (class_node >= 0 && !runs_set)
        runs = 1;
    if (!envpath || !runs || !ops || !threads || threads > 256 || (degrade && class_node < 0) ||
        (class_node >= 0 && ops > 16)) {
        usage();
        return 2;
    }
    if ((rc = cl_env_load(envpath, &env)) || cl_env_cluster_config(&env, &cfg)) {
        fprintf(stderr, "cairn-metabench: %s: %s\n", envpath, cairn_strerror(rc ? rc : CAIRN_EINVAL));
        return 1;
    }
    rc = cl_cluster_open(&cfg, &cl);
    r = calloc(runs, sizeof *r);
    if (rc || !r) {
        fprintf(stderr, "cairn-metabench: open cluster: %s\n", cairn_strerror(rc ? rc : CAIRN_ENOMEM));
        return 1;
    }
    if (class_node >= 0) {
        rc = classes(cl, (unsigned)class_node, runs, degrade, settle);
        free(r);
        cl_cluster_close(cl);
        cl_env_fini(&env);
        return rc ? 1 : 0;
    }
    printf("metadata shards: %u, %u replicas each, epoch %llu; %u ops per figure, %u threads\n",
           cl_cluster_shards(cl), cl_cluster_map(cl)->replicas,
           (unsigned long long)cl_cluster_epoch(cl), ops, threads);
    printf("%-4s %9s %9s %9s %9s %9s %9s %9s\n", "run", "put ms", "put p90", "get ms", "get p90",
           "puts/s", "cas/s", "raw ms");
    for (unsigned i = 0; i < runs; i++) {
        run_id = i;
        if ((rc = raw_commit(raw_dir, &r[i].raw_med)) || (rc = latency(cl, &r[i])) ||
            (rc = parallel(false, &r[i].puts_s)) || (rc = parallel(true, &r[i].cas_s))) {
            fprintf(stderr, "cairn-metabench: run %u: %s\n", i, cairn_strerror(rc));
            return 1;
        }
        printf("%-4u %9.2f %9.2f %9.3f %9.3f %9.0f %9.0f %9.2f\n", i, r[i].put_med, r[i].put_p90,
               r[i].get_med, r[i].get_p90, r[i].puts_s, r[i].cas_s, r[i].raw_med);
        fflush(stdout);
    }
    {
        double v[7][runs];

        for (unsigned i = 0; i < runs; i++) {
            v[0][i] = r[i].put_med;
            v[1][i] = r[i].put_p90;
            v[2][i] = r[i].get_med;
            v[3][i] = r[i].get_p90;
            v[4][i] = r[i].puts_s;
            v[5][i] = r[i].cas_s;
            v[6][i] = r[i].raw_med;
        }
        double m[7];
        for (int j = 0; j < 7; j++)
            m[j] = pct(v[j], runs, 50);
        printf("%-4s %9.2f %9.2f %9.3f %9.3f %9.0f %9.0f %9.2f\n", "med", m[0], m[1], m[2], m[3],
               m[4], m[5], m[6]);
        printf("put latency = %.1f x one raw durable commit on this disk\n", m[0] / m[6]);
    }
    free(r);
    cl_cluster_close(cl);
    cl_env_fini(&env);
    return 0;
}
