/*
 * XDR and ONC RPC call/reply tests.  XDR: byte-exact encodings and round trips of every item
 * type, padding (written as zeros, skipped whatever it holds), each decoding limit (short
 * input, length over the maximum, bad bool) with its sticky error, reservations trimmed back
 * with their padding, and the encoder's size limit.  RPC: calls built by hand here (not with
 * the encoder under test) for each credential case and each way a header can be wrong, every
 * prefix of valid calls (decoded from an exact-size heap copy, so ASan sees any over-read),
 * and the three reply encoders byte for byte.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/rpc/rpc.h"
#include "cnode/rpc/xdr.h"

/* ---- a byte builder independent of the encoder under test ---- */

struct bb {
    uint8_t b[4096];
    size_t len;
};

static void bb_u32(struct bb *b, uint32_t v)
{
    cr_assert(b->len + 4 <= sizeof(b->b));
    b->b[b->len++] = (uint8_t)(v >> 24);
    b->b[b->len++] = (uint8_t)(v >> 16);
    b->b[b->len++] = (uint8_t)(v >> 8);
    b->b[b->len++] = (uint8_t)v;
}

static void bb_bytes(struct bb *b, const void *p, size_t n)
{
    cr_assert(b->len + n <= sizeof(b->b));
    if (n)
        memcpy(b->b + b->len, p, n);
    b->len += n;
}

/* opaque<>: length, bytes, zero padding. */
static void bb_var(struct bb *b, const void *p, size_t n)
{
    static const uint8_t zero[3];

    bb_u32(b, (uint32_t)n);
    bb_bytes(b, p, n);
    bb_bytes(b, zero, (4 - n % 4) % 4);
}

static void expect_bytes(const uint8_t *got, size_t got_len, const struct bb *want)
{
    cr_assert_eq(got_len, want->len, "length %zu, expected %zu", got_len, want->len);
    cr_assert(memcmp(got, want->b, want->len) == 0);
}

/* ---- XDR decoding ---- */

Test(xdr, scalars_encode_big_endian_and_round_trip)
{
    struct xdr_enc e;
    struct xdr_dec d;
    struct bb want = {0};
    uint8_t *buf;
    size_t len;

    xdr_enc_init(&e, 1024);
    xdr_put_u32(&e, 0x01020304u);
    xdr_put_u64(&e, 0x1122334455667788ull);
    xdr_put_bool(&e, true);
    xdr_put_bool(&e, false);
    xdr_put_u32(&e, UINT32_MAX);
    cr_assert(xdr_enc_ok(&e));
    bb_u32(&want, 0x01020304u);
    bb_u32(&want, 0x11223344u);
    bb_u32(&want, 0x55667788u);
    bb_u32(&want, 1);
    bb_u32(&want, 0);
    bb_u32(&want, UINT32_MAX);
    buf = xdr_enc_take(&e, &len);
    expect_bytes(buf, len, &want);
    cr_assert_eq(e.len, 0);
    cr_assert_null(e.buf);

    xdr_dec_init(&d, buf, len);
    cr_assert_eq(xdr_get_u32(&d), 0x01020304u);
    cr_assert_eq(xdr_get_u64(&d), 0x1122334455667788ull);
    cr_assert(xdr_get_bool(&d));
    cr_assert_not(xdr_get_bool(&d));
    cr_assert_eq(xdr_get_u32(&d), UINT32_MAX);
    cr_assert(xdr_dec_ok(&d));
    cr_assert_eq(xdr_dec_left(&d), 0);
    free(buf);
    xdr_enc_fini(&e);
}

Test(xdr, opaque_of_every_padding_round_trips)
{
    const uint8_t data[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

    for (uint32_t n = 0; n <= sizeof(data); n++) {
        struct xdr_enc e;
        struct xdr_dec d;
        struct bb want = {0};
        const uint8_t *p;
        uint32_t got;
        uint8_t *buf;
        size_t len;

        xdr_enc_init(&e, 1024);
        xdr_put_fixed(&e, data, n);
        xdr_put_var(&e, data, n);
        xdr_put_u32(&e, 0xdeadbeefu);
        cr_assert(xdr_enc_ok(&e));
        bb_bytes(&want, data, n);
        bb_bytes(&want, "\0\0\0", (4 - n % 4) % 4);
        bb_var(&want, data, n);
        bb_u32(&want, 0xdeadbeefu);
        buf = xdr_enc_take(&e, &len);
        expect_bytes(buf, len, &want);

        xdr_dec_init(&d, buf, len);
        p = xdr_get_fixed(&d, n);
        cr_assert_not_null(p);
        cr_assert(memcmp(p, data, n) == 0);
        p = xdr_get_var(&d, n, &got);
        cr_assert_not_null(p);
        cr_assert_eq(got, n);
        cr_assert(memcmp(p, data, n) == 0);
        cr_assert_eq(xdr_get_u32(&d), 0xdeadbeefu);
        cr_assert(xdr_dec_ok(&d));
        cr_assert_eq(xdr_dec_left(&d), 0);
        free(buf);
    }
}

Test(xdr, padding_is_skipped_whatever_it_holds)
{
    const uint8_t in[] = {0, 0, 0, 1, 'x', 0xff, 0xee, 0xdd, 0, 0, 0, 7};
    struct xdr_dec d;
    const uint8_t *p;
    uint32_t n;

    xdr_dec_init(&d, in, sizeof(in));
    p = xdr_get_var(&d, 8, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(p, in + 4);
    cr_assert_eq(xdr_get_u32(&d), 7);
    cr_assert(xdr_dec_ok(&d));
}

Test(xdr, var_longer_than_max_is_an_error)
{
    const uint8_t in[] = {0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e', 0, 0, 0};
    struct xdr_dec d;
    uint32_t n = 99;

    xdr_dec_init(&d, in, sizeof(in));
    cr_assert_null(xdr_get_var(&d, 4, &n));
    cr_assert_eq(n, 0);
    cr_assert_not(xdr_dec_ok(&d));

    xdr_dec_init(&d, in, sizeof(in));
    cr_assert_not_null(xdr_get_var(&d, 5, &n));
    cr_assert_eq(n, 5);
    cr_assert(xdr_dec_ok(&d));
}

Test(xdr, var_longer_than_input_is_an_error)
{
    /* 0xffffffff bytes announced with no limit: the length must not wrap any arithmetic. */
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    const uint8_t cut[] = {0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e'}; /* padding missing */
    struct xdr_dec d;
    uint32_t n = 99;

    xdr_dec_init(&d, huge, sizeof(huge));
    cr_assert_null(xdr_get_var(&d, UINT32_MAX, &n));
    cr_assert_eq(n, 0);
    cr_assert_not(xdr_dec_ok(&d));

    xdr_dec_init(&d, cut, sizeof(cut));
    cr_assert_null(xdr_get_var(&d, 8, &n));
    cr_assert_not(xdr_dec_ok(&d));

    xdr_dec_init(&d, huge, sizeof(huge));
    cr_assert_null(xdr_get_fixed(&d, UINT32_MAX));
    cr_assert_not(xdr_dec_ok(&d));
}

Test(xdr, short_scalars_are_errors)
{
    const uint8_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct xdr_dec d;

    xdr_dec_init(&d, in, 3);
    cr_assert_eq(xdr_get_u32(&d), 0);
    cr_assert_not(xdr_dec_ok(&d));

    xdr_dec_init(&d, in, 7);
    cr_assert_eq(xdr_get_u64(&d), 0);
    cr_assert_not(xdr_dec_ok(&d));

    xdr_dec_init(&d, in, 0);
    cr_assert_not(xdr_get_bool(&d));
    cr_assert_not(xdr_dec_ok(&d));
}

Test(xdr, bool_other_than_0_or_1_is_an_error)
{
    const uint8_t two[] = {0, 0, 0, 2}, high[] = {0x80, 0, 0, 1}, one[] = {0, 0, 0, 1};
    struct xdr_dec d;

    xdr_dec_init(&d, two, sizeof(two));
    cr_assert_not(xdr_get_bool(&d));
    cr_assert_not(xdr_dec_ok(&d));
    xdr_dec_init(&d, high, sizeof(high));
    cr_assert_not(xdr_get_bool(&d));
    cr_assert_not(xdr_dec_ok(&d));
    xdr_dec_init(&d, one, sizeof(one));
    cr_assert(xdr_get_bool(&d));
    cr_assert(xdr_dec_ok(&d));
}

Test(xdr, error_is_sticky)
{
    const uint8_t in[] = {0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    struct xdr_dec d;
    uint32_t n = 5;

    xdr_dec_init(&d, in, sizeof(in));
    cr_assert_null(xdr_get_var(&d, 8, &n)); /* 9 > 8 */
    cr_assert_eq(xdr_dec_left(&d), 0);
    /* Enough bytes remain for each of these, yet all give zero values. */
    cr_assert_eq(xdr_get_u32(&d), 0);
    cr_assert_eq(xdr_get_u64(&d), 0);
    cr_assert_not(xdr_get_bool(&d));
    cr_assert_null(xdr_get_fixed(&d, 0));
    cr_assert_null(xdr_get_var(&d, 100, &n));
    cr_assert_eq(n, 0);
    cr_assert_not(xdr_dec_ok(&d));
}

Test(xdr, empty_input_and_empty_items)
{
    struct xdr_dec d;
    uint32_t n;
    const uint8_t zero_len[] = {0, 0, 0, 0};

    /* A zero-length item is a success, and success is never NULL, even on a NULL buffer. */
    xdr_dec_init(&d, NULL, 0);
    cr_assert_not_null(xdr_get_fixed(&d, 0));
    cr_assert(xdr_dec_ok(&d));
    cr_assert_eq(xdr_dec_left(&d), 0);
    xdr_get_u32(&d);
    cr_assert_not(xdr_dec_ok(&d));

    xdr_dec_init(&d, zero_len, sizeof(zero_len));
    cr_assert_not_null(xdr_get_var(&d, 0, &n));
    cr_assert_eq(n, 0);
    cr_assert(xdr_dec_ok(&d));
}

/* ---- XDR encoding ---- */

Test(xdr, reserve_pads_and_trim_shrinks)
{
    struct xdr_enc e;
    struct bb want = {0};
    uint8_t *r;
    size_t pos;

    xdr_enc_init(&e, 1024);
    xdr_put_u32(&e, 7);
    pos = e.len;
    r = xdr_put_reserve(&e, 10);
    cr_assert_not_null(r);
    cr_assert_eq(r, e.buf + pos);
    cr_assert_eq(e.len, pos + 12);
    cr_assert(r[10] == 0 && r[11] == 0, "reservation padding is zero");
    memset(r, 'x', 10);
    /* Only 5 of the 10 bytes were filled: the encoding ends at 4 + 5 + 3 bytes of padding,
     * and the padding is zeroed even though the caller wrote 'x' there. */
    xdr_reserve_trim(&e, pos, 5);
    cr_assert(xdr_enc_ok(&e));
    cr_assert_eq(e.len, pos + 8);
    xdr_put_u32(&e, 9);
    bb_u32(&want, 7);
    bb_bytes(&want, "xxxxx\0\0\0", 8);
    bb_u32(&want, 9);
    expect_bytes(e.buf, e.len, &want);

    /* Trimming to nothing and to the whole reservation. */
    pos = e.len;
    r = xdr_put_reserve(&e, 6);
    cr_assert_not_null(r);
    xdr_reserve_trim(&e, pos, 0);
    cr_assert_eq(e.len, pos);
    r = xdr_put_reserve(&e, 6);
    cr_assert_not_null(r);
    xdr_reserve_trim(&e, pos, 6);
    cr_assert_eq(e.len, pos + 8);
    cr_assert(xdr_enc_ok(&e));
    xdr_enc_fini(&e);
}

Test(xdr, trim_cannot_grow)
{
    struct xdr_enc e;
    size_t pos;

    xdr_enc_init(&e, 1024);
    pos = e.len;
    cr_assert_not_null(xdr_put_reserve(&e, 4));
    xdr_reserve_trim(&e, pos, 5);
    cr_assert_not(xdr_enc_ok(&e));
    xdr_enc_fini(&e);

    xdr_enc_init(&e, 1024);
    xdr_put_u32(&e, 1);
    xdr_reserve_trim(&e, 8, 0);
    cr_assert_not(xdr_enc_ok(&e));
    xdr_enc_fini(&e);
}

Test(xdr, reserve_of_zero_bytes_is_not_an_error)
{
    struct xdr_enc e;

    xdr_enc_init(&e, 0);
    cr_assert_not_null(xdr_put_reserve(&e, 0));
    cr_assert(xdr_enc_ok(&e));
    cr_assert_eq(e.len, 0);
    xdr_enc_fini(&e);
}

Test(xdr, encoder_max_is_a_hard_limit)
{
    struct xdr_enc e;
    uint8_t *buf;
    size_t len = 99;

    xdr_enc_init(&e, 12);
    xdr_put_u32(&e, 1);
    xdr_put_u64(&e, 2); /* exactly max */
    cr_assert(xdr_enc_ok(&e));
    cr_assert_eq(e.len, 12);
    xdr_put_bool(&e, true);
    cr_assert_not(xdr_enc_ok(&e));
    cr_assert_eq(e.len, 12, "a failed put writes nothing");
    cr_assert_null(xdr_put_reserve(&e, 0), "errors are sticky");
    buf = xdr_enc_take(&e, &len);
    cr_assert_null(buf);
    cr_assert_eq(len, 0);
    cr_assert(xdr_enc_ok(&e), "take resets the encoder");
    cr_assert_eq(e.max, 12);

    /* Padding counts toward the limit: 5 bytes of data take 8. */
    xdr_enc_init(&e, 11);
    xdr_put_var(&e, "abcde", 5);
    cr_assert_not(xdr_enc_ok(&e));
    xdr_enc_fini(&e);

    xdr_enc_init(&e, 16);
    cr_assert_null(xdr_put_reserve(&e, UINT32_MAX));
    cr_assert_not(xdr_enc_ok(&e));
    xdr_enc_fini(&e);
}

Test(xdr, encoder_grows_and_keeps_its_contents)
{
    struct xdr_enc e;
    struct xdr_dec d;
    uint8_t *buf;
    size_t len;

    xdr_enc_init(&e, 1u << 20);
    for (uint32_t i = 0; i < 50000; i++)
        xdr_put_u32(&e, i * 2654435761u);
    cr_assert(xdr_enc_ok(&e));
    cr_assert_leq(e.cap, e.max);
    buf = xdr_enc_take(&e, &len);
    cr_assert_eq(len, 200000);
    xdr_dec_init(&d, buf, len);
    for (uint32_t i = 0; i < 50000; i++)
        cr_assert_eq(xdr_get_u32(&d), i * 2654435761u);
    cr_assert(xdr_dec_ok(&d));
    free(buf);
}

Test(xdr, patch_overwrites_in_place)
{
    struct xdr_enc e;
    struct bb want = {0};

    xdr_enc_init(&e, 64);
    xdr_put_u32(&e, 0);
    xdr_put_u32(&e, 5);
    xdr_patch_u32(&e, 0, 0xa1b2c3d4u);
    cr_assert(xdr_enc_ok(&e));
    bb_u32(&want, 0xa1b2c3d4u);
    bb_u32(&want, 5);
    expect_bytes(e.buf, e.len, &want);
    xdr_patch_u32(&e, 5, 1); /* would run past the end */
    cr_assert_not(xdr_enc_ok(&e));
    xdr_enc_fini(&e);
}

Test(xdr, take_of_empty_and_fini_twice)
{
    struct xdr_enc e;
    size_t len = 3;

    xdr_enc_init(&e, 64);
    cr_assert_null(xdr_enc_take(&e, &len));
    cr_assert_eq(len, 0);
    xdr_enc_fini(&e);
    xdr_enc_fini(&e);
}

/* ---- RPC calls ---- */

#define PROG_NFS 100003u

struct call_spec {
    uint32_t xid, mtype, rpcvers, prog, vers, proc;
    uint32_t cred_flavor;
    const uint8_t *cred;
    size_t cred_len;
    uint32_t verf_flavor;
    size_t verf_len; /* body of zeros */
    const uint8_t *args;
    size_t args_len;
};

static struct call_spec spec_default(void)
{
    return (struct call_spec){.xid = 0x12345678u,
                              .mtype = 0,
                              .rpcvers = 2,
                              .prog = PROG_NFS,
                              .vers = 3,
                              .proc = 6,
                              .cred_flavor = RPC_AUTH_NONE,
                              .verf_flavor = RPC_AUTH_NONE};
}

/* Writes the call into b; returns the length of the header (where the args start). */
static size_t build_call(struct bb *b, const struct call_spec *s)
{
    static const uint8_t zeros[512];
    size_t hdr;

    b->len = 0;
    bb_u32(b, s->xid);
    bb_u32(b, s->mtype);
    bb_u32(b, s->rpcvers);
    bb_u32(b, s->prog);
    bb_u32(b, s->vers);
    bb_u32(b, s->proc);
    bb_u32(b, s->cred_flavor);
    bb_var(b, s->cred, s->cred_len);
    bb_u32(b, s->verf_flavor);
    bb_var(b, zeros, s->verf_len);
    hdr = b->len;
    bb_bytes(b, s->args, s->args_len);
    return hdr;
}

/* authsys_parms with ngids groups 1000..; extra bytes of trailing junk. */
static void build_sys(struct bb *b, const char *name, size_t name_len, uint32_t ngids, size_t extra)
{
    b->len = 0;
    bb_u32(b, 0x5eed);
    bb_var(b, name, name_len);
    bb_u32(b, 501);
    bb_u32(b, 20);
    bb_u32(b, ngids);
    for (uint32_t i = 0; i < ngids; i++)
        bb_u32(b, 1000 + i);
    for (size_t i = 0; i < extra; i++)
        bb_bytes(b, "\x01", 1);
}

/* Decode from an exact-size heap copy, so ASan catches any read past the record. */
static enum rpc_decode decode(const uint8_t *rec, size_t len, struct rpc_call *c, uint8_t **copy)
{
    *copy = malloc(len ? len : 1);
    cr_assert_not_null(*copy);
    if (len)
        memcpy(*copy, rec, len);
    return rpc_decode_call(*copy, len, c);
}

static enum rpc_decode decode_spec(const struct call_spec *s, struct rpc_call *c)
{
    struct bb msg;
    uint8_t *copy;
    enum rpc_decode r;

    build_call(&msg, s);
    r = decode(msg.b, msg.len, c, &copy);
    free(copy);
    c->args = NULL; /* it pointed into copy */
    return r;
}

Test(rpc, auth_none_call)
{
    const uint8_t args[] = {0, 0, 0, 8, 'f', 'i', 'l', 'e', 'h', 'a', 'n', 'd', 0xab};
    struct call_spec s = spec_default();
    struct rpc_call c;
    struct bb msg;
    uint8_t *copy;
    size_t hdr;

    s.args = args;
    s.args_len = sizeof(args); /* not a multiple of 4: decoding the args is not our business */
    hdr = build_call(&msg, &s);
    cr_assert_eq(decode(msg.b, msg.len, &c, &copy), RPC_DEC_OK);
    cr_assert_eq(c.xid, 0x12345678u);
    cr_assert_eq(c.prog, PROG_NFS);
    cr_assert_eq(c.vers, 3);
    cr_assert_eq(c.proc, 6);
    cr_assert_eq(c.cred.flavor, RPC_AUTH_NONE);
    cr_assert_eq(c.cred.ngids, 0);
    cr_assert_str_empty(c.cred.machine);
    cr_assert_eq(c.args, copy + hdr);
    cr_assert_eq(c.args_len, sizeof(args));
    free(copy);

    s.args_len = 0;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_OK);
    cr_assert_eq(c.args_len, 0);
}

Test(rpc, auth_none_body_is_ignored_up_to_400_bytes)
{
    uint8_t body[401];
    struct call_spec s = spec_default();
    struct rpc_call c;

    memset(body, 0x5a, sizeof(body));
    s.cred = body;
    s.cred_len = 400;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_OK);
    cr_assert_eq(c.cred.flavor, RPC_AUTH_NONE);
    s.cred_len = 3;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_OK);
    s.cred_len = 401;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_BADCRED);
    cr_assert_eq(c.xid, 0x12345678u);
}

Test(rpc, auth_sys_with_16_gids)
{
    struct call_spec s = spec_default();
    struct rpc_call c;
    struct bb cred;

    build_sys(&cred, "client-7", 8, 16, 0);
    s.cred_flavor = RPC_AUTH_SYS;
    s.cred = cred.b;
    s.cred_len = cred.len;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_OK);
    cr_assert_eq(c.cred.flavor, RPC_AUTH_SYS);
    cr_assert_eq(c.cred.stamp, 0x5eed);
    cr_assert_str_eq(c.cred.machine, "client-7");
    cr_assert_eq(c.cred.uid, 501);
    cr_assert_eq(c.cred.gid, 20);
    cr_assert_eq(c.cred.ngids, 16);
    for (uint32_t i = 0; i < 16; i++)
        cr_assert_eq(c.cred.gids[i], 1000 + i);

    build_sys(&cred, "", 0, 0, 0);
    s.cred_len = cred.len;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_OK);
    cr_assert_str_empty(c.cred.machine);
    cr_assert_eq(c.cred.ngids, 0);
}

Test(rpc, auth_sys_with_17_gids_is_badcred)
{
    struct call_spec s = spec_default();
    struct rpc_call c;
    struct bb cred;

    build_sys(&cred, "h", 1, 17, 0);
    s.cred_flavor = RPC_AUTH_SYS;
    s.cred = cred.b;
    s.cred_len = cred.len;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_BADCRED);
    cr_assert_eq(c.xid, 0x12345678u);
    cr_assert_leq(c.cred.ngids, RPC_AUTH_SYS_MAX_GIDS);
}

Test(rpc, auth_sys_machine_name_limit)
{
    char name[RPC_MACHINE_MAX + 1];
    struct call_spec s = spec_default();
    struct rpc_call c;
    struct bb cred;

    memset(name, 'm', sizeof(name));
    s.cred_flavor = RPC_AUTH_SYS;
    s.cred = cred.b;

    build_sys(&cred, name, RPC_MACHINE_MAX, 2, 0);
    s.cred_len = cred.len;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_OK);
    cr_assert_eq(strlen(c.cred.machine), RPC_MACHINE_MAX);

    build_sys(&cred, name, RPC_MACHINE_MAX + 1, 2, 0);
    s.cred_len = cred.len;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_BADCRED);
}

Test(rpc, auth_sys_body_must_be_consumed_exactly)
{
    struct call_spec s = spec_default();
    struct rpc_call c;
    struct bb cred;

    s.cred_flavor = RPC_AUTH_SYS;
    s.cred = cred.b;
    for (size_t extra = 1; extra <= 8; extra++) {
        build_sys(&cred, "host", 4, 3, extra);
        s.cred_len = cred.len;
        cr_assert_eq(decode_spec(&s, &c), RPC_DEC_BADCRED, "%zu trailing bytes", extra);
    }
    /* And short: the gid list announces 3 but the body ends after 2 (or inside the third). */
    build_sys(&cred, "host", 4, 3, 0);
    for (size_t cut = 1; cut <= 4; cut++) {
        s.cred_len = cred.len - cut;
        cr_assert_eq(decode_spec(&s, &c), RPC_DEC_BADCRED, "cut by %zu", cut);
    }
    /* A body of nothing at all. */
    s.cred_len = 0;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_BADCRED);
}

Test(rpc, other_flavors_are_tooweak)
{
    const uint32_t flavors[] = {2 /* AUTH_SHORT */, 3 /* AUTH_DH */, 6 /* RPCSEC_GSS */,
                                390003 /* kerberos pseudo-flavor */, UINT32_MAX};
    const uint8_t body[24] = {1, 2, 3};
    struct call_spec s = spec_default();
    struct rpc_call c;

    s.cred = body;
    s.cred_len = sizeof(body);
    s.verf_flavor = 6; /* a GSS verifier: not looked at once the credential is refused */
    for (size_t i = 0; i < sizeof(flavors) / sizeof(flavors[0]); i++) {
        s.cred_flavor = flavors[i];
        cr_assert_eq(decode_spec(&s, &c), RPC_DEC_TOOWEAK, "flavor %u", flavors[i]);
        cr_assert_eq(c.xid, 0x12345678u);
    }
}

Test(rpc, verifier_must_be_auth_none_of_at_most_400_bytes)
{
    struct call_spec s = spec_default();
    struct rpc_call c;

    s.verf_len = 400;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_OK);
    s.verf_len = 401;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_BADCRED);
    s.verf_len = 0;
    s.verf_flavor = RPC_AUTH_SYS;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_BADCRED);
    cr_assert_eq(c.xid, 0x12345678u);
}

Test(rpc, rpcvers_other_than_2_is_mismatch)
{
    struct call_spec s = spec_default();
    struct rpc_call c;
    struct bb msg;
    uint8_t *copy;

    s.rpcvers = 3;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_MISMATCH);
    cr_assert_eq(c.xid, 0x12345678u);
    s.rpcvers = 1;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_MISMATCH);
    /* Nothing after rpcvers is needed to answer it. */
    s.rpcvers = 3;
    build_call(&msg, &s);
    cr_assert_eq(decode(msg.b, 12, &c, &copy), RPC_DEC_MISMATCH);
    free(copy);
}

Test(rpc, not_a_call_is_dropped)
{
    struct call_spec s = spec_default();
    struct rpc_call c;
    struct bb msg;
    uint8_t *copy;

    s.mtype = 1; /* REPLY */
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_DROP);
    s.mtype = 2;
    cr_assert_eq(decode_spec(&s, &c), RPC_DEC_DROP);
    s.mtype = 0;
    build_call(&msg, &s);
    for (size_t len = 0; len < 8; len++) {
        cr_assert_eq(decode(msg.b, len, &c, &copy), RPC_DEC_DROP);
        free(copy);
    }
    cr_assert_eq(rpc_decode_call(NULL, 0, &c), RPC_DEC_DROP);
}

/* The result expected for the first `len` bytes of a call whose header is `hdr` bytes long
 * (and whose credential starts at 24): see the choices at the top of rpc.c. */
static enum rpc_decode expected_for_prefix(size_t len, size_t hdr)
{
    if (len < 24)
        return RPC_DEC_DROP; /* cut before the credential: no whole header to answer */
    if (len < hdr)
        return RPC_DEC_BADCRED;
    return RPC_DEC_OK;
}

static void check_every_prefix(const struct call_spec *s)
{
    struct bb msg;
    size_t hdr = build_call(&msg, s);

    for (size_t len = 0; len <= msg.len; len++) {
        struct rpc_call c;
        uint8_t *copy;
        enum rpc_decode r = decode(msg.b, len, &c, &copy);

        cr_assert_eq(r, expected_for_prefix(len, hdr), "prefix %zu of %zu (header %zu): %d", len,
                     msg.len, hdr, r);
        if (r != RPC_DEC_DROP)
            cr_assert_eq(c.xid, s->xid);
        if (r == RPC_DEC_OK) {
            cr_assert_eq(c.args, copy + hdr);
            cr_assert_eq(c.args_len, len - hdr);
            cr_assert_eq(c.cred.flavor, s->cred_flavor);
        }
        free(copy);
    }
}

Test(rpc, every_prefix_of_an_auth_sys_call)
{
    const uint8_t args[] = {0, 0, 0, 4, 1, 2, 3, 4, 0, 0, 0, 9};
    struct call_spec s = spec_default();
    struct bb cred;

    build_sys(&cred, "odd-name", 7, 5, 0); /* 7 bytes: the name has padding */
    s.cred_flavor = RPC_AUTH_SYS;
    s.cred = cred.b;
    s.cred_len = cred.len;
    s.verf_len = 8;
    s.args = args;
    s.args_len = sizeof(args);
    check_every_prefix(&s);
}

Test(rpc, every_prefix_of_an_auth_none_call)
{
    const uint8_t args[] = {1, 2, 3, 4, 5, 6};
    const uint8_t body[5] = {9, 9, 9, 9, 9};
    struct call_spec s = spec_default();

    s.cred = body;
    s.cred_len = sizeof(body);
    s.args = args;
    s.args_len = sizeof(args);
    check_every_prefix(&s);
}

/* ---- RPC replies ---- */

static void expect_enc(struct xdr_enc *e, const struct bb *want)
{
    cr_assert(xdr_enc_ok(e));
    expect_bytes(e->buf, e->len, want);
}

Test(rpc, reply_accepted_success)
{
    struct xdr_enc e;
    struct bb want = {0};

    xdr_enc_init(&e, 1024);
    rpc_reply_accepted(&e, 0xcafef00du, RPC_SUCCESS, 7, 8); /* low/high ignored */
    bb_u32(&want, 0xcafef00du);
    bb_u32(&want, 1); /* REPLY */
    bb_u32(&want, 0); /* MSG_ACCEPTED */
    bb_u32(&want, 0); /* verifier AUTH_NONE */
    bb_u32(&want, 0); /* of 0 bytes */
    bb_u32(&want, 0); /* SUCCESS */
    expect_enc(&e, &want);
    xdr_enc_fini(&e);
}

Test(rpc, reply_accepted_prog_mismatch_carries_the_range)
{
    struct xdr_enc e;
    struct bb want = {0};

    xdr_enc_init(&e, 1024);
    rpc_reply_accepted(&e, 1, RPC_PROG_MISMATCH, 3, 4);
    bb_u32(&want, 1);
    bb_u32(&want, 1);
    bb_u32(&want, 0);
    bb_u32(&want, 0);
    bb_u32(&want, 0);
    bb_u32(&want, 2); /* PROG_MISMATCH */
    bb_u32(&want, 3);
    bb_u32(&want, 4);
    expect_enc(&e, &want);

    /* The same encoder again: a reply starts at the beginning. */
    rpc_reply_accepted(&e, 1, RPC_PROC_UNAVAIL, 3, 4);
    want.len = 20;
    bb_u32(&want, 3);
    expect_enc(&e, &want);
    xdr_enc_fini(&e);
}

Test(rpc, reply_auth_error)
{
    struct xdr_enc e;
    struct bb want = {0};

    xdr_enc_init(&e, 1024);
    rpc_reply_auth_error(&e, 0x01020304u, RPC_AUTH_TOOWEAK);
    bb_u32(&want, 0x01020304u);
    bb_u32(&want, 1); /* REPLY */
    bb_u32(&want, 1); /* MSG_DENIED */
    bb_u32(&want, 1); /* AUTH_ERROR */
    bb_u32(&want, 5); /* AUTH_TOOWEAK */
    expect_enc(&e, &want);
    xdr_enc_fini(&e);
}

Test(rpc, reply_rpc_mismatch)
{
    struct xdr_enc e;
    struct bb want = {0};

    xdr_enc_init(&e, 1024);
    rpc_reply_rpc_mismatch(&e, 42);
    bb_u32(&want, 42);
    bb_u32(&want, 1); /* REPLY */
    bb_u32(&want, 1); /* MSG_DENIED */
    bb_u32(&want, 0); /* RPC_MISMATCH */
    bb_u32(&want, 2); /* low */
    bb_u32(&want, 2); /* high */
    expect_enc(&e, &want);
    xdr_enc_fini(&e);
}

Test(rpc, reply_replaces_a_failed_encoding)
{
    struct xdr_enc e;
    struct bb want = {0};

    /* A SUCCESS reply whose results overflowed; the server falls back to SYSTEM_ERR. */
    xdr_enc_init(&e, 32);
    rpc_reply_accepted(&e, 9, RPC_SUCCESS, 0, 0);
    xdr_put_fixed(&e, "0123456789abcdef", 16);
    cr_assert_not(xdr_enc_ok(&e));
    rpc_reply_accepted(&e, 9, RPC_SYSTEM_ERR, 0, 0);
    bb_u32(&want, 9);
    bb_u32(&want, 1);
    bb_u32(&want, 0);
    bb_u32(&want, 0);
    bb_u32(&want, 0);
    bb_u32(&want, 5);
    expect_enc(&e, &want);

    /* A reply is never a call. */
    {
        struct rpc_call c;

        cr_assert_eq(rpc_decode_call(e.buf, e.len, &c), RPC_DEC_DROP);
    }
    xdr_enc_fini(&e);

    xdr_enc_init(&e, 16);
    rpc_reply_rpc_mismatch(&e, 1); /* 24 bytes do not fit */
    cr_assert_not(xdr_enc_ok(&e));
    xdr_enc_fini(&e);
}
