/*
 * data.c - file data plumbing: the segment buffer, the stripe cache, deferred frees and reads
 * (see fs.h and internal.h).
 */
#include "cnode/fs/internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client/stripe.h"
#include "common/cairn.h"
#include "common/log.h"
#include "meta/ns.h"

#define TAG "fs"

struct fs_deferred {
    struct fs_deferred *next;
    uint64_t due_ms;
    Cairn__Inode *in; /* owned: the unlinked inode (its extents) */
};

static const uint8_t zeros[64 << 10];

/* The stripe cache: NFS clients read in 1 MiB pieces and a stripe holds k fragments (4 MiB at
 * 4+2): without it each READ of a sequential scan would fetch the whole stripe again.  Objects
 * never change once written, so cached stripes are never stale; entries go least recently used
 * first. */
struct scache_ent {
    uint64_t obj, stripe, used;
    uint32_t gen;
    size_t len, cap;
    uint8_t *data; /* owned */
};

struct fs_scache {
    pthread_mutex_t lock;
    unsigned n;
    uint64_t tick;
    struct scache_ent *e; /* owned, n entries */
};

int fs_scache_create(unsigned entries, struct fs_scache **out)
{
    struct fs_scache *c = calloc(1, sizeof(*c));

    if (!c || !(c->e = calloc(entries, sizeof(*c->e)))) {
        free(c);
        return CAIRN_ENOMEM;
    }
    c->n = entries;
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

void fs_scache_destroy(struct fs_scache *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->n; i++)
        free(c->e[i].data);
    pthread_mutex_destroy(&c->lock);
    free(c->e);
    free(c);
}

/* Hand bytes [skip, skip + take) of a cached stripe to sink; false on a miss. */
static bool scache_get(struct fs_scache *c, const Cairn__Extent *x, uint64_t stripe,
                       uint64_t skip, uint64_t take, fs_sink sink, void *arg, int *rc)
{
    bool hit = false;

    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < c->n && !hit; i++) {
        struct scache_ent *e = &c->e[i];

        if (e->data && e->obj == x->object_id && e->gen == x->gen && e->stripe == stripe &&
            skip + take <= e->len) {
            e->used = ++c->tick;
            *rc = sink(arg, e->data + skip, (size_t)take);
            hit = true;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

static void scache_put(struct fs_scache *c, const Cairn__Extent *x, uint64_t stripe,
                       const uint8_t *data, size_t len)
{
    struct scache_ent *v = NULL;

    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < c->n; i++)
        if (!v || c->e[i].used < v->used)
            v = &c->e[i];
    if (v->cap < len) {
        uint8_t *d = realloc(v->data, len);

        if (!d) {
            pthread_mutex_unlock(&c->lock);
            return;
        }
        v->data = d;
        v->cap = len;
    }
    memcpy(v->data, data, len);
    v->len = len;
    v->obj = x->object_id;
    v->gen = x->gen;
    v->stripe = stripe;
    v->used = ++c->tick;
    pthread_mutex_unlock(&c->lock);
}

int fs_seg(struct fs_ctx *f, const struct ec_layout *l, size_t *cap)
{
    size_t want = (size_t)l->k * l->frag_size * FS_SEGMENT_STRIPES;

    if (f->seg_cap < want) {
        free(f->seg);
        f->seg = aligned_alloc(CAIRN_BLOCK, want);
        f->seg_cap = f->seg ? want : 0;
        if (!f->seg)
            return CAIRN_ENOMEM;
    }
    *cap = want;
    return 0;
}

void fs_extents_free(struct fs_ctx *f, Cairn__Extent *const *ex, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct ec_layout l = fs_extent_layout(ex[i]);
        bool seen = false;
        int rc;

        /* A split extent shows one object twice: free it once. */
        for (size_t j = 0; j < i && !seen; j++)
            seen = ex[j]->object_id == ex[i]->object_id && ex[j]->gen == ex[i]->gen;
        if (seen)
            continue;
        struct cl_placement pb;

        rc = cl_stripe_delete(f->cl, ex[i]->object_id, ex[i]->gen, &l, fs_extent_place(ex[i], &pb),
                              fs_extent_obj_size(ex[i]));
        if (rc)
            log_warn(TAG, "freeing object %016" PRIx64 ": %s (its fragments stay as garbage)",
                     ex[i]->object_id, cairn_strerror(rc));
    }
}

void fs_defer_inode(struct fs_ctx *f, Cairn__Inode *in)
{
    struct fs_deferred *d;

    if (!in->n_extents) {
        cairn__inode__free_unpacked(in, NULL);
        return;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        fs_extents_free(f, in->extents, in->n_extents);
        cairn__inode__free_unpacked(in, NULL);
        return;
    }
    d->due_ms = cairn_now_ms() + FS_FREE_DELAY_MS;
    d->in = in;
    *f->deferred_tail = d;
    f->deferred_tail = &d->next;
}

void fs_defer_extents(struct fs_ctx *f, Cairn__Extent *const *ex, size_t n)
{
    Cairn__Inode *in;

    if (!n)
        return;
    /* Built with malloc so that cairn__inode__free_unpacked(in, NULL) frees it. */
    in = malloc(sizeof(*in));
    if (!in)
        goto now;
    cairn__inode__init(in);
    in->extents = calloc(n, sizeof(*in->extents));
    if (!in->extents) {
        free(in);
        goto now;
    }
    for (size_t i = 0; i < n; i++) {
        Cairn__Extent *x = malloc(sizeof(*x));
        uint64_t *nodes = NULL;

        /* The copy owns its node list: free_unpacked frees it. */
        if (x && ex[i]->n_nodes) {
            nodes = malloc(ex[i]->n_nodes * sizeof(*nodes));
            if (nodes)
                memcpy(nodes, ex[i]->nodes, ex[i]->n_nodes * sizeof(*nodes));
        }
        if (!x || (ex[i]->n_nodes && !nodes)) {
            free(x);
            cairn__inode__free_unpacked(in, NULL);
            goto now;
        }
        *x = *ex[i];
        x->base.unknown_fields = NULL;
        x->base.n_unknown_fields = 0;
        x->nodes = nodes;
        in->extents[in->n_extents++] = x;
    }
    fs_defer_inode(f, in);
    return;
now:
    fs_extents_free(f, ex, n);
}

/* A C-node that dies first leaves the queued objects as unreferenced fragments, which a
 * scrubber is to collect. */
void fs_run_deferred(struct fs_ctx *f, bool force)
{
    uint64_t now = cairn_now_ms();

    while (f->deferred && (force || f->deferred->due_ms <= now)) {
        struct fs_deferred *d = f->deferred;

        f->deferred = d->next;
        if (!f->deferred)
            f->deferred_tail = &f->deferred;
        fs_extents_free(f, d->in->extents, d->in->n_extents);
        cairn__inode__free_unpacked(d->in, NULL);
        free(d);
    }
}

Cairn__Extent fs_new_extent(struct fs_ctx *f, uint64_t off, uint64_t len)
{
    const struct ec_layout *l = cl_cluster_layout(f->cl);
    Cairn__Extent x = CAIRN__EXTENT__INIT;

    x.offset = off;
    x.length = len;
    x.object_id = meta_new_ino();
    x.gen = 1;
    x.k = l->k;
    x.m = l->m;
    x.frag_size = l->frag_size;
    x.obj_size = len;
    return x;
}

void fs_extent_set_place(Cairn__Extent *x, struct cl_placement *pl)
{
    x->nodes = pl->n ? pl->ids : NULL;
    x->n_nodes = pl->n;
    x->missing = pl->missing;
}

const struct cl_placement *fs_extent_place(const Cairn__Extent *x, struct cl_placement *buf)
{
    if (!x->n_nodes || x->n_nodes > CL_PLACE_MAX)
        return NULL;
    memset(buf, 0, sizeof(*buf));
    buf->n = (unsigned)x->n_nodes;
    memcpy(buf->ids, x->nodes, x->n_nodes * sizeof(*x->nodes));
    buf->missing = x->missing;
    return buf;
}

int fs_sink_buffer(void *arg, const uint8_t *data, size_t len)
{
    uint8_t **pos = arg;

    memcpy(*pos, data, len);
    *pos += len;
    return 0;
}

static int sink_zeros(fs_sink sink, void *arg, uint64_t len)
{
    while (len) {
        size_t n = (size_t)CAIRN_MIN(len, (uint64_t)sizeof(zeros));
        int rc = sink(arg, zeros, n);

        if (rc)
            return rc;
        len -= n;
    }
    return 0;
}

/* Bytes [rel, rel + len) of extent x's object, segment by segment. */
static int read_object(struct fs_ctx *f, const Cairn__Extent *x, uint64_t rel, uint64_t len,
                       fs_sink sink, void *arg)
{
    struct ec_layout l = fs_extent_layout(x);
    struct cl_placement pb;
    uint64_t sb = (uint64_t)l.k * l.frag_size, osize = fs_extent_obj_size(x);
    size_t cap;
    int rc = fs_seg(f, &l, &cap);

    if (rc)
        return rc;
    while (len) {
        uint64_t s0 = rel / sb, seg_start = s0 * sb, skip = rel - seg_start;
        /* Only the stripes the range touches: a 1 MiB NFS READ must not fetch a segment. */
        uint64_t seg_len = CAIRN_MIN(CAIRN_MIN((uint64_t)cap, osize - seg_start),
                                     CAIRN_ALIGN_UP(skip + len, sb));
        uint64_t take = CAIRN_MIN(seg_len - skip, len);
        bool one = f->cache && seg_len <= sb;

        if (one && scache_get(f->cache, x, s0, skip, take, sink, arg, &rc)) {
            if (rc)
                return rc;
            rel += take;
            len -= take;
            continue;
        }
        struct cl_io_stats st = {0};

        rc = cl_stripe_read_at(f->cl, x->object_id, x->gen, &l, fs_extent_place(x, &pb), s0,
                               f->seg, seg_len, &st);
        atomic_fetch_add_explicit(&f->fs->stripes_read, st.stripes, memory_order_relaxed);
        if (st.degraded_stripes || st.frags_failed) { /* rare: the shared lines stay quiet */
            atomic_fetch_add_explicit(&f->fs->degraded_stripes, st.degraded_stripes,
                                      memory_order_relaxed);
            atomic_fetch_add_explicit(&f->fs->frags_failed, st.frags_failed,
                                      memory_order_relaxed);
        }
        if (rc)
            return rc;
        if (one)
            scache_put(f->cache, x, s0, f->seg, (size_t)seg_len);
        rc = sink(arg, f->seg + skip, take);
        if (rc)
            return rc;
        rel += take;
        len -= take;
    }
    return 0;
}

int fs_read(struct fs_ctx *f, const Cairn__Inode *in, uint64_t off, uint64_t len,
                 fs_sink sink, void *arg)
{
    int rc;

    if (!in->n_extents) {
        uint64_t have = in->inline_data.len > off ? in->inline_data.len - off : 0;
        uint64_t n = CAIRN_MIN(have, len);

        if (n && (rc = sink(arg, in->inline_data.data + off, (size_t)n)))
            return rc;
        return sink_zeros(sink, arg, len - n);
    }
    for (size_t i = 0; i < in->n_extents && len; i++) {
        const Cairn__Extent *x = in->extents[i];
        uint64_t xend = x->offset + x->length, n;

        if (xend <= off)
            continue;
        if (x->offset >= off + len)
            break;
        if (x->offset > off) { /* a hole before it */
            n = x->offset - off;
            if ((rc = sink_zeros(sink, arg, n)))
                return rc;
            off += n;
            len -= n;
        }
        n = CAIRN_MIN(len, xend - off);
        rc = read_object(f, x, off - x->offset + x->obj_offset, n, sink, arg);
        if (rc)
            return rc;
        off += n;
        len -= n;
    }
    return sink_zeros(sink, arg, len);
}
