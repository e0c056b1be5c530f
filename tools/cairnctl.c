/*
 * cairnctl.c - command-line client for a Cairn cluster.
 *
 * Commands (the cluster comes from -c DIR/cluster.env or $CAIRN_CLUSTER_ENV):
 *
 *   cairnctl ping                       every D-node's liveness and device usage
 *   cairnctl status                     map epoch, every D-node's state, answer and device,
 *                                       capacity, data short of redundancy, repair progress
 *                                       (exit 1 if a D-node is silent or data is short)
 *   cairnctl stripe put NAME FILE       write FILE as erasure-coded stripes
 *   cairnctl stripe get NAME FILE|-     read it back (degraded reads rebuild from parity)
 *   cairnctl stripe stat NAME           show the stored layout
 *   cairnctl stripe del NAME            delete the fragments and the name
 *   cairnctl user create ACCESS SECRET [--admin]   add (or replace) an S3 user
 *   cairnctl user del ACCESS            remove an S3 user
 *   cairnctl bucket public BUCKET on|off   allow or refuse anonymous reads of a bucket
 *   cairnctl map init [--shards N]      create the cluster: give the listed D-nodes their
 *                                       first cluster map (map/map.h)
 *   cairnctl map show                   the cluster map: epoch, D-nodes, shard placement,
 *                                       and the groups each D-node votes in now
 *   cairnctl map add HOST:PORT          add a running D-node to the cluster: the next map
 *                                       (its shards' replicas move to it by agreement)
 *   cairnctl map out|drain|in NODE      take a D-node (HOST:PORT or id) out of shard placement
 *                                       (out: leaving; drain: being emptied), or back in: the
 *                                       next map; its replicas move by agreement
 *   cairnctl dnode add HOST:PORT        the same as map add
 *   cairnctl dnode drain NODE [--no-wait] [--timeout S] [--mbps N]
 *                                       mark it draining (no new data or shard replicas on
 *                                       it), then run repair passes until no record names it
 *                                       and no shard group is moving, with a line per count;
 *                                       exit 1 at the timeout (0: none)
 *   cairnctl dnode remove NODE [--force]   take a drained D-node out of the map for good (its
 *                                       process may then stop); refused while records name it
 *                                       or shards are placed on it, unless forced
 *   cairnctl dnode replace OLD NEW_HOST:PORT [--no-wait] [--timeout S] [--mbps N]
 *                                       add NEW, take OLD out, then wait as drain does until
 *                                       repair has rebuilt everything OLD held elsewhere
 *   cairnctl repair run [--mbps N]      one repair pass over every shard (repair/repair.h):
 *                                       rebuild lost fragment positions, record them; waits
 *                                       for shards other workers hold; exit 1 if some are left
 *   cairnctl repair status              what the last passes found: NAME VALUE lines
 *   cairnctl gc run [--grace SECONDS]   two garbage sweeps (repair/gc.h): fragments no record
 *                                       references, older than the grace (default 3600 s),
 *                                       deleted; exit 1 if a shard could not be read in full
 *
 * A stripe object is its fragments plus a StripeManifest record under the key "stripe/NAME",
 * kept in the metadata shards on the D-nodes (meta/rec.h: Raft groups, compare-and-set).
 * put writes all fragments of a fresh object id first and the manifest last, conditional on
 * the version it read, so the name only ever points at complete data and two puts racing on a
 * name cannot both win; a replaced object's fragments are deleted after the new manifest is
 * durable.
 *
 * A D-node leaves in two steps.  `dnode drain` takes it out of placement (the map's draining
 * state: no new data, its shard replicas move by agreement) and then runs repair passes,
 * which rebuild every position it holds on other D-nodes, record them, and delete its copies;
 * it is drained when a count of the records that name it (rp_node_refs) finds none and no
 * shard group is still moving.  `dnode remove` sets the out state, the last one: the map keeps
 * the node's entry (a map that drops a D-node would reorder the placement list every view
 * keeps), but nothing is placed on or read from it.  What a drained node may still hold is
 * garbage: fragments of writes that failed or were cut short, which no record names (the
 * sweeper, `gc run`, deletes them once older than its grace).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/env.h"
#include "client/stripe.h"
#include "common/cairn.h"
#include "common/clock.h"
#include "common/log.h"
#include "meta/ns.h"
#include "meta/rec.h"
#include "repair/gc.h"
#include "repair/repair.h"

#define KEY_PREFIX "stripe/"
#define SIGV4_ACCESS_KEY_MAX 128u

static void usage(void)
{
    fprintf(stderr,
            "usage: cairnctl [-c CLUSTER_ENV] [--dnodes LIST] [--ec K+M] [--frag-size BYTES]\n"
            "                [--timeout-ms MS] [--leader-wait-ms MS] COMMAND\n"
            "commands:\n"
            "  ping\n"
            "  status\n"
            "  stripe put NAME FILE\n"
            "  stripe get NAME FILE|-\n"
            "  stripe stat NAME\n"
            "  stripe del NAME\n"
            "  user create ACCESS SECRET [--admin]\n"
            "  user del ACCESS\n"
            "  bucket public BUCKET on|off\n"
            "  map init [--shards N]\n"
            "  map show\n"
            "  map add HOST:PORT\n"
            "  map out|drain|in NODE\n"
            "  dnode add HOST:PORT\n"
            "  dnode drain NODE [--no-wait] [--timeout S] [--mbps N]\n"
            "  dnode remove NODE [--force]\n"
            "  dnode replace OLD_NODE NEW_HOST:PORT [--no-wait] [--timeout S] [--mbps N]\n"
            "  repair run [--mbps N]\n"
            "  repair status\n"
            "  gc run [--grace SECONDS]\n");
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "cairnctl: %s: %s\n", what, cairn_strerror(rc));
    return 1;
}

/* Read a whole file into a block-aligned buffer (the stripe path sends from it directly). */
static int slurp(const char *path, uint8_t **buf, uint64_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint64_t off = 0;

    if (fd < 0)
        return cairn_from_errno(errno);
    if (fstat(fd, &st)) {
        close(fd);
        return cairn_from_errno(errno);
    }
    *len = (uint64_t)st.st_size;
    *buf = aligned_alloc(CAIRN_BLOCK, CAIRN_ALIGN_UP(*len ? *len : 1, CAIRN_BLOCK));
    if (!*buf) {
        close(fd);
        return CAIRN_ENOMEM;
    }
    while (off < *len) {
        ssize_t n = read(fd, *buf + off, *len - off);

        if (n <= 0) {
            int rc = n < 0 ? cairn_from_errno(errno) : CAIRN_EIO;

            free(*buf);
            close(fd);
            return rc;
        }
        off += (uint64_t)n;
    }
    close(fd);
    return 0;
}

static int spill(const char *path, const uint8_t *buf, uint64_t len)
{
    int fd = strcmp(path, "-") ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : 1;
    uint64_t off = 0;

    if (fd < 0)
        return cairn_from_errno(errno);
    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);

        if (n <= 0) {
            if (fd != 1)
                close(fd);
            return n < 0 ? cairn_from_errno(errno) : CAIRN_EIO;
        }
        off += (uint64_t)n;
    }
    if (fd != 1 && close(fd))
        return cairn_from_errno(errno);
    return 0;
}

/* The manifest record of key; *version gets its version (or, when absent, the version a
 * create must expect). */
static int manifest_get(struct cl_cluster *cl, const char *key, Cairn__StripeManifest **out,
                        uint64_t *version)
{
    struct meta_rec r;
    int rc = meta_rec_get(cl, meta_shard_of(key, strlen(key)), key, strlen(key), &r);

    if (version)
        *version = r.version;
    if (rc)
        return rc;
    *out = cairn__stripe_manifest__unpack(NULL, r.len, r.val);
    free(r.val);
    if (!*out || (*out)->k == 0 || (*out)->m == 0 || (*out)->k + (*out)->m > EC_MAX_FRAGS ||
        (*out)->frag_size == 0) {
        if (*out)
            cairn__stripe_manifest__free_unpacked(*out, NULL);
        return CAIRN_EPROTO;
    }
    return 0;
}

static int cmd_ping(struct cl_cluster *cl)
{
    int bad = 0;

    for (unsigned i = 0; i < cl_cluster_dnodes(cl); i++) {
        uint64_t size = 0, used = 0, frags = 0;
        int rc = cl_cluster_ping(cl, i, &size, &used, &frags);

        if (rc) {
            printf("dnode %u %s down (%s)\n", i, cl_cluster_dnode_addr(cl, i), cairn_strerror(rc));
            bad++;
        } else {
            printf("dnode %u %s up size=%llu used=%llu fragments=%llu\n", i,
                   cl_cluster_dnode_addr(cl, i), (unsigned long long)size,
                   (unsigned long long)used, (unsigned long long)frags);
        }
    }
    return bad ? 1 : 0;
}

/* cairnctl status: the map, every D-node's state and device, and the data's redundancy. */
static int cmd_status(struct cl_cluster *cl)
{
    static const char *const states[] = {"up", "down", "out", "draining"};
    const Cairn__ClusterMap *m = cl_cluster_map(cl);
    uint64_t tsize = 0, tused = 0, tbad = 0, now = (uint64_t)(cairn_wall_ns() / 1000000);
    unsigned answering = 0;
    struct rp_status st;
    int rc;

    cl_cluster_probe(cl); /* one deadline for all the silent ones, not one each */
    printf("epoch %" PRIu64 "  code %u+%u  fragment %u  shards %u  replicas %u  dnodes %zu\n",
           m->epoch, m->k, m->m, m->frag_size, m->shards, m->replicas, m->n_nodes);
    for (size_t i = 0; i < m->n_nodes; i++) {
        const Cairn__MapNode *n = m->nodes[i];
        int idx = cl_cluster_node_index(cl, n->id);
        const char *state = (unsigned)n->state < 4 ? states[n->state] : "?";
        struct cl_node_stats ns;

        if (idx < 0 || cl_cluster_node_down(cl, (unsigned)idx) ||
            cl_cluster_ping_stats(cl, (unsigned)idx, &ns)) {
            printf("dnode %zu %016" PRIx64 " %s domain=%s state=%s answering=no\n", i, n->id,
                   n->addr, n->host, state);
            continue;
        }
        answering++;
        tsize += ns.dev_size;
        tused += ns.dev_used;
        tbad += ns.scrub_bad;
        printf("dnode %zu %016" PRIx64 " %s domain=%s state=%s answering=yes size=%" PRIu64
               " used=%" PRIu64 " fragments=%" PRIu64 " corrupt=%" PRIu64 " scrub_passes=%"
               PRIu64, i, n->id, n->addr, n->host, state, ns.dev_size, ns.dev_used, ns.frags,
               ns.scrub_bad, ns.scrub_passes);
        if (ns.scrub_of)
            printf(" scrub_pass=%.0f%%", 100.0 * (double)ns.scrub_pos / (double)ns.scrub_of);
        printf("\n");
    }
    printf("answering %u of %zu  capacity %" PRIu64 "  used %" PRIu64 " (%.1f%%)  free %" PRIu64
           " (raw bytes of the answering D-nodes)\n", answering, m->n_nodes, tsize, tused,
           tsize ? 100.0 * (double)tused / (double)tsize : 0.0, tsize - tused);
    rc = rp_status(cl, &st);
    if (rc)
        return fail("repair status", rc);
    printf("data: %" PRIu64 " extents with recorded placement; short of full redundancy: %"
           PRIu64 " (1 position lost: %" PRIu64 ", 2: %" PRIu64 ", 3: %" PRIu64 ", more: %"
           PRIu64 "), %" PRIu64 " bytes to rebuild\n", st.extents, st.left, st.left_by_lost[0],
           st.left_by_lost[1], st.left_by_lost[2], st.left_by_lost[3], st.bytes_left);
    printf("repair: %u of %u shards passed", st.passed, st.shards);
    if (st.oldest_pass_ms)
        printf(" (oldest %" PRIu64 " s ago)", now > st.oldest_pass_ms ?
               (now - st.oldest_pass_ms) / 1000 : 0);
    printf(", %u being passed now; rebuilt %" PRIu64 " positions (%" PRIu64 " bytes) in all",
           st.leased, st.rebuilt, st.rebuilt_bytes);
    if (st.bytes_left && st.rate_bps)
        printf("; ETA %" PRIu64 " s at %" PRIu64 " bytes/s", st.bytes_left / st.rate_bps + 1,
               st.rate_bps);
    printf("\n");
    printf("scrub: %" PRIu64 " fragments found corrupt, waiting for repair\n", tbad);
    return answering == m->n_nodes && !st.left && !tbad ? 0 : 1;
}

/* cairnctl repair run: one pass, in this process, over every shard. */
static int cmd_repair_run(struct cl_cluster *cl, uint64_t mbps)
{
    struct rp_opts o = {.rate = mbps << 20, .wait_leases = true};
    struct rp_result r;
    int rc;

    rc = rp_pass(cl, &o, &r);
    if (rc)
        return fail("repair", rc);
    printf("repair: shards %u, extents %" PRIu64 ", degraded %" PRIu64 ", rebuilt %" PRIu64
           " positions (%" PRIu64 " bytes), left %" PRIu64 ", failed %" PRIu64
           ", corrupt fragments %" PRIu64 " (replaced %" PRIu64 ")\n",
           r.shards, r.extents, r.degraded, r.rebuilt, r.bytes, r.left, r.failed, r.bad,
           r.bad_fixed);
    if (r.left || r.failed) {
        fprintf(stderr, "cairnctl: repair: %" PRIu64 " extents still short of full redundancy, "
                "%" PRIu64 " rebuilds failed (the D-nodes' and this log say why)\n", r.left,
                r.failed);
        return 1;
    }
    return 0;
}

/* cairnctl gc run: two sweeps back to back (repair/gc.h: a fragment goes only when two marks
 * in a row found nothing referencing it), so one command collects what is old enough. */
static int cmd_gc_run(struct cl_cluster *cl, uint64_t grace_s)
{
    struct gc_opts o = {.grace_ms = grace_s * 1000u};
    struct gc_result r[2];
    struct gc *g;
    int rc = gc_create(&g);

    if (rc)
        return fail("gc", rc);
    for (unsigned i = 0; i < 2 && !rc; i++) {
        rc = gc_pass(g, cl, &o, &r[i]);
        if (!rc && !r[i].complete)
            rc = CAIRN_EUNREACH;
    }
    gc_destroy(g);
    if (rc)
        return fail("gc (a shard could not be read in full; nothing more was deleted)", rc);
    printf("gc: objects referenced %" PRIu64 ", fragments %" PRIu64 ", unowned %" PRIu64
           ", young %" PRIu64 ", unreferenced %" PRIu64 ", deleted %" PRIu64 " (%" PRIu64
           " bytes), D-nodes not listed %u\n", r[1].objects, r[1].fragments, r[1].unowned,
           r[1].young, r[1].candidates, r[0].deleted + r[1].deleted, r[0].bytes + r[1].bytes,
           r[1].nodes_down);
    return 0;
}

/* cairnctl repair status: one NAME VALUE line each, for people and scripts. */
static int cmd_repair_status(struct cl_cluster *cl)
{
    struct rp_status st;
    uint64_t now = (uint64_t)(cairn_wall_ns() / 1000000);
    int rc = rp_status(cl, &st);

    if (rc)
        return fail("repair status", rc);
    printf("shards %u\nshards_passed %u\nshards_leased %u\n", st.shards, st.passed, st.leased);
    {
        /* Corrupt fragments live in the D-nodes' memory (their scrubs), not the records. */
        uint64_t bad = 0, checked = 0;

        cl_cluster_probe(cl);
        for (unsigned i = 0; i < cl_cluster_dnodes(cl); i++) {
            struct cl_node_stats ns;

            if (!cl_cluster_node_down(cl, i) && !cl_cluster_ping_stats(cl, i, &ns)) {
                bad += ns.scrub_bad;
                checked += ns.scrub_bytes;
            }
        }
        printf("corrupt_fragments %" PRIu64 "\nscrubbed_bytes %" PRIu64 "\n", bad, checked);
    }
    if (st.oldest_pass_ms)
        printf("oldest_pass_age_s %" PRIu64 "\n",
               now > st.oldest_pass_ms ? (now - st.oldest_pass_ms) / 1000 : 0);
    printf("extents %" PRIu64 "\ndegraded_left %" PRIu64 "\n", st.extents, st.left);
    for (unsigned i = 0; i < 4; i++)
        printf("degraded_left_lost_%u%s %" PRIu64 "\n", i + 1, i == 3 ? "_or_more" : "",
               st.left_by_lost[i]);
    printf("bytes_left %" PRIu64 "\nrebuilt_positions %" PRIu64 "\nbytes_rebuilt %" PRIu64
           "\nrate_bytes_per_s %" PRIu64 "\n", st.bytes_left, st.rebuilt, st.rebuilt_bytes,
           st.rate_bps);
    /* -1: bytes are left but no pass has measured a rate yet. */
    if (st.bytes_left && !st.rate_bps)
        printf("eta_s -1\n");
    else
        printf("eta_s %" PRIu64 "\n", st.bytes_left ? st.bytes_left / st.rate_bps + 1 : 0);
    return 0;
}

static int cmd_map_show(struct cl_cluster *cl)
{
    const Cairn__ClusterMap *m = cl_cluster_map(cl);

    printf("epoch %" PRIu64 "  code %u+%u  fragment %u  shards %u  replicas %u\n", m->epoch,
           m->k, m->m, m->frag_size, m->shards, m->replicas);
    for (size_t i = 0; i < m->n_nodes; i++) {
        const Cairn__MapNode *n = m->nodes[i];
        unsigned held = 0;
        bool in_group = false;

        for (size_t s = 0; s < m->n_place; s++)
            for (size_t j = 0; j < m->place[s]->n_nodes; j++)
                held += m->place[s]->nodes[j] == n->id;
        for (size_t j = 0; j < m->n_map_group; j++)
            in_group |= m->map_group[j] == n->id;
        int idx = cl_cluster_node_index(cl, n->id);
        char voting[48] = "voting=? moving=?";

        if (idx >= 0 && cl_cluster_ping(cl, (unsigned)idx, NULL, NULL, NULL) == 0)
            snprintf(voting, sizeof voting, "voting=%u moving=%u",
                     cl_cluster_last_voter_groups(cl), cl_cluster_last_moving_groups(cl));
        static const char *const states[] = {"up", "down", "out", "draining"};
        const char *state = (unsigned)n->state < 4 ? states[n->state] : "?";

        printf("dnode %zu %016" PRIx64 " %s domain=%s state=%s shards=%u %s%s\n", i, n->id,
               n->addr, n->host, state, held, voting, in_group ? " map-group" : "");
    }
    return 0;
}

/* One map change (meta_map_change: compare-and-set on the map record, then wait until this
 * view has it).  Returns 0 or 1 after printing why not. */
static int map_change(struct cl_cluster *cl, meta_map_next_fn next, void *arg)
{
    const char *what = NULL;
    int rc = meta_map_change(cl, next, arg, &what);

    return rc ? fail(what ? what : "the next map", rc) : 0;
}

static int next_with_node(const Cairn__ClusterMap *cur, void *arg, uint8_t **buf, size_t *len,
                          bool *done, const char **what)
{
    const struct map_node_info *info = arg;

    (void)what;
    *done = map_node_index(cur, info->id) >= 0;
    return *done ? 0 : map_add_node(cur, info, buf, len);
}

/* Add the D-node at addr: the next map with it (map_change), then give the D-node that map.
 * Its shards' leaders then add it and drop the replicas it replaces, one membership change at
 * a time. */
static int cmd_map_add(struct cl_cluster *cl, const char *addr)
{
    char domain[256];
    struct map_node_info info = {.addr = addr, .host = domain};
    int rc = cl_cluster_probe_addr(cl, addr, &info.id, domain, sizeof domain);

    if (rc)
        return fail(addr, rc);
    if (map_change(cl, next_with_node, &info))
        return 1;
    rc = cl_cluster_give_map(cl, addr);
    if (rc && rc != CAIRN_EEXIST)
        return fail("give the D-node its map", rc);
    printf("D-node %s (%016" PRIx64 ", domain %s) is in the cluster: map epoch %" PRIu64
           ", %u D-nodes\n", addr, info.id, domain, cl_cluster_epoch(cl), cl_cluster_dnodes(cl));
    return 0;
}

struct state_change {
    const char *node; /* HOST:PORT or the id in hex */
    Cairn__NodeState state;
    uint64_t id; /* out: the node's id */
};

/* The index in m of the D-node NODE names (its HOST:PORT, or its id in hex), or -1. */
static int find_node(const Cairn__ClusterMap *m, const char *node)
{
    char *end;
    uint64_t id = strtoull(node, &end, 16);

    for (size_t i = 0; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i]->addr, node) == 0 || (*node && !*end && m->nodes[i]->id == id))
            return (int)i;
    return -1;
}

static int next_with_state(const Cairn__ClusterMap *cur, void *arg, uint8_t **buf, size_t *len,
                           bool *done, const char **what)
{
    struct state_change *sc = arg;
    int i = find_node(cur, sc->node);

    if (i < 0) {
        *what = sc->node;
        return CAIRN_ENOENT;
    }
    sc->id = cur->nodes[i]->id;
    *done = cur->nodes[i]->state == sc->state;
    return *done ? 0 : map_set_state(cur, sc->id, sc->state, buf, len);
}

/* Set a D-node's state in the next map (map_set_state, map_change); the shards' leaders then
 * move replicas off (or onto) it. */
static int cmd_map_state(struct cl_cluster *cl, const char *node, Cairn__NodeState state)
{
    struct state_change sc = {.node = node, .state = state};

    if (map_change(cl, next_with_state, &sc))
        return 1;
    printf("D-node %s (%016" PRIx64 ") is %s: map epoch %" PRIu64 "\n", node, sc.id,
           state == CAIRN__NODE_STATE__NODE_OUT        ? "out"
           : state == CAIRN__NODE_STATE__NODE_DRAINING ? "draining"
                                                        : "in",
           cl_cluster_epoch(cl));
    return 0;
}

/* ---- cairnctl dnode: the operator's verbs for D-nodes joining and leaving ---- */

/* A wait ends only with a count that began this long after the node left data placement: a
 * write that chose its placement under the old map (C-nodes learn a new map at their next
 * metadata call, D-nodes within 2 s) has committed or failed by then, so the count does not
 * miss it.  A write slower than that may still name the node afterwards; `dnode remove`
 * counts again. */
#define DRAIN_SETTLE_MS 10000u
#define DRAIN_STALL_ROUNDS 3u /* passes that move nothing before the wait says why it may stall */
#define DRAIN_LINE_MS 5000u   /* a progress line at least this often, even with nothing new */

struct dnode_opts {
    bool wait;          /* drain, replace: until no record names the node */
    bool force;         /* remove: even though records name it */
    unsigned timeout_s; /* give up waiting after this (0: never) */
    uint64_t mbps;      /* the passes' rebuild rate */
};

/* Shard groups whose leaders are still moving their membership toward the map, summed over
 * the D-nodes that answer (the view's down marks refreshed first, so a dead one costs one
 * deadline for all). */
static unsigned groups_moving(struct cl_cluster *cl)
{
    unsigned moving = 0;

    cl_cluster_probe(cl);
    for (unsigned i = 0; i < cl_cluster_dnodes(cl); i++)
        if (!cl_cluster_node_down(cl, i) && cl_cluster_ping(cl, i, NULL, NULL, NULL) == 0)
            moving += cl_cluster_last_moving_groups(cl);
    return moving;
}

/* Wait until no record names D-node id and no shard group is moving, running repair passes
 * (as `repair run`) to move what still names it; one progress line per count.  Returns 0, or
 * 1 after saying why not (timeout). */
static int drain_wait(struct cl_cluster *cl, uint64_t id, const char *node,
                      const struct dnode_opts *o)
{
    struct rp_opts ro = {.rate = o->mbps << 20, .wait_leases = true};
    uint64_t t0 = cairn_now_ms(), last = UINT64_MAX, frags = 0, shown = UINT64_MAX, shown_ms = 0;
    unsigned stalled = 0, shown_moving = 0;
    bool warned = false;
    int idx;

    for (;;) {
        uint64_t t_count = cairn_now_ms();
        struct rp_refs refs;
        struct rp_result res;
        unsigned moving;
        int rc = rp_node_refs(cl, id, &refs);

        if (rc) {
            fprintf(stderr, "cairnctl: counting the records that name %s: %s; again\n", node,
                    cairn_strerror(rc));
            sleep(1);
            continue;
        }
        moving = groups_moving(cl);
        if (!refs.extents && !moving && t_count >= t0 + DRAIN_SETTLE_MS)
            break;
        /* A line when the figures change, else one every DRAIN_LINE_MS (the settle). */
        if (refs.extents != shown || moving != shown_moving ||
            cairn_now_ms() - shown_ms >= DRAIN_LINE_MS) {
            printf("%s: %" PRIu64 " extents name it (%" PRIu64 " bytes of fragments), %u shard "
                   "groups moving (%.0f s)\n",
                   node, refs.extents, refs.bytes, moving, (double)(cairn_now_ms() - t0) / 1000);
            if (refs.unplaced)
                printf("%s: %" PRIu64 " extents have no recorded placement: they follow the map "
                       "and no pass moves them\n",
                       node, refs.unplaced);
            fflush(stdout);
            shown = refs.extents;
            shown_moving = moving;
            shown_ms = cairn_now_ms();
        }
        if (o->timeout_s && cairn_now_ms() - t0 >= (uint64_t)o->timeout_s * 1000) {
            fprintf(stderr,
                    "cairnctl: %s: after %u s %" PRIu64 " extents still name it and "
                    "%u shard groups are moving (cairnctl status, repair status say more)\n",
                    node, o->timeout_s, refs.extents, moving);
            return 1;
        }
        if (!refs.extents) {
            sleep(1); /* the metadata is moving, or the count began too early: count again */
            continue;
        }
        rc = rp_pass(cl, &ro, &res);
        if (rc) {
            fprintf(stderr, "cairnctl: repair pass: %s; again\n", cairn_strerror(rc));
            sleep(1);
            continue;
        }
        printf("%s: repair pass: rebuilt %" PRIu64 " positions (%" PRIu64 " bytes), %" PRIu64
               " extents short of redundancy left, %" PRIu64 " rebuilds failed\n",
               node, res.rebuilt, res.bytes, res.left, res.failed);
        fflush(stdout);
        stalled = !res.rebuilt && refs.extents >= last ? stalled + 1 : 0;
        last = refs.extents;
        if (stalled >= DRAIN_STALL_ROUNDS && !warned) {
            fprintf(stderr,
                    "cairnctl: %s: %u passes moved nothing off it: a rebuild needs a "
                    "live D-node in a failure domain the extent does not use yet (are enough "
                    "D-nodes up? cairnctl status)\n",
                    node, stalled);
            warned = true;
        }
    }
    idx = cl_cluster_node_index(cl, id);
    if (idx >= 0 && !cl_cluster_node_down(cl, (unsigned)idx) &&
        cl_cluster_ping(cl, (unsigned)idx, NULL, NULL, &frags) == 0)
        printf("%s: no record names it and no shard group is moving (%.0f s); it holds %" PRIu64
               " fragments no record names (of writes that failed or were cut short)\n",
               node, (double)(cairn_now_ms() - t0) / 1000, frags);
    else
        printf("%s: no record names it and no shard group is moving (%.0f s); it does not "
               "answer\n",
               node, (double)(cairn_now_ms() - t0) / 1000);
    return 0;
}

/* The view's map entry for NODE, or NULL after saying so. */
static const Cairn__MapNode *map_node(struct cl_cluster *cl, const char *node)
{
    const Cairn__ClusterMap *m;
    int i;

    (void)cl_cluster_refresh(cl);
    m = cl_cluster_map(cl);
    i = find_node(m, node);
    if (i < 0) {
        fprintf(stderr, "cairnctl: %s: no such D-node in the map (epoch %" PRIu64 ")\n", node,
                m->epoch);
        return NULL;
    }
    return m->nodes[i];
}

/* dnode drain NODE: out of data and shard placement; then (o->wait) until it holds nothing
 * any record names. */
static int cmd_dnode_drain(struct cl_cluster *cl, const char *node, const struct dnode_opts *o)
{
    const Cairn__MapNode *n = map_node(cl, node);
    uint64_t id;

    if (!n)
        return 1;
    id = n->id;
    if (n->state == CAIRN__NODE_STATE__NODE_OUT)
        printf("D-node %s (%016" PRIx64 ") is out already: nothing new is placed on it\n", node,
               id);
    else if (cmd_map_state(cl, node, CAIRN__NODE_STATE__NODE_DRAINING))
        return 1;
    fflush(stdout);
    return o->wait ? drain_wait(cl, id, node, o) : 0;
}

/* dnode remove NODE: out of the map for good, once nothing names it (or forced). */
static int cmd_dnode_remove(struct cl_cluster *cl, const char *node, const struct dnode_opts *o)
{
    const Cairn__MapNode *n = map_node(cl, node); /* refreshes the view's map */
    const Cairn__ClusterMap *m = cl_cluster_map(cl);
    struct rp_refs refs = {0};
    unsigned held = 0;
    uint64_t id;
    int rc;

    if (!n)
        return 1;
    id = n->id;
    for (size_t s = 0; s < m->n_place; s++)
        for (size_t j = 0; j < m->place[s]->n_nodes; j++)
            held += m->place[s]->nodes[j] == id;
    rc = rp_node_refs(cl, id, &refs);
    if (rc && !o->force)
        return fail("count the records that name it", rc);
    if (!o->force && (refs.extents || held)) {
        fprintf(stderr,
                "cairnctl: %s is not drained: %" PRIu64 " extents (%" PRIu64 " bytes of "
                "fragments) name it and the map places %u shard replicas on it; `cairnctl dnode "
                "drain %s` first, or --force (what it holds is then rebuilt from the other "
                "positions)\n",
                node, refs.extents, refs.bytes, held, node);
        return 1;
    }
    if (cmd_map_state(cl, node, CAIRN__NODE_STATE__NODE_OUT))
        return 1;
    if (refs.extents || held)
        printf("%s: %" PRIu64 " extents named it and %u shard replicas were placed on it: repair "
               "passes rebuild the extents' positions from the others, the shards' leaders "
               "move the replicas\n",
               node, refs.extents, held);
    else
        printf("%s: no record names it: its process may be stopped\n", node);
    return 0;
}

/* dnode replace OLD NEW: NEW joins, OLD goes out; then (o->wait) until nothing names OLD. */
static int cmd_dnode_replace(struct cl_cluster *cl, const char *old, const char *addr,
                             const struct dnode_opts *o)
{
    const Cairn__MapNode *n = map_node(cl, old);
    uint64_t id;

    if (!n)
        return 1;
    id = n->id;
    if (cmd_map_add(cl, addr) || cmd_map_state(cl, old, CAIRN__NODE_STATE__NODE_OUT))
        return 1;
    fflush(stdout);
    return o->wait ? drain_wait(cl, id, old, o) : 0;
}

/* cairnctl dnode add|drain|remove|replace ...: options may come anywhere after the verb. */
static int cmd_dnode(struct cl_cluster *cl, int argc, char **argv)
{
    struct dnode_opts o = {.wait = true, .mbps = RP_DEFAULT_RATE >> 20};
    const char *pos[2];
    unsigned npos = 0;
    bool waits = argc >= 2 && (!strcmp(argv[1], "drain") || !strcmp(argv[1], "replace"));
    bool remove = argc >= 2 && !strcmp(argv[1], "remove");

    for (int i = 2; i < argc; i++) {
        char *end;

        if (waits && !strcmp(argv[i], "--no-wait")) {
            o.wait = false;
        } else if (remove && !strcmp(argv[i], "--force")) {
            o.force = true;
        } else if (waits && i + 1 < argc &&
                   (!strcmp(argv[i], "--timeout") || !strcmp(argv[i], "--mbps"))) {
            unsigned long v = strtoul(argv[i + 1], &end, 10);

            if (*end || !*argv[i + 1] || (v == 0 && !strcmp(argv[i], "--mbps")) || v > UINT32_MAX)
                goto usage;
            if (!strcmp(argv[i], "--timeout"))
                o.timeout_s = (unsigned)v;
            else
                o.mbps = v;
            i++;
        } else if (argv[i][0] != '-' && npos < 2) {
            pos[npos++] = argv[i];
        } else {
            goto usage;
        }
    }
    if (argc >= 2 && !strcmp(argv[1], "add") && npos == 1 && argc == 3)
        return cmd_map_add(cl, pos[0]);
    if (argc >= 2 && !strcmp(argv[1], "drain") && npos == 1)
        return cmd_dnode_drain(cl, pos[0], &o);
    if (remove && npos == 1)
        return cmd_dnode_remove(cl, pos[0], &o);
    if (argc >= 2 && !strcmp(argv[1], "replace") && npos == 2)
        return cmd_dnode_replace(cl, pos[0], pos[1], &o);
usage:
    usage();
    return 2;
}

static int cmd_put(struct cl_cluster *cl, const char *key, const char *path)
{
    const struct ec_layout *l = cl_cluster_layout(cl);
    Cairn__StripeManifest man = CAIRN__STRIPE_MANIFEST__INIT, *old = NULL;
    struct cl_io_stats st = {0};
    uint8_t *data = NULL, *packed = NULL;
    uint64_t len = 0, oid, ver = 0;
    uint64_t t0;
    int rc;

    rc = slurp(path, &data, &len);
    if (rc)
        return fail(path, rc);
    if (getrandom(&oid, sizeof(oid), 0) != sizeof(oid)) {
        free(data);
        return fail("getrandom", CAIRN_EIO);
    }
    rc = manifest_get(cl, key, &old, &ver);
    if (rc == CAIRN_ENOENT || rc == CAIRN_EPROTO)
        old = NULL;
    else if (rc) {
        free(data);
        return fail("stripe put", rc);
    }
    t0 = cairn_now_ns();
    rc = cl_stripe_write(cl, oid, 1, data, len, NULL, &st);
    if (rc) {
        /* Leave no orphans behind: the name was never published. */
        cl_stripe_delete(cl, oid, 1, l, NULL, len);
        goto out;
    }
    man.length = len;
    man.k = l->k;
    man.m = l->m;
    man.frag_size = l->frag_size;
    man.object_id = oid;
    man.gen = 1;
    packed = malloc(cairn__stripe_manifest__get_packed_size(&man));
    if (!packed) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    /* Published only if nobody replaced the name since we read it: the loser deletes its
     * own stripes, never the winner's. */
    rc = meta_rec_put(cl, meta_shard_of(key, strlen(key)), key, strlen(key), ver, packed,
                      (uint32_t)cairn__stripe_manifest__pack(&man, packed), NULL);
    if (rc) {
        if (rc != CAIRN_EUNREACH) /* an unknown outcome may have published it: keep it */
            cl_stripe_delete(cl, oid, 1, l, NULL, len);
        goto out;
    }
    printf("put %s: %llu bytes, %u+%u, %llu stripes, %.1f MB/s\n", key + strlen(KEY_PREFIX),
           (unsigned long long)len, l->k, l->m, (unsigned long long)st.stripes,
           (double)len / 1e6 / ((double)(cairn_now_ns() - t0) / 1e9));
    if (old) {
        struct ec_layout ol = {.k = old->k, .m = old->m, .frag_size = old->frag_size};

        cl_stripe_delete(cl, old->object_id, old->gen, &ol, NULL, old->length);
    }
out:
    if (old)
        cairn__stripe_manifest__free_unpacked(old, NULL);
    free(packed);
    free(data);
    return rc ? fail("stripe put", rc) : 0;
}

static int cmd_get(struct cl_cluster *cl, const char *key, const char *path)
{
    Cairn__StripeManifest *man = NULL;
    struct cl_io_stats st = {0};
    struct ec_layout l;
    uint8_t *data;
    int rc = manifest_get(cl, key, &man, NULL);

    if (rc)
        return fail(key + strlen(KEY_PREFIX), rc);
    l = (struct ec_layout){.k = man->k, .m = man->m, .frag_size = man->frag_size};
    data = aligned_alloc(CAIRN_BLOCK, CAIRN_ALIGN_UP(man->length ? man->length : 1, CAIRN_BLOCK));
    if (!data) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    rc = cl_stripe_read(cl, man->object_id, man->gen, &l, NULL, data, man->length, &st);
    if (!rc)
        rc = spill(path, data, man->length);
    if (!rc && st.degraded_stripes)
        fprintf(stderr, "cairnctl: %llu of %llu stripes rebuilt from parity\n",
                (unsigned long long)st.degraded_stripes, (unsigned long long)st.stripes);
    free(data);
out:
    cairn__stripe_manifest__free_unpacked(man, NULL);
    return rc ? fail("stripe get", rc) : 0;
}

static int cmd_stat(struct cl_cluster *cl, const char *key)
{
    Cairn__StripeManifest *man = NULL;
    int rc = manifest_get(cl, key, &man, NULL);

    if (rc)
        return fail(key + strlen(KEY_PREFIX), rc);
    printf("name=%s length=%llu ec=%u+%u frag_size=%u object_id=%016llx gen=%u\n",
           key + strlen(KEY_PREFIX), (unsigned long long)man->length, man->k, man->m,
           man->frag_size, (unsigned long long)man->object_id, man->gen);
    cairn__stripe_manifest__free_unpacked(man, NULL);
    return 0;
}

static int cmd_del(struct cl_cluster *cl, const char *key)
{
    Cairn__StripeManifest *man = NULL;
    struct ec_layout l;
    uint64_t ver = 0;
    int rc = manifest_get(cl, key, &man, &ver);

    if (rc)
        return fail(key + strlen(KEY_PREFIX), rc);
    l = (struct ec_layout){.k = man->k, .m = man->m, .frag_size = man->frag_size};
    /* Unpublish first: a name never points at partly deleted data. */
    rc = meta_rec_del(cl, meta_shard_of(key, strlen(key)), key, strlen(key), ver);
    if (!rc)
        rc = cl_stripe_delete(cl, man->object_id, man->gen, &l, NULL, man->length);
    cairn__stripe_manifest__free_unpacked(man, NULL);
    return rc ? fail("stripe del", rc) : 0;
}

static int cmd_user(struct cl_cluster *cl, int argc, char **argv)
{
    int rc;

    if (argc >= 4 && !strcmp(argv[1], "create") && (argc == 4 || (argc == 5 &&
                                                                  !strcmp(argv[4], "--admin")))) {
        Cairn__User u = CAIRN__USER__INIT;

        if (strlen(argv[2]) < 3 || strlen(argv[2]) > SIGV4_ACCESS_KEY_MAX || strlen(argv[3]) < 8) {
            fprintf(stderr, "cairnctl: access key 3..%u characters, secret at least 8\n",
                    SIGV4_ACCESS_KEY_MAX);
            return 2;
        }
        u.access_key = argv[2];
        u.secret_key = argv[3];
        u.name = argv[2];
        u.admin = argc == 5;
        u.created_ns = (int64_t)time(NULL) * 1000000000;
        rc = meta_user_put(cl, &u);
        if (rc)
            return fail("user create", rc);
        printf("user %s created\n", argv[2]);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "del")) {
        rc = meta_user_del(cl, argv[2]);
        if (rc)
            return fail("user del", rc);
        return 0;
    }
    usage();
    return 2;
}

static int cmd_bucket(struct cl_cluster *cl, int argc, char **argv)
{
    Cairn__Dirent *d;
    Cairn__Inode *in;
    uint64_t ver;
    int rc;

    if (argc != 4 || strcmp(argv[1], "public") ||
        (strcmp(argv[3], "on") && strcmp(argv[3], "off"))) {
        usage();
        return 2;
    }
    rc = meta_dirent_get(cl, META_ROOT_INO, argv[2], strlen(argv[2]), true, &d, NULL);
    if (rc)
        return fail(argv[2], rc);
    rc = meta_inode_get(cl, d->ino, &in, &ver);
    if (!rc) {
        in->public_read = !strcmp(argv[3], "on");
        rc = meta_inode_put(cl, d->ino, in, ver, NULL);
        cairn__inode__free_unpacked(in, NULL);
    }
    cairn__dirent__free_unpacked(d, NULL);
    return rc ? fail("bucket public", rc) : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cluster", required_argument, NULL, 'c'},  {"dnodes", required_argument, NULL, 'd'},
        {"ec", required_argument, NULL, 'e'},       {"frag-size", required_argument, NULL, 'f'},
        {"timeout-ms", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"leader-wait-ms", required_argument, NULL, 'w'},
        {NULL, 0, NULL, 0}};
    struct cl_cluster_config cfg = {.k = 4, .m = 2, .frag_size = 1u << 20};
    const char *envpath = getenv("CAIRN_CLUSTER_ENV"), *dnodes = NULL, *ec = NULL;
    struct cl_env env = {0};
    struct cl_cluster *cl = NULL;
    char key[600];
    int c, rc;

    cairn_log_set_ident("cairnctl");
    cairn_log_set_level(getenv("CAIRN_LOG") ? getenv("CAIRN_LOG") : "error");
    while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': envpath = optarg; break;
        case 'd': dnodes = optarg; break;
        case 'e': ec = optarg; break;
        case 'f': cfg.frag_size = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 't': cfg.timeout_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'w': cfg.leader_wait_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
        default: usage(); return 2;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 1) {
        usage();
        return 2;
    }
    if (envpath) {
        rc = cl_env_load(envpath, &env);
        if (rc)
            return fail(envpath, rc);
        if (cl_env_cluster_config(&env, &cfg))
            return 2;
    }
    if (dnodes)
        cfg.dnodes = dnodes;
    if (ec && ec_layout_parse(ec, &cfg.k, &cfg.m)) {
        fprintf(stderr, "cairnctl: bad --ec %s\n", ec);
        return 2;
    }
    if (!cfg.dnodes) {
        fprintf(stderr, "cairnctl: no cluster: pass -c DIR/cluster.env or --dnodes\n");
        return 2;
    }
    if (strcmp(argv[0], "map") == 0 && argc >= 2 && !strcmp(argv[1], "init")) {
        unsigned long shards = 0;

        if (argc == 4 && !strcmp(argv[2], "--shards")) {
            char *end;
            shards = strtoul(argv[3], &end, 10);
            if (*end || shards == 0 || shards > MAP_MAX_SHARDS) {
                usage();
                return 2;
            }
        } else if (argc != 2) {
            usage();
            return 2;
        }
        cfg.no_map = true;
        rc = cl_cluster_open(&cfg, &cl);
        if (!rc)
            rc = cl_cluster_map_init(cl, (uint32_t)shards);
        if (rc == CAIRN_EEXIST) {
            printf("the cluster exists already: its D-nodes hold a map\n");
            rc = 0;
        } else if (!rc) {
            printf("cluster created: map epoch %" PRIu64 ", %u D-nodes, %u shards\n",
                   cl_cluster_epoch(cl), cl_cluster_dnodes(cl), cl_cluster_shards(cl));
        } else {
            rc = fail("map init", rc);
        }
        cl_cluster_close(cl);
        cl_env_fini(&env);
        return rc;
    }
    rc = cl_cluster_open(&cfg, &cl);
    if (rc) {
        cl_env_fini(&env);
        return fail("open cluster", rc);
    }
    if (strcmp(argv[0], "ping") == 0 && argc == 1) {
        rc = cmd_ping(cl);
    } else if (strcmp(argv[0], "stripe") == 0 && argc >= 3) {
        if (strlen(argv[2]) == 0 || strlen(argv[2]) > 400) {
            fprintf(stderr, "cairnctl: name must be 1..400 bytes\n");
            rc = 2;
            goto out;
        }
        snprintf(key, sizeof(key), KEY_PREFIX "%s", argv[2]);
        cl_cluster_probe(cl);
        if (strcmp(argv[1], "put") == 0 && argc == 4)
            rc = cmd_put(cl, key, argv[3]);
        else if (strcmp(argv[1], "get") == 0 && argc == 4)
            rc = cmd_get(cl, key, argv[3]);
        else if (strcmp(argv[1], "stat") == 0 && argc == 3)
            rc = cmd_stat(cl, key);
        else if (strcmp(argv[1], "del") == 0 && argc == 3)
            rc = cmd_del(cl, key);
        else {
            usage();
            rc = 2;
        }
    } else if (strcmp(argv[0], "user") == 0 && argc >= 2) {
        cl_cluster_probe(cl);
        rc = cmd_user(cl, argc, argv);
    } else if (strcmp(argv[0], "map") == 0 && argc == 2 && !strcmp(argv[1], "show")) {
        rc = cmd_map_show(cl);
    } else if (strcmp(argv[0], "map") == 0 && argc == 3 && !strcmp(argv[1], "add")) {
        rc = cmd_map_add(cl, argv[2]);
    } else if (strcmp(argv[0], "map") == 0 && argc == 3 && !strcmp(argv[1], "out")) {
        rc = cmd_map_state(cl, argv[2], CAIRN__NODE_STATE__NODE_OUT);
    } else if (strcmp(argv[0], "map") == 0 && argc == 3 && !strcmp(argv[1], "drain")) {
        rc = cmd_map_state(cl, argv[2], CAIRN__NODE_STATE__NODE_DRAINING);
    } else if (strcmp(argv[0], "map") == 0 && argc == 3 && !strcmp(argv[1], "in")) {
        rc = cmd_map_state(cl, argv[2], CAIRN__NODE_STATE__NODE_UP);
    } else if (strcmp(argv[0], "dnode") == 0) {
        rc = cmd_dnode(cl, argc, argv);
    } else if (strcmp(argv[0], "status") == 0 && argc == 1) {
        rc = cmd_status(cl);
    } else if (strcmp(argv[0], "repair") == 0 && argc == 2 && !strcmp(argv[1], "status")) {
        rc = cmd_repair_status(cl);
    } else if (strcmp(argv[0], "repair") == 0 && !strcmp(argv[1 % argc], "run") &&
               (argc == 2 || (argc == 4 && !strcmp(argv[2], "--mbps") && atoi(argv[3]) > 0))) {
        rc = cmd_repair_run(cl, argc == 4 ? (uint64_t)atoi(argv[3]) : RP_DEFAULT_RATE >> 20);
    } else if (strcmp(argv[0], "gc") == 0 && !strcmp(argv[1 % argc], "run") &&
               (argc == 2 || (argc == 4 && !strcmp(argv[2], "--grace") && atoi(argv[3]) >= 1))) {
        /* The C-nodes' grace (cluster.env GC_GRACE_S), unless told. */
        const char *g = cl_env_get(&env, "GC_GRACE_S");
        uint64_t grace = g && atoi(g) > 0 ? (uint64_t)atoi(g) : GC_DEFAULT_GRACE_MS / 1000;

        rc = cmd_gc_run(cl, argc == 4 ? (uint64_t)atoi(argv[3]) : grace);
    } else if (strcmp(argv[0], "bucket") == 0 && argc >= 2) {
        cl_cluster_probe(cl);
        rc = cmd_bucket(cl, argc, argv);
    } else {
        usage();
        rc = 2;
    }
out:
    cl_cluster_close(cl);
    cl_env_fini(&env);
    return rc;
}
