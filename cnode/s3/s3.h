/*
 * s3.h - the S3 head: turns S3 requests into namespace (meta/ns.h) and stripe (stripe.h)
 * operations.  It plugs into the HTTP server (server.h) as its application: every worker
 * thread opens its own cluster view, so requests share nothing but the D-nodes.
 */
#ifndef CAIRN_CN_S3_H
#define CAIRN_CN_S3_H

#include "cnode/http/server.h"
#include "client/stripe.h"

#define S3_MAX_USER_META 2048u     /* bytes of x-amz-meta-* names and values, as S3 */
#define S3_MAX_QUERY_PARAMS 64u
#define S3_MIN_PART_SIZE (5u << 20)
#define S3_MAX_OBJECT_SIZE (5ull << 40)
#define S3_MAX_PUT_SIZE (5ull << 30)

struct s3_config {
    struct cl_cluster_config cluster; /* borrowed for the life of the app */
    const char *region;               /* "us-east-1" if NULL */
};

/* Fill *app for http_server_start().  Returns 0 or CAIRN_ENOMEM. */
int s3_app_init(const struct s3_config *cfg, struct http_server_app *app);
void s3_app_fini(struct http_server_app *app);

#endif
