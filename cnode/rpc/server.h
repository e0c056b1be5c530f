/*
 * server.h - the C-node's ONC RPC server over TCP: libuv loops for the sockets, worker threads
 * for the calls (the NFS and MOUNT programs).
 *
 * Design, as for the HTTP front end (server.h): `loops` threads each run a libuv loop with
 * their own SO_REUSEPORT listening socket on every configured port, so the kernel spreads
 * connections across loops.  A loop reads its connections and reassembles records
 * (rpc.h record marking, hard size limit checked before allocating); each complete record
 * goes to the worker pool, and a worker runs the application's handler, which may block on
 * the D-nodes.
 *
 * Unlike HTTP, RPC pipelines: a client may send many calls on one connection before the
 * first reply, and replies may go out in any order (the xid matches them).  A connection may
 * have at most max_inflight calls being handled or waiting; beyond that the loop stops
 * reading it until replies go out, so one client cannot take unbounded memory.  Replies are
 * sent with their record mark as one fragment.
 *
 * A record over the limit or a broken record mark closes the connection (RFC 5531 gives no
 * way to answer it).  Idle connections close after idle_ms.
 */
#ifndef CAIRN_CN_RPC_SERVER_H
#define CAIRN_CN_RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RPCSRV_MAX_LISTENERS 4u
#define RPCSRV_DEFAULT_MAX_RECORD ((1u << 20) + (64u << 10)) /* a 1 MiB WRITE and its header */
#define RPCSRV_DEFAULT_INFLIGHT 64u
#define RPCSRV_DEFAULT_IDLE_MS 300000u
#define RPCSRV_DEFAULT_MAX_CONNS 4096u

struct rpcsrv;
struct rpcsrv_call; /* one call in flight, owned by the server; the handler borrows it */

struct rpcsrv_app {
    void *app; /* passed back to every hook */
    /* Per-worker state, created on the worker thread; NULL fails rpcsrv_start().  May be NULL. */
    void *(*worker_init)(void *app, unsigned worker);
    void (*worker_fini)(void *app, void *wstate);
    /* Handle one record (rec, len: the whole RPC message, without marks; valid until the
     * call is answered) that arrived on listener `listener` (index into cfg ports).  Must end
     * the call exactly once with rpcsrv_reply(), rpcsrv_drop() or rpcsrv_close(). */
    void (*handle)(void *app, void *wstate, struct rpcsrv_call *c, unsigned listener,
                   const uint8_t *rec, size_t len);
};

struct rpcsrv_config {
    const char *host;                     /* address to listen on */
    unsigned ports[RPCSRV_MAX_LISTENERS]; /* 0: ephemeral (see rpcsrv_port) */
    unsigned nports;
    unsigned loops;      /* event loop threads; 0 = number of online CPUs */
    unsigned workers;    /* handler threads; 0 = 8 */
    size_t max_record;   /* 0 = RPCSRV_DEFAULT_MAX_RECORD */
    unsigned max_inflight; /* per connection; 0 = RPCSRV_DEFAULT_INFLIGHT */
    unsigned idle_ms;    /* 0 = RPCSRV_DEFAULT_IDLE_MS */
    unsigned max_conns;  /* 0 = RPCSRV_DEFAULT_MAX_CONNS; beyond it accepted and closed */
};

/* Bind every port, start loops and workers.  Returns 0, CAIRN_EINVAL, CAIRN_EIO (bind failed,
 * errno kept; or a worker_init returned NULL), CAIRN_ENOMEM. */
int rpcsrv_start(const struct rpcsrv_config *cfg, const struct rpcsrv_app *app,
                 struct rpcsrv **out);
unsigned rpcsrv_port(const struct rpcsrv *s, unsigned listener);
/* Stop accepting, close every connection, finish or drop queued calls, join all threads.
 * Accepts NULL. */
void rpcsrv_stop(struct rpcsrv *s);

/* ---- for handlers, on the worker thread ---- */

/* The client's address (for export allow-lists) and its text form "ip:port". */
const struct sockaddr_storage *rpcsrv_peer(const struct rpcsrv_call *c);
const char *rpcsrv_peer_str(const struct rpcsrv_call *c);

/* Send the reply message (len bytes, without record mark; ownership of the malloc'd buf
 * passes to the server) and end the call.  If the connection is gone the reply is freed. */
void rpcsrv_reply(struct rpcsrv_call *c, uint8_t *buf, size_t len);
/* End the call without a reply (e.g. an undecodable message). */
void rpcsrv_drop(struct rpcsrv_call *c);
/* End the call without a reply and close its connection. */
void rpcsrv_close(struct rpcsrv_call *c);

#endif
