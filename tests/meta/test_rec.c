/*
 * Replicated record tests against four real D-nodes with a 2+2 layout, so every record has
 * m + 1 = 3 replicas and one D-node is left to stand in for a dead member.
 *
 * What a replica holds is read straight from its D-node (a KV_GET to that node alone, see
 * raw_get()), so "every member holds it", "the returning node was repaired" and "the
 * tombstone is there" are observed, not inferred from meta_rec_get(), which would hide a
 * stale replica behind the newest copy.  The replica set of a record is found the same way:
 * the nodes that hold it after a put with all D-nodes up.
 *
 * Killing a D-node is followed either by nothing (the record layer must find out through a
 * deadline and retry with the recomputed set) or by cl_cluster_note(), the report a failed
 * call makes, so that tests about what happens next do not each pay a deadline.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cluster.h"
#include "common/cairn.h"
#include "meta/rec.h"
#include "tests/support/dcluster.h"

#define NODES 4u
#define REPLICAS 3u /* m + 1 */

static struct dcluster *dc;
static struct cl_cluster *cl;

static void setup(void)
{
    struct dcluster_opts o = {.nodes = NODES, .k = 2, .m = 2};

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

TestSuite(rec, .init = setup, .fini = teardown, .timeout = 120);

/* ---- one replica, read directly ---- */

struct raw {
    bool done;
    int tstatus, status;
    uint64_t version;
    uint32_t len;
};

static void raw_done(void *arg, int status, const Cairn__Response *resp)
{
    struct raw *r = arg;

    r->tstatus = status;
    if (!status) {
        r->status = resp->status;
        r->version = resp->version;
        r->len = resp->payload_len;
    }
    r->done = true;
}

/* D-node node's own copy of a record: 0 with its version and liveness (the first stored
 * byte), CAIRN_ENOENT if it has none, or a transport error. */
static int raw_get(struct cl_cluster *v, unsigned node, uint32_t shard, const void *key,
                   size_t klen, uint64_t *version, bool *live)
{
    uint32_t cap = tp_ctx_max_payload(cl_cluster_tp(v));
    uint8_t *buf = malloc(cap);
    Cairn__Request req = CAIRN__REQUEST__INIT;
    struct raw r = {0};
    int rc;

    cr_assert_not_null(buf);
    req.op = CAIRN__OP__OP_KV_GET;
    req.shard = shard;
    req.key.data = (uint8_t *)key;
    req.key.len = klen;
    rc = cl_cluster_call(v, node, &req, NULL, 0, buf, cap, raw_done, &r);
    cr_assert_eq(rc, 0, "KV_GET to D-node %u not sent", node);
    while (!r.done)
        tp_ctx_wait(cl_cluster_tp(v), 100);
    rc = r.tstatus ? r.tstatus : r.status;
    *version = r.version;
    *live = !rc && r.len > 0 && buf[0] == 1;
    free(buf);
    return rc;
}

/* The D-nodes holding any copy of the record (all must be up): its replica set. */
static unsigned holders(uint32_t shard, const char *key, unsigned *nodes)
{
    unsigned n = 0;

    for (unsigned i = 0; i < NODES; i++) {
        uint64_t ver;
        bool live;
        int rc = raw_get(cl, i, shard, key, strlen(key), &ver, &live);

        cr_assert(rc == 0 || rc == CAIRN_ENOENT, "D-node %u: %s", i, cairn_strerror(rc));
        if (rc == 0)
            nodes[n++] = i;
    }
    return n;
}

static bool member(const unsigned *set, unsigned n, unsigned node)
{
    for (unsigned i = 0; i < n; i++)
        if (set[i] == node)
            return true;
    return false;
}

/* Assert D-node node holds the record at version ver, live or as a tombstone. */
static void assert_replica(unsigned node, uint32_t shard, const char *key, uint64_t ver, bool live)
{
    uint64_t got;
    bool got_live;
    int rc = raw_get(cl, node, shard, key, strlen(key), &got, &got_live);

    cr_assert_eq(rc, 0, "D-node %u has no copy of %s: %s", node, key, cairn_strerror(rc));
    cr_assert_eq(got, ver, "D-node %u holds %s at version %llu, want %llu", node, key,
                 (unsigned long long)got, (unsigned long long)ver);
    cr_assert_eq(got_live, live, "D-node %u: %s is %s", node, key, got_live ? "live" : "dead");
}

/* ---- record helpers ---- */

static uint32_t shard_of(const char *key)
{
    return meta_shard_of(key, strlen(key));
}

static int put(const char *key, uint64_t expect, const char *val, uint64_t *ver)
{
    return meta_rec_put(cl, shard_of(key), key, strlen(key), expect, val, (uint32_t)strlen(val),
                        ver);
}

/* Assert the newest copy of key is val at version ver (val NULL: absent, ver = tombstone's). */
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

/* The view learns that node is dead as a failed call would tell it (no deadline paid). */
static void kill_known(unsigned node)
{
    cr_assert_eq(dcluster_kill(dc, node), 0);
    cl_cluster_note(cl, node, CAIRN_EUNREACH);
}

static void restart(unsigned node)
{
    cr_assert_eq(dcluster_restart(dc, node), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0, "D-node %u not back", node);
}

/* ---- tests ---- */

Test(rec, put_get_round_trip_on_every_replica)
{
    const char *key = "alpha";
    unsigned set[NODES];
    uint64_t v1 = 0, v2 = 0;

    assert_record(cl, key, NULL, 0); /* never existed: version 0 */
    cr_assert_eq(put(key, 0, "one", &v1), 0);
    cr_assert_gt(v1, 0);
    assert_record(cl, key, "one", v1);
    /* Acknowledged means on all m + 1 members, each at the version the put returned. */
    cr_assert_eq(holders(shard_of(key), key, set), REPLICAS);
    for (unsigned i = 0; i < REPLICAS; i++)
        assert_replica(set[i], shard_of(key), key, v1, true);

    cr_assert_eq(put(key, v1, "two", &v2), 0);
    cr_assert_gt(v2, v1, "versions must grow");
    assert_record(cl, key, "two", v2);
    for (unsigned i = 0; i < REPLICAS; i++)
        assert_replica(set[i], shard_of(key), key, v2, true);

    /* An empty value is a value, not an absent record. */
    cr_assert_eq(put("empty", 0, "", &v1), 0);
    assert_record(cl, "empty", "", v1);

    /* Unconditional puts (META_ANY) version like the others. */
    cr_assert_eq(put("any", META_ANY, "a", &v1), 0);
    cr_assert_eq(put("any", META_ANY, "b", &v2), 0);
    cr_assert_gt(v2, v1);
    assert_record(cl, "any", "b", v2);
}

Test(rec, stale_compare_and_set_conflicts_and_changes_nothing)
{
    uint64_t v1 = 0, v2 = 0, v3 = 0;

    /* Create-if-absent (expect 0), twice: the second finds the first. */
    cr_assert_eq(put("once", 0, "first", &v1), 0);
    cr_assert_eq(put("once", 0, "second", &v2), CAIRN_ECONFLICT);
    assert_record(cl, "once", "first", v1);

    cr_assert_eq(put("cas", 0, "one", &v1), 0);
    cr_assert_eq(put("cas", v1, "two", &v2), 0);
    cr_assert_eq(put("cas", v1, "stale", &v3), CAIRN_ECONFLICT);
    cr_assert_eq(put("cas", v2 + 1, "future", &v3), CAIRN_ECONFLICT);
    assert_record(cl, "cas", "two", v2);
    /* A conditional delete is held to the same rule. */
    cr_assert_eq(meta_rec_del(cl, shard_of("cas"), "cas", 3, v1), CAIRN_ECONFLICT);
    assert_record(cl, "cas", "two", v2);
}

Test(rec, delete_writes_a_tombstone)
{
    const char *key = "gone";
    uint32_t shard = shard_of(key);
    unsigned set[NODES];
    uint64_t v1 = 0, v2 = 0;
    struct cl_cluster *other;
    struct meta_rec r;

    cr_assert_eq(put(key, 0, "x", &v1), 0);
    cr_assert_eq(holders(shard, key, set), REPLICAS);
    cr_assert_eq(meta_rec_del(cl, shard, key, strlen(key), v1), 0);

    /* Gone for readers, but its version is what a create must name. */
    cr_assert_eq(meta_rec_get(cl, shard, key, strlen(key), &r), CAIRN_ENOENT);
    cr_assert_null(r.val);
    cr_assert_gt(r.version, v1, "the tombstone needs a version above the record's");
    for (unsigned i = 0; i < REPLICAS; i++)
        assert_replica(set[i], shard, key, r.version, false);

    /* A stale create (expecting "never existed") and a put with the old version fail... */
    cr_assert_eq(put(key, 0, "y", &v2), CAIRN_ECONFLICT);
    cr_assert_eq(put(key, v1, "y", &v2), CAIRN_ECONFLICT);
    assert_record(cl, key, NULL, r.version);
    /* ...a create that names the tombstone succeeds, above it. */
    cr_assert_eq(put(key, r.version, "again", &v2), 0);
    cr_assert_gt(v2, r.version);
    assert_record(cl, key, "again", v2);

    /* Deleting what is not there (unconditionally) says so. */
    cr_assert_eq(meta_rec_del(cl, shard_of("never"), "never", 5, META_ANY), CAIRN_ENOENT);

    /* Another C-node deletes a record this one has read: a put based on what it read must
     * not bring the record back. */
    cr_assert_eq(dcluster_open(dc, &other), 0);
    cr_assert_eq(put("shared", 0, "v1", &v1), 0);
    cr_assert_eq(meta_rec_get(cl, shard_of("shared"), "shared", 6, &r), 0);
    free(r.val);
    cr_assert_eq(meta_rec_del(other, shard_of("shared"), "shared", 6, v1), 0);
    cr_assert_eq(put("shared", r.version, "lost update", &v2), CAIRN_ECONFLICT,
                 "a put based on a deleted version was accepted");
    cr_assert_eq(meta_rec_get(other, shard_of("shared"), "shared", 6, &r), CAIRN_ENOENT);
    cl_cluster_close(other);
}

Test(rec, limits)
{
    char key[META_REC_MAX_KEY + 1];
    uint64_t v;
    uint8_t *big = calloc(1, META_REC_MAX_VAL + 1);
    struct meta_rec r;

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
    /* Large values (an inode with its inline bytes, a manifest) are records like any other. */
    for (uint32_t i = 0; i < 200000; i++)
        big[i] = (uint8_t)(i * 31);
    cr_assert_eq(meta_rec_put(cl, 1, "large", 5, 0, big, 200000, &v), 0);
    cr_assert_eq(meta_rec_get(cl, 1, "large", 5, &r), 0);
    cr_assert(r.len == 200000 && memcmp(r.val, big, r.len) == 0);
    free(r.val);
    free(big);
}

/*
 * The documented limit is a value meta_rec_put() can store.  The stored value is one liveness
 * byte + the value, so a limit of 1 MiB made a 1 MiB + 1 payload, above the transport's and
 * the D-node KV's 1 MiB (this test found it): the limit is now 1 MiB - 1.
 */
Test(rec, largest_documented_value_round_trips)
{
    uint8_t *big = malloc(META_REC_MAX_VAL);
    struct meta_rec r;
    uint64_t v;
    int rc;

    cr_assert_not_null(big);
    memset(big, 0x5a, META_REC_MAX_VAL);
    rc = meta_rec_put(cl, 1, "max", 3, 0, big, META_REC_MAX_VAL, &v);
    cr_assert_eq(rc, 0, "put of META_REC_MAX_VAL bytes: %s", cairn_strerror(rc));
    cr_assert_eq(meta_rec_get(cl, 1, "max", 3, &r), 0);
    cr_assert(r.len == META_REC_MAX_VAL && memcmp(r.val, big, r.len) == 0);
    free(r.val);
    free(big);
}

/* The keys of the scan test: "k00".."k29" in shard 7. */
static void scan_key(char *k, unsigned i)
{
    snprintf(k, 8, "k%02u", i);
}

Test(rec, scan_lists_live_records_in_order_and_pages)
{
    const uint32_t shard = 7;
    enum { N = 30 };
    bool deleted[N] = {false};
    uint64_t ver[N];
    char key[8], start[8];
    unsigned got = 0, pages = 0;
    uint32_t slen;
    struct meta_scan s;

    /* Written out of order; keys just outside the range and in another shard must not show. */
    for (unsigned j = 0; j < N; j++) {
        unsigned i = (j * 7) % N; /* 7 is coprime to 30: every key once */

        scan_key(key, i);
        cr_assert_eq(meta_rec_put(cl, shard, key, 3, 0, key, 3, &ver[i]), 0);
    }
    cr_assert_eq(meta_rec_put(cl, shard, "j99", 3, 0, "out", 3, NULL), 0);
    cr_assert_eq(meta_rec_put(cl, shard, "l00", 3, 0, "out", 3, NULL), 0);
    cr_assert_eq(meta_rec_put(cl, shard + 1, "k15x", 4, 0, "other", 5, NULL), 0);
    /* A run of deletes longer than a page (3..9), and a few scattered ones. */
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
            cr_assert_lt(got, (unsigned)N, "more entries than live records");
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
    cr_assert_geq(pages, 5u, "21 live records in pages of 5 came in %u pages", pages);

    /* No limit (0 = the maximum): everything in one page. */
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
        if (i % 5 == 1)
            cr_assert(rc == CAIRN_ENOENT && r.version == 0, "%s: absent", keys[i]);
        else if (i % 5 == 3)
            cr_assert(rc == CAIRN_ENOENT && r.version > 0, "%s: deleted", keys[i]);
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

Test(rec, too_few_nodes_is_unreachable_not_less_redundancy)
{
    uint64_t v1 = 0, v2 = 0;
    struct meta_rec r;

    cr_assert_eq(put("few", 0, "one", &v1), 0);
    /* Two of four left: fewer than m + 1, so no read or write may claim success. */
    kill_known(0);
    kill_known(1);
    cr_assert_eq(put("few", v1, "two", &v2), CAIRN_EUNREACH);
    cr_assert_eq(meta_rec_get(cl, shard_of("few"), "few", 3, &r), CAIRN_EUNREACH);
    cr_assert_eq(dcluster_restart_set(dc, (unsigned[]){0, 1}, 2), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    assert_record(cl, "few", "one", v1);
}

Test(rec, silent_member_costs_a_deadline_not_a_failure)
{
    const char *key = "silent";
    uint32_t shard = shard_of(key);
    unsigned set[NODES], spare = NODES;
    uint64_t v1 = 0, v2 = 0;

    cr_assert_eq(put(key, 0, "one", &v1), 0);
    cr_assert_eq(holders(shard, key, set), REPLICAS);
    for (unsigned i = 0; i < NODES; i++)
        if (!member(set, REPLICAS, i))
            spare = i;
    /* The view is not told: the first call to the dead member has to time out, and the
     * record layer retries with the replica set recomputed without it. */
    cr_assert_eq(dcluster_kill(dc, set[1]), 0);
    assert_record(cl, key, "one", v1);
    cr_assert(cl_cluster_node_down(cl, set[1]), "the silent member is not marked down");

    cr_assert_eq(put(key, v1, "two", &v2), 0);
    assert_record(cl, key, "two", v2);
    /* Still m + 1 copies: the survivors and the D-node that took the dead one's place. */
    assert_replica(set[0], shard, key, v2, true);
    assert_replica(set[2], shard, key, v2, true);
    assert_replica(spare, shard, key, v2, true);
}

Test(rec, acknowledged_record_survives_kill9_of_each_replica)
{
    const char *key = "durable";
    uint32_t shard = shard_of(key);
    unsigned set[NODES];
    uint64_t v1 = 0;

    cr_assert_eq(put(key, 0, "kept", &v1), 0);
    cr_assert_eq(holders(shard, key, set), REPLICAS);

    /* kill -9 of every member right after the acknowledgement: each must still have it on
     * its device when it comes back (the D-node commits before it answers). */
    for (unsigned i = 0; i < REPLICAS; i++)
        kill_known(set[i]);
    cr_assert_eq(dcluster_restart_set(dc, set, REPLICAS), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    for (unsigned i = 0; i < REPLICAS; i++)
        assert_replica(set[i], shard, key, v1, true);

    /* And with any one member dead, readers get it from the others. */
    for (unsigned i = 0; i < REPLICAS; i++) {
        kill_known(set[i]);
        assert_record(cl, key, "kept", v1);
        if (i + 1 < REPLICAS)
            restart(set[i]);
    }
}

Test(rec, read_repairs_a_returning_replica)
{
    const char *key = "repair", *dkey = "repair-del";
    uint32_t shard = shard_of(key), dshard = shard_of(dkey);
    unsigned set[NODES], dset[NODES], x = NODES;
    uint64_t v1 = 0, v2 = 0, d1 = 0, behind = 0, ver;
    struct meta_rec r;
    bool live;

    cr_assert_eq(put(key, 0, "old", &v1), 0);
    cr_assert_eq(put(dkey, 0, "doomed", &d1), 0);
    cr_assert_eq(holders(shard, key, set), REPLICAS);
    cr_assert_eq(holders(dshard, dkey, dset), REPLICAS);
    /* A D-node that holds both records. */
    for (unsigned i = 0; i < REPLICAS && x == NODES; i++)
        if (member(dset, REPLICAS, set[i]))
            x = set[i];
    cr_assert_neq(x, NODES, "no D-node holds both records (3 of 4 each: impossible)");
    cr_assert_eq(meta_rec_sync(cl, x, true, &behind), 0);
    cr_assert_eq(behind, 0);

    /* While x is away: one record updated, the other deleted. */
    kill_known(x);
    cr_assert_eq(put(key, v1, "new", &v2), 0);
    cr_assert_eq(meta_rec_del(cl, dshard, dkey, strlen(dkey), d1), 0);
    restart(x);

    /* Back, it holds the old copies; the two other members of each record are ahead. */
    assert_replica(x, shard, key, v1, true);
    assert_replica(x, dshard, dkey, d1, true);
    cr_assert_eq(meta_rec_sync(cl, x, true, &behind), 0);
    cr_assert_eq(behind, 4, "behind on %llu copies, want 2 records x 2 members",
                 (unsigned long long)behind);

    /* Readers see the newest copy, never the returning node's, and repair it on the way. */
    assert_record(cl, key, "new", v2);
    cr_assert_eq(meta_rec_get(cl, dshard, dkey, strlen(dkey), &r), CAIRN_ENOENT,
                 "a record deleted while a replica was away came back");
    assert_replica(x, shard, key, v2, true);
    cr_assert_eq(raw_get(cl, x, dshard, dkey, strlen(dkey), &ver, &live), 0);
    cr_assert_eq(ver, r.version);
    cr_assert_not(live, "the returning replica still has the deleted record live");
    cr_assert_eq(meta_rec_sync(cl, x, true, &behind), 0);
    cr_assert_eq(behind, 0, "still behind on %llu copies after read repair",
                 (unsigned long long)behind);
}

Test(rec, sync_brings_a_returning_node_up_to_date)
{
    enum { N = 40 };
    const unsigned x = 2;
    unsigned set[N][NODES];
    uint64_t ver[N], count = 0, copied = 0, expect = 0;
    char keys[N][16];

    for (unsigned i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "sync%u", i);
        cr_assert_eq(put(keys[i], 0, "before", &ver[i]), 0);
        cr_assert_eq(holders(shard_of(keys[i]), keys[i], set[i]), REPLICAS);
    }
    kill_known(x);
    for (unsigned i = 0; i < N; i++) {
        if (i % 4 == 0)
            cr_assert_eq(meta_rec_del(cl, shard_of(keys[i]), keys[i], strlen(keys[i]), ver[i]), 0);
        else
            cr_assert_eq(put(keys[i], ver[i], "after", &ver[i]), 0);
        if (member(set[i], REPLICAS, x))
            expect += 2; /* the record's two other members are each ahead of x */
    }
    cr_assert_gt(expect, 0, "D-node %u is a member of none of %d records", x, N);
    restart(x);

    cr_assert_eq(meta_rec_sync(cl, x, true, &count), 0);
    cr_assert_eq(count, expect, "behind on %llu, want %llu", (unsigned long long)count,
                 (unsigned long long)expect);
    cr_assert_eq(meta_rec_sync(cl, x, false, &copied), 0);
    /* Each record is copied once; the second member's copy is then not newer. */
    cr_assert_eq(copied, expect / 2, "copied %llu records", (unsigned long long)copied);
    cr_assert_eq(meta_rec_sync(cl, x, true, &count), 0);
    cr_assert_eq(count, 0, "still behind on %llu after the sweep", (unsigned long long)count);

    /* Not by read repair: nothing was read.  x holds every change at its version. */
    for (unsigned i = 0; i < N; i++) {
        struct meta_rec r;

        if (!member(set[i], REPLICAS, x))
            continue;
        cr_assert_eq(meta_rec_get(cl, shard_of(keys[i]), keys[i], strlen(keys[i]), &r),
                     i % 4 == 0 ? CAIRN_ENOENT : 0);
        assert_replica(x, shard_of(keys[i]), keys[i], r.version, i % 4 != 0);
        free(r.val);
    }
}

/*
 * BUG (meta/rec.c, found by this test; also the create test below): the compare-and-set is
 * decided on the primary alone, and nothing brings a returning primary up to date before it
 * decides.  A member that was down while a record changed, and is primary again once it is
 * back, accepts a put that expects the version it still holds (a C-node that read before the
 * D-node died); rec_write() then copies that put to the other members with "newer version
 * wins", so the update acknowledged meanwhile is silently overwritten: a lost update, against
 * invariant 3 ("no acknowledged update is ever lost or overwritten by a stale copy").  rec.h
 * says read repair brings a returning primary up to date "before the next conditional put is
 * decided on it", but that holds only if some reader reads the record first; the catch-up
 * sweep (meta_rec_sync) runs after the D-node serves.  Fails for whichever member is the
 * primary (every member takes the turn of the returning node).  Enable when fixed.
 */
Test(rec, stale_put_on_a_returning_member_conflicts, .disabled = true)
{
    const char *key = "primary";
    uint32_t shard = shard_of(key);
    unsigned set[NODES];
    uint64_t cur = 0, next = 0, stale = 0;
    char val[32];

    cr_assert_eq(put(key, 0, "v0", &cur), 0);
    cr_assert_eq(holders(shard, key, set), REPLICAS);
    for (unsigned i = 0; i < REPLICAS; i++) {
        uint64_t seen = cur; /* what a slow C-node read before the D-node died */

        kill_known(set[i]);
        snprintf(val, sizeof(val), "while %u was away", set[i]);
        cr_assert_eq(put(key, cur, val, &next), 0);
        restart(set[i]);
        cr_assert_eq(put(key, seen, "stale", &stale), CAIRN_ECONFLICT,
                     "D-node %u back: a put expecting the version it missed was accepted", set[i]);
        assert_record(cl, key, val, next);
        cur = next;
    }
}

/* BUG (the same as above) for create-if-absent: a record created while its primary was away
 * is created a second time once the primary is back, overwriting the first (what
 * meta_inode_create and meta_upload_create rely on).  Enable when fixed. */
Test(rec, create_on_a_returning_member_conflicts, .disabled = true)
{
    unsigned set[NODES];
    uint64_t v0 = 0, v1 = 0;

    /* Find the replica set of the key's shard with a throwaway record. */
    cr_assert_eq(put("create-probe", 0, "x", &v0), 0);
    cr_assert_eq(holders(shard_of("create-probe"), "create-probe", set), REPLICAS);
    for (unsigned i = 0; i < REPLICAS; i++) {
        char key[32];

        /* Same shard as the probe record, so the same replica set. */
        snprintf(key, sizeof(key), "create-%u", set[i]);
        kill_known(set[i]);
        cr_assert_eq(
            meta_rec_put(cl, shard_of("create-probe"), key, strlen(key), 0, "first", 5, &v0), 0);
        restart(set[i]);
        cr_assert_eq(
            meta_rec_put(cl, shard_of("create-probe"), key, strlen(key), 0, "second", 6, &v1),
            CAIRN_ECONFLICT, "D-node %u back: a second create of %s was accepted", set[i], key);
    }
}
