/*
 * sigv4.c - AWS Signature Version 4 for the S3 head, and the aws-chunked body decoder
 * (see sigv4.h for the canonicalisation rules and the error each check answers with).
 *
 * The chunk decoder stays in this file (about 1,200 lines in all): it signs each chunk with the
 * request's derived key and scope, the same private helpers the request signature uses.
 *
 * The canonical request is never materialised for a verification: it is written through a
 * small "sink" that feeds SHA-256 directly, and the same writer fills a caller's buffer for
 * sigv4_canonical_request(), so what the tests print is exactly what is hashed.  The only
 * allocation is the scratch for sorting query parameters, bounded by HTTP_MAX_TARGET (longer
 * paths or queries are refused before anything is allocated).
 *
 * The chunked decoder is a byte-driven state machine that keeps at most one framing line
 * (SIGV4_MAX_CHUNK_LINE) of its own; payload bytes are handed back as spans of the caller's
 * input.  Each chunk's SHA-256 is accumulated as its bytes pass, and the chunk signature is
 * checked at the chunk's closing CRLF, chained from the seed signature; so data reaches the
 * caller before its signature is known good, and nothing may be committed before
 * SIGV4_CH_DONE.  Every signature comparison is constant-time (CRYPTO_memcmp).
 */
#include "cnode/s3/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cairn.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"
#define UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define STREAMING_PAYLOAD "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
#define STREAMING_TRAILER "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
#define STREAMING_UNSIGNED_TRAILER "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SCOPE_MAX 128 /* date/region/service/aws4_request with the field limits of sigv4_auth */
#define STS_MAX 512   /* any string to sign: algorithm, date, scope, two or three hex hashes */

/* ---- small helpers ---- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static void to_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Exactly 64 hex digits: copied lowercased into out[65]. */
static bool parse_sig(const char *s, size_t n, char out[65])
{
    if (n != 64)
        return false;
    for (size_t i = 0; i < 64; i++) {
        if (!is_hex(s[i]))
            return false;
        out[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
    }
    out[64] = '\0';
    return true;
}

static bool span_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static void hmac256(const void *key, size_t klen, const void *data, size_t dlen, uint8_t out[32])
{
    unsigned int n = 32;

    HMAC(EVP_sha256(), key, (int)klen, data, dlen, out, &n);
}

static const char *method_name(const struct http_request *req)
{
    static const char *const names[] = {"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"};

    if (req->method_name)
        return req->method_name;
    if ((unsigned)req->method < CAIRN_ARRAY_SIZE(names))
        return names[req->method];
    return "";
}

/* The first header named name (any case: hand-built requests may not be lowercased). */
static const struct http_header *header_get(const struct http_request *req, const char *name,
                                            size_t nlen)
{
    for (unsigned i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];

        if (h->name_len == nlen && strncasecmp(h->name, name, nlen) == 0)
            return h;
    }
    return NULL;
}

/* ---- dates ---- */

static int num(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* tm -> time_t, refusing fields timegm() would silently normalise (Feb 30, hour 24, ...). */
static bool tm_to_time(const struct tm *in, time_t *out)
{
    struct tm tm = *in, chk;
    time_t t;

    if (in->tm_year < 70 || in->tm_mon < 0 || in->tm_mon > 11 || in->tm_mday < 1 ||
        in->tm_hour > 23 || in->tm_min > 59 || in->tm_sec > 59)
        return false;
    t = timegm(&tm);
    if (t == (time_t)-1 || !gmtime_r(&t, &chk))
        return false;
    if (chk.tm_year != in->tm_year || chk.tm_mon != in->tm_mon || chk.tm_mday != in->tm_mday)
        return false;
    *out = t;
    return true;
}

/* ISO 8601 basic: YYYYMMDDTHHMMSSZ. */
static bool parse_amz_date(const char *s, size_t n, time_t *out)
{
    struct tm tm = {0};

    if (n != 16 || s[8] != 'T' || s[15] != 'Z')
        return false;
    for (size_t i = 0; i < 15; i++)
        if (i != 8 && !is_digit(s[i]))
            return false;
    tm.tm_year = num(s, 4) - 1900;
    tm.tm_mon = num(s + 4, 2) - 1;
    tm.tm_mday = num(s + 6, 2);
    tm.tm_hour = num(s + 9, 2);
    tm.tm_min = num(s + 11, 2);
    tm.tm_sec = num(s + 13, 2);
    return tm_to_time(&tm, out);
}

/* IMF-fixdate (RFC 9110), the only form of the Date header current clients send:
 * "Fri, 24 May 2013 00:00:00 GMT". */
static bool parse_http_date(const char *s, size_t n, time_t *out)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const int digits[] = {5, 6, 12, 13, 14, 15, 17, 18, 20, 21, 23, 24};
    struct tm tm = {0};
    int mon = -1;
    bool day_ok = false;

    if (n != 29 || memcmp(s + 3, ", ", 2) != 0 || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return false;
    for (int i = 0; i < 7; i++)
        day_ok |= memcmp(s, days + 3 * i, 3) == 0;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 8, months + 3 * i, 3) == 0)
            mon = i;
    if (!day_ok || mon < 0)
        return false;
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(digits); i++)
        if (!is_digit(s[digits[i]]))
            return false;
    tm.tm_mday = num(s + 5, 2);
    tm.tm_mon = mon;
    tm.tm_year = num(s + 12, 4) - 1900;
    tm.tm_hour = num(s + 17, 2);
    tm.tm_min = num(s + 20, 2);
    tm.tm_sec = num(s + 23, 2);
    return tm_to_time(&tm, out);
}

/* ---- credential, signed headers ---- */

static bool region_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_';
}

/* "AKID/YYYYMMDD/region/s3/aws4_request" into a. */
static bool parse_credential(const char *s, size_t n, struct sigv4_auth *a)
{
    const char *part[5];
    size_t len[5];
    const char *p = s, *end = s + n;

    for (int i = 0; i < 5; i++) {
        const char *slash = i < 4 ? memchr(p, '/', (size_t)(end - p)) : end;

        if (!slash)
            return false;
        part[i] = p;
        len[i] = (size_t)(slash - p);
        p = slash + 1;
    }
    if (memchr(part[4], '/', len[4]))
        return false;
    if (len[0] == 0 || len[0] > SIGV4_MAX_ACCESS_KEY)
        return false;
    for (size_t i = 0; i < len[0]; i++)
        if (part[0][i] <= ' ' || part[0][i] > '~' || part[0][i] == ',')
            return false;
    if (len[1] != 8)
        return false;
    for (size_t i = 0; i < 8; i++)
        if (!is_digit(part[1][i]))
            return false;
    if (len[2] == 0 || len[2] >= sizeof(a->region))
        return false;
    for (size_t i = 0; i < len[2]; i++)
        if (!region_char(part[2][i]))
            return false;
    if (!span_eq(part[3], len[3], "s3") || !span_eq(part[4], len[4], TERMINATOR))
        return false;
    memcpy(a->access_key, part[0], len[0]);
    a->access_key[len[0]] = '\0';
    memcpy(a->date, part[1], 8);
    a->date[8] = '\0';
    memcpy(a->region, part[2], len[2]);
    a->region[len[2]] = '\0';
    strcpy(a->service, "s3");
    return true;
}

static bool header_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* "host;range;x-amz-date": lowercase tokens joined by single ';', "host" among them. */
static bool parse_signed_headers(const char *s, size_t n, struct sigv4_auth *a)
{
    unsigned count = 0;
    bool host = false;
    size_t start = 0;

    if (n == 0 || n >= sizeof(a->signed_headers))
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ';') {
            if (!header_name_char(s[i]))
                return false;
            continue;
        }
        if (i == start || ++count > SIGV4_MAX_SIGNED_HEADERS)
            return false;
        host |= span_eq(s + start, i - start, "host");
        start = i + 1;
    }
    if (!host)
        return false;
    memcpy(a->signed_headers, s, n);
    a->signed_headers[n] = '\0';
    return true;
}

static bool parse_payload(const char *v, size_t n, struct sigv4_auth *a)
{
    if (span_eq(v, n, UNSIGNED_PAYLOAD))
        a->payload = SIGV4_PAYLOAD_UNSIGNED;
    else if (span_eq(v, n, STREAMING_PAYLOAD))
        a->payload = SIGV4_PAYLOAD_STREAMING;
    else if (span_eq(v, n, STREAMING_TRAILER))
        a->payload = SIGV4_PAYLOAD_STREAMING_TRAILER;
    else if (span_eq(v, n, STREAMING_UNSIGNED_TRAILER))
        a->payload = SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    else {
        /* Lowercase only: the value is signed as sent and compared with our lowercase hash. */
        if (n != 64)
            return false;
        for (size_t i = 0; i < 64; i++)
            if (!is_digit(v[i]) && !(v[i] >= 'a' && v[i] <= 'f'))
                return false;
        memcpy(a->payload_sha256, v, 64);
        a->payload_sha256[64] = '\0';
        a->payload = SIGV4_PAYLOAD_HASH;
    }
    return true;
}

/* ---- query strings ---- */

struct qiter {
    const char *p, *end;
};

/* Next non-empty '&'-separated parameter; a parameter without '=' has an empty value. */
static bool qiter_next(struct qiter *it, const char **name, size_t *nlen, const char **val,
                       size_t *vlen)
{
    while (it->p < it->end) {
        const char *amp = memchr(it->p, '&', (size_t)(it->end - it->p));
        const char *seg = it->p, *seg_end = amp ? amp : it->end;
        const char *eq;

        it->p = amp ? amp + 1 : it->end;
        if (seg == seg_end)
            continue;
        eq = memchr(seg, '=', (size_t)(seg_end - seg));
        *name = seg;
        *nlen = (size_t)((eq ? eq : seg_end) - seg);
        *val = eq ? eq + 1 : seg_end;
        *vlen = (size_t)(seg_end - *val);
        return true;
    }
    return false;
}

/* Percent-decode into dst[cap] (NUL-terminated); false on a bad escape or overflow. */
static bool decode(const char *s, size_t n, char *dst, size_t cap, size_t *out_len)
{
    long r = http_pct_decode(s, n, dst, cap);

    if (r < 0 || (size_t)r >= cap)
        return false;
    dst[r] = '\0';
    if (out_len)
        *out_len = (size_t)r;
    return true;
}

/* ---- parse ---- */

enum {
    Q_ALG,
    Q_CRED,
    Q_DATE,
    Q_EXPIRES,
    Q_SIGNED,
    Q_SIG,
    Q_COUNT,
};

static const char *const qnames[Q_COUNT] = {
    "X-Amz-Algorithm", "X-Amz-Credential",    "X-Amz-Date",
    "X-Amz-Expires",   "X-Amz-SignedHeaders", "X-Amz-Signature",
};

/* Which auth parameter a raw (still encoded) query name is, or -1. */
static int query_param_id(const char *name, size_t nlen)
{
    char dec[32];

    if (nlen >= sizeof(dec) * 3 || !decode(name, nlen, dec, sizeof(dec), NULL))
        return -1;
    for (int i = 0; i < Q_COUNT; i++)
        if (strcmp(dec, qnames[i]) == 0)
            return i;
    return -1;
}

static bool query_has_auth(const struct http_request *req)
{
    struct qiter it;
    const char *n, *v;
    size_t nl, vl;

    if (!req->query)
        return false;
    it = (struct qiter){req->query, req->query + req->query_len};
    while (qiter_next(&it, &n, &nl, &v, &vl)) {
        int id = query_param_id(n, nl);

        if (id == Q_ALG || id == Q_CRED || id == Q_SIG)
            return true;
    }
    return false;
}

static enum s3_err parse_presigned(const struct http_request *req, time_t now, struct sigv4_auth *a)
{
    char val[Q_COUNT][sizeof(a->signed_headers)];
    size_t len[Q_COUNT];
    bool seen[Q_COUNT] = {false};
    struct qiter it = {req->query, req->query + req->query_len};
    const char *n, *v;
    size_t nl, vl;
    uint32_t expires = 0;

    a->presigned = true;
    while (qiter_next(&it, &n, &nl, &v, &vl)) {
        int id = query_param_id(n, nl);

        if (id < 0)
            continue;
        if (seen[id] || !decode(v, vl, val[id], sizeof(val[id]), &len[id]))
            return S3E_AUTH_QUERY_PARAMS_ERROR;
        seen[id] = true;
    }
    for (int i = 0; i < Q_COUNT; i++)
        if (!seen[i])
            return S3E_AUTH_QUERY_PARAMS_ERROR;
    if (strcmp(val[Q_ALG], ALGORITHM) != 0)
        return S3E_AUTH_QUERY_PARAMS_ERROR;
    if (!parse_credential(val[Q_CRED], len[Q_CRED], a) ||
        !parse_signed_headers(val[Q_SIGNED], len[Q_SIGNED], a) ||
        !parse_sig(val[Q_SIG], len[Q_SIG], a->signature))
        return S3E_AUTH_QUERY_PARAMS_ERROR;
    if (!parse_amz_date(val[Q_DATE], len[Q_DATE], &a->request_time) ||
        memcmp(val[Q_DATE], a->date, 8) != 0)
        return S3E_AUTH_QUERY_PARAMS_ERROR;
    memcpy(a->amz_date, val[Q_DATE], 17);
    if (len[Q_EXPIRES] == 0 || len[Q_EXPIRES] > 7)
        return S3E_AUTH_QUERY_PARAMS_ERROR;
    for (size_t i = 0; i < len[Q_EXPIRES]; i++) {
        if (!is_digit(val[Q_EXPIRES][i]))
            return S3E_AUTH_QUERY_PARAMS_ERROR;
        expires = expires * 10 + (uint32_t)(val[Q_EXPIRES][i] - '0');
    }
    if (expires > SIGV4_MAX_PRESIGN_EXPIRES)
        return S3E_AUTH_QUERY_PARAMS_ERROR;
    a->expires = expires;
    if (now > a->request_time + (time_t)expires || now < a->request_time - SIGV4_MAX_SKEW_S)
        return S3E_ACCESS_DENIED;
    a->payload = SIGV4_PAYLOAD_UNSIGNED;
    return S3E_OK;
}

/* "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." (components in any order,
 * spaces after the commas optional). */
static enum s3_err parse_auth_header(const char *s, size_t n, struct sigv4_auth *a)
{
    const size_t alen = strlen(ALGORITHM);
    const char *p, *end = s + n;
    bool cred = false, signed_hdrs = false, sig = false;

    if (n < alen || memcmp(s, ALGORITHM, alen) != 0 || (n > alen && s[alen] != ' '))
        return S3E_INVALID_ARGUMENT;
    p = s + alen;
    while (p < end) {
        const char *comma, *eq, *key, *val;
        size_t klen, vlen;

        while (p < end && is_space(*p))
            p++;
        comma = memchr(p, ',', (size_t)(end - p));
        if (!comma)
            comma = end;
        eq = memchr(p, '=', (size_t)(comma - p));
        if (!eq)
            return S3E_AUTH_HEADER_MALFORMED;
        key = p;
        klen = (size_t)(eq - p);
        val = eq + 1;
        vlen = (size_t)(comma - val);
        while (vlen && is_space(val[vlen - 1]))
            vlen--;
        if (span_eq(key, klen, "Credential") && !cred) {
            cred = true;
            if (!parse_credential(val, vlen, a))
                return S3E_AUTH_HEADER_MALFORMED;
        } else if (span_eq(key, klen, "SignedHeaders") && !signed_hdrs) {
            signed_hdrs = true;
            if (!parse_signed_headers(val, vlen, a))
                return S3E_AUTH_HEADER_MALFORMED;
        } else if (span_eq(key, klen, "Signature") && !sig) {
            sig = true;
            if (!parse_sig(val, vlen, a->signature))
                return S3E_AUTH_HEADER_MALFORMED;
        } else {
            return S3E_AUTH_HEADER_MALFORMED;
        }
        p = comma < end ? comma + 1 : end;
        if (comma < end && p == end)
            return S3E_AUTH_HEADER_MALFORMED; /* trailing comma */
    }
    return cred && signed_hdrs && sig ? S3E_OK : S3E_AUTH_HEADER_MALFORMED;
}

static enum s3_err parse_header_auth(const struct http_request *req, time_t now,
                                     const struct http_header *authz, struct sigv4_auth *a)
{
    const struct http_header *h;
    enum s3_err e = parse_auth_header(authz->value, authz->value_len, a);

    if (e != S3E_OK)
        return e;
    if ((h = header_get(req, "x-amz-date", 10))) {
        if (!parse_amz_date(h->value, h->value_len, &a->request_time))
            return S3E_ACCESS_DENIED;
        memcpy(a->amz_date, h->value, 16);
        a->amz_date[16] = '\0';
    } else if ((h = header_get(req, "date", 4))) {
        struct tm tm;

        if (!parse_http_date(h->value, h->value_len, &a->request_time) ||
            !gmtime_r(&a->request_time, &tm))
            return S3E_ACCESS_DENIED;
        strftime(a->amz_date, sizeof(a->amz_date), "%Y%m%dT%H%M%SZ", &tm);
    } else {
        return S3E_ACCESS_DENIED;
    }
    if (memcmp(a->amz_date, a->date, 8) != 0)
        return S3E_AUTH_HEADER_MALFORMED;
    if (now > a->request_time + SIGV4_MAX_SKEW_S || now < a->request_time - SIGV4_MAX_SKEW_S)
        return S3E_REQUEST_TIME_TOO_SKEWED;
    h = header_get(req, "x-amz-content-sha256", 20);
    if (!h)
        return S3E_MISSING_SECURITY_HEADER;
    if (!parse_payload(h->value, h->value_len, a))
        return S3E_INVALID_ARGUMENT;
    return S3E_OK;
}

enum s3_err sigv4_parse(const struct http_request *req, time_t now, struct sigv4_auth *auth)
{
    const struct http_header *authz = header_get(req, "authorization", 13);
    bool query = query_has_auth(req);

    memset(auth, 0, sizeof(*auth));
    if (authz && query)
        return S3E_INVALID_ARGUMENT;
    if (authz)
        return parse_header_auth(req, now, authz, auth);
    if (query)
        return parse_presigned(req, now, auth);

    /* Unsigned: the body may still announce its hash or an unsigned trailer. */
    const struct http_header *h = header_get(req, "x-amz-content-sha256", 20);

    auth->anonymous = true;
    auth->payload = SIGV4_PAYLOAD_UNSIGNED;
    if (h &&
        (!parse_payload(h->value, h->value_len, auth) || auth->payload == SIGV4_PAYLOAD_STREAMING ||
         auth->payload == SIGV4_PAYLOAD_STREAMING_TRAILER))
        return S3E_INVALID_ARGUMENT;
    return S3E_OK;
}

/* ---- canonical request ---- */

/* Where canonical text goes: a caller's buffer, a running SHA-256, or both. */
struct sink {
    char *buf;
    size_t cap, len;
    EVP_MD_CTX *md;
    bool overflow;
};

static void put(struct sink *s, const void *p, size_t n)
{
    if (s->md)
        EVP_DigestUpdate(s->md, p, n);
    if (s->buf && !s->overflow) {
        if (n >= s->cap - s->len) { /* keep room for the NUL */
            s->overflow = true;
            return;
        }
        memcpy(s->buf + s->len, p, n);
        s->len += n;
    }
}

static void put_str(struct sink *s, const char *str)
{
    put(s, str, strlen(str));
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 encoding into dst (room for 3 * n); returns the length written. */
static size_t uri_encode(char *dst, const char *src, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];

        if (unreserved(c) || (keep_slash && c == '/')) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    return o;
}

struct qparam {
    const char *name, *val;
    size_t nlen, vlen;
};

static int span_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, CAIRN_MIN(an, bn));

    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

static int qparam_cmp(const void *pa, const void *pb)
{
    const struct qparam *a = pa, *b = pb;
    int c = span_cmp(a->name, a->nlen, b->name, b->nlen);

    return c ? c : span_cmp(a->val, a->vlen, b->val, b->vlen);
}

/* Path: decoded once, re-encoded with '/' kept. */
static int write_uri(const struct http_request *req, struct sink *s)
{
    size_t plen = req->path ? req->path_len : 0, dlen;
    char *dec, *enc;
    int rc = -1;

    if (plen == 0) {
        put(s, "/\n", 2);
        return 0;
    }
    if (plen > HTTP_MAX_TARGET)
        return -1;
    dec = malloc(plen + 1);
    enc = malloc(3 * plen);
    if (!dec || !enc)
        goto out;
    if (!decode(req->path, plen, dec, plen + 1, &dlen))
        goto out;
    put(s, enc, uri_encode(enc, dec, dlen, true));
    put(s, "\n", 1);
    rc = 0;
out:
    free(enc);
    free(dec);
    return rc;
}

/* Query: every parameter decoded and re-encoded, sorted by name then value; a presigned
 * request's own X-Amz-Signature left out. */
static int write_query(const struct http_request *req, const struct sigv4_auth *auth,
                       struct sink *s)
{
    size_t qlen = req->query ? req->query_len : 0, np = 0, used = 0, dl;
    struct qiter it;
    const char *n, *v;
    size_t nl, vl;
    struct qparam *ps = NULL;
    char *dec = NULL, *enc = NULL;
    int rc = -1;

    if (qlen == 0) {
        put(s, "\n", 1);
        return 0;
    }
    if (qlen > HTTP_MAX_TARGET)
        return -1;
    it = (struct qiter){req->query, req->query + qlen};
    ps = calloc(qlen / 2 + 1, sizeof(*ps)); /* each parameter takes >= 1 byte and a '&' */
    dec = malloc(qlen + 1);
    enc = malloc(3 * qlen);
    if (!ps || !dec || !enc)
        goto out;
    while (qiter_next(&it, &n, &nl, &v, &vl)) {
        struct qparam *p = &ps[np];

        if (!decode(n, nl, dec, qlen + 1, &dl))
            goto out;
        if (auth->presigned && strcmp(dec, "X-Amz-Signature") == 0)
            continue;
        p->name = enc + used;
        p->nlen = uri_encode(enc + used, dec, dl, false);
        used += p->nlen;
        if (!decode(v, vl, dec, qlen + 1, &dl))
            goto out;
        p->val = enc + used;
        p->vlen = uri_encode(enc + used, dec, dl, false);
        used += p->vlen;
        np++;
    }
    qsort(ps, np, sizeof(*ps), qparam_cmp);
    for (size_t i = 0; i < np; i++) {
        if (i)
            put(s, "&", 1);
        put(s, ps[i].name, ps[i].nlen);
        put(s, "=", 1);
        put(s, ps[i].val, ps[i].vlen);
    }
    put(s, "\n", 1);
    rc = 0;
out:
    free(enc);
    free(dec);
    free(ps);
    return rc;
}

/* A header value trimmed, inner runs of blanks collapsed to one space. */
static void put_trimmed(struct sink *s, const char *v, size_t n)
{
    size_t i = 0, run;

    while (i < n && is_space(v[i]))
        i++;
    while (i < n) {
        run = i;
        while (i < n && !is_space(v[i]))
            i++;
        put(s, v + run, i - run);
        while (i < n && is_space(v[i]))
            i++;
        if (i < n)
            put(s, " ", 1);
    }
}

static int write_headers(const struct http_request *req, const struct sigv4_auth *auth,
                         struct sink *s)
{
    const char *p = auth->signed_headers;

    while (*p) {
        const char *semi = strchr(p, ';');
        size_t nlen = semi ? (size_t)(semi - p) : strlen(p);
        bool found = false;

        put(s, p, nlen);
        put(s, ":", 1);
        for (unsigned i = 0; i < req->nheaders; i++) {
            const struct http_header *h = &req->headers[i];

            if (h->name_len != nlen || strncasecmp(h->name, p, nlen) != 0)
                continue;
            if (memchr(h->value, '\0', h->value_len))
                return -1; /* the HTTP parser never lets one through; the text must stay text */
            if (found)
                put(s, ",", 1);
            put_trimmed(s, h->value, h->value_len);
            found = true;
        }
        if (!found)
            return -1;
        put(s, "\n", 1);
        p += nlen + (semi ? 1 : 0);
    }
    put(s, "\n", 1);
    return 0;
}

static const char *payload_line(const struct sigv4_auth *auth)
{
    if (auth->presigned)
        return UNSIGNED_PAYLOAD;
    switch (auth->payload) {
    case SIGV4_PAYLOAD_HASH:
        return auth->payload_sha256;
    case SIGV4_PAYLOAD_UNSIGNED:
        return UNSIGNED_PAYLOAD;
    case SIGV4_PAYLOAD_STREAMING:
        return STREAMING_PAYLOAD;
    case SIGV4_PAYLOAD_STREAMING_TRAILER:
        return STREAMING_TRAILER;
    case SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER:
        return STREAMING_UNSIGNED_TRAILER;
    }
    return UNSIGNED_PAYLOAD;
}

static int write_canonical(const struct http_request *req, const struct sigv4_auth *auth,
                           struct sink *s)
{
    put_str(s, method_name(req));
    put(s, "\n", 1);
    if (write_uri(req, s) || write_query(req, auth, s) || write_headers(req, auth, s))
        return -1;
    put_str(s, auth->signed_headers);
    put(s, "\n", 1);
    put_str(s, payload_line(auth));
    return s->overflow ? -1 : 0;
}

long sigv4_canonical_request(const struct http_request *req, const struct sigv4_auth *auth,
                             char *out, size_t cap)
{
    struct sink s = {.buf = out, .cap = cap};

    if (cap == 0 || write_canonical(req, auth, &s))
        return -1;
    out[s.len] = '\0';
    return (long)s.len;
}

/* ---- signing ---- */

static void format_scope(const struct sigv4_auth *auth, char out[SCOPE_MAX])
{
    snprintf(out, SCOPE_MAX, "%.8s/%.63s/%.15s/" TERMINATOR, auth->date, auth->region,
             auth->service);
}

static bool derive_key(const struct sigv4_auth *auth, const char *secret, uint8_t key[32])
{
    char k[4 + SIGV4_MAX_SECRET];
    uint8_t k_date[32], k_region[32], k_service[32];
    size_t slen = strlen(secret);

    if (slen > SIGV4_MAX_SECRET)
        return false;
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret, slen);
    hmac256(k, 4 + slen, auth->date, strnlen(auth->date, sizeof(auth->date)), k_date);
    hmac256(k_date, 32, auth->region, strnlen(auth->region, sizeof(auth->region)), k_region);
    hmac256(k_region, 32, auth->service, strnlen(auth->service, sizeof(auth->service)), k_service);
    hmac256(k_service, 32, TERMINATOR, strlen(TERMINATOR), key);
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(k_date, sizeof(k_date));
    OPENSSL_cleanse(k_region, sizeof(k_region));
    OPENSSL_cleanse(k_service, sizeof(k_service));
    return true;
}

/* The request's signature with secret, hex; its signing key in key.  -1 if the request cannot
 * be canonicalised or the secret is too long. */
static int compute_signature(const struct http_request *req, const struct sigv4_auth *auth,
                             const char *secret, char hex[65], uint8_t key[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct sink s = {.md = md};
    char scope[SCOPE_MAX], sts[STS_MAX], creq_hash[65];
    uint8_t digest[32];
    unsigned int dlen;
    int n, rc = -1;

    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto out;
    if (write_canonical(req, auth, &s))
        goto out;
    EVP_DigestFinal_ex(md, digest, &dlen);
    to_hex(digest, 32, creq_hash);
    format_scope(auth, scope);
    n = snprintf(sts, sizeof(sts), ALGORITHM "\n%.16s\n%s\n%s", auth->amz_date, scope, creq_hash);
    if (!derive_key(auth, secret, key))
        goto out;
    hmac256(key, 32, sts, (size_t)n, digest);
    to_hex(digest, 32, hex);
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

void sigv4_sign(const struct http_request *req, const struct sigv4_auth *auth, const char *secret,
                char out_hex[65])
{
    uint8_t key[32];

    if (compute_signature(req, auth, secret, out_hex, key))
        out_hex[0] = '\0';
    OPENSSL_cleanse(key, sizeof(key));
}

enum s3_err sigv4_verify(const struct http_request *req, struct sigv4_auth *auth,
                         const char *secret)
{
    const char *p = auth->signed_headers;
    char hex[65];
    uint8_t key[32];
    enum s3_err e = S3E_SIGNATURE_DOES_NOT_MATCH;

    memset(auth->signing_key, 0, sizeof(auth->signing_key));
    if (auth->anonymous)
        return S3E_ACCESS_DENIED;
    while (*p) {
        const char *semi = strchr(p, ';');
        size_t nlen = semi ? (size_t)(semi - p) : strlen(p);

        if (!header_get(req, p, nlen))
            return S3E_AUTH_HEADER_MALFORMED;
        p += nlen + (semi ? 1 : 0);
    }
    if (compute_signature(req, auth, secret, hex, key) == 0 &&
        strnlen(auth->signature, sizeof(auth->signature)) == 64 &&
        CRYPTO_memcmp(hex, auth->signature, 64) == 0) {
        memcpy(auth->signing_key, key, sizeof(key));
        e = S3E_OK;
    }
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* ---- aws-chunked ---- */

enum ch_state {
    CH_LINE,    /* chunk-size line */
    CH_DATA,    /* chunk payload */
    CH_DATA_CR, /* CRLF closing the payload */
    CH_DATA_LF,
    CH_TRAILER, /* trailer lines up to the empty line */
    CH_DONE,
    CH_ERROR,
};

struct sigv4_chunked {
    enum ch_state state;
    enum s3_err err;
    enum sigv4_payload mode;
    bool signed_chunks;
    uint8_t key[32];
    char amz_date[17];
    char scope[SCOPE_MAX];
    char prev_sig[65];   /* seed, then each verified chunk's signature */
    char chunk_sig[65];  /* what the current chunk line announced */
    EVP_MD_CTX *md;      /* SHA-256 of the current chunk, then of the trailer lines */
    struct s3_cksum *ck; /* trailer_alg over the payload; NULL if none */
    enum s3_cksum_alg trailer_alg;
    char expect_b64[64]; /* trailer_alg's value, computed at the final chunk */
    int64_t decoded_length;
    int64_t total;
    uint64_t remaining; /* payload bytes left in the current chunk */
    bool small_seen;    /* a data chunk under SIGV4_MIN_CHUNK was seen: it must be the last */
    unsigned ntrailers;
    bool got_cksum, got_sig, cksum_bad;
    char trailer_sig[65];
    size_t line_len;
    char line[SIGV4_MAX_CHUNK_LINE + 2]; /* the line and its CR */
};

struct sigv4_chunked *sigv4_chunked_create(const struct sigv4_auth *auth,
                                           enum s3_cksum_alg trailer_alg, int64_t decoded_length)
{
    struct sigv4_chunked *d = calloc(1, sizeof(*d));

    if (!d)
        return NULL;
    d->mode = auth->payload;
    d->trailer_alg = trailer_alg;
    d->decoded_length = decoded_length;
    d->signed_chunks =
        d->mode == SIGV4_PAYLOAD_STREAMING || d->mode == SIGV4_PAYLOAD_STREAMING_TRAILER;
    memcpy(d->key, auth->signing_key, sizeof(d->key));
    memcpy(d->amz_date, auth->amz_date, sizeof(d->amz_date));
    d->amz_date[16] = '\0';
    memcpy(d->prev_sig, auth->signature, sizeof(d->prev_sig));
    d->prev_sig[64] = '\0';
    format_scope(auth, d->scope);
    d->md = EVP_MD_CTX_new();
    if (!d->md || EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) != 1)
        goto err;
    if (trailer_alg != S3_CK_NONE && !(d->ck = s3_cksum_create_alg(trailer_alg)))
        goto err;
    /* A mode without aws-chunked framing, or a trailer announced where none can follow, is
     * a request the caller should not have handed here: fail on the first feed. */
    if ((!d->signed_chunks && d->mode != SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER) ||
        (d->mode == SIGV4_PAYLOAD_STREAMING && trailer_alg != S3_CK_NONE)) {
        d->state = CH_ERROR;
        d->err = S3E_INVALID_REQUEST;
    }
    return d;

err:
    sigv4_chunked_destroy(d);
    return NULL;
}

void sigv4_chunked_destroy(struct sigv4_chunked *d)
{
    if (!d)
        return;
    EVP_MD_CTX_free(d->md);
    s3_cksum_destroy(d->ck);
    OPENSSL_cleanse(d->key, sizeof(d->key));
    free(d);
}

enum s3_err sigv4_chunked_error(const struct sigv4_chunked *d)
{
    return d->state == CH_ERROR ? d->err : S3E_OK;
}

static bool fail(struct sigv4_chunked *d, enum s3_err e)
{
    d->state = CH_ERROR;
    d->err = e;
    return false;
}

/* Accumulate one CRLF-terminated line.  1: d->line holds it (without CRLF, NUL-terminated);
 * 0: input exhausted; -1: too long or a bare CR / LF. */
static int take_line(struct sigv4_chunked *d, const char *in, size_t len, size_t *i)
{
    while (*i < len) {
        char c = in[(*i)++];

        if (d->line_len && d->line[d->line_len - 1] == '\r') {
            if (c != '\n')
                return -1;
            d->line[--d->line_len] = '\0';
            return 1;
        }
        if (c == '\n' || c == '\0' || d->line_len >= SIGV4_MAX_CHUNK_LINE + 1)
            return -1;
        d->line[d->line_len++] = c;
    }
    return 0;
}

/* HMAC of a chunk or trailer string to sign against the signature the client sent. */
static bool check_sig(struct sigv4_chunked *d, const char *algo, const char *extra,
                      const char *sent)
{
    char sts[STS_MAX], hash[65];
    uint8_t digest[32];
    unsigned int n;
    int len;

    EVP_DigestFinal_ex(d->md, digest, &n);
    EVP_DigestInit_ex(d->md, EVP_sha256(), NULL);
    to_hex(digest, 32, hash);
    len = snprintf(sts, sizeof(sts), "%s\n%s\n%s\n%s\n%s%s", algo, d->amz_date, d->scope,
                   d->prev_sig, extra, hash);
    hmac256(d->key, sizeof(d->key), sts, (size_t)len, digest);
    to_hex(digest, 32, hash);
    if (CRYPTO_memcmp(hash, sent, 64) != 0)
        return fail(d, S3E_SIGNATURE_DOES_NOT_MATCH);
    memcpy(d->prev_sig, hash, sizeof(d->prev_sig));
    return true;
}

/* "hex-size;chunk-signature=<64 hex>" (signed) or "hex-size" (unsigned trailer mode). */
static bool chunk_line(struct sigv4_chunked *d)
{
    static const char ext[] = ";chunk-signature=";
    const char *p = d->line;
    uint64_t size = 0;
    size_t digits = 0;

    while (is_hex(*p)) {
        if (++digits > 8)
            return fail(d, S3E_INVALID_CHUNK_SIZE);
        size = size * 16 + (uint64_t)(is_digit(*p) ? *p - '0' : (*p | 0x20) - 'a' + 10);
        p++;
    }
    if (!digits)
        return fail(d, S3E_INVALID_REQUEST);
    if (d->signed_chunks) {
        if (strncmp(p, ext, sizeof(ext) - 1) != 0)
            return fail(d, S3E_INVALID_REQUEST);
        p += sizeof(ext) - 1;
        if (!parse_sig(p, strlen(p), d->chunk_sig))
            return fail(d, S3E_INVALID_REQUEST);
    } else if (*p) {
        return fail(d, S3E_INVALID_REQUEST);
    }
    if (size > SIGV4_MAX_CHUNK)
        return fail(d, S3E_INVALID_CHUNK_SIZE);
    /* S3's rule for signed uploads: only the last data chunk may be under 8 KiB.  Unsigned
     * trailer uploads are written as the SDK's reads return, so there it does not apply. */
    if (size && d->signed_chunks) {
        if (d->small_seen)
            return fail(d, S3E_INVALID_CHUNK_SIZE);
        d->small_seen = size < SIGV4_MIN_CHUNK;
    }
    if (d->decoded_length >= 0 && (int64_t)size > d->decoded_length - d->total)
        return fail(d, S3E_INCOMPLETE_BODY);
    d->remaining = size;
    if (size) {
        d->state = CH_DATA;
    } else {
        /* The final chunk has no payload and no CRLF of its own: trailers follow directly. */
        if (d->signed_chunks &&
            !check_sig(d, "AWS4-HMAC-SHA256-PAYLOAD", EMPTY_SHA256 "\n", d->chunk_sig))
            return false;
        if (d->decoded_length >= 0 && d->total != d->decoded_length)
            return fail(d, S3E_INCOMPLETE_BODY);
        if (d->ck)
            s3_cksum_final(d->ck, NULL, NULL, d->expect_b64);
        d->state = CH_TRAILER;
    }
    return true;
}

static bool trailer_line(struct sigv4_chunked *d)
{
    static const char sig_name[] = "x-amz-trailer-signature";
    char *colon = strchr(d->line, ':');
    const char *val;
    size_t nlen, vlen;

    if (!colon || d->mode == SIGV4_PAYLOAD_STREAMING || d->got_sig ||
        ++d->ntrailers > SIGV4_MAX_TRAILERS)
        return fail(d, S3E_INVALID_REQUEST);
    nlen = (size_t)(colon - d->line);
    val = colon + 1;
    while (is_space(*val))
        val++;
    vlen = strlen(val);
    while (vlen && is_space(val[vlen - 1]))
        vlen--;
    if (nlen == sizeof(sig_name) - 1 && strncasecmp(d->line, sig_name, nlen) == 0) {
        if (d->mode != SIGV4_PAYLOAD_STREAMING_TRAILER || !parse_sig(val, vlen, d->trailer_sig))
            return fail(d, S3E_INVALID_REQUEST);
        d->got_sig = true;
        return true;
    }
    /* The signed text is each trailer line as sent, newline-terminated. */
    if (d->signed_chunks) {
        EVP_DigestUpdate(d->md, d->line, d->line_len);
        EVP_DigestUpdate(d->md, "\n", 1);
    }
    *colon = '\0';
    if (d->trailer_alg == S3_CK_NONE || s3_cksum_alg_from_header(d->line) != d->trailer_alg ||
        d->got_cksum)
        return fail(d, S3E_INVALID_REQUEST);
    d->got_cksum = true;
    d->cksum_bad = !span_eq(val, vlen, d->expect_b64);
    return true;
}

/* The empty line after the trailers: the trailer signature first (a forged trailer is a
 * signature error, not a digest one), then the checksum. */
static bool trailers_done(struct sigv4_chunked *d)
{
    if (d->mode == SIGV4_PAYLOAD_STREAMING_TRAILER) {
        if (!d->got_sig)
            return fail(d, S3E_INVALID_REQUEST);
        if (!check_sig(d, "AWS4-HMAC-SHA256-TRAILER", "", d->trailer_sig))
            return false;
    }
    if (d->trailer_alg != S3_CK_NONE && !d->got_cksum)
        return fail(d, S3E_INVALID_REQUEST);
    if (d->cksum_bad)
        return fail(d, S3E_BAD_DIGEST);
    d->state = CH_DONE;
    return true;
}

enum sigv4_chunk_event sigv4_chunked_feed(struct sigv4_chunked *d, const char *in, size_t len,
                                          size_t *consumed, const char **data, size_t *data_len)
{
    size_t i = 0, n;
    int r;

    *consumed = 0;
    *data = NULL;
    *data_len = 0;
    while (i < len && d->state != CH_DONE && d->state != CH_ERROR) {
        switch (d->state) {
        case CH_LINE:
        case CH_TRAILER:
            r = take_line(d, in, len, &i);
            if (r < 0) {
                fail(d, S3E_INVALID_REQUEST);
                break;
            }
            if (r == 0)
                break;
            if (d->state == CH_LINE)
                chunk_line(d);
            else if (d->line_len)
                trailer_line(d);
            else
                trailers_done(d);
            d->line_len = 0;
            break;
        case CH_DATA:
            n = (size_t)CAIRN_MIN((uint64_t)(len - i), d->remaining);
            if (d->signed_chunks)
                EVP_DigestUpdate(d->md, in + i, n);
            if (d->ck)
                s3_cksum_update(d->ck, in + i, n);
            d->total += (int64_t)n;
            d->remaining -= n;
            if (!d->remaining)
                d->state = CH_DATA_CR;
            *data = in + i;
            *data_len = n;
            *consumed = i + n;
            return SIGV4_CH_DATA;
        case CH_DATA_CR:
            if (in[i++] != '\r')
                fail(d, S3E_INVALID_REQUEST);
            else
                d->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (in[i++] != '\n')
                fail(d, S3E_INVALID_REQUEST);
            else if (!d->signed_chunks ||
                     check_sig(d, "AWS4-HMAC-SHA256-PAYLOAD", EMPTY_SHA256 "\n", d->chunk_sig))
                d->state = CH_LINE;
            break;
        case CH_DONE:
        case CH_ERROR:
            break;
        }
    }
    *consumed = i;
    if (d->state == CH_ERROR)
        return SIGV4_CH_ERROR;
    return d->state == CH_DONE ? SIGV4_CH_DONE : SIGV4_CH_NEED_MORE;
}
