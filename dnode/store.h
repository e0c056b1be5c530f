/*
 * store.h - the D-node fragment store: one device (or preallocated file), io_uring, O_DIRECT.
 *
 * On-disk layout (docs/architecture.md has the full picture):
 *   block 0          superblock: magic, format version, device size, a random format id
 *   blocks 1..N      extents; every extent starts with a 4 KiB header block
 *                    (USED: fragment id, length, CRC32C, owner and birth time; FREE: length
 *                    only) followed by the fragment payload padded to 4 KiB.
 * From block 1 up to the high-water mark the device is tiled by extents; each header says
 * how long its extent is, so a restart walks the headers and rebuilds the in-memory index
 * and free list.  The walk stops at the first block whose header is not a valid header of
 * this format (format id + header CRC), which is the high-water mark.  Headers fit in the
 * first 512-byte sector of their block, so a torn write leaves the old or the new header.
 *
 * Durability: the device is opened O_DIRECT | O_DSYNC, so a write's io_uring completion
 * means the bytes are on stable storage; callbacks fire only after that.
 *
 * Zero copy: the caller hands put() a block-aligned buffer whose first CAIRN_BLOCK bytes are
 * scratch space (the transport header slot) and whose payload starts at CAIRN_BLOCK.  The store
 * writes its extent header into that scratch block and submits header + payload as one write.
 * get() reads header + payload into a caller buffer of the same shape.
 *
 * Fragments are immutable: put() of an existing id fails with CAIRN_EEXIST.
 * Threading: a store belongs to one thread (the D-node loop); no locks.
 */
#ifndef CAIRN_DN_STORE_H
#define CAIRN_DN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dn_store;

/* A fragment's name: stripe id, stripe generation, index within the stripe. */
struct dn_fid {
    uint64_t stripe;
    uint32_t gen;
    uint32_t index;
};

/* Who a fragment belongs to, kept in its header so a sweep of the device can find the record
 * that names it: the object and the stripe number within it (the fid's stripe is a hash of the
 * two).  Zero: not known (fragments written before headers carried it). */
struct dn_owner {
    uint64_t object;
    uint64_t stripe_no;
};

/* One fragment as dn_store_list() reports it. */
struct dn_frag_info {
    struct dn_fid fid;
    uint32_t len;
    bool bad; /* a read (the scrub's or a client's) found its CRC wrong */
    struct dn_owner owner;
    uint64_t birth_ms; /* wall clock, ms, when the store took the put */
};

struct dn_store_stats {
    uint64_t dev_size;   /* bytes */
    uint64_t used;       /* bytes in USED extents, headers included */
    uint64_t frag_count; /* fragments stored */
    uint64_t bad_count;  /* of them, found corrupt by a read and not replaced yet */
    uint64_t lost_runs;  /* rotten extent headers open() stepped over (fragments lost) */
    uint64_t hwm;        /* high-water mark, bytes */
};

/* Largest fragment payload the store accepts. */
#define DN_MAX_FRAG (16u << 20)

/* Completion callback: status is 0 or a CAIRN_E* code.  For get, len and crc describe the
 * fragment read (payload at buf + CAIRN_BLOCK); for put and del they are 0. */
typedef void (*dn_store_cb)(void *arg, int status, uint32_t len, uint32_t crc);

/* Open the device or file at path.  If it has no valid superblock and create_size > 0, it is
 * created/extended to create_size bytes (rounded down to CAIRN_BLOCK) and formatted; if it has
 * one, create_size is ignored and the existing index is rebuilt by walking the extent headers.
 * queue_depth is the io_uring size (0 = default 256).
 * Returns 0, CAIRN_EINVAL (no superblock and create_size == 0, or too small), CAIRN_EIO, CAIRN_ENOMEM. */
int dn_store_open(const char *path, uint64_t create_size, unsigned queue_depth,
                  struct dn_store **out);
/* Close; waits for in-flight I/O to finish first (their callbacks run).  Accepts NULL. */
void dn_store_close(struct dn_store *s);

/* An eventfd that becomes readable when I/O completions are ready; pass it to epoll/uv_poll
 * and call dn_store_poll() when it fires. */
int dn_store_event_fd(const struct dn_store *s);
/* Reap completions and run their callbacks; never blocks.  Returns the number reaped. */
int dn_store_poll(struct dn_store *s);
/* Block until every submitted operation has completed and its callback has run (tests, close). */
void dn_store_drain(struct dn_store *s);

/* Store a fragment of len bytes (1 <= len <= DN_MAX_FRAG) whose payload is at buf + CAIRN_BLOCK,
 * owned by *owner (NULL: unknown).
 * buf must be CAIRN_BLOCK-aligned and hold CAIRN_BLOCK + ALIGN_UP(len, CAIRN_BLOCK) bytes; the
 * store overwrites the first block and zeroes the padding after the payload.  The store checks
 * the payload against crc (CRC32C) before writing: a mismatch fails with CAIRN_ECRC.
 * Borrows buf until the callback runs.  cb runs from dn_store_poll() once the fragment is
 * durable, or with an error (CAIRN_EEXIST, CAIRN_ENOSPC, CAIRN_ECRC, CAIRN_EIO).  Errors found
 * before any I/O are also reported through cb (from the next dn_store_poll()), so the return
 * value is 0 unless the arguments are invalid (CAIRN_EINVAL; cb does not run). */
int dn_store_put(struct dn_store *s, const struct dn_fid *fid, const struct dn_owner *owner,
                 void *buf, uint32_t len, uint32_t crc, dn_store_cb cb, void *arg);

/* Read a fragment into buf (CAIRN_BLOCK-aligned, buf_len bytes; the payload lands at
 * buf + CAIRN_BLOCK).  The store verifies the stored CRC32C of the payload and fails with
 * CAIRN_ECRC on mismatch; the fragment is then marked bad (listed by dn_store_list, counted in
 * bad_count) until a later read finds it whole or it is deleted.  Errors: CAIRN_ENOENT, CAIRN_ETOOBIG (buf_len too small), CAIRN_ECRC,
 * CAIRN_EIO.  Borrows buf until cb runs; same reporting rules as put. */
int dn_store_get(struct dn_store *s, const struct dn_fid *fid, void *buf, size_t buf_len,
                 dn_store_cb cb, void *arg);

/* Delete a fragment: its header is rewritten as FREE (durable before cb) and its space reused.
 * Errors: CAIRN_ENOENT, CAIRN_EIO. */
int dn_store_del(struct dn_store *s, const struct dn_fid *fid, dn_store_cb cb, void *arg);

/* Look a fragment up in the in-memory index without I/O.  Returns true and fills len/crc
 * (either may be NULL) if present. */
bool dn_store_lookup(const struct dn_store *s, const struct dn_fid *fid, uint32_t *len,
                     uint32_t *crc);

/* Is the fragment present and marked bad? */
bool dn_store_is_bad(const struct dn_store *s, const struct dn_fid *fid);

/* List stored fragments (durable ones only; with bad_only, only those marked bad) from *cursor
 * on (0: the start) into out[0 .. max - 1], without I/O.  Returns how many; *cursor is where
 * the next call goes on, and *more is false once the listing reached the end.  The order is
 * the index's: a listing that spans a growth of the index (many puts) may repeat or skip some
 * fragments, so callers treat a listing as a sample taken over time, not a snapshot. */
size_t dn_store_list(const struct dn_store *s, uint64_t *cursor, bool bad_only,
                     struct dn_frag_info *out, size_t max, bool *more);

void dn_store_stats(const struct dn_store *s, struct dn_store_stats *st);

/* The random 64-bit id written in the superblock when the device was formatted: the D-node's
 * identity in the cluster map (it survives restarts and address changes, and a reformatted
 * device is a new node).  Never 0. */
uint64_t dn_store_id(const struct dn_store *s);

#endif
