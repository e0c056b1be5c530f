/* Unit tests for the metrics registry (common/metrics.h) and the operators' endpoint
 * (common/admin.h): the exact text format, escaping, cumulative histogram buckets, refused
 * names, concurrent updates, and answers to good and bad HTTP requests. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/admin.h"
#include "common/cairn.h"
#include "common/metrics.h"

static char *render(struct metrics *m)
{
    char *text;
    size_t len;

    cr_assert_eq(metrics_render(m, &text, &len), 0);
    cr_assert_eq(strlen(text), len);
    return text;
}

Test(metrics, counter_with_label_renders_help_type_and_series)
{
    static const char *const ops[] = {"get", "put"};
    struct metrics_desc d = {.name = "cairn_test_requests_total",
                             .help = "Requests served.",
                             .type = METRICS_COUNTER,
                             .label = "op",
                             .values = ops,
                             .nvalues = 2};
    struct metrics_family *f;
    struct metrics *m;
    char *t;

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_register(m, &d, &f), 0);
    metrics_add(f, 1, 3);
    metrics_add(f, 1, 2);
    cr_assert_eq(metrics_value(f, 1), 5);
    t = render(m);
    cr_assert_str_eq(t, "# HELP cairn_test_requests_total Requests served.\n"
                        "# TYPE cairn_test_requests_total counter\n"
                        "cairn_test_requests_total{op=\"get\"} 0\n"
                        "cairn_test_requests_total{op=\"put\"} 5\n");
    free(t);
    metrics_destroy(m);
}

Test(metrics, gauge_without_label_and_negative_value)
{
    struct metrics_desc d = {.name = "cairn_test_level", .help = "A level.", .type = METRICS_GAUGE};
    struct metrics_family *f;
    struct metrics *m;
    char *t;

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_register(m, &d, &f), 0);
    metrics_set(f, 0, -7);
    t = render(m);
    cr_assert_str_eq(t, "# HELP cairn_test_level A level.\n"
                        "# TYPE cairn_test_level gauge\n"
                        "cairn_test_level -7\n");
    free(t);
    metrics_destroy(m);
}

Test(metrics, label_values_and_help_are_escaped)
{
    static const char *const v[] = {"a\"b\\c\nd"};
    struct metrics_desc d = {.name = "x",
                             .help = "two\nlines \\ and \"quotes\"",
                             .type = METRICS_COUNTER,
                             .label = "k",
                             .values = v,
                             .nvalues = 1};
    struct metrics_family *f;
    struct metrics *m;
    char *t;

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_register(m, &d, &f), 0);
    t = render(m);
    /* HELP escapes backslash and newline only; label values the double quote too. */
    cr_assert_str_eq(t, "# HELP x two\\nlines \\\\ and \"quotes\"\n"
                        "# TYPE x counter\n"
                        "x{k=\"a\\\"b\\\\c\\nd\"} 0\n");
    free(t);
    metrics_destroy(m);
}

Test(metrics, histogram_buckets_are_cumulative_and_count_equals_inf)
{
    static const char *const ops[] = {"read"};
    static const uint64_t bounds[] = {10, 100};
    struct metrics_desc d = {.name = "lat",
                             .help = "h",
                             .type = METRICS_HISTOGRAM,
                             .label = "op",
                             .values = ops,
                             .nvalues = 1,
                             .bounds = bounds,
                             .nbounds = 2};
    struct metrics_family *f;
    struct metrics *m;
    char *t;

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_register(m, &d, &f), 0);
    metrics_observe(f, 0, 5);
    metrics_observe(f, 0, 10); /* on the bound: le="10" holds it */
    metrics_observe(f, 0, 50);
    metrics_observe(f, 0, 1000);
    t = render(m);
    cr_assert_str_eq(t, "# HELP lat h\n"
                        "# TYPE lat histogram\n"
                        "lat_bucket{op=\"read\",le=\"10\"} 2\n"
                        "lat_bucket{op=\"read\",le=\"100\"} 3\n"
                        "lat_bucket{op=\"read\",le=\"+Inf\"} 4\n"
                        "lat_sum{op=\"read\"} 1065\n"
                        "lat_count{op=\"read\"} 4\n");
    free(t);
    metrics_destroy(m);
}

Test(metrics, latency_histogram_renders_seconds)
{
    struct metrics_desc d = {.name = "d_seconds",
                             .help = "h",
                             .type = METRICS_HISTOGRAM,
                             .bounds = metrics_latency_ns,
                             .nbounds = METRICS_LATENCY_NBOUNDS,
                             .unit = METRICS_NS};
    struct metrics_family *f;
    struct metrics *m;
    char *t;

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_register(m, &d, &f), 0);
    metrics_observe(f, 0, 1500000); /* 1.5 ms */
    t = render(m);
    cr_assert(strstr(t, "d_seconds_bucket{le=\"0.0001\"} 0\n"), "%s", t);
    cr_assert(strstr(t, "d_seconds_bucket{le=\"0.001\"} 0\n"), "%s", t);
    cr_assert(strstr(t, "d_seconds_bucket{le=\"0.0025\"} 1\n"), "%s", t);
    cr_assert(strstr(t, "d_seconds_bucket{le=\"10\"} 1\n"), "%s", t);
    cr_assert(strstr(t, "d_seconds_bucket{le=\"+Inf\"} 1\n"), "%s", t);
    cr_assert(strstr(t, "d_seconds_sum 0.0015\n"), "%s", t);
    cr_assert(strstr(t, "d_seconds_count 1\n"), "%s", t);
    free(t);
    metrics_destroy(m);
}

static double forty_two(void *arg)
{
    return *(double *)arg;
}

Test(metrics, func_values_are_read_at_render)
{
    double v = 42;
    struct metrics *m;
    char *t;

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_func(m, "f_total", "h", METRICS_COUNTER, forty_two, &v), 0);
    v = 43;
    t = render(m);
    cr_assert_str_eq(t, "# HELP f_total h\n# TYPE f_total counter\nf_total 43\n");
    free(t);
    v = 0.0 / 0.0;
    t = render(m);
    cr_assert(strstr(t, "f_total NaN\n"), "%s", t);
    free(t);
    metrics_destroy(m);
}

Test(metrics, bad_names_bounds_and_duplicates_are_refused)
{
    static const char *const v[] = {"a"};
    static const uint64_t down[] = {10, 5};
    struct metrics_desc d = {.name = "ok", .help = "h", .type = METRICS_COUNTER};
    struct metrics_family *f;
    struct metrics *m;

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_register(m, &d, &f), 0);
    cr_assert_eq(metrics_register(m, &d, &f), CAIRN_EEXIST);
    cr_assert_null(f);
    d.name = "1abc";
    cr_assert_eq(metrics_register(m, &d, &f), CAIRN_EINVAL);
    d.name = "bad-name";
    cr_assert_eq(metrics_register(m, &d, &f), CAIRN_EINVAL);
    d.name = "good";
    d.label = "__reserved";
    d.values = v;
    d.nvalues = 1;
    cr_assert_eq(metrics_register(m, &d, &f), CAIRN_EINVAL);
    d.label = "le";
    cr_assert_eq(metrics_register(m, &d, &f), CAIRN_EINVAL);
    d.label = "op";
    d.nvalues = 0;
    cr_assert_eq(metrics_register(m, &d, &f), CAIRN_EINVAL);
    d.nvalues = 1;
    d.type = METRICS_HISTOGRAM;
    d.bounds = down;
    d.nbounds = 2;
    cr_assert_eq(metrics_register(m, &d, &f), CAIRN_EINVAL);
    d.nbounds = 0;
    cr_assert_eq(metrics_register(m, &d, &f), CAIRN_EINVAL);
    metrics_destroy(m);
}

Test(metrics, null_registry_and_family_do_nothing)
{
    struct metrics_desc d = {.name = "ok", .help = "h", .type = METRICS_COUNTER};
    struct metrics_family *f = (void *)1;
    char *t;
    size_t len;

    cr_assert_eq(metrics_register(NULL, &d, &f), 0);
    cr_assert_null(f);
    metrics_add(NULL, 0, 1);
    metrics_observe(NULL, 0, 1);
    metrics_set(NULL, 0, 1);
    cr_assert_eq(metrics_render(NULL, &t, &len), 0);
    cr_assert_eq(len, 0);
    free(t);
    metrics_destroy(NULL);
}

#define THREADS 4
#define ROUNDS 100000

static void *hammer(void *arg)
{
    struct metrics_family **fs = arg;

    for (int i = 0; i < ROUNDS; i++) {
        metrics_add(fs[0], 0, 1);
        metrics_observe(fs[1], 0, (uint64_t)(i % 3));
    }
    return NULL;
}

Test(metrics, concurrent_updates_are_not_lost)
{
    static const uint64_t bounds[] = {0, 1};
    struct metrics_desc c = {.name = "c_total", .help = "h", .type = METRICS_COUNTER};
    struct metrics_desc h = {
        .name = "h", .help = "h", .type = METRICS_HISTOGRAM, .bounds = bounds, .nbounds = 2};
    struct metrics_family *fs[2];
    pthread_t t[THREADS];
    struct metrics *m;
    char *text, want[128];

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_register(m, &c, &fs[0]), 0);
    cr_assert_eq(metrics_register(m, &h, &fs[1]), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, hammer, fs);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(metrics_value(fs[0], 0), THREADS * ROUNDS);
    text = render(m);
    snprintf(want, sizeof(want), "h_count %d\n", THREADS * ROUNDS);
    cr_assert(strstr(text, want), "%s", text);
    free(text);
    metrics_destroy(m);
}

/* ---- the endpoint ---- */

/* Send req to the server on port and return what came back (malloc'd). */
static char *exchange(unsigned port, const char *req, size_t len)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    char *out = calloc(1, 65536);
    size_t got = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ssize_t n;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(fd >= 0 && out);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (len)
        send(fd, req, len, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    while (got < 65535 && (n = recv(fd, out + got, 65535 - got, 0)) > 0)
        got += (size_t)n;
    close(fd);
    return out;
}

static char *ask(unsigned port, const char *req)
{
    return exchange(port, req, strlen(req));
}

Test(admin, serves_metrics_healthz_and_refuses_the_rest)
{
    struct metrics_desc d = {.name = "up_total", .help = "h", .type = METRICS_COUNTER};
    struct admin_server *s;
    struct metrics_family *f;
    struct metrics *m;
    char *r, big[ADMIN_MAX_REQUEST * 2];

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_register(m, &d, &f), 0);
    metrics_add(f, 0, 9);
    cr_assert_eq(admin_start("127.0.0.1:0", m, &s), 0);
    cr_assert_neq(admin_port(s), 0);

    r = ask(admin_port(s), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
    cr_assert(strstr(r, "Content-Type: text/plain; version=0.0.4"), "%s", r);
    cr_assert(strstr(r, "\r\n\r\n# HELP up_total h\n# TYPE up_total counter\nup_total 9\n"), "%s",
              r);
    free(r);
    r = ask(admin_port(s), "GET /healthz HTTP/1.0\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17) && strstr(r, "\r\n\r\nok\n"), "%s", r);
    free(r);
    r = ask(admin_port(s), "HEAD /metrics?x=1 HTTP/1.1\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 200", 12) && !strstr(r, "up_total"), "%s", r);
    free(r);
    r = ask(admin_port(s), "GET /nothing HTTP/1.1\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 404", 12), "%s", r);
    free(r);
    r = ask(admin_port(s), "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    cr_assert(!strncmp(r, "HTTP/1.1 405", 12) && strstr(r, "Allow: GET, HEAD"), "%s", r);
    free(r);
    r = ask(admin_port(s), "garbage\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 400", 12), "%s", r);
    free(r);
    r = ask(admin_port(s), "GET /metrics SMTP/1.0\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 400", 12), "%s", r);
    free(r);
    memset(big, 'a', sizeof(big));
    r = exchange(admin_port(s), big, sizeof(big));
    cr_assert(!strncmp(r, "HTTP/1.1 431", 12), "%s", r);
    free(r);
    r = exchange(admin_port(s), "GET /met\0rics HTTP/1.1\r\n\r\n", 26);
    cr_assert(!strncmp(r, "HTTP/1.1 400", 12), "%s", r);
    free(r);
    r = ask(admin_port(s), ""); /* connect and close: nothing to answer, nothing breaks */
    cr_assert_str_eq(r, "");
    free(r);
    r = ask(admin_port(s), "GET /healthz HTTP/1.1\r\n\r\n"); /* still serving */
    cr_assert(!strncmp(r, "HTTP/1.1 200", 12), "%s", r);
    free(r);
    admin_stop(s);
    admin_stop(NULL);
    metrics_destroy(m);
}

Test(admin, bad_addresses_are_refused)
{
    struct admin_server *s;

    cr_assert_eq(admin_start("127.0.0.1", NULL, &s), CAIRN_EINVAL);
    cr_assert_eq(admin_start("127.0.0.1:", NULL, &s), CAIRN_EINVAL);
    cr_assert_eq(admin_start(":80", NULL, &s), CAIRN_EINVAL);
    cr_assert_eq(admin_start("127.0.0.1:http", NULL, &s), CAIRN_EINVAL);
    cr_assert_eq(admin_start("127.0.0.1:0", NULL, &s), 0); /* no registry: /metrics is empty */
    admin_stop(s);
}

/* The per-operation set every server keeps: five families named from one prefix, and one
 * count() updating all of them (an error only when the request failed). */
Test(metrics, ops_set_registers_five_families_and_counts_each)
{
    static const char *const ops[] = {"get", "put"};
    const struct metrics_ops_desc d = {.prefix = "cairn_x", .label = "op", .values = ops,
                                       .nvalues = 2, .help_requests = "r", .help_errors = "e",
                                       .help_in = "i", .help_out = "o", .help_latency = "l"};
    struct metrics_ops o;
    struct metrics *m;
    char *t;

    cr_assert_eq(metrics_create(&m), 0);
    cr_assert_eq(metrics_ops_register(m, &d, &o), 0);
    metrics_ops_count(&o, 1, 0, 100, 7, 2000000);
    metrics_ops_count(&o, 1, 1, 50, 3, 500000000);
    cr_assert_eq(metrics_value(o.requests, 1), 2);
    cr_assert_eq(metrics_value(o.errors, 1), 1);
    cr_assert_eq(metrics_value(o.in, 1), 150);
    cr_assert_eq(metrics_value(o.out, 1), 10);
    cr_assert_eq(metrics_value(o.requests, 0), 0);
    t = render(m);
    cr_assert_not_null(strstr(t, "# TYPE cairn_x_requests_total counter\n"));
    cr_assert_not_null(strstr(t, "# TYPE cairn_x_errors_total counter\n"));
    cr_assert_not_null(strstr(t, "cairn_x_received_bytes_total{op=\"put\"} 150\n"));
    cr_assert_not_null(strstr(t, "cairn_x_sent_bytes_total{op=\"put\"} 10\n"));
    cr_assert_not_null(strstr(t, "# TYPE cairn_x_request_duration_seconds histogram\n"));
    cr_assert_not_null(strstr(t, "cairn_x_request_duration_seconds_count{op=\"put\"} 2\n"),
                       "%s", t);
    free(t);
    /* The same prefix again is refused: the names are taken. */
    cr_assert_eq(metrics_ops_register(m, &d, &o), CAIRN_EEXIST);
    metrics_destroy(m);
}
