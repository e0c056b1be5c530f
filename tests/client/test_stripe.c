/*
 * Stripe client tests against six real D-nodes (4+2, 64 KiB fragments): round trips of every
 * shape of object (empty, one byte, partial, exactly one stripe, more stripes than the
 * window), objects written in pieces, generations as separate objects, immutability of
 * fragments, degraded reads with up to m D-nodes dead or fragments corrupted on the device,
 * refusal with more than m lost, deletes, and writes while a D-node is down.
 *
 * The fragment counts the D-nodes report (ping) are the witness for what a write or delete
 * left on flash, so "nothing left behind" is checked, not assumed.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cluster.h"
#include "client/placement.h"
#include "client/stripe.h"
#include "common/cairn.h"
#include "tests/support/dcluster.h"

#define NODES 6u
#define K 4u
#define M 2u
#define FRAG (64u << 10)
#define STRIPE ((uint64_t)K * FRAG)

static struct dcluster *dc;
static struct cl_cluster *cl;

static void setup(void)
{
    struct dcluster_opts o = {.nodes = NODES, .k = K, .m = M, .frag_size = FRAG};
    uint8_t *warm = calloc(1, STRIPE);

    cr_assert_eq(dcluster_start(&o, &dc), 0, "start D-nodes");
    cr_assert_eq(dcluster_open(dc, &cl), 0, "open cluster view");
    /* First contact with a fresh D-node is slow (connection setup, then the first message
     * above the eager size: 0.5-1.8 s measured on this host), which a test of deadlines must
     * not mistake for a dead node.  One stripe written and deleted touches all six. */
    cr_assert_not_null(warm);
    cr_assert_eq(cl_stripe_write(cl, UINT64_MAX, 1, warm, STRIPE, NULL, NULL), 0, "warm-up");
    cr_assert_eq(cl_stripe_delete(cl, UINT64_MAX, 1, cl_cluster_layout(cl), NULL, STRIPE), 0);
    free(warm);
}

static void teardown(void)
{
    cl_cluster_close(cl);
    cl = NULL;
    dcluster_stop(dc);
    dc = NULL;
}

TestSuite(stripe, .init = setup, .fini = teardown, .timeout = 120);

/* Deterministic bytes that differ per object (seed), so a fragment of one object can never
 * pass for another's. */
static uint8_t *pattern(uint64_t len, uint64_t seed)
{
    uint8_t *p = malloc(len ? len : 1);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

    cr_assert_not_null(p);
    for (uint64_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
    return p;
}

static uint64_t frags_on(unsigned node)
{
    uint64_t n = 0;

    cr_assert_eq(cl_cluster_ping(cl, node, NULL, NULL, &n), 0, "ping D-node %u", node);
    return n;
}

/* Fragments on the running D-nodes (a dead one is not asked: it would cost a deadline). */
static uint64_t frags_live(void)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < NODES; i++)
        if (dcluster_running(dc, i))
            n += frags_on(i);
    return n;
}

/* Read len bytes of the object into a buffer poisoned beforehand, so bytes the read did not
 * deliver cannot match by accident. */
static int read_obj(uint64_t obj, uint32_t gen, uint64_t len, uint8_t **out, struct cl_io_stats *st)
{
    uint8_t *buf = malloc(len ? len : 1);

    cr_assert_not_null(buf);
    memset(buf, 0xa5, len ? len : 1);
    memset(st, 0, sizeof(*st));
    *out = buf;
    return cl_stripe_read(cl, obj, gen, cl_cluster_layout(cl), NULL, buf, len, st);
}

static void assert_same(const uint8_t *got, const uint8_t *want, uint64_t len, const char *what)
{
    for (uint64_t i = 0; i < len; i++)
        if (got[i] != want[i])
            cr_assert_fail("%s: byte %llu of %llu differs (%02x, want %02x)", what,
                           (unsigned long long)i, (unsigned long long)len, got[i], want[i]);
}

/* Stripes of an object whose data fragments include one on a node of dead[]: the stripes a
 * read must rebuild from parity. */
static uint64_t stripes_touching(uint64_t obj, uint64_t nstripes, const unsigned *dead,
                                 unsigned ndead)
{
    uint64_t n = 0;

    for (uint64_t s = 0; s < nstripes; s++) {
        unsigned nodes[K + M];
        bool hit = false;

        cr_assert_eq(cl_cluster_place(cl, cl_stripe_id(obj, s), K + M, nodes), 0);
        for (unsigned j = 0; j < K; j++)
            for (unsigned d = 0; d < ndead; d++)
                hit |= nodes[j] == dead[d];
        n += hit;
    }
    return n;
}

Test(stripe, roundtrip_every_shape)
{
    /* Empty, one byte, a partial stripe spanning two fragments, one byte short of a stripe,
     * exactly one stripe, and more stripes than the write window (8) with a partial tail. */
    const uint64_t sizes[] = {0, 1, FRAG + 1, STRIPE - 1, STRIPE, 9 * STRIPE + 12345};

    for (unsigned t = 0; t < CAIRN_ARRAY_SIZE(sizes); t++) {
        uint64_t len = sizes[t], obj = 1000 + t, nstripes = (len + STRIPE - 1) / STRIPE;
        uint8_t *data = pattern(len, obj), *got;
        uint64_t before = frags_live();
        struct cl_io_stats st = {0};

        cr_assert_eq(cl_stripe_write(cl, obj, 1, data, len, NULL, &st), 0, "write %llu bytes",
                     (unsigned long long)len);
        cr_assert_eq(st.stripes, nstripes, "%llu bytes: stripes written", (unsigned long long)len);
        /* Every stripe is on flash as k + m fragments, and nothing else was written. */
        cr_assert_eq(frags_live() - before, nstripes * (K + M), "%llu bytes: fragments stored",
                     (unsigned long long)len);
        cr_assert_eq(read_obj(obj, 1, len, &got, &st), 0, "read %llu bytes",
                     (unsigned long long)len);
        assert_same(got, data, len, "round trip");
        cr_assert_eq(st.stripes, nstripes);
        cr_assert_eq(st.degraded_stripes, 0, "a healthy read rebuilt stripes");
        cr_assert_eq(st.frags_failed, 0);
        free(got);
        free(data);
    }
}

Test(stripe, write_at_in_pieces_then_read_at)
{
    const uint64_t len = 5 * STRIPE + 1000, obj = 77;
    uint8_t *data = pattern(len, obj), *got;
    struct cl_io_stats st = {0};

    /* Out of order on purpose: a piece's stripes are named by their place in the object, not
     * by the order they arrive in. */
    cr_assert_eq(
        cl_stripe_write_at(cl, obj, 3, 4, data + 4 * STRIPE, len - 4 * STRIPE, NULL, &st), 0);
    cr_assert_eq(cl_stripe_write_at(cl, obj, 3, 0, data, 2 * STRIPE, NULL, &st), 0);
    cr_assert_eq(cl_stripe_write_at(cl, obj, 3, 2, data + 2 * STRIPE, 2 * STRIPE, NULL, &st), 0);
    cr_assert_eq(st.stripes, 6);

    cr_assert_eq(read_obj(obj, 3, len, &got, &st), 0);
    assert_same(got, data, len, "whole object after pieces");
    free(got);

    /* The tail from stripe 3 (what the object holds from there), and two stripes from 1. */
    got = malloc(len);
    cr_assert_not_null(got);
    memset(got, 0, len);
    cr_assert_eq(
        cl_stripe_read_at(cl, obj, 3, cl_cluster_layout(cl), NULL, 3, got, len - 3 * STRIPE,
                          &st),
        0);
    assert_same(got, data + 3 * STRIPE, len - 3 * STRIPE, "read_at tail");
    memset(got, 0, len);
    cr_assert_eq(
        cl_stripe_read_at(cl, obj, 3, cl_cluster_layout(cl), NULL, 1, got, 2 * STRIPE, &st), 0);
    assert_same(got, data + STRIPE, 2 * STRIPE, "read_at middle");
    free(got);
    free(data);
}

Test(stripe, rewrite_is_a_new_generation)
{
    const uint64_t len = 2 * STRIPE + 5, obj = 5;
    uint8_t *a = pattern(len, 1), *b = pattern(len, 2), *got;
    struct cl_io_stats st;

    cr_assert_eq(cl_stripe_write(cl, obj, 1, a, len, NULL, NULL), 0);
    /* No overwrite in place (invariant 5): the same object and generation again is refused,
     * and the fragments already there are left as they were. */
    cr_assert_neq(cl_stripe_write(cl, obj, 1, b, len, NULL, NULL), 0, "a fragment was overwritten");
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), 0);
    assert_same(got, a, len, "object after a refused rewrite");
    cr_assert_eq(st.degraded_stripes, 0, "a refused rewrite damaged fragments");
    free(got);

    /* A rewrite is a new generation: a separate set of fragments. */
    cr_assert_eq(cl_stripe_write(cl, obj, 2, b, len, NULL, NULL), 0);
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), 0);
    assert_same(got, a, len, "generation 1");
    free(got);
    cr_assert_eq(read_obj(obj, 2, len, &got, &st), 0);
    assert_same(got, b, len, "generation 2");
    free(got);

    /* Freeing the old generation (what a rewrite does afterwards) leaves the new one whole. */
    cr_assert_eq(cl_stripe_delete(cl, obj, 1, cl_cluster_layout(cl), NULL, len), 0);
    cr_assert_neq(read_obj(obj, 1, len, &got, &st), 0, "deleted generation still reads");
    free(got);
    cr_assert_eq(read_obj(obj, 2, len, &got, &st), 0);
    assert_same(got, b, len, "generation 2 after deleting generation 1");
    cr_assert_eq(st.degraded_stripes, 0);
    free(got);
    free(a);
    free(b);
}

Test(stripe, degraded_read_with_m_nodes_dead)
{
    const uint64_t nstripes = 12, len = nstripes * STRIPE - 777, obj = 4242;
    uint8_t *data = pattern(len, obj), *got;
    unsigned nodes[K + M], dead[M];
    struct cl_io_stats st;
    uint64_t want;

    cr_assert_eq(cl_stripe_write(cl, obj, 1, data, len, NULL, NULL), 0);
    /* Kill the holders of stripe 0's first two data fragments, so rebuilding is certain. */
    cr_assert_eq(cl_cluster_place(cl, cl_stripe_id(obj, 0), K + M, nodes), 0);
    dead[0] = nodes[0];
    dead[1] = nodes[1];
    want = stripes_touching(obj, nstripes, dead, M);
    cr_assert_gt(want, 0);
    for (unsigned i = 0; i < M; i++)
        cr_assert_eq(dcluster_kill(dc, dead[i]), 0);

    /* The view does not know yet: the dead nodes cost a deadline, then parity takes over. */
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), 0, "read with %u D-nodes dead", M);
    assert_same(got, data, len, "degraded read (unprobed)");
    cr_assert_eq(st.stripes, nstripes);
    cr_assert_eq(st.degraded_stripes, want, "degraded stripes %llu, want %llu",
                 (unsigned long long)st.degraded_stripes, (unsigned long long)want);
    cr_assert_geq(st.frags_failed, want);
    free(got);
    cr_assert(cl_cluster_node_down(cl, dead[0]) && cl_cluster_node_down(cl, dead[1]),
              "the view did not mark the silent D-nodes down");

    /* Now it knows: parity is asked for at once, and the bytes are the same. */
    cr_assert_eq(cl_cluster_probe(cl), M);
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), 0);
    assert_same(got, data, len, "degraded read (probed)");
    cr_assert_eq(st.degraded_stripes, want);
    free(got);

    /* Back with their fragments: no stripe needs parity any more. */
    cr_assert_eq(dcluster_restart_set(dc, dead, M), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0, "restarted D-nodes still down");
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), 0);
    assert_same(got, data, len, "read after restart");
    cr_assert_eq(st.degraded_stripes, 0, "restarted D-nodes lost fragments");
    free(got);
    free(data);
}

Test(stripe, more_than_m_dead_is_an_error)
{
    const uint64_t len = 3 * STRIPE, obj = 99;
    uint8_t *data = pattern(len, obj), *got;
    struct cl_io_stats st;

    cr_assert_eq(cl_stripe_write(cl, obj, 1, data, len, NULL, NULL), 0);
    for (unsigned i = 0; i < M + 1; i++)
        cr_assert_eq(dcluster_kill(dc, i), 0);
    /* Unprobed (each lost fragment found by its deadline) and probed (known at once). */
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), CAIRN_EDEGRADED, "read with %u dead", M + 1);
    free(got);
    cr_assert_eq(cl_cluster_probe(cl), M + 1);
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), CAIRN_EDEGRADED);
    free(got);
    free(data);
}

/* The offset in D-node node's device of a 4 KiB-aligned block equal to the first 4 KiB of
 * frag (fragment payloads start on a block boundary after their header block), or -1. */
static off_t find_on_device(unsigned node, const uint8_t *frag)
{
    int fd = open(dcluster_dev_path(dc, node), O_RDONLY);
    uint8_t *blk = malloc(CAIRN_BLOCK);
    off_t off = 0, found = -1;

    cr_assert(fd >= 0 && blk);
    while (pread(fd, blk, CAIRN_BLOCK, off) == CAIRN_BLOCK) {
        if (memcmp(blk, frag, CAIRN_BLOCK) == 0) {
            found = off;
            break;
        }
        off += CAIRN_BLOCK;
    }
    close(fd);
    free(blk);
    return found;
}

/* Flip bytes inside data fragment j of stripe 0, on the device of the D-node that holds it. */
static void corrupt_data_frag(uint64_t obj, const uint8_t *data, unsigned j)
{
    unsigned nodes[K + M];
    uint8_t junk[16];
    off_t off;
    int fd;

    cr_assert_eq(cl_cluster_place(cl, cl_stripe_id(obj, 0), K + M, nodes), 0);
    off = find_on_device(nodes[j], data + (size_t)j * FRAG);
    cr_assert_geq(off, 0, "fragment %u not found on D-node %u's device", j, nodes[j]);
    for (unsigned i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)~data[(size_t)j * FRAG + 1000 + i];
    fd = open(dcluster_dev_path(dc, nodes[j]), O_WRONLY);
    cr_assert_geq(fd, 0);
    /* The D-node reads with O_DIRECT; the kernel writes these dirty pages back first, and the
     * fdatasync makes that certain. */
    cr_assert_eq(pwrite(fd, junk, sizeof(junk), off + 1000), (ssize_t)sizeof(junk));
    cr_assert_eq(fdatasync(fd), 0);
    close(fd);
}

Test(stripe, corrupt_fragment_is_rebuilt_not_returned)
{
    const uint64_t len = STRIPE, obj = 31337;
    uint8_t *data = pattern(len, obj), *got;
    struct cl_io_stats st;

    cr_assert_eq(cl_stripe_write(cl, obj, 1, data, len, NULL, NULL), 0);
    corrupt_data_frag(obj, data, 1);
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), 0, "read with one corrupt fragment");
    assert_same(got, data, len, "read around a corrupt fragment");
    cr_assert_eq(st.degraded_stripes, 1, "the corrupt fragment was not noticed");
    cr_assert_eq(st.frags_failed, 1);
    free(got);

    /* Two more bad data fragments make three: more than m, so an error, not wrong bytes. */
    corrupt_data_frag(obj, data, 0);
    corrupt_data_frag(obj, data, 3);
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), CAIRN_EDEGRADED,
                 "a stripe with %u corrupt fragments was read", M + 1);
    free(got);
    free(data);
}

Test(stripe, delete_removes_every_fragment)
{
    const uint64_t len = 3 * STRIPE + 1, obj = 8;
    uint8_t *data = pattern(len, obj), *got;
    uint64_t before = frags_live();
    struct cl_io_stats st;

    cr_assert_eq(cl_stripe_write(cl, obj, 1, data, len, NULL, NULL), 0);
    cr_assert_eq(frags_live(), before + 4 * (K + M));
    cr_assert_eq(cl_stripe_delete(cl, obj, 1, cl_cluster_layout(cl), NULL, len), 0);
    cr_assert_eq(frags_live(), before, "fragments left on flash after delete");
    cr_assert_neq(read_obj(obj, 1, len, &got, &st), 0, "a deleted object reads");
    free(got);
    /* Deleting again is not an error: missing fragments are what a retry finds. */
    cr_assert_eq(cl_stripe_delete(cl, obj, 1, cl_cluster_layout(cl), NULL, len), 0);
    free(data);
}

/* A second view of the same D-nodes whose writes use frag-byte fragments. */
static struct cl_cluster *view_with_frags(uint32_t frag)
{
    struct cl_cluster_config cfg = *dcluster_config(dc);
    struct cl_cluster *v;

    cfg.frag_size = frag;
    cr_assert_eq(cl_cluster_open(&cfg, &v), 0);
    return v;
}

Test(stripe, write_to_a_known_down_node_fails_at_once)
{
    const uint64_t len = 3 * STRIPE, obj = 4711;
    uint8_t *data = pattern(len, obj), *got;
    const unsigned victim = 2;
    uint64_t before = frags_live(); /* also connects to every node before one dies */
    struct cl_io_stats st;

    cr_assert_eq(dcluster_kill(dc, victim), 0);
    cr_assert_eq(cl_cluster_probe(cl), 1);
    cr_assert(cl_cluster_node_down(cl, victim));
    /* Every 4+2 stripe on six nodes needs the victim: the write must fail without sending a
     * fragment anywhere (no stripe with less redundancy than its layout). */
    cr_assert_eq(cl_stripe_write(cl, obj, 1, data, len, NULL, NULL), CAIRN_EUNREACH);
    cr_assert_eq(frags_live(), before, "a write to a known-down node stored fragments");

    cr_assert_eq(dcluster_restart(dc, victim), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0, "restarted D-node still down");
    cr_assert_eq(cl_stripe_write(cl, obj, 1, data, len, NULL, NULL), 0, "write after the restart");
    cr_assert_eq(read_obj(obj, 1, len, &got, &st), 0);
    assert_same(got, data, len, "write after the restart");
    cr_assert_eq(st.degraded_stripes, 0);
    free(got);
    free(data);
}

/* The write path when a D-node dies under a view that still thinks it is up: fragments to
 * the others land, the dead one's never answer, the write fails, and the caller deletes what
 * it wrote.  Small (4 KiB) fragments here; the test below covers large ones. */
Test(stripe, write_with_a_node_dying_fails_and_can_be_deleted)
{
    const uint32_t frag = 4096;
    const uint64_t len = 3 * K * frag + 100, obj = 4712;
    struct cl_cluster *v = view_with_frags(frag);
    struct ec_layout l = *cl_cluster_layout(v);
    uint8_t *data = pattern(len, obj), *got = malloc(len);
    const unsigned victim = 3;
    uint64_t before = frags_live(), victim_before = frags_on(victim);
    struct cl_io_stats st = {0};
    int rc;

    cr_assert_not_null(got);
    /* Connected to the victim before it dies, as a C-node that has been serving is. */
    cr_assert_eq(dcluster_probe(dc, v), 0);
    cr_assert_eq(dcluster_kill(dc, victim), 0);
    rc = cl_stripe_write(v, obj, 1, data, len, NULL, NULL);
    cr_assert(rc == CAIRN_ETIMEDOUT || rc == CAIRN_EUNREACH, "write with a dead D-node: %d (%s)",
              rc, cairn_strerror(rc));
    cr_assert(cl_cluster_node_down(v, victim), "the silent D-node is not marked down");
    cr_assert_gt(frags_live(), before, "expected the failed write to leave some fragments");
    /* The caller cleans up: the dead node's share fails, everything else must be gone. */
    cl_stripe_delete(v, obj, 1, &l, NULL, len);
    cr_assert_eq(frags_live(), before, "delete after a failed write left fragments");

    /* Back: it holds nothing of the failed write, and the object can now be written whole. */
    cr_assert_eq(dcluster_restart(dc, victim), 0);
    cr_assert_eq(dcluster_probe(dc, v), 0);
    cr_assert_eq(frags_on(victim), victim_before);
    cr_assert_eq(cl_stripe_write(v, obj, 1, data, len, NULL, NULL), 0,
                 "the object cannot be written again after cleanup");
    cr_assert_eq(cl_stripe_read(v, obj, 1, &l, NULL, got, len, &st), 0);
    assert_same(got, data, len, "rewrite after a failed write");
    free(got);
    free(data);
    cl_cluster_close(v);
}

/*
 * A write of fragments above tcp;ofi_rxm's default eager size (16 KiB) to a D-node killed
 * under a connected view returns an error instead of hanging.  RxM sends such messages by
 * rendezvous and never completed a rendezvous send whose receiver died: the call's deadline
 * cancelled its receive, but the call also waits for its send, so cl_stripe_write() spun in
 * io_drain() forever (this test found it; 16 KiB, 64 KiB and 1 MiB fragments all hung).  The
 * transport now sends every frame eager (transport/tp.c, rxm_tune), whose send completes or
 * fails with the connection.  The timeout turns a hang into a failure.
 */
Test(stripe, write_of_large_fragments_to_a_dying_node_returns, .timeout = 30)
{
    const uint64_t len = STRIPE, obj = 4713;
    uint8_t *data = pattern(len, obj);
    uint64_t before = frags_live(); /* connects to every D-node */
    int rc;

    cr_assert_eq(dcluster_kill(dc, 2), 0);
    rc = cl_stripe_write(cl, obj, 1, data, len, NULL, NULL);
    cr_assert(rc == CAIRN_ETIMEDOUT || rc == CAIRN_EUNREACH, "write: %d", rc);
    cl_stripe_delete(cl, obj, 1, cl_cluster_layout(cl), NULL, len);
    cr_assert_eq(frags_live(), before);
    free(data);
}

/* ---- recorded placement and degraded writes ---- */

static void assert_placement_sane(const struct cl_placement *pl, struct cl_cluster *v)
{
    cr_assert_eq(pl->n, K + M);
    for (unsigned p = 0; p < pl->n; p++) {
        cr_assert(pl->ids[p] != 0 && cl_cluster_node_index(v, pl->ids[p]) >= 0,
                  "position %u names no D-node of the map", p);
        for (unsigned q = 0; q < p; q++)
            cr_assert_neq(pl->ids[p], pl->ids[q], "positions %u and %u share a D-node", q, p);
    }
}

/* With one D-node down, a placed write goes on at k + m - 1 fragments per stripe: the dead
 * node's position is recorded missing, nothing is sent to it, and the object reads back
 * (rebuilding from parity where the missing position held data) before and after it returns. */
Test(stripe, placed_write_with_a_node_down_is_degraded_and_reads_back)
{
    const uint64_t len = 3 * STRIPE + 100, obj = 4801, nstripes = 4;
    const unsigned victim = 2;
    uint8_t *data = pattern(len, obj), *got = malloc(len);
    struct cl_placement pl = {0};
    struct cl_io_stats st = {0};
    uint64_t before = frags_live();
    unsigned missing_pos = K + M;
    int rc;

    cr_assert_not_null(got);
    cr_assert_eq(dcluster_kill(dc, victim), 0);
    cr_assert_eq(cl_cluster_probe(cl), 1);
    rc = cl_stripe_write(cl, obj, 1, data, len, &pl, &st);
    cr_assert_eq(rc, 0, "placed write with one of six down: %s", cairn_strerror(rc));
    assert_placement_sane(&pl, cl);
    cr_assert_eq(cl_placement_missing(&pl), 1, "missing positions: %#x", pl.missing);
    for (unsigned p = 0; p < pl.n; p++)
        if (pl.missing & (1u << p))
            missing_pos = p;
    cr_assert_eq(pl.ids[missing_pos], cl_cluster_node_id(cl, victim),
                 "the missing position is not the dead node's");
    cr_assert_eq(frags_live() - before, nstripes * (K + M - 1),
                 "fragments stored: %llu, want %llu",
                 (unsigned long long)(frags_live() - before),
                 (unsigned long long)(nstripes * (K + M - 1)));

    cr_assert_eq(cl_stripe_read(cl, obj, 1, cl_cluster_layout(cl), &pl, got, len, &st), 0);
    assert_same(got, data, len, "degraded write, node still down");
    cr_assert_gt(st.degraded_stripes, 0, "no stripe had its missing fragment among the data");

    cr_assert_eq(dcluster_restart(dc, victim), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    memset(got, 0, len);
    cr_assert_eq(cl_stripe_read(cl, obj, 1, cl_cluster_layout(cl), &pl, got, len, NULL), 0);
    assert_same(got, data, len, "degraded write, node back");
    cr_assert_eq(cl_stripe_delete(cl, obj, 1, cl_cluster_layout(cl), &pl, len), 0);
    cr_assert_eq(frags_live(), before, "delete by the placement left fragments");
    free(got);
    free(data);
}

/* Below the minimum (k + 1 live of k + m) nothing is written and the write says so. */
Test(stripe, placed_write_below_the_minimum_fails_and_stores_nothing)
{
    const uint64_t len = 2 * STRIPE, obj = 4802;
    const unsigned victims[2] = {1, 4};
    uint8_t *data = pattern(len, obj);
    struct cl_placement pl = {0};
    uint64_t before = frags_live();

    cr_assert_eq(cl_cluster_min_frags(cl), K + 1);
    for (unsigned i = 0; i < 2; i++)
        cr_assert_eq(dcluster_kill(dc, victims[i]), 0);
    cr_assert_eq(cl_cluster_probe(cl), 2);
    cr_assert_eq(cl_stripe_write(cl, obj, 1, data, len, &pl, NULL), CAIRN_EUNREACH);
    cr_assert_eq(cl_placement_missing(&pl), 2);
    cr_assert_eq(frags_live(), before, "a refused write stored fragments");
    cr_assert_eq(dcluster_restart_set(dc, victims, 2), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    free(data);
}

/* A D-node that dies during a placed write under a view that still thinks it is up: its
 * fragments fail, its position becomes missing, the rest of the write goes on, and the object
 * is whole to a reader. */
Test(stripe, placed_write_with_a_node_dying_goes_on_degraded)
{
    const uint32_t frag = 4096;
    const uint64_t len = 5 * K * frag + 77, obj = 4803;
    struct cl_cluster *v = view_with_frags(frag);
    struct ec_layout l = *cl_cluster_layout(v);
    uint8_t *data = pattern(len, obj), *got = malloc(len);
    struct cl_placement pl = {0};
    const unsigned victim = 3;
    int rc;

    cr_assert_not_null(got);
    cr_assert_eq(dcluster_probe(dc, v), 0);
    cr_assert_eq(dcluster_kill(dc, victim), 0);
    rc = cl_stripe_write(v, obj, 1, data, len, &pl, NULL);
    cr_assert_eq(rc, 0, "placed write with a node dying: %s", cairn_strerror(rc));
    assert_placement_sane(&pl, v);
    cr_assert_eq(cl_placement_missing(&pl), 1, "missing positions: %#x", pl.missing);
    cr_assert(cl_cluster_node_down(v, victim), "the silent D-node is not marked down");
    cr_assert_eq(cl_stripe_read(v, obj, 1, &l, &pl, got, len, NULL), 0);
    assert_same(got, data, len, "written while a node died");
    cr_assert_eq(dcluster_restart(dc, victim), 0);
    cr_assert_eq(dcluster_probe(dc, v), 0);
    memset(got, 0, len);
    cr_assert_eq(cl_stripe_read(v, obj, 1, &l, &pl, got, len, NULL), 0);
    assert_same(got, data, len, "written while a node died, read after it returned");
    cl_stripe_delete(v, obj, 1, &l, &pl, len);
    free(got);
    free(data);
    cl_cluster_close(v);
}

/* ---- repair: rebuilding a lost position ---- */

/* A position left missing by a degraded write is rebuilt onto its node once it is back: the
 * target is that node (no other is free: six D-nodes, 4+2), every stripe's fragment for the
 * position lands there (data fragments for some stripes, parity for others, as the position
 * rotates), and the object then survives two other D-nodes dying, which it could not before. */
Test(stripe, rebuild_puts_a_missing_position_back)
{
    const uint64_t len = 5 * STRIPE + 4097, obj = 4901, nstripes = 6;
    const unsigned victim = 1, others[2] = {3, 5};
    uint8_t *data = pattern(len, obj), *got = malloc(len);
    struct cl_placement pl = {0};
    uint64_t targets[CL_PLACE_MAX] = {0}, target = 0, bytes = 0, on_victim;
    const struct ec_layout *l = cl_cluster_layout(cl);
    unsigned mp = K + M;

    cr_assert_not_null(got);
    cr_assert_eq(dcluster_kill(dc, victim), 0);
    cr_assert_eq(cl_cluster_probe(cl), 1);
    cr_assert_eq(cl_stripe_write(cl, obj, 1, data, len, &pl, NULL), 0);
    cr_assert_eq(cl_placement_missing(&pl), 1);
    for (unsigned p = 0; p < pl.n; p++)
        if (pl.missing & (1u << p))
            mp = p;
    cr_assert_eq(cl_placement_lost(cl, &pl), 1u << mp, "lost: %#x", cl_placement_lost(cl, &pl));
    /* While it is down there is nowhere to rebuild to: every other node holds a position. */
    cr_assert_eq(cl_placement_target(cl, obj, &pl, mp, &target), CAIRN_ENOSPC);

    cr_assert_eq(dcluster_restart(dc, victim), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    on_victim = frags_on(victim);
    cr_assert_eq(cl_placement_target(cl, obj, &pl, mp, &target), 0);
    cr_assert_eq(target, cl_cluster_node_id(cl, victim), "the node that came back is not chosen");
    targets[mp] = target;
    cr_assert_eq(cl_stripe_rebuild(cl, obj, 1, l, &pl, len, 1u << mp, targets, &bytes), 0);
    cr_assert_eq(frags_on(victim) - on_victim, nstripes, "fragments rebuilt on the node: %llu",
                 (unsigned long long)(frags_on(victim) - on_victim));
    cr_assert_gt(bytes, (nstripes - 1) * FRAG);
    /* Again (a worker that lost its lease, a write whose answer was lost): the fragments are
     * there already and nothing changes. */
    cr_assert_eq(cl_stripe_rebuild(cl, obj, 1, l, &pl, len, 1u << mp, targets, NULL), 0);
    cr_assert_eq(frags_on(victim) - on_victim, nstripes);
    pl.missing &= ~(1u << mp);
    cr_assert_eq(cl_placement_lost(cl, &pl), 0);

    /* Two others die: k = 4 positions are left, the rebuilt one among them. */
    for (unsigned i = 0; i < 2; i++)
        cr_assert_eq(dcluster_kill(dc, others[i]), 0);
    cr_assert_eq(cl_cluster_probe(cl), 2);
    memset(got, 0, len);
    cr_assert_eq(cl_stripe_read(cl, obj, 1, l, &pl, got, len, NULL), 0,
                 "the rebuilt object does not survive two more failures");
    assert_same(got, data, len, "rebuilt, two others down");
    cr_assert_eq(dcluster_restart_set(dc, others, 2), 0);
    cr_assert_eq(dcluster_probe(dc, cl), 0);
    cr_assert_eq(cl_stripe_delete(cl, obj, 1, l, &pl, len), 0);
    free(got);
    free(data);
}

/* ---- full devices ---- */

/* Small devices filled by placed writes: positions whose device is full go missing like dead
 * ones, and once too few are left the write fails saying the cluster is full (CAIRN_ENOSPC:
 * NFS NOSPC, S3 a retryable 503), not that D-nodes are unreachable; deleting an object makes
 * room again. */
Test(full, placed_writes_to_full_devices_say_so)
{
    struct dcluster_opts o = {.nodes = NODES, .k = K, .m = M, .frag_size = FRAG,
                              .dev_size = 16ull << 20};
    struct dcluster *fdc;
    struct cl_cluster *v;
    const uint64_t len = 4 * STRIPE;
    uint8_t *data = pattern(len, 77);
    struct cl_placement pls[100];
    unsigned written = 0;
    int rc = 0;

    cr_assert_eq(dcluster_start(&o, &fdc), 0, "start D-nodes");
    cr_assert_eq(dcluster_open(fdc, &v), 0, "open cluster view");
    for (; written < 100; written++) {
        memset(&pls[written], 0, sizeof(pls[written]));
        rc = cl_stripe_write(v, 9000 + written, 1, data, len, &pls[written], NULL);
        if (rc)
            break;
    }
    cr_assert_lt(written, 100, "100 objects of 1 MiB fitted on six 16 MiB devices");
    cr_assert_gt(written, 4, "the devices filled after %u objects", written);
    cr_assert_eq(rc, CAIRN_ENOSPC, "a write to full devices failed with %d (%s)", rc,
                 cairn_strerror(rc));
    cl_stripe_delete(v, 9000 + written, 1, cl_cluster_layout(v), &pls[written], len);
    for (unsigned i = 0; i < 2; i++)
        cr_assert_eq(cl_stripe_delete(v, 9000 + i, 1, cl_cluster_layout(v), &pls[i], len), 0);
    memset(&pls[0], 0, sizeof(pls[0]));
    rc = cl_stripe_write(v, 9100, 1, data, len, &pls[0], NULL);
    cr_assert_eq(rc, 0, "a write after deletes made room: %s", cairn_strerror(rc));
    cl_cluster_close(v);
    dcluster_stop(fdc);
    free(data);
}
