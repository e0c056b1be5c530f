/*
 * rpc.c - ONC RPC version 2 (RFC 5531) call headers and reply headers (see rpc.h).  Record
 * marking lives in record.c.
 *
 * A call is decoded in one pass over the record with the XDR decoder; nothing is allocated and
 * the arguments are left in place (c->args points into the record).  The outcome tells the
 * server which reply, if any, it owes; the choices where RFC 5531 leaves room:
 *  - Fewer than 8 bytes, or a msg_type other than CALL: there is no call to answer (a reply
 *    needs the xid and the knowledge that the peer expects one), so the record is dropped.
 *  - A record cut inside rpcvers, prog, vers or proc is dropped too.  RFC 5531 would call it
 *    GARBAGE_ARGS at best, but the header is not even whole, and a peer that sends such a
 *    thing is broken, not waiting for an answer.
 *  - rpcvers is checked as soon as it is read: a different version may lay out the rest of
 *    the header differently, so nothing after it is looked at (RPC_MISMATCH).
 *  - From the credential on, the header is known to be a v2 call with an xid, so every defect
 *    is answered: a credential or verifier that is cut short, longer than 400 bytes, or (for
 *    AUTH_SYS) not exactly one well-formed authsys_parms is AUTH_BADCRED.  The AUTH_NONE body
 *    is ignored whatever its length (<= 400).
 *  - A credential flavor other than AUTH_NONE and AUTH_SYS is AUTH_TOOWEAK, decided before the
 *    verifier is looked at (an RPCSEC_GSS verifier is not AUTH_NONE and is not our business).
 *  - The verifier must be AUTH_NONE; any other flavor is answered AUTH_BADCRED, as there is no
 *    decode result for AUTH_BADVERF and with these credentials a verifier carries nothing.
 *  - The machine name is copied as it came (it is for logs only); stamp is not checked.
 *
 * Replies are written into the caller's encoder from its start, so a server whose SUCCESS
 * reply failed (too big, no memory) can write an error reply into the same encoder.
 */
#include "cnode/rpc/rpc.h"

#include <string.h>

#define MSG_CALL 0u
#define MSG_REPLY 1u
#define REPLY_ACCEPTED 0u
#define REPLY_DENIED 1u
#define REJECT_RPC_MISMATCH 0u
#define REJECT_AUTH_ERROR 1u

/* authsys_parms (RFC 5531 appendix A), from a credential body that must hold exactly one. */
static bool decode_auth_sys(const uint8_t *body, uint32_t len, struct rpc_cred *cr)
{
    struct xdr_dec d;
    const uint8_t *name;
    uint32_t name_len, ngids;

    xdr_dec_init(&d, body, len);
    cr->stamp = xdr_get_u32(&d);
    name = xdr_get_var(&d, RPC_MACHINE_MAX, &name_len);
    cr->uid = xdr_get_u32(&d);
    cr->gid = xdr_get_u32(&d);
    ngids = xdr_get_u32(&d);
    /* cr->ngids is set only once it is known to fit gids[]. */
    if (!xdr_dec_ok(&d) || ngids > RPC_AUTH_SYS_MAX_GIDS)
        return false;
    for (uint32_t i = 0; i < ngids; i++)
        cr->gids[i] = xdr_get_u32(&d);
    if (!xdr_dec_ok(&d) || xdr_dec_left(&d) != 0)
        return false;
    cr->ngids = ngids;
    memcpy(cr->machine, name, name_len);
    cr->machine[name_len] = '\0';
    return true;
}

enum rpc_decode rpc_decode_call(const uint8_t *rec, size_t len, struct rpc_call *c)
{
    struct xdr_dec d;
    const uint8_t *body;
    uint32_t body_len, verf_flavor;

    memset(c, 0, sizeof(*c));
    if (len < 8)
        return RPC_DEC_DROP;
    xdr_dec_init(&d, rec, len);
    c->xid = xdr_get_u32(&d);
    if (xdr_get_u32(&d) != MSG_CALL)
        return RPC_DEC_DROP;
    if (xdr_get_u32(&d) != RPC_VERSION)
        return xdr_dec_ok(&d) ? RPC_DEC_MISMATCH : RPC_DEC_DROP;
    c->prog = xdr_get_u32(&d);
    c->vers = xdr_get_u32(&d);
    c->proc = xdr_get_u32(&d);
    if (!xdr_dec_ok(&d))
        return RPC_DEC_DROP;

    c->cred.flavor = xdr_get_u32(&d);
    body = xdr_get_var(&d, RPC_AUTH_MAX_BODY, &body_len);
    if (!xdr_dec_ok(&d))
        return RPC_DEC_BADCRED;
    switch (c->cred.flavor) {
    case RPC_AUTH_NONE:
        break;
    case RPC_AUTH_SYS:
        if (!decode_auth_sys(body, body_len, &c->cred))
            return RPC_DEC_BADCRED;
        break;
    default:
        return RPC_DEC_TOOWEAK;
    }

    verf_flavor = xdr_get_u32(&d);
    (void)xdr_get_var(&d, RPC_AUTH_MAX_BODY, &body_len);
    if (!xdr_dec_ok(&d) || verf_flavor != RPC_AUTH_NONE)
        return RPC_DEC_BADCRED;

    c->args = d.p;
    c->args_len = xdr_dec_left(&d);
    return RPC_DEC_OK;
}

/* Rewind e and write the reply_header common to every reply up to reply_stat. */
static void reply_start(struct xdr_enc *e, uint32_t xid, uint32_t stat)
{
    e->len = 0;
    e->err = false;
    xdr_put_u32(e, xid);
    xdr_put_u32(e, MSG_REPLY);
    xdr_put_u32(e, stat);
}

void rpc_reply_accepted(struct xdr_enc *e, uint32_t xid, enum rpc_accept stat, uint32_t low,
                        uint32_t high)
{
    reply_start(e, xid, REPLY_ACCEPTED);
    xdr_put_u32(e, RPC_AUTH_NONE); /* verifier: AUTH_NONE, empty body */
    xdr_put_u32(e, 0);
    xdr_put_u32(e, (uint32_t)stat);
    if (stat == RPC_PROG_MISMATCH) {
        xdr_put_u32(e, low);
        xdr_put_u32(e, high);
    }
}

void rpc_reply_auth_error(struct xdr_enc *e, uint32_t xid, enum rpc_auth_stat why)
{
    reply_start(e, xid, REPLY_DENIED);
    xdr_put_u32(e, REJECT_AUTH_ERROR);
    xdr_put_u32(e, (uint32_t)why);
}

void rpc_reply_rpc_mismatch(struct xdr_enc *e, uint32_t xid)
{
    reply_start(e, xid, REPLY_DENIED);
    xdr_put_u32(e, REJECT_RPC_MISMATCH);
    xdr_put_u32(e, RPC_VERSION); /* low */
    xdr_put_u32(e, RPC_VERSION); /* high */
}
