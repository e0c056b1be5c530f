/* env.c - parser for DIR/cluster.env (see env.h). */
#include "client/env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn.h"

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    return s;
}

int cl_env_load(const char *path, struct cl_env *env)
{
    char line[4096];
    FILE *f = fopen(path, "r");
    int rc = 0;

    memset(env, 0, sizeof(*env));
    if (!f)
        return CAIRN_ENOENT;
    while (fgets(line, sizeof(line), f)) {
        char *s = trim(line), *eq, *val;
        size_t vl;

        if (*s == '\0' || *s == '#')
            continue;
        eq = strchr(s, '=');
        if (!eq) {
            rc = CAIRN_EPROTO;
            break;
        }
        if (env->n == CL_ENV_MAX) {
            rc = CAIRN_ETOOBIG;
            break;
        }
        *eq = '\0';
        val = eq + 1;
        vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = '\0';
            val++;
        }
        env->names[env->n] = strdup(trim(s));
        env->values[env->n] = strdup(val);
        if (!env->names[env->n] || !env->values[env->n]) {
            free(env->names[env->n]);
            free(env->values[env->n]);
            rc = CAIRN_ENOMEM;
            break;
        }
        env->n++;
    }
    fclose(f);
    if (rc)
        cl_env_fini(env);
    return rc;
}

void cl_env_fini(struct cl_env *env)
{
    for (unsigned i = 0; i < env->n; i++) {
        free(env->names[i]);
        free(env->values[i]);
    }
    env->n = 0;
}

const char *cl_env_get(const struct cl_env *env, const char *name)
{
    /* Later lines win, so an appended override takes effect. */
    for (unsigned i = env->n; i-- > 0;)
        if (strcmp(env->names[i], name) == 0)
            return env->values[i];
    return NULL;
}

int cl_env_cluster_config(const struct cl_env *env, struct cl_cluster_config *cfg)
{
    const char *ec = cl_env_get(env, "EC"), *fs = cl_env_get(env, "FRAG_SIZE");
    const char *to = cl_env_get(env, "TIMEOUT_MS"), *mf = cl_env_get(env, "MIN_FRAGS");

    cfg->dnodes = cl_env_get(env, "DNODES");
    cfg->provider = cl_env_get(env, "FABRIC_PROVIDER");
    cfg->bind_host = cl_env_get(env, "BIND_HOST");
    if (!cfg->dnodes || !*cfg->dnodes) {
        fprintf(stderr, "cluster.env has no DNODES\n");
        return CAIRN_EINVAL;
    }
    if (ec && ec_layout_parse(ec, &cfg->k, &cfg->m)) {
        fprintf(stderr, "cluster.env: bad EC=%s (want K+M)\n", ec);
        return CAIRN_EINVAL;
    }
    if (to)
        cfg->timeout_ms = (uint32_t)strtoul(to, NULL, 10);
    if (mf) {
        char *end;
        unsigned long v = strtoul(mf, &end, 10);

        if (*end || v == 0 || v > EC_MAX_FRAGS) {
            fprintf(stderr, "cluster.env: bad MIN_FRAGS=%s\n", mf);
            return CAIRN_EINVAL;
        }
        cfg->min_frags = (uint32_t)v;
    }
    if (fs) {
        char *end;
        unsigned long v = strtoul(fs, &end, 10);

        if (*end || v == 0 || v % CAIRN_BLOCK || v > (16ul << 20)) {
            fprintf(stderr, "cluster.env: bad FRAG_SIZE=%s\n", fs);
            return CAIRN_EINVAL;
        }
        cfg->frag_size = (uint32_t)v;
    }
    return 0;
}
