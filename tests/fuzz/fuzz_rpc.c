/*
 * fuzz_rpc.c - libFuzzer harness for ONC RPC record marking (cnode/rpc/record.c), call decoding
 * (cnode/rpc.c) and XDR (cnode/xdr.c).
 *
 * An input whose first byte has its high bit set (as a last-fragment record mark does) is a
 * TCP byte stream: it is fed through the reassembler (record limit 64 KiB) in pieces of
 * PRNG-chosen sizes, which must consume bytes in order, never hand out a record over the
 * limit, and stop for good after an error; every record it completes is then decoded as
 * below.  Any other input is one whole record, as the record-marking layer would hand it
 * over; it is decoded
 * from an exact-size heap copy so ASan sees any read past it.  Checked on every call: the
 * result is one of the documented ones, the xid is the record's first word whenever the
 * result is not DROP, an accepted call has a credential we take, at most 16 gids and a
 * NUL-terminated machine name, and its args are exactly the tail of the record.  Then:
 *  - the accepted header is encoded again (AUTH_NONE verifier) and must decode to the same
 *    call with the same args;
 *  - the args are walked with a sequence of XDR decoders picked by a small PRNG seeded from
 *    the record, checking that every returned pointer lies in the args, that what is left only
 *    shrinks, and that after an error everything is zero; each item decoded is re-encoded
 *    (variable items through put_reserve + reserve_trim), and decoding that encoding with the
 *    same picks must give the same values;
 *  - each reply encoder writes the size it should.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/rpc/rpc.h"
#include "cnode/rpc/xdr.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define MAX_STEPS 256
#define ENC_MAX (1u << 20)

struct prng {
    uint64_t s;
};

static uint32_t next(struct prng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)(r->s >> 32);
}

/* One decoded item, for comparing the walk of the args with the walk of their re-encoding. */
struct item {
    uint64_t v;
    uint32_t len;
    uint64_t hash; /* of the bytes of an opaque */
};

static uint64_t hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Walk [p, p+n) with decoders picked from seed; items go to out (and to e if not NULL).  Stops
 * after `limit` items, at an error, or (if until_empty) when nothing is left.  Returns the
 * number of items decoded. */
static size_t walk(const uint8_t *p, size_t n, uint64_t seed, struct item *out, struct xdr_enc *e,
                   size_t limit, bool until_empty)
{
    struct prng r = {seed | 1};
    struct xdr_dec d;
    size_t steps = 0, left;

    xdr_dec_init(&d, p, n);
    left = xdr_dec_left(&d);
    CHECK(left == n);
    while (steps < limit && (left > 0 || !until_empty)) {
        uint32_t pick = next(&r), op = pick % 5, len = 0, arg = (pick >> 8) % 64;
        struct item it = {0};
        const uint8_t *b = NULL;

        switch (op) {
        case 0:
            it.v = xdr_get_u32(&d);
            break;
        case 1:
            it.v = xdr_get_u64(&d);
            break;
        case 2:
            it.v = xdr_get_bool(&d);
            break;
        case 3:
            b = xdr_get_fixed(&d, arg);
            len = arg;
            break;
        default:
            b = xdr_get_var(&d, arg * 8, &len);
            break;
        }
        if (!xdr_dec_ok(&d)) {
            /* Failed items give zero values and nothing is left. */
            CHECK(it.v == 0 && b == NULL && xdr_dec_left(&d) == 0);
            if (op == 4)
                CHECK(len == 0);
            CHECK(xdr_get_u32(&d) == 0 && xdr_get_fixed(&d, 0) == NULL);
            break;
        }
        CHECK(xdr_dec_left(&d) < left || (op == 3 && arg == 0));
        CHECK(xdr_dec_left(&d) % 4 == n % 4);
        left = xdr_dec_left(&d);
        if (op >= 3) {
            CHECK(b != NULL && b >= p && b + len <= p + n - left);
            it.len = len;
            it.hash = hash(b, len);
        }
        CHECK(op != 2 || it.v <= 1);
        out[steps++] = it;

        if (!e)
            continue;
        switch (op) {
        case 0:
            xdr_put_u32(e, (uint32_t)it.v);
            break;
        case 1:
            xdr_put_u64(e, it.v);
            break;
        case 2:
            xdr_put_bool(e, it.v != 0);
            break;
        case 3:
            xdr_put_fixed(e, b, len);
            break;
        default: {
            /* Reserve more than needed, fill part, give the rest back. */
            size_t pos;
            uint8_t *w;

            xdr_put_u32(e, len);
            pos = e->len;
            w = xdr_put_reserve(e, len + arg);
            CHECK(w != NULL);
            if (len)
                memcpy(w, b, len);
            memset(w + len, 0xa5, arg);
            xdr_reserve_trim(e, pos, len);
            CHECK(e->len == pos + ((len + 3u) & ~3u));
            break;
        }
        }
        CHECK(xdr_enc_ok(e));
    }
    return steps;
}

static void check_args(const struct rpc_call *c, uint64_t seed)
{
    static struct item first[MAX_STEPS], again[MAX_STEPS];
    struct xdr_enc e;
    size_t n1, n2;

    xdr_enc_init(&e, ENC_MAX);
    n1 = walk(c->args, c->args_len, seed, first, &e, MAX_STEPS, true);
    CHECK(xdr_enc_ok(&e));
    /* The re-encoding holds exactly the items decoded, so the same picks decode all of them. */
    n2 = walk(e.buf, e.len, seed, again, NULL, n1, false);
    CHECK(n2 == n1);
    for (size_t i = 0; i < n1; i++)
        CHECK(first[i].v == again[i].v && first[i].len == again[i].len &&
              first[i].hash == again[i].hash);
    xdr_enc_fini(&e);
}

/* Encode c's header again and check it decodes to the same call. */
static void check_reencode(const struct rpc_call *c)
{
    struct xdr_enc e, cred;
    struct rpc_call c2;
    uint8_t *rec;
    size_t len;

    xdr_enc_init(&cred, RPC_AUTH_MAX_BODY);
    if (c->cred.flavor == RPC_AUTH_SYS) {
        xdr_put_u32(&cred, c->cred.stamp);
        xdr_put_var(&cred, c->cred.machine, (uint32_t)strlen(c->cred.machine));
        xdr_put_u32(&cred, c->cred.uid);
        xdr_put_u32(&cred, c->cred.gid);
        xdr_put_u32(&cred, c->cred.ngids);
        for (uint32_t i = 0; i < c->cred.ngids; i++)
            xdr_put_u32(&cred, c->cred.gids[i]);
    }
    xdr_enc_init(&e, ENC_MAX);
    xdr_put_u32(&e, c->xid);
    xdr_put_u32(&e, 0);
    xdr_put_u32(&e, RPC_VERSION);
    xdr_put_u32(&e, c->prog);
    xdr_put_u32(&e, c->vers);
    xdr_put_u32(&e, c->proc);
    xdr_put_u32(&e, c->cred.flavor);
    xdr_put_var(&e, cred.buf, (uint32_t)cred.len);
    xdr_put_u32(&e, RPC_AUTH_NONE);
    xdr_put_u32(&e, 0);
    xdr_put_fixed(&e, c->args, (uint32_t)c->args_len);
    /* A machine name with a NUL inside re-encodes shorter, which still fits. */
    CHECK(xdr_enc_ok(&cred) && xdr_enc_ok(&e));
    rec = xdr_enc_take(&e, &len);
    CHECK(rec);
    CHECK(rpc_decode_call(rec, len, &c2) == RPC_DEC_OK);
    CHECK(c2.xid == c->xid && c2.prog == c->prog && c2.vers == c->vers && c2.proc == c->proc);
    CHECK(c2.cred.flavor == c->cred.flavor && c2.cred.stamp == c->cred.stamp);
    CHECK(c2.cred.uid == c->cred.uid && c2.cred.gid == c->cred.gid);
    CHECK(c2.cred.ngids == c->cred.ngids);
    CHECK(!memcmp(c2.cred.gids, c->cred.gids, sizeof(c->cred.gids)));
    CHECK(!strcmp(c2.cred.machine, c->cred.machine));
    /* The args were padded to 4 by put_fixed: the padding shows up as args. */
    CHECK(c2.args_len == ((c->args_len + 3) & ~(size_t)3));
    CHECK(c->args_len == 0 || !memcmp(c2.args, c->args, c->args_len));
    free(rec);
    xdr_enc_fini(&cred);
}

static void check_replies(uint32_t xid)
{
    struct xdr_enc e;

    xdr_enc_init(&e, 64);
    rpc_reply_accepted(&e, xid, RPC_PROG_MISMATCH, 2, 3);
    CHECK(xdr_enc_ok(&e) && e.len == 32);
    rpc_reply_accepted(&e, xid, (enum rpc_accept)(xid % 6), 2, 3);
    CHECK(xdr_enc_ok(&e) && e.len == (xid % 6 == RPC_PROG_MISMATCH ? 32u : 24u));
    rpc_reply_auth_error(&e, xid, RPC_AUTH_BADCRED);
    CHECK(xdr_enc_ok(&e) && e.len == 20);
    rpc_reply_rpc_mismatch(&e, xid);
    CHECK(xdr_enc_ok(&e) && e.len == 24);
    CHECK(rpc_decode_call(e.buf, e.len, &(struct rpc_call){0}) == RPC_DEC_DROP);
    xdr_enc_fini(&e);
}

static void one_record(const uint8_t *data, size_t size);

#define STREAM_MAX_RECORD (64u << 10)

static void stream(const uint8_t *data, size_t size)
{
    struct rpc_rm rm;
    struct prng r = {.s = size * 0x9E3779B97F4A7C15ull + 1};
    size_t pos = 0;

    rpc_rm_init(&rm, STREAM_MAX_RECORD);
    while (pos < size) {
        size_t want = 1 + next(&r) % 64, n = want < size - pos ? want : size - pos;
        bool complete = false;
        ssize_t used = rpc_rm_feed(&rm, data + pos, n, &complete);

        if (used < 0)
            break; /* the server closes the connection: nothing more is read */
        CHECK((size_t)used <= n);
        pos += (size_t)used;
        if (complete) {
            size_t len = 0;
            uint8_t *rec = rpc_rm_take(&rm, &len);

            CHECK(len <= STREAM_MAX_RECORD);
            CHECK(rec || len == 0);
            one_record(rec ? rec : (const uint8_t *)"", len);
            free(rec);
        } else {
            CHECK((size_t)used == n); /* a piece is consumed whole unless a record ended */
        }
    }
    rpc_rm_fini(&rm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && (data[0] & 0x80))
        stream(data, size);
    else
        one_record(data, size);
    return 0;
}

static void one_record(const uint8_t *data, size_t size)
{
    uint8_t *rec = malloc(size ? size : 1);
    struct rpc_call c;
    enum rpc_decode r;
    uint32_t xid = 0;

    CHECK(rec);
    if (size)
        memcpy(rec, data, size);
    r = rpc_decode_call(rec, size, &c);
    CHECK(r == RPC_DEC_OK || r == RPC_DEC_DROP || r == RPC_DEC_MISMATCH || r == RPC_DEC_BADCRED ||
          r == RPC_DEC_TOOWEAK);
    if (size >= 4)
        xid = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
    if (r != RPC_DEC_DROP) {
        CHECK(size >= 12);
        CHECK(c.xid == xid);
    }
    if (r == RPC_DEC_OK) {
        CHECK(size >= 40); /* 6 words, two empty opaque_auths */
        CHECK(c.cred.flavor == RPC_AUTH_NONE || c.cred.flavor == RPC_AUTH_SYS);
        CHECK(c.cred.ngids <= RPC_AUTH_SYS_MAX_GIDS);
        CHECK(c.cred.flavor == RPC_AUTH_SYS || (c.cred.ngids == 0 && !c.cred.machine[0]));
        CHECK(memchr(c.cred.machine, '\0', sizeof(c.cred.machine)) != NULL);
        CHECK(c.args >= rec && c.args + c.args_len == rec + size);
        check_reencode(&c);
        check_args(&c, size >= 8 ? hash(data, 8) : 1);
    }
    check_replies(xid);
    free(rec);
}
