/*
 * pool.c - the worker threads under the C-node's servers (see pool.h).
 *
 * One mutex guards the queue and the start and stop handshakes; workers sleep on one condvar
 * for work, start and stop on another for the workers.  One queue for all workers rather than
 * one per worker: handlers block for milliseconds on the D-nodes, so the contention on the
 * lock is noise, and a slow handler never holds up items queued behind it while another
 * worker is free.
 */
#include "cnode/net/pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/cairn.h"

struct pool_worker {
    struct net_pool *p;
    unsigned idx;
    pthread_t thread;
};

struct net_pool {
    const struct net_pool_ops *ops;
    void *arg;
    unsigned started;
    struct pool_worker *workers;

    pthread_mutex_t mu;
    pthread_cond_t qcv; /* workers wait for work or quit */
    pthread_cond_t scv; /* start waits for the inits */
    struct net_work *head, *tail;
    bool quit;
    unsigned inits_done, inits_failed;
};

/* Take the next item, or NULL when the worker should exit (p->mu held). */
static struct net_work *take_locked(struct net_pool *p)
{
    struct net_work *w;

    while (!p->head && !p->quit)
        pthread_cond_wait(&p->qcv, &p->mu);
    if (p->quit && (p->ops->drop || !p->head))
        return NULL;
    w = p->head;
    p->head = w->next;
    if (!p->head)
        p->tail = NULL;
    w->next = NULL;
    return w;
}

static void *worker_main(void *arg)
{
    struct pool_worker *pw = arg;
    struct net_pool *p = pw->p;
    struct net_work *w;
    void *ws = NULL;
    bool ok = true;

    if (p->ops->worker_init) {
        ws = p->ops->worker_init(p->arg, pw->idx);
        ok = ws != NULL;
    }
    pthread_mutex_lock(&p->mu);
    p->inits_done++;
    if (!ok)
        p->inits_failed++;
    pthread_cond_broadcast(&p->scv);
    if (!ok) {
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    while ((w = take_locked(p))) {
        pthread_mutex_unlock(&p->mu);
        p->ops->run(p->arg, ws, w);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    if (p->ops->worker_fini)
        p->ops->worker_fini(p->arg, ws);
    return NULL;
}

void net_pool_push(struct net_pool *p, struct net_work *w)
{
    w->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = w;
    else
        p->head = w;
    p->tail = w;
    pthread_cond_signal(&p->qcv);
    pthread_mutex_unlock(&p->mu);
}

void net_pool_stop(struct net_pool *p)
{
    struct net_work *w;

    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->qcv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->started; i++)
        pthread_join(p->workers[i].thread, NULL);
    /* Left only with a drop hook: without one the workers ran the queue empty. */
    while ((w = p->head)) {
        p->head = w->next;
        w->next = NULL;
        p->ops->drop(p->arg, w);
    }
    p->tail = NULL;
    pthread_cond_destroy(&p->scv);
    pthread_cond_destroy(&p->qcv);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int net_pool_start(unsigned workers, const struct net_pool_ops *ops, void *arg,
                   struct net_pool **out)
{
    struct net_pool *p;
    int rc = 0;

    if (!workers || !ops || !ops->run || !out)
        return CAIRN_EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return CAIRN_ENOMEM;
    p->workers = calloc(workers, sizeof(*p->workers));
    if (!p->workers) {
        free(p);
        return CAIRN_ENOMEM;
    }
    p->ops = ops;
    p->arg = arg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->qcv, NULL);
    pthread_cond_init(&p->scv, NULL);
    for (unsigned i = 0; i < workers; i++) {
        p->workers[i].p = p;
        p->workers[i].idx = i;
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i])) {
            rc = CAIRN_ENOMEM;
            break;
        }
        p->started++;
    }
    /* Every worker is ready, or has failed, before anything is queued: a server must not
     * take connections it might not serve. */
    pthread_mutex_lock(&p->mu);
    while (p->inits_done < p->started)
        pthread_cond_wait(&p->scv, &p->mu);
    if (p->inits_failed && !rc)
        rc = CAIRN_EIO;
    pthread_mutex_unlock(&p->mu);
    if (rc) {
        net_pool_stop(p);
        return rc;
    }
    *out = p;
    return 0;
}
