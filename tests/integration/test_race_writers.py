#!/usr/bin/python3
"""Two NFS writers and two S3 writers on different C-nodes race on the same files while
D-nodes are killed, restarted and paused.

Every write replaces a whole file of one size with content of its own (S3: random bytes from
boto3; NFS: `nfscheck write`, create with truncate, one WRITE, COMMIT, from a seed), and its
invocation and outcome are recorded.  After the faults are healed each file is read through
both C-nodes over both protocols.  Checks, per file:

- all four reads agree, and the content is one written version, whole;
- it is a version that may be the last: the last acknowledged write, or a write that had
  not yet answered when that one began (a failed write counts: its outcome was unknown).  So
  an acknowledged write that nothing overwrote is there, and a write that failed before an
  acknowledged one began (an NFS write whose COMMIT got JUKEBOX, say) never lands over it.
"""
import hashlib
import os
import random
import subprocess
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

from cluster import NFSCHECK, Cluster, check, log, main

B = "race"
FILES = 4
SIZE = 192 * 1024
SECONDS = 45
M64 = (1 << 64) - 1


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def gen(seed, size):
    """nfscheck's content for (seed, size): byte i is byte i % 8 of mix64(mix64(seed) ^ i / 8)."""
    s = mix64(seed)
    out = bytearray()
    for blk in range((size + 7) // 8):
        out += mix64(s ^ blk).to_bytes(8, "little")
    return bytes(out[:size])


class Log:
    def __init__(self):
        self.lock = threading.Lock()
        self.writes = []  # dicts: file, who, inv, end, ok, sha (S3) or seed (NFS)

    def add(self, w):
        with self.lock:
            self.writes.append(w)


def s3_writer(c, node, stop, hist, rnd):
    s3 = c.boto3_client(node=node, read_timeout=30)  # no retries: one write, one outcome
    n = 0
    while not stop.is_set():
        f = rnd.randrange(FILES)
        body = rnd.randbytes(SIZE)
        w = {"file": f, "who": "s3-%d.%d" % (node, n), "inv": time.monotonic(),
             "sha": hashlib.sha256(body).hexdigest()}
        try:
            s3.put_object(Bucket=B, Key="f%d" % f, Body=body)
            w["ok"] = True
        except (ClientError, BotoCoreError) as e:
            w["ok"] = False
            w["err"] = str(e)[:100]
        w["end"] = time.monotonic()
        hist.add(w)
        n += 1


def nfs_writer(c, node, stop, hist, rnd):
    url = c.nfs_url("/", node)
    n = 0
    while not stop.is_set():
        f = rnd.randrange(FILES)
        seed = rnd.getrandbits(63)
        w = {"file": f, "who": "nfs-%d.%d" % (node, n), "inv": time.monotonic(), "seed": seed}
        try:
            p = subprocess.run([NFSCHECK, "write", url, "%s/f%d" % (B, f), str(SIZE), str(seed)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=120)
            w["ok"] = p.returncode == 0
            if not w["ok"]:
                w["err"] = p.stdout.strip()[-100:]
        except subprocess.TimeoutExpired:
            w["ok"] = False
        w["end"] = time.monotonic()
        hist.add(w)
        n += 1


def sha_of(w):
    if "sha" not in w:
        w["sha"] = hashlib.sha256(gen(w["seed"], SIZE)).hexdigest()
    return w["sha"]


def test():
    rnd = random.Random(int(os.environ.get("CAIRN_RACE_SEED", "5")))
    with Cluster(dnodes=6, ec="4+2", cnodes=2) as c:
        s3 = c.boto3_client()
        s3.create_bucket(Bucket=B)
        for f in range(FILES):
            s3.put_object(Bucket=B, Key="f%d" % f, Body=b"\0" * SIZE)
        hist = Log()
        stop = threading.Event()
        threads = [threading.Thread(target=s3_writer, args=(c, n, stop, hist,
                                                            random.Random(rnd.random())))
                   for n in (0, 1)]
        threads += [threading.Thread(target=nfs_writer, args=(c, n, stop, hist,
                                                             random.Random(rnd.random())))
                    for n in (0, 1)]
        for t in threads:
            t.start()
        end = time.monotonic() + SECONDS
        faults = []
        time.sleep(3)
        while time.monotonic() + 6 < end:
            i = rnd.randrange(6)
            hold = rnd.uniform(1.0, 4.0)
            if rnd.random() < 0.6:
                c.kill_now("dnode", i)
                time.sleep(hold)
                c.start("dnode", i)
                faults.append("restart D-node %d after %.1f s" % (i, hold))
            else:
                c.pause("dnode", i)
                time.sleep(hold)
                c.resume("dnode", i)
                faults.append("pause D-node %d for %.1f s" % (i, hold))
            log("fault: " + faults[-1])
            time.sleep(rnd.uniform(1.0, 3.0))
        stop.set()
        for t in threads:
            t.join(timeout=300)
        writes = hist.writes
        acked = [w for w in writes if w["ok"]]
        log("%d writes (%d acknowledged: %d S3, %d NFS), %d faults" % (
            len(writes), len(acked), sum(1 for w in acked if "seed" not in w),
            sum(1 for w in acked if "seed" in w), len(faults)))
        check(sum(1 for w in acked if "seed" not in w) >= 5 and
              sum(1 for w in acked if "seed" in w) >= 5,
              "too few acknowledged writes of each protocol to prove anything")

        for f in range(FILES):
            mine = [w for w in writes if w["file"] == f]
            reads = {}
            for node in (0, 1):
                cl = c.boto3_client(node=node, read_timeout=120)
                reads["S3 via C-node %d" % node] = cl.get_object(Bucket=B, Key="f%d" % f)[
                    "Body"].read()
                dst = os.path.join(c.dir, "nfsread")
                c.nfs_cp(c.nfs_url("/%s/f%d" % (B, f), node), dst)
                with open(dst, "rb") as fh:
                    reads["NFS via C-node %d" % node] = fh.read()
            shas = {k: hashlib.sha256(v).hexdigest() for k, v in reads.items()}
            if len(set(shas.values())) != 1:
                # Which write each read shows, to tell a stale buffer from a bad read.
                for k, h in shas.items():
                    for w in mine:
                        if sha_of(w) == h:
                            log("f%d %s: write %s, %s, invoked at %.1f, ended at %.1f (%s)" % (
                                f, k, w["who"], "acknowledged" if w["ok"] else "FAILED",
                                w["inv"], w["end"], w.get("err", "")))
                            break
                    else:
                        log("f%d %s: bytes no write wrote" % (f, k))
            check(len(set(shas.values())) == 1, "f%d reads differently: %s" % (
                f, {k: (len(reads[k]), v[:12]) for k, v in shas.items()}))
            final = next(iter(shas.values()))
            by_sha = {}
            for w in mine:
                by_sha.setdefault(sha_of(w), []).append(w)
            check(final in by_sha, "f%d holds %d bytes that no write wrote (mixed or lost)" % (
                f, len(next(iter(reads.values())))))
            winner = by_sha[final][0]
            oks = [w for w in mine if w["ok"]]
            if oks:
                last = max(oks, key=lambda w: w["end"])
                may_follow = [w for w in mine if w["end"] > last["inv"]]
                check(winner in may_follow,
                      "f%d holds %s's version (%s, answered at %.3f) although %s was "
                      "acknowledged at %.3f after it began at %.3f" % (
                          f, winner["who"], "acknowledged" if winner["ok"] else "failed",
                          winner["end"], last["who"], last["end"], last["inv"]))
            log("ok   f%d: %s's version (%s), whole and the same through both C-nodes and "
                "both protocols; %d writes raced on it" % (
                    f, winner["who"], "acknowledged" if winner["ok"] else "unknown outcome",
                    len(mine)))


if __name__ == "__main__":
    main(test)
