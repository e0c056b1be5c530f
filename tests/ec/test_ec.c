/*
 * Erasure coding tests: every erasure pattern of 4+2 and 8+3, random patterns of 16+4 and of
 * the widest codes, odd fragment lengths, the CRC (known value, chaining, single bit flips)
 * and the stripe layout arithmetic.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/cairn.h"
#include "ec/ec.h"

struct stripe {
    unsigned k, m;
    size_t len;
    uint8_t *frags[EC_MAX_FRAGS]; /* working set (damaged and rebuilt) */
    uint8_t *orig[EC_MAX_FRAGS];  /* pristine copy */
    struct ec_codec *c;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

static void stripe_init(struct stripe *s, unsigned k, unsigned m, size_t len)
{
    memset(s, 0, sizeof(*s));
    s->k = k;
    s->m = m;
    s->len = len;
    cr_assert_eq(ec_codec_create(k, m, &s->c), 0, "create %u+%u", k, m);
    cr_assert_eq(ec_codec_k(s->c), k);
    cr_assert_eq(ec_codec_m(s->c), m);
    for (unsigned i = 0; i < k + m; i++) {
        s->frags[i] = malloc(len);
        s->orig[i] = malloc(len);
        cr_assert(s->frags[i] && s->orig[i]);
    }
    for (unsigned i = 0; i < k; i++)
        fill(s->frags[i], len);
    ec_encode(s->c, len, (const uint8_t *const *)s->frags, s->frags + k);
    for (unsigned i = 0; i < k + m; i++)
        memcpy(s->orig[i], s->frags[i], len);
}

static void stripe_fini(struct stripe *s)
{
    for (unsigned i = 0; i < s->k + s->m; i++) {
        free(s->frags[i]);
        free(s->orig[i]);
    }
    ec_codec_destroy(s->c);
}

/* Destroy the fragments in mask, rebuild them, and compare everything with the original. */
static void lose_and_rebuild(struct stripe *s, uint32_t mask)
{
    for (unsigned i = 0; i < s->k + s->m; i++)
        if (mask & (1u << i))
            memset(s->frags[i], 0xee, s->len);
    cr_assert_eq(ec_reconstruct(s->c, s->len, s->frags, mask), 0, "%u+%u mask %#x", s->k, s->m,
                 mask);
    for (unsigned i = 0; i < s->k + s->m; i++)
        cr_assert(memcmp(s->frags[i], s->orig[i], s->len) == 0,
                  "%u+%u len %zu mask %#x: fragment %u differs", s->k, s->m, s->len, mask, i);
}

static void all_patterns(unsigned k, unsigned m, size_t len)
{
    struct stripe s;
    unsigned n = k + m, tried = 0;

    stripe_init(&s, k, m, len);
    for (uint32_t mask = 1; mask < (1u << n); mask++) {
        if ((unsigned)__builtin_popcount(mask) > m)
            continue;
        lose_and_rebuild(&s, mask);
        tried++;
    }
    cr_assert(tried > 0);
    stripe_fini(&s);
}

static uint32_t random_mask(unsigned n, unsigned lose)
{
    uint32_t mask = 0;

    while ((unsigned)__builtin_popcount(mask) < lose)
        mask |= 1u << (rnd() % n);
    return mask;
}

Test(ec, every_pattern_4_2)
{
    all_patterns(4, 2, 4096);
}

Test(ec, every_pattern_8_3)
{
    all_patterns(8, 3, 1000);
}

Test(ec, every_pattern_8_2)
{
    all_patterns(8, 2, 4096);
}

Test(ec, random_patterns_16_4)
{
    struct stripe s;

    stripe_init(&s, 16, 4, 65536);
    for (int t = 0; t < 300; t++)
        lose_and_rebuild(&s, random_mask(20, 1 + (unsigned)(rnd() % 4)));
    /* The extremes: all parity lost, the first and the last four data fragments lost. */
    lose_and_rebuild(&s, 0xfu << 16);
    lose_and_rebuild(&s, 0xfu);
    lose_and_rebuild(&s, 0xfu << 12);
    stripe_fini(&s);
}

Test(ec, widest_codes)
{
    static const unsigned codes[][2] = {{28, 4}, {31, 1}, {1, 31}, {16, 16}, {2, 1}};

    for (size_t c = 0; c < CAIRN_ARRAY_SIZE(codes); c++) {
        struct stripe s;
        unsigned k = codes[c][0], m = codes[c][1];

        stripe_init(&s, k, m, 777);
        for (int t = 0; t < 40; t++)
            lose_and_rebuild(&s, random_mask(k + m, 1 + (unsigned)(rnd() % m)));
        lose_and_rebuild(&s, random_mask(k + m, m));
        stripe_fini(&s);
    }
}

Test(ec, odd_sizes)
{
    static const size_t sizes[] = {1, 2, 63, 65, 1000, 4095, 4097, 65535};

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(sizes); i++) {
        struct stripe s;

        stripe_init(&s, 4, 2, sizes[i]);
        lose_and_rebuild(&s, 0x3);  /* two data */
        lose_and_rebuild(&s, 0x21); /* data + parity */
        lose_and_rebuild(&s, 0x30); /* both parity */
        stripe_fini(&s);
        stripe_init(&s, 8, 3, sizes[i]);
        lose_and_rebuild(&s, 0x481);
        stripe_fini(&s);
    }
}

Test(ec, parity_is_a_function_of_data)
{
    struct stripe s;

    stripe_init(&s, 4, 2, 4096);
    /* Changing one data byte must change every parity fragment (Cauchy rows have no zeros). */
    s.frags[2][100] ^= 0x40;
    ec_encode(s.c, s.len, (const uint8_t *const *)s.frags, s.frags + 4);
    cr_assert(memcmp(s.frags[4], s.orig[4], s.len) != 0);
    cr_assert(memcmp(s.frags[5], s.orig[5], s.len) != 0);
    stripe_fini(&s);
}

/* Longer than the 1 MiB pieces ec.c feeds ISA-L, so encode and rebuild cross piece boundaries. */
Test(ec, fragments_longer_than_one_isal_call)
{
    struct stripe s;
    size_t len = (5u << 19) + 7, off = (1u << 20) - 3, sub = 1u << 20;
    uint8_t *parity[2], *data[4];

    stripe_init(&s, 4, 2, len);
    lose_and_rebuild(&s, 0x11); /* data 0 + parity 0 */
    lose_and_rebuild(&s, 0x0c);
    /* The code is position-independent: encoding a window straddling a boundary reproduces
     * the same window of the whole-fragment parity. */
    parity[0] = malloc(sub);
    parity[1] = malloc(sub);
    cr_assert(parity[0] && parity[1]);
    for (unsigned i = 0; i < 4; i++)
        data[i] = s.orig[i] + off;
    ec_encode(s.c, sub, (const uint8_t *const *)data, parity);
    for (unsigned i = 0; i < 2; i++)
        cr_assert(memcmp(parity[i], s.orig[4 + i] + off, sub) == 0, "parity %u window", i);
    free(parity[0]);
    free(parity[1]);
    stripe_fini(&s);
}

Test(ec, too_many_losses_and_bad_masks)
{
    struct stripe s;

    stripe_init(&s, 4, 2, 512);
    cr_assert_eq(ec_reconstruct(s.c, s.len, s.frags, 0x7), CAIRN_EDEGRADED);
    cr_assert_eq(ec_reconstruct(s.c, s.len, s.frags, 0x3f), CAIRN_EDEGRADED);
    cr_assert_eq(ec_reconstruct(s.c, s.len, s.frags, 1u << 6), CAIRN_EINVAL);
    cr_assert_eq(ec_reconstruct(s.c, s.len, s.frags, 0), 0);
    /* Nothing was written by the refused calls. */
    for (unsigned i = 0; i < 6; i++)
        cr_assert(memcmp(s.frags[i], s.orig[i], s.len) == 0);
    stripe_fini(&s);

    /* Codes that use all 32 mask bits, and the one just below. */
    stripe_init(&s, 28, 4, 64);
    cr_assert_eq(ec_reconstruct(s.c, s.len, s.frags, 0x1fu << 27), CAIRN_EDEGRADED);
    cr_assert_eq(ec_reconstruct(s.c, s.len, s.frags, 0xffffffffu), CAIRN_EDEGRADED);
    stripe_fini(&s);
    stripe_init(&s, 30, 1, 64);
    cr_assert_eq(ec_reconstruct(s.c, s.len, s.frags, 1u << 31), CAIRN_EINVAL);
    lose_and_rebuild(&s, 1u << 30);
    stripe_fini(&s);
}

Test(ec, invalid_codes)
{
    struct ec_codec *c = NULL;

    cr_assert_eq(ec_codec_create(0, 2, &c), CAIRN_EINVAL);
    cr_assert_eq(ec_codec_create(4, 0, &c), CAIRN_EINVAL);
    cr_assert_eq(ec_codec_create(30, 3, &c), CAIRN_EINVAL);
    cr_assert_eq(ec_codec_create(32, 1, &c), CAIRN_EINVAL);
    ec_codec_destroy(NULL);
}

Test(ec, crc32c_known_value_and_chaining)
{
    static const char check[] = "123456789";
    uint8_t buf[10000];
    uint32_t whole;

    /* The CRC-32C check value from the catalogue of parametrised CRCs. */
    cr_assert_eq(ec_crc32c(0, check, 9), 0xe3069283u, "got %#x", ec_crc32c(0, check, 9));
    cr_assert_eq(ec_crc32c(0, NULL, 0), 0);
    fill(buf, sizeof(buf));
    whole = ec_crc32c(0, buf, sizeof(buf));
    for (size_t cut = 0; cut <= sizeof(buf); cut += 997)
        cr_assert_eq(ec_crc32c(ec_crc32c(0, buf, cut), buf + cut, sizeof(buf) - cut), whole,
                     "split at %zu", cut);
}

/* Bit-at-a-time CRC-32C (reflected 0x1edc6f41), independent of ISA-L's conventions. */
static uint32_t ref_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
    }
    return ~crc;
}

Test(ec, crc32c_matches_reference)
{
    size_t big = (3u << 20) + 13; /* crosses the pieces ec.c feeds ISA-L */
    uint8_t *buf = malloc(big);
    uint32_t want;

    cr_assert(buf);
    fill(buf, big);
    /* Every short length and misalignment, so ISA-L's head/tail paths are all compared. */
    for (size_t off = 0; off < 16; off++)
        for (size_t n = 0; n <= 300; n++)
            cr_assert_eq(ec_crc32c(0, buf + off, n), ref_crc32c(0, buf + off, n), "off %zu n %zu",
                         off, n);
    cr_assert_eq(ec_crc32c(0xdeadbeefu, buf, 1000), ref_crc32c(0xdeadbeefu, buf, 1000));
    want = ref_crc32c(0, buf, big);
    cr_assert_eq(ec_crc32c(0, buf, big), want);
    /* Chaining across a piece boundary, with a seed that is not 0. */
    cr_assert_eq(
        ec_crc32c(ec_crc32c(0, buf, (1u << 20) - 5), buf + (1u << 20) - 5, big - (1u << 20) + 5),
        want);
    free(buf);
}

/* ISA-L takes an int length; a size_t beyond 32 bits must still be checksummed whole.  The
 * buffer is untouched anonymous memory, so it reads as zeros without using RAM. */
Test(ec, crc32c_beyond_4gib)
{
    size_t len = ((size_t)1 << 32) + 4096, piece = 1u << 20;
    uint8_t *zeros = calloc(1, piece);
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    uint32_t want = 0;

    cr_assert(zeros);
    if (map == MAP_FAILED) {
        free(zeros);
        cr_skip_test("cannot map %zu bytes", len);
    }
    for (size_t done = 0; done < len; done += piece)
        want = ec_crc32c(want, zeros, CAIRN_MIN(piece, len - done));
    cr_assert_eq(ec_crc32c(0, map, len), want);
    munmap(map, len);
    free(zeros);
}

Test(ec, crc_catches_every_single_bit_flip)
{
    uint8_t small[64], *big = malloc(1 << 20);
    uint32_t ref;

    cr_assert(big);
    fill(small, sizeof(small));
    ref = ec_crc32c(0, small, sizeof(small));
    for (size_t bit = 0; bit < sizeof(small) * 8; bit++) {
        small[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cr_assert_neq(ec_crc32c(0, small, sizeof(small)), ref, "bit %zu", bit);
        small[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    cr_assert_eq(ec_crc32c(0, small, sizeof(small)), ref);

    fill(big, 1 << 20);
    ref = ec_crc32c(0, big, 1 << 20);
    for (int t = 0; t < 64; t++) {
        uint64_t bit = rnd() % ((1u << 20) * 8ull);

        big[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cr_assert_neq(ec_crc32c(0, big, 1 << 20), ref, "bit %llu", (unsigned long long)bit);
        big[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    free(big);
}

Test(ec, rebuilt_fragment_matches_its_crc)
{
    struct stripe s;
    uint32_t crc[6];

    stripe_init(&s, 4, 2, 8192);
    for (unsigned i = 0; i < 6; i++)
        crc[i] = ec_crc32c(0, s.frags[i], s.len);
    /* A corrupt fragment is detected by its CRC, treated as lost and rebuilt. */
    s.frags[1][5000] ^= 0x01;
    cr_assert_neq(ec_crc32c(0, s.frags[1], s.len), crc[1]);
    cr_assert_eq(ec_reconstruct(s.c, s.len, s.frags, 1u << 1), 0);
    cr_assert_eq(ec_crc32c(0, s.frags[1], s.len), crc[1]);
    stripe_fini(&s);
}

Test(ec, layout)
{
    struct ec_layout l = {.k = 4, .m = 2, .frag_size = 65536};
    uint64_t sb = 4 * 65536;

    cr_assert_eq(ec_layout_stripes(&l, 0), 0);
    cr_assert_eq(ec_layout_stripes(&l, 1), 1);
    cr_assert_eq(ec_layout_stripes(&l, sb), 1);
    cr_assert_eq(ec_layout_stripes(&l, sb + 1), 2);
    cr_assert_eq(ec_layout_stripe_bytes(&l, sb + 1, 0), sb);
    cr_assert_eq(ec_layout_stripe_bytes(&l, sb + 1, 1), 1);
    cr_assert_eq(ec_layout_stripe_bytes(&l, sb + 1, 2), 0);
    cr_assert_eq(ec_layout_frag_len(&l, sb + 1, 0), 65536);
    cr_assert_eq(ec_layout_frag_len(&l, sb + 1, 1), 1);
    cr_assert_eq(ec_layout_frag_len(&l, sb + 5, 1), 2);
    cr_assert_eq(ec_layout_frag_len(&l, 2 * sb - 1, 1), 65536);
    cr_assert_eq(ec_layout_frag_len(&l, 1000, 0), 250);
    cr_assert_eq(ec_layout_frag_len(&l, 0, 0), 0);
}

Test(ec, layout_near_uint64_max)
{
    struct ec_layout l = {.k = 4, .m = 2, .frag_size = 65536};
    uint64_t sb = 4 * 65536, n = UINT64_MAX / sb + 1; /* UINT64_MAX is not a multiple of sb */

    cr_assert_eq(ec_layout_stripes(&l, UINT64_MAX), n);
    cr_assert_eq(ec_layout_stripe_bytes(&l, UINT64_MAX, n - 1), sb - 1);
    cr_assert_eq(ec_layout_frag_len(&l, UINT64_MAX, n - 1), 65536);
    cr_assert_eq(ec_layout_stripe_bytes(&l, UINT64_MAX, n), 0);
    cr_assert_eq(ec_layout_stripe_bytes(&l, 10, UINT64_MAX), 0);
    cr_assert_eq(ec_layout_stripe_bytes(&l, 10, UINT64_MAX / sb + 1), 0);
}

/* For many (k, frag_size, length): stripes tile the object exactly, and each stripe's fragments
 * are the shortest that hold it (k * flen >= bytes > k * (flen - 1)). */
Test(ec, layout_tiles_the_object)
{
    static const uint32_t ks[] = {1, 3, 4, 7, 16, 31};
    static const uint32_t fs[] = {1, 5, 4096};

    for (size_t a = 0; a < CAIRN_ARRAY_SIZE(ks); a++) {
        for (size_t b = 0; b < CAIRN_ARRAY_SIZE(fs); b++) {
            struct ec_layout l = {.k = ks[a], .m = 1, .frag_size = fs[b]};
            uint64_t sb = (uint64_t)l.k * l.frag_size;

            for (int t = 0; t < 50; t++) {
                uint64_t len = t < 3 ? sb * (uint64_t)t + 1 : rnd() % (5 * sb + 1), sum = 0;
                uint64_t ns = ec_layout_stripes(&l, len);

                for (uint64_t s = 0; s < ns; s++) {
                    uint64_t bytes = ec_layout_stripe_bytes(&l, len, s);
                    uint32_t flen = ec_layout_frag_len(&l, len, s);

                    cr_assert(bytes >= 1 && bytes <= sb, "k %u f %u len %llu s %llu", l.k,
                              l.frag_size, (unsigned long long)len, (unsigned long long)s);
                    cr_assert(s + 1 == ns || bytes == sb);
                    cr_assert(flen >= 1 && (uint64_t)flen * l.k >= bytes &&
                              (uint64_t)(flen - 1) * l.k < bytes);
                    sum += bytes;
                }
                cr_assert_eq(sum, len, "k %u f %u len %llu", l.k, l.frag_size,
                             (unsigned long long)len);
                cr_assert_eq(ec_layout_stripe_bytes(&l, len, ns), 0);
            }
        }
    }
}

Test(ec, layout_parse)
{
    static const char *bad[] = {"0+2",  "4+0",           "4+",  "+2",  "4+2x", "20+13", "", "4-2",
                                "4 +2", "99999999999+1", "a+b", "33+1"};
    uint32_t k = 0, m = 0;

    cr_assert_eq(ec_layout_parse("4+2", &k, &m), 0);
    cr_assert(k == 4 && m == 2);
    cr_assert_eq(ec_layout_parse("16+4", &k, &m), 0);
    cr_assert(k == 16 && m == 4);
    cr_assert_eq(ec_layout_parse("31+1", &k, &m), 0);
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(bad); i++)
        cr_assert_eq(ec_layout_parse(bad[i], &k, &m), CAIRN_EINVAL, "'%s' accepted", bad[i]);
    cr_assert_eq(ec_layout_parse(NULL, &k, &m), CAIRN_EINVAL);
}
