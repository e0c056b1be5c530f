/*
 * rec.h - metadata records on the D-nodes, updated only by compare-and-set.
 *
 * A record lives in one metadata shard; every shard is a Raft group on the D-nodes the
 * cluster map places it on (map/map.h, dnode/shards.h), 2m + 1 of them, so a shard keeps
 * serving, and loses nothing, while any m of its D-nodes are gone.  Callers name a shard by a
 * 32-bit shard key (meta_shard_of*); the cluster's shard is the key modulo the map's shard
 * count (meta_rec_shard), so the hash functions never change with the cluster's size.
 *
 * Every operation goes to the shard's leader.  An update is acknowledged after the leader
 * committed it to a majority's flash and applied it; a read is answered by a leader holding
 * its lease, from what is committed, so a read sees every update acknowledged before it began
 * (linearizable), whichever C-node made it.  No C-node decides anything alone: two C-nodes
 * racing on one record are ordered by the shard's log, and the loser gets CAIRN_ECONFLICT.
 *
 * Versions.  A record's version is the index of the log entry that last wrote it: it only
 * grows, and no two writes of a shard share one.  A put names the version it expects (0: the
 * record must be absent) or META_ANY; a delete removes the record (an absent record has
 * version 0 again).
 *
 * Unknown outcomes.  An update whose leader stopped answering, or lost its place, after the
 * update was sent may have been committed or not.  Every update carries the view's writer
 * session and its own number (client/cluster.h); the shard applies the first copy that
 * reaches its log and answers later copies with that copy's result, so the call simply sends
 * it again, to whichever D-node leads the shard now, and reports the one outcome.  Only when
 * no leader answers for the view's leader wait does it return CAIRN_EUNREACH: the update may
 * still land, and the caller reads the record back before it frees anything the update may
 * have referenced.
 */
#ifndef CAIRN_META_REC_H
#define CAIRN_META_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/cluster.h"

#define META_ANY UINT64_MAX      /* put/del: no condition */
#define META_REC_MAX_KEY 500u    /* bytes (the D-node's KV limit) */
#define META_REC_MAX_VAL (240u << 10) /* one Raft command: a quarter of the D-nodes' 1 MiB messages */
#define META_SCAN_MAX 1000u      /* entries per replica page */

struct meta_rec {
    uint64_t version; /* of the record (0: absent) */
    void *val;        /* owned by the caller (free()), NULL for ENOENT */
    uint32_t len;
};

/* A record, as committed (shard is a shard key).  Returns 0 (record in *out), CAIRN_ENOENT
 * (absent; out->version is 0, what a create must expect), CAIRN_EUNREACH (no leader answered
 * within the deadline: a majority of the shard's D-nodes is gone), or another CAIRN_E* code. */
int meta_rec_get(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 struct meta_rec *out);

/* One record of a meta_rec_get_many() batch: shard and key in, rc and rec out (as from
 * meta_rec_get; rec.val owned by the caller). */
struct meta_get {
    uint32_t shard;
    const void *key; /* borrowed for the call */
    size_t klen;
    int rc;
    struct meta_rec rec;
};

/* meta_rec_get for n records at once: the calls for many records are in flight together, so
 * reading a page of inodes costs about one round trip instead of one per record. */
void meta_rec_get_many(struct cl_cluster *cl, struct meta_get *gets, unsigned n);

/* Conditional put: expect is the version the record must have now (from meta_rec_get: 0 for
 * "absent"), or META_ANY.  On success *version (may be NULL) gets the
 * record's new version.  Returns 0, CAIRN_ECONFLICT (the record changed: read again),
 * CAIRN_EUNREACH (the outcome is unknown: the put may or may not have taken effect),
 * CAIRN_EINVAL (limits). */
int meta_rec_put(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 uint64_t expect, const void *val, uint32_t len, uint64_t *version);

/* Conditional delete; errors as meta_rec_put, plus CAIRN_ENOENT when the record is already
 * absent. */
int meta_rec_del(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 uint64_t expect);

/* One op of an all-or-nothing update (meta_rec_txn).  A stamp raises the record's leading
 * big-endian u64 lanes to at least val's (1..META_STAMP_MAX lanes; the record must exist and
 * be that long): stamps never conflict with each other, so many writers can say "the
 * directory changed at t" without a read or a retry. */
enum meta_op_kind { META_OP_PUT, META_OP_DEL, META_OP_STAMP };
#define META_STAMP_MAX 4u

struct meta_op {
    enum meta_op_kind kind;
    const void *key; /* borrowed for the call */
    size_t klen;
    uint64_t expect; /* as for meta_rec_put / meta_rec_del; META_ANY for most stamps */
    const void *val; /* put and stamp; borrowed */
    uint32_t len;
};

#define META_TXN_MAX 8u /* ops of one meta_rec_txn (the D-nodes' KV_TXN_MAX) */

/* Puts, deletes and stamps of n distinct records of one shard (shard key), in one log entry: applied
 * together if every op's condition holds, else none is (META_REC_MAX_VAL bytes of values in
 * all).  On success *version (may be NULL) gets the version every put record now has.
 * Returns 0, CAIRN_ECONFLICT (some record changed: nothing was applied), CAIRN_ENOENT (a
 * delete or stamp found no record: nothing was applied), CAIRN_EUNREACH (the outcome is unknown, as
 * for meta_rec_put), CAIRN_EINVAL / CAIRN_ETOOBIG (limits). */
int meta_rec_txn(struct cl_cluster *cl, uint32_t shard, const struct meta_op *ops, unsigned n,
                 uint64_t *version);

struct meta_entry {
    uint8_t *key; /* owned by the scan */
    uint32_t klen;
    uint64_t version;
    uint8_t *val; /* owned by the scan */
    uint32_t len;
};

struct meta_scan {
    struct meta_entry *entries; /* live records in key order */
    unsigned n;
    bool more;       /* more keys may follow: continue at next */
    uint8_t *next;   /* where the next page starts (inclusive), when more */
    uint32_t next_len;
};

/* One page of live records with start <= key < end (end NULL or elen 0: end of shard), at most
 * limit (<= META_SCAN_MAX) of them.  Returns 0 and fills *out (free with meta_scan_fini), or an
 * error as meta_rec_get. */
int meta_rec_scan(struct cl_cluster *cl, uint32_t shard, const void *start, size_t slen,
                  const void *end, size_t elen, unsigned limit, struct meta_scan *out);
void meta_scan_fini(struct meta_scan *s);

/* The cluster map as its group holds it (MAP_GROUP, MAP_KEY): the encoded map and the
 * record's version, what meta_map_put must expect.  Errors as meta_rec_get. */
int meta_map_get(struct cl_cluster *cl, struct meta_rec *out);
/* Replace the map by the next one (map.h: its epoch must follow the current map's; the
 * D-nodes refuse anything else), if the record still has version expect.  Returns 0,
 * CAIRN_ECONFLICT (another change won: read again), CAIRN_EINVAL, CAIRN_EUNREACH. */
int meta_map_put(struct cl_cluster *cl, uint64_t expect, const void *map, uint32_t len);

/* Builds the next map from cur into *buf (malloc'd), or says the change is made already
 * (*done) or cannot be (a CAIRN_E* code; *what may name what is wrong). */
typedef int (*meta_map_next_fn)(const Cairn__ClusterMap *cur, void *arg, uint8_t **buf,
                                size_t *len, bool *done, const char **what);
/* One map change: read the map record from the map group, build the next map with next, write
 * it by compare-and-set on the record's version (two changes cannot both win; the loser builds
 * on the winner, up to 20 times), then wait until this view has it (the map group's members
 * install it when they apply it).  Returns 0, or the error with *what saying which step. */
int meta_map_change(struct cl_cluster *cl, meta_map_next_fn next, void *arg, const char **what);

/* The shard key of a 64-bit item (an inode number). */
uint32_t meta_shard_of_u64(uint64_t item);
/* The shard key of a key given as bytes (a name, an access key). */
uint32_t meta_shard_of(const void *key, size_t len);
/* The cluster's shard for a shard key. */
uint32_t meta_rec_shard(const struct cl_cluster *cl, uint32_t shard_key);

#endif
