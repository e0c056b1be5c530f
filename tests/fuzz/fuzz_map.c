/*
 * fuzz_map.c - libFuzzer harness for cluster maps as the D-nodes and C-nodes receive them
 * (MAP_SET payloads, MAP_GET answers, map records of the map group).
 *
 * map_decode() unpacks the bytes and checks every id, count and reference before anyone acts
 * on the map.  Any input must be refused or accepted without a crash, a leak or an
 * out-of-bounds access (ASan, UBSan); an accepted map must hold what map_valid promises, which
 * the harness walks to prove: every placed id resolves to a node.
 */
#include <stdint.h>
#include <stdlib.h>

#include "map/map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Cairn__ClusterMap *m = map_decode(data, size);

    if (!m)
        return 0;
    for (size_t s = 0; s < m->n_place; s++)
        for (size_t i = 0; i < m->place[s]->n_nodes; i++)
            if (map_node_index(m, m->place[s]->nodes[i]) < 0)
                abort();
    for (size_t i = 0; i < m->n_map_group; i++)
        if (map_node_index(m, m->map_group[i]) < 0)
            abort();
    if (m->n_place != m->shards || m->epoch == 0)
        abort();
    cairn__cluster_map__free_unpacked(m, NULL);
    return 0;
}
