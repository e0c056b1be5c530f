/*
 * clusterenv.h - read DIR/cluster.env, the file tools/cairn-local writes for a local cluster.
 *
 * The format is one NAME=value per line; a value may be wrapped in double quotes (cairn-local
 * quotes values with spaces so that the file can also be sourced by a shell).  Lines starting
 * with '#' and blank lines are ignored.
 */
#ifndef CAIRN_TOOLS_CLUSTERENV_H
#define CAIRN_TOOLS_CLUSTERENV_H

#include "cnode/stripe.h"

#define CLUSTERENV_MAX 64

struct clusterenv {
    unsigned n;
    char *names[CLUSTERENV_MAX];
    char *values[CLUSTERENV_MAX];
};

/* Parse path into env (owned by env; free with clusterenv_fini).  Returns 0, CAIRN_ENOENT,
 * CAIRN_EPROTO (a line without '='), CAIRN_ETOOBIG (too many entries) or CAIRN_ENOMEM. */
int clusterenv_load(const char *path, struct clusterenv *env);
void clusterenv_fini(struct clusterenv *env);
/* Value of name, or NULL. */
const char *clusterenv_get(const struct clusterenv *env, const char *name);
/* Fill a stripe-client config from DNODES, EC, FRAG_SIZE, FABRIC_PROVIDER and BIND_HOST; the
 * strings point into env.  Returns 0 or CAIRN_EINVAL with a message on stderr. */
int clusterenv_cluster_config(const struct clusterenv *env, struct cn_cluster_config *cfg);

#endif
