/*
 * err.h - the project's one error list.
 *
 * Every fallible function in Cairn returns an int: 0 on success, or one of the negative
 * CAIRN_E* codes.  The codes name *what went wrong*, not which protocol saw it: the protocol
 * heads translate them into their own error spaces (NFS3ERR_*, S3 error codes) in one table
 * each.  The enum and the strings come from the one list below (CAIRN_ERRORS), so a code
 * cannot exist without its text.
 *
 * The codes travel on the wire (a D-node's answer carries one), so their values are fixed:
 * a new code goes at the end of the list, and none is ever removed or reordered.
 */
#ifndef CAIRN_COMMON_ERR_H
#define CAIRN_COMMON_ERR_H

/* X(NAME, "text"): CAIRN_NAME = -(position in the list, from 1). */
#define CAIRN_ERRORS(X)                                                                            \
    X(ENOMEM, "out of memory")                                                                     \
    X(EINVAL, "invalid argument")                                                                  \
    X(EIO, "I/O error")                                                                            \
    X(ENOENT, "not found")                                                                         \
    X(EEXIST, "already exists")                                                                    \
    X(ENOSPC, "no space left on device")                                                           \
    X(ECRC, "checksum mismatch")                                                                   \
    X(ECONFLICT, "version conflict")                                                               \
    X(ETIMEDOUT, "timed out")                                                                      \
    X(EUNREACH, "peer unreachable")                                                                \
    X(EPROTO, "protocol error")                                                                    \
    X(ETOOBIG, "limit exceeded")                                                                   \
    X(ECANCELED, "cancelled")                                                                      \
    X(EFABRIC, "fabric error")                                                                     \
    X(EAGAIN, "resource temporarily unavailable")                                                  \
    X(ENOTSUP, "not supported")                                                                    \
    X(EDEGRADED, "too many fragments lost")                                                        \
    X(ENOTEMPTY, "directory not empty")                                                            \
    X(ENOTDIR, "not a directory")                                                                  \
    X(EISDIR, "is a directory")                                                                    \
    X(EACCES, "permission denied")                                                                 \
    X(EPERM, "operation not permitted")                                                            \
    X(EMLINK, "too many links")                                                                    \
    X(ENAMETOOLONG, "name too long")                                                               \
    X(EPRECOND, "precondition failed")                                                             \
    X(ENOTLEADER, "not the leader")                                                                \
    X(EUNKNOWN, "outcome unknown")                                                                 \
    X(ESTALE, "stale cluster map")

/* Positions in the list (not error codes): CAIRN_I_ENOMEM == 1, ... */
enum cairn_err_index {
    CAIRN_I_OK = 0,
#define CAIRN_X_INDEX(name, text) CAIRN_I_##name,
    CAIRN_ERRORS(CAIRN_X_INDEX)
#undef CAIRN_X_INDEX
        CAIRN_I_LAST
};

enum cairn_err {
    CAIRN_OK = 0,
#define CAIRN_X_CODE(name, text) CAIRN_##name = -CAIRN_I_##name,
    CAIRN_ERRORS(CAIRN_X_CODE)
#undef CAIRN_X_CODE
        CAIRN_E_LAST = -CAIRN_I_LAST, /* one past the last code */
};

/* Static string describing err (a CAIRN_E* code); never NULL ("unknown error" for others). */
const char *cairn_strerror(int err);

/* Map a positive or negative errno value to the closest CAIRN_E* code. */
int cairn_from_errno(int err);

#endif
