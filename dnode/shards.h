/*
 * shards.h - the metadata shards this D-node holds: their Raft groups (consensus/) on its
 * metadata store (kv.h), the cluster map, and the metadata requests.
 *
 * Every shard is a Raft group of the replicas the cluster map places it on; so is the map
 * itself (group MAP_GROUP, whose one record "map" is the map).  This module is the host
 * consensus/ runs on: its round is the metadata store's round (one LMDB commit per loop
 * round for every group), its network is the fabric (OP_RAFT calls carrying one RaftBatch),
 * its state machine applies KvOp commands to the records with the entry's index as the new
 * version.
 *
 * Requests (all carry the sender's map epoch; an older one is refused with CAIRN_ESTALE and
 * our epoch):
 *   KV_PUT, KV_DEL   leader only (else CAIRN_ENOTLEADER and the leader we know); answered
 *                    once the update is committed and applied, with the record's version,
 *                    or CAIRN_EUNKNOWN if leadership was lost with the update in the log.
 *   KV_GET, KV_SCAN  leader with a lease only (CAIRN_EAGAIN while a new leader gets ready).
 *   MAP_GET          our map.
 *   MAP_SET          a first map for a D-node that has none (cluster creation, a new node);
 *                    later maps come only from the map group.
 *   RAFT             a batch for our groups.
 *
 * The map: a D-node keeps the newest map it has seen in its store.  Members of the map group
 * learn a new map when they apply it; the others ask a map group member every
 * DN_MAP_POLL_MS, and at once when a request carries a newer epoch.  A shard's leader moves
 * its group's membership toward the replicas the map names, one change at a time: add the
 * new node, promote it to voter once it caught up, then remove a node the map no longer
 * names.
 */
#ifndef CAIRN_DN_SHARDS_H
#define CAIRN_DN_SHARDS_H

#include <stdbool.h>
#include <stdint.h>

#include "dnode/kv.h"
#include "map/map.h"
#include "transport/tp.h"

#define DN_MAP_POLL_MS 2000u
#define DN_CONVERGE_MS 500u      /* how often leaders compare membership with the map */

struct dn_shards;

struct dn_shards_config {
    uint64_t self;          /* this D-node's id (dn_store_id) */
    struct dn_kv *kv;
    struct tp_ctx *tp;
    uint32_t max_msg;       /* largest Raft batch (the fabric's max payload) */
    unsigned election_ms;   /* 0: consensus default */
    unsigned heartbeat_ms;
};

/* Load the last map this D-node knew and open its groups.  Returns 0 or a CAIRN_E* code. */
int dn_shards_open(const struct dn_shards_config *cfg, struct dn_shards **out);
/* Shutting down takes two steps around the transport's end: dn_shards_close stops the groups
 * (proposals not yet durable fail, their answers go out), then the caller destroys the
 * transport, whose last calls (Raft messages in flight) still report to the shards, and only
 * then dn_shards_free releases them.  Both accept NULL; dn_shards_free alone does both. */
void dn_shards_close(struct dn_shards *s);
void dn_shards_free(struct dn_shards *s);

/* Take a request if it is one of ours (KV_*, MAP_*, RAFT): returns true if it took it. */
bool dn_shards_serve(struct dn_shards *s, struct tp_req *req);

/* Loop hooks: run timers, then end the round (commit, send, answer). */
void dn_shards_tick(struct dn_shards *s);
void dn_shards_flush(struct dn_shards *s);
/* Milliseconds until dn_shards_tick() has work. */
int dn_shards_timeout_ms(struct dn_shards *s);

uint64_t dn_shards_epoch(const struct dn_shards *s);
/* voter: the groups this D-node hosts that count it as a voter (a replica placed on it
 * becomes one once its group's leader added and promoted it; a removed replica may never
 * hear of its removal, so this is its own view).  moving: the groups it leads whose voters
 * are not yet the replicas the map names (membership changes still to make). */
void dn_shards_counts(struct dn_shards *s, unsigned *voter, unsigned *moving);

#endif
