#!/usr/bin/python3
"""Adding D-nodes to a running cluster (6 -> 7 -> 8), then taking one out, with metadata
writes in flight.

Three C-node metadata layers (linclient processes, three threads each) read, write and
compare-and-set five records for the whole test.  Meanwhile `cairn-local add` starts a
seventh D-node and adds it (`cairnctl map add`: the next map, written into the map group by
compare-and-set), then an eighth; then `cairnctl map out` takes D-node 2 out (epoch 4: its
shard replicas and its place in the map group go to others).  Checks:

- `cairnctl map show` shows each new epoch and D-node;
- shard replicas move by agreement: every shard's group reaches the replicas the new map
  names (no leader reports a group still moving) and each new D-node votes in exactly the
  shards the map places on it;
- the C-node processes started before the changes follow them (refused with a stale epoch,
  a view reads the map again): each ends at the last epoch;
- every operation's history is linearizable (lincheck.py), so every acknowledged record is
  readable afterwards with its latest value, also with the D-node taken out and two more of
  the first D-nodes killed (three of eight: a shard that still counted on the one taken out
  would have lost its majority).
"""
import os
import re
import subprocess
import time

import lincheck
from cluster import BUILD, Cluster, check, log, main

LINCLIENT = os.path.join(BUILD, "tests", "integration", "linclient")
SECONDS = 60
LAST_EPOCH = 4


def map_show(c):
    p = c.ctl("map", "show")
    check(p.returncode == 0, "map show: %s" % p.stderr.decode())
    return p.stdout.decode()


def wait_converged(c, nodes, timeout=120):
    """Until no leader reports a group still moving, every D-node votes in the shards placed
    on it (+1 for map group members; a removed replica may not hear of its removal, so its
    own count can stay higher), and the newest D-node in exactly those."""
    deadline = time.monotonic() + timeout
    while True:
        out = map_show(c)
        rows = [l for l in out.splitlines() if l.startswith("dnode ")]
        ok = len(rows) == nodes
        for row in rows:
            m = re.search(r"shards=(\d+) voting=(\d+) moving=(\d+)", row)
            if not m:
                ok = False
                continue
            shards, voting, moving = (int(x) for x in m.groups())
            want = shards + (1 if row.endswith("map-group") else 0)
            # A replica that was removed may not hear of it: its own count may stay higher.
            ok = ok and moving == 0 and voting >= want
            if row.split()[1] == str(nodes - 1):
                ok = ok and voting == want  # the newest: in exactly the groups placed on it
        if ok:
            return out
        if time.monotonic() > deadline:
            check(False, "shard replicas did not move to the new map in %d s:\n%s" % (
                timeout, out))
        time.sleep(1)


def test():
    with Cluster(dnodes=6, ec="4+2", cnodes=0) as c:
        env = os.path.join(c.dir, "cluster.env")
        hist = os.path.join(c.dir, "history.jsonl")
        procs = []
        for pid in (1, 2, 3):
            logf = open(os.path.join(c.dir, "linclient%d.log" % pid), "wb")
            procs.append(subprocess.Popen(
                [LINCLIENT, "-c", env, "--out", hist, "--proc", str(pid), "--threads", "3",
                 "--keys", "5", "--seconds", str(SECONDS), "--seed", "11", "--run", "mc",
                 "--leader-wait-ms", "10000"], stdout=logf, stderr=subprocess.STDOUT))
            logf.close()
        time.sleep(5)
        for n, epoch in ((7, 2), (8, 3)):
            t0 = time.monotonic()
            p = c.local("add")
            log("add: %s (%.1f s)" % (p.stdout.strip(), time.monotonic() - t0))
            out = map_show(c)
            check(out.startswith("epoch %d " % epoch), "map show after adding D-node %d:\n%s" % (
                n - 1, out))
            out = wait_converged(c, n)
            log("epoch %d: replicas moved in %.1f s after the add\n%s" % (
                epoch, time.monotonic() - t0, out.rstrip()))
            time.sleep(3)
        out_addr = map_show(c).splitlines()[3].split()[3]  # D-node 2's address
        t0 = time.monotonic()
        p = c.ctl("map", "out", out_addr)
        check(p.returncode == 0, "map out %s: %s" % (out_addr, p.stderr.decode()))
        out = map_show(c)
        check(out.startswith("epoch %d " % LAST_EPOCH), "map show after map out:\n%s" % out)
        row = [l for l in out.splitlines() if l.startswith("dnode 2 ")][0]
        check("state=out shards=0 " in row and not row.endswith("map-group"),
              "D-node 2 still holds replicas in the new map: %s" % row)
        out = wait_converged(c, 8)
        log("epoch %d: D-node 2 out, replicas moved in %.1f s\n%s" % (
            LAST_EPOCH, time.monotonic() - t0, out.rstrip()))
        for i, p in enumerate(procs):
            rc = p.wait(timeout=SECONDS + 120)
            with open(os.path.join(c.dir, "linclient%d.log" % (i + 1))) as f:
                text = f.read()
            check(rc == 0, "C-node process %d failed (%d): %s" % (i + 1, rc, text[-2000:]))
            ends = re.findall(r"ended at map epoch (\d+)", text)
            check(len(ends) == 3 and all(int(e) == LAST_EPOCH for e in ends),
                  "C-node process %d did not follow the map to epoch %d: %s" % (
                      i + 1, LAST_EPOCH, ends))
        log("the C-node processes opened at epoch 1 all ended at epoch %d" % LAST_EPOCH)
        # The D-node taken out and two of the first D-nodes gone: the shards still have
        # majorities among the others, the new D-nodes included, and every record reads back
        # as the history says.
        c.kill("dnode", 2)
        c.kill("dnode", 0)
        c.kill("dnode", 1)
        p = subprocess.run([LINCLIENT, "-c", env, "--out", hist, "--proc", "9", "--keys", "5",
                            "--run", "mc", "--final"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=180)
        check(p.returncode == 0, "final reads with D-nodes 0, 1 and 2 down: %s" % p.stdout)
        by_key = lincheck.load([hist])
        ops = sum(len(v) for v in by_key.values())
        ok, lines = lincheck.check(by_key)
        for line in lines:
            log(line)
        check(ok, "the history across the map changes is not linearizable (%s)" % hist)
        okops = sum(1 for v in by_key.values() for o in v if o.status == "ok" and o.f != "r")
        check(okops >= 100, "too few acknowledged updates to prove anything: %d" % okops)
        log("ok   %d operations (%d acknowledged updates) across epochs 1 -> %d: linearizable, "
            "every record read back with D-nodes 0, 1 and 2 down" % (ops, okops, LAST_EPOCH))


if __name__ == "__main__":
    main(test)
