/*
 * stats.c - the D-node's metrics (stats.h).
 *
 * The op label comes from the protocol's own enum (proto/cairn.proto, through protobuf-c's
 * descriptor): "OP_FRAG_PUT" is exported as op="frag_put", so a new operation is counted
 * under its own name without touching this file; an op the enum does not know is "other".
 * The device gauges change only when a fragment is stored or freed, so they are refreshed
 * after those answers (the store's counters are updated before its callback answers).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "dnode/stats.h"

#define OP_LABEL_MAX 32

struct dn_stats {
    struct dn_store *store;
    size_t nops; /* the enum's values, then "other" */
    char (*labels)[OP_LABEL_MAX];
    struct metrics_ops ops;
    struct metrics_family *crc;
    struct metrics_family *dev_size, *dev_used, *frags;
    struct metrics_family *bad, *lost_runs, *scrub_passes, *scrub_bytes, *scrub_found, *scrub_pos;
    struct dn_scrub_stats scrub_last; /* what the counters were raised to */
};

static size_t op_index(const struct dn_stats *st, int op)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&cairn__op__descriptor, op);

    return v ? (size_t)(v - cairn__op__descriptor.values) : st->nops - 1;
}

static void refresh_device(struct dn_stats *st)
{
    struct dn_store_stats s;

    dn_store_stats(st->store, &s);
    metrics_set(st->dev_size, 0, (int64_t)s.dev_size);
    metrics_set(st->dev_used, 0, (int64_t)s.used);
    metrics_set(st->frags, 0, (int64_t)s.frag_count);
    metrics_set(st->bad, 0, (int64_t)s.bad_count);
    metrics_set(st->lost_runs, 0, (int64_t)s.lost_runs);
}

void dn_stats_scrub(struct dn_stats *st, const struct dn_scrub_stats *ss)
{
    if (!st)
        return;
    /* Counters only rise: add what the scrub did since the last call. */
    metrics_add(st->scrub_passes, 0, ss->passes - st->scrub_last.passes);
    metrics_add(st->scrub_bytes, 0, ss->bytes - st->scrub_last.bytes);
    metrics_add(st->scrub_found, 0, ss->found - st->scrub_last.found);
    metrics_set(st->scrub_pos, 0, (int64_t)ss->pos);
    st->scrub_last = *ss;
    refresh_device(st);
}

void dn_stats_answered(void *arg, const struct tp_answered *a)
{
    struct dn_stats *st = arg;
    size_t i = op_index(st, a->op);

    metrics_ops_count(&st->ops, i, a->status != 0, a->in_bytes, a->out_bytes, a->ns);
    if (a->status == CAIRN_ECRC)
        metrics_add(st->crc, 0, 1);
    if (a->op == CAIRN__OP__OP_FRAG_PUT || a->op == CAIRN__OP__OP_FRAG_DEL)
        refresh_device(st);
}

/* "OP_FRAG_PUT" -> "frag_put" */
static void label_of(const char *name, char *out)
{
    size_t n = 0;

    if (!strncmp(name, "OP_", 3))
        name += 3;
    for (; *name && n < OP_LABEL_MAX - 1; name++)
        out[n++] = (char)tolower((unsigned char)*name);
    out[n] = 0;
}

int dn_stats_open(struct metrics *reg, struct dn_store *store, struct dn_stats **out)
{
    struct dn_stats *st = calloc(1, sizeof(*st));
    const char **values = NULL;
    struct metrics_ops_desc ops = {
        .prefix = "cairn_dnode", .label = "op",
        .help_requests = "Requests answered, by operation.",
        .help_errors = "Requests answered with an error, by operation.",
        .help_in = "Request payload bytes, by operation.",
        .help_out = "Answer payload bytes, by operation.",
        .help_latency =
            "Time from a request's arrival to its answer (durable, for writes), by operation."};
    struct metrics_desc d;
    int rc = CAIRN_ENOMEM;

    if (!st)
        return CAIRN_ENOMEM;
    st->store = store;
    st->nops = cairn__op__descriptor.n_values + 1;
    st->labels = calloc(st->nops, sizeof(*st->labels));
    values = calloc(st->nops, sizeof(*values));
    if (!st->labels || !values)
        goto err;
    for (size_t i = 0; i + 1 < st->nops; i++)
        label_of(cairn__op__descriptor.values[i].name, st->labels[i]);
    strcpy(st->labels[st->nops - 1], "other");
    for (size_t i = 0; i < st->nops; i++)
        values[i] = st->labels[i];
    ops.values = values;
    ops.nvalues = st->nops;
    rc = metrics_ops_register(reg, &ops, &st->ops);
    if (rc)
        goto err;

#define REG(field, nm, hl)                                                                         \
    do {                                                                                           \
        d.name = nm;                                                                               \
        d.help = hl;                                                                               \
        if ((rc = metrics_register(reg, &d, &st->field)))                                          \
            goto err;                                                                              \
    } while (0)
    d = (struct metrics_desc){.type = METRICS_COUNTER};
    REG(crc, "cairn_dnode_crc_errors_total",
        "Fragment reads whose stored bytes failed their CRC (the client rebuilds them).");
    d.type = METRICS_GAUGE;
    REG(dev_size, "cairn_dnode_device_size_bytes", "Size of the fragment device.");
    REG(dev_used, "cairn_dnode_device_used_bytes",
        "Bytes of the fragment device in use, fragment headers included.");
    REG(frags, "cairn_dnode_fragments", "Fragments stored on the device.");
    REG(bad, "cairn_dnode_fragments_bad",
        "Fragments a read found corrupt, waiting for the repair service to replace them.");
    REG(lost_runs, "cairn_dnode_rotten_headers",
        "Extent headers found rotten when the device was opened (each lost at least one "
        "fragment, which reads rebuild from parity).");
    REG(scrub_pos, "cairn_dnode_scrub_position",
        "Fragments checked so far by the scrub pass in progress (0 between passes).");
    d.type = METRICS_COUNTER;
    REG(scrub_passes, "cairn_dnode_scrub_passes_total", "Complete scrub passes over the device.");
    REG(scrub_bytes, "cairn_dnode_scrub_bytes_total", "Fragment bytes the scrub read and checked.");
    REG(scrub_found, "cairn_dnode_scrub_errors_total",
        "Fragments the scrub found corrupt, each counted once (then reported to the repair "
        "service).");
#undef REG
    free(values);
    refresh_device(st);
    *out = st;
    return 0;

err:
    free(values);
    dn_stats_close(st);
    return rc;
}

void dn_stats_close(struct dn_stats *st)
{
    if (!st)
        return;
    free(st->labels);
    free(st);
}
