/*
 * ec.h - Reed-Solomon erasure coding and fragment checksums, on ISA-L.
 *
 * A stripe is k data fragments plus m parity fragments, all of one length.
 * The codec holds the encode matrix and ISA-L's expanded tables for one (k, m);
 * it is immutable after creation and may be shared by threads.  Nothing here
 * does I/O or allocates per call on the encode path: callers own every buffer.
 *
 * The matrix is ISA-L's Cauchy matrix (gf_gen_cauchy1_matrix), so every k x k
 * submatrix is invertible and any set of up to m lost fragments can be rebuilt
 * for every k + m <= EC_MAX_FRAGS.
 */
#ifndef CAIRN_EC_H
#define CAIRN_EC_H

#include <stddef.h>
#include <stdint.h>

#define EC_MAX_FRAGS 32u /* k + m limit */

struct ec_codec;

/* Create a codec for k data + m parity fragments (k >= 1, m >= 1, k + m <= EC_MAX_FRAGS).
 * Returns 0, CAIRN_EINVAL or CAIRN_ENOMEM. */
int ec_codec_create(unsigned k, unsigned m, struct ec_codec **out);
/* Free a codec; accepts NULL. */
void ec_codec_destroy(struct ec_codec *c);
unsigned ec_codec_k(const struct ec_codec *c);
unsigned ec_codec_m(const struct ec_codec *c);

/* Compute the m parity fragments of len bytes each from the k data fragments.
 * data[0..k-1] are read (borrowed), parity[0..m-1] are written (borrowed). */
void ec_encode(const struct ec_codec *c, size_t len, const uint8_t *const *data,
               uint8_t *const *parity);

/* Rebuild lost fragments in place.  frags[0..k+m-1] are buffers of len bytes, data first then
 * parity; bit i of lost set means frags[i] is missing and will be written, every other buffer
 * is read.  Returns 0, CAIRN_EDEGRADED if more than m are lost, CAIRN_EINVAL on a mask with bits
 * beyond k+m, or CAIRN_ENOMEM. */
int ec_reconstruct(const struct ec_codec *c, size_t len, uint8_t *const *frags, uint32_t lost);

/* CRC32C (iSCSI polynomial, ISA-L crc32_iscsi) of buf.  Start with seed 0; chaining
 * ec_crc32c(ec_crc32c(0, a, na), b, nb) equals the CRC of a followed by b. */
uint32_t ec_crc32c(uint32_t seed, const void *buf, size_t len);

/*
 * Stripe layout of an object: bytes [s*k*frag_size, (s+1)*k*frag_size) form stripe s.
 * Within a stripe of r bytes, every fragment is ec_layout_frag_len() bytes long and data
 * fragment j holds stripe bytes [j*flen, (j+1)*flen); bytes past the object end are zero.
 */
struct ec_layout {
    uint32_t k;
    uint32_t m;
    uint32_t frag_size; /* bytes per fragment of a full stripe */
};

/* Number of stripes for an object of obj_len bytes (0 for an empty object). */
uint64_t ec_layout_stripes(const struct ec_layout *l, uint64_t obj_len);
/* Bytes of object data in stripe s (k*frag_size except for the last stripe). */
uint64_t ec_layout_stripe_bytes(const struct ec_layout *l, uint64_t obj_len, uint64_t s);
/* Fragment length in stripe s: frag_size for full stripes, ceil(stripe_bytes / k) otherwise. */
uint32_t ec_layout_frag_len(const struct ec_layout *l, uint64_t obj_len, uint64_t s);
/* Parse "K+M" (e.g. "4+2") into k and m; returns 0 or CAIRN_EINVAL. */
int ec_layout_parse(const char *s, uint32_t *k, uint32_t *m);

#endif
