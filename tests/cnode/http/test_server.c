/*
 * test_server.c - the C-node HTTP server (cnode/http/server.c) driven over real loopback sockets.
 *
 * A test handler routes on the path: /hello, /size?n= (Content-Length body of a known
 * pattern), /chunked?n= (the same, chunked), /sum (reads the body, answers its length and
 * FNV-1a hash), /echo (answers the body back, chunked, while reading it), /noread (answers
 * without reading), /slow (reads in small pieces with pauses), /watch (reads until the end or
 * an error and records what http_req_read returned), /noresp (returns without answering).
 * The client side is plain POSIX sockets with a small response reader; curl covers a real
 * client's chunked upload and Expect: 100-continue.
 *
 * Set CAIRN_BENCH_SERVER=1 to also run the 1 GiB throughput test.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cnode/http/server.h"
#include "common/cairn.h"

/* ---- shared helpers ---- */

static uint8_t pat(uint64_t i)
{
    return (uint8_t)(i ^ (i >> 8) ^ ((i >> 16) * 31u));
}

static void pat_fill(uint64_t off, uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = pat(off + i);
}

#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;

    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the test application ---- */

static atomic_int watch_rc;       /* what /watch's last http_req_read returned (1: not yet) */
static atomic_int handler_active; /* handlers running right now */
static atomic_int inits, finis;

static uint64_t query_n(const struct http_request *h)
{
    const char *p = strstr(h->query, "n=");

    return p ? strtoull(p + 2, NULL, 10) : 0;
}

static void reply_text(struct http_req *r, int status, const char *text)
{
    struct http_header ct = {.name = "Content-Type", .value = "text/plain"};

    http_req_reply(r, status, &ct, 1, text, strlen(text));
}

static void h_size(struct http_req *r, bool chunked)
{
    uint64_t n = query_n(http_req_http(r)), off = 0;
    size_t piece = chunked ? 100003 : 1 << 20;
    uint8_t *buf = malloc(piece);

    if (http_req_respond(r, 200, NULL, 0, chunked ? -1 : (int64_t)n))
        goto out;
    if (http_req_http(r)->method != HTTP_HEAD) {
        while (off < n) {
            size_t k = (size_t)CAIRN_MIN((uint64_t)piece, n - off);

            pat_fill(off, buf, k);
            if (http_req_write(r, buf, k))
                goto out;
            off += k;
        }
    }
    http_req_finish(r);
out:
    free(buf);
}

/* n bytes from one prepared buffer: the server's cost alone, no per-byte work here */
static void h_fill(struct http_req *r)
{
    static uint8_t buf[1 << 20];
    uint64_t n = query_n(http_req_http(r)), off = 0;

    if (http_req_respond(r, 200, NULL, 0, (int64_t)n))
        return;
    while (off < n) {
        size_t k = (size_t)CAIRN_MIN((uint64_t)sizeof(buf), n - off);

        if (http_req_write(r, buf, k))
            break;
        off += k;
    }
    http_req_finish(r);
}

static void h_sum(struct http_req *r, size_t piece, unsigned pause_us, bool hash)
{
    uint8_t *buf = malloc(piece);
    uint64_t h = FNV_INIT, len = 0;
    char text[96];
    ssize_t n;

    while ((n = http_req_read(r, buf, piece)) > 0) {
        if (hash)
            h = fnv(h, buf, (size_t)n);
        len += (uint64_t)n;
        if (pause_us)
            usleep(pause_us);
    }
    free(buf);
    if (n < 0) {
        reply_text(r, 400, cairn_strerror((int)n));
        return;
    }
    snprintf(text, sizeof(text), "len=%" PRIu64 " hash=%016" PRIx64, len, h);
    reply_text(r, 200, text);
}

static void h_echo(struct http_req *r)
{
    uint8_t *buf = malloc(1 << 20);
    ssize_t n;

    if (http_req_respond(r, 200, NULL, 0, -1) == 0) {
        while ((n = http_req_read(r, buf, 1 << 20)) > 0)
            if (http_req_write(r, buf, (size_t)n))
                break;
        http_req_finish(r);
    }
    free(buf);
}

static void h_watch(struct http_req *r)
{
    char buf[65536];
    ssize_t n;

    while ((n = http_req_read(r, buf, sizeof(buf))) > 0)
        ;
    atomic_store(&watch_rc, (int)n);
    if (n == CAIRN_ETIMEDOUT)
        reply_text(r, 408, "timeout");
    else
        reply_text(r, 200, "done");
}

static void test_handle(void *app, void *wstate, struct http_req *r)
{
    const struct http_request *h = http_req_http(r);

    cr_assert_eq(app, (void *)0x1234);
    cr_assert_not_null(wstate);
    atomic_fetch_add(&handler_active, 1);
    if (!strcmp(h->path, "/hello")) {
        reply_text(r, 200, "hello world");
    } else if (!strcmp(h->path, "/size")) {
        h_size(r, false);
    } else if (!strcmp(h->path, "/fill")) {
        h_fill(r);
    } else if (!strcmp(h->path, "/chunked")) {
        h_size(r, true);
    } else if (!strcmp(h->path, "/sum")) {
        h_sum(r, 65536 + 17, 0, true);
    } else if (!strcmp(h->path, "/sink")) {
        h_sum(r, 1 << 20, 0, false);
    } else if (!strcmp(h->path, "/slow")) {
        h_sum(r, 8192, 200, true);
    } else if (!strcmp(h->path, "/echo")) {
        h_echo(r);
    } else if (!strcmp(h->path, "/noread")) {
        reply_text(r, 200, "ok");
    } else if (!strcmp(h->path, "/watch")) {
        h_watch(r);
    } else if (!strcmp(h->path, "/peer")) {
        reply_text(r, 200, http_req_peer(r));
    } else if (!strcmp(h->path, "/echohdr")) {
        const struct http_header *x = http_header_find(h, "x-test");

        reply_text(r, 200, x ? x->value : "(none)");
    } else if (!strcmp(h->path, "/noresp")) {
        /* nothing: the server answers 500 */
    } else {
        reply_text(r, 404, "no such route");
    }
    atomic_fetch_sub(&handler_active, 1);
}

static void *test_winit(void *app, unsigned w)
{
    (void)app;
    atomic_fetch_add(&inits, 1);
    return (void *)(uintptr_t)(w + 1);
}

static void test_wfini(void *app, void *ws)
{
    (void)app;
    (void)ws;
    atomic_fetch_add(&finis, 1);
}

static const char *test_error(void *app, int status, const char *reason, char **body, size_t *len)
{
    (void)app;
    *len = (size_t)asprintf(body, "error %d: %s", status, reason);
    return "text/plain";
}

static struct http_server_app test_app = {
    .app = (void *)0x1234,
    .worker_init = test_winit,
    .worker_fini = test_wfini,
    .handle = test_handle,
    .error_response = test_error,
};

static struct http_server *start(size_t window, unsigned loops, unsigned workers)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1", .loops = loops, .workers = workers, .body_window = window};
    struct http_server *s = NULL;

    atomic_store(&watch_rc, 1);
    cr_assert_eq(http_server_start(&cfg, &test_app, &s), 0);
    cr_assert_neq(http_server_port(s), 0u);
    return s;
}

/* ---- a small HTTP client ---- */

struct cl {
    int fd;
    size_t off, len;
    char buf[65536];
};

static struct cl *cl_open(unsigned port)
{
    struct cl *c = calloc(1, sizeof(*c));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 20};
    int one = 1;

    cr_assert_not_null(c);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(c->fd, 0);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s",
                 strerror(errno));
    return c;
}

static void cl_close(struct cl *c)
{
    if (c) {
        close(c->fd);
        free(c);
    }
}

static int cl_send(struct cl *c, const void *data, size_t len)
{
    const char *p = data;

    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int cl_sendf(struct cl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cl_sendf(struct cl *c, const char *fmt, ...)
{
    char *s;
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    rc = cl_send(c, s, (size_t)n);
    free(s);
    return rc;
}

/* Fill the buffer; 0 at EOF, -1 on error. */
static int cl_fill(struct cl *c)
{
    ssize_t n;

    if (c->off == c->len)
        c->off = c->len = 0;
    if (c->len == sizeof(c->buf)) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    do
        n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        c->len += (size_t)n;
    return n > 0 ? 1 : (int)n;
}

/* One line without CRLF into out (cap bytes); -1 on EOF or error. */
static int cl_line(struct cl *c, char *out, size_t cap)
{
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);

        if (nl) {
            size_t n = (size_t)(nl - (c->buf + c->off));

            if (n && nl[-1] == '\r')
                n--;
            if (n >= cap)
                n = cap - 1;
            memcpy(out, c->buf + c->off, n);
            out[n] = '\0';
            c->off = (size_t)(nl - c->buf) + 1;
            return 0;
        }
        if (c->off > 0 && c->len == sizeof(c->buf)) {
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        }
        if (cl_fill(c) <= 0)
            return -1;
    }
}

/* Consume len body bytes, hashing them, keeping the first keep_cap in keep. */
static int cl_body(struct cl *c, uint64_t len, uint64_t *hash, char *keep, size_t keep_cap,
                   uint64_t *kept, uint64_t *pos, bool check_pat)
{
    while (len) {
        size_t n;

        if (c->off == c->len && cl_fill(c) <= 0)
            return -1;
        n = (size_t)CAIRN_MIN((uint64_t)(c->len - c->off), len);
        if (hash)
            *hash = fnv(*hash, c->buf + c->off, n);
        if (check_pat)
            for (size_t i = 0; i < n; i++)
                if ((uint8_t)c->buf[c->off + i] != pat(*pos + i))
                    return -2;
        if (keep && *kept < keep_cap) {
            size_t k = (size_t)CAIRN_MIN((uint64_t)n, keep_cap - *kept);

            memcpy(keep + *kept, c->buf + c->off, k);
            *kept += k;
        }
        *pos += n;
        c->off += n;
        len -= n;
    }
    return 0;
}

struct resp {
    int status;
    char headers[8192]; /* "name: value\n" lines, as received */
    int64_t clen;
    bool chunked, close;
    uint64_t body_len;
    uint64_t hash;
    char body[4096]; /* the first bytes, NUL-terminated */
    bool pattern_ok;
};

static const char *resp_header(const struct resp *r, const char *name, char *out, size_t cap)
{
    const char *p = r->headers;
    size_t nl = strlen(name);

    while (*p) {
        const char *e = strchr(p, '\n');

        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            size_t n;

            while (*v == ' ')
                v++;
            n = (size_t)(e - v);
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return out;
        }
        p = e + 1;
    }
    return NULL;
}

/* Read one final response (skipping 100 Continue).  head: response to a HEAD request (no
 * body).  check_pat: the body must be the /size pattern, and is hashed into r->hash. */
static int cl_response(struct cl *c, struct resp *r, bool head, bool check_pat)
{
    char line[16384];
    uint64_t kept = 0, pos = 0;
    size_t hl = 0;

    memset(r, 0, sizeof(*r));
    r->clen = -1;
    r->hash = FNV_INIT;
    r->pattern_ok = true;
    do {
        if (cl_line(c, line, sizeof(line)))
            return -1;
        if (sscanf(line, "HTTP/1.1 %d", &r->status) != 1)
            return -1;
        hl = 0;
        r->headers[0] = 0;
        for (;;) {
            if (cl_line(c, line, sizeof(line)))
                return -1;
            if (!line[0])
                break;
            hl += (size_t)snprintf(r->headers + hl, sizeof(r->headers) - hl, "%s\n", line);
            if (!strncasecmp(line, "content-length:", 15))
                r->clen = strtoll(line + 15, NULL, 10);
            if (!strncasecmp(line, "transfer-encoding:", 18) && strstr(line, "chunked"))
                r->chunked = true;
            if (!strncasecmp(line, "connection:", 11) && strstr(line, "close"))
                r->close = true;
        }
    } while (r->status == 100);
    if (head || r->status == 204 || r->status == 304)
        return 0;
    if (r->chunked) {
        for (;;) {
            uint64_t n;
            int rc;

            if (cl_line(c, line, sizeof(line)))
                return -1;
            n = strtoull(line, NULL, 16);
            if (n == 0)
                break;
            rc = cl_body(c, n, check_pat ? &r->hash : NULL, r->body, sizeof(r->body) - 1, &kept,
                         &pos, check_pat);
            if (rc == -2)
                r->pattern_ok = false;
            if (rc == -1 || cl_line(c, line, sizeof(line)) || line[0])
                return -1;
        }
        for (;;) { /* trailers */
            if (cl_line(c, line, sizeof(line)))
                return -1;
            if (!line[0])
                break;
        }
    } else if (r->clen >= 0) {
        int rc = cl_body(c, (uint64_t)r->clen, check_pat ? &r->hash : NULL, r->body,
                         sizeof(r->body) - 1, &kept, &pos, check_pat);

        if (rc == -2)
            r->pattern_ok = false;
        if (rc == -1)
            return -1;
    } else {
        return -1; /* this server always frames its bodies */
    }
    r->body_len = pos;
    r->body[kept] = 0;
    return 0;
}

/* True if the server closed the connection (EOF or reset) within ms. */
static bool cl_eof(struct cl *c, int ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    char b[4096];

    if (c->off < c->len)
        return false;
    for (;;) {
        ssize_t n;

        if (poll(&p, 1, ms) <= 0)
            return false;
        n = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
        if (n > 0)
            return false;
    }
}

static void get_ok(struct cl *c, const char *path, const char *want)
{
    struct resp r;

    cr_assert_eq(cl_sendf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0, "no response to GET %s", path);
    cr_assert_eq(r.status, 200);
    if (want)
        cr_assert_str_eq(r.body, want);
}

/* PUT len pattern bytes (offset seed) with Content-Length; returns the client-side hash. */
static uint64_t put_body(struct cl *c, const char *path, uint64_t len, uint64_t seed)
{
    static uint8_t buf[1 << 20];
    uint64_t h = FNV_INIT, off = 0;

    cr_assert_eq(
        cl_sendf(c, "PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %" PRIu64 "\r\n\r\n", path, len),
        0);
    while (off < len) {
        size_t k = (size_t)CAIRN_MIN((uint64_t)sizeof(buf), len - off);

        pat_fill(seed + off, buf, k);
        h = fnv(h, buf, k);
        cr_assert_eq(cl_send(c, buf, k), 0);
        off += k;
    }
    return h;
}

static void expect_sum(struct cl *c, uint64_t len, uint64_t hash)
{
    struct resp r;
    char want[96];

    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_eq(r.status, 200, "status %d body %s", r.status, r.body);
    snprintf(want, sizeof(want), "len=%" PRIu64 " hash=%016" PRIx64, len, hash);
    cr_assert_str_eq(r.body, want);
}

static void wait_idle(void)
{
    for (int i = 0; i < 500 && atomic_load(&handler_active); i++)
        usleep(10000);
    cr_assert_eq(atomic_load(&handler_active), 0);
}

struct echo_sender {
    struct cl *c;
    uint64_t len;
    bool check;
    uint64_t hash;
};

static void *echo_send(void *p)
{
    struct echo_sender *e = p;
    uint8_t *buf = malloc(1 << 20);
    uint64_t off = 0;

    e->hash = FNV_INIT;
    cl_sendf(e->c, "PUT /echo HTTP/1.1\r\nContent-Length: %" PRIu64 "\r\n\r\n", e->len);
    while (off < e->len) {
        size_t k = (size_t)CAIRN_MIN((uint64_t)(1 << 20), e->len - off);

        if (e->check) {
            pat_fill(off, buf, k);
            e->hash = fnv(e->hash, buf, k);
        }
        if (cl_send(e->c, buf, k))
            break;
        off += k;
    }
    free(buf);
    return NULL;
}

/* PUT /echo len bytes from a second thread while this one reads the echo back. */
static void do_echo(struct cl *c, uint64_t len, bool check)
{
    struct echo_sender e = {.c = c, .len = len, .check = check};
    pthread_t th;
    struct resp r;

    cr_assert_eq(pthread_create(&th, NULL, echo_send, &e), 0);
    cr_assert_eq(cl_response(c, &r, false, check), 0);
    pthread_join(th, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(r.chunked);
    cr_assert_not(r.close);
    cr_assert_eq(r.body_len, len);
    if (check) {
        cr_assert(r.pattern_ok);
        cr_assert_eq(r.hash, e.hash);
    }
}

/* ---- tests ---- */

Test(server, simple_get, .timeout = 30)
{
    struct http_server *s = start(0, 2, 4);
    struct cl *c = cl_open(http_server_port(s));
    struct resp r;
    char v[128];

    cr_assert_eq(cl_sendf(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "hello world");
    cr_assert_eq(r.clen, 11);
    cr_assert_not(r.close);
    cr_assert_str_eq(resp_header(&r, "Server", v, sizeof(v)), "Cairn");
    cr_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof(v)), "text/plain");
    cr_assert_not_null(resp_header(&r, "Date", v, sizeof(v)));
    cr_assert(strlen(v) == 29 && !strcmp(v + 25, " GMT"), "date %s", v);
    /* the request head reaches the handler */
    cr_assert_eq(cl_sendf(c, "GET /echohdr?a=b HTTP/1.1\r\nHost: x\r\nX-Test:  v1 \r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_str_eq(r.body, "v1");
    cr_assert_eq(cl_sendf(c, "GET /nothing-here HTTP/1.1\r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_eq(r.status, 404);
    cl_close(c);
    http_server_stop(s);
}

Test(server, worker_hooks, .timeout = 30)
{
    struct http_server *s;

    atomic_store(&inits, 0);
    atomic_store(&finis, 0);
    s = start(0, 1, 5);
    cr_assert_eq(atomic_load(&inits), 5);
    http_server_stop(s);
    cr_assert_eq(atomic_load(&finis), 5);
    http_server_stop(NULL);
}

static void *fail_init(void *app, unsigned w)
{
    (void)app;
    return w == 2 ? NULL : (void *)1;
}

Test(server, start_errors, .timeout = 30)
{
    struct http_server_app app = test_app;
    struct http_server_config cfg = {.host = "127.0.0.1", .loops = 1, .workers = 4};
    struct http_server *s = NULL, *s2 = NULL;
    int fd;
    struct sockaddr_in a = {.sin_family = AF_INET};

    app.worker_init = fail_init;
    cr_assert_eq(http_server_start(&cfg, &app, &s), CAIRN_EIO);
    app.worker_init = NULL;
    app.handle = NULL;
    cr_assert_eq(http_server_start(&cfg, &app, &s), CAIRN_EINVAL);
    cfg.host = "not an address";
    cr_assert_eq(http_server_start(&cfg, &test_app, &s), CAIRN_EINVAL);
    /* a port someone else holds without SO_REUSEPORT */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 4), 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    cfg.host = "127.0.0.1";
    cfg.port = ntohs(a.sin_port);
    cr_assert_eq(http_server_start(&cfg, &test_app, &s2), CAIRN_EIO);
    cr_assert_eq(errno, EADDRINUSE);
    close(fd);
}

Test(server, sizes_and_head, .timeout = 60)
{
    struct http_server *s = start(1 << 20, 2, 4);
    struct cl *c = cl_open(http_server_port(s));
    static const uint64_t sizes[] = {0, 1, 4095, 4096, 65536, 1000003, 5u << 20};
    struct resp r;
    char v[64];

    for (unsigned i = 0; i < CAIRN_ARRAY_SIZE(sizes); i++) {
        cr_assert_eq(cl_sendf(c, "GET /size?n=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n", sizes[i]),
                     0);
        cr_assert_eq(cl_response(c, &r, false, true), 0);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.clen, (int64_t)sizes[i]);
        cr_assert_eq(r.body_len, sizes[i]);
        cr_assert(r.pattern_ok);
        cr_assert_eq(
            cl_sendf(c, "GET /chunked?n=%" PRIu64 " HTTP/1.1\r\nHost: x\r\n\r\n", sizes[i]), 0);
        cr_assert_eq(cl_response(c, &r, false, true), 0);
        cr_assert(r.chunked);
        cr_assert_eq(r.body_len, sizes[i]);
        cr_assert(r.pattern_ok);
    }
    /* HEAD: the length, no body; the next response on the connection must parse */
    cr_assert_eq(cl_sendf(c, "HEAD /size?n=12345 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, true, false), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(resp_header(&r, "Content-Length", v, sizeof(v)), "12345");
    cr_assert_eq(cl_sendf(c, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, true, false), 0);
    cr_assert_eq(r.clen, 11);
    get_ok(c, "/hello", "hello world");
    cl_close(c);
    http_server_stop(s);
}

Test(server, put_64m_window_1m, .timeout = 120)
{
    struct http_server *s = start(1 << 20, 2, 4);
    struct cl *c = cl_open(http_server_port(s));
    uint64_t h;

    h = put_body(c, "/sum", 64u << 20, 7);
    expect_sum(c, 64u << 20, h);
    /* again on the same connection, through the slow reader */
    h = put_body(c, "/slow", 3u << 20, 99);
    expect_sum(c, 3u << 20, h);
    cl_close(c);
    http_server_stop(s);
}

static void send_chunked(struct cl *c, const char *path, uint64_t len, uint64_t *hash)
{
    static uint8_t buf[300000];
    uint64_t off = 0, h = FNV_INIT;
    unsigned step = 1;

    cr_assert_eq(
        cl_sendf(c, "PUT %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", path), 0);
    while (off < len) {
        size_t k = (size_t)CAIRN_MIN((uint64_t)(step * 997u % sizeof(buf)) + 1, len - off);

        pat_fill(off, buf, k);
        h = fnv(h, buf, k);
        cr_assert_eq(cl_sendf(c, "%zx;ext=1\r\n", k), 0);
        cr_assert_eq(cl_send(c, buf, k), 0);
        cr_assert_eq(cl_send(c, "\r\n", 2), 0);
        off += k;
        step = step * 3 + 1;
    }
    cr_assert_eq(cl_sendf(c, "0\r\nX-Trailer: t\r\n\r\n"), 0);
    *hash = h;
}

Test(server, echo_streams_both_ways, .timeout = 60)
{
    struct http_server *s = start(1 << 20, 2, 4);
    struct cl *c = cl_open(http_server_port(s));

    do_echo(c, 20u << 20, true);
    do_echo(c, 12345, true);
    get_ok(c, "/hello", "hello world");
    cl_close(c);
    http_server_stop(s);
}

Test(server, chunked_upload, .timeout = 60)
{
    struct http_server *s = start(1 << 20, 2, 4);
    struct cl *c = cl_open(http_server_port(s));
    uint64_t h;

    send_chunked(c, "/sum", 10u << 20, &h);
    expect_sum(c, 10u << 20, h);
    send_chunked(c, "/sum", 1, &h);
    expect_sum(c, 1, h);
    cr_assert_eq(cl_sendf(c, "PUT /sum HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                 0);
    expect_sum(c, 0, FNV_INIT);
    get_ok(c, "/hello", "hello world");
    cl_close(c);
    http_server_stop(s);
}

Test(server, bad_chunking, .timeout = 30)
{
    struct http_server *s = start(1 << 20, 1, 2);
    struct cl *c = cl_open(http_server_port(s));
    struct resp r;

    cr_assert_eq(cl_sendf(c, "PUT /sum HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5\r\nhello\r\nzz\r\n"),
                 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(r.body, cairn_strerror(CAIRN_EPROTO));
    cr_assert(r.close);
    cr_assert(cl_eof(c, 5000));
    cl_close(c);
    http_server_stop(s);
}

/* Run a shell command and return its stdout (malloc'd). */
static char *run(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    char *out = calloc(1, 65536);
    size_t n;

    cr_assert_not_null(f);
    n = fread(out, 1, 65535, f);
    out[n] = 0;
    pclose(f);
    return out;
}

Test(server, curl_chunked_and_continue, .timeout = 60)
{
    struct http_server *s = start(1 << 20, 2, 4);
    char path[] = "/tmp/cairn_srv_XXXXXX";
    int fd = mkstemp(path);
    static uint8_t buf[3 << 20];
    char cmd[512], want[128];
    char *out;

    cr_assert_geq(fd, 0);
    pat_fill(0, buf, sizeof(buf));
    cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    close(fd);
    snprintf(want, sizeof(want), "len=%zu hash=%016" PRIx64, sizeof(buf),
             fnv(FNV_INIT, buf, sizeof(buf)));
    /* curl reading stdin sends Transfer-Encoding: chunked */
    snprintf(cmd, sizeof(cmd), "curl -sS -T - http://127.0.0.1:%u/sum < %s", http_server_port(s),
             path);
    out = run(cmd);
    cr_assert_str_eq(out, want);
    free(out);
    /* Expect: 100-continue with a long expect timeout: the 100 must come from the server */
    snprintf(cmd, sizeof(cmd),
             "curl -sS --expect100-timeout 30 -H 'Expect: 100-continue' -w ' %%{http_code} "
             "%%{time_total}' -T %s http://127.0.0.1:%u/sum",
             path, http_server_port(s));
    out = run(cmd);
    cr_assert(!strncmp(out, want, strlen(want)), "curl said: %s", out);
    cr_assert(strtod(out + strlen(want) + 5, NULL) < 10.0, "curl waited: %s", out);
    free(out);
    unlink(path);
    http_server_stop(s);
}

Test(server, expect_continue, .timeout = 30)
{
    struct http_server *s = start(1 << 20, 1, 2);
    struct cl *c = cl_open(http_server_port(s));
    struct resp r;
    char line[256];
    uint8_t body[5000];

    /* the 100 comes before any body byte is sent */
    cr_assert_eq(cl_sendf(c, "PUT /sum HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                             "Expect: 100-continue\r\n\r\n"),
                 0);
    cr_assert_eq(cl_line(c, line, sizeof(line)), 0);
    cr_assert_str_eq(line, "HTTP/1.1 100 Continue");
    cr_assert_eq(cl_line(c, line, sizeof(line)), 0);
    cr_assert_str_eq(line, "");
    pat_fill(0, body, sizeof(body));
    cr_assert_eq(cl_send(c, body, sizeof(body)), 0);
    expect_sum(c, sizeof(body), fnv(FNV_INIT, body, sizeof(body)));
    /* a handler that answers without reading: no 100, final status, close */
    cr_assert_eq(cl_sendf(c, "PUT /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                             "Expect: 100-continue\r\n\r\n"),
                 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(r.close);
    cr_assert(cl_eof(c, 5000));
    cl_close(c);
    http_server_stop(s);
}

Test(server, keepalive_sequence, .timeout = 60)
{
    struct http_server *s = start(1 << 20, 2, 4);
    struct cl *c = cl_open(http_server_port(s));
    struct resp r;
    char peer[64];

    for (unsigned i = 0; i < 20; i++) {
        uint64_t len = (uint64_t)i * 77777u, h = put_body(c, "/sum", len, i);

        expect_sum(c, len, h);
        get_ok(c, "/hello", "hello world");
    }
    cr_assert_eq(cl_sendf(c, "GET /peer HTTP/1.1\r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    snprintf(peer, sizeof(peer), "127.0.0.1:");
    cr_assert(!strncmp(r.body, peer, strlen(peer)), "peer %s", r.body);
    /* Connection: close from the client is honoured */
    cr_assert_eq(cl_sendf(c, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert(r.close);
    cr_assert(cl_eof(c, 5000));
    cl_close(c);
    /* HTTP/1.0: closes by default, keeps alive when asked */
    c = cl_open(http_server_port(s));
    cr_assert_eq(cl_sendf(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_not(r.close);
    cr_assert_not_null(strstr(r.headers, "Connection: keep-alive"));
    cr_assert_eq(cl_sendf(c, "GET /hello HTTP/1.0\r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert(r.close);
    cr_assert(cl_eof(c, 5000));
    cl_close(c);
    http_server_stop(s);
}

Test(server, pipelined, .timeout = 60)
{
    struct http_server *s = start(1 << 20, 1, 4);
    struct cl *c = cl_open(http_server_port(s));
    static uint8_t body[300000];
    char *batch;
    size_t n;
    int hl;
    struct resp r;

    pat_fill(0, body, sizeof(body));
    batch = malloc(sizeof(body) + 4096);
    hl = sprintf(batch,
                 "GET /hello HTTP/1.1\r\n\r\n"
                 "PUT /sum HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
                 sizeof(body));
    memcpy(batch + hl, body, sizeof(body));
    n = (size_t)hl + sizeof(body);
    n += (size_t)sprintf(batch + n, "GET /size?n=100000 HTTP/1.1\r\n\r\n"
                                    "HEAD /hello HTTP/1.1\r\n\r\n"
                                    "GET /chunked?n=7 HTTP/1.1\r\n\r\n"
                                    "GET /hello HTTP/1.1\r\n\r\n");
    cr_assert_eq(cl_send(c, batch, n), 0);
    free(batch);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_str_eq(r.body, "hello world");
    expect_sum(c, sizeof(body), fnv(FNV_INIT, body, sizeof(body)));
    cr_assert_eq(cl_response(c, &r, false, true), 0);
    cr_assert_eq(r.body_len, 100000);
    cr_assert(r.pattern_ok);
    cr_assert_eq(cl_response(c, &r, true, false), 0);
    cr_assert_eq(r.clen, 11);
    cr_assert_eq(cl_response(c, &r, false, true), 0);
    cr_assert_eq(r.body_len, 7);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_str_eq(r.body, "hello world");
    cl_close(c);
    http_server_stop(s);
}

Test(server, bad_heads, .timeout = 30)
{
    struct http_server *s = start(0, 1, 2);
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nBad Header\r\n\r\n", 400},
        {"GET /x HTTP/2.0\r\n\r\n", 505},
        {"PUT /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    };
    struct resp r;
    char v[128];

    for (unsigned i = 0; i < CAIRN_ARRAY_SIZE(cases); i++) {
        struct cl *c = cl_open(http_server_port(s));

        cr_assert_eq(cl_sendf(c, "%s", cases[i].req), 0);
        cr_assert_eq(cl_response(c, &r, false, false), 0, "case %u", i);
        cr_assert_eq(r.status, cases[i].status, "case %u: %d", i, r.status);
        cr_assert(r.close);
        cr_assert(!strncmp(r.body, "error ", 6), "body %s", r.body);
        cr_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof(v)), "text/plain");
        cr_assert(cl_eof(c, 5000));
        cl_close(c);
    }
    /* an oversized head, after a good request on the same connection */
    {
        struct cl *c = cl_open(http_server_port(s));
        char *big = malloc(40000);

        get_ok(c, "/hello", "hello world");
        memset(big, 'a', 39999);
        big[39999] = 0;
        cr_assert_eq(cl_sendf(c, "GET /hello HTTP/1.1\r\nX-Big: %s\r\n\r\n", big), 0);
        free(big);
        cr_assert_eq(cl_response(c, &r, false, false), 0);
        cr_assert_eq(r.status, 431);
        cr_assert(r.close);
        cr_assert(cl_eof(c, 5000));
        cl_close(c);
    }
    /* still serving */
    {
        struct cl *c = cl_open(http_server_port(s));

        get_ok(c, "/hello", "hello world");
        cl_close(c);
    }
    http_server_stop(s);
}

Test(server, no_response_is_500, .timeout = 30)
{
    struct http_server *s = start(0, 1, 2);
    struct cl *c = cl_open(http_server_port(s));
    struct resp r;

    cr_assert_eq(cl_sendf(c, "GET /noresp HTTP/1.1\r\n\r\n"), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_eq(r.status, 500);
    cr_assert(r.close);
    cr_assert(cl_eof(c, 5000));
    cl_close(c);
    http_server_stop(s);
}

Test(server, unread_body, .timeout = 60)
{
    struct http_server *s = start(1 << 20, 1, 2);
    struct cl *c = cl_open(http_server_port(s));
    struct resp r;

    /* small unread body: discarded, the connection stays */
    put_body(c, "/noread", 200000, 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not(r.close);
    get_ok(c, "/hello", "hello world");
    /* small unread chunked body: the same */
    {
        uint64_t h;

        send_chunked(c, "/noread", 300000, &h);
    }
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_eq(r.status, 200);
    get_ok(c, "/hello", "hello world");
    /* too much to discard: the answer says close, and the server closes */
    {
        static uint8_t chunk[1 << 20];

        cr_assert_eq(cl_sendf(c, "PUT /noread HTTP/1.1\r\nContent-Length: %u\r\n\r\n", 64u << 20),
                     0);
        cr_assert_eq(cl_send(c, chunk, sizeof(chunk)), 0);
        cr_assert_eq(cl_response(c, &r, false, false), 0);
        cr_assert_eq(r.status, 200);
        cr_assert(r.close);
        cr_assert(cl_eof(c, 5000));
    }
    cl_close(c);
    http_server_stop(s);
}

Test(server, disconnect_mid_body, .timeout = 60)
{
    struct http_server *s = start(1 << 20, 1, 2);
    struct cl *c = cl_open(http_server_port(s));
    static uint8_t chunk[1 << 20];

    cr_assert_eq(cl_sendf(c, "PUT /watch HTTP/1.1\r\nContent-Length: %u\r\n\r\n", 10u << 20), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(cl_send(c, chunk, sizeof(chunk)), 0);
    cl_close(c);
    for (int i = 0; i < 500 && atomic_load(&watch_rc) == 1; i++)
        usleep(10000);
    cr_assert_eq(atomic_load(&watch_rc), CAIRN_EUNREACH);
    wait_idle();
    /* mid-response too: a client that goes away while a large GET streams */
    c = cl_open(http_server_port(s));
    cr_assert_eq(cl_sendf(c, "GET /size?n=%u HTTP/1.1\r\n\r\n", 1u << 30), 0);
    cr_assert_eq(cl_fill(c), 1);
    cl_close(c);
    wait_idle();
    c = cl_open(http_server_port(s));
    get_ok(c, "/hello", "hello world");
    cl_close(c);
    http_server_stop(s);
}

struct many_arg {
    unsigned port, id;
    int failures;
};

static void *many_client(void *p)
{
    struct many_arg *a = p;
    struct cl *c = cl_open(a->port);
    static __thread uint8_t buf[100000];
    struct resp r;
    char want[96];

    for (unsigned i = 0; i < 10; i++) {
        uint64_t len = 1000 + (a->id * 131 + i * 7919) % 90000;

        pat_fill(a->id, buf, (size_t)len);
        if (cl_sendf(c, "PUT /sum HTTP/1.1\r\nContent-Length: %" PRIu64 "\r\n\r\n", len) ||
            cl_send(c, buf, (size_t)len) || cl_response(c, &r, false, false)) {
            a->failures++;
            break;
        }
        snprintf(want, sizeof(want), "len=%" PRIu64 " hash=%016" PRIx64, len,
                 fnv(FNV_INIT, buf, (size_t)len));
        if (strcmp(r.body, want))
            a->failures++;
        if (cl_sendf(c, "GET /size?n=%" PRIu64 " HTTP/1.1\r\n\r\n", len) ||
            cl_response(c, &r, false, true) || r.body_len != len || !r.pattern_ok)
            a->failures++;
    }
    cl_close(c);
    return NULL;
}

Test(server, many_connections, .timeout = 120)
{
    struct http_server *s = start(256 << 10, 2, 8);
    enum { N = 50 };
    pthread_t t[N];
    struct many_arg a[N];

    for (unsigned i = 0; i < N; i++) {
        a[i] = (struct many_arg){.port = http_server_port(s), .id = i};
        cr_assert_eq(pthread_create(&t[i], NULL, many_client, &a[i]), 0);
    }
    for (unsigned i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(a[i].failures, 0, "client %u", i);
    }
    http_server_stop(s);
}

Test(server, connection_limit, .timeout = 30)
{
    struct http_server_config cfg = {.host = "127.0.0.1", .loops = 2, .workers = 2, .max_conns = 4};
    struct http_server *s = NULL;
    struct cl *c[5];

    cr_assert_eq(http_server_start(&cfg, &test_app, &s), 0);
    for (int i = 0; i < 4; i++) {
        c[i] = cl_open(http_server_port(s));
        get_ok(c[i], "/hello", "hello world");
    }
    c[4] = cl_open(http_server_port(s));
    cr_assert(cl_eof(c[4], 5000));
    cl_close(c[4]);
    cl_close(c[0]);
    usleep(200000);
    c[0] = cl_open(http_server_port(s));
    get_ok(c[0], "/hello", "hello world");
    for (int i = 0; i < 4; i++)
        cl_close(c[i]);
    http_server_stop(s);
}

Test(server, timeouts, .timeout = 30)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1", .loops = 1, .workers = 2, .idle_ms = 300, .body_ms = 300};
    struct http_server *s = NULL;
    struct cl *c;
    struct resp r;
    double t0;

    atomic_store(&watch_rc, 1);
    cr_assert_eq(http_server_start(&cfg, &test_app, &s), 0);
    /* idle keep-alive connection */
    c = cl_open(http_server_port(s));
    get_ok(c, "/hello", "hello world");
    t0 = now_s();
    cr_assert(cl_eof(c, 5000));
    cr_assert(now_s() - t0 >= 0.25 && now_s() - t0 < 3.0);
    cl_close(c);
    /* a head that trickles in: it must be whole within the idle time */
    c = cl_open(http_server_port(s));
    t0 = now_s();
    for (int i = 0; i < 40 && cl_send(c, "G", 1) == 0; i++)
        usleep(50000);
    cr_assert(cl_eof(c, 5000));
    cr_assert(now_s() - t0 < 2.5);
    cl_close(c);
    /* a body that stalls */
    c = cl_open(http_server_port(s));
    cr_assert_eq(cl_sendf(c, "PUT /watch HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc"), 0);
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    cr_assert_eq(r.status, 408);
    cr_assert(r.close);
    cr_assert_eq(atomic_load(&watch_rc), CAIRN_ETIMEDOUT);
    cr_assert(cl_eof(c, 5000));
    cl_close(c);
    /* a client that does not read a large response */
    c = cl_open(http_server_port(s));
    {
        int small = 4096;

        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    cr_assert_eq(cl_sendf(c, "GET /size?n=%u HTTP/1.1\r\n\r\n", 1u << 30), 0);
    wait_idle();
    cl_close(c);
    http_server_stop(s);
}

Test(server, stop_with_open_connections, .timeout = 60)
{
    struct http_server *s = start(1 << 20, 2, 4);
    struct cl *idle = cl_open(http_server_port(s));
    struct cl *body = cl_open(http_server_port(s));
    struct cl *big = cl_open(http_server_port(s));
    struct cl *half = cl_open(http_server_port(s));
    double t0;

    get_ok(idle, "/hello", "hello world");
    cr_assert_eq(cl_sendf(body, "PUT /watch HTTP/1.1\r\nContent-Length: 100000000\r\n\r\nxyz"), 0);
    cr_assert_eq(cl_sendf(big, "GET /size?n=%u HTTP/1.1\r\n\r\n", 1u << 30), 0);
    cr_assert_eq(cl_sendf(half, "GET /hello HTTP/1.1\r\nHost:"), 0);
    cr_assert_eq(cl_fill(big), 1);
    while (atomic_load(&handler_active) < 2)
        usleep(1000);
    t0 = now_s();
    http_server_stop(s);
    cr_assert(now_s() - t0 < 5.0);
    cr_assert_eq(atomic_load(&handler_active), 0);
    cr_assert_eq(atomic_load(&watch_rc), CAIRN_EUNREACH);
    cr_assert(cl_eof(idle, 5000));
    cr_assert(cl_eof(body, 5000));
    cr_assert(cl_eof(half, 5000));
    cl_close(idle);
    cl_close(body);
    cl_close(big);
    cl_close(half);
}

/* ---- throughput (CAIRN_BENCH_SERVER=1) ---- */

Test(server, bench_1g, .timeout = 300)
{
    const uint64_t len = 1ull << 30;
    struct http_server *s;
    struct cl *c;
    struct resp r;
    char line[4096];
    uint8_t *buf;
    double t0, t;
    uint64_t off = 0;

    if (!getenv("CAIRN_BENCH_SERVER"))
        cr_skip_test("set CAIRN_BENCH_SERVER=1");
    s = start(0, 2, 4);
    c = cl_open(http_server_port(s));
    buf = malloc(1 << 20);
    memset(buf, 0xa5, 1 << 20);

    t0 = now_s();
    cr_assert_eq(cl_sendf(c, "PUT /sink HTTP/1.1\r\nContent-Length: %" PRIu64 "\r\n\r\n", len), 0);
    while (off < len) {
        cr_assert_eq(cl_send(c, buf, 1 << 20), 0);
        off += 1 << 20;
    }
    cr_assert_eq(cl_response(c, &r, false, false), 0);
    t = now_s() - t0;
    cr_assert_eq(r.status, 200);
    fprintf(stderr, "PUT 1 GiB: %.0f MB/s\n", (double)len / t / 1e6);

    t0 = now_s();
    cr_assert_eq(cl_sendf(c, "GET /fill?n=%" PRIu64 " HTTP/1.1\r\n\r\n", len), 0);
    do {
        cr_assert_eq(cl_line(c, line, sizeof(line)), 0);
    } while (line[0]);
    off = 0;
    while (off < len) {
        if (c->off == c->len)
            cr_assert_eq(cl_fill(c), 1);
        off += c->len - c->off;
        c->off = c->len;
    }
    t = now_s() - t0;
    fprintf(stderr, "GET 1 GiB: %.0f MB/s\n", (double)len / t / 1e6);

    t0 = now_s();
    do_echo(c, len, false);
    t = now_s() - t0;
    fprintf(stderr, "echo 1 GiB (PUT and GET at once): %.0f MB/s each way\n",
            (double)len / t / 1e6);
    /* small requests, one at a time on one connection: the per-request round trip */
    t0 = now_s();
    for (unsigned i = 0; i < 20000; i++)
        get_ok(c, "/hello", NULL);
    t = now_s() - t0;
    fprintf(stderr, "GET /hello sequential: %.0f requests/s\n", 20000 / t);
    free(buf);
    cl_close(c);
    http_server_stop(s);
}
