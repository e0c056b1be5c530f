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
#include "client/stripe.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/placement.h"
#include "common/cairn.h"
#include "common/log.h"

#define TAG "stripe"
#define NO_NODE UINT_MAX /* a position whose D-node this view does not know */

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
    unsigned nodes[EC_MAX_FRAGS]; /* D-node index per fragment (NO_NODE: unknown) */
    unsigned pos[EC_MAX_FRAGS];   /* placement position per fragment */
    unsigned outstanding;
    int err;
    uint8_t *frags[EC_MAX_FRAGS]; /* fragment buffers of this stripe */
    uint8_t *parity;              /* owned: m * frag_size */
    uint8_t *tail;                /* owned: k * frag_size, for the partial last stripe */
    uint32_t ok, failed, requested; /* fragment bit masks (reads) */
    struct frag_op ops[EC_MAX_FRAGS];
};

struct io {
    struct cl_cluster *cl;
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
    struct cl_io_stats *st;
    struct slot *slots;
    unsigned nslots;
    struct cl_placement *pl;          /* NULL: the first design (per-stripe rendezvous) */
    unsigned pos_node[CL_PLACE_MAX];  /* D-node index per position of pl */
    unsigned min;                     /* writes: fewest fragments a stripe may keep */
    int frag_err;                     /* placed writes: the last fragment's error */
};

/* Why a placed write has too few positions left: full devices say so, anything else is
 * D-nodes out of reach. */
static int short_of_nodes(const struct io *io)
{
    return io->frag_err == CAIRN_ENOSPC ? CAIRN_ENOSPC : CAIRN_EUNREACH;
}

unsigned cl_placement_missing(const struct cl_placement *pl)
{
    return (unsigned)__builtin_popcount(pl->missing);
}

/* Whether fragment i of the slot's stripe has no place to be (placed writes and reads). */
static bool frag_missing(const struct io *io, const struct slot *sl, unsigned i)
{
    return io->pl && (((io->pl->missing >> sl->pos[i]) & 1u) || sl->nodes[i] == NO_NODE);
}

/* Resolve pl's positions to this view's D-node indexes. */
static int io_place(struct io *io, struct cl_placement *pl)
{
    io->pl = pl;
    if (!pl)
        return 0;
    if (pl->n != io->l->k + io->l->m || pl->n > CL_PLACE_MAX)
        return CAIRN_EINVAL;
    for (unsigned p = 0; p < pl->n; p++) {
        int idx = pl->ids[p] ? cl_cluster_node_index(io->cl, pl->ids[p]) : -1;

        io->pos_node[p] = idx < 0 ? NO_NODE : (unsigned)idx;
    }
    return 0;
}

static int io_init(struct io *io, struct cl_cluster *cl, const struct ec_layout *l,
                   uint64_t object_id, uint32_t gen, uint8_t *data, uint64_t len,
                   struct cl_io_stats *st)
{
    memset(io, 0, sizeof(*io));
    if (l->k == 0 || l->m == 0 || l->k + l->m > EC_MAX_FRAGS || l->k + l->m > cl_cluster_dnodes(cl) ||
        l->frag_size == 0 || l->frag_size > tp_ctx_max_payload(cl_cluster_tp(cl)))
        return CAIRN_EINVAL;
    io->codec = cl_cluster_codec(cl, l->k, l->m);
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
    io->nslots = cl_cluster_depth(cl);
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
    sl->sid = cl_stripe_id(io->object_id, io->first + s);
    sl->flen = ec_layout_frag_len(l, io->len, s);
    sl->bytes = ec_layout_stripe_bytes(l, io->len, s);
    sl->outstanding = 0;
    sl->err = 0;
    sl->ok = sl->failed = sl->requested = 0;
    if (io->pl) {
        unsigned n = l->k + l->m;

        for (unsigned i = 0; i < n; i++) {
            sl->pos[i] = (unsigned)((io->first + s + i) % n);
            sl->nodes[i] = io->pos_node[sl->pos[i]];
        }
    } else {
        rc = cl_cluster_place(io->cl, sl->sid, l->k + l->m, sl->nodes);
        if (rc)
            return rc;
        for (unsigned i = 0; i < l->k + l->m; i++)
            sl->pos[i] = i;
    }
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
        tp_ctx_wait(cl_cluster_tp(io->cl), 1000);
}

/* ---- writes ---- */

static void put_done(void *arg, int status, const Cairn__Response *resp)
{
    struct frag_op *op = arg;
    struct slot *sl = op->slot;
    int rc = status ? status : resp->status;

    cl_cluster_note(sl->io->cl, sl->nodes[op->index], status);
    if (rc && sl->io->pl) {
        /* A placed write goes on without the position; the end decides if that is enough. */
        if (!((sl->io->pl->missing >> sl->pos[op->index]) & 1u))
            log_warn(TAG, "fragment %016llx/%u/%u on %s: %s; position %u of the object is "
                     "missing from now on", (unsigned long long)sl->sid, sl->io->gen, op->index,
                     cl_cluster_dnode_addr(sl->io->cl, sl->nodes[op->index]),
                     cairn_strerror(rc), sl->pos[op->index]);
        sl->io->pl->missing |= 1u << sl->pos[op->index];
        sl->io->frag_err = rc;
    } else if (rc && !sl->err) {
        log_warn(TAG, "fragment %016llx/%u/%u on %s: %s", (unsigned long long)sl->sid,
                 sl->io->gen, op->index, cl_cluster_dnode_addr(sl->io->cl, sl->nodes[op->index]),
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
    if (op_code == CAIRN__OP__OP_FRAG_PUT) { /* the owner, for the D-node's header */
        req.object = io->object_id;
        req.stripe_no = io->first + sl->s;
    }
    sl->outstanding++;
    rc = cl_cluster_call(io->cl, sl->nodes[idx], &req, payload, len, resp_buf,
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
    if (io->pl) {
        /* A node seen down since the placement was made is missing: no deadline per stripe. */
        for (unsigned i = 0; i < n; i++)
            if (!frag_missing(io, sl, i) && cl_cluster_node_down(io->cl, sl->nodes[i]))
                io->pl->missing |= 1u << sl->pos[i];
        if (n - cl_placement_missing(io->pl) < io->min) {
            rc = short_of_nodes(io);
            log_warn(TAG, "object %016llx: %u of its %u D-nodes are missing; a write needs %u "
                     "fragments of each stripe", (unsigned long long)io->object_id,
                     cl_placement_missing(io->pl), n, io->min);
            goto fail;
        }
    } else {
        for (unsigned i = 0; i < n; i++) {
            if (cl_cluster_node_down(io->cl, sl->nodes[i]) &&
                !cl_cluster_recheck(io->cl, sl->nodes[i])) {
                rc = CAIRN_EUNREACH;
                log_warn(TAG, "stripe %016llx: D-node %s is down; a write needs all %u fragments",
                         (unsigned long long)sl->sid, cl_cluster_dnode_addr(io->cl, sl->nodes[i]),
                         n);
                goto fail;
            }
        }
    }
    if (sl->partial) {
        /* The only copy on the write path: the last stripe is padded to k equal fragments. */
        memcpy(sl->tail, io->data + s * (uint64_t)l->k * l->frag_size, sl->bytes);
    }
    ec_encode(io->codec, sl->flen, (const uint8_t *const *)sl->frags, sl->frags + l->k);
    for (unsigned i = 0; i < n; i++) {
        uint32_t crc;

        if (frag_missing(io, sl, i))
            continue;
        crc = ec_crc32c(0, sl->frags[i], sl->flen);
        rc = send_frag(io, sl, i, CAIRN__OP__OP_FRAG_PUT, sl->frags[i], sl->flen, crc, NULL, 0,
                       put_done);
        if (rc && io->pl) {
            io->pl->missing |= 1u << sl->pos[i]; /* refused before it left: same as a failure */
            io->frag_err = rc;
            rc = 0;
        } else if (rc) {
            break;
        }
    }
    if (!rc && sl->busy && sl->outstanding == 0) {
        /* Nothing went out (every position failed at once): the stripe is settled. */
        slot_release(sl);
        rc = short_of_nodes(io);
        if (!io->err)
            io->err = rc;
        return rc;
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

/* Choose where a new object goes: the first k + m nodes of its rendezvous order that the map
 * lets us place on and this view has not seen fail, one per failure domain; then, for what is
 * left, members that are down (their positions missing); then nothing (missing too). */
static int choose(struct cl_cluster *cl, uint64_t object_id, const struct ec_layout *l,
                  unsigned min, struct cl_placement *pl)
{
    unsigned nd = cl_cluster_dnodes(cl), n = l->k + l->m, taken = 0;
    unsigned *order = calloc(nd ? nd : 1, sizeof(*order));
    const char *doms[CL_PLACE_MAX];
    int rc;

    if (!order)
        return CAIRN_ENOMEM;
    rc = cl_cluster_order(cl, object_id, order);
    if (rc)
        goto out;
    memset(pl, 0, sizeof(*pl));
    pl->n = n;
    for (int pass = 0; pass < 2 && taken < n; pass++) {
        for (unsigned j = 0; j < nd && taken < n; j++) {
            unsigned i = order[j];
            bool live = cl_cluster_node_placeable(cl, i) && !cl_cluster_node_down(cl, i);
            const char *dom = cl_cluster_node_domain(cl, i);
            bool seen = false;

            if (pass == 0 ? !live : (live || !cl_cluster_node_member(cl, i)))
                continue;
            for (unsigned t = 0; t < taken && !seen; t++)
                seen = !strcmp(doms[t], dom);
            if (seen || !cl_cluster_node_id(cl, i))
                continue;
            doms[taken] = dom;
            pl->ids[taken] = cl_cluster_node_id(cl, i);
            if (pass == 1)
                pl->missing |= 1u << taken;
            taken++;
        }
    }
    for (; taken < n; taken++)
        pl->missing |= 1u << taken;
    if (n - cl_placement_missing(pl) < min) {
        log_warn(TAG, "object %016llx: only %u of %u fragments can be placed on live D-nodes "
                 "in distinct failure domains; a write needs %u", (unsigned long long)object_id,
                 n - cl_placement_missing(pl), n, min);
        rc = CAIRN_EUNREACH;
    }
out:
    free(order);
    return rc;
}

int cl_stripe_write(struct cl_cluster *cl, uint64_t object_id, uint32_t gen, const uint8_t *data,
                    uint64_t len, struct cl_placement *pl, struct cl_io_stats *st)
{
    return cl_stripe_write_at(cl, object_id, gen, 0, data, len, pl, st);
}

int cl_stripe_write_at(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                       uint64_t first_stripe, const uint8_t *data, uint64_t len,
                       struct cl_placement *pl, struct cl_io_stats *st)
{
    const struct ec_layout *l = cl_cluster_layout(cl);
    struct io io;
    int rc;

    rc = io_init(&io, cl, l, object_id, gen, (uint8_t *)data, len, st);
    if (rc)
        goto out;
    io.min = cl_cluster_min_frags(cl);
    if (pl && pl->n == 0) {
        rc = choose(cl, object_id, l, io.min, pl);
        if (rc)
            goto out;
    }
    rc = io_place(&io, pl);
    if (rc)
        goto out;
    io.first = first_stripe;
    while (!io.err && (io.next < io.nstripes || io.inflight)) {
        struct slot *sl;

        while (!io.err && io.next < io.nstripes && (sl = free_slot(&io)))
            write_stripe(&io, sl, io.next++);
        if (io.inflight)
            tp_ctx_wait(cl_cluster_tp(cl), 1000);
    }
    io_drain(&io);
    rc = io.err;
    if (!rc && pl && pl->n - cl_placement_missing(pl) < io.min) {
        log_warn(TAG, "object %016llx: %u of its %u D-nodes failed during the write; it needs %u",
                 (unsigned long long)object_id, cl_placement_missing(pl), pl->n, io.min);
        rc = short_of_nodes(&io);
    }
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

    cl_cluster_note(io->cl, sl->nodes[op->index], status);
    if (!rc && resp->payload_len != sl->flen)
        rc = CAIRN_EPROTO;
    if (!rc && ec_crc32c(0, op->buf, sl->flen) != resp->crc)
        rc = CAIRN_ECRC;
    if (!rc) {
        sl->ok |= 1u << op->index;
    } else {
        log_warn(TAG, "fragment %016llx/%u/%u from %s: %s", (unsigned long long)sl->sid, io->gen,
                 op->index, cl_cluster_dnode_addr(io->cl, sl->nodes[op->index]), cairn_strerror(rc));
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
    if (frag_missing(io, sl, idx) || cl_cluster_node_down(io->cl, sl->nodes[idx])) {
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
    unsigned want = l->k, live = 0;
    int rc = slot_prepare(io, sl, s);

    if (rc) {
        if (!io->err)
            io->err = rc;
        if (sl->busy)
            slot_release(sl);
        return;
    }
    /* Short of k fragments on nodes not seen down: a node skipped only because this process
     * saw it time out (a slow node under load, one that has just come back) is pinged again
     * (at most once a second per node, cl_cluster_recheck) before the read gives up.  Before
     * any request of this slot goes out: a ping runs the transport, whose callbacks must not
     * settle this slot under us. */
    for (unsigned i = 0; i < l->k + l->m; i++)
        live += !frag_missing(io, sl, i) && !cl_cluster_node_down(io->cl, sl->nodes[i]);
    for (unsigned i = 0; i < l->k + l->m && live < l->k; i++)
        live += !frag_missing(io, sl, i) && cl_cluster_node_down(io->cl, sl->nodes[i]) &&
                cl_cluster_recheck(io->cl, sl->nodes[i]);
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

int cl_stripe_read(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                   const struct ec_layout *l, const struct cl_placement *pl, uint8_t *out,
                   uint64_t len, struct cl_io_stats *st)
{
    return cl_stripe_read_at(cl, object_id, gen, l, pl, 0, out, len, st);
}

int cl_stripe_read_at(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                      const struct ec_layout *l, const struct cl_placement *pl,
                      uint64_t first_stripe, uint8_t *out, uint64_t len,
                      struct cl_io_stats *st)
{
    struct io io;
    int rc;

    rc = io_init(&io, cl, l, object_id, gen, out, len, st);
    if (rc)
        goto out;
    /* Reads never change the placement: io.pl is only written on the write path. */
    rc = io_place(&io, (struct cl_placement *)pl);
    if (rc)
        goto out;
    io.first = first_stripe;
    while (!io.err && (io.next < io.nstripes || io.inflight)) {
        struct slot *sl;

        while (!io.err && io.next < io.nstripes && (sl = free_slot(&io)))
            read_stripe(&io, sl, io.next++);
        if (io.inflight)
            tp_ctx_wait(cl_cluster_tp(cl), 1000);
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

int cl_stripe_delete(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                     const struct ec_layout *l, const struct cl_placement *pl, uint64_t len)
{
    uint64_t nstripes = ec_layout_stripes(l, len);
    unsigned n = l->k + l->m, window = cl_cluster_depth(cl) * n;
    unsigned pos_node[CL_PLACE_MAX];
    struct del_state d = {0};

    if (n > EC_MAX_FRAGS || (!pl && n > cl_cluster_dnodes(cl)) || (pl && pl->n != n))
        return CAIRN_EINVAL;
    /* Placed: every position that names a node we know and that answers, missing ones too
     * (a position that failed half-way through a write may hold some fragments). */
    for (unsigned p = 0; pl && p < n; p++) {
        int idx = pl->ids[p] ? cl_cluster_node_index(cl, pl->ids[p]) : -1;

        pos_node[p] = idx < 0 || cl_cluster_node_down(cl, (unsigned)idx) ? NO_NODE : (unsigned)idx;
    }
    for (uint64_t s = 0; s < nstripes; s++) {
        uint64_t sid = cl_stripe_id(object_id, s);
        unsigned nodes[EC_MAX_FRAGS];

        if (pl) {
            for (unsigned i = 0; i < n; i++)
                nodes[i] = pos_node[(s + i) % n];
        } else if (cl_cluster_place(cl, sid, n, nodes)) {
            return CAIRN_EINVAL;
        }
        for (unsigned i = 0; i < n; i++) {
            Cairn__Request req = CAIRN__REQUEST__INIT;
            Cairn__FragId fid = CAIRN__FRAG_ID__INIT;
            int rc;

            if (nodes[i] == NO_NODE)
                continue;
            while (d.outstanding >= window)
                tp_ctx_wait(cl_cluster_tp(cl), 1000);
            fid.stripe = sid;
            fid.gen = gen;
            fid.index = i;
            req.op = CAIRN__OP__OP_FRAG_DEL;
            req.frag = &fid;
            d.outstanding++;
            rc = cl_cluster_call(cl, nodes[i], &req, NULL, 0, NULL, 0, del_done, &d);
            if (rc) {
                d.outstanding--;
                if (!d.err)
                    d.err = rc;
            }
        }
    }
    while (d.outstanding)
        tp_ctx_wait(cl_cluster_tp(cl), 1000);
    return d.err;
}

/* ---- repair ---- */

uint32_t cl_placement_lost(const struct cl_cluster *cl, const struct cl_placement *pl)
{
    uint32_t lost = pl->missing;

    for (unsigned p = 0; p < pl->n && p < CL_PLACE_MAX; p++) {
        int idx = pl->ids[p] ? cl_cluster_node_index(cl, pl->ids[p]) : -1;

        if (idx < 0 || !cl_cluster_node_member(cl, (unsigned)idx))
            lost |= 1u << p;
    }
    return lost;
}

/* Whether position p's node may take the rebuild: placeable, not seen down (callers keep the
 * view's marks fresh, cl_cluster_probe), named by no other position. */
static bool target_ok(struct cl_cluster *cl, const struct cl_placement *pl, unsigned p,
                      unsigned idx)
{
    uint64_t id = cl_cluster_node_id(cl, idx);

    if (!id || !cl_cluster_node_placeable(cl, idx) || cl_cluster_node_down(cl, idx))
        return false;
    for (unsigned q = 0; q < pl->n; q++)
        if (q != p && pl->ids[q] == id)
            return false;
    return true;
}

int cl_placement_target(struct cl_cluster *cl, uint64_t object_id, const struct cl_placement *pl,
                        unsigned p, uint64_t *id)
{
    unsigned nd = cl_cluster_dnodes(cl), *order;
    int idx = pl->ids[p] ? cl_cluster_node_index(cl, pl->ids[p]) : -1;
    int rc = CAIRN_ENOSPC;

    if (p >= pl->n || pl->n > CL_PLACE_MAX)
        return CAIRN_EINVAL;
    if (idx >= 0 && target_ok(cl, pl, p, (unsigned)idx)) {
        *id = pl->ids[p];
        return 0;
    }
    order = calloc(nd ? nd : 1, sizeof(*order));
    if (!order)
        return CAIRN_ENOMEM;
    if (cl_cluster_order(cl, object_id, order)) {
        rc = CAIRN_EINVAL;
        goto out;
    }
    for (unsigned j = 0; j < nd && rc; j++) {
        const char *dom = cl_cluster_node_domain(cl, order[j]);
        bool clash = false;

        if (!target_ok(cl, pl, p, order[j]))
            continue;
        /* Another position's domain: only nodes that still count (members) hold one. */
        for (unsigned q = 0; q < pl->n && !clash; q++) {
            int qi = q == p || !pl->ids[q] ? -1 : cl_cluster_node_index(cl, pl->ids[q]);

            clash = qi >= 0 && cl_cluster_node_member(cl, (unsigned)qi) &&
                    !strcmp(cl_cluster_node_domain(cl, (unsigned)qi), dom);
        }
        if (clash)
            continue;
        *id = cl_cluster_node_id(cl, order[j]);
        rc = 0;
    }
out:
    free(order);
    return rc;
}

struct put_state {
    unsigned outstanding;
    int err;
};

static void rebuild_put_done(void *arg, int status, const Cairn__Response *resp)
{
    struct put_state *ps = arg;
    int rc = status ? status : resp->status;

    /* The target already holds the fragment: a write whose answer was lost (its position went
     * missing, yet the D-node stored it), or an earlier rebuild.  An object's fragments never
     * change (a new write is a new object id), so those bytes are the ones being rebuilt; the
     * D-node's CRC check on every read catches one that rotted since. */
    if (rc == CAIRN_EEXIST)
        rc = 0;
    if (rc && !ps->err)
        ps->err = rc;
    ps->outstanding--;
}

int cl_stripe_rebuild(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                      const struct ec_layout *l, const struct cl_placement *pl, uint64_t len,
                      uint32_t positions, const uint64_t *targets, uint64_t *bytes)
{
    return cl_stripe_rebuild_range(cl, object_id, gen, l, pl, len, 0, UINT64_MAX, positions,
                                   targets, bytes);
}

int cl_stripe_rebuild_range(struct cl_cluster *cl, uint64_t object_id, uint32_t gen,
                            const struct ec_layout *l, const struct cl_placement *pl,
                            uint64_t len, uint64_t first, uint64_t end, uint32_t positions,
                            const uint64_t *targets, uint64_t *bytes)
{
    unsigned n = l->k + l->m, chunk = cl_cluster_depth(cl), npos = 0;
    uint64_t nstripes = ec_layout_stripes(l, len), sbytes = (uint64_t)l->k * l->frag_size;
    struct ec_codec *codec = cl_cluster_codec(cl, l->k, l->m);
    int tidx[CL_PLACE_MAX];
    struct cl_placement src;
    uint8_t *buf = NULL, *out = NULL, *pad = NULL;
    struct put_state ps = {0};
    int rc = 0;

    if (bytes)
        *bytes = 0;
    if (!pl || pl->n != n || n > CL_PLACE_MAX || !positions || (positions >> n) || !codec)
        return CAIRN_EINVAL;
    for (unsigned p = 0; p < n; p++) {
        tidx[p] = (positions >> p) & 1u ? cl_cluster_node_index(cl, targets[p]) : -1;
        if ((positions >> p) & 1u) {
            if (tidx[p] < 0)
                return CAIRN_EINVAL;
            npos++;
        }
    }
    /* Read from the other positions only: what these hold now is what is being replaced. */
    src = *pl;
    src.missing |= positions;
    if (n - cl_placement_missing(&src) < l->k)
        return CAIRN_EDEGRADED;
    if (chunk == 0)
        chunk = 1;
    buf = aligned_alloc(CAIRN_BLOCK, (size_t)chunk * sbytes);
    out = aligned_alloc(CAIRN_BLOCK, (size_t)chunk * npos * l->frag_size);
    pad = aligned_alloc(CAIRN_BLOCK, (size_t)n * l->frag_size);
    if (!buf || !out || !pad) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    if (end > nstripes)
        end = nstripes;
    for (uint64_t s0 = first; s0 < end && !rc; s0 += chunk) {
        uint64_t cnt = end - s0 < chunk ? end - s0 : chunk;
        uint64_t clen = len - s0 * sbytes < cnt * sbytes ? len - s0 * sbytes : cnt * sbytes;
        uint8_t *frag = out;

        rc = cl_stripe_read_at(cl, object_id, gen, l, &src, s0, buf, clen, NULL);
        for (uint64_t j = 0; j < cnt && !rc; j++) {
            uint64_t s = s0 + j, have = ec_layout_stripe_bytes(l, clen, j);
            uint32_t flen = ec_layout_frag_len(l, clen, j);
            uint8_t *frags[EC_MAX_FRAGS];

            /* The stripe as the writer encoded it: k equal fragments, the last zero-padded. */
            memset(pad, 0, (size_t)l->k * flen);
            memcpy(pad, buf + j * sbytes, have);
            for (unsigned x = 0; x < n; x++)
                frags[x] = pad + (size_t)x * flen;
            ec_encode(codec, flen, (const uint8_t *const *)frags, frags + l->k);
            for (unsigned p = 0; p < n && !rc; p++) {
                unsigned i = (unsigned)((p + n - s % n) % n); /* position p holds fragment i */
                Cairn__Request req = CAIRN__REQUEST__INIT;
                Cairn__FragId fid = CAIRN__FRAG_ID__INIT;

                if (!((positions >> p) & 1u))
                    continue;
                memcpy(frag, frags[i], flen);
                fid.stripe = cl_stripe_id(object_id, s);
                fid.gen = gen;
                fid.index = i;
                req.op = CAIRN__OP__OP_FRAG_PUT;
                req.frag = &fid;
                req.crc = ec_crc32c(0, frag, flen);
                req.object = object_id;
                req.stripe_no = s;
                ps.outstanding++;
                rc = cl_cluster_call(cl, (unsigned)tidx[p], &req, frag, flen, NULL, 0,
                                     rebuild_put_done, &ps);
                if (rc)
                    ps.outstanding--;
                else if (bytes)
                    *bytes += flen;
                frag += l->frag_size;
            }
        }
        /* out is reused by the next chunk: every put of this one must be answered first. */
        while (ps.outstanding)
            tp_ctx_wait(cl_cluster_tp(cl), 1000);
        if (!rc)
            rc = ps.err;
    }
out:
    free(buf);
    free(out);
    free(pad);
    return rc;
}
