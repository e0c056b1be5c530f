/*
 * clock.h - the two clocks Cairn reads.
 *
 * The monotonic clock measures intervals (deadlines, timeouts, rates); the wall clock stamps
 * what users see (file times, S3 Last-Modified, log lines).  Nothing orders updates by the wall
 * clock: record versions come from the records themselves.
 */
#ifndef CAIRN_COMMON_CLOCK_H
#define CAIRN_COMMON_CLOCK_H

#include <stdint.h>

/* Monotonic clock in nanoseconds / milliseconds. */
uint64_t cairn_now_ns(void);
static inline uint64_t cairn_now_ms(void)
{
    return cairn_now_ns() / 1000000u;
}

/* Wall-clock time in nanoseconds since the Unix epoch. */
int64_t cairn_wall_ns(void);

#endif
