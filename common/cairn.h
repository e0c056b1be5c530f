/*
 * cairn.h - what every module shares: the error list (err.h), the clocks (clock.h) and a few
 * arithmetic helpers.
 */
#ifndef CAIRN_H
#define CAIRN_H

#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/err.h"

#define CAIRN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CAIRN_ALIGN_UP(x, a) ((((x) + (a) - 1) / (a)) * (a))
#define CAIRN_MIN(a, b) ((a) < (b) ? (a) : (b))

/* A 64-bit mixing function (the splitmix64 finalizer): placement and sharding hash with it,
 * so every process computes the same spread. */
static inline uint64_t cairn_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}
#define CAIRN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Device block: unit of O_DIRECT I/O and of the transport header slot. */
#define CAIRN_BLOCK 4096u

#endif
