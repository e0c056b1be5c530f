/*
 * cairn-s3bench.c - S3 load generator: parallel PUT and GET of equal-sized objects.
 *
 * One file on purpose (about 1,400 lines): one program whose signer, HTTP client and runs are
 * used only here and only together.
 *
 *   cairn-s3bench [--cluster DIR|FILE] [--endpoints "URL URL"] [--access KEY] [--secret KEY]
 *                 [--region R] [--bucket B] [--size BYTES] [--count N] [--threads T]
 *                 [--runs R] [--op put|get|both] [--verify 0|1|2] [--watch NAME=PID,PID]
 *                 [--rm-bucket] [--keep]
 *
 * Each thread owns one keep-alive HTTP/1.1 connection (a plain socket) to one endpoint, the
 * threads dealt round-robin over the endpoints, and takes object numbers from a shared
 * counter, so a slow connection does not leave the others idle at the end of a run.  Requests
 * are signed with SigV4 in the Authorization header; bodies go as UNSIGNED-PAYLOAD so that
 * the client never hashes them (the server still computes the ETag's MD5).
 *
 * What is measured.  A run is count requests; its figure is count * size / wall time (decimal
 * GB/s) and count / wall time (ops/s), and the median over the runs is what is reported,
 * because the machines this runs on are small and shared.  Each PUT run writes a fresh set of
 * keys (overwrites would time a different path); the previous set is deleted, untimed, after
 * the next run, so at most two sets exist at once.  GET runs read the last set.  Bodies are
 * slices of one random buffer sent straight from it (one sendmsg() with the head, repeated
 * until the kernel took everything; no copy per request); object i starts at its own offset
 * in the buffer, so a GET that returns another object's bytes is caught by the comparison
 * made on the first GET run (--verify 1, the default; 2 checks every run, 0 none).  Content
 * length is checked on every GET.
 *
 * --watch NAME=PID[,PID...] (up to 4) adds the CPU time those processes used during the
 * timed runs, in cores (CPU seconds per wall second), next to the client's own, so that a
 * result says which side ran out of CPU.
 *
 * The bucket is created if missing and left in place at the end (empty): --rm-bucket removes
 * it if this run created it.  (Removing a bucket from which more than a page of keys was just
 * deleted currently never finishes on the C-node, so it is not the default.)
 *
 * Any response other than 2xx is an error: the status and the head of the body are printed,
 * the remaining work stops, the objects written are deleted, and the exit status is 1.
 * Besides the human-readable lines, each reported operation ends with one line
 * "RESULT op=put size=... gbps=... ops=..." for scripts (tools/s3bench).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/cairn.h"
#include "client/env.h"

#define MAX_ENDPOINTS 64
#define MAX_THREADS 256
#define MAX_RUNS 31
#define MAX_COUNT (1u << 24)
#define MAX_WATCH 4
#define MAX_WATCH_PIDS 64
#define RBUF_SIZE (256u << 10) /* per-connection receive buffer */
#define RESP_HEAD_MAX (16u << 10)
#define REQ_HEAD_MAX 2048u
#define LINE_MAX_BYTES 1024u  /* a chunk-size or trailer line */
#define KEEP_BYTES 512u       /* head of an error body kept for the message */
#define BODY_SLACK (1u << 20) /* object i starts at (8 * i) % BODY_SLACK in the buffer */
#define IO_TIMEOUT_S 120
#define PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGNED_HEADERS "host;x-amz-content-sha256;x-amz-date"

struct endpoint {
    char url[300];
    char hostport[280]; /* the Host header, exactly as signed */
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* One keep-alive connection, used by one thread at a time. */
struct conn {
    const struct endpoint *ep;
    int fd;          /* -1: connect on the next request */
    unsigned served; /* responses read on this socket: a reused one may have been closed */
    char *rbuf;      /* RBUF_SIZE */
    size_t rpos, rlen;
    char key_date[9]; /* the day key was derived for */
    uint8_t key[32];  /* SigV4 signing key */
};

struct resp {
    int status;
    int64_t length; /* Content-Length, -1 if absent */
    bool chunked, close;
    uint64_t body_bytes;
    const uint8_t *expect; /* if set, the body must equal expect[0 .. expect_len) */
    size_t expect_len;
    bool mismatch;
    char keep[KEEP_BYTES + 1];
    size_t keep_len;
};

struct watch {
    char name[16];
    unsigned n;
    pid_t pids[MAX_WATCH_PIDS];
};

struct bench {
    struct endpoint eps[MAX_ENDPOINTS];
    unsigned neps;
    const char *access, *secret, *region, *bucket;
    char prefix[64];
    size_t size;
    unsigned count, threads, runs, verify;
    bool do_put, do_get, rm_bucket, keep;
    uint8_t *data; /* size + BODY_SLACK random bytes */
    struct conn conns[MAX_THREADS];
    struct watch watch[MAX_WATCH];
    unsigned nwatch;
    atomic_bool failed;
};

enum op { OP_PUT, OP_GET, OP_DELETE };
static const char *const op_names[] = {"PUT", "GET", "DELETE"};

struct phase {
    struct bench *b;
    enum op op;
    unsigned set; /* key set */
    bool verify;  /* GET: compare the bodies with the buffer */
    bool cleanup; /* DELETE after the fact: 404 is fine, failures are counted, not fatal */
    atomic_uint next;
    atomic_uint errors;
    uint64_t *lat_ns; /* per object, or NULL */
};

struct worker {
    struct phase *ph;
    unsigned t;
    pthread_t tid;
};

/* CPU used during the timed runs of one operation: the client and each watched group. */
struct cpu_acc {
    double client_s;
    double watch_s[MAX_WATCH];
    double wall_s;
};

/* ---- small helpers ---- */

static uint64_t now_ns(void)
{
    return cairn_now_ns();
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(const double *v, unsigned n)
{
    double s[MAX_RUNS];

    memcpy(s, v, n * sizeof(*v));
    qsort(s, n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static void to_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void hmac256(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32])
{
    unsigned int n = 32;

    HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &n);
}

static void sha256_hex(const void *msg, size_t len, char out[65])
{
    uint8_t d[32];
    unsigned int n = 32;

    EVP_Digest(msg, len, d, &n, EVP_sha256(), NULL);
    to_hex(d, 32, out);
}

static void format_size(size_t bytes, char *out, size_t cap)
{
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0)
        snprintf(out, cap, "%zu MiB", bytes >> 20);
    else if (bytes >= 1024 && bytes % 1024 == 0)
        snprintf(out, cap, "%zu KiB", bytes >> 10);
    else
        snprintf(out, cap, "%zu B", bytes);
}

/* "64M", "4k", "4096": binary multiples.  Returns false on junk or overflow. */
static bool parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    else if (*end == 'B')
        end++;
    if (*end || v > (SIZE_MAX >> shift))
        return false;
    *out = (size_t)v << shift;
    return true;
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

/* Characters that need no escaping in a canonical URI, so paths are used as they are. */
static bool safe_path(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '.' || *s == '_' || *s == '~' || *s == '/'))
            return false;
    return true;
}

/* ---- endpoints ---- */

/* "http://HOST:PORT[/]" or "HOST:PORT"; HOST may be [v6]. */
static int endpoint_parse(const char *url, size_t len, struct endpoint *ep)
{
    char host[256], port[16];
    const char *p = url, *e = url + len, *colon;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    size_t hl;
    int rc;

    if (len >= sizeof(ep->url))
        return -1;
    memcpy(ep->url, url, len);
    ep->url[len] = '\0';
    if (len > 7 && strncasecmp(p, "http://", 7) == 0)
        p += 7;
    else if (memchr(url, '/', len) && strstr(ep->url, "://"))
        return -1; /* https or another scheme */
    if (e > p && e[-1] == '/')
        e--;
    colon = e;
    while (colon > p && colon[-1] != ':' && colon[-1] != ']')
        colon--;
    if (colon == p || colon[-1] != ':' || colon == e || (size_t)(e - colon) >= sizeof(port))
        return -1;
    memcpy(port, colon, (size_t)(e - colon));
    port[e - colon] = '\0';
    hl = (size_t)(colon - 1 - p);
    if (hl + 1 + strlen(port) + 1 > sizeof(ep->hostport) || hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(ep->hostport, p, (size_t)(e - p));
    ep->hostport[e - p] = '\0';
    if (p[0] == '[' && p[hl - 1] == ']') {
        memcpy(host, p + 1, hl - 2);
        host[hl - 2] = '\0';
    } else {
        memcpy(host, p, hl);
        host[hl] = '\0';
    }
    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        fprintf(stderr, "cairn-s3bench: %s: %s\n", ep->url, gai_strerror(rc));
        return -1;
    }
    memcpy(&ep->addr, ai->ai_addr, ai->ai_addrlen);
    ep->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static int endpoints_parse(const char *list, struct bench *b)
{
    const char *p = list;

    b->neps = 0;
    while (*p) {
        size_t n;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        n = strcspn(p, " \t,");
        if (n == 0)
            break;
        if (b->neps == MAX_ENDPOINTS) {
            fprintf(stderr, "cairn-s3bench: more than %d endpoints\n", MAX_ENDPOINTS);
            return -1;
        }
        if (endpoint_parse(p, n, &b->eps[b->neps])) {
            fprintf(stderr, "cairn-s3bench: bad endpoint '%.*s' (want http://HOST:PORT)\n", (int)n,
                    p);
            return -1;
        }
        b->neps++;
        p += n;
    }
    if (b->neps == 0) {
        fprintf(stderr, "cairn-s3bench: no endpoints\n");
        return -1;
    }
    return 0;
}

/* ---- connections ---- */

static void conn_drop(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->rpos = c->rlen = 0;
}

static int conn_open(struct conn *c)
{
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    int one = 1, fd, rc;

    fd = socket(c->ep->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    /* The head and a small body leave in one sendmsg(); no reason to wait for an ACK. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)&c->ep->addr, c->ep->addrlen)) {
        rc = -errno;
        close(fd);
        return rc;
    }
    c->fd = fd;
    c->served = 0;
    c->rpos = c->rlen = 0;
    return 0;
}

/* Send every byte of iov (modified as it goes). */
static int send_iov(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Read more into the buffer.  Returns bytes read, 0 at EOF, or -errno. */
static ssize_t conn_fill(struct conn *c)
{
    ssize_t n;

    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rlen == RBUF_SIZE) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rlen == RBUF_SIZE)
        return -ENOBUFS;
    do
        n = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    c->rlen += (size_t)n;
    return n;
}

static int fill_or_fail(struct conn *c)
{
    ssize_t n = conn_fill(c);

    return n > 0 ? 0 : n == 0 ? -ECONNRESET : (int)n;
}

static void body_sink(struct resp *r, const char *p, size_t n)
{
    if (r->expect && !r->mismatch) {
        if (r->body_bytes + n > r->expect_len || memcmp(p, r->expect + r->body_bytes, n))
            r->mismatch = true;
    }
    if (r->keep_len < KEEP_BYTES) {
        size_t k = CAIRN_MIN(n, KEEP_BYTES - r->keep_len);

        memcpy(r->keep + r->keep_len, p, k);
        r->keep_len += k;
        r->keep[r->keep_len] = '\0';
    }
    r->body_bytes += n;
}

static int read_exact(struct conn *c, uint64_t n, struct resp *r)
{
    while (n > 0) {
        size_t take;
        int rc;

        if (c->rpos == c->rlen && (rc = fill_or_fail(c)))
            return rc;
        take = (size_t)CAIRN_MIN(n, (uint64_t)(c->rlen - c->rpos));
        body_sink(r, c->rbuf + c->rpos, take);
        c->rpos += take;
        n -= take;
    }
    return 0;
}

/* One line without its CRLF, NUL-terminated in out. */
static int read_line(struct conn *c, char *out, size_t cap)
{
    for (;;) {
        char *s = c->rbuf + c->rpos, *nl = memchr(s, '\n', c->rlen - c->rpos);
        int rc;

        if (nl) {
            size_t len = (size_t)(nl - s);

            if (len && s[len - 1] == '\r')
                len--;
            if (len >= cap)
                return -EPROTO;
            memcpy(out, s, len);
            out[len] = '\0';
            c->rpos += (size_t)(nl + 1 - s);
            return 0;
        }
        if (c->rlen - c->rpos >= cap)
            return -EPROTO;
        if ((rc = fill_or_fail(c)))
            return rc;
    }
}

static int read_chunked(struct conn *c, struct resp *r)
{
    char line[LINE_MAX_BYTES];

    for (;;) {
        char *end;
        unsigned long long n;
        int rc = read_line(c, line, sizeof(line));

        if (rc)
            return rc;
        errno = 0;
        n = strtoull(line, &end, 16);
        if (end == line || errno || (*end && *end != ';' && *end != ' '))
            return -EPROTO;
        if (n == 0)
            break;
        if ((rc = read_exact(c, n, r)) || (rc = read_line(c, line, sizeof(line))))
            return rc;
        if (line[0])
            return -EPROTO;
    }
    do { /* trailers, up to the empty line */
        int rc = read_line(c, line, sizeof(line));

        if (rc)
            return rc;
    } while (line[0]);
    return 0;
}

static bool header_is(const char *name, size_t nlen, const char *want)
{
    return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

static bool value_has(const char *v, size_t vlen, const char *token)
{
    size_t tl = strlen(token);

    for (size_t i = 0; i + tl <= vlen; i++)
        if (strncasecmp(v + i, token, tl) == 0)
            return true;
    return false;
}

static int parse_head(const char *s, size_t len, struct resp *r)
{
    const char *p, *e = s + len;

    if (len < 12 || strncmp(s, "HTTP/1.", 7) != 0 || s[8] != ' ')
        return -EPROTO;
    r->status = atoi(s + 9);
    if (r->status < 100 || r->status > 999)
        return -EPROTO;
    r->close = s[7] == '0'; /* HTTP/1.0 closes unless told otherwise */
    p = memchr(s, '\n', len);
    while (p && ++p < e) {
        const char *eol = memchr(p, '\n', (size_t)(e - p)), *colon, *v, *ve;
        size_t nlen;

        ve = eol ? eol : e;
        colon = memchr(p, ':', (size_t)(ve - p));
        if (colon) {
            nlen = (size_t)(colon - p);
            v = colon + 1;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (header_is(p, nlen, "content-length")) {
                char num[24];
                size_t vl = (size_t)(ve - v);

                if (vl == 0 || vl >= sizeof(num))
                    return -EPROTO;
                memcpy(num, v, vl);
                num[vl] = '\0';
                r->length = strtoll(num, NULL, 10);
            } else if (header_is(p, nlen, "transfer-encoding")) {
                r->chunked = value_has(v, (size_t)(ve - v), "chunked");
            } else if (header_is(p, nlen, "connection")) {
                if (value_has(v, (size_t)(ve - v), "close"))
                    r->close = true;
                else if (value_has(v, (size_t)(ve - v), "keep-alive"))
                    r->close = false;
            }
        }
        p = eol;
    }
    return 0;
}

/* Read one response (skipping 1xx) and its body.  *got is set once any byte arrived. */
static int read_response(struct conn *c, struct resp *r, bool *got)
{
    for (;;) {
        char *s = c->rbuf + c->rpos, *end = memmem(s, c->rlen - c->rpos, "\r\n\r\n", 4);
        int rc;

        if (!end) {
            if (c->rlen - c->rpos >= RESP_HEAD_MAX)
                return -EPROTO;
            if ((rc = fill_or_fail(c)))
                return rc;
            *got = true;
            continue;
        }
        r->length = -1;
        r->chunked = false;
        if ((rc = parse_head(s, (size_t)(end + 4 - s), r)))
            return rc;
        c->rpos += (size_t)(end + 4 - s);
        if (r->status >= 200)
            break;
    }
    if (r->status == 204 || r->status == 304)
        return 0;
    if (r->chunked)
        return read_chunked(c, r);
    if (r->length >= 0)
        return read_exact(c, (uint64_t)r->length, r);
    r->close = true; /* delimited by the end of the connection */
    for (;;) {
        ssize_t n;

        if (c->rpos < c->rlen) {
            body_sink(r, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rpos = c->rlen;
        }
        n = conn_fill(c);
        if (n == 0)
            return 0;
        if (n < 0)
            return (int)n;
    }
}

/* ---- SigV4 ---- */

/* The request head for method and path (already canonical: see safe_path()), signed. */
static int build_head(const struct bench *b, struct conn *c, const char *method, const char *path,
                      bool has_body, size_t len, char *out, size_t cap)
{
    char amz[17], creq[1024], sts[512], creq_hash[65], sig[65], clen[48] = "";
    uint8_t mac[32];
    time_t now = time(NULL);
    struct tm tm;
    int n;

    gmtime_r(&now, &tm);
    strftime(amz, sizeof(amz), "%Y%m%dT%H%M%SZ", &tm);
    if (memcmp(c->key_date, amz, 8) != 0) {
        char k[256];
        uint8_t k1[32], k2[32], k3[32];
        int kl = snprintf(k, sizeof(k), "AWS4%s", b->secret);

        if (kl < 0 || (size_t)kl >= sizeof(k))
            return -EINVAL;
        hmac256(k, (size_t)kl, amz, 8, k1);
        hmac256(k1, 32, b->region, strlen(b->region), k2);
        hmac256(k2, 32, "s3", 2, k3);
        hmac256(k3, 32, "aws4_request", 12, c->key);
        memcpy(c->key_date, amz, 8);
        c->key_date[8] = '\0';
    }
    n = snprintf(creq, sizeof(creq),
                 "%s\n%s\n\nhost:%s\nx-amz-content-sha256:" PAYLOAD
                 "\nx-amz-date:%s\n\n" SIGNED_HEADERS "\n" PAYLOAD,
                 method, path, c->ep->hostport, amz);
    if (n < 0 || (size_t)n >= sizeof(creq))
        return -ENAMETOOLONG;
    sha256_hex(creq, (size_t)n, creq_hash);
    n = snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%.8s/%s/s3/aws4_request\n%s", amz, amz,
                 b->region, creq_hash);
    if (n < 0 || (size_t)n >= sizeof(sts))
        return -ENAMETOOLONG;
    hmac256(c->key, 32, sts, (size_t)n, mac);
    to_hex(mac, 32, sig);
    if (has_body)
        snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", len);
    n = snprintf(out, cap,
                 "%s %s HTTP/1.1\r\nHost: %s\r\nx-amz-date: %s\r\nx-amz-content-sha256: " PAYLOAD
                 "\r\nAuthorization: AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/s3/aws4_request, "
                 "SignedHeaders=" SIGNED_HEADERS ", Signature=%s\r\n%s\r\n",
                 method, path, c->ep->hostport, amz, b->access, amz, b->region, sig, clen);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    return n;
}

/* Send one request and read its response into r (r->expect is kept).  Returns 0 when a
 * response was read, whatever its status, or -errno.  A reused keep-alive connection that
 * turns out closed before any response byte arrived is reopened and the request sent once
 * more (every request here is idempotent). */
static int do_request(const struct bench *b, struct conn *c, const char *method, const char *path,
                      const uint8_t *body, size_t len, bool has_body, struct resp *r)
{
    char head[REQ_HEAD_MAX];

    for (int attempt = 0;; attempt++) {
        struct iovec iov[2];
        bool got = false, reused;
        int hl, rc, src;

        r->status = 0;
        r->body_bytes = 0;
        r->mismatch = false;
        r->keep_len = 0;
        r->keep[0] = '\0';
        r->close = false;
        if (c->fd < 0 && (rc = conn_open(c)))
            return rc;
        reused = c->served > 0;
        hl = build_head(b, c, method, path, has_body, len, head, sizeof(head));
        if (hl < 0)
            return hl;
        iov[0] = (struct iovec){head, (size_t)hl};
        iov[1] = (struct iovec){(void *)body, has_body ? len : 0};
        src = send_iov(c->fd, iov, 2);
        /* Even if sending failed, the server may have answered (an early error) first. */
        rc = read_response(c, r, &got);
        if (!rc) {
            c->served++;
            if (r->close || src)
                conn_drop(c);
            return 0;
        }
        conn_drop(c);
        if (attempt == 0 && reused && !got)
            continue;
        return src ? src : rc;
    }
}

/* ---- operations ---- */

static const uint8_t *object_data(const struct bench *b, unsigned i)
{
    return b->data + (8ull * i) % BODY_SLACK;
}

static void object_path(const struct bench *b, unsigned set, unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "/%s/%s/s%u/%07u", b->bucket, b->prefix, set, i);
}

static void report_failure(const struct conn *c, const char *method, const char *path, int rc,
                           const struct resp *r, const char *what)
{
    if (rc)
        fprintf(stderr, "cairn-s3bench: %s %s via %s: %s\n", method, path, c->ep->url,
                strerror(-rc));
    else
        fprintf(stderr, "cairn-s3bench: %s %s via %s: HTTP %d%s%s\n%.*s%s", method, path,
                c->ep->url, r->status, what ? ": " : "", what ? what : "", (int)r->keep_len,
                r->keep, r->keep_len ? "\n" : "");
}

/* 0 if object i of the phase's set went as it should. */
static int object_op(struct phase *ph, struct conn *c, unsigned i)
{
    const struct bench *b = ph->b;
    const char *method = op_names[ph->op];
    char path[512];
    struct resp r = {0};
    const char *what = NULL;
    int rc;

    object_path(b, ph->set, i, path, sizeof(path));
    switch (ph->op) {
    case OP_PUT:
        rc = do_request(b, c, method, path, object_data(b, i), b->size, true, &r);
        break;
    case OP_GET:
        if (ph->verify) {
            r.expect = object_data(b, i);
            r.expect_len = b->size;
        }
        rc = do_request(b, c, method, path, NULL, 0, false, &r);
        break;
    default:
        rc = do_request(b, c, method, path, NULL, 0, false, &r);
        if (!rc && ph->cleanup && r.status == 404)
            return 0;
        break;
    }
    if (!rc && r.status / 100 == 2 && ph->op == OP_GET) {
        if (r.length != (int64_t)b->size)
            what = "wrong Content-Length";
        else if (r.body_bytes != b->size)
            what = "short body";
        else if (r.mismatch)
            what = "body differs from what was written";
        if (what) {
            r.keep_len = 0; /* the object's bytes say nothing useful */
            fprintf(stderr, "cairn-s3bench: GET %s: %s (Content-Length %lld, %llu bytes read)\n",
                    path, what, (long long)r.length, (unsigned long long)r.body_bytes);
            return -1;
        }
    }
    if (rc || r.status / 100 != 2) {
        if (!ph->cleanup || atomic_load(&ph->errors) == 0)
            report_failure(c, method, path, rc, &r, what);
        return -1;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct phase *ph = w->ph;
    struct bench *b = ph->b;
    struct conn *c = &b->conns[w->t];

    for (;;) {
        unsigned i;
        uint64_t t0;

        if (!ph->cleanup && atomic_load(&b->failed))
            break;
        i = atomic_fetch_add(&ph->next, 1);
        if (i >= b->count)
            break;
        t0 = now_ns();
        if (object_op(ph, c, i)) {
            atomic_fetch_add(&ph->errors, 1);
            if (!ph->cleanup)
                atomic_store(&b->failed, true);
        }
        if (ph->lat_ns)
            ph->lat_ns[i] = now_ns() - t0;
    }
    return NULL;
}

/* Run the phase on the bench's threads; wall time in *wall_ns.  Returns the error count. */
static unsigned run_phase(struct bench *b, struct phase *ph, uint64_t *wall_ns)
{
    struct worker w[MAX_THREADS];
    unsigned started = 0;
    uint64_t t0;

    atomic_init(&ph->next, 0);
    atomic_init(&ph->errors, 0);
    t0 = now_ns();
    for (unsigned t = 0; t < b->threads; t++) {
        w[t] = (struct worker){.ph = ph, .t = t};
        if (pthread_create(&w[t].tid, NULL, worker_main, &w[t])) {
            fprintf(stderr, "cairn-s3bench: pthread_create failed\n");
            atomic_fetch_add(&ph->errors, 1);
            if (!ph->cleanup)
                atomic_store(&b->failed, true);
            break;
        }
        started++;
    }
    if (started == 0) /* no thread: do the work here rather than not at all */
        worker_main(&(struct worker){.ph = ph, .t = 0});
    for (unsigned t = 0; t < started; t++)
        pthread_join(w[t].tid, NULL);
    if (wall_ns)
        *wall_ns = now_ns() - t0;
    return atomic_load(&ph->errors);
}

/* Delete sets lo..hi, untimed; failures are reported, not fatal. */
static void delete_sets(struct bench *b, unsigned lo, unsigned hi)
{
    for (unsigned s = lo; s <= hi; s++) {
        struct phase ph = {.b = b, .op = OP_DELETE, .set = s, .cleanup = true};
        unsigned errs = run_phase(b, &ph, NULL);

        if (errs)
            fprintf(stderr, "cairn-s3bench: %u of %u deletes of set %u failed\n", errs, b->count,
                    s);
    }
}

/* ---- CPU accounting ---- */

static double self_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* utime + stime of pid in seconds, 0 if it is gone. */
static double pid_cpu_s(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    /* After ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime: utime is the 12th field. */
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void cpu_sample(const struct bench *b, double *client, double *watch)
{
    *client = self_cpu_s();
    for (unsigned w = 0; w < b->nwatch; w++) {
        watch[w] = 0;
        for (unsigned i = 0; i < b->watch[w].n; i++)
            watch[w] += pid_cpu_s(b->watch[w].pids[i]);
    }
}

static int parse_watch(const char *arg, struct bench *b)
{
    const char *eq = strchr(arg, '='), *p;
    struct watch *w;
    size_t nl;

    if (b->nwatch == MAX_WATCH) {
        fprintf(stderr, "cairn-s3bench: at most %d --watch\n", MAX_WATCH);
        return -1;
    }
    w = &b->watch[b->nwatch];
    nl = eq ? (size_t)(eq - arg) : 0;
    if (nl == 0 || nl >= sizeof(w->name))
        goto bad;
    memcpy(w->name, arg, nl);
    w->name[nl] = '\0';
    w->n = 0;
    for (p = eq + 1; *p;) {
        char *end;
        long v = strtol(p, &end, 10);

        if (end == p || v <= 0 || w->n == MAX_WATCH_PIDS || (*end && *end != ','))
            goto bad;
        w->pids[w->n++] = (pid_t)v;
        p = *end ? end + 1 : end;
    }
    if (w->n == 0)
        goto bad;
    b->nwatch++;
    return 0;
bad:
    fprintf(stderr, "cairn-s3bench: bad --watch '%s' (want NAME=PID[,PID...])\n", arg);
    return -1;
}

/* ---- timed runs and the report ---- */

struct op_stats {
    double gbps[MAX_RUNS], ops[MAX_RUNS];
    uint64_t *lat; /* runs * count latencies */
    struct cpu_acc cpu;
};

static int timed_run(struct bench *b, struct phase *ph, unsigned run, struct op_stats *st)
{
    double c0, c1, w0[MAX_WATCH], w1[MAX_WATCH], secs;
    uint64_t wall;
    unsigned errs;
    char sz[32];

    ph->lat_ns = st->lat + (size_t)run * b->count;
    cpu_sample(b, &c0, w0);
    errs = run_phase(b, ph, &wall);
    cpu_sample(b, &c1, w1);
    if (errs)
        return -1;
    secs = (double)wall / 1e9;
    st->gbps[run] = (double)b->count * (double)b->size / (double)wall;
    st->ops[run] = (double)b->count / secs;
    st->cpu.client_s += c1 - c0;
    for (unsigned w = 0; w < b->nwatch; w++)
        st->cpu.watch_s[w] += w1[w] - w0[w];
    st->cpu.wall_s += secs;
    format_size(b->size, sz, sizeof(sz));
    printf("  %-3s run %2u/%u: %u x %s in %7.3f s  %8.3f GB/s  %9.1f ops/s%s\n", op_names[ph->op],
           run + 1, b->runs, b->count, sz, secs, st->gbps[run], st->ops[run],
           ph->verify ? "  (verified)" : "");
    fflush(stdout);
    return 0;
}

static void report(const struct bench *b, enum op op, struct op_stats *st)
{
    size_t n = (size_t)b->runs * b->count;
    double g = median(st->gbps, b->runs), o = median(st->ops, b->runs), p50, p99;
    double wall = st->cpu.wall_s > 0 ? st->cpu.wall_s : 1;
    const char *name = op == OP_PUT ? "put" : "get";

    qsort(st->lat, n, sizeof(*st->lat), cmp_u64);
    p50 = (double)st->lat[(n - 1) / 2] / 1e6;
    p99 = (double)st->lat[(n - 1) * 99 / 100] / 1e6;
    printf("  %-3s median: %8.3f GB/s  %9.1f ops/s   latency p50 %.2f ms, p99 %.2f ms\n",
           op_names[op], g, o, p50, p99);
    printf("      cpu (cores): client %.2f", st->cpu.client_s / wall);
    for (unsigned w = 0; w < b->nwatch; w++)
        printf(", %s %.2f", b->watch[w].name, st->cpu.watch_s[w] / wall);
    printf("\nRESULT op=%s size=%zu count=%u threads=%u endpoints=%u runs=%u gbps=%.4f "
           "ops=%.2f p50_ms=%.3f p99_ms=%.3f cpu_client=%.3f",
           name, b->size, b->count, b->threads, b->neps, b->runs, g, o, p50, p99,
           st->cpu.client_s / wall);
    for (unsigned w = 0; w < b->nwatch; w++)
        printf(" cpu_%s=%.3f", b->watch[w].name, st->cpu.watch_s[w] / wall);
    printf("\n");
    fflush(stdout);
}

/* PUT /bucket; 409 BucketAlreadyOwnedByYou is fine.  *created tells whether it is new. */
static int create_bucket(struct bench *b, bool *created)
{
    struct conn *c = &b->conns[0];
    char path[128];
    struct resp r = {0};
    int rc;

    snprintf(path, sizeof(path), "/%s", b->bucket);
    rc = do_request(b, c, "PUT", path, NULL, 0, true, &r);
    if (!rc && r.status / 100 == 2) {
        *created = true;
        return 0;
    }
    if (!rc && r.status == 409 && strstr(r.keep, "BucketAlreadyOwnedByYou")) {
        *created = false;
        return 0;
    }
    report_failure(c, "PUT", path, rc, &r, NULL);
    return -1;
}

static void delete_bucket(struct bench *b)
{
    struct conn *c = &b->conns[0];
    char path[128];
    struct resp r = {0};
    int rc;

    snprintf(path, sizeof(path), "/%s", b->bucket);
    rc = do_request(b, c, "DELETE", path, NULL, 0, false, &r);
    if (rc || r.status / 100 != 2)
        report_failure(c, "DELETE", path, rc, &r, "(bucket left in place)");
}

static int fill_random(uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(p, CAIRN_MIN(len, (size_t)1 << 20), 0);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: cairn-s3bench [options]\n"
               "  --cluster DIR|FILE   read S3_ENDPOINTS, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION\n"
               "                       from DIR/cluster.env (default: the same environment "
               "variables)\n"
               "  --endpoints \"URL ..\" http://HOST:PORT, threads dealt round-robin over them\n"
               "  --access KEY --secret KEY --region R\n"
               "  --bucket B           (s3bench; created if missing)\n"
               "  --rm-bucket          remove the bucket at the end if it was created here\n"
               "  --keep               leave the last set of objects in place (data to load)\n"
               "  --prefix P           key prefix (s3bench-PID)\n"
               "  --size BYTES         object size, K/M/G suffixes binary (64M)\n"
               "  --count N            objects per run (16)\n"
               "  --threads T          connections, one per thread (4)\n"
               "  --runs R             timed runs per operation, median reported (5)\n"
               "  --op put|get|both    (both); get alone writes the objects once, untimed\n"
               "  --verify 0|1|2       compare GET bodies: never, first run (default), every run\n"
               "  --watch NAME=PID,..  report the CPU those processes use during timed runs\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"cluster", required_argument, NULL, 'c'},
                                         {"endpoints", required_argument, NULL, 'e'},
                                         {"access", required_argument, NULL, 'a'},
                                         {"secret", required_argument, NULL, 'k'},
                                         {"region", required_argument, NULL, 'g'},
                                         {"bucket", required_argument, NULL, 'b'},
                                         {"prefix", required_argument, NULL, 'p'},
                                         {"size", required_argument, NULL, 's'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"runs", required_argument, NULL, 'r'},
                                         {"op", required_argument, NULL, 'o'},
                                         {"verify", required_argument, NULL, 'v'},
                                         {"watch", required_argument, NULL, 'w'},
                                         {"rm-bucket", no_argument, NULL, 'R'},
                                         {"keep", no_argument, NULL, 'K'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    static struct bench bench; /* large (connections, endpoints): not on the stack */
    struct bench *b = &bench;
    const char *cluster = NULL, *endpoints = NULL, *access = NULL, *secret = NULL, *region = NULL,
               *op = "both";
    struct cl_env env = {0};
    struct op_stats put = {0}, get = {0};
    char envpath[4096], sz[32];
    unsigned lo_set = 0, hi_set = 0, get_set = 0, run;
    bool have_sets = false, created = false;
    struct stat sb;
    int c, rc = 1;

    b->bucket = "s3bench";
    b->size = 64u << 20;
    b->count = 16;
    b->threads = 4;
    b->runs = 5;
    b->verify = 1;
    snprintf(b->prefix, sizeof(b->prefix), "s3bench-%d", (int)getpid());
    while ((c = getopt_long(argc, argv, "c:e:a:k:g:b:p:s:n:t:r:o:v:w:RKh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cluster = optarg;
            break;
        case 'e':
            endpoints = optarg;
            break;
        case 'a':
            access = optarg;
            break;
        case 'k':
            secret = optarg;
            break;
        case 'g':
            region = optarg;
            break;
        case 'b':
            b->bucket = optarg;
            break;
        case 'p':
            if (strlen(optarg) >= sizeof(b->prefix) || !*optarg) {
                fprintf(stderr, "cairn-s3bench: --prefix too long\n");
                return 2;
            }
            snprintf(b->prefix, sizeof(b->prefix), "%s", optarg);
            break;
        case 's':
            if (!parse_size(optarg, &b->size) || b->size == 0 || b->size > (4ull << 30)) {
                fprintf(stderr, "cairn-s3bench: --size 1 byte .. 4 GiB\n");
                return 2;
            }
            break;
        case 'n':
            if (!parse_uint(optarg, 1, MAX_COUNT, &b->count)) {
                fprintf(stderr, "cairn-s3bench: --count 1..%u\n", MAX_COUNT);
                return 2;
            }
            break;
        case 't':
            if (!parse_uint(optarg, 1, MAX_THREADS, &b->threads)) {
                fprintf(stderr, "cairn-s3bench: --threads 1..%d\n", MAX_THREADS);
                return 2;
            }
            break;
        case 'r':
            if (!parse_uint(optarg, 1, MAX_RUNS, &b->runs)) {
                fprintf(stderr, "cairn-s3bench: --runs 1..%d\n", MAX_RUNS);
                return 2;
            }
            break;
        case 'o':
            op = optarg;
            break;
        case 'v':
            if (!parse_uint(optarg, 0, 2, &b->verify)) {
                fprintf(stderr, "cairn-s3bench: --verify 0, 1 or 2\n");
                return 2;
            }
            break;
        case 'w':
            if (parse_watch(optarg, b))
                return 2;
            break;
        case 'R':
            b->rm_bucket = true;
            break;
        case 'K':
            b->keep = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    b->do_put = strcmp(op, "put") == 0 || strcmp(op, "both") == 0;
    b->do_get = strcmp(op, "get") == 0 || strcmp(op, "both") == 0;
    if (!b->do_put && !b->do_get) {
        fprintf(stderr, "cairn-s3bench: --op put, get or both\n");
        return 2;
    }
    if (!safe_path(b->bucket) || strchr(b->bucket, '/') || !*b->bucket || strlen(b->bucket) > 63 ||
        !safe_path(b->prefix)) {
        fprintf(stderr, "cairn-s3bench: bucket and prefix: letters, digits, '-._~' (and '/' in "
                        "the prefix)\n");
        return 2;
    }

    /* Explicit options win over --cluster, which wins over the environment. */
    if (cluster) {
        if (stat(cluster, &sb) == 0 && S_ISDIR(sb.st_mode))
            snprintf(envpath, sizeof(envpath), "%s/cluster.env", cluster);
        else
            snprintf(envpath, sizeof(envpath), "%s", cluster);
        if ((rc = cl_env_load(envpath, &env))) {
            fprintf(stderr, "cairn-s3bench: %s: %s\n", envpath, cairn_strerror(rc));
            return 1;
        }
    }
#define PICK(var, name)                                                                            \
    do {                                                                                           \
        if (!var && cluster)                                                                       \
            var = cl_env_get(&env, name);                                                      \
        if (!var)                                                                                  \
            var = getenv(name);                                                                    \
    } while (0)
    PICK(endpoints, "S3_ENDPOINTS");
    PICK(access, "S3_ACCESS_KEY");
    PICK(secret, "S3_SECRET_KEY");
    PICK(region, "S3_REGION");
#undef PICK
    rc = 1;
    if (!region)
        region = "us-east-1";
    if (!endpoints || !access || !secret) {
        fprintf(stderr, "cairn-s3bench: need endpoints and keys: --cluster DIR, S3_ENDPOINTS/"
                        "S3_ACCESS_KEY/S3_SECRET_KEY, or --endpoints/--access/--secret\n");
        goto out_env;
    }
    if (strlen(secret) > 200 || strlen(access) > 128 || strlen(region) > 63) {
        fprintf(stderr, "cairn-s3bench: access key, secret or region too long\n");
        goto out_env;
    }
    b->access = access;
    b->secret = secret;
    b->region = region;
    if (endpoints_parse(endpoints, b))
        goto out_env;

    b->data = aligned_alloc(CAIRN_BLOCK, CAIRN_ALIGN_UP(b->size + BODY_SLACK, CAIRN_BLOCK));
    put.lat = calloc((size_t)b->runs * b->count, sizeof(uint64_t));
    get.lat = calloc((size_t)b->runs * b->count, sizeof(uint64_t));
    if (!b->data || !put.lat || !get.lat) {
        fprintf(stderr, "cairn-s3bench: out of memory\n");
        goto out_mem;
    }
    if (fill_random(b->data, b->size + BODY_SLACK)) {
        perror("cairn-s3bench: getrandom");
        goto out_mem;
    }
    for (unsigned t = 0; t < b->threads; t++)
        b->conns[t] = (struct conn){.ep = &b->eps[t % b->neps], .fd = -1};
    for (unsigned t = 0; t < b->threads; t++) {
        b->conns[t].rbuf = malloc(RBUF_SIZE);
        if (!b->conns[t].rbuf) {
            fprintf(stderr, "cairn-s3bench: out of memory\n");
            goto out_conns;
        }
    }

    format_size(b->size, sz, sizeof(sz));
    printf("cairn-s3bench: %u objects of %s, %u threads over %u endpoint%s, %u runs, "
           "bucket %s, median reported\n",
           b->count, sz, b->threads, b->neps, b->neps == 1 ? "" : "s", b->runs, b->bucket);
    fflush(stdout);
    if (create_bucket(b, &created))
        goto out_conns;

    if (b->do_put) {
        for (run = 0; run < b->runs; run++) {
            struct phase ph = {.b = b, .op = OP_PUT, .set = run};

            hi_set = run;
            have_sets = true;
            if (timed_run(b, &ph, run, &put))
                goto out_cleanup;
            if (run > 0) {
                delete_sets(b, run - 1, run - 1);
                lo_set = run;
            }
        }
        get_set = hi_set;
        report(b, OP_PUT, &put);
    } else {
        struct phase ph = {.b = b, .op = OP_PUT, .set = 0};

        have_sets = true;
        if (run_phase(b, &ph, NULL))
            goto out_cleanup;
    }
    if (b->do_get) {
        for (run = 0; run < b->runs; run++) {
            struct phase ph = {.b = b,
                               .op = OP_GET,
                               .set = get_set,
                               .verify = b->verify == 2 || (b->verify == 1 && run == 0)};

            if (timed_run(b, &ph, run, &get))
                goto out_cleanup;
        }
        report(b, OP_GET, &get);
    }
    rc = 0;

out_cleanup:
    if (have_sets && !(b->keep && rc == 0))
        delete_sets(b, lo_set, hi_set);
    if (created && b->rm_bucket)
        delete_bucket(b);
out_conns:
    for (unsigned t = 0; t < b->threads; t++) {
        conn_drop(&b->conns[t]);
        free(b->conns[t].rbuf);
    }
out_mem:
    free(get.lat);
    free(put.lat);
    free(b->data);
out_env:
    cl_env_fini(&env);
    return rc;
}
