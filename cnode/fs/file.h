/*
 * file.h - file data on the D-nodes, shared by the S3 and NFS heads.
 *
 * A file's bytes are either inline in its inode record (small files) or an extent map: a list
 * of extents in offset order, each showing a byte range of one erasure-coded object (stripe.h).
 * S3 writes whole objects (one extent per object, from byte 0).  NFS writes parts of files: a
 * write becomes a new object and its extent is laid over the map, trimming or splitting the
 * extents it covers, so no live stripe is ever rewritten in place (invariant 5); objects no
 * extent shows any more are freed once the new map is committed.  Bytes no extent covers
 * (holes, and a file extended by SETATTR) read as zeros.
 *
 * struct cn_fileio is one worker thread's helper: a segment buffer for reads and writes, and a
 * queue of objects to free later (an object replaced under a reader that resolved the old
 * inode just before must stay readable for a while).
 */
#ifndef CAIRN_CN_FILE_H
#define CAIRN_CN_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn.pb-c.h"
#include "client/stripe.h"

#define CN_SEGMENT_STRIPES 8u        /* stripes moved per D-node round trip */
#define CN_FREE_DELAY_MS 30000u      /* replaced objects live on this long */

struct cn_deferred_free;
struct cn_scache;

struct cn_fileio {
    struct cl_cluster *cl; /* borrowed */
    struct cn_scache *cache; /* borrowed, may be NULL: recently read stripes */
    uint8_t *seg;          /* owned: one segment of stripes */
    size_t seg_cap;
    struct cn_deferred_free *deferred, **deferred_tail; /* in due order */
};

void cn_fileio_init(struct cn_fileio *f, struct cl_cluster *cl);
/* Frees everything still queued (now), then the buffer. */
void cn_fileio_fini(struct cn_fileio *f);
/* The segment buffer for layout l (CN_SEGMENT_STRIPES stripes); *cap gets its size. */
int cn_fileio_seg(struct cn_fileio *f, const struct ec_layout *l, size_t *cap);

struct ec_layout cn_extent_layout(const Cairn__Extent *x);
/* Bytes of the extent's whole object. */
uint64_t cn_extent_obj_size(const Cairn__Extent *x);
/* Delete the objects of the extents now (each distinct object once); failures are logged and
 * leave garbage fragments, never wrong data. */
void cn_extents_free(struct cl_cluster *cl, Cairn__Extent *const *ex, size_t n);
/* Queue the inode's objects (ownership of in passes) to be freed CN_FREE_DELAY_MS from now. */
void cn_fileio_defer(struct cn_fileio *f, Cairn__Inode *in);
/* The same for some extents (copied; e.g. the pieces a rewrite no longer shows). */
void cn_fileio_defer_extents(struct cn_fileio *f, Cairn__Extent *const *ex, size_t n);
/* Free what is due (everything if force). */
void cn_fileio_run_deferred(struct cn_fileio *f, bool force);

/* A cache of recently read stripes, shared by a head's workers.  NFS clients read in 1 MiB
 * pieces, a stripe holds k fragments (4 MiB at 4+2): without it each READ of a sequential
 * scan would fetch the whole stripe again.  Objects never change once written, so cached
 * stripes are never stale; entries go least recently used first. */
int cn_scache_create(unsigned entries, struct cn_scache **out);
void cn_scache_destroy(struct cn_scache *c); /* accepts NULL */

/* Where read bytes go, piece by piece; a non-zero return stops the read with that code. */
typedef int (*cn_sink)(void *arg, const uint8_t *data, size_t len);
int cn_sink_buffer(void *arg, const uint8_t *data, size_t len); /* arg: uint8_t **cursor */

/* Read bytes [off, off + len) of the file (the caller clamps to its size); holes read as zeros.
 * With f->cache, a range within one stripe is served from (or kept in) the cache, and sink is
 * then called under the cache's lock: it must only copy. 
 * Returns 0 or the first error (CAIRN_EDEGRADED: a stripe lost more than m fragments). */
int cn_file_read(struct cn_fileio *f, const Cairn__Inode *in, uint64_t off, uint64_t len,
                 cn_sink sink, void *arg);

/* Drop one link of inode ino: nlink - 1 (conditional update), or at the last link delete the
 * record and queue its objects (*last, if given, says which).  Returns 0, CAIRN_ENOENT, or an
 * error. */
int cn_file_unlink(struct cn_fileio *f, uint64_t ino, bool *last);

/* ---- extent maps, edited as values and attached to an inode to be packed ---- */

struct cn_extmap {
    Cairn__Extent *v; /* owned array, offset order, non-overlapping */
    Cairn__Extent **ptrs; /* owned: pointers into v, for packing */
    size_t n, cap;
};

/* Copy in's extents.  Returns 0 or CAIRN_ENOMEM. */
int cn_extmap_load(struct cn_extmap *m, const Cairn__Inode *in);
void cn_extmap_fini(struct cn_extmap *m);
/* Lay x (file range [x->offset, x->offset + x->length)) over the map. */
int cn_extmap_put(struct cn_extmap *m, const Cairn__Extent *x);
/* Drop everything at or beyond size. */
void cn_extmap_truncate(struct cn_extmap *m, uint64_t size);
/* Point in->extents at the map (in then borrows it: detach before freeing in). */
void cn_extmap_attach(struct cn_extmap *m, Cairn__Inode *in, Cairn__Extent ***saved,
                      size_t *nsaved);
void cn_extmap_detach(Cairn__Inode *in, Cairn__Extent **saved, size_t nsaved);
/* The extents of old whose object no extent of m shows (to free after the commit): *out is a
 * malloc'd array of pointers into old (free() it only). */
int cn_extmap_dropped(const struct cn_extmap *m, Cairn__Extent *const *old, size_t nold,
                      Cairn__Extent ***out, size_t *nout);

#endif
