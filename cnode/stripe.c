/*
 * stripe.c - erasure-coded object I/O against the D-nodes (see stripe.h).
 *
 * Both directions run a window of `depth` stripe slots.  A slot owns the buffers one stripe
 * needs beyond the caller's (m parity fragments; for the last, partial stripe a zero-padded
 * copy of its data) and counts the fragment calls it has outstanding; the loop refills free
 * slots and otherwise sleeps in tp_ctx_wait(), so the k + m fragment sends of several stripes
 * overlap on the wire and on the D-nodes' devices.
 *
 * Writes: a full stripe is encoded and sent straight from the caller's buffer.  A write
 * succeeds only when every one of its k + m fragments was acknowledged (durable on its
 * D-node); a write that cannot place all of them fails rather than leaving a stripe with less
 * redundancy than the layout promises.
 *
 * Reads: data fragments land directly in the caller's buffer (the transport delivers response
 * payloads into it).  Each fragment's CRC32C is checked here as well as on the D-node, so a
 * fragment damaged anywhere between device and client is treated as lost.  Each failed fragment
 * triggers a fetch of one more parity fragment; when the stripe has settled with at least k good
 * fragments, ec_reconstruct() rebuilds the missing data in place.
 */
#include "cnode/stripe.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cairn.h"
#include "common/log.h"
#include "meta/placement.h"

#define TAG "stripe"
#define MAX_CODECS 8
/* A D-node that failed to answer is skipped for this long: reads go to parity at once and
 * writes fail fast, instead of every request waiting out the transport deadline. */
#define DOWN_MS 10000u

/* What one view learns about a dead D-node, every view in the process learns: the heads run
 * one cluster view per worker thread, and without this each of them would pay the transport
 * deadline on its own (a GET at a time, with 16 workers) before skipping the node.  Slots
 * are found by the hash of the D-node's address; a collision only shares a little too much
 * (the other node is skipped until its first answer clears it). */
#define SHARED_SLOTS 4096u
static _Atomic uint64_t shared_down_until[SHARED_SLOTS];

static unsigned shared_slot(const char *addr)
{
    uint64_t h = 1469598103934665603ull;

    for (; *addr; addr++)
        h = (h ^ (uint8_t)*addr) * 1099511628211ull;
    return (unsigned)(h % SHARED_SLOTS);
}

struct cn_cluster {
    struct tp_ctx *tp;
    unsigned n;
    char **addrs;   /* owned */
    uint64_t *peers; /* transport peer handles, by D-node index */
    uint64_t *keys;  /* placement keys, by D-node index */
    uint64_t *down_until; /* ms clock: D-node considered down until then */
    unsigned *slot;       /* its shared_down_until slot */
    struct ec_layout layout;
    unsigned depth;
    struct {
        uint32_t k, m;
        struct ec_codec *c;
    } codecs[MAX_CODECS];
    unsigned ncodecs;
};

static void note_status(struct cn_cluster *cl, unsigned i, int transport_status);

/* ---- cluster ---- */

static void free_addrs(struct cn_cluster *cl)
{
    for (unsigned i = 0; i < cl->n; i++)
        free(cl->addrs[i]);
    free(cl->addrs);
}

static int parse_dnodes(struct cn_cluster *cl, const char *list)
{
    char *copy = strdup(list ? list : ""), *save = NULL, *tok;
    unsigned cap = 16;

    if (!copy)
        return CAIRN_ENOMEM;
    cl->addrs = calloc(cap, sizeof(*cl->addrs));
    if (!cl->addrs) {
        free(copy);
        return CAIRN_ENOMEM;
    }
    for (tok = strtok_r(copy, " ,\t\n", &save); tok; tok = strtok_r(NULL, " ,\t\n", &save)) {
        if (cl->n == CN_MAX_DNODES)
            goto inval;
        if (cl->n == cap) {
            char **a = realloc(cl->addrs, 2 * cap * sizeof(*a));

            if (!a)
                goto nomem;
            cl->addrs = a;
            cap *= 2;
        }
        cl->addrs[cl->n] = strdup(tok);
        if (!cl->addrs[cl->n])
            goto nomem;
        cl->n++;
    }
    free(copy);
    return cl->n ? 0 : CAIRN_EINVAL;
inval:
    free(copy);
    return CAIRN_EINVAL;
nomem:
    free(copy);
    return CAIRN_ENOMEM;
}

/* The codec for (k, m), created on first use and kept for the cluster's lifetime. */
static struct ec_codec *codec_for(struct cn_cluster *cl, uint32_t k, uint32_t m)
{
    for (unsigned i = 0; i < cl->ncodecs; i++)
        if (cl->codecs[i].k == k && cl->codecs[i].m == m)
            return cl->codecs[i].c;
    if (cl->ncodecs == MAX_CODECS)
        return NULL;
    if (ec_codec_create(k, m, &cl->codecs[cl->ncodecs].c))
        return NULL;
    cl->codecs[cl->ncodecs].k = k;
    cl->codecs[cl->ncodecs].m = m;
    return cl->codecs[cl->ncodecs++].c;
}

int cn_cluster_open(const struct cn_cluster_config *cfg, struct cn_cluster **out)
{
    struct tp_config tcfg = {0};
    struct cn_cluster *cl;
    int rc;

    if (!cfg || cfg->k == 0 || cfg->m == 0 || cfg->k + cfg->m > EC_MAX_FRAGS ||
        cfg->frag_size == 0 || cfg->frag_size % CAIRN_BLOCK || cfg->frag_size > TP_MAX_PAYLOAD)
        return CAIRN_EINVAL;
    cl = calloc(1, sizeof(*cl));
    if (!cl)
        return CAIRN_ENOMEM;
    rc = parse_dnodes(cl, cfg->dnodes);
    if (rc)
        goto err;
    if (cl->n < cfg->k + cfg->m) {
        log_error(TAG, "%u D-nodes cannot hold %u+%u stripes", cl->n, cfg->k, cfg->m);
        rc = CAIRN_EINVAL;
        goto err;
    }
    cl->layout = (struct ec_layout){.k = cfg->k, .m = cfg->m, .frag_size = cfg->frag_size};
    cl->depth = cfg->depth ? cfg->depth : CN_DEFAULT_DEPTH;
    if (!codec_for(cl, cfg->k, cfg->m)) {
        rc = CAIRN_ENOMEM;
        goto err;
    }
    cl->peers = calloc(cl->n, sizeof(*cl->peers));
    cl->keys = calloc(cl->n, sizeof(*cl->keys));
    cl->down_until = calloc(cl->n, sizeof(*cl->down_until));
    cl->slot = calloc(cl->n, sizeof(*cl->slot));
    if (!cl->peers || !cl->keys || !cl->down_until || !cl->slot) {
        rc = CAIRN_ENOMEM;
        goto err;
    }
    tcfg.provider = cfg->provider;
    tcfg.host = cfg->bind_host;
    tcfg.timeout_ms = cfg->timeout_ms;
    tcfg.max_payload = cfg->frag_size > TP_DEFAULT_MAX_PAYLOAD ? cfg->frag_size
                                                               : TP_DEFAULT_MAX_PAYLOAD;
    rc = tp_ctx_create(&tcfg, &cl->tp);
    if (rc)
        goto err;
    for (unsigned i = 0; i < cl->n; i++) {
        rc = tp_peer_add(cl->tp, cl->addrs[i], &cl->peers[i]);
        if (rc) {
            log_error(TAG, "D-node address %s: %s", cl->addrs[i], cairn_strerror(rc));
            goto err;
        }
        cl->keys[i] = meta_node_key(cl->addrs[i]);
        cl->slot[i] = shared_slot(cl->addrs[i]);
    }
    *out = cl;
    return 0;
err:
    cn_cluster_close(cl);
    return rc;
}

void cn_cluster_close(struct cn_cluster *cl)
{
    if (!cl)
        return;
    tp_ctx_destroy(cl->tp);
    for (unsigned i = 0; i < cl->ncodecs; i++)
        ec_codec_destroy(cl->codecs[i].c);
    free(cl->peers);
    free(cl->keys);
    free(cl->down_until);
    free(cl->slot);
    free_addrs(cl);
    free(cl);
}

unsigned cn_cluster_dnodes(const struct cn_cluster *cl)
{
    return cl->n;
}

const char *cn_cluster_dnode_addr(const struct cn_cluster *cl, unsigned i)
{
    return i < cl->n ? cl->addrs[i] : NULL;
}

const struct ec_layout *cn_cluster_layout(const struct cn_cluster *cl)
{
    return &cl->layout;
}

struct tp_ctx *cn_cluster_tp(struct cn_cluster *cl)
{
    return cl->tp;
}

int cn_cluster_ping(struct cn_cluster *cl, unsigned i, uint64_t *dev_size, uint64_t *dev_used,
                    uint64_t *frags)
{
    Cairn__Request req = CAIRN__REQUEST__INIT;
    struct tp_sync s;
    int rc;

    if (i >= cl->n)
        return CAIRN_EINVAL;
    req.op = CAIRN__OP__OP_PING;
    rc = tp_call_sync(cl->tp, cl->peers[i], &req, NULL, 0, NULL, 0, &s);
    if (!rc) {
        note_status(cl, i, s.status);
        rc = s.status ? s.status : s.resp->status;
    }
    if (!rc) {
        if (dev_size)
            *dev_size = s.resp->dev_size;
        if (dev_used)
            *dev_used = s.resp->dev_used;
        if (frags)
            *frags = s.resp->frag_count;
    }
    tp_sync_fini(&s);
    return rc;
}

static bool node_down(const struct cn_cluster *cl, unsigned i)
{
    uint64_t until = atomic_load_explicit(&shared_down_until[cl->slot[i]], memory_order_relaxed);

    if (cl->down_until[i] > until)
        until = cl->down_until[i];
    return until && cairn_now_ms() < until;
}

bool cn_cluster_node_down(const struct cn_cluster *cl, unsigned i)
{
    return i < cl->n && node_down(cl, i);
}

void cn_cluster_note(struct cn_cluster *cl, unsigned i, int transport_status)
{
    if (i < cl->n)
        note_status(cl, i, transport_status);
}

int cn_cluster_order(const struct cn_cluster *cl, uint64_t item, unsigned *nodes)
{
    return meta_place(item, cl->keys, cl->n, cl->n, nodes);
}

int cn_cluster_call(struct cn_cluster *cl, unsigned node, Cairn__Request *req,
                    const void *payload, uint32_t len, void *resp_buf, uint32_t resp_cap,
                    tp_call_cb cb, void *arg)
{
    if (node >= cl->n)
        return CAIRN_EINVAL;
    return tp_call(cl->tp, cl->peers[node], req, payload, len, resp_buf, resp_cap, cb, arg);
}

/* Remember a D-node that did not answer (transport-level failure, not a refusal). */
static void note_status(struct cn_cluster *cl, unsigned i, int transport_status)
{
    if (transport_status == CAIRN_ETIMEDOUT || transport_status == CAIRN_EUNREACH) {
        if (!node_down(cl, i))
            log_warn(TAG, "D-node %s is not answering: %s; skipping it for %u s", cl->addrs[i],
                     cairn_strerror(transport_status), DOWN_MS / 1000);
        cl->down_until[i] = cairn_now_ms() + DOWN_MS;
        atomic_store_explicit(&shared_down_until[cl->slot[i]], cl->down_until[i],
                              memory_order_relaxed);
    } else if (transport_status == 0) {
        cl->down_until[i] = 0;
        atomic_store_explicit(&shared_down_until[cl->slot[i]], 0, memory_order_relaxed);
    }
}

struct probe {
    struct cn_cluster *cl;
    unsigned node;
    unsigned *outstanding;
};

static void probe_done(void *arg, int status, const Cairn__Response *resp)
{
    struct probe *p = arg;

    (void)resp;
    note_status(p->cl, p->node, status);
    (*p->outstanding)--;
}

unsigned cn_cluster_probe(struct cn_cluster *cl)
{
    struct probe *probes = calloc(cl->n, sizeof(*probes));
    unsigned outstanding = 0, down = 0;

    if (!probes)
        return 0;
    for (unsigned i = 0; i < cl->n; i++) {
        Cairn__Request req = CAIRN__REQUEST__INIT;

        probes[i] = (struct probe){.cl = cl, .node = i, .outstanding = &outstanding};
        req.op = CAIRN__OP__OP_PING;
        outstanding++;
        if (tp_call(cl->tp, cl->peers[i], &req, NULL, 0, NULL, 0, probe_done, &probes[i]))
            outstanding--;
    }
    while (outstanding)
        tp_ctx_wait(cl->tp, 1000);
    for (unsigned i = 0; i < cl->n; i++)
        down += node_down(cl, i);
    free(probes);
    return down;
}

/* ---- stripe slots ---- */

struct io;

struct frag_op {
    struct slot *slot;
    unsigned index; /* fragment index in the stripe */
    uint8_t *buf;   /* read target (reads) */
};

struct slot {
    struct io *io;
    bool busy;
    uint64_t s;   /* stripe number within the object */
    uint64_t sid; /* stripe id */
    uint32_t flen;
    uint64_t bytes; /* object bytes in this stripe */
    bool partial;   /* the last stripe, shorter than k * frag_size: staged in tail */
    unsigned nodes[EC_MAX_FRAGS];
    unsigned outstanding;
    int err;
    uint8_t *frags[EC_MAX_FRAGS]; /* fragment buffers of this stripe */
    uint8_t *parity;              /* owned: m * frag_size */
    uint8_t *tail;                /* owned: k * frag_size, for the partial last stripe */
    uint32_t ok, failed, requested; /* fragment bit masks (reads) */
    struct frag_op ops[EC_MAX_FRAGS];
};

struct io {
    struct cn_cluster *cl;
    const struct ec_layout *l;
    struct ec_codec *codec;
    uint64_t object_id;
    uint32_t gen;
    uint64_t first; /* object stripe number of this call's stripe 0 */
    uint64_t len;
    uint8_t *data; /* caller's buffer */
    uint64_t nstripes;
    uint64_t next;
    unsigned inflight; /* busy slots */
    int err;
    struct cn_io_stats *st;
    struct slot *slots;
    unsigned nslots;
};

static int io_init(struct io *io, struct cn_cluster *cl, const struct ec_layout *l,
                   uint64_t object_id, uint32_t gen, uint8_t *data, uint64_t len,
                   struct cn_io_stats *st)
{
    memset(io, 0, sizeof(*io));
    if (l->k == 0 || l->m == 0 || l->k + l->m > EC_MAX_FRAGS || l->k + l->m > cl->n ||
        l->frag_size == 0 || l->frag_size > tp_ctx_max_payload(cl->tp))
        return CAIRN_EINVAL;
    io->codec = codec_for(cl, l->k, l->m);
    if (!io->codec)
        return CAIRN_ENOMEM;
    io->cl = cl;
    io->l = l;
    io->object_id = object_id;
    io->gen = gen;
    io->data = data;
    io->len = len;
    io->st = st;
    io->nstripes = ec_layout_stripes(l, len);
    io->nslots = cl->depth;
    if (io->nslots > io->nstripes)
        io->nslots = io->nstripes ? (unsigned)io->nstripes : 1;
    io->slots = calloc(io->nslots, sizeof(*io->slots));
    if (!io->slots)
        return CAIRN_ENOMEM;
    for (unsigned i = 0; i < io->nslots; i++) {
        struct slot *sl = &io->slots[i];

        sl->io = io;
        sl->parity = aligned_alloc(CAIRN_BLOCK, (size_t)l->m * l->frag_size);
        if (!sl->parity)
            return CAIRN_ENOMEM;
    }
    return 0;
}

static void io_fini(struct io *io)
{
    for (unsigned i = 0; io->slots && i < io->nslots; i++) {
        free(io->slots[i].parity);
        free(io->slots[i].tail);
    }
    free(io->slots);
}

static struct slot *free_slot(struct io *io)
{
    for (unsigned i = 0; i < io->nslots; i++)
        if (!io->slots[i].busy)
            return &io->slots[i];
    return NULL;
}

/* Set up slot buffers for stripe s: fragment pointers into the caller's buffer for a full
 * stripe, into the zeroed tail buffer for a partial one. */
static int slot_prepare(struct io *io, struct slot *sl, uint64_t s)
{
    const struct ec_layout *l = io->l;
    uint64_t off = s * (uint64_t)l->k * l->frag_size;
    int rc;

    memset(sl->ops, 0, sizeof(sl->ops));
    sl->busy = true;
    sl->s = s;
    sl->sid = meta_stripe_id(io->object_id, io->first + s);
    sl->flen = ec_layout_frag_len(l, io->len, s);
    sl->bytes = ec_layout_stripe_bytes(l, io->len, s);
    sl->outstanding = 0;
    sl->err = 0;
    sl->ok = sl->failed = sl->requested = 0;
    rc = meta_place(sl->sid, io->cl->keys, io->cl->n, l->k + l->m, sl->nodes);
    if (rc)
        return rc;
    sl->partial = sl->bytes != (uint64_t)l->k * l->frag_size;
    if (!sl->partial) {
        for (unsigned j = 0; j < l->k; j++)
            sl->frags[j] = io->data + off + (uint64_t)j * l->frag_size;
    } else {
        if (!sl->tail) {
            sl->tail = aligned_alloc(CAIRN_BLOCK, (size_t)l->k * l->frag_size);
            if (!sl->tail)
                return CAIRN_ENOMEM;
        }
        memset(sl->tail, 0, (size_t)l->k * sl->flen);
        for (unsigned j = 0; j < l->k; j++)
            sl->frags[j] = sl->tail + (size_t)j * sl->flen;
    }
    for (unsigned j = 0; j < l->m; j++)
        sl->frags[l->k + j] = sl->parity + (size_t)j * sl->flen;
    io->inflight++;
    return 0;
}

static void slot_release(struct slot *sl)
{
    sl->busy = false;
    sl->io->inflight--;
}

/* Progress the transport until no slot is busy (after an error, or at the end). */
static void io_drain(struct io *io)
{
    while (io->inflight)
        tp_ctx_wait(io->cl->tp, 1000);
}

/* ---- writes ---- */

static void put_done(void *arg, int status, const Cairn__Response *resp)
{
    struct frag_op *op = arg;
    struct slot *sl = op->slot;
    int rc = status ? status : resp->status;

    note_status(sl->io->cl, sl->nodes[op->index], status);
    if (rc && !sl->err) {
        log_warn(TAG, "fragment %016llx/%u/%u on %s: %s", (unsigned long long)sl->sid,
                 sl->io->gen, op->index, sl->io->cl->addrs[sl->nodes[op->index]],
                 cairn_strerror(rc));
        sl->err = rc;
    }
    if (--sl->outstanding)
        return;
    if (sl->err && !sl->io->err)
        sl->io->err = sl->err;
    if (sl->io->st)
        sl->io->st->stripes++;
    slot_release(sl);
}

static int send_frag(struct io *io, struct slot *sl, unsigned idx, Cairn__Op op_code,
                     const void *payload, uint32_t len, uint32_t crc, void *resp_buf,
                     uint32_t resp_len, tp_call_cb cb)
{
    Cairn__Request req = CAIRN__REQUEST__INIT;
    Cairn__FragId fid = CAIRN__FRAG_ID__INIT;
    struct frag_op *op = &sl->ops[idx];
    int rc;

    op->slot = sl;
    op->index = idx;
    op->buf = resp_buf;
    fid.stripe = sl->sid;
    fid.gen = io->gen;
    fid.index = idx;
    req.op = op_code;
    req.frag = &fid;
    req.crc = crc;
    sl->outstanding++;
    rc = tp_call(io->cl->tp, io->cl->peers[sl->nodes[idx]], &req, payload, len, resp_buf,
                 resp_len, cb, op);
    if (rc)
        sl->outstanding--;
    return rc;
}

static int write_stripe(struct io *io, struct slot *sl, uint64_t s)
{
    const struct ec_layout *l = io->l;
    unsigned n = l->k + l->m;
    int rc = slot_prepare(io, sl, s);

    if (rc)
        goto fail;
    for (unsigned i = 0; i < n; i++) {
        if (node_down(io->cl, sl->nodes[i])) {
            rc = CAIRN_EUNREACH;
            log_warn(TAG, "stripe %016llx: D-node %s is down; a write needs all %u fragments",
                     (unsigned long long)sl->sid, io->cl->addrs[sl->nodes[i]], n);
            goto fail;
        }
    }
    if (sl->partial) {
        /* The only copy on the write path: the last stripe is padded to k equal fragments. */
        memcpy(sl->tail, io->data + s * (uint64_t)l->k * l->frag_size, sl->bytes);
    }
    ec_encode(io->codec, sl->flen, (const uint8_t *const *)sl->frags, sl->frags + l->k);
    for (unsigned i = 0; i < n; i++) {
        uint32_t crc = ec_crc32c(0, sl->frags[i], sl->flen);

        rc = send_frag(io, sl, i, CAIRN__OP__OP_FRAG_PUT, sl->frags[i], sl->flen, crc, NULL, 0,
                       put_done);
        if (rc)
            break;
    }
    if (!rc)
        return 0;
fail:
    /* Calls already issued finish through put_done and release the slot. */
    sl->err = rc;
    if (!io->err)
        io->err = rc;
    if (sl->busy && sl->outstanding == 0)
        slot_release(sl);
    return rc;
}

int cn_stripe_write(struct cn_cluster *cl, uint64_t object_id, uint32_t gen, const uint8_t *data,
                    uint64_t len, struct cn_io_stats *st)
{
    return cn_stripe_write_at(cl, object_id, gen, 0, data, len, st);
}

int cn_stripe_write_at(struct cn_cluster *cl, uint64_t object_id, uint32_t gen,
                       uint64_t first_stripe, const uint8_t *data, uint64_t len,
                       struct cn_io_stats *st)
{
    struct io io;
    int rc;

    rc = io_init(&io, cl, &cl->layout, object_id, gen, (uint8_t *)data, len, st);
    if (rc)
        goto out;
    io.first = first_stripe;
    while (!io.err && (io.next < io.nstripes || io.inflight)) {
        struct slot *sl;

        while (!io.err && io.next < io.nstripes && (sl = free_slot(&io)))
            write_stripe(&io, sl, io.next++);
        if (io.inflight)
            tp_ctx_wait(cl->tp, 1000);
    }
    io_drain(&io);
    rc = io.err;
out:
    io_fini(&io);
    return rc;
}

/* ---- reads ---- */

static int request_frag(struct io *io, struct slot *sl, unsigned idx);

/* The slot has settled: all its calls are answered.  Rebuild what is missing, if possible. */
static void read_settle(struct slot *sl)
{
    struct io *io = sl->io;
    const struct ec_layout *l = io->l;
    uint32_t all = (l->k + l->m == 32) ? UINT32_MAX : ((1u << (l->k + l->m)) - 1);
    uint32_t data_mask = (1u << l->k) - 1;
    int rc = 0;

    if (sl->failed & data_mask) {
        rc = ec_reconstruct(io->codec, sl->flen, sl->frags, all & ~sl->ok);
        if (io->st)
            io->st->degraded_stripes++;
    }
    if (!rc && sl->partial) {
        uint64_t off = sl->s * (uint64_t)l->k * l->frag_size;

        memcpy(io->data + off, sl->tail, sl->bytes);
    }
    if (rc && !io->err) {
        log_warn(TAG, "stripe %016llx/%u: %s", (unsigned long long)sl->sid, io->gen,
                 cairn_strerror(rc));
        io->err = rc;
    }
    if (io->st)
        io->st->stripes++;
    slot_release(sl);
}

static void get_done(void *arg, int status, const Cairn__Response *resp)
{
    struct frag_op *op = arg;
    struct slot *sl = op->slot;
    struct io *io = sl->io;
    const struct ec_layout *l = io->l;
    int rc = status ? status : resp->status;

    note_status(io->cl, sl->nodes[op->index], status);
    if (!rc && resp->payload_len != sl->flen)
        rc = CAIRN_EPROTO;
    if (!rc && ec_crc32c(0, op->buf, sl->flen) != resp->crc)
        rc = CAIRN_ECRC;
    if (!rc) {
        sl->ok |= 1u << op->index;
    } else {
        log_warn(TAG, "fragment %016llx/%u/%u from %s: %s", (unsigned long long)sl->sid, io->gen,
                 op->index, io->cl->addrs[sl->nodes[op->index]], cairn_strerror(rc));
        sl->failed |= 1u << op->index;
        if (io->st)
            io->st->frags_failed++;
        /* Replace the lost fragment with the next parity fragment not yet asked for. */
        for (unsigned p = l->k; p < l->k + l->m; p++) {
            if (!(sl->requested & (1u << p))) {
                if (request_frag(io, sl, p) == 0)
                    break;
                sl->failed |= 1u << p;
            }
        }
    }
    if (--sl->outstanding == 0)
        read_settle(sl);
}

static int request_frag(struct io *io, struct slot *sl, unsigned idx)
{
    sl->requested |= 1u << idx;
    if (node_down(io->cl, sl->nodes[idx])) {
        if (io->st)
            io->st->frags_failed++;
        return CAIRN_EUNREACH;
    }
    return send_frag(io, sl, idx, CAIRN__OP__OP_FRAG_GET, NULL, 0, 0, sl->frags[idx], sl->flen,
                     get_done);
}

static void read_stripe(struct io *io, struct slot *sl, uint64_t s)
{
    const struct ec_layout *l = io->l;
    unsigned want = l->k;
    int rc = slot_prepare(io, sl, s);

    if (rc) {
        if (!io->err)
            io->err = rc;
        if (sl->busy)
            slot_release(sl);
        return;
    }
    /* Ask for the k data fragments; a refused call is handled like a failed fragment. */
    for (unsigned i = 0; i < l->k + l->m && want; i++) {
        if (request_frag(io, sl, i) == 0) {
            want--;
        } else {
            sl->failed |= 1u << i;
        }
    }
    if (want && !io->err)
        io->err = CAIRN_EDEGRADED;
    if (sl->outstanding == 0)
        read_settle(sl);
}

int cn_stripe_read(struct cn_cluster *cl, uint64_t object_id, uint32_t gen,
                   const struct ec_layout *l, uint8_t *out, uint64_t len, struct cn_io_stats *st)
{
    return cn_stripe_read_at(cl, object_id, gen, l, 0, out, len, st);
}

int cn_stripe_read_at(struct cn_cluster *cl, uint64_t object_id, uint32_t gen,
                      const struct ec_layout *l, uint64_t first_stripe, uint8_t *out,
                      uint64_t len, struct cn_io_stats *st)
{
    struct io io;
    int rc;

    rc = io_init(&io, cl, l, object_id, gen, out, len, st);
    if (rc)
        goto out;
    io.first = first_stripe;
    while (!io.err && (io.next < io.nstripes || io.inflight)) {
        struct slot *sl;

        while (!io.err && io.next < io.nstripes && (sl = free_slot(&io)))
            read_stripe(&io, sl, io.next++);
        if (io.inflight)
            tp_ctx_wait(cl->tp, 1000);
    }
    io_drain(&io);
    rc = io.err;
out:
    io_fini(&io);
    return rc;
}

/* ---- delete ---- */

struct del_state {
    unsigned outstanding;
    int err;
};

static void del_done(void *arg, int status, const Cairn__Response *resp)
{
    struct del_state *d = arg;
    int rc = status ? status : resp->status;

    if (rc && rc != CAIRN_ENOENT && !d->err)
        d->err = rc;
    d->outstanding--;
}

int cn_stripe_delete(struct cn_cluster *cl, uint64_t object_id, uint32_t gen,
                     const struct ec_layout *l, uint64_t len)
{
    uint64_t nstripes = ec_layout_stripes(l, len);
    unsigned window = cl->depth * (l->k + l->m);
    struct del_state d = {0};

    if (l->k + l->m > cl->n || l->k + l->m > EC_MAX_FRAGS)
        return CAIRN_EINVAL;
    for (uint64_t s = 0; s < nstripes; s++) {
        uint64_t sid = meta_stripe_id(object_id, s);
        unsigned nodes[EC_MAX_FRAGS];

        if (meta_place(sid, cl->keys, cl->n, l->k + l->m, nodes))
            return CAIRN_EINVAL;
        for (unsigned i = 0; i < l->k + l->m; i++) {
            Cairn__Request req = CAIRN__REQUEST__INIT;
            Cairn__FragId fid = CAIRN__FRAG_ID__INIT;
            int rc;

            while (d.outstanding >= window)
                tp_ctx_wait(cl->tp, 1000);
            fid.stripe = sid;
            fid.gen = gen;
            fid.index = i;
            req.op = CAIRN__OP__OP_FRAG_DEL;
            req.frag = &fid;
            d.outstanding++;
            rc = tp_call(cl->tp, cl->peers[nodes[i]], &req, NULL, 0, NULL, 0, del_done, &d);
            if (rc) {
                d.outstanding--;
                if (!d.err)
                    d.err = rc;
            }
        }
    }
    while (d.outstanding)
        tp_ctx_wait(cl->tp, 1000);
    return d.err;
}

/* ---- replicated metadata records ---- */

struct meta_call {
    struct meta_state *ms;
    struct cn_cluster *cl;
    unsigned node;
    int status;
    uint64_t version;
    uint32_t len;
    uint8_t *buf; /* owned (get) */
};

struct meta_state {
    unsigned outstanding;
};

static void meta_done(void *arg, int status, const Cairn__Response *resp)
{
    struct meta_call *mc = arg;

    note_status(mc->cl, mc->node, status);
    mc->status = status ? status : resp->status;
    if (!status) {
        mc->version = resp->version;
        mc->len = resp->payload_len;
    }
    mc->ms->outstanding--;
}

static uint32_t meta_replicas(struct cn_cluster *cl, const char *key, unsigned *nodes,
                              unsigned *n)
{
    uint32_t shard = meta_shard_of(key, strlen(key)) % META_SHARDS;

    *n = cl->layout.m + 1;
    if (*n > cl->n)
        *n = cl->n;
    /* Shard placement hashes the shard number apart from stripe ids. */
    meta_place(meta_mix64(0x5348415244ull ^ shard), cl->keys, cl->n, *n, nodes);
    return shard;
}

static uint64_t wall_version(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int meta_call_all(struct cn_cluster *cl, const char *key, Cairn__Op op, const void *val,
                         uint32_t len, struct meta_call *calls, unsigned *nrep, bool want_payload)
{
    unsigned nodes[EC_MAX_FRAGS + 1], n;
    struct meta_state ms = {0};
    uint32_t shard = meta_replicas(cl, key, nodes, &n);
    uint32_t cap = tp_ctx_max_payload(cl->tp);
    uint64_t version = wall_version();

    if (strlen(key) == 0 || strlen(key) > 500)
        return CAIRN_EINVAL;
    for (unsigned i = 0; i < n; i++) {
        Cairn__Request req = CAIRN__REQUEST__INIT;
        int rc;

        calls[i] = (struct meta_call){.ms = &ms, .cl = cl, .node = nodes[i],
                                      .status = CAIRN_ECANCELED};
        if (node_down(cl, nodes[i])) {
            calls[i].status = CAIRN_EUNREACH;
            continue;
        }
        if (want_payload) {
            calls[i].buf = malloc(cap);
            if (!calls[i].buf) {
                calls[i].status = CAIRN_ENOMEM;
                continue;
            }
        }
        req.op = op;
        req.shard = shard;
        req.key.data = (uint8_t *)key;
        req.key.len = strlen(key);
        req.expect_version = UINT64_MAX; /* KV_ANY */
        req.new_version = version;
        ms.outstanding++;
        rc = tp_call(cl->tp, cl->peers[nodes[i]], &req, val, len, calls[i].buf,
                     want_payload ? cap : 0, meta_done, &calls[i]);
        if (rc) {
            ms.outstanding--;
            calls[i].status = rc;
        }
    }
    while (ms.outstanding)
        tp_ctx_wait(cl->tp, 1000);
    *nrep = n;
    return 0;
}

int cn_meta_put(struct cn_cluster *cl, const char *key, const void *val, uint32_t len)
{
    struct meta_call calls[EC_MAX_FRAGS + 1];
    unsigned n = 0;
    int rc = meta_call_all(cl, key, CAIRN__OP__OP_KV_PUT, val, len, calls, &n, false);

    for (unsigned i = 0; !rc && i < n; i++)
        if (calls[i].status)
            rc = calls[i].status;
    return rc;
}

int cn_meta_get(struct cn_cluster *cl, const char *key, void **val, uint32_t *len)
{
    struct meta_call calls[EC_MAX_FRAGS + 1];
    unsigned n = 0, best = UINT32_MAX, noent = 0;
    int rc = meta_call_all(cl, key, CAIRN__OP__OP_KV_GET, NULL, 0, calls, &n, true);
    int last_err = CAIRN_EUNREACH;

    for (unsigned i = 0; !rc && i < n; i++) {
        if (calls[i].status == 0) {
            if (best == UINT32_MAX || calls[i].version > calls[best].version)
                best = i;
        } else if (calls[i].status == CAIRN_ENOENT) {
            noent++;
        } else {
            last_err = calls[i].status;
        }
    }
    if (!rc) {
        if (best != UINT32_MAX) {
            *val = calls[best].buf;
            *len = calls[best].len;
            calls[best].buf = NULL;
        } else {
            rc = noent ? CAIRN_ENOENT : last_err;
        }
    }
    for (unsigned i = 0; i < n; i++)
        free(calls[i].buf);
    return rc;
}

int cn_meta_del(struct cn_cluster *cl, const char *key)
{
    struct meta_call calls[EC_MAX_FRAGS + 1];
    unsigned n = 0, noent = 0;
    int rc = meta_call_all(cl, key, CAIRN__OP__OP_KV_DEL, NULL, 0, calls, &n, false);

    for (unsigned i = 0; !rc && i < n; i++) {
        if (calls[i].status == CAIRN_ENOENT)
            noent++;
        else if (calls[i].status)
            rc = calls[i].status;
    }
    if (!rc && noent == n)
        rc = CAIRN_ENOENT;
    return rc;
}
