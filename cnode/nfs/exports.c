/*
 * exports.c - NFS export configuration (see exports.h).
 */
#include "cnode/nfs/exports.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return CAIRN_EINVAL;
}

/* FNV-1a of the path: stable across C-nodes and releases. */
static uint32_t path_id(const char *p)
{
    uint32_t h = 2166136261u;

    for (; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h ? h : 1;
}

static int parse_client(const char *c, size_t n, struct nfs_rule *r, char *err, size_t errlen)
{
    char buf[64];
    char *slash;

    if (n == 0 || n >= sizeof(buf))
        return fail(err, errlen, "bad client '%.*s'", (int)n, c);
    memcpy(buf, c, n);
    buf[n] = 0;
    snprintf(r->text, sizeof(r->text), "%s", buf);
    if (strcmp(buf, "*") == 0) {
        r->any = true;
        return 0;
    }
    slash = strchr(buf, '/');
    if (slash)
        *slash = 0;
    if (inet_pton(AF_INET, buf, r->addr) == 1) {
        r->family = AF_INET;
        r->prefix = 32;
    } else if (inet_pton(AF_INET6, buf, r->addr) == 1) {
        r->family = AF_INET6;
        r->prefix = 128;
    } else {
        return fail(err, errlen, "bad client address '%s' (host names are not resolved)", buf);
    }
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);

        if (*end || end == slash + 1 || p < 0 || p > (long)r->prefix)
            return fail(err, errlen, "bad prefix length in '%s'", r->text);
        r->prefix = (unsigned)p;
    }
    return 0;
}

static int parse_opts(const char *o, size_t n, struct nfs_rule *r, char *err, size_t errlen)
{
    while (n) {
        const char *comma = memchr(o, ',', n);
        size_t l = comma ? (size_t)(comma - o) : n;
        unsigned long v;
        char *end;

        if (l == 2 && !memcmp(o, "rw", 2))
            r->ro = false;
        else if (l == 2 && !memcmp(o, "ro", 2))
            r->ro = true;
        else if (l == 11 && !memcmp(o, "root_squash", 11))
            r->squash = NFS_SQUASH_ROOT;
        else if (l == 14 && !memcmp(o, "no_root_squash", 14))
            r->squash = NFS_SQUASH_NONE;
        else if (l == 10 && !memcmp(o, "all_squash", 10))
            r->squash = NFS_SQUASH_ALL;
        else if (l > 8 && (!memcmp(o, "anonuid=", 8) || !memcmp(o, "anongid=", 8))) {
            v = strtoul(o + 8, &end, 10);
            if (end != o + l || v > UINT32_MAX)
                return fail(err, errlen, "bad option '%.*s'", (int)l, o);
            if (o[4] == 'u')
                r->anonuid = (uint32_t)v;
            else
                r->anongid = (uint32_t)v;
        } else if (l) {
            return fail(err, errlen, "unknown export option '%.*s'", (int)l, o);
        }
        o += l + (comma ? 1 : 0);
        n -= l + (comma ? 1 : 0);
    }
    return 0;
}

/* One "PATH CLIENT(OPTS) ..." entry of n bytes. */
static int parse_export(const char *s, size_t n, struct nfs_export *x, char *err, size_t errlen)
{
    const char *end = s + n;
    size_t pl;

    while (s < end && isspace((unsigned char)*s))
        s++;
    pl = 0;
    while (s + pl < end && !isspace((unsigned char)s[pl]))
        pl++;
    if (pl == 0 || s[0] != '/' || pl >= sizeof(x->path))
        return fail(err, errlen, "an export must start with an absolute path");
    memcpy(x->path, s, pl);
    while (pl > 1 && x->path[pl - 1] == '/')
        pl--;
    x->path[pl] = 0;
    if (strstr(x->path, "//") || strstr(x->path, "/./") || strstr(x->path, "/../"))
        return fail(err, errlen, "export path '%s' is not normalised", x->path);
    x->id = path_id(x->path);
    s += strcspn(s, " \t");
    while (s < end) {
        struct nfs_rule *r;
        const char *c, *paren, *close;

        while (s < end && isspace((unsigned char)*s))
            s++;
        if (s >= end)
            break;
        if (x->nrules >= NFS_MAX_RULES)
            return fail(err, errlen, "too many clients for export '%s'", x->path);
        r = &x->rules[x->nrules];
        memset(r, 0, sizeof(*r));
        r->anonuid = r->anongid = NFS_ANON_ID;
        c = s;
        while (s < end && !isspace((unsigned char)*s) && *s != '(')
            s++;
        paren = s;
        if (parse_client(c, (size_t)(paren - c), r, err, errlen))
            return CAIRN_EINVAL;
        if (s < end && *s == '(') {
            close = memchr(s, ')', (size_t)(end - s));
            if (!close)
                return fail(err, errlen, "unclosed '(' in export '%s'", x->path);
            if (parse_opts(s + 1, (size_t)(close - s - 1), r, err, errlen))
                return CAIRN_EINVAL;
            s = close + 1;
        }
        x->nrules++;
    }
    if (x->nrules == 0)
        return fail(err, errlen, "export '%s' names no clients", x->path);
    return 0;
}

int nfs_exports_parse(const char *spec, struct nfs_exports *out, char *err, size_t errlen)
{
    const char *s = spec ? spec : NFS_DEFAULT_EXPORTS;

    memset(out, 0, sizeof(*out));
    while (*s) {
        size_t n = strcspn(s, ";");
        bool blank = true;

        for (size_t i = 0; i < n; i++)
            blank = blank && isspace((unsigned char)s[i]);
        if (!blank) {
            struct nfs_export *v;

            if (out->n >= NFS_MAX_EXPORTS) {
                nfs_exports_fini(out);
                return fail(err, errlen, "more than %u exports", NFS_MAX_EXPORTS);
            }
            v = realloc(out->v, (out->n + 1) * sizeof(*v));
            if (!v) {
                nfs_exports_fini(out);
                return fail(err, errlen, "out of memory");
            }
            out->v = v;
            memset(&v[out->n], 0, sizeof(v[out->n]));
            if (parse_export(s, n, &v[out->n], err, errlen)) {
                nfs_exports_fini(out);
                return CAIRN_EINVAL;
            }
            for (unsigned i = 0; i < out->n; i++)
                if (v[i].id == v[out->n].id) {
                    int rc = fail(err, errlen, "export '%s' listed twice (or its id collides)",
                                  v[out->n].path);

                    nfs_exports_fini(out);
                    return rc;
                }
            out->n++;
        }
        s += n + (s[n] == ';');
    }
    if (out->n == 0)
        return fail(err, errlen, "no exports");
    return 0;
}

void nfs_exports_fini(struct nfs_exports *e)
{
    free(e->v);
    e->v = NULL;
    e->n = 0;
}

const struct nfs_export *nfs_export_by_path(const struct nfs_exports *e, const char *path,
                                            size_t len)
{
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 0) { /* some clients ask for "" when they mean the root */
        path = "/";
        len = 1;
    }
    for (unsigned i = 0; i < e->n; i++)
        if (strlen(e->v[i].path) == len && !memcmp(e->v[i].path, path, len))
            return &e->v[i];
    return NULL;
}

const struct nfs_export *nfs_export_by_id(const struct nfs_exports *e, uint32_t id)
{
    for (unsigned i = 0; i < e->n; i++)
        if (e->v[i].id == id)
            return &e->v[i];
    return NULL;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;

    if (memcmp(a, b, full))
        return false;
    return !rest || ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

const struct nfs_rule *nfs_export_match(const struct nfs_export *x,
                                        const struct sockaddr_storage *peer)
{
    uint8_t v4[4], v6[16];
    bool has4 = false, has6 = false;

    if (peer->ss_family == AF_INET) {
        memcpy(v4, &((const struct sockaddr_in *)peer)->sin_addr, 4);
        has4 = true;
    } else if (peer->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)peer)->sin6_addr;

        memcpy(v6, a, 16);
        has6 = true;
        if (IN6_IS_ADDR_V4MAPPED(a)) { /* ::ffff:a.b.c.d matches IPv4 rules */
            memcpy(v4, v6 + 12, 4);
            has4 = true;
        }
    }
    for (unsigned i = 0; i < x->nrules; i++) {
        const struct nfs_rule *r = &x->rules[i];

        if (r->any || (r->family == AF_INET && has4 && prefix_match(v4, r->addr, r->prefix)) ||
            (r->family == AF_INET6 && has6 && prefix_match(v6, r->addr, r->prefix)))
            return r;
    }
    return NULL;
}
