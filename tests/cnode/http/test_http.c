/*
 * HTTP request parser tests: the events and the parsed head of valid requests (simple, with
 * headers to normalise, Content-Length and chunked bodies, pipelined), the same results whatever
 * way the input is cut into reads (every split point, one byte at a time, random pieces), body
 * spans that point into the caller's input, and each class of malformed or oversized input with
 * the status it must be answered with.  Every piece handed to the parser is a fresh heap buffer
 * of exactly its size, so a read past what the parser was given is an ASan error.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/http/http.h"

/* ---- a growable byte log of everything the parser reported ---- */

struct log {
    char *b;
    size_t len, cap;
};

static void log_put(struct log *l, const void *s, size_t n)
{
    if (l->len + n + 1 > l->cap) {
        l->cap = (l->len + n + 1) * 2;
        l->b = realloc(l->b, l->cap);
        cr_assert(l->b);
    }
    memcpy(l->b + l->len, s, n);
    l->len += n;
    l->b[l->len] = '\0';
}

static void log_printf(struct log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_printf(struct log *l, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < sizeof(tmp));
    log_put(l, tmp, (size_t)n);
}

/* One line describing a parsed head; markers start with a NUL so body bytes cannot fake them. */
static void log_head(struct log *l, const struct http_request *r)
{
    log_printf(l, "%cHEAD %s [%s] path=[%s] query=[%s] 1.%u cl=%lld chunked=%d ka=%d ec=%d", 0,
               r->method_name, r->target, r->path, r->query, r->version_minor,
               (long long)r->content_length, r->chunked, r->keep_alive, r->expect_continue);
    cr_assert_eq(strlen(r->target), r->target_len);
    cr_assert_eq(strlen(r->path), r->path_len);
    cr_assert_eq(strlen(r->query), r->query_len);
    for (unsigned i = 0; i < r->nheaders; i++) {
        cr_assert_eq(strlen(r->headers[i].name), r->headers[i].name_len);
        cr_assert_eq(strlen(r->headers[i].value), r->headers[i].value_len);
        log_printf(l, " {%s=%s}", r->headers[i].name, r->headers[i].value);
    }
    log_put(l, "\n", 1);
}

struct result {
    struct log log; /* heads, body bytes, DONE and ERROR markers, in order */
    int status;     /* error status, 0 if none */
    unsigned nhead, ndone, nbody;
};

static void result_fini(struct result *res)
{
    free(res->log.b);
}

/*
 * Feed in[0..len) cut at the offsets in cuts[] (ascending, within (0, len)).  Each piece is
 * copied into an exact-size heap buffer, prefixed by whatever the parser left unconsumed.
 * Calls the parser until it asks for more, checking the invariants of every event.
 */
static void run_cuts(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                     struct result *res)
{
    struct http_parser *p = http_parser_create();
    char *left = NULL;
    size_t nleft = 0, from = 0;
    bool stop = false;

    memset(res, 0, sizeof(*res));
    cr_assert(p);
    for (size_t k = 0; k <= ncuts && !stop; k++) {
        size_t to = k < ncuts ? cuts[k] : len, n, off = 0;
        char *buf;

        cr_assert(to >= from && to <= len);
        n = nleft + (to - from);
        buf = malloc(n ? n : 1);
        cr_assert(buf);
        if (nleft)
            memcpy(buf, left, nleft);
        memcpy(buf + nleft, in + from, to - from);
        free(left);
        left = NULL;
        from = to;
        for (unsigned zero_streak = 0;;) {
            size_t consumed = 99999, body_len = 12345;
            const char *body = (const char *)1;
            enum http_event ev =
                http_parser_feed(p, buf + off, n - off, &consumed, &body, &body_len);

            cr_assert_leq(consumed, n - off);
            if (ev == HTTP_EV_BODY) {
                cr_assert_gt(body_len, 0);
                cr_assert(body >= buf + off && body + body_len <= buf + off + consumed,
                          "body span outside the consumed input");
            } else {
                cr_assert_null(body);
                cr_assert_eq(body_len, 0);
            }
            off += consumed;
            /* Progress: at most one event in a row may consume nothing (DONE). */
            zero_streak = consumed ? 0 : zero_streak + 1;
            if (ev != HTTP_EV_NEED_MORE && ev != HTTP_EV_ERROR)
                cr_assert_leq(zero_streak, 1, "no progress");
            if (ev == HTTP_EV_NEED_MORE) {
                cr_assert_eq(off, n, "NEED_MORE with input left");
                break;
            }
            if (ev == HTTP_EV_ERROR) {
                res->status = http_parser_error_status(p);
                cr_assert_neq(res->status, 0);
                cr_assert_not_null(http_parser_error_reason(p));
                log_printf(&res->log, "%cERROR %d\n", 0, res->status);
                /* Sticky. */
                cr_assert_eq(http_parser_feed(p, "GET", 3, &consumed, &body, &body_len),
                             HTTP_EV_ERROR);
                stop = true;
                break;
            }
            if (ev == HTTP_EV_HEAD) {
                cr_assert_not_null(http_parser_request(p));
                log_head(&res->log, http_parser_request(p));
                res->nhead++;
            } else if (ev == HTTP_EV_BODY) {
                log_put(&res->log, body, body_len);
                res->nbody++;
            } else {
                cr_assert_eq(ev, HTTP_EV_DONE);
                log_printf(&res->log, "%cDONE\n", 0);
                res->ndone++;
            }
        }
        if (off < n) {
            nleft = n - off;
            left = malloc(nleft);
            cr_assert(left);
            memcpy(left, buf + off, nleft);
        } else {
            nleft = 0;
        }
        free(buf);
    }
    free(left);
    http_parser_destroy(p);
}

static void run_whole(const char *in, size_t len, struct result *res)
{
    run_cuts(in, len, NULL, 0, res);
}

static void run_bytes(const char *in, size_t len, struct result *res)
{
    size_t *cuts = malloc((len ? len : 1) * sizeof(*cuts));

    cr_assert(cuts);
    for (size_t i = 1; i < len; i++)
        cuts[i - 1] = i;
    run_cuts(in, len, cuts, len ? len - 1 : 0, res);
    free(cuts);
}

static void assert_same(const struct result *a, const struct result *b, const char *what)
{
    cr_assert_eq(a->status, b->status, "%s: status %d vs %d", what, a->status, b->status);
    cr_assert_eq(a->nhead, b->nhead, "%s", what);
    cr_assert_eq(a->ndone, b->ndone, "%s", what);
    cr_assert_eq(a->log.len, b->log.len, "%s: log length %zu vs %zu", what, a->log.len, b->log.len);
    cr_assert(a->log.len == 0 || !memcmp(a->log.b, b->log.b, a->log.len), "%s: logs differ", what);
}

/* Parse in one piece and one byte at a time; both must agree.  Returns the error status. */
static int status_of(const char *in, size_t len)
{
    struct result a, b;
    int st;

    run_whole(in, len, &a);
    run_bytes(in, len, &b);
    assert_same(&a, &b, in);
    st = a.status;
    result_fini(&a);
    result_fini(&b);
    return st;
}

#define STATUS(lit) status_of(lit, sizeof(lit) - 1)

/* Parse one complete head from a literal; returns the parser (caller destroys). */
static struct http_parser *parse_head_ok(const char *in)
{
    struct http_parser *p = http_parser_create();
    size_t consumed, bl;
    const char *b;

    cr_assert(p);
    cr_assert_eq(http_parser_feed(p, in, strlen(in), &consumed, &b, &bl), HTTP_EV_HEAD, "%s: %s",
                 in, http_parser_error_reason(p));
    cr_assert_eq(consumed, strlen(in));
    return p;
}

/* ---- valid requests ---- */

Test(http, simple_get)
{
    const char *in = "GET /bucket/key%20x?list-type=2&prefix=a HTTP/1.1\r\nHost: example\r\n\r\n";
    struct http_parser *p = http_parser_create();
    const struct http_request *r;
    size_t consumed, bl;
    const char *b;

    cr_assert_null(http_parser_request(p), "no head yet");
    cr_assert_eq(http_parser_error_status(p), 0);
    cr_assert_eq(http_parser_feed(p, in, strlen(in), &consumed, &b, &bl), HTTP_EV_HEAD);
    cr_assert_eq(consumed, strlen(in));
    r = http_parser_request(p);
    cr_assert_not_null(r);
    cr_assert_eq(r->method, HTTP_GET);
    cr_assert_str_eq(r->method_name, "GET");
    cr_assert_str_eq(r->target, "/bucket/key%20x?list-type=2&prefix=a");
    cr_assert_str_eq(r->path, "/bucket/key%20x");
    cr_assert_eq(r->path_len, 15);
    cr_assert_str_eq(r->query, "list-type=2&prefix=a");
    cr_assert_eq(r->query_len, 20);
    cr_assert_eq(r->version_minor, 1);
    cr_assert_eq(r->nheaders, 1);
    cr_assert_str_eq(r->headers[0].name, "host");
    cr_assert_str_eq(r->headers[0].value, "example");
    cr_assert_eq(r->content_length, -1);
    cr_assert(!r->chunked);
    cr_assert(r->keep_alive);
    cr_assert(!r->expect_continue);
    /* No body: DONE without consuming anything, then a new request wants bytes. */
    cr_assert_eq(http_parser_feed(p, "", 0, &consumed, &b, &bl), HTTP_EV_DONE);
    cr_assert_eq(consumed, 0);
    cr_assert_eq(http_parser_feed(p, "", 0, &consumed, &b, &bl), HTTP_EV_NEED_MORE);
    cr_assert_null(http_parser_request(p), "next request's head not complete");
    http_parser_destroy(p);
    http_parser_destroy(NULL);
}

Test(http, no_query_and_empty_query)
{
    struct http_parser *p = parse_head_ok("DELETE /a/b HTTP/1.1\r\n\r\n");
    const struct http_request *r = http_parser_request(p);

    cr_assert_eq(r->method, HTTP_DELETE);
    cr_assert_str_eq(r->path, "/a/b");
    cr_assert_str_eq(r->query, "");
    cr_assert_eq(r->query_len, 0);
    cr_assert_eq(r->nheaders, 0, "Host is not required");
    http_parser_destroy(p);

    p = parse_head_ok("HEAD /x? HTTP/1.1\r\n\r\n");
    r = http_parser_request(p);
    cr_assert_eq(r->method, HTTP_HEAD);
    cr_assert_str_eq(r->path, "/x");
    cr_assert_str_eq(r->query, "");
    cr_assert_str_eq(r->target, "/x?");
    http_parser_destroy(p);

    p = parse_head_ok("GET /a?b?c=/d HTTP/1.1\r\n\r\n");
    r = http_parser_request(p);
    cr_assert_str_eq(r->path, "/a");
    cr_assert_str_eq(r->query, "b?c=/d");
    http_parser_destroy(p);
}

Test(http, all_methods)
{
    static const struct {
        const char *line;
        enum http_method m;
        const char *name;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", HTTP_GET, "GET"},
        {"HEAD / HTTP/1.1\r\n\r\n", HTTP_HEAD, "HEAD"},
        {"PUT / HTTP/1.1\r\n\r\n", HTTP_PUT, "PUT"},
        {"POST / HTTP/1.1\r\n\r\n", HTTP_POST, "POST"},
        {"DELETE / HTTP/1.1\r\n\r\n", HTTP_DELETE, "DELETE"},
        {"OPTIONS / HTTP/1.1\r\n\r\n", HTTP_OPTIONS, "OPTIONS"},
        {"OPTIONS * HTTP/1.1\r\n\r\n", HTTP_OPTIONS, "OPTIONS"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_parser *p = parse_head_ok(cases[i].line);

        cr_assert_eq(http_parser_request(p)->method, cases[i].m);
        cr_assert_str_eq(http_parser_request(p)->method_name, cases[i].name);
        http_parser_destroy(p);
    }
}

Test(http, headers_lowercased_and_trimmed)
{
    struct http_parser *p = parse_head_ok("PUT /o HTTP/1.1\r\n"
                                          "HoSt: example.com\r\n"
                                          "X-Amz-Meta-Foo:   bar  baz \t \r\n"
                                          "X-Empty:\r\n"
                                          "X-Spaces: \t  \r\n"
                                          "Content-Type:text/plain\r\n"
                                          "X-Obs-Text: caf\xc3\xa9\r\n"
                                          "x-amz-meta-foo: second\r\n"
                                          "Content-Length: 0\r\n"
                                          "\r\n");
    const struct http_request *r = http_parser_request(p);
    const struct http_header *h;

    cr_assert_eq(r->nheaders, 8);
    cr_assert_str_eq(r->headers[0].name, "host");
    cr_assert_str_eq(r->headers[1].name, "x-amz-meta-foo");
    cr_assert_str_eq(r->headers[1].value, "bar  baz", "inner whitespace kept");
    cr_assert_eq(r->headers[1].value_len, 8);
    cr_assert_str_eq(r->headers[2].value, "");
    cr_assert_eq(r->headers[2].value_len, 0);
    cr_assert_str_eq(r->headers[3].value, "");
    cr_assert_str_eq(r->headers[4].value, "text/plain");
    cr_assert_str_eq(r->headers[5].value, "caf\xc3\xa9");
    h = http_header_find(r, "x-amz-meta-foo");
    cr_assert_not_null(h);
    cr_assert_eq(h, &r->headers[1], "first of the repeated field");
    cr_assert_null(http_header_find(r, "X-Amz-Meta-Foo"), "names are looked up lowercase");
    cr_assert_null(http_header_find(r, "absent"));
    cr_assert_null(http_header_find(NULL, "host"));
    cr_assert_eq(r->content_length, 0);
    http_parser_destroy(p);
}

Test(http, leading_empty_lines_skipped)
{
    struct http_parser *p = parse_head_ok("\r\n\r\nGET / HTTP/1.1\r\n\r\n");

    cr_assert_str_eq(http_parser_request(p)->target, "/");
    http_parser_destroy(p);
}

Test(http, content_length_body_zero_copy)
{
    const char *in = "PUT /o HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
    size_t head = strlen(in) - 10, consumed, bl;
    struct http_parser *p = http_parser_create();
    const char *b;

    cr_assert_eq(http_parser_feed(p, in, strlen(in), &consumed, &b, &bl), HTTP_EV_HEAD);
    cr_assert_eq(consumed, head);
    cr_assert_eq(http_parser_request(p)->content_length, 10);
    cr_assert_eq(http_parser_feed(p, in + head, 10, &consumed, &b, &bl), HTTP_EV_BODY);
    cr_assert_eq(b, in + head, "the span is the caller's bytes, not a copy");
    cr_assert_eq(bl, 10);
    cr_assert_eq(consumed, 10);
    cr_assert_eq(http_parser_feed(p, NULL, 0, &consumed, &b, &bl), HTTP_EV_DONE);
    cr_assert_eq(consumed, 0);
    /* The head stays valid until the next request starts. */
    cr_assert_str_eq(http_parser_request(p)->target, "/o");
    http_parser_destroy(p);
}

Test(http, content_length_body_not_overread)
{
    /* The body ends at Content-Length; what follows is the next request. */
    const char *in = "POST /o HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /n HTTP/1.1\r\n\r\n";
    struct result res;

    run_whole(in, strlen(in), &res);
    cr_assert_eq(res.status, 0);
    cr_assert_eq(res.nhead, 2);
    cr_assert_eq(res.ndone, 2);
    cr_assert_eq(res.nbody, 1);
    cr_assert(memmem(res.log.b, res.log.len, "\nabc", 4), "body is abc");
    cr_assert(memmem(res.log.b, res.log.len, "[/n]", 4));
    result_fini(&res);
}

Test(http, large_body_one_span)
{
    size_t body = 8u << 20, consumed, bl;
    const char *head = "PUT /big HTTP/1.1\r\nContent-Length: 8388608\r\n\r\n";
    char *in = malloc(strlen(head) + body);
    struct http_parser *p = http_parser_create();
    const char *b;

    cr_assert(in && p);
    memcpy(in, head, strlen(head));
    memset(in + strlen(head), 'x', body);
    cr_assert_eq(http_parser_feed(p, in, strlen(head) + body, &consumed, &b, &bl), HTTP_EV_HEAD);
    cr_assert_eq(http_parser_feed(p, in + consumed, body, &consumed, &b, &bl), HTTP_EV_BODY);
    cr_assert_eq(bl, body, "the whole body in one event");
    cr_assert_eq(http_parser_feed(p, in, 0, &consumed, &b, &bl), HTTP_EV_DONE);
    http_parser_destroy(p);
    free(in);
}

static const char chunked_req[] = "POST /upload?x=1 HTTP/1.1\r\n"
                                  "Host: h\r\n"
                                  "Transfer-Encoding: chunked\r\n"
                                  "\r\n"
                                  "4;name=value;q=\"a b;c\"\r\n"
                                  "Wiki\r\n"
                                  "5 ; ext\r\n"
                                  "pedia\r\n"
                                  "E\r\n"
                                  " in\r\n\r\nchunks.\r\n"
                                  "000\r\n"
                                  "X-Checksum: abc\r\n"
                                  "Expires: never\r\n"
                                  "\r\n";

Test(http, chunked_body_extensions_trailers)
{
    const char *expect_body = "Wikipedia in\r\n\r\nchunks.";
    struct http_parser *p = http_parser_create();
    const struct http_request *r;
    size_t len = sizeof(chunked_req) - 1, off = 0, consumed, bl;
    const char *b;
    char body[64];
    size_t blen = 0;
    enum http_event ev;

    cr_assert_eq(http_parser_feed(p, chunked_req, len, &consumed, &b, &bl), HTTP_EV_HEAD);
    off += consumed;
    r = http_parser_request(p);
    cr_assert(r->chunked);
    cr_assert_eq(r->content_length, -1);
    cr_assert_eq(r->nheaders, 2, "trailers are not added to the head");
    while ((ev = http_parser_feed(p, chunked_req + off, len - off, &consumed, &b, &bl)) ==
           HTTP_EV_BODY) {
        cr_assert_eq(b, chunked_req + off + consumed - bl, "span ends where consumption ends");
        cr_assert_leq(blen + bl, sizeof(body));
        memcpy(body + blen, b, bl);
        blen += bl;
        off += consumed;
    }
    off += consumed;
    cr_assert_eq(ev, HTTP_EV_DONE);
    cr_assert_eq(off, len);
    cr_assert_eq(blen, strlen(expect_body));
    cr_assert(!memcmp(body, expect_body, blen));
    /* The head survives the trailers. */
    cr_assert_str_eq(http_parser_request(p)->query, "x=1");
    cr_assert_eq(http_parser_request(p)->nheaders, 2);
    http_parser_destroy(p);
}

Test(http, chunked_split_at_every_byte_boundary)
{
    /* A chunked request followed by a pipelined Content-Length one. */
    char in[1024];
    struct result whole, bytes, two;
    size_t len;

    len = (size_t)snprintf(in, sizeof(in), "%s%s", chunked_req,
                           "PUT /second HTTP/1.1\r\ncontent-length: 5\r\nConnection: close\r\n"
                           "\r\nhello");
    run_whole(in, len, &whole);
    cr_assert_eq(whole.status, 0);
    cr_assert_eq(whole.nhead, 2);
    cr_assert_eq(whole.ndone, 2);
    run_bytes(in, len, &bytes);
    assert_same(&whole, &bytes, "one byte at a time");
    result_fini(&bytes);
    for (size_t k = 0; k <= len; k++) {
        run_cuts(in, len, &k, 1, &two);
        assert_same(&whole, &two, "split in two");
        result_fini(&two);
    }
    for (size_t k = 1; k < len; k += 7) {
        size_t cuts[3] = {k / 3, k, k + (len - k) / 2};

        run_cuts(in, len, cuts, 3, &two);
        assert_same(&whole, &two, "split in four");
        result_fini(&two);
    }
    result_fini(&whole);
}

Test(http, random_splits)
{
    static const char in[] =
        "GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789abcdef0123456789\r\n\r\n"
        "PUT /k?uploadId=7 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        "Expect: 100-continue\r\n\r\n"
        "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3;x=y\r\n123\r\n0\r\n\r\n"
        "POST /p HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 4\r\n"
        "\r\nbody";
    size_t len = sizeof(in) - 1;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    struct result whole;

    run_whole(in, len, &whole);
    cr_assert_eq(whole.status, 0);
    cr_assert_eq(whole.ndone, 3);
    for (int iter = 0; iter < 300; iter++) {
        size_t cuts[16], n = 0, pos = 0;
        struct result r;

        while (n < 16) {
            x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
            pos += (x * 0x2545f4914f6cdd1dull) >> 58; /* 0..63 */
            if (pos >= len)
                break;
            cuts[n++] = pos;
        }
        run_cuts(in, len, cuts, n, &r);
        assert_same(&whole, &r, "random cuts");
        result_fini(&r);
    }
    result_fini(&whole);
}

Test(http, keep_alive_rules)
{
    static const struct {
        const char *in;
        bool ka;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: Keep-Alive, close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: foo , Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_parser *p = parse_head_ok(cases[i].in);

        cr_assert_eq(http_parser_request(p)->keep_alive, cases[i].ka, "%s", cases[i].in);
        http_parser_destroy(p);
    }
}

Test(http, version_minor)
{
    struct http_parser *p = parse_head_ok("GET / HTTP/1.0\r\n\r\n");

    cr_assert_eq(http_parser_request(p)->version_minor, 0);
    http_parser_destroy(p);
}

Test(http, expect_continue)
{
    struct http_parser *p;

    p = parse_head_ok("PUT /o HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    cr_assert(http_parser_request(p)->expect_continue);
    http_parser_destroy(p);
    p = parse_head_ok("PUT /o HTTP/1.1\r\nExpect:   100-Continue \r\nContent-Length: 5\r\n\r\n");
    cr_assert(http_parser_request(p)->expect_continue, "case-insensitive");
    http_parser_destroy(p);
    p = parse_head_ok("PUT /o HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
    cr_assert(!http_parser_request(p)->expect_continue);
    http_parser_destroy(p);
    p = parse_head_ok("PUT /o HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    cr_assert(!http_parser_request(p)->expect_continue, "ignored in HTTP/1.0");
    http_parser_destroy(p);
    cr_assert_eq(STATUS("PUT /o HTTP/1.1\r\nExpect: 200-ok\r\n\r\n"), 417);
    cr_assert_eq(STATUS("PUT /o HTTP/1.1\r\nExpect: 100-continue, x\r\n\r\n"), 417);
}

Test(http, pipelined_after_done)
{
    const char *in = "GET /one HTTP/1.1\r\n\r\nGET /two?q HTTP/1.1\r\nHost: b\r\n\r\n";
    struct http_parser *p = http_parser_create();
    size_t consumed, bl, off = 0, len = strlen(in);
    const char *b;

    cr_assert_eq(http_parser_feed(p, in, len, &consumed, &b, &bl), HTTP_EV_HEAD);
    off += consumed;
    cr_assert_str_eq(http_parser_request(p)->target, "/one");
    cr_assert_eq(http_parser_feed(p, in + off, len - off, &consumed, &b, &bl), HTTP_EV_DONE);
    cr_assert_eq(consumed, 0);
    cr_assert_eq(http_parser_feed(p, in + off, len - off, &consumed, &b, &bl), HTTP_EV_HEAD);
    off += consumed;
    cr_assert_eq(off, len);
    cr_assert_str_eq(http_parser_request(p)->target, "/two?q");
    cr_assert_str_eq(http_parser_request(p)->path, "/two");
    cr_assert_eq(http_parser_request(p)->nheaders, 1);
    cr_assert_eq(http_parser_feed(p, in + off, 0, &consumed, &b, &bl), HTTP_EV_DONE);
    http_parser_destroy(p);
}

Test(http, content_length_forms)
{
    struct http_parser *p;

    p = parse_head_ok("PUT / HTTP/1.1\r\nContent-Length: 42, 42\r\n\r\n");
    cr_assert_eq(http_parser_request(p)->content_length, 42);
    http_parser_destroy(p);
    p = parse_head_ok("PUT / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 007\r\n\r\n");
    cr_assert_eq(http_parser_request(p)->content_length, 7);
    http_parser_destroy(p);
    p = parse_head_ok("PUT / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n");
    cr_assert_eq(http_parser_request(p)->content_length, INT64_MAX);
    http_parser_destroy(p);
    p = parse_head_ok("PUT / HTTP/1.1\r\nTransfer-Encoding: , Chunked\r\n\r\n");
    cr_assert(http_parser_request(p)->chunked, "empty list elements ignored, case-insensitive");
    http_parser_destroy(p);
}

Test(http, chunk_size_limit)
{
    /* 2^40 is the largest chunk accepted: the parser must start handing out its data. */
    const char *in = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000\r\nab";
    struct result res;

    run_whole(in, strlen(in), &res);
    cr_assert_eq(res.status, 0);
    cr_assert_eq(res.nbody, 1);
    result_fini(&res);
}

/* ---- errors ---- */

Test(http, bad_method)
{
    cr_assert_eq(STATUS("G@T / HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GE\x01T / HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS(" GET / HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET\t/ HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("\x16\x03\x01\x02\x00"), 400, "TLS on the plain port");
    cr_assert_eq(STATUS("PATCH / HTTP/1.1\r\n\r\n"), 501);
    cr_assert_eq(STATUS("get / HTTP/1.1\r\n\r\n"), 501, "methods are case-sensitive");
    cr_assert_eq(STATUS("GETTING / HTTP/1.1\r\n\r\n"), 501);
    cr_assert_eq(STATUS("VERYLONGMETHODNAME / HTTP/1.1\r\n\r\n"), 501);
    cr_assert_eq(STATUS("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 501);
}

Test(http, bad_target)
{
    cr_assert_eq(STATUS("GET  / HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET http://h/x HTTP/1.1\r\n\r\n"), 400, "absolute-form");
    cr_assert_eq(STATUS("GET x HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET * HTTP/1.1\r\n\r\n"), 400, "asterisk only for OPTIONS");
    cr_assert_eq(STATUS("OPTIONS *x HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET /a#frag HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET /a\"b HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET /a%zz HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET /a%2 HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET /a\x7f HTTP/1.1\r\n\r\n"), 400);
    {
        static const char nul[] = "GET /a\0b HTTP/1.1\r\n\r\n";
        cr_assert_eq(status_of(nul, sizeof(nul) - 1), 400);
    }
    cr_assert_eq(STATUS("GET /a%2F%2f HTTP/1.1\r\n\r\n"), 0);
    cr_assert_eq(STATUS("GET /a:b@c!$&'()*+,;=-._~ HTTP/1.1\r\n\r\n"), 0);
}

static char *make_target_request(size_t target_len)
{
    char *s = malloc(target_len + 64);

    cr_assert(s);
    strcpy(s, "GET /");
    memset(s + 5, 'a', target_len - 1);
    strcpy(s + 4 + target_len, " HTTP/1.1\r\n\r\n");
    return s;
}

Test(http, target_too_long)
{
    char *ok = make_target_request(HTTP_MAX_TARGET);
    char *big = make_target_request(HTTP_MAX_TARGET + 1);
    struct http_parser *p = parse_head_ok(ok);

    cr_assert_eq(http_parser_request(p)->target_len, HTTP_MAX_TARGET);
    http_parser_destroy(p);
    cr_assert_eq(status_of(big, strlen(big)), 414);
    /* Rejected as soon as the limit is passed, without waiting for the line to end. */
    cr_assert_eq(status_of(big, 5 + HTTP_MAX_TARGET), 414);
    free(ok);
    free(big);
}

Test(http, too_many_headers)
{
    char *s = malloc(64 + (HTTP_MAX_HEADERS + 1) * 16);
    size_t n;
    struct http_parser *p;

    cr_assert(s);
    n = (size_t)sprintf(s, "GET / HTTP/1.1\r\n");
    for (unsigned i = 0; i < HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(s + n, "X-H%u: %u\r\n", i, i);
    strcpy(s + n, "\r\n");
    p = parse_head_ok(s);
    cr_assert_eq(http_parser_request(p)->nheaders, HTTP_MAX_HEADERS);
    cr_assert_str_eq(http_parser_request(p)->headers[HTTP_MAX_HEADERS - 1].name, "x-h99");
    http_parser_destroy(p);
    n += (size_t)sprintf(s + n, "X-One-More: 1\r\n\r\n");
    cr_assert_eq(status_of(s, n), 431);
    free(s);
}

/* A request whose head is exactly head_len bytes: one header with a long value. */
static char *make_head(size_t head_len)
{
    static const char pre[] = "GET / HTTP/1.1\r\nX: ";
    char *s = malloc(head_len + 1);
    size_t v = head_len - (sizeof(pre) - 1) - 4;

    cr_assert(s);
    memcpy(s, pre, sizeof(pre) - 1);
    memset(s + sizeof(pre) - 1, 'v', v);
    memcpy(s + sizeof(pre) - 1 + v, "\r\n\r\n", 5);
    cr_assert_eq(strlen(s), head_len);
    return s;
}

Test(http, head_too_large)
{
    char *ok = make_head(HTTP_MAX_HEAD_BYTES);
    char *big = make_head(HTTP_MAX_HEAD_BYTES + 1);
    struct http_parser *p = parse_head_ok(ok);

    cr_assert_eq(http_parser_request(p)->headers[0].value_len, HTTP_MAX_HEAD_BYTES - 23);
    http_parser_destroy(p);
    cr_assert_eq(status_of(big, strlen(big)), 431);
    free(ok);
    free(big);
}

Test(http, bad_content_length)
{
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length:\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                        "\r\n"),
                 400, "CL + TE");
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
                        "\r\n"),
                 400, "TE + CL");
}

Test(http, transfer_encoding)
{
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                        "Transfer-Encoding: identity\r\n\r\n"),
                 501);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"), 501);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n"), 400);
    cr_assert_eq(STATUS("PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

Test(http, http_version)
{
    cr_assert_eq(STATUS("GET / HTTP/2.0\r\n\r\n"), 505);
    cr_assert_eq(STATUS("GET / HTTP/0.9\r\n\r\n"), 505);
    cr_assert_eq(STATUS("GET / HTTP/1.2\r\n\r\n"), 505);
    cr_assert_eq(STATUS("GET / HTTP/3.1\r\n\r\n"), 505);
    cr_assert_eq(STATUS("GET /\r\n\r\n"), 400, "HTTP/0.9 simple request");
    cr_assert_eq(STATUS("GET / http/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.10\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/x.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.1 \r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.1 x\r\n\r\n"), 400);
}

Test(http, bare_lf_and_cr_rejected)
{
    /* Decided strict: RFC 9112 2.2 permits accepting a bare LF, we answer 400. */
    cr_assert_eq(STATUS("GET / HTTP/1.1\nHost: a\n\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400);
    cr_assert_eq(STATUS("\nGET / HTTP/1.1\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), 400, "bare CR in a value");
    cr_assert_eq(STATUS("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\n\r\r\n"), 400);
    cr_assert_eq(STATUS("\r\rGET / HTTP/1.1\r\n\r\n"), 400);
}

Test(http, field_syntax)
{
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), 400, "obs-fold");
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), 400, "obs-fold");
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400, "space before colon");
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\n: a\r\n\r\n"), 400, "empty name");
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nX(y): a\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nX: a\x01"
                        "b\r\n\r\n"),
                 400, "control char");
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), 400, "DEL");
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nX: \x1b[31m\r\n\r\n"), 400, "ESC");
    {
        static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
        cr_assert_eq(status_of(nul, sizeof(nul) - 1), 400, "NUL");
    }
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400, "two Hosts");
    cr_assert_eq(STATUS("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n"), 0, "HTAB inside a value");
}

#define CHUNKED_HEAD "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"

Test(http, bad_chunks)
{
    cr_assert_eq(STATUS(CHUNKED_HEAD "fffffffffffffffffffff\r\n"), 400, "overflow");
    cr_assert_eq(STATUS(CHUNKED_HEAD "10000000001\r\n"), 400, "over 2^40");
    cr_assert_eq(STATUS(CHUNKED_HEAD "g\r\n"), 400);
    cr_assert_eq(STATUS(CHUNKED_HEAD "\r\n"), 400, "empty size");
    cr_assert_eq(STATUS(CHUNKED_HEAD "-1\r\n"), 400);
    cr_assert_eq(STATUS(CHUNKED_HEAD "0x5\r\n"), 400);
    cr_assert_eq(STATUS(CHUNKED_HEAD " 5\r\nhello\r\n0\r\n\r\n"), 400);
    cr_assert_eq(STATUS(CHUNKED_HEAD "5 \r\nhello\r\n0\r\n\r\n"), 400, "BWS only before ';'");
    cr_assert_eq(STATUS(CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n"), 400, "bare LF");
    cr_assert_eq(STATUS(CHUNKED_HEAD "5;a\nb\r\nhello\r\n0\r\n\r\n"), 400, "bare LF in ext");
    cr_assert_eq(STATUS(CHUNKED_HEAD "5;a\rb\r\nhello\r\n0\r\n\r\n"), 400, "bare CR in ext");
    cr_assert_eq(STATUS(CHUNKED_HEAD "5;a\x01\r\nhello\r\n0\r\n\r\n"), 400, "CTL in ext");
    cr_assert_eq(STATUS(CHUNKED_HEAD "5\r\nhelloX\r\n0\r\n\r\n"), 400, "data longer than size");
    cr_assert_eq(STATUS(CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n"), 400);
    cr_assert_eq(STATUS(CHUNKED_HEAD "0\r\nX: a\r\n b\r\n\r\n"), 400, "obs-fold in trailer");
    cr_assert_eq(STATUS(CHUNKED_HEAD "0\r\nX : a\r\n\r\n"), 400);
    cr_assert_eq(STATUS(CHUNKED_HEAD "0\r\nX: \x01\r\n\r\n"), 400);
    cr_assert_eq(STATUS(CHUNKED_HEAD "0\r\n\n"), 400);
    cr_assert_eq(STATUS(CHUNKED_HEAD "5;a=\"b c\" ; d\r\nhello\r\n0\r\n\r\n"), 0);
}

Test(http, chunk_line_too_long)
{
    size_t n = strlen(CHUNKED_HEAD);
    char *s = malloc(n + HTTP_MAX_CHUNK_LINE + 32);

    cr_assert(s);
    memcpy(s, CHUNKED_HEAD "1;", n + 2);
    memset(s + n + 2, 'e', HTTP_MAX_CHUNK_LINE - 4); /* the line is exactly the limit */
    memcpy(s + n + HTTP_MAX_CHUNK_LINE - 2, "\r\nx\r\n0\r\n\r\n", 11);
    cr_assert_eq(status_of(s, strlen(s)), 0);
    memset(s + n + 2, 'e', HTTP_MAX_CHUNK_LINE - 3);
    memcpy(s + n + HTTP_MAX_CHUNK_LINE - 1, "\r\nx\r\n0\r\n\r\n", 11);
    cr_assert_eq(status_of(s, strlen(s)), 400);
    /* Leading zeros count toward the line too. */
    memset(s + n, '0', HTTP_MAX_CHUNK_LINE + 8);
    cr_assert_eq(status_of(s, n + HTTP_MAX_CHUNK_LINE + 8), 400);
    free(s);
}

Test(http, too_many_trailers)
{
    char *s = malloc(128 + (HTTP_MAX_HEADERS + 1) * 16);
    size_t n;

    cr_assert(s);
    n = (size_t)sprintf(s, CHUNKED_HEAD "0\r\n");
    for (unsigned i = 0; i <= HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(s + n, "T%u: %u\r\n", i, i);
    n += (size_t)sprintf(s + n, "\r\n");
    cr_assert_eq(status_of(s, n), 431);
    free(s);
}

Test(http, error_is_sticky_and_reported)
{
    struct http_parser *p = http_parser_create();
    size_t consumed, bl;
    const char *b;

    cr_assert_eq(http_parser_feed(p, "GET / HTTP/2.0\r\n", 16, &consumed, &b, &bl), HTTP_EV_ERROR);
    cr_assert_eq(http_parser_error_status(p), 505);
    cr_assert_str_eq(http_parser_error_reason(p), "HTTP version not supported");
    cr_assert_null(http_parser_request(p));
    cr_assert_eq(http_parser_feed(p, "GET / HTTP/1.1\r\n\r\n", 18, &consumed, &b, &bl),
                 HTTP_EV_ERROR);
    cr_assert_eq(consumed, 0);
    cr_assert_eq(http_parser_feed(p, NULL, 0, &consumed, &b, &bl), HTTP_EV_ERROR);
    http_parser_destroy(p);
}

/* ---- helpers ---- */

Test(http, pct_decode)
{
    char out[64];

    cr_assert_eq(http_pct_decode("a%20b", 5, out, sizeof(out)), 3);
    cr_assert_str_eq(out, "a b");
    cr_assert_eq(http_pct_decode("a+b", 3, out, sizeof(out)), 3);
    cr_assert_str_eq(out, "a+b", "'+' is not a space");
    cr_assert_eq(http_pct_decode("%41%4a%4A%2f", 12, out, sizeof(out)), 4);
    cr_assert_str_eq(out, "AJJ/");
    cr_assert_eq(http_pct_decode("%e2%82%AC", 9, out, sizeof(out)), 3);
    cr_assert_str_eq(out, "\xe2\x82\xac");
    cr_assert_eq(http_pct_decode("", 0, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "");
    cr_assert_eq(http_pct_decode("abc%41xyz", 6, out, sizeof(out)), 4, "only len bytes");
    cr_assert_str_eq(out, "abcA");
    /* Bad escapes. */
    cr_assert_eq(http_pct_decode("%", 1, out, sizeof(out)), -1);
    cr_assert_eq(http_pct_decode("a%4", 3, out, sizeof(out)), -1);
    cr_assert_eq(http_pct_decode("%4142", 2, out, sizeof(out)), -1, "escape cut by len");
    cr_assert_eq(http_pct_decode("%zz", 3, out, sizeof(out)), -1);
    cr_assert_eq(http_pct_decode("%g1", 3, out, sizeof(out)), -1);
    cr_assert_eq(http_pct_decode("%-1", 3, out, sizeof(out)), -1);
    /* NUL, encoded or raw. */
    cr_assert_eq(http_pct_decode("a%00b", 5, out, sizeof(out)), -1);
    cr_assert_eq(http_pct_decode("a\0b", 3, out, sizeof(out)), -1);
    /* Capacity includes the NUL. */
    cr_assert_eq(http_pct_decode("abc", 3, out, 4), 3);
    cr_assert_eq(http_pct_decode("abc", 3, out, 3), -1);
    cr_assert_eq(http_pct_decode("%41%42", 6, out, 3), 2);
    cr_assert_str_eq(out, "AB");
    cr_assert_eq(http_pct_decode("", 0, out, 0), -1);
    cr_assert_eq(http_pct_decode("", 0, out, 1), 0);
    /* In place. */
    strcpy(out, "x%2Fy%20z");
    cr_assert_eq(http_pct_decode(out, strlen(out), out, sizeof(out)), 5);
    cr_assert_str_eq(out, "x/y z");
}

Test(http, status_reason)
{
    cr_assert_str_eq(http_status_reason(200), "OK");
    cr_assert_str_eq(http_status_reason(100), "Continue");
    cr_assert_str_eq(http_status_reason(404), "Not Found");
    cr_assert_str_eq(http_status_reason(414), "URI Too Long");
    cr_assert_str_eq(http_status_reason(431), "Request Header Fields Too Large");
    cr_assert_str_eq(http_status_reason(505), "HTTP Version Not Supported");
    cr_assert_not_null(http_status_reason(999));
    cr_assert_not_null(http_status_reason(-1));
    /* Every status the parser answers has its own phrase. */
    static const int parser_statuses[] = {400, 411, 413, 414, 417, 431, 501, 505};
    for (size_t i = 0; i < sizeof(parser_statuses) / sizeof(parser_statuses[0]); i++)
        cr_assert_str_neq(http_status_reason(parser_statuses[i]), "Unknown");
}
