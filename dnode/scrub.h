/*
 * scrub.h - the D-node's background scrub: every fragment on the device is read back and its
 * CRC checked, at a capped rate, one pass after another.
 *
 * A fragment that fails its check is marked bad by the store (dn_store_get does that for every
 * read, the scrub's and the clients'); the D-node lists bad fragments to the repair service
 * (OP_FRAG_LIST with bad_only), which rebuilds each one from the other fragments of its
 * stripe and puts it back here, replacing the bad copy.  Marks are not kept on disk: a D-node
 * that restarts finds the same rot again on its next pass.
 *
 * Passes are spaced: a pass starts `interval_s` after the previous one ended.  When the last
 * pass ended and how far the current one got are kept in a small state file (rewritten by
 * rename), so a D-node that restarts more often than the interval still scrubs, and resumes
 * where it was.  One read is in flight at a time; the rate cap counts payload bytes.
 *
 * Threading: the D-node's loop thread, like the store it reads.
 */
#ifndef CAIRN_DN_SCRUB_H
#define CAIRN_DN_SCRUB_H

#include <stdint.h>

#include "dnode/store.h"

struct dn_scrub;

struct dn_scrub_config {
    uint64_t rate_bps;   /* payload bytes per second; 0: no scrub at all */
    uint32_t interval_s; /* from the end of one pass to the start of the next */
    const char *state;   /* state file path (borrowed for the call); NULL: none kept */
};

struct dn_scrub_stats {
    uint64_t passes;   /* complete passes since start */
    uint64_t bytes;    /* payload bytes checked since start */
    uint64_t found;    /* fragments the scrub found corrupt since start (once each, when it
                        * first finds one no read had found before) */
    uint64_t pos;      /* fragments checked in the current pass (0 between passes) */
    uint64_t of;       /* fragments on the device when the current pass started */
    uint64_t last_end_ms; /* wall clock when the last pass ended (0: never) */
};

/* Create the scrub of store (borrowed: must outlive it).  Returns 0 or CAIRN_ENOMEM. */
int dn_scrub_create(struct dn_store *store, const struct dn_scrub_config *cfg,
                    struct dn_scrub **out);
/* Free.  No read may be in flight: call after dn_store_drain().  Accepts NULL. */
void dn_scrub_destroy(struct dn_scrub *sc);

/* Start the next read if it is due.  Returns how many ms until the scrub wants to be called
 * again (-1: not before its read completes, or never). */
int dn_scrub_tick(struct dn_scrub *sc);

void dn_scrub_stats(const struct dn_scrub *sc, struct dn_scrub_stats *out);

#endif
