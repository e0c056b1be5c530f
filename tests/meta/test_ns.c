/*
 * Namespace tests against three real D-nodes (2+1: two replicas per record; replication
 * itself is tested in test_rec.c): inodes, the two forms of a directory entry, mkdir
 * (idempotent, refused over a file, safe when two C-nodes race), directory listings in S3 key
 * order with paging over deleted entries, entries made and removed together with their inode
 * and the directory's stamp, sliced directories, inode times, users, multipart uploads and their per-bucket index,
 * parts, cluster secrets, and the rules for a valid name.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cluster.h"
#include "common/cairn.h"
#include "meta/ns.h"
#include "meta/rec.h"
#include "tests/support/dcluster.h"

static struct dcluster *dc;
static struct cl_cluster *cl;

static void setup(void)
{
    struct dcluster_opts o = {.nodes = 3, .k = 2, .m = 1};

    cr_assert_eq(dcluster_start(&o, &dc), 0, "start D-nodes");
    cr_assert_eq(dcluster_open(dc, &cl), 0, "open cluster view");
}

static void teardown(void)
{
    cl_cluster_close(cl);
    cl = NULL;
    dcluster_stop(dc);
    dc = NULL;
}

TestSuite(ns, .init = setup, .fini = teardown, .timeout = 120);

static void put_dirent(uint64_t dir, const char *name, uint64_t ino, Cairn__FileType type)
{
    Cairn__Dirent d = CAIRN__DIRENT__INIT;
    int rc;

    d.ino = ino;
    d.type = type;
    rc = meta_dirent_put(cl, dir, name, strlen(name), &d, 0, NULL);
    cr_assert_eq(rc, 0, "dirent %s%s: %s", name, type == CAIRN__FILE_TYPE__FT_DIR ? "/" : "",
                 cairn_strerror(rc));
}

static void del_dirent(uint64_t dir, const char *name, bool is_dir)
{
    int rc = meta_dirent_del(cl, dir, name, strlen(name), is_dir, META_ANY);

    cr_assert_eq(rc, 0, "delete %s%s: %s", name, is_dir ? "/" : "", cairn_strerror(rc));
}

/* ---- inodes ---- */

Test(ns, inode_create_get_put_del)
{
    Cairn__Inode in = CAIRN__INODE__INIT, *got = NULL, *outs[3];
    uint64_t ino = 0, ino2 = 0, v1 = 0, v2 = 0, tomb = 0, inos[3];
    int rcs[3];

    in.type = CAIRN__FILE_TYPE__FT_FILE;
    in.mode = 0640;
    in.size = 5;
    in.etag = "5d41402abc4b2a76b9719d911017c592";
    in.inline_data.data = (uint8_t *)"hello";
    in.inline_data.len = 5;
    cr_assert_eq(meta_inode_create(cl, &in, &ino), 0);
    cr_assert(ino > META_ROOT_INO && ino < (1ull << 63), "inode number %llu",
              (unsigned long long)ino);
    cr_assert_eq(meta_inode_create(cl, &in, &ino2), 0);
    cr_assert_neq(ino, ino2, "two creates got one number");

    cr_assert_eq(meta_inode_get(cl, ino, &got, &v1), 0);
    cr_assert_gt(v1, 0);
    cr_assert_eq(got->type, CAIRN__FILE_TYPE__FT_FILE);
    cr_assert_eq(got->mode, 0640);
    cr_assert_eq(got->size, 5);
    cr_assert_str_eq(got->etag, in.etag);
    cr_assert(got->inline_data.len == 5 && memcmp(got->inline_data.data, "hello", 5) == 0);

    got->size = 6;
    cr_assert_eq(meta_inode_put(cl, ino, got, v1, &v2), 0);
    cr_assert_gt(v2, v1);
    cr_assert_eq(meta_inode_put(cl, ino, got, v1, NULL), CAIRN_ECONFLICT, "stale inode put");
    cairn__inode__free_unpacked(got, NULL);
    cr_assert_eq(meta_inode_get(cl, ino, &got, NULL), 0);
    cr_assert_eq(got->size, 6);
    cairn__inode__free_unpacked(got, NULL);

    cr_assert_eq(meta_inode_del(cl, ino, v1), CAIRN_ECONFLICT, "stale inode delete");
    cr_assert_eq(meta_inode_del(cl, ino, v2), 0);
    got = NULL;
    cr_assert_eq(meta_inode_get(cl, ino, &got, &tomb), CAIRN_ENOENT);
    cr_assert_eq(tomb, 0u, "an absent inode has version 0 (what a create expects)");

    /* Batched: a deleted, a live and a never-created inode, as single gets would answer. */
    inos[0] = ino;
    inos[1] = ino2;
    inos[2] = 0x1234567;
    meta_inode_get_many(cl, 3, inos, outs, rcs);
    cr_assert(rcs[0] == CAIRN_ENOENT && !outs[0]);
    cr_assert(rcs[1] == 0 && outs[1] && outs[1]->size == 5);
    cr_assert(rcs[2] == CAIRN_ENOENT && !outs[2]);
    cairn__inode__free_unpacked(outs[1], NULL);
}

/* ---- directory entries ---- */

Test(ns, file_and_directory_forms_are_distinct)
{
    Cairn__Dirent *d = NULL;
    Cairn__FileType type;
    struct meta_read r[3];
    uint64_t ino = 0;
    const uint64_t dir = 777;

    put_dirent(dir, "x", 100, CAIRN__FILE_TYPE__FT_FILE);
    /* "x/" is another key: creating it (expecting absence) succeeds next to the file. */
    put_dirent(dir, "x", 200, CAIRN__FILE_TYPE__FT_DIR);
    cr_assert_eq(meta_dirent_get(cl, dir, "x", 1, false, &d, NULL), 0);
    cr_assert(d->ino == 100 && d->type == CAIRN__FILE_TYPE__FT_FILE);
    cairn__dirent__free_unpacked(d, NULL);
    cr_assert_eq(meta_dirent_get(cl, dir, "x", 1, true, &d, NULL), 0);
    cr_assert(d->ino == 200 && d->type == CAIRN__FILE_TYPE__FT_DIR);
    cairn__dirent__free_unpacked(d, NULL);

    /* A lookup finds the directory first, then the file once the directory is gone. */
    cr_assert_eq(meta_lookup(cl, dir, "x", 1, &ino, &type), 0);
    cr_assert(ino == 200 && type == CAIRN__FILE_TYPE__FT_DIR, "lookup: %llu",
              (unsigned long long)ino);
    del_dirent(dir, "x", true);
    cr_assert_eq(meta_lookup(cl, dir, "x", 1, &ino, &type), 0);
    cr_assert(ino == 100 && type == CAIRN__FILE_TYPE__FT_FILE);
    /* Only a directory, never the file form: found too. */
    put_dirent(dir, "only-dir", 300, CAIRN__FILE_TYPE__FT_DIR);
    cr_assert_eq(meta_lookup(cl, dir, "only-dir", 8, &ino, &type), 0);
    cr_assert(ino == 300 && type == CAIRN__FILE_TYPE__FT_DIR);
    del_dirent(dir, "x", false);
    cr_assert_eq(meta_lookup(cl, dir, "x", 1, &ino, &type), CAIRN_ENOENT);
    /* Neither form of another directory's "x". */
    cr_assert_eq(meta_lookup(cl, dir + 1, "only-dir", 8, &ino, &type), CAIRN_ENOENT);

    /* A batch mixing kinds answers each as its single get would. */
    r[0] = (struct meta_read){
        .kind = META_READ_DIRENT, .id = dir, .name = "only-dir", .len = 8, .dir_form = true};
    r[1] = (struct meta_read){.kind = META_READ_DIRENT, .id = dir, .name = "a/b", .len = 3};
    r[2] = (struct meta_read){.kind = META_READ_INODE, .id = 424242};
    meta_read_many(cl, r, 3);
    cr_assert(r[0].rc == 0 && r[0].dirent && r[0].dirent->ino == 300);
    cr_assert_eq(r[1].rc, CAIRN_EINVAL, "a name with '/' was looked up");
    cr_assert(r[2].rc == CAIRN_ENOENT && !r[2].inode);
    cairn__dirent__free_unpacked(r[0].dirent, NULL);
}

Test(ns, mkdir_is_idempotent_and_refuses_a_file)
{
    const char *bad[] = {"", ".", "..", "a/b"};
    Cairn__Inode *in = NULL;
    Cairn__Dirent *d = NULL;
    Cairn__FileType type;
    uint64_t d1 = 0, d2 = 0, ino = 0;

    cr_assert_eq(meta_mkdir(cl, META_ROOT_INO, "bucket", 6, false, 0, 1, &d1), 0);
    cr_assert_eq(meta_mkdir(cl, META_ROOT_INO, "bucket", 6, false, 0, 1, &d2), 0);
    cr_assert_eq(d1, d2, "a second mkdir made another directory");
    cr_assert_eq(meta_lookup(cl, META_ROOT_INO, "bucket", 6, &ino, &type), 0);
    cr_assert(ino == d1 && type == CAIRN__FILE_TYPE__FT_DIR);
    cr_assert_eq(meta_inode_get(cl, d1, &in, NULL), 0);
    cr_assert_eq(in->type, CAIRN__FILE_TYPE__FT_DIR);
    cr_assert_eq(in->mode, META_DEFAULT_DIR_MODE, "mode 0 means the default");
    cr_assert_eq(in->parent, META_ROOT_INO);
    cr_assert_not(in->explicit_dir, "an implied directory marked explicit");
    cairn__inode__free_unpacked(in, NULL);

    /* Asked again as an explicit directory: the same one, now marked explicit. */
    cr_assert_eq(meta_mkdir(cl, META_ROOT_INO, "bucket", 6, true, 0, 1, &d2), 0);
    cr_assert_eq(d2, d1);
    cr_assert_eq(meta_inode_get(cl, d1, &in, NULL), 0);
    cr_assert(in->explicit_dir);
    cairn__inode__free_unpacked(in, NULL);

    /* A file of that name excludes the directory, and nothing is half made. */
    put_dirent(d1, "f", 55, CAIRN__FILE_TYPE__FT_FILE);
    cr_assert_eq(meta_mkdir(cl, d1, "f", 1, false, 0, 1, &d2), CAIRN_EEXIST);
    cr_assert_eq(meta_dirent_get(cl, d1, "f", 1, true, &d, NULL), CAIRN_ENOENT);
    cr_assert_eq(meta_mkdir(cl, d1, "sub", 3, true, 0750, 1, &d2), 0);
    cr_assert_eq(meta_inode_get(cl, d2, &in, NULL), 0);
    cr_assert(in->mode == 0750 && in->parent == d1 && in->explicit_dir);
    cairn__inode__free_unpacked(in, NULL);

    for (unsigned i = 0; i < CAIRN_ARRAY_SIZE(bad); i++)
        cr_assert_eq(meta_mkdir(cl, d1, bad[i], strlen(bad[i]), false, 0, 1, &d2), CAIRN_EINVAL,
                     "mkdir '%s'", bad[i]);
}

/* Two C-nodes (two views, two threads) creating the same directories at the same moment. */
#define RACE_ROUNDS 12

struct racer {
    uint64_t ino[RACE_ROUNDS];
    int rc[RACE_ROUNDS];
    int open_rc;
    pthread_barrier_t *bar;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct cl_cluster *v = NULL;

    r->open_rc = dcluster_open(dc, &v);
    for (unsigned i = 0; i < RACE_ROUNDS; i++) {
        char name[16];

        snprintf(name, sizeof(name), "race%u", i);
        pthread_barrier_wait(r->bar);
        r->rc[i] = r->open_rc
                       ? r->open_rc
                       : meta_mkdir(v, META_ROOT_INO, name, strlen(name), false, 0, 1, &r->ino[i]);
    }
    cl_cluster_close(v);
    return NULL;
}

Test(ns, racing_mkdirs_agree)
{
    pthread_barrier_t bar;
    struct racer r[2] = {{.bar = &bar}, {.bar = &bar}};
    pthread_t t[2];

    cr_assert_eq(pthread_barrier_init(&bar, NULL, 2), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, race, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
    cr_assert(r[0].open_rc == 0 && r[1].open_rc == 0);
    for (unsigned i = 0; i < RACE_ROUNDS; i++) {
        char name[16];
        uint64_t ino = 0;
        Cairn__FileType type;

        snprintf(name, sizeof(name), "race%u", i);
        cr_assert(r[0].rc[i] == 0 && r[1].rc[i] == 0, "%s: %s / %s", name,
                  cairn_strerror(r[0].rc[i]), cairn_strerror(r[1].rc[i]));
        cr_assert_eq(r[0].ino[i], r[1].ino[i], "%s: the racers got different directories", name);
        cr_assert_eq(meta_lookup(cl, META_ROOT_INO, name, strlen(name), &ino, &type), 0);
        cr_assert_eq(ino, r[0].ino[i], "%s: the entry names another directory", name);
    }
}

/* ---- entries made and removed with their inode (meta_entry_create / _remove) ---- */

static uint32_t shard_of_ino(uint64_t ino)
{
    return meta_rec_shard(cl, meta_shard_of_u64(ino));
}

/* Assert ino's times (from its record's header) and return its version. */
static uint64_t expect_times(uint64_t ino, int64_t mtime, int64_t ctime)
{
    Cairn__Inode *in = NULL;
    uint64_t ver = 0;
    int rc = meta_inode_get(cl, ino, &in, &ver);

    cr_assert_eq(rc, 0, "inode %llu: %s", (unsigned long long)ino, cairn_strerror(rc));
    cr_assert_eq(in->mtime_ns, mtime, "mtime %lld, want %lld", (long long)in->mtime_ns,
                 (long long)mtime);
    cr_assert_eq(in->ctime_ns, ctime, "ctime %lld, want %lld", (long long)in->ctime_ns,
                 (long long)ctime);
    cairn__inode__free_unpacked(in, NULL);
    return ver;
}

static void file_inode(Cairn__Inode *in, uint64_t parent)
{
    cairn__inode__init(in);
    in->type = CAIRN__FILE_TYPE__FT_FILE;
    in->mode = 0644;
    in->size = 3;
    in->parent = parent;
    in->btime_ns = in->mtime_ns = in->ctime_ns = 12345;
}

/* A new directory and a time later than both of its own. */
static uint64_t new_dir(const char *name, int64_t *later)
{
    Cairn__Inode *in = NULL;
    uint64_t dir = 0;

    cr_assert_eq(meta_mkdir(cl, META_ROOT_INO, name, strlen(name), true, 0, 1, &dir), 0);
    cr_assert_eq(meta_inode_get(cl, dir, &in, NULL), 0);
    *later = (in->mtime_ns > in->ctime_ns ? in->mtime_ns : in->ctime_ns) + 1000000000;
    cairn__inode__free_unpacked(in, NULL);
    return dir;
}

/* The inode and its entry are one update in the directory's shard, with the directory's
 * stamp: they carry one version, and a stamp only ever raises the directory's times. */
Test(ns, entry_create_makes_inode_entry_and_stamp_together)
{
    Cairn__Inode in, *got = NULL;
    Cairn__Dirent nd = CAIRN__DIRENT__INIT, nd2 = CAIRN__DIRENT__INIT, *d = NULL;
    uint64_t dir, ino = 0, ino2 = 0, dv = 0, iv = 0, dirv;
    int64_t t1;
    int rc;

    dir = new_dir("ec", &t1);
    file_inode(&in, dir);
    nd.type = CAIRN__FILE_TYPE__FT_FILE;
    nd.size = 3;
    rc = meta_entry_create(cl, dir, "f", 1, &nd, 0, &in, t1, &ino);
    cr_assert_eq(rc, 0, "create: %s", cairn_strerror(rc));
    cr_assert_eq(nd.ino, ino, "the entry names another number than the one returned");
    cr_assert_eq(shard_of_ino(ino), shard_of_ino(dir), "the inode is not in its directory's shard");

    cr_assert_eq(meta_dirent_get(cl, dir, "f", 1, false, &d, &dv), 0);
    cr_assert(d->ino == ino && d->type == CAIRN__FILE_TYPE__FT_FILE && d->size == 3);
    cairn__dirent__free_unpacked(d, NULL);
    cr_assert_eq(meta_inode_get(cl, ino, &got, &iv), 0);
    cr_assert(got->type == CAIRN__FILE_TYPE__FT_FILE && got->mode == 0644 && got->size == 3 &&
              got->parent == dir);
    cr_assert(got->mtime_ns == 12345 && got->ctime_ns == 12345 && got->btime_ns == 12345);
    cairn__inode__free_unpacked(got, NULL);
    cr_assert_eq(dv, iv, "entry and inode written by different updates");
    dirv = expect_times(dir, t1, t1);
    cr_assert_eq(dirv, dv, "the directory's stamp was not part of the update");
    cr_assert_eq(meta_inode_get(cl, dir, &got, NULL), 0);
    cr_assert(got->type == CAIRN__FILE_TYPE__FT_DIR && got->parent == META_ROOT_INO &&
              got->explicit_dir, "the stamp changed more than the times");
    cairn__inode__free_unpacked(got, NULL);

    /* An older stamp lowers nothing; a newer one raises both. */
    cr_assert_eq(meta_dir_stamp(cl, dir, t1 - 500000000), 0);
    expect_times(dir, t1, t1);
    cr_assert_eq(meta_dir_stamp(cl, dir, t1 + 7), 0);
    expect_times(dir, t1 + 7, t1 + 7);

    /* The same name again: the entry exists, so no inode, entry change or stamp lands. */
    file_inode(&in, dir);
    nd2.type = CAIRN__FILE_TYPE__FT_FILE;
    rc = meta_entry_create(cl, dir, "f", 1, &nd2, 0, &in, t1 + 100, &ino2);
    cr_assert_eq(rc, CAIRN_ECONFLICT, "second create: %s", cairn_strerror(rc));
    cr_assert(nd2.ino != 0 && nd2.ino != ino, "no fresh number was tried");
    cr_assert_eq(meta_inode_get(cl, nd2.ino, &got, NULL), CAIRN_ENOENT,
                 "a failed create left its inode");
    cr_assert_eq(meta_dirent_get(cl, dir, "f", 1, false, &d, &iv), 0);
    cr_assert_eq(d->ino, ino);
    cr_assert_eq(iv, dv);
    cairn__dirent__free_unpacked(d, NULL);
    expect_times(dir, t1 + 7, t1 + 7);

    /* No directory to stamp: nothing is made. */
    cairn__dirent__init(&nd2);
    nd2.type = CAIRN__FILE_TYPE__FT_FILE;
    rc = meta_entry_create(cl, 0x7e57d1e, "g", 1, &nd2, 0, &in, t1, &ino2);
    cr_assert_eq(rc, CAIRN_ENOENT, "create in a missing directory: %s", cairn_strerror(rc));
    cr_assert_eq(meta_inode_get(cl, nd2.ino, &got, NULL), CAIRN_ENOENT);
    cr_assert_eq(meta_dirent_get(cl, 0x7e57d1e, "g", 1, false, &d, NULL), CAIRN_ENOENT);
    cr_assert_eq(meta_dir_stamp(cl, 0x7e57d1e, t1), CAIRN_ENOENT);
}

/* A remove takes entry and inode together, with their versions as conditions, and stamps the
 * directory; an inode elsewhere than the directory's shard is not its to take. */
Test(ns, entry_remove_takes_both_or_nothing)
{
    Cairn__Inode in, *got = NULL;
    Cairn__Dirent nd = CAIRN__DIRENT__INIT, *d = NULL;
    uint64_t dir, ino = 0, other = 0, dv = 0, iv = 0, ov = 0, oiv = 0, v = 0;
    int64_t t1;
    int rc;

    dir = new_dir("er", &t1);
    file_inode(&in, dir);
    nd.type = CAIRN__FILE_TYPE__FT_FILE;
    cr_assert_eq(meta_entry_create(cl, dir, "f", 1, &nd, 0, &in, t1, &ino), 0);
    cr_assert_eq(meta_dirent_get(cl, dir, "f", 1, false, &d, &dv), 0);
    cairn__dirent__free_unpacked(d, NULL);
    cr_assert_eq(meta_inode_get(cl, ino, &got, &iv), 0);
    cairn__inode__free_unpacked(got, NULL);

    /* A stale inode version, or the other form of the name: nothing goes, nothing stamped. */
    rc = meta_entry_remove(cl, dir, "f", 1, false, dv, ino, iv + 1, t1 + 50);
    cr_assert_eq(rc, CAIRN_ECONFLICT, "stale inode: %s", cairn_strerror(rc));
    rc = meta_entry_remove(cl, dir, "f", 1, true, dv, ino, iv, t1 + 50);
    cr_assert_eq(rc, CAIRN_ENOENT, "directory form of a file: %s", cairn_strerror(rc));
    cr_assert_eq(meta_dirent_get(cl, dir, "f", 1, false, &d, &v), 0);
    cairn__dirent__free_unpacked(d, NULL);
    cr_assert_eq(v, dv);
    cr_assert_eq(meta_inode_get(cl, ino, &got, &v), 0);
    cairn__inode__free_unpacked(got, NULL);
    cr_assert_eq(v, iv);
    expect_times(dir, t1, t1);

    rc = meta_entry_remove(cl, dir, "f", 1, false, dv, ino, iv, t1 + 100);
    cr_assert_eq(rc, 0, "remove: %s", cairn_strerror(rc));
    cr_assert_eq(meta_dirent_get(cl, dir, "f", 1, false, &d, NULL), CAIRN_ENOENT);
    cr_assert_eq(meta_inode_get(cl, ino, &got, NULL), CAIRN_ENOENT);
    expect_times(dir, t1 + 100, t1 + 100);

    /* An inode made the old way, in another shard than the directory's. */
    file_inode(&in, dir);
    for (int i = 0; i < 200 && !other; i++) {
        cr_assert_eq(meta_inode_create(cl, &in, &other), 0);
        if (shard_of_ino(other) == shard_of_ino(dir)) {
            cr_assert_eq(meta_inode_del(cl, other, META_ANY), 0);
            other = 0;
        }
    }
    cr_assert_neq(other, 0, "every inode landed in the directory's shard");
    put_dirent(dir, "o", other, CAIRN__FILE_TYPE__FT_FILE);
    cr_assert_eq(meta_dirent_get(cl, dir, "o", 1, false, &d, &ov), 0);
    cairn__dirent__free_unpacked(d, NULL);
    cr_assert_eq(meta_inode_get(cl, other, &got, &oiv), 0);
    cairn__inode__free_unpacked(got, NULL);
    rc = meta_entry_remove(cl, dir, "o", 1, false, ov, other, oiv, t1 + 200);
    cr_assert_eq(rc, CAIRN_ENOTSUP, "inode in another shard: %s", cairn_strerror(rc));
    cr_assert_eq(meta_dirent_get(cl, dir, "o", 1, false, &d, &v), 0);
    cr_assert_eq(d->ino, other);
    cairn__dirent__free_unpacked(d, NULL);
    cr_assert_eq(v, ov);
    cr_assert_eq(meta_inode_get(cl, other, &got, &v), 0);
    cairn__inode__free_unpacked(got, NULL);
    cr_assert_eq(v, oiv);
    expect_times(dir, t1 + 100, t1 + 100);
}

/* Times live in the record's header as sign-flipped lanes: any time round-trips, and a stamp
 * orders times as numbers, across zero too (a raw two's-complement lane would not). */
Test(ns, inode_times_round_trip_and_stamps_order_across_zero)
{
    Cairn__Inode in = CAIRN__INODE__INIT, *got = NULL, *outs[1];
    uint64_t ino = 0, v = 0;
    int rcs[1];

    in.type = CAIRN__FILE_TYPE__FT_DIR;
    in.mtime_ns = -1234567890123;
    in.ctime_ns = INT64_MAX;
    in.btime_ns = -1;
    cr_assert_eq(meta_inode_create(cl, &in, &ino), 0);
    cr_assert_eq(meta_inode_get(cl, ino, &got, &v), 0);
    cr_assert(got->mtime_ns == -1234567890123 && got->ctime_ns == INT64_MAX &&
              got->btime_ns == -1, "times %lld %lld %lld", (long long)got->mtime_ns,
              (long long)got->ctime_ns, (long long)got->btime_ns);
    cr_assert_eq(got->type, CAIRN__FILE_TYPE__FT_DIR);
    got->mtime_ns = INT64_MIN;
    got->ctime_ns = -1;
    cr_assert_eq(meta_inode_put(cl, ino, got, v, NULL), 0);
    cairn__inode__free_unpacked(got, NULL);
    expect_times(ino, INT64_MIN, -1);
    meta_inode_get_many(cl, 1, &ino, outs, rcs);
    cr_assert_eq(rcs[0], 0);
    cr_assert(outs[0]->mtime_ns == INT64_MIN && outs[0]->ctime_ns == -1,
              "a batched get read other times");
    cairn__inode__free_unpacked(outs[0], NULL);

    /* Among negatives, then across zero, then back below it. */
    cr_assert_eq(meta_dir_stamp(cl, ino, -1000000000), 0);
    expect_times(ino, -1000000000, -1);
    cr_assert_eq(meta_dir_stamp(cl, ino, 3), 0);
    expect_times(ino, 3, 3);
    cr_assert_eq(meta_dir_stamp(cl, ino, -7), 0);
    expect_times(ino, 3, 3);
}

/* A directory number whose entries share a shard with the next directory's, so that a
 * listing that ran past its directory would show the neighbour's entries. */
static uint64_t dir_with_neighbour(void)
{
    for (uint64_t d = 1000;; d++)
        if (meta_rec_shard(cl, meta_shard_of_u64(d)) == meta_rec_shard(cl, meta_shard_of_u64(d + 1)))
            return d;
}

static void expect_page(const struct meta_scan *s, const char *const *want, unsigned n,
                        unsigned *at)
{
    for (unsigned e = 0; e < s->n; e++, (*at)++) {
        uint32_t len;
        const char *name = meta_dirent_name(s->entries[e].key, s->entries[e].klen, &len);

        cr_assert_lt(*at, n, "more entries than expected: '%.*s'", (int)len, name);
        cr_assert(len == strlen(want[*at]) && memcmp(name, want[*at], len) == 0,
                  "entry %u is '%.*s', want '%s'", *at, (int)len, name, want[*at]);
    }
}

Test(ns, dir_scan_lists_in_s3_key_order_and_pages)
{
    /* '-' (0x2d) < '/' (0x2f) < '0' (0x30): S3 lists "a-b" before "a/..." before "a0". */
    static const char *const want[] = {"a", "a-b", "a/", "a0", "b", "c/"};
    const unsigned n = CAIRN_ARRAY_SIZE(want);
    uint64_t dir = dir_with_neighbour();
    struct meta_scan s;
    unsigned at = 0, pages = 0;
    char start[64];
    size_t slen = 0;
    Cairn__Dirent *d;

    put_dirent(dir, "b", 5, CAIRN__FILE_TYPE__FT_FILE);
    put_dirent(dir, "a0", 4, CAIRN__FILE_TYPE__FT_FILE);
    put_dirent(dir, "c", 6, CAIRN__FILE_TYPE__FT_DIR);
    put_dirent(dir, "a", 3, CAIRN__FILE_TYPE__FT_DIR);
    put_dirent(dir, "a-b", 2, CAIRN__FILE_TYPE__FT_FILE);
    put_dirent(dir, "a", 1, CAIRN__FILE_TYPE__FT_FILE);
    put_dirent(dir, "zz", 9, CAIRN__FILE_TYPE__FT_FILE);
    del_dirent(dir, "zz", false);
    put_dirent(dir + 1, "a", 99, CAIRN__FILE_TYPE__FT_FILE); /* the neighbour, same shard */

    cr_assert_eq(meta_dir_scan(cl, dir, NULL, 0, 0, &s), 0);
    cr_assert_eq(s.n, n, "%u entries, want %u", s.n, n);
    expect_page(&s, want, n, &at);
    cr_assert_not(s.more);
    /* The value is the entry: "a/" is the directory with inode 3. */
    d = cairn__dirent__unpack(NULL, s.entries[2].len, s.entries[2].val);
    cr_assert(d && d->ino == 3 && d->type == CAIRN__FILE_TYPE__FT_DIR);
    cairn__dirent__free_unpacked(d, NULL);
    meta_scan_fini(&s);

    /* Pages of two, each continuing where the last ended. */
    at = 0;
    for (;;) {
        cr_assert_eq(meta_dir_scan(cl, dir, slen ? start : NULL, slen, 2, &s), 0);
        cr_assert_leq(s.n, 2u);
        expect_page(&s, want, n, &at);
        pages++;
        if (!s.more) {
            meta_scan_fini(&s);
            break;
        }
        cr_assert(s.next_len > 9 && s.next_len - 9 <= sizeof(start));
        slen = s.next_len - 9;
        memcpy(start, s.next + 9, slen);
        meta_scan_fini(&s);
        cr_assert_lt(pages, 10u, "listing does not end");
    }
    cr_assert_eq(at, n, "paged listing has %u of %u entries", at, n);
    cr_assert_geq(pages, 3u);

    /* From a name on (inclusive): a directory's sort name carries its '/'. */
    cr_assert_eq(meta_dir_scan(cl, dir, "a/", 2, 0, &s), 0);
    at = 2;
    expect_page(&s, want, n, &at);
    cr_assert_eq(at, n);
    meta_scan_fini(&s);
}

Test(ns, dir_scan_skips_pages_of_deleted_entries)
{
    const uint64_t dir = 4242;
    struct meta_scan s;
    uint32_t len;
    const char *name;
    char n[8];

    for (unsigned i = 0; i < 10; i++) {
        snprintf(n, sizeof(n), "m%u", i);
        put_dirent(dir, n, 10 + i, CAIRN__FILE_TYPE__FT_FILE);
    }
    for (unsigned i = 0; i < 7; i++) {
        snprintf(n, sizeof(n), "m%u", i);
        del_dirent(dir, n, false);
    }
    /* Seven deleted entries, then m7: the first page (limit 3) must not come back empty. */
    cr_assert_eq(meta_dir_scan(cl, dir, NULL, 0, 3, &s), 0);
    cr_assert_gt(s.n, 0, "an empty page before the end of the directory");
    name = meta_dirent_name(s.entries[0].key, s.entries[0].klen, &len);
    cr_assert(len == 2 && memcmp(name, "m7", 2) == 0, "first entry '%.*s'", (int)len, name);
    meta_scan_fini(&s);
}

Test(ns, dir_empty_ignores_deleted_entries)
{
    const uint64_t dir = 5151;
    bool empty = false;
    char n[8];

    cr_assert_eq(meta_dir_empty(cl, dir, &empty), 0);
    cr_assert(empty);
    put_dirent(dir, "f", 1, CAIRN__FILE_TYPE__FT_FILE);
    cr_assert_eq(meta_dir_empty(cl, dir, &empty), 0);
    cr_assert_not(empty);
    del_dirent(dir, "f", false);
    cr_assert_eq(meta_dir_empty(cl, dir, &empty), 0);
    cr_assert(empty, "a directory holding only a deleted entry is not empty");

    /* More deleted entries than one page of the emptiness check (64), then one live entry. */
    for (unsigned i = 0; i < 70; i++) {
        snprintf(n, sizeof(n), "t%02u", i);
        put_dirent(dir, n, 100 + i, CAIRN__FILE_TYPE__FT_FILE);
        del_dirent(dir, n, false);
    }
    cr_assert_eq(meta_dir_empty(cl, dir, &empty), 0);
    cr_assert(empty, "70 deleted entries make a directory non-empty");
    put_dirent(dir, "u", 7, CAIRN__FILE_TYPE__FT_DIR);
    cr_assert_eq(meta_dir_empty(cl, dir, &empty), 0);
    cr_assert_not(empty, "a live entry behind 70 deleted ones was missed");
}

/* ---- users ---- */

Test(ns, users)
{
    Cairn__User u = CAIRN__USER__INIT, *got = NULL;
    char long_key[300];

    u.access_key = "AKIATEST";
    u.secret_key = "s3cr3t";
    u.name = "alice";
    u.admin = true;
    cr_assert_eq(meta_user_get(cl, "AKIATEST", &got), CAIRN_ENOENT);
    cr_assert_eq(meta_user_put(cl, &u), 0);
    cr_assert_eq(meta_user_get(cl, "AKIATEST", &got), 0);
    cr_assert_str_eq(got->secret_key, "s3cr3t");
    cr_assert_str_eq(got->name, "alice");
    cr_assert(got->admin);
    cairn__user__free_unpacked(got, NULL);

    /* A put replaces (a key rotation). */
    u.secret_key = "rotated";
    u.admin = false;
    cr_assert_eq(meta_user_put(cl, &u), 0);
    cr_assert_eq(meta_user_get(cl, "AKIATEST", &got), 0);
    cr_assert_str_eq(got->secret_key, "rotated");
    cr_assert_not(got->admin);
    cairn__user__free_unpacked(got, NULL);

    cr_assert_eq(meta_user_del(cl, "AKIATEST"), 0);
    cr_assert_eq(meta_user_get(cl, "AKIATEST", &got), CAIRN_ENOENT);
    cr_assert_eq(meta_user_del(cl, "AKIATEST"), CAIRN_ENOENT);

    memset(long_key, 'K', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = 0;
    cr_assert_eq(meta_user_get(cl, "", &got), CAIRN_EINVAL);
    cr_assert_eq(meta_user_get(cl, long_key, &got), CAIRN_EINVAL);
    u.access_key = long_key;
    cr_assert_eq(meta_user_put(cl, &u), CAIRN_EINVAL);
}

/* ---- multipart uploads and parts ---- */

static void new_upload(uint64_t bucket, const char *key, char id[33])
{
    Cairn__Upload u = CAIRN__UPLOAD__INIT;
    int rc;

    meta_random_hex(id);
    u.bucket = bucket;
    u.bucket_name = "bkt";
    u.key = (char *)key;
    u.initiated_ns = 1;
    rc = meta_upload_create(cl, id, &u);
    cr_assert_eq(rc, 0, "create upload of %s: %s", key, cairn_strerror(rc));
}

static void expect_index(const struct meta_entry *e, const char *key, const char *id)
{
    const char *k, *u;
    uint32_t kl, ul;

    cr_assert_eq(meta_upload_index_key(e->key, e->klen, &k, &kl, &u, &ul), 0);
    cr_assert(kl == strlen(key) && memcmp(k, key, kl) == 0, "index key '%.*s', want '%s'", (int)kl,
              k, key);
    cr_assert(ul == 32 && memcmp(u, id, 32) == 0, "index upload '%.*s', want '%s'", (int)ul, u, id);
}

Test(ns, uploads_and_their_bucket_index)
{
    const uint64_t bucket = 31, other = 32;
    char b1[33], a1[33], a2[33], x[33];
    const char *lo, *hi;
    char *owner;
    Cairn__Upload u = CAIRN__UPLOAD__INIT, *got = NULL;
    struct meta_scan s;
    uint64_t v1 = 0, v2 = 0;

    new_upload(bucket, "b", b1);
    new_upload(bucket, "a", a1);
    new_upload(bucket, "a", a2);
    new_upload(other, "a", x);
    lo = strcmp(a1, a2) < 0 ? a1 : a2;
    hi = lo == a1 ? a2 : a1;

    cr_assert_eq(meta_upload_get(cl, b1, &got, &v1), 0);
    cr_assert(got->bucket == bucket && strcmp(got->key, "b") == 0 &&
              strcmp(got->bucket_name, "bkt") == 0);
    /* An upload id names one upload: creating it again is refused. */
    cr_assert_eq(meta_upload_create(cl, b1, got), CAIRN_ECONFLICT);
    owner = got->owner; /* the unpacked message owns it: put it back before freeing */
    got->owner = "someone";
    cr_assert_eq(meta_upload_update(cl, b1, got, v1), 0);
    got->owner = owner;
    cr_assert_eq(meta_upload_update(cl, b1, got, v1), CAIRN_ECONFLICT, "stale upload update");
    cairn__upload__free_unpacked(got, NULL);
    cr_assert_eq(meta_upload_get(cl, b1, &got, &v2), 0);
    cr_assert_str_eq(got->owner, "someone");
    cr_assert_gt(v2, v1);
    cairn__upload__free_unpacked(got, NULL);

    /* The bucket's uploads in (key, upload id) order; the other bucket's are not there. */
    cr_assert_eq(meta_upload_scan(cl, bucket, NULL, NULL, 0, &s), 0);
    cr_assert_eq(s.n, 3);
    expect_index(&s.entries[0], "a", lo);
    expect_index(&s.entries[1], "a", hi);
    expect_index(&s.entries[2], "b", b1);
    meta_scan_fini(&s);
    /* From a (key, upload id) marker on, inclusive; and one at a time. */
    cr_assert_eq(meta_upload_scan(cl, bucket, "a", hi, 0, &s), 0);
    cr_assert_eq(s.n, 2);
    expect_index(&s.entries[0], "a", hi);
    expect_index(&s.entries[1], "b", b1);
    meta_scan_fini(&s);
    cr_assert_eq(meta_upload_scan(cl, bucket, NULL, NULL, 1, &s), 0);
    cr_assert(s.n == 1 && s.more);
    expect_index(&s.entries[0], "a", lo);
    meta_scan_fini(&s);

    /* Deleting takes the record and its index entry. */
    cr_assert_eq(meta_upload_get(cl, lo, &got, &v1), 0);
    cr_assert_eq(meta_upload_del(cl, lo, got, v1 - 1), CAIRN_ECONFLICT);
    cr_assert_eq(meta_upload_del(cl, lo, got, v1), 0);
    cairn__upload__free_unpacked(got, NULL);
    cr_assert_eq(meta_upload_get(cl, lo, &got, NULL), CAIRN_ENOENT);
    cr_assert_eq(meta_upload_scan(cl, bucket, NULL, NULL, 0, &s), 0);
    cr_assert_eq(s.n, 2);
    expect_index(&s.entries[0], "a", hi);
    meta_scan_fini(&s);

    /* Ids are 32 characters. */
    cr_assert_eq(meta_upload_get(cl, "short", &got, NULL), CAIRN_ENOENT);
    u.bucket = bucket;
    u.key = "k";
    cr_assert_eq(meta_upload_create(cl, "short", &u), CAIRN_EINVAL);
}

static void put_part(const char *id, uint32_t number, const char *etag, Cairn__Part **old)
{
    Cairn__Part p = CAIRN__PART__INIT;
    int rc;

    p.number = number;
    p.size = 100 + number;
    p.etag = (char *)etag;
    rc = meta_part_put(cl, id, &p, old);
    cr_assert_eq(rc, 0, "part %u: %s", number, cairn_strerror(rc));
}

Test(ns, parts_replace_and_list_in_number_order)
{
    const uint32_t numbers[] = {10, 2, 9, 1, 5}, sorted[] = {1, 2, 5, 9, 10};
    Cairn__Part *old = NULL, *got = NULL;
    struct meta_scan s;
    char id[33];

    meta_random_hex(id);
    put_part(id, 3, "first", &old);
    cr_assert_null(old, "a new part replaced something");
    /* A re-upload of a part number replaces it and hands back the old one (to free). */
    put_part(id, 3, "second", &old);
    cr_assert_not_null(old);
    cr_assert_str_eq(old->etag, "first");
    cairn__part__free_unpacked(old, NULL);
    cr_assert_eq(meta_part_get(cl, id, 3, &got, NULL), 0);
    cr_assert_str_eq(got->etag, "second");
    cairn__part__free_unpacked(got, NULL);
    cr_assert_eq(meta_part_del(cl, id, 3), 0);
    cr_assert_eq(meta_part_get(cl, id, 3, &got, NULL), CAIRN_ENOENT);

    /* Listed by number (big-endian keys: 9 before 10), deleted ones left out. */
    for (unsigned i = 0; i < CAIRN_ARRAY_SIZE(numbers); i++) {
        put_part(id, numbers[i], "e", &old);
        cr_assert_null(old);
    }
    cr_assert_eq(meta_part_scan(cl, id, 0, 0, &s), 0);
    cr_assert_eq(s.n, CAIRN_ARRAY_SIZE(sorted));
    for (unsigned i = 0; i < s.n; i++) {
        Cairn__Part *p = cairn__part__unpack(NULL, s.entries[i].len, s.entries[i].val);

        cr_assert(p && p->number == sorted[i], "part %u at %u", p ? p->number : 0, i);
        cr_assert_eq(p->size, 100 + sorted[i]);
        cairn__part__free_unpacked(p, NULL);
    }
    meta_scan_fini(&s);
    cr_assert_eq(meta_part_scan(cl, id, 5, 0, &s), 0);
    cr_assert_eq(s.n, 3, "parts from 5 on");
    meta_scan_fini(&s);
    cr_assert_eq(meta_part_get(cl, "short", 1, &got, NULL), CAIRN_EINVAL);
}

/* ---- secrets ---- */

Test(ns, secret_is_created_once_and_shared)
{
    uint8_t a[META_SECRET_LEN], b[META_SECRET_LEN], c[META_SECRET_LEN], zero[META_SECRET_LEN];
    struct cl_cluster *other;
    char long_name[80];

    memset(zero, 0, sizeof(zero));
    cr_assert_eq(meta_secret(cl, "fh-key", a), 0);
    cr_assert_neq(memcmp(a, zero, sizeof(a)), 0);
    cr_assert_eq(meta_secret(cl, "fh-key", b), 0);
    cr_assert_eq(memcmp(a, b, sizeof(a)), 0, "the secret changed between calls");
    /* Another C-node (view) gets the same secret with no configuration. */
    cr_assert_eq(dcluster_open(dc, &other), 0);
    cr_assert_eq(meta_secret(other, "fh-key", c), 0);
    cr_assert_eq(memcmp(a, c, sizeof(a)), 0, "another view got another secret");
    cl_cluster_close(other);

    cr_assert_eq(meta_secret(cl, "other", c), 0);
    cr_assert_neq(memcmp(a, c, sizeof(a)), 0, "two names share a secret");
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    cr_assert_eq(meta_secret(cl, "", c), CAIRN_EINVAL);
    cr_assert_eq(meta_secret(cl, long_name, c), CAIRN_EINVAL);
}

/* ---- names (no cluster) ---- */

Test(names, valid_and_invalid)
{
    char longest[META_NAME_MAX + 1];

    memset(longest, 'x', sizeof(longest));
    cr_assert_not(meta_name_valid("", 0));
    cr_assert_not(meta_name_valid(".", 1));
    cr_assert_not(meta_name_valid("..", 2));
    cr_assert_not(meta_name_valid("a/b", 3));
    cr_assert_not(meta_name_valid("/", 1));
    cr_assert_not(meta_name_valid("a\0b", 3), "a name with NUL inside");
    cr_assert_not(meta_name_valid(longest, META_NAME_MAX + 1));
    cr_assert(meta_name_valid(longest, META_NAME_MAX));
    cr_assert(meta_name_valid("...", 3));
    cr_assert(meta_name_valid(".hidden", 7));
    cr_assert(meta_name_valid("a b-c_d.e", 9));
    cr_assert(meta_name_valid("\xc3\xa9t\xc3\xa9", 5)); /* UTF-8 is bytes like any other */
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A sliced directory: its entries (and their inodes) spread over several shards, every name
 * is found again, a listing in small pages gives every name once in byte order (both forms,
 * over pages that end in different slices), a stamp in any slice shows in the directory's
 * times, and removes and the empty check see every slice. */
Test(ns, sliced_directory_spreads_entries_and_merges_listings)
{
    enum { FILES = 160, DIRS = 24, ALL = FILES + DIRS };
    char *want[ALL], name[32];
    uint32_t shards[ALL];
    unsigned n_shards = 0, got = 0, slices_used = 0;
    uint64_t dir, sub, ino;
    bool slice_seen[8] = {false}, empty;
    Cairn__Inode in, *gi = NULL;
    Cairn__Dirent nd;
    Cairn__FileType type;
    int64_t t1;
    int rc;

    cr_assert_eq(meta_mkdir(cl, META_ROOT_INO, "sliced", 6, true, 0, 8, &dir), 0);
    cr_assert_eq(meta_dir_slices(dir), 8, "asked for 8 slices, the number says %u",
                 meta_dir_slices(dir));
    cr_assert_eq(meta_inode_get(cl, dir, &gi, NULL), 0);
    cr_assert_eq(gi->slices, 8);
    t1 = gi->mtime_ns + 1000000000;
    cairn__inode__free_unpacked(gi, NULL);
    cr_assert_eq(meta_dir_slices(META_ROOT_INO), 1);

    for (unsigned i = 0; i < ALL; i++) {
        bool is_dir = i >= FILES;
        unsigned s;

        snprintf(name, sizeof(name), is_dir ? "dir%03u" : "file-%03u", i);
        s = meta_slice_of(dir, name, strlen(name));
        cr_assert(s < 8);
        slices_used += !slice_seen[s];
        slice_seen[s] = true;
        if (is_dir) {
            cr_assert_eq(meta_mkdir(cl, dir, name, strlen(name), true, 0, 1, &ino), 0, "%s",
                         name);
            want[i] = malloc(strlen(name) + 2);
            sprintf(want[i], "%s/", name);
        } else {
            file_inode(&in, dir);
            cairn__dirent__init(&nd);
            nd.type = CAIRN__FILE_TYPE__FT_FILE;
            rc = meta_entry_create(cl, dir, name, strlen(name), &nd, 0, &in, t1, &ino);
            cr_assert_eq(rc, 0, "create %s: %s", name, cairn_strerror(rc));
            want[i] = strdup(name);
        }
        shards[i] = shard_of_ino(ino);
    }
    for (unsigned i = 0; i < ALL; i++) {
        bool dup = false;

        for (unsigned j = 0; j < i && !dup; j++)
            dup = shards[j] == shards[i];
        n_shards += !dup;
    }
    cr_assert_eq(slices_used, 8, "184 names hashed to only %u of 8 slices", slices_used);
    cr_assert_geq(n_shards, 4, "the entries' inodes sit in %u shards only", n_shards);

    /* Every name is found, in its form. */
    for (unsigned i = 0; i < ALL; i++) {
        size_t l = strlen(want[i]) - (i >= FILES);

        cr_assert_eq(meta_lookup(cl, dir, want[i], l, &ino, &type), 0, "lookup %s", want[i]);
        cr_assert_eq(type == CAIRN__FILE_TYPE__FT_DIR, i >= FILES);
    }

    /* Small pages: every name once, in byte order, nothing else. */
    qsort(want, ALL, sizeof(want[0]), name_cmp);
    {
        char start[300];
        size_t slen = 0;
        bool more = true;

        while (more) {
            struct meta_scan s;

            rc = meta_dir_scan(cl, dir, slen ? start : NULL, slen, 7, &s);
            cr_assert_eq(rc, 0, "scan: %s", cairn_strerror(rc));
            cr_assert(s.n > 0 || !s.more, "an empty page before the end");
            cr_assert_leq(s.n, 7);
            for (unsigned i = 0; i < s.n; i++, got++) {
                uint32_t nl;
                const char *nm = meta_dirent_name(s.entries[i].key, s.entries[i].klen, &nl);

                cr_assert_lt(got, ALL, "more names listed than made");
                cr_assert(nl == strlen(want[got]) && !memcmp(nm, want[got], nl),
                          "entry %u is %.*s, want %s", got, (int)nl, nm, want[got]);
            }
            more = s.more;
            if (more) {
                cr_assert(s.next_len > 9 && s.next_len - 9 < sizeof(start));
                slen = s.next_len - 9;
                memcpy(start, s.next + 9, slen);
            }
            meta_scan_fini(&s);
        }
        cr_assert_eq(got, ALL, "listed %u names of %u", got, ALL);
    }

    /* A stamp through any slice is the directory's time, read alone or in a batch. */
    expect_times(dir, t1, t1);
    for (unsigned i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "late-%u", i);
        if (meta_slice_of(dir, name, strlen(name)) != 0)
            break;
    }
    cr_assert_neq(meta_slice_of(dir, name, strlen(name)), 0);
    file_inode(&in, dir);
    cairn__dirent__init(&nd);
    nd.type = CAIRN__FILE_TYPE__FT_FILE;
    cr_assert_eq(meta_entry_create(cl, dir, name, strlen(name), &nd, 0, &in, t1 + 5, &ino), 0);
    expect_times(dir, t1 + 5, t1 + 5);
    {
        Cairn__Inode *outs[1] = {NULL};
        int rcs[1] = {-1};

        meta_inode_get_many(cl, 1, &dir, outs, rcs);
        cr_assert_eq(rcs[0], 0);
        cr_assert_eq(outs[0]->mtime_ns, t1 + 5, "a batch read misses the slices' times");
        cairn__inode__free_unpacked(outs[0], NULL);
    }

    /* Remove together works in a slice; the empty check sees entries in any slice. */
    cr_assert_eq(meta_inode_get(cl, ino, &gi, NULL), 0);
    cairn__inode__free_unpacked(gi, NULL);
    {
        Cairn__Dirent *d = NULL;
        uint64_t dv = 0, iv = 0;

        cr_assert_eq(meta_dirent_get(cl, dir, name, strlen(name), false, &d, &dv), 0);
        cairn__dirent__free_unpacked(d, NULL);
        cr_assert_eq(meta_inode_get(cl, ino, &gi, &iv), 0);
        cairn__inode__free_unpacked(gi, NULL);
        rc = meta_entry_remove(cl, dir, name, strlen(name), false, dv, ino, iv, t1 + 9);
        cr_assert_eq(rc, 0, "remove in a slice: %s", cairn_strerror(rc));
        cr_assert_eq(meta_inode_get(cl, ino, &gi, NULL), CAIRN_ENOENT);
        expect_times(dir, t1 + 9, t1 + 9);
    }
    cr_assert_eq(meta_mkdir(cl, META_ROOT_INO, "sliced-empty", 12, true, 0, 4, &sub), 0);
    cr_assert_eq(meta_dir_slices(sub), 4);
    cr_assert_eq(meta_dir_empty(cl, sub, &empty), 0);
    cr_assert(empty);
    for (unsigned i = 0; i < 64; i++) {
        snprintf(name, sizeof(name), "x%u", i);
        if (meta_slice_of(sub, name, strlen(name)) == 3)
            break;
    }
    cr_assert_eq(meta_slice_of(sub, name, strlen(name)), 3);
    file_inode(&in, sub);
    cairn__dirent__init(&nd);
    nd.type = CAIRN__FILE_TYPE__FT_FILE;
    cr_assert_eq(meta_entry_create(cl, sub, name, strlen(name), &nd, 0, &in, t1, &ino), 0);
    cr_assert_eq(meta_dir_empty(cl, sub, &empty), 0);
    cr_assert(!empty, "an entry in slice 3 was not seen");
    for (unsigned i = 0; i < ALL; i++)
        free(want[i]);
}
