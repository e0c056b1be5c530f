/*
 * wbuf.c - the write buffer: UNSTABLE writes held in the C-node until COMMIT (see call.h).
 *
 * Writes are kept per file as runs of contiguous bytes, merged as writes arrive in any order,
 * until COMMIT, until the file holds NFS_WBUF_FILE_MAX or the C-node NFS_WBUF_TOTAL_MAX, or
 * until a stable write; then the file's runs go to the D-nodes together (fs_write: one new
 * object per run, laid over the file's extent map by compare-and-set).  READ and GETATTR on
 * this C-node see buffered bytes; other C-nodes see them after COMMIT (close-to-open).  The
 * buffer is safe to lose: a client whose C-node died sees a new write verifier at its next
 * COMMIT and sends its uncommitted writes again.  So a flush that fails drops the file's runs
 * the same way rather than keep bytes that may never be committed visible here.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cnode/nfs/call.h"
#include "common/cairn.h"
#include "common/log.h"

#define WB_BUCKETS 1024u

/* A contiguous run of buffered bytes of one file. */
struct wrun {
    struct wrun *next; /* offset order, runs neither overlap nor touch */
    uint64_t off;
    size_t len, cap;
    uint8_t *data; /* owned */
    uint64_t since; /* the inode's version when its oldest bytes arrived */
};

struct wfile {
    struct wfile *next; /* hash chain */
    uint64_t ino;
    unsigned refs;        /* under the table lock */
    pthread_mutex_t lock; /* runs, bytes; held across a flush */
    struct wrun *runs;
    size_t bytes;
};

struct nfs_wtable {
    pthread_mutex_t lock;
    struct wfile *b[WB_BUCKETS];
    size_t total; /* bytes buffered in all files (under lock) */
};

int nfs_wb_create(struct nfs_wtable **out)
{
    struct nfs_wtable *t = calloc(1, sizeof(*t));

    if (!t)
        return CAIRN_ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    *out = t;
    return 0;
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

void nfs_wb_destroy(struct nfs_wtable *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < WB_BUCKETS; i++) {
        while (t->b[i]) {
            struct wfile *f = t->b[i];

            t->b[i] = f->next;
            runs_free(f->runs);
            pthread_mutex_destroy(&f->lock);
            free(f);
        }
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static unsigned wb_bucket(uint64_t ino)
{
    return (unsigned)((ino * 0x9E3779B97F4A7C15ull) >> 54) % WB_BUCKETS;
}

/* The buffer of file ino, with a reference (create: make one if there is none). */
static struct wfile *wb_get(struct nfs_wtable *t, uint64_t ino, bool create)
{
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

static void wb_put(struct nfs_wtable *t, struct wfile *f)
{
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

static void wb_account(struct nfs_wtable *t, ssize_t delta)
{
    pthread_mutex_lock(&t->lock);
    t->total = (size_t)((ssize_t)t->total + delta);
    pthread_mutex_unlock(&t->lock);
}

static size_t wb_total(struct nfs_wtable *t)
{
    size_t n;

    pthread_mutex_lock(&t->lock);
    n = t->total;
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* Buffer [off, off + len), arrived at inode version since (f locked).  The runs it overlaps
 * or touches merge into one, as old as the oldest of them. */
static int wb_add(struct nfs_wtable *t, struct wfile *f, uint64_t off, const uint8_t *data,
                  size_t len, uint64_t since)
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
        first->since = CAIRN_MIN(first->since, since);
        f->bytes += len;
        wb_account(t, (ssize_t)len);
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
    r->since = since;
    r->len = r->cap = (size_t)(end - start);
    r->data = malloc(r->cap);
    if (!r->data) {
        free(r);
        return CAIRN_ENOMEM;
    }
    for (struct wrun *o = first; o != stop;) {
        struct wrun *n = o->next;

        memcpy(r->data + (o->off - start), o->data, o->len);
        r->since = CAIRN_MIN(r->since, o->since);
        f->bytes -= o->len;
        free(o->data);
        free(o);
        o = n;
    }
    memcpy(r->data + (off - start), data, len);
    r->next = stop;
    *pp = r;
    f->bytes += r->len;
    wb_account(t, (ssize_t)f->bytes - (ssize_t)before);
    return 0;
}

/* Drop the runs of f (locked). */
static void drop_runs(struct nfs_wtable *t, struct wfile *f)
{
    runs_free(f->runs);
    f->runs = NULL;
    wb_account(t, -(ssize_t)f->bytes);
    f->bytes = 0;
}

void nfs_verf(struct nfs_app *app, uint8_t out[8])
{
    uint64_t v = atomic_load(&app->verf);

    memcpy(out, &v, 8);
}

/* Write the runs of f (locked) to the D-nodes (fs_write).  On success the runs are gone.  On
 * failure they are dropped too, with a new write verifier, and the error goes to the caller
 * (COMMIT or a stable WRITE): kept, the runs of a client that gave up would show in this
 * C-node's reads over whatever was committed since, and a client that retries learns from the
 * new verifier that it must send them again.  Runs older than bytes committed over them since
 * are dropped the same way (*dropped): their client sends them again, now after those bytes. */
static enum nfsstat3 flush(struct nq *q, struct wfile *f, Cairn__Inode **after, bool *dropped)
{
    struct fs_range *r;
    size_t n = 0;
    int rc;

    for (struct wrun *w = f->runs; w; w = w->next)
        n++;
    r = calloc(n ? n : 1, sizeof(*r));
    if (!r)
        return NFS3ERR_IO;
    n = 0;
    for (struct wrun *w = f->runs; w; w = w->next)
        r[n++] = (struct fs_range){.off = w->off, .len = w->len, .data = w->data,
                                   .since = w->since};
    rc = fs_write(q->fs, f->ino, r, n, NULL, after);
    free(r);
    if (rc == CAIRN_EPRECOND) {
        log_info(NFS_TAG, "inode %016llx: buffered writes are older than bytes committed over "
                          "them since; dropped, new write verifier",
                 (unsigned long long)f->ino);
        drop_runs(q->app->wb, f);
        atomic_fetch_add(&q->app->verf, 0x9E3779B97F4A7C15ull);
        *dropped = true;
        return NFS3_OK;
    }
    if (rc) {
        log_info(NFS_TAG, "inode %016llx: buffered writes did not land (%s); dropped, new write "
                          "verifier", (unsigned long long)f->ino, cairn_strerror(rc));
        drop_runs(q->app->wb, f);
        atomic_fetch_add(&q->app->verf, 0x9E3779B97F4A7C15ull);
        return rc == CAIRN_ENOENT ? NFS3ERR_STALE : nfs_err(rc);
    }
    drop_runs(q->app->wb, f);
    return NFS3_OK;
}

enum nfsstat3 nfs_wb_write(struct nq *q, uint64_t ino, uint64_t off, const uint8_t *data,
                           uint32_t count, uint32_t stable, uint64_t since, uint32_t *committed,
                           Cairn__Inode **after)
{
    struct nfs_wtable *t = q->app->wb;
    struct wfile *f = wb_get(t, ino, true);
    bool dropped = false;
    enum nfsstat3 st;

    *after = NULL;
    *committed = stable;
    if (!f)
        return NFS3ERR_IO;
    pthread_mutex_lock(&f->lock);
    st = nfs_err(wb_add(t, f, off, data, count, since));
    /* Stable writes, big buffers and a full C-node go to the D-nodes now. */
    if (!st && (stable != NFS_UNSTABLE || f->bytes >= NFS_WBUF_FILE_MAX ||
                wb_total(t) >= NFS_WBUF_TOTAL_MAX)) {
        st = flush(q, f, after, &dropped);
        if (dropped)
            st = NFS3ERR_JUKEBOX; /* this write went with the others: the client retries it */
        else if (!st)
            *committed = NFS_FILE_SYNC;
    }
    pthread_mutex_unlock(&f->lock);
    wb_put(t, f);
    return st;
}

enum nfsstat3 nfs_wb_flush(struct nq *q, uint64_t ino, Cairn__Inode **after)
{
    struct wfile *f = wb_get(q->app->wb, ino, false);
    enum nfsstat3 st = NFS3_OK;
    bool dropped = false;

    if (after)
        *after = NULL;
    if (!f)
        return NFS3_OK;
    pthread_mutex_lock(&f->lock);
    if (f->runs)
        st = flush(q, f, after, &dropped); /* dropped: the verifier the caller sends changed */
    pthread_mutex_unlock(&f->lock);
    wb_put(q->app->wb, f);
    return st;
}

uint64_t nfs_wb_size(struct nfs_app *app, uint64_t ino, uint64_t size)
{
    struct wfile *f = wb_get(app->wb, ino, false);

    if (!f)
        return size;
    pthread_mutex_lock(&f->lock);
    for (struct wrun *r = f->runs; r; r = r->next)
        size = CAIRN_MAX(size, r->off + r->len);
    pthread_mutex_unlock(&f->lock);
    wb_put(app->wb, f);
    return size;
}

void nfs_wb_discard(struct nfs_app *app, uint64_t ino)
{
    struct wfile *f = wb_get(app->wb, ino, false);

    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    drop_runs(app->wb, f);
    pthread_mutex_unlock(&f->lock);
    wb_put(app->wb, f);
}

void nfs_wb_overlay(struct nfs_app *app, uint64_t ino, uint64_t off, uint8_t *buf, size_t len)
{
    struct wfile *f = wb_get(app->wb, ino, false);

    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    for (struct wrun *r = f->runs; r; r = r->next) {
        uint64_t s = CAIRN_MAX(off, r->off), e = CAIRN_MIN(off + len, r->off + r->len);

        if (s < e)
            memcpy(buf + (s - off), r->data + (s - r->off), (size_t)(e - s));
    }
    pthread_mutex_unlock(&f->lock);
    wb_put(app->wb, f);
}
