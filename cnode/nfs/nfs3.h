/*
 * nfs3.h - the NFSv3 head (RFC 1813) and its MOUNT v3 program, on the one namespace
 * (cnode/fs/fs.h) that S3 serves too.
 *
 * Served by the ONC RPC server (cnode/rpc/server.h): listener 0 is the NFS port (program
 * 100003 version 3), listener 1 the MOUNT port (program 100005 version 3).  Every call is
 * answered from the metadata and data on the D-nodes; the only C-node state is safe to lose:
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

#include "cnode/head.h"

#define NFS_PROGRAM 100003u
#define NFS_V3 3u
#define MOUNT_PROGRAM 100005u
#define MOUNT_V3 3u
#define NFS_LISTENER 0u
#define MOUNT_LISTENER 1u
#define NFS_MAX_IO (1u << 20)             /* rtmax / wtmax */
#define NFS_WBUF_FILE_MAX (64u << 20)     /* buffered UNSTABLE bytes per file before a flush */
#define NFS_WBUF_TOTAL_MAX (512ull << 20) /* per C-node: beyond it writes are made stable */

/* The head: two ports (NFS, MOUNT).  Reads NFS_EXPORTS (exports.h syntax; unset: the default)
 * and NFS_PORTMAP (set: register both programs with the local portmapper while serving). */
extern const struct cn_head_ops nfs_head_ops;

/* Register (set) NFS v3 and MOUNT v3 over TCP with the local portmapper, or withdraw them
 * (portmap.c: it includes libtirpc, whose names clash with cnode/rpc/'s, so it stands apart
 * from the rest of the head). */
void nfs_portmap(bool set, unsigned nfs_port, unsigned mount_port);

#endif
