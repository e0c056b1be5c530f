/*
 * cluster.c - a view of the cluster: D-node list, placement keys, health, calls (see
 * cluster.h).
 */
#include "client/cluster.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/cairn.h"
#include "common/clock.h"
#include "common/log.h"
#include "client/placement.h"

#define TAG "cluster"
#define MAX_CODECS 8

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

struct cl_cluster {
    struct tp_ctx *tp;
    unsigned n;
    char **addrs;   /* owned */
    uint64_t *peers; /* transport peer handles, by D-node index */
    uint64_t *keys;  /* placement keys, by D-node index */
    uint64_t *down_until; /* ms clock: D-node considered down until then */
    unsigned *slot;       /* its shared_down_until slot */
    uint64_t *ids;        /* D-node ids from the map, by index (0 before a map) */
    uint64_t *rechecked;  /* ms clock of the last cl_cluster_recheck, by index */
    Cairn__ClusterMap *map; /* owned; NULL before a map */
    int32_t *leader;      /* per shard: D-node index that last led it, -1 unknown */
    struct ec_layout layout;
    unsigned depth;
    unsigned min_frags;
    uint32_t leader_wait_ms;
    uint64_t session;  /* this view's writer session on the D-nodes (random, never 0) */
    uint64_t seq;      /* its last update number */
    unsigned last_voter_groups; /* from the last cl_cluster_ping that succeeded */
    unsigned last_moving_groups;
    int map_leader;             /* the map group's leader hint (-1: unknown) */
    struct {
        uint32_t k, m;
        struct ec_codec *c;
    } codecs[MAX_CODECS];
    unsigned ncodecs;
};

static void note_status(struct cl_cluster *cl, unsigned i, int transport_status);

/* ---- cluster ---- */

static void free_addrs(struct cl_cluster *cl)
{
    for (unsigned i = 0; i < cl->n; i++)
        free(cl->addrs[i]);
    free(cl->addrs);
}

/* Everything the view keeps per D-node and per shard (the map's), freed together. */
static void nodes_free(struct cl_cluster *cl)
{
    free_addrs(cl);
    free(cl->peers);
    free(cl->keys);
    free(cl->down_until);
    free(cl->slot);
    free(cl->ids);
    free(cl->rechecked);
    free(cl->leader);
    if (cl->map)
        cairn__cluster_map__free_unpacked(cl->map, NULL);
}

static int parse_dnodes(struct cl_cluster *cl, const char *list)
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
        if (cl->n == CL_MAX_DNODES)
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

struct ec_codec *cl_cluster_codec(struct cl_cluster *cl, uint32_t k, uint32_t m)
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

static int fetch_map(struct cl_cluster *cl, const unsigned *nodes, unsigned n, uint8_t **buf,
                     size_t *len);
static int adopt(struct cl_cluster *cl, const uint8_t *buf, size_t len, bool first);

int cl_cluster_open(const struct cl_cluster_config *cfg, struct cl_cluster **out)
{
    struct tp_config tcfg = {0};
    struct cl_cluster *cl;
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
    cl->depth = cfg->depth ? cfg->depth : CL_DEFAULT_DEPTH;
    cl->min_frags = cfg->min_frags ? cfg->min_frags : cfg->k + 1;
    if (cl->min_frags < cfg->k)
        cl->min_frags = cfg->k;
    if (cl->min_frags > cfg->k + cfg->m)
        cl->min_frags = cfg->k + cfg->m;
    cl->leader_wait_ms = cfg->leader_wait_ms ? cfg->leader_wait_ms : CL_DEFAULT_LEADER_WAIT_MS;
    cl->map_leader = -1;
    /* A session id nobody else has: the shards tell its retries apart by it. */
    while (!cl->session)
        if (getrandom(&cl->session, sizeof cl->session, 0) != sizeof cl->session)
            cl->session = cairn_mix64((uint64_t)cairn_wall_ns() ^ (uint64_t)(uintptr_t)cl);
    if (!cl_cluster_codec(cl, cfg->k, cfg->m)) {
        rc = CAIRN_ENOMEM;
        goto err;
    }
    cl->peers = calloc(cl->n, sizeof(*cl->peers));
    cl->keys = calloc(cl->n, sizeof(*cl->keys));
    cl->down_until = calloc(cl->n, sizeof(*cl->down_until));
    cl->slot = calloc(cl->n, sizeof(*cl->slot));
    cl->rechecked = calloc(cl->n, sizeof(*cl->rechecked));
    if (!cl->peers || !cl->keys || !cl->down_until || !cl->slot || !cl->rechecked) {
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
        cl->keys[i] = cl_node_key(cl->addrs[i]);
        cl->slot[i] = shared_slot(cl->addrs[i]);
    }
    if (!cfg->no_map) {
        unsigned *all = calloc(cl->n, sizeof *all);
        uint8_t *buf = NULL;
        size_t len = 0;

        if (!all) {
            rc = CAIRN_ENOMEM;
            goto err;
        }
        for (unsigned i = 0; i < cl->n; i++)
            all[i] = i;
        /* D-nodes that are starting (or busy electing) may not answer the first time. */
        for (uint64_t until = cairn_now_ms() + cl->leader_wait_ms;;) {
            rc = fetch_map(cl, all, cl->n, &buf, &len);
            if (rc != CAIRN_EUNREACH || cairn_now_ms() >= until)
                break;
        }
        free(all);
        if (!rc)
            rc = adopt(cl, buf, len, true);
        free(buf);
        if (rc) {
            if (rc == CAIRN_ENOENT)
                log_error(TAG, "no D-node holds a cluster map: create the cluster first "
                               "(cairnctl map init)");
            goto err;
        }
    }
    *out = cl;
    return 0;
err:
    cl_cluster_close(cl);
    return rc;
}

void cl_cluster_close(struct cl_cluster *cl)
{
    if (!cl)
        return;
    tp_ctx_destroy(cl->tp);
    for (unsigned i = 0; i < cl->ncodecs; i++)
        ec_codec_destroy(cl->codecs[i].c);
    nodes_free(cl);
    free(cl);
}

unsigned cl_cluster_dnodes(const struct cl_cluster *cl)
{
    return cl->n;
}

const char *cl_cluster_dnode_addr(const struct cl_cluster *cl, unsigned i)
{
    return i < cl->n ? cl->addrs[i] : NULL;
}

const struct ec_layout *cl_cluster_layout(const struct cl_cluster *cl)
{
    return &cl->layout;
}

unsigned cl_cluster_depth(const struct cl_cluster *cl)
{
    return cl->depth;
}

struct tp_ctx *cl_cluster_tp(struct cl_cluster *cl)
{
    return cl->tp;
}

/* One call to D-node i, waited for; its transport status noted.  Returns the transport's error
 * or the D-node's answer status; s is the caller's to tp_sync_fini() whatever the result. */
static int sync_call(struct cl_cluster *cl, unsigned i, Cairn__Request *req, void *resp_buf,
                     uint32_t resp_cap, struct tp_sync *s)
{
    int rc;

    memset(s, 0, sizeof(*s));
    if (i >= cl->n)
        return CAIRN_EINVAL;
    rc = tp_call_sync(cl->tp, cl->peers[i], req, NULL, 0, resp_buf, resp_cap, s);
    if (rc)
        return rc;
    note_status(cl, i, s->status);
    return s->status ? s->status : s->resp->status;
}

int cl_cluster_ping_stats(struct cl_cluster *cl, unsigned i, struct cl_node_stats *out)
{
    Cairn__Request req = CAIRN__REQUEST__INIT;
    struct tp_sync s;
    int rc;

    req.op = CAIRN__OP__OP_PING;
    rc = sync_call(cl, i, &req, NULL, 0, &s);
    if (!rc) {
        *out = (struct cl_node_stats){
            .dev_size = s.resp->dev_size,
            .dev_used = s.resp->dev_used,
            .frags = s.resp->frag_count,
            .scrub_passes = s.resp->scrub_passes,
            .scrub_bytes = s.resp->scrub_bytes,
            .scrub_bad = s.resp->scrub_bad,
            .scrub_pos = s.resp->scrub_pos,
            .scrub_of = s.resp->scrub_of,
        };
        cl->last_voter_groups = s.resp->voter_groups;
        cl->last_moving_groups = s.resp->moving_groups;
    }
    tp_sync_fini(&s);
    return rc;
}

int cl_cluster_ping(struct cl_cluster *cl, unsigned i, uint64_t *dev_size, uint64_t *dev_used,
                    uint64_t *frags)
{
    struct cl_node_stats ns;
    int rc = cl_cluster_ping_stats(cl, i, &ns);

    if (!rc) {
        if (dev_size)
            *dev_size = ns.dev_size;
        if (dev_used)
            *dev_used = ns.dev_used;
        if (frags)
            *frags = ns.frags;
    }
    return rc;
}

int cl_cluster_frag_del(struct cl_cluster *cl, unsigned i, uint64_t stripe, uint32_t gen,
                        uint32_t index)
{
    Cairn__Request req = CAIRN__REQUEST__INIT;
    Cairn__FragId fid = CAIRN__FRAG_ID__INIT;
    struct tp_sync s;
    int rc;

    fid.stripe = stripe;
    fid.gen = gen;
    fid.index = index;
    req.op = CAIRN__OP__OP_FRAG_DEL;
    req.frag = &fid;
    rc = sync_call(cl, i, &req, NULL, 0, &s);
    tp_sync_fini(&s);
    return rc;
}

#define FRAG_LIST_BUF (256u << 10) /* room for a page of about 4,000 fragments */

int cl_cluster_frag_list(struct cl_cluster *cl, unsigned i, uint64_t cursor, bool bad_only,
                         Cairn__FragList **out)
{
    Cairn__Request req = CAIRN__REQUEST__INIT;
    struct tp_sync s;
    void *buf;
    int rc;

    *out = NULL;
    if (!(buf = malloc(FRAG_LIST_BUF)))
        return CAIRN_ENOMEM;
    req.op = CAIRN__OP__OP_FRAG_LIST;
    req.cursor = cursor;
    req.bad_only = bad_only;
    rc = sync_call(cl, i, &req, buf, FRAG_LIST_BUF, &s);
    if (!rc) {
        *out = cairn__frag_list__unpack(NULL, s.resp->payload_len, buf);
        if (!*out)
            rc = CAIRN_EPROTO;
    }
    tp_sync_fini(&s);
    free(buf);
    return rc;
}

unsigned cl_cluster_last_voter_groups(const struct cl_cluster *cl)
{
    return cl->last_voter_groups;
}

unsigned cl_cluster_last_moving_groups(const struct cl_cluster *cl)
{
    return cl->last_moving_groups;
}

static bool node_down(const struct cl_cluster *cl, unsigned i)
{
    uint64_t until = atomic_load_explicit(&shared_down_until[cl->slot[i]], memory_order_relaxed);

    if (cl->down_until[i] > until)
        until = cl->down_until[i];
    return until && cairn_now_ms() < until;
}

bool cl_cluster_node_down(const struct cl_cluster *cl, unsigned i)
{
    return i < cl->n && node_down(cl, i);
}

bool cl_cluster_recheck(struct cl_cluster *cl, unsigned i)
{
    uint64_t now = cairn_now_ms();

    if (i >= cl->n || !node_down(cl, i))
        return true;
    if (now < cl->rechecked[i] + CL_RECHECK_MS)
        return false;
    cl->rechecked[i] = now;
    /* Per view: each has its own endpoint, and after a D-node restarts the first message on
     * an endpoint's old connection to it can be lost (tcp;ofi_rxm); the second gets through. */
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = cl_cluster_ping(cl, i, NULL, NULL, NULL); /* an answer clears the mark */

        if (rc != CAIRN_ETIMEDOUT)
            return rc == 0;
    }
    return false;
}

void cl_cluster_note(struct cl_cluster *cl, unsigned i, int transport_status)
{
    if (i < cl->n)
        note_status(cl, i, transport_status);
}

int cl_cluster_place(const struct cl_cluster *cl, uint64_t item, unsigned n, unsigned *nodes)
{
    return cl_place(item, cl->keys, cl->n, n, nodes);
}

int cl_cluster_order(const struct cl_cluster *cl, uint64_t item, unsigned *nodes)
{
    return cl_place(item, cl->keys, cl->n, cl->n, nodes);
}

int cl_cluster_call(struct cl_cluster *cl, unsigned node, Cairn__Request *req,
                    const void *payload, uint32_t len, void *resp_buf, uint32_t resp_cap,
                    tp_call_cb cb, void *arg)
{
    if (node >= cl->n)
        return CAIRN_EINVAL;
    req->epoch = cl->map ? cl->map->epoch : 0;
    return tp_call(cl->tp, cl->peers[node], req, payload, len, resp_buf, resp_cap, cb, arg);
}

/* Remember a D-node that did not answer (transport-level failure, not a refusal). */
static void note_status(struct cl_cluster *cl, unsigned i, int transport_status)
{
    if (transport_status == CAIRN_ETIMEDOUT || transport_status == CAIRN_EUNREACH) {
        if (!node_down(cl, i))
            log_warn(TAG, "D-node %s is not answering: %s; skipping it for %u s", cl->addrs[i],
                     cairn_strerror(transport_status), CL_DOWN_MS / 1000);
        cl->down_until[i] = cairn_now_ms() + CL_DOWN_MS;
        atomic_store_explicit(&shared_down_until[cl->slot[i]], cl->down_until[i],
                              memory_order_relaxed);
    } else if (transport_status == 0) {
        cl->down_until[i] = 0;
        atomic_store_explicit(&shared_down_until[cl->slot[i]], 0, memory_order_relaxed);
    }
}

struct probe {
    struct cl_cluster *cl;
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

unsigned cl_cluster_probe(struct cl_cluster *cl)
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

/* ---- the cluster map ---- */

const Cairn__ClusterMap *cl_cluster_map(const struct cl_cluster *cl)
{
    return cl->map;
}

uint64_t cl_cluster_epoch(const struct cl_cluster *cl)
{
    return cl->map ? cl->map->epoch : 0;
}

uint32_t cl_cluster_shards(const struct cl_cluster *cl)
{
    return cl->map ? cl->map->shards : 0;
}

int cl_cluster_node_index(const struct cl_cluster *cl, uint64_t id)
{
    for (unsigned i = 0; i < cl->n; i++)
        if (cl->ids[i] == id)
            return (int)i;
    return -1;
}

uint64_t cl_cluster_node_id(const struct cl_cluster *cl, unsigned i)
{
    return i < cl->n && cl->ids ? cl->ids[i] : 0;
}

/* D-node i's map entry, or NULL (no map, or not in it). */
static const Cairn__MapNode *map_node(const struct cl_cluster *cl, unsigned i)
{
    return cl->map && i < cl->map->n_nodes ? cl->map->nodes[i] : NULL;
}

bool cl_cluster_node_placeable(const struct cl_cluster *cl, unsigned i)
{
    const Cairn__MapNode *m = map_node(cl, i);

    return i < cl->n && (!m || m->state == CAIRN__NODE_STATE__NODE_UP);
}

bool cl_cluster_node_member(const struct cl_cluster *cl, unsigned i)
{
    const Cairn__MapNode *m = map_node(cl, i);

    return i < cl->n && (!m || m->state == CAIRN__NODE_STATE__NODE_UP ||
                         m->state == CAIRN__NODE_STATE__NODE_DOWN);
}

const char *cl_cluster_node_domain(const struct cl_cluster *cl, unsigned i)
{
    const Cairn__MapNode *m = map_node(cl, i);

    if (m && m->host && *m->host)
        return m->host;
    return i < cl->n ? cl->addrs[i] : "";
}

unsigned cl_cluster_min_frags(const struct cl_cluster *cl)
{
    return cl->min_frags;
}

unsigned cl_cluster_shard_nodes(const struct cl_cluster *cl, uint32_t shard, unsigned *nodes)
{
    const Cairn__ShardPlace *p;
    unsigned n = 0;

    if (!cl->map)
        return 0;
    if (shard == MAP_GROUP) {
        for (size_t i = 0; i < cl->map->n_map_group && n < MAP_MAX_REPLICAS; i++) {
            int idx = cl_cluster_node_index(cl, cl->map->map_group[i]);

            if (idx >= 0)
                nodes[n++] = (unsigned)idx;
        }
        return n;
    }
    if (shard >= cl->map->shards)
        return 0;
    p = cl->map->place[shard];
    for (size_t i = 0; i < p->n_nodes && n < MAP_MAX_REPLICAS; i++) {
        int idx = cl_cluster_node_index(cl, p->nodes[i]);

        if (idx >= 0)
            nodes[n++] = (unsigned)idx;
    }
    return n;
}

uint32_t cl_cluster_leader_wait_ms(const struct cl_cluster *cl)
{
    return cl->leader_wait_ms;
}

uint64_t cl_cluster_session(const struct cl_cluster *cl)
{
    return cl->session;
}

uint64_t cl_cluster_next_seq(struct cl_cluster *cl)
{
    return ++cl->seq;
}

int cl_cluster_leader_hint(const struct cl_cluster *cl, uint32_t shard)
{
    if (shard == MAP_GROUP)
        return cl->map_leader;
    if (!cl->map || shard >= cl->map->shards)
        return -1;
    return cl->leader[shard];
}

void cl_cluster_set_leader_hint(struct cl_cluster *cl, uint32_t shard, int node)
{
    int v = node >= 0 && (unsigned)node < cl->n ? node : -1;

    if (shard == MAP_GROUP)
        cl->map_leader = v;
    else if (cl->map && shard < cl->map->shards)
        cl->leader[shard] = v;
}

struct map_call {
    unsigned *outstanding;
    int status;
    uint64_t epoch;
    uint32_t len;
    uint8_t *buf;
};

static void map_call_done(void *arg, int status, const Cairn__Response *resp)
{
    struct map_call *c = arg;

    c->status = status ? status : resp->status;
    if (!c->status) {
        c->epoch = resp->epoch;
        c->len = resp->payload_len;
    }
    (*c->outstanding)--;
}

/* Ask the given D-nodes for their maps at once; *buf gets the newest that decodes (the
 * caller frees it).  Returns 0, CAIRN_ENOENT (those that answered hold none),
 * CAIRN_EUNREACH (none answered), CAIRN_ENOMEM. */
static int fetch_map(struct cl_cluster *cl, const unsigned *nodes, unsigned n, uint8_t **buf,
                     size_t *len)
{
    uint32_t cap = tp_ctx_max_payload(cl->tp);
    struct map_call *calls = calloc(n, sizeof *calls);
    unsigned outstanding = 0, answered = 0;
    uint64_t best_epoch = 0;
    int best = -1, rc;

    *buf = NULL;
    if (!calls)
        return CAIRN_ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        Cairn__Request req = CAIRN__REQUEST__INIT;

        calls[i] = (struct map_call){.outstanding = &outstanding, .status = CAIRN_ECANCELED,
                                     .buf = malloc(cap)};
        if (!calls[i].buf)
            continue;
        req.op = CAIRN__OP__OP_MAP_GET;
        outstanding++;
        rc = tp_call(cl->tp, cl->peers[nodes[i]], &req, NULL, 0, calls[i].buf, cap,
                     map_call_done, &calls[i]);
        if (rc) {
            outstanding--;
            calls[i].status = rc;
        }
    }
    while (outstanding)
        tp_ctx_wait(cl->tp, 1000);
    for (unsigned i = 0; i < n; i++) {
        Cairn__ClusterMap *m;

        note_status(cl, nodes[i], calls[i].status == CAIRN_ENOENT ? 0 : calls[i].status);
        if (calls[i].status == 0 || calls[i].status == CAIRN_ENOENT)
            answered++;
        if (calls[i].status)
            continue;
        m = map_decode(calls[i].buf, calls[i].len);
        if (!m) {
            log_warn(TAG, "D-node %s sent a map that does not check", cl->addrs[nodes[i]]);
            continue;
        }
        if (m->epoch > best_epoch) {
            best_epoch = m->epoch;
            best = (int)i;
        }
        cairn__cluster_map__free_unpacked(m, NULL);
    }
    rc = best >= 0 ? 0 : answered ? CAIRN_ENOENT : CAIRN_EUNREACH;
    if (best >= 0) {
        *buf = calls[best].buf;
        *len = calls[best].len;
        calls[best].buf = NULL;
    }
    for (unsigned i = 0; i < n; i++)
        free(calls[i].buf);
    free(calls);
    return rc;
}

/* Make the map in buf the view's: its D-nodes (first: exactly the map's; later: the view's
 * list must be a prefix of the map's, new D-nodes are appended), their ids, the shards. */
static int adopt(struct cl_cluster *cl, const uint8_t *buf, size_t len, bool first)
{
    Cairn__ClusterMap *m = map_decode(buf, len);
    unsigned n;
    char **addrs = NULL;
    uint64_t *peers = NULL, *keys = NULL, *down = NULL, *ids = NULL, *rechecked = NULL;
    unsigned *slot = NULL;
    int32_t *leader = NULL;
    int rc = CAIRN_ENOMEM;

    if (!m)
        return CAIRN_EINVAL;
    if (cl->map && m->epoch <= cl->map->epoch) {
        cairn__cluster_map__free_unpacked(m, NULL);
        return 0;
    }
    n = (unsigned)m->n_nodes;
    if (n < cl->layout.k + cl->layout.m) {
        log_error(TAG, "the cluster map names %u D-nodes: too few for %u+%u stripes", n,
                  cl->layout.k, cl->layout.m);
        rc = CAIRN_EINVAL;
        goto out;
    }
    if (!first) {
        bool prefix = n >= cl->n;

        for (unsigned i = 0; prefix && i < cl->n; i++)
            prefix = strcmp(cl->addrs[i], m->nodes[i]->addr) == 0;
        if (!prefix) {
            log_error(TAG, "cluster map epoch %llu drops or reorders D-nodes; keeping epoch %llu",
                      (unsigned long long)m->epoch, (unsigned long long)cl->map->epoch);
            rc = CAIRN_EINVAL;
            goto out;
        }
    }
    addrs = calloc(n, sizeof *addrs);
    peers = calloc(n, sizeof *peers);
    keys = calloc(n, sizeof *keys);
    down = calloc(n, sizeof *down);
    ids = calloc(n, sizeof *ids);
    slot = calloc(n, sizeof *slot);
    rechecked = calloc(n, sizeof *rechecked);
    leader = malloc(m->shards * sizeof *leader);
    if (!addrs || !peers || !keys || !down || !ids || !slot || !rechecked || !leader)
        goto out;
    for (uint32_t s = 0; s < m->shards; s++)
        leader[s] = -1;
    if (cl->map && cl->map->shards == m->shards)
        memcpy(leader, cl->leader, m->shards * sizeof *leader);
    for (unsigned i = 0; i < n; i++) {
        const char *a = m->nodes[i]->addr;
        unsigned j;

        addrs[i] = strdup(a);
        if (!addrs[i])
            goto out;
        for (j = 0; j < cl->n && strcmp(cl->addrs[j], a) != 0; j++)
            ;
        if (j < cl->n) { /* known already: same endpoint, same health */
            peers[i] = cl->peers[j];
            down[i] = cl->down_until[j];
        } else if ((rc = tp_peer_add(cl->tp, a, &peers[i])) != 0) {
            log_error(TAG, "D-node address %s: %s", a, cairn_strerror(rc));
            goto out;
        }
        keys[i] = cl_node_key(a);
        slot[i] = shared_slot(a);
        ids[i] = m->nodes[i]->id;
    }
    if (cl->map && cl->map->epoch != m->epoch)
        log_info(TAG, "cluster map epoch %llu -> %llu", (unsigned long long)cl->map->epoch,
                 (unsigned long long)m->epoch);
    nodes_free(cl); /* then swap in */
    cl->addrs = addrs;
    cl->rechecked = rechecked;
    cl->n = n;
    cl->peers = peers;
    cl->keys = keys;
    cl->down_until = down;
    cl->slot = slot;
    cl->ids = ids;
    cl->leader = leader;
    cl->map_leader = -1;
    cl->map = m;
    return 0;
out:
    if (addrs)
        for (unsigned i = 0; i < n; i++)
            free(addrs[i]);
    free(addrs);
    free(peers);
    free(keys);
    free(down);
    free(ids);
    free(slot);
    free(rechecked);
    free(leader);
    cairn__cluster_map__free_unpacked(m, NULL);
    return rc;
}

int cl_cluster_refresh(struct cl_cluster *cl)
{
    unsigned nodes[MAP_MAX_REPLICAS], n = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    if (!cl->map)
        return CAIRN_EINVAL;
    /* The map group's members apply every new map first. */
    for (size_t i = 0; i < cl->map->n_map_group && n < MAP_MAX_REPLICAS; i++) {
        int idx = cl_cluster_node_index(cl, cl->map->map_group[i]);

        if (idx >= 0)
            nodes[n++] = (unsigned)idx;
    }
    rc = fetch_map(cl, nodes, n, &buf, &len);
    if (!rc)
        rc = adopt(cl, buf, len, false);
    free(buf);
    return rc;
}

int cl_cluster_probe_addr(struct cl_cluster *cl, const char *addr, uint64_t *id, char *domain,
                          size_t cap)
{
    Cairn__Request req = CAIRN__REQUEST__INIT;
    struct tp_sync sy = {0};
    uint64_t peer;
    int rc = tp_peer_add(cl->tp, addr, &peer);

    if (rc)
        return rc;
    req.op = CAIRN__OP__OP_PING;
    rc = tp_call_sync(cl->tp, peer, &req, NULL, 0, NULL, 0, &sy);
    if (!rc)
        rc = sy.status ? sy.status : sy.resp->status;
    if (!rc) {
        *id = sy.resp->node_id;
        snprintf(domain, cap, "%s", sy.resp->domain ? sy.resp->domain : "");
        if (!*id)
            rc = CAIRN_EPROTO;
    }
    tp_sync_fini(&sy);
    return rc;
}

int cl_cluster_give_map(struct cl_cluster *cl, const char *addr)
{
    Cairn__Request req = CAIRN__REQUEST__INIT;
    struct tp_sync sy = {0};
    uint64_t peer;
    uint8_t *buf;
    size_t len;
    int rc;

    if (!cl->map)
        return CAIRN_ENOENT;
    rc = tp_peer_add(cl->tp, addr, &peer);
    if (rc)
        return rc;
    len = cairn__cluster_map__get_packed_size(cl->map);
    buf = malloc(len ? len : 1);
    if (!buf)
        return CAIRN_ENOMEM;
    cairn__cluster_map__pack(cl->map, buf);
    req.op = CAIRN__OP__OP_MAP_SET;
    rc = tp_call_sync(cl->tp, peer, &req, buf, (uint32_t)len, NULL, 0, &sy);
    if (!rc)
        rc = sy.status ? sy.status : sy.resp->status;
    tp_sync_fini(&sy);
    free(buf);
    return rc;
}

int cl_cluster_map_init(struct cl_cluster *cl, uint32_t shards)
{
    struct map_node_info *info = calloc(cl->n, sizeof *info);
    Cairn__Response **pings = calloc(cl->n, sizeof *pings);
    struct map_params p = {.k = cl->layout.k, .m = cl->layout.m,
                           .frag_size = cl->layout.frag_size, .shards = shards};
    uint8_t *buf = NULL, *have = NULL;
    size_t len = 0, have_len = 0;
    unsigned *all = calloc(cl->n, sizeof *all);
    int rc = CAIRN_ENOMEM;

    if (!info || !pings || !all)
        goto out;
    for (unsigned i = 0; i < cl->n; i++)
        all[i] = i;
    rc = fetch_map(cl, all, cl->n, &have, &have_len);
    if (rc != CAIRN_ENOENT) {
        if (!rc)
            rc = CAIRN_EEXIST;
        goto out;
    }
    for (unsigned i = 0; i < cl->n; i++) {
        Cairn__Request req = CAIRN__REQUEST__INIT;
        struct tp_sync sy = {0};

        req.op = CAIRN__OP__OP_PING;
        rc = tp_call_sync(cl->tp, cl->peers[i], &req, NULL, 0, NULL, 0, &sy);
        if (!rc)
            rc = sy.status ? sy.status : sy.resp->status;
        if (rc) {
            tp_sync_fini(&sy);
            log_error(TAG, "D-node %s: %s", cl->addrs[i], cairn_strerror(rc));
            rc = CAIRN_EUNREACH;
            goto out;
        }
        pings[i] = sy.resp; /* kept: info points into it */
        info[i] = (struct map_node_info){.id = sy.resp->node_id, .addr = cl->addrs[i],
                                         .host = sy.resp->domain};
    }
    rc = map_build(&p, info, cl->n, &buf, &len);
    if (rc) {
        log_error(TAG, "cannot build a map of these D-nodes: %s", cairn_strerror(rc));
        goto out;
    }
    for (unsigned i = 0; i < cl->n; i++) {
        Cairn__Request req = CAIRN__REQUEST__INIT;
        struct tp_sync sy = {0};

        req.op = CAIRN__OP__OP_MAP_SET;
        rc = tp_call_sync(cl->tp, cl->peers[i], &req, buf, (uint32_t)len, NULL, 0, &sy);
        if (!rc)
            rc = sy.status ? sy.status : sy.resp->status;
        tp_sync_fini(&sy);
        if (rc) {
            log_error(TAG, "giving the map to D-node %s: %s", cl->addrs[i], cairn_strerror(rc));
            goto out;
        }
    }
    rc = adopt(cl, buf, len, true);
out:
    if (pings)
        for (unsigned i = 0; i < cl->n; i++)
            if (pings[i])
                cairn__response__free_unpacked(pings[i], NULL);
    free(pings);
    free(info);
    free(all);
    free(buf);
    free(have);
    return rc;
}
