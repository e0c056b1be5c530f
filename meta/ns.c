/*
 * ns.c - namespace records: key layout, typed get/put, and the few multi-record steps
 * (directory creation) that must be safe against C-nodes racing (see ns.h).
 */
#include "meta/ns.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/rand.h>

#include "common/cairn.h"
#include "client/placement.h"
#include "common/log.h"

#define TAG "ns"

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Random numbers for inode numbers and ids: a per-thread xoshiro256** generator seeded from
 * the kernel once.  Drawing an inode number that lands in a given shard takes about as many
 * draws as there are shards, one system call each if every draw asked the kernel. */
static __thread uint64_t rng[4];
static __thread bool rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rand64(void)
{
    uint64_t r, t;

    if (!rng_seeded) {
        if (getrandom(rng, sizeof(rng), 0) != (ssize_t)sizeof(rng)) {
            uint64_t x = cairn_now_ns() ^ ((uint64_t)rand() << 32) ^ (uint64_t)rand();

            for (int i = 0; i < 4; i++) /* splitmix64 */
                rng[i] = cl_mix64(x += 0x9e3779b97f4a7c15ull);
        }
        if (!(rng[0] | rng[1] | rng[2] | rng[3]))
            rng[0] = 1; /* the one state the generator never leaves */
        rng_seeded = true;
    }
    r = rotl(rng[1] * 5, 7) * 9;
    t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

uint64_t meta_new_ino(void)
{
    uint64_t v;

    do {
        v = rand64() & INT64_MAX & ~META_INO_SLICE_MASK;
    } while (v <= META_ROOT_INO);
    return v;
}

void meta_random_hex(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = rand64(), b = rand64();

    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[32] = 0;
}

bool meta_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > META_NAME_MAX)
        return false;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    return !memchr(name, '/', len) && !memchr(name, 0, len);
}

/* ---- typed records ---- */

static int msg_get(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                   uint64_t *version)
{
    struct meta_rec r;
    int rc = meta_rec_get(cl, shard, key, klen, &r);

    if (version)
        *version = r.version;
    if (rc)
        return rc;
    *out = protobuf_c_message_unpack(desc, NULL, r.len, r.val);
    free(r.val);
    if (!*out) {
        log_error(TAG, "undecodable %s record", desc->short_name);
        return CAIRN_EPROTO;
    }
    return 0;
}

static int msg_put(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                   const ProtobufCMessage *msg, uint64_t expect, uint64_t *version)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf;
    int rc;

    if (len > META_REC_MAX_VAL)
        return CAIRN_ETOOBIG;
    buf = malloc(len ? len : 1);
    if (!buf)
        return CAIRN_ENOMEM;
    protobuf_c_message_pack(msg, buf);
    rc = meta_rec_put(cl, shard, key, klen, expect, buf, (uint32_t)len, version);
    free(buf);
    return rc;
}

/* ---- inodes ----
 *
 * An inode record is INODE_HDR bytes of times, then the encoded Inode: mtime_ns and ctime_ns
 * as big-endian lanes that a stamp (meta/rec.h) can raise without reading the record, so
 * every change of a directory's entries stamps its times in the same update, with no
 * compare-and-set on the one directory record that all its creators share.  The header wins
 * over the Inode's own fields.  A lane is the time with its sign bit flipped, so the lanes'
 * unsigned order is the times' order, negative ones included. */

#define INODE_HDR 16u

static size_t inode_key(uint8_t *k, uint64_t ino)
{
    k[0] = 'I';
    be64(k + 1, ino);
    return 9;
}

static uint64_t time_lane(int64_t t)
{
    return (uint64_t)t ^ (1ull << 63);
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* The record for in, malloc'd; *len gets its size. */
static uint8_t *inode_pack(const Cairn__Inode *in, size_t *len)
{
    size_t n = cairn__inode__get_packed_size(in);
    uint8_t *b = malloc(INODE_HDR + n);

    if (!b)
        return NULL;
    be64(b, time_lane(in->mtime_ns));
    be64(b + 8, time_lane(in->ctime_ns));
    cairn__inode__pack(in, b + INODE_HDR);
    *len = INODE_HDR + n;
    return b;
}

static Cairn__Inode *inode_unpack(const uint8_t *b, size_t len)
{
    Cairn__Inode *in;

    if (len < INODE_HDR)
        return NULL;
    in = cairn__inode__unpack(NULL, len - INODE_HDR, b + INODE_HDR);
    if (in) {
        in->mtime_ns = (int64_t)(get_be64(b) ^ (1ull << 63));
        in->ctime_ns = (int64_t)(get_be64(b + 8) ^ (1ull << 63));
    }
    return in;
}

/* ---- directory slices (ns.h) ---- */

#define SLICE_KEY_LEN 11u

unsigned meta_dir_slices(uint64_t dir)
{
    unsigned b = (unsigned)((dir & META_INO_SLICE_MASK) >> META_INO_SLICE_SHIFT);

    return 1u << (b > META_SLICE_BITS_MAX ? META_SLICE_BITS_MAX : b);
}

unsigned meta_slice_of(uint64_t dir, const char *name, size_t len)
{
    unsigned n = meta_dir_slices(dir);

    return n > 1 ? meta_shard_of(name, len) % n : 0;
}

/* The shard key of slice s of dir: slice 0 is the directory's own shard (its inode's). */
static uint32_t slice_shard(uint64_t dir, unsigned s)
{
    return meta_shard_of_u64(s ? dir ^ ((uint64_t)s * 0x9e3779b97f4a7c15ull) : dir);
}

/* The shard key of the entry name (either form) of dir. */
static uint32_t entry_shard(uint64_t dir, const char *name, size_t len)
{
    return slice_shard(dir, meta_slice_of(dir, name, len));
}

/* Slice s (> 0) of dir's times: 'T' dir slice, INODE_HDR bytes of lanes, in the slice's shard. */
static size_t slice_key(uint8_t *k, uint64_t dir, unsigned s)
{
    k[0] = 'T';
    be64(k + 1, dir);
    k[9] = (uint8_t)(s >> 8);
    k[10] = (uint8_t)s;
    return SLICE_KEY_LEN;
}

/* Raise the times of outs[i] (sliced directories inos[i], or NULL: skipped) to the newest any
 * of their slices holds, with one batch of reads.  A slice record that cannot be read leaves
 * the times as they are (the caller reports the inode's; they only run behind). */
static void slices_times(struct cl_cluster *cl, unsigned n, const uint64_t *inos,
                         Cairn__Inode **outs)
{
    unsigned total = 0, at = 0;
    struct meta_get *g;
    uint8_t (*keys)[SLICE_KEY_LEN];

    for (unsigned i = 0; i < n; i++)
        if (outs[i])
            total += meta_dir_slices(inos[i]) - 1;
    if (!total)
        return;
    g = calloc(total, sizeof(*g));
    keys = calloc(total, sizeof(*keys));
    if (!g || !keys)
        goto out;
    for (unsigned i = 0; i < n; i++)
        for (unsigned s = 1; outs[i] && s < meta_dir_slices(inos[i]); s++, at++)
            g[at] = (struct meta_get){.shard = slice_shard(inos[i], s), .key = keys[at],
                                      .klen = slice_key(keys[at], inos[i], s)};
    meta_rec_get_many(cl, g, total);
    at = 0;
    for (unsigned i = 0; i < n; i++)
        for (unsigned s = 1; outs[i] && s < meta_dir_slices(inos[i]); s++, at++) {
            if (g[at].rc == 0 && g[at].rec.len >= INODE_HDR) {
                int64_t m = (int64_t)(get_be64(g[at].rec.val) ^ (1ull << 63));
                int64_t c = (int64_t)(get_be64(g[at].rec.val + 8) ^ (1ull << 63));

                if (m > outs[i]->mtime_ns)
                    outs[i]->mtime_ns = m;
                if (c > outs[i]->ctime_ns)
                    outs[i]->ctime_ns = c;
            }
            free(g[at].rec.val);
        }
out:
    free(g);
    free(keys);
}

/* Make the slice records of a new directory dir (before its entry exists, so nobody adds to
 * a slice without one), times t.  An earlier try may have made some already. */
static int slices_make(struct cl_cluster *cl, uint64_t dir, int64_t t)
{
    uint8_t k[SLICE_KEY_LEN], lane[INODE_HDR];

    be64(lane, time_lane(t));
    be64(lane + 8, time_lane(t));
    for (unsigned s = 1; s < meta_dir_slices(dir); s++) {
        int rc = meta_rec_put(cl, slice_shard(dir, s), k, slice_key(k, dir, s), 0, lane,
                              INODE_HDR, NULL);

        if (rc && rc != CAIRN_ECONFLICT)
            return rc;
    }
    return 0;
}

/* Forget the slice records of a directory whose inode is gone (best effort: a record left
 * behind is a few bytes nobody reads). */
static void slices_forget(struct cl_cluster *cl, uint64_t dir)
{
    uint8_t k[SLICE_KEY_LEN];

    for (unsigned s = 1; s < meta_dir_slices(dir); s++)
        (void)meta_rec_del(cl, slice_shard(dir, s), k, slice_key(k, dir, s), META_ANY);
}

int meta_inode_get(struct cl_cluster *cl, uint64_t ino, Cairn__Inode **out, uint64_t *version)
{
    uint8_t k[9];
    size_t kl = inode_key(k, ino);
    struct meta_rec r;
    int rc = meta_rec_get(cl, meta_shard_of_u64(ino), k, kl, &r);

    if (version)
        *version = r.version;
    if (rc)
        return rc;
    *out = inode_unpack(r.val, r.len);
    free(r.val);
    if (!*out) {
        log_error(TAG, "undecodable Inode record");
        return CAIRN_EPROTO;
    }
    if (meta_dir_slices(ino) > 1)
        slices_times(cl, 1, &ino, out);
    return 0;
}

void meta_inode_get_many(struct cl_cluster *cl, unsigned n, const uint64_t *inos,
                         Cairn__Inode **outs, int *rcs)
{
    struct meta_read *r = calloc(n ? n : 1, sizeof(*r));

    if (!r) {
        /* No memory for the batch: one at a time. */
        for (unsigned i = 0; i < n; i++)
            rcs[i] = meta_inode_get(cl, inos[i], &outs[i], NULL);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        r[i] = (struct meta_read){.kind = META_READ_INODE, .id = inos[i]};
    meta_read_many(cl, r, n);
    for (unsigned i = 0; i < n; i++) {
        outs[i] = r[i].inode;
        rcs[i] = r[i].rc;
    }
    free(r);
}

int meta_inode_put(struct cl_cluster *cl, uint64_t ino, const Cairn__Inode *in, uint64_t expect,
                   uint64_t *version)
{
    uint8_t k[9];
    size_t kl = inode_key(k, ino), len;
    uint8_t *b = inode_pack(in, &len);
    int rc;

    if (!b)
        return CAIRN_ENOMEM;
    rc = len > META_REC_MAX_VAL ? CAIRN_ETOOBIG
                                : meta_rec_put(cl, meta_shard_of_u64(ino), k, kl, expect, b,
                                               (uint32_t)len, version);
    free(b);
    return rc;
}

int meta_inode_scan(struct cl_cluster *cl, uint32_t shard, uint64_t from, unsigned limit,
                    struct meta_scan *out)
{
    uint8_t start[9], end[1] = {'I' + 1};

    /* A shard key below the shard count is that shard. */
    return meta_rec_scan(cl, shard, start, inode_key(start, from), end, sizeof(end), limit, out);
}

Cairn__Inode *meta_inode_of_entry(const struct meta_entry *e, uint64_t *ino)
{
    if (e->klen != 9 || e->key[0] != 'I')
        return NULL;
    *ino = get_be64(e->key + 1);
    return inode_unpack(e->val, e->len);
}

/* The stamp op raising the times of slice s of dir to t (key in key[SLICE_KEY_LEN], lanes in
 * lane[16]): slice 0's times are the inode's own. */
static struct meta_op dir_stamp_op(uint8_t *key, uint8_t *lane, uint64_t dir, unsigned s,
                                   int64_t t)
{
    be64(lane, time_lane(t));
    be64(lane + 8, time_lane(t));
    return (struct meta_op){.kind = META_OP_STAMP, .key = key,
                            .klen = s ? slice_key(key, dir, s) : inode_key(key, dir),
                            .expect = META_ANY, .val = lane, .len = INODE_HDR};
}

int meta_dir_stamp(struct cl_cluster *cl, uint64_t dir, int64_t t)
{
    uint8_t k[SLICE_KEY_LEN], lane[INODE_HDR];
    struct meta_op op = dir_stamp_op(k, lane, dir, 0, t);

    return meta_rec_txn(cl, meta_shard_of_u64(dir), &op, 1, NULL);
}

int meta_inode_del(struct cl_cluster *cl, uint64_t ino, uint64_t expect)
{
    uint8_t k[9];
    size_t kl = inode_key(k, ino);
    int rc = meta_rec_del(cl, meta_shard_of_u64(ino), k, kl, expect);

    if (rc == 0)
        slices_forget(cl, ino);
    return rc;
}

int meta_inode_create(struct cl_cluster *cl, const Cairn__Inode *in, uint64_t *ino)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        uint64_t n = meta_new_ino();
        int rc = meta_inode_put(cl, n, in, 0, NULL);

        if (rc == 0)
            *ino = n;
        if (rc != CAIRN_ECONFLICT)
            return rc;
    }
    return CAIRN_ECONFLICT;
}

/* ---- directory entries ---- */

static size_t dirent_key(uint8_t *k, uint64_t dir, const char *name, size_t len, bool is_dir)
{
    k[0] = 'D';
    be64(k + 1, dir);
    memcpy(k + 9, name, len);
    if (is_dir)
        k[9 + len++] = '/';
    return 9 + len;
}

/* The times of the sliced directories among a batch's inodes (one more batch, if any). */
static void sliced_inodes(struct cl_cluster *cl, struct meta_read *r, unsigned n)
{
    uint64_t *inos;
    Cairn__Inode **outs;
    unsigned m = 0;

    for (unsigned i = 0; i < n; i++)
        if (r[i].inode && meta_dir_slices(r[i].id) > 1)
            m++;
    if (!m)
        return;
    inos = calloc(m, sizeof(*inos));
    outs = calloc(m, sizeof(*outs));
    if (inos && outs) {
        m = 0;
        for (unsigned i = 0; i < n; i++)
            if (r[i].inode && meta_dir_slices(r[i].id) > 1) {
                inos[m] = r[i].id;
                outs[m++] = r[i].inode;
            }
        slices_times(cl, m, inos, outs);
    }
    free(inos);
    free(outs);
}

void meta_read_many(struct cl_cluster *cl, struct meta_read *r, unsigned n)
{
    struct meta_get *g = calloc(n ? n : 1, sizeof(*g));
    uint8_t (*keys)[META_DIRENT_KEY_MAX] = calloc(n ? n : 1, sizeof(*keys));
    unsigned ng = 0;
    unsigned *slot = calloc(n ? n : 1, sizeof(*slot)); /* r[i] is read by g[slot[i]] */

    for (unsigned i = 0; i < n; i++) {
        r[i].rc = 0;
        r[i].version = 0;
        r[i].inode = NULL;
        r[i].dirent = NULL;
    }
    if (!g || !keys || !slot) {
        for (unsigned i = 0; i < n; i++)
            r[i].rc = CAIRN_ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        size_t kl;

        if (r[i].kind == META_READ_DIRENT) {
            if (!meta_name_valid(r[i].name, r[i].len)) {
                r[i].rc = CAIRN_EINVAL;
                continue;
            }
            kl = dirent_key(keys[ng], r[i].id, r[i].name, r[i].len, r[i].dir_form);
        } else {
            kl = inode_key(keys[ng], r[i].id);
        }
        g[ng] = (struct meta_get){.shard = r[i].kind == META_READ_DIRENT
                                               ? entry_shard(r[i].id, r[i].name, r[i].len)
                                               : meta_shard_of_u64(r[i].id),
                                  .key = keys[ng], .klen = kl};
        slot[i] = ng++;
    }
    meta_rec_get_many(cl, g, ng);
    for (unsigned i = 0; i < n; i++) {
        struct meta_get *x;

        if (r[i].rc)
            continue;
        x = &g[slot[i]];
        r[i].rc = x->rc;
        r[i].version = x->rec.version;
        if (x->rc)
            continue;
        if (r[i].kind == META_READ_DIRENT)
            r[i].dirent = cairn__dirent__unpack(NULL, x->rec.len, x->rec.val);
        else
            r[i].inode = inode_unpack(x->rec.val, x->rec.len);
        free(x->rec.val);
        if (!r[i].dirent && !r[i].inode) {
            log_error(TAG, "undecodable %s record",
                      r[i].kind == META_READ_DIRENT ? "Dirent" : "Inode");
            r[i].rc = CAIRN_EPROTO;
        }
    }
    sliced_inodes(cl, r, n);
out:
    free(g);
    free(keys);
    free(slot);
}

int meta_dirent_get(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                    bool is_dir, Cairn__Dirent **out, uint64_t *version)
{
    uint8_t k[META_DIRENT_KEY_MAX];
    size_t kl;

    if (!meta_name_valid(name, len))
        return CAIRN_EINVAL;
    kl = dirent_key(k, dir, name, len, is_dir);
    return msg_get(cl, entry_shard(dir, name, len), k, kl, &cairn__dirent__descriptor,
                   (ProtobufCMessage **)out, version);
}

int meta_dirent_put(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                    const Cairn__Dirent *d, uint64_t expect, uint64_t *version)
{
    uint8_t k[META_DIRENT_KEY_MAX];
    size_t kl;

    if (!meta_name_valid(name, len))
        return CAIRN_EINVAL;
    kl = dirent_key(k, dir, name, len, d->type == CAIRN__FILE_TYPE__FT_DIR);
    return msg_put(cl, entry_shard(dir, name, len), k, kl, &d->base, expect, version);
}

int meta_dirent_del(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                    bool is_dir, uint64_t expect)
{
    uint8_t k[META_DIRENT_KEY_MAX];
    size_t kl;

    if (!meta_name_valid(name, len))
        return CAIRN_EINVAL;
    kl = dirent_key(k, dir, name, len, is_dir);
    return meta_rec_del(cl, entry_shard(dir, name, len), k, kl, expect);
}

/* A fresh inode number whose record lands in the shard of shard key `want` (its bits of
 * META_INO_SLICE_MASK set to slice_bits), or 0 (none found: cannot happen with fewer than
 * tens of thousands of shards). */
static uint64_t ino_beside(const struct cl_cluster *cl, uint32_t want, unsigned slice_bits)
{
    want = meta_rec_shard(cl, want);
    for (unsigned i = 0; i < (1u << 20); i++) {
        uint64_t n = meta_new_ino() | ((uint64_t)slice_bits << META_INO_SLICE_SHIFT);

        if (meta_rec_shard(cl, meta_shard_of_u64(n)) == want)
            return n;
    }
    return 0;
}

/* log2 of the slice count a new directory asks for (rounded down to a power of two, at most
 * META_SLICES_MAX). */
static unsigned slice_bits(uint32_t slices)
{
    unsigned b = 0;

    while (b < META_SLICE_BITS_MAX && (2u << b) <= slices)
        b++;
    return b;
}

int meta_entry_create(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                      Cairn__Dirent *nd, uint64_t expect, const Cairn__Inode *in, int64_t stamp,
                      uint64_t *ino)
{
    uint8_t dk[META_DIRENT_KEY_MAX], ik[9], sk[SLICE_KEY_LEN], lane[INODE_HDR];
    struct meta_op ops[3];
    uint8_t *ib = NULL, *db = NULL;
    size_t il, dl;
    uint32_t shard;
    uint64_t n;
    int rc;

    if (!meta_name_valid(name, len) || !nd || !in || !cl_cluster_shards(cl))
        return CAIRN_EINVAL;
    shard = entry_shard(dir, name, len);
    n = ino_beside(cl, shard, in->type == CAIRN__FILE_TYPE__FT_DIR ? slice_bits(in->slices) : 0);
    if (!n)
        return CAIRN_EAGAIN;
    if (meta_dir_slices(n) > 1) {
        rc = slices_make(cl, n, in->mtime_ns);
        if (rc)
            return rc;
    }
    nd->ino = n; /* before the sizes: the entry's encoding holds it */
    dl = protobuf_c_message_get_packed_size(&nd->base);
    ib = inode_pack(in, &il);
    db = malloc(dl ? dl : 1);
    if (!ib || !db) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    if (il + dl > META_REC_MAX_VAL) {
        rc = CAIRN_ETOOBIG;
        goto out;
    }
    protobuf_c_message_pack(&nd->base, db);
    ops[0] = (struct meta_op){.key = dk,
                              .klen = dirent_key(dk, dir, name, len,
                                                 nd->type == CAIRN__FILE_TYPE__FT_DIR),
                              .expect = expect, .val = db, .len = (uint32_t)dl};
    ops[1] = (struct meta_op){.key = ik, .klen = inode_key(ik, n), .expect = 0, .val = ib,
                              .len = (uint32_t)il};
    if (stamp)
        ops[2] = dir_stamp_op(sk, lane, dir, meta_slice_of(dir, name, len), stamp);
    rc = meta_rec_txn(cl, shard, ops, stamp ? 3 : 2, NULL);
    if (!rc || rc == CAIRN_EUNREACH)
        *ino = n;
out:
    /* Only a definite failure frees the slice records: an update whose outcome is unknown may
     * have made the directory, and a sliced directory without them refuses creates. */
    if (rc && rc != CAIRN_EUNREACH && rc != CAIRN_ETIMEDOUT && rc != CAIRN_EUNKNOWN)
        slices_forget(cl, n); /* nothing names it */
    free(ib);
    free(db);
    return rc;
}

int meta_entry_remove(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len,
                      bool is_dir, uint64_t dver, uint64_t ino, uint64_t iver, int64_t stamp)
{
    uint8_t dk[META_DIRENT_KEY_MAX], ik[9], sk[SLICE_KEY_LEN], lane[INODE_HDR];
    struct meta_op ops[3];
    uint32_t shard;
    int rc;

    if (!meta_name_valid(name, len) || !cl_cluster_shards(cl))
        return CAIRN_EINVAL;
    shard = entry_shard(dir, name, len);
    if (meta_rec_shard(cl, meta_shard_of_u64(ino)) != meta_rec_shard(cl, shard))
        return CAIRN_ENOTSUP;
    ops[0] = (struct meta_op){.kind = META_OP_DEL, .key = dk,
                              .klen = dirent_key(dk, dir, name, len, is_dir), .expect = dver};
    ops[1] = (struct meta_op){.kind = META_OP_DEL, .key = ik, .klen = inode_key(ik, ino),
                              .expect = iver};
    if (stamp)
        ops[2] = dir_stamp_op(sk, lane, dir, meta_slice_of(dir, name, len), stamp);
    rc = meta_rec_txn(cl, shard, ops, stamp ? 3 : 2, NULL);
    if (rc == 0 && is_dir)
        slices_forget(cl, ino);
    return rc;
}

int meta_lookup(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len, uint64_t *ino,
                Cairn__FileType *type)
{
    struct meta_read r[2];
    int rc = CAIRN_ENOENT;

    /* Both forms in one round trip; the directory form wins if both exist. */
    for (int form = 0; form < 2; form++)
        r[form] = (struct meta_read){.kind = META_READ_DIRENT, .id = dir, .name = name,
                                     .len = len, .dir_form = form == 0};
    meta_read_many(cl, r, 2);
    for (int form = 0; form < 2; form++) {
        if (r[form].rc == CAIRN_ENOENT)
            continue;
        rc = r[form].rc;
        if (!rc) {
            *ino = r[form].dirent->ino;
            *type = r[form].dirent->type;
        }
        break;
    }
    for (int form = 0; form < 2; form++)
        if (r[form].dirent)
            cairn__dirent__free_unpacked(r[form].dirent, NULL);
    return rc;
}

int meta_mkdir(struct cl_cluster *cl, uint64_t dir, const char *name, size_t len, bool explicit_dir,
               uint32_t mode, uint32_t slices, uint64_t *ino)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        Cairn__Dirent *d = NULL, nd = CAIRN__DIRENT__INIT;
        Cairn__Inode in = CAIRN__INODE__INIT;
        uint64_t ver = 0, new_ino;
        int rc = meta_dirent_get(cl, dir, name, len, true, &d, &ver);

        if (rc == 0) {
            *ino = d->ino;
            cairn__dirent__free_unpacked(d, NULL);
            if (explicit_dir) {
                Cairn__Inode *cur;
                uint64_t iver;

                rc = meta_inode_get(cl, *ino, &cur, &iver);
                if (rc)
                    return rc;
                if (!cur->explicit_dir) {
                    cur->explicit_dir = true;
                    rc = meta_inode_put(cl, *ino, cur, iver, NULL);
                }
                cairn__inode__free_unpacked(cur, NULL);
                if (rc == CAIRN_ECONFLICT)
                    continue;
                return rc;
            }
            return 0;
        }
        if (rc != CAIRN_ENOENT)
            return rc;
        /* A file of the same name excludes the directory. */
        rc = meta_dirent_get(cl, dir, name, len, false, &d, NULL);
        if (rc == 0) {
            cairn__dirent__free_unpacked(d, NULL);
            return CAIRN_EEXIST;
        }
        if (rc != CAIRN_ENOENT)
            return rc;
        in.type = CAIRN__FILE_TYPE__FT_DIR;
        in.mode = mode ? mode : META_DEFAULT_DIR_MODE;
        in.nlink = 2;
        in.mtime_ns = in.ctime_ns = in.btime_ns = cairn_wall_ns();
        in.explicit_dir = explicit_dir;
        in.parent = dir;
        in.slices = slices;
        nd.type = CAIRN__FILE_TYPE__FT_DIR;
        rc = meta_entry_create(cl, dir, name, len, &nd, ver, &in, 0, &new_ino);
        if (rc == 0) {
            *ino = new_ino;
            return 0;
        }
        /* Someone else made it first: look again. */
        if (rc != CAIRN_ECONFLICT)
            return rc;
    }
    return CAIRN_ECONFLICT;
}

/* One page of dir's entries in one shard (shard key), as meta_dir_scan. */
static int shard_scan(struct cl_cluster *cl, uint32_t shard, uint64_t dir, const char *start,
                      size_t slen, unsigned limit, struct meta_scan *out)
{
    uint8_t from[META_DIRENT_KEY_MAX + 1], to[9];

    from[0] = 'D';
    be64(from + 1, dir);
    if (start && slen)
        memcpy(from + 9, start, slen);
    else
        slen = 0;
    /* The end: the next directory number's first key. */
    to[0] = 'D';
    be64(to + 1, dir + 1);
    slen += 9;
    for (;;) {
        int rc = meta_rec_scan(cl, shard, from, slen, to, 9, limit, out);

        /* Callers must see an empty page only at the end of the directory: should a page
         * come back empty with more to follow, go on from where it ended. */
        if (rc || out->n || !out->more || out->next_len > sizeof(from))
            return rc;
        memcpy(from, out->next, out->next_len);
        slen = out->next_len;
        meta_scan_fini(out);
    }
}

static int key_cmp(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);

    return c ? c : (al > bl) - (al < bl);
}

static int entry_cmp(const void *x, const void *y)
{
    const struct meta_entry *a = x, *b = y;

    return key_cmp(a->key, a->klen, b->key, b->klen);
}

/* Merge one page from each shard of a sliced directory into out: every key below the
 * smallest point where some shard's page stopped (all of them were fetched), in key order, at
 * most limit; the rest is freed and the page goes on from the first key not taken. */
static int merge_pages(struct meta_scan *pages, unsigned np, unsigned limit,
                       struct meta_scan *out)
{
    const uint8_t *bound = NULL;
    uint32_t blen = 0;
    unsigned total = 0, take = 0;
    struct meta_entry *all;

    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < np; i++) {
        total += pages[i].n;
        if (pages[i].more && (!bound || key_cmp(pages[i].next, pages[i].next_len, bound,
                                                blen) < 0)) {
            bound = pages[i].next;
            blen = pages[i].next_len;
        }
    }
    all = calloc(total ? total : 1, sizeof(*all));
    if (!all)
        return CAIRN_ENOMEM;
    total = 0;
    for (unsigned i = 0; i < np; i++) {
        memcpy(all + total, pages[i].entries, pages[i].n * sizeof(*all));
        total += pages[i].n;
        pages[i].n = 0; /* the entries are all's now */
    }
    qsort(all, total, sizeof(*all), entry_cmp);
    while (take < total && take < limit &&
           (!bound || key_cmp(all[take].key, all[take].klen, bound, blen) < 0))
        take++;
    if (take < total) {
        bound = all[take].key;
        blen = all[take].klen;
    }
    if (bound) {
        out->next = malloc(blen);
        if (!out->next) {
            for (unsigned i = 0; i < total; i++) {
                free(all[i].key);
                free(all[i].val);
            }
            free(all);
            return CAIRN_ENOMEM;
        }
        memcpy(out->next, bound, blen);
        out->next_len = blen;
        out->more = true;
    }
    for (unsigned i = take; i < total; i++) {
        free(all[i].key);
        free(all[i].val);
    }
    out->entries = all;
    out->n = take;
    return 0;
}

int meta_dir_scan(struct cl_cluster *cl, uint64_t dir, const char *start, size_t slen,
                  unsigned limit, struct meta_scan *out)
{
    unsigned n = meta_dir_slices(dir), np = 0, each;
    uint32_t shards[META_SLICES_MAX], seen[META_SLICES_MAX];
    struct meta_scan pages[META_SLICES_MAX];
    int rc = 0;

    if (slen > META_NAME_MAX + 2)
        return CAIRN_EINVAL;
    if (n == 1)
        return shard_scan(cl, slice_shard(dir, 0), dir, start, slen, limit, out);
    if (limit == 0 || limit > META_SCAN_MAX)
        limit = META_SCAN_MAX;
    /* Each distinct shard once: two slices may share one. */
    for (unsigned s = 0; s < n; s++) {
        uint32_t k = slice_shard(dir, s), c = meta_rec_shard(cl, k);
        bool dup = false;

        for (unsigned i = 0; i < np && !dup; i++)
            dup = seen[i] == c;
        if (!dup) {
            seen[np] = c;
            shards[np++] = k;
        }
    }
    /* Names spread evenly over slices: a little over a fair share from each fills most
     * pages, and the merge never skips a key whatever each shard returns. */
    each = limit / np + limit / (2 * np) + 8;
    if (each > limit)
        each = limit;
    memset(pages, 0, sizeof(pages));
    for (unsigned i = 0; i < np && !rc; i++)
        rc = shard_scan(cl, shards[i], dir, start, slen, each, &pages[i]);
    if (!rc)
        rc = merge_pages(pages, np, limit, out);
    for (unsigned i = 0; i < np; i++)
        meta_scan_fini(&pages[i]);
    return rc;
}

const char *meta_dirent_name(const uint8_t *key, uint32_t klen, uint32_t *len)
{
    *len = klen > 9 ? klen - 9 : 0;
    return (const char *)key + 9;
}

int meta_dir_empty(struct cl_cluster *cl, uint64_t dir, bool *empty)
{
    struct meta_scan s;
    const char *start = NULL;
    size_t slen = 0;
    uint8_t *next = NULL;
    int rc;

    /* Keep going until an entry or the end. */
    for (;;) {
        rc = meta_dir_scan(cl, dir, start, slen, 64, &s);
        free(next);
        next = NULL;
        if (rc)
            return rc;
        if (s.n || !s.more) {
            *empty = s.n == 0;
            meta_scan_fini(&s);
            return 0;
        }
        next = s.next;
        s.next = NULL;
        start = (const char *)next + 9;
        slen = s.next_len - 9;
        meta_scan_fini(&s);
    }
}

/* ---- repair records ---- */

static const uint8_t repair_key[1] = {'R'};

int meta_repair_get(struct cl_cluster *cl, uint32_t shard, Cairn__RepairShard **out,
                    uint64_t *version)
{
    return msg_get(cl, shard, repair_key, sizeof(repair_key), &cairn__repair_shard__descriptor,
                   (ProtobufCMessage **)out, version);
}

int meta_repair_put(struct cl_cluster *cl, uint32_t shard, const Cairn__RepairShard *r,
                    uint64_t expect, uint64_t *version)
{
    return msg_put(cl, shard, repair_key, sizeof(repair_key), &r->base, expect, version);
}

void meta_repair_get_all(struct cl_cluster *cl, unsigned n, Cairn__RepairShard **outs)
{
    struct meta_get *g = calloc(n ? n : 1, sizeof(*g));

    for (unsigned s = 0; s < n; s++)
        outs[s] = NULL;
    if (!g) {
        for (unsigned s = 0; s < n; s++)
            (void)meta_repair_get(cl, s, &outs[s], NULL);
        return;
    }
    for (unsigned s = 0; s < n; s++)
        g[s] = (struct meta_get){.shard = s, .key = repair_key, .klen = sizeof(repair_key)};
    meta_rec_get_many(cl, g, n);
    for (unsigned s = 0; s < n; s++) {
        if (g[s].rc == 0)
            outs[s] = cairn__repair_shard__unpack(NULL, g[s].rec.len, g[s].rec.val);
        free(g[s].rec.val);
    }
    free(g);
}

/* ---- users ---- */

static uint32_t bytes_shard(const char *s)
{
    return meta_shard_of(s, strlen(s));
}

int meta_user_get(struct cl_cluster *cl, const char *access_key, Cairn__User **out)
{
    char k[1 + 256];
    size_t n = strlen(access_key);

    if (n == 0 || n > 255)
        return CAIRN_EINVAL;
    k[0] = 'U';
    memcpy(k + 1, access_key, n);
    return msg_get(cl, bytes_shard(access_key), k, n + 1, &cairn__user__descriptor,
                   (ProtobufCMessage **)out, NULL);
}

int meta_user_put(struct cl_cluster *cl, const Cairn__User *u)
{
    char k[1 + 256];
    size_t n = strlen(u->access_key);

    if (n == 0 || n > 255)
        return CAIRN_EINVAL;
    k[0] = 'U';
    memcpy(k + 1, u->access_key, n);
    return msg_put(cl, bytes_shard(u->access_key), k, n + 1, &u->base, META_ANY, NULL);
}

int meta_user_del(struct cl_cluster *cl, const char *access_key)
{
    char k[1 + 256];
    size_t n = strlen(access_key);

    if (n == 0 || n > 255)
        return CAIRN_EINVAL;
    k[0] = 'U';
    memcpy(k + 1, access_key, n);
    return meta_rec_del(cl, bytes_shard(access_key), k, n + 1, META_ANY);
}

/* ---- multipart uploads ---- */

#define UPLOAD_ID_LEN 32u

static int upload_key(char *k, const char *upload_id)
{
    if (strlen(upload_id) != UPLOAD_ID_LEN)
        return CAIRN_EINVAL;
    k[0] = 'M';
    memcpy(k + 1, upload_id, UPLOAD_ID_LEN);
    return 0;
}

static size_t upload_index_key(uint8_t *k, uint64_t bucket, const char *key, const char *upload_id)
{
    size_t kl = strlen(key), ul = strlen(upload_id);

    k[0] = 'Q';
    be64(k + 1, bucket);
    memcpy(k + 9, key, kl);
    k[9 + kl] = 0;
    memcpy(k + 10 + kl, upload_id, ul);
    return 10 + kl + ul;
}

int meta_upload_get(struct cl_cluster *cl, const char *upload_id, Cairn__Upload **out,
                    uint64_t *version)
{
    char k[1 + UPLOAD_ID_LEN];

    if (upload_key(k, upload_id))
        return CAIRN_ENOENT;
    return msg_get(cl, bytes_shard(upload_id), k, sizeof(k), &cairn__upload__descriptor,
                   (ProtobufCMessage **)out, version);
}

int meta_upload_create(struct cl_cluster *cl, const char *upload_id, const Cairn__Upload *u)
{
    char k[1 + UPLOAD_ID_LEN];
    uint8_t ik[META_REC_MAX_KEY];
    uint8_t one = 1;
    int rc;

    if (upload_key(k, upload_id) || 10 + strlen(u->key) + UPLOAD_ID_LEN > META_REC_MAX_KEY)
        return CAIRN_EINVAL;
    rc = msg_put(cl, bytes_shard(upload_id), k, sizeof(k), &u->base, 0, NULL);
    if (rc)
        return rc;
    return meta_rec_put(cl, meta_shard_of_u64(u->bucket), ik,
                        upload_index_key(ik, u->bucket, u->key, upload_id), META_ANY, &one, 1,
                        NULL);
}

int meta_upload_update(struct cl_cluster *cl, const char *upload_id, const Cairn__Upload *u,
                       uint64_t version)
{
    char k[1 + UPLOAD_ID_LEN];

    if (upload_key(k, upload_id))
        return CAIRN_EINVAL;
    return msg_put(cl, bytes_shard(upload_id), k, sizeof(k), &u->base, version, NULL);
}

int meta_upload_del(struct cl_cluster *cl, const char *upload_id, const Cairn__Upload *u,
                    uint64_t version)
{
    char k[1 + UPLOAD_ID_LEN];
    uint8_t ik[META_REC_MAX_KEY];
    int rc;

    if (upload_key(k, upload_id) || 10 + strlen(u->key) + UPLOAD_ID_LEN > META_REC_MAX_KEY)
        return CAIRN_EINVAL;
    rc = meta_rec_del(cl, bytes_shard(upload_id), k, sizeof(k), version);
    if (rc)
        return rc;
    rc = meta_rec_del(cl, meta_shard_of_u64(u->bucket), ik,
                      upload_index_key(ik, u->bucket, u->key, upload_id), META_ANY);
    return rc == CAIRN_ENOENT ? 0 : rc;
}

int meta_upload_scan(struct cl_cluster *cl, uint64_t bucket, const char *key_marker,
                     const char *upload_marker, unsigned limit, struct meta_scan *out)
{
    uint8_t from[META_REC_MAX_KEY + 1], to[9];
    size_t fl;

    if (key_marker && strlen(key_marker) + 10 + UPLOAD_ID_LEN > META_REC_MAX_KEY)
        return CAIRN_EINVAL;
    fl = upload_index_key(from, bucket, key_marker ? key_marker : "",
                          upload_marker ? upload_marker : "");
    if (!key_marker || !*key_marker)
        fl = 9;
    to[0] = 'Q';
    be64(to + 1, bucket + 1);
    return meta_rec_scan(cl, meta_shard_of_u64(bucket), from, fl, to, 9, limit, out);
}

int meta_upload_index_key(const uint8_t *key, uint32_t klen, const char **obj_key,
                          uint32_t *klen_out, const char **upload_id, uint32_t *ulen)
{
    const uint8_t *z;

    if (klen < 10 || key[0] != 'Q')
        return CAIRN_EPROTO;
    z = memchr(key + 9, 0, klen - 9);
    if (!z)
        return CAIRN_EPROTO;
    *obj_key = (const char *)key + 9;
    *klen_out = (uint32_t)(z - (key + 9));
    *upload_id = (const char *)z + 1;
    *ulen = klen - (uint32_t)(z + 1 - key);
    return 0;
}

static size_t part_key(uint8_t *k, const char *upload_id, uint32_t number)
{
    k[0] = 'P';
    memcpy(k + 1, upload_id, UPLOAD_ID_LEN);
    be32(k + 1 + UPLOAD_ID_LEN, number);
    return 1 + UPLOAD_ID_LEN + 4;
}

int meta_part_get(struct cl_cluster *cl, const char *upload_id, uint32_t number,
                  Cairn__Part **out, uint64_t *version)
{
    uint8_t k[1 + UPLOAD_ID_LEN + 4];

    if (strlen(upload_id) != UPLOAD_ID_LEN)
        return CAIRN_EINVAL;
    return msg_get(cl, bytes_shard(upload_id), k, part_key(k, upload_id, number),
                   &cairn__part__descriptor, (ProtobufCMessage **)out, version);
}

int meta_part_put(struct cl_cluster *cl, const char *upload_id, const Cairn__Part *p,
                  Cairn__Part **old)
{
    uint8_t k[1 + UPLOAD_ID_LEN + 4];
    size_t kl;

    *old = NULL;
    if (strlen(upload_id) != UPLOAD_ID_LEN)
        return CAIRN_EINVAL;
    kl = part_key(k, upload_id, p->number);
    for (int attempt = 0; attempt < 8; attempt++) {
        uint64_t ver = 0;
        int rc = msg_get(cl, bytes_shard(upload_id), k, kl, &cairn__part__descriptor,
                         (ProtobufCMessage **)old, &ver);

        if (rc && rc != CAIRN_ENOENT)
            return rc;
        if (rc)
            *old = NULL;
        rc = msg_put(cl, bytes_shard(upload_id), k, kl, &p->base, ver, NULL);
        if (rc != CAIRN_ECONFLICT)
            return rc;
        if (*old)
            cairn__part__free_unpacked(*old, NULL);
        *old = NULL;
    }
    return CAIRN_ECONFLICT;
}

int meta_part_del(struct cl_cluster *cl, const char *upload_id, uint32_t number)
{
    uint8_t k[1 + UPLOAD_ID_LEN + 4];

    if (strlen(upload_id) != UPLOAD_ID_LEN)
        return CAIRN_EINVAL;
    return meta_rec_del(cl, bytes_shard(upload_id), k, part_key(k, upload_id, number), META_ANY);
}

int meta_part_scan(struct cl_cluster *cl, const char *upload_id, uint32_t from, unsigned limit,
                   struct meta_scan *out)
{
    uint8_t a[1 + UPLOAD_ID_LEN + 4], b[1 + UPLOAD_ID_LEN + 4];
    size_t al;

    if (strlen(upload_id) != UPLOAD_ID_LEN)
        return CAIRN_EINVAL;
    al = part_key(a, upload_id, from);
    part_key(b, upload_id, UINT32_MAX);
    return meta_rec_scan(cl, bytes_shard(upload_id), a, al, b, sizeof(b), limit, out);
}

/* ---- cluster secrets ---- */

int meta_secret(struct cl_cluster *cl, const char *name, uint8_t out[META_SECRET_LEN])
{
    char k[1 + 64];
    size_t n = strlen(name);
    struct meta_rec r;
    uint8_t fresh[META_SECRET_LEN];
    int rc;

    if (n == 0 || n > 64)
        return CAIRN_EINVAL;
    k[0] = 'K';
    memcpy(k + 1, name, n);
    for (int attempt = 0; attempt < 4; attempt++) {
        rc = meta_rec_get(cl, bytes_shard(name), k, n + 1, &r);
        if (rc == 0) {
            if (r.len != META_SECRET_LEN) {
                free(r.val);
                return CAIRN_EPROTO;
            }
            memcpy(out, r.val, META_SECRET_LEN);
            free(r.val);
            return 0;
        }
        if (rc != CAIRN_ENOENT)
            return rc;
        /* First use: create it; a C-node racing us may win, then we read its secret. */
        if (RAND_bytes(fresh, sizeof(fresh)) != 1)
            return CAIRN_EIO;
        rc = meta_rec_put(cl, bytes_shard(name), k, n + 1, r.version, fresh, sizeof(fresh), NULL);
        if (rc == 0) {
            memcpy(out, fresh, META_SECRET_LEN);
            return 0;
        }
        if (rc != CAIRN_ECONFLICT)
            return rc;
    }
    return CAIRN_ECONFLICT;
}

/* ---- what records reference (the garbage sweeper's mark) ---- */

static void extent_objects(Cairn__Extent *const *x, size_t n, meta_object_fn fn, void *arg)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] && x[i]->object_id)
            fn(arg, x[i]->object_id, x[i]->gen);
}

int meta_entry_objects(const struct meta_entry *e, meta_object_fn fn, void *arg)
{
    static const char stripe_prefix[] = "stripe/";
    ProtobufCMessage *m = NULL;

    if (e->klen == 0)
        return 0;
    switch (e->key[0]) {
    case 'I': {
        uint64_t ino;
        Cairn__Inode *in = meta_inode_of_entry(e, &ino);

        if (!in)
            return CAIRN_EPROTO;
        extent_objects(in->extents, in->n_extents, fn, arg);
        cairn__inode__free_unpacked(in, NULL);
        return 0;
    }
    case 'P': {
        Cairn__Part *p = cairn__part__unpack(NULL, e->len, e->val);

        if (!p)
            return CAIRN_EPROTO;
        extent_objects(&p->extent, p->extent ? 1 : 0, fn, arg);
        cairn__part__free_unpacked(p, NULL);
        return 0;
    }
    case 'M': {
        Cairn__Upload *u = cairn__upload__unpack(NULL, e->len, e->val);

        if (!u)
            return CAIRN_EPROTO;
        if (u->meta)
            extent_objects(u->meta->extents, u->meta->n_extents, fn, arg);
        cairn__upload__free_unpacked(u, NULL);
        return 0;
    }
    default:
        break;
    }
    if (e->klen > sizeof(stripe_prefix) - 1 &&
        !memcmp(e->key, stripe_prefix, sizeof(stripe_prefix) - 1)) {
        Cairn__StripeManifest *sm = cairn__stripe_manifest__unpack(NULL, e->len, e->val);

        if (!sm)
            return CAIRN_EPROTO;
        m = &sm->base;
        if (sm->object_id)
            fn(arg, sm->object_id, sm->gen);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return 0;
}
