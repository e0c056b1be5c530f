/*
 * metrics.c - the registry of metrics.h and its text rendering.
 *
 * A family owns one array of atomics: one cell per series for counters and gauges; for a
 * histogram, per series, one cell per bucket (the finite bounds, then +Inf) and one for the
 * sum.  Buckets are stored non-cumulative (an observation touches one cell) and summed when
 * rendered, which is where Prometheus wants them cumulative.
 *
 * The text format (version 0.0.4): "# HELP name text" (backslash and newline escaped),
 * "# TYPE name type", then one "name{label="value"} number" line per series, label values
 * escaped for backslash, double quote and newline; a histogram's series are name_bucket{...,
 * le="bound"} for every bound and "+Inf", name_sum and name_count.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/metrics.h"

const uint64_t metrics_latency_ns[METRICS_LATENCY_NBOUNDS] = {
    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,   25000000,
    50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000};

const uint64_t metrics_size_bytes[METRICS_SIZE_NBOUNDS] = {
    4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456};

struct metrics_family {
    struct metrics_family *next;
    enum metrics_type type;
    char *name, *help, *label;
    char **values;
    size_t nvalues; /* series: nvalues, or 1 without a label */
    uint64_t *bounds;
    size_t nbounds;
    double unit;
    size_t stride; /* cells per series */
    _Atomic uint64_t *cells;
    double (*fn)(void *arg);
    void *fn_arg;
};

struct metrics {
    pthread_mutex_t mu;
    struct metrics_family *head, **tail;
};

int metrics_create(struct metrics **out)
{
    struct metrics *m = calloc(1, sizeof(*m));

    if (!m)
        return CAIRN_ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    m->tail = &m->head;
    *out = m;
    return 0;
}

static void family_free(struct metrics_family *f)
{
    if (!f)
        return;
    for (size_t i = 0; f->values && i < f->nvalues; i++)
        free(f->values[i]);
    free(f->values);
    free(f->bounds);
    free((void *)f->cells);
    free(f->name);
    free(f->help);
    free(f->label);
    free(f);
}

void metrics_destroy(struct metrics *m)
{
    if (!m)
        return;
    while (m->head) {
        struct metrics_family *f = m->head;

        m->head = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* Prometheus' rules: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names without ':'. */
static bool name_valid(const char *s, bool label)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n >= METRICS_MAX_NAME)
        return false;
    if (label && !strncmp(s, "__", 2))
        return false; /* reserved for Prometheus itself */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (!label && c == ':') || (i > 0 && c >= '0' && c <= '9');

        if (!ok)
            return false;
    }
    return true;
}

static bool taken(const struct metrics *m, const char *name)
{
    for (const struct metrics_family *f = m->head; f; f = f->next)
        if (!strcmp(f->name, name))
            return true;
    return false;
}

static int desc_check(const struct metrics_desc *d)
{
    if (!name_valid(d->name, false) || (d->label && !name_valid(d->label, true)))
        return CAIRN_EINVAL;
    if (d->label ? d->nvalues == 0 || !d->values : d->nvalues != 0)
        return CAIRN_EINVAL;
    if (d->nvalues > METRICS_MAX_SERIES || (d->label && !strcmp(d->label, "le")))
        return CAIRN_EINVAL; /* "le" is the histogram's own label */
    for (size_t i = 0; i < d->nvalues; i++)
        if (!d->values[i])
            return CAIRN_EINVAL;
    if (d->type == METRICS_HISTOGRAM) {
        if (!d->bounds || d->nbounds == 0 || d->nbounds > METRICS_MAX_BUCKETS)
            return CAIRN_EINVAL;
        for (size_t i = 1; i < d->nbounds; i++)
            if (d->bounds[i] <= d->bounds[i - 1])
                return CAIRN_EINVAL;
    } else if (d->type != METRICS_COUNTER && d->type != METRICS_GAUGE) {
        return CAIRN_EINVAL;
    }
    return 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static int family_new(const struct metrics_desc *d, struct metrics_family **out)
{
    struct metrics_family *f = calloc(1, sizeof(*f));
    size_t series;

    if (!f)
        return CAIRN_ENOMEM;
    f->type = d->type;
    f->nvalues = d->nvalues;
    f->nbounds = d->type == METRICS_HISTOGRAM ? d->nbounds : 0;
    f->unit = d->unit > 0 ? d->unit : 1.0;
    f->stride = d->type == METRICS_HISTOGRAM ? d->nbounds + 2 : 1; /* buckets, +Inf, sum */
    series = d->label ? d->nvalues : 1;
    f->name = strdup(d->name);
    f->help = dup_or_empty(d->help);
    f->label = d->label ? strdup(d->label) : NULL;
    f->cells = calloc(series * f->stride, sizeof(*f->cells));
    if (!f->name || !f->help || (d->label && !f->label) || !f->cells)
        goto err;
    if (d->label) {
        f->values = calloc(d->nvalues, sizeof(*f->values));
        if (!f->values)
            goto err;
        for (size_t i = 0; i < d->nvalues; i++)
            if (!(f->values[i] = strdup(d->values[i])))
                goto err;
    }
    if (f->nbounds) {
        f->bounds = malloc(f->nbounds * sizeof(*f->bounds));
        if (!f->bounds)
            goto err;
        memcpy(f->bounds, d->bounds, f->nbounds * sizeof(*f->bounds));
    }
    *out = f;
    return 0;

err:
    family_free(f);
    return CAIRN_ENOMEM;
}

static int add_family(struct metrics *m, struct metrics_family *f)
{
    int rc = 0;

    pthread_mutex_lock(&m->mu);
    if (taken(m, f->name)) {
        rc = CAIRN_EEXIST;
    } else {
        *m->tail = f;
        m->tail = &f->next;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int metrics_register(struct metrics *m, const struct metrics_desc *d, struct metrics_family **out)
{
    struct metrics_family *f;
    int rc;

    *out = NULL;
    if (!m)
        return 0;
    rc = desc_check(d);
    if (rc)
        return rc;
    rc = family_new(d, &f);
    if (rc)
        return rc;
    rc = add_family(m, f);
    if (rc) {
        family_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int metrics_func(struct metrics *m, const char *name, const char *help, enum metrics_type type,
                 double (*fn)(void *arg), void *arg)
{
    struct metrics_desc d = {.name = name, .help = help, .type = type};
    struct metrics_family *f;
    int rc;

    if (!m)
        return 0;
    if (!fn || type == METRICS_HISTOGRAM || (rc = desc_check(&d)))
        return CAIRN_EINVAL;
    rc = family_new(&d, &f);
    if (rc)
        return rc;
    f->fn = fn;
    f->fn_arg = arg;
    rc = add_family(m, f);
    if (rc)
        family_free(f);
    return rc;
}

/* ---- updates: atomics only ---- */

void metrics_add(struct metrics_family *f, size_t i, uint64_t n)
{
    if (!f)
        return;
    assert(f->type == METRICS_COUNTER && i < (f->label ? f->nvalues : 1));
    atomic_fetch_add_explicit(&f->cells[i], n, memory_order_relaxed);
}

void metrics_set(struct metrics_family *f, size_t i, int64_t v)
{
    if (!f)
        return;
    assert(f->type == METRICS_GAUGE && i < (f->label ? f->nvalues : 1));
    atomic_store_explicit(&f->cells[i], (uint64_t)v, memory_order_relaxed);
}

void metrics_observe(struct metrics_family *f, size_t i, uint64_t v)
{
    _Atomic uint64_t *c;
    size_t b = 0;

    if (!f)
        return;
    assert(f->type == METRICS_HISTOGRAM && i < (f->label ? f->nvalues : 1));
    c = &f->cells[i * f->stride];
    while (b < f->nbounds && v > f->bounds[b]) /* le: a value on a bound belongs to it */
        b++;
    atomic_fetch_add_explicit(&c[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c[f->nbounds + 1], v, memory_order_relaxed);
}

int64_t metrics_value(const struct metrics_family *f, size_t i)
{
    if (!f || f->type == METRICS_HISTOGRAM || i >= (f->label ? f->nvalues : 1))
        return 0;
    return (int64_t)atomic_load_explicit(&f->cells[i], memory_order_relaxed);
}

/* ---- rendering ---- */

struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void buf_grow(struct buf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    if (b->oom || b->len + more + 1 <= b->cap)
        return;
    while (cap < b->len + more + 1)
        cap *= 2;
    p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void buf_put(struct buf *b, const char *s, size_t n)
{
    buf_grow(b, n);
    if (b->oom)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) { /* only names are long; they are bounded */
        b->oom = true;
        return;
    }
    buf_put(b, tmp, (size_t)n);
}

/* HELP text escapes backslash and newline; label values also the double quote. */
static void buf_escaped(struct buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_put(b, "\\\\", 2);
        else if (*s == '\n')
            buf_put(b, "\\n", 2);
        else if (quote && *s == '"')
            buf_put(b, "\\\"", 2);
        else
            buf_put(b, s, 1);
    }
}

/* A float as Prometheus parses it; 15 digits keep 1e-4 from printing as 0.000100...01. */
static void buf_double(struct buf *b, double v)
{
    if (isnan(v))
        buf_put(b, "NaN", 3);
    else if (isinf(v))
        buf_put(b, v > 0 ? "+Inf" : "-Inf", 4);
    else
        buf_printf(b, "%.15g", v);
}

/* name[suffix]{label="value"[,le="bound"]} */
static void series_head(struct buf *b, const struct metrics_family *f, const char *suffix, size_t i,
                        const char *le)
{
    bool labels = f->label || le;

    buf_put(b, f->name, strlen(f->name));
    buf_put(b, suffix, strlen(suffix));
    if (labels)
        buf_put(b, "{", 1);
    if (f->label) {
        buf_printf(b, "%s=\"", f->label);
        buf_escaped(b, f->values[i], true);
        buf_put(b, "\"", 1);
    }
    if (le)
        buf_printf(b, "%sle=\"%s\"", f->label ? "," : "", le);
    if (labels)
        buf_put(b, "}", 1);
    buf_put(b, " ", 1);
}

static void render_histogram(struct buf *b, const struct metrics_family *f, size_t i)
{
    const _Atomic uint64_t *c = &f->cells[i * f->stride];
    uint64_t cum = 0, sum;
    char le[64];

    for (size_t k = 0; k <= f->nbounds; k++) {
        cum += atomic_load_explicit(&c[k], memory_order_relaxed);
        if (k < f->nbounds)
            snprintf(le, sizeof(le), "%.15g", (double)f->bounds[k] * f->unit);
        else
            snprintf(le, sizeof(le), "+Inf");
        series_head(b, f, "_bucket", i, le);
        buf_printf(b, "%llu\n", (unsigned long long)cum);
    }
    sum = atomic_load_explicit(&c[f->nbounds + 1], memory_order_relaxed);
    series_head(b, f, "_sum", i, NULL);
    if (f->unit == 1.0)
        buf_printf(b, "%llu", (unsigned long long)sum);
    else
        buf_double(b, (double)sum * f->unit);
    buf_put(b, "\n", 1);
    series_head(b, f, "_count", i, NULL); /* the +Inf bucket, so the two always agree */
    buf_printf(b, "%llu\n", (unsigned long long)cum);
}

static void render_family(struct buf *b, const struct metrics_family *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    size_t series = f->label ? f->nvalues : 1;

    buf_printf(b, "# HELP %s ", f->name);
    buf_escaped(b, f->help, false);
    buf_printf(b, "\n# TYPE %s %s\n", f->name, types[f->type]);
    for (size_t i = 0; i < series; i++) {
        if (f->fn) {
            series_head(b, f, "", i, NULL);
            buf_double(b, f->fn(f->fn_arg));
            buf_put(b, "\n", 1);
        } else if (f->type == METRICS_HISTOGRAM) {
            render_histogram(b, f, i);
        } else {
            uint64_t v = atomic_load_explicit(&f->cells[i], memory_order_relaxed);

            series_head(b, f, "", i, NULL);
            if (f->type == METRICS_GAUGE)
                buf_printf(b, "%lld\n", (long long)(int64_t)v);
            else
                buf_printf(b, "%llu\n", (unsigned long long)v);
        }
    }
}

int metrics_render(struct metrics *m, char **out, size_t *len)
{
    struct buf b = {0};

    buf_grow(&b, 0); /* an empty registry still renders a (empty) string */
    if (m) {
        pthread_mutex_lock(&m->mu);
        for (const struct metrics_family *f = m->head; f && !b.oom; f = f->next)
            render_family(&b, f);
        pthread_mutex_unlock(&m->mu);
    }
    if (b.oom) {
        free(b.p);
        return CAIRN_ENOMEM;
    }
    b.p[b.len] = 0;
    *out = b.p;
    *len = b.len;
    return 0;
}

/* ---- the per-operation families ---- */

int metrics_ops_register(struct metrics *m, const struct metrics_ops_desc *d,
                         struct metrics_ops *out)
{
    static const char *const suffix[5] = {"_requests_total", "_errors_total",
                                          "_received_bytes_total", "_sent_bytes_total",
                                          "_request_duration_seconds"};
    const char *help[5] = {d->help_requests, d->help_errors, d->help_in, d->help_out,
                           d->help_latency};
    struct metrics_family **fam[5] = {&out->requests, &out->errors, &out->in, &out->out,
                                      &out->latency};
    char name[METRICS_MAX_NAME];

    memset(out, 0, sizeof(*out));
    for (unsigned f = 0; f < 5; f++) {
        struct metrics_desc md = {.name = name, .help = help[f], .type = METRICS_COUNTER,
                                  .label = d->label, .values = d->values,
                                  .nvalues = d->nvalues};
        int rc;

        if ((size_t)snprintf(name, sizeof(name), "%s%s", d->prefix, suffix[f]) >= sizeof(name))
            return CAIRN_EINVAL;
        if (fam[f] == &out->latency) {
            md.type = METRICS_HISTOGRAM;
            md.bounds = metrics_latency_ns;
            md.nbounds = METRICS_LATENCY_NBOUNDS;
            md.unit = METRICS_NS;
        }
        rc = metrics_register(m, &md, fam[f]);
        if (rc)
            return rc;
    }
    return 0;
}

void metrics_ops_count(const struct metrics_ops *o, size_t i, int failed, uint64_t in,
                       uint64_t out, uint64_t ns)
{
    metrics_add(o->requests, i, 1);
    metrics_add(o->in, i, in);
    metrics_add(o->out, i, out);
    if (failed)
        metrics_add(o->errors, i, 1);
    metrics_observe(o->latency, i, ns);
}
