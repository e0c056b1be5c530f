/*
 * tp.c - libfabric RDM request/response transport (see tp.h for the wire format).
 *
 * Design:
 *  - Every libfabric operation carries a struct tp_op whose first member is the
 *    fi_context2 libfabric hands back in completions; the op's kind says which
 *    object owns it (a client call or a server request buffer).
 *  - A client call posts its tagged receive (header slot + the caller's buffer)
 *    before it sends, so a response can never arrive to an unposted buffer.  A call
 *    finishes only when both its send and its receive have completed (or been
 *    cancelled): until then libfabric may still touch the caller's buffers, so the
 *    callback, which hands them back, must wait for both.
 *  - Deadlines: an expired call cancels its receive; the cancellation completion
 *    then finishes it with CAIRN_ETIMEDOUT.  A failed send (peer gone) cancels the
 *    receive at once and finishes with CAIRN_EUNREACH.
 *  - Operations that libfabric refuses with -FI_EAGAIN wait in a FIFO and are retried
 *    later, so callers never see EAGAIN.  A send refused because its peer has no
 *    connection is retried on a per-peer timer that backs off (see struct tp_backoff):
 *    with ofi_rxm every post to a peer whose port refuses connections (a D-node killed on
 *    a live host) dials it again, so retrying on every progress made each D-node spin on
 *    connect() for as long as one of its peers was dead.
 *  - A server owns rx_depth receive buffers of TP_HDR_SLOT + max_payload bytes,
 *    aligned to TP_HDR_SLOT; each is lent to the handler with the request and
 *    reposted once the reply has been sent.
 */
#include "transport/tp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>

#include "common/log.h"

#define TAG "tp"
#define TP_CQ_BATCH 32
#define TP_RETRY_MIN_MS 1u        /* longest sleep while a peer's connection is set up */
#define TP_RETRY_FAST_MS 32u      /* how long a peer's refusals are taken for that */
#define TP_RETRY_MAX_MS 64u       /* then waits double from 2 ms up to this */
#define TP_RETRY_FORGET_MS 10000u /* a peer not retried this long has nothing queued */

enum tp_op_kind {
    TP_OP_CALL_SEND,
    TP_OP_CALL_RECV,
    TP_OP_SRV_RECV,
    TP_OP_SRV_SEND,
    TP_OP_RAW_SEND, /* tests only: tp_send_raw() */
    TP_OP_LATER_SEND, /* an answer given after the request's buffer went back */
};

struct tp_op {
    struct fi_context2 fctx; /* first: libfabric returns &fctx as op_context */
    enum tp_op_kind kind;
    bool queued;             /* waiting in ctx->pend for a retry after -FI_EAGAIN */
    struct tp_op *qnext;
};

struct tp_call {
    struct tp_op send_op;
    struct tp_op recv_op;
    struct tp_ctx *ctx;
    struct tp_call *prev, *next; /* ctx->calls: outstanding calls */
    uint64_t req_id;
    fi_addr_t peer;
    uint64_t deadline_ms;
    int status;
    bool send_done, recv_done, cancel_sent;
    const void *payload;
    uint32_t payload_len;
    size_t req_slot_len;
    void *resp_buf;
    uint32_t resp_buf_len;
    Cairn__Response *resp;
    tp_call_cb cb;
    void *arg;
    uint8_t req_slot[TP_HDR_SLOT];
    uint8_t resp_slot[TP_HDR_SLOT];
};

struct tp_req {
    struct tp_op recv_op;
    struct tp_op send_op;
    struct tp_ctx *ctx;
    uint8_t *buf; /* TP_HDR_SLOT-aligned, ctx->rx_buf_len bytes */
    Cairn__Request *hdr;
    fi_addr_t src;
    const void *reply_payload;
    uint32_t reply_payload_len;
    size_t reply_slot_len;
    void (*done)(void *);
    void *done_arg;
    uint64_t arrived_ns; /* when it was delivered, if someone observes answers */
};

/* A peer that refused a send (-FI_EAGAIN): no connection yet (being set up, or its port
 * refuses them: ofi_rxm then dials again on the next post), or its queue is full.  Its sends
 * wait in ctx->pend, in order; each retry posts the first of them alone, and if it is refused
 * again the others are not tried (each try would dial again).  For the first
 * TP_RETRY_FAST_MS of refusals a retry comes with every progress of the context, and the
 * loop sleeps at most TP_RETRY_MIN_MS: a connection being set up advances only when the
 * context progresses (ofi_rxm, manual progress), often on an event that wakes the loop, and
 * one to a live peer is up within that time, so a new connection's first calls go as soon as
 * they did before there was a backoff.  After that the retries come at waits that double
 * from 2 ms to TP_RETRY_MAX_MS.  A send that goes through forgets the refusals.  A dead peer
 * costs a dial every TP_RETRY_MAX_MS instead of one per queued send per progress, and the
 * event loop sleeps in between (tp_ctx_timeout_ms). */
struct tp_backoff {
    fi_addr_t peer;
    uint64_t since_ms; /* first refusal of this run */
    uint64_t retry_ms; /* next retry (with delay_ms 0: the next progress) */
    uint64_t pass;     /* the pend_retry pass of the last refusal */
    uint32_t delay_ms; /* 0 while the refusals are younger than TP_RETRY_FAST_MS */
};

struct tp_ctx {
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_cq *cq;
    struct fid_av *av;
    struct fid_ep *ep;
    int wait_fd;
    uint32_t max_payload;
    uint32_t timeout_ms;
    uint32_t rx_depth;
    size_t rx_buf_len;
    uint8_t name[TP_MAX_ADDR]; /* our fabric address, sent as reply_addr */
    size_t name_len;
    char addr_str[96];
    char prov_str[64];
    uint64_t next_req_id;
    struct tp_call *calls;     /* outstanding calls, oldest first */
    struct tp_call *calls_tail;
    struct tp_op *pend, *pend_tail;
    struct tp_req *reqs; /* server receive buffers (array of rx_depth) */
    tp_serve_cb serve_cb;
    void *serve_arg;
    tp_answered_cb answered_cb;
    void *answered_arg;
    bool closing;
    struct tp_stats stats;
    struct tp_backoff *boff; /* peers that refused sends lately */
    unsigned n_boff, cap_boff;
    uint64_t pass; /* pend_retry passes */
};

/* A raw test message owns a copy of its bytes until libfabric completes the send. */
struct tp_later {
    struct tp_op op; /* first */
    fi_addr_t src;
    uint64_t req_id;
    uint32_t reply_cap;
    int req_op;          /* for the answer's observer: what was asked, with what, when */
    uint32_t req_payload;
    uint64_t arrived_ns;
    size_t slot_len;
    uint8_t slot[TP_HDR_SLOT];
};

struct tp_raw {
    struct tp_op op;
    fi_addr_t peer;
    size_t len;
    uint8_t data[];
};

static int fi_to_cairn(int fi_rc)
{
    int e = fi_rc < 0 ? -fi_rc : fi_rc;

    switch (e) {
    case FI_ETRUNC:
    case FI_ETOOSMALL:
        return CAIRN_ETOOBIG;
    case FI_ECANCELED:
        return CAIRN_ECANCELED;
    case FI_ETIMEDOUT:
        return CAIRN_ETIMEDOUT;
    case FI_ECONNREFUSED:
    case FI_ECONNRESET:
    case FI_ECONNABORTED:
    case FI_EHOSTUNREACH:
    case FI_ENOTCONN:
    case FI_EADDRNOTAVAIL:
    case FI_ESHUTDOWN:
    case FI_EIO:
        return CAIRN_EUNREACH;
    case FI_ENOMEM:
        return CAIRN_ENOMEM;
    default:
        return CAIRN_EFABRIC;
    }
}

/* ---- wire framing ---- */

static size_t frame_header(uint8_t *slot, const ProtobufCMessage *msg, bool has_payload)
{
    size_t hlen = protobuf_c_message_get_packed_size(msg);
    uint32_t magic = TP_MAGIC, len32 = (uint32_t)hlen;

    memcpy(slot, &magic, 4);
    memcpy(slot + 4, &len32, 4);
    protobuf_c_message_pack(msg, slot + 8);
    if (!has_payload)
        return 8 + hlen;
    memset(slot + 8 + hlen, 0, TP_HDR_SLOT - 8 - hlen);
    return TP_HDR_SLOT;
}

/* Validate magic and header length of a received slot; returns the header length or -1. */
static long frame_check(const uint8_t *buf, size_t len)
{
    uint32_t magic, hlen;

    if (len < 8)
        return -1;
    memcpy(&magic, buf, 4);
    memcpy(&hlen, buf + 4, 4);
    if (magic != TP_MAGIC || hlen > TP_HDR_SLOT - 8 || hlen > len - 8)
        return -1;
    return (long)hlen;
}

/* The payload_len a header announces must match what arrived: either no payload and nothing
 * after the header, or a full padded slot followed by exactly payload_len bytes. */
static bool frame_len_ok(size_t len, long hlen, uint32_t payload_len, uint32_t max_payload)
{
    if (payload_len == 0)
        return len == (size_t)hlen + 8;
    return payload_len <= max_payload && len == (size_t)TP_HDR_SLOT + payload_len;
}

int tp_decode_request(const void *buf, size_t len, uint32_t max_payload, Cairn__Request **out)
{
    long hlen = frame_check(buf, len);
    Cairn__Request *r;

    if (hlen < 0)
        return CAIRN_EPROTO;
    r = cairn__request__unpack(NULL, (size_t)hlen, (const uint8_t *)buf + 8);
    if (!r)
        return CAIRN_EPROTO;
    if (!frame_len_ok(len, hlen, r->payload_len, max_payload) || r->reply_addr.len == 0 ||
        r->reply_addr.len > TP_MAX_ADDR) {
        cairn__request__free_unpacked(r, NULL);
        return CAIRN_EPROTO;
    }
    *out = r;
    return 0;
}

/* ---- pending-operation queue (operations refused with -FI_EAGAIN) ---- */

static void pend_push(struct tp_ctx *ctx, struct tp_op *op)
{
    op->queued = true;
    op->qnext = NULL;
    if (ctx->pend_tail)
        ctx->pend_tail->qnext = op;
    else
        ctx->pend = op;
    ctx->pend_tail = op;
}

static void pend_remove(struct tp_ctx *ctx, struct tp_op *op)
{
    struct tp_op **pp = &ctx->pend, *prev = NULL;

    while (*pp && *pp != op) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp)
        return;
    *pp = op->qnext;
    if (ctx->pend_tail == op)
        ctx->pend_tail = prev;
    op->queued = false;
}

static struct tp_call *call_of(struct tp_op *op)
{
    return op->kind == TP_OP_CALL_SEND
               ? (struct tp_call *)((char *)op - offsetof(struct tp_call, send_op))
               : (struct tp_call *)((char *)op - offsetof(struct tp_call, recv_op));
}

static struct tp_req *req_of(struct tp_op *op)
{
    return op->kind == TP_OP_SRV_RECV
               ? (struct tp_req *)((char *)op - offsetof(struct tp_req, recv_op))
               : (struct tp_req *)((char *)op - offsetof(struct tp_req, send_op));
}

/* The peer a send goes to; FI_ADDR_UNSPEC for receives (local: no peer to back off from). */
static fi_addr_t op_peer(struct tp_op *op)
{
    switch (op->kind) {
    case TP_OP_CALL_SEND:
        return call_of(op)->peer;
    case TP_OP_SRV_SEND:
        return req_of(op)->src;
    case TP_OP_RAW_SEND:
        return ((struct tp_raw *)op)->peer;
    case TP_OP_LATER_SEND:
        return ((struct tp_later *)op)->src;
    case TP_OP_CALL_RECV:
    case TP_OP_SRV_RECV:
        break;
    }
    return FI_ADDR_UNSPEC;
}

static struct tp_backoff *boff_find(struct tp_ctx *ctx, fi_addr_t peer)
{
    for (unsigned i = 0; i < ctx->n_boff; i++)
        if (ctx->boff[i].peer == peer)
            return &ctx->boff[i];
    return NULL;
}

/* peer refused a send at now: its queued sends wait, longer each time in a row. */
static void boff_refused(struct tp_ctx *ctx, fi_addr_t peer, uint64_t now)
{
    struct tp_backoff *b;

    if (peer == FI_ADDR_UNSPEC)
        return;
    b = boff_find(ctx, peer);
    if (!b) {
        if (ctx->n_boff == ctx->cap_boff) {
            unsigned cap = ctx->cap_boff ? ctx->cap_boff * 2 : 8;
            struct tp_backoff *v = realloc(ctx->boff, cap * sizeof(*v));

            if (!v)
                return; /* retried at the next progress instead, as without a backoff */
            ctx->boff = v;
            ctx->cap_boff = cap;
        }
        b = &ctx->boff[ctx->n_boff++];
        b->peer = peer;
        b->since_ms = now;
    }
    if (now < b->since_ms + TP_RETRY_FAST_MS)
        b->delay_ms = 0;
    else
        b->delay_ms = b->delay_ms ? CAIRN_MIN(b->delay_ms * 2, TP_RETRY_MAX_MS) : 2;
    b->retry_ms = now + b->delay_ms;
    b->pass = ctx->pass;
}

static void boff_drop(struct tp_ctx *ctx, struct tp_backoff *b)
{
    *b = ctx->boff[--ctx->n_boff];
}

/* Post one operation; returns 0, -FI_EAGAIN, or another negative fi error. */
static ssize_t op_post(struct tp_ctx *ctx, struct tp_op *op)
{
    struct iovec iov[2];

    switch (op->kind) {
    case TP_OP_CALL_SEND: {
        struct tp_call *c = call_of(op);
        size_t n = 1;

        iov[0].iov_base = c->req_slot;
        iov[0].iov_len = c->req_slot_len;
        if (c->payload_len) {
            iov[1].iov_base = (void *)c->payload;
            iov[1].iov_len = c->payload_len;
            n = 2;
        }
        return fi_sendv(ctx->ep, iov, NULL, n, c->peer, &op->fctx);
    }
    case TP_OP_CALL_RECV: {
        struct tp_call *c = call_of(op);
        size_t n = 1;

        iov[0].iov_base = c->resp_slot;
        iov[0].iov_len = TP_HDR_SLOT;
        if (c->resp_buf && c->resp_buf_len) {
            iov[1].iov_base = c->resp_buf;
            iov[1].iov_len = c->resp_buf_len;
            n = 2;
        }
        return fi_trecvv(ctx->ep, iov, NULL, n, FI_ADDR_UNSPEC, c->req_id, 0, &op->fctx);
    }
    case TP_OP_SRV_RECV: {
        struct tp_req *r = req_of(op);

        return fi_recv(ctx->ep, r->buf, ctx->rx_buf_len, NULL, FI_ADDR_UNSPEC, &op->fctx);
    }
    case TP_OP_SRV_SEND: {
        struct tp_req *r = req_of(op);
        size_t n = 1;

        iov[0].iov_base = r->buf;
        iov[0].iov_len = r->reply_slot_len;
        if (r->reply_payload_len) {
            iov[1].iov_base = (void *)r->reply_payload;
            iov[1].iov_len = r->reply_payload_len;
            n = 2;
        }
        return fi_tsendv(ctx->ep, iov, NULL, n, r->src, r->hdr->req_id, &op->fctx);
    }
    case TP_OP_RAW_SEND: {
        struct tp_raw *raw = (struct tp_raw *)op;

        return fi_send(ctx->ep, raw->data, raw->len, NULL, raw->peer, &op->fctx);
    }
    case TP_OP_LATER_SEND: {
        struct tp_later *l = (struct tp_later *)op;

        return fi_tsend(ctx->ep, l->slot, l->slot_len, NULL, l->src, l->req_id, &op->fctx);
    }
    }
    return -FI_EINVAL;
}

static void op_failed(struct tp_ctx *ctx, struct tp_op *op, int err);

/* Post now, or queue if libfabric is out of resources. */
static void op_submit(struct tp_ctx *ctx, struct tp_op *op)
{
    fi_addr_t peer = op_peer(op);
    ssize_t rc;

    /* Operations are independent (requests carry their own ids, responses are tagged), so a
     * new one is tried at once even when others wait: an operation stuck on one peer (e.g.
     * a connection to a dead D-node) must not hold up traffic to every other peer.  One for
     * a peer that refused lately waits behind that peer's queued ones, for its retry time:
     * posting it now would dial a dead peer once more, and could overtake them. */
    if (peer != FI_ADDR_UNSPEC && boff_find(ctx, peer)) {
        pend_push(ctx, op);
        return;
    }
    rc = op_post(ctx, op);
    if (rc == -FI_EAGAIN) {
        ctx->stats.refused++;
        boff_refused(ctx, peer, cairn_now_ms());
        pend_push(ctx, op);
    } else if (rc) {
        op_failed(ctx, op, fi_to_cairn((int)rc));
    }
}

static void pend_retry(struct tp_ctx *ctx)
{
    struct tp_op *op = ctx->pend, *next;
    uint64_t now = cairn_now_ms();

    ctx->pass++;
    /* Try every waiting operation whose peer's time came, once; those still refused keep
     * their place, and a refusal puts the rest of that peer's off to its next time. */
    for (; op; op = next) {
        fi_addr_t peer = op_peer(op);
        struct tp_backoff *b = peer != FI_ADDR_UNSPEC ? boff_find(ctx, peer) : NULL;
        ssize_t rc;

        next = op->qnext;
        if (b && (now < b->retry_ms || b->pass == ctx->pass))
            continue; /* not its time, or refused in this pass already */
        rc = op_post(ctx, op);
        if (rc == -FI_EAGAIN) {
            ctx->stats.refused++;
            boff_refused(ctx, peer, now);
            continue;
        }
        if (b)
            boff_drop(ctx, b); /* it took one (or failed it outright): its others may go */
        pend_remove(ctx, op);
        if (rc) {
            /* Failing may unlink or free other queued operations of the same call. */
            op_failed(ctx, op, fi_to_cairn((int)rc));
            next = ctx->pend;
        }
    }
    for (unsigned i = 0; i < ctx->n_boff;) {
        if (ctx->boff[i].retry_ms + TP_RETRY_FORGET_MS < now)
            boff_drop(ctx, &ctx->boff[i]); /* nothing queued for it: retries would be due */
        else
            i++;
    }
}

/* ---- client calls ---- */

static void call_unlink(struct tp_ctx *ctx, struct tp_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        ctx->calls_tail = c->prev;
}

static void call_maybe_finish(struct tp_call *c)
{
    struct tp_ctx *ctx = c->ctx;

    if (!c->send_done || !c->recv_done)
        return;
    call_unlink(ctx, c);
    c->cb(c->arg, c->status, c->status ? NULL : c->resp);
    if (c->resp)
        cairn__response__free_unpacked(c->resp, NULL);
    free(c);
}

/* Stop waiting for the response: cancel the posted receive (or drop it if never posted). */
static void call_abort(struct tp_call *c, int status)
{
    struct tp_ctx *ctx = c->ctx;

    if (!c->status)
        c->status = status;
    if (c->recv_done || c->cancel_sent)
        return;
    c->cancel_sent = true;
    if (c->recv_op.queued) {
        pend_remove(ctx, &c->recv_op);
        c->recv_done = true;
    } else if (fi_cancel(&ctx->ep->fid, &c->recv_op.fctx) != 0) {
        /* Not cancellable (already matched and in progress): its completion will come. */
        log_debug(TAG, "call %llu: receive not cancellable", (unsigned long long)c->req_id);
    }
    if (c->send_op.queued) {
        pend_remove(ctx, &c->send_op);
        c->send_done = true;
    }
}

static void call_recv_done(struct tp_call *c, size_t len)
{
    long hlen = frame_check(c->resp_slot, len < TP_HDR_SLOT ? len : TP_HDR_SLOT);
    Cairn__Response *r = NULL;

    c->recv_done = true;
    if (c->status) /* already failed (e.g. timed out but the receive completed anyway) */
        return;
    if (hlen >= 0)
        r = cairn__response__unpack(NULL, (size_t)hlen, c->resp_slot + 8);
    if (!r || r->req_id != c->req_id || r->payload_len > c->resp_buf_len ||
        !frame_len_ok(len, hlen, r->payload_len, c->resp_buf_len)) {
        c->status = CAIRN_EPROTO;
        if (r)
            cairn__response__free_unpacked(r, NULL);
        return;
    }
    c->resp = r;
}

int tp_call(struct tp_ctx *ctx, uint64_t peer, Cairn__Request *req, const void *payload,
            uint32_t payload_len, void *resp_buf, uint32_t resp_buf_len, tp_call_cb cb, void *arg)
{
    struct tp_call *c;

    if (!cb || (payload_len && !payload) || (resp_buf_len && !resp_buf))
        return CAIRN_EINVAL;
    if (payload_len > ctx->max_payload || resp_buf_len > ctx->max_payload)
        return CAIRN_ETOOBIG;
    if (ctx->closing)
        return CAIRN_ECANCELED;
    c = malloc(sizeof(*c));
    if (!c)
        return CAIRN_ENOMEM;
    memset(c, 0, offsetof(struct tp_call, req_slot));
    c->ctx = ctx;
    c->req_id = ctx->next_req_id++;
    c->peer = (fi_addr_t)peer;
    c->payload = payload;
    c->payload_len = payload_len;
    c->resp_buf = resp_buf;
    c->resp_buf_len = resp_buf_len;
    c->cb = cb;
    c->arg = arg;
    c->send_op.kind = TP_OP_CALL_SEND;
    c->recv_op.kind = TP_OP_CALL_RECV;

    req->req_id = c->req_id;
    req->payload_len = payload_len;
    req->reply_cap = resp_buf ? resp_buf_len : 0;
    req->reply_addr.data = ctx->name;
    req->reply_addr.len = ctx->name_len;
    if (protobuf_c_message_get_packed_size(&req->base) > TP_HDR_SLOT - 8) {
        free(c);
        return CAIRN_ETOOBIG;
    }
    c->req_slot_len = frame_header(c->req_slot, &req->base, payload_len > 0);
    c->deadline_ms = cairn_now_ms() + ctx->timeout_ms;

    c->prev = ctx->calls_tail;
    if (ctx->calls_tail)
        ctx->calls_tail->next = c;
    else
        ctx->calls = c;
    ctx->calls_tail = c;

    /* Receive first: the answer may race the send completion.  Either submit may finish
     * (and free) the call synchronously on failure, so c is not touched after it. */
    op_submit(ctx, &c->recv_op);
    if (c->recv_done) {
        c->send_done = true;
        call_maybe_finish(c);
        return 0;
    }
    op_submit(ctx, &c->send_op);
    return 0;
}

static void sync_cb(void *arg, int status, const Cairn__Response *resp)
{
    struct tp_sync *s = arg;
    uint8_t buf[TP_HDR_SLOT];
    size_t n;

    s->status = status;
    s->resp = NULL;
    if (status)
        return;
    /* The transport frees resp after the callback; keep a copy for the caller. */
    n = cairn__response__pack(resp, buf);
    s->resp = cairn__response__unpack(NULL, n, buf);
    if (!s->resp)
        s->status = CAIRN_ENOMEM;
}

int tp_call_sync(struct tp_ctx *ctx, uint64_t peer, Cairn__Request *req, const void *payload,
                 uint32_t payload_len, void *resp_buf, uint32_t resp_buf_len, struct tp_sync *out)
{
    int rc;

    out->status = 1; /* not yet completed */
    out->resp = NULL;
    rc = tp_call(ctx, peer, req, payload, payload_len, resp_buf, resp_buf_len, sync_cb, out);
    if (rc)
        return rc;
    while (out->status == 1) {
        rc = tp_ctx_wait(ctx, 100);
        if (rc < 0)
            log_warn(TAG, "progress: %s", cairn_strerror(rc));
    }
    return out->status;
}

void tp_sync_fini(struct tp_sync *s)
{
    if (s && s->resp) {
        cairn__response__free_unpacked(s->resp, NULL);
        s->resp = NULL;
    }
}

/* ---- server side ---- */

static void req_repost(struct tp_ctx *ctx, struct tp_req *r)
{
    if (r->hdr) {
        cairn__request__free_unpacked(r->hdr, NULL);
        r->hdr = NULL;
    }
    if (ctx->closing)
        return;
    op_submit(ctx, &r->recv_op);
}

static void req_received(struct tp_ctx *ctx, struct tp_req *r, size_t len)
{
    Cairn__Request *hdr;
    int rc;

    if (ctx->closing) {
        /* Shutting down (tp_ctx_destroy drains its calls): whoever serves requests may be
         * half torn down already; the sender's deadline answers for us. */
        req_repost(ctx, r);
        return;
    }
    rc = tp_decode_request(r->buf, len, ctx->max_payload, &hdr);
    if (rc) {
        log_debug(TAG, "dropped malformed message of %zu bytes", len);
        req_repost(ctx, r);
        return;
    }
    r->hdr = hdr;
    /* fi_av_insert of an address already present returns the existing entry. */
    if (hdr->reply_addr.len != ctx->name_len ||
        fi_av_insert(ctx->av, hdr->reply_addr.data, 1, &r->src, 0, NULL) != 1) {
        log_debug(TAG, "dropped message with unusable reply address");
        req_repost(ctx, r);
        return;
    }
    if (ctx->answered_cb)
        r->arrived_ns = cairn_now_ns();
    ctx->serve_cb(ctx->serve_arg, r);
}

static void answered(struct tp_ctx *ctx, int op, int status, uint32_t in, uint32_t out,
                     uint64_t arrived_ns)
{
    struct tp_answered a = {.op = op, .status = status, .in_bytes = in, .out_bytes = out};

    if (!ctx->answered_cb)
        return;
    a.ns = arrived_ns ? cairn_now_ns() - arrived_ns : 0;
    ctx->answered_cb(ctx->answered_arg, &a);
}

void tp_ctx_observe(struct tp_ctx *ctx, tp_answered_cb cb, void *arg)
{
    ctx->answered_cb = cb;
    ctx->answered_arg = arg;
}

int tp_reply(struct tp_req *r, Cairn__Response *resp, const void *payload, uint32_t payload_len,
             void (*done)(void *), void *done_arg)
{
    struct tp_ctx *ctx = r->ctx;

    if ((payload_len && !payload) || payload_len > ctx->max_payload)
        return CAIRN_ETOOBIG;
    if (payload_len > r->hdr->reply_cap) {
        /* Never more than the caller posted: a message larger than the receive it lands in
         * stalls the connection instead of failing.  It learns how much was needed. */
        if (!resp->status)
            resp->status = CAIRN_ETOOBIG;
        resp->payload_needed = payload_len;
        payload = NULL;
        payload_len = 0;
    }
    resp->req_id = r->hdr->req_id;
    resp->payload_len = payload_len;
    if (protobuf_c_message_get_packed_size(&resp->base) > TP_HDR_SLOT - 8)
        return CAIRN_ETOOBIG;
    /* The request header was unpacked already, so its slot is free for the answer. */
    r->reply_slot_len = frame_header(r->buf, &resp->base, payload_len > 0);
    r->reply_payload = payload;
    r->reply_payload_len = payload_len;
    r->done = done;
    r->done_arg = done_arg;
    answered(ctx, r->hdr->op, resp->status, r->hdr->payload_len, payload_len, r->arrived_ns);
    op_submit(ctx, &r->send_op);
    return 0;
}

struct tp_later *tp_req_later(struct tp_req *r)
{
    struct tp_later *l = calloc(1, sizeof *l);

    if (!l)
        return NULL;
    l->op.kind = TP_OP_LATER_SEND;
    l->src = r->src;
    l->req_id = r->hdr->req_id;
    l->reply_cap = r->hdr->reply_cap;
    l->req_op = r->hdr->op;
    l->req_payload = r->hdr->payload_len;
    l->arrived_ns = r->arrived_ns;
    req_repost(r->ctx, r);
    return l;
}

int tp_reply_later(struct tp_ctx *ctx, struct tp_later *l, Cairn__Response *resp)
{
    resp->req_id = l->req_id;
    resp->payload_len = 0;
    if (protobuf_c_message_get_packed_size(&resp->base) > TP_HDR_SLOT - 8) {
        free(l);
        return CAIRN_ETOOBIG;
    }
    l->slot_len = frame_header(l->slot, &resp->base, false);
    answered(ctx, l->req_op, resp->status, l->req_payload, 0, l->arrived_ns);
    op_submit(ctx, &l->op);
    return 0;
}

void tp_later_drop(struct tp_later *l)
{
    free(l);
}

static void reply_sent(struct tp_ctx *ctx, struct tp_req *r)
{
    if (r->done)
        r->done(r->done_arg);
    r->done = NULL;
    req_repost(ctx, r);
}

const Cairn__Request *tp_req_hdr(const struct tp_req *r)
{
    return r->hdr;
}

void *tp_req_buf(struct tp_req *r)
{
    return r->buf;
}

size_t tp_req_buf_len(const struct tp_req *r)
{
    return r->ctx->rx_buf_len;
}

void *tp_req_payload(struct tp_req *r)
{
    return r->buf + TP_HDR_SLOT;
}

uint32_t tp_req_payload_len(const struct tp_req *r)
{
    return r->hdr->payload_len;
}

int tp_ctx_serve(struct tp_ctx *ctx, tp_serve_cb cb, void *arg)
{
    if (ctx->reqs)
        return CAIRN_EINVAL;
    ctx->reqs = calloc(ctx->rx_depth, sizeof(*ctx->reqs));
    if (!ctx->reqs)
        return CAIRN_ENOMEM;
    ctx->serve_cb = cb;
    ctx->serve_arg = arg;
    for (uint32_t i = 0; i < ctx->rx_depth; i++) {
        struct tp_req *r = &ctx->reqs[i];

        if (posix_memalign((void **)&r->buf, TP_HDR_SLOT, ctx->rx_buf_len))
            return CAIRN_ENOMEM; /* tp_ctx_destroy frees what was allocated */
        r->ctx = ctx;
        r->recv_op.kind = TP_OP_SRV_RECV;
        r->send_op.kind = TP_OP_SRV_SEND;
        op_submit(ctx, &r->recv_op);
    }
    return 0;
}

/* ---- completions ---- */

static void op_completed(struct tp_ctx *ctx, struct tp_op *op, size_t len)
{
    switch (op->kind) {
    case TP_OP_CALL_SEND: {
        struct tp_call *c = call_of(op);

        c->send_done = true;
        call_maybe_finish(c);
        break;
    }
    case TP_OP_CALL_RECV: {
        struct tp_call *c = call_of(op);

        call_recv_done(c, len);
        call_maybe_finish(c);
        break;
    }
    case TP_OP_SRV_RECV:
        req_received(ctx, req_of(op), len);
        break;
    case TP_OP_SRV_SEND:
        reply_sent(ctx, req_of(op));
        break;
    case TP_OP_RAW_SEND:
    case TP_OP_LATER_SEND:
        free(op);
        break;
    }
}

static void op_failed(struct tp_ctx *ctx, struct tp_op *op, int err)
{
    switch (op->kind) {
    case TP_OP_CALL_SEND: {
        struct tp_call *c = call_of(op);

        c->send_done = true;
        call_abort(c, err == CAIRN_ECANCELED ? CAIRN_ECANCELED : CAIRN_EUNREACH);
        call_maybe_finish(c);
        break;
    }
    case TP_OP_CALL_RECV: {
        struct tp_call *c = call_of(op);

        c->recv_done = true;
        if (!c->status)
            c->status = err == CAIRN_ECANCELED ? CAIRN_ETIMEDOUT : err;
        call_maybe_finish(c);
        break;
    }
    case TP_OP_SRV_RECV: {
        struct tp_req *r = req_of(op);

        /* Truncated (oversized) messages land here: drop and keep serving. */
        if (err != CAIRN_ECANCELED && !ctx->closing)
            req_repost(ctx, r);
        break;
    }
    case TP_OP_SRV_SEND:
        log_debug(TAG, "reply send failed: %s", cairn_strerror(err));
        reply_sent(ctx, req_of(op));
        break;
    case TP_OP_RAW_SEND:
    case TP_OP_LATER_SEND:
        free(op);
        break;
    }
}

static void expire_calls(struct tp_ctx *ctx)
{
    uint64_t now = cairn_now_ms();
    struct tp_call *c, *next;

    for (c = ctx->calls; c; c = next) {
        next = c->next;
        if (c->recv_done || c->cancel_sent || now < c->deadline_ms)
            continue;
        call_abort(c, CAIRN_ETIMEDOUT);
        call_maybe_finish(c);
    }
}

int tp_ctx_progress(struct tp_ctx *ctx)
{
    struct fi_cq_tagged_entry ent[TP_CQ_BATCH];
    int handled = 0;

    for (;;) {
        ssize_t n = fi_cq_read(ctx->cq, ent, TP_CQ_BATCH);

        if (n == -FI_EAGAIN)
            break;
        if (n == -FI_EAVAIL) {
            struct fi_cq_err_entry err = {0};

            if (fi_cq_readerr(ctx->cq, &err, 0) != 1)
                break;
            log_debug(TAG, "completion error: %s (prov %d)", fi_strerror(err.err),
                      err.prov_errno);
            op_failed(ctx, err.op_context, fi_to_cairn(err.err));
            handled++;
            continue;
        }
        if (n < 0) {
            log_error(TAG, "fi_cq_read: %s", fi_strerror((int)-n));
            return CAIRN_EFABRIC;
        }
        for (ssize_t i = 0; i < n; i++)
            op_completed(ctx, ent[i].op_context, ent[i].len);
        handled += (int)n;
        if (n < TP_CQ_BATCH)
            break;
    }
    pend_retry(ctx);
    expire_calls(ctx);
    return handled;
}

int tp_ctx_fd(const struct tp_ctx *ctx)
{
    return ctx->wait_fd;
}

int tp_ctx_trywait(struct tp_ctx *ctx)
{
    struct fid *fids[1] = {&ctx->cq->fid};

    /* Queued operations do not forbid sleeping: tp_ctx_timeout_ms() wakes the loop when they
     * are due.  (Saying "progress first" while any waited made every loop spin for as long
     * as a peer refused connections.) */
    return fi_trywait(ctx->fabric, fids, 1) == FI_SUCCESS ? 0 : CAIRN_EAGAIN;
}

int tp_ctx_timeout_ms(const struct tp_ctx *ctx)
{
    uint64_t now = cairn_now_ms(), best = UINT64_MAX;

    for (const struct tp_call *c = ctx->calls; c; c = c->next)
        if (!c->cancel_sent && !c->recv_done && c->deadline_ms < best)
            best = c->deadline_ms;
    for (struct tp_op *op = ctx->pend; op; op = op->qnext) {
        fi_addr_t peer = op_peer(op);
        const struct tp_backoff *b = NULL;

        for (unsigned i = 0; peer != FI_ADDR_UNSPEC && i < ctx->n_boff && !b; i++)
            if (ctx->boff[i].peer == peer)
                b = &ctx->boff[i];
        best = CAIRN_MIN(best, b && b->delay_ms ? b->retry_ms : now + TP_RETRY_MIN_MS);
    }
    if (best == UINT64_MAX)
        return -1;
    return best <= now ? 0 : (int)CAIRN_MIN(best - now, (uint64_t)INT32_MAX);
}

int tp_ctx_wait(struct tp_ctx *ctx, int timeout_ms)
{
    int t = tp_ctx_timeout_ms(ctx); /* deadlines and queued operations' retries */

    if (t >= 0 && (timeout_ms < 0 || t < timeout_ms))
        timeout_ms = t;
    if (timeout_ms != 0 && tp_ctx_trywait(ctx) == 0) {
        struct pollfd pfd = {.fd = ctx->wait_fd, .events = POLLIN};

        poll(&pfd, 1, timeout_ms);
    }
    return tp_ctx_progress(ctx);
}

int tp_send_raw(struct tp_ctx *ctx, uint64_t peer, const void *buf, size_t len)
{
    struct tp_raw *raw = malloc(sizeof(*raw) + len);

    if (!raw)
        return CAIRN_ENOMEM;
    memset(&raw->op, 0, sizeof(raw->op));
    raw->op.kind = TP_OP_RAW_SEND;
    raw->len = len;
    memcpy(raw->data, buf, len);
    raw->peer = (fi_addr_t)peer;
    op_submit(ctx, &raw->op);
    return 0;
}

/* ---- setup ---- */

static int addr_to_str(const void *sa, char *out, size_t outlen)
{
    const struct sockaddr *s = sa;
    char host[INET6_ADDRSTRLEN];

    if (s->sa_family == AF_INET) {
        const struct sockaddr_in *in = sa;

        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, outlen, "%s:%u", host, ntohs(in->sin_port));
    } else if (s->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = sa;

        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, outlen, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "?");
        return CAIRN_EINVAL;
    }
    return 0;
}

/* Split "host:port" or "[v6]:port" into its parts (in buf). */
static int split_hostport(const char *hp, char *buf, size_t buflen, char **host, char **port)
{
    char *colon;

    if (!hp || strlen(hp) >= buflen)
        return CAIRN_EINVAL;
    strcpy(buf, hp);
    if (buf[0] == '[') {
        char *rb = strchr(buf, ']');

        if (!rb || rb[1] != ':')
            return CAIRN_EINVAL;
        *rb = '\0';
        *host = buf + 1;
        *port = rb + 2;
    } else {
        colon = strrchr(buf, ':');
        if (!colon)
            return CAIRN_EINVAL;
        *colon = '\0';
        *host = buf;
        *port = colon + 1;
    }
    return (**host && **port) ? 0 : CAIRN_EINVAL;
}

int tp_peer_add(struct tp_ctx *ctx, const char *hostport, uint64_t *peer)
{
    struct addrinfo hints = {0}, *res = NULL;
    char buf[256], *host, *port;
    fi_addr_t fa;
    int rc;

    rc = split_hostport(hostport, buf, sizeof(buf), &host, &port);
    if (rc)
        return rc;
    hints.ai_family = ctx->info->addr_format == FI_SOCKADDR_IN6 ? AF_INET6 : AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) || !res)
        return CAIRN_EINVAL;
    rc = fi_av_insert(ctx->av, res->ai_addr, 1, &fa, 0, NULL) == 1 ? 0 : CAIRN_EFABRIC;
    freeaddrinfo(res);
    if (!rc)
        *peer = (uint64_t)fa;
    return rc;
}

static void rxm_tune_once(void)
{
    char v[32];

    snprintf(v, sizeof(v), "%u", TP_HDR_SLOT + TP_MAX_PAYLOAD);
    setenv("FI_OFI_RXM_EAGER_LIMIT", v, 0);
}

/* RxM sends a message larger than its eager limit (16 KiB by default) by rendezvous: the
 * receiver pulls the payload, and the send completes only when it has.  A peer killed after
 * the request was announced never pulls it, and RxM never fails that send, so the call could
 * never finish (its receive is cancelled at the deadline, but the send still owns the
 * caller's buffer).  Over TCP, eager transfers of any size are placed straight into the posted
 * buffer (dynamic receive buffering), and an eager send completes as soon as the kernel has
 * the bytes or fails when the connection does, so every message up to the largest frame goes
 * eager.  RxM reads its settings when the provider first loads: set them before, once per
 * process, without overriding what an operator exported. */
static void rxm_tune(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, rxm_tune_once);
}

int tp_ctx_create(const struct tp_config *cfg, struct tp_ctx **out)
{
    struct fi_info *hints = NULL;
    struct fi_cq_attr cq_attr = {0};
    struct fi_av_attr av_attr = {0};
    struct tp_ctx *ctx;
    const char *prov;
    uint64_t flags = 0;
    int rc;

    ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return CAIRN_ENOMEM;
    ctx->wait_fd = -1;
    ctx->max_payload = cfg->max_payload ? cfg->max_payload : TP_DEFAULT_MAX_PAYLOAD;
    ctx->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : TP_DEFAULT_TIMEOUT_MS;
    ctx->rx_depth = cfg->rx_depth ? cfg->rx_depth : TP_DEFAULT_RX_DEPTH;
    if (ctx->max_payload > TP_MAX_PAYLOAD) {
        rc = CAIRN_EINVAL;
        goto err_free;
    }
    ctx->rx_buf_len = TP_HDR_SLOT + CAIRN_ALIGN_UP((size_t)ctx->max_payload, TP_HDR_SLOT);
    /* Request ids double as response tags; start from a random-ish point so a restarted
     * client does not reuse the ids of its previous life. */
    ctx->next_req_id = (cairn_now_ns() << 16) | 1;

    prov = cfg->provider ? cfg->provider : getenv("CAIRN_FABRIC_PROVIDER");
    if (!prov || !*prov)
        prov = TP_DEFAULT_PROVIDER;
    rxm_tune();

    hints = fi_allocinfo();
    if (!hints) {
        rc = CAIRN_ENOMEM;
        goto err_free;
    }
    hints->caps = FI_MSG | FI_TAGGED;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    hints->ep_attr->type = FI_EP_RDM;
    hints->domain_attr->threading = FI_THREAD_DOMAIN;
    hints->domain_attr->mr_mode = 0;
    hints->addr_format = FI_SOCKADDR_IN;
    hints->fabric_attr->prov_name = strdup(prov);
    if (cfg->host || (cfg->port && strcmp(cfg->port, "0")))
        flags = FI_SOURCE;
    rc = fi_getinfo(FI_VERSION(1, 9), cfg->host, flags ? cfg->port : NULL, flags, hints,
                    &ctx->info);
    if (rc) {
        log_error(TAG, "no fabric provider %s for %s:%s: %s", prov, cfg->host ? cfg->host : "*",
                  cfg->port ? cfg->port : "*", fi_strerror(-rc));
        rc = CAIRN_EFABRIC;
        goto err_hints;
    }
    if (ctx->info->tx_attr->iov_limit < 2 || ctx->info->rx_attr->iov_limit < 2 ||
        ctx->info->ep_attr->max_msg_size < ctx->rx_buf_len) {
        log_error(TAG, "provider %s lacks iov or message size support", prov);
        rc = CAIRN_EFABRIC;
        goto err_info;
    }
    snprintf(ctx->prov_str, sizeof(ctx->prov_str), "%s", ctx->info->fabric_attr->prov_name);

    if ((rc = fi_fabric(ctx->info->fabric_attr, &ctx->fabric, NULL)))
        goto err_fi;
    if ((rc = fi_domain(ctx->fabric, ctx->info, &ctx->domain, NULL)))
        goto err_fi;
    cq_attr.format = FI_CQ_FORMAT_TAGGED;
    cq_attr.wait_obj = FI_WAIT_FD;
    cq_attr.size = 0;
    if ((rc = fi_cq_open(ctx->domain, &cq_attr, &ctx->cq, NULL)))
        goto err_fi;
    if ((rc = fi_control(&ctx->cq->fid, FI_GETWAIT, &ctx->wait_fd)))
        goto err_fi;
    av_attr.type = FI_AV_UNSPEC;
    if ((rc = fi_av_open(ctx->domain, &av_attr, &ctx->av, NULL)))
        goto err_fi;
    if ((rc = fi_endpoint(ctx->domain, ctx->info, &ctx->ep, NULL)))
        goto err_fi;
    if ((rc = fi_ep_bind(ctx->ep, &ctx->cq->fid, FI_TRANSMIT | FI_RECV)))
        goto err_fi;
    if ((rc = fi_ep_bind(ctx->ep, &ctx->av->fid, 0)))
        goto err_fi;
    if ((rc = fi_enable(ctx->ep)))
        goto err_fi;
    ctx->name_len = sizeof(ctx->name);
    if ((rc = fi_getname(&ctx->ep->fid, ctx->name, &ctx->name_len)))
        goto err_fi;
    addr_to_str(ctx->name, ctx->addr_str, sizeof(ctx->addr_str));
    fi_freeinfo(hints);
    *out = ctx;
    return 0;

err_fi:
    log_error(TAG, "fabric setup (%s): %s", prov, fi_strerror(-rc));
    rc = CAIRN_EFABRIC;
    if (ctx->ep)
        fi_close(&ctx->ep->fid);
    if (ctx->av)
        fi_close(&ctx->av->fid);
    if (ctx->cq)
        fi_close(&ctx->cq->fid);
    if (ctx->domain)
        fi_close(&ctx->domain->fid);
    if (ctx->fabric)
        fi_close(&ctx->fabric->fid);
err_info:
    fi_freeinfo(ctx->info);
err_hints:
    fi_freeinfo(hints);
err_free:
    free(ctx);
    return rc;
}

void tp_ctx_destroy(struct tp_ctx *ctx)
{
    if (!ctx)
        return;
    ctx->closing = true;
    /* Give outstanding calls a bounded chance to finish, then cancel them. */
    for (struct tp_call *c = ctx->calls; c; c = c->next)
        call_abort(c, CAIRN_ECANCELED);
    for (int i = 0; ctx->calls && i < 200; i++)
        tp_ctx_wait(ctx, 10);
    if (ctx->ep)
        fi_close(&ctx->ep->fid);
    /* The endpoint is gone, so libfabric no longer touches any buffer: finish the rest. */
    while (ctx->calls) {
        struct tp_call *c = ctx->calls;

        c->send_done = c->recv_done = true;
        if (!c->status)
            c->status = CAIRN_ECANCELED;
        call_maybe_finish(c);
    }
    if (ctx->reqs) {
        for (uint32_t i = 0; i < ctx->rx_depth; i++) {
            if (ctx->reqs[i].hdr)
                cairn__request__free_unpacked(ctx->reqs[i].hdr, NULL);
            free(ctx->reqs[i].buf);
        }
        free(ctx->reqs);
    }
    fi_close(&ctx->av->fid);
    fi_close(&ctx->cq->fid);
    fi_close(&ctx->domain->fid);
    fi_close(&ctx->fabric->fid);
    fi_freeinfo(ctx->info);
    free(ctx->boff);
    free(ctx);
}

const char *tp_ctx_addr(const struct tp_ctx *ctx)
{
    return ctx->addr_str;
}

const char *tp_ctx_provider(const struct tp_ctx *ctx)
{
    return ctx->prov_str;
}

void tp_ctx_stats(const struct tp_ctx *ctx, struct tp_stats *out)
{
    *out = ctx->stats;
}

uint32_t tp_ctx_max_payload(const struct tp_ctx *ctx)
{
    return ctx->max_payload;
}
