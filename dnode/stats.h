/*
 * stats.h - what a D-node counts for its operators (the Prometheus endpoint, common/admin.h).
 *
 * Every answer the D-node sends is reported by the transport (tp_ctx_observe) with its
 * request's op, status, payload sizes and time from delivery to answer; this module turns
 * those into per-op counters and latency histograms, and keeps the device gauges (size, used,
 * fragments) current.  It runs on the D-node's one loop thread, the only one that touches the
 * store, and publishes through the registry's atomics, which the endpoint's thread reads.
 */
#ifndef CAIRN_DN_STATS_H
#define CAIRN_DN_STATS_H

#include "common/metrics.h"
#include "dnode/scrub.h"
#include "dnode/store.h"
#include "transport/tp.h"

struct dn_stats;

/* Register the D-node's families in reg (borrowed; NULL: count nothing) for store (borrowed:
 * both must outlive the stats).  Returns 0, CAIRN_ENOMEM or the registry's error. */
int dn_stats_open(struct metrics *reg, struct dn_store *store, struct dn_stats **out);
/* Free; accepts NULL. */
void dn_stats_close(struct dn_stats *st);

/* Publish the scrub's figures (and the bad-fragment gauge); NULL st does nothing. */
void dn_stats_scrub(struct dn_stats *st, const struct dn_scrub_stats *ss);

/* The transport's observer (tp_answered_cb); arg is the struct dn_stats. */
void dn_stats_answered(void *arg, const struct tp_answered *a);

#endif
