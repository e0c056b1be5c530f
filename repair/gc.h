/*
 * gc.h - the garbage sweeper: fragments no record references are found and deleted.
 *
 * Garbage comes from writes that failed or were cut short (a C-node crash, a client gone),
 * from overwritten and deleted objects whose deferred free was lost with a C-node, and from
 * deletes sent to D-nodes that were down.  A pass compares every live D-node's fragments with
 * the metadata:
 *
 *   1. mark: every record of every shard is read (meta_entry_objects: inodes, parts, uploads,
 *      stripe objects) and the (object, generation) pairs they reference are collected.  A
 *      shard that cannot be read in full makes the mark incomplete, and the pass deletes
 *      nothing.
 *   2. sweep: each live D-node lists its fragments (OP_FRAG_LIST).  A fragment is a candidate
 *      if its header names an owner (fragments from before owners were kept are never touched),
 *      it was born more than the grace period before the mark began, and its (object, gen) was
 *      not marked.
 *   3. A candidate is deleted only if the previous pass of this sweeper, whose mark ended
 *      before this one's began, found it a candidate too.
 *
 * Why two marks: a mark reads the shards one after another, so a reference that moves from a
 * shard not yet read to one already read (a multipart upload's parts becoming the object's
 * extents, written in the new place before they leave the old) can be missed by one mark; the
 * next mark starts after the move ended and sees it.  Why the grace: a write stores its
 * fragments before it records them; the grace (default one hour) is far longer than any write
 * takes between the two, so a write still in flight is never swept.  Deletes of fragments on
 * D-nodes that are down wait for the passes after they return.
 *
 * Several sweepers (every C-node's repair service may run one) never need to agree: each
 * deletes only what its own two marks found unreferenced.
 *
 * Threading: one thread per struct gc (the caller's); the view is the caller's too.
 */
#ifndef CAIRN_REPAIR_GC_H
#define CAIRN_REPAIR_GC_H

#include <stdbool.h>
#include <stdint.h>

#include "client/cluster.h"

#define GC_DEFAULT_GRACE_MS (3600u * 1000u)

struct gc;

struct gc_opts {
    uint64_t grace_ms;    /* 0: GC_DEFAULT_GRACE_MS */
    volatile bool *stop;  /* set by another thread: the pass ends early (nothing is lost) */
};

struct gc_result {
    bool complete;        /* the mark read every shard (else nothing was deleted) */
    uint64_t objects;     /* (object, gen) pairs the records reference */
    uint64_t fragments;   /* fragments the live D-nodes listed */
    uint64_t unowned;     /* of them, without an owner in the header (never swept) */
    uint64_t young;       /* born within the grace period */
    uint64_t candidates;  /* unreferenced and old enough */
    uint64_t deleted;     /* candidates of two passes in a row, deleted now */
    uint64_t bytes;       /* their payload bytes */
    unsigned nodes_down;  /* D-nodes that did not list (their garbage waits) */
};

/* A sweeper with no previous pass.  Returns 0 or CAIRN_ENOMEM. */
int gc_create(struct gc **out);
/* Accepts NULL. */
void gc_destroy(struct gc *g);

/* One pass with view cl.  Returns 0 (see *res; res->complete says whether the mark was whole),
 * CAIRN_ECANCELED if stopped, or CAIRN_ENOMEM. */
int gc_pass(struct gc *g, struct cl_cluster *cl, const struct gc_opts *o, struct gc_result *res);

#endif
