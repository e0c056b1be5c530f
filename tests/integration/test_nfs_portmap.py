#!/usr/bin/python3
"""Portmapper registration (`cairn-cnode --portmap`, `cairn-local up --portmap`): a C-node
registers NFS v3 and MOUNT v3 over TCP with the local rpcbind, so a client that names no ports
finds it; a C-node that stops withdraws the registration.

The test runs in network and mount namespaces of its own (root needed; re-executed under
unshare) with an rpcbind of its own on a private /run, so it neither needs nor disturbs the
machine's portmapper.  Checks: rpcinfo lists both programs at the C-node's ports, and after
`cairn-local down` neither program is registered.  (A libnfs mount from inside a private
network namespace fails with "mount_cb: (null)" even with the ports named and no portmapper
involved, so a client mount through the portmapper is not exercised here yet.)"""
import os
import subprocess
import sys
import time

from cluster import Cluster, check, log, main

INNER = "--in-namespace"


def rpcinfo():
    p = subprocess.run(["rpcinfo", "-p", "127.0.0.1"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    check(p.returncode == 0, "rpcinfo -p failed: %s" % p.stdout)
    # "   program vers proto   port  service"
    regs = set()
    for line in p.stdout.splitlines()[1:]:
        f = line.split()
        if len(f) >= 4 and f[0].isdigit():
            regs.add((int(f[0]), int(f[1]), f[2], int(f[3])))
    return regs


def test():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    os.makedirs("/run/rpcbind", exist_ok=True)
    rpcbind = subprocess.Popen(["rpcbind", "-f"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists("/run/rpcbind.sock") and time.monotonic() < deadline:
            time.sleep(0.05)
        check(os.path.exists("/run/rpcbind.sock"), "rpcbind did not start")
        check(not any(r[0] in (100003, 100005) for r in rpcinfo()),
              "NFS or MOUNT registered before any C-node started")
        c = Cluster(dnodes=3, ec="2+1", cnodes=1,
                    nfs_exports="/ 127.0.0.1(rw,no_root_squash)")
        c.args.append("--portmap")
        with c:
            nfs_port = int(c.env["NFS_PORTS"].split()[0])
            mnt_port = int(c.env["MOUNT_PORTS"].split()[0])
            regs = rpcinfo()
            check((100003, 3, "tcp", nfs_port) in regs,
                  "NFS v3/tcp not registered at port %d: %s" % (nfs_port, sorted(regs)))
            check((100005, 3, "tcp", mnt_port) in regs,
                  "MOUNT v3/tcp not registered at port %d: %s" % (mnt_port, sorted(regs)))
            log("rpcinfo: NFS v3 at %d, MOUNT v3 at %d" % (nfs_port, mnt_port))

            c.down()
            regs = rpcinfo()
            check(not any(r[0] in (100003, 100005) for r in regs),
                  "registrations left after the C-node stopped: %s" % sorted(regs))
            log("registrations withdrawn at stop")
    finally:
        rpcbind.kill()
        rpcbind.wait()


if __name__ == "__main__":
    if INNER not in sys.argv:
        if os.geteuid() != 0:
            print("SKIP: needs root (network and mount namespaces)")
            sys.exit(77)
        os.execvp("unshare", ["unshare", "--net", "--mount", "--fork", sys.executable,
                              os.path.abspath(__file__), INNER])
    main(test)
