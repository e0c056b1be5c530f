/*
 * cluster.h - one thread's view of the cluster: the D-nodes, their health, and calls to them.
 *
 * A struct cl_cluster holds a transport context (one libfabric endpoint), the D-node list in
 * cluster-map order with each node's placement key, the default erasure-code layout and the
 * codecs built for it.  Everything above it (the stripe client, the metadata records, the
 * C-node heads, cairnctl and the benchmarks) reaches the D-nodes through one of these; a
 * process opens one view per thread that talks to the cluster, since a view is not
 * thread-safe.
 *
 * Health.  A D-node that fails to answer a call (timeout, unreachable) is considered down for
 * CL_DOWN_MS, and every view in the process learns it at once (the heads run one view per
 * worker thread; without sharing, each would pay the transport deadline on its own).  Reads
 * then go to parity at once and writes fail fast instead of each waiting out a deadline.  The
 * first answer from the node clears the mark.
 *
 * The view knows no protocol and no namespace: callers above it decide what a call means.
 */
#ifndef CAIRN_CLIENT_CLUSTER_H
#define CAIRN_CLIENT_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "ec/ec.h"
#include "transport/tp.h"

#define CL_MAX_DNODES 1024u
#define CL_DEFAULT_DEPTH 8u /* stripes in flight per write or read */
#define CL_DOWN_MS 10000u   /* a silent D-node is skipped this long */

struct cl_cluster;

struct cl_cluster_config {
    const char *dnodes;    /* space-separated HOST:PORT list, in cluster-map order */
    const char *provider;  /* NULL: transport default */
    const char *bind_host; /* local address for our endpoint; NULL lets the provider choose */
    uint32_t k, m;         /* default erasure code for writes */
    uint32_t frag_size;    /* bytes per fragment of a full stripe */
    uint32_t timeout_ms;   /* per-request deadline; 0 = transport default */
    uint32_t depth;        /* stripes in flight; 0 = CL_DEFAULT_DEPTH */
};

/* Open a view.  cfg is copied.  Returns 0, CAIRN_EINVAL (bad list or code), CAIRN_EFABRIC,
 * CAIRN_ENOMEM. */
int cl_cluster_open(const struct cl_cluster_config *cfg, struct cl_cluster **out);
void cl_cluster_close(struct cl_cluster *cl); /* accepts NULL */

unsigned cl_cluster_dnodes(const struct cl_cluster *cl);
const char *cl_cluster_dnode_addr(const struct cl_cluster *cl, unsigned i);
/* The layout new data is written with. */
const struct ec_layout *cl_cluster_layout(const struct cl_cluster *cl);
/* Stripes in flight per read or write. */
unsigned cl_cluster_depth(const struct cl_cluster *cl);
struct tp_ctx *cl_cluster_tp(struct cl_cluster *cl);
/* The codec for (k, m), built on first use and owned by the view; NULL if out of memory or
 * too many distinct codes are in use. */
struct ec_codec *cl_cluster_codec(struct cl_cluster *cl, uint32_t k, uint32_t m);

/* Ping D-node i; on success fills the stats the D-node reports (any may be NULL). */
int cl_cluster_ping(struct cl_cluster *cl, unsigned i, uint64_t *dev_size, uint64_t *dev_used,
                    uint64_t *frags);

/* Ping every D-node at once and mark those that do not answer down, so that the next
 * operations skip them instead of each waiting out a deadline.  Returns how many are down. */
unsigned cl_cluster_probe(struct cl_cluster *cl);

/* Whether this view (or another in the process) saw D-node i fail recently. */
bool cl_cluster_node_down(const struct cl_cluster *cl, unsigned i);
/* Report the transport status of a call to D-node i (0 clears a down mark; CAIRN_ETIMEDOUT
 * and CAIRN_EUNREACH set one; other codes are the D-node's answer and say nothing). */
void cl_cluster_note(struct cl_cluster *cl, unsigned i, int transport_status);

/* The n D-nodes placement picks for item, best first (nodes has room for n; n <= dnodes). */
int cl_cluster_place(const struct cl_cluster *cl, uint64_t item, unsigned n, unsigned *nodes);
/* All D-nodes in placement order for item (nodes has room for cl_cluster_dnodes()). */
int cl_cluster_order(const struct cl_cluster *cl, uint64_t item, unsigned *nodes);

/* tp_call() to D-node node (see transport/tp.h for ownership of the buffers and the callback);
 * progress with tp_ctx_wait(cl_cluster_tp(cl), ...).  The callback should hand its transport
 * status to cl_cluster_note(). */
int cl_cluster_call(struct cl_cluster *cl, unsigned node, Cairn__Request *req,
                    const void *payload, uint32_t len, void *resp_buf, uint32_t resp_cap,
                    tp_call_cb cb, void *arg);

#endif
