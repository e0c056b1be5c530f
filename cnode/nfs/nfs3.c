/*
 * nfs3.c - the NFSv3 and MOUNT v3 programs (see nfs3.h).
 *
 * A call runs on one rpcsrv worker from decode to reply.  Mutations follow the order the S3
 * head uses, so that a C-node killed at any point leaves garbage at worst, never a broken
 * tree: a new inode record is written before the directory entry that names it, an entry is
 * removed before its inode, a rename links the new name before it unlinks the old one (a
 * crash in between leaves both names, never neither), and every record update is a
 * compare-and-set on its version, retried on conflict.
 *
 * Directory entries of subdirectories are keyed "name/" (meta/ns.h); NFS names never carry
 * the '/', so each NFS name is looked up in both forms.
 */
#include "cnode/nfs/nfs3.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "cnode/nfs/exports.h"
#include "cnode/fs/file.h"
#include "cnode/rpc/rpc.h"
#include "cnode/rpc/xdr.h"
#include "common/cairn.h"
#include "common/log.h"
#include "meta/ns.h"

#define TAG "nfs"

#define NFS_PROGRAM 100003u
#define NFS_V3 3u
#define MOUNT_PROGRAM 100005u
#define MOUNT_V3 3u

#define FH_LEN 32u
#define FH_VERSION 1u
#define FH_MAC_LEN 16u
#define FSID 0xCA1A0001ull
#define REPLY_MAX (NFS_MAX_IO + (64u << 10))
#define COOKIE_SLOTS 4096u
#define READDIR_MAX_COUNT (1u << 20)
#define NFS_STRIPE_CACHE 32u /* stripes (4 MiB each at 4+2, 1 MiB fragments) */
#define ATTR_BYTES 84u /* an encoded fattr3 */

enum nfsstat3 {
    NFS3_OK = 0,
    NFS3ERR_PERM = 1,
    NFS3ERR_NOENT = 2,
    NFS3ERR_IO = 5,
    NFS3ERR_NXIO = 6,
    NFS3ERR_ACCES = 13,
    NFS3ERR_EXIST = 17,
    NFS3ERR_XDEV = 18,
    NFS3ERR_NODEV = 19,
    NFS3ERR_NOTDIR = 20,
    NFS3ERR_ISDIR = 21,
    NFS3ERR_INVAL = 22,
    NFS3ERR_FBIG = 27,
    NFS3ERR_NOSPC = 28,
    NFS3ERR_ROFS = 30,
    NFS3ERR_MLINK = 31,
    NFS3ERR_NAMETOOLONG = 63,
    NFS3ERR_NOTEMPTY = 66,
    NFS3ERR_DQUOT = 69,
    NFS3ERR_STALE = 70,
    NFS3ERR_REMOTE = 71,
    NFS3ERR_BADHANDLE = 10001,
    NFS3ERR_NOT_SYNC = 10002,
    NFS3ERR_BAD_COOKIE = 10003,
    NFS3ERR_NOTSUPP = 10004,
    NFS3ERR_TOOSMALL = 10005,
    NFS3ERR_SERVERFAULT = 10006,
    NFS3ERR_BADTYPE = 10007,
    NFS3ERR_JUKEBOX = 10008,
};

enum { NF3REG = 1, NF3DIR = 2, NF3BLK = 3, NF3CHR = 4, NF3LNK = 5, NF3SOCK = 6, NF3FIFO = 7 };
enum { UNSTABLE = 0, DATA_SYNC = 1, FILE_SYNC = 2 };
enum { CREATE_UNCHECKED = 0, CREATE_GUARDED = 1, CREATE_EXCLUSIVE = 2 };
enum { DONT_CHANGE = 0, SET_TO_SERVER_TIME = 1, SET_TO_CLIENT_TIME = 2 };
#define ACCESS3_READ 0x01u
#define ACCESS3_LOOKUP 0x02u
#define ACCESS3_MODIFY 0x04u
#define ACCESS3_EXTEND 0x08u
#define ACCESS3_DELETE 0x10u
#define ACCESS3_EXECUTE 0x20u
#define MAY_R 4u
#define MAY_W 2u
#define MAY_X 1u

/* ---- the write buffer: UNSTABLE writes held until COMMIT ---- */

/* A contiguous run of buffered bytes of one file. */
struct wrun {
    struct wrun *next; /* offset order, runs neither overlap nor touch */
    uint64_t off;
    size_t len, cap;
    uint8_t *data; /* owned */
};

struct wfile {
    struct wfile *next; /* hash chain */
    uint64_t ino;
    unsigned refs;        /* under the table lock */
    pthread_mutex_t lock; /* runs, bytes; held across a flush */
    struct wrun *runs;
    size_t bytes;
};

#define WB_BUCKETS 1024u

struct wtable {
    pthread_mutex_t lock;
    struct wfile *b[WB_BUCKETS];
    size_t total; /* bytes buffered in all files (under lock) */
};

/* ---- READDIR cookies ---- */

struct cookie_slot {
    uint64_t dir, cookie;
    uint32_t len;
    char name[META_NAME_MAX + 2]; /* the entry's sort name ("d/" for directories) */
};

struct nfs_app {
    struct nfs_config cfg;
    struct nfs_exports exports;
    uint8_t fh_key[META_SECRET_LEN];
    uint8_t verf[8]; /* write verifier: new at every start */
    struct wtable wb;
    pthread_mutex_t cookie_lock;
    struct cookie_slot *cookies; /* owned, COOKIE_SLOTS */
    struct cn_scache *scache;    /* owned: stripes recently read */
};

struct nfs_worker {
    struct cl_cluster *cl;
    struct cn_fileio fio;
};

/* One call. */
struct nq {
    struct nfs_app *app;
    struct nfs_worker *w;
    struct cl_cluster *cl;
    struct rpcsrv_call *call;
    struct rpc_call c;
    struct xdr_dec d;
    struct xdr_enc e;
    /* set by the first handle of the call */
    const struct nfs_export *x;
    const struct nfs_rule *rule;
    /* credentials after squashing */
    uint32_t uid, gid, ngids;
    uint32_t gids[RPC_AUTH_SYS_MAX_GIDS];
    bool garbage;               /* the arguments did not decode: GARBAGE_ARGS */
    uint64_t dir_loaded;        /* the directory dir_for_change() read last, */
    Cairn__Inode *dir_in;       /* a copy of it (owned), */
    uint64_t dir_ver;           /* and its version */
    enum nfsstat3 redo_status;  /* READ failed after its reply was begun: answer this */
};

/* A decoded handle. */
struct fh {
    uint32_t export_id;
    uint64_t ino;
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- errors ---- */

static enum nfsstat3 nfserr(int rc)
{
    switch (rc) {
    case 0: return NFS3_OK;
    case CAIRN_ENOENT: return NFS3ERR_NOENT;
    case CAIRN_EEXIST: return NFS3ERR_EXIST;
    case CAIRN_ENOSPC: return NFS3ERR_NOSPC;
    case CAIRN_EINVAL: return NFS3ERR_INVAL;
    case CAIRN_ETOOBIG: return NFS3ERR_FBIG;
    case CAIRN_ENOTSUP: return NFS3ERR_NOTSUPP;
    case CAIRN_ECONFLICT:
    case CAIRN_ETIMEDOUT:
    case CAIRN_EUNREACH:
    case CAIRN_EAGAIN:
        return NFS3ERR_JUKEBOX; /* the client retries later */
    default: return NFS3ERR_IO;
    }
}

/* ---- file handles ---- */

static void fh_mac(const struct nfs_app *app, const uint8_t *body, uint8_t *mac)
{
    uint8_t full[EVP_MAX_MD_SIZE];
    unsigned n = 0;

    HMAC(EVP_sha256(), app->fh_key, sizeof(app->fh_key), body, FH_LEN - FH_MAC_LEN, full, &n);
    memcpy(mac, full, FH_MAC_LEN);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Layout: version, 3 zero bytes, export id, inode number (big-endian), 16-byte tag. */
static void fh_make(const struct nfs_app *app, uint32_t export_id, uint64_t ino,
                    uint8_t out[FH_LEN])
{
    memset(out, 0, FH_LEN);
    out[0] = FH_VERSION;
    put_be32(out + 4, export_id);
    put_be32(out + 8, (uint32_t)(ino >> 32));
    put_be32(out + 12, (uint32_t)ino);
    fh_mac(app, out, out + FH_LEN - FH_MAC_LEN);
}

static void put_fh(struct nq *q, uint64_t ino)
{
    uint8_t fh[FH_LEN];

    fh_make(q->app, q->x->id, ino, fh);
    xdr_put_var(&q->e, fh, FH_LEN);
}

/* Check a handle's form and tag (BADHANDLE) and its export (STALE if no longer exported). */
static enum nfsstat3 fh_check(struct nq *q, const uint8_t *b, uint32_t len, struct fh *out)
{
    uint8_t mac[FH_MAC_LEN];
    const struct nfs_export *x;

    if (len != FH_LEN || b[0] != FH_VERSION || b[1] || b[2] || b[3])
        return NFS3ERR_BADHANDLE;
    fh_mac(q->app, b, mac);
    if (CRYPTO_memcmp(mac, b + FH_LEN - FH_MAC_LEN, FH_MAC_LEN))
        return NFS3ERR_BADHANDLE;
    out->export_id = get_be32(b + 4);
    out->ino = (uint64_t)get_be32(b + 8) << 32 | get_be32(b + 12);
    x = nfs_export_by_id(&q->app->exports, out->export_id);
    if (!x)
        return NFS3ERR_STALE;
    if (q->x && q->x != x)
        return NFS3ERR_XDEV;
    return NFS3_OK;
}

/* Map the caller's credentials through the export rule. */
static void squash(struct nq *q)
{
    const struct rpc_cred *cr = &q->c.cred;
    const struct nfs_rule *r = q->rule;

    if (cr->flavor != RPC_AUTH_SYS || r->squash == NFS_SQUASH_ALL) {
        q->uid = r->anonuid;
        q->gid = r->anongid;
        q->ngids = 0;
        return;
    }
    q->uid = cr->uid;
    q->gid = cr->gid;
    q->ngids = cr->ngids;
    memcpy(q->gids, cr->gids, cr->ngids * sizeof(cr->gids[0]));
    if (r->squash == NFS_SQUASH_ROOT) {
        if (q->uid == 0)
            q->uid = r->anonuid;
        if (q->gid == 0)
            q->gid = r->anongid;
        for (uint32_t i = 0; i < q->ngids; i++)
            if (q->gids[i] == 0)
                q->gids[i] = r->anongid;
    }
}

/* Decode a handle argument; the first one of a call fixes the export and checks the client
 * against its rules (every call, so a rule change or a handle passed to another host is
 * enforced at once). */
static enum nfsstat3 get_fh(struct nq *q, struct fh *out)
{
    uint32_t len;
    const uint8_t *b = xdr_get_var(&q->d, 64, &len);
    enum nfsstat3 st;

    if (!b)
        return NFS3ERR_BADHANDLE;
    st = fh_check(q, b, len, out);
    if (st)
        return st;
    if (!q->x) {
        q->x = nfs_export_by_id(&q->app->exports, out->export_id);
        q->rule = nfs_export_match(q->x, rpcsrv_peer(q->call));
        if (!q->rule)
            return NFS3ERR_ACCES;
        squash(q);
    }
    return NFS3_OK;
}

static bool read_only(const struct nq *q)
{
    return q->rule && q->rule->ro;
}

/* ---- attributes ---- */

static uint32_t ftype3(const Cairn__Inode *in)
{
    switch (in->type) {
    case CAIRN__FILE_TYPE__FT_DIR: return NF3DIR;
    case CAIRN__FILE_TYPE__FT_SYMLINK: return NF3LNK;
    default: return NF3REG;
    }
}

static void put_time(struct xdr_enc *e, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    xdr_put_u32(e, (uint32_t)(ns / 1000000000));
    xdr_put_u32(e, (uint32_t)(ns % 1000000000));
}

static uint64_t wb_size(struct nfs_app *app, uint64_t ino, uint64_t size);

static uint64_t file_size(struct nq *q, uint64_t ino, const Cairn__Inode *in)
{
    if (in->type == CAIRN__FILE_TYPE__FT_SYMLINK)
        return strlen(in->symlink);
    if (in->type == CAIRN__FILE_TYPE__FT_DIR)
        return 4096;
    return wb_size(q->app, ino, in->size);
}

static void put_fattr(struct nq *q, uint64_t ino, const Cairn__Inode *in)
{
    uint64_t size = file_size(q, ino, in);
    int64_t mt = in->mtime_ns, ct = in->ctime_ns ? in->ctime_ns : in->mtime_ns;

    xdr_put_u32(&q->e, ftype3(in));
    xdr_put_u32(&q->e, in->mode & 07777);
    /* Directories say 2 links: subdirectories are not counted (that would make every mkdir
     * contend on its parent's record), and tools know not to trust NFS link counts of
     * directories (gnulib's fts turns its leaf optimisation off on NFS). */
    xdr_put_u32(&q->e, in->type == CAIRN__FILE_TYPE__FT_DIR ? 2 : (in->nlink ? in->nlink : 1));
    xdr_put_u32(&q->e, in->uid);
    xdr_put_u32(&q->e, in->gid);
    xdr_put_u64(&q->e, size);
    xdr_put_u64(&q->e, CAIRN_ALIGN_UP(size, 4096));
    xdr_put_u32(&q->e, 0); /* rdev */
    xdr_put_u32(&q->e, 0);
    xdr_put_u64(&q->e, FSID);
    xdr_put_u64(&q->e, ino);
    put_time(&q->e, in->atime_ns ? in->atime_ns : mt); /* reads do not move it (noatime) */
    put_time(&q->e, mt);
    put_time(&q->e, ct);
}

static void put_post_attr(struct nq *q, uint64_t ino, const Cairn__Inode *in)
{
    xdr_put_bool(&q->e, in != NULL);
    if (in)
        put_fattr(q, ino, in);
}

/* Attributes before a change (wcc_attr), captured from the inode as read. */
struct pre {
    bool valid;
    uint64_t size;
    int64_t mtime, ctime;
};

static void pre_of(struct nq *q, uint64_t ino, const Cairn__Inode *in, struct pre *p)
{
    p->valid = in != NULL;
    if (in) {
        p->size = file_size(q, ino, in);
        p->mtime = in->mtime_ns;
        p->ctime = in->ctime_ns ? in->ctime_ns : in->mtime_ns;
    }
}

static void put_wcc(struct nq *q, const struct pre *p, uint64_t ino, const Cairn__Inode *after)
{
    xdr_put_bool(&q->e, p && p->valid);
    if (p && p->valid) {
        xdr_put_u64(&q->e, p->size);
        put_time(&q->e, p->mtime);
        put_time(&q->e, p->ctime);
    }
    put_post_attr(q, ino, after);
}

/* ---- inodes and permissions ---- */

/* Load an inode named by a handle: a missing inode is STALE. */
static enum nfsstat3 load(struct nq *q, uint64_t ino, Cairn__Inode **in, uint64_t *ver)
{
    int rc = meta_inode_get(q->cl, ino, in, ver);

    if (rc == CAIRN_ENOENT)
        return NFS3ERR_STALE;
    return nfserr(rc);
}

static void inode_free(Cairn__Inode *in)
{
    if (in)
        cairn__inode__free_unpacked(in, NULL);
}

static bool in_group(const struct nq *q, uint32_t gid)
{
    if (q->gid == gid)
        return true;
    for (uint32_t i = 0; i < q->ngids; i++)
        if (q->gids[i] == gid)
            return true;
    return false;
}

/* Whether the caller may do want (MAY_* bits) to in, by its mode bits.  uid 0 (not squashed)
 * may read and write anything, and execute what anyone may execute. */
static bool may(const struct nq *q, const Cairn__Inode *in, unsigned want)
{
    unsigned bits;

    if (q->uid == 0) {
        if (!(want & MAY_X) || in->type == CAIRN__FILE_TYPE__FT_DIR)
            return true;
        return (in->mode & 0111) != 0;
    }
    if (in->uid == q->uid)
        bits = (in->mode >> 6) & 7;
    else if (in_group(q, in->gid))
        bits = (in->mode >> 3) & 7;
    else
        bits = in->mode & 7;
    return (bits & want) == want;
}

/* READ and WRITE: an owner may use a file it opened before making it read-only (the NFS
 * server cannot see the open, so it lets owners through, as local file systems do). */
static bool may_io(const struct nq *q, const Cairn__Inode *in, unsigned want)
{
    return in->uid == q->uid || may(q, in, want) ||
           (want == MAY_R && may(q, in, MAY_X)); /* a client reading an executable to run it */
}

static bool is_dir(const Cairn__Inode *in)
{
    return in->type == CAIRN__FILE_TYPE__FT_DIR;
}

/* A name argument: NAMETOOLONG beyond 255 bytes, INVAL with '/' or NUL, ACCES for "." and
 * ".." where an entry is to be made or removed. */
static enum nfsstat3 get_name(struct nq *q, const char **name, uint32_t *len)
{
    const uint8_t *b = xdr_get_var(&q->d, 4096, len);

    if (!b)
        return NFS3ERR_INVAL; /* becomes GARBAGE_ARGS if the decoder failed */
    *name = (const char *)b;
    if (*len > META_NAME_MAX)
        return NFS3ERR_NAMETOOLONG;
    if (*len == 0 || memchr(b, '/', *len) || memchr(b, 0, *len))
        return NFS3ERR_INVAL;
    return NFS3_OK;
}

static bool dot_name(const char *n, uint32_t l)
{
    return (l == 1 && n[0] == '.') || (l == 2 && n[0] == '.' && n[1] == '.');
}

/* Set a directory's mtime/ctime to now after its entries changed (so clients drop cached
 * listings); *after gets the new inode (may be NULL).
 *
 * Many clients creating in one directory all touch its one inode record, and a
 * compare-and-set retried until it wins makes that record the bottleneck.  A touch that
 * loses to another change of the mtime made after our entry change need not retry: that mtime
 * already tells clients the listing changed, and any listing read after it shows our entry.
 * "After our change" is known only from a read made after it, i.e. from the second attempt
 * on; the first attempt uses the inode read before the change. */
static void touch_dir(struct nq *q, uint64_t dir, Cairn__Inode **after)
{
    int64_t seen_mtime = 0;
    bool seen = false;

    if (after)
        *after = NULL;
    for (int attempt = 0; attempt < 16; attempt++) {
        Cairn__Inode *in = NULL;
        uint64_t ver = 0;
        int rc;

        /* The directory as dir_for_change() loaded it saves a read when nobody raced us. */
        if (attempt == 0 && q->dir_loaded == dir && q->dir_in) {
            in = q->dir_in;
            ver = q->dir_ver;
            q->dir_in = NULL;
            q->dir_loaded = 0;
        } else if ((rc = meta_inode_get(q->cl, dir, &in, &ver))) {
            return;
        } else if (seen && in->mtime_ns != seen_mtime) {
            if (after)
                *after = in;
            else
                inode_free(in);
            return; /* covered by a later touch */
        } else {
            seen = true;
            seen_mtime = in->mtime_ns;
        }
        in->mtime_ns = in->ctime_ns = now_ns();
        rc = meta_inode_put(q->cl, dir, in, ver, NULL);
        if (rc == 0 && after) {
            *after = in;
            return;
        }
        inode_free(in);
        if (rc != CAIRN_ECONFLICT)
            return;
    }
}

/* ---- the write buffer ---- */

static unsigned wb_bucket(uint64_t ino)
{
    return (unsigned)((ino * 0x9E3779B97F4A7C15ull) >> 54) % WB_BUCKETS;
}

/* The buffer of file ino, with a reference (create: make one if there is none). */
static struct wfile *wb_get(struct nfs_app *app, uint64_t ino, bool create)
{
    struct wtable *t = &app->wb;
    struct wfile *f;
    unsigned b = wb_bucket(ino);

    pthread_mutex_lock(&t->lock);
    for (f = t->b[b]; f && f->ino != ino; f = f->next)
        ;
    if (!f && create) {
        f = calloc(1, sizeof(*f));
        if (f) {
            f->ino = ino;
            pthread_mutex_init(&f->lock, NULL);
            f->next = t->b[b];
            t->b[b] = f;
        }
    }
    if (f)
        f->refs++;
    pthread_mutex_unlock(&t->lock);
    return f;
}

static void wb_put(struct nfs_app *app, struct wfile *f)
{
    struct wtable *t = &app->wb;

    pthread_mutex_lock(&t->lock);
    if (--f->refs == 0 && !f->runs) {
        struct wfile **pp = &t->b[wb_bucket(f->ino)];

        while (*pp != f)
            pp = &(*pp)->next;
        *pp = f->next;
        pthread_mutex_destroy(&f->lock);
        free(f);
    }
    pthread_mutex_unlock(&t->lock);
}

static void wb_account(struct nfs_app *app, ssize_t delta)
{
    pthread_mutex_lock(&app->wb.lock);
    app->wb.total = (size_t)((ssize_t)app->wb.total + delta);
    pthread_mutex_unlock(&app->wb.lock);
}

static size_t wb_total(struct nfs_app *app)
{
    size_t t;

    pthread_mutex_lock(&app->wb.lock);
    t = app->wb.total;
    pthread_mutex_unlock(&app->wb.lock);
    return t;
}

static void runs_free(struct wrun *r)
{
    while (r) {
        struct wrun *n = r->next;

        free(r->data);
        free(r);
        r = n;
    }
}

/* Buffer [off, off + len) (f locked).  The runs it overlaps or touches merge into one. */
static int wb_add(struct nfs_app *app, struct wfile *f, uint64_t off, const uint8_t *data,
                  size_t len)
{
    struct wrun **pp = &f->runs, *first, *r, *stop;
    uint64_t start = off, end = off + len;
    size_t before = f->bytes;

    while (*pp && (*pp)->off + (*pp)->len < off)
        pp = &(*pp)->next;
    first = *pp;
    /* Appending to the end of one run (sequential writes): grow it in place. */
    if (first && first->off + first->len == off && (!first->next || first->next->off > end)) {
        if (first->len + len > first->cap) {
            size_t cap = CAIRN_MAX(first->cap * 2, first->len + len);
            uint8_t *d = realloc(first->data, cap);

            if (!d)
                return CAIRN_ENOMEM;
            first->data = d;
            first->cap = cap;
        }
        memcpy(first->data + first->len, data, len);
        first->len += len;
        f->bytes += len;
        wb_account(app, (ssize_t)len);
        return 0;
    }
    for (stop = first; stop && stop->off <= end; stop = stop->next) {
        start = CAIRN_MIN(start, stop->off);
        end = CAIRN_MAX(end, stop->off + stop->len);
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        return CAIRN_ENOMEM;
    r->off = start;
    r->len = r->cap = (size_t)(end - start);
    r->data = malloc(r->cap);
    if (!r->data) {
        free(r);
        return CAIRN_ENOMEM;
    }
    for (struct wrun *o = first; o != stop;) {
        struct wrun *n = o->next;

        memcpy(r->data + (o->off - start), o->data, o->len);
        f->bytes -= o->len;
        free(o->data);
        free(o);
        o = n;
    }
    memcpy(r->data + (off - start), data, len);
    r->next = stop;
    *pp = r;
    f->bytes += r->len;
    wb_account(app, (ssize_t)f->bytes - (ssize_t)before);
    return 0;
}

/* The size a file shows with its buffered writes. */
static uint64_t wb_size(struct nfs_app *app, uint64_t ino, uint64_t size)
{
    struct wfile *f = wb_get(app, ino, false);

    if (!f)
        return size;
    pthread_mutex_lock(&f->lock);
    for (struct wrun *r = f->runs; r; r = r->next)
        size = CAIRN_MAX(size, r->off + r->len);
    pthread_mutex_unlock(&f->lock);
    wb_put(app, f);
    return size;
}

/* Drop a file's buffered writes (it was removed). */
static void wb_discard(struct nfs_app *app, uint64_t ino)
{
    struct wfile *f = wb_get(app, ino, false);

    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    runs_free(f->runs);
    f->runs = NULL;
    wb_account(app, -(ssize_t)f->bytes);
    f->bytes = 0;
    pthread_mutex_unlock(&f->lock);
    wb_put(app, f);
}

/* An ETag for bytes written over NFS: not an MD5 of the content (that would need the whole
 * file), so it has the multipart form ("-1" suffix), which S3 clients do not check as one. */
static void nfs_etag(uint64_t ino, int64_t mtime, uint64_t size, char out[40])
{
    uint8_t in[24], md[EVP_MAX_MD_SIZE];
    unsigned n = 0;

    memcpy(in, &ino, 8);
    memcpy(in + 8, &mtime, 8);
    memcpy(in + 16, &size, 8);
    EVP_Digest(in, sizeof(in), md, &n, EVP_md5(), NULL);
    for (unsigned i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    memcpy(out + 32, "-1", 3);
}

/* Keep the S3 listing fields of the file's directory entry in step (best effort: the entry
 * under the name the inode was created or renamed to). */
static void sync_dirent(struct nq *q, uint64_t ino, const Cairn__Inode *in)
{
    Cairn__Dirent *d;
    uint64_t ver;

    if (!in->parent || !in->name || !in->name[0])
        return;
    if (meta_dirent_get(q->cl, in->parent, in->name, strlen(in->name), false, &d, &ver))
        return;
    if (d->ino == ino) {
        d->size = in->size;
        d->etag = in->etag;
        d->mtime_ns = in->mtime_ns;
        meta_dirent_put(q->cl, in->parent, in->name, strlen(in->name), d, ver, NULL);
        d->etag = NULL; /* borrowed from in */
    }
    cairn__dirent__free_unpacked(d, NULL);
}

static Cairn__Extent new_extent(struct nq *q, uint64_t off, uint64_t len)
{
    const struct ec_layout *l = cl_cluster_layout(q->cl);
    Cairn__Extent x = CAIRN__EXTENT__INIT;

    x.offset = off;
    x.length = len;
    x.object_id = meta_new_ino();
    x.gen = 1;
    x.k = l->k;
    x.m = l->m;
    x.frag_size = l->frag_size;
    x.obj_size = len;
    return x;
}

/* Commit inode in (read at version ver) after its data changed: new mtime and ETag, the
 * extents of m when use_map, by compare-and-set.  On success the objects no extent shows any
 * more are queued to be freed and the S3 listing fields follow.  CAIRN_ECONFLICT: read again
 * and retry. */
static int commit_data(struct nq *q, uint64_t ino, Cairn__Inode *in, uint64_t ver,
                       struct cn_extmap *m, bool use_map)
{
    Cairn__Extent **saved = NULL, **dropped = NULL;
    size_t nsaved = 0, ndropped = 0;
    char etag[40];
    int rc = 0;

    in->mtime_ns = in->ctime_ns = now_ns();
    nfs_etag(ino, in->mtime_ns, in->size, etag);
    free(in->etag == protobuf_c_empty_string ? NULL : in->etag);
    in->etag = strdup(etag);
    if (!in->etag)
        return CAIRN_ENOMEM;
    if (use_map) {
        rc = cn_extmap_dropped(m, in->extents, in->n_extents, &dropped, &ndropped);
        if (rc)
            return rc;
        cn_extmap_attach(m, in, &saved, &nsaved);
    }
    rc = meta_inode_put(q->cl, ino, in, ver, NULL);
    if (use_map)
        cn_extmap_detach(in, saved, nsaved);
    if (!rc) {
        cn_fileio_defer_extents(&q->w->fio, dropped, ndropped);
        sync_dirent(q, ino, in);
    }
    free(dropped);
    return rc;
}

/* Write the runs of f (locked) to the D-nodes and commit them to the inode: each run becomes
 * one object, laid over the extent map by a compare-and-set of the inode; a file that stays
 * small keeps its bytes inline.  On success the runs are gone; on failure they stay, and the
 * error goes to the caller (COMMIT or a stable WRITE), whose client will retry. */
static enum nfsstat3 wb_flush(struct nq *q, struct wfile *f, struct pre *pre,
                              Cairn__Inode **after)
{
    Cairn__Extent *xs = NULL;
    size_t nx = 0;
    uint64_t end = 0;
    enum nfsstat3 st = NFS3_OK;
    int rc = 0;

    if (after)
        *after = NULL;
    for (struct wrun *r = f->runs; r; r = r->next) {
        end = CAIRN_MAX(end, r->off + r->len);
        nx++;
    }
    xs = nx ? calloc(nx, sizeof(*xs)) : NULL;
    if (nx && !xs)
        return NFS3ERR_IO;
    nx = 0; /* objects written so far */
    for (int attempt = 0; attempt < 32; attempt++) {
        Cairn__Inode *in;
        uint64_t ver, size;
        Cairn__Extent inl = CAIRN__EXTENT__INIT;
        struct cn_extmap m;
        uint8_t *ibuf = NULL;
        bool inl_written = false, inline_path;

        st = load(q, f->ino, &in, &ver);
        if (st)
            goto out;
        if (in->type != CAIRN__FILE_TYPE__FT_FILE) {
            inode_free(in);
            st = NFS3ERR_INVAL;
            goto out;
        }
        if (pre && attempt == 0)
            pre_of(q, f->ino, in, pre);
        size = CAIRN_MAX(in->size, end);
        inline_path = !in->n_extents && size <= META_INLINE_MAX;
        if (inline_path) {
            /* Small file: the new bytes go into the inode record itself. */
            ibuf = calloc(1, size ? size : 1);
            if (!ibuf) {
                inode_free(in);
                st = NFS3ERR_IO;
                goto out;
            }
            if (in->inline_data.len)
                memcpy(ibuf, in->inline_data.data, CAIRN_MIN(in->inline_data.len, size));
            for (struct wrun *r = f->runs; r; r = r->next)
                memcpy(ibuf + r->off, r->data, r->len);
            free(in->inline_data.data);
            in->inline_data.data = ibuf;
            in->inline_data.len = size;
            cn_extmap_load(&m, in); /* empty */
        } else {
            /* Objects for the runs, written once (a retry after a conflict reuses them). */
            size_t i = 0;

            for (struct wrun *r = f->runs; r && !rc; r = r->next, i++) {
                if (i < nx)
                    continue;
                xs[i] = new_extent(q, r->off, r->len);
                rc = cl_stripe_write(q->cl, xs[i].object_id, 1, r->data, r->len, NULL);
                if (rc)
                    cn_extents_free(q->cl, (Cairn__Extent *[]){&xs[i]}, 1);
                else
                    nx = i + 1;
            }
            if (rc || cn_extmap_load(&m, in)) {
                inode_free(in);
                st = rc ? nfserr(rc) : NFS3ERR_IO;
                goto out;
            }
            if (in->inline_data.len) {
                /* Growing out of the inode: its bytes become an object under the new ones. */
                inl = new_extent(q, 0, in->inline_data.len);
                rc = cl_stripe_write(q->cl, inl.object_id, 1, in->inline_data.data,
                                     in->inline_data.len, NULL);
                if (rc) {
                    cn_extmap_fini(&m);
                    inode_free(in);
                    st = nfserr(rc);
                    goto out;
                }
                inl_written = true;
                cn_extmap_put(&m, &inl);
                free(in->inline_data.data);
                in->inline_data.data = NULL;
                in->inline_data.len = 0;
            }
            for (size_t j = 0; j < nx; j++)
                if (cn_extmap_put(&m, &xs[j]))
                    rc = CAIRN_ENOMEM;
        }
        in->size = size;
        if (!rc)
            rc = commit_data(q, f->ino, in, ver, &m, !inline_path);
        cn_extmap_fini(&m);
        if (rc == 0) {
            if (after)
                *after = in;
            else
                inode_free(in);
            runs_free(f->runs);
            f->runs = NULL;
            wb_account(q->app, -(ssize_t)f->bytes);
            f->bytes = 0;
            free(xs);
            return NFS3_OK;
        }
        inode_free(in);
        if (inl_written)
            cn_extents_free(q->cl, (Cairn__Extent *[]){&inl}, 1);
        if (rc != CAIRN_ECONFLICT) {
            st = nfserr(rc);
            goto out;
        }
        rc = 0;
    }
    st = NFS3ERR_JUKEBOX;
out:
    /* Objects written for runs that were not committed are not referenced: free them. */
    for (size_t i = 0; i < nx; i++)
        cn_extents_free(q->cl, (Cairn__Extent *[]){&xs[i]}, 1);
    free(xs);
    return st;
}

/* Flush file ino's buffered writes, if any. */
static enum nfsstat3 wb_flush_ino(struct nq *q, uint64_t ino)
{
    struct wfile *f = wb_get(q->app, ino, false);
    enum nfsstat3 st = NFS3_OK;

    if (!f)
        return NFS3_OK;
    pthread_mutex_lock(&f->lock);
    if (f->runs)
        st = wb_flush(q, f, NULL, NULL);
    pthread_mutex_unlock(&f->lock);
    wb_put(q->app, f);
    return st;
}

/* Lay buffered bytes of [off, off + len) over buf (which holds what the D-nodes have). */
static void wb_overlay(struct nfs_app *app, uint64_t ino, uint64_t off, uint8_t *buf, size_t len)
{
    struct wfile *f = wb_get(app, ino, false);

    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    for (struct wrun *r = f->runs; r; r = r->next) {
        uint64_t s = CAIRN_MAX(off, r->off), e = CAIRN_MIN(off + len, r->off + r->len);

        if (s < e)
            memcpy(buf + (s - off), r->data + (s - r->off), (size_t)(e - s));
    }
    pthread_mutex_unlock(&f->lock);
    wb_put(app, f);
}

/* ---- READDIR cookies ---- */

/* The cookie of an entry: a hash of its sort name, never 0, 1 or 2 (the start, "." and ".."). */
static uint64_t cookie_of(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 1099511628211ull;
    h &= 0x7fffffffffffffffull;
    return h < 3 ? h + 3 : h;
}

static struct cookie_slot *cookie_slot(struct nfs_app *app, uint64_t dir, uint64_t cookie)
{
    return &app->cookies[((dir ^ cookie) * 0x9E3779B97F4A7C15ull >> 40) % COOKIE_SLOTS];
}

static void cookie_remember(struct nfs_app *app, uint64_t dir, uint64_t cookie, const char *name,
                            size_t len)
{
    struct cookie_slot *s;

    if (len > META_NAME_MAX + 1)
        return;
    pthread_mutex_lock(&app->cookie_lock);
    s = cookie_slot(app, dir, cookie);
    s->dir = dir;
    s->cookie = cookie;
    s->len = (uint32_t)len;
    memcpy(s->name, name, len);
    pthread_mutex_unlock(&app->cookie_lock);
}

/* The sort name a cookie continues after: from the cache, else by scanning the directory for
 * the entry with that hash (another C-node gave the cookie out, or this one forgot it). */
static enum nfsstat3 cookie_name(struct nq *q, uint64_t dir, uint64_t cookie, char *name,
                                 uint32_t *len)
{
    struct cookie_slot *s;
    char start[META_NAME_MAX + 2];
    uint32_t slen = 0;
    bool found = false;

    pthread_mutex_lock(&q->app->cookie_lock);
    s = cookie_slot(q->app, dir, cookie);
    if (s->dir == dir && s->cookie == cookie) {
        memcpy(name, s->name, s->len);
        *len = s->len;
        found = true;
    }
    pthread_mutex_unlock(&q->app->cookie_lock);
    if (found)
        return NFS3_OK;
    for (;;) {
        struct meta_scan sc;
        int rc = meta_dir_scan(q->cl, dir, slen ? start : NULL, slen, META_SCAN_MAX, &sc);

        if (rc)
            return nfserr(rc);
        for (unsigned i = 0; i < sc.n && !found; i++) {
            uint32_t nl;
            const char *n = meta_dirent_name(sc.entries[i].key, sc.entries[i].klen, &nl);

            if (cookie_of(n, nl) == cookie) {
                memcpy(name, n, nl);
                *len = nl;
                found = true;
            }
        }
        if (found || !sc.more || sc.n == 0) {
            meta_scan_fini(&sc);
            break;
        }
        {
            uint32_t nl;
            const char *n = meta_dirent_name(sc.entries[sc.n - 1].key,
                                             sc.entries[sc.n - 1].klen, &nl);

            memcpy(start, n, nl);
            start[nl] = 0; /* continue just after the last entry seen */
            slen = nl + 1;
        }
        meta_scan_fini(&sc);
    }
    return found ? NFS3_OK : NFS3ERR_BAD_COOKIE;
}

/* ---- arguments ---- */

#define ARGS_OK(q)                                                                                 \
    do {                                                                                           \
        if (!xdr_dec_ok(&(q)->d)) {                                                                \
            (q)->garbage = true;                                                                   \
            return;                                                                                \
        }                                                                                          \
    } while (0)

struct sattr {
    bool set_mode, set_uid, set_gid, set_size;
    uint32_t mode, uid, gid;
    uint64_t size;
    uint32_t atime_how, mtime_how;
    int64_t atime, mtime;
};

static int64_t get_time(struct xdr_dec *d)
{
    int64_t sec = xdr_get_u32(d);
    uint32_t nsec = xdr_get_u32(d);

    return sec * 1000000000 + (nsec < 1000000000 ? nsec : 999999999);
}

static void get_sattr(struct xdr_dec *d, struct sattr *sa)
{
    memset(sa, 0, sizeof(*sa));
    if ((sa->set_mode = xdr_get_bool(d)))
        sa->mode = xdr_get_u32(d);
    if ((sa->set_uid = xdr_get_bool(d)))
        sa->uid = xdr_get_u32(d);
    if ((sa->set_gid = xdr_get_bool(d)))
        sa->gid = xdr_get_u32(d);
    if ((sa->set_size = xdr_get_bool(d)))
        sa->size = xdr_get_u64(d);
    sa->atime_how = xdr_get_u32(d);
    if (sa->atime_how == SET_TO_CLIENT_TIME)
        sa->atime = get_time(d);
    else if (sa->atime_how > SET_TO_CLIENT_TIME)
        d->err = true;
    sa->mtime_how = xdr_get_u32(d);
    if (sa->mtime_how == SET_TO_CLIENT_TIME)
        sa->mtime = get_time(d);
    else if (sa->mtime_how > SET_TO_CLIENT_TIME)
        d->err = true;
}

/* Apply a sattr3 to in (loaded by the caller, who writes it back).  Size changes are done by
 * the caller (they touch data); here only their permission is checked. */
static enum nfsstat3 apply_sattr(struct nq *q, Cairn__Inode *in, const struct sattr *sa)
{
    bool owner = q->uid == 0 || q->uid == in->uid;
    int64_t t = now_ns();

    if (sa->set_mode) {
        if (!owner)
            return NFS3ERR_PERM;
        in->mode = sa->mode & 07777;
    }
    if (sa->set_uid && sa->uid != in->uid) {
        if (q->uid != 0)
            return NFS3ERR_PERM;
        in->uid = sa->uid;
    }
    if (sa->set_gid && sa->gid != in->gid) {
        if (q->uid != 0 && !(q->uid == in->uid && in_group(q, sa->gid)))
            return NFS3ERR_PERM;
        in->gid = sa->gid;
    }
    if (sa->set_size) {
        if (is_dir(in))
            return NFS3ERR_ISDIR;
        if (in->type != CAIRN__FILE_TYPE__FT_FILE)
            return NFS3ERR_INVAL;
        if (!owner && !may(q, in, MAY_W))
            return NFS3ERR_ACCES;
    }
    if (sa->mtime_how == SET_TO_CLIENT_TIME || sa->atime_how == SET_TO_CLIENT_TIME) {
        if (!owner)
            return NFS3ERR_PERM;
    } else if (sa->mtime_how == SET_TO_SERVER_TIME || sa->atime_how == SET_TO_SERVER_TIME) {
        if (!owner && !may(q, in, MAY_W))
            return NFS3ERR_ACCES;
    }
    if (sa->atime_how == SET_TO_CLIENT_TIME)
        in->atime_ns = sa->atime;
    else if (sa->atime_how == SET_TO_SERVER_TIME)
        in->atime_ns = t;
    if (sa->mtime_how == SET_TO_CLIENT_TIME)
        in->mtime_ns = sa->mtime;
    else if (sa->mtime_how == SET_TO_SERVER_TIME)
        in->mtime_ns = t;
    in->ctime_ns = t;
    return NFS3_OK;
}

/* Change a file's size in the loaded inode: truncating drops extents (returned in *dropped to
 * free after the commit) or inline bytes; growing leaves a hole. */
static int resize(Cairn__Inode *in, uint64_t size, struct cn_extmap *m, bool *use_map)
{
    *use_map = false;
    if (in->n_extents) {
        int rc = cn_extmap_load(m, in);

        if (rc)
            return rc;
        cn_extmap_truncate(m, size);
        *use_map = true;
    } else if (in->inline_data.len > size) {
        in->inline_data.len = size;
    } else if (size <= META_INLINE_MAX && in->inline_data.len < size) {
        uint8_t *b = calloc(1, size);

        if (!b)
            return CAIRN_ENOMEM;
        memcpy(b, in->inline_data.data, in->inline_data.len);
        free(in->inline_data.data);
        in->inline_data.data = b;
        in->inline_data.len = size;
    } else if (in->inline_data.len && size > META_INLINE_MAX) {
        /* Growing an inline file past the inline limit: its bytes stay, the rest is a hole.
         * cn_file_read reads inline bytes then zeros; the next write moves them to an object. */
    }
    in->size = size;
    return 0;
}

/* ---- namespace helpers ---- */

/* Look name up in dir (both entry forms).  *dir_form says which one; *ver gets the entry's
 * record version. */
/* A name has two entry records, "name/" for a directory and "name" for anything else (so S3
 * listings see directories as prefixes); both are read together in one round trip.  r[0] is
 * the directory form, r[1] the other. */
static void forms_init(struct meta_read *r, uint64_t dir, const char *name, size_t nl)
{
    for (int f = 0; f < 2; f++)
        r[f] = (struct meta_read){.kind = META_READ_DIRENT, .id = dir, .name = name, .len = nl,
                                  .dir_form = f == 0};
}

/* What the forms read say about the name (the directory form wins); frees their records.  On
 * CAIRN_ENOENT, *ver is the version a create of the file form must expect. */
static int forms_result(struct meta_read *r, uint64_t *ino, bool *dir_form, uint64_t *ver)
{
    int rc = CAIRN_ENOENT, f;

    *dir_form = false;
    *ver = r[1].version;
    for (f = 0; f < 2; f++) {
        if (r[f].rc == CAIRN_ENOENT)
            continue;
        rc = r[f].rc;
        if (!rc) {
            *ino = r[f].dirent->ino;
            *dir_form = f == 0;
            *ver = r[f].version;
        }
        break;
    }
    for (f = 0; f < 2; f++)
        if (r[f].dirent)
            cairn__dirent__free_unpacked(r[f].dirent, NULL);
    return rc;
}

static int lookup_entry(struct nq *q, uint64_t dir, const char *name, size_t nl, uint64_t *ino,
                        bool *dir_form, uint64_t *ver)
{
    struct meta_read r[2];

    forms_init(r, dir, name, nl);
    meta_read_many(q->cl, r, 2);
    return forms_result(r, ino, dir_form, ver);
}

/* Load the directory of a handle and check the caller may change its entries. */
static enum nfsstat3 dir_for_change(struct nq *q, uint64_t ino, Cairn__Inode **dir, struct pre *pre)
{
    uint64_t ver;
    enum nfsstat3 st = load(q, ino, dir, &ver);

    if (st)
        return st;
    /* Keep a private copy with its version for touch_dir(). */
    if (q->dir_in)
        inode_free(q->dir_in);
    q->dir_in = NULL;
    {
        size_t n = cairn__inode__get_packed_size(*dir);
        uint8_t *b = malloc(n ? n : 1);

        if (b) {
            cairn__inode__pack(*dir, b);
            q->dir_in = cairn__inode__unpack(NULL, n, b);
            free(b);
        }
    }
    q->dir_loaded = q->dir_in ? ino : 0;
    q->dir_ver = ver;
    pre_of(q, ino, *dir, pre);
    if (!is_dir(*dir))
        return NFS3ERR_NOTDIR;
    if (read_only(q))
        return NFS3ERR_ROFS;
    if (!may(q, *dir, MAY_W | MAY_X))
        return NFS3ERR_ACCES;
    return NFS3_OK;
}

/* Create inode in and link it as name in dir.  CAIRN_EEXIST if the name is taken (in either
 * form); on failure nothing stays behind. */
static int make_entry(struct nq *q, uint64_t dir, const char *name, size_t nl, Cairn__Inode *in,
                      uint64_t *ino)
{
    Cairn__Dirent nd = CAIRN__DIRENT__INIT;
    uint64_t vd = 0, vf = 0;
    char nbuf[META_NAME_MAX + 1];
    struct meta_read r[2];
    int rc;

    /* Neither form may exist; the absent one's version is what the create expects. */
    forms_init(r, dir, name, nl);
    meta_read_many(q->cl, r, 2);
    vd = r[0].version;
    vf = r[1].version;
    rc = r[0].rc != CAIRN_ENOENT ? r[0].rc : r[1].rc;
    for (int form = 0; form < 2; form++)
        if (r[form].dirent)
            cairn__dirent__free_unpacked(r[form].dirent, NULL);
    if (rc != CAIRN_ENOENT)
        return rc ? rc : CAIRN_EEXIST;
    memcpy(nbuf, name, nl);
    nbuf[nl] = 0;
    in->parent = dir;
    in->name = nbuf;
    in->btime_ns = in->mtime_ns = in->ctime_ns = now_ns();
    rc = meta_inode_create(q->cl, in, ino);
    in->name = NULL;
    if (rc)
        return rc;
    nd.ino = *ino;
    nd.type = in->type;
    nd.size = in->size;
    nd.mtime_ns = in->mtime_ns;
    /* The entry must be new: a racing creator of the same name wins, we undo. */
    rc = meta_dirent_put(q->cl, dir, name, nl, &nd, is_dir(in) ? vd : vf, NULL);
    if (rc == CAIRN_ECONFLICT)
        rc = CAIRN_EEXIST;
    if (rc)
        meta_inode_del(q->cl, *ino, META_ANY);
    return rc;
}

/* Set a file's size (CREATE of an existing file with size 0 in its attributes: an open with
 * O_TRUNC).  Buffered writes land first. */
static enum nfsstat3 truncate_file(struct nq *q, uint64_t ino, uint64_t size)
{
    enum nfsstat3 st = wb_flush_ino(q, ino);

    for (int attempt = 0; !st && attempt < 16; attempt++) {
        Cairn__Inode *in;
        uint64_t ver;
        struct cn_extmap m = {0};
        bool use_map = false;
        int rc;

        st = load(q, ino, &in, &ver);
        if (st)
            break;
        if (in->size == size) {
            inode_free(in);
            break;
        }
        rc = resize(in, size, &m, &use_map);
        if (!rc)
            rc = commit_data(q, ino, in, ver, &m, use_map);
        cn_extmap_fini(&m);
        inode_free(in);
        if (rc != CAIRN_ECONFLICT) {
            st = nfserr(rc);
            break;
        }
    }
    return st;
}

/* ---- procedures ---- */

static void p_getattr(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    Cairn__Inode *in = NULL;

    ARGS_OK(q);
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    xdr_put_u32(&q->e, st);
    if (!st)
        put_fattr(q, fh.ino, in);
    inode_free(in);
}

static void p_setattr(struct nq *q)
{
    struct fh fh;
    struct sattr sa;
    enum nfsstat3 st = get_fh(q, &fh);
    bool guard, sized = false;
    int64_t guard_ctime = 0;
    Cairn__Inode *in = NULL;
    struct pre pre = {0};

    get_sattr(&q->d, &sa);
    if ((guard = xdr_get_bool(&q->d)))
        guard_ctime = get_time(&q->d);
    ARGS_OK(q);
    if (!st && read_only(q))
        st = NFS3ERR_ROFS;
    for (int attempt = 0; !st && attempt < 16; attempt++) {
        uint64_t ver;
        int rc;

        st = load(q, fh.ino, &in, &ver);
        if (st)
            break;
        if (attempt == 0)
            pre_of(q, fh.ino, in, &pre);
        /* The guard is checked against the ctime the client saw, before any change. */
        if (guard && !sized &&
            (in->ctime_ns ? in->ctime_ns : in->mtime_ns) / 1000 != guard_ctime / 1000) {
            st = NFS3ERR_NOT_SYNC;
            break;
        }
        st = apply_sattr(q, in, &sa);
        if (st)
            break;
        if (sa.set_size && !sized) {
            /* Size first (its own update: it moves data), then the other attributes. */
            inode_free(in);
            in = NULL;
            st = truncate_file(q, fh.ino, sa.size);
            sized = true;
            attempt = -1;
            continue;
        }
        rc = meta_inode_put(q->cl, fh.ino, in, ver, NULL);
        if (rc != CAIRN_ECONFLICT) {
            st = nfserr(rc);
            break;
        }
        inode_free(in);
        in = NULL;
    }
    xdr_put_u32(&q->e, st);
    put_wcc(q, &pre, fh.ino, st ? NULL : in);
    inode_free(in);
}

static void p_lookup(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0;
    enum nfsstat3 nst = get_name(q, &name, &nl);
    Cairn__Inode *dir = NULL, *in = NULL;
    uint64_t ino = 0;
    struct meta_read r[3];
    bool plain;

    ARGS_OK(q);
    /* A plain name: read the directory and both forms of its entry in one round trip (the
     * entry is used only once the directory allows the lookup). */
    plain = !st && !nst && !dot_name(name, nl);
    if (plain) {
        r[0] = (struct meta_read){.kind = META_READ_INODE, .id = fh.ino};
        forms_init(r + 1, fh.ino, name, nl);
        meta_read_many(q->cl, r, 3);
        dir = r[0].inode;
        st = r[0].rc == CAIRN_ENOENT ? NFS3ERR_STALE : nfserr(r[0].rc);
    } else if (!st) {
        st = load(q, fh.ino, &dir, NULL);
    }
    if (!st && !is_dir(dir))
        st = NFS3ERR_NOTDIR;
    if (!st && !may(q, dir, MAY_X))
        st = NFS3ERR_ACCES;
    if (!st) {
        if (nl == 1 && name[0] == '.')
            ino = fh.ino;
        else if (nl == 2 && name[0] == '.' && name[1] == '.')
            ino = fh.ino == META_ROOT_INO || !dir->parent ? META_ROOT_INO : dir->parent;
        else if (nst)
            st = nst == NFS3ERR_INVAL ? NFS3ERR_NOENT : nst;
    }
    if (plain) {
        bool df;
        uint64_t ver;
        int rc = forms_result(r + 1, &ino, &df, &ver); /* frees the entries */

        if (!st)
            st = nfserr(rc);
    }
    if (!st) {
        st = load(q, ino, &in, NULL);
        if (st == NFS3ERR_STALE)
            st = NFS3ERR_NOENT; /* an entry whose inode is going away */
    }
    xdr_put_u32(&q->e, st);
    if (!st) {
        put_fh(q, ino);
        put_post_attr(q, ino, in);
    }
    put_post_attr(q, fh.ino, dir);
    inode_free(dir);
    inode_free(in);
}

static void p_access(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    uint32_t want = xdr_get_u32(&q->d), got = 0;
    Cairn__Inode *in = NULL;

    ARGS_OK(q);
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    if (!st) {
        bool ro = read_only(q);

        if (may(q, in, MAY_R))
            got |= ACCESS3_READ;
        if (is_dir(in)) {
            if (may(q, in, MAY_X))
                got |= ACCESS3_LOOKUP;
            if (!ro && may(q, in, MAY_W | MAY_X))
                got |= ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
        } else {
            if (!ro && may(q, in, MAY_W))
                got |= ACCESS3_MODIFY | ACCESS3_EXTEND;
            if (may(q, in, MAY_X))
                got |= ACCESS3_EXECUTE;
        }
    }
    xdr_put_u32(&q->e, st);
    put_post_attr(q, fh.ino, in);
    if (!st)
        xdr_put_u32(&q->e, want & got);
    inode_free(in);
}

static void p_readlink(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    Cairn__Inode *in = NULL;

    ARGS_OK(q);
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    if (!st && in->type != CAIRN__FILE_TYPE__FT_SYMLINK)
        st = NFS3ERR_INVAL;
    xdr_put_u32(&q->e, st);
    put_post_attr(q, fh.ino, in);
    if (!st)
        xdr_put_var(&q->e, in->symlink, (uint32_t)strlen(in->symlink));
    inode_free(in);
}

static void p_read(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    uint64_t off = xdr_get_u64(&q->d), size = 0;
    uint32_t count = xdr_get_u32(&q->d), n = 0;
    Cairn__Inode *in = NULL;

    ARGS_OK(q);
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    if (!st && is_dir(in))
        st = NFS3ERR_ISDIR;
    if (!st && in->type != CAIRN__FILE_TYPE__FT_FILE)
        st = NFS3ERR_INVAL;
    if (!st && !may_io(q, in, MAY_R))
        st = NFS3ERR_ACCES;
    if (!st) {
        size = file_size(q, fh.ino, in);
        count = CAIRN_MIN(count, NFS_MAX_IO);
        n = off >= size ? 0 : (uint32_t)CAIRN_MIN((uint64_t)count, size - off);
    }
    xdr_put_u32(&q->e, st);
    put_post_attr(q, fh.ino, in);
    if (!st) {
        size_t pos;
        uint8_t *dst, *cur;
        uint64_t have = in->size > off ? CAIRN_MIN((uint64_t)n, in->size - off) : 0;
        int rc;

        xdr_put_u32(&q->e, n);
        xdr_put_bool(&q->e, off + n >= size);
        xdr_put_u32(&q->e, n);
        pos = q->e.len;
        /* The bytes go from the D-nodes straight into the reply. */
        dst = xdr_put_reserve(&q->e, n);
        if (!dst) {
            q->e.err = true;
        } else {
            cur = dst;
            rc = cn_file_read(&q->w->fio, in, off, have, cn_sink_buffer, &cur);
            if (rc) {
                /* Start over with the error: no partial data. */
                log_warn(TAG, "read of inode %016" PRIx64 ": %s", fh.ino, cairn_strerror(rc));
                q->e.len = 0;
                q->redo_status = nfserr(rc) == NFS3ERR_JUKEBOX ? NFS3ERR_JUKEBOX : NFS3ERR_IO;
            } else {
                memset(dst + have, 0, n - have); /* beyond the committed size: buffered bytes */
                wb_overlay(q->app, fh.ino, off, dst, n);
            }
            (void)pos;
        }
    }
    inode_free(in);
}

static void p_write(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    uint64_t off = xdr_get_u64(&q->d);
    uint32_t count = xdr_get_u32(&q->d), stable = xdr_get_u32(&q->d), dlen = 0;
    const uint8_t *data = xdr_get_var(&q->d, NFS_MAX_IO, &dlen);
    Cairn__Inode *in = NULL, *after = NULL;
    struct pre pre = {0};
    struct wfile *f = NULL;
    uint32_t committed = stable;

    ARGS_OK(q);
    if (stable > FILE_SYNC || dlen < count) {
        q->garbage = true;
        return;
    }
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    if (!st) {
        pre_of(q, fh.ino, in, &pre);
        if (is_dir(in))
            st = NFS3ERR_ISDIR;
        else if (in->type != CAIRN__FILE_TYPE__FT_FILE)
            st = NFS3ERR_INVAL;
        else if (read_only(q))
            st = NFS3ERR_ROFS;
        else if (!may_io(q, in, MAY_W))
            st = NFS3ERR_ACCES;
        else if (off + count < off || off + count > (1ull << 62))
            st = NFS3ERR_FBIG;
    }
    if (!st && count) {
        f = wb_get(q->app, fh.ino, true);
        if (!f)
            st = NFS3ERR_IO;
    }
    if (f) {
        pthread_mutex_lock(&f->lock);
        st = nfserr(wb_add(q->app, f, off, data, count));
        /* Stable writes, big buffers and a full C-node go to the D-nodes now. */
        if (!st && (stable != UNSTABLE || f->bytes >= NFS_WBUF_FILE_MAX ||
                    wb_total(q->app) >= NFS_WBUF_TOTAL_MAX)) {
            st = wb_flush(q, f, NULL, &after);
            if (!st)
                committed = FILE_SYNC;
        }
        pthread_mutex_unlock(&f->lock);
        wb_put(q->app, f);
    }
    if (!st && !after) {
        inode_free(in);
        in = NULL;
        load(q, fh.ino, &in, NULL);
    }
    xdr_put_u32(&q->e, st);
    put_wcc(q, &pre, fh.ino, after ? after : in);
    if (!st) {
        xdr_put_u32(&q->e, count);
        xdr_put_u32(&q->e, committed);
        xdr_put_fixed(&q->e, q->app->verf, 8);
    }
    inode_free(in);
    inode_free(after);
}

static void p_commit(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    Cairn__Inode *in = NULL, *after = NULL;
    struct pre pre = {0};
    struct wfile *f;

    xdr_get_u64(&q->d); /* offset and count: the whole file is committed */
    xdr_get_u32(&q->d);
    ARGS_OK(q);
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    if (!st) {
        pre_of(q, fh.ino, in, &pre);
        f = wb_get(q->app, fh.ino, false);
        if (f) {
            pthread_mutex_lock(&f->lock);
            if (f->runs)
                st = wb_flush(q, f, NULL, &after);
            pthread_mutex_unlock(&f->lock);
            wb_put(q->app, f);
        }
    }
    xdr_put_u32(&q->e, st);
    put_wcc(q, &pre, fh.ino, after ? after : in);
    if (!st)
        xdr_put_fixed(&q->e, q->app->verf, 8);
    inode_free(in);
    inode_free(after);
}

/* The common tail of CREATE, MKDIR, SYMLINK, MKNOD: diropres3. */
static void put_diropres(struct nq *q, enum nfsstat3 st, uint64_t ino, const Cairn__Inode *in,
                         const struct pre *pre, uint64_t dir, const Cairn__Inode *dafter)
{
    xdr_put_u32(&q->e, st);
    if (!st) {
        xdr_put_bool(&q->e, true);
        put_fh(q, ino);
        put_post_attr(q, ino, in);
    }
    put_wcc(q, pre, dir, dafter);
}

static void init_owner(struct nq *q, Cairn__Inode *in, const Cairn__Inode *dir,
                       const struct sattr *sa, uint32_t def_mode)
{
    in->uid = q->uid;
    /* setgid directories hand their group down, as in local file systems */
    in->gid = (dir->mode & 02000) ? dir->gid : q->gid;
    in->mode = sa && sa->set_mode ? sa->mode & 07777 : def_mode;
    in->nlink = 1;
}

static void p_create(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0, how;
    enum nfsstat3 nst = get_name(q, &name, &nl);
    struct sattr sa = {0};
    uint64_t verf = 0, ino = 0;
    Cairn__Inode *dir = NULL, *obj = NULL, *dafter = NULL;
    Cairn__Inode in = CAIRN__INODE__INIT; /* the new file's inode, as stored */
    bool fresh = false;                     /* in is the file's inode: no need to read it back */
    struct pre pre = {0};

    how = xdr_get_u32(&q->d);
    if (how == CREATE_EXCLUSIVE) {
        const uint8_t *v = xdr_get_fixed(&q->d, 8);

        if (v)
            memcpy(&verf, v, 8);
    } else if (how <= CREATE_GUARDED) {
        get_sattr(&q->d, &sa);
    } else {
        q->d.err = true;
    }
    ARGS_OK(q);
    if (!st)
        st = dir_for_change(q, fh.ino, &dir, &pre);
    if (!st && nst)
        st = nst;
    if (!st && dot_name(name, nl))
        st = NFS3ERR_EXIST;
    if (!st) {
        int rc;

        in.type = CAIRN__FILE_TYPE__FT_FILE;
        init_owner(q, &in, dir, &sa, 0644);
        in.create_verf = verf;
        rc = make_entry(q, fh.ino, name, nl, &in, &ino);
        if (rc == CAIRN_EEXIST && how != CREATE_GUARDED) {
            bool df;
            uint64_t ver;

            rc = lookup_entry(q, fh.ino, name, nl, &ino, &df, &ver);
            if (!rc)
                rc = meta_inode_get(q->cl, ino, &obj, NULL);
            if (!rc && (df || obj->type != CAIRN__FILE_TYPE__FT_FILE))
                rc = CAIRN_EEXIST;
            else if (!rc && how == CREATE_EXCLUSIVE && obj->create_verf != verf)
                rc = CAIRN_EEXIST; /* someone else's file, not a retransmission */
            else if (!rc && how == CREATE_UNCHECKED && sa.set_size && !may_io(q, obj, MAY_W))
                rc = -1000;
            st = rc == -1000 ? NFS3ERR_ACCES : nfserr(rc);
        } else if (rc) {
            st = nfserr(rc);
        } else {
            touch_dir(q, fh.ino, &dafter);
            fresh = !sa.set_size || sa.size == 0;
        }
        /* An open with O_TRUNC sends size 0 with UNCHECKED: the existing file is emptied. */
        if (!st && !fresh && how != CREATE_EXCLUSIVE && sa.set_size)
            st = truncate_file(q, ino, sa.size);
        if (!st && !fresh) {
            inode_free(obj);
            obj = NULL;
            meta_inode_get(q->cl, ino, &obj, NULL);
        }
    }
    put_diropres(q, st, ino, fresh ? &in : obj, &pre, fh.ino, dafter ? dafter : dir);
    inode_free(dir);
    inode_free(obj);
    inode_free(dafter);
}

/* MKDIR and SYMLINK: a new inode of another type. */
static void make_other(struct nq *q, Cairn__FileType type)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0, tl = 0;
    enum nfsstat3 nst = get_name(q, &name, &nl);
    struct sattr sa;
    const uint8_t *target = NULL;
    uint64_t ino = 0;
    Cairn__Inode *dir = NULL, *obj = NULL, *dafter = NULL;
    struct pre pre = {0};
    char tbuf[4097];

    get_sattr(&q->d, &sa);
    if (type == CAIRN__FILE_TYPE__FT_SYMLINK)
        target = xdr_get_var(&q->d, 4096, &tl);
    ARGS_OK(q);
    if (!st)
        st = dir_for_change(q, fh.ino, &dir, &pre);
    if (!st && nst)
        st = nst;
    if (!st && dot_name(name, nl))
        st = NFS3ERR_EXIST;
    if (!st && type == CAIRN__FILE_TYPE__FT_SYMLINK && (tl == 0 || memchr(target, 0, tl)))
        st = NFS3ERR_INVAL;
    if (!st) {
        Cairn__Inode in = CAIRN__INODE__INIT;

        in.type = type;
        init_owner(q, &in, dir, &sa, type == CAIRN__FILE_TYPE__FT_DIR ? 0755 : 0777);
        if (type == CAIRN__FILE_TYPE__FT_DIR) {
            in.explicit_dir = true;
            in.nlink = 2;
        } else {
            memcpy(tbuf, target, tl);
            tbuf[tl] = 0;
            in.symlink = tbuf;
            in.size = tl;
        }
        st = nfserr(make_entry(q, fh.ino, name, nl, &in, &ino));
        if (!st) {
            touch_dir(q, fh.ino, &dafter);
            meta_inode_get(q->cl, ino, &obj, NULL);
        }
    }
    put_diropres(q, st, ino, obj, &pre, fh.ino, dafter ? dafter : dir);
    inode_free(dir);
    inode_free(obj);
    inode_free(dafter);
}

static void p_mkdir(struct nq *q)
{
    make_other(q, CAIRN__FILE_TYPE__FT_DIR);
}

static void p_symlink(struct nq *q)
{
    make_other(q, CAIRN__FILE_TYPE__FT_SYMLINK);
}

/* Devices, sockets and FIFOs have no place in the namespace S3 shares: NOTSUPP. */
static void p_mknod(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0, type;
    struct sattr sa;
    Cairn__Inode *dir = NULL;
    struct pre pre = {0};

    get_name(q, &name, &nl);
    type = xdr_get_u32(&q->d);
    if (type == NF3CHR || type == NF3BLK) {
        get_sattr(&q->d, &sa);
        xdr_get_u32(&q->d);
        xdr_get_u32(&q->d);
    } else if (type == NF3SOCK || type == NF3FIFO) {
        get_sattr(&q->d, &sa);
    }
    ARGS_OK(q);
    if (!st)
        st = dir_for_change(q, fh.ino, &dir, &pre);
    if (!st)
        st = (type >= NF3REG && type <= NF3FIFO && type != NF3DIR && type != NF3REG &&
              type != NF3LNK) ? NFS3ERR_NOTSUPP : NFS3ERR_BADTYPE;
    put_diropres(q, st, 0, NULL, &pre, fh.ino, dir);
    inode_free(dir);
}

/* REMOVE and RMDIR. */
static void remove_entry(struct nq *q, bool rmdir)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0;
    enum nfsstat3 nst = get_name(q, &name, &nl);
    Cairn__Inode *dir = NULL, *dafter = NULL;
    struct pre pre = {0};

    ARGS_OK(q);
    if (!st)
        st = dir_for_change(q, fh.ino, &dir, &pre);
    if (!st && nl == 1 && name[0] == '.')
        st = NFS3ERR_INVAL;
    else if (!st && nl == 2 && name[0] == '.' && name[1] == '.')
        st = rmdir ? NFS3ERR_EXIST : NFS3ERR_INVAL;
    else if (!st && nst)
        st = nst == NFS3ERR_INVAL ? NFS3ERR_NOENT : nst;
    for (int attempt = 0; !st && attempt < 16; attempt++) {
        uint64_t ino, ver;
        bool df;
        int rc = lookup_entry(q, fh.ino, name, nl, &ino, &df, &ver);

        if (rc) {
            st = nfserr(rc);
            break;
        }
        if (rmdir && !df) {
            st = NFS3ERR_NOTDIR;
            break;
        }
        if (!rmdir && df) {
            st = NFS3ERR_ISDIR;
            break;
        }
        if (rmdir) {
            bool empty;

            rc = meta_dir_empty(q->cl, ino, &empty);
            if (!rc && !empty)
                rc = -1000;
            if (rc) {
                st = rc == -1000 ? NFS3ERR_NOTEMPTY : nfserr(rc);
                break;
            }
        }
        if (!(dir->mode & 01000) || q->uid == 0 || q->uid == dir->uid) {
            /* no sticky bit in the way */
        } else {
            Cairn__Inode *victim;

            if (meta_inode_get(q->cl, ino, &victim, NULL) == 0) {
                bool mine = victim->uid == q->uid;

                inode_free(victim);
                if (!mine) {
                    st = NFS3ERR_ACCES;
                    break;
                }
            }
        }
        rc = meta_dirent_del(q->cl, fh.ino, name, nl, df, ver);
        if (rc == CAIRN_ECONFLICT)
            continue;
        if (rc) {
            st = nfserr(rc);
            break;
        }
        if (rmdir) {
            meta_inode_del(q->cl, ino, META_ANY);
        } else {
            bool last;

            /* The last link: buffered writes to the file have nowhere to go. */
            if (cn_file_unlink(&q->w->fio, ino, &last) == 0 && last)
                wb_discard(q->app, ino);
        }
        touch_dir(q, fh.ino, &dafter);
        break;
    }
    xdr_put_u32(&q->e, st);
    put_wcc(q, &pre, fh.ino, dafter ? dafter : dir);
    inode_free(dir);
    inode_free(dafter);
}

static void p_remove(struct nq *q)
{
    remove_entry(q, false);
}

static void p_rmdir(struct nq *q)
{
    remove_entry(q, true);
}

/* Whether dir is anc or lies below it (walking parents up to the root). */
static bool below(struct nq *q, uint64_t dir, uint64_t anc)
{
    for (int depth = 0; depth < 4096; depth++) {
        Cairn__Inode *in;
        uint64_t parent;

        if (dir == anc)
            return true;
        if (dir == META_ROOT_INO || meta_inode_get(q->cl, dir, &in, NULL))
            return false;
        parent = in->parent;
        inode_free(in);
        if (!parent || parent == dir)
            return false;
        dir = parent;
    }
    return true; /* a loop: refuse */
}

/* Point inode ino's parent/name at its new place (S3 listings and ".." follow it). */
static void move_inode(struct nq *q, uint64_t ino, uint64_t dir, const char *name, size_t nl)
{
    char nbuf[META_NAME_MAX + 1];

    memcpy(nbuf, name, nl);
    nbuf[nl] = 0;
    for (int attempt = 0; attempt < 16; attempt++) {
        Cairn__Inode *in;
        uint64_t ver;
        char *old;
        int rc = meta_inode_get(q->cl, ino, &in, &ver);

        if (rc)
            return;
        old = in->name;
        in->parent = dir;
        in->name = nbuf;
        in->ctime_ns = now_ns();
        rc = meta_inode_put(q->cl, ino, in, ver, NULL);
        in->name = old;
        inode_free(in);
        if (rc != CAIRN_ECONFLICT)
            return;
    }
}

static void p_rename(struct nq *q)
{
    struct fh ffh, tfh;
    enum nfsstat3 st = get_fh(q, &ffh);
    const char *fname = NULL, *tname = NULL;
    uint32_t fl = 0, tl = 0;
    enum nfsstat3 fst = get_name(q, &fname, &fl), tst;
    Cairn__Inode *fdir = NULL, *tdir = NULL, *fafter = NULL, *tafter = NULL;
    struct pre fpre = {0}, tpre = {0};
    enum nfsstat3 st2 = get_fh(q, &tfh);

    tst = get_name(q, &tname, &tl);
    ARGS_OK(q);
    if (!st)
        st = st2;
    if (!st)
        st = dir_for_change(q, ffh.ino, &fdir, &fpre);
    if (!st)
        st = dir_for_change(q, tfh.ino, &tdir, &tpre);
    if (!st && (fst || tst))
        st = fst ? fst : tst;
    if (!st && (dot_name(fname, fl) || dot_name(tname, tl)))
        st = NFS3ERR_INVAL;
    for (int attempt = 0; !st && attempt < 16; attempt++) {
        uint64_t sino, sver, dino = 0, dver = 0, ever = 0;
        bool sdf, ddf = false, dexists;
        Cairn__Dirent *sd = NULL, *od = NULL;
        int rc = lookup_entry(q, ffh.ino, fname, fl, &sino, &sdf, &sver);

        if (rc) {
            st = nfserr(rc);
            break;
        }
        rc = lookup_entry(q, tfh.ino, tname, tl, &dino, &ddf, &dver);
        if (rc && rc != CAIRN_ENOENT) {
            st = nfserr(rc);
            break;
        }
        dexists = rc == 0;
        if (dexists && dino == sino)
            break; /* the same file under both names: nothing to do (RFC 1813) */
        if (dexists && sdf && !ddf) {
            st = NFS3ERR_NOTDIR;
            break;
        }
        if (dexists && !sdf && ddf) {
            st = NFS3ERR_ISDIR;
            break;
        }
        if (dexists && ddf) {
            bool empty;

            rc = meta_dir_empty(q->cl, dino, &empty);
            if (rc || !empty) {
                st = rc ? nfserr(rc) : NFS3ERR_NOTEMPTY;
                break;
            }
        }
        if (sdf && below(q, tfh.ino, sino)) {
            st = NFS3ERR_INVAL; /* a directory into itself */
            break;
        }
        /* 1. the new name, in the source's form, over the target or where none was */
        rc = meta_dirent_get(q->cl, ffh.ino, fname, fl, sdf, &sd, NULL);
        if (rc) {
            st = rc == CAIRN_ENOENT ? NFS3ERR_NOENT : nfserr(rc);
            break;
        }
        if (!dexists) {
            rc = meta_dirent_get(q->cl, tfh.ino, tname, tl, sdf, &od, &ever);
            if (rc == 0) {
                cairn__dirent__free_unpacked(od, NULL);
                cairn__dirent__free_unpacked(sd, NULL);
                continue; /* appeared meanwhile */
            }
        } else {
            ever = dver;
        }
        rc = meta_dirent_put(q->cl, tfh.ino, tname, tl, sd, ever, NULL);
        cairn__dirent__free_unpacked(sd, NULL);
        if (rc == CAIRN_ECONFLICT)
            continue;
        if (rc) {
            st = nfserr(rc);
            break;
        }
        /* 2. the old name goes (unless it changed under us: then it is someone else's) */
        rc = meta_dirent_del(q->cl, ffh.ino, fname, fl, sdf, sver);
        if (rc && rc != CAIRN_ECONFLICT && rc != CAIRN_ENOENT)
            log_warn(TAG, "rename: old name left behind: %s", cairn_strerror(rc));
        /* 3. what the new name replaced */
        if (dexists) {
            if (ddf) {
                meta_inode_del(q->cl, dino, META_ANY);
            } else {
                bool last;

                if (cn_file_unlink(&q->w->fio, dino, &last) == 0 && last)
                    wb_discard(q->app, dino);
            }
        }
        move_inode(q, sino, tfh.ino, tname, tl);
        break;
    }
    if (!st) {
        touch_dir(q, ffh.ino, &fafter);
        if (tfh.ino != ffh.ino)
            touch_dir(q, tfh.ino, &tafter);
    }
    xdr_put_u32(&q->e, st);
    put_wcc(q, &fpre, ffh.ino, fafter ? fafter : fdir);
    put_wcc(q, &tpre, tfh.ino, tfh.ino == ffh.ino ? (fafter ? fafter : fdir) : (tafter ? tafter : tdir));
    inode_free(fdir);
    inode_free(tdir);
    inode_free(fafter);
    inode_free(tafter);
}

static void p_link(struct nq *q)
{
    struct fh fh, dfh;
    enum nfsstat3 st = get_fh(q, &fh), st2 = get_fh(q, &dfh);
    const char *name = NULL;
    uint32_t nl = 0;
    enum nfsstat3 nst = get_name(q, &name, &nl);
    Cairn__Inode *in = NULL, *dir = NULL, *dafter = NULL;
    struct pre pre = {0};

    ARGS_OK(q);
    if (!st)
        st = st2;
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    if (!st && is_dir(in))
        st = NFS3ERR_ISDIR;
    if (!st)
        st = dir_for_change(q, dfh.ino, &dir, &pre);
    if (!st && nst)
        st = nst;
    if (!st && dot_name(name, nl))
        st = NFS3ERR_EXIST;
    if (!st) {
        uint64_t other, ver, ev = 0;
        bool df;
        Cairn__Dirent nd = CAIRN__DIRENT__INIT, *od;
        int rc = lookup_entry(q, dfh.ino, name, nl, &other, &df, &ver);

        if (rc == 0)
            rc = CAIRN_EEXIST;
        else if (rc == CAIRN_ENOENT)
            rc = 0;
        /* nlink first: a crash before the entry leaves a count too high (a leak), never a
         * file freed while a name still points at it */
        for (int attempt = 0; !rc && attempt < 16; attempt++) {
            uint64_t iv;

            inode_free(in);
            in = NULL;
            rc = meta_inode_get(q->cl, fh.ino, &in, &iv);
            if (rc)
                break;
            if (in->nlink >= 65535) {
                rc = -1000;
                break;
            }
            in->nlink = (in->nlink ? in->nlink : 1) + 1;
            in->ctime_ns = now_ns();
            rc = meta_inode_put(q->cl, fh.ino, in, iv, NULL);
            if (rc != CAIRN_ECONFLICT)
                break;
            rc = 0;
        }
        if (!rc) {
            rc = meta_dirent_get(q->cl, dfh.ino, name, nl, false, &od, &ev);
            if (rc == 0) {
                cairn__dirent__free_unpacked(od, NULL);
                rc = CAIRN_EEXIST;
            } else if (rc == CAIRN_ENOENT) {
                nd.ino = fh.ino;
                nd.type = in->type;
                nd.size = in->size;
                nd.etag = in->etag;
                nd.mtime_ns = in->mtime_ns;
                rc = meta_dirent_put(q->cl, dfh.ino, name, nl, &nd, ev, NULL);
                if (rc == CAIRN_ECONFLICT)
                    rc = CAIRN_EEXIST;
            }
            if (rc)
                cn_file_unlink(&q->w->fio, fh.ino, NULL); /* give the count back */
        }
        st = rc == -1000 ? NFS3ERR_MLINK : nfserr(rc);
        if (!st)
            touch_dir(q, dfh.ino, &dafter);
        inode_free(in);
        in = NULL;
        load(q, fh.ino, &in, NULL);
    }
    xdr_put_u32(&q->e, st);
    put_post_attr(q, fh.ino, in);
    put_wcc(q, &pre, dfh.ino, dafter ? dafter : dir);
    inode_free(in);
    inode_free(dir);
    inode_free(dafter);
}

/* READDIRPLUS: the inodes of the entries of one scanned page that will fit the reply, read
 * together (meta_inode_get_many) instead of one round trip each.  in[i] and rc[i] belong to
 * the page's entry i for i < n; the entries past n are read alone if the reply has room for
 * them after all (an entry without attributes takes less room than counted here). */
struct prefetch {
    unsigned n;
    Cairn__Inode **in; /* owned */
    int *rc;
};

/* Entry sizes as readdir_common counts them; see FITS there. */
static void prefetch_inodes(struct nq *q, const struct meta_scan *sc, Cairn__Dirent **ds,
                            size_t base, size_t used_dir, uint32_t maxcount, uint32_t dircount,
                            struct prefetch *pf)
{
    size_t len = q->e.len - base, room = maxcount - CAIRN_MIN(maxcount, 200u);
    uint64_t *inos = calloc(sc->n ? sc->n : 1, sizeof(*inos));
    unsigned k = 0, fit = 0;

    pf->n = 0;
    pf->in = calloc(sc->n ? sc->n : 1, sizeof(*pf->in));
    pf->rc = calloc(sc->n ? sc->n : 1, sizeof(*pf->rc));
    if (!inos || !pf->in || !pf->rc)
        goto out; /* every entry is read alone */
    for (unsigned i = 0; i < sc->n; i++) {
        uint32_t sl, nl;
        const char *sn = meta_dirent_name(sc->entries[i].key, sc->entries[i].klen, &sl);
        size_t eb, db;

        if (!ds[i]) {
            fit = i + 1;
            continue;
        }
        nl = sl > 1 && sn[sl - 1] == '/' ? sl - 1 : sl;
        eb = 4 + 8 + 4 + CAIRN_ALIGN_UP(nl, 4) + 8 + 4 + ATTR_BYTES + 4 + 4 + FH_LEN;
        db = 8 + 4 + CAIRN_ALIGN_UP(nl, 4) + 8;
        if (len + eb + 8 > room || used_dir + db > dircount)
            break;
        len += eb;
        used_dir += db;
        inos[k++] = ds[i]->ino;
        fit = i + 1;
    }
    meta_inode_get_many(q->cl, k, inos, pf->in, pf->rc);
    /* Spread the k results over the entries they belong to (undecodable entries have none). */
    for (unsigned i = fit, j = k; i-- > 0;) {
        if (!ds[i])
            continue;
        j--;
        pf->in[i] = pf->in[j];
        pf->rc[i] = pf->rc[j];
        if (i != j)
            pf->in[j] = NULL;
    }
    pf->n = fit;
out:
    free(inos);
}

/* Free a page's decoded entries (ds[0..sc->n)) and its unused prefetched inodes. */
static void readdir_batch_free(const struct meta_scan *sc, Cairn__Dirent **ds,
                               struct prefetch *pf)
{
    if (ds)
        for (unsigned i = 0; i < sc->n; i++)
            if (ds[i])
                cairn__dirent__free_unpacked(ds[i], NULL);
    if (pf->in)
        for (unsigned i = 0; i < sc->n; i++)
            inode_free(pf->in[i]);
    free(pf->in);
    free(pf->rc);
    *pf = (struct prefetch){0};
    free(ds);
}

/* READDIR and READDIRPLUS. */
static void readdir_common(struct nq *q, bool plus)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    uint64_t cookie = xdr_get_u64(&q->d);
    uint32_t dircount = 0, maxcount;
    Cairn__Inode *dir = NULL;
    char start[META_NAME_MAX + 3];
    uint32_t slen = 0;
    bool from_start = true, eof = false;
    size_t base, used_dir = 0;
    unsigned emitted = 0;
    char last[META_NAME_MAX + 2];
    uint32_t last_len = 0;
    uint64_t last_cookie = 0;
    Cairn__Dirent **ds = NULL; /* the scanned page's entries, decoded */
    struct prefetch pf = {0};

    xdr_get_fixed(&q->d, 8); /* cookieverf: cookies stay valid, so it is not checked */
    if (plus)
        dircount = xdr_get_u32(&q->d);
    maxcount = xdr_get_u32(&q->d);
    ARGS_OK(q);
    maxcount = CAIRN_MIN(maxcount, READDIR_MAX_COUNT);
    if (!plus)
        dircount = maxcount;
    if (!st)
        st = load(q, fh.ino, &dir, NULL);
    if (!st && !is_dir(dir))
        st = NFS3ERR_NOTDIR;
    if (!st && !may(q, dir, MAY_R))
        st = NFS3ERR_ACCES;
    if (!st && cookie > 2) {
        char name[META_NAME_MAX + 2];
        uint32_t nl = 0;

        st = cookie_name(q, fh.ino, cookie, name, &nl);
        if (!st) {
            memcpy(start, name, nl);
            start[nl] = 0; /* the next key after the name */
            slen = nl + 1;
            from_start = false;
        }
    }
    xdr_put_u32(&q->e, st);
    put_post_attr(q, fh.ino, dir);
    if (st) {
        inode_free(dir);
        return;
    }
    xdr_put_fixed(&q->e, "\0\0\0\0\0\0\0\0", 8);
    base = q->e.len;
    /* Room kept for the list end and eof: 8 bytes. */
#define FITS(entry_bytes, dir_bytes)                                                               \
    (q->e.len - base + (entry_bytes) + 8 <= maxcount - CAIRN_MIN(maxcount, 200u) &&               \
     used_dir + (dir_bytes) <= dircount)
    if (from_start && cookie < 2) {
        for (uint64_t c = cookie + 1; c <= 2; c++) {
            uint64_t ino = c == 1 ? fh.ino : (dir->parent && fh.ino != META_ROOT_INO ? dir->parent : META_ROOT_INO);
            uint32_t nl = (uint32_t)c;
            size_t eb = 4 + 8 + 4 + 4 + 8 + (plus ? 4 + ATTR_BYTES + 4 + 4 + FH_LEN : 0);

            if (!FITS(eb, 24u))
                goto full;
            xdr_put_bool(&q->e, true);
            xdr_put_u64(&q->e, ino);
            xdr_put_var(&q->e, "..", nl);
            xdr_put_u64(&q->e, c);
            if (plus) {
                Cairn__Inode *in = NULL;

                if (c == 1 || load(q, ino, &in, NULL) == NFS3_OK)
                    put_post_attr(q, ino, c == 1 ? dir : in);
                else
                    xdr_put_bool(&q->e, false);
                inode_free(in);
                xdr_put_bool(&q->e, true);
                put_fh(q, ino);
            }
            used_dir += 24;
            emitted++;
        }
    }
    for (;;) {
        struct meta_scan sc;
        int rc = meta_dir_scan(q->cl, fh.ino, slen ? start : NULL, slen, 256, &sc);

        if (rc) {
            st = nfserr(rc);
            break;
        }
        ds = calloc(sc.n ? sc.n : 1, sizeof(*ds));
        if (!ds) {
            meta_scan_fini(&sc);
            st = NFS3ERR_SERVERFAULT;
            break;
        }
        for (unsigned i = 0; i < sc.n; i++)
            ds[i] = cairn__dirent__unpack(NULL, sc.entries[i].len, sc.entries[i].val);
        if (plus)
            prefetch_inodes(q, &sc, ds, base, used_dir, maxcount, dircount, &pf);
        for (unsigned i = 0; i < sc.n; i++) {
            uint32_t sl, nl;
            const char *sn = meta_dirent_name(sc.entries[i].key, sc.entries[i].klen, &sl);
            Cairn__Dirent *d = ds[i];
            uint64_t c = cookie_of(sn, sl);
            size_t eb, db;
            Cairn__Inode *in = NULL;

            if (!d)
                continue;
            nl = sl > 1 && sn[sl - 1] == '/' ? sl - 1 : sl;
            eb = 4 + 8 + 4 + CAIRN_ALIGN_UP(nl, 4) + 8 +
                 (plus ? 4 + ATTR_BYTES + 4 + 4 + FH_LEN : 0);
            db = 8 + 4 + CAIRN_ALIGN_UP(nl, 4) + 8;
            if (!FITS(eb, db)) {
                readdir_batch_free(&sc, ds, &pf);
                meta_scan_fini(&sc);
                goto full;
            }
            xdr_put_bool(&q->e, true);
            xdr_put_u64(&q->e, d->ino);
            xdr_put_var(&q->e, sn, nl);
            xdr_put_u64(&q->e, c);
            if (plus) {
                int irc;

                if (i < pf.n) { /* read with the rest of the page */
                    in = pf.in[i];
                    pf.in[i] = NULL;
                    irc = pf.rc[i];
                } else {
                    irc = meta_inode_get(q->cl, d->ino, &in, NULL);
                }
                if (irc == 0) {
                    put_post_attr(q, d->ino, in);
                    xdr_put_bool(&q->e, true);
                    put_fh(q, d->ino);
                } else {
                    xdr_put_bool(&q->e, false);
                    xdr_put_bool(&q->e, false);
                }
                inode_free(in);
            }
            used_dir += db;
            emitted++;
            memcpy(last, sn, sl);
            last_len = sl;
            last_cookie = c;
        }
        readdir_batch_free(&sc, ds, &pf);
        ds = NULL;
        if (!sc.more || sc.n == 0) {
            meta_scan_fini(&sc);
            eof = true;
            break;
        }
        {
            uint32_t sl;
            const char *sn = meta_dirent_name(sc.entries[sc.n - 1].key, sc.entries[sc.n - 1].klen,
                                              &sl);

            memcpy(start, sn, sl);
            start[sl] = 0;
            slen = sl + 1;
        }
        meta_scan_fini(&sc);
    }
full:
#undef FITS
    if (!st && emitted == 0 && !eof)
        st = NFS3ERR_TOOSMALL;
    if (st) {
        /* Start over: an error carries only the directory's attributes. */
        q->e.len = 0;
        q->redo_status = st;
        inode_free(dir);
        return;
    }
    if (last_len)
        cookie_remember(q->app, fh.ino, last_cookie, last, last_len);
    xdr_put_bool(&q->e, false);
    xdr_put_bool(&q->e, eof);
    inode_free(dir);
}

static void p_readdir(struct nq *q)
{
    readdir_common(q, false);
}

static void p_readdirplus(struct nq *q)
{
    readdir_common(q, true);
}

static void p_fsstat(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    Cairn__Inode *in = NULL;
    uint64_t total = 0, used = 0;
    const struct ec_layout *l = cl_cluster_layout(q->cl);

    ARGS_OK(q);
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    if (!st) {
        for (unsigned i = 0; i < cl_cluster_dnodes(q->cl); i++) {
            uint64_t size = 0, u = 0;

            if (cl_cluster_ping(q->cl, i, &size, &u, NULL) == 0) {
                total += size;
                used += CAIRN_MIN(u, size);
            }
        }
        /* What clients can store: the raw space times k / (k + m). */
        total = total / (l->k + l->m) * l->k;
        used = used / (l->k + l->m) * l->k;
    }
    xdr_put_u32(&q->e, st);
    put_post_attr(q, fh.ino, in);
    if (!st) {
        xdr_put_u64(&q->e, total);
        xdr_put_u64(&q->e, total - CAIRN_MIN(used, total));
        xdr_put_u64(&q->e, total - CAIRN_MIN(used, total));
        xdr_put_u64(&q->e, 1ull << 40); /* inodes are records: no fixed table */
        xdr_put_u64(&q->e, 1ull << 40);
        xdr_put_u64(&q->e, 1ull << 40);
        xdr_put_u32(&q->e, 0);
    }
    inode_free(in);
}

static void p_fsinfo(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    Cairn__Inode *in = NULL;

    ARGS_OK(q);
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    xdr_put_u32(&q->e, st);
    put_post_attr(q, fh.ino, in);
    if (!st) {
        xdr_put_u32(&q->e, NFS_MAX_IO); /* rtmax */
        xdr_put_u32(&q->e, NFS_MAX_IO); /* rtpref */
        xdr_put_u32(&q->e, 4096);       /* rtmult */
        xdr_put_u32(&q->e, NFS_MAX_IO); /* wtmax */
        xdr_put_u32(&q->e, NFS_MAX_IO); /* wtpref */
        xdr_put_u32(&q->e, 4096);       /* wtmult */
        xdr_put_u32(&q->e, 64u << 10);  /* dtpref */
        xdr_put_u64(&q->e, (1ull << 62) - 1);
        xdr_put_u32(&q->e, 0); /* time_delta: 1 ns */
        xdr_put_u32(&q->e, 1);
        xdr_put_u32(&q->e, 0x0001u | 0x0002u | 0x0008u | 0x0010u); /* LINK SYMLINK HOMOGENEOUS CANSETTIME */
    }
    inode_free(in);
}

static void p_pathconf(struct nq *q)
{
    struct fh fh;
    enum nfsstat3 st = get_fh(q, &fh);
    Cairn__Inode *in = NULL;

    ARGS_OK(q);
    if (!st)
        st = load(q, fh.ino, &in, NULL);
    xdr_put_u32(&q->e, st);
    put_post_attr(q, fh.ino, in);
    if (!st) {
        xdr_put_u32(&q->e, 65535);         /* linkmax */
        xdr_put_u32(&q->e, META_NAME_MAX); /* name_max */
        xdr_put_bool(&q->e, true);         /* no_trunc */
        xdr_put_bool(&q->e, true);         /* chown_restricted */
        xdr_put_bool(&q->e, false);        /* case_insensitive */
        xdr_put_bool(&q->e, true);         /* case_preserving */
    }
    inode_free(in);
}

/* ---- MOUNT v3 ---- */

enum { MNT3_OK = 0, MNT3ERR_NOENT = 2, MNT3ERR_ACCES = 13, MNT3ERR_NOTDIR = 20,
       MNT3ERR_INVAL = 22, MNT3ERR_NAMETOOLONG = 63, MNT3ERR_SERVERFAULT = 10006 };

/* Resolve an export path from the root, directory by directory. */
static int resolve_path(struct nq *q, const char *path, uint64_t *ino)
{
    uint64_t dir = META_ROOT_INO;
    const char *p = path;

    while (*p) {
        size_t n;
        Cairn__Dirent *d;
        int rc;

        while (*p == '/')
            p++;
        n = strcspn(p, "/");
        if (!n)
            break;
        rc = meta_dirent_get(q->cl, dir, p, n, true, &d, NULL);
        if (rc)
            return rc;
        dir = d->ino;
        cairn__dirent__free_unpacked(d, NULL);
        p += n;
    }
    *ino = dir;
    return 0;
}

/* MNT of an export's path or of any directory below it (as "/bucket/dataset"): the handle
 * belongs to the longest export that holds the path. */
static void m_mnt(struct nq *q)
{
    uint32_t len;
    const uint8_t *p = xdr_get_var(&q->d, NFS_EXPORT_PATH_MAX - 1, &len);
    const struct nfs_export *x = NULL;
    char path[NFS_EXPORT_PATH_MAX];
    size_t n = 0;
    uint64_t ino;
    int rc;

    ARGS_OK(q);
    /* Normalise: one '/' between names, none at the end; "." and ".." refused. */
    for (uint32_t i = 0; i < len; i++) {
        if (p[i] == '/' && n && path[n - 1] == '/')
            continue;
        if (p[i] == 0) {
            xdr_put_u32(&q->e, MNT3ERR_INVAL);
            return;
        }
        path[n++] = (char)p[i];
    }
    if (n == 0 || path[0] != '/') {
        memmove(path + 1, path, n);
        path[0] = '/';
        n++;
    }
    while (n > 1 && path[n - 1] == '/')
        n--;
    path[n] = 0;
    if (strstr(path, "/./") || strstr(path, "/../") || (n >= 2 && !strcmp(path + n - 2, "/.")) ||
        (n >= 3 && !strcmp(path + n - 3, "/.."))) {
        xdr_put_u32(&q->e, MNT3ERR_INVAL);
        return;
    }
    for (size_t l = n; l > 0 && !x; l--) {
        if (l == n || path[l] == '/' || l == 1)
            x = nfs_export_by_path(&q->app->exports, path, l);
    }
    if (!x) {
        xdr_put_u32(&q->e, MNT3ERR_NOENT);
        return;
    }
    if (!nfs_export_match(x, rpcsrv_peer(q->call))) {
        log_info(TAG, "mount of %s refused for %s", path, rpcsrv_peer_str(q->call));
        xdr_put_u32(&q->e, MNT3ERR_ACCES);
        return;
    }
    rc = resolve_path(q, path, &ino);
    if (rc) {
        xdr_put_u32(&q->e, rc == CAIRN_ENOENT ? MNT3ERR_NOENT : MNT3ERR_SERVERFAULT);
        return;
    }
    q->x = x;
    xdr_put_u32(&q->e, MNT3_OK);
    put_fh(q, ino);
    xdr_put_u32(&q->e, 1);
    xdr_put_u32(&q->e, RPC_AUTH_SYS);
}

/* EXPORT lists only what the caller may mount: clients such as libnfs mount every export
 * nested under the one asked for, and one refused there fails the whole mount. */
static void m_export(struct nq *q)
{
    for (unsigned i = 0; i < q->app->exports.n; i++) {
        const struct nfs_export *x = &q->app->exports.v[i];

        if (!nfs_export_match(x, rpcsrv_peer(q->call)))
            continue;

        xdr_put_bool(&q->e, true);
        xdr_put_var(&q->e, x->path, (uint32_t)strlen(x->path));
        for (unsigned j = 0; j < x->nrules; j++) {
            xdr_put_bool(&q->e, true);
            xdr_put_var(&q->e, x->rules[j].text, (uint32_t)strlen(x->rules[j].text));
        }
        xdr_put_bool(&q->e, false);
    }
    xdr_put_bool(&q->e, false);
}

static bool mount_proc(struct nq *q)
{
    switch (q->c.proc) {
    case 0: return true;                                   /* NULL */
    case 1: m_mnt(q); return true;                         /* MNT */
    case 2: xdr_put_bool(&q->e, false); return true;       /* DUMP: no mount list is kept */
    case 3: xdr_get_var(&q->d, 1024, &(uint32_t){0});      /* UMNT */
        q->garbage = !xdr_dec_ok(&q->d);
        return true;
    case 4: return true;                                   /* UMNTALL */
    case 5: m_export(q); return true;                      /* EXPORT */
    default: return false;
    }
}

/* ---- dispatch ---- */

typedef void (*nfs_proc)(struct nq *q);

static const nfs_proc nfs_procs[22] = {
    NULL,       p_getattr, p_setattr, p_lookup,  p_access,  p_readlink,  p_read,
    p_write,    p_create,  p_mkdir,   p_symlink, p_mknod,   p_remove,    p_rmdir,
    p_rename,   p_link,    p_readdir, p_readdirplus, p_fsstat, p_fsinfo, p_pathconf,
    p_commit,
};

static void reply(struct nq *q)
{
    size_t len;
    uint8_t *buf = xdr_enc_take(&q->e, &len);

    if (buf)
        rpcsrv_reply(q->call, buf, len);
    else
        rpcsrv_drop(q->call);
}

static void nfs_handle(void *appv, void *wstate, struct rpcsrv_call *call, unsigned listener,
                       const uint8_t *rec, size_t len)
{
    struct nq q = {.app = appv, .w = wstate, .call = call};
    bool known;

    q.cl = q.w->cl;
    xdr_enc_init(&q.e, REPLY_MAX);
    switch (rpc_decode_call(rec, len, &q.c)) {
    case RPC_DEC_OK: break;
    case RPC_DEC_MISMATCH: rpc_reply_rpc_mismatch(&q.e, q.c.xid); reply(&q); return;
    case RPC_DEC_BADCRED: rpc_reply_auth_error(&q.e, q.c.xid, RPC_AUTH_BADCRED); reply(&q); return;
    case RPC_DEC_TOOWEAK: rpc_reply_auth_error(&q.e, q.c.xid, RPC_AUTH_TOOWEAK); reply(&q); return;
    default:
        xdr_enc_fini(&q.e);
        rpcsrv_drop(call);
        return;
    }
    {
        uint32_t prog = listener == MOUNT_LISTENER ? MOUNT_PROGRAM : NFS_PROGRAM;
        uint32_t vers = listener == MOUNT_LISTENER ? MOUNT_V3 : NFS_V3;

        if (q.c.prog != prog) {
            rpc_reply_accepted(&q.e, q.c.xid, RPC_PROG_UNAVAIL, 0, 0);
            reply(&q);
            return;
        }
        if (q.c.vers != vers) {
            rpc_reply_accepted(&q.e, q.c.xid, RPC_PROG_MISMATCH, vers, vers);
            reply(&q);
            return;
        }
    }
    xdr_dec_init(&q.d, q.c.args, q.c.args_len);
    rpc_reply_accepted(&q.e, q.c.xid, RPC_SUCCESS, 0, 0);
    if (listener == MOUNT_LISTENER) {
        known = mount_proc(&q);
    } else {
        known = q.c.proc < CAIRN_ARRAY_SIZE(nfs_procs);
        if (known && nfs_procs[q.c.proc])
            nfs_procs[q.c.proc](&q);
    }
    if (!known) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_PROC_UNAVAIL, 0, 0);
    } else if (q.garbage) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_GARBAGE_ARGS, 0, 0);
    } else if (q.redo_status) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_SUCCESS, 0, 0);
        xdr_put_u32(&q.e, q.redo_status);
        xdr_put_bool(&q.e, false); /* no attributes: READ3resfail, READDIR3resfail */
    } else if (!xdr_enc_ok(&q.e)) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_SYSTEM_ERR, 0, 0);
    }
    reply(&q);
    inode_free(q.dir_in);
    cn_fileio_run_deferred(&q.w->fio, false);
}

/* ---- app ---- */

static void *nfs_worker_init(void *appv, unsigned idx)
{
    struct nfs_app *app = appv;
    struct nfs_worker *w = calloc(1, sizeof(*w));
    int rc;

    if (!w)
        return NULL;
    rc = cl_cluster_open(&app->cfg.cluster, &w->cl);
    if (rc) {
        log_error(TAG, "worker %u: cluster view: %s", idx, cairn_strerror(rc));
        free(w);
        return NULL;
    }
    cn_fileio_init(&w->fio, w->cl);
    w->fio.cache = app->scache;
    return w;
}

static void nfs_worker_fini(void *appv, void *wstate)
{
    struct nfs_worker *w = wstate;

    (void)appv;
    if (!w)
        return;
    cn_fileio_fini(&w->fio);
    cl_cluster_close(w->cl);
    free(w);
}

/* The root directory's inode, made on first start of a cluster (open to all, like /tmp
 * without the sticky bit: buckets are made in it by S3 and NFS alike). */
static int ensure_root(struct cl_cluster *cl)
{
    Cairn__Inode *in;
    uint64_t ver = 0;
    int rc = meta_inode_get(cl, META_ROOT_INO, &in, &ver);

    if (rc == 0) {
        inode_free(in);
        return 0;
    }
    if (rc == CAIRN_ENOENT) {
        Cairn__Inode root = CAIRN__INODE__INIT;

        root.type = CAIRN__FILE_TYPE__FT_DIR;
        root.mode = 0777;
        root.nlink = 2;
        root.explicit_dir = true;
        root.parent = META_ROOT_INO;
        root.mtime_ns = root.ctime_ns = root.btime_ns = now_ns();
        rc = meta_inode_put(cl, META_ROOT_INO, &root, ver, NULL);
        if (rc == CAIRN_ECONFLICT)
            rc = 0; /* another C-node made it */
    }
    return rc;
}

int nfs_app_init(const struct nfs_config *cfg, struct rpcsrv_app *out)
{
    struct nfs_app *app = calloc(1, sizeof(*app));
    struct cl_cluster *cl = NULL;
    char err[256];
    int rc;

    if (!app)
        return CAIRN_ENOMEM;
    app->cfg = *cfg;
    rc = nfs_exports_parse(cfg->exports, &app->exports, err, sizeof(err));
    if (rc) {
        log_error(TAG, "NFS_EXPORTS: %s", err);
        free(app);
        return rc;
    }
    app->cookies = calloc(COOKIE_SLOTS, sizeof(*app->cookies));
    if (!app->cookies || RAND_bytes(app->verf, sizeof(app->verf)) != 1 ||
        cn_scache_create(NFS_STRIPE_CACHE, &app->scache)) {
        rc = CAIRN_ENOMEM;
        goto err;
    }
    rc = cl_cluster_open(&cfg->cluster, &cl);
    if (!rc)
        rc = meta_secret(cl, "nfs-fh", app->fh_key);
    if (!rc)
        rc = ensure_root(cl);
    cl_cluster_close(cl);
    if (rc) {
        log_error(TAG, "cannot set up NFS from the metadata: %s", cairn_strerror(rc));
        goto err;
    }
    pthread_mutex_init(&app->wb.lock, NULL);
    pthread_mutex_init(&app->cookie_lock, NULL);
    memset(out, 0, sizeof(*out));
    out->app = app;
    out->worker_init = nfs_worker_init;
    out->worker_fini = nfs_worker_fini;
    out->handle = nfs_handle;
    return 0;
err:
    nfs_exports_fini(&app->exports);
    cn_scache_destroy(app->scache);
    free(app->cookies);
    free(app);
    return rc;
}

void nfs_app_fini(struct rpcsrv_app *out)
{
    struct nfs_app *app = out->app;

    if (!app)
        return;
    /* Uncommitted UNSTABLE writes die with the C-node: their clients resend them when they
     * see the next C-node's write verifier. */
    for (unsigned i = 0; i < WB_BUCKETS; i++) {
        while (app->wb.b[i]) {
            struct wfile *f = app->wb.b[i];

            app->wb.b[i] = f->next;
            runs_free(f->runs);
            pthread_mutex_destroy(&f->lock);
            free(f);
        }
    }
    pthread_mutex_destroy(&app->wb.lock);
    pthread_mutex_destroy(&app->cookie_lock);
    nfs_exports_fini(&app->exports);
    cn_scache_destroy(app->scache);
    free(app->cookies);
    free(app);
    out->app = NULL;
}
