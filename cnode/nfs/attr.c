/*
 * attr.c - attributes as NFS shows them (fattr3, wcc_data), names and sattr3 arguments, and
 * loading what a handle names (see call.h).
 */
#include <string.h>

#include "cnode/nfs/call.h"
#include "common/cairn.h"

#define FSID 0xCA1A0001ull
enum { DONT_CHANGE = 0, SET_TO_SERVER_TIME = 1, SET_TO_CLIENT_TIME = 2 };

static uint32_t ftype3(const Cairn__Inode *in)
{
    switch (in->type) {
    case CAIRN__FILE_TYPE__FT_DIR: return NF3DIR;
    case CAIRN__FILE_TYPE__FT_SYMLINK: return NF3LNK;
    default: return NF3REG;
    }
}

void nfs_put_time(struct xdr_enc *e, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    xdr_put_u32(e, (uint32_t)(ns / 1000000000));
    xdr_put_u32(e, (uint32_t)(ns % 1000000000));
}

int64_t nfs_get_time(struct xdr_dec *d)
{
    int64_t sec = xdr_get_u32(d);
    uint32_t nsec = xdr_get_u32(d);

    return sec * 1000000000 + (nsec < 1000000000 ? nsec : 999999999);
}

uint64_t nfs_file_size(struct nq *q, uint64_t ino, const Cairn__Inode *in)
{
    if (in->type == CAIRN__FILE_TYPE__FT_SYMLINK)
        return strlen(in->symlink);
    if (in->type == CAIRN__FILE_TYPE__FT_DIR)
        return 4096;
    return nfs_wb_size(q->app, ino, in->size);
}

void nfs_put_fattr(struct nq *q, uint64_t ino, const Cairn__Inode *in)
{
    uint64_t size = nfs_file_size(q, ino, in);
    int64_t mt = in->mtime_ns, ct = in->ctime_ns ? in->ctime_ns : in->mtime_ns;

    xdr_put_u32(&q->e, ftype3(in));
    xdr_put_u32(&q->e, in->mode & 07777);
    /* Directories say 2 links: subdirectories are not counted (that would make every mkdir
     * contend on its parent's record), and tools know not to trust NFS link counts of
     * directories (gnulib's fts turns its leaf optimisation off on NFS). */
    xdr_put_u32(&q->e, fs_is_dir(in) ? 2 : (in->nlink ? in->nlink : 1));
    xdr_put_u32(&q->e, in->uid);
    xdr_put_u32(&q->e, in->gid);
    xdr_put_u64(&q->e, size);
    xdr_put_u64(&q->e, CAIRN_ALIGN_UP(size, 4096));
    xdr_put_u32(&q->e, 0); /* rdev */
    xdr_put_u32(&q->e, 0);
    xdr_put_u64(&q->e, FSID);
    xdr_put_u64(&q->e, ino);
    nfs_put_time(&q->e, in->atime_ns ? in->atime_ns : mt); /* reads do not move it (noatime) */
    nfs_put_time(&q->e, mt);
    nfs_put_time(&q->e, ct);
}

void nfs_put_post_attr(struct nq *q, uint64_t ino, const Cairn__Inode *in)
{
    xdr_put_bool(&q->e, in != NULL);
    if (in)
        nfs_put_fattr(q, ino, in);
}

void nfs_pre_of(struct nq *q, uint64_t ino, const Cairn__Inode *in, struct nfs_pre *p)
{
    p->valid = in != NULL;
    if (in) {
        p->size = nfs_file_size(q, ino, in);
        p->mtime = in->mtime_ns;
        p->ctime = in->ctime_ns ? in->ctime_ns : in->mtime_ns;
    }
}

void nfs_put_wcc(struct nq *q, const struct nfs_pre *p, uint64_t ino, const Cairn__Inode *after)
{
    xdr_put_bool(&q->e, p && p->valid);
    if (p && p->valid) {
        xdr_put_u64(&q->e, p->size);
        nfs_put_time(&q->e, p->mtime);
        nfs_put_time(&q->e, p->ctime);
    }
    nfs_put_post_attr(q, ino, after);
}

enum nfsstat3 nfs_load(struct nq *q, uint64_t ino, Cairn__Inode **in, uint64_t *ver)
{
    int rc = fs_inode_get(q->fs, ino, in, ver);

    if (rc == CAIRN_ENOENT)
        return NFS3ERR_STALE;
    return nfs_err(rc);
}

enum nfsstat3 nfs_get_name(struct nq *q, const char **name, uint32_t *len)
{
    const uint8_t *b = xdr_get_var(&q->d, 4096, len);

    if (!b)
        return NFS3ERR_INVAL; /* becomes GARBAGE_ARGS if the decoder failed */
    *name = (const char *)b;
    if (*len > FS_NAME_MAX)
        return NFS3ERR_NAMETOOLONG;
    if (*len == 0 || memchr(b, '/', *len) || memchr(b, 0, *len))
        return NFS3ERR_INVAL;
    return NFS3_OK;
}

bool nfs_dot_name(const char *n, uint32_t l)
{
    return (l == 1 && n[0] == '.') || (l == 2 && n[0] == '.' && n[1] == '.');
}

static enum fs_time_set time_how(struct xdr_dec *d, int64_t *t)
{
    uint32_t how = xdr_get_u32(d);

    if (how == SET_TO_CLIENT_TIME) {
        *t = nfs_get_time(d);
        return FS_TIME_GIVEN;
    }
    if (how > SET_TO_CLIENT_TIME)
        d->err = true;
    return how == SET_TO_SERVER_TIME ? FS_TIME_NOW : FS_TIME_KEEP;
}

void nfs_get_sattr(struct xdr_dec *d, struct fs_sattr *sa)
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
    sa->atime_how = time_how(d, &sa->atime);
    sa->mtime_how = time_how(d, &sa->mtime);
}

enum nfsstat3 nfs_dir_for_change(struct nq *q, uint64_t ino, Cairn__Inode **in, uint64_t *ver,
                                 struct nfs_pre *pre)
{
    enum nfsstat3 st = nfs_load(q, ino, in, ver);

    if (st)
        return st;
    nfs_pre_of(q, ino, *in, pre);
    if (!fs_is_dir(*in))
        return NFS3ERR_NOTDIR;
    if (nfs_read_only(q))
        return NFS3ERR_ROFS;
    if (!fs_may(&q->cred, *in, FS_MAY_W | FS_MAY_X))
        return NFS3ERR_ACCES;
    return NFS3_OK;
}
