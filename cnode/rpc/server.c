/*
 * rpcsrv.c - the C-node's ONC RPC server over TCP (see rpcsrv.h): libuv loops own the
 * sockets, a pool of worker threads runs the blocking handler.
 *
 * Listening.  Every loop has its own listening socket per configured port, all bound with
 * SO_REUSEPORT (netloop.h, shared with the HTTP server), so the kernel spreads connections
 * across loops and no socket moves between threads.  For a port given as 0 the first loop's
 * socket picks it and the other loops bind to the same one.
 *
 * Ownership.  A connection (struct rs_conn) belongs to its loop thread: the socket, the
 * reassembler, the unread input and the counters are touched only there.  A complete record
 * becomes a call (struct rpcsrv_call) that owns the record and goes to the worker queue; the
 * handler ends it from the worker, which moves the call onto the connection's done list
 * (under the connection's mutex) and wakes the loop through the loop's notify list and
 * uv_async_send(), the only libuv call made off a loop thread.  The loop then writes the
 * reply (record mark + reply: one uv_write() with two buffers, the call itself holding the
 * write request), or just forgets a dropped call.  Replies go out in the order calls end, which
 * is what lets a fast call overtake a slow one on the same connection.
 *
 * Backpressure.  `inflight` counts the connection's calls from dispatch until their reply is
 * written (or the drop is processed).  At max_inflight the loop stops feeding the reassembler
 * and stops reading; input already read stays in a small per-connection buffer.  Input is read
 * into one buffer per loop, and only what cannot be fed yet is copied, so idle and
 * unthrottled connections hold no read buffer at all.  Counting until the reply is written,
 * not just handled, also bounds the replies a client that does not read can pile up.
 *
 * Lifetime.  A connection is freed when its last reference goes: the loop holds one until the
 * socket's close callback, every call one until it is freed, the notify list one while the
 * connection waits there.  Once the loop closed the connection (`closed`, under the mutex),
 * calls that end are freed on the spot and queued calls are freed by the worker without
 * running the handler.
 *
 * Timeouts are checked by one sweep timer per loop: a connection with no call outstanding
 * closes idle_ms after its last complete record or reply (bytes that never make a record do
 * not keep it open), and one whose reply writes made no progress for idle_ms closes too.
 * SIGPIPE is blocked in the loop threads: a peer that reset must give EPIPE, not kill us.
 */
#include "cnode/rpc/server.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cnode/net/loop.h"
#include "cnode/rpc/rpc.h"
#include "common/cairn.h"
#include "common/log.h"

#define TAG "rpcsrv"
#define RBUF_SIZE (64u << 10) /* socket read buffer, one per loop */
#define DEFAULT_WORKERS 8u
#define MARK_LAST 0x80000000u
#define MAX_FRAGMENT 0x7fffffffu /* a reply goes out as one fragment */

enum call_end { END_NONE, END_REPLY, END_DROP, END_CLOSE };

struct rs_conn;
struct rs_worker;

struct rpcsrv_call {
    struct rs_conn *c;        /* holds a reference */
    struct rpcsrv_call *next; /* the server's queue, then the connection's done list */
    struct rs_worker *w;      /* the worker whose handler has it, until it ends */
    unsigned listener;
    uint8_t *rec; /* owned until the call ends */
    size_t rec_len;
    enum call_end end;
    uint8_t *reply; /* owned */
    size_t reply_len;
    uint8_t mark[4];
    uv_write_t wreq;
    uv_buf_t bufs[2];
};

struct rs_loop;

struct rs_listener {
    uv_tcp_t tcp;
    struct rs_loop *lp;
    unsigned idx;
    bool inited;
};

struct rs_conn {
    uv_tcp_t tcp;
    struct rs_loop *lp;
    struct rs_conn *prev, *next; /* the loop's connections */
    unsigned listener;
    /* set at accept, read-only afterwards: the handler may read them on a worker */
    struct sockaddr_storage peer;
    char peer_str[NET_ADDR_STRLEN];

    /* ---- loop thread only ---- */
    struct rpc_rm rm;
    uint8_t *pend; /* read but not yet fed (the connection was at max_inflight); owned */
    size_t pend_off, pend_len;
    bool reading; /* uv_read_start() active */
    bool eof;     /* the client shut down its side: answer what we have, then close */
    unsigned inflight;
    unsigned writes;                      /* replies in uv_write() */
    uint64_t last_active, write_progress; /* uv_now() stamps */

    /* ---- shared with the workers, under mu ---- */
    pthread_mutex_t mu;
    unsigned refs;
    bool closed;        /* written by the loop only, so the loop reads it without the lock */
    bool notify_queued; /* wake is on the loop's wake list */
    struct net_wake wake;
    struct rpcsrv_call *done_head, *done_tail; /* ended calls for the loop to finish */
};

struct rs_loop {
    struct net_loop nl; /* the uv loop, its thread, wake list and sweep timer */
    struct rpcsrv *s;
    unsigned idx;
    struct rs_listener listeners[RPCSRV_MAX_LISTENERS];
    uint8_t *rbuf; /* owned */
    struct rs_conn *conns;
};

struct rs_worker {
    struct rpcsrv *s;
    unsigned idx;
    pthread_t thread;
    struct rpcsrv_call *open; /* the call its handler has not ended yet */
};

struct rpcsrv {
    struct rpcsrv_app app;
    unsigned ports[RPCSRV_MAX_LISTENERS];
    unsigned nports;
    size_t max_record;
    unsigned max_inflight, idle_ms, max_conns;
    unsigned nloops, nworkers, workers_started;
    struct rs_loop *loops;
    struct rs_worker *workers;
    atomic_uint nconns;
    atomic_bool stopping;

    pthread_mutex_t mu; /* the queue and the start/stop counters */
    pthread_cond_t qcv; /* workers wait for calls */
    pthread_cond_t scv; /* start and stop wait for threads */
    struct rpcsrv_call *q_head, *q_tail;
    bool quit;
    unsigned inits_done, inits_failed, loops_closed;
};

/* ---- calls and connection lifetime ---- */

static void conn_free(struct rs_conn *c)
{
    assert(!c->done_head);
    rpc_rm_fini(&c->rm);
    free(c->pend);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void conn_unref(struct rs_conn *c)
{
    bool last;

    pthread_mutex_lock(&c->mu);
    assert(c->refs > 0);
    last = --c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (last)
        conn_free(c);
}

/* Any thread.  Drops the call's connection reference, which may free the connection. */
static void call_free(struct rpcsrv_call *call)
{
    struct rs_conn *c = call->c;

    free(call->rec);
    free(call->reply);
    free(call);
    conn_unref(c);
}

/* Ask the loop to look at c (any thread, c->mu held).  Takes a reference for the list. */
static void conn_notify_locked(struct rs_conn *c)
{
    struct rs_loop *lp = c->lp;

    if (c->notify_queued || c->closed)
        return;
    c->notify_queued = true;
    c->refs++;
    net_loop_wake(&lp->nl, &c->wake);
}

static void on_conn_close(uv_handle_t *h)
{
    struct rs_conn *c = h->data;
    struct rs_loop *lp = c->lp;

    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    atomic_fetch_sub(&lp->s->nconns, 1);
    conn_unref(c);
}

/* Close the socket (loop thread).  Calls already ended are freed; the rest are freed as they
 * end.  Writes in flight are cancelled by libuv before the close callback runs. */
static void conn_close(struct rs_conn *c)
{
    struct rpcsrv_call *list, *call;

    if (c->closed)
        return;
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    list = c->done_head;
    c->done_head = c->done_tail = NULL;
    pthread_mutex_unlock(&c->mu);
    while ((call = list)) {
        list = call->next;
        call_free(call); /* the loop's reference keeps c */
    }
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

/* ---- reading (loop thread) ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void call_finished(struct rs_conn *c);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Read while the connection may take more calls and every byte read before was fed. */
static void update_reading(struct rs_conn *c)
{
    bool want;
    int rc;

    if (c->closed)
        return;
    want = !c->eof && !c->pend_len && c->inflight < c->lp->s->max_inflight;
    if (want && !c->reading) {
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (rc) {
            log_debug(TAG, "%s: read start: %s", c->peer_str, uv_strerror(rc));
            conn_close(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* A record is complete: make it a call and queue it for the workers. */
static void dispatch(struct rs_conn *c)
{
    struct rpcsrv *s = c->lp->s;
    struct rpcsrv_call *call;
    size_t len;
    uint8_t *rec = rpc_rm_take(&c->rm, &len);

    call = calloc(1, sizeof(*call));
    if (!call) {
        free(rec);
        log_warn(TAG, "%s: out of memory for a call; closing", c->peer_str);
        conn_close(c);
        return;
    }
    call->c = c;
    call->listener = c->listener;
    call->rec = rec;
    call->rec_len = len;
    pthread_mutex_lock(&c->mu);
    c->refs++; /* the call's */
    pthread_mutex_unlock(&c->mu);
    c->inflight++;
    c->last_active = uv_now(&c->lp->nl.loop);

    pthread_mutex_lock(&s->mu);
    if (s->q_tail)
        s->q_tail->next = call;
    else
        s->q_head = call;
    s->q_tail = call;
    pthread_cond_signal(&s->qcv);
    pthread_mutex_unlock(&s->mu);
}

/* Feed input to the reassembler, dispatching complete records, while the connection may take
 * more calls.  Returns how many bytes were consumed; c may be closed on return. */
static size_t feed_input(struct rs_conn *c, const uint8_t *data, size_t len)
{
    unsigned max_inflight = c->lp->s->max_inflight;
    size_t used = 0;

    while (used < len && c->inflight < max_inflight && !c->closed) {
        bool complete;
        ssize_t n = rpc_rm_feed(&c->rm, data + used, len - used, &complete);

        if (n < 0) {
            /* RFC 5531 has no way to answer a record we will not read: close. */
            log_debug(TAG, "%s: %s; closing", c->peer_str,
                      n == CAIRN_ETOOBIG ? "record over the limit" : cairn_strerror((int)n));
            conn_close(c);
            break;
        }
        used += (size_t)n;
        if (complete)
            dispatch(c);
    }
    return used;
}

/* Feed what was left over from a read, now that calls have ended, and read again if all of it
 * went in. */
static void resume_input(struct rs_conn *c)
{
    if (c->pend_len) {
        size_t n = feed_input(c, c->pend + c->pend_off, c->pend_len);

        if (c->closed)
            return;
        c->pend_off += n;
        c->pend_len -= n;
        if (!c->pend_len) {
            free(c->pend);
            c->pend = NULL;
            c->pend_off = 0;
        }
    }
    update_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rs_conn *c = h->data;

    (void)suggested;
    /* Shared by the loop's connections: on_read feeds or copies everything before returning. */
    buf->base = (char *)c->lp->rbuf;
    buf->len = RBUF_SIZE;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct rs_conn *c = st->data;
    size_t used;

    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            log_debug(TAG, "%s: read: %s", c->peer_str, uv_strerror((int)nread));
            conn_close(c);
            return;
        }
        /* A client may shut down its side and still wait for its replies. */
        c->eof = true;
        call_finished(c);
        return;
    }
    used = feed_input(c, (const uint8_t *)buf->base, (size_t)nread);
    if (c->closed)
        return;
    if (used < (size_t)nread) {
        c->pend_len = (size_t)nread - used;
        c->pend_off = 0;
        c->pend = malloc(c->pend_len);
        if (!c->pend) {
            c->pend_len = 0;
            log_warn(TAG, "%s: out of memory; closing", c->peer_str);
            conn_close(c);
            return;
        }
        memcpy(c->pend, buf->base + used, c->pend_len);
    }
    update_reading(c);
}

/* ---- writing and ending calls (loop thread) ---- */

/* A call ended (or the client shut down its side): read on, or close a connection whose client
 * shut down and got all its answers. */
static void call_finished(struct rs_conn *c)
{
    if (c->closed)
        return;
    resume_input(c); /* input read before the EOF may still hold calls */
    if (!c->closed && c->eof && !c->inflight && !c->pend_len)
        conn_close(c);
}

static void on_write(uv_write_t *req, int status)
{
    struct rpcsrv_call *call = req->data;
    struct rs_conn *c = call->c;

    c->writes--;
    c->inflight--;
    c->write_progress = c->last_active = uv_now(&c->lp->nl.loop);
    call_free(call); /* the loop's reference keeps c until its close callback */
    if (status < 0) {
        if (status != UV_ECANCELED)
            log_debug(TAG, "%s: write: %s", c->peer_str, uv_strerror(status));
        conn_close(c);
        return;
    }
    call_finished(c);
}

static void start_write(struct rs_conn *c, struct rpcsrv_call *call)
{
    uint32_t m = MARK_LAST | (uint32_t)call->reply_len;
    int rc;

    call->mark[0] = (uint8_t)(m >> 24);
    call->mark[1] = (uint8_t)(m >> 16);
    call->mark[2] = (uint8_t)(m >> 8);
    call->mark[3] = (uint8_t)m;
    call->bufs[0] = uv_buf_init((char *)call->mark, sizeof(call->mark));
    call->bufs[1] = uv_buf_init((char *)call->reply, (unsigned)call->reply_len);
    call->wreq.data = call;
    if (!c->writes)
        c->write_progress = uv_now(&c->lp->nl.loop);
    c->writes++;
    rc = uv_write(&call->wreq, (uv_stream_t *)&c->tcp, call->bufs, 2, on_write);
    if (rc) {
        log_debug(TAG, "%s: uv_write: %s", c->peer_str, uv_strerror(rc));
        c->writes--;
        c->inflight--;
        call_free(call);
        conn_close(c);
    }
}

/* Finish the calls the workers ended: write replies, forget drops, close on request. */
static void conn_service(struct rs_conn *c)
{
    struct rpcsrv_call *list, *call;
    bool ended = false;

    pthread_mutex_lock(&c->mu);
    list = c->done_head;
    c->done_head = c->done_tail = NULL;
    pthread_mutex_unlock(&c->mu);
    while ((call = list)) {
        list = call->next;
        if (c->closed) { /* a write failed or a call closed the connection */
            call_free(call);
            continue;
        }
        switch (call->end) {
        case END_REPLY:
            start_write(c, call);
            break;
        case END_CLOSE:
            log_debug(TAG, "%s: closed by the handler", c->peer_str);
            c->inflight--;
            call_free(call);
            conn_close(c);
            break;
        default:
            c->inflight--;
            c->last_active = uv_now(&c->lp->nl.loop);
            call_free(call);
            ended = true;
            break;
        }
    }
    if (ended)
        call_finished(c);
}

/* ---- the handler's side (worker thread) ---- */

const struct sockaddr_storage *rpcsrv_peer(const struct rpcsrv_call *c)
{
    return &c->c->peer;
}

const char *rpcsrv_peer_str(const struct rpcsrv_call *c)
{
    return c->c->peer_str;
}

static void call_end(struct rpcsrv_call *call, enum call_end how)
{
    struct rs_conn *c = call->c;

    if (call->w) {
        assert(call->w->open == call);
        call->w->open = NULL;
        call->w = NULL;
    }
    free(call->rec); /* the handler is done with it */
    call->rec = NULL;
    call->end = how;
    call->next = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->closed) {
        pthread_mutex_unlock(&c->mu);
        call_free(call);
        return;
    }
    if (c->done_tail)
        c->done_tail->next = call;
    else
        c->done_head = call;
    c->done_tail = call;
    conn_notify_locked(c);
    pthread_mutex_unlock(&c->mu);
}

void rpcsrv_reply(struct rpcsrv_call *c, uint8_t *buf, size_t len)
{
    if (len > MAX_FRAGMENT || (!buf && len)) {
        /* The client waits for this xid; only closing tells it to give up. */
        log_error(TAG, "%s: invalid reply of %zu bytes; closing", c->c->peer_str, len);
        free(buf);
        call_end(c, END_CLOSE);
        return;
    }
    c->reply = buf;
    c->reply_len = len;
    call_end(c, END_REPLY);
}

void rpcsrv_drop(struct rpcsrv_call *c)
{
    call_end(c, END_DROP);
}

void rpcsrv_close(struct rpcsrv_call *c)
{
    call_end(c, END_CLOSE);
}

/* ---- loops ---- */

static void loop_sweep(struct net_loop *nl)
{
    struct rs_loop *lp = NET_CONTAINER_OF(nl, struct rs_loop, nl);
    unsigned idle_ms = lp->s->idle_ms;
    uint64_t now = uv_now(&nl->loop);
    struct rs_conn *c, *next;

    for (c = lp->conns; c; c = next) {
        next = c->next;
        if (c->closed)
            continue;
        if (c->writes && now - c->write_progress >= idle_ms) {
            log_debug(TAG, "%s: replies not read for %u ms; closing", c->peer_str, idle_ms);
            conn_close(c);
        } else if (!c->inflight && now - c->last_active >= idle_ms) {
            log_debug(TAG, "%s: idle; closing", c->peer_str);
            conn_close(c);
        }
    }
}

/* Accept and close at once: the connection limit is reached, or we are stopping. */
static void reject(struct rs_loop *lp, uv_stream_t *server)
{
    if (net_reject(&lp->nl.loop, server))
        log_error(TAG, "out of memory refusing a connection");
}

static void on_connection(uv_stream_t *server, int status)
{
    struct rs_listener *l = server->data;
    struct rs_loop *lp = l->lp;
    struct rpcsrv *s = lp->s;
    struct rs_conn *c;

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
    if (!c) {
        atomic_fetch_sub(&s->nconns, 1);
        reject(lp, server);
        return;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->refs = 1; /* the loop's, until the close callback */
    c->lp = lp;
    c->listener = l->idx;
    rpc_rm_init(&c->rm, s->max_record);
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
    uv_tcp_nodelay(&c->tcp, 1); /* replies are single small writes: do not hold them back */
    net_peer_name(&c->tcp, &c->peer, c->peer_str);
    c->last_active = uv_now(&lp->nl.loop);
    update_reading(c);
}

/* The first step of stopping: no more connections, and those open are closed. */
static void loop_close_all(struct net_loop *nl)
{
    struct rs_loop *lp = NET_CONTAINER_OF(nl, struct rs_loop, nl);
    struct rpcsrv *s = lp->s;
    struct rs_conn *c, *next;

    for (unsigned i = 0; i < s->nports; i++) {
        uv_handle_t *h = (uv_handle_t *)&lp->listeners[i].tcp;

        if (lp->listeners[i].inited && !uv_is_closing(h))
            uv_close(h, NULL);
    }
    for (c = lp->conns; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    pthread_mutex_lock(&s->mu);
    s->loops_closed++;
    pthread_cond_broadcast(&s->scv);
    pthread_mutex_unlock(&s->mu);
}

/* A worker ended calls on this connection (conn_notify_locked()). */
static void loop_wake(struct net_loop *nl, struct net_wake *w)
{
    struct rs_conn *c = NET_CONTAINER_OF(w, struct rs_conn, wake);

    (void)nl;
    pthread_mutex_lock(&c->mu);
    c->notify_queued = false;
    pthread_mutex_unlock(&c->mu);
    if (!c->closed)
        conn_service(c);
    conn_unref(c); /* the wake list's */
}

static const struct net_loop_ops loop_ops = {
    .wake = loop_wake,
    .sweep = loop_sweep,
    .close = loop_close_all,
};

/* Listener i of loop lp, on s->ports[i] (picked by this socket if still 0). */
static int listener_init(struct rs_loop *lp, unsigned i, struct sockaddr_storage *addr,
                         socklen_t alen)
{
    struct rs_listener *l = &lp->listeners[i];

    uv_tcp_init(&lp->nl.loop, &l->tcp);
    l->tcp.data = l;
    l->lp = lp;
    l->idx = i;
    l->inited = true;
    return net_listen(&l->tcp, addr, alen, &lp->s->ports[i], on_connection);
}

static int loop_init(struct rpcsrv *s, struct rs_loop *lp, struct sockaddr_storage *addr,
                     socklen_t alen)
{
    int rc;

    lp->s = s;
    lp->rbuf = malloc(RBUF_SIZE);
    if (!lp->rbuf)
        return CAIRN_ENOMEM;
    rc = net_loop_init(&lp->nl, &loop_ops, s->idle_ms);
    if (rc)
        return rc;
    for (unsigned i = 0; i < s->nports; i++) {
        rc = listener_init(lp, i, addr, alen);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- workers ---- */

static void *worker_main(void *arg)
{
    struct rs_worker *w = arg;
    struct rpcsrv *s = w->s;
    struct rpcsrv_call *call;
    void *ws = NULL;
    bool ok = true, gone;

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
        if (s->quit) { /* stopping: what is still queued is freed by the stopper */
            pthread_mutex_unlock(&s->mu);
            break;
        }
        call = s->q_head;
        s->q_head = call->next;
        if (!s->q_head)
            s->q_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        call->next = NULL;

        pthread_mutex_lock(&call->c->mu);
        gone = call->c->closed;
        pthread_mutex_unlock(&call->c->mu);
        if (gone) { /* nobody to answer: spare the D-nodes the work */
            call_free(call);
            continue;
        }
        call->w = w;
        w->open = call;
        s->app.handle(s->app.app, ws, call, call->listener, call->rec, call->rec_len);
        if (w->open) {
            /* A handler bug, but a call never ended would hold its connection's slot
             * forever. */
            log_warn(TAG, "%s: handler returned without ending the call; dropping it",
                     w->open->c->peer_str);
            rpcsrv_drop(w->open);
        }
    }
    if (s->app.worker_fini)
        s->app.worker_fini(s->app.app, ws);
    return NULL;
}

/* ---- start and stop ---- */

static void server_teardown(struct rpcsrv *s)
{
    struct rpcsrv_call *call;
    unsigned started = 0;

    atomic_store(&s->stopping, true);
    /* 1: the loops close their listeners and connections; from now on calls that end are
     * freed on the spot. */
    for (unsigned i = 0; i < s->nloops; i++)
        if (net_loop_close(&s->loops[i].nl))
            started++;
    pthread_mutex_lock(&s->mu);
    while (s->loops_closed < started)
        pthread_cond_wait(&s->scv, &s->mu);
    /* 2: the workers finish the calls they run (the replies are discarded) and exit. */
    s->quit = true;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < s->workers_started; i++)
        pthread_join(s->workers[i].thread, NULL);
    while ((call = s->q_head)) { /* queued, never started */
        s->q_head = call->next;
        call_free(call);
    }
    s->q_tail = NULL;
    /* 3: no thread can notify a loop any more: close the loops' own handles. */
    for (unsigned i = 0; i < s->nloops; i++) {
        struct rs_loop *lp = &s->loops[i];

        if (!net_loop_started(&lp->nl)) /* never ran: loop_close_all() did not close these */
            for (unsigned j = 0; j < s->nports; j++)
                if (lp->listeners[j].inited)
                    uv_close((uv_handle_t *)&lp->listeners[j].tcp, NULL);
        if (net_loop_fini(&lp->nl))
            log_error(TAG, "loop %u: handles left open at stop", i);
        assert(!lp->conns);
        free(lp->rbuf);
    }
    assert(atomic_load(&s->nconns) == 0);
    pthread_cond_destroy(&s->scv);
    pthread_cond_destroy(&s->qcv);
    pthread_mutex_destroy(&s->mu);
    free(s->workers);
    free(s->loops);
    free(s);
}

int rpcsrv_start(const struct rpcsrv_config *cfg, const struct rpcsrv_app *app, struct rpcsrv **out)
{
    struct sockaddr_storage addr;
    socklen_t alen;
    struct rpcsrv *s;
    int rc, saved_errno;

    if (!cfg || !app || !app->handle || !out || !cfg->nports || cfg->nports > RPCSRV_MAX_LISTENERS)
        return CAIRN_EINVAL;
    for (unsigned i = 0; i < cfg->nports; i++)
        if (cfg->ports[i] > 65535)
            return CAIRN_EINVAL;
    rc = net_resolve(cfg->host, 0, &addr, &alen); /* each listener sets its port */
    if (rc)
        return rc;
    s = calloc(1, sizeof(*s));
    if (!s)
        return CAIRN_ENOMEM;
    s->app = *app;
    s->nports = cfg->nports;
    memcpy(s->ports, cfg->ports, sizeof(s->ports));
    s->max_record = cfg->max_record ? cfg->max_record : RPCSRV_DEFAULT_MAX_RECORD;
    s->max_inflight = cfg->max_inflight ? cfg->max_inflight : RPCSRV_DEFAULT_INFLIGHT;
    s->idle_ms = cfg->idle_ms ? cfg->idle_ms : RPCSRV_DEFAULT_IDLE_MS;
    s->max_conns = cfg->max_conns ? cfg->max_conns : RPCSRV_DEFAULT_MAX_CONNS;
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
            log_error(TAG, "listen on %s: %s", cfg->host ? cfg->host : "*",
                      rc == CAIRN_EIO ? strerror(errno) : cairn_strerror(rc));
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
    for (unsigned i = 0; i < s->nports; i++)
        log_info(TAG, "listening on %s:%u (%u loops, %u workers)", cfg->host ? cfg->host : "*",
                 s->ports[i], s->nloops, s->nworkers);
    *out = s;
    return 0;

err:
    saved_errno = errno; /* bind's, for the caller */
    server_teardown(s);
    errno = saved_errno;
    return rc;
}

unsigned rpcsrv_port(const struct rpcsrv *s, unsigned listener)
{
    return listener < s->nports ? s->ports[listener] : 0;
}

void rpcsrv_stop(struct rpcsrv *s)
{
    if (s)
        server_teardown(s);
}
