/*
 * placement.c - rendezvous hashing over the cluster map (see placement.h).
 *
 * Selecting the top n of N scores is a partial selection sort: N is at most a few
 * thousand D-nodes and n at most 32, so O(N*n) without allocation beats sorting.
 */
#include "client/placement.h"

#include <string.h>

#include "common/cairn.h"

uint64_t cl_mix64(uint64_t x)
{
    return cairn_mix64(x);
}

uint64_t cl_hash_bytes(const void *p, uint64_t len)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;

    for (uint64_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return cl_mix64(h);
}

uint64_t cl_node_key(const char *identity)
{
    return cl_hash_bytes(identity, strlen(identity));
}

uint64_t cl_stripe_id(uint64_t object_id, uint64_t s)
{
    return cl_mix64(object_id ^ cl_mix64(s + 0x9e3779b97f4a7c15ull));
}

int cl_place(uint64_t item, const uint64_t *keys, unsigned nnodes, unsigned n, unsigned *out)
{
    uint64_t score[CL_MAX_NODES];
    uint8_t taken[CL_MAX_NODES];

    if (n == 0 || n > nnodes || nnodes > CL_MAX_NODES)
        return CAIRN_EINVAL;
    for (unsigned i = 0; i < nnodes; i++) {
        score[i] = cl_mix64(keys[i] ^ cl_mix64(item));
        taken[i] = 0;
    }
    for (unsigned j = 0; j < n; j++) {
        unsigned best = nnodes;

        for (unsigned i = 0; i < nnodes; i++)
            if (!taken[i] && (best == nnodes || score[i] > score[best]))
                best = i;
        taken[best] = 1;
        out[j] = best;
    }
    return 0;
}
