/*
 * file.c - file data on the D-nodes (see file.h).
 */
#include "cnode/fs/file.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/log.h"
#include "meta/ns.h"

#define TAG "file"

struct cn_deferred_free {
    struct cn_deferred_free *next;
    uint64_t due_ms;
    Cairn__Inode *in; /* owned: the unlinked inode (its extents) */
};

static const uint8_t zeros[64 << 10];

struct scache_ent {
    uint64_t obj, stripe, used;
    uint32_t gen;
    size_t len, cap;
    uint8_t *data; /* owned */
};

struct cn_scache {
    pthread_mutex_t lock;
    unsigned n;
    uint64_t tick;
    struct scache_ent *e; /* owned, n entries */
};

int cn_scache_create(unsigned entries, struct cn_scache **out)
{
    struct cn_scache *c = calloc(1, sizeof(*c));

    if (!c || !(c->e = calloc(entries, sizeof(*c->e)))) {
        free(c);
        return CAIRN_ENOMEM;
    }
    c->n = entries;
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

void cn_scache_destroy(struct cn_scache *c)
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
static bool scache_get(struct cn_scache *c, const Cairn__Extent *x, uint64_t stripe,
                       uint64_t skip, uint64_t take, cn_sink sink, void *arg, int *rc)
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

static void scache_put(struct cn_scache *c, const Cairn__Extent *x, uint64_t stripe,
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

void cn_fileio_init(struct cn_fileio *f, struct cl_cluster *cl)
{
    memset(f, 0, sizeof(*f));
    f->cl = cl;
    f->deferred_tail = &f->deferred;
}

void cn_fileio_fini(struct cn_fileio *f)
{
    if (f->deferred_tail)
        cn_fileio_run_deferred(f, true);
    free(f->seg);
    f->seg = NULL;
    f->seg_cap = 0;
}

int cn_fileio_seg(struct cn_fileio *f, const struct ec_layout *l, size_t *cap)
{
    size_t want = (size_t)l->k * l->frag_size * CN_SEGMENT_STRIPES;

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

struct ec_layout cn_extent_layout(const Cairn__Extent *x)
{
    struct ec_layout l = {.k = x->k, .m = x->m, .frag_size = x->frag_size};

    return l;
}

uint64_t cn_extent_obj_size(const Cairn__Extent *x)
{
    return x->obj_size ? x->obj_size : x->length;
}

void cn_extents_free(struct cl_cluster *cl, Cairn__Extent *const *ex, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct ec_layout l = cn_extent_layout(ex[i]);
        bool seen = false;
        int rc;

        /* A split extent shows one object twice: free it once. */
        for (size_t j = 0; j < i && !seen; j++)
            seen = ex[j]->object_id == ex[i]->object_id && ex[j]->gen == ex[i]->gen;
        if (seen)
            continue;
        rc = cl_stripe_delete(cl, ex[i]->object_id, ex[i]->gen, &l, cn_extent_obj_size(ex[i]));
        if (rc)
            log_warn(TAG, "freeing object %016" PRIx64 ": %s (its fragments stay as garbage)",
                     ex[i]->object_id, cairn_strerror(rc));
    }
}

void cn_fileio_defer(struct cn_fileio *f, Cairn__Inode *in)
{
    struct cn_deferred_free *d;

    if (!in->n_extents) {
        cairn__inode__free_unpacked(in, NULL);
        return;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        cn_extents_free(f->cl, in->extents, in->n_extents);
        cairn__inode__free_unpacked(in, NULL);
        return;
    }
    d->due_ms = cairn_now_ms() + CN_FREE_DELAY_MS;
    d->in = in;
    *f->deferred_tail = d;
    f->deferred_tail = &d->next;
}

void cn_fileio_defer_extents(struct cn_fileio *f, Cairn__Extent *const *ex, size_t n)
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

        if (!x) {
            cairn__inode__free_unpacked(in, NULL);
            goto now;
        }
        *x = *ex[i];
        x->base.unknown_fields = NULL;
        x->base.n_unknown_fields = 0;
        in->extents[in->n_extents++] = x;
    }
    cn_fileio_defer(f, in);
    return;
now:
    cn_extents_free(f->cl, ex, n);
}

/* A C-node that dies first leaves the queued objects as unreferenced fragments, which a
 * scrubber is to collect. */
void cn_fileio_run_deferred(struct cn_fileio *f, bool force)
{
    uint64_t now = cairn_now_ms();

    while (f->deferred && (force || f->deferred->due_ms <= now)) {
        struct cn_deferred_free *d = f->deferred;

        f->deferred = d->next;
        if (!f->deferred)
            f->deferred_tail = &f->deferred;
        cn_extents_free(f->cl, d->in->extents, d->in->n_extents);
        cairn__inode__free_unpacked(d->in, NULL);
        free(d);
    }
}

int cn_sink_buffer(void *arg, const uint8_t *data, size_t len)
{
    uint8_t **pos = arg;

    memcpy(*pos, data, len);
    *pos += len;
    return 0;
}

static int sink_zeros(cn_sink sink, void *arg, uint64_t len)
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
static int read_object(struct cn_fileio *f, const Cairn__Extent *x, uint64_t rel, uint64_t len,
                       cn_sink sink, void *arg)
{
    struct ec_layout l = cn_extent_layout(x);
    uint64_t sb = (uint64_t)l.k * l.frag_size, osize = cn_extent_obj_size(x);
    size_t cap;
    int rc = cn_fileio_seg(f, &l, &cap);

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
        rc = cl_stripe_read_at(f->cl, x->object_id, x->gen, &l, s0, f->seg, seg_len, NULL);
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

int cn_file_read(struct cn_fileio *f, const Cairn__Inode *in, uint64_t off, uint64_t len,
                 cn_sink sink, void *arg)
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

int cn_file_unlink(struct cn_fileio *f, uint64_t ino, bool *last)
{
    if (last)
        *last = false;
    for (int attempt = 0; attempt < 16; attempt++) {
        Cairn__Inode *in;
        uint64_t ver;
        int rc = meta_inode_get(f->cl, ino, &in, &ver);

        if (rc)
            return rc;
        if (in->nlink > 1) {
            in->nlink--;
            in->ctime_ns = (int64_t)cairn_now_ms() * 1000000;
            rc = meta_inode_put(f->cl, ino, in, ver, NULL);
            cairn__inode__free_unpacked(in, NULL);
        } else {
            rc = meta_inode_del(f->cl, ino, ver);
            if (rc == 0) {
                if (last)
                    *last = true;
                cn_fileio_defer(f, in);
                return 0;
            }
            cairn__inode__free_unpacked(in, NULL);
        }
        if (rc != CAIRN_ECONFLICT)
            return rc;
    }
    return CAIRN_ECONFLICT;
}

/* ---- extent maps ---- */

static int extmap_reserve(struct cn_extmap *m, size_t n)
{
    Cairn__Extent *v;
    Cairn__Extent **p;
    size_t cap = m->cap ? m->cap : 8;

    if (n <= m->cap)
        return 0;
    while (cap < n)
        cap *= 2;
    v = realloc(m->v, cap * sizeof(*v));
    if (!v)
        return CAIRN_ENOMEM;
    m->v = v;
    p = realloc(m->ptrs, cap * sizeof(*p));
    if (!p)
        return CAIRN_ENOMEM;
    m->ptrs = p;
    m->cap = cap;
    return 0;
}

int cn_extmap_load(struct cn_extmap *m, const Cairn__Inode *in)
{
    memset(m, 0, sizeof(*m));
    if (extmap_reserve(m, in->n_extents))
        return CAIRN_ENOMEM;
    for (size_t i = 0; i < in->n_extents; i++) {
        m->v[i] = *in->extents[i];
        m->v[i].base.unknown_fields = NULL;
        m->v[i].base.n_unknown_fields = 0;
    }
    m->n = in->n_extents;
    return 0;
}

void cn_extmap_fini(struct cn_extmap *m)
{
    free(m->v);
    free(m->ptrs);
    memset(m, 0, sizeof(*m));
}

/* Keep only [from, to) of extent e (file offsets), moving its window into the object. */
static void clip(Cairn__Extent *e, uint64_t from, uint64_t to)
{
    uint64_t osize = cn_extent_obj_size(e);

    e->obj_size = osize;
    e->obj_offset += from - e->offset;
    e->offset = from;
    e->length = to - from;
}

int cn_extmap_put(struct cn_extmap *m, const Cairn__Extent *x)
{
    uint64_t xs = x->offset, xe = x->offset + x->length;
    size_t i = 0, j, keep_tail = 0;
    Cairn__Extent tail;

    if (!x->length)
        return 0;
    if (extmap_reserve(m, m->n + 2))
        return CAIRN_ENOMEM;
    while (i < m->n && m->v[i].offset + m->v[i].length <= xs)
        i++;
    /* i: the first extent that ends after xs.  One extent may stick out on both sides. */
    if (i < m->n && m->v[i].offset < xs) {
        uint64_t end = m->v[i].offset + m->v[i].length;

        if (end > xe) {
            tail = m->v[i];
            clip(&tail, xe, end);
            keep_tail = 1;
        }
        clip(&m->v[i], m->v[i].offset, xs);
        i++;
    }
    j = i;
    while (j < m->n && m->v[j].offset + m->v[j].length <= xe)
        j++; /* wholly covered: dropped */
    if (j < m->n && m->v[j].offset < xe)
        clip(&m->v[j], xe, m->v[j].offset + m->v[j].length);
    /* Replace v[i, j) by x (and the tail of a split extent). */
    memmove(&m->v[i + 1 + keep_tail], &m->v[j], (m->n - j) * sizeof(*m->v));
    m->n = m->n - (j - i) + 1 + keep_tail;
    m->v[i] = *x;
    m->v[i].base.unknown_fields = NULL;
    m->v[i].base.n_unknown_fields = 0;
    if (keep_tail)
        m->v[i + 1] = tail;
    return 0;
}

void cn_extmap_truncate(struct cn_extmap *m, uint64_t size)
{
    size_t n = 0;

    while (n < m->n && m->v[n].offset < size) {
        if (m->v[n].offset + m->v[n].length > size)
            clip(&m->v[n], m->v[n].offset, size);
        n++;
    }
    m->n = n;
}

void cn_extmap_attach(struct cn_extmap *m, Cairn__Inode *in, Cairn__Extent ***saved,
                      size_t *nsaved)
{
    *saved = in->extents;
    *nsaved = in->n_extents;
    for (size_t i = 0; i < m->n; i++)
        m->ptrs[i] = &m->v[i];
    in->extents = m->n ? m->ptrs : NULL;
    in->n_extents = m->n;
}

void cn_extmap_detach(Cairn__Inode *in, Cairn__Extent **saved, size_t nsaved)
{
    in->extents = saved;
    in->n_extents = nsaved;
}

int cn_extmap_dropped(const struct cn_extmap *m, Cairn__Extent *const *old, size_t nold,
                      Cairn__Extent ***out, size_t *nout)
{
    Cairn__Extent **v = nold ? malloc(nold * sizeof(*v)) : NULL;
    size_t n = 0;

    if (nold && !v)
        return CAIRN_ENOMEM;
    for (size_t i = 0; i < nold; i++) {
        bool live = false;

        for (size_t j = 0; j < m->n && !live; j++)
            live = m->v[j].object_id == old[i]->object_id && m->v[j].gen == old[i]->gen;
        if (!live)
            v[n++] = old[i];
    }
    *out = v;
    *nout = n;
    return 0;
}
