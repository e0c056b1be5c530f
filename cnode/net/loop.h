/*
 * loop.h - the event loop and socket plumbing under the C-node's servers (server.h).
 *
 * Every server runs N threads, each with its own libuv loop and its own SO_REUSEPORT listening
 * socket per port, so the kernel spreads connections across loops and no socket moves between
 * threads; worker threads run the blocking handlers and hand work back to a loop through a
 * wake list and uv_async_send().  This file holds the address and listening-socket setup and
 * the loop object (thread, wake list, shutdown, sweep timer); server.c builds the server from
 * it, conn.c the connections.
 *
 * Errors are CAIRN_E* codes; CAIRN_EIO from a socket call keeps errno for the caller's log.
 */
#ifndef CAIRN_CN_NET_LOOP_H
#define CAIRN_CN_NET_LOOP_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define NET_MAX_LOOPS 256u
#define NET_LISTEN_BACKLOG 511
#define NET_ADDR_STRLEN (INET6_ADDRSTRLEN + 8) /* "[v6 address]:65535" and its NUL */

/* The struct holding member `member` at ptr (for links and loops embedded in a bigger struct). */
#define NET_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- addresses and sockets ---- */

/* host (NULL or "": every address) and port as a passive TCP address.  CAIRN_EINVAL if the
 * host does not resolve. */
int net_resolve(const char *host, unsigned port, struct sockaddr_storage *ss, socklen_t *len);

/* Listen on tcp (uv_tcp_init()ed by the caller, who closes it whatever this returns) at addr
 * with its port set to *port, on a non-blocking socket with SO_REUSEADDR and SO_REUSEPORT.  If
 * *port is 0 the kernel picks one and it is stored in *port, so that the other loops' sockets,
 * given the same port variable, bind to the same port.  Returns 0 or CAIRN_EIO (errno set). */
int net_listen(uv_tcp_t *tcp, struct sockaddr_storage *addr, socklen_t alen, unsigned *port,
               uv_connection_cb on_connection);

/* Accept a pending connection on server and close it at once (over a limit, or stopping).
 * Returns 0 or CAIRN_ENOMEM (the connection then stays pending). */
int net_reject(uv_loop_t *loop, uv_stream_t *server);

/* The peer of tcp in *peer (zeroed if unknown; peer may be NULL) and as text in str:
 * "ip:port", "[ip6]:port", or "?:0". */
void net_peer_name(const uv_tcp_t *tcp, struct sockaddr_storage *peer, char str[NET_ADDR_STRLEN]);

/* How many loops to run: requested, or the number of online CPUs if 0; at most NET_MAX_LOOPS. */
unsigned net_loop_count(unsigned requested);

/* ---- the loop ---- */

/* A link for the wake list, embedded in whatever the owner wants the loop to look at. */
struct net_wake {
    struct net_wake *next;
};

struct net_loop;

/* The owner's hooks, all called on the loop thread. */
struct net_loop_ops {
    /* w was queued with net_loop_wake(); each queued link is handed back once. */
    void (*wake)(struct net_loop *nl, struct net_wake *w);
    /* The sweep timer fired (see net_loop_init()). */
    void (*sweep)(struct net_loop *nl);
    /* net_loop_close() was called: close the owner's handles on this loop (listeners,
     * connections).  Called once, after the wakes queued before it. */
    void (*close)(struct net_loop *nl);
};

/* One event loop and the thread that runs it.  Embedded in the owner's per-loop struct (like a
 * libuv handle); the owner uses `loop` for its own handles and leaves the other fields alone.
 * A zeroed struct is a valid "not initialised" state for net_loop_fini(). */
struct net_loop {
    uv_loop_t loop;
    /* ---- private ---- */
    const struct net_loop_ops *ops;
    uv_async_t async;
    uv_timer_t sweep;
    pthread_t thread;
    bool inited, thread_started;
    pthread_mutex_t mu; /* wake list, close and exit requests */
    struct net_wake *wake;
    bool close, exit;
};

/* Set up the loop, its async wakeup and its sweep timer, which fires every timeout_ms / 4
 * (clamped to 10 ms .. 1 s) so that a connection overstays timeout_ms by a quarter at most.
 * ops is borrowed until net_loop_fini().  Returns 0 or CAIRN_ENOMEM (nothing left to undo). */
int net_loop_init(struct net_loop *nl, const struct net_loop_ops *ops, uint64_t timeout_ms);

/* Start the loop's thread, which blocks SIGPIPE (a peer that reset must give EPIPE from a
 * write, not kill the process) and runs the loop until net_loop_fini().  Returns 0 or
 * CAIRN_ENOMEM. */
int net_loop_start(struct net_loop *nl);
bool net_loop_started(const struct net_loop *nl);

/* Any thread: queue w for ops->wake and wake the loop.  w must not be queued already (the
 * owner keeps that flag, under its own lock). */
void net_loop_wake(struct net_loop *nl, struct net_wake *w);

/* Any thread: have the loop thread run ops->close, the first step of a shutdown.  Returns
 * false, and does nothing, if the thread never started: nothing would run it (the owner's
 * handles are then the owner's to close, see net_loop_fini()). */
bool net_loop_close(struct net_loop *nl);

/* Stop and free the loop (not the struct).  A running loop closes its async and timer on its
 * own thread and the thread is joined: ops->close must have run (net_loop_close()), and the
 * handles it closed must no longer be reopened.  A loop whose thread never started is run here
 * until its handles close: the owner uv_close()s its own handles before calling.  The wake list
 * must be empty.  Returns 0, or CAIRN_EIO if handles were left open (uv_loop_close() failed).
 * Accepts NULL and a zeroed struct. */
int net_loop_fini(struct net_loop *nl);

#endif
