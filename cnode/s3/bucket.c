/*
 * bucket.c - buckets: list, create, delete, head and location (see req.h).  A bucket is a
 * directory in the root of the one namespace (fs_bucket_*), owned by the access key that made
 * it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/s3/req.h"
#include "common/cairn.h"
#include "common/log.h"

static int list_one(void *arg, const char *name, size_t len, const Cairn__Inode *in)
{
    struct s3_xbuf *b = arg;
    char t[40];

    s3_time_iso8601(in->btime_ns, t);
    s3_xbuf_puts(b, "<Bucket><Name>");
    s3_xbuf_escape(b, name, len);
    s3_xbuf_puts(b, "</Name>");
    s3_xbuf_elem(b, "CreationDate", t);
    s3_xbuf_puts(b, "</Bucket>");
    return 0;
}

void s3_list_buckets(struct s3_req *q)
{
    struct s3_xbuf b;
    int rc;

    if (!q->user) {
        s3_reply_error(q, S3E_ACCESS_DENIED);
        return;
    }
    s3_xbuf_start(&b, "ListAllMyBucketsResult");
    s3_xbuf_puts(&b, "<Owner><ID>");
    s3_xbuf_escape(&b, q->user->access_key, strlen(q->user->access_key));
    s3_xbuf_puts(&b, "</ID><DisplayName>");
    s3_xbuf_escape(&b, q->user->name, strlen(q->user->name));
    s3_xbuf_puts(&b, "</DisplayName></Owner><Buckets>");
    rc = fs_bucket_each(q->fs, list_one, &b);
    if (rc) {
        s3_xbuf_fini(&b);
        s3_reply_cairn(q, rc);
        return;
    }
    s3_xbuf_puts(&b, "</Buckets></ListAllMyBucketsResult>");
    s3_reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
}

void s3_create_bucket(struct s3_req *q)
{
    char region[64], body[4096];
    struct s3_hdrs hs = {0};
    uint64_t ino;
    size_t blen = 0;
    enum s3_err e;
    int rc;

    if (!q->user) {
        s3_reply_error(q, S3E_ACCESS_DENIED);
        return;
    }
    /* CreateBucketConfiguration: small; anything larger is not one. */
    if (q->h->content_length > (int64_t)sizeof(body)) {
        s3_reply_error(q, S3E_MALFORMED_XML);
        return;
    }
    e = s3_body_open(q);
    if (!e && q->body_len > 0) {
        blen = (size_t)q->body_len;
        if (blen > sizeof(body))
            e = S3E_MALFORMED_XML;
        else
            e = s3_body_read_full(q, (uint8_t *)body, blen);
    }
    if (!e)
        e = s3_body_close(q);
    if (!e && blen)
        e = s3xml_parse_create_bucket(body, blen, region, sizeof(region));
    if (e) {
        s3_reply_error(q, e);
        return;
    }
    rc = fs_bucket_create(q->fs, q->bucket, q->user->access_key, &ino);
    if (rc == CAIRN_EEXIST) {
        Cairn__Inode *cur = NULL;
        bool mine = !fs_bucket_get(q->fs, q->bucket, &ino, &cur) && cur->owner &&
                    !strcmp(cur->owner, q->user->access_key);

        fs_inode_free(cur);
        s3_reply_error(q, mine ? S3E_BUCKET_ALREADY_OWNED_BY_YOU : S3E_BUCKET_ALREADY_EXISTS);
        return;
    }
    if (rc) {
        s3_reply_cairn(q, rc);
        return;
    }
    s3_hdrs_addf(&hs, "Location", "/%s", q->bucket);
    s3_reply_empty(q, 200, &hs);
    s3_hdrs_fini(&hs);
}

void s3_delete_bucket(struct s3_req *q)
{
    Cairn__Inode *bin = NULL;
    uint64_t bucket;
    enum s3_err e = S3E_OK;
    int rc = fs_bucket_get(q->fs, q->bucket, &bucket, &bin);

    if (rc)
        e = rc == CAIRN_ENOENT ? S3E_NO_SUCH_BUCKET : s3e(rc);
    else if (!q->user ||
             (bin->owner && strcmp(bin->owner, q->user->access_key) && !q->user->admin))
        e = S3E_ACCESS_DENIED;
    fs_inode_free(bin);
    if (e) {
        s3_reply_error(q, e);
        return;
    }
    rc = fs_bucket_remove(q->fs, q->bucket, bucket);
    if (rc == CAIRN_ENOTEMPTY) {
        s3_reply_error(q, S3E_BUCKET_NOT_EMPTY);
        return;
    }
    if (rc) {
        s3_reply_cairn(q, rc);
        return;
    }
    s3_reply_empty(q, 204, NULL);
}

void s3_head_bucket(struct s3_req *q)
{
    uint64_t bucket;
    enum s3_err e = s3_bucket_open(q, false, &bucket, NULL);
    struct s3_xbuf b;

    if (e) {
        s3_reply_error(q, e);
        return;
    }
    if (q->h->method == HTTP_HEAD) {
        struct s3_hdrs hs = {0};

        s3_hdrs_add(&hs, "x-amz-bucket-region", q->app->region);
        s3_reply_empty(q, 200, &hs);
        return;
    }
    s3_xbuf_start(&b, "LocationConstraint");
    if (strcmp(q->app->region, "us-east-1"))
        s3_xbuf_escape(&b, q->app->region, strlen(q->app->region));
    s3_xbuf_puts(&b, "</LocationConstraint>");
    s3_reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
}
