/*
 * dcluster.h - a cluster of real D-node processes for unit tests of client/ and meta/.
 *
 * The stripe path and the replicated records are only worth testing against the D-node
 * that production runs (its durability rules, its CRC checks, its conditional KV), so the
 * tests start real `cairn-dnode` processes ($CAIRN_BUILD/dnode/cairn-dnode) on loopback,
 * each with a small file-backed device and an LMDB directory in one temporary directory
 * under /var/tmp (O_DIRECT needs a disk file system; /tmp may be tmpfs).
 *
 * Lifetime.  Criterion runs each test in its own process: start the cluster in the test's
 * .init fixture and stop it in .fini, which runs after a failed assertion too.  Every D-node
 * is a child of the test process with PR_SET_PDEATHSIG(SIGKILL), so a test that crashes or
 * is killed by its timeout takes its D-nodes with it; the directory such a test leaves is
 * removed by the next dcluster_start() (each directory names its owner's pid).
 *
 * A node keeps its port, device and metadata across dcluster_kill()/dcluster_restart(), as a
 * D-node that crashed and came back does; its address is its identity for placement.
 */
#ifndef CAIRN_TESTS_DCLUSTER_H
#define CAIRN_TESTS_DCLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/cluster.h"

#define DCLUSTER_MAX_NODES 16u
#define DCLUSTER_SHARDS 16u /* metadata shards of a test cluster (few: they start faster) */

struct dcluster;

struct dcluster_opts {
    unsigned nodes;      /* D-nodes to start (<= DCLUSTER_MAX_NODES) */
    uint32_t k, m;       /* erasure code of the views (2m + 1 metadata replicas) */
    uint32_t frag_size;  /* 0: 64 KiB */
    uint32_t timeout_ms; /* per-call deadline of the views; 0: 2000 (first contact can take 1 s) */
    uint64_t dev_size;   /* bytes per device; 0: 64 MiB */
    uint32_t shards;     /* metadata shards; 0: DCLUSTER_SHARDS */
};

/* Start o->nodes D-nodes, wait until every one has written its ready file, and create the
 * cluster (cl_cluster_map_init).  Returns 0 and
 * *out, or a CAIRN_E* code with the reason (and the failing node's log) on stderr; nothing is
 * left running or on disk on failure. */
int dcluster_start(const struct dcluster_opts *o, struct dcluster **out);
/* Kill every D-node (SIGKILL), reap it and remove the directory.  Accepts NULL. */
void dcluster_stop(struct dcluster *dc);

/* kill -9 D-node i and reap it (no-op if it is not running).  Returns 0 or CAIRN_EINVAL. */
int dcluster_kill(struct dcluster *dc, unsigned i);
/* Start D-node i again on its port, device and metadata, and wait until it is ready (a
 * running node is killed first).  On failure the node is left stopped. */
int dcluster_restart(struct dcluster *dc, unsigned i);
/* The same for n nodes at once (they start in parallel). */
int dcluster_restart_set(struct dcluster *dc, const unsigned *nodes, unsigned n);
bool dcluster_running(const struct dcluster *dc, unsigned i);

unsigned dcluster_nodes(const struct dcluster *dc);
/* The view configuration for this cluster (owned by dc; D-node i of a view is node i here). */
const struct cl_cluster_config *dcluster_config(const struct dcluster *dc);
/* Open a cluster view on it and ping every D-node, so that connections are set up before
 * the test's first call (close with cl_cluster_close).  CAIRN_EUNREACH if one is silent. */
int dcluster_open(const struct dcluster *dc, struct cl_cluster **out);
/* Ping every D-node from view cl until each running one answers (a few rounds: the first
 * call to a restarted D-node can fail on the connection to its previous life, and a failure
 * marks it down).  Returns 0, or CAIRN_EUNREACH if a running node stays silent. */
int dcluster_probe(const struct dcluster *dc, struct cl_cluster *cl);
/* Path of D-node i's device file (owned by dc). */
const char *dcluster_dev_path(const struct dcluster *dc, unsigned i);

#endif
