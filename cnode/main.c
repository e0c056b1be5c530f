/*
 * main.c - the C-node daemon: a stateless protocol head.  It reads the cluster map from a
 * cluster.env file, serves S3 on one port and keeps nothing of its own: every byte and every
 * record it acknowledges is on the D-nodes, so it can be killed at any moment.
 *
 *     cairn-cnode --cluster FILE --listen HOST:PORT [--ready FILE] [--loops N] [--workers N]
 *                 [--log-level L]
 */
#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <rpc/pmap_clnt.h>

#include "cnode/nfs/nfs3.h"
#include "cnode/rpc/server.h"
#include "cnode/s3/s3.h"
#include "cnode/http/server.h"
#include "common/cairn.h"
#include "common/log.h"
#include "client/env.h"

#define TAG "cnode"

static void usage(void)
{
    fprintf(stderr, "usage: cairn-cnode --cluster FILE --listen HOST:PORT "
                    "[--nfs-port P --mount-port Q] [--ready FILE] [--loops N] [--workers N] "
                    "[--nfs-workers N] [--portmap] [--log-level L]\n");
    exit(2);
}

/* --portmap: register NFS v3 and MOUNT v3 over TCP with the local portmapper (rpcbind), so
 * clients that ask it (a kernel mount without port= and mountport=) find this C-node; set
 * false: withdraw the registration at exit.  libtirpc's pmap_set()/pmap_unset() speak to
 * rpcbind; a stale registration (a C-node killed earlier) is replaced.  A missing portmapper
 * only costs a warning: clients can still name the ports. */
static void portmap(bool set, unsigned nfs_port, unsigned mount_port)
{
    static const struct {
        unsigned long prog;
        const char *name;
    } progs[] = {{100003, "NFS"}, {100005, "MOUNT"}};
    const unsigned ports[] = {nfs_port, mount_port};

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(progs); i++) {
        pmap_unset(progs[i].prog, 3);
        if (!set)
            continue;
        if (pmap_set(progs[i].prog, 3, IPPROTO_TCP, (unsigned short)ports[i]))
            log_info(TAG, "registered %s v3 on TCP port %u with the portmapper", progs[i].name,
                     ports[i]);
        else
            log_warn(TAG, "could not register %s v3 with the portmapper (is rpcbind running?)",
                     progs[i].name);
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cluster", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
        {"ready", required_argument, NULL, 'r'},   {"loops", required_argument, NULL, 'L'},
        {"workers", required_argument, NULL, 'w'}, {"log-level", required_argument, NULL, 'v'},
        {"nfs-port", required_argument, NULL, 'n'}, {"mount-port", required_argument, NULL, 'm'},
        {"nfs-workers", required_argument, NULL, 'W'}, {"portmap", no_argument, NULL, 'P'},
        {NULL, 0, NULL, 0}};
    const char *cluster = NULL, *listen = NULL, *ready = NULL;
    struct http_server_config scfg = {0};
    struct s3_config s3cfg = {0};
    struct http_server_app app;
    struct http_server *srv = NULL;
    struct rpcsrv_config rcfg = {0};
    struct nfs_config nfscfg = {0};
    struct rpcsrv_app napp = {0};
    struct rpcsrv *rsrv = NULL;
    bool nfs = false, use_portmap = false;
    struct cl_env env = {0};
    char host[256];
    const char *colon;
    sigset_t sigs;
    int c, sig, rc;

    cairn_log_set_ident("cnode");
    if (getenv("CAIRN_LOG"))
        cairn_log_set_level(getenv("CAIRN_LOG"));
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cluster = optarg; break;
        case 'l': listen = optarg; break;
        case 'r': ready = optarg; break;
        case 'L': scfg.loops = (unsigned)atoi(optarg); break;
        case 'w': scfg.workers = (unsigned)atoi(optarg); break;
        case 'v': cairn_log_set_level(optarg); break;
        case 'n': rcfg.ports[NFS_LISTENER] = (unsigned)atoi(optarg); nfs = true; break;
        case 'm': rcfg.ports[MOUNT_LISTENER] = (unsigned)atoi(optarg); nfs = true; break;
        case 'W': rcfg.workers = (unsigned)atoi(optarg); break;
        case 'P': use_portmap = true; break;
        default: usage();
        }
    }
    if (!cluster || !listen)
        usage();
    colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof(host))
        usage();
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
    scfg.host = host;
    scfg.port = (unsigned)atoi(colon + 1);

    rc = cl_env_load(cluster, &env);
    if (rc) {
        log_error(TAG, "%s: %s", cluster, cairn_strerror(rc));
        return 1;
    }
    if (cl_env_cluster_config(&env, &s3cfg.cluster))
        goto err_env;
    s3cfg.region = cl_env_get(&env, "S3_REGION");
    if (s3_app_init(&s3cfg, &app))
        goto err_env;
    if (nfs) {
        nfscfg.cluster = s3cfg.cluster;
        nfscfg.exports = cl_env_get(&env, "NFS_EXPORTS");
        if (nfs_app_init(&nfscfg, &napp))
            goto err_app;
    }

    /* Block the stop signals in every thread; main waits for them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = http_server_start(&scfg, &app, &srv);
    if (rc) {
        log_error(TAG, "cannot serve on %s: %s", listen, cairn_strerror(rc));
        goto err_app;
    }
    log_info(TAG, "serving S3 on %s:%u", host, http_server_port(srv));
    if (nfs) {
        rcfg.host = host;
        rcfg.nports = 2;
        rcfg.loops = scfg.loops;
        rc = rpcsrv_start(&rcfg, &napp, &rsrv);
        if (rc) {
            log_error(TAG, "cannot serve NFS on %s:%u/%u: %s", host, rcfg.ports[NFS_LISTENER],
                      rcfg.ports[MOUNT_LISTENER], cairn_strerror(rc));
            http_server_stop(srv);
            goto err_app;
        }
        log_info(TAG, "serving NFSv3 on %s:%u, MOUNT on port %u", host,
                 rpcsrv_port(rsrv, NFS_LISTENER), rpcsrv_port(rsrv, MOUNT_LISTENER));
        if (use_portmap)
            portmap(true, rpcsrv_port(rsrv, NFS_LISTENER), rpcsrv_port(rsrv, MOUNT_LISTENER));
    }
    if (ready) {
        FILE *f = fopen(ready, "w");

        if (f) {
            fprintf(f, "%u\n", http_server_port(srv));
            if (rsrv)
                fprintf(f, "%u\n%u\n", rpcsrv_port(rsrv, NFS_LISTENER),
                        rpcsrv_port(rsrv, MOUNT_LISTENER));
            fclose(f);
        }
    }
    sigwait(&sigs, &sig);
    log_info(TAG, "signal %d: stopping", sig);
    if (rsrv && use_portmap)
        portmap(false, 0, 0);
    rpcsrv_stop(rsrv);
    http_server_stop(srv);
    nfs_app_fini(&napp);
    s3_app_fini(&app);
    cl_env_fini(&env);
    return 0;

err_app:
    nfs_app_fini(&napp);
    s3_app_fini(&app);
err_env:
    cl_env_fini(&env);
    return 1;
}
