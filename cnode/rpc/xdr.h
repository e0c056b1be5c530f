/*
 * xdr.h - XDR (RFC 4506) decoding from a borrowed buffer and encoding into a growable one.
 *
 * Decoding never reads past the end and never allocates: a short or malformed input sets the
 * decoder's error flag, every later call returns zero values, and the caller checks
 * xdr_dec_ok() once at the end.  Variable-length items are returned as pointers into the
 * input, after their length was checked against the caller's maximum.
 *
 * Encoding appends to a malloc'd buffer that grows up to a fixed maximum; running out of room
 * (or of memory) sets the encoder's error flag in the same way.
 */
#ifndef CAIRN_CN_XDR_H
#define CAIRN_CN_XDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xdr_dec {
    const uint8_t *p, *end; /* borrowed */
    bool err;
};

void xdr_dec_init(struct xdr_dec *d, const void *buf, size_t len);
static inline bool xdr_dec_ok(const struct xdr_dec *d) { return !d->err; }
static inline size_t xdr_dec_left(const struct xdr_dec *d) { return d->err ? 0 : (size_t)(d->end - d->p); }

uint32_t xdr_get_u32(struct xdr_dec *d);
uint64_t xdr_get_u64(struct xdr_dec *d);
/* A bool must be 0 or 1; anything else is an error. */
bool xdr_get_bool(struct xdr_dec *d);
/* opaque[len] (fixed): a pointer to len bytes in the input; the padding to 4 is skipped.
 * NULL (with the error flag) if short. */
const uint8_t *xdr_get_fixed(struct xdr_dec *d, uint32_t len);
/* opaque<max> / string<max>: *len gets the length; error if it exceeds max or the input. */
const uint8_t *xdr_get_var(struct xdr_dec *d, uint32_t max, uint32_t *len);

struct xdr_enc {
    uint8_t *buf; /* owned */
    size_t len, cap, max;
    bool err;
};

/* max: the most bytes the encoding may grow to. */
void xdr_enc_init(struct xdr_enc *e, size_t max);
void xdr_enc_fini(struct xdr_enc *e);
static inline bool xdr_enc_ok(const struct xdr_enc *e) { return !e->err; }
/* Hand the buffer to the caller (*len bytes; NULL on error or if empty) and reset e. */
uint8_t *xdr_enc_take(struct xdr_enc *e, size_t *len);

void xdr_put_u32(struct xdr_enc *e, uint32_t v);
void xdr_put_u64(struct xdr_enc *e, uint64_t v);
void xdr_put_bool(struct xdr_enc *e, bool v);
void xdr_put_fixed(struct xdr_enc *e, const void *data, uint32_t len); /* + zero padding */
void xdr_put_var(struct xdr_enc *e, const void *data, uint32_t len);   /* length, bytes, padding */
/* Append len bytes (+ zero padding) to be filled in by the caller, e.g. READ data read straight
 * into the reply; returns where, or NULL on error.  The pointer is valid until the next put. */
uint8_t *xdr_put_reserve(struct xdr_enc *e, uint32_t len);
/* Give back the tail of a reservation that was not filled: the encoding shrinks to
 * len_before + used (+ padding).  pos is the xdr offset the reservation started at. */
void xdr_reserve_trim(struct xdr_enc *e, size_t pos, uint32_t used);
/* Overwrite the u32 at byte offset pos (written earlier). */
void xdr_patch_u32(struct xdr_enc *e, size_t pos, uint32_t v);

#endif
