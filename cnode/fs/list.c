/*
 * list.c - reading directories: pages of entries (NFS READDIR, bucket lists) and listings of a
 * bucket's keys (S3 ListObjects).
 *
 * A key listing walks the bucket's tree depth first.  Directory entries sort as "name/", so the
 * walk meets keys in S3 order without sorting; subtrees that roll up into one common prefix are
 * not entered (one look tells whether they hold any key), and subtrees that cannot match the
 * prefix or lie before `after` are skipped.  Implied directories are not keys; explicit ones
 * are ("dir/").
 */
#include "cnode/fs/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"

#define PAGE 256u
#define MAX_DEPTH (FS_KEY_MAX / 2) /* a key of single-byte names has at most this many */

/* ---- pages ---- */

int fs_dir_page(struct fs_ctx *c, uint64_t dir, const char *start, size_t slen, unsigned limit,
                struct fs_page *out)
{
    struct meta_scan *s = calloc(1, sizeof(*s));
    int rc;

    memset(out, 0, sizeof(*out));
    if (!s)
        return CAIRN_ENOMEM;
    rc = meta_dir_scan(c->cl, dir, start, slen, limit, s);
    if (rc) {
        free(s);
        return rc;
    }
    out->v = calloc(s->n ? s->n : 1, sizeof(*out->v));
    if (!out->v) {
        meta_scan_fini(s);
        free(s);
        return CAIRN_ENOMEM;
    }
    for (unsigned i = 0; i < s->n; i++) {
        struct fs_entry *e = &out->v[i];
        uint32_t sl;
        const char *sn = meta_dirent_name(s->entries[i].key, s->entries[i].klen, &sl);

        e->sort = sn;
        e->sort_len = sl;
        e->is_dir = sl > 1 && sn[sl - 1] == '/';
        e->name = sn;
        e->len = e->is_dir ? sl - 1 : sl;
        e->d = cairn__dirent__unpack(NULL, s->entries[i].len, s->entries[i].val);
    }
    out->n = s->n;
    out->more = s->more;
    out->priv = s;
    return 0;
}

void fs_page_fini(struct fs_page *p)
{
    struct meta_scan *s = p->priv;

    for (unsigned i = 0; i < p->n; i++)
        if (p->v[i].d)
            cairn__dirent__free_unpacked(p->v[i].d, NULL);
    free(p->v);
    if (s) {
        meta_scan_fini(s);
        free(s);
    }
    memset(p, 0, sizeof(*p));
}

/* The start key of the page after p: its last sort name and a NUL. */
static size_t page_next(const struct fs_page *p, char *start)
{
    const struct fs_entry *e = &p->v[p->n - 1];

    memcpy(start, e->sort, e->sort_len);
    start[e->sort_len] = 0;
    return e->sort_len + 1;
}

/* ---- what a bucket holds ---- */

int fs_subtree_has_keys(struct fs_ctx *c, uint64_t dir, unsigned depth, bool *has)
{
    char start[FS_NAME_MAX + 2];
    size_t slen = 0;
    int rc;

    *has = false;
    if (depth > MAX_DEPTH)
        return CAIRN_ETOOBIG;
    for (;;) {
        struct fs_page p;

        rc = fs_dir_page(c, dir, slen ? start : NULL, slen, PAGE, &p);
        if (rc)
            return rc;
        for (unsigned i = 0; i < p.n && !*has && !rc; i++) {
            Cairn__Inode *in;

            if (!p.v[i].is_dir) {
                *has = true;
                break;
            }
            if (!p.v[i].d)
                continue;
            if (meta_inode_get(c->cl, p.v[i].d->ino, &in, NULL) == 0) {
                *has = in->explicit_dir;
                fs_inode_free(in);
            }
            if (!*has)
                rc = fs_subtree_has_keys(c, p.v[i].d->ino, depth + 1, has);
        }
        if (rc || *has || !p.more || !p.n) {
            fs_page_fini(&p);
            return rc;
        }
        slen = page_next(&p, start);
        fs_page_fini(&p);
    }
}

int fs_remove_empty_dirs(struct fs_ctx *c, uint64_t dir, unsigned depth)
{
    int rc;

    if (depth > MAX_DEPTH)
        return CAIRN_ETOOBIG;
    for (;;) {
        struct fs_page p;

        rc = fs_dir_page(c, dir, NULL, 0, PAGE, &p);
        if (rc)
            return rc;
        if (p.n == 0) { /* the end: pages of deleted entries are skipped */
            fs_page_fini(&p);
            return 0;
        }
        for (unsigned i = 0; i < p.n && !rc; i++) {
            const struct fs_entry *e = &p.v[i];

            if (!e->d || !e->is_dir) {
                rc = CAIRN_EEXIST; /* a file appeared: not empty */
            } else {
                rc = fs_remove_empty_dirs(c, e->d->ino, depth + 1);
                if (!rc)
                    rc = meta_dirent_del(c->cl, dir, e->name, e->len, true, META_ANY);
                if (!rc)
                    meta_inode_del(c->cl, e->d->ino, META_ANY);
                if (rc == CAIRN_ENOENT)
                    rc = 0;
            }
        }
        fs_page_fini(&p);
        if (rc)
            return rc;
    }
}

/* ---- key listings ---- */

struct lister {
    struct fs_ctx *c;
    const struct fs_list_query *q;
    char after[FS_KEY_MAX + 2]; /* list keys > after */
    size_t alen;
    unsigned max, count;
    bool truncated, stop;
    char last[FS_KEY_MAX + 2]; /* the last item listed (a common prefix ends in 0xff) */
    size_t last_len;
    char lastcp[FS_KEY_MAX + 1];
    size_t lastcp_len;
    int err;
};

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, CAIRN_MIN(al, bl));

    return c ? c : (al < bl ? -1 : al > bl);
}

static bool starts(const char *s, size_t sl, const char *p, size_t pl)
{
    return sl >= pl && !memcmp(s, p, pl);
}

/* Count one more item; false (and truncated) if the page is already full. */
static bool take(struct lister *ls)
{
    if (ls->count >= ls->max) {
        ls->truncated = true;
        ls->stop = true;
        return false;
    }
    ls->count++;
    return true;
}

static void emit_cp(struct lister *ls, const char *cp, size_t cl)
{
    if (cl == ls->lastcp_len && !memcmp(cp, ls->lastcp, cl))
        return;
    if (bytes_cmp(cp, cl, ls->after, ls->alen) <= 0 && ls->alen &&
        starts(ls->after, ls->alen, cp, cl))
        return; /* the previous page ended inside this prefix */
    if (!take(ls))
        return;
    memcpy(ls->lastcp, cp, cl);
    ls->lastcp_len = cl;
    memcpy(ls->last, cp, cl);
    ls->last[cl] = (char)0xff;
    ls->last_len = cl + 1;
    if (ls->q->prefix_fn)
        ls->q->prefix_fn(ls->q->arg, cp, cl);
}

/* Where key rolls up with the delimiter: the common prefix length, or 0. */
static size_t cp_len(const struct lister *ls, const char *key, size_t kl)
{
    const char *d;

    if (!ls->q->dlen || kl <= ls->q->plen)
        return 0;
    d = memmem(key + ls->q->plen, kl - ls->q->plen, ls->q->delim, ls->q->dlen);
    return d ? (size_t)(d - key) + ls->q->dlen : 0;
}

static void emit_key(struct lister *ls, const char *key, size_t kl, uint64_t size,
                     const char *etag, int64_t mtime)
{
    size_t cl;

    if (bytes_cmp(key, kl, ls->after, ls->alen) <= 0 ||
        !starts(key, kl, ls->q->prefix, ls->q->plen))
        return;
    cl = cp_len(ls, key, kl);
    if (cl) {
        emit_cp(ls, key, cl);
        return;
    }
    if (!take(ls))
        return;
    memcpy(ls->last, key, kl);
    ls->last_len = kl;
    if (ls->q->key)
        ls->q->key(ls->q->arg, key, kl, size, etag && *etag ? etag : FS_ETAG_EMPTY, mtime);
}

/* Where to start scanning dir (whose path is path[0, plen)): at the component of `after` or of
 * the prefix that lies in it, whichever is later. */
static size_t scan_start(const struct lister *ls, const char *path, size_t plen, char *start)
{
    const char *prefix = ls->q->prefix;
    size_t plen_q = ls->q->plen, slen = 0;

    if (ls->alen > plen && starts(ls->after, ls->alen, path, plen)) {
        const char *c = ls->after + plen, *sl = memchr(c, '/', ls->alen - plen);
        size_t n = sl ? (size_t)(sl - c) + 1 : ls->alen - plen;

        if (n <= FS_NAME_MAX + 1) {
            memcpy(start, c, n);
            slen = n;
        }
    }
    if (plen_q > plen && starts(prefix, plen_q, path, plen)) {
        const char *c = prefix + plen, *sl = memchr(c, '/', plen_q - plen);
        size_t n = sl ? (size_t)(sl - c) + 1 : plen_q - plen;

        /* Names from here on are >= the prefix's component (maybe a partial name). */
        if (n <= FS_NAME_MAX + 1 && bytes_cmp(c, n, start, slen) > 0) {
            memcpy(start, c, n);
            slen = n;
        }
    }
    return slen;
}

static void walk(struct lister *ls, uint64_t dir, char *path, size_t plen, unsigned depth)
{
    const char *prefix = ls->q->prefix;
    size_t pl = ls->q->plen;
    char start[FS_NAME_MAX + 2];
    size_t slen;

    if (depth > MAX_DEPTH) {
        ls->err = CAIRN_ETOOBIG;
        return;
    }
    slen = scan_start(ls, path, plen, start);
    for (;;) {
        struct fs_page p;
        int rc = fs_dir_page(ls->c, dir, slen ? start : NULL, slen, PAGE, &p);

        if (rc) {
            ls->err = rc;
            return;
        }
        for (unsigned i = 0; i < p.n && !ls->stop && !ls->err; i++) {
            const struct fs_entry *e = &p.v[i];
            size_t kl = plen + e->sort_len;

            if (kl > FS_KEY_MAX)
                continue;
            memcpy(path + plen, e->sort, e->sort_len);
            /* Past every key with the prefix: nothing later in this directory matches. */
            if (bytes_cmp(path, kl, prefix, pl) > 0 && !starts(path, kl, prefix, pl) &&
                !starts(prefix, pl, path, kl)) {
                ls->stop = ls->stop || depth == 0;
                fs_page_fini(&p);
                return;
            }
            if (!e->d)
                continue;
            if (e->is_dir) {
                size_t cl = starts(path, kl, prefix, pl) ? cp_len(ls, path, kl) : 0;
                Cairn__Inode *in = NULL;
                bool has = false;

                if (bytes_cmp(path, kl, ls->after, ls->alen) <= 0 &&
                    !starts(ls->after, ls->alen, path, kl))
                    continue; /* the whole subtree sorts before `after` */
                if (cl) {
                    /* Every key below rolls up into one common prefix. */
                    if (meta_inode_get(ls->c->cl, e->d->ino, &in, NULL) == 0)
                        has = in->explicit_dir;
                    if (!has)
                        ls->err = fs_subtree_has_keys(ls->c, e->d->ino, 0, &has);
                    if (has && !ls->err)
                        emit_cp(ls, path, cl);
                } else if (starts(path, kl, prefix, pl) || starts(prefix, pl, path, kl)) {
                    if (meta_inode_get(ls->c->cl, e->d->ino, &in, NULL) == 0 &&
                        in->explicit_dir)
                        emit_key(ls, path, kl, 0, NULL, in->mtime_ns);
                    if (!ls->stop)
                        walk(ls, e->d->ino, path, kl, depth + 1);
                }
                fs_inode_free(in);
            } else {
                emit_key(ls, path, kl, e->d->size, e->d->etag, e->d->mtime_ns);
            }
        }
        if (ls->stop || ls->err || !p.more || !p.n) {
            fs_page_fini(&p);
            return;
        }
        slen = page_next(&p, start);
        fs_page_fini(&p);
    }
}

int fs_list_keys(struct fs_ctx *c, uint64_t bucket, const struct fs_list_query *q,
                 struct fs_list_result *out)
{
    struct lister *ls = calloc(1, sizeof(*ls));
    char *path = malloc(FS_KEY_MAX + FS_NAME_MAX + 4);
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (!ls || !path) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    if (q->plen > FS_KEY_MAX || q->alen > FS_KEY_MAX + 2) {
        rc = CAIRN_ETOOBIG;
        goto out;
    }
    ls->c = c;
    ls->q = q;
    ls->max = q->max;
    if (q->alen)
        memcpy(ls->after, q->after, q->alen);
    ls->alen = q->alen;
    if (ls->max == 0)
        ls->stop = true;
    else
        walk(ls, bucket, path, 0, 0);
    if (ls->err) {
        rc = ls->err;
        goto out;
    }
    out->count = ls->count;
    /* A full page is truncated only if another item exists: look for one, listing nothing. */
    if (!ls->truncated && ls->max && ls->count == ls->max) {
        struct fs_list_query probe = *q;

        probe.key = NULL;
        probe.prefix_fn = NULL;
        ls->q = &probe;
        memcpy(ls->after, ls->last, ls->last_len);
        ls->alen = ls->last_len;
        ls->stop = false;
        ls->count = 0;
        ls->max = 0; /* take() now reports truncation on the first item */
        walk(ls, bucket, path, 0, 0);
        ls->q = q;
    }
    out->truncated = ls->truncated;
    memcpy(out->last, ls->last, ls->last_len);
    out->last_len = ls->last_len;
out:
    free(path);
    free(ls);
    return rc;
}
