/*
 * test_exports.c - NFS export configuration (cnode/exports.h): parsing, refusing bad specs,
 * and matching client addresses, which decides who may mount and how they are squashed.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "cnode/nfs/exports.h"

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &sin->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &sin6->sin6_addr);
    return ss;
}

Test(exports, default_is_root_squashed_rw_for_all)
{
    struct nfs_exports e;
    char err[128];
    const struct nfs_rule *r;
    struct sockaddr_storage a = v4("10.1.2.3");

    cr_assert_eq(nfs_exports_parse(NULL, &e, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(e.n, 1);
    cr_assert_str_eq(e.v[0].path, "/");
    r = nfs_export_match(&e.v[0], &a);
    cr_assert_not_null(r);
    cr_assert(!r->ro);
    cr_assert_eq(r->squash, NFS_SQUASH_ROOT);
    cr_assert_eq(r->anonuid, NFS_ANON_ID);
    nfs_exports_fini(&e);
}

Test(exports, rules_and_first_match)
{
    struct nfs_exports e;
    char err[128];
    const struct nfs_export *x;
    struct sockaddr_storage a = v4("10.0.5.9"), b = v4("192.168.1.1"), c = v4("127.0.0.1"),
                            m = v6("::ffff:10.0.0.1"), s6 = v6("fd00::5");

    cr_assert_eq(nfs_exports_parse("/ 127.0.0.1(rw,no_root_squash) 10.0.0.0/8(ro,anonuid=7) "
                                   "fd00::/8(rw,all_squash) ; /data/sets *(ro) ;",
                                   &e, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(e.n, 2);
    x = nfs_export_by_path(&e, "/", 1);
    cr_assert_not_null(x);
    cr_assert_eq(nfs_export_match(x, &c)->squash, NFS_SQUASH_NONE);
    cr_assert(nfs_export_match(x, &a)->ro);
    cr_assert_eq(nfs_export_match(x, &a)->anonuid, 7);
    cr_assert_null(nfs_export_match(x, &b), "an address no rule names has no access");
    cr_assert_not_null(nfs_export_match(x, &m), "v4-mapped v6 addresses match v4 rules");
    cr_assert_eq(nfs_export_match(x, &s6)->squash, NFS_SQUASH_ALL);
    cr_assert_not_null(nfs_export_by_path(&e, "/data/sets/", 11), "trailing slash ignored");
    cr_assert_not_null(nfs_export_by_path(&e, "", 0), "\"\" means the root");
    cr_assert_null(nfs_export_by_path(&e, "/data", 5));
    cr_assert_eq(nfs_export_by_id(&e, x->id), x);
    cr_assert_neq(e.v[0].id, e.v[1].id);
    nfs_exports_fini(&e);
}

Test(exports, ids_are_stable)
{
    struct nfs_exports a, b;
    char err[128];

    cr_assert_eq(nfs_exports_parse("/x *(rw) ; /y *(ro)", &a, err, sizeof(err)), 0);
    cr_assert_eq(nfs_exports_parse("/y *(rw) ; /x 1.2.3.4(ro)", &b, err, sizeof(err)), 0);
    cr_assert_eq(nfs_export_by_path(&a, "/x", 2)->id, nfs_export_by_path(&b, "/x", 2)->id,
                 "an export's id depends on its path only");
    nfs_exports_fini(&a);
    nfs_exports_fini(&b);
}

Test(exports, bad_specs_are_refused)
{
    const char *bad[] = {
        "",                      /* nothing */
        "relative *(rw)",        /* not absolute */
        "/x",                    /* no clients */
        "/x *(rw",               /* unclosed */
        "/x *(rw,bogus)",        /* unknown option */
        "/x host.example(rw)",   /* names are not resolved */
        "/x 10.0.0.0/33(rw)",    /* prefix too long */
        "/x 10.0.0.0/(rw)",      /* empty prefix */
        "/x *(anonuid=abc)",     /* not a number */
        "/x/../y *(rw)",         /* not normalised */
        "/x *(rw) ; /x *(ro)",   /* twice */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct nfs_exports e;
        char err[128] = "";

        cr_assert_neq(nfs_exports_parse(bad[i], &e, err, sizeof(err)), 0, "accepted '%s'",
                      bad[i]);
        cr_assert_neq(err[0], 0, "no message for '%s'", bad[i]);
    }
}
