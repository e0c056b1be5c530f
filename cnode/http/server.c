/*
 * server.c - the C-node's HTTP front end (see server.h): HTTP/1.1 on the connections, loops
 * and worker pool of cnode/net/server.h.
 *
 * Ownership.  A connection's HTTP state (struct http_conn, the data area of its net
 * connection) is owned by its loop thread: the parser, the unparsed input and the connection
 * state machine are touched only there.  The request embedded in it is handed to a worker when
 * its head is complete; what the two threads share (the body window, the output queue, and
 * the flags body_eof, gone, worker_done, ...) sits under the connection's lock, and the worker
 * sleeps on the connection's condvar.  The loop never blocks: a worker that needs the loop to
 * act (bytes to send, space freed in the body window, handler done) wakes it with
 * net_conn_wake_locked().  A worker holds a reference on the connection while it runs a
 * request.
 *
 * Data path.  Read: the loop reads up to RBUF_SIZE at a time into the connection's own read
 * buffer, the parser points body spans into that buffer, the loop copies them into the body
 * ring and stops reading while the ring is full (the unconsumed rest of the buffer waits; no
 * read is issued until it is consumed).  The worker copies out of the ring and wakes the loop
 * when half the ring (or all) is free.  Write: http_req_write() copies into chunks (small
 * writes coalesce into the tail chunk, large ones are cut into pieces so the loop can send one
 * while the worker fills the next); the loop sends everything queued as one write with one
 * buffer per chunk and keeps one write in flight, so output batches itself under load.  Each
 * direction holds at most one window of memory per request.  The chunks and the response
 * heads in them are out.c's.
 *
 * Connection states (loop side): C_HEAD waits for a request head (the whole head must come
 * within the idle timeout, so a head sent a byte at a time cannot hold a slot), C_REQ has a
 * request with a worker or an error answer being sent (body timeout while the loop waits for
 * body bytes; net's send timeout while a write makes no progress), C_LINGER sent its last
 * response and lingers (net_conn_linger()) for at most LINGER_MS, so that closing with unread
 * input does not reset the connection before the client has read our answer.
 */
#include "cnode/http/server.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cnode/http/out.h"
#include "cnode/net/server.h"
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

/* One write of every chunk that was queued when it started. */
struct write_batch {
    struct net_write nw;
    struct http_conn *c;
    struct http_out *chunks; /* owned; freed when the write completes */
    size_t bytes;
    unsigned nbufs;
    uv_buf_t bufs[];
};

enum conn_state { C_HEAD, C_REQ, C_LINGER };

struct http_req {
    struct http_conn *c;
    struct http_request head; /* private copy: see copy_head() */
    void *head_mem;
    /* worker-only response state */
    bool responded, finished;
    bool bodyless; /* HEAD, 204, 304: body writes are dropped */
    bool chunked;
    int64_t left; /* Content-Length bytes still owed */
    uint64_t body_read;
    uint64_t body_sent; /* body bytes queued (for the handler's counters) */
    int status;         /* the status answered, 0 before */
};

/* The HTTP side of a connection: the data area of nc. */
struct http_conn {
    struct net_conn *nc;
    struct http_server *s;
    struct net_work work; /* the worker queue */

    /* ---- loop thread only ---- */
    enum conn_state state;
    struct http_parser *parser;
    const char *in;    /* the last read, in the connection's read buffer */
    size_t roff, rlen; /* unparsed input: in[roff..rlen) */
    const char *pend;  /* body bytes parsed but not yet in the ring (points into in) */
    size_t pend_len;
    bool msg_done;   /* the parser reported the end of the current request */
    bool input_off;  /* read no more of this request (bad chunking, timeout, too much) */
    bool discarding; /* the handler is done: drop the rest of the body */
    int64_t req_cl;
    uint64_t body_rx; /* body bytes parsed for the current request */
    uint64_t discard_left;
    struct http_req req;

    /* ---- shared with the worker, under the connection's lock ---- */
    pthread_cond_t cv; /* the worker waits here; the loop never waits */
    bool gone;         /* no more I/O with the client: reads and writes fail */
    char *ring;
    size_t ring_cap, ring_rpos, ring_len;
    bool body_eof;
    int body_err;
    bool loop_waiting;                    /* the loop stopped because the ring is full */
    bool worker_waiting;                  /* the worker sleeps on cv */
    struct http_out *out_head, *out_tail; /* queued, not yet handed to a write */
    size_t out_bytes;                     /* queued + in flight */
    bool write_inflight;
    bool worker_done, close_after, continue_sent, expect_continue;
    bool expect_empty; /* Expect: 100-continue on a request without a body */
};

struct http_server {
    struct http_server_app app;
    size_t window;
    uint64_t idle_ms, body_ms;
    struct net_pool_ops pool_ops;
    struct net_server *net;
};

static void conn_run(struct http_conn *c);

/* ---- small helpers ---- */

static size_t out_piece(size_t window)
{
    return CAIRN_MAX(OUT_PIECE_MIN, CAIRN_MIN(OUT_PIECE_MAX, window / 4));
}

/* ---- the connection's lifetime (loop thread; free on any) ---- */

static int conn_open(struct net_conn *nc, void *arg)
{
    struct http_conn *c = net_conn_data(nc);

    c->parser = http_parser_create();
    if (!c->parser)
        return CAIRN_ENOMEM;
    pthread_cond_init(&c->cv, NULL);
    c->nc = nc;
    c->s = arg;
    c->state = C_HEAD;
    c->req.c = c;
    net_conn_set_timeout(nc, c->s->idle_ms); /* the first head, as every head */
    return 0;
}

/* The socket is closing: a worker still on the request sees CAIRN_EUNREACH. */
static void conn_close(struct net_conn *nc)
{
    struct http_conn *c = net_conn_data(nc);

    net_conn_lock(nc);
    c->gone = true;
    pthread_cond_broadcast(&c->cv);
    net_conn_unlock(nc);
}

static void conn_free(struct net_conn *nc)
{
    struct http_conn *c = net_conn_data(nc);

    http_out_free(c->out_head);
    free(c->ring);
    free(c->req.head_mem);
    http_parser_destroy(c->parser);
    pthread_cond_destroy(&c->cv);
}

/* Close after the last response: FIN first, then drain the client's input for a while. */
static void conn_linger(struct http_conn *c)
{
    c->state = C_LINGER;
    net_conn_lock(c->nc);
    c->gone = true;
    net_conn_unlock(c->nc);
    c->roff = c->rlen = 0;
    c->pend_len = 0;
    net_conn_linger(c->nc, LINGER_MS);
}

/* ---- reading (loop thread) ---- */

static void conn_read(struct net_conn *nc, const char *data, size_t len)
{
    struct http_conn *c = net_conn_data(nc);

    /* Reads are started only when every byte read before is consumed (update_reading()): the
     * read buffer is the connection's, and this read reused it. */
    assert(c->roff == c->rlen && !c->pend_len);
    c->in = data;
    c->roff = 0;
    c->rlen = len;
    conn_run(c);
}

static void update_reading(struct http_conn *c)
{
    bool want = false;

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
    net_conn_read(c->nc, want);
}

/* Copy pending body bytes into the ring.  Returns false if the ring is full (the loop then
 * waits for the worker to drain it). */
static bool push_body(struct http_conn *c)
{
    while (c->pend_len) {
        size_t cap, wpos, n;

        if (c->discarding) {
            c->pend_len = 0;
            break;
        }
        net_conn_lock(c->nc);
        cap = c->ring_cap;
        if (c->ring_len == cap) {
            c->loop_waiting = true;
            net_conn_unlock(c->nc);
            return false;
        }
        wpos = (c->ring_rpos + c->ring_len) % cap;
        n = CAIRN_MIN(c->pend_len, cap - c->ring_len);
        n = CAIRN_MIN(n, cap - wpos);
        net_conn_unlock(c->nc);
        /* The worker only reads the filled part, so the free part is ours without the lock. */
        memcpy(c->ring + wpos, c->pend, n);
        net_conn_lock(c->nc);
        c->ring_len += n;
        if (c->worker_waiting)
            pthread_cond_signal(&c->cv);
        net_conn_unlock(c->nc);
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

/* Append a chunk to the output queue (the connection's lock held). */
static void out_append_locked(struct http_conn *c, struct http_out *o)
{
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    c->out_bytes += o->len;
}

/* The loop answers a bad head itself, then closes. */
static void error_reply(struct http_conn *c, int status, const char *why)
{
    const struct http_server_app *app = &c->s->app;
    struct http_out_head_spec hs = {
        .status = status, .framing = HTTP_FRAMING_LENGTH, .close = true};
    char *body = NULL;
    size_t blen = 0;
    struct http_out *o;

    if (app->error_status)
        hs.status = app->error_status(app->app, status);
    if (app->error_response)
        hs.ctype = app->error_response(app->app, status, why, &body, &blen);
    if (!hs.ctype || !body)
        blen = 0;
    hs.length = (int64_t)blen;
    o = http_out_head(&hs, blen);
    if (o && blen) {
        memcpy(o->data + o->len, body, blen);
        o->len += blen;
    }
    free(body);
    c->state = C_REQ;
    net_conn_set_timeout(c->nc, 0);
    c->input_off = true;
    c->msg_done = false;
    c->req_cl = -1;
    net_conn_lock(c->nc);
    c->worker_done = true; /* no worker: the request is ours */
    c->close_after = true;
    if (o)
        out_append_locked(c, o);
    else
        c->gone = true;
    net_conn_unlock(c->nc);
}

/* A request head is complete: hand the request to the workers. */
static void dispatch(struct http_conn *c)
{
    struct http_server *s = c->s;
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
    net_conn_set_timeout(c->nc, 0); /* the head came in time; the body has its own clock */
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
    c->req.body_sent = 0;
    c->req.status = 0;

    net_conn_lock(c->nc);
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
    net_conn_unlock(c->nc);
    net_conn_ref(c->nc); /* the worker's, dropped in request_done() */
    net_conn_queue(c->nc, &c->work);
}

static void parse_error(struct http_conn *c)
{
    int status = http_parser_error_status(c->parser);
    const char *why = http_parser_error_reason(c->parser);

    if (c->state == C_HEAD) {
        log_debug(TAG, "%s: bad request head: %d %s", net_conn_peer_str(c->nc), status, why);
        error_reply(c, status, why);
        return;
    }
    /* Bad framing inside the body: the handler sees CAIRN_EPROTO and answers. */
    log_debug(TAG, "%s: bad request body: %s", net_conn_peer_str(c->nc), why);
    c->input_off = true;
    net_conn_lock(c->nc);
    c->body_err = CAIRN_EPROTO;
    c->close_after = true;
    pthread_cond_broadcast(&c->cv);
    net_conn_unlock(c->nc);
}

/* Feed buffered input to the parser as far as the state allows. */
static void drive_input(struct http_conn *c)
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
        ev = http_parser_feed(c->parser, c->in + c->roff, c->rlen - c->roff, &used, &body, &blen);
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
                    net_conn_lock(c->nc);
                    c->close_after = true;
                    net_conn_unlock(c->nc);
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
            net_conn_lock(c->nc);
            c->body_eof = true;
            if (c->worker_waiting)
                pthread_cond_signal(&c->cv);
            net_conn_unlock(c->nc);
            break;
        case HTTP_EV_ERROR:
            parse_error(c);
            return;
        }
    }
}

/* ---- writing (loop thread) ---- */

static void on_write(struct net_write *w, int status)
{
    struct write_batch *b = NET_CONTAINER_OF(w, struct write_batch, nw);
    struct http_conn *c = b->c;

    (void)status; /* after an error the connection is closed, and conn_run() does nothing */
    http_out_free(b->chunks);
    net_conn_lock(c->nc);
    c->out_bytes -= b->bytes;
    c->write_inflight = false;
    if (c->worker_waiting)
        pthread_cond_signal(&c->cv);
    net_conn_unlock(c->nc);
    free(b);
    conn_run(c);
}

/* Send everything queued in one write; one write in flight at a time. */
static void flush_output(struct http_conn *c)
{
    struct http_out *list, *o;
    struct write_batch *b;
    unsigned n = 0, i = 0;
    size_t bytes = 0;

    net_conn_lock(c->nc);
    if (c->write_inflight || !c->out_head) {
        net_conn_unlock(c->nc);
        return;
    }
    list = c->out_head;
    c->out_head = c->out_tail = NULL;
    c->write_inflight = true;
    net_conn_unlock(c->nc);

    for (o = list; o; o = o->next) {
        n++;
        bytes += o->len;
    }
    b = malloc(sizeof(*b) + n * sizeof(uv_buf_t));
    if (!b) {
        http_out_free(list);
        net_conn_lock(c->nc);
        c->out_bytes -= bytes;
        c->write_inflight = false;
        net_conn_unlock(c->nc);
        net_conn_close(c->nc);
        return;
    }
    b->c = c;
    b->chunks = list;
    b->bytes = bytes;
    b->nbufs = n;
    for (o = list; o; o = o->next)
        b->bufs[i++] = uv_buf_init(o->data, (unsigned)o->len);
    net_conn_write(c->nc, &b->nw, b->bufs, n, on_write);
}

/* ---- the connection state machine (loop thread) ---- */

static void request_reset(struct http_conn *c)
{
    net_conn_lock(c->nc);
    free(c->ring);
    c->ring = NULL;
    c->ring_cap = c->ring_rpos = c->ring_len = 0;
    c->loop_waiting = false;
    net_conn_unlock(c->nc);
    free(c->req.head_mem);
    c->req.head_mem = NULL;
    c->state = C_HEAD;
    c->pend_len = 0;
    c->msg_done = c->input_off = c->discarding = false;
    net_conn_set_timeout(c->nc, c->s->idle_ms); /* the whole head within idle_ms */
}

/* What follows once the worker is done with the request.  Returns true if the connection
 * moved on and its input should be driven again. */
static bool request_step(struct http_conn *c)
{
    bool done, flushed, close_after, gone;

    if (c->state != C_REQ)
        return false;
    net_conn_lock(c->nc);
    done = c->worker_done;
    flushed = !c->out_head && !c->write_inflight;
    close_after = c->close_after;
    gone = c->gone;
    net_conn_unlock(c->nc);
    if (!done)
        return false;
    if (!c->msg_done && !c->input_off && !c->discarding) {
        /* The handler left body unread: discard a little of it to keep the connection. */
        if (c->req_cl >= 0 && (uint64_t)c->req_cl - c->body_rx > HTTP_SERVER_MAX_DISCARD) {
            c->input_off = true;
            net_conn_lock(c->nc);
            c->close_after = close_after = true;
            net_conn_unlock(c->nc);
        } else {
            c->discarding = true;
            c->discard_left = HTTP_SERVER_MAX_DISCARD;
            return true;
        }
    }
    if (!flushed)
        return false;
    if (gone) {
        net_conn_close(c->nc);
        return false;
    }
    if (close_after || c->input_off || !c->req.head.keep_alive || net_conn_stopping(c->nc)) {
        conn_linger(c);
        return false;
    }
    if (!c->msg_done)
        return false; /* still discarding */
    request_reset(c);
    return true;
}

/* The one place that advances a connection: after a read, a write, or a worker's notice. */
static void conn_run(struct http_conn *c)
{
    for (;;) {
        if (net_conn_closed(c->nc))
            return;
        drive_input(c);
        if (net_conn_closed(c->nc))
            return;
        flush_output(c);
        if (net_conn_closed(c->nc))
            return;
        if (!request_step(c))
            break;
    }
    update_reading(c);
}

/* The body timeout: in C_REQ the loop waits for body bytes that do not come.  (A head that
 * does not come in time, the end of a linger and a send that makes no progress are net's
 * timeouts.) */
static void conn_sweep(struct net_conn *nc, uint64_t now)
{
    struct http_conn *c = net_conn_data(nc);
    bool done;

    if (c->state != C_REQ || !net_conn_reading(nc) || now - net_conn_last_rx(nc) < c->s->body_ms)
        return;
    log_debug(TAG, "%s: body timed out", net_conn_peer_str(nc));
    net_conn_lock(nc);
    done = c->worker_done;
    net_conn_unlock(nc);
    if (done) {
        net_conn_close(nc);
        return;
    }
    c->input_off = true;
    net_conn_lock(nc);
    c->body_err = CAIRN_ETIMEDOUT;
    c->close_after = true;
    pthread_cond_broadcast(&c->cv);
    net_conn_unlock(nc);
    update_reading(c);
}

/* A worker needs the loop to act on this connection. */
static void conn_wake(struct net_conn *nc)
{
    conn_run(net_conn_data(nc));
}

static const struct net_conn_ops conn_ops = {
    .size = sizeof(struct http_conn),
    .open = conn_open,
    .read = conn_read,
    .wake = conn_wake,
    .sweep = conn_sweep,
    .close = conn_close,
    .free = conn_free,
};

/* ---- the worker pool's hook ---- */

static int reply_error(struct http_req *r, int status);

/* After the handler returned: make sure the client got an answer, then let the loop go on. */
static void request_done(struct http_conn *c)
{
    struct http_req *r = &c->req;

    if (!r->responded) {
        net_conn_lock(c->nc);
        c->close_after = true;
        net_conn_unlock(c->nc);
        reply_error(r, 500);
    } else if (!r->finished) {
        /* A response cut short: only closing tells the client. */
        net_conn_lock(c->nc);
        c->close_after = true;
        net_conn_unlock(c->nc);
    }
    net_conn_lock(c->nc);
    c->worker_done = true;
    net_conn_wake_locked(c->nc);
    net_conn_unlock(c->nc);
    net_conn_unref(c->nc);
}

static void worker_run(void *app, void *wstate, struct net_work *w)
{
    struct http_conn *c = NET_CONTAINER_OF(w, struct http_conn, work);

    c->s->app.handle(app, wstate, &c->req);
    request_done(c);
}

/* ---- start and stop ---- */

int http_server_start(const struct http_server_config *cfg, const struct http_server_app *app,
                      struct http_server **out)
{
    struct net_server_config ncfg = {
        .nports = 1, .read_size = RBUF_SIZE, .read_per_conn = true, .log_tag = TAG};
    struct http_server *s;
    int rc, saved_errno;

    if (!cfg || !app || !app->handle || !out)
        return CAIRN_EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return CAIRN_ENOMEM;
    s->app = *app;
    s->window = cfg->body_window ? cfg->body_window : HTTP_SERVER_DEFAULT_WINDOW;
    s->idle_ms = cfg->idle_ms ? cfg->idle_ms : HTTP_SERVER_IDLE_MS;
    s->body_ms = cfg->body_ms ? cfg->body_ms : HTTP_SERVER_BODY_MS;
    /* The application's worker hooks are the pool's as they are; the pool's arg is app->app. */
    s->pool_ops = (struct net_pool_ops){
        .worker_init = app->worker_init, .worker_fini = app->worker_fini, .run = worker_run};
    ncfg.host = cfg->host;
    ncfg.ports[0] = cfg->port;
    ncfg.loops = cfg->loops;
    ncfg.workers = cfg->workers ? cfg->workers : DEFAULT_WORKERS;
    ncfg.max_conns = cfg->max_conns ? cfg->max_conns : HTTP_SERVER_MAX_CONNS;
    ncfg.tick_ms = CAIRN_MIN(s->idle_ms, s->body_ms);
    ncfg.send_ms = s->body_ms;
    rc = net_server_start(&ncfg, &conn_ops, s, &s->pool_ops, s->app.app, &s->net);
    if (rc) {
        saved_errno = errno; /* a bind's, for the caller */
        free(s);
        errno = saved_errno;
        return rc;
    }
    log_debug(TAG, "body window %zu bytes", s->window);
    *out = s;
    return 0;
}

unsigned http_server_port(const struct http_server *s)
{
    return net_server_port(s->net, 0);
}

void http_server_stop(struct http_server *s)
{
    if (!s)
        return;
    net_server_stop(s->net);
    free(s);
}

/* ---- the handler's side (worker thread) ---- */

const struct http_request *http_req_http(const struct http_req *r)
{
    return &r->head;
}

const char *http_req_peer(const struct http_req *r)
{
    return net_conn_peer_str(r->c->nc);
}

/* Copy bytes into the output queue (the connection's lock held, the window already checked): into
 * the tail chunk if it has room, else a new chunk. */
static int queue_small_locked(struct http_conn *c, const char *pre, size_t prelen, const char *data,
                              size_t len, const char *post, size_t postlen)
{
    size_t need = prelen + len + postlen;
    struct http_out *t = c->out_tail;
    char *p;

    if (!t || t->cap - t->len < need) {
        t = http_out_new(CAIRN_MAX(need, OUT_SMALL));
        if (!t)
            return CAIRN_ENOMEM;
        if (c->out_tail)
            c->out_tail->next = t;
        else
            c->out_head = t;
        c->out_tail = t;
    }
    p = t->data + t->len;
    p = http_out_put(p, pre, prelen);
    p = http_out_put(p, data, len);
    http_out_put(p, post, postlen);
    t->len += need;
    c->out_bytes += need;
    return 0;
}

/* Wait until need more bytes fit in the output window (the connection's lock held). */
static void wait_window_locked(struct http_conn *c, size_t need)
{
    size_t window = c->s->window;

    while (!c->gone && c->out_bytes && c->out_bytes + need > window) {
        c->worker_waiting = true;
        net_conn_wait(c->nc, &c->cv);
        c->worker_waiting = false;
    }
}

ssize_t http_req_read(struct http_req *r, void *buf, size_t len)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct http_conn *c = r->c;
    char *dst = buf;
    size_t got = 0, cap, rpos, avail, n;
    int rc;

    net_conn_lock(c->nc);
    if (((c->expect_continue && !c->body_eof) || c->expect_empty) && !c->continue_sent &&
        !r->responded && !c->gone) {
        c->continue_sent = true;
        if (queue_small_locked(c, cont, sizeof(cont) - 1, NULL, 0, NULL, 0) == 0 &&
            !c->write_inflight)
            net_conn_wake_locked(c->nc);
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
        net_conn_wait(c->nc, &c->cv);
        c->worker_waiting = false;
    }
    cap = c->ring_cap;
    rpos = c->ring_rpos;
    avail = CAIRN_MIN(len, c->ring_len);
    net_conn_unlock(c->nc);
    /* The loop only writes the free part of the ring: the filled part is ours. */
    while (got < avail) {
        n = CAIRN_MIN(avail - got, cap - rpos);
        memcpy(dst + got, c->ring + rpos, n);
        got += n;
        rpos = (rpos + n) % cap;
    }
    net_conn_lock(c->nc);
    c->ring_rpos = rpos;
    c->ring_len -= got;
    if (c->loop_waiting && (c->ring_len == 0 || cap - c->ring_len >= cap / 2)) {
        c->loop_waiting = false;
        net_conn_wake_locked(c->nc);
    }
    net_conn_unlock(c->nc);
    r->body_read += got;
    return (ssize_t)got;

out_unlock:
    net_conn_unlock(c->nc);
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
    struct http_conn *c = r->c;
    const struct http_request *h = &r->head;
    struct http_out_head_spec hs = {
        .status = status, .headers = headers, .nheaders = nheaders, .ctype = ctype};
    struct http_out *o;
    size_t room;

    if (status < 200 || status > 999 || content_length < -1 || (nheaders && !headers) ||
        r->responded)
        return CAIRN_EINVAL;
    for (unsigned i = 0; i < nheaders; i++)
        if (!http_out_header_ok(&headers[i]))
            return CAIRN_EINVAL;
    r->bodyless = h->method == HTTP_HEAD || status == 204 || status == 304;
    if (status == 204 || status == 304)
        hs.framing =
            HTTP_FRAMING_NONE; /* a 304's length would have to be the 200's: leave it out */
    else if (content_length >= 0)
        hs.framing = HTTP_FRAMING_LENGTH;
    else
        hs.framing = HTTP_FRAMING_CHUNKED;
    hs.length = content_length;
    r->chunked = hs.framing == HTTP_FRAMING_CHUNKED && !r->bodyless;
    r->left = hs.framing == HTTP_FRAMING_LENGTH && !r->bodyless ? content_length : 0;
    /* Small bodies go into the head's chunk. */
    room = r->bodyless  ? 0
           : r->chunked ? OUT_SMALL
                        : (size_t)CAIRN_MIN(r->left, (int64_t)OUT_SMALL);

    net_conn_lock(c->nc);
    if (c->gone) {
        net_conn_unlock(c->nc);
        return CAIRN_EUNREACH;
    }
    /* Whether a body left unread will be too much to discard is known only when the handler
     * returns (it may answer first and read after, as a streaming echo does); then the
     * connection closes without a "Connection: close" having been announced. */
    if (!h->keep_alive || net_conn_stopping(c->nc) ||
        (c->expect_continue && !c->continue_sent && !c->body_eof) ||
        (refusing && !c->body_eof && h->content_length >= 0 &&
         (uint64_t)h->content_length - r->body_read > HTTP_SERVER_MAX_DISCARD))
        c->close_after = true;
    hs.close = c->close_after;
    net_conn_unlock(c->nc);
    hs.keepalive10 = !hs.close && h->version_minor == 0;

    o = http_out_head(&hs, room);
    if (!o)
        return CAIRN_ENOMEM;
    r->responded = true;
    r->status = status;
    net_conn_lock(c->nc);
    if (c->gone) {
        net_conn_unlock(c->nc);
        free(o);
        return CAIRN_EUNREACH;
    }
    out_append_locked(c, o);
    if (notify && !c->write_inflight)
        net_conn_wake_locked(c->nc);
    net_conn_unlock(c->nc);
    return 0;
}

int http_req_respond(struct http_req *r, int status, const struct http_header *headers,
                     unsigned nheaders, int64_t content_length)
{
    return respond(r, status, headers, nheaders, NULL, content_length, true, false);
}

/* Queue one piece of body (at most out_piece() bytes), with chunked framing if needed. */
static int queue_piece(struct http_conn *c, struct http_req *r, const char *data, size_t len)
{
    char pre[24];
    size_t prelen = 0, postlen = 0, need;
    struct http_out *o = NULL;
    int rc = 0;

    if (r->chunked) {
        prelen = (size_t)snprintf(pre, sizeof(pre), "%zx\r\n", len);
        postlen = 2;
    }
    need = prelen + len + postlen;
    if (len > OUT_COALESCE) {
        /* Copy outside the lock, while the loop sends what is already queued. */
        o = http_out_new(need);
        if (!o)
            return CAIRN_ENOMEM;
        memcpy(o->data, pre, prelen);
        memcpy(o->data + prelen, data, len);
        memcpy(o->data + prelen + len, "\r\n", postlen);
        o->len = need;
    }
    net_conn_lock(c->nc);
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
        net_conn_wake_locked(c->nc);
    net_conn_unlock(c->nc);
    return rc;
}

int http_req_write(struct http_req *r, const void *data, size_t len)
{
    struct http_conn *c = r->c;
    const char *p = data;
    size_t piece = out_piece(c->s->window);
    int rc;

    if (!r->responded || r->finished || (len && !data))
        return CAIRN_EINVAL;
    if (r->bodyless || !len) {
        net_conn_lock(c->nc);
        rc = c->gone ? CAIRN_EUNREACH : 0;
        net_conn_unlock(c->nc);
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
        r->body_sent += n;
        p += n;
        len -= n;
    }
    return 0;
}

int http_req_finish(struct http_req *r)
{
    static const char last[] = "0\r\n\r\n";
    struct http_conn *c = r->c;
    int rc = 0;

    if (!r->responded || r->finished)
        return CAIRN_EINVAL;
    r->finished = true;
    net_conn_lock(c->nc);
    if (c->gone) {
        rc = CAIRN_EUNREACH;
        goto out;
    }
    if (r->chunked)
        rc = queue_small_locked(c, last, sizeof(last) - 1, NULL, 0, NULL, 0);
    else if (r->left > 0) {
        log_warn(TAG, "%s: response short by %lld bytes; closing", net_conn_peer_str(c->nc),
                 (long long)r->left);
        c->close_after = true;
    }
    if (rc)
        c->close_after = true;
    if (!c->write_inflight)
        net_conn_wake_locked(c->nc);
out:
    net_conn_unlock(c->nc);
    return rc;
}

int http_req_reply(struct http_req *r, int status, const struct http_header *headers,
                   unsigned nheaders, const void *body, size_t len)
{
    int rc = respond(r, status, headers, nheaders, NULL, (int64_t)len, false, true);

    if (!rc)
        rc = http_req_write(r, body, len);
    if (!rc)
        rc = http_req_finish(r);
    return rc;
}

void http_req_counts(const struct http_req *r, uint64_t *in, uint64_t *out, int *status)
{
    *in = r->body_read;
    *out = r->body_sent;
    *status = r->status;
}

void http_req_close_after(struct http_req *r)
{
    net_conn_lock(r->c->nc);
    r->c->close_after = true;
    net_conn_unlock(r->c->nc);
}

/* The server's own answer for a handler that did not give one. */
static int reply_error(struct http_req *r, int status)
{
    const struct http_server_app *app = &r->c->s->app;
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
