/*
 * map.c - the cluster map's rules: checking a map, building the first one (see map.h).
 */
#include "map/map.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"

int map_node_index(const Cairn__ClusterMap *m, uint64_t id)
{
    for (size_t i = 0; i < m->n_nodes; i++)
        if (m->nodes[i]->id == id)
            return (int)i;
    return -1;
}

/* n ids, each a node of m, none twice. */
static bool ids_ok(const Cairn__ClusterMap *m, const uint64_t *ids, size_t n)
{
    if (n == 0 || n > MAP_MAX_REPLICAS)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (map_node_index(m, ids[i]) < 0)
            return false;
        for (size_t j = 0; j < i; j++)
            if (ids[j] == ids[i])
                return false;
    }
    return true;
}

bool map_valid(const Cairn__ClusterMap *m)
{
    if (m->epoch == 0 || m->shards == 0 || m->shards > MAP_MAX_SHARDS ||
        m->n_place != m->shards || m->n_nodes == 0 || m->n_nodes > MAP_MAX_NODES)
        return false;
    for (size_t i = 0; i < m->n_nodes; i++) {
        const Cairn__MapNode *a = m->nodes[i];

        if (a->id == 0 || !a->addr || !*a->addr)
            return false;
        for (size_t j = 0; j < i; j++)
            if (m->nodes[j]->id == a->id || strcmp(m->nodes[j]->addr, a->addr) == 0)
                return false;
    }
    if (!ids_ok(m, m->map_group, m->n_map_group))
        return false;
    for (size_t s = 0; s < m->n_place; s++)
        if (!ids_ok(m, m->place[s]->nodes, m->place[s]->n_nodes))
            return false;
    return true;
}

Cairn__ClusterMap *map_decode(const void *buf, size_t len)
{
    Cairn__ClusterMap *m = cairn__cluster_map__unpack(NULL, len, buf);

    if (m && !map_valid(m)) {
        cairn__cluster_map__free_unpacked(m, NULL);
        m = NULL;
    }
    return m;
}

unsigned map_replicas(uint32_t m, unsigned hosts)
{
    unsigned r = 2 * m + 1;

    if (r > MAP_MAX_REPLICAS)
        r = MAP_MAX_REPLICAS;
    if (r > hosts)
        r = hosts;
    if (r > 1 && r % 2 == 0)
        r--; /* an even group tolerates no more failures than the odd one below it */
    return r;
}

/* The failure domain of a node: its host, or the host part of its address. */
static size_t domain_of(const struct map_node_info *n, const char **d)
{
    const char *colon;

    if (n->host && *n->host) {
        *d = n->host;
        return strlen(n->host);
    }
    *d = n->addr;
    colon = strrchr(n->addr, ':');
    return colon ? (size_t)(colon - n->addr) : strlen(n->addr);
}

static bool same_domain(const struct map_node_info *a, const struct map_node_info *b)
{
    const char *da, *db;
    size_t la = domain_of(a, &da), lb = domain_of(b, &db);

    return la == lb && memcmp(da, db, la) == 0;
}

/* May the node hold shard replicas? */
static bool eligible(const struct map_node_info *n)
{
    return n->state != CAIRN__NODE_STATE__NODE_OUT &&
           n->state != CAIRN__NODE_STATE__NODE_DRAINING;
}

/* Rendezvous placement of item over the eligible nodes, one per domain: out gets want node
 * indexes, highest score first; out[0..got) on entry (got may be 0) are taken already. */
static unsigned place_more(const struct map_node_info *nodes, unsigned n, uint64_t item,
                           unsigned want, unsigned *out, unsigned got)
{
    bool *taken = calloc(n, sizeof *taken);

    if (!taken)
        return got;
    for (unsigned j = 0; j < got; j++)
        taken[out[j]] = true;
    for (unsigned i = 0; i < n; i++)
        taken[i] |= !eligible(&nodes[i]);
    while (got < want) {
        unsigned best = n;
        uint64_t best_score = 0;

        for (unsigned i = 0; i < n; i++) {
            uint64_t sc;
            bool clash = false;

            if (taken[i])
                continue;
            for (unsigned j = 0; j < got && !clash; j++)
                clash = same_domain(&nodes[out[j]], &nodes[i]);
            if (clash)
                continue;
            sc = cairn_mix64(nodes[i].id ^ cairn_mix64(item));
            if (best == n || sc > best_score) {
                best = i;
                best_score = sc;
            }
        }
        if (best == n)
            break; /* cannot happen: want <= domains */
        taken[best] = true;
        out[got++] = best;
    }
    free(taken);
    return got;
}

static void place(const struct map_node_info *nodes, unsigned n, uint64_t item, unsigned want,
                  unsigned *out)
{
    place_more(nodes, n, item, want, out, 0);
}

static int node_of(const struct map_node_info *nodes, unsigned n, uint64_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (nodes[i].id == id)
            return (int)i;
    return -1;
}

/* Encode a map of nodes[0..n) at epoch with every shard placed by rendezvous; the map group
 * is group (n_group ids) if given, else placed too.  Checks the result as every reader
 * would. */
static int assemble(const struct map_params *p, const struct map_node_info *nodes, unsigned n,
                    uint64_t epoch, const uint64_t *group_in, size_t n_group, uint8_t **buf,
                    size_t *len)
{
    Cairn__ClusterMap map = CAIRN__CLUSTER_MAP__INIT;
    Cairn__MapNode *mn = NULL, **mnp = NULL;
    Cairn__ShardPlace *sp = NULL, **spp = NULL;
    uint64_t *ids = NULL, group[MAP_MAX_REPLICAS];
    unsigned hosts = 0, usable = 0, r, idx[MAP_MAX_REPLICAS];
    uint32_t shards = p->shards ? p->shards : MAP_DEFAULT_SHARDS;
    Cairn__ClusterMap *check;
    int rc = CAIRN_ENOMEM;

    *buf = NULL;
    if (n == 0 || n > MAP_MAX_NODES || shards > MAP_MAX_SHARDS || p->k == 0 || p->m == 0 ||
        p->k + p->m > n || p->frag_size == 0 || n_group > MAP_MAX_REPLICAS)
        return CAIRN_EINVAL;
    for (unsigned i = 0; i < n; i++) {
        bool seen = false;

        if (!eligible(&nodes[i]))
            continue;
        usable++;
        for (unsigned j = 0; j < i && !seen; j++)
            seen = eligible(&nodes[j]) && same_domain(&nodes[i], &nodes[j]);
        hosts += !seen;
    }
    if (p->k + p->m > usable)
        return CAIRN_EINVAL;
    r = map_replicas(p->m, hosts);
    mn = calloc(n, sizeof *mn);
    mnp = calloc(n, sizeof *mnp);
    sp = calloc(shards, sizeof *sp);
    spp = calloc(shards, sizeof *spp);
    ids = calloc((size_t)shards * r, sizeof *ids);
    if (!mn || !mnp || !sp || !spp || !ids)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        cairn__map_node__init(&mn[i]);
        mn[i].id = nodes[i].id;
        mn[i].addr = (char *)nodes[i].addr;
        mn[i].host = (char *)(nodes[i].host ? nodes[i].host : "");
        mn[i].rack = (char *)(nodes[i].rack ? nodes[i].rack : "");
        mn[i].state = nodes[i].state;
        mnp[i] = &mn[i];
    }
    for (uint32_t s = 0; s < shards; s++) {
        place(nodes, n, 0x5348415244ull ^ s, r, idx);
        cairn__shard_place__init(&sp[s]);
        sp[s].nodes = &ids[(size_t)s * r];
        sp[s].n_nodes = r;
        for (unsigned j = 0; j < r; j++)
            sp[s].nodes[j] = nodes[idx[j]].id;
        spp[s] = &sp[s];
    }
    if (group_in) {
        /* Members stay, but for those that may no longer hold replicas: the next in the
         * group's rendezvous order replace them. */
        unsigned kept = 0;

        for (size_t j = 0; j < n_group && kept < r; j++) {
            int i = node_of(nodes, n, group_in[j]);
            bool clash = false;

            if (i < 0 || !eligible(&nodes[i]))
                continue;
            for (unsigned q = 0; q < kept && !clash; q++)
                clash = same_domain(&nodes[idx[q]], &nodes[i]);
            if (!clash)
                idx[kept++] = (unsigned)i;
        }
        unsigned want = CAIRN_MAX(kept, (unsigned)CAIRN_MIN(n_group, (size_t)r));

        kept = place_more(nodes, n, 0x4d4150ull, want, idx, kept);
        for (unsigned j = 0; j < kept; j++)
            group[j] = nodes[idx[j]].id;
        map.n_map_group = kept;
    } else {
        place(nodes, n, 0x4d4150ull, r, idx);
        for (unsigned j = 0; j < r; j++)
            group[j] = nodes[idx[j]].id;
        map.n_map_group = r;
    }
    map.epoch = epoch;
    map.k = p->k;
    map.m = p->m;
    map.frag_size = p->frag_size;
    map.shards = shards;
    map.replicas = r;
    map.n_nodes = n;
    map.nodes = mnp;
    map.n_place = shards;
    map.place = spp;
    map.map_group = group;
    *len = cairn__cluster_map__get_packed_size(&map);
    *buf = malloc(*len ? *len : 1);
    if (!*buf)
        goto out;
    cairn__cluster_map__pack(&map, *buf);
    /* The same rules every reader applies (duplicate ids or addresses end here). */
    check = map_decode(*buf, *len);
    rc = check ? 0 : CAIRN_EINVAL;
    if (check)
        cairn__cluster_map__free_unpacked(check, NULL);
    else {
        free(*buf);
        *buf = NULL;
    }
out:
    free(mn);
    free(mnp);
    free(sp);
    free(spp);
    free(ids);
    return rc;
}

int map_build(const struct map_params *p, const struct map_node_info *nodes, unsigned n,
              uint8_t **buf, size_t *len)
{
    return assemble(p, nodes, n, 1, NULL, 0, buf, len);
}

/* The nodes of m as assemble() takes them, with room for extra more (calloc'd; the strings
 * are m's). */
static struct map_node_info *nodes_of(const Cairn__ClusterMap *m, size_t extra)
{
    struct map_node_info *all = calloc(m->n_nodes + extra, sizeof *all);

    for (size_t i = 0; all && i < m->n_nodes; i++)
        all[i] = (struct map_node_info){.id = m->nodes[i]->id, .addr = m->nodes[i]->addr,
                                        .host = m->nodes[i]->host, .rack = m->nodes[i]->rack,
                                        .state = m->nodes[i]->state};
    return all;
}

int map_add_node(const Cairn__ClusterMap *old, const struct map_node_info *node,
                 uint8_t **buf, size_t *len)
{
    struct map_params p = {.k = old->k, .m = old->m, .frag_size = old->frag_size,
                           .shards = old->shards};
    struct map_node_info *all;
    int rc;

    *buf = NULL;
    if (!node->id || !node->addr || !*node->addr)
        return CAIRN_EINVAL;
    for (size_t i = 0; i < old->n_nodes; i++)
        if (old->nodes[i]->id == node->id || strcmp(old->nodes[i]->addr, node->addr) == 0)
            return CAIRN_EEXIST;
    if (old->n_nodes + 1 > MAP_MAX_NODES)
        return CAIRN_EINVAL;
    all = nodes_of(old, 1);
    if (!all)
        return CAIRN_ENOMEM;
    all[old->n_nodes] = *node;
    rc = assemble(&p, all, (unsigned)old->n_nodes + 1, old->epoch + 1, old->map_group,
                  old->n_map_group, buf, len);
    free(all);
    return rc;
}

int map_set_state(const Cairn__ClusterMap *old, uint64_t id, Cairn__NodeState state,
                  uint8_t **buf, size_t *len)
{
    struct map_params p = {.k = old->k, .m = old->m, .frag_size = old->frag_size,
                           .shards = old->shards};
    struct map_node_info *all;
    int rc;

    *buf = NULL;
    if (map_node_index(old, id) < 0)
        return CAIRN_ENOENT;
    all = nodes_of(old, 0);
    if (!all)
        return CAIRN_ENOMEM;
    all[map_node_index(old, id)].state = state;
    rc = assemble(&p, all, (unsigned)old->n_nodes, old->epoch + 1, old->map_group,
                  old->n_map_group, buf, len);
    free(all);
    return rc;
}
