/*
 * conn.h - one TCP connection of a C-node server (cnode/net/server.h), the lifecycle the HTTP
 * and ONC RPC servers share.
 *
 * A connection belongs to the loop that accepted it: its socket, its read state, its writes
 * and its timeouts are touched on that loop's thread only.  The protocol on top plugs in
 * through an ops table (struct net_conn_ops) and keeps its own per-connection state in the
 * connection's data area (net_conn_data()), allocated with it.  Worker threads reach a
 * connection only through the few calls marked "any thread": its lock, its references, and
 * net_conn_wake_locked() to have the loop look at it again.
 *
 * Lifetime.  The loop holds one reference from accept until the socket's close callback;
 * whoever else keeps a pointer (a worker running a request, a queued call) takes one with
 * net_conn_ref() and drops it with net_conn_unref().  The last reference frees the connection
 * after ops->free.  Once net_conn_close() ran (on the loop), net_conn_closed() is true for
 * every thread that takes the lock, and wakes are no longer queued.  Every reference must be
 * gone when net_server_stop() returns: the loop's, the wake list's and those held by queued
 * work (run or dropped by the pool) are; any other is its holder's to drop before stopping.
 *
 * Reading.  The protocol says whether it wants bytes (net_conn_read()); stopping is how it
 * pushes back on a client that sends faster than the workers consume.  The read buffer is the
 * server's (struct net_server_config: one per loop, or one per connection).
 *
 * Timeouts.  One sweep per loop, every quarter of the server's shortest timeout, closes a
 * connection past the deadline set with net_conn_set_timeout(), and one whose writes made no
 * progress for the server's send_ms; then ops->sweep runs for what only the protocol knows.
 *
 * Errors are CAIRN_E* codes; libuv statuses handed to callbacks are UV_E* codes.
 */
#ifndef CAIRN_CN_NET_CONN_H
#define CAIRN_CN_NET_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "cnode/net/loop.h" /* NET_CONTAINER_OF for the links embedded in the protocol's structs */
#include "cnode/net/pool.h"

struct net_conn;
struct net_write;

/* A write finished: status 0, or a UV_E* code (the connection is then already closed). */
typedef void (*net_write_cb)(struct net_write *w, int status);

/* One write request, embedded in whatever owns the bytes being written.  net_conn_write() sets
 * the fields; the callback may read c. */
struct net_write {
    uv_write_t req;
    struct net_conn *c;
    net_write_cb cb;
};

/* The protocol's hooks.  All run on the connection's loop thread except free. */
struct net_conn_ops {
    /* Bytes of protocol state per connection (net_conn_data()), zeroed before open. */
    size_t size;
    /* A connection was accepted (peer known).  Set up the data area; arg is the conn_arg
     * given to net_server_start().  Nonzero closes the connection at once, and neither close nor
     * free is called for it.  Reading starts when this returns 0. */
    int (*open)(struct net_conn *c, void *arg);
    /* len > 0 bytes arrived.  With a per-loop read buffer they are valid during the call only
     * (consume or copy them); with a per-connection buffer until reading starts again. */
    void (*read)(struct net_conn *c, const char *data, size_t len);
    /* The client shut down its side (reading has stopped).  May be NULL: the connection
     * closes. */
    void (*eof)(struct net_conn *c);
    /* Someone called net_conn_wake_locked(); not called once the connection is closed. */
    void (*wake)(struct net_conn *c);
    /* The sweep timer fired and the connection passed net's own checks (now: loop time, ms).
     * May be NULL. */
    void (*sweep)(struct net_conn *c, uint64_t now);
    /* The connection closed (once): fail or free what waits on it.  Other threads already see
     * net_conn_closed().  May be NULL. */
    void (*close)(struct net_conn *c);
    /* The last reference went (any thread): free what the data area holds.  May be NULL. */
    void (*free)(struct net_conn *c);
};

/* ---- any thread ---- */

/* The protocol's data area (ops->size bytes, suitably aligned). */
void *net_conn_data(struct net_conn *c);

void net_conn_ref(struct net_conn *c);
/* May free the connection (ops->free first), on the calling thread. */
void net_conn_unref(struct net_conn *c);

/* The connection's mutex: it guards the lifetime fields, and the protocol may keep the state
 * it shares with workers under it too.  Not held by net when it calls the ops. */
void net_conn_lock(struct net_conn *c);
void net_conn_unlock(struct net_conn *c);
/* pthread_cond_wait() on cv with the connection's mutex (held by the caller). */
void net_conn_wait(struct net_conn *c, pthread_cond_t *cv);

/* With the lock held: have the loop call ops->wake soon.  Wakes coalesce (one call for any
 * number before it runs); does nothing once the connection is closed. */
void net_conn_wake_locked(struct net_conn *c);

/* Whether the loop closed the connection: on the loop thread, or with the lock held. */
bool net_conn_closed(const struct net_conn *c);

/* Set at accept and never changed: the client's address, as text ("ip:port"), and the index
 * of the port (struct net_server_config) it connected to. */
const struct sockaddr_storage *net_conn_peer(const struct net_conn *c);
const char *net_conn_peer_str(const struct net_conn *c);
unsigned net_conn_listener(const struct net_conn *c);

/* The server is stopping (net_server_stop() began). */
bool net_conn_stopping(const struct net_conn *c);

/* Queue w for the server's worker pool (pool.h): run(arg, wstate, w) on a worker.  Until the
 * server stops; the caller takes a reference for the item if it keeps c in it. */
void net_conn_queue(struct net_conn *c, struct net_work *w);

/* ---- the loop thread ---- */

/* The loop's clock (uv_now(), ms). */
uint64_t net_conn_now(const struct net_conn *c);

/* Read while want.  A read that cannot start closes the connection. */
void net_conn_read(struct net_conn *c, bool want);
bool net_conn_reading(const struct net_conn *c);
/* When the last byte came, or reading last started if later (time spent not reading is not
 * the client's). */
uint64_t net_conn_last_rx(const struct net_conn *c);

/* Close the connection if it is still open ms from now; 0 cancels.  Replaces the previous. */
void net_conn_set_timeout(struct net_conn *c, uint64_t ms);

/* Send nbufs buffers (the array is copied, the bytes are borrowed until cb).  cb is always
 * called, before this returns if the write cannot start; on an error the connection is closed
 * first.  w is the connection's until then. */
void net_conn_write(struct net_conn *c, struct net_write *w, const uv_buf_t *bufs, unsigned nbufs,
                    net_write_cb cb);

/* The last answer is queued: send a FIN after it, then read and discard what the client still
 * sends, for at most ms, so that closing with unread input does not reset the connection
 * before the client read the answer.  ops->read is no longer called; the client's EOF or the
 * timeout closes.  Closes at once if the server is stopping. */
void net_conn_linger(struct net_conn *c, uint64_t ms);

/* Close the socket; writes in flight complete with UV_ECANCELED, before the loop lets go of
 * its reference.  Idempotent. */
void net_conn_close(struct net_conn *c);

#endif
