/*
 * portmap.c - registering with the local portmapper (rpcbind), so that clients that ask it
 * (a kernel mount without port= and mountport=) find this C-node's NFS and MOUNT ports.
 *
 * libtirpc's pmap_set()/pmap_unset() speak to rpcbind: the packaged ONC RPC library, since a
 * portmapper client is not worth writing again.  A stale registration (a C-node killed earlier)
 * is replaced.  A missing portmapper only costs a warning: clients can still name the ports.
 * One C-node per host can own a registration.
 */
#include <netinet/in.h>
#include <rpc/pmap_clnt.h>

#include "cnode/nfs/nfs3.h"
#include "common/cairn.h"
#include "common/log.h"

void nfs_portmap(bool set, unsigned nfs_port, unsigned mount_port)
{
    static const struct {
        unsigned long prog;
        const char *name;
    } progs[] = {{NFS_PROGRAM, "NFS"}, {MOUNT_PROGRAM, "MOUNT"}};
    const unsigned ports[] = {nfs_port, mount_port};

    for (size_t i = 0; i < CAIRN_ARRAY_SIZE(progs); i++) {
        pmap_unset(progs[i].prog, 3);
        if (!set)
            continue;
        if (pmap_set(progs[i].prog, 3, IPPROTO_TCP, (unsigned short)ports[i]))
            log_info("nfs", "registered %s v3 on TCP port %u with the portmapper",
                     progs[i].name, ports[i]);
        else
            log_warn("nfs", "could not register %s v3 with the portmapper (is rpcbind "
                              "running?)",
                     progs[i].name);
    }
}
