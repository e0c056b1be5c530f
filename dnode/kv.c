/*
 * kv.c - metadata shard store on LMDB (see kv.h).
 *
 * Why LMDB: an ordered B+tree (range scans in key order come free), copy-on-write pages with
 * two alternating meta pages (a crash leaves the last committed state, no recovery log to
 * replay), commits that are fdatasync'ed before mdb_txn_commit() returns (we keep that default:
 * an acknowledged metadata update must survive power loss), readers that never block the
 * writer, and a small, mature, packaged C library.
 *
 * Records: LMDB key = 4-byte big-endian shard id || record key, so all shards share one tree,
 * each shard is one contiguous key range, and a scan never leaves its shard.  LMDB value =
 * 8-byte big-endian version || record bytes.  A version is never 0 (0 means "absent" to
 * callers) and only grows while the record exists, so a C-node can tell a newer record from an
 * older one.  A delete forgets the version (no tombstones): a record created again starts from
 * whatever version its creator names, so callers that must never reuse a version pick it from
 * a counter that outlives the record.
 *
 * Writes go in batches (dn_kv_apply): one LMDB write transaction applies each op in order
 * with its own version check, then one commit (one fdatasync) makes the batch durable.  The
 * checks and writes happen under LMDB's single-writer lock, which is shared between processes
 * through the lock file, so the compare-and-set holds even with several processes on one
 * environment; dn_kv_put/dn_kv_del are batches of one.
 */
#include "dnode/kv.h"

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cairn.h"
#include "common/log.h"

#define TAG "kv"
#define SHARD_BYTES 4u
#define VERSION_BYTES 8u

struct dn_kv {
    MDB_env *env;
    MDB_dbi dbi;   /* "rec": the records */
    MDB_dbi log;   /* "log": group (be32) index (be64) -> term (be64) type (u8) bytes */
    MDB_dbi grp;   /* "grp": group (be32) tag (u8) -> the group's metadata blob ('M') and
                    * applied index ('A'); node-wide values under group 0xffffffff tag 'N' */
    MDB_txn *round; /* the open round (dn_kv_round_commit), or NULL */
    uint64_t map_size;
};

static int from_mdb(int rc, const char *what)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return CAIRN_ENOENT;
    case MDB_MAP_FULL:
        return CAIRN_ENOSPC;
    case ENOMEM:
        return CAIRN_ENOMEM;
    default:
        log_error(TAG, "%s: %s", what, mdb_strerror(rc));
        return CAIRN_EIO;
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Build the LMDB key for (shard, key) in buf (SHARD_BYTES + KV_MAX_KEY bytes). */
static int make_key(uint8_t *buf, uint32_t shard, const void *key, size_t key_len, MDB_val *out)
{
    if (key_len > KV_MAX_KEY || (key_len && !key))
        return CAIRN_EINVAL;
    put_be32(buf, shard);
    if (key_len)
        memcpy(buf + SHARD_BYTES, key, key_len);
    out->mv_data = buf;
    out->mv_size = SHARD_BYTES + key_len;
    return 0;
}

/* mkdir -p: the metadata directory may sit below a data directory not created yet. */
static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path)) {
        log_error(TAG, "bad metadata directory name (length %zu)", len);
        return CAIRN_EIO;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        path[i] = '\0';
        if (mkdir(path, 0755) && errno != EEXIST) {
            log_error(TAG, "mkdir %s: %s", path, strerror(errno));
            return CAIRN_EIO;
        }
        path[i] = dir[i];
    }
    return 0;
}

int dn_kv_open(const char *dir, uint64_t map_size, struct dn_kv **out)
{
    struct dn_kv *kv;
    MDB_txn *txn;
    int dead = 0;
    int rc;

    rc = mkdir_p(dir);
    if (rc)
        return rc;
    kv = calloc(1, sizeof(*kv));
    if (!kv)
        return CAIRN_ENOMEM;
    rc = mdb_env_create(&kv->env);
    if (rc)
        goto err_free;
    kv->map_size = map_size ? map_size : DN_KV_DEFAULT_MAP;
    rc = mdb_env_set_mapsize(kv->env, kv->map_size);
    if (rc)
        goto err_env;
    rc = mdb_env_set_maxdbs(kv->env, 4);
    if (rc)
        goto err_env;
    /* MDB_NOTLS: the D-node may hand the handle between threads later; no readers pinned
     * to threads.  No MDB_NOSYNC / MDB_NOMETASYNC: commits stay durable. */
    rc = mdb_env_open(kv->env, dir, MDB_NOTLS, 0644);
    if (rc)
        goto err_env;
    /* A process killed mid-read leaves its reader slot behind, which pins old pages and lets
     * the file grow; clear such slots now (cheap, and only matters after a crash). */
    if (mdb_reader_check(kv->env, &dead) == 0 && dead > 0)
        log_warn(TAG, "%s: cleared %d stale reader slots", dir, dead);
    rc = mdb_txn_begin(kv->env, NULL, 0, &txn);
    if (rc)
        goto err_env;
    if ((rc = mdb_dbi_open(txn, "rec", MDB_CREATE, &kv->dbi)) ||
        (rc = mdb_dbi_open(txn, "log", MDB_CREATE, &kv->log)) ||
        (rc = mdb_dbi_open(txn, "grp", MDB_CREATE, &kv->grp))) {
        mdb_txn_abort(txn);
        goto err_env;
    }
    rc = mdb_txn_commit(txn);
    if (rc)
        goto err_env;
    *out = kv;
    return 0;

err_env:
    mdb_env_close(kv->env);
err_free:
    free(kv);
    return from_mdb(rc, "open");
}

void dn_kv_close(struct dn_kv *kv)
{
    if (!kv)
        return;
    if (kv->round)
        mdb_txn_abort(kv->round); /* never committed: as after a crash */
    mdb_env_close(kv->env);
    free(kv);
}

int dn_kv_get(struct dn_kv *kv, uint32_t shard, const void *key, size_t key_len, void **val,
              size_t *val_len, uint64_t *version)
{
    uint8_t kb[SHARD_BYTES + KV_MAX_KEY];
    MDB_val k, v;
    MDB_txn *txn;
    int rc;

    if (key_len == 0 || make_key(kb, shard, key, key_len, &k))
        return CAIRN_EINVAL;
    rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return from_mdb(rc, "get: begin");
    rc = mdb_get(txn, kv->dbi, &k, &v);
    if (rc) {
        mdb_txn_abort(txn);
        return from_mdb(rc, "get");
    }
    if (v.mv_size < VERSION_BYTES) {
        mdb_txn_abort(txn);
        log_error(TAG, "record without version in shard %u", shard);
        return CAIRN_EIO;
    }
    *version = get_be64(v.mv_data);
    *val_len = v.mv_size - VERSION_BYTES;
    *val = NULL;
    if (*val_len) {
        *val = malloc(*val_len);
        if (!*val) {
            mdb_txn_abort(txn);
            return CAIRN_ENOMEM;
        }
        memcpy(*val, (uint8_t *)v.mv_data + VERSION_BYTES, *val_len);
    }
    mdb_txn_abort(txn);
    return 0;
}

/* Current version of k inside txn into *cur (0 if absent); returns 0 or a CAIRN_E* code. */
static int current_version(struct dn_kv *kv, MDB_txn *txn, MDB_val *k, uint64_t *cur)
{
    MDB_val v;
    int rc = mdb_get(txn, kv->dbi, k, &v);

    *cur = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return from_mdb(rc, "read version");
    if (v.mv_size < VERSION_BYTES) {
        log_error(TAG, "record without version");
        return CAIRN_EIO;
    }
    *cur = get_be64(v.mv_data);
    return 0;
}

/* Apply one write inside txn.  A failed condition or a bad argument is the op's own result
 * (op->status; the transaction is untouched and goes on); an LMDB error is returned, and
 * then the transaction is unusable. */
/* Check op against txn without writing: its limits, then its condition.  Fills op->status
 * (and cur_version on CAIRN_ECONFLICT); on 0, *k (in kb) is its LMDB key. */
static int op_check(struct dn_kv *kv, MDB_txn *txn, struct dn_kv_op *op, uint8_t *kb, MDB_val *k)
{
    uint64_t cur;
    int rc;

    op->status = 0;
    op->cur_version = 0;
    if (op->key_len == 0 || ((const uint8_t *)op->key)[0] == KV_RESERVED ||
        make_key(kb, op->shard, op->key, op->key_len, k) ||
        (op->kind != DN_KV_DEL &&
         (op->val_len > KV_MAX_VALUE || (op->val_len && !op->val) || op->new_version == 0 ||
          op->new_version == KV_ANY)) ||
        (op->kind == DN_KV_STAMP &&
         (op->val_len == 0 || op->val_len % 8 || op->val_len > 8 * KV_STAMP_MAX))) {
        op->status = CAIRN_EINVAL;
        return 0;
    }
    rc = current_version(kv, txn, k, &cur);
    if (rc)
        return rc;
    if (op->kind == DN_KV_STAMP && cur) {
        MDB_val v;

        rc = mdb_get(txn, kv->dbi, k, &v);
        if (rc)
            return from_mdb(rc, "stamp: get");
        if (v.mv_size < VERSION_BYTES + op->val_len) {
            op->status = CAIRN_EINVAL; /* the record has no such lanes */
            return 0;
        }
    }
    if (op->kind == DN_KV_DEL || op->kind == DN_KV_STAMP) {
        if (cur == 0) {
            op->status = CAIRN_ENOENT;
        } else if (op->expect != KV_ANY && op->expect != cur) {
            op->cur_version = cur;
            op->status = CAIRN_ECONFLICT;
        } else if (op->kind == DN_KV_STAMP && op->new_version <= cur) {
            op->cur_version = cur;
            op->status = CAIRN_ECONFLICT;
        }
        return 0;
    }
    if ((op->expect != KV_ANY && op->expect != cur) || op->new_version <= cur) {
        op->cur_version = cur;
        op->status = CAIRN_ECONFLICT;
    }
    return 0;
}

/* A stamp: the record's lanes raised, written back whole with the new version. */
static int stamp_write(struct dn_kv *kv, MDB_txn *txn, const struct dn_kv_op *op, MDB_val *k)
{
    MDB_val v;
    uint8_t *copy;
    int rc = mdb_get(txn, kv->dbi, k, &v);

    if (rc)
        return from_mdb(rc, "stamp: get");
    /* v points into the map; the put below may move pages: work on a copy */
    copy = malloc(v.mv_size);
    if (!copy)
        return CAIRN_ENOMEM;
    memcpy(copy, v.mv_data, v.mv_size);
    for (size_t i = 0; i < op->val_len; i += 8) {
        uint64_t have = get_be64(copy + VERSION_BYTES + i);
        uint64_t want = get_be64((const uint8_t *)op->val + i);

        if (want > have)
            put_be64(copy + VERSION_BYTES + i, want);
    }
    put_be64(copy, op->new_version);
    v.mv_data = copy;
    rc = mdb_put(txn, kv->dbi, k, &v, 0);
    free(copy);
    return rc ? from_mdb(rc, "stamp: put") : 0;
}

/* Write a checked op (op_check said 0) at its key k. */
static int op_write(struct dn_kv *kv, MDB_txn *txn, const struct dn_kv_op *op, MDB_val *k)
{
    MDB_val v;
    int rc;

    if (op->kind == DN_KV_DEL) {
        rc = mdb_del(txn, kv->dbi, k, NULL);
        return rc ? from_mdb(rc, "del") : 0;
    }
    if (op->kind == DN_KV_STAMP)
        return stamp_write(kv, txn, op, k);
    /* MDB_RESERVE: LMDB hands us the value's place in the page; we write version + bytes
     * there directly instead of assembling a temporary copy. */
    v.mv_size = VERSION_BYTES + op->val_len;
    rc = mdb_put(txn, kv->dbi, k, &v, MDB_RESERVE);
    if (rc)
        return from_mdb(rc, "put");
    put_be64(v.mv_data, op->new_version);
    if (op->val_len)
        memcpy((uint8_t *)v.mv_data + VERSION_BYTES, op->val, op->val_len);
    return 0;
}

static int apply_in_txn(struct dn_kv *kv, MDB_txn *txn, struct dn_kv_op *op)
{
    uint8_t kb[SHARD_BYTES + KV_MAX_KEY];
    MDB_val k;
    int rc = op_check(kv, txn, op, kb, &k);

    if (rc || op->status)
        return rc;
    return op_write(kv, txn, op, &k);
}

void dn_kv_apply(struct dn_kv *kv, struct dn_kv_op *ops, size_t n)
{
    MDB_txn *txn;
    size_t i;
    int rc;

    if (n == 0)
        return;
    if (kv->round) {
        /* LMDB has one writer: a second write transaction in this thread would wait for
         * the round forever. */
        for (i = 0; i < n; i++)
            ops[i].status = CAIRN_EAGAIN;
        return;
    }
    rc = mdb_txn_begin(kv->env, NULL, 0, &txn);
    if (rc) {
        rc = from_mdb(rc, "write: begin");
        goto failed;
    }
    for (i = 0; i < n; i++)
        if ((rc = apply_in_txn(kv, txn, &ops[i])))
            break;
    if (rc) {
        mdb_txn_abort(txn);
        goto failed;
    }
    /* The one fdatasync for the whole batch: every op's result stands only from here on. */
    rc = mdb_txn_commit(txn);
    if (!rc)
        return;
    rc = from_mdb(rc, "write: commit");
failed:
    if (n == 1) {
        ops[0].status = rc;
        return;
    }
    /* Nothing of the batch was committed.  Apply each op alone, so that one op that cannot
     * succeed (a value that does not fit the map) fails by itself and not its neighbours. */
    for (i = 0; i < n; i++)
        dn_kv_apply(kv, &ops[i], 1);
}

int dn_kv_put(struct dn_kv *kv, uint32_t shard, const void *key, size_t key_len, const void *val,
              size_t val_len, uint64_t expect, uint64_t new_version, uint64_t *cur_version)
{
    struct dn_kv_op op = {.kind = DN_KV_PUT,
                          .shard = shard,
                          .key = key,
                          .key_len = key_len,
                          .val = val,
                          .val_len = val_len,
                          .expect = expect,
                          .new_version = new_version};

    dn_kv_apply(kv, &op, 1);
    if (op.status == CAIRN_ECONFLICT && cur_version)
        *cur_version = op.cur_version;
    return op.status;
}

int dn_kv_del(struct dn_kv *kv, uint32_t shard, const void *key, size_t key_len, uint64_t expect,
              uint64_t *cur_version)
{
    struct dn_kv_op op = {.kind = DN_KV_DEL,
                          .shard = shard,
                          .key = key,
                          .key_len = key_len,
                          .expect = expect};

    dn_kv_apply(kv, &op, 1);
    if (op.status == CAIRN_ECONFLICT && cur_version)
        *cur_version = op.cur_version;
    return op.status;
}

/* memcmp order with the shorter key first on a common prefix: LMDB's default order. */
static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);

    if (c)
        return c;
    return (al > bl) - (al < bl);
}

int dn_kv_scan(struct dn_kv *kv, uint32_t shard, const void *start, size_t start_len,
               const void *end, size_t end_len, unsigned limit, struct dn_kv_scan *out)
{
    uint8_t kb[SHARD_BYTES + KV_MAX_KEY];
    size_t cap = 0, bytes = 0;
    MDB_cursor *cur = NULL;
    MDB_txn *txn = NULL;
    MDB_val k, v;
    int rc;

    memset(out, 0, sizeof(*out));
    if (make_key(kb, shard, start, start_len, &k) || end_len > KV_MAX_KEY || (end_len && !end))
        return CAIRN_EINVAL;
    if (limit == 0 || limit > KV_MAX_SCAN)
        limit = KV_MAX_SCAN;
    rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return from_mdb(rc, "scan: begin");
    rc = mdb_cursor_open(txn, kv->dbi, &cur);
    if (rc) {
        rc = from_mdb(rc, "scan: cursor");
        goto out;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *kp = k.mv_data;
        struct dn_kv_entry *e;
        uint8_t *mem;
        size_t klen;

        if (k.mv_size < SHARD_BYTES || memcmp(kp, kb, SHARD_BYTES) != 0)
            break; /* left the shard */
        klen = k.mv_size - SHARD_BYTES;
        if (klen && kp[SHARD_BYTES] == KV_RESERVED)
            break; /* the store's own keys, after every record's */
        if (end_len && key_cmp(kp + SHARD_BYTES, klen, end, end_len) >= 0)
            break;
        if (v.mv_size < VERSION_BYTES) {
            log_error(TAG, "record without version in shard %u", shard);
            rc = CAIRN_EIO;
            goto out;
        }
        if (out->count == limit ||
            (out->count > 0 && bytes + klen + v.mv_size - VERSION_BYTES > KV_MAX_SCAN_BYTES)) {
            out->more = 1;
            break;
        }
        if (out->count == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            struct dn_kv_entry *n = realloc(out->entries, ncap * sizeof(*n));

            if (!n) {
                rc = CAIRN_ENOMEM;
                goto out;
            }
            out->entries = n;
            cap = ncap;
        }
        /* One allocation per entry holds its key and value (owned by the scan result). */
        mem = malloc(klen + v.mv_size - VERSION_BYTES + 1);
        if (!mem) {
            rc = CAIRN_ENOMEM;
            goto out;
        }
        e = &out->entries[out->count++];
        memcpy(mem, kp + SHARD_BYTES, klen);
        memcpy(mem + klen, (uint8_t *)v.mv_data + VERSION_BYTES, v.mv_size - VERSION_BYTES);
        e->key = mem;
        e->key_len = klen;
        e->val = mem + klen;
        e->val_len = v.mv_size - VERSION_BYTES;
        e->version = get_be64(v.mv_data);
        bytes += klen + e->val_len;
    }
    /* Here rc is the last mdb_cursor_get() result; LMDB's own codes are negative too, so map
     * every non-success through from_mdb() rather than passing it on. */
    rc = (rc == MDB_NOTFOUND || rc == 0) ? 0 : from_mdb(rc, "scan");
out:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc)
        dn_kv_scan_free(out);
    return rc;
}

void dn_kv_scan_free(struct dn_kv_scan *scan)
{
    if (!scan)
        return;
    for (size_t i = 0; i < scan->count; i++)
        free((void *)scan->entries[i].key);
    free(scan->entries);
    memset(scan, 0, sizeof(*scan));
}

/* ---- the round ---- */

static int round_txn(struct dn_kv *kv, MDB_txn **out)
{
    if (!kv->round) {
        int rc = mdb_txn_begin(kv->env, NULL, 0, &kv->round);
        if (rc) {
            kv->round = NULL;
            return from_mdb(rc, "round: begin");
        }
    }
    *out = kv->round;
    return 0;
}

bool dn_kv_round_open(const struct dn_kv *kv)
{
    return kv->round != NULL;
}

/* Keep a quarter of the map free: growing needs no transaction open, which is the case
 * right after a commit, and a round that found the map full could only fail as a whole. */
static void maybe_grow(struct dn_kv *kv)
{
    MDB_envinfo info;
    MDB_stat st;

    if (mdb_env_info(kv->env, &info) || mdb_env_stat(kv->env, &st))
        return;
    uint64_t used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    if (used * 4 < kv->map_size * 3)
        return;
    uint64_t size = kv->map_size * 2;
    if (mdb_env_set_mapsize(kv->env, size) == 0) {
        log_info(TAG, "metadata map grown to %llu MiB", (unsigned long long)(size >> 20));
        kv->map_size = size;
    }
}

int dn_kv_round_commit(struct dn_kv *kv)
{
    int rc;

    if (!kv->round)
        return 0;
    rc = mdb_txn_commit(kv->round);
    kv->round = NULL;
    if (rc)
        return from_mdb(rc, "round: commit");
    maybe_grow(kv);
    return 0;
}

/* Loading a group sees the open round too (a group bootstrapped in it loads its first
 * entry): the round's transaction if there is one, else a read-only one. */
static int load_txn(struct dn_kv *kv, MDB_txn **txn)
{
    int rc;

    if (kv->round) {
        *txn = kv->round;
        return 0;
    }
    rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, txn);
    return rc ? from_mdb(rc, "load: begin") : 0;
}

static void log_key(uint8_t *k, uint32_t group, uint64_t index)
{
    put_be32(k, group);
    put_be64(k + 4, index);
}

int dn_kv_log_put(struct dn_kv *kv, uint32_t group, uint64_t index, uint64_t term, unsigned type,
                  const void *buf, size_t len)
{
    uint8_t kb[12];
    MDB_val k = {sizeof kb, kb}, v;
    MDB_txn *txn = NULL;
    int rc = round_txn(kv, &txn);

    if (rc)
        return rc;
    log_key(kb, group, index);
    v.mv_size = 9 + len;
    rc = mdb_put(txn, kv->log, &k, &v, MDB_RESERVE);
    if (rc)
        return from_mdb(rc, "log put");
    put_be64(v.mv_data, term);
    ((uint8_t *)v.mv_data)[8] = (uint8_t)type;
    if (len)
        memcpy((uint8_t *)v.mv_data + 9, buf, len);
    return 0;
}

int dn_kv_log_drop(struct dn_kv *kv, uint32_t group, uint64_t from, uint64_t to)
{
    uint8_t kb[12];
    MDB_val k = {sizeof kb, kb}, v;
    MDB_cursor *cur;
    MDB_txn *txn = NULL;
    int rc = round_txn(kv, &txn);

    if (rc)
        return rc;
    if (from >= to)
        return 0;
    rc = mdb_cursor_open(txn, kv->log, &cur);
    if (rc)
        return from_mdb(rc, "log drop: cursor");
    log_key(kb, group, from);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *kp = k.mv_data;
        if (k.mv_size != 12 || get_be64(kp + 4) >= to || memcmp(kp, kb, 4) != 0)
            break;
        rc = mdb_cursor_del(cur, 0);
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    return (rc == 0 || rc == MDB_NOTFOUND) ? 0 : from_mdb(rc, "log drop");
}

int dn_kv_log_load(struct dn_kv *kv, uint32_t group, dn_kv_log_cb cb, void *arg)
{
    uint8_t kb[12];
    MDB_val k = {sizeof kb, kb}, v;
    MDB_cursor *cur = NULL;
    MDB_txn *txn;
    int rc;

    rc = load_txn(kv, &txn);
    if (rc)
        return rc;
    rc = mdb_cursor_open(txn, kv->log, &cur);
    if (rc) {
        rc = from_mdb(rc, "log load: cursor");
        goto out;
    }
    log_key(kb, group, 0);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *kp = k.mv_data, *vp = v.mv_data;
        if (k.mv_size != 12 || memcmp(kp, kb, 4) != 0)
            break;
        if (v.mv_size < 9) {
            log_error(TAG, "group %u: log entry without header", group);
            rc = CAIRN_EIO;
            goto out;
        }
        rc = cb(arg, get_be64(kp + 4), get_be64(vp), vp[8], vp + 9, v.mv_size - 9);
        if (rc)
            goto out;
    }
    rc = (rc == 0 || rc == MDB_NOTFOUND) ? 0 : from_mdb(rc, "log load");
out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn != kv->round)
        mdb_txn_abort(txn);
    return rc;
}

static void grp_key(uint8_t *k, uint32_t group, uint8_t tag)
{
    put_be32(k, group);
    k[4] = tag;
}

static int grp_put(struct dn_kv *kv, uint32_t group, uint8_t tag, const void *buf, size_t len)
{
    uint8_t kb[5];
    MDB_val k = {sizeof kb, kb}, v = {len, (void *)buf};
    MDB_txn *txn = NULL;
    int rc = round_txn(kv, &txn);

    if (rc)
        return rc;
    grp_key(kb, group, tag);
    rc = mdb_put(txn, kv->grp, &k, &v, 0);
    return rc ? from_mdb(rc, "group put") : 0;
}

static int grp_get(struct dn_kv *kv, uint32_t group, uint8_t tag, void **buf, size_t *len)
{
    uint8_t kb[5];
    MDB_val k = {sizeof kb, kb}, v;
    MDB_txn *txn;
    int rc;

    *buf = NULL;
    *len = 0;
    grp_key(kb, group, tag);
    rc = load_txn(kv, &txn);
    if (rc)
        return rc;
    rc = mdb_get(txn, kv->grp, &k, &v);
    if (rc == 0) {
        *buf = malloc(v.mv_size ? v.mv_size : 1);
        if (*buf) {
            memcpy(*buf, v.mv_data, v.mv_size);
            *len = v.mv_size;
        } else {
            rc = ENOMEM;
        }
    }
    if (txn != kv->round)
        mdb_txn_abort(txn);
    return rc ? from_mdb(rc, "group get") : 0;
}

int dn_kv_gmeta_put(struct dn_kv *kv, uint32_t group, const void *buf, size_t len)
{
    return grp_put(kv, group, 'M', buf, len);
}

int dn_kv_gmeta_get(struct dn_kv *kv, uint32_t group, void **buf, size_t *len)
{
    return grp_get(kv, group, 'M', buf, len);
}

int dn_kv_node_put(struct dn_kv *kv, const void *buf, size_t len)
{
    return grp_put(kv, UINT32_MAX, 'N', buf, len);
}

int dn_kv_node_get(struct dn_kv *kv, void **buf, size_t *len)
{
    return grp_get(kv, UINT32_MAX, 'N', buf, len);
}

int dn_kv_applied_get(struct dn_kv *kv, uint32_t group, uint64_t *applied)
{
    void *buf;
    size_t len;
    int rc = grp_get(kv, group, 'A', &buf, &len);

    *applied = 0;
    if (rc == CAIRN_ENOENT)
        return 0;
    if (rc)
        return rc;
    if (len == 8)
        *applied = get_be64(buf);
    free(buf);
    return len == 8 ? 0 : CAIRN_EIO;
}

static int applied_put(struct dn_kv *kv, uint32_t group, uint64_t index)
{
    uint8_t b[8];

    put_be64(b, index);
    return grp_put(kv, group, 'A', b, sizeof b);
}

/* ---- writer sessions ----
 *
 * One record per (shard, client) under the reserved key KV_RESERVED 'S' client(be64); its
 * version field holds the index of the session's last update, its value seq(be64),
 * status(be32, two's complement), result(be64), time_ms(be64). */
#define SESSION_KEY_LEN 10u
#define SESSION_VAL_LEN 28u

static void session_key(uint8_t *kb, uint32_t shard, uint64_t client, MDB_val *k)
{
    uint8_t key[SESSION_KEY_LEN];

    key[0] = KV_RESERVED;
    key[1] = 'S';
    put_be64(key + 2, client);
    make_key(kb, shard, key, sizeof key, k);
}

/* Is op a copy of an update its session already applied?  Fills op's result if so. */
static int session_check(struct dn_kv *kv, MDB_txn *txn, struct dn_kv_op *op)
{
    uint8_t kb[SHARD_BYTES + SESSION_KEY_LEN];
    const uint8_t *p;
    MDB_val k, v;
    uint64_t seq;
    int rc;

    session_key(kb, op->shard, op->client, &k);
    rc = mdb_get(txn, kv->dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return from_mdb(rc, "session get");
    if (v.mv_size != VERSION_BYTES + SESSION_VAL_LEN) {
        log_error(TAG, "session record of %u bytes in shard %u", (unsigned)v.mv_size,
                  op->shard);
        return CAIRN_EIO;
    }
    p = (const uint8_t *)v.mv_data + VERSION_BYTES;
    seq = get_be64(p);
    if (op->seq > seq)
        return 0;
    op->dup = true;
    if (op->seq < seq) {
        op->status = CAIRN_ECANCELED;
        op->result = 0;
        return 0;
    }
    op->status = (int32_t)(((uint32_t)p[8] << 24) | ((uint32_t)p[9] << 16) |
                           ((uint32_t)p[10] << 8) | p[11]);
    op->result = get_be64(p + 12);
    if (op->status == CAIRN_ECONFLICT)
        op->cur_version = op->result;
    return 0;
}

static int session_put(struct dn_kv *kv, MDB_txn *txn, const struct dn_kv_op *op,
                       uint64_t index)
{
    uint8_t kb[SHARD_BYTES + SESSION_KEY_LEN], *p;
    uint32_t st = (uint32_t)op->status;
    MDB_val k, v = {.mv_size = VERSION_BYTES + SESSION_VAL_LEN};
    int rc;

    session_key(kb, op->shard, op->client, &k);
    rc = mdb_put(txn, kv->dbi, &k, &v, MDB_RESERVE);
    if (rc)
        return from_mdb(rc, "session put");
    p = v.mv_data;
    put_be64(p, index);
    put_be64(p + 8, op->seq);
    p[16] = (uint8_t)(st >> 24);
    p[17] = (uint8_t)(st >> 16);
    p[18] = (uint8_t)(st >> 8);
    p[19] = (uint8_t)st;
    put_be64(p + 20, op->result);
    put_be64(p + 28, op->time_ms);
    return 0;
}

/* Forget the shard's sessions idle for KV_SESSION_TTL_MS by the clock of the entry being
 * applied (a retry comes within seconds; a session is one C-node thread's cluster view, and
 * views come and go with processes). */
static int session_sweep(struct dn_kv *kv, MDB_txn *txn, uint32_t shard, uint64_t now_ms)
{
    uint8_t kb[SHARD_BYTES + SESSION_KEY_LEN];
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if (now_ms < KV_SESSION_TTL_MS)
        return 0;
    session_key(kb, shard, 0, &k);
    rc = mdb_cursor_open(txn, kv->dbi, &cur);
    if (rc)
        return from_mdb(rc, "session sweep");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *kp = k.mv_data;

        if (k.mv_size != SHARD_BYTES + SESSION_KEY_LEN || memcmp(kp, kb, SHARD_BYTES + 2) != 0)
            break;
        if (v.mv_size == VERSION_BYTES + SESSION_VAL_LEN &&
            get_be64((const uint8_t *)v.mv_data + VERSION_BYTES + 20) + KV_SESSION_TTL_MS >=
                now_ms)
            continue;
        rc = mdb_cursor_del(cur, 0);
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : from_mdb(rc, "session sweep");
}

/* All of ops or none: every condition is checked first, against the state before any of them
 * (the keys are distinct, so no op's condition depends on another's write). */
static int txn_apply(struct dn_kv *kv, MDB_txn *txn, uint32_t group, uint64_t index,
                     struct dn_kv_op *head, struct dn_kv_op *ops, size_t n)
{
    uint8_t kb[SHARD_BYTES + KV_MAX_KEY];
    MDB_val k;
    int rc;

    head->status = 0;
    head->result = 0;
    if (n == 0 || n > KV_TXN_MAX) {
        head->status = CAIRN_EINVAL;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        ops[i].shard = group;
        ops[i].new_version = index;
        for (size_t j = 0; j < i; j++)
            if (ops[j].key_len == ops[i].key_len &&
                memcmp(ops[j].key, ops[i].key, ops[i].key_len) == 0) {
                head->status = CAIRN_EINVAL;
                return 0;
            }
        if ((rc = op_check(kv, txn, &ops[i], kb, &k)) != 0)
            return rc;
        if (ops[i].status) {
            head->status = ops[i].status;
            head->result = ops[i].status == CAIRN_ECONFLICT ? ops[i].cur_version : 0;
            return 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = op_check(kv, txn, &ops[i], kb, &k)) != 0)
            return rc;
        if (ops[i].status)
            return CAIRN_EIO; /* checked a moment ago: the store itself is wrong */
        if ((rc = op_write(kv, txn, &ops[i], &k)) != 0)
            return rc;
    }
    head->result = index;
    return 0;
}

/* One update at index in the round, under head's session: ops[0..n) all or nothing if txn,
 * else head alone (ops == head, n == 1). */
static int round_update(struct dn_kv *kv, uint32_t group, uint64_t index, struct dn_kv_op *head,
                        struct dn_kv_op *ops, size_t n, bool txn)
{
    MDB_txn *t = NULL;
    int rc = round_txn(kv, &t);

    if (rc)
        return rc;
    head->shard = group;
    head->new_version = index;
    head->dup = false;
    head->result = 0;
    if (head->client && (rc = session_check(kv, t, head)) != 0)
        return rc;
    if (!head->dup) {
        if (txn) {
            rc = txn_apply(kv, t, group, index, head, ops, n);
        } else {
            rc = apply_in_txn(kv, t, head);
            head->result = head->status == CAIRN_ECONFLICT                  ? head->cur_version
                           : head->status == 0 && head->kind == DN_KV_PUT ? index
                                                                          : 0;
        }
        if (rc)
            return rc;
        if (head->client && (rc = session_put(kv, t, head, index)) != 0)
            return rc;
    }
    if (head->time_ms && index % KV_SESSION_SWEEP == 0 &&
        (rc = session_sweep(kv, t, group, head->time_ms)) != 0)
        return rc;
    return applied_put(kv, group, index);
}

int dn_kv_round_apply(struct dn_kv *kv, uint32_t group, uint64_t index, struct dn_kv_op *op)
{
    return round_update(kv, group, index, op, op, 1, false);
}

int dn_kv_round_apply_txn(struct dn_kv *kv, uint32_t group, uint64_t index, struct dn_kv_op *head,
                          struct dn_kv_op *ops, size_t n)
{
    return round_update(kv, group, index, head, ops, n, true);
}

int dn_kv_round_applied(struct dn_kv *kv, uint32_t group, uint64_t index)
{
    return applied_put(kv, group, index);
}

/* Dump format: per record u16 key length, key, u64 version, u32 value length, value (all
 * big-endian). */
int dn_kv_shard_dump(struct dn_kv *kv, uint32_t shard, size_t max, uint64_t *applied,
                     void **out, size_t *out_len)
{
    uint8_t kb[SHARD_BYTES], ab[5];
    MDB_val k = {sizeof kb, kb}, v, ak = {sizeof ab, ab};
    MDB_cursor *cur = NULL;
    MDB_txn *txn;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;

    *out = NULL;
    *out_len = 0;
    *applied = 0;
    rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return from_mdb(rc, "dump: begin");
    grp_key(ab, shard, 'A');
    if (mdb_get(txn, kv->grp, &ak, &v) == 0 && v.mv_size == 8)
        *applied = get_be64(v.mv_data);
    rc = mdb_cursor_open(txn, kv->dbi, &cur);
    if (rc) {
        rc = from_mdb(rc, "dump: cursor");
        goto out;
    }
    put_be32(kb, shard);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *kp = k.mv_data;
        if (k.mv_size < SHARD_BYTES || memcmp(kp, kb, SHARD_BYTES) != 0)
            break;
        if (v.mv_size < VERSION_BYTES) {
            rc = CAIRN_EIO;
            goto out;
        }
        size_t klen = k.mv_size - SHARD_BYTES, vlen = v.mv_size - VERSION_BYTES;
        size_t need = 2 + klen + 8 + 4 + vlen;
        if (len + need > max) {
            rc = CAIRN_ETOOBIG;
            goto out;
        }
        if (len + need > cap) {
            size_t ncap = CAIRN_MAX(cap * 2, len + need + 4096);
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                rc = CAIRN_ENOMEM;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        uint8_t *p = buf + len;
        p[0] = (uint8_t)(klen >> 8);
        p[1] = (uint8_t)klen;
        memcpy(p + 2, kp + SHARD_BYTES, klen);
        memcpy(p + 2 + klen, v.mv_data, 8); /* the version, big-endian as stored */
        put_be32(p + 2 + klen + 8, (uint32_t)vlen);
        memcpy(p + 2 + klen + 12, (uint8_t *)v.mv_data + VERSION_BYTES, vlen);
        len += need;
    }
    rc = (rc == 0 || rc == MDB_NOTFOUND) ? 0 : from_mdb(rc, "dump");
out:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int dn_kv_round_shard_install(struct dn_kv *kv, uint32_t shard, uint64_t applied,
                              const void *data, size_t len)
{
    uint8_t kb[SHARD_BYTES + KV_MAX_KEY];
    MDB_val k, v;
    MDB_cursor *cur;
    MDB_txn *txn = NULL;
    const uint8_t *p = data, *end = p + len;
    int rc = round_txn(kv, &txn);

    if (rc)
        return rc;
    /* Check the whole dump before touching anything. */
    for (const uint8_t *q = p; q < end;) {
        size_t klen, vlen;
        if (end - q < 2)
            return CAIRN_EPROTO;
        klen = ((size_t)q[0] << 8) | q[1];
        if (klen == 0 || klen > KV_MAX_KEY || (size_t)(end - q) < 2 + klen + 12)
            return CAIRN_EPROTO;
        vlen = ((size_t)q[2 + klen + 8] << 24) | ((size_t)q[2 + klen + 9] << 16) |
               ((size_t)q[2 + klen + 10] << 8) | q[2 + klen + 11];
        if (vlen > KV_MAX_VALUE || (size_t)(end - q) < 2 + klen + 12 + vlen)
            return CAIRN_EPROTO;
        q += 2 + klen + 12 + vlen;
    }
    /* Forget the shard's records, then write the dump's. */
    rc = mdb_cursor_open(txn, kv->dbi, &cur);
    if (rc)
        return from_mdb(rc, "install: cursor");
    put_be32(kb, shard);
    k.mv_data = kb;
    k.mv_size = SHARD_BYTES;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < SHARD_BYTES || memcmp(k.mv_data, kb, SHARD_BYTES) != 0)
            break;
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return from_mdb(rc, "install: clear");
    while (p < end) {
        size_t klen = ((size_t)p[0] << 8) | p[1];
        const uint8_t *ver = p + 2 + klen;
        size_t vlen = ((size_t)ver[8] << 24) | ((size_t)ver[9] << 16) | ((size_t)ver[10] << 8) |
                      ver[11];
        make_key(kb, shard, p + 2, klen, &k);
        v.mv_size = VERSION_BYTES + vlen;
        rc = mdb_put(txn, kv->dbi, &k, &v, MDB_RESERVE);
        if (rc)
            return from_mdb(rc, "install: put");
        memcpy(v.mv_data, ver, 8);
        memcpy((uint8_t *)v.mv_data + VERSION_BYTES, ver + 12, vlen);
        p = ver + 12 + vlen;
    }
    return applied_put(kv, shard, applied);
}
