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
#define CAIRN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Device block: unit of O_DIRECT I/O and of the transport header slot. */
#define CAIRN_BLOCK 4096u

#endif
