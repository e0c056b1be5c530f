/*
 * stripe.h - objects as erasure-coded stripes on the D-nodes.
 *
 * An object (a run of bytes named by a 64-bit id and a generation) is split into stripes of
 * k * frag_size bytes; m parity fragments are computed with ISA-L and a CRC32C per fragment,
 * and the k + m fragments go to the k + m D-nodes placement picks for the stripe; several
 * stripes are in flight at once.  A write returns success only when every fragment of every
 * stripe was acknowledged, and D-nodes acknowledge only durable fragments.
 *
 * Reads fetch the k data fragments straight into the caller's buffer; a fragment that is
 * missing, unreachable, late or fails its CRC is rebuilt from parity, so callers see correct
 * bytes or an error, never wrong bytes.
 *
 * Copies of each payload byte (docs/architecture.md keeps the count): full stripes are encoded
 * and sent from the caller's buffer; only the last, partial stripe is copied into a zero-padded
 * buffer.
 *
 * Recorded placement.  Where an object's fragments live is chosen when it is written and
 * recorded with it by the caller (struct cl_placement, stored in the object's Extent): every
 * read, delete and repair follows the record, never the map.  A placement is k + m positions,
 * each a D-node id; fragment i of stripe s lives at position (s + i) mod (k + m), so the
 * fragments rotate over the positions and every node serves data reads.  A write chooses the
 * positions from the object's rendezvous order over the D-nodes the map lets it place on, one
 * per failure domain, skipping nodes this process saw fail.
 *
 * Degraded writes.  A position whose D-node is down when the write starts, or fails a fragment
 * during it, is marked missing: no fragment of the object there counts, and the write goes on
 * without it.  The write is acknowledged only if at most k + m - min_frags positions are
 * missing (cl_cluster_min_frags: k + 1 by default, like Ceph's min_size) and every fragment at
 * every other position is durable; a missing position is what the repair service (the
 * self-healing issue) rebuilds onto a live node, then records there.  Fewer live nodes than the
 * minimum: the write fails with CAIRN_EUNREACH and says so.
 *
 * Callers that pass no placement (NULL) get the first design: the k + m highest rendezvous
 * scorers of each stripe over the view's D-nodes, every fragment required (the benchmarks and
 * cairnctl's stripe objects still use it).
 */
#ifndef CAIRN_CLIENT_STRIPE_H
#define CAIRN_CLIENT_STRIPE_H

#include <stdint.h>

#include "client/cluster.h"
#include "ec/ec.h"

#define CL_PLACE_MAX EC_MAX_FRAGS

/* Where an object's fragments are (see above).  A write given n == 0 chooses and fills it; a
 * write given a chosen one (the next piece of the same object) keeps to it and may add
 * missing positions. */
struct cl_placement {
    unsigned n;                 /* positions: k + m of the object's layout; 0 = not chosen */
    uint64_t ids[CL_PLACE_MAX]; /* D-node id per position (0: none was available) */
    uint32_t missing;           /* bit p: no fragment at position p counts */
};

/* How many positions are missing. */
unsigned cl_placement_missing(const struct cl_placement *pl);

struct cl_io_stats {
    uint64_t stripes;
    uint64_t degraded_stripes; /* stripes that needed reconstruction */
    uint64_t frags_failed;     /* fragment reads that failed or had a bad CRC */
};

/* Write len bytes of data as object object_id, generation gen, with the cluster's layout, at
 * placement pl (NULL: the first design, see above).  data is borrowed for the call.  Returns 0
 * once the fragments are durable (at every position of pl not missing), or the first error
 * (CAIRN_EUNREACH: too few live D-nodes, CAIRN_ETIMEDOUT, CAIRN_ENOSPC, ...); on error some
 * fragments may exist and the caller owns cleaning them up (cl_stripe_delete with the same
 * placement). */
int cl_stripe_write(struct cl_cluster *cl, uint64_t object_id, uint32_t gen, const uint8_t *data,
                    uint64_t len, struct cl_placement *pl, struct cl_io_stats *st);

/* The same for a piece of an object: data becomes the object's stripes first_stripe,
 * first_stripe + 1, ...  Every piece but the last must hold whole stripes (a multiple of
 * k * frag_size bytes), so an object can be written as it streams in. */
int cl_stripe_write_at(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                       uint64_t first_stripe, const uint8_t *data, uint64_t len,
                       struct cl_placement *pl, struct cl_io_stats *st);

/* Read object object_id (gen, layout l, len bytes) into out.  Returns 0, CAIRN_EDEGRADED if a
 * stripe lost more than m fragments, or another error. */
int cl_stripe_read(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                   const struct ec_layout *l, const struct cl_placement *pl, uint8_t *out,
                   uint64_t len, struct cl_io_stats *st);

/* Read len bytes starting at stripe first_stripe (len = what the object holds from there on,
 * or a multiple of the stripe size) into out. */
int cl_stripe_read_at(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                      const struct ec_layout *l, const struct cl_placement *pl,
                      uint64_t first_stripe, uint8_t *out, uint64_t len,
                      struct cl_io_stats *st);

/* ---- repair (the repair service, repair/repair.h, calls these) ---- */

/* The positions of pl that hold nothing that counts for good: missing ones, and ones whose
 * D-node the map has taken out, is draining or does not name (bit p per position).  A node
 * that is merely down keeps its positions: it may come back with its fragments. */
uint32_t cl_placement_lost(const struct cl_cluster *cl, const struct cl_placement *pl);

/* Where to rebuild position p of object object_id's placement pl: the node p names if it is
 * live, the map places on it and no other position names it (a node that came back gets its
 * position again); else the first node of the object's rendezvous order that is live,
 * placeable, named by no position and in a failure domain no other position's node is in.
 * "Live" is the view's picture (cl_cluster_node_down): callers keep it fresh with
 * cl_cluster_probe.  Returns 0 with *id, or CAIRN_ENOSPC when no D-node qualifies (too few
 * domains live). */
int cl_placement_target(struct cl_cluster *cl, uint64_t object_id, const struct cl_placement *pl,
                        unsigned p, uint64_t *id);

/* Rebuild the positions in mask `positions` of the object (layout l, len bytes, placed at
 * pl): every stripe is read once from the other positions (degraded reads rebuild what is
 * lost), encoded again, and the fragment each position p holds is stored durably on D-node
 * targets[p].  pl is not changed: the caller records the new nodes afterwards (and only then
 * may anyone rely on them).  Returns 0, CAIRN_EDEGRADED (fewer than k fragments of some
 * stripe are readable), or the first other error; *bytes (may be NULL) gets the fragment
 * bytes stored. */
int cl_stripe_rebuild(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                      const struct ec_layout *l, const struct cl_placement *pl, uint64_t len,
                      uint32_t positions, const uint64_t *targets, uint64_t *bytes);

/* The same for stripes [first, end) only (end beyond the object: to its end), e.g. the one
 * stripe whose fragment a D-node's scrub found corrupt (the target then is that D-node, which
 * replaces its bad copy). */
int cl_stripe_rebuild_range(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                            const struct ec_layout *l, const struct cl_placement *pl,
                            uint64_t len, uint64_t first, uint64_t end, uint32_t positions,
                            const uint64_t *targets, uint64_t *bytes);

/* Delete every fragment of the object; missing fragments are not an error.  Returns the first
 * other error, after trying them all. */
int cl_stripe_delete(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                     const struct ec_layout *l, const struct cl_placement *pl, uint64_t len);

#endif
