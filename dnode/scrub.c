/*
 * scrub.c - background CRC scrub of the D-node's fragments (see scrub.h).
 */
#include "dnode/scrub.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "common/clock.h"
#include "common/log.h"

#define TAG "scrub"
#define SAVE_EVERY_MS 10000u /* how often a pass in progress records where it is */

struct dn_scrub {
    struct dn_store *store;
    uint64_t rate_bps;
    uint64_t interval_ms;
    char *state;

    bool in_pass;
    bool reading;
    uint64_t cursor;
    uint64_t next_ms;  /* monotonic: the next read (or pass) may start then */
    uint64_t saved_ms; /* monotonic: state last written */
    void *buf;
    size_t buf_len;
    struct dn_fid fid; /* being read */
    bool was_bad;      /* ... and already marked bad when listed */
    struct dn_scrub_stats st;
};

static uint64_t wall_ms(void)
{
    return (uint64_t)cairn_wall_ns() / 1000000u;
}

/* The state file: one line, "cairn-scrub 1 LAST_END_MS IN_PASS CURSOR POS OF". */
static void state_load(struct dn_scrub *sc)
{
    FILE *f = sc->state ? fopen(sc->state, "r") : NULL;
    uint64_t last = 0, cursor = 0, pos = 0, of = 0;
    unsigned in_pass = 0;

    if (!f)
        return;
    if (fscanf(f, "cairn-scrub 1 %" SCNu64 " %u %" SCNu64 " %" SCNu64 " %" SCNu64, &last,
               &in_pass, &cursor, &pos, &of) == 5) {
        sc->st.last_end_ms = last;
        if (in_pass) {
            sc->in_pass = true;
            sc->cursor = cursor;
            sc->st.pos = pos;
            sc->st.of = of;
        }
    } else {
        log_warn(TAG, "%s: not a scrub state file; starting afresh", sc->state);
    }
    fclose(f);
}

static void state_save(struct dn_scrub *sc)
{
    char tmp[4096];
    FILE *f;

    sc->saved_ms = cairn_now_ms();
    if (!sc->state || snprintf(tmp, sizeof(tmp), "%s.tmp", sc->state) >= (int)sizeof(tmp))
        return;
    f = fopen(tmp, "w");
    if (!f) {
        log_warn(TAG, "cannot write %s", tmp);
        return;
    }
    fprintf(f, "cairn-scrub 1 %" PRIu64 " %u %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
            sc->st.last_end_ms, sc->in_pass ? 1u : 0u, sc->cursor, sc->st.pos, sc->st.of);
    /* Losing the newest state to a crash costs only rescrubbing a little: no fsync. */
    if (fclose(f) != 0 || rename(tmp, sc->state) != 0)
        log_warn(TAG, "cannot replace %s", sc->state);
}

int dn_scrub_create(struct dn_store *store, const struct dn_scrub_config *cfg,
                    struct dn_scrub **out)
{
    struct dn_scrub *sc = calloc(1, sizeof(*sc));
    uint64_t now = wall_ms();

    if (!sc)
        return CAIRN_ENOMEM;
    sc->store = store;
    sc->rate_bps = cfg->rate_bps;
    sc->interval_ms = (uint64_t)cfg->interval_s * 1000u;
    if (cfg->state && !(sc->state = strdup(cfg->state))) {
        free(sc);
        return CAIRN_ENOMEM;
    }
    state_load(sc);
    /* The first pass is due `interval` after the last one ended, by the wall clock (the
     * state file outlives the process); a D-node that never scrubbed starts at once. */
    sc->next_ms = cairn_now_ms();
    if (!sc->in_pass && sc->st.last_end_ms && sc->st.last_end_ms + sc->interval_ms > now)
        sc->next_ms += sc->st.last_end_ms + sc->interval_ms - now;
    *out = sc;
    return 0;
}

void dn_scrub_destroy(struct dn_scrub *sc)
{
    if (!sc)
        return;
    if (sc->rate_bps)
        state_save(sc);
    free(sc->buf);
    free(sc->state);
    free(sc);
}

static void pass_end(struct dn_scrub *sc)
{
    sc->in_pass = false;
    sc->st.passes++;
    sc->st.last_end_ms = wall_ms();
    if (sc->st.pos) /* an empty device passes every interval: nothing to say */
        log_info(TAG, "pass done: %" PRIu64 " fragments checked, %" PRIu64
                 " corrupt found since start", sc->st.pos, sc->st.found);
    sc->st.pos = 0;
    sc->st.of = 0;
    sc->cursor = 0;
    /* At least a second apart, so an empty device is not listed in a busy loop. */
    sc->next_ms = cairn_now_ms() + (sc->interval_ms > 1000 ? sc->interval_ms : 1000);
    state_save(sc);
}

static void read_done(void *arg, int status, uint32_t len, uint32_t crc)
{
    struct dn_scrub *sc = arg;
    uint64_t now = cairn_now_ms(), cost;

    (void)crc;
    sc->reading = false;
    sc->st.pos++;
    if (status == 0) {
        sc->st.bytes += len;
    } else if (status == CAIRN_ECRC) {
        if (!sc->was_bad)
            sc->st.found++; /* newly: the store marked it bad and logged it */
    } else if (status != CAIRN_ENOENT) { /* ENOENT: deleted since it was listed */
        log_warn(TAG, "reading fragment %" PRIu64 ".%u.%u: %s", sc->fid.stripe, sc->fid.gen,
                 sc->fid.index, cairn_strerror(status));
    }
    /* The rate cap: the next read starts once this one's bytes are paid for. */
    cost = sc->rate_bps ? (uint64_t)len * 1000u / sc->rate_bps : 0;
    sc->next_ms = (sc->next_ms > now ? sc->next_ms : now) + cost;
}

int dn_scrub_tick(struct dn_scrub *sc)
{
    uint64_t now = cairn_now_ms();
    struct dn_frag_info fi;
    bool more;
    size_t need;

    if (!sc || !sc->rate_bps || sc->reading)
        return -1;
    if (now < sc->next_ms)
        return (int)(sc->next_ms - now < 60000 ? sc->next_ms - now : 60000);
    if (!sc->in_pass) {
        struct dn_store_stats ss;

        dn_store_stats(sc->store, &ss);
        sc->in_pass = true;
        sc->cursor = 0;
        sc->st.pos = 0;
        sc->st.of = ss.frag_count;
    }
    if (dn_store_list(sc->store, &sc->cursor, false, &fi, 1, &more) == 0) {
        pass_end(sc);
        return 1000;
    }
    if (now - sc->saved_ms >= SAVE_EVERY_MS)
        state_save(sc);
    need = CAIRN_BLOCK + CAIRN_ALIGN_UP((size_t)fi.len, CAIRN_BLOCK);
    if (need > sc->buf_len) {
        void *nb = NULL;

        if (posix_memalign(&nb, CAIRN_BLOCK, need)) {
            sc->next_ms = now + 1000; /* try again later */
            return 1000;
        }
        free(sc->buf);
        sc->buf = nb;
        sc->buf_len = need;
    }
    sc->fid = fi.fid;
    sc->was_bad = fi.bad;
    sc->reading = true;
    if (dn_store_get(sc->store, &fi.fid, sc->buf, sc->buf_len, read_done, sc)) {
        sc->reading = false;
        sc->next_ms = now + 1000;
        return 1000;
    }
    return -1;
}

void dn_scrub_stats(const struct dn_scrub *sc, struct dn_scrub_stats *out)
{
    if (!sc) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = sc->st;
}
