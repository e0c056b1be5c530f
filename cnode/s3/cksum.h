/*
 * cksum.h - running body checksums for the S3 head: MD5 (Content-MD5), CRC32, CRC32C, SHA-1,
 * SHA-256 (signed payloads and x-amz-checksum-*), and base64 as S3 prints digests.
 *
 * One object is fed every byte of a body once and computes all that was asked in one pass.
 */
#ifndef CAIRN_S3_CKSUM_H
#define CAIRN_S3_CKSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum s3_cksum_alg { S3_CK_NONE, S3_CK_CRC32, S3_CK_CRC32C, S3_CK_SHA1, S3_CK_SHA256 };

struct s3_cksum; /* opaque */

/* Compute MD5 always, SHA-256 if want_sha256, and alg (S3_CK_NONE for none).  NULL on ENOMEM. */
struct s3_cksum *s3_cksum_create(bool want_sha256, enum s3_cksum_alg alg);
/* SHA-256 if want_sha256 and alg, no MD5: for object bodies, whose MD5 the file system computes
 * as it stores them (it is their ETag). */
struct s3_cksum *s3_cksum_create_nomd5(bool want_sha256, enum s3_cksum_alg alg);
/* Only alg (no MD5, no SHA-256): what the aws-chunked decoder checks a trailer against. */
struct s3_cksum *s3_cksum_create_alg(enum s3_cksum_alg alg);
void s3_cksum_destroy(struct s3_cksum *c); /* accepts NULL */
void s3_cksum_update(struct s3_cksum *c, const void *data, size_t len);
/* Finish: md5 (16 bytes) always; sha256 (32) if asked; alg_b64: base64 of the alg's digest as
 * S3 prints it in x-amz-checksum-* (NUL-terminated, cap >= 64), "" for S3_CK_NONE.  Any of
 * the three outputs may be NULL; md5 and sha256 are left alone when not computed. */
void s3_cksum_final(struct s3_cksum *c, uint8_t md5[16], uint8_t sha256[32], char *alg_b64);
/* "x-amz-checksum-crc32c" -> S3_CK_CRC32C etc.; S3_CK_NONE if not one of the four. */
enum s3_cksum_alg s3_cksum_alg_from_header(const char *name);
const char *s3_cksum_header_name(enum s3_cksum_alg alg);
/* Base64 encode/decode (OpenSSL EVP): return the output length or -1. */
long s3_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap);
long s3_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif
