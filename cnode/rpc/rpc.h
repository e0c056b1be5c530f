/*
 * rpc.h - ONC RPC version 2 (RFC 5531) over TCP: record marking, call headers, reply headers.
 *
 * Record marking: a record is one or more fragments, each behind a 4-byte big-endian mark
 * (high bit = last fragment, low 31 bits = length).  The reassembler enforces a hard record
 * size limit as soon as a mark announces more than it: nothing is allocated for a record that
 * is too big, and the caller closes the connection.
 *
 * Calls: only AUTH_NONE and AUTH_SYS credentials are accepted (AUTH_SYS with at most
 * RPC_AUTH_SYS_MAX_GIDS groups and a machine name of at most 255 bytes; else AUTH_BADCRED).
 * Verifiers must be AUTH_NONE of at most 400 bytes.
 */
#ifndef CAIRN_CN_RPC_H
#define CAIRN_CN_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cnode/rpc/xdr.h"

#define RPC_VERSION 2u
#define RPC_AUTH_NONE 0u
#define RPC_AUTH_SYS 1u
#define RPC_AUTH_SYS_MAX_GIDS 16u
#define RPC_AUTH_MAX_BODY 400u
#define RPC_MACHINE_MAX 255u

/* accept_stat */
enum rpc_accept {
    RPC_SUCCESS = 0,
    RPC_PROG_UNAVAIL = 1,
    RPC_PROG_MISMATCH = 2,
    RPC_PROC_UNAVAIL = 3,
    RPC_GARBAGE_ARGS = 4,
    RPC_SYSTEM_ERR = 5,
};

/* auth_stat */
enum rpc_auth_stat {
    RPC_AUTH_OK = 0,
    RPC_AUTH_BADCRED = 1,
    RPC_AUTH_REJECTEDCRED = 2,
    RPC_AUTH_BADVERF = 3,
    RPC_AUTH_REJECTEDVERF = 4,
    RPC_AUTH_TOOWEAK = 5,
};

/* ---- record marking ---- */

struct rpc_rm {
    size_t max;         /* record size limit */
    uint8_t *buf;       /* owned: the record being assembled */
    size_t len, cap;
    uint32_t frag_left; /* bytes of the current fragment still to come */
    bool last;          /* the current fragment is the record's last */
    uint8_t mark[4];
    unsigned mark_have; /* bytes of the next mark read so far (0..4) */
    bool in_frag;       /* reading fragment bytes (else a mark) */
};

void rpc_rm_init(struct rpc_rm *rm, size_t max_record);
void rpc_rm_fini(struct rpc_rm *rm);
/* Feed stream bytes.  Returns how many were consumed (it stops right after a record is
 * complete: *complete is set and rpc_rm_take() must be called before feeding more), or
 * CAIRN_ETOOBIG (a mark announces a record beyond the limit) / CAIRN_ENOMEM; after an error
 * the stream is unusable.  A zero-length record is complete too (the caller answers it as
 * garbage). */
ssize_t rpc_rm_feed(struct rpc_rm *rm, const uint8_t *data, size_t len, bool *complete);
/* Take the completed record (malloc'd; the caller frees it) and start the next one.  *len
 * gets its length; NULL (and *len 0) for an empty record. */
uint8_t *rpc_rm_take(struct rpc_rm *rm, size_t *len);

/* ---- calls ---- */

struct rpc_cred {
    uint32_t flavor; /* RPC_AUTH_NONE or RPC_AUTH_SYS */
    /* AUTH_SYS */
    uint32_t stamp;
    char machine[RPC_MACHINE_MAX + 1];
    uint32_t uid, gid;
    uint32_t ngids;
    uint32_t gids[RPC_AUTH_SYS_MAX_GIDS];
};

struct rpc_call {
    uint32_t xid;
    uint32_t prog, vers, proc;
    struct rpc_cred cred;
    const uint8_t *args; /* points into the record */
    size_t args_len;
};

enum rpc_decode {
    RPC_DEC_OK = 0,
    RPC_DEC_DROP,     /* not a call or too short for an xid: no reply possible, drop it */
    RPC_DEC_MISMATCH, /* rpcvers != 2: reply rpc_reply_rpc_mismatch() */
    RPC_DEC_BADCRED,  /* malformed credential or verifier: reply AUTH_BADCRED */
    RPC_DEC_TOOWEAK,  /* a flavor we do not take: reply AUTH_TOOWEAK */
};

/* Decode a call message (one whole record).  c->xid is set whenever the result is not
 * RPC_DEC_DROP. */
enum rpc_decode rpc_decode_call(const uint8_t *rec, size_t len, struct rpc_call *c);

/* ---- replies (encoded into e from its start; the caller adds the results after an accepted
 * SUCCESS reply) ---- */

/* MSG_ACCEPTED with an AUTH_NONE verifier and the given accept_stat.  For RPC_PROG_MISMATCH
 * low/high are appended; for other stats they are ignored. */
void rpc_reply_accepted(struct xdr_enc *e, uint32_t xid, enum rpc_accept stat, uint32_t low,
                        uint32_t high);
/* MSG_DENIED / AUTH_ERROR. */
void rpc_reply_auth_error(struct xdr_enc *e, uint32_t xid, enum rpc_auth_stat why);
/* MSG_DENIED / RPC_MISMATCH (2..2). */
void rpc_reply_rpc_mismatch(struct xdr_enc *e, uint32_t xid);

#endif
