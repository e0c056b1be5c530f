/*
 * dcluster.c - real D-node processes for unit tests (see dcluster.h).
 *
 * The protocol with a D-node is the one tools/cairn-local uses: start it with --ready-file and
 * wait until that file says "HOST:PORT PID" with the pid we started (the D-node writes it by
 * rename once it serves, so a half-written file is never seen).  Ports are picked at random
 * below the kernel's ephemeral range: a node keeps its port across a restart, and a port from
 * the ephemeral range could meanwhile become the local end of some outgoing connection.  Two
 * test runs (or engineers) can still race for a port; a node that exits during startup is
 * therefore started again on a fresh port, which is safe before any view has seen its address.
 */
#include "tests/support/dcluster.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cairn.h"

#define BASE_DIR "/var/tmp"
#define DIR_PREFIX "cairn-dcluster-"
#define PROVIDER "tcp;ofi_rxm"
#define HOST "127.0.0.1"
#define READY_MS 60000u  /* generous: D-nodes built with ASan start slowly on a busy host */
#define START_ATTEMPTS 6 /* fresh ports tried for a node that exits during startup */
#define ARGC_MAX 20

/* Path buffers: the cluster directory is BASE_DIR/DIR_PREFIX + 6 characters. */
#define DIR_MAX 64
#define PATH_LEN (DIR_MAX + 32)

struct node {
    char dir[PATH_LEN];
    char dev[PATH_LEN];
    char meta[PATH_LEN];
    char ready[PATH_LEN];
    char log[PATH_LEN];
    char addr[32];
    char domain[16];
    unsigned port;
    pid_t pid; /* 0: not running */
};

struct dcluster {
    unsigned n;
    char dir[DIR_MAX];
    char bin[PATH_MAX];
    char dev_size[32];
    char max_payload[32];
    char dnodes[DCLUSTER_MAX_NODES * 32];
    struct cl_cluster_config cfg;
    struct node nodes[DCLUSTER_MAX_NODES];
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0; /* go on: remove what can be removed */
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Directories of test processes that died without their .fini (a crash, a timeout): their
 * D-nodes died with them (PDEATHSIG), only the files remain.  A directory whose owner is
 * alive, or has no owner file yet (being set up right now), is left alone. */
static void sweep_stale(void)
{
    DIR *d = opendir(BASE_DIR);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char path[PATH_MAX], owner[PATH_MAX + 8];
        FILE *f;
        int pid = 0;

        if (strncmp(e->d_name, DIR_PREFIX, strlen(DIR_PREFIX)))
            continue;
        snprintf(path, sizeof(path), "%s/%s", BASE_DIR, e->d_name);
        snprintf(owner, sizeof(owner), "%s/owner", path);
        f = fopen(owner, "r");
        if (!f)
            continue;
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
        if (pid > 0 && kill(pid, 0) && errno == ESRCH)
            rm_rf(path);
    }
    closedir(d);
}

/* The lower end of the kernel's ephemeral port range (where connections get their ports). */
static unsigned ephemeral_lo(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    unsigned lo = 32768, hi = 60999;

    if (f) {
        if (fscanf(f, "%u %u", &lo, &hi) != 2)
            lo = 32768;
        fclose(f);
    }
    return lo;
}

static bool port_free(unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0)
        return false;
    ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static unsigned pick_port(const struct dcluster *dc)
{
    unsigned lo = ephemeral_lo(), base = lo > 12000 ? lo - 10000 : 20000;

    for (int tries = 0; tries < 500; tries++) {
        uint32_t r = 0;
        unsigned port;
        bool taken = false;

        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
            r = (uint32_t)now_ms() * 2654435761u + (uint32_t)tries;
        port = base + r % 10000;
        for (unsigned i = 0; i < dc->n; i++)
            taken |= dc->nodes[i].port == port;
        if (!taken && port_free(port))
            return port;
    }
    return 0;
}

static void set_port(struct dcluster *dc, unsigned i, unsigned port)
{
    dc->nodes[i].port = port;
    snprintf(dc->nodes[i].addr, sizeof(dc->nodes[i].addr), "%s:%u", HOST, port);
}

/* Fork and exec D-node i; does not wait for it.  Everything the child needs is prepared
 * before fork(): between fork and exec it only makes async-signal-safe calls, since the test
 * process may have threads (the fabric's). */
static int spawn(struct dcluster *dc, unsigned i)
{
    struct node *nd = &dc->nodes[i];
    char *argv[ARGC_MAX];
    int argc = 0, logfd;
    pid_t parent = getpid(), pid;

    argv[argc++] = dc->bin;
    argv[argc++] = "--listen";
    argv[argc++] = nd->addr;
    argv[argc++] = "--dev";
    argv[argc++] = nd->dev;
    argv[argc++] = "--dev-size";
    argv[argc++] = dc->dev_size;
    argv[argc++] = "--meta";
    argv[argc++] = nd->meta;
    argv[argc++] = "--provider";
    argv[argc++] = PROVIDER;
    argv[argc++] = "--max-payload";
    argv[argc++] = dc->max_payload;
    argv[argc++] = "--domain"; /* each a failure domain of its own, like separate machines */
    argv[argc++] = nd->domain;
    argv[argc++] = "--ready-file";
    argv[argc++] = nd->ready;
    argv[argc] = NULL;

    unlink(nd->ready);
    /* Appending keeps the log of every life of the node, which is what a failure needs. */
    logfd = open(nd->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0)
        return CAIRN_EIO;
    pid = fork();
    if (pid < 0) {
        close(logfd);
        return CAIRN_EIO;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);

        /* Never outlive the test: a crash or a Criterion timeout kills the test process
         * without running .fini.  The check after prctl closes the race with a parent that
         * died before it took effect. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        /* Drop every other descriptor: Criterion's pipes to its runner must not stay open
         * in a D-node. */
        close_range(3, ~0u, 0);
        execv(dc->bin, argv);
        _exit(127);
    }
    close(logfd);
    nd->pid = pid;
    return 0;
}

/* Whether the child has exited (reaping it); a child that is gone is forgotten. */
static bool exited(struct node *nd)
{
    int st;
    pid_t r = waitpid(nd->pid, &st, WNOHANG);

    if (r == nd->pid || (r < 0 && errno == ECHILD && kill(nd->pid, 0) && errno == ESRCH)) {
        nd->pid = 0;
        return true;
    }
    return false;
}

static void log_tail(const struct node *nd)
{
    FILE *f = fopen(nd->log, "r");
    char line[512];
    long size;

    fprintf(stderr, "dcluster: log of D-node %s (%s):\n", nd->addr, nd->log);
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, size > 4000 ? size - 4000 : 0, SEEK_SET);
    while (fgets(line, sizeof(line), f))
        fprintf(stderr, "  %s", line);
    fclose(f);
}

/* Wait until D-node i announces itself.  Returns 0, CAIRN_EAGAIN if it exited (the caller
 * may try a fresh port), or CAIRN_ETIMEDOUT. */
static int wait_ready(struct dcluster *dc, unsigned i, uint64_t deadline)
{
    struct node *nd = &dc->nodes[i];

    for (;;) {
        FILE *f = fopen(nd->ready, "r");

        if (f) {
            char addr[64];
            int pid = 0;
            int got = fscanf(f, "%63s %d", addr, &pid);

            fclose(f);
            if (got == 2 && pid == nd->pid)
                return 0;
        }
        if (exited(nd))
            return CAIRN_EAGAIN;
        if (now_ms() > deadline)
            return CAIRN_ETIMEDOUT;
        sleep_ms(10);
    }
}

static void kill_node(struct node *nd)
{
    if (!nd->pid)
        return;
    kill(nd->pid, SIGKILL);
    while (waitpid(nd->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    nd->pid = 0;
}

static int setup_dirs(struct dcluster *dc, unsigned i)
{
    struct node *nd = &dc->nodes[i];
    char base[DIR_MAX + 16]; /* a copy: the paths below are formatted from it */

    snprintf(base, sizeof(base), "%s/dnode%u", dc->dir, i);
    snprintf(nd->dir, sizeof(nd->dir), "%s", base);
    snprintf(nd->dev, sizeof(nd->dev), "%s/dev", base);
    snprintf(nd->meta, sizeof(nd->meta), "%s/meta", base);
    snprintf(nd->ready, sizeof(nd->ready), "%s/ready", base);
    snprintf(nd->domain, sizeof(nd->domain), "d%u", i);
    snprintf(nd->log, sizeof(nd->log), "%s/log", base);
    if (mkdir(nd->dir, 0755) || mkdir(nd->meta, 0755))
        return CAIRN_EIO;
    return 0;
}

int dcluster_start(const struct dcluster_opts *o, struct dcluster **out)
{
    const char *build = getenv("CAIRN_BUILD");
    uint32_t frag = o->frag_size ? o->frag_size : 64u << 10;
    uint64_t dev = o->dev_size ? o->dev_size : 64ull << 20, deadline;
    struct dcluster *dc;
    char owner[DIR_MAX + 8];
    size_t off = 0;
    FILE *f;
    int rc;

    *out = NULL;
    if (!o->nodes || o->nodes > DCLUSTER_MAX_NODES || !o->k || !o->m || o->k + o->m > o->nodes)
        return CAIRN_EINVAL;
    if (!build) {
        fprintf(stderr, "dcluster: CAIRN_BUILD is not set (meson test sets it)\n");
        return CAIRN_EINVAL;
    }
    dc = calloc(1, sizeof(*dc));
    if (!dc)
        return CAIRN_ENOMEM;
    snprintf(dc->bin, sizeof(dc->bin), "%s/dnode/cairn-dnode", build);
    if (access(dc->bin, X_OK)) {
        fprintf(stderr, "dcluster: no D-node binary at %s\n", dc->bin);
        free(dc);
        return CAIRN_ENOENT;
    }
    sweep_stale();
    snprintf(dc->dir, sizeof(dc->dir), "%s/%sXXXXXX", BASE_DIR, DIR_PREFIX);
    if (!mkdtemp(dc->dir)) {
        free(dc);
        return CAIRN_EIO;
    }
    snprintf(owner, sizeof(owner), "%s/owner", dc->dir);
    f = fopen(owner, "w");
    if (f) {
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
    snprintf(dc->dev_size, sizeof(dc->dev_size), "%llu", (unsigned long long)dev);
    snprintf(dc->max_payload, sizeof(dc->max_payload), "%u", CAIRN_MAX(frag, 1u << 20));

    for (unsigned i = 0; i < o->nodes; i++) {
        unsigned port = pick_port(dc);

        if (!port || setup_dirs(dc, i)) {
            rc = CAIRN_EIO;
            goto fail;
        }
        dc->n = i + 1;
        set_port(dc, i, port);
    }
    /* Start them all, then wait: they come up in parallel. */
    for (unsigned i = 0; i < dc->n; i++) {
        rc = spawn(dc, i);
        if (rc)
            goto fail;
    }
    deadline = now_ms() + READY_MS;
    for (unsigned i = 0; i < dc->n; i++) {
        for (int attempt = 1;; attempt++) {
            rc = wait_ready(dc, i, deadline);
            if (rc != CAIRN_EAGAIN || attempt == START_ATTEMPTS)
                break;
            /* Most likely someone took the port between our check and its bind. */
            set_port(dc, i, pick_port(dc)); /* pick_port skips the failed one too */
            if (!dc->nodes[i].port || (rc = spawn(dc, i)))
                break;
        }
        if (rc) {
            fprintf(stderr, "dcluster: D-node %u did not start: %s\n", i, cairn_strerror(rc));
            log_tail(&dc->nodes[i]);
            goto fail;
        }
    }

    for (unsigned i = 0; i < dc->n; i++)
        off += (size_t)snprintf(dc->dnodes + off, sizeof(dc->dnodes) - off, "%s%s", i ? " " : "",
                                dc->nodes[i].addr);
    dc->cfg = (struct cl_cluster_config){.dnodes = dc->dnodes,
                                         .provider = PROVIDER,
                                         .bind_host = HOST,
                                         .k = o->k,
                                         .m = o->m,
                                         .frag_size = frag,
                                         .timeout_ms = o->timeout_ms ? o->timeout_ms : 2000};
    /* Create the cluster: its first map, placing the metadata shards' groups. */
    {
        struct cl_cluster_config cfg = dc->cfg;
        struct cl_cluster *cl = NULL;

        cfg.no_map = true;
        /* A D-node that did not answer in time (a loaded host) made map_init give nobody
         * anything: try again with a fresh view, a few times. */
        for (int tries = 0; tries < 4; tries++) {
            cl = NULL;
            rc = cl_cluster_open(&cfg, &cl);
            if (!rc)
                rc = cl_cluster_map_init(cl, o->shards ? o->shards : DCLUSTER_SHARDS);
            cl_cluster_close(cl);
            if (rc != CAIRN_EUNREACH && rc != CAIRN_ETIMEDOUT)
                break;
        }
        if (rc) {
            fprintf(stderr, "dcluster: creating the cluster map: %s\n", cairn_strerror(rc));
            goto fail;
        }
    }
    *out = dc;
    return 0;
fail:
    dcluster_stop(dc);
    return rc;
}

void dcluster_stop(struct dcluster *dc)
{
    if (!dc)
        return;
    /* SIGKILL, not SIGTERM: nothing a test checks depends on a clean exit, and it is quick. */
    for (unsigned i = 0; i < dc->n; i++)
        kill_node(&dc->nodes[i]);
    rm_rf(dc->dir);
    free(dc);
}

int dcluster_kill(struct dcluster *dc, unsigned i)
{
    if (i >= dc->n)
        return CAIRN_EINVAL;
    kill_node(&dc->nodes[i]);
    return 0;
}

int dcluster_restart_set(struct dcluster *dc, const unsigned *nodes, unsigned n)
{
    uint64_t deadline = now_ms() + READY_MS;
    int rc = 0;

    for (unsigned j = 0; j < n; j++)
        if (nodes[j] >= dc->n)
            return CAIRN_EINVAL;
    /* Start them all, then wait, as at start.  The same port: a view knows a node by its
     * address. */
    for (unsigned j = 0; j < n && !rc; j++) {
        kill_node(&dc->nodes[nodes[j]]);
        rc = spawn(dc, nodes[j]);
    }
    for (unsigned j = 0; j < n && !rc; j++) {
        unsigned i = nodes[j];

        /* Binding the port may fail for a moment while the kernel tears down the dead
         * process's sockets: try again briefly. */
        for (int attempt = 1;; attempt++) {
            rc = wait_ready(dc, i, deadline);
            if (rc != CAIRN_EAGAIN || attempt == START_ATTEMPTS)
                break;
            sleep_ms(200);
            if ((rc = spawn(dc, i)))
                break;
        }
        if (rc) {
            fprintf(stderr, "dcluster: D-node %u did not restart: %s\n", i, cairn_strerror(rc));
            log_tail(&dc->nodes[i]);
        }
    }
    if (rc)
        for (unsigned j = 0; j < n; j++)
            kill_node(&dc->nodes[nodes[j]]);
    return rc;
}

int dcluster_restart(struct dcluster *dc, unsigned i)
{
    return dcluster_restart_set(dc, &i, 1);
}

bool dcluster_running(const struct dcluster *dc, unsigned i)
{
    return i < dc->n && dc->nodes[i].pid != 0;
}

unsigned dcluster_nodes(const struct dcluster *dc)
{
    return dc->n;
}

const struct cl_cluster_config *dcluster_config(const struct dcluster *dc)
{
    return &dc->cfg;
}

int dcluster_open(const struct dcluster *dc, struct cl_cluster **out)
{
    int rc = cl_cluster_open(&dc->cfg, out);

    /* Connect to every D-node now, so the first call of a test does not pay the setup. */
    if (!rc && cl_cluster_probe(*out)) {
        fprintf(stderr, "dcluster: a D-node did not answer the first ping\n");
        cl_cluster_close(*out);
        *out = NULL;
        rc = CAIRN_EUNREACH;
    }
    return rc;
}

int dcluster_probe(const struct dcluster *dc, struct cl_cluster *cl)
{
    for (int round = 0; round < 4; round++) {
        bool all = true;

        cl_cluster_probe(cl);
        for (unsigned i = 0; i < dc->n; i++)
            all &= !dc->nodes[i].pid || !cl_cluster_node_down(cl, i);
        if (all)
            return 0;
    }
    return CAIRN_EUNREACH;
}

const char *dcluster_dev_path(const struct dcluster *dc, unsigned i)
{
    return i < dc->n ? dc->nodes[i].dev : NULL;
}
