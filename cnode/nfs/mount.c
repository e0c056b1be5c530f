/*
 * mount.c - the MOUNT v3 program (RFC 1813 appendix I; see call.h): MNT of an export's path or
 * of any directory below it, EXPORT of what the caller may mount; no mount list is kept (DUMP
 * answers empty), so a C-node holds nothing a client's mount depends on.
 */
#include <string.h>

#include "cnode/nfs/call.h"
#include "common/cairn.h"
#include "common/log.h"

enum { MNT3_OK = 0, MNT3ERR_NOENT = 2, MNT3ERR_ACCES = 13, MNT3ERR_NOTDIR = 20,
       MNT3ERR_INVAL = 22, MNT3ERR_NAMETOOLONG = 63, MNT3ERR_SERVERFAULT = 10006 };

/* MNT of an export's path or of any directory below it (as "/bucket/dataset"): the handle
 * belongs to the longest export that holds the path. */
static void m_mnt(struct nq *q)
{
    uint32_t len;
    const uint8_t *p = xdr_get_var(&q->d, NFS_EXPORT_PATH_MAX - 1, &len);
    const struct nfs_export *x = NULL;
    char path[NFS_EXPORT_PATH_MAX];
    size_t n = 0;
    uint64_t ino;
    int rc;

    ARGS_OK(q);
    /* Normalise: one '/' between names, none at the end; "." and ".." refused. */
    for (uint32_t i = 0; i < len; i++) {
        if (p[i] == '/' && n && path[n - 1] == '/')
            continue;
        if (p[i] == 0) {
            xdr_put_u32(&q->e, MNT3ERR_INVAL);
            return;
        }
        path[n++] = (char)p[i];
    }
    if (n == 0 || path[0] != '/') {
        memmove(path + 1, path, n);
        path[0] = '/';
        n++;
    }
    while (n > 1 && path[n - 1] == '/')
        n--;
    path[n] = 0;
    if (strstr(path, "/./") || strstr(path, "/../") || (n >= 2 && !strcmp(path + n - 2, "/.")) ||
        (n >= 3 && !strcmp(path + n - 3, "/.."))) {
        xdr_put_u32(&q->e, MNT3ERR_INVAL);
        return;
    }
    for (size_t l = n; l > 0 && !x; l--) {
        if (l == n || path[l] == '/' || l == 1)
            x = nfs_export_by_path(&q->app->exports, path, l);
    }
    if (!x) {
        xdr_put_u32(&q->e, MNT3ERR_NOENT);
        return;
    }
    if (!nfs_export_match(x, rpcsrv_peer(q->call))) {
        log_info(NFS_TAG, "mount of %s refused for %s", path, rpcsrv_peer_str(q->call));
        xdr_put_u32(&q->e, MNT3ERR_ACCES);
        return;
    }
    rc = fs_path_dir(q->fs, path, &ino);
    if (rc) {
        xdr_put_u32(&q->e, rc == CAIRN_ENOENT ? MNT3ERR_NOENT : MNT3ERR_SERVERFAULT);
        return;
    }
    q->x = x;
    xdr_put_u32(&q->e, MNT3_OK);
    nfs_put_fh(q, ino);
    xdr_put_u32(&q->e, 1);
    xdr_put_u32(&q->e, RPC_AUTH_SYS);
}

/* EXPORT lists only what the caller may mount: clients such as libnfs mount every export
 * nested under the one asked for, and one refused there fails the whole mount. */
static void m_export(struct nq *q)
{
    for (unsigned i = 0; i < q->app->exports.n; i++) {
        const struct nfs_export *x = &q->app->exports.v[i];

        if (!nfs_export_match(x, rpcsrv_peer(q->call)))
            continue;
        xdr_put_bool(&q->e, true);
        xdr_put_var(&q->e, x->path, (uint32_t)strlen(x->path));
        for (unsigned j = 0; j < x->nrules; j++) {
            xdr_put_bool(&q->e, true);
            xdr_put_var(&q->e, x->rules[j].text, (uint32_t)strlen(x->rules[j].text));
        }
        xdr_put_bool(&q->e, false);
    }
    xdr_put_bool(&q->e, false);
}

bool nfs_mount_proc(struct nq *q)
{
    switch (q->c.proc) {
    case 0: return true;                             /* NULL */
    case 1: m_mnt(q); return true;                   /* MNT */
    case 2: xdr_put_bool(&q->e, false); return true; /* DUMP: no mount list is kept */
    case 3:                                          /* UMNT */
        xdr_get_var(&q->d, 1024, &(uint32_t){0});
        q->garbage = !xdr_dec_ok(&q->d);
        return true;
    case 4: return true;                             /* UMNTALL */
    case 5: m_export(q); return true;                /* EXPORT */
    default: return false;
    }
}
