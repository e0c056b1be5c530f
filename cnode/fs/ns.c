/*
 * ns.c - names in directories: lookup, create, remove, rename, link, attributes, and the
 * directory mtime that follows every change of a directory's entries (see fs.h for the order
 * of changes that keeps a crash harmless).
 *
 * A name has two entry records, "name/" for a directory and "name" for anything else (so S3
 * listings see directories as prefixes); a lookup reads both together in one round trip, and
 * the directory form wins.  Every record update is a compare-and-set on its version, retried
 * a bounded number of times when another C-node changed it first.
 */
#include "cnode/fs/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/fault.h"
#include "common/log.h"

#define TAG "fs"
#define RETRIES 16

/* ---- lookups ---- */

static void forms_init(struct meta_read *r, uint64_t dir, const char *name, size_t len)
{
    for (int f = 0; f < 2; f++)
        r[f] = (struct meta_read){.kind = META_READ_DIRENT, .id = dir, .name = name, .len = len,
                                  .dir_form = f == 0};
}

/* What the forms read say about the name (the directory form wins); frees their records.  On
 * CAIRN_ENOENT, *ver is the version a create of the file form must expect. */
static int forms_result(struct meta_read *r, uint64_t *ino, bool *is_dir, uint64_t *ver)
{
    int rc = CAIRN_ENOENT, f;

    *is_dir = false;
    if (ver)
        *ver = r[1].version;
    for (f = 0; f < 2; f++) {
        if (r[f].rc == CAIRN_ENOENT)
            continue;
        rc = r[f].rc;
        if (!rc) {
            *ino = r[f].dirent->ino;
            *is_dir = f == 0;
            if (ver)
                *ver = r[f].version;
        }
        break;
    }
    for (f = 0; f < 2; f++)
        if (r[f].dirent)
            cairn__dirent__free_unpacked(r[f].dirent, NULL);
    return rc;
}

static int lookup_ver(struct fs_ctx *c, uint64_t dir, const char *name, size_t len, uint64_t *ino,
                      bool *is_dir, uint64_t *ver)
{
    struct meta_read r[2];

    forms_init(r, dir, name, len);
    meta_read_many(c->cl, r, 2);
    return forms_result(r, ino, is_dir, ver);
}

int fs_lookup(struct fs_ctx *c, uint64_t dir, const char *name, size_t len, uint64_t *ino,
              bool *is_dir)
{
    return lookup_ver(c, dir, name, len, ino, is_dir, NULL);
}

int fs_lookup_ver(struct fs_ctx *c, uint64_t dir, const char *name, size_t len, uint64_t *ino,
                  bool *is_dir, uint64_t *ver)
{
    return lookup_ver(c, dir, name, len, ino, is_dir, ver);
}

void fs_lookup_at(struct fs_ctx *c, uint64_t dir, const char *name, size_t len,
                  struct fs_lookup *out)
{
    struct meta_read r[3];

    memset(out, 0, sizeof(*out));
    r[0] = (struct meta_read){.kind = META_READ_INODE, .id = dir};
    forms_init(r + 1, dir, name, len);
    meta_read_many(c->cl, r, 3);
    out->dir_rc = r[0].rc;
    out->dir = r[0].inode;
    out->rc = forms_result(r + 1, &out->ino, &out->is_dir, NULL);
}

int fs_entry_is(struct fs_ctx *c, uint64_t dir, const char *name, size_t len, bool is_dir,
                uint64_t ino)
{
    Cairn__Dirent *d;
    int rc = meta_dirent_get(c->cl, dir, name, len, is_dir, &d, NULL);

    if (rc == CAIRN_ENOENT)
        return 0;
    if (rc)
        return rc;
    rc = d->ino == ino;
    cairn__dirent__free_unpacked(d, NULL);
    return rc;
}

int fs_dir_empty(struct fs_ctx *c, uint64_t dir, bool *empty)
{
    return meta_dir_empty(c->cl, dir, empty);
}

/* ---- the directory's mtime ---- */

/* Many clients creating in one directory all change its one inode record.  A change of its
 * entries stamps its mtime and ctime (meta_dir_stamp: raise them to at least now) instead of
 * reading the inode and writing it back by compare-and-set: stamps never conflict, need no
 * read, and creates and removes carry theirs in the same update as the entry
 * (meta_entry_create / meta_entry_remove).  What the caller reports as the directory after the
 * change is the directory as it loaded it before, with the stamp applied. */
static Cairn__Inode *stamped(struct fs_ctx *c, const struct fs_dir *hint, int64_t t)
{
    Cairn__Inode *in = hint->in ? fs_inode_copy(hint->in) : NULL;

    if (!in && meta_inode_get(c->cl, hint->ino, &in, NULL) != 0)
        return NULL;
    if (in->mtime_ns < t)
        in->mtime_ns = t;
    if (in->ctime_ns < t)
        in->ctime_ns = t;
    return in;
}

void fs_touch_dir(struct fs_ctx *c, const struct fs_dir *hint, Cairn__Inode **after)
{
    int64_t now = cairn_wall_ns();

    if (after)
        *after = NULL;
    if (meta_dir_stamp(c->cl, hint->ino, now) == 0 && after)
        *after = stamped(c, hint, now);
}

/* The slices a new directory made in parent gets (fs_config). */
static uint32_t slices_for(const struct fs_ctx *c, uint64_t parent)
{
    return parent == FS_ROOT_INO ? c->fs->cfg.top_slices : c->fs->cfg.dir_slices;
}

int fs_mkdir_at(struct fs_ctx *c, uint64_t dir, const char *name, size_t len, bool explicit_dir,
                uint32_t mode, uint64_t *ino)
{
    Cairn__Dirent *d;
    int rc;

    /* Most calls find the directory (a key's path already exists): one read. */
    if (!explicit_dir) {
        rc = meta_dirent_get(c->cl, dir, name, len, true, &d, NULL);
        if (rc == 0) {
            *ino = d->ino;
            cairn__dirent__free_unpacked(d, NULL);
            return 0;
        }
        if (rc != CAIRN_ENOENT)
            return rc;
    }
    rc = meta_mkdir(c->cl, dir, name, len, explicit_dir, mode ? mode : FS_OBJECT_DIR_MODE,
                    slices_for(c, dir), ino);
    if (rc == 0) {
        /* The parent's listing may have changed (racing makers both touch: harmless). */
        struct fs_dir parent = {.ino = dir};

        fs_touch_dir(c, &parent, NULL);
    }
    return rc;
}

/* ---- create ---- */

void fs_new_inode(Cairn__Inode *in, Cairn__FileType type, const struct fs_cred *cr,
                  const Cairn__Inode *dir, uint32_t mode)
{
    in->type = type;
    in->uid = cr->uid;
    in->gid = (dir->mode & 02000) ? dir->gid : cr->gid;
    in->mode = mode & 07777;
    in->nlink = 1;
    if (type == CAIRN__FILE_TYPE__FT_DIR) {
        in->nlink = 2;
        in->explicit_dir = true;
    }
}

int fs_create(struct fs_ctx *c, const struct fs_dir *d, const char *name, size_t len,
              Cairn__Inode *in, uint64_t *ino, Cairn__Inode **dir_after)
{
    Cairn__Dirent nd = CAIRN__DIRENT__INIT;
    uint64_t vd, vf;
    int64_t now;
    char nbuf[FS_NAME_MAX + 1];
    struct meta_read r[2];
    int rc;

    if (dir_after)
        *dir_after = NULL;
    if (!fs_name_valid(name, len))
        return CAIRN_EINVAL;
    /* Neither form may exist; the absent one's version is what the create expects. */
    forms_init(r, d->ino, name, len);
    meta_read_many(c->cl, r, 2);
    vd = r[0].version;
    vf = r[1].version;
    rc = r[0].rc != CAIRN_ENOENT ? r[0].rc : r[1].rc;
    for (int form = 0; form < 2; form++)
        if (r[form].dirent)
            cairn__dirent__free_unpacked(r[form].dirent, NULL);
    if (rc != CAIRN_ENOENT)
        return rc ? rc : CAIRN_EEXIST;
    memcpy(nbuf, name, len);
    nbuf[len] = 0;
    in->parent = d->ino;
    in->name = nbuf;
    if (fs_is_dir(in) && !in->slices)
        in->slices = slices_for(c, d->ino);
    now = cairn_wall_ns();
    in->btime_ns = in->mtime_ns = in->ctime_ns = now;
    nd.type = in->type;
    nd.size = in->size;
    nd.mtime_ns = in->mtime_ns;
    /* Inode, entry and the directory's stamp in one update; the entry must be new: a racing
     * creator of the same name wins, and then nothing of ours exists. */
    rc = meta_entry_create(c->cl, d->ino, name, len, &nd, fs_is_dir(in) ? vd : vf, in, now, ino);
    in->name = NULL;
    if (!rc && cairn_fault("fs.create.unknown"))
        rc = CAIRN_EUNREACH; /* tests: it landed, but the caller was not told */
    if (fs_unknown(rc)) {
        Cairn__Dirent *e = NULL;

        /* Ours or another's: known.  Absent (or unreadable): the update may still land, so
         * the caller hears "unknown", not "exists". */
        if (meta_dirent_get(c->cl, d->ino, name, len, fs_is_dir(in), &e, NULL) == 0) {
            rc = e->ino == *ino ? 0 : CAIRN_EEXIST;
            cairn__dirent__free_unpacked(e, NULL);
        }
    }
    if (rc == CAIRN_ECONFLICT)
        rc = CAIRN_EEXIST;
    if (rc)
        return rc; /* CAIRN_ENOENT: the directory is gone */
    if (dir_after)
        *dir_after = stamped(c, d, now);
    return 0;
}

/* ---- remove ---- */

int fs_unlink_inode(struct fs_ctx *c, uint64_t ino, bool *last)
{
    if (last)
        *last = false;
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        Cairn__Inode *in;
        uint64_t ver;
        int rc = meta_inode_get(c->cl, ino, &in, &ver);

        if (rc)
            return rc;
        if (in->nlink > 1) {
            in->nlink--;
            in->ctime_ns = cairn_wall_ns();
            rc = meta_inode_put(c->cl, ino, in, ver, NULL);
            fs_inode_free(in);
        } else {
            rc = meta_inode_del(c->cl, ino, ver);
            if (rc == 0) {
                if (last)
                    *last = true;
                fs_defer_inode(c, in); /* its data goes later: readers may hold it */
                return 0;
            }
            fs_inode_free(in);
        }
        if (rc != CAIRN_ECONFLICT)
            return rc;
    }
    return CAIRN_ECONFLICT;
}

/* The sticky bit: in a directory with it, only the directory's owner, the entry's owner and
 * root may remove an entry. */
static int sticky_check(struct fs_ctx *c, const struct fs_dir *d, const struct fs_cred *cr,
                        uint64_t victim)
{
    Cairn__Inode *dir = NULL, *v = NULL;
    const Cairn__Inode *di = d->in;
    int rc = 0;

    if (!cr || cr->uid == 0)
        return 0;
    if (!di) {
        rc = meta_inode_get(c->cl, d->ino, &dir, NULL);
        if (rc)
            return rc;
        di = dir;
    }
    if ((di->mode & 01000) && cr->uid != di->uid && meta_inode_get(c->cl, victim, &v, NULL) == 0 &&
        v->uid != cr->uid)
        rc = CAIRN_EACCES;
    fs_inode_free(v);
    fs_inode_free(dir);
    return rc;
}

/* Entry, inode and the directory's stamp in one update, when the inode lives in the
 * directory's shard (meta_entry_create made it) and this is its last name; CAIRN_ENOTSUP
 * otherwise (nothing done: the caller takes them away one after the other).  On success the
 * inode's data is queued for freeing; on an unknown outcome nothing is (the records may still
 * be there). */
static int remove_together(struct fs_ctx *c, const struct fs_dir *d, const char *name,
                           size_t len, bool is_dir, uint64_t dver, uint64_t victim, bool *last,
                           Cairn__Inode **dir_after)
{
    int64_t now = cairn_wall_ns();
    Cairn__Inode *in;
    uint64_t iver;
    int rc = meta_inode_get(c->cl, victim, &in, &iver);

    if (rc == CAIRN_ENOENT)
        return CAIRN_ENOTSUP; /* a name without its inode: the entry alone goes */
    if (rc)
        return rc;
    if (!is_dir && in->nlink > 1) {
        fs_inode_free(in);
        return CAIRN_ENOTSUP;
    }
    rc = meta_entry_remove(c->cl, d->ino, name, len, is_dir, dver, victim, iver, now);
    if (rc) {
        fs_inode_free(in);
        /* gone meanwhile (the entry, the inode, or the directory): look again */
        return rc == CAIRN_ENOENT ? CAIRN_ECONFLICT : rc;
    }
    if (last)
        *last = true;
    if (is_dir)
        fs_inode_free(in);
    else
        fs_defer_inode(c, in); /* its data goes later: readers may hold it */
    if (dir_after)
        *dir_after = stamped(c, d, now);
    return 0;
}

int fs_remove(struct fs_ctx *c, const struct fs_dir *d, const struct fs_cred *cr,
              const char *name, size_t len, bool want_dir, uint64_t *ino, bool *last,
              Cairn__Inode **dir_after)
{
    int rc = CAIRN_ECONFLICT;

    if (dir_after)
        *dir_after = NULL;
    if (last)
        *last = false;
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        uint64_t victim, ver;
        bool is_dir;

        rc = lookup_ver(c, d->ino, name, len, &victim, &is_dir, &ver);
        if (rc)
            return rc;
        if (want_dir && !is_dir)
            return CAIRN_ENOTDIR;
        if (!want_dir && is_dir)
            return CAIRN_EISDIR;
        if (want_dir) {
            bool empty;

            rc = meta_dir_empty(c->cl, victim, &empty);
            if (!rc && !empty)
                rc = CAIRN_ENOTEMPTY;
            if (rc)
                return rc;
        }
        rc = sticky_check(c, d, cr, victim);
        if (rc)
            return rc;
        rc = remove_together(c, d, name, len, is_dir, ver, victim, last, dir_after);
        if (rc == CAIRN_ECONFLICT)
            continue;
        if (rc != CAIRN_ENOTSUP) {
            if (!rc && ino)
                *ino = victim;
            return rc;
        }
        /* The entry first: a crash after it leaves an unreferenced inode, never a dangling
         * name. */
        rc = meta_dirent_del(c->cl, d->ino, name, len, is_dir, ver);
        if (rc == CAIRN_ECONFLICT)
            continue;
        if (rc)
            return rc;
        if (ino)
            *ino = victim;
        if (is_dir) {
            meta_inode_del(c->cl, victim, META_ANY);
            if (last)
                *last = true;
        } else {
            fs_unlink_inode(c, victim, last);
        }
        fs_touch_dir(c, d, dir_after);
        return 0;
    }
    return rc;
}

/* ---- rename ---- */

/* Whether dir is anc or lies below it (walking parents up to the root). */
static bool below(struct fs_ctx *c, uint64_t dir, uint64_t anc)
{
    for (int depth = 0; depth < 4096; depth++) {
        Cairn__Inode *in;
        uint64_t parent;

        if (dir == anc)
            return true;
        if (dir == FS_ROOT_INO || meta_inode_get(c->cl, dir, &in, NULL))
            return false;
        parent = in->parent;
        fs_inode_free(in);
        if (!parent || parent == dir)
            return false;
        dir = parent;
    }
    return true; /* a loop: refuse */
}

/* Point inode ino's parent/name at its new place (S3 listings and ".." follow it). */
static void move_inode(struct fs_ctx *c, uint64_t ino, uint64_t dir, const char *name,
                       size_t len)
{
    char nbuf[FS_NAME_MAX + 1];

    memcpy(nbuf, name, len);
    nbuf[len] = 0;
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        Cairn__Inode *in;
        uint64_t ver;
        char *old;
        int rc = meta_inode_get(c->cl, ino, &in, &ver);

        if (rc)
            return;
        old = in->name;
        in->parent = dir;
        in->name = nbuf;
        in->ctime_ns = cairn_wall_ns();
        rc = meta_inode_put(c->cl, ino, in, ver, NULL);
        in->name = old;
        fs_inode_free(in);
        if (rc != CAIRN_ECONFLICT)
            return;
    }
}

int fs_rename(struct fs_ctx *c, const struct fs_dir *from, const char *fname, size_t flen,
              const struct fs_dir *to, const char *tname, size_t tlen, uint64_t *replaced,
              bool *replaced_last, Cairn__Inode **from_after, Cairn__Inode **to_after)
{
    int rc = CAIRN_ECONFLICT;

    if (replaced)
        *replaced = 0;
    if (replaced_last)
        *replaced_last = false;
    if (from_after)
        *from_after = NULL;
    if (to_after)
        *to_after = NULL;
    if (!fs_name_valid(fname, flen) || !fs_name_valid(tname, tlen))
        return CAIRN_EINVAL;
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        uint64_t sino, sver, dino = 0, dver = 0, ever = 0;
        bool sdf, ddf = false, dexists;
        Cairn__Dirent *sd = NULL, *od = NULL;

        rc = lookup_ver(c, from->ino, fname, flen, &sino, &sdf, &sver);
        if (rc)
            return rc;
        rc = lookup_ver(c, to->ino, tname, tlen, &dino, &ddf, &dver);
        if (rc && rc != CAIRN_ENOENT)
            return rc;
        dexists = rc == 0;
        rc = 0;
        if (dexists && dino == sino)
            break; /* the same file under both names: nothing to do (RFC 1813) */
        if (dexists && sdf && !ddf)
            return CAIRN_ENOTDIR;
        if (dexists && !sdf && ddf)
            return CAIRN_EISDIR;
        if (dexists && ddf) {
            bool empty;

            rc = meta_dir_empty(c->cl, dino, &empty);
            if (rc || !empty)
                return rc ? rc : CAIRN_ENOTEMPTY;
        }
        if (sdf && below(c, to->ino, sino))
            return CAIRN_EINVAL; /* a directory into itself */
        /* 1. the new name, in the source's form, over the target or where none was */
        rc = meta_dirent_get(c->cl, from->ino, fname, flen, sdf, &sd, NULL);
        if (rc)
            return rc;
        if (!dexists) {
            rc = meta_dirent_get(c->cl, to->ino, tname, tlen, sdf, &od, &ever);
            if (rc == 0) {
                cairn__dirent__free_unpacked(od, NULL);
                cairn__dirent__free_unpacked(sd, NULL);
                rc = CAIRN_ECONFLICT;
                continue; /* appeared meanwhile */
            }
        } else {
            ever = dver;
        }
        rc = meta_dirent_put(c->cl, to->ino, tname, tlen, sd, ever, NULL);
        cairn__dirent__free_unpacked(sd, NULL);
        if (rc == CAIRN_ECONFLICT)
            continue;
        if (rc)
            return rc;
        /* 2. the old name goes (unless it changed under us: then it is someone else's) */
        rc = meta_dirent_del(c->cl, from->ino, fname, flen, sdf, sver);
        if (rc && rc != CAIRN_ECONFLICT && rc != CAIRN_ENOENT)
            log_warn(TAG, "rename: old name left behind: %s", cairn_strerror(rc));
        rc = 0;
        /* 3. what the new name replaced */
        if (dexists) {
            if (replaced)
                *replaced = dino;
            if (ddf) {
                meta_inode_del(c->cl, dino, META_ANY);
                if (replaced_last)
                    *replaced_last = true;
            } else {
                fs_unlink_inode(c, dino, replaced_last);
            }
        }
        move_inode(c, sino, to->ino, tname, tlen);
        break;
    }
    if (rc)
        return rc;
    fs_touch_dir(c, from, from_after);
    if (to->ino != from->ino)
        fs_touch_dir(c, to, to_after);
    return 0;
}

/* ---- link ---- */

int fs_link(struct fs_ctx *c, uint64_t ino, const struct fs_dir *d, const char *name,
            size_t len, Cairn__Inode **dir_after)
{
    Cairn__Inode *in = NULL;
    Cairn__Dirent nd = CAIRN__DIRENT__INIT, *od;
    uint64_t other, ev = 0;
    bool df;
    int rc;

    if (dir_after)
        *dir_after = NULL;
    if (!fs_name_valid(name, len))
        return CAIRN_EINVAL;
    rc = fs_lookup(c, d->ino, name, len, &other, &df);
    if (rc == 0)
        return CAIRN_EEXIST;
    if (rc != CAIRN_ENOENT)
        return rc;
    /* nlink first: a crash before the entry leaves a count too high (a leak), never a file
     * freed while a name still points at it */
    for (int attempt = 0;; attempt++) {
        uint64_t iv;

        fs_inode_free(in);
        in = NULL;
        rc = meta_inode_get(c->cl, ino, &in, &iv);
        if (rc)
            return rc;
        if (fs_is_dir(in)) {
            rc = CAIRN_EISDIR;
            goto out;
        }
        if (in->nlink >= 65535) {
            rc = CAIRN_EMLINK;
            goto out;
        }
        in->nlink = (in->nlink ? in->nlink : 1) + 1;
        in->ctime_ns = cairn_wall_ns();
        rc = meta_inode_put(c->cl, ino, in, iv, NULL);
        if (rc != CAIRN_ECONFLICT || attempt == RETRIES - 1)
            break;
    }
    if (rc)
        goto out;
    rc = meta_dirent_get(c->cl, d->ino, name, len, false, &od, &ev);
    if (rc == 0) {
        cairn__dirent__free_unpacked(od, NULL);
        rc = CAIRN_EEXIST;
    } else if (rc == CAIRN_ENOENT) {
        nd.ino = ino;
        nd.type = in->type;
        nd.size = in->size;
        nd.etag = in->etag;
        nd.mtime_ns = in->mtime_ns;
        rc = meta_dirent_put(c->cl, d->ino, name, len, &nd, ev, NULL);
        if (rc == CAIRN_ECONFLICT)
            rc = CAIRN_EEXIST;
    }
    if (rc)
        fs_unlink_inode(c, ino, NULL); /* give the count back */
    else
        fs_touch_dir(c, d, dir_after);
out:
    fs_inode_free(in);
    return rc;
}

/* ---- attributes ---- */

/* Apply sa to in (loaded by the caller, who writes it back).  A size change is made by the
 * caller (it moves data); here only its permission is checked. */
static int apply_sattr(const struct fs_cred *cr, Cairn__Inode *in, const struct fs_sattr *sa)
{
    bool owner = cr->uid == 0 || cr->uid == in->uid;
    int64_t t = cairn_wall_ns();

    if (sa->set_mode) {
        if (!owner)
            return CAIRN_EPERM;
        in->mode = sa->mode & 07777;
    }
    if (sa->set_uid && sa->uid != in->uid) {
        if (cr->uid != 0)
            return CAIRN_EPERM;
        in->uid = sa->uid;
    }
    if (sa->set_gid && sa->gid != in->gid) {
        if (cr->uid != 0 && !(cr->uid == in->uid && fs_in_group(cr, sa->gid)))
            return CAIRN_EPERM;
        in->gid = sa->gid;
    }
    if (sa->set_size) {
        if (fs_is_dir(in))
            return CAIRN_EISDIR;
        if (in->type != CAIRN__FILE_TYPE__FT_FILE)
            return CAIRN_EINVAL;
        if (!owner && !fs_may(cr, in, FS_MAY_W))
            return CAIRN_EACCES;
    }
    if (sa->mtime_how == FS_TIME_GIVEN || sa->atime_how == FS_TIME_GIVEN) {
        if (!owner)
            return CAIRN_EPERM;
    } else if (sa->mtime_how == FS_TIME_NOW || sa->atime_how == FS_TIME_NOW) {
        if (!owner && !fs_may(cr, in, FS_MAY_W))
            return CAIRN_EACCES;
    }
    if (sa->atime_how == FS_TIME_GIVEN)
        in->atime_ns = sa->atime;
    else if (sa->atime_how == FS_TIME_NOW)
        in->atime_ns = t;
    if (sa->mtime_how == FS_TIME_GIVEN)
        in->mtime_ns = sa->mtime;
    else if (sa->mtime_how == FS_TIME_NOW)
        in->mtime_ns = t;
    in->ctime_ns = t;
    return 0;
}

int fs_setattr(struct fs_ctx *c, const struct fs_cred *cr, uint64_t ino,
               const struct fs_sattr *sa, Cairn__Inode **before, Cairn__Inode **after)
{
    Cairn__Inode *in = NULL;
    bool sized = false;
    int rc = CAIRN_ECONFLICT;

    if (before)
        *before = NULL;
    if (after)
        *after = NULL;
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        uint64_t ver;

        rc = meta_inode_get(c->cl, ino, &in, &ver);
        if (rc)
            break;
        if (before && !*before)
            *before = fs_inode_copy(in);
        /* The guard holds the ctime the client saw, before any change of ours. */
        if (sa->guard && !sized &&
            (in->ctime_ns ? in->ctime_ns : in->mtime_ns) / 1000 != sa->guard_ctime / 1000) {
            rc = CAIRN_EPRECOND;
            break;
        }
        rc = apply_sattr(cr, in, sa);
        if (rc)
            break;
        if (sa->set_size && !sized) {
            /* The size first (its own update: it moves data), then the other attributes. */
            fs_inode_free(in);
            in = NULL;
            rc = fs_truncate(c, ino, sa->size);
            if (rc)
                break;
            sized = true;
            attempt = -1;
            continue;
        }
        rc = meta_inode_put(c->cl, ino, in, ver, NULL);
        if (rc != CAIRN_ECONFLICT)
            break;
        fs_inode_free(in);
        in = NULL;
    }
    if (!rc && after) {
        *after = in;
        in = NULL;
    }
    fs_inode_free(in);
    return rc;
}
