/*
 * test_server.c - ONC RPC record marking (cnode/rpc/record.c) and the RPC server (cnode/rpc/server.c)
 * over real loopback sockets.
 *
 * The server tests use a toy protocol instead of RPC: a record is one command byte, a 32-bit
 * big-endian argument and a payload.  The handler answers with the listener index followed by
 * the record, after sleeping (S: arg ms) or blocking on a condvar until the test releases it
 * (B); C closes the connection, D drops the call, N returns without ending it, P answers the
 * peer address.  Zero-length records are dropped and counted.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
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

#include "cnode/rpc/rpc.h"
#include "cnode/rpc/server.h"
#include "common/cairn.h"

#define LAST 0x80000000u

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ==== record marking ==== */

/* Append a fragment (mark + bytes) to buf at *off. */
static void frag(uint8_t *buf, size_t *off, bool last, const void *data, size_t len)
{
    put_be32(buf + *off, (uint32_t)len | (last ? LAST : 0));
    if (len)
        memcpy(buf + *off + 4, data, len);
    *off += 4 + len;
}

static void take_expect(struct rpc_rm *rm, const char *want)
{
    size_t len = 99;
    uint8_t *rec = rpc_rm_take(rm, &len);

    cr_assert_eq(len, strlen(want));
    cr_assert_arr_eq(rec, want, len);
    free(rec);
}

Test(rpc_rm, single_fragment)
{
    struct rpc_rm rm;
    uint8_t in[64];
    size_t n = 0;
    bool complete = false;

    rpc_rm_init(&rm, 1024);
    frag(in, &n, true, "hello", 5);
    cr_assert_eq(rpc_rm_feed(&rm, in, n, &complete), (ssize_t)n);
    cr_assert(complete);
    take_expect(&rm, "hello");
    /* the reassembler is ready for the next record */
    n = 0;
    frag(in, &n, true, "again", 5);
    cr_assert_eq(rpc_rm_feed(&rm, in, n, &complete), (ssize_t)n);
    cr_assert(complete);
    take_expect(&rm, "again");
    rpc_rm_fini(&rm);
}

Test(rpc_rm, multi_fragment)
{
    struct rpc_rm rm;
    uint8_t in[64];
    size_t n = 0, a;
    bool complete = true;

    rpc_rm_init(&rm, 1024);
    frag(in, &n, false, "ab", 2);
    frag(in, &n, false, "", 0); /* empty middle fragments are legal */
    frag(in, &n, false, "cde", 3);
    a = n;
    frag(in, &n, true, "f", 1);
    cr_assert_eq(rpc_rm_feed(&rm, in, a, &complete), (ssize_t)a);
    cr_assert_not(complete);
    cr_assert_eq(rpc_rm_feed(&rm, in + a, n - a, &complete), (ssize_t)(n - a));
    cr_assert(complete);
    take_expect(&rm, "abcdef");
    rpc_rm_fini(&rm);
}

Test(rpc_rm, byte_by_byte)
{
    struct rpc_rm rm;
    uint8_t in[64];
    size_t n = 0;
    bool complete;

    rpc_rm_init(&rm, 1024);
    frag(in, &n, false, "split ", 6);
    frag(in, &n, true, "marks", 5);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(rpc_rm_feed(&rm, in + i, 1, &complete), 1);
        cr_assert_eq(complete, i == n - 1, "complete after byte %zu of %zu", i, n);
    }
    take_expect(&rm, "split marks");
    rpc_rm_fini(&rm);
}

Test(rpc_rm, two_records_in_one_feed)
{
    struct rpc_rm rm;
    uint8_t in[64];
    size_t n = 0, first;
    bool complete;
    ssize_t used;

    rpc_rm_init(&rm, 1024);
    frag(in, &n, true, "one", 3);
    first = n;
    frag(in, &n, false, "tw", 2);
    frag(in, &n, true, "o", 1);
    used = rpc_rm_feed(&rm, in, n, &complete);
    cr_assert_eq(used, (ssize_t)first, "stops right after the first record");
    cr_assert(complete);
    /* feeding before take consumes nothing */
    cr_assert_eq(rpc_rm_feed(&rm, in + used, n - (size_t)used, &complete), 0);
    cr_assert(complete);
    take_expect(&rm, "one");
    cr_assert_eq(rpc_rm_feed(&rm, in + used, n - (size_t)used, &complete),
                 (ssize_t)(n - (size_t)used));
    cr_assert(complete);
    take_expect(&rm, "two");
    rpc_rm_fini(&rm);
}

Test(rpc_rm, over_limit_mark)
{
    struct rpc_rm rm;
    uint8_t in[16];
    bool complete;

    /* A mark announcing 2 GiB fails at once, with nothing allocated. */
    rpc_rm_init(&rm, 1 << 20);
    put_be32(in, LAST | 0x7fffffffu);
    cr_assert_eq(rpc_rm_feed(&rm, in, 4, &complete), CAIRN_ETOOBIG);
    cr_assert_null(rm.buf);
    cr_assert_eq(rm.cap, 0);
    rpc_rm_fini(&rm);

    /* Split across feeds: the 4th byte of the mark is where it fails. */
    rpc_rm_init(&rm, 1 << 20);
    put_be32(in, (1u << 20) + 1);
    cr_assert_eq(rpc_rm_feed(&rm, in, 3, &complete), 3);
    cr_assert_eq(rpc_rm_feed(&rm, in + 3, 1, &complete), CAIRN_ETOOBIG);
    cr_assert_null(rm.buf);
    rpc_rm_fini(&rm);
}

Test(rpc_rm, limit_counts_all_fragments)
{
    struct rpc_rm rm;
    uint8_t *in = calloc(1, 2000);
    uint8_t zero[600] = {0};
    size_t n = 0;
    bool complete;

    rpc_rm_init(&rm, 1000);
    frag(in, &n, false, zero, 600);
    cr_assert_eq(rpc_rm_feed(&rm, in, n, &complete), (ssize_t)n);
    cr_assert_not(complete);
    cr_assert_leq(rm.cap, 1000);
    put_be32(in, LAST | 401); /* 600 + 401 > 1000 */
    cr_assert_eq(rpc_rm_feed(&rm, in, 4, &complete), CAIRN_ETOOBIG);
    cr_assert_leq(rm.cap, 1000);
    rpc_rm_fini(&rm);

    /* exactly the limit is fine */
    rpc_rm_init(&rm, 1000);
    n = 0;
    frag(in, &n, false, zero, 600);
    frag(in, &n, true, zero, 400);
    cr_assert_eq(rpc_rm_feed(&rm, in, n, &complete), (ssize_t)n);
    cr_assert(complete);
    {
        size_t len;
        uint8_t *rec = rpc_rm_take(&rm, &len);

        cr_assert_eq(len, 1000);
        free(rec);
    }
    rpc_rm_fini(&rm);
    free(in);
}

Test(rpc_rm, grows_per_fragment)
{
    struct rpc_rm rm;
    uint8_t in[4];
    uint8_t body[100] = {0};
    bool complete;

    /* A big limit does not mean a big buffer: only what the marks announced. */
    rpc_rm_init(&rm, 64u << 20);
    put_be32(in, 100);
    cr_assert_eq(rpc_rm_feed(&rm, in, 4, &complete), 4);
    cr_assert_geq(rm.cap, 100);
    cr_assert_leq(rm.cap, 4096);
    cr_assert_eq(rpc_rm_feed(&rm, body, 50, &complete), 50);
    cr_assert_not(complete);
    rpc_rm_fini(&rm); /* mid-record: frees the partial record */
}

Test(rpc_rm, zero_length_record)
{
    struct rpc_rm rm;
    uint8_t in[16];
    size_t n = 0, len = 99;
    bool complete;

    rpc_rm_init(&rm, 1024);
    frag(in, &n, true, "", 0);
    frag(in, &n, true, "x", 1);
    cr_assert_eq(rpc_rm_feed(&rm, in, n, &complete), 4);
    cr_assert(complete);
    cr_assert_null(rpc_rm_take(&rm, &len));
    cr_assert_eq(len, 0);
    cr_assert_eq(rpc_rm_feed(&rm, in + 4, n - 4, &complete), (ssize_t)(n - 4));
    cr_assert(complete);
    take_expect(&rm, "x");
    rpc_rm_fini(&rm);
}

/* ==== the server ==== */

static pthread_mutex_t t_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t t_cv = PTHREAD_COND_INITIALIZER;
static bool t_release;
static int t_blocked; /* handlers waiting in 'B' */
static atomic_int t_started, t_active, t_peak, t_zero, t_inits, t_finis;
static atomic_int t_fail_init;

static void *w_init(void *app, unsigned worker)
{
    static int token;

    (void)app;
    (void)worker;
    atomic_fetch_add(&t_inits, 1);
    return atomic_load(&t_fail_init) ? NULL : &token;
}

static void w_fini(void *app, void *ws)
{
    (void)app;
    (void)ws;
    atomic_fetch_add(&t_finis, 1);
}

static void t_handle(void *app, void *ws, struct rpcsrv_call *c, unsigned listener,
                     const uint8_t *rec, size_t len)
{
    int a = atomic_fetch_add(&t_active, 1) + 1, peak = atomic_load(&t_peak);
    uint8_t *reply;

    (void)app;
    (void)ws;
    while (a > peak && !atomic_compare_exchange_weak(&t_peak, &peak, a))
        ;
    atomic_fetch_add(&t_started, 1);
    if (len == 0) {
        atomic_fetch_add(&t_zero, 1);
        rpcsrv_drop(c);
        goto out;
    }
    if (len < 5) {
        rpcsrv_drop(c);
        goto out;
    }
    switch (rec[0]) {
    case 'S':
        sleep_ms(get_be32(rec + 1));
        break;
    case 'B':
        pthread_mutex_lock(&t_mu);
        t_blocked++;
        pthread_cond_broadcast(&t_cv);
        while (!t_release)
            pthread_cond_wait(&t_cv, &t_mu);
        t_blocked--;
        pthread_mutex_unlock(&t_mu);
        break;
    case 'C':
        rpcsrv_close(c);
        goto out;
    case 'D':
        rpcsrv_drop(c);
        goto out;
    case 'N':
        goto out; /* never ended: the server drops it */
    case 'P': {
        const char *p = rpcsrv_peer_str(c);

        cr_assert_eq(rpcsrv_peer(c)->ss_family, AF_INET);
        reply = (uint8_t *)strdup(p);
        rpcsrv_reply(c, reply, strlen(p));
        goto out;
    }
    default:
        break;
    }
    reply = malloc(len + 1);
    reply[0] = (uint8_t)listener;
    memcpy(reply + 1, rec, len);
    rpcsrv_reply(c, reply, len + 1);
out:
    atomic_fetch_sub(&t_active, 1);
}

static const struct rpcsrv_app t_app = {
    .worker_init = w_init, .worker_fini = w_fini, .handle = t_handle};

static struct rpcsrv_config base_cfg(void)
{
    struct rpcsrv_config cfg = {.host = "127.0.0.1", .nports = 1, .loops = 2, .workers = 8};

    return cfg;
}

static struct rpcsrv *start(const struct rpcsrv_config *cfg)
{
    struct rpcsrv *s = NULL;
    int rc = rpcsrv_start(cfg, &t_app, &s);

    cr_assert_eq(rc, 0, "rpcsrv_start: %s", cairn_strerror(rc));
    return s;
}

static void release_all(void)
{
    pthread_mutex_lock(&t_mu);
    t_release = true;
    pthread_cond_broadcast(&t_cv);
    pthread_mutex_unlock(&t_mu);
}

/* Wait until n handlers block in 'B' (fails after 5 s). */
static void wait_blocked(int n)
{
    struct timespec dl;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&t_mu);
    while (t_blocked < n)
        if (pthread_cond_timedwait(&t_cv, &t_mu, &dl) == ETIMEDOUT)
            break;
    cr_assert_eq(t_blocked, n);
    pthread_mutex_unlock(&t_mu);
}

/* ---- client ---- */

static int connect_to(unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 10};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    cr_assert_geq(fd, 0);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* Returns false on EOF, reset or timeout. */
static bool recv_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = recv(fd, p, len, 0);

        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* One toy call as a single-fragment record, into out (mark included); returns its size. */
static size_t build(uint8_t *out, char cmd, uint32_t arg, const void *payload, size_t plen)
{
    put_be32(out, LAST | (uint32_t)(5 + plen));
    out[4] = (uint8_t)cmd;
    put_be32(out + 5, arg);
    if (plen)
        memcpy(out + 9, payload, plen);
    return 9 + plen;
}

static void call_send(int fd, char cmd, uint32_t arg, const char *tag)
{
    uint8_t buf[256];

    send_all(fd, buf, build(buf, cmd, arg, tag, strlen(tag)));
}

/* Read one reply record (malloc'd, *len bytes); NULL if the connection ended. */
static uint8_t *reply_recv(int fd, size_t *len)
{
    uint8_t mark[4], *buf;
    uint32_t m;

    if (!recv_all(fd, mark, 4))
        return NULL;
    m = get_be32(mark);
    cr_assert(m & LAST, "replies are one fragment");
    *len = m & ~LAST;
    buf = malloc(*len + 1);
    cr_assert(recv_all(fd, buf, *len), "reply cut short");
    buf[*len] = 0;
    return buf;
}

/* Expect the echo of (cmd, tag) from listener l. */
static void expect_echo(int fd, unsigned l, char cmd, const char *tag)
{
    size_t len, tl = strlen(tag);
    uint8_t *r = reply_recv(fd, &len);

    cr_assert_not_null(r, "no reply for %c %s", cmd, tag);
    cr_assert_eq(len, 1 + 5 + tl, "reply for %c %s: %zu bytes", cmd, tag, len);
    cr_assert_eq(r[0], l);
    cr_assert_eq(r[1], (uint8_t)cmd);
    cr_assert_arr_eq(r + 6, tag, tl, "expected the reply for %s, got %.*s", tag, (int)tl, r + 6);
    free(r);
}

static void expect_closed(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, 0);

    cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "connection still open (%zd, %s)", n,
              n < 0 ? strerror(errno) : "data");
}

/* ---- tests ---- */

Test(rpcsrv, echo_and_hooks, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    struct sockaddr_in me;
    socklen_t mlen = sizeof(me);
    char want[64];
    uint8_t *r;
    size_t len;
    int fd;

    cfg.workers = 3;
    s = start(&cfg);
    cr_assert_eq(atomic_load(&t_inits), 3);
    cr_assert_neq(rpcsrv_port(s, 0), 0);
    cr_assert_eq(rpcsrv_port(s, 1), 0);
    fd = connect_to(rpcsrv_port(s, 0));
    call_send(fd, 'E', 0, "hello");
    expect_echo(fd, 0, 'E', "hello");

    /* the peer address is the client's */
    getsockname(fd, (struct sockaddr *)&me, &mlen);
    snprintf(want, sizeof(want), "127.0.0.1:%u", ntohs(me.sin_port));
    call_send(fd, 'P', 0, "");
    r = reply_recv(fd, &len);
    cr_assert_not_null(r);
    cr_assert_str_eq((char *)r, want);
    free(r);

    /* dropped calls and calls never ended get no reply; the connection goes on */
    call_send(fd, 'D', 0, "dropped");
    call_send(fd, 'N', 0, "never ended");
    call_send(fd, 'E', 0, "after");
    expect_echo(fd, 0, 'E', "after");
    close(fd);
    rpcsrv_stop(s);
    cr_assert_eq(atomic_load(&t_finis), 3);
    rpcsrv_stop(NULL);
}

Test(rpcsrv, start_errors, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s = NULL;

    cfg.nports = 0;
    cr_assert_eq(rpcsrv_start(&cfg, &t_app, &s), CAIRN_EINVAL);
    cfg.nports = RPCSRV_MAX_LISTENERS + 1;
    cr_assert_eq(rpcsrv_start(&cfg, &t_app, &s), CAIRN_EINVAL);
    cfg.nports = 1;
    cfg.ports[0] = 70000;
    cr_assert_eq(rpcsrv_start(&cfg, &t_app, &s), CAIRN_EINVAL);
    cfg.ports[0] = 0;
    cfg.host = "not an address";
    cr_assert_eq(rpcsrv_start(&cfg, &t_app, &s), CAIRN_EINVAL);
    cfg.host = "127.0.0.1";
    atomic_store(&t_fail_init, 1);
    cr_assert_eq(rpcsrv_start(&cfg, &t_app, &s), CAIRN_EIO);
    cr_assert_null(s);
}

Test(rpcsrv, pipelined_out_of_order, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    uint8_t buf[256];
    size_t n = 0;
    int fd;

    s = start(&cfg);
    fd = connect_to(rpcsrv_port(s, 0));
    /* three calls in one write; the slowest first */
    n += build(buf + n, 'S', 600, "A", 1);
    n += build(buf + n, 'S', 300, "B", 1);
    n += build(buf + n, 'E', 0, "C", 1);
    send_all(fd, buf, n);
    expect_echo(fd, 0, 'E', "C");
    expect_echo(fd, 0, 'S', "B");
    expect_echo(fd, 0, 'S', "A");
    close(fd);
    rpcsrv_stop(s);
}

Test(rpcsrv, fragments_and_empty_records, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    uint8_t buf[256];
    size_t n = 0;
    int fd;

    s = start(&cfg);
    fd = connect_to(rpcsrv_port(s, 0));
    /* one call in three fragments, sent a byte at a time */
    frag(buf, &n, false, "E\0\0", 3);
    frag(buf, &n, false, "\0\0fr", 4);
    frag(buf, &n, true, "ag", 2);
    for (size_t i = 0; i < n; i++) {
        send_all(fd, buf + i, 1);
        if (i % 4 == 0)
            sleep_ms(2);
    }
    expect_echo(fd, 0, 'E', "frag");
    /* an empty record goes to the handler, which drops it */
    n = 0;
    frag(buf, &n, true, "", 0);
    n += build(buf + n, 'E', 0, "next", 4);
    send_all(fd, buf, n);
    expect_echo(fd, 0, 'E', "next");
    cr_assert_eq(atomic_load(&t_zero), 1);
    close(fd);
    rpcsrv_stop(s);
}

Test(rpcsrv, record_limit, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    uint8_t *big = malloc(4096 + 4), mark[4];
    size_t len;
    uint8_t *r;
    int fd;

    cfg.max_record = 4096;
    s = start(&cfg);
    fd = connect_to(rpcsrv_port(s, 0));
    /* exactly the limit is served */
    memset(big, 'x', 4096 + 4);
    build(big, 'E', 0, big + 9, 4096 - 5);
    send_all(fd, big, 4096 + 4);
    r = reply_recv(fd, &len);
    cr_assert_not_null(r);
    cr_assert_eq(len, 4097);
    free(r);
    /* one byte more closes the connection as soon as the mark is read */
    put_be32(mark, LAST | 4097);
    send_all(fd, mark, 4);
    expect_closed(fd);
    close(fd);
    /* also when the fragments add up past it */
    fd = connect_to(rpcsrv_port(s, 0));
    put_be32(big, 3000);
    send_all(fd, big, 3004);
    put_be32(big, LAST | 1097);
    send_all(fd, big, 4);
    expect_closed(fd);
    close(fd);
    cr_assert_eq(atomic_load(&t_started), 1);
    free(big);
    rpcsrv_stop(s);
}

Test(rpcsrv, handler_closes, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    int fd, other;

    s = start(&cfg);
    fd = connect_to(rpcsrv_port(s, 0));
    other = connect_to(rpcsrv_port(s, 0));
    call_send(fd, 'E', 0, "first");
    expect_echo(fd, 0, 'E', "first");
    call_send(fd, 'C', 0, "bye");
    expect_closed(fd);
    close(fd);
    call_send(other, 'E', 0, "unaffected");
    expect_echo(other, 0, 'E', "unaffected");
    close(other);
    rpcsrv_stop(s);
}

Test(rpcsrv, half_close_gets_answers, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    uint8_t buf[256];
    size_t n = 0;
    int fd;

    /* one call at a time: the later calls wait unread when the client's FIN comes */
    cfg.max_inflight = 1;
    s = start(&cfg);
    fd = connect_to(rpcsrv_port(s, 0));
    n += build(buf + n, 'S', 200, "one", 3);
    n += build(buf + n, 'E', 0, "two", 3);
    n += build(buf + n, 'E', 0, "three", 5);
    send_all(fd, buf, n);
    shutdown(fd, SHUT_WR);
    expect_echo(fd, 0, 'S', "one");
    expect_echo(fd, 0, 'E', "two");
    expect_echo(fd, 0, 'E', "three");
    expect_closed(fd);
    close(fd);
    rpcsrv_stop(s);
}

Test(rpcsrv, two_listeners, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    int a, b;

    cfg.nports = 2;
    cfg.loops = 3;
    s = start(&cfg);
    cr_assert_neq(rpcsrv_port(s, 0), 0);
    cr_assert_neq(rpcsrv_port(s, 1), 0);
    cr_assert_neq(rpcsrv_port(s, 0), rpcsrv_port(s, 1));
    for (int i = 0; i < 8; i++) { /* connections land on different loops */
        a = connect_to(rpcsrv_port(s, 0));
        b = connect_to(rpcsrv_port(s, 1));
        call_send(b, 'E', 0, "nfs?");
        call_send(a, 'E', 0, "mount?");
        expect_echo(a, 0, 'E', "mount?");
        expect_echo(b, 1, 'E', "nfs?");
        close(a);
        close(b);
    }
    rpcsrv_stop(s);
}

Test(rpcsrv, many_connections, .timeout = 60)
{
    enum { NCONN = 64, NCALL = 10 };
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    int fds[NCONN];
    char tag[32];

    cfg.loops = 4;
    s = start(&cfg);
    for (int i = 0; i < NCONN; i++)
        fds[i] = connect_to(rpcsrv_port(s, 0));
    for (int i = 0; i < NCONN; i++)
        for (int j = 0; j < NCALL; j++) {
            snprintf(tag, sizeof(tag), "c%d-%d", i, j);
            call_send(fds[i], 'E', 0, tag);
        }
    /* one worker pool, one handler at a time per call: each connection's replies come back
     * whole, though not necessarily in order */
    for (int i = 0; i < NCONN; i++) {
        bool seen[NCALL] = {false};

        for (int j = 0; j < NCALL; j++) {
            size_t len;
            uint8_t *r = reply_recv(fds[i], &len);
            int ci, cj;

            cr_assert_not_null(r);
            cr_assert_eq(sscanf((char *)r + 6, "c%d-%d", &ci, &cj), 2);
            cr_assert_eq(ci, i);
            cr_assert(cj >= 0 && cj < NCALL && !seen[cj]);
            seen[cj] = true;
            free(r);
        }
        close(fds[i]);
    }
    cr_assert_eq(atomic_load(&t_started), NCONN * NCALL);
    rpcsrv_stop(s);
}

Test(rpcsrv, connection_limit, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    int a, b, c;

    cfg.max_conns = 2;
    s = start(&cfg);
    a = connect_to(rpcsrv_port(s, 0));
    b = connect_to(rpcsrv_port(s, 0));
    call_send(a, 'E', 0, "a");
    call_send(b, 'E', 0, "b");
    expect_echo(a, 0, 'E', "a");
    expect_echo(b, 0, 'E', "b");
    c = connect_to(rpcsrv_port(s, 0));
    expect_closed(c);
    close(c);
    close(a);
    sleep_ms(200); /* the server sees a's close */
    c = connect_to(rpcsrv_port(s, 0));
    call_send(c, 'E', 0, "c");
    expect_echo(c, 0, 'E', "c");
    close(b);
    close(c);
    rpcsrv_stop(s);
}

Test(rpcsrv, idle_timeout, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    struct timespec t0, t1;
    int idle, busy;
    long ms;

    cfg.idle_ms = 300;
    s = start(&cfg);
    busy = connect_to(rpcsrv_port(s, 0));
    /* a call the handler takes longer than idle_ms over keeps its connection */
    call_send(busy, 'S', 900, "slow");
    idle = connect_to(rpcsrv_port(s, 0));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_closed(idle);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    cr_assert(ms >= 250 && ms < 3000, "closed after %ld ms", ms);
    close(idle);
    expect_echo(busy, 0, 'S', "slow");
    /* and once answered, it goes idle too */
    expect_closed(busy);
    close(busy);
    rpcsrv_stop(s);
}

/* The client side of the backpressure test: records of 64 KiB, made on the fly. */
#define BP_PAYLOAD (64u << 10)

static size_t bp_record(uint8_t *out, uint32_t idx)
{
    uint8_t *payload = out + 9;

    memset(payload, (int)(idx & 0xff), BP_PAYLOAD);
    put_be32(payload, idx);
    return build(out, 'E', 0, payload, BP_PAYLOAD);
}

Test(rpcsrv, inflight_backpressure, .timeout = 60)
{
    enum { MAXIN = 4, NSMALL = 20, SMALL_BASE = 1000000 };
    const size_t rlen = 9 + BP_PAYLOAD;
    uint8_t small[(MAXIN + NSMALL) * 32];
    size_t sn = 0;
    bool small_seen[NSMALL] = {false};
    struct rpcsrv_config cfg = base_cfg();
    struct rpcsrv *s;
    uint8_t *rec = malloc(rlen), *in = malloc(2 * rlen);
    size_t roff = 0, inlen = 0, sent_total = 0;
    uint32_t nrec = 0, got = 0;
    bool *seen;
    struct pollfd pfd;
    char tag[8];
    int fd;

    cfg.loops = 1;
    cfg.max_inflight = MAXIN;
    s = start(&cfg);
    fd = connect_to(rpcsrv_port(s, 0));
    /* MAXIN calls that block, and behind them in the same write small calls that must wait
     * (read, but not handed to the workers) */
    for (int i = 0; i < MAXIN; i++) {
        snprintf(tag, sizeof(tag), "b%d", i);
        sn += build(small + sn, 'B', 0, tag, 2);
    }
    for (uint32_t j = 0; j < NSMALL; j++) {
        uint8_t p[8] = {0};

        put_be32(p, SMALL_BASE + j);
        sn += build(small + sn, 'S', 5, p, sizeof(p));
    }
    send_all(fd, small, sn);
    wait_blocked(MAXIN);
    sleep_ms(100);
    cr_assert_eq(atomic_load(&t_started), MAXIN);

    /* The server takes no more calls and stops reading: sends block before 256 MiB. */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (;;) {
        ssize_t k;

        if (roff == 0)
            bp_record(rec, nrec);
        k = send(fd, rec + roff, rlen - roff, MSG_NOSIGNAL);
        if (k < 0) {
            cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "send: %s", strerror(errno));
            break;
        }
        sent_total += (size_t)k;
        roff += (size_t)k;
        if (roff == rlen) {
            roff = 0;
            nrec++;
        }
        cr_assert_lt(sent_total, 256u << 20, "the server kept reading");
    }
    if (roff)
        nrec++; /* finished below */
    cr_assert_gt(nrec, 0);
    pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
    cr_assert_eq(poll(&pfd, 1, 300), 0, "the server read more while at its limit");
    cr_assert_eq(atomic_load(&t_started), MAXIN);

    /* Released, every call is answered, never more than MAXIN at a time. */
    release_all();
    seen = calloc(nrec, sizeof(*seen));
    while (got < MAXIN + NSMALL + nrec) {
        pfd = (struct pollfd){.fd = fd, .events = POLLIN | (roff ? POLLOUT : 0)};
        cr_assert_gt(poll(&pfd, 1, 10000), 0, "stalled with %u of %u replies", got,
                     MAXIN + NSMALL + nrec);
        if (roff && (pfd.revents & POLLOUT)) {
            ssize_t k = send(fd, rec + roff, rlen - roff, MSG_NOSIGNAL);

            if (k > 0) {
                roff += (size_t)k;
                if (roff == rlen)
                    roff = 0;
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t k = recv(fd, in + inlen, 2 * rlen - inlen, 0);
            size_t off = 0;

            cr_assert_gt(k, 0, "connection ended with %u of %u replies", got,
                         MAXIN + NSMALL + nrec);
            inlen += (size_t)k;
            while (inlen - off >= 4) {
                uint32_t m = get_be32(in + off), len = m & ~LAST;

                cr_assert(m & LAST);
                if (inlen - off - 4 < len)
                    break;
                if (in[off + 5] == 'B') {
                    cr_assert_eq(len, 1 + 5 + 2);
                } else if (in[off + 5] == 'S') {
                    uint32_t j = get_be32(in + off + 4 + 6) - SMALL_BASE;

                    cr_assert_eq(len, 1 + 5 + 8);
                    cr_assert(j < NSMALL && !small_seen[j]);
                    small_seen[j] = true;
                } else {
                    uint32_t idx;

                    cr_assert_eq(in[off + 5], 'E');
                    cr_assert_eq(len, 1 + 5 + BP_PAYLOAD);
                    idx = get_be32(in + off + 4 + 6);
                    cr_assert_lt(idx, nrec);
                    cr_assert_not(seen[idx]);
                    cr_assert_eq(in[off + 4 + len - 1], idx & 0xff);
                    seen[idx] = true;
                }
                got++;
                off += 4 + len;
            }
            memmove(in, in + off, inlen - off);
            inlen -= off;
        }
    }
    cr_assert_leq(atomic_load(&t_peak), MAXIN);
    cr_assert_eq(atomic_load(&t_started), MAXIN + NSMALL + (int)nrec);
    close(fd);
    rpcsrv_stop(s);
    free(seen);
    free(in);
    free(rec);
}

struct stopper {
    struct rpcsrv *s;
    pthread_t t;
    atomic_bool done;
};

static void *stop_main(void *arg)
{
    struct stopper *st = arg;

    rpcsrv_stop(st->s);
    atomic_store(&st->done, true);
    return NULL;
}

Test(rpcsrv, stop_with_calls_in_flight, .timeout = 30)
{
    struct rpcsrv_config cfg = base_cfg();
    struct stopper st = {0};
    uint8_t buf[1024];
    size_t n = 0;
    int fd, idle;

    cfg.workers = 2;
    st.s = start(&cfg);
    fd = connect_to(rpcsrv_port(st.s, 0));
    idle = connect_to(rpcsrv_port(st.s, 0));
    /* two calls hold both workers; the rest wait in the queue */
    n += build(buf + n, 'B', 0, "b0", 2);
    n += build(buf + n, 'B', 0, "b1", 2);
    for (int i = 0; i < 10; i++)
        n += build(buf + n, 'E', 0, "queued", 6);
    send_all(fd, buf, n);
    wait_blocked(2);
    sleep_ms(50); /* the loop has queued the rest */

    cr_assert_eq(pthread_create(&st.t, NULL, stop_main, &st), 0);
    /* connections close at once, while the handlers still run */
    expect_closed(fd);
    expect_closed(idle);
    cr_assert_not(atomic_load(&st.done), "stop waits for running handlers");
    release_all();
    pthread_join(st.t, NULL);
    /* the queued calls were freed without running */
    cr_assert_eq(atomic_load(&t_started), 2);
    cr_assert_eq(atomic_load(&t_finis), 2);
    close(fd);
    close(idle);
}
