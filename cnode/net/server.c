/*
 * server.c - the loops, listeners and worker pool of a C-node server, and the order they
 * start and stop in (see server.h).
 *
 * Start binds every listener before any thread runs, so a port in use fails the start with
 * nothing to undo but sockets; the workers start next and are all ready (worker_init done)
 * before a loop accepts, so no connection is taken that could not be served.
 *
 * Stop is three steps because each waits for the one before.  1: every loop closes its
 * listeners and connections on its own thread (net_loop_close()); stop waits until all have,
 * and from then on no connection queues work or is woken.  2: the pool finishes or drops its
 * queue and joins its workers; handlers blocked on a closed connection return.  3: nothing can
 * wake a loop any more, so the loops close their own handles and their threads are joined.
 * A loop whose thread never started (a failed start) had no step 1: its listeners are closed
 * in step 3 by this thread.
 */
#include "cnode/net/server.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/net/internal.h"
#include "common/cairn.h"
#include "common/log.h"

/* ---- the loop's hooks (loop thread) ---- */

static void on_connection(uv_stream_t *server, int status)
{
    struct net_listener *l = server->data;
    struct net_srv_loop *lp = l->lp;
    struct net_server *s = lp->s;

    if (status < 0) {
        log_warn(s->tag, "accept: %s", uv_strerror(status));
        return;
    }
    if (atomic_load(&s->stopping))
        goto reject;
    if (atomic_fetch_add(&s->nconns, 1) >= s->max_conns) {
        atomic_fetch_sub(&s->nconns, 1);
        log_debug(s->tag, "refusing a connection (limit %u)", s->max_conns);
        goto reject;
    }
    if (net_conn_accept(lp, l) == 0)
        return;
    atomic_fetch_sub(&s->nconns, 1);
reject:
    /* Accept and close at once: a connection left pending would fire this again. */
    if (net_reject(&lp->nl.loop, server))
        log_error(s->tag, "out of memory refusing a connection");
}

static void loop_sweep(struct net_loop *nl)
{
    struct net_srv_loop *lp = NET_CONTAINER_OF(nl, struct net_srv_loop, nl);
    uint64_t now = uv_now(&nl->loop);
    struct net_conn *c, *next;

    /* A closed connection stays on the list until its close callback: skip it. */
    for (c = lp->conns; c; c = next) {
        next = c->next;
        if (!c->closed)
            net_conn_sweep(c, now);
    }
}

static void close_listeners(struct net_server *s, struct net_srv_loop *lp)
{
    for (unsigned i = 0; i < s->nports; i++) {
        uv_handle_t *h = (uv_handle_t *)&lp->listeners[i].tcp;

        if (lp->listeners[i].inited && !uv_is_closing(h))
            uv_close(h, NULL);
    }
}

/* Step 1 of stopping: no more connections, and those open are closed. */
static void loop_close_all(struct net_loop *nl)
{
    struct net_srv_loop *lp = NET_CONTAINER_OF(nl, struct net_srv_loop, nl);
    struct net_server *s = lp->s;
    struct net_conn *c, *next;

    close_listeners(s, lp);
    for (c = lp->conns; c; c = next) {
        next = c->next;
        net_conn_close(c);
    }
    pthread_mutex_lock(&s->mu);
    s->loops_closed++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void loop_wake(struct net_loop *nl, struct net_wake *w)
{
    (void)nl;
    net_conn_woken(NET_CONTAINER_OF(w, struct net_conn, wake));
}

static const struct net_loop_ops loop_ops = {
    .wake = loop_wake,
    .sweep = loop_sweep,
    .close = loop_close_all,
};

/* ---- start and stop ---- */

static int loop_init(struct net_server *s, struct net_srv_loop *lp, const char *host,
                     struct sockaddr_storage *addr, socklen_t alen, uint64_t tick_ms)
{
    int rc;

    lp->s = s;
    if (!s->read_per_conn) {
        lp->rbuf = malloc(s->read_size);
        if (!lp->rbuf)
            return CAIRN_ENOMEM;
    }
    rc = net_loop_init(&lp->nl, &loop_ops, tick_ms);
    if (rc)
        return rc;
    for (unsigned i = 0; i < s->nports; i++) {
        struct net_listener *l = &lp->listeners[i];

        uv_tcp_init(&lp->nl.loop, &l->tcp);
        l->tcp.data = l;
        l->lp = lp;
        l->idx = i;
        l->inited = true;
        /* Port 0: the first loop's socket picks it, the others bind to the same one. */
        rc = net_listen(&l->tcp, addr, alen, &s->ports[i], on_connection);
        if (rc) {
            log_error(s->tag, "listen on %s:%u: %s", host && *host ? host : "*", s->ports[i],
                      rc == CAIRN_EIO ? strerror(errno) : cairn_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static void server_teardown(struct net_server *s)
{
    unsigned started = 0;

    atomic_store(&s->stopping, true);
    /* 1 */
    for (unsigned i = 0; i < s->nloops; i++)
        if (net_loop_close(&s->loops[i].nl))
            started++;
    pthread_mutex_lock(&s->mu);
    while (s->loops_closed < started)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    /* 2 */
    net_pool_stop(s->pool);
    s->pool = NULL;
    /* 3 */
    for (unsigned i = 0; i < s->nloops; i++) {
        struct net_srv_loop *lp = &s->loops[i];

        if (!net_loop_started(&lp->nl))
            close_listeners(s, lp);
        if (net_loop_fini(&lp->nl))
            log_error(s->tag, "loop %u: handles left open at stop", i);
        assert(!lp->conns);
        free(lp->rbuf);
    }
    assert(atomic_load(&s->nconns) == 0);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->loops);
    free(s);
}

static bool config_ok(const struct net_server_config *cfg, const struct net_conn_ops *conn_ops,
                      const struct net_pool_ops *pool_ops)
{
    if (!cfg || !conn_ops || !conn_ops->open || !conn_ops->read || !conn_ops->wake || !pool_ops ||
        !pool_ops->run)
        return false;
    if (!cfg->nports || cfg->nports > NET_MAX_PORTS || !cfg->workers || !cfg->max_conns ||
        !cfg->read_size || cfg->read_size > UINT32_MAX)
        return false;
    for (unsigned i = 0; i < cfg->nports; i++)
        if (cfg->ports[i] > 65535)
            return false;
    return true;
}

int net_server_start(const struct net_server_config *cfg, const struct net_conn_ops *conn_ops,
                     void *conn_arg, const struct net_pool_ops *pool_ops, void *pool_arg,
                     struct net_server **out)
{
    struct sockaddr_storage addr;
    socklen_t alen;
    struct net_server *s;
    int rc, saved_errno;

    if (!out || !config_ok(cfg, conn_ops, pool_ops))
        return CAIRN_EINVAL;
    rc = net_resolve(cfg->host, 0, &addr, &alen); /* each listener sets its port */
    if (rc)
        return rc;
    s = calloc(1, sizeof(*s));
    if (!s)
        return CAIRN_ENOMEM;
    s->ops = conn_ops;
    s->arg = conn_arg;
    s->tag = cfg->log_tag ? cfg->log_tag : "net";
    s->nports = cfg->nports;
    memcpy(s->ports, cfg->ports, sizeof(s->ports));
    s->max_conns = cfg->max_conns;
    s->send_ms = cfg->send_ms;
    s->read_size = cfg->read_size;
    s->read_per_conn = cfg->read_per_conn;
    s->nloops = net_loop_count(cfg->loops);
    atomic_init(&s->nconns, 0);
    atomic_init(&s->stopping, false);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->loops = calloc(s->nloops, sizeof(*s->loops));
    if (!s->loops) {
        rc = CAIRN_ENOMEM;
        goto err;
    }
    for (unsigned i = 0; i < s->nloops; i++) {
        rc = loop_init(s, &s->loops[i], cfg->host, &addr, alen, cfg->tick_ms);
        if (rc)
            goto err;
    }
    rc = net_pool_start(cfg->workers, pool_ops, pool_arg, &s->pool);
    if (rc)
        goto err;
    for (unsigned i = 0; i < s->nloops; i++) {
        rc = net_loop_start(&s->loops[i].nl);
        if (rc)
            goto err;
    }
    for (unsigned i = 0; i < s->nports; i++)
        log_info(s->tag, "listening on %s:%u (%u loops, %u workers)",
                 cfg->host && *cfg->host ? cfg->host : "*", s->ports[i], s->nloops, cfg->workers);
    *out = s;
    return 0;

err:
    saved_errno = errno; /* bind's, for the caller */
    server_teardown(s);
    errno = saved_errno;
    return rc;
}

unsigned net_server_port(const struct net_server *s, unsigned i)
{
    return i < s->nports ? s->ports[i] : 0;
}

void net_server_stop(struct net_server *s)
{
    if (s)
        server_teardown(s);
}
