/*
 * server.h - a C-node TCP server without its protocol: the event loops that own the sockets
 * and the worker pool that runs the handlers.  The HTTP server (cnode/http/server.h) and the
 * ONC RPC server (cnode/rpc/server.h) are each this plus their protocol.
 *
 * Design.  `loops` threads each run a libuv loop (loop.h) with its own SO_REUSEPORT listening
 * socket on every configured port, so the kernel spreads connections across the loops and no
 * socket moves between threads.  A connection (conn.h) lives on the loop that accepted it;
 * the protocol reads it there and queues work for the pool (pool.h) with net_conn_queue(); a
 * worker hands results back through net_conn_wake_locked().  Connections beyond max_conns
 * (over all loops) are accepted and closed at once, so that the client sees a clear end.
 *
 * Stopping runs in this order, the one both protocols need: stop accepting and close every
 * connection on its loop (a blocked handler sees its client gone); then finish or drop the
 * queued work and join the workers (pool.h); then, with no thread left to wake them, close the
 * loops and join their threads.
 *
 * Errors are CAIRN_E* codes; CAIRN_EIO from a bind keeps errno for the caller.
 */
#ifndef CAIRN_CN_NET_SERVER_H
#define CAIRN_CN_NET_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/net/conn.h"
#include "cnode/net/pool.h"

#define NET_MAX_PORTS 4u

struct net_server;

struct net_server_config {
    const char *host;              /* address to listen on; NULL or "": every address */
    unsigned ports[NET_MAX_PORTS]; /* 0: ephemeral, the same on every loop (net_server_port) */
    unsigned nports;               /* 1 .. NET_MAX_PORTS */
    unsigned loops;                /* event loop threads; 0 = the number of online CPUs */
    unsigned workers;              /* worker threads, > 0 */
    unsigned max_conns;            /* open connections over all loops, > 0 */
    uint64_t tick_ms;    /* the shortest timeout the protocol keeps: the sweep runs 4 times in it */
    uint64_t send_ms;    /* close a connection whose writes made no progress this long; 0: never */
    size_t read_size;    /* bytes per read, > 0 */
    bool read_per_conn;  /* one read buffer per connection (kept while it is open), else one per
                          * loop (see net_conn_ops.read) */
    const char *log_tag; /* for the server's log lines; borrowed until net_server_stop() */
};

/* Bind every port on every loop, start the workers (waiting for their worker_init), then the
 * loops.  The ops and args are borrowed until net_server_stop(): conn_arg is passed to
 * conn_ops->open, pool_arg to the pool's hooks.  Returns 0, CAIRN_EINVAL (bad config, host
 * does not resolve), CAIRN_EIO (a bind failed: errno kept; or a worker_init failed),
 * CAIRN_ENOMEM. */
int net_server_start(const struct net_server_config *cfg, const struct net_conn_ops *conn_ops,
                     void *conn_arg, const struct net_pool_ops *pool_ops, void *pool_arg,
                     struct net_server **out);

/* The port listener i (an index into cfg->ports) is bound to; 0 if there is no such
 * listener. */
unsigned net_server_port(const struct net_server *s, unsigned i);

/* Stop (in the order above) and free.  Not from a loop or worker thread of s.  Accepts
 * NULL. */
void net_server_stop(struct net_server *s);

#endif
