/*
 * test_extmap.c - extent maps (cnode/fs/extmap.h): laying new extents over old ones, truncating,
 * and finding the objects a change leaves unreferenced.  These decide what a partially
 * rewritten file reads back, so each case checks the byte-level picture.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "cnode/fs/extmap.h"

static Cairn__Extent ext(uint64_t off, uint64_t len, uint64_t obj)
{
    Cairn__Extent x = CAIRN__EXTENT__INIT;

    x.offset = off;
    x.length = len;
    x.object_id = obj;
    x.gen = 1;
    x.k = 4;
    x.m = 2;
    x.frag_size = 4096;
    x.obj_size = len;
    return x;
}

/* Which object (and byte of it) shows file byte b; 0 for a hole. */
static uint64_t who(const struct fs_extmap *m, uint64_t b, uint64_t *objbyte)
{
    for (size_t i = 0; i < m->n; i++)
        if (b >= m->v[i].offset && b < m->v[i].offset + m->v[i].length) {
            *objbyte = b - m->v[i].offset + m->v[i].obj_offset;
            return m->v[i].object_id;
        }
    return 0;
}

static void check_sorted(const struct fs_extmap *m)
{
    for (size_t i = 1; i < m->n; i++)
        cr_assert_leq(m->v[i - 1].offset + m->v[i - 1].length, m->v[i].offset,
                      "extents %zu and %zu overlap or are out of order", i - 1, i);
    for (size_t i = 0; i < m->n; i++) {
        cr_assert_gt(m->v[i].length, 0);
        cr_assert_leq(m->v[i].obj_offset + m->v[i].length, fs_extent_obj_size(&m->v[i]));
    }
}

Test(extmap, append_and_overlay_middle)
{
    struct fs_extmap m = {0};
    Cairn__Extent a = ext(0, 100, 1), b = ext(40, 20, 2);
    uint64_t ob;

    cr_assert_eq(fs_extmap_put(&m, &a), 0);
    cr_assert_eq(fs_extmap_put(&m, &b), 0); /* splits a in two around b */
    check_sorted(&m);
    cr_assert_eq(m.n, 3);
    cr_assert_eq(who(&m, 39, &ob), 1);
    cr_assert_eq(ob, 39);
    cr_assert_eq(who(&m, 40, &ob), 2);
    cr_assert_eq(ob, 0);
    cr_assert_eq(who(&m, 59, &ob), 2);
    cr_assert_eq(ob, 19);
    cr_assert_eq(who(&m, 60, &ob), 1);
    cr_assert_eq(ob, 60, "the tail of a split extent keeps its place in the object");
    cr_assert_eq(who(&m, 99, &ob), 1);
    cr_assert_eq(who(&m, 100, &ob), 0);
    fs_extmap_fini(&m);
}

Test(extmap, cover_several_and_trim_edges)
{
    struct fs_extmap m = {0};
    Cairn__Extent e[] = {ext(0, 10, 1), ext(10, 10, 2), ext(20, 10, 3), ext(40, 10, 4)};
    Cairn__Extent big = ext(5, 40, 9);
    uint64_t ob;

    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(fs_extmap_put(&m, &e[i]), 0);
    cr_assert_eq(fs_extmap_put(&m, &big), 0);
    check_sorted(&m);
    cr_assert_eq(m.n, 3); /* 1 trimmed, 2 and 3 gone, 9, 4 trimmed */
    cr_assert_eq(who(&m, 4, &ob), 1);
    cr_assert_eq(who(&m, 5, &ob), 9);
    cr_assert_eq(who(&m, 44, &ob), 9);
    cr_assert_eq(ob, 39);
    cr_assert_eq(who(&m, 45, &ob), 4);
    cr_assert_eq(ob, 5);
    cr_assert_eq(who(&m, 32, &ob), 9, "the hole between 3 and 4 is now covered");
    fs_extmap_fini(&m);
}

Test(extmap, exact_replace_and_holes)
{
    struct fs_extmap m = {0};
    Cairn__Extent a = ext(100, 50, 1), b = ext(100, 50, 2), c = ext(0, 10, 3);
    uint64_t ob;

    fs_extmap_put(&m, &a);
    fs_extmap_put(&m, &b);
    fs_extmap_put(&m, &c);
    check_sorted(&m);
    cr_assert_eq(m.n, 2);
    cr_assert_eq(who(&m, 120, &ob), 2);
    cr_assert_eq(who(&m, 50, &ob), 0, "a hole reads as no object");
    fs_extmap_fini(&m);
}

Test(extmap, truncate)
{
    struct fs_extmap m = {0};
    Cairn__Extent a = ext(0, 100, 1), b = ext(200, 100, 2);
    uint64_t ob;

    fs_extmap_put(&m, &a);
    fs_extmap_put(&m, &b);
    fs_extmap_truncate(&m, 250);
    check_sorted(&m);
    cr_assert_eq(m.n, 2);
    cr_assert_eq(m.v[1].length, 50);
    cr_assert_eq(who(&m, 249, &ob), 2);
    cr_assert_eq(who(&m, 250, &ob), 0);
    fs_extmap_truncate(&m, 100);
    cr_assert_eq(m.n, 1);
    fs_extmap_truncate(&m, 0);
    cr_assert_eq(m.n, 0);
    fs_extmap_fini(&m);
}

Test(extmap, dropped_objects)
{
    struct fs_extmap m = {0};
    Cairn__Extent a = ext(0, 100, 1), b = ext(100, 100, 2), c = ext(50, 100, 3);
    Cairn__Extent *old[] = {&a, &b}, **dropped;
    size_t n;

    fs_extmap_put(&m, &a);
    fs_extmap_put(&m, &b);
    fs_extmap_put(&m, &c); /* covers half of each: both still shown */
    cr_assert_eq(fs_extmap_dropped(&m, old, 2, &dropped, &n), 0);
    cr_assert_eq(n, 0);
    free(dropped);
    {
        Cairn__Extent d = ext(0, 200, 4);

        fs_extmap_put(&m, &d); /* covers everything */
        cr_assert_eq(fs_extmap_dropped(&m, old, 2, &dropped, &n), 0);
        cr_assert_eq(n, 2);
        free(dropped);
    }
    fs_extmap_fini(&m);
}

/* A random sequence of writes against a byte-level model. */
Test(extmap, random_against_model)
{
    enum { SIZE = 512 };
    uint64_t model_obj[SIZE], model_byte[SIZE];
    struct fs_extmap m = {0};
    unsigned seed = 7;

    memset(model_obj, 0, sizeof(model_obj));
    for (uint64_t obj = 1; obj <= 300; obj++) {
        uint64_t off = (seed = seed * 1103515245 + 12345) % SIZE;
        uint64_t len = 1 + (seed = seed * 1103515245 + 12345) % 64;
        Cairn__Extent x;

        if (off + len > SIZE)
            len = SIZE - off;
        x = ext(off, len, obj);
        cr_assert_eq(fs_extmap_put(&m, &x), 0);
        for (uint64_t b = off; b < off + len; b++) {
            model_obj[b] = obj;
            model_byte[b] = b - off;
        }
        check_sorted(&m);
        for (uint64_t b = 0; b < SIZE; b++) {
            uint64_t ob = 0, o = who(&m, b, &ob);

            cr_assert_eq(o, model_obj[b], "byte %lu after object %lu", (unsigned long)b,
                         (unsigned long)obj);
            if (o)
                cr_assert_eq(ob, model_byte[b]);
        }
    }
    fs_extmap_fini(&m);
}
