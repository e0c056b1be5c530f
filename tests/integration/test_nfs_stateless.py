#!/usr/bin/python3
"""C-nodes are stateless and acknowledged NFS writes are durable (invariants 1 and 2): a
writer keeps writing files through C-node 0 (each ends with COMMIT: libnfs commits on close)
while C-node 0 is killed with kill -9.  Every file whose writer finished before the kill
verifies byte for byte through C-node 1, and again through C-node 0 once it is restarted;
handles issued by the dead C-node keep working on the restarted one (nfscheck verify does a
fresh mount, so the handle path is checked by the cross-C-node part)."""
import subprocess
import threading
import time

from cluster import NFSCHECK, Cluster, check, log, main

MiB = 1 << 20
SIZES = [1, 5000, 70000, MiB + 3, 3 * MiB + 1]


def test():
    with Cluster(dnodes=6, ec="4+2", cnodes=2) as c:
        c.nfscheck("mkdir", c.nfs_url("/"), "ckpt")
        done = []          # (path, size, seed) acknowledged before the kill
        errors = []
        stop = threading.Event()
        killed = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                size, seed = SIZES[i % len(SIZES)], 1000 + i
                path = "ckpt/f%04d" % i
                i += 1
                try:
                    # libnfs keeps reconnecting to a dead server: the one write in flight at
                    # the kill is cut off by this timeout.
                    p = subprocess.run([NFSCHECK, "write", c.nfs_url("/"), path, str(size),
                                        str(seed)], stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, timeout=30)
                except subprocess.TimeoutExpired as e:
                    p = subprocess.CompletedProcess(e.cmd, -1, "timed out", None)
                if p.returncode != 0:
                    if not killed.is_set():
                        errors.append("write %s failed before the kill: %s" % (path, p.stdout))
                    return
                if killed.is_set():
                    return  # finished around the kill: not counted either way
                done.append((path, size, seed))

        t = threading.Thread(target=writer)
        t.start()
        deadline = time.monotonic() + 60
        while len(done) < 8 and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.1)
        killed.set()
        c.kill_now("cnode", 0)
        stop.set()
        t.join(timeout=180)
        check(not errors, "; ".join(errors))
        check(len(done) >= 8, "only %d files written before the kill" % len(done))
        log("killed C-node 0 after %d acknowledged files" % len(done))

        for path, size, seed in done:
            c.nfscheck("verify", c.nfs_url("/", 1), path, size, seed)
        log("ok   all %d acknowledged files verify through C-node 1" % len(done))

        c.start("cnode", 0)
        for path, size, seed in done:
            c.nfscheck("verify", c.nfs_url("/", 0), path, size, seed)
        log("ok   and through the restarted C-node 0")


if __name__ == "__main__":
    main(test)
