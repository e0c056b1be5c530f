/*
 * Cluster map tests: the first map's placement (one replica per failure domain, 2m + 1
 * replicas when there are domains enough, an odd number always, an even spread), and the
 * checks every reader applies to a map before acting on it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "map/map.h"

#define MAXN 16

static char addr_buf[MAXN][32], host_buf[MAXN][16];

static void nodes_init(struct map_node_info *n, unsigned count, unsigned hosts)
{
    for (unsigned i = 0; i < count; i++) {
        snprintf(addr_buf[i], sizeof addr_buf[i], "10.0.0.%u:7000", i + 1);
        snprintf(host_buf[i], sizeof host_buf[i], "h%u", i % hosts);
        n[i] = (struct map_node_info){.id = 0x1000 + i * 0x101, .addr = addr_buf[i],
                                      .host = host_buf[i]};
    }
}

static Cairn__ClusterMap *build(struct map_params *p, struct map_node_info *n, unsigned count)
{
    uint8_t *buf;
    size_t len;
    Cairn__ClusterMap *m;

    cr_assert_eq(map_build(p, n, count, &buf, &len), 0);
    m = map_decode(buf, len);
    cr_assert_not_null(m, "a built map does not pass the checks");
    free(buf);
    return m;
}

static const char *host_of(const Cairn__ClusterMap *m, uint64_t id)
{
    int i = map_node_index(m, id);

    cr_assert_geq(i, 0);
    return m->nodes[i]->host;
}

Test(map, replicas_are_2m_plus_1_capped_by_domains_and_odd)
{
    cr_assert_eq(map_replicas(2, 6), 5u);
    cr_assert_eq(map_replicas(2, 5), 5u);
    cr_assert_eq(map_replicas(2, 4), 3u, "four domains: three replicas, not an even four");
    cr_assert_eq(map_replicas(1, 8), 3u);
    cr_assert_eq(map_replicas(4, 3), 3u);
    cr_assert_eq(map_replicas(1, 1), 1u);
    cr_assert_eq(map_replicas(20, 100), MAP_MAX_REPLICAS);
}

Test(map, first_map_places_each_shard_once_per_domain_and_evenly)
{
    struct map_node_info n[MAXN];
    struct map_params p = {.k = 4, .m = 2, .frag_size = 1u << 20, .shards = 512};
    unsigned load[MAXN] = {0};
    Cairn__ClusterMap *m;

    nodes_init(n, 12, 6); /* two D-nodes per host */
    m = build(&p, n, 12);
    cr_assert_eq(m->epoch, 1u);
    cr_assert_eq(m->shards, 512u);
    cr_assert_eq(m->replicas, 5u);
    cr_assert_eq(m->n_nodes, 12u);
    for (size_t s = 0; s < m->n_place; s++) {
        cr_assert_eq(m->place[s]->n_nodes, 5u);
        for (size_t i = 0; i < 5; i++) {
            load[map_node_index(m, m->place[s]->nodes[i])]++;
            for (size_t j = 0; j < i; j++)
                cr_assert_str_neq(host_of(m, m->place[s]->nodes[i]),
                                  host_of(m, m->place[s]->nodes[j]),
                                  "shard %zu has two replicas on one host", s);
        }
    }
    /* 512 x 5 / 12 = 213 per D-node on average: rendezvous hashing keeps each near it. */
    for (unsigned i = 0; i < 12; i++)
        cr_assert(load[i] > 150 && load[i] < 280, "D-node %u holds %u shard replicas", i, load[i]);
    cr_assert_eq(m->n_map_group, 5u);
    cairn__cluster_map__free_unpacked(m, NULL);
}

Test(map, the_same_nodes_give_the_same_map)
{
    struct map_node_info n[MAXN];
    struct map_params p = {.k = 2, .m = 1, .frag_size = 65536};
    uint8_t *a, *b;
    size_t la, lb;

    nodes_init(n, 5, 5);
    cr_assert_eq(map_build(&p, n, 5, &a, &la), 0);
    cr_assert_eq(map_build(&p, n, 5, &b, &lb), 0);
    cr_assert(la == lb && memcmp(a, b, la) == 0, "map_build is not deterministic");
    free(a);
    free(b);
}

Test(map, build_refuses_what_cannot_be_a_cluster)
{
    struct map_node_info n[MAXN];
    struct map_params p = {.k = 4, .m = 2, .frag_size = 65536};
    uint8_t *buf;
    size_t len;

    nodes_init(n, 6, 6);
    cr_assert_eq(map_build(&p, n, 5, &buf, &len), CAIRN_EINVAL, "5 D-nodes for 4+2");
    n[3].id = n[1].id;
    cr_assert_eq(map_build(&p, n, 6, &buf, &len), CAIRN_EINVAL, "two D-nodes with one id");
    nodes_init(n, 6, 6);
    n[4].addr = n[2].addr;
    cr_assert_eq(map_build(&p, n, 6, &buf, &len), CAIRN_EINVAL, "two D-nodes at one address");
    nodes_init(n, 6, 6);
    n[0].id = 0;
    cr_assert_eq(map_build(&p, n, 6, &buf, &len), CAIRN_EINVAL, "id 0");
}

Test(map, readers_refuse_inconsistent_maps)
{
    struct map_node_info n[MAXN];
    struct map_params p = {.k = 2, .m = 1, .frag_size = 65536, .shards = 4};
    Cairn__ClusterMap *m;
    uint8_t buf[4096];
    uint64_t saved;
    size_t len;

    nodes_init(n, 4, 4);
    m = build(&p, n, 4);
    /* A shard placed on a node the map does not have. */
    saved = m->place[2]->nodes[1];
    m->place[2]->nodes[1] = 0xdead;
    cr_assert_not(map_valid(m));
    m->place[2]->nodes[1] = m->place[2]->nodes[0];
    cr_assert_not(map_valid(m), "one node twice in a shard");
    m->place[2]->nodes[1] = saved;
    cr_assert(map_valid(m));
    /* Counts that disagree, epoch 0, an empty map group. */
    m->shards = 5;
    cr_assert_not(map_valid(m));
    m->shards = 4;
    m->epoch = 0;
    cr_assert_not(map_valid(m));
    m->epoch = 1;
    m->n_map_group = 0;
    cr_assert_not(map_valid(m));
    m->n_map_group = 3;
    len = cairn__cluster_map__pack(m, buf);
    cairn__cluster_map__free_unpacked(m, NULL);
    m = map_decode(buf, len);
    cr_assert_not_null(m);
    cairn__cluster_map__free_unpacked(m, NULL);
    /* Garbage and truncations. */
    cr_assert_null(map_decode("\xff\xff\xff", 3));
    for (size_t cut = 0; cut < len; cut += 7) {
        m = map_decode(buf, cut);
        if (m)
            cairn__cluster_map__free_unpacked(m, NULL); /* may decode: then it passed checks */
    }
}

/* Adding a D-node: a new epoch, the old nodes in their order, the map group as it was, and
 * each shard changes at most the one replica the new node outranks; the new node gets about
 * its share of the shards. */
Test(map, adding_a_node_moves_only_what_it_takes)
{
    struct map_node_info n[MAXN];
    struct map_params p = {.k = 4, .m = 2, .frag_size = 1 << 20, .shards = 1024};
    Cairn__ClusterMap *old, *next;
    uint8_t *buf;
    size_t len;
    unsigned gained = 0;

    nodes_init(n, 7, 7);
    old = build(&p, n, 6);
    cr_assert_eq(map_add_node(old, &n[6], &buf, &len), 0);
    next = map_decode(buf, len);
    free(buf);
    cr_assert_not_null(next);
    cr_assert_eq(next->epoch, old->epoch + 1);
    cr_assert_eq(next->n_nodes, 7);
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(next->nodes[i]->id, old->nodes[i]->id, "old nodes keep their order");
    cr_assert_eq(next->nodes[6]->id, n[6].id);
    cr_assert_eq(next->n_map_group, old->n_map_group);
    for (size_t i = 0; i < old->n_map_group; i++)
        cr_assert_eq(next->map_group[i], old->map_group[i]);
    for (uint32_t s = 0; s < p.shards; s++) {
        const Cairn__ShardPlace *a = old->place[s], *b = next->place[s];
        unsigned kept = 0;
        bool has_new = false;

        cr_assert_eq(b->n_nodes, a->n_nodes);
        for (size_t i = 0; i < b->n_nodes; i++) {
            bool in_old = false;

            for (size_t j = 0; j < a->n_nodes; j++)
                in_old |= a->nodes[j] == b->nodes[i];
            kept += in_old;
            has_new |= b->nodes[i] == n[6].id;
        }
        cr_assert(kept == b->n_nodes || (kept == b->n_nodes - 1 && has_new),
                  "shard %u changed %u replicas", s, (unsigned)(b->n_nodes - kept));
        gained += has_new;
    }
    /* 5 replicas of 7 nodes: the new node holds about 5/7 of the shards. */
    cr_assert(gained > p.shards * 5 / 7 * 8 / 10 && gained < p.shards * 5 / 7 * 12 / 10,
              "the new node holds %u of %u shards", gained, p.shards);
    /* Its id or address already in the map: refused. */
    cr_assert_eq(map_add_node(next, &n[6], &buf, &len), CAIRN_EEXIST);
    struct map_node_info twin = n[6];
    twin.id = 0xabcdef;
    cr_assert_eq(map_add_node(next, &twin, &buf, &len), CAIRN_EEXIST);
    cairn__cluster_map__free_unpacked(old, NULL);
    cairn__cluster_map__free_unpacked(next, NULL);
}

static Cairn__ClusterMap *with_state(const Cairn__ClusterMap *old, uint64_t id,
                                     Cairn__NodeState state)
{
    uint8_t *buf;
    size_t len;
    Cairn__ClusterMap *m;

    cr_assert_eq(map_set_state(old, id, state, &buf, &len), 0);
    m = map_decode(buf, len);
    free(buf);
    cr_assert_not_null(m);
    return m;
}

static bool holds(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* Taking a node out moves only the replicas it held, each to one other node, and its place in
 * the map group; it stays in the list (the data's placement order); back in, it may take
 * replicas again.  Too few nodes left for the code: refused. */
Test(map, taking_a_node_out_moves_only_what_it_held)
{
    struct map_node_info n[MAXN];
    struct map_params p = {.k = 4, .m = 2, .frag_size = 1 << 20, .shards = 1024};
    Cairn__ClusterMap *old, *out, *back;
    uint64_t gone;
    uint8_t *buf;
    size_t len;

    nodes_init(n, 8, 8);
    old = build(&p, n, 8);
    gone = old->map_group[0]; /* a map group member, so its seat must move too */
    out = with_state(old, gone, CAIRN__NODE_STATE__NODE_OUT);
    cr_assert_eq(out->epoch, old->epoch + 1);
    cr_assert_eq(out->n_nodes, old->n_nodes, "the node keeps its place in the list");
    for (size_t i = 0; i < out->n_nodes; i++) {
        cr_assert_eq(out->nodes[i]->id, old->nodes[i]->id);
        cr_assert_eq(out->nodes[i]->state, out->nodes[i]->id == gone
                                               ? CAIRN__NODE_STATE__NODE_OUT
                                               : CAIRN__NODE_STATE__NODE_UP);
    }
    cr_assert_eq(out->n_map_group, old->n_map_group);
    cr_assert_not(holds(out->map_group, out->n_map_group, gone));
    for (size_t i = 1; i < old->n_map_group; i++)
        cr_assert(holds(out->map_group, out->n_map_group, old->map_group[i]),
                  "a map group member that stays lost its seat");
    for (uint32_t s = 0; s < p.shards; s++) {
        const Cairn__ShardPlace *a = old->place[s], *b = out->place[s];
        bool had = holds(a->nodes, a->n_nodes, gone);
        unsigned kept = 0;

        cr_assert_eq(b->n_nodes, a->n_nodes, "shard %u lost a replica", s);
        cr_assert_not(holds(b->nodes, b->n_nodes, gone), "shard %u still on the node", s);
        for (size_t i = 0; i < b->n_nodes; i++)
            kept += holds(a->nodes, a->n_nodes, b->nodes[i]);
        cr_assert_eq(kept, b->n_nodes - (had ? 1 : 0), "shard %u changed %u replicas", s,
                     (unsigned)(b->n_nodes - kept));
    }
    /* Draining holds no replicas either; adding a node keeps the state of the others. */
    struct map_node_info extra = n[8 - 1];
    extra.id = 0x9999;
    extra.addr = "10.0.0.99:7000";
    extra.host = "h99";
    cr_assert_eq(map_add_node(out, &extra, &buf, &len), 0);
    Cairn__ClusterMap *grown = map_decode(buf, len);
    free(buf);
    cr_assert_not_null(grown);
    cr_assert_eq(grown->nodes[map_node_index(grown, gone)]->state, CAIRN__NODE_STATE__NODE_OUT);
    for (uint32_t s = 0; s < p.shards; s++)
        cr_assert_not(holds(grown->place[s]->nodes, grown->place[s]->n_nodes, gone));
    cairn__cluster_map__free_unpacked(grown, NULL);
    /* Back in: placement is the first map's again. */
    back = with_state(out, gone, CAIRN__NODE_STATE__NODE_UP);
    for (uint32_t s = 0; s < p.shards; s++)
        for (size_t i = 0; i < old->place[s]->n_nodes; i++)
            cr_assert(holds(back->place[s]->nodes, back->place[s]->n_nodes,
                            old->place[s]->nodes[i]));
    /* Unknown node; and two out of 8 leave 6 = k + m, a third would leave too few. */
    cr_assert_eq(map_set_state(out, 0x4242, CAIRN__NODE_STATE__NODE_OUT, &buf, &len),
                 CAIRN_ENOENT);
    Cairn__ClusterMap *two = with_state(out, old->nodes[1]->id == gone ? old->nodes[2]->id
                                                                          : old->nodes[1]->id,
                                        CAIRN__NODE_STATE__NODE_DRAINING);
    cr_assert_eq(map_set_state(two, old->nodes[3]->id == gone ? old->nodes[4]->id
                                                               : old->nodes[3]->id,
                               CAIRN__NODE_STATE__NODE_OUT, &buf, &len),
                 CAIRN_EINVAL);
    cairn__cluster_map__free_unpacked(two, NULL);
    cairn__cluster_map__free_unpacked(back, NULL);
    cairn__cluster_map__free_unpacked(out, NULL);
    cairn__cluster_map__free_unpacked(old, NULL);
}
