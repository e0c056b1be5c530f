/*
 * placement.h - which D-nodes hold a stripe's fragments or a metadata shard's replicas.
 *
 * Rendezvous (highest-random-weight) hashing: every D-node gets a score for an item,
 * hash(node key, item); the item lives on the n highest-scoring nodes, in score order.
 * Any C-node computes the same answer from the cluster map alone (no directory service),
 * nodes are distinct by construction (distinct failure domains when each D-node is one),
 * and adding a D-node moves only the items for which it now scores in the top n.
 */
#ifndef CAIRN_CLIENT_PLACEMENT_H
#define CAIRN_CLIENT_PLACEMENT_H

#include <stdint.h>

#define CL_MAX_NODES 1024u

/* A stable 64-bit key for a node, from its identity string (its address for now). */
uint64_t cl_node_key(const char *identity);

/* Choose n distinct nodes out of nnodes (n <= nnodes <= CL_MAX_NODES) for item;
 * out[i] is an index into keys[].  Returns 0 or CAIRN_EINVAL. */
int cl_place(uint64_t item, const uint64_t *keys, unsigned nnodes, unsigned n, unsigned *out);

/* Stripe id of stripe s of an object: a mix of both so ids spread over the hash space. */
uint64_t cl_stripe_id(uint64_t object_id, uint64_t s);

/* A 64-bit mixing function (splitmix64 finalizer). */
uint64_t cl_mix64(uint64_t x);

/* A 64-bit hash of bytes (FNV-1a, then mixed): keys and identities are short strings; this
 * needs spread, not security. */
uint64_t cl_hash_bytes(const void *p, uint64_t len);

#endif
