/*
 * s3.h - the S3 head: S3 requests (path-style, SigV4) turned into file-system calls
 * (cnode/fs/fs.h) on the one namespace.  It runs an HTTP server (cnode/http/server.h) with
 * itself as the application; every worker thread has its own file-system context, so requests
 * share nothing but the D-nodes.
 */
#ifndef CAIRN_CN_S3_H
#define CAIRN_CN_S3_H

#include "cnode/head.h"

#define S3_MAX_USER_META 2048u /* bytes of x-amz-meta-* names and values, as S3 */
#define S3_MAX_QUERY_PARAMS 64u
#define S3_MIN_PART_SIZE (5u << 20)
#define S3_MAX_OBJECT_SIZE (5ull << 40)
#define S3_MAX_PUT_SIZE (5ull << 30)

/* The head: one port (the S3 endpoint); reads S3_REGION ("us-east-1" if unset). */
extern const struct cn_head_ops s3_head_ops;

#endif
