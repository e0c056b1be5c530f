/*
 * cairn.h - the project's one error enum and the helpers every module shares.
 *
 * Every fallible function in Cairn returns an int: 0 on success, or one of the
 * negative CAIRN_E* codes below.  Protocol heads translate these codes into
 * their own error spaces (NFS3ERR_*, S3 error codes) in one table each, so the
 * codes name *what went wrong* rather than which protocol saw it.
 */
#ifndef CAIRN_H
#define CAIRN_H

#include <stddef.h>
#include <stdint.h>

enum cairn_err {
    CAIRN_OK = 0,
    CAIRN_ENOMEM = -1,     /* allocation failed */
    CAIRN_EINVAL = -2,     /* caller passed an invalid argument */
    CAIRN_EIO = -3,        /* device or system I/O error */
    CAIRN_ENOENT = -4,     /* no such fragment, record or peer */
    CAIRN_EEXIST = -5,     /* already exists (fragments are immutable) */
    CAIRN_ENOSPC = -6,     /* device full */
    CAIRN_ECRC = -7,       /* checksum mismatch: data is corrupt */
    CAIRN_ECONFLICT = -8,  /* conditional update lost: version mismatch */
    CAIRN_ETIMEDOUT = -9,  /* peer did not answer within the deadline */
    CAIRN_EUNREACH = -10,  /* peer unreachable or connection failed */
    CAIRN_EPROTO = -11,    /* malformed or unexpected message */
    CAIRN_ETOOBIG = -12,   /* a named limit was exceeded */
    CAIRN_ECANCELED = -13, /* operation cancelled (shutdown) */
    CAIRN_EFABRIC = -14,   /* libfabric reported an error */
    CAIRN_EAGAIN = -15,    /* resource temporarily exhausted, retry */
    CAIRN_ENOTSUP = -16,   /* operation not supported */
    CAIRN_EDEGRADED = -17, /* more fragments lost than the code can repair */
    CAIRN_E_LAST = -18,
};

/* Static string describing err (a CAIRN_E* code); never NULL. */
const char *cairn_strerror(int err);

/* Map a positive or negative errno value to the closest CAIRN_E* code. */
int cairn_from_errno(int err);

/* Monotonic clock in nanoseconds / milliseconds. */
uint64_t cairn_now_ns(void);
static inline uint64_t cairn_now_ms(void)
{
    return cairn_now_ns() / 1000000u;
}

#define CAIRN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CAIRN_ALIGN_UP(x, a) ((((x) + (a) - 1) / (a)) * (a))
#define CAIRN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CAIRN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Device block: unit of O_DIRECT I/O and of the transport header slot. */
#define CAIRN_BLOCK 4096u

#endif
