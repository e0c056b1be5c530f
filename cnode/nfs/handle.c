/*
 * handle.c - file handles and who is calling (see call.h).
 *
 * A handle is 32 bytes: version, export id, inode number, and the first 16 bytes of an
 * HMAC-SHA256 of those under a cluster secret kept in the metadata, so any C-node checks any
 * handle with no configuration and nothing about a handle lives in a C-node.  A handle that
 * fails the tag, has the wrong length or version is NFS3ERR_BADHANDLE.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cnode/nfs/call.h"
#include "common/cairn.h"

#define FH_VERSION 1u
#define FH_MAC_LEN 16u

static void fh_mac(const struct nfs_app *app, const uint8_t *body, uint8_t *mac)
{
    uint8_t full[EVP_MAX_MD_SIZE];
    unsigned n = 0;

    HMAC(EVP_sha256(), app->fh_key, sizeof(app->fh_key), body, NFS_FH_LEN - FH_MAC_LEN, full,
         &n);
    memcpy(mac, full, FH_MAC_LEN);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Layout: version, 3 zero bytes, export id, inode number (big-endian), 16-byte tag. */
static void fh_make(const struct nfs_app *app, uint32_t export_id, uint64_t ino,
                    uint8_t out[NFS_FH_LEN])
{
    memset(out, 0, NFS_FH_LEN);
    out[0] = FH_VERSION;
    put_be32(out + 4, export_id);
    put_be32(out + 8, (uint32_t)(ino >> 32));
    put_be32(out + 12, (uint32_t)ino);
    fh_mac(app, out, out + NFS_FH_LEN - FH_MAC_LEN);
}

void nfs_put_fh(struct nq *q, uint64_t ino)
{
    uint8_t fh[NFS_FH_LEN];

    fh_make(q->app, q->x->id, ino, fh);
    xdr_put_var(&q->e, fh, NFS_FH_LEN);
}

/* Check a handle's form and tag (BADHANDLE) and its export (STALE if no longer exported). */
static enum nfsstat3 fh_check(struct nq *q, const uint8_t *b, uint32_t len, struct nfs_fh *out)
{
    uint8_t mac[FH_MAC_LEN];
    const struct nfs_export *x;

    if (len != NFS_FH_LEN || b[0] != FH_VERSION || b[1] || b[2] || b[3])
        return NFS3ERR_BADHANDLE;
    fh_mac(q->app, b, mac);
    if (CRYPTO_memcmp(mac, b + NFS_FH_LEN - FH_MAC_LEN, FH_MAC_LEN))
        return NFS3ERR_BADHANDLE;
    out->export_id = get_be32(b + 4);
    out->ino = (uint64_t)get_be32(b + 8) << 32 | get_be32(b + 12);
    x = nfs_export_by_id(&q->app->exports, out->export_id);
    if (!x)
        return NFS3ERR_STALE;
    if (q->x && q->x != x)
        return NFS3ERR_XDEV;
    return NFS3_OK;
}

/* Map the caller's credentials through the export rule. */
static void squash(struct nq *q)
{
    const struct rpc_cred *cr = &q->c.cred;
    const struct nfs_rule *r = q->rule;
    struct fs_cred *c = &q->cred;

    if (cr->flavor != RPC_AUTH_SYS || r->squash == NFS_SQUASH_ALL) {
        c->uid = r->anonuid;
        c->gid = r->anongid;
        c->ngids = 0;
        return;
    }
    c->uid = cr->uid;
    c->gid = cr->gid;
    c->ngids = CAIRN_MIN(cr->ngids, FS_MAX_GIDS);
    memcpy(c->gids, cr->gids, c->ngids * sizeof(cr->gids[0]));
    if (r->squash == NFS_SQUASH_ROOT) {
        if (c->uid == 0)
            c->uid = r->anonuid;
        if (c->gid == 0)
            c->gid = r->anongid;
        for (uint32_t i = 0; i < c->ngids; i++)
            if (c->gids[i] == 0)
                c->gids[i] = r->anongid;
    }
}

enum nfsstat3 nfs_get_fh(struct nq *q, struct nfs_fh *out)
{
    uint32_t len;
    const uint8_t *b = xdr_get_var(&q->d, 64, &len);
    enum nfsstat3 st;

    if (!b)
        return NFS3ERR_BADHANDLE;
    st = fh_check(q, b, len, out);
    if (st)
        return st;
    if (!q->x) {
        q->x = nfs_export_by_id(&q->app->exports, out->export_id);
        q->rule = nfs_export_match(q->x, rpcsrv_peer(q->call));
        if (!q->rule)
            return NFS3ERR_ACCES;
        squash(q);
    }
    return NFS3_OK;
}

bool nfs_read_only(const struct nq *q)
{
    return q->rule && q->rule->ro;
}
