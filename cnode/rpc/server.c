/*
 * server.c - the C-node's ONC RPC server over TCP (see server.h): the RPC protocol on the
 * connections, loops and worker pool of cnode/net/server.h.
 *
 * Ownership.  A connection's RPC state (struct rs_conn, in the net connection's data area)
 * belongs to its loop thread: the reassembler, the unread input and the counters are touched
 * only there.  A complete record becomes a call (struct rpcsrv_call) that owns the record,
 * holds a reference on the connection and goes to the worker pool; the handler ends it from
 * the worker, which moves the call onto the connection's done list (under the connection's
 * lock) and wakes the loop.  The loop then writes the reply (record mark + reply: one write
 * with two buffers, the call itself holding the write request), or just forgets a dropped
 * call.  Replies go out in the order calls end, which is what lets a fast call overtake a slow
 * one on the same connection.  Once the loop closed the connection, calls that end are freed
 * on the spot, and queued calls are freed without running the handler (the pool's drop, and a
 * check before each call runs).
 *
 * Backpressure.  `inflight` counts the connection's calls from dispatch until their reply is
 * written (or the drop is processed).  At max_inflight the loop stops feeding the reassembler
 * and stops reading; input already read stays in a small per-connection buffer.  Input is read
 * into one buffer per loop, and only what cannot be fed yet is copied, so idle and
 * unthrottled connections hold no read buffer at all.  Counting until the reply is written,
 * not just handled, also bounds the replies a client that does not read can pile up.
 *
 * Timeouts: a connection with no call outstanding closes idle_ms after its last complete
 * record or reply (bytes that never make a record do not keep it open), and one whose reply
 * writes made no progress for idle_ms closes too (net's send timeout).
 */
#include "cnode/rpc/server.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cnode/net/server.h"
#include "cnode/rpc/rpc.h"
#include "common/cairn.h"
#include "common/log.h"

#define TAG "rpcsrv"
#define RBUF_SIZE (64u << 10) /* socket read buffer, one per loop */
#define DEFAULT_WORKERS 8u
#define MARK_LAST 0x80000000u
#define MAX_FRAGMENT 0x7fffffffu /* a reply goes out as one fragment */

_Static_assert(RPCSRV_MAX_LISTENERS <= NET_MAX_PORTS, "every listener is a net port");

enum call_end { END_NONE, END_REPLY, END_DROP, END_CLOSE };

struct rs_conn;
struct rs_worker;

struct rpcsrv_call {
    struct rs_conn *c;        /* holds a reference on c->nc */
    struct net_work work;     /* the worker queue */
    struct rpcsrv_call *next; /* the connection's done list */
    struct rs_worker *w;      /* the worker whose handler has it, until it ends */
    unsigned listener;
    uint8_t *rec; /* owned until the call ends */
    size_t rec_len;
    enum call_end end;
    uint8_t *reply; /* owned */
    size_t reply_len;
    uint8_t mark[4];
    struct net_write nw;
};

/* The RPC side of a connection: the data area of c->nc. */
struct rs_conn {
    struct net_conn *nc;
    struct rpcsrv *s;

    /* ---- loop thread only ---- */
    struct rpc_rm rm;
    uint8_t *pend; /* read but not yet fed (the connection was at max_inflight); owned */
    size_t pend_off, pend_len;
    bool eof; /* the client shut down its side: answer what we have, then close */
    unsigned inflight;

    /* ---- under the connection's lock ---- */
    struct rpcsrv_call *done_head, *done_tail; /* ended calls for the loop to finish */
};

/* A worker's state: the application's, and the call its handler has not ended yet. */
struct rs_worker {
    void *ws;
    struct rpcsrv_call *open;
};

struct rpcsrv {
    struct rpcsrv_app app;
    size_t max_record;
    unsigned max_inflight, idle_ms;
    struct net_server *net;
};

/* ---- calls ---- */

/* Any thread.  Drops the call's connection reference, which may free the connection. */
static void call_free(struct rpcsrv_call *call)
{
    struct net_conn *nc = call->c->nc;

    free(call->rec);
    free(call->reply);
    free(call);
    net_conn_unref(nc);
}

/* The idle clock runs only while no call is outstanding: restart or stop it after inflight
 * changed. */
static void idle_update(struct rs_conn *c)
{
    net_conn_set_timeout(c->nc, c->inflight ? 0 : c->s->idle_ms);
}

/* ---- reading (loop thread) ---- */

static void call_finished(struct rs_conn *c);

/* Read while the connection may take more calls and every byte read before was fed. */
static void update_reading(struct rs_conn *c)
{
    net_conn_read(c->nc, !c->eof && !c->pend_len && c->inflight < c->s->max_inflight);
}

/* A record is complete: make it a call and queue it for the workers. */
static void dispatch(struct rs_conn *c)
{
    struct rpcsrv_call *call;
    size_t len;
    uint8_t *rec = rpc_rm_take(&c->rm, &len);

    call = calloc(1, sizeof(*call));
    if (!call) {
        free(rec);
        log_warn(TAG, "%s: out of memory for a call; closing", net_conn_peer_str(c->nc));
        net_conn_close(c->nc);
        return;
    }
    call->c = c;
    call->listener = net_conn_listener(c->nc);
    call->rec = rec;
    call->rec_len = len;
    net_conn_ref(c->nc); /* the call's */
    c->inflight++;
    idle_update(c);
    net_conn_queue(c->nc, &call->work);
}

/* Feed input to the reassembler, dispatching complete records, while the connection may take
 * more calls.  Returns how many bytes were consumed; the connection may be closed on return. */
static size_t feed_input(struct rs_conn *c, const uint8_t *data, size_t len)
{
    size_t used = 0;

    while (used < len && c->inflight < c->s->max_inflight && !net_conn_closed(c->nc)) {
        bool complete;
        ssize_t n = rpc_rm_feed(&c->rm, data + used, len - used, &complete);

        if (n < 0) {
            /* RFC 5531 has no way to answer a record we will not read: close. */
            log_debug(TAG, "%s: %s; closing", net_conn_peer_str(c->nc),
                      n == CAIRN_ETOOBIG ? "record over the limit" : cairn_strerror((int)n));
            net_conn_close(c->nc);
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

        if (net_conn_closed(c->nc))
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

static void conn_read(struct net_conn *nc, const char *data, size_t len)
{
    struct rs_conn *c = net_conn_data(nc);
    size_t used = feed_input(c, (const uint8_t *)data, len);

    if (net_conn_closed(nc))
        return;
    if (used < len) {
        /* The read buffer is the loop's: keep what the reassembler could not take yet. */
        c->pend_len = len - used;
        c->pend_off = 0;
        c->pend = malloc(c->pend_len);
        if (!c->pend) {
            c->pend_len = 0;
            log_warn(TAG, "%s: out of memory; closing", net_conn_peer_str(nc));
            net_conn_close(nc);
            return;
        }
        memcpy(c->pend, data + used, c->pend_len);
    }
    update_reading(c);
}

/* A client may shut down its side and still wait for its replies. */
static void conn_eof(struct net_conn *nc)
{
    struct rs_conn *c = net_conn_data(nc);

    c->eof = true;
    call_finished(c);
}

/* ---- writing and ending calls (loop thread) ---- */

/* A call ended (or the client shut down its side): read on, or close a connection whose client
 * shut down and got all its answers. */
static void call_finished(struct rs_conn *c)
{
    if (net_conn_closed(c->nc))
        return;
    resume_input(c); /* input read before the EOF may still hold calls */
    if (!net_conn_closed(c->nc) && c->eof && !c->inflight && !c->pend_len)
        net_conn_close(c->nc);
}

static void on_write(struct net_write *w, int status)
{
    struct rpcsrv_call *call = NET_CONTAINER_OF(w, struct rpcsrv_call, nw);
    struct rs_conn *c = call->c;

    c->inflight--;
    idle_update(c);
    call_free(call); /* the loop's reference keeps the connection until its close callback */
    if (status >= 0)
        call_finished(c);
}

static void start_write(struct rs_conn *c, struct rpcsrv_call *call)
{
    uint32_t m = MARK_LAST | (uint32_t)call->reply_len;
    uv_buf_t bufs[2];

    call->mark[0] = (uint8_t)(m >> 24);
    call->mark[1] = (uint8_t)(m >> 16);
    call->mark[2] = (uint8_t)(m >> 8);
    call->mark[3] = (uint8_t)m;
    bufs[0] = uv_buf_init((char *)call->mark, sizeof(call->mark));
    bufs[1] = uv_buf_init((char *)call->reply, (unsigned)call->reply_len);
    net_conn_write(c->nc, &call->nw, bufs, 2, on_write);
}

/* The calls the workers ended since the last look, oldest first. */
static struct rpcsrv_call *done_take(struct rs_conn *c)
{
    struct rpcsrv_call *list;

    net_conn_lock(c->nc);
    list = c->done_head;
    c->done_head = c->done_tail = NULL;
    net_conn_unlock(c->nc);
    return list;
}

/* Finish the calls the workers ended: write replies, forget drops, close on request. */
static void conn_wake(struct net_conn *nc)
{
    struct rs_conn *c = net_conn_data(nc);
    struct rpcsrv_call *list, *call;
    bool ended = false;

    list = done_take(c);
    while ((call = list)) {
        list = call->next;
        if (net_conn_closed(nc)) { /* a write failed or a call closed the connection */
            call_free(call);
            continue;
        }
        switch (call->end) {
        case END_REPLY:
            start_write(c, call);
            break;
        case END_CLOSE:
            log_debug(TAG, "%s: closed by the handler", net_conn_peer_str(nc));
            c->inflight--;
            call_free(call);
            net_conn_close(nc);
            break;
        default:
            c->inflight--;
            idle_update(c);
            call_free(call);
            ended = true;
            break;
        }
    }
    if (ended)
        call_finished(c);
}

/* ---- the connection's other hooks (loop thread, free on any) ---- */

static int conn_open(struct net_conn *nc, void *arg)
{
    struct rs_conn *c = net_conn_data(nc);

    c->nc = nc;
    c->s = arg;
    rpc_rm_init(&c->rm, c->s->max_record);
    idle_update(c);
    return 0;
}

/* Calls already ended are freed; the rest are freed as they end (call_end()). */
static void conn_close(struct net_conn *nc)
{
    struct rs_conn *c = net_conn_data(nc);
    struct rpcsrv_call *list, *call;

    list = done_take(c);
    while ((call = list)) {
        list = call->next;
        call_free(call); /* the loop's reference keeps the connection */
    }
}

static void conn_free(struct net_conn *nc)
{
    struct rs_conn *c = net_conn_data(nc);

    assert(!c->done_head);
    rpc_rm_fini(&c->rm);
    free(c->pend);
}

static const struct net_conn_ops conn_ops = {
    .size = sizeof(struct rs_conn),
    .open = conn_open,
    .read = conn_read,
    .eof = conn_eof,
    .wake = conn_wake,
    .close = conn_close,
    .free = conn_free,
};

/* ---- the handler's side (worker thread) ---- */

const struct sockaddr_storage *rpcsrv_peer(const struct rpcsrv_call *c)
{
    return net_conn_peer(c->c->nc);
}

const char *rpcsrv_peer_str(const struct rpcsrv_call *c)
{
    return net_conn_peer_str(c->c->nc);
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
    net_conn_lock(c->nc);
    if (net_conn_closed(c->nc)) {
        net_conn_unlock(c->nc);
        call_free(call);
        return;
    }
    if (c->done_tail)
        c->done_tail->next = call;
    else
        c->done_head = call;
    c->done_tail = call;
    net_conn_wake_locked(c->nc);
    net_conn_unlock(c->nc);
}

void rpcsrv_reply(struct rpcsrv_call *c, uint8_t *buf, size_t len)
{
    if (len > MAX_FRAGMENT || (!buf && len)) {
        /* The client waits for this xid; only closing tells it to give up. */
        log_error(TAG, "%s: invalid reply of %zu bytes; closing", rpcsrv_peer_str(c), len);
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

/* ---- the worker pool's hooks ---- */

static void *worker_init(void *arg, unsigned idx)
{
    struct rpcsrv *s = arg;
    struct rs_worker *w = calloc(1, sizeof(*w));

    if (!w)
        return NULL;
    if (s->app.worker_init) {
        w->ws = s->app.worker_init(s->app.app, idx);
        if (!w->ws) {
            free(w);
            return NULL;
        }
    }
    return w;
}

static void worker_fini(void *arg, void *ws)
{
    struct rpcsrv *s = arg;
    struct rs_worker *w = ws;

    if (s->app.worker_fini)
        s->app.worker_fini(s->app.app, w->ws);
    free(w);
}

static void worker_run(void *arg, void *ws, struct net_work *work)
{
    struct rpcsrv *s = arg;
    struct rs_worker *w = ws;
    struct rpcsrv_call *call = NET_CONTAINER_OF(work, struct rpcsrv_call, work);
    bool gone;

    net_conn_lock(call->c->nc);
    gone = net_conn_closed(call->c->nc);
    net_conn_unlock(call->c->nc);
    if (gone) { /* nobody to answer: spare the D-nodes the work */
        call_free(call);
        return;
    }
    call->w = w;
    w->open = call;
    s->app.handle(s->app.app, w->ws, call, call->listener, call->rec, call->rec_len);
    if (w->open) {
        /* A handler bug, but a call never ended would hold its connection's slot forever. */
        log_warn(TAG, "%s: handler returned without ending the call; dropping it",
                 rpcsrv_peer_str(w->open));
        rpcsrv_drop(w->open);
    }
}

/* Stopping: the calls still queued are freed without running. */
static void worker_drop(void *arg, struct net_work *work)
{
    (void)arg;
    call_free(NET_CONTAINER_OF(work, struct rpcsrv_call, work));
}

static const struct net_pool_ops pool_ops = {
    .worker_init = worker_init,
    .worker_fini = worker_fini,
    .run = worker_run,
    .drop = worker_drop,
};

/* ---- start and stop ---- */

int rpcsrv_start(const struct rpcsrv_config *cfg, const struct rpcsrv_app *app, struct rpcsrv **out)
{
    struct net_server_config ncfg = {.read_size = RBUF_SIZE, .log_tag = TAG};
    struct rpcsrv *s;
    int rc, saved_errno;

    if (!cfg || !app || !app->handle || !out || !cfg->nports || cfg->nports > RPCSRV_MAX_LISTENERS)
        return CAIRN_EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return CAIRN_ENOMEM;
    s->app = *app;
    s->max_record = cfg->max_record ? cfg->max_record : RPCSRV_DEFAULT_MAX_RECORD;
    s->max_inflight = cfg->max_inflight ? cfg->max_inflight : RPCSRV_DEFAULT_INFLIGHT;
    s->idle_ms = cfg->idle_ms ? cfg->idle_ms : RPCSRV_DEFAULT_IDLE_MS;
    ncfg.host = cfg->host;
    memcpy(ncfg.ports, cfg->ports, cfg->nports * sizeof(cfg->ports[0]));
    ncfg.nports = cfg->nports;
    ncfg.loops = cfg->loops;
    ncfg.workers = cfg->workers ? cfg->workers : DEFAULT_WORKERS;
    ncfg.max_conns = cfg->max_conns ? cfg->max_conns : RPCSRV_DEFAULT_MAX_CONNS;
    ncfg.tick_ms = s->idle_ms;
    ncfg.send_ms = s->idle_ms;
    rc = net_server_start(&ncfg, &conn_ops, s, &pool_ops, s, &s->net);
    if (rc) {
        saved_errno = errno; /* a bind's, for the caller */
        free(s);
        errno = saved_errno;
        return rc;
    }
    *out = s;
    return 0;
}

unsigned rpcsrv_port(const struct rpcsrv *s, unsigned listener)
{
    return net_server_port(s->net, listener);
}

void rpcsrv_stop(struct rpcsrv *s)
{
    if (!s)
        return;
    net_server_stop(s->net);
    free(s);
}
