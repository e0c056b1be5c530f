/*
 * test_fs.c - the file system both heads call (cnode/fs/fs.h), against real D-nodes.
 *
 * Each test starts a small cluster (tests/support/dcluster.h: 4 D-nodes, 2+1, so metadata has
 * 2 replicas and stripes 3 fragments), opens the file system on it and drives one group of
 * operations, checking what a client of either head would see afterwards: entries, inodes,
 * bytes, directory mtimes, ETags, listings.  The crash-order tests build the state a C-node
 * killed between two steps leaves behind, with the record calls of meta/ns.h, and check that
 * the namespace is whole and that a retry from another C-node finishes the operation.
 */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/fs/fs.h"
#include "common/cairn.h"
#include "common/fault.h"
#include "meta/ns.h"
#include "tests/support/dcluster.h"

static struct dcluster *dc;
static struct fs *fs;
static struct fs_ctx *c;
static struct cl_cluster *view; /* for the record calls that stage a crashed operation */

static void setup(void)
{
    struct dcluster_opts o = {.nodes = 4, .k = 2, .m = 1, .frag_size = 64u << 10};
    struct fs_config cfg = {.stripe_cache = 8};

    cr_assert_eq(dcluster_start(&o, &dc), 0);
    cfg.cluster = *dcluster_config(dc);
    cr_assert_eq(fs_open(&cfg, &fs), 0);
    cr_assert_eq(fs_ctx_open(fs, true, &c), 0);
    cr_assert_eq(dcluster_open(dc, &view), 0);
}

static void teardown(void)
{
    cl_cluster_close(view);
    fs_ctx_close(c);
    fs_close(fs);
    dcluster_stop(dc);
    c = NULL;
    fs = NULL;
    dc = NULL;
    view = NULL;
}

TestSuite(fs, .init = setup, .fini = teardown, .timeout = 120);

static const struct fs_cred root_cred = {.uid = 0, .gid = 0};

/* A directory in the root to work in. */
static uint64_t mkdir_root(const char *name)
{
    Cairn__Inode in = CAIRN__INODE__INIT;
    struct fs_dir root = {.ino = FS_ROOT_INO};
    Cairn__Inode *r;
    uint64_t ino;

    cr_assert_eq(fs_inode_get(c, FS_ROOT_INO, &r, NULL), 0);
    fs_new_inode(&in, CAIRN__FILE_TYPE__FT_DIR, &root_cred, r, 0777);
    fs_inode_free(r);
    cr_assert_eq(fs_create(c, &root, name, strlen(name), &in, &ino, NULL), 0);
    return ino;
}

static uint64_t create_file(uint64_t dir, const char *name, uint32_t uid, uint32_t mode)
{
    Cairn__Inode in = CAIRN__INODE__INIT, *d;
    struct fs_dir fd = {.ino = dir};
    struct fs_cred cr = {.uid = uid, .gid = uid};
    uint64_t ino;

    cr_assert_eq(fs_inode_get(c, dir, &d, NULL), 0);
    fs_new_inode(&in, CAIRN__FILE_TYPE__FT_FILE, &cr, d, mode);
    fs_inode_free(d);
    cr_assert_eq(fs_create(c, &fd, name, strlen(name), &in, &ino, NULL), 0);
    return ino;
}

static int64_t mtime_of(uint64_t ino)
{
    Cairn__Inode *in;
    int64_t t;

    cr_assert_eq(fs_inode_get(c, ino, &in, NULL), 0);
    t = in->mtime_ns;
    fs_inode_free(in);
    return t;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)((i * 131u + seed * 7u + (i >> 12)) & 0xff);
}

/* The whole content of a file. */
static uint8_t *read_all(uint64_t ino, uint64_t *size)
{
    Cairn__Inode *in;
    uint8_t *buf, *cur;

    cr_assert_eq(fs_inode_get(c, ino, &in, NULL), 0);
    *size = in->size;
    buf = malloc(in->size ? in->size : 1);
    cur = buf;
    cr_assert_eq(fs_read(c, in, 0, in->size, fs_sink_buffer, &cur), 0);
    fs_inode_free(in);
    return buf;
}

/* ---- names ---- */

Test(fs, create_lookup_and_both_forms_exclude_each_other)
{
    uint64_t d = mkdir_root("work"), f, ino, sub;
    bool is_dir;
    Cairn__Inode in = CAIRN__INODE__INIT, *dir;
    struct fs_dir fd = {.ino = d};

    f = create_file(d, "x", 0, 0644);
    cr_assert_eq(fs_lookup(c, d, "x", 1, &ino, &is_dir), 0);
    cr_assert_eq(ino, f);
    cr_assert(!is_dir);
    /* A directory of the same name is refused: a name is a file or a directory, never both. */
    cr_assert_eq(fs_inode_get(c, d, &dir, NULL), 0);
    fs_new_inode(&in, CAIRN__FILE_TYPE__FT_DIR, &root_cred, dir, 0755);
    fs_inode_free(dir);
    cr_assert_eq(fs_create(c, &fd, "x", 1, &in, &sub, NULL), CAIRN_EEXIST);
    cr_assert_eq(fs_create(c, &fd, "y", 1, &in, &sub, NULL), 0);
    cr_assert_eq(fs_lookup(c, d, "y", 1, &ino, &is_dir), 0);
    cr_assert(is_dir);
    cr_assert_eq(ino, sub);
    cr_assert_eq(fs_lookup(c, d, "z", 1, &ino, &is_dir), CAIRN_ENOENT);
    cr_assert_eq(fs_create(c, &fd, "..", 2, &in, &sub, NULL), CAIRN_EINVAL);
}

Test(fs, entry_changes_move_the_directory_mtime)
{
    uint64_t d = mkdir_root("work"), ino;
    int64_t t0 = mtime_of(d), t1, t2;
    struct fs_dir fd = {.ino = d};
    Cairn__Inode *after = NULL;
    bool last;

    create_file(d, "a", 0, 0644);
    t1 = mtime_of(d);
    cr_assert_gt(t1, t0);
    cr_assert_eq(fs_remove(c, &fd, NULL, "a", 1, false, &ino, &last, &after), 0);
    cr_assert(last);
    cr_assert_not_null(after);
    t2 = mtime_of(d);
    cr_assert_gt(t2, t1);
    cr_assert_eq(after->mtime_ns, t2);
    fs_inode_free(after);
}

Test(fs, remove_rules)
{
    uint64_t d = mkdir_root("work"), ino, sub;
    struct fs_dir fd = {.ino = d}, sd;
    Cairn__Inode in = CAIRN__INODE__INIT, *dir;
    bool last;

    create_file(d, "f", 0, 0644);
    cr_assert_eq(fs_inode_get(c, d, &dir, NULL), 0);
    fs_new_inode(&in, CAIRN__FILE_TYPE__FT_DIR, &root_cred, dir, 0755);
    fs_inode_free(dir);
    cr_assert_eq(fs_create(c, &fd, "sub", 3, &in, &sub, NULL), 0);
    cr_assert_eq(fs_remove(c, &fd, NULL, "f", 1, true, &ino, &last, NULL), CAIRN_ENOTDIR);
    cr_assert_eq(fs_remove(c, &fd, NULL, "sub", 3, false, &ino, &last, NULL), CAIRN_EISDIR);
    sd.ino = sub;
    sd.in = NULL;
    create_file(sub, "inner", 0, 0644);
    cr_assert_eq(fs_remove(c, &fd, NULL, "sub", 3, true, &ino, &last, NULL), CAIRN_ENOTEMPTY);
    cr_assert_eq(fs_remove(c, &sd, NULL, "inner", 5, false, &ino, &last, NULL), 0);
    cr_assert_eq(fs_inode_get(c, ino, &dir, NULL), CAIRN_ENOENT, "a last link's inode goes");
    cr_assert_eq(fs_remove(c, &fd, NULL, "sub", 3, true, &ino, &last, NULL), 0);
    cr_assert_eq(ino, sub);
    cr_assert_eq(fs_remove(c, &fd, NULL, "sub", 3, true, &ino, &last, NULL), CAIRN_ENOENT);
}

Test(fs, sticky_directory_protects_other_users_entries)
{
    uint64_t d = mkdir_root("tmp"), ino;
    struct fs_dir fd = {.ino = d};
    struct fs_sattr sa = {.set_mode = true, .mode = 01777, .set_uid = true, .uid = 3000};
    struct fs_cred alice = {.uid = 1000, .gid = 1000}, bob = {.uid = 2000, .gid = 2000};
    bool last;

    cr_assert_eq(fs_setattr(c, &root_cred, d, &sa, NULL, NULL), 0);
    create_file(d, "bobs", 2000, 0666);
    cr_assert_eq(fs_remove(c, &fd, &alice, "bobs", 4, false, &ino, &last, NULL), CAIRN_EACCES);
    cr_assert_eq(fs_remove(c, &fd, &bob, "bobs", 4, false, &ino, &last, NULL), 0);
}

Test(fs, rename_replaces_and_refuses_what_posix_refuses)
{
    uint64_t d = mkdir_root("work"), a, b, ino, sub, sub2, replaced;
    struct fs_dir fd = {.ino = d};
    Cairn__Inode in = CAIRN__INODE__INIT, *dir, *moved;
    bool is_dir, last;

    a = create_file(d, "a", 0, 0644);
    b = create_file(d, "b", 0, 0644);
    cr_assert_eq(fs_rename(c, &fd, "a", 1, &fd, "b", 1, &replaced, &last, NULL, NULL), 0);
    cr_assert_eq(replaced, b);
    cr_assert(last);
    cr_assert_eq(fs_lookup(c, d, "a", 1, &ino, &is_dir), CAIRN_ENOENT);
    cr_assert_eq(fs_lookup(c, d, "b", 1, &ino, &is_dir), 0);
    cr_assert_eq(ino, a);
    cr_assert_eq(fs_inode_get(c, a, &moved, NULL), 0);
    cr_assert_str_eq(moved->name, "b", "the inode follows its new name");
    fs_inode_free(moved);
    /* Directories: not over a non-empty one, not into themselves. */
    cr_assert_eq(fs_inode_get(c, d, &dir, NULL), 0);
    fs_new_inode(&in, CAIRN__FILE_TYPE__FT_DIR, &root_cred, dir, 0755);
    fs_inode_free(dir);
    cr_assert_eq(fs_create(c, &fd, "s1", 2, &in, &sub, NULL), 0);
    cr_assert_eq(fs_create(c, &fd, "s2", 2, &in, &sub2, NULL), 0);
    create_file(sub2, "keep", 0, 0644);
    cr_assert_eq(fs_rename(c, &fd, "s1", 2, &fd, "s2", 2, &replaced, &last, NULL, NULL),
                 CAIRN_ENOTEMPTY);
    cr_assert_eq(fs_rename(c, &fd, "b", 1, &fd, "s2", 2, &replaced, &last, NULL, NULL),
                 CAIRN_EISDIR);
    cr_assert_eq(fs_rename(c, &fd, "s1", 2, &fd, "b", 1, &replaced, &last, NULL, NULL),
                 CAIRN_ENOTDIR);
    {
        struct fs_dir into = {.ino = sub};

        cr_assert_eq(fs_rename(c, &fd, "s1", 2, &into, "x", 1, &replaced, &last, NULL, NULL),
                     CAIRN_EINVAL);
    }
    /* The same inode under both names: nothing to do. */
    cr_assert_eq(fs_rename(c, &fd, "b", 1, &fd, "b", 1, &replaced, &last, NULL, NULL), 0);
    cr_assert_eq(replaced, 0);
}

Test(fs, link_counts_names)
{
    uint64_t d = mkdir_root("work"), f = create_file(d, "one", 0, 0644), ino;
    struct fs_dir fd = {.ino = d};
    Cairn__Inode *in;
    bool last;

    cr_assert_eq(fs_link(c, f, &fd, "two", 3, NULL), 0);
    cr_assert_eq(fs_link(c, f, &fd, "one", 3, NULL), CAIRN_EEXIST);
    cr_assert_eq(fs_link(c, d, &fd, "dirlink", 7, NULL), CAIRN_EISDIR);
    cr_assert_eq(fs_inode_get(c, f, &in, NULL), 0);
    cr_assert_eq(in->nlink, 2);
    fs_inode_free(in);
    cr_assert_eq(fs_remove(c, &fd, NULL, "one", 3, false, &ino, &last, NULL), 0);
    cr_assert(!last, "another name still holds the file");
    cr_assert_eq(fs_inode_get(c, f, &in, NULL), 0);
    cr_assert_eq(in->nlink, 1);
    fs_inode_free(in);
    cr_assert_eq(fs_remove(c, &fd, NULL, "two", 3, false, &ino, &last, NULL), 0);
    cr_assert(last);
}

Test(fs, setattr_follows_posix_ownership)
{
    uint64_t d = mkdir_root("work"), f = create_file(d, "f", 1000, 0644);
    struct fs_cred owner = {.uid = 1000, .gid = 1000}, other = {.uid = 2000, .gid = 2000};
    struct fs_sattr mode = {.set_mode = true, .mode = 0600};
    struct fs_sattr chown = {.set_uid = true, .uid = 2000};
    struct fs_sattr guard = {.set_mode = true, .mode = 0644, .guard = true, .guard_ctime = 1};
    Cairn__Inode *before = NULL, *after = NULL;

    cr_assert_eq(fs_setattr(c, &other, f, &mode, NULL, NULL), CAIRN_EPERM);
    cr_assert_eq(fs_setattr(c, &owner, f, &chown, NULL, NULL), CAIRN_EPERM);
    cr_assert_eq(fs_setattr(c, &owner, f, &mode, &before, &after), 0);
    cr_assert_eq(before->mode & 0777, 0644);
    cr_assert_eq(after->mode & 0777, 0600);
    cr_assert_eq(fs_setattr(c, &owner, f, &guard, NULL, NULL), CAIRN_EPRECOND);
    cr_assert_eq(fs_setattr(c, &root_cred, f, &chown, NULL, NULL), 0);
    fs_inode_free(before);
    fs_inode_free(after);
}

/* ---- data ---- */

Test(fs, writes_land_over_each_other_and_holes_read_zero)
{
    uint64_t d = mkdir_root("work"), f = create_file(d, "data", 0, 0644), size;
    size_t n = 300000; /* past the inline limit: objects */
    uint8_t *a = malloc(n), *b = malloc(1000), *got, *want = calloc(1, n + 5000);
    struct fs_range r[2];

    fill(a, n, 1);
    fill(b, 1000, 2);
    /* Small first: inline in the inode. */
    r[0] = (struct fs_range){.off = 10, .len = 1000, .data = b};
    cr_assert_eq(fs_write(c, f, r, 1, NULL, NULL), 0);
    memcpy(want + 10, b, 1000);
    /* Then beyond the inline limit, with a hole in between. */
    r[0] = (struct fs_range){.off = 5000, .len = n, .data = a};
    cr_assert_eq(fs_write(c, f, r, 1, NULL, NULL), 0);
    memcpy(want + 5000, a, n);
    /* And over the middle of that object: its other bytes stay. */
    r[0] = (struct fs_range){.off = 100000, .len = 1000, .data = b};
    r[1] = (struct fs_range){.off = 200000, .len = 1000, .data = b};
    cr_assert_eq(fs_write(c, f, r, 2, NULL, NULL), 0);
    memcpy(want + 100000, b, 1000);
    memcpy(want + 200000, b, 1000);
    got = read_all(f, &size);
    cr_assert_eq(size, n + 5000);
    cr_assert(!memcmp(got, want, n + 5000), "the file reads back as written");
    free(got);
    cr_assert_eq(fs_truncate(c, f, 6000), 0);
    got = read_all(f, &size);
    cr_assert_eq(size, 6000);
    cr_assert(!memcmp(got, want, 6000));
    free(got);
    cr_assert_eq(fs_truncate(c, f, 9000), 0);
    got = read_all(f, &size);
    cr_assert_eq(size, 9000);
    cr_assert(!memcmp(got, want, 6000));
    for (size_t i = 6000; i < 9000; i++)
        cr_assert_eq(got[i], 0, "growth reads as zeros");
    free(got);
    free(a);
    free(b);
    free(want);
}

Test(fs, writers_in_two_contexts_both_land)
{
    uint64_t d = mkdir_root("work"), f = create_file(d, "shared", 0, 0644), size;
    struct fs_ctx *c2;
    size_t n = 200000;
    uint8_t *a = malloc(n), *b = malloc(n), *got;
    struct fs_range ra = {.off = 0, .len = n, .data = a}, rb = {.off = n, .len = n, .data = b};

    fill(a, n, 3);
    fill(b, n, 4);
    cr_assert_eq(fs_ctx_open(fs, false, &c2), 0);
    cr_assert_eq(fs_write(c, f, &ra, 1, NULL, NULL), 0);
    cr_assert_eq(fs_write(c2, f, &rb, 1, NULL, NULL), 0);
    got = read_all(f, &size);
    cr_assert_eq(size, 2 * n);
    cr_assert(!memcmp(got, a, n) && !memcmp(got + n, b, n));
    free(got);
    fs_ctx_close(c2);
    free(a);
    free(b);
}

/* ---- keys and buckets ---- */

struct mem_src {
    const uint8_t *p;
    size_t off;
};

static int mem_fill(void *arg, uint8_t *buf, size_t len)
{
    struct mem_src *s = arg;

    memcpy(buf, s->p + s->off, len);
    s->off += len;
    return 0;
}

static void put_key(uint64_t bucket, const char *key, const uint8_t *data, size_t len,
                    int want_rc)
{
    Cairn__Inode in = CAIRN__INODE__INIT;
    struct mem_src src = {.p = data};
    struct fs_data fd;

    cr_assert_eq(fs_store(c, len, true, mem_fill, &src, &fd), 0);
    in.etag = fd.etag;
    cr_assert_eq(fs_key_put(c, bucket, key, strlen(key), &in, &fd), want_rc, "%s", key);
    fs_data_fini(&fd);
}

static void md5_hex(const uint8_t *p, size_t n, char out[33])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned l = 0;

    EVP_Digest(p, n, md, &l, EVP_md5(), NULL);
    for (unsigned i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

Test(fs, keys_are_paths_with_md5_etags)
{
    uint64_t bucket, ino, size;
    size_t n = 1u << 20; /* several stripes of 2 x 64 KiB */
    uint8_t *big = malloc(n), *got;
    Cairn__Inode *in;
    char want[33];

    cr_assert_eq(fs_bucket_create(c, "bkt", "owner", &bucket), 0);
    cr_assert_eq(fs_bucket_create(c, "bkt", "owner", &ino), CAIRN_EEXIST);
    fill(big, n, 5);
    put_key(bucket, "a/b/big.bin", big, n, 0);
    cr_assert_eq(fs_key_get(c, bucket, "a/b/big.bin", 11, &ino, &in, NULL), 0);
    md5_hex(big, n, want);
    cr_assert_str_eq(fs_etag(in), want);
    fs_inode_free(in);
    got = read_all(ino, &size);
    cr_assert_eq(size, n);
    cr_assert(!memcmp(got, big, n));
    free(got);
    /* A file where a directory is needed, and a directory where a file would go. */
    put_key(bucket, "a/b/big.bin/x", big, 10, CAIRN_EEXIST);
    put_key(bucket, "a/b", big, 10, CAIRN_EEXIST);
    /* Overwrite: last writer wins, the old inode loses its only link. */
    put_key(bucket, "a/b/big.bin", big, 100, 0);
    {
        uint64_t ino2;

        cr_assert_eq(fs_key_get(c, bucket, "a/b/big.bin", 11, &ino2, &in, NULL), 0);
        cr_assert_neq(ino2, ino);
        cr_assert_eq(in->size, 100);
        fs_inode_free(in);
        cr_assert_eq(fs_inode_get(c, ino, &in, NULL), CAIRN_ENOENT);
    }
    cr_assert_eq(fs_bucket_remove(c, "bkt", bucket), CAIRN_ENOTEMPTY);
    cr_assert_eq(fs_key_remove(c, bucket, "a/b/big.bin", 11), 0);
    cr_assert_eq(fs_key_get(c, bucket, "a/b/big.bin", 11, &ino, &in, NULL), CAIRN_ENOENT);
    cr_assert_eq(fs_key_remove(c, bucket, "a/b/big.bin", 11), 0, "removing twice is no error");
    cr_assert_eq(fs_bucket_remove(c, "bkt", bucket), 0, "implied directories go with it");
    cr_assert_eq(fs_bucket_get(c, "bkt", &ino, NULL), CAIRN_ENOENT);
    free(big);
}

Test(fs, a_new_key_moves_its_directory_mtime)
{
    uint64_t bucket, dir;
    int64_t t0, t1;
    uint8_t b[10] = {0};
    bool is_dir;

    cr_assert_eq(fs_bucket_create(c, "bkt", "owner", &bucket), 0);
    put_key(bucket, "d/one", b, sizeof(b), 0);
    cr_assert_eq(fs_lookup(c, bucket, "d", 1, &dir, &is_dir), 0);
    t0 = mtime_of(dir);
    put_key(bucket, "d/two", b, sizeof(b), 0);
    t1 = mtime_of(dir);
    cr_assert_gt(t1, t0, "an NFS client's cached listing must see the new name");
}

struct collected {
    char items[64][64];
    unsigned n;
};

static void on_key(void *arg, const char *key, size_t len, uint64_t size, const char *etag,
                   int64_t mtime)
{
    struct collected *col = arg;

    (void)size;
    (void)etag;
    (void)mtime;
    snprintf(col->items[col->n++], 64, "%.*s", (int)len, key);
}

static void on_prefix(void *arg, const char *p, size_t len)
{
    struct collected *col = arg;

    snprintf(col->items[col->n++], 64, "P:%.*s", (int)len, p);
}

static void list(uint64_t bucket, const char *prefix, const char *delim, const char *after,
                 unsigned max, struct collected *col, struct fs_list_result *res)
{
    struct fs_list_query q = {.prefix = prefix, .plen = strlen(prefix), .delim = delim,
                              .dlen = delim ? strlen(delim) : 0, .after = after,
                              .alen = after ? strlen(after) : 0, .max = max, .key = on_key,
                              .prefix_fn = on_prefix, .arg = col};

    memset(col, 0, sizeof(*col));
    cr_assert_eq(fs_list_keys(c, bucket, &q, res), 0);
}

Test(fs, listings_are_exact_in_s3_order)
{
    static const char *keys[] = {"a-b", "a/x", "a/y/z", "a0", "b/c/d", "b/e"};
    struct collected col;
    struct fs_list_result res;
    uint64_t bucket;
    uint8_t b[4] = {0};

    cr_assert_eq(fs_bucket_create(c, "bkt", "owner", &bucket), 0);
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(keys); i++)
        put_key(bucket, keys[i], b, sizeof(b), 0);
    cr_assert_eq(fs_key_mkdir(c, bucket, "empty", 5), 0);
    list(bucket, "", NULL, NULL, 100, &col, &res);
    cr_assert_eq(col.n, 7);
    cr_assert_str_eq(col.items[0], "a-b");
    cr_assert_str_eq(col.items[1], "a/x");
    cr_assert_str_eq(col.items[2], "a/y/z");
    cr_assert_str_eq(col.items[3], "a0");
    cr_assert_str_eq(col.items[4], "b/c/d");
    cr_assert_str_eq(col.items[5], "b/e");
    cr_assert_str_eq(col.items[6], "empty/", "an explicit directory is a key");
    cr_assert(!res.truncated);
    list(bucket, "", "/", NULL, 100, &col, &res);
    cr_assert_eq(col.n, 5);
    cr_assert_str_eq(col.items[0], "a-b");
    cr_assert_str_eq(col.items[1], "P:a/");
    cr_assert_str_eq(col.items[2], "a0");
    cr_assert_str_eq(col.items[3], "P:b/");
    cr_assert_str_eq(col.items[4], "P:empty/");
    list(bucket, "a/", "/", NULL, 100, &col, &res);
    cr_assert_eq(col.n, 2);
    cr_assert_str_eq(col.items[0], "a/x");
    cr_assert_str_eq(col.items[1], "P:a/y/");
    /* Pages: two at a time, continuing after the last item. */
    list(bucket, "", NULL, NULL, 2, &col, &res);
    cr_assert_eq(col.n, 2);
    cr_assert(res.truncated);
    {
        char after[64];

        cr_assert_lt(res.last_len, sizeof(after));
        memcpy(after, res.last, res.last_len);
        after[res.last_len] = 0;
        list(bucket, "", NULL, after, 2, &col, &res);
        cr_assert_str_eq(col.items[0], "a/y/z");
        cr_assert_str_eq(col.items[1], "a0");
        cr_assert(res.truncated);
    }
    list(bucket, "", NULL, "b/e", 2, &col, &res);
    cr_assert_eq(col.n, 1);
    cr_assert(!res.truncated, "a full last page is not truncated");
}

/* ---- multipart ---- */

static Cairn__Part *store_part(const char *id, uint32_t num, const uint8_t *p, size_t n)
{
    struct mem_src src = {.p = p};
    struct fs_data d;
    Cairn__Part *part;

    cr_assert_eq(fs_store(c, n, false, mem_fill, &src, &d), 0);
    cr_assert_eq(fs_upload_part(c, id, num, &d, cairn_wall_ns()), 0);
    fs_data_fini(&d);
    cr_assert_eq(fs_upload_part_get(c, id, num, &part), 0);
    return part;
}

Test(fs, multipart_upload_becomes_one_file)
{
    Cairn__Inode meta = CAIRN__INODE__INIT, *in;
    Cairn__Upload *u;
    Cairn__Part *parts[2];
    uint64_t bucket, ver, ino, size;
    size_t n1 = 300000, n2 = 1234;
    uint8_t *p1 = malloc(n1), *p2 = malloc(n2), *got;
    char id[33], etag[FS_ETAG_MAX];

    fill(p1, n1, 6);
    fill(p2, n2, 7);
    cr_assert_eq(fs_bucket_create(c, "bkt", "owner", &bucket), 0);
    cr_assert_eq(fs_upload_create(c, bucket, "bkt", "mp/obj", &meta, "owner", 1, id), 0);
    cairn__part__free_unpacked(store_part(id, 3, p2, 10), NULL); /* not chosen: goes */
    parts[0] = store_part(id, 1, p1, n1);
    parts[1] = store_part(id, 2, p2, n2);
    cr_assert_eq(fs_upload_get(c, id, &u, &ver), 0);
    cr_assert_eq(fs_upload_complete(c, bucket, "mp/obj", 6, id, u, ver, parts, 2, etag), 0);
    cr_assert_str_eq(etag + 32, "-2");
    cr_assert_eq(fs_key_get(c, bucket, "mp/obj", 6, &ino, &in, NULL), 0);
    cr_assert_str_eq(in->etag, etag);
    cr_assert_eq(in->parts, 2);
    fs_inode_free(in);
    got = read_all(ino, &size);
    cr_assert_eq(size, n1 + n2);
    cr_assert(!memcmp(got, p1, n1) && !memcmp(got + n1, p2, n2));
    free(got);
    cairn__upload__free_unpacked(u, NULL);
    cr_assert_eq(fs_upload_get(c, id, &u, &ver), CAIRN_ENOENT, "the upload is gone");
    {
        Cairn__Part *p3;

        cr_assert_eq(fs_upload_part_get(c, id, 3, &p3), CAIRN_ENOENT, "unused parts go");
    }
    cairn__part__free_unpacked(parts[0], NULL);
    cairn__part__free_unpacked(parts[1], NULL);
    free(p1);
    free(p2);
}

/* ---- crash order ---- */

/* A completion cut off after it recorded its inode in the upload but before it linked it: a
 * retry from another context links that same inode, and the parts' data is intact. */
Test(fs, multipart_completion_retried_after_a_crash_links_the_same_inode)
{
    Cairn__Inode meta = CAIRN__INODE__INIT, *in;
    Cairn__Upload *u;
    Cairn__Part *parts[1];
    uint64_t bucket, ver, ino, size, pending;
    size_t n = 100000;
    uint8_t *p = malloc(n), *got;
    char id[33], etag[FS_ETAG_MAX];
    struct fs_ctx *other;
    Cairn__Inode stub = CAIRN__INODE__INIT;

    fill(p, n, 8);
    cr_assert_eq(fs_bucket_create(c, "bkt", "owner", &bucket), 0);
    cr_assert_eq(fs_upload_create(c, bucket, "bkt", "k", &meta, "owner", 1, id), 0);
    parts[0] = store_part(id, 1, p, n);
    /* The crashed completion's first steps: an inode, recorded in the upload. */
    cr_assert_eq(fs_upload_get(c, id, &u, &ver), 0);
    stub.type = CAIRN__FILE_TYPE__FT_FILE;
    cr_assert_eq(meta_inode_create(view, &stub, &pending), 0);
    u->completing_ino = pending;
    cr_assert_eq(meta_upload_update(view, id, u, ver), 0);
    cairn__upload__free_unpacked(u, NULL);
    /* Another C-node retries. */
    cr_assert_eq(fs_ctx_open(fs, false, &other), 0);
    cr_assert_eq(fs_upload_get(other, id, &u, &ver), 0);
    cr_assert_eq(fs_upload_complete(other, bucket, "k", 1, id, u, ver, parts, 1, etag), 0);
    cr_assert_eq(fs_key_get(other, bucket, "k", 1, &ino, &in, NULL), 0);
    cr_assert_eq(ino, pending, "the recorded inode is the one linked");
    fs_inode_free(in);
    fs_ctx_close(other);
    got = read_all(ino, &size);
    cr_assert_eq(size, n);
    cr_assert(!memcmp(got, p, n));
    free(got);
    cairn__upload__free_unpacked(u, NULL);
    cairn__part__free_unpacked(parts[0], NULL);
    free(p);
}

/* A rename cut off after it linked the new name but before it removed the old one leaves both
 * names on the same inode, never neither, and the client's retry succeeds (RFC 1813: renaming
 * a name onto another link of the same file does nothing).  The extra name is the known cost
 * of a rename without an intent record (docs/architecture.md, known gaps). */
Test(fs, rename_cut_in_half_leaves_both_names_never_neither)
{
    uint64_t d = mkdir_root("work"), f = create_file(d, "old", 0, 0644), ino, replaced;
    struct fs_dir fd = {.ino = d};
    Cairn__Dirent de = CAIRN__DIRENT__INIT;
    bool is_dir, last;

    de.ino = f;
    de.type = CAIRN__FILE_TYPE__FT_FILE;
    cr_assert_eq(meta_dirent_put(view, d, "new", 3, &de, 0, NULL), 0);
    cr_assert_eq(fs_lookup(c, d, "old", 3, &ino, &is_dir), 0);
    cr_assert_eq(ino, f);
    cr_assert_eq(fs_lookup(c, d, "new", 3, &ino, &is_dir), 0);
    cr_assert_eq(ino, f);
    cr_assert_eq(fs_rename(c, &fd, "old", 3, &fd, "new", 3, &replaced, &last, NULL, NULL), 0);
    cr_assert_eq(replaced, 0, "the same inode: nothing is replaced");
    cr_assert_eq(fs_lookup(c, d, "new", 3, &ino, &is_dir), 0);
    cr_assert_eq(ino, f, "the file is reachable under its new name");
}

/* A create cut off after the inode record and before the entry leaves an unreferenced inode:
 * the name does not exist, and creating it again works. */
Test(fs, create_cut_in_half_leaves_no_name)
{
    uint64_t d = mkdir_root("work"), orphan, ino;
    Cairn__Inode stub = CAIRN__INODE__INIT;
    struct fs_page p;
    bool is_dir;

    stub.type = CAIRN__FILE_TYPE__FT_FILE;
    stub.parent = d;
    stub.name = "ghost";
    cr_assert_eq(meta_inode_create(view, &stub, &orphan), 0);
    cr_assert_eq(fs_lookup(c, d, "ghost", 5, &ino, &is_dir), CAIRN_ENOENT);
    cr_assert_eq(fs_dir_page(c, d, NULL, 0, 100, &p), 0);
    cr_assert_eq(p.n, 0, "no entry names the orphan");
    fs_page_fini(&p);
    ino = create_file(d, "ghost", 0, 0644);
    cr_assert_neq(ino, orphan);
}

/* ---- unknown outcomes ---- */

/* A record update that lands but is reported as lost (timed out after it was sent, too few
 * replicas answered) must not make the caller free what the record now references.  The
 * fault sites (common/fault.h) make an update that succeeded report CAIRN_EUNREACH. */

/* Put key "k" of bucket with the update at fault site `site` reported lost: the key must
 * name an inode holding exactly p afterwards. */
static void put_unknown_and_check(uint64_t bucket, const char *site, const uint8_t *p, size_t n)
{
    uint64_t ino, size;
    Cairn__Inode *in;
    uint8_t *got;

    cr_assert(cairn_fault_arm(site, 1, false));
    put_key(bucket, "k", p, n, 0);
    cairn_fault_clear();
    cr_assert_eq(fs_key_get(c, bucket, "k", 1, &ino, &in, NULL), 0, "%s: the entry landed", site);
    fs_inode_free(in);
    got = read_all(ino, &size);
    cr_assert_eq(size, n);
    cr_assert(!memcmp(got, p, n), "%s: and its data is there", site);
    free(got);
}

Test(fs, key_put_whose_link_outcome_is_unknown_keeps_the_object)
{
    uint64_t bucket;
    size_t n = 300000;
    uint8_t *p = malloc(n);

    cr_assert_eq(fs_bucket_create(c, "bkt", "owner", &bucket), 0);
    /* A new key: inode and entry are one update. */
    fill(p, n, 9);
    put_unknown_and_check(bucket, "fs.key.unknown", p, n);
    /* A key replaced: the entry moves to a new inode. */
    fill(p, n, 10);
    put_unknown_and_check(bucket, "fs.link.unknown", p, n);
    free(p);
}

Test(fs, create_whose_entry_outcome_is_unknown_keeps_the_inode)
{
    uint64_t d = mkdir_root("work"), f, ino;
    Cairn__Inode *in;
    bool is_dir;

    cr_assert(cairn_fault_arm("fs.create.unknown", 1, false));
    f = create_file(d, "f", 0, 0644);
    cairn_fault_clear();
    cr_assert_eq(fs_lookup(c, d, "f", 1, &ino, &is_dir), 0);
    cr_assert_eq(ino, f);
    cr_assert_eq(fs_inode_get(c, f, &in, NULL), 0, "the named inode exists");
    fs_inode_free(in);
}

Test(fs, write_whose_commit_outcome_is_unknown_keeps_the_objects)
{
    uint64_t d = mkdir_root("work"), f = create_file(d, "f", 0, 0644), size;
    size_t n = 200000;
    uint8_t *p = malloc(n), *got;
    struct fs_range r = {.off = 0, .len = n};

    fill(p, n, 10);
    r.data = p;
    cr_assert(cairn_fault_arm("fs.commit.unknown", 1, false));
    cr_assert_eq(fs_write(c, f, &r, 1, NULL, NULL), 0, "read back: the commit landed");
    cairn_fault_clear();
    fs_ctx_tick(c);
    got = read_all(f, &size);
    cr_assert_eq(size, n);
    cr_assert(!memcmp(got, p, n));
    free(got);
    free(p);
}

Test(fs, part_whose_record_outcome_is_unknown_keeps_its_data)
{
    Cairn__Inode meta = CAIRN__INODE__INIT, *in;
    Cairn__Upload *u;
    Cairn__Part *parts[1];
    uint64_t bucket, ver, ino, size;
    size_t n = 150000;
    uint8_t *p = malloc(n), *got;
    char id[33], etag[FS_ETAG_MAX];
    struct mem_src src = {.p = NULL};
    struct fs_data d;

    fill(p, n, 11);
    src.p = p;
    cr_assert_eq(fs_bucket_create(c, "bkt", "owner", &bucket), 0);
    cr_assert_eq(fs_upload_create(c, bucket, "bkt", "k", &meta, "owner", 1, id), 0);
    cr_assert_eq(fs_store(c, n, false, mem_fill, &src, &d), 0);
    cr_assert(cairn_fault_arm("fs.part.unknown", 1, false));
    cr_assert_eq(fs_upload_part(c, id, 1, &d, 1), 0, "read back: the part landed");
    cairn_fault_clear();
    fs_data_fini(&d);
    cr_assert_eq(fs_upload_part_get(c, id, 1, &parts[0]), 0);
    cr_assert_eq(fs_upload_get(c, id, &u, &ver), 0);
    cr_assert_eq(fs_upload_complete(c, bucket, "k", 1, id, u, ver, parts, 1, etag), 0);
    cr_assert_eq(fs_key_get(c, bucket, "k", 1, &ino, &in, NULL), 0);
    fs_inode_free(in);
    got = read_all(ino, &size);
    cr_assert_eq(size, n);
    cr_assert(!memcmp(got, p, n), "the part's data was not freed");
    free(got);
    cairn__upload__free_unpacked(u, NULL);
    cairn__part__free_unpacked(parts[0], NULL);
    free(p);
}

/* ---- order of writes ---- */

/* A write carries the inode's version at its arrival; bytes committed after that, which it
 * overlaps, are newer and stay: the write is refused whole (CAIRN_EPRECOND), nothing changes.
 * What it does not overlap, it may write. */
Test(fs, an_older_write_never_lands_over_newer_bytes)
{
    uint64_t d = mkdir_root("work"), f = create_file(d, "f", 0, 0644), size, arrival;
    size_t n = 100000;
    uint8_t *old = malloc(n), *new = malloc(n), *got;
    struct fs_range r = {.off = 0, .len = n};
    Cairn__Inode *in;

    fill(old, n, 12);
    fill(new, n, 13);
    cr_assert_eq(fs_inode_get(c, f, &in, &arrival), 0); /* the old write arrives here */
    fs_inode_free(in);
    r.data = new; /* a newer write, committed first */
    cr_assert_eq(fs_write(c, f, &r, 1, NULL, NULL), 0);
    r.data = old;
    r.since = arrival;
    cr_assert_eq(fs_write(c, f, &r, 1, NULL, NULL), CAIRN_EPRECOND);
    got = read_all(f, &size);
    cr_assert(size == n && !memcmp(got, new, n), "the newer bytes stay");
    free(got);
    /* Beyond the newer bytes it is free to land. */
    r.off = n;
    cr_assert_eq(fs_write(c, f, &r, 1, NULL, NULL), 0);
    got = read_all(f, &size);
    cr_assert(size == 2 * n && !memcmp(got, new, n) && !memcmp(got + n, old, n));
    free(got);
    free(old);
    free(new);
}
