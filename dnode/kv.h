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

#include <stddef.h>
#include <stdint.h>

struct dn_kv;

#define KV_ABSENT 0ull
#define KV_ANY UINT64_MAX
#define KV_MAX_KEY 500u             /* bytes: LMDB keys are at most 511, we add a 4-byte shard prefix */
#define KV_MAX_VALUE (1u << 20)     /* bytes */
#define KV_MAX_SCAN 1000u           /* entries per scan call */
#define KV_MAX_SCAN_BYTES (4u << 20) /* total key + value bytes per scan call */

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
 * map_size bytes (0 = 1 GiB).  Returns 0, CAIRN_EIO, CAIRN_ENOMEM. */
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
enum dn_kv_kind { DN_KV_PUT, DN_KV_DEL };
struct dn_kv_op {
    enum dn_kv_kind kind;
    uint32_t shard;
    const void *key;
    size_t key_len;
    const void *val;      /* put only */
    size_t val_len;       /* put only */
    uint64_t expect;
    uint64_t new_version; /* put only */
    int status;           /* out: 0 or the error dn_kv_put / dn_kv_del would return */
    uint64_t cur_version; /* out: the current version on CAIRN_ECONFLICT */
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

#endif
