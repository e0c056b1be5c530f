/*
 * shards.c - the D-node's metadata shards as Raft groups (see shards.h).
 */
#include "dnode/shards.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/clock.h"
#include "common/log.h"
#include "consensus/cs.h"

#define TAG "shards"
#define PEER_INFLIGHT_MAX 64u /* Raft calls in flight to one peer; beyond, batches are dropped */
/* An all-or-nothing update's encoding beyond its values: keys and framing of KV_TXN_MAX ops */
#define TXN_OVERHEAD (KV_TXN_MAX * (KV_MAX_KEY + 64u))

struct peer {
    uint64_t id;
    uint64_t fi;     /* transport peer handle */
    bool resolved;
    unsigned inflight;
};

/* A KV write waiting for its shard to commit it. */
struct write_wait {
    struct dn_shards *s;
    struct tp_later *later;
    uint32_t shard; /* barrier reads: the record to answer about */
    uint8_t *key;
    size_t klen;
};

/* What applying a command produced, for the node that proposed it. */
struct apply_result {
    int status;
    uint64_t version;
};

struct dn_shards {
    struct dn_shards_config cfg;
    struct cs_node *cs;
    /* the newest map we know, decoded, and its encoding */
    Cairn__ClusterMap *map;
    uint8_t *map_buf;
    size_t map_len;
    /* a map applied in the map group this round, installed after the commit */
    uint8_t *pending_map;
    size_t pending_map_len;
    struct peer *peers;
    size_t n_peers;
    uint32_t *groups; /* the groups we opened */
    size_t n_groups, cap_groups;
    uint64_t next_poll_ms, next_converge_ms;
    uint64_t wanted_epoch;  /* a request showed us a newer map */
    bool polling;
};

static uint64_t now_ms(void)
{
    return cairn_now_ms();
}

/* ---- the map ---- */

static bool ids_have(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static struct peer *peer_of(struct dn_shards *s, uint64_t id)
{
    for (size_t i = 0; i < s->n_peers; i++)
        if (s->peers[i].id == id)
            return &s->peers[i];
    return NULL;
}

static const char *addr_of(const struct dn_shards *s, uint64_t id)
{
    if (!s->map)
        return NULL;
    for (size_t i = 0; i < s->map->n_nodes; i++)
        if (s->map->nodes[i]->id == id)
            return s->map->nodes[i]->addr;
    return NULL;
}

static int peers_rebuild(struct dn_shards *s)
{
    const Cairn__ClusterMap *m = s->map;
    struct peer *p = calloc(m->n_nodes, sizeof *p);

    if (!p)
        return CAIRN_ENOMEM;
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct peer *old = peer_of(s, m->nodes[i]->id);
        p[i].id = m->nodes[i]->id;
        if (old)
            p[i].inflight = old->inflight;
        /* resolved lazily: an address may have changed */
    }
    free(s->peers);
    s->peers = p;
    s->n_peers = m->n_nodes;
    return 0;
}

static bool group_open_already(const struct dn_shards *s, uint32_t id)
{
    for (size_t i = 0; i < s->n_groups; i++)
        if (s->groups[i] == id)
            return true;
    return false;
}

static void group_open(struct dn_shards *s, uint32_t id, const uint64_t *voters, size_t n)
{
    int rc;

    if (group_open_already(s, id))
        return;
    if (s->n_groups == s->cap_groups) {
        size_t cap = s->cap_groups ? s->cap_groups * 2 : 256;
        uint32_t *g = realloc(s->groups, cap * sizeof *g);
        if (!g)
            return;
        s->groups = g;
        s->cap_groups = cap;
    }
    rc = cs_group_open(s->cs, id, voters, (unsigned)n, NULL);
    if (rc) {
        log_error(TAG, "group %u: cannot open: %s", id, cairn_strerror(rc));
        return;
    }
    s->groups[s->n_groups++] = id;
}

/* Open the groups the map places us in.  Only the first map (epoch 1, the cluster's
 * creation) bootstraps them, with the same members on every replica; a replica placed later
 * waits for its group's leader to add it. */
static void groups_from_map(struct dn_shards *s)
{
    const Cairn__ClusterMap *m = s->map;
    uint64_t self = s->cfg.self;
    bool first = m->epoch == 1;

    if (ids_have(m->map_group, m->n_map_group, self))
        group_open(s, MAP_GROUP, first ? m->map_group : NULL, first ? m->n_map_group : 0);
    for (uint32_t sh = 0; sh < m->shards; sh++) {
        const Cairn__ShardPlace *p = m->place[sh];
        if (ids_have(p->nodes, p->n_nodes, self))
            group_open(s, sh, first ? p->nodes : NULL, first ? p->n_nodes : 0);
    }
}

/* Take a map if it is newer than ours (and valid).  Returns true if installed. */
static bool map_install(struct dn_shards *s, const void *buf, size_t len, const char *from)
{
    Cairn__ClusterMap *m = map_decode(buf, len);
    uint8_t *copy;

    if (!m)
        return false;
    if (s->map && m->epoch <= s->map->epoch) {
        cairn__cluster_map__free_unpacked(m, NULL);
        return false;
    }
    copy = malloc(len ? len : 1);
    if (!copy || dn_kv_node_put(s->cfg.kv, buf, len) != 0) {
        free(copy);
        cairn__cluster_map__free_unpacked(m, NULL);
        return false;
    }
    memcpy(copy, buf, len);
    if (s->map)
        cairn__cluster_map__free_unpacked(s->map, NULL);
    free(s->map_buf);
    s->map = m;
    s->map_buf = copy;
    s->map_len = len;
    if (peers_rebuild(s) != 0)
        log_error(TAG, "out of memory rebuilding peers");
    log_info(TAG, "cluster map epoch %llu (%zu D-nodes, %u shards) from %s",
             (unsigned long long)m->epoch, m->n_nodes, m->shards, from);
    groups_from_map(s);
    return true;
}

/* ---- the consensus host ---- */

struct load_ctx {
    struct cs_entry *e;
    size_t n, cap;
};

static int load_entry(void *arg, uint64_t index, uint64_t term, unsigned type, const void *buf,
                      size_t len)
{
    struct load_ctx *l = arg;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct cs_entry *e = realloc(l->e, cap * sizeof *e);
        if (!e)
            return CAIRN_ENOMEM;
        l->e = e;
        l->cap = cap;
    }
    void *copy = malloc(len ? len : 1);
    if (!copy)
        return CAIRN_ENOMEM;
    memcpy(copy, buf, len);
    l->e[l->n++] = (struct cs_entry){.index = index, .term = term, .type = type, .buf = copy,
                                     .len = len};
    return 0;
}

static void h_load_done(void *arg, struct cs_loaded *l)
{
    (void)arg;
    for (size_t i = 0; i < l->n_entries; i++)
        free((void *)l->entries[i].buf);
    free(l->entries);
    free((void *)l->meta);
    memset(l, 0, sizeof *l);
}

static int h_load(void *arg, uint32_t group, struct cs_loaded *out)
{
    struct dn_shards *s = arg;
    struct load_ctx l = {0};
    void *meta = NULL;
    size_t meta_len = 0;
    int rc;

    memset(out, 0, sizeof *out);
    rc = dn_kv_gmeta_get(s->cfg.kv, group, &meta, &meta_len);
    if (rc && rc != CAIRN_ENOENT)
        return rc;
    out->meta = meta;
    out->meta_len = meta_len;
    rc = dn_kv_log_load(s->cfg.kv, group, load_entry, &l);
    out->entries = l.e;
    out->n_entries = l.n;
    if (!rc)
        rc = dn_kv_applied_get(s->cfg.kv, group, &out->applied);
    if (rc)
        h_load_done(arg, out);
    return rc;
}

static int h_put_meta(void *arg, uint32_t group, const void *buf, size_t len)
{
    struct dn_shards *s = arg;
    return dn_kv_gmeta_put(s->cfg.kv, group, buf, len);
}

static int h_put_entries(void *arg, uint32_t group, const struct cs_entry *e, size_t n)
{
    struct dn_shards *s = arg;

    for (size_t i = 0; i < n; i++) {
        int rc = dn_kv_log_put(s->cfg.kv, group, e[i].index, e[i].term, e[i].type, e[i].buf,
                               e[i].len);
        if (rc)
            return rc;
    }
    return 0;
}

static int h_drop_entries(void *arg, uint32_t group, uint64_t from, uint64_t to)
{
    struct dn_shards *s = arg;
    return dn_kv_log_drop(s->cfg.kv, group, from, to);
}

static int h_commit(void *arg)
{
    struct dn_shards *s = arg;
    return dn_kv_round_commit(s->cfg.kv);
}

/* An all-or-nothing update: its ops as the store's.  Ops that are not puts, deletes or stamps
 * make the whole of it CAIRN_EPROTO, applied as nothing, everywhere alike. */
static int apply_txn(struct dn_shards *s, uint32_t group, uint64_t index, const Cairn__KvOp *op,
                     struct apply_result *r)
{
    struct dn_kv_op head = {0}, ops[KV_TXN_MAX];
    int rc;

    memset(ops, 0, sizeof ops);
    for (size_t i = 0; i < op->n_ops && i < KV_TXN_MAX; i++) {
        const Cairn__KvOp *o = op->ops[i];

        if (o->op != CAIRN__OP__OP_KV_PUT && o->op != CAIRN__OP__OP_KV_DEL &&
            o->op != CAIRN__OP__OP_KV_STAMP) {
            r->status = CAIRN_EPROTO;
            return dn_kv_round_applied(s->cfg.kv, group, index);
        }
        ops[i].kind = o->op == CAIRN__OP__OP_KV_PUT   ? DN_KV_PUT
                      : o->op == CAIRN__OP__OP_KV_DEL ? DN_KV_DEL
                                                      : DN_KV_STAMP;
        ops[i].key = o->key.data;
        ops[i].key_len = o->key.len;
        ops[i].val = o->value.data;
        ops[i].val_len = o->value.len;
        ops[i].expect = o->expect;
    }
    head.client = op->client;
    head.seq = op->seq;
    head.time_ms = op->time_ms;
    /* more than KV_TXN_MAX ops: refused by the store before it reads any */
    rc = dn_kv_round_apply_txn(s->cfg.kv, group, index, &head, ops, op->n_ops);
    r->status = head.status;
    r->version = head.result;
    return rc;
}

static int h_apply(void *arg, uint32_t group, uint64_t index, const void *cmd, size_t len,
                   void **result)
{
    struct dn_shards *s = arg;
    struct apply_result *r = calloc(1, sizeof *r);
    Cairn__KvOp *op = cairn__kv_op__unpack(NULL, len, cmd);
    struct dn_kv_op kop = {0};
    int rc;

    if (!r) {
        if (op)
            cairn__kv_op__free_unpacked(op, NULL);
        return CAIRN_ENOMEM;
    }
    *result = r;
    if (op && op->op == CAIRN__OP__OP_PING) { /* a barrier */
        cairn__kv_op__free_unpacked(op, NULL);
        return dn_kv_round_applied(s->cfg.kv, group, index);
    }
    if (op && op->op == CAIRN__OP__OP_KV_TXN) {
        rc = apply_txn(s, group, index, op, r);
        cairn__kv_op__free_unpacked(op, NULL);
        return rc;
    }
    if (!op || (op->op != CAIRN__OP__OP_KV_PUT && op->op != CAIRN__OP__OP_KV_DEL)) {
        /* Not a command of ours (a proposer's bug): applied as nothing, everywhere alike. */
        if (op)
            cairn__kv_op__free_unpacked(op, NULL);
        r->status = CAIRN_EPROTO;
        return dn_kv_round_applied(s->cfg.kv, group, index);
    }
    kop.kind = op->op == CAIRN__OP__OP_KV_PUT ? DN_KV_PUT : DN_KV_DEL;
    kop.key = op->key.data;
    kop.key_len = op->key.len;
    kop.val = op->value.data;
    kop.val_len = op->value.len;
    kop.expect = op->expect;
    kop.client = op->client;
    kop.seq = op->seq;
    kop.time_ms = op->time_ms;
    rc = dn_kv_round_apply(s->cfg.kv, group, index, &kop);
    r->status = kop.status;
    r->version = kop.result;
    if (!rc && !kop.status && !kop.dup && group == MAP_GROUP && kop.kind == DN_KV_PUT &&
        op->key.len == strlen(MAP_KEY) && memcmp(op->key.data, MAP_KEY, op->key.len) == 0) {
        /* A new map: ours once this round is durable. */
        uint8_t *copy = malloc(op->value.len ? op->value.len : 1);
        if (copy) {
            memcpy(copy, op->value.data, op->value.len);
            free(s->pending_map);
            s->pending_map = copy;
            s->pending_map_len = op->value.len;
        }
    }
    cairn__kv_op__free_unpacked(op, NULL);
    return rc;
}

static void h_result_free(void *arg, void *result)
{
    (void)arg;
    free(result);
}

static int h_dump(void *arg, uint32_t group, uint64_t *applied, void **data, size_t *len)
{
    struct dn_shards *s = arg;
    /* the dump travels in one Raft message */
    return dn_kv_shard_dump(s->cfg.kv, group, s->cfg.max_msg - 65536, applied, data, len);
}

static int h_install(void *arg, uint32_t group, uint64_t applied, const void *data, size_t len)
{
    struct dn_shards *s = arg;
    return dn_kv_round_shard_install(s->cfg.kv, group, applied, data, len);
}

struct raft_call {
    struct dn_shards *s;
    uint64_t to;
    void *buf;
};

static void raft_sent(void *arg, int status, const Cairn__Response *resp)
{
    struct raft_call *c = arg;
    struct peer *p = peer_of(c->s, c->to);

    (void)status;
    (void)resp;
    if (p && p->inflight)
        p->inflight--;
    free(c->buf);
    free(c);
}

static void h_send(void *arg, uint64_t to, const void *buf, size_t len)
{
    struct dn_shards *s = arg;
    struct peer *p = peer_of(s, to);
    Cairn__Request req = CAIRN__REQUEST__INIT;
    struct raft_call *c;

    if (!p || p->inflight >= PEER_INFLIGHT_MAX)
        return; /* unknown or not answering: Raft resends */
    if (!p->resolved) {
        const char *addr = addr_of(s, to);
        if (!addr || tp_peer_add(s->cfg.tp, addr, &p->fi) != 0)
            return;
        p->resolved = true;
    }
    c = malloc(sizeof *c);
    if (!c)
        return;
    c->s = s;
    c->to = to;
    c->buf = malloc(len ? len : 1);
    if (!c->buf) {
        free(c);
        return;
    }
    memcpy(c->buf, buf, len);
    req.op = CAIRN__OP__OP_RAFT;
    req.epoch = dn_shards_epoch(s);
    if (tp_call(s->cfg.tp, p->fi, &req, c->buf, (uint32_t)len, NULL, 0, raft_sent, c) != 0) {
        free(c->buf);
        free(c);
        return;
    }
    p->inflight++;
}

static uint64_t h_now(void *arg)
{
    (void)arg;
    return now_ms();
}

/* ---- requests ---- */

static void reply(struct dn_shards *s, struct tp_req *req, int status, uint64_t leader)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;

    resp.status = status;
    resp.leader = leader;
    resp.epoch = dn_shards_epoch(s);
    tp_reply(req, &resp, NULL, 0, NULL, NULL);
}

/* The group of a request's shard, or NULL after answering why not. */
static struct cs_group *shard_group(struct dn_shards *s, struct tp_req *req,
                                    const Cairn__Request *h)
{
    struct cs_group *g;

    /* Bad input first: a clear error whatever the sender's epoch or our role. */
    if (h->key.len > KV_MAX_KEY || h->end_key.len > KV_MAX_KEY ||
        (h->op != CAIRN__OP__OP_KV_SCAN && h->op != CAIRN__OP__OP_KV_TXN &&
         h->op != CAIRN__OP__OP_KV_MGET && h->key.len == 0) ||
        (h->key.len && h->key.data[0] == KV_RESERVED) ||
        h->payload_len > (h->op == CAIRN__OP__OP_KV_PUT   ? KV_MAX_VALUE
                          : h->op == CAIRN__OP__OP_KV_TXN ? KV_MAX_VALUE + TXN_OVERHEAD
                          : h->op == CAIRN__OP__OP_KV_MGET ? KV_MGET_MAX * (KV_MAX_KEY + 8u)
                                                           : 0)) {
        reply(s, req, CAIRN_EINVAL, 0);
        return NULL;
    }
    if (!s->map) {
        reply(s, req, CAIRN_ENOTLEADER, 0);
        return NULL;
    }
    if (h->epoch < s->map->epoch) {
        reply(s, req, CAIRN_ESTALE, 0);
        return NULL;
    }
    if (h->epoch > s->map->epoch && h->epoch > s->wanted_epoch) {
        s->wanted_epoch = h->epoch;
        s->next_poll_ms = 0; /* ask for the newer map now */
    }
    if (h->shard != MAP_GROUP && h->shard >= s->map->shards) {
        reply(s, req, CAIRN_EINVAL, 0);
        return NULL;
    }
    g = cs_group_find(s->cs, h->shard);
    if (!g) {
        reply(s, req, CAIRN_ENOTLEADER, 0);
        return NULL;
    }
    return g;
}

/* The request's group if we lead it, or NULL after answering why not. */
static struct cs_group *leader_group(struct dn_shards *s, struct tp_req *req,
                                     const Cairn__Request *h)
{
    struct cs_group *g = shard_group(s, req, h);

    if (g && !cs_group_is_leader(g)) {
        reply(s, req, CAIRN_ENOTLEADER, cs_group_leader(g));
        return NULL;
    }
    return g;
}

/* Propose cmd for a request kept in w->later; if the proposal is refused, answer it now. */
static void propose(struct dn_shards *s, struct cs_group *g, const void *cmd, size_t len,
                    cs_done_cb cb, struct write_wait *w)
{
    int rc = cs_propose(g, cmd, len, cb, w);

    if (rc) {
        Cairn__Response resp = CAIRN__RESPONSE__INIT;

        resp.status = rc;
        resp.leader = rc == CAIRN_ENOTLEADER ? cs_group_leader(g) : 0;
        resp.epoch = dn_shards_epoch(s);
        tp_reply_later(s->cfg.tp, w->later, &resp);
        free(w->key);
        free(w);
    }
}

static void write_done(void *arg, int status, uint64_t index, void *result)
{
    struct write_wait *w = arg;
    const struct apply_result *r = result;
    Cairn__Response resp = CAIRN__RESPONSE__INIT;

    (void)index;
    resp.epoch = dn_shards_epoch(w->s);
    if (status) {
        resp.status = status;
    } else {
        resp.status = r ? r->status : CAIRN_EIO;
        resp.version = r ? r->version : 0;
    }
    tp_reply_later(w->s->cfg.tp, w->later, &resp);
    free(w);
}

/* A write to the map group is the next map, or nothing: a conditional put of MAP_KEY whose
 * value is a valid map of the next epoch with the same shards and code (every D-node installs
 * what this group commits). */
static bool map_write_ok(const struct dn_shards *s, struct tp_req *req, const Cairn__Request *h)
{
    Cairn__ClusterMap *m;
    bool ok;

    if (h->op != CAIRN__OP__OP_KV_PUT || h->key.len != strlen(MAP_KEY) ||
        memcmp(h->key.data, MAP_KEY, h->key.len) != 0 || h->expect_version == KV_ANY ||
        h->expect_version == KV_ABSENT)
        return false;
    m = map_decode(tp_req_payload(req), h->payload_len);
    if (!m)
        return false;
    ok = m->epoch == s->map->epoch + 1 && m->shards == s->map->shards && m->k == s->map->k &&
         m->m == s->map->m;
    cairn__cluster_map__free_unpacked(m, NULL);
    return ok;
}

/* Propose update op (the request's session and the leader's clock set here) for req, which
 * is answered when it is applied.  op may point into the request: it is encoded before the
 * request's buffer goes back. */
static void propose_update(struct dn_shards *s, struct cs_group *g, struct tp_req *req,
                           const Cairn__Request *h, Cairn__KvOp *op)
{
    struct write_wait *w;
    uint8_t *cmd;
    size_t len;

    op->client = h->client;
    op->seq = h->seq;
    op->time_ms = (uint64_t)(cairn_wall_ns() / 1000000);
    len = cairn__kv_op__get_packed_size(op);
    cmd = malloc(len ? len : 1);
    w = calloc(1, sizeof *w);
    if (cmd && w) {
        cairn__kv_op__pack(op, cmd);
        w->later = tp_req_later(req); /* the request buffer goes back now */
    }
    if (!cmd || !w || !w->later) {
        free(cmd);
        free(w);
        reply(s, req, CAIRN_ENOMEM, 0);
        return;
    }
    w->s = s;
    propose(s, g, cmd, len, write_done, w);
    free(cmd);
}

static void kv_write(struct dn_shards *s, struct tp_req *req, const Cairn__Request *h)
{
    struct cs_group *g;
    Cairn__KvOp op = CAIRN__KV_OP__INIT;

    if (h->shard == MAP_GROUP && s->map && !map_write_ok(s, req, h)) {
        reply(s, req, CAIRN_EINVAL, 0); /* bad input first, whoever leads */
        return;
    }
    g = leader_group(s, req, h);

    if (!g)
        return;
    op.op = h->op;
    op.key = h->key;
    op.expect = h->expect_version;
    if (h->op == CAIRN__OP__OP_KV_PUT) {
        op.value.data = tp_req_payload(req);
        op.value.len = h->payload_len;
    }
    propose_update(s, g, req, h, &op);
}

/* Is an all-or-nothing update well formed?  1..KV_TXN_MAX puts, deletes and stamps of
 * distinct, valid keys, values only on puts and stamps (1..KV_STAMP_MAX lanes) and
 * KV_MAX_VALUE bytes of them in all, nothing else set. */
static bool txn_ok(const Cairn__KvOp *t)
{
    size_t bytes = 0;

    if (t->op != CAIRN__OP__OP_KV_TXN || t->n_ops == 0 || t->n_ops > KV_TXN_MAX ||
        t->key.len || t->value.len || t->client || t->seq || t->time_ms)
        return false;
    for (size_t i = 0; i < t->n_ops; i++) {
        const Cairn__KvOp *o = t->ops[i];

        if ((o->op != CAIRN__OP__OP_KV_PUT && o->op != CAIRN__OP__OP_KV_DEL &&
             o->op != CAIRN__OP__OP_KV_STAMP) ||
            o->key.len == 0 || o->key.len > KV_MAX_KEY || o->key.data[0] == KV_RESERVED ||
            (o->op == CAIRN__OP__OP_KV_DEL && o->value.len) ||
            (o->op == CAIRN__OP__OP_KV_STAMP &&
             (o->value.len == 0 || o->value.len % 8 || o->value.len > 8 * KV_STAMP_MAX)) ||
            o->n_ops || o->client || o->seq || o->time_ms)
            return false;
        bytes += o->value.len;
        for (size_t j = 0; j < i; j++)
            if (t->ops[j]->key.len == o->key.len &&
                memcmp(t->ops[j]->key.data, o->key.data, o->key.len) == 0)
                return false;
    }
    return bytes <= KV_MAX_VALUE;
}

/* OP_KV_TXN: the payload is the update; checked here, so a bad one changes nothing anywhere. */
static void kv_txn(struct dn_shards *s, struct tp_req *req, const Cairn__Request *h)
{
    Cairn__KvOp *t = cairn__kv_op__unpack(NULL, h->payload_len, tp_req_payload(req));
    struct cs_group *g;

    if (!t || !txn_ok(t) || h->shard == MAP_GROUP) {
        if (t)
            cairn__kv_op__free_unpacked(t, NULL);
        reply(s, req, CAIRN_EINVAL, 0);
        return;
    }
    g = leader_group(s, req, h);
    if (g)
        propose_update(s, g, req, h, t);
    cairn__kv_op__free_unpacked(t, NULL);
}

/* Reads go to a leader holding its lease (cs_group_read_ok); the answer is the last commit,
 * which holds every update acknowledged so far. */
static bool read_allowed(struct dn_shards *s, struct tp_req *req, const Cairn__Request *h)
{
    struct cs_group *g = shard_group(s, req, h);
    int rc;

    if (!g)
        return false;
    rc = cs_group_read_ok(g);
    if (rc) {
        reply(s, req, rc, rc == CAIRN_ENOTLEADER ? cs_group_leader(g) : 0);
        return false;
    }
    return true;
}

static void barrier_done(void *arg, int status, uint64_t index, void *result)
{
    struct write_wait *w = arg;
    Cairn__Response resp = CAIRN__RESPONSE__INIT;
    void *val = NULL;
    size_t len = 0;
    uint64_t ver = 0;

    (void)index;
    (void)result;
    resp.epoch = dn_shards_epoch(w->s);
    resp.status = status;
    if (!status) {
        /* Applied in order: every entry before the barrier is in the store now. */
        resp.status = dn_kv_get(w->s->cfg.kv, w->shard, w->key, w->klen, &val, &len, &ver);
        resp.version = ver;
        free(val);
    }
    tp_reply_later(w->s->cfg.tp, w->later, &resp);
    free(w->key);
    free(w);
}

/* A read ordered after everything in the log: the leader appends a barrier and answers with
 * the record's version once the barrier is applied.  An update still in flight from an
 * earlier leader is then either applied or can never be (a later leader's committed entry
 * outranks it), which is what a writer that lost the answer to its update needs to know. */
static void kv_barrier_get(struct dn_shards *s, struct tp_req *req, const Cairn__Request *h)
{
    struct cs_group *g = leader_group(s, req, h);
    Cairn__KvOp op = CAIRN__KV_OP__INIT;
    struct write_wait *w;
    uint8_t cmd[8];
    size_t len;

    if (!g)
        return;
    op.op = CAIRN__OP__OP_PING;
    len = cairn__kv_op__pack(&op, cmd);
    w = calloc(1, sizeof *w);
    if (w)
        w->key = malloc(h->key.len);
    if (w && w->key) {
        memcpy(w->key, h->key.data, h->key.len); /* before the request buffer goes back */
        w->klen = h->key.len;
        w->shard = h->shard;
        w->later = tp_req_later(req);
    }
    if (!w || !w->key || !w->later) {
        if (w)
            free(w->key);
        free(w);
        reply(s, req, CAIRN_ENOMEM, 0);
        return;
    }
    w->s = s;
    propose(s, g, cmd, len, barrier_done, w);
}

static void kv_get(struct dn_shards *s, struct tp_req *req, const Cairn__Request *h)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;
    void *val = NULL;
    size_t len = 0;
    uint64_t ver = 0;
    int rc;

    if (!read_allowed(s, req, h))
        return;
    rc = dn_kv_get(s->cfg.kv, h->shard, h->key.data, h->key.len, &val, &len, &ver);
    if (!rc && len > tp_req_buf_len(req) - TP_HDR_SLOT)
        rc = CAIRN_ETOOBIG;
    resp.status = rc;
    resp.version = ver;
    resp.epoch = dn_shards_epoch(s);
    if (rc || len == 0) {
        free(val);
        tp_reply(req, &resp, NULL, 0, NULL, NULL);
        return;
    }
    memcpy(tp_req_payload(req), val, len);
    free(val);
    tp_reply(req, &resp, tp_req_payload(req), (uint32_t)len, NULL, NULL);
}

/* Several records of one shard in one answer (the same committed state: nothing commits
 * while the loop thread answers). */
static void kv_mget(struct dn_shards *s, struct tp_req *req, const Cairn__Request *h)
{
    Cairn__KvKeys *kk = cairn__kv_keys__unpack(NULL, h->payload_len, tp_req_payload(req));
    Cairn__KvScanResult res = CAIRN__KV_SCAN_RESULT__INIT;
    Cairn__KvEntry ents[KV_MGET_MAX], *ptrs[KV_MGET_MAX];
    void *vals[KV_MGET_MAX] = {NULL};
    Cairn__Response resp = CAIRN__RESPONSE__INIT;
    size_t n = 0, cap, need;
    int rc = CAIRN_EINVAL;
    bool ok = kk && kk->n_keys > 0 && kk->n_keys <= KV_MGET_MAX;

    for (size_t i = 0; ok && i < kk->n_keys; i++)
        ok = kk->keys[i].len > 0 && kk->keys[i].len <= KV_MAX_KEY &&
             kk->keys[i].data[0] != KV_RESERVED;
    if (!ok)
        goto out; /* bad input first: a clear error whatever our role */
    rc = 0;
    if (!read_allowed(s, req, h)) {
        cairn__kv_keys__free_unpacked(kk, NULL);
        return;
    }
    for (n = 0; n < kk->n_keys; n++) {
        size_t len = 0;
        uint64_t ver = 0;

        cairn__kv_entry__init(&ents[n]);
        rc = dn_kv_get(s->cfg.kv, h->shard, kk->keys[n].data, kk->keys[n].len, &vals[n], &len,
                       &ver);
        if (rc == CAIRN_ENOENT)
            rc = 0;
        if (rc)
            goto out;
        ents[n].key = kk->keys[n];
        ents[n].value.data = vals[n];
        ents[n].value.len = len;
        ents[n].version = ver;
        ptrs[n] = &ents[n];
    }
    res.entries = ptrs;
    res.n_entries = n;
    need = cairn__kv_scan_result__get_packed_size(&res);
    cap = CAIRN_MIN(tp_req_buf_len(req) - TP_HDR_SLOT, h->reply_cap);
    if (need > cap) {
        resp.payload_needed = (uint32_t)need;
        rc = CAIRN_ETOOBIG;
        goto out;
    }
    need = cairn__kv_scan_result__pack(&res, tp_req_payload(req)); /* the keys were copied */
    resp.epoch = dn_shards_epoch(s);
    for (size_t i = 0; i < n; i++)
        free(vals[i]);
    cairn__kv_keys__free_unpacked(kk, NULL);
    tp_reply(req, &resp, tp_req_payload(req), (uint32_t)need, NULL, NULL);
    return;
out:
    for (size_t i = 0; i <= n && i < KV_MGET_MAX; i++)
        free(vals[i]);
    if (kk)
        cairn__kv_keys__free_unpacked(kk, NULL);
    resp.status = rc;
    resp.epoch = dn_shards_epoch(s);
    tp_reply(req, &resp, NULL, 0, NULL, NULL);
}

static void kv_scan(struct dn_shards *s, struct tp_req *req, const Cairn__Request *h)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;
    Cairn__KvScanResult res = CAIRN__KV_SCAN_RESULT__INIT;
    Cairn__KvEntry *ents = NULL, **ptrs = NULL;
    struct dn_kv_scan scan = {0};
    size_t n, cap;
    int rc;

    if (!read_allowed(s, req, h))
        return;
    rc = dn_kv_scan(s->cfg.kv, h->shard, h->key.data, h->key.len, h->end_key.data,
                    h->end_key.len, h->limit, &scan);
    if (rc)
        goto out;
    ents = calloc(scan.count ? scan.count : 1, sizeof(*ents));
    ptrs = calloc(scan.count ? scan.count : 1, sizeof(*ptrs));
    if (!ents || !ptrs) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < scan.count; i++) {
        cairn__kv_entry__init(&ents[i]);
        ents[i].key.data = (uint8_t *)scan.entries[i].key;
        ents[i].key.len = scan.entries[i].key_len;
        ents[i].value.data = (uint8_t *)scan.entries[i].val;
        ents[i].value.len = scan.entries[i].val_len;
        ents[i].version = scan.entries[i].version;
        ptrs[i] = &ents[i];
    }
    res.entries = ptrs;
    res.more = scan.more;
    /* The result must fit one reply payload and the buffer the caller posted for it: drop
     * entries from the tail and say "more". */
    cap = CAIRN_MIN(tp_req_buf_len(req) - TP_HDR_SLOT, h->reply_cap);
    for (n = scan.count; n > 0; n--) {
        res.n_entries = n;
        if (cairn__kv_scan_result__get_packed_size(&res) <= cap)
            break;
        res.more = 1;
    }
    res.n_entries = n;
    n = cairn__kv_scan_result__pack(&res, tp_req_payload(req));
    resp.status = 0;
    resp.epoch = dn_shards_epoch(s);
    free(ents);
    free(ptrs);
    dn_kv_scan_free(&scan);
    tp_reply(req, &resp, tp_req_payload(req), (uint32_t)n, NULL, NULL);
    return;
out:
    free(ents);
    free(ptrs);
    dn_kv_scan_free(&scan);
    reply(s, req, rc, 0);
}

static void map_get(struct dn_shards *s, struct tp_req *req)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;

    resp.epoch = dn_shards_epoch(s);
    if (!s->map) {
        resp.status = CAIRN_ENOENT;
        tp_reply(req, &resp, NULL, 0, NULL, NULL);
        return;
    }
    if (s->map_len > tp_req_buf_len(req) - TP_HDR_SLOT) {
        resp.status = CAIRN_ETOOBIG;
        tp_reply(req, &resp, NULL, 0, NULL, NULL);
        return;
    }
    memcpy(tp_req_payload(req), s->map_buf, s->map_len);
    tp_reply(req, &resp, tp_req_payload(req), (uint32_t)s->map_len, NULL, NULL);
}

static void map_set(struct dn_shards *s, struct tp_req *req, const Cairn__Request *h)
{
    int rc = 0;

    /* Only a first map: after that, maps change only through the map group. */
    if (s->map)
        rc = CAIRN_EEXIST;
    else if (!map_install(s, tp_req_payload(req), h->payload_len, "MAP_SET"))
        rc = CAIRN_EINVAL;
    else if (map_node_index(s->map, s->cfg.self) < 0)
        log_warn(TAG, "the map does not name this D-node (%016llx)",
                 (unsigned long long)s->cfg.self);
    reply(s, req, rc, 0);
}

bool dn_shards_serve(struct dn_shards *s, struct tp_req *req)
{
    const Cairn__Request *h = tp_req_hdr(req);

    switch (h->op) {
    case CAIRN__OP__OP_RAFT:
        cs_node_recv(s->cs, tp_req_payload(req), h->payload_len);
        reply(s, req, 0, 0);
        return true;
    case CAIRN__OP__OP_KV_PUT:
    case CAIRN__OP__OP_KV_DEL:
        kv_write(s, req, h);
        return true;
    case CAIRN__OP__OP_KV_TXN:
        kv_txn(s, req, h);
        return true;
    case CAIRN__OP__OP_KV_GET:
        if (h->barrier)
            kv_barrier_get(s, req, h);
        else
            kv_get(s, req, h);
        return true;
    case CAIRN__OP__OP_KV_SCAN:
        kv_scan(s, req, h);
        return true;
    case CAIRN__OP__OP_KV_MGET:
        kv_mget(s, req, h);
        return true;
    case CAIRN__OP__OP_MAP_GET:
        map_get(s, req);
        return true;
    case CAIRN__OP__OP_MAP_SET:
        map_set(s, req, h);
        return true;
    default:
        return false;
    }
}

/* ---- timers ---- */

struct map_poll {
    struct dn_shards *s;
    void *buf;
    uint32_t cap;
};

static void map_polled(void *arg, int status, const Cairn__Response *resp)
{
    struct map_poll *p = arg;

    p->s->polling = false;
    if (status == 0 && resp->status == 0 && resp->payload_len)
        map_install(p->s, p->buf, resp->payload_len, "the map group");
    free(p->buf);
    free(p);
}

/* Ask a map group member (any other node if we hold no map) for the newest map. */
static void map_poll(struct dn_shards *s)
{
    Cairn__Request req = CAIRN__REQUEST__INIT;
    struct map_poll *p;
    uint64_t to = 0;
    struct peer *peer;

    if (!s->map || s->polling)
        return;
    size_t n = s->map->n_map_group;
    size_t start = (size_t)(now_ms() / DN_MAP_POLL_MS);
    for (size_t i = 0; i < n && !to; i++) {
        uint64_t id = s->map->map_group[(start + i) % n];
        if (id != s->cfg.self)
            to = id;
    }
    if (!to || !(peer = peer_of(s, to)))
        return;
    if (!peer->resolved) {
        const char *addr = addr_of(s, to);
        if (!addr || tp_peer_add(s->cfg.tp, addr, &peer->fi) != 0)
            return;
        peer->resolved = true;
    }
    p = calloc(1, sizeof *p);
    if (!p)
        return;
    p->s = s;
    p->cap = s->cfg.max_msg;
    p->buf = malloc(p->cap);
    if (!p->buf) {
        free(p);
        return;
    }
    req.op = CAIRN__OP__OP_MAP_GET;
    req.epoch = dn_shards_epoch(s);
    if (tp_call(s->cfg.tp, peer->fi, &req, NULL, 0, p->buf, p->cap, map_polled, p) != 0) {
        free(p->buf);
        free(p);
        return;
    }
    s->polling = true;
}

static void change_done(void *arg, int status)
{
    uint32_t *group = arg;

    if (status)
        log_info(TAG, "group %u: membership change: %s", *group, cairn_strerror(status));
    free(group);
}

/* A leader moves its group's membership one step toward the replicas the map names. */
static void converge(struct dn_shards *s, uint32_t id)
{
    struct cs_group *g = cs_group_find(s->cs, id);
    uint64_t members[CS_MAX_SERVERS];
    unsigned roles[CS_MAX_SERVERS];
    const uint64_t *target;
    size_t nt;
    unsigned nm;
    uint32_t *arg;
    int rc = 0;

    if (!g || cs_group_read_ok(g) != 0)
        return;
    if (id == MAP_GROUP) {
        target = s->map->map_group;
        nt = s->map->n_map_group;
    } else if (id < s->map->shards) {
        target = s->map->place[id]->nodes;
        nt = s->map->place[id]->n_nodes;
    } else {
        return;
    }
    nm = cs_group_members(g, members, roles, CS_MAX_SERVERS);
    if (nm > CS_MAX_SERVERS)
        return;
    arg = malloc(sizeof *arg);
    if (!arg)
        return;
    *arg = id;
    for (size_t i = 0; i < nt; i++) {
        if (!ids_have(members, nm, target[i])) {
            rc = cs_group_add(g, target[i], change_done, arg);
            goto started;
        }
    }
    for (unsigned i = 0; i < nm; i++) {
        if (ids_have(target, nt, members[i]) && roles[i] != CS_VOTER) {
            rc = cs_group_assign(g, members[i], CS_VOTER, change_done, arg);
            goto started;
        }
    }
    for (unsigned i = 0; i < nm; i++) {
        if (!ids_have(target, nt, members[i])) {
            rc = cs_group_remove(g, members[i], change_done, arg);
            goto started;
        }
    }
    free(arg);
    return;
started:
    if (rc)
        free(arg); /* a change in progress, or no longer leader: next time */
    else
        log_info(TAG, "group %u: moving its membership toward map epoch %llu", id,
                 (unsigned long long)s->map->epoch);
}

/* The map group's first leader writes the first map into it (the group starts empty). */
static void map_record_seed(struct dn_shards *s)
{
    struct cs_group *g = cs_group_find(s->cs, MAP_GROUP);
    Cairn__KvOp op = CAIRN__KV_OP__INIT;
    void *val = NULL;
    size_t len = 0;
    uint64_t ver;
    uint8_t *cmd;

    if (!g || cs_group_read_ok(g) != 0)
        return;
    if (dn_kv_get(s->cfg.kv, MAP_GROUP, MAP_KEY, strlen(MAP_KEY), &val, &len, &ver) !=
        CAIRN_ENOENT) {
        free(val);
        return;
    }
    op.op = CAIRN__OP__OP_KV_PUT;
    op.key.data = (uint8_t *)MAP_KEY;
    op.key.len = strlen(MAP_KEY);
    op.value.data = s->map_buf;
    op.value.len = s->map_len;
    op.expect = KV_ABSENT;
    len = cairn__kv_op__get_packed_size(&op);
    cmd = malloc(len);
    if (!cmd)
        return;
    cairn__kv_op__pack(&op, cmd);
    if (cs_propose(g, cmd, len, NULL, NULL) == 0)
        log_info(TAG, "writing map epoch %llu into the map group",
                 (unsigned long long)s->map->epoch);
    free(cmd);
}

void dn_shards_tick(struct dn_shards *s)
{
    uint64_t now = now_ms();

    cs_node_tick(s->cs);
    if (!s->map)
        return;
    if (now >= s->next_poll_ms) {
        s->next_poll_ms = now + DN_MAP_POLL_MS;
        map_poll(s);
    }
    if (now >= s->next_converge_ms) {
        s->next_converge_ms = now + DN_CONVERGE_MS;
        map_record_seed(s);
        for (size_t i = 0; i < s->n_groups; i++)
            converge(s, s->groups[i]);
    }
}

void dn_shards_flush(struct dn_shards *s)
{
    cs_node_flush(s->cs);
    if (s->pending_map) {
        uint8_t *m = s->pending_map;
        size_t len = s->pending_map_len;
        s->pending_map = NULL;
        map_install(s, m, len, "the map group's log");
        free(m);
    }
}

int dn_shards_timeout_ms(struct dn_shards *s)
{
    int t = cs_node_next_tick_ms(s->cs);
    int conv = (int)DN_CONVERGE_MS;

    if (!s->map)
        return t;
    return t < 0 ? conv : CAIRN_MIN(t, conv);
}

/* The replicas the map names for group id (NULL if the map has no such group). */
static const uint64_t *map_target(const struct dn_shards *s, uint32_t id, size_t *n)
{
    if (id == MAP_GROUP) {
        *n = s->map->n_map_group;
        return s->map->map_group;
    }
    if (id < s->map->shards) {
        *n = s->map->place[id]->n_nodes;
        return s->map->place[id]->nodes;
    }
    *n = 0;
    return NULL;
}

void dn_shards_counts(struct dn_shards *s, unsigned *voter, unsigned *moving)
{
    uint64_t members[CS_MAX_SERVERS];
    unsigned roles[CS_MAX_SERVERS];

    *voter = *moving = 0;
    for (size_t i = 0; i < s->n_groups && s->map; i++) {
        struct cs_group *g = cs_group_find(s->cs, s->groups[i]);
        unsigned nm = g ? cs_group_members(g, members, roles, CS_MAX_SERVERS) : 0, voters = 0;
        size_t nt;
        const uint64_t *target = map_target(s, s->groups[i], &nt);
        bool same = target != NULL && nm <= CS_MAX_SERVERS;

        for (unsigned j = 0; j < nm && j < CS_MAX_SERVERS; j++) {
            if (members[j] == s->cfg.self && roles[j] == CS_VOTER)
                (*voter)++;
            if (roles[j] == CS_VOTER) {
                voters++;
                same = same && ids_have(target, nt, members[j]);
            }
        }
        if (g && cs_group_is_leader(g) && (!same || voters != nt))
            (*moving)++;
    }
}

uint64_t dn_shards_epoch(const struct dn_shards *s)
{
    return s->map ? s->map->epoch : 0;
}

/* ---- open / close ---- */

int dn_shards_open(const struct dn_shards_config *cfg, struct dn_shards **out)
{
    struct dn_shards *s = calloc(1, sizeof *s);
    struct cs_host host = {
        .load = h_load,
        .load_done = h_load_done,
        .put_meta = h_put_meta,
        .put_entries = h_put_entries,
        .drop_entries = h_drop_entries,
        .commit = h_commit,
        .apply = h_apply,
        .result_free = h_result_free,
        .dump = h_dump,
        .install = h_install,
        .send = h_send,
        .now_ms = h_now,
    };
    struct cs_config ccfg = {0};
    void *buf = NULL;
    size_t len = 0;
    int rc;

    if (!s)
        return CAIRN_ENOMEM;
    s->cfg = *cfg;
    host.arg = s;
    ccfg.self = cfg->self;
    ccfg.election_ms = cfg->election_ms;
    ccfg.heartbeat_ms = cfg->heartbeat_ms;
    ccfg.max_msg = cfg->max_msg;
    rc = cs_node_create(&ccfg, &host, &s->cs);
    if (rc) {
        free(s);
        return rc;
    }
    rc = dn_kv_node_get(cfg->kv, &buf, &len);
    if (rc == 0) {
        if (!map_install(s, buf, len, "the local store"))
            log_error(TAG, "the stored cluster map is not valid: waiting for a new one");
        free(buf);
    } else if (rc != CAIRN_ENOENT) {
        dn_shards_free(s);
        return rc;
    }
    /* Opening groups wrote nothing that needs a commit before anyone asks, but the round
     * starts clean. */
    cs_node_flush(s->cs);
    *out = s;
    return 0;
}

void dn_shards_close(struct dn_shards *s)
{
    if (!s)
        return;
    cs_node_destroy(s->cs);
    s->cs = NULL;
}

void dn_shards_free(struct dn_shards *s)
{
    if (!s)
        return;
    cs_node_destroy(s->cs); /* a no-op after dn_shards_close */
    if (s->map)
        cairn__cluster_map__free_unpacked(s->map, NULL);
    free(s->map_buf);
    free(s->pending_map);
    free(s->peers);
    free(s->groups);
    free(s);
}
