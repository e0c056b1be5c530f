#!/usr/bin/python3
"""The garbage sweeper and a full cluster: fragments no record references are collected,
nothing referenced ever is, a full cluster says so clearly, and space comes back.

6 D-nodes of 128 MiB, EC 4+2 (fragments of 256 KiB), 2 C-nodes without background repair or
sweeps (the test runs `cairnctl gc run` itself); GC_GRACE_S is 20, so the C-nodes record no
write whose data is older than 10 s.  S3 (boto3) and NFS (`nfscheck write`) writes through both
C-nodes are recorded when acknowledged.

1. Garbage is made three ways: large S3 PUTs cut short by a kill -9 of the C-node serving
   them; objects deleted over S3 while one D-node is down (its fragments of them stay); and
   (phase 2) writes that fail on a full cluster.
2. `cairnctl gc run` after the grace deletes garbage (at least the fragments the deletes left
   on the D-node that was down), and a second run finds nothing unreferenced left.  Every
   acknowledged write reads back byte for byte through both C-nodes over S3 and NFS.
3. The cluster is filled with 4 MiB S3 PUTs until they fail: the failures are 507
   InsufficientStorage, an NFS write fails with NOSPC, and every acknowledged write still reads
   back.  The filler objects are deleted, `cairnctl gc run` sweeps what the failed writes left,
   and S3 and NFS writes succeed again through both C-nodes; everything acknowledged and not
   deleted reads back once more.
"""
import os
import random
import re
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

from cluster import Cluster, check, log, main, sha256
from test_degraded_write import B, History, nfs_write, read_back, s3_put

K, M = 4, 2
DNODES = K + M
FRAG = 256 * 1024
GRACE = 20
FILL_SIZE = 4 << 20


def fragments(c):
    """{dnode index: fragments} from `cairnctl status`."""
    out = c.ctl("status").stdout.decode(errors="replace")
    return {int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"^dnode (\d+) .*\bfragments=(\d+)", out, re.M)}


def gc_run(c):
    p = c.ctl("gc", "run", "--grace", str(GRACE))
    out = (p.stdout + p.stderr).decode(errors="replace").strip()
    check(p.returncode == 0, "gc run failed (%d): %s" % (p.returncode, out))
    m = re.search(r"unreferenced (\d+), deleted (\d+)", out)
    check(m, "gc run said: %s" % out)
    log("gc run: %s" % out)
    return int(m.group(1)), int(m.group(2))


def test():
    rnd = random.Random(int(os.environ.get("CAIRN_GC_SEED", "31")))
    extra = ["--repair-interval", "0", "--gc-interval", "0", "--gc-grace", str(GRACE)]
    with Cluster(dnodes=DNODES, ec="%d+%d" % (K, M), cnodes=2, frag_size=FRAG,
                 dev_size="128M", extra_args=extra) as c:
        c.boto3_client().create_bucket(Bucket=B)
        hist = History()
        t0 = time.monotonic()
        clients = [c.boto3_client(node=n, read_timeout=60) for n in (0, 1)]

        def write(n, node, proto, size):
            if proto == "S3":
                w = s3_put(clients[node], node, "%s-%04d" % (proto.lower(), n), size, rnd)
            else:
                w = nfs_write(c, node, "%s-%04d" % (proto.lower(), n), size,
                              rnd.getrandbits(63))
            hist.add(w)
            return w

        for n in range(24):
            w = write(n, n % 2, "S3" if n % 3 else "NFS", rnd.randint(300_000, 3 << 20))
            check(w["ok"], "write %s failed: %s" % (w["name"], w.get("err")))

        # 1a. Large PUTs cut short by a C-node's death.
        cut = []

        def big(i):
            cl = c.boto3_client(node=0, read_timeout=20)
            try:
                cl.put_object(Bucket=B, Key="cut-%d" % i, Body=rnd.randbytes(24 << 20))
            except (ClientError, BotoCoreError) as e:
                cut.append(type(e).__name__)

        threads = [threading.Thread(target=big, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        c.kill_now("cnode", 0)
        for t in threads:
            t.join(timeout=60)
        c.start("cnode", 0)
        clients[0] = c.boto3_client(node=0, read_timeout=60)
        log("C-node 0 killed with 2 PUTs of 24 MiB in flight (%d failed); restarted" % len(cut))

        # 1b. Deletes while a D-node is down leave its fragments behind.
        victim = rnd.randrange(DNODES)
        c.kill("dnode", victim)
        gone = [w for w in hist.writes if w["proto"] == "S3"][:5]
        for w in gone:
            clients[1].delete_object(Bucket=B, Key=w["name"])
        c.start("dnode", victim)
        acked = [w for w in hist.writes if w["ok"] and w not in gone]
        before = fragments(c)
        log("deleted %d objects with D-node %d down; fragments now %s" % (
            len(gone), victim, before))

        # 2. The sweep, after the grace.
        time.sleep(GRACE + 2)
        unref, deleted = gc_run(c)
        check(deleted >= len(gone), "the sweep deleted %d fragments; the deletes alone left "
              "at least %d on D-node %d" % (deleted, len(gone), victim))
        after = fragments(c)
        check(after[victim] <= before[victim] - len(gone),
              "D-node %d kept the fragments of the deleted objects: %d before, %d after" % (
                  victim, before[victim], after[victim]))
        unref, deleted = gc_run(c)
        check(unref == 0 and deleted == 0, "a second sweep found %d unreferenced fragments "
              "(deleted %d): the first left garbage" % (unref, deleted))
        read_back(c, acked, t0, "after the sweep")

        # 3. Fill the cluster.
        fill, codes, n = [], {}, 1000
        while True:
            w = write(n, n % 2, "S3", FILL_SIZE)
            n += 1
            if w["ok"]:
                fill.append(w)
                continue
            codes[w.get("status")] = codes.get(w.get("status"), 0) + 1
            if codes.get(507, 0) >= 3:
                break
            check(sum(codes.values()) < 20 and len(fill) < 400,
                  "no 507 InsufficientStorage after %d writes (failures: %s)" % (
                      len(fill), codes))
        log("full after %d PUTs of 4 MiB (%d MB); failures by status: %s" % (
            len(fill), len(fill) * FILL_SIZE >> 20, codes))
        w = write(n, 1, "NFS", FILL_SIZE)
        n += 1
        check(not w["ok"] and "NOSPC" in w.get("err", ""),
              "an NFS write to a full cluster should fail with NOSPC: %s" % w)
        log("ok   full: S3 says 507 InsufficientStorage, NFS says NOSPC (%s)" % w["err"])
        read_back(c, acked, t0, "full cluster")
        bad = [x["name"] for x in fill
               if sha256(clients[1].get_object(Bucket=B, Key=x["name"])["Body"].read()) !=
               x["sha"]]
        check(not bad, "filler objects that read back other bytes: %s" % bad[:5])
        log("ok   all %d filler objects read back identical" % len(fill))

        for x in fill:
            clients[x["node"]].delete_object(Bucket=B, Key=x["name"])
        time.sleep(GRACE + 2)
        unref, deleted = gc_run(c)
        log("swept %d fragments after the filler objects were deleted" % deleted)
        for node in (0, 1):
            for proto in ("S3", "NFS"):
                w = write(n, node, proto, rnd.randint(1 << 20, 3 << 20))
                n += 1
                check(w["ok"], "after deletes and a sweep, %s via C-node %d still fails: %s" %
                      (proto, node, w.get("err")))
                acked.append(w)
        log("ok   writes succeed again through both C-nodes over S3 and NFS")
        read_back(c, acked, t0, "after the cluster filled and emptied")


if __name__ == "__main__":
    main(test)
