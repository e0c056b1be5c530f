/*
 * kv.h - the D-node's metadata shard store: ordered key/value records with versions.
 *
 * Built on LMDB (one environment in the D-node's metadata directory, on the same device as
 * the fragment store).  LMDB gives ordered keys, range scans and crash-safe copy-on-write
 * transactions whose commit is durable (fdatasync) before it returns; we keep its default
 * sync mode because an acknowledged metadata update must survive power loss.
 *
 * Every record carries a 64-bit version.  Updates are conditional: put/del name the version
 * they expect (KV_ABSENT = the record must not exist, KV_ANY = unconditional), and put names
 * the version the record gets, which must be greater than the current one.  This is the
 * compare-and-set primitive C-nodes coordinate through (ARCHITECTURE invariant 3).
 *
 * Records live in shards (uint32); a record key is unique within its shard, scans stay
 * within one shard.  On disk the LMDB key is big-endian shard id followed by the key bytes.
 *
 * Calls are synchronous and every write is durable on return; dn_kv_apply() makes a batch of
 * writes durable with one commit.  Not thread-safe for one handle except as LMDB allows (one
 * writer); the D-node calls it from its loop thread.
 */
#ifndef CAIRN_DN_KV_H
#define CAIRN_DN_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dn_kv;

#define KV_ABSENT 0ull
#define KV_ANY UINT64_MAX
#define KV_MAX_KEY 500u             /* bytes: LMDB keys are at most 511, we add a 4-byte shard prefix */
#define KV_MAX_VALUE (1u << 20)     /* bytes */
#define KV_MAX_SCAN 1000u           /* entries per scan call */
#define KV_MAX_SCAN_BYTES (4u << 20) /* total key + value bytes per scan call */
#define DN_KV_DEFAULT_MAP (4ull << 30) /* initial LMDB map; it doubles when 3/4 full */
/* Keys whose first byte is KV_RESERVED are the store's own, kept in the shard beside its
 * records (so a shard's dump carries them): writer sessions.  Clients cannot name them, and
 * scans never list them. */
#define KV_RESERVED 0xFFu
#define KV_SESSION_TTL_MS (10u * 60u * 1000u) /* an idle writer session is forgotten after */
#define KV_SESSION_SWEEP 1024u /* a shard looks for idle sessions every this many entries */
#define KV_TXN_MAX 8u /* ops of one all-or-nothing update (dn_kv_round_apply_txn) */
#define KV_MGET_MAX 64u /* keys of one KV_MGET request */

/* One scanned record; key and value point into the result's own memory. */
struct dn_kv_entry {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *val;
    size_t val_len;
    uint64_t version;
};

struct dn_kv_scan {
    struct dn_kv_entry *entries;
    size_t count;
    int more; /* 1 if stopped at the limit or the byte cap before end_key */
};

/* Open or create the LMDB environment in directory dir (created if missing), map size
 * map_size bytes (0 = DN_KV_DEFAULT_MAP); the map grows (doubles) whenever a round commit
 * leaves it more than 3/4 full, so it follows what the device holds rather than a fixed cap.
 * Returns 0, CAIRN_EIO, CAIRN_ENOMEM. */
int dn_kv_open(const char *dir, uint64_t map_size, struct dn_kv **out);
/* Close; accepts NULL. */
void dn_kv_close(struct dn_kv *kv);

/* Read a record.  On success *val is a malloc'd copy the caller frees (NULL if the value is
 * empty), *val_len and *version are set.  Errors: CAIRN_ENOENT, CAIRN_EINVAL (key too long or
 * empty), CAIRN_EIO, CAIRN_ENOMEM. */
int dn_kv_get(struct dn_kv *kv, uint32_t shard, const void *key, size_t key_len, void **val,
              size_t *val_len, uint64_t *version);

/* Conditional put: succeeds only if the current version equals expect (KV_ABSENT: no record;
 * KV_ANY: any state) and new_version > current version (0 if absent).  Durable on return.
 * On CAIRN_ECONFLICT, *cur_version (if non-NULL) is set to the current version (0 if absent).
 * Errors: CAIRN_ECONFLICT, CAIRN_EINVAL (limits, new_version == 0 or KV_ANY), CAIRN_ENOSPC,
 * CAIRN_EIO. */
int dn_kv_put(struct dn_kv *kv, uint32_t shard, const void *key, size_t key_len, const void *val,
              size_t val_len, uint64_t expect, uint64_t new_version, uint64_t *cur_version);

/* Conditional delete: the record must exist and its version equal expect (or expect == KV_ANY).
 * Durable on return.  Errors: CAIRN_ENOENT, CAIRN_ECONFLICT (*cur_version set), CAIRN_EIO. */
int dn_kv_del(struct dn_kv *kv, uint32_t shard, const void *key, size_t key_len, uint64_t expect,
              uint64_t *cur_version);

/* One conditional write of a batch, with the meaning of dn_kv_put / dn_kv_del.  key and val
 * are borrowed for the call. */
/* DN_KV_STAMP (all-or-nothing updates only, dn_kv_round_apply_txn): val is 1..KV_STAMP_MAX
 * big-endian u64 lanes, and the existing record's value, which must be at least that long,
 * gets each of its leading lanes raised to at least the given one (the rest kept) and the
 * new version.  Stamps commute, so writers that only need "at least this" never conflict:
 * a directory's mtime and ctime, kept at the front of its inode record (meta/ns.c). */
enum dn_kv_kind { DN_KV_PUT, DN_KV_DEL, DN_KV_STAMP };
#define KV_STAMP_MAX 4u /* lanes of one stamp */
struct dn_kv_op {
    enum dn_kv_kind kind;
    uint32_t shard;
    const void *key;
    size_t key_len;
    const void *val;      /* put and stamp only */
    size_t val_len;       /* put and stamp only */
    uint64_t expect;
    uint64_t new_version; /* put only */
    int status;           /* out: 0 or the error dn_kv_put / dn_kv_del would return */
    uint64_t cur_version; /* out: the current version on CAIRN_ECONFLICT */
    /* dn_kv_round_apply only: */
    uint64_t client;      /* in: the writer's session (0: none) */
    uint64_t seq;         /* in: its update number; copies of one update share it */
    uint64_t time_ms;     /* in: the proposer's clock (session expiry; the same everywhere) */
    bool dup;             /* out: a copy of an update this session already made (or an older
                           * one): nothing was applied; status and result are the first
                           * copy's (CAIRN_ECANCELED for a copy older than the session's last) */
    uint64_t result;      /* out: the version the update answers with: the record's new one
                           * (put), its current one (CAIRN_ECONFLICT), else 0 */
};

/* Group commit: apply ops[0..n) in order, each with its own condition as if applied alone
 * in that order (a later op sees the earlier ones), in one transaction whose one commit makes
 * every successful op durable before this returns.  A failed condition fails only its op.  If
 * the transaction as a whole fails (an LMDB error: map full, I/O), nothing of it stays and
 * each op is applied again alone, so only the ops that cannot succeed fail. */
void dn_kv_apply(struct dn_kv *kv, struct dn_kv_op *ops, size_t n);

/* Ordered scan of shard keys k with start <= k < end (end_len == 0: to the end of the shard),
 * at most limit entries (0 or > KV_MAX_SCAN means KV_MAX_SCAN) and KV_MAX_SCAN_BYTES bytes.
 * Fills *out; free it with dn_kv_scan_free().  Errors: CAIRN_EINVAL, CAIRN_EIO, CAIRN_ENOMEM. */
int dn_kv_scan(struct dn_kv *kv, uint32_t shard, const void *start, size_t start_len,
               const void *end, size_t end_len, unsigned limit, struct dn_kv_scan *out);
void dn_kv_scan_free(struct dn_kv_scan *scan);

/* ---- the round: what the D-node's consensus groups write ----
 *
 * The calls below write into one write transaction, begun by the first of them and made
 * durable by dn_kv_round_commit() (one fdatasync for everything the D-node's Raft groups
 * wrote since the last one: log entries, group metadata, applied commands).  Reads (get,
 * scan, the loads below) see the last commit, never the open round.  dn_kv_put, dn_kv_del
 * and dn_kv_apply must not run while a round is open (they fail with CAIRN_EAGAIN). */
bool dn_kv_round_open(const struct dn_kv *kv);
/* Commit the round (no-op if none is open).  Returns 0 or CAIRN_EIO / CAIRN_ENOSPC. */
int dn_kv_round_commit(struct dn_kv *kv);

/* A group's log: entry index of group holds term, type and bytes. */
int dn_kv_log_put(struct dn_kv *kv, uint32_t group, uint64_t index, uint64_t term, unsigned type,
                  const void *buf, size_t len);
/* Forget entries from <= index < to of group. */
int dn_kv_log_drop(struct dn_kv *kv, uint32_t group, uint64_t from, uint64_t to);
/* Call cb for each committed entry of group in index order; a non-zero return stops the walk
 * and is returned.  buf is valid for the call only. */
typedef int (*dn_kv_log_cb)(void *arg, uint64_t index, uint64_t term, unsigned type,
                            const void *buf, size_t len);
int dn_kv_log_load(struct dn_kv *kv, uint32_t group, dn_kv_log_cb cb, void *arg);

/* A group's metadata blob (consensus/ encodes it), and a node-wide blob (the last cluster map
 * this D-node knows).  get: a malloc'd copy, or CAIRN_ENOENT. */
int dn_kv_gmeta_put(struct dn_kv *kv, uint32_t group, const void *buf, size_t len);
int dn_kv_gmeta_get(struct dn_kv *kv, uint32_t group, void **buf, size_t *len);
int dn_kv_node_put(struct dn_kv *kv, const void *buf, size_t len);
int dn_kv_node_get(struct dn_kv *kv, void **buf, size_t *len);

/* The index of the last command applied to a shard group (0: none), as last committed. */
int dn_kv_applied_get(struct dn_kv *kv, uint32_t group, uint64_t *applied);
/* Apply op (put or delete, with its condition) to shard group as the command at index: the
 * record's new version is index.  op->status gets the op's own result; the return value is
 * 0 or a store failure (the round is then unusable).  The applied index moves to index
 * either way: a failed condition is a command that was applied and changed nothing.
 *
 * Writer sessions make retries exactly-once: an op with a client id is applied only if its
 * seq is newer than the last one that client applied in this shard; the shard keeps that
 * seq with the op's result and answers a copy of it with the same result (op->dup).  A
 * writer has one update in flight, so anything older is a stray copy and is dropped. */
int dn_kv_round_apply(struct dn_kv *kv, uint32_t group, uint64_t index, struct dn_kv_op *op);
/* One all-or-nothing update: ops[0..n) (puts and deletes of distinct keys of group, at most
 * KV_TXN_MAX) are applied at index only if every one's condition holds, else none is.  head
 * carries the session (client, seq, time_ms) and gets the outcome as dn_kv_round_apply gives
 * it: dup, status (0, or the first failing op's: CAIRN_ECONFLICT, CAIRN_ENOENT for a delete of
 * an absent record, CAIRN_EINVAL for bad ops) and result (index on success, the failing op's
 * current version on CAIRN_ECONFLICT, else 0); every put's record gets version index. */
int dn_kv_round_apply_txn(struct dn_kv *kv, uint32_t group, uint64_t index, struct dn_kv_op *head,
                          struct dn_kv_op *ops, size_t n);
/* Move the applied index without a record change (a command that is not a record op). */
int dn_kv_round_applied(struct dn_kv *kv, uint32_t group, uint64_t index);

/* A shard's records and applied index, as last committed, in one malloc'd buffer for a
 * follower that is too far behind (at most max bytes: CAIRN_ETOOBIG beyond). */
int dn_kv_shard_dump(struct dn_kv *kv, uint32_t shard, size_t max, uint64_t *applied,
                     void **out, size_t *out_len);
/* Replace a shard's records with a dump (checked first: CAIRN_EPROTO), in the round. */
int dn_kv_round_shard_install(struct dn_kv *kv, uint32_t shard, uint64_t applied,
                              const void *data, size_t len);

#endif
