/*
 * upload.c - multipart uploads: parts stored independently, then one file made of them.
 *
 * A part is an object of its own, recorded under the upload (a part uploaded again replaces
 * the record and its old object goes).  Completion makes one inode whose extents are the
 * chosen parts' objects end to end, so no byte is copied.  The completion is the only step that
 * can be cut in half by a crash with something to lose: the new inode is recorded in the upload
 * (completing_ino) before it is linked, so a retry on any C-node links that same inode rather
 * than freeing the parts' objects under it; an abort refuses while a completion is recorded.
 */
#include "cnode/fs/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/fault.h"
#include "common/log.h"

#define TAG "fs"
#define SCAN_PAGE 256u

int fs_upload_create(struct fs_ctx *c, uint64_t bucket, const char *bucket_name, const char *key,
                     const Cairn__Inode *meta, const char *owner, int64_t initiated_ns,
                     char id[33])
{
    Cairn__Upload u = CAIRN__UPLOAD__INIT;

    meta_random_hex(id);
    u.bucket = bucket;
    u.bucket_name = (char *)bucket_name;
    u.key = (char *)key;
    u.initiated_ns = initiated_ns;
    u.meta = (Cairn__Inode *)meta;
    u.owner = (char *)(owner ? owner : "");
    return meta_upload_create(c->cl, id, &u);
}

int fs_upload_get(struct fs_ctx *c, const char *id, Cairn__Upload **out, uint64_t *version)
{
    return meta_upload_get(c->cl, id, out, version);
}

int fs_upload_part(struct fs_ctx *c, const char *id, uint32_t number, struct fs_data *d,
                   int64_t mtime_ns)
{
    Cairn__Part p = CAIRN__PART__INIT, *old = NULL;
    int rc;

    p.number = number;
    p.size = d->size;
    p.etag = d->etag;
    p.extent = &d->ext;
    p.mtime_ns = mtime_ns;
    p.md5.data = d->md5;
    p.md5.len = sizeof(d->md5);
    rc = d->ext.object_id ? fs_check_fresh(c, d->t0_ms) : 0;
    if (rc) {
        fs_data_discard(c, d);
        return rc;
    }
    rc = meta_part_put(c->cl, id, &p, &old);
    if (!rc && cairn_fault("fs.part.unknown")) {
        rc = CAIRN_EUNREACH; /* tests: it landed, but the caller was not told */
        if (old)
            cairn__part__free_unpacked(old, NULL);
        old = NULL;
    }
    if (fs_unknown(rc)) {
        Cairn__Part *got = NULL;
        int r2 = meta_part_get(c->cl, id, number, &got, NULL);

        if (!r2 && got->extent && got->extent->object_id == d->ext.object_id)
            rc = 0; /* it landed (the part it replaced, if any, stays as garbage) */
        else if (r2 && r2 != CAIRN_ENOENT)
            d->ext.length = 0; /* still unknown: the record may reference the data, keep it */
        if (got)
            cairn__part__free_unpacked(got, NULL);
    }
    if (rc) {
        fs_data_discard(c, d);
        return rc;
    }
    if (old) {
        if (old->extent && old->extent->object_id != d->ext.object_id)
            fs_extents_free(c, &old->extent, 1);
        cairn__part__free_unpacked(old, NULL);
    }
    return 0;
}

int fs_upload_part_get(struct fs_ctx *c, const char *id, uint32_t number, Cairn__Part **out)
{
    return meta_part_get(c->cl, id, number, out, NULL);
}

/* Free every part of an upload (records and objects), except the numbers in keep[]. */
static void drop_parts(struct fs_ctx *c, const char *id, const uint32_t *keep, unsigned nkeep)
{
    struct meta_scan s;
    uint32_t from = 1;

    for (;;) {
        if (meta_part_scan(c->cl, id, from, SCAN_PAGE, &s))
            return;
        for (unsigned i = 0; i < s.n; i++) {
            Cairn__Part *p = cairn__part__unpack(NULL, s.entries[i].len, s.entries[i].val);
            bool kept = false;

            if (!p)
                continue;
            for (unsigned j = 0; j < nkeep; j++)
                kept |= keep[j] == p->number;
            if (!kept && p->extent)
                fs_extents_free(c, &p->extent, 1);
            meta_part_del(c->cl, id, p->number);
            from = p->number + 1;
            cairn__part__free_unpacked(p, NULL);
        }
        if (!s.more || s.n == 0) {
            meta_scan_fini(&s);
            return;
        }
        meta_scan_fini(&s);
    }
}

int fs_upload_complete(struct fs_ctx *c, uint64_t bucket, const char *key, size_t klen,
                       const char *id, Cairn__Upload *u, uint64_t version,
                       Cairn__Part *const *parts, unsigned n, char etag[FS_ETAG_MAX])
{
    Cairn__Inode in = CAIRN__INODE__INIT;
    Cairn__Extent **ex = calloc(n ? n : 1, sizeof(*ex));
    uint32_t *keep = calloc(n ? n : 1, sizeof(*keep));
    char name[FS_NAME_MAX + 1];
    uint64_t off = 0, dir, ino;
    int rc;

    if (!ex || !keep) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        ex[i] = parts[i]->extent;
        ex[i]->offset = off;
        off += parts[i]->size;
        keep[i] = parts[i]->number;
    }
    rc = fs_etag_parts(parts, n, etag);
    if (rc)
        goto out;
    if (u->meta) {
        in.content_type = u->meta->content_type;
        in.headers = u->meta->headers;
        in.n_headers = u->meta->n_headers;
        in.user_meta = u->meta->user_meta;
        in.n_user_meta = u->meta->n_user_meta;
    }
    in.type = CAIRN__FILE_TYPE__FT_FILE;
    in.mode = FS_OBJECT_FILE_MODE;
    in.nlink = 1;
    in.size = off;
    in.mtime_ns = in.ctime_ns = in.btime_ns = cairn_wall_ns();
    in.etag = etag;
    in.parts = n;
    in.extents = ex;
    in.n_extents = n;
    rc = fs_key_dirs(c, bucket, key, klen, &dir, name);
    if (rc)
        goto out;
    in.parent = dir;
    in.name = name;
    if (u->completing_ino) {
        ino = u->completing_ino;
        rc = meta_inode_put(c->cl, ino, &in, META_ANY, NULL);
    } else {
        rc = meta_inode_create(c->cl, &in, &ino);
        if (!rc) {
            /* Recorded in the upload before the link: a retry after a crash links this same
             * inode instead of freeing its parts' objects. */
            u->completing_ino = ino;
            rc = meta_upload_update(c->cl, id, u, version);
            if (rc && !fs_unknown(rc))
                meta_inode_del(c->cl, ino, META_ANY); /* (if unknown, a retry may need it) */
            if (rc == CAIRN_ECONFLICT)
                rc = CAIRN_ENOENT; /* completed or aborted meanwhile */
        }
    }
    if (!rc)
        rc = fs_key_link(c, dir, name, ino, &in);
    if (rc)
        goto out;
    /* The object is linked: drop the upload and the parts it did not use. */
    meta_upload_del(c->cl, id, u, META_ANY);
    drop_parts(c, id, keep, n);
out:
    free(ex);
    free(keep);
    return rc;
}

int fs_upload_abort(struct fs_ctx *c, const char *id, const Cairn__Upload *u, uint64_t version)
{
    int rc = meta_upload_del(c->cl, id, u, version);

    if (!rc)
        drop_parts(c, id, NULL, 0);
    return rc;
}

int fs_upload_parts_each(struct fs_ctx *c, const char *id, uint32_t from,
                         int (*fn)(void *arg, const Cairn__Part *p), void *arg)
{
    for (;;) {
        struct meta_scan s;
        int rc = meta_part_scan(c->cl, id, from, SCAN_PAGE, &s);

        if (rc)
            return rc;
        for (unsigned i = 0; i < s.n && !rc; i++) {
            Cairn__Part *p = cairn__part__unpack(NULL, s.entries[i].len, s.entries[i].val);

            if (!p)
                continue;
            from = p->number + 1;
            rc = fn(arg, p);
            cairn__part__free_unpacked(p, NULL);
        }
        if (rc || !s.more || s.n == 0) {
            meta_scan_fini(&s);
            return rc;
        }
        meta_scan_fini(&s);
    }
}

int fs_upload_each(struct fs_ctx *c, uint64_t bucket, const char *key_marker,
                   const char *upload_marker,
                   int (*fn)(void *arg, const char *key, size_t klen, const char *id),
                   void *arg)
{
    char km[FS_KEY_MAX + 1], um[33] = {0};
    bool have = key_marker != NULL;
    int rc = 0;

    if (have) {
        snprintf(km, sizeof(km), "%s", key_marker);
        snprintf(um, sizeof(um), "%s", upload_marker ? upload_marker : "");
    }
    for (;;) {
        struct meta_scan s;
        bool progressed = false;

        rc = meta_upload_scan(c->cl, bucket, have ? km : NULL, have ? um : NULL, SCAN_PAGE, &s);
        if (rc)
            return rc;
        for (unsigned i = 0; i < s.n && !rc; i++) {
            const char *k, *id;
            uint32_t kl, il;
            char idz[33];

            if (meta_upload_index_key(s.entries[i].key, s.entries[i].klen, &k, &kl, &id, &il) ||
                il != 32 || kl > FS_KEY_MAX)
                continue;
            /* The scan starts at the markers themselves: they were listed already. */
            if (have && kl == strlen(km) && !memcmp(k, km, kl) && !memcmp(id, um, 32))
                continue;
            memcpy(idz, id, 32);
            idz[32] = 0;
            memcpy(km, k, kl);
            km[kl] = 0;
            memcpy(um, idz, 33);
            have = progressed = true;
            rc = fn(arg, km, kl, idz);
        }
        if (rc || !s.more || !progressed) {
            meta_scan_fini(&s);
            return rc;
        }
        meta_scan_fini(&s);
    }
}
