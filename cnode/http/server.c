/*
 * server.c - the C-node's HTTP front end (see server.h): libuv loops own the sockets, a pool
 * of worker threads runs the blocking handler.
 *
 * Listening.  Every loop has its own listening socket, bound to the same address with
 * SO_REUSEPORT (netloop.h, shared with the RPC server), so the kernel spreads
 * accepted connections across loops and no socket ever moves between threads.  With port 0
 * the first socket picks the port and the others bind to it.
 *
 * Ownership.  A connection (struct cn_conn) is owned by its loop thread: the socket, the
 * parser, the read buffer and the connection state machine are touched only there.  The
 * request embedded in it is handed to a worker when its head is complete; what the two
 * threads share (the body window, the output queue, and the flags body_eof, gone,
 * worker_done, ...) sits under the connection's mutex, and the worker sleeps on its condvar.
 * The loop never blocks: a worker that needs the loop to act (bytes to send, space freed in
 * the body window, handler done) puts the connection on its loop's notify list and calls
 * uv_async_send(), the only libuv call made off a loop thread.  The connection is freed when
 * its last reference goes: the loop holds one until the socket's close callback, a worker
 * one while it runs a request, the notify list one while the connection waits in it.
 *
 * Data path.  Read: the loop reads up to RBUF_SIZE at a time, the parser points body spans
 * into that buffer, the loop copies them into the body ring and stops reading while the ring
 * is full (the unconsumed rest of the buffer waits; no read is issued until it is consumed).
 * The worker copies out of the ring and wakes the loop when half the ring (or all) is free.
 * Write: http_req_write() copies into chunks (small writes coalesce into the tail chunk, large
 * ones are cut into pieces so the loop can send one while the worker fills the next); the
 * loop sends everything queued as one uv_write() with one buffer per chunk and keeps one
 * write in flight, so output batches itself under load.  Each direction holds at most one
 * window of memory per request.
 *
 * Connection states (loop side): C_HEAD waits for a request head (the whole head must come
 * within the idle timeout, so a head sent a byte at a time cannot hold a slot), C_REQ has a
 * request with a worker or an error answer being sent (body timeout while the loop waits for
 * body bytes, send timeout while a write makes no progress), C_LINGER sent its last response
 * and a FIN and drains what the client still sends, for at most LINGER_MS, so that closing
 * with unread input does not reset the connection before the client has read our answer.
 *
 * Timeouts are checked by one sweep timer per loop rather than a timer per connection.
 * SIGPIPE is blocked in the loop threads: libuv writes with writev(), and a peer that reset
 * must give EPIPE, not kill the process.
 */
#include "cnode/http/server.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cnode/net/loop.h"
#include "common/cairn.h"
#include "common/log.h"

#define TAG "server"
#define RBUF_SIZE (256u << 10)    /* socket read buffer per connection */
#define OUT_SMALL (16u << 10)     /* minimum chunk capacity, so small writes coalesce */
#define OUT_COALESCE 4096u        /* writes up to this size are copied into the tail chunk */
#define OUT_PIECE_MIN (64u << 10) /* large writes are queued in pieces of window/4, clamped */
#define OUT_PIECE_MAX (1u << 20)
#define LINGER_MS 2000u
#define DEFAULT_WORKERS 16u

struct out_chunk {
    struct out_chunk *next;
    size_t len, cap;
    char data[];
};

/* One uv_write() of every chunk that was queued when it started. */
struct write_batch {
    uv_write_t req;
    struct cn_conn *c;
    struct out_chunk *chunks; /* owned; freed when the write completes */
    size_t bytes;
    unsigned nbufs;
    uv_buf_t bufs[];
};

enum conn_state { C_HEAD, C_REQ, C_LINGER };

struct http_req {
    struct cn_conn *c;
    struct http_request head; /* private copy: see copy_head() */
    void *head_mem;
    /* worker-only response state */
    bool responded, finished;
    bool bodyless; /* HEAD, 204, 304: body writes are dropped */
    bool chunked;
    int64_t left; /* Content-Length bytes still owed */
    uint64_t body_read;
};

struct cn_loop;

struct cn_conn {
    uv_tcp_t tcp;
    uv_shutdown_t shutdown_req;
    struct cn_loop *lp;
    struct cn_conn *prev, *next; /* the loop's connections */

    /* ---- loop thread only ---- */
    enum conn_state state;
    struct http_parser *parser;
    char *rbuf;
    size_t roff, rlen; /* unparsed input: rbuf[roff..rlen) */
    const char *pend;  /* body bytes parsed but not yet in the ring (points into rbuf) */
    size_t pend_len;
    bool reading;    /* uv_read_start() active */
    bool msg_done;   /* the parser reported the end of the current request */
    bool input_off;  /* read no more of this request (bad chunking, timeout, too much) */
    bool discarding; /* the handler is done: drop the rest of the body */
    int64_t req_cl;
    uint64_t body_rx; /* body bytes parsed for the current request */
    uint64_t discard_left;
    uint64_t last_rx, write_started, linger_until; /* uv_now() stamps */
    uint64_t head_since; /* C_HEAD since: the whole head must come within idle_ms */
    char peer[NET_ADDR_STRLEN];
    struct http_req req;

    /* ---- shared with the worker, under mu ---- */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the worker waits here; the loop never waits */
    unsigned refs;
    bool closed;        /* the loop closed the socket */
    bool gone;          /* no more I/O with the client: reads and writes fail */
    bool notify_queued; /* wake is on the loop's wake list */
    struct net_wake wake;
    struct cn_conn *qnext; /* the worker queue */
    char *ring;
    size_t ring_cap, ring_rpos, ring_len;
    bool body_eof;
    int body_err;
    bool loop_waiting;                     /* the loop stopped because the ring is full */
    bool worker_waiting;                   /* the worker sleeps on cv */
    struct out_chunk *out_head, *out_tail; /* queued, not yet handed to uv_write() */
    size_t out_bytes;                      /* queued + in flight */
    bool write_inflight;
    bool worker_done, close_after, continue_sent, expect_continue;
    bool expect_empty; /* Expect: 100-continue on a request without a body */
};

struct cn_loop {
    struct net_loop nl; /* the uv loop, its thread, wake list and sweep timer */
    struct http_server *s;
    unsigned idx;
    uv_tcp_t listener;
    bool listener_inited;
    struct cn_conn *conns;
};

struct cn_worker {
    struct http_server *s;
    unsigned idx;
    pthread_t thread;
};

struct http_server {
    struct http_server_app app;
    size_t window;
    uint64_t idle_ms, body_ms;
    unsigned max_conns;
    unsigned port;
    unsigned nloops, nworkers, workers_started;
    struct cn_loop *loops;
    struct cn_worker *workers;
    atomic_uint nconns;
    atomic_bool stopping;

    pthread_mutex_t mu; /* worker queue, start and stop handshakes */
    pthread_cond_t qcv;
    pthread_cond_t scv;
    struct cn_conn *q_head, *q_tail;
    bool quit;
    unsigned inits_done, inits_failed, loops_closed;
};

static void conn_run(struct cn_conn *c);
static void conn_close(struct cn_conn *c);

/* ---- small helpers ---- */

static size_t out_piece(size_t window)
{
    return CAIRN_MAX(OUT_PIECE_MIN, CAIRN_MIN(OUT_PIECE_MAX, window / 4));
}

static struct out_chunk *chunk_new(size_t cap)
{
    struct out_chunk *o = malloc(sizeof(*o) + cap);

    if (o) {
        o->next = NULL;
        o->len = 0;
        o->cap = cap;
    }
    return o;
}

static void chunks_free(struct out_chunk *o)
{
    while (o) {
        struct out_chunk *n = o->next;

        free(o);
        o = n;
    }
}

static char *put(char *p, const char *s, size_t n)
{
    if (n) /* s may be NULL then */
        memcpy(p, s, n);
    return p + n;
}

static char *puts0(char *p, const char *s)
{
    return put(p, s, strlen(s));
}

/* RFC 1123 date, formatted by hand (strftime's names follow the locale); cached per second
 * per thread. */
static const char *http_date(void)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static __thread time_t last = -1;
    static __thread char buf[40];
    time_t now = time(NULL);
    struct tm tm;

    if (now != last) {
        gmtime_r(&now, &tm);
        snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        last = now;
    }
    return buf;
}

static size_t hname_len(const struct http_header *h)
{
    return h->name_len ? h->name_len : strlen(h->name);
}

static size_t hvalue_len(const struct http_header *h)
{
    return h->value_len ? h->value_len : strlen(h->value);
}

/* Headers the server writes itself; a handler's copy of them is dropped. */
static bool managed_header(const char *name, size_t len)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "connection", "date",
                                        "server"};

    for (unsigned i = 0; i < CAIRN_ARRAY_SIZE(names); i++)
        if (strlen(names[i]) == len && !strncasecmp(names[i], name, len))
            return true;
    return false;
}

static bool valid_header(const struct http_header *h)
{
    size_t nl, vl;

    if (!h->name || !h->value)
        return false;
    nl = hname_len(h);
    vl = hvalue_len(h);
    if (!nl)
        return false;
    for (size_t i = 0; i < nl; i++) {
        unsigned char ch = (unsigned char)h->name[i];

        if (ch <= ' ' || ch >= 0x7f || ch == ':')
            return false;
    }
    for (size_t i = 0; i < vl; i++) {
        unsigned char ch = (unsigned char)h->value[i];

        if ((ch < ' ' && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

enum framing { F_NONE, F_LENGTH, F_CHUNKED };

struct head_spec {
    int status;
    const struct http_header *headers;
    unsigned nheaders;
    const char *ctype; /* extra Content-Type, or NULL */
    enum framing framing;
    int64_t length;   /* for F_LENGTH */
    bool close;       /* Connection: close */
    bool keepalive10; /* Connection: keep-alive (HTTP/1.0 client) */
};

/* The status line and headers in a new chunk with `room` spare bytes for the body. */
static struct out_chunk *head_chunk(const struct head_spec *h, size_t room)
{
    const char *reason = http_status_reason(h->status);
    size_t size = 64 + strlen(reason) + 160;
    struct out_chunk *o;
    char num[32];
    char *p;

    for (unsigned i = 0; i < h->nheaders; i++)
        size += hname_len(&h->headers[i]) + hvalue_len(&h->headers[i]) + 4;
    if (h->ctype)
        size += strlen(h->ctype) + 16;
    o = chunk_new(size + room);
    if (!o)
        return NULL;
    p = o->data;
    p += snprintf(p, 64 + strlen(reason), "HTTP/1.1 %d %s\r\n", h->status, reason);
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *x = &h->headers[i];
        size_t nl = hname_len(x);

        if (managed_header(x->name, nl))
            continue;
        p = put(p, x->name, nl);
        p = put(p, ": ", 2);
        p = put(p, x->value, hvalue_len(x));
        p = put(p, "\r\n", 2);
    }
    if (h->ctype) {
        p = puts0(p, "Content-Type: ");
        p = puts0(p, h->ctype);
        p = put(p, "\r\n", 2);
    }
    p = puts0(p, "Date: ");
    p = puts0(p, http_date());
    p = puts0(p, "\r\nServer: Cairn\r\n");
    if (h->framing == F_LENGTH) {
        snprintf(num, sizeof(num), "%lld", (long long)h->length);
        p = puts0(p, "Content-Length: ");
        p = puts0(p, num);
        p = put(p, "\r\n", 2);
    } else if (h->framing == F_CHUNKED) {
        p = puts0(p, "Transfer-Encoding: chunked\r\n");
    }
    if (h->close)
        p = puts0(p, "Connection: close\r\n");
    else if (h->keepalive10)
        p = puts0(p, "Connection: keep-alive\r\n");
    p = put(p, "\r\n", 2);
    o->len = (size_t)(p - o->data);
    assert(o->len <= size);
    return o;
}

/* ---- connection lifetime ---- */

static void conn_free(struct cn_conn *c)
{
    chunks_free(c->out_head);
    free(c->ring);
    free(c->req.head_mem);
    http_parser_destroy(c->parser);
    free(c->rbuf);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void conn_unref(struct cn_conn *c)
{
    bool last;

    pthread_mutex_lock(&c->mu);
    assert(c->refs > 0);
    last = --c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (last)
        conn_free(c);
}

/* Ask the loop to look at c (any thread, c->mu held).  Takes a reference for the list. */
static void conn_notify_locked(struct cn_conn *c)
{
    struct cn_loop *lp = c->lp;

    if (c->notify_queued || c->closed)
        return;
    c->notify_queued = true;
    c->refs++;
    net_loop_wake(&lp->nl, &c->wake);
}

static void on_conn_close(uv_handle_t *h)
{
    struct cn_conn *c = h->data;
    struct cn_loop *lp = c->lp;

    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    atomic_fetch_sub(&lp->s->nconns, 1);
    conn_unref(c);
}

/* Close the socket now; a worker still on the request sees CAIRN_EUNREACH. */
static void conn_close(struct cn_conn *c)
{
    if (c->closed)
        return;
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    c->gone = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct cn_conn *c = req->data;

    if (status < 0)
        conn_close(c);
}

static void update_reading(struct cn_conn *c);

/* Close after the last response: FIN first, then drain the client's input for a while. */
static void conn_linger(struct cn_conn *c)
{
    if (atomic_load(&c->lp->s->stopping)) {
        conn_close(c);
        return;
    }
    c->state = C_LINGER;
    pthread_mutex_lock(&c->mu);
    c->gone = true;
    pthread_mutex_unlock(&c->mu);
    c->roff = c->rlen = 0;
    c->pend_len = 0;
    c->linger_until = uv_now(&c->lp->nl.loop) + LINGER_MS;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown)) {
        conn_close(c);
        return;
    }
    update_reading(c);
}

/* ---- reading (loop thread) ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct cn_conn *c = h->data;

    (void)suggested;
    if (!c->rbuf)
        c->rbuf = malloc(RBUF_SIZE);
    if (!c->rbuf) {
        buf->base = NULL; /* libuv reports UV_ENOBUFS */
        buf->len = 0;
        return;
    }
    /* Reads are started only when every byte read before is consumed. */
    assert(c->roff == c->rlen && !c->pend_len);
    c->roff = c->rlen = 0;
    buf->base = c->rbuf;
    buf->len = RBUF_SIZE;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct cn_conn *c = st->data;

    (void)buf;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF waiting for a head is the normal end; mid-body the client is gone; while
         * lingering it is what we waited for. */
        conn_close(c);
        return;
    }
    c->last_rx = uv_now(&c->lp->nl.loop);
    if (c->state == C_LINGER)
        return; /* discarded */
    c->roff = 0;
    c->rlen = (size_t)nread;
    conn_run(c);
}

static void update_reading(struct cn_conn *c)
{
    bool want = false;
    int rc;

    if (c->closed)
        return;
    switch (c->state) {
    case C_HEAD:
        want = c->roff == c->rlen;
        break;
    case C_REQ:
        want = !c->msg_done && !c->input_off && !c->pend_len && c->roff == c->rlen;
        break;
    case C_LINGER:
        want = true;
        break;
    }
    if (want && !c->reading) {
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (rc) {
            conn_close(c);
            return;
        }
        c->reading = true;
        c->last_rx = uv_now(&c->lp->nl.loop); /* time spent paused is not the client's */
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Copy pending body bytes into the ring.  Returns false if the ring is full (the loop then
 * waits for the worker to drain it). */
static bool push_body(struct cn_conn *c)
{
    while (c->pend_len) {
        size_t cap, wpos, n;

        if (c->discarding) {
            c->pend_len = 0;
            break;
        }
        pthread_mutex_lock(&c->mu);
        cap = c->ring_cap;
        if (c->ring_len == cap) {
            c->loop_waiting = true;
            pthread_mutex_unlock(&c->mu);
            return false;
        }
        wpos = (c->ring_rpos + c->ring_len) % cap;
        n = CAIRN_MIN(c->pend_len, cap - c->ring_len);
        n = CAIRN_MIN(n, cap - wpos);
        pthread_mutex_unlock(&c->mu);
        /* The worker only reads the filled part, so the free part is ours without the lock. */
        memcpy(c->ring + wpos, c->pend, n);
        pthread_mutex_lock(&c->mu);
        c->ring_len += n;
        if (c->worker_waiting)
            pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        c->pend += n;
        c->pend_len -= n;
    }
    return true;
}

/* Private copy of the head for the worker: the loop keeps feeding the same parser (body,
 * chunk trailers) while the handler reads the head, and a copy keeps the threads from
 * sharing parser memory at all.  One allocation, a few hundred bytes typically. */
static int copy_head(struct http_req *r, const struct http_request *h)
{
    size_t ml = strlen(h->method_name);
    size_t size = h->nheaders * sizeof(struct http_header) + ml + 1 + h->target_len + 1 +
                  h->path_len + 1 + h->query_len + 1;
    struct http_header *hd;
    char *mem, *p;

    for (unsigned i = 0; i < h->nheaders; i++)
        size += h->headers[i].name_len + h->headers[i].value_len + 2;
    mem = malloc(size);
    if (!mem)
        return CAIRN_ENOMEM;
    hd = (struct http_header *)(void *)mem;
    p = mem + h->nheaders * sizeof(struct http_header);
    r->head = *h;
#define COPY_STR(dst, src, len)                                                                    \
    do {                                                                                           \
        memcpy(p, (src), (len));                                                                   \
        p[len] = '\0';                                                                             \
        (dst) = p;                                                                                 \
        p += (len) + 1;                                                                            \
    } while (0)
    COPY_STR(r->head.method_name, h->method_name, ml);
    COPY_STR(r->head.target, h->target, h->target_len);
    COPY_STR(r->head.path, h->path, h->path_len);
    COPY_STR(r->head.query, h->query, h->query_len);
    for (unsigned i = 0; i < h->nheaders; i++) {
        hd[i].name_len = h->headers[i].name_len;
        hd[i].value_len = h->headers[i].value_len;
        COPY_STR(hd[i].name, h->headers[i].name, hd[i].name_len);
        COPY_STR(hd[i].value, h->headers[i].value, hd[i].value_len);
    }
#undef COPY_STR
    assert((size_t)(p - mem) == size);
    r->head.headers = hd;
    r->head_mem = mem;
    return 0;
}

/* Append a chunk to the output queue (c->mu held). */
static void out_append_locked(struct cn_conn *c, struct out_chunk *o)
{
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    c->out_bytes += o->len;
}

/* The loop answers a bad head itself, then closes. */
static void error_reply(struct cn_conn *c, int status, const char *why)
{
    const struct http_server_app *app = &c->lp->s->app;
    struct head_spec hs = {.status = status, .framing = F_LENGTH, .close = true};
    char *body = NULL;
    size_t blen = 0;
    struct out_chunk *o;

    if (app->error_status)
        hs.status = app->error_status(app->app, status);
    if (app->error_response)
        hs.ctype = app->error_response(app->app, status, why, &body, &blen);
    if (!hs.ctype || !body)
        blen = 0;
    hs.length = (int64_t)blen;
    o = head_chunk(&hs, blen);
    if (o && blen) {
        memcpy(o->data + o->len, body, blen);
        o->len += blen;
    }
    free(body);
    c->state = C_REQ;
    c->input_off = true;
    c->msg_done = false;
    c->req_cl = -1;
    pthread_mutex_lock(&c->mu);
    c->worker_done = true; /* no worker: the request is ours */
    c->close_after = true;
    if (o)
        out_append_locked(c, o);
    else
        c->gone = true;
    pthread_mutex_unlock(&c->mu);
}

/* A request head is complete: hand the request to the workers. */
static void dispatch(struct cn_conn *c)
{
    struct http_server *s = c->lp->s;
    const struct http_request *h = http_parser_request(c->parser);
    bool nobody = !h->chunked && h->content_length <= 0;
    size_t cap = 0;
    char *ring = NULL;

    if (copy_head(&c->req, h)) {
        error_reply(c, 503, "out of memory");
        return;
    }
    if (!nobody) {
        cap = h->chunked ? s->window
                         : (size_t)CAIRN_MIN((uint64_t)s->window, (uint64_t)h->content_length);
        ring = malloc(cap);
        if (!ring) {
            free(c->req.head_mem);
            c->req.head_mem = NULL;
            error_reply(c, 503, "out of memory");
            return;
        }
    }
    c->state = C_REQ;
    c->msg_done = false;
    c->input_off = false;
    c->discarding = false;
    c->body_rx = 0;
    c->req_cl = h->content_length;
    c->req.c = c;
    c->req.responded = c->req.finished = false;
    c->req.bodyless = c->req.chunked = false;
    c->req.left = 0;
    c->req.body_read = 0;

    pthread_mutex_lock(&c->mu);
    c->ring = ring;
    c->ring_cap = cap;
    c->ring_rpos = c->ring_len = 0;
    c->body_eof = nobody;
    c->body_err = 0;
    c->loop_waiting = false;
    c->worker_done = c->close_after = c->continue_sent = false;
    c->expect_continue = h->expect_continue && h->version_minor >= 1 && !nobody;
    /* Some clients (botocore) misread the next response on the connection if an empty body
     * announced with Expect got no "100 Continue"; a read sends it (see http_req_read). */
    c->expect_empty = h->expect_continue && h->version_minor >= 1 && nobody;
    c->refs++; /* the worker's */
    pthread_mutex_unlock(&c->mu);

    pthread_mutex_lock(&s->mu);
    c->qnext = NULL;
    if (s->q_tail)
        s->q_tail->qnext = c;
    else
        s->q_head = c;
    s->q_tail = c;
    pthread_cond_signal(&s->qcv);
    pthread_mutex_unlock(&s->mu);
}

static void parse_error(struct cn_conn *c)
{
    int status = http_parser_error_status(c->parser);
    const char *why = http_parser_error_reason(c->parser);

    if (c->state == C_HEAD) {
        log_debug(TAG, "%s: bad request head: %d %s", c->peer, status, why);
        error_reply(c, status, why);
        return;
    }
    /* Bad framing inside the body: the handler sees CAIRN_EPROTO and answers. */
    log_debug(TAG, "%s: bad request body: %s", c->peer, why);
    c->input_off = true;
    pthread_mutex_lock(&c->mu);
    c->body_err = CAIRN_EPROTO;
    c->close_after = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Feed buffered input to the parser as far as the state allows. */
static void drive_input(struct cn_conn *c)
{
    for (;;) {
        const char *body = NULL;
        size_t blen = 0, used = 0;
        enum http_event ev;

        if (c->pend_len && !push_body(c))
            return;
        if (c->state == C_LINGER) {
            c->roff = c->rlen;
            return;
        }
        if (c->state == C_REQ && (c->msg_done || c->input_off))
            return;
        /* Mid-request the parser is fed even without input: the end of a Content-Length
         * body is reported by the call after its last bytes. */
        if (c->roff == c->rlen && c->state == C_HEAD)
            return;
        ev = http_parser_feed(c->parser, c->rbuf + c->roff, c->rlen - c->roff, &used, &body, &blen);
        assert(used <= c->rlen - c->roff);
        c->roff += used;
        switch (ev) {
        case HTTP_EV_NEED_MORE:
            assert(c->roff == c->rlen);
            return;
        case HTTP_EV_HEAD:
            assert(c->state == C_HEAD);
            dispatch(c);
            break;
        case HTTP_EV_BODY:
            c->body_rx += blen;
            if (c->discarding) {
                if (blen > c->discard_left) {
                    c->input_off = true;
                    pthread_mutex_lock(&c->mu);
                    c->close_after = true;
                    pthread_mutex_unlock(&c->mu);
                    return;
                }
                c->discard_left -= blen;
                break;
            }
            c->pend = body;
            c->pend_len = blen;
            break;
        case HTTP_EV_DONE:
            c->msg_done = true;
            pthread_mutex_lock(&c->mu);
            c->body_eof = true;
            if (c->worker_waiting)
                pthread_cond_signal(&c->cv);
            pthread_mutex_unlock(&c->mu);
            break;
        case HTTP_EV_ERROR:
            parse_error(c);
            return;
        }
    }
}

/* ---- writing (loop thread) ---- */

static void on_write(uv_write_t *req, int status)
{
    struct write_batch *b = (struct write_batch *)req;
    struct cn_conn *c = b->c;

    chunks_free(b->chunks);
    pthread_mutex_lock(&c->mu);
    c->out_bytes -= b->bytes;
    c->write_inflight = false;
    if (c->worker_waiting)
        pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    free(b);
    if (status < 0) {
        log_debug(TAG, "%s: write: %s", c->peer, uv_strerror(status));
        conn_close(c);
        return;
    }
    c->write_started = uv_now(&c->lp->nl.loop);
    conn_run(c);
}

/* Send everything queued in one uv_write(); one write in flight at a time. */
static void flush_output(struct cn_conn *c)
{
    struct out_chunk *list, *o;
    struct write_batch *b;
    unsigned n = 0, i = 0;
    size_t bytes = 0;
    int rc;

    pthread_mutex_lock(&c->mu);
    if (c->write_inflight || !c->out_head) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    list = c->out_head;
    c->out_head = c->out_tail = NULL;
    c->write_inflight = true;
    pthread_mutex_unlock(&c->mu);

    for (o = list; o; o = o->next) {
        n++;
        bytes += o->len;
    }
    b = malloc(sizeof(*b) + n * sizeof(uv_buf_t));
    if (!b) {
        chunks_free(list);
        pthread_mutex_lock(&c->mu);
        c->out_bytes -= bytes;
        c->write_inflight = false;
        pthread_mutex_unlock(&c->mu);
        conn_close(c);
        return;
    }
    b->c = c;
    b->chunks = list;
    b->bytes = bytes;
    b->nbufs = n;
    for (o = list; o; o = o->next)
        b->bufs[i++] = uv_buf_init(o->data, (unsigned)o->len);
    c->write_started = uv_now(&c->lp->nl.loop);
    rc = uv_write(&b->req, (uv_stream_t *)&c->tcp, b->bufs, n, on_write);
    if (rc) {
        log_debug(TAG, "%s: uv_write: %s", c->peer, uv_strerror(rc));
        on_write(&b->req, rc);
    }
}

/* ---- the connection state machine (loop thread) ---- */

static void request_reset(struct cn_conn *c)
{
    pthread_mutex_lock(&c->mu);
    free(c->ring);
    c->ring = NULL;
    c->ring_cap = c->ring_rpos = c->ring_len = 0;
    c->loop_waiting = false;
    pthread_mutex_unlock(&c->mu);
    free(c->req.head_mem);
    c->req.head_mem = NULL;
    c->state = C_HEAD;
    c->pend_len = 0;
    c->msg_done = c->input_off = c->discarding = false;
    c->head_since = uv_now(&c->lp->nl.loop);
}

/* What follows once the worker is done with the request.  Returns true if the connection
 * moved on and its input should be driven again. */
static bool request_step(struct cn_conn *c)
{
    bool done, flushed, close_after, gone;

    if (c->state != C_REQ)
        return false;
    pthread_mutex_lock(&c->mu);
    done = c->worker_done;
    flushed = !c->out_head && !c->write_inflight;
    close_after = c->close_after;
    gone = c->gone;
    pthread_mutex_unlock(&c->mu);
    if (!done)
        return false;
    if (!c->msg_done && !c->input_off && !c->discarding) {
        /* The handler left body unread: discard a little of it to keep the connection. */
        if (c->req_cl >= 0 && (uint64_t)c->req_cl - c->body_rx > HTTP_SERVER_MAX_DISCARD) {
            c->input_off = true;
            pthread_mutex_lock(&c->mu);
            c->close_after = close_after = true;
            pthread_mutex_unlock(&c->mu);
        } else {
            c->discarding = true;
            c->discard_left = HTTP_SERVER_MAX_DISCARD;
            return true;
        }
    }
    if (!flushed)
        return false;
    if (gone) {
        conn_close(c);
        return false;
    }
    if (close_after || c->input_off || !c->req.head.keep_alive ||
        atomic_load(&c->lp->s->stopping)) {
        conn_linger(c);
        return false;
    }
    if (!c->msg_done)
        return false; /* still discarding */
    request_reset(c);
    return true;
}

/* The one place that advances a connection: after a read, a write, or a worker's notice. */
static void conn_run(struct cn_conn *c)
{
    for (;;) {
        if (c->closed)
            return;
        drive_input(c);
        if (c->closed)
            return;
        flush_output(c);
        if (c->closed)
            return;
        if (!request_step(c))
            break;
    }
    update_reading(c);
}

static void conn_sweep(struct cn_conn *c, uint64_t now)
{
    struct http_server *s = c->lp->s;
    bool inflight, done;

    switch (c->state) {
    case C_HEAD:
        if (now - c->head_since >= s->idle_ms)
            conn_close(c);
        return;
    case C_LINGER:
        if (now >= c->linger_until)
            conn_close(c);
        return;
    case C_REQ:
        break;
    }
    pthread_mutex_lock(&c->mu);
    inflight = c->write_inflight;
    done = c->worker_done;
    pthread_mutex_unlock(&c->mu);
    if (inflight && now - c->write_started >= s->body_ms) {
        log_debug(TAG, "%s: send timed out", c->peer);
        conn_close(c);
        return;
    }
    if (c->reading && now - c->last_rx >= s->body_ms) {
        log_debug(TAG, "%s: body timed out", c->peer);
        if (done) {
            conn_close(c);
            return;
        }
        c->input_off = true;
        pthread_mutex_lock(&c->mu);
        c->body_err = CAIRN_ETIMEDOUT;
        c->close_after = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        update_reading(c);
    }
}

/* ---- loops ---- */

static void loop_sweep(struct net_loop *nl)
{
    struct cn_loop *lp = NET_CONTAINER_OF(nl, struct cn_loop, nl);
    uint64_t now = uv_now(&nl->loop);
    struct cn_conn *c, *next;

    for (c = lp->conns; c; c = next) {
        next = c->next;
        if (!c->closed)
            conn_sweep(c, now);
    }
}

/* Accept and close at once: the connection limit is reached, or we are stopping. */
static void reject(struct cn_loop *lp, uv_stream_t *server)
{
    if (net_reject(&lp->nl.loop, server))
        log_error(TAG, "out of memory refusing a connection");
}

static void on_connection(uv_stream_t *server, int status)
{
    struct cn_loop *lp = server->data;
    struct http_server *s = lp->s;
    struct cn_conn *c;

    if (status < 0) {
        log_warn(TAG, "accept: %s", uv_strerror(status));
        return;
    }
    if (atomic_load(&s->stopping)) {
        reject(lp, server);
        return;
    }
    if (atomic_fetch_add(&s->nconns, 1) >= s->max_conns) {
        atomic_fetch_sub(&s->nconns, 1);
        log_debug(TAG, "refusing a connection (limit %u)", s->max_conns);
        reject(lp, server);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c)
        c->parser = http_parser_create();
    if (!c || !c->parser) {
        free(c);
        atomic_fetch_sub(&s->nconns, 1);
        reject(lp, server);
        return;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->refs = 1; /* the loop's, until the close callback */
    c->lp = lp;
    c->state = C_HEAD;
    c->req.c = c;
    uv_tcp_init(&lp->nl.loop, &c->tcp);
    c->tcp.data = c;
    c->next = lp->conns;
    if (lp->conns)
        lp->conns->prev = c;
    lp->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    net_peer_name(&c->tcp, NULL, c->peer);
    c->head_since = uv_now(&lp->nl.loop);
    update_reading(c);
}

/* The first step of stopping: no more connections, and those open are closed. */
static void loop_close_all(struct net_loop *nl)
{
    struct cn_loop *lp = NET_CONTAINER_OF(nl, struct cn_loop, nl);
    struct http_server *s = lp->s;
    struct cn_conn *c, *next;

    if (!uv_is_closing((uv_handle_t *)&lp->listener))
        uv_close((uv_handle_t *)&lp->listener, NULL);
    for (c = lp->conns; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    pthread_mutex_lock(&s->mu);
    s->loops_closed++;
    pthread_cond_broadcast(&s->scv);
    pthread_mutex_unlock(&s->mu);
}

/* A worker needs the loop to act on this connection (conn_notify_locked()). */
static void loop_wake(struct net_loop *nl, struct net_wake *w)
{
    struct cn_conn *c = NET_CONTAINER_OF(w, struct cn_conn, wake);

    (void)nl;
    pthread_mutex_lock(&c->mu);
    c->notify_queued = false;
    pthread_mutex_unlock(&c->mu);
    conn_run(c);
    conn_unref(c); /* the wake list's */
}

static const struct net_loop_ops loop_ops = {
    .wake = loop_wake,
    .sweep = loop_sweep,
    .close = loop_close_all,
};

static int loop_init(struct http_server *s, struct cn_loop *lp, struct sockaddr_storage *addr,
                     socklen_t alen)
{
    int rc;

    lp->s = s;
    rc = net_loop_init(&lp->nl, &loop_ops, CAIRN_MIN(s->idle_ms, s->body_ms));
    if (rc)
        return rc;
    uv_tcp_init(&lp->nl.loop, &lp->listener);
    lp->listener.data = lp;
    lp->listener_inited = true;
    return net_listen(&lp->listener, addr, alen, &s->port, on_connection);
}

/* ---- workers ---- */

static int reply_error(struct http_req *r, int status);

/* After the handler returned: make sure the client got an answer, then let the loop go on. */
static void request_done(struct cn_conn *c)
{
    struct http_req *r = &c->req;

    if (!r->responded) {
        pthread_mutex_lock(&c->mu);
        c->close_after = true;
        pthread_mutex_unlock(&c->mu);
        reply_error(r, 500);
    } else if (!r->finished) {
        /* A response cut short: only closing tells the client. */
        pthread_mutex_lock(&c->mu);
        c->close_after = true;
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_lock(&c->mu);
    c->worker_done = true;
    conn_notify_locked(c);
    pthread_mutex_unlock(&c->mu);
    conn_unref(c);
}

static void *worker_main(void *arg)
{
    struct cn_worker *w = arg;
    struct http_server *s = w->s;
    void *ws = NULL;
    bool ok = true;
    struct cn_conn *c;

    if (s->app.worker_init) {
        ws = s->app.worker_init(s->app.app, w->idx);
        ok = ws != NULL;
    }
    pthread_mutex_lock(&s->mu);
    s->inits_done++;
    if (!ok)
        s->inits_failed++;
    pthread_cond_broadcast(&s->scv);
    pthread_mutex_unlock(&s->mu);
    if (!ok)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->q_head && !s->quit)
            pthread_cond_wait(&s->qcv, &s->mu);
        c = s->q_head;
        if (c) {
            s->q_head = c->qnext;
            if (!s->q_head)
                s->q_tail = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        if (!c)
            break;
        s->app.handle(s->app.app, ws, &c->req);
        request_done(c);
    }
    if (s->app.worker_fini)
        s->app.worker_fini(s->app.app, ws);
    return NULL;
}

/* ---- start and stop ---- */

static void server_teardown(struct http_server *s)
{
    unsigned started = 0;

    atomic_store(&s->stopping, true);
    /* 1: the loops close their listeners and connections, failing every blocked handler. */
    for (unsigned i = 0; i < s->nloops; i++)
        if (net_loop_close(&s->loops[i].nl))
            started++;
    pthread_mutex_lock(&s->mu);
    while (s->loops_closed < started)
        pthread_cond_wait(&s->scv, &s->mu);
    /* 2: the workers finish what they hold (queued requests fail fast) and exit. */
    s->quit = true;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < s->workers_started; i++)
        pthread_join(s->workers[i].thread, NULL);
    /* 3: no thread can notify a loop any more: close the loops' own handles. */
    for (unsigned i = 0; i < s->nloops; i++) {
        struct cn_loop *lp = &s->loops[i];

        /* never ran: loop_close_all() did not close the listener */
        if (!net_loop_started(&lp->nl) && lp->listener_inited)
            uv_close((uv_handle_t *)&lp->listener, NULL);
        if (net_loop_fini(&lp->nl))
            log_error(TAG, "loop %u: handles left open at stop", i);
    }
    assert(atomic_load(&s->nconns) == 0);
    pthread_cond_destroy(&s->scv);
    pthread_cond_destroy(&s->qcv);
    pthread_mutex_destroy(&s->mu);
    free(s->workers);
    free(s->loops);
    free(s);
}

int http_server_start(const struct http_server_config *cfg, const struct http_server_app *app,
                    struct http_server **out)
{
    struct sockaddr_storage addr;
    socklen_t alen;
    struct http_server *s;
    int rc, saved_errno;

    if (!cfg || !app || !app->handle || !out || cfg->port > 65535)
        return CAIRN_EINVAL;
    rc = net_resolve(cfg->host, cfg->port, &addr, &alen);
    if (rc)
        return rc;
    s = calloc(1, sizeof(*s));
    if (!s)
        return CAIRN_ENOMEM;
    s->app = *app;
    s->window = cfg->body_window ? cfg->body_window : HTTP_SERVER_DEFAULT_WINDOW;
    s->idle_ms = cfg->idle_ms ? cfg->idle_ms : HTTP_SERVER_IDLE_MS;
    s->body_ms = cfg->body_ms ? cfg->body_ms : HTTP_SERVER_BODY_MS;
    s->max_conns = cfg->max_conns ? cfg->max_conns : HTTP_SERVER_MAX_CONNS;
    s->port = cfg->port;
    s->nloops = net_loop_count(cfg->loops);
    s->nworkers = cfg->workers ? cfg->workers : DEFAULT_WORKERS;
    atomic_init(&s->nconns, 0);
    atomic_init(&s->stopping, false);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->qcv, NULL);
    pthread_cond_init(&s->scv, NULL);
    s->loops = calloc(s->nloops, sizeof(*s->loops));
    s->workers = calloc(s->nworkers, sizeof(*s->workers));
    if (!s->loops || !s->workers) {
        rc = CAIRN_ENOMEM;
        goto err;
    }
    for (unsigned i = 0; i < s->nloops; i++) {
        s->loops[i].idx = i;
        rc = loop_init(s, &s->loops[i], &addr, alen);
        if (rc) {
            log_error(TAG, "listen on %s:%u: %s", cfg->host ? cfg->host : "*", cfg->port,
                      strerror(errno));
            goto err;
        }
    }
    for (unsigned i = 0; i < s->nworkers; i++) {
        s->workers[i].s = s;
        s->workers[i].idx = i;
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i])) {
            rc = CAIRN_ENOMEM;
            break;
        }
        s->workers_started++;
    }
    pthread_mutex_lock(&s->mu);
    while (s->inits_done < s->workers_started)
        pthread_cond_wait(&s->scv, &s->mu);
    if (s->inits_failed && !rc)
        rc = CAIRN_EIO;
    pthread_mutex_unlock(&s->mu);
    if (rc)
        goto err;
    for (unsigned i = 0; i < s->nloops; i++) {
        rc = net_loop_start(&s->loops[i].nl);
        if (rc)
            goto err;
    }
    log_info(TAG, "listening on %s:%u (%u loops, %u workers, window %zu)",
             cfg->host ? cfg->host : "*", s->port, s->nloops, s->nworkers, s->window);
    *out = s;
    return 0;

err:
    saved_errno = errno; /* bind's, for the caller */
    server_teardown(s);
    errno = saved_errno;
    return rc;
}

unsigned http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_server_stop(struct http_server *s)
{
    if (s)
        server_teardown(s);
}

/* ---- the handler's side (worker thread) ---- */

const struct http_request *http_req_http(const struct http_req *r)
{
    return &r->head;
}

const char *http_req_peer(const struct http_req *r)
{
    return r->c->peer;
}

/* Copy bytes into the output queue (c->mu held, the window already checked): into the tail
 * chunk if it has room, else a new chunk. */
static int queue_small_locked(struct cn_conn *c, const char *pre, size_t prelen, const char *data,
                              size_t len, const char *post, size_t postlen)
{
    size_t need = prelen + len + postlen;
    struct out_chunk *t = c->out_tail;
    char *p;

    if (!t || t->cap - t->len < need) {
        t = chunk_new(CAIRN_MAX(need, OUT_SMALL));
        if (!t)
            return CAIRN_ENOMEM;
        if (c->out_tail)
            c->out_tail->next = t;
        else
            c->out_head = t;
        c->out_tail = t;
    }
    p = t->data + t->len;
    p = put(p, pre, prelen);
    p = put(p, data, len);
    put(p, post, postlen);
    t->len += need;
    c->out_bytes += need;
    return 0;
}

/* Wait until need more bytes fit in the output window (c->mu held). */
static void wait_window_locked(struct cn_conn *c, size_t need)
{
    size_t window = c->lp->s->window;

    while (!c->gone && c->out_bytes && c->out_bytes + need > window) {
        c->worker_waiting = true;
        pthread_cond_wait(&c->cv, &c->mu);
        c->worker_waiting = false;
    }
}

ssize_t http_req_read(struct http_req *r, void *buf, size_t len)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct cn_conn *c = r->c;
    char *dst = buf;
    size_t got = 0, cap, rpos, avail, n;
    int rc;

    pthread_mutex_lock(&c->mu);
    if (((c->expect_continue && !c->body_eof) || c->expect_empty) && !c->continue_sent &&
        !r->responded && !c->gone) {
        c->continue_sent = true;
        if (queue_small_locked(c, cont, sizeof(cont) - 1, NULL, 0, NULL, 0) == 0 &&
            !c->write_inflight)
            conn_notify_locked(c);
    }
    for (;;) {
        if (c->gone) {
            rc = CAIRN_EUNREACH;
            goto out_unlock;
        }
        if (c->ring_len)
            break;
        if (c->body_err) {
            rc = c->body_err;
            goto out_unlock;
        }
        if (c->body_eof || !len) {
            rc = 0;
            goto out_unlock;
        }
        c->worker_waiting = true;
        pthread_cond_wait(&c->cv, &c->mu);
        c->worker_waiting = false;
    }
    cap = c->ring_cap;
    rpos = c->ring_rpos;
    avail = CAIRN_MIN(len, c->ring_len);
    pthread_mutex_unlock(&c->mu);
    /* The loop only writes the free part of the ring: the filled part is ours. */
    while (got < avail) {
        n = CAIRN_MIN(avail - got, cap - rpos);
        memcpy(dst + got, c->ring + rpos, n);
        got += n;
        rpos = (rpos + n) % cap;
    }
    pthread_mutex_lock(&c->mu);
    c->ring_rpos = rpos;
    c->ring_len -= got;
    if (c->loop_waiting && (c->ring_len == 0 || cap - c->ring_len >= cap / 2)) {
        c->loop_waiting = false;
        conn_notify_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    r->body_read += got;
    return (ssize_t)got;

out_unlock:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

ssize_t http_req_read_full(struct http_req *r, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = http_req_read(r, (char *)buf + got, len - got);

        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* refusing: the whole answer is given at once (http_req_reply), so body left unread now will
 * stay unread; if it is more than can be discarded, announce the close. */
static int respond(struct http_req *r, int status, const struct http_header *headers,
                   unsigned nheaders, const char *ctype, int64_t content_length, bool notify,
                   bool refusing)
{
    struct cn_conn *c = r->c;
    const struct http_request *h = &r->head;
    struct head_spec hs = {
        .status = status, .headers = headers, .nheaders = nheaders, .ctype = ctype};
    struct out_chunk *o;
    size_t room;

    if (status < 200 || status > 999 || content_length < -1 || (nheaders && !headers) ||
        r->responded)
        return CAIRN_EINVAL;
    for (unsigned i = 0; i < nheaders; i++)
        if (!valid_header(&headers[i]))
            return CAIRN_EINVAL;
    r->bodyless = h->method == HTTP_HEAD || status == 204 || status == 304;
    if (status == 204 || status == 304)
        hs.framing = F_NONE; /* a 304's length would have to be the 200's: leave it out */
    else if (content_length >= 0)
        hs.framing = F_LENGTH;
    else
        hs.framing = F_CHUNKED;
    hs.length = content_length;
    r->chunked = hs.framing == F_CHUNKED && !r->bodyless;
    r->left = hs.framing == F_LENGTH && !r->bodyless ? content_length : 0;
    /* Small bodies go into the head's chunk. */
    room = r->bodyless  ? 0
           : r->chunked ? OUT_SMALL
                        : (size_t)CAIRN_MIN(r->left, (int64_t)OUT_SMALL);

    pthread_mutex_lock(&c->mu);
    if (c->gone) {
        pthread_mutex_unlock(&c->mu);
        return CAIRN_EUNREACH;
    }
    /* Whether a body left unread will be too much to discard is known only when the handler
     * returns (it may answer first and read after, as a streaming echo does); then the
     * connection closes without a "Connection: close" having been announced. */
    if (!h->keep_alive || atomic_load(&c->lp->s->stopping) ||
        (c->expect_continue && !c->continue_sent && !c->body_eof) ||
        (refusing && !c->body_eof && h->content_length >= 0 &&
         (uint64_t)h->content_length - r->body_read > HTTP_SERVER_MAX_DISCARD))
        c->close_after = true;
    hs.close = c->close_after;
    pthread_mutex_unlock(&c->mu);
    hs.keepalive10 = !hs.close && h->version_minor == 0;

    o = head_chunk(&hs, room);
    if (!o)
        return CAIRN_ENOMEM;
    r->responded = true;
    pthread_mutex_lock(&c->mu);
    if (c->gone) {
        pthread_mutex_unlock(&c->mu);
        free(o);
        return CAIRN_EUNREACH;
    }
    out_append_locked(c, o);
    if (notify && !c->write_inflight)
        conn_notify_locked(c);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int http_req_respond(struct http_req *r, int status, const struct http_header *headers,
                   unsigned nheaders, int64_t content_length)
{
    return respond(r, status, headers, nheaders, NULL, content_length, true, false);
}

/* Queue one piece of body (at most out_piece() bytes), with chunked framing if needed. */
static int queue_piece(struct cn_conn *c, struct http_req *r, const char *data, size_t len)
{
    char pre[24];
    size_t prelen = 0, postlen = 0, need;
    struct out_chunk *o = NULL;
    int rc = 0;

    if (r->chunked) {
        prelen = (size_t)snprintf(pre, sizeof(pre), "%zx\r\n", len);
        postlen = 2;
    }
    need = prelen + len + postlen;
    if (len > OUT_COALESCE) {
        /* Copy outside the lock, while the loop sends what is already queued. */
        o = chunk_new(need);
        if (!o)
            return CAIRN_ENOMEM;
        memcpy(o->data, pre, prelen);
        memcpy(o->data + prelen, data, len);
        memcpy(o->data + prelen + len, "\r\n", postlen);
        o->len = need;
    }
    pthread_mutex_lock(&c->mu);
    wait_window_locked(c, need);
    if (c->gone) {
        rc = CAIRN_EUNREACH;
        free(o);
    } else if (o) {
        out_append_locked(c, o);
    } else {
        rc = queue_small_locked(c, pre, prelen, data, len, "\r\n", postlen);
    }
    if (!rc && !c->write_inflight)
        conn_notify_locked(c);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int http_req_write(struct http_req *r, const void *data, size_t len)
{
    struct cn_conn *c = r->c;
    const char *p = data;
    size_t piece = out_piece(c->lp->s->window);
    int rc;

    if (!r->responded || r->finished || (len && !data))
        return CAIRN_EINVAL;
    if (r->bodyless || !len) {
        pthread_mutex_lock(&c->mu);
        rc = c->gone ? CAIRN_EUNREACH : 0;
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    if (!r->chunked && (uint64_t)len > (uint64_t)r->left)
        return CAIRN_EINVAL;
    while (len) {
        size_t n = CAIRN_MIN(len, piece);

        rc = queue_piece(c, r, p, n);
        if (rc)
            return rc;
        if (!r->chunked)
            r->left -= (int64_t)n;
        p += n;
        len -= n;
    }
    return 0;
}

int http_req_finish(struct http_req *r)
{
    static const char last[] = "0\r\n\r\n";
    struct cn_conn *c = r->c;
    int rc = 0;

    if (!r->responded || r->finished)
        return CAIRN_EINVAL;
    r->finished = true;
    pthread_mutex_lock(&c->mu);
    if (c->gone) {
        rc = CAIRN_EUNREACH;
        goto out;
    }
    if (r->chunked)
        rc = queue_small_locked(c, last, sizeof(last) - 1, NULL, 0, NULL, 0);
    else if (r->left > 0) {
        log_warn(TAG, "%s: response short by %lld bytes; closing", c->peer, (long long)r->left);
        c->close_after = true;
    }
    if (rc)
        c->close_after = true;
    if (!c->write_inflight)
        conn_notify_locked(c);
out:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int http_req_reply(struct http_req *r, int status, const struct http_header *headers, unsigned nheaders,
                 const void *body, size_t len)
{
    int rc = respond(r, status, headers, nheaders, NULL, (int64_t)len, false, true);

    if (!rc)
        rc = http_req_write(r, body, len);
    if (!rc)
        rc = http_req_finish(r);
    return rc;
}

void http_req_close_after(struct http_req *r)
{
    pthread_mutex_lock(&r->c->mu);
    r->c->close_after = true;
    pthread_mutex_unlock(&r->c->mu);
}

/* The server's own answer for a handler that did not give one. */
static int reply_error(struct http_req *r, int status)
{
    const struct http_server_app *app = &r->c->lp->s->app;
    const char *ctype = NULL;
    char *body = NULL;
    size_t len = 0;
    int rc;

    if (app->error_response)
        ctype = app->error_response(app->app, status, http_status_reason(status), &body, &len);
    if (!ctype || !body)
        len = 0;
    rc = respond(r, status, NULL, 0, ctype, (int64_t)len, false, true);
    if (!rc)
        rc = http_req_write(r, body, len);
    if (!rc)
        rc = http_req_finish(r);
    free(body);
    return rc;
}
