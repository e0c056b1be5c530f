/*
 * Fragment store tests: round trips at block boundaries and the size limit, CRC checks on put and
 * get, immutability, space reuse and coalescing, restart, the crash-ordering markers (stale headers
 * beyond the high-water mark and inside reused free space), kill -9 in the middle of a stream of
 * puts and deletes, device full, and hundreds of puts in flight.  Files live under /var/tmp (ext4)
 * because the store opens them O_DIRECT.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cairn.h"
#include "common/clock.h"
#include "dnode/store.h"
#include "ec/ec.h"

#define MiB (1u << 20)

static char dir[64];
static char path[96];
static struct dn_store *st;

static void setup(void)
{
    strcpy(dir, "/var/tmp/cairn-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/dev", dir);
}

static void teardown(void)
{
    char cmd[128];

    dn_store_close(st);
    st = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

struct res {
    int done;
    int status;
    uint32_t len;
    uint32_t crc;
};

static void on_done(void *arg, int status, uint32_t len, uint32_t crc)
{
    struct res *r = arg;

    r->done++;
    r->status = status;
    r->len = len;
    r->crc = crc;
}

static struct dn_fid fid_of(uint64_t id)
{
    struct dn_fid f = {id / 7, (uint32_t)(id % 7), (uint32_t)(id % 5)};

    return f;
}

static size_t buf_size(uint32_t len)
{
    return CAIRN_BLOCK + CAIRN_ALIGN_UP((size_t)len, CAIRN_BLOCK);
}

static uint8_t *buf_new(uint32_t len)
{
    uint8_t *b = aligned_alloc(CAIRN_BLOCK, buf_size(len));

    cr_assert_not_null(b);
    memset(b, 0xa5, buf_size(len)); /* the store must zero the padding itself */
    return b;
}

/* Deterministic payload for a fragment id. */
static void fill(uint8_t *p, uint32_t len, uint64_t id)
{
    uint64_t x = id * 0x9e3779b97f4a7c15ull + 1;

    for (uint32_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static uint8_t *frag_new(uint64_t id, uint32_t len, uint32_t *crc)
{
    uint8_t *b = buf_new(len);

    fill(b + CAIRN_BLOCK, len, id);
    *crc = ec_crc32c(0, b + CAIRN_BLOCK, len);
    return b;
}

static void open_store(uint64_t size)
{
    cr_assert_eq(dn_store_open(path, size, 0, &st), 0, "open %s", path);
}

static void reopen(void)
{
    dn_store_close(st);
    st = NULL;
    cr_assert_eq(dn_store_open(path, 0, 0, &st), 0, "reopen");
}

static int put_sync(uint64_t id, uint32_t len)
{
    struct res r = {0};
    uint32_t crc;
    uint8_t *b = frag_new(id, len, &crc);
    struct dn_fid f = fid_of(id);
    int rc = dn_store_put(st, &f, NULL, b, len, crc, on_done, &r);

    if (rc) {
        free(b);
        return rc;
    }
    dn_store_drain(st);
    cr_assert_eq(r.done, 1, "put callback ran %d times", r.done);
    cr_assert_eq(r.len, 0);
    free(b);
    return r.status;
}

static int del_sync(uint64_t id)
{
    struct res r = {0};
    struct dn_fid f = fid_of(id);
    int rc = dn_store_del(st, &f, on_done, &r);

    if (rc)
        return rc;
    dn_store_drain(st);
    cr_assert_eq(r.done, 1);
    return r.status;
}

static int get_sync(uint64_t id, uint8_t *buf, size_t buf_len, struct res *r)
{
    struct dn_fid f = fid_of(id);
    int rc;

    memset(r, 0, sizeof(*r));
    rc = dn_store_get(st, &f, buf, buf_len, on_done, r);
    if (rc)
        return rc;
    dn_store_drain(st);
    cr_assert_eq(r->done, 1);
    return r->status;
}

/* Get id and compare it with the payload it was put with. */
static void expect_frag(uint64_t id, uint32_t len)
{
    uint8_t *b = buf_new(len), *want = malloc(len);
    struct res r;

    cr_assert_not_null(want);
    fill(want, len, id);
    cr_assert_eq(get_sync(id, b, buf_size(len), &r), 0, "get %llu: %s", (unsigned long long)id,
                 cairn_strerror(r.status));
    cr_assert_eq(r.len, len, "id %llu: len %u, want %u", (unsigned long long)id, r.len, len);
    cr_assert_eq(r.crc, ec_crc32c(0, want, len));
    cr_assert(memcmp(b + CAIRN_BLOCK, want, len) == 0, "id %llu: payload differs",
              (unsigned long long)id);
    free(b);
    free(want);
}

static void expect_absent(uint64_t id)
{
    uint8_t *b = buf_new(CAIRN_BLOCK);
    struct dn_fid f = fid_of(id);
    struct res r;

    cr_assert_not(dn_store_lookup(st, &f, NULL, NULL), "id %llu present", (unsigned long long)id);
    cr_assert_eq(get_sync(id, b, buf_size(CAIRN_BLOCK), &r), CAIRN_ENOENT);
    free(b);
}

static struct dn_store_stats stats(void)
{
    struct dn_store_stats s;

    dn_store_stats(st, &s);
    return s;
}

Test(store, sizes_round_trip_and_limit)
{
    static const uint32_t sizes[] = {1, 4095, 4096, 4097, MiB, DN_MAX_FRAG};
    uint32_t crc;
    uint8_t *b;
    struct dn_fid f = fid_of(99);
    struct res r = {0};
    uint64_t used = 0;

    open_store(48 * MiB);
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(sizes); i++) {
        uint32_t len;

        cr_assert_eq(put_sync(i, sizes[i]), 0, "put %u bytes", sizes[i]);
        cr_assert(dn_store_lookup(st, &(struct dn_fid){i / 7, i % 7, i % 5}, &len, &crc));
        cr_assert_eq(len, sizes[i]);
        used += buf_size(sizes[i]);
    }
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(sizes); i++)
        expect_frag(i, sizes[i]);
    cr_assert_eq(stats().used, used);
    cr_assert_eq(stats().frag_count, CAIRN_ARRAY_SIZE(sizes));
    cr_assert_eq(stats().hwm, CAIRN_BLOCK + used);
    cr_assert_eq(stats().dev_size, 48 * MiB);

    /* Invalid arguments are refused up front and the callback never runs. */
    b = frag_new(99, DN_MAX_FRAG + 1, &crc);
    cr_assert_eq(dn_store_put(st, &f, NULL, b, DN_MAX_FRAG + 1, crc, on_done, &r), CAIRN_EINVAL);
    cr_assert_eq(dn_store_put(st, &f, NULL, b, 0, 0, on_done, &r), CAIRN_EINVAL);
    cr_assert_eq(
        dn_store_put(st, &f, NULL, b + 512, 1, ec_crc32c(0, b + 512 + CAIRN_BLOCK, 1), on_done, &r),
        CAIRN_EINVAL);
    cr_assert_eq(dn_store_get(st, &f, b + 8, buf_size(1), on_done, &r), CAIRN_EINVAL);
    dn_store_drain(st);
    cr_assert_eq(r.done, 0);
    free(b);
}

Test(store, padding_is_zeroed_on_disk)
{
    uint8_t *b = buf_new(100);
    struct res r;

    open_store(4 * MiB);
    cr_assert_eq(put_sync(1, 100), 0);
    cr_assert_eq(get_sync(1, b, buf_size(100), &r), 0);
    for (size_t i = CAIRN_BLOCK + 100; i < buf_size(100); i++)
        cr_assert_eq(b[i], 0, "padding byte %zu is %#x", i, b[i]);
    free(b);
}

Test(store, bad_crc_stores_nothing)
{
    uint32_t crc;
    uint8_t *b = frag_new(5, 5000, &crc);
    struct dn_fid f = fid_of(5);
    struct res r = {0};

    open_store(4 * MiB);
    cr_assert_eq(dn_store_put(st, &f, NULL, b, 5000, crc ^ 1, on_done, &r), 0);
    dn_store_drain(st);
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.status, CAIRN_ECRC);
    expect_absent(5);
    cr_assert_eq(stats().frag_count, 0);
    cr_assert_eq(stats().used, 0);
    cr_assert_eq(stats().hwm, CAIRN_BLOCK);
    /* The fid was not reserved: the right CRC goes through. */
    cr_assert_eq(put_sync(5, 5000), 0);
    expect_frag(5, 5000);
    free(b);
}

Test(store, duplicate_put_is_eexist)
{
    uint32_t c1, c2;
    uint8_t *b1 = frag_new(7, 9000, &c1), *b2 = frag_new(8, 9000, &c2);
    struct dn_fid f = fid_of(7);
    struct res r1 = {0}, r2 = {0};

    open_store(4 * MiB);
    /* Both in flight: the second sees the reservation. */
    cr_assert_eq(dn_store_put(st, &f, NULL, b1, 9000, c1, on_done, &r1), 0);
    cr_assert_eq(dn_store_put(st, &f, NULL, b2, 9000, c2, on_done, &r2), 0);
    dn_store_drain(st);
    cr_assert_eq(r1.status, 0);
    cr_assert_eq(r2.status, CAIRN_EEXIST);
    /* And after it is durable. */
    cr_assert_eq(put_sync(7, 9000), CAIRN_EEXIST);
    expect_frag(7, 9000);
    cr_assert_eq(stats().frag_count, 1);
    free(b1);
    free(b2);
}

Test(store, unknown_and_too_small)
{
    uint8_t *b = buf_new(3 * CAIRN_BLOCK);
    struct res r;

    open_store(4 * MiB);
    expect_absent(42);
    cr_assert_eq(del_sync(42), CAIRN_ENOENT);
    cr_assert_eq(put_sync(42, 2 * CAIRN_BLOCK + 1), 0);
    cr_assert_eq(get_sync(42, b, 3 * CAIRN_BLOCK, &r), CAIRN_ETOOBIG);
    cr_assert_eq(r.len, 0);
    cr_assert_eq(get_sync(42, b, 4 * CAIRN_BLOCK, &r), 0);
    free(b);
}

Test(store, delete_reuses_space)
{
    struct dn_store_stats s0, s1, s2;

    open_store(8 * MiB);
    for (uint64_t id = 0; id < 6; id++)
        cr_assert_eq(put_sync(id, 100000), 0);
    s0 = stats();
    cr_assert_eq(del_sync(2), 0);
    cr_assert_eq(del_sync(3), 0);
    cr_assert_eq(del_sync(3), CAIRN_ENOENT);
    expect_absent(2);
    expect_absent(3);
    s1 = stats();
    cr_assert_eq(s1.used, s0.used - 2 * buf_size(100000));
    cr_assert_eq(s1.frag_count, 4);
    /* Three smaller fragments fit in the two coalesced holes without raising hwm. */
    cr_assert_eq(put_sync(2, 100000), 0);
    cr_assert_eq(put_sync(10, 50000), 0);
    cr_assert_eq(put_sync(11, 40000), 0);
    s2 = stats();
    cr_assert_eq(s2.hwm, s0.hwm);
    cr_assert_eq(s2.frag_count, 7);
    for (uint64_t id = 0; id < 6; id++)
        if (id != 3)
            expect_frag(id, 100000);
    expect_frag(10, 50000);
    expect_frag(11, 40000);
    reopen();
    cr_assert_eq(stats().hwm, s0.hwm);
    cr_assert_eq(stats().used, s2.used);
    for (uint64_t id = 0; id < 6; id++)
        if (id != 3)
            expect_frag(id, 100000);
    expect_absent(3);
    expect_frag(10, 50000);
    expect_frag(11, 40000);
}

Test(store, reopen_finds_everything)
{
    struct dn_store_stats before;

    open_store(16 * MiB);
    for (uint64_t id = 0; id < 60; id++)
        cr_assert_eq(put_sync(id, (uint32_t)(1 + id * 4099)), 0);
    for (uint64_t id = 0; id < 60; id += 3)
        cr_assert_eq(del_sync(id), 0);
    before = stats();
    reopen();
    cr_assert_eq(stats().frag_count, before.frag_count);
    cr_assert_eq(stats().used, before.used);
    cr_assert_eq(stats().hwm, before.hwm);
    for (uint64_t id = 0; id < 60; id++) {
        if (id % 3 == 0)
            expect_absent(id);
        else
            expect_frag(id, (uint32_t)(1 + id * 4099));
    }
    /* A second handle on the same file, without closing the first, sees the same. */
    {
        struct dn_store *other = st;

        st = NULL;
        cr_assert_eq(dn_store_open(path, 0, 0, &st), 0);
        cr_assert_eq(stats().frag_count, before.frag_count);
        expect_frag(59, 1 + 59 * 4099);
        dn_store_close(other);
    }
}

Test(store, open_errors)
{
    struct dn_store *s = NULL;
    int fd;

    cr_assert_eq(dn_store_open(path, 0, 0, &s), CAIRN_EIO, "missing file, no create");
    cr_assert_eq(dn_store_open(path, 2 * CAIRN_BLOCK, 0, &s), CAIRN_EINVAL, "too small");
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, MiB), 0);
    close(fd);
    cr_assert_eq(dn_store_open(path, 0, 0, &s), CAIRN_EINVAL, "no superblock");
    cr_assert_null(s);
    dn_store_close(NULL);
    /* create_size is ignored once formatted. */
    open_store(MiB + 100);
    cr_assert_eq(stats().dev_size, MiB);
    dn_store_close(st);
    cr_assert_eq(dn_store_open(path, 64 * MiB, 0, &st), 0);
    cr_assert_eq(stats().dev_size, MiB);
}

/* Flip one byte of a file at off, through the page cache, durably. */
static void flip_byte(off_t off)
{
    int fd = open(path, O_RDWR);
    uint8_t c;

    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    cr_assert_eq(pwrite(fd, &c, 1, off), 1);
    cr_assert_eq(fsync(fd), 0);
    close(fd);
}

Test(store, corrupt_payload_is_ecrc)
{
    uint8_t *b = buf_new(20000);
    struct res r;

    open_store(4 * MiB);
    cr_assert_eq(put_sync(1, 20000), 0); /* blocks 1..6 */
    cr_assert_eq(put_sync(2, 20000), 0); /* blocks 7..12 */
    flip_byte(2 * CAIRN_BLOCK + 1234);   /* payload of 1 */
    cr_assert_eq(get_sync(1, b, buf_size(20000), &r), CAIRN_ECRC);
    cr_assert_eq(r.len, 0);
    expect_frag(2, 20000);
    reopen(); /* the walk does not read payloads: still indexed, still corrupt */
    cr_assert_eq(get_sync(1, b, buf_size(20000), &r), CAIRN_ECRC);
    expect_frag(2, 20000);
    /* A bit flip in the last payload byte is caught too. */
    flip_byte(7 * CAIRN_BLOCK + CAIRN_BLOCK + 19999);
    cr_assert_eq(get_sync(2, b, buf_size(20000), &r), CAIRN_ECRC);
    free(b);
}

/* A read that finds a fragment corrupt marks it bad: listed with bad_only and counted until a
 * read finds it whole again or it is deleted (then the same fid can be put again). */
Test(store, corrupt_fragment_is_listed_bad_until_deleted)
{
    uint8_t *b = buf_new(20000);
    struct dn_frag_info info[4];
    uint64_t cursor = 0;
    bool more;
    struct res r;
    struct dn_fid f1 = fid_of(1);

    open_store(4 * MiB);
    cr_assert_eq(put_sync(1, 20000), 0); /* blocks 1..6 */
    cr_assert_eq(put_sync(2, 20000), 0);
    cr_assert_eq(dn_store_list(st, &cursor, true, info, 4, &more), 0, "nothing bad yet");
    cr_assert_not(more);
    flip_byte(2 * CAIRN_BLOCK + 77);
    cr_assert_eq(get_sync(1, b, buf_size(20000), &r), CAIRN_ECRC);
    cr_assert(dn_store_is_bad(st, &f1));
    cr_assert_eq(stats().bad_count, 1);
    cursor = 0;
    cr_assert_eq(dn_store_list(st, &cursor, true, info, 4, &more), 1);
    cr_assert_not(more);
    cr_assert_eq(info[0].fid.stripe, f1.stripe);
    cr_assert_eq(info[0].fid.index, f1.index);
    cr_assert(info[0].bad);
    /* The flip undone (a read error, not rot): the next read clears the mark. */
    flip_byte(2 * CAIRN_BLOCK + 77);
    expect_frag(1, 20000);
    cr_assert_not(dn_store_is_bad(st, &f1));
    cr_assert_eq(stats().bad_count, 0);
    /* Rotten for good: bad until deleted, then put again whole. */
    flip_byte(2 * CAIRN_BLOCK + 77);
    cr_assert_eq(get_sync(1, b, buf_size(20000), &r), CAIRN_ECRC);
    cr_assert_eq(stats().bad_count, 1);
    cr_assert_eq(del_sync(1), 0);
    cr_assert_eq(stats().bad_count, 0);
    cursor = 0;
    cr_assert_eq(dn_store_list(st, &cursor, true, info, 4, &more), 0);
    cr_assert_eq(put_sync(1, 20000), 0);
    expect_frag(1, 20000);
    free(b);
}

/* Every fragment carries its owner and birth time in its header: listed, and found again by
 * the walk after a reopen.  A header without them (the format before) reads as owner 0. */
Test(store, owner_and_birth_survive_reopen)
{
    enum { N = 40 };
    bool seen[N] = {false};
    struct dn_frag_info info[3];
    uint64_t t0 = (uint64_t)cairn_wall_ns() / 1000000u, cursor;
    unsigned total = 0;
    bool more;

    open_store(16 * MiB);
    for (uint64_t id = 0; id < N; id++) {
        struct res r = {0};
        uint32_t crc;
        uint8_t *b = frag_new(id, 3000, &crc);
        struct dn_fid f = fid_of(id);
        struct dn_owner o = {1000 + id, 7 * id};

        cr_assert_eq(dn_store_put(st, &f, id == 5 ? NULL : &o, b, 3000, crc, on_done, &r), 0);
        dn_store_drain(st);
        cr_assert_eq(r.status, 0);
        free(b);
    }
    for (int round = 0; round < 2; round++) {
        memset(seen, 0, sizeof(seen));
        total = 0;
        cursor = 0;
        do { /* pages of 3: every fragment exactly once */
            size_t n = dn_store_list(st, &cursor, false, info, 3, &more);

            cr_assert_leq(n, 3);
            for (size_t i = 0; i < n; i++) {
                uint64_t id = info[i].fid.stripe * 7 + info[i].fid.gen;

                cr_assert_lt(id, N);
                cr_assert_not(seen[id], "fragment %llu listed twice", (unsigned long long)id);
                seen[id] = true;
                total++;
                cr_assert_eq(info[i].len, 3000);
                cr_assert_not(info[i].bad);
                if (id == 5) {
                    cr_assert_eq(info[i].owner.object, 0);
                    cr_assert_eq(info[i].owner.stripe_no, 0);
                } else {
                    cr_assert_eq(info[i].owner.object, 1000 + id);
                    cr_assert_eq(info[i].owner.stripe_no, 7 * id);
                }
                cr_assert_geq(info[i].birth_ms + 1000, t0);
                cr_assert_leq(info[i].birth_ms, (uint64_t)cairn_wall_ns() / 1000000u + 1000);
            }
        } while (more);
        cr_assert_eq(total, N);
        reopen();
    }
    /* Zero the owner part of fragment 0's header (blocks 1..2), as the old format left it: the
     * fragment still reads, with no owner. */
    {
        int fd = open(path, O_RDWR);
        uint8_t z[64] = {0};

        cr_assert_geq(fd, 0);
        cr_assert_eq(pwrite(fd, z, sizeof(z), CAIRN_BLOCK + 64), (ssize_t)sizeof(z));
        close(fd);
    }
    reopen();
    expect_frag(0, 3000);
    cursor = 0;
    total = 0;
    do {
        size_t n = dn_store_list(st, &cursor, false, info, 3, &more);

        for (size_t i = 0; i < n; i++) {
            total++;
            if (info[i].fid.stripe == 0 && info[i].fid.gen == 0)
                cr_assert_eq(info[i].owner.object, 0);
        }
    } while (more);
    cr_assert_eq(total, N);
}

Test(store, device_full_is_enospc)
{
    /* 1 MiB = 256 blocks: superblock + 3 extents of 65 blocks (256 KiB payload) + 60 spare. */
    open_store(MiB);
    for (uint64_t id = 0; id < 3; id++)
        cr_assert_eq(put_sync(id, 256 * 1024), 0);
    cr_assert_eq(put_sync(3, 256 * 1024), CAIRN_ENOSPC);
    expect_absent(3);
    cr_assert_eq(put_sync(4, 59 * CAIRN_BLOCK), 0); /* exactly fills the device */
    cr_assert_eq(stats().hwm, MiB);
    cr_assert_eq(put_sync(5, 1), CAIRN_ENOSPC);
    cr_assert_eq(del_sync(1), 0);
    cr_assert_eq(put_sync(3, 256 * 1024), 0);
    reopen();
    expect_frag(0, 256 * 1024);
    expect_frag(2, 256 * 1024);
    expect_frag(3, 256 * 1024);
    expect_frag(4, 59 * CAIRN_BLOCK);
}

#define NCONC 300
#define CONC_LEN (64 * 1024)

static void put_many(uint64_t base, struct res *r, uint8_t **bufs)
{
    for (int i = 0; i < NCONC; i++) {
        uint32_t crc;
        struct dn_fid f = fid_of(base + (uint64_t)i);

        bufs[i] = frag_new(base + (uint64_t)i, CONC_LEN, &crc);
        memset(&r[i], 0, sizeof(r[i]));
        cr_assert_eq(dn_store_put(st, &f, NULL, bufs[i], CONC_LEN, crc, on_done, &r[i]), 0);
    }
    dn_store_drain(st);
    for (int i = 0; i < NCONC; i++) {
        cr_assert_eq(r[i].done, 1);
        cr_assert_eq(r[i].status, 0, "put %d: %s", i, cairn_strerror(r[i].status));
        free(bufs[i]);
    }
}

Test(store, hundreds_in_flight)
{
    static struct res r[NCONC];
    static uint8_t *bufs[NCONC];
    uint64_t hwm;

    open_store(48 * MiB);
    put_many(0, r, bufs); /* from the tail, chained through zero markers */
    hwm = stats().hwm;
    for (int i = 0; i < NCONC; i++) {
        struct dn_fid f = fid_of((uint64_t)i);

        bufs[i] = buf_new(CONC_LEN);
        memset(&r[i], 0, sizeof(r[i]));
        cr_assert_eq(dn_store_get(st, &f, bufs[i], buf_size(CONC_LEN), on_done, &r[i]), 0);
    }
    dn_store_drain(st);
    for (int i = 0; i < NCONC; i++) {
        uint8_t *want = malloc(CONC_LEN);

        fill(want, CONC_LEN, (uint64_t)i);
        cr_assert_eq(r[i].status, 0);
        cr_assert(memcmp(bufs[i] + CAIRN_BLOCK, want, CONC_LEN) == 0, "get %d differs", i);
        free(want);
        free(bufs[i]);
    }
    /* Free everything (one coalesced region), then refill it concurrently: every put splits
     * the remainder of the one before it. */
    for (int i = 0; i < NCONC; i++) {
        struct dn_fid f = fid_of((uint64_t)i);

        memset(&r[i], 0, sizeof(r[i]));
        cr_assert_eq(dn_store_del(st, &f, on_done, &r[i]), 0);
    }
    dn_store_drain(st);
    for (int i = 0; i < NCONC; i++)
        cr_assert_eq(r[i].status, 0);
    cr_assert_eq(stats().used, 0);
    put_many(1000, r, bufs);
    cr_assert_eq(stats().hwm, hwm);
    reopen();
    cr_assert_eq(stats().frag_count, NCONC);
    for (int i = 0; i < NCONC; i += 7)
        expect_frag(1000 + (uint64_t)i, CONC_LEN);
    expect_frag(1000 + NCONC - 1, CONC_LEN);
}

Test(store, event_fd_wakes_the_loop)
{
    uint32_t crc;
    uint8_t *b = frag_new(1, 3000, &crc);
    struct dn_fid f = fid_of(1);
    struct res r1 = {0}, r2 = {0};
    struct pollfd pfd;

    open_store(4 * MiB);
    pfd.fd = dn_store_event_fd(st);
    pfd.events = POLLIN;
    cr_assert_eq(dn_store_put(st, &f, NULL, b, 3000, crc, on_done, &r1), 0);
    for (int spins = 0; r1.done == 0 && spins < 100; spins++) {
        cr_assert_geq(poll(&pfd, 1, 5000), 0);
        dn_store_poll(st);
    }
    cr_assert_eq(r1.done, 1);
    cr_assert_eq(r1.status, 0);
    /* An error found before any I/O also makes the fd readable. */
    cr_assert_eq(dn_store_put(st, &f, NULL, b, 3000, crc, on_done, &r2), 0);
    cr_assert_eq(r2.done, 0, "callbacks never run inside put");
    cr_assert_eq(poll(&pfd, 1, 5000), 1);
    cr_assert_eq(dn_store_poll(st), 1);
    cr_assert_eq(r2.status, CAIRN_EEXIST);
    cr_assert_eq(dn_store_poll(st), 0);
    free(b);
}

/* A crash left fragment B's header beyond the high-water mark (B was written, the extent
 * before it never was).  A later put at the same place must not make B reachable again. */
/* A header that rots in the middle of the chain costs its own extent only: open() finds the
 * next valid header (it is below the superblock's hint), makes the run between free and goes
 * on, so every later fragment stays. */
Test(store, rotten_header_loses_one_fragment_not_the_rest)
{
    uint8_t junk[CAIRN_BLOCK];
    int fd;

    open_store(4 * MiB);
    cr_assert_eq(put_sync(1, 5 * CAIRN_BLOCK), 0); /* blocks 1..6 */
    cr_assert_eq(put_sync(2, 5 * CAIRN_BLOCK), 0); /* blocks 7..12 */
    cr_assert_eq(put_sync(3, 5 * CAIRN_BLOCK), 0); /* blocks 13..18 */
    dn_store_close(st);
    st = NULL;
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, junk, sizeof(junk), 7 * CAIRN_BLOCK), (ssize_t)sizeof(junk));
    cr_assert_eq(fsync(fd), 0);
    close(fd);
    cr_assert_eq(dn_store_open(path, 0, 0, &st), 0);
    cr_assert_eq(stats().lost_runs, 1);
    cr_assert_eq(stats().frag_count, 2);
    expect_frag(1, 5 * CAIRN_BLOCK);
    expect_absent(2);
    expect_frag(3, 5 * CAIRN_BLOCK);
    cr_assert_eq(stats().hwm, 19 * CAIRN_BLOCK);
    cr_assert_eq(put_sync(4, 5 * CAIRN_BLOCK), 0); /* first fit: the freed blocks 7..12 */
    cr_assert_eq(stats().hwm, 19 * CAIRN_BLOCK);
    reopen();
    cr_assert_eq(stats().lost_runs, 0, "the chain was made whole");
    cr_assert_eq(stats().frag_count, 3);
    expect_frag(1, 5 * CAIRN_BLOCK);
    expect_frag(3, 5 * CAIRN_BLOCK);
    expect_frag(4, 5 * CAIRN_BLOCK);
    /* The first header gone too: same, from the start of the chain. */
    dn_store_close(st);
    st = NULL;
    fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, junk, sizeof(junk), CAIRN_BLOCK), (ssize_t)sizeof(junk));
    close(fd);
    cr_assert_eq(dn_store_open(path, 0, 0, &st), 0);
    cr_assert_eq(stats().frag_count, 2);
    expect_absent(1);
    expect_frag(3, 5 * CAIRN_BLOCK);
    expect_frag(4, 5 * CAIRN_BLOCK);
}

/* Beyond the hint no header was ever written by this device's chain, so a valid-looking one
 * there (a crash's leftover, or a copy) stays dead: the chain ends where it ends. */
Test(store, stale_header_beyond_hint_stays_dead)
{
    uint8_t *blk = buf_new(CAIRN_BLOCK);
    uint8_t zero[CAIRN_BLOCK] = {0};
    uint64_t far;
    int fd;

    open_store(128 * MiB); /* sparse: the hint (64 MiB past hwm) ends before the device */
    cr_assert_eq(put_sync(1, 5 * CAIRN_BLOCK), 0); /* blocks 1..6 */
    dn_store_close(st);
    st = NULL;
    fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, blk, CAIRN_BLOCK, CAIRN_BLOCK), CAIRN_BLOCK);
    far = (7 + (64u << 20) / CAIRN_BLOCK + 10) * (uint64_t)CAIRN_BLOCK;
    cr_assert_eq(pwrite(fd, blk, CAIRN_BLOCK, (off_t)far), CAIRN_BLOCK); /* a valid copy */
    cr_assert_eq(pwrite(fd, zero, sizeof(zero), CAIRN_BLOCK), (ssize_t)sizeof(zero));
    cr_assert_eq(fsync(fd), 0);
    close(fd);
    cr_assert_eq(dn_store_open(path, 0, 0, &st), 0);
    cr_assert_eq(stats().frag_count, 0);
    cr_assert_eq(stats().lost_runs, 0);
    cr_assert_eq(stats().hwm, CAIRN_BLOCK);
    cr_assert_eq(put_sync(3, 5 * CAIRN_BLOCK), 0); /* the same blocks 1..6 */
    reopen();
    cr_assert_eq(stats().frag_count, 1);
    expect_frag(3, 5 * CAIRN_BLOCK);
    expect_absent(1);
    free(blk);
}

/* Reusing part of a free extent must leave the fragments after it reachable: the remainder
 * gets its FREE header before the new extent's header points at it.  Adjacent free extents
 * are not merged (see store.c), so each is reused on its own. */
Test(store, split_free_space_keeps_chain)
{
    open_store(4 * MiB);
    cr_assert_eq(put_sync(1, CAIRN_BLOCK), 0);     /* blocks 1..2 */
    cr_assert_eq(put_sync(2, 7 * CAIRN_BLOCK), 0); /* blocks 3..10 */
    cr_assert_eq(put_sync(3, 3 * CAIRN_BLOCK), 0); /* blocks 11..14 */
    cr_assert_eq(del_sync(1), 0);
    cr_assert_eq(del_sync(2), 0);                  /* free 1..2 and 3..10 */
    cr_assert_eq(put_sync(4, 2 * CAIRN_BLOCK), 0); /* 3..5, remainder 6..10 */
    cr_assert_eq(put_sync(5, 2 * CAIRN_BLOCK), 0); /* 6..8, remainder 9..10 */
    reopen();
    expect_frag(3, 3 * CAIRN_BLOCK);
    expect_frag(4, 2 * CAIRN_BLOCK);
    expect_frag(5, 2 * CAIRN_BLOCK);
    expect_absent(1);
    expect_absent(2);
    cr_assert_eq(stats().frag_count, 3);
    cr_assert_eq(stats().hwm, 15 * CAIRN_BLOCK);
    cr_assert_eq(put_sync(6, CAIRN_BLOCK), 0); /* exactly 1..2 */
    cr_assert_eq(put_sync(7, CAIRN_BLOCK), 0); /* exactly 9..10 */
    cr_assert_eq(stats().hwm, 15 * CAIRN_BLOCK);
    reopen();
    expect_frag(6, CAIRN_BLOCK);
    expect_frag(7, CAIRN_BLOCK);
    expect_frag(3, 3 * CAIRN_BLOCK);
}

/* A delete between two free neighbours leaves one FREE extent covering all three: a fragment
 * of their combined size fits without raising hwm, and the chain stays intact across reopen. */
Test(store, delete_coalesces_with_free_neighbours)
{
    open_store(4 * MiB);
    cr_assert_eq(put_sync(1, 9 * CAIRN_BLOCK), 0); /* blocks 1..10 */
    cr_assert_eq(put_sync(2, 4 * CAIRN_BLOCK), 0); /* 11..15 */
    cr_assert_eq(put_sync(3, 2 * CAIRN_BLOCK), 0); /* 16..18 */
    cr_assert_eq(put_sync(4, 1 * CAIRN_BLOCK), 0); /* 19..20 */
    cr_assert_eq(del_sync(1), 0);
    cr_assert_eq(del_sync(3), 0);
    cr_assert_eq(del_sync(2), 0);
    cr_assert_eq(put_sync(5, 17 * CAIRN_BLOCK), 0); /* exactly 1..18 */
    cr_assert_eq(stats().hwm, 21 * CAIRN_BLOCK);
    reopen();
    cr_assert_eq(stats().frag_count, 2);
    cr_assert_eq(stats().hwm, 21 * CAIRN_BLOCK);
    expect_frag(5, 17 * CAIRN_BLOCK);
    expect_frag(4, CAIRN_BLOCK);
}

/* A delete next to a region a put is still splitting cannot merge with it (the put's marker is
 * in flight there); open() later joins the two FREE extents with one header. */
Test(store, open_coalesces_adjacent_free_extents)
{
    uint32_t crc;
    uint8_t *b = frag_new(10, CAIRN_BLOCK, &crc);
    struct dn_fid f = fid_of(10), g = fid_of(2);
    struct res r1 = {0}, r2 = {0};

    open_store(4 * MiB);
    cr_assert_eq(put_sync(1, 9 * CAIRN_BLOCK), 0); /* blocks 1..10 */
    cr_assert_eq(put_sync(2, 4 * CAIRN_BLOCK), 0); /* 11..15 */
    cr_assert_eq(put_sync(3, CAIRN_BLOCK), 0);     /* 16..17 */
    cr_assert_eq(del_sync(1), 0);
    cr_assert_eq(dn_store_put(st, &f, NULL, b, CAIRN_BLOCK, crc, on_done, &r1), 0); /* 1..2 */
    cr_assert_eq(dn_store_del(st, &g, on_done, &r2), 0);
    dn_store_drain(st);
    cr_assert_eq(r1.status, 0);
    cr_assert_eq(r2.status, 0);
    reopen();
    /* The old header at 11 must be off the chain now: damaging it loses nothing. */
    dn_store_close(st);
    st = NULL;
    flip_byte(11 * CAIRN_BLOCK + 8);
    cr_assert_eq(dn_store_open(path, 0, 0, &st), 0);
    expect_frag(3, CAIRN_BLOCK);
    cr_assert_eq(put_sync(11, 12 * CAIRN_BLOCK), 0); /* exactly 3..15 */
    cr_assert_eq(stats().hwm, 18 * CAIRN_BLOCK);
    reopen();
    expect_frag(10, CAIRN_BLOCK);
    expect_frag(11, 12 * CAIRN_BLOCK);
    expect_frag(3, CAIRN_BLOCK);
    cr_assert_eq(stats().frag_count, 3);
    free(b);
}

/* ---- kill -9 in the middle of a stream ---- */

#define KILL_DEV (24 * MiB)
#define KILL_WINDOW 48 /* live fragments per child before it deletes the oldest */
#define KILL_INFLIGHT 32
#define KILL_ACKS 400 /* acknowledgements the parent waits for before SIGKILL */
#define ACK_DEL (1ull << 63)

static uint32_t kill_len(uint64_t id)
{
    return (uint32_t)(1 + (id * 2654435761u) % (192 * 1024));
}

struct child {
    int pipe;
    uint64_t next;
    uint64_t base;
    int inflight;
};

struct child_put {
    struct child *c;
    uint64_t id;
    uint8_t *buf;
};

static void child_ack(struct child *c, uint64_t rec)
{
    if (write(c->pipe, &rec, sizeof(rec)) != sizeof(rec))
        _exit(3);
}

static void child_del_done(void *arg, int status, uint32_t len, uint32_t crc)
{
    struct child_put *p = arg;

    (void)len;
    (void)crc;
    /* Acknowledgements are released in address order, so the put of this id may not be
     * acknowledged yet (then it is not found); the parent then just finds it present. */
    if (status == CAIRN_ENOENT) {
        free(p);
        return;
    }
    if (status) {
        fprintf(stderr, "child: delete failed: %s\n", cairn_strerror(status));
        _exit(4);
    }
    child_ack(p->c, p->id | ACK_DEL);
    free(p);
}

static void child_put_done(void *arg, int status, uint32_t len, uint32_t crc)
{
    struct child_put *p = arg;
    struct child *c = p->c;

    (void)len;
    (void)crc;
    if (status) {
        fprintf(stderr, "child: put %llu: %s\n", (unsigned long long)p->id, cairn_strerror(status));
        _exit(5);
    }
    child_ack(c, p->id);
    c->inflight--;
    if (p->id >= c->base + KILL_WINDOW) {
        struct dn_fid f = fid_of(p->id - KILL_WINDOW);

        p->id -= KILL_WINDOW;
        free(p->buf);
        if (dn_store_del(st, &f, child_del_done, p))
            _exit(6);
        return;
    }
    free(p->buf);
    free(p);
}

static void child_run(int fd, uint64_t base)
{
    struct child c = {fd, base, base, 0};

    if (dn_store_open(path, KILL_DEV, 0, &st))
        _exit(2);
    for (;;) {
        while (c.inflight < KILL_INFLIGHT) {
            struct child_put *p = malloc(sizeof(*p));
            uint32_t crc, len = kill_len(c.next);
            struct dn_fid f = fid_of(c.next);

            p->c = &c;
            p->id = c.next++;
            p->buf = frag_new(p->id, len, &crc);
            if (dn_store_put(st, &f, NULL, p->buf, len, crc, child_put_done, p))
                _exit(7);
            c.inflight++;
        }
        struct pollfd pfd = {dn_store_event_fd(st), POLLIN, 0};

        poll(&pfd, 1, 1000);
        dn_store_poll(st);
    }
}

Test(store, kill9_mid_stream_loses_no_acknowledged_write)
{
    enum { ROUNDS = 3, SPAN = 100000 };
    static uint8_t
        state[ROUNDS * SPAN + KILL_WINDOW]; /* 0 never acked, 1 put acked, 2 delete acked */

    for (int round = 0; round < ROUNDS; round++) {
        uint64_t base = (uint64_t)round * SPAN, rec;
        int fds[2], acks = 0, wst;
        pid_t pid;
        FILE *in;

        cr_assert_eq(pipe(fds), 0);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test that timed out */
            close(fds[0]);
            child_run(fds[1], base);
        }
        close(fds[1]);
        in = fdopen(fds[0], "r");
        /* Whatever the child acknowledged before it died is still in the pipe: read to EOF. */
        while (fread(&rec, sizeof(rec), 1, in) == 1) {
            uint64_t id = rec & ~ACK_DEL;

            cr_assert_lt(id, (uint64_t)ROUNDS * SPAN);
            if (rec & ACK_DEL) {
                cr_assert_eq(state[id], 1);
                state[id] = 2;
            } else {
                cr_assert_eq(state[id], 0);
                state[id] = 1;
                if (++acks == KILL_ACKS)
                    kill(pid, SIGKILL);
            }
        }
        fclose(in);
        cr_assert_eq(waitpid(pid, &wst, 0), pid);
        cr_assert(WIFSIGNALED(wst), "child exited with %d", WEXITSTATUS(wst));
        cr_assert_geq(acks, KILL_ACKS);

        cr_assert_eq(dn_store_open(path, 0, 0, &st), 0);
        for (uint64_t id = 0; id < (uint64_t)ROUNDS * SPAN; id++) {
            struct dn_fid f = fid_of(id);
            bool present = dn_store_lookup(st, &f, NULL, NULL);

            /* The child deletes id - KILL_WINDOW right after acknowledging id. */
            bool del_issued = state[id + KILL_WINDOW] != 0;

            if (state[id] == 1 && !del_issued)
                cr_assert(present, "round %d: acknowledged fragment %llu lost", round,
                          (unsigned long long)id);
            if (state[id] == 2)
                cr_assert_not(present, "round %d: deleted fragment %llu is back", round,
                              (unsigned long long)id);
            if (present) { /* acknowledged or not, a fragment that is there is intact */
                expect_frag(id, kill_len(id));
                /* Make room for the next round: it runs on recovered, fragmented space. */
                cr_assert_eq(del_sync(id), 0);
                state[id] = 2;
            }
        }
        cr_assert_eq(stats().used, 0);
        dn_store_close(st);
        st = NULL;
    }
}
