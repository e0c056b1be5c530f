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
    struct metrics_family *requests, *errors, *latency, *in, *out, *crc;
    struct metrics_family *dev_size, *dev_used, *frags;
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
}

void dn_stats_answered(void *arg, const struct tp_answered *a)
{
    struct dn_stats *st = arg;
    size_t i = op_index(st, a->op);

    metrics_add(st->requests, i, 1);
    metrics_observe(st->latency, i, a->ns);
    metrics_add(st->in, i, a->in_bytes);
    metrics_add(st->out, i, a->out_bytes);
    if (a->status)
        metrics_add(st->errors, i, 1);
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
    struct metrics_desc d = {.label = "op"};
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
    d.values = values;
    d.nvalues = st->nops;

    d.type = METRICS_COUNTER;
#define REG(field, nm, hl)                                                                         \
    do {                                                                                           \
        d.name = nm;                                                                               \
        d.help = hl;                                                                               \
        if ((rc = metrics_register(reg, &d, &st->field)))                                          \
            goto err;                                                                              \
    } while (0)
    REG(requests, "cairn_dnode_requests_total", "Requests answered, by operation.");
    REG(errors, "cairn_dnode_errors_total", "Requests answered with an error, by operation.");
    REG(in, "cairn_dnode_received_bytes_total", "Request payload bytes, by operation.");
    REG(out, "cairn_dnode_sent_bytes_total", "Answer payload bytes, by operation.");
    d.type = METRICS_HISTOGRAM;
    d.bounds = metrics_latency_ns;
    d.nbounds = METRICS_LATENCY_NBOUNDS;
    d.unit = METRICS_NS;
    REG(latency, "cairn_dnode_request_duration_seconds",
        "Time from a request's arrival to its answer (durable, for writes), by operation.");
    d = (struct metrics_desc){.type = METRICS_COUNTER};
    REG(crc, "cairn_dnode_crc_errors_total",
        "Fragment reads whose stored bytes failed their CRC (the client rebuilds them).");
    d.type = METRICS_GAUGE;
    REG(dev_size, "cairn_dnode_device_size_bytes", "Size of the fragment device.");
    REG(dev_used, "cairn_dnode_device_used_bytes",
        "Bytes of the fragment device in use, fragment headers included.");
    REG(frags, "cairn_dnode_fragments", "Fragments stored on the device.");
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
