/*
 * req.c - what every S3 operation asks of its request: query parameters, headers, the bucket
 * it names and whether the caller may use it (see req.h).
 */
#include <ctype.h>
#include <string.h>

#include "cnode/s3/req.h"
#include "common/cairn.h"

const char *s3_param(const struct s3_req *q, const char *name)
{
    for (unsigned i = 0; i < q->nparams; i++)
        if (!strcmp(q->params[i].name, name))
            return q->params[i].value;
    return NULL;
}

const char *s3_hdr(const struct s3_req *q, const char *name)
{
    const struct http_header *h = http_header_find(q->h, name);

    return h ? h->value : NULL;
}

void s3_hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = 0;
}

bool s3_bucket_name_valid(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '-' ||
              b[i] == '.'))
            return false;
    return isalnum((unsigned char)b[0]) && isalnum((unsigned char)b[n - 1]);
}

enum s3_err s3_bucket_open(struct s3_req *q, bool write, uint64_t *ino, Cairn__Inode **bin)
{
    Cairn__Inode *in = NULL;
    enum s3_err e = S3E_OK;
    int rc = fs_bucket_get(q->fs, q->bucket, ino, &in);

    if (rc == CAIRN_ENOENT)
        e = S3E_NO_SUCH_BUCKET;
    else if (rc)
        e = s3e(rc);
    else if (!q->user && (write || !in->public_read))
        e = S3E_ACCESS_DENIED;
    if (!e && bin)
        *bin = in;
    else
        fs_inode_free(in);
    return e;
}
