/*
 * cairn.c - error strings (from the list in err.h), errno mapping and the clocks.
 */
#include "common/cairn.h"

#include <errno.h>
#include <time.h>

static const char *const cairn_errstr[] = {
    [CAIRN_I_OK] = "success",
#define CAIRN_X_TEXT(name, text) [CAIRN_I_##name] = text,
    CAIRN_ERRORS(CAIRN_X_TEXT)
#undef CAIRN_X_TEXT
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
    case ENOTEMPTY:
        return CAIRN_ENOTEMPTY;
    case ENOTDIR:
        return CAIRN_ENOTDIR;
    case EISDIR:
        return CAIRN_EISDIR;
    case EACCES:
        return CAIRN_EACCES;
    case EPERM:
        return CAIRN_EPERM;
    case EMLINK:
        return CAIRN_EMLINK;
    case ENAMETOOLONG:
        return CAIRN_ENAMETOOLONG;
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

int64_t cairn_wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
