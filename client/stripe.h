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
 */
#ifndef CAIRN_CLIENT_STRIPE_H
#define CAIRN_CLIENT_STRIPE_H

#include <stdint.h>

#include "client/cluster.h"
#include "ec/ec.h"

struct cl_io_stats {
    uint64_t stripes;
    uint64_t degraded_stripes; /* stripes that needed reconstruction */
    uint64_t frags_failed;     /* fragment reads that failed or had a bad CRC */
};

/* Write len bytes of data as object object_id, generation gen, with the cluster's layout.
 * data is borrowed for the call.  Returns 0 once all fragments are durable, or the first
 * error (CAIRN_EUNREACH, CAIRN_ETIMEDOUT, CAIRN_ENOSPC, ...); on error some fragments may
 * exist and the caller owns cleaning them up (cl_stripe_delete). */
int cl_stripe_write(struct cl_cluster *cl, uint64_t object_id, uint32_t gen, const uint8_t *data,
                    uint64_t len, struct cl_io_stats *st);

/* The same for a piece of an object: data becomes the object's stripes first_stripe,
 * first_stripe + 1, ...  Every piece but the last must hold whole stripes (a multiple of
 * k * frag_size bytes), so an object can be written as it streams in. */
int cl_stripe_write_at(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                       uint64_t first_stripe, const uint8_t *data, uint64_t len,
                       struct cl_io_stats *st);

/* Read object object_id (gen, layout l, len bytes) into out.  Returns 0, CAIRN_EDEGRADED if a
 * stripe lost more than m fragments, or another error. */
int cl_stripe_read(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                   const struct ec_layout *l, uint8_t *out, uint64_t len, struct cl_io_stats *st);

/* Read len bytes starting at stripe first_stripe (len = what the object holds from there on,
 * or a multiple of the stripe size) into out. */
int cl_stripe_read_at(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                      const struct ec_layout *l, uint64_t first_stripe, uint8_t *out,
                      uint64_t len, struct cl_io_stats *st);

/* Delete every fragment of the object; missing fragments are not an error.  Returns the first
 * other error, after trying them all. */
int cl_stripe_delete(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                     const struct ec_layout *l, uint64_t len);

#endif
