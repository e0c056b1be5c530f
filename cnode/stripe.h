/*
 * stripe.h - the C-node data path: objects as erasure-coded stripes on D-nodes.
 *
 * A struct cn_cluster is one thread's view of the cluster: its transport context, the
 * D-node list (the cluster map), their placement keys and the erasure codec.  Writes
 * split an object into stripes of k * frag_size bytes, compute m parity fragments with
 * ISA-L and a CRC32C per fragment, and send the k + m fragments to the k + m D-nodes that
 * rendezvous hashing picks for the stripe; several stripes are in flight at once.  A write
 * returns success only when every fragment of every stripe was acknowledged, and D-nodes
 * acknowledge only durable fragments.
 *
 * Reads fetch the k data fragments straight into the caller's buffer; a fragment that is
 * missing, unreachable, late or fails its CRC is rebuilt from parity, so callers see
 * correct bytes or an error, never wrong bytes.
 *
 * Copies of each payload byte (docs/architecture.md keeps the count): full stripes are
 * encoded and sent from the caller's buffer; only the last, partial stripe is copied into
 * a zero-padded buffer.
 */
#ifndef CAIRN_CN_STRIPE_H
#define CAIRN_CN_STRIPE_H

#include <stdbool.h>
#include <stdint.h>

#include "ec/ec.h"
#include "transport/tp.h"

#define CN_MAX_DNODES 1024u
#define CN_DEFAULT_DEPTH 8u /* stripes in flight per write or read */

struct cn_cluster;

struct cn_cluster_config {
    const char *dnodes;    /* space-separated HOST:PORT list, in cluster-map order */
    const char *provider;  /* NULL: transport default */
    const char *bind_host; /* local address for our endpoint; NULL lets the provider choose */
    uint32_t k, m;         /* default erasure code for writes */
    uint32_t frag_size;    /* bytes per fragment of a full stripe */
    uint32_t timeout_ms;   /* per-request deadline; 0 = transport default */
    uint32_t depth;        /* stripes in flight; 0 = CN_DEFAULT_DEPTH */
};

struct cn_io_stats {
    uint64_t stripes;
    uint64_t degraded_stripes; /* stripes that needed reconstruction */
    uint64_t frags_failed;     /* fragment reads that failed or had a bad CRC */
};

/* Open a cluster view.  Returns 0, CAIRN_EINVAL (bad list or code), CAIRN_EFABRIC, CAIRN_ENOMEM. */
int cn_cluster_open(const struct cn_cluster_config *cfg, struct cn_cluster **out);
void cn_cluster_close(struct cn_cluster *cl); /* accepts NULL */

unsigned cn_cluster_dnodes(const struct cn_cluster *cl);
const char *cn_cluster_dnode_addr(const struct cn_cluster *cl, unsigned i);
const struct ec_layout *cn_cluster_layout(const struct cn_cluster *cl);
struct tp_ctx *cn_cluster_tp(struct cn_cluster *cl);

/* Ping D-node i; on success fills the stats the D-node reports (any may be NULL). */
int cn_cluster_ping(struct cn_cluster *cl, unsigned i, uint64_t *dev_size, uint64_t *dev_used,
                    uint64_t *frags);

/* Ping every D-node at once and remember which do not answer, so that the next operations
 * skip them (reads go to parity, writes fail fast) instead of each waiting out a deadline.
 * Returns the number of D-nodes found down. */
unsigned cn_cluster_probe(struct cn_cluster *cl);

/* Write len bytes of data as object object_id, generation gen, with the cluster's layout.
 * data is borrowed for the call.  Returns 0 once all fragments are durable, or the first
 * error (CAIRN_EUNREACH, CAIRN_ETIMEDOUT, CAIRN_ENOSPC, ...); on error some fragments may
 * exist and the caller owns cleaning them up (cn_stripe_delete). */
int cn_stripe_write(struct cn_cluster *cl, uint64_t object_id, uint32_t gen, const uint8_t *data,
                    uint64_t len, struct cn_io_stats *st);

/* The same for a piece of an object: data becomes the object's stripes first_stripe,
 * first_stripe + 1, ...  Every piece but the last must hold whole stripes (a multiple of
 * k * frag_size bytes), so an object can be written as it streams in. */
int cn_stripe_write_at(struct cn_cluster *cl, uint64_t object_id, uint32_t gen,
                       uint64_t first_stripe, const uint8_t *data, uint64_t len,
                       struct cn_io_stats *st);

/* Read object object_id (gen, layout l, len bytes) into out.  Returns 0, CAIRN_EDEGRADED if a
 * stripe lost more than m fragments, or another error. */
int cn_stripe_read(struct cn_cluster *cl, uint64_t object_id, uint32_t gen,
                   const struct ec_layout *l, uint8_t *out, uint64_t len, struct cn_io_stats *st);

/* Read len bytes starting at stripe first_stripe (len = what the object holds from there on,
 * or a multiple of the stripe size) into out. */
int cn_stripe_read_at(struct cn_cluster *cl, uint64_t object_id, uint32_t gen,
                      const struct ec_layout *l, uint64_t first_stripe, uint8_t *out,
                      uint64_t len, struct cn_io_stats *st);

/* Delete every fragment of the object; missing fragments are not an error.  Returns the first
 * other error, after trying them all. */
int cn_stripe_delete(struct cn_cluster *cl, uint64_t object_id, uint32_t gen,
                     const struct ec_layout *l, uint64_t len);

/* ---- for the metadata layer (meta/rec.c): raw calls to one D-node ---- */

/* Whether this view considers D-node i down (it failed to answer recently). */
bool cn_cluster_node_down(const struct cn_cluster *cl, unsigned i);
/* Report the transport status of a call to D-node i (0, CAIRN_ETIMEDOUT, ...). */
void cn_cluster_note(struct cn_cluster *cl, unsigned i, int transport_status);
/* All D-nodes in rendezvous order for item (nodes has room for cn_cluster_dnodes()). */
int cn_cluster_order(const struct cn_cluster *cl, uint64_t item, unsigned *nodes);
/* tp_call() to D-node node; progress with tp_ctx_wait(cn_cluster_tp(cl), ...). */
int cn_cluster_call(struct cn_cluster *cl, unsigned node, Cairn__Request *req,
                    const void *payload, uint32_t len, void *resp_buf, uint32_t resp_cap,
                    tp_call_cb cb, void *arg);

/* Metadata records, replicated on the m + 1 D-nodes that placement picks for the key's shard.
 * put writes every replica unconditionally with a fresh version and succeeds only if all
 * acknowledge; get returns the value with the highest version among replicas that answer
 * (*val malloc'd, caller frees); del removes it from every replica. */
int cn_meta_put(struct cn_cluster *cl, const char *key, const void *val, uint32_t len);
int cn_meta_get(struct cn_cluster *cl, const char *key, void **val, uint32_t *len);
int cn_meta_del(struct cn_cluster *cl, const char *key);

#endif
