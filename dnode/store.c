/*
 * store.c - the D-node fragment store (see store.h for the on-disk layout and the API).
 *
 * The device is the index.  Blocks 1..hwm are tiled by extents, each starting with a header
 * block; a restart walks the headers and rebuilds the in-memory hash index and free list.
 * Everything below keeps that walk correct across a crash at any instant, with three rules:
 *
 * 1. A header lives in the first 512-byte sector of its block, so a torn write leaves either
 *    the old or the new header, never a mix; a header is valid only with this device's random
 *    format id and a correct header CRC.
 *
 * 2. Reusing part of a FREE extent: the FREE header of the remainder is written (durably)
 *    before the USED extent that shrinks the original (two io_uring writes linked with
 *    IOSQE_IO_LINK).  A crash between them leaves the original FREE header, which still spans
 *    both, so the walk never lands inside stale data.  The remainder joins the free list only
 *    once its header is durable, so no other write can race with that header.
 *
 * 3. Growing the tiled region (bump allocation at the high-water mark): several extents may be
 *    in flight, but a put is acknowledged only when it and every extent allocated below it are
 *    durable (completions are released in address order).  If the walk stops at an extent that
 *    did not make it, nothing acknowledged lies beyond it.  At open, everything past the
 *    high-water mark is punched out (zeroed) and synced, so stale headers of writes that were
 *    in flight at a crash can never be picked up by a later walk.  A bump write that fails is
 *    covered by a FREE header before the failure is reported.
 *
 * Durability: the device is opened O_DIRECT | O_DSYNC, so an io_uring completion means the
 * bytes are stable; header and payload of a fragment go down in one write.  Deletion rewrites
 * the header as FREE (same length) and frees the space after that write is durable and no read
 * of the extent is still in flight.
 *
 * Adjacent FREE extents are not merged yet, and the free list is first fit over a flat array;
 * with the uniform fragment sizes of a stripe layout that reuses space well.  Both are marked
 * as future work in docs/architecture.md.
 */
#define _GNU_SOURCE
#include "dnode/store.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cairn.h"
#include "common/log.h"
#include "ec/ec.h"

#define TAG "store"
#define SB_MAGIC 0x31565244524e5243ull  /* "CRNRDRV1" */
#define HDR_MAGIC 0x3154584552524e43ull /* "CNRREXT1" */
#define FORMAT_VERSION 1u
#define HDR_USED 1u
#define HDR_FREE 2u
#define MIN_BLOCKS 4u /* superblock + a few extents */

struct sb {
    uint64_t magic;
    uint32_t version;
    uint32_t block;
    uint64_t dev_size;
    uint64_t format_id;
    uint32_t pad;
    uint32_t crc; /* CRC32C of the struct with crc = 0 */
};

struct hdr {
    uint64_t magic;
    uint64_t format_id;
    uint32_t type;
    uint32_t blocks; /* whole extent, header included */
    uint64_t stripe;
    uint32_t gen;
    uint32_t index;
    uint32_t len;
    uint32_t payload_crc;
    uint32_t pad;
    uint32_t crc; /* CRC32C of the struct with crc = 0 */
};

enum ent_state { ENT_WRITING, ENT_PRESENT, ENT_DELETING };

struct ent {
    struct ent *next; /* hash chain */
    struct dn_fid fid;
    uint64_t start;  /* first block */
    uint32_t blocks; /* extent length in blocks */
    uint32_t len;
    uint32_t crc;
    enum ent_state state;
    unsigned readers;  /* gets in flight on this extent */
    bool free_pending; /* deleted: free the extent when the last reader is done */
};

struct extent {
    uint64_t start;
    uint64_t blocks;
};

enum op_kind { OP_PUT, OP_REMAINDER, OP_GET, OP_DEL };

struct op {
    enum op_kind kind;
    struct op *next; /* deferred list / bump queue */
    struct ent *ent;
    dn_store_cb cb;
    void *arg;
    void *buf;
    size_t bytes;  /* expected transfer */
    int status;    /* result, for deferred and ordered completion */
    bool bump;     /* allocated at the high-water mark */
    bool done;     /* bump: the write has completed */
    struct extent rem; /* OP_REMAINDER: the extent its header describes */
    void *hdrbuf;      /* owned 4 KiB block for header-only writes */
};

struct dn_store {
    int fd;
    int efd;
    struct io_uring ring;
    uint64_t dev_blocks;
    uint64_t format_id;
    uint64_t hwm; /* first block past the tiled region */
    struct ent **buckets;
    size_t nbuckets, nents;
    struct extent *free;
    size_t nfree, free_cap;
    uint64_t used_blocks, frag_count;
    unsigned inflight; /* submitted I/Os */
    struct op *deferred, *deferred_tail;
    struct op *bump_head, *bump_tail; /* bump puts in address order */
    bool broken; /* an error left the on-disk tiling uncertain: refuse writes */
};

/* ---- helpers ---- */

static uint64_t fid_hash(const struct dn_fid *f)
{
    uint64_t x = f->stripe ^ ((uint64_t)f->gen << 32 | f->index);

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static bool fid_eq(const struct dn_fid *a, const struct dn_fid *b)
{
    return a->stripe == b->stripe && a->gen == b->gen && a->index == b->index;
}

static struct ent *ent_find(const struct dn_store *s, const struct dn_fid *fid)
{
    struct ent *e = s->buckets[fid_hash(fid) & (s->nbuckets - 1)];

    while (e && !fid_eq(&e->fid, fid))
        e = e->next;
    return e;
}

static int ent_insert(struct dn_store *s, struct ent *e)
{
    if (s->nents >= s->nbuckets) {
        size_t n = s->nbuckets * 2;
        struct ent **b = calloc(n, sizeof(*b));

        if (!b)
            return CAIRN_ENOMEM;
        for (size_t i = 0; i < s->nbuckets; i++) {
            for (struct ent *x = s->buckets[i], *nx; x; x = nx) {
                nx = x->next;
                x->next = b[fid_hash(&x->fid) & (n - 1)];
                b[fid_hash(&x->fid) & (n - 1)] = x;
            }
        }
        free(s->buckets);
        s->buckets = b;
        s->nbuckets = n;
    }
    e->next = s->buckets[fid_hash(&e->fid) & (s->nbuckets - 1)];
    s->buckets[fid_hash(&e->fid) & (s->nbuckets - 1)] = e;
    s->nents++;
    return 0;
}

static void ent_unlink(struct dn_store *s, struct ent *e)
{
    struct ent **p = &s->buckets[fid_hash(&e->fid) & (s->nbuckets - 1)];

    while (*p && *p != e)
        p = &(*p)->next;
    if (*p) {
        *p = e->next;
        s->nents--;
    }
}

static int free_add(struct dn_store *s, uint64_t start, uint64_t blocks)
{
    if (s->nfree == s->free_cap) {
        size_t n = s->free_cap ? 2 * s->free_cap : 64;
        struct extent *f = realloc(s->free, n * sizeof(*f));

        if (!f)
            return CAIRN_ENOMEM;
        s->free = f;
        s->free_cap = n;
    }
    s->free[s->nfree++] = (struct extent){.start = start, .blocks = blocks};
    return 0;
}

static uint32_t sb_crc(struct sb *sb)
{
    uint32_t saved = sb->crc, c;

    sb->crc = 0;
    c = ec_crc32c(0, sb, sizeof(*sb));
    sb->crc = saved;
    return c;
}

static uint32_t hdr_crc(struct hdr *h)
{
    uint32_t saved = h->crc, c;

    h->crc = 0;
    c = ec_crc32c(0, h, sizeof(*h));
    h->crc = saved;
    return c;
}

/* Fill a header block (the whole 4 KiB; the rest zero). */
static void hdr_fill(const struct dn_store *s, void *block, uint32_t type, uint32_t blocks,
                     const struct dn_fid *fid, uint32_t len, uint32_t crc)
{
    struct hdr *h = block;

    memset(block, 0, CAIRN_BLOCK);
    h->magic = HDR_MAGIC;
    h->format_id = s->format_id;
    h->type = type;
    h->blocks = blocks;
    if (fid) {
        h->stripe = fid->stripe;
        h->gen = fid->gen;
        h->index = fid->index;
    }
    h->len = len;
    h->payload_crc = crc;
    h->crc = hdr_crc(h);
}

static bool hdr_valid(const struct dn_store *s, struct hdr *h, uint64_t at)
{
    if (h->magic != HDR_MAGIC || h->format_id != s->format_id || h->crc != hdr_crc(h))
        return false;
    if (h->blocks == 0 || at + h->blocks > s->dev_blocks)
        return false;
    if (h->type == HDR_FREE)
        return true;
    return h->type == HDR_USED && h->len >= 1 && h->len <= DN_MAX_FRAG &&
           1 + CAIRN_ALIGN_UP((uint64_t)h->len, CAIRN_BLOCK) / CAIRN_BLOCK <= h->blocks;
}

static uint32_t extent_blocks(uint32_t len)
{
    return 1 + (uint32_t)(CAIRN_ALIGN_UP((uint64_t)len, CAIRN_BLOCK) / CAIRN_BLOCK);
}

static void wake(struct dn_store *s)
{
    uint64_t one = 1;

    if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn(TAG, "eventfd write: %s", strerror(errno));
}

/* Report an error found before any I/O from the next dn_store_poll(). */
static int defer(struct dn_store *s, dn_store_cb cb, void *arg, int status)
{
    struct op *op = calloc(1, sizeof(*op));

    if (!op)
        return CAIRN_ENOMEM;
    op->cb = cb;
    op->arg = arg;
    op->status = status;
    if (s->deferred_tail)
        s->deferred_tail->next = op;
    else
        s->deferred = op;
    s->deferred_tail = op;
    wake(s);
    return 0;
}

static struct io_uring_sqe *get_sqe(struct dn_store *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

    if (!sqe) {
        io_uring_submit(&s->ring);
        sqe = io_uring_get_sqe(&s->ring);
    }
    return sqe;
}

/* ---- open / close ---- */

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? cairn_from_errno(errno) : CAIRN_EIO;
        done += (size_t)n;
    }
    return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? cairn_from_errno(errno) : CAIRN_EIO;
        done += (size_t)n;
    }
    return 0;
}

static int format(struct dn_store *s, uint64_t size, void *block)
{
    struct sb *sb = block;
    struct stat st;
    int rc;

    size -= size % CAIRN_BLOCK;
    if (size < MIN_BLOCKS * CAIRN_BLOCK)
        return CAIRN_EINVAL;
    if (fstat(s->fd, &st))
        return cairn_from_errno(errno);
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < size && ftruncate(s->fd, (off_t)size))
        return cairn_from_errno(errno);
    if (getrandom(&s->format_id, sizeof(s->format_id), 0) != sizeof(s->format_id))
        return CAIRN_EIO;
    s->dev_blocks = size / CAIRN_BLOCK;
    /* Block 1 first: the walk of a fresh device must stop there. */
    memset(block, 0, CAIRN_BLOCK);
    rc = pwrite_full(s->fd, block, CAIRN_BLOCK, CAIRN_BLOCK);
    if (rc)
        return rc;
    sb->magic = SB_MAGIC;
    sb->version = FORMAT_VERSION;
    sb->block = CAIRN_BLOCK;
    sb->dev_size = size;
    sb->format_id = s->format_id;
    sb->crc = sb_crc(sb);
    rc = pwrite_full(s->fd, block, CAIRN_BLOCK, 0);
    if (!rc)
        log_info(TAG, "formatted %llu bytes, format id %016llx", (unsigned long long)size,
                 (unsigned long long)s->format_id);
    return rc;
}

/* Rebuild the index and free list from the extent headers. */
static int walk(struct dn_store *s, void *block)
{
    uint64_t at = 1;
    int rc;

    while (at < s->dev_blocks) {
        struct hdr *h = block;

        rc = pread_full(s->fd, block, CAIRN_BLOCK, at * CAIRN_BLOCK);
        if (rc)
            return rc;
        if (!hdr_valid(s, h, at))
            break;
        if (h->type == HDR_USED) {
            struct ent *e = calloc(1, sizeof(*e));

            if (!e)
                return CAIRN_ENOMEM;
            e->fid = (struct dn_fid){.stripe = h->stripe, .gen = h->gen, .index = h->index};
            e->start = at;
            e->blocks = h->blocks;
            e->len = h->len;
            e->crc = h->payload_crc;
            e->state = ENT_PRESENT;
            if (ent_find(s, &e->fid)) {
                /* Cannot happen through the API (puts of existing ids are refused); keep the
                 * first and reclaim nothing, so no data is destroyed by guessing. */
                log_error(TAG, "duplicate fragment at block %llu", (unsigned long long)at);
                free(e);
            } else if ((rc = ent_insert(s, e))) {
                free(e);
                return rc;
            } else {
                s->used_blocks += h->blocks;
                s->frag_count++;
            }
        } else if ((rc = free_add(s, at, h->blocks))) {
            return rc;
        }
        at += h->blocks;
    }
    s->hwm = at;
    return 0;
}

/* Zero everything past the high-water mark (see rule 3 in the file comment). */
static void trim_tail(struct dn_store *s)
{
    uint64_t off = s->hwm * CAIRN_BLOCK, len = (s->dev_blocks - s->hwm) * CAIRN_BLOCK;

    if (len == 0)
        return;
    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
            0 &&
        fsync(s->fd) == 0)
        return;
    /* Without hole punching, at least invalidate the block the next walk would read first. */
    log_warn(TAG, "cannot punch the device tail (%s); zeroing one block", strerror(errno));
    {
        void *z = aligned_alloc(CAIRN_BLOCK, CAIRN_BLOCK);

        if (z) {
            memset(z, 0, CAIRN_BLOCK);
            if (pwrite_full(s->fd, z, CAIRN_BLOCK, off))
                log_error(TAG, "cannot zero block %llu", (unsigned long long)s->hwm);
            free(z);
        }
    }
}

int dn_store_open(const char *path, uint64_t create_size, unsigned queue_depth,
                  struct dn_store **out)
{
    struct dn_store *s;
    void *block = NULL;
    struct sb *sb;
    int rc, flags = O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC;

    s = calloc(1, sizeof(*s));
    if (!s)
        return CAIRN_ENOMEM;
    s->fd = -1;
    s->efd = -1;
    s->nbuckets = 1024;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    block = aligned_alloc(CAIRN_BLOCK, CAIRN_BLOCK);
    if (!s->buckets || !block) {
        rc = CAIRN_ENOMEM;
        goto err;
    }
    s->fd = open(path, flags | (create_size ? O_CREAT : 0), 0600);
    if (s->fd < 0) {
        log_error(TAG, "open %s: %s", path, strerror(errno));
        rc = errno == ENOENT ? CAIRN_EINVAL : CAIRN_EIO;
        goto err;
    }
    memset(block, 0, CAIRN_BLOCK);
    rc = pread(s->fd, block, CAIRN_BLOCK, 0) == CAIRN_BLOCK ? 0 : CAIRN_EIO;
    sb = block;
    if (rc == 0 && sb->magic == SB_MAGIC && sb->version == FORMAT_VERSION &&
        sb->block == CAIRN_BLOCK && sb->crc == sb_crc(sb) && sb->dev_size >= MIN_BLOCKS) {
        s->format_id = sb->format_id;
        s->dev_blocks = sb->dev_size / CAIRN_BLOCK;
    } else if (create_size) {
        rc = format(s, create_size, block);
        if (rc)
            goto err;
    } else {
        log_error(TAG, "%s has no Cairn superblock", path);
        rc = CAIRN_EINVAL;
        goto err;
    }
    rc = walk(s, block);
    if (rc)
        goto err;
    trim_tail(s);
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        rc = CAIRN_EIO;
        goto err;
    }
    rc = io_uring_queue_init(queue_depth ? queue_depth : 256, &s->ring, 0);
    if (rc < 0) {
        log_error(TAG, "io_uring: %s", strerror(-rc));
        rc = CAIRN_EIO;
        s->ring.ring_fd = -1;
        goto err;
    }
    if (io_uring_register_eventfd(&s->ring, s->efd) < 0) {
        io_uring_queue_exit(&s->ring);
        s->ring.ring_fd = -1;
        rc = CAIRN_EIO;
        goto err;
    }
    free(block);
    log_info(TAG, "%s: %llu fragments, %llu free extents, high-water mark %llu MiB of %llu MiB",
             path, (unsigned long long)s->frag_count, (unsigned long long)s->nfree,
             (unsigned long long)(s->hwm * CAIRN_BLOCK >> 20),
             (unsigned long long)(s->dev_blocks * CAIRN_BLOCK >> 20));
    *out = s;
    return 0;

err:
    free(block);
    if (s->efd >= 0)
        close(s->efd);
    if (s->fd >= 0)
        close(s->fd);
    for (size_t i = 0; i < s->nbuckets && s->buckets; i++)
        for (struct ent *e = s->buckets[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    free(s->buckets);
    free(s->free);
    free(s);
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
    for (size_t i = 0; i < s->nbuckets; i++)
        for (struct ent *e = s->buckets[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    free(s->buckets);
    free(s->free);
    free(s);
}

int dn_store_event_fd(const struct dn_store *s)
{
    return s->efd;
}

/* ---- completions ---- */

static void put_finish(struct dn_store *s, struct op *op)
{
    struct ent *e = op->ent;

    if (op->status == 0) {
        e->state = ENT_PRESENT;
        s->used_blocks += e->blocks;
        s->frag_count++;
    } else {
        ent_unlink(s, e);
        free(e);
    }
    op->cb(op->arg, op->status, 0, 0);
    free(op);
}

/* A bump write that failed leaves an invalid header inside the tiled region; cover it with a
 * FREE header (synchronously: an error path) so later extents stay reachable. */
static void bump_failed(struct dn_store *s, struct op *op)
{
    void *blk = aligned_alloc(CAIRN_BLOCK, CAIRN_BLOCK);

    if (blk) {
        hdr_fill(s, blk, HDR_FREE, op->ent->blocks, NULL, 0, 0);
        if (pwrite_full(s->fd, blk, CAIRN_BLOCK, op->ent->start * CAIRN_BLOCK) == 0 &&
            free_add(s, op->ent->start, op->ent->blocks) == 0) {
            free(blk);
            return;
        }
        free(blk);
    }
    log_error(TAG, "cannot cover failed extent at block %llu: refusing further writes",
              (unsigned long long)op->ent->start);
    s->broken = true;
}

/* Release bump puts in address order: each is acknowledged only after all below it. */
static void bump_release(struct dn_store *s)
{
    while (s->bump_head && s->bump_head->done) {
        struct op *op = s->bump_head;

        s->bump_head = op->next;
        if (!s->bump_head)
            s->bump_tail = NULL;
        if (op->status)
            bump_failed(s, op);
        put_finish(s, op);
    }
}

static void ent_release_extent(struct dn_store *s, struct ent *e)
{
    if (free_add(s, e->start, e->blocks))
        log_warn(TAG, "free list full: %u blocks leaked until restart", e->blocks);
    free(e);
}

static void complete(struct dn_store *s, struct op *op, int res)
{
    int status = res < 0 ? cairn_from_errno(res) : ((size_t)res == op->bytes ? 0 : CAIRN_EIO);

    switch (op->kind) {
    case OP_REMAINDER:
        if (status == 0) {
            if (free_add(s, op->rem.start, op->rem.blocks))
                log_warn(TAG, "free list full: extent leaked until restart");
        } else {
            /* The original FREE header still spans the remainder; nothing is lost but space. */
            log_error(TAG, "remainder header at block %llu: %s",
                      (unsigned long long)op->rem.start, cairn_strerror(status));
        }
        free(op->hdrbuf);
        free(op);
        return;
    case OP_PUT:
        op->status = status;
        if (status)
            log_error(TAG, "write at block %llu: %s", (unsigned long long)op->ent->start,
                      res == -ECANCELED ? "cancelled after a failed remainder header"
                                        : cairn_strerror(status));
        if (op->bump) {
            op->done = true;
            bump_release(s);
        } else {
            if (status) {
                /* In-place reuse: the old FREE header (or a torn new header) describes the same
                 * extent length, so the space can go back to the free list as it was. */
                if (free_add(s, op->ent->start, op->ent->blocks))
                    log_warn(TAG, "free list full: extent leaked until restart");
            }
            put_finish(s, op);
        }
        return;
    case OP_GET: {
        struct ent *e = op->ent;
        struct hdr *h = op->buf;
        uint32_t len = e->len, crc = e->crc;

        if (status == 0 &&
            (!hdr_valid(s, h, e->start) || h->type != HDR_USED || h->stripe != e->fid.stripe ||
             h->gen != e->fid.gen || h->index != e->fid.index || h->len != len ||
             h->payload_crc != crc ||
             ec_crc32c(0, (uint8_t *)op->buf + CAIRN_BLOCK, len) != crc)) {
            log_error(TAG, "fragment %016llx/%u/%u at block %llu fails its CRC",
                      (unsigned long long)e->fid.stripe, e->fid.gen, e->fid.index,
                      (unsigned long long)e->start);
            status = CAIRN_ECRC;
        }
        if (--e->readers == 0 && e->free_pending)
            ent_release_extent(s, e);
        op->cb(op->arg, status, status ? 0 : len, status ? 0 : crc);
        free(op);
        return;
    }
    case OP_DEL: {
        struct ent *e = op->ent;

        if (status == 0) {
            s->used_blocks -= e->blocks;
            s->frag_count--;
            ent_unlink(s, e);
            if (e->readers)
                e->free_pending = true;
            else
                ent_release_extent(s, e);
        } else {
            e->state = ENT_PRESENT;
        }
        free(op->hdrbuf);
        op->cb(op->arg, status, 0, 0);
        free(op);
        return;
    }
    }
}

int dn_store_poll(struct dn_store *s)
{
    struct io_uring_cqe *cqe;
    uint64_t cnt;
    int n = 0;

    if (read(s->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_debug(TAG, "eventfd read: %s", strerror(errno));
    while (s->deferred) {
        struct op *op = s->deferred;

        s->deferred = op->next;
        if (!s->deferred)
            s->deferred_tail = NULL;
        op->cb(op->arg, op->status, 0, 0);
        free(op);
        n++;
    }
    while (io_uring_peek_cqe(&s->ring, &cqe) == 0) {
        struct op *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;

        io_uring_cqe_seen(&s->ring, cqe);
        s->inflight--;
        complete(s, op, res);
        n++;
    }
    return n;
}

void dn_store_drain(struct dn_store *s)
{
    if (!s)
        return;
    dn_store_poll(s);
    while (s->inflight) {
        struct io_uring_cqe *cqe;

        io_uring_submit(&s->ring);
        if (io_uring_wait_cqe(&s->ring, &cqe) == 0)
            dn_store_poll(s);
    }
    dn_store_poll(s);
}

/* ---- operations ---- */

/* Find space for an extent of `blocks`: first fit in the free list, else the high-water mark.
 * For a split free extent, *rem receives the remainder (blocks == 0 if none). */
static int alloc_extent(struct dn_store *s, uint32_t blocks, uint64_t *start, bool *bump,
                        struct extent *rem)
{
    rem->blocks = 0;
    for (size_t i = 0; i < s->nfree; i++) {
        if (s->free[i].blocks >= blocks) {
            *start = s->free[i].start;
            *bump = false;
            if (s->free[i].blocks > blocks) {
                rem->start = s->free[i].start + blocks;
                rem->blocks = s->free[i].blocks - blocks;
            }
            s->free[i] = s->free[--s->nfree];
            return 0;
        }
    }
    if (s->hwm + blocks > s->dev_blocks)
        return CAIRN_ENOSPC;
    *start = s->hwm;
    *bump = true;
    s->hwm += blocks;
    return 0;
}

int dn_store_put(struct dn_store *s, const struct dn_fid *fid, void *buf, uint32_t len,
                 uint32_t crc, dn_store_cb cb, void *arg)
{
    struct io_uring_sqe *sqe;
    struct op *op, *rop = NULL;
    struct extent rem;
    struct ent *e;
    uint64_t start;
    uint32_t blocks;
    bool bump;
    int rc;

    if (!s || !fid || !buf || !cb || len == 0 || len > DN_MAX_FRAG ||
        ((uintptr_t)buf % CAIRN_BLOCK))
        return CAIRN_EINVAL;
    if (s->broken)
        return defer(s, cb, arg, CAIRN_EIO);
    if (ent_find(s, fid))
        return defer(s, cb, arg, CAIRN_EEXIST);
    if (ec_crc32c(0, (uint8_t *)buf + CAIRN_BLOCK, len) != crc)
        return defer(s, cb, arg, CAIRN_ECRC);
    blocks = extent_blocks(len);
    op = calloc(1, sizeof(*op));
    e = calloc(1, sizeof(*e));
    if (!op || !e) {
        free(op);
        free(e);
        return defer(s, cb, arg, CAIRN_ENOMEM);
    }
    rc = alloc_extent(s, blocks, &start, &bump, &rem);
    if (rc) {
        free(op);
        free(e);
        return defer(s, cb, arg, rc);
    }
    if (rem.blocks) {
        rop = calloc(1, sizeof(*rop));
        if (rop)
            rop->hdrbuf = aligned_alloc(CAIRN_BLOCK, CAIRN_BLOCK);
        if (!rop || !rop->hdrbuf) {
            free(rop);
            /* Give the whole free extent back untouched. */
            free_add(s, start, blocks + rem.blocks);
            free(op);
            free(e);
            return defer(s, cb, arg, CAIRN_ENOMEM);
        }
    }
    e->fid = *fid;
    e->start = start;
    e->blocks = blocks;
    e->len = len;
    e->crc = crc;
    e->state = ENT_WRITING;
    if (ent_insert(s, e)) {
        /* Cannot undo a bump cheaply; the block range stays reserved and is covered below. */
        free(e);
        free(op);
        if (rop) {
            free(rop->hdrbuf);
            free(rop);
        }
        if (!bump)
            free_add(s, start, blocks + rem.blocks);
        else
            s->hwm -= blocks == s->hwm - start ? blocks : 0;
        return defer(s, cb, arg, CAIRN_ENOMEM);
    }

    /* The header goes in the caller's scratch block; padding after the payload is zeroed so
     * no stale memory reaches the device. */
    hdr_fill(s, buf, HDR_USED, blocks, fid, len, crc);
    memset((uint8_t *)buf + CAIRN_BLOCK + len, 0,
           CAIRN_ALIGN_UP((size_t)len, CAIRN_BLOCK) - len);
    op->kind = OP_PUT;
    op->ent = e;
    op->cb = cb;
    op->arg = arg;
    op->buf = buf;
    op->bytes = (size_t)blocks * CAIRN_BLOCK;
    op->bump = bump;
    if (bump) {
        if (s->bump_tail)
            s->bump_tail->next = op;
        else
            s->bump_head = op;
        s->bump_tail = op;
    }
    if (rop) {
        rop->kind = OP_REMAINDER;
        rop->rem = rem;
        rop->bytes = CAIRN_BLOCK;
        hdr_fill(s, rop->hdrbuf, HDR_FREE, (uint32_t)rem.blocks, NULL, 0, 0);
        sqe = get_sqe(s);
        io_uring_prep_write(sqe, s->fd, rop->hdrbuf, CAIRN_BLOCK, rem.start * CAIRN_BLOCK);
        io_uring_sqe_set_data(sqe, rop);
        sqe->flags |= IOSQE_IO_LINK; /* the USED write starts only after this one succeeded */
        s->inflight++;
    }
    sqe = get_sqe(s);
    io_uring_prep_write(sqe, s->fd, buf, (unsigned)op->bytes, start * CAIRN_BLOCK);
    io_uring_sqe_set_data(sqe, op);
    s->inflight++;
    io_uring_submit(&s->ring);
    return 0;
}

int dn_store_get(struct dn_store *s, const struct dn_fid *fid, void *buf, size_t buf_len,
                 dn_store_cb cb, void *arg)
{
    struct io_uring_sqe *sqe;
    struct ent *e;
    struct op *op;
    size_t need;

    if (!s || !fid || !buf || !cb || ((uintptr_t)buf % CAIRN_BLOCK))
        return CAIRN_EINVAL;
    e = ent_find(s, fid);
    if (!e || e->state != ENT_PRESENT)
        return defer(s, cb, arg, CAIRN_ENOENT);
    need = CAIRN_BLOCK + CAIRN_ALIGN_UP((size_t)e->len, CAIRN_BLOCK);
    if (buf_len < need)
        return defer(s, cb, arg, CAIRN_ETOOBIG);
    op = calloc(1, sizeof(*op));
    if (!op)
        return defer(s, cb, arg, CAIRN_ENOMEM);
    op->kind = OP_GET;
    op->ent = e;
    op->cb = cb;
    op->arg = arg;
    op->buf = buf;
    op->bytes = need;
    e->readers++;
    sqe = get_sqe(s);
    io_uring_prep_read(sqe, s->fd, buf, (unsigned)need, e->start * CAIRN_BLOCK);
    io_uring_sqe_set_data(sqe, op);
    s->inflight++;
    io_uring_submit(&s->ring);
    return 0;
}

int dn_store_del(struct dn_store *s, const struct dn_fid *fid, dn_store_cb cb, void *arg)
{
    struct io_uring_sqe *sqe;
    struct ent *e;
    struct op *op;

    if (!s || !fid || !cb)
        return CAIRN_EINVAL;
    e = ent_find(s, fid);
    if (!e || e->state != ENT_PRESENT)
        return defer(s, cb, arg, CAIRN_ENOENT);
    op = calloc(1, sizeof(*op));
    if (op)
        op->hdrbuf = aligned_alloc(CAIRN_BLOCK, CAIRN_BLOCK);
    if (!op || !op->hdrbuf) {
        free(op);
        return defer(s, cb, arg, CAIRN_ENOMEM);
    }
    e->state = ENT_DELETING; /* new gets see ENOENT from now on */
    op->kind = OP_DEL;
    op->ent = e;
    op->cb = cb;
    op->arg = arg;
    op->bytes = CAIRN_BLOCK;
    hdr_fill(s, op->hdrbuf, HDR_FREE, e->blocks, NULL, 0, 0);
    sqe = get_sqe(s);
    io_uring_prep_write(sqe, s->fd, op->hdrbuf, CAIRN_BLOCK, e->start * CAIRN_BLOCK);
    io_uring_sqe_set_data(sqe, op);
    s->inflight++;
    io_uring_submit(&s->ring);
    return 0;
}

bool dn_store_lookup(const struct dn_store *s, const struct dn_fid *fid, uint32_t *len,
                     uint32_t *crc)
{
    const struct ent *e = ent_find(s, fid);

    if (!e || e->state != ENT_PRESENT)
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
    st->hwm = s->hwm * CAIRN_BLOCK;
}
