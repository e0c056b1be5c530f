/*
 * xdr.c - XDR (RFC 4506) decoding and encoding (see xdr.h).
 *
 * Decoding.  Every item goes through one bounds check, take(), which compares the bytes asked
 * for with the bytes left before any pointer is moved, so no arithmetic ever leaves the
 * buffer.  The error flag is sticky: once set, take() refuses everything and the decoders
 * return zero or NULL, which lets protocol code decode a whole structure straight through and
 * test xdr_dec_ok() once.  Padding after opaque data must be present (the next item starts at a
 * multiple of 4) but its value is not checked: RFC 4506 says senders write zeros, and refusing
 * a peer that does not buys nothing.  A successful decode never returns NULL (an empty input
 * points at a static empty buffer), so NULL always means an error.
 *
 * Encoding.  The buffer grows by doubling, never past the encoder's max, which the caller sets
 * to what a reply may be (a READ reply of rsize plus its header); running into it is an error
 * like running out of memory, so a caller cannot build a reply larger than it promised the
 * client.  Padding is always written as zeros.  Invariant: len <= cap and len <= max.
 */
#include "cnode/rpc/xdr.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"

#define ENC_MIN_CAP 256u

/* Bytes of zero padding after n bytes of opaque data. */
static inline size_t pad4(uint64_t n)
{
    return (size_t)((4u - (n & 3u)) & 3u);
}

static const uint8_t empty_input[1];

/* ---- decoding ---- */

void xdr_dec_init(struct xdr_dec *d, const void *buf, size_t len)
{
    /* Never keep a NULL position: NULL + 0 is undefined, and NULL is our error value. */
    d->p = buf ? (const uint8_t *)buf : empty_input;
    d->end = d->p + (buf ? len : 0);
    d->err = false;
}

/* Consume n bytes (n may exceed size_t's range on 32-bit hosts, hence uint64_t). */
static const uint8_t *take(struct xdr_dec *d, uint64_t n)
{
    const uint8_t *at;

    if (d->err)
        return NULL;
    if (n > (uint64_t)(d->end - d->p)) {
        d->err = true;
        return NULL;
    }
    at = d->p;
    d->p += n;
    return at;
}

static inline uint32_t load_be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

uint32_t xdr_get_u32(struct xdr_dec *d)
{
    const uint8_t *b = take(d, 4);

    return b ? load_be32(b) : 0;
}

uint64_t xdr_get_u64(struct xdr_dec *d)
{
    const uint8_t *b = take(d, 8);

    return b ? (uint64_t)load_be32(b) << 32 | load_be32(b + 4) : 0;
}

bool xdr_get_bool(struct xdr_dec *d)
{
    uint32_t v = xdr_get_u32(d);

    if (v > 1) {
        d->err = true;
        return false;
    }
    return v == 1;
}

const uint8_t *xdr_get_fixed(struct xdr_dec *d, uint32_t len)
{
    /* Data and padding are taken in one step: a message cut inside the padding is short too. */
    return take(d, (uint64_t)len + pad4(len));
}

const uint8_t *xdr_get_var(struct xdr_dec *d, uint32_t max, uint32_t *len)
{
    uint32_t n = xdr_get_u32(d);
    const uint8_t *b;

    *len = 0;
    if (d->err)
        return NULL;
    if (n > max) {
        d->err = true;
        return NULL;
    }
    b = xdr_get_fixed(d, n);
    if (b)
        *len = n;
    return b;
}

/* ---- encoding ---- */

void xdr_enc_init(struct xdr_enc *e, size_t max)
{
    e->buf = NULL;
    e->len = 0;
    e->cap = 0;
    e->max = max;
    e->err = false;
}

void xdr_enc_fini(struct xdr_enc *e)
{
    free(e->buf);
    xdr_enc_init(e, e->max);
}

uint8_t *xdr_enc_take(struct xdr_enc *e, size_t *len)
{
    uint8_t *b = e->buf;

    if (e->err || e->len == 0) {
        free(b);
        b = NULL;
        *len = 0;
    } else {
        *len = e->len;
    }
    /* The encoder starts over empty, with the same limit: the buffer is the caller's now. */
    xdr_enc_init(e, e->max);
    return b;
}

/* Append n bytes (uninitialised) and return where they start; NULL and the error flag if the
 * encoding would pass max or memory runs out.  Never returns NULL on success, even for n 0. */
static uint8_t *grow(struct xdr_enc *e, uint64_t n)
{
    uint8_t *at;

    if (e->err)
        return NULL;
    if (n > e->max - e->len) {
        e->err = true;
        return NULL;
    }
    if (!e->buf || e->len + n > e->cap) {
        size_t want = e->len + (size_t)n;
        size_t cap = e->cap ? e->cap : ENC_MIN_CAP;
        uint8_t *nb;

        while (cap < want)
            cap = cap > SIZE_MAX / 2 ? want : cap * 2;
        /* Doubling stops at max; the 1 keeps realloc(p, 0) out of it when max is 0. */
        cap = CAIRN_MAX(CAIRN_MIN(cap, e->max), CAIRN_MAX(want, 1));
        nb = realloc(e->buf, cap);
        if (!nb) {
            e->err = true; /* the old buffer stays valid and owned by e */
            return NULL;
        }
        e->buf = nb;
        e->cap = cap;
    }
    at = e->buf + e->len;
    e->len += (size_t)n;
    return at;
}

static inline void store_be32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

void xdr_put_u32(struct xdr_enc *e, uint32_t v)
{
    uint8_t *b = grow(e, 4);

    if (b)
        store_be32(b, v);
}

void xdr_put_u64(struct xdr_enc *e, uint64_t v)
{
    uint8_t *b = grow(e, 8);

    if (b) {
        store_be32(b, (uint32_t)(v >> 32));
        store_be32(b + 4, (uint32_t)v);
    }
}

void xdr_put_bool(struct xdr_enc *e, bool v)
{
    xdr_put_u32(e, v ? 1 : 0);
}

uint8_t *xdr_put_reserve(struct xdr_enc *e, uint32_t len)
{
    size_t pad = pad4(len);
    uint8_t *b = grow(e, (uint64_t)len + pad);

    if (b)
        memset(b + len, 0, pad);
    return b;
}

void xdr_put_fixed(struct xdr_enc *e, const void *data, uint32_t len)
{
    uint8_t *b = xdr_put_reserve(e, len);

    if (b && len)
        memcpy(b, data, len);
}

void xdr_put_var(struct xdr_enc *e, const void *data, uint32_t len)
{
    xdr_put_u32(e, len);
    xdr_put_fixed(e, data, len);
}

void xdr_reserve_trim(struct xdr_enc *e, size_t pos, uint32_t used)
{
    uint64_t keep = (uint64_t)used + pad4(used);

    if (e->err)
        return;
    /* Trimming may only shrink: a pos or used that points past the encoding is a caller bug,
     * reported like any other encoding failure rather than growing over unwritten bytes. */
    if (pos > e->len || keep > e->len - pos) {
        e->err = true;
        return;
    }
    e->len = pos + (size_t)keep;
    if (keep > used) /* the new padding may hold bytes the caller wrote */
        memset(e->buf + pos + used, 0, (size_t)keep - used);
}

void xdr_patch_u32(struct xdr_enc *e, size_t pos, uint32_t v)
{
    if (e->err)
        return;
    if (pos > e->len || e->len - pos < 4) {
        e->err = true;
        return;
    }
    store_be32(e->buf + pos, v);
}
