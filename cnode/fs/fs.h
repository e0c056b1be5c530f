/*
 * fs.h - the protocol-neutral file system every C-node head is written against.
 *
 * S3 and NFSv3 serve one namespace (invariant 6): a bucket is a directory in the root, the
 * object key "a/b/c" is the file c in directories a and b.  Every rule of that namespace lives
 * here, once: how names, entries and inodes are created, linked, replaced and removed and in
 * which order (so that a C-node killed at any point leaves garbage, never a broken tree), how
 * file data is stored (new erasure-coded objects, never a live stripe rewritten: invariant 5)
 * and committed (compare-and-set of the inode), what an ETag is, how a directory's mtime
 * follows its entries, which keys a listing shows, and how a multipart upload becomes a file.
 * A head translates its protocol into these calls and their CAIRN_E* results into its own
 * errors (one table per head); none of these signatures knows an S3 or NFS type.
 *
 * Records are the metadata records of meta/ns.h: an inode is a Cairn__Inode (proto/
 * cairn.proto), unpacked, owned by the caller once returned (free with fs_inode_free()).
 *
 * Order of changes, so that a crash between two steps leaves only unreferenced records:
 *   - create: the inode record, then the entry that names it (must be new in both forms),
 *     then the directory's mtime;
 *   - remove: the entry, then the inode (or its link count); a file's data is freed after;
 *   - rename: the new name (over the target by compare-and-set of its version), then the old
 *     name goes (a crash in between leaves both names, never neither);
 *   - link: the link count first, then the entry (a crash leaves a count too high: a leak,
 *     never a file freed while a name points at it);
 *   - data: the objects are durable before the inode that references them is written, and
 *     objects no inode shows any more are freed FS_FREE_DELAY_MS after the switch, so reads
 *     that resolved the old inode just before can finish.
 *
 * Names.  A directory's entry carries a trailing '/' in its record key (meta/ns.h), so one
 * directory's entries sort in S3 key order, and a name may exist as a file or as a directory
 * but never both.  Names are 1..FS_NAME_MAX bytes without '/' or NUL, and not "." or "..".
 *
 * Threads.  A struct fs is shared by a head's worker threads; each worker opens its own
 * struct fs_ctx (its cluster view, buffers and queue of deferred frees) and uses it alone.
 */
#ifndef CAIRN_CN_FS_H
#define CAIRN_CN_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn.pb-c.h"
#include "client/cluster.h"
#include "client/stripe.h"

#define FS_ROOT_INO 1ull
#define FS_NAME_MAX 255u
#define FS_INLINE_MAX (16u << 10) /* files up to this size keep their bytes in the inode */
#define FS_FREE_DELAY_MS 30000u   /* data no inode shows any more is freed this much later */
#define FS_SECRET_LEN 32u
#define FS_ETAG_MAX 48u           /* an ETag, without quotes, and its NUL */
#define FS_ETAG_EMPTY "d41d8cd98f00b204e9800998ecf8427e" /* MD5 of nothing */
#define FS_MAX_GIDS 16u
/* What S3 creates has no POSIX owner: uid/gid 0 and open modes, so that NFS clients (root-
 * squashed by default) can work in buckets made over S3; chmod/chown over NFS tightens it. */
#define FS_OBJECT_DIR_MODE 0777u
/* Slices of new directories when cluster.env does not say (TOP_DIR_SLICES, DIR_SLICES). */
#define FS_DEFAULT_TOP_SLICES 16u
#define FS_DEFAULT_DIR_SLICES 1u
#define FS_OBJECT_FILE_MODE 0666u

struct fs;
struct fs_ctx;

#define FS_DEFAULT_WRITE_DEADLINE_MS (30u * 60u * 1000u)

struct fs_config {
    struct cl_cluster_config cluster; /* copied (its strings borrowed for the life of the fs) */
    unsigned stripe_cache;            /* stripes kept for sequential partial reads; 0: none */
    /* Slices of a new directory (meta/ns.h: its entries spread over that many shards): one
     * made in the root (a bucket, a top-level NFS directory), one made anywhere else.  0: 1. */
    uint32_t top_slices, dir_slices;
    /* A write whose data went to the D-nodes longer ago than this is not recorded (it fails
     * with CAIRN_ETIMEDOUT, not acknowledged): the garbage sweeper (repair/gc.h) deletes
     * unreferenced fragments older than its grace, which must be longer.  0: 30 minutes. */
    uint64_t write_deadline_ms;
};

/* ---- the file system and one worker's context ---- */

/* Open the file system: checks the cluster answers and makes the root directory on the first
 * start of a cluster.  Returns 0 or an error (logged). */
int fs_open(const struct fs_config *cfg, struct fs **out);
void fs_close(struct fs *fs); /* after every context is closed; accepts NULL */

/* What the file system's reads have met since it opened, over every context (for the C-node's
 * metrics; any thread may ask). */
struct fs_read_stats {
    uint64_t stripes;          /* stripes read from the D-nodes (cache hits not counted) */
    uint64_t degraded_stripes; /* of them, rebuilt from parity: a fragment was missing or bad */
    uint64_t frags_failed;     /* fragment reads that failed or had a bad CRC */
};
void fs_read_stats(const struct fs *fs, struct fs_read_stats *out);

/* A context for the calling thread.  stripe_cache: reads within one stripe go through the file
 * system's stripe cache (for clients that read a stripe in several pieces, as NFS does).
 * Returns 0, CAIRN_ENOMEM or an error opening the cluster view. */
int fs_ctx_open(struct fs *fs, bool stripe_cache, struct fs_ctx **out);
/* Frees what is still queued (now), then the context.  Accepts NULL. */
void fs_ctx_close(struct fs_ctx *c);
/* Free the data whose delay has passed; call between requests. */
void fs_ctx_tick(struct fs_ctx *c);

/* Usable bytes of the cluster (raw space times k / (k + m)) and how many are used, summed over
 * the D-nodes that answer. */
int fs_statfs(struct fs_ctx *c, uint64_t *total, uint64_t *used);
/* The cluster-wide secret called name, made at random on first use (e.g. the NFS file-handle
 * key), so every C-node shares it with no configuration. */
int fs_secret(struct fs_ctx *c, const char *name, uint8_t out[FS_SECRET_LEN]);
/* An S3 user (access key -> secret and flags); *out owned by the caller
 * (cairn__user__free_unpacked).  CAIRN_ENOENT if unknown. */
int fs_user_get(struct fs_ctx *c, const char *access_key, Cairn__User **out);
/* 32 random lowercase hex characters and a NUL (request and upload ids). */
void fs_random_hex(char out[33]);

/* ---- inodes ---- */

void fs_inode_free(Cairn__Inode *in); /* accepts NULL */
/* A deep copy (NULL if out of memory). */
Cairn__Inode *fs_inode_copy(const Cairn__Inode *in);
/* *out owned by the caller; *version (may be NULL) gets the record's version.  CAIRN_ENOENT if
 * the inode is gone. */
int fs_inode_get(struct fs_ctx *c, uint64_t ino, Cairn__Inode **out, uint64_t *version);
/* n inodes in about one round trip: outs[i] and rcs[i] as fs_inode_get would give them. */
void fs_inode_get_many(struct fs_ctx *c, unsigned n, const uint64_t *inos, Cairn__Inode **outs,
                       int *rcs);
bool fs_is_dir(const Cairn__Inode *in);
/* The ETag a client sees: the stored one, or FS_ETAG_EMPTY for directories and empty files
 * stored without one.  Borrowed from in or static. */
const char *fs_etag(const Cairn__Inode *in);

/* ---- permissions (POSIX mode bits) ---- */

#define FS_MAY_R 4u
#define FS_MAY_W 2u
#define FS_MAY_X 1u

/* Who asks, after the head mapped (and squashed) its protocol's credentials. */
struct fs_cred {
    uint32_t uid, gid, ngids;
    uint32_t gids[FS_MAX_GIDS];
};

bool fs_in_group(const struct fs_cred *cr, uint32_t gid);
/* Whether cr may do want (FS_MAY_* bits) to in by its mode bits.  uid 0 may read and write
 * anything, and execute what anyone may execute. */
bool fs_may(const struct fs_cred *cr, const Cairn__Inode *in, unsigned want);
/* Reads and writes of an open file: its owner passes too (a file opened and then made
 * read-only stays usable to its opener, whose open the server cannot see), and reading
 * something executable (to run it). */
bool fs_may_io(const struct fs_cred *cr, const Cairn__Inode *in, unsigned want);

/* ---- names in a directory ---- */

/* A directory as the caller loaded it: ino always; in and version (may be NULL / 0) spare a
 * read when the call then changes the directory's mtime.  Borrowed for the call. */
struct fs_dir {
    uint64_t ino;
    const Cairn__Inode *in;
    uint64_t version;
};

/* Whether name is a valid single name (see the top of this file). */
bool fs_name_valid(const char *name, size_t len);

/* Look name up in dir in either form (a directory first).  Returns 0 with *ino and *is_dir,
 * CAIRN_ENOENT, or another error. */
int fs_lookup(struct fs_ctx *c, uint64_t dir, const char *name, size_t len, uint64_t *ino,
              bool *is_dir);

/* The directory's inode and the entry together, in one round trip. */
struct fs_lookup {
    int dir_rc;          /* of reading dir */
    Cairn__Inode *dir;   /* owned by the caller (NULL unless dir_rc is 0) */
    int rc;              /* of the entry: 0 or CAIRN_ENOENT or an error */
    uint64_t ino;
    bool is_dir;
};
void fs_lookup_at(struct fs_ctx *c, uint64_t dir, const char *name, size_t len,
                  struct fs_lookup *out);

/* Start a new inode of type for cr in directory dir: owner cr (a setgid directory hands its
 * group down, as local file systems do), mode (permission bits), one link (a directory: two,
 * and explicit). */
void fs_new_inode(Cairn__Inode *in, Cairn__FileType type, const struct fs_cred *cr,
                  const Cairn__Inode *dir, uint32_t mode);

/* Create inode in (type, mode, owner, symlink target, ... set by the caller; times, parent and
 * name are set here) and link it as name in d.  CAIRN_EEXIST if the name exists in either
 * form; nothing stays behind on failure.  On success *ino gets the number and *dir_after (may
 * be NULL; owned by the caller, NULL if the touch failed) the directory with its new mtime. */
int fs_create(struct fs_ctx *c, const struct fs_dir *d, const char *name, size_t len,
              Cairn__Inode *in, uint64_t *ino, Cairn__Inode **dir_after);

/* Remove name from d: want_dir = RMDIR (the entry must be a directory, and empty) or REMOVE
 * (it must not be a directory).  cr (NULL: no check) is held against d's sticky bit.  *ino gets
 * the inode that lost the name and *last whether that was its last link (its data is then
 * freed later).  Errors: CAIRN_ENOENT, CAIRN_ENOTDIR, CAIRN_EISDIR, CAIRN_ENOTEMPTY,
 * CAIRN_EACCES, cluster errors. */
int fs_remove(struct fs_ctx *c, const struct fs_dir *d, const struct fs_cred *cr,
              const char *name, size_t len, bool want_dir, uint64_t *ino, bool *last,
              Cairn__Inode **dir_after);

/* Rename (RFC 1813 semantics): a file may replace a file, a directory an empty directory;
 * renaming a name onto another name of the same inode does nothing.  *replaced gets the inode
 * the new name replaced (0 if none) and *replaced_last whether it lost its last link.  Errors:
 * CAIRN_ENOENT, CAIRN_ENOTDIR, CAIRN_EISDIR, CAIRN_ENOTEMPTY, CAIRN_EINVAL (a directory into
 * itself), cluster errors.  *from_after and *to_after (may be NULL; the same directory gives
 * to_after NULL) get the directories with their new mtimes. */
int fs_rename(struct fs_ctx *c, const struct fs_dir *from, const char *fname, size_t flen,
              const struct fs_dir *to, const char *tname, size_t tlen, uint64_t *replaced,
              bool *replaced_last, Cairn__Inode **from_after, Cairn__Inode **to_after);

/* A new name for inode ino (not a directory) in d.  Errors: CAIRN_EEXIST, CAIRN_EMLINK,
 * CAIRN_ENOENT (ino is gone), cluster errors. */
int fs_link(struct fs_ctx *c, uint64_t ino, const struct fs_dir *d, const char *name,
            size_t len, Cairn__Inode **dir_after);

/* Drop one link of inode ino: the count goes down, or at the last link the record goes and
 * its data is freed later (*last says which; may be NULL). */
int fs_unlink_inode(struct fs_ctx *c, uint64_t ino, bool *last);

/* Whether dir has no entries. */
int fs_dir_empty(struct fs_ctx *c, uint64_t dir, bool *empty);

/* ---- attributes ---- */

enum fs_time_set { FS_TIME_KEEP, FS_TIME_NOW, FS_TIME_GIVEN };

struct fs_sattr {
    bool set_mode, set_uid, set_gid, set_size;
    uint32_t mode, uid, gid;
    uint64_t size;
    enum fs_time_set atime_how, mtime_how;
    int64_t atime, mtime;
    bool guard;          /* apply only if the ctime (to the microsecond) is still guard_ctime */
    int64_t guard_ctime;
};

/* Change attributes of ino as cr (POSIX rules: mode by the owner, uid by root, gid by root or
 * an owner in that group, size by a writer, times by the owner or, to "now", a writer); a size
 * change truncates or extends the file's data.  *before (may be NULL) gets the inode as first
 * read, *after (may be NULL) as committed.  Errors: CAIRN_EPERM, CAIRN_EACCES, CAIRN_EISDIR,
 * CAIRN_EINVAL (size of a non-file), CAIRN_EPRECOND (the guard failed), CAIRN_ENOENT. */
int fs_setattr(struct fs_ctx *c, const struct fs_cred *cr, uint64_t ino,
               const struct fs_sattr *sa, Cairn__Inode **before, Cairn__Inode **after);

/* Set a regular file's size (an open with O_TRUNC, or SETATTR): dropped data is freed later,
 * growth reads as zeros. */
int fs_truncate(struct fs_ctx *c, uint64_t ino, uint64_t size);

/* ---- file data ---- */

/* Where read bytes go, piece by piece; a non-zero return stops the read with that code. */
typedef int (*fs_sink)(void *arg, const uint8_t *data, size_t len);
/* A sink that copies into a buffer: arg is a uint8_t ** cursor, advanced. */
int fs_sink_buffer(void *arg, const uint8_t *data, size_t len);

/* Read bytes [off, off + len) of the file (the caller clamps to its size); holes read as zeros.
 * With the stripe cache, a range within one stripe may be served from it, and sink is then
 * called under the cache's lock: it must only copy.  Returns 0 or the first error
 * (CAIRN_EDEGRADED: a stripe lost more than m fragments). */
int fs_read(struct fs_ctx *c, const Cairn__Inode *in, uint64_t off, uint64_t len, fs_sink sink,
            void *arg);

/* Ranges of a file to write: offset order, neither overlapping nor touching. */
struct fs_range {
    uint64_t off;
    size_t len;
    const uint8_t *data; /* borrowed for the call */
    /* The inode's version when these bytes arrived (0: no order to keep).  Bytes that a write
     * committed since then overlaps are newer than these: they must not be overwritten. */
    uint64_t since;
};

/* Write ranges of regular file ino: each becomes a new object (a file that stays within
 * FS_INLINE_MAX keeps its bytes in the inode), laid over the file's extent map, and the inode
 * is switched to the new map by compare-and-set (retried on conflict, reusing the objects).
 * Returns only when the data and the inode are durable.  *before / *after (may be NULL) get
 * the inode as first read / as committed.  Errors: CAIRN_ENOENT (gone), CAIRN_EINVAL (not a
 * regular file), CAIRN_EPRECOND (a range would overwrite bytes committed after it arrived:
 * nothing is written; the caller drops those bytes and has its client send them again),
 * CAIRN_ECONFLICT (lost too many races), cluster errors; on error the new
 * objects are freed, except after CAIRN_EUNREACH / CAIRN_ETIMEDOUT from the commit, whose
 * outcome is unknown: then they stay (garbage at worst) and a retry writes the ranges again. */
int fs_write(struct fs_ctx *c, uint64_t ino, const struct fs_range *r, size_t n,
             Cairn__Inode **before, Cairn__Inode **after);

/* Where fs_store() takes its bytes from: fill buf with exactly len bytes (the next ones) or
 * return an error, which ends the store. */
typedef int (*fs_source)(void *arg, uint8_t *buf, size_t len);

/* Data stored for a file not linked yet. */
struct fs_data {
    Cairn__Extent ext;    /* the object (length 0 and object_id 0 when inline); its placement
                           * fields borrow pl's (never copy an fs_data by value) */
    struct cl_placement pl; /* where the object's fragments are */
    uint8_t *inline_data; /* owned, small data kept for the inode */
    size_t inline_len;
    uint64_t size;
    uint8_t md5[16];
    char etag[FS_ETAG_MAX]; /* the ETag of whole-object data: hex MD5 */
    uint64_t t0_ms;         /* monotonic: when its first fragment was sent */
};

/* Store len bytes taken from src as a new object (or inline bytes when allow_inline and small),
 * computing their MD5 on the way.  On error nothing stays behind and out needs no cleanup. */
int fs_store(struct fs_ctx *c, uint64_t len, bool allow_inline, fs_source src, void *arg,
             struct fs_data *out);
/* The same with bytes [off, off + len) of file src as the source. */
int fs_store_copy(struct fs_ctx *c, const Cairn__Inode *src, uint64_t off, uint64_t len,
                  bool allow_inline, struct fs_data *out);
/* Free stored data that will not be linked: its object now, its memory. */
void fs_data_discard(struct fs_ctx *c, struct fs_data *d);
/* Free only the memory (the data was linked, or handed to another record). */
void fs_data_fini(struct fs_data *d);

/* ---- keys: paths below a bucket (S3's view) ---- */

/* Whether key is a path this namespace can hold: every component a valid name, and a trailing
 * '/' naming a directory (a "directory marker"). */
bool fs_key_valid(const char *key, size_t len);

/* The inode key names below bucket (a "dir/" key names an explicit directory).  Errors:
 * CAIRN_ENOENT, cluster errors. */
int fs_key_get(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen, uint64_t *ino,
               Cairn__Inode **in, uint64_t *version);

/* Make key a file holding d: the missing directories of its path are made (implied), the
 * inode is made from in (content type, headers, user metadata, ETag, checksum and parts set
 * by the caller; type, mode, size, times and data set here) and the entry switched to it, last
 * writer wins; the file it replaced loses that link.  The stored data is the new file's, or
 * freed on failure, except when the failure leaves unknown whether a record now references it
 * (CAIRN_EUNREACH, CAIRN_ETIMEDOUT): then it stays, garbage at worst.  Errors: CAIRN_EEXIST (a
 * directory has that name, or a file stands where the path needs a directory), cluster
 * errors. */
int fs_key_put(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen,
               Cairn__Inode *in, struct fs_data *d);

/* Make "key/" an explicit directory (and the directories above it).  CAIRN_EEXIST if a file
 * has one of those names. */
int fs_key_mkdir(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen);

/* Remove key: a file loses that name; "dir/" drops the directory's explicit mark and removes
 * it if it is empty.  A missing or invalid key is not an error. */
int fs_key_remove(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen);

/* The directory a path of directory names names from the root ("/bucket/dataset"). */
int fs_path_dir(struct fs_ctx *c, const char *path, uint64_t *ino);

/* ---- buckets: the directories in the root ---- */

/* Bucket name's directory.  CAIRN_ENOENT if there is none; *in (may be NULL) owned by the
 * caller. */
int fs_bucket_get(struct fs_ctx *c, const char *name, uint64_t *ino, Cairn__Inode **in);
/* Make bucket name owned by owner (an access key).  CAIRN_EEXIST if the name is taken. */
int fs_bucket_create(struct fs_ctx *c, const char *name, const char *owner, uint64_t *ino);
/* Remove bucket name (directory ino): CAIRN_ENOTEMPTY while it holds a key (a file or an
 * explicit directory); the implied directories left in it go with it. */
int fs_bucket_remove(struct fs_ctx *c, const char *name, uint64_t ino);
/* Call fn for every bucket in name order with its directory's inode (borrowed for the call);
 * a non-zero return stops the walk with that code. */
int fs_bucket_each(struct fs_ctx *c,
                   int (*fn)(void *arg, const char *name, size_t len, const Cairn__Inode *in),
                   void *arg);

/* ---- listing ---- */

/* One entry of a directory page: name without the directory's '/', the sort name with it. */
struct fs_entry {
    const char *name; /* borrowed from the page */
    uint32_t len;
    const char *sort;
    uint32_t sort_len;
    bool is_dir;
    Cairn__Dirent *d; /* owned by the page; NULL if the record did not decode */
};

struct fs_page {
    struct fs_entry *v;
    unsigned n;
    bool more;  /* more entries may follow the last one */
    void *priv; /* owned: the scan the entries point into */
};

/* One page of dir's entries in sort order from sort name start (inclusive; NULL: the first),
 * at most limit.  A page is empty only at the end of the directory.  Free with
 * fs_page_fini(). */
int fs_dir_page(struct fs_ctx *c, uint64_t dir, const char *start, size_t slen, unsigned limit,
                struct fs_page *out);
void fs_page_fini(struct fs_page *p);

/* A listing of a bucket's keys in S3 order, as S3's ListObjects defines it: keys with prefix,
 * after `after`, rolled up into common prefixes at the delimiter, at most max items (keys and
 * prefixes); implied directories are not keys, explicit ones are ("dir/"). */
struct fs_list_query {
    const char *prefix;
    size_t plen;
    const char *delim; /* NULL or "": none */
    size_t dlen;
    const char *after; /* list keys > after (a previous page's last item) */
    size_t alen;
    unsigned max;
    /* Called for each item in order; the key is borrowed for the call. */
    void (*key)(void *arg, const char *key, size_t len, uint64_t size, const char *etag,
                int64_t mtime_ns);
    void (*prefix_fn)(void *arg, const char *prefix, size_t len);
    void *arg;
};

#define FS_KEY_MAX 1024u

struct fs_list_result {
    unsigned count;                 /* items listed */
    bool truncated;                 /* another item follows */
    char last[FS_KEY_MAX + 2];      /* the last item (a common prefix ends in 0xff) */
    size_t last_len;
};

int fs_list_keys(struct fs_ctx *c, uint64_t bucket, const struct fs_list_query *q,
                 struct fs_list_result *out);

/* ---- multipart uploads: a file assembled from parts stored independently ---- */

/* Start an upload of key into bucket (bucket_name as the client named it); meta holds what the
 * object will carry (content type, headers, user metadata).  id gets the upload id. */
int fs_upload_create(struct fs_ctx *c, uint64_t bucket, const char *bucket_name, const char *key,
                     const Cairn__Inode *meta, const char *owner, int64_t initiated_ns,
                     char id[33]);
/* *out owned by the caller (cairn__upload__free_unpacked); CAIRN_ENOENT if unknown. */
int fs_upload_get(struct fs_ctx *c, const char *id, Cairn__Upload **out, uint64_t *version);
/* Record part number of upload id as the stored d (its ETag and MD5); a part uploaded again
 * replaces the old one, whose data is freed.  On failure d's data is freed. */
int fs_upload_part(struct fs_ctx *c, const char *id, uint32_t number, struct fs_data *d,
                   int64_t mtime_ns);
/* Part number of upload id; *out owned by the caller (cairn__part__free_unpacked). */
int fs_upload_part_get(struct fs_ctx *c, const char *id, uint32_t number, Cairn__Part **out);
/* Finish upload u (read at version): the chosen parts, in order, become key's file (last writer
 * wins) with the multipart ETag (MD5 of the parts' MD5s, "-" and the count) in etag; the upload
 * and the parts not chosen go.  Safe to retry from any C-node after a crash: the new inode is
 * recorded in the upload before it is linked.  Errors: CAIRN_ENOENT (the upload is gone),
 * CAIRN_EEXIST (a directory has the key's name), cluster errors. */
int fs_upload_complete(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen,
                       const char *id, Cairn__Upload *u, uint64_t version,
                       Cairn__Part *const *parts, unsigned n, char etag[FS_ETAG_MAX]);
/* Drop upload u (read at version) and all its parts.  CAIRN_ECONFLICT if it changed meanwhile
 * (completed or aborted). */
int fs_upload_abort(struct fs_ctx *c, const char *id, const Cairn__Upload *u, uint64_t version);
/* Parts of upload id in number order from part number from; fn gets each (borrowed); a
 * non-zero return stops with that code. */
int fs_upload_parts_each(struct fs_ctx *c, const char *id, uint32_t from,
                         int (*fn)(void *arg, const Cairn__Part *p), void *arg);
/* Uploads of bucket in (key, upload id) order after the markers (NULL: from the start); fn gets
 * each upload's key and id (borrowed); a non-zero return stops with that code. */
int fs_upload_each(struct fs_ctx *c, uint64_t bucket, const char *key_marker,
                   const char *upload_marker,
                   int (*fn)(void *arg, const char *key, size_t klen, const char *id),
                   void *arg);

#endif
