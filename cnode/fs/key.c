/*
 * key.c - keys (paths below a bucket) and buckets (directories in the root): S3's view of the
 * one namespace (see fs.h).
 *
 * The key "a/b/c" is the file c in directory b in directory a of the bucket; the directories
 * of a key's path are made as it is written ("implied": not keys of their own, so a listing
 * does not show them) unless a "dir/" key made them explicit.  A key is a path, so a name is a
 * file or a directory, never both: writing "a/b" where "a/b/" holds keys, or "a/b/c" where "a/b"
 * is a file, is refused (CAIRN_EEXIST).
 *
 * Writes are last writer wins: the entry is switched to the new inode by a compare-and-set loop
 * and the inode it replaced loses that link (its data is freed FS_FREE_DELAY_MS later, so reads
 * that resolved it just before can finish).
 */
#include "cnode/fs/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/fault.h"
#include "common/log.h"

#define TAG "fs"
#define LINK_RETRIES 16
#define UNLINK_RETRIES 8

bool fs_key_valid(const char *key, size_t len)
{
    size_t start = 0;

    if (len == 0 || len > FS_KEY_MAX || memchr(key, 0, len))
        return false;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || key[i] == '/') {
            if (i == len && start == len && key[len - 1] == '/')
                break; /* a directory marker */
            if (!fs_name_valid(key + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

/* Walk the directories of key (all components but the last) from dir.  create: make missing
 * ones (implied).  *last / *last_len: the final name ("" for "dir/" keys). */
static int walk_dirs(struct fs_ctx *c, uint64_t dir, const char *key, size_t klen, bool create,
                     uint64_t *out, const char **last, size_t *last_len)
{
    size_t start = 0;

    for (size_t i = 0; i < klen; i++) {
        int rc;

        if (key[i] != '/')
            continue;
        if (create) {
            rc = fs_mkdir_at(c, dir, key + start, i - start, false, 0, &dir);
        } else {
            Cairn__Dirent *d;

            rc = meta_dirent_get(c->cl, dir, key + start, i - start, true, &d, NULL);
            if (!rc) {
                dir = d->ino;
                cairn__dirent__free_unpacked(d, NULL);
            }
        }
        if (rc)
            return rc;
        start = i + 1;
    }
    *out = dir;
    *last = key + start;
    *last_len = klen - start;
    return 0;
}

int fs_key_get(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen, uint64_t *ino,
               Cairn__Inode **in, uint64_t *version)
{
    const char *last;
    size_t ll;
    uint64_t dir;
    Cairn__Dirent *d;
    int rc;

    *in = NULL;
    if (!fs_key_valid(key, klen))
        return CAIRN_ENOENT;
    rc = walk_dirs(c, bucket, key, klen, false, &dir, &last, &ll);
    if (rc)
        return rc;
    if (ll == 0) {
        /* "dir/": only an explicit directory is a key. */
        rc = meta_inode_get(c->cl, dir, in, version);
        if (rc)
            return rc;
        if (!(*in)->explicit_dir || dir == bucket) {
            fs_inode_free(*in);
            *in = NULL;
            return CAIRN_ENOENT;
        }
        *ino = dir;
        return 0;
    }
    rc = meta_dirent_get(c->cl, dir, last, ll, false, &d, NULL);
    if (rc)
        return rc;
    *ino = d->ino;
    cairn__dirent__free_unpacked(d, NULL);
    return meta_inode_get(c->cl, *ino, in, version);
}

/* Make dir's entry name point at the new file inode ino (last writer wins); the file it
 * replaced loses that link.  A new name changes the directory's listing: its mtime follows. */
static int link_file(struct fs_ctx *c, uint64_t dir, const char *name, size_t nl, uint64_t ino,
                     const Cairn__Inode *in)
{
    Cairn__Dirent nd = CAIRN__DIRENT__INIT, *od = NULL;
    int rc;

    nd.ino = ino;
    nd.type = CAIRN__FILE_TYPE__FT_FILE;
    nd.size = in->size;
    nd.etag = in->etag;
    nd.mtime_ns = in->mtime_ns;
    /* A directory of that name excludes the file. */
    rc = meta_dirent_get(c->cl, dir, name, nl, true, &od, NULL);
    if (rc == 0) {
        cairn__dirent__free_unpacked(od, NULL);
        return CAIRN_EEXIST;
    }
    if (rc != CAIRN_ENOENT)
        return rc;
    for (int attempt = 0; attempt < LINK_RETRIES; attempt++) {
        uint64_t ver = 0, old = 0;

        od = NULL;
        rc = meta_dirent_get(c->cl, dir, name, nl, false, &od, &ver);
        if (rc && rc != CAIRN_ENOENT)
            return rc;
        if (od) {
            old = od->ino;
            cairn__dirent__free_unpacked(od, NULL);
        }
        rc = meta_dirent_put(c->cl, dir, name, nl, &nd, ver, NULL);
        if (!rc && cairn_fault("fs.link.unknown"))
            rc = CAIRN_EUNREACH; /* tests: it landed, but the caller was not told */
        if (fs_unknown(rc)) {
            int is = fs_entry_is(c, dir, name, nl, false, ino);

            if (is < 0)
                return rc; /* still unknown: the caller keeps the inode and its data */
            if (!is)
                continue; /* it did not land (or was replaced since): try again */
            rc = 0;
        }
        if (rc == CAIRN_ECONFLICT)
            continue;
        if (rc)
            return rc;
        if (old && old != ino) {
            rc = fs_unlink_inode(c, old, NULL);
            if (rc && rc != CAIRN_ENOENT)
                log_warn(TAG, "unlinking replaced inode %016llx: %s", (unsigned long long)old,
                         cairn_strerror(rc));
        } else if (!old) {
            struct fs_dir d = {.ino = dir};

            fs_touch_dir(c, &d, NULL);
        }
        return 0;
    }
    return CAIRN_ECONFLICT;
}

/* A new name: the inode, its entry and the directory's stamp as one update
 * (meta_entry_create), instead of an inode, an entry and a touch one after another.  Returns
 * 0 (*ino made and named), CAIRN_EAGAIN (a file holds the name, or took it meanwhile: replace
 * it with link_file; nothing of ours exists), CAIRN_EEXIST (a directory holds it), an unknown
 * outcome (the inode and entry may exist: keep the data), or another error. */
static int create_file(struct fs_ctx *c, uint64_t dir, const char *name, size_t nl,
                       Cairn__Inode *in, uint64_t *ino)
{
    Cairn__Dirent nd = CAIRN__DIRENT__INIT;
    uint64_t old = 0, ver = 0;
    bool is_dir;
    int rc = fs_lookup_ver(c, dir, name, nl, &old, &is_dir, &ver);

    if (rc == 0)
        return is_dir ? CAIRN_EEXIST : CAIRN_EAGAIN;
    if (rc != CAIRN_ENOENT)
        return rc;
    nd.type = CAIRN__FILE_TYPE__FT_FILE;
    nd.size = in->size;
    nd.etag = in->etag;
    nd.mtime_ns = in->mtime_ns;
    rc = meta_entry_create(c->cl, dir, name, nl, &nd, ver, in, in->mtime_ns, ino);
    if (!rc && cairn_fault("fs.key.unknown"))
        rc = CAIRN_EUNREACH; /* tests: it landed, but the caller was not told */
    if (fs_unknown(rc)) {
        Cairn__Dirent *e = NULL;

        /* Named by ours: done.  By another inode: ours lost its condition for good (the
         * entry's version moved), so nothing of ours exists.  Absent or unreadable: it may
         * still land. */
        if (meta_dirent_get(c->cl, dir, name, nl, false, &e, NULL) == 0) {
            rc = e->ino == *ino ? 0 : CAIRN_EAGAIN;
            cairn__dirent__free_unpacked(e, NULL);
        }
        return rc;
    }
    return rc == CAIRN_ECONFLICT ? CAIRN_EAGAIN : rc;
}

/* The file inode for d: type, mode, size, times and the data (in's pointers then borrow d). */
static void fill_file(Cairn__Inode *in, struct fs_data *d, Cairn__Extent **xp)
{
    int64_t t = cairn_wall_ns();

    in->type = CAIRN__FILE_TYPE__FT_FILE;
    in->mode = FS_OBJECT_FILE_MODE;
    in->nlink = 1;
    in->size = d->size;
    in->mtime_ns = in->ctime_ns = in->btime_ns = t;
    if (d->inline_data) {
        in->inline_data.data = d->inline_data;
        in->inline_data.len = d->inline_len;
    } else if (d->size) {
        xp[0] = &d->ext;
        in->extents = xp;
        in->n_extents = 1;
    }
}

int fs_key_dirs(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen, uint64_t *dir,
                char name[FS_NAME_MAX + 1])
{
    const char *last;
    size_t ll;
    int rc;

    if (!fs_key_valid(key, klen) || key[klen - 1] == '/')
        return CAIRN_EINVAL;
    rc = walk_dirs(c, bucket, key, klen, true, dir, &last, &ll);
    if (rc)
        return rc;
    memcpy(name, last, ll);
    name[ll] = 0;
    return 0;
}

int fs_key_link(struct fs_ctx *c, uint64_t dir, const char *name, uint64_t ino,
                const Cairn__Inode *in)
{
    return link_file(c, dir, name, strlen(name), ino, in);
}

int fs_key_put(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen,
               Cairn__Inode *in, struct fs_data *d)
{
    char name[FS_NAME_MAX + 1];
    Cairn__Extent *xp[1];
    uint64_t dir, ino;
    bool keep = false;
    int rc;

    fill_file(in, d, xp);
    rc = d->ext.object_id ? fs_check_fresh(c, d->t0_ms) : 0;
    if (!rc)
        rc = fs_key_dirs(c, bucket, key, klen, &dir, name);
    if (!rc) {
        in->parent = dir;
        in->name = name;
        rc = create_file(c, dir, name, strlen(name), in, &ino);
        if (fs_unknown(rc))
            keep = true; /* the inode and its entry may exist */
        if (rc == CAIRN_EAGAIN) {
            /* The name is a file's: a new inode, then the entry moved over to it. */
            rc = meta_inode_create(c->cl, in, &ino);
            if (fs_unknown(rc))
                keep = true; /* an inode may reference the data */
            if (!rc) {
                rc = link_file(c, dir, name, strlen(name), ino, in);
                if (fs_unknown(rc))
                    keep = true; /* the entry may name the inode */
                else if (rc)
                    meta_inode_del(c->cl, ino, META_ANY);
            }
        }
        in->name = NULL;
    }
    in->extents = NULL;
    in->n_extents = 0;
    in->inline_data.data = NULL;
    in->inline_data.len = 0;
    if (rc && keep)
        fs_data_fini(d);
    else if (rc)
        fs_data_discard(c, d);
    return rc;
}

int fs_key_mkdir(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen)
{
    const char *last;
    size_t ll;
    uint64_t dir, ino;
    int rc;

    if (klen == 0 || !fs_key_valid(key, klen) || key[klen - 1] == '/')
        return CAIRN_EINVAL;
    /* The last component is the directory itself: its parents are implied, it is explicit. */
    rc = walk_dirs(c, bucket, key, klen, true, &dir, &last, &ll);
    if (!rc)
        rc = fs_mkdir_at(c, dir, last, ll, true, FS_OBJECT_DIR_MODE, &ino);
    return rc;
}

int fs_key_remove(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen)
{
    const char *last;
    size_t ll;
    uint64_t dir;
    int rc;

    if (!fs_key_valid(key, klen))
        return 0;
    rc = walk_dirs(c, bucket, key, klen, false, &dir, &last, &ll);
    if (rc == CAIRN_ENOENT)
        return 0;
    if (rc)
        return rc;
    if (ll == 0) {
        /* "dir/": drop the explicit mark; remove the directory if it is empty. */
        Cairn__Inode *in;
        uint64_t ver;
        bool empty;

        if (dir == bucket)
            return 0;
        rc = meta_inode_get(c->cl, dir, &in, &ver);
        if (rc)
            return rc == CAIRN_ENOENT ? 0 : rc;
        if (in->explicit_dir) {
            in->explicit_dir = false;
            rc = meta_inode_put(c->cl, dir, in, ver, NULL);
        }
        fs_inode_free(in);
        if (!rc && !meta_dir_empty(c->cl, dir, &empty) && empty) {
            /* Its entry lives in the parent: find the parent by walking again. */
            const char *pl;
            size_t pll, plen = klen - 1;
            uint64_t parent;

            while (plen && key[plen - 1] != '/')
                plen--;
            if (!walk_dirs(c, bucket, key, plen, false, &parent, &pl, &pll) &&
                !meta_dirent_del(c->cl, parent, key + plen, klen - 1 - plen, true, META_ANY)) {
                struct fs_dir pd = {.ino = parent};

                meta_inode_del(c->cl, dir, META_ANY);
                fs_touch_dir(c, &pd, NULL);
            }
        }
        return rc == CAIRN_ECONFLICT ? 0 : rc;
    }
    for (int attempt = 0; attempt < UNLINK_RETRIES; attempt++) {
        Cairn__Dirent *d;
        uint64_t ver, ino;
        struct fs_dir pd = {.ino = dir};

        rc = meta_dirent_get(c->cl, dir, last, ll, false, &d, &ver);
        if (rc == CAIRN_ENOENT)
            return 0;
        if (rc)
            return rc;
        ino = d->ino;
        cairn__dirent__free_unpacked(d, NULL);
        rc = meta_dirent_del(c->cl, dir, last, ll, false, ver);
        if (rc == CAIRN_ECONFLICT || rc == CAIRN_ENOENT)
            continue; /* changed or removed meanwhile (another delete won): look again */
        if (rc)
            return rc;
        rc = fs_unlink_inode(c, ino, NULL);
        if (rc && rc != CAIRN_ENOENT)
            log_warn(TAG, "unlinking inode %016llx: %s", (unsigned long long)ino,
                     cairn_strerror(rc));
        fs_touch_dir(c, &pd, NULL);
        return 0;
    }
    return CAIRN_ECONFLICT;
}

int fs_path_dir(struct fs_ctx *c, const char *path, uint64_t *ino)
{
    uint64_t dir = FS_ROOT_INO;
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
        rc = meta_dirent_get(c->cl, dir, p, n, true, &d, NULL);
        if (rc)
            return rc;
        dir = d->ino;
        cairn__dirent__free_unpacked(d, NULL);
        p += n;
    }
    *ino = dir;
    return 0;
}

/* ---- buckets ---- */

int fs_bucket_get(struct fs_ctx *c, const char *name, uint64_t *ino, Cairn__Inode **in)
{
    Cairn__Dirent *d;
    int rc = meta_dirent_get(c->cl, FS_ROOT_INO, name, strlen(name), true, &d, NULL);

    if (in)
        *in = NULL;
    if (rc)
        return rc;
    *ino = d->ino;
    cairn__dirent__free_unpacked(d, NULL);
    if (in)
        rc = meta_inode_get(c->cl, *ino, in, NULL);
    return rc;
}

int fs_bucket_create(struct fs_ctx *c, const char *name, const char *owner, uint64_t *ino)
{
    Cairn__Inode in = CAIRN__INODE__INIT;
    struct fs_dir root = {.ino = FS_ROOT_INO};

    in.type = CAIRN__FILE_TYPE__FT_DIR;
    in.mode = FS_OBJECT_DIR_MODE;
    in.nlink = 2;
    in.explicit_dir = true;
    in.owner = (char *)owner;
    return fs_create(c, &root, name, strlen(name), &in, ino, NULL);
}

int fs_bucket_remove(struct fs_ctx *c, const char *name, uint64_t ino)
{
    struct fs_dir root = {.ino = FS_ROOT_INO};
    bool has;
    int rc = fs_subtree_has_keys(c, ino, 0, &has);

    if (!rc && has)
        return CAIRN_ENOTEMPTY;
    if (!rc)
        rc = fs_remove_empty_dirs(c, ino, 0);
    if (rc == CAIRN_EEXIST)
        return CAIRN_ENOTEMPTY;
    if (!rc)
        rc = meta_dirent_del(c->cl, FS_ROOT_INO, name, strlen(name), true, META_ANY);
    if (rc && rc != CAIRN_ENOENT)
        return rc;
    meta_inode_del(c->cl, ino, META_ANY);
    fs_touch_dir(c, &root, NULL);
    return 0;
}

int fs_bucket_each(struct fs_ctx *c,
                   int (*fn)(void *arg, const char *name, size_t len, const Cairn__Inode *in),
                   void *arg)
{
    char start[FS_NAME_MAX + 2];
    size_t slen = 0;
    int rc;

    for (;;) {
        struct fs_page p;

        rc = fs_dir_page(c, FS_ROOT_INO, slen ? start : NULL, slen, 1000, &p);
        if (rc)
            return rc;
        for (unsigned i = 0; i < p.n && !rc; i++) {
            const struct fs_entry *e = &p.v[i];
            Cairn__Inode *in;

            if (!e->is_dir || !e->d || meta_inode_get(c->cl, e->d->ino, &in, NULL))
                continue;
            rc = fn(arg, e->name, e->len, in);
            fs_inode_free(in);
        }
        if (rc || !p.more || !p.n) {
            fs_page_fini(&p);
            return rc;
        }
        /* Continue just after the last entry: its sort name and a NUL. */
        memcpy(start, p.v[p.n - 1].sort, p.v[p.n - 1].sort_len);
        start[p.v[p.n - 1].sort_len] = 0;
        slen = p.v[p.n - 1].sort_len + 1;
        fs_page_fini(&p);
    }
}
