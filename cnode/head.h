/*
 * head.h - the one interface every protocol head implements (S3, NFSv3; an NFSv4.1 or SMB head
 * would be a third).  cnode/main.c opens the file system, then starts and stops the heads
 * through this table and knows nothing else of them: a head is a set of listening ports, a
 * server of its own (HTTP, ONC RPC) and the file system it serves.
 */
#ifndef CAIRN_CN_HEAD_H
#define CAIRN_CN_HEAD_H

#include <stdbool.h>

#include "cnode/fs/fs.h"
#include "common/metrics.h"

#define CN_HEAD_MAX_PORTS 4u

struct cn_head_args {
    struct fs *fs;    /* the file system to serve (borrowed until stop) */
    const char *host; /* address to listen on */
    unsigned ports[CN_HEAD_MAX_PORTS]; /* the head's ports, 0: any free one */
    unsigned loops;   /* event-loop threads; 0: one per core */
    unsigned workers; /* handler threads; 0: the head's default */
    /* The cluster's settings by name (S3_REGION, NFS_EXPORTS, ...): NULL if unset.  Borrowed
     * for the call. */
    const char *(*conf)(void *arg, const char *name);
    void *conf_arg;
    /* Where the head registers what it counts (requests, errors, bytes and latency per
     * operation: common/metrics.h), borrowed until stop; NULL: it counts nothing. */
    struct metrics *metrics;
};

struct cn_head_ops {
    const char *name;   /* "s3", "nfs": for logs */
    unsigned nports;    /* ports it listens on (args->ports[0 .. nports)) */
    /* Set up and start serving; *out is the running head.  Errors are logged. */
    int (*start)(const struct cn_head_args *args, void **out);
    /* The port listener i is bound to. */
    unsigned (*port)(void *head, unsigned i);
    /* Stop serving (connections closed, calls finished), then free.  Accepts NULL. */
    void (*stop)(void *head);
};

#endif
