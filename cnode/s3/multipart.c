/*
 * multipart.c - multipart uploads: create, upload a part (or copy one), complete, abort, list
 * parts and uploads (see req.h).  The file system keeps the upload and its parts and makes the
 * object on completion (fs_upload_*); this file checks S3's rules (part numbers, part ETags in
 * the completion, the minimum part size) and speaks the XML.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/s3/req.h"
#include "common/cairn.h"
#include "common/log.h"

/* The upload named by ?uploadId, checked against the request's bucket and key. */
static enum s3_err load_upload(struct s3_req *q, uint64_t bucket, Cairn__Upload **u,
                               uint64_t *ver)
{
    const char *id = s3_param(q, "uploadId");
    int rc;

    if (!id || strlen(id) != 32)
        return S3E_NO_SUCH_UPLOAD;
    rc = fs_upload_get(q->fs, id, u, ver);
    if (rc == CAIRN_ENOENT)
        return S3E_NO_SUCH_UPLOAD;
    if (rc)
        return s3e(rc);
    if ((*u)->bucket != bucket || strcmp((*u)->key, q->key)) {
        cairn__upload__free_unpacked(*u, NULL);
        *u = NULL;
        return S3E_NO_SUCH_UPLOAD;
    }
    return S3E_OK;
}

void s3_create_upload(struct s3_req *q, uint64_t bucket)
{
    Cairn__Inode meta = CAIRN__INODE__INIT;
    Cairn__Pair pairs[64], *ptrs[64];
    char id[33];
    struct s3_xbuf b;
    enum s3_err e;
    int rc;

    if (q->key[q->key_len - 1] == '/') {
        s3_reply_error(q, S3E_INVALID_ARGUMENT);
        return;
    }
    e = s3_collect_meta(q, &meta, pairs, ptrs, CAIRN_ARRAY_SIZE(pairs));
    if (e) {
        s3_reply_error(q, e);
        return;
    }
    rc = fs_upload_create(q->fs, bucket, q->bucket, q->key, &meta,
                          q->user ? q->user->access_key : "", cairn_wall_ns(), id);
    if (rc) {
        s3_reply_cairn(q, rc);
        return;
    }
    s3_xbuf_start(&b, "InitiateMultipartUploadResult");
    s3_xbuf_elem(&b, "Bucket", q->bucket);
    s3_xbuf_elem(&b, "Key", q->key);
    s3_xbuf_elem(&b, "UploadId", id);
    s3_xbuf_puts(&b, "</InitiateMultipartUploadResult>");
    s3_reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
}

static bool part_number(struct s3_req *q, uint32_t *n)
{
    const char *pn = s3_param(q, "partNumber");
    char *end;
    long v;

    if (!pn)
        return false;
    v = strtol(pn, &end, 10);
    if (*end || v < 1 || v > (long)S3_MAX_PARTS)
        return false;
    *n = (uint32_t)v;
    return true;
}

/* UploadPartCopy: bytes of another object (x-amz-copy-source-range) stored as the part. */
static enum s3_err copy_part(struct s3_req *q, const char *src, struct fs_data *d)
{
    char skey[S3_MAX_KEY_LEN + 1];
    size_t sklen;
    uint64_t sbucket, sino, off = 0, len;
    Cairn__Inode *sin = NULL;
    const char *range = s3_hdr(q, "x-amz-copy-source-range");
    enum s3_err e = s3_copy_source(q, src, &sbucket, skey, &sklen);
    int rc;

    if (e)
        return e;
    rc = fs_key_get(q->fs, sbucket, skey, sklen, &sino, &sin, NULL);
    if (rc)
        return rc == CAIRN_ENOENT ? S3E_NO_SUCH_KEY : s3e(rc);
    len = sin->size;
    if (range && s3_parse_range(range, sin->size, &off, &len) != 1) {
        fs_inode_free(sin);
        return S3E_INVALID_RANGE;
    }
    rc = fs_store_copy(q->fs, sin, off, len, false, d);
    fs_inode_free(sin);
    return rc ? s3e(rc) : S3E_OK;
}

void s3_upload_part(struct s3_req *q, uint64_t bucket)
{
    Cairn__Upload *u = NULL;
    struct s3_upload res;
    const char *src = s3_hdr(q, "x-amz-copy-source");
    int64_t mtime = cairn_wall_ns();
    uint64_t ver;
    uint32_t num;
    enum s3_err e;
    int rc;

    if (!part_number(q, &num)) {
        s3_reply_error_msg(q, S3E_INVALID_ARGUMENT, "Part number must be an integer between 1 "
                                                    "and 10000, inclusive");
        return;
    }
    e = load_upload(q, bucket, &u, &ver);
    if (e)
        goto fail;
    memset(&res, 0, sizeof(res));
    if (src) {
        e = copy_part(q, src, &res.data);
    } else {
        e = s3_body_open(q);
        if (!e && q->body_len < 0)
            e = S3E_MISSING_CONTENT_LENGTH;
        if (!e)
            e = s3_upload_body(q, (uint64_t)q->body_len, false, &res);
    }
    if (e)
        goto fail;
    rc = fs_upload_part(q->fs, s3_param(q, "uploadId"), num, &res.data, mtime);
    fs_data_fini(&res.data);
    if (rc) {
        e = s3e(rc);
        goto fail;
    }
    if (src) {
        struct s3_xbuf b;
        char t[40];

        s3_time_iso8601(mtime, t);
        s3_xbuf_start(&b, "CopyPartResult");
        s3_xbuf_elem(&b, "LastModified", t);
        s3_xbuf_printf(&b, "<ETag>&quot;%s&quot;</ETag></CopyPartResult>", res.data.etag);
        s3_reply_xml(q, 200, &b);
        s3_xbuf_fini(&b);
    } else {
        struct s3_hdrs hs = {0};

        s3_hdrs_addf(&hs, "ETag", "\"%s\"", res.data.etag);
        s3_reply_empty(q, 200, &hs);
        s3_hdrs_fini(&hs);
    }
    cairn__upload__free_unpacked(u, NULL);
    return;
fail:
    if (u)
        cairn__upload__free_unpacked(u, NULL);
    s3_reply_error(q, e);
}

void s3_complete_upload(struct s3_req *q, uint64_t bucket)
{
    Cairn__Upload *u = NULL;
    Cairn__Part **parts = NULL;
    struct s3_complete c = {0};
    char *body = NULL, etag[FS_ETAG_MAX];
    const char *id = s3_param(q, "uploadId");
    size_t blen = 0;
    uint64_t ver;
    enum s3_err e;
    int rc;

    e = load_upload(q, bucket, &u, &ver);
    if (e)
        goto fail;
    e = s3_body_small(q, S3_MAX_XML_BODY, &body, &blen);
    if (e == S3E_MISSING_CONTENT_LENGTH)
        e = S3E_MALFORMED_XML;
    if (!e)
        e = s3xml_parse_complete(body, blen, &c);
    if (e)
        goto fail;
    parts = calloc(c.nparts ? c.nparts : 1, sizeof(*parts));
    if (!parts) {
        e = S3E_INTERNAL_ERROR;
        goto fail;
    }
    for (unsigned i = 0; i < c.nparts; i++) {
        rc = fs_upload_part_get(q->fs, id, c.parts[i].number, &parts[i]);
        if (rc == CAIRN_ENOENT || (!rc && strcmp(parts[i]->etag, c.parts[i].etag))) {
            e = S3E_INVALID_PART;
            goto fail;
        }
        if (rc) {
            e = s3e(rc);
            goto fail;
        }
        if (i + 1 < c.nparts && parts[i]->size < S3_MIN_PART_SIZE) {
            e = S3E_ENTITY_TOO_SMALL;
            goto fail;
        }
    }
    rc = fs_upload_complete(q->fs, bucket, q->key, q->key_len, id, u, ver, parts, c.nparts, etag);
    if (rc) {
        e = rc == CAIRN_ENOENT ? S3E_NO_SUCH_UPLOAD : s3e(rc);
        goto fail;
    }
    {
        struct s3_xbuf b;

        s3_xbuf_start(&b, "CompleteMultipartUploadResult");
        s3_xbuf_printf(&b, "<Location>/%s/", q->bucket);
        s3_xbuf_escape(&b, q->key, q->key_len);
        s3_xbuf_puts(&b, "</Location>");
        s3_xbuf_elem(&b, "Bucket", q->bucket);
        s3_xbuf_elem(&b, "Key", q->key);
        s3_xbuf_printf(&b, "<ETag>&quot;%s&quot;</ETag></CompleteMultipartUploadResult>", etag);
        s3_reply_xml(q, 200, &b);
        s3_xbuf_fini(&b);
    }
    goto out;
fail:
    s3_reply_error(q, e);
out:
    for (unsigned i = 0; parts && i < c.nparts; i++)
        if (parts[i])
            cairn__part__free_unpacked(parts[i], NULL);
    free(parts);
    free(body);
    s3_complete_fini(&c);
    if (u)
        cairn__upload__free_unpacked(u, NULL);
}

void s3_abort_upload(struct s3_req *q, uint64_t bucket)
{
    Cairn__Upload *u = NULL;
    uint64_t ver;
    enum s3_err e = load_upload(q, bucket, &u, &ver);
    int rc;

    if (e) {
        s3_reply_error(q, e);
        return;
    }
    if (u->completing_ino) {
        /* Completion is under way (or crashed half way): finishing it is the only safe end. */
        cairn__upload__free_unpacked(u, NULL);
        s3_reply_error_msg(q, S3E_CONFLICT, "The upload is being completed");
        return;
    }
    rc = fs_upload_abort(q->fs, s3_param(q, "uploadId"), u, ver);
    cairn__upload__free_unpacked(u, NULL);
    if (rc) {
        s3_reply_error(q, rc == CAIRN_ECONFLICT ? S3E_NO_SUCH_UPLOAD : s3e(rc));
        return;
    }
    s3_reply_empty(q, 204, NULL);
}

struct part_list {
    struct s3_xbuf *b;
    unsigned n, max;
    uint32_t last;
    bool truncated;
};

static int list_part(void *arg, const Cairn__Part *p)
{
    struct part_list *pl = arg;
    char t[40];

    if (pl->n == pl->max) {
        pl->truncated = true;
        return 1; /* stop: one more exists */
    }
    s3_time_iso8601(p->mtime_ns, t);
    s3_xbuf_printf(pl->b, "<Part><PartNumber>%u</PartNumber>", p->number);
    s3_xbuf_elem(pl->b, "LastModified", t);
    s3_xbuf_printf(pl->b, "<ETag>&quot;%s&quot;</ETag><Size>%" PRIu64 "</Size></Part>", p->etag,
                   p->size);
    pl->last = p->number;
    pl->n++;
    return 0;
}

void s3_list_parts(struct s3_req *q, uint64_t bucket)
{
    Cairn__Upload *u = NULL;
    struct s3_xbuf b;
    const char *mp = s3_param(q, "max-parts"), *marker = s3_param(q, "part-number-marker");
    struct part_list pl = {.b = &b};
    uint32_t from = marker ? (uint32_t)strtoul(marker, NULL, 10) + 1 : 1;
    uint64_t ver;
    enum s3_err e = load_upload(q, bucket, &u, &ver);
    int rc;

    pl.max = mp ? (unsigned)CAIRN_MIN(strtoul(mp, NULL, 10), 1000ul) : 1000;
    if (e) {
        s3_reply_error(q, e);
        return;
    }
    s3_xbuf_start(&b, "ListPartsResult");
    s3_xbuf_elem(&b, "Bucket", q->bucket);
    s3_xbuf_elem(&b, "Key", q->key);
    s3_xbuf_elem(&b, "UploadId", s3_param(q, "uploadId"));
    s3_xbuf_printf(&b, "<PartNumberMarker>%u</PartNumberMarker><MaxParts>%u</MaxParts>",
                   from - 1, pl.max);
    s3_xbuf_puts(&b, "<StorageClass>STANDARD</StorageClass>");
    rc = fs_upload_parts_each(q->fs, s3_param(q, "uploadId"), from, list_part, &pl);
    cairn__upload__free_unpacked(u, NULL);
    if (rc < 0) {
        s3_xbuf_fini(&b);
        s3_reply_cairn(q, rc);
        return;
    }
    s3_xbuf_printf(&b, "<NextPartNumberMarker>%u</NextPartNumberMarker>"
                       "<IsTruncated>%s</IsTruncated></ListPartsResult>",
                   pl.last, pl.truncated ? "true" : "false");
    s3_reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
}

struct upload_list {
    struct s3_req *q;
    struct s3_xbuf *b;
    const char *prefix;
    size_t plen;
    unsigned n, max;
    bool truncated;
    char nk[S3_MAX_KEY_LEN + 1], nu[33];
};

static int list_upload(void *arg, const char *key, size_t klen, const char *id)
{
    struct upload_list *ul = arg;
    Cairn__Upload *u;
    char t[40];

    if (ul->plen && (klen < ul->plen || memcmp(key, ul->prefix, ul->plen)))
        return 0;
    if (ul->n == ul->max) {
        ul->truncated = true;
        return 1;
    }
    if (fs_upload_get(ul->q->fs, id, &u, NULL))
        return 0;
    memcpy(ul->nk, key, klen);
    ul->nk[klen] = 0;
    memcpy(ul->nu, id, 33);
    s3_time_iso8601(u->initiated_ns, t);
    s3_xbuf_puts(ul->b, "<Upload>");
    s3_xbuf_elem(ul->b, "Key", ul->nk);
    s3_xbuf_elem(ul->b, "UploadId", ul->nu);
    s3_xbuf_elem(ul->b, "Initiated", t);
    s3_xbuf_puts(ul->b, "<StorageClass>STANDARD</StorageClass></Upload>");
    cairn__upload__free_unpacked(u, NULL);
    ul->n++;
    return 0;
}

void s3_list_uploads(struct s3_req *q, uint64_t bucket)
{
    const char *prefix = s3_param(q, "prefix"), *km = s3_param(q, "key-marker");
    const char *um = s3_param(q, "upload-id-marker"), *mu = s3_param(q, "max-uploads");
    struct upload_list *ul = calloc(1, sizeof(*ul));
    struct s3_xbuf b;
    int rc;

    if (!ul) {
        s3_reply_error(q, S3E_INTERNAL_ERROR);
        return;
    }
    if (km && strlen(km) > S3_MAX_KEY_LEN) {
        free(ul);
        s3_reply_error(q, S3E_INVALID_ARGUMENT);
        return;
    }
    ul->q = q;
    ul->b = &b;
    ul->prefix = prefix;
    ul->plen = prefix ? strlen(prefix) : 0;
    ul->max = mu ? (unsigned)CAIRN_MIN(strtoul(mu, NULL, 10), 1000ul) : 1000;
    s3_xbuf_start(&b, "ListMultipartUploadsResult");
    s3_xbuf_elem(&b, "Bucket", q->bucket);
    s3_xbuf_elem(&b, "KeyMarker", km ? km : "");
    s3_xbuf_elem(&b, "UploadIdMarker", um ? um : "");
    s3_xbuf_elem(&b, "Prefix", prefix ? prefix : "");
    s3_xbuf_printf(&b, "<MaxUploads>%u</MaxUploads>", ul->max);
    rc = fs_upload_each(q->fs, bucket, km, um, list_upload, ul);
    if (rc < 0) {
        s3_xbuf_fini(&b);
        free(ul);
        s3_reply_cairn(q, rc);
        return;
    }
    if (ul->truncated) {
        s3_xbuf_elem(&b, "NextKeyMarker", ul->nk);
        s3_xbuf_elem(&b, "NextUploadIdMarker", ul->nu);
    }
    s3_xbuf_printf(&b, "<IsTruncated>%s</IsTruncated></ListMultipartUploadsResult>",
                   ul->truncated ? "true" : "false");
    s3_reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
    free(ul);
}
