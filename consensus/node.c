/*
 * node.c - many libraft groups on one node: their I/O through the host, one commit per
 * round, leases (see cs.h for the rules this file keeps).
 *
 * libraft drives each group through a struct raft_io (disk and network) and a struct
 * raft_fsm (the state machine).  Ours turn every libraft request into a write of the current
 * round or a message waiting for the round's end:
 *
 *   set_term, set_vote, truncate   -> host writes now (libraft treats them as synchronous;
 *                                     they are, as far as anyone outside can tell, because
 *                                     nothing leaves the node before the commit)
 *   append, snapshot_put           -> host writes now; the callback waits for the commit
 *   snapshot_get                   -> answered after the commit, from committed state
 *   send                           -> encoded now (borrowing libraft's buffers), sent after
 *                                     the commit, batched per destination
 *   fsm apply                      -> host writes now; the proposer hears after the commit
 *
 * The index of the entry being applied is libraft's last_applied + 1: libraft applies in
 * order and advances last_applied past every entry, barriers and changes included.
 */
#include <raft.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/log.h"
#include "consensus/cs.h"
#include "consensus/wire.h"
#include "raft.pb-c.h"

#define TAG "cs"

/* Snapshot data: a local marker (our state is on disk already) or a dump for a follower. */
#define SNAP_LOCAL 0u
#define SNAP_DUMP 1u
#define SNAP_DUMP_HDR 9u /* type byte + applied index */

/* ---- lists of work that waits for the round's commit ---- */

enum pend_kind { P_APPEND, P_SNAP_PUT, P_SNAP_GET };

struct pending {
    struct pending *next;
    enum pend_kind kind;
    struct cs_group *g;
    union {
        struct {
            struct raft_io_append *req;
            raft_io_append_cb cb;
        } append;
        struct {
            struct raft_io_snapshot_put *req;
            raft_io_snapshot_put_cb cb;
        } put;
        struct {
            struct raft_io_snapshot_get *req;
            raft_io_snapshot_get_cb cb;
        } get;
    };
};

struct out_msg {
    struct out_msg *next;
    bool early; /* a leader's AppendEntries: may leave before the round's commit */
    uint64_t to;
    struct cs_group *g;
    struct cs_wire_out w;
    struct raft_io_send *req;
    raft_io_send_cb cb;
};

/* Something to tell the host (or ourselves) once the round is durable. */
enum done_kind { D_PROPOSAL, D_READY, D_CHANGE };

struct done {
    struct done *next;
    enum done_kind kind;
    int status;
    uint64_t index;
    void *result;
    uint32_t group;
    uint64_t term;          /* D_READY */
    union {
        cs_done_cb prop_cb;
        cs_change_cb change_cb;
    };
    void *arg;
};

struct prop {
    struct raft_apply req; /* first: libraft hands it back */
    struct prop *next;     /* the group's outstanding proposals, in index order */
    struct cs_group *g;
    uint64_t index;
    void *result;
    cs_done_cb cb;
    void *arg;
};

/* A proposed command that has not entered the log yet. */
struct wait_cmd {
    struct wait_cmd *next;
    void *buf; /* raft_malloc'd: libraft takes it */
    size_t len;
    cs_done_cb cb;
    void *arg;
};

struct ack {
    uint64_t id;
    uint64_t stamp;
};

struct cs_group {
    struct cs_node *node;
    uint32_t id;
    struct cs_group *hnext;
    struct raft raft;
    struct raft_io io;
    struct raft_fsm fsm;
    char addr[CS_ADDR_LEN];
    bool raft_inited, started;

    /* io */
    unsigned tick_ms;
    uint64_t next_tick;
    raft_io_tick_cb tick_cb;
    raft_io_recv_cb recv_cb;
    uint64_t next_index;  /* index of the next entry libraft appends */
    unsigned writes_in_round; /* appends and snapshot installs waiting for the commit */
    struct cs_meta meta;  /* as last stored */
    uint64_t applied;     /* the host's applied index */
    uint64_t opened_ms;

    /* leases: follower side (the newest stamp of the leader we follow) */
    uint64_t echo_from, echo_term, echo_stamp;
    /* the role and term last logged (debug: elections, step-downs) */
    unsigned seen_state;
    uint64_t seen_term;
    /* leader side: the newest echo of each follower, in lease_term */
    uint64_t lease_term;
    struct ack acks[CS_MAX_SERVERS];
    unsigned n_acks;
    /* readiness: the barrier a new leader commits before it serves reads */
    struct raft_barrier barrier;
    bool barrier_busy;
    uint64_t barrier_term, ready_term;

    struct prop *props, *props_tail;
    /* Commands waiting for the log (see submit_waiting) */
    struct wait_cmd *wait, **wait_tail;
    bool in_wait_list;
    struct cs_group *wnext;

    struct raft_change change;
    bool change_busy;
    cs_change_cb change_cb;
    void *change_arg;
};

struct cs_node {
    struct cs_config cfg;
    struct cs_host host;
    struct cs_group **table;
    size_t table_size, n_groups;
    bool dirty;
    bool in_flush;
    uint64_t rng;
    struct pending *pend, **pend_tail;
    struct out_msg *out, **out_tail;
    struct done *done, **done_tail;
    struct cs_group *waiting; /* groups with commands waiting for the log */
    struct held *held, **held_tail; /* messages waiting for this round's commit */
    size_t n_held;
    struct cs_stats stats;
};

/* A received message that must wait until the entries its group is writing are committed
 * (see recv_msg), kept encoded. */
struct held {
    struct held *next;
    uint64_t from;
    size_t len;
    uint8_t buf[];
};
#define HELD_MAX 4096u /* beyond: dropped, and the leader sends again */

static void recv_held(struct cs_node *n);

static uint64_t now_ms(struct cs_node *n)
{
    return n->host.now_ms(n->host.arg);
}

static int from_raft_rc(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOMEM:
        return CAIRN_ENOMEM;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
        return CAIRN_ENOTLEADER;
    case RAFT_CANTCHANGE:
        return CAIRN_EAGAIN;
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
        return CAIRN_EEXIST;
    case RAFT_NOTFOUND:
    case RAFT_BADID:
        return CAIRN_ENOENT;
    case RAFT_BADROLE:
        return CAIRN_EINVAL;
    case RAFT_TOOBIG:
        return CAIRN_ETOOBIG;
    default:
        return CAIRN_EIO;
    }
}

static void push_pending(struct cs_node *n, struct pending *p)
{
    p->next = NULL;
    *n->pend_tail = p;
    n->pend_tail = &p->next;
}

static void push_done(struct cs_node *n, struct done *d)
{
    d->next = NULL;
    *n->done_tail = d;
    n->done_tail = &d->next;
}

/* A write of the round failed: the node cannot keep its promises any more. */
static void fatal_store(const char *what, int rc)
{
    log_error(TAG, "%s failed: %s; stopping so nothing is acknowledged that may be lost", what,
              cairn_strerror(rc));
    abort();
}

static void store_meta(struct cs_group *g)
{
    struct cs_node *n = g->node;
    uint8_t *buf;
    size_t len;
    int rc = cs_meta_encode(&g->meta, &buf, &len);

    if (rc)
        fatal_store("encoding group metadata", rc);
    rc = n->host.put_meta(n->host.arg, g->id, buf, len);
    free(buf);
    if (rc)
        fatal_store("storing group metadata", rc);
    n->dirty = true;
}

static int conf_copy(const struct raft_configuration *src, struct raft_configuration *dst)
{
    raft_configuration_init(dst);
    for (unsigned i = 0; i < src->n; i++) {
        if (raft_configuration_add(dst, src->servers[i].id, src->servers[i].address,
                                   src->servers[i].role) != 0) {
            raft_configuration_close(dst);
            raft_configuration_init(dst);
            return CAIRN_ENOMEM;
        }
    }
    return 0;
}

/* ---- raft_io ---- */

static int io_init(struct raft_io *io, raft_id id, const char *address)
{
    (void)io;
    (void)id;
    (void)address;
    return 0;
}

static struct raft_snapshot *snapshot_for_follower(struct cs_group *g);

/* Tell libraft how a deferred write or snapshot read ended (0: the round's commit made it
 * durable; RAFT_CANCELED: its group is closing), and free p. */
static void pending_finish(struct pending *p, int status)
{
    struct cs_group *g = p->g;

    switch (p->kind) {
    case P_APPEND:
        g->writes_in_round--;
        p->append.cb(p->append.req, status);
        break;
    case P_SNAP_PUT:
        g->writes_in_round--;
        p->put.cb(p->put.req, status);
        break;
    case P_SNAP_GET: {
        struct raft_snapshot *snap = status ? NULL : snapshot_for_follower(g);

        p->get.cb(p->get.req, snap, status ? status : snap ? 0 : RAFT_IOERR);
        break;
    }
    }
    free(p);
}

/* Fail what waits for this group in the node's lists: libraft is closing it. */
static void cancel_group_work(struct cs_group *g)
{
    struct cs_node *n = g->node;
    struct pending **pp = &n->pend;

    while (*pp) {
        struct pending *p = *pp;
        if (p->g != g) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        pending_finish(p, RAFT_CANCELED);
    }
    n->pend_tail = &n->pend;
    while (*n->pend_tail)
        n->pend_tail = &(*n->pend_tail)->next;

    struct out_msg **op = &n->out;
    while (*op) {
        struct out_msg *o = *op;
        if (o->g != g) {
            op = &o->next;
            continue;
        }
        *op = o->next;
        cs_wire_out_fini(&o->w);
        if (o->cb)
            o->cb(o->req, RAFT_CANCELED);
        free(o);
    }
    n->out_tail = &n->out;
    while (*n->out_tail)
        n->out_tail = &(*n->out_tail)->next;
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct cs_group *g = io->impl;

    cancel_group_work(g);
    if (cb)
        cb(io);
}

static int io_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                   struct raft_snapshot **snapshot, raft_index *start_index,
                   struct raft_entry *entries[], size_t *n_entries)
{
    struct cs_group *g = io->impl;
    struct cs_node *n = g->node;
    struct cs_loaded l = {0};
    struct raft_snapshot *snap = NULL;
    struct raft_entry *ents = NULL;
    uint8_t *batch = NULL;
    int rc = n->host.load(n->host.arg, g->id, &l);

    if (rc)
        return RAFT_IOERR;
    raft_configuration_close(&g->meta.conf);
    memset(&g->meta, 0, sizeof g->meta);
    raft_configuration_init(&g->meta.conf);
    if (l.meta && cs_meta_decode(l.meta, l.meta_len, &g->meta) != 0) {
        log_error(TAG, "group %u: stored metadata is corrupt", g->id);
        goto bad;
    }
    g->applied = l.applied;
    for (size_t i = 1; i < l.n_entries; i++)
        if (l.entries[i].index != l.entries[i - 1].index + 1)
            goto gap;
    if (g->meta.snap_index && l.n_entries &&
        (l.entries[0].index > g->meta.snap_index + 1 ||
         l.entries[l.n_entries - 1].index < g->meta.snap_index))
        goto gap;
    if (g->meta.snap_index) {
        snap = raft_calloc(1, sizeof *snap);
        if (!snap)
            goto nomem;
        snap->index = g->meta.snap_index;
        snap->term = g->meta.snap_term;
        snap->configuration_index = g->meta.conf_index;
        if (conf_copy(&g->meta.conf, &snap->configuration))
            goto nomem;
        snap->bufs = raft_malloc(sizeof *snap->bufs);
        if (!snap->bufs)
            goto nomem;
        snap->bufs[0].base = raft_malloc(1);
        if (!snap->bufs[0].base)
            goto nomem;
        ((uint8_t *)snap->bufs[0].base)[0] = SNAP_LOCAL;
        snap->bufs[0].len = 1;
        snap->n_bufs = 1;
    }
    if (l.n_entries) {
        size_t total = 0, off = 0;
        for (size_t i = 0; i < l.n_entries; i++)
            total += l.entries[i].len;
        ents = raft_calloc(l.n_entries, sizeof *ents);
        batch = raft_malloc(total ? total : 1);
        if (!ents || !batch)
            goto nomem;
        for (size_t i = 0; i < l.n_entries; i++) {
            ents[i].term = l.entries[i].term;
            ents[i].type = (unsigned short)l.entries[i].type;
            ents[i].buf.base = batch + off;
            ents[i].buf.len = l.entries[i].len;
            ents[i].batch = batch;
            if (l.entries[i].len)
                memcpy(batch + off, l.entries[i].buf, l.entries[i].len);
            off += l.entries[i].len;
        }
        *start_index = l.entries[0].index;
        g->next_index = l.entries[l.n_entries - 1].index + 1;
    } else {
        *start_index = g->meta.snap_index ? g->meta.snap_index + 1 : 1;
        g->next_index = *start_index;
        raft_free(batch);
    }
    *term = g->meta.term;
    *voted_for = g->meta.vote;
    *snapshot = snap;
    *entries = ents;
    *n_entries = l.n_entries;
    n->host.load_done(n->host.arg, &l);
    return 0;

gap:
    log_error(TAG, "group %u: stored log is not contiguous with its snapshot", g->id);
bad:
    n->host.load_done(n->host.arg, &l);
    return RAFT_CORRUPT;
nomem:
    if (snap) {
        raft_configuration_close(&snap->configuration);
        if (snap->bufs)
            raft_free(snap->bufs[0].base);
        raft_free(snap->bufs);
        raft_free(snap);
    }
    raft_free(ents);
    raft_free(batch);
    n->host.load_done(n->host.arg, &l);
    return RAFT_NOMEM;
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                    raft_io_recv_cb recv)
{
    struct cs_group *g = io->impl;

    g->tick_ms = msecs ? msecs : 1;
    g->tick_cb = tick;
    g->recv_cb = recv;
    g->next_tick = now_ms(g->node) + g->tick_ms;
    g->started = true;
    return 0;
}

static int io_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
    struct cs_group *g = io->impl;
    struct cs_node *n = g->node;
    struct raft_buffer buf;
    struct cs_entry e;
    int rc;

    if (g->meta.term != 0 || g->next_index > 1)
        return RAFT_CANTBOOTSTRAP;
    if (raft_configuration_encode(conf, &buf) != 0)
        return RAFT_NOMEM;
    e.index = 1;
    e.term = 1;
    e.type = RAFT_CHANGE;
    e.buf = buf.base;
    e.len = buf.len;
    rc = n->host.put_entries(n->host.arg, g->id, &e, 1);
    raft_free(buf.base);
    if (rc)
        return RAFT_IOERR;
    g->meta.term = 1;
    g->meta.vote = 0;
    store_meta(g); /* durable with the round, before any message of the group leaves */
    g->next_index = 2;
    return 0;
}

static int io_recover(struct raft_io *io, const struct raft_configuration *conf)
{
    (void)io;
    (void)conf;
    return RAFT_NOTFOUND;
}

static int io_set_term(struct raft_io *io, raft_term term)
{
    struct cs_group *g = io->impl;

    g->meta.term = term;
    g->meta.vote = 0;
    store_meta(g);
    return 0;
}

static int io_set_vote(struct raft_io *io, raft_id server_id)
{
    struct cs_group *g = io->impl;

    g->meta.vote = server_id;
    store_meta(g);
    return 0;
}

static int io_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *msg,
                   raft_io_send_cb cb)
{
    struct cs_group *g = io->impl;
    struct cs_node *n = g->node;
    struct out_msg *o = calloc(1, sizeof *o);
    uint64_t stamp = 0;

    if (!o)
        return RAFT_NOMEM;
    if (msg->type == RAFT_IO_APPEND_ENTRIES) {
        stamp = now_ms(n);
    } else if (msg->type == RAFT_IO_APPEND_ENTRIES_RESULT) {
        /* Echo the leader's stamp only while we follow it in the result's term: that is
         * when we refuse to vote for anyone else. */
        if (g->echo_from == msg->server_id && g->echo_term == msg->append_entries_result.term &&
            raft_state(&g->raft) == RAFT_FOLLOWER &&
            g->raft.follower_state.current_leader.id == msg->server_id)
            stamp = g->echo_stamp;
    }
    if (cs_wire_out_init(&o->w, g->id, msg, stamp, n->cfg.max_msg / 2) != 0) {
        free(o);
        return RAFT_NOMEM;
    }
    o->to = msg->server_id;
    o->early = msg->type == RAFT_IO_APPEND_ENTRIES;
    o->g = g;
    o->req = req;
    o->cb = cb;
    *n->out_tail = o;
    n->out_tail = &o->next;
    return 0;
}

static int io_append(struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries[], unsigned count, raft_io_append_cb cb)
{
    struct cs_group *g = io->impl;
    struct cs_node *n = g->node;
    struct cs_entry stack[16] = {{0}}, *e = stack;
    struct pending *p = calloc(1, sizeof *p);
    int rc;

    if (!p)
        return RAFT_NOMEM;
    if (count > CAIRN_ARRAY_SIZE(stack)) {
        e = calloc(count, sizeof *e);
        if (!e) {
            free(p);
            return RAFT_NOMEM;
        }
    }
    for (unsigned i = 0; i < count; i++) {
        e[i].index = g->next_index + i;
        e[i].term = entries[i].term;
        e[i].type = entries[i].type;
        e[i].buf = entries[i].buf.base;
        e[i].len = entries[i].buf.len;
    }
    rc = n->host.put_entries(n->host.arg, g->id, e, count);
    if (e != stack)
        free(e);
    if (rc)
        fatal_store("storing log entries", rc);
    g->next_index += count;
    n->dirty = true;
    g->writes_in_round++;
    p->kind = P_APPEND;
    p->g = g;
    p->append.req = req;
    p->append.cb = cb;
    push_pending(n, p);
    return 0;
}

static int io_truncate(struct raft_io *io, raft_index index)
{
    struct cs_group *g = io->impl;
    struct cs_node *n = g->node;
    int rc = n->host.drop_entries(n->host.arg, g->id, index, UINT64_MAX);

    if (rc)
        fatal_store("truncating the log", rc);
    g->next_index = index;
    n->dirty = true;
    return 0;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static int io_snapshot_put(struct raft_io *io, unsigned trailing,
                           struct raft_io_snapshot_put *req, const struct raft_snapshot *snapshot,
                           raft_io_snapshot_put_cb cb)
{
    struct cs_group *g = io->impl;
    struct cs_node *n = g->node;
    struct pending *p = calloc(1, sizeof *p);
    int rc;

    if (!p)
        return RAFT_NOMEM;
    if (trailing == 0) {
        /* Installing a leader's dump (the wire checked its header): the state, the snapshot's
         * place and the empty log land in the same round, so a crash leaves all or none. */
        const uint8_t *d = snapshot->bufs[0].base;
        size_t len = snapshot->bufs[0].len;

        if (snapshot->n_bufs != 1 || len < SNAP_DUMP_HDR || d[0] != SNAP_DUMP) {
            free(p);
            return RAFT_CORRUPT;
        }
        uint64_t applied = get_u64(d + 1);
        rc = n->host.install(n->host.arg, g->id, applied, d + SNAP_DUMP_HDR,
                             len - SNAP_DUMP_HDR);
        if (rc)
            fatal_store("installing a snapshot", rc);
        g->applied = applied;
        rc = n->host.drop_entries(n->host.arg, g->id, 0, UINT64_MAX);
        if (rc)
            fatal_store("dropping the log", rc);
        g->next_index = snapshot->index + 1;
    } else if (snapshot->index > trailing) {
        rc = n->host.drop_entries(n->host.arg, g->id, 0, snapshot->index - trailing + 1);
        if (rc)
            fatal_store("compacting the log", rc);
    }
    struct raft_configuration conf;
    if (conf_copy(&snapshot->configuration, &conf) != 0) {
        free(p);
        return RAFT_NOMEM;
    }
    raft_configuration_close(&g->meta.conf);
    g->meta.conf = conf;
    g->meta.snap_index = snapshot->index;
    g->meta.snap_term = snapshot->term;
    g->meta.conf_index = snapshot->configuration_index;
    store_meta(g);
    g->writes_in_round++;
    p->kind = P_SNAP_PUT;
    p->g = g;
    p->put.req = req;
    p->put.cb = cb;
    push_pending(n, p);
    return 0;
}

static int io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                           raft_io_snapshot_get_cb cb)
{
    struct cs_group *g = io->impl;
    struct pending *p = calloc(1, sizeof *p);

    if (!p)
        return RAFT_NOMEM;
    p->kind = P_SNAP_GET;
    p->g = g;
    p->get.req = req;
    p->get.cb = cb;
    push_pending(g->node, p);
    return 0;
}

static raft_time io_time(struct raft_io *io)
{
    struct cs_group *g = io->impl;
    return now_ms(g->node);
}

static int io_random(struct raft_io *io, int min, int max)
{
    struct cs_group *g = io->impl;
    struct cs_node *n = g->node;

    /* xorshift64*: election timers only need to differ between nodes. */
    n->rng ^= n->rng >> 12;
    n->rng ^= n->rng << 25;
    n->rng ^= n->rng >> 27;
    uint64_t r = n->rng * 2685821657736338717ull;
    if (max <= min)
        return min;
    return min + (int)(r % (uint64_t)(max - min));
}

/* Build the snapshot a lagging follower gets: the group's snapshot place and membership,
 * and the host's state as the last commit left it.  That state may be ahead of the
 * snapshot's index; the follower then skips the entries it already holds (their index is
 * at most the dump's applied index). */
static struct raft_snapshot *snapshot_for_follower(struct cs_group *g)
{
    struct cs_node *n = g->node;
    struct raft_snapshot *s;
    void *data = NULL;
    size_t len = 0;
    uint64_t applied = 0;

    if (!g->meta.snap_index)
        return NULL;
    if (n->host.dump(n->host.arg, g->id, &applied, &data, &len) != 0)
        return NULL;
    s = raft_calloc(1, sizeof *s);
    if (!s)
        goto fail;
    s->bufs = raft_malloc(sizeof *s->bufs);
    if (!s->bufs)
        goto fail;
    s->bufs[0].base = raft_malloc(SNAP_DUMP_HDR + len);
    if (!s->bufs[0].base)
        goto fail;
    s->bufs[0].len = SNAP_DUMP_HDR + len;
    s->n_bufs = 1;
    ((uint8_t *)s->bufs[0].base)[0] = SNAP_DUMP;
    put_u64((uint8_t *)s->bufs[0].base + 1, applied);
    if (len)
        memcpy((uint8_t *)s->bufs[0].base + SNAP_DUMP_HDR, data, len);
    free(data);
    s->index = g->meta.snap_index;
    s->term = g->meta.snap_term;
    s->configuration_index = g->meta.conf_index;
    if (conf_copy(&g->meta.conf, &s->configuration) != 0) {
        raft_free(s->bufs[0].base);
        goto fail;
    }
    return s;
fail:
    free(data);
    if (s)
        raft_free(s->bufs);
    raft_free(s);
    return NULL;
}

/* ---- raft_fsm ---- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct cs_group *g = fsm->data;
    struct cs_node *n = g->node;
    uint64_t index = g->raft.last_applied + 1;
    void *res = NULL;
    int rc;

    *result = NULL;
    if (index <= g->applied)
        return 0; /* in the state already (replayed after a restart or a dump) */
    rc = n->host.apply(n->host.arg, g->id, index, buf->base, buf->len, &res);
    if (rc)
        fatal_store("applying a command", rc);
    g->applied = index;
    n->dirty = true;
    n->stats.applied++;
    for (struct prop *p = g->props; p; p = p->next) {
        if (p->index == index) {
            p->result = res;
            return 0;
        }
        if (p->index > index)
            break;
    }
    if (res)
        n->host.result_free(n->host.arg, res);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    *bufs = raft_malloc(sizeof **bufs);
    if (!*bufs)
        return RAFT_NOMEM;
    (*bufs)[0].base = raft_malloc(1);
    if (!(*bufs)[0].base) {
        raft_free(*bufs);
        return RAFT_NOMEM;
    }
    ((uint8_t *)(*bufs)[0].base)[0] = SNAP_LOCAL;
    (*bufs)[0].len = 1;
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    /* Nothing to do: a local snapshot is our state on disk, and an installed dump went to
     * the host in the same round as the snapshot's place (io_snapshot_put). */
    (void)fsm;
    raft_free(buf->base);
    return 0;
}

/* ---- groups ---- */

static size_t bucket_of(const struct cs_node *n, uint32_t id)
{
    return (size_t)((id * 2654435761u) & (n->table_size - 1));
}

struct cs_group *cs_group_find(struct cs_node *n, uint32_t id)
{
    for (struct cs_group *g = n->table[bucket_of(n, id)]; g; g = g->hnext)
        if (g->id == id)
            return g;
    return NULL;
}

static int table_grow(struct cs_node *n)
{
    size_t size = n->table_size * 2;
    struct cs_group **t = calloc(size, sizeof *t);

    if (!t)
        return CAIRN_ENOMEM;
    struct cs_group **old = n->table;
    size_t old_size = n->table_size;
    n->table = t;
    n->table_size = size;
    for (size_t i = 0; i < old_size; i++) {
        struct cs_group *g = old[i];
        while (g) {
            struct cs_group *next = g->hnext;
            size_t b = bucket_of(n, g->id);
            g->hnext = t[b];
            t[b] = g;
            g = next;
        }
    }
    free(old);
    return 0;
}

/* After libraft ran for g: a new leader commits a barrier before it serves reads. */
static void barrier_cb(struct raft_barrier *req, int status)
{
    struct cs_group *g = req->data;
    struct done *d;

    g->barrier_busy = false;
    if (status != 0) {
        g->barrier_term = 0;
        return;
    }
    d = calloc(1, sizeof *d);
    if (!d) {
        g->barrier_term = 0; /* try again on the next check */
        return;
    }
    d->kind = D_READY;
    d->group = g->id;
    d->term = g->barrier_term;
    push_done(g->node, d);
}

static void group_check(struct cs_group *g)
{
    unsigned st = (unsigned)raft_state(&g->raft);

    if (st != g->seen_state || g->raft.current_term != g->seen_term) {
        g->seen_state = st;
        g->seen_term = g->raft.current_term;
        log_debug(TAG, "group %u: %s in term %llu (leader %016llx)", g->id,
                  st == RAFT_LEADER      ? "leader"
                  : st == RAFT_CANDIDATE ? "candidate"
                  : st == RAFT_FOLLOWER  ? "follower"
                                         : "unavailable",
                  (unsigned long long)g->raft.current_term,
                  (unsigned long long)cs_group_leader(g));
    }
    if (raft_state(&g->raft) != RAFT_LEADER || g->barrier_busy ||
        g->barrier_term == g->raft.current_term)
        return;
    g->barrier.data = g;
    if (raft_barrier(&g->raft, &g->barrier, barrier_cb) == 0) {
        g->barrier_busy = true;
        g->barrier_term = g->raft.current_term;
    }
}

static void group_free(struct cs_group *g)
{
    raft_configuration_close(&g->meta.conf);
    free(g);
}

static void close_cb(struct raft *r)
{
    struct cs_group *g = r->data;
    group_free(g);
}

int cs_group_open(struct cs_node *n, uint32_t id, const uint64_t *voters, unsigned n_voters,
                  struct cs_group **out)
{
    struct cs_group *g;
    int rv;

    if (n_voters > CS_MAX_SERVERS)
        return CAIRN_EINVAL;
    if (cs_group_find(n, id))
        return CAIRN_EEXIST;
    if (n->n_groups + 1 > n->table_size && table_grow(n) != 0)
        return CAIRN_ENOMEM;
    g = calloc(1, sizeof *g);
    if (!g)
        return CAIRN_ENOMEM;
    g->node = n;
    g->id = id;
    raft_configuration_init(&g->meta.conf);
    g->next_index = 1;
    cs_addr(n->cfg.self, g->addr);
    g->io.version = 1;
    g->io.impl = g;
    g->io.init = io_init;
    g->io.close = io_close;
    g->io.load = io_load;
    g->io.start = io_start;
    g->io.bootstrap = io_bootstrap;
    g->io.recover = io_recover;
    g->io.set_term = io_set_term;
    g->io.set_vote = io_set_vote;
    g->io.send = io_send;
    g->io.append = io_append;
    g->io.truncate = io_truncate;
    g->io.snapshot_put = io_snapshot_put;
    g->io.snapshot_get = io_snapshot_get;
    g->io.time = io_time;
    g->io.random = io_random;
    g->fsm.version = 1;
    g->fsm.data = g;
    g->fsm.apply = fsm_apply;
    g->fsm.snapshot = fsm_snapshot;
    g->fsm.restore = fsm_restore;

    rv = raft_init(&g->raft, &g->io, &g->fsm, n->cfg.self, g->addr);
    if (rv != 0) {
        group_free(g);
        return from_raft_rc(rv);
    }
    g->raft_inited = true;
    g->raft.data = g;
    raft_set_election_timeout(&g->raft, n->cfg.election_ms);
    raft_set_heartbeat_timeout(&g->raft, n->cfg.heartbeat_ms);
    raft_set_install_snapshot_timeout(&g->raft, n->cfg.election_ms * 5);
    raft_set_snapshot_threshold(&g->raft, n->cfg.snapshot_threshold);
    raft_set_snapshot_trailing(&g->raft, n->cfg.snapshot_trailing);
    raft_set_pre_vote(&g->raft, true);

    if (n_voters) {
        /* Bootstrap only a group that has never run: look at what is stored first. */
        struct cs_loaded l = {0};
        bool fresh;

        if (n->host.load(n->host.arg, id, &l) != 0) {
            rv = RAFT_IOERR;
            goto fail;
        }
        fresh = !l.meta && l.n_entries == 0;
        n->host.load_done(n->host.arg, &l);
        if (fresh) {
            struct raft_configuration conf;
            char addr[CS_ADDR_LEN];

            raft_configuration_init(&conf);
            for (unsigned i = 0; i < n_voters; i++) {
                cs_addr(voters[i], addr);
                rv = raft_configuration_add(&conf, voters[i], addr, RAFT_VOTER);
                if (rv) {
                    raft_configuration_close(&conf);
                    goto fail;
                }
            }
            rv = raft_bootstrap(&g->raft, &conf);
            raft_configuration_close(&conf);
            if (rv)
                goto fail;
        }
    }
    g->opened_ms = now_ms(n);
    rv = raft_start(&g->raft);
    if (rv)
        goto fail;
    size_t b = bucket_of(n, id);
    g->hnext = n->table[b];
    n->table[b] = g;
    n->n_groups++;
    if (out)
        *out = g;
    return 0;
fail:
    log_error(TAG, "group %u: cannot start: %s", id, raft_strerror(rv));
    raft_close(&g->raft, close_cb);
    return rv == RAFT_NOMEM ? CAIRN_ENOMEM : rv == RAFT_CANTBOOTSTRAP ? CAIRN_EEXIST : CAIRN_EIO;
}

uint32_t cs_group_id(const struct cs_group *g)
{
    return g->id;
}

uint64_t cs_group_leader(struct cs_group *g)
{
    raft_id id;
    const char *addr;

    raft_leader(&g->raft, &id, &addr);
    return id;
}

uint64_t cs_group_term(struct cs_group *g)
{
    return g->raft.current_term;
}

bool cs_group_is_leader(struct cs_group *g)
{
    return raft_state(&g->raft) == RAFT_LEADER;
}

uint64_t cs_group_applied(struct cs_group *g)
{
    return raft_last_applied(&g->raft);
}

unsigned cs_group_members(struct cs_group *g, uint64_t *ids, unsigned *roles, unsigned max)
{
    const struct raft_configuration *c = &g->raft.configuration;
    unsigned i;

    for (i = 0; i < c->n && i < max; i++) {
        if (ids)
            ids[i] = c->servers[i].id;
        if (roles)
            roles[i] = (unsigned)c->servers[i].role;
    }
    return c->n;
}

/* ---- proposals ---- */

static void prop_unlink(struct cs_group *g, struct prop *p)
{
    struct prop **pp = &g->props;

    g->props_tail = NULL;
    while (*pp) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
        pp = &(*pp)->next;
    }
    for (struct prop *q = g->props; q; q = q->next)
        g->props_tail = q;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct prop *p = (struct prop *)req;
    struct cs_group *g = p->g;
    struct done *d = calloc(1, sizeof *d);

    (void)result; /* ours travels in p->result (fsm_apply) */
    prop_unlink(g, p);
    if (!d) {
        /* Cannot queue the answer: tell the proposer now that we do not know. */
        if (p->result)
            g->node->host.result_free(g->node->host.arg, p->result);
        if (p->cb)
            p->cb(p->arg, CAIRN_EUNKNOWN, p->index, NULL);
        free(p);
        return;
    }
    d->kind = D_PROPOSAL;
    d->status = status == 0 ? 0 : CAIRN_EUNKNOWN;
    d->index = p->index;
    d->result = p->result;
    d->prop_cb = p->cb;
    d->arg = p->arg;
    d->group = g->id;
    push_done(g->node, d);
    free(p);
}

/* Bytes of commands one group puts in its log per batch. */
#define WAIT_BATCH_BYTES(n) ((n)->cfg.max_msg / 4)

int cs_propose(struct cs_group *g, const void *cmd, size_t len, cs_done_cb cb, void *arg)
{
    struct cs_node *n = g->node;
    struct wait_cmd *w;

    if (raft_state(&g->raft) != RAFT_LEADER)
        return CAIRN_ENOTLEADER;
    if (len > WAIT_BATCH_BYTES(n))
        return CAIRN_ETOOBIG;
    w = calloc(1, sizeof *w);
    if (!w)
        return CAIRN_ENOMEM;
    w->buf = raft_malloc(len ? len : 1);
    if (!w->buf) {
        free(w);
        return CAIRN_ENOMEM;
    }
    if (len)
        memcpy(w->buf, cmd, len);
    w->len = len;
    w->cb = cb;
    w->arg = arg;
    if (!g->wait)
        g->wait_tail = &g->wait;
    *g->wait_tail = w;
    g->wait_tail = &w->next;
    if (!g->in_wait_list) {
        g->in_wait_list = true;
        g->wnext = n->waiting;
        n->waiting = g;
    }
    return 0;
}

/* Put waiting commands in the logs of the groups whose log is fully committed.
 *
 * One batch per group at a time, because libraft 0.15 decides a commit only at the leader's
 * last stored index: while a leader keeps appending ahead of its followers' answers, no
 * answer ever matches that index and nothing commits.  Waiting for the batch in flight also
 * groups the commands that arrive meanwhile into the next batch (group commit per shard);
 * the many shards on a node keep the device and the network busy in parallel. */
static void submit_waiting(struct cs_node *n)
{
    struct cs_group *list = n->waiting, *keep = NULL;

    n->waiting = NULL;
    while (list) {
        struct cs_group *g = list;
        list = g->wnext;
        g->in_wait_list = false;
        if (raft_state(&g->raft) != RAFT_LEADER) {
            /* Never in the log: the proposers may try the new leader. */
            struct wait_cmd *w = g->wait;
            g->wait = NULL;
            while (w) {
                struct wait_cmd *next = w->next;
                raft_free(w->buf);
                if (w->cb)
                    w->cb(w->arg, CAIRN_ENOTLEADER, 0, NULL);
                free(w);
                w = next;
            }
            continue;
        }
        if (raft_last_index(&g->raft) == g->raft.commit_index) {
            size_t bytes = 0;
            while (g->wait && bytes < WAIT_BATCH_BYTES(n)) {
                struct wait_cmd *w = g->wait;
                struct prop *p = calloc(1, sizeof *p);
                struct raft_buffer buf = {.base = w->buf, .len = w->len};
                int rv;

                if (!p)
                    break;
                p->g = g;
                p->cb = w->cb;
                p->arg = w->arg;
                rv = raft_apply(&g->raft, &p->req, &buf, 1, apply_cb);
                if (rv != 0) {
                    free(p);
                    break;
                }
                p->index = p->req.index;
                if (g->props_tail)
                    g->props_tail->next = p;
                else
                    g->props = p;
                g->props_tail = p;
                bytes += w->len;
                g->wait = w->next;
                free(w);
            }
        }
        if (g->wait) {
            g->in_wait_list = true;
            g->wnext = keep;
            keep = g;
        }
    }
    /* Callbacks above may have proposed again: keep both. */
    while (keep) {
        struct cs_group *g = keep;
        keep = g->wnext;
        g->wnext = n->waiting;
        n->waiting = g;
    }
}

/* ---- membership ---- */

static void change_cb(struct raft_change *req, int status)
{
    struct cs_group *g = req->data;
    struct done *d = calloc(1, sizeof *d);

    g->change_busy = false;
    if (!d) {
        g->change_cb(g->change_arg, status ? from_raft_rc(status) : 0);
        return;
    }
    d->kind = D_CHANGE;
    d->status = status ? from_raft_rc(status) : 0;
    d->change_cb = g->change_cb;
    d->arg = g->change_arg;
    d->group = g->id;
    push_done(g->node, d);
}

static int change_start(struct cs_group *g, cs_change_cb cb, void *arg)
{
    if (raft_state(&g->raft) != RAFT_LEADER)
        return CAIRN_ENOTLEADER;
    if (g->change_busy)
        return CAIRN_EAGAIN;
    g->change.data = g;
    g->change_cb = cb;
    g->change_arg = arg;
    return 0;
}

int cs_group_add(struct cs_group *g, uint64_t id, cs_change_cb cb, void *arg)
{
    char addr[CS_ADDR_LEN];
    int rc = change_start(g, cb, arg);

    if (rc)
        return rc;
    if (id == 0)
        return CAIRN_EINVAL;
    cs_addr(id, addr);
    rc = from_raft_rc(raft_add(&g->raft, &g->change, id, addr, change_cb));
    if (rc == 0)
        g->change_busy = true;
    return rc;
}

int cs_group_assign(struct cs_group *g, uint64_t id, unsigned role, cs_change_cb cb, void *arg)
{
    int rc = change_start(g, cb, arg);

    if (rc)
        return rc;
    if (role > CS_SPARE)
        return CAIRN_EINVAL;
    rc = from_raft_rc(raft_assign(&g->raft, &g->change, id, (int)role, change_cb));
    if (rc == 0)
        g->change_busy = true;
    return rc;
}

int cs_group_remove(struct cs_group *g, uint64_t id, cs_change_cb cb, void *arg)
{
    int rc = change_start(g, cb, arg);

    if (rc)
        return rc;
    rc = from_raft_rc(raft_remove(&g->raft, &g->change, id, change_cb));
    if (rc == 0)
        g->change_busy = true;
    return rc;
}

/* ---- leases ---- */

static void lease_ack(struct cs_group *g, uint64_t from, uint64_t stamp)
{
    if (g->lease_term != g->raft.current_term) {
        g->lease_term = g->raft.current_term;
        g->n_acks = 0;
    }
    for (unsigned i = 0; i < g->n_acks; i++) {
        if (g->acks[i].id == from) {
            if (stamp > g->acks[i].stamp)
                g->acks[i].stamp = stamp;
            return;
        }
    }
    if (g->n_acks < CS_MAX_SERVERS) {
        g->acks[g->n_acks].id = from;
        g->acks[g->n_acks].stamp = stamp;
        g->n_acks++;
    }
}

int cs_group_read_ok(struct cs_group *g)
{
    struct cs_node *n = g->node;
    const struct raft_configuration *c = &g->raft.configuration;
    uint64_t stamps[CS_MAX_SERVERS];
    unsigned voters = 0;
    uint64_t now, lease_ms;

    if (raft_state(&g->raft) != RAFT_LEADER)
        return CAIRN_ENOTLEADER;
    if (g->raft.transfer || g->ready_term != g->raft.current_term)
        return CAIRN_EAGAIN;
    now = now_ms(n);
    for (unsigned i = 0; i < c->n && voters < CS_MAX_SERVERS; i++) {
        uint64_t s = 0;

        if (c->servers[i].role != RAFT_VOTER)
            continue;
        if (c->servers[i].id == n->cfg.self) {
            s = now;
        } else if (g->lease_term == g->raft.current_term) {
            for (unsigned j = 0; j < g->n_acks; j++)
                if (g->acks[j].id == c->servers[i].id)
                    s = g->acks[j].stamp;
        }
        /* insertion sort, newest first */
        unsigned k = voters++;
        while (k > 0 && stamps[k - 1] < s) {
            stamps[k] = stamps[k - 1];
            k--;
        }
        stamps[k] = s;
    }
    if (voters == 0)
        return CAIRN_EAGAIN;
    uint64_t t = stamps[voters / 2]; /* the newest stamp a majority has echoed */
    lease_ms = (uint64_t)n->cfg.election_ms * (100 - CS_DRIFT_PCT) / 100;
    if (t == 0 || now >= t + lease_ms)
        return CAIRN_EAGAIN;
    return 0;
}

/* ---- the node ---- */

int cs_node_create(const struct cs_config *cfg, const struct cs_host *host, struct cs_node **out)
{
    struct cs_node *n;

    if (!cfg || !host || cfg->self == 0 || !host->load || !host->load_done || !host->put_meta ||
        !host->put_entries || !host->drop_entries || !host->commit || !host->apply ||
        !host->result_free || !host->dump || !host->install || !host->send || !host->now_ms)
        return CAIRN_EINVAL;
    n = calloc(1, sizeof *n);
    if (!n)
        return CAIRN_ENOMEM;
    n->cfg = *cfg;
    n->host = *host;
    if (!n->cfg.election_ms)
        n->cfg.election_ms = CS_DEFAULT_ELECTION_MS;
    if (!n->cfg.heartbeat_ms)
        n->cfg.heartbeat_ms = CS_DEFAULT_HEARTBEAT_MS;
    if (!n->cfg.snapshot_threshold)
        n->cfg.snapshot_threshold = 256;
    if (!n->cfg.snapshot_trailing)
        n->cfg.snapshot_trailing = 64;
    if (!n->cfg.max_msg)
        n->cfg.max_msg = CS_DEFAULT_MAX_MSG;
    n->rng = n->cfg.seed ? n->cfg.seed : (cfg->self * 0x9e3779b97f4a7c15ull) ^ cairn_now_ns();
    if (!n->rng)
        n->rng = 1;
    n->table_size = 64;
    n->table = calloc(n->table_size, sizeof *n->table);
    if (!n->table) {
        free(n);
        return CAIRN_ENOMEM;
    }
    n->pend_tail = &n->pend;
    n->out_tail = &n->out;
    n->done_tail = &n->done;
    *out = n;
    return 0;
}

static void deliver_done(struct cs_node *n, bool unknown)
{
    while (n->done) {
        struct done *d = n->done;
        n->done = d->next;
        if (!n->done)
            n->done_tail = &n->done;
        switch (d->kind) {
        case D_PROPOSAL:
            if (d->prop_cb)
                d->prop_cb(d->arg, unknown ? CAIRN_EUNKNOWN : d->status, d->index,
                           unknown ? NULL : d->result);
            if (d->result)
                n->host.result_free(n->host.arg, d->result);
            break;
        case D_READY: {
            struct cs_group *g = unknown ? NULL : cs_group_find(n, d->group);
            if (g && g->raft.current_term == d->term)
                g->ready_term = d->term;
            break;
        }
        case D_CHANGE:
            d->change_cb(d->arg, unknown ? CAIRN_EUNKNOWN : d->status);
            break;
        }
        free(d);
    }
}

void cs_node_destroy(struct cs_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->table_size; i++) {
        struct cs_group *g = n->table[i];
        while (g) {
            struct cs_group *next = g->hnext;
            struct wait_cmd *w = g->wait;
            g->wait = NULL;
            while (w) { /* never in the log */
                struct wait_cmd *wn = w->next;
                raft_free(w->buf);
                if (w->cb)
                    w->cb(w->arg, CAIRN_ENOTLEADER, 0, NULL);
                free(w);
                w = wn;
            }
            raft_close(&g->raft, close_cb); /* frees g from close_cb */
            g = next;
        }
    }
    /* What was not flushed never became durable: its proposers must not count on it. */
    deliver_done(n, true);
    while (n->held) {
        struct held *h = n->held;
        n->held = h->next;
        free(h);
    }
    free(n->table);
    free(n);
}

static void emit(struct cs_node *n, uint64_t to, Cairn__RaftMsg **msgs, size_t count)
{
    Cairn__RaftBatch batch = CAIRN__RAFT_BATCH__INIT;
    size_t len;
    uint8_t *buf;

    batch.from = n->cfg.self;
    batch.n_msgs = count;
    batch.msgs = msgs;
    len = cairn__raft_batch__get_packed_size(&batch);
    buf = malloc(len ? len : 1);
    if (!buf)
        return; /* lost, which Raft tolerates */
    cairn__raft_batch__pack(&batch, buf);
    n->host.send(n->host.arg, to, buf, len);
    n->stats.batches_out++;
    n->stats.msgs_out += count;
    free(buf);
}

/* Send what the round made: one batch per destination, in the order the messages were
 * made, split where a batch would pass max_msg. */
/* Send the messages of list, batched per peer. */
static void send_list(struct cs_node *n, struct out_msg *list)
{
    struct out_msg **v = NULL;
    Cairn__RaftMsg **msgs = NULL;
    size_t cap = 0;

    while (list) {
        uint64_t to = list->to;
        size_t count = 0, k = 0, bytes = 16;
        bool fits = true;

        for (struct out_msg **pp = &list; *pp;) {
            struct out_msg *o = *pp;
            if (o->to != to) {
                pp = &o->next;
                continue;
            }
            *pp = o->next;
            if (count == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                struct out_msg **nv = realloc(v, ncap * sizeof *nv);
                Cairn__RaftMsg **nm = nv ? realloc(msgs, ncap * sizeof *nm) : NULL;
                if (nv)
                    v = nv;
                if (nm)
                    msgs = nm;
                if (!nv || !nm) {
                    fits = false; /* no memory: this peer's messages are lost this round */
                    cs_wire_out_fini(&o->w);
                    if (o->cb)
                        o->cb(o->req, 0);
                    free(o);
                    continue;
                }
                cap = ncap;
            }
            v[count++] = o;
        }
        for (size_t i = 0; fits && i < count; i++) {
            size_t sz = cairn__raft_msg__get_packed_size(&v[i]->w.pb) + 8;
            if (sz + 16 > n->cfg.max_msg) {
                log_warn(TAG, "group %u: a %zu-byte message is over the %u-byte limit: dropped",
                         v[i]->g->id, sz, n->cfg.max_msg);
                continue;
            }
            if (k && bytes + sz > n->cfg.max_msg) {
                emit(n, to, msgs, k);
                k = 0;
                bytes = 16;
            }
            msgs[k++] = &v[i]->w.pb;
            bytes += sz;
        }
        if (fits && k)
            emit(n, to, msgs, k);
        for (size_t i = 0; i < count; i++) {
            struct out_msg *o = v[i];
            cs_wire_out_fini(&o->w);
            if (o->cb)
                o->cb(o->req, 0);
            free(o);
        }
    }
    free(v);
    free(msgs);
}

static void send_all(struct cs_node *n)
{
    struct out_msg *list = n->out;

    n->out = NULL;
    n->out_tail = &n->out;
    send_list(n, list);
}

/* A leader's AppendEntries leave before the round's commit: the entries they carry are in
 * the leader's log whether or not its own copy is durable yet, and the leader counts itself
 * toward a majority only once its own append completed (after the commit), so followers
 * write their copies while the leader writes its own (Raft thesis, 10.2.1) and an update
 * waits for one commit less.  Votes, vote requests and acknowledgements still wait. */
static void send_early(struct cs_node *n)
{
    struct out_msg *early = NULL, **etail = &early, **pp = &n->out;

    while (*pp) {
        struct out_msg *o = *pp;

        if (!o->early) {
            pp = &o->next;
            continue;
        }
        *pp = o->next;
        o->next = NULL;
        *etail = o;
        etail = &o->next;
    }
    n->out_tail = pp;
    if (early)
        send_list(n, early);
}

void cs_node_flush(struct cs_node *n)
{
    if (n->in_flush)
        return;
    n->in_flush = true;
    submit_waiting(n);
    for (;;) {
        send_early(n);
        if (n->dirty) {
            int rc = n->host.commit(n->host.arg);
            if (rc)
                fatal_store("commit", rc);
            n->dirty = false;
            n->stats.commits++;
        }
        if (!n->pend && n->held) {
            recv_held(n); /* may write again: the loop commits it */
            submit_waiting(n);
            continue;
        }
        if (!n->pend)
            break;
        struct pending *list = n->pend;
        n->pend = NULL;
        n->pend_tail = &n->pend;
        while (list) {
            struct pending *p = list;
            list = p->next;
            struct cs_group *g = p->g;
            pending_finish(p, 0);
            group_check(g);
        }
        /* Results of what was just applied go out before the commit that makes the applied
         * state durable: the entries are committed (on a majority's flash), so the state is
         * rebuilt from the log after a crash, and nothing reads this node's store before the
         * loop above commits it (reads come in a later round of the one thread).  This takes
         * one commit off every update's latency. */
        deliver_done(n, false);
    }
    send_all(n);
    deliver_done(n, false);
    n->in_flush = false;
}

static bool has_member(const struct raft_configuration *c, uint64_t id)
{
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == id)
            return true;
    return false;
}

static void hold(struct cs_node *n, uint64_t from, const Cairn__RaftMsg *pb)
{
    size_t len = cairn__raft_msg__get_packed_size(pb);
    struct held *h;

    if (n->n_held >= HELD_MAX || !(h = malloc(sizeof *h + len))) {
        n->stats.deferred++; /* lost: the leader sends it again */
        return;
    }
    h->next = NULL;
    h->from = from;
    h->len = cairn__raft_msg__pack(pb, h->buf);
    if (!n->held)
        n->held_tail = &n->held;
    *n->held_tail = h;
    n->held_tail = &h->next;
    n->n_held++;
}

/* One message of a batch from node from. */
static void recv_msg(struct cs_node *n, uint64_t from, const char *from_addr,
                     const Cairn__RaftMsg *pb, uint64_t now)
{
    struct cs_group *g = cs_group_find(n, pb->group);
    struct raft_message m;

    n->stats.msgs_in++;
    if (!g || !g->started)
        return;
    if (g->raft.configuration.n && !has_member(&g->raft.configuration, from)) {
        /* Only members speak in a group (a node that was removed, or a stranger).  A node
         * with no membership yet is waiting for a leader that added it. */
        n->stats.bad_in++;
        return;
    }
    if (pb->type == RAFT_IO_REQUEST_VOTE && now < g->opened_ms + n->cfg.election_ms) {
        /* Just started: we may have promised a leader, before a crash, not to vote for
         * anyone else until its lease ran out; we no longer know. */
        n->stats.votes_held++;
        return;
    }
    if (g->writes_in_round && ((pb->type == RAFT_IO_APPEND_ENTRIES && pb->n_entries) ||
                               pb->type == RAFT_IO_INSTALL_SNAPSHOT)) {
        /* Entries already wait for this round's commit.  New ones could make libraft
         * truncate what it is still writing, so they wait until the commit (cs_node_flush
         * takes them then): dropping them would stall the leader's pipeline until its next
         * heartbeat. */
        hold(n, from, pb);
        return;
    }
    if (cs_wire_to_raft(pb, from, from_addr, &m) != 0) {
        n->stats.bad_in++;
        return;
    }
    if (pb->type == RAFT_IO_INSTALL_SNAPSHOT &&
        (m.install_snapshot.data.len < SNAP_DUMP_HDR ||
         ((uint8_t *)m.install_snapshot.data.base)[0] != SNAP_DUMP)) {
        cs_wire_raft_free(&m);
        n->stats.bad_in++;
        return;
    }
    if (pb->type == RAFT_IO_APPEND_ENTRIES && pb->stamp && pb->term >= g->raft.current_term) {
        if (g->echo_from != from || g->echo_term != pb->term || pb->stamp > g->echo_stamp)
            g->echo_stamp = pb->stamp;
        g->echo_from = from;
        g->echo_term = pb->term;
    }
    if (pb->type == RAFT_IO_APPEND_ENTRIES_RESULT && pb->stamp &&
        raft_state(&g->raft) == RAFT_LEADER && pb->term == g->raft.current_term)
        lease_ack(g, from, pb->stamp);
    g->recv_cb(&g->io, &m);
    group_check(g);
}

/* Take the held messages, in arrival order (after a commit: their groups may write again). */
static void recv_held(struct cs_node *n)
{
    struct held *list = n->held;
    char from_addr[CS_ADDR_LEN];
    uint64_t now = now_ms(n);

    n->held = NULL;
    n->held_tail = &n->held;
    n->n_held = 0;
    while (list) {
        struct held *h = list;
        Cairn__RaftMsg *pb = cairn__raft_msg__unpack(NULL, h->len, h->buf);

        list = h->next;
        if (pb) { /* it decoded and passed the checks when it arrived */
            n->stats.msgs_in--; /* counted once, when it arrived */
            cs_addr(h->from, from_addr);
            recv_msg(n, h->from, from_addr, pb, now);
            cairn__raft_msg__free_unpacked(pb, NULL);
        }
        free(h);
    }
}

void cs_node_recv(struct cs_node *n, const void *buf, size_t len)
{
    Cairn__RaftBatch *b = cairn__raft_batch__unpack(NULL, len, buf);
    char from_addr[CS_ADDR_LEN];
    uint64_t now;

    if (!b) {
        n->stats.bad_in++;
        return;
    }
    if (b->from == 0 || b->from == n->cfg.self) {
        n->stats.bad_in++;
        goto out;
    }
    n->stats.batches_in++;
    cs_addr(b->from, from_addr);
    now = now_ms(n);
    for (size_t i = 0; i < b->n_msgs; i++)
        recv_msg(n, b->from, from_addr, b->msgs[i], now);
out:
    cairn__raft_batch__free_unpacked(b, NULL);
}

void cs_node_tick(struct cs_node *n)
{
    uint64_t now = now_ms(n);

    for (size_t i = 0; i < n->table_size; i++) {
        for (struct cs_group *g = n->table[i]; g; g = g->hnext) {
            if (!g->started || now < g->next_tick)
                continue;
            g->next_tick = now + g->tick_ms;
            g->tick_cb(&g->io);
            group_check(g);
        }
    }
}

int cs_node_next_tick_ms(struct cs_node *n)
{
    uint64_t now = now_ms(n), next = UINT64_MAX;

    for (size_t i = 0; i < n->table_size; i++)
        for (struct cs_group *g = n->table[i]; g; g = g->hnext)
            if (g->started && g->next_tick < next)
                next = g->next_tick;
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (int)CAIRN_MIN(next - now, (uint64_t)INT32_MAX);
}

void cs_node_stats(const struct cs_node *n, struct cs_stats *out)
{
    *out = n->stats;
}
