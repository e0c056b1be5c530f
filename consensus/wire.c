/*
 * wire.c - libraft messages <-> proto/raft.proto (see wire.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "consensus/cs.h"
#include "consensus/wire.h"

/* Entries one received AppendEntries may carry: a bound on what a peer makes us allocate
 * besides the bytes themselves, which the transport already bounds. */
#define WIRE_MAX_ENTRIES 65536u

void cs_addr(uint64_t id, char out[CS_ADDR_LEN])
{
    snprintf(out, CS_ADDR_LEN, "%016" PRIx64, id);
}

int cs_wire_conf_to_pb(const struct raft_configuration *c, Cairn__RaftConf *pb,
                       Cairn__RaftServer **servers, Cairn__RaftServer ***ptrs)
{
    cairn__raft_conf__init(pb);
    *servers = NULL;
    *ptrs = NULL;
    if (c->n == 0)
        return 0;
    *servers = calloc(c->n, sizeof **servers);
    *ptrs = calloc(c->n, sizeof **ptrs);
    if (!*servers || !*ptrs) {
        free(*servers);
        free(*ptrs);
        *servers = NULL;
        *ptrs = NULL;
        return CAIRN_ENOMEM;
    }
    for (unsigned i = 0; i < c->n; i++) {
        cairn__raft_server__init(&(*servers)[i]);
        (*servers)[i].id = c->servers[i].id;
        (*servers)[i].role = (uint32_t)c->servers[i].role;
        (*ptrs)[i] = &(*servers)[i];
    }
    pb->n_servers = c->n;
    pb->servers = *ptrs;
    return 0;
}

int cs_wire_conf_from_pb(const Cairn__RaftConf *pb, struct raft_configuration *c)
{
    raft_configuration_init(c);
    if (!pb)
        return 0;
    if (pb->n_servers > CS_MAX_SERVERS)
        return CAIRN_EPROTO;
    for (size_t i = 0; i < pb->n_servers; i++) {
        const Cairn__RaftServer *s = pb->servers[i];
        char addr[CS_ADDR_LEN];

        if (s->id == 0 || s->role > RAFT_SPARE)
            goto bad;
        cs_addr(s->id, addr);
        int rv = raft_configuration_add(c, s->id, addr, (int)s->role);
        if (rv == RAFT_NOMEM) {
            raft_configuration_close(c);
            raft_configuration_init(c);
            return CAIRN_ENOMEM;
        }
        if (rv != 0) /* a duplicate id */
            goto bad;
    }
    return 0;
bad:
    raft_configuration_close(c);
    raft_configuration_init(c);
    return CAIRN_EPROTO;
}

int cs_wire_out_init(struct cs_wire_out *out, uint32_t group, const struct raft_message *m,
                     uint64_t stamp, size_t max_bytes)
{
    Cairn__RaftMsg *pb = &out->pb;

    memset(out, 0, sizeof *out);
    cairn__raft_msg__init(pb);
    pb->group = group;
    pb->type = m->type;
    switch (m->type) {
    case RAFT_IO_REQUEST_VOTE: {
        const struct raft_request_vote *a = &m->request_vote;
        pb->term = a->term;
        pb->candidate = a->candidate_id;
        pb->last_log_index = a->last_log_index;
        pb->last_log_term = a->last_log_term;
        pb->disrupt_leader = a->disrupt_leader;
        pb->pre_vote = a->pre_vote;
        return 0;
    }
    case RAFT_IO_REQUEST_VOTE_RESULT: {
        const struct raft_request_vote_result *a = &m->request_vote_result;
        pb->term = a->term;
        pb->vote_granted = a->vote_granted;
        pb->pre_vote_result = (uint32_t)a->pre_vote;
        return 0;
    }
    case RAFT_IO_APPEND_ENTRIES: {
        const struct raft_append_entries *a = &m->append_entries;
        unsigned n = 0;
        size_t bytes = 0;

        pb->term = a->term;
        pb->prev_log_index = a->prev_log_index;
        pb->prev_log_term = a->prev_log_term;
        pb->leader_commit = a->leader_commit;
        pb->stamp = stamp;
        while (n < a->n_entries && (n == 0 || bytes + a->entries[n].buf.len <= max_bytes)) {
            bytes += a->entries[n].buf.len;
            n++;
        }
        if (n == 0)
            return 0;
        out->entry_pbs = calloc(n, sizeof *out->entry_pbs);
        out->entry_ptrs = calloc(n, sizeof *out->entry_ptrs);
        if (!out->entry_pbs || !out->entry_ptrs) {
            cs_wire_out_fini(out);
            return CAIRN_ENOMEM;
        }
        for (unsigned i = 0; i < n; i++) {
            Cairn__RaftEntry *e = &out->entry_pbs[i];
            cairn__raft_entry__init(e);
            e->term = a->entries[i].term;
            e->type = a->entries[i].type;
            e->data.data = a->entries[i].buf.base; /* borrowed until the send completes */
            e->data.len = a->entries[i].buf.len;
            out->entry_ptrs[i] = e;
        }
        pb->n_entries = n;
        pb->entries = out->entry_ptrs;
        return 0;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT: {
        const struct raft_append_entries_result *a = &m->append_entries_result;
        pb->term = a->term;
        pb->rejected = a->rejected;
        pb->last_log_index = a->last_log_index;
        pb->stamp = stamp;
        return 0;
    }
    case RAFT_IO_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *a = &m->install_snapshot;
        int rc;

        pb->term = a->term;
        pb->snap_index = a->last_index;
        pb->snap_term = a->last_term;
        pb->conf_index = a->conf_index;
        pb->data.data = a->data.base;
        pb->data.len = a->data.len;
        rc = cs_wire_conf_to_pb(&a->conf, &out->conf, &out->server_pbs, &out->server_ptrs);
        if (rc)
            return rc;
        pb->conf = &out->conf;
        return 0;
    }
    case RAFT_IO_TIMEOUT_NOW: {
        const struct raft_timeout_now *a = &m->timeout_now;
        pb->term = a->term;
        pb->last_log_index = a->last_log_index;
        pb->last_log_term = a->last_log_term;
        return 0;
    }
    default:
        return CAIRN_EINVAL;
    }
}

void cs_wire_out_fini(struct cs_wire_out *out)
{
    free(out->entry_pbs);
    free(out->entry_ptrs);
    free(out->server_pbs);
    free(out->server_ptrs);
    out->entry_pbs = NULL;
    out->entry_ptrs = NULL;
    out->server_pbs = NULL;
    out->server_ptrs = NULL;
}

/* Copy received entries into one raft_malloc'd batch, as libraft expects of entries that
 * came from the network. */
static int entries_from_pb(const Cairn__RaftMsg *pb, struct raft_append_entries *a)
{
    size_t total = 0;
    uint8_t *batch;

    a->entries = NULL;
    a->n_entries = 0;
    if (pb->n_entries == 0)
        return 0;
    if (pb->n_entries > WIRE_MAX_ENTRIES)
        return CAIRN_EPROTO;
    /* A leader's log never has terms above its own or going down (libraft trusts that). */
    uint64_t prev_term = pb->prev_log_index ? pb->prev_log_term : 0;
    for (size_t i = 0; i < pb->n_entries; i++) {
        const Cairn__RaftEntry *e = pb->entries[i];
        if (e->type < RAFT_COMMAND || e->type > RAFT_CHANGE || e->term == 0 ||
            e->term > pb->term || e->term < prev_term)
            return CAIRN_EPROTO;
        prev_term = e->term;
        /* libraft decodes a membership entry trusting its counts and lengths */
        if (e->type == RAFT_CHANGE && !cs_wire_conf_entry_ok(e->data.data, e->data.len))
            return CAIRN_EPROTO;
        total += e->data.len;
    }
    a->entries = raft_calloc(pb->n_entries, sizeof *a->entries);
    batch = raft_malloc(total ? total : 1);
    if (!a->entries || !batch) {
        raft_free(a->entries);
        raft_free(batch);
        a->entries = NULL;
        return CAIRN_ENOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < pb->n_entries; i++) {
        const Cairn__RaftEntry *e = pb->entries[i];
        struct raft_entry *re = &a->entries[i];

        re->term = e->term;
        re->type = (unsigned short)e->type;
        re->buf.base = batch + off;
        re->buf.len = e->data.len;
        re->batch = batch;
        if (e->data.len)
            memcpy(batch + off, e->data.data, e->data.len);
        off += e->data.len;
    }
    a->n_entries = (unsigned)pb->n_entries;
    return 0;
}

/* libraft's encoding of a membership (raft_configuration_encode): format byte 1, u64 count,
 * then per server u64 id, NUL-terminated address, u8 role; integers little-endian. */
bool cs_wire_conf_entry_ok(const uint8_t *p, size_t len)
{
    size_t off = 9;
    uint64_t n = 0;

    if (len < 9 || p[0] != 1)
        return false;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)p[1 + i] << (8 * i);
    if (n == 0 || n > CS_MAX_SERVERS)
        return false;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id = 0;
        size_t alen = 0;

        if (len - off < 8)
            return false;
        for (int b = 0; b < 8; b++)
            id |= (uint64_t)p[off + b] << (8 * b);
        off += 8;
        if (id == 0)
            return false;
        while (off + alen < len && p[off + alen] != 0)
            alen++;
        if (off + alen >= len || alen == 0 || alen >= 64)
            return false;
        off += alen + 1;
        if (off >= len || p[off] > RAFT_SPARE)
            return false;
        off++;
    }
    return true;
}

int cs_wire_to_raft(const Cairn__RaftMsg *pb, uint64_t from, const char *from_addr,
                    struct raft_message *m)
{
    int rc;

    memset(m, 0, sizeof *m);
    if (pb->term == 0) /* every Raft message is sent in a term >= 1 */
        return CAIRN_EPROTO;
    m->type = (unsigned short)pb->type;
    m->server_id = from;
    m->server_address = from_addr;
    switch (pb->type) {
    case RAFT_IO_REQUEST_VOTE: {
        struct raft_request_vote *a = &m->request_vote;
        if (pb->candidate == 0)
            return CAIRN_EPROTO;
        a->term = pb->term;
        a->candidate_id = pb->candidate;
        a->last_log_index = pb->last_log_index;
        a->last_log_term = pb->last_log_term;
        a->disrupt_leader = pb->disrupt_leader;
        a->pre_vote = pb->pre_vote;
        return 0;
    }
    case RAFT_IO_REQUEST_VOTE_RESULT: {
        struct raft_request_vote_result *a = &m->request_vote_result;
        if (pb->pre_vote_result > 2)
            return CAIRN_EPROTO;
        a->term = pb->term;
        a->vote_granted = pb->vote_granted;
        a->pre_vote = (raft_tribool)pb->pre_vote_result;
        return 0;
    }
    case RAFT_IO_APPEND_ENTRIES: {
        struct raft_append_entries *a = &m->append_entries;
        a->term = pb->term;
        a->prev_log_index = pb->prev_log_index;
        a->prev_log_term = pb->prev_log_term;
        a->leader_commit = pb->leader_commit;
        return entries_from_pb(pb, a);
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT: {
        struct raft_append_entries_result *a = &m->append_entries_result;
        a->term = pb->term;
        a->rejected = pb->rejected;
        a->last_log_index = pb->last_log_index;
        return 0;
    }
    case RAFT_IO_INSTALL_SNAPSHOT: {
        struct raft_install_snapshot *a = &m->install_snapshot;
        if (pb->snap_index == 0 || pb->snap_term == 0 || pb->conf_index > pb->snap_index)
            return CAIRN_EPROTO;
        a->term = pb->term;
        a->last_index = pb->snap_index;
        a->last_term = pb->snap_term;
        a->conf_index = pb->conf_index;
        rc = cs_wire_conf_from_pb(pb->conf, &a->conf);
        if (rc)
            return rc;
        if (a->conf.n == 0) {
            raft_configuration_close(&a->conf);
            return CAIRN_EPROTO;
        }
        a->data.len = pb->data.len;
        a->data.base = raft_malloc(pb->data.len ? pb->data.len : 1);
        if (!a->data.base) {
            raft_configuration_close(&a->conf);
            return CAIRN_ENOMEM;
        }
        if (pb->data.len)
            memcpy(a->data.base, pb->data.data, pb->data.len);
        return 0;
    }
    case RAFT_IO_TIMEOUT_NOW: {
        struct raft_timeout_now *a = &m->timeout_now;
        a->term = pb->term;
        a->last_log_index = pb->last_log_index;
        a->last_log_term = pb->last_log_term;
        return 0;
    }
    default:
        return CAIRN_EPROTO;
    }
}

void cs_wire_raft_free(struct raft_message *m)
{
    switch (m->type) {
    case RAFT_IO_APPEND_ENTRIES:
        if (m->append_entries.n_entries) {
            raft_free(m->append_entries.entries[0].batch);
            raft_free(m->append_entries.entries);
        }
        break;
    case RAFT_IO_INSTALL_SNAPSHOT:
        raft_configuration_close(&m->install_snapshot.conf);
        raft_free(m->install_snapshot.data.base);
        break;
    default:
        break;
    }
}

int cs_meta_encode(const struct cs_meta *m, uint8_t **buf, size_t *len)
{
    Cairn__RaftGroupMeta pb = CAIRN__RAFT_GROUP_META__INIT;
    Cairn__RaftConf conf;
    Cairn__RaftServer *servers, **ptrs;
    int rc;

    pb.term = m->term;
    pb.vote = m->vote;
    pb.snap_index = m->snap_index;
    pb.snap_term = m->snap_term;
    pb.conf_index = m->conf_index;
    rc = cs_wire_conf_to_pb(&m->conf, &conf, &servers, &ptrs);
    if (rc)
        return rc;
    pb.conf = &conf;
    *len = cairn__raft_group_meta__get_packed_size(&pb);
    *buf = malloc(*len ? *len : 1);
    if (!*buf) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    cairn__raft_group_meta__pack(&pb, *buf);
out:
    free(servers);
    free(ptrs);
    return rc;
}

int cs_meta_decode(const void *buf, size_t len, struct cs_meta *m)
{
    Cairn__RaftGroupMeta *pb;
    int rc;

    memset(m, 0, sizeof *m);
    raft_configuration_init(&m->conf);
    pb = cairn__raft_group_meta__unpack(NULL, len, buf);
    if (!pb)
        return CAIRN_EPROTO;
    m->term = pb->term;
    m->vote = pb->vote;
    m->snap_index = pb->snap_index;
    m->snap_term = pb->snap_term;
    m->conf_index = pb->conf_index;
    rc = cs_wire_conf_from_pb(pb->conf, &m->conf);
    cairn__raft_group_meta__free_unpacked(pb, NULL);
    return rc;
}
