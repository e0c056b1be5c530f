/*
 * badmsg.c - throw malformed and hostile transport messages at a running D-node.
 *
 *   badmsg HOST:PORT
 *
 * Part of test_bad_input.py, which starts the cluster and afterwards checks every D-node is
 * still alive.  Here: broken framing must be dropped (no reply address) without harming the
 * server; well-framed requests with bad contents must get the right error status; malformed
 * all-or-nothing updates (OP_KV_TXN) are refused whole, sent to the shard's leader with the
 * current map so that only their shape stops them, and a valid one still works after them;
 * after all of it, a fragment round trip and a ping still work.  Exits 0 when every check
 * held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/cairn.h"
#include "dnode/kv.h" /* KV_TXN_MAX, KV_RESERVED: the limits the D-node enforces */
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
static const char *peer_addr;

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

/* ---- all-or-nothing updates ---- */

static Cairn__ClusterMap *map;
static uint64_t lead;        /* the peer the next shard call goes to: the last leader seen */
static size_t lead_at;       /* its place in map->nodes */
static uint64_t session;     /* our writer session, for the valid updates */
static uint64_t session_seq; /* its last update's number */

struct answer {
    uint64_t version;
    uint32_t len; /* payload bytes in the caller's buffer */
};

/* A shard request (its epoch set here) to the group's leader, following the D-nodes' leader
 * hints.  Retried on ENOTLEADER and EAGAIN only: mostly nothing was done then, and where a
 * write may still land the valid ones carry our session, so a retry is a copy of it.
 * Returns the D-node's status or the transport error. */
static int kv_call(Cairn__Request *req, const void *payload, uint32_t len, void *rbuf,
                   uint32_t rlen, struct answer *a)
{
    req->epoch = map->epoch;
    for (int attempt = 0; attempt < 400; attempt++) {
        struct tp_sync s;
        uint64_t hint = 0;
        int rc = tp_call_sync(ctx, lead, req, payload, len, rbuf, rlen, &s);

        if (!rc) {
            rc = s.status ? s.status : s.resp->status;
            if (s.resp) {
                hint = s.resp->leader;
                if (a) {
                    a->version = s.resp->version;
                    a->len = s.resp->payload_len;
                }
            }
        }
        tp_sync_fini(&s);
        if (rc != CAIRN_ENOTLEADER && rc != CAIRN_EAGAIN)
            return rc;
        if (rc == CAIRN_ENOTLEADER) {
            /* to the leader it names, else to the next D-node (this one may not even be in
             * the group) */
            size_t next = (lead_at + 1) % map->n_nodes;

            for (size_t i = 0; hint && i < map->n_nodes; i++)
                if (map->nodes[i]->id == hint)
                    next = i;
            if (tp_peer_add(ctx, map->nodes[next]->addr, &lead) == 0)
                lead_at = next;
        }
        tp_ctx_wait(ctx, 20);
    }
    return CAIRN_ETIMEDOUT;
}

static Cairn__KvOp sub(Cairn__Op op, const char *key, const void *val, size_t vlen,
                       uint64_t expect)
{
    Cairn__KvOp o = CAIRN__KV_OP__INIT;

    o.op = op;
    o.key.data = (uint8_t *)key;
    o.key.len = strlen(key);
    o.value.data = (uint8_t *)val;
    o.value.len = vlen;
    o.expect = expect;
    return o;
}

/* Send t (n ops in subs) as one OP_KV_TXN to shard; session: as a writer session's next
 * update (a retry of the last one if again). */
static int txn_send(uint32_t shard, Cairn__KvOp *t, Cairn__KvOp *subs, size_t n, bool in_session,
                    bool again, struct answer *a)
{
    Cairn__KvOp *ptrs[KV_TXN_MAX + 2];
    Cairn__Request req;
    uint8_t buf[8192];
    size_t len;

    for (size_t i = 0; i < n; i++)
        ptrs[i] = &subs[i];
    t->ops = ptrs;
    t->n_ops = n;
    len = cairn__kv_op__get_packed_size(t);
    if (len > sizeof buf)
        exit(1);
    cairn__kv_op__pack(t, buf);
    t->ops = NULL;
    t->n_ops = 0;
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_KV_TXN;
    req.shard = shard;
    if (in_session) {
        req.client = session;
        req.seq = again ? session_seq : ++session_seq;
    }
    return kv_call(&req, buf, (uint32_t)len, NULL, 0, a);
}

/* Record key of shard: its status, version and value (in val, up to cap bytes). */
static int kv_get(uint32_t shard, const char *key, void *val, uint32_t cap, struct answer *a)
{
    Cairn__Request req;

    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_KV_GET;
    req.shard = shard;
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    memset(a, 0, sizeof *a);
    return kv_call(&req, NULL, 0, val, cap, a);
}

static bool get_map(void)
{
    Cairn__Request req;
    struct tp_sync s;
    uint8_t *buf = malloc(1u << 20);
    int rc;

    if (!buf)
        exit(1);
    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_MAP_GET;
    rc = tp_call_sync(ctx, peer, &req, NULL, 0, buf, 1u << 20, &s);
    if (!rc)
        rc = s.status ? s.status : s.resp->status;
    if (!rc)
        map = cairn__cluster_map__unpack(NULL, s.resp->payload_len, buf);
    tp_sync_fini(&s);
    free(buf);
    CHECK(map && map->shards, "MAP_GET: %s", cairn_strerror(rc));
    return map && map->shards;
}

static void bad_txns(void)
{
    enum { MAXK = 24 };
    char keys[MAXK][40], ff[12] = {(char)KV_RESERVED, 'S', '1', '2', '3', '4', '5', '6', '7', '8'};
    char absent[MAXK][40];
    Cairn__KvOp t, subs[KV_TXN_MAX + 2], nested[1], *nestp[1];
    uint8_t junk[64], lanes[16] = {0}, rec[19], back[64];
    struct answer a;
    uint32_t shard, tag;
    uint64_t v1, v2;
    unsigned na = 0;
    int rc;

    if (!get_map())
        return;
    if (getrandom(&tag, sizeof tag, 0) != sizeof tag ||
        getrandom(&session, sizeof session, 0) != sizeof session)
        exit(1);
    session |= 1; /* 0 is no session */
    shard = tag % map->shards;
    lead = peer;
    lead_at = 0;
    for (size_t i = 0; i < map->n_nodes; i++)
        if (strcmp(map->nodes[i]->addr, peer_addr) == 0)
            lead_at = i;
    for (unsigned i = 0; i < MAXK; i++)
        snprintf(keys[i], sizeof keys[i], "txn-%08x-%u", tag, i);
#define BAD(what, ...)                                                                         \
    do {                                                                                       \
        rc = (__VA_ARGS__);                                                                    \
        CHECK(rc == CAIRN_EINVAL, "KV_TXN %s: %s, want EINVAL", what, cairn_strerror(rc));     \
    } while (0)
#define ABSENT(k) snprintf(absent[na++], sizeof absent[0], "%s", (k))

    /* Payloads that are not a txn at all. */
    {
        Cairn__Request req;

        memset(junk, 0xff, sizeof junk);
        cairn__request__init(&req);
        req.op = CAIRN__OP__OP_KV_TXN;
        req.shard = shard;
        BAD("garbage payload", kv_call(&req, junk, sizeof junk, NULL, 0, NULL));
        BAD("empty payload", kv_call(&req, NULL, 0, NULL, 0, NULL));
    }
    cairn__kv_op__init(&t);
    t.op = CAIRN__OP__OP_KV_PUT; /* a single put dressed as a txn */
    t.key.data = (uint8_t *)keys[0];
    t.key.len = strlen(keys[0]);
    t.value.data = (uint8_t *)"v";
    t.value.len = 1;
    BAD("of a put", txn_send(shard, &t, subs, 0, false, false, NULL));
    ABSENT(keys[0]);

    cairn__kv_op__init(&t);
    t.op = CAIRN__OP__OP_KV_TXN;
    BAD("with no ops", txn_send(shard, &t, subs, 0, false, false, NULL));

    for (unsigned i = 0; i <= KV_TXN_MAX; i++)
        subs[i] = sub(CAIRN__OP__OP_KV_PUT, keys[1 + i], "v", 1, 0);
    BAD("of KV_TXN_MAX + 1 ops", txn_send(shard, &t, subs, KV_TXN_MAX + 1, false, false, NULL));
    ABSENT(keys[1]);
    ABSENT(keys[1 + KV_TXN_MAX]);
    /* (keys[1..9] are used up: the next cases start at 10) */

    subs[0] = sub(CAIRN__OP__OP_KV_PUT, keys[10], "a", 1, 0);
    subs[1] = sub(CAIRN__OP__OP_KV_PUT, keys[11], "b", 1, 0);
    subs[2] = sub(CAIRN__OP__OP_KV_PUT, keys[10], "c", 1, UINT64_MAX);
    BAD("with a key twice", txn_send(shard, &t, subs, 3, false, false, NULL));
    ABSENT(keys[10]);
    ABSENT(keys[11]);

    subs[0] = sub(CAIRN__OP__OP_KV_PUT, keys[12], "a", 1, 0);
    subs[1] = sub(CAIRN__OP__OP_KV_PUT, ff, "b", 1, UINT64_MAX);
    BAD("with a reserved key", txn_send(shard, &t, subs, 2, false, false, NULL));
    ABSENT(keys[12]);
    subs[1] = sub(CAIRN__OP__OP_KV_PUT, "", "b", 1, UINT64_MAX);
    BAD("with an empty key", txn_send(shard, &t, subs, 2, false, false, NULL));

    /* A txn inside a txn, and ops hung under a put. */
    nested[0] = sub(CAIRN__OP__OP_KV_PUT, keys[14], "n", 1, 0);
    nestp[0] = &nested[0];
    subs[0] = sub(CAIRN__OP__OP_KV_PUT, keys[13], "a", 1, 0);
    cairn__kv_op__init(&subs[1]);
    subs[1].op = CAIRN__OP__OP_KV_TXN;
    subs[1].ops = nestp;
    subs[1].n_ops = 1;
    BAD("nested in a txn", txn_send(shard, &t, subs, 2, false, false, NULL));
    subs[1] = sub(CAIRN__OP__OP_KV_PUT, keys[15], "b", 1, 0);
    subs[1].ops = nestp;
    subs[1].n_ops = 1;
    BAD("with ops under a put", txn_send(shard, &t, subs, 2, false, false, NULL));
    ABSENT(keys[13]);
    ABSENT(keys[14]);
    ABSENT(keys[15]);

    /* Stamps are whole lanes; deletes carry no value. */
    subs[0] = sub(CAIRN__OP__OP_KV_PUT, keys[16], "0123456789abcdef", 16, 0);
    subs[1] = sub(CAIRN__OP__OP_KV_STAMP, keys[17], lanes, 12, UINT64_MAX);
    BAD("with a 12-byte stamp", txn_send(shard, &t, subs, 2, false, false, NULL));
    subs[1] = sub(CAIRN__OP__OP_KV_STAMP, keys[17], lanes, 0, UINT64_MAX);
    BAD("with an empty stamp", txn_send(shard, &t, subs, 2, false, false, NULL));
    subs[1] = sub(CAIRN__OP__OP_KV_DEL, keys[17], "x", 1, UINT64_MAX);
    BAD("with a value on a delete", txn_send(shard, &t, subs, 2, false, false, NULL));
    subs[1] = sub(CAIRN__OP__OP_KV_GET, keys[17], NULL, 0, 0);
    BAD("with a get in it", txn_send(shard, &t, subs, 2, false, false, NULL));
    ABSENT(keys[16]);

    /* Session fields are the D-node's to set from the request, never the payload's. */
    subs[0] = sub(CAIRN__OP__OP_KV_PUT, keys[18], "a", 1, 0);
    t.client = 7;
    t.seq = 1;
    BAD("with client and seq in the payload", txn_send(shard, &t, subs, 1, false, false, NULL));
    t.client = t.seq = 0;
    t.time_ms = 1;
    BAD("with time_ms in the payload", txn_send(shard, &t, subs, 1, false, false, NULL));
    t.time_ms = 0;
    subs[0].client = 7;
    subs[0].seq = 1;
    BAD("with a session on an op", txn_send(shard, &t, subs, 1, false, false, NULL));
    ABSENT(keys[18]);

    /* The map group holds the map alone. */
    subs[0] = sub(CAIRN__OP__OP_KV_PUT, keys[19], "a", 1, 0);
    BAD("to the map group", txn_send(UINT32_MAX, &t, subs, 1, false, false, NULL));
    ABSENT(keys[19]);
    subs[0] = sub(CAIRN__OP__OP_KV_PUT, "map", "a", 1, UINT64_MAX);
    BAD("of the map record", txn_send(UINT32_MAX, &t, subs, 1, false, false, NULL));

    /* A valid txn still works: two creates, then a delete and a stamp, each one entry. */
    memset(rec, 0, sizeof rec);
    rec[7] = 5;
    rec[15] = 9;
    memcpy(rec + 16, "xyz", 3);
    subs[0] = sub(CAIRN__OP__OP_KV_PUT, keys[20], "one", 3, 0);
    subs[1] = sub(CAIRN__OP__OP_KV_PUT, keys[21], rec, sizeof rec, 0);
    memset(&a, 0, sizeof a);
    rc = txn_send(shard, &t, subs, 2, true, false, &a);
    CHECK(rc == 0 && a.version > 0, "valid KV_TXN after bad ones: %s", cairn_strerror(rc));
    v1 = a.version;
    rc = kv_get(shard, keys[20], back, sizeof back, &a);
    CHECK(rc == 0 && a.version == v1 && a.len == 3 && memcmp(back, "one", 3) == 0,
          "txn's first put: %s, version %llu of %llu", cairn_strerror(rc),
          (unsigned long long)a.version, (unsigned long long)v1);
    rc = kv_get(shard, keys[21], back, sizeof back, &a);
    CHECK(rc == 0 && a.version == v1 && a.len == sizeof rec, "txn's second put: %s",
          cairn_strerror(rc));

    lanes[7] = 7;
    lanes[15] = 3;
    subs[0] = sub(CAIRN__OP__OP_KV_DEL, keys[20], NULL, 0, v1);
    subs[1] = sub(CAIRN__OP__OP_KV_STAMP, keys[21], lanes, 16, v1);
    rc = txn_send(shard, &t, subs, 2, true, false, &a);
    CHECK(rc == 0 && a.version > v1, "KV_TXN delete and stamp: %s", cairn_strerror(rc));
    v2 = a.version;
    /* Its copy (a retry of the same seq) answers the same and applies nothing again. */
    memset(&a, 0, sizeof a);
    rc = txn_send(shard, &t, subs, 2, true, true, &a);
    CHECK(rc == 0 && a.version == v2, "copy of a KV_TXN: %s, version %llu of %llu",
          cairn_strerror(rc), (unsigned long long)a.version, (unsigned long long)v2);
    rc = kv_get(shard, keys[20], back, sizeof back, &a);
    CHECK(rc == CAIRN_ENOENT, "txn's delete: %s", cairn_strerror(rc));
    rec[7] = 7; /* lane 1 raised to 7, lane 2 kept at 9, the tail kept */
    rc = kv_get(shard, keys[21], back, sizeof back, &a);
    CHECK(rc == 0 && a.version == v2 && a.len == sizeof rec && memcmp(back, rec, sizeof rec) == 0,
          "stamped record: %s, version %llu of %llu", cairn_strerror(rc),
          (unsigned long long)a.version, (unsigned long long)v2);

    /* A stale condition fails it whole, and the answer names the current version. */
    subs[0] = sub(CAIRN__OP__OP_KV_PUT, keys[22], "new", 3, 0);
    subs[1] = sub(CAIRN__OP__OP_KV_DEL, keys[21], NULL, 0, v1);
    rc = txn_send(shard, &t, subs, 2, true, false, &a);
    CHECK(rc == CAIRN_ECONFLICT && a.version == v2, "stale KV_TXN: %s, version %llu of %llu",
          cairn_strerror(rc), (unsigned long long)a.version, (unsigned long long)v2);
    ABSENT(keys[22]);

    /* Nothing of the refused ones is anywhere. */
    for (unsigned i = 0; i < na; i++) {
        rc = kv_get(shard, absent[i], back, sizeof back, &a);
        CHECK(rc == CAIRN_ENOENT, "%s after a refused KV_TXN: %s", absent[i], cairn_strerror(rc));
    }
    rc = kv_get(UINT32_MAX, keys[19], back, sizeof back, &a);
    CHECK(rc == CAIRN_ENOENT, "%s in the map group: %s", keys[19], cairn_strerror(rc));
#undef BAD
#undef ABSENT
    cairn__cluster_map__free_unpacked(map, NULL);
    map = NULL;
}

static int mget_send(uint32_t shard, const void *payload, size_t len, void *rbuf, uint32_t cap,
                     struct answer *a)
{
    Cairn__Request req;

    cairn__request__init(&req);
    req.op = CAIRN__OP__OP_KV_MGET;
    req.shard = shard;
    return kv_call(&req, payload, (uint32_t)len, rbuf, cap, a);
}

static int mget_keys(uint32_t shard, char (*keys)[40], const size_t *lens, size_t n, void *rbuf,
                     uint32_t cap, struct answer *a)
{
    Cairn__KvKeys kk = CAIRN__KV_KEYS__INIT;
    ProtobufCBinaryData b[KV_MGET_MAX + 2];
    uint8_t buf[(KV_MGET_MAX + 2) * 48];

    for (size_t i = 0; i < n; i++)
        b[i] = (ProtobufCBinaryData){.len = lens ? lens[i] : strlen(keys[i]),
                                     .data = (uint8_t *)keys[i]};
    kk.keys = b;
    kk.n_keys = n;
    return mget_send(shard, buf, cairn__kv_keys__pack(&kk, buf), rbuf, cap, a);
}

/* KV_MGET: malformed key lists are refused (a clear error, whatever the peer's role), and a
 * valid one answers every key, absent ones with version 0, in the order asked. */
static void bad_mgets(void)
{
    char keys[KV_MGET_MAX + 2][40];
    size_t lens[KV_MGET_MAX + 2];
    uint8_t junk[64], *back = malloc(1u << 20);
    struct answer a;
    uint32_t shard, tag;
    Cairn__KvScanResult *res;
    int rc;

    if (!back || !get_map())
        exit(1);
    if (getrandom(&tag, sizeof tag, 0) != sizeof tag)
        exit(1);
    shard = tag % map->shards;
    for (unsigned i = 0; i < KV_MGET_MAX + 2; i++) {
        snprintf(keys[i], sizeof keys[i], "mget-%08x-%u", tag, i);
        lens[i] = strlen(keys[i]);
    }
#define BADM(what, ...)                                                                        \
    do {                                                                                       \
        rc = (__VA_ARGS__);                                                                    \
        CHECK(rc == CAIRN_EINVAL, "KV_MGET %s: %s, want EINVAL", what, cairn_strerror(rc));    \
    } while (0)
    memset(junk, 0xff, sizeof junk);
    BADM("garbage", mget_send(shard, junk, sizeof junk, back, 1u << 20, &a));
    BADM("no payload", mget_send(shard, NULL, 0, back, 1u << 20, &a));
    BADM("too many keys", mget_keys(shard, keys, NULL, KV_MGET_MAX + 1, back, 1u << 20, &a));
    lens[1] = 0;
    BADM("an empty key", mget_keys(shard, keys, lens, 3, back, 1u << 20, &a));
    lens[1] = strlen(keys[1]);
    keys[2][0] = (char)KV_RESERVED;
    BADM("a reserved key", mget_keys(shard, keys, NULL, 3, back, 1u << 20, &a));
    snprintf(keys[2], sizeof keys[2], "mget-%08x-%u", tag, 2);
    BADM("beyond the shards", mget_keys(map->shards + 5, keys, NULL, 2, back, 1u << 20, &a));
#undef BADM
    /* A valid one: key 1 written, keys 0 and 2 absent; the answer in the order asked. */
    {
        Cairn__KvOp t = CAIRN__KV_OP__INIT, subs[1];

        t.op = CAIRN__OP__OP_KV_TXN;
        subs[0] = sub(CAIRN__OP__OP_KV_PUT, keys[1], "one", 3, 0);
        rc = txn_send(shard, &t, subs, 1, false, false, &a);
        CHECK(rc == 0, "KV_TXN before KV_MGET: %s", cairn_strerror(rc));
    }
    rc = mget_keys(shard, keys, NULL, 3, back, 1u << 20, &a);
    res = rc ? NULL : cairn__kv_scan_result__unpack(NULL, a.len, back);
    CHECK(res && res->n_entries == 3, "KV_MGET of 3: %s", cairn_strerror(rc));
    for (size_t i = 0; res && i < res->n_entries && i < 3; i++) {
        const Cairn__KvEntry *e = res->entries[i];

        CHECK(e->key.len == strlen(keys[i]) && memcmp(e->key.data, keys[i], e->key.len) == 0,
              "KV_MGET entry %zu is another key", i);
        if (i == 1)
            CHECK(e->version && e->value.len == 3 && memcmp(e->value.data, "one", 3) == 0,
                  "KV_MGET: the written key");
        else
            CHECK(e->version == 0 && e->value.len == 0, "KV_MGET: an absent key");
    }
    if (res)
        cairn__kv_scan_result__free_unpacked(res, NULL);
    /* An answer that does not fit the room given: too big, nothing half-sent. */
    rc = mget_keys(shard, keys, NULL, 3, back, 8, &a);
    CHECK(rc == CAIRN_ETOOBIG, "KV_MGET into 8 bytes: %s", cairn_strerror(rc));
    free(back);
    cairn__cluster_map__free_unpacked(map, NULL);
    map = NULL;
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
    peer_addr = argv[1];
    if (tp_ctx_create(&cfg, &ctx) || tp_peer_add(ctx, argv[1], &peer)) {
        fprintf(stderr, "badmsg: cannot reach %s\n", argv[1]);
        return 1;
    }
    raw_junk();
    bad_requests();
    bad_txns();
    bad_mgets();
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
