#!/usr/bin/env python3
"""Degraded reads and restart: write stripes, kill m D-nodes, read every byte back, restart
them and check that nothing acknowledged was lost and that no read needs parity any more.
While D-nodes are dead, the others must not spin calling them."""
import os
import random
import time

from cluster import Cluster, check, log, main, sha256

FRAG = 64 * 1024  # small fragments: many stripes, every placement pattern gets exercised
SIZES = [0, 1, 4095, 4096, 4 * FRAG - 1, 4 * FRAG, 4 * FRAG + 1, 1 << 20, (3 << 20) + 12345,
         10 << 20]


def cpu_seconds(pid):
    """CPU time (user + system) the process used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(c, dnodes, seconds=3.0):
    """The share of a core each D-node used over a few idle seconds."""
    pids = [c.pid("dnode", i) for i in dnodes]
    before = [cpu_seconds(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return [(cpu_seconds(p) - b) / wall for p, b in zip(pids, before)]


def test():
    rnd = random.Random(20261125)
    with Cluster(dnodes=6, ec="4+2", frag_size=FRAG) as c:
        objs = {}
        for i, size in enumerate(SIZES):
            data = rnd.randbytes(size)
            p = c.put("obj%d" % i, data)
            check(p.returncode == 0, "put obj%d (%d bytes): %s" % (i, size, p.stderr))
            objs["obj%d" % i] = data
        log("wrote %d objects, %d bytes" % (len(objs), sum(SIZES)))
        healthy = idle_cpu(c, range(6))
        log("idle D-nodes use %s of a core" % ", ".join("%.0f%%" % (100 * x) for x in healthy))

        for name, data in objs.items():
            rc, got, err = c.get(name)
            check(rc == 0 and sha256(got) == sha256(data), "healthy read of %s: %s" % (name, err))
            check("rebuilt" not in err, "healthy read of %s needed parity" % name)

        victims = rnd.sample(range(6), 2)
        for v in victims:
            c.kill("dnode", v)
        log("killed D-nodes %s" % victims)
        status = c.local("status").stdout
        check(status.count("stopped") == 2, "status after kill:\n" + status)

        # The survivors keep calling the dead D-nodes (Raft heartbeats of the shards they
        # share).  Their transport once dialled a peer that refuses connections again for
        # every queued send on every loop round and never let the loop sleep: each survivor
        # burnt all the CPU it could get (here idle D-nodes use a few percent of a core), and
        # every metadata call waited behind the dialling, ~20 times slower.
        survivors = [i for i in range(6) if i not in victims]
        time.sleep(1)
        cpu = idle_cpu(c, survivors)
        log("idle survivors use %s of a core" % ", ".join("%.0f%%" % (100 * x) for x in cpu))
        check(max(cpu) < 0.12, "a D-node spins while its peers are dead: %s" %
              ", ".join("%.2f" % x for x in cpu))

        degraded = 0
        for name, data in objs.items():
            rc, got, err = c.get(name)
            check(rc == 0, "degraded read of %s failed: %s" % (name, err))
            check(len(got) == len(data) and sha256(got) == sha256(data),
                  "degraded read of %s returned wrong bytes" % name)
            degraded += "rebuilt" in err
        check(degraded > 0, "no read was degraded with 2 D-nodes down")
        log("all %d objects read back with D-nodes %s down (%d rebuilt from parity)" %
            (len(objs), victims, degraded))

        # A write that cannot place all k + m fragments is refused, and leaves the name alone.
        p = c.put("obj1", b"must not replace" * 1000)
        check(p.returncode != 0, "put with 2 D-nodes down was acknowledged")
        rc, got, err = c.get("obj1")
        check(rc == 0 and got == objs["obj1"], "failed put changed obj1")

        # Losing more than m fragments is an error, never wrong bytes.
        third = next(i for i in range(6) if i not in victims)
        c.kill("dnode", third)
        for name, data in objs.items():
            # A manifest whose shard lost its majority fails after the wait, not wrong.
            rc, got, err = c.get(name, leader_wait_ms=3000)
            check(rc != 0 or got == data, "read with 3 D-nodes down returned wrong bytes")
        log("3 D-nodes down: reads fail cleanly or return correct bytes")

        for v in victims + [third]:
            c.start("dnode", v)
        log("restarted D-nodes %s" % (victims + [third]))
        for name, data in objs.items():
            rc, got, err = c.get(name)
            check(rc == 0 and sha256(got) == sha256(data), "read after restart of %s: %s" %
                  (name, err))
            check("rebuilt" not in err, "%s still needs parity after restart: %s" % (name, err))
        ping = c.ctl("ping")
        check(ping.returncode == 0, "ping after restart: %s" % ping.stdout)

        # The cluster takes new writes again.
        data = rnd.randbytes(5 << 20)
        check(c.put("after", data).returncode == 0, "put after restart")
        rc, got, _ = c.get("after")
        check(rc == 0 and got == data, "read of a write made after restart")
        log("every acknowledged object intact after restart")


if __name__ == "__main__":
    main(test)
