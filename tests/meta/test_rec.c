/*
 * Metadata record tests against five real D-nodes with a 2+1 layout: every shard is a Raft
 * group of 2m + 1 = 3 of them (the cluster map says which), so a shard must keep serving with
 * one of its D-nodes gone and must refuse to answer with two gone.
 *
 * Whatever a test claims about durability it observes through kill -9 and restarts of the
 * real processes, and about ordering through a second view (another C-node, as far as the
 * D-nodes can tell): nothing here reads a D-node's store behind the protocol's back.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cluster.h"
#include "common/cairn.h"
#include "meta/rec.h"
#include "tests/support/dcluster.h"

#define NODES 5u
#define REPLICAS 3u /* 2m + 1 */

static struct dcluster *dc;
static struct cl_cluster *cl;

static void setup(void)
{
    struct dcluster_opts o = {.nodes = NODES, .k = 2, .m = 1};

    cr_assert_eq(dcluster_start(&o, &dc), 0, "start D-nodes");
    cr_assert_eq(dcluster_open(dc, &cl), 0, "open cluster view");
}

static void teardown(void)
{
    cl_cluster_close(cl);
    cl = NULL;
    dcluster_stop(dc);
    dc = NULL;
}

TestSuite(rec, .init = setup, .fini = teardown, .timeout = 180);

/* ---- helpers ---- */

static uint32_t shard_of(const char *key)
{
    return meta_shard_of(key, strlen(key));
}

static int put_in(struct cl_cluster *v, const char *key, uint64_t expect, const char *val,
                  uint64_t *ver)
{
    return meta_rec_put(v, shard_of(key), key, strlen(key), expect, val, (uint32_t)strlen(val),
                        ver);
}

static int put(const char *key, uint64_t expect, const char *val, uint64_t *ver)
{
    return put_in(cl, key, expect, val, ver);
}

/* Assert the record key is val at version ver (val NULL: absent, version 0). */
static void assert_record(struct cl_cluster *v, const char *key, const char *val, uint64_t ver)
{
    struct meta_rec r;
    int rc = meta_rec_get(v, shard_of(key), key, strlen(key), &r);

    if (!val) {
        cr_assert_eq(rc, CAIRN_ENOENT, "%s: %s, want ENOENT", key, cairn_strerror(rc));
        cr_assert_null(r.val);
    } else {
        cr_assert_eq(rc, 0, "%s: %s", key, cairn_strerror(rc));
        cr_assert_eq(r.len, strlen(val), "%s: length %u", key, r.len);
        cr_assert(memcmp(r.val, val, r.len) == 0, "%s: value '%.*s', want '%s'", key, (int)r.len,
                  (char *)r.val, val);
    }
    cr_assert_eq(r.version, ver, "%s: version %llu, want %llu", key, (unsigned long long)r.version,
                 (unsigned long long)ver);
    free(r.val);
}

/* The D-nodes the map places key's shard on. */
static void replicas_of(const char *key, unsigned *set)
{
    cr_assert_eq(cl_cluster_shard_nodes(cl, meta_rec_shard(cl, shard_of(key)), set), REPLICAS);
}

/* The D-node leading key's shard, as the view learnt it from its last answer. */
static unsigned leader_of(const char *key)
{
    int l = cl_cluster_leader_hint(cl, meta_rec_shard(cl, shard_of(key)));

    cr_assert_geq(l, 0, "no leader known for %s after a call", key);
    return (unsigned)l;
}

/* Another view (as another C-node would have), with D-nodes perhaps down. */
static void open_view(struct cl_cluster **v)
{
    cr_assert_eq(cl_cluster_open(dcluster_config(dc), v), 0, "open a second view");
}

/* ---- tests ---- */

Test(rec, the_map_places_every_shard_on_distinct_replicas)
{
    uint32_t shards = cl_cluster_shards(cl);
    unsigned per_node[NODES] = {0};

    cr_assert_eq(shards, DCLUSTER_SHARDS);
    cr_assert_eq(cl_cluster_epoch(cl), 1u);
    for (uint32_t s = 0; s < shards; s++) {
        unsigned set[MAP_MAX_REPLICAS];

        cr_assert_eq(cl_cluster_shard_nodes(cl, s, set), REPLICAS);
        for (unsigned i = 0; i < REPLICAS; i++) {
            per_node[set[i]]++;
            for (unsigned j = 0; j < i; j++)
                cr_assert_neq(set[i], set[j], "shard %u placed twice on D-node %u", s, set[i]);
        }
    }
    for (unsigned i = 0; i < NODES; i++)
        cr_assert_gt(per_node[i], 0u, "D-node %u holds no shard", i);
}

Test(rec, round_trip_versions_and_a_second_view)
{
    struct cl_cluster *v2;
    uint64_t v1 = 0, v2v = 0, va = 0, vb = 0;

    open_view(&v2);
    assert_record(cl, "alpha", NULL, 0); /* never existed: version 0 */
    cr_assert_eq(put("alpha", 0, "one", &v1), 0);
    cr_assert_gt(v1, 0);
    /* Acknowledged means committed: another view reads it at once. */
    assert_record(v2, "alpha", "one", v1);
    cr_assert_eq(put_in(v2, "alpha", v1, "two", &v2v), 0);
    cr_assert_gt(v2v, v1, "versions must grow");
    assert_record(cl, "alpha", "two", v2v);

    /* An empty value is a value, not an absent record. */
    cr_assert_eq(put("empty", 0, "", &v1), 0);
    assert_record(v2, "empty", "", v1);

    /* Unconditional puts (META_ANY) version like the others. */
    cr_assert_eq(put("any", META_ANY, "a", &va), 0);
    cr_assert_eq(put_in(v2, "any", META_ANY, "b", &vb), 0);
    cr_assert_gt(vb, va);
    assert_record(cl, "any", "b", vb);
    cl_cluster_close(v2);
}

Test(rec, stale_compare_and_set_conflicts_and_changes_nothing)
{
    uint64_t v1 = 0, v2 = 0, v3 = 0;

    cr_assert_eq(put("once", 0, "first", &v1), 0);
    cr_assert_eq(put("once", 0, "second", &v2), CAIRN_ECONFLICT);
    assert_record(cl, "once", "first", v1);

    cr_assert_eq(put("cas", 0, "one", &v1), 0);
    cr_assert_eq(put("cas", v1, "two", &v2), 0);
    cr_assert_eq(put("cas", v1, "stale", &v3), CAIRN_ECONFLICT);
    cr_assert_eq(put("cas", v2 + 1, "future", &v3), CAIRN_ECONFLICT);
    assert_record(cl, "cas", "two", v2);
    cr_assert_eq(meta_rec_del(cl, shard_of("cas"), "cas", 3, v1), CAIRN_ECONFLICT);
    assert_record(cl, "cas", "two", v2);
}

Test(rec, delete_removes_and_a_create_follows)
{
    uint64_t v1 = 0, v2 = 0;

    cr_assert_eq(put("gone", 0, "x", &v1), 0);
    cr_assert_eq(meta_rec_del(cl, shard_of("gone"), "gone", 4, v1), 0);
    assert_record(cl, "gone", NULL, 0);
    cr_assert_eq(meta_rec_del(cl, shard_of("gone"), "gone", 4, v1), CAIRN_ENOENT);
    cr_assert_eq(meta_rec_del(cl, shard_of("gone"), "gone", 4, META_ANY), CAIRN_ENOENT);
    /* A put that expected the deleted version must not bring it back. */
    cr_assert_eq(put("gone", v1, "stale", NULL), CAIRN_ECONFLICT);
    assert_record(cl, "gone", NULL, 0);
    cr_assert_eq(put("gone", 0, "again", &v2), 0);
    cr_assert_gt(v2, v1, "a re-created record must not reuse a version");
    assert_record(cl, "gone", "again", v2);
}

Test(rec, limits)
{
    char key[META_REC_MAX_KEY + 1];
    uint64_t v;
    uint8_t *big = calloc(1, META_REC_MAX_VAL + 1);
    struct meta_rec r;
    int rc;

    cr_assert_not_null(big);
    memset(key, 'k', sizeof(key));
    cr_assert_eq(meta_rec_put(cl, 1, key, 0, 0, "x", 1, &v), CAIRN_EINVAL, "empty key");
    cr_assert_eq(meta_rec_get(cl, 1, key, 0, &r), CAIRN_EINVAL);
    cr_assert_eq(meta_rec_put(cl, 1, key, META_REC_MAX_KEY + 1, 0, "x", 1, &v), CAIRN_EINVAL);
    cr_assert_eq(meta_rec_get(cl, 1, key, META_REC_MAX_KEY + 1, &r), CAIRN_EINVAL);
    cr_assert_eq(meta_rec_put(cl, 1, key, META_REC_MAX_KEY, 0, "x", 1, &v), 0, "longest key");
    cr_assert_eq(meta_rec_get(cl, 1, key, META_REC_MAX_KEY, &r), 0);
    cr_assert_eq(r.version, v);
    free(r.val);
    cr_assert_eq(meta_rec_put(cl, 1, "big", 3, 0, big, META_REC_MAX_VAL + 1, &v), CAIRN_ETOOBIG);
    cr_assert_eq(meta_rec_get(cl, 1, "big", 3, &r), CAIRN_ENOENT, "a refused put left a record");
    /* The documented limit is a value that can be stored (it travels in one Raft message). */
    memset(big, 0x5a, META_REC_MAX_VAL);
    rc = meta_rec_put(cl, 1, "max", 3, 0, big, META_REC_MAX_VAL, &v);
    cr_assert_eq(rc, 0, "put of META_REC_MAX_VAL bytes: %s", cairn_strerror(rc));
    cr_assert_eq(meta_rec_get(cl, 1, "max", 3, &r), 0);
    cr_assert(r.len == META_REC_MAX_VAL && memcmp(r.val, big, r.len) == 0);
    free(r.val);
    free(big);
}

/* ---- all-or-nothing updates ---- */

#define TXN_SHARD 11u /* the shard key of every record the txn tests touch */

static struct meta_op op_put(const char *key, uint64_t expect, const char *val)
{
    return (struct meta_op){.kind = META_OP_PUT, .key = key, .klen = strlen(key),
                            .expect = expect, .val = val, .len = (uint32_t)strlen(val)};
}

static struct meta_op op_del(const char *key, uint64_t expect)
{
    return (struct meta_op){.kind = META_OP_DEL, .key = key, .klen = strlen(key),
                            .expect = expect};
}

/* Assert the record key of TXN_SHARD is len bytes of val at version ver (val NULL: absent). */
static void assert_txn_record(struct cl_cluster *v, const char *key, const void *val,
                              uint32_t len, uint64_t ver)
{
    struct meta_rec r;
    int rc = meta_rec_get(v, TXN_SHARD, key, strlen(key), &r);

    if (!val) {
        cr_assert_eq(rc, CAIRN_ENOENT, "%s: %s, want ENOENT", key, cairn_strerror(rc));
    } else {
        cr_assert_eq(rc, 0, "%s: %s", key, cairn_strerror(rc));
        cr_assert_eq(r.len, len, "%s: length %u, want %u", key, r.len, len);
        cr_assert(memcmp(r.val, val, len) == 0, "%s: value differs", key);
    }
    cr_assert_eq(r.version, ver, "%s: version %llu, want %llu", key, (unsigned long long)r.version,
                 (unsigned long long)ver);
    free(r.val);
}

static void assert_txn_str(struct cl_cluster *v, const char *key, const char *val, uint64_t ver)
{
    assert_txn_record(v, key, val, val ? (uint32_t)strlen(val) : 0, ver);
}

/* A txn is one log entry: every record it writes has the entry's version, every replica
 * applies it (the leader's death loses none of it), and one failing condition anywhere in it
 * applies none of it. */
Test(rec, txn_applies_all_or_nothing_on_every_replica)
{
    struct cl_cluster *v2;
    struct meta_op ops[3];
    uint64_t vc = 0, v = 0, vx = 0;
    int leader;
    int rc;

    cr_assert_eq(meta_rec_put(cl, TXN_SHARD, "t-c", 3, 0, "c0", 2, &vc), 0);
    ops[0] = op_put("t-a", 0, "A");
    ops[1] = op_put("t-b", 0, "B");
    ops[2] = op_del("t-c", vc);
    rc = meta_rec_txn(cl, TXN_SHARD, ops, 3, &v);
    cr_assert_eq(rc, 0, "txn: %s", cairn_strerror(rc));
    cr_assert_gt(v, vc, "versions must grow");
    open_view(&v2);
    assert_txn_str(v2, "t-a", "A", v);
    assert_txn_str(v2, "t-b", "B", v);
    assert_txn_str(v2, "t-c", NULL, 0);

    /* The first op would succeed alone; the second expects a version t-b never had. */
    ops[0] = op_put("t-a", v, "A2");
    ops[1] = op_put("t-b", vc, "B2");
    ops[2] = op_put("t-new", 0, "N");
    vx = 0;
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 3, &vx), CAIRN_ECONFLICT);
    assert_txn_str(v2, "t-a", "A", v);
    assert_txn_str(v2, "t-b", "B", v);
    assert_txn_str(v2, "t-new", NULL, 0);

    /* A delete of an absent record is the txn's failure too. */
    ops[1] = op_del("t-c", META_ANY);
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 3, NULL), CAIRN_ENOENT);
    assert_txn_str(v2, "t-a", "A", v);
    assert_txn_str(v2, "t-new", NULL, 0);

    /* A create expecting absence where the record exists. */
    ops[1] = op_put("t-b", 0, "again");
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 3, NULL), CAIRN_ECONFLICT);
    assert_txn_str(v2, "t-new", NULL, 0);

    /* The leader goes right after acknowledging a txn: the next leader has all of it. */
    ops[0] = op_put("t-a", v, "A3");
    ops[1] = op_del("t-b", v);
    ops[2] = op_put("t-new", 0, "N");
    rc = meta_rec_txn(cl, TXN_SHARD, ops, 3, &vx);
    cr_assert_eq(rc, 0, "txn: %s", cairn_strerror(rc));
    cr_assert_gt(vx, v);
    leader = cl_cluster_leader_hint(cl, meta_rec_shard(cl, TXN_SHARD));
    cr_assert_geq(leader, 0, "no leader known after a call");
    cr_assert_eq(dcluster_kill(dc, (unsigned)leader), 0);
    assert_txn_str(v2, "t-a", "A3", vx);
    assert_txn_str(v2, "t-b", NULL, 0);
    assert_txn_str(v2, "t-new", "N", vx);
    cl_cluster_close(v2);
}

/* Stamps raise lanes through the cluster; refused shapes change nothing. */
Test(rec, txn_stamps_and_limits)
{
    uint8_t rec[19], st[16], want[19], lane12[12] = {0};
    struct meta_op ops[META_TXN_MAX + 1];
    char keys[META_TXN_MAX + 1][8];
    uint8_t *big = calloc(1, META_REC_MAX_VAL + 1);
    uint64_t v0 = 0, v = 0;
    int rc;

    cr_assert_not_null(big);
    /* lanes [5, 9] and a tail; stamp [7, 3]: [7, 9] and the tail */
    memset(rec, 0, 16);
    rec[7] = 5;
    rec[15] = 9;
    memcpy(rec + 16, "xyz", 3);
    cr_assert_eq(meta_rec_put(cl, TXN_SHARD, "t-dir", 5, 0, rec, sizeof rec, &v0), 0);
    memset(st, 0, sizeof st);
    st[7] = 7;
    st[15] = 3;
    ops[0] = (struct meta_op){.kind = META_OP_STAMP, .key = "t-dir", .klen = 5,
                              .expect = META_ANY, .val = st, .len = 16};
    rc = meta_rec_txn(cl, TXN_SHARD, ops, 1, &v);
    cr_assert_eq(rc, 0, "stamp: %s", cairn_strerror(rc));
    cr_assert_gt(v, v0);
    memcpy(want, rec, sizeof want);
    want[7] = 7;
    assert_txn_record(cl, "t-dir", want, sizeof want, v);
    /* An older stamp, with a create beside it: the create lands, no lane falls. */
    st[7] = 1;
    st[15] = 1;
    ops[1] = op_put("t-child", 0, "c");
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 2, &v), 0);
    assert_txn_record(cl, "t-dir", want, sizeof want, v);
    assert_txn_str(cl, "t-child", "c", v);
    /* No record to stamp: the create beside it does not land. */
    ops[0].key = "t-nodir";
    ops[0].klen = 7;
    ops[1] = op_put("t-child2", 0, "c");
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 2, NULL), CAIRN_ENOENT);
    assert_txn_str(cl, "t-child2", NULL, 0);
    /* More lanes than the record has. */
    ops[0] = (struct meta_op){.kind = META_OP_STAMP, .key = "t-child", .klen = 7,
                              .expect = META_ANY, .val = st, .len = 16};
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 2, NULL), CAIRN_EINVAL);
    assert_txn_str(cl, "t-child2", NULL, 0);
    assert_txn_str(cl, "t-child", "c", v);

    /* Shapes: refused whole, whether the client or the D-node sees it first. */
    ops[0] = op_put("t-x", 0, "1");
    ops[1] = op_put("t-x", META_ANY, "2");
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 2, NULL), CAIRN_EINVAL, "duplicate keys");
    ops[1] = op_put("\xffSession", META_ANY, "2");
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 2, NULL), CAIRN_EINVAL, "reserved key");
    ops[1] = (struct meta_op){.kind = META_OP_STAMP, .key = "t-dir", .klen = 5,
                              .expect = META_ANY, .val = lane12, .len = 12};
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 2, NULL), CAIRN_EINVAL, "12-byte stamp");
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 0, NULL), CAIRN_EINVAL, "no ops");
    for (unsigned i = 0; i <= META_TXN_MAX; i++) {
        snprintf(keys[i], sizeof keys[i], "t-m%u", i);
        ops[i] = op_put(keys[i], 0, "v");
    }
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, META_TXN_MAX + 1, NULL), CAIRN_EINVAL,
                 "%u ops", META_TXN_MAX + 1);
    assert_txn_str(cl, "t-x", NULL, 0);
    assert_txn_str(cl, keys[0], NULL, 0);
    rc = meta_rec_txn(cl, TXN_SHARD, ops, META_TXN_MAX, &v);
    cr_assert_eq(rc, 0, "%u ops: %s", META_TXN_MAX, cairn_strerror(rc));
    assert_txn_str(cl, keys[META_TXN_MAX - 1], "v", v);

    /* META_REC_MAX_VAL bytes of values in all travel in one entry; one more is refused. */
    memset(big, 0x5a, META_REC_MAX_VAL + 1);
    ops[0] = (struct meta_op){.key = "t-big1", .klen = 6, .val = big, .len = META_REC_MAX_VAL / 2};
    ops[1] = (struct meta_op){.key = "t-big2", .klen = 6, .val = big,
                              .len = META_REC_MAX_VAL - META_REC_MAX_VAL / 2};
    rc = meta_rec_txn(cl, TXN_SHARD, ops, 2, &v);
    cr_assert_eq(rc, 0, "txn of META_REC_MAX_VAL bytes: %s", cairn_strerror(rc));
    assert_txn_record(cl, "t-big2", big, META_REC_MAX_VAL - META_REC_MAX_VAL / 2, v);
    ops[0].key = "t-big3";
    ops[1].key = "t-big4";
    ops[1].len++;
    cr_assert_eq(meta_rec_txn(cl, TXN_SHARD, ops, 2, NULL), CAIRN_ETOOBIG);
    assert_txn_str(cl, "t-big3", NULL, 0);
    free(big);
}

/* The keys of the scan test: "k00".."k29" in shard key 7. */
static void scan_key(char *k, unsigned i)
{
    snprintf(k, 8, "k%02u", i);
}

Test(rec, scan_lists_records_in_order_and_pages)
{
    const uint32_t shard = 7;
    enum { N = 30 };
    bool deleted[N] = {false};
    uint64_t ver[N];
    char key[8], start[8];
    unsigned got = 0, pages = 0;
    uint32_t slen;
    struct meta_scan s;

    for (unsigned j = 0; j < N; j++) {
        unsigned i = (j * 7) % N; /* 7 is coprime to 30: every key once */

        scan_key(key, i);
        cr_assert_eq(meta_rec_put(cl, shard, key, 3, 0, key, 3, &ver[i]), 0);
    }
    cr_assert_eq(meta_rec_put(cl, shard, "j99", 3, 0, "out", 3, NULL), 0);
    cr_assert_eq(meta_rec_put(cl, shard, "l00", 3, 0, "out", 3, NULL), 0);
    cr_assert_eq(meta_rec_put(cl, shard + 1, "k15x", 4, 0, "other", 5, NULL), 0);
    for (unsigned i = 3; i < 10; i++)
        deleted[i] = true;
    deleted[17] = deleted[29] = true;
    for (unsigned i = 0; i < N; i++) {
        if (!deleted[i])
            continue;
        scan_key(key, i);
        cr_assert_eq(meta_rec_del(cl, shard, key, 3, ver[i]), 0);
    }

    strcpy(start, "k");
    slen = 1;
    for (;;) {
        cr_assert_eq(meta_rec_scan(cl, shard, start, slen, "l", 1, 5, &s), 0);
        pages++;
        cr_assert_leq(s.n, 5u, "page of %u entries with limit 5", s.n);
        for (unsigned e = 0; e < s.n; e++) {
            while (got < N && deleted[got])
                got++;
            cr_assert_lt(got, (unsigned)N, "more entries than records");
            scan_key(key, got);
            cr_assert(s.entries[e].klen == 3 && memcmp(s.entries[e].key, key, 3) == 0,
                      "entry '%.*s', want '%s'", (int)s.entries[e].klen, s.entries[e].key, key);
            cr_assert(s.entries[e].len == 3 && memcmp(s.entries[e].val, key, 3) == 0);
            cr_assert_eq(s.entries[e].version, ver[got]);
            got++;
        }
        if (!s.more) {
            meta_scan_fini(&s);
            break;
        }
        cr_assert_leq(s.next_len, sizeof(start));
        memcpy(start, s.next, s.next_len);
        slen = s.next_len;
        meta_scan_fini(&s);
        cr_assert_lt(pages, 20u, "scan does not end");
    }
    while (got < N && deleted[got])
        got++;
    cr_assert_eq(got, (unsigned)N, "scan ended before k%02u", got);
    cr_assert_geq(pages, 5u, "21 records in pages of 5 came in %u pages", pages);

    cr_assert_eq(meta_rec_scan(cl, shard, "k", 1, "l", 1, 0, &s), 0);
    cr_assert_eq(s.n, (unsigned)N - 9);
    cr_assert_not(s.more);
    meta_scan_fini(&s);
}

Test(rec, get_many_matches_single_gets)
{
    enum { N = 70 }; /* more than one wave of 64 */
    struct meta_get g[N + 1];
    char keys[N][16];
    uint8_t *large = malloc(100000);
    uint64_t ver;

    cr_assert_not_null(large);
    memset(large, 0x77, 100000);
    for (unsigned i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "many%u", i);
        if (i % 5 == 1)
            continue; /* never written */
        if (i == 2) {
            /* Larger than a batch answer buffer: read again alone. */
            cr_assert_eq(meta_rec_put(cl, shard_of(keys[i]), keys[i], strlen(keys[i]), 0, large,
                                      100000, NULL),
                         0);
            continue;
        }
        cr_assert_eq(put(keys[i], 0, keys[i], &ver), 0);
        if (i % 5 == 3)
            cr_assert_eq(meta_rec_del(cl, shard_of(keys[i]), keys[i], strlen(keys[i]), ver), 0);
    }
    for (unsigned i = 0; i < N; i++)
        g[i] =
            (struct meta_get){.shard = shard_of(keys[i]), .key = keys[i], .klen = strlen(keys[i])};
    g[N] = (struct meta_get){.shard = 0, .key = "", .klen = 0};
    meta_rec_get_many(cl, g, N + 1);

    for (unsigned i = 0; i < N; i++) {
        struct meta_rec r;
        int rc = meta_rec_get(cl, g[i].shard, keys[i], strlen(keys[i]), &r);

        cr_assert_eq(g[i].rc, rc, "%s: batch %d, single %d", keys[i], g[i].rc, rc);
        cr_assert_eq(g[i].rec.version, r.version, "%s: version", keys[i]);
        cr_assert_eq(g[i].rec.len, r.len, "%s: length", keys[i]);
        cr_assert(r.len == 0 || memcmp(g[i].rec.val, r.val, r.len) == 0, "%s: value", keys[i]);
        if (i % 5 == 1 || i % 5 == 3)
            cr_assert(rc == CAIRN_ENOENT && r.version == 0, "%s: absent", keys[i]);
        else
            cr_assert_eq(rc, 0, "%s", keys[i]);
        if (i == 2)
            cr_assert(r.len == 100000 && memcmp(r.val, large, r.len) == 0);
        free(r.val);
        free(g[i].rec.val);
    }
    cr_assert_eq(g[N].rc, CAIRN_EINVAL, "an empty key in a batch");
    free(large);
}

/* Many records of one shard go as one KV_MGET: present, absent and deleted ones answer as
 * single gets do, in the caller's order, and an answer too large for one message (many large
 * records) is read again record by record. */
Test(rec, get_many_of_one_shard_matches_single_gets)
{
    enum { N = 48, BIG = 200000 };
    struct meta_get g[N];
    char keys[N][24];
    uint8_t *large = malloc(BIG);
    uint64_t ver;

    cr_assert_not_null(large);
    for (unsigned round = 0; round < 2; round++) {
        for (unsigned i = 0; i < N; i++) {
            snprintf(keys[i], sizeof(keys[i]), "one%u-%u", round, i);
            if (i % 4 == 1)
                continue; /* never written */
            if (round == 1 && i % 4 == 2) {
                /* 12 of 200 kB: more than one message can answer */
                memset(large, (int)i, BIG);
                cr_assert_eq(meta_rec_put(cl, 7, keys[i], strlen(keys[i]), 0, large, BIG, NULL),
                             0);
                continue;
            }
            cr_assert_eq(meta_rec_put(cl, 7, keys[i], strlen(keys[i]), 0, keys[i],
                                      (uint32_t)strlen(keys[i]), &ver),
                         0);
            if (i % 4 == 3)
                cr_assert_eq(meta_rec_del(cl, 7, keys[i], strlen(keys[i]), ver), 0);
        }
        for (unsigned i = 0; i < N; i++)
            g[N - 1 - i] = (struct meta_get){.shard = 7, .key = keys[i], .klen = strlen(keys[i])};
        meta_rec_get_many(cl, g, N);
        for (unsigned i = 0; i < N; i++) {
            struct meta_get *x = &g[N - 1 - i];
            struct meta_rec r;
            int rc = meta_rec_get(cl, 7, keys[i], strlen(keys[i]), &r);

            cr_assert_eq(x->rc, rc, "%s: batch %d, single %d", keys[i], x->rc, rc);
            cr_assert_eq(x->rec.version, r.version, "%s: version", keys[i]);
            cr_assert_eq(x->rec.len, r.len, "%s: length", keys[i]);
            cr_assert(r.len == 0 || memcmp(x->rec.val, r.val, r.len) == 0, "%s: value", keys[i]);
            cr_assert_eq(rc, i % 4 == 1 || i % 4 == 3 ? CAIRN_ENOENT : 0, "%s", keys[i]);
            if (round == 1 && i % 4 == 2)
                cr_assert_eq(r.len, (uint32_t)BIG);
            free(r.val);
            free(x->rec.val);
        }
    }
    free(large);
}

Test(rec, acknowledged_record_survives_kill9_of_every_replica)
{
    unsigned set[MAP_MAX_REPLICAS];
    uint64_t v1 = 0;

    cr_assert_eq(put("durable", 0, "kept", &v1), 0);
    replicas_of("durable", set);
    /* kill -9 of all of them right after the acknowledgement, then back: it was on flash. */
    for (unsigned i = 0; i < REPLICAS; i++)
        cr_assert_eq(dcluster_kill(dc, set[i]), 0);
    cr_assert_eq(dcluster_restart_set(dc, set, REPLICAS), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    assert_record(cl, "durable", "kept", v1);
}

Test(rec, leader_killed_another_takes_over_without_losing_updates)
{
    struct cl_cluster *v2;
    uint64_t v1 = 0, vn = 0;
    unsigned leader, now;

    cr_assert_eq(put("lead", 0, "one", &v1), 0);
    leader = leader_of("lead");
    cr_assert_eq(dcluster_kill(dc, leader), 0);
    /* A view that never talked to it, and the one that did: both carry on once the two
     * others elected a leader; the acknowledged record is there. */
    open_view(&v2);
    assert_record(v2, "lead", "one", v1);
    cr_assert_eq(put("lead", v1, "two", &vn), 0);
    cr_assert_gt(vn, v1);
    assert_record(v2, "lead", "two", vn);
    now = leader_of("lead");
    cr_assert_neq(now, leader, "the dead D-node still leads");
    /* It comes back as a follower and catches up; then kill the new leader too: the returned
     * node must hold the update it missed, since it is now needed for a majority. */
    cr_assert_eq(dcluster_restart(dc, leader), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    cr_assert_eq(put("lead", vn, "three", &v1), 0);
    now = leader_of("lead");
    cr_assert_eq(dcluster_kill(dc, now), 0);
    assert_record(v2, "lead", "three", v1);
    cl_cluster_close(v2);
}

/* A D-node that missed updates while it was away must never decide a compare-and-set on its
 * old copy (the old replication protocol got this wrong: its tests were disabled). */
Test(rec, returning_replica_cannot_accept_stale_updates)
{
    unsigned set[MAP_MAX_REPLICAS], away;
    uint64_t v1 = 0, v2 = 0, vc = 0;

    cr_assert_eq(put("back", 0, "one", &v1), 0);
    replicas_of("back", set);
    away = set[0];
    cr_assert_eq(dcluster_kill(dc, away), 0);
    cl_cluster_note(cl, away, CAIRN_EUNREACH);
    cr_assert_eq(put("back", v1, "two", &v2), 0);
    cr_assert_eq(put("new", 0, "made", &vc), 0);
    cr_assert_eq(dcluster_restart(dc, away), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    /* Now stop one of the two that saw the updates: the majority is the returned node and
     * one witness, and both updates must still rule. */
    cr_assert_eq(dcluster_kill(dc, set[1]), 0);
    cl_cluster_note(cl, set[1], CAIRN_EUNREACH);
    cr_assert_eq(put("back", v1, "stale", NULL), CAIRN_ECONFLICT);
    assert_record(cl, "back", "two", v2);
    /* (new's shard may have lost a different member, or none: it must hold either way.) */
    cr_assert_eq(put("new", 0, "twice", NULL), CAIRN_ECONFLICT);
    assert_record(cl, "new", "made", vc);
}

Test(rec, majority_lost_is_unreachable_then_nothing_lost)
{
    struct cl_cluster_config cfg = *dcluster_config(dc);
    struct cl_cluster *quick;
    unsigned set[MAP_MAX_REPLICAS];
    uint64_t v1 = 0;
    struct meta_rec r;
    int rc;

    cr_assert_eq(put("few", 0, "one", &v1), 0);
    replicas_of("few", set);
    cfg.leader_wait_ms = 3000;
    cr_assert_eq(cl_cluster_open(&cfg, &quick), 0);
    cr_assert_eq(dcluster_kill(dc, set[0]), 0);
    cr_assert_eq(dcluster_kill(dc, set[1]), 0);
    /* One of three left: no read or write may claim success. */
    rc = put_in(quick, "few", v1, "two", NULL);
    cr_assert_eq(rc, CAIRN_EUNREACH, "put with one of three replicas: %s", cairn_strerror(rc));
    rc = meta_rec_get(quick, shard_of("few"), "few", 3, &r);
    cr_assert_eq(rc, CAIRN_EUNREACH, "get with one of three replicas: %s", cairn_strerror(rc));
    cr_assert_eq(dcluster_restart_set(dc, set, 2), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    /* The refused put's outcome was unknown; the acknowledged one is certain. */
    cr_assert_eq(meta_rec_get(cl, shard_of("few"), "few", 3, &r), 0);
    cr_assert(r.version == v1 ? r.len == 3 && !memcmp(r.val, "one", 3)
                              : r.len == 3 && !memcmp(r.val, "two", 3) && r.version > v1);
    free(r.val);
    cl_cluster_close(quick);
}

/* Racing writers: threads with views of their own add 1 to one counter by compare-and-set.
 * Each acknowledged increment must count exactly once: the final value is the number of
 * successes, and no two successes got the same version. */
#define RACERS 3
#define ROUNDS 25

struct racer {
    struct cl_cluster *v;
    unsigned wins;
    uint64_t versions[ROUNDS];
    int err;
};

static void *race(void *arg)
{
    struct racer *r = arg;

    while (r->wins < ROUNDS && !r->err) {
        struct meta_rec rec;
        char buf[32];
        unsigned n = 0;
        uint64_t ver;
        int rc = meta_rec_get(r->v, shard_of("counter"), "counter", 7, &rec);

        if (rc) {
            r->err = rc;
            break;
        }
        if (rec.len < sizeof(buf)) {
            memcpy(buf, rec.val, rec.len);
            buf[rec.len] = 0;
            n = (unsigned)strtoul(buf, NULL, 10);
        }
        free(rec.val);
        snprintf(buf, sizeof(buf), "%u", n + 1);
        rc = put_in(r->v, "counter", rec.version, buf, &ver);
        if (rc == 0)
            r->versions[r->wins++] = ver;
        else if (rc != CAIRN_ECONFLICT)
            r->err = rc;
    }
    return NULL;
}

Test(rec, racing_writers_each_count_once)
{
    struct racer r[RACERS] = {0};
    pthread_t t[RACERS];
    struct meta_rec rec;
    char buf[32];

    cr_assert_eq(put("counter", 0, "0", NULL), 0);
    for (int i = 0; i < RACERS; i++)
        open_view(&r[i].v);
    for (int i = 0; i < RACERS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, race, &r[i]), 0);
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < RACERS; i++) {
        cr_assert_eq(r[i].err, 0, "racer %d: %s", i, cairn_strerror(r[i].err));
        cr_assert_eq(r[i].wins, (unsigned)ROUNDS);
        for (int j = 0; j <= i; j++)
            for (unsigned a = 0; a < ROUNDS; a++)
                for (unsigned b = 0; b < ROUNDS; b++)
                    cr_assert(i == j && a == b ? 1 : r[i].versions[a] != r[j].versions[b],
                              "two increments acknowledged at one version");
        cl_cluster_close(r[i].v);
    }
    cr_assert_eq(meta_rec_get(cl, shard_of("counter"), "counter", 7, &rec), 0);
    memcpy(buf, rec.val, rec.len);
    buf[rec.len] = 0;
    cr_assert_eq(strtoul(buf, NULL, 10), (unsigned long)(RACERS * ROUNDS), "counter %s", buf);
    free(rec.val);
}
