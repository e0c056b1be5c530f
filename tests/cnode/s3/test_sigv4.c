/*
 * SigV4 tests (one file, about 1,400 lines: every case shares the request builders at its
 * top): the signed examples of the S3 documentation (GET object with a Range, PUT
 * object, GET bucket lifecycle, list objects, the presigned URL, the chunked upload and the
 * chunked upload with a CRC32C trailer), what parse refuses (malformed Authorization headers,
 * clock skew, presigned lifetimes), what verify refuses (wrong secret, tampering), the
 * aws-chunked decoder against bad signatures, bad framing, length and checksum mismatches
 * (every body is also fed one byte at a time), and the checksums and base64 on known values.
 *
 * Requests are built by hand (struct http_request with a header array), so these tests do not
 * depend on the HTTP parser.  Chunk and trailer signatures for the bodies the documentation
 * has no example of are computed here with OpenSSL directly, independently of sigv4.c.
 */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/s3/sigv4.h"

#define DOC_KEY "AKIAIOSFODNN7EXAMPLE"
#define DOC_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DOC_DATE "20130524T000000Z"
#define DOC_TIME ((time_t)1369353600) /* 2013-05-24T00:00:00Z */
#define DOC_SCOPE "20130524/us-east-1/s3/aws4_request"
#define DOC_CRED "Credential=" DOC_KEY "/" DOC_SCOPE
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- hand-built requests ---- */

struct req {
    struct http_request r;
    struct http_header h[32];
};

/* hdrs: name, value, name, value, ..., NULL.  Strings are borrowed (literals or the caller's). */
static void mkreq(struct req *q, const char *method, const char *path, const char *query,
                  const char *const *hdrs)
{
    memset(q, 0, sizeof(*q));
    q->r.method_name = method;
    q->r.method = strcmp(method, "PUT") == 0 ? HTTP_PUT : HTTP_GET;
    q->r.path = path;
    q->r.path_len = strlen(path);
    q->r.query = query;
    q->r.query_len = strlen(query);
    q->r.content_length = -1;
    for (unsigned i = 0; hdrs[2 * i]; i++) {
        cr_assert_lt(i, 32u);
        q->h[i].name = hdrs[2 * i];
        q->h[i].name_len = strlen(hdrs[2 * i]);
        q->h[i].value = hdrs[2 * i + 1];
        q->h[i].value_len = strlen(hdrs[2 * i + 1]);
        q->r.nheaders = i + 1;
    }
    q->r.headers = q->h;
}

static struct http_header *hdr(struct req *q, const char *name)
{
    for (unsigned i = 0; i < q->r.nheaders; i++)
        if (strcmp(q->h[i].name, name) == 0)
            return &q->h[i];
    cr_assert_fail("no header %s", name);
    return NULL;
}

static void set_hdr(struct req *q, const char *name, const char *value)
{
    struct http_header *h = hdr(q, name);

    h->value = value;
    h->value_len = strlen(value);
}

/* Parse at t and verify with secret; both results. */
static enum s3_err check(struct req *q, time_t t, const char *secret, struct sigv4_auth *a)
{
    enum s3_err e = sigv4_parse(&q->r, t, a);

    if (e != S3E_OK)
        return e;
    return sigv4_verify(&q->r, a, secret);
}

/* ---- independent signing (OpenSSL only) ---- */

static void hex(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
}

static void t_hmac(const void *key, size_t klen, const char *msg, uint8_t out[32])
{
    unsigned int n = 32;

    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n);
}

static void t_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t md[32];
    unsigned int n;

    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    hex(md, 32, out);
}

static void t_signing_key(uint8_t key[32])
{
    uint8_t k1[32], k2[32], k3[32];

    t_hmac("AWS4" DOC_SECRET, strlen("AWS4" DOC_SECRET), "20130524", k1);
    t_hmac(k1, 32, "us-east-1", k2);
    t_hmac(k2, 32, "s3", k3);
    t_hmac(k3, 32, "aws4_request", key);
}

/* prev: the previous signature; hash: the hex SHA-256 of the chunk or the trailer text. */
static void t_sign(const char *algo, const char *prev, const char *hash, bool chunk, char out[65])
{
    char sts[512];
    uint8_t key[32], sig[32];

    snprintf(sts, sizeof(sts), "%s\n" DOC_DATE "\n" DOC_SCOPE "\n%s\n%s%s", algo, prev,
             chunk ? EMPTY_SHA256 "\n" : "", hash);
    t_signing_key(key);
    t_hmac(key, 32, sts, sig);
    hex(sig, 32, out);
}

/* ---- body builder and decoder driver ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static void bput(struct buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void bputs(struct buf *b, const char *s)
{
    bput(b, s, strlen(s));
}

/* A signed aws-chunked body of chunks of sizes[] bytes of 'a', chained from seed; the final
 * signature in last_sig (for a trailer signature).  bad_chunk >= 0 spoils that chunk's
 * signature. */
static void build_signed(struct buf *b, const char *seed, const size_t *sizes, size_t n,
                         int bad_chunk, char last_sig[65])
{
    char prev[65], sig[65], hash[65], line[128];

    strcpy(prev, seed);
    for (size_t i = 0; i < n; i++) {
        char *data = malloc(sizes[i] + 1);

        memset(data, 'a', sizes[i]);
        t_sha256_hex(data, sizes[i], hash);
        t_sign("AWS4-HMAC-SHA256-PAYLOAD", prev, hash, true, sig);
        strcpy(prev, sig);
        if ((int)i == bad_chunk)
            sig[10] = sig[10] == '0' ? '1' : '0';
        snprintf(line, sizeof(line), "%zx;chunk-signature=%s\r\n", sizes[i], sig);
        bputs(b, line);
        bput(b, data, sizes[i]);
        if (sizes[i])
            bputs(b, "\r\n");
        free(data);
    }
    strcpy(last_sig, prev);
}

#define RAN_OUT (-1)

/* Feed body in pieces of at most step bytes; the payload goes to out (if not NULL).  Returns
 * S3E_OK at SIGV4_CH_DONE, the decoder's error, or RAN_OUT. */
static int run(struct sigv4_chunked *d, const char *body, size_t len, size_t step, struct buf *out)
{
    size_t off = 0;

    while (off < len) {
        size_t piece = len - off < step ? len - off : step, used = 0;

        while (used < piece) {
            const char *data;
            size_t dlen, consumed;
            enum sigv4_chunk_event ev =
                sigv4_chunked_feed(d, body + off + used, piece - used, &consumed, &data, &dlen);

            cr_assert_leq(consumed, piece - used);
            used += consumed;
            if (ev == SIGV4_CH_ERROR) {
                cr_assert_neq(sigv4_chunked_error(d), S3E_OK);
                return (int)sigv4_chunked_error(d);
            }
            if (ev == SIGV4_CH_DONE)
                return S3E_OK;
            if (ev == SIGV4_CH_DATA) {
                cr_assert_gt(dlen, 0u);
                cr_assert(data >= body + off && data + dlen <= body + off + piece);
                if (out)
                    bput(out, data, dlen);
            } else {
                cr_assert_eq(ev, SIGV4_CH_NEED_MORE);
                cr_assert_eq(used, piece);
            }
        }
        off += piece;
    }
    return RAN_OUT;
}

/* Decode body whole, in 1000-byte pieces and byte by byte: all three must agree on the result
 * and the payload.  The payload of the whole-body run is left in out. */
static int run_all_ways(const struct sigv4_auth *a, enum s3_cksum_alg alg, int64_t dlen,
                        const struct buf *body, struct buf *out)
{
    static const size_t steps[] = {SIZE_MAX, 1000, 1};
    int first = 0;

    for (size_t i = 0; i < 3; i++) {
        struct sigv4_chunked *d = sigv4_chunked_create(a, alg, dlen);
        struct buf got = {0};
        int r;

        cr_assert_not_null(d);
        r = run(d, body->p, body->len, steps[i], &got);
        if (i == 0) {
            first = r;
            if (out)
                *out = got;
            else
                free(got.p);
        } else {
            cr_assert_eq(r, first, "step %zu: %d, whole body: %d", steps[i], r, first);
            if (out) {
                cr_assert_eq(got.len, out->len);
                cr_assert(got.len == 0 || memcmp(got.p, out->p, got.len) == 0);
            }
            free(got.p);
        }
        sigv4_chunked_destroy(d);
    }
    return first;
}

/* ---- the documented header-auth examples ---- */

#define GET_OBJECT_AUTH                                                                            \
    "AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"      \
    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"

static void get_object(struct req *q, const char *authz)
{
    const char *h[] = {"host",
                       "examplebucket.s3.amazonaws.com",
                       "range",
                       "bytes=0-9",
                       "x-amz-content-sha256",
                       EMPTY_SHA256,
                       "x-amz-date",
                       DOC_DATE,
                       "authorization",
                       authz,
                       NULL};

    mkreq(q, "GET", "/test.txt", "", h);
}

Test(sigv4_doc, get_object_with_range)
{
    static const char creq[] = "GET\n"
                               "/test.txt\n"
                               "\n"
                               "host:examplebucket.s3.amazonaws.com\n"
                               "range:bytes=0-9\n"
                               "x-amz-content-sha256:" EMPTY_SHA256 "\n"
                               "x-amz-date:20130524T000000Z\n"
                               "\n"
                               "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256;
    struct req q;
    struct sigv4_auth a;
    char text[2048], sig[65];
    uint8_t key[32], zero[32] = {0};

    get_object(&q, GET_OBJECT_AUTH);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_OK);
    cr_assert(!a.anonymous && !a.presigned);
    cr_assert_str_eq(a.access_key, DOC_KEY);
    cr_assert_str_eq(a.date, "20130524");
    cr_assert_str_eq(a.region, "us-east-1");
    cr_assert_str_eq(a.service, "s3");
    cr_assert_str_eq(a.amz_date, DOC_DATE);
    cr_assert_eq(a.request_time, DOC_TIME);
    cr_assert_eq(a.payload, SIGV4_PAYLOAD_HASH);
    cr_assert_str_eq(a.payload_sha256, EMPTY_SHA256);
    cr_assert_eq(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), (long)strlen(creq));
    cr_assert_str_eq(text, creq);
    sigv4_sign(&q.r, &a, DOC_SECRET, sig);
    cr_assert_str_eq(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    cr_assert_eq(memcmp(a.signing_key, zero, 32), 0);
    cr_assert_eq(sigv4_verify(&q.r, &a, DOC_SECRET), S3E_OK);
    t_signing_key(key);
    cr_assert_eq(memcmp(a.signing_key, key, 32), 0, "signing key kept for chunk signatures");
    /* Too small a buffer is refused rather than truncated. */
    cr_assert_eq(sigv4_canonical_request(&q.r, &a, text, strlen(creq)), -1);
    cr_assert_eq(sigv4_canonical_request(&q.r, &a, text, strlen(creq) + 1), (long)strlen(creq));
}

Test(sigv4_doc, put_object)
{
    static const char body[] = "Welcome to Amazon S3.";
    const char *h[] = {"date",
                       "Fri, 24 May 2013 00:00:00 GMT",
                       "host",
                       "examplebucket.s3.amazonaws.com",
                       "x-amz-content-sha256",
                       "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                       "x-amz-date",
                       DOC_DATE,
                       "x-amz-storage-class",
                       "REDUCED_REDUNDANCY",
                       "authorization",
                       "AWS4-HMAC-SHA256 " DOC_CRED
                       ",SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                       "x-amz-storage-class,Signature="
                       "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
                       NULL};
    struct req q;
    struct sigv4_auth a;
    char text[2048], b64[64], hexd[65];
    uint8_t md5[16], sha[32];
    struct s3_cksum *c;

    mkreq(&q, "PUT", "/test$file.text", "", h);
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_OK);
    cr_assert_gt(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), 0);
    cr_assert(strncmp(text, "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n", 58) ==
                  0,
              "%s", text);
    /* The caller checks the body against payload_sha256 with the running checksum. */
    c = s3_cksum_create(true, S3_CK_NONE);
    cr_assert_not_null(c);
    s3_cksum_update(c, body, 10);
    s3_cksum_update(c, body + 10, sizeof(body) - 11);
    s3_cksum_final(c, md5, sha, b64);
    s3_cksum_destroy(c);
    hex(sha, 32, hexd);
    cr_assert_str_eq(hexd, a.payload_sha256);
    cr_assert_str_eq(b64, "");
}

static void bucket_get(struct req *q, const char *query, const char *sig, char *authz)
{
    const char *h[] = {"host",
                       "examplebucket.s3.amazonaws.com",
                       "x-amz-content-sha256",
                       EMPTY_SHA256,
                       "x-amz-date",
                       DOC_DATE,
                       "authorization",
                       authz,
                       NULL};

    sprintf(authz,
            "AWS4-HMAC-SHA256 " DOC_CRED ", SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
            "Signature=%s",
            sig);
    mkreq(q, "GET", "/", query, h);
}

Test(sigv4_doc, get_bucket_lifecycle)
{
    struct req q;
    struct sigv4_auth a;
    char authz[512], text[1024];

    bucket_get(&q, "lifecycle", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
               authz);
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_OK);
    cr_assert_gt(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), 0);
    cr_assert(strncmp(text, "GET\n/\nlifecycle=\nhost:", 22) == 0, "%s", text);
}

Test(sigv4_doc, list_objects)
{
    struct req q;
    struct sigv4_auth a;
    char authz[512], text[1024];

    bucket_get(&q, "max-keys=2&prefix=J",
               "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7", authz);
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_OK);
    cr_assert_gt(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), 0);
    cr_assert(strncmp(text, "GET\n/\nmax-keys=2&prefix=J\nhost:", 31) == 0, "%s", text);
    /* Parameter order on the wire does not matter: the canonical query is sorted. */
    bucket_get(&q, "prefix=J&max-keys=2",
               "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7", authz);
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_OK);
    bucket_get(&q, "max-keys=3&prefix=J",
               "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7", authz);
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_SIGNATURE_DOES_NOT_MATCH);
}

#define PRESIGN_Q(expires, sig)                                                                    \
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"         \
    "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=" expires             \
    "&X-Amz-SignedHeaders=host&X-Amz-Signature=" sig
#define DOC_PRESIGN_SIG "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"

static void presigned(struct req *q, const char *query)
{
    static const char *const h[] = {"host", "examplebucket.s3.amazonaws.com", NULL};

    mkreq(q, "GET", "/test.txt", query, h);
}

Test(sigv4_doc, presigned_url)
{
    static const char creq[] =
        "GET\n/test.txt\n"
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host\n"
        "host:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD";
    struct req q;
    struct sigv4_auth a;
    char text[2048], sig[65];

    presigned(&q, PRESIGN_Q("86400", DOC_PRESIGN_SIG));
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_OK);
    cr_assert(a.presigned && !a.anonymous);
    cr_assert_eq(a.expires, 86400u);
    cr_assert_eq(a.payload, SIGV4_PAYLOAD_UNSIGNED);
    cr_assert_str_eq(a.access_key, DOC_KEY);
    cr_assert_gt(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), 0);
    cr_assert_str_eq(text, creq);
    sigv4_sign(&q.r, &a, DOC_SECRET, sig);
    cr_assert_str_eq(sig, DOC_PRESIGN_SIG);

    /* Valid through its last second, expired after. */
    cr_assert_eq(check(&q, DOC_TIME + 86400, DOC_SECRET, &a), S3E_OK);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME + 86401, &a), S3E_ACCESS_DENIED);
    /* A client clock slightly ahead is tolerated; far ahead is not. */
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME - 900, &a), S3E_OK);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME - 901, &a), S3E_ACCESS_DENIED);
    cr_assert_eq(check(&q, DOC_TIME, "wrong", &a), S3E_SIGNATURE_DOES_NOT_MATCH);
    /* Another object under the same signature. */
    q.r.path = "/test.tx";
    q.r.path_len = 8;
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_SIGNATURE_DOES_NOT_MATCH);
}

Test(sigv4_presigned, lifetime_limits)
{
    struct req q;
    struct sigv4_auth a;
    char sig[65], query[1024];

    /* Seven days exactly is accepted (signed here), one second more is a parameter error. */
    presigned(&q, PRESIGN_Q("604800", DOC_PRESIGN_SIG));
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_OK);
    sigv4_sign(&q.r, &a, DOC_SECRET, sig);
    /* (Concatenated: the query's %2F escapes must not go through a format string.) */
    strcpy(query, PRESIGN_Q("604800", ""));
    strcat(query, sig);
    presigned(&q, query);
    cr_assert_eq(check(&q, DOC_TIME + 604800, DOC_SECRET, &a), S3E_OK);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME + 604801, &a), S3E_ACCESS_DENIED);
    presigned(&q, PRESIGN_Q("604801", DOC_PRESIGN_SIG));
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_AUTH_QUERY_PARAMS_ERROR);
    presigned(&q, PRESIGN_Q("99999999", DOC_PRESIGN_SIG));
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_AUTH_QUERY_PARAMS_ERROR);
    presigned(&q, PRESIGN_Q("-1", DOC_PRESIGN_SIG));
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_AUTH_QUERY_PARAMS_ERROR);
    presigned(&q, PRESIGN_Q("1h", DOC_PRESIGN_SIG));
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_AUTH_QUERY_PARAMS_ERROR);
}

Test(sigv4_presigned, malformed)
{
    static const char *const bad[] = {
        /* no X-Amz-Date */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&"
        "X-Amz-Signature=" DOC_PRESIGN_SIG,
        /* other algorithm */
        "X-Amz-Algorithm=AWS4-HMAC-SHA1&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature=" DOC_PRESIGN_SIG,
        /* a credential for another service */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fsqs%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature=" DOC_PRESIGN_SIG,
        /* host not signed */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=range&X-Amz-Signature=" DOC_PRESIGN_SIG,
        /* scope date is not X-Amz-Date's */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130523%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature=" DOC_PRESIGN_SIG,
        /* a signature given twice */
        PRESIGN_Q("86400", DOC_PRESIGN_SIG) "&X-Amz-Signature=" DOC_PRESIGN_SIG,
        /* short signature */
        PRESIGN_Q("86400", "aeeed9bb"),
        /* bad date */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T250000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature=" DOC_PRESIGN_SIG,
        /* bad escape in a value */
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2G20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature=" DOC_PRESIGN_SIG,
    };
    struct req q;
    struct sigv4_auth a;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        presigned(&q, bad[i]);
        cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_AUTH_QUERY_PARAMS_ERROR, "case %zu", i);
    }
    /* Query auth and an Authorization header together. */
    {
        const char *h[] = {"host", "examplebucket.s3.amazonaws.com", "authorization",
                           GET_OBJECT_AUTH, NULL};

        mkreq(&q, "GET", "/test.txt", PRESIGN_Q("86400", DOC_PRESIGN_SIG), h);
        cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_INVALID_ARGUMENT);
    }
}

/* ---- what parse and verify refuse ---- */

Test(sigv4_verify, wrong_secret_and_tampering)
{
    struct req q;
    struct sigv4_auth a;
    char tampered[] = GET_OBJECT_AUTH;
    char *s = strstr(tampered, "Signature=") + 10 + 20;

    get_object(&q, GET_OBJECT_AUTH);
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET "x", &a), S3E_SIGNATURE_DOES_NOT_MATCH);
    cr_assert_eq(check(&q, DOC_TIME, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEz", &a),
                 S3E_SIGNATURE_DOES_NOT_MATCH);
    {
        uint8_t zero[32] = {0};

        cr_assert_eq(memcmp(a.signing_key, zero, 32), 0);
    }
    /* One hex digit of the signature changed. */
    *s = *s == '0' ? '1' : '0';
    get_object(&q, tampered);
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_SIGNATURE_DOES_NOT_MATCH);
    /* A signed header's value changed. */
    get_object(&q, GET_OBJECT_AUTH);
    set_hdr(&q, "range", "bytes=0-99");
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_SIGNATURE_DOES_NOT_MATCH);
    /* The method or the path changed. */
    get_object(&q, GET_OBJECT_AUTH);
    q.r.method_name = "HEAD";
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_SIGNATURE_DOES_NOT_MATCH);
    get_object(&q, GET_OBJECT_AUTH);
    q.r.path = "/test.txu";
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_SIGNATURE_DOES_NOT_MATCH);
    /* An unsigned header can change freely. */
    {
        const char *h[] = {"host",
                           "examplebucket.s3.amazonaws.com",
                           "range",
                           "bytes=0-9",
                           "x-amz-content-sha256",
                           EMPTY_SHA256,
                           "x-amz-date",
                           DOC_DATE,
                           "authorization",
                           GET_OBJECT_AUTH,
                           "user-agent",
                           "anything",
                           NULL};

        mkreq(&q, "GET", "/test.txt", "", h);
        cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_OK);
    }
    /* A signed header missing from the request. */
    {
        const char *h[] = {"host",
                           "examplebucket.s3.amazonaws.com",
                           "x-amz-content-sha256",
                           EMPTY_SHA256,
                           "x-amz-date",
                           DOC_DATE,
                           "authorization",
                           GET_OBJECT_AUTH,
                           NULL};

        mkreq(&q, "GET", "/test.txt", "", h);
        cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_AUTH_HEADER_MALFORMED);
    }
}

Test(sigv4_verify, clock_skew)
{
    struct req q;
    struct sigv4_auth a;

    get_object(&q, GET_OBJECT_AUTH);
    cr_assert_eq(check(&q, DOC_TIME + 900, DOC_SECRET, &a), S3E_OK);
    cr_assert_eq(check(&q, DOC_TIME - 900, DOC_SECRET, &a), S3E_OK);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME + 901, &a), S3E_REQUEST_TIME_TOO_SKEWED);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME - 901, &a), S3E_REQUEST_TIME_TOO_SKEWED);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME + 86400 * 365, &a), S3E_REQUEST_TIME_TOO_SKEWED);
}

Test(sigv4_parse, malformed_authorization)
{
    static const struct {
        const char *authz;
        enum s3_err want;
    } cases[] = {
        {"AWS4-HMAC-SHA256", S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 ", S3E_AUTH_HEADER_MALFORMED},
        {"AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=", S3E_INVALID_ARGUMENT},
        {"AWS4-HMAC-SHA1 " DOC_CRED ",SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_INVALID_ARGUMENT},
        {"AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=host;range;x-amz-date",
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 SignedHeaders=host,Signature=" EMPTY_SHA256, S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 " DOC_CRED ",Signature=" EMPTY_SHA256, S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=host,Signature=abc",
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=host,Signature="
         "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=host,Signature=" EMPTY_SHA256 ",",
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 " DOC_CRED "," DOC_CRED ",SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=host,Signature=" EMPTY_SHA256 ",Foo=bar",
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential " DOC_KEY ",SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        /* host not signed; an empty name; an uppercase name */
        {"AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=range;x-amz-date,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=host;;range,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=Host;range,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        /* credential shapes */
        {"AWS4-HMAC-SHA256 Credential=" DOC_KEY "/20130524/us-east-1/s3,SignedHeaders=host,"
         "Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" DOC_KEY "/20130524/us-east-1/s3/aws4_request/x,"
         "SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" DOC_KEY "/20130524/us-east-1/ec2/aws4_request,"
         "SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" DOC_KEY "/20130524/us-east-1/s3/aws5_request,"
         "SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" DOC_KEY "/2013052/us-east-1/s3/aws4_request,"
         "SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request,"
         "SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" DOC_KEY "/20130524//s3/aws4_request,"
         "SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        /* scope date differs from x-amz-date */
        {"AWS4-HMAC-SHA256 Credential=" DOC_KEY "/20130525/us-east-1/s3/aws4_request,"
         "SignedHeaders=host,Signature=" EMPTY_SHA256,
         S3E_AUTH_HEADER_MALFORMED},
        /* well formed (no spaces, or spaces, any order): parse passes, the signature does not */
        {"AWS4-HMAC-SHA256 Signature=" EMPTY_SHA256 ",  SignedHeaders=host , " DOC_CRED, S3E_OK},
    };
    struct req q;
    struct sigv4_auth a;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        get_object(&q, cases[i].authz);
        cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), cases[i].want, "case %zu: %s", i,
                     cases[i].authz);
    }
    cr_assert_eq(sigv4_verify(&q.r, &a, DOC_SECRET), S3E_SIGNATURE_DOES_NOT_MATCH);
}

Test(sigv4_parse, dates_and_payload_header)
{
    struct req q;
    struct sigv4_auth a;
    char sig[65], authz[512];

    /* No date at all; an x-amz-date that is not a date; Feb 30. */
    {
        const char *h[] = {
            "host",          "h", "x-amz-content-sha256", EMPTY_SHA256, "authorization",
            GET_OBJECT_AUTH, NULL};

        mkreq(&q, "GET", "/", "", h);
        cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_ACCESS_DENIED);
    }
    get_object(&q, GET_OBJECT_AUTH);
    set_hdr(&q, "x-amz-date", "2013-05-24T00:00:00Z");
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_ACCESS_DENIED);
    set_hdr(&q, "x-amz-date", "20130230T000000Z");
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_ACCESS_DENIED);

    /* x-amz-content-sha256: required, and a hash, or one of the known markers. */
    get_object(&q, GET_OBJECT_AUTH);
    set_hdr(&q, "x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_OK);
    cr_assert_eq(a.payload, SIGV4_PAYLOAD_UNSIGNED);
    set_hdr(&q, "x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_OK);
    cr_assert_eq(a.payload, SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER);
    set_hdr(&q, "x-amz-content-sha256", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD");
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_INVALID_ARGUMENT);
    set_hdr(&q, "x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb924");
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_INVALID_ARGUMENT);
    {
        const char *h[] = {"host",          "h", "x-amz-date", DOC_DATE, "authorization",
                           GET_OBJECT_AUTH, NULL};

        mkreq(&q, "GET", "/", "", h);
        cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_MISSING_SECURITY_HEADER);
    }

    /* The Date header stands in for x-amz-date; sign and verify a request that has only it. */
    {
        const char *h[] = {"host",
                           "examplebucket.s3.amazonaws.com",
                           "date",
                           "Fri, 24 May 2013 00:00:00 GMT",
                           "x-amz-content-sha256",
                           EMPTY_SHA256,
                           "authorization",
                           authz,
                           NULL};

        strcpy(authz, "AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=date;host;"
                      "x-amz-content-sha256,Signature=" EMPTY_SHA256);
        mkreq(&q, "GET", "/k", "", h);
        cr_assert_eq(sigv4_parse(&q.r, DOC_TIME + 60, &a), S3E_OK);
        cr_assert_str_eq(a.amz_date, DOC_DATE);
        cr_assert_eq(a.request_time, DOC_TIME);
        sigv4_sign(&q.r, &a, DOC_SECRET, sig);
        snprintf(authz, sizeof(authz),
                 "AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=date;host;"
                 "x-amz-content-sha256,Signature=%s",
                 sig);
        set_hdr(&q, "authorization", authz);
        cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_OK);
        set_hdr(&q, "date", "Fri, 24 May 2013 00:00:01 GMT");
        cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_SIGNATURE_DOES_NOT_MATCH);
        set_hdr(&q, "date", "Friday, 24-May-13 00:00:00 GMT");
        cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_ACCESS_DENIED);
    }
}

Test(sigv4_parse, anonymous)
{
    struct req q;
    struct sigv4_auth a;
    static const char *const h[] = {"host", "examplebucket.s3.amazonaws.com", NULL};
    static const char *const h2[] = {"host", "b", "x-amz-content-sha256",
                                     "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", NULL};

    mkreq(&q, "GET", "/test.txt", "versionId=3", h);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_OK);
    cr_assert(a.anonymous);
    cr_assert_eq(a.payload, SIGV4_PAYLOAD_UNSIGNED);
    /* Nothing to verify: never a success. */
    cr_assert_eq(sigv4_verify(&q.r, &a, DOC_SECRET), S3E_ACCESS_DENIED);
    /* Signed chunks without a signature cannot be checked. */
    mkreq(&q, "PUT", "/k", "", h2);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &a), S3E_INVALID_ARGUMENT);
}

/* ---- canonicalisation details, checked by sign + verify round trips ---- */

Test(sigv4_canonical, uri_query_and_header_values)
{
    const char *h[] = {"host",
                       "b.example",
                       "x-amz-meta-a",
                       "  x    y\t z  ",
                       "x-amz-meta-b",
                       "1",
                       "x-amz-meta-b",
                       "two  words",
                       "x-amz-content-sha256",
                       "UNSIGNED-PAYLOAD",
                       "x-amz-date",
                       DOC_DATE,
                       NULL};
    struct req q;
    struct sigv4_auth a = {0};
    char text[2048];

    mkreq(&q, "PUT", "/b/a%20key+with$odd%2fchars~%C3%A9", "b=2&a=%2f+x&c&&a=1&%41=z", h);
    strcpy(a.date, "20130524");
    strcpy(a.region, "us-east-1");
    strcpy(a.service, "s3");
    strcpy(a.amz_date, DOC_DATE);
    strcpy(a.signed_headers, "host;x-amz-content-sha256;x-amz-date;x-amz-meta-a;x-amz-meta-b");
    a.payload = SIGV4_PAYLOAD_UNSIGNED;
    cr_assert_gt(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), 0);
    cr_assert_str_eq(text, "PUT\n"
                           "/b/a%20key%2Bwith%24odd/chars~%C3%A9\n"
                           "A=z&a=%2F%2Bx&a=1&b=2&c=\n"
                           "host:b.example\n"
                           "x-amz-content-sha256:UNSIGNED-PAYLOAD\n"
                           "x-amz-date:20130524T000000Z\n"
                           "x-amz-meta-a:x y z\n"
                           "x-amz-meta-b:1,two words\n"
                           "\n"
                           "host;x-amz-content-sha256;x-amz-date;x-amz-meta-a;x-amz-meta-b\n"
                           "UNSIGNED-PAYLOAD");
    /* Unrepresentable: a bad escape, an encoded NUL, a signed header that is missing. */
    q.r.query = "a=%zz";
    q.r.query_len = 5;
    cr_assert_eq(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), -1);
    q.r.query = "";
    q.r.query_len = 0;
    q.r.path = "/a%00b";
    q.r.path_len = 6;
    cr_assert_eq(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), -1);
    q.r.path = "";
    q.r.path_len = 0;
    cr_assert_gt(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), 0);
    cr_assert(strncmp(text, "PUT\n/\n\n", 7) == 0);
    q.r.path = NULL;
    q.r.query = NULL;
    cr_assert_gt(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), 0);
    cr_assert(strncmp(text, "PUT\n/\n\n", 7) == 0);
    cr_assert_eq(sigv4_parse(&q.r, DOC_TIME, &(struct sigv4_auth){0}), S3E_OK);
    strcpy(a.signed_headers, "host;x-amz-missing");
    cr_assert_eq(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), -1);
    /* A NUL inside a signed header's value (found by the fuzzer: the text would be cut). */
    strcpy(a.signed_headers, "host");
    q.h[0].value = "b.\0example";
    q.h[0].value_len = 10;
    cr_assert_eq(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), -1);
}

/* ---- aws-chunked: the documented examples ---- */

#define SEED_SIG "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define TRAILER_SEED_SIG "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"

static void doc_chunked_req(struct req *q, bool trailer, const char *seed, char *authz, char *clen)
{
    const char *h[] = {"content-encoding",
                       "aws-chunked",
                       "host",
                       "s3.amazonaws.com",
                       "x-amz-content-sha256",
                       trailer ? "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
                               : "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                       "x-amz-date",
                       DOC_DATE,
                       "x-amz-decoded-content-length",
                       "66560",
                       "x-amz-storage-class",
                       "REDUCED_REDUNDANCY",
                       "authorization",
                       authz,
                       trailer ? "x-amz-trailer" : "content-length",
                       trailer ? "x-amz-checksum-crc32c" : clen,
                       NULL};

    sprintf(authz, "AWS4-HMAC-SHA256 " DOC_CRED ",SignedHeaders=%s,Signature=%s",
            trailer ? "content-encoding;host;x-amz-content-sha256;x-amz-date;"
                      "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer"
                    : "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                      "x-amz-decoded-content-length;x-amz-storage-class",
            seed);
    mkreq(q, "PUT", "/examplebucket/chunkObject.txt", "", h);
}

static void doc_body(struct buf *b, const char *const sigs[3], const char *trailers)
{
    static char a64k[65536];
    char line[128];

    memset(a64k, 'a', sizeof(a64k));
    snprintf(line, sizeof(line), "10000;chunk-signature=%s\r\n", sigs[0]);
    bputs(b, line);
    bput(b, a64k, 65536);
    snprintf(line, sizeof(line), "\r\n400;chunk-signature=%s\r\n", sigs[1]);
    bputs(b, line);
    bput(b, a64k, 1024);
    snprintf(line, sizeof(line), "\r\n0;chunk-signature=%s\r\n", sigs[2]);
    bputs(b, line);
    bputs(b, trailers);
    bputs(b, "\r\n");
}

static const char *const doc_sigs[3] = {
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
};

Test(sigv4_chunked, documented_upload)
{
    static const char creq[] =
        "PUT\n/examplebucket/chunkObject.txt\n\n"
        "content-encoding:aws-chunked\ncontent-length:66824\nhost:s3.amazonaws.com\n"
        "x-amz-content-sha256:STREAMING-AWS4-HMAC-SHA256-PAYLOAD\nx-amz-date:20130524T000000Z\n"
        "x-amz-decoded-content-length:66560\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        "x-amz-decoded-content-length;x-amz-storage-class\n"
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    struct req q;
    struct sigv4_auth a;
    char authz[512], text[2048];
    struct buf body = {0}, out = {0};

    doc_body(&body, doc_sigs, "");
    cr_assert_eq(body.len, 66824u, "the documented Content-Length");
    doc_chunked_req(&q, false, SEED_SIG, authz, "66824");
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_OK);
    cr_assert_eq(a.payload, SIGV4_PAYLOAD_STREAMING);
    cr_assert_gt(sigv4_canonical_request(&q.r, &a, text, sizeof(text)), 0);
    cr_assert_str_eq(text, creq);
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, 66560, &body, &out), S3E_OK);
    cr_assert_eq(out.len, 66560u);
    for (size_t i = 0; i < out.len; i++)
        cr_assert_eq(out.p[i], 'a');
    /* Without the declared length too. */
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &body, NULL), S3E_OK);
    free(out.p);
    free(body.p);
}

Test(sigv4_chunked, documented_upload_with_trailer)
{
    static const char *const sigs[3] = {
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    };
    static const char trailers[] =
        "x-amz-checksum-crc32c:sOO8/Q==\r\n"
        "x-amz-trailer-signature:"
        "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n";
    struct req q;
    struct sigv4_auth a;
    char authz[512];
    struct buf body = {0}, out = {0};

    doc_body(&body, sigs, trailers);
    doc_chunked_req(&q, true, TRAILER_SEED_SIG, authz, NULL);
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, &a), S3E_OK);
    cr_assert_eq(a.payload, SIGV4_PAYLOAD_STREAMING_TRAILER);
    cr_assert_eq(run_all_ways(&a, S3_CK_CRC32C, 66560, &body, &out), S3E_OK);
    cr_assert_eq(out.len, 66560u);
    free(out.p);

    /* The trailer announced as another algorithm does not match what was sent. */
    cr_assert_eq(run_all_ways(&a, S3_CK_CRC32, 66560, &body, NULL), S3E_INVALID_REQUEST);
    /* A trailer-signature digit changed. */
    body.p[body.len - 10] = body.p[body.len - 10] == '0' ? '1' : '0';
    cr_assert_eq(run_all_ways(&a, S3_CK_CRC32C, 66560, &body, NULL), S3E_SIGNATURE_DOES_NOT_MATCH);
    free(body.p);
}

/* ---- aws-chunked: failures ---- */

/* auth for the documented chunked request, verified (so signing_key is set). */
static void doc_auth(struct sigv4_auth *a, bool trailer)
{
    struct req q;
    char authz[512];

    doc_chunked_req(&q, trailer, trailer ? TRAILER_SEED_SIG : SEED_SIG, authz, "66824");
    cr_assert_eq(check(&q, DOC_TIME, DOC_SECRET, a), S3E_OK);
}

Test(sigv4_chunked, bad_chunk_signature_mid_stream)
{
    struct sigv4_auth a;
    struct buf body = {0}, out = {0};
    const char *sigs[3] = {doc_sigs[0], doc_sigs[1], doc_sigs[2]};
    char bad[65];

    doc_auth(&a, false);
    strcpy(bad, doc_sigs[1]);
    bad[63] = bad[63] == 'f' ? 'e' : 'f';
    sigs[1] = bad;
    doc_body(&body, sigs, "");
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, 66560, &body, &out), S3E_SIGNATURE_DOES_NOT_MATCH);
    /* The first chunk was handed out, the second only up to its signature check. */
    cr_assert_eq(out.len, 66560u);
    free(out.p);
    free(body.p);

    /* The chunks swapped with their signatures: the chain breaks. */
    body = (struct buf){0};
    {
        const char *swapped[3] = {doc_sigs[1], doc_sigs[0], doc_sigs[2]};

        doc_body(&body, swapped, "");
    }
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &body, NULL), S3E_SIGNATURE_DOES_NOT_MATCH);
    free(body.p);

    /* One payload byte changed. */
    body = (struct buf){0};
    doc_body(&body, doc_sigs, "");
    body.p[100] = 'b';
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &body, NULL), S3E_SIGNATURE_DOES_NOT_MATCH);
    free(body.p);

    /* The final chunk's signature is checked too (truncation cannot be hidden). */
    body = (struct buf){0};
    sigs[1] = doc_sigs[1];
    sigs[2] = doc_sigs[1];
    doc_body(&body, sigs, "");
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &body, NULL), S3E_SIGNATURE_DOES_NOT_MATCH);
    free(body.p);

    /* A seed signature from another request. */
    body = (struct buf){0};
    doc_body(&body, doc_sigs, "");
    strcpy(a.signature, TRAILER_SEED_SIG);
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &body, NULL), S3E_SIGNATURE_DOES_NOT_MATCH);
    free(body.p);
}

Test(sigv4_chunked, decoded_length_mismatch)
{
    struct sigv4_auth a;
    struct buf body = {0}, out = {0};

    doc_auth(&a, false);
    doc_body(&body, doc_sigs, "");
    /* Shorter than declared: found at the final chunk. */
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, 66561, &body, NULL), S3E_INCOMPLETE_BODY);
    /* Longer than declared: refused before the excess is handed out. */
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, 66559, &body, &out), S3E_INCOMPLETE_BODY);
    cr_assert_leq(out.len, 66559u);
    cr_assert_eq(out.len, 65536u);
    free(out.p);
    /* The body stops early: no DONE. */
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, 66560, &(struct buf){body.p, body.len - 2, 0}, NULL),
                 RAN_OUT);
    free(body.p);
}

Test(sigv4_chunked, signed_trailer_checksum_mismatch)
{
    static const size_t sizes[] = {8192, 100, 0};
    struct sigv4_auth a;
    struct buf body = {0}, good = {0};
    char last[65], hash[65], tsig[65], line[256], b64[64];
    char data[8292];
    struct s3_cksum *c;

    doc_auth(&a, true);
    memset(data, 'a', sizeof(data));
    c = s3_cksum_create_alg(S3_CK_SHA256);
    s3_cksum_update(c, data, sizeof(data));
    s3_cksum_final(c, NULL, NULL, b64);
    s3_cksum_destroy(c);

    for (int wrong = 0; wrong < 2; wrong++) {
        struct buf *b = wrong ? &body : &good;
        char tl[128];

        build_signed(b, TRAILER_SEED_SIG, sizes, 3, -1, last);
        snprintf(tl, sizeof(tl), "x-amz-checksum-sha256:%s\n",
                 wrong ? "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=" : b64);
        t_sha256_hex(tl, strlen(tl), hash);
        t_sign("AWS4-HMAC-SHA256-TRAILER", last, hash, false, tsig);
        tl[strlen(tl) - 1] = '\0';
        snprintf(line, sizeof(line), "%s\r\nx-amz-trailer-signature:%s\r\n\r\n", tl, tsig);
        bputs(b, line);
    }
    cr_assert_eq(run_all_ways(&a, S3_CK_SHA256, 8292, &good, NULL), S3E_OK);
    cr_assert_eq(run_all_ways(&a, S3_CK_SHA256, 8292, &body, NULL), S3E_BAD_DIGEST);
    free(body.p);

    /* The trailer signature missing, or a trailer after it. */
    body = (struct buf){0};
    build_signed(&body, TRAILER_SEED_SIG, sizes, 3, -1, last);
    snprintf(line, sizeof(line), "x-amz-checksum-sha256:%s\r\n\r\n", b64);
    bputs(&body, line);
    cr_assert_eq(run_all_ways(&a, S3_CK_SHA256, 8292, &body, NULL), S3E_INVALID_REQUEST);
    free(body.p);
    body = (struct buf){0};
    bput(&body, good.p, good.len - 2);
    bputs(&body, "x-amz-meta-late:1\r\n\r\n");
    cr_assert_eq(run_all_ways(&a, S3_CK_SHA256, 8292, &body, NULL), S3E_INVALID_REQUEST);
    free(body.p);
    free(good.p);
}

Test(sigv4_chunked, unsigned_trailer)
{
    struct sigv4_auth a = {0};
    struct buf body = {0}, out = {0};

    a.payload = SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    /* Small chunks are fine without signatures; sizes in either hex case. */
    bputs(&body, "5\r\n12345\r\nA\r\n6789012345\r\n0\r\nx-amz-checksum-crc32:");
    {
        struct s3_cksum *c = s3_cksum_create(false, S3_CK_CRC32);
        char b64[64];

        s3_cksum_update(c, "123456789012345", 15);
        s3_cksum_final(c, NULL, NULL, b64);
        s3_cksum_destroy(c);
        bputs(&body, b64);
    }
    bputs(&body, "\r\n\r\n");
    cr_assert_eq(run_all_ways(&a, S3_CK_CRC32, 15, &body, &out), S3E_OK);
    cr_assert_eq(out.len, 15u);
    cr_assert_eq(memcmp(out.p, "123456789012345", 15), 0);
    free(out.p);
    /* A wrong value. */
    body.p[body.len - 10] ^= 1;
    cr_assert_eq(run_all_ways(&a, S3_CK_CRC32, 15, &body, NULL), S3E_BAD_DIGEST);
    free(body.p);

    /* A trailer signature has no place here; nor has a chunk signature. */
    body = (struct buf){0};
    bputs(&body, "0\r\nx-amz-trailer-signature:" EMPTY_SHA256 "\r\n\r\n");
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, 0, &body, NULL), S3E_INVALID_REQUEST);
    free(body.p);
    body = (struct buf){0};
    bputs(&body, "0;chunk-signature=" EMPTY_SHA256 "\r\n\r\n");
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, 0, &body, NULL), S3E_INVALID_REQUEST);
    free(body.p);
    /* No trailer at all: fine when none was announced, an error when one was. */
    body = (struct buf){0};
    bputs(&body, "3\r\nabc\r\n0\r\n\r\n");
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, 3, &body, NULL), S3E_OK);
    cr_assert_eq(run_all_ways(&a, S3_CK_CRC32C, 3, &body, NULL), S3E_INVALID_REQUEST);
    free(body.p);
}

Test(sigv4_chunked, framing_errors)
{
    static const struct {
        const char *body;
        enum s3_err want;
    } cases[] = {
        {"3\r\nabcd\r\n0\r\n\r\n", S3E_INVALID_REQUEST},      /* data longer than its size */
        {"3\r\nabc\n0\r\n\r\n", S3E_INVALID_REQUEST},         /* LF without CR */
        {"3\nabc\r\n0\r\n\r\n", S3E_INVALID_REQUEST},         /* bare LF in the size line */
        {"3\r\r\nabc\r\n0\r\n\r\n", S3E_INVALID_REQUEST},     /* bare CR */
        {"x\r\nabc\r\n0\r\n\r\n", S3E_INVALID_REQUEST},       /* not hex */
        {"\r\nabc\r\n0\r\n\r\n", S3E_INVALID_REQUEST},        /* no size */
        {"3 \r\nabc\r\n0\r\n\r\n", S3E_INVALID_REQUEST},      /* junk after the size */
        {"3;ext=1\r\nabc\r\n0\r\n\r\n", S3E_INVALID_REQUEST}, /* extensions */
        {"1000001\r\n", S3E_INVALID_CHUNK_SIZE},              /* over SIGV4_MAX_CHUNK */
        {"123456789\r\n", S3E_INVALID_CHUNK_SIZE},            /* too many digits */
        {"0\r\nno-colon\r\n\r\n", S3E_INVALID_REQUEST},
        {"0\r\nx-amz-meta-x:1\r\n\r\n", S3E_INVALID_REQUEST}, /* not the announced trailer */
    };
    struct sigv4_auth a = {0};
    struct buf body = {0};

    a.payload = SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b = {(char *)cases[i].body, strlen(cases[i].body), 0};

        cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &b, NULL), (int)cases[i].want, "case %zu", i);
    }
    /* A line longer than SIGV4_MAX_CHUNK_LINE. */
    bputs(&body, "0000001");
    for (int i = 0; i < 300; i++)
        bputs(&body, "0");
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &body, NULL), S3E_INVALID_REQUEST);
    free(body.p);
    /* The checksum trailer repeated. */
    body = (struct buf){0};
    bputs(&body, "0\r\n");
    for (int i = 0; i < 10; i++)
        bputs(&body, "x-amz-checksum-crc32:AAAAAA==\r\n");
    bputs(&body, "\r\n");
    cr_assert_eq(run_all_ways(&a, S3_CK_CRC32, -1, &body, NULL), S3E_INVALID_REQUEST);
    free(body.p);

    /* Not an aws-chunked mode, or a trailer where the mode has none. */
    a.payload = SIGV4_PAYLOAD_HASH;
    cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &(struct buf){"0\r\n\r\n", 5, 0}, NULL),
                 S3E_INVALID_REQUEST);
    doc_auth(&a, false);
    cr_assert_eq(run_all_ways(&a, S3_CK_CRC32, -1, &(struct buf){"0\r\n\r\n", 5, 0}, NULL),
                 S3E_INVALID_REQUEST);
}

Test(sigv4_chunked, signed_chunk_sizes)
{
    struct sigv4_auth a;
    struct buf body = {0}, out = {0};
    char last[65];

    doc_auth(&a, false);
    /* Every chunk but the last at least 8 KiB: accepted, whatever the sizes. */
    {
        static const size_t sizes[] = {8192, 70000, 8191, 0};

        build_signed(&body, SEED_SIG, sizes, 4, -1, last);
        bputs(&body, "\r\n");
        cr_assert_eq(run_all_ways(&a, S3_CK_NONE, 8192 + 70000 + 8191, &body, &out), S3E_OK);
        cr_assert_eq(out.len, 8192u + 70000u + 8191u);
        free(out.p);
        free(body.p);
    }
    /* A small chunk followed by another. */
    {
        static const size_t sizes[] = {8191, 8192, 0};

        body = (struct buf){0};
        build_signed(&body, SEED_SIG, sizes, 3, -1, last);
        bputs(&body, "\r\n");
        cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &body, NULL), S3E_INVALID_CHUNK_SIZE);
        free(body.p);
    }
    /* The independent signer agrees with the decoder; a spoiled chunk 1 is found. */
    {
        static const size_t sizes[] = {9000, 9000, 5, 0};

        body = (struct buf){0};
        build_signed(&body, SEED_SIG, sizes, 4, 1, last);
        bputs(&body, "\r\n");
        cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &body, &out), S3E_SIGNATURE_DOES_NOT_MATCH);
        cr_assert_eq(out.len, 18000u);
        free(out.p);
        free(body.p);
    }
    /* A trailer after a plain signed body. */
    {
        static const size_t sizes[] = {10, 0};

        body = (struct buf){0};
        build_signed(&body, SEED_SIG, sizes, 2, -1, last);
        bputs(&body, "x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
        cr_assert_eq(run_all_ways(&a, S3_CK_NONE, -1, &body, NULL), S3E_INVALID_REQUEST);
        free(body.p);
    }
}

/* ---- checksums and base64 ---- */

static void one(enum s3_cksum_alg alg, const char *data, const char *want)
{
    struct s3_cksum *c = s3_cksum_create(false, alg);
    char b64[64];
    size_t n = strlen(data);

    cr_assert_not_null(c);
    /* In uneven pieces: the running state must chain. */
    for (size_t off = 0, step = 1; off < n; off += step, step++)
        s3_cksum_update(c, data + off, step < n - off ? step : n - off);
    s3_cksum_final(c, NULL, NULL, b64);
    s3_cksum_destroy(c);
    cr_assert_str_eq(b64, want, "%s of %s", s3_cksum_header_name(alg), data);
}

Test(cksum, known_values)
{
    uint8_t md5[16], sha[32], raw[8];
    char hx[65], b64[64];
    struct s3_cksum *c;

    one(S3_CK_CRC32, "123456789", "y/Q5Jg==");  /* 0xCBF43926 big-endian */
    one(S3_CK_CRC32C, "123456789", "4waSgw=="); /* 0xE3069283 big-endian */
    one(S3_CK_SHA1, "abc", "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
    one(S3_CK_SHA256, "abc", "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    one(S3_CK_NONE, "abc", "");
    cr_assert_eq(s3_base64_decode("y/Q5Jg==", 8, raw, 4), 4);
    cr_assert_eq(raw[0], 0xCB);
    cr_assert_eq(raw[3], 0x26);
    cr_assert_eq(s3_base64_decode("4waSgw==", 8, raw, 4), 4);
    cr_assert_eq(((uint32_t)raw[0] << 24 | raw[1] << 16 | raw[2] << 8 | raw[3]), 0xE3069283u);

    c = s3_cksum_create(true, S3_CK_CRC32C);
    s3_cksum_update(c, "abc", 3);
    s3_cksum_final(c, md5, sha, b64);
    s3_cksum_destroy(c);
    hex(md5, 16, hx);
    cr_assert_str_eq(hx, "900150983cd24fb0d6963f7d28e17f72");
    hex(sha, 32, hx);
    cr_assert_str_eq(hx, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* The documented trailer: CRC32C of 66560 'a'. */
    {
        char *a = malloc(66560);

        memset(a, 'a', 66560);
        c = s3_cksum_create(false, S3_CK_CRC32C);
        s3_cksum_update(c, a, 66560);
        s3_cksum_final(c, NULL, NULL, b64);
        s3_cksum_destroy(c);
        cr_assert_str_eq(b64, "sOO8/Q==");
        free(a);
    }
    s3_cksum_destroy(NULL);
}

Test(cksum, header_names)
{
    cr_assert_eq(s3_cksum_alg_from_header("x-amz-checksum-crc32"), S3_CK_CRC32);
    cr_assert_eq(s3_cksum_alg_from_header("X-Amz-Checksum-CRC32C"), S3_CK_CRC32C);
    cr_assert_eq(s3_cksum_alg_from_header("x-amz-checksum-sha1"), S3_CK_SHA1);
    cr_assert_eq(s3_cksum_alg_from_header("x-amz-checksum-sha256"), S3_CK_SHA256);
    cr_assert_eq(s3_cksum_alg_from_header("x-amz-checksum-crc64nvme"), S3_CK_NONE);
    cr_assert_eq(s3_cksum_alg_from_header("x-amz-checksum-crc3"), S3_CK_NONE);
    cr_assert_eq(s3_cksum_alg_from_header(""), S3_CK_NONE);
    cr_assert_str_eq(s3_cksum_header_name(S3_CK_CRC32C), "x-amz-checksum-crc32c");
    cr_assert_null(s3_cksum_header_name(S3_CK_NONE));
}

Test(base64, round_trip_and_rejects)
{
    uint8_t in[64], out[64];
    char enc[128];

    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(in); n++) {
        long e = s3_base64_encode(in, n, enc, sizeof(enc));

        cr_assert_eq(e, (long)(4 * ((n + 2) / 3)));
        cr_assert_eq(enc[e], '\0');
        cr_assert_eq(s3_base64_decode(enc, (size_t)e, out, n), (long)n, "n %zu", n);
        cr_assert(n == 0 || memcmp(in, out, n) == 0);
        if (n)
            cr_assert_eq(s3_base64_decode(enc, (size_t)e, out, n - 1), -1, "cap too small");
    }
    cr_assert_eq(s3_base64_encode(in, 3, enc, 4), -1, "no room for the NUL");
    cr_assert_eq(s3_base64_encode(in, 3, enc, 5), 4);
    cr_assert_eq(s3_base64_decode("abc", 3, out, 64), -1);
    cr_assert_eq(s3_base64_decode("ab=c", 4, out, 64), -1);
    cr_assert_eq(s3_base64_decode("a===", 4, out, 64), -1);
    cr_assert_eq(s3_base64_decode(" abc", 4, out, 64), -1);
    cr_assert_eq(s3_base64_decode("ab\ncd===", 8, out, 64), -1);
    cr_assert_eq(s3_base64_decode("AAAA=AAA", 8, out, 64), -1);
    cr_assert_eq(s3_base64_decode("", 0, out, 0), 0);
}
