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
 * Metadata requests belong to the shards module (shards.h): every metadata shard is a Raft
 * group of the D-nodes the cluster map places it on.  One loop round: take what the
 * transport delivered (requests, Raft batches), run due timers, then end the round with one
 * commit of the metadata store for every group (shards.h, consensus/cs.h) before any Raft
 * message or metadata answer leaves.  The commit still blocks fragment traffic for the
 * length of an fdatasync; moving commits to a worker thread is future work.
 *
 * Usage: cairn-dnode --listen HOST:PORT --dev PATH [--dev-size SIZE] --meta DIR
 *                    [--meta-size SIZE] [--provider P] [--max-payload BYTES] [--rx-depth N]
 *                    [--election-ms MS] [--heartbeat-ms MS] [--domain NAME]
 *                    [--ready-file PATH] [--metrics HOST:PORT] [--log-level L]
 *
 * --metrics serves GET /metrics (Prometheus text: requests, errors, bytes and latency per op,
 * device use; dnode/stats.h) and GET /healthz on HOST:PORT, from a thread of its own.
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

#include "common/admin.h"
#include "common/cairn.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "dnode/kv.h"
#include "dnode/scrub.h"
#include "dnode/shards.h"
#include "dnode/stats.h"
#include "dnode/store.h"
#include "transport/tp.h"

#define TAG "dnode"

struct dnode {
    struct tp_ctx *tp;
    struct dn_store *store;
    struct dn_kv *kv;
    struct dn_shards *shards;
    struct dn_scrub *scrub;
    uint32_t max_payload;
    const char *domain; /* failure domain, reported in PING */
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

static int frag_put(struct dnode *dn, struct tp_req *req, const Cairn__Request *h,
                    const struct dn_fid *fid)
{
    struct dn_owner owner = {h->object, h->stripe_no};

    return dn_store_put(dn->store, fid, &owner, tp_req_buf(req), h->payload_len, h->crc,
                        frag_put_done, req);
}

/* A put of a fragment the store holds but found corrupt is the repair service bringing it
 * back: the bad copy is deleted first (a fragment is never overwritten in place), then the new
 * one put.  Whatever else the fid holds stays (EEXIST), as for any put. */
struct bad_put {
    struct dnode *dn;
    struct tp_req *req;
};

static void bad_put_deleted(void *arg, int status, uint32_t len, uint32_t crc)
{
    struct bad_put *bp = arg;
    struct dnode *dn = bp->dn;
    struct tp_req *req = bp->req;
    const Cairn__Request *h = tp_req_hdr(req);
    struct dn_fid fid;
    int rc;

    (void)len;
    (void)crc;
    free(bp);
    if (status && status != CAIRN_ENOENT) {
        reply_status(req, status);
        return;
    }
    log_info(TAG, "fragment %llu.%u.%u: corrupt copy replaced by the repair service",
             (unsigned long long)h->frag->stripe, h->frag->gen, h->frag->index);
    fid_from(h, &fid);
    if ((rc = frag_put(dn, req, h, &fid)))
        reply_status(req, rc);
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
        if (dn_store_is_bad(dn->store, &fid)) {
            struct bad_put *bp = malloc(sizeof(*bp));

            if (!bp) {
                rc = CAIRN_ENOMEM;
                break;
            }
            *bp = (struct bad_put){dn, req};
            if ((rc = dn_store_del(dn->store, &fid, bad_put_deleted, bp)))
                free(bp);
            break;
        }
        rc = frag_put(dn, req, h, &fid);
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

/* FRAG_LIST: a page of the store's fragments (dn_store_list), as much as the answer holds. */
#define LIST_MAX 4096u
#define LIST_ENTRY_MAX 64u /* a packed FragInfo is at most this long */

static void handle_list(struct dnode *dn, struct tp_req *req, const Cairn__Request *h)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;
    Cairn__FragList fl = CAIRN__FRAG_LIST__INIT;
    size_t cap = CAIRN_MIN(tp_req_buf_len(req) - TP_HDR_SLOT, h->reply_cap), max, n, len;
    struct dn_frag_info *fi = NULL;
    Cairn__FragInfo *infos = NULL, **ptrs = NULL;
    Cairn__FragId *ids = NULL;
    uint64_t cursor = h->cursor;
    bool more;

    max = (cap > 16 ? cap - 16 : 0) / LIST_ENTRY_MAX;
    if (h->limit && h->limit < max)
        max = h->limit;
    if (max > LIST_MAX)
        max = LIST_MAX;
    if (max == 0) {
        resp.status = CAIRN_ETOOBIG;
        resp.payload_needed = 16 + LIST_ENTRY_MAX;
        tp_reply(req, &resp, NULL, 0, NULL, NULL);
        return;
    }
    fi = calloc(max, sizeof(*fi));
    infos = calloc(max, sizeof(*infos));
    ptrs = calloc(max, sizeof(*ptrs));
    ids = calloc(max, sizeof(*ids));
    if (!fi || !infos || !ptrs || !ids) {
        resp.status = CAIRN_ENOMEM;
        tp_reply(req, &resp, NULL, 0, NULL, NULL);
        goto out;
    }
    n = dn_store_list(dn->store, &cursor, h->bad_only, fi, max, &more);
    for (size_t i = 0; i < n; i++) {
        cairn__frag_id__init(&ids[i]);
        ids[i].stripe = fi[i].fid.stripe;
        ids[i].gen = fi[i].fid.gen;
        ids[i].index = fi[i].fid.index;
        cairn__frag_info__init(&infos[i]);
        infos[i].id = &ids[i];
        infos[i].len = fi[i].len;
        infos[i].object = fi[i].owner.object;
        infos[i].stripe_no = fi[i].owner.stripe_no;
        infos[i].birth_ms = fi[i].birth_ms;
        infos[i].bad = fi[i].bad;
        ptrs[i] = &infos[i];
    }
    fl.frags = ptrs;
    fl.n_frags = n;
    fl.cursor = cursor;
    fl.more = more;
    len = cairn__frag_list__get_packed_size(&fl);
    if (len > cap) { /* cannot happen with LIST_ENTRY_MAX right; never send a cut page */
        resp.status = CAIRN_ETOOBIG;
        resp.payload_needed = (uint32_t)len;
        tp_reply(req, &resp, NULL, 0, NULL, NULL);
        goto out;
    }
    len = cairn__frag_list__pack(&fl, tp_req_payload(req));
    tp_reply(req, &resp, tp_req_payload(req), (uint32_t)len, NULL, NULL);
out:
    free(fi);
    free(infos);
    free(ptrs);
    free(ids);
}

static void handle_ping(struct dnode *dn, struct tp_req *req)
{
    Cairn__Response resp = CAIRN__RESPONSE__INIT;
    struct dn_store_stats st;
    struct dn_scrub_stats ss;

    dn_store_stats(dn->store, &st);
    resp.dev_size = st.dev_size;
    resp.dev_used = st.used;
    resp.frag_count = st.frag_count;
    resp.node_id = dn_store_id(dn->store);
    resp.epoch = dn_shards_epoch(dn->shards);
    resp.domain = (char *)dn->domain;
    dn_shards_counts(dn->shards, &resp.voter_groups, &resp.moving_groups);
    dn_scrub_stats(dn->scrub, &ss);
    resp.scrub_passes = ss.passes;
    resp.scrub_bytes = ss.bytes;
    resp.scrub_bad = st.bad_count;
    resp.scrub_pos = ss.pos;
    resp.scrub_of = ss.of;
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
    case CAIRN__OP__OP_FRAG_LIST:
        handle_list(dn, req, h);
        break;
    default:
        if (!dn_shards_serve(dn->shards, req))
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
            "                   [--meta-size SIZE] [--provider P] [--max-payload BYTES]\n"
            "                   [--rx-depth N] [--election-ms MS] [--heartbeat-ms MS]\n"
            "                   [--domain NAME] [--scrub-mbps N] [--scrub-interval S]\n"
            "                   [--ready-file PATH] [--metrics HOST:PORT]\n"
            "                   [--log-level error|warn|info|debug]\n");
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
        {"meta-size", required_argument, NULL, 'M'}, {"election-ms", required_argument, NULL, 'E'},
        {"heartbeat-ms", required_argument, NULL, 'H'}, {"domain", required_argument, NULL, 'D'},
        {"metrics", required_argument, NULL, 'X'},  {"scrub-mbps", required_argument, NULL, 'S'},
        {"scrub-interval", required_argument, NULL, 'I'}, {NULL, 0, NULL, 0}};
    uint64_t scrub_mbps = 32, scrub_interval = 86400;
    char scrub_state[4096];
    const char *metrics_addr = NULL;
    struct metrics *reg = NULL;
    struct dn_stats *stats = NULL;
    struct admin_server *admin = NULL;
    const char *listen = NULL, *dev = NULL, *meta = NULL, *ready = NULL, *domain = NULL;
    char domainbuf[256];
    struct tp_config tcfg = {0};
    uint64_t dev_size = 0, max_payload = TP_DEFAULT_MAX_PAYLOAD, meta_size = 0;
    unsigned election_ms = 0, heartbeat_ms = 0;
    char hostbuf[256], *colon;
    struct dnode dn = {0};
    struct epoll_event ev, evs[8];
    sigset_t mask;
    int epfd = -1, sfd = -1, c, rc = 1;
    bool stop = false;
    uint64_t stats_ms = 0;

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
        case 'E': election_ms = (unsigned)atoi(optarg); break;
        case 'H': heartbeat_ms = (unsigned)atoi(optarg); break;
        case 'D': domain = optarg; break;
        case 'X': metrics_addr = optarg; break;
        case 'S': scrub_mbps = strtoull(optarg, NULL, 10); break;
        case 'I': scrub_interval = strtoull(optarg, NULL, 10); break;
        case 'M':
            if (parse_size(optarg, &meta_size)) {
                usage();
                return 2;
            }
            break;
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
    if (!domain) { /* one failure domain per machine unless told (racks, test clusters) */
        if (gethostname(domainbuf, sizeof(domainbuf)) != 0)
            snprintf(domainbuf, sizeof(domainbuf), "%s", hostbuf);
        domainbuf[sizeof(domainbuf) - 1] = '\0';
        domain = domainbuf;
    }
    dn.domain = domain;
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
    if (!meta_size) { /* the metadata map starts at a quarter of the device, at least 4 GiB */
        struct dn_store_stats st;
        dn_store_stats(dn.store, &st);
        meta_size = CAIRN_MAX(st.dev_size / 4, DN_KV_DEFAULT_MAP);
    }
    /* Counted only when someone can read it: without --metrics the transport stamps nothing. */
    if (metrics_addr && ((rc = metrics_create(&reg)) || (rc = dn_stats_open(reg, dn.store,
                                                                             &stats)))) {
        log_error(TAG, "metrics: %s", cairn_strerror(rc));
        goto out;
    }
    if ((rc = dn_kv_open(meta, meta_size, &dn.kv))) {
        log_error(TAG, "open metadata store %s: %s", meta, cairn_strerror(rc));
        goto out;
    }
    {
        struct dn_scrub_config sccfg = {.rate_bps = scrub_mbps << 20,
                                        .interval_s = (uint32_t)scrub_interval,
                                        .state = scrub_state};

        snprintf(scrub_state, sizeof(scrub_state), "%s/scrub.state", meta);
        if ((rc = dn_scrub_create(dn.store, &sccfg, &dn.scrub))) {
            log_error(TAG, "scrub: %s", cairn_strerror(rc));
            goto out;
        }
    }
    if ((rc = tp_ctx_create(&tcfg, &dn.tp))) {
        log_error(TAG, "fabric endpoint on %s: %s", listen, cairn_strerror(rc));
        goto out;
    }
    {
        struct dn_shards_config scfg = {.self = dn_store_id(dn.store),
                                        .kv = dn.kv,
                                        .tp = dn.tp,
                                        .max_msg = dn.max_payload,
                                        .election_ms = election_ms,
                                        .heartbeat_ms = heartbeat_ms};
        if ((rc = dn_shards_open(&scfg, &dn.shards))) {
            log_error(TAG, "metadata shards: %s", cairn_strerror(rc));
            goto out;
        }
    }
    if (stats)
        tp_ctx_observe(dn.tp, dn_stats_answered, stats);
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

    if (metrics_addr) {
        if ((rc = admin_start(metrics_addr, reg, &admin))) {
            log_error(TAG, "metrics endpoint on %s: %s", metrics_addr, cairn_strerror(rc));
            goto out;
        }
        log_info(TAG, "metrics on http://%s/metrics (port %u)", metrics_addr, admin_port(admin));
    }
    if (ready && write_ready(ready, tp_ctx_addr(dn.tp))) {
        log_error(TAG, "cannot write %s", ready);
        rc = CAIRN_EIO;
        goto out;
    }
    log_info(TAG, "node %016llx serving %s on %s (device %s, metadata %s)",
             (unsigned long long)dn_store_id(dn.store), tp_ctx_provider(dn.tp),
             tp_ctx_addr(dn.tp), dev, meta);

    while (!stop) {
        int n, t, ts;

        tp_ctx_progress(dn.tp);
        dn_shards_tick(dn.shards);
        dn_shards_flush(dn.shards); /* the round's one commit, then its messages and answers */
        dn_store_poll(dn.store);
        t = tp_ctx_timeout_ms(dn.tp);
        ts = dn_shards_timeout_ms(dn.shards);
        if (ts >= 0 && (t < 0 || ts < t))
            t = ts;
        ts = dn_scrub_tick(dn.scrub);
        if (ts >= 0 && (t < 0 || ts < t))
            t = ts;
        if (stats && cairn_now_ms() - stats_ms >= 1000) {
            struct dn_scrub_stats ss;

            dn_scrub_stats(dn.scrub, &ss);
            dn_stats_scrub(stats, &ss);
            stats_ms = cairn_now_ms();
        }
        /* Completions pending: progress again without sleeping, but still look at the other
         * descriptors (a stream of completions, e.g. errors for peers that went away, once
         * kept SIGTERM unread for good). */
        if (tp_ctx_trywait(dn.tp))
            t = 0;
        n = epoll_wait(epfd, evs, CAIRN_ARRAY_SIZE(evs), t);
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
    dn_shards_flush(dn.shards);
    rc = 0;
out:
    admin_stop(admin); /* first: it reads the registry */
    if (dn.store)
        dn_store_drain(dn.store);
    dn_shards_close(dn.shards);
    tp_ctx_destroy(dn.tp); /* its last callbacks still reach the shards */
    dn_shards_free(dn.shards);
    dn_scrub_destroy(dn.scrub); /* after the drain: its read has completed */
    dn_store_close(dn.store);
    dn_kv_close(dn.kv);
    dn_stats_close(stats);
    metrics_destroy(reg);
    if (sfd >= 0)
        close(sfd);
    if (epfd >= 0)
        close(epfd);
    return rc ? 1 : 0;
}
