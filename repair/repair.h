/*
 * repair.h - the repair service: puts back the redundancy that failures took from the data.
 *
 * What it repairs.  Every file's and object's extents record where their fragments are
 * (client/stripe.h: a D-node per position).  A position is lost when it is marked missing (a
 * degraded write: its node was down or failed during the write) or when its node is out,
 * draining or gone from the map (cl_placement_lost).  A node that is merely down keeps its
 * positions: it may come back with its fragments, and reads go to parity meanwhile.
 *
 * How.  A position is the unit of repair: every stripe of the object is read from the other
 * positions (degraded reads rebuild what is lost), encoded again, and the fragment the lost
 * position holds is stored on a target node (cl_placement_target: the position's own node if
 * it is back, else a live node in a failure domain the object does not use yet).  Only then
 * is the inode changed, by compare-and-set: every extent of the object that still has the
 * placement the rebuild read gets the new node at that position and loses the missing mark.
 * So a record never names a node before its fragments are durable there; a write, delete or
 * other repair that changed the record in between wins, and the rebuild's fragments are
 * deleted again if no extent references the object any more (else the next pass looks again).
 *
 * Who.  The service is stateless: any C-node (and `cairnctl repair run`) may run it, all at
 * once.  They divide the work by metadata shard through the shard's repair record ('R',
 * meta/ns.h): a worker takes the shard's lease by compare-and-set, renews it while it works,
 * and gives it back with what it found, so two workers never rebuild the same stripe while
 * clocks agree within the lease; if they ever did, both rebuild the same bytes and the
 * compare-and-set on the inode still lets only one placement win.  A pass over a shard reads
 * its inode records, collects the extents with lost positions, and rebuilds them with the
 * least redundancy left first.  The rebuild rate is capped (bytes read per second), so
 * foreground I/O keeps most of the devices.
 *
 * What it shows.  Each shard's record keeps what its last pass found, what is left (extents
 * and bytes), the rate, and totals; rp_status() sums them over the cluster (cairnctl repair
 * status).
 *
 * Not yet (issue 13): multipart parts not yet completed are repaired only once completed;
 * fragments marked corrupt by scrub; moving data to added nodes.
 */
#ifndef CAIRN_REPAIR_REPAIR_H
#define CAIRN_REPAIR_REPAIR_H

#include <stdbool.h>
#include <stdint.h>

#include "client/cluster.h"

#define RP_LEASE_MS 60000u            /* a shard's repair lease */
#define RP_DEFAULT_RATE (64ull << 20) /* bytes read per second for rebuilds */
#define RP_DEFAULT_INTERVAL_S 30u     /* between a C-node's passes */
#define RP_DEFAULT_GC_INTERVAL_S 21600u /* between a C-node's garbage sweeps (6 h) */
#define RP_DEFAULT_DOWN_OUT_S 600u      /* silence before the failure detector takes a D-node out */

struct rp_opts {
    uint64_t rate;        /* bytes read per second (0: RP_DEFAULT_RATE) */
    uint32_t fresh_ms;    /* skip a shard whose last pass ended less than this ago (0: never) */
    bool wait_leases;     /* wait for shards other workers hold instead of skipping them */
    volatile bool *stop;  /* may be NULL: set to make a pass return early */
};

/* What one pass did (summed over the shards it passed). */
struct rp_result {
    unsigned shards;      /* shards passed */
    unsigned skipped;     /* shards left to others (leased, or passed recently) */
    uint64_t extents;     /* extents with a recorded placement */
    uint64_t degraded;    /* of them, with lost positions when found */
    uint64_t rebuilt;     /* positions rebuilt and recorded */
    uint64_t bytes;       /* fragment bytes stored */
    uint64_t left;        /* extents still short at the end */
    uint64_t failed;      /* rebuilds that failed (read, write or record errors) */
    uint64_t bad;         /* fragments the D-nodes' scrubs found corrupt when the pass began */
    uint64_t bad_fixed;   /* of them, replaced by a fragment rebuilt from the rest */
};

/* One pass over every shard of the cluster with view cl.  Returns 0 (see *res), or an error
 * that stopped it (stop set: CAIRN_ECANCELED). */
int rp_pass(struct cl_cluster *cl, const struct rp_opts *o, struct rp_result *res);

/* The cluster's repair state, from every shard's record. */
struct rp_status {
    unsigned shards;        /* the map's shard count */
    unsigned passed;        /* shards with a complete pass */
    unsigned leased;        /* shards a worker holds now */
    uint64_t oldest_pass_ms; /* wall clock of the oldest shard's last pass end (0: some never) */
    uint64_t extents;
    uint64_t left;
    uint64_t left_by_lost[4]; /* [0] one position lost, [1] two, [2] three, [3] more */
    uint64_t bytes_left;
    uint64_t rebuilt;
    uint64_t rebuilt_bytes;
    uint64_t rate_bps;      /* the fastest recent pass's rate */
};
int rp_status(struct cl_cluster *cl, struct rp_status *st);

/* ---- what still names a D-node (cairnctl dnode drain, remove, replace) ---- */

struct rp_refs {
    uint64_t extents;  /* extents whose recorded placement names the node (at any position,
                        * missing ones included: a pass moves those too) */
    uint64_t bytes;    /* fragment bytes those positions hold, about */
    uint64_t unplaced; /* extents with no recorded placement, cluster-wide: they follow the
                        * map's order (the first design) and no pass can move them */
};
/* Read every shard's inode records and count the extents that name D-node id: what a pass
 * still has to move before the node holds nothing anyone needs.  The answer is as of each
 * shard's read; a write that chose its placement before the node left the map may still
 * commit one naming it.  Parts of multipart uploads not yet completed are not counted (a
 * pass does not repair them either).  Returns 0 (see *out), or the first error reading a
 * shard. */
int rp_node_refs(struct cl_cluster *cl, uint64_t id, struct rp_refs *out);

/* ---- the background service a C-node runs ---- */

struct rp_service;

/* Start a thread that opens its own view with cfg (copied; its strings must outlive the
 * service) and runs a pass every interval_s seconds, skipping shards another worker passed
 * within the interval.
 *
 * The failure detector: before each pass the service pings every D-node; one that has not
 * answered any ping for down_out_s (like Ceph's down-out interval; the C-node's default is
 * 600 s) is taken out of the map (NODE_OUT), so its shard replicas move and the passes rebuild
 * its fragments elsewhere.  Only while a majority of the map's D-nodes answer this C-node (one
 * that is cut off itself takes nobody out), never more than a quarter of the map's D-nodes out
 * at once (the rest is left to an operator: a rack that lost power should come back, not be
 * rebuilt), and never below k + m placeable D-nodes (map_set_state refuses).  Any C-node may
 * do it; two that race build the same next map, and the compare-and-set lets one win.  Returns 0, CAIRN_ENOMEM, CAIRN_EINVAL (interval 0). */
struct rp_service_opts {
    uint32_t interval_s;    /* between repair passes (must not be 0) */
    uint64_t rate;          /* rebuild bytes per second (0: RP_DEFAULT_RATE) */
    uint32_t gc_interval_s; /* between garbage sweeps (repair/gc.h; 0: none) */
    uint64_t gc_grace_ms;   /* the sweeper's grace (0: GC_DEFAULT_GRACE_MS) */
    uint32_t down_out_s;    /* the failure detector: a D-node silent this long is taken out
                             * of the map (0: never; see rp_service_start) */
};
int rp_service_start(const struct cl_cluster_config *cfg, const struct rp_service_opts *o,
                     struct rp_service **out);
/* What the service's passes found and did since it started, added up (for the C-node's
 * metrics; any thread may ask). */
struct rp_totals {
    uint64_t passes;
    uint64_t degraded; /* extents found with lost positions (again in every pass until mended) */
    uint64_t rebuilt;  /* positions rebuilt and recorded */
    uint64_t bytes;    /* fragment bytes they stored */
    uint64_t failed;   /* rebuilds that failed */
    uint64_t gc_passes;   /* garbage sweeps (repair/gc.h) */
    uint64_t gc_deleted;  /* fragments they deleted */
    uint64_t gc_bytes;    /* their bytes */
    uint64_t taken_out;   /* D-nodes the failure detector took out of the map */
};
void rp_service_totals(struct rp_service *svc, struct rp_totals *out);
/* Stop it (waits for the rebuild in progress to end); accepts NULL. */
void rp_service_stop(struct rp_service *svc);

#endif
