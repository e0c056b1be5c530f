/*
 * cs.h - metadata shards replicated by Raft: many consensus groups on one node, one durable
 * write per round for all of them.
 *
 * The protocol is libraft's (Debian libraft-dev, the C Raft of LXD/dqlite): leader election
 * with pre-vote, log replication, snapshots, membership changes.  This module gives it what a
 * Cairn D-node has instead of libraft's own disk and TCP back-ends:
 *
 *   - Many groups per node.  A D-node holds replicas of thousands of shards; each is one
 *     struct cs_group with its own struct raft, all driven from one thread by one cs_node.
 *   - One durable write per round.  Everything the groups write while the node handles a
 *     batch of incoming messages and ticks (terms, votes, log entries, snapshots, applied
 *     state) goes to the host's store as part of the current round, and cs_node_flush() makes
 *     the round durable with one host commit (one fsync for all groups).  Nothing leaves the
 *     node before the writes it depends on are durable: outgoing messages and the callbacks
 *     libraft waits for are released by cs_node_flush() after the commit.  So a vote is never
 *     sent before it is on disk and a follower never acknowledges entries it could still
 *     lose.  A leader's AppendEntries are the exception: they leave before the commit, so
 *     followers write while the leader does (the leader counts itself toward a majority only
 *     once its own append is durable; Raft thesis 10.2.1).  A proposal's result goes out once its entry is committed (durable on a
 *     majority) and applied, before the commit that makes the applied state durable: a crash
 *     then only replays the entry from the log, so a client is still never told of an
 *     update a crash could undo, and nothing reads the store before that commit (reads come
 *     in a later round of the same thread).
 *   - A state machine that lives on disk.  The host applies committed commands to its own
 *     store in the same round as the log writes and records the applied index with them.  A
 *     restarted node replays only entries after that index, and a snapshot is the host's
 *     state itself: taking one costs nothing, and a follower too far behind receives a dump
 *     of the group's state (cs_host.dump) and installs it in one round.
 *   - Leases.  Every AppendEntries carries the leader's clock when it was built; followers
 *     echo the newest such stamp in their answers.  A follower that took a message from the
 *     current leader refuses votes for anyone else until its election timer runs out (at
 *     least election_ms after it heard from the leader; libraft's rule of section 4.2.3),
 *     and a node that just started refuses votes for election_ms.  So once a majority echoed
 *     a stamp t, no other leader can exist before t + election_ms on any clock that runs at
 *     most CS_DRIFT_PCT percent fast or slow, and the leader serves reads alone until then
 *     (cs_group_read_ok).  A new leader first commits a barrier in its term, so it has
 *     applied everything any earlier leader acknowledged before it serves a read.
 *
 * Node ids are 64-bit, never 0, stable for the life of a D-node (its device's id, not its
 * address).  libraft wants an address string per server; ours is the id in hex, and the host
 * maps ids to fabric addresses.
 *
 * Threading: a cs_node and its groups belong to one thread; nothing here locks.
 *
 * Ownership: the host's buffers passed in are borrowed for the call; buffers passed to the
 * host (send, dump) are the node's unless said otherwise.
 */
#ifndef CAIRN_CS_H
#define CAIRN_CS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cs_node;
struct cs_group;

#define CS_MAX_SERVERS 16u       /* members of one group (voters + standbys) */
#define CS_DRIFT_PCT 10u         /* clock rate error the leases allow for */
#define CS_DEFAULT_ELECTION_MS 1000u
#define CS_DEFAULT_HEARTBEAT_MS 100u
#define CS_DEFAULT_MAX_MSG (4u << 20)

/* Log entry types (libraft's values). */
enum { CS_ENTRY_COMMAND = 1, CS_ENTRY_BARRIER = 2, CS_ENTRY_CHANGE = 3 };
/* Member roles (libraft's values). */
enum { CS_STANDBY = 0, CS_VOTER = 1, CS_SPARE = 2 };

/* One stored log entry; buf is borrowed for the call it is passed to. */
struct cs_entry {
    uint64_t index;
    uint64_t term;
    unsigned type;
    const void *buf;
    size_t len;
};

/* A group's stored state as the host finds it at open: what was committed plus what the
 * current round wrote (a group bootstrapped in this round loads its first entry).  meta is
 * the blob the group last stored with put_meta (NULL, 0 if none: a group never started);
 * entries are in index order without gaps.  Filled by cs_host.load; the host keeps the
 * memory until load_done. */
struct cs_loaded {
    const void *meta;
    size_t meta_len;
    struct cs_entry *entries;
    size_t n_entries;
    uint64_t applied; /* the host state machine's applied index (0: nothing applied) */
};

struct cs_host {
    void *arg;

    /* ---- the store: every write joins the current round ---- */
    int (*load)(void *arg, uint32_t group, struct cs_loaded *out);
    void (*load_done)(void *arg, struct cs_loaded *l);
    /* Replace the group's small metadata blob (term, vote, snapshot: the node's format). */
    int (*put_meta)(void *arg, uint32_t group, const void *buf, size_t len);
    /* Store entries (consecutive indexes), replacing any with the same index. */
    int (*put_entries)(void *arg, uint32_t group, const struct cs_entry *e, size_t n);
    /* Forget the entries with from <= index < to (to = UINT64_MAX: to the end). */
    int (*drop_entries)(void *arg, uint32_t group, uint64_t from, uint64_t to);
    /* Make every write of the round durable, in one step: after a crash all of the round is
     * there or none of it.  A failure here is fatal to the node (the writes' fate is
     * unknown, so nothing may be acknowledged): cs_node_flush() aborts the process. */
    int (*commit)(void *arg);

    /* ---- the state machine ---- */
    /* Apply a committed command at index (> every index applied before) and record index as
     * the applied one, both as part of the round.  *result (may stay NULL) goes to the
     * proposer's callback on the node that proposed it, and to result_free everywhere. */
    int (*apply)(void *arg, uint32_t group, uint64_t index, const void *cmd, size_t len,
                 void **result);
    void (*result_free)(void *arg, void *result);
    /* The group's durable state for a follower that is too far behind: the applied index
     * and a malloc'd encoding the node frees.  Reads what the last commit left. */
    int (*dump)(void *arg, uint32_t group, uint64_t *applied, void **data, size_t *len);
    /* Replace the group's state with a dump (as part of the round). */
    int (*install)(void *arg, uint32_t group, uint64_t applied, const void *data, size_t len);

    /* ---- the network and the clock ---- */
    /* Send len bytes to node to (a RaftBatch; hand it to cs_node_recv there).  Best effort:
     * Raft copes with loss, duplication and reordering.  buf is borrowed for the call. */
    void (*send)(void *arg, uint64_t to, const void *buf, size_t len);
    /* A monotonic clock in milliseconds. */
    uint64_t (*now_ms)(void *arg);
};

struct cs_config {
    uint64_t self;                /* this node's id, > 0 */
    unsigned election_ms;         /* 0: CS_DEFAULT_ELECTION_MS */
    unsigned heartbeat_ms;        /* 0: CS_DEFAULT_HEARTBEAT_MS */
    unsigned snapshot_threshold;  /* log entries between snapshots; 0: 256 */
    unsigned snapshot_trailing;   /* entries kept behind a snapshot; 0: 64 */
    uint32_t max_msg;             /* largest batch the host sends; 0: CS_DEFAULT_MAX_MSG */
    uint64_t seed;                /* election timer randomness; 0: from self and the clock */
};

/* Create a node.  host is copied.  Returns 0, CAIRN_EINVAL, CAIRN_ENOMEM. */
int cs_node_create(const struct cs_config *cfg, const struct cs_host *host,
                   struct cs_node **out);
/* Close every group and free the node.  Writes not yet flushed are abandoned, as in a crash
 * (the host decides whether its round is committed).  Accepts NULL. */
void cs_node_destroy(struct cs_node *n);

/* Open group id on this node from its stored state and start its Raft instance.  voters
 * (n_voters > 0) bootstraps a group that has no stored state with that first membership;
 * every first member must bootstrap with the same list.  With no voters and no state the
 * group waits to be contacted by a leader that added it.  Returns 0, CAIRN_EEXIST (already
 * open), CAIRN_EINVAL, CAIRN_EIO (store), CAIRN_ENOMEM. */
int cs_group_open(struct cs_node *n, uint32_t id, const uint64_t *voters, unsigned n_voters,
                  struct cs_group **out);
struct cs_group *cs_group_find(struct cs_node *n, uint32_t id);

/* ---- the round ---- */

/* Hand a received RaftBatch to its groups.  Bad input is dropped (counted); the node never
 * trusts a length or a count it did not check. */
void cs_node_recv(struct cs_node *n, const void *buf, size_t len);
/* Run the groups' timers that are due (elections, heartbeats). */
void cs_node_tick(struct cs_node *n);
/* Milliseconds until cs_node_tick() has work (0 = now). */
int cs_node_next_tick_ms(struct cs_node *n);
/* End the round: commit the store, let libraft see its writes done (which may write more:
 * commit again until nothing is left), then send the messages and complete the proposals. */
void cs_node_flush(struct cs_node *n);

/* ---- a group ---- */

/* Completion of a proposal: status 0 (applied; result as the host's apply made it, borrowed
 * for the call), CAIRN_ENOTLEADER (this node stopped leading before the command was in its
 * log: it was not applied), or CAIRN_EUNKNOWN (leadership was lost after the command entered
 * the log: a later leader may still apply it). */
typedef void (*cs_done_cb)(void *arg, int status, uint64_t index, void *result);

/* Propose a command (copied; cb may be NULL).  Only a leader takes proposals: otherwise CAIRN_ENOTLEADER and
 * cb never runs.  Returns 0 or CAIRN_ENOTLEADER / CAIRN_ETOOBIG / CAIRN_ENOMEM. */
int cs_propose(struct cs_group *g, const void *cmd, size_t len, cs_done_cb cb, void *arg);

/* May this node answer a read of the group from its own state now?  0: yes (leader, lease
 * valid, everything committed before its term applied and durable); CAIRN_ENOTLEADER: ask
 * cs_group_leader(); CAIRN_EAGAIN: leader, but not ready yet (retry shortly). */
int cs_group_read_ok(struct cs_group *g);

/* The leader this node knows of (0: none), and the current term. */
uint64_t cs_group_leader(struct cs_group *g);
uint64_t cs_group_term(struct cs_group *g);
bool cs_group_is_leader(struct cs_group *g);
uint32_t cs_group_id(const struct cs_group *g);
/* Applied index (commands and everything before them). */
uint64_t cs_group_applied(struct cs_group *g);

/* The group's membership as this node knows it (the latest, maybe uncommitted). */
unsigned cs_group_members(struct cs_group *g, uint64_t *ids, unsigned *roles, unsigned max);

/* Membership changes (leader only), one at a time: add a node as a spare, give a member a
 * role (CS_STANDBY to catch up, then CS_VOTER), remove a member.  cb runs with 0 once the
 * change is committed, or an error.  Returns 0, CAIRN_ENOTLEADER, CAIRN_EAGAIN (a change is
 * in progress), CAIRN_EINVAL, CAIRN_EEXIST, CAIRN_ENOENT. */
typedef void (*cs_change_cb)(void *arg, int status);
int cs_group_add(struct cs_group *g, uint64_t id, cs_change_cb cb, void *arg);
int cs_group_assign(struct cs_group *g, uint64_t id, unsigned role, cs_change_cb cb, void *arg);
int cs_group_remove(struct cs_group *g, uint64_t id, cs_change_cb cb, void *arg);

/* Counters, for the host's metrics. */
struct cs_stats {
    uint64_t commits;      /* host commits */
    uint64_t msgs_out, msgs_in, batches_out, batches_in, bad_in;
    uint64_t applied;      /* commands applied */
    uint64_t votes_held;   /* votes refused in the quiet time after a start */
    uint64_t deferred;     /* entries dropped while earlier ones waited for the commit (held
                            * ones are taken after it; these found the hold full) */
};
void cs_node_stats(const struct cs_node *n, struct cs_stats *out);

#endif
