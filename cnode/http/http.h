/*
 * http.h - a strict, incremental HTTP/1.1 request parser with explicit limits.  No I/O.
 *
 * The server feeds it the bytes it read from a socket, in pieces of any size, and gets back
 * one event at a time: the request head is complete, a span of body bytes (already freed of
 * chunked framing, pointing into the caller's input: no copy), or the message is complete.
 * The request line and headers are copied into the parser's own bounded buffer, so the
 * caller may release its input after each call.  Anything outside RFC 9112's grammar, or
 * beyond a limit, is an error with the HTTP status to answer (the connection is then closed):
 * no guessing, since a lenient parser in front of a signature check invites smuggling.
 *
 * Accepted: methods GET HEAD PUT POST DELETE OPTIONS; origin-form targets (and "*" for
 * OPTIONS); HTTP/1.0 and HTTP/1.1; Content-Length (one value, or several identical) or
 * Transfer-Encoding: chunked (only that coding; with Content-Length too is an error), chunk
 * extensions are skipped, trailers after the last chunk are parsed with the header limits
 * and ignored.  Header names are lowercased; values have surrounding whitespace trimmed.
 * Obsolete line folding, bare CR, NUL or other control characters in the head are errors.
 */
#ifndef CAIRN_CN_HTTP_H
#define CAIRN_CN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD_BYTES 16384u /* request line + headers, as S3 (8 KiB headers) plus slack */
#define HTTP_MAX_HEADERS 100u
#define HTTP_MAX_TARGET 8192u      /* request-target bytes */
#define HTTP_MAX_CHUNK_LINE 4096u  /* chunk-size line including extensions */

enum http_method {
    HTTP_GET,
    HTTP_HEAD,
    HTTP_PUT,
    HTTP_POST,
    HTTP_DELETE,
    HTTP_OPTIONS,
};

struct http_header {
    const char *name; /* lowercase, NUL-terminated, in the parser's buffer */
    size_t name_len;
    const char *value; /* trimmed, NUL-terminated, in the parser's buffer */
    size_t value_len;
};

/* The head of the current request; valid from HTTP_EV_HEAD until the next request starts
 * (the first http_parser_feed() after HTTP_EV_DONE) or http_parser_destroy(). */
struct http_request {
    enum http_method method;
    const char *method_name;
    const char *target; /* raw request-target as sent (path?query), NUL-terminated */
    size_t target_len;
    const char *path; /* target up to '?' (still percent-encoded), NUL-terminated copy */
    size_t path_len;
    const char *query; /* after '?', "" if none, NUL-terminated copy */
    size_t query_len;
    unsigned version_minor; /* 0 or 1 */
    const struct http_header *headers;
    unsigned nheaders;
    int64_t content_length; /* -1 if absent (chunked, or no body) */
    bool chunked;
    bool keep_alive;      /* HTTP/1.1 without "Connection: close", or 1.0 with keep-alive */
    bool expect_continue; /* "Expect: 100-continue" (other expectations give 417) */
};

enum http_event {
    HTTP_EV_NEED_MORE, /* all input consumed, nothing to report */
    HTTP_EV_HEAD,      /* request head complete: http_parser_request() is valid */
    HTTP_EV_BODY,      /* *body / *body_len: body bytes (a span of the input) */
    HTTP_EV_DONE,      /* the message (head and whole body) is complete */
    HTTP_EV_ERROR,     /* malformed or over a limit: see http_parser_error_status() */
};

struct http_parser;

/* Returns NULL on allocation failure. */
struct http_parser *http_parser_create(void);
void http_parser_destroy(struct http_parser *p); /* accepts NULL */

/* Consume input up to the next event.  *consumed is set to the bytes used (the caller feeds
 * the rest again on the next call).  For HTTP_EV_BODY, *body points into data and *body_len
 * is the span's length (never 0).
 * After HTTP_EV_DONE the next call starts a new request.  After HTTP_EV_ERROR every call
 * returns HTTP_EV_ERROR. */
enum http_event http_parser_feed(struct http_parser *p, const char *data, size_t len,
                                 size_t *consumed, const char **body, size_t *body_len);

const struct http_request *http_parser_request(const struct http_parser *p);

/* After HTTP_EV_ERROR: the status to answer (400, 411, 413, 414, 417, 431, 501, 505) and a
 * short static reason for logs. */
int http_parser_error_status(const struct http_parser *p);
const char *http_parser_error_reason(const struct http_parser *p);

/* First header named name (lowercase), or NULL. */
const struct http_header *http_header_find(const struct http_request *r, const char *name);

/* Percent-decode src[0..len) into dst (cap bytes incl. NUL).  '+' stays '+'.  Returns the
 * decoded length or -1 on a bad escape, an encoded NUL or overflow. */
long http_pct_decode(const char *src, size_t len, char *dst, size_t cap);

/* The reason phrase for a status code ("OK", "Not Found", ...). */
const char *http_status_reason(int status);

#endif
