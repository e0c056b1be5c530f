/*
 * test_net.c - the C-node's network floor (cnode/net/): the worker pool on its own, then the
 * server and its connections over real loopback sockets.
 *
 * The server tests run a toy protocol.  Each read becomes a job for the workers, which answer
 * it upper-cased through the loop (net_conn_wake_locked() and net_conn_write()); a job whose
 * first byte is 'B' blocks its worker until the test releases it.  A read starting with a
 * command byte is answered on the loop instead: 'I' with the listener index and the peer
 * address, 'L' with "bye" followed by a linger, 'G' with more bytes than a client that does
 * not read can take.  Knobs in `T` (set before start) make the protocol set an idle timeout at
 * open, stop reading after a number of bytes, count bytes without answering, or handle EOF.
 * Counters record every hook call so a test can tell what net did.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cnode/net/conn.h"
#include "cnode/net/pool.h"
#include "cnode/net/server.h"
#include "common/cairn.h"

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Poll an atomic counter until it reaches want (false after ms). */
static bool wait_count(atomic_int *v, int want, unsigned ms)
{
    double end = now_ms() + ms;

    while (atomic_load(v) < want) {
        if (now_ms() > end)
            return false;
        sleep_ms(2);
    }
    return true;
}

/* ---- a gate that blocks workers until the test opens it ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static bool g_open;
static int g_waiting;

static void gate_wait(void)
{
    pthread_mutex_lock(&g_mu);
    g_waiting++;
    pthread_cond_broadcast(&g_cv);
    while (!g_open)
        pthread_cond_wait(&g_cv, &g_mu);
    g_waiting--;
    pthread_mutex_unlock(&g_mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&g_mu);
    g_open = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* Wait until n threads wait at the gate (fails after 5 s). */
static void gate_expect(int n)
{
    struct timespec dl;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&g_mu);
    while (g_waiting < n)
        if (pthread_cond_timedwait(&g_cv, &g_mu, &dl) == ETIMEDOUT)
            break;
    cr_assert_eq(g_waiting, n);
    pthread_mutex_unlock(&g_mu);
}

/* ==== the pool alone ==== */

struct p_item {
    struct net_work work;
    int id;
    bool block;
};

static atomic_int p_inits, p_finis, p_runs, p_drops, p_order_bad, p_ws_bad;
static atomic_int p_last = -1;
static int p_fail_worker = -1;

static void *p_init(void *arg, unsigned worker)
{
    (void)arg;
    atomic_fetch_add(&p_inits, 1);
    return (int)worker == p_fail_worker ? NULL : (void *)(uintptr_t)(worker + 1);
}

static void p_fini(void *arg, void *ws)
{
    (void)arg;
    if (!ws)
        atomic_fetch_add(&p_ws_bad, 1);
    atomic_fetch_add(&p_finis, 1);
}

static void p_run(void *arg, void *ws, struct net_work *w)
{
    struct p_item *it = NET_CONTAINER_OF(w, struct p_item, work);

    cr_assert_eq(arg, (void *)0x5151);
    if (!ws)
        atomic_fetch_add(&p_ws_bad, 1);
    if (it->block)
        gate_wait();
    /* one worker: items run in the order queued */
    if (atomic_exchange(&p_last, it->id) != it->id - 1)
        atomic_fetch_add(&p_order_bad, 1);
    atomic_fetch_add(&p_runs, 1);
}

static void p_drop(void *arg, struct net_work *w)
{
    (void)arg;
    (void)w;
    atomic_fetch_add(&p_drops, 1);
}

struct p_stopper {
    struct net_pool *p;
    pthread_t t;
    atomic_bool done;
};

static void *p_stop_main(void *arg)
{
    struct p_stopper *st = arg;

    net_pool_stop(st->p);
    atomic_store(&st->done, true);
    return NULL;
}

/* One worker held by item 0, items 1..n queued behind it, then a stop while it is held. */
static void pool_stop_with_queue(const struct net_pool_ops *ops, int n)
{
    struct p_item *items = calloc((size_t)n + 1, sizeof(*items));
    struct p_stopper st = {0};

    cr_assert_eq(net_pool_start(1, ops, (void *)0x5151, &st.p), 0);
    for (int i = 0; i <= n; i++) {
        items[i].id = i;
        items[i].block = i == 0;
        net_pool_push(st.p, &items[i].work);
    }
    gate_expect(1);
    cr_assert_eq(pthread_create(&st.t, NULL, p_stop_main, &st), 0);
    sleep_ms(100);
    cr_assert_not(atomic_load(&st.done), "stop waits for the item in hand");
    gate_open();
    pthread_join(st.t, NULL);
    cr_assert_eq(atomic_load(&p_finis), 1);
    free(items);
}

Test(net_pool, drain_runs_queued_work_in_order, .timeout = 30)
{
    const struct net_pool_ops ops = {.worker_init = p_init, .worker_fini = p_fini, .run = p_run};

    pool_stop_with_queue(&ops, 5);
    cr_assert_eq(atomic_load(&p_runs), 6);
    cr_assert_eq(atomic_load(&p_drops), 0);
    cr_assert_eq(atomic_load(&p_order_bad), 0);
    cr_assert_eq(atomic_load(&p_ws_bad), 0);
}

Test(net_pool, drop_policy_drops_queued_work, .timeout = 30)
{
    const struct net_pool_ops ops = {
        .worker_init = p_init, .worker_fini = p_fini, .run = p_run, .drop = p_drop};

    pool_stop_with_queue(&ops, 5);
    cr_assert_eq(atomic_load(&p_runs), 1, "only the item in hand ran");
    cr_assert_eq(atomic_load(&p_drops), 5);
}

Test(net_pool, worker_init_failure_fails_start, .timeout = 30)
{
    const struct net_pool_ops ops = {.worker_init = p_init, .worker_fini = p_fini, .run = p_run};
    struct net_pool *p = (struct net_pool *)0x1;

    p_fail_worker = 2;
    cr_assert_eq(net_pool_start(4, &ops, NULL, &p), CAIRN_EIO);
    cr_assert_eq(p, (struct net_pool *)0x1, "*out untouched");
    cr_assert_eq(atomic_load(&p_inits), 4);
    cr_assert_eq(atomic_load(&p_finis), 3, "the workers that started were stopped");
    cr_assert_eq(atomic_load(&p_ws_bad), 0);
    cr_assert_eq(net_pool_start(0, &ops, NULL, &p), CAIRN_EINVAL);
    net_pool_stop(NULL);
}

Test(net_pool, many_workers_share_the_queue, .timeout = 30)
{
    enum { N = 200 };
    const struct net_pool_ops ops = {.worker_init = p_init, .worker_fini = p_fini, .run = p_run};
    static struct p_item items[N];
    struct net_pool *p;

    cr_assert_eq(net_pool_start(8, &ops, (void *)0x5151, &p), 0);
    cr_assert_eq(atomic_load(&p_inits), 8, "start returns after every worker_init");
    for (int i = 0; i < N; i++)
        net_pool_push(p, &items[i].work);
    cr_assert(wait_count(&p_runs, N, 5000));
    net_pool_stop(p);
    cr_assert_eq(atomic_load(&p_finis), 8);
    cr_assert_eq(atomic_load(&p_ws_bad), 0);
}

/* ==== the server, with a toy protocol ==== */

static struct {
    uint64_t idle_ms;   /* net_conn_set_timeout() at open */
    size_t pause_at;    /* stop reading once this many bytes came (until resumed) */
    bool sink;          /* count bytes, answer nothing */
    bool eof_hook;      /* handle EOF: answer "EOF" and close after it */
    bool drop_hook;     /* the pool drops queued jobs at stop */
    bool keep_last;     /* keep a reference on the last connection opened (t_last) */
    int fail_worker;    /* this worker's init fails (-1: none) */
    unsigned max_conns; /* 0: 64 */
    uint64_t send_ms;
    bool per_conn;
} T = {.fail_worker = -1};

static atomic_int n_open, n_close, n_free, n_run, n_drop, n_init, n_fini, n_eof, n_write_err;
static atomic_int n_rx; /* bytes given to the read hook */
static pthread_mutex_t t_mu = PTHREAD_MUTEX_INITIALIZER;
static struct net_conn *t_last;

struct t_job {
    struct net_work work;
    struct net_write nw;
    struct t_conn *c;
    struct t_job *next;
    size_t len;
    char data[];
};

struct t_conn {
    struct net_conn *nc;
    size_t got;
    bool resumed;
    /* under the connection's lock */
    bool resume;
    struct t_job *done_head, *done_tail;
};

/* A write from the loop itself: the bytes follow. */
struct t_out {
    struct net_write nw;
    bool close_after;
    char data[];
};

static void job_free(struct t_job *j)
{
    struct net_conn *nc = j->c->nc;

    free(j);
    net_conn_unref(nc);
}

static void out_done(struct net_write *w, int status)
{
    struct t_out *o = NET_CONTAINER_OF(w, struct t_out, nw);

    if (status < 0)
        atomic_fetch_add(&n_write_err, 1);
    else if (o->close_after)
        net_conn_close(w->c);
    free(o);
}

static void send_loop(struct net_conn *nc, const void *data, size_t len, bool close_after)
{
    struct t_out *o = malloc(sizeof(*o) + len);
    uv_buf_t b = uv_buf_init(o->data, (unsigned)len);

    memcpy(o->data, data, len);
    o->close_after = close_after;
    net_conn_write(nc, &o->nw, &b, 1, out_done);
}

static int t_open(struct net_conn *nc, void *arg)
{
    struct t_conn *c = net_conn_data(nc);

    cr_assert_eq(arg, (void *)0xc0);
    cr_assert_eq(c->got, 0, "the data area starts zeroed");
    c->nc = nc;
    if (T.idle_ms)
        net_conn_set_timeout(nc, T.idle_ms);
    if (T.keep_last) {
        net_conn_ref(nc);
        pthread_mutex_lock(&t_mu);
        cr_assert_null(t_last);
        t_last = nc;
        pthread_mutex_unlock(&t_mu);
    }
    atomic_fetch_add(&n_open, 1);
    return 0;
}

static void t_read(struct net_conn *nc, const char *data, size_t len)
{
    struct t_conn *c = net_conn_data(nc);
    struct t_job *j;
    char text[128];

    c->got += len;
    atomic_fetch_add(&n_rx, (int)len);
    if (T.sink) {
        if (T.pause_at && c->got >= T.pause_at && !c->resumed)
            net_conn_read(nc, false);
        return;
    }
    switch (data[0]) {
    case 'I':
        snprintf(text, sizeof(text), "%u %s", net_conn_listener(nc), net_conn_peer_str(nc));
        send_loop(nc, text, strlen(text), false);
        return;
    case 'L':
        send_loop(nc, "bye", 3, false);
        net_conn_linger(nc, 500);
        return;
    case 'G': {
        size_t big = 32u << 20;
        char *junk = calloc(1, big);

        send_loop(nc, junk, big, false);
        free(junk);
        return;
    }
    default:
        break;
    }
    j = malloc(sizeof(*j) + len);
    j->c = c;
    j->len = len;
    memcpy(j->data, data, len);
    net_conn_ref(nc); /* the job's */
    net_conn_queue(nc, &j->work);
}

static void job_written(struct net_write *w, int status)
{
    if (status < 0)
        atomic_fetch_add(&n_write_err, 1);
    job_free(NET_CONTAINER_OF(w, struct t_job, nw));
}

static void t_wake(struct net_conn *nc)
{
    struct t_conn *c = net_conn_data(nc);
    struct t_job *list, *j;
    bool resume;

    net_conn_lock(nc);
    list = c->done_head;
    c->done_head = c->done_tail = NULL;
    resume = c->resume;
    c->resume = false;
    net_conn_unlock(nc);
    if (resume) {
        c->resumed = true;
        net_conn_read(nc, true);
    }
    while ((j = list)) {
        uv_buf_t b = uv_buf_init(j->data, (unsigned)j->len);

        list = j->next;
        net_conn_write(nc, &j->nw, &b, 1, job_written);
    }
}

static void t_eof(struct net_conn *nc)
{
    atomic_fetch_add(&n_eof, 1);
    send_loop(nc, "EOF", 3, true);
}

static void t_close(struct net_conn *nc)
{
    struct t_conn *c = net_conn_data(nc);
    struct t_job *list, *j;

    net_conn_lock(nc);
    list = c->done_head;
    c->done_head = c->done_tail = NULL;
    net_conn_unlock(nc);
    while ((j = list)) {
        list = j->next;
        job_free(j);
    }
    atomic_fetch_add(&n_close, 1);
}

static void t_free(struct net_conn *nc)
{
    struct t_conn *c = net_conn_data(nc);

    cr_assert_null(c->done_head);
    atomic_fetch_add(&n_free, 1);
}

static void *t_winit(void *arg, unsigned worker)
{
    (void)arg;
    atomic_fetch_add(&n_init, 1);
    return (int)worker == T.fail_worker ? NULL : (void *)0x77;
}

static void t_wfini(void *arg, void *ws)
{
    (void)arg;
    cr_assert_eq(ws, (void *)0x77);
    atomic_fetch_add(&n_fini, 1);
}

static void t_run(void *arg, void *ws, struct net_work *w)
{
    struct t_job *j = NET_CONTAINER_OF(w, struct t_job, work);
    struct net_conn *nc = j->c->nc;

    cr_assert_eq(arg, (void *)0xb0);
    cr_assert_eq(ws, (void *)0x77);
    atomic_fetch_add(&n_run, 1);
    if (j->data[0] == 'B')
        gate_wait();
    for (size_t i = 0; i < j->len; i++)
        j->data[i] = (char)toupper((unsigned char)j->data[i]);
    j->next = NULL;
    net_conn_lock(nc);
    if (net_conn_closed(nc)) {
        net_conn_unlock(nc);
        job_free(j);
        return;
    }
    if (j->c->done_tail)
        j->c->done_tail->next = j;
    else
        j->c->done_head = j;
    j->c->done_tail = j;
    net_conn_wake_locked(nc);
    net_conn_unlock(nc);
}

static void t_drop(void *arg, struct net_work *w)
{
    (void)arg;
    atomic_fetch_add(&n_drop, 1);
    job_free(NET_CONTAINER_OF(w, struct t_job, work));
}

static struct net_conn_ops t_conn_ops = {
    .size = sizeof(struct t_conn),
    .open = t_open,
    .read = t_read,
    .wake = t_wake,
    .close = t_close,
    .free = t_free,
};

static struct net_pool_ops t_pool_ops = {
    .worker_init = t_winit, .worker_fini = t_wfini, .run = t_run};

static struct net_server_config t_cfg(void)
{
    struct net_server_config cfg = {
        .host = "127.0.0.1",
        .nports = 1,
        .loops = 2,
        .workers = 2,
        .max_conns = T.max_conns ? T.max_conns : 64,
        .tick_ms = 200,
        .send_ms = T.send_ms,
        .read_size = 64u << 10,
        .read_per_conn = T.per_conn,
        .log_tag = "test_net",
    };

    return cfg;
}

static int t_try_start(const struct net_server_config *cfg, struct net_server **s)
{
    t_conn_ops.eof = T.eof_hook ? t_eof : NULL;
    t_pool_ops.drop = T.drop_hook ? t_drop : NULL;
    return net_server_start(cfg, &t_conn_ops, (void *)0xc0, &t_pool_ops, (void *)0xb0, s);
}

static struct net_server *t_start(void)
{
    struct net_server_config cfg = t_cfg();
    struct net_server *s = NULL;
    int rc = t_try_start(&cfg, &s);

    cr_assert_eq(rc, 0, "net_server_start: %s", cairn_strerror(rc));
    cr_assert_neq(net_server_port(s, 0), 0);
    return s;
}

/* Stop, and check that every connection opened was closed and freed. */
static void t_stop(struct net_server *s)
{
    net_server_stop(s);
    cr_assert_eq(atomic_load(&n_close), atomic_load(&n_open));
    cr_assert_eq(atomic_load(&n_free), atomic_load(&n_open));
}

static int t_connect(unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 10};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    cr_assert_geq(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void t_send(int fd, const char *text)
{
    size_t len = strlen(text);

    cr_assert_eq(send(fd, text, len, MSG_NOSIGNAL), (ssize_t)len, "send: %s", strerror(errno));
}

/* Receive exactly strlen(want) bytes and compare. */
static void t_expect(int fd, const char *want)
{
    char buf[256];
    size_t len = strlen(want), got = 0;

    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);

        cr_assert_gt(n, 0, "connection ended after %zu of \"%s\"", got, want);
        got += (size_t)n;
    }
    cr_assert_arr_eq(buf, want, len, "got \"%.*s\", want \"%s\"", (int)len, buf, want);
}

/* The server closed the connection: EOF or reset within the receive timeout. */
static void t_expect_closed(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, 0);

    cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "connection still open (%zd, %s)", n,
              n < 0 ? strerror(errno) : "data");
}

Test(net_server, echo_through_the_workers, .timeout = 30)
{
    struct net_server *s;
    struct sockaddr_in me;
    socklen_t mlen = sizeof(me);
    char want[64];
    int fd;

    s = t_start();
    cr_assert_eq(atomic_load(&n_init), 2, "the workers are ready when start returns");
    fd = t_connect(net_server_port(s, 0));
    t_send(fd, "hello");
    t_expect(fd, "HELLO");
    t_send(fd, "again");
    t_expect(fd, "AGAIN");
    getsockname(fd, (struct sockaddr *)&me, &mlen);
    snprintf(want, sizeof(want), "0 127.0.0.1:%u", ntohs(me.sin_port));
    t_send(fd, "I");
    t_expect(fd, want);
    close(fd);
    cr_assert(wait_count(&n_close, 1, 5000), "the client's close closes the connection");
    cr_assert(wait_count(&n_free, 1, 5000));
    t_stop(s);
    cr_assert_eq(atomic_load(&n_fini), 2);
}

Test(net_server, per_connection_read_buffer, .timeout = 30)
{
    struct net_server *s;
    int a, b;

    T.per_conn = true;
    s = t_start();
    a = t_connect(net_server_port(s, 0));
    b = t_connect(net_server_port(s, 0));
    t_send(a, "first");
    t_send(b, "second");
    t_expect(b, "SECOND");
    t_expect(a, "FIRST");
    close(a);
    close(b);
    t_stop(s);
}

Test(net_server, config_errors, .timeout = 30)
{
    struct net_server_config cfg = t_cfg();
    struct net_server *s = NULL;

    cfg.nports = 0;
    cr_assert_eq(t_try_start(&cfg, &s), CAIRN_EINVAL);
    cfg.nports = NET_MAX_PORTS + 1;
    cr_assert_eq(t_try_start(&cfg, &s), CAIRN_EINVAL);
    cfg = t_cfg();
    cfg.ports[0] = 70000;
    cr_assert_eq(t_try_start(&cfg, &s), CAIRN_EINVAL);
    cfg = t_cfg();
    cfg.workers = 0;
    cr_assert_eq(t_try_start(&cfg, &s), CAIRN_EINVAL);
    cfg = t_cfg();
    cfg.host = "not an address";
    cr_assert_eq(t_try_start(&cfg, &s), CAIRN_EINVAL);
    cr_assert_null(s);
    cr_assert_eq(atomic_load(&n_init), 0);
    net_server_stop(NULL);
}

Test(net_server, worker_init_failure_fails_start, .timeout = 30)
{
    struct net_server_config cfg = t_cfg();
    struct net_server *s = NULL;
    int fd;
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof(a);

    cfg.workers = 4;
    T.fail_worker = 3;
    cr_assert_eq(t_try_start(&cfg, &s), CAIRN_EIO);
    cr_assert_null(s);
    cr_assert_eq(atomic_load(&n_init), 4);
    cr_assert_eq(atomic_load(&n_fini), 3);

    /* A port held without SO_REUSEPORT fails the bind, before any worker starts. */
    T.fail_worker = -1;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 4), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    cfg.ports[0] = ntohs(a.sin_port);
    cr_assert_eq(t_try_start(&cfg, &s), CAIRN_EIO);
    cr_assert_eq(errno, EADDRINUSE);
    cr_assert_eq(atomic_load(&n_init), 4, "no worker started for a failed bind");
    close(fd);
}

Test(net_server, two_ports_and_listener_index, .timeout = 30)
{
    struct net_server_config cfg = t_cfg();
    struct net_server *s = NULL;
    char want[64];

    cfg.nports = 2;
    cfg.loops = 3;
    cr_assert_eq(t_try_start(&cfg, &s), 0);
    cr_assert_neq(net_server_port(s, 0), 0);
    cr_assert_neq(net_server_port(s, 1), 0);
    cr_assert_neq(net_server_port(s, 0), net_server_port(s, 1));
    cr_assert_eq(net_server_port(s, 2), 0);
    for (int i = 0; i < 6; i++) { /* connections land on different loops */
        for (unsigned l = 0; l < 2; l++) {
            int fd = t_connect(net_server_port(s, l));
            char buf[64];
            ssize_t n;

            t_send(fd, "I");
            n = recv(fd, buf, sizeof(buf) - 1, 0);
            cr_assert_gt(n, 0);
            buf[n] = 0;
            snprintf(want, sizeof(want), "%u 127.0.0.1:", l);
            cr_assert(!strncmp(buf, want, strlen(want)), "listener %u answered %s", l, buf);
            close(fd);
        }
    }
    t_stop(s);
}

Test(net_server, accept_beyond_max_connections_is_closed, .timeout = 30)
{
    struct net_server *s;
    int a, b, c;

    T.max_conns = 2;
    s = t_start();
    a = t_connect(net_server_port(s, 0));
    b = t_connect(net_server_port(s, 0));
    t_send(a, "a");
    t_send(b, "b");
    t_expect(a, "A");
    t_expect(b, "B");
    c = t_connect(net_server_port(s, 0)); /* the kernel accepts it; the server closes it */
    t_expect_closed(c);
    close(c);
    cr_assert_eq(atomic_load(&n_open), 2, "an over-limit connection is never opened");
    close(a);
    cr_assert(wait_count(&n_close, 1, 5000));
    cr_assert(wait_count(&n_free, 1, 5000)); /* its slot is free once it is gone */
    c = t_connect(net_server_port(s, 0));
    t_send(c, "c");
    t_expect(c, "C");
    close(b);
    close(c);
    t_stop(s);
}

Test(net_server, idle_connection_swept_after_timeout, .timeout = 30)
{
    struct net_server *s;
    double t0, ms;
    int idle, busy;

    T.idle_ms = 300;
    s = t_start();
    busy = t_connect(net_server_port(s, 0));
    idle = t_connect(net_server_port(s, 0));
    t0 = now_ms();
    t_expect_closed(idle);
    ms = now_ms() - t0;
    /* the sweep runs every tick_ms / 4: a connection overstays by a quarter at most */
    cr_assert(ms >= 250 && ms < 1500, "closed after %.0f ms", ms);
    close(idle);
    /* the busy one went the same way: the protocol never renewed its timeout */
    t_expect_closed(busy);
    close(busy);
    cr_assert(wait_count(&n_close, 2, 5000));
    t_stop(s);
}

Test(net_server, backpressure_stops_reading, .timeout = 60)
{
    enum { PAUSE = 64 << 10 };
    static char chunk[64 << 10];
    struct net_server *s;
    struct net_conn *nc;
    struct pollfd pfd;
    size_t sent = 0;
    int fd, rx;

    T.sink = true;
    T.pause_at = PAUSE;
    T.keep_last = true;
    s = t_start();
    fd = t_connect(net_server_port(s, 0));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    /* The server stops reading at PAUSE bytes: the socket buffers fill and sends block. */
    for (;;) {
        ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);

        if (n < 0) {
            cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "send: %s", strerror(errno));
            break;
        }
        sent += (size_t)n;
        cr_assert_lt(sent, 256u << 20, "the server kept reading");
    }
    sleep_ms(300);
    rx = atomic_load(&n_rx);
    cr_assert_geq(rx, PAUSE);
    cr_assert_lt((size_t)rx, sent, "the server read everything");
    pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
    cr_assert_eq(poll(&pfd, 1, 300), 0, "the server read more while paused");
    cr_assert_eq(atomic_load(&n_rx), rx);

    /* Another thread wakes the loop, which reads on: the rest arrives. */
    pthread_mutex_lock(&t_mu);
    nc = t_last;
    pthread_mutex_unlock(&t_mu);
    cr_assert_not_null(nc);
    net_conn_lock(nc);
    ((struct t_conn *)net_conn_data(nc))->resume = true;
    net_conn_wake_locked(nc);
    net_conn_unlock(nc);
    cr_assert(wait_count(&n_rx, (int)sent, 5000), "only %d of %zu bytes read after resuming",
              atomic_load(&n_rx), sent);

    /* The test's reference keeps the connection after it closed; the last one frees it. */
    close(fd);
    cr_assert(wait_count(&n_close, 1, 5000));
    sleep_ms(50);
    cr_assert_eq(atomic_load(&n_free), 0, "freed while a reference was held");
    net_conn_unref(nc);
    cr_assert_eq(atomic_load(&n_free), 1);
    t_stop(s);
}

Test(net_server, send_without_progress_closes, .timeout = 30)
{
    struct net_server *s;
    double t0, ms;
    int fd, small = 4096;

    T.send_ms = 300;
    s = t_start();
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    close(fd);
    fd = t_connect(net_server_port(s, 0));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    t_send(fd, "G"); /* 32 MiB back, which this client never reads */
    t0 = now_ms();
    cr_assert(wait_count(&n_close, 1, 5000), "a write that made no progress kept its connection");
    ms = now_ms() - t0;
    cr_assert(ms >= 250, "closed after %.0f ms", ms);
    cr_assert(wait_count(&n_write_err, 1, 5000), "the write completes with an error");
    close(fd);
    t_stop(s);
}

Test(net_server, linger_sends_fin_then_drains, .timeout = 30)
{
    struct net_server *s;
    double t0;
    char buf[16];
    int fd, rx;

    s = t_start();
    fd = t_connect(net_server_port(s, 0));
    t_send(fd, "L");
    t_expect(fd, "bye");
    t0 = now_ms();
    cr_assert_eq(recv(fd, buf, sizeof(buf), 0), 0, "FIN after the answer");
    rx = atomic_load(&n_rx);
    /* The server still reads (and drops) what the client sends: no reset. */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(send(fd, "more", 4, MSG_NOSIGNAL), 4, "send: %s", strerror(errno));
        sleep_ms(20);
    }
    cr_assert_eq(atomic_load(&n_rx), rx, "input while lingering reached the protocol");
    cr_assert_eq(atomic_load(&n_close), 0);
    cr_assert(wait_count(&n_close, 1, 5000));
    cr_assert(now_ms() - t0 >= 350, "the linger ended after %.0f ms", now_ms() - t0);
    close(fd);
    t_stop(s);
}

Test(net_server, eof_hook_answers_after_half_close, .timeout = 30)
{
    struct net_server *s;
    int fd;

    T.eof_hook = true;
    s = t_start();
    fd = t_connect(net_server_port(s, 0));
    t_send(fd, "x");
    t_expect(fd, "X");
    shutdown(fd, SHUT_WR);
    t_expect(fd, "EOF");
    t_expect_closed(fd);
    cr_assert_eq(atomic_load(&n_eof), 1);
    close(fd);
    t_stop(s);
}

Test(net_server, eof_without_hook_closes, .timeout = 30)
{
    struct net_server *s;
    int fd;

    s = t_start();
    fd = t_connect(net_server_port(s, 0));
    t_send(fd, "x");
    t_expect(fd, "X");
    shutdown(fd, SHUT_WR);
    t_expect_closed(fd);
    cr_assert(wait_count(&n_close, 1, 5000));
    cr_assert_eq(atomic_load(&n_eof), 0);
    close(fd);
    t_stop(s);
}

struct t_stopper {
    struct net_server *s;
    pthread_t t;
    atomic_bool done;
};

static void *t_stop_main(void *arg)
{
    struct t_stopper *st = arg;

    net_server_stop(st->s);
    atomic_store(&st->done, true);
    return NULL;
}

/* Both workers held by 'B' jobs, more jobs queued on another connection, then a stop. */
static void stop_with_work_in_flight(void)
{
    struct t_stopper st = {0};
    int a, b, idle;

    st.s = t_start();
    a = t_connect(net_server_port(st.s, 0));
    b = t_connect(net_server_port(st.s, 0));
    idle = t_connect(net_server_port(st.s, 0));
    t_send(a, "B1");
    t_send(b, "B2");
    gate_expect(2);
    for (int i = 0; i < 5; i++) { /* separate reads, separate jobs: all queued */
        t_send(a, "queued");
        sleep_ms(20);
    }
    cr_assert(wait_count(&n_open, 3, 5000));
    cr_assert_eq(pthread_create(&st.t, NULL, t_stop_main, &st), 0);
    /* connections close at once, while the handlers still run */
    t_expect_closed(a);
    t_expect_closed(b);
    t_expect_closed(idle);
    sleep_ms(50);
    cr_assert_not(atomic_load(&st.done), "stop waits for the work in hand");
    gate_open();
    pthread_join(st.t, NULL);
    cr_assert_eq(atomic_load(&n_close), 3);
    cr_assert_eq(atomic_load(&n_free), 3, "every job's reference was dropped");
    cr_assert_eq(atomic_load(&n_fini), 2);
    close(a);
    close(b);
    close(idle);
}

Test(net_server, stop_with_work_in_flight_drops_the_queue, .timeout = 30)
{
    T.drop_hook = true;
    stop_with_work_in_flight();
    cr_assert_eq(atomic_load(&n_run), 2, "queued jobs ran");
    cr_assert_geq(atomic_load(&n_drop), 1);
}

Test(net_server, stop_with_work_in_flight_drains_the_queue, .timeout = 30)
{
    stop_with_work_in_flight();
    cr_assert_geq(atomic_load(&n_run), 3, "queued jobs did not run");
    cr_assert_eq(atomic_load(&n_drop), 0);
}
