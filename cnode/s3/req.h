/*
 * req.h - one S3 request in flight, and what the files of the S3 head share (inside cnode/s3/).
 *
 * A request runs on one HTTP worker thread from start to end (dispatch.c): authenticate, find
 * the bucket, run the operation (object.c, bucket.c, list.c, multipart.c) against the file
 * system (cnode/fs/fs.h), answer (reply.c).  Request bodies are read through body.c, which
 * decodes aws-chunked bodies and checks their signatures and checksums.
 */
#ifndef CAIRN_CN_S3_REQ_H
#define CAIRN_CN_S3_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cnode/fs/fs.h"
#include "cnode/http/server.h"
#include "cnode/s3/err.h"
#include "cnode/s3/s3.h"
#include "cnode/s3/sigv4.h"
#include "cnode/s3/xml.h"
#include "common/metrics.h"

#define S3_TAG "s3"
#define S3_XML_TYPE "application/xml"
#define S3_DEFAULT_CONTENT_TYPE "binary/octet-stream"
#define S3_LIST_MAX_KEYS 1000u
#define S3_MAX_RESP_HEADERS 64

/* The operations the head counts (dispatch.c names them as S3's API does). */
#define S3_OPS(X)                                                                                  \
    X(LIST_BUCKETS, "ListBuckets")                                                                 \
    X(CREATE_BUCKET, "CreateBucket")                                                               \
    X(DELETE_BUCKET, "DeleteBucket")                                                               \
    X(HEAD_BUCKET, "HeadBucket")                                                                   \
    X(LIST_OBJECTS, "ListObjects")                                                                 \
    X(LIST_OBJECTS_V2, "ListObjectsV2")                                                            \
    X(LIST_UPLOADS, "ListMultipartUploads")                                                        \
    X(DELETE_OBJECTS, "DeleteObjects")                                                             \
    X(PUT_OBJECT, "PutObject")                                                                     \
    X(GET_OBJECT, "GetObject")                                                                     \
    X(HEAD_OBJECT, "HeadObject")                                                                   \
    X(DELETE_OBJECT, "DeleteObject")                                                               \
    X(OBJECT_TAGGING, "ObjectTagging")                                                             \
    X(CREATE_UPLOAD, "CreateMultipartUpload")                                                      \
    X(UPLOAD_PART, "UploadPart")                                                                   \
    X(COMPLETE_UPLOAD, "CompleteMultipartUpload")                                                  \
    X(ABORT_UPLOAD, "AbortMultipartUpload")                                                        \
    X(LIST_PARTS, "ListParts")                                                                     \
    X(OTHER, "other") /* refused before an operation was known */

enum s3_op {
#define S3_X_OP(name, text) S3_OP_##name,
    S3_OPS(S3_X_OP)
#undef S3_X_OP
        S3_OP_COUNT
};

struct s3_app {
    struct fs *fs; /* borrowed */
    char region[64];
    struct metrics_ops stats;
};

struct s3_param {
    char *name; /* decoded, owned */
    char *value;
};

/* One request. */
struct s3_req {
    struct s3_app *app;
    struct fs_ctx *fs; /* the worker's */
    struct http_req *r;
    const struct http_request *h;
    char request_id[33];
    char bucket[64];
    char key[S3_MAX_KEY_LEN + 1];
    size_t key_len;
    bool has_bucket, has_key;
    struct s3_param params[S3_MAX_QUERY_PARAMS];
    unsigned nparams;
    struct sigv4_auth auth;
    Cairn__User *user; /* NULL for anonymous */
    /* body source (body.c) */
    struct sigv4_chunked *chunked;
    char *raw; /* aws-chunked staging buffer */
    size_t raw_len, raw_off;
    bool raw_eof;
    int64_t body_len; /* decoded length, -1 unknown */
    enum s3_err body_err; /* why a body read failed */
    bool responded;
    enum s3_op op; /* what it was, for the head's counters */
};

/* ---- req.c ---- */

const char *s3_param(const struct s3_req *q, const char *name);
const char *s3_hdr(const struct s3_req *q, const char *name);
/* The bucket's directory (and its inode, if bin); access checked for reading or writing.
 * Anonymous requests pass only on public buckets, and only to read. */
enum s3_err s3_bucket_open(struct s3_req *q, bool write, uint64_t *ino, Cairn__Inode **bin);
void s3_hex(const uint8_t *in, size_t n, char *out);
/* S3's bucket naming rules: 3..63 of [a-z0-9.-], starting and ending alphanumeric. */
bool s3_bucket_name_valid(const char *b, size_t n);

/* ---- reply.c ---- */

struct s3_hdrs {
    struct http_header h[S3_MAX_RESP_HEADERS];
    char *owned[S3_MAX_RESP_HEADERS];
    unsigned n, nowned;
};

void s3_hdrs_add(struct s3_hdrs *hs, const char *name, const char *value);
/* Add a header whose name and value are copied. */
void s3_hdrs_addf(struct s3_hdrs *hs, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void s3_hdrs_fini(struct s3_hdrs *hs);
void s3_std_headers(struct s3_req *q, struct s3_hdrs *hs);

/* The S3 error for a project error (through the one table, s3_err_from_cairn); failures of
 * the cluster are logged (they are ours). */
enum s3_err s3e(int rc);
void s3_reply_error_msg(struct s3_req *q, enum s3_err e, const char *message);
void s3_reply_error(struct s3_req *q, enum s3_err e);
void s3_reply_cairn(struct s3_req *q, int rc);
void s3_reply_xml(struct s3_req *q, int status, struct s3_xbuf *b);
void s3_reply_empty(struct s3_req *q, int status, struct s3_hdrs *extra);

/* ---- body.c ---- */

/* Set up the body source: plain, or aws-chunked decoded and signature-checked. */
enum s3_err s3_body_open(struct s3_req *q);
/* Read exactly len decoded bytes (or fail). */
enum s3_err s3_body_read_full(struct s3_req *q, uint8_t *buf, size_t len);
/* After the declared length: the body must end here (and, for aws-chunked, verify). */
enum s3_err s3_body_close(struct s3_req *q);
void s3_body_fini(struct s3_req *q);
/* A small body (XML) whole: *out malloc'd, NUL-terminated, at most max bytes. */
enum s3_err s3_body_small(struct s3_req *q, size_t max, char **out, size_t *len);

/* What a body upload produced: the stored data and the checksum the client asked for. */
struct s3_upload {
    struct fs_data data;
    char cksum_name[32];
    char cksum_value[64];
};

/* Stream the request body (len bytes) into the cluster (fs_store), computing and checking the
 * digests the request carries (Content-MD5, the signed payload hash, x-amz-checksum-*); on
 * any failure nothing stays behind. */
enum s3_err s3_upload_body(struct s3_req *q, uint64_t len, bool allow_inline,
                           struct s3_upload *res);

/* ---- object.c ---- */

void s3_put_object(struct s3_req *q);
void s3_get_object(struct s3_req *q);
void s3_delete_object(struct s3_req *q);
void s3_object_tagging(struct s3_req *q);
void s3_delete_objects(struct s3_req *q, uint64_t bucket);
/* Parse "x-amz-copy-source: /bucket/key": the source's bucket directory and key. */
enum s3_err s3_copy_source(struct s3_req *q, const char *src, uint64_t *bucket, char *key,
                           size_t *klen);
/* Parse a Range header against size: 1 with the range, 0 to ignore it, -1 for InvalidRange. */
int s3_parse_range(const char *r, uint64_t size, uint64_t *off, uint64_t *len);
/* Content type, stored headers and user metadata of the request into in (pointers into the
 * request; pairs/ptrs have room for max). */
enum s3_err s3_collect_meta(struct s3_req *q, Cairn__Inode *in, Cairn__Pair *pairs,
                            Cairn__Pair **ptrs, size_t max);

/* ---- bucket.c ---- */

void s3_list_buckets(struct s3_req *q);
void s3_create_bucket(struct s3_req *q);
void s3_delete_bucket(struct s3_req *q);
void s3_head_bucket(struct s3_req *q);

/* ---- list.c ---- */

void s3_list_objects(struct s3_req *q, bool v2);

/* ---- multipart.c ---- */

void s3_create_upload(struct s3_req *q, uint64_t bucket);
void s3_upload_part(struct s3_req *q, uint64_t bucket);
void s3_complete_upload(struct s3_req *q, uint64_t bucket);
void s3_abort_upload(struct s3_req *q, uint64_t bucket);
void s3_list_parts(struct s3_req *q, uint64_t bucket);
void s3_list_uploads(struct s3_req *q, uint64_t bucket);

#endif
