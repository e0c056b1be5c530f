/*
 * badmsg.c - throw malformed and hostile transport messages at a running D-node.
 *
 *   badmsg HOST:PORT
 *
 * Part of test_bad_input.py, which starts the cluster and afterwards checks every D-node is
 * still alive.  Here: broken framing must be dropped (no reply address) without harming the
 * server; well-framed requests with bad contents must get the right error status; after all
 * of it, a fragment round trip and a ping still work.  Exits 0 when every check held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/cairn.h"
#include "ec/ec.h"
#include "transport/tp.h"

static int failures;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

static struct tp_ctx *ctx;
static uint64_t peer;

/* Issue req and return the D-node's status (or the transport error). */
static int call(Cairn__Request *req, const void *payload, uint32_t len, void *rbuf, uint32_t rlen)
{
    struct tp_sync s;
    int rc = tp_call_sync(ctx, peer, req, payload, len, rbuf, rlen, &s);

    if (!rc)
        rc = s.status ? s.status : s.resp->status;
    tp_sync_fini(&s);
    return rc;
}

static void raw_junk(void)
{
    uint8_t *buf = malloc(TP_HDR_SLOT + (1u << 20));
    uint32_t magic = TP_MAGIC, v;
    Cairn__Request req = CAIRN__REQUEST__INIT;
    size_t n;

    if (!buf)
        exit(1);
    /* Pure noise of many lengths, including longer than any receive buffer. */
    for (size_t len = 1; len <= TP_HDR_SLOT + (1u << 20); len = len * 3 + 1) {
        if (getrandom(buf, len < 256 ? len : 256, 0) < 0)
            exit(1);
        tp_send_raw(ctx, peer, buf, len);
    }
    /* Right magic, header length 0, too large, just past the end. */
    memcpy(buf, &magic, 4);
    for (uint32_t hl = 0; hl < 3; hl++) {
        v = hl == 0 ? 0 : hl == 1 ? 0xffffffffu : 100;
        memcpy(buf + 4, &v, 4);
        tp_send_raw(ctx, peer, buf, 40);
    }
    /* Magic only; magic and half a length. */
    tp_send_raw(ctx, peer, buf, 4);
    tp_send_raw(ctx, peer, buf, 6);
    /* A well-formed header with no reply address, then one announcing a payload it lacks. */
    req.op = CAIRN__OP__OP_PING;
    n = cairn__request__pack(&req, buf + 8);
    v = (uint32_t)n;
    memcpy(buf + 4, &v, 4);
    tp_send_raw(ctx, peer, buf, 8 + n);
    req.op = CAIRN__OP__OP_FRAG_PUT;
    req.payload_len = 1u << 20;
    n = cairn__request__pack(&req, buf + 8);
    v = (uint32_t)n;
    memcpy(buf + 4, &v, 4);
    tp_send_raw(ctx, peer, buf, 8 + n);
    /* Header bytes that are not protobuf. */
    v = 64;
    memcpy(buf + 4, &v, 4);
    memset(buf + 8, 0xff, 64);
    tp_send_raw(ctx, peer, buf, 72);
    for (int i = 0; i < 100; i++)
        tp_ctx_wait(ctx, 5);
    free(buf);
}

static void bad_requests(void)
{
    uint8_t *buf = aligned_alloc(CAIRN_BLOCK, 1u << 20), key[600];
    Cairn__Request req;
    Cairn__FragId fid = CAIRN__FRAG_ID__INIT;
    int rc;

    if (!buf)
        exit(1);
    memset(buf, 0x5a, 1u << 20);
    memset(key, 'k', sizeof(key));

    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_FRAG_PUT; /* no fragment id */
    rc = call(&req, buf, 4096, NULL, 0);
    CHECK(rc == CAIRN_EPROTO, "FRAG_PUT without id: %s", cairn_strerror(rc));

    cairn__request__init(&req);
    fid.stripe = 0xbad;
    fid.index = 1;
    req.op = CAIRN__OP__OP_FRAG_PUT;
    req.frag = &fid;
    req.crc = ec_crc32c(0, buf, 4096) ^ 1; /* wrong CRC */
    rc = call(&req, buf, 4096, NULL, 0);
    CHECK(rc == CAIRN_ECRC, "FRAG_PUT with bad CRC: %s", cairn_strerror(rc));
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_FRAG_GET;
    req.frag = &fid;
    rc = call(&req, NULL, 0, buf, 1u << 20);
    CHECK(rc == CAIRN_ENOENT, "a fragment with a bad CRC was stored: %s", cairn_strerror(rc));

    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_FRAG_PUT; /* empty fragment */
    req.frag = &fid;
    rc = call(&req, NULL, 0, NULL, 0);
    CHECK(rc == CAIRN_EINVAL, "empty FRAG_PUT: %s", cairn_strerror(rc));

    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_FRAG_DEL;
    req.frag = &fid;
    rc = call(&req, NULL, 0, NULL, 0);
    CHECK(rc == CAIRN_ENOENT, "FRAG_DEL of nothing: %s", cairn_strerror(rc));

    /* Metadata requests: refused for what they are, whatever the sender's map epoch. */
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_KV_PUT; /* empty key */
    rc = call(&req, "v", 1, NULL, 0);
    CHECK(rc == CAIRN_EINVAL, "KV_PUT with empty key: %s", cairn_strerror(rc));

    req.key.data = key;
    req.key.len = sizeof(key); /* longer than KV_MAX_KEY */
    rc = call(&req, "v", 1, NULL, 0);
    CHECK(rc == CAIRN_EINVAL, "KV_PUT with 600-byte key: %s", cairn_strerror(rc));

    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_KV_GET; /* a value where none belongs */
    req.key.data = key;
    req.key.len = 10;
    rc = call(&req, "v", 1, NULL, 0);
    CHECK(rc == CAIRN_EINVAL, "KV_GET with a payload: %s", cairn_strerror(rc));

    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_KV_SCAN;
    req.key.data = key;
    req.key.len = sizeof(key);
    req.limit = 0xffffffffu;
    rc = call(&req, NULL, 0, buf, 1u << 20);
    CHECK(rc == CAIRN_EINVAL, "KV_SCAN with a 600-byte start key: %s", cairn_strerror(rc));

    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_KV_PUT; /* a key of the D-node's own (writer sessions) */
    {
        uint8_t own[10] = {0xff, 'S', 1, 2, 3, 4, 5, 6, 7, 8};
        req.key.data = own;
        req.key.len = sizeof(own);
        rc = call(&req, "v", 1, NULL, 0);
    }
    CHECK(rc == CAIRN_EINVAL, "KV_PUT of a reserved key: %s", cairn_strerror(rc));

    /* The map group takes only the next map, by compare-and-set. */
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_KV_PUT;
    req.shard = UINT32_MAX; /* MAP_GROUP */
    req.key.data = (uint8_t *)"map";
    req.key.len = 3;
    req.expect_version = 5;
    rc = call(&req, "not a map", 9, NULL, 0);
    CHECK(rc == CAIRN_EINVAL, "KV_PUT of junk as the cluster map: %s", cairn_strerror(rc));
    req.op = CAIRN__OP__OP_KV_DEL;
    rc = call(&req, NULL, 0, NULL, 0);
    CHECK(rc == CAIRN_EINVAL, "KV_DEL of the cluster map: %s", cairn_strerror(rc));

    /* A sender with an older map (0: none) is told so, and nothing changes. */
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_KV_PUT;
    req.key.data = key;
    req.key.len = 10;
    rc = call(&req, "v", 1, NULL, 0);
    CHECK(rc == CAIRN_ESTALE, "KV_PUT without a map epoch: %s", cairn_strerror(rc));

    /* Maps: garbage, and a second first map, are refused. */
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_MAP_SET;
    rc = call(&req, buf, 4096, NULL, 0);
    CHECK(rc == CAIRN_EEXIST || rc == CAIRN_EINVAL, "MAP_SET of junk: %s", cairn_strerror(rc));

    /* Raft batches that do not decode are dropped (and the node goes on serving). */
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_RAFT;
    rc = call(&req, buf, 4096, NULL, 0);
    CHECK(rc == 0, "RAFT junk: %s", cairn_strerror(rc));

    cairn__request__init(&req);
    req.op = (Cairn__Op)99;
    rc = call(&req, NULL, 0, NULL, 0);
    CHECK(rc == CAIRN_ENOTSUP, "unknown op: %s", cairn_strerror(rc));

    /* A request too large for the D-node's receive buffers is refused by our own transport. */
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_PING;
    rc = call(&req, buf, (1u << 20) + 1, NULL, 0);
    CHECK(rc == CAIRN_ETOOBIG, "oversized payload: %s", cairn_strerror(rc));
    free(buf);
}

static void still_serving(void)
{
    uint8_t *buf = aligned_alloc(CAIRN_BLOCK, 65536), *back = aligned_alloc(CAIRN_BLOCK, 65536);
    Cairn__Request req;
    Cairn__FragId fid = CAIRN__FRAG_ID__INIT;
    int rc;

    if (!buf || !back || getrandom(buf, 65536, 0) != 65536)
        exit(1);
    getrandom(&fid.stripe, sizeof(fid.stripe), 0);
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_PING;
    CHECK(call(&req, NULL, 0, NULL, 0) == 0, "ping after bad input");

    req.op = CAIRN__OP__OP_FRAG_PUT;
    req.frag = &fid;
    req.crc = ec_crc32c(0, buf, 65536);
    rc = call(&req, buf, 65536, NULL, 0);
    CHECK(rc == 0, "FRAG_PUT after bad input: %s", cairn_strerror(rc));
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_FRAG_GET;
    req.frag = &fid;
    rc = call(&req, NULL, 0, back, 65536);
    CHECK(rc == 0 && memcmp(buf, back, 65536) == 0, "FRAG_GET after bad input: %s",
          cairn_strerror(rc));
    req.op = CAIRN__OP__OP_FRAG_DEL;
    CHECK(call(&req, NULL, 0, NULL, 0) == 0, "FRAG_DEL after bad input");
    free(buf);
    free(back);
}

int main(int argc, char **argv)
{
    struct tp_config cfg = {.host = "127.0.0.1", .timeout_ms = 3000};

    if (argc != 2) {
        fprintf(stderr, "usage: badmsg HOST:PORT\n");
        return 2;
    }
    cfg.provider = getenv("CAIRN_FABRIC_PROVIDER");
    if (tp_ctx_create(&cfg, &ctx) || tp_peer_add(ctx, argv[1], &peer)) {
        fprintf(stderr, "badmsg: cannot reach %s\n", argv[1]);
        return 1;
    }
    raw_junk();
    bad_requests();
    raw_junk();
    still_serving();
    tp_ctx_destroy(ctx);
    if (failures)
        fprintf(stderr, "badmsg: %d checks failed\n", failures);
    else
        printf("badmsg: %s survived malformed input and answered bad requests correctly\n",
               argv[1]);
    return failures ? 1 : 0;
}
