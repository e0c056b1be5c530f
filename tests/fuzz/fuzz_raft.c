/*
 * fuzz_raft.c - libFuzzer harness for what a D-node does with a received Raft batch.
 *
 * cs_node_recv() decodes the batch (protobuf-c), checks every count and range it will trust
 * (entries, membership, snapshot header), keeps out non-members and hands the messages to
 * libraft.  The node here is node 1 of a three-voter group (peers 2 and 3), over a host that
 * keeps nothing; each input is one batch followed by a tick and a flush.  Any input must be
 * dropped or handled without a crash, a leak or an out-of-bounds access (ASan, UBSan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"
#include "consensus/cs.h"

static uint64_t clock_ms = 1000;

/* What the group stored when it bootstrapped (so it starts with its membership); later
 * writes are dropped. */
static uint8_t boot_meta[256], boot_entry[256];
static size_t boot_meta_len, boot_entry_len;
static struct cs_entry boot;

static int h_load(void *arg, uint32_t group, struct cs_loaded *out)
{
    (void)arg;
    (void)group;
    memset(out, 0, sizeof *out);
    if (boot_entry_len) {
        boot.index = 1;
        boot.term = 1;
        boot.type = CS_ENTRY_CHANGE;
        boot.buf = boot_entry;
        boot.len = boot_entry_len;
        out->entries = &boot;
        out->n_entries = 1;
        out->meta = boot_meta;
        out->meta_len = boot_meta_len;
    }
    return 0;
}
static void h_load_done(void *arg, struct cs_loaded *l)
{
    (void)arg;
    (void)l;
}
static int h_put_meta(void *arg, uint32_t group, const void *buf, size_t len)
{
    (void)arg, (void)group;
    if (!boot_meta_len && len <= sizeof boot_meta) {
        memcpy(boot_meta, buf, len);
        boot_meta_len = len;
    }
    return 0;
}
static int h_put_entries(void *arg, uint32_t group, const struct cs_entry *e, size_t n)
{
    (void)arg, (void)group;
    if (!boot_entry_len && n == 1 && e[0].index == 1 && e[0].len <= sizeof boot_entry) {
        memcpy(boot_entry, e[0].buf, e[0].len);
        boot_entry_len = e[0].len;
    }
    return 0;
}
static int h_drop_entries(void *arg, uint32_t group, uint64_t from, uint64_t to)
{
    (void)arg, (void)group, (void)from, (void)to;
    return 0;
}
static int h_commit(void *arg)
{
    (void)arg;
    return 0;
}
static int h_apply(void *arg, uint32_t group, uint64_t index, const void *cmd, size_t len,
                   void **result)
{
    (void)arg, (void)group, (void)index, (void)cmd, (void)len;
    *result = NULL;
    return 0;
}
static void h_result_free(void *arg, void *result)
{
    (void)arg;
    free(result);
}
static int h_dump(void *arg, uint32_t group, uint64_t *applied, void **data, size_t *len)
{
    (void)arg, (void)group;
    *applied = 0;
    *data = NULL;
    *len = 0;
    return 0;
}
static int h_install(void *arg, uint32_t group, uint64_t applied, const void *data, size_t len)
{
    (void)arg, (void)group, (void)applied, (void)data, (void)len;
    return 0;
}
static void h_send(void *arg, uint64_t to, const void *buf, size_t len)
{
    (void)arg, (void)to, (void)buf, (void)len;
}
static uint64_t h_now(void *arg)
{
    (void)arg;
    return clock_ms;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cs_host host = {
        .load = h_load, .load_done = h_load_done, .put_meta = h_put_meta,
        .put_entries = h_put_entries, .drop_entries = h_drop_entries, .commit = h_commit,
        .apply = h_apply, .result_free = h_result_free, .dump = h_dump, .install = h_install,
        .send = h_send, .now_ms = h_now,
    };
    struct cs_config cfg = {.self = 1, .seed = 7};
    uint64_t voters[] = {1, 2, 3};
    struct cs_node *n;
    uint8_t *buf = malloc(size ? size : 1);

    boot_meta_len = boot_entry_len = 0;
    if (!buf || cs_node_create(&cfg, &host, &n) != 0) {
        free(buf);
        return 0;
    }
    if (cs_group_open(n, 0, voters, 3, NULL) == 0) {
        memcpy(buf, data, size);
        clock_ms += 5000; /* past the quiet time after a start: votes count */
        cs_node_recv(n, buf, size);
        cs_node_tick(n);
        cs_node_flush(n);
    }
    cs_node_destroy(n);
    free(buf);
    return 0;
}
