/*
 * write.c - file data going in: whole objects stored before a file names them (fs_store), and
 * ranges of an existing file written as new objects laid over its extent map (fs_write).
 *
 * Either way the data is durable on the D-nodes before any inode references it, and an inode
 * changes only by compare-and-set of its version: a write that loses the race reads the inode
 * again and lays its (already written) objects over the new map, so two C-nodes writing
 * disjoint ranges of one file both land, and nothing is ever rewritten in place (invariant 5).
 */
#include "cnode/fs/internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "client/stripe.h"
#include "common/cairn.h"
#include "common/fault.h"
#include "common/clock.h"
#include "common/log.h"

#define TAG "fs"
#define WRITE_RETRIES 32
#define TRUNCATE_RETRIES 16

/* ---- whole objects ---- */

/* Feed len bytes from src into an MD5 and into out's object (or inline buffer), a segment at a
 * time through buf (NULL: the context's segment buffer). */
static int store(struct fs_ctx *c, uint64_t len, bool allow_inline, fs_source src, void *arg,
                 uint8_t *buf, struct fs_data *out)
{
    const struct ec_layout *l = cl_cluster_layout(c->cl);
    uint64_t done = 0, first_stripe = 0, sb = (uint64_t)l->k * l->frag_size;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned dl = 0;
    size_t cap;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    cairn__extent__init(&out->ext);
    out->size = len;
    out->t0_ms = cairn_now_ms();
    if (!md || !EVP_DigestInit_ex(md, EVP_md5(), NULL)) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    if (allow_inline && len <= FS_INLINE_MAX) {
        out->inline_data = malloc(len ? len : 1);
        if (!out->inline_data) {
            rc = CAIRN_ENOMEM;
            goto out;
        }
        rc = src(arg, out->inline_data, len);
        if (rc)
            goto out;
        out->inline_len = len;
        EVP_DigestUpdate(md, out->inline_data, len);
        goto out;
    }
    if (buf) {
        cap = (size_t)sb * FS_SEGMENT_STRIPES;
    } else {
        rc = fs_seg(c, l, &cap);
        if (rc)
            goto out;
        buf = c->seg;
    }
    out->ext = fs_new_extent(c, 0, 0);
    memset(&out->pl, 0, sizeof(out->pl)); /* the first piece chooses, the others follow */
    while (done < len) {
        size_t n = (size_t)CAIRN_MIN((uint64_t)cap, len - done);

        rc = src(arg, buf, n);
        if (rc)
            goto out;
        EVP_DigestUpdate(md, buf, n);
        rc = cl_stripe_write_at(c->cl, out->ext.object_id, out->ext.gen, first_stripe, buf, n,
                                &out->pl, NULL);
        fs_extent_set_place(&out->ext, &out->pl);
        done += n;
        out->ext.length = done; /* what to free if a later step fails */
        if (rc) {
            log_warn(TAG, "stripe write: %s", cairn_strerror(rc));
            goto out;
        }
        first_stripe += n / sb;
    }
    out->ext.obj_size = 0; /* the extent shows the whole object from byte 0 */
out:
    if (!rc && EVP_DigestFinal_ex(md, out->md5, &dl))
        fs_etag_md5(out->md5, out->etag);
    else if (!rc)
        rc = CAIRN_ENOMEM;
    EVP_MD_CTX_free(md);
    if (rc)
        fs_data_discard(c, out);
    return rc;
}

int fs_store(struct fs_ctx *c, uint64_t len, bool allow_inline, fs_source src, void *arg,
             struct fs_data *out)
{
    return store(c, len, allow_inline, src, arg, NULL, out);
}

struct copy_src {
    struct fs_ctx *c;
    const Cairn__Inode *in;
    uint64_t off;
};

static int copy_fill(void *arg, uint8_t *buf, size_t len)
{
    struct copy_src *s = arg;
    uint8_t *pos = buf;
    int rc = fs_read(s->c, s->in, s->off, len, fs_sink_buffer, &pos);

    s->off += len;
    return rc;
}

int fs_store_copy(struct fs_ctx *c, const Cairn__Inode *src, uint64_t off, uint64_t len,
                  bool allow_inline, struct fs_data *out)
{
    const struct ec_layout *l = cl_cluster_layout(c->cl);
    struct copy_src s = {.c = c, .in = src, .off = off};
    size_t cap = (size_t)l->k * l->frag_size * FS_SEGMENT_STRIPES;
    uint8_t *buf = NULL;
    int rc;

    /* Reading the source goes through the segment buffer: the copy needs a buffer of its own. */
    if (!(allow_inline && len <= FS_INLINE_MAX)) {
        buf = aligned_alloc(CAIRN_BLOCK, cap);
        if (!buf)
            return CAIRN_ENOMEM;
    }
    rc = store(c, len, allow_inline, copy_fill, &s, buf, out);
    free(buf);
    return rc;
}

void fs_data_discard(struct fs_ctx *c, struct fs_data *d)
{
    if (d->ext.length)
        fs_extents_free(c, (Cairn__Extent *[]){&d->ext}, 1);
    d->ext.length = 0;
    fs_data_fini(d);
}

void fs_data_fini(struct fs_data *d)
{
    free(d->inline_data);
    d->inline_data = NULL;
    d->inline_len = 0;
}

/* ---- changing an existing file ---- */

/* Keep the listing fields of the file's directory entry (size, ETag, mtime: what an S3 listing
 * shows without reading the inode) in step.  Best effort, under the name the inode was created
 * or renamed to. */
static void sync_dirent(struct fs_ctx *c, uint64_t ino, const Cairn__Inode *in)
{
    Cairn__Dirent *d;
    uint64_t ver;

    if (!in->parent || !in->name || !in->name[0])
        return;
    if (meta_dirent_get(c->cl, in->parent, in->name, strlen(in->name), false, &d, &ver))
        return;
    if (d->ino == ino) {
        char *etag = d->etag;

        d->size = in->size;
        d->etag = in->etag;
        d->mtime_ns = in->mtime_ns;
        meta_dirent_put(c->cl, in->parent, in->name, strlen(in->name), d, ver, NULL);
        d->etag = etag; /* in's is borrowed: free the entry's own */
    }
    cairn__dirent__free_unpacked(d, NULL);
}

int fs_commit_data(struct fs_ctx *c, uint64_t ino, Cairn__Inode *in, uint64_t ver,
                   struct fs_extmap *m, bool use_map)
{
    Cairn__Extent **saved = NULL, **dropped = NULL;
    size_t nsaved = 0, ndropped = 0;
    char etag[FS_ETAG_MAX];
    int rc = 0;

    in->mtime_ns = in->ctime_ns = cairn_wall_ns();
    fs_etag_changed(ino, in->mtime_ns, in->size, etag);
    free(in->etag == protobuf_c_empty_string ? NULL : in->etag);
    in->etag = strdup(etag);
    if (!in->etag)
        return CAIRN_ENOMEM;
    if (use_map) {
        rc = fs_extmap_dropped(m, in->extents, in->n_extents, &dropped, &ndropped);
        if (rc)
            return rc;
        fs_extmap_attach(m, in, &saved, &nsaved);
    }
    rc = meta_inode_put(c->cl, ino, in, ver, NULL);
    if (!rc && cairn_fault("fs.commit.unknown"))
        rc = CAIRN_EUNREACH; /* tests: it landed, but the caller was not told */
    if (use_map)
        fs_extmap_detach(in, saved, nsaved);
    if (!rc) {
        fs_defer_extents(c, dropped, ndropped);
        sync_dirent(c, ino, in);
    }
    free(dropped);
    return rc;
}

/* Whether a range would overwrite bytes committed after it arrived (see fs_range.since): an
 * extent stamped later than its arrival overlaps it, or the inline bytes were written later.
 * Extents show exactly the bytes their write carried, so this is exact for them; inline bytes
 * carry one stamp for the whole small file, so it is conservative there. */
static bool newer_overlaps(const Cairn__Inode *in, const struct fs_range *r)
{
    uint64_t end = r->off + r->len;

    if (!r->since)
        return false;
    if (in->inline_data.len && in->inline_stamp > r->since && r->off < in->inline_data.len)
        return true;
    for (size_t i = 0; i < in->n_extents; i++) {
        const Cairn__Extent *x = in->extents[i];

        if (x->stamp > r->since && x->offset < end && r->off < x->offset + x->length)
            return true;
    }
    return false;
}

/* Whether inode ino's extents show object object_id: 1, 0, or a negative error. */
static int shows_object(struct fs_ctx *c, uint64_t ino, uint64_t object_id)
{
    Cairn__Inode *in;
    int rc = meta_inode_get(c->cl, ino, &in, NULL);

    if (rc)
        return rc == CAIRN_ENOENT ? 0 : rc;
    rc = 0;
    for (size_t i = 0; i < in->n_extents && !rc; i++)
        rc = in->extents[i]->object_id == object_id;
    fs_inode_free(in);
    return rc;
}

int fs_write(struct fs_ctx *c, uint64_t ino, const struct fs_range *r, size_t n,
             Cairn__Inode **before, Cairn__Inode **after)
{
    Cairn__Extent *xs = NULL;
    struct cl_placement *xpl = NULL; /* xs[i]'s placement (xs[i] borrows its ids) */
    size_t nx = 0; /* objects written so far (a retry after a conflict reuses them) */
    uint64_t end = 0, t0 = cairn_now_ms();
    int rc = 0;

    if (before)
        *before = NULL;
    if (after)
        *after = NULL;
    for (size_t i = 0; i < n; i++)
        end = CAIRN_MAX(end, r[i].off + r[i].len);
    xs = n ? calloc(n, sizeof(*xs)) : NULL;
    xpl = n ? calloc(n, sizeof(*xpl)) : NULL;
    if (n && (!xs || !xpl)) {
        free(xs);
        free(xpl);
        return CAIRN_ENOMEM;
    }
    for (int attempt = 0; attempt < WRITE_RETRIES; attempt++) {
        Cairn__Inode *in;
        uint64_t ver, size;
        Cairn__Extent inl = CAIRN__EXTENT__INIT;
        struct cl_placement inl_pl = {0};
        struct fs_extmap m;
        bool inl_written = false, inline_path;

        rc = meta_inode_get(c->cl, ino, &in, &ver);
        if (rc)
            goto out;
        if (in->type != CAIRN__FILE_TYPE__FT_FILE) {
            fs_inode_free(in);
            rc = CAIRN_EINVAL;
            goto out;
        }
        if (before && !*before)
            *before = fs_inode_copy(in);
        for (size_t i = 0; i < n && !rc; i++)
            if (newer_overlaps(in, &r[i]))
                rc = CAIRN_EPRECOND;
        if (rc) {
            fs_inode_free(in);
            goto out;
        }
        size = CAIRN_MAX(in->size, end);
        inline_path = !in->n_extents && size <= FS_INLINE_MAX;
        if (inline_path) {
            /* Small file: the new bytes go into the inode record itself. */
            uint8_t *ibuf = calloc(1, size ? size : 1);

            if (!ibuf) {
                fs_inode_free(in);
                rc = CAIRN_ENOMEM;
                goto out;
            }
            if (in->inline_data.len)
                memcpy(ibuf, in->inline_data.data, CAIRN_MIN(in->inline_data.len, size));
            for (size_t i = 0; i < n; i++)
                memcpy(ibuf + r[i].off, r[i].data, r[i].len);
            free(in->inline_data.data);
            in->inline_data.data = ibuf;
            in->inline_data.len = size;
            in->inline_stamp = ver + 1;
            fs_extmap_load(&m, in); /* empty */
        } else {
            /* An object per range, written once. */
            for (size_t i = nx; i < n && !rc; i++) {
                xs[i] = fs_new_extent(c, r[i].off, r[i].len);
                memset(&xpl[i], 0, sizeof(xpl[i]));
                rc = cl_stripe_write(c->cl, xs[i].object_id, 1, r[i].data, r[i].len, &xpl[i],
                                     NULL);
                fs_extent_set_place(&xs[i], &xpl[i]);
                if (rc)
                    fs_extents_free(c, (Cairn__Extent *[]){&xs[i]}, 1);
                else
                    nx = i + 1;
            }
            if (rc || fs_extmap_load(&m, in)) {
                fs_inode_free(in);
                rc = rc ? rc : CAIRN_ENOMEM;
                goto out;
            }
            if (in->inline_data.len) {
                /* Growing out of the inode: its bytes become an object under the new ones. */
                inl = fs_new_extent(c, 0, in->inline_data.len);
                inl.stamp = in->inline_stamp; /* its bytes are as old as their last write */
                rc = cl_stripe_write(c->cl, inl.object_id, 1, in->inline_data.data,
                                     in->inline_data.len, &inl_pl, NULL);
                fs_extent_set_place(&inl, &inl_pl);
                if (rc) {
                    fs_extmap_fini(&m);
                    fs_inode_free(in);
                    goto out;
                }
                inl_written = true;
                fs_extmap_put(&m, &inl);
                free(in->inline_data.data);
                in->inline_data.data = NULL;
                in->inline_data.len = 0;
            }
            for (size_t j = 0; j < nx; j++) {
                xs[j].stamp = ver + 1; /* this commit read the inode at ver */
                if (fs_extmap_put(&m, &xs[j]))
                    rc = CAIRN_ENOMEM;
            }
        }
        in->size = size;
        if (!rc && nx)
            rc = fs_check_fresh(c, t0);
        if (!rc)
            rc = fs_commit_data(c, ino, in, ver, &m, !inline_path);
        fs_extmap_fini(&m);
        if (fs_unknown(rc) && nx && shows_object(c, ino, xs[0].object_id) == 1)
            rc = 0; /* it landed after all (the post-commit frees are skipped: garbage) */
        if (fs_unknown(rc)) {
            /* The inode may reference the new objects: keep them, report the outcome. */
            fs_inode_free(in);
            free(xs);
            free(xpl);
            return rc;
        }
        if (rc == 0) {
            if (after)
                *after = in;
            else
                fs_inode_free(in);
            free(xs);
            free(xpl);
            return 0;
        }
        fs_inode_free(in);
        if (inl_written)
            fs_extents_free(c, (Cairn__Extent *[]){&inl}, 1);
        if (rc != CAIRN_ECONFLICT)
            goto out;
        rc = 0;
    }
    rc = CAIRN_ECONFLICT;
out:
    /* Objects written for ranges that were not committed are not referenced: free them. */
    for (size_t i = 0; i < nx; i++)
        fs_extents_free(c, (Cairn__Extent *[]){&xs[i]}, 1);
    free(xs);
    free(xpl);
    return rc;
}

/* Change a file's size in the loaded inode: truncating drops extents (the map, to commit) or
 * inline bytes; growing leaves a hole. */
static int resize(Cairn__Inode *in, uint64_t size, struct fs_extmap *m, bool *use_map)
{
    *use_map = false;
    if (in->n_extents) {
        int rc = fs_extmap_load(m, in);

        if (rc)
            return rc;
        fs_extmap_truncate(m, size);
        *use_map = true;
    } else if (in->inline_data.len > size) {
        in->inline_data.len = size;
    } else if (size <= FS_INLINE_MAX && in->inline_data.len < size) {
        uint8_t *b = calloc(1, size);

        if (!b)
            return CAIRN_ENOMEM;
        memcpy(b, in->inline_data.data, in->inline_data.len);
        free(in->inline_data.data);
        in->inline_data.data = b;
        in->inline_data.len = size;
    }
    /* Growing an inline file past the inline limit: its bytes stay and the rest is a hole
     * (fs_read gives inline bytes, then zeros); the next write moves them to an object. */
    in->size = size;
    return 0;
}

int fs_truncate(struct fs_ctx *c, uint64_t ino, uint64_t size)
{
    int rc = CAIRN_ECONFLICT;

    for (int attempt = 0; attempt < TRUNCATE_RETRIES; attempt++) {
        Cairn__Inode *in;
        uint64_t ver;
        struct fs_extmap m = {0};
        bool use_map = false;

        rc = meta_inode_get(c->cl, ino, &in, &ver);
        if (rc)
            return rc;
        if (in->type != CAIRN__FILE_TYPE__FT_FILE) {
            rc = fs_is_dir(in) ? CAIRN_EISDIR : CAIRN_EINVAL;
            fs_inode_free(in);
            return rc;
        }
        if (in->size == size) {
            fs_inode_free(in);
            return 0;
        }
        rc = resize(in, size, &m, &use_map);
        if (!rc)
            rc = fs_commit_data(c, ino, in, ver, &m, use_map);
        fs_extmap_fini(&m);
        fs_inode_free(in);
        if (rc != CAIRN_ECONFLICT)
            return rc;
    }
    return rc;
}
