/*
 * rec.c - replicated metadata records with compare-and-set (see rec.h for the protocol).
 *
 * Every operation is a round of parallel KV calls to the members of a shard's replica set,
 * waited for on the calling thread's transport context.  A member that does not answer is
 * reported to the cluster view (which then skips it) and the round is repeated with the
 * recomputed set, at most ROUNDS times, so a dead D-node costs one deadline, not a failure.
 */
#include "meta/rec.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/log.h"
#include "client/placement.h"

#define TAG "meta"
#define ROUNDS 3
#define MAX_SET (EC_MAX_FRAGS + 1)
#define LIVE 1u
#define KV_ANY_VERSION UINT64_MAX /* the D-node KV's "any version" */
#define DEAD 0u

struct call {
    unsigned node;
    unsigned *outstanding;
    int tstatus; /* transport status */
    int status;  /* the D-node's answer */
    uint64_t version;
    uint32_t len;
    uint8_t *buf; /* owned: response payload */
    uint32_t cap;
};

uint32_t meta_shard_of_u64(uint64_t item)
{
    return (uint32_t)(cl_mix64(item ^ 0x6d657461ull) % META_SHARDS);
}

uint32_t meta_shard_of(const void *key, size_t len)
{
    return (uint32_t)(cl_hash_bytes(key, len) % META_SHARDS);
}

/* The placement item of a shard: salted so that shards and stripe ids hash apart. */
static uint64_t shard_item(uint32_t shard)
{
    return cl_mix64(0x5348415244ull ^ shard);
}

static void call_done(void *arg, int status, const Cairn__Response *resp)
{
    struct call *c = arg;

    c->tstatus = status;
    if (!status) {
        c->status = resp->status;
        c->version = resp->version;
        c->len = resp->payload_len;
    }
    (*c->outstanding)--;
}

/* The replica set: the first m + 1 D-nodes of the shard's order that are not down. */
static unsigned replica_set(struct cl_cluster *cl, uint32_t shard, unsigned *set)
{
    unsigned n = cl_cluster_dnodes(cl), want = cl_cluster_layout(cl)->m + 1, got = 0;
    unsigned order[CL_MAX_DNODES];

    if (want > n)
        want = n;
    if (want > MAX_SET)
        want = MAX_SET;
    if (cl_cluster_order(cl, shard_item(shard), order))
        return 0;
    for (unsigned i = 0; i < n && got < want; i++)
        if (!cl_cluster_node_down(cl, order[i]))
            set[got++] = order[i];
    return got == want ? got : 0;
}

static void wait_calls(struct cl_cluster *cl, unsigned *outstanding)
{
    while (*outstanding)
        tp_ctx_wait(cl_cluster_tp(cl), 1000);
}

/* Issue one KV call to c->node; on a refused call c->tstatus holds the error. */
static void issue(struct cl_cluster *cl, struct call *c, Cairn__Request *req, const void *payload,
                  uint32_t len)
{
    int rc;

    c->tstatus = CAIRN_ECANCELED;
    c->status = 0;
    c->version = 0;
    c->len = 0;
    (*c->outstanding)++;
    rc = cl_cluster_call(cl, c->node, req, payload, len, c->buf, c->buf ? c->cap : 0, call_done,
                         c);
    if (rc) {
        (*c->outstanding)--;
        c->tstatus = rc;
    }
}

static bool transport_failed(struct cl_cluster *cl, struct call *c)
{
    if (c->tstatus == CAIRN_ETIMEDOUT || c->tstatus == CAIRN_EUNREACH) {
        cl_cluster_note(cl, c->node, c->tstatus);
        return true;
    }
    if (!c->tstatus)
        cl_cluster_note(cl, c->node, 0);
    return c->tstatus != 0;
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

/* Write the newest copy to members found behind (read repair).  Best effort. */
static void repair(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                   struct call *calls, unsigned n, unsigned best)
{
    unsigned outstanding = 0;
    struct call rc[MAX_SET];
    unsigned nr = 0;

    for (unsigned i = 0; i < n; i++) {
        Cairn__Request req;

        if (i == best || calls[i].tstatus || (calls[i].status == 0 &&
                                              calls[i].version >= calls[best].version))
            continue;
        if (calls[i].status && calls[i].status != CAIRN_ENOENT)
            continue;
        req_init(&req, CAIRN__OP__OP_KV_PUT, shard, key, klen);
        req.expect_version = KV_ANY_VERSION;
        req.new_version = calls[best].version;
        rc[nr] = (struct call){.node = calls[i].node, .outstanding = &outstanding};
        log_debug(TAG, "repairing a record on D-node %s", cl_cluster_dnode_addr(cl, calls[i].node));
        issue(cl, &rc[nr], &req, calls[best].buf, calls[best].len);
        nr++;
    }
    wait_calls(cl, &outstanding);
    for (unsigned i = 0; i < nr; i++)
        transport_failed(cl, &rc[i]);
}

/* Send the read-only request req to every member of the shard's replica set and wait for all
 * answers; while members fail to answer, repeat with the recomputed set (at most ROUNDS
 * times).  On 0, calls[0..*n) hold the answers and own their response buffers. */
static int gather(struct cl_cluster *cl, uint32_t shard, const Cairn__Request *req,
                  struct call *calls, unsigned *n)
{
    unsigned set[MAX_SET];

    for (unsigned round = 0; round < ROUNDS; round++) {
        unsigned outstanding = 0;
        bool retry = false;
        int local = 0;

        *n = replica_set(cl, shard, set);
        if (!*n)
            return CAIRN_EUNREACH;
        for (unsigned i = 0; i < *n; i++) {
            Cairn__Request r = *req; /* the transport fills in ids and addresses */

            calls[i] = (struct call){.node = set[i], .outstanding = &outstanding,
                                     .cap = tp_ctx_max_payload(cl_cluster_tp(cl))};
            calls[i].buf = malloc(calls[i].cap);
            if (!calls[i].buf) {
                calls[i].tstatus = CAIRN_ENOMEM;
                continue;
            }
            issue(cl, &calls[i], &r, NULL, 0);
        }
        wait_calls(cl, &outstanding);
        for (unsigned i = 0; i < *n; i++)
            if (transport_failed(cl, &calls[i]))
                retry = true;
        if (!retry)
            return 0;
        for (unsigned i = 0; i < *n; i++) {
            free(calls[i].buf);
            if (calls[i].tstatus && calls[i].tstatus != CAIRN_ETIMEDOUT &&
                calls[i].tstatus != CAIRN_EUNREACH)
                local = calls[i].tstatus; /* refused locally: retrying will not help */
        }
        *n = 0;
        if (local)
            return local;
    }
    return CAIRN_EUNREACH;
}

/* The newest copy among the answers calls[0..n) for one record: repair the members found
 * behind, hand the value to *out.  Frees every call's buffer. */
static int pick(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                struct call *calls, unsigned n, struct meta_rec *out)
{
    unsigned best = UINT32_MAX;
    int rc;

    for (unsigned i = 0; i < n; i++) {
        if (calls[i].status == 0) {
            if (calls[i].len == 0) {
                rc = CAIRN_EPROTO;
                goto out;
            }
            if (best == UINT32_MAX || calls[i].version > calls[best].version)
                best = i;
        } else if (calls[i].status != CAIRN_ENOENT) {
            rc = calls[i].status;
            goto out;
        }
    }
    if (best == UINT32_MAX) {
        rc = CAIRN_ENOENT;
        goto out;
    }
    repair(cl, shard, key, klen, calls, n, best);
    out->version = calls[best].version;
    if (calls[best].buf[0] != LIVE) {
        rc = CAIRN_ENOENT;
        goto out;
    }
    /* Hand the payload over without the liveness byte. */
    memmove(calls[best].buf, calls[best].buf + 1, calls[best].len - 1);
    out->val = calls[best].buf;
    out->len = calls[best].len - 1;
    calls[best].buf = NULL;
    rc = 0;
out:
    for (unsigned i = 0; i < n; i++)
        free(calls[i].buf);
    return rc;
}

int meta_rec_get(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 struct meta_rec *out)
{
    struct call calls[MAX_SET];
    Cairn__Request req;
    unsigned n = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (klen == 0 || klen > META_REC_MAX_KEY)
        return CAIRN_EINVAL;
    req_init(&req, CAIRN__OP__OP_KV_GET, shard, key, klen);
    rc = gather(cl, shard, &req, calls, &n);
    if (rc)
        return rc;
    return pick(cl, shard, key, klen, calls, n, out);
}

/* Records per wave of meta_rec_get_many, and the answer buffer of each of its calls: room for
 * the usual record (an inode with inline bytes included); a larger one is read again alone. */
#define MANY_WAVE 64u
#define MANY_BUF (20u << 10)

void meta_rec_get_many(struct cl_cluster *cl, struct meta_get *gets, unsigned n)
{
    struct call (*calls)[MAX_SET] = calloc(CAIRN_MIN(n, MANY_WAVE), sizeof(*calls));
    unsigned nset[MANY_WAVE];

    for (unsigned w = 0; w < n; w += MANY_WAVE) {
        unsigned nw = CAIRN_MIN(n - w, MANY_WAVE), outstanding = 0;

        for (unsigned j = 0; j < nw; j++) {
            struct meta_get *g = &gets[w + j];
            unsigned set[MAX_SET];

            memset(&g->rec, 0, sizeof(g->rec));
            nset[j] = 0;
            g->rc = CAIRN_EAGAIN; /* not decided yet */
            if (g->klen == 0 || g->klen > META_REC_MAX_KEY) {
                g->rc = CAIRN_EINVAL;
                continue;
            }
            if (!calls)
                continue; /* no memory for the batch: each record is read alone below */
            nset[j] = replica_set(cl, g->shard, set);
            for (unsigned i = 0; i < nset[j]; i++) {
                Cairn__Request req;
                struct call *c = &calls[j][i];

                req_init(&req, CAIRN__OP__OP_KV_GET, g->shard, g->key, g->klen);
                *c = (struct call){.node = set[i], .outstanding = &outstanding, .cap = MANY_BUF};
                c->buf = malloc(c->cap);
                if (!c->buf) {
                    c->tstatus = CAIRN_ENOMEM;
                    continue;
                }
                issue(cl, c, &req, NULL, 0);
            }
        }
        wait_calls(cl, &outstanding);
        for (unsigned j = 0; j < nw; j++) {
            struct meta_get *g = &gets[w + j];
            bool whole = nset[j] > 0;

            if (g->rc != CAIRN_EAGAIN)
                continue;
            for (unsigned i = 0; i < nset[j]; i++)
                if (transport_failed(cl, &calls[j][i]) || calls[j][i].status == CAIRN_ETOOBIG)
                    whole = false; /* no answer, or a record larger than the batch buffer */
            if (whole) {
                g->rc = pick(cl, g->shard, g->key, g->klen, calls[j], nset[j], &g->rec);
                continue;
            }
            /* A member did not answer or the record did not fit the buffer: the single read
             * retries with the recomputed replica set and a full-size buffer. */
            for (unsigned i = 0; i < nset[j]; i++)
                free(calls[j][i].buf);
            g->rc = meta_rec_get(cl, g->shard, g->key, g->klen, &g->rec);
        }
    }
    free(calls);
}

/* Put the raw stored value (liveness byte included). */
static int rec_write(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                     uint64_t expect, const uint8_t *val, uint32_t len, uint64_t *version)
{
    unsigned set[MAX_SET], n = 0;
    uint64_t nv = (uint64_t)cairn_wall_ns();
    bool decided = false;
    unsigned have[MAX_SET]; /* nodes holding our version */
    unsigned nhave = 0;

    if (klen == 0 || klen > META_REC_MAX_KEY || len > META_REC_MAX_VAL + 1)
        return CAIRN_EINVAL;
    if (expect != META_ANY && nv <= expect)
        nv = expect + 1;
    for (unsigned round = 0; round < ROUNDS + 2; round++) {
        unsigned outstanding = 0, nc = 0;
        struct call calls[MAX_SET];
        bool missing = false;

        n = replica_set(cl, shard, set);
        if (!n)
            return CAIRN_EUNREACH;
        if (!decided) {
            Cairn__Request req;

            /* The primary decides. */
            req_init(&req, CAIRN__OP__OP_KV_PUT, shard, key, klen);
            req.expect_version = expect == META_ANY ? KV_ANY_VERSION : expect;
            req.new_version = nv;
            calls[0] = (struct call){.node = set[0], .outstanding = &outstanding};
            issue(cl, &calls[0], &req, val, len);
            wait_calls(cl, &outstanding);
            if (transport_failed(cl, &calls[0])) {
                if (calls[0].tstatus != CAIRN_ETIMEDOUT && calls[0].tstatus != CAIRN_EUNREACH)
                    return calls[0].tstatus;
                continue;
            }
            if (calls[0].status == CAIRN_ECONFLICT && expect == META_ANY) {
                /* Our clock is behind the record's version: go past it. */
                nv = calls[0].version + 1;
                continue;
            }
            if (calls[0].status)
                return calls[0].status;
            decided = true;
            have[nhave++] = set[0];
        }
        /* Copy to every member that does not hold it yet. */
        for (unsigned i = 0; i < n; i++) {
            Cairn__Request req;
            bool held = false;

            for (unsigned j = 0; j < nhave; j++)
                held |= have[j] == set[i];
            if (held)
                continue;
            req_init(&req, CAIRN__OP__OP_KV_PUT, shard, key, klen);
            req.expect_version = KV_ANY_VERSION;
            req.new_version = nv;
            calls[nc] = (struct call){.node = set[i], .outstanding = &outstanding};
            issue(cl, &calls[nc], &req, val, len);
            nc++;
        }
        wait_calls(cl, &outstanding);
        for (unsigned i = 0; i < nc; i++) {
            if (transport_failed(cl, &calls[i])) {
                missing = true;
                continue;
            }
            /* A conflict here means the member already holds this or a newer version. */
            if (calls[i].status && calls[i].status != CAIRN_ECONFLICT) {
                log_warn(TAG, "record copy on %s: %s", cl_cluster_dnode_addr(cl, calls[i].node),
                         cairn_strerror(calls[i].status));
                return calls[i].status;
            }
            if (nhave < MAX_SET)
                have[nhave++] = calls[i].node;
        }
        if (!missing) {
            if (version)
                *version = nv;
            return 0;
        }
    }
    return CAIRN_EUNREACH;
}

int meta_rec_put(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 uint64_t expect, const void *val, uint32_t len, uint64_t *version)
{
    uint8_t *buf;
    int rc;

    if (len > META_REC_MAX_VAL)
        return CAIRN_ETOOBIG;
    buf = malloc((size_t)len + 1);
    if (!buf)
        return CAIRN_ENOMEM;
    buf[0] = LIVE;
    if (len)
        memcpy(buf + 1, val, len);
    rc = rec_write(cl, shard, key, klen, expect, buf, len + 1, version);
    free(buf);
    return rc;
}

int meta_rec_del(struct cl_cluster *cl, uint32_t shard, const void *key, size_t klen,
                 uint64_t expect)
{
    uint8_t dead = DEAD;

    if (expect == META_ANY) {
        struct meta_rec r;
        int rc = meta_rec_get(cl, shard, key, klen, &r);

        if (rc)
            return rc;
        free(r.val);
        expect = r.version;
    }
    return rec_write(cl, shard, key, klen, expect, &dead, 1, NULL);
}

/* ---- scans ---- */

static int key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int entry_cmp(const void *pa, const void *pb)
{
    const struct meta_entry *a = pa, *b = pb;
    int c = key_cmp(a->key, a->klen, b->key, b->klen);

    if (c)
        return c;
    /* Highest version first, so the first of equal keys is the newest. */
    return a->version < b->version ? 1 : a->version > b->version ? -1 : 0;
}

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
    struct call calls[MAX_SET];
    Cairn__KvScanResult *res[MAX_SET] = {0};
    Cairn__Request req;
    unsigned n = 0, total = 0, k = 0;
    struct meta_entry *all = NULL;
    const uint8_t *bound = NULL; /* smallest last key among members that have more */
    uint32_t bound_len = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (limit == 0 || limit > META_SCAN_MAX)
        limit = META_SCAN_MAX;
    if (slen > META_REC_MAX_KEY || elen > META_REC_MAX_KEY)
        return CAIRN_EINVAL;
    req_init(&req, CAIRN__OP__OP_KV_SCAN, shard, start, slen);
    req.end_key.data = (uint8_t *)end;
    req.end_key.len = end ? elen : 0;
    req.limit = limit;
    rc = gather(cl, shard, &req, calls, &n);
    if (rc)
        return rc;
    for (unsigned i = 0; i < n; i++) {
        if (calls[i].status) {
            rc = calls[i].status;
            goto out;
        }
        res[i] = cairn__kv_scan_result__unpack(NULL, calls[i].len, calls[i].buf);
        if (!res[i]) {
            rc = CAIRN_EPROTO;
            goto out;
        }
        total += (unsigned)res[i]->n_entries;
        if (res[i]->more && res[i]->n_entries) {
            Cairn__KvEntry *last = res[i]->entries[res[i]->n_entries - 1];

            if (!bound || key_cmp(last->key.data, (uint32_t)last->key.len, bound, bound_len) < 0) {
                bound = last->key.data;
                bound_len = (uint32_t)last->key.len;
            }
        }
    }
    all = calloc(total ? total : 1, sizeof(*all));
    if (!all) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    /* Borrow keys and values from the unpacked results for sorting. */
    for (unsigned i = 0; i < n; i++) {
        for (size_t j = 0; j < res[i]->n_entries; j++) {
            Cairn__KvEntry *e = res[i]->entries[j];

            if (bound && key_cmp(e->key.data, (uint32_t)e->key.len, bound, bound_len) > 0)
                continue;
            if (e->value.len == 0)
                continue;
            all[k++] = (struct meta_entry){.key = e->key.data, .klen = (uint32_t)e->key.len,
                                           .version = e->version, .val = e->value.data,
                                           .len = (uint32_t)e->value.len};
        }
    }
    qsort(all, k, sizeof(*all), entry_cmp);
    out->entries = calloc(k ? k : 1, sizeof(*out->entries));
    if (!out->entries) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < k; i++) {
        struct meta_entry *e = &all[i], *o;

        if (i && key_cmp(all[i - 1].key, all[i - 1].klen, e->key, e->klen) == 0)
            continue; /* an older copy */
        if (e->val[0] != LIVE)
            continue;
        o = &out->entries[out->n];
        o->key = malloc(e->klen ? e->klen : 1);
        o->val = malloc(e->len);
        if (!o->key || !o->val) {
            free(o->key);
            free(o->val);
            rc = CAIRN_ENOMEM;
            goto out;
        }
        memcpy(o->key, e->key, e->klen);
        o->klen = e->klen;
        o->version = e->version;
        memcpy(o->val, e->val + 1, e->len - 1);
        o->len = e->len - 1;
        out->n++;
    }
    if (bound) {
        /* Continue just after the bound: the same key with a 0 byte appended. */
        out->more = true;
        out->next = malloc(bound_len + 1);
        if (!out->next) {
            rc = CAIRN_ENOMEM;
            goto out;
        }
        memcpy(out->next, bound, bound_len);
        out->next[bound_len] = 0;
        out->next_len = bound_len + 1;
    }
out:
    free(all);
    for (unsigned i = 0; i < n; i++) {
        if (res[i])
            cairn__kv_scan_result__free_unpacked(res[i], NULL);
        free(calls[i].buf);
    }
    if (rc)
        meta_scan_fini(out);
    return rc;
}

/* ---- catching up a returning D-node ---- */

/* One page of a single member's raw entries (tombstones included) from start. */
static int member_scan(struct cl_cluster *cl, unsigned node, uint32_t shard, const uint8_t *start,
                       size_t slen, Cairn__KvScanResult **out)
{
    Cairn__Request req;
    unsigned outstanding = 0;
    struct call c = {.node = node, .outstanding = &outstanding,
                     .cap = tp_ctx_max_payload(cl_cluster_tp(cl))};

    c.buf = malloc(c.cap);
    if (!c.buf)
        return CAIRN_ENOMEM;
    req_init(&req, CAIRN__OP__OP_KV_SCAN, shard, start, slen);
    req.limit = META_SCAN_MAX;
    issue(cl, &c, &req, NULL, 0);
    wait_calls(cl, &outstanding);
    if (transport_failed(cl, &c) || c.status) {
        free(c.buf);
        return c.tstatus ? c.tstatus : c.status;
    }
    *out = cairn__kv_scan_result__unpack(NULL, c.len, c.buf);
    free(c.buf);
    return *out ? 0 : CAIRN_EPROTO;
}

int meta_rec_sync(struct cl_cluster *cl, unsigned node, bool check_only, uint64_t *count)
{
    uint64_t n_copied = 0;
    unsigned batch = check_only ? 8 : 64; /* a GET needs a buffer for the value */
    int first_err = 0;

    for (uint32_t shard = 0; shard < META_SHARDS; shard++) {
        unsigned set[MAX_SET], n = replica_set(cl, shard, set);
        bool member = false;

        for (unsigned i = 0; i < n; i++)
            member |= set[i] == node;
        if (!member)
            continue;
        for (unsigned i = 0; i < n; i++) {
            uint8_t *start = NULL;
            size_t slen = 0;

            if (set[i] == node)
                continue;
            for (;;) {
                Cairn__KvScanResult *res = NULL;
                unsigned outstanding = 0, nc = 0;
                struct call calls[64];
                uint64_t want[64];
                int rc = member_scan(cl, set[i], shard, start, slen, &res);

                free(start);
                start = NULL;
                if (rc) {
                    if (!first_err)
                        first_err = rc;
                    break;
                }
                /* Copy every entry at its version: the D-node keeps whichever copy is newer,
                 * so this never undoes a later write. */
                for (size_t j = 0; j < res->n_entries; j++) {
                    Cairn__KvEntry *e = res->entries[j];
                    Cairn__Request req;

                    calls[nc] = (struct call){.node = node, .outstanding = &outstanding};
                    if (check_only) {
                        /* Only count: does the node hold this version or a newer one? */
                        req_init(&req, CAIRN__OP__OP_KV_GET, shard, e->key.data, e->key.len);
                        calls[nc].cap = tp_ctx_max_payload(cl_cluster_tp(cl));
                        calls[nc].buf = malloc(calls[nc].cap);
                        want[nc] = e->version; /* what the member has */
                        issue(cl, &calls[nc], &req, NULL, 0);
                    } else {
                        req_init(&req, CAIRN__OP__OP_KV_PUT, shard, e->key.data, e->key.len);
                        req.expect_version = KV_ANY_VERSION;
                        req.new_version = e->version;
                        issue(cl, &calls[nc], &req, e->value.data, (uint32_t)e->value.len);
                    }
                    nc++;
                    if (nc == batch || j + 1 == res->n_entries) {
                        wait_calls(cl, &outstanding);
                        for (unsigned x = 0; x < nc; x++) {
                            if (transport_failed(cl, &calls[x])) {
                                if (!first_err)
                                    first_err = calls[x].tstatus;
                            } else if (check_only) {
                                if (calls[x].status == CAIRN_ENOENT ||
                                    (calls[x].status == 0 && calls[x].version < want[x]))
                                    n_copied++; /* behind */
                            } else if (calls[x].status == 0) {
                                n_copied++;
                            }
                            free(calls[x].buf);
                        }
                        nc = 0;
                    }
                }
                if (res->more && res->n_entries) {
                    Cairn__KvEntry *last = res->entries[res->n_entries - 1];

                    slen = last->key.len + 1;
                    start = malloc(slen);
                    if (start) {
                        memcpy(start, last->key.data, last->key.len);
                        start[last->key.len] = 0; /* just after the last key */
                    }
                }
                cairn__kv_scan_result__free_unpacked(res, NULL);
                if (!start)
                    break;
            }
        }
    }
    if (count)
        *count = n_copied;
    return first_err;
}
