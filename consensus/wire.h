/*
 * wire.h - libraft messages and group metadata in their protobuf form (proto/raft.proto).
 *
 * Internal to consensus/.  Outgoing: a struct raft_message becomes a Cairn__RaftMsg that
 * borrows the message's entry buffers (libraft keeps them until the send completes), so a
 * log entry is copied once, into the batch that goes to the host.  Incoming: a decoded
 * Cairn__RaftMsg becomes a struct raft_message whose entries, configuration and snapshot
 * data are raft_malloc'd, because libraft takes them over.
 */
#ifndef CAIRN_CS_WIRE_H
#define CAIRN_CS_WIRE_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.pb-c.h"

/* An outgoing message: the protobuf and the arrays it points to. */
struct cs_wire_out {
    Cairn__RaftMsg pb;
    Cairn__RaftEntry *entry_pbs;
    Cairn__RaftEntry **entry_ptrs;
    Cairn__RaftConf conf;
    Cairn__RaftServer *server_pbs;
    Cairn__RaftServer **server_ptrs;
};

/* Describe m for group in out (zeroed first).  AppendEntries carries at most max_bytes of
 * entry data (but always at least one entry): a shorter AppendEntries is still a valid one,
 * and the leader sends the rest when the follower answers.  Returns 0 or CAIRN_ENOMEM /
 * CAIRN_EINVAL (unknown type). */
int cs_wire_out_init(struct cs_wire_out *out, uint32_t group, const struct raft_message *m,
                     uint64_t stamp, size_t max_bytes);
void cs_wire_out_fini(struct cs_wire_out *out);

/* Build *m from a received message (from node from, whose address string is from_addr,
 * borrowed by m).  Returns 0, CAIRN_EPROTO (a field out of range) or CAIRN_ENOMEM; on error
 * nothing is left allocated.  On success the allocations belong to libraft once m is passed
 * to its receive callback, or to cs_wire_raft_free() if it is dropped instead. */
int cs_wire_to_raft(const Cairn__RaftMsg *pb, uint64_t from, const char *from_addr,
                    struct raft_message *m);
void cs_wire_raft_free(struct raft_message *m);

/* Does buf hold a membership as libraft encodes it in a log entry (bounds checked)? */
bool cs_wire_conf_entry_ok(const uint8_t *buf, size_t len);

/* Configurations: ours carry ids and roles; addresses are the ids in hex (cs_addr). */
int cs_wire_conf_to_pb(const struct raft_configuration *c, Cairn__RaftConf *pb,
                       Cairn__RaftServer **servers, Cairn__RaftServer ***ptrs);
int cs_wire_conf_from_pb(const Cairn__RaftConf *pb, struct raft_configuration *c);

/* The address string of node id ("%016llx"). */
#define CS_ADDR_LEN 17
void cs_addr(uint64_t id, char out[CS_ADDR_LEN]);

/* A group's stored metadata blob. */
struct cs_meta {
    uint64_t term;
    uint64_t vote;
    uint64_t snap_index;      /* 0: no snapshot */
    uint64_t snap_term;
    uint64_t conf_index;
    struct raft_configuration conf; /* of the snapshot */
};
/* Encode into a malloc'd buffer.  Returns 0 or CAIRN_ENOMEM. */
int cs_meta_encode(const struct cs_meta *m, uint8_t **buf, size_t *len);
/* Decode (m->conf initialised here; close it with raft_configuration_close).  Returns 0,
 * CAIRN_EPROTO or CAIRN_ENOMEM. */
int cs_meta_decode(const void *buf, size_t len, struct cs_meta *m);

#endif
