/*
 * fault.c - fault injection sites (see fault.h).
 *
 * A small table of armed sites, each with a pass counter.  Tests arm sites from one thread
 * before the code under test runs; the counters are atomic, so sites hit from several threads
 * count each pass once.
 */
#include "common/fault.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct site {
    char name[48];
    unsigned nth;
    bool sticky;
    atomic_uint passes;
};

static struct site sites[CAIRN_FAULT_SITES];
static atomic_uint nsites;
static atomic_bool armed;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

bool cairn_fault_arm(const char *site, unsigned nth, bool sticky)
{
    unsigned i = atomic_load(&nsites);

    if (i >= CAIRN_FAULT_SITES || nth == 0)
        return false;
    snprintf(sites[i].name, sizeof(sites[i].name), "%s", site);
    sites[i].nth = nth;
    sites[i].sticky = sticky;
    atomic_store(&sites[i].passes, 0);
    atomic_store(&nsites, i + 1);
    atomic_store(&armed, true);
    return true;
}

void cairn_fault_clear(void)
{
    atomic_store(&armed, false);
    atomic_store(&nsites, 0);
}

static void from_env(void)
{
    const char *spec = getenv("CAIRN_FAULTS");
    char *copy, *tok, *save = NULL;

    if (!spec || !*spec || !(copy = strdup(spec)))
        return;
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '='), *end;
        unsigned long n;

        if (!eq)
            continue;
        *eq = 0;
        n = strtoul(eq + 1, &end, 10);
        cairn_fault_arm(tok, (unsigned)n, *end == '+');
    }
    free(copy);
}

bool cairn_fault(const char *site)
{
    unsigned n;

    pthread_once(&env_once, from_env);
    if (!atomic_load_explicit(&armed, memory_order_relaxed))
        return false;
    n = atomic_load(&nsites);
    for (unsigned i = 0; i < n; i++) {
        unsigned pass;

        if (strcmp(sites[i].name, site))
            continue;
        pass = atomic_fetch_add(&sites[i].passes, 1) + 1;
        return pass == sites[i].nth || (sites[i].sticky && pass > sites[i].nth);
    }
    return false;
}
