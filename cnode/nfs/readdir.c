/*
 * readdir.c - READDIR and READDIRPLUS, and their cookies (see call.h).
 *
 * A cookie is a 63-bit hash of the entry's sort name, so any C-node can continue any listing: a
 * C-node keeps a small cache from (directory, cookie) to name, and on a miss (another C-node
 * gave the cookie out, or this one restarted) finds the name by scanning the directory once.
 * The cookie verifier is always zero: cookies stay valid while entries come and go.
 * READDIRPLUS reads the inodes of the entries that fit the reply together (fs_inode_get_many:
 * about one round trip per page instead of one per entry).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/nfs/call.h"
#include "common/cairn.h"

#define COOKIE_SLOTS 4096u
#define READDIR_MAX_COUNT (1u << 20)
#define PAGE 256u

struct cookie_slot {
    uint64_t dir, cookie;
    uint32_t len;
    char name[FS_NAME_MAX + 2]; /* the entry's sort name ("d/" for directories) */
};

struct nfs_cookies {
    pthread_mutex_t lock;
    struct cookie_slot slot[COOKIE_SLOTS];
};

int nfs_cookies_create(struct nfs_cookies **out)
{
    struct nfs_cookies *c = calloc(1, sizeof(*c));

    if (!c)
        return CAIRN_ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

void nfs_cookies_destroy(struct nfs_cookies *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The cookie of an entry: a hash of its sort name, never 0, 1 or 2 (the start, "." and ".."). */
static uint64_t cookie_of(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 1099511628211ull;
    h &= 0x7fffffffffffffffull;
    return h < 3 ? h + 3 : h;
}

static struct cookie_slot *cookie_slot(struct nfs_cookies *c, uint64_t dir, uint64_t cookie)
{
    return &c->slot[((dir ^ cookie) * 0x9E3779B97F4A7C15ull >> 40) % COOKIE_SLOTS];
}

static void cookie_remember(struct nfs_cookies *c, uint64_t dir, uint64_t cookie,
                            const char *name, size_t len)
{
    struct cookie_slot *s;

    if (len > FS_NAME_MAX + 1)
        return;
    pthread_mutex_lock(&c->lock);
    s = cookie_slot(c, dir, cookie);
    s->dir = dir;
    s->cookie = cookie;
    s->len = (uint32_t)len;
    memcpy(s->name, name, len);
    pthread_mutex_unlock(&c->lock);
}

/* The start key just after the sort name (name, len): the name and a NUL. */
static uint32_t after_name(char *start, const char *name, uint32_t len)
{
    memcpy(start, name, len);
    start[len] = 0;
    return len + 1;
}

/* The sort name a cookie continues after: from the cache, else by scanning the directory for
 * the entry with that hash (another C-node gave the cookie out, or this one forgot it). */
static enum nfsstat3 cookie_name(struct nq *q, uint64_t dir, uint64_t cookie, char *name,
                                 uint32_t *len)
{
    struct nfs_cookies *cc = q->app->cookies;
    struct cookie_slot *s;
    char start[FS_NAME_MAX + 2];
    uint32_t slen = 0;
    bool found = false;

    pthread_mutex_lock(&cc->lock);
    s = cookie_slot(cc, dir, cookie);
    if (s->dir == dir && s->cookie == cookie) {
        memcpy(name, s->name, s->len);
        *len = s->len;
        found = true;
    }
    pthread_mutex_unlock(&cc->lock);
    if (found)
        return NFS3_OK;
    for (;;) {
        struct fs_page p;
        int rc = fs_dir_page(q->fs, dir, slen ? start : NULL, slen, 1000, &p);

        if (rc)
            return nfs_err(rc);
        for (unsigned i = 0; i < p.n && !found; i++) {
            if (cookie_of(p.v[i].sort, p.v[i].sort_len) == cookie) {
                memcpy(name, p.v[i].sort, p.v[i].sort_len);
                *len = p.v[i].sort_len;
                found = true;
            }
        }
        if (found || !p.more || p.n == 0) {
            fs_page_fini(&p);
            break;
        }
        slen = after_name(start, p.v[p.n - 1].sort, p.v[p.n - 1].sort_len);
        fs_page_fini(&p);
    }
    return found ? NFS3_OK : NFS3ERR_BAD_COOKIE;
}

/* The inodes of one page's entries that will fit the reply, read together.  in[i] and rc[i]
 * belong to the page's entry i for i < n; the entries past n are read alone if the reply has
 * room for them after all (an entry without attributes takes less room than counted here). */
struct prefetch {
    unsigned n;
    Cairn__Inode **in; /* owned */
    int *rc;
};

/* The bytes an entry takes in the reply (entry3 / entryplus3) and in dircount. */
static size_t entry_bytes(uint32_t nl, bool plus)
{
    return 4 + 8 + 4 + CAIRN_ALIGN_UP(nl, 4) + 8 +
           (plus ? 4 + NFS_ATTR_BYTES + 4 + 4 + NFS_FH_LEN : 0);
}

static size_t dir_bytes(uint32_t nl)
{
    return 8 + 4 + CAIRN_ALIGN_UP(nl, 4) + 8;
}

static void prefetch_inodes(struct nq *q, const struct fs_page *p, size_t base, size_t used_dir,
                            uint32_t maxcount, uint32_t dircount, struct prefetch *pf)
{
    size_t len = q->e.len - base, room = maxcount - CAIRN_MIN(maxcount, 200u);
    uint64_t *inos = calloc(p->n ? p->n : 1, sizeof(*inos));
    unsigned k = 0, fit = 0;

    pf->n = 0;
    pf->in = calloc(p->n ? p->n : 1, sizeof(*pf->in));
    pf->rc = calloc(p->n ? p->n : 1, sizeof(*pf->rc));
    if (!inos || !pf->in || !pf->rc)
        goto out; /* every entry is read alone */
    for (unsigned i = 0; i < p->n; i++) {
        size_t eb = entry_bytes(p->v[i].len, true), db = dir_bytes(p->v[i].len);

        if (!p->v[i].d) {
            fit = i + 1;
            continue;
        }
        if (len + eb + 8 > room || used_dir + db > dircount)
            break;
        len += eb;
        used_dir += db;
        inos[k++] = p->v[i].d->ino;
        fit = i + 1;
    }
    fs_inode_get_many(q->fs, k, inos, pf->in, pf->rc);
    /* Spread the k results over the entries they belong to (undecodable entries have none). */
    for (unsigned i = fit, j = k; i-- > 0;) {
        if (!p->v[i].d)
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

static void prefetch_fini(const struct fs_page *p, struct prefetch *pf)
{
    if (pf->in)
        for (unsigned i = 0; i < p->n; i++)
            fs_inode_free(pf->in[i]);
    free(pf->in);
    free(pf->rc);
    *pf = (struct prefetch){0};
}

/* READDIR and READDIRPLUS. */
static void readdir_common(struct nq *q, bool plus)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    uint64_t cookie = xdr_get_u64(&q->d);
    uint32_t dircount = 0, maxcount;
    Cairn__Inode *dir = NULL;
    char start[FS_NAME_MAX + 3];
    uint32_t slen = 0;
    bool from_start = true, eof = false;
    size_t base, used_dir = 0;
    unsigned emitted = 0;
    char last[FS_NAME_MAX + 2];
    uint32_t last_len = 0;
    uint64_t last_cookie = 0;
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
        st = nfs_load(q, fh.ino, &dir, NULL);
    if (!st && !fs_is_dir(dir))
        st = NFS3ERR_NOTDIR;
    if (!st && !fs_may(&q->cred, dir, FS_MAY_R))
        st = NFS3ERR_ACCES;
    if (!st && cookie > 2) {
        char name[FS_NAME_MAX + 2];
        uint32_t nl = 0;

        st = cookie_name(q, fh.ino, cookie, name, &nl);
        if (!st) {
            slen = after_name(start, name, nl);
            from_start = false;
        }
    }
    xdr_put_u32(&q->e, st);
    nfs_put_post_attr(q, fh.ino, dir);
    if (st) {
        fs_inode_free(dir);
        return;
    }
    xdr_put_fixed(&q->e, "\0\0\0\0\0\0\0\0", 8);
    base = q->e.len;
    /* Room kept for the list end and eof: 8 bytes. */
#define FITS(entry_b, dir_b)                                                                       \
    (q->e.len - base + (entry_b) + 8 <= maxcount - CAIRN_MIN(maxcount, 200u) &&                   \
     used_dir + (dir_b) <= dircount)
    if (from_start && cookie < 2) {
        for (uint64_t c = cookie + 1; c <= 2; c++) {
            uint64_t ino = c == 1 ? fh.ino
                                  : (dir->parent && fh.ino != FS_ROOT_INO ? dir->parent
                                                                         : FS_ROOT_INO);
            uint32_t nl = (uint32_t)c;

            if (!FITS(entry_bytes(nl, plus), 24u))
                goto full;
            xdr_put_bool(&q->e, true);
            xdr_put_u64(&q->e, ino);
            xdr_put_var(&q->e, "..", nl);
            xdr_put_u64(&q->e, c);
            if (plus) {
                Cairn__Inode *in = NULL;

                if (c == 1 || nfs_load(q, ino, &in, NULL) == NFS3_OK)
                    nfs_put_post_attr(q, ino, c == 1 ? dir : in);
                else
                    xdr_put_bool(&q->e, false);
                fs_inode_free(in);
                xdr_put_bool(&q->e, true);
                nfs_put_fh(q, ino);
            }
            used_dir += 24;
            emitted++;
        }
    }
    for (;;) {
        struct fs_page p;
        int rc = fs_dir_page(q->fs, fh.ino, slen ? start : NULL, slen, PAGE, &p);

        if (rc) {
            st = nfs_err(rc);
            break;
        }
        if (plus)
            prefetch_inodes(q, &p, base, used_dir, maxcount, dircount, &pf);
        for (unsigned i = 0; i < p.n; i++) {
            const struct fs_entry *e = &p.v[i];
            uint64_t c = cookie_of(e->sort, e->sort_len);
            Cairn__Inode *in = NULL;

            if (!e->d)
                continue;
            if (!FITS(entry_bytes(e->len, plus), dir_bytes(e->len))) {
                prefetch_fini(&p, &pf);
                fs_page_fini(&p);
                goto full;
            }
            xdr_put_bool(&q->e, true);
            xdr_put_u64(&q->e, e->d->ino);
            xdr_put_var(&q->e, e->name, e->len);
            xdr_put_u64(&q->e, c);
            if (plus) {
                int irc;

                if (i < pf.n) { /* read with the rest of the page */
                    in = pf.in[i];
                    pf.in[i] = NULL;
                    irc = pf.rc[i];
                } else {
                    irc = fs_inode_get(q->fs, e->d->ino, &in, NULL);
                }
                if (irc == 0) {
                    nfs_put_post_attr(q, e->d->ino, in);
                    xdr_put_bool(&q->e, true);
                    nfs_put_fh(q, e->d->ino);
                } else {
                    xdr_put_bool(&q->e, false);
                    xdr_put_bool(&q->e, false);
                }
                fs_inode_free(in);
            }
            used_dir += dir_bytes(e->len);
            emitted++;
            memcpy(last, e->sort, e->sort_len);
            last_len = e->sort_len;
            last_cookie = c;
        }
        prefetch_fini(&p, &pf);
        if (!p.more || p.n == 0) {
            fs_page_fini(&p);
            eof = true;
            break;
        }
        slen = after_name(start, p.v[p.n - 1].sort, p.v[p.n - 1].sort_len);
        fs_page_fini(&p);
    }
full:
#undef FITS
    if (!st && emitted == 0 && !eof)
        st = NFS3ERR_TOOSMALL;
    if (st) {
        /* Start over: an error carries only the directory's attributes. */
        q->e.len = 0;
        q->redo_status = st;
        fs_inode_free(dir);
        return;
    }
    if (last_len)
        cookie_remember(q->app->cookies, fh.ino, last_cookie, last, last_len);
    xdr_put_bool(&q->e, false);
    xdr_put_bool(&q->e, eof);
    fs_inode_free(dir);
}

void nfs_p_readdir(struct nq *q)
{
    readdir_common(q, false);
}

void nfs_p_readdirplus(struct nq *q)
{
    readdir_common(q, true);
}
