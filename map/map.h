/*
 * map.h - the cluster map: the D-nodes of the cluster, and where every metadata shard's
 * replicas live.  The one place its rules are written: the D-nodes check maps with it, the
 * C-nodes and tools read and build maps with it.
 *
 * The map is versioned by its epoch.  Epoch 1 is built by map_build() when the cluster is
 * created (tools: cairnctl map init); later epochs are records of the map's own Raft group on
 * the D-nodes (MAP_GROUP, key MAP_KEY), so every D-node and C-node agrees on which epoch is
 * newest and what it says.  Every metadata request carries the sender's epoch; a D-node with
 * a newer map refuses an older one (CAIRN_ESTALE), so nobody acts on a placement that was
 * replaced without learning it.
 *
 * Placement is recorded, not recomputed: ClusterMap.place[s] names the replicas of shard s.
 * map_build() computes a first placement by rendezvous hashing over the node ids, taking at
 * most one replica per host (failure domain); a later map changes the record, and whatever
 * is recorded is where the shard is.
 */
#ifndef CAIRN_MAP_MAP_H
#define CAIRN_MAP_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/cairn.pb-c.h"

#define MAP_GROUP UINT32_MAX      /* the map's own Raft group, and its records' shard id */
#define MAP_KEY "map"             /* the map group's record holding the map */
#define MAP_DEFAULT_SHARDS 256u   /* metadata shards of a new cluster */
#define MAP_MAX_SHARDS 65536u
#define MAP_MAX_NODES 1024u
#define MAP_MAX_REPLICAS 15u      /* per shard: a Raft group's voters (odd) */

struct map_node_info {
    uint64_t id;      /* the D-node's id (nonzero; its store's format id) */
    const char *addr; /* HOST:PORT of its fabric endpoint */
    const char *host; /* failure domains (NULL or "": the address's host part) */
    const char *rack;
    Cairn__NodeState state; /* NODE_OUT and NODE_DRAINING get no shard replicas */
};

struct map_params {
    uint32_t k, m;      /* default erasure code for new data */
    uint32_t frag_size; /* bytes per fragment of a full stripe */
    uint32_t shards;    /* 0: MAP_DEFAULT_SHARDS */
};

/* Decode and check a map.  Returns NULL if buf is not a map Cairn can act on; free the
 * result with cairn__cluster_map__free_unpacked(m, NULL). */
Cairn__ClusterMap *map_decode(const void *buf, size_t len);

/* Whether a decoded map is consistent: nodes with distinct nonzero ids and addresses, every
 * shard placed on 1..MAP_MAX_REPLICAS distinct nodes of the map, the map group likewise,
 * sizes in range. */
bool map_valid(const Cairn__ClusterMap *m);

/* The index of node id in m->nodes, or -1. */
int map_node_index(const Cairn__ClusterMap *m, uint64_t id);

/* The replicas a shard gets: 2m + 1, so that a majority survives m lost D-nodes like the
 * data does, but no more than there are hosts (one replica per host), and odd. */
unsigned map_replicas(uint32_t m, unsigned hosts);

/* Build the first map (epoch 1) of a cluster of n D-nodes, in the order given (the data's
 * placement order).  On 0, *buf (malloc'd, the caller frees it) holds the encoded map.
 * Returns 0, CAIRN_EINVAL (ids, sizes, fewer than k + m nodes), CAIRN_ENOMEM. */
int map_build(const struct map_params *p, const struct map_node_info *nodes, unsigned n,
              uint8_t **buf, size_t *len);

/* The map after old with one more D-node: epoch + 1, the node appended (the data's placement
 * order keeps the old nodes where they were), every shard placed again by the same
 * rendezvous rule over the larger set, so a shard changes only the replicas the new node
 * outranks (about replicas / nodes of all shards gain it and drop one other), and the map
 * group unchanged.  Returns 0 with *buf (malloc'd, the caller frees it), CAIRN_EEXIST (its id
 * or address is in old already), CAIRN_EINVAL, CAIRN_ENOMEM. */
int map_add_node(const Cairn__ClusterMap *old, const struct map_node_info *node,
                 uint8_t **buf, size_t *len);

/* The map after old with D-node id in state: epoch + 1, every shard placed again over the
 * D-nodes that may hold replicas (up or down; not out or draining), so taking a node out
 * moves only the replicas it held (each to the next node in that shard's rendezvous order),
 * and the map group keeps its members but for one that is out or draining, replaced the same
 * way.  The node keeps its place in the list (the data's placement order).  Returns 0 with
 * *buf (malloc'd), CAIRN_ENOENT (no such node), CAIRN_EINVAL (fewer than k + m nodes would
 * remain), CAIRN_ENOMEM. */
int map_set_state(const Cairn__ClusterMap *old, uint64_t id, Cairn__NodeState state,
                  uint8_t **buf, size_t *len);

#endif
