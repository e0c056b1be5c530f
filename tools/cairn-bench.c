/*
 * cairn-bench.c - data-path benchmark: memcpy, ISA-L encode and CRC, end-to-end stripes.
 *
 *   cairn-bench [-c CLUSTER_ENV] [--runs N] [--size MiB] [--no-cluster]
 *
 * Every figure is the median of N runs (default 5) and is printed next to its ratio to memcpy
 * measured in the same process, because the machines are shared and absolute numbers move
 * with the neighbours; ratios move much less.  Without -c the benchmark starts its own local
 * cluster of 6 D-nodes (tools/cairn-local up, EC 4+2) in a temporary directory and stops it at
 * the end; with -c it uses a running cluster.
 *
 * Throughput counts object (user) bytes: an encode of S bytes of data into k + m fragments
 * reports S / time, a stripe write of an S-byte object reports S / time although
 * S * (k + m) / k bytes cross the fabric and reach the devices.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/stripe.h"
#include "common/cairn.h"
#include "common/log.h"
#include "ec/ec.h"
#include "client/env.h"

#define MAX_RUNS 31

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double gbps(uint64_t bytes, uint64_t ns)
{
    return ns ? (double)bytes / (double)ns : 0; /* bytes per ns == GB/s */
}

static void report(const char *what, double v, double base)
{
    printf("  %-34s %8.2f GB/s   %6.3f x memcpy\n", what, v, base > 0 ? v / base : 0);
    fflush(stdout);
}

static double bench_memcpy(uint8_t *dst, const uint8_t *src, size_t len, unsigned runs)
{
    double v[MAX_RUNS];

    memcpy(dst, src, len); /* fault the pages in before timing */
    for (unsigned r = 0; r < runs; r++) {
        uint64_t t0 = cairn_now_ns();

        memcpy(dst, src, len);
        v[r] = gbps(len, cairn_now_ns() - t0);
    }
    return median(v, runs);
}

static double bench_crc(const uint8_t *src, size_t len, unsigned runs)
{
    double v[MAX_RUNS];
    volatile uint32_t sink = 0;

    for (unsigned r = 0; r < runs; r++) {
        uint64_t t0 = cairn_now_ns();

        sink ^= ec_crc32c(0, src, len);
        v[r] = gbps(len, cairn_now_ns() - t0);
    }
    (void)sink;
    return median(v, runs);
}

/* Encode len bytes of data as stripes of k fragments of frag bytes, on this core. */
static double bench_encode(unsigned k, unsigned m, uint8_t *src, size_t len, uint8_t *parity,
                           uint32_t frag, unsigned runs)
{
    struct ec_codec *c;
    double v[MAX_RUNS];
    size_t stripe = (size_t)k * frag, nstripes = len / stripe;
    uint8_t *data[EC_MAX_FRAGS], *par[EC_MAX_FRAGS];

    if (ec_codec_create(k, m, &c))
        return 0;
    for (unsigned j = 0; j < m; j++)
        par[j] = parity + (size_t)j * frag;
    for (unsigned r = 0; r < runs; r++) {
        uint64_t t0 = cairn_now_ns();

        for (size_t s = 0; s < nstripes; s++) {
            for (unsigned j = 0; j < k; j++)
                data[j] = src + s * stripe + (size_t)j * frag;
            ec_encode(c, frag, (const uint8_t *const *)data, par);
        }
        v[r] = gbps(nstripes * stripe, cairn_now_ns() - t0);
    }
    ec_codec_destroy(c);
    return median(v, runs);
}

static int bench_cluster(const char *envpath, uint8_t *src, uint8_t *dst, size_t len,
                         unsigned runs, double base)
{
    struct cl_cluster_config cfg = {.k = 4, .m = 2, .frag_size = 1u << 20};
    struct cl_env env;
    struct cl_cluster *cl = NULL;
    double w[MAX_RUNS], r[MAX_RUNS];
    char label[64];
    int rc;

    rc = cl_env_load(envpath, &env);
    if (rc) {
        fprintf(stderr, "cairn-bench: %s: %s\n", envpath, cairn_strerror(rc));
        return rc;
    }
    rc = cl_env_cluster_config(&env, &cfg);
    if (!rc)
        rc = cl_cluster_open(&cfg, &cl);
    if (rc) {
        fprintf(stderr, "cairn-bench: open cluster: %s\n", cairn_strerror(rc));
        goto out;
    }
    for (unsigned i = 0; i < runs; i++) {
        uint64_t oid, t0;

        if (getrandom(&oid, sizeof(oid), 0) != sizeof(oid)) {
            rc = CAIRN_EIO;
            goto out;
        }
        t0 = cairn_now_ns();
        rc = cl_stripe_write(cl, oid, 1, src, len, NULL, NULL);
        w[i] = gbps(len, cairn_now_ns() - t0);
        if (rc) {
            fprintf(stderr, "cairn-bench: stripe write: %s\n", cairn_strerror(rc));
            goto out;
        }
        memset(dst, 0, len);
        t0 = cairn_now_ns();
        rc = cl_stripe_read(cl, oid, 1, cl_cluster_layout(cl), NULL, dst, len, NULL);
        r[i] = gbps(len, cairn_now_ns() - t0);
        if (!rc && memcmp(src, dst, len))
            rc = CAIRN_ECRC;
        if (rc) {
            fprintf(stderr, "cairn-bench: stripe read: %s\n", cairn_strerror(rc));
            goto out;
        }
        cl_stripe_delete(cl, oid, 1, cl_cluster_layout(cl), NULL, len);
    }
    printf("end to end through %s to %u D-nodes, EC %u+%u, %u KiB fragments, %zu MiB objects:\n",
           tp_ctx_provider(cl_cluster_tp(cl)), cl_cluster_dnodes(cl), cfg.k, cfg.m,
           cfg.frag_size >> 10, len >> 20);
    snprintf(label, sizeof(label), "stripe write (durable)");
    report(label, median(w, runs), base);
    snprintf(label, sizeof(label), "stripe read (CRC checked)");
    report(label, median(r, runs), base);
out:
    cl_cluster_close(cl);
    cl_env_fini(&env);
    return rc;
}

static int run_local(const char *argv0, char *const args[])
{
    pid_t pid = fork();
    int status;

    (void)argv0;
    if (pid < 0)
        return CAIRN_EIO;
    if (pid == 0) {
        execv(args[0], args);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
        return CAIRN_EIO;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cluster", required_argument, NULL, 'c'}, {"runs", required_argument, NULL, 'r'},
        {"size", required_argument, NULL, 's'},    {"no-cluster", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *envpath = NULL;
    unsigned runs = 5, size_mib = 256;
    bool no_cluster = false;
    char tmpdir[] = "/var/tmp/cairn-bench-XXXXXX", envbuf[256], local[4096];
    const char *src_dir = getenv("CAIRN_SRC");
    bool own = false;
    uint8_t *src, *dst, *parity;
    size_t len;
    double base;
    int c, rc = 0;

    cairn_log_set_level(getenv("CAIRN_LOG") ? getenv("CAIRN_LOG") : "error");
    while ((c = getopt_long(argc, argv, "c:r:s:nh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': envpath = optarg; break;
        case 'r': runs = (unsigned)atoi(optarg); break;
        case 's': size_mib = (unsigned)atoi(optarg); break;
        case 'n': no_cluster = true; break;
        default:
            fprintf(stderr, "usage: cairn-bench [-c CLUSTER_ENV] [--runs N] [--size MiB] "
                            "[--no-cluster]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || size_mib < 16 || size_mib > 4096) {
        fprintf(stderr, "cairn-bench: runs 1..%d, size 16..4096 MiB\n", MAX_RUNS);
        return 2;
    }
    len = (size_t)size_mib << 20;
    src = aligned_alloc(CAIRN_BLOCK, len);
    dst = aligned_alloc(CAIRN_BLOCK, len);
    parity = aligned_alloc(CAIRN_BLOCK, 8u << 20);
    if (!src || !dst || !parity) {
        fprintf(stderr, "cairn-bench: out of memory\n");
        return 1;
    }
    for (size_t off = 0; off < len; off += 256) {
        if (getrandom(src + off, 256, 0) != 256)
            return 1;
    }
    printf("cairn-bench: %zu MiB buffers, median of %u runs, one core\n", len >> 20, runs);
    base = bench_memcpy(dst, src, len, runs);
    report("memcpy", base, base);
    report("crc32c (ISA-L)", bench_crc(src, len, runs), base);
    report("encode 4+2, 1 MiB fragments", bench_encode(4, 2, src, len, parity, 1u << 20, runs),
           base);
    report("encode 8+2, 1 MiB fragments", bench_encode(8, 2, src, len, parity, 1u << 20, runs),
           base);
    report("encode 16+4, 256 KiB fragments",
           bench_encode(16, 4, src, len, parity, 256u << 10, runs), base);
    if (no_cluster)
        goto out;

    if (!envpath) {
        char *up[] = {local, "up", "--dir", tmpdir, "--dnodes", "6", "--ec", "4+2", NULL};

        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(local, sizeof(local), "%s/tools/cairn-local", src_dir ? src_dir : ".");
        if (access(local, X_OK)) {
            fprintf(stderr, "cairn-bench: %s not found; set CAIRN_SRC or pass -c\n", local);
            return 1;
        }
        if (run_local(argv[0], up)) {
            fprintf(stderr, "cairn-bench: could not start a local cluster\n");
            return 1;
        }
        own = true;
        snprintf(envbuf, sizeof(envbuf), "%s/cluster.env", tmpdir);
        envpath = envbuf;
    }
    rc = bench_cluster(envpath, src, dst, len, runs, base);
    if (own) {
        char *down[] = {local, "down", "--dir", tmpdir, NULL};
        char *rm[] = {"/bin/rm", "-rf", tmpdir, NULL};

        run_local(argv[0], down);
        run_local(argv[0], rm);
    }
out:
    free(src);
    free(dst);
    free(parity);
    return rc ? 1 : 0;
}
