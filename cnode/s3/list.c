/*
 * list.c - ListObjects (V1 and V2): the query's parameters, the XML around the listing the
 * file system makes (fs_list_keys: which keys exist, their order, common prefixes), and the
 * continuation markers and tokens (see req.h).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/s3/req.h"
#include "common/cairn.h"
#include "common/log.h"

struct listing {
    bool url; /* encoding-type=url */
    struct s3_xbuf contents, prefixes;
};

static void put_key_text(bool url, struct s3_xbuf *b, const char *k, size_t kl)
{
    if (!url) {
        s3_xbuf_escape(b, k, kl);
        return;
    }
    for (size_t i = 0; i < kl; i++) {
        unsigned char c = (unsigned char)k[i];

        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/')
            s3_xbuf_put(b, (const char *)&k[i], 1);
        else
            s3_xbuf_printf(b, "%%%02X", c);
    }
}

static void on_key(void *arg, const char *key, size_t len, uint64_t size, const char *etag,
                   int64_t mtime_ns)
{
    struct listing *l = arg;
    char t[40];

    s3_time_iso8601(mtime_ns, t);
    s3_xbuf_puts(&l->contents, "<Contents><Key>");
    put_key_text(l->url, &l->contents, key, len);
    s3_xbuf_puts(&l->contents, "</Key>");
    s3_xbuf_elem(&l->contents, "LastModified", t);
    s3_xbuf_printf(&l->contents,
                   "<ETag>&quot;%s&quot;</ETag><Size>%" PRIu64 "</Size>"
                   "<StorageClass>STANDARD</StorageClass></Contents>",
                   etag, size);
}

static void on_prefix(void *arg, const char *prefix, size_t len)
{
    struct listing *l = arg;

    s3_xbuf_puts(&l->prefixes, "<CommonPrefixes><Prefix>");
    put_key_text(l->url, &l->prefixes, prefix, len);
    s3_xbuf_puts(&l->prefixes, "</Prefix></CommonPrefixes>");
}

void s3_list_objects(struct s3_req *q, bool v2)
{
    const char *prefix = s3_param(q, "prefix"), *delim = s3_param(q, "delimiter");
    const char *mk = s3_param(q, "max-keys"), *enc = s3_param(q, "encoding-type");
    const char *token = v2 ? s3_param(q, "continuation-token") : NULL;
    const char *after = v2 ? s3_param(q, "start-after") : s3_param(q, "marker");
    struct listing l = {.url = enc && !strcmp(enc, "url")};
    struct fs_list_query fq = {0};
    struct fs_list_result *res = calloc(1, sizeof(*res));
    uint8_t *raw = malloc(S3_MAX_KEY_LEN + 2);
    char *tok = NULL;
    uint64_t bucket;
    struct s3_xbuf b;
    enum s3_err e;
    int rc;

    s3_xbuf_init(&l.contents);
    s3_xbuf_init(&l.prefixes);
    if (!res || !raw) {
        e = S3E_INTERNAL_ERROR;
        goto fail;
    }
    e = s3_bucket_open(q, false, &bucket, NULL);
    if (e)
        goto fail;
    fq.prefix = prefix ? prefix : "";
    fq.plen = strlen(fq.prefix);
    fq.delim = delim ? delim : "";
    fq.dlen = strlen(fq.delim);
    fq.max = S3_LIST_MAX_KEYS;
    fq.key = on_key;
    fq.prefix_fn = on_prefix;
    fq.arg = &l;
    if (enc && !l.url) {
        e = S3E_INVALID_ARGUMENT;
        goto fail;
    }
    if (mk) {
        char *end;
        long v = strtol(mk, &end, 10);

        if (*end || v < 0) {
            e = S3E_INVALID_ARGUMENT;
            goto fail;
        }
        fq.max = (unsigned)CAIRN_MIN((unsigned long)v, S3_LIST_MAX_KEYS);
    }
    if (fq.plen > S3_MAX_KEY_LEN) {
        e = S3E_KEY_TOO_LONG;
        goto fail;
    }
    if (token) {
        long n = s3_base64_decode(token, strlen(token), raw, S3_MAX_KEY_LEN + 2);

        if (n < 0) {
            s3_reply_error_msg(q, S3E_INVALID_ARGUMENT, "The continuation token provided is "
                                                        "incorrect");
            goto out;
        }
        fq.after = (const char *)raw;
        fq.alen = (size_t)n;
    } else if (after) {
        fq.after = after;
        fq.alen = CAIRN_MIN(strlen(after), (size_t)S3_MAX_KEY_LEN);
    }
    rc = fs_list_keys(q->fs, bucket, &fq, res);
    if (rc) {
        e = s3e(rc);
        goto fail;
    }
    s3_xbuf_start(&b, "ListBucketResult");
    s3_xbuf_elem(&b, "Name", q->bucket);
    s3_xbuf_puts(&b, "<Prefix>");
    put_key_text(l.url, &b, fq.prefix, fq.plen);
    s3_xbuf_puts(&b, "</Prefix>");
    if (delim) {
        s3_xbuf_puts(&b, "<Delimiter>");
        put_key_text(l.url, &b, fq.delim, fq.dlen);
        s3_xbuf_puts(&b, "</Delimiter>");
    }
    s3_xbuf_printf(&b, "<MaxKeys>%s</MaxKeys>", mk ? mk : "1000");
    if (l.url)
        s3_xbuf_puts(&b, "<EncodingType>url</EncodingType>");
    s3_xbuf_printf(&b, "<IsTruncated>%s</IsTruncated>", res->truncated ? "true" : "false");
    if (v2) {
        s3_xbuf_printf(&b, "<KeyCount>%u</KeyCount>", res->count);
        if (token)
            s3_xbuf_elem(&b, "ContinuationToken", token);
        if (after) {
            s3_xbuf_puts(&b, "<StartAfter>");
            put_key_text(l.url, &b, after, strlen(after));
            s3_xbuf_puts(&b, "</StartAfter>");
        }
        if (res->truncated) {
            tok = malloc(2 * res->last_len + 8);
            if (tok && s3_base64_encode((const uint8_t *)res->last, res->last_len, tok,
                                        2 * res->last_len + 8) >= 0)
                s3_xbuf_elem(&b, "NextContinuationToken", tok);
        }
    } else {
        s3_xbuf_puts(&b, "<Marker>");
        if (after)
            put_key_text(l.url, &b, after, strlen(after));
        s3_xbuf_puts(&b, "</Marker>");
        if (res->truncated && delim) {
            size_t ml = res->last_len;

            if (ml && (unsigned char)res->last[ml - 1] == 0xff)
                ml--; /* a common prefix: clients pass it back as the marker */
            s3_xbuf_puts(&b, "<NextMarker>");
            put_key_text(l.url, &b, res->last, ml);
            s3_xbuf_puts(&b, "</NextMarker>");
        }
    }
    if (l.contents.len)
        s3_xbuf_put(&b, l.contents.data, l.contents.len);
    if (l.prefixes.len)
        s3_xbuf_put(&b, l.prefixes.data, l.prefixes.len);
    s3_xbuf_puts(&b, "</ListBucketResult>");
    if (l.contents.oom || l.prefixes.oom)
        b.oom = true;
    s3_reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
    goto out;
fail:
    s3_reply_error(q, e);
out:
    s3_xbuf_fini(&l.contents);
    s3_xbuf_fini(&l.prefixes);
    free(tok);
    free(raw);
    free(res);
}
