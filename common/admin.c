/*
 * admin.c - the operators' HTTP endpoint of admin.h.
 *
 * The thread polls the listening socket and a pipe; admin_stop writes to the pipe, so stopping
 * never depends on a signal or on closing a descriptor another thread is blocked in.  A
 * request is read until the blank line that ends its head (a body is never read: nothing here
 * takes one), parsed only as far as "METHOD SP PATH SP HTTP/x", answered with
 * Content-Length and "Connection: close", and the connection closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/admin.h"
#include "common/cairn.h"
#include "common/log.h"

#define TAG "admin"

struct admin_server {
    struct metrics *m;
    int fd;
    int stop_pipe[2];
    unsigned port;
    pthread_t thread;
};

/* Write all of len bytes (the socket has a send deadline). */
static int send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return CAIRN_EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void answer(int fd, int status, const char *reason, const char *type, const char *body,
                   size_t len, bool head_only)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n",
                     status, reason, type, len, status == 405 ? "Allow: GET, HEAD\r\n" : "");

    if (n < 0 || (size_t)n >= sizeof(head))
        return;
    if (send_all(fd, head, (size_t)n) == 0 && !head_only && len)
        send_all(fd, body, len);
}

static void answer_text(int fd, int status, const char *reason, const char *text, bool head_only)
{
    answer(fd, status, reason, "text/plain; charset=utf-8", text, strlen(text), head_only);
}

/* Read a request head into buf (cap bytes).  Returns its length, 0 if the peer closed or went
 * silent before the blank line that ends it, -1 if it does not fit, -2 if it holds a NUL. */
static ssize_t read_head(int fd, char *buf, size_t cap)
{
    size_t len = 0;

    while (len < cap - 1) {
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        len += (size_t)n;
        buf[len] = 0;
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return (ssize_t)len;
        if (memchr(buf, 0, len)) /* the string functions below would stop there */
            return -2;
    }
    return -1;
}

static void serve_conn(struct admin_server *s, int fd)
{
    char buf[ADMIN_MAX_REQUEST];
    char *method, *path, *version, *save = NULL, *q;
    bool head_only;
    ssize_t n = read_head(fd, buf, sizeof(buf));

    if (n == 0)
        return;
    if (n == -2) {
        answer_text(fd, 400, "Bad Request", "bad request\n", false);
        return;
    }
    if (n < 0) {
        answer_text(fd, 431, "Request Header Fields Too Large", "request too large\n", false);
        return;
    }
    buf[strcspn(buf, "\r\n")] = 0; /* the request line only */
    method = strtok_r(buf, " ", &save);
    path = strtok_r(NULL, " ", &save);
    version = strtok_r(NULL, " ", &save);
    if (!method || !path || !version || strtok_r(NULL, " ", &save) ||
        strncmp(version, "HTTP/1.", 7)) {
        answer_text(fd, 400, "Bad Request", "bad request\n", false);
        return;
    }
    if ((q = strchr(path, '?')))
        *q = 0; /* a scraper may add parameters; none changes the answer */
    head_only = !strcmp(method, "HEAD");
    if (strcmp(path, "/metrics") && strcmp(path, "/healthz")) {
        answer_text(fd, 404, "Not Found", "not found\n", head_only);
        return;
    }
    if (strcmp(method, "GET") && !head_only) {
        answer_text(fd, 405, "Method Not Allowed", "method not allowed\n", false);
        return;
    }
    if (!strcmp(path, "/healthz")) {
        answer_text(fd, 200, "OK", "ok\n", head_only);
        return;
    }
    {
        char *text;
        size_t len;

        if (metrics_render(s->m, &text, &len)) {
            answer_text(fd, 500, "Internal Server Error", "out of memory\n", head_only);
            return;
        }
        answer(fd, 200, "OK", METRICS_CONTENT_TYPE, text, len, head_only);
        free(text);
    }
}

/* Close after the answer without losing it: closing a socket with unread input (a head too
 * large, a body nobody reads) sends a reset, which may destroy the answer before the client
 * reads it.  So end our side, then drop what the client still sends (bounded: the receive
 * deadline and ADMIN_MAX_DRAIN bytes). */
static void linger_close(int fd)
{
    char sink[4096];
    size_t left = ADMIN_MAX_DRAIN;
    ssize_t n;

    shutdown(fd, SHUT_WR);
    while (left && (n = recv(fd, sink, sizeof(sink), 0)) > 0)
        left -= CAIRN_MIN((size_t)n, left);
    close(fd);
}

static void *admin_main(void *arg)
{
    struct admin_server *s = arg;
    struct timeval tv = {.tv_sec = ADMIN_IO_TIMEOUT_MS / 1000,
                         .tv_usec = (ADMIN_IO_TIMEOUT_MS % 1000) * 1000};

    for (;;) {
        struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
                              {.fd = s->stop_pipe[0], .events = POLLIN}};
        int c;

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error(TAG, "poll: %s", strerror(errno));
            break;
        }
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue; /* the peer gave up already, or out of descriptors for now */
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        serve_conn(s, c);
        linger_close(c);
    }
    return NULL;
}

/* Split "HOST:PORT" or "[V6]:PORT" into host (cap bytes) and port. */
static int split_hostport(const char *hp, char *host, size_t cap, const char **port)
{
    const char *colon = hp ? strrchr(hp, ':') : NULL;
    size_t n;

    if (!colon || !colon[1])
        return CAIRN_EINVAL;
    n = (size_t)(colon - hp);
    if (n >= 2 && hp[0] == '[' && hp[n - 1] == ']') {
        hp++;
        n -= 2;
    }
    if (n == 0 || n >= cap)
        return CAIRN_EINVAL;
    memcpy(host, hp, n);
    host[n] = 0;
    *port = colon + 1;
    return 0;
}

static int listen_on(const char *hostport, int *fdp, unsigned *portp)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    char host[256];
    const char *port;
    int fd = -1, one = 1, rc;

    rc = split_hostport(hostport, host, sizeof(host), &port);
    if (rc || getaddrinfo(host, port, &hints, &ai)) {
        log_error(TAG, "%s: not a HOST:PORT this host can listen on", hostport ? hostport : "");
        return CAIRN_EINVAL;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto err_errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 16) ||
        getsockname(fd, (struct sockaddr *)&sa, &sl))
        goto err_errno;
    *portp = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                            : ((struct sockaddr_in *)&sa)->sin_port);
    *fdp = fd;
    freeaddrinfo(ai);
    return 0;

err_errno:
    log_error(TAG, "listen on %s: %s", hostport, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return CAIRN_EIO;
}

int admin_start(const char *hostport, struct metrics *m, struct admin_server **out)
{
    struct admin_server *s = calloc(1, sizeof(*s));
    int rc;

    if (!s)
        return CAIRN_ENOMEM;
    s->m = m;
    rc = listen_on(hostport, &s->fd, &s->port);
    if (rc)
        goto err_free;
    if (pipe2(s->stop_pipe, O_CLOEXEC)) {
        rc = CAIRN_EIO;
        goto err_close;
    }
    if (pthread_create(&s->thread, NULL, admin_main, s)) {
        rc = CAIRN_ENOMEM;
        goto err_pipe;
    }
    *out = s;
    return 0;

err_pipe:
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
err_close:
    close(s->fd);
err_free:
    free(s);
    return rc;
}

unsigned admin_port(const struct admin_server *s)
{
    return s->port;
}

void admin_stop(struct admin_server *s)
{
    if (!s)
        return;
    while (write(s->stop_pipe[1], "x", 1) < 0 && errno == EINTR)
        ;
    pthread_join(s->thread, NULL);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    close(s->fd);
    free(s);
}
