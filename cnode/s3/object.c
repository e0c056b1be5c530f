/*
 * object.c - objects: PUT (and copy), GET/HEAD with ranges and conditions, DELETE, the
 * multi-object delete, and the (empty) tag set (see req.h).
 *
 * A PUT streams the body into the cluster (s3_upload_body: durable fragments, digests checked)
 * and then makes the key name the new file (fs_key_put: the inode on the D-nodes, then the
 * entry switched to it), and only then answers 200.  An object is therefore visible whole or
 * not at all, last writer wins, and a C-node killed at any point leaves only unreferenced
 * data, never a half-visible object.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cnode/s3/req.h"
#include "common/cairn.h"
#include "common/log.h"

/* ---- stored headers and metadata ---- */

static const char *const stored_headers[] = {"cache-control", "content-disposition",
                                             "content-encoding", "content-language", "expires",
                                             "x-amz-website-redirect-location"};

enum s3_err s3_collect_meta(struct s3_req *q, Cairn__Inode *in, Cairn__Pair *pairs,
                            Cairn__Pair **ptrs, size_t max)
{
    size_t np = 0, meta_bytes = 0, nh = 0, nm = 0;
    const char *ct = s3_hdr(q, "content-type");

    in->content_type = (char *)(ct ? ct : S3_DEFAULT_CONTENT_TYPE);
    for (unsigned i = 0; i < q->h->nheaders; i++) {
        const struct http_header *h = &q->h->headers[i];
        bool stored = false;

        for (size_t j = 0; j < CAIRN_ARRAY_SIZE(stored_headers); j++)
            stored |= !strcmp(h->name, stored_headers[j]);
        if (stored && np < max) {
            cairn__pair__init(&pairs[np]);
            pairs[np].name = (char *)h->name;
            pairs[np].value = (char *)h->value;
            ptrs[np] = &pairs[np];
            np++;
            nh++;
        }
    }
    in->headers = ptrs;
    in->n_headers = nh;
    for (unsigned i = 0; i < q->h->nheaders; i++) {
        const struct http_header *h = &q->h->headers[i];

        if (strncmp(h->name, "x-amz-meta-", 11))
            continue;
        meta_bytes += h->name_len - 11 + h->value_len;
        if (meta_bytes > S3_MAX_USER_META)
            return S3E_METADATA_TOO_LARGE;
        if (np >= max)
            return S3E_METADATA_TOO_LARGE;
        cairn__pair__init(&pairs[np]);
        pairs[np].name = (char *)h->name + 11;
        pairs[np].value = (char *)h->value;
        ptrs[np] = &pairs[np];
        np++;
        nm++;
    }
    in->user_meta = ptrs + nh;
    in->n_user_meta = nm;
    return S3E_OK;
}

static void object_headers(const Cairn__Inode *in, const char *etag, struct s3_hdrs *hs)
{
    char t[40];

    s3_hdrs_addf(hs, "ETag", "\"%s\"", etag);
    s3_time_http(in->mtime_ns, t);
    s3_hdrs_addf(hs, "Last-Modified", "%s", t);
    s3_hdrs_add(hs, "Content-Type", in->content_type && *in->content_type
                                        ? in->content_type
                                        : S3_DEFAULT_CONTENT_TYPE);
    s3_hdrs_add(hs, "Accept-Ranges", "bytes");
    for (size_t i = 0; i < in->n_headers; i++)
        s3_hdrs_add(hs, in->headers[i]->name, in->headers[i]->value);
    for (size_t i = 0; i < in->n_user_meta; i++) {
        char name[300];

        snprintf(name, sizeof(name), "x-amz-meta-%s", in->user_meta[i]->name);
        s3_hdrs_addf(hs, name, "%s", in->user_meta[i]->value);
    }
    if (in->parts)
        s3_hdrs_addf(hs, "x-amz-mp-parts-count", "%u", in->parts);
}

/* ---- PUT ---- */

static void put_dir_marker(struct s3_req *q, uint64_t bucket)
{
    struct s3_hdrs hs = {0};
    int rc;

    if (q->body_len > 0) {
        s3_reply_error_msg(q, S3E_INVALID_ARGUMENT, "A key ending in '/' names a directory and "
                                                    "cannot have data");
        return;
    }
    rc = fs_key_mkdir(q->fs, bucket, q->key, q->key_len - 1);
    if (rc) {
        s3_reply_error(q, s3e(rc));
        return;
    }
    s3_hdrs_add(&hs, "ETag", "\"" FS_ETAG_EMPTY "\"");
    s3_reply_empty(q, 200, &hs);
}

static void copy_object(struct s3_req *q, uint64_t bucket, const char *srcspec);

void s3_put_object(struct s3_req *q)
{
    Cairn__Inode in = CAIRN__INODE__INIT;
    Cairn__Pair pairs[64], *ptrs[64];
    struct s3_upload res;
    struct s3_hdrs hs = {0};
    uint64_t bucket;
    enum s3_err e;
    const char *src = s3_hdr(q, "x-amz-copy-source");
    int rc;

    e = s3_bucket_open(q, true, &bucket, NULL);
    if (e)
        goto fail;
    if (src) {
        copy_object(q, bucket, src);
        return;
    }
    e = s3_body_open(q);
    if (e)
        goto fail;
    if (q->body_len < 0) {
        e = S3E_MISSING_CONTENT_LENGTH;
        goto fail;
    }
    if (q->key[q->key_len - 1] == '/') {
        put_dir_marker(q, bucket);
        return;
    }
    e = s3_collect_meta(q, &in, pairs, ptrs, CAIRN_ARRAY_SIZE(pairs));
    if (e)
        goto fail;
    e = s3_upload_body(q, (uint64_t)q->body_len, true, &res);
    if (e)
        goto fail;
    in.etag = res.data.etag;
    if (res.cksum_name[0]) {
        in.checksum_name = res.cksum_name;
        in.checksum_value = res.cksum_value;
    }
    rc = fs_key_put(q->fs, bucket, q->key, q->key_len, &in, &res.data);
    fs_data_fini(&res.data);
    if (rc) {
        e = s3e(rc);
        goto fail;
    }
    s3_hdrs_addf(&hs, "ETag", "\"%s\"", res.data.etag);
    if (res.cksum_name[0])
        s3_hdrs_addf(&hs, res.cksum_name, "%s", res.cksum_value);
    s3_reply_empty(q, 200, &hs);
    s3_hdrs_fini(&hs);
    return;
fail:
    s3_reply_error(q, e);
}

/* ---- GET and HEAD ---- */

/* Evaluate If-Match & co.  Returns S3E_OK, S3E_PRECONDITION_FAILED or S3E_NOT_MODIFIED. */
static enum s3_err preconditions(struct s3_req *q, const Cairn__Inode *in, const char *etag,
                                 const char *prefix)
{
    char name[64];
    const char *im, *inm, *ims, *ius;
    char quoted[80];

    snprintf(quoted, sizeof(quoted), "\"%s\"", etag);
#define H(n) (snprintf(name, sizeof(name), "%s%s", prefix, n), s3_hdr(q, name))
    im = H("if-match");
    inm = H("if-none-match");
    ims = H("if-modified-since");
    ius = H("if-unmodified-since");
#undef H
    if (im && strcmp(im, "*") && strcmp(im, quoted) && strcmp(im, etag))
        return S3E_PRECONDITION_FAILED;
    if (!im && ius) {
        int64_t t = s3_time_parse_http(ius);

        if (t >= 0 && in->mtime_ns / 1000000000 > t / 1000000000)
            return S3E_PRECONDITION_FAILED;
    }
    if (inm && (!strcmp(inm, "*") || !strcmp(inm, quoted) || !strcmp(inm, etag)))
        return q->h->method == HTTP_GET || q->h->method == HTTP_HEAD ? S3E_NOT_MODIFIED
                                                                    : S3E_PRECONDITION_FAILED;
    if (!inm && ims) {
        int64_t t = s3_time_parse_http(ims);

        if (t >= 0 && in->mtime_ns / 1000000000 <= t / 1000000000)
            return S3E_NOT_MODIFIED;
    }
    return S3E_OK;
}

int s3_parse_range(const char *r, uint64_t size, uint64_t *off, uint64_t *len)
{
    unsigned long long a, b;
    char *end;

    if (strncmp(r, "bytes=", 6) || strchr(r, ','))
        return 0;
    r += 6;
    if (*r == '-') {
        b = strtoull(r + 1, &end, 10);
        if (*end || end == r + 1)
            return 0;
        if (b == 0)
            return -1;
        if (size == 0)
            return -1;
        *len = CAIRN_MIN(b, size);
        *off = size - *len;
        return 1;
    }
    if (!isdigit((unsigned char)*r))
        return 0;
    a = strtoull(r, &end, 10);
    if (*end != '-')
        return 0;
    r = end + 1;
    if (*r == 0) {
        b = size ? size - 1 : 0;
    } else {
        b = strtoull(r, &end, 10);
        if (*end || b < a)
            return 0;
    }
    if (a >= size)
        return -1;
    if (b >= size)
        b = size - 1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

static int sink_client(void *arg, const uint8_t *data, size_t len)
{
    return http_req_write(arg, data, len);
}

void s3_get_object(struct s3_req *q)
{
    Cairn__Inode *in = NULL;
    struct s3_hdrs hs = {0};
    uint64_t bucket, ino, off = 0, len, size;
    const char *range = s3_hdr(q, "range"), *etag;
    int status = 200, rc;
    enum s3_err e;

    e = s3_bucket_open(q, false, &bucket, NULL);
    if (e) {
        s3_reply_error(q, e);
        return;
    }
    rc = fs_key_get(q->fs, bucket, q->key, q->key_len, &ino, &in, NULL);
    if (rc) {
        s3_reply_error(q, rc == CAIRN_ENOENT || rc == CAIRN_EINVAL ? S3E_NO_SUCH_KEY : s3e(rc));
        return;
    }
    /* An explicit directory reads as an empty object. */
    size = fs_is_dir(in) ? 0 : in->size;
    etag = fs_etag(in);
    e = preconditions(q, in, etag, "");
    if (e) {
        object_headers(in, etag, &hs);
        if (e == S3E_NOT_MODIFIED) {
            q->responded = true;
            s3_std_headers(q, &hs);
            http_req_reply(q->r, 304, hs.h, hs.n, NULL, 0);
        } else {
            s3_reply_error(q, e);
        }
        goto out;
    }
    len = size;
    if (range) {
        int pr = s3_parse_range(range, size, &off, &len);

        if (pr < 0) {
            s3_hdrs_addf(&hs, "Content-Range", "bytes */%" PRIu64, size);
            s3_reply_error(q, S3E_INVALID_RANGE);
            goto out;
        }
        if (pr > 0) {
            status = 206;
            s3_hdrs_addf(&hs, "Content-Range", "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
                         off + len - 1, size);
        }
    }
    object_headers(in, etag, &hs);
    s3_std_headers(q, &hs);
    q->responded = true;
    if (http_req_respond(q->r, status, hs.h, hs.n, (int64_t)len))
        goto out;
    if (q->h->method != HTTP_HEAD && len) {
        rc = fs_read(q->fs, in, off, len, sink_client, q->r);
        if (rc) {
            /* Headers are out: the only honest signal left is to cut the connection. */
            log_warn(S3_TAG, "GET %s/%s: %s after the headers; closing", q->bucket, q->key,
                     cairn_strerror(rc));
            http_req_close_after(q->r);
        }
    }
    http_req_finish(q->r);
out:
    s3_hdrs_fini(&hs);
    fs_inode_free(in);
}

/* ---- DELETE ---- */

void s3_delete_object(struct s3_req *q)
{
    uint64_t bucket;
    enum s3_err e = s3_bucket_open(q, true, &bucket, NULL);
    int rc;

    if (e) {
        s3_reply_error(q, e);
        return;
    }
    rc = fs_key_remove(q->fs, bucket, q->key, q->key_len);
    if (rc) {
        s3_reply_cairn(q, rc);
        return;
    }
    s3_reply_empty(q, 204, NULL);
}

void s3_delete_objects(struct s3_req *q, uint64_t bucket)
{
    struct s3_delete d = {0};
    struct s3_xbuf b;
    char *body = NULL;
    size_t blen = 0;
    enum s3_err e = s3_body_small(q, S3_MAX_XML_BODY, &body, &blen);

    if (!e && s3_hdr(q, "content-md5")) {
        struct s3_cksum *ck = s3_cksum_create(false, S3_CK_NONE);
        uint8_t md5[16], want[16];
        const char *cm = s3_hdr(q, "content-md5");

        if (!ck) {
            e = S3E_INTERNAL_ERROR;
        } else {
            s3_cksum_update(ck, body, blen);
            s3_cksum_final(ck, md5, NULL, NULL);
            s3_cksum_destroy(ck);
            if (s3_base64_decode(cm, strlen(cm), want, sizeof(want)) != 16)
                e = S3E_INVALID_DIGEST;
            else if (memcmp(md5, want, 16))
                e = S3E_BAD_DIGEST;
        }
    }
    if (!e)
        e = s3xml_parse_delete(body, blen, &d);
    free(body);
    if (e) {
        s3_reply_error(q, e);
        return;
    }
    s3_xbuf_start(&b, "DeleteResult");
    for (unsigned i = 0; i < d.nkeys; i++) {
        int rc = fs_key_remove(q->fs, bucket, d.keys[i], strlen(d.keys[i]));

        if (rc) {
            const struct s3_err_info *info = s3_err_info(s3e(rc));

            s3_xbuf_puts(&b, "<Error>");
            s3_xbuf_elem(&b, "Key", d.keys[i]);
            s3_xbuf_elem(&b, "Code", info->code);
            s3_xbuf_elem(&b, "Message", info->message);
            s3_xbuf_puts(&b, "</Error>");
        } else if (!d.quiet) {
            s3_xbuf_puts(&b, "<Deleted>");
            s3_xbuf_elem(&b, "Key", d.keys[i]);
            s3_xbuf_puts(&b, "</Deleted>");
        }
    }
    s3_xbuf_puts(&b, "</DeleteResult>");
    s3_reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
    s3_delete_fini(&d);
}

/* ---- copy ---- */

enum s3_err s3_copy_source(struct s3_req *q, const char *src, uint64_t *bucket, char *key,
                           size_t *klen)
{
    char dec[S3_MAX_KEY_LEN + 80], b[64];
    long n = http_pct_decode(src, strlen(src), dec, sizeof(dec));
    char *p = dec, *slash, *qm;
    int rc;

    if (n < 0)
        return S3E_INVALID_ARGUMENT;
    qm = strstr(dec, "?versionId=");
    if (qm)
        *qm = 0;
    if (*p == '/')
        p++;
    slash = strchr(p, '/');
    if (!slash || (size_t)(slash - p) >= sizeof(b) ||
        !s3_bucket_name_valid(p, (size_t)(slash - p)))
        return S3E_INVALID_ARGUMENT;
    memcpy(b, p, (size_t)(slash - p));
    b[slash - p] = 0;
    *klen = strlen(slash + 1);
    if (!fs_key_valid(slash + 1, *klen))
        return S3E_NO_SUCH_KEY;
    memcpy(key, slash + 1, *klen + 1);
    rc = fs_bucket_get(q->fs, b, bucket, NULL);
    if (rc == CAIRN_ENOENT)
        return S3E_NO_SUCH_BUCKET;
    if (rc)
        return s3e(rc);
    return S3E_OK;
}

static void copy_object(struct s3_req *q, uint64_t bucket, const char *srcspec)
{
    char skey[S3_MAX_KEY_LEN + 1], t[40];
    size_t sklen;
    uint64_t sbucket, sino;
    Cairn__Inode *src = NULL, in = CAIRN__INODE__INIT;
    Cairn__Pair pairs[64], *ptrs[64];
    struct fs_data data;
    struct s3_xbuf b;
    const char *directive = s3_hdr(q, "x-amz-metadata-directive");
    bool replace = directive && !strcasecmp(directive, "REPLACE");
    enum s3_err e = s3_copy_source(q, srcspec, &sbucket, skey, &sklen);
    char etag[FS_ETAG_MAX];
    int rc;

    if (e)
        goto fail;
    if (directive && !replace && strcasecmp(directive, "COPY")) {
        e = S3E_INVALID_ARGUMENT;
        goto fail;
    }
    rc = fs_key_get(q->fs, sbucket, skey, sklen, &sino, &src, NULL);
    if (rc) {
        e = rc == CAIRN_ENOENT ? S3E_NO_SUCH_KEY : s3e(rc);
        goto fail;
    }
    snprintf(etag, sizeof(etag), "%s", fs_etag(src));
    e = preconditions(q, src, etag, "x-amz-copy-source-");
    if (e == S3E_NOT_MODIFIED)
        e = S3E_PRECONDITION_FAILED;
    if (e)
        goto fail;
    if (sbucket == bucket && sklen == q->key_len && !memcmp(skey, q->key, sklen) && !replace) {
        s3_reply_error_msg(q, S3E_INVALID_REQUEST, "This copy request is illegal because it is "
                                                   "trying to copy an object to itself without "
                                                   "changing the object's metadata.");
        goto out;
    }
    if (replace) {
        e = s3_collect_meta(q, &in, pairs, ptrs, CAIRN_ARRAY_SIZE(pairs));
        if (e)
            goto fail;
    } else {
        in.content_type = src->content_type;
        in.headers = src->headers;
        in.n_headers = src->n_headers;
        in.user_meta = src->user_meta;
        in.n_user_meta = src->n_user_meta;
    }
    rc = fs_store_copy(q->fs, src, 0, fs_is_dir(src) ? 0 : src->size, true, &data);
    if (rc) {
        e = s3e(rc);
        goto fail;
    }
    in.etag = etag; /* same bytes, same ETag (multipart ETags too) */
    in.parts = src->parts;
    rc = fs_key_put(q->fs, bucket, q->key, q->key_len, &in, &data);
    fs_data_fini(&data);
    if (rc) {
        e = s3e(rc);
        goto fail;
    }
    s3_xbuf_start(&b, "CopyObjectResult");
    s3_time_iso8601(in.mtime_ns, t);
    s3_xbuf_elem(&b, "LastModified", t);
    s3_xbuf_printf(&b, "<ETag>&quot;%s&quot;</ETag></CopyObjectResult>", etag);
    s3_reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
    goto out;
fail:
    s3_reply_error(q, e);
out:
    fs_inode_free(src);
}

/* ---- tags ---- */

/* Object tags are not stored: an object has an empty tag set (clients copying objects ask). */
void s3_object_tagging(struct s3_req *q)
{
    Cairn__Inode *in = NULL;
    uint64_t bucket, ino;
    struct s3_xbuf b;
    enum s3_err e = s3_bucket_open(q, q->h->method != HTTP_GET, &bucket, NULL);
    int rc;

    if (e) {
        s3_reply_error(q, e);
        return;
    }
    rc = fs_key_get(q->fs, bucket, q->key, q->key_len, &ino, &in, NULL);
    if (rc) {
        s3_reply_error(q, rc == CAIRN_ENOENT ? S3E_NO_SUCH_KEY : s3e(rc));
        return;
    }
    fs_inode_free(in);
    if (q->h->method == HTTP_DELETE) {
        s3_reply_empty(q, 204, NULL);
        return;
    }
    s3_xbuf_start(&b, "Tagging");
    s3_xbuf_puts(&b, "<TagSet></TagSet></Tagging>");
    s3_reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
}
