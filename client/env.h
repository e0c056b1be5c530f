/*
 * env.h - the cluster's configuration file: DIR/cluster.env, as tools/cairn-local writes it
 * for a local cluster (the D-node list in cluster-map order, the erasure code, the fabric).
 *
 * The format is one NAME=value per line; a value may be wrapped in double quotes (cairn-local
 * quotes values with spaces so that the file can also be sourced by a shell).  Lines starting
 * with '#' and blank lines are ignored.
 */
#ifndef CAIRN_CLIENT_ENV_H
#define CAIRN_CLIENT_ENV_H

#include "client/cluster.h"

#define CL_ENV_MAX 64

struct cl_env {
    unsigned n;
    char *names[CL_ENV_MAX];
    char *values[CL_ENV_MAX];
};

/* Parse path into env (owned by env; free with cl_env_fini).  Returns 0, CAIRN_ENOENT,
 * CAIRN_EPROTO (a line without '='), CAIRN_ETOOBIG (too many entries) or CAIRN_ENOMEM. */
int cl_env_load(const char *path, struct cl_env *env);
void cl_env_fini(struct cl_env *env);
/* Value of name, or NULL. */
const char *cl_env_get(const struct cl_env *env, const char *name);
/* Fill a cluster-view config from DNODES, EC, FRAG_SIZE, FABRIC_PROVIDER and BIND_HOST; the
 * strings point into env.  Returns 0 or CAIRN_EINVAL with a message on stderr. */
int cl_env_cluster_config(const struct cl_env *env, struct cl_cluster_config *cfg);

#endif
