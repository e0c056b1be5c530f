/*
 * server.h - the C-node's HTTP front end: libuv event loops for the sockets, worker threads
 * for the requests.
 *
 * Design.  `loops` threads each run a libuv loop; all listen on one port with SO_REUSEPORT, so
 * the kernel spreads connections across them.  A loop reads its connections, parses with
 * cnode/http.h, and when a request head is complete hands the request to the worker pool.
 * A worker runs the application's handler, which may block: the stripe client and the
 * metadata layer wait on the D-nodes synchronously, each worker with its own cluster view
 * (worker_init), so no cluster state is shared between threads.
 *
 * Bodies stream.  The loop copies de-chunked body bytes into the request's body window (a
 * bounded ring, body_window bytes) and stops reading the socket while the window is full; the
 * handler pulls bytes with http_req_read(), which wakes the loop as space frees.  Responses
 * stream the other way: http_req_write() queues bytes for the loop to send and blocks while more
 * than body_window bytes wait.  A 5 GiB PUT or GET thus holds at most two windows of memory.
 *
 * One request at a time per connection: the loop reads the next request of a keep-alive
 * connection only after the handler finished the previous response and its body was read
 * whole (a handler that answers without reading the body makes the server discard up to
 * HTTP_SERVER_MAX_DISCARD bytes, else close the connection).  "Expect: 100-continue" is answered
 * with "100 Continue" when the handler first calls http_req_read(); a handler that answers first
 * gets its final status sent without the 100 and the connection closed after it.
 *
 * Limits: malformed or oversized heads are answered by the loop itself (status from the
 * parser, via the app's error_response hook so the body is an S3 error) and the connection
 * closed; idle keep-alive connections close after HTTP_SERVER_IDLE_MS; a request whose body
 * stalls for HTTP_SERVER_BODY_MS fails http_req_read() with CAIRN_ETIMEDOUT.
 */
#ifndef CAIRN_HTTP_SERVER_H
#define CAIRN_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cnode/http/http.h"

#define HTTP_SERVER_IDLE_MS 60000u
#define HTTP_SERVER_BODY_MS 60000u
#define HTTP_SERVER_MAX_DISCARD (1u << 20)
#define HTTP_SERVER_DEFAULT_WINDOW (8u << 20)
#define HTTP_SERVER_MAX_CONNS 4096u

struct http_server;
struct http_req; /* one HTTP request, owned by the server; handlers borrow it */

struct http_server_app {
    void *app; /* passed back to every hook */
    /* Per-worker state (e.g. a cluster view), created on the worker thread before it takes
     * requests; NULL return fails http_server_start().  May be NULL. */
    void *(*worker_init)(void *app, unsigned worker);
    void (*worker_fini)(void *app, void *wstate);
    /* Handle one request on a worker thread.  Must answer: http_req_respond() then (unless the
     * method is HEAD or the length is 0) http_req_write() and http_req_finish().  If it returns
     * without responding, the server answers 500 and closes the connection. */
    void (*handle)(void *app, void *wstate, struct http_req *r);
    /* Build the body for an error the loop answers itself (bad head: status 400/413/431/...):
     * fills *body (malloc'd, the server frees it) and *len and returns the content type, or
     * NULL for an empty body.  May be NULL.  Called on a loop thread (must not block) and, for
     * the 500 of a handler that did not answer, on a worker: it must be thread-safe. */
    const char *(*error_response)(void *app, int status, const char *reason, char **body,
                                  size_t *len);
    /* The status to answer a bad head with, given the parser's (S3 answers oversized heads with
     * 400, not 431).  May be NULL: the parser's status is sent. */
    int (*error_status)(void *app, int status);
};

struct http_server_config {
    const char *host; /* address to listen on */
    unsigned port;    /* 0: ephemeral (see http_server_port) */
    unsigned loops;   /* event loop threads; 0 = number of online CPUs */
    unsigned workers; /* handler threads; 0 = 16 */
    size_t body_window; /* 0 = HTTP_SERVER_DEFAULT_WINDOW */
    /* Added after the first version (tests shorten them); 0 = the HTTP_SERVER_* default. */
    unsigned idle_ms;   /* HTTP_SERVER_IDLE_MS */
    unsigned body_ms;   /* HTTP_SERVER_BODY_MS: also bounds a send that makes no progress */
    unsigned max_conns; /* HTTP_SERVER_MAX_CONNS: connections beyond it are accepted and closed */
};

/* Bind, start the loops and the workers.  Returns 0, CAIRN_EINVAL, CAIRN_EIO (bind failed:
 * errno kept; or a worker_init returned NULL), CAIRN_ENOMEM.  Each loop has its own
 * SO_REUSEPORT listening socket; SIGPIPE is blocked in the loop threads. */
int http_server_start(const struct http_server_config *cfg, const struct http_server_app *app,
                    struct http_server **out);
unsigned http_server_port(const struct http_server *s);
/* Stop accepting, close every connection, join all threads.  Accepts NULL. */
void http_server_stop(struct http_server *s);

/* ---- for handlers, on the worker thread ---- */

const struct http_request *http_req_http(const struct http_req *r);
/* Client address as "ip:port". */
const char *http_req_peer(const struct http_req *r);

/* Read up to len body bytes (the body as sent, chunked framing removed).  Blocks until at
 * least one byte, the end of the body, or an error.  Returns bytes read, 0 at the end of the
 * body, or CAIRN_ETIMEDOUT / CAIRN_EUNREACH (client gone) / CAIRN_EPROTO (bad chunking). */
ssize_t http_req_read(struct http_req *r, void *buf, size_t len);
/* Read exactly len bytes unless the body ends first; returns bytes read or an error. */
ssize_t http_req_read_full(struct http_req *r, void *buf, size_t len);

/* Start the response.  headers (name: value pairs, names as to be sent; a name_len or
 * value_len of 0 means strlen()) are copied; CR, LF or NUL in them is CAIRN_EINVAL.
 * content_length >= 0 sends Content-Length; -1 sends Transfer-Encoding: chunked.  The server
 * adds Date, Server, Connection (and Content-Length: 0 for bodiless responses when asked).
 * For HEAD requests content_length is sent as the header and no body follows (call
 * http_req_finish() next); 204 and 304 get neither Content-Length nor a body.  Returns 0 or CAIRN_EUNREACH if the client is gone. */
int http_req_respond(struct http_req *r, int status, const struct http_header *headers,
                   unsigned nheaders, int64_t content_length);
/* Queue body bytes (copied).  Blocks while the output window is full.  Returns 0 or
 * CAIRN_EUNREACH (CAIRN_EINVAL: before http_req_respond(), after http_req_finish(), or more bytes
 * than the Content-Length; writes for HEAD, 204 and 304 are dropped). */
int http_req_write(struct http_req *r, const void *data, size_t len);
/* End the response (writes the last chunk for chunked responses).  The request is done; r
 * must not be used afterwards.  Returns 0 or CAIRN_EUNREACH. */
int http_req_finish(struct http_req *r);
/* Convenience: respond with a complete body in one call (respond + write + finish).  Given
 * before the request body was read and with more than HTTP_SERVER_MAX_DISCARD bytes of it
 * still to come, the response says "Connection: close" (the server will not discard that
 * much).  A handler answering with http_req_respond() may still read the body afterwards. */
int http_req_reply(struct http_req *r, int status, const struct http_header *headers,
                 unsigned nheaders, const void *body, size_t len);
/* What the handler's request did so far, for its counters: body bytes read and written and
 * the status answered (0: none yet).  Valid until the handler returns, after finish too. */
void http_req_counts(const struct http_req *r, uint64_t *in, uint64_t *out, int *status);
/* Ask the server to close the connection after this response (e.g. the body was refused).
 * Works until the handler returns, even after http_req_finish() (then without a
 * "Connection: close" header in the response already sent). */
void http_req_close_after(struct http_req *r);

#endif
