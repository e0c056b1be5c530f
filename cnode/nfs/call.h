/*
 * call.h - one NFS or MOUNT call in flight, and what the files of the NFS head share (inside
 * cnode/nfs/).
 *
 * A call runs on one RPC worker from decode to reply (dispatch.c): the procedure (proc_file.c,
 * proc_dir.c, readdir.c, mount.c) decodes its arguments, checks the handle (handle.c), calls
 * the file system (cnode/fs/fs.h) and encodes the result with the attributes NFS wants around
 * it (attr.c).  UNSTABLE writes wait in the C-node's write buffer (wbuf.c) until COMMIT.
 */
#ifndef CAIRN_CN_NFS_CALL_H
#define CAIRN_CN_NFS_CALL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cnode/fs/fs.h"
#include "cnode/nfs/exports.h"
#include "cnode/nfs/nfs3.h"
#include "cnode/rpc/rpc.h"
#include "cnode/rpc/server.h"
#include "cnode/rpc/xdr.h"
#include "common/metrics.h"

#define NFS_TAG "nfs"

#define NFS_FH_LEN 32u
#define NFS_REPLY_MAX (NFS_MAX_IO + (64u << 10))
#define NFS_ATTR_BYTES 84u /* an encoded fattr3 */

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
enum { NFS_UNSTABLE = 0, NFS_DATA_SYNC = 1, NFS_FILE_SYNC = 2 };

struct nfs_wtable;    /* wbuf.c */
struct nfs_cookies;   /* readdir.c */

/* What the head counts, by procedure (dispatch.c): NFS procedures 0..21, then MOUNT's 0..5,
 * then calls that name no procedure of either. */
#define NFS_STAT_MOUNT 22u
#define NFS_STAT_OTHER 28u
struct nfs_app {
    struct fs *fs; /* borrowed */
    struct metrics_ops stats;
    struct nfs_exports exports;
    uint8_t fh_key[FS_SECRET_LEN];
    _Atomic uint64_t verf; /* write verifier: new at every start and when buffered writes
                            * are dropped (nfs_wb_*), so clients send them again */
    struct nfs_wtable *wb;
    struct nfs_cookies *cookies;
};

/* One call. */
struct nq {
    struct nfs_app *app;
    struct fs_ctx *fs; /* the worker's */
    struct rpcsrv_call *call;
    struct rpc_call c;
    struct xdr_dec d;
    struct xdr_enc e;
    /* set by the first handle of the call */
    const struct nfs_export *x;
    const struct nfs_rule *rule;
    struct fs_cred cred;       /* the caller, after squashing */
    bool garbage;              /* the arguments did not decode: GARBAGE_ARGS */
    enum nfsstat3 redo_status; /* READ/READDIR failed after its reply was begun: answer this */
    /* for the head's counters (dispatch.c) */
    size_t in_len;    /* bytes of the call */
    size_t stat_idx;  /* its procedure's series */
    uint64_t t0;      /* when it was decoded; 0: not counted */
};

/* A decoded handle. */
struct nfs_fh {
    uint32_t export_id;
    uint64_t ino;
};

/* Arguments that did not decode: the call is answered GARBAGE_ARGS. */
#define ARGS_OK(q)                                                                                 \
    do {                                                                                           \
        if (!xdr_dec_ok(&(q)->d)) {                                                                \
            (q)->garbage = true;                                                                   \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ---- err.c ---- */

/* The NFS status for a project error: the one table of the head. */
enum nfsstat3 nfs_err(int rc);

/* ---- handle.c ---- */

void nfs_put_fh(struct nq *q, uint64_t ino);
/* Decode a handle argument; the first one of a call fixes the export, checks the client
 * against its rules and squashes its credentials (every call, so a rule change or a handle
 * passed to another host is enforced at once). */
enum nfsstat3 nfs_get_fh(struct nq *q, struct nfs_fh *out);
bool nfs_read_only(const struct nq *q);

/* ---- attr.c ---- */

/* Attributes before a change (wcc_attr), captured from the inode as read. */
struct nfs_pre {
    bool valid;
    uint64_t size;
    int64_t mtime, ctime;
};

void nfs_put_time(struct xdr_enc *e, int64_t ns);
int64_t nfs_get_time(struct xdr_dec *d);
/* The size NFS shows: a symlink's target length, 4096 for directories, and for files the
 * stored size grown by writes still in this C-node's buffer. */
uint64_t nfs_file_size(struct nq *q, uint64_t ino, const Cairn__Inode *in);
void nfs_put_fattr(struct nq *q, uint64_t ino, const Cairn__Inode *in);
void nfs_put_post_attr(struct nq *q, uint64_t ino, const Cairn__Inode *in);
void nfs_pre_of(struct nq *q, uint64_t ino, const Cairn__Inode *in, struct nfs_pre *p);
void nfs_put_wcc(struct nq *q, const struct nfs_pre *p, uint64_t ino, const Cairn__Inode *after);
/* Load an inode named by a handle: a missing inode is STALE. */
enum nfsstat3 nfs_load(struct nq *q, uint64_t ino, Cairn__Inode **in, uint64_t *ver);
/* A name argument: NAMETOOLONG beyond 255 bytes, INVAL with '/' or NUL. */
enum nfsstat3 nfs_get_name(struct nq *q, const char **name, uint32_t *len);
bool nfs_dot_name(const char *n, uint32_t l);
/* A sattr3 argument. */
void nfs_get_sattr(struct xdr_dec *d, struct fs_sattr *sa);
/* Load the directory of a handle (its version in *dir for the mtime touch) and check the
 * caller may change its entries. */
enum nfsstat3 nfs_dir_for_change(struct nq *q, uint64_t ino, Cairn__Inode **in, uint64_t *ver,
                                 struct nfs_pre *pre);

/* ---- wbuf.c: UNSTABLE writes held until COMMIT ---- */

/* The write verifier a reply carries now (8 bytes). */
void nfs_verf(struct nfs_app *app, uint8_t out[8]);

int nfs_wb_create(struct nfs_wtable **out);
/* Uncommitted writes die with the C-node: their clients resend them when they see the next
 * C-node's write verifier. */
void nfs_wb_destroy(struct nfs_wtable *t);
/* Buffer a WRITE that arrived when the inode was at version since; stable (or a full buffer)
 * flushes the file to the D-nodes at once, then *committed is FILE_SYNC and *after (may be
 * NULL) the inode as committed.  A flush that finds bytes committed (through any C-node) after
 * buffered writes arrived, over those writes, drops the file's buffer and changes the write
 * verifier, so the client sends what it still holds again, in order: the WRITE then answers
 * JUKEBOX (the client retries it) and a COMMIT succeeds with the new verifier. */
enum nfsstat3 nfs_wb_write(struct nq *q, uint64_t ino, uint64_t off, const uint8_t *data,
                           uint32_t count, uint32_t stable, uint64_t since, uint32_t *committed,
                           Cairn__Inode **after);
/* Flush file ino's buffered writes, if any (*after as in nfs_wb_write). */
enum nfsstat3 nfs_wb_flush(struct nq *q, uint64_t ino, Cairn__Inode **after);
/* The size a file shows with its buffered writes. */
uint64_t nfs_wb_size(struct nfs_app *app, uint64_t ino, uint64_t size);
/* Drop a file's buffered writes (it lost its last name). */
void nfs_wb_discard(struct nfs_app *app, uint64_t ino);
/* Lay buffered bytes of [off, off + len) over buf (which holds what the D-nodes have). */
void nfs_wb_overlay(struct nfs_app *app, uint64_t ino, uint64_t off, uint8_t *buf, size_t len);

/* ---- readdir.c ---- */

int nfs_cookies_create(struct nfs_cookies **out);
void nfs_cookies_destroy(struct nfs_cookies *c);
void nfs_p_readdir(struct nq *q);
void nfs_p_readdirplus(struct nq *q);

/* ---- proc_file.c ---- */

void nfs_p_getattr(struct nq *q);
void nfs_p_setattr(struct nq *q);
void nfs_p_access(struct nq *q);
void nfs_p_readlink(struct nq *q);
void nfs_p_read(struct nq *q);
void nfs_p_write(struct nq *q);
void nfs_p_commit(struct nq *q);
void nfs_p_fsstat(struct nq *q);
void nfs_p_fsinfo(struct nq *q);
void nfs_p_pathconf(struct nq *q);

/* ---- proc_dir.c ---- */

void nfs_p_lookup(struct nq *q);
void nfs_p_create(struct nq *q);
void nfs_p_mkdir(struct nq *q);
void nfs_p_symlink(struct nq *q);
void nfs_p_mknod(struct nq *q);
void nfs_p_remove(struct nq *q);
void nfs_p_rmdir(struct nq *q);
void nfs_p_rename(struct nq *q);
void nfs_p_link(struct nq *q);

/* ---- mount.c ---- */

/* Serve a MOUNT v3 call; false if the procedure is unknown. */
bool nfs_mount_proc(struct nq *q);

#endif
