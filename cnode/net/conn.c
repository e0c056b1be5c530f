/*
 * conn.c - a connection's life on its loop (see conn.h): accept, reading with backpressure,
 * writes, timeouts, linger, close, and the references that let workers outlive the socket.
 *
 * The state is split by thread.  The socket, the read and write bookkeeping and the deadline
 * are the loop's alone and take no lock.  The reference count, `closed` and the wake flag are
 * shared with workers under the connection's mutex, which the protocol borrows for its own
 * shared state so that one lock orders everything a worker and the loop say to each other.
 * `closed` is written only by the loop, under the lock, so the loop reads it without one.
 *
 * A connection waiting on the loop's wake list holds a reference, so a worker can wake it and
 * drop its own reference at once.  Wakes stop at close: the loop drains its wake list before
 * it runs its close step (loop.c), so once a loop has closed its connections no wake for them
 * is left to come.
 */
#include "cnode/net/conn.h"

#include <assert.h>
#include <stdlib.h>

#include "cnode/net/internal.h"
#include "common/cairn.h"
#include "common/log.h"

/* ---- lifetime ---- */

void *net_conn_data(struct net_conn *c)
{
    return c->data;
}

static void conn_free(struct net_conn *c)
{
    if (c->opened && c->lp->s->ops->free)
        c->lp->s->ops->free(c);
    free(c->rbuf);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void net_conn_ref(struct net_conn *c)
{
    pthread_mutex_lock(&c->mu);
    assert(c->refs > 0);
    c->refs++;
    pthread_mutex_unlock(&c->mu);
}

void net_conn_unref(struct net_conn *c)
{
    bool last;

    pthread_mutex_lock(&c->mu);
    assert(c->refs > 0);
    last = --c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (last)
        conn_free(c);
}

void net_conn_lock(struct net_conn *c)
{
    pthread_mutex_lock(&c->mu);
}

void net_conn_unlock(struct net_conn *c)
{
    pthread_mutex_unlock(&c->mu);
}

void net_conn_wait(struct net_conn *c, pthread_cond_t *cv)
{
    pthread_cond_wait(cv, &c->mu);
}

void net_conn_wake_locked(struct net_conn *c)
{
    if (c->wake_queued || c->closed)
        return;
    c->wake_queued = true;
    c->refs++; /* the wake list's */
    net_loop_wake(&c->lp->nl, &c->wake);
}

void net_conn_woken(struct net_conn *c)
{
    pthread_mutex_lock(&c->mu);
    c->wake_queued = false;
    pthread_mutex_unlock(&c->mu);
    if (!c->closed)
        c->lp->s->ops->wake(c);
    net_conn_unref(c); /* the wake list's */
}

bool net_conn_closed(const struct net_conn *c)
{
    return c->closed;
}

const struct sockaddr_storage *net_conn_peer(const struct net_conn *c)
{
    return &c->peer;
}

const char *net_conn_peer_str(const struct net_conn *c)
{
    return c->peer_str;
}

unsigned net_conn_listener(const struct net_conn *c)
{
    return c->listener;
}

bool net_conn_stopping(const struct net_conn *c)
{
    return atomic_load(&c->lp->s->stopping);
}

void net_conn_queue(struct net_conn *c, struct net_work *w)
{
    net_pool_push(c->lp->s->pool, w);
}

uint64_t net_conn_now(const struct net_conn *c)
{
    return uv_now(&c->lp->nl.loop);
}

static void on_close(uv_handle_t *h)
{
    struct net_conn *c = h->data;
    struct net_srv_loop *lp = c->lp;

    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    atomic_fetch_sub(&lp->s->nconns, 1);
    net_conn_unref(c); /* the loop's */
}

void net_conn_close(struct net_conn *c)
{
    if (c->closed)
        return;
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    pthread_mutex_unlock(&c->mu);
    c->reading = false;
    if (c->opened && c->lp->s->ops->close)
        c->lp->s->ops->close(c);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct net_conn *c = h->data;
    struct net_server *s = c->lp->s;

    (void)suggested;
    if (!s->read_per_conn) {
        /* Shared by the loop's connections: ops->read consumes or copies before returning. */
        *buf = uv_buf_init(c->lp->rbuf, (unsigned)s->read_size);
        return;
    }
    if (!c->rbuf)
        c->rbuf = malloc(s->read_size);
    /* A NULL base makes libuv report UV_ENOBUFS to on_read, which closes. */
    *buf = uv_buf_init(c->rbuf, c->rbuf ? (unsigned)s->read_size : 0);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct net_conn *c = st->data;
    const struct net_conn_ops *ops = c->lp->s->ops;

    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && !c->lingering && ops->eof) {
            c->reading = false; /* libuv stopped reading at the EOF */
            ops->eof(c);
            return;
        }
        if (nread != UV_EOF)
            log_debug(c->lp->s->tag, "%s: read: %s", c->peer_str, uv_strerror((int)nread));
        net_conn_close(c);
        return;
    }
    c->last_rx = net_conn_now(c);
    if (c->lingering)
        return; /* discarded */
    ops->read(c, buf->base, (size_t)nread);
}

void net_conn_read(struct net_conn *c, bool want)
{
    int rc;

    if (c->closed)
        return;
    if (c->lingering)
        want = true;
    if (want && !c->reading) {
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (rc) {
            log_debug(c->lp->s->tag, "%s: read start: %s", c->peer_str, uv_strerror(rc));
            net_conn_close(c);
            return;
        }
        c->reading = true;
        c->last_rx = net_conn_now(c);
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

bool net_conn_reading(const struct net_conn *c)
{
    return c->reading;
}

uint64_t net_conn_last_rx(const struct net_conn *c)
{
    return c->last_rx;
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
    struct net_write *w = NET_CONTAINER_OF(req, struct net_write, req);
    struct net_conn *c = w->c;

    assert(c->writes > 0);
    c->writes--;
    c->write_progress = net_conn_now(c);
    if (status < 0) {
        if (status != UV_ECANCELED)
            log_debug(c->lp->s->tag, "%s: write: %s", c->peer_str, uv_strerror(status));
        net_conn_close(c);
    }
    w->cb(w, status); /* may free w */
}

void net_conn_write(struct net_conn *c, struct net_write *w, const uv_buf_t *bufs, unsigned nbufs,
                    net_write_cb cb)
{
    int rc = UV_ECANCELED;

    w->c = c;
    w->cb = cb;
    if (!c->writes)
        c->write_progress = net_conn_now(c); /* the send-progress clock starts now */
    c->writes++;
    if (!c->closed)
        rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (rc)
        on_write(&w->req, rc);
}

/* ---- timeouts, linger ---- */

void net_conn_set_timeout(struct net_conn *c, uint64_t ms)
{
    c->deadline = ms ? net_conn_now(c) + ms : 0;
}

void net_conn_sweep(struct net_conn *c, uint64_t now)
{
    struct net_server *s = c->lp->s;

    if (c->deadline && now >= c->deadline) {
        log_debug(s->tag, "%s: %s; closing", c->peer_str, c->lingering ? "linger over" : "idle");
        net_conn_close(c);
        return;
    }
    if (c->writes && s->send_ms && now - c->write_progress >= s->send_ms) {
        log_debug(s->tag, "%s: send made no progress for %llu ms; closing", c->peer_str,
                  (unsigned long long)s->send_ms);
        net_conn_close(c);
        return;
    }
    if (s->ops->sweep)
        s->ops->sweep(c, now);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct net_conn *c = req->data;

    if (status < 0)
        net_conn_close(c);
}

void net_conn_linger(struct net_conn *c, uint64_t ms)
{
    if (c->closed || c->lingering)
        return;
    if (net_conn_stopping(c)) {
        net_conn_close(c);
        return;
    }
    c->lingering = true;
    net_conn_set_timeout(c, ms);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown)) {
        net_conn_close(c);
        return;
    }
    net_conn_read(c, true);
}

/* ---- accept ---- */

int net_conn_accept(struct net_srv_loop *lp, struct net_listener *l)
{
    struct net_server *s = lp->s;
    struct net_conn *c = calloc(1, sizeof(*c) + s->ops->size);
    int rc;

    if (!c)
        return CAIRN_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    c->refs = 1; /* the loop's, until the close callback */
    c->lp = lp;
    c->listener = l->idx;
    uv_tcp_init(&lp->nl.loop, &c->tcp);
    c->tcp.data = c;
    c->next = lp->conns;
    if (lp->conns)
        lp->conns->prev = c;
    lp->conns = c;
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp)) {
        net_conn_close(c);
        return 0;
    }
    /* Answers are written whole: do not hold their last segment back. */
    uv_tcp_nodelay(&c->tcp, 1);
    net_peer_name(&c->tcp, &c->peer, c->peer_str);
    rc = s->ops->open(c, s->arg);
    if (rc) {
        log_warn(s->tag, "%s: %s; closing", c->peer_str, cairn_strerror(rc));
        net_conn_close(c);
        return 0;
    }
    c->opened = true;
    net_conn_read(c, true);
    return 0;
}
