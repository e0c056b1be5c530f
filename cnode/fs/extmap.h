/*
 * extmap.h - a file's extent map, edited as a value (inside cnode/fs/).
 *
 * A file's bytes are either inline in its inode record (small files) or an extent map: a list
 * of extents in offset order, each showing a byte range of one erasure-coded object.  Whole-
 * object writes make one extent from byte 0.  Partial writes make a new object whose extent is
 * laid over the map, trimming or splitting the extents it covers, so no live stripe is ever
 * rewritten in place (invariant 5); objects no extent shows any more are freed once the new
 * map is committed.  Bytes no extent covers (holes, and a file extended by a size change) read
 * as zeros.
 */
#ifndef CAIRN_CN_FS_EXTMAP_H
#define CAIRN_CN_FS_EXTMAP_H

#include <stddef.h>
#include <stdint.h>

#include "cairn.pb-c.h"
#include "ec/ec.h"

struct fs_extmap {
    Cairn__Extent *v;     /* owned array, offset order, non-overlapping */
    Cairn__Extent **ptrs; /* owned: pointers into v, for packing */
    size_t n, cap;
};

/* The layout an extent's object was written with. */
struct ec_layout fs_extent_layout(const Cairn__Extent *x);
/* Bytes of the extent's whole object. */
uint64_t fs_extent_obj_size(const Cairn__Extent *x);

/* Copy in's extents.  Returns 0 or CAIRN_ENOMEM. */
int fs_extmap_load(struct fs_extmap *m, const Cairn__Inode *in);
void fs_extmap_fini(struct fs_extmap *m);
/* Lay x (file range [x->offset, x->offset + x->length)) over the map. */
int fs_extmap_put(struct fs_extmap *m, const Cairn__Extent *x);
/* Drop everything at or beyond size. */
void fs_extmap_truncate(struct fs_extmap *m, uint64_t size);
/* Point in->extents at the map (in then borrows it: detach before freeing in). */
void fs_extmap_attach(struct fs_extmap *m, Cairn__Inode *in, Cairn__Extent ***saved,
                      size_t *nsaved);
void fs_extmap_detach(Cairn__Inode *in, Cairn__Extent **saved, size_t nsaved);
/* The extents of old whose object no extent of m shows (to free after the commit): *out is a
 * malloc'd array of pointers into old (free() it only). */
int fs_extmap_dropped(const struct fs_extmap *m, Cairn__Extent *const *old, size_t nold,
                      Cairn__Extent ***out, size_t *nout);

#endif
