/*
 * record.c - ONC RPC record marking (RFC 5531 section 11): reassemble records from a TCP byte
 * stream, one fragment mark at a time.
 *
 * The limit is enforced on the marks, not on the bytes: as soon as a mark announces a fragment
 * that would take the record past `max`, the feed fails, before anything is allocated for it.
 * So a client cannot make the server reserve memory it then never sends, beyond what the marks
 * it sent so far announced (and those are bounded by `max` in total).
 *
 * The buffer grows as fragments are announced rather than to `max` up front, because most
 * records (NFS GETATTR, LOOKUP, ...) are a few hundred bytes while the limit is sized for a
 * 1 MiB WRITE.  A record split into many small fragments grows the buffer geometrically (still
 * capped at `max`) so that reassembly stays linear; the last fragment grows it exactly.
 *
 * State: `in_frag` false means the next bytes are a mark (`mark_have` of its 4 bytes read so
 * far); true means `frag_left` bytes of the current fragment are still to come.  A complete
 * record waiting for rpc_rm_take() is `in_frag && last && frag_left == 0`.
 */
#include "cnode/rpc/rpc.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"

#define RM_LAST_FRAG 0x80000000u
#define RM_LEN_MASK 0x7fffffffu

void rpc_rm_init(struct rpc_rm *rm, size_t max_record)
{
    memset(rm, 0, sizeof(*rm));
    rm->max = max_record;
}

void rpc_rm_fini(struct rpc_rm *rm)
{
    if (!rm)
        return;
    free(rm->buf);
    rm->buf = NULL;
    rm->len = rm->cap = 0;
}

static bool rm_complete(const struct rpc_rm *rm)
{
    return rm->in_frag && rm->last && rm->frag_left == 0;
}

/* Make room for a fragment of flen bytes; the caller checked it against max. */
static int rm_reserve(struct rpc_rm *rm, size_t flen, bool last)
{
    size_t need = rm->len + flen, ncap;
    uint8_t *nb;

    if (need <= rm->cap)
        return 0;
    ncap = need;
    if (!last) /* more fragments to come: at least double, but never past max */
        ncap = CAIRN_MAX(need, CAIRN_MIN(rm->cap * 2, rm->max));
    nb = realloc(rm->buf, ncap);
    if (!nb)
        return CAIRN_ENOMEM;
    rm->buf = nb;
    rm->cap = ncap;
    return 0;
}

/* A whole mark was read: check it and set up the fragment. */
static int rm_start_frag(struct rpc_rm *rm)
{
    uint32_t m = (uint32_t)rm->mark[0] << 24 | (uint32_t)rm->mark[1] << 16 |
                 (uint32_t)rm->mark[2] << 8 | rm->mark[3];
    uint32_t flen = m & RM_LEN_MASK;
    bool last = (m & RM_LAST_FRAG) != 0;
    int rc;

    /* rm->len <= rm->max always holds, so this cannot wrap. */
    if (flen > rm->max - rm->len)
        return CAIRN_ETOOBIG;
    rc = rm_reserve(rm, flen, last);
    if (rc)
        return rc;
    rm->mark_have = 0;
    rm->frag_left = flen;
    rm->last = last;
    rm->in_frag = true;
    return 0;
}

ssize_t rpc_rm_feed(struct rpc_rm *rm, const uint8_t *data, size_t len, bool *complete)
{
    size_t used = 0;
    int rc;

    *complete = false;
    while (!rm_complete(rm)) {
        if (!rm->in_frag) {
            if (used == len)
                break;
            rm->mark[rm->mark_have++] = data[used++];
            if (rm->mark_have < sizeof(rm->mark))
                continue;
            rc = rm_start_frag(rm);
            if (rc)
                return rc;
            continue; /* an empty last fragment completes the record without more input */
        }
        if (rm->frag_left) {
            size_t n = CAIRN_MIN((size_t)rm->frag_left, len - used);

            if (!n)
                break;
            memcpy(rm->buf + rm->len, data + used, n);
            rm->len += n;
            rm->frag_left -= (uint32_t)n;
            used += n;
            continue;
        }
        rm->in_frag = false; /* a fragment other than the last one ended: a mark follows */
    }
    *complete = rm_complete(rm);
    return (ssize_t)used;
}

uint8_t *rpc_rm_take(struct rpc_rm *rm, size_t *len)
{
    uint8_t *rec = rm->buf;

    if (!rm_complete(rm)) {
        *len = 0;
        return NULL;
    }
    *len = rm->len;
    if (!rm->len) {
        free(rec); /* NULL already: only announced bytes are reserved */
        rec = NULL;
    }
    rm->buf = NULL;
    rm->len = rm->cap = 0;
    rm->frag_left = 0;
    rm->last = false;
    rm->in_frag = false;
    rm->mark_have = 0;
    return rec;
}
