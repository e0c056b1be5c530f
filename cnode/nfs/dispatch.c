/*
 * dispatch.c - the NFS head's entry: an RPC record from the ONC RPC server is decoded, checked
 * against the program and version of the port it came on, and handed to its procedure; the
 * reply goes back in the same call (see nfs3.h and call.h); and the head's setup.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "cnode/nfs/call.h"
#include "common/cairn.h"
#include "common/log.h"

#define NFS_STRIPE_CACHE 32u /* stripes (4 MiB each at 4+2, 1 MiB fragments) */

typedef void (*nfs_proc)(struct nq *q);

static const nfs_proc nfs_procs[22] = {
    NULL,           nfs_p_getattr, nfs_p_setattr,     nfs_p_lookup, nfs_p_access,
    nfs_p_readlink, nfs_p_read,    nfs_p_write,       nfs_p_create, nfs_p_mkdir,
    nfs_p_symlink,  nfs_p_mknod,   nfs_p_remove,      nfs_p_rmdir,  nfs_p_rename,
    nfs_p_link,     nfs_p_readdir, nfs_p_readdirplus, nfs_p_fsstat, nfs_p_fsinfo,
    nfs_p_pathconf, nfs_p_commit,
};

/* ---- what the head counts ---- */

static const char *const stat_procs[NFS_STAT_OTHER + 1] = {
    "NULL",    "GETATTR", "SETATTR",    "LOOKUP",      "ACCESS",     "READLINK",
    "READ",    "WRITE",   "CREATE",     "MKDIR",       "SYMLINK",    "MKNOD",
    "REMOVE",  "RMDIR",   "RENAME",     "LINK",        "READDIR",    "READDIRPLUS",
    "FSSTAT",  "FSINFO",  "PATHCONF",   "COMMIT",      "MOUNT_NULL", "MOUNT_MNT",
    "MOUNT_DUMP", "MOUNT_UMNT", "MOUNT_UMNTALL", "MOUNT_EXPORT", "other"};

static int stats_register(struct metrics *m, struct metrics_ops *st)
{
    const struct metrics_ops_desc d = {
        .prefix = "cairn_nfs", .label = "proc", .values = stat_procs,
        .nvalues = CAIRN_ARRAY_SIZE(stat_procs),
        .help_requests = "NFSv3 and MOUNT calls answered, by procedure.",
        .help_errors =
            "Calls answered with an RPC error or a status other than NFS3_OK (MNT: MNT3_OK).",
        .help_in = "Bytes of calls (RPC records), by procedure.",
        .help_out = "Bytes of replies, by procedure.",
        .help_latency = "Time from a call's decoding to its reply, by procedure."};

    return metrics_ops_register(m, &d, st);
}

static uint32_t be32_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Whether a reply says the call failed.  An accepted reply (rpc_reply_accepted: xid, REPLY,
 * MSG_ACCEPTED, AUTH_NONE verifier of length 0, accept_stat) puts the procedure's status
 * first in its results, at byte 24, for every NFS procedure but NULL and for MNT. */
static bool reply_failed(const uint8_t *buf, size_t len, bool status_first)
{
    if (len < 24 || be32_at(buf + 8) != 0 /* MSG_ACCEPTED */ || be32_at(buf + 20) != RPC_SUCCESS)
        return true;
    return status_first && len >= 28 && be32_at(buf + 24) != 0;
}

static void count(struct nq *q, size_t idx, size_t in, const uint8_t *buf, size_t len,
                  uint64_t t0)
{
    const struct metrics_ops *st = &q->app->stats;
    bool status_first = idx == NFS_STAT_MOUNT + 1 || (idx > 0 && idx < NFS_STAT_MOUNT);

    if (!st->requests)
        return;
    metrics_ops_count(st, idx, !buf || reply_failed(buf, len, status_first), in, len,
                      cairn_now_ns() - t0);
}

static void reply(struct nq *q)
{
    size_t len;
    uint8_t *buf = xdr_enc_take(&q->e, &len);

    if (q->t0)
        count(q, q->stat_idx, q->in_len, buf, len, q->t0);
    if (buf)
        rpcsrv_reply(q->call, buf, len);
    else
        rpcsrv_drop(q->call);
}

static void nfs_handle(void *appv, void *wstate, struct rpcsrv_call *call, unsigned listener,
                       const uint8_t *rec, size_t len)
{
    struct nq q = {.app = appv, .fs = wstate, .call = call, .in_len = len,
                   .stat_idx = NFS_STAT_OTHER};
    uint32_t prog = listener == MOUNT_LISTENER ? MOUNT_PROGRAM : NFS_PROGRAM;
    uint32_t vers = listener == MOUNT_LISTENER ? MOUNT_V3 : NFS_V3;
    bool known;

    xdr_enc_init(&q.e, NFS_REPLY_MAX);
    switch (rpc_decode_call(rec, len, &q.c)) {
    case RPC_DEC_OK: break;
    case RPC_DEC_MISMATCH: rpc_reply_rpc_mismatch(&q.e, q.c.xid); reply(&q); return;
    case RPC_DEC_BADCRED: rpc_reply_auth_error(&q.e, q.c.xid, RPC_AUTH_BADCRED); reply(&q); return;
    case RPC_DEC_TOOWEAK: rpc_reply_auth_error(&q.e, q.c.xid, RPC_AUTH_TOOWEAK); reply(&q); return;
    default:
        xdr_enc_fini(&q.e);
        rpcsrv_drop(call);
        return;
    }
    if (q.c.prog != prog) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_PROG_UNAVAIL, 0, 0);
        reply(&q);
        return;
    }
    if (q.c.vers != vers) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_PROG_MISMATCH, vers, vers);
        reply(&q);
        return;
    }
    if (q.app->stats.requests) { /* a call of ours: counted from here to its reply */
        q.t0 = cairn_now_ns();
        if (listener == MOUNT_LISTENER && q.c.proc < NFS_STAT_OTHER - NFS_STAT_MOUNT)
            q.stat_idx = NFS_STAT_MOUNT + q.c.proc;
        else if (listener != MOUNT_LISTENER && q.c.proc < NFS_STAT_MOUNT)
            q.stat_idx = q.c.proc;
    }
    xdr_dec_init(&q.d, q.c.args, q.c.args_len);
    rpc_reply_accepted(&q.e, q.c.xid, RPC_SUCCESS, 0, 0);
    if (listener == MOUNT_LISTENER) {
        known = nfs_mount_proc(&q);
    } else {
        known = q.c.proc < CAIRN_ARRAY_SIZE(nfs_procs);
        if (known && nfs_procs[q.c.proc])
            nfs_procs[q.c.proc](&q);
    }
    if (!known) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_PROC_UNAVAIL, 0, 0);
    } else if (q.garbage) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_GARBAGE_ARGS, 0, 0);
    } else if (q.redo_status) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_SUCCESS, 0, 0);
        xdr_put_u32(&q.e, q.redo_status);
        xdr_put_bool(&q.e, false); /* no attributes: READ3resfail, READDIR3resfail */
    } else if (!xdr_enc_ok(&q.e)) {
        rpc_reply_accepted(&q.e, q.c.xid, RPC_SYSTEM_ERR, 0, 0);
    }
    reply(&q);
    fs_ctx_tick(q.fs);
}

/* ---- the app the RPC server runs ---- */

static void *nfs_worker_init(void *appv, unsigned idx)
{
    struct nfs_app *app = appv;
    struct fs_ctx *c;
    int rc = fs_ctx_open(app->fs, true, &c);

    if (rc) {
        log_error(NFS_TAG, "worker %u: %s", idx, cairn_strerror(rc));
        return NULL;
    }
    return c;
}

static void nfs_worker_fini(void *appv, void *wstate)
{
    (void)appv;
    fs_ctx_close(wstate);
}

static int nfs_app_init(struct fs *fs, const char *exports, struct metrics *m,
                        struct rpcsrv_app *out)
{
    struct nfs_app *app = calloc(1, sizeof(*app));
    struct fs_ctx *c = NULL;
    uint64_t verf;
    char err[256];
    int rc;

    if (!app)
        return CAIRN_ENOMEM;
    app->fs = fs;
    rc = nfs_exports_parse(exports, &app->exports, err, sizeof(err));
    if (rc) {
        log_error(NFS_TAG, "NFS_EXPORTS: %s", err);
        free(app);
        return rc;
    }
    if (RAND_bytes((unsigned char *)&verf, sizeof(verf)) != 1 || nfs_wb_create(&app->wb) ||
        nfs_cookies_create(&app->cookies)) {
        rc = CAIRN_ENOMEM;
        goto err;
    }
    atomic_store(&app->verf, verf);
    rc = stats_register(m, &app->stats);
    if (rc) {
        log_error(NFS_TAG, "metrics: %s", cairn_strerror(rc));
        goto err;
    }
    rc = fs_ctx_open(fs, false, &c);
    if (!rc)
        rc = fs_secret(c, "nfs-fh", app->fh_key);
    fs_ctx_close(c);
    if (rc) {
        log_error(NFS_TAG, "cannot set up NFS from the metadata: %s", cairn_strerror(rc));
        goto err;
    }
    memset(out, 0, sizeof(*out));
    out->app = app;
    out->worker_init = nfs_worker_init;
    out->worker_fini = nfs_worker_fini;
    out->handle = nfs_handle;
    return 0;
err:
    nfs_exports_fini(&app->exports);
    nfs_wb_destroy(app->wb);
    nfs_cookies_destroy(app->cookies);
    free(app);
    return rc;
}

static void nfs_app_fini(struct rpcsrv_app *out)
{
    struct nfs_app *app = out->app;

    if (!app)
        return;
    nfs_wb_destroy(app->wb);
    nfs_cookies_destroy(app->cookies);
    nfs_exports_fini(&app->exports);
    free(app);
    out->app = NULL;
}

/* ---- the head ---- */

struct nfs_head {
    struct rpcsrv_app app;
    struct rpcsrv *srv;
    bool portmap;
};

static void nfs_head_stop(void *hv)
{
    struct nfs_head *h = hv;

    if (!h)
        return;
    if (h->portmap)
        nfs_portmap(false, 0, 0);
    rpcsrv_stop(h->srv);
    nfs_app_fini(&h->app);
    free(h);
}

static int nfs_head_start(const struct cn_head_args *a, void **out)
{
    struct nfs_head *h = calloc(1, sizeof(*h));
    struct rpcsrv_config cfg = {.host = a->host, .nports = 2, .loops = a->loops,
                                .workers = a->workers};
    int rc;

    if (!h)
        return CAIRN_ENOMEM;
    cfg.ports[NFS_LISTENER] = a->ports[NFS_LISTENER];
    cfg.ports[MOUNT_LISTENER] = a->ports[MOUNT_LISTENER];
    rc = nfs_app_init(a->fs, a->conf(a->conf_arg, "NFS_EXPORTS"), a->metrics, &h->app);
    if (rc) {
        free(h);
        return rc;
    }
    rc = rpcsrv_start(&cfg, &h->app, &h->srv);
    if (rc) {
        log_error(NFS_TAG, "cannot serve NFS on %s:%u/%u: %s", a->host, cfg.ports[NFS_LISTENER],
                  cfg.ports[MOUNT_LISTENER], cairn_strerror(rc));
        nfs_head_stop(h);
        return rc;
    }
    if (a->conf(a->conf_arg, "NFS_PORTMAP")) {
        h->portmap = true;
        nfs_portmap(true, rpcsrv_port(h->srv, NFS_LISTENER), rpcsrv_port(h->srv, MOUNT_LISTENER));
    }
    *out = h;
    return 0;
}

static unsigned nfs_head_port(void *hv, unsigned i)
{
    struct nfs_head *h = hv;

    return rpcsrv_port(h->srv, i);
}

const struct cn_head_ops nfs_head_ops = {
    .name = "NFSv3 and MOUNT",
    .nports = 2,
    .start = nfs_head_start,
    .port = nfs_head_port,
    .stop = nfs_head_stop,
};
