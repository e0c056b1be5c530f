/*
 * S3 XML and error-table tests: the request parsers on valid and hostile bodies (limits,
 * ordering, DTDs), the escaper and error document, the time helpers, and the error table.
 * Every parser test checks the exact error, since the S3 head sends it straight to clients.
 */
#include <criterion/criterion.h>
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/s3/err.h"
#include "cnode/s3/xml.h"
#include "common/cairn.h"

#define NS_ATTR " xmlns=\"" S3_XML_NS "\""
#define SEC 1000000000LL

/* ---- helpers ---------------------------------------------------------------------------- */

static enum s3_err complete(const char *body, struct s3_complete *c)
{
    return s3xml_parse_complete(body, strlen(body), c);
}

static enum s3_err del(const char *body, struct s3_delete *d)
{
    return s3xml_parse_delete(body, strlen(body), d);
}

/* A growable string for building large bodies in tests. */
static char *cat(char *s, const char *add)
{
    size_t a = s ? strlen(s) : 0, b = strlen(add);
    char *n = realloc(s, a + b + 1);

    cr_assert_not_null(n);
    memcpy(n + a, add, b + 1);
    return n;
}

/* A CompleteMultipartUpload with parts numbered nums[0..n). */
static char *complete_body(const unsigned *nums, unsigned n)
{
    char part[128];
    char *s = cat(NULL, "<CompleteMultipartUpload>");

    for (unsigned i = 0; i < n; i++) {
        snprintf(part, sizeof(part), "<Part><PartNumber>%u</PartNumber><ETag>\"e%u\"</ETag></Part>",
                 nums[i], nums[i]);
        s = cat(s, part);
    }
    return cat(s, "</CompleteMultipartUpload>");
}

/* A Delete with n keys k0, k1, ... */
static char *delete_body(unsigned n)
{
    char obj[128];
    char *s = cat(NULL, "<Delete>");

    for (unsigned i = 0; i < n; i++) {
        snprintf(obj, sizeof(obj), "<Object><Key>k%u</Key></Object>", i);
        s = cat(s, obj);
    }
    return cat(s, "</Delete>");
}

/* ---- CompleteMultipartUpload ------------------------------------------------------------ */

Test(complete, valid_with_namespace)
{
    struct s3_complete c;
    const char *body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                       "<CompleteMultipartUpload" NS_ATTR ">\n"
                       "  <Part>\n"
                       "    <PartNumber>1</PartNumber>\n"
                       "    <ETag>\"a54357aff0632cce46d942af68356b38\"</ETag>\n"
                       "  </Part>\n"
                       "  <Part><ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag>"
                       "<PartNumber>2</PartNumber></Part>\n"
                       "  <Part><PartNumber>7</PartNumber><ETag>abc-3</ETag></Part>\n"
                       "</CompleteMultipartUpload>\n";

    cr_assert_eq(complete(body, &c), S3E_OK);
    cr_assert_eq(c.nparts, 3);
    cr_assert_eq(c.parts[0].number, 1);
    cr_assert_str_eq(c.parts[0].etag, "a54357aff0632cce46d942af68356b38");
    cr_assert_eq(c.parts[1].number, 2);
    cr_assert_str_eq(c.parts[1].etag, "0c78aef83f66abc1fa1e8477f296d394");
    cr_assert_eq(c.parts[2].number, 7);
    cr_assert_str_eq(c.parts[2].etag, "abc-3");
    s3_complete_fini(&c);
    cr_assert_null(c.parts);
    cr_assert_eq(c.nparts, 0);
}

Test(complete, valid_without_namespace)
{
    struct s3_complete c;

    cr_assert_eq(complete("<CompleteMultipartUpload><Part><PartNumber>3</PartNumber>"
                          "<ETag>\"x\"</ETag></Part></CompleteMultipartUpload>",
                          &c),
                 S3E_OK);
    cr_assert_eq(c.nparts, 1);
    cr_assert_eq(c.parts[0].number, 3);
    cr_assert_str_eq(c.parts[0].etag, "x");
    s3_complete_fini(&c);
}

Test(complete, prefixed_namespace)
{
    struct s3_complete c;

    cr_assert_eq(complete("<s3:CompleteMultipartUpload xmlns:s3=\"" S3_XML_NS "\"><s3:Part>"
                          "<s3:PartNumber>1</s3:PartNumber><s3:ETag>e</s3:ETag></s3:Part>"
                          "</s3:CompleteMultipartUpload>",
                          &c),
                 S3E_OK);
    cr_assert_eq(c.nparts, 1);
    s3_complete_fini(&c);
}

Test(complete, foreign_namespace_rejected)
{
    struct s3_complete c;

    cr_assert_eq(complete("<CompleteMultipartUpload xmlns=\"http://example.com/\"><Part>"
                          "<PartNumber>1</PartNumber><ETag>e</ETag></Part>"
                          "</CompleteMultipartUpload>",
                          &c),
                 S3E_MALFORMED_XML);
    cr_assert_null(c.parts);
}

Test(complete, checksum_children_ignored)
{
    struct s3_complete c;

    cr_assert_eq(complete("<CompleteMultipartUpload" NS_ATTR "><Part>"
                          "<ChecksumCRC32>AAAAAA==</ChecksumCRC32>"
                          "<PartNumber>1</PartNumber>"
                          "<ChecksumSHA256><x>nested</x>text</ChecksumSHA256>"
                          "<ETag>\"e1\"</ETag>"
                          "<Foo xmlns=\"http://other/\"><PartNumber>99999</PartNumber></Foo>"
                          "</Part></CompleteMultipartUpload>",
                          &c),
                 S3E_OK);
    cr_assert_eq(c.nparts, 1);
    cr_assert_eq(c.parts[0].number, 1);
    cr_assert_str_eq(c.parts[0].etag, "e1");
    s3_complete_fini(&c);
}

Test(complete, malformed_bodies)
{
    static const char *const bad[] = {
        "",
        "   ",
        "<CompleteMultipartUpload>",
        "<CompleteMultipartUpload></CompleteMultipartUpload>", /* no parts */
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload><x/>", /* junk after the root */
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>"
        "</Wrong>",
        "<Delete><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></Delete>", /* root */
        "<CompleteMultipartUpload><Parts><PartNumber>1</PartNumber><ETag>e</ETag></Parts>"
        "</CompleteMultipartUpload>", /* unknown child of the root */
        "<CompleteMultipartUpload><Part><ETag>e</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber>"
        "<ETag>e</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag>"
        "<ETag>f</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>99999999999999999999</PartNumber>"
        "<ETag>e</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1a</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber></PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag></ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"\"</ETag></Part>"
        "</CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber><b>1</b></PartNumber><ETag>e</ETag>"
        "</Part></CompleteMultipartUpload>", /* element inside a text element */
        "<CompleteMultipartUpload>text<Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload>", /* text between elements */
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>"
        "</CompleteMultipartUpload", /* truncated */
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e&bogus;</ETag>"
        "</Part></CompleteMultipartUpload>", /* undefined entity */
        "<x:CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>"
        "</x:CompleteMultipartUpload>", /* unbound prefix */
    };

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(bad); i++) {
        struct s3_complete c;

        cr_assert_eq(complete(bad[i], &c), S3E_MALFORMED_XML, "body %zu: %s", i, bad[i]);
        cr_assert_null(c.parts, "body %zu leaked parts", i);
        cr_assert_eq(c.nparts, 0);
    }
}

Test(complete, etag_bounds)
{
    struct s3_complete c;
    char etag[128], body[512];

    /* 79 characters plus quotes is the longest that fits; 80 is refused. */
    memset(etag, 'a', 79);
    etag[79] = '\0';
    snprintf(body, sizeof(body),
             "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"%s\"</ETag>"
             "</Part></CompleteMultipartUpload>",
             etag);
    cr_assert_eq(complete(body, &c), S3E_OK);
    cr_assert_str_eq(c.parts[0].etag, etag);
    s3_complete_fini(&c);

    memset(etag, 'a', 80);
    etag[80] = '\0';
    snprintf(body, sizeof(body),
             "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag>"
             "</Part></CompleteMultipartUpload>",
             etag);
    cr_assert_eq(complete(body, &c), S3E_MALFORMED_XML);
}

Test(complete, huge_etag_stopped_while_parsing)
{
    struct s3_complete c;
    size_t n = 1u << 20;
    char *body = malloc(n + 256);
    size_t off;

    cr_assert_not_null(body);
    off = (size_t)sprintf(body, "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>");
    memset(body + off, 'x', n);
    strcpy(body + off + n, "</ETag></Part></CompleteMultipartUpload>");
    cr_assert_eq(complete(body, &c), S3E_MALFORMED_XML);
    free(body);
}

Test(complete, whitespace_around_values)
{
    struct s3_complete c;

    cr_assert_eq(complete("<CompleteMultipartUpload><Part><PartNumber> 12\n</PartNumber>"
                          "<ETag>\n  \"abc\"  \n</ETag></Part></CompleteMultipartUpload>",
                          &c),
                 S3E_OK);
    cr_assert_eq(c.parts[0].number, 12);
    cr_assert_str_eq(c.parts[0].etag, "abc");
    s3_complete_fini(&c);
}

Test(complete, part_order)
{
    static const unsigned ascending[] = {1, 2, 5, 10000};
    static const unsigned descending[] = {2, 1};
    static const unsigned duplicate[] = {1, 2, 2, 3};
    struct s3_complete c;
    char *b;

    b = complete_body(ascending, 4);
    cr_assert_eq(complete(b, &c), S3E_OK);
    cr_assert_eq(c.nparts, 4);
    cr_assert_eq(c.parts[3].number, 10000);
    cr_assert_str_eq(c.parts[3].etag, "e10000");
    s3_complete_fini(&c);
    free(b);

    b = complete_body(descending, 2);
    cr_assert_eq(complete(b, &c), S3E_INVALID_PART_ORDER);
    cr_assert_null(c.parts);
    free(b);

    b = complete_body(duplicate, 4);
    cr_assert_eq(complete(b, &c), S3E_INVALID_PART_ORDER);
    free(b);
}

Test(complete, malformed_beats_order)
{
    struct s3_complete c;

    cr_assert_eq(complete("<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>e"
                          "</ETag></Part><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>"
                          "<Part><PartNumber>3</PartNumber></Part></CompleteMultipartUpload>",
                          &c),
                 S3E_MALFORMED_XML);
}

Test(complete, part_count_limit)
{
    unsigned *nums = malloc((S3_MAX_PARTS + 1) * sizeof(*nums));
    struct s3_complete c;
    char *b;

    cr_assert_not_null(nums);
    for (unsigned i = 0; i < S3_MAX_PARTS; i++)
        nums[i] = i + 1;
    b = complete_body(nums, S3_MAX_PARTS);
    cr_assert_eq(complete(b, &c), S3E_OK);
    cr_assert_eq(c.nparts, S3_MAX_PARTS);
    cr_assert_eq(c.parts[S3_MAX_PARTS - 1].number, S3_MAX_PARTS);
    s3_complete_fini(&c);
    free(b);

    /* One more part is refused however it is numbered. */
    nums[S3_MAX_PARTS] = S3_MAX_PARTS;
    b = complete_body(nums, S3_MAX_PARTS + 1);
    cr_assert_eq(complete(b, &c), S3E_MALFORMED_XML);
    free(b);
    free(nums);
}

Test(complete, body_size_limit)
{
    struct s3_complete c;
    size_t n = S3_MAX_XML_BODY + 1;
    char *body = malloc(n);

    cr_assert_not_null(body);
    memset(body, ' ', n);
    cr_assert_eq(s3xml_parse_complete(body, n, &c), S3E_MALFORMED_XML);
    free(body);
}

Test(complete, fini_null_and_twice)
{
    struct s3_complete c = {0};

    s3_complete_fini(NULL);
    s3_complete_fini(&c);
    s3_complete_fini(&c);
}

/* ---- DTDs and entities ------------------------------------------------------------------ */

static const char billion_laughs[] =
    "<?xml version=\"1.0\"?>\n"
    "<!DOCTYPE lolz [\n"
    " <!ENTITY lol \"lol\">\n"
    " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
    " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
    " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
    " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
    " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
    " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
    " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
    " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
    " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
    "]>\n"
    "<Delete><Object><Key>&lol9;</Key></Object></Delete>\n";

static double elapsed_s(const struct timespec *a)
{
    struct timespec b;

    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

Test(dtd, billion_laughs_rejected_quickly)
{
    struct s3_delete d;
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(del(billion_laughs, &d), S3E_MALFORMED_XML);
        cr_assert_null(d.keys);
    }
    cr_assert_lt(elapsed_s(&t0), 1.0, "100 rejections took %.3f s", elapsed_s(&t0));
}

Test(dtd, any_doctype_rejected)
{
    static const char *const bodies[] = {
        "<!DOCTYPE Delete><Delete><Object><Key>k</Key></Object></Delete>",
        "<!DOCTYPE Delete SYSTEM \"file:///etc/passwd\"><Delete><Object><Key>k</Key></Object>"
        "</Delete>",
        "<!DOCTYPE Delete [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
        "<Delete><Object><Key>&x;</Key></Object></Delete>",
        "<!DOCTYPE Delete [<!ENTITY % p \"x\">]><Delete><Object><Key>k</Key></Object>"
        "</Delete>",
    };
    struct s3_delete d;
    struct s3_complete c;
    char region[32];

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(bodies); i++)
        cr_assert_eq(del(bodies[i], &d), S3E_MALFORMED_XML, "body %zu", i);
    cr_assert_eq(complete("<!DOCTYPE x><CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                          "<ETag>e</ETag></Part></CompleteMultipartUpload>",
                          &c),
                 S3E_MALFORMED_XML);
    const char *cb = "<!DOCTYPE x [<!ENTITY r \"eu\">]><CreateBucketConfiguration>"
                     "<LocationConstraint>&r;</LocationConstraint></CreateBucketConfiguration>";

    cr_assert_eq(s3xml_parse_create_bucket(cb, strlen(cb), region, sizeof(region)),
                 S3E_MALFORMED_XML);
    cr_assert_str_eq(region, "");
}

Test(dtd, predefined_and_numeric_entities_work)
{
    struct s3_delete d;

    cr_assert_eq(
        del("<Delete><Object><Key>a&amp;b&lt;c&#x41;&#66;&apos;</Key></Object></Delete>", &d),
        S3E_OK);
    cr_assert_str_eq(d.keys[0], "a&b<cAB'");
    s3_delete_fini(&d);
}

/* ---- Delete ----------------------------------------------------------------------------- */

Test(delete, valid_quiet_variants)
{
    static const struct {
        const char *body;
        bool quiet;
    } cases[] = {
        {"<Delete" NS_ATTR "><Quiet>true</Quiet><Object><Key>a</Key></Object></Delete>", true},
        {"<Delete><Object><Key>a</Key></Object><Quiet>false</Quiet></Delete>", false},
        {"<Delete><Object><Key>a</Key></Object></Delete>", false},
        {"<Delete>\n  <Quiet> TRUE </Quiet>\n  <Object><Key>a</Key></Object>\n</Delete>", true},
    };

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(cases); i++) {
        struct s3_delete d;

        cr_assert_eq(del(cases[i].body, &d), S3E_OK, "case %zu", i);
        cr_assert_eq(d.nkeys, 1);
        cr_assert_str_eq(d.keys[0], "a");
        cr_assert_eq(d.quiet, cases[i].quiet, "case %zu", i);
        s3_delete_fini(&d);
        cr_assert_null(d.keys);
    }
}

Test(delete, keys_taken_as_sent)
{
    struct s3_delete d;

    cr_assert_eq(del("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                     "<Delete" NS_ATTR ">"
                     "<Object><Key> spaced key </Key><VersionId>v1</VersionId></Object>"
                     "<Object><VersionId>v2</VersionId><Key>dir/\xc3\xa9t\xc3\xa9.txt</Key>"
                     "<ETag>\"x\"</ETag><Size>3</Size></Object>"
                     "<Object><Key><![CDATA[<cdata>&]]></Key></Object>"
                     "</Delete>",
                     &d),
                 S3E_OK);
    cr_assert_eq(d.nkeys, 3);
    cr_assert_str_eq(d.keys[0], " spaced key ");
    cr_assert_str_eq(d.keys[1], "dir/\xc3\xa9t\xc3\xa9.txt");
    cr_assert_str_eq(d.keys[2], "<cdata>&");
    s3_delete_fini(&d);
}

Test(delete, malformed_bodies)
{
    static const char *const bad[] = {
        "",
        "<Delete>",
        "<Delete></Delete>",                    /* no keys */
        "<Delete><Quiet>true</Quiet></Delete>", /* no keys */
        "<Delete><Object></Object></Delete>",   /* missing Key */
        "<Delete><Object><VersionId>v</VersionId></Object></Delete>",
        "<Delete><Object><Key></Key></Object></Delete>", /* empty key */
        "<Delete><Object><Key/></Object></Delete>",      /* empty key */
        "<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
        "<Delete><Quiet>yes</Quiet><Object><Key>a</Key></Object></Delete>",
        "<Delete><Quiet>true</Quiet><Quiet>true</Quiet><Object><Key>a</Key></Object></Delete>",
        "<Delete><Objects><Key>a</Key></Objects></Delete>", /* unknown child of the root */
        "<Remove><Object><Key>a</Key></Object></Remove>",   /* wrong root */
        "<CompleteMultipartUpload><Object><Key>a</Key></Object></CompleteMultipartUpload>",
        "<Delete><Object><Key>a<b/></Key></Object></Delete>",
        "<Delete><Object><Key>a</Key></Object>junk</Delete>",
        "<Delete><Object><Key>a</Key></Object></Delete><Delete/>",
        "<Delete><Object><Key>a</Key></Delete>",
        "not xml at all",
        "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01\"><Object><Key>a</Key></Object>"
        "</Delete>", /* namespace without the trailing slash is another namespace */
    };

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(bad); i++) {
        struct s3_delete d;

        cr_assert_eq(del(bad[i], &d), S3E_MALFORMED_XML, "body %zu: %s", i, bad[i]);
        cr_assert_null(d.keys, "body %zu leaked keys", i);
        cr_assert_eq(d.nkeys, 0);
    }
}

Test(delete, key_count_limit)
{
    struct s3_delete d;
    char *b;

    b = delete_body(S3_MAX_DELETE_KEYS);
    cr_assert_eq(del(b, &d), S3E_OK);
    cr_assert_eq(d.nkeys, S3_MAX_DELETE_KEYS);
    cr_assert_str_eq(d.keys[0], "k0");
    cr_assert_str_eq(d.keys[S3_MAX_DELETE_KEYS - 1], "k999");
    s3_delete_fini(&d);
    free(b);

    b = delete_body(S3_MAX_DELETE_KEYS + 1);
    cr_assert_eq(del(b, &d), S3E_MALFORMED_XML);
    cr_assert_null(d.keys);
    free(b);
}

Test(delete, key_length_limit)
{
    struct s3_delete d;
    char key[S3_MAX_KEY_LEN + 2];
    char body[S3_MAX_KEY_LEN + 128];

    memset(key, 'k', S3_MAX_KEY_LEN);
    key[S3_MAX_KEY_LEN] = '\0';
    snprintf(body, sizeof(body), "<Delete><Object><Key>%s</Key></Object></Delete>", key);
    cr_assert_eq(del(body, &d), S3E_OK);
    cr_assert_eq(strlen(d.keys[0]), S3_MAX_KEY_LEN);
    s3_delete_fini(&d);

    key[S3_MAX_KEY_LEN] = 'k';
    key[S3_MAX_KEY_LEN + 1] = '\0';
    snprintf(body, sizeof(body), "<Delete><Object><Key>%s</Key></Object></Delete>", key);
    cr_assert_eq(del(body, &d), S3E_MALFORMED_XML);

    /* The limit is in bytes: 513 two-byte characters are 1026 bytes. */
    body[0] = '\0';
    strcat(body, "<Delete><Object><Key>");
    for (int i = 0; i < 513; i++)
        strcat(body, "\xc3\xa9");
    strcat(body, "</Key></Object></Delete>");
    cr_assert_eq(del(body, &d), S3E_MALFORMED_XML);
}

Test(delete, fini_null)
{
    s3_delete_fini(NULL);
}

/* ---- CreateBucketConfiguration ---------------------------------------------------------- */

static enum s3_err create_bucket(const char *body, char *region, size_t cap)
{
    return s3xml_parse_create_bucket(body, strlen(body), region, cap);
}

Test(create_bucket, bodies)
{
    char region[32];

    cr_assert_eq(s3xml_parse_create_bucket(NULL, 0, region, sizeof(region)), S3E_OK);
    cr_assert_str_eq(region, "");
    cr_assert_eq(create_bucket(" \r\n", region, sizeof(region)), S3E_OK);
    cr_assert_str_eq(region, "");
    cr_assert_eq(create_bucket("<CreateBucketConfiguration" NS_ATTR ">"
                               "<LocationConstraint>eu-west-1</LocationConstraint>"
                               "</CreateBucketConfiguration>",
                               region, sizeof(region)),
                 S3E_OK);
    cr_assert_str_eq(region, "eu-west-1");
    cr_assert_eq(create_bucket("<CreateBucketConfiguration><LocationConstraint>\n us-east-2 \n"
                               "</LocationConstraint><Location><Name>x</Name></Location>"
                               "</CreateBucketConfiguration>",
                               region, sizeof(region)),
                 S3E_OK);
    cr_assert_str_eq(region, "us-east-2");
    cr_assert_eq(create_bucket("<CreateBucketConfiguration/>", region, sizeof(region)), S3E_OK);
    cr_assert_str_eq(region, "");
}

Test(create_bucket, malformed)
{
    static const char *const bad[] = {
        "<CreateBucketConfiguration>",
        "<BucketConfiguration><LocationConstraint>eu</LocationConstraint>"
        "</BucketConfiguration>",
        "<CreateBucketConfiguration><LocationConstraint>eu</LocationConstraint>"
        "<LocationConstraint>us</LocationConstraint></CreateBucketConfiguration>",
        "<CreateBucketConfiguration>eu</CreateBucketConfiguration>",
        "<CreateBucketConfiguration><LocationConstraint>0123456789abcdef0123456789abcdef"
        "</LocationConstraint></CreateBucketConfiguration>", /* does not fit region[32] */
    };
    char region[32];

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(bad); i++) {
        strcpy(region, "junk");
        cr_assert_eq(create_bucket(bad[i], region, sizeof(region)), S3E_MALFORMED_XML, "body %zu",
                     i);
        cr_assert_str_eq(region, "", "body %zu", i);
    }
}

/* ---- output buffer and escaping --------------------------------------------------------- */

static char *escaped(const char *s, size_t len)
{
    static char out[256];
    struct s3_xbuf b;

    s3_xbuf_init(&b);
    s3_xbuf_escape(&b, s, len);
    cr_assert(!b.oom);
    cr_assert_lt(b.len, sizeof(out));
    memcpy(out, b.len ? b.data : "", b.len);
    out[b.len] = '\0';
    s3_xbuf_fini(&b);
    return out;
}

Test(xbuf, escapes_markup)
{
    cr_assert_str_eq(escaped("<&>\"'", 5), "&lt;&amp;&gt;&quot;&apos;");
    cr_assert_str_eq(escaped("plain/key.txt", 13), "plain/key.txt");
    cr_assert_str_eq(escaped("a&amp;b", 7), "a&amp;amp;b");
    cr_assert_str_eq(escaped("", 0), "");
}

Test(xbuf, escapes_control_characters)
{
    cr_assert_str_eq(escaped("a\001b\037c\177", 6), "a&#x01;b&#x1F;c\177");
    cr_assert_str_eq(escaped("t\tn\nr\r", 6), "t\tn\nr&#x0D;");
    cr_assert_str_eq(escaped("nul\0x", 5), "nul&#x00;x");
}

Test(xbuf, utf8_kept_invalid_replaced)
{
    /* é, €, 😀 pass through; a lone continuation byte, a truncated sequence, an overlong
     * '/', a surrogate and U+FFFE do not. */
    cr_assert_str_eq(escaped("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9),
                     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    cr_assert_str_eq(escaped("a\x80z", 3), "a&#xFFFD;z");
    cr_assert_str_eq(escaped("a\xe2\x82", 3), "a&#xFFFD;&#xFFFD;");
    cr_assert_str_eq(escaped("\xc0\xaf", 2), "&#xFFFD;&#xFFFD;");
    cr_assert_str_eq(escaped("\xed\xa0\x80", 3), "&#xFFFD;&#xFFFD;&#xFFFD;");
    cr_assert_str_eq(escaped("\xef\xbf\xbe", 3), "&#xFFFD;&#xFFFD;&#xFFFD;");
}

/* Whatever bytes a key holds, the element we write is well-formed XML: expat parses it (with
 * the control-character references refused by XML 1.0 removed first, as S3 also emits them). */
Test(xbuf, escaped_output_parses)
{
    char raw[256];
    struct s3_xbuf b;
    XML_Parser p;

    for (int i = 0; i < 256; i++)
        raw[i] = (char)(i < 32 ? 'a' : i);
    s3_xbuf_init(&b);
    s3_xbuf_puts(&b, "<K>");
    s3_xbuf_escape(&b, raw, sizeof(raw));
    s3_xbuf_puts(&b, "</K>");
    cr_assert(!b.oom);
    p = XML_ParserCreate(NULL);
    cr_assert_eq(XML_Parse(p, b.data, (int)b.len, XML_TRUE), XML_STATUS_OK, "%s",
                 XML_ErrorString(XML_GetErrorCode(p)));
    XML_ParserFree(p);
    s3_xbuf_fini(&b);
}

Test(xbuf, grows_and_formats)
{
    struct s3_xbuf b;

    s3_xbuf_init(&b);
    cr_assert_eq(b.len, 0);
    for (int i = 0; i < 10000; i++)
        s3_xbuf_printf(&b, "%05d,", i);
    cr_assert(!b.oom);
    cr_assert_eq(b.len, 60000);
    cr_assert_eq(strncmp(b.data, "00000,00001,", 12), 0);
    cr_assert_str_eq(b.data + b.len - 6, "09999,");
    cr_assert_eq(b.data[b.len], '\0');
    s3_xbuf_put(&b, "xyz", 2);
    cr_assert_str_eq(b.data + b.len - 2, "xy");
    s3_xbuf_fini(&b);
    cr_assert_null(b.data);
    s3_xbuf_fini(NULL);
}

Test(xbuf, oom_latches)
{
    struct s3_xbuf b;

    s3_xbuf_init(&b);
    s3_xbuf_puts(&b, "abc");
    b.oom = true; /* as after a failed realloc */
    s3_xbuf_puts(&b, "def");
    s3_xbuf_printf(&b, "%d", 42);
    s3_xbuf_escape(&b, "<", 1);
    cr_assert_eq(b.len, 3);
    cr_assert_str_eq(b.data, "abc");
    s3_xbuf_fini(&b);

    /* A request that cannot be satisfied sets oom instead of overflowing. */
    s3_xbuf_init(&b);
    s3_xbuf_puts(&b, "abc");
    s3_xbuf_put(&b, "", SIZE_MAX - 1);
    cr_assert(b.oom);
    cr_assert_eq(b.len, 3);
    s3_xbuf_fini(&b);
}

Test(xbuf, elem_and_decl)
{
    struct s3_xbuf b;

    s3_xbuf_init(&b);
    s3_xbuf_decl(&b);
    s3_xbuf_elem(&b, "Key", "a<b");
    s3_xbuf_elem(&b, "Empty", NULL);
    cr_assert_str_eq(b.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                             "<Key>a&lt;b</Key><Empty></Empty>");
    s3_xbuf_fini(&b);
}

Test(xml_error, document_shape)
{
    struct s3_xbuf b;

    s3_xbuf_init(&b);
    s3_xml_error(&b, S3E_NO_SUCH_KEY, NULL, "/bucket/a&b", "4442587FB7D0A2F9");
    cr_assert(!b.oom);
    cr_assert_str_eq(b.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                             "<Error><Code>NoSuchKey</Code>"
                             "<Message>The specified key does not exist.</Message>"
                             "<Resource>/bucket/a&amp;b</Resource>"
                             "<RequestId>4442587FB7D0A2F9</RequestId></Error>");
    s3_xbuf_fini(&b);

    s3_xbuf_init(&b);
    s3_xml_error(&b, S3E_INVALID_ARGUMENT, "Bad <value>", NULL, "r1");
    cr_assert_str_eq(b.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                             "<Error><Code>InvalidArgument</Code>"
                             "<Message>Bad &lt;value&gt;</Message>"
                             "<RequestId>r1</RequestId></Error>");
    s3_xbuf_fini(&b);
}

Test(xml_error, every_error_document_parses)
{
    for (int e = 0; e < S3E_LAST; e++) {
        struct s3_xbuf b;
        XML_Parser p = XML_ParserCreate(NULL);

        s3_xbuf_init(&b);
        s3_xml_error(&b, (enum s3_err)e, NULL, "/b/k", "id");
        cr_assert_eq(XML_Parse(p, b.data, (int)b.len, XML_TRUE), XML_STATUS_OK, "error %d", e);
        XML_ParserFree(p);
        s3_xbuf_fini(&b);
    }
}

/* ---- time ------------------------------------------------------------------------------- */

Test(time, formats)
{
    char buf[32];
    int64_t t = 1255369830LL * SEC + 123456789; /* 2009-10-12T17:50:30.123456789Z */

    s3_time_iso8601(t, buf);
    cr_assert_str_eq(buf, "2009-10-12T17:50:30.123Z");
    s3_time_http(t, buf);
    cr_assert_str_eq(buf, "Mon, 12 Oct 2009 17:50:30 GMT");
    s3_time_iso8601(0, buf);
    cr_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
    s3_time_http(0, buf);
    cr_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    s3_time_iso8601(-1, buf); /* one ns before the epoch */
    cr_assert_str_eq(buf, "1969-12-31T23:59:59.999Z");
    s3_time_http(951782400LL * SEC, buf); /* leap day */
    cr_assert_str_eq(buf, "Tue, 29 Feb 2000 00:00:00 GMT");
}

Test(time, parse_three_formats)
{
    const int64_t want = 784111777LL * SEC; /* Sun, 06 Nov 1994 08:49:37 GMT */

    cr_assert_eq(s3_time_parse_http("Sun, 06 Nov 1994 08:49:37 GMT"), want);
    cr_assert_eq(s3_time_parse_http("Sunday, 06-Nov-94 08:49:37 GMT"), want);
    cr_assert_eq(s3_time_parse_http("Sun Nov  6 08:49:37 1994"), want);
    cr_assert_eq(s3_time_parse_http("Sun Nov 06 08:49:37 1994"), want);
    cr_assert_eq(s3_time_parse_http(" Sun, 06 Nov 1994 08:49:37 GMT "), want);
    cr_assert_eq(s3_time_parse_http("Thursday, 01-Jan-15 00:00:00 GMT"), 1420070400LL * SEC);
    cr_assert_eq(s3_time_parse_http("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
}

Test(time, parse_rejects)
{
    static const char *const bad[] = {
        "",
        "garbage",
        "Sun, 06 Nov 1994 08:49:37",       /* no zone */
        "Sun, 06 Nov 1994 08:49:37 UTC",   /* zone must be GMT */
        "Sun, 06 Nov 1994 08:49:37 GMT x", /* trailing junk */
        "Sun, 6 Nov 1994 08:49:37 GMT",    /* day needs two digits */
        "Sun, 06 Nov 94 08:49:37 GMT",     /* four-digit year */
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT", /* no such day */
        "Sun, 29 Feb 1900 08:49:37 GMT", /* 1900 is not a leap year */
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 GMT",
        "1994-11-06T08:49:37Z",
        "Sun, 06 Nov 9999 08:49:37 GMT", /* beyond int64 nanoseconds */
    };

    cr_assert_eq(s3_time_parse_http(NULL), -1);
    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(bad); i++)
        cr_assert_eq(s3_time_parse_http(bad[i]), -1, "accepted \"%s\"", bad[i]);
}

Test(time, round_trip)
{
    char buf[32];

    /* A spread of instants (whole seconds) including month ends and leap days. */
    for (int64_t t = -86400LL * 365; t < 4102444800LL; t += 86400LL * 17 + 3607) {
        s3_time_http(t * SEC + 999999999, buf);
        cr_assert_eq(s3_time_parse_http(buf), t * SEC, "%s", buf);
    }
}

Test(time, iso8601_matches_gmtime)
{
    char buf[32], want[32];

    for (time_t t = 0; t < 4102444800; t += 86400 * 29 + 12345) {
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
        s3_time_iso8601((int64_t)t * SEC, buf);
        cr_assert_str_eq(buf, want);
    }
}

/* ---- error table ------------------------------------------------------------------------ */

Test(s3err, table_complete)
{
    for (int e = 0; e < S3E_LAST; e++) {
        const struct s3_err_info *i = s3_err_info((enum s3_err)e);

        cr_assert_not_null(i, "error %d", e);
        cr_assert_not_null(i->code, "error %d has no code", e);
        cr_assert_gt(strlen(i->code), 0, "error %d", e);
        cr_assert_not_null(i->message, "error %d has no message", e);
        cr_assert_gt(strlen(i->message), 0, "error %d", e);
        if (e == S3E_OK)
            cr_assert_eq(i->status, 200);
        else
            cr_assert(i->status >= 300 && i->status <= 599, "error %d: %d", e, i->status);
    }
}

/* Two rows share a code only where S3 itself has one code for both. */
Test(s3err, codes_distinct)
{
    for (int a = 0; a < S3E_LAST; a++) {
        for (int b = a + 1; b < S3E_LAST; b++) {
            bool shared = (a == S3E_INVALID_ARGUMENT && b == S3E_TOO_MANY_PARTS) ||
                          (a == S3E_URI_TOO_LONG && b == S3E_INVALID_URI);

            if (shared)
                cr_assert_str_eq(s3_err_info(a)->code, s3_err_info(b)->code);
            else
                cr_assert_str_neq(s3_err_info(a)->code, s3_err_info(b)->code, "%d and %d", a, b);
        }
    }
}

Test(s3err, known_rows)
{
    static const struct {
        enum s3_err e;
        const char *code;
        int status;
    } rows[] = {
        {S3E_ACCESS_DENIED, "AccessDenied", 403},
        {S3E_BUCKET_NOT_EMPTY, "BucketNotEmpty", 409},
        {S3E_INTERNAL_ERROR, "InternalError", 500},
        {S3E_INVALID_PART_ORDER, "InvalidPartOrder", 400},
        {S3E_INVALID_RANGE, "InvalidRange", 416},
        {S3E_KEY_TOO_LONG, "KeyTooLongError", 400},
        {S3E_MALFORMED_XML, "MalformedXML", 400},
        {S3E_METHOD_NOT_ALLOWED, "MethodNotAllowed", 405},
        {S3E_MISSING_CONTENT_LENGTH, "MissingContentLength", 411},
        {S3E_NO_SUCH_BUCKET, "NoSuchBucket", 404},
        {S3E_NO_SUCH_KEY, "NoSuchKey", 404},
        {S3E_NO_SUCH_UPLOAD, "NoSuchUpload", 404},
        {S3E_NOT_IMPLEMENTED, "NotImplemented", 501},
        {S3E_PRECONDITION_FAILED, "PreconditionFailed", 412},
        {S3E_NOT_MODIFIED, "NotModified", 304},
        {S3E_REQUEST_TIME_TOO_SKEWED, "RequestTimeTooSkewed", 403},
        {S3E_SERVICE_UNAVAILABLE, "ServiceUnavailable", 503},
        {S3E_INSUFFICIENT_STORAGE, "InsufficientStorage", 507},
        {S3E_SIGNATURE_DOES_NOT_MATCH, "SignatureDoesNotMatch", 403},
        {S3E_SLOW_DOWN, "SlowDown", 503},
        {S3E_TOO_MANY_PARTS, "InvalidArgument", 400},
        {S3E_URI_TOO_LONG, "InvalidURI", 414},
        {S3E_INVALID_URI, "InvalidURI", 400},
        {S3E_CONFLICT, "OperationAborted", 409},
        {S3E_PATH_CONFLICT, "InvalidObjectState", 409},
        {S3E_XAMZ_CONTENT_SHA256_MISMATCH, "XAmzContentSHA256Mismatch", 400},
        {S3E_INVALID_CHUNK_SIZE, "InvalidChunkSizeError", 403},
    };

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(rows); i++) {
        cr_assert_str_eq(s3_err_info(rows[i].e)->code, rows[i].code);
        cr_assert_eq(s3_err_info(rows[i].e)->status, rows[i].status, "%s", rows[i].code);
    }
    cr_assert_str_eq(s3_err_info(S3E_NO_SUCH_KEY)->message, "The specified key does not exist.");
    cr_assert(strstr(s3_err_info(S3E_PATH_CONFLICT)->message, "directory") != NULL);
}

Test(s3err, out_of_range_is_internal_error)
{
    cr_assert_eq(s3_err_info(S3E_LAST), s3_err_info(S3E_INTERNAL_ERROR));
    cr_assert_eq(s3_err_info((enum s3_err)1000), s3_err_info(S3E_INTERNAL_ERROR));
    cr_assert_eq(s3_err_info((enum s3_err) - 1), s3_err_info(S3E_INTERNAL_ERROR));
}

Test(s3err, from_cairn)
{
    cr_assert_eq(s3_err_from_cairn(CAIRN_OK), S3E_OK);
    cr_assert_eq(s3_err_from_cairn(CAIRN_ENOENT), S3E_NO_SUCH_KEY);
    cr_assert_eq(s3_err_from_cairn(CAIRN_ENOSPC), S3E_INSUFFICIENT_STORAGE);
    cr_assert_eq(s3_err_from_cairn(CAIRN_EDEGRADED), S3E_SERVICE_UNAVAILABLE);
    cr_assert_eq(s3_err_from_cairn(CAIRN_ETIMEDOUT), S3E_SERVICE_UNAVAILABLE);
    cr_assert_eq(s3_err_from_cairn(CAIRN_EUNREACH), S3E_SERVICE_UNAVAILABLE);
    cr_assert_eq(s3_err_from_cairn(CAIRN_ECONFLICT), S3E_CONFLICT);
    cr_assert_eq(s3_err_from_cairn(CAIRN_ETOOBIG), S3E_ENTITY_TOO_LARGE);
    cr_assert_eq(s3_err_from_cairn(CAIRN_EINVAL), S3E_INVALID_ARGUMENT);
    cr_assert_eq(s3_err_from_cairn(CAIRN_EIO), S3E_INTERNAL_ERROR);
    cr_assert_eq(s3_err_from_cairn(CAIRN_ENOMEM), S3E_INTERNAL_ERROR);
    cr_assert_eq(s3_err_from_cairn(CAIRN_ECRC), S3E_INTERNAL_ERROR);
    cr_assert_eq(s3_err_from_cairn(CAIRN_E_LAST), S3E_INTERNAL_ERROR);
    cr_assert_eq(s3_err_from_cairn(12345), S3E_INTERNAL_ERROR);
    /* Every project error maps to a real row. */
    for (int e = CAIRN_OK; e > CAIRN_E_LAST; e--) {
        enum s3_err s = s3_err_from_cairn(e);

        cr_assert((int)s >= 0 && s < S3E_LAST);
        cr_assert_eq(s == S3E_OK, e == CAIRN_OK);
    }
}
