/*
 * loop.c - the loop and socket plumbing under the C-node's servers (see loop.h).
 *
 * Listening sockets are created by hand rather than with uv_tcp_bind(): libuv 1.44 has no flag
 * for SO_REUSEPORT on Linux (UV_TCP_REUSEPORT came in 1.49), and every loop needs its own
 * socket on the same port so that the kernel, not a thread of ours, spreads the connections.
 *
 * The loop's async handle carries a wake list (objects a worker wants the loop to look at,
 * pushed under the loop's mutex) and the two shutdown requests: close (the owner closes its
 * listeners and connections) and exit (the loop closes its own async and timer, so uv_run()
 * returns).  They are two steps because between them the owner waits for its workers, which
 * may still wake the loop.  uv_async_send() coalesces, so each callback drains whatever
 * accumulated; the wake list goes first so that closing sees the effect of the wakes that came
 * before it.  uv_async_send() is the only libuv call made off the loop thread.
 */
#include "cnode/net/loop.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cairn.h"

#define SWEEP_MIN_MS 10u
#define SWEEP_MAX_MS 1000u

/* ---- addresses and sockets ---- */

int net_resolve(const char *host, unsigned port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    char ps[16];

    snprintf(ps, sizeof(ps), "%u", port);
    if (getaddrinfo(host && *host ? host : NULL, ps, &hints, &res) || !res)
        return CAIRN_EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void set_port(struct sockaddr_storage *ss, unsigned port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

static unsigned get_port(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                           : ((const struct sockaddr_in *)ss)->sin_port);
}

/* A socket bound to addr, SO_REUSEPORT so that every loop can have one. */
static int bound_socket(const struct sockaddr *addr, socklen_t alen, int *out)
{
    int one = 1, fd, err;

    fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return CAIRN_EIO;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) || bind(fd, addr, alen)) {
        err = errno;
        close(fd);
        errno = err;
        return CAIRN_EIO;
    }
    *out = fd;
    return 0;
}

int net_listen(uv_tcp_t *tcp, struct sockaddr_storage *addr, socklen_t alen, unsigned *port,
               uv_connection_cb on_connection)
{
    int fd, rc;

    set_port(addr, *port);
    rc = bound_socket((struct sockaddr *)addr, alen, &fd);
    if (rc)
        return rc;
    rc = uv_tcp_open(tcp, fd);
    if (rc) {
        close(fd); /* not the handle's yet */
        errno = -rc;
        return CAIRN_EIO;
    }
    rc = uv_listen((uv_stream_t *)tcp, NET_LISTEN_BACKLOG, on_connection);
    if (rc) {
        errno = -rc;
        return CAIRN_EIO;
    }
    if (!*port) {
        /* The first socket on an ephemeral port: the others must bind to the one it got. */
        struct sockaddr_storage bound;
        int blen = sizeof(bound);

        rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&bound, &blen);
        if (rc) {
            errno = -rc;
            return CAIRN_EIO;
        }
        *port = get_port(&bound);
    }
    return 0;
}

static void on_reject_close(uv_handle_t *h)
{
    free(h);
}

int net_reject(uv_loop_t *loop, uv_stream_t *server)
{
    /* Accepting is the only way to take the connection off the backlog: a connection left
     * pending would make the listener fire again at once. */
    uv_tcp_t *t = malloc(sizeof(*t));

    if (!t)
        return CAIRN_ENOMEM;
    uv_tcp_init(loop, t);
    uv_accept(server, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_reject_close);
    return 0;
}

void net_peer_name(const uv_tcp_t *tcp, struct sockaddr_storage *peer, char str[NET_ADDR_STRLEN])
{
    struct sockaddr_storage local;
    int len = sizeof(*peer);
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (!peer)
        peer = &local;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)peer, &len) != 0)
        memset(peer, 0, sizeof(*peer));
    if (peer->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)peer)->sin6_addr, ip, sizeof(ip));
        snprintf(str, NET_ADDR_STRLEN, "[%s]:%u", ip, get_port(peer));
        return;
    }
    if (peer->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)peer)->sin_addr, ip, sizeof(ip));
        port = get_port(peer);
    }
    snprintf(str, NET_ADDR_STRLEN, "%s:%u", ip, port);
}

unsigned net_loop_count(unsigned requested)
{
    long ncpu;

    if (!requested) {
        ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        requested = ncpu > 0 ? (unsigned)ncpu : 1;
    }
    return CAIRN_MIN(requested, NET_MAX_LOOPS);
}

/* ---- the loop ---- */

static void on_async(uv_async_t *h)
{
    struct net_loop *nl = h->data;
    struct net_wake *list, *w;
    bool close_req, exit_req;

    pthread_mutex_lock(&nl->mu);
    list = nl->wake;
    nl->wake = NULL;
    close_req = nl->close;
    nl->close = false;
    exit_req = nl->exit;
    nl->exit = false;
    pthread_mutex_unlock(&nl->mu);
    while ((w = list)) {
        list = w->next;
        w->next = NULL;
        nl->ops->wake(nl, w);
    }
    if (close_req)
        nl->ops->close(nl);
    if (exit_req) { /* the owner's handles are closed: uv_run() returns once these are */
        uv_close((uv_handle_t *)&nl->async, NULL);
        uv_close((uv_handle_t *)&nl->sweep, NULL);
    }
}

static void on_sweep(uv_timer_t *t)
{
    struct net_loop *nl = t->data;

    nl->ops->sweep(nl);
}

int net_loop_init(struct net_loop *nl, const struct net_loop_ops *ops, uint64_t timeout_ms)
{
    uint64_t tick = CAIRN_MAX(SWEEP_MIN_MS, CAIRN_MIN(SWEEP_MAX_MS, timeout_ms / 4));

    assert(!nl->inited);
    if (uv_loop_init(&nl->loop))
        return CAIRN_ENOMEM;
    pthread_mutex_init(&nl->mu, NULL);
    nl->ops = ops;
    nl->wake = NULL;
    nl->close = false;
    nl->exit = false;
    nl->thread_started = false;
    uv_async_init(&nl->loop, &nl->async, on_async);
    nl->async.data = nl;
    uv_timer_init(&nl->loop, &nl->sweep);
    nl->sweep.data = nl;
    uv_timer_start(&nl->sweep, on_sweep, tick, tick);
    nl->inited = true;
    return 0;
}

static void *loop_main(void *arg)
{
    struct net_loop *nl = arg;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    uv_run(&nl->loop, UV_RUN_DEFAULT);
    return NULL;
}

int net_loop_start(struct net_loop *nl)
{
    assert(nl->inited && !nl->thread_started);
    if (pthread_create(&nl->thread, NULL, loop_main, nl))
        return CAIRN_ENOMEM;
    nl->thread_started = true;
    return 0;
}

bool net_loop_started(const struct net_loop *nl)
{
    return nl->thread_started;
}

void net_loop_wake(struct net_loop *nl, struct net_wake *w)
{
    pthread_mutex_lock(&nl->mu);
    w->next = nl->wake;
    nl->wake = w;
    pthread_mutex_unlock(&nl->mu);
    uv_async_send(&nl->async);
}

bool net_loop_close(struct net_loop *nl)
{
    if (!nl->thread_started)
        return false;
    pthread_mutex_lock(&nl->mu);
    nl->close = true;
    pthread_mutex_unlock(&nl->mu);
    uv_async_send(&nl->async);
    return true;
}

int net_loop_fini(struct net_loop *nl)
{
    int rc = 0;

    if (!nl || !nl->inited)
        return 0;
    if (nl->thread_started) {
        pthread_mutex_lock(&nl->mu);
        nl->exit = true;
        pthread_mutex_unlock(&nl->mu);
        uv_async_send(&nl->async);
        pthread_join(nl->thread, NULL);
        nl->thread_started = false;
    } else {
        uv_close((uv_handle_t *)&nl->async, NULL);
        uv_close((uv_handle_t *)&nl->sweep, NULL);
        uv_run(&nl->loop, UV_RUN_DEFAULT);
    }
    assert(!nl->wake);
    if (uv_loop_close(&nl->loop))
        rc = CAIRN_EIO;
    pthread_mutex_destroy(&nl->mu);
    nl->inited = false;
    return rc;
}
