/*
 * rec.h - metadata records replicated on the D-nodes, updated only by compare-and-set.
 *
 * A record lives in one shard; a shard's replica set is the first m + 1 D-nodes of the shard's
 * rendezvous order that this C-node's view does not consider down, so a record keeps m + 1
 * copies while D-nodes are down (a down node's place goes to the next node in the order).
 * No lock service, no leader: every C-node computes the same order from the cluster map.
 *
 * Versions.  Every record has a 64-bit version (> 0) that only grows; a put names the
 * version it expects and the D-node refuses it otherwise (CAIRN_ECONFLICT).  A put is decided
 * on the first member of the replica set (the primary), which serialises competing writers,
 * and then copied to the other members with "newer version wins", so replicas converge on the
 * same record whatever order the copies arrive in.  The put is acknowledged only when all
 * m + 1 members hold it (durably: the D-node's KV commit is synchronous).  Deletes write a
 * tombstone (a record whose value is empty of data and marked dead) with a fresh version, so
 * a replica that missed the delete is overruled rather than resurrecting the record.
 *
 * Reads ask every member and take the highest version, so a replica that missed updates
 * (it was down, or is the substitute that joined the set) cannot hide a newer record; members
 * found behind are repaired on the spot with the newest copy (read repair), which also brings
 * a returning primary up to date before the next conditional put is decided on it.
 * Scans merge the members' ordered pages the same way.
 *
 * Known limit: two C-nodes that disagree about which D-node is down can pick different
 * primaries for a moment; the newer version then wins on every replica (last writer wins),
 * which is right for object overwrites, but a create-if-absent may succeed on both sides.
 */
#ifndef CAIRN_META_REC_H
#define CAIRN_META_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/cluster.h"

#define META_ANY UINT64_MAX      /* put/del: no condition */
#define META_REC_MAX_KEY 500u    /* bytes (the D-node's KV limit) */
#define META_REC_MAX_VAL ((1u << 20) - 1) /* stored with a liveness byte: the D-node's 1 MiB */
#define META_SCAN_MAX 1000u      /* entries per replica page */

struct meta_rec {
    uint64_t version; /* of the live record, or of its tombstone (0: never existed) */
    void *val;        /* owned by the caller (free()), NULL for ENOENT */
    uint32_t len;
};

/* Newest copy of a record.  Returns 0 (live record in *out), CAIRN_ENOENT (absent or deleted;
 * out->version is what a create must expect), CAIRN_EUNREACH (fewer than m + 1 D-nodes up or
 * answering), or another CAIRN_E* code. */
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

/* Conditional put: expect is the version the record must have now (from meta_rec_get: 0 or a
 * tombstone's version for "absent"), or META_ANY.  On success *version (may be NULL) gets the
 * record's new version.  Returns 0, CAIRN_ECONFLICT (the record changed: read again),
 * CAIRN_EUNREACH (not all m + 1 copies could be written: the put may or may not take effect),
 * CAIRN_EINVAL (limits). */
int meta_rec_put(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 uint64_t expect, const void *val, uint32_t len, uint64_t *version);

/* Conditional delete (writes a tombstone); errors as meta_rec_put, plus CAIRN_ENOENT when the
 * record is already absent and expect is META_ANY. */
int meta_rec_del(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 uint64_t expect);

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

/* Catch D-node node up: for every shard whose replica set holds it, copy every record (and
 * tombstone) of the other members to it at its version; the D-node keeps whichever copy is
 * newer, so the sweep never undoes a write made meanwhile.  Run when a D-node returns, so it
 * holds what was written while it was away before other members fail (reads and
 * compare-and-sets are correct without it, since they ask every member and repair the ones
 * behind, but the records would have one copy fewer).  check_only: copy nothing, count the
 * members' copies the node is behind on (a record two members hold counts twice).  *count (may be NULL) gets the records copied (or behind).
 * Returns 0 or the first error (the sweep goes on past it). */
int meta_rec_sync(struct cl_cluster *cl, unsigned node, bool check_only, uint64_t *count);

#define META_SHARDS 256u /* metadata shards in the cluster */

/* The shard of a 64-bit item (an inode number). */
uint32_t meta_shard_of_u64(uint64_t item);
/* The shard of a key given as bytes (a name, an access key). */
uint32_t meta_shard_of(const void *key, size_t len);

#endif
