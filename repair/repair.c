/*
 * repair.c - the repair service (see repair.h).
 */
#include "repair/repair.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/stripe.h"
#include "common/cairn.h"
#include "common/clock.h"
#include "common/log.h"
#include "map/map.h"
#include "meta/ns.h"
#include "meta/rec.h"
#include "repair/gc.h"

#define TAG "repair"
#define WORK_MAX 65536u   /* extents one shard pass takes on; the rest wait for the next pass */
#define SCAN_PAGE 256u    /* inode records per scan page */
#define RECORD_TRIES 8u   /* compare-and-set attempts to record one rebuild */
#define LOST_ROWS 4u      /* rp_status.left_by_lost */
#define BAD_MAX 65536u    /* corrupt fragments one pass takes on */

static uint64_t wall_ms(void)
{
    return (uint64_t)(cairn_wall_ns() / 1000000);
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* ---- one worker's pass ---- */

/* An extent with lost positions, as the scan found it. */
struct work {
    uint64_t ino;
    uint64_t object_id;
    uint32_t gen;
    unsigned lost; /* positions */
    uint64_t bytes; /* fragment bytes the lost positions hold */
    bool degraded;  /* positions are lost */
    bool bad;       /* fragments a D-node's scrub found corrupt */
};

/* A fragment a D-node reported corrupt (OP_FRAG_LIST, bad_only), by the owner in its header. */
struct bad {
    uint64_t object;
    uint32_t gen;
    uint32_t index;
    uint64_t stripe_no;
    uint64_t node;
};

/* A shard's record while a worker holds its lease. */
struct lease {
    uint32_t shard;
    uint64_t version; /* of the record, as last written by us */
    uint64_t renew_ms; /* monotonic: renew after this */
    Cairn__RepairShard rec;
    uint64_t by_lost[LOST_ROWS];
};

struct rp {
    struct cl_cluster *cl;
    const struct rp_opts *o;
    uint64_t owner;
    uint64_t rate;
    uint64_t t0_ms, moved; /* throttle: bytes moved since t0 */
    uint64_t probed_ms;    /* when the D-nodes were last pinged */
    struct bad *bad;       /* every live D-node's corrupt fragments, by object and gen */
    unsigned nbad;
};

static int bad_cmp(const void *a, const void *b)
{
    const struct bad *x = a, *y = b;

    if (x->object != y->object)
        return x->object < y->object ? -1 : 1;
    return x->gen != y->gen ? (x->gen < y->gen ? -1 : 1) : 0;
}

/* The first corrupt fragment of (object, gen) in r->bad, or NULL. */
static const struct bad *bad_find(const struct rp *r, uint64_t object, uint32_t gen)
{
    unsigned lo = 0, hi = r->nbad;

    while (lo < hi) { /* the first entry not below the key */
        unsigned mid = lo + (hi - lo) / 2;

        if (r->bad[mid].object < object ||
            (r->bad[mid].object == object && r->bad[mid].gen < gen))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->nbad && r->bad[lo].object == object && r->bad[lo].gen == gen ? &r->bad[lo]
                                                                               : NULL;
}

/* Ask every live D-node for the fragments its scrub found corrupt.  A fragment's header names
 * its object and stripe, so the shard scans find the records that place it. */
static void bad_collect(struct rp *r, struct rp_result *res)
{
    unsigned cap = 0, n = cl_cluster_dnodes(r->cl);

    for (unsigned i = 0; i < n; i++) {
        uint64_t cursor = 0;
        bool more = true;

        if (cl_cluster_node_down(r->cl, i))
            continue;
        while (more && r->nbad < BAD_MAX) {
            Cairn__FragList *fl = NULL;
            int rc = cl_cluster_frag_list(r->cl, i, cursor, true, &fl);

            if (rc) {
                log_warn(TAG, "D-node %s: listing its corrupt fragments: %s",
                         cl_cluster_dnode_addr(r->cl, i), cairn_strerror(rc));
                break;
            }
            for (size_t j = 0; j < fl->n_frags && r->nbad < BAD_MAX; j++) {
                const Cairn__FragInfo *f = fl->frags[j];

                res->bad++;
                if (!f->object || !f->id) {
                    log_warn(TAG, "D-node %s: a corrupt fragment without an owner in its header "
                             "(written before fragments carried one): left to the readers",
                             cl_cluster_dnode_addr(r->cl, i));
                    continue;
                }
                if (r->nbad == cap) {
                    unsigned ncap = cap ? cap * 2 : 64;
                    struct bad *nb = realloc(r->bad, ncap * sizeof(*nb));

                    if (!nb)
                        break;
                    r->bad = nb;
                    cap = ncap;
                }
                r->bad[r->nbad++] = (struct bad){.object = f->object, .gen = f->id->gen,
                                                 .index = f->id->index,
                                                 .stripe_no = f->stripe_no,
                                                 .node = cl_cluster_node_id(r->cl, i)};
            }
            cursor = fl->cursor;
            more = fl->more;
            cairn__frag_list__free_unpacked(fl, NULL);
        }
    }
    if (r->nbad)
        qsort(r->bad, r->nbad, sizeof(*r->bad), bad_cmp);
}

/* Keep the view's picture of which D-nodes are down fresh (a mark lasts CL_DOWN_MS): a rebuild
 * must not choose a dead node as its target, nor wait out a deadline on one per call. */
static void keep_probed(struct rp *r)
{
    if (cairn_now_ms() - r->probed_ms < CL_DOWN_MS * 4 / 5)
        return;
    cl_cluster_probe(r->cl);
    r->probed_ms = cairn_now_ms();
}

/* The object's length in bytes, from an extent that shows part of it. */
static uint64_t object_len(const Cairn__Extent *x)
{
    return x->obj_size ? x->obj_size : x->obj_offset + x->length;
}

static bool extent_place(const Cairn__Extent *x, struct cl_placement *pl)
{
    if (!x->n_nodes || x->n_nodes > CL_PLACE_MAX || x->n_nodes != (size_t)x->k + x->m)
        return false;
    memset(pl, 0, sizeof(*pl));
    pl->n = (unsigned)x->n_nodes;
    memcpy(pl->ids, x->nodes, x->n_nodes * sizeof(*x->nodes));
    pl->missing = x->missing;
    return true;
}

static bool same_place(const Cairn__Extent *x, const struct cl_placement *pl)
{
    return x->n_nodes == pl->n && x->missing == pl->missing &&
           !memcmp(x->nodes, pl->ids, pl->n * sizeof(*pl->ids));
}

/* Fragment bytes the positions in mask hold, about (a whole stripe's fragment each). */
static uint64_t lost_bytes(const Cairn__Extent *x, unsigned positions)
{
    struct ec_layout l = {.k = x->k, .m = x->m, .frag_size = x->frag_size};

    return ec_layout_stripes(&l, object_len(x)) * x->frag_size * positions;
}

/* Take shard's lease.  Returns 0 (held), CAIRN_EAGAIN (another worker holds it), CAIRN_EEXIST
 * (passed within o->fresh_ms), or an error. */
static int lease_take(struct rp *r, uint32_t shard, struct lease *ls)
{
    Cairn__RepairShard *got = NULL, init = CAIRN__REPAIR_SHARD__INIT;
    uint64_t now = wall_ms(), ver = 0;
    int rc = meta_repair_get(r->cl, shard, &got, &ver);

    if (rc && rc != CAIRN_ENOENT)
        return rc;
    memset(ls, 0, sizeof(*ls));
    ls->shard = shard;
    ls->rec = init;
    if (got) {
        /* The figures carry over (status shows them until this pass ends). */
        ls->rec.owner = got->owner;
        ls->rec.lease_until_ms = got->lease_until_ms;
        ls->rec.pass_end_ms = got->pass_end_ms;
        ls->rec.passes = got->passes;
        ls->rec.extents = got->extents;
        ls->rec.degraded = got->degraded;
        ls->rec.left = got->left;
        ls->rec.bytes_left = got->bytes_left;
        for (size_t i = 0; i < got->n_left_by_lost && i < LOST_ROWS; i++)
            ls->by_lost[i] = got->left_by_lost[i];
        ls->rec.rebuilt = got->rebuilt;
        ls->rec.rebuilt_bytes = got->rebuilt_bytes;
        ls->rec.rate_bps = got->rate_bps;
        cairn__repair_shard__free_unpacked(got, NULL);
    }
    ls->rec.n_left_by_lost = LOST_ROWS;
    ls->rec.left_by_lost = ls->by_lost;
    if (ls->rec.owner && ls->rec.owner != r->owner && ls->rec.lease_until_ms > now)
        return CAIRN_EAGAIN;
    if (r->o->fresh_ms && ls->rec.pass_end_ms + r->o->fresh_ms > now)
        return CAIRN_EEXIST;
    ls->rec.owner = r->owner;
    ls->rec.lease_until_ms = now + RP_LEASE_MS;
    rc = meta_repair_put(r->cl, shard, &ls->rec, ver, &ls->version);
    if (rc == CAIRN_ECONFLICT)
        return CAIRN_EAGAIN;
    ls->renew_ms = cairn_now_ms() + RP_LEASE_MS / 4;
    return rc;
}

/* Keep the lease: renewed when a quarter of it has passed.  CAIRN_ECANCELED: lost it. */
static int lease_keep(struct rp *r, struct lease *ls)
{
    int rc;

    if (r->o->stop && *r->o->stop)
        return CAIRN_ECANCELED;
    if (cairn_now_ms() < ls->renew_ms)
        return 0;
    ls->rec.lease_until_ms = wall_ms() + RP_LEASE_MS;
    rc = meta_repair_put(r->cl, ls->shard, &ls->rec, ls->version, &ls->version);
    if (rc == CAIRN_ECONFLICT) {
        log_warn(TAG, "shard %u: another worker took the repair lease; leaving the shard to it",
                 ls->shard);
        return CAIRN_ECANCELED;
    }
    if (!rc)
        ls->renew_ms = cairn_now_ms() + RP_LEASE_MS / 4;
    return rc;
}

/* Give the lease back; with done, record the pass (rec's figures were filled in). */
static void lease_give(struct rp *r, struct lease *ls, bool done)
{
    int rc;

    ls->rec.owner = 0;
    ls->rec.lease_until_ms = 0;
    if (done) {
        ls->rec.pass_end_ms = wall_ms();
        ls->rec.passes++;
    }
    rc = meta_repair_put(r->cl, ls->shard, &ls->rec, ls->version, NULL);
    if (rc)
        log_warn(TAG, "shard %u: giving the repair lease back: %s", ls->shard,
                 cairn_strerror(rc));
}

/* Stay under the rate: sleep until the bytes moved since the pass began fit it. */
static void throttle(struct rp *r, uint64_t moved)
{
    uint64_t due, now;

    r->moved += moved;
    due = r->t0_ms + r->moved * 1000 / r->rate;
    now = cairn_now_ms();
    while (now < due && !(r->o->stop && *r->o->stop)) {
        sleep_ms(due - now < 200 ? due - now : 200);
        now = cairn_now_ms();
    }
}

/* Delete the object's fragments at positions `positions` on nodes[p] (best effort: what
 * cannot be deleted stays as garbage for the sweeper). */
static void drop_frags(struct rp *r, const Cairn__Extent *x, unsigned positions,
                       const uint64_t *nodes, const char *what)
{
    struct ec_layout l = {.k = x->k, .m = x->m, .frag_size = x->frag_size};
    struct cl_placement d = {.n = x->k + x->m};
    int rc;

    for (unsigned p = 0; p < d.n; p++)
        d.ids[p] = (positions >> p) & 1u ? nodes[p] : 0;
    rc = cl_stripe_delete(r->cl, x->object_id, x->gen, &l, &d, object_len(x));
    if (rc)
        log_warn(TAG, "object %016llx: deleting %s fragments: %s (they stay as garbage)",
                 (unsigned long long)x->object_id, what, cairn_strerror(rc));
}

/* What a rebuild stored for an object no record shows any more. */
static void drop_rebuilt(struct rp *r, const Cairn__Extent *x, unsigned positions,
                         const uint64_t *targets)
{
    drop_frags(r, x, positions, targets, "rebuilt");
}

enum outcome { REBUILT, LEFT, GONE, FAILED };

/* Record the rebuilt positions in every extent of the object that still has placement pl. */
static enum outcome record(struct rp *r, const struct work *w, Cairn__Inode *in, uint64_t ver,
                           const Cairn__Extent *x0, const struct cl_placement *pl,
                           unsigned done, const uint64_t *targets)
{
    for (unsigned t = 0;; t++) {
        unsigned patched = 0, shown = 0;
        int rc;

        if (t) {
            in = NULL;
            rc = meta_inode_get(r->cl, w->ino, &in, &ver);
            if (rc == CAIRN_ENOENT) {
                drop_rebuilt(r, x0, done, targets);
                return GONE;
            }
            if (rc) {
                log_warn(TAG, "inode %016llx: reading it again: %s", (unsigned long long)w->ino,
                         cairn_strerror(rc));
                return FAILED;
            }
        }
        for (size_t i = 0; i < in->n_extents; i++) {
            Cairn__Extent *y = in->extents[i];

            if (y->object_id != w->object_id || y->gen != w->gen)
                continue;
            shown++;
            if (!same_place(y, pl))
                continue;
            for (unsigned p = 0; p < pl->n; p++) {
                if ((done >> p) & 1u) {
                    y->nodes[p] = targets[p];
                    y->missing &= ~(1u << p);
                }
            }
            patched++;
        }
        if (!patched) {
            /* A write or another worker changed the object's record: the next pass looks
             * again.  If nothing shows the object any more, its rebuilt fragments go. */
            if (!shown)
                drop_rebuilt(r, x0, done, targets);
            if (t)
                cairn__inode__free_unpacked(in, NULL);
            return GONE;
        }
        rc = meta_inode_put(r->cl, w->ino, in, ver, NULL);
        if (t)
            cairn__inode__free_unpacked(in, NULL);
        if (rc == 0)
            return REBUILT;
        if (rc != CAIRN_ECONFLICT || t + 1 == RECORD_TRIES) {
            log_warn(TAG, "inode %016llx: recording the rebuild of object %016llx: %s",
                     (unsigned long long)w->ino, (unsigned long long)w->object_id,
                     cairn_strerror(rc));
            return FAILED;
        }
    }
}

/* Rebuild the lost positions of one object.  *rebuilt and *bytes get what was stored and
 * recorded; *still the positions still lost when it returns LEFT. */
static enum outcome repair_one(struct rp *r, const struct work *w, unsigned *rebuilt,
                               uint64_t *bytes, unsigned *still, uint64_t *still_bytes)
{
    Cairn__Inode *in = NULL;
    const Cairn__Extent *x = NULL;
    struct cl_placement pl, tmp;
    uint64_t ver, targets[CL_PLACE_MAX] = {0}, stored = 0;
    uint32_t lost, todo = 0;
    enum outcome out = GONE;
    struct ec_layout l;
    int rc;

    *rebuilt = 0;
    *bytes = 0;
    rc = meta_inode_get(r->cl, w->ino, &in, &ver);
    if (rc == CAIRN_ENOENT)
        return GONE;
    if (rc) {
        log_warn(TAG, "inode %016llx: %s", (unsigned long long)w->ino, cairn_strerror(rc));
        return FAILED;
    }
    for (size_t i = 0; i < in->n_extents && !x; i++)
        if (in->extents[i]->object_id == w->object_id && in->extents[i]->gen == w->gen &&
            extent_place(in->extents[i], &pl))
            x = in->extents[i];
    if (!x)
        goto out;
    lost = cl_placement_lost(r->cl, &pl);
    if (!lost)
        goto out;
    l = (struct ec_layout){.k = x->k, .m = x->m, .frag_size = x->frag_size};
    tmp = pl;
    for (unsigned p = 0; p < pl.n; p++) {
        if (!((lost >> p) & 1u))
            continue;
        if (cl_placement_target(r->cl, w->object_id, &tmp, p, &targets[p]) == 0) {
            tmp.ids[p] = targets[p];
            todo |= 1u << p;
        }
    }
    *still = (unsigned)__builtin_popcount(lost & ~todo);
    *still_bytes = lost_bytes(x, *still);
    if (!todo) {
        /* Every pass meets these again until a node returns or is added: the pass's
         * summary counts them, the details are for debugging. */
        log_debug(TAG, "object %016llx: %u positions lost and no live D-node in a failure domain "
                  "it does not use yet; waiting for one", (unsigned long long)w->object_id,
                  (unsigned)__builtin_popcount(lost));
        out = LEFT;
        goto out;
    }
    rc = cl_stripe_rebuild(r->cl, w->object_id, w->gen, &l, &pl, object_len(x), todo, targets,
                           &stored);
    throttle(r, object_len(x) + stored);
    if (rc) {
        log_warn(TAG, "object %016llx of inode %016llx: rebuilding %u positions: %s",
                 (unsigned long long)w->object_id, (unsigned long long)w->ino,
                 (unsigned)__builtin_popcount(todo), cairn_strerror(rc));
        *still = (unsigned)__builtin_popcount(lost);
        *still_bytes = lost_bytes(x, *still);
        out = FAILED;
        goto out;
    }
    out = record(r, w, in, ver, x, &pl, todo, targets);
    if (out == REBUILT) {
        *rebuilt = (unsigned)__builtin_popcount(todo);
        *bytes = stored;
        log_info(TAG, "object %016llx of inode %016llx: rebuilt %u positions (%llu bytes)",
                 (unsigned long long)w->object_id, (unsigned long long)w->ino, *rebuilt,
                 (unsigned long long)stored);
        /* Positions that moved leave their old node: a draining node empties this way,
         * and a node that failed mid-write loses what it half-held.  A reader that still
         * has the old record rebuilds from parity meanwhile. */
        uint32_t moved = 0;

        for (unsigned p = 0; p < pl.n; p++) {
            bool kept = false;

            for (unsigned q = 0; q < pl.n; q++)
                kept |= ((todo >> q) & 1u) && targets[q] == pl.ids[p];
            if ((todo >> p) & 1u && pl.ids[p] && !kept)
                moved |= 1u << p;
        }
        if (moved)
            drop_frags(r, x, moved, pl.ids, "moved");
        if (*still)
            out = LEFT;
    } else if (out == FAILED) {
        *still = (unsigned)__builtin_popcount(lost);
        *still_bytes = lost_bytes(x, *still);
    }
out:
    cairn__inode__free_unpacked(in, NULL);
    return out;
}

/* Put back every corrupt fragment of the object that its placement still names: each one
 * stripe rebuilt from the other positions onto the same D-node, which replaces its bad copy.
 * Nothing in the record changes.  Returns how many were replaced (*bytes: their bytes);
 * *failed counts the ones that could not be. */
static unsigned repair_bad(struct rp *r, const struct work *w, uint64_t *bytes, unsigned *failed)
{
    Cairn__Inode *in = NULL;
    const Cairn__Extent *x = NULL;
    struct cl_placement pl;
    unsigned fixed = 0;
    uint64_t ver;
    int rc;

    *bytes = 0;
    rc = meta_inode_get(r->cl, w->ino, &in, &ver);
    if (rc) {
        if (rc != CAIRN_ENOENT)
            (*failed)++;
        return 0;
    }
    for (size_t i = 0; i < in->n_extents && !x; i++)
        if (in->extents[i]->object_id == w->object_id && in->extents[i]->gen == w->gen &&
            extent_place(in->extents[i], &pl))
            x = in->extents[i];
    for (const struct bad *b = x ? bad_find(r, w->object_id, w->gen) : NULL;
         b && b < r->bad + r->nbad && b->object == w->object_id && b->gen == w->gen; b++) {
        struct ec_layout l = {.k = x->k, .m = x->m, .frag_size = x->frag_size};
        unsigned p = (unsigned)((b->stripe_no + b->index) % pl.n);
        uint64_t targets[CL_PLACE_MAX] = {0}, stored = 0;

        /* A position moved elsewhere or lost is not this copy's to fix: the fragment is
         * garbage, or the position is rebuilt whole. */
        if (b->index >= pl.n || pl.ids[p] != b->node ||
            ((pl.missing | cl_placement_lost(r->cl, &pl)) >> p) & 1u)
            continue;
        targets[p] = b->node;
        rc = cl_stripe_rebuild_range(r->cl, w->object_id, w->gen, &l, &pl, object_len(x),
                                     b->stripe_no, b->stripe_no + 1, 1u << p, targets, &stored);
        throttle(r, (uint64_t)x->k * x->frag_size + stored);
        if (rc) {
            log_warn(TAG, "object %016llx stripe %llu: replacing the corrupt fragment %u: %s",
                     (unsigned long long)w->object_id, (unsigned long long)b->stripe_no,
                     b->index, cairn_strerror(rc));
            (*failed)++;
            continue;
        }
        log_info(TAG, "object %016llx stripe %llu: corrupt fragment %u replaced (%llu bytes)",
                 (unsigned long long)w->object_id, (unsigned long long)b->stripe_no, b->index,
                 (unsigned long long)stored);
        fixed++;
        *bytes += stored;
    }
    cairn__inode__free_unpacked(in, NULL);
    return fixed;
}

static int work_cmp(const void *a, const void *b)
{
    const struct work *x = a, *y = b;

    /* Least redundancy left first. */
    return x->lost != y->lost ? (x->lost < y->lost ? 1 : -1) : 0;
}

/* Visit every inode record of shard, a page at a time: page (may be NULL) runs before each
 * page and visit on every inode that decodes; either may stop the scan with an error, which
 * is returned. */
static int scan_inodes(struct cl_cluster *cl, uint32_t shard, int (*page)(void *),
                       int (*visit)(void *, uint64_t, const Cairn__Inode *), void *arg)
{
    uint64_t from = 0;
    int rc;

    for (;;) {
        struct meta_scan pg;

        rc = page ? page(arg) : 0;
        if (rc)
            return rc;
        rc = meta_inode_scan(cl, shard, from, SCAN_PAGE, &pg);
        if (rc)
            return rc;
        for (unsigned e = 0; e < pg.n && !rc; e++) {
            uint64_t ino;
            Cairn__Inode *in = meta_inode_of_entry(&pg.entries[e], &ino);

            if (in) {
                rc = visit(arg, ino, in);
                cairn__inode__free_unpacked(in, NULL);
            }
        }
        if (rc || !pg.more || !pg.next || pg.next_len != 9) {
            meta_scan_fini(&pg);
            return rc;
        }
        from = 0;
        for (unsigned b = 1; b < 9; b++)
            from = (from << 8) | pg.next[b];
        meta_scan_fini(&pg);
    }
}

/* A pass's scan of one shard: the extents with lost positions or corrupt fragments, as work. */
struct collect {
    struct rp *r;
    struct lease *ls;
    struct work *wv; /* malloc'd, nw of cap */
    unsigned nw, cap;
    uint64_t extents;
};

static int collect_page(void *arg)
{
    struct collect *c = arg;

    keep_probed(c->r);
    return lease_keep(c->r, c->ls);
}

static int collect_inode(void *arg, uint64_t ino, const Cairn__Inode *in)
{
    struct collect *c = arg;

    for (size_t i = 0; i < in->n_extents; i++) {
        const Cairn__Extent *x = in->extents[i];
        struct cl_placement pl;
        uint32_t lost;
        bool bad;

        if (!extent_place(x, &pl))
            continue;
        c->extents++;
        lost = cl_placement_lost(c->r->cl, &pl);
        bad = c->r->nbad && bad_find(c->r, x->object_id, x->gen);
        if ((!lost && !bad) || c->nw == WORK_MAX)
            continue;
        /* Extents showing pieces of one object come in a row: one work item. */
        if (c->nw && c->wv[c->nw - 1].ino == ino && c->wv[c->nw - 1].object_id == x->object_id)
            continue;
        if (c->nw == c->cap) {
            unsigned ncap = c->cap ? c->cap * 2 : 64;
            struct work *nv = realloc(c->wv, ncap * sizeof(*nv));

            if (!nv)
                return CAIRN_ENOMEM;
            c->wv = nv;
            c->cap = ncap;
        }
        /* A corrupt fragment costs its stripe one position: it sorts with the extents that
         * lost one. */
        c->wv[c->nw++] = (struct work){.ino = ino,
                                       .object_id = x->object_id,
                                       .gen = x->gen,
                                       .lost = lost ? (unsigned)__builtin_popcount(lost) : 1u,
                                       .bytes = lost_bytes(x, (unsigned)__builtin_popcount(lost)),
                                       .degraded = lost != 0,
                                       .bad = bad};
    }
    return 0;
}

/* Collect the shard's extents with lost positions into *wv (malloc'd, *nw of them; set even
 * when an error stops the scan, for the caller to free). */
static int shard_scan(struct rp *r, struct lease *ls, struct work **wv, unsigned *nw,
                      uint64_t *extents)
{
    struct collect c = {.r = r, .ls = ls};
    int rc = scan_inodes(r->cl, ls->shard, collect_page, collect_inode, &c);

    *wv = c.wv;
    *nw = c.nw;
    *extents += c.extents;
    return rc;
}

/* One shard, under its lease. */
static int shard_pass(struct rp *r, struct lease *ls, struct rp_result *res)
{
    struct work *wv = NULL;
    unsigned nw = 0;
    uint64_t extents = 0, rebuilt = 0, bytes = 0, t0 = cairn_now_ms();
    int rc = shard_scan(r, ls, &wv, &nw, &extents);

    if (rc)
        goto out;
    if (nw) /* qsort wants a non-null array even for none */
        qsort(wv, nw, sizeof(*wv), work_cmp);
    ls->rec.extents = extents;
    ls->rec.degraded = nw;
    ls->rec.left = 0;
    ls->rec.bytes_left = 0;
    memset(ls->by_lost, 0, sizeof(ls->by_lost));
    res->extents += extents;
    res->degraded += nw;
    for (unsigned i = 0; i < nw; i++) {
        unsigned got = 0, still = 0;
        uint64_t b = 0, still_bytes = 0;
        enum outcome o;

        keep_probed(r);
        rc = lease_keep(r, ls);
        if (rc)
            goto out;
        if (wv[i].bad) {
            unsigned bad_failed = 0;
            uint64_t bb = 0;

            res->bad_fixed += repair_bad(r, &wv[i], &bb, &bad_failed);
            res->failed += bad_failed;
            bytes += bb;
        }
        if (!wv[i].degraded)
            continue; /* only corrupt fragments */
        o = repair_one(r, &wv[i], &got, &b, &still, &still_bytes);
        rebuilt += got;
        bytes += b;
        if (o == FAILED)
            res->failed++;
        if (o == LEFT || o == FAILED) {
            ls->rec.left++;
            ls->rec.bytes_left += still_bytes;
            unsigned row = still ? still : 1;

            ls->by_lost[(row > LOST_ROWS ? LOST_ROWS : row) - 1]++;
        }
    }
    ls->rec.rebuilt += rebuilt;
    ls->rec.rebuilt_bytes += bytes;
    if (bytes) {
        uint64_t ms = cairn_now_ms() - t0;

        ls->rec.rate_bps = bytes * 1000 / (ms ? ms : 1);
    }
    res->rebuilt += rebuilt;
    res->bytes += bytes;
    res->left += ls->rec.left;
out:
    free(wv);
    return rc;
}

int rp_pass(struct cl_cluster *cl, const struct rp_opts *o, struct rp_result *res)
{
    struct rp r = {.cl = cl, .o = o, .owner = cl_cluster_session(cl),
                   .rate = o->rate ? o->rate : RP_DEFAULT_RATE, .t0_ms = cairn_now_ms()};
    unsigned shards, pending, start;
    uint8_t *todo;
    int rc = 0;

    memset(res, 0, sizeof(*res));
    /* Nodes added or taken out since the view opened are targets or sources now. */
    (void)cl_cluster_refresh(cl);
    keep_probed(&r);
    bad_collect(&r, res);
    shards = cl_cluster_shards(cl);
    todo = malloc(shards ? shards : 1);
    if (!todo)
        return CAIRN_ENOMEM;
    memset(todo, 1, shards);
    pending = shards;
    /* Workers start at different shards, so several spread out rather than queue up. */
    start = shards ? (unsigned)(r.owner % shards) : 0;
    while (pending && !rc) {
        unsigned busy = 0;

        for (unsigned j = 0; j < shards && !rc; j++) {
            unsigned s = (start + j) % shards;
            struct lease ls;
            int lr;

            if (!todo[s])
                continue;
            if (o->stop && *o->stop) {
                rc = CAIRN_ECANCELED;
                break;
            }
            lr = lease_take(&r, s, &ls);
            if (lr == CAIRN_EAGAIN && o->wait_leases) {
                busy++;
                continue;
            }
            todo[s] = 0;
            pending--;
            if (lr == CAIRN_EAGAIN || lr == CAIRN_EEXIST) {
                res->skipped++;
                continue;
            }
            if (lr) {
                log_warn(TAG, "shard %u: taking the repair lease: %s", s, cairn_strerror(lr));
                res->failed++;
                continue;
            }
            lr = shard_pass(&r, &ls, res);
            if (lr == CAIRN_ECANCELED && o->stop && *o->stop)
                rc = lr;
            if (lr && lr != CAIRN_ECANCELED) {
                log_warn(TAG, "shard %u: %s", s, cairn_strerror(lr));
                res->failed++;
            }
            if (lr != CAIRN_ECANCELED || rc)
                lease_give(&r, &ls, lr == 0);
            if (!lr)
                res->shards++;
        }
        if (busy && !rc)
            sleep_ms(1000); /* other workers hold these; a lease ends within RP_LEASE_MS */
    }
    free(todo);
    free(r.bad);
    return rc;
}

/* ---- status ---- */

int rp_status(struct cl_cluster *cl, struct rp_status *st)
{
    unsigned n = cl_cluster_shards(cl);
    Cairn__RepairShard **recs = calloc(n ? n : 1, sizeof(*recs));
    uint64_t now = wall_ms();

    memset(st, 0, sizeof(*st));
    if (!recs)
        return CAIRN_ENOMEM;
    meta_repair_get_all(cl, n, recs);
    st->shards = n;
    st->oldest_pass_ms = UINT64_MAX;
    for (unsigned s = 0; s < n; s++) {
        const Cairn__RepairShard *x = recs[s];

        if (!x || !x->passes) {
            st->oldest_pass_ms = 0;
        } else {
            st->passed++;
            if (x->pass_end_ms < st->oldest_pass_ms)
                st->oldest_pass_ms = x->pass_end_ms;
        }
        if (!x)
            continue;
        if (x->owner && x->lease_until_ms > now)
            st->leased++;
        st->extents += x->extents;
        st->left += x->left;
        st->bytes_left += x->bytes_left;
        for (size_t i = 0; i < x->n_left_by_lost && i < LOST_ROWS; i++)
            st->left_by_lost[i] += x->left_by_lost[i];
        st->rebuilt += x->rebuilt;
        st->rebuilt_bytes += x->rebuilt_bytes;
        if (x->rate_bps > st->rate_bps)
            st->rate_bps = x->rate_bps;
        cairn__repair_shard__free_unpacked(recs[s], NULL);
    }
    if (st->oldest_pass_ms == UINT64_MAX)
        st->oldest_pass_ms = 0;
    free(recs);
    return 0;
}

/* ---- what names a D-node ---- */

struct refs_scan {
    uint64_t id;
    struct rp_refs *out;
};

static int refs_inode(void *arg, uint64_t ino, const Cairn__Inode *in)
{
    struct refs_scan *rs = arg;

    (void)ino;
    for (size_t i = 0; i < in->n_extents; i++) {
        const Cairn__Extent *x = in->extents[i];
        unsigned named = 0;

        if (!x->n_nodes) {
            rs->out->unplaced++;
            continue;
        }
        for (size_t p = 0; p < x->n_nodes; p++)
            named += x->nodes[p] == rs->id;
        if (named) {
            rs->out->extents++;
            rs->out->bytes += lost_bytes(x, named);
        }
    }
    return 0;
}

int rp_node_refs(struct cl_cluster *cl, uint64_t id, struct rp_refs *out)
{
    struct refs_scan rs = {.id = id, .out = out};
    unsigned n = cl_cluster_shards(cl);
    int rc = 0;

    memset(out, 0, sizeof(*out));
    for (unsigned s = 0; s < n && !rc; s++)
        rc = scan_inodes(cl, s, NULL, refs_inode, &rs);
    return rc;
}

/* ---- the background service ---- */

struct rp_service {
    struct cl_cluster_config cfg;
    struct rp_service_opts o;
    volatile bool stop;
    pthread_t thread;
    pthread_t detector; /* when o.down_out_s: detect() on its own cadence, own view */
    bool have_detector;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* every pass's results added up (rp_service_totals; read by other threads) */
    _Atomic uint64_t passes, degraded, rebuilt, bytes, failed, gc_passes, gc_deleted, gc_bytes;
    _Atomic uint64_t taken_out;
    uint64_t *silent_since; /* monotonic ms per view D-node index: first failed ping (0: none) */
    unsigned nsilent;
};

static int next_with_out(const Cairn__ClusterMap *cur, void *arg, uint8_t **buf, size_t *len,
                         bool *done, const char **what)
{
    const uint64_t *id = arg;
    int i = map_node_index(cur, *id);

    (void)what;
    if (i < 0)
        return CAIRN_ENOENT;
    *done = cur->nodes[i]->state == CAIRN__NODE_STATE__NODE_OUT;
    return *done ? 0 : map_set_state(cur, *id, CAIRN__NODE_STATE__NODE_OUT, buf, len);
}

/* The failure detector (rp_service_start): ping everyone, note who has been silent since
 * when, and take out one that stayed silent for down_out_s, within the limits. */
static void detect(struct rp_service *svc, struct cl_cluster *cl)
{
    const Cairn__ClusterMap *m;
    unsigned n, answering = 0, out = 0;
    uint64_t now = cairn_now_ms();

    cl_cluster_probe(cl);
    n = cl_cluster_dnodes(cl);
    if (n > svc->nsilent) {
        uint64_t *ns = realloc(svc->silent_since, n * sizeof(*ns));

        if (!ns)
            return;
        memset(ns + svc->nsilent, 0, (n - svc->nsilent) * sizeof(*ns));
        svc->silent_since = ns;
        svc->nsilent = n;
    }
    m = cl_cluster_map(cl);
    for (unsigned i = 0; i < n; i++) {
        if (cl_cluster_node_down(cl, i)) {
            if (!svc->silent_since[i])
                svc->silent_since[i] = now;
        } else {
            svc->silent_since[i] = 0;
            answering++;
        }
    }
    for (size_t j = 0; m && j < m->n_nodes; j++)
        out += m->nodes[j]->state == CAIRN__NODE_STATE__NODE_OUT;
    for (unsigned i = 0; m && i < n; i++) {
        uint64_t id = cl_cluster_node_id(cl, i);
        int mi = map_node_index(m, id);
        const char *what;
        int rc;

        if (!svc->silent_since[i] || now - svc->silent_since[i] < svc->o.down_out_s * 1000ull ||
            mi < 0 || m->nodes[mi]->state == CAIRN__NODE_STATE__NODE_OUT ||
            m->nodes[mi]->state == CAIRN__NODE_STATE__NODE_DRAINING)
            continue;
        if (answering * 2 <= m->n_nodes) {
            log_warn(TAG, "D-node %s silent for %llu s, but only %u of %zu D-nodes answer this "
                     "C-node: taking nobody out from here", m->nodes[mi]->addr,
                     (unsigned long long)((now - svc->silent_since[i]) / 1000), answering,
                     m->n_nodes);
            return;
        }
        if ((out + 1) * 4 > m->n_nodes && out + 1 > 1) {
            log_warn(TAG, "D-node %s silent for %llu s; %u of %zu D-nodes are out already: "
                     "leaving it to an operator (cairnctl map out)", m->nodes[mi]->addr,
                     (unsigned long long)((now - svc->silent_since[i]) / 1000), out,
                     m->n_nodes);
            return;
        }
        log_warn(TAG, "D-node %s (%016llx) silent for %llu s: taking it out of the map; its data "
                 "is rebuilt elsewhere", m->nodes[mi]->addr, (unsigned long long)id,
                 (unsigned long long)((now - svc->silent_since[i]) / 1000));
        rc = meta_map_change(cl, next_with_out, &id, &what);
        if (rc) {
            log_warn(TAG, "taking D-node %016llx out: %s: %s", (unsigned long long)id, what,
                     cairn_strerror(rc));
            return;
        }
        atomic_fetch_add(&svc->taken_out, 1);
        return; /* one per round: the next round sees the new map */
    }
}

/* Wait up to ms, or until stopped.  Returns whether to stop. */
static bool service_wait(struct rp_service *svc, uint64_t ms)
{
    struct timespec ts;
    bool stop;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&svc->mu);
    while (!svc->stop && pthread_cond_timedwait(&svc->cv, &svc->mu, &ts) == 0)
        ;
    stop = svc->stop;
    pthread_mutex_unlock(&svc->mu);
    return stop;
}

static void *service_main(void *arg)
{
    struct rp_service *svc = arg;
    struct cl_cluster *cl = NULL;
    uint32_t interval_s = svc->o.interval_s;
    struct rp_opts o = {.rate = svc->o.rate, .stop = &svc->stop,
                        /* Passes of other C-nodes count: one pass per interval in all. */
                        .fresh_ms = interval_s * 1000u - interval_s * 100u};
    struct gc_opts go = {.grace_ms = svc->o.gc_grace_ms, .stop = &svc->stop};
    struct gc *gc = NULL;
    uint64_t gc_due = cairn_now_ms() + (uint64_t)svc->o.gc_interval_s * 1000u;

    if (svc->o.gc_interval_s && gc_create(&gc))
        log_warn(TAG, "no memory for the garbage sweeper: it does not run here");
    while (!service_wait(svc, (uint64_t)interval_s * 1000u)) {
        struct rp_result res;
        int rc;

        if (!cl && cl_cluster_open(&svc->cfg, &cl)) {
            cl = NULL;
            continue;
        }
        rc = rp_pass(cl, &o, &res);
        atomic_fetch_add(&svc->passes, 1);
        atomic_fetch_add(&svc->degraded, res.degraded);
        atomic_fetch_add(&svc->rebuilt, res.rebuilt);
        atomic_fetch_add(&svc->bytes, res.bytes);
        atomic_fetch_add(&svc->failed, res.failed);
        if (rc && rc != CAIRN_ECANCELED)
            log_warn(TAG, "pass: %s", cairn_strerror(rc));
        if (res.degraded || res.failed)
            log_info(TAG, "pass: %u shards (%u left to others), %llu extents, %llu degraded, "
                     "%llu positions rebuilt (%llu bytes), %llu left, %llu failed", res.shards,
                     res.skipped, (unsigned long long)res.extents,
                     (unsigned long long)res.degraded, (unsigned long long)res.rebuilt,
                     (unsigned long long)res.bytes, (unsigned long long)res.left,
                     (unsigned long long)res.failed);
        if (gc && cairn_now_ms() >= gc_due && !svc->stop) {
            struct gc_result gr;

            gc_due = cairn_now_ms() + (uint64_t)svc->o.gc_interval_s * 1000u;
            if (gc_pass(gc, cl, &go, &gr) == 0) {
                atomic_fetch_add(&svc->gc_passes, 1);
                atomic_fetch_add(&svc->gc_deleted, gr.deleted);
                atomic_fetch_add(&svc->gc_bytes, gr.bytes);
            }
        }
    }
    gc_destroy(gc);
    cl_cluster_close(cl);
    return NULL;
}

/* The detector's thread: a pass can take minutes, so it watches on its own, every few
 * seconds (a third of DOWN_OUT_S, 1 to 10 s). */
static void *detector_main(void *arg)
{
    struct rp_service *svc = arg;
    struct cl_cluster *cl = NULL;
    uint64_t every = svc->o.down_out_s * 1000ull / 3;

    every = every < 1000 ? 1000 : every > 10000 ? 10000 : every;
    while (!service_wait(svc, every)) {
        if (!cl && cl_cluster_open(&svc->cfg, &cl)) {
            cl = NULL;
            continue;
        }
        (void)cl_cluster_refresh(cl); /* the map's states, and D-nodes added */
        detect(svc, cl);
    }
    cl_cluster_close(cl);
    return NULL;
}

int rp_service_start(const struct cl_cluster_config *cfg, const struct rp_service_opts *o,
                     struct rp_service **out)
{
    struct rp_service *svc;

    if (!o->interval_s)
        return CAIRN_EINVAL;
    svc = calloc(1, sizeof(*svc));
    if (!svc)
        return CAIRN_ENOMEM;
    svc->cfg = *cfg;
    svc->o = *o;
    pthread_mutex_init(&svc->mu, NULL);
    pthread_cond_init(&svc->cv, NULL);
    if (pthread_create(&svc->thread, NULL, service_main, svc)) {
        pthread_mutex_destroy(&svc->mu);
        pthread_cond_destroy(&svc->cv);
        free(svc);
        return CAIRN_ENOMEM;
    }
    if (o->down_out_s) {
        if (pthread_create(&svc->detector, NULL, detector_main, svc) == 0)
            svc->have_detector = true;
        else
            log_warn(TAG, "no thread for the failure detector: it does not run here");
    }
    *out = svc;
    return 0;
}

void rp_service_totals(struct rp_service *svc, struct rp_totals *out)
{
    out->passes = atomic_load(&svc->passes);
    out->degraded = atomic_load(&svc->degraded);
    out->rebuilt = atomic_load(&svc->rebuilt);
    out->bytes = atomic_load(&svc->bytes);
    out->failed = atomic_load(&svc->failed);
    out->gc_passes = atomic_load(&svc->gc_passes);
    out->gc_deleted = atomic_load(&svc->gc_deleted);
    out->gc_bytes = atomic_load(&svc->gc_bytes);
    out->taken_out = atomic_load(&svc->taken_out);
}

void rp_service_stop(struct rp_service *svc)
{
    if (!svc)
        return;
    pthread_mutex_lock(&svc->mu);
    svc->stop = true;
    pthread_cond_broadcast(&svc->cv);
    pthread_mutex_unlock(&svc->mu);
    pthread_join(svc->thread, NULL);
    if (svc->have_detector)
        pthread_join(svc->detector, NULL);
    pthread_mutex_destroy(&svc->mu);
    pthread_cond_destroy(&svc->cv);
    free(svc->silent_since);
    free(svc);
}
