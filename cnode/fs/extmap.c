/*
 * extmap.c - extent maps (see extmap.h).
 */
#include "cnode/fs/extmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"

struct ec_layout fs_extent_layout(const Cairn__Extent *x)
{
    struct ec_layout l = {.k = x->k, .m = x->m, .frag_size = x->frag_size};

    return l;
}

uint64_t fs_extent_obj_size(const Cairn__Extent *x)
{
    return x->obj_size ? x->obj_size : x->length;
}

static int extmap_reserve(struct fs_extmap *m, size_t n)
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

int fs_extmap_load(struct fs_extmap *m, const Cairn__Inode *in)
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

void fs_extmap_fini(struct fs_extmap *m)
{
    free(m->v);
    free(m->ptrs);
    memset(m, 0, sizeof(*m));
}

/* Keep only [from, to) of extent e (file offsets), moving its window into the object. */
static void clip(Cairn__Extent *e, uint64_t from, uint64_t to)
{
    uint64_t osize = fs_extent_obj_size(e);

    e->obj_size = osize;
    e->obj_offset += from - e->offset;
    e->offset = from;
    e->length = to - from;
}

int fs_extmap_put(struct fs_extmap *m, const Cairn__Extent *x)
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

void fs_extmap_truncate(struct fs_extmap *m, uint64_t size)
{
    size_t n = 0;

    while (n < m->n && m->v[n].offset < size) {
        if (m->v[n].offset + m->v[n].length > size)
            clip(&m->v[n], m->v[n].offset, size);
        n++;
    }
    m->n = n;
}

void fs_extmap_attach(struct fs_extmap *m, Cairn__Inode *in, Cairn__Extent ***saved,
                      size_t *nsaved)
{
    *saved = in->extents;
    *nsaved = in->n_extents;
    for (size_t i = 0; i < m->n; i++)
        m->ptrs[i] = &m->v[i];
    in->extents = m->n ? m->ptrs : NULL;
    in->n_extents = m->n;
}

void fs_extmap_detach(Cairn__Inode *in, Cairn__Extent **saved, size_t nsaved)
{
    in->extents = saved;
    in->n_extents = nsaved;
}

int fs_extmap_dropped(const struct fs_extmap *m, Cairn__Extent *const *old, size_t nold,
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
