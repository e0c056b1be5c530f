/*
 * gc.c - the garbage sweeper (see gc.h).
 */
#include "repair/gc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/clock.h"
#include "common/log.h"
#include "meta/ns.h"
#include "meta/rec.h"

#define TAG "gc"
#define SCAN_PAGE 256u

/* ---- a set of 3 x 64-bit keys (never all zero), open addressing ---- */

struct kset {
    uint64_t (*keys)[3];
    uint32_t *vals;
    size_t cap; /* a power of two, or 0 */
    size_t n;
};

static uint64_t key_hash(const uint64_t k[3])
{
    uint64_t x = k[0] * 0x9e3779b97f4a7c15ull ^ k[1] * 0xc2b2ae3d27d4eb4full ^ k[2];

    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 29);
}

static bool key_empty(const uint64_t k[3])
{
    return !k[0] && !k[1] && !k[2];
}

static size_t kset_slot(const struct kset *s, const uint64_t k[3])
{
    size_t i = key_hash(k) & (s->cap - 1);

    while (!key_empty(s->keys[i]) && memcmp(s->keys[i], k, sizeof(s->keys[i])))
        i = (i + 1) & (s->cap - 1);
    return i;
}

static int kset_add(struct kset *s, const uint64_t k[3], uint32_t val)
{
    size_t i;

    if ((s->n + 1) * 2 > s->cap) { /* at most half full */
        struct kset g = {.cap = s->cap ? s->cap * 2 : 1024};

        g.keys = calloc(g.cap, sizeof(*g.keys));
        g.vals = calloc(g.cap, sizeof(*g.vals));
        if (!g.keys || !g.vals) {
            free(g.keys);
            free(g.vals);
            return CAIRN_ENOMEM;
        }
        for (size_t j = 0; j < s->cap; j++) {
            if (key_empty(s->keys[j]))
                continue;
            i = kset_slot(&g, s->keys[j]);
            memcpy(g.keys[i], s->keys[j], sizeof(g.keys[i]));
            g.vals[i] = s->vals[j];
        }
        g.n = s->n;
        free(s->keys);
        free(s->vals);
        *s = g;
    }
    i = kset_slot(s, k);
    if (key_empty(s->keys[i])) {
        memcpy(s->keys[i], k, sizeof(s->keys[i]));
        s->n++;
    }
    s->vals[i] = val;
    return 0;
}

static bool kset_has(const struct kset *s, const uint64_t k[3])
{
    return s->cap && !key_empty(s->keys[kset_slot(s, k)]);
}

static void kset_fini(struct kset *s)
{
    free(s->keys);
    free(s->vals);
    memset(s, 0, sizeof(*s));
}

/* ---- the sweeper ---- */

struct gc {
    struct kset prev; /* the last pass's candidates: {node id, stripe, gen << 32 | index} */
    bool have_prev;
};

int gc_create(struct gc **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : CAIRN_ENOMEM;
}

void gc_destroy(struct gc *g)
{
    if (!g)
        return;
    kset_fini(&g->prev);
    free(g);
}

struct mark {
    struct kset objs; /* {object, gen, 0} */
    int err;
};

static void mark_one(void *arg, uint64_t object, uint32_t gen)
{
    struct mark *m = arg;
    uint64_t k[3] = {object, gen, 0};

    if (!m->err)
        m->err = kset_add(&m->objs, k, 0);
}

static bool stopped(const struct gc_opts *o)
{
    return o->stop && *o->stop;
}

/* Every record of every shard: 0 only if all were read. */
static int mark_all(struct cl_cluster *cl, const struct gc_opts *o, struct mark *m)
{
    uint32_t shards = cl_cluster_shards(cl);

    for (uint32_t sh = 0; sh < shards; sh++) {
        uint8_t *from = NULL;
        uint32_t flen = 0;

        for (;;) {
            struct meta_scan pg;
            int rc;

            if (stopped(o)) {
                free(from);
                return CAIRN_ECANCELED;
            }
            /* A shard key below the shard count is that shard (meta/rec.h). */
            rc = meta_rec_scan(cl, sh, from ? from : (const uint8_t *)"", flen, NULL, 0,
                               SCAN_PAGE, &pg);
            free(from);
            from = NULL;
            if (rc) {
                log_warn(TAG, "shard %u: %s: the mark is incomplete, nothing is swept", sh,
                         cairn_strerror(rc));
                return rc;
            }
            for (unsigned e = 0; e < pg.n && !m->err; e++) {
                rc = meta_entry_objects(&pg.entries[e], mark_one, m);
                if (rc) {
                    log_warn(TAG, "shard %u: a record that names objects cannot be decoded: "
                             "the mark is incomplete, nothing is swept", sh);
                    m->err = rc;
                }
            }
            if (m->err || !pg.more || !pg.next) {
                meta_scan_fini(&pg);
                if (m->err)
                    return m->err;
                break;
            }
            from = pg.next; /* taken over from the page */
            flen = pg.next_len;
            pg.next = NULL;
            meta_scan_fini(&pg);
        }
    }
    return 0;
}

static uint64_t wall_ms(void)
{
    return (uint64_t)(cairn_wall_ns() / 1000000);
}

int gc_pass(struct gc *g, struct cl_cluster *cl, const struct gc_opts *o, struct gc_result *res)
{
    uint64_t grace = o->grace_ms ? o->grace_ms : GC_DEFAULT_GRACE_MS, t_mark = wall_ms();
    struct mark m = {{0}};
    struct kset cand = {0};
    unsigned n;
    int rc;

    memset(res, 0, sizeof(*res));
    (void)cl_cluster_refresh(cl);
    cl_cluster_probe(cl); /* list only what answers: the others' garbage waits */
    rc = mark_all(cl, o, &m);
    if (rc) {
        kset_fini(&m.objs);
        return rc == CAIRN_ECANCELED || rc == CAIRN_ENOMEM ? rc : 0;
    }
    res->complete = true;
    res->objects = m.objs.n;
    n = cl_cluster_dnodes(cl);
    for (unsigned i = 0; i < n && !rc; i++) {
        uint64_t node = cl_cluster_node_id(cl, i), cursor = 0;
        bool more = true;

        if (cl_cluster_node_down(cl, i)) {
            res->nodes_down++;
            continue;
        }
        while (more && !rc) {
            Cairn__FragList *fl = NULL;
            int lr;

            if (stopped(o)) {
                rc = CAIRN_ECANCELED;
                break;
            }
            lr = cl_cluster_frag_list(cl, i, cursor, false, &fl);
            if (lr) {
                log_warn(TAG, "D-node %s: listing its fragments: %s (its garbage waits)",
                         cl_cluster_dnode_addr(cl, i), cairn_strerror(lr));
                res->nodes_down++;
                break;
            }
            for (size_t j = 0; j < fl->n_frags && !rc; j++) {
                const Cairn__FragInfo *f = fl->frags[j];
                uint64_t ok[3] = {f->object, f->id ? f->id->gen : 0, 0};
                uint64_t ck[3];

                res->fragments++;
                if (!f->object || !f->id) {
                    res->unowned++;
                    continue;
                }
                if (f->birth_ms + grace > t_mark) {
                    res->young++;
                    continue;
                }
                if (kset_has(&m.objs, ok))
                    continue;
                res->candidates++;
                ck[0] = node;
                ck[1] = f->id->stripe;
                ck[2] = (uint64_t)f->id->gen << 32 | f->id->index;
                if (kset_add(&cand, ck, f->len)) {
                    rc = CAIRN_ENOMEM;
                    break;
                }
                if (!g->have_prev || !kset_has(&g->prev, ck))
                    continue;
                /* Unreferenced in two marks in a row: garbage. */
                lr = cl_cluster_frag_del(cl, i, f->id->stripe, f->id->gen, f->id->index);
                if (lr == 0) {
                    res->deleted++;
                    res->bytes += f->len;
                } else if (lr != CAIRN_ENOENT) {
                    log_warn(TAG, "D-node %s: deleting fragment %016" PRIx64 ".%u.%u: %s",
                             cl_cluster_dnode_addr(cl, i), f->id->stripe, f->id->gen,
                             f->id->index, cairn_strerror(lr));
                }
            }
            cursor = fl->cursor;
            more = fl->more;
            cairn__frag_list__free_unpacked(fl, NULL);
        }
    }
    kset_fini(&m.objs);
    if (rc) {
        kset_fini(&cand);
        return rc;
    }
    /* This pass's candidates are what the next pass may delete. */
    kset_fini(&g->prev);
    g->prev = cand;
    g->have_prev = true;
    if (res->deleted || res->candidates)
        log_info(TAG, "pass: %" PRIu64 " objects referenced, %" PRIu64 " fragments listed, %"
                 PRIu64 " unreferenced, %" PRIu64 " deleted (%" PRIu64 " bytes)", res->objects,
                 res->fragments, res->candidates, res->deleted, res->bytes);
    return 0;
}
