/*
 * proc_dir.c - the NFSv3 procedures on names in a directory: LOOKUP, CREATE, MKDIR, SYMLINK,
 * MKNOD, REMOVE, RMDIR, RENAME, LINK (RFC 1813; see call.h).  The namespace rules (what may
 * exist, the order of changes, directory mtimes) are the file system's (cnode/fs/fs.h); here
 * are NFS's arguments, its special names ("." and ".."), its create modes and its results.
 */
#include <string.h>

#include "cnode/nfs/call.h"
#include "common/cairn.h"

enum { CREATE_UNCHECKED = 0, CREATE_GUARDED = 1, CREATE_EXCLUSIVE = 2 };

void nfs_p_lookup(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0;
    enum nfsstat3 nst = nfs_get_name(q, &name, &nl);
    Cairn__Inode *dir = NULL, *in = NULL;
    struct fs_lookup lk = {0};
    uint64_t ino = 0;
    bool plain;

    ARGS_OK(q);
    /* A plain name: the directory and both forms of its entry in one round trip (the entry is
     * used only once the directory allows the lookup). */
    plain = !st && !nst && !nfs_dot_name(name, nl);
    if (plain) {
        fs_lookup_at(q->fs, fh.ino, name, nl, &lk);
        dir = lk.dir;
        st = lk.dir_rc == CAIRN_ENOENT ? NFS3ERR_STALE : nfs_err(lk.dir_rc);
    } else if (!st) {
        st = nfs_load(q, fh.ino, &dir, NULL);
    }
    if (!st && !fs_is_dir(dir))
        st = NFS3ERR_NOTDIR;
    if (!st && !fs_may(&q->cred, dir, FS_MAY_X))
        st = NFS3ERR_ACCES;
    if (!st) {
        if (nl == 1 && name[0] == '.')
            ino = fh.ino;
        else if (nl == 2 && name[0] == '.' && name[1] == '.')
            ino = fh.ino == FS_ROOT_INO || !dir->parent ? FS_ROOT_INO : dir->parent;
        else if (nst)
            st = nst == NFS3ERR_INVAL ? NFS3ERR_NOENT : nst;
    }
    if (plain && !st) {
        st = nfs_err(lk.rc);
        ino = lk.ino;
    }
    if (!st) {
        st = nfs_load(q, ino, &in, NULL);
        if (st == NFS3ERR_STALE)
            st = NFS3ERR_NOENT; /* an entry whose inode is going away */
    }
    xdr_put_u32(&q->e, st);
    if (!st) {
        nfs_put_fh(q, ino);
        nfs_put_post_attr(q, ino, in);
    }
    nfs_put_post_attr(q, fh.ino, dir);
    fs_inode_free(dir);
    fs_inode_free(in);
}

/* The common tail of CREATE, MKDIR, SYMLINK, MKNOD: diropres3. */
static void put_diropres(struct nq *q, enum nfsstat3 st, uint64_t ino, const Cairn__Inode *in,
                         const struct nfs_pre *pre, uint64_t dir, const Cairn__Inode *dafter)
{
    xdr_put_u32(&q->e, st);
    if (!st) {
        xdr_put_bool(&q->e, true);
        nfs_put_fh(q, ino);
        nfs_put_post_attr(q, ino, in);
    }
    nfs_put_wcc(q, pre, dir, dafter);
}

/* CREATE of a name that exists: UNCHECKED opens the file that is there (truncating it when the
 * attributes say size 0), EXCLUSIVE succeeds only for the same verifier (a retransmission). */
static int create_existing(struct nq *q, uint64_t dir, const char *name, uint32_t nl,
                           uint32_t how, uint64_t verf, const struct fs_sattr *sa, uint64_t *ino)
{
    Cairn__Inode *obj = NULL;
    bool is_dir;
    int rc = fs_lookup(q->fs, dir, name, nl, ino, &is_dir);

    if (!rc)
        rc = fs_inode_get(q->fs, *ino, &obj, NULL);
    if (!rc && (is_dir || obj->type != CAIRN__FILE_TYPE__FT_FILE))
        rc = CAIRN_EEXIST;
    else if (!rc && how == CREATE_EXCLUSIVE && obj->create_verf != verf)
        rc = CAIRN_EEXIST; /* someone else's file, not a retransmission */
    else if (!rc && how == CREATE_UNCHECKED && sa->set_size && !fs_may_io(&q->cred, obj, FS_MAY_W))
        rc = CAIRN_EACCES;
    fs_inode_free(obj);
    return rc;
}

void nfs_p_create(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0, how;
    enum nfsstat3 nst = nfs_get_name(q, &name, &nl);
    struct fs_sattr sa = {0};
    uint64_t verf = 0, ino = 0, dver = 0;
    Cairn__Inode *dir = NULL, *obj = NULL, *dafter = NULL;
    Cairn__Inode in = CAIRN__INODE__INIT; /* the new file's inode, as stored */
    bool fresh = false;                     /* in is the file's inode: no need to read it back */
    struct nfs_pre pre = {0};

    how = xdr_get_u32(&q->d);
    if (how == CREATE_EXCLUSIVE) {
        const uint8_t *v = xdr_get_fixed(&q->d, 8);

        if (v)
            memcpy(&verf, v, 8);
    } else if (how <= CREATE_GUARDED) {
        nfs_get_sattr(&q->d, &sa);
    } else {
        q->d.err = true;
    }
    ARGS_OK(q);
    if (!st)
        st = nfs_dir_for_change(q, fh.ino, &dir, &dver, &pre);
    if (!st && nst)
        st = nst;
    if (!st && nfs_dot_name(name, nl))
        st = NFS3ERR_EXIST;
    if (!st) {
        struct fs_dir d = {.ino = fh.ino, .in = dir, .version = dver};
        int rc;

        fs_new_inode(&in, CAIRN__FILE_TYPE__FT_FILE, &q->cred, dir,
                     sa.set_mode ? sa.mode : 0644);
        in.create_verf = verf;
        rc = fs_create(q->fs, &d, name, nl, &in, &ino, &dafter);
        if (rc == CAIRN_EEXIST && how != CREATE_GUARDED)
            rc = create_existing(q, fh.ino, name, nl, how, verf, &sa, &ino);
        else if (!rc)
            fresh = !sa.set_size || sa.size == 0;
        st = nfs_err(rc);
        /* An open with O_TRUNC sends size 0 with UNCHECKED: the existing file is emptied (its
         * buffered writes land first). */
        if (!st && !fresh && how != CREATE_EXCLUSIVE && sa.set_size) {
            st = nfs_wb_flush(q, ino, NULL);
            if (!st)
                st = nfs_err(fs_truncate(q->fs, ino, sa.size));
        }
        if (!st && !fresh)
            fs_inode_get(q->fs, ino, &obj, NULL);
    }
    put_diropres(q, st, ino, fresh ? &in : obj, &pre, fh.ino, dafter ? dafter : dir);
    fs_inode_free(dir);
    fs_inode_free(obj);
    fs_inode_free(dafter);
}

/* MKDIR and SYMLINK: a new inode of another type. */
static void make_other(struct nq *q, Cairn__FileType type)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0, tl = 0;
    enum nfsstat3 nst = nfs_get_name(q, &name, &nl);
    struct fs_sattr sa;
    const uint8_t *target = NULL;
    uint64_t ino = 0, dver = 0;
    Cairn__Inode *dir = NULL, *obj = NULL, *dafter = NULL;
    struct nfs_pre pre = {0};
    char tbuf[4097];

    nfs_get_sattr(&q->d, &sa);
    if (type == CAIRN__FILE_TYPE__FT_SYMLINK)
        target = xdr_get_var(&q->d, 4096, &tl);
    ARGS_OK(q);
    if (!st)
        st = nfs_dir_for_change(q, fh.ino, &dir, &dver, &pre);
    if (!st && nst)
        st = nst;
    if (!st && nfs_dot_name(name, nl))
        st = NFS3ERR_EXIST;
    if (!st && type == CAIRN__FILE_TYPE__FT_SYMLINK && (tl == 0 || memchr(target, 0, tl)))
        st = NFS3ERR_INVAL;
    if (!st) {
        Cairn__Inode in = CAIRN__INODE__INIT;
        struct fs_dir d = {.ino = fh.ino, .in = dir, .version = dver};
        uint32_t def = type == CAIRN__FILE_TYPE__FT_DIR ? 0755 : 0777;

        fs_new_inode(&in, type, &q->cred, dir, sa.set_mode ? sa.mode : def);
        if (type == CAIRN__FILE_TYPE__FT_SYMLINK) {
            memcpy(tbuf, target, tl);
            tbuf[tl] = 0;
            in.symlink = tbuf;
            in.size = tl;
        }
        st = nfs_err(fs_create(q->fs, &d, name, nl, &in, &ino, &dafter));
        if (!st)
            fs_inode_get(q->fs, ino, &obj, NULL);
    }
    put_diropres(q, st, ino, obj, &pre, fh.ino, dafter ? dafter : dir);
    fs_inode_free(dir);
    fs_inode_free(obj);
    fs_inode_free(dafter);
}

void nfs_p_mkdir(struct nq *q)
{
    make_other(q, CAIRN__FILE_TYPE__FT_DIR);
}

void nfs_p_symlink(struct nq *q)
{
    make_other(q, CAIRN__FILE_TYPE__FT_SYMLINK);
}

/* Devices, sockets and FIFOs have no place in the namespace S3 shares: NOTSUPP. */
void nfs_p_mknod(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0, type;
    struct fs_sattr sa;
    Cairn__Inode *dir = NULL;
    uint64_t dver;
    struct nfs_pre pre = {0};

    nfs_get_name(q, &name, &nl);
    type = xdr_get_u32(&q->d);
    if (type == NF3CHR || type == NF3BLK) {
        nfs_get_sattr(&q->d, &sa);
        xdr_get_u32(&q->d);
        xdr_get_u32(&q->d);
    } else if (type == NF3SOCK || type == NF3FIFO) {
        nfs_get_sattr(&q->d, &sa);
    }
    ARGS_OK(q);
    if (!st)
        st = nfs_dir_for_change(q, fh.ino, &dir, &dver, &pre);
    if (!st)
        st = (type >= NF3REG && type <= NF3FIFO && type != NF3DIR && type != NF3REG &&
              type != NF3LNK)
                 ? NFS3ERR_NOTSUPP
                 : NFS3ERR_BADTYPE;
    put_diropres(q, st, 0, NULL, &pre, fh.ino, dir);
    fs_inode_free(dir);
}

/* REMOVE and RMDIR. */
static void remove_entry(struct nq *q, bool rmdir)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    const char *name = NULL;
    uint32_t nl = 0;
    enum nfsstat3 nst = nfs_get_name(q, &name, &nl);
    Cairn__Inode *dir = NULL, *dafter = NULL;
    uint64_t dver = 0;
    struct nfs_pre pre = {0};

    ARGS_OK(q);
    if (!st)
        st = nfs_dir_for_change(q, fh.ino, &dir, &dver, &pre);
    if (!st && nl == 1 && name[0] == '.')
        st = NFS3ERR_INVAL;
    else if (!st && nl == 2 && name[0] == '.' && name[1] == '.')
        st = rmdir ? NFS3ERR_EXIST : NFS3ERR_INVAL;
    else if (!st && nst)
        st = nst == NFS3ERR_INVAL ? NFS3ERR_NOENT : nst;
    if (!st) {
        struct fs_dir d = {.ino = fh.ino, .in = dir, .version = dver};
        uint64_t ino = 0;
        bool last = false;
        int rc = fs_remove(q->fs, &d, &q->cred, name, nl, rmdir, &ino, &last, &dafter);

        st = nfs_err(rc);
        /* The last link: buffered writes to the file have nowhere to go. */
        if (!rc && !rmdir && last)
            nfs_wb_discard(q->app, ino);
    }
    xdr_put_u32(&q->e, st);
    nfs_put_wcc(q, &pre, fh.ino, dafter ? dafter : dir);
    fs_inode_free(dir);
    fs_inode_free(dafter);
}

void nfs_p_remove(struct nq *q)
{
    remove_entry(q, false);
}

void nfs_p_rmdir(struct nq *q)
{
    remove_entry(q, true);
}

void nfs_p_rename(struct nq *q)
{
    struct nfs_fh ffh, tfh;
    enum nfsstat3 st = nfs_get_fh(q, &ffh);
    const char *fname = NULL, *tname = NULL;
    uint32_t fl = 0, tl = 0;
    enum nfsstat3 fst = nfs_get_name(q, &fname, &fl), tst;
    Cairn__Inode *fdir = NULL, *tdir = NULL, *fafter = NULL, *tafter = NULL;
    const Cairn__Inode *fshow, *tshow;
    uint64_t fver = 0, tver = 0;
    struct nfs_pre fpre = {0}, tpre = {0};
    enum nfsstat3 st2 = nfs_get_fh(q, &tfh);

    tst = nfs_get_name(q, &tname, &tl);
    ARGS_OK(q);
    if (!st)
        st = st2;
    if (!st)
        st = nfs_dir_for_change(q, ffh.ino, &fdir, &fver, &fpre);
    if (!st)
        st = nfs_dir_for_change(q, tfh.ino, &tdir, &tver, &tpre);
    if (!st && (fst || tst))
        st = fst ? fst : tst;
    if (!st && (nfs_dot_name(fname, fl) || nfs_dot_name(tname, tl)))
        st = NFS3ERR_INVAL;
    if (!st) {
        struct fs_dir fd = {.ino = ffh.ino, .in = fdir, .version = fver};
        struct fs_dir td = {.ino = tfh.ino, .in = tdir, .version = tver};
        uint64_t replaced = 0;
        bool last = false;
        int rc = fs_rename(q->fs, &fd, fname, fl, &td, tname, tl, &replaced, &last, &fafter,
                           &tafter);

        st = nfs_err(rc);
        if (!rc && replaced && last)
            nfs_wb_discard(q->app, replaced);
    }
    fshow = fafter ? fafter : fdir;
    tshow = tfh.ino == ffh.ino ? fshow : (tafter ? tafter : tdir);
    xdr_put_u32(&q->e, st);
    nfs_put_wcc(q, &fpre, ffh.ino, fshow);
    nfs_put_wcc(q, &tpre, tfh.ino, tshow);
    fs_inode_free(fdir);
    fs_inode_free(tdir);
    fs_inode_free(fafter);
    fs_inode_free(tafter);
}

void nfs_p_link(struct nq *q)
{
    struct nfs_fh fh, dfh;
    enum nfsstat3 st = nfs_get_fh(q, &fh), st2 = nfs_get_fh(q, &dfh);
    const char *name = NULL;
    uint32_t nl = 0;
    enum nfsstat3 nst = nfs_get_name(q, &name, &nl);
    Cairn__Inode *in = NULL, *dir = NULL, *dafter = NULL;
    uint64_t dver = 0;
    struct nfs_pre pre = {0};

    ARGS_OK(q);
    if (!st)
        st = st2;
    if (!st)
        st = nfs_load(q, fh.ino, &in, NULL);
    if (!st && fs_is_dir(in))
        st = NFS3ERR_ISDIR;
    if (!st)
        st = nfs_dir_for_change(q, dfh.ino, &dir, &dver, &pre);
    if (!st && nst)
        st = nst;
    if (!st && nfs_dot_name(name, nl))
        st = NFS3ERR_EXIST;
    if (!st) {
        struct fs_dir d = {.ino = dfh.ino, .in = dir, .version = dver};

        st = nfs_err(fs_link(q->fs, fh.ino, &d, name, nl, &dafter));
        fs_inode_free(in);
        in = NULL;
        nfs_load(q, fh.ino, &in, NULL);
    }
    xdr_put_u32(&q->e, st);
    nfs_put_post_attr(q, fh.ino, in);
    nfs_put_wcc(q, &pre, dfh.ino, dafter ? dafter : dir);
    fs_inode_free(in);
    fs_inode_free(dir);
    fs_inode_free(dafter);
}
