/*
 * cairn.c - error strings and small shared helpers.
 */
#include "common/cairn.h"

#include <errno.h>
#include <time.h>

static const char *const cairn_errstr[] = {
    [0] = "success",
    [1] = "out of memory",
    [2] = "invalid argument",
    [3] = "I/O error",
    [4] = "not found",
    [5] = "already exists",
    [6] = "no space left on device",
    [7] = "checksum mismatch",
    [8] = "version conflict",
    [9] = "timed out",
    [10] = "peer unreachable",
    [11] = "protocol error",
    [12] = "limit exceeded",
    [13] = "cancelled",
    [14] = "fabric error",
    [15] = "resource temporarily unavailable",
    [16] = "not supported",
    [17] = "too many fragments lost",
};

const char *cairn_strerror(int err)
{
    unsigned idx = err <= 0 ? (unsigned)-err : ~0u;

    if (idx >= CAIRN_ARRAY_SIZE(cairn_errstr) || !cairn_errstr[idx])
        return "unknown error";
    return cairn_errstr[idx];
}

int cairn_from_errno(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return CAIRN_OK;
    case ENOMEM:
        return CAIRN_ENOMEM;
    case EINVAL:
        return CAIRN_EINVAL;
    case ENOENT:
        return CAIRN_ENOENT;
    case EEXIST:
        return CAIRN_EEXIST;
    case ENOSPC:
        return CAIRN_ENOSPC;
    case ETIMEDOUT:
        return CAIRN_ETIMEDOUT;
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ECONNRESET:
    case ENOTCONN:
    case EPIPE:
        return CAIRN_EUNREACH;
    case EAGAIN:
        return CAIRN_EAGAIN;
    case ECANCELED:
        return CAIRN_ECANCELED;
    case EMSGSIZE:
    case E2BIG:
        return CAIRN_ETOOBIG;
    case ENOTSUP:
        return CAIRN_ENOTSUP;
    default:
        return CAIRN_EIO;
    }
}

uint64_t cairn_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
