/*
 * Placement tests: distinctness, determinism, balance, and minimal movement when a node
 * joins (the property that makes rendezvous hashing fit a cluster that grows).
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "common/cairn.h"
#include "client/placement.h"

static void make_keys(uint64_t *keys, unsigned n)
{
    char id[64];

    for (unsigned i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "10.0.0.%u:7000", i + 1);
        keys[i] = cl_node_key(id);
    }
}

Test(placement, distinct_and_deterministic)
{
    uint64_t keys[12];
    unsigned a[6], b[6];

    make_keys(keys, 12);
    for (uint64_t item = 0; item < 5000; item++) {
        cr_assert_eq(cl_place(item, keys, 12, 6, a), 0);
        cr_assert_eq(cl_place(item, keys, 12, 6, b), 0);
        for (int i = 0; i < 6; i++) {
            cr_assert_eq(a[i], b[i]);
            cr_assert_lt(a[i], 12u);
            for (int j = 0; j < i; j++)
                cr_assert_neq(a[i], a[j], "node chosen twice for item %lu", (unsigned long)item);
        }
    }
}

Test(placement, balanced_load)
{
    enum { NODES = 10, ITEMS = 20000, N = 6 };
    uint64_t keys[NODES];
    unsigned out[N], load[NODES] = {0};

    make_keys(keys, NODES);
    for (uint64_t item = 0; item < ITEMS; item++) {
        cl_place(cl_stripe_id(42, item), keys, NODES, N, out);
        for (int i = 0; i < N; i++)
            load[out[i]]++;
    }
    /* Expected ITEMS*N/NODES = 12000 per node; allow 5%. */
    for (int i = 0; i < NODES; i++)
        cr_assert(load[i] > 11400 && load[i] < 12600, "node %d holds %u", i, load[i]);
}

Test(placement, adding_a_node_moves_only_its_share)
{
    enum { ITEMS = 20000 };
    uint64_t keys[9];
    unsigned before[4], after[4], moved = 0;

    make_keys(keys, 9);
    for (uint64_t item = 0; item < ITEMS; item++) {
        cl_place(item, keys, 8, 4, before);
        cl_place(item, keys, 9, 4, after);
        for (int i = 0; i < 4; i++) {
            int found = 0;

            for (int j = 0; j < 4; j++)
                found |= before[j] == after[i];
            if (!found) {
                cr_assert_eq(after[i], 8u, "a fragment moved between old nodes");
                moved++;
            }
        }
    }
    /* The new node takes about 4/9 of items once each: ITEMS * 4 / 9 = 8889 fragments. */
    cr_assert(moved > 8000 && moved < 9800, "moved %u", moved);
}

Test(placement, rejects_bad_arguments)
{
    uint64_t keys[3] = {1, 2, 3};
    unsigned out[4];

    cr_assert_eq(cl_place(1, keys, 3, 4, out), CAIRN_EINVAL);
    cr_assert_eq(cl_place(1, keys, 3, 0, out), CAIRN_EINVAL);
}

/* Keys hash evenly: the metadata layer takes shards as this hash modulo a shard count. */
Test(placement, key_hashes_spread)
{
    unsigned hits[256] = {0};
    char key[32];

    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof(key), "bucket/key-%d", i);

        hits[cl_hash_bytes(key, (uint64_t)n) % 256]++;
    }
    for (unsigned s = 0; s < 256; s++)
        cr_assert(hits[s] > 250 && hits[s] < 550, "shard %u: %u", s, hits[s]);
}
