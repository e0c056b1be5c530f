#!/usr/bin/python3
"""The failure detector: a D-node that stays silent is taken out of the map by the C-nodes'
repair services, its data is rebuilt elsewhere with nobody running a command, and a D-node
that is only briefly away is left in.

7 D-nodes, EC 4+2 (fragments of 256 KiB), 2 C-nodes with a repair pass every 5 s and
DOWN_OUT_S = 15 (`cairn-local up --repair-interval 5 --down-out 15`), so both C-nodes' detectors
watch the D-nodes and may race to take one out.  S3 (boto3) and NFS (`nfscheck write`) writes
through both C-nodes are recorded when acknowledged.

1. A D-node paused (SIGSTOP) for 8 s, then resumed: nobody takes it out (the map shows no node
   out 25 s later).
2. Another D-node killed (SIGKILL) and left dead: within 15 to 90 s the map shows it out, and
   with no command run the background passes rebuild what it held onto the seventh D-node
   (`cairnctl repair status`: degraded_left 0 and bytes rebuilt).
3. The proof: two more of the original D-nodes killed (4 of 7 live, k) and every acknowledged
   write reads back byte for byte through both C-nodes over S3 and NFS.
"""
import os
import random
import re
import time

from cluster import Cluster, check, log, main
from test_degraded_write import B, History, nfs_write, read_back, s3_put

K, M = 4, 2
DNODES = 7
FRAG = 256 * 1024
DOWN_OUT = 15
OUT_TIMEOUT = 90
REBUILD_TIMEOUT = 180


def states(c):
    out = c.ctl("status").stdout.decode(errors="replace")
    return {int(m.group(1)): m.group(2)
            for m in re.finditer(r"^dnode (\d+) .*\bstate=(\w+)", out, re.M)}


def repair_status(c):
    out = c.ctl("repair", "status").stdout.decode(errors="replace")
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+) (-?\d+)$", out, re.M)}


def test():
    rnd = random.Random(int(os.environ.get("CAIRN_FD_SEED", "41")))
    extra = ["--repair-interval", "5", "--down-out", str(DOWN_OUT)]
    with Cluster(dnodes=DNODES, ec="%d+%d" % (K, M), cnodes=2, frag_size=FRAG,
                 extra_args=extra) as c:
        c.boto3_client().create_bucket(Bucket=B)
        hist = History()
        t0 = time.monotonic()
        clients = [c.boto3_client(node=n, read_timeout=60) for n in (0, 1)]
        for n in range(18):
            node = n % 2
            if n % 3:
                w = s3_put(clients[node], node, "s3-%03d" % n, rnd.randint(300_000, 3 << 20), rnd)
            else:
                w = nfs_write(c, node, "nfs-%03d" % n, rnd.randint(300_000, 3 << 20),
                              rnd.getrandbits(63))
            check(w["ok"], "write %s failed: %s" % (w["name"], w.get("err")))
            hist.add(w)
        acked = hist.writes
        originals = list(range(6))  # the seventh is where rebuilt data can go
        paused, victim = rnd.sample(originals, 2)

        # 1. Briefly away: left in.
        c.pause("dnode", paused)
        time.sleep(8)
        c.resume("dnode", paused)
        time.sleep(DOWN_OUT + 10)
        st = states(c)
        check("out" not in st.values(), "a D-node away for 8 s (DOWN_OUT_S %d) was taken out: "
              "%s" % (DOWN_OUT, st))
        log("ok   D-node %d paused for 8 s stayed in the map: %s" % (paused, st))

        # 2. Gone for good: out, then rebuilt.
        t_kill = time.monotonic()
        c.kill_now("dnode", victim)
        while time.monotonic() - t_kill < OUT_TIMEOUT:
            st = states(c)
            if st.get(victim) == "out":
                break
            time.sleep(2)
        took = time.monotonic() - t_kill
        check(st.get(victim) == "out", "D-node %d dead for %d s is still %s in the map" % (
            victim, OUT_TIMEOUT, st.get(victim)))
        check(took >= DOWN_OUT, "D-node %d was taken out %.1f s after its death, before "
              "DOWN_OUT_S (%d s)" % (victim, took, DOWN_OUT))
        others = [i for i, s in st.items() if s == "out" and i != victim]
        check(not others, "D-nodes other than the dead one are out: %s" % st)
        log("ok   dead D-node %d taken out of the map %.0f s after its death" % (victim, took))
        t_out = time.monotonic()
        while time.monotonic() - t_kill < OUT_TIMEOUT + REBUILD_TIMEOUT:
            rs = repair_status(c)
            # Every shard passed since the map took it out, and nothing left.
            fresh = rs.get("shards_passed") == rs.get("shards") and \
                rs.get("oldest_pass_age_s", 1 << 30) < time.monotonic() - t_out
            if fresh and rs.get("degraded_left") == 0 and rs.get("bytes_rebuilt", 0) > 0:
                break
            time.sleep(3)
        check(rs.get("degraded_left") == 0 and rs.get("bytes_rebuilt", 0) > 0,
              "the background passes did not rebuild D-node %d's data: %s" % (victim, rs))
        log("ok   rebuilt by the background passes, %.0f s after the death: %d positions, %d "
            "bytes" % (time.monotonic() - t_kill, rs["rebuilt_positions"], rs["bytes_rebuilt"]))

        # 3. Two more failures.
        more = rnd.sample([i for i in originals if i != victim], 2)
        for i in more:
            c.kill("dnode", i)
        log("killed D-nodes %s as well: 4 of 7 live" % more)
        read_back(c, acked, t0, "D-node %d taken out and rebuilt, D-nodes %s down" % (
            victim, more))


if __name__ == "__main__":
    main(test)
