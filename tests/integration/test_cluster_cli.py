#!/usr/bin/env python3
"""The tools/cairn-local interface other tests and later work rely on: up writes cluster.env,
status, kill, start, down, and up again on the same directory serving the same data."""
import os
import random

from cluster import Cluster, check, log, main, parse_env


def test():
    c = Cluster(dnodes=6, ec="4+2")
    with c:
        env = c.env
        for name in ("DNODES", "DNODE_COUNT", "EC", "FRAG_SIZE", "FABRIC_PROVIDER", "CLUSTER_DIR"):
            check(name in env, "cluster.env lacks %s: %s" % (name, env))
        check(len(env["DNODES"].split()) == 6 and env["DNODE_COUNT"] == "6", "6 D-nodes listed")
        check(env["EC"] == "4+2", "EC recorded")
        with open(os.path.join(c.dir, "cluster.env")) as f:
            for line in f:
                check("=" in line and line.split("=", 1)[0].isupper(), "NAME=value: " + line)

        st = c.local("status").stdout
        check(st.count("running") == 6, "status shows 6 running:\n" + st)
        ping = c.ctl("ping")
        check(ping.returncode == 0 and ping.stdout.count(b" up ") == 6, "ping all: %s" % ping.stdout)

        c.kill("dnode", 3)
        st = c.local("status").stdout
        check("dnode 3" in st and st.count("stopped") == 1, "status after kill:\n" + st)
        ping = c.ctl("ping")
        check(ping.returncode != 0 and b"dnode 3" in ping.stdout and b"down" in ping.stdout,
              "ping reports the dead D-node: %s" % ping.stdout)
        c.start("dnode", 3)
        st = c.local("status").stdout
        check(st.count("running") == 6, "status after start:\n" + st)

        data = random.Random(1).randbytes(2 << 20)
        check(c.put("x", data).returncode == 0, "put")
        addrs = env["DNODES"]
        c.down()
        st = c.local("status").stdout
        check(st.count("stopped") == 6, "status after down:\n" + st)
        c.up()
        check(parse_env(os.path.join(c.dir, "cluster.env"))["DNODES"] == addrs,
              "restarted cluster keeps its addresses")
        rc, got, err = c.get("x")
        check(rc == 0 and got == data, "data survives down/up: " + err)

        bad = c.local("kill", "dnode", "6", check_rc=False)
        check(bad.returncode != 0, "kill of a D-node that does not exist must fail")
        log("cairn-local interface behaves")


if __name__ == "__main__":
    main(test)
