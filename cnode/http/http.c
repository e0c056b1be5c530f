/*
 * http.c - strict incremental HTTP/1.1 request parser (see http.h).
 *
 * Design.  One state machine walks the input byte by byte through the framing (request line,
 * field lines, chunk-size lines), with tight inner loops over the runs that make up most of a
 * head (target, field names, field values).  The head is copied into a fixed buffer inside the
 * parser as it is recognised, already in its final form: the target and each name and value
 * NUL-terminated, names lowercased, values trimmed.  A stored head is never larger than the
 * bytes it came from (every stored NUL replaces a delimiter), so HTTP_MAX_HEAD_BYTES, checked
 * before each byte is taken, bounds the buffer too.  The parser allocates once, in
 * http_parser_create(); nothing afterwards grows with the input.  Body bytes are never copied:
 * a body event is the longest span of the caller's input that the framing allows (the whole
 * rest of a Content-Length body or of a chunk), so a large body costs one event per read.
 *
 * Choices where RFC 9112 leaves room (strict wherever a lenient reading could let two parsers
 * disagree on where a message ends, the root of request smuggling):
 *  - Line terminator is CRLF only.  RFC 9112 2.2 lets a recipient accept a bare LF in the
 *    head; we do not: a bare LF, like a bare CR, is 400, in the head, chunk lines and trailers.
 *  - Empty lines before the request line are skipped (RFC 9112 2.2 "SHOULD ignore at least
 *    one"); they count toward HTTP_MAX_HEAD_BYTES.
 *  - Method: a token that is not one of the six supported is 501; anything not a token is 400.
 *  - Target: origin-form only (or "*" for OPTIONS), restricted to the RFC 3986 characters of
 *    path and query, each '%' followed by two hex digits; longer than HTTP_MAX_TARGET is 414.
 *  - Version: exactly "HTTP/1.0" or "HTTP/1.1"; any other well-formed "HTTP/d.d" is 505
 *    (including 1.2+, which RFC 9110 would let us read as 1.1), anything else 400.
 *  - Field lines: no whitespace before the colon, no obs-fold (a line starting with SP/HTAB),
 *    no control characters other than HTAB in values (obs-text, 0x80-0xFF, is allowed).
 *  - Host is neither required nor interpreted, but more than one Host field is 400.
 *  - Content-Length: 1*DIGIT, in one or several fields or a comma list, all equal; else 400.
 *  - Transfer-Encoding: any coding but "chunked" is 501; "chunked" must appear once (400
 *    otherwise); with Content-Length, or in an HTTP/1.0 request, it is 400.
 *  - Expect: "100-continue" (case-insensitive) is reported for HTTP/1.1 and ignored for 1.0
 *    (RFC 9110 10.1.1); any other expectation is 417.
 *  - Chunk size: hex, at most 2^40 (400 beyond); whitespace is allowed only before a ';'.
 *    Extensions are checked only for forbidden characters (CTL, bare CR/LF) and skipped; the
 *    whole chunk-size line is limited to HTTP_MAX_CHUNK_LINE bytes.  Trailers are checked
 *    with the field-line grammar and the head limits, and discarded (the head stays valid).
 */
#include "cnode/http/http.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"

#define CHUNK_SIZE_MAX (1ull << 40)

enum state {
    S_RL_START,    /* before the request line: empty lines are skipped */
    S_RL_START_LF, /* CR of an empty line seen */
    S_METHOD,
    S_TARGET,
    S_VERSION,
    S_RL_LF,      /* CR after the version seen */
    S_LINE_START, /* start of a field line or of the empty line ending the section */
    S_NAME,
    S_VALUE_START, /* skipping OWS after the colon */
    S_VALUE,
    S_LINE_LF, /* CR after a field value seen */
    S_END_LF,  /* CR of the empty line ending the section seen */
    S_BODY_CL, /* Content-Length body, or no body (remaining == 0) */
    S_CHUNK_SIZE_START,
    S_CHUNK_SIZE,
    S_CHUNK_BWS, /* whitespace after the size: only ';' may follow */
    S_CHUNK_EXT,
    S_CHUNK_SIZE_LF, /* CR ending the chunk-size line seen */
    S_CHUNK_DATA,
    S_CHUNK_DATA_CR, /* CRLF after the chunk data */
    S_CHUNK_DATA_LF,
    S_DONE,
    S_ERROR,
};

struct http_parser {
    enum state state;
    bool head_done; /* req is valid */
    bool trailers;  /* S_LINE_START..S_END_LF are parsing trailers: check, do not store */
    int err_status;
    const char *err_reason;
    struct http_request req;

    size_t head_bytes; /* raw bytes of the head (or of the trailers) so far */
    size_t blen;       /* bytes used in buf */
    size_t name_off, value_off, value_end;
    unsigned nfields; /* header (or trailer) fields so far */
    char method[8];   /* method token so far; mlen > 7 means too long to be known */
    unsigned mlen;
    char version[9];
    unsigned vlen;

    uint64_t remaining;  /* body bytes left: of the Content-Length body or the chunk */
    uint64_t body_total; /* chunked: sum of the chunk sizes */
    size_t chunk_line;   /* bytes of the current chunk-size line */

    struct http_header headers[HTTP_MAX_HEADERS];
    char path[HTTP_MAX_TARGET + 1];
    char buf[HTTP_MAX_HEAD_BYTES];
};

/* Character sets as 128-bit masks (bit c set: ASCII c is in the set; nothing >= 0x80 is). */
static const uint64_t tchar_set[2] = {0x03ff6cfa00000000ull, 0x57ffffffc7fffffeull};
/* pchar / "/" / "?" of RFC 3986 plus '%' (escapes are checked once the target is complete). */
static const uint64_t target_set[2] = {0xaffffff200000000ull, 0x47fffffe87ffffffull};

static inline bool in_set(const uint64_t set[2], unsigned char c)
{
    return c < 128 && ((set[c >> 6] >> (c & 63)) & 1);
}

static inline bool is_tchar(unsigned char c)
{
    return in_set(tchar_set, c);
}

/* field-vchar, SP or HTAB: what a field value (or a chunk extension) may contain. */
static inline bool is_field_char(unsigned char c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

static inline bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static const struct {
    const char *name;
    unsigned len;
    enum http_method method;
} methods[] = {
    {"GET", 3, HTTP_GET},   {"HEAD", 4, HTTP_HEAD},     {"PUT", 3, HTTP_PUT},
    {"POST", 4, HTTP_POST}, {"DELETE", 6, HTTP_DELETE}, {"OPTIONS", 7, HTTP_OPTIONS},
};

static enum http_event fail(struct http_parser *p, int status, const char *reason)
{
    p->state = S_ERROR;
    p->err_status = status;
    p->err_reason = reason;
    return HTTP_EV_ERROR;
}

static void reset_request(struct http_parser *p)
{
    memset(&p->req, 0, sizeof(p->req));
    p->state = S_RL_START;
    p->head_done = false;
    p->trailers = false;
    p->head_bytes = 0;
    p->blen = 0;
    p->nfields = 0;
    p->mlen = 0;
    p->vlen = 0;
    p->remaining = 0;
    p->body_total = 0;
    p->chunk_line = 0;
}

struct http_parser *http_parser_create(void)
{
    struct http_parser *p = malloc(sizeof(*p));

    if (!p)
        return NULL;
    reset_request(p);
    p->err_status = 0;
    p->err_reason = NULL;
    return p;
}

void http_parser_destroy(struct http_parser *p)
{
    free(p);
}

/* Case-insensitive compare of s[0..n) with the lowercase string lit. */
static bool lit_eq(const char *s, size_t n, const char *lit)
{
    size_t i;

    for (i = 0; i < n && lit[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c |= 0x20;
        if (c != (unsigned char)lit[i])
            return false;
    }
    return i == n && !lit[i];
}

/* Next element of a comma-separated list in [*s, end), OWS trimmed (may be empty).  Returns
 * false when the list is exhausted. */
static bool list_next(const char **s, const char *end, const char **elem, size_t *elen)
{
    const char *a = *s, *b;

    if (a > end)
        return false;
    b = memchr(a, ',', (size_t)(end - a));
    if (!b)
        b = end;
    *s = b + 1;
    while (a < b && is_ws((unsigned char)*a))
        a++;
    while (b > a && is_ws((unsigned char)b[-1]))
        b--;
    *elem = a;
    *elen = (size_t)(b - a);
    return true;
}

/* The target is complete in buf[0..tlen): check the escapes and the form, fill the request. */
static enum http_event finish_target(struct http_parser *p)
{
    struct http_request *r = &p->req;
    const char *t = p->buf;
    size_t n = r->target_len, i;
    const char *q;

    if (n == 0)
        return fail(p, 400, "empty request target");
    if (t[0] == '*') {
        if (n != 1 || r->method != HTTP_OPTIONS)
            return fail(p, 400, "asterisk target outside OPTIONS");
    } else if (t[0] != '/') {
        return fail(p, 400, "request target not in origin form");
    }
    for (i = 0; i < n; i++)
        if (t[i] == '%' && (i + 2 >= n || hex_val((unsigned char)t[i + 1]) < 0 ||
                            hex_val((unsigned char)t[i + 2]) < 0))
            return fail(p, 400, "bad percent escape in target");
    p->buf[n] = '\0';
    r->target = t;
    q = memchr(t, '?', n);
    r->path_len = q ? (size_t)(q - t) : n;
    memcpy(p->path, t, r->path_len);
    p->path[r->path_len] = '\0';
    r->path = p->path;
    r->query = q ? q + 1 : t + n;
    r->query_len = n - (q ? r->path_len + 1 : n);
    return HTTP_EV_NEED_MORE;
}

static enum http_event parse_content_length(struct http_parser *p, const struct http_header *h,
                                            int64_t *cl)
{
    const char *s = h->value, *end = h->value + h->value_len, *e;
    size_t n;

    while (list_next(&s, end, &e, &n)) {
        uint64_t v = 0;

        if (n == 0)
            return fail(p, 400, "bad Content-Length");
        for (size_t i = 0; i < n; i++) {
            uint64_t dig = (uint64_t)(e[i] - '0');

            if (!is_digit(e[i]))
                return fail(p, 400, "bad Content-Length");
            if (v > ((uint64_t)INT64_MAX - dig) / 10)
                return fail(p, 400, "Content-Length overflow");
            v = v * 10 + dig;
        }
        if (*cl >= 0 && (uint64_t)*cl != v)
            return fail(p, 400, "conflicting Content-Length values");
        *cl = (int64_t)v;
    }
    return HTTP_EV_NEED_MORE;
}

/* The head is complete: interpret the fields that decide framing and connection handling. */
static enum http_event finish_head(struct http_parser *p)
{
    struct http_request *r = &p->req;
    int64_t cl = -1;
    unsigned nchunked = 0, nhost = 0;
    bool te = false, other_coding = false, conn_close = false, conn_keep = false;
    bool expect_continue = false;

    r->headers = p->headers;
    r->nheaders = p->nfields;
    for (unsigned i = 0; i < p->nfields; i++) {
        const struct http_header *h = &p->headers[i];
        const char *s = h->value, *end = h->value + h->value_len, *e;
        size_t n;

        if (!strcmp(h->name, "content-length")) {
            if (parse_content_length(p, h, &cl) == HTTP_EV_ERROR)
                return HTTP_EV_ERROR;
        } else if (!strcmp(h->name, "transfer-encoding")) {
            te = true;
            while (list_next(&s, end, &e, &n)) {
                if (lit_eq(e, n, "chunked"))
                    nchunked++;
                else if (n)
                    other_coding = true;
            }
        } else if (!strcmp(h->name, "connection")) {
            while (list_next(&s, end, &e, &n)) {
                conn_close |= lit_eq(e, n, "close");
                conn_keep |= lit_eq(e, n, "keep-alive");
            }
        } else if (!strcmp(h->name, "expect")) {
            while (list_next(&s, end, &e, &n)) {
                if (lit_eq(e, n, "100-continue"))
                    expect_continue = true;
                else if (n)
                    return fail(p, 417, "unsupported expectation");
            }
        } else if (!strcmp(h->name, "host")) {
            if (++nhost > 1)
                return fail(p, 400, "more than one Host field");
        }
    }
    if (te) {
        /* Checked in this order so "gzip, chunked" reads as unsupported rather than bad. */
        if (other_coding)
            return fail(p, 501, "unsupported transfer coding");
        if (nchunked != 1)
            return fail(p, 400, "bad Transfer-Encoding");
        if (cl >= 0)
            return fail(p, 400, "both Content-Length and Transfer-Encoding");
        if (r->version_minor == 0)
            return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
        r->chunked = true;
    }
    r->content_length = cl;
    r->keep_alive = r->version_minor == 1 ? !conn_close : conn_keep && !conn_close;
    r->expect_continue = expect_continue && r->version_minor == 1;
    p->head_done = true;
    if (r->chunked) {
        p->state = S_CHUNK_SIZE_START;
        p->chunk_line = 0;
    } else {
        p->state = S_BODY_CL;
        p->remaining = cl > 0 ? (uint64_t)cl : 0;
    }
    return HTTP_EV_HEAD;
}

/*
 * Parse the head (request line and field lines) or, with p->trailers, the trailer section,
 * from data[*pos..len).  Returns HTTP_EV_NEED_MORE when the input ran out, HTTP_EV_HEAD when
 * the empty line ending the section was consumed, or HTTP_EV_ERROR; *pos is advanced.
 */
static enum http_event parse_head(struct http_parser *p, const unsigned char *d, size_t len,
                                  size_t *pos)
{
    struct http_request *r = &p->req;
    const bool store = !p->trailers;
    size_t i = *pos;
    enum http_event ev = HTTP_EV_NEED_MORE;

    while (i < len && ev == HTTP_EV_NEED_MORE) {
        size_t start = i, end, j;
        unsigned char c;

        if (p->head_bytes == HTTP_MAX_HEAD_BYTES) {
            ev = fail(p, 431, p->trailers ? "trailer section too large" : "request head too large");
            break;
        }
        /* No run below may take more bytes than the head limit leaves. */
        end = i + CAIRN_MIN(len - i, HTTP_MAX_HEAD_BYTES - p->head_bytes);
        c = d[i];
        switch (p->state) {
        case S_RL_START:
            if (c == '\r') {
                i++;
                p->state = S_RL_START_LF;
            } else {
                p->state = S_METHOD;
            }
            break;
        case S_RL_START_LF:
            if (c != '\n') {
                ev = fail(p, 400, "bare CR");
                break;
            }
            i++;
            p->state = S_RL_START;
            break;
        case S_METHOD:
            for (j = i; j < end && is_tchar(d[j]); j++)
                if (p->mlen < sizeof(p->method) - 1)
                    p->method[p->mlen++] = (char)d[j];
                else
                    p->mlen = sizeof(p->method); /* longer than any method we know */
            i = j;
            if (i == end)
                break;
            if (d[i] != ' ') {
                ev = fail(p, 400, "bad method token");
                break;
            }
            if (p->mlen == 0) {
                ev = fail(p, 400, "empty method");
                break;
            }
            for (j = 0; j < CAIRN_ARRAY_SIZE(methods); j++)
                if (p->mlen == methods[j].len && !memcmp(p->method, methods[j].name, p->mlen))
                    break;
            if (j == CAIRN_ARRAY_SIZE(methods)) {
                ev = fail(p, 501, "method not implemented");
                break;
            }
            r->method = methods[j].method;
            r->method_name = methods[j].name;
            i++;
            p->state = S_TARGET;
            break;
        case S_TARGET:
            for (j = i; j < end && in_set(target_set, d[j]); j++)
                ;
            if (r->target_len + (j - i) > HTTP_MAX_TARGET) {
                ev = fail(p, 414, "request target too long");
                break;
            }
            memcpy(p->buf + p->blen, d + i, j - i);
            p->blen += j - i;
            r->target_len += j - i;
            i = j;
            if (i == end)
                break;
            if (d[i] != ' ') {
                ev = fail(p, 400,
                          d[i] == '\r' || d[i] == '\n' ? "missing HTTP version"
                                                       : "bad character in target");
                break;
            }
            i++;
            p->blen++; /* the target's NUL, written by finish_target() */
            ev = finish_target(p);
            p->state = p->state == S_ERROR ? S_ERROR : S_VERSION;
            break;
        case S_VERSION:
            if (c == '\r') {
                const char *v = p->version;

                i++;
                if (p->vlen != 8 || memcmp(v, "HTTP/", 5) || !is_digit(v[5]) || v[6] != '.' ||
                    !is_digit(v[7])) {
                    ev = fail(p, 400, "malformed HTTP version");
                    break;
                }
                if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
                    ev = fail(p, 505, "HTTP version not supported");
                    break;
                }
                r->version_minor = (unsigned)(v[7] - '0');
                p->state = S_RL_LF;
            } else if (c == '\n') {
                ev = fail(p, 400, "bare LF");
            } else if (p->vlen == 8) {
                ev = fail(p, 400, "malformed HTTP version");
            } else {
                p->version[p->vlen++] = (char)c;
                i++;
            }
            break;
        case S_RL_LF:
        case S_LINE_LF:
            if (c != '\n') {
                ev = fail(p, 400, "bare CR");
                break;
            }
            i++;
            p->state = S_LINE_START;
            break;
        case S_LINE_START:
            if (c == '\r') {
                i++;
                p->state = S_END_LF;
            } else if (is_tchar(c)) {
                if (p->nfields == HTTP_MAX_HEADERS) {
                    ev = fail(p, 431,
                              p->trailers ? "too many trailer fields" : "too many header fields");
                    break;
                }
                p->name_off = p->blen;
                p->state = S_NAME;
            } else if (is_ws(c)) {
                ev = fail(p, 400, "obsolete line folding");
            } else {
                ev = fail(p, 400, c == '\n' ? "bare LF" : "bad field name");
            }
            break;
        case S_NAME:
            for (j = i; j < end && is_tchar(d[j]); j++)
                if (store)
                    p->buf[p->blen++] = (char)(d[j] >= 'A' && d[j] <= 'Z' ? d[j] | 0x20 : d[j]);
            i = j;
            if (i == end)
                break;
            if (d[i] != ':') {
                ev = fail(p, 400, is_ws(d[i]) ? "whitespace before colon" : "bad field name");
                break;
            }
            i++;
            if (store)
                p->buf[p->blen++] = '\0';
            p->state = S_VALUE_START;
            break;
        case S_VALUE_START:
            for (j = i; j < end && is_ws(d[j]); j++)
                ;
            i = j;
            if (i == end)
                break;
            p->value_off = p->value_end = p->blen;
            p->state = S_VALUE;
            break;
        case S_VALUE:
            for (j = i; j < end && is_field_char(d[j]); j++)
                if (!is_ws(d[j]))
                    p->value_end = p->blen + (j - i) + 1;
            if (store) {
                memcpy(p->buf + p->blen, d + i, j - i);
                p->blen += j - i;
            }
            i = j;
            if (i == end)
                break;
            if (d[i] != '\r') {
                ev = fail(p, 400, d[i] == '\n' ? "bare LF" : "control character in field value");
                break;
            }
            i++;
            if (store) {
                struct http_header *h = &p->headers[p->nfields];

                p->blen = p->value_end; /* drop trailing OWS */
                p->buf[p->blen++] = '\0';
                h->name = p->buf + p->name_off;
                h->name_len = p->value_off - p->name_off - 1;
                h->value = p->buf + p->value_off;
                h->value_len = p->value_end - p->value_off;
            }
            p->nfields++;
            p->state = S_LINE_LF;
            break;
        case S_END_LF:
            if (c != '\n') {
                ev = fail(p, 400, "bare CR");
                break;
            }
            i++;
            ev = p->trailers ? HTTP_EV_HEAD : finish_head(p);
            break;
        default:
            abort(); /* not a head state: the caller's dispatch is wrong */
        }
        p->head_bytes += i - start;
        /* What is stored never outgrows what was read (see the top comment); trailers are
         * not stored. */
        assert(p->trailers || p->blen <= p->head_bytes);
    }
    *pos = i;
    return ev;
}

/* Chunk framing (size line, CRLF after data) from data[*pos..len), up to the next chunk's data,
 * the trailers or an error. */
static enum http_event parse_chunk_framing(struct http_parser *p, const unsigned char *d,
                                           size_t len, size_t *pos)
{
    size_t i = *pos;

    while (i < len) {
        unsigned char c = d[i];
        int h;

        switch (p->state) {
        case S_CHUNK_DATA_CR:
            if (c != '\r')
                return fail(p, 400, "chunk data not followed by CRLF");
            p->state = S_CHUNK_DATA_LF;
            i++;
            continue;
        case S_CHUNK_DATA_LF:
            if (c != '\n')
                return fail(p, 400, "bare CR");
            p->state = S_CHUNK_SIZE_START;
            p->chunk_line = 0;
            i++;
            continue;
        default:
            break;
        }
        /* A chunk-size line. */
        if (p->chunk_line == HTTP_MAX_CHUNK_LINE)
            return fail(p, 400, "chunk-size line too long");
        p->chunk_line++;
        switch (p->state) {
        case S_CHUNK_SIZE_START:
            if ((h = hex_val(c)) < 0)
                return fail(p, 400, "bad chunk size");
            p->remaining = (uint64_t)h;
            p->state = S_CHUNK_SIZE;
            break;
        case S_CHUNK_SIZE:
            if ((h = hex_val(c)) >= 0) {
                /* remaining <= 2^40 before, so this cannot wrap. */
                p->remaining = p->remaining * 16 + (uint64_t)h;
                if (p->remaining > CHUNK_SIZE_MAX)
                    return fail(p, 400, "chunk size too large");
            } else if (c == ';') {
                p->state = S_CHUNK_EXT;
            } else if (is_ws(c)) {
                p->state = S_CHUNK_BWS;
            } else if (c == '\r') {
                p->state = S_CHUNK_SIZE_LF;
            } else {
                return fail(p, 400, c == '\n' ? "bare LF" : "bad chunk size");
            }
            break;
        case S_CHUNK_BWS:
            if (c == ';')
                p->state = S_CHUNK_EXT;
            else if (!is_ws(c))
                return fail(p, 400, "bad chunk extension");
            break;
        case S_CHUNK_EXT:
            if (c == '\r')
                p->state = S_CHUNK_SIZE_LF;
            else if (!is_field_char(c))
                return fail(p, 400, c == '\n' ? "bare LF" : "control character in chunk line");
            break;
        case S_CHUNK_SIZE_LF:
            if (c != '\n')
                return fail(p, 400, "bare CR");
            i++;
            if (p->remaining > (uint64_t)INT64_MAX - p->body_total)
                return fail(p, 413, "chunked body too large");
            p->body_total += p->remaining;
            if (p->remaining) {
                p->state = S_CHUNK_DATA;
            } else {
                p->state = S_LINE_START;
                p->trailers = true;
                p->head_bytes = 0;
                p->nfields = 0;
            }
            *pos = i;
            return HTTP_EV_NEED_MORE;
        default:
            abort();
        }
        i++;
    }
    *pos = i;
    return HTTP_EV_NEED_MORE;
}

enum http_event http_parser_feed(struct http_parser *p, const char *data, size_t len,
                                 size_t *consumed, const char **body, size_t *body_len)
{
    const unsigned char *d = (const unsigned char *)data;
    enum http_event ev;
    size_t i = 0, n;

    *consumed = 0;
    *body = NULL;
    *body_len = 0;
    if (p->state == S_ERROR)
        return HTTP_EV_ERROR;
    if (p->state == S_DONE)
        reset_request(p);
    for (;;) {
        switch (p->state) {
        case S_RL_START ... S_END_LF:
            ev = parse_head(p, d, len, &i);
            if (ev == HTTP_EV_HEAD && p->trailers) {
                p->state = S_DONE;
                ev = HTTP_EV_DONE;
            }
            goto out;
        case S_BODY_CL:
        case S_CHUNK_DATA:
            if (p->state == S_BODY_CL && p->remaining == 0) {
                p->state = S_DONE;
                ev = HTTP_EV_DONE;
                goto out;
            }
            if (i == len) {
                ev = HTTP_EV_NEED_MORE;
                goto out;
            }
            n = (size_t)CAIRN_MIN(p->remaining, (uint64_t)(len - i));
            *body = data + i;
            *body_len = n;
            i += n;
            p->remaining -= n;
            if (p->remaining == 0 && p->state == S_CHUNK_DATA)
                p->state = S_CHUNK_DATA_CR;
            ev = HTTP_EV_BODY;
            goto out;
        case S_CHUNK_SIZE_START ... S_CHUNK_SIZE_LF:
        case S_CHUNK_DATA_CR:
        case S_CHUNK_DATA_LF:
            ev = parse_chunk_framing(p, d, len, &i);
            if (ev == HTTP_EV_ERROR || i == len)
                goto out;
            break; /* on to the chunk data or the trailers */
        default:
            abort();
        }
    }
out:
    *consumed = i;
    return ev;
}

const struct http_request *http_parser_request(const struct http_parser *p)
{
    return p->head_done ? &p->req : NULL;
}

int http_parser_error_status(const struct http_parser *p)
{
    return p->state == S_ERROR ? p->err_status : 0;
}

const char *http_parser_error_reason(const struct http_parser *p)
{
    return p->state == S_ERROR ? p->err_reason : "no error";
}

const struct http_header *http_header_find(const struct http_request *r, const char *name)
{
    for (unsigned i = 0; r && i < r->nheaders; i++)
        if (!strcmp(r->headers[i].name, name))
            return &r->headers[i];
    return NULL;
}

long http_pct_decode(const char *src, size_t len, char *dst, size_t cap)
{
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        int c = (unsigned char)src[i];

        if (c == '%') {
            int hi, lo;

            if (len - i < 3) /* fewer than two bytes follow */
                return -1;
            hi = hex_val((unsigned char)src[i + 1]);
            lo = hex_val((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi << 4 | lo;
            i += 2;
        }
        if (c == 0)
            return -1; /* a NUL would silently truncate the string the caller sees */
        if (o + 1 >= cap)
            return -1;
        dst[o++] = (char)c;
    }
    if (cap == 0)
        return -1;
    dst[o] = '\0';
    return (long)o;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}
