/*
 * nfs3.h - the NFSv3 head (RFC 1813) and its MOUNT v3 program, on the same namespace as S3.
 *
 * Served by the ONC RPC server (rpcsrv.h): listener 0 is the NFS port (program 100003
 * version 3), listener 1 the MOUNT port (program 100005 version 3).  Every call is answered
 * from the metadata and data on the D-nodes; the only C-node state is safe to lose:
 *
 *  - UNSTABLE writes wait in memory until COMMIT (or until a file or the C-node holds too
 *    much), under a write verifier drawn at random when the C-node starts, so a client whose
 *    C-node died sees a new verifier and sends its uncommitted writes again;
 *  - a cache of READDIR cookies (a cookie is a hash of the entry name; the cache maps it back
 *    to the name, and a miss, e.g. on another C-node, finds it by scanning the directory).
 *
 * File handles name (export id, inode number) and carry an HMAC-SHA256 tag keyed by a
 * cluster secret kept in the metadata, so any C-node checks any handle, and a guessed or
 * edited handle is NFS3ERR_BADHANDLE; a handle whose inode is gone is NFS3ERR_STALE.
 */
#ifndef CAIRN_CN_NFS3_H
#define CAIRN_CN_NFS3_H

#include <stddef.h>

#include "cnode/rpc/server.h"
#include "client/stripe.h"

#define NFS_LISTENER 0u
#define MOUNT_LISTENER 1u
#define NFS_MAX_IO (1u << 20)              /* rtmax / wtmax */
#define NFS_WBUF_FILE_MAX (64u << 20)      /* buffered UNSTABLE bytes per file before a flush */
#define NFS_WBUF_TOTAL_MAX (512ull << 20)  /* per C-node: beyond it writes are made stable */

struct nfs_config {
    struct cl_cluster_config cluster;
    const char *exports; /* NFS_EXPORTS syntax (exports.h); NULL = default */
};

/* Parse the exports, fetch (or create) the handle key, make sure the root inode exists.
 * Returns 0 or an error (logged). */
int nfs_app_init(const struct nfs_config *cfg, struct rpcsrv_app *out);
/* After rpcsrv_stop(). */
void nfs_app_fini(struct rpcsrv_app *app);

#endif
