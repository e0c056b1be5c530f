/*
 * cairn-metabench.c - metadata record rates of a running cluster, against the raw commit.
 *
 * Usage: cairn-metabench -c CLUSTER_ENV [--runs R] [--ops N] [--threads T] [--raw-dir DIR]
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

struct run {
    double put_med, put_p90, get_med, get_p90, puts_s, cas_s, raw_med;
};

static struct cl_cluster_config cfg = {.k = 4, .m = 2, .frag_size = 1u << 20};
static unsigned ops = 500, threads = 8;
static unsigned run_id;

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

static void usage(void)
{
    fprintf(stderr, "usage: cairn-metabench -c CLUSTER_ENV [--runs R] [--ops N] [--threads T] "
                    "[--raw-dir DIR]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"runs", required_argument, NULL, 'r'},    {"ops", required_argument, NULL, 'n'},
        {"threads", required_argument, NULL, 't'}, {"raw-dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *envpath = NULL, *raw_dir = "/var/tmp";
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
        case 'r': runs = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'n': ops = (unsigned)strtoul(optarg, NULL, 10); break;
        case 't': threads = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': raw_dir = optarg; break;
        default: usage(); return 2;
        }
    }
    if (!envpath || !runs || !ops || !threads || threads > 256) {
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
