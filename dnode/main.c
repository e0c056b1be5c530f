/*
 * main.c - the D-node daemon: serves fragments and metadata shards over libfabric.
 *
 * One thread runs one epoll loop over three sources: the transport's completion fd,
 * the fragment store's io_uring eventfd, and a signalfd for SIGTERM/SIGINT.  Fragment
 * requests are asynchronous end to end: a FRAG_PUT's payload sits 4 KiB-aligned in the
 * transport's receive buffer and goes to the device from there (O_DIRECT, no copy); the
 * reply is sent from the store's completion callback, i.e. only once the write is durable.
 * A FRAG_GET reads header block + payload into the same receive buffer and replies from it.
 *
 * Metadata (KV) requests run synchronously on LMDB inside the loop.  Writes are group
 * committed: the puts and deletes that one transport progress round delivers are queued, and
 * after the round they are applied in arrival order in one LMDB transaction whose commit (one
 * fdatasync) makes them all durable; only then are they answered.  While a commit syncs, the
 * next requests gather in the transport's queue and form the next batch, so the number of
 * syncs per second stays about the same as load grows while the writes per sync grow with it.
 * Reads are not held back behind queued writes: they see committed state, which is correct
 * because a write not yet answered is concurrent with any read (its writer has not been told
 * it happened).  The commit still blocks fragment traffic for the length of an fdatasync;
 * moving commits to a worker thread is future work.
 *
 * Usage: cairn-dnode --listen HOST:PORT --dev PATH [--dev-size SIZE] --meta DIR
 *                    [--provider P] [--max-payload BYTES] [--rx-depth N]
 *                    [--ready-file PATH] [--log-level L]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/cairn.h"
#include "common/log.h"
#include "dnode/kv.h"
#include "dnode/store.h"
#include "transport/tp.h"

#define TAG "dnode"

/* Writes queued for the next group commit; a full queue is committed at once. */
#define KV_BATCH_MAX 256

struct dnode {
    struct tp_ctx *tp;
    struct dn_store *store;
    struct dn_kv *kv;
    uint32_t max_payload;
    /* The queued writes: kv_ops[i] borrows key and value from kv_reqs[i], which stays ours
     * until it is answered in kv_commit(). */
    struct dn_kv_op kv_ops[KV_BATCH_MAX];
    struct tp_req *kv_reqs[KV_BATCH_MAX];
    size_t kv_queued;
    uint64_t kv_writes, kv_commits; /* totals, logged at exit */
};

static void reply_status(struct tp_req *req, int status)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;

    resp.status = status;
    tp_reply(req, &resp, NULL, 0, NULL, NULL);
}

static int fid_from(const Cairn__Request *h, struct dn_fid *fid)
{
    if (!h->frag)
        return CAIRN_EPROTO;
    fid->stripe = h->frag->stripe;
    fid->gen = h->frag->gen;
    fid->index = h->frag->index;
    return 0;
}

/* ---- fragments ---- */

static void frag_put_done(void *arg, int status, uint32_t len, uint32_t crc)
{
    (void)len;
    (void)crc;
    reply_status(arg, status);
}

static void frag_get_done(void *arg, int status, uint32_t len, uint32_t crc)
{
    struct tp_req *req = arg;
    Cairn__Response resp = CAIRN__RESPONSE__INIT;

    resp.status = status;
    if (status) {
        tp_reply(req, &resp, NULL, 0, NULL, NULL);
        return;
    }
    resp.crc = crc;
    /* The payload was read into the request buffer right after its header block. */
    tp_reply(req, &resp, tp_req_payload(req), len, NULL, NULL);
}

static void frag_del_done(void *arg, int status, uint32_t len, uint32_t crc)
{
    (void)len;
    (void)crc;
    reply_status(arg, status);
}

static void handle_frag(struct dnode *dn, struct tp_req *req, const Cairn__Request *h)
{
    struct dn_fid fid;
    int rc = fid_from(h, &fid);

    if (rc) {
        reply_status(req, rc);
        return;
    }
    switch (h->op) {
    case CAIRN__OP__OP_FRAG_PUT:
        if (h->payload_len == 0 || h->payload_len > DN_MAX_FRAG) {
            reply_status(req, CAIRN_EINVAL);
            return;
        }
        rc = dn_store_put(dn->store, &fid, tp_req_buf(req), h->payload_len, h->crc,
                          frag_put_done, req);
        break;
    case CAIRN__OP__OP_FRAG_GET:
        rc = dn_store_get(dn->store, &fid, tp_req_buf(req), tp_req_buf_len(req), frag_get_done,
                          req);
        break;
    default:
        rc = dn_store_del(dn->store, &fid, frag_del_done, req);
        break;
    }
    if (rc) /* rejected before submission: the callback will not run */
        reply_status(req, rc);
}

/* ---- metadata shards ---- */

static void handle_kv_get(struct dnode *dn, struct tp_req *req, const Cairn__Request *h)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;
    void *val = NULL;
    size_t len = 0;
    uint64_t ver = 0;
    int rc;

    rc = dn_kv_get(dn->kv, h->shard, h->key.data, h->key.len, &val, &len, &ver);
    if (!rc && len > dn->max_payload)
        rc = CAIRN_ETOOBIG;
    resp.status = rc;
    resp.version = ver;
    if (rc || len == 0) {
        free(val);
        tp_reply(req, &resp, NULL, 0, NULL, NULL);
        return;
    }
    /* Metadata values are small; one copy into the reply buffer keeps ownership simple. */
    memcpy(tp_req_payload(req), val, len);
    free(val);
    tp_reply(req, &resp, tp_req_payload(req), (uint32_t)len, NULL, NULL);
}

/* Commit the queued writes as one batch, then answer each with its own result. */
static void kv_commit(struct dnode *dn)
{
    size_t n = dn->kv_queued;

    if (n == 0)
        return;
    dn_kv_apply(dn->kv, dn->kv_ops, n);
    dn->kv_queued = 0;
    dn->kv_writes += n;
    dn->kv_commits++;
    for (size_t i = 0; i < n; i++) {
        const struct dn_kv_op *op = &dn->kv_ops[i];
        Cairn__Response resp = CAIRN__RESPONSE__INIT;

        resp.status = op->status;
        if (op->kind == DN_KV_PUT)
            resp.version = op->status ? op->cur_version : op->new_version;
        else
            resp.version = op->cur_version;
        tp_reply(dn->kv_reqs[i], &resp, NULL, 0, NULL, NULL);
    }
}

/* Queue a KV_PUT or KV_DEL for the group commit after this progress round. */
static void queue_kv_write(struct dnode *dn, struct tp_req *req, const Cairn__Request *h)
{
    struct dn_kv_op *op = &dn->kv_ops[dn->kv_queued];

    memset(op, 0, sizeof(*op));
    op->shard = h->shard;
    op->key = h->key.data;
    op->key_len = h->key.len;
    op->expect = h->expect_version;
    if (h->op == CAIRN__OP__OP_KV_PUT) {
        op->kind = DN_KV_PUT;
        op->val = tp_req_payload(req);
        op->val_len = h->payload_len;
        op->new_version = h->new_version;
    } else {
        op->kind = DN_KV_DEL;
    }
    dn->kv_reqs[dn->kv_queued++] = req;
    if (dn->kv_queued == KV_BATCH_MAX)
        kv_commit(dn);
}

static void handle_kv_scan(struct dnode *dn, struct tp_req *req, const Cairn__Request *h)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;
    Cairn__KvScanResult res = CAIRN__KV_SCAN_RESULT__INIT;
    Cairn__KvEntry *ents = NULL, **ptrs = NULL;
    struct dn_kv_scan scan = {0};
    size_t n, cap;
    int rc;

    rc = dn_kv_scan(dn->kv, h->shard, h->key.data, h->key.len, h->end_key.data, h->end_key.len,
                    h->limit, &scan);
    if (rc)
        goto out;
    ents = calloc(scan.count ? scan.count : 1, sizeof(*ents));
    ptrs = calloc(scan.count ? scan.count : 1, sizeof(*ptrs));
    if (!ents || !ptrs) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < scan.count; i++) {
        cairn__kv_entry__init(&ents[i]);
        ents[i].key.data = (uint8_t *)scan.entries[i].key;
        ents[i].key.len = scan.entries[i].key_len;
        ents[i].value.data = (uint8_t *)scan.entries[i].val;
        ents[i].value.len = scan.entries[i].val_len;
        ents[i].version = scan.entries[i].version;
        ptrs[i] = &ents[i];
    }
    res.entries = ptrs;
    res.more = scan.more;
    /* The result must fit one reply payload and the buffer the caller posted for it: drop
     * entries from the tail and say "more". */
    cap = CAIRN_MIN(dn->max_payload, h->reply_cap);
    for (n = scan.count; n > 0; n--) {
        res.n_entries = n;
        if (cairn__kv_scan_result__get_packed_size(&res) <= cap)
            break;
        res.more = 1;
    }
    res.n_entries = n;
    n = cairn__kv_scan_result__pack(&res, tp_req_payload(req));
    resp.status = 0;
    free(ents);
    free(ptrs);
    dn_kv_scan_free(&scan);
    tp_reply(req, &resp, tp_req_payload(req), (uint32_t)n, NULL, NULL);
    return;
out:
    free(ents);
    free(ptrs);
    dn_kv_scan_free(&scan);
    reply_status(req, rc);
}

static void handle_ping(struct dnode *dn, struct tp_req *req)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;
    struct dn_store_stats st;

    dn_store_stats(dn->store, &st);
    resp.dev_size = st.dev_size;
    resp.dev_used = st.used;
    resp.frag_count = st.frag_count;
    tp_reply(req, &resp, NULL, 0, NULL, NULL);
}

static void serve(void *arg, struct tp_req *req)
{
    struct dnode *dn = arg;
    const Cairn__Request *h = tp_req_hdr(req);

    switch (h->op) {
    case CAIRN__OP__OP_PING:
        handle_ping(dn, req);
        break;
    case CAIRN__OP__OP_FRAG_PUT:
    case CAIRN__OP__OP_FRAG_GET:
    case CAIRN__OP__OP_FRAG_DEL:
        handle_frag(dn, req, h);
        break;
    case CAIRN__OP__OP_KV_GET:
        handle_kv_get(dn, req, h);
        break;
    case CAIRN__OP__OP_KV_PUT:
    case CAIRN__OP__OP_KV_DEL:
        queue_kv_write(dn, req, h);
        break;
    case CAIRN__OP__OP_KV_SCAN:
        handle_kv_scan(dn, req, h);
        break;
    default:
        reply_status(req, CAIRN_ENOTSUP);
        break;
    }
}

/* ---- startup ---- */

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    case 't': case 'T': v <<= 40; end++; break;
    default: break;
    }
    if (end == s || *end)
        return CAIRN_EINVAL;
    *out = v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: cairn-dnode --listen HOST:PORT --dev PATH [--dev-size SIZE] --meta DIR\n"
            "                   [--provider P] [--max-payload BYTES] [--rx-depth N]\n"
            "                   [--ready-file PATH] [--log-level error|warn|info|debug]\n");
}

static int write_ready(const char *path, const char *addr)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return CAIRN_EIO;
    fprintf(f, "%s %d\n", addr, (int)getpid());
    if (fclose(f) || rename(tmp, path))
        return CAIRN_EIO;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},  {"dev", required_argument, NULL, 'd'},
        {"dev-size", required_argument, NULL, 's'}, {"meta", required_argument, NULL, 'm'},
        {"provider", required_argument, NULL, 'p'}, {"max-payload", required_argument, NULL, 'P'},
        {"rx-depth", required_argument, NULL, 'r'}, {"ready-file", required_argument, NULL, 'R'},
        {"log-level", required_argument, NULL, 'L'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *listen = NULL, *dev = NULL, *meta = NULL, *ready = NULL;
    struct tp_config tcfg = {0};
    uint64_t dev_size = 0, max_payload = TP_DEFAULT_MAX_PAYLOAD;
    char hostbuf[256], *colon;
    struct dnode dn = {0};
    struct epoll_event ev, evs[8];
    sigset_t mask;
    int epfd = -1, sfd = -1, c, rc = 1;
    bool stop = false;

    cairn_log_set_ident("dnode");
    cairn_log_set_level(getenv("CAIRN_LOG"));
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': listen = optarg; break;
        case 'd': dev = optarg; break;
        case 'm': meta = optarg; break;
        case 'p': tcfg.provider = optarg; break;
        case 'R': ready = optarg; break;
        case 'L': cairn_log_set_level(optarg); break;
        case 'r': tcfg.rx_depth = (uint32_t)atoi(optarg); break;
        case 's':
            if (parse_size(optarg, &dev_size)) {
                usage();
                return 2;
            }
            break;
        case 'P':
            if (parse_size(optarg, &max_payload) || max_payload > TP_MAX_PAYLOAD ||
                max_payload > DN_MAX_FRAG || max_payload % CAIRN_BLOCK) {
                fprintf(stderr, "--max-payload must be a multiple of 4096 up to 16M\n");
                return 2;
            }
            break;
        default:
            usage();
            return 2;
        }
    }
    if (!listen || !dev || !meta || strlen(listen) >= sizeof(hostbuf)) {
        usage();
        return 2;
    }
    strcpy(hostbuf, listen);
    colon = strrchr(hostbuf, ':');
    if (!colon) {
        usage();
        return 2;
    }
    *colon = '\0';
    tcfg.host = hostbuf;
    tcfg.port = colon + 1;
    tcfg.max_payload = (uint32_t)max_payload;
    dn.max_payload = (uint32_t)max_payload;

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((rc = dn_store_open(dev, dev_size, 0, &dn.store))) {
        log_error(TAG, "open device %s: %s", dev, cairn_strerror(rc));
        goto out;
    }
    if ((rc = dn_kv_open(meta, 0, &dn.kv))) {
        log_error(TAG, "open metadata store %s: %s", meta, cairn_strerror(rc));
        goto out;
    }
    if ((rc = tp_ctx_create(&tcfg, &dn.tp))) {
        log_error(TAG, "fabric endpoint on %s: %s", listen, cairn_strerror(rc));
        goto out;
    }
    if ((rc = tp_ctx_serve(dn.tp, serve, &dn))) {
        log_error(TAG, "serve: %s", cairn_strerror(rc));
        goto out;
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (epfd < 0 || sfd < 0) {
        rc = CAIRN_EIO;
        goto out;
    }
    ev.events = EPOLLIN;
    ev.data.u32 = 0;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tp_ctx_fd(dn.tp), &ev);
    ev.data.u32 = 1;
    epoll_ctl(epfd, EPOLL_CTL_ADD, dn_store_event_fd(dn.store), &ev);
    ev.data.u32 = 2;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);

    if (ready && write_ready(ready, tp_ctx_addr(dn.tp))) {
        log_error(TAG, "cannot write %s", ready);
        rc = CAIRN_EIO;
        goto out;
    }
    log_info(TAG, "serving %s on %s (device %s, metadata %s)", tp_ctx_provider(dn.tp),
             tp_ctx_addr(dn.tp), dev, meta);

    while (!stop) {
        int n;

        tp_ctx_progress(dn.tp);
        kv_commit(&dn);
        dn_store_poll(dn.store);
        if (tp_ctx_trywait(dn.tp))
            continue; /* completions are pending: progress again before sleeping */
        n = epoll_wait(epfd, evs, CAIRN_ARRAY_SIZE(evs), tp_ctx_timeout_ms(dn.tp));
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == 1) {
                uint64_t cnt;

                if (read(dn_store_event_fd(dn.store), &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
                    log_debug(TAG, "eventfd read: %s", strerror(errno));
            } else if (evs[i].data.u32 == 2) {
                struct signalfd_siginfo si;

                if (read(sfd, &si, sizeof(si)) == sizeof(si))
                    log_info(TAG, "signal %u: shutting down", si.ssi_signo);
                stop = true;
            }
        }
    }
    kv_commit(&dn);
    log_info(TAG, "%llu metadata writes in %llu commits", (unsigned long long)dn.kv_writes,
             (unsigned long long)dn.kv_commits);
    rc = 0;
out:
    if (dn.store)
        dn_store_drain(dn.store);
    tp_ctx_destroy(dn.tp);
    dn_store_close(dn.store);
    dn_kv_close(dn.kv);
    if (sfd >= 0)
        close(sfd);
    if (epfd >= 0)
        close(epfd);
    return rc ? 1 : 0;
}
