/*
 * store.c - the D-node fragment store: extents tiled from block 1, io_uring, O_DIRECT | O_DSYNC.
 *
 * One file on purpose (about 1,300 lines): the on-device layout, the in-memory index built from
 * it and the write ordering that keeps a crash safe are one argument and are read together.
 *
 * Layout (all integers little-endian, the host order on every platform we build for):
 *   block 0: superblock {magic, version, block size, device size, random 64-bit format id, CRC32C}.
 *   blocks 1..hwm-1: extents.  An extent is one header block followed by payload blocks; the
 *   header {magic, format id, USED|FREE, extent_blocks, for USED: fid, len, payload CRC32C; CRC32C
 *   of the header} sits in the first 56 bytes, inside one sector, so a torn write leaves the old
 *   or the new header.  Block hwm holds no valid header (or hwm is the end of the device).
 * open() walks the chain of headers from block 1 and stops at the first invalid one: that is the
 * high-water mark.  The format id makes headers of an earlier format of the same file invalid.
 *
 * In memory: a hash index fid -> extent, a list of free regions sorted by block (one per FREE
 * extent on disk, see free_insert()), and the high-water mark.  Allocation is first fit from the
 * free list, else from the tail (bumping hwm).
 *
 * Crash ordering.  Invariant: the chain on disk, followed from block 1, only ever passes through
 * headers we wrote on purpose, and it reaches every acknowledged fragment.  The danger is that a
 * new boundary lands on a block that still holds something stale, e.g. an old FREE or USED header
 * of this format inside reused space, or an unacknowledged header beyond hwm left by a crash.
 * So every block that becomes a boundary is written before the header that points at it:
 *   - Allocating n blocks at the start p of a free region [p, b) with n < b - p first writes a
 *     "marker" at p + n: a FREE header for [p + n, b).  Writing FREE@x->b anywhere inside an
 *     all-FREE stretch that ends at a boundary b keeps the tiling valid whether x is an existing
 *     boundary or not, so markers need no ordering among themselves.
 *   - Allocating from the tail [hwm, end) writes a zero block at hwm + n as the marker, so the
 *     walk stops there even if a crash had left a valid header at that block.
 *   - Only when the marker is durable (O_DSYNC completion) is the header+payload write submitted.
 * A remainder's start p + n is "established" (the on-disk chain reaches it) only once the header
 * at p is durable and p itself is established.  To keep puts concurrent, the next allocation may
 * take the remainder before that: it records the earlier put as its predecessor, waits for the
 * predecessor's marker before writing its own header to that same block (no two writes to one
 * block are ever in flight), and is acknowledged only after its predecessor is established.
 * Puts from one region thus write in parallel and acknowledge in address order.
 * A free region is always exactly one FREE extent on disk: a put's multi-block write is not atomic,
 * so if its payload covered the header of a second FREE extent that the chain still passes
 * through, a crash could tear the write, keep the old header in front and cut the chain there.
 * Space is coalesced by writing one FREE header over the union instead, a single-sector write:
 * a delete writes FREE at the start of the free region before it (if no put is working in that
 * region) covering that region, the deleted extent and the free region after it, which drops the
 * two old headers from the chain at once; the neighbours leave the free list while that write is
 * in flight.  open() rewrites runs of adjacent FREE extents the same way.  The deleted space (and
 * the neighbours) return to the free list only after the write is durable and no get still reads
 * the extent.
 * A failed device write leaves the on-disk state of that block unknown, so the store then fails
 * every later put and delete with CAIRN_EIO (gets still work) until it is reopened.
 */
#include "dnode/store.h"

#include "common/cairn.h"
#include "common/clock.h"
#include "common/log.h"
#include "ec/ec.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the on-disk format is little-endian; add byte swapping for this host"
#endif

#define TAG "store"

#define SB_MAGIC 0x3142534e52494143ull  /* "CAIRNSB1" */
#define HDR_MAGIC 0x3158454e52494143ull /* "CAIRNEX1" */
#define SB_VERSION 1u
#define HDR_USED 0x44455355u /* "USED" */
#define HDR_FREE 0x45455246u /* "FREE" */
#define DEFAULT_DEPTH 256u
#define MAX_DEPTH 4096u
#define MIN_BLOCKS 3u /* superblock, one header, one payload block */

struct dn_sb {
    uint64_t magic;
    uint32_t version;
    uint32_t block_size;
    uint64_t dev_size;
    uint64_t format_id;
    uint32_t reserved;
    uint32_t crc; /* CRC32C of the bytes before it */
};

struct dn_hdr {
    uint64_t magic;
    uint64_t format_id;
    uint32_t type;
    uint32_t len; /* payload bytes (USED) */
    uint64_t extent_blocks;
    uint64_t stripe;
    uint32_t gen;
    uint32_t index;
    uint32_t pcrc; /* CRC32C of the payload (USED) */
    uint32_t hcrc; /* CRC32C of the bytes before it */
};

/* A USED header's owner and birth time sit after the header proper, under a CRC of their own:
 * headers written before these existed hold zeros there, which fail the check and read as
 * "owner unknown", while the chain walk, which trusts only the header proper, stays as it was. */
struct dn_hdr_owner {
    uint64_t object;
    uint64_t stripe_no;
    uint64_t birth_ms;
    uint32_t magic;
    uint32_t ocrc; /* CRC32C of the bytes before it */
};

#define HDR_OWNER_OFF 64u
#define OWNER_MAGIC 0x4e574f43u /* "COWN" */

_Static_assert(sizeof(struct dn_hdr) <= HDR_OWNER_OFF, "the owner follows the header proper");
_Static_assert(HDR_OWNER_OFF + sizeof(struct dn_hdr_owner) <= 512,
               "a header must fit in one sector");
_Static_assert(sizeof(struct dn_sb) <= 512, "the superblock must fit in one sector");

/* After the superblock proper, under a CRC of its own (a device formatted before it existed
 * has zeros there): the hint, a block number no extent header has ever been written at or
 * beyond.  It lets open() tell the end of the chain from a header that rotted in the middle
 * of it (see store_load()).  It is raised in steps of HINT_STEP, durably, before a tail
 * allocation could put a header past it. */
struct dn_sb_ext {
    uint64_t magic;
    uint64_t hint;
    uint32_t reserved;
    uint32_t crc; /* CRC32C of the bytes before it */
};

#define SB_EXT_OFF 128u
#define SB_EXT_MAGIC 0x544e4948424e5243ull /* "CRNBHINT" */
#define HINT_STEP ((64u << 20) / CAIRN_BLOCK) /* blocks: an open scans at most this far */
#define RESYNC_CHUNK 256u                     /* blocks read at once while looking */

_Static_assert(SB_EXT_OFF >= sizeof(struct dn_sb) && SB_EXT_OFF + sizeof(struct dn_sb_ext) <= 512,
               "the hint shares the superblock's sector");

enum ext_state { EXT_INFLIGHT, EXT_PRESENT, EXT_DELETING };

/* An extent that holds, or is being written to hold, a fragment. */
struct dn_ext {
    struct dn_fid fid;
    struct dn_ext *hnext;
    uint64_t blk; /* header block */
    uint64_t nblk;
    uint32_t len;
    uint32_t crc;
    uint32_t readers;  /* gets in flight */
    bool free_pending; /* deleted, space returns when readers drops to 0 */
    bool bad;          /* a read found the payload or header wrong (dn_store_list) */
    struct dn_owner owner;
    uint64_t birth_ms;
    uint64_t free_blk; /* after delete: the coalesced free extent this one became part of */
    uint64_t free_nblk;
    uint8_t state;
};

struct dn_op;

/* A free region [blk, blk + nblk).  dep: the put whose remainder this is, until that put is
 * established (the on-disk chain reaches blk); NULL when it already does. */
struct dn_free {
    uint64_t blk;
    uint64_t nblk;
    struct dn_op *dep;
    struct dn_free *prev;
    struct dn_free *next;
};

enum op_type { OP_PUT, OP_GET, OP_DEL };

struct dn_io {
    struct dn_op *op;
    struct dn_io *next; /* pending queue */
    void *buf;
    uint64_t off;
    uint32_t len;
    uint32_t done;
    bool write;
};

struct dn_op {
    enum op_type type;
    int status;
    dn_store_cb cb;
    void *arg;
    void *buf;
    struct dn_ext *ext;
    uint32_t len; /* get result */
    uint32_t crc;
    uint64_t mblk; /* del: the FREE extent written, the deleted one merged with idle neighbours */
    uint64_t mnblk;
    void *blk;          /* own 4 KiB block: marker or FREE header for del */
    struct dn_io io[2]; /* [0] marker, [1] header + payload (or the one I/O of get/del) */
    unsigned ios;       /* queued or in flight */
    bool has_marker;
    bool marker_done;
    bool main_queued;
    bool main_done;
    bool established;
    bool complete; /* status final; callback once ios == 0 */
    bool listed;
    struct dn_op *pred; /* put whose remainder we took, until it is established */
    struct dn_op *succ;
    struct dn_free *dep_region; /* region whose start waits on us */
    bool dep_tail;
    struct dn_op *next_done;
};

struct dn_store {
    int fd;
    int efd;
    struct io_uring ring;
    unsigned depth;
    unsigned inflight; /* SQEs handed to the ring */
    bool unsubmitted;
    bool failed;
    uint64_t dev_blocks;
    uint64_t hwm;
    uint64_t hint;       /* see struct dn_sb_ext; 0: the device has none yet */
    uint64_t lost_runs;  /* rotten headers open() stepped over */
    void *sb_blk;        /* block 0 as on disk, to rewrite with a new hint */
    uint64_t format_id;
    struct dn_ext **bucket;
    size_t nbucket;
    size_t nindex;
    struct dn_free *free_head;
    struct dn_free *free_tail;
    struct dn_op *tail_dep;
    struct dn_io *pend_head;
    struct dn_io *pend_tail;
    struct dn_op *done_head;
    struct dn_op *done_tail;
    uint64_t outstanding; /* ops whose callback has not run */
    uint64_t used_blocks;
    uint64_t frag_count;
    uint64_t bad_count;
    void *zero_blk;
};

/* ---- small helpers ---- */

static uint64_t blocks_for(uint32_t len)
{
    return 1 + CAIRN_ALIGN_UP((uint64_t)len, CAIRN_BLOCK) / CAIRN_BLOCK;
}

static bool fid_eq(const struct dn_fid *a, const struct dn_fid *b)
{
    return a->stripe == b->stripe && a->gen == b->gen && a->index == b->index;
}

static uint64_t fid_hash(const struct dn_fid *f)
{
    uint64_t x = f->stripe ^ ((uint64_t)f->gen << 32 | f->index) * 0x9e3779b97f4a7c15ull;

    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void *blk_alloc(void)
{
    void *p = NULL;

    if (posix_memalign(&p, CAIRN_BLOCK, CAIRN_BLOCK))
        return NULL;
    memset(p, 0, CAIRN_BLOCK);
    return p;
}

static void hdr_fill_free(const struct dn_store *s, void *blk, uint64_t nblk)
{
    struct dn_hdr *h = blk;

    memset(blk, 0, CAIRN_BLOCK);
    h->magic = HDR_MAGIC;
    h->format_id = s->format_id;
    h->type = HDR_FREE;
    h->extent_blocks = nblk;
    h->hcrc = ec_crc32c(0, h, offsetof(struct dn_hdr, hcrc));
}

static void hdr_fill_used(const struct dn_store *s, void *blk, const struct dn_ext *e)
{
    struct dn_hdr *h = blk;

    memset(blk, 0, CAIRN_BLOCK);
    h->magic = HDR_MAGIC;
    h->format_id = s->format_id;
    h->type = HDR_USED;
    h->len = e->len;
    h->extent_blocks = e->nblk;
    h->stripe = e->fid.stripe;
    h->gen = e->fid.gen;
    h->index = e->fid.index;
    h->pcrc = e->crc;
    h->hcrc = ec_crc32c(0, h, offsetof(struct dn_hdr, hcrc));
    {
        struct dn_hdr_owner *o = (struct dn_hdr_owner *)((char *)blk + HDR_OWNER_OFF);

        o->object = e->owner.object;
        o->stripe_no = e->owner.stripe_no;
        o->birth_ms = e->birth_ms;
        o->magic = OWNER_MAGIC;
        o->ocrc = ec_crc32c(0, o, offsetof(struct dn_hdr_owner, ocrc));
    }
}

/* The owner and birth time of a valid USED header, or zeros if it carries none. */
static void hdr_owner(const void *blk, struct dn_owner *owner, uint64_t *birth_ms)
{
    const struct dn_hdr_owner *o = (const struct dn_hdr_owner *)((const char *)blk + HDR_OWNER_OFF);

    if (o->magic == OWNER_MAGIC && o->ocrc == ec_crc32c(0, o, offsetof(struct dn_hdr_owner, ocrc))) {
        owner->object = o->object;
        owner->stripe_no = o->stripe_no;
        *birth_ms = o->birth_ms;
    } else {
        owner->object = owner->stripe_no = 0;
        *birth_ms = 0;
    }
}

static void ext_set_bad(struct dn_store *s, struct dn_ext *e, bool bad)
{
    if (e->bad == bad)
        return;
    e->bad = bad;
    if (bad)
        s->bad_count++;
    else
        s->bad_count--;
}

/* Is the header at block b a valid header of this format that fits the device? */
static bool hdr_valid(const struct dn_store *s, const struct dn_hdr *h, uint64_t b)
{
    if (h->magic != HDR_MAGIC || h->format_id != s->format_id)
        return false;
    if (h->hcrc != ec_crc32c(0, h, offsetof(struct dn_hdr, hcrc)))
        return false;
    if (h->extent_blocks < 1 || h->extent_blocks > s->dev_blocks - b)
        return false;
    if (h->type == HDR_FREE)
        return true;
    return h->type == HDR_USED && h->len >= 1 && h->len <= DN_MAX_FRAG &&
           h->extent_blocks >= blocks_for(h->len);
}

/* ---- index ---- */

static struct dn_ext *index_find(const struct dn_store *s, const struct dn_fid *fid)
{
    struct dn_ext *e = s->bucket[fid_hash(fid) & (s->nbucket - 1)];

    while (e && !fid_eq(&e->fid, fid))
        e = e->hnext;
    return e;
}

static int index_grow(struct dn_store *s)
{
    size_t n = s->nbucket * 2;
    struct dn_ext **nb = calloc(n, sizeof(*nb));

    if (!nb)
        return CAIRN_ENOMEM;
    for (size_t i = 0; i < s->nbucket; i++) {
        struct dn_ext *e = s->bucket[i], *next;

        for (; e; e = next) {
            size_t j = fid_hash(&e->fid) & (n - 1);

            next = e->hnext;
            e->hnext = nb[j];
            nb[j] = e;
        }
    }
    free(s->bucket);
    s->bucket = nb;
    s->nbucket = n;
    return 0;
}

/* Insert e (whose fid is not in the index).  A failed grow only lengthens the chains. */
static void index_insert(struct dn_store *s, struct dn_ext *e)
{
    size_t i;

    if (s->nindex >= s->nbucket)
        (void)index_grow(s);
    i = fid_hash(&e->fid) & (s->nbucket - 1);
    e->hnext = s->bucket[i];
    s->bucket[i] = e;
    s->nindex++;
}

static void index_remove(struct dn_store *s, struct dn_ext *e)
{
    struct dn_ext **pp = &s->bucket[fid_hash(&e->fid) & (s->nbucket - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    s->nindex--;
}

/* ---- free regions ---- */

/* Return [blk, blk + nblk), whose header on disk is FREE, to the free list. */
static int free_insert(struct dn_store *s, uint64_t blk, uint64_t nblk)
{
    struct dn_free *prev = s->free_tail, *next = NULL, *f;

    /* Walk back from the tail: the open-time walk appends, deletes land anywhere. */
    while (prev && prev->blk > blk) {
        next = prev;
        prev = prev->prev;
    }
    assert(!prev || prev->blk + prev->nblk <= blk);
    assert(!next || blk + nblk <= next->blk);
    /* No merging here: each region must stay one FREE extent on disk.  Coalescing happens by
     * writing one header over the union (del_merge(), load_free_run()). */
    f = calloc(1, sizeof(*f));
    if (!f)
        return CAIRN_ENOMEM;
    f->blk = blk;
    f->nblk = nblk;
    f->prev = prev;
    f->next = next;
    if (prev)
        prev->next = f;
    else
        s->free_head = f;
    if (next)
        next->prev = f;
    else
        s->free_tail = f;
    return 0;
}

static void free_remove(struct dn_store *s, struct dn_free *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        s->free_head = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        s->free_tail = f->prev;
    free(f);
}

/* Space of a deleted extent goes back once the FREE header is durable and no get reads it. */
static void ext_release(struct dn_store *s, struct dn_ext *e)
{
    if (free_insert(s, e->free_blk, e->free_nblk))
        log_warn(TAG, "out of memory: %" PRIu64 " blocks at %" PRIu64 " leak until restart",
                 e->free_nblk, e->free_blk);
    free(e);
}

/* ---- I/O queue ---- */

static void wake(struct dn_store *s)
{
    uint64_t one = 1;

    if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn(TAG, "eventfd write: %s", strerror(errno));
}

static void io_start(struct dn_store *s, struct dn_io *io)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    char *buf = (char *)io->buf + io->done;

    if (!sqe) {
        io_uring_submit(&s->ring);
        sqe = io_uring_get_sqe(&s->ring);
    }
    assert(sqe); /* inflight <= depth == SQ size */
    if (io->write)
        io_uring_prep_write(sqe, s->fd, buf, io->len - io->done, io->off + io->done);
    else
        io_uring_prep_read(sqe, s->fd, buf, io->len - io->done, io->off + io->done);
    io_uring_sqe_set_data(sqe, io);
    s->inflight++;
    s->unsubmitted = true;
}

/* Queue an I/O; it is handed to the ring when a slot is free, so the CQ never overflows. */
static void io_queue(struct dn_store *s, struct dn_io *io)
{
    if (s->inflight < s->depth && !s->pend_head) {
        io_start(s, io);
        return;
    }
    io->next = NULL;
    if (s->pend_tail)
        s->pend_tail->next = io;
    else
        s->pend_head = io;
    s->pend_tail = io;
}

static void io_pump(struct dn_store *s)
{
    while (s->pend_head && s->inflight < s->depth) {
        struct dn_io *io = s->pend_head;

        s->pend_head = io->next;
        if (!s->pend_head)
            s->pend_tail = NULL;
        io_start(s, io);
    }
}

static void io_flush(struct dn_store *s)
{
    int rc;

    if (!s->unsubmitted)
        return;
    rc = io_uring_submit(&s->ring);
    if (rc < 0) /* the SQEs stay queued; the next flush retries */
        log_warn(TAG, "io_uring_submit: %s", strerror(-rc));
    else
        s->unsubmitted = false;
}

static void io_prep(struct dn_op *op, int slot, void *buf, uint64_t off, uint32_t len, bool wr)
{
    struct dn_io *io = &op->io[slot];

    io->op = op;
    io->buf = buf;
    io->off = off;
    io->len = len;
    io->done = 0;
    io->write = wr;
    op->ios++;
}

/* ---- operation completion ---- */

static void op_check_finish(struct dn_store *s, struct dn_op *op)
{
    if (op->ios || !op->complete || op->listed)
        return;
    op->listed = true;
    op->next_done = NULL;
    if (s->done_tail)
        s->done_tail->next_done = op;
    else
        s->done_head = op;
    s->done_tail = op;
}

/* Complete an op that did no I/O; the callback runs from the next dn_store_poll(). */
static void op_defer(struct dn_store *s, struct dn_op *op, int status)
{
    op->status = status;
    op->complete = true;
    op_check_finish(s, op);
    wake(s);
}

static void op_unlink_deps(struct dn_store *s, struct dn_op *op)
{
    if (op->dep_region) {
        op->dep_region->dep = NULL;
        op->dep_region = NULL;
    }
    if (op->dep_tail && s->tail_dep == op)
        s->tail_dep = NULL;
    op->dep_tail = false;
}

/* A put failed: it and every put chained after it can never be established. */
static void put_fail(struct dn_store *s, struct dn_op *op, int status)
{
    if (!s->failed)
        log_error(TAG, "device write failed (%s): no more puts or deletes until reopen",
                  cairn_strerror(status));
    s->failed = true;
    if (op->pred) {
        op->pred->succ = NULL;
        op->pred = NULL;
    }
    while (op && !op->complete) {
        struct dn_op *next = op->succ;

        op->status = status;
        op->complete = true;
        /* The extent's blocks are in an unknown state: leave them out of the free list. */
        index_remove(s, op->ext);
        free(op->ext);
        op->ext = NULL;
        op_unlink_deps(s, op);
        op->succ = NULL;
        if (next)
            next->pred = NULL;
        op_check_finish(s, op);
        op = next;
    }
}

/* Establish op and the puts chained after it whose writes are done. */
static void put_establish(struct dn_store *s, struct dn_op *op)
{
    while (op && !op->complete && op->main_done && !op->pred) {
        struct dn_op *next = op->succ;

        op->established = true;
        op->complete = true;
        op->status = 0;
        op->ext->state = EXT_PRESENT;
        s->used_blocks += op->ext->nblk;
        s->frag_count++;
        op_unlink_deps(s, op);
        op->succ = NULL;
        if (next)
            next->pred = NULL;
        op_check_finish(s, op);
        op = next;
    }
}

/* Submit a put's header + payload write once no write to its blocks can race it. */
static void put_try_main(struct dn_store *s, struct dn_op *op)
{
    if (op->complete || op->main_queued)
        return;
    if (op->has_marker && !op->marker_done)
        return;
    if (op->pred && !op->pred->marker_done)
        return; /* the predecessor's marker is still being written to our header block */
    op->main_queued = true;
    io_prep(op, 1, op->buf, op->ext->blk * CAIRN_BLOCK, (uint32_t)(op->ext->nblk * CAIRN_BLOCK),
            true);
    io_queue(s, &op->io[1]);
}

static void put_io_done(struct dn_store *s, struct dn_op *op, int slot, int err)
{
    if (err) {
        put_fail(s, op, err);
        return;
    }
    if (slot == 0) {
        op->marker_done = true;
        put_try_main(s, op);
        if (op->succ)
            put_try_main(s, op->succ);
    } else {
        op->main_done = true;
        put_establish(s, op);
    }
}

static void get_io_done(struct dn_store *s, struct dn_op *op, int err)
{
    struct dn_ext *e = op->ext;
    const struct dn_hdr *h = op->buf;

    op->complete = true;
    op->status = err;
    if (!err) {
        if (!hdr_valid(s, h, e->blk) || h->type != HDR_USED || h->stripe != e->fid.stripe ||
            h->gen != e->fid.gen || h->index != e->fid.index || h->len != e->len ||
            h->pcrc != e->crc ||
            ec_crc32c(0, (const char *)op->buf + CAIRN_BLOCK, e->len) != e->crc) {
            op->status = e->state == EXT_PRESENT ? CAIRN_ECRC : CAIRN_ENOENT;
            if (op->status == CAIRN_ECRC) {
                if (!e->bad)
                    log_warn(TAG, "fragment %" PRIu64 ".%u.%u at block %" PRIu64 " is corrupt",
                             e->fid.stripe, e->fid.gen, e->fid.index, e->blk);
                ext_set_bad(s, e, true);
            }
        } else {
            op->len = e->len;
            op->crc = e->crc;
            if (e->state == EXT_PRESENT)
                ext_set_bad(s, e, false); /* it reads whole now: the earlier read went wrong */
        }
    }
    op->ext = NULL;
    if (--e->readers == 0 && e->free_pending)
        ext_release(s, e);
}

static void del_io_done(struct dn_store *s, struct dn_op *op, int err)
{
    struct dn_ext *e = op->ext;

    op->complete = true;
    op->ext = NULL;
    if (err) {
        if (!s->failed)
            log_error(TAG, "device write failed (%s): no more puts or deletes until reopen",
                      cairn_strerror(err));
        s->failed = true;
        op->status = err;
        e->state = EXT_PRESENT; /* the header may still say USED; the neighbours stay out */
        return;
    }
    op->status = 0;
    index_remove(s, e);
    ext_set_bad(s, e, false);
    s->used_blocks -= e->nblk;
    s->frag_count--;
    e->free_blk = op->mblk;
    e->free_nblk = op->mnblk;
    if (e->readers)
        e->free_pending = true;
    else
        ext_release(s, e);
}

static void io_complete(struct dn_store *s, struct dn_io *io, int res)
{
    struct dn_op *op = io->op;
    int err = 0;

    s->inflight--;
    if (res < 0) {
        err = cairn_from_errno(-res);
        if (err != CAIRN_ENOSPC)
            err = CAIRN_EIO;
    } else if (res == 0) {
        err = CAIRN_EIO;
    } else {
        io->done += (uint32_t)res;
        if (io->done < io->len) {
            if (io->done % 512 == 0) { /* short transfer: resubmit the rest */
                io_queue(s, io);
                return;
            }
            err = CAIRN_EIO;
        }
    }
    if (err)
        log_error(TAG, "%s of %u bytes at %" PRIu64 ": %s", io->write ? "write" : "read", io->len,
                  io->off, res < 0 ? strerror(-res) : "short transfer");
    op->ios--;
    switch (op->type) {
    case OP_PUT:
        put_io_done(s, op, (int)(io - op->io), err);
        break;
    case OP_GET:
        get_io_done(s, op, err);
        break;
    case OP_DEL:
        del_io_done(s, op, err);
        break;
    }
    op_check_finish(s, op);
}

static void op_free(struct dn_op *op)
{
    free(op->blk);
    free(op);
}

/* ---- open / close ---- */

static int open_errno(const char *what, const char *path)
{
    int e = errno;

    log_error(TAG, "%s %s: %s", what, path, strerror(e));
    if (e == ENOMEM)
        return CAIRN_ENOMEM;
    if (e == EINVAL)
        return CAIRN_EINVAL;
    return CAIRN_EIO;
}

static int pio(int fd, void *buf, uint64_t off, bool wr)
{
    ssize_t n =
        wr ? pwrite(fd, buf, CAIRN_BLOCK, (off_t)off) : pread(fd, buf, CAIRN_BLOCK, (off_t)off);

    if (n == (ssize_t)CAIRN_BLOCK)
        return 0;
    if (n >= 0)
        errno = EIO;
    return -1;
}

static bool sb_valid(const struct dn_sb *sb)
{
    return sb->magic == SB_MAGIC && sb->version == SB_VERSION && sb->block_size == CAIRN_BLOCK &&
           sb->crc == ec_crc32c(0, sb, offsetof(struct dn_sb, crc));
}

/* Size the file (or check the device) and write a fresh superblock. */
static int store_format(struct dn_store *s, const char *path, const struct stat *st, uint64_t have,
                        uint64_t create_size, void *blk)
{
    uint64_t size = create_size / CAIRN_BLOCK * CAIRN_BLOCK;
    struct dn_sb *sb = blk;

    if (size < MIN_BLOCKS * CAIRN_BLOCK) {
        log_error(TAG, "%s: %" PRIu64 " bytes is too small for a store", path, create_size);
        return CAIRN_EINVAL;
    }
    if (S_ISBLK(st->st_mode)) {
        if (size > have) {
            log_error(TAG, "%s: device has %" PRIu64 " bytes, %" PRIu64 " asked", path, have, size);
            return CAIRN_EINVAL;
        }
    } else if (have < size) {
        int rc = posix_fallocate(s->fd, 0, (off_t)size); /* reserve now: no ENOSPC later */

        if (rc == EOPNOTSUPP || rc == EINVAL)
            rc = ftruncate(s->fd, (off_t)size) ? errno : 0;
        if (rc) {
            errno = rc;
            return open_errno("size", path);
        }
    }
    do { /* the id names the node in the cluster map, where 0 means "none" */
        if (getrandom(&s->format_id, sizeof(s->format_id), 0) != sizeof(s->format_id))
            return open_errno("getrandom for", path);
    } while (s->format_id == 0);
    s->dev_blocks = size / CAIRN_BLOCK;
    /* Block 1 first: the walk must stop there once the superblock is valid. */
    memset(blk, 0, CAIRN_BLOCK);
    if (pio(s->fd, blk, CAIRN_BLOCK, true))
        return open_errno("write", path);
    sb->magic = SB_MAGIC;
    sb->version = SB_VERSION;
    sb->block_size = CAIRN_BLOCK;
    sb->dev_size = size;
    sb->format_id = s->format_id;
    sb->crc = ec_crc32c(0, sb, offsetof(struct dn_sb, crc));
    if (pio(s->fd, blk, 0, true) || fsync(s->fd))
        return open_errno("write superblock of", path);
    log_info(TAG, "formatted %s: %" PRIu64 " bytes, format id %016" PRIx64, path, size,
             s->format_id);
    return 0;
}

/* End a run of adjacent FREE extents [start, start + nblk) found by the walk: if there are
 * several, one FREE header over all of them replaces their chain of headers (a single-sector
 * write, so a crash leaves either chain), and the run becomes one free region. */
static int load_free_run(struct dn_store *s, const char *path, uint64_t start, uint64_t nblk,
                         unsigned extents)
{
    void *blk;
    int rc;

    if (extents > 1) {
        blk = blk_alloc();
        if (!blk)
            return CAIRN_ENOMEM;
        hdr_fill_free(s, blk, nblk);
        rc = pio(s->fd, blk, start * CAIRN_BLOCK, true);
        free(blk);
        if (rc)
            return open_errno("write", path);
    }
    return extents ? free_insert(s, start, nblk) : 0;
}

/* Make the hint cover block need - 1, durably, before anything is written there.  A plain
 * synchronous write on the loop thread: it happens once per HINT_STEP of growth. */
static int hint_raise(struct dn_store *s, uint64_t need)
{
    struct dn_sb_ext *x = (struct dn_sb_ext *)((char *)s->sb_blk + SB_EXT_OFF);
    uint64_t hint = need + HINT_STEP;

    if (need <= s->hint)
        return 0;
    if (hint > s->dev_blocks)
        hint = s->dev_blocks;
    x->magic = SB_EXT_MAGIC;
    x->hint = hint;
    x->reserved = 0;
    x->crc = ec_crc32c(0, x, offsetof(struct dn_sb_ext, crc));
    if (pio(s->fd, s->sb_blk, 0, true)) { /* O_DSYNC: durable when it returns */
        log_error(TAG, "writing the superblock's hint: %s", strerror(errno));
        return CAIRN_EIO;
    }
    s->hint = hint;
    return 0;
}

/* The header at block b is not valid.  If b is below the hint, a header that was written
 * there may have rotted: look for the next valid header up to the hint.  Returns 0 with *next
 * set if one is found (blocks [b, *next) are lost), CAIRN_ENOENT if none (b is the end of the
 * chain), or an I/O error.  A block of user data that happens to be a valid header of this
 * very device (its random format id and a matching CRC) would be taken for one. */
static int resync(struct dn_store *s, const char *path, uint64_t b, uint64_t *next)
{
    void *buf = NULL;
    int rc = CAIRN_ENOENT;

    if (b + 1 >= s->hint)
        return CAIRN_ENOENT;
    if (posix_memalign(&buf, CAIRN_BLOCK, (size_t)RESYNC_CHUNK * CAIRN_BLOCK))
        return CAIRN_ENOMEM;
    for (uint64_t c = b + 1; c < s->hint && rc == CAIRN_ENOENT; c += RESYNC_CHUNK) {
        uint64_t n = CAIRN_MIN((uint64_t)RESYNC_CHUNK, s->hint - c);
        ssize_t got = pread(s->fd, buf, n * CAIRN_BLOCK, (off_t)(c * CAIRN_BLOCK));

        if (got != (ssize_t)(n * CAIRN_BLOCK)) {
            rc = open_errno("read", path);
            break;
        }
        for (uint64_t i = 0; i < n; i++) {
            const struct dn_hdr *h = (const struct dn_hdr *)((char *)buf + i * CAIRN_BLOCK);

            if (hdr_valid(s, h, c + i)) {
                *next = c + i;
                rc = 0;
                break;
            }
        }
    }
    free(buf);
    return rc;
}

/* Walk the extent chain from block 1 and rebuild the index, the free list and hwm. */
static int store_load(struct dn_store *s, const char *path, void *blk)
{
    const struct dn_hdr *h = blk;
    uint64_t b = 1, run_start = 0, run_nblk = 0;
    unsigned run_extents = 0;
    int rc;

    while (b < s->dev_blocks) {
        if (pio(s->fd, blk, b * CAIRN_BLOCK, false))
            return open_errno("read", path);
        if (!hdr_valid(s, h, b)) {
            uint64_t next;

            rc = resync(s, path, b, &next);
            if (rc == CAIRN_ENOENT)
                break; /* the end of the chain */
            if (rc)
                return rc;
            /* One header rotted (or a crash left a put's header unwritten and a later one's
             * durable): what [b, next) held is lost, at least one fragment whose name went
             * with its header.  The readers and the repair service rebuild it from the other
             * fragments of its stripes.  The run becomes FREE so the chain is whole again. */
            log_error(TAG,
                      "%s: no valid extent header at block %" PRIu64 "; the next is at block %"
                      PRIu64 ": the %" PRIu64 " blocks between are lost and made free",
                      path, b, next, next - b);
            hdr_fill_free(s, blk, next - b);
            if (pio(s->fd, blk, b * CAIRN_BLOCK, true))
                return open_errno("write", path);
            s->lost_runs++;
            continue; /* read it back as the FREE extent it is now */
        }
        if (h->type == HDR_FREE) {
            if (!run_extents)
                run_start = b;
            run_nblk += h->extent_blocks;
            run_extents++;
            b += h->extent_blocks;
            continue;
        }
        rc = load_free_run(s, path, run_start, run_nblk, run_extents);
        if (rc)
            return rc;
        run_nblk = 0;
        run_extents = 0;
        {
            struct dn_fid fid = {h->stripe, h->gen, h->index};
            struct dn_ext *e;

            if (index_find(s, &fid)) {
                /* Never written by this code; keep the first copy and reuse the space. */
                log_warn(TAG,
                         "%s: duplicate fragment %" PRIu64 ".%u.%u at block %" PRIu64
                         " treated as free",
                         path, fid.stripe, fid.gen, fid.index, b);
                if ((rc = free_insert(s, b, h->extent_blocks)))
                    return rc;
                b += h->extent_blocks;
                continue;
            }
            e = calloc(1, sizeof(*e));
            if (!e)
                return CAIRN_ENOMEM;
            e->fid = fid;
            e->blk = b;
            e->nblk = h->extent_blocks;
            e->len = h->len;
            e->crc = h->pcrc;
            hdr_owner(h, &e->owner, &e->birth_ms);
            e->state = EXT_PRESENT;
            index_insert(s, e);
            s->used_blocks += e->nblk;
            s->frag_count++;
        }
        b += h->extent_blocks;
    }
    rc = load_free_run(s, path, run_start, run_nblk, run_extents);
    if (rc)
        return rc;
    s->hwm = b;
    /* A device without a hint (formatted before there was one) gets one now: the chain ends
     * here, so no header beyond hwm counts. */
    if ((rc = hint_raise(s, s->hwm)))
        return rc;
    log_info(TAG,
             "opened %s: %" PRIu64 " fragments, %" PRIu64 " of %" PRIu64
             " blocks used, hwm %" PRIu64,
             path, s->frag_count, s->used_blocks, s->dev_blocks, s->hwm);
    return 0;
}

static void store_free_mem(struct dn_store *s)
{
    for (size_t i = 0; s->bucket && i < s->nbucket; i++) {
        struct dn_ext *e = s->bucket[i], *next;

        for (; e; e = next) {
            next = e->hnext;
            free(e);
        }
    }
    free(s->bucket);
    while (s->free_head)
        free_remove(s, s->free_head);
    free(s->zero_blk);
    free(s->sb_blk);
    free(s);
}

int dn_store_open(const char *path, uint64_t create_size, unsigned queue_depth,
                  struct dn_store **out)
{
    struct dn_store *s;
    struct stat st;
    uint64_t have;
    void *blk;
    int rc;

    if (!path || !out)
        return CAIRN_EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return CAIRN_ENOMEM;
    s->fd = s->efd = -1;
    s->depth = queue_depth ? CAIRN_MIN(queue_depth, MAX_DEPTH) : DEFAULT_DEPTH;
    s->nbucket = 1024;
    s->bucket = calloc(s->nbucket, sizeof(*s->bucket));
    s->zero_blk = blk_alloc();
    s->sb_blk = blk_alloc();
    blk = blk_alloc();
    if (!s->bucket || !s->zero_blk || !s->sb_blk || !blk) {
        rc = CAIRN_ENOMEM;
        goto err_mem;
    }
    s->fd = open(path, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC | (create_size ? O_CREAT : 0), 0644);
    if (s->fd < 0) {
        rc = open_errno("open", path);
        goto err_mem;
    }
    if (fstat(s->fd, &st)) {
        rc = open_errno("stat", path);
        goto err_close;
    }
    have = (uint64_t)st.st_size;
    if (S_ISBLK(st.st_mode) && ioctl(s->fd, BLKGETSIZE64, &have)) {
        rc = open_errno("size of", path);
        goto err_close;
    }
    if (have >= CAIRN_BLOCK && pio(s->fd, blk, 0, false)) {
        rc = open_errno("read superblock of", path);
        goto err_close;
    }
    if (have >= CAIRN_BLOCK && sb_valid(blk)) {
        const struct dn_sb *sb = blk;

        if (sb->dev_size > have || sb->dev_size < MIN_BLOCKS * CAIRN_BLOCK) {
            log_error(TAG, "%s: superblock says %" PRIu64 " bytes, device has %" PRIu64, path,
                      sb->dev_size, have);
            rc = CAIRN_EIO;
            goto err_close;
        }
        const struct dn_sb_ext *x = (const struct dn_sb_ext *)((char *)blk + SB_EXT_OFF);

        s->format_id = sb->format_id;
        s->dev_blocks = sb->dev_size / CAIRN_BLOCK;
        if (x->magic == SB_EXT_MAGIC && x->crc == ec_crc32c(0, x, offsetof(struct dn_sb_ext, crc)))
            s->hint = CAIRN_MIN(x->hint, s->dev_blocks);
    } else if (!create_size) {
        log_error(TAG, "%s: no valid superblock", path);
        rc = CAIRN_EINVAL;
        goto err_close;
    } else if ((rc = store_format(s, path, &st, have, create_size, blk))) {
        goto err_close;
    }
    memcpy(s->sb_blk, blk, CAIRN_BLOCK);
    rc = store_load(s, path, blk);
    if (rc)
        goto err_close;
    rc = io_uring_queue_init(s->depth, &s->ring, 0);
    if (rc < 0) {
        errno = -rc;
        rc = open_errno("io_uring_queue_init for", path);
        goto err_close;
    }
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        rc = open_errno("eventfd for", path);
        goto err_ring;
    }
    rc = io_uring_register_eventfd(&s->ring, s->efd);
    if (rc < 0) {
        errno = -rc;
        rc = open_errno("io_uring_register_eventfd for", path);
        goto err_efd;
    }
    free(blk);
    *out = s;
    return 0;

err_efd:
    close(s->efd);
err_ring:
    io_uring_queue_exit(&s->ring);
err_close:
    close(s->fd);
err_mem:
    free(blk);
    store_free_mem(s);
    return rc;
}

void dn_store_close(struct dn_store *s)
{
    if (!s)
        return;
    dn_store_drain(s);
    io_uring_queue_exit(&s->ring);
    close(s->efd);
    close(s->fd);
    store_free_mem(s);
}

/* ---- event loop ---- */

int dn_store_event_fd(const struct dn_store *s)
{
    return s->efd;
}

int dn_store_poll(struct dn_store *s)
{
    uint64_t cnt;
    int n = 0;

    /* Read first: a completion posted after this read makes the fd readable again. */
    if (read(s->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_warn(TAG, "eventfd read: %s", strerror(errno));
    for (;;) {
        struct io_uring_cqe *cqe;

        while (io_uring_peek_cqe(&s->ring, &cqe) == 0) {
            struct dn_io *io = io_uring_cqe_get_data(cqe);
            int res = cqe->res;

            io_uring_cqe_seen(&s->ring, cqe);
            io_complete(s, io, res);
        }
        io_pump(s);
        io_flush(s);
        if (!s->done_head)
            break;
        /* Callbacks may start new operations; those land behind the ones run here. */
        while (s->done_head) {
            struct dn_op *op = s->done_head;

            s->done_head = op->next_done;
            if (!s->done_head)
                s->done_tail = NULL;
            s->outstanding--;
            n++;
            if (op->cb)
                op->cb(op->arg, op->status, op->status ? 0 : op->len, op->status ? 0 : op->crc);
            op_free(op);
        }
        io_flush(s);
    }
    return n;
}

void dn_store_drain(struct dn_store *s)
{
    while (s->outstanding) {
        struct io_uring_cqe *cqe;
        int rc;

        dn_store_poll(s);
        if (!s->outstanding)
            break;
        /* Everything left waits on I/O the ring owns. */
        assert(s->inflight > 0);
        io_flush(s);
        rc = io_uring_wait_cqe(&s->ring, &cqe);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
            log_error(TAG, "io_uring_wait_cqe: %s", strerror(-rc));
            break;
        }
    }
}

/* ---- operations ---- */

static struct dn_op *op_new(struct dn_store *s, enum op_type type, dn_store_cb cb, void *arg)
{
    struct dn_op *op = calloc(1, sizeof(*op));

    if (!op)
        return NULL;
    op->type = type;
    op->cb = cb;
    op->arg = arg;
    s->outstanding++;
    return op;
}

/* Pick n blocks for op: first fit in the free list, else the tail.  Sets up the marker and the
 * predecessor as the top-of-file comment describes. */
static int put_alloc(struct dn_store *s, struct dn_op *op, uint64_t n)
{
    struct dn_ext *e = op->ext;
    struct dn_free *f;
    struct dn_op *dep;

    for (f = s->free_head; f && f->nblk < n; f = f->next)
        ;
    if (f) {
        e->blk = f->blk;
        dep = f->dep;
        if (f->nblk > n) {
            op->blk = blk_alloc();
            if (!op->blk)
                return CAIRN_ENOMEM;
            hdr_fill_free(s, op->blk, f->nblk - n);
            op->has_marker = true;
            io_prep(op, 0, op->blk, (f->blk + n) * CAIRN_BLOCK, CAIRN_BLOCK, true);
            f->blk += n;
            f->nblk -= n;
            f->dep = op;
            op->dep_region = f;
        } else {
            free_remove(s, f);
        }
        if (dep)
            dep->dep_region = NULL;
    } else if (s->dev_blocks - s->hwm >= n) {
        int rc = hint_raise(s, s->hwm + n);

        if (rc)
            return rc;
        e->blk = s->hwm;
        dep = s->tail_dep;
        s->hwm += n;
        if (s->hwm < s->dev_blocks) {
            op->has_marker = true;
            io_prep(op, 0, s->zero_blk, s->hwm * CAIRN_BLOCK, CAIRN_BLOCK, true);
        }
        s->tail_dep = op;
        op->dep_tail = true;
        if (dep)
            dep->dep_tail = false;
    } else {
        return CAIRN_ENOSPC;
    }
    e->nblk = n;
    if (dep) {
        assert(!dep->succ && !dep->complete);
        op->pred = dep;
        dep->succ = op;
    }
    return 0;
}

int dn_store_put(struct dn_store *s, const struct dn_fid *fid, const struct dn_owner *owner,
                 void *buf, uint32_t len, uint32_t crc, dn_store_cb cb, void *arg)
{
    struct dn_op *op;
    struct dn_ext *e;
    char *payload = (char *)buf + CAIRN_BLOCK;
    int rc;

    if (!s || !fid || !buf || (uintptr_t)buf % CAIRN_BLOCK || len < 1 || len > DN_MAX_FRAG)
        return CAIRN_EINVAL;
    op = op_new(s, OP_PUT, cb, arg);
    if (!op)
        return CAIRN_ENOMEM;
    op->buf = buf;
    if (s->failed) {
        op_defer(s, op, CAIRN_EIO);
        return 0;
    }
    if (index_find(s, fid)) {
        op_defer(s, op, CAIRN_EEXIST);
        return 0;
    }
    if (ec_crc32c(0, payload, len) != crc) {
        op_defer(s, op, CAIRN_ECRC);
        return 0;
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
        op_defer(s, op, CAIRN_ENOMEM);
        return 0;
    }
    e->fid = *fid;
    e->len = len;
    e->crc = crc;
    if (owner)
        e->owner = *owner;
    e->birth_ms = (uint64_t)cairn_wall_ns() / 1000000u;
    e->state = EXT_INFLIGHT;
    op->ext = e;
    rc = put_alloc(s, op, blocks_for(len));
    if (rc) {
        free(e);
        op->ext = NULL;
        op_defer(s, op, rc);
        return 0;
    }
    index_insert(s, e); /* reserves the fid: EEXIST for puts, ENOENT for gets until durable */
    hdr_fill_used(s, buf, e);
    memset(payload + len, 0, CAIRN_ALIGN_UP(len, CAIRN_BLOCK) - len);
    if (op->has_marker)
        io_queue(s, &op->io[0]);
    put_try_main(s, op);
    io_flush(s);
    return 0;
}

int dn_store_get(struct dn_store *s, const struct dn_fid *fid, void *buf, size_t buf_len,
                 dn_store_cb cb, void *arg)
{
    struct dn_op *op;
    struct dn_ext *e;
    uint32_t n;

    if (!s || !fid || !buf || (uintptr_t)buf % CAIRN_BLOCK)
        return CAIRN_EINVAL;
    op = op_new(s, OP_GET, cb, arg);
    if (!op)
        return CAIRN_ENOMEM;
    op->buf = buf;
    e = index_find(s, fid);
    if (!e || e->state != EXT_PRESENT) {
        op_defer(s, op, CAIRN_ENOENT);
        return 0;
    }
    n = CAIRN_BLOCK + CAIRN_ALIGN_UP(e->len, CAIRN_BLOCK);
    if (buf_len < n) {
        op_defer(s, op, CAIRN_ETOOBIG);
        return 0;
    }
    e->readers++;
    op->ext = e;
    io_prep(op, 1, buf, e->blk * CAIRN_BLOCK, n, false);
    io_queue(s, &op->io[1]);
    io_flush(s);
    return 0;
}

/* Take the free regions right before and after e out of the list if no put is working in them
 * (dep == NULL: their header is durable and on the chain, nothing in flight writes there); the
 * delete's FREE header then covers them too (see the top of the file). */
static void del_merge(struct dn_store *s, const struct dn_ext *e, struct dn_op *op)
{
    struct dn_free *f = s->free_head, *prev = NULL, *next = NULL;
    uint64_t end = e->blk + e->nblk;

    while (f && f->blk < e->blk) {
        prev = f;
        f = f->next;
    }
    if (f && f->blk == end && !f->dep)
        next = f;
    if (prev && (prev->blk + prev->nblk != e->blk || prev->dep))
        prev = NULL;
    op->mblk = prev ? prev->blk : e->blk;
    op->mnblk = (next ? next->blk + next->nblk : end) - op->mblk;
    if (prev)
        free_remove(s, prev);
    if (next)
        free_remove(s, next);
}

int dn_store_del(struct dn_store *s, const struct dn_fid *fid, dn_store_cb cb, void *arg)
{
    struct dn_op *op;
    struct dn_ext *e;

    if (!s || !fid)
        return CAIRN_EINVAL;
    op = op_new(s, OP_DEL, cb, arg);
    if (!op)
        return CAIRN_ENOMEM;
    e = index_find(s, fid);
    if (!e || e->state != EXT_PRESENT) {
        op_defer(s, op, CAIRN_ENOENT);
        return 0;
    }
    if (s->failed) {
        op_defer(s, op, CAIRN_EIO);
        return 0;
    }
    op->blk = blk_alloc();
    if (!op->blk) {
        op_defer(s, op, CAIRN_ENOMEM);
        return 0;
    }
    del_merge(s, e, op);
    hdr_fill_free(s, op->blk, op->mnblk);
    e->state = EXT_DELETING; /* gets see ENOENT from now on; puts of the fid EEXIST until done */
    op->ext = e;
    io_prep(op, 1, op->blk, op->mblk * CAIRN_BLOCK, CAIRN_BLOCK, true);
    io_queue(s, &op->io[1]);
    io_flush(s);
    return 0;
}

bool dn_store_lookup(const struct dn_store *s, const struct dn_fid *fid, uint32_t *len,
                     uint32_t *crc)
{
    const struct dn_ext *e = index_find(s, fid);

    if (!e || e->state != EXT_PRESENT)
        return false;
    if (len)
        *len = e->len;
    if (crc)
        *crc = e->crc;
    return true;
}

void dn_store_stats(const struct dn_store *s, struct dn_store_stats *st)
{
    st->dev_size = s->dev_blocks * CAIRN_BLOCK;
    st->used = s->used_blocks * CAIRN_BLOCK;
    st->frag_count = s->frag_count;
    st->bad_count = s->bad_count;
    st->lost_runs = s->lost_runs;
    st->hwm = s->hwm * CAIRN_BLOCK;
}

bool dn_store_is_bad(const struct dn_store *s, const struct dn_fid *fid)
{
    const struct dn_ext *e = index_find(s, fid);

    return e && e->state == EXT_PRESENT && e->bad;
}

/* The cursor is a bucket of the index (low 40 bits) and how many of that bucket's chain were
 * already listed (high 24 bits); chains are a handful long, the index at most 2^40 buckets. */
#define CURSOR_BUCKET(c) ((c) & ((1ull << 40) - 1))
#define CURSOR_SKIP(c) ((c) >> 40)
#define CURSOR_MAKE(b, k) ((b) | ((uint64_t)(k) << 40))

size_t dn_store_list(const struct dn_store *s, uint64_t *cursor, bool bad_only,
                     struct dn_frag_info *out, size_t max, bool *more)
{
    uint64_t b = CURSOR_BUCKET(*cursor), skip = CURSOR_SKIP(*cursor);
    size_t n = 0;

    *more = true;
    for (; b < s->nbucket; b++, skip = 0) {
        uint64_t k = 0;

        for (const struct dn_ext *e = s->bucket[b]; e; e = e->hnext, k++) {
            if (k < skip || e->state != EXT_PRESENT || (bad_only && !e->bad))
                continue;
            if (n == max || k >= (1ull << 24) - 1) {
                *cursor = CURSOR_MAKE(b, k);
                return n;
            }
            out[n].fid = e->fid;
            out[n].len = e->len;
            out[n].bad = e->bad;
            out[n].owner = e->owner;
            out[n].birth_ms = e->birth_ms;
            n++;
        }
    }
    *cursor = CURSOR_MAKE(b, 0);
    *more = false;
    return n;
}

uint64_t dn_store_id(const struct dn_store *s)
{
    return s->format_id;
}
