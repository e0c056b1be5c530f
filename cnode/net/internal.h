/*
 * internal.h - private to cnode/net: the structs conn.c and server.c share.  server.c owns the
 * server and its loops (listening, accepting, start and stop); conn.c owns what happens to a
 * connection once accepted.  Nothing outside cnode/net includes this.
 */
#ifndef CAIRN_CN_NET_INTERNAL_H
#define CAIRN_CN_NET_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cnode/net/conn.h"
#include "cnode/net/loop.h"
#include "cnode/net/pool.h"
#include "cnode/net/server.h"

struct net_srv_loop;

struct net_conn {
    uv_tcp_t tcp;
    uv_shutdown_t shutdown_req;
    struct net_srv_loop *lp;
    struct net_conn *prev, *next; /* the loop's connections */
    /* set at accept, read-only afterwards: workers may read them */
    unsigned listener;
    struct sockaddr_storage peer;
    char peer_str[NET_ADDR_STRLEN];

    /* ---- loop thread only ---- */
    bool opened;     /* ops->open succeeded: close and free are owed */
    bool reading;    /* uv_read_start() active */
    bool lingering;  /* net_conn_linger(): FIN sent, input discarded */
    char *rbuf;      /* per-connection read buffer; owned */
    unsigned writes; /* in uv_write() */
    /* uv_now() stamps: the last byte read, the last write completed (or the first started
     * since none was in flight), the timeout (0: none) */
    uint64_t last_rx, write_progress, deadline;

    /* ---- any thread, under mu ---- */
    pthread_mutex_t mu;
    unsigned refs;
    bool closed;      /* written on the loop thread only, so it reads it without the lock */
    bool wake_queued; /* wake is on the loop's wake list, holding a reference */
    struct net_wake wake;

    alignas(max_align_t) unsigned char data[]; /* the protocol's, ops->size bytes */
};

struct net_listener {
    uv_tcp_t tcp;
    struct net_srv_loop *lp;
    unsigned idx;
    bool inited;
};

struct net_srv_loop {
    struct net_loop nl; /* the uv loop, its thread, wake list and sweep timer */
    struct net_server *s;
    struct net_listener listeners[NET_MAX_PORTS];
    char *rbuf; /* the per-loop read buffer; owned */
    struct net_conn *conns;
};

struct net_server {
    const struct net_conn_ops *ops;
    void *arg;
    const char *tag;
    unsigned ports[NET_MAX_PORTS];
    unsigned nports, max_conns;
    uint64_t send_ms;
    size_t read_size;
    bool read_per_conn;
    unsigned nloops;
    struct net_srv_loop *loops;
    struct net_pool *pool;
    atomic_uint nconns;
    atomic_bool stopping;

    pthread_mutex_t mu; /* loops_closed */
    pthread_cond_t cv;
    unsigned loops_closed;
};

/* conn.c, for server.c (loop thread) */

/* Accept a pending connection of listener l and open it.  Returns 0 (the connection holds
 * one of s->nconns until its close callback, even if it closed at once), or CAIRN_ENOMEM
 * (nothing accepted: the caller rejects it). */
int net_conn_accept(struct net_srv_loop *lp, struct net_listener *l);
/* The sweep timer, for an open connection. */
void net_conn_sweep(struct net_conn *c, uint64_t now);
/* The loop took c off its wake list. */
void net_conn_woken(struct net_conn *c);

#endif
