/*
 * rec.c - metadata records on the D-nodes' Raft shards (see rec.h for the protocol).
 *
 * Every operation goes to the shard's leader: the one this view last heard lead it, else the
 * replicas in map order.  A D-node that is not the leader names the one it knows; one that is
 * still getting ready (a new leader's first commit, its lease) says "again"; one with a newer
 * map says our epoch is stale and the view reads the map again.  The calls are waited for on
 * the calling thread's transport context.
 */
#include "meta/rec.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cairn.h"
#include "common/log.h"
#include "client/placement.h"
#include "map/map.h"

#define TAG "meta"
#define BACKOFF_MS 20u     /* before asking again a D-node that said "again" */

struct call {
    unsigned node;
    unsigned *outstanding;
    int tstatus; /* transport status */
    int status;  /* the D-node's answer */
    uint64_t version;
    uint64_t leader; /* ENOTLEADER: the leader it knows */
    uint32_t len;
    uint8_t *buf; /* response payload (owned by the caller of issue) */
    uint32_t cap;
};

uint32_t meta_shard_of_u64(uint64_t item)
{
    return (uint32_t)cl_mix64(item ^ 0x6d657461ull);
}

uint32_t meta_shard_of(const void *key, size_t len)
{
    return (uint32_t)cl_hash_bytes(key, len);
}

uint32_t meta_rec_shard(const struct cl_cluster *cl, uint32_t shard_key)
{
    uint32_t n = cl_cluster_shards(cl);

    return n ? shard_key % n : 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static void call_done(void *arg, int status, const Cairn__Response *resp)
{
    struct call *c = arg;

    c->tstatus = status;
    if (!status) {
        c->status = resp->status;
        c->version = resp->version;
        c->leader = resp->leader;
        c->len = resp->payload_len;
    }
    (*c->outstanding)--;
}

static void wait_calls(struct cl_cluster *cl, unsigned *outstanding)
{
    while (*outstanding)
        tp_ctx_wait(cl_cluster_tp(cl), 1000);
}

/* Issue one call to c->node.  Returns false if the transport refused it before sending
 * (c->tstatus holds why): such a call certainly did not reach the D-node. */
static bool issue(struct cl_cluster *cl, struct call *c, const Cairn__Request *tmpl,
                  const void *payload, uint32_t len)
{
    Cairn__Request req = *tmpl; /* the transport fills in ids and addresses */
    int rc;

    c->tstatus = CAIRN_ECANCELED;
    c->status = 0;
    c->version = 0;
    c->leader = 0;
    c->len = 0;
    (*c->outstanding)++;
    rc = cl_cluster_call(cl, c->node, &req, payload, len, c->buf, c->buf ? c->cap : 0, call_done,
                         c);
    if (rc) {
        (*c->outstanding)--;
        c->tstatus = rc;
        return false;
    }
    return true;
}

static void req_init(Cairn__Request *req, Cairn__Op op, uint32_t shard, const void *key,
                     size_t klen)
{
    cairn__request__init(req);
    req->op = op;
    req->shard = shard;
    req->key.data = (uint8_t *)key;
    req->key.len = klen;
}

/* Where to send the next try for a shard: the leader we know of (unless the view saw it
 * fail), else the replicas in turn
 * (*turn counts the tries without a leader), skipping those the view saw fail while others
 * remain. */
static int target(struct cl_cluster *cl, uint32_t shard, unsigned *turn)
{
    unsigned nodes[MAP_MAX_REPLICAS], n = cl_cluster_shard_nodes(cl, shard, nodes);
    int hint = cl_cluster_leader_hint(cl, shard);

    if (hint >= 0 && !cl_cluster_node_down(cl, (unsigned)hint))
        return hint;
    if (n == 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        unsigned node = nodes[(*turn + i) % n];

        if (!cl_cluster_node_down(cl, node)) {
            *turn += i;
            return (int)node;
        }
    }
    return (int)nodes[*turn % n];
}

static unsigned replicas(const struct cl_cluster *cl, uint32_t shard)
{
    unsigned nodes[MAP_MAX_REPLICAS], n = cl_cluster_shard_nodes(cl, shard, nodes);

    return n ? n : 1;
}

/* Run one request against a shard's leader until a D-node decides it.  On return c holds the
 * decisive answer (c->buf, if any, is the caller's).  For an update, *sent tells whether some
 * try may have reached a leader without a decisive answer coming back (its outcome is then
 * unknown).  Returns 0 when c->status is the leader's verdict, else the error. */
static int route(struct cl_cluster *cl, uint32_t shard, const Cairn__Request *req,
                 const void *payload, uint32_t len, struct call *c, bool *sent)
{
    uint64_t deadline = cairn_now_ms() + cl_cluster_leader_wait_ms(cl);
    unsigned turn = 0, outstanding = 0, refused = 0;

    if (sent)
        *sent = false;
    c->outstanding = &outstanding;
    for (;;) {
        int node = target(cl, shard, &turn);

        if (node < 0)
            return CAIRN_EINVAL;
        c->node = (unsigned)node;
        if (issue(cl, c, req, payload, len))
            wait_calls(cl, &outstanding);
        log_debug(TAG, "shard %u: D-node %d answered %s / %s", shard, node,
                  cairn_strerror(c->tstatus), cairn_strerror(c->status));
        if (c->tstatus == CAIRN_ETIMEDOUT || c->tstatus == CAIRN_EUNREACH) {
            /* It may have arrived and be in the log: an update's outcome is unknown. */
            cl_cluster_note(cl, c->node, c->tstatus);
            cl_cluster_set_leader_hint(cl, shard, -1);
            if (sent)
                *sent = true;
            turn++;
        } else if (c->tstatus) {
            return c->tstatus; /* refused here (memory, sizes): trying again will not help */
        } else {
            cl_cluster_note(cl, c->node, 0);
            switch (c->status) {
            case CAIRN_ENOTLEADER: {
                int leader = c->leader ? cl_cluster_node_index(cl, c->leader) : -1;

                cl_cluster_set_leader_hint(cl, shard, leader != (int)c->node ? leader : -1);
                if (leader < 0 || leader == (int)c->node)
                    turn++;
                /* Once every replica was asked (no leader known yet, or stale ones naming
                 * each other), an election is on: give it time. */
                if (++refused % replicas(cl, shard) == 0)
                    sleep_ms(BACKOFF_MS);
                break;
            }
            case CAIRN_EAGAIN:
                sleep_ms(BACKOFF_MS); /* a new leader getting ready */
                break;
            case CAIRN_ESTALE: {
                uint64_t epoch = cl_cluster_epoch(cl);

                /* No newer map to be had yet (the map group still applying it): wait. */
                if (cl_cluster_refresh(cl) != 0 || cl_cluster_epoch(cl) == epoch)
                    sleep_ms(BACKOFF_MS);
                break;
            }
            case CAIRN_EUNKNOWN:
                /* The leader lost its place with our update in its log. */
                cl_cluster_set_leader_hint(cl, shard, -1);
                if (sent)
                    *sent = true;
                return 0;
            default:
                cl_cluster_set_leader_hint(cl, shard, (int)c->node);
                return 0;
            }
        }
        if (cairn_now_ms() >= deadline)
            return CAIRN_EUNREACH;
        if (sent && *sent)
            return CAIRN_EUNREACH; /* the caller decides what an unknown outcome means */
    }
}

/* Hand a get's answer over: c->buf becomes out->val. */
static int take(struct call *c, struct meta_rec *out)
{
    out->version = c->status == 0 || c->status == CAIRN_ENOENT ? c->version : 0;
    if (c->status)
        return c->status;
    out->val = c->buf;
    out->len = c->len;
    c->buf = NULL;
    return 0;
}

/* A record of the cluster's shard (a shard index, or MAP_GROUP), from its leader. */
static int get_at(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                  struct meta_rec *out)
{
    struct call c = {.cap = tp_ctx_max_payload(cl_cluster_tp(cl))};
    Cairn__Request req;
    int rc;

    c.buf = malloc(c.cap);
    if (!c.buf)
        return CAIRN_ENOMEM;
    req_init(&req, CAIRN__OP__OP_KV_GET, shard, key, klen);
    rc = route(cl, shard, &req, NULL, 0, &c, NULL);
    if (!rc)
        rc = take(&c, out);
    free(c.buf);
    return rc;
}

int meta_rec_get(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 struct meta_rec *out)
{
    memset(out, 0, sizeof(*out));
    if (klen == 0 || klen > META_REC_MAX_KEY || !cl_cluster_shards(cl))
        return CAIRN_EINVAL;
    return get_at(cl, meta_rec_shard(cl, shard), key, klen, out);
}

/* Records per wave of meta_rec_get_many, and the answer room per record of its calls: room for
 * the usual record (an inode with inline bytes included); a larger one is read again alone. */
#define MANY_WAVE 64u
#define MANY_BUF (20u << 10)

/* The gets of one wave that share a shard: one KV_GET, or one KV_MGET for several. */
struct many_batch {
    uint32_t shard;
    unsigned count;
    unsigned idx[MANY_WAVE]; /* into the wave */
    struct call c;
    uint8_t *keys; /* KV_MGET: the encoded KvKeys (owned) */
};

/* Hand an answered KV_MGET's records to its gets; false if the answer does not fit them. */
static bool many_take(struct meta_get *wave, struct many_batch *b)
{
    Cairn__KvScanResult *res = cairn__kv_scan_result__unpack(NULL, b->c.len, b->c.buf);
    bool ok = res && res->n_entries == b->count;

    for (unsigned j = 0; ok && j < b->count; j++) {
        const Cairn__KvEntry *e = res->entries[j];
        struct meta_get *g = &wave[b->idx[j]];

        ok = e->key.len == g->klen && memcmp(e->key.data, g->key, g->klen) == 0;
    }
    for (unsigned j = 0; ok && j < b->count; j++) {
        const Cairn__KvEntry *e = res->entries[j];
        struct meta_get *g = &wave[b->idx[j]];

        g->rec.version = e->version;
        if (e->version == 0) {
            g->rc = CAIRN_ENOENT;
            continue;
        }
        g->rec.val = malloc(e->value.len ? e->value.len : 1);
        if (!g->rec.val) {
            g->rc = CAIRN_ENOMEM;
            continue;
        }
        memcpy(g->rec.val, e->value.data, e->value.len);
        g->rec.len = (uint32_t)e->value.len;
        g->rc = 0;
    }
    if (res)
        cairn__kv_scan_result__free_unpacked(res, NULL);
    return ok;
}

/* Issue a batch: its one record with KV_GET, or all of them with one KV_MGET. */
static void many_issue(struct cl_cluster *cl, struct meta_get *wave, struct many_batch *b,
                       unsigned *outstanding)
{
    unsigned turn = 0;
    int node = target(cl, b->shard, &turn);
    Cairn__Request req;
    size_t len = 0;

    b->c = (struct call){.outstanding = outstanding, .tstatus = CAIRN_ECANCELED};
    if (node < 0)
        return;
    b->c.node = (unsigned)node;
    b->c.cap = MANY_BUF * b->count;
    if (b->count > 1) {
        Cairn__KvKeys kk = CAIRN__KV_KEYS__INIT;
        ProtobufCBinaryData keys[MANY_WAVE];

        for (unsigned j = 0; j < b->count; j++)
            keys[j] = (ProtobufCBinaryData){.len = wave[b->idx[j]].klen,
                                            .data = (uint8_t *)wave[b->idx[j]].key};
        kk.keys = keys;
        kk.n_keys = b->count;
        len = cairn__kv_keys__get_packed_size(&kk);
        b->keys = malloc(len);
        if (!b->keys)
            return;
        cairn__kv_keys__pack(&kk, b->keys);
        b->c.cap = CAIRN_MIN(b->c.cap, (uint32_t)tp_ctx_max_payload(cl_cluster_tp(cl)));
        req_init(&req, CAIRN__OP__OP_KV_MGET, b->shard, NULL, 0);
    } else {
        const struct meta_get *g = &wave[b->idx[0]];

        req_init(&req, CAIRN__OP__OP_KV_GET, b->shard, g->key, g->klen);
    }
    b->c.buf = malloc(b->c.cap);
    if (b->c.buf)
        issue(cl, &b->c, &req, b->keys, (uint32_t)len);
}

void meta_rec_get_many(struct cl_cluster *cl, struct meta_get *gets, unsigned n)
{
    struct many_batch *batches = calloc(MANY_WAVE, sizeof(*batches));

    for (unsigned w = 0; w < n; w += MANY_WAVE) {
        unsigned nw = CAIRN_MIN(n - w, MANY_WAVE), nb = 0, outstanding = 0;
        struct meta_get *wave = &gets[w];
        bool done[MANY_WAVE] = {false};

        /* First try: the wave's records grouped by shard, every group at once, each to the
         * leader we know (or the first replica): one message per shard. */
        for (unsigned j = 0; j < nw && batches; j++) {
            struct meta_get *g = &wave[j];
            uint32_t shard;
            unsigned b;

            memset(&g->rec, 0, sizeof(g->rec));
            g->rc = CAIRN_ECANCELED;
            if (g->klen == 0 || g->klen > META_REC_MAX_KEY || !cl_cluster_shards(cl))
                continue;
            shard = meta_rec_shard(cl, g->shard);
            for (b = 0; b < nb && batches[b].shard != shard; b++)
                ;
            if (b == nb)
                batches[nb++] = (struct many_batch){.shard = shard};
            batches[b].idx[batches[b].count++] = j;
        }
        for (unsigned b = 0; b < nb; b++)
            many_issue(cl, wave, &batches[b], &outstanding);
        wait_calls(cl, &outstanding);
        for (unsigned b = 0; b < nb; b++) {
            struct many_batch *x = &batches[b];
            struct call *c = &x->c;

            if (!c->tstatus) {
                cl_cluster_note(cl, c->node, 0);
                if (x->count > 1 && c->status == 0 && many_take(wave, x)) {
                    cl_cluster_set_leader_hint(cl, x->shard, (int)c->node);
                    for (unsigned j = 0; j < x->count; j++)
                        done[x->idx[j]] = true;
                } else if (x->count == 1 && (c->status == 0 || c->status == CAIRN_ENOENT ||
                                             c->status == CAIRN_EINVAL)) {
                    cl_cluster_set_leader_hint(cl, x->shard, (int)c->node);
                    wave[x->idx[0]].rc = take(c, &wave[x->idx[0]].rec);
                    done[x->idx[0]] = true;
                }
            } else if (c->tstatus == CAIRN_ETIMEDOUT || c->tstatus == CAIRN_EUNREACH) {
                cl_cluster_note(cl, c->node, c->tstatus);
            }
            free(c->buf);
            free(x->keys);
        }
        /* Not the leader, not ready, no answer, or larger than the batch's room: read those
         * alone, following leaders. */
        for (unsigned j = 0; j < nw; j++)
            if (!done[j])
                wave[j].rc = meta_rec_get(cl, wave[j].shard, wave[j].key, wave[j].klen,
                                          &wave[j].rec);
    }
    free(batches);
}

/* Sends of one update before it is reported unknown. */
#define RESOLVE_TRIES 8u

/* An update of a record of the cluster's shard (a shard index, or MAP_GROUP). */
static int write_at(struct cl_cluster *cl, Cairn__Op op, uint32_t shard, const void *key,
                    size_t klen, uint64_t expect, const void *val, uint32_t len,
                    uint64_t *version)
{
    uint64_t deadline = cairn_now_ms() + cl_cluster_leader_wait_ms(cl);
    Cairn__Request req;

    req_init(&req, op, shard, key, klen);
    req.expect_version = expect;
    /* Every copy of this update carries the view's session and this number: the shard
     * applies the first copy that reaches its log and answers every other with its result. */
    req.client = cl_cluster_session(cl);
    req.seq = cl_cluster_next_seq(cl);
    for (unsigned tries = 1;; tries++) {
        struct call c = {0};
        bool sent;
        int rc = route(cl, shard, &req, val, len, &c, &sent);

        if (!rc && c.status != CAIRN_EUNKNOWN) {
            if (c.status == CAIRN_ECANCELED)
                return CAIRN_EUNREACH; /* the shard saw a newer update of ours: cannot be */
            if (!c.status && version)
                *version = c.version;
            return c.status;
        }
        if (rc && !sent)
            return rc;
        /* The update may be in some log, applied or not yet: sending it again is safe. */
        if (tries == RESOLVE_TRIES || cairn_now_ms() >= deadline)
            return CAIRN_EUNREACH;
        log_debug(TAG, "an update's outcome was unknown: sending it again (session %016llx, "
                  "update %llu)", (unsigned long long)req.client, (unsigned long long)req.seq);
    }
}

static int rec_write(struct cl_cluster *cl, Cairn__Op op, uint32_t shard, const void *key,
                     size_t klen, uint64_t expect, const void *val, uint32_t len,
                     uint64_t *version)
{
    if (klen == 0 || klen > META_REC_MAX_KEY || !cl_cluster_shards(cl))
        return CAIRN_EINVAL;
    if (len > META_REC_MAX_VAL)
        return CAIRN_ETOOBIG;
    return write_at(cl, op, meta_rec_shard(cl, shard), key, klen, expect, val, len, version);
}

int meta_rec_txn(struct cl_cluster *cl, uint32_t shard, const struct meta_op *ops, unsigned n,
                 uint64_t *version)
{
    Cairn__KvOp t = CAIRN__KV_OP__INIT, sub[META_TXN_MAX], *subp[META_TXN_MAX];
    size_t bytes = 0, len;
    uint8_t *buf;
    int rc;

    if (n == 0 || n > META_TXN_MAX || !cl_cluster_shards(cl))
        return CAIRN_EINVAL;
    for (unsigned i = 0; i < n; i++) {
        if (ops[i].klen == 0 || ops[i].klen > META_REC_MAX_KEY ||
            (ops[i].kind == META_OP_DEL && ops[i].len) ||
            (ops[i].kind == META_OP_STAMP &&
             (ops[i].len == 0 || ops[i].len % 8 || ops[i].len > 8 * META_STAMP_MAX)))
            return CAIRN_EINVAL;
        bytes += ops[i].len;
        cairn__kv_op__init(&sub[i]);
        sub[i].op = ops[i].kind == META_OP_DEL     ? CAIRN__OP__OP_KV_DEL
                    : ops[i].kind == META_OP_STAMP ? CAIRN__OP__OP_KV_STAMP
                                                   : CAIRN__OP__OP_KV_PUT;
        sub[i].key.data = (uint8_t *)ops[i].key;
        sub[i].key.len = ops[i].klen;
        sub[i].value.data = (uint8_t *)ops[i].val;
        sub[i].value.len = ops[i].len;
        sub[i].expect = ops[i].expect;
        subp[i] = &sub[i];
    }
    if (bytes > META_REC_MAX_VAL)
        return CAIRN_ETOOBIG;
    t.op = CAIRN__OP__OP_KV_TXN;
    t.ops = subp;
    t.n_ops = n;
    len = cairn__kv_op__get_packed_size(&t);
    buf = malloc(len);
    if (!buf)
        return CAIRN_ENOMEM;
    cairn__kv_op__pack(&t, buf);
    rc = write_at(cl, CAIRN__OP__OP_KV_TXN, meta_rec_shard(cl, shard), NULL, 0, 0, buf,
                  (uint32_t)len, version);
    free(buf);
    return rc;
}

int meta_map_get(struct cl_cluster *cl, struct meta_rec *out)
{
    memset(out, 0, sizeof(*out));
    return get_at(cl, MAP_GROUP, MAP_KEY, strlen(MAP_KEY), out);
}

int meta_map_put(struct cl_cluster *cl, uint64_t expect, const void *map, uint32_t len)
{
    if (expect == META_ANY || expect == 0)
        return CAIRN_EINVAL;
    return write_at(cl, CAIRN__OP__OP_KV_PUT, MAP_GROUP, MAP_KEY, strlen(MAP_KEY), expect, map,
                    len, NULL);
}

int meta_rec_put(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 uint64_t expect, const void *val, uint32_t len, uint64_t *version)
{
    return rec_write(cl, CAIRN__OP__OP_KV_PUT, shard, key, klen, expect, val, len, version);
}

int meta_rec_del(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 uint64_t expect)
{
    return rec_write(cl, CAIRN__OP__OP_KV_DEL, shard, key, klen, expect, NULL, 0, NULL);
}

int meta_map_change(struct cl_cluster *cl, meta_map_next_fn next, void *arg, const char **what)
{
    uint64_t epoch = 0;
    int rc;

    *what = "the next map";
    for (unsigned tries = 0;; tries++) {
        struct meta_rec rec = {0};
        Cairn__ClusterMap *cur;
        uint8_t *buf = NULL;
        size_t len = 0;
        bool done = false;

        *what = "read the cluster map";
        rc = meta_map_get(cl, &rec);
        if (rc)
            return rc;
        cur = map_decode(rec.val, rec.len);
        free(rec.val);
        if (!cur)
            return CAIRN_EPROTO;
        *what = "the next map";
        rc = next(cur, arg, &buf, &len, &done, what);
        epoch = done ? cur->epoch : cur->epoch + 1; /* done: a retry of this change */
        cairn__cluster_map__free_unpacked(cur, NULL);
        if (rc)
            return rc;
        if (done)
            break;
        *what = "write the next map";
        rc = meta_map_put(cl, rec.version, buf, (uint32_t)len);
        free(buf);
        if (rc == CAIRN_ECONFLICT && tries < 20)
            continue; /* another change won: build on it */
        if (rc)
            return rc;
        break;
    }
    *what = "read the new map back";
    for (unsigned i = 0; i < 100 && cl_cluster_epoch(cl) < epoch; i++) {
        if (cl_cluster_refresh(cl) != 0 || cl_cluster_epoch(cl) < epoch) {
            struct timespec ts = {0, 100 * 1000 * 1000};

            nanosleep(&ts, NULL);
        }
    }
    return cl_cluster_epoch(cl) < epoch ? CAIRN_EUNREACH : 0;
}

/* ---- scans ---- */

void meta_scan_fini(struct meta_scan *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        free(s->entries[i].key);
        free(s->entries[i].val);
    }
    free(s->entries);
    free(s->next);
    memset(s, 0, sizeof(*s));
}

int meta_rec_scan(struct cl_cluster *cl, uint32_t shard, const void *start, size_t slen,
                  const void *end, size_t elen, unsigned limit, struct meta_scan *out)
{
    struct call c = {.cap = tp_ctx_max_payload(cl_cluster_tp(cl))};
    Cairn__KvScanResult *res = NULL;
    Cairn__Request req;
    int rc;

    memset(out, 0, sizeof(*out));
    if (limit == 0 || limit > META_SCAN_MAX)
        limit = META_SCAN_MAX;
    if (slen > META_REC_MAX_KEY || elen > META_REC_MAX_KEY || !cl_cluster_shards(cl))
        return CAIRN_EINVAL;
    shard = meta_rec_shard(cl, shard);
    c.buf = malloc(c.cap);
    if (!c.buf)
        return CAIRN_ENOMEM;
    req_init(&req, CAIRN__OP__OP_KV_SCAN, shard, start, slen);
    req.end_key.data = (uint8_t *)end;
    req.end_key.len = end ? elen : 0;
    req.limit = limit;
    rc = route(cl, shard, &req, NULL, 0, &c, NULL);
    if (!rc)
        rc = c.status;
    if (rc)
        goto out;
    res = cairn__kv_scan_result__unpack(NULL, c.len, c.buf);
    if (!res) {
        rc = CAIRN_EPROTO;
        goto out;
    }
    out->entries = calloc(res->n_entries ? res->n_entries : 1, sizeof(*out->entries));
    if (!out->entries) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < res->n_entries; i++) {
        const Cairn__KvEntry *e = res->entries[i];
        struct meta_entry *o = &out->entries[out->n];

        o->key = malloc(e->key.len ? e->key.len : 1);
        o->val = malloc(e->value.len ? e->value.len : 1);
        if (!o->key || !o->val) {
            free(o->key);
            free(o->val);
            rc = CAIRN_ENOMEM;
            goto out;
        }
        memcpy(o->key, e->key.data, e->key.len);
        o->klen = (uint32_t)e->key.len;
        o->version = e->version;
        memcpy(o->val, e->value.data, e->value.len);
        o->len = (uint32_t)e->value.len;
        out->n++;
    }
    if (res->more && !out->n) {
        rc = CAIRN_ETOOBIG; /* one record larger than a reply: cannot happen within limits */
        goto out;
    }
    if (res->more) {
        /* Continue just after the last key: the same key with a 0 byte appended. */
        const struct meta_entry *last = &out->entries[out->n - 1];

        out->more = true;
        out->next = malloc(last->klen + 1);
        if (!out->next) {
            rc = CAIRN_ENOMEM;
            goto out;
        }
        memcpy(out->next, last->key, last->klen);
        out->next[last->klen] = 0;
        out->next_len = last->klen + 1;
    }
out:
    if (res)
        cairn__kv_scan_result__free_unpacked(res, NULL);
    free(c.buf);
    if (rc)
        meta_scan_fini(out);
    return rc;
}
