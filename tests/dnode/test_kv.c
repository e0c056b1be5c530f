/*
 * Metadata shard store tests: round trips and limits, compare-and-set conflicts, shard
 * isolation, ordered paged scans, restart, durability under kill -9, two processes racing
 * on one record, writer sessions, and all-or-nothing updates with their stamps.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cairn.h"
#include "dnode/kv.h"

static char dir[64];
static struct dn_kv *kv;

static void setup(void)
{
    strcpy(dir, "/var/tmp/cairn-kv-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(dn_kv_open(dir, 256u << 20, &kv), 0);
}

static void teardown(void)
{
    char cmd[128];

    dn_kv_close(kv);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static void reopen(void)
{
    dn_kv_close(kv);
    kv = NULL;
    cr_assert_eq(dn_kv_open(dir, 256u << 20, &kv), 0);
}

static int put(uint32_t shard, const char *key, const char *val, uint64_t expect, uint64_t ver,
               uint64_t *cur)
{
    return dn_kv_put(kv, shard, key, strlen(key), val, strlen(val), expect, ver, cur);
}

static void expect_record(uint32_t shard, const char *key, const char *val, uint64_t ver)
{
    void *v = NULL;
    size_t len = 0;
    uint64_t got = 0;

    cr_assert_eq(dn_kv_get(kv, shard, key, strlen(key), &v, &len, &got), 0, "get %s", key);
    cr_assert_eq(len, strlen(val), "%s: length", key);
    cr_assert(len == 0 || memcmp(v, val, len) == 0, "%s: value", key);
    cr_assert_eq(got, ver, "%s: version %llu", key, (unsigned long long)got);
    free(v);
}

TestSuite(kv, .init = setup, .fini = teardown);

Test(kv, roundtrip_and_limits)
{
    uint8_t key[KV_MAX_KEY + 1];
    uint8_t *big = malloc(KV_MAX_VALUE + 1);
    void *v = NULL;
    size_t len = 0;
    uint64_t ver = 0;

    cr_assert(big);
    memset(key, 'k', sizeof(key));
    for (size_t i = 0; i < KV_MAX_VALUE + 1; i++)
        big[i] = (uint8_t)(i * 7);
    cr_assert_eq(put(1, "empty", "", KV_ABSENT, 1, NULL), 0);
    expect_record(1, "empty", "", 1);
    cr_assert_eq(dn_kv_put(kv, 1, "big", 3, big, KV_MAX_VALUE, KV_ABSENT, 9, NULL), 0);
    cr_assert_eq(dn_kv_get(kv, 1, "big", 3, &v, &len, &ver), 0);
    cr_assert(len == KV_MAX_VALUE && ver == 9 && memcmp(v, big, len) == 0);
    free(v);
    cr_assert_eq(dn_kv_put(kv, 1, "big2", 4, big, KV_MAX_VALUE + 1, KV_ABSENT, 1, NULL),
                 CAIRN_EINVAL);
    cr_assert_eq(dn_kv_put(kv, 1, key, KV_MAX_KEY, "x", 1, KV_ABSENT, 1, NULL), 0);
    cr_assert_eq(dn_kv_put(kv, 1, key, KV_MAX_KEY + 1, "x", 1, KV_ABSENT, 1, NULL), CAIRN_EINVAL);
    cr_assert_eq(dn_kv_put(kv, 1, key, 0, "x", 1, KV_ABSENT, 1, NULL), CAIRN_EINVAL);
    cr_assert_eq(put(1, "v0", "x", KV_ABSENT, 0, NULL), CAIRN_EINVAL);
    cr_assert_eq(put(1, "vmax", "x", KV_ABSENT, KV_ANY, NULL), CAIRN_EINVAL);
    cr_assert_eq(dn_kv_get(kv, 1, "nope", 4, &v, &len, &ver), CAIRN_ENOENT);
    cr_assert_eq(dn_kv_get(kv, 1, key, KV_MAX_KEY + 1, &v, &len, &ver), CAIRN_EINVAL);
    cr_assert_eq(dn_kv_get(kv, 1, key, 0, &v, &len, &ver), CAIRN_EINVAL);
    cr_assert_eq(dn_kv_get(kv, 1, "big2", 4, &v, &len, &ver), CAIRN_ENOENT);
    cr_assert_eq(dn_kv_del(kv, 1, key, 0, KV_ANY, NULL), CAIRN_EINVAL);
    cr_assert_eq(dn_kv_del(kv, 1, key, KV_MAX_KEY + 1, KV_ANY, NULL), CAIRN_EINVAL);
    /* The longest key reads back and deletes like any other. */
    cr_assert_eq(dn_kv_get(kv, 1, key, KV_MAX_KEY, &v, &len, &ver), 0);
    cr_assert(len == 1 && ver == 1 && memcmp(v, "x", 1) == 0);
    free(v);
    cr_assert_eq(dn_kv_del(kv, 1, key, KV_MAX_KEY, 1, NULL), 0);
    free(big);
}

/* Binary keys: NUL and 0xff bytes, prefixes ordered before their extensions. */
Test(kv, binary_key_order)
{
    static const struct {
        const char *k;
        size_t len;
    } keys[] = {{"a", 1},     {"a\0", 2},     {"a\0\0", 3}, {"a\x01", 2},
                {"a\xff", 2}, {"a\xff\0", 3}, {"b", 1}};
    struct dn_kv_scan s;

    /* Insert in reverse order so the store, not insertion order, decides. */
    for (size_t i = CAIRN_ARRAY_SIZE(keys); i-- > 0;)
        cr_assert_eq(
            dn_kv_put(kv, 8, keys[i].k, keys[i].len, &i, sizeof(i), KV_ABSENT, i + 1, NULL), 0);
    cr_assert_eq(dn_kv_scan(kv, 8, NULL, 0, NULL, 0, 0, &s), 0);
    cr_assert_eq(s.count, CAIRN_ARRAY_SIZE(keys));
    for (size_t i = 0; i < s.count; i++) {
        cr_assert(s.entries[i].key_len == keys[i].len &&
                      memcmp(s.entries[i].key, keys[i].k, keys[i].len) == 0,
                  "entry %zu out of order", i);
        cr_assert_eq(s.entries[i].version, i + 1);
        cr_assert(s.entries[i].val_len == sizeof(i) &&
                  memcmp(s.entries[i].val, &i, sizeof(i)) == 0);
    }
    dn_kv_scan_free(&s);
    /* ["a\0", "a\xff"): the bound is exact down to the length tie-break. */
    cr_assert_eq(dn_kv_scan(kv, 8, "a\0", 2, "a\xff", 2, 0, &s), 0);
    cr_assert_eq(s.count, 3);
    cr_assert(s.entries[0].key_len == 2 && memcmp(s.entries[0].key, "a\0", 2) == 0);
    cr_assert(s.entries[2].key_len == 2 && memcmp(s.entries[2].key, "a\x01", 2) == 0);
    dn_kv_scan_free(&s);
    /* End bound that is an extension of a key: "a" < "a\0", so [-, "a\0") is just "a", and
     * [-, "a\xff\0\0") stops after "a\xff\0" (shorter key first on a common prefix). */
    cr_assert_eq(dn_kv_scan(kv, 8, NULL, 0, "a\0", 2, 0, &s), 0);
    cr_assert(s.count == 1 && s.entries[0].key_len == 1 && s.more == 0);
    dn_kv_scan_free(&s);
    cr_assert_eq(dn_kv_scan(kv, 8, "a\x01", 2, "a\xff\0\0", 4, 0, &s), 0);
    cr_assert_eq(s.count, 3);
    cr_assert(s.entries[2].key_len == 3 && memcmp(s.entries[2].key, "a\xff\0", 3) == 0);
    dn_kv_scan_free(&s);
    /* ["a\0\0", "a\0\0"): empty, and so is end < start. */
    cr_assert_eq(dn_kv_scan(kv, 8, "a\0\0", 3, "a\0\0", 3, 0, &s), 0);
    cr_assert(s.count == 0 && s.more == 0 && s.entries == NULL);
    dn_kv_scan_free(&s);
    cr_assert_eq(dn_kv_scan(kv, 8, "b", 1, "a", 1, 0, &s), 0);
    cr_assert(s.count == 0 && s.more == 0);
    dn_kv_scan_free(&s);
    /* A start past every key of the shard, and an empty shard. */
    cr_assert_eq(dn_kv_scan(kv, 8, "c", 1, NULL, 0, 0, &s), 0);
    cr_assert(s.count == 0 && s.more == 0);
    dn_kv_scan_free(&s);
    cr_assert_eq(dn_kv_scan(kv, 9, NULL, 0, NULL, 0, 0, &s), 0);
    cr_assert(s.count == 0 && s.more == 0);
    dn_kv_scan_free(&s);
}

Test(kv, scan_rejects_bad_bounds)
{
    uint8_t key[KV_MAX_KEY + 1];
    struct dn_kv_scan s;

    memset(key, 'k', sizeof(key));
    cr_assert_eq(put(1, "a", "x", KV_ABSENT, 1, NULL), 0);
    cr_assert_eq(dn_kv_scan(kv, 1, key, KV_MAX_KEY + 1, NULL, 0, 0, &s), CAIRN_EINVAL);
    cr_assert(s.count == 0 && s.entries == NULL);
    cr_assert_eq(dn_kv_scan(kv, 1, NULL, 0, key, KV_MAX_KEY + 1, 0, &s), CAIRN_EINVAL);
    cr_assert_eq(dn_kv_scan(kv, 1, key, KV_MAX_KEY, key, KV_MAX_KEY, 0, &s), 0);
    cr_assert_eq(s.count, 0);
    dn_kv_scan_free(&s);
    dn_kv_scan_free(NULL);
}

Test(kv, compare_and_set)
{
    uint64_t cur = 0;

    cr_assert_eq(put(7, "a", "one", KV_ABSENT, 10, &cur), 0);
    /* Create-only on an existing record loses and reports the current version. */
    cr_assert_eq(put(7, "a", "two", KV_ABSENT, 11, &cur), CAIRN_ECONFLICT);
    cr_assert_eq(cur, 10);
    /* A stale expected version loses. */
    cur = 0;
    cr_assert_eq(put(7, "a", "two", 9, 11, &cur), CAIRN_ECONFLICT);
    cr_assert_eq(cur, 10);
    /* Versions only grow, even with the right expectation. */
    cur = 0;
    cr_assert_eq(put(7, "a", "two", 10, 10, &cur), CAIRN_ECONFLICT);
    cr_assert_eq(cur, 10);
    cr_assert_eq(put(7, "a", "two", 10, 5, &cur), CAIRN_ECONFLICT);
    expect_record(7, "a", "one", 10);
    /* The right expectation wins. */
    cr_assert_eq(put(7, "a", "two", 10, 11, &cur), 0);
    expect_record(7, "a", "two", 11);
    /* Expecting a version of an absent record loses with current version 0. */
    cur = 99;
    cr_assert_eq(put(7, "b", "x", 3, 4, &cur), CAIRN_ECONFLICT);
    cr_assert_eq(cur, 0);
    /* Unconditional. */
    cr_assert_eq(put(7, "a", "three", KV_ANY, 20, &cur), 0);
    cr_assert_eq(put(7, "c", "new", KV_ANY, 1, &cur), 0);
    expect_record(7, "a", "three", 20);
    expect_record(7, "c", "new", 1);
}

Test(kv, conditional_delete)
{
    uint64_t cur = 0;
    void *v;
    size_t len;
    uint64_t ver;

    cr_assert_eq(put(2, "d", "x", KV_ABSENT, 5, NULL), 0);
    cr_assert_eq(dn_kv_del(kv, 2, "d", 1, 4, &cur), CAIRN_ECONFLICT);
    cr_assert_eq(cur, 5);
    expect_record(2, "d", "x", 5);
    cr_assert_eq(dn_kv_del(kv, 2, "d", 1, 5, &cur), 0);
    cr_assert_eq(dn_kv_get(kv, 2, "d", 1, &v, &len, &ver), CAIRN_ENOENT);
    cr_assert_eq(dn_kv_del(kv, 2, "d", 1, KV_ANY, &cur), CAIRN_ENOENT);
    cr_assert_eq(put(2, "e", "x", KV_ABSENT, 5, NULL), 0);
    cr_assert_eq(dn_kv_del(kv, 2, "e", 1, KV_ANY, &cur), 0);
    /* A deleted record can be created again. */
    cr_assert_eq(put(2, "d", "y", KV_ABSENT, 6, NULL), 0);
    expect_record(2, "d", "y", 6);
}

Test(kv, shards_are_isolated)
{
    static const uint32_t shards[] = {0, 1, 2, 0x00ffffff, 0x01000000, 0xffffffff};
    struct dn_kv_scan s;

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(shards); i++) {
        char val[32];

        snprintf(val, sizeof(val), "shard-%u", shards[i]);
        cr_assert_eq(put(shards[i], "same", val, KV_ABSENT, 1, NULL), 0);
        cr_assert_eq(put(shards[i], "zzz", val, KV_ABSENT, 1, NULL), 0);
    }
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(shards); i++) {
        char val[32];

        snprintf(val, sizeof(val), "shard-%u", shards[i]);
        expect_record(shards[i], "same", val, 1);
        cr_assert_eq(dn_kv_scan(kv, shards[i], NULL, 0, NULL, 0, 0, &s), 0);
        cr_assert_eq(s.count, 2, "shard %#x scan saw %zu records", shards[i], s.count);
        for (size_t j = 0; j < s.count; j++)
            cr_assert(s.entries[j].val_len == strlen(val) &&
                      memcmp(s.entries[j].val, val, s.entries[j].val_len) == 0);
        cr_assert_eq(s.more, 0);
        dn_kv_scan_free(&s);
    }
}

Test(kv, ordered_scans_with_bounds_and_paging)
{
    struct dn_kv_scan s;
    char key[32], last[40];
    size_t seen = 0;
    int pages = 0;

    /* Insert in a scrambled order. */
    for (unsigned i = 0; i < 2500; i++) {
        unsigned n = (i * 7919u) % 2500u;

        snprintf(key, sizeof(key), "dir/%05u", n);
        cr_assert_eq(put(3, key, key + 4, KV_ABSENT, n + 1, NULL), 0);
    }
    cr_assert_eq(put(3, "dir", "parent", KV_ABSENT, 1, NULL), 0);
    cr_assert_eq(put(3, "dis", "after", KV_ABSENT, 1, NULL), 0);

    /* Bounds: start inclusive, end exclusive. */
    cr_assert_eq(dn_kv_scan(kv, 3, "dir/00010", 9, "dir/00020", 9, 0, &s), 0);
    cr_assert_eq(s.count, 10);
    cr_assert(s.entries[0].key_len == 9 && memcmp(s.entries[0].key, "dir/00010", 9) == 0);
    cr_assert(memcmp(s.entries[9].key, "dir/00019", 9) == 0);
    cr_assert_eq(s.entries[9].version, 20);
    cr_assert_eq(s.more, 0);
    dn_kv_scan_free(&s);

    /* Page through "dir/" .. "dir0" with a limit; each page starts just after the last key
     * of the previous one (last key + "\0"), with no gaps and no duplicates. */
    memcpy(last, "dir/", 4);
    for (size_t ll = 4;;) {
        cr_assert_eq(dn_kv_scan(kv, 3, last, ll, "dir0", 4, 300, &s), 0);
        pages++;
        for (size_t j = 0; j < s.count; j++) {
            snprintf(key, sizeof(key), "dir/%05zu", seen);
            cr_assert(s.entries[j].key_len == 9 && memcmp(s.entries[j].key, key, 9) == 0,
                      "page %d entry %zu: expected %s", pages, j, key);
            cr_assert(s.entries[j].val_len == 5 && memcmp(s.entries[j].val, key + 4, 5) == 0);
            seen++;
        }
        if (!s.more) {
            dn_kv_scan_free(&s);
            break;
        }
        cr_assert_eq(s.count, 300);
        memcpy(last, s.entries[s.count - 1].key, 9);
        last[9] = '\0';
        ll = 10;
        dn_kv_scan_free(&s);
    }
    cr_assert_eq(seen, 2500, "paging saw %zu of 2500 records", seen);
    cr_assert(pages >= 9);

    /* Default limit is KV_MAX_SCAN. */
    cr_assert_eq(dn_kv_scan(kv, 3, NULL, 0, NULL, 0, 0, &s), 0);
    cr_assert_eq(s.count, KV_MAX_SCAN);
    cr_assert_eq(s.more, 1);
    cr_assert(s.entries[0].key_len == 3 && memcmp(s.entries[0].key, "dir", 3) == 0);
    dn_kv_scan_free(&s);
    cr_assert_eq(dn_kv_scan(kv, 3, NULL, 0, NULL, 0, KV_MAX_SCAN + 1, &s), 0);
    cr_assert(s.count == KV_MAX_SCAN && s.more == 1);
    dn_kv_scan_free(&s);

    /* A page that ends exactly at the last key in range has nothing more. */
    cr_assert_eq(dn_kv_scan(kv, 3, "dir/02000", 9, "dir0", 4, 500, &s), 0);
    cr_assert_eq(s.count, 500);
    cr_assert_eq(s.more, 0);
    dn_kv_scan_free(&s);
    cr_assert_eq(dn_kv_scan(kv, 3, "dir/02000", 9, NULL, 0, 500, &s), 0);
    cr_assert_eq(s.count, 500);
    cr_assert_eq(s.more, 1, "\"dis\" is still in range");
    dn_kv_scan_free(&s);
    cr_assert_eq(dn_kv_scan(kv, 3, "dir/02000", 9, NULL, 0, 501, &s), 0);
    cr_assert(s.count == 501 && s.more == 0);
    cr_assert(s.entries[500].key_len == 3 && memcmp(s.entries[500].key, "dis", 3) == 0);
    dn_kv_scan_free(&s);
}

Test(kv, scan_byte_cap)
{
    size_t vlen = 900u << 10;
    uint8_t *val = calloc(1, vlen);
    struct dn_kv_scan s;
    char key[16];

    cr_assert(val);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "blob%d", i);
        cr_assert_eq(dn_kv_put(kv, 4, key, strlen(key), val, vlen, KV_ABSENT, 1, NULL), 0);
    }
    cr_assert_eq(dn_kv_scan(kv, 4, NULL, 0, NULL, 0, 100, &s), 0);
    cr_assert_eq(s.count, KV_MAX_SCAN_BYTES / (vlen + 5), "count %zu", s.count);
    cr_assert_eq(s.more, 1);
    /* Continuing after the last key returned yields the rest, in pages under the cap. */
    {
        size_t seen = s.count;
        char last[16];
        size_t ll;

        for (;;) {
            cr_assert(s.count > 0);
            ll = s.entries[s.count - 1].key_len;
            memcpy(last, s.entries[s.count - 1].key, ll);
            last[ll++] = '\0';
            if (!s.more)
                break;
            dn_kv_scan_free(&s);
            cr_assert_eq(dn_kv_scan(kv, 4, last, ll, NULL, 0, 100, &s), 0);
            for (size_t j = 0; j < s.count; j++) {
                snprintf(key, sizeof(key), "blob%zu", seen + j);
                cr_assert(s.entries[j].key_len == strlen(key) &&
                          memcmp(s.entries[j].key, key, strlen(key)) == 0);
                cr_assert_eq(s.entries[j].val_len, vlen);
            }
            seen += s.count;
        }
        cr_assert_eq(seen, 10);
    }
    dn_kv_scan_free(&s);
    free(val);
}

/* A full map is CAIRN_ENOSPC, leaves committed records intact and the handle usable. */
Test(kv, full_map_is_enospc)
{
    uint8_t *val = calloc(1, KV_MAX_VALUE);
    char key[16];
    int rc = 0, i;

    cr_assert(val);
    dn_kv_close(kv);
    kv = NULL;
    cr_assert_eq(dn_kv_open(dir, 4u << 20, &kv), 0);
    for (i = 0; i < 16; i++) {
        snprintf(key, sizeof(key), "f%d", i);
        memset(val, i, KV_MAX_VALUE);
        rc = dn_kv_put(kv, 1, key, strlen(key), val, KV_MAX_VALUE, KV_ABSENT, 1, NULL);
        if (rc)
            break;
    }
    cr_assert_eq(rc, CAIRN_ENOSPC, "put %d: %d", i, rc);
    cr_assert(i >= 1 && i < 4, "%d puts fit a 4 MiB map", i);
    for (int j = 0; j < i; j++) {
        void *v;
        size_t len;
        uint64_t ver;

        snprintf(key, sizeof(key), "f%d", j);
        memset(val, j, KV_MAX_VALUE);
        cr_assert_eq(dn_kv_get(kv, 1, key, strlen(key), &v, &len, &ver), 0);
        cr_assert(len == KV_MAX_VALUE && memcmp(v, val, len) == 0);
        free(v);
    }
    snprintf(key, sizeof(key), "f%d", i);
    {
        void *v;
        size_t len;
        uint64_t ver;

        cr_assert_eq(dn_kv_get(kv, 1, key, strlen(key), &v, &len, &ver), CAIRN_ENOENT);
    }
    /* Deleting frees room again. */
    cr_assert_eq(dn_kv_del(kv, 1, "f0", 2, 1, NULL), 0);
    cr_assert_eq(put(1, "small", "x", KV_ABSENT, 1, NULL), 0);
    free(val);
}

/* A batch applies its ops in order, each with its own condition: a later op sees the earlier
 * ones, a failed condition fails only its own op, and all of it is there after a restart. */
Test(kv, batch_in_order_with_own_conditions)
{
    struct dn_kv_op ops[] = {
        {.kind = DN_KV_PUT, .shard = 1, .key = "a", .key_len = 1, .val = "a1", .val_len = 2,
         .expect = KV_ABSENT, .new_version = 1},
        /* sees the put above: version 1 is current */
        {.kind = DN_KV_PUT, .shard = 1, .key = "a", .key_len = 1, .val = "a2", .val_len = 2,
         .expect = 1, .new_version = 2},
        /* stale expectation: conflict, current version 2 */
        {.kind = DN_KV_PUT, .shard = 1, .key = "a", .key_len = 1, .val = "zz", .val_len = 2,
         .expect = 1, .new_version = 3},
        {.kind = DN_KV_PUT, .shard = 1, .key = "b", .key_len = 1, .val = "b1", .val_len = 2,
         .expect = KV_ABSENT, .new_version = 5},
        {.kind = DN_KV_DEL, .shard = 1, .key = "b", .key_len = 1, .expect = 5},
        {.kind = DN_KV_DEL, .shard = 1, .key = "b", .key_len = 1, .expect = KV_ANY},
        {.kind = DN_KV_PUT, .shard = 1, .key = "", .key_len = 0, .val = "x", .val_len = 1,
         .expect = KV_ANY, .new_version = 1},
        {.kind = DN_KV_PUT, .shard = 2, .key = "c", .key_len = 1, .val = "c1", .val_len = 2,
         .expect = KV_ABSENT, .new_version = 7},
    };
    void *v;
    size_t len;
    uint64_t ver;

    dn_kv_apply(kv, ops, CAIRN_ARRAY_SIZE(ops));
    cr_assert_eq(ops[0].status, 0);
    cr_assert_eq(ops[1].status, 0);
    cr_assert_eq(ops[2].status, CAIRN_ECONFLICT);
    cr_assert_eq(ops[2].cur_version, 2);
    cr_assert_eq(ops[3].status, 0);
    cr_assert_eq(ops[4].status, 0);
    cr_assert_eq(ops[5].status, CAIRN_ENOENT);
    cr_assert_eq(ops[6].status, CAIRN_EINVAL);
    cr_assert_eq(ops[7].status, 0);
    reopen();
    expect_record(1, "a", "a2", 2);
    cr_assert_eq(dn_kv_get(kv, 1, "b", 1, &v, &len, &ver), CAIRN_ENOENT);
    expect_record(2, "c", "c1", 7);
}

/* An op the map cannot hold fails alone: the rest of its batch is applied and durable. */
Test(kv, batch_survives_one_op_that_does_not_fit)
{
    uint8_t *big = calloc(1, KV_MAX_VALUE);
    struct dn_kv_op ops[8];
    char keys[8][8];
    int failed = 0;

    cr_assert(big);
    dn_kv_close(kv);
    kv = NULL;
    cr_assert_eq(dn_kv_open(dir, 4u << 20, &kv), 0);
    for (int i = 0; i < 8; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        ops[i] = (struct dn_kv_op){.kind = DN_KV_PUT, .shard = 1, .key = keys[i],
                                   .key_len = strlen(keys[i]), .val = keys[i],
                                   .val_len = strlen(keys[i]), .expect = KV_ABSENT,
                                   .new_version = 1};
    }
    /* Five 1 MiB values cannot all fit a 4 MiB map: the batch as a whole fails. */
    for (int i = 1; i < 8; i += 2) {
        ops[i].val = big;
        ops[i].val_len = KV_MAX_VALUE;
    }
    ops[6].val = big;
    ops[6].val_len = KV_MAX_VALUE;
    dn_kv_apply(kv, ops, 8);
    for (int i = 0; i < 8; i++) {
        if (ops[i].val_len == KV_MAX_VALUE) {
            cr_assert(ops[i].status == 0 || ops[i].status == CAIRN_ENOSPC, "op %d: %d", i,
                      ops[i].status);
            failed += ops[i].status != 0;
        } else {
            cr_assert_eq(ops[i].status, 0, "small op %d: %d", i, ops[i].status);
        }
    }
    cr_assert(failed >= 1, "some 1 MiB value must not fit");
    reopen();
    for (int i = 0; i < 8; i += 2)
        if (i != 6)
            expect_record(1, keys[i], keys[i], 1);
    free(big);
}

/* open creates missing parent directories, and reopening an existing store works. */
Test(kv, open_creates_nested_dir)
{
    char sub[128];
    struct dn_kv *k2 = NULL;
    void *v;
    size_t len;
    uint64_t ver;

    snprintf(sub, sizeof(sub), "%s/a/b/meta", dir);
    cr_assert_eq(dn_kv_open(sub, 0, &k2), 0);
    cr_assert_eq(dn_kv_put(k2, 1, "k", 1, "v", 1, KV_ABSENT, 3, NULL), 0);
    /* The default map (1 GiB) holds more than a few maximal values. */
    {
        uint8_t *big = calloc(1, KV_MAX_VALUE);

        cr_assert(big);
        for (uint32_t i = 0; i < 8; i++)
            cr_assert_eq(dn_kv_put(k2, 2, &i, sizeof(i), big, KV_MAX_VALUE, KV_ABSENT, 1, NULL), 0,
                         "big put %u", i);
        free(big);
    }
    dn_kv_close(k2);
    k2 = NULL;
    cr_assert_eq(dn_kv_open(sub, 0, &k2), 0);
    cr_assert_eq(dn_kv_get(k2, 1, "k", 1, &v, &len, &ver), 0);
    cr_assert(len == 1 && ver == 3 && memcmp(v, "v", 1) == 0);
    free(v);
    dn_kv_close(k2);
    dn_kv_close(NULL);
    /* A path through a regular file cannot be a store. */
    snprintf(sub, sizeof(sub), "%s/data.mdb/x", dir);
    cr_assert_eq(dn_kv_open(sub, 0, &k2), CAIRN_EIO);
}

Test(kv, restart_keeps_everything)
{
    char key[32], val[32];

    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "r%d", i);
        snprintf(val, sizeof(val), "value-%d", i * 3);
        cr_assert_eq(put((uint32_t)(i % 7), key, val, KV_ABSENT, (uint64_t)i + 1, NULL), 0);
    }
    cr_assert_eq(dn_kv_del(kv, 0, "r0", 2, KV_ANY, NULL), 0);
    reopen();
    for (int i = 1; i < 500; i++) {
        snprintf(key, sizeof(key), "r%d", i);
        snprintf(val, sizeof(val), "value-%d", i * 3);
        expect_record((uint32_t)(i % 7), key, val, (uint64_t)i + 1);
    }
    {
        void *v;
        size_t len;
        uint64_t ver;

        cr_assert_eq(dn_kv_get(kv, 0, "r0", 2, &v, &len, &ver), CAIRN_ENOENT);
    }
}

/* A child writes records and reports each acknowledged one; it is killed with SIGKILL at a
 * random moment.  Everything it reported must be there after reopening. */
Test(kv, acknowledged_puts_survive_kill)
{
    int fds[2];
    pid_t pid;
    FILE *in;
    unsigned acked = 0, n;

    cr_assert_eq(pipe(fds), 0);
    dn_kv_close(kv);
    kv = NULL;
    pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        struct dn_kv *ckv;
        char key[32], val[64];

        close(fds[0]);
        if (dn_kv_open(dir, 256u << 20, &ckv))
            _exit(3);
        for (unsigned i = 0;; i++) {
            snprintf(key, sizeof(key), "k%u", i);
            snprintf(val, sizeof(val), "payload for %u", i);
            if (dn_kv_put(ckv, 9, key, strlen(key), val, strlen(val), KV_ABSENT, i + 1, NULL))
                _exit(4);
            if (write(fds[1], &i, sizeof(i)) != sizeof(i))
                _exit(5);
        }
    }
    close(fds[1]);
    usleep(200 * 1000);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    in = fdopen(fds[0], "r");
    while (fread(&n, sizeof(n), 1, in) == 1)
        acked = n + 1;
    fclose(in);
    cr_assert(acked > 5, "child acknowledged only %u puts", acked);
    cr_assert_eq(dn_kv_open(dir, 256u << 20, &kv), 0);
    for (unsigned i = 0; i < acked; i++) {
        char key[32], val[64];

        snprintf(key, sizeof(key), "k%u", i);
        snprintf(val, sizeof(val), "payload for %u", i);
        expect_record(9, key, val, i + 1);
    }
}

/* Two processes increment one counter through get + conditional put, retrying on conflict:
 * no increment may be lost. */
Test(kv, concurrent_cas_loses_nothing)
{
    pid_t pids[2];

    cr_assert_eq(dn_kv_put(kv, 5, "ctr", 3, "0", 1, KV_ABSENT, 1, NULL), 0);
    for (int p = 0; p < 2; p++) {
        pids[p] = fork();
        cr_assert(pids[p] >= 0);
        if (pids[p] == 0) {
            struct dn_kv *ckv;

            if (dn_kv_open(dir, 256u << 20, &ckv))
                _exit(3);
            for (int done = 0; done < 200;) {
                void *v = NULL;
                size_t len;
                uint64_t ver;
                char buf[32];
                long cnt;
                int rc;

                if (dn_kv_get(ckv, 5, "ctr", 3, &v, &len, &ver) || len >= sizeof(buf))
                    _exit(4);
                memcpy(buf, v, len);
                buf[len] = '\0';
                free(v);
                cnt = strtol(buf, NULL, 10) + 1;
                snprintf(buf, sizeof(buf), "%ld", cnt);
                rc = dn_kv_put(ckv, 5, "ctr", 3, buf, strlen(buf), ver, ver + 1, NULL);
                if (rc == 0)
                    done++;
                else if (rc != CAIRN_ECONFLICT)
                    _exit(5);
            }
            dn_kv_close(ckv);
            _exit(0);
        }
    }
    for (int p = 0; p < 2; p++) {
        int status;

        cr_assert_eq(waitpid(pids[p], &status, 0), pids[p]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d status %#x", p, status);
    }
    expect_record(5, "ctr", "400", 401);
}

static struct dn_kv_op session_op(const char *key, const char *val, uint64_t expect,
                                  uint64_t client, uint64_t seq, uint64_t time_ms)
{
    return (struct dn_kv_op){.kind = DN_KV_PUT, .key = key, .key_len = strlen(key),
                             .val = val, .val_len = strlen(val), .expect = expect,
                             .client = client, .seq = seq, .time_ms = time_ms};
}

/* A writer session applies each update once: a copy (a retry after a lost answer) gets the
 * first copy's result and changes nothing, a stray copy of an older update is dropped, and
 * the next update applies. */
Test(kv, sessions_apply_each_update_once)
{
    struct dn_kv_op op = session_op("r", "one", KV_ANY, 42, 7, 1000);

    cr_assert_eq(dn_kv_round_apply(kv, 3, 10, &op), 0);
    cr_assert(!op.dup);
    cr_assert_eq(op.status, 0);
    cr_assert_eq(op.result, 10);
    cr_assert_eq(dn_kv_round_commit(kv), 0);

    /* Another writer overwrites it; then the first writer's retry of update 7 arrives. */
    op = session_op("r", "two", KV_ANY, 99, 1, 1001);
    cr_assert_eq(dn_kv_round_apply(kv, 3, 11, &op), 0);
    cr_assert_eq(op.status, 0);
    op = session_op("r", "one", KV_ANY, 42, 7, 1002);
    cr_assert_eq(dn_kv_round_apply(kv, 3, 12, &op), 0);
    cr_assert(op.dup, "a copy of an applied update must not apply again");
    cr_assert_eq(op.status, 0);
    cr_assert_eq(op.result, 10, "the copy answers with the first copy's version");
    cr_assert_eq(dn_kv_round_commit(kv), 0);
    expect_record(3, "r", "two", 11);

    /* A conditional update that lost: its copy reports the same conflict. */
    op = session_op("r", "three", 10, 42, 8, 1003);
    cr_assert_eq(dn_kv_round_apply(kv, 3, 13, &op), 0);
    cr_assert_eq(op.status, CAIRN_ECONFLICT);
    cr_assert_eq(op.result, 11);
    op = session_op("r", "three", 11, 42, 8, 1004); /* even if it could win now */
    cr_assert_eq(dn_kv_round_apply(kv, 3, 14, &op), 0);
    cr_assert(op.dup);
    cr_assert_eq(op.status, CAIRN_ECONFLICT);
    cr_assert_eq(op.cur_version, 11);

    /* A stray copy of an older update is dropped. */
    op = session_op("r", "old", KV_ANY, 42, 5, 1005);
    cr_assert_eq(dn_kv_round_apply(kv, 3, 15, &op), 0);
    cr_assert(op.dup);
    cr_assert_eq(op.status, CAIRN_ECANCELED);

    /* The next update applies; sessions are per shard and never listed. */
    op = session_op("r", "four", 11, 42, 9, 1006);
    cr_assert_eq(dn_kv_round_apply(kv, 3, 16, &op), 0);
    cr_assert(!op.dup);
    cr_assert_eq(op.status, 0);
    cr_assert_eq(dn_kv_round_commit(kv), 0);
    expect_record(3, "r", "four", 16);
    struct dn_kv_scan scan = {0};
    cr_assert_eq(dn_kv_scan(kv, 3, "", 0, NULL, 0, 10, &scan), 0);
    cr_assert_eq(scan.count, 1, "the session records are not listed");
    dn_kv_scan_free(&scan);

    /* The store's own keys cannot be written by a client. */
    op = session_op("\xffS12345678", "x", KV_ANY, 0, 0, 0);
    cr_assert_eq(dn_kv_round_apply(kv, 3, 17, &op), 0);
    cr_assert_eq(op.status, CAIRN_EINVAL);
    cr_assert_eq(dn_kv_round_commit(kv), 0);
}

/* Sessions idle for KV_SESSION_TTL_MS (by the entries' clock) are forgotten at a sweep. */
Test(kv, idle_sessions_are_forgotten)
{
    uint64_t t0 = 5000000;
    struct dn_kv_op op = session_op("a", "one", KV_ANY, 7, 1, t0);

    cr_assert_eq(dn_kv_round_apply(kv, 4, 5, &op), 0);
    op = session_op("b", "x", KV_ANY, 8, 1, t0 + KV_SESSION_TTL_MS - 1);
    cr_assert_eq(dn_kv_round_apply(kv, 4, 6, &op), 0);
    /* A sweep at an index that is a multiple of KV_SESSION_SWEEP, after the TTL of session 7
     * only: session 7's copy then applies as new, session 8's is still recognised. */
    op = session_op("c", "y", KV_ANY, 9, 1, t0 + KV_SESSION_TTL_MS + 1);
    cr_assert_eq(dn_kv_round_apply(kv, 4, KV_SESSION_SWEEP, &op), 0);
    op = session_op("b", "x", KV_ANY, 8, 1, t0 + KV_SESSION_TTL_MS + 2);
    cr_assert_eq(dn_kv_round_apply(kv, 4, KV_SESSION_SWEEP + 1, &op), 0);
    cr_assert(op.dup, "a session within its TTL is kept");
    op = session_op("a", "one", KV_ANY, 7, 1, t0 + KV_SESSION_TTL_MS + 3);
    cr_assert_eq(dn_kv_round_apply(kv, 4, KV_SESSION_SWEEP + 2, &op), 0);
    cr_assert(!op.dup, "an idle session is forgotten");
    cr_assert_eq(dn_kv_round_commit(kv), 0);
}

/* ---- all-or-nothing updates (dn_kv_round_apply_txn) ---- */

static struct dn_kv_op txn_put(const char *key, const void *val, size_t len, uint64_t expect)
{
    return (struct dn_kv_op){.kind = DN_KV_PUT, .key = key, .key_len = strlen(key), .val = val,
                             .val_len = len, .expect = expect};
}

static struct dn_kv_op txn_del(const char *key, uint64_t expect)
{
    return (struct dn_kv_op){.kind = DN_KV_DEL, .key = key, .key_len = strlen(key),
                             .expect = expect};
}

static struct dn_kv_op txn_stamp(const char *key, const uint8_t *lanes, size_t len,
                                 uint64_t expect)
{
    return (struct dn_kv_op){.kind = DN_KV_STAMP, .key = key, .key_len = strlen(key),
                             .val = lanes, .val_len = len, .expect = expect};
}

static void be64_to(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* A value of two big-endian lanes followed by tail (the shape of an inode record's times). */
static size_t lanes2(uint8_t *b, uint64_t a, uint64_t c, const char *tail)
{
    be64_to(b, a);
    be64_to(b + 8, c);
    memcpy(b + 16, tail, strlen(tail));
    return 16 + strlen(tail);
}

/* Record key of shard is exactly len bytes of want, at version ver. */
static void expect_bytes(uint32_t shard, const char *key, const void *want, size_t len,
                         uint64_t ver)
{
    void *v = NULL;
    size_t got_len = 0;
    uint64_t got = 0;

    cr_assert_eq(dn_kv_get(kv, shard, key, strlen(key), &v, &got_len, &got), 0, "get %s", key);
    cr_assert_eq(got_len, len, "%s: length %zu, want %zu", key, got_len, len);
    cr_assert(memcmp(v, want, len) == 0, "%s: value differs", key);
    cr_assert_eq(got, ver, "%s: version %llu, want %llu", key, (unsigned long long)got,
                 (unsigned long long)ver);
    free(v);
}

static void expect_absent(uint32_t shard, const char *key)
{
    void *v = NULL;
    size_t len = 0;
    uint64_t ver = 0;

    cr_assert_eq(dn_kv_get(kv, shard, key, strlen(key), &v, &len, &ver), CAIRN_ENOENT,
                 "%s must not exist", key);
}

/* Apply one txn at index and commit it; the store itself must not fail. */
static struct dn_kv_op apply_txn(uint32_t group, uint64_t index, struct dn_kv_op *ops, size_t n)
{
    struct dn_kv_op head = {0};

    cr_assert_eq(dn_kv_round_apply_txn(kv, group, index, &head, ops, n), 0, "txn at %llu",
                 (unsigned long long)index);
    cr_assert_eq(dn_kv_round_commit(kv), 0);
    return head;
}

/* Every op of a txn lands at the entry's index, which is also what it answers with: the
 * caller learns each put record's new version from one number. */
Test(kv, txn_applies_every_op_at_its_index)
{
    struct dn_kv_op ops[3];
    struct dn_kv_op head;
    uint64_t applied = 0;

    cr_assert_eq(put(6, "kept", "k1", KV_ABSENT, 5, NULL), 0);
    cr_assert_eq(put(6, "gone", "g1", KV_ABSENT, 5, NULL), 0);
    ops[0] = txn_put("new", "N", 1, KV_ABSENT);
    ops[1] = txn_put("kept", "k2", 2, 5);
    ops[2] = txn_del("gone", 5);
    head = apply_txn(6, 10, ops, 3);
    cr_assert(!head.dup);
    cr_assert_eq(head.status, 0, "txn: %s", cairn_strerror(head.status));
    cr_assert_eq(head.result, 10);
    expect_record(6, "new", "N", 10);
    expect_record(6, "kept", "k2", 10);
    expect_absent(6, "gone");
    cr_assert_eq(dn_kv_applied_get(kv, 6, &applied), 0);
    cr_assert_eq(applied, 10);
    /* Other groups' records of the same name are not the txn's. */
    expect_absent(7, "new");

    /* KV_TXN_MAX ops is still one txn. */
    struct dn_kv_op many[KV_TXN_MAX];
    char keys[KV_TXN_MAX][8];

    for (unsigned i = 0; i < KV_TXN_MAX; i++) {
        snprintf(keys[i], sizeof keys[i], "m%u", i);
        many[i] = txn_put(keys[i], "v", 1, KV_ABSENT);
    }
    head = apply_txn(6, 11, many, KV_TXN_MAX);
    cr_assert_eq(head.status, 0, "%u ops: %s", KV_TXN_MAX, cairn_strerror(head.status));
    for (unsigned i = 0; i < KV_TXN_MAX; i++)
        expect_record(6, keys[i], "v", 11);
    reopen();
    expect_record(6, "kept", "k2", 10);
    expect_record(6, keys[KV_TXN_MAX - 1], "v", 11);
}

/* One failing condition, wherever it is, and none of the txn is applied; the entry itself
 * still counts as applied (it changed nothing, the same on every replica). */
Test(kv, txn_is_all_or_nothing)
{
    struct dn_kv_op ops[3];
    struct dn_kv_op head;
    uint64_t applied = 0;

    cr_assert_eq(put(6, "x", "x3", KV_ABSENT, 3, NULL), 0);
    cr_assert_eq(put(6, "y", "y4", KV_ABSENT, 4, NULL), 0);

    /* The first op alone would succeed; the second's expectation is stale. */
    ops[0] = txn_put("x", "new", 3, 3);
    ops[1] = txn_put("y", "new", 3, 3);
    ops[2] = txn_put("z", "new", 3, KV_ABSENT);
    head = apply_txn(6, 10, ops, 3);
    cr_assert_eq(head.status, CAIRN_ECONFLICT, "got %s", cairn_strerror(head.status));
    cr_assert_eq(head.result, 4, "a conflict answers the failing record's current version");
    expect_record(6, "x", "x3", 3);
    expect_record(6, "y", "y4", 4);
    expect_absent(6, "z");
    cr_assert_eq(dn_kv_applied_get(kv, 6, &applied), 0);
    cr_assert_eq(applied, 10);

    /* A delete of an absent record fails the txn too. */
    ops[0] = txn_put("x", "new", 3, 3);
    ops[1] = txn_del("nope", KV_ANY);
    head = apply_txn(6, 11, ops, 2);
    cr_assert_eq(head.status, CAIRN_ENOENT, "got %s", cairn_strerror(head.status));
    cr_assert_eq(head.result, 0);
    expect_record(6, "x", "x3", 3);

    /* A conditional delete that lost, behind a create that would have won. */
    ops[0] = txn_put("z", "new", 3, KV_ABSENT);
    ops[1] = txn_del("y", 3);
    head = apply_txn(6, 12, ops, 2);
    cr_assert_eq(head.status, CAIRN_ECONFLICT);
    cr_assert_eq(head.result, 4);
    expect_absent(6, "z");
    expect_record(6, "y", "y4", 4);

    /* A create of a record that exists (expect absent) fails the txn. */
    ops[0] = txn_del("y", 4);
    ops[1] = txn_put("x", "dup", 3, KV_ABSENT);
    head = apply_txn(6, 13, ops, 2);
    cr_assert_eq(head.status, CAIRN_ECONFLICT);
    cr_assert_eq(head.result, 3);
    expect_record(6, "y", "y4", 4);
    reopen();
    expect_record(6, "x", "x3", 3);
    expect_absent(6, "z");
}

/* Shapes the store refuses whole: nothing of them is applied, even the ops that were fine. */
Test(kv, txn_refuses_bad_shapes)
{
    struct dn_kv_op ops[KV_TXN_MAX + 1], head;
    char keys[KV_TXN_MAX + 1][8];
    uint8_t lanes[5 * 8] = {0};

    /* The same key twice (the ops' conditions would each hold alone). */
    ops[0] = txn_put("d", "1", 1, KV_ABSENT);
    ops[1] = txn_put("e", "1", 1, KV_ABSENT);
    ops[2] = txn_put("d", "2", 1, KV_ANY);
    head = apply_txn(6, 10, ops, 3);
    cr_assert_eq(head.status, CAIRN_EINVAL, "duplicate keys: %s", cairn_strerror(head.status));
    expect_absent(6, "d");
    expect_absent(6, "e");

    /* More than KV_TXN_MAX ops. */
    for (unsigned i = 0; i <= KV_TXN_MAX; i++) {
        snprintf(keys[i], sizeof keys[i], "m%u", i);
        ops[i] = txn_put(keys[i], "v", 1, KV_ABSENT);
    }
    head = apply_txn(6, 11, ops, KV_TXN_MAX + 1);
    cr_assert_eq(head.status, CAIRN_EINVAL, "%u ops: %s", KV_TXN_MAX + 1,
                 cairn_strerror(head.status));
    for (unsigned i = 0; i <= KV_TXN_MAX; i++)
        expect_absent(6, keys[i]);

    /* No ops. */
    head = apply_txn(6, 12, ops, 0);
    cr_assert_eq(head.status, CAIRN_EINVAL, "no ops: %s", cairn_strerror(head.status));

    /* A key of the store's own, behind a valid put. */
    ops[0] = txn_put("ok", "1", 1, KV_ABSENT);
    ops[1] = txn_put("\xffS12345678", "x", 1, KV_ANY);
    head = apply_txn(6, 13, ops, 2);
    cr_assert_eq(head.status, CAIRN_EINVAL, "reserved key: %s", cairn_strerror(head.status));
    expect_absent(6, "ok");

    /* Stamps of a size that is not whole lanes, of no lanes, and of too many. */
    cr_assert_eq(put(6, "rec", "0123456789abcdef0123456789abcdef0123456789", KV_ABSENT, 2, NULL),
                 0);
    ops[0] = txn_put("ok", "1", 1, KV_ABSENT);
    ops[1] = txn_stamp("rec", lanes, 12, KV_ANY);
    head = apply_txn(6, 14, ops, 2);
    cr_assert_eq(head.status, CAIRN_EINVAL, "12-byte stamp: %s", cairn_strerror(head.status));
    ops[1] = txn_stamp("rec", lanes, 0, KV_ANY);
    head = apply_txn(6, 15, ops, 2);
    cr_assert_eq(head.status, CAIRN_EINVAL, "empty stamp: %s", cairn_strerror(head.status));
    ops[1] = txn_stamp("rec", lanes, 8 * (KV_STAMP_MAX + 1), KV_ANY);
    head = apply_txn(6, 16, ops, 2);
    cr_assert_eq(head.status, CAIRN_EINVAL, "%u-lane stamp: %s", KV_STAMP_MAX + 1,
                 cairn_strerror(head.status));
    expect_absent(6, "ok");
    expect_record(6, "rec", "0123456789abcdef0123456789abcdef0123456789", 2);
}

/* A stamp raises each given lane to at least its value, leaves higher lanes and the rest of
 * the value alone, and never lowers anything: stamps commute. */
Test(kv, stamp_raises_lanes_and_keeps_the_rest)
{
    uint8_t rec[64], want[64], st[32];
    size_t rl, wl;
    struct dn_kv_op ops[2], head;

    rl = lanes2(rec, 5, 9, "xyz");
    cr_assert_eq(dn_kv_put(kv, 6, "dir", 3, rec, rl, KV_ABSENT, 3, NULL), 0);

    lanes2(st, 7, 3, "");
    ops[0] = txn_stamp("dir", st, 16, KV_ANY);
    head = apply_txn(6, 10, ops, 1);
    cr_assert_eq(head.status, 0, "stamp: %s", cairn_strerror(head.status));
    cr_assert_eq(head.result, 10);
    wl = lanes2(want, 7, 9, "xyz");
    expect_bytes(6, "dir", want, wl, 10);

    /* Lower than both lanes: nothing rises, nothing falls; the record still gets the index. */
    lanes2(st, 1, 2, "");
    head = apply_txn(6, 11, ops, 1);
    cr_assert_eq(head.status, 0);
    expect_bytes(6, "dir", want, wl, 11);

    /* One lane only: the second is value bytes the stamp does not touch. */
    be64_to(st, 100);
    ops[0] = txn_stamp("dir", st, 8, KV_ANY);
    head = apply_txn(6, 12, ops, 1);
    cr_assert_eq(head.status, 0);
    wl = lanes2(want, 100, 9, "xyz");
    expect_bytes(6, "dir", want, wl, 12);

    /* Lanes are unsigned: the top bit set is larger, not negative. */
    lanes2(st, 1ull << 63, 8, "");
    ops[0] = txn_stamp("dir", st, 16, KV_ANY);
    head = apply_txn(6, 13, ops, 1);
    cr_assert_eq(head.status, 0);
    wl = lanes2(want, 1ull << 63, 9, "xyz");
    expect_bytes(6, "dir", want, wl, 13);

    /* A stamp's condition is checked like any op's, and a stamp goes with the rest. */
    lanes2(st, UINT64_MAX, UINT64_MAX, "");
    ops[0] = txn_put("child", "c", 1, KV_ABSENT);
    ops[1] = txn_stamp("dir", st, 16, 12);
    head = apply_txn(6, 14, ops, 2);
    cr_assert_eq(head.status, CAIRN_ECONFLICT, "stale stamp: %s", cairn_strerror(head.status));
    cr_assert_eq(head.result, 13);
    expect_absent(6, "child");
    expect_bytes(6, "dir", want, wl, 13);
    ops[1] = txn_stamp("dir", st, 16, 13);
    head = apply_txn(6, 15, ops, 2);
    cr_assert_eq(head.status, 0, "stamp with child: %s", cairn_strerror(head.status));
    expect_record(6, "child", "c", 15);
    wl = lanes2(want, UINT64_MAX, UINT64_MAX, "xyz");
    expect_bytes(6, "dir", want, wl, 15);

    /* No record to stamp: the txn fails whole. */
    ops[0] = txn_put("child2", "c", 1, KV_ABSENT);
    ops[1] = txn_stamp("nodir", st, 16, KV_ANY);
    head = apply_txn(6, 16, ops, 2);
    cr_assert_eq(head.status, CAIRN_ENOENT, "stamp of nothing: %s", cairn_strerror(head.status));
    cr_assert_eq(head.result, 0);
    expect_absent(6, "child2");
    expect_absent(6, "nodir");

    /* Lanes beyond the record's value: refused, the record unchanged. */
    be64_to(rec, 1);
    cr_assert_eq(dn_kv_put(kv, 6, "short", 5, rec, 8, KV_ABSENT, 4, NULL), 0);
    lanes2(st, 9, 9, "");
    ops[1] = txn_stamp("short", st, 16, KV_ANY);
    head = apply_txn(6, 17, ops, 2);
    cr_assert_eq(head.status, CAIRN_EINVAL, "stamp past the value: %s",
                 cairn_strerror(head.status));
    expect_absent(6, "child2");
    expect_bytes(6, "short", rec, 8, 4);
    reopen();
    expect_bytes(6, "dir", want, wl, 15);
}

/* A txn with a writer session is applied once: a copy answers the first copy's outcome and
 * changes nothing, even across a restart and even when it could now succeed. */
Test(kv, txn_sessions_apply_each_update_once)
{
    struct dn_kv_op ops[2], head;

    ops[0] = txn_put("s", "one", 3, KV_ANY);
    ops[1] = txn_put("t", "one", 3, KV_ANY);
    head = (struct dn_kv_op){.client = 42, .seq = 7, .time_ms = 1000};
    cr_assert_eq(dn_kv_round_apply_txn(kv, 3, 10, &head, ops, 2), 0);
    cr_assert(!head.dup);
    cr_assert_eq(head.status, 0);
    cr_assert_eq(head.result, 10);
    cr_assert_eq(dn_kv_round_commit(kv), 0);
    reopen();

    /* The copy would apply again (KV_ANY) if the session did not stop it. */
    head = (struct dn_kv_op){.client = 42, .seq = 7, .time_ms = 1001};
    cr_assert_eq(dn_kv_round_apply_txn(kv, 3, 11, &head, ops, 2), 0);
    cr_assert(head.dup, "a copy of an applied txn must not apply again");
    cr_assert_eq(head.status, 0);
    cr_assert_eq(head.result, 10, "the copy answers with the first copy's version");
    cr_assert_eq(dn_kv_round_commit(kv), 0);
    expect_record(3, "s", "one", 10);
    expect_record(3, "t", "one", 10);

    /* A txn that lost: its copy reports the same conflict though it would win now. */
    ops[0] = txn_put("s", "two", 3, 9);
    ops[1] = txn_put("t", "two", 3, 10);
    head = (struct dn_kv_op){.client = 42, .seq = 8, .time_ms = 1002};
    cr_assert_eq(dn_kv_round_apply_txn(kv, 3, 12, &head, ops, 2), 0);
    cr_assert_eq(head.status, CAIRN_ECONFLICT);
    cr_assert_eq(head.result, 10);
    ops[0] = txn_put("s", "two", 3, 10);
    head = (struct dn_kv_op){.client = 42, .seq = 8, .time_ms = 1003};
    cr_assert_eq(dn_kv_round_apply_txn(kv, 3, 13, &head, ops, 2), 0);
    cr_assert(head.dup);
    cr_assert_eq(head.status, CAIRN_ECONFLICT);
    cr_assert_eq(head.result, 10);

    /* An older copy is dropped; the next update applies. */
    head = (struct dn_kv_op){.client = 42, .seq = 6, .time_ms = 1004};
    cr_assert_eq(dn_kv_round_apply_txn(kv, 3, 14, &head, ops, 2), 0);
    cr_assert(head.dup);
    cr_assert_eq(head.status, CAIRN_ECANCELED);
    head = (struct dn_kv_op){.client = 42, .seq = 9, .time_ms = 1005};
    cr_assert_eq(dn_kv_round_apply_txn(kv, 3, 15, &head, ops, 2), 0);
    cr_assert(!head.dup);
    cr_assert_eq(head.status, 0, "next txn: %s", cairn_strerror(head.status));
    cr_assert_eq(dn_kv_round_commit(kv), 0);
    expect_record(3, "s", "two", 15);
    expect_record(3, "t", "two", 15);

    /* Sessions of single ops and of txns are one sequence per writer. */
    struct dn_kv_op op = session_op("s", "three", KV_ANY, 42, 9, 1006);

    cr_assert_eq(dn_kv_round_apply(kv, 3, 16, &op), 0);
    cr_assert(op.dup, "a single op with a txn's seq is a copy of it");
    cr_assert_eq(dn_kv_round_commit(kv), 0);
    expect_record(3, "s", "two", 15);
}
