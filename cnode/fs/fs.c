/*
 * fs.c - the file system object, worker contexts, inodes, permissions and ETags (see fs.h).
 */
#include "cnode/fs/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/cairn.h"
#include "common/clock.h"
#include "common/log.h"

#define TAG "fs"

/* ---- the file system and its contexts ---- */

/* The root directory's inode, made on the first start of a cluster: open to all, like /tmp
 * without the sticky bit, since buckets are made in it by S3 and NFS alike. */
static int ensure_root(struct cl_cluster *cl)
{
    Cairn__Inode *in;
    uint64_t ver = 0;
    int rc = meta_inode_get(cl, FS_ROOT_INO, &in, &ver);

    if (rc == 0) {
        fs_inode_free(in);
        return 0;
    }
    if (rc == CAIRN_ENOENT) {
        Cairn__Inode root = CAIRN__INODE__INIT;

        root.type = CAIRN__FILE_TYPE__FT_DIR;
        root.mode = 0777;
        root.nlink = 2;
        root.explicit_dir = true;
        root.parent = FS_ROOT_INO;
        root.mtime_ns = root.ctime_ns = root.btime_ns = cairn_wall_ns();
        rc = meta_inode_put(cl, FS_ROOT_INO, &root, ver, NULL);
        if (rc == CAIRN_ECONFLICT)
            rc = 0; /* another C-node made it */
    }
    return rc;
}

void fs_read_stats(const struct fs *fs, struct fs_read_stats *out)
{
    out->stripes = atomic_load_explicit(&fs->stripes_read, memory_order_relaxed);
    out->degraded_stripes = atomic_load_explicit(&fs->degraded_stripes, memory_order_relaxed);
    out->frags_failed = atomic_load_explicit(&fs->frags_failed, memory_order_relaxed);
}

int fs_open(const struct fs_config *cfg, struct fs **out)
{
    struct fs *fs = calloc(1, sizeof(*fs));
    struct cl_cluster *cl = NULL;
    int rc;

    if (!fs)
        return CAIRN_ENOMEM;
    fs->cfg = *cfg;
    if (cfg->stripe_cache) {
        rc = fs_scache_create(cfg->stripe_cache, &fs->cache);
        if (rc)
            goto err;
    }
    rc = cl_cluster_open(&cfg->cluster, &cl);
    if (!rc)
        rc = ensure_root(cl);
    cl_cluster_close(cl);
    if (rc) {
        log_error(TAG, "cannot reach the namespace on the D-nodes: %s", cairn_strerror(rc));
        goto err;
    }
    *out = fs;
    return 0;
err:
    fs_scache_destroy(fs->cache);
    free(fs);
    return rc;
}

void fs_close(struct fs *fs)
{
    if (!fs)
        return;
    fs_scache_destroy(fs->cache);
    free(fs);
}

int fs_ctx_open(struct fs *fs, bool stripe_cache, struct fs_ctx **out)
{
    struct fs_ctx *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return CAIRN_ENOMEM;
    rc = cl_cluster_open(&fs->cfg.cluster, &c->cl);
    if (rc) {
        free(c);
        return rc;
    }
    c->fs = fs;
    c->cache = stripe_cache ? fs->cache : NULL;
    c->deferred_tail = &c->deferred;
    *out = c;
    return 0;
}

void fs_ctx_close(struct fs_ctx *c)
{
    if (!c)
        return;
    fs_run_deferred(c, true);
    free(c->seg);
    cl_cluster_close(c->cl);
    free(c);
}

void fs_ctx_tick(struct fs_ctx *c)
{
    fs_run_deferred(c, false);
}

int fs_statfs(struct fs_ctx *c, uint64_t *total, uint64_t *used)
{
    const struct ec_layout *l = cl_cluster_layout(c->cl);
    uint64_t t = 0, u = 0;

    for (unsigned i = 0; i < cl_cluster_dnodes(c->cl); i++) {
        uint64_t size = 0, du = 0;

        if (cl_cluster_ping(c->cl, i, &size, &du, NULL) == 0) {
            t += size;
            u += CAIRN_MIN(du, size);
        }
    }
    /* What clients can store: the raw space times k / (k + m). */
    *total = t / (l->k + l->m) * l->k;
    *used = u / (l->k + l->m) * l->k;
    return 0;
}

int fs_secret(struct fs_ctx *c, const char *name, uint8_t out[FS_SECRET_LEN])
{
    return meta_secret(c->cl, name, out);
}

int fs_user_get(struct fs_ctx *c, const char *access_key, Cairn__User **out)
{
    return meta_user_get(c->cl, access_key, out);
}

void fs_random_hex(char out[33])
{
    meta_random_hex(out);
}

/* ---- inodes ---- */

void fs_inode_free(Cairn__Inode *in)
{
    if (in)
        cairn__inode__free_unpacked(in, NULL);
}

Cairn__Inode *fs_inode_copy(const Cairn__Inode *in)
{
    size_t n = cairn__inode__get_packed_size(in);
    uint8_t *b = malloc(n ? n : 1);
    Cairn__Inode *copy;

    if (!b)
        return NULL;
    cairn__inode__pack(in, b);
    copy = cairn__inode__unpack(NULL, n, b);
    free(b);
    return copy;
}

int fs_inode_get(struct fs_ctx *c, uint64_t ino, Cairn__Inode **out, uint64_t *version)
{
    return meta_inode_get(c->cl, ino, out, version);
}

void fs_inode_get_many(struct fs_ctx *c, unsigned n, const uint64_t *inos, Cairn__Inode **outs,
                       int *rcs)
{
    meta_inode_get_many(c->cl, n, inos, outs, rcs);
}

bool fs_is_dir(const Cairn__Inode *in)
{
    return in->type == CAIRN__FILE_TYPE__FT_DIR;
}

const char *fs_etag(const Cairn__Inode *in)
{
    if (fs_is_dir(in) || ((!in->etag || !*in->etag) && in->size == 0))
        return FS_ETAG_EMPTY;
    return in->etag ? in->etag : FS_ETAG_EMPTY;
}

/* ---- names ---- */

bool fs_name_valid(const char *name, size_t len)
{
    return meta_name_valid(name, len);
}

/* ---- permissions ---- */

bool fs_in_group(const struct fs_cred *cr, uint32_t gid)
{
    if (cr->gid == gid)
        return true;
    for (uint32_t i = 0; i < cr->ngids && i < FS_MAX_GIDS; i++)
        if (cr->gids[i] == gid)
            return true;
    return false;
}

bool fs_may(const struct fs_cred *cr, const Cairn__Inode *in, unsigned want)
{
    unsigned bits;

    if (cr->uid == 0) {
        if (!(want & FS_MAY_X) || fs_is_dir(in))
            return true;
        return (in->mode & 0111) != 0;
    }
    if (in->uid == cr->uid)
        bits = (in->mode >> 6) & 7;
    else if (fs_in_group(cr, in->gid))
        bits = (in->mode >> 3) & 7;
    else
        bits = in->mode & 7;
    return (bits & want) == want;
}

bool fs_may_io(const struct fs_cred *cr, const Cairn__Inode *in, unsigned want)
{
    return in->uid == cr->uid || fs_may(cr, in, want) ||
           (want == FS_MAY_R && fs_may(cr, in, FS_MAY_X));
}

/* ---- ETags ---- */

static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = 0;
}

void fs_etag_md5(const uint8_t md5[16], char out[FS_ETAG_MAX])
{
    hex(md5, 16, out);
}

void fs_etag_changed(uint64_t ino, int64_t mtime_ns, uint64_t size, char out[FS_ETAG_MAX])
{
    uint8_t in[24], md[EVP_MAX_MD_SIZE];
    unsigned n = 0;

    memcpy(in, &ino, 8);
    memcpy(in + 8, &mtime_ns, 8);
    memcpy(in + 16, &size, 8);
    EVP_Digest(in, sizeof(in), md, &n, EVP_md5(), NULL);
    hex(md, 16, out);
    memcpy(out + 32, "-1", 3);
}

int fs_etag_parts(Cairn__Part *const *parts, unsigned n, char out[FS_ETAG_MAX])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    int rc = CAIRN_ENOMEM;

    if (!md || !EVP_DigestInit_ex(md, EVP_md5(), NULL))
        goto out;
    for (unsigned i = 0; i < n; i++)
        EVP_DigestUpdate(md, parts[i]->md5.data, parts[i]->md5.len);
    if (!EVP_DigestFinal_ex(md, digest, &dl))
        goto out;
    hex(digest, 16, out);
    snprintf(out + 32, FS_ETAG_MAX - 32, "-%u", n);
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

int fs_check_fresh(const struct fs_ctx *c, uint64_t t0_ms)
{
    uint64_t limit = c->fs->cfg.write_deadline_ms ? c->fs->cfg.write_deadline_ms
                                                   : FS_DEFAULT_WRITE_DEADLINE_MS;
    uint64_t age = cairn_now_ms() - t0_ms;

    if (age <= limit)
        return 0;
    log_error(TAG, "a write's data was stored %llu s ago, more than the %llu s a write may take "
              "(the garbage sweeper may have taken it): not recorded",
              (unsigned long long)(age / 1000), (unsigned long long)(limit / 1000));
    return CAIRN_ETIMEDOUT;
}
