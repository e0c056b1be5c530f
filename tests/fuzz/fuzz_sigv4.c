/*
 * fuzz_sigv4.c - libFuzzer harness for SigV4 parsing, canonicalisation and verification, and
 * for the aws-chunked body decoder.
 *
 * Input layout (text, so the seed corpus is readable):
 *
 *     byte 0      flags: bits 0-1 feed step (whole, 1, 7, 61 bytes), bits 2-4 trailer
 *                 checksum (mod 5), bit 5 decoded length from x-amz-decoded-content-length,
 *                 bits 6-7 clock (the documented examples' time + 0, 600, 1000, 90000 s)
 *     line        method
 *     line        path
 *     line        query
 *     lines       "name:value" headers, up to an empty line (names lowercased, values trimmed,
 *                 as the HTTP parser hands them over)
 *     the rest    the request body, fed to an aws-chunked decoder
 *
 * The secret is the documentation's, so the documented examples in the seed corpus verify and
 * the decoder's signed paths are reachable.  Every field is copied to an exact-size heap
 * buffer so ASan sees any read past it.  Checked: canonical text length, a successful verify
 * agreeing with sigv4_sign(), data spans inside the fed input, never more payload than the
 * declared decoded length, and a stable outcome after DONE or ERROR.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/s3/sigv4.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DOC_TIME ((time_t)1369353600)
#define MAX_HDRS 16

struct fuzz_req {
    struct http_request r;
    struct http_header h[MAX_HDRS];
    char *owned[3 + 2 * MAX_HDRS];
    unsigned nowned;
};

static char *dup_span(struct fuzz_req *q, const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);

    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    q->owned[q->nowned++] = s;
    return s;
}

/* Next '\n'-terminated line of [*p, end); false at the end of input. */
static bool next_line(const uint8_t **p, const uint8_t *end, const uint8_t **line, size_t *len)
{
    const uint8_t *nl;

    if (*p >= end)
        return false;
    nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl)
        return false;
    *line = *p;
    *len = (size_t)(nl - *p);
    *p = nl + 1;
    return true;
}

static void run_body(const struct sigv4_auth *auth, enum s3_cksum_alg alg, int64_t dlen,
                     const char *body, size_t len, size_t step)
{
    struct sigv4_chunked *d = sigv4_chunked_create(auth, alg, dlen);
    size_t off = 0;
    int64_t total = 0;
    enum sigv4_chunk_event ev = SIGV4_CH_NEED_MORE;

    if (!d)
        return;
    while (off < len && ev != SIGV4_CH_DONE && ev != SIGV4_CH_ERROR) {
        size_t piece = len - off < step ? len - off : step, used = 0;

        while (used < piece) {
            const char *data;
            size_t n, consumed;

            ev = sigv4_chunked_feed(d, body + off + used, piece - used, &consumed, &data, &n);
            if (consumed > piece - used)
                abort();
            if (ev == SIGV4_CH_DATA) {
                if (!n || data < body + off + used || data + n > body + off + used + consumed)
                    abort();
                total += (int64_t)n;
                if (dlen >= 0 && total > dlen)
                    abort();
            }
            used += consumed;
            if (ev == SIGV4_CH_DONE || ev == SIGV4_CH_ERROR)
                break;
            if (ev == SIGV4_CH_NEED_MORE && used != piece)
                abort();
        }
        off += piece;
    }
    if ((ev == SIGV4_CH_ERROR && sigv4_chunked_error(d) == S3E_OK) ||
        (ev == SIGV4_CH_DONE && sigv4_chunked_error(d) != S3E_OK))
        abort();
    if (ev == SIGV4_CH_DONE || ev == SIGV4_CH_ERROR) {
        /* Sticky: more input changes nothing. */
        const char *data;
        size_t n, consumed;

        if (sigv4_chunked_feed(d, "0\r\n", 3, &consumed, &data, &n) != ev || consumed)
            abort();
    }
    sigv4_chunked_destroy(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t steps[] = {SIZE_MAX, 1, 7, 61};
    static const time_t clock_off[] = {0, 600, 1000, 90000};
    struct fuzz_req q;
    struct sigv4_auth auth;
    const uint8_t *p, *end = data + size, *line;
    size_t len;
    uint8_t flags;
    char *creq, sig[65];
    int64_t dlen = -1;
    enum s3_cksum_alg alg;

    if (size < 1)
        return 0;
    memset(&q, 0, sizeof(q));
    flags = data[0];
    p = data + 1;

    if (!next_line(&p, end, &line, &len))
        return 0;
    q.r.method_name = dup_span(&q, line, len);
    q.r.method = HTTP_GET;
    if (!next_line(&p, end, &line, &len))
        goto out;
    q.r.path = dup_span(&q, line, len);
    q.r.path_len = len;
    if (!next_line(&p, end, &line, &len))
        goto out;
    q.r.query = dup_span(&q, line, len);
    q.r.query_len = len;
    q.r.content_length = -1;
    while (q.r.nheaders < MAX_HDRS && next_line(&p, end, &line, &len) && len) {
        const uint8_t *colon = memchr(line, ':', len);
        struct http_header *h = &q.h[q.r.nheaders];
        size_t nlen, vstart, vend;
        char *name;

        if (!colon)
            continue;
        nlen = (size_t)(colon - line);
        name = dup_span(&q, line, nlen);
        for (size_t i = 0; i < nlen; i++)
            if (name[i] >= 'A' && name[i] <= 'Z')
                name[i] = (char)(name[i] - 'A' + 'a');
        vstart = nlen + 1;
        vend = len;
        while (vstart < vend && (line[vstart] == ' ' || line[vstart] == '\t'))
            vstart++;
        while (vend > vstart && (line[vend - 1] == ' ' || line[vend - 1] == '\t'))
            vend--;
        h->name = name;
        h->name_len = nlen;
        h->value = dup_span(&q, line + vstart, vend - vstart);
        h->value_len = vend - vstart;
        q.r.nheaders++;
        if (nlen == 28 && memcmp(name, "x-amz-decoded-content-length", 28) == 0 && (flags & 0x20))
            dlen = strtoll(h->value, NULL, 10);
    }
    q.r.headers = q.h;

    alg = (enum s3_cksum_alg)(((flags >> 2) & 7) % 5);
    if (sigv4_parse(&q.r, DOC_TIME + clock_off[flags >> 6], &auth) == S3E_OK && !auth.anonymous) {
        size_t cap = 64 * 1024;
        long n;

        creq = malloc(cap);
        if (!creq)
            abort();
        n = sigv4_canonical_request(&q.r, &auth, creq, cap);
        if (n >= 0 && ((size_t)n >= cap || strlen(creq) != (size_t)n))
            abort();
        if (sigv4_verify(&q.r, &auth, SECRET) == S3E_OK) {
            sigv4_sign(&q.r, &auth, SECRET, sig);
            if (n < 0 || strcmp(sig, auth.signature) != 0)
                abort();
        }
        free(creq);
    } else {
        /* Still exercise the decoder's unsigned and signed paths with some auth. */
        static const enum sigv4_payload modes[] = {SIGV4_PAYLOAD_STREAMING,
                                                   SIGV4_PAYLOAD_STREAMING_TRAILER,
                                                   SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER};

        memset(&auth, 0, sizeof(auth));
        auth.payload = modes[(flags >> 2) % 3];
    }
    run_body(&auth, alg, dlen, (const char *)p, (size_t)(end - p), steps[flags & 3]);

out:
    for (unsigned i = 0; i < q.nowned; i++)
        free(q.owned[i]);
    return 0;
}
