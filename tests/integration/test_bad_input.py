#!/usr/bin/env python3
"""Malformed and truncated transport messages against live D-nodes: errors or silence, never
a crash; the cluster keeps serving afterwards."""
import os
import random
import subprocess

from cluster import BUILD, Cluster, check, log, main


def test():
    badmsg = os.path.join(BUILD, "tests", "integration", "badmsg")
    with Cluster(dnodes=6, ec="4+2") as c:
        data = random.Random(3).randbytes(3 << 20)
        check(c.put("before", data).returncode == 0, "put before bad input")
        for addr in c.env["DNODES"].split()[:3]:
            p = subprocess.run([badmsg, addr], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=300)
            log(p.stdout.strip())
            check(p.returncode == 0, "badmsg against %s failed" % addr)
        status = c.local("status").stdout
        check("stopped" not in status, "a D-node died from bad input:\n" + status)
        p = c.ctl("ping")
        check(p.returncode == 0, "ping after bad input: %s" % p.stdout)
        rc, got, err = c.get("before")
        check(rc == 0 and got == data and "rebuilt" not in err, "data after bad input: " + err)


if __name__ == "__main__":
    main(test)
