/*
 * ec.c - Reed-Solomon erasure coding and CRC32C on ISA-L (see ec.h).
 *
 * The codec keeps the (k + m) x k Cauchy encode matrix and ISA-L's expanded multiplication
 * tables for its m parity rows; both are built once, so ec_encode() goes straight into ISA-L's
 * SIMD kernel with no allocation and no per-call setup.  Reconstruction is the slow path: it picks
 * the first k surviving fragments, inverts the k x k submatrix of their rows, derives one decode
 * row per lost fragment (a data row of the inverse, or a parity row of the encode matrix times the
 * inverse) and runs the same kernel over the survivors.  Cauchy matrices make every such
 * submatrix invertible, which a Vandermonde-derived matrix does not guarantee for all k + m.
 *
 * ISA-L's prototypes take lengths as int while our API takes size_t.  Its assembly reads the
 * whole 64-bit register, so a size_t cast to int works or not depending on what the compiler
 * left in the upper half (an int of -5 reads ~4 GiB and crashes).  Every call into it therefore
 * goes through a loop over EC_ISAL_CHUNK-byte pieces, each a valid int.  Both the code and the CRC
 * are position-independent (the CRC chains through its seed), so the split changes no result;
 * the chunk is small enough that ordinary tests cross chunk boundaries and exercise the loop.
 */
#include "ec/ec.h"

#include <isa-l/crc.h>
#include <isa-l/erasure_code.h>
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"

#define EC_ISAL_CHUNK ((size_t)1 << 20) /* bytes per ISA-L call; must fit in an int */

struct ec_codec {
    unsigned k, m;
    uint8_t matrix[EC_MAX_FRAGS * EC_MAX_FRAGS]; /* (k + m) rows of k coefficients */
    uint8_t *tables;                             /* 32 * k * m bytes: parity rows expanded */
};

/* Run ISA-L's kernel over len bytes in int-sized pieces: out[r] = sum of tables row r * in[*].
 * ISA-L's prototype is not const-qualified; it only reads in and the tables. */
static void encode_chunked(size_t len, unsigned k, unsigned rows, uint8_t *tables,
                           uint8_t *const *in, uint8_t *const *out)
{
    uint8_t *src[EC_MAX_FRAGS], *dst[EC_MAX_FRAGS];

    assert(k <= EC_MAX_FRAGS && rows <= EC_MAX_FRAGS);
    for (size_t off = 0; off < len; off += EC_ISAL_CHUNK) {
        size_t n = CAIRN_MIN(len - off, EC_ISAL_CHUNK);

        for (unsigned i = 0; i < k; i++)
            src[i] = in[i] + off;
        for (unsigned i = 0; i < rows; i++)
            dst[i] = out[i] + off;
        ec_encode_data((int)n, (int)k, (int)rows, tables, src, dst);
    }
}

int ec_codec_create(unsigned k, unsigned m, struct ec_codec **out)
{
    struct ec_codec *c;

    if (k < 1 || m < 1 || k + m > EC_MAX_FRAGS)
        return CAIRN_EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return CAIRN_ENOMEM;
    c->tables = malloc(32u * k * m);
    if (!c->tables) {
        free(c);
        return CAIRN_ENOMEM;
    }
    c->k = k;
    c->m = m;
    gf_gen_cauchy1_matrix(c->matrix, (int)(k + m), (int)k);
    ec_init_tables((int)k, (int)m, c->matrix + k * k, c->tables);
    *out = c;
    return 0;
}

void ec_codec_destroy(struct ec_codec *c)
{
    if (!c)
        return;
    free(c->tables);
    free(c);
}

unsigned ec_codec_k(const struct ec_codec *c)
{
    return c->k;
}

unsigned ec_codec_m(const struct ec_codec *c)
{
    return c->m;
}

void ec_encode(const struct ec_codec *c, size_t len, const uint8_t *const *data,
               uint8_t *const *parity)
{
    encode_chunked(len, c->k, c->m, c->tables, (uint8_t *const *)data, parity);
}

int ec_reconstruct(const struct ec_codec *c, size_t len, uint8_t *const *frags, uint32_t lost)
{
    unsigned k = c->k, n = c->k + c->m, nlost = 0, nsurv = 0;
    uint8_t sub[EC_MAX_FRAGS * EC_MAX_FRAGS], inv[EC_MAX_FRAGS * EC_MAX_FRAGS];
    uint8_t rows[EC_MAX_FRAGS * EC_MAX_FRAGS];
    uint8_t *src[EC_MAX_FRAGS], *dst[EC_MAX_FRAGS], *tables;
    unsigned lost_idx[EC_MAX_FRAGS];

    if (n < 32 && (lost >> n))
        return CAIRN_EINVAL;
    if (lost == 0)
        return 0;
    if ((unsigned)__builtin_popcount(lost) > c->m)
        return CAIRN_EDEGRADED;
    for (unsigned i = 0; i < n; i++) {
        if (lost & (1u << i)) {
            lost_idx[nlost] = i;
            dst[nlost++] = frags[i];
        } else if (nsurv < k) {
            memcpy(sub + nsurv * k, c->matrix + i * k, k);
            src[nsurv++] = frags[i];
        }
    }
    if (gf_invert_matrix(sub, inv, (int)k) < 0)
        return CAIRN_EDEGRADED; /* cannot happen for a Cauchy matrix; refuse rather than guess */
    for (unsigned l = 0; l < nlost; l++) {
        unsigned f = lost_idx[l];

        if (f < k) {
            /* A data fragment: its row of the inverse maps survivors back to it. */
            memcpy(rows + l * k, inv + f * k, k);
        } else {
            /* A parity fragment: its encode row applied to the recovered data. */
            for (unsigned j = 0; j < k; j++) {
                uint8_t s = 0;

                for (unsigned i = 0; i < k; i++)
                    s ^= gf_mul(c->matrix[f * k + i], inv[i * k + j]);
                rows[l * k + j] = s;
            }
        }
    }
    tables = malloc(32u * k * nlost);
    if (!tables)
        return CAIRN_ENOMEM;
    ec_init_tables((int)k, (int)nlost, rows, tables);
    encode_chunked(len, k, nlost, tables, src, dst);
    free(tables);
    return 0;
}

uint32_t ec_crc32c(uint32_t seed, const void *buf, size_t len)
{
    /* ISA-L's crc32_iscsi works on the raw register (no pre/post inversion); wrapping it with
     * inversions gives the standard CRC32C, whose chaining uses the previous result as seed.
     * The raw register chains the same way, so the pieces need only one inversion each end. */
    const unsigned char *p = buf;
    uint32_t crc = ~seed;

    for (size_t off = 0; off < len; off += EC_ISAL_CHUNK)
        crc = crc32_iscsi((unsigned char *)p + off, (int)CAIRN_MIN(len - off, EC_ISAL_CHUNK), crc);
    return ~crc;
}

/* Bytes in a full stripe; a layout with k or frag_size 0 is a caller bug, not an input. */
static uint64_t layout_stripe_size(const struct ec_layout *l)
{
    assert(l->k >= 1 && l->frag_size >= 1);
    return (uint64_t)l->k * l->frag_size;
}

uint64_t ec_layout_stripes(const struct ec_layout *l, uint64_t obj_len)
{
    uint64_t sb = layout_stripe_size(l);

    /* Not (obj_len + sb - 1) / sb, which wraps for objects near UINT64_MAX. */
    return obj_len / sb + (obj_len % sb != 0);
}

uint64_t ec_layout_stripe_bytes(const struct ec_layout *l, uint64_t obj_len, uint64_t s)
{
    uint64_t sb = layout_stripe_size(l);

    /* Compare stripe indexes first so s * sb cannot overflow. */
    if (s >= ec_layout_stripes(l, obj_len))
        return 0;
    return CAIRN_MIN(obj_len - s * sb, sb);
}

uint32_t ec_layout_frag_len(const struct ec_layout *l, uint64_t obj_len, uint64_t s)
{
    uint64_t bytes = ec_layout_stripe_bytes(l, obj_len, s);

    return (uint32_t)((bytes + l->k - 1) / l->k);
}

static int parse_uint(const char **p, uint32_t *v)
{
    const char *s = *p;
    uint32_t x = 0;

    if (*s < '0' || *s > '9')
        return CAIRN_EINVAL;
    while (*s >= '0' && *s <= '9') {
        x = x * 10 + (uint32_t)(*s++ - '0');
        if (x > EC_MAX_FRAGS)
            return CAIRN_EINVAL;
    }
    *v = x;
    *p = s;
    return 0;
}

int ec_layout_parse(const char *s, uint32_t *k, uint32_t *m)
{
    uint32_t a, b;

    if (!s || parse_uint(&s, &a) || *s++ != '+' || parse_uint(&s, &b) || *s)
        return CAIRN_EINVAL;
    if (a < 1 || b < 1 || a + b > EC_MAX_FRAGS)
        return CAIRN_EINVAL;
    *k = a;
    *m = b;
    return 0;
}
