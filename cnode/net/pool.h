/*
 * pool.h - the worker threads of a C-node server: the threads that run the blocking handlers
 * (the stripe client and the metadata layer wait on the D-nodes) so the loops never block.
 *
 * Each worker has its own state, made on its own thread before it takes work (worker_init:
 * e.g. a cluster view, so no cluster state is shared between threads) and freed there when it
 * exits.  Work items are links embedded in the owner's objects, queued in FIFO order and taken
 * by whichever worker is free.
 *
 * Stopping has two policies, because the servers need both: without a drop hook the workers
 * run everything still queued before they exit (an HTTP request whose client is gone fails
 * fast in its handler); with one they exit after the item in hand and the queued items go to
 * drop (RPC calls are freed without running, sparing the D-nodes the work).
 */
#ifndef CAIRN_CN_NET_POOL_H
#define CAIRN_CN_NET_POOL_H

/* A queue link, embedded in the owner's work item. */
struct net_work {
    struct net_work *next;
};

struct net_pool;

struct net_pool_ops {
    /* On the worker's thread before it takes work: its state.  NULL fails net_pool_start()
     * with CAIRN_EIO.  May be NULL: every worker's state is NULL. */
    void *(*worker_init)(void *arg, unsigned worker);
    /* On the worker's thread as it exits, for a worker whose init succeeded.  May be NULL. */
    void (*worker_fini)(void *arg, void *wstate);
    /* Run one item on a worker thread (may block). */
    void (*run)(void *arg, void *wstate, struct net_work *w);
    /* At stop, for each item never run (on the stopping thread).  May be NULL: queued items
     * are run before the workers exit. */
    void (*drop)(void *arg, struct net_work *w);
};

/* Start `workers` (> 0) threads and wait until each ran worker_init.  ops and arg are
 * borrowed until net_pool_stop().  Returns 0, CAIRN_EIO (a worker_init failed), CAIRN_EINVAL
 * or CAIRN_ENOMEM; on an error the threads that started are stopped (their worker_fini run)
 * and *out is untouched. */
int net_pool_start(unsigned workers, const struct net_pool_ops *ops, void *arg,
                   struct net_pool **out);

/* Queue w (not already queued; the pool owns the link until run or drop).  Any thread until
 * net_pool_stop() begins; after that only the pool's own workers (from run). */
void net_pool_push(struct net_pool *p, struct net_work *w);

/* Finish or drop the queued work (see above), wait for the item each worker holds, run
 * worker_fini on each worker, join them and free the pool.  Accepts NULL. */
void net_pool_stop(struct net_pool *p);

#endif
