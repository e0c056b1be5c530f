/*
 * out.c - output chunks and response heads for the HTTP server (see out.h).
 *
 * Heads are formatted by hand into one chunk sized up front, so a response is one allocation
 * and small bodies can follow in the same chunk (the `room`).
 */
#include "cnode/http/out.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/cairn.h"

struct http_out *http_out_new(size_t cap)
{
    struct http_out *o = malloc(sizeof(*o) + cap);

    if (o) {
        o->next = NULL;
        o->len = 0;
        o->cap = cap;
    }
    return o;
}

void http_out_free(struct http_out *o)
{
    while (o) {
        struct http_out *n = o->next;

        free(o);
        o = n;
    }
}

char *http_out_put(char *p, const void *s, size_t n)
{
    if (n) /* s may be NULL then */
        memcpy(p, s, n);
    return p + n;
}

static char *puts0(char *p, const char *s)
{
    return http_out_put(p, s, strlen(s));
}

/* RFC 1123 date, formatted by hand (strftime's names follow the locale); cached per second
 * per thread. */
static const char *http_date(void)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static __thread time_t last = -1;
    static __thread char buf[40];
    time_t now = time(NULL);
    struct tm tm;

    if (now != last) {
        gmtime_r(&now, &tm);
        snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        last = now;
    }
    return buf;
}

static size_t hname_len(const struct http_header *h)
{
    return h->name_len ? h->name_len : strlen(h->name);
}

static size_t hvalue_len(const struct http_header *h)
{
    return h->value_len ? h->value_len : strlen(h->value);
}

/* Headers the server writes itself; a handler's copy of them is dropped. */
static bool managed_header(const char *name, size_t len)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "connection", "date",
                                        "server"};

    for (unsigned i = 0; i < CAIRN_ARRAY_SIZE(names); i++)
        if (strlen(names[i]) == len && !strncasecmp(names[i], name, len))
            return true;
    return false;
}

bool http_out_header_ok(const struct http_header *h)
{
    size_t nl, vl;

    if (!h->name || !h->value)
        return false;
    nl = hname_len(h);
    vl = hvalue_len(h);
    if (!nl)
        return false;
    for (size_t i = 0; i < nl; i++) {
        unsigned char ch = (unsigned char)h->name[i];

        if (ch <= ' ' || ch >= 0x7f || ch == ':')
            return false;
    }
    for (size_t i = 0; i < vl; i++) {
        unsigned char ch = (unsigned char)h->value[i];

        if ((ch < ' ' && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

struct http_out *http_out_head(const struct http_out_head_spec *h, size_t room)
{
    const char *reason = http_status_reason(h->status);
    size_t size = 64 + strlen(reason) + 160;
    struct http_out *o;
    char num[32];
    char *p;

    for (unsigned i = 0; i < h->nheaders; i++)
        size += hname_len(&h->headers[i]) + hvalue_len(&h->headers[i]) + 4;
    if (h->ctype)
        size += strlen(h->ctype) + 16;
    o = http_out_new(size + room);
    if (!o)
        return NULL;
    p = o->data;
    p += snprintf(p, 64 + strlen(reason), "HTTP/1.1 %d %s\r\n", h->status, reason);
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *x = &h->headers[i];
        size_t nl = hname_len(x);

        if (managed_header(x->name, nl))
            continue;
        p = http_out_put(p, x->name, nl);
        p = http_out_put(p, ": ", 2);
        p = http_out_put(p, x->value, hvalue_len(x));
        p = http_out_put(p, "\r\n", 2);
    }
    if (h->ctype) {
        p = puts0(p, "Content-Type: ");
        p = puts0(p, h->ctype);
        p = http_out_put(p, "\r\n", 2);
    }
    p = puts0(p, "Date: ");
    p = puts0(p, http_date());
    p = puts0(p, "\r\nServer: Cairn\r\n");
    if (h->framing == HTTP_FRAMING_LENGTH) {
        snprintf(num, sizeof(num), "%lld", (long long)h->length);
        p = puts0(p, "Content-Length: ");
        p = puts0(p, num);
        p = http_out_put(p, "\r\n", 2);
    } else if (h->framing == HTTP_FRAMING_CHUNKED) {
        p = puts0(p, "Transfer-Encoding: chunked\r\n");
    }
    if (h->close)
        p = puts0(p, "Connection: close\r\n");
    else if (h->keepalive10)
        p = puts0(p, "Connection: keep-alive\r\n");
    p = http_out_put(p, "\r\n", 2);
    o->len = (size_t)(p - o->data);
    assert(o->len <= size);
    return o;
}
