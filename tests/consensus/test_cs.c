/*
 * test_cs.c - the consensus layer (consensus/cs.h) in a deterministic simulation.
 *
 * Every node is a real cs_node with real libraft groups and the real wire encoding; what is
 * simulated is what the D-node host gives them: a store with a working copy and a durable
 * copy (a commit copies one to the other, a crash throws the working copy away), a network
 * that delays, drops, duplicates, reorders and partitions batches, and one clock.  The state
 * machine is a set of registers updated by compare-and-set, the same contract the D-node's
 * records keep: a command names a key, the version it expects (or any) and a new value; the
 * version a register gets is the index of the entry that wrote it.
 *
 * Every run checks, whatever the faults:
 *   - agreement: no two nodes ever apply different commands at the same index of a group;
 *   - durability: every proposal acknowledged with status 0 was chosen at its index, and
 *     after the faults heal every node holds the same state, which includes it;
 *   - real-time order: a proposal acknowledged before another was proposed has a lower index;
 *   - lease reads: whenever cs_group_read_ok() says a node may answer a read alone, its
 *     durable state is at least as new as every write acknowledged before that moment.
 * The seeds are fixed, so a failure replays exactly.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "consensus/cs.h"
#include "consensus/wire.h"

#define MAX_NODES 7
#define MAX_GROUPS 4
#define KEYS 8
#define MAX_INDEX 200000
#define ANY UINT64_MAX

/* ---- the store and the state machine ---- */

struct sent {
    uint64_t index, term;
    unsigned type;
    uint8_t *buf;
    size_t len;
};

struct gstate {
    bool used;
    uint8_t *meta;
    size_t meta_len;
    struct sent *ents;
    size_t n, cap;
    uint64_t applied;
    uint64_t val[KEYS], ver[KEYS];
};

struct store {
    struct gstate g[MAX_GROUPS];
};

struct cmd {
    uint32_t key;
    uint64_t expect;
    uint64_t value;
    uint64_t tag; /* unique per proposal */
};

struct result {
    int status; /* 0 or CAIRN_ECONFLICT */
    uint64_t version;
};

struct sim;

struct node {
    struct sim *sim;
    unsigned idx;
    uint64_t id;
    bool up;
    bool doomed; /* crashed inside a commit: nothing it does afterwards counts */
    struct cs_node *cs;
    struct store work, dur;
};

struct msg {
    struct msg *next;
    unsigned from, to;
    uint64_t at;
    uint8_t *buf;
    size_t len;
};

/* What the whole history must agree with. */
struct chosen {
    uint64_t tag; /* 0: nothing chosen yet at this index */
};

struct ack {
    uint32_t group;
    uint64_t index, tag;
    uint64_t invoked, acked;
    uint32_t key;
    uint64_t value;
    int status;
};

struct sim {
    uint64_t now;
    uint64_t rng;
    unsigned n_nodes, n_groups;
    struct node nodes[MAX_NODES];
    struct msg *net;
    /* faults */
    unsigned drop_pct, dup_pct, max_delay;
    unsigned doom_permille; /* commits that crash the node before they are durable */
    bool cut[MAX_NODES][MAX_NODES];
    /* history */
    struct chosen *chosen[MAX_GROUPS];
    struct ack *acks;
    size_t n_acks, cap_acks;
    uint64_t next_tag;
    unsigned in_flight;
    uint64_t unknown, refused, lease_reads;
    struct cs_config cfg;
};

static uint64_t rnd(struct sim *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 2685821657736338717ull;
}

static unsigned pct(struct sim *s)
{
    return (unsigned)(rnd(s) % 100);
}

static void gstate_free(struct gstate *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->ents[i].buf);
    free(g->ents);
    free(g->meta);
    memset(g, 0, sizeof *g);
}

static void gstate_copy(struct gstate *dst, const struct gstate *src)
{
    gstate_free(dst);
    *dst = *src;
    dst->meta = NULL;
    dst->ents = NULL;
    dst->cap = src->n;
    if (src->meta) {
        dst->meta = malloc(src->meta_len);
        memcpy(dst->meta, src->meta, src->meta_len);
    }
    if (src->n) {
        dst->ents = calloc(src->n, sizeof *dst->ents);
        for (size_t i = 0; i < src->n; i++) {
            dst->ents[i] = src->ents[i];
            dst->ents[i].buf = malloc(src->ents[i].len ? src->ents[i].len : 1);
            memcpy(dst->ents[i].buf, src->ents[i].buf, src->ents[i].len);
        }
    }
}

static void store_copy(struct store *dst, const struct store *src)
{
    for (unsigned i = 0; i < MAX_GROUPS; i++)
        gstate_copy(&dst->g[i], &src->g[i]);
}

static void store_free(struct store *st)
{
    for (unsigned i = 0; i < MAX_GROUPS; i++)
        gstate_free(&st->g[i]);
}

static struct gstate *gs(struct store *st, uint32_t group)
{
    cr_assert_lt(group, MAX_GROUPS);
    return &st->g[group];
}

static int h_load(void *arg, uint32_t group, struct cs_loaded *out)
{
    struct node *nd = arg;
    struct gstate *g = gs(&nd->work, group); /* committed + this round */

    memset(out, 0, sizeof *out);
    out->meta = g->meta;
    out->meta_len = g->meta_len;
    out->applied = g->applied;
    out->n_entries = g->n;
    if (g->n) {
        out->entries = calloc(g->n, sizeof *out->entries);
        for (size_t i = 0; i < g->n; i++) {
            out->entries[i].index = g->ents[i].index;
            out->entries[i].term = g->ents[i].term;
            out->entries[i].type = g->ents[i].type;
            out->entries[i].buf = g->ents[i].buf;
            out->entries[i].len = g->ents[i].len;
        }
    }
    return 0;
}

static void h_load_done(void *arg, struct cs_loaded *l)
{
    (void)arg;
    free(l->entries);
}

static int h_put_meta(void *arg, uint32_t group, const void *buf, size_t len)
{
    struct node *nd = arg;
    struct gstate *g = gs(&nd->work, group);

    free(g->meta);
    g->meta = malloc(len ? len : 1);
    memcpy(g->meta, buf, len);
    g->meta_len = len;
    g->used = true;
    return 0;
}

static void drop_range(struct gstate *g, uint64_t from, uint64_t to)
{
    size_t w = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (g->ents[i].index >= from && g->ents[i].index < to) {
            free(g->ents[i].buf);
            continue;
        }
        g->ents[w++] = g->ents[i];
    }
    g->n = w;
    for (size_t i = 1; i < g->n; i++)
        cr_assert_eq(g->ents[i].index, g->ents[i - 1].index + 1, "dropping left a hole");
}

static int h_put_entries(void *arg, uint32_t group, const struct cs_entry *e, size_t n)
{
    struct node *nd = arg;
    struct gstate *g = gs(&nd->work, group);

    for (size_t i = 0; i < n; i++) {
        if (i)
            cr_assert_eq(e[i].index, e[i - 1].index + 1);
        drop_range(g, e[i].index, UINT64_MAX);
        if (g->n)
            cr_assert_eq(e[i].index, g->ents[g->n - 1].index + 1,
                         "node %u group %u: entry %llu after %llu", nd->idx, group,
                         (unsigned long long)e[i].index,
                         (unsigned long long)g->ents[g->n - 1].index);
        if (g->n == g->cap) {
            g->cap = g->cap ? g->cap * 2 : 16;
            g->ents = realloc(g->ents, g->cap * sizeof *g->ents);
        }
        struct sent *s = &g->ents[g->n++];
        s->index = e[i].index;
        s->term = e[i].term;
        s->type = e[i].type;
        s->len = e[i].len;
        s->buf = malloc(e[i].len ? e[i].len : 1);
        memcpy(s->buf, e[i].buf, e[i].len);
    }
    g->used = true;
    return 0;
}

static int h_drop_entries(void *arg, uint32_t group, uint64_t from, uint64_t to)
{
    struct node *nd = arg;
    drop_range(gs(&nd->work, group), from, to);
    return 0;
}

static int h_commit(void *arg)
{
    struct node *nd = arg;
    struct sim *s = nd->sim;

    if (nd->doomed)
        return 0;
    if (s->doom_permille && rnd(s) % 1000 < s->doom_permille) {
        /* The power fails during this fsync: the node goes on until the end of its step,
         * but nothing of it leaves any more, and the step ends with its crash. */
        nd->doomed = true;
        return 0;
    }
    store_copy(&nd->dur, &nd->work);
    return 0;
}

static int h_apply(void *arg, uint32_t group, uint64_t index, const void *buf, size_t len,
                   void **result)
{
    struct node *nd = arg;
    struct sim *s = nd->sim;
    struct gstate *g = gs(&nd->work, group);
    struct cmd c;
    struct result *r = malloc(sizeof *r);

    cr_assert_eq(len, sizeof c, "a command of %zu bytes", len);
    memcpy(&c, buf, sizeof c);
    cr_assert_gt(index, g->applied, "node %u group %u applies %llu after %llu", nd->idx, group,
                 (unsigned long long)index, (unsigned long long)g->applied);
    cr_assert_lt(index, MAX_INDEX);
    cr_assert_lt(c.key, KEYS);
    /* agreement */
    if (s->chosen[group][index].tag == 0)
        s->chosen[group][index].tag = c.tag;
    cr_assert_eq(s->chosen[group][index].tag, c.tag,
                 "group %u index %llu: node %u applies %llu, another applied %llu", group,
                 (unsigned long long)index, nd->idx, (unsigned long long)c.tag,
                 (unsigned long long)s->chosen[group][index].tag);
    if (c.expect == ANY || c.expect == g->ver[c.key]) {
        g->val[c.key] = c.value;
        g->ver[c.key] = index;
        r->status = 0;
    } else {
        r->status = CAIRN_ECONFLICT;
    }
    r->version = g->ver[c.key];
    g->applied = index;
    g->used = true;
    *result = r;
    return 0;
}

static void h_result_free(void *arg, void *result)
{
    (void)arg;
    free(result);
}

static int h_dump(void *arg, uint32_t group, uint64_t *applied, void **data, size_t *len)
{
    struct node *nd = arg;
    struct gstate *g = gs(&nd->dur, group);
    uint64_t *d = malloc(2 * KEYS * sizeof *d);

    memcpy(d, g->val, sizeof g->val);
    memcpy(d + KEYS, g->ver, sizeof g->ver);
    *applied = g->applied;
    *data = d;
    *len = 2 * KEYS * sizeof *d;
    return 0;
}

static int h_install(void *arg, uint32_t group, uint64_t applied, const void *data, size_t len)
{
    struct node *nd = arg;
    struct gstate *g = gs(&nd->work, group);

    cr_assert_eq(len, 2 * KEYS * sizeof(uint64_t));
    memcpy(g->val, data, sizeof g->val);
    memcpy(g->ver, (const uint64_t *)data + KEYS, sizeof g->ver);
    g->applied = applied;
    g->used = true;
    return 0;
}

static void h_send(void *arg, uint64_t to, const void *buf, size_t len)
{
    struct node *nd = arg;
    struct sim *s = nd->sim;
    unsigned t = (unsigned)(to - 1);
    unsigned copies = 1;

    cr_assert_lt(t, s->n_nodes, "a message to unknown node %llu", (unsigned long long)to);
    if (nd->doomed || s->cut[nd->idx][t] || pct(s) < s->drop_pct)
        return;
    if (pct(s) < s->dup_pct)
        copies = 2;
    for (unsigned c = 0; c < copies; c++) {
        struct msg *m = calloc(1, sizeof *m);
        m->from = nd->idx;
        m->to = t;
        m->at = s->now + 1 + (s->max_delay ? rnd(s) % s->max_delay : 0);
        m->buf = malloc(len ? len : 1);
        memcpy(m->buf, buf, len);
        m->len = len;
        m->next = s->net;
        s->net = m;
    }
}

static uint64_t h_now(void *arg)
{
    struct node *nd = arg;
    return nd->sim->now;
}

static void node_start(struct sim *s, unsigned i, bool bootstrap)
{
    struct node *nd = &s->nodes[i];
    struct cs_host host = {
        .arg = nd,
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
    struct cs_config cfg = s->cfg;
    uint64_t voters[MAX_NODES];

    cfg.self = nd->id;
    cfg.seed = rnd(s) | 1;
    cr_assert_eq(cs_node_create(&cfg, &host, &nd->cs), 0);
    for (unsigned v = 0; v < s->n_nodes; v++)
        voters[v] = s->nodes[v].id;
    for (uint32_t gi = 0; gi < s->n_groups; gi++)
        cr_assert_eq(cs_group_open(nd->cs, gi, voters, bootstrap ? s->n_nodes : 0, NULL), 0);
    nd->up = true;
}

/* kill -9: what the node wrote since its last commit is gone. */
static void node_crash(struct sim *s, unsigned i)
{
    struct node *nd = &s->nodes[i];

    if (!nd->up)
        return;
    cs_node_destroy(nd->cs);
    nd->cs = NULL;
    nd->up = false;
    nd->doomed = false;
    store_copy(&nd->work, &nd->dur);
}

static void sim_init(struct sim *s, unsigned nodes, unsigned groups, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->rng = seed * 0x9e3779b97f4a7c15ull + 1;
    s->n_nodes = nodes;
    s->n_groups = groups;
    s->now = 1000;
    s->next_tag = 1;
    s->cfg.election_ms = 300;
    s->cfg.heartbeat_ms = 50;
    s->cfg.snapshot_threshold = 32;
    s->cfg.snapshot_trailing = 8;
    for (uint32_t g = 0; g < groups; g++)
        s->chosen[g] = calloc(MAX_INDEX, sizeof *s->chosen[g]);
    for (unsigned i = 0; i < nodes; i++) {
        s->nodes[i].sim = s;
        s->nodes[i].idx = i;
        s->nodes[i].id = i + 1;
    }
    for (unsigned i = 0; i < nodes; i++)
        node_start(s, i, true);
}

static void sim_fini(struct sim *s)
{
    for (unsigned i = 0; i < s->n_nodes; i++) {
        node_crash(s, i);
        store_free(&s->nodes[i].work);
        store_free(&s->nodes[i].dur);
    }
    while (s->net) {
        struct msg *m = s->net;
        s->net = m->next;
        free(m->buf);
        free(m);
    }
    for (uint32_t g = 0; g < s->n_groups; g++)
        free(s->chosen[g]);
    free(s->acks);
}

/* Lease reads: whenever a node says it may answer alone, its durable state must hold every
 * write acknowledged so far (versions only grow, so "at least as new" is enough). */
static void check_lease_reads(struct sim *s)
{
    for (unsigned i = 0; i < s->n_nodes; i++) {
        struct node *nd = &s->nodes[i];
        if (!nd->up)
            continue;
        for (uint32_t gi = 0; gi < s->n_groups; gi++) {
            struct cs_group *g = cs_group_find(nd->cs, gi);
            if (cs_group_read_ok(g) != 0)
                continue;
            s->lease_reads++;
            struct gstate *st = gs(&nd->dur, gi);
            for (size_t a = 0; a < s->n_acks; a++) {
                const struct ack *ak = &s->acks[a];
                if (ak->group != gi || ak->status != 0)
                    continue;
                cr_assert_geq(st->ver[ak->key], ak->index,
                              "t=%llu node %u group %u serves key %u at version %llu, but "
                              "version %llu was acknowledged at t=%llu",
                              (unsigned long long)s->now, i, gi, ak->key,
                              (unsigned long long)st->ver[ak->key],
                              (unsigned long long)ak->index, (unsigned long long)ak->acked);
            }
        }
    }
}

static void sim_step(struct sim *s)
{
    /* deliver what is due, in a random order among what is due */
    struct msg **pp = &s->net;
    while (*pp) {
        struct msg *m = *pp;
        if (m->at > s->now) {
            pp = &m->next;
            continue;
        }
        *pp = m->next;
        if (s->nodes[m->to].up && !s->cut[m->from][m->to])
            cs_node_recv(s->nodes[m->to].cs, m->buf, m->len);
        free(m->buf);
        free(m);
    }
    for (unsigned i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].up)
            cs_node_tick(s->nodes[i].cs);
    for (unsigned i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].up)
            cs_node_flush(s->nodes[i].cs);
    for (unsigned i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].doomed)
            node_crash(s, i);
    check_lease_reads(s);
    s->now++;
}

static void sim_run(struct sim *s, uint64_t ms)
{
    for (uint64_t t = 0; t < ms; t++)
        sim_step(s);
}

struct pctx {
    struct sim *sim;
    unsigned node;
    uint32_t group;
    uint64_t tag, invoked;
    struct cmd c;
};

static void on_done(void *arg, int status, uint64_t index, void *result)
{
    struct pctx *p = arg;
    struct sim *s = p->sim;

    s->in_flight--;
    if (s->nodes[p->node].doomed) {
        /* told after the crash that doomed the node: the client never hears it */
        s->unknown++;
        free(p);
        return;
    }
    if (status == 0) {
        const struct result *r = result;
        cr_assert_not_null(r);
        if (s->n_acks == s->cap_acks) {
            s->cap_acks = s->cap_acks ? s->cap_acks * 2 : 256;
            s->acks = realloc(s->acks, s->cap_acks * sizeof *s->acks);
        }
        struct ack *a = &s->acks[s->n_acks++];
        a->group = p->group;
        a->index = index;
        a->tag = p->tag;
        a->invoked = p->invoked;
        a->acked = s->now;
        a->key = p->c.key;
        a->value = p->c.value;
        a->status = r->status;
        /* durability of the choice: the acknowledged command is the one chosen there */
        cr_assert_eq(s->chosen[p->group][index].tag, p->tag,
                     "acknowledged tag %llu at index %llu, but %llu was chosen",
                     (unsigned long long)p->tag, (unsigned long long)index,
                     (unsigned long long)s->chosen[p->group][index].tag);
    } else {
        cr_assert(status == CAIRN_EUNKNOWN || status == CAIRN_ENOTLEADER, "status %d", status);
        s->unknown++;
    }
    free(p);
}

/* Propose a write through node only (UINT32_MAX: whichever node thinks it leads). */
static bool propose_via(struct sim *s, unsigned only, uint32_t group, bool cas)
{
    for (unsigned i = 0; i < s->n_nodes; i++) {
        struct node *nd = &s->nodes[i];
        if (only != UINT32_MAX && i != only)
            continue;
        if (!nd->up)
            continue;
        struct cs_group *g = cs_group_find(nd->cs, group);
        if (!cs_group_is_leader(g))
            continue;
        struct pctx *p = calloc(1, sizeof *p);
        p->sim = s;
        p->node = i;
        p->group = group;
        p->tag = s->next_tag++;
        p->invoked = s->now;
        p->c.key = (uint32_t)(rnd(s) % KEYS);
        p->c.expect = cas ? gs(&nd->dur, group)->ver[p->c.key] : ANY;
        p->c.value = rnd(s);
        p->c.tag = p->tag;
        int rc = cs_propose(g, &p->c, sizeof p->c, on_done, p);
        if (rc == 0) {
            s->in_flight++;
            return true;
        }
        cr_assert_eq(rc, CAIRN_ENOTLEADER);
        s->refused++;
        free(p);
    }
    return false;
}

static bool propose(struct sim *s, uint32_t group, bool cas)
{
    return propose_via(s, UINT32_MAX, group, cas);
}

/* Heal everything, let the cluster settle, and check that every node holds the same state,
 * with every acknowledged write in it, and that acknowledgements respect real time. */
static void heal_and_check(struct sim *s)
{
    memset(s->cut, 0, sizeof s->cut);
    s->doom_permille = 0;
    s->drop_pct = 0;
    s->dup_pct = 0;
    for (unsigned i = 0; i < s->n_nodes; i++)
        if (!s->nodes[i].up)
            node_start(s, i, false);
    /* One more write per group after healing pushes every earlier entry to commit. */
    for (int round = 0; round < 40; round++) {
        sim_run(s, 100);
        bool all = true;
        for (uint32_t gi = 0; gi < s->n_groups; gi++)
            all = all && propose(s, gi, false);
        if (all)
            break;
    }
    sim_run(s, 3000);
    cr_assert_eq(s->in_flight, 0, "%u proposals never completed", s->in_flight);
    for (uint32_t gi = 0; gi < s->n_groups; gi++) {
        const struct gstate *ref = gs(&s->nodes[0].dur, gi);
        for (unsigned i = 1; i < s->n_nodes; i++) {
            const struct gstate *o = gs(&s->nodes[i].dur, gi);
            cr_assert_eq(memcmp(ref->ver, o->ver, sizeof ref->ver), 0,
                         "group %u: node %u differs from node 0", gi, i);
            cr_assert_eq(memcmp(ref->val, o->val, sizeof ref->val), 0);
        }
        for (size_t a = 0; a < s->n_acks; a++) {
            const struct ack *ak = &s->acks[a];
            if (ak->group != gi || ak->status != 0)
                continue;
            cr_assert_geq(ref->ver[ak->key], ak->index, "acknowledged write lost");
            if (ref->ver[ak->key] == ak->index)
                cr_assert_eq(ref->val[ak->key], ak->value);
        }
    }
    /* real-time order: acknowledged before invoked => lower index */
    for (size_t a = 0; a < s->n_acks; a++)
        for (size_t b = 0; b < s->n_acks; b++)
            if (s->acks[a].group == s->acks[b].group && s->acks[a].acked < s->acks[b].invoked)
                cr_assert_lt(s->acks[a].index, s->acks[b].index);
}

static unsigned leader_of(struct sim *s, uint32_t group)
{
    for (unsigned i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].up && cs_group_is_leader(cs_group_find(s->nodes[i].cs, group)))
            return i;
    return UINT32_MAX;
}

static void isolate(struct sim *s, unsigned i, bool cut)
{
    for (unsigned j = 0; j < s->n_nodes; j++) {
        if (j == i)
            continue;
        s->cut[i][j] = cut;
        s->cut[j][i] = cut;
    }
}

/* ---- tests ---- */

Test(cs, elects_a_leader_and_replicates)
{
    struct sim s;

    sim_init(&s, 3, 1, 1);
    sim_run(&s, 2000);
    cr_assert_neq(leader_of(&s, 0), UINT32_MAX, "no leader after 2 s");
    for (int i = 0; i < 200; i++) {
        propose(&s, 0, i % 2);
        sim_run(&s, 3);
    }
    sim_run(&s, 1000);
    cr_assert_eq(s.n_acks, 200, "%zu of 200 acknowledged", s.n_acks);
    cr_assert_gt(s.lease_reads, 0, "the leader never held a lease");
    heal_and_check(&s);
    sim_fini(&s);
}

Test(cs, leader_loss_mid_commit)
{
    struct sim s;

    sim_init(&s, 5, 1, 2);
    sim_run(&s, 2000);
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < 30; i++) {
            propose(&s, 0, true);
            sim_run(&s, 1);
        }
        /* The leader dies with proposals in every stage: in its log only, sent, committed
         * but not yet acknowledged. */
        unsigned l = leader_of(&s, 0);
        cr_assert_neq(l, UINT32_MAX);
        node_crash(&s, l);
        sim_run(&s, 1500);
        node_start(&s, l, false);
        sim_run(&s, 500);
    }
    cr_assert_gt(s.unknown, 0, "no proposal was caught by a crash");
    heal_and_check(&s);
    sim_fini(&s);
}

Test(cs, duplicate_reordered_and_lost_messages)
{
    struct sim s;

    sim_init(&s, 5, 2, 3);
    s.dup_pct = 20;
    s.drop_pct = 10;
    s.max_delay = 40; /* reorders: a batch may overtake the previous ones */
    sim_run(&s, 3000);
    for (int i = 0; i < 400; i++) {
        propose(&s, (uint32_t)(i % 2), i % 3 == 0);
        sim_run(&s, 5);
    }
    sim_run(&s, 2000);
    cr_assert_gt(s.n_acks, 100, "only %zu acknowledged", s.n_acks);
    heal_and_check(&s);
    sim_fini(&s);
}

Test(cs, lagging_replica_catches_up_from_a_snapshot)
{
    struct sim s;
    struct cs_stats st;

    sim_init(&s, 3, 1, 4);
    sim_run(&s, 2000);
    unsigned l = leader_of(&s, 0);
    unsigned lag = (l + 1) % 3;
    node_crash(&s, lag);
    /* far more entries than the log keeps (threshold 32, trailing 8) */
    for (int i = 0; i < 300; i++) {
        propose(&s, 0, false);
        sim_run(&s, 2);
    }
    sim_run(&s, 500);
    node_start(&s, lag, false);
    sim_run(&s, 2000);
    cs_node_stats(s.nodes[lag].cs, &st);
    cr_assert_gt(st.votes_held + st.msgs_in, 0);
    cr_assert_geq(gs(&s.nodes[lag].dur, 0)->applied, 300,
                  "the lagging node applied only %llu",
                  (unsigned long long)gs(&s.nodes[lag].dur, 0)->applied);
    heal_and_check(&s);
    sim_fini(&s);
}

Test(cs, a_partitioned_leader_loses_its_uncommitted_entries)
{
    struct sim s;

    sim_init(&s, 5, 1, 5);
    sim_run(&s, 2000);
    unsigned old = leader_of(&s, 0);
    cr_assert_neq(old, UINT32_MAX);
    isolate(&s, old, true);
    /* The old leader still takes proposals: they reach its log and nothing else. */
    size_t acked_before = s.n_acks;
    for (int i = 0; i < 10; i++) {
        struct cs_group *g = cs_group_find(s.nodes[old].cs, 0);
        if (!cs_group_is_leader(g))
            break;
        struct pctx *p = calloc(1, sizeof *p);
        p->sim = &s;
        p->node = old;
        p->tag = s.next_tag++;
        p->invoked = s.now;
        p->c.key = 1;
        p->c.expect = ANY;
        p->c.value = 7;
        p->c.tag = p->tag;
        cr_assert_eq(cs_propose(g, &p->c, sizeof p->c, on_done, p), 0);
        s.in_flight++;
        sim_run(&s, 5);
    }
    /* The majority elects a newer leader, with a higher term, and writes. */
    sim_run(&s, 2000);
    unsigned nl = UINT32_MAX;
    for (unsigned i = 0; i < 5; i++)
        if (i != old && cs_group_is_leader(cs_group_find(s.nodes[i].cs, 0)))
            nl = i;
    cr_assert_neq(nl, UINT32_MAX, "the majority elected no leader");
    cr_assert_gt(cs_group_term(cs_group_find(s.nodes[nl].cs, 0)),
                 cs_group_term(cs_group_find(s.nodes[old].cs, 0)) - 1);
    cr_assert_eq(cs_group_read_ok(cs_group_find(s.nodes[old].cs, 0)) == 0, false,
                 "the cut-off leader still claims a lease");
    for (int i = 0; i < 20; i++) {
        propose(&s, 0, false);
        sim_run(&s, 5);
    }
    sim_run(&s, 500);
    cr_assert_eq(s.n_acks - acked_before, 20, "the old leader acknowledged while cut off");
    isolate(&s, old, false);
    sim_run(&s, 2000);
    cr_assert_eq(s.in_flight, 0);
    heal_and_check(&s);
    sim_fini(&s);
}

/* A lease rests on the promise of the followers that echoed it: no vote for anyone else
 * until their election timer runs out.  A follower that crashes forgets the promise, so a
 * restarted node holds its vote for election_ms.  Here the leader's lease rests on one
 * follower f, a third node n has been cut off from the leader (so it campaigns again and
 * again), and f restarts just after echoing the leader: if f voted at once, n would lead
 * and acknowledge writes while the old leader still trusts its lease, and the lease check
 * in sim_step() would catch the old leader answering reads without them. */
Test(cs, a_restarted_node_holds_its_vote)
{
    uint64_t held = 0;

    for (uint64_t seed = 20; seed < 30; seed++) {
        struct sim s;

        sim_init(&s, 3, 1, seed);
        sim_run(&s, 2000);
        unsigned l = leader_of(&s, 0);
        cr_assert_neq(l, UINT32_MAX);
        unsigned n = (l + 1) % 3, f = (l + 2) % 3;
        s.cut[n][l] = s.cut[l][n] = true;
        sim_run(&s, 1500);
        cr_assert_eq(leader_of(&s, 0), l, "the follower did not keep the leader in place");
        node_crash(&s, f);
        s.cut[l][f] = true; /* f hears nothing more from the old leader */
        node_start(&s, f, false);
        for (int t = 0; t < 600; t++) {
            propose_via(&s, n, 0, false);
            sim_step(&s);
        }
        struct cs_stats st;
        cs_node_stats(s.nodes[f].cs, &st);
        held += st.votes_held;
        memset(s.cut, 0, sizeof s.cut);
        heal_and_check(&s);
        sim_fini(&s);
    }
    cr_assert_gt(held, 0, "nobody asked a restarted node for its vote");
}

/* Sim milliseconds from proposing one write through node l to its acknowledgement, for n
 * writes one after another; returns the median. */
static uint64_t commit_ms(struct sim *s, unsigned l, unsigned n)
{
    uint64_t lat[64];

    cr_assert_leq(n, 64);
    for (unsigned i = 0; i < n; i++) {
        size_t acks = s->n_acks;
        uint64_t t0 = s->now;

        cr_assert(propose_via(s, l, 0, false), "node %u no longer leads", l);
        while (s->n_acks == acks && s->now - t0 < 5000)
            sim_step(s);
        cr_assert_gt(s->n_acks, acks, "a write was not acknowledged in 5 s");
        lat[i] = s->now - t0;
        sim_run(s, 1 + i % 7); /* proposals land at every phase of the heartbeat */
    }
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && lat[j - 1] > lat[j]; j--) {
            uint64_t x = lat[j];
            lat[j] = lat[j - 1];
            lat[j - 1] = x;
        }
    return lat[n / 2];
}

/* With a follower dead (kill -9), a write commits as fast as with all alive: the leader waits
 * for a majority of the live followers' answers, never for the dead one's heartbeat slot, a
 * timer tick or a retry.  Once, metadata calls took ~30 times longer with one D-node dead (the
 * transport spun dialling it: tests/transport); this keeps consensus out of such a slowdown,
 * for groups of 3 and of 5. */
Test(cs, a_dead_follower_does_not_slow_commits)
{
    for (unsigned n = 3; n <= 5; n += 2) {
        struct sim s;

        sim_init(&s, n, 1, 40 + n);
        sim_run(&s, 2000);
        unsigned l = leader_of(&s, 0);
        cr_assert_neq(l, UINT32_MAX);
        uint64_t healthy = commit_ms(&s, l, 41);
        node_crash(&s, (l + 1) % n);
        sim_run(&s, 1000); /* past several heartbeats, and the leader's check of its quorum */
        cr_assert_eq(leader_of(&s, 0), l, "the leader lost its place");
        uint64_t degraded = commit_ms(&s, l, 41);
        cr_log_info("%u voters: a commit takes %llu ms, %llu with a follower dead (heartbeat "
                    "%u ms)",
                    n, (unsigned long long)healthy, (unsigned long long)degraded,
                    s.cfg.heartbeat_ms);
        cr_assert_leq(degraded, healthy + 1,
                      "%u voters: %llu ms with a follower dead, %llu with all", n,
                      (unsigned long long)degraded, (unsigned long long)healthy);
        cr_assert_lt(degraded * 5, s.cfg.heartbeat_ms);
        heal_and_check(&s);
        sim_fini(&s);
    }
}

Test(cs, membership_changes_move_a_replica)
{
    struct sim s;
    int status = 1;

    sim_init(&s, 4, 1, 7);
    /* Start with three voters; node 4 joins later. */
    node_crash(&s, 3);
    store_free(&s.nodes[3].work);
    store_free(&s.nodes[3].dur);
    for (unsigned i = 0; i < 3; i++) {
        node_crash(&s, i);
        store_free(&s.nodes[i].work);
        store_free(&s.nodes[i].dur);
    }
    s.n_nodes = 3;
    for (unsigned i = 0; i < 3; i++)
        node_start(&s, i, true);
    s.n_nodes = 4;
    node_start(&s, 3, false); /* no bootstrap: waits to be contacted */
    sim_run(&s, 2000);
    for (int i = 0; i < 100; i++) {
        propose(&s, 0, false);
        sim_run(&s, 2);
    }
    sim_run(&s, 300);

    void cb(void *arg, int rc)
    {
        *(int *)arg = rc;
    }
    unsigned l = leader_of(&s, 0);
    struct cs_group *g = cs_group_find(s.nodes[l].cs, 0);
    cr_assert_eq(cs_group_add(g, 4, cb, &status), 0);
    sim_run(&s, 500);
    cr_assert_eq(status, 0);
    status = 1;
    cr_assert_eq(cs_group_assign(g, 4, CS_VOTER, cb, &status), 0);
    sim_run(&s, 2000);
    cr_assert_eq(status, 0, "promotion: %d", status);
    /* remove a follower that is not the leader */
    unsigned victim = (l + 1) % 3;
    status = 1;
    cr_assert_eq(cs_group_remove(g, s.nodes[victim].id, cb, &status), 0);
    sim_run(&s, 1000);
    cr_assert_eq(status, 0);
    uint64_t ids[8];
    unsigned nm = cs_group_members(g, ids, NULL, 8);
    cr_assert_eq(nm, 3);
    node_crash(&s, victim);
    for (int i = 0; i < 50; i++) {
        propose(&s, 0, false);
        sim_run(&s, 2);
    }
    sim_run(&s, 500);
    /* the new member holds everything */
    const struct gstate *a = gs(&s.nodes[3].dur, 0), *b = gs(&s.nodes[l].dur, 0);
    cr_assert_eq(memcmp(a->ver, b->ver, sizeof a->ver), 0);
    cr_assert_eq(a->applied, b->applied);
    s.n_nodes = 4;
    sim_fini(&s);
}

/* Power failures in the middle of commits: whatever a node wrote in the round that was
 * syncing is lost, and nothing it would have sent after that leaves.  A vote, an
 * acknowledgement of entries or an answer to a proposer that left before its writes were
 * durable would show up here as a lost write or two leaders choosing different commands. */
Test(cs, crashes_inside_commits, .timeout = 120)
{
    size_t acked = 0;

    for (uint64_t seed = 40; seed < 60; seed++) {
        struct sim s;

        sim_init(&s, 3, 1, seed);
        s.doom_permille = 15;
        for (int i = 0; i < 600; i++) {
            propose(&s, 0, i % 2);
            sim_run(&s, 3);
            for (unsigned v = 0; v < s.n_nodes; v++)
                if (!s.nodes[v].up && rnd(&s) % 100 < 5)
                    node_start(&s, v, false);
        }
        acked += s.n_acks;
        heal_and_check(&s);
        sim_fini(&s);
    }
    cr_assert_gt(acked, 200, "only %zu writes acknowledged in all", acked);
}

Test(cs, random_faults, .timeout = 240)
{
    for (uint64_t seed = 100; seed < 140; seed++) {
        struct sim s;

        sim_init(&s, 5, 2, seed);
        s.doom_permille = 2;
        sim_run(&s, 1500);
        for (int step = 0; step < 60; step++) {
            unsigned r = pct(&s);
            unsigned v = (unsigned)(rnd(&s) % s.n_nodes);
            if (r < 15)
                node_crash(&s, v);
            else if (r < 30 && !s.nodes[v].up)
                node_start(&s, v, false);
            else if (r < 40)
                isolate(&s, v, true);
            else if (r < 50)
                isolate(&s, v, false);
            else if (r < 55)
                s.dup_pct = (unsigned)(rnd(&s) % 30);
            else if (r < 60)
                s.drop_pct = (unsigned)(rnd(&s) % 20);
            s.max_delay = (unsigned)(rnd(&s) % 20);
            for (int i = 0; i < 20; i++) {
                propose(&s, (uint32_t)(rnd(&s) % 2), pct(&s) < 50);
                sim_run(&s, 1 + rnd(&s) % 10);
            }
        }
        heal_and_check(&s);
        cr_log_info("seed %llu: %zu acknowledged, %llu unknown, %llu lease checks",
                    (unsigned long long)seed, s.n_acks, (unsigned long long)s.unknown,
                    (unsigned long long)s.lease_reads);
        sim_fini(&s);
    }
}

Test(cs, bad_input_changes_nothing)
{
    struct sim s;
    uint8_t buf[512];

    sim_init(&s, 3, 1, 9);
    sim_run(&s, 2000);
    for (int i = 0; i < 100; i++)
        propose(&s, 0, false), sim_run(&s, 2);
    sim_run(&s, 500);
    for (int i = 0; i < 20000; i++) {
        size_t len = rnd(&s) % sizeof buf;
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)rnd(&s);
        cs_node_recv(s.nodes[i % 3].cs, buf, len);
    }
    struct cs_stats st;
    cs_node_stats(s.nodes[0].cs, &st);
    cr_assert_gt(st.bad_in, 0);
    heal_and_check(&s);
    sim_fini(&s);
}

/* libraft decodes membership entries without bounds checks, so the wire checks them first:
 * what libraft encodes passes, anything cut short or out of range does not. */
Test(cs, membership_entries_are_checked_before_libraft_sees_them)
{
    struct raft_configuration c;
    struct raft_buffer buf;

    raft_configuration_init(&c);
    cr_assert_eq(raft_configuration_add(&c, 1, "0000000000000001", RAFT_VOTER), 0);
    cr_assert_eq(raft_configuration_add(&c, 0x1234567890ull, "0000001234567890", RAFT_STANDBY), 0);
    cr_assert_eq(raft_configuration_encode(&c, &buf), 0);
    cr_assert(cs_wire_conf_entry_ok(buf.base, buf.len));
    for (size_t cut = 0; cut < buf.len; cut++) {
        /* padding after the last role byte may be cut without harm; anything before not */
        size_t needed = 1 + 8 + (8 + 17 + 1) * 2;
        if (cut < needed)
            cr_assert(!cs_wire_conf_entry_ok(buf.base, cut), "accepted %zu of %zu bytes", cut,
                      buf.len);
    }
    uint8_t *p = buf.base;
    p[0] = 2; /* unknown format */
    cr_assert(!cs_wire_conf_entry_ok(buf.base, buf.len));
    p[0] = 1;
    p[1] = 0xff; /* 255 servers */
    cr_assert(!cs_wire_conf_entry_ok(buf.base, buf.len));
    raft_free(buf.base);
    raft_configuration_close(&c);
}
