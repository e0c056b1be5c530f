/*
 * metrics.h - counters, gauges and histograms, rendered in the Prometheus text format.
 *
 * A registry (struct metrics) holds families; a family is one metric name with one series per
 * value of its one label (the operation: "PutObject", "frag_put", "READ"), or a single series
 * when it has no label.  The label values are fixed when the family is registered, so an
 * update is an index into an array of C11 atomics: many worker threads count at once without a
 * lock and without allocating, and a process that counts nothing pays nothing else.  Relaxed
 * atomics are enough: a scrape needs each number to be one that was true, not a snapshot of all
 * of them at one instant.
 *
 * Histograms count observations in fixed buckets.  Values are integers in a base unit (a
 * latency in nanoseconds, a size in bytes) so their sum is an atomic integer too; the family's
 * unit scales them when rendered (1e-9 turns nanoseconds into Prometheus' seconds).  A
 * histogram's _count is rendered as the sum of its buckets, so it always equals the +Inf bucket
 * even while observations land during a scrape.
 *
 * Gauges either hold a value set by their owner (metrics_set) or are read by a callback at
 * scrape time (metrics_func); a callback runs on the scraping thread and must be safe there.
 *
 * Registration and rendering take the registry's mutex; updates never do.  Every update and
 * registration accepts a NULL registry or family and does nothing, so code runs the same in a
 * process (or a test) that exports no metrics.
 */
#ifndef CAIRN_COMMON_METRICS_H
#define CAIRN_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_NAME 128u   /* bytes of a metric or label name */
#define METRICS_MAX_SERIES 256u /* label values of one family */
#define METRICS_MAX_BUCKETS 32u /* finite bucket bounds of one histogram */

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics;
struct metrics_family;

/* Latency buckets, in nanoseconds: 100 us .. 10 s (unit 1e-9 renders them in seconds). */
#define METRICS_LATENCY_NBOUNDS 16u
extern const uint64_t metrics_latency_ns[METRICS_LATENCY_NBOUNDS];
#define METRICS_NS 1e-9

/* Size buckets, in bytes: 4 KiB .. 64 MiB, by factors of 4. */
#define METRICS_SIZE_NBOUNDS 9u
extern const uint64_t metrics_size_bytes[METRICS_SIZE_NBOUNDS];

/* A new, empty registry.  Returns 0 or CAIRN_ENOMEM. */
int metrics_create(struct metrics **out);
/* Free the registry and its families (no update may run any more).  Accepts NULL. */
void metrics_destroy(struct metrics *m);

/* The shape of a family.  Strings are copied; label NULL (and nvalues 0) gives one series. */
struct metrics_desc {
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]*, unique in the registry */
    const char *help; /* one line of text (escaped when rendered) */
    enum metrics_type type;
    const char *label;         /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"; or NULL */
    const char *const *values; /* nvalues label values (any UTF-8 text; escaped) */
    size_t nvalues;
    const uint64_t *bounds; /* histograms: nbounds strictly increasing finite bounds */
    size_t nbounds;
    double unit; /* histograms: rendered value = stored value * unit; 0 = 1 */
};

/* Register a family; *out is owned by the registry.  With m NULL: returns 0 and *out = NULL.
 * Returns 0, CAIRN_EINVAL (a bad name, label, bound list or size), CAIRN_EEXIST (the name is
 * taken), CAIRN_ENOMEM. */
int metrics_register(struct metrics *m, const struct metrics_desc *d, struct metrics_family **out);

/* Register a family of one series (no label) read by fn(arg) at every scrape; type is
 * METRICS_COUNTER or METRICS_GAUGE.  arg is borrowed until metrics_destroy.  Returns as
 * metrics_register. */
int metrics_func(struct metrics *m, const char *name, const char *help, enum metrics_type type,
                 double (*fn)(void *arg), void *arg);

/* Updates of series i (the index of its label value; 0 without a label).  An index out of
 * range or a family of another type is a programming error (assert); NULL f does nothing. */
void metrics_add(struct metrics_family *f, size_t i, uint64_t n);     /* counters */
void metrics_set(struct metrics_family *f, size_t i, int64_t v);      /* gauges */
void metrics_observe(struct metrics_family *f, size_t i, uint64_t v); /* histograms */

/* ---- the per-operation families every server keeps ---- */

/* What each server (an S3 or NFS head, a D-node) counts per operation: requests answered,
 * those that failed, bytes in and out, and a latency histogram, named PREFIX_requests_total,
 * PREFIX_errors_total, PREFIX_received_bytes_total, PREFIX_sent_bytes_total and
 * PREFIX_request_duration_seconds, all labelled by the operation.  The families are owned by
 * the registry; all NULL when it is NULL. */
struct metrics_ops {
    struct metrics_family *requests, *errors, *in, *out, *latency;
};

struct metrics_ops_desc {
    const char *prefix;        /* "cairn_s3" */
    const char *label;         /* "op", "proc" */
    const char *const *values; /* the operations */
    size_t nvalues;
    /* One line each, what the families count in this server's terms. */
    const char *help_requests, *help_errors, *help_in, *help_out, *help_latency;
};

/* Register the five families.  Returns as metrics_register. */
int metrics_ops_register(struct metrics *m, const struct metrics_ops_desc *d,
                         struct metrics_ops *out);
/* One answered request of operation i: failed or not, bytes in and out, latency in ns. */
void metrics_ops_count(const struct metrics_ops *o, size_t i, int failed, uint64_t in,
                       uint64_t out, uint64_t ns);

/* The current value of a counter or gauge series (as set or counted; tests and callbacks). */
int64_t metrics_value(const struct metrics_family *f, size_t i);

/* Render every family, in registration order, in the text exposition format 0.0.4.  *out is
 * malloc'd (the caller frees it) and NUL-terminated, *len bytes without the NUL.  Returns 0 or
 * CAIRN_ENOMEM. */
int metrics_render(struct metrics *m, char **out, size_t *len);

/* The Content-Type of what metrics_render produces. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
