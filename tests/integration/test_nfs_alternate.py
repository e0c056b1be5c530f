#!/usr/bin/python3
"""One NFS client writes a file again and again, alternately through two C-nodes, while
D-nodes are killed and paused (one at a time, or two at once so that writes fail: one down
leaves them going on degraded).

Each write is `nfscheck write` (create with truncate, WRITE, COMMIT, close) of content from a
seed of its own, one after the other.  Writes that fail (a COMMIT answered NFS3ERR_JUKEBOX, a
D-node gone) leave their bytes possibly buffered in a C-node.  After the faults are healed and
the C-nodes had time to flush anything they still hold, the file, read through both C-nodes,
must hold the last acknowledged write's bytes, or those of a write that failed after it (its
outcome was unknown; or nothing, if such a write's truncation landed and its data did not),
and never an earlier failed write's: buffered writes are ordered by when they arrived,
against what was committed since.  A C-node drops buffered writes whose flush failed (with a
new write verifier), so no C-node shows bytes that were never committed.
"""
import hashlib
import os
import random
import subprocess
import threading
import time

from cluster import NFSCHECK, Cluster, check, log, main
from test_race_writers import gen

B = "alt"
SIZE = 256 * 1024
SECONDS = 40


def test():
    rnd = random.Random(int(os.environ.get("CAIRN_ALT_SEED", "3")))
    with Cluster(dnodes=6, ec="4+2", cnodes=2) as c:
        c.boto3_client().create_bucket(Bucket=B)
        writes = []
        stop = threading.Event()

        def writer():
            n = 0
            while not stop.is_set():
                node = n % 2
                seed = rnd.getrandbits(63)
                t0 = time.monotonic()
                try:
                    p = subprocess.run([NFSCHECK, "write", c.nfs_url("/", node), "%s/file" % B,
                                        str(SIZE), str(seed)], stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, timeout=120)
                    ok = p.returncode == 0
                except subprocess.TimeoutExpired:
                    ok = False
                writes.append({"n": n, "node": node, "seed": seed, "ok": ok, "inv": t0,
                               "end": time.monotonic()})
                n += 1

        t = threading.Thread(target=writer)
        t.start()
        end = time.monotonic() + SECONDS
        frnd = random.Random(rnd.random())
        time.sleep(2)
        while time.monotonic() + 5 < end:
            i = frnd.randrange(6)
            # One D-node away leaves writes going on degraded (k + 1 of k + m fragments);
            # two take a 4+2 cluster below that minimum, so some writes must fail.
            victims = [i] if frnd.random() < 0.5 else [i, (i + 1 + frnd.randrange(5)) % 6]
            hold = frnd.uniform(1.0, 4.0)
            if frnd.random() < 0.5:
                for v in victims:
                    c.kill_now("dnode", v)
                time.sleep(hold)
                for v in victims:
                    c.start("dnode", v)
                log("fault: D-nodes %s killed for %.1f s" % (victims, hold))
            else:
                for v in victims:
                    c.pause("dnode", v)
                time.sleep(hold)
                for v in victims:
                    c.resume("dnode", v)
                log("fault: D-nodes %s paused for %.1f s" % (victims, hold))
            time.sleep(frnd.uniform(0.5, 2.0))
        time.sleep(4)  # writes on a healed cluster: the last ones should be acknowledged
        stop.set()
        t.join(timeout=300)
        acked = [w for w in writes if w["ok"]]
        failed = [w for w in writes if not w["ok"]]
        log("%d writes alternating C-nodes: %d acknowledged, %d failed" % (
            len(writes), len(acked), len(failed)))
        check(len(acked) >= 5 and failed, "the run must have both acknowledged and failed "
              "writes to prove anything (%d, %d)" % (len(acked), len(failed)))
        # Anything a C-node still buffers has had time to land (or be dropped) by now.
        time.sleep(5)
        last = max(acked, key=lambda w: w["n"])
        allowed = {hashlib.sha256(gen(w["seed"], SIZE)).hexdigest(): w for w in writes
                   if w["n"] >= last["n"]}
        # A write truncates the file first (an acknowledged CREATE of its own), so a write
        # after the last acknowledged one that failed may leave the file empty.
        later_failed = [w for w in writes if w["n"] > last["n"] and not w["ok"]]
        if later_failed:
            allowed[hashlib.sha256(b"").hexdigest()] = dict(later_failed[-1], empty=True)
        earlier = {hashlib.sha256(gen(w["seed"], SIZE)).hexdigest(): w for w in writes
                   if w["n"] < last["n"]}
        for node in (0, 1):
            dst = os.path.join(c.dir, "read%d" % node)
            c.nfs_cp(c.nfs_url("/%s/file" % B, node), dst)
            with open(dst, "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
            if got in earlier:
                w = earlier[got]
                check(False, "through C-node %d the file holds write %d's bytes (%s, via C-node "
                      "%d), older than the last acknowledged write %d" % (
                          node, w["n"], "acknowledged" if w["ok"] else "FAILED", w["node"],
                          last["n"]))
            check(got in allowed, "through C-node %d the file holds bytes no write wrote" % node)
            w = allowed[got]
            log("ok   C-node %d reads write %d (%s; the last acknowledged is %d)" % (
                node, w["n"], "empty: truncated by that failed write" if w.get("empty") else
                "acknowledged" if w["ok"] else "unknown outcome", last["n"]))


if __name__ == "__main__":
    main(test)
