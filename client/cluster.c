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
#include <time.h>

#include "common/cairn.h"
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
    struct ec_layout layout;
    unsigned depth;
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
    if (!cl_cluster_codec(cl, cfg->k, cfg->m)) {
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
        cl->keys[i] = cl_node_key(cl->addrs[i]);
        cl->slot[i] = shared_slot(cl->addrs[i]);
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
    free(cl->peers);
    free(cl->keys);
    free(cl->down_until);
    free(cl->slot);
    free_addrs(cl);
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

int cl_cluster_ping(struct cl_cluster *cl, unsigned i, uint64_t *dev_size, uint64_t *dev_used,
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
