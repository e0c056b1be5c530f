/*
 * internal.h - what the files of cnode/fs/ share and no head sees: the file system and context
 * structs, the data plumbing (segment buffer, stripe cache, deferred frees) and the namespace
 * steps several operations are built from.
 */
#ifndef CAIRN_CN_FS_INTERNAL_H
#define CAIRN_CN_FS_INTERNAL_H

#include <stdatomic.h>

#include "client/cluster.h"
#include "cnode/fs/extmap.h"
#include "cnode/fs/fs.h"
#include "meta/ns.h"

#define FS_SEGMENT_STRIPES 8u /* stripes moved per D-node round trip */

struct fs_scache;
struct fs_deferred;

struct fs {
    struct fs_config cfg;
    struct fs_scache *cache; /* owned, may be NULL: recently read stripes */
    /* what every worker's reads met (fs_read_stats): added to, never reset */
    _Atomic uint64_t stripes_read, degraded_stripes, frags_failed;
};

struct fs_ctx {
    struct fs *fs;
    struct cl_cluster *cl;   /* owned: this thread's cluster view */
    struct fs_scache *cache; /* borrowed from fs */
    uint8_t *seg;            /* owned: one segment of stripes */
    size_t seg_cap;
    struct fs_deferred *deferred, **deferred_tail; /* in due order */
};

/* ---- the write deadline (fs_config.write_deadline_ms) ---- */

/* 0 if data whose first fragment was sent at monotonic t0_ms may still be recorded, else
 * CAIRN_ETIMEDOUT (logged): the garbage sweeper may take fragments that old. */
int fs_check_fresh(const struct fs_ctx *c, uint64_t t0_ms);

/* ---- outcomes ---- */

/* A record update that timed out, or reached too few replicas, after it was sent may or may
 * not have taken effect.  Nothing such an update may reference is freed until the outcome is
 * resolved by reading the record back; when that fails too, the data is left (garbage for the
 * scrubber), never freed. */
static inline bool fs_unknown(int rc)
{
    return rc == CAIRN_EUNREACH || rc == CAIRN_ETIMEDOUT;
}

/* Whether entry name (the directory form if is_dir) of dir names inode ino now: 1, 0, or a
 * negative error (still unknown). */
int fs_entry_is(struct fs_ctx *c, uint64_t dir, const char *name, size_t len, bool is_dir,
                uint64_t ino);
/* fs_lookup, and *ver: the version of the entry found, or on CAIRN_ENOENT the version a
 * create of the file form must expect. */
int fs_lookup_ver(struct fs_ctx *c, uint64_t dir, const char *name, size_t len, uint64_t *ino,
                  bool *is_dir, uint64_t *ver);

/* ---- data.c ---- */

int fs_scache_create(unsigned entries, struct fs_scache **out);
void fs_scache_destroy(struct fs_scache *c); /* accepts NULL */
/* The segment buffer for layout l (FS_SEGMENT_STRIPES stripes); *cap gets its size. */
int fs_seg(struct fs_ctx *c, const struct ec_layout *l, size_t *cap);
/* Delete the objects of the extents now (each distinct object once); failures are logged and
 * leave garbage fragments, never wrong data. */
void fs_extents_free(struct fs_ctx *c, Cairn__Extent *const *ex, size_t n);
/* Queue the inode's objects (ownership of in passes) to be freed FS_FREE_DELAY_MS from now. */
void fs_defer_inode(struct fs_ctx *c, Cairn__Inode *in);
/* The same for some extents (copied; e.g. the pieces a rewrite no longer shows). */
void fs_defer_extents(struct fs_ctx *c, Cairn__Extent *const *ex, size_t n);
/* Free what is queued (everything if force, else what is due). */
void fs_run_deferred(struct fs_ctx *c, bool force);
/* A fresh extent for len bytes at file offset off, in a new object of the cluster's layout. */
Cairn__Extent fs_new_extent(struct fs_ctx *c, uint64_t off, uint64_t len);
/* Record placement pl in extent x: x's node list then borrows pl's ids, so pl must outlive
 * every use of x (and of the copies of x an extent map makes) until x is packed. */
void fs_extent_set_place(Cairn__Extent *x, struct cl_placement *pl);
/* x's recorded placement in *buf, or NULL if x has none (the stripe client then places the
 * first way: rendezvous per stripe). */
const struct cl_placement *fs_extent_place(const Cairn__Extent *x, struct cl_placement *buf);

/* ---- ns.c ---- */

/* Set dir's mtime and ctime to now after its entries changed (see ns.c for when a touch that
 * loses a race stops).  hint (may be NULL) is the directory as loaded before the change.
 * *after (may be NULL) gets the new inode. */
void fs_touch_dir(struct fs_ctx *c, const struct fs_dir *hint, Cairn__Inode **after);
/* Find or make the subdirectory name of dir (an implied directory unless explicit_dir; an
 * existing one is marked explicit if asked; mode 0 = FS_OBJECT_DIR_MODE).  Returns 0 with
 * *ino, CAIRN_EEXIST if a file has that name, or another error.  Safe against C-nodes racing
 * to make it; a directory made here touches dir. */
int fs_mkdir_at(struct fs_ctx *c, uint64_t dir, const char *name, size_t len, bool explicit_dir,
                uint32_t mode, uint64_t *ino);

/* ---- key.c ---- */

/* The steps of fs_key_put, for a caller with a step of its own between them (the multipart
 * completion records the new inode in the upload before linking it): make the directories of
 * key's path (*dir: the last; name: the file's name), then switch the entry name of dir to
 * inode ino (last writer wins; the replaced file loses the link). */
int fs_key_dirs(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen, uint64_t *dir,
                char name[FS_NAME_MAX + 1]);
int fs_key_link(struct fs_ctx *c, uint64_t dir, const char *name, uint64_t ino,
                const Cairn__Inode *in);

/* ---- list.c ---- */

/* Whether the subtree of dir holds any file or explicit directory (a key a listing shows). */
int fs_subtree_has_keys(struct fs_ctx *c, uint64_t dir, unsigned depth, bool *has);
/* Remove the (key-less) directories below dir, deepest first; CAIRN_EEXIST if a file turns
 * up. */
int fs_remove_empty_dirs(struct fs_ctx *c, uint64_t dir, unsigned depth);

/* ---- write.c ---- */

/* Commit inode in (read at version ver) after its data changed: new mtime and ETag, the
 * extents of m when use_map, by compare-and-set.  On success the objects no extent shows any
 * more are queued to be freed and the directory entry's listing fields follow.
 * CAIRN_ECONFLICT: read again and retry. */
int fs_commit_data(struct fs_ctx *c, uint64_t ino, Cairn__Inode *in, uint64_t ver,
                   struct fs_extmap *m, bool use_map);

/* ---- fs.c: ETags ---- */

void fs_etag_md5(const uint8_t md5[16], char out[FS_ETAG_MAX]);
/* Bytes changed in place (NFS writes, truncation): the whole content's MD5 is not known, so the
 * ETag is a digest of (ino, mtime, size) in the multipart form ("-1"), which S3 clients do not
 * check as an MD5 of the body. */
void fs_etag_changed(uint64_t ino, int64_t mtime_ns, uint64_t size, char out[FS_ETAG_MAX]);
/* Multipart: MD5 of the parts' MD5s, then "-" and the part count. */
int fs_etag_parts(Cairn__Part *const *parts, unsigned n, char out[FS_ETAG_MAX]);

#endif
