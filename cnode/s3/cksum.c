/*
 * cksum.c - running body checksums for the S3 head and base64 (see cksum.h).
 *
 * One object is fed every byte of a request body once and computes, in a single pass, the
 * MD5 the ETag needs, the SHA-256 a signed payload hash needs and the one x-amz-checksum-*
 * algorithm the client asked for.  The hashes come from OpenSSL's EVP interface; CRC32 and
 * CRC32C come from ISA-L (crc32_gzip_refl is zlib's CRC32; CRC32C goes through ec_crc32c(),
 * which already wraps crc32_iscsi into the standard, chainable CRC32C).
 *
 * S3 prints a CRC as the base64 of its four bytes in big-endian order, and a hash as the
 * base64 of its digest; s3_cksum_final() produces exactly that text so a checksum header
 * or trailer can be compared as a string.
 */
#include "cnode/s3/cksum.h"

#include <isa-l/crc.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ec/ec.h"

struct s3_cksum {
    EVP_MD_CTX *md5;    /* NULL when not wanted (s3_cksum_create_alg) */
    EVP_MD_CTX *sha256; /* NULL when not wanted */
    EVP_MD_CTX *alg_md; /* SHA-1 or SHA-256 for the x-amz-checksum algorithm */
    enum s3_cksum_alg alg;
    uint32_t crc; /* CRC32 or CRC32C so far, standard (chainable) form */
};

static const struct {
    enum s3_cksum_alg alg;
    const char *header;
} alg_names[] = {
    {S3_CK_CRC32, "x-amz-checksum-crc32"},
    {S3_CK_CRC32C, "x-amz-checksum-crc32c"},
    {S3_CK_SHA1, "x-amz-checksum-sha1"},
    {S3_CK_SHA256, "x-amz-checksum-sha256"},
};

static EVP_MD_CTX *md_start(const EVP_MD *type)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx && EVP_DigestInit_ex(ctx, type, NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

static struct s3_cksum *cksum_create(bool want_md5, bool want_sha256, enum s3_cksum_alg alg)
{
    struct s3_cksum *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->alg = alg;
    if (want_md5 && !(c->md5 = md_start(EVP_md5())))
        goto err;
    if (want_sha256 && !(c->sha256 = md_start(EVP_sha256())))
        goto err;
    if (alg == S3_CK_SHA1 && !(c->alg_md = md_start(EVP_sha1())))
        goto err;
    if (alg == S3_CK_SHA256 && !(c->alg_md = md_start(EVP_sha256())))
        goto err;
    return c;

err:
    s3_cksum_destroy(c);
    return NULL;
}

struct s3_cksum *s3_cksum_create(bool want_sha256, enum s3_cksum_alg alg)
{
    return cksum_create(true, want_sha256, alg);
}

struct s3_cksum *s3_cksum_create_nomd5(bool want_sha256, enum s3_cksum_alg alg)
{
    return cksum_create(false, want_sha256, alg);
}

struct s3_cksum *s3_cksum_create_alg(enum s3_cksum_alg alg)
{
    return cksum_create(false, false, alg);
}

void s3_cksum_destroy(struct s3_cksum *c)
{
    if (!c)
        return;
    EVP_MD_CTX_free(c->md5);
    EVP_MD_CTX_free(c->sha256);
    EVP_MD_CTX_free(c->alg_md);
    free(c);
}

void s3_cksum_update(struct s3_cksum *c, const void *data, size_t len)
{
    if (!len)
        return;
    /* EVP_DigestUpdate on an initialised context cannot fail for these digests. */
    if (c->md5)
        EVP_DigestUpdate(c->md5, data, len);
    if (c->sha256)
        EVP_DigestUpdate(c->sha256, data, len);
    if (c->alg_md)
        EVP_DigestUpdate(c->alg_md, data, len);
    if (c->alg == S3_CK_CRC32)
        c->crc = crc32_gzip_refl(c->crc, data, len);
    else if (c->alg == S3_CK_CRC32C)
        c->crc = ec_crc32c(c->crc, data, len);
}

static void md_final(EVP_MD_CTX *ctx, uint8_t *out)
{
    unsigned int n;

    EVP_DigestFinal_ex(ctx, out, &n);
}

void s3_cksum_final(struct s3_cksum *c, uint8_t md5[16], uint8_t sha256[32], char *alg_b64)
{
    uint8_t digest[EVP_MAX_MD_SIZE];
    size_t n = 0;

    if (c->md5 && md5)
        md_final(c->md5, md5);
    if (c->sha256 && sha256)
        md_final(c->sha256, sha256);
    if (!alg_b64)
        return;
    switch (c->alg) {
    case S3_CK_CRC32:
    case S3_CK_CRC32C:
        digest[0] = (uint8_t)(c->crc >> 24);
        digest[1] = (uint8_t)(c->crc >> 16);
        digest[2] = (uint8_t)(c->crc >> 8);
        digest[3] = (uint8_t)c->crc;
        n = 4;
        break;
    case S3_CK_SHA1:
        md_final(c->alg_md, digest);
        n = 20;
        break;
    case S3_CK_SHA256:
        md_final(c->alg_md, digest);
        n = 32;
        break;
    case S3_CK_NONE:
        break;
    }
    alg_b64[0] = '\0';
    if (n)
        s3_base64_encode(digest, n, alg_b64, 64);
}

enum s3_cksum_alg s3_cksum_alg_from_header(const char *name)
{
    for (size_t i = 0; name && i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (strcasecmp(name, alg_names[i].header) == 0)
            return alg_names[i].alg;
    return S3_CK_NONE;
}

const char *s3_cksum_header_name(enum s3_cksum_alg alg)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (alg_names[i].alg == alg)
            return alg_names[i].header;
    return NULL;
}

long s3_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t need = 4 * ((len + 2) / 3);

    if (len > (size_t)INT32_MAX / 2 || cap < need + 1)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

static bool b64_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '+' || ch == '/';
}

long s3_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    /* EVP_DecodeBlock tolerates surrounding whitespace and counts padding as zero bytes, so the
     * input is checked to be canonical first and the last quantum decoded on the side. */
    uint8_t last[3];
    size_t pad = 0, n;

    if (len % 4 || len > (size_t)INT32_MAX / 2)
        return -1;
    if (len == 0)
        return 0;
    if (in[len - 1] == '=')
        pad = in[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_char(in[i]))
            return -1;
    n = len / 4 * 3 - pad;
    if (cap < n)
        return -1;
    if (len > 4 && EVP_DecodeBlock(out, (const unsigned char *)in, (int)(len - 4)) < 0)
        return -1;
    if (EVP_DecodeBlock(last, (const unsigned char *)in + len - 4, 4) != 3)
        return -1;
    memcpy(out + (len / 4 - 1) * 3, last, 3 - pad);
    return (long)n;
}
