/*
 * nfscheck.c - an NFSv3 (RFC 1813) conformance and data-integrity client for the C-node.
 *
 * One file on purpose (about 3,000 lines): a test program whose subcommands share the RPC
 * helpers, the pattern generator and the result checks; each subcommand is a section below.
 *
 *   nfscheck [--rfc] procs    URL DIR
 *   nfscheck [--rfc] sizes    URL DIR [SEED]
 *   nfscheck [--rfc] write    URL PATH SIZE SEED
 *   nfscheck [--rfc] verify   URL PATH SIZE SEED
 *   nfscheck [--rfc] mkdir    URL PATH
 *   nfscheck [--rfc] bigdir   URL DIR N
 *   nfscheck [--rfc] disjoint URL1 URL2 PATH SIZE_MB
 *   nfscheck [--rfc] order    URL_A URL_B PATH SIZE
 *   nfscheck [--rfc] rofs     URL [FILE]
 *   nfscheck [--rfc] denied   URL
 *   nfscheck [--rfc] squash   URL DIR
 *
 *   procs     every NFSv3 procedure with its error cases, in DIR (must not exist; removed at
 *             the end), plus MOUNT NULL/MNT/UMNT and a pass through libnfs's path API.
 *   sizes     files of 0, 1, 4095, 4096, 1 MiB+1 and 64 MiB in DIR: nfs_write in 1 MiB
 *             chunks, fsync, close, re-read whole and at odd offsets/lengths.
 *   write     PATH gets SIZE bytes of content generated from SEED; verify checks size and
 *             content, so one C-node's writes can be read back through another.
 *   mkdir     PATH is created (mode 0755; the parent must exist, PATH must not).
 *   bigdir    N empty files in DIR, listed by nfs_opendir and by raw READDIR/READDIRPLUS in
 *             small pages (each name exactly once), then removed.  Prints timings.
 *   disjoint  two threads, one connection per URL, write the two halves of PATH with UNSTABLE
 *             WRITEs and a COMMIT; then the whole file is verified through both URLs.
 *   order     UNSTABLE writes buffered on A's C-node must not land over bytes committed
 *             through B's after they arrived: A's COMMIT drops them with a new verifier; A's
 *             buffered bytes that nothing newer overlaps land.
 *   rofs      on a read-only export reads work and every mutating call gets ROFS.  FILE: a
 *             regular file in the export root to read (default: the first one listed).
 *   denied    the export must refuse the mount (exit 0); an unreachable server is a failure.
 *   squash    uid 0 is mapped to 65534; uid 2000 cannot read or write uid 1000's 0600 file.
 * SIZE takes K/M/G suffixes (binary).
 *
 * URL is a libnfs URL, nfs://HOST/EXPORT?version=3&port=P&mountport=Q[&uid=U&gid=G].  "port"
 * is our spelling of libnfs's "nfsport" (libnfs 4.0 knows only the latter; we rewrite it).
 * With both ports given no portmapper is involved.  uid/gid set the AUTH_SYS identity (default:
 * ours).  DIR and PATH are relative to the export root.
 *
 * Every check prints "ok   <what>" when it holds; the first one that does not prints
 * "FAIL <what>" on stderr and the program exits 1 (usage errors exit 2).  A failed run leaves
 * its directory behind on purpose, for a post-mortem.
 *
 * Design.  libnfs's high-level (path based, sync) API maps NFS status codes onto errno, which
 * loses exactly what a conformance check must see (NOT_SYNC, BADHANDLE, STALE vs NOENT, wcc
 * data, write verifiers).  So the protocol checks drive the raw rpc_nfs3_*_async calls on the
 * RPC connection that nfs_mount() set up, with a small poll loop (rpc_wait) standing in for a
 * sync API; the high-level API is used where a real client would use it: bulk data (sizes,
 * write, verify), nfs_opendir listings, and a smoke pass in procs.  The root handle comes from
 * our own MOUNT MNT call on a second RPC connection: libnfs 4.0 keeps its root handle private.
 *
 * Decoded replies live in libnfs's per-request memory and are freed when the callback
 * returns, so on_reply() copies what the caller asked for (handles, names, data) into caller
 * owned storage before returning; nothing keeps a pointer into a reply.
 *
 * Some expectations are Cairn's promises rather than the RFC's: corrupted handles are
 * BADHANDLE, not STALE (Cairn handles carry a MAC); rtmax/wtmax are at least 1 MiB; PATHCONF
 * name_max is exactly 255; READDIR lists "." and ".."; REMOVE of a directory is ISDIR; RMDIR
 * of a non-empty one is NOTEMPTY; chown by a non-root owner is PERM; LINK to a directory is
 * ISDIR or INVAL; MKNOD of a character device is OK or NOTSUPP; a read-only export grants no
 * MODIFY/EXTEND/DELETE in ACCESS.  --rfc relaxes those to what RFC 1813 allows (and what
 * nfs-ganesha does), for running against other servers.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>

#define NC_CALL_TIMEOUT_MS (120 * 1000) /* one RPC; a 1 MiB FILE_SYNC write fits easily */
#define NC_CHUNK (1u << 20)             /* data-path transfer size, clamped to rtmax/wtmax */
#define NC_NAME_MAX 255                 /* PATHCONF name_max we require */
#define NC_WINDOW 32                    /* outstanding calls in bulk phases */
#define NC_URL_MAX 2048

/* --rfc: accept every answer RFC 1813 allows where Cairn promises a specific one.  Set once
 * in main() before any thread starts. */
static bool rfc_mode;

/* ---------------------------------------------------------------------------------------- */
/* Reporting */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("FAIL ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void ok(const char *fmt, ...)
{
    va_list ap;

    fputs("ok   ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* One message for both outcomes: it should carry the observed values. */
static void check(bool cond, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (cond) {
        fputs("ok   ", stdout);
        vprintf(fmt, ap);
        putchar('\n');
    } else {
        fflush(stdout);
        fputs("FAIL ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        exit(1);
    }
    va_end(ap);
}

struct code_name {
    int code;
    const char *nm;
};

static const struct code_name nfs_names[] = {
    {NFS3_OK, "OK"},
    {NFS3ERR_PERM, "PERM"},
    {NFS3ERR_NOENT, "NOENT"},
    {NFS3ERR_IO, "IO"},
    {NFS3ERR_NXIO, "NXIO"},
    {NFS3ERR_ACCES, "ACCES"},
    {NFS3ERR_EXIST, "EXIST"},
    {NFS3ERR_XDEV, "XDEV"},
    {NFS3ERR_NODEV, "NODEV"},
    {NFS3ERR_NOTDIR, "NOTDIR"},
    {NFS3ERR_ISDIR, "ISDIR"},
    {NFS3ERR_INVAL, "INVAL"},
    {NFS3ERR_FBIG, "FBIG"},
    {NFS3ERR_NOSPC, "NOSPC"},
    {NFS3ERR_ROFS, "ROFS"},
    {NFS3ERR_MLINK, "MLINK"},
    {NFS3ERR_NAMETOOLONG, "NAMETOOLONG"},
    {NFS3ERR_NOTEMPTY, "NOTEMPTY"},
    {NFS3ERR_DQUOT, "DQUOT"},
    {NFS3ERR_STALE, "STALE"},
    {NFS3ERR_REMOTE, "REMOTE"},
    {NFS3ERR_BADHANDLE, "BADHANDLE"},
    {NFS3ERR_NOT_SYNC, "NOT_SYNC"},
    {NFS3ERR_BAD_COOKIE, "BAD_COOKIE"},
    {NFS3ERR_NOTSUPP, "NOTSUPP"},
    {NFS3ERR_TOOSMALL, "TOOSMALL"},
    {NFS3ERR_SERVERFAULT, "SERVERFAULT"},
    {NFS3ERR_BADTYPE, "BADTYPE"},
    {NFS3ERR_JUKEBOX, "JUKEBOX"},
};

static const struct code_name mnt_names[] = {
    {MNT3_OK, "MNT3_OK"},
    {MNT3ERR_PERM, "MNT3ERR_PERM"},
    {MNT3ERR_NOENT, "MNT3ERR_NOENT"},
    {MNT3ERR_IO, "MNT3ERR_IO"},
    {MNT3ERR_ACCES, "MNT3ERR_ACCES"},
    {MNT3ERR_NOTDIR, "MNT3ERR_NOTDIR"},
    {MNT3ERR_INVAL, "MNT3ERR_INVAL"},
    {MNT3ERR_NAMETOOLONG, "MNT3ERR_NAMETOOLONG"},
    {MNT3ERR_NOTSUPP, "MNT3ERR_NOTSUPP"},
    {MNT3ERR_SERVERFAULT, "MNT3ERR_SERVERFAULT"},
};

/* Name of code in tab; unknown codes go to a per-thread buffer (valid until the next call). */
static const char *code_name(const struct code_name *tab, size_t n, int code)
{
    static __thread char other[32];

    for (size_t i = 0; i < n; i++)
        if (tab[i].code == code)
            return tab[i].nm;
    snprintf(other, sizeof(other), "status %d", code);
    return other;
}

static const char *stname(int st)
{
    return code_name(nfs_names, sizeof(nfs_names) / sizeof(nfs_names[0]), st);
}

static const char *mntname(int st)
{
    return code_name(mnt_names, sizeof(mnt_names) / sizeof(mnt_names[0]), st);
}

static const char *tname(int t)
{
    static const char *const names[] = {"?", "REG", "DIR", "BLK", "CHR", "LNK", "SOCK", "FIFO"};

    return t >= 1 && t <= 7 ? names[t] : "?";
}

/* "what -> STATUS" when got == want. */
static void expect(int got, int want, const char *what)
{
    if (got != want)
        fail("%s: expected %s, got %s", what, stname(want), stname(got));
    ok("%s -> %s", what, stname(got));
}

/* Any of the listed statuses (terminated by -1) is a pass; the message says which came. */
static void expect_any(int got, const char *what, ...)
{
    char list[256] = "";
    size_t len = 0;
    va_list ap;
    bool hit = false;

    va_start(ap, what);
    for (int want = va_arg(ap, int); want != -1; want = va_arg(ap, int)) {
        hit |= got == want;
        len +=
            (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", len ? "|" : "", stname(want));
        if (len >= sizeof(list))
            len = sizeof(list) - 1;
    }
    va_end(ap);
    if (!hit)
        fail("%s: expected %s, got %s", what, list, stname(got));
    ok("%s -> %s (accepts %s)", what, stname(got), list);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p)
        fail("out of memory (%zu bytes)", n);
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* File content: a pure function of (seed, offset), so any range can be checked on its own
 * and two writers (or two processes) agree without sharing a buffer. */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void gen_fill(uint64_t seed, uint64_t off, unsigned char *p, size_t n)
{
    uint64_t s = mix64(seed), blk = UINT64_MAX, w = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t pos = off + i;

        if (pos >> 3 != blk) {
            blk = pos >> 3;
            w = mix64(s ^ blk);
        }
        p[i] = (unsigned char)(w >> ((pos & 7) * 8));
    }
}

/* Offset of the first byte of p[0..n) (file offset off) that differs from the generator,
 * or -1. */
static int64_t gen_mismatch(uint64_t seed, uint64_t off, const unsigned char *p, size_t n)
{
    unsigned char tmp[65536];

    for (size_t done = 0; done < n;) {
        size_t len = n - done < sizeof(tmp) ? n - done : sizeof(tmp);

        gen_fill(seed, off + done, tmp, len);
        if (memcmp(tmp, p + done, len)) {
            for (size_t i = 0; i < len; i++)
                if (tmp[i] != p[done + i])
                    return (int64_t)(off + done + i);
        }
        done += len;
    }
    return -1;
}

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s)
        return false;
    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        end++;
        break;
    case 'm':
    case 'M':
        v <<= 20;
        end++;
        break;
    case 'g':
    case 'G':
        v <<= 30;
        end++;
        break;
    }
    if (*end)
        return false;
    *out = v;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* File handles */

struct fh {
    uint32_t len;
    unsigned char data[NFS3_FHSIZE];
};

static void fh_set(struct fh *f, const char *data, uint32_t len)
{
    if (len > NFS3_FHSIZE)
        fail("server returned a %u-byte file handle (NFSv3 max is %d)", len, NFS3_FHSIZE);
    f->len = len;
    memcpy(f->data, data, len);
}

/* A wire view of f; libnfs's argument structs want non-const pointers but only read them. */
static nfs_fh3 fh3(const struct fh *f)
{
    nfs_fh3 v;

    v.data.data_len = f->len;
    v.data.data_val = (char *)f->data;
    return v;
}

/* ---------------------------------------------------------------------------------------- */
/* Connections */

struct url {
    char host[256];
    char exp[1024];          /* export path, with the leading '/' */
    int nfsport, mountport;  /* 0: ask the portmapper */
    int uid, gid;            /* uid=, gid= in the URL; -1: not given */
    char libnfs[NC_URL_MAX]; /* the URL handed to libnfs, ports spelled its way */
};

struct conn {
    struct url url;
    int uid, gid;
    struct nfs_context *nfs;  /* high-level context; owns rpc */
    struct rpc_context *rpc;  /* NFS program connection of nfs */
    struct rpc_context *mrpc; /* our own MOUNT connection (kept for UMNT) */
    struct fh root;           /* from our MNT */
    uint32_t rtmax, wtmax;    /* FSINFO, filled by conn_fsinfo() */
};

static bool url_parse(const char *s, struct url *u)
{
    const char *p, *slash, *q;
    char *args, *save = NULL;
    size_t len;
    bool good = true;

    memset(u, 0, sizeof(*u));
    u->uid = u->gid = -1;
    if (strncmp(s, "nfs://", 6))
        return false;
    p = s + 6;
    slash = strchr(p, '/');
    if (!slash || slash == p || (size_t)(slash - p) >= sizeof(u->host))
        return false;
    memcpy(u->host, p, (size_t)(slash - p));
    q = strchr(slash, '?');
    len = q ? (size_t)(q - slash) : strlen(slash);
    if (len < 1 || len >= sizeof(u->exp))
        return false;
    memcpy(u->exp, slash, len);
    len = (size_t)snprintf(u->libnfs, sizeof(u->libnfs), "nfs://%s%s", u->host, u->exp);
    if (!q)
        return true;

    /* Query: remember the ports, spell port= as nfsport=, pass everything else on. */
    args = strdup(q + 1);
    if (!args)
        fail("out of memory");
    for (char *kv = strtok_r(args, "&", &save); kv && good; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        const char *key = kv, *val = eq ? eq + 1 : "";
        bool first = !strchr(u->libnfs, '?');
        int n;

        if (eq)
            *eq = 0;
        if (!strcmp(key, "port") || !strcmp(key, "nfsport")) {
            u->nfsport = atoi(val);
            key = "nfsport";
        } else if (!strcmp(key, "mountport")) {
            u->mountport = atoi(val);
        } else if (!strcmp(key, "uid")) {
            u->uid = atoi(val);
        } else if (!strcmp(key, "gid")) {
            u->gid = atoi(val);
        } else if (!strcmp(key, "version") && strcmp(val, "3")) {
            good = false;
        }
        n = snprintf(u->libnfs + len, sizeof(u->libnfs) - len, "%c%s=%s", first ? '?' : '&', key,
                     val);
        if (n < 0 || (size_t)n >= sizeof(u->libnfs) - len)
            good = false;
        else
            len += (size_t)n;
    }
    free(args);
    return good;
}

/* One outstanding RPC and what its reply left behind for the caller. */
enum proc {
    P_CONNECT,
    P_NULL,
    P_MNT,
    P_UMNT,
    P_MNTNULL,
    P_GETATTR,
    P_SETATTR,
    P_LOOKUP,
    P_ACCESS,
    P_READLINK,
    P_READ,
    P_WRITE,
    P_CREATE,
    P_MKDIR,
    P_SYMLINK,
    P_MKNOD,
    P_REMOVE,
    P_RMDIR,
    P_RENAME,
    P_LINK,
    P_READDIR,
    P_READDIRPLUS,
    P_FSSTAT,
    P_FSINFO,
    P_PATHCONF,
    P_COMMIT
};

/* An object a call produced or found: CREATE/MKDIR/SYMLINK/MKNOD/LOOKUP/MNT. */
struct newobj {
    bool has_fh;
    struct fh fh;
    post_op_attr attr;
    wcc_data dir_wcc;
    post_op_attr dir_attr; /* LOOKUP */
};

struct dent {
    char *nm;
    uint64_t fileid, cookie;
    post_op_attr attr; /* READDIRPLUS only */
    bool has_fh;
    struct fh fh;
};

struct page {
    struct dent *v;        /* appended to across pages; free with page_free() */
    size_t n, cap, last_n; /* last_n: entries the latest reply added */
    bool eof;
    char verf[NFS3_COOKIEVERFSIZE];
    post_op_attr dir_attr;
};

struct wres { /* WRITE and COMMIT */
    uint32_t count;
    int committed;
    char verf[NFS3_WRITEVERFSIZE];
    wcc_data wcc;
};

struct call {
    enum proc proc;
    bool done;
    int rpc_status;
    char err[256];
    int st; /* nfsstat3 / mountstat3 */
    /* Outputs: only what this call's proc fills is meaningful. */
    fattr3 attr;        /* GETATTR */
    wcc_data wcc, wcc2; /* SETATTR REMOVE RMDIR (wcc); RENAME (from, to); LINK */
    post_op_attr pattr; /* LINK file, ACCESS, READLINK, READ, FS* */
    uint32_t access;
    struct newobj *obj;
    char *str; /* READLINK target, caller's buffer */
    size_t strcap;
    unsigned char *buf; /* READ destination, caller's buffer */
    uint32_t bufcap, got, datalen;
    bool eof;
    struct wres *w;
    struct page *page;
    FSSTAT3resok fsstat;
    FSINFO3resok fsinfo;
    PATHCONF3resok pathconf;
};

static void page_push(struct page *pg, const char *nm, uint64_t fileid, uint64_t cookie,
                      const post_op_attr *attr, const post_op_fh3 *h)
{
    struct dent *d;

    if (pg->n == pg->cap) {
        pg->cap = pg->cap ? pg->cap * 2 : 64;
        pg->v = realloc(pg->v, pg->cap * sizeof(*pg->v));
        if (!pg->v)
            fail("out of memory");
    }
    d = &pg->v[pg->n++];
    memset(d, 0, sizeof(*d));
    d->nm = strdup(nm ? nm : "");
    if (!d->nm)
        fail("out of memory");
    d->fileid = fileid;
    d->cookie = cookie;
    if (attr)
        d->attr = *attr;
    if (h && h->handle_follows) {
        d->has_fh = true;
        fh_set(&d->fh, h->post_op_fh3_u.handle.data.data_val,
               h->post_op_fh3_u.handle.data.data_len);
    }
}

static void page_free(struct page *pg)
{
    for (size_t i = 0; i < pg->n; i++)
        free(pg->v[i].nm);
    free(pg->v);
    memset(pg, 0, sizeof(*pg));
}

static void obj_from(struct newobj *o, const post_op_fh3 *h, const post_op_attr *a,
                     const wcc_data *w)
{
    memset(o, 0, sizeof(*o));
    if (h->handle_follows) {
        o->has_fh = true;
        fh_set(&o->fh, h->post_op_fh3_u.handle.data.data_val,
               h->post_op_fh3_u.handle.data.data_len);
    }
    o->attr = *a;
    o->dir_wcc = *w;
}

/* The decoded reply (data) is freed when we return: copy out everything wanted. */
static void on_reply(struct rpc_context *rpc, int status, void *data, void *priv)
{
    struct call *k = priv;

    (void)rpc;
    k->done = true;
    k->rpc_status = status;
    if (status != RPC_STATUS_SUCCESS) {
        if (status == RPC_STATUS_ERROR && data)
            snprintf(k->err, sizeof(k->err), "%s", (const char *)data);
        else
            snprintf(k->err, sizeof(k->err), "%s",
                     status == RPC_STATUS_TIMEOUT ? "timed out" : "cancelled");
        k->st = -1;
        return;
    }
    switch (k->proc) {
    case P_CONNECT:
    case P_NULL:
    case P_UMNT:
    case P_MNTNULL:
        k->st = 0;
        break;
    case P_MNT: {
        mountres3 *r = data;

        k->st = r->fhs_status;
        if (r->fhs_status == MNT3_OK) {
            memset(k->obj, 0, sizeof(*k->obj));
            k->obj->has_fh = true;
            fh_set(&k->obj->fh, r->mountres3_u.mountinfo.fhandle.fhandle3_val,
                   r->mountres3_u.mountinfo.fhandle.fhandle3_len);
        }
        break;
    }
    case P_GETATTR: {
        GETATTR3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            k->attr = r->GETATTR3res_u.resok.obj_attributes;
        break;
    }
    case P_SETATTR: {
        SETATTR3res *r = data;

        k->st = r->status;
        k->wcc = r->status == NFS3_OK ? r->SETATTR3res_u.resok.obj_wcc
                                      : r->SETATTR3res_u.resfail.obj_wcc;
        break;
    }
    case P_LOOKUP: {
        LOOKUP3res *r = data;

        k->st = r->status;
        memset(k->obj, 0, sizeof(*k->obj));
        if (r->status == NFS3_OK) {
            LOOKUP3resok *o = &r->LOOKUP3res_u.resok;

            k->obj->has_fh = true;
            fh_set(&k->obj->fh, o->object.data.data_val, o->object.data.data_len);
            k->obj->attr = o->obj_attributes;
            k->obj->dir_attr = o->dir_attributes;
        } else {
            k->obj->dir_attr = r->LOOKUP3res_u.resfail.dir_attributes;
        }
        break;
    }
    case P_ACCESS: {
        ACCESS3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK) {
            k->access = r->ACCESS3res_u.resok.access;
            k->pattr = r->ACCESS3res_u.resok.obj_attributes;
        }
        break;
    }
    case P_READLINK: {
        READLINK3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK) {
            snprintf(k->str, k->strcap, "%s", r->READLINK3res_u.resok.data);
            k->pattr = r->READLINK3res_u.resok.symlink_attributes;
        }
        break;
    }
    case P_READ: {
        READ3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK) {
            READ3resok *o = &r->READ3res_u.resok;
            uint32_t n = o->data.data_len < k->bufcap ? o->data.data_len : k->bufcap;

            memcpy(k->buf, o->data.data_val, n);
            k->got = o->count;
            k->datalen = o->data.data_len;
            k->eof = o->eof;
            k->pattr = o->file_attributes;
        }
        break;
    }
    case P_WRITE: {
        WRITE3res *r = data;

        k->st = r->status;
        memset(k->w, 0, sizeof(*k->w));
        if (r->status == NFS3_OK) {
            k->w->count = r->WRITE3res_u.resok.count;
            k->w->committed = r->WRITE3res_u.resok.committed;
            memcpy(k->w->verf, r->WRITE3res_u.resok.verf, NFS3_WRITEVERFSIZE);
            k->w->wcc = r->WRITE3res_u.resok.file_wcc;
        } else {
            k->w->wcc = r->WRITE3res_u.resfail.file_wcc;
        }
        break;
    }
    case P_COMMIT: {
        COMMIT3res *r = data;

        k->st = r->status;
        memset(k->w, 0, sizeof(*k->w));
        if (r->status == NFS3_OK) {
            memcpy(k->w->verf, r->COMMIT3res_u.resok.verf, NFS3_WRITEVERFSIZE);
            k->w->wcc = r->COMMIT3res_u.resok.file_wcc;
        }
        break;
    }
    case P_CREATE: {
        CREATE3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            obj_from(k->obj, &r->CREATE3res_u.resok.obj, &r->CREATE3res_u.resok.obj_attributes,
                     &r->CREATE3res_u.resok.dir_wcc);
        break;
    }
    case P_MKDIR: {
        MKDIR3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            obj_from(k->obj, &r->MKDIR3res_u.resok.obj, &r->MKDIR3res_u.resok.obj_attributes,
                     &r->MKDIR3res_u.resok.dir_wcc);
        break;
    }
    case P_SYMLINK: {
        SYMLINK3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            obj_from(k->obj, &r->SYMLINK3res_u.resok.obj, &r->SYMLINK3res_u.resok.obj_attributes,
                     &r->SYMLINK3res_u.resok.dir_wcc);
        break;
    }
    case P_MKNOD: {
        MKNOD3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            obj_from(k->obj, &r->MKNOD3res_u.resok.obj, &r->MKNOD3res_u.resok.obj_attributes,
                     &r->MKNOD3res_u.resok.dir_wcc);
        break;
    }
    case P_REMOVE: {
        REMOVE3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            k->wcc = r->REMOVE3res_u.resok.dir_wcc;
        break;
    }
    case P_RMDIR: {
        RMDIR3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            k->wcc = r->RMDIR3res_u.resok.dir_wcc;
        break;
    }
    case P_RENAME: {
        RENAME3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK) {
            k->wcc = r->RENAME3res_u.resok.fromdir_wcc;
            k->wcc2 = r->RENAME3res_u.resok.todir_wcc;
        }
        break;
    }
    case P_LINK: {
        LINK3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK) {
            k->pattr = r->LINK3res_u.resok.file_attributes;
            k->wcc = r->LINK3res_u.resok.linkdir_wcc;
        }
        break;
    }
    case P_READDIR: {
        READDIR3res *r = data;
        size_t before = k->page->n;

        k->st = r->status;
        if (r->status == NFS3_OK) {
            READDIR3resok *o = &r->READDIR3res_u.resok;

            /* libnfs 4.0 decodes list entries at 4-byte alignment: copy each out. */
            for (const void *p = o->reply.entries; p;) {
                entry3 e;

                memcpy(&e, p, sizeof(e));
                page_push(k->page, e.name, e.fileid, e.cookie, NULL, NULL);
                p = e.nextentry;
            }
            k->page->eof = o->reply.eof;
            memcpy(k->page->verf, o->cookieverf, NFS3_COOKIEVERFSIZE);
            k->page->dir_attr = o->dir_attributes;
        }
        k->page->last_n = k->page->n - before;
        break;
    }
    case P_READDIRPLUS: {
        READDIRPLUS3res *r = data;
        size_t before = k->page->n;

        k->st = r->status;
        if (r->status == NFS3_OK) {
            READDIRPLUS3resok *o = &r->READDIRPLUS3res_u.resok;

            for (const void *p = o->reply.entries; p;) {
                entryplus3 e;

                memcpy(&e, p, sizeof(e));
                page_push(k->page, e.name, e.fileid, e.cookie, &e.name_attributes, &e.name_handle);
                p = e.nextentry;
            }
            k->page->eof = o->reply.eof;
            memcpy(k->page->verf, o->cookieverf, NFS3_COOKIEVERFSIZE);
            k->page->dir_attr = o->dir_attributes;
        }
        k->page->last_n = k->page->n - before;
        break;
    }
    case P_FSSTAT: {
        FSSTAT3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            k->fsstat = r->FSSTAT3res_u.resok;
        break;
    }
    case P_FSINFO: {
        FSINFO3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            k->fsinfo = r->FSINFO3res_u.resok;
        break;
    }
    case P_PATHCONF: {
        PATHCONF3res *r = data;

        k->st = r->status;
        if (r->status == NFS3_OK)
            k->pathconf = r->PATHCONF3res_u.resok;
        break;
    }
    }
}

/* Drive rpc until *done (or the deadline); a dead connection or a timeout is fatal. */
/* Drive rpc until *done.  Returns 0, or -1 with err set when the connection failed or the
 * deadline passed. */
static int rpc_wait_soft(struct rpc_context *rpc, const bool *done, const char *what, char *err,
                         size_t errcap)
{
    double deadline = now_s() + NC_CALL_TIMEOUT_MS / 1000.0;

    while (!*done) {
        struct pollfd p = {.fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc)};
        int n = poll(&p, 1, 100);

        if (n < 0 && errno != EINTR) {
            snprintf(err, errcap, "%s: poll: %s", what, strerror(errno));
            return -1;
        }
        if (rpc_service(rpc, n > 0 ? p.revents : 0) < 0) {
            /* The failure may have completed the call (with an error status) first. */
            if (*done)
                return 0;
            snprintf(err, errcap, "%s: connection failed: %s", what, rpc_get_error(rpc));
            return -1;
        }
        if (!*done && now_s() > deadline) {
            snprintf(err, errcap, "%s: no reply within %d s", what, NC_CALL_TIMEOUT_MS / 1000);
            return -1;
        }
    }
    return 0;
}

/* Same, but a failure is fatal. */
static void rpc_wait(struct rpc_context *rpc, const bool *done, const char *what)
{
    char err[512];

    if (rpc_wait_soft(rpc, done, what, err, sizeof(err)))
        fail("%s", err);
}

/* Wait for a queued call (queued: the rpc_*_async return value); RPC failures are fatal. */
static int call_run(struct rpc_context *rpc, struct call *k, int queued, const char *what)
{
    if (queued)
        fail("%s: cannot queue the call: %s", what, rpc_get_error(rpc));
    rpc_wait(rpc, &k->done, what);
    if (k->rpc_status != RPC_STATUS_SUCCESS)
        fail("%s: RPC failed: %s", what, k->err);
    return k->st;
}

/* ---------------------------------------------------------------------------------------- */
/* NFSv3 procedures, one wrapper each; all return the nfsstat3 and die on RPC failure. */

static int op_null(struct conn *c)
{
    struct call k = {.proc = P_NULL};

    return call_run(c->rpc, &k, rpc_nfs3_null_async(c->rpc, on_reply, &k), "NULL");
}

static int op_getattr(struct conn *c, const struct fh *f, fattr3 *a)
{
    struct call k = {.proc = P_GETATTR};
    GETATTR3args args = {.object = fh3(f)};
    int st = call_run(c->rpc, &k, rpc_nfs3_getattr_async(c->rpc, on_reply, &args, &k), "GETATTR");

    if (a)
        *a = k.attr;
    return st;
}

static int op_setattr(struct conn *c, const struct fh *f, const sattr3 *s, const nfstime3 *guard,
                      wcc_data *wcc)
{
    struct call k = {.proc = P_SETATTR};
    SETATTR3args args = {.object = fh3(f), .new_attributes = *s};
    int st;

    if (guard) {
        args.guard.check = 1;
        args.guard.sattrguard3_u.obj_ctime = *guard;
    }
    st = call_run(c->rpc, &k, rpc_nfs3_setattr_async(c->rpc, on_reply, &args, &k), "SETATTR");
    if (wcc)
        *wcc = k.wcc;
    return st;
}

static int op_lookup(struct conn *c, const struct fh *dir, const char *nm, struct newobj *o)
{
    struct newobj tmp;
    struct call k = {.proc = P_LOOKUP, .obj = o ? o : &tmp};
    LOOKUP3args args = {.what = {.dir = fh3(dir), .name = (char *)nm}};

    return call_run(c->rpc, &k, rpc_nfs3_lookup_async(c->rpc, on_reply, &args, &k), "LOOKUP");
}

static int op_access(struct conn *c, const struct fh *f, uint32_t want, uint32_t *got)
{
    struct call k = {.proc = P_ACCESS};
    ACCESS3args args = {.object = fh3(f), .access = want};
    int st = call_run(c->rpc, &k, rpc_nfs3_access_async(c->rpc, on_reply, &args, &k), "ACCESS");

    *got = k.access;
    return st;
}

static int op_readlink(struct conn *c, const struct fh *f, char *buf, size_t cap)
{
    struct call k = {.proc = P_READLINK, .str = buf, .strcap = cap};
    READLINK3args args = {.symlink = fh3(f)};

    buf[0] = 0;
    return call_run(c->rpc, &k, rpc_nfs3_readlink_async(c->rpc, on_reply, &args, &k), "READLINK");
}

/* Reads up to cnt bytes into buf; *got is the reply's count (checked against its data). */
static int op_read(struct conn *c, const struct fh *f, uint64_t off, uint32_t cnt, void *buf,
                   uint32_t *got, bool *eof)
{
    struct call k = {.proc = P_READ, .buf = buf, .bufcap = cnt};
    READ3args args = {.file = fh3(f), .offset = off, .count = cnt};
    int st = call_run(c->rpc, &k, rpc_nfs3_read_async(c->rpc, on_reply, &args, &k), "READ");

    if (st == NFS3_OK) {
        if (k.got != k.datalen)
            fail("READ at %" PRIu64 ": count %u but %u data bytes", off, k.got, k.datalen);
        if (k.got > cnt)
            fail("READ at %" PRIu64 ": asked for %u bytes, got %u", off, cnt, k.got);
    }
    if (got)
        *got = k.got;
    if (eof)
        *eof = k.eof;
    return st;
}

static int op_write(struct conn *c, const struct fh *f, uint64_t off, const void *buf, uint32_t cnt,
                    int stable, struct wres *w)
{
    struct wres tmp;
    struct call k = {.proc = P_WRITE, .w = w ? w : &tmp};
    WRITE3args args = {.file = fh3(f), .offset = off, .count = cnt, .stable = stable};

    args.data.data_len = cnt;
    args.data.data_val = (char *)buf;
    return call_run(c->rpc, &k, rpc_nfs3_write_async(c->rpc, on_reply, &args, &k), "WRITE");
}

static int op_commit(struct conn *c, const struct fh *f, uint64_t off, uint32_t cnt, struct wres *w)
{
    struct wres tmp;
    struct call k = {.proc = P_COMMIT, .w = w ? w : &tmp};
    COMMIT3args args = {.file = fh3(f), .offset = off, .count = cnt};

    return call_run(c->rpc, &k, rpc_nfs3_commit_async(c->rpc, on_reply, &args, &k), "COMMIT");
}

static sattr3 sattr_mode(uint32_t mode)
{
    sattr3 s;

    memset(&s, 0, sizeof(s));
    s.mode.set_it = 1;
    s.mode.set_mode3_u.mode = mode;
    return s;
}

/* how: UNCHECKED/GUARDED use attrs (may be NULL: mode 0644); EXCLUSIVE uses verf. */
static int op_create(struct conn *c, const struct fh *dir, const char *nm, int how,
                     const sattr3 *attrs, const char *verf, struct newobj *o)
{
    struct newobj tmp;
    struct call k = {.proc = P_CREATE, .obj = o ? o : &tmp};
    CREATE3args args = {.where = {.dir = fh3(dir), .name = (char *)nm}};

    args.how.mode = how;
    if (how == EXCLUSIVE)
        memcpy(args.how.createhow3_u.verf, verf, NFS3_CREATEVERFSIZE);
    else
        args.how.createhow3_u.obj_attributes = attrs ? *attrs : sattr_mode(0644);
    return call_run(c->rpc, &k, rpc_nfs3_create_async(c->rpc, on_reply, &args, &k), "CREATE");
}

static int op_mkdir(struct conn *c, const struct fh *dir, const char *nm, uint32_t mode,
                    struct newobj *o)
{
    struct newobj tmp;
    struct call k = {.proc = P_MKDIR, .obj = o ? o : &tmp};
    MKDIR3args args = {.where = {.dir = fh3(dir), .name = (char *)nm},
                       .attributes = sattr_mode(mode)};

    return call_run(c->rpc, &k, rpc_nfs3_mkdir_async(c->rpc, on_reply, &args, &k), "MKDIR");
}

static int op_symlink(struct conn *c, const struct fh *dir, const char *nm, const char *target,
                      struct newobj *o)
{
    struct newobj tmp;
    struct call k = {.proc = P_SYMLINK, .obj = o ? o : &tmp};
    SYMLINK3args args = {.where = {.dir = fh3(dir), .name = (char *)nm}};

    args.symlink.symlink_attributes = sattr_mode(0777);
    args.symlink.symlink_data = (char *)target;
    return call_run(c->rpc, &k, rpc_nfs3_symlink_async(c->rpc, on_reply, &args, &k), "SYMLINK");
}

static int op_mknod(struct conn *c, const struct fh *dir, const char *nm, ftype3 type,
                    struct newobj *o)
{
    struct newobj tmp;
    struct call k = {.proc = P_MKNOD, .obj = o ? o : &tmp};
    MKNOD3args args = {.where = {.dir = fh3(dir), .name = (char *)nm}};

    args.what.type = type;
    switch (type) {
    case NF3CHR:
    case NF3BLK:
        args.what.mknoddata3_u.chr_device.dev_attributes = sattr_mode(0644);
        args.what.mknoddata3_u.chr_device.spec.specdata1 = 1; /* 1:3, /dev/null */
        args.what.mknoddata3_u.chr_device.spec.specdata2 = 3;
        break;
    case NF3SOCK:
    case NF3FIFO:
        args.what.mknoddata3_u.pipe_attributes = sattr_mode(0644);
        break;
    default:
        break;
    }
    return call_run(c->rpc, &k, rpc_nfs3_mknod_async(c->rpc, on_reply, &args, &k), "MKNOD");
}

static int op_remove(struct conn *c, const struct fh *dir, const char *nm, wcc_data *w)
{
    struct call k = {.proc = P_REMOVE};
    REMOVE3args args = {.object = {.dir = fh3(dir), .name = (char *)nm}};
    int st = call_run(c->rpc, &k, rpc_nfs3_remove_async(c->rpc, on_reply, &args, &k), "REMOVE");

    if (w)
        *w = k.wcc;
    return st;
}

static int op_rmdir(struct conn *c, const struct fh *dir, const char *nm, wcc_data *w)
{
    struct call k = {.proc = P_RMDIR};
    RMDIR3args args = {.object = {.dir = fh3(dir), .name = (char *)nm}};
    int st = call_run(c->rpc, &k, rpc_nfs3_rmdir_async(c->rpc, on_reply, &args, &k), "RMDIR");

    if (w)
        *w = k.wcc;
    return st;
}

static int op_rename(struct conn *c, const struct fh *fdir, const char *fnm, const struct fh *tdir,
                     const char *tnm, wcc_data *fw, wcc_data *tw)
{
    struct call k = {.proc = P_RENAME};
    RENAME3args args = {.from = {.dir = fh3(fdir), .name = (char *)fnm},
                        .to = {.dir = fh3(tdir), .name = (char *)tnm}};
    int st = call_run(c->rpc, &k, rpc_nfs3_rename_async(c->rpc, on_reply, &args, &k), "RENAME");

    if (fw)
        *fw = k.wcc;
    if (tw)
        *tw = k.wcc2;
    return st;
}

static int op_link(struct conn *c, const struct fh *file, const struct fh *dir, const char *nm,
                   post_op_attr *fa, wcc_data *w)
{
    struct call k = {.proc = P_LINK};
    LINK3args args = {.file = fh3(file), .link = {.dir = fh3(dir), .name = (char *)nm}};
    int st = call_run(c->rpc, &k, rpc_nfs3_link_async(c->rpc, on_reply, &args, &k), "LINK");

    if (fa)
        *fa = k.pattr;
    if (w)
        *w = k.wcc;
    return st;
}

/* One READDIR page, appended to pg; cookie/verf continue from the previous page. */
static int op_readdir(struct conn *c, const struct fh *dir, uint64_t cookie, const char *verf,
                      uint32_t count, struct page *pg)
{
    struct call k = {.proc = P_READDIR, .page = pg};
    READDIR3args args = {.dir = fh3(dir), .cookie = cookie, .count = count};

    memcpy(args.cookieverf, verf, NFS3_COOKIEVERFSIZE);
    return call_run(c->rpc, &k, rpc_nfs3_readdir_async(c->rpc, on_reply, &args, &k), "READDIR");
}

static int op_readdirplus(struct conn *c, const struct fh *dir, uint64_t cookie, const char *verf,
                          uint32_t dircount, uint32_t maxcount, struct page *pg)
{
    struct call k = {.proc = P_READDIRPLUS, .page = pg};
    READDIRPLUS3args args = {
        .dir = fh3(dir), .cookie = cookie, .dircount = dircount, .maxcount = maxcount};

    memcpy(args.cookieverf, verf, NFS3_COOKIEVERFSIZE);
    return call_run(c->rpc, &k, rpc_nfs3_readdirplus_async(c->rpc, on_reply, &args, &k),
                    "READDIRPLUS");
}

static int op_fsstat(struct conn *c, const struct fh *f, FSSTAT3resok *out)
{
    struct call k = {.proc = P_FSSTAT};
    FSSTAT3args args = {.fsroot = fh3(f)};
    int st = call_run(c->rpc, &k, rpc_nfs3_fsstat_async(c->rpc, on_reply, &args, &k), "FSSTAT");

    *out = k.fsstat;
    return st;
}

static int op_fsinfo(struct conn *c, const struct fh *f, FSINFO3resok *out)
{
    struct call k = {.proc = P_FSINFO};
    FSINFO3args args = {.fsroot = fh3(f)};
    int st = call_run(c->rpc, &k, rpc_nfs3_fsinfo_async(c->rpc, on_reply, &args, &k), "FSINFO");

    *out = k.fsinfo;
    return st;
}

static int op_pathconf(struct conn *c, const struct fh *f, PATHCONF3resok *out)
{
    struct call k = {.proc = P_PATHCONF};
    PATHCONF3args args = {.object = fh3(f)};
    int st = call_run(c->rpc, &k, rpc_nfs3_pathconf_async(c->rpc, on_reply, &args, &k), "PATHCONF");

    *out = k.pathconf;
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Connection setup */

/* MOUNT MNT on our own connection: the only public way to the root handle in libnfs 4.0.
 * Returns the mountstat3 with *out the connection; -1 when MOUNT could not be reached at all;
 * -2 when it was reached but the call failed at the RPC level (rejected credentials, the
 * server closing the connection).  errmsg says what happened for negative returns. */
static int mount_raw(const struct url *u, int uid, int gid, struct rpc_context **out,
                     struct fh *root, char *errmsg, size_t errcap)
{
    struct rpc_context *rpc = rpc_init_context();
    struct call k = {.proc = P_CONNECT};
    struct newobj o;
    char err[512] = "";
    int rc;

    *out = NULL;
    if (!rpc)
        fail("rpc_init_context failed");
    rpc_set_uid(rpc, uid);
    rpc_set_gid(rpc, gid);
    if (u->mountport)
        rc = rpc_connect_port_async(rpc, u->host, u->mountport, MOUNT_PROGRAM, MOUNT_V3, on_reply,
                                    &k);
    else
        rc = rpc_connect_program_async(rpc, u->host, MOUNT_PROGRAM, MOUNT_V3, on_reply, &k);
    if (rc)
        snprintf(err, sizeof(err), "%s", rpc_get_error(rpc));
    else if (!rpc_wait_soft(rpc, &k.done, "connect", err, sizeof(err)) &&
             k.rpc_status != RPC_STATUS_SUCCESS)
        snprintf(err, sizeof(err), "%s", k.err);
    if (err[0]) {
        snprintf(errmsg, errcap, "cannot connect to MOUNT on %s port %d: %s", u->host, u->mountport,
                 err);
        rpc_destroy_context(rpc);
        return -1;
    }
    memset(&k, 0, sizeof(k));
    k.proc = P_MNT;
    k.obj = &o;
    rc = rpc_mount3_mnt_async(rpc, on_reply, (char *)u->exp, &k);
    if (rc)
        snprintf(err, sizeof(err), "%s", rpc_get_error(rpc));
    else if (!rpc_wait_soft(rpc, &k.done, "MNT", err, sizeof(err)) &&
             k.rpc_status != RPC_STATUS_SUCCESS)
        snprintf(err, sizeof(err), "%s", k.err);
    if (err[0]) {
        snprintf(errmsg, errcap, "MOUNT MNT %s: RPC failed: %s", u->exp, err);
        rpc_destroy_context(rpc);
        return -2;
    }
    if (k.st == MNT3_OK)
        *root = o.fh;
    *out = rpc;
    return k.st;
}

/* Mount URL as uid/gid through both libnfs (high level + raw NFS connection) and our MNT.
 * uid/gid -1: the URL's uid=/gid= if given, else our own. */
static struct conn *conn_open(const char *urlstr, int uid, int gid)
{
    struct conn *c = calloc(1, sizeof(*c));
    struct nfs_url *nu;
    char err[2048];
    int st, rc;

    if (!c)
        fail("out of memory");
    if (!url_parse(urlstr, &c->url))
        fail("bad URL %s (want nfs://HOST/EXPORT?version=3&port=P&mountport=Q)", urlstr);
    if (uid < 0)
        uid = c->url.uid >= 0 ? c->url.uid : (int)getuid();
    if (gid < 0)
        gid = c->url.gid >= 0 ? c->url.gid : (int)getgid();
    c->uid = uid;
    c->gid = gid;
    st = mount_raw(&c->url, uid, gid, &c->mrpc, &c->root, err, sizeof(err));
    if (st < 0)
        fail("%s", err);
    if (st != MNT3_OK)
        fail("MOUNT MNT %s on %s: %s", c->url.exp, c->url.host, mntname(st));

    c->nfs = nfs_init_context();
    if (!c->nfs)
        fail("nfs_init_context failed");
    nfs_set_uid(c->nfs, uid);
    nfs_set_gid(c->nfs, gid);
    nfs_set_dircache(c->nfs, 0); /* listings must come from the server, not a cache */
    nu = nfs_parse_url_dir(c->nfs, c->url.libnfs);
    if (!nu)
        fail("libnfs rejects URL %s: %s", c->url.libnfs, nfs_get_error(c->nfs));
    rc = nfs_mount(c->nfs, nu->server, nu->path);
    if (rc)
        fail("nfs_mount %s: %s", c->url.libnfs, nfs_get_error(c->nfs));
    nfs_destroy_url(nu);
    c->rpc = nfs_get_rpc_context(c->nfs);
    return c;
}

static void conn_close(struct conn *c)
{
    if (!c)
        return;
    if (c->mrpc) {
        struct call k = {.proc = P_UMNT};

        /* UMNT is advisory (the server's mount list); a failure is not the server's error. */
        if (!rpc_mount3_umnt_async(c->mrpc, on_reply, c->url.exp, &k))
            rpc_wait(c->mrpc, &k.done, "MOUNT UMNT");
        rpc_destroy_context(c->mrpc);
    }
    if (c->nfs)
        nfs_destroy_context(c->nfs);
    free(c);
}

/* FSINFO once per connection: transfer sizes for the data path. */
static void conn_fsinfo(struct conn *c)
{
    FSINFO3resok fi;
    int st = op_fsinfo(c, &c->root, &fi);

    if (st != NFS3_OK)
        fail("FSINFO root: %s", stname(st));
    c->rtmax = fi.rtmax < NC_CHUNK ? fi.rtmax : NC_CHUNK;
    c->wtmax = fi.wtmax < NC_CHUNK ? fi.wtmax : NC_CHUNK;
    if (!c->rtmax || !c->wtmax)
        fail("FSINFO: rtmax %u wtmax %u", fi.rtmax, fi.wtmax);
}

/* ---------------------------------------------------------------------------------------- */
/* Helpers built on the procedures */

static void need_ok(int st, const char *what)
{
    if (st != NFS3_OK)
        fail("%s: %s", what, stname(st));
}

/* Walk a '/'-separated path from the root.  Returns the status of the failing LOOKUP. */
static int resolve(struct conn *c, const char *path, struct fh *out)
{
    char *dup = strdup(path), *save = NULL;
    struct newobj o;
    struct fh cur = c->root;
    int st = NFS3_OK;

    if (!dup)
        fail("out of memory");
    for (char *p = strtok_r(dup, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        st = op_lookup(c, &cur, p, &o);
        if (st != NFS3_OK)
            break;
        cur = o.fh;
    }
    free(dup);
    if (st == NFS3_OK)
        *out = cur;
    return st;
}

/* Split "a/b/c" into the parent's handle and "c". */
static void resolve_parent(struct conn *c, const char *path, struct fh *dir, const char **leaf)
{
    const char *slash = strrchr(path, '/');
    int st;

    if (!slash) {
        *dir = c->root;
        *leaf = path;
        return;
    }
    {
        char *parent = strndup(path, (size_t)(slash - path));

        if (!parent)
            fail("out of memory");
        st = resolve(c, parent, dir);
        if (st != NFS3_OK)
            fail("LOOKUP parent %s of %s: %s", parent, path, stname(st));
        free(parent);
    }
    *leaf = slash + 1;
    if (!**leaf)
        fail("path %s ends in '/'", path);
}

static fattr3 getattr_ok(struct conn *c, const struct fh *f, const char *what)
{
    fattr3 a;
    int st = op_getattr(c, f, &a);

    if (st != NFS3_OK)
        fail("GETATTR %s: %s", what, stname(st));
    return a;
}

static struct fh lookup_ok(struct conn *c, const struct fh *dir, const char *nm)
{
    struct newobj o;
    int st = op_lookup(c, dir, nm, &o);

    if (st != NFS3_OK)
        fail("LOOKUP %s: %s", nm, stname(st));
    return o.fh;
}

/* A created object's handle: from the reply, or by LOOKUP when the server left it out. */
static struct fh obj_fh(struct conn *c, const struct fh *dir, const char *nm,
                        const struct newobj *o)
{
    return o->has_fh ? o->fh : lookup_ok(c, dir, nm);
}

static struct fh create_ok(struct conn *c, const struct fh *dir, const char *nm, uint32_t mode)
{
    struct newobj o;
    sattr3 s = sattr_mode(mode);
    int st = op_create(c, dir, nm, UNCHECKED, &s, NULL, &o);

    if (st != NFS3_OK)
        fail("CREATE %s: %s", nm, stname(st));
    return obj_fh(c, dir, nm, &o);
}

static struct fh mkdir_ok(struct conn *c, const struct fh *dir, const char *nm, uint32_t mode)
{
    struct newobj o;
    int st = op_mkdir(c, dir, nm, mode, &o);

    if (st != NFS3_OK)
        fail("MKDIR %s: %s", nm, stname(st));
    return obj_fh(c, dir, nm, &o);
}

static void write_all(struct conn *c, const struct fh *f, uint64_t off, const void *buf,
                      uint32_t len, int stable)
{
    const unsigned char *p = buf;

    while (len) {
        struct wres w;
        uint32_t n = len < c->wtmax ? len : c->wtmax;
        int st = op_write(c, f, off, p, n, stable, &w);

        if (st != NFS3_OK)
            fail("WRITE at %" PRIu64 ": %s", off, stname(st));
        if (!w.count || w.count > n)
            fail("WRITE at %" PRIu64 ": asked %u, server says %u written", off, n, w.count);
        p += w.count;
        off += w.count;
        len -= w.count;
    }
}

/* Read exactly len bytes (short reads continue; early EOF is fatal). */
static void read_all(struct conn *c, const struct fh *f, uint64_t off, void *buf, uint32_t len)
{
    unsigned char *p = buf;

    while (len) {
        uint32_t got, n = len < c->rtmax ? len : c->rtmax;
        bool eof;
        int st = op_read(c, f, off, n, p, &got, &eof);

        if (st != NFS3_OK)
            fail("READ at %" PRIu64 ": %s", off, stname(st));
        if (!got)
            fail("READ at %" PRIu64 ": 0 bytes (eof=%d) with %u still expected", off, eof, len);
        p += got;
        off += got;
        len -= got;
    }
}

/* READDIRPLUS until eof, with the given page sizes; returns pages used. */
static size_t list_plus(struct conn *c, const struct fh *dir, uint32_t dircount, uint32_t maxcount,
                        struct page *pg)
{
    uint64_t cookie = 0;
    char verf[NFS3_COOKIEVERFSIZE] = {0};
    size_t pages = 0;

    memset(pg, 0, sizeof(*pg));
    do {
        int st = op_readdirplus(c, dir, cookie, verf, dircount, maxcount, pg);

        if (st != NFS3_OK)
            fail("READDIRPLUS page %zu (cookie %" PRIu64 "): %s", pages, cookie, stname(st));
        pages++;
        if (!pg->last_n && !pg->eof)
            fail("READDIRPLUS page %zu: no entries and no eof", pages);
        for (size_t i = pg->n - pg->last_n; i < pg->n; i++)
            if (!pg->v[i].cookie)
                fail("READDIRPLUS: entry \"%s\" has cookie 0 (reserved for the start)",
                     pg->v[i].nm);
        if (pg->last_n)
            cookie = pg->v[pg->n - 1].cookie;
        memcpy(verf, pg->verf, sizeof(verf));
    } while (!pg->eof);
    return pages;
}

static size_t list_plain(struct conn *c, const struct fh *dir, uint32_t count, struct page *pg)
{
    uint64_t cookie = 0;
    char verf[NFS3_COOKIEVERFSIZE] = {0};
    size_t pages = 0;

    memset(pg, 0, sizeof(*pg));
    do {
        int st = op_readdir(c, dir, cookie, verf, count, pg);

        if (st != NFS3_OK)
            fail("READDIR page %zu (cookie %" PRIu64 "): %s", pages, cookie, stname(st));
        pages++;
        if (!pg->last_n && !pg->eof)
            fail("READDIR page %zu: no entries and no eof", pages);
        for (size_t i = pg->n - pg->last_n; i < pg->n; i++)
            if (!pg->v[i].cookie)
                fail("READDIR: entry \"%s\" has cookie 0 (reserved for the start)", pg->v[i].nm);
        if (pg->last_n)
            cookie = pg->v[pg->n - 1].cookie;
        memcpy(verf, pg->verf, sizeof(verf));
    } while (!pg->eof);
    return pages;
}

static bool is_dot(const char *nm)
{
    return !strcmp(nm, ".") || !strcmp(nm, "..");
}

/* Remove dir/nm and everything below it.  Missing is fine. */
static void rm_tree(struct conn *c, const struct fh *dir, const char *nm)
{
    struct newobj o;
    struct page pg;
    int st = op_lookup(c, dir, nm, &o);
    fattr3 a;

    if (st == NFS3ERR_NOENT)
        return;
    need_ok(st, "cleanup LOOKUP");
    a = getattr_ok(c, &o.fh, nm);
    if (a.type != NF3DIR) {
        need_ok(op_remove(c, dir, nm, NULL), "cleanup REMOVE");
        return;
    }
    list_plus(c, &o.fh, 4096, 32768, &pg);
    for (size_t i = 0; i < pg.n; i++)
        if (!is_dot(pg.v[i].nm))
            rm_tree(c, &o.fh, pg.v[i].nm);
    page_free(&pg);
    need_ok(op_rmdir(c, dir, nm, NULL), "cleanup RMDIR");
}

static bool has_after(const wcc_data *w)
{
    return w->after.attributes_follow != 0;
}

static void check_wcc(const wcc_data *w, const char *what)
{
    check(has_after(w), "%s wcc_data: after attributes %s, before %s", what,
          has_after(w) ? "present" : "MISSING", w->before.attributes_follow ? "present" : "absent");
}

/* |a - b| in nanoseconds. */
static int64_t tdiff_ns(nfstime3 a, nfstime3 b)
{
    int64_t d = ((int64_t)a.seconds - (int64_t)b.seconds) * 1000000000 +
                ((int64_t)a.nseconds - (int64_t)b.nseconds);

    return d < 0 ? -d : d;
}

/* ---------------------------------------------------------------------------------------- */
/* procs: every procedure and its error cases */

struct procs {
    struct conn *c;
    struct fh d; /* the test directory */
    fattr3 root_attr;
    FSINFO3resok fsinfo;
};

static void procs_mkdir_getattr(struct procs *t, const char *dirname)
{
    struct conn *c = t->c;
    struct newobj o;
    fattr3 a;
    int st;

    expect(op_null(c), NFS3_OK, "NULL");
    t->root_attr = getattr_ok(c, &c->root, "root");
    check(t->root_attr.type == NF3DIR, "GETATTR root: type %s", tname(t->root_attr.type));

    st = op_mkdir(c, &c->root, dirname, 0755, &o);
    if (st == NFS3ERR_EXIST)
        fail("MKDIR %s: EXIST; remove it first, procs needs a fresh directory", dirname);
    expect(st, NFS3_OK, "MKDIR DIR");
    check_wcc(&o.dir_wcc, "MKDIR");
    t->d = obj_fh(c, &c->root, dirname, &o);
    expect(op_mkdir(c, &c->root, dirname, 0755, NULL), NFS3ERR_EXIST, "MKDIR existing");

    a = getattr_ok(c, &t->d, "DIR");
    check(a.type == NF3DIR && (a.mode & 07777) == 0755,
          "GETATTR DIR: type %s mode %04o (want DIR 0755)", tname(a.type), a.mode & 07777);
    check(!o.attr.attributes_follow || o.attr.post_op_attr_u.attributes.fileid == a.fileid,
          "MKDIR attributes match GETATTR (fileid %" PRIu64 ")", a.fileid);
    check(a.nlink >= 2, "GETATTR DIR: nlink %u (want >= 2)", a.nlink);
}

static void procs_lookup(struct procs *t, const struct fh *f, uint64_t f_fileid)
{
    struct conn *c = t->c;
    char longname[NC_NAME_MAX + 2];
    struct newobj o;
    fattr3 a;
    int st;

    st = op_lookup(c, &t->d, "f", &o);
    expect(st, NFS3_OK, "LOOKUP f");
    a = getattr_ok(c, &o.fh, "f");
    check(a.fileid == f_fileid, "LOOKUP f: fileid %" PRIu64 " == CREATE's", a.fileid);
    check(!o.attr.attributes_follow || o.attr.post_op_attr_u.attributes.fileid == f_fileid,
          "LOOKUP f: obj_attributes consistent");
    expect(op_lookup(c, &t->d, "missing", &o), NFS3ERR_NOENT, "LOOKUP missing");
    expect(op_lookup(c, f, "x", NULL), NFS3ERR_NOTDIR, "LOOKUP inside a file");

    memset(longname, 'n', NC_NAME_MAX + 1);
    longname[NC_NAME_MAX + 1] = 0;
    expect(op_lookup(c, &t->d, longname, NULL), NFS3ERR_NAMETOOLONG, "LOOKUP 256-byte name");
    expect(op_create(c, &t->d, longname, GUARDED, NULL, NULL, NULL), NFS3ERR_NAMETOOLONG,
           "CREATE 256-byte name");
    longname[NC_NAME_MAX] = 0;
    expect(op_lookup(c, &t->d, longname, NULL), NFS3ERR_NOENT, "LOOKUP 255-byte name");

    st = op_lookup(c, &t->d, "..", &o);
    expect(st, NFS3_OK, "LOOKUP ..");
    a = getattr_ok(c, &o.fh, "DIR/..");
    check(a.fileid == t->root_attr.fileid, "LOOKUP DIR/..: fileid %" PRIu64 " == root's %" PRIu64,
          a.fileid, t->root_attr.fileid);
    st = op_lookup(c, &t->d, ".", &o);
    expect(st, NFS3_OK, "LOOKUP .");
    a = getattr_ok(c, &o.fh, "DIR/.");
    check(a.fileid == getattr_ok(c, &t->d, "DIR").fileid, "LOOKUP DIR/.: fileid is DIR's");
}

static void procs_create(struct procs *t, struct fh *f, uint64_t *f_fileid)
{
    struct conn *c = t->c;
    char v1[NFS3_CREATEVERFSIZE] = "nfschk1", v2[NFS3_CREATEVERFSIZE] = "nfschk2";
    struct newobj o;
    struct fh h;
    fattr3 a;
    uint64_t xid;
    int st;

    st = op_create(c, &t->d, "f", UNCHECKED, NULL, NULL, &o);
    expect(st, NFS3_OK, "CREATE UNCHECKED f");
    check_wcc(&o.dir_wcc, "CREATE");
    check(o.has_fh, "CREATE returns the new handle");
    *f = obj_fh(c, &t->d, "f", &o);
    a = getattr_ok(c, f, "f");
    check(a.type == NF3REG && a.size == 0 && (a.mode & 07777) == 0644,
          "GETATTR f: type %s size %" PRIu64 " mode %04o (want REG 0 0644)", tname(a.type), a.size,
          a.mode & 07777);
    *f_fileid = a.fileid;

    st = op_create(c, &t->d, "f", UNCHECKED, NULL, NULL, &o);
    expect(st, NFS3_OK, "CREATE UNCHECKED over existing");
    h = obj_fh(c, &t->d, "f", &o);
    check(getattr_ok(c, &h, "f").fileid == *f_fileid, "CREATE UNCHECKED over existing: same file");
    expect(op_create(c, &t->d, "f", GUARDED, NULL, NULL, NULL), NFS3ERR_EXIST,
           "CREATE GUARDED existing");

    st = op_create(c, &t->d, "excl", EXCLUSIVE, NULL, v1, &o);
    expect(st, NFS3_OK, "CREATE EXCLUSIVE");
    h = obj_fh(c, &t->d, "excl", &o);
    xid = getattr_ok(c, &h, "excl").fileid;
    st = op_create(c, &t->d, "excl", EXCLUSIVE, NULL, v1, &o);
    expect(st, NFS3_OK, "CREATE EXCLUSIVE retransmit, same verifier");
    h = obj_fh(c, &t->d, "excl", &o);
    a = getattr_ok(c, &h, "excl");
    check(a.fileid == xid, "CREATE EXCLUSIVE retransmit: same file (fileid %" PRIu64 ")", xid);
    expect(op_create(c, &t->d, "excl", EXCLUSIVE, NULL, v2, NULL), NFS3ERR_EXIST,
           "CREATE EXCLUSIVE, other verifier");
    {
        /* RFC 1813: after an exclusive create the client sets the real attributes. */
        sattr3 s = sattr_mode(0640);
        wcc_data w;

        expect(op_setattr(c, &h, &s, NULL, &w), NFS3_OK, "SETATTR after EXCLUSIVE");
        a = getattr_ok(c, &h, "excl");
        check((a.mode & 07777) == 0640, "EXCLUSIVE file mode now %04o", a.mode & 07777);
    }
}

static void procs_write_read(struct procs *t, const struct fh *f)
{
    struct conn *c = t->c;
    enum { BLK = 8192 };
    static unsigned char buf[3 * BLK], back[3 * BLK];
    static const int how[3] = {UNSTABLE, DATA_SYNC, FILE_SYNC};
    static const char *const hn[3] = {"UNSTABLE", "DATA_SYNC", "FILE_SYNC"};
    char verf[NFS3_WRITEVERFSIZE];
    struct wres w;
    uint32_t got;
    bool eof;
    int st;

    gen_fill(1, 0, buf, sizeof(buf));
    for (int i = 0; i < 3; i++) {
        st = op_write(c, f, (uint64_t)i * BLK, buf + i * BLK, BLK, how[i], &w);
        if (st != NFS3_OK)
            fail("WRITE %s: %s", hn[i], stname(st));
        check(w.count == BLK && w.committed >= how[i] && w.committed <= FILE_SYNC,
              "WRITE %s: count %u committed %s", hn[i], w.count,
              w.committed >= 0 && w.committed <= 2 ? hn[w.committed] : "?");
        check_wcc(&w.wcc, "WRITE");
        check(w.wcc.after.post_op_attr_u.attributes.size == (uint64_t)(i + 1) * BLK,
              "WRITE %s: wcc after size %" PRIu64, hn[i],
              w.wcc.after.post_op_attr_u.attributes.size);
        if (i == 0)
            memcpy(verf, w.verf, sizeof(verf));
        else
            check(!memcmp(verf, w.verf, sizeof(verf)), "WRITE %s: same verifier as before", hn[i]);
    }
    /* Unstable data again, then COMMIT: its verifier must match the writes'. */
    st = op_write(c, f, 0, buf, BLK, UNSTABLE, &w);
    need_ok(st, "WRITE UNSTABLE");
    check(!memcmp(verf, w.verf, sizeof(verf)), "WRITE UNSTABLE again: same verifier");
    st = op_commit(c, f, 0, 0, &w);
    expect(st, NFS3_OK, "COMMIT");
    check(!memcmp(verf, w.verf, sizeof(verf)), "COMMIT verifier == WRITE verifier");
    check_wcc(&w.wcc, "COMMIT");

    st = op_read(c, f, 0, sizeof(back), back, &got, &eof);
    expect(st, NFS3_OK, "READ whole file");
    check(got == sizeof(back) && !memcmp(buf, back, sizeof(back)),
          "READ whole file: %u bytes, content matches", got);
    st = op_read(c, f, 100, 50, back, &got, &eof);
    check(st == NFS3_OK && got == 50 && !eof && !memcmp(back, buf + 100, 50),
          "READ 50 at 100: %s, %u bytes, eof=%d", stname(st), got, eof);
    st = op_read(c, f, sizeof(buf) - 10, 100, back, &got, &eof);
    check(st == NFS3_OK && got == 10 && eof && !memcmp(back, buf + sizeof(buf) - 10, 10),
          "READ across EOF: %s, %u bytes, eof=%d (want 10, 1)", stname(st), got, eof);
    st = op_read(c, f, sizeof(buf), 100, back, &got, &eof);
    check(st == NFS3_OK && got == 0 && eof, "READ at EOF: %s, count %u, eof=%d (want 0, 1)",
          stname(st), got, eof);
    st = op_read(c, f, 1u << 30, 100, back, &got, &eof);
    check(st == NFS3_OK && got == 0 && eof, "READ past EOF: %s, count %u, eof=%d (want 0, 1)",
          stname(st), got, eof);

    expect_any(op_read(c, &t->d, 0, 100, back, NULL, NULL), "READ on a directory", NFS3ERR_ISDIR,
               NFS3ERR_INVAL, -1);
    expect_any(op_write(c, &t->d, 0, buf, 10, FILE_SYNC, NULL), "WRITE on a directory",
               NFS3ERR_ISDIR, NFS3ERR_INVAL, -1);
}

static void procs_setattr(struct procs *t, const struct fh *f)
{
    struct conn *c = t->c;
    static unsigned char buf[5000], want[5000];
    sattr3 s;
    wcc_data w;
    fattr3 a, b;
    nfstime3 wrong;
    int st;
    time_t now;

    s = sattr_mode(0600);
    st = op_setattr(c, f, &s, NULL, &w);
    expect(st, NFS3_OK, "SETATTR mode 0600");
    check_wcc(&w, "SETATTR");
    a = getattr_ok(c, f, "f");
    check((a.mode & 07777) == 0600, "GETATTR after SETATTR mode: %04o", a.mode & 07777);

    memset(&s, 0, sizeof(s));
    s.size.set_it = 1;
    s.size.set_size3_u.size = 1000;
    expect(op_setattr(c, f, &s, NULL, &w), NFS3_OK, "SETATTR size 1000 (truncate)");
    check(w.after.attributes_follow && w.after.post_op_attr_u.attributes.size == 1000,
          "SETATTR truncate: wcc after size %" PRIu64, w.after.post_op_attr_u.attributes.size);
    s.size.set_size3_u.size = 5000;
    expect(op_setattr(c, f, &s, NULL, NULL), NFS3_OK, "SETATTR size 5000 (extend)");
    a = getattr_ok(c, f, "f");
    check(a.size == 5000, "GETATTR size after extend: %" PRIu64, a.size);
    read_all(c, f, 0, buf, sizeof(buf));
    gen_fill(1, 0, want, 1000);
    memset(want + 1000, 0, sizeof(want) - 1000);
    check(!memcmp(buf, want, sizeof(buf)),
          "READ after truncate+extend: old bytes kept, hole reads zeros");

    /* Times: client time exactly (within time_delta), then server time. */
    memset(&s, 0, sizeof(s));
    s.atime.set_it = SET_TO_CLIENT_TIME;
    s.atime.set_atime_u.atime.seconds = 1000000000;
    s.mtime.set_it = SET_TO_CLIENT_TIME;
    s.mtime.set_mtime_u.mtime.seconds = 1100000000;
    s.mtime.set_mtime_u.mtime.nseconds = 500000000;
    expect(op_setattr(c, f, &s, NULL, NULL), NFS3_OK, "SETATTR atime/mtime SET_TO_CLIENT_TIME");
    a = getattr_ok(c, f, "f");
    {
        int64_t delta =
            (int64_t)t->fsinfo.time_delta.seconds * 1000000000 + t->fsinfo.time_delta.nseconds;

        check(tdiff_ns(a.atime, s.atime.set_atime_u.atime) <= delta &&
                  tdiff_ns(a.mtime, s.mtime.set_mtime_u.mtime) <= delta,
              "GETATTR times: atime %u.%09u mtime %u.%09u (time_delta %" PRId64 " ns)",
              a.atime.seconds, a.atime.nseconds, a.mtime.seconds, a.mtime.nseconds, delta);
    }
    memset(&s, 0, sizeof(s));
    s.atime.set_it = SET_TO_SERVER_TIME;
    s.mtime.set_it = SET_TO_SERVER_TIME;
    expect(op_setattr(c, f, &s, NULL, NULL), NFS3_OK, "SETATTR atime/mtime SET_TO_SERVER_TIME");
    a = getattr_ok(c, f, "f");
    now = time(NULL);
    check(llabs((long long)a.mtime.seconds - now) < 600 &&
              llabs((long long)a.atime.seconds - now) < 600,
          "GETATTR times near now: atime %u mtime %u, local clock %lld", a.atime.seconds,
          a.mtime.seconds, (long long)now);

    /* Guard: a wrong ctime must refuse and change nothing; the right one must work. */
    b = getattr_ok(c, f, "f");
    wrong = b.ctime;
    wrong.seconds += 12345;
    s = sattr_mode(0604);
    expect(op_setattr(c, f, &s, &wrong, NULL), NFS3ERR_NOT_SYNC, "SETATTR guard, wrong ctime");
    a = getattr_ok(c, f, "f");
    check((a.mode & 07777) == 0600, "SETATTR NOT_SYNC left mode %04o", a.mode & 07777);
    expect(op_setattr(c, f, &s, &b.ctime, NULL), NFS3_OK, "SETATTR guard, right ctime");
    a = getattr_ok(c, f, "f");
    check((a.mode & 07777) == 0604, "SETATTR guarded mode now %04o", a.mode & 07777);
    check(a.ctime.seconds > b.ctime.seconds || tdiff_ns(a.ctime, b.ctime) > 0,
          "SETATTR changed ctime (%u.%09u -> %u.%09u)", b.ctime.seconds, b.ctime.nseconds,
          a.ctime.seconds, a.ctime.nseconds);

    /* Ownership: allowed when the server treats us as root, PERM otherwise. */
    memset(&s, 0, sizeof(s));
    s.uid.set_it = 1;
    s.uid.set_uid3_u.uid = 1234;
    s.gid.set_it = 1;
    s.gid.set_gid3_u.gid = 5678;
    st = op_setattr(c, f, &s, NULL, NULL);
    if (a.uid == 0) {
        expect(st, NFS3_OK, "SETATTR uid/gid as root");
        a = getattr_ok(c, f, "f");
        check(a.uid == 1234 && a.gid == 5678, "GETATTR owner now %u:%u", a.uid, a.gid);
    } else if (rfc_mode) {
        expect_any(st, "SETATTR uid/gid as non-root owner", NFS3ERR_PERM, NFS3ERR_ACCES, -1);
    } else {
        expect(st, NFS3ERR_PERM, "SETATTR uid/gid as non-root owner");
    }
}

static void procs_access(struct procs *t, const struct fh *f)
{
    struct conn *c = t->c;
    const uint32_t all = ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND |
                         ACCESS3_DELETE | ACCESS3_EXECUTE;
    const uint32_t rw = ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND;
    const uint32_t dirw = ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
    uint32_t got;
    int st;

    st = op_access(c, f, all, &got);
    expect(st, NFS3_OK, "ACCESS f");
    check(!(got & ~all) && (got & rw) == rw,
          "ACCESS f (mode 0604, ours or we are root): granted 0x%02x, READ|MODIFY|EXTEND set", got);
    st = op_access(c, f, ACCESS3_READ, &got);
    check(st == NFS3_OK && got == ACCESS3_READ, "ACCESS f READ only: granted 0x%02x", got);
    st = op_access(c, &t->d, all, &got);
    expect(st, NFS3_OK, "ACCESS DIR");
    check(!(got & ~all) && (got & dirw) == dirw,
          "ACCESS DIR: granted 0x%02x, LOOKUP|MODIFY|EXTEND|DELETE set", got);
}

static void procs_symlink_mknod(struct procs *t, const struct fh *f)
{
    struct conn *c = t->c;
    char target[1024];
    struct newobj o;
    struct fh sl;
    fattr3 a;
    int st;

    st = op_symlink(c, &t->d, "sl", "some/target path", &o);
    expect(st, NFS3_OK, "SYMLINK");
    check_wcc(&o.dir_wcc, "SYMLINK");
    sl = obj_fh(c, &t->d, "sl", &o);
    a = getattr_ok(c, &sl, "sl");
    check(a.type == NF3LNK, "GETATTR symlink: type %s", tname(a.type));
    st = op_readlink(c, &sl, target, sizeof(target));
    check(st == NFS3_OK && !strcmp(target, "some/target path"), "READLINK: %s \"%s\"", stname(st),
          target);
    expect(op_readlink(c, f, target, sizeof(target)), NFS3ERR_INVAL, "READLINK on a file");
    expect(op_symlink(c, &t->d, "sl", "x", NULL), NFS3ERR_EXIST, "SYMLINK existing name");

    st = op_mknod(c, &t->d, "fifo", NF3FIFO, &o);
    expect_any(st, "MKNOD FIFO", NFS3_OK, NFS3ERR_NOTSUPP, -1);
    if (st == NFS3_OK) {
        struct fh h = obj_fh(c, &t->d, "fifo", &o);

        a = getattr_ok(c, &h, "fifo");
        check(a.type == NF3FIFO, "GETATTR fifo: type %s", tname(a.type));
    }
    st = op_mknod(c, &t->d, "chr", NF3CHR, &o);
    if (rfc_mode) /* PERM: devices need privilege the server does not grant us */
        expect_any(st, "MKNOD CHR", NFS3_OK, NFS3ERR_NOTSUPP, NFS3ERR_PERM, -1);
    else
        expect_any(st, "MKNOD CHR", NFS3_OK, NFS3ERR_NOTSUPP, -1);
    if (st == NFS3_OK) {
        struct fh h = obj_fh(c, &t->d, "chr", &o);

        a = getattr_ok(c, &h, "chr");
        check(a.type == NF3CHR && a.rdev.specdata1 == 1 && a.rdev.specdata2 == 3,
              "GETATTR chr: type %s rdev %u:%u", tname(a.type), a.rdev.specdata1, a.rdev.specdata2);
    }
    expect(op_mknod(c, &t->d, "reg", NF3REG, NULL), NFS3ERR_BADTYPE, "MKNOD type REG");
}

static void procs_remove_rmdir(struct procs *t)
{
    struct conn *c = t->c;
    struct fh sub;
    wcc_data w;

    expect(op_remove(c, &t->d, "missing", NULL), NFS3ERR_NOENT, "REMOVE missing");
    sub = mkdir_ok(c, &t->d, "sub", 0755);
    if (rfc_mode)
        expect_any(op_remove(c, &t->d, "sub", NULL), "REMOVE a directory", NFS3ERR_ISDIR,
                   NFS3ERR_PERM, NFS3ERR_ACCES, NFS3ERR_INVAL, NFS3ERR_NOTSUPP, -1);
    else
        expect(op_remove(c, &t->d, "sub", NULL), NFS3ERR_ISDIR, "REMOVE a directory");
    create_ok(c, &sub, "x", 0644);
    if (rfc_mode)
        expect_any(op_rmdir(c, &t->d, "sub", NULL), "RMDIR non-empty", NFS3ERR_NOTEMPTY,
                   NFS3ERR_EXIST, -1);
    else
        expect(op_rmdir(c, &t->d, "sub", NULL), NFS3ERR_NOTEMPTY, "RMDIR non-empty");
    expect(op_rmdir(c, &t->d, "f", NULL), NFS3ERR_NOTDIR, "RMDIR a file");
    expect(op_rmdir(c, &t->d, "missing", NULL), NFS3ERR_NOENT, "RMDIR missing");
    expect(op_remove(c, &sub, "x", &w), NFS3_OK, "REMOVE file");
    check_wcc(&w, "REMOVE");
    expect(op_lookup(c, &sub, "x", NULL), NFS3ERR_NOENT, "LOOKUP removed file");
    expect(op_rmdir(c, &t->d, "sub", &w), NFS3_OK, "RMDIR empty");
    check_wcc(&w, "RMDIR");
    expect(op_lookup(c, &t->d, "sub", NULL), NFS3ERR_NOENT, "LOOKUP removed directory");
}

static void procs_rename(struct procs *t, uint64_t f_fileid)
{
    struct conn *c = t->c;
    unsigned char one[3] = "one", back[8];
    struct fh d2, t1, da, h;
    wcc_data fw, tw;
    uint64_t t1id;
    int st;

    st = op_rename(c, &t->d, "f", &t->d, "g", &fw, &tw);
    expect(st, NFS3_OK, "RENAME f -> g (same directory)");
    check_wcc(&fw, "RENAME from");
    check_wcc(&tw, "RENAME to");
    expect(op_lookup(c, &t->d, "f", NULL), NFS3ERR_NOENT, "LOOKUP old name after RENAME");
    h = lookup_ok(c, &t->d, "g");
    check(getattr_ok(c, &h, "g").fileid == f_fileid, "LOOKUP g: same file as f");

    d2 = mkdir_ok(c, &t->d, "d2", 0755);
    expect(op_rename(c, &t->d, "g", &d2, "g", &fw, &tw), NFS3_OK, "RENAME g -> d2/g (across)");
    check_wcc(&fw, "RENAME across from");
    check_wcc(&tw, "RENAME across to");
    expect(op_lookup(c, &t->d, "g", NULL), NFS3ERR_NOENT, "LOOKUP g gone from DIR");
    h = lookup_ok(c, &d2, "g");
    check(getattr_ok(c, &h, "d2/g").fileid == f_fileid, "LOOKUP d2/g: same file");
    expect(op_rename(c, &d2, "g", &t->d, "g", NULL, NULL), NFS3_OK, "RENAME d2/g -> g");

    t1 = create_ok(c, &t->d, "t1", 0644);
    write_all(c, &t1, 0, one, sizeof(one), FILE_SYNC);
    t1id = getattr_ok(c, &t1, "t1").fileid;
    create_ok(c, &t->d, "t2", 0644);
    expect(op_rename(c, &t->d, "t1", &t->d, "t2", NULL, NULL), NFS3_OK,
           "RENAME t1 over existing t2");
    expect(op_lookup(c, &t->d, "t1", NULL), NFS3ERR_NOENT, "LOOKUP t1 after RENAME over");
    {
        struct fh t2 = lookup_ok(c, &t->d, "t2");
        fattr3 a = getattr_ok(c, &t2, "t2");

        read_all(c, &t2, 0, back, 3);
        check(a.fileid == t1id && a.size == 3 && !memcmp(back, one, 3),
              "t2 is now the old t1 (fileid, size %" PRIu64 ", content)", a.size);
    }

    da = mkdir_ok(c, &t->d, "da", 0755);
    h = mkdir_ok(c, &t->d, "db", 0755);
    create_ok(c, &h, "x", 0644);
    mkdir_ok(c, &t->d, "dc", 0755);
    expect_any(op_rename(c, &t->d, "da", &t->d, "db", NULL, NULL), "RENAME dir over non-empty dir",
               NFS3ERR_NOTEMPTY, NFS3ERR_EXIST, -1);
    expect_any(op_rename(c, &t->d, "t2", &t->d, "dc", NULL, NULL), "RENAME file over dir",
               NFS3ERR_ISDIR, NFS3ERR_EXIST, -1);
    expect_any(op_rename(c, &t->d, "dc", &t->d, "t2", NULL, NULL), "RENAME dir over file",
               NFS3ERR_NOTDIR, NFS3ERR_EXIST, -1);
    expect(op_rename(c, &t->d, "da", &t->d, "dc", NULL, NULL), NFS3_OK,
           "RENAME dir over empty dir");
    mkdir_ok(c, &da, "inner", 0755);
    expect(op_rename(c, &t->d, "dc", &da, "loop", NULL, NULL), NFS3ERR_INVAL,
           "RENAME dir into its own subtree");
    expect(op_rename(c, &t->d, "missing", &t->d, "x", NULL, NULL), NFS3ERR_NOENT, "RENAME missing");
}

static void procs_link(struct procs *t)
{
    struct conn *c = t->c;
    static unsigned char a1[4096], a2[4096], want[4096];
    struct fh g = lookup_ok(c, &t->d, "g"), g2;
    post_op_attr fa;
    wcc_data w;
    fattr3 a;

    gen_fill(7, 0, want, sizeof(want));
    write_all(c, &g, 0, want, sizeof(want), FILE_SYNC);
    expect(op_link(c, &g, &t->d, "g2", &fa, &w), NFS3_OK, "LINK g -> g2");
    check_wcc(&w, "LINK");
    check(!fa.attributes_follow || fa.post_op_attr_u.attributes.nlink == 2,
          "LINK file_attributes nlink %u", fa.post_op_attr_u.attributes.nlink);
    a = getattr_ok(c, &g, "g");
    check(a.nlink == 2, "GETATTR after LINK: nlink %u (want 2)", a.nlink);
    g2 = lookup_ok(c, &t->d, "g2");
    check(getattr_ok(c, &g2, "g2").fileid == a.fileid, "g2 has g's fileid");
    read_all(c, &g, 0, a1, sizeof(a1));
    read_all(c, &g2, 0, a2, sizeof(a2));
    check(!memcmp(a1, want, sizeof(a1)) && !memcmp(a2, want, sizeof(a2)),
          "both names read the same data");
    expect(op_link(c, &g, &t->d, "t2", NULL, NULL), NFS3ERR_EXIST, "LINK onto an existing name");
    if (rfc_mode)
        expect_any(op_link(c, &t->d, &t->d, "dl", NULL, NULL), "LINK to a directory", NFS3ERR_ISDIR,
                   NFS3ERR_INVAL, NFS3ERR_PERM, NFS3ERR_BADTYPE, -1);
    else
        expect_any(op_link(c, &t->d, &t->d, "dl", NULL, NULL), "LINK to a directory", NFS3ERR_ISDIR,
                   NFS3ERR_INVAL, -1);
    expect(op_remove(c, &t->d, "g2", NULL), NFS3_OK, "REMOVE one link");
    a = getattr_ok(c, &g, "g");
    check(a.nlink == 1, "GETATTR after REMOVE of a link: nlink %u", a.nlink);
}

/* names[i] must appear exactly once in pg; "." and ".." at most once (and exactly once in
 * Cairn mode); nothing else. */
static void check_listing(const struct page *pg, char names[][64], size_t n, const char *what)
{
    size_t dot = 0, dotdot = 0;
    unsigned char *seen = calloc(n, 1);

    if (!seen)
        fail("out of memory");
    for (size_t i = 0; i < pg->n; i++) {
        const char *nm = pg->v[i].nm;
        size_t j;

        if (!strcmp(nm, ".")) {
            dot++;
            continue;
        }
        if (!strcmp(nm, "..")) {
            dotdot++;
            continue;
        }
        for (j = 0; j < n && strcmp(names[j], nm); j++)
            ;
        if (j == n)
            fail("%s: unexpected name \"%s\"", what, nm);
        if (seen[j]++)
            fail("%s: \"%s\" listed twice", what, nm);
    }
    for (size_t j = 0; j < n; j++)
        if (!seen[j])
            fail("%s: \"%s\" missing", what, names[j]);
    free(seen);
    if (rfc_mode)
        check(dot <= 1 && dotdot <= 1, "%s: all %zu names exactly once (\".\" x%zu, \"..\" x%zu)",
              what, n, dot, dotdot);
    else
        check(dot == 1 && dotdot == 1, "%s: all %zu names exactly once, \".\" and \"..\" once",
              what, n);
}

static void procs_readdir(struct procs *t, const char *dirname)
{
    struct conn *c = t->c;
    enum { N = 40 };
    static char names[N][64];
    struct page pg;
    struct fh f0, rd = mkdir_ok(c, &t->d, "rd", 0755);
    size_t pages;
    char verf[NFS3_COOKIEVERFSIZE] = {0};

    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "entry-%02d-%.*s", i, i % 23,
                 "abcdefghijklmnopqrstuvwxyz");
        create_ok(c, &rd, names[i], 0644);
    }
    pages = list_plain(c, &rd, 512, &pg);
    check(pages >= 3, "READDIR count=512: %zu pages for %d entries", pages, N);
    check_listing(&pg, names, N, "READDIR");
    check(pg.dir_attr.attributes_follow || rfc_mode, "READDIR dir_attributes %s",
          pg.dir_attr.attributes_follow ? "present" : "absent");
    page_free(&pg);

    pages = list_plus(c, &rd, 256, 2048, &pg);
    check(pages >= 3, "READDIRPLUS dircount=256 maxcount=2048: %zu pages", pages);
    check_listing(&pg, names, N, "READDIRPLUS");
    for (size_t i = 0; i < pg.n; i++) {
        const struct dent *e = &pg.v[i];

        if (is_dot(e->nm))
            continue;
        if (!e->has_fh || !e->attr.attributes_follow)
            fail("READDIRPLUS %s: handle %s, attributes %s", e->nm, e->has_fh ? "yes" : "no",
                 e->attr.attributes_follow ? "yes" : "no");
        if (e->attr.post_op_attr_u.attributes.fileid != e->fileid)
            fail("READDIRPLUS %s: fileid %" PRIu64 " but attributes say %" PRIu64, e->nm, e->fileid,
                 e->attr.post_op_attr_u.attributes.fileid);
        if (getattr_ok(c, &e->fh, e->nm).fileid != e->fileid)
            fail("READDIRPLUS %s: its handle names another file", e->nm);
    }
    ok("READDIRPLUS entries carry handles and attributes that match");
    page_free(&pg);

    memset(&pg, 0, sizeof(pg));
    f0 = lookup_ok(c, &rd, names[0]);
    expect(op_readdir(c, &f0, 0, verf, 4096, &pg), NFS3ERR_NOTDIR, "READDIR on a file");
    page_free(&pg);

    /* libnfs's own listing (READDIRPLUS underneath), as an application would see it. */
    {
        char path[600];
        struct nfsdir *nd;
        struct nfsdirent *de;
        struct page hl = {0};

        snprintf(path, sizeof(path), "/%s/rd", dirname);
        if (nfs_opendir(c->nfs, path, &nd))
            fail("nfs_opendir %s: %s", path, nfs_get_error(c->nfs));
        while ((de = nfs_readdir(c->nfs, nd)))
            page_push(&hl, de->name, de->inode, 0, NULL, NULL);
        nfs_closedir(c->nfs, nd);
        check_listing(&hl, names, N, "nfs_opendir");
        page_free(&hl);
    }
}

static void procs_fs(struct procs *t)
{
    struct conn *c = t->c;
    FSSTAT3resok fs;
    PATHCONF3resok pc;
    FSINFO3resok *fi = &t->fsinfo;

    expect(op_fsstat(c, &c->root, &fs), NFS3_OK, "FSSTAT");
    check(fs.fbytes <= fs.tbytes && fs.abytes <= fs.tbytes && fs.ffiles <= fs.tfiles &&
              fs.afiles <= fs.tfiles,
          "FSSTAT: tbytes %" PRIu64 " fbytes %" PRIu64 " abytes %" PRIu64 " tfiles %" PRIu64
          " ffiles %" PRIu64 " afiles %" PRIu64,
          fs.tbytes, fs.fbytes, fs.abytes, fs.tfiles, fs.ffiles, fs.afiles);
    expect(op_fsstat(c, &t->d, &fs), NFS3_OK, "FSSTAT on a non-root directory");

    expect(op_fsinfo(c, &c->root, fi), NFS3_OK, "FSINFO");
    ok("FSINFO: rtmax %u rtpref %u wtmax %u wtpref %u dtpref %u maxfilesize %" PRIu64
       " time_delta %u.%09u properties 0x%x",
       fi->rtmax, fi->rtpref, fi->wtmax, fi->wtpref, fi->dtpref, fi->maxfilesize,
       fi->time_delta.seconds, fi->time_delta.nseconds, fi->properties);
    if (!rfc_mode)
        check(fi->rtmax >= NC_CHUNK && fi->wtmax >= NC_CHUNK, "FSINFO rtmax/wtmax >= 1 MiB");
    check(fi->rtmax && fi->wtmax && fi->rtpref <= fi->rtmax && fi->wtpref <= fi->wtmax &&
              fi->dtpref,
          "FSINFO sizes consistent (pref <= max, dtpref > 0)");
    check(fi->maxfilesize >= (64ull << 20), "FSINFO maxfilesize >= 64 MiB");
    check(fi->time_delta.seconds || fi->time_delta.nseconds, "FSINFO time_delta nonzero");

    expect(op_pathconf(c, &t->d, &pc), NFS3_OK, "PATHCONF");
    check((rfc_mode ? pc.name_max >= NC_NAME_MAX : pc.name_max == NC_NAME_MAX) && pc.no_trunc,
          "PATHCONF: name_max %u (want 255) no_trunc %u linkmax %u chown_restricted %u "
          "case_insensitive %u case_preserving %u",
          pc.name_max, pc.no_trunc, pc.linkmax, pc.chown_restricted, pc.case_insensitive,
          pc.case_preserving);
}

static void procs_bad_handles(struct procs *t)
{
    struct conn *c = t->c;
    struct fh gone, bad, good = lookup_ok(c, &t->d, "g");
    fattr3 a;
    int st;

    gone = create_ok(c, &t->d, "gone", 0644);
    need_ok(op_remove(c, &t->d, "gone", NULL), "REMOVE gone");
    expect(op_getattr(c, &gone, &a), NFS3ERR_STALE, "GETATTR handle of a removed file");

    bad = good;
    bad.data[bad.len / 2] ^= 0x01;
    st = op_getattr(c, &bad, &a);
    if (rfc_mode)
        expect_any(st, "GETATTR handle with one byte flipped", NFS3ERR_BADHANDLE, NFS3ERR_STALE,
                   -1);
    else
        expect(st, NFS3ERR_BADHANDLE, "GETATTR handle with one byte flipped");

    bad.len = good.len;
    if (getrandom(bad.data, bad.len, 0) != (ssize_t)bad.len)
        fail("getrandom: %s", strerror(errno));
    st = op_getattr(c, &bad, &a);
    if (rfc_mode)
        expect_any(st, "GETATTR handle of random bytes", NFS3ERR_BADHANDLE, NFS3ERR_STALE, -1);
    else
        expect(st, NFS3ERR_BADHANDLE, "GETATTR handle of random bytes");

    bad = good;
    bad.len = good.len / 2;
    st = op_getattr(c, &bad, &a);
    if (rfc_mode)
        expect_any(st, "GETATTR truncated handle", NFS3ERR_BADHANDLE, NFS3ERR_STALE, -1);
    else
        expect(st, NFS3ERR_BADHANDLE, "GETATTR truncated handle");

    bad.len = 0;
    st = op_getattr(c, &bad, &a);
    if (rfc_mode)
        expect_any(st, "GETATTR empty handle", NFS3ERR_BADHANDLE, NFS3ERR_STALE, -1);
    else
        expect(st, NFS3ERR_BADHANDLE, "GETATTR empty handle");
    expect(op_getattr(c, &good, &a), NFS3_OK, "GETATTR the untouched handle still works");
}

/* A libnfs sync call's result: 0 (or a count) passes, -errno fails with libnfs's message. */
static int hl(struct conn *c, int rc, const char *what)
{
    if (rc < 0)
        fail("%s: %d %s", what, rc, nfs_get_error(c->nfs));
    ok("%s", what);
    return rc;
}

/* The same kind of operations through libnfs's path API, as an application would. */
static void procs_highlevel(struct procs *t, const char *dirname)
{
    struct conn *c = t->c;
    struct nfs_stat_64 st;
    struct nfsfh *fh;
    struct statvfs sv;
    unsigned char buf[10000], back[10000];
    char p[600], p2[600], sym[600], lnk[64];
    int rc;

    snprintf(p, sizeof(p), "/%s/hl", dirname);
    snprintf(p2, sizeof(p2), "/%s/hl2", dirname);
    snprintf(sym, sizeof(sym), "/%s/hlsym", dirname);
    hl(c, nfs_create(c->nfs, p, O_RDWR | O_CREAT | O_EXCL, 0644, &fh), "nfs_create O_EXCL");
    gen_fill(3, 0, buf, sizeof(buf));
    rc = hl(c, nfs_pwrite(c->nfs, fh, 0, sizeof(buf), buf), "nfs_pwrite");
    check(rc == (int)sizeof(buf), "nfs_pwrite wrote %d bytes", rc);
    hl(c, nfs_fsync(c->nfs, fh), "nfs_fsync");
    rc = hl(c, nfs_pread(c->nfs, fh, 0, sizeof(back), back), "nfs_pread");
    check(rc == (int)sizeof(back) && !memcmp(buf, back, sizeof(buf)),
          "nfs_pread read %d bytes, same data", rc);
    hl(c, nfs_close(c->nfs, fh), "nfs_close");
    hl(c, nfs_stat64(c->nfs, p, &st), "nfs_stat64");
    check(st.nfs_size == sizeof(buf) && (st.nfs_mode & 07777) == 0644,
          "nfs_stat64: size %" PRIu64 " mode %04" PRIo64, st.nfs_size, st.nfs_mode & 07777);
    hl(c, nfs_truncate(c->nfs, p, 10), "nfs_truncate");
    hl(c, nfs_chmod(c->nfs, p, 0600), "nfs_chmod");
    hl(c, nfs_stat64(c->nfs, p, &st), "nfs_stat64");
    check(st.nfs_size == 10 && (st.nfs_mode & 07777) == 0600,
          "nfs_stat64 after truncate/chmod: size %" PRIu64 " mode %04" PRIo64, st.nfs_size,
          st.nfs_mode & 07777);
    hl(c, nfs_rename(c->nfs, p, p2), "nfs_rename");
    rc = nfs_stat64(c->nfs, p, &st);
    check(rc == -ENOENT, "nfs_stat64 old name: %d (want -ENOENT)", rc);
    hl(c, nfs_link(c->nfs, p2, p), "nfs_link");
    hl(c, nfs_symlink(c->nfs, "hl2", sym), "nfs_symlink");
    hl(c, nfs_readlink(c->nfs, sym, lnk, sizeof(lnk)), "nfs_readlink");
    check(!strcmp(lnk, "hl2"), "nfs_readlink: \"%s\"", lnk);
    hl(c, nfs_unlink(c->nfs, sym), "nfs_unlink symlink");
    hl(c, nfs_unlink(c->nfs, p), "nfs_unlink first link");
    hl(c, nfs_unlink(c->nfs, p2), "nfs_unlink second link");
    snprintf(p, sizeof(p), "/%s/hldir", dirname);
    hl(c, nfs_mkdir(c->nfs, p), "nfs_mkdir");
    hl(c, nfs_rmdir(c->nfs, p), "nfs_rmdir");
    hl(c, nfs_statvfs(c->nfs, "/", &sv), "nfs_statvfs");
    check(sv.f_bsize && sv.f_blocks, "nfs_statvfs: bsize %lu blocks %lu namemax %lu",
          (unsigned long)sv.f_bsize, (unsigned long)sv.f_blocks, (unsigned long)sv.f_namemax);
}

static int cmd_procs(const char *url, const char *dirname)
{
    struct procs t = {0};
    struct fh f;
    uint64_t f_fileid;
    struct call k = {.proc = P_MNTNULL};

    if (strchr(dirname, '/'))
        fail("procs: DIR must be one name under the export root, not %s", dirname);
    t.c = conn_open(url, -1, -1);
    ok("MOUNT MNT %s (root handle %u bytes)", t.c->url.exp, t.c->root.len);
    call_run(t.c->mrpc, &k, rpc_mount3_null_async(t.c->mrpc, on_reply, &k), "MOUNT NULL");
    ok("MOUNT NULL");
    conn_fsinfo(t.c);
    expect(op_fsinfo(t.c, &t.c->root, &t.fsinfo), NFS3_OK, "FSINFO (for time_delta)");

    procs_mkdir_getattr(&t, dirname);
    procs_create(&t, &f, &f_fileid);
    procs_lookup(&t, &f, f_fileid);
    procs_write_read(&t, &f);
    procs_setattr(&t, &f);
    procs_access(&t, &f);
    procs_symlink_mknod(&t, &f);
    procs_remove_rmdir(&t);
    procs_rename(&t, f_fileid);
    procs_link(&t);
    procs_readdir(&t, dirname);
    procs_fs(&t);
    procs_bad_handles(&t);
    procs_highlevel(&t, dirname);

    rm_tree(t.c, &t.c->root, dirname);
    expect(op_lookup(t.c, &t.c->root, dirname, NULL), NFS3ERR_NOENT, "cleanup: DIR removed");
    conn_close(t.c);
    printf("procs: all checks passed\n");
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* sizes, write, verify: data integrity through libnfs's file API */

/* Write size generated bytes to path (created or truncated) in chunks of at most 1 MiB. */
static void hl_write_file(struct conn *c, const char *path, uint64_t size, uint64_t seed)
{
    unsigned char *buf = xmalloc(NC_CHUNK);
    struct nfsfh *fh;
    uint64_t off = 0;

    if (nfs_create(c->nfs, path, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fh))
        fail("nfs_create %s: %s", path, nfs_get_error(c->nfs));
    while (off < size) {
        uint64_t n = size - off < NC_CHUNK ? size - off : NC_CHUNK;
        int rc;

        gen_fill(seed, off, buf, (size_t)n);
        rc = nfs_write(c->nfs, fh, n, buf);
        if (rc <= 0)
            fail("nfs_write %s at %" PRIu64 ": %d %s", path, off, rc, nfs_get_error(c->nfs));
        off += (uint64_t)rc;
    }
    if (nfs_fsync(c->nfs, fh))
        fail("nfs_fsync %s: %s", path, nfs_get_error(c->nfs));
    if (nfs_close(c->nfs, fh))
        fail("nfs_close %s: %s", path, nfs_get_error(c->nfs));
    free(buf);
}

/* Read [off, off+len) of path with pread (short reads continue) and compare; returns bytes
 * read, which is less than len only at EOF. */
static uint64_t hl_verify_range(struct conn *c, struct nfsfh *fh, const char *path, uint64_t off,
                                uint64_t len, uint64_t seed)
{
    unsigned char *buf = xmalloc(NC_CHUNK);
    uint64_t done = 0;

    while (done < len) {
        uint64_t n = len - done < NC_CHUNK ? len - done : NC_CHUNK;
        int rc = nfs_pread(c->nfs, fh, off + done, n, buf);
        int64_t bad;

        if (rc < 0)
            fail("nfs_pread %s at %" PRIu64 ": %s", path, off + done, nfs_get_error(c->nfs));
        if (rc == 0)
            break;
        bad = gen_mismatch(seed, off + done, buf, (size_t)rc);
        if (bad >= 0)
            fail("%s: byte %" PRId64 " differs from what was written", path, bad);
        done += (uint64_t)rc;
    }
    free(buf);
    return done;
}

static void hl_verify_file(struct conn *c, const char *path, uint64_t size, uint64_t seed, bool odd)
{
    struct nfs_stat_64 st;
    struct nfsfh *fh;
    uint64_t got;

    if (nfs_stat64(c->nfs, path, &st))
        fail("nfs_stat64 %s: %s", path, nfs_get_error(c->nfs));
    if (st.nfs_size != size)
        fail("%s: size %" PRIu64 ", want %" PRIu64, path, st.nfs_size, size);
    if (nfs_open(c->nfs, path, O_RDONLY, &fh))
        fail("nfs_open %s: %s", path, nfs_get_error(c->nfs));
    got = hl_verify_range(c, fh, path, 0, size + 1, seed);
    if (got != size)
        fail("%s: read %" PRIu64 " bytes, size is %" PRIu64, path, got, size);
    ok("%s: %" PRIu64 " bytes read back identical", path, size);
    if (odd && size) {
        /* Unaligned pieces: start, block edges, middle, tail, and past the end. */
        const uint64_t offs[][2] = {
            {1, 3},
            {4093, 10},
            {4095, 1},
            {size / 3, 4097 + 7},
            {size / 2 + 1, 65537},
            {size - 1, 100},
            {size, 10},
            {size + 4096, 1},
        };

        for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
            uint64_t o = offs[i][0], l = offs[i][1];
            uint64_t want = o >= size ? 0 : (size - o < l ? size - o : l);

            got = hl_verify_range(c, fh, path, o, l, seed);
            if (got != want)
                fail("%s: pread %" PRIu64 "@%" PRIu64 " returned %" PRIu64 " bytes, want %" PRIu64,
                     path, l, o, got, want);
        }
        ok("%s: odd offsets/lengths read correctly", path);
    }
    nfs_close(c->nfs, fh);
}

static int cmd_sizes(const char *url, const char *dirname, uint64_t seed)
{
    static const uint64_t sizes[] = {0, 1, 4095, 4096, (1u << 20) + 1, 64u << 20};
    struct conn *c = conn_open(url, -1, -1);
    char path[600];
    double t0;

    snprintf(path, sizeof(path), "/%s", dirname);
    if (nfs_mkdir(c->nfs, path))
        fail("nfs_mkdir %s: %s", path, nfs_get_error(c->nfs));
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        snprintf(path, sizeof(path), "/%s/size-%" PRIu64, dirname, sizes[i]);
        t0 = now_s();
        hl_write_file(c, path, sizes[i], seed ^ sizes[i]);
        ok("%s: written (%.2f s)", path, now_s() - t0);
        t0 = now_s();
        hl_verify_file(c, path, sizes[i], seed ^ sizes[i], true);
        printf("     (verify %.2f s)\n", now_s() - t0);
        if (nfs_unlink(c->nfs, path))
            fail("nfs_unlink %s: %s", path, nfs_get_error(c->nfs));
    }
    snprintf(path, sizeof(path), "/%s", dirname);
    if (nfs_rmdir(c->nfs, path))
        fail("nfs_rmdir %s: %s", path, nfs_get_error(c->nfs));
    conn_close(c);
    printf("sizes: all checks passed\n");
    return 0;
}

static int cmd_write(const char *url, const char *relpath, uint64_t size, uint64_t seed)
{
    struct conn *c = conn_open(url, -1, -1);
    char path[1100];
    double t0 = now_s();

    snprintf(path, sizeof(path), "/%s", relpath);
    hl_write_file(c, path, size, seed);
    ok("write %s: %" PRIu64 " bytes, seed %" PRIu64 " (%.2f s)", path, size, seed, now_s() - t0);
    conn_close(c);
    return 0;
}

static int cmd_verify(const char *url, const char *relpath, uint64_t size, uint64_t seed)
{
    struct conn *c = conn_open(url, -1, -1);
    char path[1100];

    snprintf(path, sizeof(path), "/%s", relpath);
    hl_verify_file(c, path, size, seed, false);
    conn_close(c);
    return 0;
}

static int cmd_mkdir(const char *url, const char *relpath)
{
    struct conn *c = conn_open(url, -1, -1);
    const char *leaf;
    struct fh dir;
    char what[1100];

    resolve_parent(c, relpath, &dir, &leaf);
    snprintf(what, sizeof(what), "MKDIR %s", relpath);
    expect(op_mkdir(c, &dir, leaf, 0755, NULL), NFS3_OK, what);
    conn_close(c);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* bigdir: many entries, listed in many pages */

static void bigdir_name(char *buf, size_t cap, uint32_t i)
{
    snprintf(buf, cap, "bd-%08" PRIu32, i);
}

/* CREATE (or REMOVE) entries 0..n-1 with NC_WINDOW calls in flight. */
static void bigdir_many(struct conn *c, const struct fh *dir, uint32_t n, bool create)
{
    static struct call k[NC_WINDOW];
    static struct newobj objs[NC_WINDOW];
    char nm[32];

    for (uint32_t i = 0; i < n + NC_WINDOW; i++) {
        struct call *s = &k[i % NC_WINDOW];
        int rc;

        if (i >= NC_WINDOW) {
            rpc_wait(c->rpc, &s->done, create ? "bulk CREATE" : "bulk REMOVE");
            if (s->rpc_status != RPC_STATUS_SUCCESS)
                fail("%s #%u: RPC failed: %s", create ? "CREATE" : "REMOVE", i - NC_WINDOW, s->err);
            if (s->st != NFS3_OK)
                fail("%s #%u: %s", create ? "CREATE" : "REMOVE", i - NC_WINDOW, stname(s->st));
        }
        if (i >= n)
            continue;
        bigdir_name(nm, sizeof(nm), i);
        memset(s, 0, sizeof(*s));
        if (create) {
            CREATE3args a = {.where = {.dir = fh3(dir), .name = nm}};

            s->proc = P_CREATE;
            s->obj = &objs[i % NC_WINDOW];
            a.how.mode = GUARDED;
            a.how.createhow3_u.g_obj_attributes = sattr_mode(0644);
            rc = rpc_nfs3_create_async(c->rpc, on_reply, &a, s);
        } else {
            REMOVE3args a = {.object = {.dir = fh3(dir), .name = nm}};

            s->proc = P_REMOVE;
            rc = rpc_nfs3_remove_async(c->rpc, on_reply, &a, s);
        }
        if (rc)
            fail("cannot queue bulk call: %s", rpc_get_error(c->rpc));
    }
}

/* Every bd-N for N < n exactly once; "." and ".." allowed; anything else is an error. */
static void bigdir_check(const struct page *pg, uint32_t n, const char *what)
{
    unsigned char *seen = calloc(n ? n : 1, 1);

    if (!seen)
        fail("out of memory");
    for (size_t i = 0; i < pg->n; i++) {
        const char *nm = pg->v[i].nm;
        char *end;
        unsigned long v;

        if (is_dot(nm))
            continue;
        if (strncmp(nm, "bd-", 3))
            fail("%s: unexpected name \"%s\"", what, nm);
        v = strtoul(nm + 3, &end, 10);
        if (*end || v >= n)
            fail("%s: unexpected name \"%s\"", what, nm);
        if (seen[v]++)
            fail("%s: \"%s\" listed twice", what, nm);
    }
    for (uint32_t i = 0; i < n; i++)
        if (!seen[i])
            fail("%s: bd-%08u missing", what, i);
    free(seen);
}

static int cmd_bigdir(const char *url, const char *dirname, uint32_t n)
{
    struct conn *c = conn_open(url, -1, -1);
    struct page pg;
    struct fh dir;
    char path[600];
    double t0, t, start = now_s();
    size_t pages;

    if (strchr(dirname, '/'))
        fail("bigdir: DIR must be one name under the export root");
    dir = mkdir_ok(c, &c->root, dirname, 0755);

    t0 = now_s();
    bigdir_many(c, &dir, n, true);
    t = now_s() - t0;
    ok("CREATE %u files: %.2f s (%.0f/s)", n, t, n / (t > 0 ? t : 1e-9));

    t0 = now_s();
    {
        struct nfsdir *nd;
        struct nfsdirent *de;

        snprintf(path, sizeof(path), "/%s", dirname);
        memset(&pg, 0, sizeof(pg));
        if (nfs_opendir(c->nfs, path, &nd))
            fail("nfs_opendir %s: %s", path, nfs_get_error(c->nfs));
        while ((de = nfs_readdir(c->nfs, nd)))
            page_push(&pg, de->name, de->inode, 0, NULL, NULL);
        nfs_closedir(c->nfs, nd);
    }
    bigdir_check(&pg, n, "nfs_opendir (READDIRPLUS)");
    ok("nfs_opendir (READDIRPLUS): %u names exactly once, %.2f s", n, now_s() - t0);
    page_free(&pg);

    t0 = now_s();
    pages = list_plain(c, &dir, 1024, &pg);
    bigdir_check(&pg, n, "READDIR");
    ok("READDIR count=1024: %u names exactly once in %zu pages, %.2f s", n, pages, now_s() - t0);
    page_free(&pg);

    t0 = now_s();
    pages = list_plus(c, &dir, 512, 4096, &pg);
    bigdir_check(&pg, n, "READDIRPLUS");
    ok("READDIRPLUS dircount=512 maxcount=4096: %u names exactly once in %zu pages, %.2f s", n,
       pages, now_s() - t0);
    page_free(&pg);

    t0 = now_s();
    bigdir_many(c, &dir, n, false);
    t = now_s() - t0;
    ok("REMOVE %u files: %.2f s (%.0f/s)", n, t, n / (t > 0 ? t : 1e-9));
    pages = list_plain(c, &dir, 4096, &pg);
    bigdir_check(&pg, 0, "READDIR after removal");
    page_free(&pg);
    expect(op_rmdir(c, &c->root, dirname, NULL), NFS3_OK, "RMDIR DIR");
    conn_close(c);
    printf("bigdir: all checks passed (%.2f s in all)\n", now_s() - start);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* disjoint: two C-nodes write two halves of one file */

struct half {
    struct conn *c;
    const char *path;
    uint64_t off, len, seed;
    int which;
};

#define NC_WRITE_WINDOW 4

/* UNSTABLE writes of [off, off+len) with a few in flight, then COMMIT; every verifier the
 * server gave for this data must equal the COMMIT's (else it lost unstable data). */
static void *half_writer(void *arg)
{
    struct half *h = arg;
    struct conn *c = h->c;
    struct call k[NC_WRITE_WINDOW];
    struct wres w[NC_WRITE_WINDOW], cw;
    unsigned char *buf[NC_WRITE_WINDOW];
    char verf[NFS3_WRITEVERFSIZE];
    bool have_verf = false;
    struct fh f;
    uint64_t nchunks = (h->len + c->wtmax - 1) / c->wtmax;
    int st;

    st = resolve(c, h->path, &f);
    if (st != NFS3_OK)
        fail("writer %d: LOOKUP %s: %s", h->which, h->path, stname(st));
    for (int i = 0; i < NC_WRITE_WINDOW; i++)
        buf[i] = xmalloc(c->wtmax);
    for (uint64_t i = 0; i < nchunks + NC_WRITE_WINDOW; i++) {
        int s = (int)(i % NC_WRITE_WINDOW);

        if (i >= NC_WRITE_WINDOW) {
            uint64_t j = i - NC_WRITE_WINDOW;
            uint64_t want = j + 1 < nchunks ? c->wtmax : h->len - j * c->wtmax;

            rpc_wait(c->rpc, &k[s].done, "WRITE");
            if (k[s].rpc_status != RPC_STATUS_SUCCESS)
                fail("writer %d: WRITE chunk %" PRIu64 ": RPC failed: %s", h->which, j, k[s].err);
            if (k[s].st != NFS3_OK)
                fail("writer %d: WRITE chunk %" PRIu64 ": %s", h->which, j, stname(k[s].st));
            if (w[s].count != want)
                fail("writer %d: WRITE chunk %" PRIu64 ": short write %u of %" PRIu64, h->which, j,
                     w[s].count, want);
            if (!have_verf) {
                memcpy(verf, w[s].verf, sizeof(verf));
                have_verf = true;
            } else if (memcmp(verf, w[s].verf, sizeof(verf))) {
                fail("writer %d: write verifier changed during the run", h->which);
            }
        }
        if (i < nchunks) {
            uint64_t off = h->off + i * c->wtmax;
            uint32_t n = (uint32_t)(i + 1 < nchunks ? c->wtmax : h->len - i * c->wtmax);
            WRITE3args a = {.file = fh3(&f), .offset = off, .count = n, .stable = UNSTABLE};

            gen_fill(h->seed, off, buf[s], n);
            a.data.data_len = n;
            a.data.data_val = (char *)buf[s];
            memset(&k[s], 0, sizeof(k[s]));
            k[s].proc = P_WRITE;
            k[s].w = &w[s];
            if (rpc_nfs3_write_async(c->rpc, on_reply, &a, &k[s]))
                fail("writer %d: cannot queue WRITE: %s", h->which, rpc_get_error(c->rpc));
        }
    }
    st = op_commit(c, &f, h->off, (uint32_t)(h->len > UINT32_MAX ? 0 : h->len), &cw);
    if (st != NFS3_OK)
        fail("writer %d: COMMIT: %s", h->which, stname(st));
    if (have_verf && memcmp(verf, cw.verf, sizeof(verf)))
        fail("writer %d: COMMIT verifier differs from the WRITEs' (unstable data lost)", h->which);
    for (int i = 0; i < NC_WRITE_WINDOW; i++)
        free(buf[i]);
    ok("writer %d (%s): %" PRIu64 " bytes at %" PRIu64 " written UNSTABLE and committed", h->which,
       c->url.libnfs, h->len, h->off);
    return NULL;
}

static void raw_verify(struct conn *c, const char *path, uint64_t size, uint64_t seed)
{
    unsigned char *buf = xmalloc(c->rtmax);
    struct fh f;
    fattr3 a;
    int st = resolve(c, path, &f);

    if (st != NFS3_OK)
        fail("LOOKUP %s via %s: %s", path, c->url.libnfs, stname(st));
    a = getattr_ok(c, &f, path);
    if (a.size != size)
        fail("%s via %s: size %" PRIu64 ", want %" PRIu64, path, c->url.libnfs, a.size, size);
    for (uint64_t off = 0; off < size; off += c->rtmax) {
        uint32_t n = (uint32_t)(size - off < c->rtmax ? size - off : c->rtmax);
        int64_t bad;

        read_all(c, &f, off, buf, n);
        bad = gen_mismatch(seed, off, buf, n);
        if (bad >= 0)
            fail("%s via %s: byte %" PRId64 " differs", path, c->url.libnfs, bad);
    }
    free(buf);
    ok("%s via %s: %" PRIu64 " bytes, content correct", path, c->url.libnfs, size);
}

static int cmd_disjoint(const char *url1, const char *url2, const char *path, uint64_t mb)
{
    struct conn *c1 = conn_open(url1, -1, -1);
    struct conn *c2 = conn_open(url2, -1, -1);
    uint64_t size = mb << 20, seed = 0x5eed0000u ^ mb;
    struct half h1, h2;
    pthread_t t1, t2;
    struct fh dir;
    const char *leaf;
    sattr3 s = sattr_mode(0644);
    double t0;

    conn_fsinfo(c1);
    conn_fsinfo(c2);
    resolve_parent(c1, path, &dir, &leaf);
    s.size.set_it = 1; /* an existing file from an earlier run starts empty again */
    need_ok(op_create(c1, &dir, leaf, UNCHECKED, &s, NULL, NULL), "CREATE PATH");

    h1 = (struct half){
        .c = c1, .path = path, .off = 0, .len = (mb / 2) << 20, .seed = seed, .which = 1};
    h2 = (struct half){
        .c = c2, .path = path, .off = h1.len, .len = size - h1.len, .seed = seed, .which = 2};
    t0 = now_s();
    if (pthread_create(&t1, NULL, half_writer, &h1) || pthread_create(&t2, NULL, half_writer, &h2))
        fail("pthread_create failed");
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    ok("both halves written in %.2f s (content seed %" PRIu64 ", for a later 'verify')",
       now_s() - t0, seed);
    raw_verify(c1, path, size, seed);
    raw_verify(c2, path, size, seed);
    conn_close(c2);
    conn_close(c1);
    printf("disjoint: all checks passed\n");
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* order: a buffered write never lands over a write committed after it arrived */

/* Write [off, off + len) of PATH's handle with content from seed, in wtmax pieces; the last
 * reply's verifier in *verf. */
static void write_range(struct conn *c, const struct fh *f, uint64_t off, uint64_t len,
                        uint64_t seed, int stable, char verf[NFS3_WRITEVERFSIZE])
{
    unsigned char *buf = xmalloc(c->wtmax);

    for (uint64_t done = 0; done < len;) {
        uint32_t n = (uint32_t)(len - done < c->wtmax ? len - done : c->wtmax);
        struct wres w;

        gen_fill(seed, off + done, buf, n);
        need_ok(op_write(c, f, off + done, buf, n, stable, &w), "WRITE");
        if (w.count != n)
            fail("WRITE: short write %u of %u", w.count, n);
        memcpy(verf, w.verf, NFS3_WRITEVERFSIZE);
        done += n;
    }
    free(buf);
}

static void verify_range(struct conn *c, const struct fh *f, uint64_t off, uint64_t len,
                         uint64_t seed, const char *what)
{
    unsigned char *buf = xmalloc(c->rtmax);

    for (uint64_t done = 0; done < len;) {
        uint32_t n = (uint32_t)(len - done < c->rtmax ? len - done : c->rtmax);
        int64_t bad;

        read_all(c, f, off + done, buf, n);
        bad = gen_mismatch(seed, off + done, buf, n);
        if (bad >= 0)
            fail("%s via %s: byte %" PRId64 " is not from seed %" PRIu64, what, c->url.libnfs,
                 (int64_t)(off + done) + bad, seed);
        done += n;
    }
    free(buf);
    ok("%s via %s: %" PRIu64 " bytes from seed %" PRIu64, what, c->url.libnfs, len, seed);
}

/* UNSTABLE writes buffered on A, then newer bytes committed through B: A's COMMIT must not
 * lay the older bytes over the newer ones (it drops them and answers with a new verifier, so
 * a client sends again what it still holds), while A's buffered bytes that nothing newer
 * overlaps land as usual. */
static int cmd_order(const char *url_a, const char *url_b, const char *path, uint64_t size)
{
    struct conn *a = conn_open(url_a, -1, -1), *b = conn_open(url_b, -1, -1);
    char va[NFS3_WRITEVERFSIZE], vb[NFS3_WRITEVERFSIZE];
    struct fh dir, fa, fb;
    const char *leaf;
    sattr3 s = sattr_mode(0644);
    struct wres cw;

    conn_fsinfo(a);
    conn_fsinfo(b);
    resolve_parent(a, path, &dir, &leaf);
    s.size.set_it = 1;
    need_ok(op_create(a, &dir, leaf, UNCHECKED, &s, NULL, NULL), "CREATE PATH");
    need_ok(resolve(a, path, &fa), "LOOKUP PATH via A");
    need_ok(resolve(b, path, &fb), "LOOKUP PATH via B");

    /* 1. Overlapping: old bytes buffered on A, newer ones committed through B. */
    write_range(a, &fa, 0, size, 1, UNSTABLE, va);
    write_range(b, &fb, 0, size, 2, FILE_SYNC, vb);
    need_ok(op_commit(a, &fa, 0, 0, &cw), "COMMIT via A");
    if (!memcmp(cw.verf, va, sizeof(va)))
        fail("COMMIT via A kept its verifier although its buffered writes were older than "
             "bytes committed over them");
    ok("COMMIT via A answered a new verifier: the client is to send its writes again");
    verify_range(a, &fa, 0, size, 2, "overlapping: the newer bytes");
    verify_range(b, &fb, 0, size, 2, "overlapping: the newer bytes");

    /* 2. Disjoint: A's buffered bytes beyond B's land, and the verifier stays. */
    write_range(a, &fa, size, size, 3, UNSTABLE, va);
    write_range(b, &fb, 0, size, 4, FILE_SYNC, vb);
    need_ok(op_commit(a, &fa, 0, 0, &cw), "COMMIT via A");
    if (memcmp(cw.verf, va, sizeof(va)))
        fail("COMMIT via A changed its verifier although nothing newer overlapped its writes");
    ok("COMMIT via A kept its verifier: its buffered bytes landed");
    verify_range(b, &fb, 0, size, 4, "disjoint: B's bytes");
    verify_range(b, &fb, size, size, 3, "disjoint: A's bytes");
    conn_close(b);
    conn_close(a);
    printf("order: all checks passed\n");
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* rofs, denied, squash: export options */

static int cmd_rofs(const char *url, const char *file)
{
    struct conn *c = conn_open(url, -1, -1);
    unsigned char buf[4096];
    struct page pg;
    struct fh f;
    fattr3 ra, fa;
    uint32_t got;
    const char *fname = file;
    bool have_file = false;
    sattr3 s;
    int st;

    ra = getattr_ok(c, &c->root, "root");
    ok("GETATTR root on a read-only export");
    expect(op_access(c, &c->root, ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE,
                     &got),
           NFS3_OK, "ACCESS root");
    if (rfc_mode)
        ok("ACCESS root: granted 0x%02x", got);
    else
        check(!(got & (ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE)) && (got & ACCESS3_LOOKUP),
              "ACCESS root: granted 0x%02x (LOOKUP, no MODIFY|EXTEND|DELETE)", got);
    list_plus(c, &c->root, 4096, 32768, &pg);
    ok("READDIRPLUS root: %zu entries", pg.n);
    for (size_t i = 0; i < pg.n && !fname; i++)
        if (pg.v[i].attr.attributes_follow && pg.v[i].attr.post_op_attr_u.attributes.type == NF3REG)
            fname = pg.v[i].nm;
    if (fname) {
        struct newobj o;

        st = op_lookup(c, &c->root, fname, &o);
        expect(st, NFS3_OK, "LOOKUP a file");
        f = o.fh;
        fa = getattr_ok(c, &f, fname);
        st = op_read(c, &f, 0, sizeof(buf), buf, &got, NULL);
        check(st == NFS3_OK && got == (fa.size < sizeof(buf) ? fa.size : sizeof(buf)),
              "READ %s: %s, %u bytes", fname, stname(st), got);
        have_file = true;
    } else {
        printf("skip LOOKUP/READ of a file: the export root has no regular file\n");
        expect(op_lookup(c, &c->root, ".", NULL), NFS3_OK, "LOOKUP .");
    }

    expect(op_create(c, &c->root, "nfscheck-rofs", UNCHECKED, NULL, NULL, NULL), NFS3ERR_ROFS,
           "CREATE");
    expect(op_mkdir(c, &c->root, "nfscheck-rofs", 0755, NULL), NFS3ERR_ROFS, "MKDIR");
    expect(op_symlink(c, &c->root, "nfscheck-rofs", "x", NULL), NFS3ERR_ROFS, "SYMLINK");
    expect(op_mknod(c, &c->root, "nfscheck-rofs", NF3FIFO, NULL), NFS3ERR_ROFS, "MKNOD FIFO");
    s = sattr_mode(ra.mode & 07777);
    expect(op_setattr(c, &c->root, &s, NULL, NULL), NFS3ERR_ROFS, "SETATTR root (same mode)");
    if (have_file) {
        expect(op_write(c, &f, 0, buf, 1, FILE_SYNC, NULL), NFS3ERR_ROFS, "WRITE");
        memset(&s, 0, sizeof(s));
        s.size.set_it = 1;
        expect(op_setattr(c, &f, &s, NULL, NULL), NFS3ERR_ROFS, "SETATTR size 0");
        expect(op_remove(c, &c->root, fname, NULL), NFS3ERR_ROFS, "REMOVE");
        expect(op_rename(c, &c->root, fname, &c->root, "nfscheck-rofs", NULL, NULL), NFS3ERR_ROFS,
               "RENAME");
        expect(op_link(c, &f, &c->root, "nfscheck-rofs", NULL, NULL), NFS3ERR_ROFS, "LINK");
        check(getattr_ok(c, &f, fname).size == fa.size, "file unchanged");
    } else {
        expect_any(op_remove(c, &c->root, "nfscheck-rofs", NULL), "REMOVE missing", NFS3ERR_ROFS,
                   NFS3ERR_NOENT, -1);
    }
    expect_any(op_rmdir(c, &c->root, "nfscheck-rofs", NULL), "RMDIR missing", NFS3ERR_ROFS,
               NFS3ERR_NOENT, -1);
    page_free(&pg);
    conn_close(c);
    printf("rofs: all checks passed\n");
    return 0;
}

static int cmd_denied(const char *urlstr)
{
    struct url u;
    struct rpc_context *mrpc;
    struct fh root;
    struct nfs_context *nfs;
    struct nfs_url *nu;
    char err[2048];
    int st, rc;

    if (!url_parse(urlstr, &u))
        fail("bad URL %s", urlstr);
    st = mount_raw(&u, u.uid >= 0 ? u.uid : (int)getuid(), u.gid >= 0 ? u.gid : (int)getgid(),
                   &mrpc, &root, err, sizeof(err));
    if (st == MNT3_OK) {
        rpc_destroy_context(mrpc);
        fail("MOUNT MNT %s succeeded on an export that should refuse us", u.exp);
    }
    if (st == -1) /* indistinguishable from a server that is not running: not a refusal */
        fail("%s", err);
    if (st == -2)
        ok("MOUNT MNT refused at the RPC level: %s", err);
    else
        ok("MOUNT MNT %s refused: %s", u.exp, mntname(st));
    if (mrpc)
        rpc_destroy_context(mrpc);

    nfs = nfs_init_context();
    if (!nfs)
        fail("nfs_init_context failed");
    nu = nfs_parse_url_dir(nfs, u.libnfs);
    if (!nu)
        fail("libnfs rejects URL %s: %s", u.libnfs, nfs_get_error(nfs));
    rc = nfs_mount(nfs, nu->server, nu->path);
    check(rc != 0, "nfs_mount refused too: %d (%s)", rc, rc ? nfs_get_error(nfs) : "mounted!");
    nfs_destroy_url(nu);
    nfs_destroy_context(nfs);
    return 0;
}

static int cmd_squash(const char *url, const char *dirname)
{
    struct conn *root = conn_open(url, 0, 0);
    struct conn *u1 = conn_open(url, 1000, 1000);
    struct conn *u2 = conn_open(url, 2000, 2000);
    unsigned char data[100], back[100];
    sattr3 s = sattr_mode(0777);
    struct fh d, rf, pf;
    fattr3 a;
    uint32_t got;

    if (strchr(dirname, '/'))
        fail("squash: DIR must be one name under the export root");
    conn_fsinfo(u1);
    d = mkdir_ok(root, &root->root, dirname, 0777);
    need_ok(op_setattr(root, &d, &s, NULL, NULL), "SETATTR DIR 0777");
    a = getattr_ok(root, &d, "DIR");
    check(a.uid == 65534, "MKDIR as uid 0: owner uid %u gid %u (want uid 65534, root squashed)",
          a.uid, a.gid);
    rf = create_ok(root, &d, "rootfile", 0644);
    a = getattr_ok(root, &rf, "rootfile");
    check(a.uid == 65534, "CREATE as uid 0: owner uid %u gid %u (want uid 65534)", a.uid, a.gid);

    pf = create_ok(u1, &d, "private", 0600);
    a = getattr_ok(u1, &pf, "private");
    check(a.uid == 1000 && a.gid == 1000 && (a.mode & 07777) == 0600,
          "CREATE as uid 1000: owner %u:%u mode %04o", a.uid, a.gid, a.mode & 07777);
    gen_fill(9, 0, data, sizeof(data));
    write_all(u1, &pf, 0, data, sizeof(data), FILE_SYNC);
    read_all(u1, &pf, 0, back, sizeof(back));
    check(!memcmp(data, back, sizeof(data)), "uid 1000 reads its own 0600 file");

    pf = lookup_ok(u2, &d, "private");
    expect(op_read(u2, &pf, 0, sizeof(back), back, NULL, NULL), NFS3ERR_ACCES,
           "READ of uid 1000's 0600 file as uid 2000");
    expect(op_write(u2, &pf, 0, data, 1, FILE_SYNC, NULL), NFS3ERR_ACCES,
           "WRITE of uid 1000's 0600 file as uid 2000");
    s = sattr_mode(0666);
    expect(op_setattr(u2, &pf, &s, NULL, NULL), NFS3ERR_PERM, "SETATTR mode as uid 2000");
    expect(op_access(u2, &pf, ACCESS3_READ | ACCESS3_MODIFY, &got), NFS3_OK, "ACCESS as uid 2000");
    check(!(got & (ACCESS3_READ | ACCESS3_MODIFY)), "ACCESS as uid 2000: granted 0x%02x (none)",
          got);
    expect(op_read(root, &rf, 0, 1, back, NULL, NULL), NFS3_OK,
           "READ as squashed root of its own file");
    pf = lookup_ok(root, &d, "private");
    expect(op_read(root, &pf, 0, 1, back, NULL, NULL), NFS3ERR_ACCES,
           "READ of uid 1000's 0600 file as squashed root");

    need_ok(op_remove(u1, &d, "private", NULL), "REMOVE private as uid 1000");
    need_ok(op_remove(root, &d, "rootfile", NULL), "REMOVE rootfile");
    need_ok(op_rmdir(root, &root->root, dirname, NULL), "RMDIR DIR");
    conn_close(u2);
    conn_close(u1);
    conn_close(root);
    printf("squash: all checks passed\n");
    return 0;
}

/* ---------------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: nfscheck [--rfc] COMMAND ARGS\n"
            "  procs    URL DIR                   every NFSv3 procedure and its errors\n"
            "  sizes    URL DIR [SEED]            files of 0..64 MiB, written and re-read\n"
            "  write    URL PATH SIZE SEED        write generated content\n"
            "  verify   URL PATH SIZE SEED        check size and content written by 'write'\n"
            "  mkdir    URL PATH                  create a directory\n"
            "  bigdir   URL DIR N                 N entries, paged listings\n"
            "  disjoint URL1 URL2 PATH SIZE_MB    two writers, one half each, cross-verified\n"
            "  order URL_A URL_B PATH SIZE        buffered writes never land over newer ones\n"
            "  rofs     URL [FILE]                read-only export\n"
            "  denied   URL                       export that must refuse the mount\n"
            "  squash   URL DIR                   root squash and permission checks\n"
            "URL: nfs://HOST/EXPORT?version=3&port=NFSPORT&mountport=MOUNTPORT\n"
            "--rfc: accept any RFC 1813 answer where Cairn promises a specific one\n");
    exit(2);
}

static uint64_t arg_size(const char *s)
{
    uint64_t v;

    if (!parse_size(s, &v)) {
        fprintf(stderr, "nfscheck: bad number %s\n", s);
        usage();
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *cmd;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "--rfc")) {
        rfc_mode = true;
        argv++;
        argc--;
    }
    if (argc < 3)
        usage();
    cmd = argv[1];
    argv += 2;
    argc -= 2;
    if (!strcmp(cmd, "procs") && argc == 2)
        return cmd_procs(argv[0], argv[1]);
    if (!strcmp(cmd, "sizes") && (argc == 2 || argc == 3))
        return cmd_sizes(argv[0], argv[1], argc == 3 ? arg_size(argv[2]) : 1);
    if (!strcmp(cmd, "write") && argc == 4)
        return cmd_write(argv[0], argv[1], arg_size(argv[2]), arg_size(argv[3]));
    if (!strcmp(cmd, "verify") && argc == 4)
        return cmd_verify(argv[0], argv[1], arg_size(argv[2]), arg_size(argv[3]));
    if (!strcmp(cmd, "mkdir") && argc == 2)
        return cmd_mkdir(argv[0], argv[1]);
    if (!strcmp(cmd, "bigdir") && argc == 3) {
        uint64_t n = arg_size(argv[2]);

        if (n > 100000000)
            usage();
        return cmd_bigdir(argv[0], argv[1], (uint32_t)n);
    }
    if (!strcmp(cmd, "disjoint") && argc == 4) {
        uint64_t mb = arg_size(argv[3]);

        if (mb < 2 || mb > (1u << 20))
            usage();
        return cmd_disjoint(argv[0], argv[1], argv[2], mb);
    }
    if (!strcmp(cmd, "order") && argc == 4)
        return cmd_order(argv[0], argv[1], argv[2], arg_size(argv[3]));
    if (!strcmp(cmd, "rofs") && (argc == 1 || argc == 2))
        return cmd_rofs(argv[0], argc == 2 ? argv[1] : NULL);
    if (!strcmp(cmd, "denied") && argc == 1)
        return cmd_denied(argv[0]);
    if (!strcmp(cmd, "squash") && argc == 2)
        return cmd_squash(argv[0], argv[1]);
    usage();
}
