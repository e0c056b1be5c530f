/*
 * cairn-nfsbench.c - NFSv3 load generator (libnfs): large-file throughput and metadata rates.
 *
 * One file on purpose (about 1,800 lines): it is one program whose phases (mount, write, read,
 * create, lookup, getattr, readdirplus, remove) share the client threads, the poll loop and the
 * measurement code; split, each piece would need all of them.
 *
 *   cairn-nfsbench --url URL [--url URL ...] | --cluster DIR|FILE
 *                  --op OP[,OP...] [--clients N] [--depth D] [--runs R] [--size BYTES]
 *                  [--io-size BYTES] [--entries N] [--dir PATH] [--rdp-size BYTES]
 *                  [--timeout S] [--watch NAME=PID,PID...] [--progress S]
 *
 * Each client is one thread with its own nfs_context (its own mount and TCP connection); the
 * clients are dealt round-robin over the URLs, so with one URL per C-node the load is spread
 * evenly.  A client keeps up to --depth requests in flight (the async libnfs API and one poll
 * loop per thread; depth 1 is what a synchronous caller does).  The threads live for the whole
 * invocation and run each phase between two barriers; the main thread times a phase from the
 * first barrier to the second, so a run's time is that of its slowest client.
 *
 * What each operation sends, and what its figure means:
 *
 *   write    each client writes DIR/big.C (C = client number, the previous one removed first,
 *            untimed): nfs_creat, --size bytes in --io-size WRITEs (UNSTABLE, as libnfs sends
 *            them), then nfs_fsync (COMMIT) and close.  The time includes create and COMMIT.
 *            Figure: decimal GB/s over all clients.
 *   read     each client reads its DIR/big.C back: open, GETATTR (size check), READs.  Every
 *            64 KiB of the file starts with its offset and the client number, written by
 *            `write` and checked here, so a misplaced or stale block fails the run.
 *   create   --entries empty files in DIR/meta, one CREATE3 (GUARDED) each, the names shared
 *            out over the clients.  One run (a second would find the names taken).
 *   lookup   one LOOKUP3 per name, in a scrambled order (not the creation order).  The handles
 *            are kept for `getattr` (which does an untimed lookup pass first if it runs alone).
 *   getattr  one GETATTR3 per handle, same scrambled order.
 *   readdirplus  every client lists the whole of DIR/meta with READDIRPLUS3 (--rdp-size bytes
 *            maxcount, dircount an eighth of it, as the Linux client does); the figure is
 *            entries per second over all clients.  Each listing is checked: every name exactly
 *            once, nothing missing; entries without attributes or handles are counted.
 *   remove   one REMOVE3 per name.  One run.
 *   cleanup  (untimed) removes the big files and whatever DIR/meta holds, then both directories.
 *
 * The metadata operations go through libnfs's raw RPC layer on the directory's handle, so one
 * operation is one RPC; the path calls (nfs_stat64 and friends) would add a LOOKUP per path
 * component to each.  Runs: write, read, lookup, getattr and readdirplus repeat --runs times
 * and report every run and the median; create and remove run once.
 *
 * --watch NAME=PID,... (up to 4) adds the CPU those processes used during the timed runs, in
 * cores, next to the client's own, so a figure says which side ran out of CPU.  Any error (an
 * NFS status other than NFS3_OK, a short read or write, a content mismatch, no reply within
 * --timeout seconds, a lost connection) stops the invocation with a message naming the
 * procedure, the object and the status, and exit status 1.  Each reported operation ends with
 * one "RESULT op=... " line for scripts (tools/nfsbench).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>

#include "client/env.h"

#define MAX_URLS 16
#define MAX_CLIENTS 256
#define MAX_DEPTH 64
#define MAX_RUNS 31
#define MAX_ENTRIES 10000000u
#define MAX_WATCH 4
#define MAX_WATCH_PIDS 64
#define URL_MAX 512
#define PATH_MAX_BENCH 256
#define STAMP_EVERY (64u << 10)           /* every block of this size starts with a stamp */
#define STAMP_MAGIC 0x43524e4e46534200ull /* "CRNNFSB\0", or'ed with the client number */
#define NAME_LEN 16                       /* "f%08u" and its NUL */
#define POLL_MS 500
#define DEFAULT_TIMEOUT_S 120
#define SCRAMBLE_PRIME 1000003u

enum op {
    OP_WRITE,
    OP_READ,
    OP_CREATE,
    OP_LOOKUP,
    OP_GETATTR,
    OP_READDIRPLUS,
    OP_REMOVE,
    OP_CLEANUP,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {"write",   "read",        "create", "lookup",
                                               "getattr", "readdirplus", "remove", "cleanup"};

/* What the client threads do between two barriers. */
enum phase {
    PH_EXIT,
    PH_MKDIR,      /* client 0: DIR and DIR/meta */
    PH_OPEN_META,  /* every client: the handle of DIR/meta */
    PH_UNLINK_BIG, /* untimed, before each write run */
    PH_WRITE,
    PH_READ,
    PH_CREATE,
    PH_LOOKUP,
    PH_GETATTR,
    PH_READDIRPLUS,
    PH_REMOVE,
    PH_LIST,  /* client 0: the names DIR/meta holds, for cleanup */
    PH_PURGE, /* every client: remove the listed names */
    PH_RMDIR, /* client 0: DIR/meta and DIR */
};

struct fh_buf {
    uint32_t len;
    char val[NFS3_FHSIZE];
};

struct watch {
    char name[32];
    int pids[MAX_WATCH_PIDS];
    unsigned npids;
    double cpu; /* CPU seconds over the timed runs of the current operation */
};

struct client;

/* One request in flight: its buffer (data operations) and what it is about, for messages. */
struct slot {
    struct client *c;
    bool busy;
    uint64_t item; /* file offset, or entry number */
    char name[NAME_LEN];
    unsigned char *buf; /* io_size bytes, data operations only */
};

struct client {
    struct bench *b;
    unsigned id;
    pthread_t thread;
    const char *url;
    struct nfs_context *nfs;
    struct fh_buf root; /* handle of the export's root */
    struct fh_buf meta; /* handle of DIR/meta */
    struct slot slots[MAX_DEPTH];
    unsigned inflight;
    bool failed;
    /* data operations: the open file and the next offset to send */
    struct nfsfh *fh;
    uint64_t off;
    /* readdirplus: where the listing is, and what it found */
    uint64_t cookie;
    cookieverf3 verf;
    bool eof;
    uint8_t *seen; /* one bit per entry */
    uint64_t listed, dups, foreign, no_attr, no_handle, rpcs;
};

struct bench {
    /* configuration, set once in main */
    const char *urls[MAX_URLS];
    unsigned nurls;
    unsigned nclients, depth, runs, entries, rdp_size;
    uint64_t size, io_size;
    int timeout_s;
    unsigned progress_s; /* 0: no progress lines */
    char dir[PATH_MAX_BENCH], meta[PATH_MAX_BENCH + 8];
    struct watch watch[MAX_WATCH];
    unsigned nwatch;
    unsigned char *pattern; /* io_size random bytes every write buffer starts from */
    unsigned scramble;      /* multiplier coprime to entries */

    /* the phase in progress, written by main before the "go" barrier */
    enum phase phase;
    atomic_uint_fast64_t next; /* next shared work item */
    atomic_bool stop;          /* an error happened: take no more work */
    pthread_barrier_t go, done;

    /* errors: the first one is reported */
    pthread_mutex_t lock;
    char err[768];

    struct fh_buf *fhs; /* entries handles from lookup, for getattr */
    bool have_fhs;
    char **names; /* cleanup: the names listed in DIR/meta */
    unsigned nnames;

    struct client clients[MAX_CLIENTS];
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *nfsstat_name(int st)
{
    static const struct {
        int st;
        const char *name;
    } t[] = {{NFS3_OK, "NFS3_OK"},
             {NFS3ERR_PERM, "NFS3ERR_PERM"},
             {NFS3ERR_NOENT, "NFS3ERR_NOENT"},
             {NFS3ERR_IO, "NFS3ERR_IO"},
             {NFS3ERR_NXIO, "NFS3ERR_NXIO"},
             {NFS3ERR_ACCES, "NFS3ERR_ACCES"},
             {NFS3ERR_EXIST, "NFS3ERR_EXIST"},
             {NFS3ERR_XDEV, "NFS3ERR_XDEV"},
             {NFS3ERR_NODEV, "NFS3ERR_NODEV"},
             {NFS3ERR_NOTDIR, "NFS3ERR_NOTDIR"},
             {NFS3ERR_ISDIR, "NFS3ERR_ISDIR"},
             {NFS3ERR_INVAL, "NFS3ERR_INVAL"},
             {NFS3ERR_FBIG, "NFS3ERR_FBIG"},
             {NFS3ERR_NOSPC, "NFS3ERR_NOSPC"},
             {NFS3ERR_ROFS, "NFS3ERR_ROFS"},
             {NFS3ERR_MLINK, "NFS3ERR_MLINK"},
             {NFS3ERR_NAMETOOLONG, "NFS3ERR_NAMETOOLONG"},
             {NFS3ERR_NOTEMPTY, "NFS3ERR_NOTEMPTY"},
             {NFS3ERR_DQUOT, "NFS3ERR_DQUOT"},
             {NFS3ERR_STALE, "NFS3ERR_STALE"},
             {NFS3ERR_REMOTE, "NFS3ERR_REMOTE"},
             {NFS3ERR_BADHANDLE, "NFS3ERR_BADHANDLE"},
             {NFS3ERR_NOT_SYNC, "NFS3ERR_NOT_SYNC"},
             {NFS3ERR_BAD_COOKIE, "NFS3ERR_BAD_COOKIE"},
             {NFS3ERR_NOTSUPP, "NFS3ERR_NOTSUPP"},
             {NFS3ERR_TOOSMALL, "NFS3ERR_TOOSMALL"},
             {NFS3ERR_SERVERFAULT, "NFS3ERR_SERVERFAULT"},
             {NFS3ERR_BADTYPE, "NFS3ERR_BADTYPE"},
             {NFS3ERR_JUKEBOX, "NFS3ERR_JUKEBOX"}};

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].st == st)
            return t[i].name;
    return "unknown nfsstat3";
}

/* Record the first error (later ones are usually consequences) and stop every client. */
static void __attribute__((format(printf, 2, 3))) fail(struct client *c, const char *fmt, ...)
{
    struct bench *b = c->b;
    va_list ap;

    c->failed = true;
    pthread_mutex_lock(&b->lock);
    if (!b->err[0]) {
        int n = snprintf(b->err, sizeof(b->err), "client %u (%s): ", c->id, c->url);

        va_start(ap, fmt);
        vsnprintf(b->err + n, sizeof(b->err) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&b->lock);
    atomic_store(&b->stop, true);
}

/* The reason an RPC did not complete, from a raw callback's status and data. */
static const char *rpc_why(struct bench *b, int status, void *data, char *buf, size_t len)
{
    switch (status) {
    case RPC_STATUS_ERROR:
        snprintf(buf, len, "RPC error: %s", data ? (const char *)data : "?");
        break;
    case RPC_STATUS_TIMEOUT:
        snprintf(buf, len, "no reply within %d s", b->timeout_s);
        break;
    case RPC_STATUS_CANCEL:
        snprintf(buf, len, "cancelled");
        break;
    default:
        snprintf(buf, len, "RPC status %d", status);
    }
    return buf;
}

/* Common head of every raw callback: false (and the slot released) if the call failed. */
static bool rpc_done(struct slot *s, const char *proc, int status, void *data, int nfsstat)
{
    struct client *c = s->c;
    char why[256];

    s->busy = false;
    c->inflight--;
    if (status == RPC_STATUS_CANCEL && atomic_load(&c->b->stop))
        return false; /* torn down after another error */
    if (status != RPC_STATUS_SUCCESS) {
        fail(c, "%s %s: %s", proc, s->name, rpc_why(c->b, status, data, why, sizeof(why)));
        return false;
    }
    if (nfsstat != NFS3_OK) {
        fail(c, "%s %s: %s (%d)", proc, s->name, nfsstat_name(nfsstat), nfsstat);
        return false;
    }
    return true;
}

/* Wait for socket events once and let libnfs run the callbacks.  Returns -1 after an error. */
static int pump(struct client *c)
{
    struct pollfd pfd = {.fd = nfs_get_fd(c->nfs), .events = (short)nfs_which_events(c->nfs)};
    int n = poll(&pfd, 1, POLL_MS);

    if (n < 0 && errno != EINTR) {
        fail(c, "poll: %s", strerror(errno));
        return -1;
    }
    /* Called on timeouts too: libnfs expires requests from here. */
    if (nfs_service(c->nfs, n > 0 ? pfd.revents : 0) < 0) {
        fail(c, "connection failed: %s", nfs_get_error(c->nfs));
        return -1;
    }
    return c->failed ? -1 : 0;
}

typedef bool (*next_fn)(struct client *c, uint64_t *item);
typedef int (*issue_fn)(struct client *c, struct slot *s);

/* Keep up to depth requests in flight until next() runs dry, then wait for the last replies.
 * Returns 0, or -1 after an error (recorded with fail()). */
static int drive(struct client *c, unsigned depth, next_fn next, issue_fn issue)
{
    struct bench *b = c->b;
    uint64_t item;

    for (;;) {
        while (c->inflight < depth && !atomic_load(&b->stop) && next(c, &item)) {
            struct slot *s = NULL;

            for (unsigned i = 0; i < depth; i++)
                if (!c->slots[i].busy) {
                    s = &c->slots[i];
                    break;
                }
            s->busy = true;
            s->item = item;
            c->inflight++;
            if (issue(c, s)) {
                s->busy = false;
                c->inflight--;
                fail(c, "cannot send a request: %s", nfs_get_error(c->nfs));
                return -1;
            }
        }
        if (c->inflight == 0)
            break;
        if (pump(c))
            return -1;
    }
    return c->failed || atomic_load(&b->stop) ? -1 : 0;
}

/* ---- names and handles ---- */

static void entry_name(struct slot *s, uint64_t i)
{
    snprintf(s->name, sizeof(s->name), "f%08" PRIu64, i);
}

/* Entry number of a name this tool creates, or -1. */
static long name_index(const char *name, unsigned entries)
{
    char *end;
    unsigned long v;

    if (name[0] != 'f' || strlen(name) != 9)
        return -1;
    v = strtoul(name + 1, &end, 10);
    if (*end || v >= entries)
        return -1;
    return (long)v;
}

static bool next_entry(struct client *c, uint64_t *item)
{
    uint64_t i = atomic_fetch_add(&c->b->next, 1);

    if (i >= c->b->entries)
        return false;
    *item = i;
    return true;
}

/* Same as next_entry, in an order that is not the creation order (i * p mod n, p coprime
 * to n), so servers cannot ride on locality of the creation sequence. */
static bool next_scrambled(struct client *c, uint64_t *item)
{
    if (!next_entry(c, item))
        return false;
    *item = (*item * c->b->scramble) % c->b->entries;
    return true;
}

static void set_dirop(diropargs3 *d, struct client *c, char *name)
{
    d->dir.data.data_len = c->meta.len;
    d->dir.data.data_val = c->meta.val;
    d->name = name;
}

/* ---- create / lookup / getattr / remove ---- */

static void create_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
    CREATE3res *res = data;

    (void)rpc;
    rpc_done(priv, "CREATE3", status, data, status == RPC_STATUS_SUCCESS ? (int)res->status : 0);
}

static int issue_create(struct client *c, struct slot *s)
{
    CREATE3args a;

    memset(&a, 0, sizeof(a));
    entry_name(s, s->item);
    set_dirop(&a.where, c, s->name);
    a.how.mode = GUARDED;
    a.how.createhow3_u.g_obj_attributes.mode.set_it = 1;
    a.how.createhow3_u.g_obj_attributes.mode.set_mode3_u.mode = 0644;
    return rpc_nfs3_create_async(nfs_get_rpc_context(c->nfs), create_cb, &a, s);
}

static void lookup_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
    LOOKUP3res *res = data;
    struct slot *s = priv;
    struct bench *b = s->c->b;

    (void)rpc;
    if (!rpc_done(s, "LOOKUP3", status, data, status == RPC_STATUS_SUCCESS ? (int)res->status : 0))
        return;
    if (b->fhs) {
        nfs_fh3 *fh = &res->LOOKUP3res_u.resok.object;

        if (fh->data.data_len > NFS3_FHSIZE) {
            fail(s->c, "LOOKUP3 %s: handle of %u bytes", s->name, fh->data.data_len);
            return;
        }
        b->fhs[s->item].len = fh->data.data_len;
        memcpy(b->fhs[s->item].val, fh->data.data_val, fh->data.data_len);
    }
}

static int issue_lookup(struct client *c, struct slot *s)
{
    LOOKUP3args a;

    memset(&a, 0, sizeof(a));
    entry_name(s, s->item);
    set_dirop(&a.what, c, s->name);
    return rpc_nfs3_lookup_async(nfs_get_rpc_context(c->nfs), lookup_cb, &a, s);
}

static void getattr_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
    GETATTR3res *res = data;
    struct slot *s = priv;

    (void)rpc;
    if (!rpc_done(s, "GETATTR3", status, data, status == RPC_STATUS_SUCCESS ? (int)res->status : 0))
        return;
    if (res->GETATTR3res_u.resok.obj_attributes.type != NF3REG)
        fail(s->c, "GETATTR3 %s: type %d, not a regular file", s->name,
             (int)res->GETATTR3res_u.resok.obj_attributes.type);
}

static int issue_getattr(struct client *c, struct slot *s)
{
    struct fh_buf *fh = &c->b->fhs[s->item];
    GETATTR3args a;

    entry_name(s, s->item);
    memset(&a, 0, sizeof(a));
    a.object.data.data_len = fh->len;
    a.object.data.data_val = fh->val;
    return rpc_nfs3_getattr_async(nfs_get_rpc_context(c->nfs), getattr_cb, &a, s);
}

static void remove_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
    REMOVE3res *res = data;

    (void)rpc;
    rpc_done(priv, "REMOVE3", status, data, status == RPC_STATUS_SUCCESS ? (int)res->status : 0);
}

static int issue_remove(struct client *c, struct slot *s)
{
    REMOVE3args a;

    memset(&a, 0, sizeof(a));
    entry_name(s, s->item);
    set_dirop(&a.object, c, s->name);
    return rpc_nfs3_remove_async(nfs_get_rpc_context(c->nfs), remove_cb, &a, s);
}

/* cleanup: names from the listing; a name already gone is fine. */
static bool next_listed(struct client *c, uint64_t *item)
{
    uint64_t i = atomic_fetch_add(&c->b->next, 1);

    if (i >= c->b->nnames)
        return false;
    *item = i;
    return true;
}

static void purge_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
    REMOVE3res *res = data;
    int st = status == RPC_STATUS_SUCCESS ? (int)res->status : 0;

    (void)rpc;
    rpc_done(priv, "REMOVE3", status, data, st == NFS3ERR_NOENT ? NFS3_OK : st);
}

static int issue_purge(struct client *c, struct slot *s)
{
    const char *name = c->b->names[s->item];
    REMOVE3args a;

    memset(&a, 0, sizeof(a));
    snprintf(s->name, sizeof(s->name), "%.15s", name);
    a.object.dir.data.data_len = c->meta.len;
    a.object.dir.data.data_val = c->meta.val;
    a.object.name = (char *)name;
    return rpc_nfs3_remove_async(nfs_get_rpc_context(c->nfs), purge_cb, &a, s);
}

/* ---- readdirplus ---- */

static bool next_rdp(struct client *c, uint64_t *item)
{
    *item = c->rpcs;
    return !c->eof;
}

static void rdp_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
    READDIRPLUS3res *res = data;
    struct slot *s = priv;
    struct client *c = s->c;
    unsigned entries = c->b->entries, got = 0;
    READDIRPLUS3resok *ok;

    (void)rpc;
    if (!rpc_done(s, "READDIRPLUS3", status, data,
                  status == RPC_STATUS_SUCCESS ? (int)res->status : 0))
        return;
    c->rpcs++;
    ok = &res->READDIRPLUS3res_u.resok;
    for (entryplus3 *e = ok->reply.entries; e; e = e->nextentry) {
        long i;

        got++;
        c->cookie = e->cookie;
        if (!strcmp(e->name, ".") || !strcmp(e->name, ".."))
            continue;
        c->listed++;
        if (!e->name_attributes.attributes_follow)
            c->no_attr++;
        if (!e->name_handle.handle_follows)
            c->no_handle++;
        i = name_index(e->name, entries);
        if (i < 0) {
            c->foreign++;
            continue;
        }
        if (c->seen[i >> 3] & (1u << (i & 7)))
            c->dups++;
        c->seen[i >> 3] |= (uint8_t)(1u << (i & 7));
    }
    memcpy(c->verf, ok->cookieverf, sizeof(c->verf));
    c->eof = ok->reply.eof;
    if (!got && !c->eof)
        fail(c, "READDIRPLUS3 %s at cookie %" PRIu64 ": no entries and no eof", s->name, c->cookie);
    else if (c->rpcs > (uint64_t)entries + 1000)
        fail(c, "READDIRPLUS3 %s: %" PRIu64 " replies for %u entries, the listing does not end",
             s->name, c->rpcs, entries);
}

static int issue_rdp(struct client *c, struct slot *s)
{
    READDIRPLUS3args a;

    memset(&a, 0, sizeof(a));
    snprintf(s->name, sizeof(s->name), "meta");
    a.dir.data.data_len = c->meta.len;
    a.dir.data.data_val = c->meta.val;
    a.cookie = c->cookie;
    memcpy(a.cookieverf, c->verf, sizeof(a.cookieverf));
    a.dircount = c->b->rdp_size / 8;
    a.maxcount = c->b->rdp_size;
    return rpc_nfs3_readdirplus_async(nfs_get_rpc_context(c->nfs), rdp_cb, &a, s);
}

static int do_readdirplus(struct client *c)
{
    unsigned entries = c->b->entries;
    uint64_t missing = 0;

    c->cookie = 0;
    memset(c->verf, 0, sizeof(c->verf));
    c->eof = false;
    c->listed = c->dups = c->foreign = c->no_attr = c->no_handle = c->rpcs = 0;
    memset(c->seen, 0, (entries + 7) / 8);
    if (drive(c, 1, next_rdp, issue_rdp))
        return -1;
    for (unsigned i = 0; i < entries; i++)
        if (!(c->seen[i >> 3] & (1u << (i & 7))))
            missing++;
    if (missing || c->dups) {
        fail(c,
             "READDIRPLUS3 listing of %s: %" PRIu64 " names, %" PRIu64 " of the %u missing, "
             "%" PRIu64 " listed twice",
             c->b->meta, c->listed, missing, entries, c->dups);
        return -1;
    }
    return 0;
}

/* ---- large files ---- */

static void stamp(unsigned char *p, uint64_t off, unsigned id)
{
    uint64_t tag = STAMP_MAGIC | id;

    memcpy(p, &off, 8);
    memcpy(p + 8, &tag, 8);
}

static bool next_offset(struct client *c, uint64_t *item)
{
    if (c->off >= c->b->size)
        return false;
    *item = c->off;
    c->off += c->b->io_size;
    return true;
}

static void write_cb(int err, struct nfs_context *nfs, void *data, void *priv)
{
    struct slot *s = priv;
    struct client *c = s->c;

    (void)nfs;
    s->busy = false;
    c->inflight--;
    if (err < 0) {
        if (!atomic_load(&c->b->stop))
            fail(c, "WRITE big.%u at %" PRIu64 ": %s", c->id, s->item,
                 data ? (const char *)data : strerror(-err));
        return;
    }
    if ((uint64_t)err != c->b->io_size)
        fail(c, "WRITE big.%u at %" PRIu64 ": %d of %" PRIu64 " bytes written", c->id, s->item, err,
             c->b->io_size);
}

static int issue_write(struct client *c, struct slot *s)
{
    for (uint64_t k = 0; k < c->b->io_size; k += STAMP_EVERY)
        stamp(s->buf + k, s->item + k, c->id);
    return nfs_pwrite_async(c->nfs, c->fh, s->item, c->b->io_size, s->buf, write_cb, s);
}

static void read_cb(int err, struct nfs_context *nfs, void *data, void *priv)
{
    struct slot *s = priv;
    struct client *c = s->c;
    unsigned char want[16];

    (void)nfs;
    s->busy = false;
    c->inflight--;
    if (err < 0) {
        if (!atomic_load(&c->b->stop))
            fail(c, "READ big.%u at %" PRIu64 ": %s", c->id, s->item,
                 data ? (const char *)data : strerror(-err));
        return;
    }
    if ((uint64_t)err != c->b->io_size) {
        fail(c, "READ big.%u at %" PRIu64 ": %d of %" PRIu64 " bytes", c->id, s->item, err,
             c->b->io_size);
        return;
    }
    for (uint64_t k = 0; k < c->b->io_size; k += STAMP_EVERY) {
        stamp(want, s->item + k, c->id);
        if (memcmp((unsigned char *)data + k, want, sizeof(want))) {
            uint64_t got;

            memcpy(&got, (unsigned char *)data + k, 8);
            fail(c,
                 "READ big.%u at %" PRIu64 ": block stamped with offset %" PRIu64
                 " (or another client), not its own",
                 c->id, s->item + k, got);
            return;
        }
    }
}

static int issue_read(struct client *c, struct slot *s)
{
    return nfs_pread_async(c->nfs, c->fh, s->item, c->b->io_size, read_cb, s);
}

static void big_path(struct client *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s/big.%u", c->b->dir, c->id);
}

static int do_write(struct client *c)
{
    char path[PATH_MAX_BENCH + 32];
    int rc;

    big_path(c, path, sizeof(path));
    if ((rc = nfs_creat(c->nfs, path, 0644, &c->fh))) {
        fail(c, "create %s: %s", path, nfs_get_error(c->nfs));
        c->fh = NULL;
        return -1;
    }
    c->off = 0;
    rc = drive(c, c->b->depth, next_offset, issue_write);
    if (!rc && (rc = nfs_fsync(c->nfs, c->fh)))
        fail(c, "COMMIT %s: %s", path, nfs_get_error(c->nfs));
    if (c->failed)
        return -1; /* the handle goes with the context */
    if (nfs_close(c->nfs, c->fh))
        fail(c, "close %s: %s", path, nfs_get_error(c->nfs));
    c->fh = NULL;
    return c->failed ? -1 : 0;
}

static int do_read(struct client *c)
{
    char path[PATH_MAX_BENCH + 32];
    struct nfs_stat_64 st;
    int rc;

    big_path(c, path, sizeof(path));
    if (nfs_open(c->nfs, path, O_RDONLY, &c->fh)) {
        fail(c, "open %s: %s (run write first, with the same --clients)", path,
             nfs_get_error(c->nfs));
        c->fh = NULL;
        return -1;
    }
    if ((rc = nfs_fstat64(c->nfs, c->fh, &st))) {
        fail(c, "GETATTR %s: %s", path, nfs_get_error(c->nfs));
        return -1;
    }
    if (st.nfs_size != c->b->size) {
        fail(c, "%s holds %" PRIu64 " bytes, not --size %" PRIu64, path, st.nfs_size, c->b->size);
        return -1;
    }
    c->off = 0;
    if (drive(c, c->b->depth, next_offset, issue_read))
        return -1;
    if (nfs_close(c->nfs, c->fh))
        fail(c, "close %s: %s", path, nfs_get_error(c->nfs));
    c->fh = NULL;
    return c->failed ? -1 : 0;
}

static void do_unlink_big(struct client *c)
{
    char path[PATH_MAX_BENCH + 32];
    int rc;

    big_path(c, path, sizeof(path));
    rc = nfs_unlink(c->nfs, path);
    if (rc && rc != -ENOENT)
        fail(c, "remove %s: %s", path, nfs_get_error(c->nfs));
}

/* ---- directories ---- */

static void do_mkdir(struct client *c)
{
    const char *dirs[2] = {c->b->dir, c->b->meta};

    for (int i = 0; i < 2; i++) {
        int rc = nfs_mkdir(c->nfs, dirs[i]);

        if (rc && rc != -EEXIST) {
            fail(c, "mkdir %s: %s", dirs[i], nfs_get_error(c->nfs));
            return;
        }
    }
}

/* A raw call made synchronously: the callback fills this in, the caller services the
 * connection until it is done. */
struct sync_call {
    bool done;
    int status;  /* RPC_STATUS_* */
    int nfsstat; /* NFS3 or MNT3 status of the reply */
    char err[256];
    struct fh_buf fh; /* the handle the reply carried */
};

static void sync_status(struct sync_call *sc, int status, void *data)
{
    sc->done = true;
    sc->status = status;
    if (status == RPC_STATUS_ERROR)
        snprintf(sc->err, sizeof(sc->err), "%s", data ? (const char *)data : "RPC error");
    else if (status != RPC_STATUS_SUCCESS)
        snprintf(sc->err, sizeof(sc->err), "RPC status %d", status);
}

static void sync_fh(struct sync_call *sc, u_int len, const char *val)
{
    if (len > NFS3_FHSIZE) {
        snprintf(sc->err, sizeof(sc->err), "handle of %u bytes", len);
        sc->nfsstat = -1;
        return;
    }
    sc->fh.len = len;
    memcpy(sc->fh.val, val, len);
}

static void connect_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
    (void)rpc;
    sync_status(priv, status, data);
}

static void mnt_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
    struct sync_call *sc = priv;
    mountres3 *res = data;

    (void)rpc;
    sync_status(sc, status, data);
    if (status != RPC_STATUS_SUCCESS)
        return;
    sc->nfsstat = (int)res->fhs_status;
    if (res->fhs_status == MNT3_OK)
        sync_fh(sc, res->mountres3_u.mountinfo.fhandle.fhandle3_len,
                res->mountres3_u.mountinfo.fhandle.fhandle3_val);
    else
        snprintf(sc->err, sizeof(sc->err), "MNT3 status %d", sc->nfsstat);
}

static void lookup_sync_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
    struct sync_call *sc = priv;
    LOOKUP3res *res = data;

    (void)rpc;
    sync_status(sc, status, data);
    if (status != RPC_STATUS_SUCCESS)
        return;
    sc->nfsstat = (int)res->status;
    if (res->status == NFS3_OK)
        sync_fh(sc, res->LOOKUP3res_u.resok.object.data.data_len,
                res->LOOKUP3res_u.resok.object.data.data_val);
    else
        snprintf(sc->err, sizeof(sc->err), "%s", nfsstat_name(sc->nfsstat));
}

/* Service rpc until sc is done.  Returns 0 if the call succeeded, else -1 with sc->err. */
static int sync_wait(struct rpc_context *rpc, struct sync_call *sc, int timeout_s)
{
    double deadline = now_s() + timeout_s;

    while (!sc->done) {
        struct pollfd pfd = {.fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc)};
        int n = poll(&pfd, 1, POLL_MS);

        if (n < 0 && errno != EINTR) {
            snprintf(sc->err, sizeof(sc->err), "poll: %s", strerror(errno));
            return -1;
        }
        if (rpc_service(rpc, n > 0 ? pfd.revents : 0) < 0) {
            snprintf(sc->err, sizeof(sc->err), "%s", rpc_get_error(rpc));
            return -1;
        }
        if (!sc->done && now_s() > deadline) {
            snprintf(sc->err, sizeof(sc->err), "no reply within %d s", timeout_s);
            return -1;
        }
    }
    return sc->status == RPC_STATUS_SUCCESS && sc->nfsstat == 0 ? 0 : -1;
}

/* The root handle of the export, from a MNT call of our own: libnfs keeps the one it got
 * to itself.  The MOUNT port comes from the URL's mountport=, else from the portmapper. */
static int mount_root(struct client *c, const char *server, const char *path, struct fh_buf *out)
{
    struct rpc_context *rpc = rpc_init_context();
    struct sync_call sc;
    const char *mp = strstr(c->url, "mountport=");
    int rc;

    if (!rpc) {
        fail(c, "rpc_init_context failed");
        return -1;
    }
    memset(&sc, 0, sizeof(sc));
    if (mp)
        rc = rpc_connect_port_async(rpc, server, atoi(mp + 10), MOUNT_PROGRAM, MOUNT_V3, connect_cb,
                                    &sc);
    else
        rc = rpc_connect_program_async(rpc, server, MOUNT_PROGRAM, MOUNT_V3, connect_cb, &sc);
    if (rc || sync_wait(rpc, &sc, c->b->timeout_s)) {
        fail(c, "connect to MOUNT: %s", rc ? rpc_get_error(rpc) : sc.err);
        rc = -1;
        goto out;
    }
    memset(&sc, 0, sizeof(sc));
    if ((rc = rpc_mount3_mnt_async(rpc, mnt_cb, (char *)path, &sc)) ||
        sync_wait(rpc, &sc, c->b->timeout_s)) {
        fail(c, "MNT3 %s: %s", path, rc ? rpc_get_error(rpc) : sc.err);
        rc = -1;
        goto out;
    }
    *out = sc.fh;
    rc = 0;
out:
    rpc_destroy_context(rpc);
    return rc;
}

/* The handle of DIR/meta, for the raw calls: LOOKUP3 component by component from the root. */
static void do_open_meta(struct client *c)
{
    struct rpc_context *rpc = nfs_get_rpc_context(c->nfs);
    char path[sizeof(c->b->meta)], *save, *name;
    struct fh_buf fh = c->root;

    snprintf(path, sizeof(path), "%s", c->b->meta);
    for (name = strtok_r(path, "/", &save); name; name = strtok_r(NULL, "/", &save)) {
        struct sync_call sc;
        LOOKUP3args a;
        int rc;

        memset(&sc, 0, sizeof(sc));
        memset(&a, 0, sizeof(a));
        a.what.dir.data.data_len = fh.len;
        a.what.dir.data.data_val = fh.val;
        a.what.name = name;
        if ((rc = rpc_nfs3_lookup_async(rpc, lookup_sync_cb, &a, &sc)) ||
            sync_wait(rpc, &sc, c->b->timeout_s)) {
            fail(c, "LOOKUP3 %s in %s: %s", name, c->b->meta, rc ? rpc_get_error(rpc) : sc.err);
            return;
        }
        fh = sc.fh;
    }
    c->meta = fh;
}

static void do_list(struct client *c)
{
    struct bench *b = c->b;
    struct nfsdir *d;
    struct nfsdirent *e;
    unsigned cap = 0;
    int rc = nfs_opendir(c->nfs, b->meta, &d);

    if (rc == -ENOENT)
        return; /* nothing to clean */
    if (rc) {
        fail(c, "opendir %s: %s", b->meta, nfs_get_error(c->nfs));
        return;
    }
    while ((e = nfs_readdir(c->nfs, d))) {
        if (!strcmp(e->name, ".") || !strcmp(e->name, ".."))
            continue;
        if (b->nnames == cap) {
            char **v = realloc(b->names, (cap ? cap * 2 : 1024) * sizeof(*v));

            if (!v) {
                fail(c, "out of memory listing %s", b->meta);
                break;
            }
            b->names = v;
            cap = cap ? cap * 2 : 1024;
        }
        if (!(b->names[b->nnames] = strdup(e->name))) {
            fail(c, "out of memory listing %s", b->meta);
            break;
        }
        b->nnames++;
    }
    nfs_closedir(c->nfs, d);
}

static void do_rmdir(struct client *c)
{
    const char *dirs[2] = {c->b->meta, c->b->dir};

    for (int i = 0; i < 2; i++) {
        int rc = nfs_rmdir(c->nfs, dirs[i]);

        if (rc && rc != -ENOENT) {
            fail(c, "rmdir %s: %s", dirs[i], nfs_get_error(c->nfs));
            return;
        }
    }
}

/* ---- threads ---- */

static int client_connect(struct client *c)
{
    struct nfs_url *u;

    c->nfs = nfs_init_context();
    if (!c->nfs) {
        fail(c, "nfs_init_context failed");
        return -1;
    }
    nfs_set_timeout(c->nfs, c->b->timeout_s * 1000);
    nfs_set_autoreconnect(c->nfs, 0); /* a lost connection is an error to report, not hide */
    nfs_set_dircache(c->nfs, 0);      /* every listing and lookup goes to the server */
    u = nfs_parse_url_dir(c->nfs, c->url);
    if (!u) {
        fail(c, "bad URL: %s", nfs_get_error(c->nfs));
        return -1;
    }
    if (nfs_mount(c->nfs, u->server, u->path)) {
        fail(c, "mount: %s", nfs_get_error(c->nfs));
        nfs_destroy_url(u);
        return -1;
    }
    if (mount_root(c, u->server, u->path, &c->root)) {
        nfs_destroy_url(u);
        return -1;
    }
    nfs_destroy_url(u);
    /* Distinct XIDs on every connection: replies are matched per connection anyway, but a
     * server's duplicate-request cache may be keyed on the client address and the XID. */
    rpc_set_next_xid(nfs_get_rpc_context(c->nfs), (c->id + 1) << 24);
    return 0;
}

static void run_phase(struct client *c, enum phase ph)
{
    struct bench *b = c->b;

    switch (ph) {
    case PH_MKDIR:
        if (c->id == 0)
            do_mkdir(c);
        break;
    case PH_OPEN_META:
        do_open_meta(c);
        break;
    case PH_UNLINK_BIG:
        do_unlink_big(c);
        break;
    case PH_WRITE:
        do_write(c);
        break;
    case PH_READ:
        do_read(c);
        break;
    case PH_CREATE:
        drive(c, b->depth, next_entry, issue_create);
        break;
    case PH_LOOKUP:
        drive(c, b->depth, next_scrambled, issue_lookup);
        break;
    case PH_GETATTR:
        drive(c, b->depth, next_scrambled, issue_getattr);
        break;
    case PH_READDIRPLUS:
        do_readdirplus(c);
        break;
    case PH_REMOVE:
        drive(c, b->depth, next_entry, issue_remove);
        break;
    case PH_LIST:
        if (c->id == 0)
            do_list(c);
        break;
    case PH_PURGE:
        drive(c, b->depth, next_listed, issue_purge);
        break;
    case PH_RMDIR:
        if (c->id == 0)
            do_rmdir(c);
        break;
    case PH_EXIT:
        break;
    }
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    struct bench *b = c->b;

    client_connect(c);
    pthread_barrier_wait(&b->done); /* connected (or failed) */
    for (;;) {
        enum phase ph;

        pthread_barrier_wait(&b->go);
        ph = b->phase;
        if (ph == PH_EXIT)
            break;
        if (!atomic_load(&b->stop))
            run_phase(c, ph);
        pthread_barrier_wait(&b->done);
    }
    return NULL;
}

/* ---- CPU of watched processes ---- */

static double proc_cpu(int pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (!(f = fopen(path, "r")))
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* utime and stime are the 12th and 13th fields after the ")" closing the name */
    if (!(p = strrchr(buf, ')')) ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void cpu_sample(struct bench *b, double *v)
{
    v[0] = self_cpu();
    for (unsigned w = 0; w < b->nwatch; w++) {
        v[w + 1] = 0;
        for (unsigned i = 0; i < b->watch[w].npids; i++)
            v[w + 1] += proc_cpu(b->watch[w].pids[i]);
    }
}

static int parse_watch(const char *arg, struct bench *b)
{
    const char *eq = strchr(arg, '=');
    struct watch *w;
    char *end;
    const char *p;

    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(w->name) || b->nwatch == MAX_WATCH) {
        fprintf(stderr, "cairn-nfsbench: --watch NAME=PID[,PID...], at most %d\n", MAX_WATCH);
        return -1;
    }
    w = &b->watch[b->nwatch++];
    memcpy(w->name, arg, (size_t)(eq - arg));
    for (p = eq + 1; *p;) {
        long pid = strtol(p, &end, 10);

        if (end == p || pid <= 0 || w->npids == MAX_WATCH_PIDS || (*end && *end != ',')) {
            fprintf(stderr, "cairn-nfsbench: bad --watch %s\n", arg);
            return -1;
        }
        w->pids[w->npids++] = (int)pid;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* ---- driving the phases ---- */

/* --progress: while a long metadata phase runs, a thread of its own prints the rate over the
 * last interval, so a rate that falls as the directory grows shows.  Items are counted when
 * handed out, so a line is ahead of the replies by at most clients x depth. */
struct progress {
    struct bench *b;
    enum phase ph;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool over;
};

static void *progress_main(void *arg)
{
    static const char *const what[] = {[PH_CREATE] = "create",
                                       [PH_LOOKUP] = "lookup",
                                       [PH_GETATTR] = "getattr",
                                       [PH_REMOVE] = "remove"};
    struct progress *p = arg;
    struct bench *b = p->b;
    uint64_t last = 0, n;
    double t_last = now_s(), t;
    struct timespec until;

    pthread_mutex_lock(&p->lock);
    clock_gettime(CLOCK_REALTIME, &until);
    for (;;) {
        until.tv_sec += b->progress_s;
        while (!p->over && pthread_cond_timedwait(&p->cond, &p->lock, &until) != ETIMEDOUT)
            ;
        if (p->over)
            break;
        n = atomic_load(&b->next);
        n = n > b->entries ? b->entries : n;
        t = now_s();
        printf("  %s: %" PRIu64 " of %u, %.0f /s over the last %.0f s\n", what[p->ph], n,
               b->entries, (double)(n - last) / (t - t_last), t - t_last);
        fflush(stdout);
        last = n;
        t_last = t;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Run one phase on every client; returns its wall time, or -1 after an error. */
static double phase(struct bench *b, enum phase ph)
{
    struct progress p = {.b = b, .ph = ph};
    bool watch = b->progress_s &&
                 (ph == PH_CREATE || ph == PH_LOOKUP || ph == PH_GETATTR || ph == PH_REMOVE);
    pthread_t thread;
    double t0, t1;

    b->phase = ph;
    atomic_store(&b->next, 0);
    if (watch) {
        pthread_mutex_init(&p.lock, NULL);
        pthread_cond_init(&p.cond, NULL);
        if (pthread_create(&thread, NULL, progress_main, &p))
            watch = false; /* no progress lines, nothing else lost */
    }
    pthread_barrier_wait(&b->go);
    t0 = now_s();
    pthread_barrier_wait(&b->done);
    t1 = now_s();
    if (watch) {
        pthread_mutex_lock(&p.lock);
        p.over = true;
        pthread_cond_signal(&p.cond);
        pthread_mutex_unlock(&p.lock);
        pthread_join(thread, NULL);
        pthread_cond_destroy(&p.cond);
        pthread_mutex_destroy(&p.lock);
    }
    return atomic_load(&b->stop) ? -1 : t1 - t0;
}

struct result {
    double sec[MAX_RUNS], rate[MAX_RUNS];
    unsigned n;
    double wall, cpu[MAX_WATCH + 1]; /* over the timed runs */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(const double *v, unsigned n)
{
    double s[MAX_RUNS];

    memcpy(s, v, n * sizeof(*v));
    qsort(s, n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* One timed run: the phase, its CPU, and the figure (items or bytes per second). */
static int timed(struct bench *b, enum phase ph, double amount, struct result *r)
{
    double c0[MAX_WATCH + 1], c1[MAX_WATCH + 1], sec;

    cpu_sample(b, c0);
    sec = phase(b, ph);
    if (sec < 0)
        return -1;
    cpu_sample(b, c1);
    for (unsigned w = 0; w <= b->nwatch; w++)
        r->cpu[w] += c1[w] - c0[w];
    r->wall += sec;
    r->sec[r->n] = sec;
    r->rate[r->n] = amount / sec;
    r->n++;
    return 0;
}

static void report(struct bench *b, enum op op, const struct result *r, uint64_t items,
                   uint64_t bytes, const char *extra)
{
    double rate = median(r->rate, r->n), sec = median(r->sec, r->n);
    double lo = r->rate[0], hi = r->rate[0];
    bool data = bytes != 0;

    for (unsigned i = 1; i < r->n; i++) {
        lo = r->rate[i] < lo ? r->rate[i] : lo;
        hi = r->rate[i] > hi ? r->rate[i] : hi;
    }
    if (data)
        printf("%-11s median of %u: %.3f GB/s (min %.3f, max %.3f), %.2f s", op_names[op], r->n,
               rate / 1e9, lo / 1e9, hi / 1e9, sec);
    else
        printf("%-11s median of %u: %.0f /s (min %.0f, max %.0f), %.2f s", op_names[op], r->n, rate,
               lo, hi, sec);
    printf("; cpu (cores): client %.2f", r->cpu[0] / r->wall);
    for (unsigned w = 0; w < b->nwatch; w++)
        printf(", %s %.2f", b->watch[w].name, r->cpu[w + 1] / r->wall);
    printf("\n");
    printf("RESULT op=%s clients=%u depth=%u runs=%u items=%" PRIu64 " bytes=%" PRIu64
           " sec=%.4f gbps=%.4f ops=%.1f min=%.4g max=%.4g cpu_client=%.3f",
           op_names[op], b->nclients, op == OP_READDIRPLUS ? 1 : b->depth, r->n, items, bytes, sec,
           data ? rate / 1e9 : 0.0, data ? items / sec : rate, lo, hi, r->cpu[0] / r->wall);
    for (unsigned w = 0; w < b->nwatch; w++)
        printf(" cpu_%s=%.3f", b->watch[w].name, r->cpu[w + 1] / r->wall);
    printf("%s%s\n", extra && *extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}

static void run_line(enum op op, unsigned run, unsigned runs, double sec, double rate, bool data)
{
    if (data)
        printf("%-11s run %u/%u: %.2f s, %.3f GB/s\n", op_names[op], run, runs, sec, rate / 1e9);
    else
        printf("%-11s run %u/%u: %.2f s, %.0f /s\n", op_names[op], run, runs, sec, rate);
    fflush(stdout);
}

/* Run one operation.  Returns 0 or -1 (the error is in b->err). */
static int run_op(struct bench *b, enum op op)
{
    struct result r;
    uint64_t bytes = b->size * b->nclients, ios = bytes / b->io_size;
    unsigned runs = op == OP_CREATE || op == OP_REMOVE ? 1 : b->runs;
    char extra[256] = "";

    memset(&r, 0, sizeof(r));
    switch (op) {
    case OP_WRITE:
    case OP_READ:
        for (unsigned i = 0; i < runs; i++) {
            if (op == OP_WRITE && phase(b, PH_UNLINK_BIG) < 0)
                return -1;
            if (timed(b, op == OP_WRITE ? PH_WRITE : PH_READ, (double)bytes, &r))
                return -1;
            run_line(op, i + 1, runs, r.sec[i], r.rate[i], true);
        }
        report(b, op, &r, ios, bytes, NULL);
        return 0;
    case OP_GETATTR:
        if (!b->have_fhs) {
            printf("getattr: looking the %u names up first (untimed)\n", b->entries);
            if (phase(b, PH_LOOKUP) < 0)
                return -1;
            b->have_fhs = true;
        }
        /* fall through */
    case OP_CREATE:
    case OP_LOOKUP:
    case OP_REMOVE: {
        static const enum phase ph[OP_COUNT] = {[OP_CREATE] = PH_CREATE,
                                                [OP_LOOKUP] = PH_LOOKUP,
                                                [OP_GETATTR] = PH_GETATTR,
                                                [OP_REMOVE] = PH_REMOVE};

        for (unsigned i = 0; i < runs; i++) {
            if (timed(b, ph[op], (double)b->entries, &r))
                return -1;
            run_line(op, i + 1, runs, r.sec[i], r.rate[i], false);
        }
        if (op == OP_LOOKUP)
            b->have_fhs = true;
        if (op == OP_REMOVE)
            b->have_fhs = false;
        report(b, op, &r, b->entries, 0, NULL);
        return 0;
    }
    case OP_READDIRPLUS: {
        uint64_t rpcs = 0, no_attr = 0, no_handle = 0, foreign = 0;

        for (unsigned i = 0; i < runs; i++) {
            if (timed(b, PH_READDIRPLUS, (double)b->entries * b->nclients, &r))
                return -1;
            run_line(op, i + 1, runs, r.sec[i], r.rate[i], false);
        }
        for (unsigned i = 0; i < b->nclients; i++) {
            rpcs += b->clients[i].rpcs;
            no_attr += b->clients[i].no_attr;
            no_handle += b->clients[i].no_handle;
            foreign += b->clients[i].foreign;
        }
        snprintf(extra, sizeof(extra),
                 "rpcs_per_listing=%.1f no_attr=%" PRIu64 " no_handle=%" PRIu64 " foreign=%" PRIu64,
                 (double)rpcs / b->nclients, no_attr, no_handle, foreign);
        if (no_attr || no_handle)
            printf("readdirplus: last run, all clients: %" PRIu64 " entries without attributes, "
                   "%" PRIu64 " without handles\n",
                   no_attr, no_handle);
        if (foreign)
            printf("readdirplus: %" PRIu64 " names in %s that this tool did not create\n", foreign,
                   b->meta);
        report(b, op, &r, (uint64_t)b->entries * b->nclients, 0, extra);
        return 0;
    }
    case OP_CLEANUP:
        if (phase(b, PH_UNLINK_BIG) < 0 || phase(b, PH_LIST) < 0 || phase(b, PH_PURGE) < 0 ||
            phase(b, PH_RMDIR) < 0)
            return -1;
        printf("cleanup: removed the big files, %u names in %s and the directories\n", b->nnames,
               b->meta);
        return 0;
    case OP_COUNT:
        break;
    }
    return -1;
}

/* ---- options ---- */

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10, end++;
        break;
    case 'm':
    case 'M':
        v <<= 20, end++;
        break;
    case 'g':
    case 'G':
        v <<= 30, end++;
        break;
    }
    if (*end)
        return false;
    *out = v;
    return true;
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

static int parse_ops(const char *s, enum op *ops, unsigned *nops)
{
    char buf[256], *save, *tok;

    snprintf(buf, sizeof(buf), "%s", s);
    *nops = 0;
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned i;

        for (i = 0; i < OP_COUNT && strcmp(tok, op_names[i]); i++)
            ;
        if (i == OP_COUNT || *nops == 16) {
            fprintf(stderr, "cairn-nfsbench: unknown --op %s\n", tok);
            return -1;
        }
        ops[(*nops)++] = (enum op)i;
    }
    return *nops ? 0 : -1;
}

/* URLs from a cluster.env: one per C-node. */
static int urls_from_cluster(const char *arg, struct bench *b, char (*store)[URL_MAX])
{
    struct cl_env env = {0};
    char envpath[4096], nfsports[512], mountports[512], *s1, *s2, *np, *mp;
    const char *host, *nfs, *mnt, *exp;
    struct stat sb;
    int rc = -1;

    if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(envpath, sizeof(envpath), "%s/cluster.env", arg);
    else
        snprintf(envpath, sizeof(envpath), "%s", arg);
    if (cl_env_load(envpath, &env)) {
        fprintf(stderr, "cairn-nfsbench: cannot read %s\n", envpath);
        return -1;
    }
    host = cl_env_get(&env, "NFS_HOST");
    nfs = cl_env_get(&env, "NFS_PORTS");
    mnt = cl_env_get(&env, "MOUNT_PORTS");
    exp = cl_env_get(&env, "NFS_EXPORT");
    if (!host || !nfs || !mnt) {
        fprintf(stderr,
                "cairn-nfsbench: %s has no NFS_HOST, NFS_PORTS, MOUNT_PORTS (are the "
                "C-nodes up?)\n",
                envpath);
        goto out;
    }
    snprintf(nfsports, sizeof(nfsports), "%s", nfs);
    snprintf(mountports, sizeof(mountports), "%s", mnt);
    np = strtok_r(nfsports, " ", &s1);
    mp = strtok_r(mountports, " ", &s2);
    while (np && mp && b->nurls < MAX_URLS) {
        snprintf(store[b->nurls], URL_MAX, "nfs://%s%s?version=3&nfsport=%s&mountport=%s", host,
                 exp ? exp : "/", np, mp);
        b->urls[b->nurls] = store[b->nurls];
        b->nurls++;
        np = strtok_r(NULL, " ", &s1);
        mp = strtok_r(NULL, " ", &s2);
    }
    rc = b->nurls ? 0 : -1;
out:
    cl_env_fini(&env);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cairn-nfsbench (--url URL ... | --cluster DIR|FILE) --op OP[,OP...] "
            "[options]\n"
            "  --url URL           nfs://HOST/EXPORT?version=3&nfsport=P&mountport=Q; repeat it "
            "to\n"
            "                      deal the clients round-robin over several servers\n"
            "  --cluster DIR|FILE  one URL per C-node from DIR/cluster.env (tools/cairn-local)\n"
            "  --op LIST           write,read,create,lookup,getattr,readdirplus,remove,cleanup\n"
            "                      (run in the order given)\n"
            "  --clients N         client threads, each its own mount and connection (4)\n"
            "  --depth D           requests in flight per client (1)\n"
            "  --runs R            timed runs of write, read, lookup, getattr, readdirplus (3)\n"
            "  --size BYTES        bytes per client file, K/M/G binary suffixes (256M)\n"
            "  --io-size BYTES     bytes per READ/WRITE call, a multiple of 64K (1M)\n"
            "  --entries N         files in the metadata directory (100000)\n"
            "  --dir PATH          working directory under the export (/nfsbench)\n"
            "  --rdp-size BYTES    READDIRPLUS maxcount (64K); dircount is an eighth\n"
            "  --timeout S         seconds without a reply before a request fails (120)\n"
            "  --watch NAME=PID,.. report the CPU of those processes during timed runs\n"
            "  --progress S        every S seconds of create, lookup, getattr, remove: the rate\n"
            "                      over the last S seconds (0: off, the default)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},      {"cluster", required_argument, NULL, 'c'},
        {"op", required_argument, NULL, 'o'},       {"clients", required_argument, NULL, 't'},
        {"depth", required_argument, NULL, 'd'},    {"runs", required_argument, NULL, 'r'},
        {"size", required_argument, NULL, 's'},     {"io-size", required_argument, NULL, 'i'},
        {"entries", required_argument, NULL, 'n'},  {"dir", required_argument, NULL, 'D'},
        {"rdp-size", required_argument, NULL, 'p'}, {"timeout", required_argument, NULL, 'T'},
        {"watch", required_argument, NULL, 'w'},    {"progress", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    static struct bench bench; /* large (clients): not on the stack */
    static char url_store[MAX_URLS][URL_MAX];
    struct bench *b = &bench;
    const char *cluster = NULL, *dir = "/nfsbench";
    enum op ops[16];
    unsigned nops = 0, timeout = DEFAULT_TIMEOUT_S, started = 0;
    uint64_t rdp = 64u << 10;
    bool need_meta = false, need_data = false;
    int c, rc = 1;

    b->nclients = 4;
    b->depth = 1;
    b->runs = 3;
    b->size = 256u << 20;
    b->io_size = 1u << 20;
    b->entries = 100000;
    while ((c = getopt_long(argc, argv, "u:c:o:t:d:r:s:i:n:D:p:T:w:P:h", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            if (b->nurls == MAX_URLS || strlen(optarg) >= URL_MAX) {
                fprintf(stderr, "cairn-nfsbench: at most %d URLs of %d bytes\n", MAX_URLS,
                        URL_MAX - 1);
                return 2;
            }
            b->urls[b->nurls++] = optarg;
            break;
        case 'c':
            cluster = optarg;
            break;
        case 'o':
            if (parse_ops(optarg, ops, &nops)) {
                usage(stderr);
                return 2;
            }
            break;
        case 't':
            if (!parse_uint(optarg, 1, MAX_CLIENTS, &b->nclients)) {
                fprintf(stderr, "cairn-nfsbench: --clients 1..%d\n", MAX_CLIENTS);
                return 2;
            }
            break;
        case 'd':
            if (!parse_uint(optarg, 1, MAX_DEPTH, &b->depth)) {
                fprintf(stderr, "cairn-nfsbench: --depth 1..%d\n", MAX_DEPTH);
                return 2;
            }
            break;
        case 'r':
            if (!parse_uint(optarg, 1, MAX_RUNS, &b->runs)) {
                fprintf(stderr, "cairn-nfsbench: --runs 1..%d\n", MAX_RUNS);
                return 2;
            }
            break;
        case 's':
            if (!parse_size(optarg, &b->size) || b->size == 0 || b->size > (64ull << 30)) {
                fprintf(stderr, "cairn-nfsbench: --size 1 .. 64G\n");
                return 2;
            }
            break;
        case 'i':
            if (!parse_size(optarg, &b->io_size) || b->io_size == 0 || b->io_size % STAMP_EVERY ||
                b->io_size > (16u << 20)) {
                fprintf(stderr, "cairn-nfsbench: --io-size a multiple of 64K up to 16M\n");
                return 2;
            }
            break;
        case 'n':
            if (!parse_uint(optarg, 1, MAX_ENTRIES, &b->entries)) {
                fprintf(stderr, "cairn-nfsbench: --entries 1..%u\n", MAX_ENTRIES);
                return 2;
            }
            break;
        case 'D':
            dir = optarg;
            break;
        case 'p':
            if (!parse_size(optarg, &rdp) || rdp < 4096 || rdp > (1u << 20)) {
                fprintf(stderr, "cairn-nfsbench: --rdp-size 4K..1M\n");
                return 2;
            }
            break;
        case 'T':
            if (!parse_uint(optarg, 1, 3600, &timeout)) {
                fprintf(stderr, "cairn-nfsbench: --timeout 1..3600 seconds\n");
                return 2;
            }
            break;
        case 'w':
            if (parse_watch(optarg, b))
                return 2;
            break;
        case 'P':
            if (!parse_uint(optarg, 0, 3600, &b->progress_s)) {
                fprintf(stderr, "cairn-nfsbench: --progress 0..3600 seconds\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !nops) {
        usage(stderr);
        return 2;
    }
    if (cluster && !b->nurls && urls_from_cluster(cluster, b, url_store))
        return 2;
    if (!b->nurls) {
        fprintf(stderr, "cairn-nfsbench: no server: --url or --cluster\n");
        return 2;
    }
    if (b->size % b->io_size) {
        fprintf(stderr, "cairn-nfsbench: --size must be a multiple of --io-size\n");
        return 2;
    }
    if (dir[0] != '/' || strlen(dir) >= PATH_MAX_BENCH || strlen(dir) < 2) {
        fprintf(stderr, "cairn-nfsbench: --dir an absolute path under the export, not /\n");
        return 2;
    }
    snprintf(b->dir, sizeof(b->dir), "%s", dir);
    snprintf(b->meta, sizeof(b->meta), "%s/meta", dir);
    b->rdp_size = (unsigned)rdp;
    b->timeout_s = (int)timeout;
    b->scramble = b->entries % SCRAMBLE_PRIME ? SCRAMBLE_PRIME : 7919u;
    for (unsigned i = 0; i < nops; i++) {
        need_data |= ops[i] == OP_WRITE || ops[i] == OP_READ;
        need_meta |= ops[i] != OP_WRITE && ops[i] != OP_READ;
    }

    if (need_data) {
        if (!(b->pattern = malloc(b->io_size)) ||
            getrandom(b->pattern, b->io_size, 0) != (ssize_t)b->io_size) {
            fprintf(stderr, "cairn-nfsbench: cannot make the data pattern\n");
            goto out;
        }
    }
    if (need_meta && !(b->fhs = calloc(b->entries, sizeof(*b->fhs)))) {
        fprintf(stderr, "cairn-nfsbench: out of memory for %u handles\n", b->entries);
        goto out;
    }
    pthread_mutex_init(&b->lock, NULL);
    pthread_barrier_init(&b->go, NULL, b->nclients + 1);
    pthread_barrier_init(&b->done, NULL, b->nclients + 1);
    for (unsigned i = 0; i < b->nclients; i++) {
        struct client *cl = &b->clients[i];

        cl->b = b;
        cl->id = i;
        cl->url = b->urls[i % b->nurls];
        for (unsigned k = 0; k < b->depth; k++) {
            cl->slots[k].c = cl;
            if (need_data) {
                if (!(cl->slots[k].buf = malloc(b->io_size))) {
                    fprintf(stderr, "cairn-nfsbench: out of memory\n");
                    goto out;
                }
                memcpy(cl->slots[k].buf, b->pattern, b->io_size);
            }
        }
        if (need_meta && !(cl->seen = calloc((b->entries + 7) / 8, 1))) {
            fprintf(stderr, "cairn-nfsbench: out of memory\n");
            goto out;
        }
    }
    printf("cairn-nfsbench: %u clients over %u server(s), depth %u, %u runs; files %" PRIu64
           " MiB in %" PRIu64 " KiB calls; %u entries in %s\n",
           b->nclients, b->nurls, b->depth, b->runs, b->size >> 20, b->io_size >> 10, b->entries,
           b->meta);
    for (unsigned i = 0; i < b->nurls; i++)
        printf("  server %u: %s\n", i, b->urls[i]);
    for (; started < b->nclients; started++)
        if (pthread_create(&b->clients[started].thread, NULL, client_main, &b->clients[started])) {
            fprintf(stderr, "cairn-nfsbench: cannot start a thread\n");
            goto stop;
        }
    pthread_barrier_wait(&b->done); /* all connected */
    if (atomic_load(&b->stop) || phase(b, PH_MKDIR) < 0 || phase(b, PH_OPEN_META) < 0)
        goto stop;
    for (unsigned i = 0; i < nops; i++)
        if (run_op(b, ops[i]))
            goto stop;
    rc = 0;
stop:
    if (b->err[0]) {
        fprintf(stderr, "cairn-nfsbench: ERROR: %s\n", b->err);
        printf("ERROR %s\n", b->err);
        rc = 1;
    }
    if (started == b->nclients) {
        b->phase = PH_EXIT;
        pthread_barrier_wait(&b->go);
        for (unsigned i = 0; i < started; i++)
            pthread_join(b->clients[i].thread, NULL);
    } else {
        /* The threads started wait on a barrier that can no longer fill. */
        fflush(stdout);
        _exit(1);
    }
out:
    for (unsigned i = 0; i < b->nclients; i++) {
        struct client *cl = &b->clients[i];

        if (cl->nfs)
            nfs_destroy_context(cl->nfs); /* cancels what is still in flight */
        for (unsigned k = 0; k < MAX_DEPTH; k++)
            free(cl->slots[k].buf);
        free(cl->seen);
    }
    for (unsigned i = 0; i < b->nnames; i++)
        free(b->names[i]);
    free(b->names);
    free(b->fhs);
    free(b->pattern);
    return rc;
}
