/*
 * err.c - the NFS head's one table from project errors (CAIRN_E*) to NFS statuses (see
 * call.h).
 */
#include "cnode/nfs/call.h"
#include "common/cairn.h"

enum nfsstat3 nfs_err(int rc)
{
    switch (rc) {
    case 0: return NFS3_OK;
    case CAIRN_ENOENT: return NFS3ERR_NOENT;
    case CAIRN_EEXIST: return NFS3ERR_EXIST;
    case CAIRN_ENOSPC: return NFS3ERR_NOSPC;
    case CAIRN_EINVAL: return NFS3ERR_INVAL;
    case CAIRN_ETOOBIG: return NFS3ERR_FBIG;
    case CAIRN_ENOTSUP: return NFS3ERR_NOTSUPP;
    case CAIRN_ENOTEMPTY: return NFS3ERR_NOTEMPTY;
    case CAIRN_ENOTDIR: return NFS3ERR_NOTDIR;
    case CAIRN_EISDIR: return NFS3ERR_ISDIR;
    case CAIRN_EACCES: return NFS3ERR_ACCES;
    case CAIRN_EPERM: return NFS3ERR_PERM;
    case CAIRN_EMLINK: return NFS3ERR_MLINK;
    case CAIRN_ENAMETOOLONG: return NFS3ERR_NAMETOOLONG;
    case CAIRN_EPRECOND: return NFS3ERR_NOT_SYNC;
    case CAIRN_ECONFLICT:
    case CAIRN_ETIMEDOUT:
    case CAIRN_EUNREACH:
    case CAIRN_EAGAIN:
        return NFS3ERR_JUKEBOX; /* the client retries later */
    default: return NFS3ERR_IO;
    }
}
