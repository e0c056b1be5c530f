/*
 * out.h - the HTTP server's output, private to cnode/http: chunks of bytes queued for the
 * socket, and a response's status line and headers formatted into one.  No state and no
 * locks: the caller owns every chunk it gets, and the handler's side (a worker) and the
 * loop's side (error answers) both format heads with it.
 */
#ifndef CAIRN_CN_HTTP_OUT_H
#define CAIRN_CN_HTTP_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/http/http.h"

/* A chunk of output: len bytes used of cap. */
struct http_out {
    struct http_out *next;
    size_t len, cap;
    char data[];
};

/* An empty chunk of cap bytes, or NULL if out of memory. */
struct http_out *http_out_new(size_t cap);
/* Free a list of chunks.  Accepts NULL. */
void http_out_free(struct http_out *o);
/* Copy n bytes (s may be NULL if n is 0) to p; returns p + n. */
char *http_out_put(char *p, const void *s, size_t n);

/* Whether a handler's header may be sent: a non-empty token for a name, no control
 * characters but tab in the value. */
bool http_out_header_ok(const struct http_header *h);

enum http_framing { HTTP_FRAMING_NONE, HTTP_FRAMING_LENGTH, HTTP_FRAMING_CHUNKED };

struct http_out_head_spec {
    int status;
    const struct http_header *headers; /* the handler's; the ones the server writes are dropped */
    unsigned nheaders;
    const char *ctype; /* extra Content-Type, or NULL */
    enum http_framing framing;
    int64_t length;   /* for HTTP_FRAMING_LENGTH */
    bool close;       /* Connection: close */
    bool keepalive10; /* Connection: keep-alive (HTTP/1.0 client) */
};

/* The status line and headers (with Date and Server) in a new chunk with `room` spare bytes
 * for the body; NULL if out of memory. */
struct http_out *http_out_head(const struct http_out_head_spec *h, size_t room);

#endif
