/*
 * proc_file.c - the NFSv3 procedures on one file or the file system: GETATTR, SETATTR, ACCESS,
 * READLINK, READ, WRITE, COMMIT, FSSTAT, FSINFO, PATHCONF (RFC 1813; see call.h).
 */
#include <inttypes.h>
#include <string.h>

#include "cnode/nfs/call.h"
#include "common/cairn.h"
#include "common/log.h"

#define ACCESS3_READ 0x01u
#define ACCESS3_LOOKUP 0x02u
#define ACCESS3_MODIFY 0x04u
#define ACCESS3_EXTEND 0x08u
#define ACCESS3_DELETE 0x10u
#define ACCESS3_EXECUTE 0x20u

/* The procedures that take one handle: decode it and load its inode.  False if the arguments
 * did not decode (the call is then answered GARBAGE_ARGS); else *st says how the load went. */
static bool one_handle(struct nq *q, struct nfs_fh *fh, Cairn__Inode **in, enum nfsstat3 *st)
{
    *in = NULL;
    *st = nfs_get_fh(q, fh);
    if (!xdr_dec_ok(&q->d)) {
        q->garbage = true;
        return false;
    }
    if (!*st)
        *st = nfs_load(q, fh->ino, in, NULL);
    return true;
}

/* The status and the object's attributes that open most results. */
static void put_status_attr(struct nq *q, enum nfsstat3 st, uint64_t ino, const Cairn__Inode *in)
{
    xdr_put_u32(&q->e, st);
    nfs_put_post_attr(q, ino, in);
}

void nfs_p_getattr(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st;
    Cairn__Inode *in;

    if (!one_handle(q, &fh, &in, &st))
        return;
    xdr_put_u32(&q->e, st);
    if (!st)
        nfs_put_fattr(q, fh.ino, in);
    fs_inode_free(in);
}

void nfs_p_setattr(struct nq *q)
{
    struct nfs_fh fh;
    struct fs_sattr sa;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    Cairn__Inode *before = NULL, *after = NULL;
    struct nfs_pre pre = {0};

    nfs_get_sattr(&q->d, &sa);
    if ((sa.guard = xdr_get_bool(&q->d)))
        sa.guard_ctime = nfs_get_time(&q->d);
    ARGS_OK(q);
    if (!st && nfs_read_only(q))
        st = NFS3ERR_ROFS;
    /* A size change moves data: the file's buffered writes land first. */
    if (!st && sa.set_size)
        st = nfs_wb_flush(q, fh.ino, NULL);
    if (!st) {
        int rc = fs_setattr(q->fs, &q->cred, fh.ino, &sa, &before, &after);

        st = rc == CAIRN_ENOENT ? NFS3ERR_STALE : nfs_err(rc);
    }
    if (before)
        nfs_pre_of(q, fh.ino, before, &pre);
    xdr_put_u32(&q->e, st);
    nfs_put_wcc(q, &pre, fh.ino, st ? NULL : after);
    fs_inode_free(before);
    fs_inode_free(after);
}

void nfs_p_access(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    uint32_t want = xdr_get_u32(&q->d), got = 0;
    Cairn__Inode *in = NULL;

    ARGS_OK(q);
    if (!st)
        st = nfs_load(q, fh.ino, &in, NULL);
    if (!st) {
        const struct fs_cred *cr = &q->cred;
        bool ro = nfs_read_only(q);

        if (fs_may(cr, in, FS_MAY_R))
            got |= ACCESS3_READ;
        if (fs_is_dir(in)) {
            if (fs_may(cr, in, FS_MAY_X))
                got |= ACCESS3_LOOKUP;
            if (!ro && fs_may(cr, in, FS_MAY_W | FS_MAY_X))
                got |= ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
        } else {
            if (!ro && fs_may(cr, in, FS_MAY_W))
                got |= ACCESS3_MODIFY | ACCESS3_EXTEND;
            if (fs_may(cr, in, FS_MAY_X))
                got |= ACCESS3_EXECUTE;
        }
    }
    put_status_attr(q, st, fh.ino, in);
    if (!st)
        xdr_put_u32(&q->e, want & got);
    fs_inode_free(in);
}

void nfs_p_readlink(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st;
    Cairn__Inode *in;

    if (!one_handle(q, &fh, &in, &st))
        return;
    if (!st && in->type != CAIRN__FILE_TYPE__FT_SYMLINK)
        st = NFS3ERR_INVAL;
    put_status_attr(q, st, fh.ino, in);
    if (!st)
        xdr_put_var(&q->e, in->symlink, (uint32_t)strlen(in->symlink));
    fs_inode_free(in);
}

void nfs_p_read(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    uint64_t off = xdr_get_u64(&q->d), size = 0;
    uint32_t count = xdr_get_u32(&q->d), n = 0;
    Cairn__Inode *in = NULL;

    ARGS_OK(q);
    if (!st)
        st = nfs_load(q, fh.ino, &in, NULL);
    if (!st && fs_is_dir(in))
        st = NFS3ERR_ISDIR;
    if (!st && in->type != CAIRN__FILE_TYPE__FT_FILE)
        st = NFS3ERR_INVAL;
    if (!st && !fs_may_io(&q->cred, in, FS_MAY_R))
        st = NFS3ERR_ACCES;
    if (!st) {
        size = nfs_file_size(q, fh.ino, in);
        count = CAIRN_MIN(count, NFS_MAX_IO);
        n = off >= size ? 0 : (uint32_t)CAIRN_MIN((uint64_t)count, size - off);
    }
    put_status_attr(q, st, fh.ino, in);
    if (!st) {
        uint8_t *dst, *cur;
        uint64_t have = in->size > off ? CAIRN_MIN((uint64_t)n, in->size - off) : 0;
        int rc;

        xdr_put_u32(&q->e, n);
        xdr_put_bool(&q->e, off + n >= size);
        xdr_put_u32(&q->e, n);
        /* The bytes go from the D-nodes straight into the reply. */
        dst = xdr_put_reserve(&q->e, n);
        if (!dst) {
            q->e.err = true;
        } else {
            cur = dst;
            rc = fs_read(q->fs, in, off, have, fs_sink_buffer, &cur);
            if (rc) {
                /* Start over with the error: no partial data. */
                log_warn(NFS_TAG, "read of inode %016" PRIx64 ": %s", fh.ino, cairn_strerror(rc));
                q->e.len = 0;
                q->redo_status = nfs_err(rc) == NFS3ERR_JUKEBOX ? NFS3ERR_JUKEBOX : NFS3ERR_IO;
            } else {
                memset(dst + have, 0, n - have); /* beyond the committed size: buffered bytes */
                nfs_wb_overlay(q->app, fh.ino, off, dst, n);
            }
        }
    }
    fs_inode_free(in);
}

void nfs_p_write(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    uint64_t off = xdr_get_u64(&q->d);
    uint32_t count = xdr_get_u32(&q->d), stable = xdr_get_u32(&q->d), dlen = 0;
    const uint8_t *data = xdr_get_var(&q->d, NFS_MAX_IO, &dlen);
    Cairn__Inode *in = NULL, *after = NULL;
    struct nfs_pre pre = {0};
    uint32_t committed = stable;
    uint64_t ver = 0; /* the inode's version as this write arrives: its place in the order */
    uint8_t verf[8];

    ARGS_OK(q);
    if (stable > NFS_FILE_SYNC || dlen < count) {
        q->garbage = true;
        return;
    }
    if (!st)
        st = nfs_load(q, fh.ino, &in, &ver);
    if (!st) {
        nfs_pre_of(q, fh.ino, in, &pre);
        if (fs_is_dir(in))
            st = NFS3ERR_ISDIR;
        else if (in->type != CAIRN__FILE_TYPE__FT_FILE)
            st = NFS3ERR_INVAL;
        else if (nfs_read_only(q))
            st = NFS3ERR_ROFS;
        else if (!fs_may_io(&q->cred, in, FS_MAY_W))
            st = NFS3ERR_ACCES;
        else if (off + count < off || off + count > (1ull << 62))
            st = NFS3ERR_FBIG;
    }
    if (!st && count)
        st = nfs_wb_write(q, fh.ino, off, data, count, stable, ver, &committed, &after);
    if (!st && !after) {
        fs_inode_free(in);
        in = NULL;
        nfs_load(q, fh.ino, &in, NULL);
    }
    xdr_put_u32(&q->e, st);
    nfs_put_wcc(q, &pre, fh.ino, after ? after : in);
    if (!st) {
        xdr_put_u32(&q->e, count);
        xdr_put_u32(&q->e, committed);
        nfs_verf(q->app, verf);
        xdr_put_fixed(&q->e, verf, 8);
    }
    fs_inode_free(in);
    fs_inode_free(after);
}

void nfs_p_commit(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st = nfs_get_fh(q, &fh);
    Cairn__Inode *in = NULL, *after = NULL;
    struct nfs_pre pre = {0};

    xdr_get_u64(&q->d); /* offset and count: the whole file is committed */
    xdr_get_u32(&q->d);
    ARGS_OK(q);
    if (!st)
        st = nfs_load(q, fh.ino, &in, NULL);
    if (!st) {
        nfs_pre_of(q, fh.ino, in, &pre);
        st = nfs_wb_flush(q, fh.ino, &after);
    }
    xdr_put_u32(&q->e, st);
    nfs_put_wcc(q, &pre, fh.ino, after ? after : in);
    if (!st) {
        uint8_t verf[8];

        nfs_verf(q->app, verf); /* read after the flush: it may have changed */
        xdr_put_fixed(&q->e, verf, 8);
    }
    fs_inode_free(in);
    fs_inode_free(after);
}

void nfs_p_fsstat(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st;
    Cairn__Inode *in;
    uint64_t total = 0, used = 0;

    if (!one_handle(q, &fh, &in, &st))
        return;
    if (!st)
        fs_statfs(q->fs, &total, &used);
    put_status_attr(q, st, fh.ino, in);
    if (!st) {
        xdr_put_u64(&q->e, total);
        xdr_put_u64(&q->e, total - CAIRN_MIN(used, total));
        xdr_put_u64(&q->e, total - CAIRN_MIN(used, total));
        xdr_put_u64(&q->e, 1ull << 40); /* inodes are records: no fixed table */
        xdr_put_u64(&q->e, 1ull << 40);
        xdr_put_u64(&q->e, 1ull << 40);
        xdr_put_u32(&q->e, 0);
    }
    fs_inode_free(in);
}

void nfs_p_fsinfo(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st;
    Cairn__Inode *in;

    if (!one_handle(q, &fh, &in, &st))
        return;
    put_status_attr(q, st, fh.ino, in);
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
        /* LINK SYMLINK HOMOGENEOUS CANSETTIME */
        xdr_put_u32(&q->e, 0x0001u | 0x0002u | 0x0008u | 0x0010u);
    }
    fs_inode_free(in);
}

void nfs_p_pathconf(struct nq *q)
{
    struct nfs_fh fh;
    enum nfsstat3 st;
    Cairn__Inode *in;

    if (!one_handle(q, &fh, &in, &st))
        return;
    put_status_attr(q, st, fh.ino, in);
    if (!st) {
        xdr_put_u32(&q->e, 65535);       /* linkmax */
        xdr_put_u32(&q->e, FS_NAME_MAX); /* name_max */
        xdr_put_bool(&q->e, true);       /* no_trunc */
        xdr_put_bool(&q->e, true);       /* chown_restricted */
        xdr_put_bool(&q->e, false);      /* case_insensitive */
        xdr_put_bool(&q->e, true);       /* case_preserving */
    }
    fs_inode_free(in);
}
