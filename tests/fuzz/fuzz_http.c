/*
 * fuzz_http.c - libFuzzer harness for the HTTP/1.1 request parser (cnode/http/http.c).
 *
 * The parser is the first code every byte from an S3 client meets.  The first input byte picks
 * the size of the reads (0: everything at once), the rest is the byte stream, fed in pieces as
 * a server would, each piece an exact-size heap copy (ASan sees any read past what was given).
 * Checked on every call: consumed <= len, NEED_MORE only when everything was consumed, progress
 * (no two events in a row without consuming input), body spans non-empty and inside the input
 * consumed by that call, errors sticky and with a documented status, heads self-consistent.
 * Then the same stream is parsed again in one piece: the digest of the events (heads, body
 * bytes, ends, error status) must not depend on how the input was cut.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/http/http.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

struct digest {
    uint64_t h;
    int status;
    uint64_t body_bytes; /* body bytes of the current request */
};

static void mix(struct digest *d, const void *s, size_t n)
{
    const unsigned char *b = s;

    for (size_t i = 0; i < n; i++)
        d->h = (d->h ^ b[i]) * 0x100000001b3ull; /* FNV-1a */
}

static void mix_str(struct digest *d, const char *s, size_t n)
{
    mix(d, &n, sizeof(n));
    mix(d, s, n);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static void check_head(struct digest *d, const struct http_request *r)
{
    CHECK(r);
    CHECK(r->method_name && r->target && r->path && r->query);
    CHECK(strlen(r->target) == r->target_len && r->target_len <= HTTP_MAX_TARGET);
    CHECK(strlen(r->path) == r->path_len && strlen(r->query) == r->query_len);
    CHECK(r->path_len <= r->target_len && !memcmp(r->path, r->target, r->path_len));
    CHECK(r->target[0] == '/' || (r->target_len == 1 && r->method == HTTP_OPTIONS));
    CHECK(r->version_minor <= 1);
    CHECK(r->nheaders <= HTTP_MAX_HEADERS);
    CHECK(r->content_length >= -1);
    CHECK(!r->chunked || r->content_length == -1);
    CHECK(!r->expect_continue || r->version_minor == 1);
    mix_str(d, r->method_name, strlen(r->method_name));
    mix_str(d, r->target, r->target_len);
    mix(d, &r->content_length, sizeof(r->content_length));
    mix(d, &r->version_minor, sizeof(r->version_minor));
    mix(d, &r->nheaders, sizeof(r->nheaders));
    for (unsigned i = 0; i < r->nheaders; i++) {
        const struct http_header *h = &r->headers[i];

        CHECK(h->name_len > 0 && strlen(h->name) == h->name_len);
        CHECK(strlen(h->value) == h->value_len);
        for (size_t k = 0; k < h->name_len; k++)
            CHECK(!(h->name[k] >= 'A' && h->name[k] <= 'Z') && h->name[k] > ' ' &&
                  h->name[k] != ':');
        CHECK(h->value_len == 0 || (!is_ws(h->value[0]) && !is_ws(h->value[h->value_len - 1])));
        CHECK(http_header_find(r, h->name) != NULL);
        mix_str(d, h->name, h->name_len);
        mix_str(d, h->value, h->value_len);
    }
}

/* Parse data[0..size) in reads of `step` bytes (0: one read); returns the event digest. */
static struct digest run(const uint8_t *data, size_t size, size_t step)
{
    struct http_parser *p = http_parser_create();
    struct digest d = {.h = 0xcbf29ce484222325ull};
    uint8_t *left = NULL;
    size_t nleft = 0, from = 0;

    if (!p)
        abort();
    while (from < size && d.status == 0) {
        size_t take = step ? step : size, n, off = 0;
        unsigned zero = 0;
        uint8_t *buf;

        if (take > size - from)
            take = size - from;
        n = nleft + take;
        buf = malloc(n);
        CHECK(buf);
        if (nleft)
            memcpy(buf, left, nleft);
        memcpy(buf + nleft, data + from, take);
        from += take;
        free(left);
        left = NULL;
        for (;;) {
            const char *in = (const char *)buf + off, *body = NULL;
            size_t consumed = SIZE_MAX, body_len = SIZE_MAX;
            enum http_event ev = http_parser_feed(p, in, n - off, &consumed, &body, &body_len);
            const struct http_request *r;

            CHECK(consumed <= n - off);
            if (ev == HTTP_EV_BODY) {
                CHECK(body_len > 0 && body >= in && body + body_len <= in + consumed);
                r = http_parser_request(p);
                CHECK(r);
                d.body_bytes += body_len;
                CHECK(r->content_length < 0 || d.body_bytes <= (uint64_t)r->content_length);
                mix(&d, body, body_len);
            } else {
                CHECK(body == NULL && body_len == 0);
            }
            off += consumed;
            zero = consumed ? 0 : zero + 1;
            if (ev == HTTP_EV_NEED_MORE) {
                CHECK(off == n);
                break;
            }
            if (ev == HTTP_EV_ERROR) {
                static const int allowed[] = {400, 411, 413, 414, 417, 431, 501, 505};
                bool ok = false;

                d.status = http_parser_error_status(p);
                for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
                    ok |= d.status == allowed[i];
                CHECK(ok);
                CHECK(http_parser_error_reason(p) != NULL);
                CHECK(http_parser_feed(p, in, n - off, &consumed, &body, &body_len) ==
                      HTTP_EV_ERROR);
                break;
            }
            CHECK(zero <= 1); /* only DONE may consume nothing, and not twice */
            if (ev == HTTP_EV_HEAD) {
                mix(&d, "H", 1);
                check_head(&d, http_parser_request(p));
                d.body_bytes = 0;
            } else if (ev != HTTP_EV_BODY) {
                CHECK(ev == HTTP_EV_DONE);
                r = http_parser_request(p);
                CHECK(r);
                CHECK(r->content_length < 0 || d.body_bytes == (uint64_t)r->content_length);
                mix(&d, "D", 1);
            }
        }
        if (off < n) {
            nleft = n - off;
            left = malloc(nleft);
            CHECK(left);
            memcpy(left, buf + off, nleft);
        } else {
            nleft = 0;
        }
        free(buf);
    }
    free(left);
    http_parser_destroy(p);
    return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct digest split, whole;
    size_t step;

    if (size == 0)
        return 0;
    step = data[0]; /* 0: one read */
    data++;
    size--;
    split = run(data, size, step);
    whole = run(data, size, 0);
    CHECK(split.status == whole.status);
    CHECK(split.h == whole.h);
    return 0;
}
