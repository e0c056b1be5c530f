/*
 * body.c - request bodies: plain or aws-chunked (every chunk signature and the trailer checked
 * by the decoder in sigv4.c), read in pieces, and object bodies streamed into the cluster with
 * the digests the request asks to verify (see req.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/s3/req.h"
#include "common/cairn.h"
#include "common/log.h"

#define RAW_CAP (256u << 10)

enum s3_err s3_body_open(struct s3_req *q)
{
    const char *dl = s3_hdr(q, "x-amz-decoded-content-length");
    enum sigv4_payload p = q->auth.anonymous ? SIGV4_PAYLOAD_UNSIGNED : q->auth.payload;

    q->body_len = q->h->content_length;
    if (p == SIGV4_PAYLOAD_STREAMING || p == SIGV4_PAYLOAD_STREAMING_TRAILER ||
        p == SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER) {
        const char *tr = s3_hdr(q, "x-amz-trailer");
        char *end;
        long long v;

        if (!dl)
            return S3E_MISSING_CONTENT_LENGTH;
        v = strtoll(dl, &end, 10);
        if (*end || v < 0)
            return S3E_INVALID_ARGUMENT;
        q->body_len = v;
        q->chunked = sigv4_chunked_create(&q->auth, tr ? s3_cksum_alg_from_header(tr) : S3_CK_NONE,
                                          v);
        q->raw = malloc(RAW_CAP);
        if (!q->chunked || !q->raw)
            return S3E_INTERNAL_ERROR;
    } else if (q->body_len < 0 && q->h->chunked) {
        if (!dl)
            return S3E_MISSING_CONTENT_LENGTH;
        q->body_len = strtoll(dl, NULL, 10);
    }
    return S3E_OK;
}

/* Read up to len decoded body bytes.  Returns bytes, 0 at the end, or a negative s3_err. */
static ssize_t body_read(struct s3_req *q, uint8_t *buf, size_t len)
{
    if (!q->chunked) {
        ssize_t n = http_req_read(q->r, buf, len);

        return n < 0 ? -(ssize_t)S3E_INCOMPLETE_BODY : n;
    }
    for (;;) {
        const char *data;
        size_t dlen, used;
        enum sigv4_chunk_event ev;

        if (q->raw_off == q->raw_len && !q->raw_eof) {
            ssize_t n = http_req_read(q->r, q->raw, RAW_CAP);

            if (n < 0)
                return -(ssize_t)S3E_INCOMPLETE_BODY;
            q->raw_off = 0;
            q->raw_len = (size_t)n;
            if (n == 0)
                q->raw_eof = true;
        }
        ev = sigv4_chunked_feed(q->chunked, q->raw + q->raw_off,
                                CAIRN_MIN(q->raw_len - q->raw_off, len), &used, &data, &dlen);
        q->raw_off += used;
        switch (ev) {
        case SIGV4_CH_DATA:
            memcpy(buf, data, dlen); /* decoded chunk data is a span of raw: one copy */
            return (ssize_t)dlen;
        case SIGV4_CH_DONE:
            return 0;
        case SIGV4_CH_ERROR:
            return -(ssize_t)sigv4_chunked_error(q->chunked);
        case SIGV4_CH_NEED_MORE:
            if (q->raw_eof)
                return -(ssize_t)S3E_INCOMPLETE_BODY;
            break;
        }
    }
}

enum s3_err s3_body_read_full(struct s3_req *q, uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = body_read(q, buf + got, len - got);

        if (n < 0)
            return (enum s3_err)(-n);
        if (n == 0)
            return S3E_INCOMPLETE_BODY;
        got += (size_t)n;
    }
    return S3E_OK;
}

enum s3_err s3_body_close(struct s3_req *q)
{
    uint8_t b[16];
    ssize_t n = body_read(q, b, sizeof(b));

    if (n < 0)
        return (enum s3_err)(-n);
    return n == 0 ? S3E_OK : S3E_INCOMPLETE_BODY;
}

void s3_body_fini(struct s3_req *q)
{
    sigv4_chunked_destroy(q->chunked);
    free(q->raw);
}

enum s3_err s3_body_small(struct s3_req *q, size_t max, char **out, size_t *len)
{
    enum s3_err e = s3_body_open(q);
    char *body;

    *out = NULL;
    if (e)
        return e;
    if (q->body_len < 0)
        return S3E_MISSING_CONTENT_LENGTH;
    if ((uint64_t)q->body_len > max)
        return S3E_MALFORMED_XML;
    body = malloc((size_t)q->body_len + 1);
    if (!body)
        return S3E_INTERNAL_ERROR;
    e = s3_body_read_full(q, (uint8_t *)body, (size_t)q->body_len);
    if (!e)
        e = s3_body_close(q);
    if (e) {
        free(body);
        return e;
    }
    body[q->body_len] = 0;
    *out = body;
    *len = (size_t)q->body_len;
    return S3E_OK;
}

/* ---- object bodies ---- */

static bool is_b64_digest(const char *s, size_t want_bytes)
{
    uint8_t out[64];

    return s && s3_base64_decode(s, strlen(s), out, sizeof(out)) == (long)want_bytes;
}

struct body_src {
    struct s3_req *q;
    struct s3_cksum *ck;
};

/* fs_source: the next body bytes, through the request's checksums.  A body error is kept in
 * q->body_err (the file system only sees that the source failed). */
static int body_fill(void *arg, uint8_t *buf, size_t len)
{
    struct body_src *s = arg;
    enum s3_err e = s3_body_read_full(s->q, buf, len);

    if (e) {
        s->q->body_err = e;
        return CAIRN_ECANCELED;
    }
    s3_cksum_update(s->ck, buf, len);
    return 0;
}

enum s3_err s3_upload_body(struct s3_req *q, uint64_t len, bool allow_inline,
                           struct s3_upload *res)
{
    const char *cmd5 = s3_hdr(q, "content-md5");
    enum s3_cksum_alg alg = S3_CK_NONE;
    const char *alg_value = NULL;
    bool want_sha = !q->auth.anonymous && q->auth.payload == SIGV4_PAYLOAD_HASH;
    struct body_src src = {.q = q};
    uint8_t sha[32];
    char algb64[64];
    enum s3_err e = S3E_OK;
    int rc;

    memset(res, 0, sizeof(*res));
    if (cmd5 && !is_b64_digest(cmd5, 16))
        return S3E_INVALID_DIGEST;
    for (unsigned i = 0; i < q->h->nheaders; i++) {
        enum s3_cksum_alg a = s3_cksum_alg_from_header(q->h->headers[i].name);

        if (a != S3_CK_NONE) {
            alg = a;
            alg_value = q->h->headers[i].value;
        }
    }
    if (len > S3_MAX_PUT_SIZE)
        return S3E_ENTITY_TOO_LARGE;
    src.ck = s3_cksum_create_nomd5(want_sha, alg);
    if (!src.ck)
        return S3E_INTERNAL_ERROR;
    q->body_err = S3E_OK;
    rc = fs_store(q->fs, len, allow_inline, body_fill, &src, &res->data);
    if (rc) {
        e = q->body_err ? q->body_err : s3e(rc);
        goto out;
    }
    e = s3_body_close(q);
    if (e)
        goto fail;
    s3_cksum_final(src.ck, NULL, sha, algb64);
    if (cmd5) {
        uint8_t want[16];

        s3_base64_decode(cmd5, strlen(cmd5), want, sizeof(want));
        if (memcmp(want, res->data.md5, 16)) {
            e = S3E_BAD_DIGEST;
            goto fail;
        }
    }
    if (want_sha) {
        char shahex[65];

        s3_hex(sha, 32, shahex);
        if (strcmp(shahex, q->auth.payload_sha256)) {
            e = S3E_XAMZ_CONTENT_SHA256_MISMATCH;
            goto fail;
        }
    }
    if (alg != S3_CK_NONE) {
        if (strcmp(alg_value, algb64)) {
            e = S3E_BAD_DIGEST;
            goto fail;
        }
        snprintf(res->cksum_name, sizeof(res->cksum_name), "%s", s3_cksum_header_name(alg));
        snprintf(res->cksum_value, sizeof(res->cksum_value), "%s", algb64);
    }
    goto out;
fail:
    fs_data_discard(q->fs, &res->data);
out:
    s3_cksum_destroy(src.ck);
    return e;
}
