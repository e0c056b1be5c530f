/*
 * tp.h - request/response messaging over libfabric reliable-datagram endpoints.
 *
 * One struct tp_ctx owns a fabric, domain, completion queue, address vector and one
 * FI_EP_RDM endpoint; it belongs to one thread (one event loop), so nothing here locks.
 * The provider is "tcp;ofi_rxm" unless the config or CAIRN_FABRIC_PROVIDER names another
 * ("verbs;ofi_rxm" where RDMA NICs exist).  Addresses are IP socket addresses.
 *
 * Wire format of every message:
 *
 *     header slot: u32 magic "CRN1" | u32 hdr_len | hdr_len bytes of a protobuf-c
 *                  cairn.Request or cairn.Response (proto/cairn.proto)
 *     payload:     raw bytes, present only if the header's payload_len > 0; then the
 *                  header slot is padded to exactly TP_HDR_SLOT bytes, so the payload
 *                  starts at a TP_HDR_SLOT (= CAIRN_BLOCK) aligned offset of the receive
 *                  buffer and a D-node can hand it to O_DIRECT I/O with no copy.
 *
 * Requests are untagged sends that land in a server's pre-posted receive buffers.
 * Responses are tagged sends (tag = request id) that land directly in buffers the caller
 * supplied when it issued the call, so a fragment read is not copied on the client either.
 *
 * Event-loop integration: tp_ctx_fd() is a file descriptor that becomes readable when
 * completions may be pending.  A loop calls tp_ctx_progress() when it is readable or when
 * tp_ctx_timeout_ms() expires, and may only sleep on the fd after tp_ctx_trywait() returned 0.
 * Idle, nothing spins.  Every call has a deadline: a peer that is dead, unreachable or silent
 * gives CAIRN_ETIMEDOUT or CAIRN_EUNREACH after a bounded time, never a hang.
 */
#ifndef CAIRN_TP_H
#define CAIRN_TP_H

#include <stddef.h>
#include <stdint.h>

#include "common/cairn.h"
#include "cairn.pb-c.h"

#define TP_HDR_SLOT CAIRN_BLOCK         /* header slot when a payload follows */
#define TP_MAGIC 0x314e5243u            /* "CRN1" little-endian */
#define TP_DEFAULT_PROVIDER "tcp;ofi_rxm"
#define TP_DEFAULT_TIMEOUT_MS 5000u
#define TP_DEFAULT_MAX_PAYLOAD (1u << 20)
#define TP_MAX_PAYLOAD (16u << 20)      /* hard limit for any configuration */
#define TP_DEFAULT_RX_DEPTH 32u
#define TP_MAX_ADDR 64u                 /* bytes of a fabric address we accept */

struct tp_ctx;
struct tp_req;

struct tp_config {
    const char *provider;  /* NULL: $CAIRN_FABRIC_PROVIDER or TP_DEFAULT_PROVIDER */
    const char *host;      /* address to bind; NULL lets the provider choose (clients) */
    const char *port;      /* service/port to bind; NULL or "0" for an ephemeral port */
    uint32_t max_payload;  /* largest payload accepted/sent; 0 = TP_DEFAULT_MAX_PAYLOAD */
    uint32_t rx_depth;     /* server receive buffers posted; 0 = TP_DEFAULT_RX_DEPTH */
    uint32_t timeout_ms;   /* per-call deadline; 0 = TP_DEFAULT_TIMEOUT_MS */
};

/* Open a context.  Returns 0, CAIRN_EFABRIC (no matching provider, bind failed), CAIRN_ENOMEM. */
int tp_ctx_create(const struct tp_config *cfg, struct tp_ctx **out);
/* Close a context: outstanding calls complete with CAIRN_ECANCELED first.  Accepts NULL. */
void tp_ctx_destroy(struct tp_ctx *ctx);

/* Our own address as "host:port" (static buffer in ctx). */
const char *tp_ctx_addr(const struct tp_ctx *ctx);
/* The provider actually in use, e.g. "tcp;ofi_rxm". */
const char *tp_ctx_provider(const struct tp_ctx *ctx);
uint32_t tp_ctx_max_payload(const struct tp_ctx *ctx);

/* Event-loop hooks (see the file comment). */
int tp_ctx_fd(const struct tp_ctx *ctx);
int tp_ctx_trywait(struct tp_ctx *ctx);   /* 0: safe to sleep on the fd; else progress first */
/* ms to the nearest call deadline or retry of a queued send (a peer that refused one is
 * retried on a timer that backs off: tp.c), -1 if none */
int tp_ctx_timeout_ms(const struct tp_ctx *ctx);
/* Drain completions, retry queued sends, expire deadlines, run callbacks.  Never blocks.
 * Returns the number of completions handled (>= 0) or a CAIRN_E* code on a CQ failure. */
int tp_ctx_progress(struct tp_ctx *ctx);
/* Wait up to timeout_ms for activity (poll on the fd, honouring trywait and deadlines), then
 * progress.  For tools and tests that have no other loop. */
int tp_ctx_wait(struct tp_ctx *ctx, int timeout_ms);

/* Counters, for tests and metrics. */
struct tp_stats {
    uint64_t refused; /* posts libfabric refused for now (-FI_EAGAIN: no resources, or no
                       * connection to the peer yet); each operation is tried again later */
};
void tp_ctx_stats(const struct tp_ctx *ctx, struct tp_stats *out);

/* ---- client side ---- */

/* Resolve "host:port" and add it to the address vector; *peer is the handle for calls.
 * Returns 0, CAIRN_EINVAL (bad address), CAIRN_EFABRIC. */
int tp_peer_add(struct tp_ctx *ctx, const char *hostport, uint64_t *peer);

/* Completion of a call.  status is 0 (the peer answered; resp->status holds its verdict),
 * or a transport error (CAIRN_ETIMEDOUT, CAIRN_EUNREACH, CAIRN_EPROTO, CAIRN_ETOOBIG,
 * CAIRN_ECANCELED), in which case resp is NULL.  resp is borrowed for the callback only.
 * The response payload, if any, is in the resp_buf given to tp_call (resp->payload_len bytes). */
typedef void (*tp_call_cb)(void *arg, int status, const Cairn__Response *resp);

/* Send req to peer and arrange for cb to run once with the answer.  The transport sets req_id,
 * reply_addr and payload_len in req (req is copied into the wire format before return; the
 * caller may free it after tp_call returns).  payload (may be NULL if payload_len is 0) and
 * resp_buf (NULL if no payload is expected) are borrowed until cb runs.  Returns 0 or
 * CAIRN_ETOOBIG / CAIRN_EINVAL / CAIRN_ENOMEM, in which case cb never runs. */
int tp_call(struct tp_ctx *ctx, uint64_t peer, Cairn__Request *req, const void *payload,
            uint32_t payload_len, void *resp_buf, uint32_t resp_buf_len, tp_call_cb cb,
            void *arg);

/* The result of a synchronous call: resp is owned by the caller (free with tp_sync_fini). */
struct tp_sync {
    int status;            /* transport status, as for tp_call_cb */
    Cairn__Response *resp; /* NULL unless status == 0 */
};
/* Issue a call and progress the context until it completes.  Other calls' callbacks may run. */
int tp_call_sync(struct tp_ctx *ctx, uint64_t peer, Cairn__Request *req, const void *payload,
                 uint32_t payload_len, void *resp_buf, uint32_t resp_buf_len,
                 struct tp_sync *out);
void tp_sync_fini(struct tp_sync *s);

/* ---- server side ---- */

/* A received request.  The header is unpacked; the payload (if any) sits at TP_HDR_SLOT in a
 * TP_HDR_SLOT-aligned buffer of tp_req_buf_len() bytes that the handler may reuse, e.g. as the
 * target of a device read, until it calls tp_reply(). */
typedef void (*tp_serve_cb)(void *arg, struct tp_req *req);

/* Post receive buffers and deliver each well-formed request to cb.  A malformed message is
 * dropped (no valid reply address) or answered with CAIRN_EPROTO, and its buffer reposted. */
int tp_ctx_serve(struct tp_ctx *ctx, tp_serve_cb cb, void *arg);

const Cairn__Request *tp_req_hdr(const struct tp_req *req);
void *tp_req_buf(struct tp_req *req);           /* TP_HDR_SLOT-aligned */
size_t tp_req_buf_len(const struct tp_req *req); /* TP_HDR_SLOT + max_payload */
void *tp_req_payload(struct tp_req *req);       /* tp_req_buf() + TP_HDR_SLOT */
uint32_t tp_req_payload_len(const struct tp_req *req);

/* Answer req.  resp->req_id and payload_len are set by the transport.  payload may point into
 * tp_req_buf(req) at or after TP_HDR_SLOT (zero copy) or elsewhere; it is borrowed until the
 * send completes, which the transport tracks: the caller must not free a foreign payload
 * before done(done_arg) runs (done may be NULL when payload lives in req's buffer).  Consumes
 * req: its buffer is reposted after the send.  A payload larger than the buffer the caller
 * posted for it (the request's reply_cap) is not sent: the answer goes without it, with status
 * CAIRN_ETOOBIG and payload_needed set.  Returns 0 or CAIRN_ETOOBIG / CAIRN_EINVAL. */
int tp_reply(struct tp_req *req, Cairn__Response *resp, const void *payload,
             uint32_t payload_len, void (*done)(void *), void *done_arg);

/* Answering later.  A request whose answer waits for something slow (a metadata update
 * waiting for its shard's consensus) must not keep its receive buffer: the buffers are few,
 * and the messages that let the update finish arrive through them.  tp_req_later() keeps
 * what the answer needs (the sender and the request id; read the header before) and gives
 * the buffer back at once; tp_reply_later() sends an answer without payload and consumes l;
 * tp_later_drop() forgets it (the sender's deadline answers for us).  Returns NULL (out of
 * memory: the request is still the caller's) or the handle. */
struct tp_later;
struct tp_later *tp_req_later(struct tp_req *req);
int tp_reply_later(struct tp_ctx *ctx, struct tp_later *l, Cairn__Response *resp);
void tp_later_drop(struct tp_later *l);

/* What a server answered, for its counters: reported once per answer, as tp_reply or
 * tp_reply_later sends it (requests dropped or forgotten are not reported). */
struct tp_answered {
    int op;             /* the request's Cairn__Op */
    int status;         /* the answer's status (0 or a CAIRN_E* code) */
    uint32_t in_bytes;  /* the request's payload */
    uint32_t out_bytes; /* the answer's payload */
    uint64_t ns;        /* from the request's delivery to its answer */
};
typedef void (*tp_answered_cb)(void *arg, const struct tp_answered *a);
/* Report every answer to cb(arg, ...) from now on (on the context's thread, inside tp_reply);
 * NULL stops it.  Only then are requests stamped with the clock on delivery. */
void tp_ctx_observe(struct tp_ctx *ctx, tp_answered_cb cb, void *arg);

/* Decode a received message (exposed for the fuzz harness and tests): validate the framing of
 * len bytes at buf and unpack the header.  Returns 0 and *out (free with
 * cairn__request__free_unpacked) or CAIRN_EPROTO. */
int tp_decode_request(const void *buf, size_t len, uint32_t max_payload, Cairn__Request **out);

/* Send len raw bytes (copied) to peer as a request message, bypassing framing: for tests that
 * check a server's handling of malformed input.  Completes in the background through
 * tp_ctx_progress().  Returns 0 or a CAIRN_E* code. */
int tp_send_raw(struct tp_ctx *ctx, uint64_t peer, const void *buf, size_t len);

#endif
