/*
 * linclient - one C-node's metadata layer under load, for the linearizability test.
 *
 * Each thread opens its own cluster view (as a C-node's loop threads do) and runs random
 * reads, writes and compare-and-sets on a few metadata records through meta/rec.h, the code
 * every C-node uses for its namespace.  Every operation is logged to --out before it starts
 * (invocation) and again when it ends (completion), one JSON object per line, appended with
 * one write(2) each so lines of several threads and processes never mix:
 *
 *   {"e":"inv","id":"P.T.N","k":K,"f":"r"|"w"|"cas","a":OLD,"b":NEW,"t":NS}
 *   {"e":"ok"|"fail"|"info"|"none","id":"P.T.N","v":VALUE,"t":NS}
 *
 * Values are unique strings ("P.T.N" of the writer) or null (absent record); t is
 * CLOCK_MONOTONIC in ns, shared by every process on the machine.  "ok": done, and for a read
 * v is what it saw; "fail": a compare-and-set that found another value (no effect); "info":
 * the outcome is unknown (an update sent to a leader that stopped answering: it may or may
 * not take effect, then or later); "none": nothing was sent that could change anything (the
 * read before a compare-and-set, or a read, found no leader).  A process killed mid-operation
 * leaves an invocation without completion, which the checker treats as "info".
 *
 * A compare-and-set of value OLD to NEW is a read and a put conditioned on the version read:
 * the put succeeds only if the record was not written since, so it still held OLD (values
 * are never written twice), and the operation takes effect at the put; when the read finds
 * another value, it takes effect (fails) at the read.
 *
 *   linclient -c cluster.env --out FILE --proc P [--threads T] [--keys K] [--seconds S]
 *             [--seed N] [--run NAME] [--leader-wait-ms MS] [--final]
 *
 * --final reads every key once, in one thread, and exits 1 if a read found no leader (the
 * harness retries), so the history ends with the state the cluster settled on.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/cluster.h"
#include "client/env.h"
#include "common/err.h"
#include "common/log.h"
#include "meta/rec.h"

#define MAX_KEYS 64
#define VAL_MAX 48

static struct cl_cluster_config cfg;
static int out_fd = -1;
static unsigned proc_id, nthreads = 4, nkeys = 5, seconds = 20;
static uint64_t seed = 1;
static const char *run = "lin";
static atomic_bool stop_now;

struct worker {
    pthread_t th;
    unsigned id;
    uint64_t rng;
    uint64_t seq;
    char seen[MAX_KEYS][VAL_MAX]; /* last value this thread saw per key; "" = absent */
    uint64_t epoch;               /* the view's map epoch when it ended */
    int rc;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(struct worker *w)
{
    /* xorshift64*: enough for a test schedule, reproducible from --seed. */
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 2685821657736338717ull;
}

static void emit(const char *line, int n)
{
    /* O_APPEND and one write per line: whole lines, whoever else writes the file. */
    if (write(out_fd, line, (size_t)n) != n) {
        perror("linclient: write history");
        _exit(3);
    }
}

/* A JSON string for a value, or null for absent ("" here). */
static const char *jv(const char *v, char *buf, size_t cap)
{
    if (!v || !*v)
        return "null";
    snprintf(buf, cap, "\"%s\"", v);
    return buf;
}

static void log_inv(const char *id, unsigned k, const char *f, const char *a, const char *b)
{
    char line[512], ba[VAL_MAX + 2], bb[VAL_MAX + 2];
    int n = snprintf(line, sizeof(line),
                     "{\"e\":\"inv\",\"id\":\"%s\",\"k\":%u,\"f\":\"%s\",\"a\":%s,\"b\":%s,"
                     "\"t\":%" PRIu64 "}\n",
                     id, k, f, jv(a, ba, sizeof(ba)), jv(b, bb, sizeof(bb)), now_ns());
    emit(line, n);
}

static void log_end(const char *id, const char *e, const char *v)
{
    char line[256], bv[VAL_MAX + 2];
    int n = snprintf(line, sizeof(line), "{\"e\":\"%s\",\"id\":\"%s\",\"v\":%s,\"t\":%" PRIu64 "}\n",
                     e, id, jv(v, bv, sizeof(bv)), now_ns());
    emit(line, n);
}

static void key_name(unsigned k, char *buf, size_t cap)
{
    snprintf(buf, cap, "lin/%s/%u", run, k);
}

/* Read key k: 0 with its value in val ("" if absent) and version, else the error. */
static int read_key(struct cl_cluster *cl, unsigned k, char *val, uint64_t *version)
{
    char key[96];
    struct meta_rec rec = {0};
    int rc;

    key_name(k, key, sizeof(key));
    rc = meta_rec_get(cl, meta_shard_of(key, strlen(key)), key, strlen(key), &rec);
    if (rc == CAIRN_ENOENT) {
        val[0] = 0;
        *version = 0;
        return 0;
    }
    if (rc)
        return rc;
    if (rec.len == 0 || rec.len >= VAL_MAX) {
        fprintf(stderr, "linclient: key %u holds a %u-byte value this test never wrote\n", k,
                rec.len);
        free(rec.val);
        return CAIRN_EPROTO;
    }
    memcpy(val, rec.val, rec.len);
    val[rec.len] = 0;
    *version = rec.version;
    free(rec.val);
    return 0;
}

static int put_key(struct cl_cluster *cl, unsigned k, uint64_t expect, const char *val)
{
    char key[96];

    key_name(k, key, sizeof(key));
    return meta_rec_put(cl, meta_shard_of(key, strlen(key)), key, strlen(key), expect, val,
                        (uint32_t)strlen(val), NULL);
}

static void op_read(struct worker *w, struct cl_cluster *cl, const char *id, unsigned k)
{
    char val[VAL_MAX];
    uint64_t version;
    int rc;

    log_inv(id, k, "r", NULL, NULL);
    rc = read_key(cl, k, val, &version);
    if (rc) {
        log_end(id, "none", NULL);
        return;
    }
    log_end(id, "ok", val);
    if (w)
        strcpy(w->seen[k], val);
}

static void op_write(struct worker *w, struct cl_cluster *cl, const char *id, unsigned k)
{
    int rc;

    log_inv(id, k, "w", NULL, id);
    rc = put_key(cl, k, META_ANY, id);
    log_end(id, rc ? "info" : "ok", NULL);
    if (!rc)
        strcpy(w->seen[k], id);
}

static void op_cas(struct worker *w, struct cl_cluster *cl, const char *id, unsigned k)
{
    char old[VAL_MAX], cur[VAL_MAX];
    uint64_t version;
    int rc;

    /* Mostly the value this thread saw last (such a CAS often wins), sometimes absent. */
    if (rnd(w) % 8 == 0)
        old[0] = 0;
    else
        strcpy(old, w->seen[k]);
    log_inv(id, k, "cas", old, id);
    rc = read_key(cl, k, cur, &version);
    if (rc) {
        log_end(id, "none", NULL);
        return;
    }
    strcpy(w->seen[k], cur);
    if (strcmp(cur, old) != 0) {
        log_end(id, "fail", NULL);
        return;
    }
    rc = put_key(cl, k, version, id);
    if (rc == 0) {
        log_end(id, "ok", NULL);
        strcpy(w->seen[k], id);
    } else if (rc == CAIRN_ECONFLICT) {
        log_end(id, "fail", NULL);
    } else {
        log_end(id, "info", NULL);
    }
}

static void *work(void *arg)
{
    struct worker *w = arg;
    struct cl_cluster *cl = NULL;
    uint64_t end = now_ns() + (uint64_t)seconds * 1000000000u;
    char id[VAL_MAX];

    w->rc = cl_cluster_open(&cfg, &cl);
    if (w->rc) {
        fprintf(stderr, "linclient: open cluster: %s\n", cairn_strerror(w->rc));
        return NULL;
    }
    while (!atomic_load(&stop_now) && now_ns() < end) {
        unsigned k = (unsigned)(rnd(w) % nkeys);
        unsigned pick = (unsigned)(rnd(w) % 10);

        snprintf(id, sizeof(id), "%u.%u.%" PRIu64, proc_id, w->id, ++w->seq);
        if (pick < 4)
            op_read(w, cl, id, k);
        else if (pick < 6)
            op_write(w, cl, id, k);
        else
            op_cas(w, cl, id, k);
    }
    w->epoch = cl_cluster_epoch(cl);
    cl_cluster_close(cl);
    return NULL;
}

static int final_reads(void)
{
    struct cl_cluster *cl = NULL;
    char id[VAL_MAX];
    int rc = cl_cluster_open(&cfg, &cl), bad = 0;

    if (rc) {
        fprintf(stderr, "linclient: open cluster: %s\n", cairn_strerror(rc));
        return 1;
    }
    for (unsigned k = 0; k < nkeys; k++) {
        char val[VAL_MAX];
        uint64_t version;

        snprintf(id, sizeof(id), "%u.0.%u", proc_id, k);
        log_inv(id, k, "r", NULL, NULL);
        rc = read_key(cl, k, val, &version);
        if (rc) {
            log_end(id, "none", NULL);
            fprintf(stderr, "linclient: final read of key %u: %s\n", k, cairn_strerror(rc));
            bad = 1;
        } else {
            log_end(id, "ok", val);
            printf("key %u = %s (version %" PRIu64 ")\n", k, val[0] ? val : "absent",
                   version);
        }
    }
    cl_cluster_close(cl);
    return bad;
}

static void usage(void)
{
    fprintf(stderr, "usage: linclient -c cluster.env --out FILE --proc P [--threads T] "
                    "[--keys K] [--seconds S] [--seed N] [--run NAME] [--leader-wait-ms MS] "
                    "[--final]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'},     {"proc", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, 't'}, {"keys", required_argument, NULL, 'k'},
        {"seconds", required_argument, NULL, 's'}, {"seed", required_argument, NULL, 'S'},
        {"run", required_argument, NULL, 'r'},     {"leader-wait-ms", required_argument, NULL, 'w'},
        {"final", no_argument, NULL, 'f'},         {NULL, 0, NULL, 0},
    };
    const char *envpath = NULL, *out = NULL;
    struct cl_env env = {0};
    struct worker *w;
    bool final = false;
    uint32_t leader_wait = 0;
    int c, rc = 0;

    cairn_log_set_level(getenv("CAIRN_LOG") ? getenv("CAIRN_LOG") : "error");
    while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        switch (c) {
        case 'c': envpath = optarg; break;
        case 'o': out = optarg; break;
        case 'p': proc_id = (unsigned)strtoul(optarg, NULL, 10); break;
        case 't': nthreads = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'k': nkeys = (unsigned)strtoul(optarg, NULL, 10); break;
        case 's': seconds = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'S': seed = strtoull(optarg, NULL, 10); break;
        case 'r': run = optarg; break;
        case 'w': leader_wait = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'f': final = true; break;
        default: usage(); return 2;
        }
    }
    if (!envpath || !out || nthreads == 0 || nthreads > 64 || nkeys == 0 || nkeys > MAX_KEYS ||
        strlen(run) > 40) {
        usage();
        return 2;
    }
    rc = cl_env_load(envpath, &env);
    if (rc || cl_env_cluster_config(&env, &cfg)) {
        fprintf(stderr, "linclient: %s: %s\n", envpath, cairn_strerror(rc ? rc : CAIRN_EINVAL));
        return 2;
    }
    cfg.leader_wait_ms = leader_wait;
    out_fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0) {
        perror(out);
        return 2;
    }
    if (final) {
        rc = final_reads();
        goto done;
    }
    w = calloc(nthreads, sizeof(*w));
    if (!w) {
        rc = 2;
        goto done;
    }
    for (unsigned i = 0; i < nthreads; i++) {
        w[i].id = i + 1;
        w[i].rng = (seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)proc_id << 32) ^ (i + 1u) ^
                   0xA5A5A5A5u;
        if (pthread_create(&w[i].th, NULL, work, &w[i])) {
            atomic_store(&stop_now, true);
            nthreads = i;
            rc = 2;
            break;
        }
    }
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(w[i].th, NULL);
        if (w[i].rc)
            rc = 1;
        /* A view follows map changes by itself (refused with a stale epoch, it reads the
         * map again): the test checks this line. */
        printf("thread %u ended at map epoch %" PRIu64 "\n", w[i].id, w[i].epoch);
    }
    free(w);
done:
    close(out_fd);
    cl_env_fini(&env);
    return rc;
}
