/*
 * sigv4.h - AWS Signature Version 4 for the S3 head: header and presigned (query) auth,
 * and the aws-chunked body decoder that checks every chunk signature and checksum trailer.
 *
 * Pure functions over a parsed HTTP head (no I/O, no global state); HMAC and SHA-256 come
 * from OpenSSL.  The caller looks up the secret for the access key itself (it lives in the
 * metadata on the D-nodes), so the flow is:
 *
 *     sigv4_parse(req, now, &auth)            -> S3E_OK or the S3 error to answer
 *     secret = lookup(auth.access_key)        -> InvalidAccessKeyId if unknown
 *     sigv4_verify(req, &auth, secret)        -> S3E_OK / SignatureDoesNotMatch / ...
 *
 * Canonicalisation follows the S3 variant of SigV4: the canonical URI is the request path
 * percent-decoded once and re-encoded (RFC 3986 unreserved characters kept, '/' kept, every
 * other byte %XX uppercase), without path normalisation; the canonical query string sorts
 * parameters by encoded name then value, re-encodes both (a parameter without '=' has an
 * empty value), and for presigned requests leaves out X-Amz-Signature; canonical headers are
 * the signed headers, lowercase, values trimmed with inner runs of spaces collapsed, joined
 * with ',' when a header repeats.  The signature comparison is constant-time.
 */
#ifndef CAIRN_CN_SIGV4_H
#define CAIRN_CN_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cnode/http/http.h"
#include "cnode/s3/cksum.h"
#include "cnode/s3/err.h"

#define SIGV4_MAX_SKEW_S 900                 /* 15 minutes */
#define SIGV4_MAX_PRESIGN_EXPIRES (7 * 86400) /* 7 days */
#define SIGV4_MAX_ACCESS_KEY 128u
#define SIGV4_MAX_SIGNED_HEADERS 64u
#define SIGV4_MAX_CHUNK (16u << 20)          /* largest aws-chunked chunk we accept */

#define SIGV4_MIN_CHUNK 8192u     /* signed aws-chunked: every data chunk but the last is >= this */
#define SIGV4_MAX_SECRET 128u     /* longest secret key sigv4_verify()/sigv4_sign() accept */
#define SIGV4_MAX_CHUNK_LINE 256u /* aws-chunked chunk-size line or trailer line, without CRLF */
#define SIGV4_MAX_TRAILERS 8u     /* trailer lines after the final chunk */

/* What x-amz-content-sha256 says about the body. */
enum sigv4_payload {
    SIGV4_PAYLOAD_HASH,       /* hex SHA-256 of the body: the caller verifies it at the end */
    SIGV4_PAYLOAD_UNSIGNED,   /* UNSIGNED-PAYLOAD (always so for presigned requests) */
    SIGV4_PAYLOAD_STREAMING,  /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD: aws-chunked, signed chunks */
    SIGV4_PAYLOAD_STREAMING_TRAILER,          /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER */
    SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER, /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
};

struct sigv4_auth {
    bool anonymous;  /* no Authorization header and no X-Amz-Credential: not signed at all */
    bool presigned;  /* query-string auth */
    char access_key[SIGV4_MAX_ACCESS_KEY + 1];
    char date[9];    /* scope date YYYYMMDD */
    char region[64];
    char service[16];
    char amz_date[17]; /* YYYYMMDDTHHMMSSZ, from X-Amz-Date (or Date header) */
    time_t request_time;
    uint32_t expires;  /* presigned: X-Amz-Expires */
    char signed_headers[1024]; /* as given: "host;x-amz-date;..." */
    char signature[65];        /* lowercase hex */
    enum sigv4_payload payload;
    char payload_sha256[65];   /* SIGV4_PAYLOAD_HASH: the expected body hash, lowercase hex */
    uint8_t signing_key[32];   /* set by sigv4_verify(): for chunk signatures */
};

/* Parse the auth of a request (Authorization header, or X-Amz-* query parameters) and check
 * what needs no secret: algorithm AWS4-HMAC-SHA256, credential scope shape (.../s3/aws4_request),
 * the scope date matching X-Amz-Date, clock skew within SIGV4_MAX_SKEW_S of now (header auth)
 * or now within [request_time - SIGV4_MAX_SKEW_S, request_time + expires] (presigned, expires
 * <= 7 days; the skew allowance is for a client clock slightly ahead), host among the signed
 * headers, x-amz-content-sha256 present and well formed for header auth.
 * Errors: S3E_AUTH_HEADER_MALFORMED, S3E_AUTH_QUERY_PARAMS_ERROR, S3E_ACCESS_DENIED (expired
 * presigned URL: "Request has expired", or one not valid yet; no valid Date or X-Amz-Date),
 * S3E_REQUEST_TIME_TOO_SKEWED, S3E_INVALID_ARGUMENT (an algorithm other than AWS4-HMAC-SHA256,
 * both header and query auth, a bad x-amz-content-sha256), S3E_MISSING_SECURITY_HEADER (no
 * x-amz-content-sha256).  An unsigned request gives S3E_OK with auth->anonymous. */
enum s3_err sigv4_parse(const struct http_request *req, time_t now, struct sigv4_auth *auth);

/* Recompute the signature with secret and compare (constant time).  On S3E_OK fills
 * auth->signing_key.  Errors: S3E_SIGNATURE_DOES_NOT_MATCH, S3E_AUTH_HEADER_MALFORMED (a signed
 * header missing from the request), S3E_ACCESS_DENIED (auth->anonymous: nothing to verify). */
enum s3_err sigv4_verify(const struct http_request *req, struct sigv4_auth *auth,
                         const char *secret);

/* The canonical request text (exposed for tests and the fuzz harness).  Writes at most cap
 * bytes including a NUL; returns its length, or -1 if it does not fit or the request cannot be
 * canonicalised (bad percent-encoding, missing signed header). */
long sigv4_canonical_request(const struct http_request *req, const struct sigv4_auth *auth,
                             char *out, size_t cap);

/* Sign a request as a client would (used by tests and tools): compute the hex signature of the
 * canonical request for auth's scope with secret. */
void sigv4_sign(const struct http_request *req, const struct sigv4_auth *auth, const char *secret,
                char out_hex[65]);

/* ---- aws-chunked bodies ---- */

struct sigv4_chunked; /* opaque decoder state */

enum sigv4_chunk_event {
    SIGV4_CH_NEED_MORE, /* all input consumed */
    SIGV4_CH_DATA,      /* *data, *data_len: payload bytes (a span of the input) */
    SIGV4_CH_DONE,      /* final chunk (and trailers) read and verified */
    SIGV4_CH_ERROR,     /* see sigv4_chunked_error() */
};

/* A decoder for an aws-chunked body signed per auth (after sigv4_verify succeeded: the seed
 * signature is auth->signature).  For the *_TRAILER modes, trailer_alg is the checksum the
 * x-amz-trailer header announced (S3_CK_NONE if none); the decoder computes it over the
 * payload and compares it with the trailer value.  decoded_length is
 * x-amz-decoded-content-length (-1 if absent): the payload must have exactly that length.
 * Payload bytes of a chunk are handed out before that chunk's signature is checked (the caller
 * must not commit anything before SIGV4_CH_DONE).  NULL on ENOMEM.  An auth->payload that is
 * not aws-chunked, or a trailer_alg for plain STREAMING, gives a decoder whose first feed fails
 * with S3E_INVALID_REQUEST. */
struct sigv4_chunked *sigv4_chunked_create(const struct sigv4_auth *auth,
                                           enum s3_cksum_alg trailer_alg, int64_t decoded_length);
void sigv4_chunked_destroy(struct sigv4_chunked *d); /* accepts NULL */
enum sigv4_chunk_event sigv4_chunked_feed(struct sigv4_chunked *d, const char *in, size_t len,
                                          size_t *consumed, const char **data, size_t *data_len);
/* After SIGV4_CH_ERROR: S3E_SIGNATURE_DOES_NOT_MATCH (bad chunk or trailer signature),
 * S3E_BAD_DIGEST (trailer checksum mismatch), S3E_INCOMPLETE_BODY (length mismatch),
 * S3E_INVALID_CHUNK_SIZE or S3E_INVALID_REQUEST (malformed framing). */
enum s3_err sigv4_chunked_error(const struct sigv4_chunked *d);

#endif
