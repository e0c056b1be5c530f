/*
 * cluster.h - one thread's view of the cluster: the D-nodes, their health, and calls to them.
 *
 * A struct cl_cluster holds a transport context (one libfabric endpoint), the D-node list in
 * cluster-map order with each node's placement key, the default erasure-code layout and the
 * codecs built for it.  Everything above it (the stripe client, the metadata records, the
 * C-node heads, cairnctl and the benchmarks) reaches the D-nodes through one of these; a
 * process opens one view per thread that talks to the cluster, since a view is not
 * thread-safe.
 *
 * Health.  A D-node that fails to answer a call (timeout, unreachable) is considered down for
 * CL_DOWN_MS, and every view in the process learns it at once (the heads run one view per
 * worker thread; without sharing, each would pay the transport deadline on its own).  Reads
 * then go to parity at once and writes fail fast instead of each waiting out a deadline.  The
 * first answer from the node clears the mark.
 *
 * The cluster map (map/map.h).  A view reads the map from the D-nodes it is given (the seeds)
 * when it opens, takes the newest epoch any of them holds, and from then on knows the D-nodes
 * the map names (in the map's order, which is the data's placement order) and where every
 * metadata shard's replicas are.  Every call carries the view's epoch; a D-node with a newer
 * map refuses it (CAIRN_ESTALE) and the caller refreshes the view (cl_cluster_refresh).
 *
 * The view knows no protocol and no namespace: callers above it decide what a call means.
 */
#ifndef CAIRN_CLIENT_CLUSTER_H
#define CAIRN_CLIENT_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "ec/ec.h"
#include "map/map.h"
#include "transport/tp.h"

#define CL_MAX_DNODES 1024u
#define CL_DEFAULT_DEPTH 8u /* stripes in flight per write or read */
#define CL_DOWN_MS 10000u   /* a silent D-node is skipped this long */
#define CL_RECHECK_MS 1000u /* ... unless an operation that needs it asks again after this */
#define CL_DEFAULT_LEADER_WAIT_MS 30000u

struct cl_cluster;

struct cl_cluster_config {
    const char *dnodes;    /* space-separated HOST:PORT list, in cluster-map order */
    const char *provider;  /* NULL: transport default */
    const char *bind_host; /* local address for our endpoint; NULL lets the provider choose */
    uint32_t k, m;         /* default erasure code for writes */
    uint32_t frag_size;    /* bytes per fragment of a full stripe */
    uint32_t timeout_ms;   /* per-request deadline; 0 = transport default */
    uint32_t depth;        /* stripes in flight; 0 = CL_DEFAULT_DEPTH */
    bool no_map;           /* open on the listed D-nodes without reading a map (map init) */
    uint32_t leader_wait_ms; /* how long a metadata call waits for a shard to have a leader
                              * (elections, restarts); 0 = CL_DEFAULT_LEADER_WAIT_MS */
    uint32_t min_frags;      /* fewest durable fragments per stripe a write may be acknowledged
                              * with (degraded writes, stripe.h); 0 = k + 1; at most k + m */
};

/* Open a view: read the cluster map from the listed D-nodes (all asked at once).  cfg is
 * copied.  Returns 0, CAIRN_EINVAL (bad list or code), CAIRN_ENOENT (no listed D-node holds a
 * map: the cluster was never created, see cl_cluster_map_init), CAIRN_EUNREACH (none
 * answered), CAIRN_EFABRIC, CAIRN_ENOMEM. */
int cl_cluster_open(const struct cl_cluster_config *cfg, struct cl_cluster **out);
void cl_cluster_close(struct cl_cluster *cl); /* accepts NULL */

unsigned cl_cluster_dnodes(const struct cl_cluster *cl);
const char *cl_cluster_dnode_addr(const struct cl_cluster *cl, unsigned i);
/* The layout new data is written with. */
const struct ec_layout *cl_cluster_layout(const struct cl_cluster *cl);
/* Stripes in flight per read or write. */
unsigned cl_cluster_depth(const struct cl_cluster *cl);
struct tp_ctx *cl_cluster_tp(struct cl_cluster *cl);
/* The codec for (k, m), built on first use and owned by the view; NULL if out of memory or
 * too many distinct codes are in use. */
struct ec_codec *cl_cluster_codec(struct cl_cluster *cl, uint32_t k, uint32_t m);

/* ---- the cluster map ---- */

/* The map the view acts on (never NULL once opened without no_map). */
const Cairn__ClusterMap *cl_cluster_map(const struct cl_cluster *cl);
uint64_t cl_cluster_epoch(const struct cl_cluster *cl);
/* Metadata shards of the cluster (0 without a map). */
uint32_t cl_cluster_shards(const struct cl_cluster *cl);
/* The replicas of a metadata shard as D-node indexes, in the map's order; returns how many
 * (at most MAP_MAX_REPLICAS), 0 for a shard the map does not have; MAP_GROUP: the map
 * group's members. */
unsigned cl_cluster_shard_nodes(const struct cl_cluster *cl, uint32_t shard, unsigned *nodes);
/* The index of the D-node with id, or -1. */
int cl_cluster_node_index(const struct cl_cluster *cl, uint64_t id);
/* The map id of D-node i (0 before a map). */
uint64_t cl_cluster_node_id(const struct cl_cluster *cl, unsigned i);
/* Whether new data may be placed on D-node i (the map says up; not out or draining), and
 * whether it is at least a member that keeps its place (up or down). */
bool cl_cluster_node_placeable(const struct cl_cluster *cl, unsigned i);
bool cl_cluster_node_member(const struct cl_cluster *cl, unsigned i);
/* D-node i's failure domain (its host in the map; its address before a map). */
const char *cl_cluster_node_domain(const struct cl_cluster *cl, unsigned i);
/* The fewest durable fragments per stripe a write of the default layout may leave
 * (cl_cluster_config.min_frags). */
unsigned cl_cluster_min_frags(const struct cl_cluster *cl);
/* How long a metadata call waits for a shard to have a leader. */
uint32_t cl_cluster_leader_wait_ms(const struct cl_cluster *cl);
/* The view's writer session: a random id the metadata shards know its updates by, and the
 * number of its next update (every copy of one update carries the same number, so a shard
 * applies it once however often it is sent). */
uint64_t cl_cluster_session(const struct cl_cluster *cl);
uint64_t cl_cluster_next_seq(struct cl_cluster *cl);
/* Which D-node last said it leads a shard (index), or -1: a hint, kept per view. */
int cl_cluster_leader_hint(const struct cl_cluster *cl, uint32_t shard);
void cl_cluster_set_leader_hint(struct cl_cluster *cl, uint32_t shard, int node);

/* Read the map again from its group's members and adopt it if it is newer.  D-nodes the new
 * map adds are appended; a map that drops or reorders D-nodes is refused (CAIRN_EINVAL) until
 * placement of data is recorded too.  Returns 0 (whether or not the epoch changed), or an
 * error with the view unchanged. */
int cl_cluster_refresh(struct cl_cluster *cl);

/* A D-node not in the view, by HOST:PORT: its id and failure domain (PING).  Returns 0,
 * CAIRN_EUNREACH / CAIRN_ETIMEDOUT, CAIRN_EPROTO (no id). */
int cl_cluster_probe_addr(struct cl_cluster *cl, const char *addr, uint64_t *id, char *domain,
                          size_t cap);
/* Give the view's map to the D-node at HOST:PORT (MAP_SET), for a D-node joining the
 * cluster: one that holds a map already refuses (CAIRN_EEXIST) and learns newer maps from
 * the map group. */
int cl_cluster_give_map(struct cl_cluster *cl, const char *addr);
/* Create the cluster: ask every listed D-node for its id and failure domain, build the first
 * map (map_build) with the view's code and shards metadata shards (0: the default), and give
 * it to each of them; then the view adopts it.  A view opened with no_map does this.  Returns
 * 0, CAIRN_EEXIST (a D-node already holds a map: the cluster exists, nothing was changed),
 * CAIRN_EUNREACH (a D-node did not answer: nothing was given to anyone), or another error. */
int cl_cluster_map_init(struct cl_cluster *cl, uint32_t shards);

/* What a D-node reports when pinged. */
struct cl_node_stats {
    uint64_t dev_size, dev_used, frags; /* device bytes, bytes in use, fragments */
    uint64_t scrub_passes;              /* dnode/scrub.h: complete passes since it started */
    uint64_t scrub_bytes;               /* ... bytes checked since it started */
    uint64_t scrub_bad;                 /* fragments found corrupt, not yet replaced */
    uint64_t scrub_pos, scrub_of;       /* the pass in progress: checked, of */
};

/* Ping D-node i; on success fills *out. */
int cl_cluster_ping_stats(struct cl_cluster *cl, unsigned i, struct cl_node_stats *out);

/* One page of D-node i's fragments from cursor on (0: the start; bad_only: only those its
 * scrub found corrupt).  On success *out is the page (free with cairn__frag_list__free_unpacked);
 * its cursor goes on, its more says whether there is more. */
int cl_cluster_frag_list(struct cl_cluster *cl, unsigned i, uint64_t cursor, bool bad_only,
                         Cairn__FragList **out);

/* Delete one fragment from D-node i.  Returns 0, CAIRN_ENOENT, or a transport error. */
int cl_cluster_frag_del(struct cl_cluster *cl, unsigned i, uint64_t stripe, uint32_t gen,
                        uint32_t index);

/* Ping D-node i; on success fills the stats the D-node reports (any may be NULL). */
int cl_cluster_ping(struct cl_cluster *cl, unsigned i, uint64_t *dev_size, uint64_t *dev_used,
                    uint64_t *frags);
/* From the last successful cl_cluster_ping: the Raft groups the D-node votes in (its own
 * view), and those it leads whose membership is still moving toward the map. */
unsigned cl_cluster_last_voter_groups(const struct cl_cluster *cl);
unsigned cl_cluster_last_moving_groups(const struct cl_cluster *cl);

/* Ping every D-node at once and mark those that do not answer down, so that the next
 * operations skip them instead of each waiting out a deadline.  Returns how many are down. */
unsigned cl_cluster_probe(struct cl_cluster *cl);

/* Whether this view (or another in the process) saw D-node i fail recently. */
bool cl_cluster_node_down(const struct cl_cluster *cl, unsigned i);
/* For a D-node marked down: ask it again (a ping), at most once per CL_RECHECK_MS in this
 * view, and return whether it answered (the mark is then cleared).  A D-node that came back
 * is found at once by the operations that cannot do without it (a stripe write needs every
 * fragment) instead of after CL_DOWN_MS.  True for a node not marked down. */
bool cl_cluster_recheck(struct cl_cluster *cl, unsigned i);
/* Report the transport status of a call to D-node i (0 clears a down mark; CAIRN_ETIMEDOUT
 * and CAIRN_EUNREACH set one; other codes are the D-node's answer and say nothing). */
void cl_cluster_note(struct cl_cluster *cl, unsigned i, int transport_status);

/* The n D-nodes placement picks for item, best first (nodes has room for n; n <= dnodes). */
int cl_cluster_place(const struct cl_cluster *cl, uint64_t item, unsigned n, unsigned *nodes);
/* All D-nodes in placement order for item (nodes has room for cl_cluster_dnodes()). */
int cl_cluster_order(const struct cl_cluster *cl, uint64_t item, unsigned *nodes);

/* tp_call() to D-node node (see transport/tp.h for ownership of the buffers and the callback);
 * progress with tp_ctx_wait(cl_cluster_tp(cl), ...).  The callback should hand its transport
 * status to cl_cluster_note(). */
int cl_cluster_call(struct cl_cluster *cl, unsigned node, Cairn__Request *req,
                    const void *payload, uint32_t len, void *resp_buf, uint32_t resp_cap,
                    tp_call_cb cb, void *arg);

#endif
