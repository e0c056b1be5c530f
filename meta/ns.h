/*
 * ns.h - the one namespace, as records in the metadata shards (meta/rec.h).
 *
 * A file system tree that S3 and NFS both serve: inodes, and directory entries naming them.
 * The root directory is inode META_ROOT_INO; a bucket is a directory entry in the root; the
 * object key "a/b/c" of bucket B is the file c in directory b in directory a in B.
 *
 * Record keys (binary, big-endian numbers) and the shard each lives in:
 *
 *     'I' ino                          inode (16 bytes of times, shard of ino
 *                                      then cairn.Inode; ns.c)
 *     'D' dir name ['/']               directory entry (Dirent)  shard of dir
 *     'U' access-key                   S3 user (User)            shard of the key bytes
 *     'M' upload-id                    multipart upload (Upload) shard of the upload id
 *     'P' upload-id part-number(u32)   uploaded part (Part)      shard of the upload id
 *     'Q' bucket key 0x00 upload-id    uploads of a bucket       shard of bucket
 *     'K' name                         cluster secret (32 bytes) shard of the name bytes
 *     "stripe/" name                   cairnctl stripe object    shard of the key bytes
 *                                      (StripeManifest)
 *     'R'                              the repair service's      every shard has one
 *                                      lease and last pass over
 *                                      the shard (RepairShard)
 *
 * A directory's entries share one shard, so a listing is a range scan.  A subdirectory's
 * entry carries a trailing '/' in its key: the shard's byte order is then exactly S3's key
 * order ("a-b" < "a/" + ... < "a0"), so a recursive walk lists keys in S3 order without
 * sorting, and a file "x" and a directory "x/" are told apart by a single point lookup.  Names
 * never contain '/' or NUL, so the forms cannot collide; creating one form checks the other.
 *
 * Large directories are sliced.  A directory's entries spread over 2^b slices by a hash of the
 * name (without the '/', so both forms of a name share a slice); slice 0 lives in the
 * directory's own shard, every other slice s in the shard of (dir, s).  b is part of the
 * directory's inode number (bits META_INO_SLICE_SHIFT.., chosen when it is made and never
 * changed; 0 for files and small directories), so a lookup finds its slice with no read.  A
 * listing scans every slice's shard and merges the pages in key order.  An entry's inode is
 * drawn into its slice's shard, so creates and removes stay one update of one shard and a big
 * directory's creators spread over as many shards (and leaders) as it has slices.  Each
 * slice s > 0 keeps its own times record,
 *
 *     'T' dir slice(u16)               a slice's mtime/ctime     shard of (dir, slice)
 *                                      lanes (16 bytes)
 *
 * which the slice's creates and removes stamp; a sliced directory's mtime and ctime are the
 * newest of its inode's and its slices' (meta_inode_get reads them all in one batch).  The
 * slice records are made before the directory's entry and removed after its inode.
 *
 * Inode numbers are random 63-bit values (> 1) claimed with a create-if-absent, so C-nodes
 * allocate them with no coordination.  A new file's or directory's number is drawn until it
 * falls in its parent directory's shard (meta_entry_create): the inode and the entry naming
 * it are then one all-or-nothing update of one shard (meta_rec_txn), one log entry instead
 * of two with an undo between them, and a remove can take both away the same way.
 */
#ifndef CAIRN_META_NS_H
#define CAIRN_META_NS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn.pb-c.h"
#include "client/cluster.h"
#include "meta/rec.h"

#define META_ROOT_INO 1ull
#define META_NAME_MAX 255u          /* bytes of one name */
#define META_DEFAULT_DIR_MODE 0777u /* meta_mkdir's mode when given 0 */
#define META_DIRENT_KEY_MAX (1u + 8u + META_NAME_MAX + 1u)

/* Bits of a directory's inode number that hold log2 of its slice count (see above). */
#define META_INO_SLICE_SHIFT 59
#define META_INO_SLICE_MASK (15ull << META_INO_SLICE_SHIFT)
#define META_SLICE_BITS_MAX 6u
#define META_SLICES_MAX (1u << META_SLICE_BITS_MAX)

/* How many slices directory dir has (1: not sliced), and which of them holds name. */
unsigned meta_dir_slices(uint64_t dir);
unsigned meta_slice_of(uint64_t dir, const char *name, size_t len);

/* A fresh random inode number (> 1, < 2^63, slice bits clear). */
uint64_t meta_new_ino(void);
/* 32 random lowercase hex characters + NUL (upload ids, request ids). */
void meta_random_hex(char out[33]);

/* Whether name is a valid single name: 1..META_NAME_MAX bytes, no '/', no NUL, not "." or "..". */
bool meta_name_valid(const char *name, size_t len);

/* ---- inodes ---- */

/* *out is unpacked (free with cairn__inode__free_unpacked).  Errors as meta_rec_get; *version
 * (may be NULL) gets the record version (0 for ENOENT). */
int meta_inode_get(struct cl_cluster *cl, uint64_t ino, Cairn__Inode **out, uint64_t *version);
/* meta_inode_get for n inodes at once (one round trip for all): outs[i] and rcs[i] as the
 * single call would give them; outs[i] is NULL where rcs[i] is not 0. */
void meta_inode_get_many(struct cl_cluster *cl, unsigned n, const uint64_t *inos,
                         Cairn__Inode **outs, int *rcs);
int meta_inode_put(struct cl_cluster *cl, uint64_t ino, const Cairn__Inode *in, uint64_t expect,
                   uint64_t *version);
int meta_inode_del(struct cl_cluster *cl, uint64_t ino, uint64_t expect);
/* Create an inode under a fresh number (retries on the rare collision); *ino gets it. */
int meta_inode_create(struct cl_cluster *cl, const Cairn__Inode *in, uint64_t *ino);

/* The inodes of cluster shard `shard` (0 .. shards - 1, not a shard key) in number order, from
 * inode number `from` on: one page, as meta_rec_scan (limit <= META_SCAN_MAX).  Decode an
 * entry with meta_inode_of_entry. */
int meta_inode_scan(struct cl_cluster *cl, uint32_t shard, uint64_t from, unsigned limit,
                    struct meta_scan *out);
/* The inode an entry of meta_inode_scan holds (free with cairn__inode__free_unpacked) and its
 * number in *ino, or NULL if the record cannot be decoded. */
Cairn__Inode *meta_inode_of_entry(const struct meta_entry *e, uint64_t *ino);

/* ---- directory entries ---- */

/* A new inode in, named name in dir by entry *nd (its ino is set here), in one update: the
 * new inode is a directory of in->slices slices (rounded down to a power of two, at most
 * META_SLICES_MAX; 0 or 1: not sliced) if in is a directory.  The
 * entry must have version expect (0: absent) or nothing happens.  stamp (0: none) raises dir's
 * mtime and ctime to at least that time in the same update (dir must exist then).  *ino gets
 * the new number.  Returns 0, CAIRN_ECONFLICT (the entry changed: someone else made the
 * name), CAIRN_ENOENT (dir is gone), CAIRN_EUNREACH (unknown: all or nothing happened), or
 * another error (nothing happened). */
int meta_entry_create(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                      Cairn__Dirent *nd, uint64_t expect, const Cairn__Inode *in, int64_t stamp,
                      uint64_t *ino);
/* Remove the entry name (the is_dir form) of dir at version dver and the inode ino it names at
 * version iver, stamping dir as meta_entry_create does, in one update, if the inode lives in
 * dir's shard (meta_entry_create made it): else CAIRN_ENOTSUP and nothing happens.  Other
 * returns as meta_rec_txn. */
int meta_entry_remove(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                      bool is_dir, uint64_t dver, uint64_t ino, uint64_t iver, int64_t stamp);
/* Raise directory dir's mtime and ctime to at least t (never lowers them; no read, never a
 * conflict).  Returns 0, CAIRN_ENOENT (no such inode), CAIRN_EUNREACH (unknown). */
int meta_dir_stamp(struct cl_cluster *cl, uint64_t dir, int64_t t);

/* One record of a meta_read_many() batch: an inode (id = its number) or a directory entry
 * (id = the directory, name/len, dir_form for the "name/" form).  Out: rc and version as the
 * single get would give them, and the record (owned by the caller; NULL unless rc is 0). */
enum meta_read_kind { META_READ_INODE, META_READ_DIRENT };
struct meta_read {
    enum meta_read_kind kind;
    uint64_t id;
    const char *name; /* borrowed */
    size_t len;
    bool dir_form;
    int rc;
    uint64_t version;
    Cairn__Inode *inode;
    Cairn__Dirent *dirent;
};

/* Read n records together: their calls are in flight at once, so the batch costs about one
 * round trip (meta_rec_get_many). */
void meta_read_many(struct cl_cluster *cl, struct meta_read *r, unsigned n);

/* Entry name (is_dir: the "name/" form) of directory dir.  Errors as meta_rec_get. */
int meta_dirent_get(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                    bool is_dir, Cairn__Dirent **out, uint64_t *version);
int meta_dirent_put(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                    const Cairn__Dirent *d, uint64_t expect, uint64_t *version);
int meta_dirent_del(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                    bool is_dir, uint64_t expect);

/* Look a name up in either form (a directory first).  Returns 0 with *ino, *type, or
 * CAIRN_ENOENT. */
int meta_lookup(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len, uint64_t *ino,
                Cairn__FileType *type);

/* Find or create the subdirectory name of dir (an implied directory unless explicit; an
 * existing one is marked explicit if asked; a new one has `slices` slices, as
 * meta_entry_create).  Returns 0 with *ino, CAIRN_EEXIST if a file of that name exists, or
 * another error.  Safe against C-nodes racing to create it. */
int meta_mkdir(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len, bool explicit_dir,
               uint32_t mode, uint32_t slices, uint64_t *ino);

/* One page of dir's entries, from the entry sort name start (inclusive; NULL = first).
 * Entry keys in out are full record keys: use meta_dirent_name() on them.  A page is empty
 * only at the end of the directory (pages of deleted entries are skipped). */
int meta_dir_scan(struct cl_cluster *cl, uint64_t dir, const char *start, size_t slen,
                  unsigned limit, struct meta_scan *out);
/* The sort name of a directory entry key (the name, with '/' appended for directories):
 * returns a pointer into key and sets *len. */
const char *meta_dirent_name(const uint8_t *key, uint32_t klen, uint32_t *len);
/* Whether dir has no entries at all. */
int meta_dir_empty(struct cl_cluster *cl, uint64_t dir, bool *empty);

/* ---- users, uploads, parts ---- */

int meta_user_get(struct cl_cluster *cl, const char *access_key, Cairn__User **out);
int meta_user_put(struct cl_cluster *cl, const Cairn__User *u);
int meta_user_del(struct cl_cluster *cl, const char *access_key);

int meta_upload_get(struct cl_cluster *cl, const char *upload_id, Cairn__Upload **out,
                    uint64_t *version);
/* Creates the upload record (must be new) and its entry in the bucket's upload index. */
int meta_upload_create(struct cl_cluster *cl, const char *upload_id, const Cairn__Upload *u);
/* Rewrite the upload record (conditional on version). */
int meta_upload_update(struct cl_cluster *cl, const char *upload_id, const Cairn__Upload *u,
                       uint64_t version);
/* Removes the upload record (conditional on version) and its index entry. */
int meta_upload_del(struct cl_cluster *cl, const char *upload_id, const Cairn__Upload *u,
                    uint64_t version);
/* Uploads of a bucket in key order, from (key, upload id) onwards; entry values are the
 * upload ids (use meta_upload_index_key() to split a key). */
int meta_upload_scan(struct cl_cluster *cl, uint64_t bucket, const char *key_marker,
                     const char *upload_marker, unsigned limit, struct meta_scan *out);
/* Split an upload index key into the object key and the upload id (pointers into key). */
int meta_upload_index_key(const uint8_t *key, uint32_t klen, const char **obj_key, uint32_t *klen_out,
                          const char **upload_id, uint32_t *ulen);

int meta_part_get(struct cl_cluster *cl, const char *upload_id, uint32_t number,
                  Cairn__Part **out, uint64_t *version);
/* Put a part record unconditionally (a re-upload of a part number replaces it); *old gets the
 * replaced record, if any, so the caller can free its stripes. */
int meta_part_put(struct cl_cluster *cl, const char *upload_id, const Cairn__Part *p,
                  Cairn__Part **old);
int meta_part_del(struct cl_cluster *cl, const char *upload_id, uint32_t number);
/* Parts of an upload in number order, from part number `from` on. */
int meta_part_scan(struct cl_cluster *cl, const char *upload_id, uint32_t from, unsigned limit,
                   struct meta_scan *out);

/* ---- what records reference ---- */

typedef void (*meta_object_fn)(void *arg, uint64_t object_id, uint32_t gen);
/* Call fn for every object (id, generation) the record of a scan entry references: an inode's
 * extents, a part's, an upload's template, a cairnctl stripe object's manifest.  Every kind of
 * record that can name an object is here, so the garbage sweeper's mark cannot miss one kind.
 * Returns 0, or CAIRN_EPROTO if a record of such a kind cannot be decoded (the caller must
 * then treat its mark as incomplete). */
int meta_entry_objects(const struct meta_entry *e, meta_object_fn fn, void *arg);

/* ---- the repair service's shard records ---- */

/* Shard `shard`'s repair record ('R'; shard as for meta_inode_scan).  Errors as meta_rec_get
 * (CAIRN_ENOENT: no pass ever; *version is then 0). */
int meta_repair_get(struct cl_cluster *cl, uint32_t shard, Cairn__RepairShard **out,
                    uint64_t *version);
/* Put it if the record still has version expect.  Errors as meta_rec_put. */
int meta_repair_put(struct cl_cluster *cl, uint32_t shard, const Cairn__RepairShard *r,
                    uint64_t expect, uint64_t *version);
/* The records of shards 0 .. n - 1 in one batch: outs[s] NULL where absent or unreadable. */
void meta_repair_get_all(struct cl_cluster *cl, unsigned n, Cairn__RepairShard **outs);

/* ---- cluster secrets ---- */

#define META_SECRET_LEN 32u
/* The cluster-wide secret called name (key 'K' name), created at random on first use, so
 * every C-node shares it with no configuration (e.g. the NFS file handle MAC key). */
int meta_secret(struct cl_cluster *cl, const char *name, uint8_t out[META_SECRET_LEN]);

#endif
